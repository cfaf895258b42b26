//! TCP plumbing: parsing HOST:PORT, dialling with a timeout, listening, socket tuning; the
//! queue of encoded TLS records on their way out of rustls' record layer, and the decrypted
//! bytes a short read could not take.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, lookup_host};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::fastpath;

/// Keepalive probes start after this much silence, so a dead peer is noticed in about 2 minutes
/// even when the idle timeout is off.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
/// Interval between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel drops the connection.
const KEEPALIVE_RETRIES: u32 = 6;
/// Listen backlog: the rsync donor opens several connections at once.
const BACKLOG: i32 = 1024;

/// A parsed `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Name or address, without IPv6 brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Parses `HOST:PORT`, `[V6]:PORT`; `what` names the argument in errors.
pub fn parse_host_port(text: &str, what: &str) -> Result<HostPort> {
    let bad = |why: &str| Error::Usage(format!("{what} '{text}': {why}"));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected [IPV6]:PORT"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address inside [ ]"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        if host.contains(':') {
            return Err(bad("IPv6 addresses must be bracketed, e.g. [::1]:4444"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = parse_port(port).ok_or_else(|| bad("port must be 1-65535"))?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// Parses a listen address: `PORT`, `HOST:PORT` or `[V6]:PORT`; no host means every address.
pub fn parse_bind(text: &str) -> Result<HostPort> {
    // Port 0 asks the kernel for a free port; the `listening on` line reports it.
    if text == "0" {
        return Ok(HostPort {
            host: String::new(),
            port: 0,
        });
    }
    if let Some(host) = text.strip_suffix(":0") {
        let mut parsed = parse_host_port(&format!("{host}:1"), "listen address")?;
        parsed.port = 0;
        return Ok(parsed);
    }
    match parse_port(text) {
        Some(port) => Ok(HostPort {
            host: String::new(),
            port,
        }),
        None => parse_host_port(text, "listen address"),
    }
}

/// A TCP port, 1-65535.
pub fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Resolves and dials `target`, trying each address until one answers, within `timeout`.
pub async fn connect(target: &HostPort, timeout: Duration) -> Result<TcpStream> {
    connect_from(target, timeout, None).await
}

/// [`connect`] from a chosen local address (socat's `bind=`); addresses of the other family
/// are skipped.
pub async fn connect_from(
    target: &HostPort,
    timeout: Duration,
    source: Option<SocketAddr>,
) -> Result<TcpStream> {
    connect_classified(target, timeout, source)
        .await
        .map_err(|(e, _)| e)
}

/// What kind of failure a dial met, for a resumable stream deciding whether to dial again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialFailure {
    /// The network reset the connection as it was made: worth dialling again.
    Broken,
    /// The host answered and nothing listens there (any more).
    Refused,
    /// Unreachable, timed out, unresolved or anything else.
    Other,
}

/// [`connect_from`], also saying what kind of failure it met ([`DialFailure`]), judged by
/// the last address tried.
pub async fn connect_classified(
    target: &HostPort,
    timeout: Duration,
    source: Option<SocketAddr>,
) -> std::result::Result<TcpStream, (Error, DialFailure)> {
    let label = display(target);
    let attempt = async {
        let addrs: Vec<SocketAddr> = lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                (
                    Error::Connect(format!("cannot resolve {}: {e}", target.host)),
                    DialFailure::Other,
                )
            })?
            .collect();
        let mut last = None;
        for addr in &addrs {
            if source.is_some_and(|s| s.is_ipv4() != addr.is_ipv4()) {
                continue;
            }
            match dial(*addr, source).await {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    debug!(%addr, error = %e, "connect attempt failed");
                    last = Some(e);
                }
            }
        }
        let failure = match last.as_ref().map(io::Error::kind) {
            Some(io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                DialFailure::Broken
            }
            Some(io::ErrorKind::ConnectionRefused) => DialFailure::Refused,
            _ => DialFailure::Other,
        };
        Err((
            Error::Connect(match last {
                Some(e) => format!("cannot connect to {label}: {}", connect_reason(&e)),
                None => format!("cannot connect to {label}: no address"),
            }),
            failure,
        ))
    };
    let stream = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        (
            Error::Connect(format!(
                "cannot connect to {label}: timed out after {timeout:?} (--connect-timeout)"
            )),
            DialFailure::Other,
        )
    })??;
    tune(&stream);
    Ok(stream)
}

async fn dial(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(source)?;
    }
    apply_congestion(&socket);
    socket.connect(addr).await
}

