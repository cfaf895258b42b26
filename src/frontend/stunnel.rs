//! `stunnel CONF`: the stunnel configurations that `wsrep_sst_rsync` writes, run with
//! stunnel's semantics.
//!
//! Two shapes exist (contract 2.3): the joiner's daemon (`[rsync]` with `accept`, `exec`,
//! `execargs`; never forks, writes `pid =` once listening, removes it on exit) and the donor's
//! inetd client (no service section, stdin/stdout are the plaintext side, `connect =`).
//! Verification follows stunnel, not our native defaults: no `verify*` line means no peer
//! check (ssl-mode=REQUIRED), `verifyChain` checks the chain and makes a server require a
//! client certificate, `verifyPeer` pins the peer's own certificate, `checkHost`/`checkIP`
//! add a name check (any listed value may match).

use std::ffi::OsString;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use super::{Launch, Start, Tunnel, Unsupported, delegate};
use crate::ends::exec::Program;
use crate::ends::stdio::Direction;
use crate::ends::{client, resume, server};
use crate::error::{Error, Result};
use crate::fastpath;
use crate::net::HostPort;
use crate::settings::files;
use crate::settings::vocabulary::{self, Vocabulary};
use crate::settings::{TlsSettings, TlsVersion};
use crate::tls::{self, NameRule, Policy, Prepared};

/// stunnel's default `TIMEOUTconnect`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// stunnel's default `TIMEOUTidle` (12 hours).
const IDLE_TIMEOUT: Duration = Duration::from_secs(43_200);
/// Handshake deadline; stunnel has none of its own below TIMEOUTbusy (300 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// The stunnel version we answer `-version` with: what the SST scripts compare against.
const STUNNEL_COMPAT_VERSION: &str = "5.68";

/// Reads the stunnel command line `args` (argv without argv[0]) into what to run.
pub fn launch(args: Vec<OsString>) -> Launch {
    // The joiner script looks for a listener owned by a process named stunnel*.
    fastpath::set_process_name("stunnel");
    // Hints name this config's lines, not the native flags.
    if let Some(conf) = args.first() {
        vocabulary::install(Vocabulary::stunnel(Path::new(conf)));
    }
    let start = match prepare(&args) {
        Ok(Action::Version) => {
            eprintln!(
                "stunnel {STUNNEL_COMPAT_VERSION} compatible: sst-tunnel {} (Galera SST subset)",
                env!("CARGO_PKG_VERSION")
            );
            Ok(Start::Answered)
        }
        Ok(Action::Delegate(unsupported)) => Err(delegate("stunnel", &args, &unsupported)),
        Ok(Action::Run(service)) => {
            let daemon = matches!(service.role, Role::Daemon { .. });
            Ok(Start::Run(Tunnel {
                log_level: service.log_level,
                multi: daemon,
                work: Box::pin(run(*service)),
                settle: if daemon {
                    stopped_daemon
                } else {
                    Tunnel::as_is
                },
            }))
        }
        Err(e) => Err(e),
    };
    Launch {
        label: "sst-tunnel (stunnel)",
        exit_code: Error::exit_code,
        start,
    }
}

/// A daemon is stopped with SIGTERM by the SST script; stock stunnel exits 0 then.
fn stopped_daemon(result: Result<()>) -> Result<()> {
    match result {
        Err(Error::Signal(signo)) => {
            info!("signal {signo}: stopped");
            Ok(())
        }
        other => other,
    }
}

/// What a command line asks for.
enum Action {
    /// `-version`.
    Version,
    /// Something outside the subset: run the real stunnel.
    Delegate(Unsupported),
    /// A configuration we run ourselves.
    Run(Box<Service>),
}

/// A configuration, checked and translated.
struct Service {
    role: Role,
    log_level: &'static str,
}

enum Role {
    /// The donor: stdin/stdout <-> TLS client to `connect`.
    Inetd(client::Plan),
    /// The joiner: TLS server running `exec` per connection.
    Daemon {
        bind: HostPort,
        plan: server::Plan,
        pid_file: Option<PathBuf>,
    },
}

