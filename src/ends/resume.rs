//! Resuming: one stream that outlives its TCP connection. When both ends are sst-tunnel
//! (agreed in the handshake, [`ALPN`]), the bytes go in frames that carry their offset in the
//! stream, each end acknowledges what it has handed to its local side, and each end keeps
//! what the other has not acknowledged yet in a bounded replay buffer. When the connection
//! breaks (a reset, a close without close_notify, a silent path), the dialling end dials
//! again and the listening end waits for it; the new connection is a full handshake with
//! the same verification, must present the first connection's peer certificate, and proves
//! it belongs to this stream with the binding secret striping uses ([`super::stripes`]).
//! Each end then tells the other how much it has delivered, and both resend from there:
//! nothing is delivered twice and nothing is skipped. A stream still ends only with both
//! ends' end frames acknowledged and close_notify; a break longer than the window fails it.
//!
//! Wire format, inside TLS, both ways: a 13-byte header (kind, offset u64, length u32,
//! big-endian), then the payload.
//! - `DATA(offset, len)`: `len` bytes of the stream starting at `offset`.
//! - `ACK(offset, flag)`: everything before `offset` is delivered; `flag` (the length field,
//!   no payload) 1 once the sender's end frame has been received too. Sent first on every
//!   connection (where to resume), then as data is delivered, and as a heartbeat.
//! - `END(offset)`: the stream this way ends at `offset`.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf, ReadHalf, WriteHalf,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use rustls::{ClientConfig, ServerConfig};

use crate::error::Error;
use crate::fastpath::CopyPath;
use crate::relay::splice::Spliceable;
use crate::relay::{RelayError, Transfer};

/// The ALPN protocol of a resumable single stream.
pub const ALPN: &[u8] = b"sst-tunnel/resume/1";
/// The longest a stream may stay disconnected by default: for now, never. Resuming copies
/// every byte three more times on each side than the relay does (through the link's pipe
/// and the carrier), which cost a third of the single-stream throughput in the loopback
/// benchmark (docs/benchmarks.md); it is on by default once the carrier reads and writes
/// the local ends itself. 120 s (the stock scripts' own idle timeouts) is the window to ask
/// for.
pub const DEFAULT_WINDOW: Duration = Duration::ZERO;
/// Unacknowledged bytes each end keeps for resending: enough for a long fat path (64 MiB
/// is 50 ms at 10 Gbit/s); a sender whose buffer is full waits for acknowledgements.
pub const REPLAY: usize = 64 << 20;
/// What a resuming connection presents first: the stream's binding secret, then this.
pub const RESUME_MARK: [u8; 2] = [0, 1];

/// A client configuration that also offers to resume (unchanged when `window` is zero). A
/// listener that agrees to stripe takes that instead: striped streams do not resume yet.
pub fn offer(config: Arc<ClientConfig>, window: Duration) -> Arc<ClientConfig> {
    if window.is_zero() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.push(ALPN.to_vec());
    Arc::new(config)
}

/// A server configuration that also agrees to resume, after any striping it agrees to
/// (unchanged when `window` is zero).
pub fn accept(config: Arc<ServerConfig>, window: Duration) -> Arc<ServerConfig> {
    if window.is_zero() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.push(ALPN.to_vec());
    Arc::new(config)
}

/// The window the stunnel and socat front-ends use: `SST_TUNNEL_RESUME_WINDOW` (a duration;
/// `0` turns resuming off), by default [`DEFAULT_WINDOW`].
pub fn window_from_env() -> Result<Duration, Error> {
    match std::env::var("SST_TUNNEL_RESUME_WINDOW") {
        Err(_) => Ok(DEFAULT_WINDOW),
        Ok(text) => crate::settings::parse_duration(&text)
            .map_err(|why| Error::Usage(format!("SST_TUNNEL_RESUME_WINDOW: {why}"))),
    }
}

/// Whether the handshake agreed to resume: the protocol, over TLS 1.3 only (a TLS 1.2
/// connection has a record limit the frames would have to count; one that meets it ends).
pub fn agreed(alpn: Option<&[u8]>, tls13: bool) -> bool {
    alpn == Some(ALPN) && tls13
}

