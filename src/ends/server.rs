//! `sst-tunnel listen`: the TLS server, relaying one connection to stdio or running a program
//! per connection.
//!
//! The native command and the stunnel/socat front-ends all end here: they describe what to
//! serve as a [`Plan`], open the socket with [`open`] (the stunnel front-end writes its pid
//! file between the two), and hand both to [`serve`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info, warn};

use crate::ends::exec::{self, PeerEnv, Program};
use crate::ends::gate::{Gate, Pending};
use crate::ends::session;
use crate::ends::stdio::{Direction, LocalEnds, StdinReader};
use crate::ends::stripes::Opening;
use crate::ends::{resume, stripes};
use crate::error::escape;
use crate::error::{Error, Result};
use crate::net::{self, HostPort};
use crate::relay;
use crate::settings::{ListenSettings, Reporting, Role, Serve, mycnf};
use crate::tls::{self, Prepared};
use zeroize::Zeroizing;

/// How long a stdio listener waits on once a TLS peer's certificate was rejected (or ours by
/// it): most likely the donor itself with the wrong files, so the SST has failed; the port
/// must come free for the next attempt, as it does with stock socat. Capped by the
/// handshake timeout.
const AFTER_REJECTION: Duration = Duration::from_secs(5);

/// Pause after a failed accept (EMFILE and friends) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a listener serves, and how. A stdio listener whose config accepts stripes
/// ([`stripes::accept_up_to`]) takes a donor's striped stream.
pub struct Plan {
    /// The TLS server configuration.
    pub config: Arc<ServerConfig>,
    /// Handshake deadline per connection.
    pub handshake: Duration,
    /// Idle timeout per connection; `None` disables it.
    pub idle: Option<Duration>,
    /// Stdio or exec.
    pub mode: Mode,
    /// Progress lines and the stats file.
    pub report: Reporting,
    /// How long a broken stream may take to resume (zero: never), and what it keeps for
    /// resending. `config` must agree to it ([`resume::accept`]).
    pub resume: resume::Bounds,
}

/// The two kinds of listener.
pub enum Mode {
    /// Relay exactly one verified connection to stdin/stdout; connections that fail their
    /// handshake or verification before it are refused and the wait goes on ([`gate`]).
    Stdio {
        /// Which ways bytes flow.
        direction: Direction,
    },
    /// Run `program` for every connection.
    Exec {
        /// What to run.
        program: Program,
        /// Most connections served at once.
        max_connections: u32,
    },
}

/// `sst-tunnel listen`: checks everything, opens the socket, serves.
pub async fn run(mut args: ListenSettings) -> Result<()> {
    mycnf::apply(&mut args.tls, Role::Joiner)?;
    let bind = net::parse_bind(&args.bind)?;
    let prepared = Prepared::load(&args.tls, None)?;
    let mut config = tls::server_config(&args.tls, prepared)?;
    let bounds = resume::Bounds {
        window: args.stream.resume_window,
        replay: args.stream.resume_buffer,
    };
    if matches!(args.serve, Serve::Stdio) {
        config = stripes::accept_up_to(config, args.streams);
    }
    config = resume::accept(config, bounds.window);
    let mode = match args.serve {
        Serve::Exec(argv) => Mode::Exec {
            program: Program::from_argv(argv)?,
            max_connections: args.max_connections,
        },
        Serve::Stdio => Mode::Stdio {
            direction: Direction::Both,
        },
    };
    let plan = Plan {
        config,
        handshake: args.tls.handshake_timeout,
        idle: args.stream.idle(),
        report: args.stream.reporting(matches!(mode, Mode::Exec { .. })),
        mode,
        resume: bounds,
    };
    check(&plan)?;
    let listener = open(&bind).await?;
    serve(listener, plan).await
}

/// Start-up checks that need no socket (an `--exec` program that does not exist).
pub fn check(plan: &Plan) -> Result<()> {
    match &plan.mode {
        Mode::Exec { program, .. } => exec::check(program),
        Mode::Stdio { .. } => Ok(()),
    }
}

