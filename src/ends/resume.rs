//! Resuming: one stream that outlives its TCP connection. When both ends are sst-tunnel
//! (agreed in the handshake, [`ALPN`]), the bytes go in frames that carry their offset in the
//! stream, each end acknowledges what it has handed to its local side, and each end keeps
//! what the other has not acknowledged yet in a bounded replay buffer. When the connection
//! breaks (a reset, a close without close_notify, a silent path), the dialling end dials
//! again and the listening end waits for it; the new connection is a full handshake with
//! the same verification, must present the first connection's peer certificate, and proves
//! it belongs to this stream with the binding secret striping uses ([`super::stripes`]):
//! the dialling end opens every connection ([`super::stripes::Opening`]), a new stream
//! getting its secret from the listener in reply, so one listener can carry many streams
//! (an exec listener, one child per stream) and hand each resuming connection to its own.
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::ends::stdio::LocalEnds;
use crate::error::Error;
use crate::fastpath::CopyPath;
use crate::handoff::unbuffered::WRITE_CHUNK;
use crate::relay::{self, RelayError, Transfer};

/// The ALPN protocol of a resumable single stream. (3: frames carry up to 1 MiB, which a
/// version 2 end refuses, so the two do not agree and carry a plain stream; 2: the dialling
/// end opens every connection, [`super::stripes::Opening`]; 1 had the listener speak
/// first.)
pub const ALPN: &[u8] = b"sst-tunnel/resume/3";
/// The longest a stream may stay disconnected by default: the stock scripts' own idle
/// timeouts. (Resuming costs no more than run-to-run noise in the loopback benchmark:
/// docs/benchmarks.md.)
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// Unacknowledged bytes each end keeps for resending by default: enough for a long fat path
/// (64 MiB is 50 ms at 10 Gbit/s); a sender whose buffer is full waits for
/// acknowledgements.
pub const REPLAY: usize = 64 << 20;
/// The dialling end's first pause before dialling again; it doubles up to [`REDIAL_MAX`].
const REDIAL_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two dials.
const REDIAL_MAX: Duration = Duration::from_secs(2);

/// The dialling end's back-off between two dials, for a resumption and for a new stream's
/// first connection alike: [`REDIAL_FIRST`] doubling to [`REDIAL_MAX`], never past a deadline.
pub struct Backoff {
    pause: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            pause: REDIAL_FIRST,
        }
    }
}

impl Backoff {
    /// Whether the next pause ends before `deadline` (so another dial is worth it).
    pub fn allows(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::Instant::now() + self.pause < deadline
    }

    /// Waits the next pause; the one after is twice as long, up to [`REDIAL_MAX`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(REDIAL_MAX);
    }
}
/// The smallest replay buffer: a few whole frames, so a full one is still a pipeline.
pub const MIN_REPLAY: usize = 1 << 20;

/// How far a stream may resume: how long it may stay disconnected, and how many
/// unacknowledged bytes each end keeps for resending (`--resume-window`,
/// `--resume-buffer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The longest the stream may stay disconnected (zero: it never resumes).
    pub window: Duration,
    /// The replay buffer: a whole stream's (a striped one's links share it).
    pub replay: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            replay: REPLAY,
        }
    }
}

impl Bounds {
    /// These bounds for a stream whose ends did (`resume`) or did not agree to resume: with
    /// no agreement the window is zero, and a broken connection fails the stream.
    pub fn agreed(self, resume: bool) -> Self {
        if resume {
            self
        } else {
            Self {
                window: Duration::ZERO,
                ..self
            }
        }
    }
}

/// Checks a replay buffer size: at least [`MIN_REPLAY`].
pub fn replay_size(bytes: u64) -> Result<usize, String> {
    usize::try_from(bytes)
        .ok()
        .filter(|b| *b >= MIN_REPLAY)
        .ok_or_else(|| format!("{bytes} bytes is below the smallest replay buffer, 1MiB"))
}
/// How a connection carrying a stripe of a stream under way opens (its token follows): a
/// striped stream's other connections, and every connection that resumes one. The first
/// byte names the stripe (0: the one connection of an unstriped stream).
pub const JOIN_MARK: [u8; 2] = [0, 1];
/// How a connection opening a new striped or resumable stream opens.
pub const NEW_MARK: [u8; 2] = [0, 0];

/// A client configuration that also offers to resume (unchanged when `window` is zero): a
/// striped stream whose stripes each resume, ahead of each plain striping offer, and a
/// single resumable stream last.
pub fn offer(config: Arc<ClientConfig>, window: Duration) -> Arc<ClientConfig> {
    if window.is_zero() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = with_resuming(&config.alpn_protocols);
    Arc::new(config)
}

/// A server configuration that also agrees to resume, as [`offer`] offers it (unchanged
/// when `window` is zero).
pub fn accept(config: Arc<ServerConfig>, window: Duration) -> Arc<ServerConfig> {
    if window.is_zero() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = with_resuming(&config.alpn_protocols);
    Arc::new(config)
}

/// `protocols` with resuming: every striping protocol's resumable twin first (the same
/// order), then the striping ones, then the single resumable stream.
fn with_resuming(protocols: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = protocols
        .iter()
        .filter_map(|p| super::stripes::resumable_twin(p))
        .collect();
    all.extend(protocols.iter().cloned());
    all.push(ALPN.to_vec());
    all
}

/// The bounds the stunnel and socat front-ends use: `SST_TUNNEL_RESUME_WINDOW` (a duration;
/// `0` turns resuming off) and `SST_TUNNEL_RESUME_BUFFER` (a size), by default
/// [`Bounds::default`].
pub fn bounds_from_env() -> Result<Bounds, Error> {
    let mut bounds = Bounds::default();
    if let Ok(text) = std::env::var("SST_TUNNEL_RESUME_WINDOW") {
        bounds.window = crate::settings::parse_duration(&text)
            .map_err(|why| Error::Usage(format!("SST_TUNNEL_RESUME_WINDOW: {why}")))?;
    }
    if let Ok(text) = std::env::var("SST_TUNNEL_RESUME_BUFFER") {
        bounds.replay = crate::settings::parse_size(&text)
            .and_then(replay_size)
            .map_err(|why| Error::Usage(format!("SST_TUNNEL_RESUME_BUFFER: {why}")))?;
    }
    Ok(bounds)
}

/// Whether the handshake agreed to resume (one stream, or each stripe of a striped one),
/// over TLS 1.3 only (a TLS 1.2 connection has a record limit the frames would have to
/// count; one that meets it ends).
pub fn agreed(alpn: Option<&[u8]>, tls13: bool) -> bool {
    tls13 && (alpn == Some(ALPN) || alpn.is_some_and(super::stripes::is_resumable))
}

