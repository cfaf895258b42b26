//! sst-tunnel: a TLS tunnel for Galera State Snapshot Transfers (SST).
//!
//! It replaces `stunnel` (rsync SST) and `socat` with OpenSSL (mariabackup SST): a stdio TLS
//! client for the donor, a TLS server that relays to stdio or runs a program per connection
//! for the joiner. It fails closed: peers are verified by default, a stream that ends without
//! close_notify is an error, and nothing ever falls back to cleartext.
//!
//! # Layout, top down
//! Each part uses only the parts below it (`tests/architecture.rs` checks this).
//! - The face: [`cli`] (the command-line syntax, clap, no I/O), [`app`] (runs what a command
//!   line or a front-end asks for: the runtime, signals, the one-line error and exit
//!   status), [`logging`]; `main.rs` only wires them.
//! - `fuzzing`: the parsers' entry points for the fuzz targets under `tests/fuzz`.
//! - [`frontend`]: the stunnel and socat drop-ins (config files and command lines of the stock
//!   SST scripts), read into a [`frontend::Launch`] that the face runs; delegation to the
//!   real tools for anything else.
//! - [`tools`]: `selftest`, `gen-certs`, `check`, `generate`, each with its own arguments.
//! - [`ends`]: `connect` and `listen` (plans the native CLI and the front-ends build alike),
//!   one connection's session, the listener's door while it waits for its verified peer,
//!   striping, and the plaintext sides (stdio, a program per connection).
//! - [`relay`]: moves bytes both ways with half-close and an idle timeout (the copy seam).
//! - [`handoff`]: every handshake through rustls' unbuffered API, then the records to rustls
//!   or, keyed through rustls' `KernelConnection`, to kernel TLS, and the control records the
//!   kernel hands back.
//! - [`tls`]: settings -> rustls configs; certificate loading, verification policies, names.
//! - [`settings`]: plain settings types (no clap), MariaDB option files, bounded file reads.
//! - [`net`]: addresses, dialling, listening, retries, socket tuning (through the seam).
//! - [`fastpath`]: the platform seam: copy-path choice, kTLS and splice, fd and socket
//!   options; Linux and portable twins; the only `unsafe`.
//! - [`error`]: the error type and the exit codes.

pub mod app;
pub mod cli;
pub mod ends;
pub mod error;
pub mod fastpath;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod handoff;
pub mod logging;
pub mod net;
pub mod relay;
pub mod settings;
pub mod tls;
pub mod tools;
