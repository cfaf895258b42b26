//! `socat ARGS`: the command lines `wsrep_sst_mariabackup` runs (contract 3.3), with socat's
//! semantics, and one deliberate difference: a stream that ends without close_notify fails.
//!
//! Forms: `-u openssl-listen:PORT,OPTS stdio` (joiner), `-u stdio openssl-connect:HOST:PORT,OPTS`
//! (donor), the same without `-u` (socat 1.7.3 donors), and the plaintext `TCP-LISTEN:` /
//! `TCP:` pair of encrypt=0. Every failure exits 1, which is what the scripts test for.

pub mod address;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use super::{Launch, Start, Tunnel, Unsupported, delegate};
use crate::ends::stdio::{Direction, LocalEnds};
use crate::ends::{client, resume, server, stripes};
use crate::error::{Error, Result};
use crate::fastpath;
use crate::net::{self, HostPort};
use crate::relay;
use crate::settings::vocabulary::{self, Vocabulary};
use crate::settings::{TlsSettings, TlsVersion};
use crate::tls::{self, NameRule, Policy, Prepared};
use address::Address;

/// The socat version the scripts must read from `-V` (they pick their command line by it).
const SOCAT_COMPAT_VERSION: &str = "1.7.4.4";
/// Dial deadline when `connect-timeout=` is absent (socat leaves it to the kernel, ~2 min).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Handshake deadline.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// socat's default `interval=` between retries.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the socat command line `args` (argv without argv[0]) into what to run.
pub fn launch(args: Vec<OsString>) -> Launch {
    // The joiner script looks for a listener owned by a process named socat*.
    fastpath::set_process_name("socat");
    // Hints name socat's options, not the native flags.
    vocabulary::install(Vocabulary::socat());
    let start = match prepare(&args) {
        Ok(Action::Version) => {
            print!("{}", version_text());
            Ok(Start::Answered)
        }
        Ok(Action::Delegate(unsupported)) => Err(delegate("socat", &args, &unsupported)),
        Ok(Action::Run(job)) => Ok(Start::Run(Tunnel {
            log_level: job.log_level,
            multi: job.may_stripe(),
            work: Box::pin(run(*job)),
            settle: Tunnel::as_is,
        })),
        Err(e) => Err(e),
    };
    Launch {
        label: "sst-tunnel (socat)",
        exit_code,
        start,
    }
}

/// socat exits 1 on any error; a signal that ended the run keeps its own status.
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Signal(_) => e.exit_code(),
        _ => 1,
    }
}

/// `socat -V`: the scripts take the first dotted number and look for `WITH_OPENSSL 1`.
fn version_text() -> String {
    format!(
        "socat version {SOCAT_COMPAT_VERSION} compatible: sst-tunnel {} (Galera SST subset)\n\
         features:\n  #define WITH_STDIO 1\n  #define WITH_IP4 1\n  #define WITH_IP6 1\n  \
         #define WITH_TCP 1\n  #define WITH_LISTEN 1\n  #define WITH_OPENSSL 1\n",
        env!("CARGO_PKG_VERSION")
    )
}

enum Action {
    Version,
    Delegate(Unsupported),
    Run(Box<Job>),
}

/// A checked command line.
struct Job {
    work: Work,
    log_level: &'static str,
}

enum Work {
    /// `openssl-listen:` (or `TCP-LISTEN:` when `plan` carries no TLS).
    Listen {
        bind: HostPort,
        /// Further binds after a failed one (`retry=`), and the pause between.
        retries: u32,
        interval: Duration,
        tls: Option<server::Plan>,
        plain: Stream,
    },
    /// `openssl-connect:`.
    Connect(client::Plan),
    /// `TCP:`, plaintext.
    PlainConnect {
        target: HostPort,
        source: Option<SocketAddr>,
        timeout: Duration,
        retries: u32,
        interval: Duration,
        stream: Stream,
    },
}

impl Job {
    /// Whether the stream may be striped (then on as many cores): a donor that offers
    /// stripes, or a joiner whose config lists them (ALPN is set for nothing else).
    fn may_stripe(&self) -> bool {
        match &self.work {
            Work::Connect(plan) => plan.stripes != 1,
            Work::Listen {
                tls: Some(plan), ..
            } => !plan.config.alpn_protocols.is_empty(),
            _ => false,
        }
    }
}