const DATA: u8 = 0;
const ACK: u8 = 1;
const END: u8 = 2;
const ABORT: u8 = 3;
/// The longest reason an abort frame carries.
const ABORT_MAX: usize = 1024;
const HEADER: usize = 13;
/// Payload bytes per frame at most: 1 MiB, what one read of a full 1 MiB pipe brings (our
/// own stdin pipe's size, [`crate::ends::stdio`]), and a frame goes out in one encryption
/// and one send ([`WRITE_CHUNK`]). (At 256 KiB, then the size of our stdin pipe, the donor
/// made four reads and four sends per MiB where it can make one of each: the exec shape
/// cost 9-10 % of the relay's throughput on loopback, and the extra system calls were most
/// of it, docs/benchmarks.md. Before that it was 256 KiB less the header, and every read
/// left 13 bytes in the pipe for a second read.)
const CHUNK: usize = 1024 * 1024;
// A whole frame, header and all, is one write of the record layer.
const _: () = assert!(HEADER + CHUNK <= WRITE_CHUNK);
/// The receiving side's buffer (at least [`ABORT_MAX`]): a frame's payload goes to the local
/// side a piece at a time.
const RECEIVE_PIECE: usize = 256 * 1024;
const _: () = assert!(ABORT_MAX <= RECEIVE_PIECE);
/// Acknowledge at least every this many delivered bytes (an eighth of the replay buffer
/// when that is smaller, so a full buffer is never what waits for one)...
const ACK_EVERY: u64 = 4 << 20;
/// ...and no later than this after a delivery.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Acknowledged frames kept for reuse at most...
const SPARE: usize = 16;
/// ...and their memory at most (4 whole-stream frames: what one acknowledgement frees).
const SPARE_BYTES: usize = 4 << 20;
/// Frames written in a row before the sending half lets the receiving half read (and the
/// other way round), at most: a link's 64 KiB frames yield every 1 MiB...
const YIELD_EVERY: u64 = 16;
/// ...and a whole stream's 1 MiB frames every 4 MiB, as often as acknowledgements may be
/// due. Each yield reschedules the task and may wake another worker thread, so not much
/// more often than that. (Counted in frames alone, 1 MiB frames let the receiving half
/// read 16 MiB before the sending half could acknowledge any of it.)
const YIELD_BYTES: usize = 4 << 20;
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

/// The local side of a resumable stream, and how the relay would treat it.
pub struct Local {
    /// Bytes to send to the peer.
    pub input: Box<dyn AsyncRead + Unpin + Send>,
    /// Where the peer's bytes go (closed once the peer's stream ends).
    pub output: Box<dyn AsyncWrite + Unpin + Send>,
    /// Idle timeout, remote-shell semantics and progress, as for the relay.
    pub options: relay::Options,
    /// How the records under the frames are made (kernel or rustls).
    pub path: CopyPath,
    /// Unacknowledged bytes kept for resending at most ([`Bounds::replay`] for a whole
    /// stream).
    pub replay: usize,
    /// Payload bytes per frame at most ([`CHUNK`] for a whole stream).
    pub frame: usize,
    /// For a stripe's link: its index and the record of its siblings' first failure.
    pub siblings: Option<(u32, Arc<Siblings>)>,
}

impl Local {
    /// The plaintext ends `ends` (stdio, as [`LocalEnds::open`] made them) with the relay's
    /// `options`, over records made by `path`, keeping `replay` bytes for resending.
    pub fn new(ends: LocalEnds, options: relay::Options, path: CopyPath, replay: usize) -> Self {
        Self::of(ends.input, ends.output, options, path, replay)
    }

    /// [`Local::new`] for any pair of ends (an exec'd program's socket).
    pub fn of(
        input: Box<dyn AsyncRead + Unpin + Send>,
        output: Box<dyn AsyncWrite + Unpin + Send>,
        options: relay::Options,
        path: CopyPath,
        replay: usize,
    ) -> Self {
        Self {
            input,
            output,
            options,
            path,
            replay,
            frame: CHUNK,
            siblings: None,
        }
    }
}

/// Carries a stream over `first` (its handshake and binding done) and the connections that
/// replace it, to the stream's end: the relay's outcome for a resumable stream (the counts
/// are bytes read locally and bytes written locally), and how many times it resumed. The
/// carrier reads the local input straight into its frames and writes the peer's payloads
/// straight out, so it copies no byte more than the relay does. Dropping this future (a
/// signal) stops the stream and tells the peer.
pub async fn stream(
    first: Conn,
    again: Again,
    window: Duration,
    label: String,
    local: Local,
) -> (Result<Transfer, RelayError>, u32) {
    tracing::debug!("{label}: the stream resumes if its connection breaks (window {window:?})");
    let (abort, aborted) = oneshot::channel();
    let _stop_on_drop = StopOnDrop(Some(abort));
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let task = tokio::spawn(async move {
        let result = run(first, again, window, label, local, aborted).await;
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
        QUIET.notify_waiters();
        result
    });
    match task.await {
        Ok(result) => result,
        Err(e) => (Err(task_failed(&e)), 0),
    }
}

/// A carrier's task that panicked, as the stream's error.
fn task_failed(e: &tokio::task::JoinError) -> RelayError {
    RelayError::PeerRead {
        source: io::Error::other(format!("the stream's task failed: {e}")),
        partial: Transfer {
            sent: 0,
            received: 0,
            elapsed: Duration::ZERO,
            path: CopyPath::Buffered,
        },
    }
}

/// A link's frames at most (payload bytes). Small: the striping counts its idle timeout on
/// pieces arriving, and a slow path must bring one in well within it (a 64 KiB frame at
/// 100 KiB/s takes 0.6 s).
const LINK_FRAME: usize = 64 << 10;
/// Pieces queued between the striping and a link, each way.
const LINK_QUEUE: usize = 4;

/// A striped stream's running links, one per connection, each resuming on its own.
pub struct Links {
    tasks: Vec<tokio::task::JoinHandle<(Result<Transfer, RelayError>, u32)>>,
    /// The first failure among them, which the others name when they stop.
    pub siblings: Arc<Siblings>,
}

/// The striping's end of one link: the pieces it sends are that stripe's share of the
/// stream, the pieces it receives what the peer's striping sent on its end. Pieces, not
/// bytes: they move between the striping and the link without being copied again. Only
/// [`Stripe::finish`] ends the link's stream (its end frame); dropped without it (the
/// striping failed, or was dropped by a signal) the link stops the stream and tells the
/// peer, so a cut never reads as an end. The same the other way: [`Stripe::recv`] reports
/// the peer's end only when the link received the peer's end frame, not when it failed.
pub struct Stripe {
    to_link: Option<mpsc::Sender<Vec<u8>>>,
    from_link: mpsc::Receiver<Vec<u8>>,
    ends: Arc<PipeEnds>,
    siblings: Arc<Siblings>,
}

/// When bytes last moved between a striping and a link, either way: the striping's idle
/// timeout counts from there, so a slow but moving link never times out, however long one
/// piece takes.
#[derive(Debug)]
pub struct Moved {
    start: Instant,
    /// Nanoseconds after `start` of the last byte moved.
    last: std::sync::atomic::AtomicU64,
}

