//! What a connection needs, as plain settings: TLS files and policy, the data phase's
//! timeouts and reporting, and what `connect` and `listen` do. The native command line
//! (`cli`), the stunnel and socat front-ends and the option-file reader ([`mycnf`]) each
//! build these; TLS, the ends and the tools take them. Nothing here knows how argv looked.

pub mod files;
pub mod mycnf;
pub mod vocabulary;

/// The longest timeout any flag, config line or option takes: a year. Longer ones would
/// overflow the clock arithmetic of timers; nothing in an SST waits that long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// `duration` when it is at most [`MAX_TIMEOUT`]; else why not, for the caller's message.
pub fn bounded(duration: Duration) -> Result<Duration, String> {
    if duration <= MAX_TIMEOUT {
        Ok(duration)
    } else {
        Err(format!(
            "at most {} days",
            MAX_TIMEOUT.as_secs() / (24 * 3600)
        ))
    }
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
    Duration::try_from_secs_f64(seconds)
        .map_err(|e| format!("'{text}': {e}"))
        .and_then(|d| bounded(d).map_err(|why| format!("'{text}': {why}")))
}

use std::path::PathBuf;
use std::time::Duration;

/// An SST role, for the option file's role-specific settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The node sending the snapshot (TLS client).
    Donor,
    /// The node receiving it (TLS server).
    Joiner,
}

/// Peer verification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Accept any peer certificate (encryption without authentication).
    None,
    /// The peer's chain must lead to the trusted CAs (and pass the CRLs).
    Chain,
    /// chain, and the peer's name must match one of the accepted names (client default: the
    /// dialled host).
    Identity,
    /// The peer's own certificate must be among the trusted ones (stunnel's verifyPeer).
    Pin,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// TLS settings of one end: its certificate, what it trusts and how it verifies the peer,
/// versions and suites, and where they may come from (a MariaDB option file).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Our certificate chain (PEM); may also hold the private key.
    pub cert: Option<PathBuf>,
    /// Our private key (PEM); read from `cert` when absent.
    pub key: Option<PathBuf>,
    /// Trusted CAs: a PEM bundle, or a directory of PEM files.
    pub ca: Option<PathBuf>,
    /// Certificate revocation lists: a PEM/DER file, or a directory of them.
    pub crl: Option<PathBuf>,
    /// How to verify the peer; `None`: chain when `ca` is set, refused without it.
    pub verify: Option<VerifyMode>,
    /// Accepted peer names or IPs for [`VerifyMode::Identity`] (any match accepts).
    pub peer_names: Vec<String>,
    /// Lowest TLS version to negotiate.
    pub tls_min: TlsVersion,
    /// Highest TLS version to negotiate.
    pub tls_max: TlsVersion,
    /// Cipher suites to allow, `:` or `,` separated (IANA or OpenSSL names).
    pub ciphers: Option<String>,
    /// Give up on a handshake that takes longer than this.
    pub handshake_timeout: Duration,
    /// A MariaDB option file to take `cert`/`key`/`ca`/`verify` from, as the SST scripts do
    /// (values set here win).
    pub defaults_file: Option<PathBuf>,
    /// Also read the option groups with this suffix.
    pub defaults_group_suffix: Option<String>,
    /// Whose ssl-server-*/ssl-client-* overrides apply; `None`: the end's own role.
    pub role: Option<Role>,
}

impl Default for TlsSettings {
    /// Nothing set: what the front-ends and tools start from before filling in their own.
    fn default() -> Self {
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

/// What a finished or running connection reports besides its summary line.
#[derive(Debug, Clone, Default)]
pub struct Reporting {
    /// Interval of the `progress` lines; `None` for none.
    pub progress: Option<Duration>,
    /// Where to write the final summary as JSON.
    pub stats: Option<PathBuf>,
    /// Append one JSON line per connection instead of replacing the file (`listen --exec`).
    pub append: bool,
}

impl Reporting {
    /// What the stunnel and socat front-ends report: progress every 30 s (shown when their
    /// log level includes info), no stats file.
    pub fn front_end() -> Self {
        Self {
            progress: Some(Duration::from_secs(30)),
            ..Self::default()
        }
    }
}

/// The data phase of the native commands.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// End a connection on which no byte moved either way for this long (zero disables).
    pub idle_timeout: Duration,
    /// Log a progress line this often during a transfer (zero disables).
    pub progress: Duration,
    /// Write the final summary as JSON to this file.
    pub stats_json: Option<PathBuf>,
    /// The longest a stream between two sst-tunnels may stay disconnected and still resume
    /// (zero: never resume).
    pub resume_window: Duration,
    /// Unacknowledged bytes each end of a resumable stream keeps for resending.
    pub resume_buffer: usize,
}

impl StreamSettings {
    /// The idle timeout, `None` when disabled.
    pub fn idle(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }

    /// The reporting these settings ask for; `append` for a listener of many connections.
    pub fn reporting(&self, append: bool) -> Reporting {
        Reporting {
            progress: (!self.progress.is_zero()).then_some(self.progress),
            stats: self.stats_json.clone(),
            append,
        }
    }
}

/// `connect`: a stdio <-> TLS client.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// Peer to dial: HOST:PORT, as typed.
    pub target: String,
    /// Give up dialling after this long.
    pub connect_timeout: Duration,
    /// SNI name to send instead of the dialled host.
    pub sni: Option<String>,
    /// Send no SNI extension at all.
    pub no_sni: bool,
    /// Remote-shell semantics: end once the peer has finished (rsync's `--rsh`).
    pub end_with_peer: bool,
    /// The most TLS connections to stripe a one-way stream over when the listener is
    /// sst-tunnel too; 1: never (one connection, both ways).
    pub streams: u32,
    /// TLS.
    pub tls: TlsSettings,
    /// The data phase.
    pub stream: StreamSettings,
}

/// What a listener does with its connections.
#[derive(Debug, Clone)]
pub enum Serve {
    /// Relay exactly one connection to stdin/stdout.
    Stdio,
    /// Run this program (and arguments) for every connection.
    Exec(Vec<String>),
}

/// `listen`: the TLS server.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    /// Where to listen: [HOST:]PORT, as typed.
    pub bind: String,
    /// Stdio or exec.
    pub serve: Serve,
    /// Most connections served at once with exec.
    pub max_connections: u32,
    /// With stdio: the most TLS connections a donor may stripe one stream over (received
    /// one way, to stdout); 1: never (one connection, both ways).
    pub streams: u32,
    /// TLS.
    pub tls: TlsSettings,
    /// The data phase.
    pub stream: StreamSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

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