/// Opens the listening socket and logs `listening on ADDR`.
pub async fn open(bind: &HostPort) -> Result<TcpListener> {
    let listener = net::listen(bind).await?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listening socket has no address: {e}")))?;
    info!("listening on {local}");
    Ok(listener)
}

/// Serves `plan` on an open listener: until a signal (exec) or one connection's end (stdio).
pub async fn serve(listener: TcpListener, plan: Plan) -> Result<()> {
    let acceptor = plan.config;
    let limits = Limits {
        handshake: plan.handshake,
        idle: plan.idle,
        report: plan.report,
        resume: plan.resume,
    };
    match plan.mode {
        Mode::Exec {
            program,
            max_connections,
        } => {
            serve_exec(
                listener,
                acceptor,
                Arc::new(program),
                Arc::new(limits),
                max_connections,
            )
            .await
        }
        Mode::Stdio { direction } => serve_stdio(listener, acceptor, &limits, direction).await,
    }
}

/// Per-connection settings shared by every handler.
struct Limits {
    handshake: Duration,
    idle: Option<Duration>,
    report: Reporting,
    resume: resume::Bounds,
}

/// Waits for one verified connection and relays it to stdio. Whatever fails before it (a
/// scanner, a probe, a wrong certificate) is refused and logged, and the wait goes on: the
/// SST script's own timeout bounds the whole wait, as it does for stock socat.
async fn serve_stdio(
    listener: TcpListener,
    acceptor: Arc<ServerConfig>,
    limits: &Limits,
    direction: Direction,
) -> Result<()> {
    let mut gate = Gate::new(listener, limits.handshake);
    gate.give_up_after_rejection(limits.handshake.min(AFTER_REJECTION));
    let mut pending = Pending::default();
    let handshake = limits.handshake;
    let config = acceptor.clone();
    let accept = move |tcp| {
        let config = config.clone();
        async move { session::accept(&config, tcp, handshake).await }
    };
    let (peer, mut stream, info) = loop {
        let (peer, (mut stream, info)) = gate.next(&mut pending, accept.clone()).await?;
        // A verified peer's first connection is the stream: one that breaks before its
        // opening fails it, as a stream cut short does. A striped or resumable stream's
        // first connection must open a new one; one joining a stream this listener never
        // had (a joiner started again has lost it) is refused, and the wait goes on.
        if info.resume || info.stripes > 1 {
            match opening(&mut stream, handshake).await {
                Ok(Opening::New) => {}
                Ok(Opening::Join { .. }) => {
                    gate.refuse(peer, "it joins a stream this listener does not carry");
                    continue;
                }
                // The stream, cut before it began: reported (and in the stats) as one.
                Err(source) => {
                    let partial = relay::Transfer {
                        sent: 0,
                        received: 0,
                        elapsed: Duration::ZERO,
                        path: session::copy_path(&stream),
                    };
                    let failed = Err(relay::RelayError::PeerRead { source, partial });
                    return limits.report.finish(&peer.to_string(), &info, failed);
                }
            }
        }
        break (peer, stream, info);
    };
    // The other handshakes in flight are not the donor's (it opens its other stripes only
    // once it has the binding token).
    drop(pending);
    debug!(%peer, version = %info.version, suite = %info.suite, client = ?info.peer_subject, "handshake complete");
    if info.stripes > 1 {
        return striped(gate, &acceptor, limits, stream, info, peer, direction).await;
    }
    if info.resume {
        return resumable(gate, &acceptor, limits, stream, info, peer, direction).await;
    }
    // One connection only: later dialers get "connection refused", not a silent queue.
    drop(gate);
    let local = LocalEnds::open(direction, false);
    let label = peer.to_string();
    let options = limits
        .report
        .relay_options(&label, &info, limits.idle, local.end_with_peer);
    let result = relay::relay(&mut stream, local.input, local.output, options).await;
    limits.report.finish(&label, &info, result)
}