/// Data-phase settings of a plaintext stream.
#[derive(Clone, Copy)]
struct Stream {
    direction: Direction,
    idle: Option<Duration>,
}

/// Reads a command line without running it (the fuzz targets' entry).
pub(crate) fn check(args: &[OsString]) -> Result<()> {
    prepare(args).map(drop)
}

/// Reads the global options and both addresses.
fn prepare(args: &[OsString]) -> Result<Action> {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let outside = |what: String| {
        Ok(Action::Delegate(Unsupported {
            location: "command line".into(),
            what,
        }))
    };
    let mut flow = Flow::Both;
    let mut idle = None;
    let mut verbosity = 0;
    let mut i = 0;
    while let Some(word) = words.get(i) {
        if !word.starts_with('-') || word == "-" {
            break;
        }
        match word.as_str() {
            "-V" => return Ok(Action::Version),
            "-u" => flow = Flow::Forward,
            "-U" => flow = Flow::Reverse,
            "-T" => {
                i += 1;
                let value = words
                    .get(i)
                    .ok_or_else(|| Error::Usage("-T needs a number of seconds".into()))?;
                idle =
                    Some(seconds(value).map_err(|why| Error::Usage(format!("-T {value}: {why}")))?);
            }
            d if d.len() > 1 && d[1..].chars().all(|c| c == 'd') => verbosity += d.len() - 1,
            other => return outside(format!("option '{other}'")),
        }
        i += 1;
    }
    let rest = &words[i..];
    if rest.len() != 2 {
        return outside(format!(
            "{} addresses (socat takes exactly two)",
            rest.len()
        ));
    }
    let first = Address::parse(&rest[0]).map_err(|e| Error::Usage(format!("address 1: {e}")))?;
    let second = Address::parse(&rest[1]).map_err(|e| Error::Usage(format!("address 2: {e}")))?;
    let log_level = match verbosity {
        0 | 1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let (network, network_is_first) = match (is_stdio(&first), is_stdio(&second)) {
        (false, true) => (first, true),
        (true, false) => (second, false),
        _ => {
            return outside(format!(
                "the address pair '{}' and '{}' (sst-tunnel joins stdio to one network address)",
                rest[0], rest[1]
            ));
        }
    };
    // With -u data flows from the first address to the second; -U reverses that.
    let direction = match (flow, network_is_first) {
        (Flow::Both, _) => Direction::Both,
        (Flow::Forward, true) | (Flow::Reverse, false) => Direction::ReceiveOnly,
        (Flow::Forward, false) | (Flow::Reverse, true) => Direction::SendOnly,
    };
    let label = if network_is_first { &rest[0] } else { &rest[1] };
    match translate(&network, label, direction, idle)? {
        Some(work) => Ok(Action::Run(Box::new(Job { work, log_level }))),
        None => outside(format!("address '{label}'")),
    }
}

#[derive(Clone, Copy)]
enum Flow {
    Both,
    Forward,
    Reverse,
}

fn is_stdio(address: &Address) -> bool {
    matches!(address.kind.as_str(), "stdio" | "-") && address.params.is_empty()
}

/// The address types we run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    TlsListen,
    TlsConnect,
    TcpListen,
    TcpConnect,
}

