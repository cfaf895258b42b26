//! `sst-tunnel connect`: stdin -> TLS peer -> stdout (the donor side).
//!
//! The native command and the stunnel/socat front-ends describe a [`Plan`] and call [`dial`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::os::fd::AsFd;

use tracing::{debug, info, warn};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use zeroize::Zeroizing;

use crate::ends::session::{self, ClientStream, TlsInfo};
use crate::ends::stdio::{Direction, LocalEnds};
use crate::ends::{resume, stripes};
use crate::error::{Error, Result};
use crate::net::{self, HostPort};
use crate::settings::{ConnectSettings, Reporting, Role, mycnf};
use crate::tls::{self, Prepared};
use crate::{fastpath, relay};

/// Everything a client run needs, decided before the first packet.
pub struct Plan {
    /// Where to dial.
    pub target: HostPort,
    /// Local address to dial from (socat's `bind=`); `None` lets the kernel choose.
    pub source: Option<SocketAddr>,
    /// The TLS client configuration.
    pub config: Arc<ClientConfig>,
    /// The name the handshake runs under (SNI when enabled and a DNS name).
    pub name: ServerName<'static>,
    /// Give up dialling after this long.
    pub connect_timeout: Duration,
    /// Give up on the handshake after this long.
    pub handshake_timeout: Duration,
    /// Idle timeout for the data phase; `None` disables it.
    pub idle: Option<Duration>,
    /// Which ways bytes flow.
    pub direction: Direction,
    /// Remote-shell semantics: end once the peer has finished (rsync's `--rsh`).
    pub end_with_peer: bool,
    /// Further attempts after a failed connect or handshake (socat `retry=N`), and the pause
    /// between them.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_interval: Duration,
    /// Progress lines and the stats file.
    pub report: Reporting,
    /// The most connections to stripe a one-way stream over (offered in the handshake; 1:
    /// never). `config` must offer them ([`stripes::offer`]).
    pub stripes: u32,
    /// How long a broken stream may take to resume (zero: never), and what it keeps for
    /// resending. `config` must offer it ([`resume::offer`]).
    pub resume: resume::Bounds,
}

/// `sst-tunnel connect`.
pub async fn run(mut args: ConnectSettings) -> Result<()> {
    mycnf::apply(&mut args.tls, Role::Donor)?;
    let target = net::parse_host_port(&args.target, "HOST:PORT")?;
    let prepared = Prepared::load(&args.tls, Some(&target.host))?;
    let (config, name) = tls::client_config(
        &args.tls,
        prepared,
        &target.host,
        args.sni.as_deref(),
        args.no_sni,
    )?;
    let config = resume::offer(
        stripes::offer(config, args.streams),
        args.stream.resume_window,
    );
    let resume = resume::Bounds {
        window: args.stream.resume_window,
        replay: args.stream.resume_buffer,
    };
    dial(Plan {
        target,
        source: None,
        config,
        name,
        connect_timeout: args.connect_timeout,
        handshake_timeout: args.tls.handshake_timeout,
        idle: args.stream.idle(),
        direction: Direction::Both,
        end_with_peer: args.end_with_peer,
        retries: 0,
        retry_interval: Duration::ZERO,
        report: args.stream.reporting(false),
        stripes: args.streams,
        resume,
    })
    .await
}

/// Dials the peer, completes the handshake, and relays stdio until the plan says it is over.
pub async fn dial(plan: Plan) -> Result<()> {
    let label = net::display(&plan.target);
    let (mut stream, info) = establish(&plan, &label, None).await?;
    debug!(version = %info.version, suite = %info.suite, peer = ?info.peer_subject, "handshake complete");
    if info.stripes > 1 {
        return striped(&plan, stream, info, &label).await;
    }
    if info.resume {
        return resumable(&plan, stream, info, &label).await;
    }
    let local = LocalEnds::open(plan.direction, plan.end_with_peer);
    let options = plan
        .report
        .relay_options(&label, &info, plan.idle, local.end_with_peer);
    let result = relay::relay(&mut stream, local.input, local.output, options).await;
    plan.report.finish(&label, &info, result)
}

