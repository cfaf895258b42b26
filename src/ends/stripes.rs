//! Striping: one one-way stream (donor -> joiner, the mariabackup shape) over several TLS
//! connections when both ends are sst-tunnel, so more than one core encrypts and decrypts.
//!
//! Negotiation is in the first handshake, by ALPN: a client that may stripe offers
//! `sst-tunnel/stripes/N` for N from its maximum down to 2; a listener that may stripe lists
//! its own cap downwards and rustls picks the first of the listener's that the client
//! offered, so both agree on the smaller maximum. A stock stunnel or socat sets no ALPN: as a
//! listener it ignores the offer, as a client it offers nothing, and the stream is exactly
//! today's single one.
//!
//! Binding: the listener sends a random 32-byte token as its first bytes on the first
//! connection (inside TLS: only the two verified ends see it). The donor opens the other
//! N-1 connections to the same address; each is verified exactly like the first, its peer
//! certificate must be the first one's, and its first bytes must be the token and the
//! stripe's index, compared in constant time. Anything else is refused and does not count.
//!
//! Framing: the payload goes out in chunks, round robin: chunk `k` on stripe `k mod N`, each
//! with a 12-byte header (sequence number, length). After the last chunk every stripe gets an
//! end frame naming the total, then close_notify. The joiner reads every stripe in its own
//! task into a bounded queue and writes the chunks out in sequence, so at most
//! `N x (QUEUE + 1) x CHUNK` bytes are held however the stripes are paced. Only when all of
//! it is written out does it send its own close_notify on every stripe, which is what the
//! donor waits for: any stripe truncated, reset, out of order or missing fails both ends.
//!
//! When both ends also agreed to resume (`sst-tunnel/stripes-resume/N`, offered ahead of
//! each plain protocol), the donor opens the first connection with a new-stream opening
//! ([`Opening`]) before the token comes, and each stripe's frames travel over its own
//! resumable link ([`super::resume::links`]): a stripe whose connection breaks is dialled
//! again by itself, its opening naming the stripe.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use zeroize::Zeroizing;

use crate::ends::resume::{NEW_MARK, RESUME_MARK};
use crate::fastpath::CopyPath;
use crate::relay::{Progress, RelayError, Transfer};

/// The ALPN protocol name's prefix; the number of stripes follows in decimal.
const ALPN_PREFIX: &str = "sst-tunnel/stripes/";
/// The same for a striped stream whose stripes each resume ([`super::resume`]).
const RESUMABLE_PREFIX: &str = "sst-tunnel/stripes-resume/";
/// The most stripes either end agrees to.
pub const MAX_STRIPES: u32 = 8;
/// The binding secret's length.
pub const TOKEN_LEN: usize = 32;
/// Payload bytes per chunk at most.
const CHUNK: usize = 128 * 1024;
/// Frame header: sequence number (u64) and payload length (u32), big-endian.
const HEADER: usize = 12;
/// Chunks queued per stripe between the stdin reader and a stripe's writer, or between a
/// stripe's reader and the stdout writer.
const QUEUE: usize = 4;

/// `--streams auto` (and `SST_TUNNEL_STREAMS` unset or `auto`): decided per stream by
/// [`auto_for`] once the first connection's round trip is known. A listener with it takes
/// whatever the donor offers, up to [`MAX_STRIPES`].
pub const AUTO: u32 = 0;

/// A round trip from this long on is a long path (between datacenters or regions), where
/// one TCP stream is bound by the round trip and loss, not by a CPU: striping pays there
/// whatever the cores (a loss-based TCP gets about MSS / RTT x 1.22 / sqrt(loss) per stream).
pub const LONG_PATH: Duration = Duration::from_millis(20);

/// How many stripes `auto` offers for a path whose first connection measured `rtt`: all of
/// them on a long path; elsewhere one per two cores, as [`auto`].
pub fn auto_for(rtt: Option<Duration>) -> u32 {
    match rtt {
        Some(rtt) if rtt >= LONG_PATH => MAX_STRIPES,
        _ => auto(),
    }
}

/// The number of stripes the cores alone call for: one per two cores (each stripe keeps one
/// core busy at each end), at least 1 (no striping), at most [`MAX_STRIPES`].
pub fn auto() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores / 2)
        .unwrap_or(MAX_STRIPES)
        .clamp(1, MAX_STRIPES)
}

