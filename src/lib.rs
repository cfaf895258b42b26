//! sst-tunnel: a TLS tunnel for Galera State Snapshot Transfers (SST).
//!
//! It replaces `stunnel` (rsync SST) and `socat` with OpenSSL (mariabackup SST): a stdio TLS
//! client for the donor, a TLS server that relays to stdio or runs a program per connection
//! for the joiner. It fails closed: peers are verified by default, a stream that ends without
//! close_notify is an error, and nothing ever falls back to cleartext.
//!
//! # Layout
//! - [`cli`]: the command-line syntax (clap), no I/O.
//! - [`app`]: picks the runtime, dispatches the command, turns signals into errors.
//! - [`client`] / [`server`] / [`selftest`]: the three commands; client and server take plans
//!   that the native CLI and the front-ends build alike.
//! - [`frontend`]: the stunnel and socat drop-ins (config files and command lines of the stock
//!   SST scripts), and delegation to the real tools for anything else.
//! - [`tls`]: flags -> rustls configs; certificate loading, verification policies, names.
//! - [`session`]: one connection around the relay: handshake deadline, summary, error wording.
//! - [`unbuffered`]: rustls' unbuffered API on tokio: every handshake, and rustls' records
//!   wherever the kernel does not take them.
//! - [`ktls`] / [`control`]: the hand-off of a finished handshake to kernel TLS, keyed through
//!   rustls' `KernelConnection`, and the control records (alerts, KeyUpdates, tickets) the
//!   kernel hands back.
//! - [`relay`]: moves bytes both ways with half-close and an idle timeout (the copy seam).
//! - [`fastpath`]: the platform seam: copy-path choice and fd tuning; Linux and portable twins.
//! - [`mycnf`]: MariaDB option files (`--defaults-file`), read as the SST scripts read them.
//! - [`stdio`], [`exec`], [`net`]: the plaintext ends and TCP plumbing.
//! - [`files`]: reading operator-named files (regular files only, bounded).
//! - `fuzzing`: the parsers' entry points for the fuzz targets under `tests/fuzz`.
//! - [`pki`]: throwaway in-memory CA for `selftest`; [`gencerts`]: a real cluster CA on disk;
//!   [`doctor`]: `check`, the pre-flight report on a node's certificate files;
//!   [`generate`]: man pages and completions for the packages.
//! - [`error`]: the error type and the exit codes.

pub mod app;
pub mod cli;
pub mod client;
pub mod control;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod fastpath;
pub mod files;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod gencerts;
pub mod generate;
pub mod ktls;
pub mod logging;
pub mod mycnf;
pub mod net;
pub mod pki;
pub mod relay;
pub mod selftest;
pub mod server;
pub mod session;
pub mod stdio;
pub mod tls;
pub mod unbuffered;
