//! `sst-tunnel connect`: stdin -> TLS peer -> stdout (the donor side).
//!
//! The native command and the stunnel/socat front-ends describe a [`Plan`] and call [`dial`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tracing::debug;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use zeroize::Zeroizing;

use crate::ends::session::{self, ClientStream, TlsInfo};
use crate::ends::stdio::{Direction, LocalEnds};
use crate::ends::stripes;
use crate::error::{Error, Result};
use crate::net::{self, HostPort};
use crate::relay;
use crate::settings::{ConnectSettings, Reporting, Role, mycnf};
use crate::tls::{self, Prepared};

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
    let config = stripes::offer(config, args.streams);
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
    })
    .await
}

/// Dials the peer, completes the handshake, and relays stdio until the plan says it is over.
pub async fn dial(plan: Plan) -> Result<()> {
    let label = net::display(&plan.target);
    let (mut stream, info) = establish(&plan, &label).await?;
    debug!(version = %info.version, suite = %info.suite, peer = ?info.peer_subject, "handshake complete");
    if info.stripes > 1 {
        return striped(&plan, stream, info, &label).await;
    }
    let local = LocalEnds::open(plan.direction, plan.end_with_peer);
    let options = plan
        .report
        .relay_options(&label, &info, plan.idle, local.end_with_peer);
    let result = relay::relay(&mut stream, local.input, local.output, options).await;
    plan.report.finish(&label, &info, result)
}

/// A stream striped over `info.stripes` connections: the listener's binding token from the
/// first, the others opened and bound to it, then stdin over all of them (one-way).
async fn striped(plan: &Plan, mut first: ClientStream, info: TlsInfo, label: &str) -> Result<()> {
    let count = info.stripes;
    let mut token: stripes::Token = Zeroizing::new([0; stripes::TOKEN_LEN]);
    tokio::time::timeout(plan.handshake_timeout, first.read_exact(&mut token[..]))
        .await
        .map_err(|_| {
            Error::Transfer(format!(
                "{label} agreed to {count} streams but sent no binding within {:?}",
                plan.handshake_timeout
            ))
        })?
        .map_err(|e| tls::classify(&e, Error::Transfer))?;
    let mut all = vec![first];
    for index in 1..count {
        let (mut stream, extra) = establish(plan, label).await?;
        extra.joins(&info)?;
        stream
            .write_all(&stripes::binding(&token, index))
            .await
            .map_err(|e| tls::classify(&e, Error::Transfer))?;
        all.push(stream);
    }
    debug!("{label}: striped over {count} connections");
    let local = LocalEnds::open(Direction::SendOnly, false);
    let progress = plan.report.progress_for(label);
    let path = session::copy_path(&all[0]);
    let result = stripes::send(all, local.input, plan.idle, progress.as_ref(), path).await;
    plan.report.finish(label, &info, result)
}

/// Connect and handshake, retried as the plan allows.
async fn establish(plan: &Plan, label: &str) -> Result<(ClientStream, TlsInfo)> {
    net::with_retries(plan.retries, plan.retry_interval, || async {
        let tcp = net::connect_from(&plan.target, plan.connect_timeout, plan.source).await?;
        debug!("connected to {label}, handshaking");
        session::connect(
            plan.config.clone(),
            plan.name.clone(),
            tcp,
            plan.handshake_timeout,
        )
        .await
    })
    .await
}
