//! One TLS connection's life around the relay: handshake with a deadline, what was negotiated,
//! the summary line, and turning failures into one-line errors.

use std::future::Future;
use std::io;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, CommonState, ProtocolVersion, ServerConfig};
use serde::Serialize;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::ends::{resume, stripes};
use crate::error::Error;
use crate::fastpath::CopyPath;
use crate::handoff::ktls;
use crate::handoff::unbuffered::Side;
use crate::net;
use crate::relay::{self, RelayError, Transfer};
use crate::settings::Reporting;
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
    /// Records this connection may still send (TLS 1.2 key usage limit), see
    /// [`tls::record_budget`]; the kernel path enforces its own.
    pub record_budget: Option<u64>,
    /// How many connections carry the stream: the stripes both ends agreed on (1: one).
    pub stripes: u32,
    /// The peer's own certificate (DER), which every stripe's peer must present too.
    pub peer_cert: Option<Vec<u8>>,
    /// Both ends agreed to resume the stream on a new connection when this one breaks.
    pub resume: bool,
    /// Connections that replaced a broken one (counted once the stream is over).
    pub resumptions: u32,
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
        let leaf = conn.peer_certificates().and_then(|chain| chain.first());
        let peer = leaf.and_then(|der| CertNames::parse(der));
        Self {
            version,
            suite,
            peer_subject: peer.as_ref().map(|p| p.subject.clone()),
            peer_issuer: peer.map(|p| p.issuer),
            record_budget: tls::record_budget(conn),
            stripes: stripes::negotiated(conn.alpn_protocol()),
            peer_cert: leaf.map(|cert| cert.to_vec()),
            resume: resume::agreed(
                conn.alpn_protocol(),
                conn.protocol_version() == Some(ProtocolVersion::TLSv1_3),
            ),
            resumptions: 0,
        }
    }

    /// Whether this connection may carry a stripe of the stream `first` began: the same peer
    /// certificate and the same agreement, checked alike by the donor and the joiner.
    pub fn joins(&self, first: &TlsInfo) -> Result<(), Error> {
        if self.peer_cert != first.peer_cert {
            return Err(Error::Cert(
                "another peer certificate than the first connection's".into(),
            ));
        }
        if self.stripes != first.stripes {
            return Err(Error::Handshake(format!(
                "it agreed to {} streams, the first connection to {}",
                self.stripes, first.stripes
            )));
        }
        if self.resume != first.resume {
            return Err(Error::Handshake(
                "it did not agree to resume as the first connection did".into(),
            ));
        }
        Ok(())
    }
}

/// The TLS stream a server relays over.
pub type ServerStream = ktls::Stream<UnbufferedServerConnection>;
/// The TLS stream a client relays over.
pub type ClientStream = ktls::Stream<UnbufferedClientConnection>;

/// How a stream's records are made when its bytes are copied (striped streams are never
/// spliced): by the kernel or by rustls.
pub fn copy_path<S>(stream: &ktls::Stream<S>) -> CopyPath {
    match stream {
        ktls::Stream::Kernel(_) => CopyPath::Kernel,
        ktls::Stream::Rustls(_) => CopyPath::Buffered,
    }
}

/// Server side of a connection: socket tuning, then the handshake and the hand-off to the
/// kernel or to rustls' records, all under `limit`.
pub async fn accept(
    config: &Arc<ServerConfig>,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(ServerStream, TlsInfo), Error> {
    net::tune(&tcp);
    let conn = UnbufferedServerConnection::new(config.clone())
        .map_err(|e| Error::Internal(format!("TLS server session: {e}")))?;
    establish(conn, tcp, limit).await.map_err(|(e, _)| e)
}

/// Client side of a connection (the socket comes tuned from [`net::connect`]): the
/// handshake and the hand-off, under `limit`.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(ClientStream, TlsInfo), Error> {
    connect_or_broken(config, name, tcp, limit)
        .await
        .map_err(|(e, _)| e)
}

/// [`connect`], also saying whether a failure was the network's: the connection reset or
/// closed under the handshake, with no alert and nothing malformed from the peer. A stream
/// that may resume dials that again ([`super::client`]); an alert, a certificate, garbage
/// or a handshake timeout is the peer's answer, and is not.
pub async fn connect_or_broken(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
    limit: Duration,
) -> Result<(ClientStream, TlsInfo), (Error, bool)> {
    let conn = UnbufferedClientConnection::new(config, name)
        .map_err(|e| (Error::Internal(format!("TLS client session: {e}")), false))?;
    establish(conn, tcp, limit).await
}

/// The handshake and the hand-off; what was negotiated is read before the connection's keys
/// leave rustls.
async fn establish<S: Side>(
    mut conn: S,
    mut tcp: TcpStream,
    limit: Duration,
) -> Result<(ktls::Stream<S>, TlsInfo), (Error, bool)> {
    handshake(
        limit,
        crate::handoff::unbuffered::handshake(&mut conn, &mut tcp),
    )
    .await?;
    let mut info = TlsInfo::of(conn.common());
    let stream =
        ktls::hand_off(conn, tcp).map_err(|e| (tls::classify(&e, Error::Handshake), false))?;
    if !matches!(stream, ktls::Stream::Rustls(_)) {
        // The kernel stream enforces the key-usage limit itself.
        info.record_budget = None;
    }
    Ok((stream, info))
}