const DATA: u8 = 0;
const ACK: u8 = 1;
const END: u8 = 2;
const ABORT: u8 = 3;
/// The longest reason an abort frame carries.
const ABORT_MAX: usize = 1024;
const HEADER: usize = 13;
/// Payload bytes per frame at most.
const CHUNK: usize = 64 * 1024;
/// Acknowledge at least every this many delivered bytes...
const ACK_EVERY: u64 = 1 << 20;
/// ...and no later than this after a delivery.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// An idle connection says it is alive this often...
const HEARTBEAT: Duration = Duration::from_secs(2);
/// ...and one silent for this long is taken for broken (a black hole: no reset, nothing
/// moves), so the stream resumes instead of waiting for TCP to give up.
const SILENCE: Duration = Duration::from_secs(10);

/// A connection a link runs over: any verified TLS stream.
pub trait Carrier: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Carrier for T {}

/// A boxed connection.
pub type Conn = Box<dyn Carrier>;

/// A dialled, verified and bound new connection, or why not (`Err(true)`: fatal).
pub type Redial = Pin<Box<dyn Future<Output = Result<Conn, (Error, bool)>> + Send>>;

/// How a broken link gets its next connection.
pub enum Again {
    /// The dialling end: dials, handshakes, checks and binds a new connection.
    Dial(Box<dyn FnMut() -> Redial + Send>),
    /// The listening end: connections arrive here already verified and bound.
    Accept(mpsc::Receiver<Conn>),
}

/// Why a link failed, with how far the stream got: bytes the peer acknowledged, bytes
/// delivered here.
#[derive(Debug)]
pub struct Failed {
    /// One line, naming the peer.
    pub why: String,
    /// Sent and acknowledged.
    pub sent: u64,
    /// Received and delivered.
    pub received: u64,
}

/// How a link ended well.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Connections that replaced a broken one.
    pub resumptions: u32,
}

/// The local end of a link: what the relay reads and writes.
pub struct Link {
    app: DuplexStream,
    /// Tells the carrier this end has stopped before the stream was over (a local failure,
    /// a signal): it sends an abort frame, so the peer fails at once instead of waiting for
    /// a connection that will never come.
    abort: Option<oneshot::Sender<String>>,
}

impl Link {
    /// Stops the stream for `reason`, telling the peer.
    pub fn abort(&mut self, reason: &str) {
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(reason.to_string());
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // After a clean end the carrier is gone and this goes nowhere.
        self.abort("it stopped before the end of the stream (stream truncated)");
    }
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.app).poll_read(cx, buf)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.app).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.app).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.app).poll_shutdown(cx)
    }
}

// Frames are made in user space: the copy engine runs.
impl Spliceable for Link {}

/// Starts a link over `first` (the handshake and binding done): the relay uses the [`Link`];
/// the task ends with the stream (its result is the stream's: the relay's EOF is only a
/// clean end when it says so). `label` names the peer in log lines.
pub fn start(
    first: Conn,
    again: Again,
    window: Duration,
    label: String,
) -> (Link, JoinHandle<Result<Outcome, Failed>>) {
    tracing::debug!("{label}: the stream resumes if its connection breaks (window {window:?})");
    let (ours, app) = tokio::io::duplex(4 * CHUNK);
    let (abort, aborted) = oneshot::channel();
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let task = tokio::spawn(async move {
        let result = run(first, again, window, label, ours, aborted).await;
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
        QUIET.notify_waiters();
        result
    });
    let link = Link {
        app,
        abort: Some(abort),
    };
    (link, task)
}

/// Carriers still running, and a wake-up when one ends.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static QUIET: Notify = Notify::const_new();

/// Waits until every carrier has ended: after a signal (or any early end), the process
/// gives carriers whose link was dropped this moment to tell their peers (the caller bounds
/// it).
pub async fn quiesce() {
    loop {
        let woken = QUIET.notified();
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return;
        }
        woken.await;
    }
}