/// Opens a listening socket with SO_REUSEADDR; without a host, dual-stack on `::` (or
/// `0.0.0.0` where IPv6 is unavailable).
pub async fn listen(bind: &HostPort) -> Result<TcpListener> {
    let addrs: Vec<SocketAddr> = if bind.host.is_empty() {
        vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), bind.port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), bind.port),
        ]
    } else {
        lookup_host((bind.host.as_str(), bind.port))
            .await
            .map_err(|e| Error::Connect(format!("cannot resolve listen host {}: {e}", bind.host)))?
            .collect()
    };
    let mut tried = Vec::new();
    for addr in addrs {
        match bind_one(addr, bind.host.is_empty()) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                let no_ipv6 = addr.is_ipv6()
                    && bind.host.is_empty()
                    && matches!(
                        e.raw_os_error(),
                        Some(code) if code == nix::libc::EAFNOSUPPORT
                            || code == nix::libc::EADDRNOTAVAIL
                            || code == nix::libc::EPROTONOSUPPORT
                    );
                tried.push(format!("{addr}: {}", connect_reason(&e)));
                // Only a host without IPv6 falls back to 0.0.0.0: `::` taken (or refused for
                // any other reason) is the answer, not a cue to listen on IPv4 alone.
                if bind.host.is_empty() && !no_ipv6 {
                    break;
                }
            }
        }
    }
    if tried.is_empty() {
        return Err(Error::Connect(format!("no address for {}", bind.host)));
    }
    Err(Error::Connect(format!(
        "cannot listen on {}",
        tried.join("; nor on ")
    )))
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() && dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    // Accepted connections start with the listener's congestion control.
    apply_congestion(&socket);
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Runs `attempt` until it succeeds or has failed `retries` more times (socat's `retry=`),
/// pausing `interval` between tries and logging each failure that is retried.
pub async fn with_retries<T, F, Fut>(retries: u32, interval: Duration, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut failed = 0;
    loop {
        match attempt().await {
            Err(e) if failed < retries => {
                failed += 1;
                tracing::warn!("{e} (retry {failed} of {retries})");
                tokio::time::sleep(interval).await;
            }
            other => return other,
        }
    }
}

/// The congestion control every socket of this process gets (`--congestion`,
/// `SST_TUNNEL_CONGESTION`); unset: the kernel's default.
static CONGESTION: OnceLock<String> = OnceLock::new();

/// Where the sysctls live that say what the kernel has and what it allows.
const AVAILABLE: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";
const ALLOWED: &str = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";

/// Chooses the congestion control of every socket this process opens or accepts. Tried
/// once here on a probe socket, so a name the kernel does not have, or will not let this
/// user choose, fails at start (`origin` names the flag or variable), saying which sysctl
/// or module to look at.
pub fn choose_congestion(name: &str, origin: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(Error::Usage(format!(
            "{origin} {name:?}: not a congestion control name (like cubic or bbr)"
        )));
    }
    let probe = Socket::new(Domain::IPV4, Type::STREAM, None)
        .map_err(|e| Error::Internal(format!("a socket to try {origin} on: {e}")))?;
    if let Err(e) = fastpath::set_congestion(probe.as_fd(), name) {
        let sysctl = |path: &str| {
            std::fs::read_to_string(path)
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        };
        let why = match e.raw_os_error() {
            Some(nix::libc::ENOENT) => format!(
                "this kernel has no congestion control {name:?} (net.ipv4.\
                 tcp_available_congestion_control: {}); load its module: modprobe tcp_{name}",
                sysctl(AVAILABLE)
            ),
            Some(nix::libc::EPERM) => {
                let allowed = sysctl(ALLOWED);
                format!(
                    "{name:?} is not allowed for this user (net.ipv4.\
                     tcp_allowed_congestion_control: {allowed}); an administrator adds it \
                     there, e.g. sysctl -w net.ipv4.tcp_allowed_congestion_control=\"{allowed} \
                     {name}\" (or run with CAP_NET_ADMIN)"
                )
            }
            _ => e.to_string(),
        };
        return Err(Error::Usage(format!("{origin} {name}: {why}")));
    }
    let _ = CONGESTION.set(name.to_string());
    Ok(())
}

/// The chosen congestion control, applied to `sock` (a listener, or a socket about to
/// connect, so that its first packets already follow it).
fn apply_congestion(sock: impl AsFd) {
    if let Some(name) = CONGESTION.get()
        && let Err(e) = fastpath::set_congestion(sock.as_fd(), name)
    {
        warn!("setting congestion control {name}: {e}");
    }
}

