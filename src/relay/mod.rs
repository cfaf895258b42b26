//! Moving one connection's bytes both ways: half-close, idle timeout, byte counts.
//!
//! [`relay`] is the seam between "a connection is established" and "how bytes move". Each
//! direction runs the [`splice`] engine where both its ends are fds the kernel can splice
//! (a kernel-TLS or plaintext TCP socket, a pipe or socket locally), the portable
//! [`buffered`] engine otherwise.
//!
//! Semantics, shared by every engine:
//! - each direction ends on its own: EOF on the plaintext source sends close_notify and a TCP
//!   FIN, close_notify from the peer closes the plaintext destination; the other direction
//!   keeps flowing (rsync depends on it);
//! - a TCP close without close_notify is an error, never a clean end;
//! - the connection fails if no byte moves either way for the idle timeout.

pub mod buffered;
pub mod splice;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::fastpath::CopyPath;
use buffered::{Fault, Pump};
use splice::{Plain, SplicePump, Spliceable};

/// One direction's engine: copy through a buffer, or splice through a pipe.
enum Way {
    Copy(Pump),
    Splice(SplicePump),
}

impl Way {
    /// Splice when both ends allow it and a pipe can be had; copy otherwise.
    fn choose(splice_ok: bool) -> Self {
        if splice_ok && let Ok(pump) = SplicePump::new() {
            return Self::Splice(pump);
        }
        Self::Copy(Pump::new())
    }

    fn done(&self) -> bool {
        match self {
            Self::Copy(p) => p.done,
            Self::Splice(p) => p.done,
        }
    }

    fn moved(&self) -> u64 {
        match self {
            Self::Copy(p) => p.moved,
            Self::Splice(p) => p.moved,
        }
    }

    fn stop_reading(&mut self) {
        match self {
            Self::Copy(p) => p.stop_reading(),
            Self::Splice(p) => p.stop_reading(),
        }
    }

    fn mark_done(&mut self) {
        match self {
            Self::Copy(p) => p.done = true,
            Self::Splice(p) => p.done = true,
        }
    }

    /// Local -> peer.
    fn poll_send<R, T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        local: &mut R,
        tls: &mut T,
        progress: &mut bool,
    ) -> Poll<Result<(), Fault>>
    where
        R: AsyncRead + Plain + Unpin,
        T: AsyncWrite + Spliceable + Unpin,
    {
        match self {
            Self::Copy(p) => p.poll_pump(cx, Pin::new(local), Pin::new(tls), progress),
            Self::Splice(p) => match (local.splice_end(), tls.splice_net()) {
                (Some(from), Some(to)) => p.poll_send(cx, from, to, progress),
                _ => Poll::Ready(Err(Fault::Read(vanished()))),
            },
        }
    }

    /// Peer -> local.
    fn poll_receive<T, W>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        tls: &mut T,
        local: &mut W,
        progress: &mut bool,
    ) -> Poll<Result<(), Fault>>
    where
        T: AsyncRead + Spliceable + Unpin,
        W: AsyncWrite + Plain + Unpin,
    {
        match self {
            Self::Copy(p) => p.poll_pump(cx, Pin::new(tls), Pin::new(local), progress),
            Self::Splice(p) => match (tls.splice_net(), local.splice_end()) {
                (Some(from), Some(to)) => p.poll_receive(cx, from, to, progress),
                _ => Poll::Ready(Err(Fault::Read(vanished()))),
            },
        }
    }
}

/// An end that offered an fd at the start and none later: a bug, reported, never a hang.
fn vanished() -> io::Error {
    io::Error::other("internal error: a spliced fd went away")
}

/// What a finished connection moved.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Plaintext bytes read locally and sent to the peer.
    pub sent: u64,
    /// Plaintext bytes received from the peer and written locally.
    pub received: u64,
    /// Time from the first byte of the relay to the end of both directions.
    pub elapsed: Duration,
    /// The engine that moved them.
    pub path: CopyPath,
}

