//! The platform seam: the only module that knows a kernel fast path exists.
//!
//! Everything above it (sessions, the relay, the commands) is portable and asks this module
//! whether the kernel can take over a connection's TLS records (kTLS), hands it the keys, and
//! moves records and bytes through the few syscalls that need it. On Linux the answers come
//! from `linux.rs`; everywhere else `portable.rs` says "unsupported" and the buffered rustls
//! path runs. All `unsafe` in the crate is behind this seam.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::ConnectionTrafficSecrets;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyPath {
    /// rustls in user space with large buffers: works everywhere.
    #[default]
    Buffered,
    /// The kernel encrypts and decrypts (kTLS); plaintext is copied through user space.
    Kernel,
    /// kTLS, and splice(2) moves the plaintext between the local fds and the socket: the
    /// payload never enters user space.
    KernelSplice,
}

impl fmt::Display for CopyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Buffered => "buffered",
            Self::Kernel => "ktls",
            Self::KernelSplice => "ktls+splice",
        })
    }
}

/// A record protection the kernel may implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-128-GCM.
    Aes128Gcm = 0,
    /// AES-256-GCM.
    Aes256Gcm = 1,
    /// ChaCha20-Poly1305.
    Chacha20Poly1305 = 2,
}

impl Cipher {
    /// The kernel cipher behind a TLS 1.2 or 1.3 suite (its AEAD is in the IANA name);
    /// `None` for suites the kernel cannot carry.
    pub fn of_suite(suite: rustls::CipherSuite) -> Option<Self> {
        let name = suite.as_str()?;
        if name.contains("AES_128_GCM") {
            Some(Self::Aes128Gcm)
        } else if name.contains("AES_256_GCM") {
            Some(Self::Aes256Gcm)
        } else if name.contains("CHACHA20_POLY1305") {
            Some(Self::Chacha20Poly1305)
        } else {
            None
        }
    }

    /// The kernel cipher for negotiated traffic secrets; `None` for anything else.
    pub fn of(secrets: &ConnectionTrafficSecrets) -> Option<Self> {
        match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { .. } => Some(Self::Aes128Gcm),
            ConnectionTrafficSecrets::Aes256Gcm { .. } => Some(Self::Aes256Gcm),
            ConnectionTrafficSecrets::Chacha20Poly1305 { .. } => Some(Self::Chacha20Poly1305),
            _ => None,
        }
    }
}

/// Which half of a connection a key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// What we send.
    Tx,
    /// What we receive.
    Rx,
}

/// The record layer version the kernel must speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (explicit nonces).
    Tls12,
    /// TLS 1.3 (inner content types, padding).
    Tls13,
}

/// Set by `--no-ktls` or `SST_TUNNEL_KTLS=off`: every connection stays buffered.
static KTLS_DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the kernel path off for this process (`--no-ktls`).
pub fn disable_ktls() {
    KTLS_DISABLED.store(true, Ordering::Relaxed);
}

/// Whether kernel TLS is off for this process (`--no-ktls`, `SST_TUNNEL_KTLS=off`).
pub fn ktls_disabled() -> bool {
    KTLS_DISABLED.load(Ordering::Relaxed)
        || std::env::var("SST_TUNNEL_KTLS").is_ok_and(|v| v == "off" || v == "0")
}

/// Whether to put ChaCha20-Poly1305 first (unless the cipher list says otherwise): it is the
/// suite the kernel can carry without a key-usage limit. AES-GCM must stop after 2^24.5
/// records (about 256 GiB) per key, and a kernel that cannot rekey (all before 6.14) would
/// then have to end the SST; a whole-cluster SST can be larger than that.
pub fn prefer_unlimited_cipher() -> bool {
    !ktls_disabled() && ktls_probe(Cipher::Chacha20Poly1305).is_ok()
}

/// Whether the kernel takes `cipher` both ways; probed once per process per cipher on a
/// throwaway loopback connection. `Err` gives the reason for a debug line.
pub fn ktls_probe(cipher: Cipher) -> Result<(), String> {
    imp::probe(cipher).map(|_| ())
}

