//! The zero-copy engine: splice(2) through a pipe between a local fd and the socket, for
//! kernel-TLS connections (the kernel encrypts what it is given) and plaintext TCP (socat's
//! encrypt=0 forms). The payload never enters user space.
//!
//! Same semantics as the copy engine: each direction ends on its own; a kTLS peer's
//! close_notify (the splice reports EINVAL when a control record is next, which
//! [`KernelStream::poll_control`] then reads) ends the receiving direction, EOF without it is a
//! truncation; the sending direction ends with close_notify and a FIN. The pipe is only
//! filled when empty, so EAGAIN from a splice always means "the other fd is not ready".

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::{TcpStream, UnixStream};

use super::buffered::Fault;
use crate::fastpath;
use crate::handoff::ktls::{self, KernelStream};

/// An fd the reactor watches, in whichever wrapper owns it.
#[derive(Clone, Copy)]
pub enum Ready<'a> {
    /// A raw fd registered by us (stdio).
    Reactor(&'a AsyncFd<OwnedFd>),
    /// A TCP socket (the peer, or socat's plaintext TCP).
    Tcp(&'a TcpStream),
    /// A Unix socket (an exec'd child's socketpair).
    Unix(&'a UnixStream),
}

impl Ready<'_> {
    /// The fd, or `None` when splice cannot use it (a terminal, a device).
    fn spliceable(self) -> Option<Self> {
        let fd = match self {
            Self::Reactor(a) => a.get_ref().as_fd(),
            Self::Tcp(t) => t.as_fd(),
            Self::Unix(u) => u.as_fd(),
        };
        fastpath::splice_capable(fd).then_some(self)
    }

    /// Runs `op` on the fd once it is ready for `interest`; `op` returning WouldBlock clears
    /// the readiness and waits again.
    fn poll_op(
        self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let result = match self {
                Self::Reactor(a) => {
                    let mut guard = if interest.is_readable() {
                        ready!(a.poll_read_ready(cx))?
                    } else {
                        ready!(a.poll_write_ready(cx))?
                    };
                    match guard.try_io(|inner| op(inner.get_ref().as_fd())) {
                        Ok(result) => result,
                        Err(_would_block) => continue,
                    }
                }
                Self::Tcp(t) => {
                    if interest.is_readable() {
                        ready!(t.poll_read_ready(cx))?;
                    } else {
                        ready!(t.poll_write_ready(cx))?;
                    }
                    t.try_io(interest, || op(t.as_fd()))
                }
                Self::Unix(u) => {
                    if interest.is_readable() {
                        ready!(u.poll_read_ready(cx))?;
                    } else {
                        ready!(u.poll_write_ready(cx))?;
                    }
                    u.try_io(interest, || op(u.as_fd()))
                }
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

/// A plaintext end (stdin, stdout, a child's socket) that may take part in splice.
pub trait Plain {
    /// The fd to splice to or from; `None` (the default) keeps the copy engine.
    fn splice_end(&self) -> Option<Ready<'_>> {
        None
    }
}

impl<T: Plain + ?Sized> Plain for &mut T {
    fn splice_end(&self) -> Option<Ready<'_>> {
        (**self).splice_end()
    }
}

impl<T: Plain + ?Sized> Plain for Box<T> {
    fn splice_end(&self) -> Option<Ready<'_>> {
        (**self).splice_end()
    }
}

impl Plain for tokio::io::Empty {}
impl Plain for tokio::io::Sink {}

impl Plain for tokio::net::unix::OwnedReadHalf {
    fn splice_end(&self) -> Option<Ready<'_>> {
        Some(Ready::Unix(self.as_ref()))
    }
}

impl Plain for tokio::net::unix::OwnedWriteHalf {
    fn splice_end(&self) -> Option<Ready<'_>> {
        Some(Ready::Unix(self.as_ref()))
    }
}

/// The network side as the splice engine sees it.
pub enum Net<'a> {
    /// Plain TCP (socat encrypt=0): EOF is a clean end.
    Plain(&'a mut TcpStream),
    /// A kernel-TLS socket: EOF must follow close_notify.
    Kernel(&'a mut KernelStream),
}

/// A connection's network side that may be spliced.
pub trait Spliceable {
    /// `None` (the default): records are made in user space, so the copy engine runs.
    fn splice_net(&mut self) -> Option<Net<'_>> {
        None
    }
}

impl<T: Spliceable + ?Sized> Spliceable for &mut T {
    fn splice_net(&mut self) -> Option<Net<'_>> {
        (**self).splice_net()
    }
}

impl Spliceable for TcpStream {
    fn splice_net(&mut self) -> Option<Net<'_>> {
        Some(Net::Plain(self))
    }
}

impl<S> Spliceable for ktls::Stream<S> {
    fn splice_net(&mut self) -> Option<Net<'_>> {
        match self {
            Self::Kernel(k) => Some(Net::Kernel(k)),
            Self::Rustls(_) => None,
        }
    }
}

impl Net<'_> {
    fn ready(&self) -> Ready<'_> {
        match self {
            Self::Plain(t) => Ready::Tcp(t),
            Self::Kernel(k) => Ready::Tcp(k.tcp()),
        }
    }
}

/// Whether this connection's `from -> to` direction can splice.
pub fn usable(net: Option<Net<'_>>, local: Option<Ready<'_>>, receiving: bool) -> bool {
    let Some(net) = net else { return false };
    if receiving && matches!(&net, Net::Kernel(k) if k.has_preface()) {
        return false;
    }
    local.and_then(Ready::spliceable).is_some()
}

