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
//! Binding: the donor opens the first connection with a new-stream opening ([`Opening`]),
//! and the listener answers with a random 32-byte token (inside TLS: only the two verified
//! ends see it). The donor opens the other N-1 connections to the same address; each is
//! verified exactly like the first, its peer certificate must be the first one's, and it
//! opens with the token and the stripe it carries, compared in constant time: the same
//! opening a connection replacing a broken stripe presents, so there is one binding. Anything
//! else is refused and does not count.
//!
//! Carriage: each connection is a link ([`super::resume::links`]) with the resumable
//! stream's framing (offsets, acknowledgements, end frames, aborts); it resumes on a new
//! connection when both ends agreed to (`sst-tunnel/stripes-resume/...`, offered ahead of
//! each plain protocol), and otherwise fails the stream when its connection does. The
//! striping adds no framing of its own, only a layout: the stream goes in fixed blocks of
//! [`BLOCK`] bytes, round robin, block `k` on stripe `k mod N`, so where a byte sits in its
//! stripe says where it sits in the stream. Between the striping and each link go pieces,
//! not bytes, through a queue of a few (moved, not copied again); each link decrypts in its
//! own task into its queue while the joiner writes the blocks out in order, so at most about
//! `N x 5 x 64 KiB` wait however the stripes are paced. The stream ends where
//! a stripe's link ends inside the block due (every other stripe's link must end there
//! too); only when all of it is written out does the joiner end its side of every link,
//! which is what the donor waits for: any stripe cut, reset beyond resuming, or ending
//! elsewhere fails both ends.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use zeroize::Zeroizing;

use crate::ends::resume::{JOIN_MARK, Moved, NEW_MARK, Stripe};
use crate::fastpath::CopyPath;
use crate::relay::{Progress, RelayError, Transfer};

/// The ALPN protocol name's prefix; the number of stripes follows in decimal. (Version 2:
/// version 1 framed chunks inside the stripes and bound them with a second kind of opening.)
const ALPN_PREFIX: &str = "sst-tunnel/stripes/2/";
/// The same for a striped stream whose stripes each resume ([`super::resume`]).
const RESUMABLE_PREFIX: &str = "sst-tunnel/stripes-resume/2/";
/// The most stripes either end agrees to.
pub const MAX_STRIPES: u32 = 8;
/// The binding secret's length.
pub const TOKEN_LEN: usize = 32;
/// The layout's block: the stream's bytes `[k x BLOCK, (k + 1) x BLOCK)` go on stripe
/// `k mod N`.
pub const BLOCK: usize = 128 * 1024;

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

/// What the dialling end of a striped or resumable stream's connection says first, before
/// anything else in either direction: a new stream ([`NEW_MARK`], no token yet: the listener
/// answers with one), or a connection that carries stripe `stripe` of the stream bound to a
/// token (0 for a stream of one): one of a striped stream's other connections, or one
/// replacing a broken connection. Client first, so a listener that serves many streams at
/// once (an exec listener: rsync's connections) can tell a new stream from one under way and
/// route the connection to the stream, and the stripe, it belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A new stream.
    New,
    /// Stripe `stripe` of the stream bound to `token` (wiped on drop).
    Join {
        /// The stream's binding secret.
        token: Token,
        /// Which of its connections this one is (or replaces).
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

/// The opening of a connection carrying stripe `stripe` (0: the one connection of an
/// unstriped stream) of the stream bound to `token` (wiped on drop).
pub fn opening_join(token: &[u8; TOKEN_LEN], stripe: u32) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(OPENING_LEN));
    bytes.push(u8::try_from(stripe).unwrap_or(u8::MAX));
    bytes.push(JOIN_MARK[1]);
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
    if mark[1] == JOIN_MARK[1] && u32::from(mark[0]) < MAX_STRIPES {
        let mut token: Token = Zeroizing::new([0; TOKEN_LEN]);
        token.copy_from_slice(rest);
        return Ok(Opening::Join {
            token,
            stripe: u32::from(mark[0]),
        });
    }
    Err("it opened with neither a new stream nor a stream under way".into())
}

/// Whether `presented` is this stream's token, in constant time.
pub fn same_token(token: &[u8; TOKEN_LEN], presented: &[u8; TOKEN_LEN]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(token, presented).is_ok()
}

