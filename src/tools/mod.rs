//! The sub-commands that are not tunnels: each declares its own command-line arguments
//! (clap) beside what it does.
//!
//! - [`selftest`]: both ends in one process on loopback, with a throwaway CA ([`pki`]).
//! - [`gencerts`]: a real cluster CA and node certificates on disk, and their lifecycle.
//! - [`doctor`]: `check`, the pre-flight report on a node's certificate files.
//! - [`generate`]: man pages and completions for the packages.

pub mod doctor;
pub mod gencerts;
pub mod generate;
pub mod manual;
pub mod pki;
pub mod selftest;
