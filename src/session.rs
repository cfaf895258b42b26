//! One TLS connection's life around the relay: handshake with a deadline, what was negotiated,
//! the summary line, and turning failures into one-line errors.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, CommonState, ProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::info;

use crate::error::Error;
use crate::net::{self, Wire};
use crate::relay::{RelayError, Transfer};
use crate::tls::TLS_BUFFER_LIMIT;
use crate::tls::{self, names::CertNames};

/// What the handshake settled.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// IANA suite name.
    pub suite: String,
    /// Peer certificate subject DN, if it sent one.
    pub peer_subject: Option<String>,
    /// Peer certificate issuer DN, if it sent one.
    pub peer_issuer: Option<String>,
}

impl TlsInfo {
    /// Reads the negotiated parameters off a finished handshake.
    pub fn of(conn: &CommonState) -> Self {
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "?".to_string(),
        };
        let suite = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("?")
            .to_string();
        let peer = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|der| CertNames::parse(der));
        Self {
            version,
            suite,
            peer_subject: peer.as_ref().map(|p| p.subject.clone()),
            peer_issuer: peer.map(|p| p.issuer),
        }
    }
}

/// The TLS stream a server relays over.
pub type ServerStream = tokio_rustls::server::TlsStream<Wire>;
/// The TLS stream a client relays over.
pub type ClientStream = tokio_rustls::client::TlsStream<Wire>;

/// Server side of a connection: socket tuning, handshake under `limit`, rustls buffer sizing.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(ServerStream, TlsInfo), Error> {
    net::tune(&tcp);
    let mut stream = handshake(limit, acceptor.accept(net::wire(tcp))).await?;
    stream.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let info = TlsInfo::of(stream.get_ref().1);
    Ok((stream, info))
}

/// Client side of a connection (the socket comes tuned from [`net::connect`]): handshake
/// under `limit`, rustls buffer sizing.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(ClientStream, TlsInfo), Error> {
    let connecting = TlsConnector::from(config).connect(name, net::wire(tcp));
    let mut stream = handshake(limit, connecting).await?;
    stream.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let info = TlsInfo::of(stream.get_ref().1);
    Ok((stream, info))
}

/// Runs a handshake future under `limit`, classifying failures.
async fn handshake<S>(
    limit: Duration,
    fut: impl Future<Output = io::Result<S>>,
) -> Result<S, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(tls::classify(&e, Error::Handshake)),
        Err(_) => Err(Error::Handshake(format!(
            "no complete handshake within {limit:?} (--handshake-timeout); is the peer speaking TLS?"
        ))),
    }
}

/// Logs the one summary line for a finished connection.
pub fn log_summary(peer: &str, info: &TlsInfo, transfer: &Transfer) {
    let secs = transfer.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (transfer.sent + transfer.received) as f64 / secs / 1e6
    } else {
        0.0
    };
    info!(
        "closed {peer}: sent {} bytes, received {} bytes in {secs:.3}s ({rate:.1} MB/s), {} {}, path {}",
        transfer.sent, transfer.received, info.version, info.suite, transfer.path
    );
}

/// Turns a relay failure into the crate error: certificate alerts that arrive after the
/// handshake (TLS 1.3 client certificates are checked then) stay certificate errors.
pub fn relay_error(err: RelayError) -> Error {
    let partial = err.partial();
    let counts = format!(
        "after {} bytes sent, {} received",
        partial.sent, partial.received
    );
    match &err {
        RelayError::PeerRead { source, .. } | RelayError::PeerWrite { source, .. } => {
            match tls::classify(source, Error::Transfer) {
                Error::Transfer(msg) => Error::Transfer(format!("{msg} ({counts})")),
                other => other,
            }
        }
        RelayError::LocalRead { source, .. } => Error::Transfer(format!(
            "reading local input: {} ({counts})",
            tls::describe_io(source)
        )),
        RelayError::LocalWrite { source, .. } => Error::Transfer(format!(
            "writing local output: {} ({counts})",
            tls::describe_io(source)
        )),
        RelayError::Idle { .. } => Error::Transfer(format!("{err} ({counts})")),
    }
}