/// Reads a number of streams as `--streams` and `SST_TUNNEL_STREAMS` take it: `auto` or
/// 1 to [`MAX_STRIPES`].
pub fn parse(text: &str) -> Result<u32, String> {
    if text.trim() == "auto" {
        return Ok(AUTO);
    }
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_STRIPES).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a number of streams (auto, or 1 to {MAX_STRIPES})"
        )),
    }
}

/// The ALPN list for up to `max` stripes, largest first; empty when `max` is below 2.
fn protocols(max: u32) -> Vec<Vec<u8>> {
    (2..=max.min(MAX_STRIPES))
        .rev()
        .map(|n| format!("{ALPN_PREFIX}{n}").into_bytes())
        .collect()
}

/// The resumable twin of a striping protocol (`None` for any other protocol).
pub fn resumable_twin(protocol: &[u8]) -> Option<Vec<u8>> {
    let n = protocol.strip_prefix(ALPN_PREFIX.as_bytes())?;
    Some([RESUMABLE_PREFIX.as_bytes(), n].concat())
}

/// Whether a negotiated protocol is a striped stream whose stripes resume.
pub fn is_resumable(protocol: &[u8]) -> bool {
    protocol.starts_with(RESUMABLE_PREFIX.as_bytes()) && negotiated(Some(protocol)) > 1
}

/// The number of stripes a negotiated ALPN protocol names: 1 for none or another protocol.
pub fn negotiated(alpn: Option<&[u8]>) -> u32 {
    alpn.and_then(|p| {
        p.strip_prefix(ALPN_PREFIX.as_bytes())
            .or_else(|| p.strip_prefix(RESUMABLE_PREFIX.as_bytes()))
    })
    .and_then(|n| std::str::from_utf8(n).ok())
    .and_then(|n| n.parse::<u32>().ok())
    .filter(|n| (2..=MAX_STRIPES).contains(n))
    .unwrap_or(1)
}

/// A client configuration that offers up to `max` stripes (unchanged below 2).
pub fn offer(config: Arc<ClientConfig>, max: u32) -> Arc<ClientConfig> {
    if max < 2 {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = protocols(max);
    Arc::new(config)
}

/// The same client configuration offering up to `max` stripes instead of what it offered
/// (its other protocols, resuming's, kept after them): `auto`'s offer once the path is known.
pub fn reoffer(config: &Arc<ClientConfig>, max: u32) -> Arc<ClientConfig> {
    let mut config = (**config).clone();
    let resuming = config
        .alpn_protocols
        .iter()
        .any(|p| p.starts_with(RESUMABLE_PREFIX.as_bytes()) || p == super::resume::ALPN);
    let others: Vec<Vec<u8>> = config
        .alpn_protocols
        .drain(..)
        .filter(|p| {
            !p.starts_with(ALPN_PREFIX.as_bytes()) && !p.starts_with(RESUMABLE_PREFIX.as_bytes())
        })
        .collect();
    let plain = protocols(max);
    if resuming {
        config
            .alpn_protocols
            .extend(plain.iter().filter_map(|p| resumable_twin(p)));
    }
    config.alpn_protocols.extend(plain);
    config.alpn_protocols.extend(others);
    Arc::new(config)
}

/// A server configuration that accepts up to `cap` stripes (unchanged below 2; [`AUTO`]:
/// up to [`MAX_STRIPES`], the donor's `auto` having judged the path).
pub fn accept_up_to(config: Arc<ServerConfig>, cap: u32) -> Arc<ServerConfig> {
    let cap = if cap == AUTO { MAX_STRIPES } else { cap };
    if cap < 2 {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = protocols(cap);
    Arc::new(config)
}

/// The binding secret, wiped from memory when its last holder drops it.
pub type Token = Zeroizing<[u8; TOKEN_LEN]>;

/// A new binding secret.
pub fn token() -> io::Result<Token> {
    let mut token = Zeroizing::new([0; TOKEN_LEN]);
    aws_lc_rs::rand::fill(&mut token[..])
        .map_err(|_| io::Error::other("no random bytes for the stream binding"))?;
    Ok(token)
}

/// What a donor's extra connection presents first: the token and its stripe index (a copy
/// of the secret, so wiped on drop too).
pub fn binding(token: &[u8; TOKEN_LEN], index: u32) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(TOKEN_LEN + 1));
    bytes.extend_from_slice(token);
    bytes.push(u8::try_from(index).unwrap_or(u8::MAX));
    bytes
}