/// Address options, checked. Anything unknown sends the whole command line to the real socat.
#[derive(Default)]
struct Options {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cafile: Option<PathBuf>,
    capath: Option<PathBuf>,
    verify: Option<bool>,
    commonname: Option<String>,
    no_sni: bool,
    sni_host: Option<String>,
    cipher: Option<String>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    family: Option<Family>,
    bind: Option<String>,
    retries: u32,
    interval: Option<Duration>,
    connect_timeout: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Builds the work for the network address; `None` when something is outside the subset.
fn translate(
    address: &Address,
    label: &str,
    direction: Direction,
    idle: Option<Duration>,
) -> Result<Option<Work>> {
    let kind = match address.kind.as_str() {
        "openssl-listen" | "ssl-l" => Kind::TlsListen,
        "openssl-connect" | "openssl" | "ssl" => Kind::TlsConnect,
        "tcp-listen" | "tcp-l" | "tcp4-listen" | "tcp4-l" | "tcp6-listen" | "tcp6-l" => {
            Kind::TcpListen
        }
        "tcp" | "tcp-connect" | "tcp4" | "tcp4-connect" | "tcp6" | "tcp6-connect" => {
            Kind::TcpConnect
        }
        _ => return Ok(None),
    };
    let bad = |why: String| Error::Usage(format!("address '{label}': {why}"));
    let Some(mut options) = read_options(address, kind).map_err(&bad)? else {
        return Ok(None);
    };
    if address.kind.starts_with("tcp4") {
        options.family = Some(Family::V4);
    } else if address.kind.starts_with("tcp6") {
        options.family = Some(Family::V6);
    }
    let interval = options.interval.unwrap_or(RETRY_INTERVAL);
    let stream = Stream { direction, idle };
    match kind {
        Kind::TlsListen | Kind::TcpListen => {
            let [port] = address.params.as_slice() else {
                return Err(bad("expected TYPE:PORT".into()));
            };
            let port =
                net::parse_port(port).ok_or_else(|| bad(format!("'{port}' is not a port")))?;
            // socat listens on 0.0.0.0 (or :: with pf=ip6) unless bind= names a host.
            let host = match (&options.bind, options.family) {
                (Some(host), _) => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                (None, Some(Family::V6)) => "::".to_string(),
                (None, _) => "0.0.0.0".to_string(),
            };
            let bind = HostPort { host, port };
            let tls = if kind == Kind::TlsListen {
                Some(server_plan(&options, direction, idle).map_err(|e| prefix(label, e))?)
            } else {
                warn!("plaintext TCP-LISTEN: this stream is not encrypted (encrypt=0)");
                None
            };
            Ok(Some(Work::Listen {
                bind,
                retries: options.retries,
                interval,
                tls,
                plain: stream,
            }))
        }
        Kind::TlsConnect | Kind::TcpConnect => {
            let [host, port] = address.params.as_slice() else {
                return Err(bad("expected TYPE:HOST:PORT".into()));
            };
            let port =
                net::parse_port(port).ok_or_else(|| bad(format!("'{port}' is not a port")))?;
            let target = HostPort {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
            };
            let source = match &options.bind {
                Some(text) => Some(
                    parse_source(text)
                        .ok_or_else(|| bad(format!("bind={text}: expected a local IP address")))?,
                ),
                None => None,
            };
            let timeout = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
            if kind == Kind::TcpConnect {
                warn!("plaintext TCP: this stream is not encrypted (encrypt=0)");
                return Ok(Some(Work::PlainConnect {
                    target,
                    source,
                    timeout,
                    retries: options.retries,
                    interval,
                    stream,
                }));
            }
            let mut plan = client_plan(&options, target, direction, idle, timeout, interval)
                .map_err(|e| prefix(label, e))?;
            plan.source = source;
            Ok(Some(Work::Connect(plan)))
        }
    }
}

/// Puts the address in front of a usage error from the TLS layer.
fn prefix(label: &str, err: Error) -> Error {
    match err {
        Error::Usage(msg) => Error::Usage(format!("address '{label}': {msg}")),
        other => other,
    }
}

/// Reads the options of `address`; `Ok(None)` for one outside the subset.
fn read_options(address: &Address, kind: Kind) -> std::result::Result<Option<Options>, String> {
    let tls = matches!(kind, Kind::TlsListen | Kind::TlsConnect);
    let mut o = Options::default();
    for (name, value) in &address.options {
        let text = value.clone().unwrap_or_default();
        let path = || {
            if text.is_empty() {
                Err(format!("{name}= needs a file name"))
            } else {
                Ok(PathBuf::from(&text))
            }
        };
        match name.as_str() {
            "cert" | "certificate" if tls => o.cert = Some(path()?),
            "key" if tls => o.key = Some(path()?),
            "cafile" if tls => o.cafile = Some(path()?),
            "capath" if tls => o.capath = Some(path()?),
            "verify" if tls => o.verify = Some(flag(value.as_deref(), name)?),
            "commonname" | "cn" if tls => o.commonname = Some(text),
            "no-sni" | "nosni" if tls => o.no_sni = flag(value.as_deref(), name)?,
            "snihost" if tls => o.sni_host = Some(text),
            "cipher" | "ciphers" | "cipher-list" if tls => o.cipher = Some(text),
            "min-proto-version" | "min-version" if tls => {
                o.min_version =
                    Some(proto_version(&text, false).map_err(|w| format!("{name}={text}: {w}"))?);
            }
            "max-proto-version" | "max-version" if tls => {
                o.max_version =
                    Some(proto_version(&text, true).map_err(|w| format!("{name}={text}: {w}"))?);
            }
            "dhparam" | "dh" if tls => {
                // A file socat would have to read: check it, then say it goes unused.
                std::fs::metadata(&text).map_err(|e| format!("dhparam={text}: {e}"))?;
                info!("dhparam={text}: not used (rustls negotiates ECDHE, never finite-field DHE)");
            }
            "pf" | "protocol-family" => {
                o.family = Some(match text.to_ascii_lowercase().as_str() {
                    "ip4" | "ipv4" | "inet" | "4" => Family::V4,
                    "ip6" | "ipv6" | "inet6" | "6" => Family::V6,
                    _ => return Err(format!("pf={text}: expected ip4 or ip6")),
                });
            }
            "bind" => o.bind = Some(text),
            "retry" => {
                o.retries = text
                    .parse()
                    .map_err(|_| format!("retry={text}: expected a count"))?;
            }
            "interval" => {
                o.interval = Some(seconds(&text).map_err(|w| format!("interval={text}: {w}"))?)
            }
            "connect-timeout" => {
                o.connect_timeout =
                    Some(seconds(&text).map_err(|w| format!("connect-timeout={text}: {w}"))?);
            }
            // Already what every socket gets (SO_REUSEADDR, TCP_NODELAY, keepalive)...
            "reuseaddr" | "so-reuseaddr" | "nodelay" | "keepalive" | "so-keepalive" => {
                flag(value.as_deref(), name)?;
            }
            // ...or a kernel tweak that changes no byte of the stream: Linux autotuning beats
            // a fixed SO_SNDBUF/SO_RCVBUF, and we always drain with close_notify before close.
            "linger" | "so-linger" | "sndbuf" | "so-sndbuf" | "rcvbuf" | "so-rcvbuf"
            | "backlog" => {
                text.parse::<u64>()
                    .map_err(|_| format!("{name}={text}: expected a number"))?;
                tracing::debug!("{name}={text}: left to the kernel");
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(o))
}

/// socat booleans: bare, 1/0, yes/no, true/false.
fn flag(value: Option<&str>, name: &str) -> std::result::Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1") | Some("yes") | Some("true") => Ok(true),
        Some("0") | Some("no") | Some("false") => Ok(false),
        Some(other) => Err(format!("{name}={other}: expected 0 or 1")),
    }
}

fn proto_version(text: &str, is_max: bool) -> std::result::Result<TlsVersion, String> {
    match text.to_ascii_lowercase().replace('v', "").as_str() {
        "tls1.3" => Ok(TlsVersion::Tls13),
        "tls1.2" => Ok(TlsVersion::Tls12),
        "tls1" | "tls1.0" | "tls1.1" | "ssl3" if !is_max => {
            warn!("min-proto-version={text}: TLS 1.2 is the lowest version sst-tunnel speaks");
            Ok(TlsVersion::Tls12)
        }
        "tls1" | "tls1.0" | "tls1.1" | "ssl3" => {
            Err("sst-tunnel speaks TLS 1.2 and 1.3 only".into())
        }
        _ => Err("expected TLS1.2 or TLS1.3".into()),
    }
}

fn seconds(text: &str) -> std::result::Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "expected a number of seconds".to_string())
        .and_then(crate::settings::bounded)
}

