//! Standard input and output as async byte streams, without tokio's blocking-pool stdio.
//!
//! `tokio::io::stdin()/stdout()` hand every call to a helper thread (an extra copy and a thread
//! hop per chunk). Instead fd 0 and fd 1 are switched to O_NONBLOCK and driven by the reactor
//! through `AsyncFd`. epoll refuses regular files and /dev/null; for those the blocking-pool
//! handles are the fallback, which is fine because such fds never block for long anyway.
//! The original file status flags are restored on drop, so a shared terminal or pipe is left
//! as we found it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::fastpath;
use crate::relay::splice::{Plain, Ready};

/// What stdin and stdout pipes are grown to: 1 MiB, the most an unprivileged process may ask
/// for by default (`/proc/sys/fs/pipe-max-size`), and a resumable stream's whole frame, so a
/// donor whose feeder is ahead reads a frame in one call ([`crate::ends::resume`]).
const PIPE_BYTES: usize = 1 << 20;

/// A local input the relay can read, and splice from where it is an fd.
pub trait PlainRead: AsyncRead + Plain + Unpin + Send {}
impl<T: AsyncRead + Plain + Unpin + Send> PlainRead for T {}

/// A local output the relay can write, and splice to where it is an fd.
pub trait PlainWrite: AsyncWrite + Plain + Unpin + Send {}
impl<T: AsyncWrite + Plain + Unpin + Send> PlainWrite for T {}

/// A duplicate of fd 0 or fd 1, non-blocking and registered with the reactor.
///
/// A duplicate (not fd 0/1 itself) is registered so the reactor owns exactly what it polls;
/// O_NONBLOCK lives on the shared open file description, so it applies to fd 0/1 as well and
/// is put back on drop.
pub struct Nonblocking {
    fd: AsyncFd<OwnedFd>,
    original: OFlag,
}

impl Nonblocking {
    /// `None` (flags restored) when the fd cannot be duplicated or epoll refuses it.
    fn new(fd: BorrowedFd<'_>) -> Option<Self> {
        let dup = fd.try_clone_to_owned().ok()?;
        let original = OFlag::from_bits_truncate(fcntl(&dup, FcntlArg::F_GETFL).ok()?);
        fcntl(&dup, FcntlArg::F_SETFL(original | OFlag::O_NONBLOCK)).ok()?;
        match fastpath::register(dup) {
            Ok(fd) => {
                fastpath::enlarge_pipe(fd.get_ref().as_fd(), PIPE_BYTES);
                Some(Self { fd, original })
            }
            Err(dup) => {
                let _ = fcntl(&dup, FcntlArg::F_SETFL(original));
                None
            }
        }
    }
}

impl Drop for Nonblocking {
    fn drop(&mut self) {
        let _ = fcntl(self.fd.get_ref(), FcntlArg::F_SETFL(self.original));
    }
}

/// Async standard input.
pub enum StdinReader {
    /// Reactor-driven fd 0.
    Reactor(Nonblocking),
    /// Blocking-pool fallback for regular files and /dev/null.
    Pool(tokio::io::Stdin),
}

/// Async standard output; shutting it down closes the pipe (fd 1 then points at /dev/null).
pub enum StdoutWriter {
    /// Reactor-driven fd 1.
    Reactor(Nonblocking),
    /// Blocking-pool fallback for regular files and /dev/null.
    Pool(tokio::io::Stdout),
}

impl StdinReader {
    /// Wraps fd 0.
    pub fn open() -> Self {
        match Nonblocking::new(io::stdin().as_fd()) {
            Some(nb) => Self::Reactor(nb),
            None => Self::Pool(tokio::io::stdin()),
        }
    }
}

impl StdoutWriter {
    /// Wraps fd 1.
    pub fn open() -> Self {
        match Nonblocking::new(io::stdout().as_fd()) {
            Some(nb) => Self::Reactor(nb),
            None => Self::Pool(tokio::io::stdout()),
        }
    }
}