/// Why a relay failed; every variant carries the counts moved so far.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Receiving from the peer failed (including truncation: EOF without close_notify).
    #[error("receiving from the peer: {source}")]
    PeerRead {
        /// The I/O error, possibly wrapping a rustls error.
        source: io::Error,
        /// Counts so far.
        partial: Transfer,
    },
    /// Sending to the peer failed.
    #[error("sending to the peer: {source}")]
    PeerWrite {
        /// The I/O error.
        source: io::Error,
        /// Counts so far.
        partial: Transfer,
    },
    /// Reading the local plaintext source failed.
    #[error("reading local input: {source}")]
    LocalRead {
        /// The I/O error.
        source: io::Error,
        /// Counts so far.
        partial: Transfer,
    },
    /// Writing the local plaintext destination failed.
    #[error("writing local output: {source}")]
    LocalWrite {
        /// The I/O error.
        source: io::Error,
        /// Counts so far.
        partial: Transfer,
    },
    /// Nothing moved for the idle timeout.
    #[error("no data moved in either direction for {idle:?} (--idle-timeout)")]
    Idle {
        /// The timeout that fired.
        idle: Duration,
        /// Counts so far.
        partial: Transfer,
    },
}

impl RelayError {
    /// The counts moved before the failure.
    pub fn partial(&self) -> Transfer {
        match self {
            Self::PeerRead { partial, .. }
            | Self::PeerWrite { partial, .. }
            | Self::LocalRead { partial, .. }
            | Self::LocalWrite { partial, .. }
            | Self::Idle { partial, .. } => *partial,
        }
    }

    /// The same failure with other counts (a striped stream's, for one of its links').
    pub fn with_partial(mut self, counts: Transfer) -> Self {
        match &mut self {
            Self::PeerRead { partial, .. }
            | Self::PeerWrite { partial, .. }
            | Self::LocalRead { partial, .. }
            | Self::LocalWrite { partial, .. }
            | Self::Idle { partial, .. } => *partial = counts,
        }
        self
    }
}

/// A periodic report of a running relay (the progress lines of a long SST).
#[derive(Clone)]
pub struct Progress {
    /// How often.
    pub every: Duration,
    /// Called with the counts so far.
    pub report: Arc<dyn Fn(&Transfer) + Send + Sync>,
}

/// How a relay ends besides both directions finishing, and what it reports on the way.
#[derive(Clone, Default)]
pub struct Options {
    /// Fail when nothing moves for this long; `None` disables the idle timeout.
    pub idle: Option<Duration>,
    /// Remote-shell semantics (ssh, stunnel's inetd client): once the peer has finished
    /// sending, stop reading local input, flush what was read, send close_notify and end.
    /// rsync waits for its remote shell to exit before closing the shell's stdin.
    pub end_with_peer: bool,
    /// Periodic progress reports; `None` for none.
    pub progress: Option<Progress>,
    /// Most TLS records the connection may still send (TLS 1.2's key usage limit); the relay
    /// fails before crossing it rather than let the stream end early. `None`: no limit.
    pub record_budget: Option<u64>,
}