/// One direction moved by splice through its own pipe.
pub struct SplicePump {
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
    capacity: usize,
    /// Bytes in the pipe, not yet passed on.
    queued: usize,
    /// The source ended (or the relay stopped reading it).
    eof: bool,
    /// EOF seen, everything passed on, and (sending) the peer's side shut down.
    pub done: bool,
    /// Bytes delivered to the destination.
    pub moved: u64,
}

impl SplicePump {
    /// A pump with a fresh pipe.
    pub fn new() -> io::Result<Self> {
        let (pipe_r, pipe_w, capacity) = fastpath::splice_pipe()?;
        Ok(Self {
            pipe_r,
            pipe_w,
            capacity,
            queued: 0,
            eof: false,
            done: false,
            moved: 0,
        })
    }

    /// Treats the source as ended (remote-shell semantics), like the copy engine.
    pub fn stop_reading(&mut self) {
        self.eof = true;
    }

    /// Local fd -> network: splice in, splice out (within the key-usage limit), and at EOF
    /// close_notify (kTLS) and the FIN.
    pub fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        local: Ready<'_>,
        mut net: Net<'_>,
        progress: &mut bool,
    ) -> Poll<Result<(), Fault>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.queued == 0 && !self.eof {
                let (w, cap) = (self.pipe_w.as_fd(), self.capacity);
                match local.poll_op(cx, Interest::READABLE, |fd| fastpath::splice(fd, w, cap)) {
                    Poll::Ready(Ok(0)) => self.eof = true,
                    Poll::Ready(Ok(n)) => {
                        self.queued = n;
                        *progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Read(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.queued > 0 {
                if let Net::Kernel(k) = &mut net
                    && let Err(e) = ready!(k.poll_rekey(cx))
                {
                    return Poll::Ready(Err(Fault::Write(e)));
                }
                let len = match &net {
                    Net::Kernel(k) => k.send_allowance(self.queued).map_err(Fault::Write),
                    Net::Plain(_) => Ok(self.queued),
                };
                let len = match len {
                    Ok(len) => len,
                    Err(fault) => return Poll::Ready(Err(fault)),
                };
                let r = self.pipe_r.as_fd();
                match ready!(net.ready().poll_op(cx, Interest::WRITABLE, |fd| {
                    fastpath::splice(r, fd, len)
                })) {
                    Ok(n) => {
                        if let Net::Kernel(k) = &mut net {
                            k.charge(n);
                        }
                        self.queued -= n;
                        self.moved += n as u64;
                        *progress = true;
                    }
                    Err(e) => return Poll::Ready(Err(Fault::Write(ktls::kernel_error(e)))),
                }
                continue;
            }
            // EOF and the pipe is empty: end our direction.
            let shut = match &mut net {
                Net::Plain(t) => Pin::new(&mut **t).poll_shutdown(cx),
                Net::Kernel(k) => Pin::new(&mut **k).poll_shutdown(cx),
            };
            ready!(shut).map_err(Fault::Shutdown)?;
            self.done = true;
            return Poll::Ready(Ok(()));
        }
    }

    /// Network -> local fd: splice in (handling kTLS control records), splice out; done once
    /// the peer has finished (close_notify, or EOF on plain TCP). The relay then closes the
    /// local end.
    pub fn poll_receive(
        &mut self,
        cx: &mut Context<'_>,
        mut net: Net<'_>,
        local: Ready<'_>,
        progress: &mut bool,
    ) -> Poll<Result<(), Fault>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.queued == 0 && !self.eof {
                let (w, cap) = (self.pipe_w.as_fd(), self.capacity);
                let spliced = net
                    .ready()
                    .poll_op(cx, Interest::READABLE, |fd| fastpath::splice(fd, w, cap));
                // A socket the kernel aborted reports only EPOLLERR: see `ErrorWatch`.
                let spliced = match (spliced, &mut net) {
                    (Poll::Pending, Net::Kernel(k)) => k.poll_abort(cx).map(Err),
                    (spliced, _) => spliced,
                };
                match spliced {
                    Poll::Ready(Ok(0)) => match &mut net {
                        Net::Plain(_) => self.eof = true,
                        // An empty record splices as 0 too: only the end is a truncation.
                        Net::Kernel(k) => match k.empty_or_end() {
                            Ok(false) => continue,
                            Ok(true) => {
                                return Poll::Ready(Err(Fault::Read(
                                    io::ErrorKind::UnexpectedEof.into(),
                                )));
                            }
                            Err(e) => return Poll::Ready(Err(Fault::Read(e))),
                        },
                    },
                    Poll::Ready(Ok(n)) => {
                        if let Net::Kernel(k) = &mut net {
                            k.received(n);
                        }
                        self.queued = n;
                        *progress = true;
                    }
                    // The kernel has a control record next (alert, ticket, KeyUpdate).
                    Poll::Ready(Err(e)) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                        let Net::Kernel(k) = &mut net else {
                            return Poll::Ready(Err(Fault::Read(e)));
                        };
                        if let Err(e) = k.control_or_abort() {
                            return Poll::Ready(Err(Fault::Read(e)));
                        }
                        match ready!(k.poll_control(cx)) {
                            Ok(true) => self.eof = true,
                            Ok(false) => {}
                            Err(e) => return Poll::Ready(Err(Fault::Read(e))),
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(Fault::Read(ktls::kernel_error(e))));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.queued > 0 {
                let (r, len) = (self.pipe_r.as_fd(), self.queued);
                match ready!(
                    local.poll_op(cx, Interest::WRITABLE, |fd| fastpath::splice(r, fd, len))
                ) {
                    Ok(n) => {
                        self.queued -= n;
                        self.moved += n as u64;
                        *progress = true;
                    }
                    Err(e) => return Poll::Ready(Err(Fault::Write(e))),
                }
                continue;
            }
            self.done = true;
            return Poll::Ready(Ok(()));
        }
    }
}