impl Default for Moved {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Moved {
    /// Bytes moved now.
    pub fn now(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    /// When bytes last moved.
    pub fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// Which ends a stripe's pipe has seen (the only thing that tells an end from a cut there),
/// and when bytes last moved through it.
#[derive(Default)]
struct PipeEnds {
    moved: Arc<Moved>,
    /// The striping finished its side: the link may send its end frame.
    striping: AtomicBool,
    /// The link received the peer's end frame and closed the striping's side.
    link: AtomicBool,
}

impl Stripe {
    /// Sends the next piece of this stripe to its link (waits while the link's queue is
    /// full). Fails once the link has stopped (its own error is the cause).
    pub async fn send(&mut self, piece: Vec<u8>) -> io::Result<()> {
        let link = self
            .to_link
            .as_ref()
            .ok_or_else(|| io::Error::other("finished"))?;
        link.send(piece)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the stripe's link has stopped"))
    }

    /// Ends this side of the stripe: the link sends its end frame once all is out.
    pub fn finish(&mut self) {
        // Marked before the queue closes, so the link sees it with the end of input.
        self.ends.striping.store(true, Ordering::Release);
        self.to_link = None;
    }

    /// The next piece the peer sent on this stripe, `None` at the peer's end (its end
    /// frame); an error when the link stopped first.
    pub async fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.from_link.recv().await {
            Some(piece) => Ok(Some(piece)),
            None if self.ends.link.load(Ordering::Acquire) => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "its link stopped before the end of the stream (stream truncated)",
            )),
        }
    }

    /// Where the striping records why it stops the stream (unless a link failed first): the
    /// reason every link then gives its peer.
    pub fn cause(&self) -> Arc<Siblings> {
        self.siblings.clone()
    }

    /// When bytes last moved between this stripe and its link.
    pub fn moved(&self) -> Arc<Moved> {
        self.ends.moved.clone()
    }
}

/// A link's local input: the striping's pieces, copied into the link's frames. Their end is
/// the stream's end only when the striping finished ([`Stripe::finish`]).
struct StripeInput {
    pieces: mpsc::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
    ends: Arc<PipeEnds>,
}

impl AsyncRead for StripeInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        let before = buf.filled().len();
        while buf.remaining() > 0 {
            if this.at < this.piece.len() {
                let n = buf.remaining().min(this.piece.len() - this.at);
                buf.put_slice(&this.piece[this.at..this.at + n]);
                this.at += n;
                this.ends.moved.now();
                continue;
            }
            // What is queued now goes into this read too; no more waits once some is in.
            match this.pieces.poll_recv(cx) {
                Poll::Ready(Some(piece)) => (this.piece, this.at) = (piece, 0),
                Poll::Ready(None) if buf.filled().len() == before => {
                    if !this.ends.striping.load(Ordering::Acquire) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the striping stopped before the end of the stream (stream truncated)",
                        )));
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if buf.filled().len() == before => return Poll::Pending,
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Room in the striping's queue for the next piece, being waited for (`None`: it is gone).
type Reserving = Pin<Box<dyn Future<Output = Option<mpsc::OwnedPermit<Vec<u8>>>> + Send>>;

/// A link's local output: what the peer's link delivered, as pieces for the striping; closed
/// (the striping's end of input) only when the peer's end frame came.
struct StripeOutput {
    pieces: mpsc::Sender<Vec<u8>>,
    reserving: Option<Reserving>,
    ends: Arc<PipeEnds>,
    closed: bool,
}

impl AsyncWrite for StripeOutput {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let reserving = this.reserving.get_or_insert_with(|| {
            let pieces = this.pieces.clone();
            Box::pin(async move { pieces.reserve_owned().await.ok() })
        });
        let permit = std::task::ready!(reserving.as_mut().poll(cx));
        this.reserving = None;
        match permit {
            Some(permit) => {
                permit.send(data.to_vec());
                this.ends.moved.now();
                Poll::Ready(Ok(data.len()))
            }
            // The striping has gone (it failed, and said why).
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the striping has stopped",
            ))),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        // Marked before the queue closes (when this drops), so the striping sees it with
        // the end of its pieces.
        self.ends.link.store(true, Ordering::Release);
        self.closed = true;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Each connection of a striped stream as its own resumable link: the striping's pieces for
/// stripe `i` go through the `i`th returned [`Stripe`], and its link carries them in its
/// frames over its connection and the connections that replace it (`again(i)`; never, with
/// a zero window: resuming not agreed). A stripe that breaks resumes by itself; the others
/// go on. `siblings` records the first failure, which every link then gives its peer as the
/// reason it stops.
pub fn links(
    conns: Vec<Conn>,
    mut again: impl FnMut(u32) -> Again,
    bounds: Bounds,
    label: &str,
    path: CopyPath,
    siblings: Arc<Siblings>,
) -> (Vec<Stripe>, Links) {
    let count = conns.len().max(1);
    let mut stripes = Vec::with_capacity(count);
    let mut tasks = Vec::with_capacity(count);
    for (index, conn) in (0u32..).zip(conns) {
        let (to_link, input) = mpsc::channel(LINK_QUEUE);
        let (output, from_link) = mpsc::channel(LINK_QUEUE);
        let ends = Arc::new(PipeEnds::default());
        let local = Local {
            input: Box::new(StripeInput {
                pieces: input,
                piece: Vec::new(),
                at: 0,
                ends: ends.clone(),
            }),
            output: Box::new(StripeOutput {
                pieces: output,
                reserving: None,
                ends: ends.clone(),
                closed: false,
            }),
            // The striping keeps the idle timeout, on each stripe's pieces (a link blocked
            // behind a slower sibling is not idle); it also bounds a link's wait for its
            // next connection, as nothing arrives on that stripe meanwhile.
            options: relay::Options::default(),
            path,
            // Each stripe carries its share of the stream, so its share of the replay.
            replay: (bounds.replay / count).max(LINK_FRAME * 16),
            frame: LINK_FRAME,
            siblings: Some((index, siblings.clone())),
        };
        let label = format!("{label} (stream {index})");
        tasks.push(tokio::spawn(stream(
            conn,
            again(index),
            bounds.window,
            label,
            local,
        )));
        stripes.push(Stripe {
            to_link: Some(to_link),
            from_link,
            ends,
            siblings: siblings.clone(),
        });
    }
    (stripes, Links { tasks, siblings })
}

/// How long a failed striped stream waits for its links to end by themselves (a link whose
/// pipe closed says why; the others tell their peers) before stopping them.
const LINK_SETTLE: Duration = Duration::from_secs(1);