/// The binding secret the listener answers a new striped or resumable stream's opening with.
async fn binding_token(
    plan: &Plan,
    first: &mut ClientStream,
    label: &str,
) -> Result<stripes::Token> {
    let mut token: stripes::Token = Zeroizing::new([0; stripes::TOKEN_LEN]);
    tokio::time::timeout(plan.handshake_timeout, first.read_exact(&mut token[..]))
        .await
        .map_err(|_| {
            Error::Transfer(format!(
                "{label} agreed to carry the stream over several connections but sent no \
                 binding within {:?}",
                plan.handshake_timeout
            ))
        })?
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    Ok(token)
}

/// A stream that resumes on a new connection when its connection breaks ([`resume`]): the
/// first opens a new stream and gets the listener's binding token back; each new connection
/// is dialled and verified like the first, must meet the first's peer certificate, and
/// opens with the token.
async fn resumable(
    plan: &Plan,
    mut first: ClientStream,
    mut info: TlsInfo,
    label: &str,
) -> Result<()> {
    // A new stream: say so, and the listener answers with the stream's binding secret.
    first
        .write_all(&stripes::opening_new())
        .await
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    let token = Arc::new(binding_token(plan, &mut first, label).await?);
    let path = session::copy_path(&first);
    let dial = redialer(plan, plan.config.clone(), Arc::new(info.clone()), token, 0);
    let local = LocalEnds::open(plan.direction, plan.end_with_peer);
    let options = plan
        .report
        .relay_options(label, &info, plan.idle, local.end_with_peer);
    let (result, resumptions) = resume::stream(
        Box::new(first),
        resume::Again::Dial(dial),
        plan.resume.window,
        label.to_string(),
        resume::Local::new(local, options, path, plan.resume.replay),
    )
    .await;
    info.resumptions = resumptions;
    plan.report.finish(label, &info, result)
}

/// How a broken connection of a resumable stream is dialled again: to the same address,
/// with `config`, verified like the first and required to present the first's peer
/// certificate, then opening as the resumption of stripe `stripe` (0 unstriped).
fn redialer(
    plan: &Plan,
    config: Arc<ClientConfig>,
    first: Arc<TlsInfo>,
    token: Arc<stripes::Token>,
    stripe: u32,
) -> Box<dyn FnMut() -> resume::Redial + Send> {
    let (target, source, name) = (plan.target.clone(), plan.source, plan.name.clone());
    let (connect_timeout, handshake) = (plan.connect_timeout, plan.handshake_timeout);
    Box::new(move || -> resume::Redial {
        let (target, config, name) = (target.clone(), config.clone(), name.clone());
        let (first, token) = (first.clone(), token.clone());
        Box::pin(async move {
            // Refused: the host is there and nothing listens any more, so the joiner has
            // gone (its process ended); an outage or a reset path looks otherwise.
            let tcp = net::connect_classified(&target, connect_timeout, source)
                .await
                .map_err(|(e, failure)| (e, failure == net::DialFailure::Refused))?;
            let (mut stream, extra) = session::connect(config, name, tcp, handshake)
                .await
                .map_err(|e| {
                    // A certificate refused either way will not get better by retrying.
                    let fatal = matches!(e, Error::Cert(_));
                    (e, fatal)
                })?;
            extra.joins(&first).map_err(|e| (e, true))?;
            stream
                .write_all(&stripes::opening_join(&token, stripe))
                .await
                .map_err(|e| (tls::classify(&e, Error::Transfer), false))?;
            Ok(Box::new(stream) as resume::Conn)
        })
    })
}