/// A stream striped over `info.stripes` connections: the binding token on the first (which
/// opened a new stream), the donor's other connections accepted and bound to it within the
/// handshake timeout, then the stream to stdout (one-way), each connection its own link
/// ([`resume::links`]). A connection that is not one of them is refused and does
/// not count, however many there are ([`gate`]).
async fn striped(
    mut gate: Gate,
    acceptor: &Arc<ServerConfig>,
    limits: &Limits,
    mut first: session::ServerStream,
    info: session::TlsInfo,
    peer: SocketAddr,
    direction: Direction,
) -> Result<()> {
    let count = info.stripes;
    let token = send_token(&mut first).await?;
    let path = session::copy_path(&first);
    let mut slots: Vec<Option<resume::Conn>> = (0..count).map(|_| None).collect();
    slots[0] = Some(Box::new(first));
    let wait = limits.handshake;
    let deadline = tokio::time::Instant::now() + wait;
    // Each newcomer is handshaken and checked by itself, so a slow or hostile one cannot
    // hold up the donor's.
    let mut pending = Pending::default();
    let first_info = Arc::new(info.clone());
    let token = Arc::new(token);
    let check = {
        let acceptor = acceptor.clone();
        let (first_info, token) = (first_info.clone(), token.clone());
        move |tcp| {
            let (acceptor, first, token) = (acceptor.clone(), first_info.clone(), token.clone());
            async move {
                tokio::time::timeout(wait, bind_join(&acceptor, tcp, wait, &token, &first))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Handshake(format!("nothing bound within {wait:?}")))
                    })
            }
        }
    };
    while slots.iter().any(Option::is_none) {
        let next = gate.next(&mut pending, check.clone());
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Err(e)) => return Err(e),
            Ok(Ok((from, (index, stream)))) if slots[index as usize].is_none() => {
                debug!(%from, "stream {index} of {count} bound");
                slots[index as usize] = Some(stream);
            }
            Ok(Ok((from, (index, _)))) => {
                gate.refuse(from, &format!("stream {index} is already bound"));
            }
            Err(_) => {
                let arrived = slots.iter().filter(|s| s.is_some()).count();
                return Err(Error::Transfer(format!(
                    "{peer} agreed to {count} streams but only {arrived} arrived within {wait:?} \
                     (--handshake-timeout)"
                )));
            }
        }
    }
    drop(pending);
    let conns: Vec<resume::Conn> = slots.into_iter().flatten().collect();
    let local = LocalEnds::open(Direction::ReceiveOnly, false);
    let label = peer.to_string();
    let progress = limits.report.progress_for(&label);
    // A striped stream only carries donor -> joiner: input here would be dropped, so any
    // byte on stdin refuses the stream, and both ends say why.
    let (stop, stopped) = watch::channel(None);
    // A resumable stream's stripes stop for the first failure, and say which: input on
    // stdin is recorded as the reason before the stripes are told.
    let siblings = Arc::new(resume::Siblings::default());
    let watcher = (direction != Direction::ReceiveOnly)
        .then(|| tokio::spawn(watch_stdin(stop, siblings.clone())));
    let mut info = info;
    // Each stripe its own link. Resuming: the port stays open, and a connection that
    // resumes stripe i goes to stripe i's link; otherwise every stripe is here, later
    // dialers get "connection refused", and a broken stripe fails the stream.
    let (accepting, arrivals) = if info.resume {
        let (accepting, arrivals) = resumptions(gate, acceptor, limits, first_info, token);
        (Some(accepting), arrivals)
    } else {
        drop(gate);
        (None, Vec::new())
    };
    // One receiver per stripe, in the links' order (a missing one is a closed channel:
    // that stripe cannot resume).
    let mut arrivals = arrivals.into_iter();
    let (pipes, links) = resume::links(
        conns,
        |_| resume::Again::Accept(arrivals.next().unwrap_or_else(|| mpsc::channel(1).1)),
        limits.resume.agreed(info.resume),
        &label,
        path,
        siblings,
    );
    let result = stripes::receive(
        pipes,
        local.output,
        limits.idle,
        progress.as_ref(),
        path,
        stopped,
    )
    .await;
    let (result, resumptions) = resume::settle(result, links).await;
    if let Some(accepting) = accepting {
        accepting.abort();
    }
    info.resumptions = resumptions;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    limits.report.finish(&label, &info, result)
}

