//! Command-line syntax (clap derive): what the user typed, parsed into types, with no I/O.
//!
//! Files named here are opened later, by [`crate::tls`]; this module only checks that values
//! have the right shape so every mistake is reported against the flag that carried it.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Which command line this process was given.
#[derive(Debug)]
pub enum Invocation {
    /// `sst-tunnel ...`.
    Native(Box<Cli>),
    /// Run as `stunnel` (by name), or `sst-tunnel stunnel`: the words after the command.
    Stunnel(Vec<OsString>),
    /// Run as `socat` (by name), or `sst-tunnel socat`: the words after the command.
    Socat(Vec<OsString>),
}

impl Invocation {
    /// Reads argv: the name the binary runs under picks the personality (the SST scripts run
    /// `stunnel` and `socat`), anything else is the native command line.
    pub fn from_env() -> Self {
        let mut args: Vec<OsString> = std::env::args_os().collect();
        let name = args
            .first()
            .and_then(|a| Path::new(a).file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        match name.as_str() {
            "stunnel" => Self::Stunnel(args.split_off(1)),
            "socat" => Self::Socat(args.split_off(1)),
            _ => Self::Native(Box::new(Cli::parse_from(args))),
        }
    }
}

/// sst-tunnel: a TLS tunnel for Galera State Snapshot Transfers.
#[derive(Debug, Parser)]
#[command(name = "sst-tunnel", version, about, long_about = None)]
pub struct Cli {
    /// Log level on stderr: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Keep TLS in user space (rustls) even where the kernel could take it over (kTLS);
    /// SST_TUNNEL_KTLS=off does the same for the stunnel/socat drop-ins.
    #[arg(long, global = true)]
    pub no_ktls: bool,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// TLS client: stdin -> peer, peer -> stdout (the donor side).
    Connect(ConnectArgs),
    /// TLS server: run a program per connection (--exec) or relay one connection to stdio (--stdio).
    Listen(ListenArgs),
    /// Run both ends in this process on loopback with throwaway certificates and check a hash.
    Selftest(SelftestArgs),
    /// Make a cluster CA and node certificates for SST, with a my.cnf snippet per node.
    GenCerts(GenCertsArgs),
    /// Pre-flight checks of a node's certificate, key and CA files, with fixes.
    Check(CheckArgs),
    /// Write the man pages or shell completions into a directory (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
    /// Behave as stunnel: `sst-tunnel stunnel CONF` runs the SST scripts' stunnel.conf.
    #[command(disable_help_flag = true)]
    Stunnel(PassThrough),
    /// Behave as socat: `sst-tunnel socat -u stdio openssl-connect:HOST:PORT,...`.
    #[command(disable_help_flag = true)]
    Socat(PassThrough),
}

/// The arguments of a front-end, untouched (they follow stunnel's or socat's syntax).
#[derive(Debug, Args)]
pub struct PassThrough {
    /// Arguments as the original tool takes them.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

/// `sst-tunnel connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Peer to dial: HOST:PORT, where HOST is a name, an IPv4 address or a bracketed IPv6 address.
    #[arg(value_name = "HOST:PORT")]
    pub target: String,

    /// Give up dialling after this long (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// SNI name to send (default: HOST when it is a DNS name; IP literals are never sent).
    #[arg(long, value_name = "NAME", conflicts_with = "no_sni")]
    pub sni: Option<String>,

    /// Send no SNI extension at all.
    #[arg(long)]
    pub no_sni: bool,

    /// Words after `--` are ignored, so `rsync --rsh="sst-tunnel connect H:P ... --"` works:
    /// rsync appends `HOST rsync --server --daemon .` to the remote-shell command.
    #[arg(last = true, value_name = "RSH-ARGS")]
    pub rsh_args: Vec<String>,

    /// TLS options.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Data-phase options.
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// `sst-tunnel listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where to listen: [HOST:]PORT; HOST may be a bracketed IPv6 address. Default: all addresses.
    #[arg(value_name = "[HOST:]PORT")]
    pub bind: String,

    /// Relay exactly one connection to stdin/stdout, then exit.
    #[arg(long, conflicts_with = "exec", required_unless_present = "exec")]
    pub stdio: bool,

    /// Run PROG [ARGS...] for every connection, its stdin/stdout wired to the decrypted stream;
    /// must come last, since everything after it belongs to PROG.
    #[arg(long, num_args = 1.., value_name = "PROG", allow_hyphen_values = true)]
    pub exec: Option<Vec<String>>,