/// Whether the striping failed because a link's pipe closed under it (the link ended: its
/// reason is the cause), rather than for a reason of its own (a refusal, the idle timeout,
/// the local side).
fn pipe_closed(e: &RelayError) -> bool {
    match e {
        RelayError::PeerRead { source, .. } | RelayError::PeerWrite { source, .. } => matches!(
            source.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

/// A striped stream's outcome from the striping's own result and its links', with the
/// resumptions of all its links. When the striping failed because a link did (it could not
/// resume within the window, or the peer aborted), the link's reason is the cause; links
/// still running are stopped (their peers are told).
pub async fn settle(
    striping: Result<Transfer, RelayError>,
    links: Links,
) -> (Result<Transfer, RelayError>, u32) {
    let mut resumptions = 0;
    let ok = striping.is_ok();
    // A link whose pipe closed is ending: a moment for it to say why, then the rest stop.
    let settle_by = tokio::time::Instant::now() + LINK_SETTLE;
    let mut errors: Vec<(u32, RelayError)> = Vec::new();
    for (index, mut link) in (0u32..).zip(links.tasks) {
        let outcome = if ok {
            link.await
        } else {
            match tokio::time::timeout_at(settle_by, &mut link).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    link.abort();
                    continue;
                }
            }
        };
        match outcome {
            Ok((result, n)) => {
                resumptions += n;
                if let Err(e) = result {
                    errors.push((index, e));
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => errors.push((index, task_failed(&e))),
        }
    }
    // The link that failed first is the cause; the others failed because of it.
    let first = links.siblings.first().map(|(index, _)| index);
    let at = errors
        .iter()
        .position(|(i, _)| Some(*i) == first)
        .unwrap_or(0);
    let failed = (at < errors.len()).then(|| errors.swap_remove(at).1);
    let result = match (striping, failed) {
        (Ok(transfer), None) => Ok(transfer),
        (Ok(transfer), Some(link)) => Err(link.with_partial(transfer)),
        (Err(striping), Some(link)) if pipe_closed(&striping) => {
            Err(link.with_partial(striping.partial()))
        }
        (Err(striping), _) => Err(striping),
    };
    (result, resumptions)
}

/// Tells the carrier to stop (and the peer why) when the caller goes away first.
struct StopOnDrop(Option<oneshot::Sender<String>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            // After the stream's end the carrier is gone and this goes nowhere.
            let _ = stop.send("it stopped before the end of the stream (stream truncated)".into());
        }
    }
}

/// Carriers still running, and a wake-up when one ends.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static QUIET: Notify = Notify::const_new();

/// Waits until every carrier has ended: after a signal, the process gives the carriers of
/// the streams it dropped this moment to tell their peers (the caller bounds it).
pub async fn quiesce() {
    loop {
        let woken = QUIET.notified();
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return;
        }
        woken.await;
    }
}

/// How a stream failed on this side, for the relay's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    LocalRead,
    LocalWrite,
    Idle,
}

/// One direction's bookkeeping, and the other's acknowledgements.
struct State {
    /// Sent and not acknowledged: (offset, whole frame).
    replay: VecDeque<(u64, Arc<Vec<u8>>)>,
    replay_bytes: usize,
    /// Frames of `replay` already sent on this connection.
    cursor: usize,
    /// The offset the next byte read locally gets (= bytes read locally).
    next: u64,
    /// The local side has finished sending.
    local_end: bool,
    /// Our end frame is sent on this connection.
    end_sent: bool,
    /// The peer has everything we sent, end frame included.
    peer_has_end: bool,
    /// Bytes received and written to the local side.
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
    /// This side stops the stream: the abort frame to send, and what failed here.
    stop: Option<String>,
    fault: Option<(Fault, io::Error)>,
    /// When a byte last moved between the stream and the local side.
    moved: Instant,
    /// Remote-shell semantics: stop reading once the peer has finished.
    end_with_peer: bool,
    /// Frames the peer acknowledged, kept for the next reads: a new 256 KiB buffer each
    /// time would be a fresh mapping, faulted in page by page.
    spare: Vec<Vec<u8>>,
    /// `replay_bytes` at most: reading stops there until acknowledgements come.
    replay_limit: usize,
    /// Delivered bytes that make an acknowledgement due at once.
    ack_every: u64,
    /// Payload bytes per frame this end sends at most.
    frame: usize,
    /// A striped stream's links, when this is one of them (its index): a sibling's failure
    /// is the reason this one gives its peer when it stops.
    siblings: Option<(u32, Arc<Siblings>)>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            replay: VecDeque::new(),
            replay_bytes: 0,
            cursor: 0,
            next: 0,
            local_end: false,
            end_sent: false,
            peer_has_end: false,
            delivered: 0,
            peer_end: None,
            acked: (0, false),
            synced: false,
            ack_due: None,
            closing: false,
            stop: None,
            fault: None,
            moved: Instant::now(),
            end_with_peer: false,
            spare: Vec::new(),
            replay_limit: REPLAY,
            ack_every: ACK_EVERY,
            frame: CHUNK,
            siblings: None,
        }
    }
}

impl State {
    /// How many acknowledged frames are kept for reuse: [`SPARE`], fewer where they are
    /// large ([`SPARE_BYTES`]).
    fn spare_max(&self) -> usize {
        (SPARE_BYTES / (HEADER + self.frame)).clamp(1, SPARE)
    }

    /// Frames each half moves in a row before it lets the other run: [`YIELD_EVERY`], fewer
    /// where they are large ([`YIELD_BYTES`]).
    fn yield_every(&self) -> u64 {
        (YIELD_BYTES / self.frame).clamp(1, YIELD_EVERY as usize) as u64
    }

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
            self.replay_bytes -= held(frame);
            // Only whole frames are reused (a small one was cut to its size).
            if let Some((_, frame)) = self.replay.pop_front()
                && self.spare.len() < self.spare_max()
                && frame.capacity() >= HEADER + self.frame
                && let Ok(buf) = Arc::try_unwrap(frame)
            {
                self.spare.push(buf);
            }
            self.cursor = self.cursor.saturating_sub(1);
        }
        self.peer_has_end = end;
        self.synced = true;
        Ok(())
    }

    /// Stops the stream here for `fault`: the abort frame says `why` to the peer.
    fn fail(&mut self, fault: Fault, error: io::Error) {
        if self.fault.is_none() {
            // A stripe whose sibling failed first fails because of it: that is the reason.
            let sibling = self.siblings.as_ref().and_then(|(_, s)| s.first());
            self.stop = Some(match sibling {
                Some((_, why)) => why,
                None => format!("it failed: {}", describe(fault, &error)),
            });
            self.fault = Some((fault, error));
        }
    }
}