/// The connections that come to resume a stream under way, checked ([`bind_resume`]) and
/// each handed to its stripe's link (one receiver per stripe, in order; one for an
/// unstriped stream). Others are refused and logged, and the wait goes on until the task is
/// aborted (the stream's end: later dialers get "connection refused").
fn resumptions(
    mut gate: Gate,
    acceptor: &Arc<ServerConfig>,
    limits: &Limits,
    first: Arc<session::TlsInfo>,
    token: Arc<stripes::Token>,
) -> (
    tokio::task::JoinHandle<()>,
    Vec<mpsc::Receiver<resume::Conn>>,
) {
    gate.keep_waiting();
    let wait = limits.handshake;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..first.stripes).map(|_| mpsc::channel(1)).unzip();
    let check = {
        let acceptor = acceptor.clone();
        move |tcp| {
            let (acceptor, first, token) = (acceptor.clone(), first.clone(), token.clone());
            async move {
                tokio::time::timeout(wait, bind_join(&acceptor, tcp, wait, &token, &first))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Handshake(format!("nothing bound within {wait:?}")))
                    })
            }
        }
    };
    let accepting = tokio::spawn(async move {
        let mut pending = Pending::default();
        while let Ok((from, (stripe, conn))) = gate.next(&mut pending, check.clone()).await {
            debug!(%from, "a connection to resume stream {stripe} on");
            let Some(sender) = senders.get(stripe as usize) else {
                continue;
            };
            if sender.send(conn).await.is_err() {
                break;
            }
        }
    });
    (accepting, receivers)
}

/// A stream that resumes on a new connection when its connection breaks ([`resume`]): the
/// binding token on the first; the port stays open, and a connection verified like the
/// first, with the first's client certificate and the token, takes over the stream. Any
/// other is refused and logged, and the wait goes on.
async fn resumable(
    gate: Gate,
    acceptor: &Arc<ServerConfig>,
    limits: &Limits,
    mut first: session::ServerStream,
    mut info: session::TlsInfo,
    peer: SocketAddr,
    direction: Direction,
) -> Result<()> {
    let token = Arc::new(send_token(&mut first).await?);
    let path = session::copy_path(&first);
    let (accepting, mut arrivals) =
        resumptions(gate, acceptor, limits, Arc::new(info.clone()), token);
    let arrivals = arrivals.remove(0);
    let label = peer.to_string();
    let local = LocalEnds::open(direction, false);
    let options = limits
        .report
        .relay_options(&label, &info, limits.idle, local.end_with_peer);
    let (result, resumptions) = resume::stream(
        Box::new(first),
        resume::Again::Accept(arrivals),
        limits.resume.window,
        label.clone(),
        resume::Local::new(local, options, path, limits.resume.replay),
    )
    .await;
    // Over: later dialers get "connection refused".
    accepting.abort();
    info.resumptions = resumptions;
    limits.report.finish(&label, &info, result)
}

/// One newcomer while a striped or resumable stream is under way (one of its other
/// stripes, or a connection resuming one): verified like the first (and with the first's
/// client certificate), the same agreement, and an opening that joins this stream (its
/// binding secret, read into memory wiped on drop).
async fn bind_join(
    acceptor: &Arc<ServerConfig>,
    tcp: TcpStream,
    wait: Duration,
    token: &[u8; stripes::TOKEN_LEN],
    first: &session::TlsInfo,
) -> Result<(u32, resume::Conn)> {
    let (mut stream, extra) = session::accept(acceptor, tcp, wait).await?;
    extra.joins(first)?;
    let mut opened = Zeroizing::new([0; stripes::OPENING_LEN]);
    stream
        .read_exact(&mut opened[..])
        .await
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    let stripe = stripes::check_join(token, &opened[..], first.stripes).map_err(Error::Transfer)?;
    Ok((stripe, Box::new(stream)))
}