/// A stream striped over `info.stripes` connections: a new stream opened on the first and
/// the listener's binding token back, the others opened and bound to it (the opening a
/// replacement connection presents), then stdin over all of them (one-way), each its own
/// link ([`resume::links`]). When both ends agreed to resume, a broken stripe is dialled
/// again by itself; otherwise it fails the stream.
async fn striped(
    plan: &Plan,
    mut first: ClientStream,
    mut info: TlsInfo,
    label: &str,
) -> Result<()> {
    let count = info.stripes;
    // A new stream: say so, and the listener answers with its binding secret.
    first
        .write_all(&stripes::opening_new())
        .await
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    let token = Arc::new(binding_token(plan, &mut first, label).await?);
    let mut all = vec![first];
    for index in 1..count {
        // The others offer what the first agreed to (`auto` does not judge the path again).
        let (mut stream, extra) = establish(plan, label, Some(count)).await?;
        extra.joins(&info)?;
        stream
            .write_all(&stripes::opening_join(&token, index))
            .await
            .map_err(|e| tls::classify(&e, Error::Transfer))?;
        all.push(stream);
    }
    debug!("{label}: striped over {count} connections");
    let local = LocalEnds::open(Direction::SendOnly, false);
    let progress = plan.report.progress_for(label);
    let path = session::copy_path(&all[0]);
    // Each stripe dialled again offers exactly what the first agreed to.
    let config = stripes::reoffer(&plan.config, count);
    let first_info = Arc::new(info.clone());
    let conns = all
        .into_iter()
        .map(|c| Box::new(c) as resume::Conn)
        .collect();
    let (pipes, links) = resume::links(
        conns,
        |index| {
            resume::Again::Dial(redialer(
                plan,
                config.clone(),
                first_info.clone(),
                token.clone(),
                index,
            ))
        },
        plan.resume.agreed(info.resume),
        label,
        path,
        Arc::default(),
    );
    let result = stripes::send(pipes, local.input, plan.idle, progress.as_ref(), path).await;
    let (result, resumptions) = resume::settle(result, links).await;
    info.resumptions = resumptions;
    plan.report.finish(label, &info, result)
}

/// Connect and handshake, retried as the plan allows.
/// With `--streams auto`, the stripes offered are decided here, once the TCP handshake has
/// measured the path's round trip (`offer` fixes them: a stripe joining a stream).
///
/// When the stream may resume, a connection the network breaks before its handshake is
/// done (reset as it is made, or reset or closed under the handshake, with no alert and
/// nothing malformed) is dialled again with the resumption's back-off, for as long as the
/// resume window: the rsync SST opens a new connection for each of its rsync runs, and a
/// reset that meets one of them there would otherwise end the SST although no stream is
/// lost. Nothing has been sent then, and the listener has started nothing. A refused or
/// unreachable address, a timeout, an alert or a certificate fails as before.
async fn establish(
    plan: &Plan,
    label: &str,
    offer: Option<u32>,
) -> Result<(ClientStream, TlsInfo)> {
    net::with_retries(plan.retries, plan.retry_interval, || async {
        let window = plan.resume.window;
        let deadline = tokio::time::Instant::now() + window;
        let mut backoff = resume::Backoff::default();
        loop {
            let (e, broken) = match dial_once(plan, label, offer).await {
                Ok(done) => return Ok(done),
                Err(failed) => failed,
            };
            if !broken || !backoff.allows(deadline) {
                return Err(e);
            }
            warn!(
                "{label}: {e}; dialling again within the resume window ({}s)",
                window.as_secs()
            );
            backoff.wait().await;
        }
    })
    .await
}

/// One connection and handshake; a failure says whether the network broke it.
async fn dial_once(
    plan: &Plan,
    label: &str,
    offer: Option<u32>,
) -> std::result::Result<(ClientStream, TlsInfo), (Error, bool)> {
    let tcp = net::connect_classified(&plan.target, plan.connect_timeout, plan.source)
        .await
        .map_err(|(e, failure)| (e, failure == net::DialFailure::Broken))?;
    debug!("connected to {label}, handshaking");
    let config = match (plan.stripes, offer) {
        (stripes::AUTO, Some(count)) => stripes::reoffer(&plan.config, count),
        (stripes::AUTO, None) => {
            let rtt = fastpath::tcp_rtt(tcp.as_fd());
            let count = stripes::auto_for(rtt);
            info!(
                "{label}: round trip {}; --streams auto offers {count}",
                rtt.map_or("unknown".to_string(), |r| format!(
                    "{:.1} ms",
                    r.as_secs_f64() * 1e3
                ))
            );
            stripes::reoffer(&plan.config, count)
        }
        _ => plan.config.clone(),
    };
    session::connect_or_broken(config, plan.name.clone(), tcp, plan.handshake_timeout).await
}