/// One direction's bookkeeping, and the other's acknowledgements.
#[derive(Default)]
struct State {
    /// Sent and not acknowledged: (offset, whole frame).
    replay: VecDeque<(u64, Arc<Vec<u8>>)>,
    replay_bytes: usize,
    /// Frames of `replay` already sent on this connection.
    cursor: usize,
    /// The offset the next byte read locally gets.
    next: u64,
    /// The local side has finished sending.
    local_end: bool,
    /// Our end frame is sent on this connection.
    end_sent: bool,
    /// The peer has everything we sent, end frame included.
    peer_has_end: bool,
    /// Bytes received and handed to the local side.
    delivered: u64,
    /// Where the peer's stream ends, once its end frame came.
    peer_end: Option<u64>,
    /// The last acknowledgement we sent (offset, end flag).
    acked: (u64, bool),
    /// The first acknowledgement on this connection came: resending may start.
    synced: bool,
    /// When a delivery made an acknowledgement due.
    ack_due: Option<Instant>,
    /// We sent close_notify: nothing more either way but the peer's.
    closing: bool,
}

impl State {
    fn finished(&self) -> bool {
        self.local_end
            && self.peer_has_end
            && self.peer_end.is_some()
            && self.acked == (self.delivered, true)
    }

    /// Drops what the peer acknowledged up to `offset`.
    fn acknowledged(&mut self, offset: u64, end: bool) -> io::Result<()> {
        let front = self.replay.front().map_or(self.next, |(o, _)| *o);
        if offset < front || offset > self.next || (end && !(self.local_end && offset == self.next))
        {
            return Err(invalid(format!(
                "acknowledgement of {offset} outside {front}..{}",
                self.next
            )));
        }
        while let Some((at, frame)) = self.replay.front() {
            let len = (frame.len() - HEADER) as u64;
            if at + len > offset {
                break;
            }
            self.replay_bytes -= frame.len();
            self.replay.pop_front();
            self.cursor = self.cursor.saturating_sub(1);
        }
        self.peer_has_end = end;
        self.synced = true;
        Ok(())
    }
}

/// The state both halves of a connection work on; never held across an await.
#[derive(Default)]
struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves nothing half-changed that matters here.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn frame(kind: u8, offset: u64, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&offset.to_be_bytes());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The local side (the relay) stopped taking the stream: never a network break.
#[derive(Debug, thiserror::Error)]
#[error("the local side stopped taking the stream")]
struct LocalGone;

fn local_gone(_: io::Error) -> io::Error {
    io::Error::other(LocalGone)
}

fn is_local_gone(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LocalGone>())
}

/// Whether a connection's failure is the network's (resume) rather than the peer's or ours
/// (a TLS alert, a forged record, a broken frame: fail).
fn breakable(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    let tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    !tls && matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut | NotConnected
    )
}

/// How one connection ended.
enum Ended {
    /// Both ends finished and closed.
    Done,
    /// It broke (or a newer connection replaced it); the error says how.
    Broke(io::Error),
}

async fn run(
    first: Conn,
    mut again: Again,
    window: Duration,
    label: String,
    app: DuplexStream,
    mut aborted: oneshot::Receiver<String>,
) -> Result<Outcome, Failed> {
    let (mut app_in, mut app_out) = tokio::io::split(app);
    let state = Shared::default();
    let mut outcome = Outcome::default();
    let mut conn = first;
    loop {
        let ended = {
            let replaced = match &mut again {
                Again::Accept(rx) => Some(rx),
                Again::Dial(_) => None,
            };
            carry(
                conn,
                &state,
                &mut app_in,
                &mut app_out,
                replaced,
                &mut aborted,
            )
            .await
        };
        let (why, newer) = match ended {
            Ok(Ended::Done) => return Ok(outcome),
            Ok(Ended::Broke(e)) if breakable(&e) => (e, None),
            Err(Replaced(newer)) => (
                io::Error::other("a newer connection took over"),
                Some(newer),
            ),
            Ok(Ended::Broke(e)) => {
                let why = match crate::tls::classify(&e, Error::Transfer) {
                    Error::Transfer(text) => text,
                    other => other.to_string(),
                };
                return Err(failed(&state.lock(), format!("{label}: {why}")));
            }
        };
        if state.lock().finished() {
            // Both sides had everything: only the closing handshake was lost.
            return Ok(outcome);
        }
        let lost = Instant::now();
        let broke = crate::tls::describe_io(&why);
        if window.is_zero() {
            return Err(failed(&state.lock(), format!("{label}: {broke}")));
        }
        let fail = |state: &State, last: &str| {
            failed(
                state,
                format!(
                    "{label}: {broke}, and the stream could not be resumed within {window:?} \
                     (--resume-window): {last}"
                ),
            )
        };
        warn!(
            "{label}: connection lost ({broke}) at {}; resuming (window {window:?})",
            counts(&state.lock())
        );
        conn = match newer {
            Some(newer) => newer,
            None => {
                let next = next_connection(&mut again, lost + window);
                tokio::select! {
                    next = next => match next {
                        Ok(conn) => conn,
                        Err(last) => return Err(fail(&state.lock(), &last)),
                    },
                    reason = &mut aborted => {
                        let reason = reason.unwrap_or_default();
                        return Err(failed(&state.lock(), format!("{label}: {reason}")));
                    }
                }
            }
        };
        outcome.resumptions += 1;
        info!(
            "{label}: resumed after {:.1}s at {}",
            lost.elapsed().as_secs_f64(),
            counts(&state.lock())
        );
    }
}