/// Checks what an extra connection presented against the token: the stripe index it binds,
/// or why it is refused. Constant time in the token's bytes.
pub fn check_binding(
    token: &[u8; TOKEN_LEN],
    presented: &[u8],
    stripes: u32,
) -> Result<u32, String> {
    let index = after_secret(token, presented)?;
    match index {
        [i] if (1..stripes).contains(&u32::from(*i)) => Ok(u32::from(*i)),
        _ => Err(format!("it names no stripe between 1 and {}", stripes - 1)),
    }
}

/// What the dialling end of a resumable connection says first, before anything else in
/// either direction: a new stream ([`NEW_MARK`], no token yet: the listener answers with
/// one), or a stream to resume (a resume mark naming the stripe, 0 for a stream of one, and
/// the stream's token). Client first, so a listener that serves many streams at once (an
/// exec listener: rsync's connections) can tell the two apart and route a resuming
/// connection to the stream, and the stripe, it belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A new stream.
    New,
    /// Stripe `stripe` of the stream bound to `token` (wiped on drop).
    Resume {
        /// The stream's binding secret.
        token: Token,
        /// Which of its connections this one replaces.
        stripe: u32,
    },
}

/// An opening's length: the mark, then the token (zeros on a new stream).
pub const OPENING_LEN: usize = 2 + TOKEN_LEN;

/// The opening of a new stream.
pub fn opening_new() -> [u8; OPENING_LEN] {
    let mut bytes = [0; OPENING_LEN];
    bytes[..2].copy_from_slice(&NEW_MARK);
    bytes
}

/// The opening of a connection resuming stripe `stripe` (0: the one connection of an
/// unstriped stream) of the stream bound to `token` (wiped on drop).
pub fn opening_resume(token: &[u8; TOKEN_LEN], stripe: u32) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(OPENING_LEN));
    bytes.push(u8::try_from(stripe).unwrap_or(u8::MAX));
    bytes.push(RESUME_MARK[1]);
    bytes.extend_from_slice(token);
    bytes
}

/// Reads an opening (exactly [`OPENING_LEN`] bytes), or says why it is none.
pub fn parse_opening(bytes: &[u8]) -> Result<Opening, String> {
    if bytes.len() != OPENING_LEN {
        return Err(format!(
            "it opened with {} bytes, not the {OPENING_LEN} of a stream opening",
            bytes.len()
        ));
    }
    let (mark, rest) = bytes.split_at(2);
    if mark == NEW_MARK && rest.iter().all(|b| *b == 0) {
        return Ok(Opening::New);
    }
    if mark[1] == RESUME_MARK[1] && u32::from(mark[0]) < MAX_STRIPES {
        let mut token: Token = Zeroizing::new([0; TOKEN_LEN]);
        token.copy_from_slice(rest);
        return Ok(Opening::Resume {
            token,
            stripe: u32::from(mark[0]),
        });
    }
    Err("it opened with neither a new stream nor a stream to resume".into())
}

/// Whether `presented` is this stream's token, in constant time.
pub fn same_token(token: &[u8; TOKEN_LEN], presented: &[u8; TOKEN_LEN]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(token, presented).is_ok()
}

/// Checks what a connection that would take over a connection of the stream bound to
/// `token` (striped over `stripes`, 1: not striped) opened with: the stripe it resumes.
pub fn check_resume(token: &[u8; TOKEN_LEN], opened: &[u8], stripes: u32) -> Result<u32, String> {
    match parse_opening(opened)? {
        Opening::Resume {
            token: presented, ..
        } if !same_token(token, &presented) => {
            Err("it does not carry this transfer's binding secret".into())
        }
        Opening::Resume { stripe, .. } if stripe < stripes => Ok(stripe),
        Opening::Resume { stripe, .. } => Err(format!(
            "it resumes stream {stripe}, but this transfer has {stripes}"
        )),
        Opening::New => Err(
            "it opens a new stream, but this listener carries one stream, which is under way"
                .into(),
        ),
    }
}