/// `bind=` on a connecting address: an IP, optionally with `:PORT` (brackets for IPv6).
fn parse_source(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = text.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// The TLS options shared by both roles.
fn tls_args(o: &Options) -> Result<TlsSettings> {
    let ca = match (&o.cafile, &o.capath) {
        (Some(_), Some(_)) => {
            return Err(Error::Usage("give cafile= or capath=, not both".into()));
        }
        (Some(path), None) | (None, Some(path)) => Some(path.clone()),
        (None, None) => None,
    };
    let ciphers = tls::openssl_cipher_lists(o.cipher.as_deref(), None)
        .map_err(|why| Error::Usage(format!("cipher=: {why}")))?;
    Ok(TlsSettings {
        defaults_file: None,
        defaults_group_suffix: None,
        role: None,
        cert: o.cert.clone(),
        key: o.key.clone(),
        ca,
        crl: None,
        verify: None,
        peer_names: Vec::new(),
        tls_min: o.min_version.unwrap_or(TlsVersion::Tls12),
        tls_max: o.max_version.unwrap_or(TlsVersion::Tls13),
        ciphers,
        handshake_timeout: HANDSHAKE_TIMEOUT,
    })
}

/// socat's verification: `verify=1` (the default) checks the chain (and makes a listener
/// require a client certificate); `commonname=X` adds a name check under socat's rule, empty
/// means none; a connecting address without `commonname` checks the host it dials.
fn policy(o: &Options, args: &TlsSettings, dialled: Option<&str>) -> Result<Option<Policy>> {
    if !o.verify.unwrap_or(true) {
        if args.ca.is_some() {
            warn!("verify=0: cafile/capath loaded but the peer is not authenticated");
        } else {
            warn!("verify=0: the peer is not authenticated");
        }
        return Ok(None);
    }
    if args.ca.is_none() {
        return Err(Error::Usage(
            "verify=1 (socat's default) needs cafile= or capath=; add verify=0 to accept any peer"
                .into(),
        ));
    }
    let names = match (&o.commonname, dialled) {
        (Some(name), _) if name.is_empty() => Vec::new(),
        (Some(name), _) => vec![name.clone()],
        (None, Some(host)) => vec![host.to_string()],
        (None, None) => Vec::new(),
    };
    Ok(Some(Policy {
        chain: true,
        pin: false,
        names,
        rule: NameRule::Socat,
    }))
}

fn server_plan(o: &Options, direction: Direction, idle: Option<Duration>) -> Result<server::Plan> {
    if o.cert.is_none() {
        return Err(Error::Usage(
            "openssl-listen needs cert= (a PEM file with the certificate, and the key unless key= is given)".into(),
        ));
    }
    let args = tls_args(o)?;
    let prepared = Prepared::with_policy(&args, policy(o, &args, None)?)?;
    let mut config = tls::server_config(&args, prepared)?;
    // The mariabackup joiner (`-u openssl-listen: stdio`) takes a striped stream from a
    // donor that is sst-tunnel too; a stock donor offers nothing and gets one connection.
    if direction == Direction::ReceiveOnly {
        config = stripes::accept_up_to(config, streams()?);
    }
    // A donor that is sst-tunnel too may resume a broken connection.
    let resume = resume::bounds_from_env()?;
    config = resume::accept(config, resume.window);
    Ok(server::Plan {
        resume,
        config,
        handshake: HANDSHAKE_TIMEOUT,
        idle,
        report: crate::settings::Reporting::front_end(),
        mode: server::Mode::Stdio { direction },
    })
}

fn client_plan(
    o: &Options,
    target: HostPort,
    direction: Direction,
    idle: Option<Duration>,
    connect_timeout: Duration,
    interval: Duration,
) -> Result<client::Plan> {
    let args = tls_args(o)?;
    let prepared = Prepared::with_policy(&args, policy(o, &args, Some(&target.host))?)?;
    let (config, name) = tls::client_config(
        &args,
        prepared,
        &target.host,
        o.sni_host.as_deref(),
        o.no_sni,
    )?;
    // The mariabackup donor (`-u stdio openssl-connect:`) offers to stripe; a stock
    // listener ignores the offer and gets one connection.
    let most = if direction == Direction::SendOnly {
        streams()?
    } else {
        1
    };
    let resume = resume::bounds_from_env()?;
    Ok(client::Plan {
        config: resume::offer(stripes::offer(config, most), resume.window),
        resume,
        target,
        source: None,
        name,
        connect_timeout,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        idle,
        direction,
        end_with_peer: false,
        retries: o.retries,
        retry_interval: interval,
        report: crate::settings::Reporting::front_end(),
        stripes: most,
    })
}

/// How many connections a one-way stream may be striped over: `SST_TUNNEL_STREAMS` (the
/// scripts' command lines are fixed), by default `auto` (the path and the cores decide, at
/// most 8); 1 never.
fn streams() -> Result<u32> {
    match std::env::var("SST_TUNNEL_STREAMS") {
        Err(_) => Ok(stripes::AUTO),
        Ok(text) => {
            stripes::parse(&text).map_err(|why| Error::Usage(format!("SST_TUNNEL_STREAMS: {why}")))
        }
    }
}

async fn run(job: Job) -> Result<()> {
    match job.work {
        Work::Connect(plan) => client::dial(plan).await,
        Work::Listen {
            bind,
            retries,
            interval,
            tls,
            plain,
        } => {
            // retry= on a listener also covers a failed bind (the previous stage's socket may
            // still hold the port for a moment).
            let listener = net::with_retries(retries, interval, || server::open(&bind)).await?;
            match tls {
                Some(plan) => server::serve(listener, plan).await,
                None => {
                    let (tcp, peer) = listener
                        .accept()
                        .await
                        .map_err(|e| Error::Connect(format!("accept failed: {e}")))?;
                    drop(listener);
                    net::tune(&tcp);
                    plain_relay(tcp, &peer.to_string(), plain).await
                }
            }
        }
        Work::PlainConnect {
            target,
            source,
            timeout,
            retries,
            interval,
            stream,
        } => {
            let tcp = net::with_retries(retries, interval, || {
                net::connect_from(&target, timeout, source)
            })
            .await?;
            plain_relay(tcp, &net::display(&target), stream).await
        }
    }
}

/// The encrypt=0 path: plain TCP to stdio, with the same half-close and counting.
async fn plain_relay(mut tcp: tokio::net::TcpStream, peer: &str, stream: Stream) -> Result<()> {
    let local = LocalEnds::open(stream.direction, false);
    let transfer = relay::relay(
        &mut tcp,
        local.input,
        local.output,
        relay::Options {
            idle: stream.idle,
            end_with_peer: local.end_with_peer,
            progress: crate::settings::Reporting::front_end().progress_for(peer),
            record_budget: None,
        },
    )
    .await
    .map_err(crate::ends::session::relay_error)?;
    info!(
        "closed {peer}: sent {} bytes, received {} bytes, plaintext TCP",
        transfer.sent, transfer.received
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The man page's lists of accepted address options are what `read_options` accepts.
    #[test]
    fn every_documented_option_is_taken() {
        for (names, _) in &crate::tools::manual::SOCAT_SUBSET[2..] {
            for name in names.split(", ") {
                let value = match name {
                    "verify" | "no-sni" | "reuseaddr" | "keepalive" | "nodelay" => "1",
                    "pf" => "ip4",
                    "bind" => "127.0.0.1",
                    "min-proto-version" | "max-proto-version" => "TLS1.3",
                    "retry" | "interval" | "connect-timeout" | "linger" | "sndbuf" | "rcvbuf"
                    | "backlog" => "1",
                    _ => "x",
                };
                let address =
                    Address::parse(&format!("openssl-connect:h:1,{name}={value}")).unwrap();
                let taken = read_options(&address, Kind::TlsConnect);
                // Refusing the value is fine (dhparam's file is checked); unknown is not.
                assert!(!matches!(taken, Ok(None)), "{name}: documented, not taken");
            }
        }
        let address = Address::parse("openssl-connect:h:1,engine=x").unwrap();
        assert!(matches!(read_options(&address, Kind::TlsConnect), Ok(None)));
    }

    #[test]
    fn version_is_read_as_socat_1_7_4_with_openssl() {
        let text = version_text();
        let first = text
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .find(|w| w.contains('.') && w.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .unwrap();
        assert_eq!(first, "1.7.4.4");
        assert!(text.contains("  #define WITH_OPENSSL 1\n"));
    }
}
