//! `sst-tunnel connect`: stdin -> TLS peer -> stdout (the donor side).

use tracing::debug;

use crate::cli::ConnectArgs;
use crate::error::Result;
use crate::net;
use crate::relay;
use crate::session;
use crate::stdio::{StdinReader, StdoutWriter};
use crate::tls::{self, Prepared};

/// Dials the peer, completes the handshake, and relays stdio until both directions end.
pub async fn run(args: ConnectArgs) -> Result<()> {
    let target = net::parse_host_port(&args.target, "HOST:PORT")?;
    let prepared = Prepared::load(&args.tls, Some(&target.host))?;
    let (config, name) = tls::client_config(
        &args.tls,
        prepared,
        &target.host,
        args.sni.as_deref(),
        args.no_sni,
    )?;
    let tcp = net::connect(&target, args.connect_timeout).await?;
    let label = net::display(&target);
    debug!("connected to {label}, handshaking");
    let (mut stream, info) =
        session::connect(config, name, tcp, args.tls.handshake_timeout).await?;
    debug!(version = %info.version, suite = %info.suite, peer = ?info.peer_subject, "handshake complete");
    let idle = (!args.stream.idle_timeout.is_zero()).then_some(args.stream.idle_timeout);
    let transfer = relay::relay(
        &mut stream,
        StdinReader::open(),
        StdoutWriter::open(),
        relay::Options {
            idle,
            end_with_peer: !args.rsh_args.is_empty(),
        },
    )
    .await
    .map_err(session::relay_error)?;
    session::log_summary(&label, &info, &transfer);
    Ok(())
}
