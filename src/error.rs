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
    /// `check` found problems (each already printed as a finding); exit status as `Cert`.
    #[error("{0}")]
    Check(String),
    /// The TCP connection could not be made or the listening socket not opened.
    #[error("{0}")]
    Connect(String),
    /// The TLS handshake failed for a reason other than certificates.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The data transfer failed after the handshake.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// A signal ended the run (the SST script aborting it): not a failure of ours.
    #[error("transfer aborted by signal {0} ({name})", name = signal_name(*.0))]
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
            Self::Cert(_) | Self::Check(_) => EXIT_CERT,
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

/// A signal's name (`SIGTERM`), as nix knows it.
fn signal_name(signo: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signo).map_or("a signal", |s| s.as_str())
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Text a peer chose (certificate names, SNI, alert descriptions) made safe for one log or
/// error line: control characters (a newline would forge a log line), the Unicode controls
/// that reorder or hide text, and the backslash itself come out as Rust-style escapes; all
/// else is kept. Every piece of peer-supplied text goes through here before it is printed.
pub fn escape(text: &str) -> String {
    let hidden = |c: char| matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
    if !text
        .chars()
        .any(|c| c.is_control() || hidden(c) || c == '\\')
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn peer_text_stays_on_one_line() {
        assert_eq!(escape("CN=node1, O=Example"), "CN=node1, O=Example");
        assert_eq!(
            escape("CN=x\n2026-01-01T00:00:00Z  INFO forged"),
            "CN=x\\n2026-01-01T00:00:00Z  INFO forged"
        );
        assert_eq!(escape("a\r\t\u{1b}[31m\\"), "a\\r\\t\\u{1b}[31m\\\\");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("Zürich"), "Zürich");
    }
}