/// What follows the binding secret in `presented`, once the secret is checked against
/// `token` (in constant time).
fn after_secret<'a>(token: &[u8; TOKEN_LEN], presented: &'a [u8]) -> Result<&'a [u8], String> {
    let (secret, rest) = presented.split_at(TOKEN_LEN.min(presented.len()));
    if aws_lc_rs::constant_time::verify_slices_are_equal(secret, token).is_err() {
        return Err("it does not carry this transfer's binding secret".into());
    }
    Ok(rest)
}

/// The idle timeout fired in a stripe's task (carried inside an `io::Error` out of it).
#[derive(Debug, thiserror::Error)]
#[error("no progress for {0:?} (--idle-timeout)")]
struct IdleElapsed(Duration);

/// When a stripe last moved a byte, either way: its idle timeout counts from there, so a slow
/// but moving link never times out, however long one chunk takes.
#[derive(Debug)]
struct Moved {
    start: Instant,
    /// Nanoseconds after `start` of the last byte moved.
    last: AtomicU64,
}

impl Moved {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn now(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A stripe that notes in [`Moved`] every byte it reads or writes.
struct Watched<S> {
    inner: S,
    moved: Arc<Moved>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.now();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.now();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Awaits `fut` unless no byte has moved on the stripe for `idle` (never times out when
/// `None`).
async fn within<T>(
    idle: Option<Duration>,
    moved: &Moved,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(limit) = idle else {
        return fut.await;
    };
    moved.now();
    tokio::pin!(fut);
    loop {
        let deadline = tokio::time::Instant::from_std(moved.last() + limit);
        tokio::select! {
            done = &mut fut => return done,
            () = tokio::time::sleep_until(deadline) => {
                if moved.last().elapsed() >= limit {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, IdleElapsed(limit)));
                }
            }
        }
    }
}

/// A stripe's failure as the relay words it: an idle timeout is the relay's own
/// [`RelayError::Idle`], anything else a failed send (the donor) or receive (the joiner).
fn peer_error(source: io::Error, partial: Transfer, sending: bool) -> RelayError {
    match source
        .get_ref()
        .and_then(|e| e.downcast_ref::<IdleElapsed>())
    {
        Some(IdleElapsed(idle)) => RelayError::Idle {
            idle: *idle,
            partial,
        },
        None if sending => RelayError::PeerWrite { source, partial },
        None => RelayError::PeerRead { source, partial },
    }
}

/// Reports progress every interval from the loop that moves the bytes.
struct Ticker<'a> {
    progress: Option<&'a Progress>,
    last: Instant,
}

impl Ticker<'_> {
    fn tick(&mut self, transfer: impl FnOnce() -> Transfer) {
        if let Some(p) = self.progress
            && self.last.elapsed() >= p.every
        {
            self.last = Instant::now();
            (p.report)(&transfer());
        }
    }
}

/// The donor: reads `input` to its end and sends it over `stripes` (bound, in index order),
/// then waits for the joiner's close_notify on every stripe.
pub async fn send<S, R>(
    stripes: Vec<S>,
    mut input: R,
    idle: Option<Duration>,
    progress: Option<&Progress>,
    path: CopyPath,
) -> Result<Transfer, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin,
{
    let started = Instant::now();
    let count = stripes.len();
    let mut queues = Vec::with_capacity(count);
    let mut writers: Vec<JoinHandle<io::Result<()>>> = Vec::with_capacity(count);
    for stripe in stripes {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        queues.push(tx);
        writers.push(tokio::spawn(write_stripe(stripe, rx, idle)));
    }
    let mut sent = 0u64;
    let mut seq = 0u64;
    let snapshot = |sent| Transfer {
        sent,
        received: 0,
        elapsed: started.elapsed(),
        path,
    };
    let mut ticker = Ticker {
        progress,
        last: Instant::now(),
    };
    loop {
        let mut frame = vec![0; HEADER + CHUNK];
        let len = match fill(&mut input, &mut frame[HEADER..]).await {
            Ok(len) => len,
            Err(source) => {
                return Err(RelayError::LocalRead {
                    source,
                    partial: snapshot(sent),
                });
            }
        };
        if len == 0 {
            break;
        }
        frame.truncate(HEADER + len);
        header(&mut frame, seq, len);
        let stripe = usize::try_from(seq % count as u64).unwrap_or(0);
        if queues[stripe].send(frame).await.is_err() {
            // That stripe's writer has stopped: its error is the cause.
            let source = failure(writers.swap_remove(stripe)).await;
            return Err(peer_error(source, snapshot(sent), true));
        }
        seq += 1;
        sent += len as u64;
        ticker.tick(|| snapshot(sent));
    }
    // The end: every stripe learns the total, then closes.
    for queue in &queues {
        let mut end = vec![0; HEADER];
        header(&mut end, seq, 0);
        // A writer that has stopped is reported below.
        let _ = queue.send(end).await;
    }
    drop(queues);
    for writer in writers {
        if let Err(source) = joined(writer).await {
            return Err(peer_error(source, snapshot(sent), true));
        }
    }
    Ok(snapshot(sent))
}