    /// Most connections served at once with --exec; further ones wait in the kernel backlog.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// TLS options.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Data-phase options.
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// `sst-tunnel generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: GenerateWhat,
    /// Directory to write into.
    pub out: PathBuf,
}

/// Generated packaging assets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GenerateWhat {
    /// Man pages (sst-tunnel.1 and one per sub-command).
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

/// `sst-tunnel check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The node's certificate chain (PEM); may also hold the key.
    #[arg(long, value_name = "FILE", required_unless_present = "defaults_file")]
    pub cert: Option<PathBuf>,

    /// The node's private key (PEM); read from --cert when omitted.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Trusted CAs: a PEM bundle or a directory.
    #[arg(
        long,
        value_name = "FILE|DIR",
        required_unless_present = "defaults_file"
    )]
    pub ca: Option<PathBuf>,

    /// Take the files from a MariaDB option file, as the SST scripts do.
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,

    /// Also read the option groups with this suffix.
    #[arg(long, value_name = "SUFFIX", requires = "defaults_file")]
    pub defaults_group_suffix: Option<String>,

    /// Whose ssl-server-*/ssl-client-* overrides apply.
    #[arg(long, value_enum, default_value = "joiner")]
    pub role: Role,

    /// CRLs to check the chain against.
    #[arg(long, value_name = "FILE|DIR")]
    pub crl: Option<PathBuf>,

    /// A name or IP the certificate must cover (repeatable): the node's own names.
    #[arg(long = "peer-name", value_name = "NAME")]
    pub peer_names: Vec<String>,

    /// Warn when the certificate expires within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: u32,
}

/// `sst-tunnel gen-certs`.
///
/// The directory is the cluster's CA directory: `ca.pem` (what every node trusts),
/// `ca-key.pem` (the key that signs, kept off the nodes) and per node `NAME-cert.pem`,
/// `NAME-key.pem`, `NAME-sst.cnf`. A CA already there is reused, never replaced.
#[derive(Debug, Args)]
#[command(
    after_help = "Lifecycle: first setup and adding a node are the same command (the CA \
in --out is reused); --renew re-issues named nodes; --rotate-ca start|finish brackets a CA \
rotation in three steps (see README, Certificate lifecycle)."
)]
pub struct GenCertsArgs {
    /// The cluster's CA directory (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// A node: NAME[=IP,IP...]; NAME becomes the CN and a DNS SAN, the IPs IP SANs (repeatable).
    #[arg(long = "node", value_name = "NAME[=IP,...]", required_unless_present = "rotate_ca", value_parser = parse_node)]
    pub nodes: Vec<Node>,

    /// Node certificate lifetime in days (never past the CA's own end).
    #[arg(long, value_name = "DAYS", default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,

    /// Lifetime in days of a CA made now.
    #[arg(long, value_name = "DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..))]
    pub ca_days: u32,

    /// The cluster's name, part of a new CA's name ("NAME SST CA <id>") so clusters' CAs
    /// can be told apart.
    #[arg(long, value_name = "NAME", conflicts_with = "ca_name")]
    pub cluster: Option<String>,

    /// A new CA's whole common name (default: "<cluster or Galera> SST CA <random id>").
    #[arg(long, value_name = "NAME")]
    pub ca_name: Option<String>,

    /// Issue the named nodes new certificates and keys from the CA in DIR, replacing
    /// their files there (renewal; the CA is kept).
    #[arg(long, visible_alias = "force")]
    pub renew: bool,

    /// CA rotation without an outage: `start` adds a new CA beside the old one (ca.pem
    /// becomes the bundle of both; new certificates come from the new CA); `finish` drops
    /// the old CA once every node holds a certificate from the new one.
    #[arg(long, value_enum, value_name = "STEP", conflicts_with = "nodes")]
    pub rotate_ca: Option<RotateStep>,
}

/// The two commands that bracket a CA rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotateStep {
    /// Make the new CA and the transition bundle.
    Start,
    /// Drop the old CA from the bundle.
    Finish,
}

/// One `--node NAME[=IP,...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Host name: CN and DNS SAN, and the file name stem.
    pub name: String,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

/// Parses `NAME[=IP,IP...]`.
pub fn parse_node(text: &str) -> std::result::Result<Node, String> {
    let (name, ips) = match text.split_once('=') {
        Some((name, ips)) => (name, Some(ips)),
        None => (text, None),
    };
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with(['-', '.']);
    if !valid {
        return Err(format!(
            "'{name}': a node name is a host name (letters, digits, '-' and '.')"
        ));
    }
    let ips = match ips {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|ip| {
                ip.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| format!("'{ip}' is not an IP address (NAME=IP,IP...)"))
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    Ok(Node {
        name: name.to_string(),
        ips,
    })
}

/// `sst-tunnel selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Bytes to push through, e.g. 1GiB, 64MiB, 1000000.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
}