fn prepare(args: &[OsString]) -> Result<Action> {
    let Some(first) = args.first() else {
        return Ok(Action::Delegate(Unsupported {
            location: "command line".into(),
            what: "running without a configuration file".into(),
        }));
    };
    let first_text = first.to_string_lossy();
    if first_text == "-version" {
        return Ok(Action::Version);
    }
    if first_text.starts_with('-') {
        return Ok(Action::Delegate(Unsupported {
            location: "command line".into(),
            what: format!("option '{first_text}'"),
        }));
    }
    let path = PathBuf::from(first);
    let text = files::read_text(&path, files::CONFIG_LIMIT)?;
    let conf = Conf::parse(&path, &text)?;
    match conf.service()? {
        Translated::Unsupported(u) => Ok(Action::Delegate(u)),
        Translated::Service(s) => Ok(Action::Run(s)),
    }
}

/// Parses and translates a configuration without running it (the fuzz targets' entry).
pub(crate) fn check(path: &Path, text: &str) -> Result<()> {
    Conf::parse(path, text)?.service().map(drop)
}

async fn run(service: Service) -> Result<()> {
    match service.role {
        Role::Inetd(plan) => client::dial(plan).await,
        Role::Daemon {
            bind,
            plan,
            pid_file,
        } => {
            server::check(&plan)?;
            let listener = server::open(&bind).await?;
            // Written only now: the script's readiness check wants the listener and the pid.
            let _pid = match pid_file {
                Some(path) => Some(PidFile::write(path)?),
                None => None,
            };
            server::serve(listener, plan).await
        }
    }
}

/// Our PID in a file while we serve; removed when dropped (also on SIGTERM, whose handling
/// drops the serving future), as the SST script's lingering-process check expects.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> Result<Self> {
        fs::write(&path, format!("{}\n", std::process::id()))
            .map_err(|e| Error::file_io(&path, &e))?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// One `name = value` line.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    /// The name as written, for messages.
    name: String,
    value: String,
}

/// A configuration file split into global lines and `[service]` sections.
struct Conf {
    path: PathBuf,
    global: Vec<Line>,
    sections: Vec<(String, usize, Vec<Line>)>,
}

enum Translated {
    Service(Box<Service>),
    Unsupported(Unsupported),
}