/// Reads until `buf` is full or the input ends; stops early once a read would wait while
/// something is already there (so a slow producer's bytes do not sit in a half-full chunk).
async fn fill<R: AsyncRead + Unpin>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        let read = if len == 0 {
            input.read(&mut buf[len..]).await?
        } else {
            match tokio::time::timeout(Duration::from_millis(20), input.read(&mut buf[len..])).await
            {
                Ok(read) => read?,
                Err(_) => break,
            }
        };
        if read == 0 {
            break;
        }
        len += read;
    }
    Ok(len)
}

fn header(frame: &mut [u8], seq: u64, len: usize) {
    frame[..8].copy_from_slice(&seq.to_be_bytes());
    frame[8..HEADER].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// One stripe of the donor: its frames, then close_notify, then the joiner's close_notify
/// (which the joiner sends only once everything is written out). When the joiner has
/// refused the stream, what it said is read back and becomes the error.
async fn write_stripe<S>(
    stripe: S,
    mut frames: mpsc::Receiver<Vec<u8>>,
    idle: Option<Duration>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let moved = Moved::new();
    let mut stripe = Watched {
        inner: stripe,
        moved: moved.clone(),
    };
    while let Some(frame) = frames.recv().await {
        if let Err(e) = within(idle, &moved, stripe.write_all(&frame)).await {
            return Err(refused_or(&mut stripe, &[], e).await);
        }
    }
    if let Err(e) = within(idle, &moved, stripe.shutdown()).await {
        return Err(refused_or(&mut stripe, &[], e).await);
    }
    let mut byte = [0; 1];
    match within(idle, &moved, stripe.read(&mut byte)).await? {
        0 => Ok(()),
        _ => {
            let unexpected = io::Error::new(
                io::ErrorKind::InvalidData,
                "the listener sent data on a striped stream",
            );
            Err(refused_or(&mut stripe, &byte, unexpected).await)
        }
    }
}

/// The sequence number of a refusal frame: the joiner says why it stops the stream (its
/// length field is the reason's, at most [`REFUSAL_MAX`] bytes of UTF-8).
const REFUSAL: u64 = u64::MAX;
const REFUSAL_MAX: usize = 1024;

/// How long a refusal may take to cross: the refusing joiner waits this long for every
/// stripe to have told the donor, and a failed donor this long to read it back.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// Waits for every task.
async fn join_all(tasks: Vec<JoinHandle<io::Result<()>>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// A refusal frame carrying `reason`.
fn refusal_frame(reason: &str) -> Vec<u8> {
    let text = &reason.as_bytes()[..reason.len().min(REFUSAL_MAX)];
    let mut frame = vec![0; HEADER];
    header(&mut frame, REFUSAL, text.len());
    frame.extend_from_slice(text);
    frame
}

/// After a failure on the donor's side: the joiner's refusal, if that is what it sent (its
/// bytes are still readable after a reset), else `error` as it was. `seen` holds bytes
/// already read.
async fn refused_or<S: AsyncRead + Unpin>(
    stripe: &mut S,
    seen: &[u8],
    error: io::Error,
) -> io::Error {
    let mut bytes = seen.to_vec();
    let read_rest = async {
        let mut buf = [0; 512];
        while bytes.len() < HEADER + REFUSAL_MAX {
            match stripe.read(&mut buf).await {
                Ok(n) if n > 0 => bytes.extend_from_slice(&buf[..n]),
                other => {
                    tracing::debug!("reading a refusal after {error}: {other:?}");
                    break;
                }
            }
            if let Some(reason) = parse_refusal(&bytes) {
                return Some(reason);
            }
        }
        parse_refusal(&bytes)
    };
    match tokio::time::timeout(REFUSAL_WAIT, read_rest).await {
        Ok(Some(reason)) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "the listener refused the striped stream: {}",
                crate::error::escape(&reason)
            ),
        ),
        _ => error,
    }
}

