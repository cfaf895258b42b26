//! The crate's error type and the process exit codes it maps to.
//!
//! Every failure a user can cause or meet ends as one [`Error`] whose `Display` is a single line
//! naming the flag, file or peer involved; `main` prints it and exits with [`Error::exit_code`].

use std::io;
use std::path::{Path, PathBuf};

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status for an internal error that fits no other class.
pub const EXIT_INTERNAL: u8 = 1;
/// Exit status for a usage or configuration error (bad flag, unreadable or malformed file).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for a certificate verification failure, ours of the peer or the peer's of us.
pub const EXIT_CERT: u8 = 3;
/// Exit status for a connection failure: refused, unreachable, timed out, address in use.
pub const EXIT_CONNECT: u8 = 4;
/// Exit status for a TLS handshake failure other than certificates (protocol, version, garbage).
pub const EXIT_HANDSHAKE: u8 = 5;
/// Exit status for a failed data transfer: truncated stream, reset, idle timeout, I/O error.
pub const EXIT_TRANSFER: u8 = 6;
/// Exit status base for a signal: the status is 128 + the signal number (143 for SIGTERM).
pub const EXIT_SIGNAL_BASE: u8 = 128;

/// Everything that can end a run unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or flag combination is wrong.
    #[error("{0}")]
    Usage(String),
    /// A file named on the command line cannot be used.
    #[error("{path}: {reason}", path = .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and where possible what to do.
        reason: String,
    },
    /// Certificate verification failed (either side's).
    #[error("certificate verification failed: {0}")]
    Cert(String),
    /// The TCP connection could not be made or the listening socket not opened.
    #[error("{0}")]
    Connect(String),
    /// The TLS handshake failed for a reason other than certificates.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The data transfer failed after the handshake.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// A signal ended the run.
    #[error("terminated by signal {0}")]
    Signal(i32),
    /// A bug or an unexpected system failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The process exit status for this error (see the README's table).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::File { .. } => EXIT_USAGE,
            Self::Cert(_) => EXIT_CERT,
            Self::Connect(_) => EXIT_CONNECT,
            Self::Handshake(_) => EXIT_HANDSHAKE,
            Self::Transfer(_) => EXIT_TRANSFER,
            Self::Signal(n) => EXIT_SIGNAL_BASE.saturating_add(u8::try_from(*n).unwrap_or(0)),
            Self::Internal(_) => EXIT_INTERNAL,
        }
    }

    /// A problem with a named file.
    pub fn file(path: &Path, reason: impl Into<String>) -> Self {
        Self::File {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// An I/O error opening or reading a named file.
    pub fn file_io(path: &Path, err: &io::Error) -> Self {
        let reason = match err.kind() {
            io::ErrorKind::NotFound => "no such file or directory".to_string(),
            io::ErrorKind::PermissionDenied => {
                "permission denied (check owner and mode)".to_string()
            }
            _ => err.to_string(),
        };
        Self::file(path, reason)
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