/// Why a striped stream with input on the listener's side is refused.
const INPUT_ON_STRIPES: &str = "the listener has input on stdin, but a striped stream carries \
data only from the donor to the listener, so that input would be lost; run both ends without \
--streams (SST_TUNNEL_STREAMS=1 for the front-ends)";

/// Waits for a byte on stdin; sends the refusal when one comes (end of input: nothing to do),
/// first recording it as the reason a resumable stream's stripes stop.
async fn watch_stdin(stop: watch::Sender<Option<String>>, siblings: Arc<resume::Siblings>) {
    let mut input = StdinReader::open();
    let mut byte = [0; 1];
    if matches!(input.read(&mut byte).await, Ok(n) if n > 0) {
        siblings.record(
            u32::MAX,
            format!("the listener refused the striped stream: {INPUT_ON_STRIPES}"),
        );
        let _ = stop.send(Some(INPUT_ON_STRIPES.to_string()));
        // Keep the sender until the stream is refused.
        std::future::pending::<()>().await;
    }
}

/// What a resumable connection's dialling end opens with (within `wait`).
async fn read_opening(stream: &mut session::ServerStream, wait: Duration) -> Result<Opening> {
    opening(stream, wait)
        .await
        .map_err(|e| tls::classify(&e, Error::Transfer))
}

/// [`read_opening`], failing as the stream's own I/O does (for the relay's report).
async fn opening(stream: &mut session::ServerStream, wait: Duration) -> std::io::Result<Opening> {
    let mut opened = Zeroizing::new([0; stripes::OPENING_LEN]);
    tokio::time::timeout(wait, stream.read_exact(&mut opened[..]))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("it agreed to stripe or resume but sent no opening within {wait:?}"),
            )
        })??;
    stripes::parse_opening(&opened[..])
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}

/// The binding secret, the answer to a new striped or resumable stream's opening.
async fn send_token(first: &mut session::ServerStream) -> Result<stripes::Token> {
    let token = stripes::token().map_err(|e| Error::Internal(e.to_string()))?;
    first
        .write_all(&token[..])
        .await
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    first
        .flush()
        .await
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    Ok(token)
}

/// Accepts connections until a signal ends the process, running `program` for each.
async fn serve_exec(
    listener: TcpListener,
    acceptor: Arc<ServerConfig>,
    program: Arc<Program>,
    limits: Arc<Limits>,
    max_connections: u32,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let streams = Arc::new(Streams::default());
    loop {
        // Take a slot before accepting: excess clients wait in the backlog, not in memory.
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("connection limiter closed".into()))?;
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let program = program.clone();
        let limits = limits.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one_exec(tcp, peer, acceptor, &program, &limits, &streams).await {
                // The error may quote the peer (its certificate's names): one escaped line.
                warn!("connection from {peer} failed: {}", escape(&e.to_string()));
            }
            drop(permit);
        });
    }
}

/// The resumable streams an exec listener is carrying, each with its own child, for the
/// connections that come to resume one of them.
#[derive(Default)]
struct Streams(std::sync::Mutex<Vec<Carried>>);

/// One resumable stream under way on an exec listener.
struct Carried {
    id: u64,
    token: stripes::Token,
    first: session::TlsInfo,
    arrivals: mpsc::Sender<resume::Conn>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Carried>> {
        // A panic elsewhere cannot leave the list half-changed: pushes and removals only.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, carried: Carried) {
        self.lock().push(carried);
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|c| c.id != id);
    }

    /// The stream `token` binds (each token compared in constant time), as its first
    /// connection's peer and where its next connection goes.
    fn find(
        &self,
        token: &[u8; stripes::TOKEN_LEN],
    ) -> Option<(session::TlsInfo, mpsc::Sender<resume::Conn>)> {
        let streams = self.lock();
        let mut found = None;
        for c in streams.iter() {
            if stripes::same_token(&c.token, token) {
                found = Some((c.first.clone(), c.arrivals.clone()));
            }
        }
        found
    }
}