/// Turns on TCP_NODELAY and keepalive; failures are logged, not fatal. Applies the chosen
/// congestion control and says, at debug level, which one the kernel runs.
pub fn tune(stream: &TcpStream) {
    apply_congestion(stream);
    if CONGESTION.get().is_some()
        && let Ok(name) = fastpath::congestion(stream.as_fd())
    {
        debug!("congestion control {name}");
    }
    let sock = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = sock
        .set_tcp_nodelay(true)
        .and_then(|()| sock.set_tcp_keepalive(&keepalive))
    {
        debug!(error = %e, "socket tuning failed");
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn display(target: &HostPort) -> String {
    if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

fn connect_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (is the peer listening?)".into(),
        io::ErrorKind::AddrInUse => {
            "address already in use (another SST or tunnel still running?)".into()
        }
        io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("127.0.0.2:24444", "t").unwrap(),
            hp("127.0.0.2", 24444)
        );
        assert_eq!(parse_host_port("[::1]:4444", "t").unwrap(), hp("::1", 4444));
        assert_eq!(parse_host_port("node2:1", "t").unwrap(), hp("node2", 1));
        assert!(parse_host_port("::1:4444", "t").is_err());
        assert!(parse_host_port("node2", "t").is_err());
        assert!(parse_host_port("node2:0", "t").is_err());
        assert!(parse_host_port("[nope]:1", "t").is_err());
        assert!(parse_host_port(":1", "t").is_err());
    }

    #[test]
    fn bind_forms() {
        assert_eq!(parse_bind("4444").unwrap(), hp("", 4444));
        assert_eq!(parse_bind("127.0.0.1:4444").unwrap(), hp("127.0.0.1", 4444));
        assert_eq!(parse_bind("[::1]:4444").unwrap(), hp("::1", 4444));
        assert!(parse_bind("99999").is_err());
        assert_eq!(parse_bind("127.0.0.1:0").unwrap(), hp("127.0.0.1", 0));
        assert_eq!(parse_bind("[::1]:0").unwrap(), hp("::1", 0));
        assert_eq!(parse_bind("127.0.0.1:0").unwrap(), hp("127.0.0.1", 0));
        assert_eq!(parse_bind("[::1]:0").unwrap(), hp("::1", 0));
    }
}

/// Encoded TLS records on their way to the socket: appended at the back, sent from the front.
/// The buffer stays allocated and initialised at its high-water mark, so appending a 256 KiB
/// write does not zero 256 KiB first.
#[derive(Default)]
pub struct Outbox {
    /// Initialised bytes; `bytes[sent..end]` is queued.
    bytes: Vec<u8>,
    end: usize,
    sent: usize,
}

impl Outbox {
    /// `n` bytes of room after what is queued, to encode into; [`Outbox::commit`] queues them.
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        if self.bytes.len() < self.end + n {
            self.bytes.resize(self.end + n, 0);
        }
        &mut self.bytes[self.end..self.end + n]
    }

    /// Queues the first `n` bytes of the last [`Outbox::spare`].
    pub fn commit(&mut self, n: usize) {
        self.end += n;
    }

    /// What is queued and not yet sent.
    pub fn queued(&self) -> &[u8] {
        &self.bytes[self.sent..self.end]
    }

    /// Forgets what is queued (it was sent some other way).
    pub fn clear(&mut self) {
        self.end = 0;
        self.sent = 0;
    }

    /// Sends what is queued; `Ready(Ok)` once all of it is out.
    pub fn poll_drain(
        &mut self,
        tcp: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.end {
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.bytes[self.sent..self.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.clear();
        Poll::Ready(Ok(()))
    }

    /// Sends what the socket takes now, without waiting: the last words of a connection that
    /// failed (its fatal alert).
    pub fn flush_now(&mut self, tcp: &TcpStream) {
        while self.sent < self.end {
            match tcp.try_write(&self.bytes[self.sent..self.end]) {
                Ok(n) if n > 0 => self.sent += n,
                _ => break,
            }
        }
    }
}

/// Decrypted bytes to deliver before anything the socket brings: the part of a record a
/// short read could not take (the hand-off itself leaves nothing decrypted behind).
#[derive(Default)]
pub struct Preface {
    bytes: Vec<u8>,
    at: usize,
}

impl Preface {
    /// Whether some are still to be delivered.
    pub fn pending(&self) -> bool {
        self.at < self.bytes.len()
    }

    /// Queues more after what is pending.
    pub fn push(&mut self, more: &[u8]) {
        self.bytes.extend_from_slice(more);
    }

    /// Moves what fits into `out`; `false` when nothing was pending.
    pub fn deliver(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if !self.pending() {
            return false;
        }
        let n = (self.bytes.len() - self.at).min(out.remaining());
        out.put_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        if !self.pending() {
            // Keeps the allocation: a stream spills a record's tail here often.
            self.bytes.clear();
            self.at = 0;
        }
        true
    }
}