fn failed(state: &State, why: String) -> Failed {
    Failed {
        why,
        sent: state.replay.front().map_or(state.next, |(o, _)| *o),
        received: state.delivered,
    }
}

/// Runs `relayed` (the relay over a link) beside the link's `carrier`: the stream succeeded
/// only if both did (the relay's EOF is a clean end only when the carrier says so), and a
/// carrier that fails ends the relay too. Hands back the outcome, with `path` (the records'
/// engine under the link), and how many times the stream resumed.
pub async fn relay<F>(
    relayed: F,
    carrier: JoinHandle<Result<Outcome, Failed>>,
    path: CopyPath,
) -> (Result<Transfer, RelayError>, u32)
where
    F: Future<Output = Result<Transfer, RelayError>>,
{
    let started = Instant::now();
    tokio::pin!(relayed);
    let mut carrier = carrier;
    let as_failure = |f: Failed| RelayError::PeerRead {
        source: io::Error::other(f.why),
        partial: Transfer {
            sent: f.sent,
            received: f.received,
            elapsed: started.elapsed(),
            path,
        },
    };
    let joined = |j: Result<Result<Outcome, Failed>, tokio::task::JoinError>| {
        j.unwrap_or_else(|e| {
            Err(Failed {
                why: format!("the stream's task failed: {e}"),
                sent: 0,
                received: 0,
            })
        })
    };
    let (result, carried) = tokio::select! {
        result = &mut relayed => match result {
            // Failed here (our side's input or output, or its idle timeout): the stream is
            // over; dropping the link tells the peer.
            Err(RelayError::LocalRead { .. } | RelayError::LocalWrite { .. } | RelayError::Idle { .. }) => {
                (result, Ok(Outcome::default()))
            }
            // Anything else on the link's side: the carrier knows why.
            _ => (result, joined((&mut carrier).await)),
        },
        carried = &mut carrier => match joined(carried) {
            Ok(outcome) => ((&mut relayed).await, Ok(outcome)),
            Err(f) => return (Err(as_failure(f)), 0),
        },
    };
    match (result, carried) {
        (Ok(mut transfer), Ok(outcome)) => {
            transfer.path = path;
            (Ok(transfer), outcome.resumptions)
        }
        (_, Err(f)) => (Err(as_failure(f)), 0),
        (Err(e), Ok(_)) => (Err(e), 0),
    }
}

fn counts(state: &State) -> String {
    format!(
        "{} bytes sent and acknowledged, {} received",
        state.replay.front().map_or(state.next, |(o, _)| *o),
        state.delivered
    )
}

