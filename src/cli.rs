//! Command-line syntax (clap derive): what the user typed, parsed into types, with no I/O,
//! and turned into the plain settings ([`crate::settings`]) the rest of the program takes.
//!
//! Files named here are opened later, by [`crate::tls`]; this module only checks that values
//! have the right shape so every mistake is reported against the flag that carried it. The
//! settings' enums get their flag names and help here (`ValueEnum`), so settings know
//! nothing of clap. The tools declare their own arguments (`crate::tools`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ends::{resume, stripes};
use crate::settings::{
    ConnectSettings, ListenSettings, Role, Serve, StreamSettings, TlsSettings, TlsVersion,
    VerifyMode, parse_duration,
};
use crate::tools::selftest::SelftestArgs;
use crate::tools::{doctor::CheckArgs, gencerts::GenCertsArgs, generate::GenerateArgs};

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

    /// TCP congestion control for every connection (e.g. bbr, cubic): must be loaded, and
    /// allowed for this user (net.ipv4.tcp_allowed_congestion_control);
    /// SST_TUNNEL_CONGESTION does the same for the stunnel/socat drop-ins.
    #[arg(long, global = true, value_name = "NAME")]
    pub congestion: Option<String>,

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

    /// Stripe the stream over up to N TLS connections when the listener is sst-tunnel with
    /// --streams too ("auto": one per two cores, at most 8); the stream is then one-way,
    /// stdin to the listener. 1 (the default) never stripes.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = parse_streams)]
    pub streams: u32,

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

    /// With --stdio: let a donor stripe its stream over up to N TLS connections ("auto": one
    /// per two cores, at most 8); a striped stream is one-way, to stdout. 1 (the default)
    /// never stripes.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = parse_streams, conflicts_with = "exec")]
    pub streams: u32,

    /// TLS options.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Data-phase options.
    #[command(flatten)]
    pub stream: StreamArgs,
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

    /// When both ends are sst-tunnel, a stream whose connection breaks (a reset, an outage)
    /// resumes on a new one if it comes within this long (the stock scripts' idle timeouts;
    /// 0 turns resuming off).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub resume_window: Duration,

    /// Unacknowledged bytes each end of a resumable stream keeps for resending (a striped
    /// stream's stripes share it): at least the path's bandwidth-delay product, or the
    /// sender waits for acknowledgements. Use the same size on both ends.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_replay)]
    pub resume_buffer: usize,
}

impl From<TlsArgs> for TlsSettings {
    fn from(a: TlsArgs) -> Self {
        Self {
            cert: a.cert,
            key: a.key,
            ca: a.ca,
            crl: a.crl,
            verify: a.verify,
            peer_names: a.peer_names,
            tls_min: a.tls_min,
            tls_max: a.tls_max,
            ciphers: a.ciphers,
            handshake_timeout: a.handshake_timeout,
            defaults_file: a.defaults_file,
            defaults_group_suffix: a.defaults_group_suffix,
            role: a.role,
        }
    }
}

impl From<StreamArgs> for StreamSettings {
    fn from(a: StreamArgs) -> Self {
        Self {
            idle_timeout: a.idle_timeout,
            progress: a.progress,
            stats_json: a.stats_json,
            resume_window: a.resume_window,
            resume_buffer: a.resume_buffer,
        }
    }
}

impl From<ConnectArgs> for ConnectSettings {
    fn from(a: ConnectArgs) -> Self {
        Self {
            target: a.target,
            connect_timeout: a.connect_timeout,
            sni: a.sni,
            no_sni: a.no_sni,
            // Words after `--` mean a remote shell (rsync's --rsh): end with the peer.
            end_with_peer: !a.rsh_args.is_empty(),
            streams: a.streams,
            tls: a.tls.into(),
            stream: a.stream.into(),
        }
    }
}

impl From<ListenArgs> for ListenSettings {
    fn from(a: ListenArgs) -> Self {
        Self {
            bind: a.bind,
            serve: match a.exec {
                Some(argv) => Serve::Exec(argv),
                None => Serve::Stdio,
            },
            max_connections: a.max_connections,
            streams: a.streams,
            tls: a.tls.into(),
            stream: a.stream.into(),
        }
    }
}

// The settings' enums as flag values: names and help as `--help` and the man pages show them.
impl ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Donor, Self::Joiner]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Donor => {
                PossibleValue::new("donor").help("The node sending the snapshot (TLS client)")
            }
            Self::Joiner => PossibleValue::new("joiner").help("The node receiving it (TLS server)"),
        })
    }
}

impl ValueEnum for VerifyMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::None, Self::Chain, Self::Identity, Self::Pin]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::None => PossibleValue::new("none")
                .help("Accept any peer certificate (encryption without authentication)"),
            Self::Chain => PossibleValue::new("chain")
                .help("The peer's chain must lead to --ca (and pass --crl)"),
            Self::Identity => PossibleValue::new("identity").help(
                "chain, and the peer's name must match --peer-name (client default: the dialled HOST)",
            ),
            Self::Pin => PossibleValue::new("pin")
                .help("The peer's own certificate must be in --ca (stunnel's verifyPeer)"),
        })
    }
}

impl ValueEnum for TlsVersion {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Tls12, Self::Tls13]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::Tls12 => PossibleValue::new("1.2").help("TLS 1.2"),
            Self::Tls13 => PossibleValue::new("1.3").help("TLS 1.3"),
        })
    }
}

/// Parses `--resume-buffer`: a size of at least [`resume::MIN_REPLAY`].
pub fn parse_replay(text: &str) -> Result<usize, String> {
    resume::replay_size(crate::settings::parse_size(text)?)
}

/// Parses a number of streams: `auto` or 1 to the most either end agrees to.
pub fn parse_streams(text: &str) -> Result<u32, String> {
    stripes::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