impl AsyncRead for StdinReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pool(stdin) => Pin::new(stdin).poll_read(cx, buf),
            Self::Reactor(nb) => loop {
                let mut guard = ready!(nb.fd.poll_read_ready(cx))?;
                match guard.try_io(|fd| fastpath::read_uninit(fd.get_ref().as_fd(), buf)) {
                    Ok(Ok(_)) => return Poll::Ready(Ok(())),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

impl AsyncWrite for StdoutWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Pool(stdout) => Pin::new(stdout).poll_write(cx, data),
            Self::Reactor(nb) => loop {
                let mut guard = ready!(nb.fd.poll_write_ready(cx))?;
                match guard
                    .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
                {
                    Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(_would_block) => continue,
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pool(stdout) => Pin::new(stdout).poll_flush(cx),
            Self::Reactor(_) => Poll::Ready(Ok(())),
        }
    }

    /// Ends our output: a socket gets `shutdown(SHUT_WR)` (a FIN even when fd 0 shares the
    /// socket, as with rsync's remote shell), and fd 1 is pointed at /dev/null so that, once
    /// this writer and its duplicate are dropped, a pipe reader sees EOF now rather than at exit.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Self::Pool(stdout) = self.get_mut() {
            ready!(Pin::new(stdout).poll_flush(cx))?;
        }
        match socket::shutdown(io::stdout().as_raw_fd(), socket::Shutdown::Write) {
            Ok(()) | Err(Errno::ENOTSOCK) | Err(Errno::ENOTCONN) => {}
            Err(e) => return Poll::Ready(Err(e.into())),
        }
        let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        nix::unistd::dup2_stdout(&devnull)?;
        Poll::Ready(Ok(()))
    }
}

/// Which ways bytes flow between stdio and the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// stdin -> peer and peer -> stdout, each ending on its own (the native commands).
    Both,
    /// stdin -> peer only; stdout is never touched and whatever the peer sends is discarded
    /// (socat `-u stdio openssl-connect:`: the donor's fd 1 is mysqld's protocol pipe).
    SendOnly,
    /// peer -> stdout only; stdin is never read (socat `-u openssl-listen: stdio`). Our
    /// close_notify follows the peer's, so a peer without TLS half-close is not cut short.
    ReceiveOnly,
}

/// The plaintext ends of one stdio session, as the relay takes them.
pub struct LocalEnds {
    /// Bytes to send to the peer.
    pub input: Box<dyn PlainRead>,
    /// Where the peer's bytes go.
    pub output: Box<dyn PlainWrite>,
    /// End once the peer has finished (see `relay::Options::end_with_peer`).
    pub end_with_peer: bool,
}

impl LocalEnds {
    /// Opens stdin/stdout as `direction` needs them; `end_with_peer` asks for remote-shell
    /// semantics in the two-way case.
    pub fn open(direction: Direction, end_with_peer: bool) -> Self {
        match direction {
            Direction::Both => Self {
                input: Box::new(StdinReader::open()),
                output: Box::new(StdoutWriter::open()),
                end_with_peer,
            },
            Direction::SendOnly => Self {
                input: Box::new(StdinReader::open()),
                output: Box::new(tokio::io::sink()),
                end_with_peer: false,
            },
            Direction::ReceiveOnly => Self {
                input: Box::new(Silent),
                output: Box::new(StdoutWriter::open()),
                end_with_peer: true,
            },
        }
    }
}

/// An input that never yields a byte and never ends: the relay stops reading it once the
/// peer has finished (`end_with_peer`), then sends close_notify.
struct Silent;

impl Plain for Silent {}

impl Plain for StdinReader {
    fn splice_end(&self) -> Option<Ready<'_>> {
        match self {
            Self::Reactor(nb) => Some(Ready::Reactor(&nb.fd)),
            Self::Pool(_) => None,
        }
    }
}

impl Plain for StdoutWriter {
    fn splice_end(&self) -> Option<Ready<'_>> {
        match self {
            Self::Reactor(nb) => Some(Ready::Reactor(&nb.fd)),
            Self::Pool(_) => None,
        }
    }
}

impl AsyncRead for Silent {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // No waker is kept: the relay is woken by the peer's side, which ends this one.
        Poll::Pending
    }
}