/// Checks what a connection that would carry a stripe of the stream bound to `token`
/// (striped over `stripes`, 1: not striped) opened with: the stripe it carries.
pub fn check_join(token: &[u8; TOKEN_LEN], opened: &[u8], stripes: u32) -> Result<u32, String> {
    match parse_opening(opened)? {
        Opening::Join {
            token: presented, ..
        } if !same_token(token, &presented) => {
            Err("it does not carry this transfer's binding secret".into())
        }
        Opening::Join { stripe, .. } if stripe < stripes => Ok(stripe),
        Opening::Join { stripe, .. } => Err(format!(
            "it carries stream {stripe}, but this transfer has {stripes}"
        )),
        Opening::New => Err(
            "it opens a new stream, but this listener carries one stream, which is under way"
                .into(),
        ),
    }
}

/// The idle timeout fired in a stripe's task (carried inside an `io::Error` out of it).
#[derive(Debug, thiserror::Error)]
#[error("no progress for {0:?} (--idle-timeout)")]
struct IdleElapsed(Duration);

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

/// Input read at most at once: a link's frame, so pieces and frames line up.
const PIECE: usize = 64 << 10;

/// The donor: reads `input` to its end and sends it over `stripes` (in index order) in the
/// layout's blocks, then ends every stripe and waits for the joiner to end each (it has
/// written it all out).
pub async fn send<R>(
    mut stripes: Vec<Stripe>,
    mut input: R,
    idle: Option<Duration>,
    progress: Option<&Progress>,
    path: CopyPath,
) -> Result<Transfer, RelayError>
where
    R: AsyncRead + Unpin,
{
    let started = Instant::now();
    let count = stripes.len();
    let cause = stripes.first().map(Stripe::cause).unwrap_or_default();
    let mut sent = 0u64;
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
    // The stripe whose block is being filled, and how far.
    let (mut stripe, mut at) = (0, 0);
    loop {
        // Whatever the input has, up to the block's end: a slow producer's bytes go out
        // as they come (into capacity, not zeroed first: our stdin reads into it as it is).
        let mut piece = Vec::with_capacity((BLOCK - at).min(PIECE));
        let len = match input.read_buf(&mut piece).await {
            Ok(len) => len,
            Err(source) => {
                // The links tell the joiner why, rather than that the striping went away.
                cause.record(u32::MAX, local_failure("reading local input", &source));
                return Err(RelayError::LocalRead {
                    source,
                    partial: snapshot(sent),
                });
            }
        };
        if len == 0 {
            break;
        }
        let link = &mut stripes[stripe];
        let moved = link.moved();
        if let Err(source) = within(idle, &moved, link.send(piece)).await {
            return Err(peer_error(source, snapshot(sent), true));
        }
        sent += len as u64;
        at += len;
        if at == BLOCK {
            (stripe, at) = ((stripe + 1) % count, 0);
        }
        ticker.tick(|| snapshot(sent));
    }
    for stripe in &mut stripes {
        stripe.finish();
    }
    // The joiner ends its side of every stripe only once it has written everything out.
    for stripe in &mut stripes {
        let moved = stripe.moved();
        match within(idle, &moved, stripe.recv()).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                let unexpected = io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the listener sent data on a striped stream",
                );
                return Err(peer_error(unexpected, snapshot(sent), true));
            }
            Err(source) => return Err(peer_error(source, snapshot(sent), true)),
        }
    }
    Ok(snapshot(sent))
}

/// Why this end stops the stream, as its links tell the peer (as a single stream's would).
fn local_failure(doing: &str, error: &io::Error) -> String {
    format!("it failed: {doing}: {}", crate::tls::describe_local(error))
}

