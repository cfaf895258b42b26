//! `sst-tunnel listen`: the TLS server, relaying one connection to stdio or running a program
//! per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::cli::ListenArgs;
use crate::error::{Error, Result};
use crate::exec::{self, PeerEnv};
use crate::net;
use crate::relay;
use crate::session;
use crate::stdio::{StdinReader, StdoutWriter};
use crate::tls::{self, Prepared};

/// Pause after a failed accept (EMFILE and friends) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Per-connection settings shared by every handler.
struct Limits {
    handshake: Duration,
    idle: Option<Duration>,
}

/// Opens the listening socket, logs `listening on ADDR`, and serves.
pub async fn run(args: ListenArgs) -> Result<()> {
    let bind = net::parse_bind(&args.bind)?;
    let prepared = Prepared::load(&args.tls, None)?;
    let config = tls::server_config(&args.tls, prepared)?;
    if let Some(argv) = &args.exec {
        exec::check(argv)?;
    }
    let listener = net::listen(&bind).await?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listening socket has no address: {e}")))?;
    info!("listening on {local}");
    let acceptor = TlsAcceptor::from(config);
    let limits = Limits {
        handshake: args.tls.handshake_timeout,
        idle: (!args.stream.idle_timeout.is_zero()).then_some(args.stream.idle_timeout),
    };
    match args.exec {
        Some(argv) => {
            serve_exec(
                listener,
                acceptor,
                Arc::new(argv),
                Arc::new(limits),
                args.max_connections,
            )
            .await
        }
        None => serve_stdio(listener, acceptor, &limits).await,
    }
}

/// Accepts exactly one connection and relays it to stdin/stdout.
async fn serve_stdio(listener: TcpListener, acceptor: TlsAcceptor, limits: &Limits) -> Result<()> {
    let (tcp, peer) = listener
        .accept()
        .await
        .map_err(|e| Error::Connect(format!("accept failed: {e}")))?;
    // One connection only: later dialers get "connection refused", not a silent queue.
    drop(listener);
    debug!(%peer, "accepted");
    let (mut stream, info) = session::accept(&acceptor, tcp, limits.handshake).await?;
    debug!(%peer, version = %info.version, suite = %info.suite, client = ?info.peer_subject, "handshake complete");
    let transfer = relay::relay(
        &mut stream,
        StdinReader::open(),
        StdoutWriter::open(),
        relay::Options {
            idle: limits.idle,
            end_with_peer: false,
        },
    )
    .await
    .map_err(session::relay_error)?;
    session::log_summary(&peer.to_string(), &info, &transfer);
    Ok(())
}

/// Accepts connections until a signal ends the process, running `argv` for each.
async fn serve_exec(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    argv: Arc<Vec<String>>,
    limits: Arc<Limits>,
    max_connections: u32,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
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
        let argv = argv.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one_exec(tcp, peer, acceptor, &argv, &limits).await {
                warn!("connection from {peer} failed: {e}");
            }
            drop(permit);
        });
    }
}

/// One `--exec` connection: handshake, spawn, relay, reap.
async fn serve_one_exec(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    argv: &[String],
    limits: &Limits,
) -> Result<()> {
    let (mut stream, info) = session::accept(&acceptor, tcp, limits.handshake).await?;
    let env = PeerEnv {
        addr: peer,
        subject: info.peer_subject.clone(),
        issuer: info.peer_issuer.clone(),
    };
    let mut spawned = exec::spawn(argv, &env)?;
    let result = relay::relay(
        &mut stream,
        spawned.output,
        spawned.input,
        relay::Options {
            idle: limits.idle,
            end_with_peer: false,
        },
    )
    .await;
    let transfer = match result {
        Ok(transfer) => transfer,
        Err(e) => {
            // The stream is broken, so whatever the child does next is void.
            let _ = spawned.child.start_kill();
            let _ = spawned.child.wait().await;
            return Err(session::relay_error(e));
        }
    };
    session::log_summary(&peer.to_string(), &info, &transfer);
    match spawned.child.wait().await {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            warn!("connection from {peer}: {} exited with {status}", argv[0]);
            Ok(())
        }
        Err(e) => Err(Error::Internal(format!("waiting for {}: {e}", argv[0]))),
    }
}