impl Conf {
    /// stunnel's lexer: `#`/`;` comments, `[name]` sections, `name = value` split at the first
    /// `=` with optional spaces, names case-insensitive.
    fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut conf = Self {
            path: path.to_path_buf(),
            global: Vec::new(),
            sections: Vec::new(),
        };
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest.strip_suffix(']').ok_or_else(|| {
                    Error::file(path, format!("line {number}: '{line}': missing ']'"))
                })?;
                conf.sections
                    .push((name.trim().to_string(), number, Vec::new()));
                continue;
            }
            let (name, value) = line.split_once('=').ok_or_else(|| {
                Error::file(
                    path,
                    format!("line {number}: '{line}': expected 'option = value'"),
                )
            })?;
            let entry = Line {
                number,
                name: name.trim().to_string(),
                value: value.trim().to_string(),
            };
            match conf.sections.last_mut() {
                Some((_, _, lines)) => lines.push(entry),
                None => conf.global.push(entry),
            }
        }
        Ok(conf)
    }

    fn error(&self, line: &Line, why: impl std::fmt::Display) -> Error {
        Error::file(
            &self.path,
            format!(
                "line {}: {} = {}: {why}",
                line.number, line.name, line.value
            ),
        )
    }

    fn unsupported(&self, number: usize, what: String) -> Translated {
        Translated::Unsupported(Unsupported {
            location: format!("{}: line {number}", self.path.display()),
            what,
        })
    }

    /// Checks every line and builds the service, or names the first thing outside the subset.
    fn service(&self) -> Result<Translated> {
        if let Some((name, number, _)) = self.sections.get(1) {
            return Ok(self.unsupported(*number, format!("a second service [{name}]")));
        }
        let mut d = Directives::default();
        // Service lines after global ones: a service's own setting wins.
        let section_lines = self.sections.first().map(|s| s.2.as_slice()).unwrap_or(&[]);
        for line in self.global.iter().chain(section_lines) {
            if let Some(unsupported) = self.take(&mut d, line)? {
                return Ok(unsupported);
            }
        }
        let daemon = !self.sections.is_empty();
        let client = match &d.client {
            Some(line) => self.yes_no(line)?,
            None => false,
        };
        let log_level = match &d.debug {
            Some(line) => log_level(&line.value).ok_or_else(|| {
                self.error(line, "expected a level: emerg..debug or 0..7, e.g. warning")
            })?,
            None => "info",
        };
        let tls = self.tls_args(&d)?;
        let policy = self.policy(&d, tls.ca.is_some())?;
        if daemon {
            let (name, number, _) = &self.sections[0];
            if client {
                return Ok(self.unsupported(
                    *number,
                    format!("[{name}] with client = yes (a plaintext listener)"),
                ));
            }
            if let Some(line) = &d.connect {
                return Ok(self.unsupported(
                    line.number,
                    format!("[{name}] forwarding to connect = (sst-tunnel runs exec =)"),
                ));
            }
            let accept = d.accept.as_ref().ok_or_else(|| {
                Error::file(
                    &self.path,
                    format!("line {number}: [{name}] has no 'accept ='"),
                )
            })?;
            let exec = d.exec.as_ref().ok_or_else(|| {
                Error::file(
                    &self.path,
                    format!("line {number}: [{name}] has no 'exec ='"),
                )
            })?;
            if tls.cert.is_none() {
                return Err(Error::file(
                    &self.path,
                    format!("line {number}: [{name}] is a TLS server and needs 'cert ='"),
                ));
            }
            let bind = parse_accept(&accept.value).ok_or_else(|| {
                self.error(
                    accept,
                    "expected [HOST:]PORT (the host may be an IPv6 address)",
                )
            })?;
            // execargs is split on whitespace only, no quotes, no $VAR: stunnel's rule.
            let argv = match &d.execargs {
                Some(line) => line.value.split_whitespace().map(str::to_string).collect(),
                None => vec![exec.value.clone()],
            };
            let prepared = Prepared::with_policy(&tls, policy)?;
            // A donor that is sst-tunnel too may resume a broken connection: its rsync
            // keeps running here, and the stream goes on over the next connection.
            let resume = resume::bounds_from_env()?;
            let config = resume::accept(tls::server_config(&tls, prepared)?, resume.window);
            let plan = server::Plan {
                resume,
                config,
                handshake: HANDSHAKE_TIMEOUT,
                idle: Some(self.seconds(d.timeout_idle.as_ref(), IDLE_TIMEOUT)?),
                report: crate::settings::Reporting::front_end(),
                mode: server::Mode::Exec {
                    program: Program {
                        path: exec.value.clone(),
                        argv,
                    },
                    max_connections: 512,
                },
            };
            let pid_file = d
                .pid
                .as_ref()
                .filter(|line| !line.value.is_empty())
                .map(|line| PathBuf::from(&line.value));
            return Ok(Translated::Service(Box::new(Service {
                role: Role::Daemon {
                    bind,
                    plan,
                    pid_file,
                },
                log_level,
            })));
        }
        // inetd mode: stdin/stdout are the plaintext side.
        if !client {
            let number = d.client.as_ref().map_or(1, |l| l.number);
            return Ok(self.unsupported(
                number,
                "an inetd-mode TLS server (client = no without a [service])".into(),
            ));
        }
        if let Some(line) = d.exec.as_ref().or(d.accept.as_ref()) {
            return Ok(self.unsupported(line.number, format!("'{}' in inetd mode", line.name)));
        }
        let connect = d.connect.as_ref().ok_or_else(|| {
            Error::file(
                &self.path,
                "client = yes without a [service] needs 'connect = HOST:PORT'",
            )
        })?;
        let target = parse_connect(&connect.value)
            .ok_or_else(|| self.error(connect, "expected HOST:PORT"))?;
        let (sni, no_sni) = match &d.sni {
            Some(line) if line.value.is_empty() => (None, true),
            Some(line) => (Some(line.value.clone()), false),
            None => (None, false),
        };
        let prepared = Prepared::with_policy(&tls, policy)?;
        let (config, name) =
            tls::client_config(&tls, prepared, &target.host, sni.as_deref(), no_sni)?;
        // A joiner that is sst-tunnel too may agree to resume a broken connection.
        let resume = resume::bounds_from_env()?;
        Ok(Translated::Service(Box::new(Service {
            role: Role::Inetd(client::Plan {
                // rsync's protocol is interactive: one connection, both ways.
                stripes: 1,
                resume,
                config: resume::offer(config, resume.window),
                target,
                source: None,
                name,
                connect_timeout: self.seconds(d.timeout_connect.as_ref(), CONNECT_TIMEOUT)?,
                handshake_timeout: HANDSHAKE_TIMEOUT,
                idle: Some(self.seconds(d.timeout_idle.as_ref(), IDLE_TIMEOUT)?),
                direction: Direction::Both,
                // stunnel has no TLS half-close: once the peer is done, so is the
                // connection; rsync waits for its remote shell to exit before closing stdin.
                end_with_peer: true,
                retries: 0,
                retry_interval: Duration::ZERO,
                report: crate::settings::Reporting::front_end(),
            }),
            log_level,
        })))
    }

    /// Files one line into `d`; `Some` when the line is outside the subset.
    fn take(&self, d: &mut Directives, line: &Line) -> Result<Option<Translated>> {
        let slot = match line.name.to_ascii_lowercase().as_str() {
            "cert" => &mut d.cert,
            "key" => &mut d.key,
            "cafile" => &mut d.ca_file,
            "capath" => &mut d.ca_path,
            "crlfile" => &mut d.crl_file,
            "crlpath" => &mut d.crl_path,
            "pid" => &mut d.pid,
            "debug" => &mut d.debug,
            "client" => &mut d.client,
            "connect" => &mut d.connect,
            "accept" => &mut d.accept,
            "exec" => &mut d.exec,
            "execargs" => &mut d.execargs,
            "verifychain" => &mut d.verify_chain,
            "verifypeer" => &mut d.verify_peer,
            "verify" => &mut d.verify_level,
            "requirecert" => &mut d.require_cert,
            "sni" => &mut d.sni,
            "timeoutconnect" => &mut d.timeout_connect,
            "timeoutidle" => &mut d.timeout_idle,
            "sslversionmin" => &mut d.version_min,
            "sslversionmax" => &mut d.version_max,
            "sslversion" => &mut d.version,
            "ciphers" => &mut d.ciphers,
            "ciphersuites" => &mut d.ciphersuites,
            "checkhost" => {
                d.check_host.push(line.clone());
                return Ok(None);
            }
            "checkip" => {
                line.value
                    .parse::<IpAddr>()
                    .map_err(|_| self.error(line, "not an IP address"))?;
                d.check_ip.push(line.clone());
                return Ok(None);
            }
            "foreground" => {
                // We never fork, whatever this says; stderr is the log either way.
                let v = line.value.to_ascii_lowercase();
                if !matches!(v.as_str(), "yes" | "no" | "quiet") {
                    return Err(self.error(line, "expected yes, no or quiet"));
                }
                return Ok(None);
            }
            "timeoutclose" => {
                // We always send close_notify and stop once the peer has finished; there
                // is nothing to wait for after that.
                self.seconds(Some(line), Duration::ZERO)?;
                return Ok(None);
            }
            "setuid" | "setgid" if matches!(line.value.as_str(), "root" | "0") => {
                return Ok(None);
            }
            "socket" if socket_option_is_default(&line.value) => return Ok(None),
            _ => {
                return Ok(Some(self.unsupported(
                    line.number,
                    format!("directive '{} = {}'", line.name, line.value),
                )));
            }
        };
        *slot = Some(line.clone());
        Ok(None)
    }

    fn yes_no(&self, line: &Line) -> Result<bool> {
        match line.value.to_ascii_lowercase().as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(self.error(line, "expected yes or no")),
        }
    }

    fn seconds(&self, line: Option<&Line>, default: Duration) -> Result<Duration> {
        match line {
            None => Ok(default),
            Some(line) => line
                .value
                .parse::<u64>()
                .map_err(|_| "expected a number of seconds".to_string())
                .and_then(|secs| crate::settings::bounded(Duration::from_secs(secs)))
                .map_err(|why| self.error(line, &why)),
        }
    }

    fn tls_args(&self, d: &Directives) -> Result<TlsSettings> {
        let ca = match (&d.ca_file, &d.ca_path) {
            (Some(file), Some(_)) => {
                return Err(self.error(file, "give CAfile or CApath, not both"));
            }
            (Some(line), None) | (None, Some(line)) => Some(PathBuf::from(&line.value)),
            (None, None) => None,
        };
        let crl = match (&d.crl_file, &d.crl_path) {
            (Some(file), Some(_)) => {
                return Err(self.error(file, "give CRLfile or CRLpath, not both"));
            }
            (Some(line), None) | (None, Some(line)) => Some(PathBuf::from(&line.value)),
            (None, None) => None,
        };
        let mut tls_min = TlsVersion::Tls12;
        let mut tls_max = TlsVersion::Tls13;
        if let Some(line) = &d.version {
            let v = self.version(line, true)?;
            tls_min = v;
            tls_max = v;
        }
        if let Some(line) = &d.version_min {
            tls_min = self.version(line, false)?;
        }
        if let Some(line) = &d.version_max {
            tls_max = self.version(line, true)?;
        }
        Ok(TlsSettings {
            defaults_file: None,
            defaults_group_suffix: None,
            role: None,
            cert: d.cert.as_ref().map(|l| PathBuf::from(&l.value)),
            key: d.key.as_ref().map(|l| PathBuf::from(&l.value)),
            ca,
            crl,
            verify: None,
            peer_names: Vec::new(),
            tls_min,
            tls_max,
            ciphers: self.ciphers(d)?,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// `sslVersion*` values. Below TLS 1.2 rustls has nothing: as a minimum that only
    /// narrows what stunnel would allow, as a maximum it cannot be met.
    fn version(&self, line: &Line, is_max: bool) -> Result<TlsVersion> {
        match line.value.to_ascii_lowercase().as_str() {
            "tlsv1.3" => Ok(TlsVersion::Tls13),
            "tlsv1.2" => Ok(TlsVersion::Tls12),
            "all" if is_max => Ok(TlsVersion::Tls13),
            "all" | "sslv3" | "tlsv1" | "tlsv1.1" if !is_max => {
                warn!(
                    "{}: line {}: {} = {}: TLS 1.2 is the lowest version sst-tunnel speaks",
                    self.path.display(),
                    line.number,
                    line.name,
                    line.value
                );
                Ok(TlsVersion::Tls12)
            }
            "sslv3" | "tlsv1" | "tlsv1.1" => Err(self.error(
                line,
                "sst-tunnel speaks TLS 1.2 and 1.3 only (rustls has no older versions)",
            )),
            _ => Err(self.error(line, "expected TLSv1.2, TLSv1.3 or all")),
        }
    }

    /// `ciphers` (TLS 1.2, OpenSSL names) and `ciphersuites` (TLS 1.3): each list replaces
    /// only its own version's defaults, as in stunnel.
    fn ciphers(&self, d: &Directives) -> Result<Option<String>> {
        // Each list alone first, so an error names its own line.
        if let Some(line) = &d.ciphers {
            tls::openssl_cipher_lists(Some(&line.value), None).map_err(|w| self.error(line, w))?;
        }
        if let Some(line) = &d.ciphersuites {
            tls::openssl_cipher_lists(None, Some(&line.value)).map_err(|w| self.error(line, w))?;
        }
        tls::openssl_cipher_lists(
            d.ciphers.as_ref().map(|l| l.value.as_str()),
            d.ciphersuites.as_ref().map(|l| l.value.as_str()),
        )
        .map_err(|w| Error::file(&self.path, w))
    }

    /// stunnel's verification options as a policy; `None` verifies nothing.
    fn policy(&self, d: &Directives, have_ca: bool) -> Result<Option<Policy>> {
        let mut policy = Policy::any();
        if let Some(line) = &d.verify_level {
            match line.value.as_str() {
                "0" => {}
                // Level 1 verifies a certificate only if one is sent; we always ask for
                // one instead (stricter, and every SST peer sends one).
                "1" | "2" => policy.chain = true,
                "3" => {
                    policy.chain = true;
                    policy.pin = true;
                }
                "4" => policy.pin = true,
                _ => return Err(self.error(line, "expected a level from 0 to 4")),
            }
        }
        if let Some(line) = &d.verify_chain {
            policy.chain = self.yes_no(line)? || policy.chain;
        }
        if let Some(line) = &d.verify_peer {
            policy.pin = self.yes_no(line)? || policy.pin;
        }
        policy.names = d
            .check_host
            .iter()
            .chain(&d.check_ip)
            .map(|l| l.value.clone())
            .collect();
        policy.rule = NameRule::OpenSsl;
        if !policy.names.is_empty() && !policy.chain && !policy.pin {
            // A name on a certificate nobody vouched for proves nothing: fail closed.
            policy.chain = true;
        }
        let require = match &d.require_cert {
            Some(line) => self.yes_no(line)?,
            None => false,
        };
        if (policy.chain || policy.pin) && !have_ca {
            let line = d
                .verify_chain
                .as_ref()
                .or(d.verify_peer.as_ref())
                .or(d.verify_level.as_ref())
                .or(d.check_host.first())
                .or(d.check_ip.first());
            return Err(match line {
                Some(line) => self.error(line, "needs CAfile = or CApath = (the trusted CAs)"),
                None => Error::file(&self.path, "verification needs CAfile = or CApath ="),
            });
        }
        if policy.is_any() {
            warn!(
                "{}: no verifyChain or verifyPeer: the peer is not authenticated (ssl-mode=REQUIRED)",
                self.path.display()
            );
            // requireCert alone: a certificate must come, but nothing checks it.
            return Ok(require.then(Policy::any));
        }
        Ok(Some(policy))
    }
}

/// The directives of the subset, last occurrence wins (`checkHost`/`checkIP` accumulate).
#[derive(Default)]
struct Directives {
    cert: Option<Line>,
    key: Option<Line>,
    ca_file: Option<Line>,
    ca_path: Option<Line>,
    crl_file: Option<Line>,
    crl_path: Option<Line>,
    pid: Option<Line>,
    debug: Option<Line>,
    client: Option<Line>,
    connect: Option<Line>,
    accept: Option<Line>,
    exec: Option<Line>,
    execargs: Option<Line>,
    verify_chain: Option<Line>,
    verify_peer: Option<Line>,
    verify_level: Option<Line>,
    require_cert: Option<Line>,
    sni: Option<Line>,
    timeout_connect: Option<Line>,
    timeout_idle: Option<Line>,
    version_min: Option<Line>,
    version_max: Option<Line>,
    version: Option<Line>,
    ciphers: Option<Line>,
    ciphersuites: Option<Line>,
    check_host: Vec<Line>,
    check_ip: Vec<Line>,
}

/// stunnel's `debug = [facility.]level` as a tracing filter.
fn log_level(value: &str) -> Option<&'static str> {
    let level = value.rsplit('.').next()?.to_ascii_lowercase();
    Some(match level.as_str() {
        "0" | "emerg" | "1" | "alert" | "2" | "crit" | "3" | "err" => "error",
        "4" | "warning" => "warn",
        "5" | "notice" | "6" | "info" => "info",
        "7" | "debug" => "debug",
        _ => return None,
    })
}

/// `socket = a|l|r:OPTION=VALUE` lines that only ask for what we do anyway.
fn socket_option_is_default(value: &str) -> bool {
    let option = value.split_once(':').map_or(value, |(_, o)| o).trim();
    matches!(
        option.to_ascii_uppercase().replace(' ', "").as_str(),
        "TCP_NODELAY=1" | "SO_KEEPALIVE=1" | "SO_REUSEADDR=1" | "SO_REUSEADDR=YES"
    )
}

/// Splits `HOST:PORT` at the last colon (IPv6 unbracketed, as the scripts write it; brackets
/// are tolerated); a bare PORT has no host.
fn split_host_port(value: &str) -> Option<(String, u16)> {
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => ("", value),
    };
    let port = crate::net::parse_port(port.trim())?;
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port))
}

