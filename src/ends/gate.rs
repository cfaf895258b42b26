//! The listener's door while it waits for its verified peer: newcomers are handshaken side by
//! side, a connection that fails is logged and dropped, and the wait goes on.
//!
//! A joiner expects one donor (or one donor's stripes), but anything can knock first: a port
//! scanner, a monitoring check, a plaintext probe, a half-open connection that never speaks.
//! None of them may end the SST (stock socat exits on the first), and none may starve the real
//! donor: past [`PENDING`] handshakes in flight, or when descriptors run out, the oldest
//! connection that has not sent a byte for [`GRACE`] makes room, so connections that hold a
//! slot and never speak are pushed out by the ones behind them, while a real client, whose
//! ClientHello comes at once, keeps its slot (only at twice the cap does the oldest go,
//! whatever it is). Running out of descriptors (EMFILE, ENFILE) or an aborted connection
//! (ECONNABORTED) is a pause, never the end: a silent pending connection gives its descriptor
//! back, or the loop backs off. Refusals are logged one line each, escaped, and at most [`LOG_BURST`] per
//! [`LOG_WINDOW`], so a flood cannot flood the SST log as well.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::error::Error;
use crate::error::escape;

/// Handshakes running at once while waiting; a newcomer beyond this evicts a silent one.
pub const PENDING: usize = 64;
/// How long a newcomer may stay silent before it may be dropped for another.
const GRACE: Duration = Duration::from_millis(250);
/// Refusal lines logged per window before the rest are only counted.
const LOG_BURST: u32 = 10;
/// The window for [`LOG_BURST`].
const LOG_WINDOW: Duration = Duration::from_secs(10);
/// First pause after a failed accept; doubled up to [`BACKOFF_MAX`] while it keeps failing.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Rate-limited refusal lines: one line each for the first [`LOG_BURST`] in a window, then a
/// count of the ones not shown when the next window opens. A peer refused for its certificate
/// is always shown: it got through a whole handshake (no cheap flood), and it is most likely
/// the real donor with the wrong files, whose reason the DBA needs.
#[derive(Debug)]
pub struct Refusals {
    window: Instant,
    shown: u32,
    hidden: u64,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            window: Instant::now(),
            shown: 0,
            hidden: 0,
        }
    }
}

impl Refusals {
    /// Logs (or counts) one refused connection; `why` may carry peer-supplied text, so it is
    /// escaped onto one line.
    pub fn note(&mut self, from: SocketAddr, why: &str, always: bool) {
        if self.window.elapsed() >= LOG_WINDOW {
            if self.hidden > 0 {
                warn!(
                    "{} more connections refused in the last {:?} (not shown)",
                    self.hidden, LOG_WINDOW
                );
            }
            *self = Self::default();
        }
        if always || self.shown < LOG_BURST {
            self.shown += 1;
            warn!("refused a connection from {from}: {}", escape(why));
        } else {
            self.hidden += 1;
        }
    }
}

/// A pending connection as eviction sees it.
struct Entry {
    handle: AbortHandle,
    accepted: Instant,
    spoke: Arc<AtomicBool>,
}