/// The joiner: reads every stripe (in index order) and writes the stream to `output` block
/// by block; ends every stripe only once it is all written. A reason sent on `stop` refuses
/// the stream: every link tells the donor why, and both ends fail.
pub async fn receive<W>(
    mut stripes: Vec<Stripe>,
    mut output: W,
    idle: Option<Duration>,
    progress: Option<&Progress>,
    path: CopyPath,
    mut stop: watch::Receiver<Option<String>>,
) -> Result<Transfer, RelayError>
where
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let count = stripes.len();
    let cause = stripes.first().map(Stripe::cause).unwrap_or_default();
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
    // A piece may run past its block's end: the rest waits here for that stripe's turn.
    let mut left: Vec<(Vec<u8>, usize)> = (0..count).map(|_| (Vec::new(), 0)).collect();
    let (mut stripe, mut at) = (0, 0);
    loop {
        if left[stripe].1 == left[stripe].0.len() {
            let link = &mut stripes[stripe];
            let moved = link.moved();
            let next = tokio::select! {
                next = within(idle, &moved, link.recv()) => next,
                reason = stopped(&mut stop) => {
                    // Refused: the reason is recorded, and every stripe dropped unended makes
                    // its link tell the donor.
                    return Err(RelayError::PeerRead {
                        source: io::Error::new(io::ErrorKind::ConnectionAborted, reason),
                        partial: snapshot(received),
                    });
                }
            };
            match next {
                Ok(Some(piece)) => left[stripe] = (piece, 0),
                Ok(None) => break,
                Err(source) => return Err(peer_error(source, snapshot(received), false)),
            }
        }
        let (piece, from) = &mut left[stripe];
        let n = (piece.len() - *from).min(BLOCK - at);
        if let Err(source) = output.write_all(&piece[*from..*from + n]).await {
            cause.record(u32::MAX, local_failure("writing local output", &source));
            return Err(RelayError::LocalWrite {
                source,
                partial: snapshot(received),
            });
        }
        *from += n;
        received += n as u64;
        at += n;
        if at == BLOCK {
            (stripe, at) = ((stripe + 1) % count, 0);
        }
        ticker.tick(|| snapshot(received));
    }
    // The stream ends in this stripe's block: every other stripe must end here too.
    for index in (0..count).filter(|i| *i != stripe) {
        let link = &mut stripes[index];
        let moved = link.moved();
        let more = left[index].1 < left[index].0.len();
        match within(idle, &moved, link.recv()).await {
            Ok(None) if !more => {}
            Ok(_) => {
                return Err(RelayError::PeerRead {
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "stream {index} goes on after stream {stripe} ended the stream at \
                             byte {received}"
                        ),
                    ),
                    partial: snapshot(received),
                });
            }
            Err(source) => return Err(peer_error(source, snapshot(received), false)),
        }
    }
    if let Err(source) = output.shutdown().await {
        cause.record(u32::MAX, local_failure("writing local output", &source));
        return Err(RelayError::LocalWrite {
            source,
            partial: snapshot(received),
        });
    }
    drop(output);
    // All written out: now the donor may hear that it arrived.
    for stripe in &mut stripes {
        stripe.finish();
    }
    // Each link ends once the donor has our end (settled with the links' own results).
    Ok(snapshot(received))
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
                b"sst-tunnel/stripes/2/3".to_vec(),
                b"sst-tunnel/stripes/2/2".to_vec(),
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
                b"sst-tunnel/stripes/2/3".to_vec(),
                b"sst-tunnel/stripes/2/2".to_vec()
            ]
        );
        assert_eq!(protocols(99).len(), 7);
        assert_eq!(negotiated(Some(b"sst-tunnel/stripes/2/4")), 4);
        assert_eq!(negotiated(Some(b"sst-tunnel/stripes/2/9")), 1);
        // Version 1's names are another protocol.
        assert_eq!(negotiated(Some(b"sst-tunnel/stripes/4")), 1);
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
    fn an_opening_is_a_new_stream_or_a_token_to_resume() {
        let token = [7; TOKEN_LEN];
        assert_eq!(parse_opening(&opening_new()), Ok(Opening::New));
        assert_eq!(
            parse_opening(&opening_join(&token, 3)),
            Ok(Opening::Join {
                token: Zeroizing::new(token),
                stripe: 3
            })
        );
        assert_eq!(check_join(&token, &opening_join(&token, 0), 1), Ok(0));
        assert_eq!(check_join(&token, &opening_join(&token, 3), 4), Ok(3));
        assert!(check_join(&token, &opening_join(&token, 4), 4).is_err());
        assert!(check_join(&token, &opening_join(&token, 1), 1).is_err());
        assert!(check_join(&[8; TOKEN_LEN], &opening_join(&token, 0), 1).is_err());
        assert!(check_join(&token, &opening_new(), 1).is_err());
        assert!(check_join(&token, &token[..5], 1).is_err());
        // A new stream's opening carries no token; one that does is neither.
        let mut odd = opening_new();
        odd[5] = 1;
        assert!(parse_opening(&odd).is_err());
        assert!(parse_opening(&[9; OPENING_LEN]).is_err());
    }
}