/// `accept =`: a host (IPv4, IPv6 or name) and port, or a port alone for every address;
/// `::` is every address too, as on a dual-stack Linux host.
fn parse_accept(value: &str) -> Option<HostPort> {
    let (host, port) = split_host_port(value)?;
    let host = if host == "::" { String::new() } else { host };
    Some(HostPort { host, port })
}

/// `connect =`: HOST:PORT; a port alone means this host.
fn parse_connect(value: &str) -> Option<HostPort> {
    let (host, port) = split_host_port(value)?;
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    Some(HostPort { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_at_the_last_colon() {
        let a = parse_accept("127.0.0.2:24444").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.2", 24444));
        let a = parse_accept("::1:24444").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 24444));
        let a = parse_accept(":::4444").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("", 4444));
        let a = parse_accept("24444").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("", 24444));
        let c = parse_connect("[::1]:4444").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 4444));
        assert!(parse_connect("host:0").is_none());
        assert!(parse_connect("host:port").is_none());
    }

    /// The man page's list of accepted directives is what `take` accepts.
    #[test]
    fn every_documented_directive_is_taken() {
        let conf = Conf::parse(Path::new("s.conf"), "").unwrap();
        for (names, _) in crate::tools::manual::STUNNEL_DIRECTIVES {
            for name in names.split(", ") {
                let value = match name {
                    "setuid" | "setgid" => "root",
                    "socket" => "l:TCP_NODELAY=1",
                    "checkIP" => "127.0.0.1",
                    "foreground" => "yes",
                    "TIMEOUTclose" => "0",
                    _ => "x",
                };
                let line = Line {
                    number: 1,
                    name: name.into(),
                    value: value.into(),
                };
                let taken = conf.take(&mut Directives::default(), &line);
                assert!(
                    !matches!(taken, Ok(Some(_))),
                    "{name}: documented, not taken"
                );
            }
        }
        let line = Line {
            number: 1,
            name: "engine".into(),
            value: "x".into(),
        };
        let taken = conf.take(&mut Directives::default(), &line);
        assert!(matches!(taken, Ok(Some(_))), "engine: taken");
    }

    #[test]
    fn lexer_follows_stunnel() {
        let text =
            "# comment\n; also\nCAfile=/x/ca.pem\n  debug   =  warning \n\n[rsync]\naccept = 1\n";
        let conf = Conf::parse(Path::new("s.conf"), text).unwrap();
        assert_eq!(conf.global.len(), 2);
        assert_eq!(conf.global[0].name, "CAfile");
        assert_eq!(conf.global[0].value, "/x/ca.pem");
        assert_eq!(conf.global[1].number, 4);
        assert_eq!(conf.sections[0].0, "rsync");
        let err = Conf::parse(Path::new("s.conf"), "cert /x\n")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(err, "s.conf: line 1: 'cert /x': expected 'option = value'");
    }

    #[test]
    fn log_levels() {
        assert_eq!(log_level("warning"), Some("warn"));
        assert_eq!(log_level("daemon.debug"), Some("debug"));
        assert_eq!(log_level("3"), Some("error"));
        assert_eq!(log_level("loud"), None);
    }
}