/// Sleeps until `when`, or for ever.
async fn sleep_until_some(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

/// A refusal in which a certificate was judged: the peer's was rejected, or the peer
/// rejected ours. A peer that presented none (a scanner, a health check) is not one.
fn rejects_a_certificate(e: &Error) -> bool {
    matches!(e, Error::Cert(text) if !text.starts_with(crate::tls::NO_CLIENT_CERTIFICATE))
}

/// Handshakes in flight for one wait, oldest first.
pub struct Pending<T> {
    set: JoinSet<(SocketAddr, Result<T, Error>)>,
    order: VecDeque<Entry>,
}

impl<T: Send + 'static> Default for Pending<T> {
    fn default() -> Self {
        Self {
            set: JoinSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T: Send + 'static> Pending<T> {
    /// Handshakes still running.
    fn running(&mut self) -> usize {
        self.order.retain(|e| !e.handle.is_finished());
        self.order.len()
    }

    /// Drops the oldest connection that has sent nothing for [`GRACE`] (a real client's
    /// ClientHello follows its connect at once; the grace covers the moments before it
    /// lands). When none qualifies: when the next will (`None`: nobody is silent).
    fn evict_silent(&mut self) -> Result<(), Option<Instant>> {
        self.running();
        let silent = self
            .order
            .iter()
            .position(|e| !e.spoke.load(Ordering::Relaxed));
        let Some(at) = silent else {
            return Err(None);
        };
        let since = self.order[at].accepted;
        if since.elapsed() < GRACE {
            return Err(Some(since + GRACE));
        }
        if let Some(entry) = self.order.remove(at) {
            entry.handle.abort();
        }
        Ok(())
    }

    fn start<F, Fut>(&mut self, tcp: TcpStream, from: SocketAddr, silence: Duration, check: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        // Over the cap: silent ones go first; only far over it does the oldest go whatever
        // it is, so the number in flight stays bounded under any flood.
        while self.running() >= PENDING {
            if self.evict_silent().is_ok() {
                continue;
            }
            if self.order.len() < 2 * PENDING {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                oldest.handle.abort();
            }
        }
        let spoke = Arc::new(AtomicBool::new(false));
        let flag = spoke.clone();
        let handle = self.set.spawn(async move {
            // A peer that says nothing within the handshake time is not a client. (A peek,
            // not readiness alone: readiness can be reported before any byte is there.)
            let mut first = [0u8; 1];
            match tokio::time::timeout(silence, tcp.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => flag.store(true, Ordering::Relaxed),
                Ok(Ok(_)) => {
                    let closed = "closed the connection without sending anything".to_string();
                    return (from, Err(Error::Handshake(closed)));
                }
                Ok(Err(e)) => return (from, Err(Error::Handshake(format!("socket: {e}")))),
                Err(_) => {
                    return (
                        from,
                        Err(Error::Handshake(format!("sent nothing within {silence:?}"))),
                    );
                }
            }
            (from, check(tcp).await)
        });
        self.order.push_back(Entry {
            handle,
            accepted: Instant::now(),
            spoke,
        });
    }
}

/// A listening socket and the refusals seen on it.
pub struct Gate {
    listener: TcpListener,
    refusals: Refusals,
    backoff: Duration,
    handshake: Duration,
    /// A handshake was dropped to free a descriptor and has not been reaped yet: accepting
    /// again before it is would only fail again (and drop another).
    freeing: bool,
    /// How long to go on waiting once a TLS peer's certificate was rejected (`None`: for
    /// ever), and the first such rejection with when it came.
    after_rejection: Option<Duration>,
    rejected: Option<(Instant, Error)>,
}

impl Gate {
    /// Wraps an open listener; `handshake` bounds how long a newcomer may stay silent.
    pub fn new(listener: TcpListener, handshake: Duration) -> Self {
        Self {
            listener,
            refusals: Refusals::default(),
            backoff: BACKOFF_MIN,
            handshake,
            freeing: false,
            after_rejection: None,
            rejected: None,
        }
    }

    /// Gives the wait an end once a peer's certificate has been rejected, or ours by a peer:
    /// that is most likely the donor itself with the wrong files, whose SST has then failed
    /// (stock socat exits at once, and the SST scripts count on the port coming free). Other
    /// refusals (garbage, plaintext, silence, no certificate at all) never end the wait.
    pub fn give_up_after_rejection(&mut self, grace: Duration) {
        self.after_rejection = Some(grace);
    }

    /// Waits for ever again, whatever was rejected before: a stream that is already under
    /// way keeps its port open for a resuming connection, which no stray one may end.
    pub fn keep_waiting(&mut self) {
        self.after_rejection = None;
        self.rejected = None;
    }

    /// The next connection that passes `check` (its handshake and whatever else it must
    /// prove), with where it came from. Connections that fail are logged and dropped, accept
    /// errors are waited out; it fails only past [`Gate::give_up_after_rejection`]'s grace,
    /// with the first rejection. The caller bounds the wait otherwise (a deadline around this
    /// call, or the SST script's own timeout); `pending` survives a cancelled call.
    pub async fn next<T, F, Fut>(
        &mut self,
        pending: &mut Pending<T>,
        check: F,
    ) -> Result<(SocketAddr, T), Error>
    where
        T: Send + 'static,
        F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        loop {
            let give_up = match (&self.rejected, self.after_rejection) {
                (Some((at, _)), Some(grace)) => Some(*at + grace),
                _ => None,
            };
            tokio::select! {
                () = sleep_until_some(give_up) => {
                    if let Some((_, first)) = self.rejected.take() {
                        return Err(first);
                    }
                }
                accepted = self.listener.accept(), if !self.freeing => match accepted {
                    Ok((tcp, from)) => {
                        self.backoff = BACKOFF_MIN;
                        debug!(%from, "accepted");
                        pending.start(tcp, from, self.handshake, check.clone());
                    }
                    Err(e) => self.accept_failed(pending, &e).await,
                },
                Some(done) = pending.set.join_next() => match done {
                    Ok((from, Ok(value))) => {
                        self.freeing = false;
                        return Ok((from, value));
                    }
                    Ok((from, Err(e))) => {
                        self.freeing = false;
                        let certificate = matches!(e, Error::Cert(_));
                        self.refusals.note(from, &e.to_string(), certificate);
                        if self.rejected.is_none() && rejects_a_certificate(&e) {
                            self.rejected = Some((Instant::now(), e));
                        }
                    }
                    // Evicted (its socket is closed now) or a panic in a check: nothing to
                    // hand over.
                    Err(e) if e.is_cancelled() => self.freeing = false,
                    Err(e) => warn!("a connection's check failed: {e}"),
                },
            }
        }
    }

    /// Logs a refused connection the caller decided on itself (after `next` handed it over).
    pub fn refuse(&mut self, from: SocketAddr, why: &str) {
        self.refusals.note(from, why, true);
    }

    /// Out of descriptors: give one back (a pending handshake, silent ones first) and try
    /// again; with none to give back, or on any other error (an aborted connection, a
    /// signal), pause, doubling the pause while it repeats.
    async fn accept_failed<T: Send + 'static>(&mut self, pending: &mut Pending<T>, e: &io::Error) {
        let out_of_fds = matches!(
            e.raw_os_error(),
            Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE
                || code == nix::libc::ENOBUFS || code == nix::libc::ENOMEM
        );
        // Only a connection that has said nothing for a while is given up for a
        // descriptor: one that has sent its ClientHello may be the donor.
        if out_of_fds {
            match pending.evict_silent() {
                Ok(()) => {
                    debug!("accept failed ({e}): dropped a silent connection to free a descriptor");
                    self.freeing = true;
                    return;
                }
                Err(Some(when)) => {
                    tokio::time::sleep_until(when).await;
                    return;
                }
                Err(None) => {}
            }
        }
        warn!("accept failed ({e}): retrying in {:?}", self.backoff);
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}