/// What failed here, as the relay words it.
fn describe(fault: Fault, error: &io::Error) -> String {
    match fault {
        Fault::LocalRead => format!("reading local input: {}", crate::tls::describe_local(error)),
        Fault::LocalWrite => {
            format!(
                "writing local output: {}",
                crate::tls::describe_local(error)
            )
        }
        Fault::Idle => error.to_string(),
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

/// Whether a connection's failure is the network's (resume) rather than the peer's or ours
/// (a TLS alert, a forged record, a broken frame: fail).
pub fn breakable(e: &io::Error) -> bool {
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
    /// It broke, or this side stopped the stream; the error says how.
    Broke(io::Error),
}

/// The local ends, kept across connections.
struct Ends {
    input: Box<dyn AsyncRead + Unpin + Send>,
    /// `None` once closed (the peer's stream ended), so a child's stdin really closes.
    output: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    options: relay::Options,
}

async fn run(
    first: Conn,
    again: Again,
    window: Duration,
    label: String,
    local: Local,
    aborted: oneshot::Receiver<String>,
) -> (Result<Transfer, RelayError>, u32) {
    let mut ends = Ends {
        input: local.input,
        output: Some(local.output),
        options: local.options,
    };
    let state = Shared::default();
    {
        let mut s = state.lock();
        s.end_with_peer = ends.options.end_with_peer;
        s.replay_limit = local.replay;
        s.ack_every = ACK_EVERY.min(local.replay as u64 / 8).max(1);
        // A frame is at most an eighth of the replay buffer, so a small buffer still holds
        // several frames in flight.
        s.frame = local.frame.min(local.replay / 8).clamp(1, CHUNK);
        s.siblings = local.siblings.clone();
    }
    let (result, resumptions) = run_on(
        first, again, window, label, local.path, &mut ends, &state, aborted,
    )
    .await;
    // A stripe's failure is recorded before its local ends close (which is how the
    // striping and the sibling links learn of it), so they can name it as the cause.
    if let (Err(e), Some((index, siblings))) = (&result, &local.siblings) {
        siblings.record(*index, e.to_string());
    }
    drop(ends);
    (result, resumptions)
}

/// The first failure among a striped stream's links: the cause the others name.
#[derive(Default)]
pub struct Siblings(Mutex<Option<(u32, String)>>);

impl Siblings {
    /// Records why the stream fails, unless something failed first: `index` is the link
    /// that failed ([`u32::MAX`]: the striping itself, a refusal).
    pub fn record(&self, index: u32, why: String) {
        let mut first = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert((index, why));
    }

    /// The first link that failed, and why.
    pub fn first(&self) -> Option<(u32, String)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_on(
    first: Conn,
    mut again: Again,
    window: Duration,
    label: String,
    path: CopyPath,
    ends: &mut Ends,
    state: &Shared,
    mut aborted: oneshot::Receiver<String>,
) -> (Result<Transfer, RelayError>, u32) {
    let started = Instant::now();
    let transfer = |s: &State| Transfer {
        sent: s.next,
        received: s.delivered,
        elapsed: started.elapsed(),
        path,
    };
    let peer_error = |s: &State, why: String| RelayError::PeerRead {
        source: io::Error::other(why),
        partial: transfer(s),
    };
    let mut resumptions = 0;
    let mut conn = first;
    loop {
        let ended = {
            let replaced = match &mut again {
                Again::Accept(rx) => Some(rx),
                Again::Dial(_) => None,
            };
            carry(conn, state, ends, replaced, &mut aborted).await
        };
        let (why, newer) = match ended {
            Ok(Ended::Done) => return (Ok(transfer(&state.lock())), resumptions),
            Ok(Ended::Broke(e)) => {
                let mut s = state.lock();
                if let Some((fault, source)) = s.fault.take() {
                    let partial = transfer(&s);
                    let error = match fault {
                        Fault::LocalRead => RelayError::LocalRead { source, partial },
                        Fault::LocalWrite => RelayError::LocalWrite { source, partial },
                        Fault::Idle => RelayError::Idle {
                            idle: ends.options.idle.unwrap_or_default(),
                            partial,
                        },
                    };
                    return (Err(error), resumptions);
                }
                if !breakable(&e) {
                    let text = match crate::tls::classify(&e, Error::Transfer) {
                        Error::Transfer(text) => text,
                        other => other.to_string(),
                    };
                    return (Err(peer_error(&s, format!("{label}: {text}"))), resumptions);
                }
                (e, None)
            }
            Err(Replaced(newer)) => (
                io::Error::other("a newer connection took over"),
                Some(newer),
            ),
        };
        if state.lock().finished() {
            // Both sides had everything: only the closing handshake was lost.
            return (Ok(transfer(&state.lock())), resumptions);
        }
        let lost = Instant::now();
        let broke = crate::tls::describe_io(&why);
        if window.is_zero() {
            return (
                Err(peer_error(&state.lock(), format!("{label}: {broke}"))),
                resumptions,
            );
        }
        warn!(
            "{label}: connection lost ({broke}) at {}; resuming (window {window:?})",
            counts(&state.lock())
        );
        // The idle timeout (socat's -T, stunnel's TIMEOUTidle) bounds the wait too.
        let idle = ends.options.idle;
        let idle_at = idle.map(|limit| state.lock().moved + limit);
        conn = match newer {
            Some(newer) => newer,
            None => {
                let next = next_connection(&mut again, lost + window);
                tokio::select! {
                    () = sleep_until_some(idle_at.map(tokio::time::Instant::from_std)) => {
                        let s = state.lock();
                        return (
                            Err(RelayError::Idle {
                                idle: idle.unwrap_or_default(),
                                partial: transfer(&s),
                            }),
                            resumptions,
                        );
                    }
                    next = next => match next {
                        Ok(conn) => conn,
                        Err(last) => {
                            let why = format!(
                                "{label}: {broke}, and the stream could not be resumed within \
                                 {window:?} (--resume-window): {last}"
                            );
                            return (Err(peer_error(&state.lock(), why)), resumptions);
                        }
                    },
                    reason = &mut aborted => {
                        let reason = reason.unwrap_or_default();
                        return (Err(peer_error(&state.lock(), format!("{label}: {reason}"))), resumptions);
                    }
                }
            }
        };
        resumptions += 1;
        info!(
            "{label}: resumed after {:.1}s at {}",
            lost.elapsed().as_secs_f64(),
            counts(&state.lock())
        );
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
            let mut backoff = Backoff::default();
            let mut last = String::from("no attempt finished");
            loop {
                match tokio::time::timeout_at(deadline, dial()).await {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err((e, true))) => return Err(e.to_string()),
                    Ok(Err((e, false))) => last = e.to_string(),
                    Err(_) => return Err(last),
                }
                if !backoff.allows(deadline) {
                    return Err(last);
                }
                backoff.wait().await;
            }
        }
    }
}

/// A newer connection arrived while this one seemed alive.
struct Replaced(Conn);

/// Runs the stream over one connection until it ends, breaks, is replaced, or this side
/// stops it.
async fn carry(
    conn: Conn,
    state: &Shared,
    ends: &mut Ends,
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
    let wake = Nudge::default();
    let (mut conn_in, conn_out) = tokio::io::split(conn);
    let Ends {
        input,
        output,
        options,
    } = ends;
    let idle = options.idle;
    let sending = send(conn_out, state, input, options, &wake, aborted);
    let mut receiving = Box::pin(receive(&mut conn_in, state, output, &wake));
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
        // The idle timeout's backstop: a sender blocked in a write to a peer that stopped
        // reading never reaches its own check (which also sends the abort, so it goes first:
        // this one waits as long again as the abort may take).
        let idle_at = idle
            .map(|limit| tokio::time::Instant::from_std(state.lock().moved + limit + LAST_WORDS));
        tokio::select! {
            // Receiving first: what it changes for the sender (an acknowledgement due, one
            // received) it only marks ([`Nudge`]), and the sender, polled next in the same
            // pass, sees it without a wake-up of the task.
            biased;
            result = &mut receiving => {
                let local = state.lock().stop.is_some();
                if (result.is_ok() || local) && !sent {
                    // Our close_notify, or the abort that tells the peer why this side has
                    // stopped, if it is not out yet (bounded: the peer may have gone too).
                    wake.nudge();
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
            conn = &mut replaced => return Err(Replaced(conn)),
            () = sleep_until_some(idle_at) => {
                if let Some(error) = idle_error(state, idle, LAST_WORDS) {
                    // No abort can pass a peer that stopped reading: the stream just ends.
                    state.lock().fail(Fault::Idle, error);
                    return Ok(Ended::Broke(io::Error::other("idle")));
                }
            }
        }
    }
}

/// What the receiving half tells the sending half of one connection (an acknowledgement
/// is due, one came, the peer ended): a mark, not a wake-up. Both halves are one task and
/// [`carry`] polls the receiving half first, so the sending half is polled right after any
/// change in the same pass. A wake-up per change made the task reschedule itself and wake
/// another worker thread to steal it, each time: the price of resuming in the exec shape.
#[derive(Default)]
struct Nudge(std::sync::atomic::AtomicBool);

impl Nudge {
    fn nudge(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Ready once nudged (and takes the mark). Pending registers no waker: see above.
    fn nudged(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|_| {
            if self.0.swap(false, Ordering::AcqRel) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The relay's idle-timeout error, once nothing has moved for `idle` and `grace` more
/// (`None`: not yet, or no idle timeout).
fn idle_error(state: &Shared, idle: Option<Duration>, grace: Duration) -> Option<io::Error> {
    let limit = idle?;
    (state.lock().moved.elapsed() >= limit + grace).then(|| idle_timeout(limit))
}

/// The idle timeout as the relay words it (and as the abort frame tells the peer).
fn idle_timeout(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no data moved in either direction for {limit:?} (--idle-timeout)"),
    )
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
/// peer has not acknowledged, new data read from the local input straight into frames, our
/// end frame, heartbeats, and once both ends have everything, close_notify. Also keeps the
/// relay's clock: the idle timeout and the progress lines.
async fn send<W: AsyncWrite + Unpin>(
    mut conn: W,
    state: &Shared,
    input: &mut Box<dyn AsyncRead + Unpin + Send>,
    options: &relay::Options,
    wake: &Nudge,
    aborted: &mut oneshot::Receiver<String>,
) -> io::Result<()> {
    let mut last_sent = Instant::now();
    let mut written = 0u64;
    let yield_every = state.lock().yield_every();
    let started = Instant::now();
    let mut next_progress = options.progress.as_ref().map(|p| started + p.every);
    // One timer for the whole connection, moved only when it must ring sooner (or has
    // rung): a timer set anew for every frame wakes the runtime's parked driver thread
    // each time. A ring that comes before anything is due just goes round the loop.
    let timer = tokio::time::sleep(HEARTBEAT);
    tokio::pin!(timer);
    let mut fresh = Vec::new();
    loop {
        let stop = state.lock().stop.take();
        if let Some(reason) = stop {
            // This side stops: the peer hears why, then close_notify.
            let text = &reason.as_bytes()[..reason.len().min(ABORT_MAX)];
            conn.write_all(&frame(ABORT, 0, text.len() as u32, text))
                .await?;
            conn.shutdown().await?;
            return Err(io::Error::other(Stopped(reason)));
        }
        // What to write next, decided without holding the state across a write.
        let next = {
            let mut s = state.lock();
            let ack_now = s.ack_due.is_some_and(|due| {
                let owed = s.delivered.saturating_sub(s.acked.0);
                s.acked.0 == u64::MAX
                    || owed >= s.ack_every
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
            if bytes[0] == DATA {
                // Data on its way to the peer is data moving, however slowly the path
                // takes a frame: the idle timeout counts bytes, not whole frames.
                let mut done = 0;
                while done < bytes.len() {
                    let n = conn.write(&bytes[done..]).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    done += n;
                    state.lock().moved = Instant::now();
                }
            } else {
                conn.write_all(&bytes).await?;
            }
            last_sent = Instant::now();
            written += 1;
            if written.is_multiple_of(yield_every) {
                // A socket that stays writable never makes this loop wait, and the
                // receiving half (in the same task) would read no acknowledgement until
                // the replay buffer is full: let it run.
                tokio::task::yield_now().await;
            }
            continue;
        }
        if state.lock().closing {
            conn.shutdown().await?;
            return Ok(());
        }
        conn.flush().await?;
        let (can_read, ack_at, moved) = {
            let s = state.lock();
            (
                // Nothing is sent before the peer's first acknowledgement says where to
                // start, so nothing is read either: a fast input would otherwise fill the
                // whole replay buffer in that round trip (64 MiB of fresh pages at start).
                s.synced && !s.local_end && s.replay_bytes < s.replay_limit,
                s.ack_due.map(|due| due + ACK_DELAY),
                s.moved,
            )
        };
        let heartbeat = last_sent + HEARTBEAT;
        let mut wake_at = ack_at.map_or(heartbeat, |at| at.min(heartbeat));
        if let Some(idle) = options.idle {
            wake_at = wake_at.min(moved + idle);
        }
        if let Some(at) = next_progress {
            wake_at = wake_at.min(at);
        }
        let wake_at = tokio::time::Instant::from_std(wake_at);
        if timer.is_elapsed() || wake_at < timer.deadline() {
            timer.as_mut().reset(wake_at);
        }
        // The frame a read fills: its header's room first, the data read straight after
        // (at most `size`: every frame has exactly that room). It waits here, across turns
        // of the loop, until a read fills it: a turn that ends otherwise (an
        // acknowledgement came, a timer rang) used to drop it, a reused frame included, so
        // that a third of the reads went into newly allocated, cold memory.
        let size = state.lock().frame;
        if fresh.capacity() < HEADER + size {
            let spare = state.lock().spare.pop();
            fresh = spare.unwrap_or_else(|| Vec::with_capacity(HEADER + size));
        }
        fresh.clear();
        fresh.resize(HEADER, 0);
        tokio::select! {
            read = input.read_buf(&mut fresh), if can_read => {
                // What else is ready joins the frame (a pipe gives 64 KiB a read), so a
                // fast input fills whole frames and the replay buffer, which counts the
                // frames' memory, holds as much data as it can.
                let then = match &read {
                    Ok(n) if *n > 0 => top_up(input, &mut fresh, size).await,
                    _ => None,
                };
                let mut s = state.lock();
                match read {
                    Err(e) => s.fail(Fault::LocalRead, e),
                    Ok(0) => s.local_end = true,
                    Ok(_) => {
                        let n = fresh.len() - HEADER;
                        if n < size / 4 {
                            // A frame less than a quarter full moves into one its size, so
                            // a trickling input (small writes) cannot fill the replay buffer
                            // with room instead of data. Fuller frames stay as they are: a
                            // copy of each cost the donor a sixth more CPU on loopback, and
                            // where the buffer matters (the network is the limit) the input
                            // waits in its pipe and frames are full.
                            let small = fresh.to_vec();
                            let whole = std::mem::replace(&mut fresh, small);
                            if s.spare.len() < s.spare_max() {
                                s.spare.push(whole);
                            }
                        }
                        let at = s.next;
                        fresh[0] = DATA;
                        fresh[1..9].copy_from_slice(&at.to_be_bytes());
                        fresh[9..HEADER].copy_from_slice(&(n as u32).to_be_bytes());
                        s.replay_bytes += held(&fresh);
                        s.replay.push_back((at, Arc::new(std::mem::take(&mut fresh))));
                        s.next += n as u64;
                        s.moved = Instant::now();
                        // The end or the error a top-up met comes after its data.
                        match then {
                            Some(Ok(())) => s.local_end = true,
                            Some(Err(e)) => s.fail(Fault::LocalRead, e),
                            None => {}
                        }
                    }
                }
            }
            () = wake.nudged() => {}
            () = &mut timer => {
                let now = Instant::now();
                let mut s = state.lock();
                if let Some(idle) = options.idle
                    && now.duration_since(s.moved) >= idle
                {
                    s.fail(Fault::Idle, idle_timeout(idle));
                }
                if let (Some(p), Some(at)) = (&options.progress, next_progress)
                    && now >= at
                {
                    let t = Transfer {
                        sent: s.next,
                        received: s.delivered,
                        elapsed: started.elapsed(),
                        path: CopyPath::Buffered,
                    };
                    drop(s);
                    (p.report)(&t);
                    next_progress = Some(now + p.every);
                }
            }
            reason = &mut *aborted => {
                let mut s = state.lock();
                if s.stop.is_none() && s.fault.is_none() {
                    // A stripe stopped because the stream failed says why it failed.
                    let sibling = s.siblings.as_ref().and_then(|(_, sib)| sib.first());
                    s.stop = Some(match sibling {
                        Some((_, why)) => why,
                        None => reason.unwrap_or_default(),
                    });
                }
            }
        }
    }
}

/// Reads on into `frame` whatever `input` has ready now, without waiting, until the frame
/// holds `size` bytes after its header. Returns how a read that brought nothing ended: the
/// end of the input (`Ok`) or an error, for after the frame; `None` when nothing more was
/// ready or the frame is full.
async fn top_up(
    input: &mut Box<dyn AsyncRead + Unpin + Send>,
    frame: &mut Vec<u8>,
    size: usize,
) -> Option<io::Result<()>> {
    while frame.len() < HEADER + size {
        let room = (HEADER + size - frame.len()) as u64;
        let mut limited = (&mut *input).take(room);
        match ready_now(limited.read_buf(frame)).await {
            None => return None,
            Some(Ok(0)) => return Some(Ok(())),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Some(Err(e)),
        }
    }
    None
}

/// The memory a frame in the replay buffer holds (its allocation, not just its bytes: a
/// frame a pipe read filled a quarter of still holds a whole frame's room).
fn held(frame: &Vec<u8>) -> usize {
    frame.capacity()
}

/// The peer's side of one connection: its frames, written to the local output in order
/// (what was delivered before is skipped); its acknowledgements; its end (which closes the
/// local output); its abort; and its close_notify.
async fn receive<R: AsyncRead + Unpin>(
    conn: &mut R,
    state: &Shared,
    output: &mut Option<Box<dyn AsyncWrite + Unpin + Send>>,
    wake: &Nudge,
) -> io::Result<()> {
    // A frame's payload is read and delivered in pieces of this buffer, not whole: a local
    // side that drains faster than a frame arrives would idle meanwhile.
    let mut payload = vec![0u8; RECEIVE_PIECE];
    let mut frames = 0u64;
    // Counted as if the peer's frames were the size of ours, which they are unless the two
    // ends were given different replay buffers (`--resume-buffer` under 8 MiB).
    let yield_every = state.lock().yield_every();
    // The silence limit on one timer, moved on only when it rings (a timer per frame would
    // wake the runtime's parked driver thread each time).
    let silence = tokio::time::sleep(SILENCE);
    tokio::pin!(silence);
    loop {
        let mut head = [0u8; HEADER];
        // Silence counts from here: a slow local output is not the peer's silence.
        let waiting = tokio::time::Instant::now();
        let first = loop {
            tokio::select! {
                // One byte: read or not, never half read, so losing the race loses nothing.
                first = conn.read_exact(&mut head[..1]) => break first,
                () = &mut silence => {
                    if waiting.elapsed() >= SILENCE {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("nothing arrived for {SILENCE:?}"),
                        ));
                    }
                    silence.as_mut().reset(waiting + SILENCE);
                }
            }
        };
        match first {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // A clean close (close_notify) at a frame boundary.
                if state.lock().finished() {
                    return Ok(());
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Err(e) => return Err(e),
        }
        conn.read_exact(&mut head[1..]).await?;
        let kind = head[0];
        let offset = u64::from_be_bytes(head[1..9].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(head[9..].try_into().unwrap_or_default()) as usize;
        match kind {
            DATA if len > 0 && len <= CHUNK => {
                let (delivered, ended) = {
                    let s = state.lock();
                    (s.delivered, s.peer_end.is_some())
                };
                if ended || offset > delivered {
                    return Err(invalid(format!(
                        "data at {offset} where {delivered} was due"
                    )));
                }
                // The payload goes out as it arrives, whatever is ready at once, not the
                // whole frame at the end: a local side that drains faster than a frame
                // arrives (an exec'd program's socket holds one frame) would idle meanwhile.
                let mut got = 0;
                while got < len {
                    let (n, failed) =
                        read_ready(conn, &mut payload[..(len - got).min(RECEIVE_PIECE)]).await;
                    if n == 0 {
                        return Err(failed.unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into()));
                    }
                    let at = offset + got as u64;
                    got += n;
                    deliver(state, output, wake, at, &payload[..n]).await?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
                frames += 1;
                if frames.is_multiple_of(yield_every) {
                    // A socket that always has the next frame never makes this loop wait,
                    // and the sending half (in the same task) would send no
                    // acknowledgement: the peer's replay buffer would fill instead.
                    tokio::task::yield_now().await;
                }
            }
            ACK if len <= 1 => {
                state.lock().acknowledged(offset, len == 1)?;
                wake.nudge();
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
                    if s.end_with_peer {
                        // Remote-shell semantics: the peer is done, so are we.
                        s.local_end = true;
                    }
                    first
                };
                if first
                    && let Some(mut out) = output.take()
                    && let Err(e) = out.shutdown().await
                {
                    state.lock().fail(Fault::LocalWrite, e);
                    wake.nudge();
                    return Err(io::Error::other("this side stopped"));
                }
                wake.nudge();
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

/// Reads what `conn` has for `buf`: waits for some, then takes what else is ready at once.
/// Returns the bytes read and, when a read after some bytes failed, its error (for after
/// those bytes).
async fn read_ready<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut [u8],
) -> (usize, Option<io::Error>) {
    let mut n = match conn.read(buf).await {
        Ok(n) => n,
        Err(e) => return (0, Some(e)),
    };
    while n > 0 && n < buf.len() {
        match ready_now(conn.read(&mut buf[n..])).await {
            None | Some(Ok(0)) => break,
            Some(Ok(more)) => n += more,
            Some(Err(e)) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// `future`'s output if it is ready at the first poll; `None` otherwise (it is dropped
/// then, so it must be one that loses nothing so: a read).
async fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Hands `bytes`, the stream's bytes from offset `at`, to the local output, less what was
/// delivered before (a resent frame overlaps it); marks an acknowledgement due. What was
/// delivered is counted after every write, not once at the end: this future may be dropped
/// between two writes (a newer connection takes over while the local side is slow), and
/// the bytes already written must not come again.
async fn deliver(
    state: &Shared,
    output: &mut Option<Box<dyn AsyncWrite + Unpin + Send>>,
    wake: &Nudge,
    at: u64,
    bytes: &[u8],
) -> io::Result<()> {
    let end = at + bytes.len() as u64;
    loop {
        let delivered = state.lock().delivered;
        if end <= delivered {
            // Bytes arriving are data moving, delivered before or not (a slow path may
            // take longer than the idle timeout over one frame).
            state.lock().moved = Instant::now();
            return Ok(());
        }
        let rest = &bytes[(delivered - at) as usize..];
        let written = match output.as_mut() {
            Some(out) => match out.write(rest).await {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                other => other,
            },
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        let wanted = {
            let mut s = state.lock();
            match written {
                Ok(n) => {
                    let before = s.delivered;
                    s.delivered += n as u64;
                    s.moved = Instant::now();
                    // The sender only needs telling when this changes what it does: an
                    // acknowledgement newly due (it sets its timer from that) or one owed.
                    let owed = |at: u64| at.saturating_sub(s.acked.0);
                    let wanted = s.ack_due.is_none()
                        || (owed(before) < s.ack_every && owed(s.delivered) >= s.ack_every);
                    s.ack_due.get_or_insert_with(Instant::now);
                    wanted
                }
                Err(e) => {
                    s.fail(Fault::LocalWrite, e);
                    true
                }
            }
        };
        if wanted {
            wake.nudge();
        }
        if state.lock().stop.is_some() {
            return Err(io::Error::other("this side stopped"));
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
                s.replay_bytes += held(&f);
                s.replay.push_back((at, f));
            }
            s.next = 30;
            s.cursor = 3;
            s.local_end = true;
        }
        let mut output: Option<Box<dyn AsyncWrite + Unpin + Send>> =
            Some(Box::new(tokio::io::sink()));
        let wake = Nudge::default();
        let mut input = data;
        receive(&mut input, &state, &mut output, &wake).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A stripe's pipe and the link's two ends of it.
    fn pipe() -> (Stripe, StripeInput, StripeOutput) {
        let (to_link, input) = mpsc::channel(LINK_QUEUE);
        let (output, from_link) = mpsc::channel(LINK_QUEUE);
        let ends = Arc::new(PipeEnds::default());
        let stripe = Stripe {
            to_link: Some(to_link),
            from_link,
            ends: ends.clone(),
            siblings: Arc::default(),
        };
        let input = StripeInput {
            pieces: input,
            piece: Vec::new(),
            at: 0,
            ends: ends.clone(),
        };
        let output = StripeOutput {
            pieces: output,
            reserving: None,
            ends,
            closed: false,
        };
        (stripe, input, output)
    }

    #[tokio::test]
    async fn a_pipe_dropped_without_an_end_is_a_cut_not_an_end() {
        for end in [true, false] {
            // The striping's side: what it sent, then its end or a cut (a failure, a signal).
            let (mut stripe, mut input, _output) = pipe();
            stripe.send(b"ab".to_vec()).await.unwrap();
            stripe.send(b"c".to_vec()).await.unwrap();
            if end {
                stripe.finish();
            }
            drop(stripe);
            let mut got = Vec::new();
            let read = input.read_to_end(&mut got).await;
            assert_eq!(got, b"abc");
            assert_eq!(read.is_ok(), end, "{read:?}");
            // The link's side: what it delivered, then the peer's end or its own failure.
            let (mut stripe, input, mut output) = pipe();
            output.write_all(b"xyz").await.unwrap();
            if end {
                output.shutdown().await.unwrap();
            }
            drop((input, output));
            assert_eq!(stripe.recv().await.unwrap().unwrap(), b"xyz");
            let next = stripe.recv().await;
            assert_eq!(next.is_ok(), end, "{next:?}");
            assert!(next.is_err() || next.unwrap().is_none());
        }
    }

    #[test]
    fn a_frame_carries_one_full_mebibyte_pipe_read_and_no_more() {
        // A frame's payload is what one read of a full 1 MiB pipe brings (the literal, not
        // CHUNK: a smaller CHUNK is what this guards against; at 256 KiB the donor made
        // four reads and four sends per MiB and the exec shape lost 9-10 % to the relay).
        let read = 1024 * 1024;
        let whole = frame(DATA, 0, read as u32, &vec![7; read]);
        let taken = read_frames(&whole).unwrap_err().to_string();
        assert!(!taken.contains("a frame of kind"), "{taken}");
        let over = frame(DATA, 0, read as u32 + 1, &vec![7; read + 1]);
        let refused = read_frames(&over).unwrap_err().to_string();
        assert!(
            refused.contains("a frame of kind 0 and length 1048577"),
            "{refused}"
        );
        // And it is one write of the record layer, so one send.
        assert!(HEADER + read <= WRITE_CHUNK);
    }

    #[test]
    fn acknowledgements_free_whole_frames_and_refuse_the_impossible() {
        let mut s = State::default();
        for at in [0u64, 10, 20] {
            let f = frame(DATA, at, 10, &[0; 10]);
            s.replay_bytes += held(&f);
            s.replay.push_back((at, Arc::new(f)));
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