/// Runs a handshake future under `limit`, classifying failures (and saying which were the
/// network's: [`connect_or_broken`]).
async fn handshake<S>(
    limit: Duration,
    fut: impl Future<Output = io::Result<S>>,
) -> Result<S, (Error, bool)> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            let broken = resume::breakable(&e) && e.kind() != io::ErrorKind::TimedOut;
            Err((tls::classify(&e, Error::Handshake), broken))
        }
        Err(_) => Err((
            Error::Handshake(format!(
                "no complete handshake within {limit:?} (--handshake-timeout); is the peer speaking TLS?"
            )),
            false,
        )),
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
    let streams = match info.stripes {
        1 => String::new(),
        n => format!(", {n} streams"),
    };
    let resumed = match info.resumptions {
        0 => String::new(),
        1 => ", resumed once".to_string(),
        n => format!(", resumed {n} times"),
    };
    info!(
        "closed {peer}: sent {} bytes, received {} bytes in {secs:.3}s ({rate:.1} MB/s), {} {}, path {}{streams}{resumed}",
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
            tls::describe_local(source)
        )),
        RelayError::LocalWrite { source, .. } => Error::Transfer(format!(
            "writing local output: {} ({counts})",
            tls::describe_local(source)
        )),
        RelayError::Idle { .. } => Error::Transfer(format!("{err} ({counts})")),
    }
}

// How a connection reports (the settings) is carried out here, where the connection is.
impl Reporting {
    /// The relay options of one TLS connection: `idle`, remote-shell semantics, this
    /// reporting's progress hook, and the TLS 1.2 record budget the handshake settled.
    pub fn relay_options(
        &self,
        peer: &str,
        info: &TlsInfo,
        idle: Option<Duration>,
        end_with_peer: bool,
    ) -> relay::Options {
        relay::Options {
            idle,
            end_with_peer,
            progress: self.progress_for(peer),
            record_budget: info.record_budget,
        }
    }

    /// The relay's progress hook: an info line every interval, so a long SST shows life in
    /// the MariaDB error log.
    pub fn progress_for(&self, peer: &str) -> Option<relay::Progress> {
        let every = self.progress?;
        let peer = peer.to_string();
        Some(relay::Progress {
            every,
            report: Arc::new(move |t: &Transfer| {
                let secs = t.elapsed.as_secs_f64();
                let rate = if secs > 0.0 {
                    (t.sent + t.received) as f64 / secs / 1e6
                } else {
                    0.0
                };
                info!(
                    "progress {peer}: sent {} bytes, received {} bytes in {secs:.0}s ({rate:.1} MB/s)",
                    t.sent, t.received
                );
            }),
        })
    }

    /// Logs the summary (on success) and writes the stats file, then hands back the outcome.
    pub fn finish(
        &self,
        peer: &str,
        info: &TlsInfo,
        result: Result<Transfer, RelayError>,
    ) -> Result<(), Error> {
        let (transfer, outcome) = match result {
            Ok(transfer) => {
                log_summary(peer, info, &transfer);
                (transfer, Ok(()))
            }
            Err(e) => (e.partial(), Err(relay_error(e))),
        };
        if let Some(path) = &self.stats {
            let error = outcome.as_ref().err().map(ToString::to_string);
            if let Err(e) = write_stats(path, self.append, peer, info, &transfer, error.as_deref())
            {
                warn!("--stats-json {}: {e}", path.display());
            }
        }
        outcome
    }
}

/// The `--stats-json` record of one connection: one JSON object per line. The schema is
/// this struct (README, *CLI reference*): fields are only ever added.
#[derive(Debug, Serialize)]
struct Stats<'a> {
    /// `ok`, or `error` (then `error` says why).
    result: &'static str,
    /// The peer's address.
    peer: &'a str,
    sent_bytes: u64,
    received_bytes: u64,
    /// Wall time of the transfer, microsecond resolution.
    seconds: f64,
    tls_version: &'a str,
    /// IANA name of the negotiated suite.
    cipher_suite: &'a str,
    /// `ktls+splice`, `ktls` or `buffered`.
    copy_path: String,
    /// TLS connections that carried the stream (more than 1 when striped).
    streams: u32,
    /// Connections that replaced a broken one (the stream resumed on them).
    resumptions: u32,
    /// The peer certificate's subject DN, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_subject: Option<&'a str>,
    /// Why the transfer failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Writes one connection's [`Stats`] line (appended for `listen --exec`).
fn write_stats(
    path: &Path,
    append: bool,
    peer: &str,
    info: &TlsInfo,
    t: &Transfer,
    error: Option<&str>,
) -> io::Result<()> {
    let stats = Stats {
        result: if error.is_some() { "error" } else { "ok" },
        peer,
        sent_bytes: t.sent,
        received_bytes: t.received,
        seconds: (t.elapsed.as_secs_f64() * 1e6).round() / 1e6,
        tls_version: &info.version,
        cipher_suite: &info.suite,
        copy_path: t.path.to_string(),
        streams: info.stripes,
        resumptions: info.resumptions,
        peer_subject: info.peer_subject.as_deref(),
        error,
    };
    let mut line = serde_json::to_vec(&stats)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    file.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_strings_are_escaped() {
        let stats = Stats {
            result: "error",
            peer: "127.0.0.1:4444",
            sent_bytes: 1,
            received_bytes: 2,
            seconds: 0.5,
            tls_version: "TLSv1.3",
            cipher_suite: "TLS13_AES_256_GCM_SHA384",
            copy_path: "buffered".into(),
            streams: 1,
            resumptions: 0,
            peer_subject: Some("CN=a \"b\"\\c\n\u{1}"),
            error: None,
        };
        let line = serde_json::to_string(&stats).unwrap();
        assert!(
            line.contains(r#""peer_subject":"CN=a \"b\"\\c\n\u0001""#),
            "{line}"
        );
        assert!(!line.contains("\"error\":"), "{line}");
    }
}