/// TLS options shared by `connect` and `listen`.
#[derive(Debug, Args, Clone)]
pub struct TlsArgs {
    /// Our certificate chain (PEM); may also hold the private key.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Our private key (PEM); read from --cert when omitted.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Trusted CAs: a PEM bundle, or a directory of PEM files (OpenSSL hashed names included).
    #[arg(long, value_name = "FILE|DIR")]
    pub ca: Option<PathBuf>,

    /// Certificate revocation lists: a PEM/DER file, or a directory of them.
    #[arg(long, value_name = "FILE|DIR")]
    pub crl: Option<PathBuf>,

    /// How to verify the peer (default: chain when --ca is given; refused without --ca).
    #[arg(long, value_enum, value_name = "MODE")]
    pub verify: Option<VerifyMode>,

    /// Accepted peer name or IP for --verify identity (repeatable; any match accepts).
    #[arg(long = "peer-name", value_name = "NAME")]
    pub peer_names: Vec<String>,

    /// Lowest TLS version to negotiate.
    #[arg(long, value_enum, value_name = "VERSION", default_value = "1.2")]
    pub tls_min: TlsVersion,

    /// Highest TLS version to negotiate.
    #[arg(long, value_enum, value_name = "VERSION", default_value = "1.3")]
    pub tls_max: TlsVersion,

    /// Cipher suites to allow, separated by ':' or ',' (IANA or OpenSSL names).
    #[arg(long, value_name = "LIST")]
    pub ciphers: Option<String>,

    /// Give up on a TLS handshake that takes longer than this.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Take --cert/--key/--ca/--verify from a MariaDB option file, as the SST scripts do
    /// ([sst] tca/tcert/tkey, ssl-*, ssl-server-*/ssl-client-*, ssl-mode); flags win.
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,

    /// Also read the option groups with this suffix (like mariadbd --defaults-group-suffix).
    #[arg(long, value_name = "SUFFIX", requires = "defaults_file")]
    pub defaults_group_suffix: Option<String>,

    /// Whose ssl-server-*/ssl-client-* overrides apply (default: listen joiner, connect donor).
    #[arg(long, value_enum, requires = "defaults_file")]
    pub role: Option<Role>,
}

/// An SST role, for the option file's role-specific settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The node sending the snapshot (TLS client).
    Donor,
    /// The node receiving it (TLS server).
    Joiner,
}

impl TlsArgs {
    /// No TLS flags at all: what the front-ends start from before filling in their own.
    pub fn empty() -> Self {
        Self {
            cert: None,
            key: None,
            ca: None,
            crl: None,
            verify: None,
            peer_names: Vec::new(),
            tls_min: TlsVersion::Tls12,
            tls_max: TlsVersion::Tls13,
            ciphers: None,
            handshake_timeout: Duration::from_secs(30),
            defaults_file: None,
            defaults_group_suffix: None,
            role: None,
        }
    }
}

/// Options for the data phase.
#[derive(Debug, Args, Clone)]
pub struct StreamArgs {
    /// End a connection on which no byte moved either way for this long (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Log a progress line (bytes each way, rate, elapsed) this often during a transfer (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub progress: Duration,

    /// Write the final summary as JSON to FILE (listen --exec appends one line per connection).
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
}

impl StreamArgs {
    /// The reporting these flags ask for; `append` for a listener of many connections.
    pub fn reporting(&self, append: bool) -> crate::session::Reporting {
        crate::session::Reporting {
            progress: (!self.progress.is_zero()).then_some(self.progress),
            stats: self.stats_json.clone(),
            append,
        }
    }
}

/// Peer verification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyMode {
    /// Accept any peer certificate (encryption without authentication).
    None,
    /// The peer's chain must lead to --ca (and pass --crl).
    Chain,
    /// chain, and the peer's name must match --peer-name (client default: the dialled HOST).
    Identity,
    /// The peer's own certificate must be in --ca (stunnel's verifyPeer).
    Pin,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[value(name = "1.3")]
    Tls13,
}

/// Parses `30s`, `500ms`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 500ms, 5m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

/// Parses a byte count: `1000`, `64KiB`, `64MiB`, `1GiB`, `1G`, `500MB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try 64MiB or 1GiB)"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use KiB, MiB or GiB)"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_syntax() {
        assert_eq!(
            parse_node("node1=10.0.0.1,[fd00::1]").unwrap(),
            Node {
                name: "node1".into(),
                ips: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            }
        );
        assert_eq!(
            parse_node("db-2.example").unwrap().ips,
            Vec::<IpAddr>::new()
        );
        assert!(parse_node("=1.2.3.4").is_err());
        assert!(parse_node("node 1").is_err());
        assert!(parse_node("node1=10.0.0.300").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("12"), Ok(12));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