/// Whether the kernel also takes new TLS 1.3 keys for `cipher` on a socket that has keys
/// (TLS 1.3 KeyUpdate; Linux 6.14 and later): from the same probe.
pub fn ktls_rekeys(cipher: Cipher) -> bool {
    imp::probe(cipher).unwrap_or(false)
}

/// Attaches the kernel's TLS layer to a connected socket (still plain TCP until keys are
/// set); failing here leaves the socket usable by user-space TLS.
pub fn ktls_attach(fd: BorrowedFd<'_>) -> io::Result<()> {
    imp::attach_ulp(fd)
}

/// Hands one direction's traffic secret and next record sequence number to the kernel.
pub fn ktls_set_keys(
    fd: BorrowedFd<'_>,
    direction: Direction,
    version: TlsVersion,
    seq: u64,
    secrets: &ConnectionTrafficSecrets,
) -> io::Result<()> {
    imp::set_keys(fd, direction, version, seq, secrets)
}

/// Non-blocking receive from a kTLS socket: `(content type, bytes)`; data records'
/// plaintext may be coalesced, a control record (alert, handshake) comes alone.
pub fn ktls_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(u8, usize)> {
    imp::recv_record(fd, buf)
}

/// A connected TCP socket's smoothed round trip (TCP_INFO), once the kernel has a sample.
pub fn tcp_rtt(fd: BorrowedFd<'_>) -> Option<std::time::Duration> {
    imp::tcp_rtt(fd)
}

/// Sets a TCP socket's congestion control (TCP_CONGESTION) by name.
pub fn set_congestion(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    imp::set_congestion(fd, name)
}

/// A TCP socket's congestion control (TCP_CONGESTION), as the kernel reports it.
pub fn congestion(fd: BorrowedFd<'_>) -> io::Result<String> {
    imp::congestion(fd)
}

/// The socket's pending error (SO_ERROR), taken: what an aborted kTLS socket reports.
pub fn socket_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    imp::socket_error(fd)
}

/// Non-blocking look at what a kTLS socket has next, without taking it: 0 only at the end.
pub fn ktls_peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    imp::peek_record(fd, buf)
}

/// Non-blocking send of one record of the given content type through kTLS.
pub fn ktls_send_record(fd: BorrowedFd<'_>, kind: u8, payload: &[u8]) -> io::Result<usize> {
    imp::send_record(fd, kind, payload)
}

/// A pipe to splice through: read end, write end, capacity in bytes (non-blocking,
/// close-on-exec, grown like [`enlarge_pipe`]).
pub fn splice_pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    imp::pipe()
}

/// One non-blocking splice(2) of at most `len` bytes from `from` to `to` (one is a pipe).
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    imp::splice(from, to, len)
}

/// Whether a local fd may be spliced (pipe, socket, regular file); `false` off Linux.
pub fn splice_capable(fd: BorrowedFd<'_>) -> bool {
    imp::splice_capable(fd)
}

/// Grows a pipe's kernel buffer to `bytes` (fewer wake-ups per megabyte), never shrinking
/// it; a no-op for other fds and other systems. Failure (a size above the user's limit) is
/// harmless and ignored.
pub fn enlarge_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    imp::enlarge_pipe(fd, bytes);
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

/// Reads from a non-blocking `fd` into the unfilled part of `buf`, without zeroing it first
/// (as tokio's own sockets read): a resumable stream's frames are fresh memory each time,
/// and zeroing 256 KiB before every read cost the donor a tenth of its CPU.
pub fn read_uninit(fd: BorrowedFd<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> io::Result<usize> {
    imp::read_uninit(fd, buf)
}

/// Registers an fd we own with the reactor; gives it back if epoll refuses it (regular files,
/// /dev/null).
#[allow(unsafe_code)]
pub fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, OwnedFd> {
    // SAFETY: tokio requires that the fd stays open and is not replaced while registered.
    // `fd` is owned, and the AsyncFd that owns it closes it only after deregistering.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().0)
}