/// One exec connection: handshake, spawn, relay, reap. A resumable one (both ends
/// sst-tunnel) opens a new stream, whose child keeps running across broken connections, or
/// resumes one under way and is handed to it.
async fn serve_one_exec(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Arc<ServerConfig>,
    program: &Program,
    limits: &Limits,
    streams: &Arc<Streams>,
) -> Result<()> {
    let (mut stream, mut info) = session::accept(&acceptor, tcp, limits.handshake).await?;
    if info.resume
        && let Opening::Join { token, stripe } = read_opening(&mut stream, limits.handshake).await?
    {
        if stripe != 0 {
            return Err(Error::Transfer(format!(
                "it resumes stream {stripe}, but exec streams are not striped"
            )));
        }
        let Some((first, arrivals)) = streams.find(&token) else {
            return Err(Error::Transfer(
                "it resumes no stream under way here (ended, or past its window)".into(),
            ));
        };
        info.joins(&first)?;
        debug!(%peer, "a connection to resume a stream on");
        return arrivals
            .send(Box::new(stream))
            .await
            .map_err(|_| Error::Transfer("the stream it resumes has just ended".into()));
    }
    // A new resumable stream is registered (its secret sent) before its program starts, so
    // a resuming connection finds it whenever the program is running.
    let carried = if info.resume {
        Some(resumable_exec(&mut stream, &info, streams).await?)
    } else {
        None
    };
    let env = PeerEnv {
        addr: peer,
        subject: info.peer_subject.clone(),
        issuer: info.peer_issuer.clone(),
    };
    let mut spawned = match exec::spawn(program, &env) {
        Ok(spawned) => spawned,
        Err(e) => {
            if let Some((id, _)) = carried {
                streams.remove(id);
            }
            return Err(e);
        }
    };
    let label = peer.to_string();
    let options = limits
        .report
        .relay_options(&label, &info, limits.idle, false);
    let result = match carried {
        Some((id, arrivals)) => {
            let path = session::copy_path(&stream);
            let local = resume::Local::of(
                Box::new(spawned.output),
                Box::new(spawned.input),
                options,
                path,
                limits.resume.replay,
            );
            let (result, resumptions) = resume::stream(
                Box::new(stream),
                resume::Again::Accept(arrivals),
                limits.resume.window,
                label.clone(),
                local,
            )
            .await;
            streams.remove(id);
            info.resumptions = resumptions;
            result
        }
        None => relay::relay(&mut stream, spawned.output, spawned.input, options).await,
    };
    if let Err(e) = limits.report.finish(&label, &info, result) {
        // The stream is broken, so whatever the child does next is void.
        let _ = spawned.child.start_kill();
        let _ = spawned.child.wait().await;
        return Err(e);
    }
    match spawned.child.wait().await {
        Ok(status) if status.success() => {
            debug!(%peer, "{} exited (reaped)", program.path);
            Ok(())
        }
        Ok(status) => {
            warn!(
                "connection from {peer}: {} exited with {status}",
                program.path
            );
            Ok(())
        }
        Err(e) => Err(Error::Internal(format!(
            "waiting for {}: {e}",
            program.path
        ))),
    }
}

/// A new resumable stream on an exec listener: its binding secret to the donor, and its
/// place among the streams under way (with where its resuming connections will arrive).
async fn resumable_exec(
    first: &mut session::ServerStream,
    info: &session::TlsInfo,
    streams: &Streams,
) -> Result<(u64, mpsc::Receiver<resume::Conn>)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let token = send_token(first).await?;
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (arrived, arrivals) = mpsc::channel(1);
    streams.add(Carried {
        id,
        token,
        first: info.clone(),
        arrivals: arrived,
    });
    Ok((id, arrivals))
}
