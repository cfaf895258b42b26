//! The portable twin of `linux.rs`: no fast path, nothing to tune.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustls::ConnectionTrafficSecrets;

use super::{Cipher, Direction, TlsVersion};

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "kernel TLS needs Linux")
}

/// No kernel TLS outside Linux.
pub(super) fn probe(_cipher: Cipher) -> Result<bool, String> {
    Err("kernel TLS needs Linux".into())
}

pub(super) fn attach_ulp(_fd: BorrowedFd<'_>) -> io::Result<()> {
    Err(unsupported())
}

pub(super) fn set_keys(
    _fd: BorrowedFd<'_>,
    _direction: Direction,
    _version: TlsVersion,
    _seq: u64,
    _secrets: &ConnectionTrafficSecrets,
) -> io::Result<()> {
    Err(unsupported())
}

pub(super) fn recv_record(_fd: BorrowedFd<'_>, _buf: &mut [u8]) -> io::Result<(u8, usize)> {
    Err(unsupported())
}

pub(super) fn tcp_rtt(_fd: BorrowedFd<'_>) -> Option<std::time::Duration> {
    None
}

pub(super) fn set_congestion(_fd: BorrowedFd<'_>, _name: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "choosing a congestion control needs Linux",
    ))
}

pub(super) fn congestion(_fd: BorrowedFd<'_>) -> io::Result<String> {
    Err(unsupported())
}

/// No kernel TLS here, so no aborted kTLS socket to ask.
pub(super) fn socket_error(_fd: BorrowedFd<'_>) -> Option<io::Error> {
    None
}

pub(super) fn peek_record(_fd: BorrowedFd<'_>, _buf: &mut [u8]) -> io::Result<usize> {
    Err(unsupported())
}

pub(super) fn send_record(_fd: BorrowedFd<'_>, _kind: u8, _payload: &[u8]) -> io::Result<usize> {
    Err(unsupported())
}

/// Pipes cannot be resized portably; the default size is used.
pub(super) fn enlarge_pipe(_fd: BorrowedFd<'_>, _bytes: usize) {}

/// The allocator keeps its defaults.
pub(super) fn tune_allocator() {}

/// Process names are left as the executable's name.
pub(super) fn set_process_name(_name: &str) {}

pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    Err(unsupported())
}

pub(super) fn splice(_from: BorrowedFd<'_>, _to: BorrowedFd<'_>, _len: usize) -> io::Result<usize> {
    Err(unsupported())
}

/// No splice outside Linux: every local end is copied.
pub(super) fn splice_capable(_fd: BorrowedFd<'_>) -> bool {
    false
}

/// The same read, zeroing the room first (safe code only).
pub(super) fn read_uninit(
    fd: BorrowedFd<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> io::Result<usize> {
    let n = nix::unistd::read(fd, buf.initialize_unfilled()).map_err(io::Error::from)?;
    buf.advance(n);
    Ok(n)
}