/// Relays between an established TLS stream and a local plaintext reader/writer until both
/// directions have ended.
pub async fn relay<T, R, W>(
    tls: &mut T,
    mut local_in: R,
    local_out: W,
    options: Options,
) -> Result<Transfer, RelayError>
where
    T: AsyncRead + AsyncWrite + Spliceable + Unpin,
    R: AsyncRead + Plain + Unpin,
    W: AsyncWrite + Plain + Unpin,
{
    let started = Instant::now();
    let mut up = Way::choose(splice::usable(
        tls.splice_net(),
        local_in.splice_end(),
        false,
    ));
    if let Way::Copy(pump) = &mut up {
        pump.record_budget = options.record_budget;
    }
    let mut down = Way::choose(splice::usable(
        tls.splice_net(),
        local_out.splice_end(),
        true,
    ));
    let spliced = matches!(up, Way::Splice(_)) || matches!(down, Way::Splice(_));
    let path = match (tls.splice_net(), spliced) {
        (Some(splice::Net::Kernel(_)), true) => CopyPath::KernelSplice,
        (Some(splice::Net::Kernel(_)), false) => CopyPath::Kernel,
        _ => CopyPath::Buffered,
    };
    if spliced {
        debug!(
            up = matches!(up, Way::Splice(_)),
            down = matches!(down, Way::Splice(_)),
            "splicing"
        );
    }
    // Dropped once shut down, so a child's stdin really closes.
    let mut local_out = Some(local_out);
    let mut last_progress = Instant::now();
    let mut up_logged = false;
    let idle = options.idle;
    let mut timer = idle.map(|d| Box::pin(tokio::time::sleep(d)));
    let mut ticker = options
        .progress
        .as_ref()
        .map(|p| (p, Box::pin(tokio::time::sleep(p.every))));

    let snapshot = |up: &Way, down: &Way| Transfer {
        sent: up.moved(),
        received: down.moved(),
        elapsed: started.elapsed(),
        path,
    };

    poll_fn(|cx| {
        let mut progress = false;
        if options.end_with_peer && down.done() {
            up.stop_reading();
        }
        if !up.done()
            && let Poll::Ready(Err(fault)) =
                up.poll_send(cx, &mut local_in, &mut *tls, &mut progress)
        {
            let partial = snapshot(&up, &down);
            match fault {
                Fault::Read(source) => {
                    return Poll::Ready(Err(RelayError::LocalRead { source, partial }));
                }
                // Every byte is out and the peer already said goodbye: a peer that hangs up
                // right after its close_notify (stunnel's TIMEOUTclose = 0) cannot take ours.
                Fault::Shutdown(e) if down.done() && is_hangup(&e) => {
                    debug!("peer gone before our close_notify: {e}");
                    up.mark_done();
                }
                Fault::Write(source) | Fault::Shutdown(source) => {
                    // A peer that rejects us sends an alert and hangs up; our next write then
                    // fails with a bare EPIPE. If the alert is already here, it is the cause.
                    if let Some(alert) = pending_read_error(cx, &mut *tls) {
                        return Poll::Ready(Err(RelayError::PeerRead {
                            source: alert,
                            partial,
                        }));
                    }
                    return Poll::Ready(Err(RelayError::PeerWrite { source, partial }));
                }
            }
        }
        if let Some(out) = local_out.as_mut() {
            match down.poll_receive(cx, &mut *tls, out, &mut progress) {
                Poll::Ready(Ok(())) => {
                    debug!(
                        bytes = down.moved(),
                        "peer finished sending (close_notify); local output closed"
                    );
                    local_out = None;
                    if options.end_with_peer {
                        // Re-poll now so the input side winds down in this same wake-up.
                        cx.waker().wake_by_ref();
                    }
                }
                Poll::Ready(Err(fault)) => {
                    let partial = snapshot(&up, &down);
                    return Poll::Ready(Err(match fault {
                        Fault::Read(source) => RelayError::PeerRead { source, partial },
                        Fault::Write(source) | Fault::Shutdown(source) => {
                            RelayError::LocalWrite { source, partial }
                        }
                    }));
                }
                Poll::Pending => {}
            }
        }
        if up.done() && !up_logged {
            up_logged = true;
            debug!(bytes = up.moved(), "local input ended; close_notify sent");
        }
        if up.done() && down.done() {
            return Poll::Ready(Ok(snapshot(&up, &down)));
        }
        if let Some((progress, sleep)) = ticker.as_mut() {
            while sleep.as_mut().poll(cx).is_ready() {
                (progress.report)(&snapshot(&up, &down));
                sleep
                    .as_mut()
                    .reset(tokio::time::Instant::now() + progress.every);
            }
        }
        if let (Some(limit), Some(sleep)) = (idle, timer.as_mut()) {
            if progress {
                last_progress = Instant::now();
            }
            // Re-arm lazily: the timer only moves when it fires, not on every chunk.
            while sleep.as_mut().poll(cx).is_ready() {
                let quiet = last_progress.elapsed();
                if quiet >= limit {
                    return Poll::Ready(Err(RelayError::Idle {
                        idle: limit,
                        partial: snapshot(&up, &down),
                    }));
                }
                sleep
                    .as_mut()
                    .reset(tokio::time::Instant::now() + (limit - quiet));
            }
        }
        Poll::Pending
    })
    .await
}

/// Errors that mean "the peer's socket is already closed".
fn is_hangup(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

/// After a failed write, reads whatever the peer already sent (it is void now) to find a TLS
/// error such as a certificate alert; `None` when there is none to be had without waiting.
fn pending_read_error<T: AsyncRead + Unpin>(
    cx: &mut std::task::Context<'_>,
    tls: &mut T,
) -> Option<io::Error> {
    let mut scratch = [0u8; 4096];
    loop {
        let mut buf = tokio::io::ReadBuf::new(&mut scratch);
        match Pin::new(&mut *tls).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
            Poll::Ready(Err(e)) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                return Some(e);
            }
            _ => return None,
        }
    }
}
