//! The platform seam: the only module that knows a kernel fast path exists.
//!
//! Everything above it (the relay, the commands) is portable and asks this module two things:
//! which copy path a connection may use, and how to tune a plaintext fd. On Linux the answers
//! come from `linux.rs`; everywhere else `portable.rs` answers "buffered" and does nothing.
//! The kernel-TLS + splice path of a later issue plugs in here, behind the same functions.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};

use tokio::io::unix::AsyncFd;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
use portable as imp;

/// The engine that moves a connection's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPath {
    /// rustls in user space with large buffers: works everywhere.
    Buffered,
}

impl fmt::Display for CopyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Buffered => "buffered",
        })
    }
}

/// Chooses the copy path for a connection. Today always [`CopyPath::Buffered`]; the kTLS
/// probe decides here once it exists.
pub fn choose_path() -> CopyPath {
    CopyPath::Buffered
}

/// Makes a pipe's kernel buffer large (fewer wake-ups per megabyte); a no-op for other fds
/// and other systems. Failure is harmless and ignored.
pub fn enlarge_pipe(fd: BorrowedFd<'_>) {
    imp::enlarge_pipe(fd);
}

/// Tunes the allocator for a long stream of record-sized buffers; call once at start-up,
/// before any other thread exists.
pub fn tune_allocator() {
    imp::tune_allocator();
}

/// Sets the process name (`comm`) that `ss -p`, `ps` and `lsof -c` show: the SST scripts
/// find their listener by it. Call from the main thread before any other thread exists.
pub fn set_process_name(name: &str) {
    imp::set_process_name(name);
}

/// Registers an fd we own with the reactor; gives it back if epoll refuses it (regular files,
/// /dev/null).
#[allow(unsafe_code)]
pub fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, OwnedFd> {
    // SAFETY: tokio requires that the fd stays open and is not replaced while registered.
    // `fd` is owned, and the AsyncFd that owns it closes it only after deregistering.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().0)
}