/// A whole refusal frame at the start of `bytes`: its reason.
fn parse_refusal(bytes: &[u8]) -> Option<String> {
    let head = bytes.get(..HEADER)?;
    let seq = u64::from_be_bytes(head[..8].try_into().ok()?);
    let len = u32::from_be_bytes(head[8..].try_into().ok()?) as usize;
    if seq != REFUSAL || len > REFUSAL_MAX {
        return None;
    }
    let text = bytes.get(HEADER..HEADER + len)?;
    Some(String::from_utf8_lossy(text).into_owned())
}

/// The error a stopped task ended with.
async fn failure(task: JoinHandle<io::Result<()>>) -> io::Error {
    match joined(task).await {
        Err(e) => e,
        Ok(()) => io::Error::other("a stripe ended early"),
    }
}

async fn joined(task: JoinHandle<io::Result<()>>) -> io::Result<()> {
    task.await
        .unwrap_or_else(|e| Err(io::Error::other(format!("a stripe's task failed: {e}"))))
}

/// What a stripe's reader hands the joiner's writer.
enum Piece {
    /// The next chunk of this stripe.
    Data(Vec<u8>),
    /// The stripe ended cleanly after the end frame, which named this total.
    End(u64),
}

/// The joiner: reads every stripe (bound, in index order) and writes the stream to `output`
/// in sequence; closes every stripe only once it is all written. A reason sent on `stop`
/// refuses the stream: every stripe tells the donor why, and both ends fail.
pub async fn receive<S, W>(
    stripes: Vec<S>,
    mut output: W,
    idle: Option<Duration>,
    progress: Option<&Progress>,
    path: CopyPath,
    stop: watch::Receiver<Option<String>>,
) -> Result<Transfer, RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let count = stripes.len();
    let mut pieces = Vec::with_capacity(count);
    let mut closers = Vec::with_capacity(count);
    let mut readers: Vec<JoinHandle<io::Result<()>>> = Vec::with_capacity(count);
    for (index, stripe) in stripes.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (close, closed) = oneshot::channel();
        pieces.push(rx);
        closers.push(close);
        readers.push(tokio::spawn(read_stripe(
            stripe,
            index as u64,
            count as u64,
            tx,
            closed,
            idle,
            stop.clone(),
        )));
    }
    let mut received = 0u64;
    let snapshot = |received| Transfer {
        sent: 0,
        received,
        elapsed: started.elapsed(),
        path,
    };
    let mut ticker = Ticker {
        progress,
        last: Instant::now(),
    };
    let mut seq = 0u64;
    let total = loop {
        let stripe = usize::try_from(seq % count as u64).unwrap_or(0);
        match pieces[stripe].recv().await {
            Some(Piece::Data(chunk)) => {
                if let Err(source) = output.write_all(&chunk).await {
                    return Err(RelayError::LocalWrite {
                        source,
                        partial: snapshot(received),
                    });
                }
                seq += 1;
                received += chunk.len() as u64;
                ticker.tick(|| snapshot(received));
            }
            Some(Piece::End(total)) => break total,
            None => {
                let source = failure(readers.swap_remove(stripe)).await;
                if stop.borrow().is_some() {
                    // Refused: every stripe tells the donor why before we go.
                    let _ = tokio::time::timeout(REFUSAL_WAIT, join_all(readers)).await;
                }
                return Err(peer_error(source, snapshot(received), false));
            }
        }
    };
    let broken = |what: String| RelayError::PeerRead {
        source: io::Error::new(io::ErrorKind::InvalidData, what),
        partial: snapshot(received),
    };
    if total != seq {
        return Err(broken(format!(
            "the end frame says {total} chunks, {seq} arrived"
        )));
    }
    // Every other stripe must have ended the same way.
    let ended = usize::try_from(seq % count as u64).unwrap_or(0);
    for index in (0..count).filter(|i| *i != ended) {
        match pieces[index].recv().await {
            Some(Piece::End(t)) if t == total => {}
            Some(_) => {
                return Err(broken(format!(
                    "stripe {index} does not end where the stream does"
                )));
            }
            None => {
                let source = failure(readers.swap_remove(index)).await;
                return Err(peer_error(source, snapshot(received), false));
            }
        }
    }
    if let Err(source) = output.shutdown().await {
        return Err(RelayError::LocalWrite {
            source,
            partial: snapshot(received),
        });
    }
    drop(output);
    // All written out: now the donor may hear that it arrived.
    for close in closers {
        let _ = close.send(());
    }
    for reader in readers {
        // Our close_notify on each stripe: a send.
        if let Err(source) = joined(reader).await {
            return Err(peer_error(source, snapshot(received), true));
        }
    }
    Ok(snapshot(received))
}