/// The next connection before `deadline`: dialled with back-off, or awaited.
async fn next_connection(again: &mut Again, deadline: Instant) -> Result<Conn, String> {
    let deadline = tokio::time::Instant::from_std(deadline);
    match again {
        Again::Accept(rx) => match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(conn)) => Ok(conn),
            Ok(None) => Err("the listener stopped".into()),
            Err(_) => Err("the donor did not come back".into()),
        },
        Again::Dial(dial) => {
            let mut pause = Duration::from_millis(100);
            let mut last = String::from("no attempt finished");
            loop {
                match tokio::time::timeout_at(deadline, dial()).await {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err((e, true))) => return Err(e.to_string()),
                    Ok(Err((e, false))) => last = e.to_string(),
                    Err(_) => return Err(last),
                }
                if tokio::time::Instant::now() + pause >= deadline {
                    return Err(last);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// A newer connection arrived while this one seemed alive.
struct Replaced(Conn);

/// Runs the stream over one connection until it ends, breaks, or is replaced.
async fn carry(
    conn: Conn,
    state: &Shared,
    app_in: &mut ReadHalf<DuplexStream>,
    app_out: &mut WriteHalf<DuplexStream>,
    newer: Option<&mut mpsc::Receiver<Conn>>,
    aborted: &mut oneshot::Receiver<String>,
) -> Result<Ended, Replaced> {
    {
        let mut s = state.lock();
        s.cursor = 0;
        s.end_sent = false;
        s.synced = false;
        s.closing = false;
        // Where to resume: said first on every connection.
        s.ack_due = Some(Instant::now());
        s.acked = (u64::MAX, false);
    }
    let wake = Notify::new();
    let (mut conn_in, conn_out) = tokio::io::split(conn);
    let sending = send(conn_out, state, app_in, &wake, aborted);
    let mut receiving = Box::pin(receive(&mut conn_in, state, app_out, &wake));
    let replaced = async {
        match newer {
            Some(rx) => match rx.recv().await {
                Some(conn) => conn,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sending, replaced);
    let mut sent = false;
    loop {
        tokio::select! {
            result = &mut sending, if !sent => match result {
                Ok(()) => sent = true,
                Err(e) if e.get_ref().is_some_and(|inner| inner.is::<Stopped>()) => {
                    // Our abort is out: let it arrive before the socket closes.
                    drop(receiving);
                    last_words(&mut conn_in).await;
                    return Ok(Ended::Broke(e));
                }
                Err(e) => {
                    // A failed send may be the peer's doing: its last words (an abort)
                    // can still be waiting to be read, and say more than our broken pipe.
                    let theirs = tokio::time::timeout(LAST_WORDS, &mut receiving).await;
                    return Ok(Ended::Broke(match theirs {
                        Ok(Err(theirs)) if !breakable(&theirs) => theirs,
                        _ => e,
                    }));
                }
            },
            result = &mut receiving => {
                let local = result.as_ref().is_err_and(is_local_gone);
                if (result.is_ok() || local) && !sent {
                    // Our close_notify, or the abort that tells the peer why our side has
                    // gone, if it is not out yet (bounded: the peer may have gone too).
                    let _ = tokio::time::timeout(LAST_WORDS, &mut sending).await;
                }
                if local {
                    drop(receiving);
                    last_words(&mut conn_in).await;
                }
                return Ok(match result {
                    Ok(()) => Ended::Done,
                    Err(e) => Ended::Broke(e),
                });
            }
            conn = &mut replaced => return Err(Replaced(conn)),
        }
    }
}

/// How long a stopping end waits for its abort to reach the peer, and a failed sender for
/// the peer's.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// After our abort: reads and drops what the peer still sends until it closes (at most
/// [`LAST_WORDS`]). Closing a socket with unread data resets it, and a reset throws away
/// what the peer had not read yet: our abort.
async fn last_words<R: AsyncRead + Unpin>(conn: &mut R) {
    let drain = async {
        let mut sink = vec![0u8; CHUNK];
        while conn.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(LAST_WORDS, drain).await;
}

/// This end stopped the stream (its abort is sent): why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Stopped(String);

/// Our side of one connection: the acknowledgement that says where to resume, then what the
/// peer has not acknowledged, new data as it comes, our end frame, heartbeats, and once
/// both ends have everything, close_notify.
async fn send<W: AsyncWrite + Unpin>(
    mut conn: W,
    state: &Shared,
    app_in: &mut ReadHalf<DuplexStream>,
    wake: &Notify,
    aborted: &mut oneshot::Receiver<String>,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut last_sent = Instant::now();
    loop {
        // What to write next, decided without holding the state across a write.
        let next = {
            let mut s = state.lock();
            let ack_now = s.ack_due.is_some_and(|due| {
                let owed = s.delivered.saturating_sub(s.acked.0);
                s.acked.0 == u64::MAX
                    || owed >= ACK_EVERY
                    || due.elapsed() >= ACK_DELAY
                    || s.peer_end.is_some()
            });
            if ack_now || last_sent.elapsed() >= HEARTBEAT {
                let ack = (s.delivered, s.peer_end == Some(s.delivered));
                s.acked = ack;
                s.ack_due = None;
                Some(Arc::new(frame(ACK, ack.0, u32::from(ack.1), &[])))
            } else if s.synced && s.cursor < s.replay.len() {
                let frame = s.replay[s.cursor].1.clone();
                s.cursor += 1;
                Some(frame)
            } else if s.synced && s.local_end && !s.end_sent && s.cursor == s.replay.len() {
                s.end_sent = true;
                Some(Arc::new(frame(END, s.next, 0, &[])))
            } else if s.finished() && !s.closing {
                s.closing = true;
                None
            } else {
                None
            }
        };
        if let Some(bytes) = next {
            conn.write_all(&bytes).await?;
            last_sent = Instant::now();
            continue;
        }
        if state.lock().closing {
            conn.shutdown().await?;
            return Ok(());
        }
        conn.flush().await?;
        let (can_read, ack_at) = {
            let s = state.lock();
            (
                !s.local_end && s.replay_bytes < REPLAY,
                s.ack_due.map(|due| due + ACK_DELAY),
            )
        };
        let heartbeat = tokio::time::Instant::from_std(last_sent + HEARTBEAT);
        let ack_at = ack_at.map_or(heartbeat, tokio::time::Instant::from_std);
        tokio::select! {
            read = app_in.read(&mut buf), if can_read => {
                let n = read?;
                let mut s = state.lock();
                if n == 0 {
                    s.local_end = true;
                } else {
                    let at = s.next;
                    let f = Arc::new(frame(DATA, at, n as u32, &buf[..n]));
                    s.replay_bytes += f.len();
                    s.replay.push_back((at, f));
                    s.next += n as u64;
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep_until(ack_at.min(heartbeat)) => {}
            reason = &mut *aborted => {
                // This end stopped: the peer hears why, then close_notify.
                let reason = reason.unwrap_or_default();
                let text = &reason.as_bytes()[..reason.len().min(ABORT_MAX)];
                conn.write_all(&frame(ABORT, 0, text.len() as u32, text)).await?;
                conn.shutdown().await?;
                return Err(io::Error::other(Stopped(reason)));
            }
        }
    }
}

/// The peer's side of one connection: its frames, delivered in order (what was delivered
/// before is skipped); its acknowledgements; its end; and its close_notify.
async fn receive<R: AsyncRead + Unpin>(
    conn: &mut R,
    state: &Shared,
    app_out: &mut WriteHalf<DuplexStream>,
    wake: &Notify,
) -> io::Result<()> {
    let mut payload = vec![0u8; CHUNK];
    loop {
        let mut head = [0u8; HEADER];
        match tokio::time::timeout(SILENCE, conn.read_exact(&mut head[..1])).await {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing arrived for {SILENCE:?}"),
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // A clean close (close_notify) at a frame boundary.
                if state.lock().finished() {
                    return Ok(());
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(Err(e)) => return Err(e),
        }
        conn.read_exact(&mut head[1..]).await?;
        let kind = head[0];
        let offset = u64::from_be_bytes(head[1..9].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(head[9..].try_into().unwrap_or_default()) as usize;
        match kind {
            DATA if len > 0 && len <= CHUNK => {
                conn.read_exact(&mut payload[..len]).await?;
                let delivered = state.lock().delivered;
                if state.lock().peer_end.is_some() || offset > delivered {
                    return Err(invalid(format!(
                        "data at {offset} where {delivered} was due"
                    )));
                }
                let end = offset + len as u64;
                if end > delivered {
                    let skip = (delivered - offset) as usize;
                    app_out
                        .write_all(&payload[skip..len])
                        .await
                        .map_err(local_gone)?;
                    {
                        let mut s = state.lock();
                        s.delivered = end;
                        s.ack_due.get_or_insert_with(Instant::now);
                    }
                    wake.notify_one();
                }
            }
            ACK if len <= 1 => {
                state.lock().acknowledged(offset, len == 1)?;
                wake.notify_one();
            }
            END if len == 0 => {
                let first = {
                    let mut s = state.lock();
                    if s.delivered != offset || s.peer_end.is_some_and(|e| e != offset) {
                        return Err(invalid(format!(
                            "the end at {offset} where {} was delivered",
                            s.delivered
                        )));
                    }
                    let first = s.peer_end.is_none();
                    s.peer_end = Some(offset);
                    s.ack_due = Some(Instant::now());
                    first
                };
                if first {
                    app_out.shutdown().await.map_err(local_gone)?;
                }
                wake.notify_one();
            }
            ABORT if len <= ABORT_MAX => {
                conn.read_exact(&mut payload[..len]).await?;
                let reason = String::from_utf8_lossy(&payload[..len]);
                return Err(io::Error::other(format!(
                    "the peer aborted the stream: {}",
                    crate::error::escape(&reason)
                )));
            }
            _ => {
                return Err(invalid(format!("a frame of kind {kind} and length {len}")));
            }
        }
    }
}

/// What one connection's receiving side makes of `data` as the peer's frames (the fuzz
/// target `resume_frames`): a stream that has sent three frames of 10 bytes and ended, so
/// acknowledgements, data, ends and aborts all meet real state. Errors are the expected
/// outcome for most input; a panic, a hang or unbounded memory is a bug.
pub fn read_frames(data: &[u8]) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let state = Shared::default();
        {
            let mut s = state.lock();
            for at in [0u64, 10, 20] {
                let f = Arc::new(frame(DATA, at, 10, &[7; 10]));
                s.replay_bytes += f.len();
                s.replay.push_back((at, f));
            }
            s.next = 30;
            s.cursor = 3;
            s.local_end = true;
        }
        // Room for everything a fuzz input can deliver, so the local side never blocks.
        let (ours, _theirs) = tokio::io::duplex(data.len() + 1);
        let (_, mut app_out) = tokio::io::split(ours);
        let wake = Notify::new();
        let mut input = data;
        receive(&mut input, &state, &mut app_out, &wake).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_free_whole_frames_and_refuse_the_impossible() {
        let mut s = State::default();
        for at in [0u64, 10, 20] {
            s.replay
                .push_back((at, Arc::new(frame(DATA, at, 10, &[0; 10]))));
            s.replay_bytes += HEADER + 10;
        }
        s.next = 30;
        s.cursor = 3;
        s.acknowledged(10, false).unwrap();
        assert_eq!(s.replay.len(), 2);
        assert_eq!(s.cursor, 2);
        assert!(s.acknowledged(5, false).is_err(), "behind the replay");
        assert!(s.acknowledged(31, false).is_err(), "past what was sent");
        assert!(s.acknowledged(30, true).is_err(), "an end not sent");
        s.local_end = true;
        s.acknowledged(30, true).unwrap();
        assert!(s.replay.is_empty() && s.replay_bytes == 0);
    }

    #[test]
    fn frames_from_the_wire_are_checked() {
        let mut ok = frame(ACK, 20, 0, &[]);
        ok.extend(frame(DATA, 0, 3, b"abc"));
        ok.extend(frame(END, 3, 0, &[]));
        // A clean end needs our side done too: the bytes run out mid-stream.
        assert_eq!(
            read_frames(&ok).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let gap = frame(DATA, 5, 3, b"abc");
        assert_eq!(
            read_frames(&gap).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut behind = frame(ACK, 20, 0, &[]);
        behind.extend(frame(ACK, 5, 0, &[]));
        assert_eq!(
            read_frames(&behind).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let ahead = frame(ACK, 31, 0, &[]);
        assert_eq!(
            read_frames(&ahead).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let abort = frame(ABORT, 0, 4, b"why\n");
        let err = read_frames(&abort).unwrap_err().to_string();
        assert!(err.contains("the peer aborted the stream: why\\n"), "{err}");
        let unknown = frame(9, 0, 0, &[]);
        assert_eq!(
            read_frames(&unknown).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn only_the_networks_failures_are_resumed() {
        assert!(breakable(&io::Error::from(io::ErrorKind::ConnectionReset)));
        assert!(breakable(&io::Error::from(io::ErrorKind::UnexpectedEof)));
        assert!(!breakable(&io::Error::from(io::ErrorKind::InvalidData)));
        let alert = io::Error::new(io::ErrorKind::ConnectionReset, rustls::Error::DecryptError);
        assert!(!breakable(&alert));
    }
}