/// One stripe of the joiner: frames `index`, `index + count`, ... in order, then the end
/// frame and the donor's close_notify; after the writer says so, our close_notify. A reason
/// on `stop` ends it with a refusal frame and close_notify instead.
async fn read_stripe<S>(
    stripe: S,
    index: u64,
    count: u64,
    pieces: mpsc::Sender<Piece>,
    closed: oneshot::Receiver<()>,
    idle: Option<Duration>,
    mut stop: watch::Receiver<Option<String>>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let moved = Moved::new();
    let mut stripe = Watched {
        inner: stripe,
        moved: moved.clone(),
    };
    let mut expected = index;
    let total = loop {
        let mut head = [0; HEADER];
        tokio::select! {
            read = within(idle, &moved, stripe.read_exact(&mut head)) => { read?; }
            reason = stopped(&mut stop) => return refuse(&mut stripe, &reason).await,
        }
        let seq = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(head[8..].try_into().unwrap_or_default()) as usize;
        if len == 0 {
            break seq;
        }
        if seq != expected || len > CHUNK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "stripe {index}: chunk {seq} of {len} bytes where chunk {expected} of at most {CHUNK} was due"
                ),
            ));
        }
        let mut chunk = vec![0; len];
        within(idle, &moved, stripe.read_exact(&mut chunk)).await?;
        tokio::select! {
            sent = pieces.send(Piece::Data(chunk)) => if sent.is_err() {
                // The writer has stopped; its own error is the one reported.
                return Ok(());
            },
            reason = stopped(&mut stop) => return refuse(&mut stripe, &reason).await,
        }
        expected += count;
    };
    // Nothing may follow the end frame but the donor's close_notify.
    let mut byte = [0; 1];
    if within(idle, &moved, stripe.read(&mut byte)).await? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stripe {index}: data after the end frame"),
        ));
    }
    if pieces.send(Piece::End(total)).await.is_err() {
        return Ok(());
    }
    if closed.await.is_ok() {
        within(idle, &moved, stripe.shutdown()).await?;
    }
    Ok(())
}

/// The reason sent on `stop`; never resolves when none comes.
async fn stopped(stop: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = stop.borrow_and_update().clone() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Tells the donor why the stream is refused (a refusal frame, then close_notify) and ends
/// the stripe with that reason.
async fn refuse<S: AsyncWrite + Unpin>(stripe: &mut S, reason: &str) -> io::Result<()> {
    let _ = stripe.write_all(&refusal_frame(reason)).await;
    let _ = stripe.shutdown().await;
    Err(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        reason.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_stripes_a_long_path_whatever_the_cores() {
        assert_eq!(parse("auto"), Ok(AUTO));
        assert_eq!(auto_for(Some(Duration::from_millis(80))), MAX_STRIPES);
        assert_eq!(auto_for(Some(LONG_PATH)), MAX_STRIPES);
        assert_eq!(auto_for(Some(Duration::from_micros(50))), auto());
        assert_eq!(auto_for(None), auto());
    }

    #[test]
    fn a_reoffer_keeps_the_other_protocols_after_the_stripes() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut with_resume = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        with_resume.alpn_protocols = vec![b"sst-tunnel/resume/1".to_vec()];
        let offered = reoffer(&Arc::new(with_resume), 3);
        assert_eq!(
            offered.alpn_protocols,
            [
                b"sst-tunnel/stripes/3".to_vec(),
                b"sst-tunnel/stripes/2".to_vec(),
                b"sst-tunnel/resume/1".to_vec()
            ]
        );
        // Offered again, with fewer: the old stripes go, resuming stays.
        assert_eq!(
            reoffer(&offered, 1).alpn_protocols,
            [b"sst-tunnel/resume/1".to_vec()]
        );
    }

    #[test]
    fn both_ends_agree_on_the_smaller_maximum() {
        assert!(protocols(1).is_empty());
        assert_eq!(
            protocols(3),
            [
                b"sst-tunnel/stripes/3".to_vec(),
                b"sst-tunnel/stripes/2".to_vec()
            ]
        );
        assert_eq!(protocols(99).len(), 7);
        assert_eq!(negotiated(Some(b"sst-tunnel/stripes/4")), 4);
        assert_eq!(negotiated(Some(b"sst-tunnel/stripes/9")), 1);
        assert_eq!(negotiated(Some(b"h2")), 1);
        assert_eq!(negotiated(None), 1);
        assert!((1..=MAX_STRIPES).contains(&auto()));
    }

    #[test]
    fn an_idle_stripe_is_the_relays_idle_error() {
        let partial = Transfer {
            sent: 1,
            received: 0,
            elapsed: Duration::ZERO,
            path: CopyPath::Buffered,
        };
        let idle = io::Error::new(io::ErrorKind::TimedOut, IdleElapsed(Duration::from_secs(7)));
        assert!(matches!(
            peer_error(idle, partial, true),
            RelayError::Idle { idle, .. } if idle == Duration::from_secs(7)
        ));
        // A socket's own timeout is not the idle timeout.
        let socket = io::Error::from(io::ErrorKind::TimedOut);
        assert!(matches!(
            peer_error(socket, partial, false),
            RelayError::PeerRead { .. }
        ));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            peer_error(reset, partial, true),
            RelayError::PeerWrite { .. }
        ));
    }

    #[test]
    fn a_refusal_frame_round_trips_and_nothing_else_reads_as_one() {
        let frame = refusal_frame("stdin has data");
        assert_eq!(parse_refusal(&frame).as_deref(), Some("stdin has data"));
        assert_eq!(parse_refusal(&frame[..frame.len() - 1]), None);
        let mut data = vec![0; HEADER];
        header(&mut data, 7, 3);
        data.extend_from_slice(b"abc");
        assert_eq!(parse_refusal(&data), None);
        assert!(refusal_frame(&"x".repeat(5000)).len() <= HEADER + REFUSAL_MAX);
    }

    #[test]
    fn an_opening_is_a_new_stream_or_a_token_to_resume() {
        let token = [7; TOKEN_LEN];
        assert_eq!(parse_opening(&opening_new()), Ok(Opening::New));
        assert_eq!(
            parse_opening(&opening_resume(&token, 3)),
            Ok(Opening::Resume {
                token: Zeroizing::new(token),
                stripe: 3
            })
        );
        assert_eq!(check_resume(&token, &opening_resume(&token, 0), 1), Ok(0));
        assert_eq!(check_resume(&token, &opening_resume(&token, 3), 4), Ok(3));
        assert!(check_resume(&token, &opening_resume(&token, 4), 4).is_err());
        assert!(check_resume(&token, &opening_resume(&token, 1), 1).is_err());
        assert!(check_resume(&[8; TOKEN_LEN], &opening_resume(&token, 0), 1).is_err());
        assert!(check_resume(&token, &opening_new(), 1).is_err());
        assert!(check_resume(&token, &binding(&token, 1), 4).is_err());
        assert!(check_resume(&token, &token[..5], 1).is_err());
        // A new stream's opening carries no token; one that does is neither.
        let mut odd = opening_new();
        odd[5] = 1;
        assert!(parse_opening(&odd).is_err());
        assert!(parse_opening(&[9; OPENING_LEN]).is_err());
    }

    #[test]
    fn bindings_name_a_stripe_and_carry_the_token() {
        let token = [7; TOKEN_LEN];
        assert_eq!(check_binding(&token, &binding(&token, 3), 4), Ok(3));
        assert!(check_binding(&token, &binding(&token, 0), 4).is_err());
        assert!(check_binding(&token, &binding(&token, 4), 4).is_err());
        assert!(check_binding(&[8; TOKEN_LEN], &binding(&token, 1), 4).is_err());
        assert!(check_binding(&token, &token[..10], 4).is_err());
    }
}
