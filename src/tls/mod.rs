//! TLS settings: command-line TLS options turned into rustls client and server configs.
//!
//! This is the one place where flags become a `ClientConfig`/`ServerConfig`. It also owns the
//! fail-closed rules (no `--ca` means no run unless `--verify none` is explicit) and the
//! classification of rustls errors into certificate vs. handshake failures.

pub mod names;
pub mod pem;
pub mod verify;

pub use verify::{NameRule, Policy};

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, ClientConfig, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};
use tracing::warn;

use crate::error::{Error, Result};
use crate::settings::vocabulary::PEERS_CERT;
use crate::settings::{TlsSettings, TlsVersion, VerifyMode};
use names::CertNames;
use pem::CaCert;
use verify::{PeerRole, PeerVerifier};

/// Everything a config is built from: the verification policy and the loaded files.
pub struct Prepared {
    /// `None` means "accept any peer" (explicit `--verify none`).
    pub policy: Option<Policy>,
    /// Our certificate chain and key, already checked to belong together.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Trusted certificates (`--ca`), with the files they came from.
    pub trusted: Vec<CaCert>,
    /// `--ca` as the user wrote it, for messages.
    pub ca_label: String,
    /// Parsed `--crl` contents.
    pub crls: Vec<verify::Crl>,
}

impl Prepared {
    /// Checks the flag combination (fail-closed rules first), then reads every named file.
    ///
    /// `dialled` is the client's HOST (the default `--peer-name`); a listener passes `None`.
    pub fn load(args: &TlsSettings, dialled: Option<&str>) -> Result<Self> {
        Self::with_policy(args, policy(args, dialled)?)
    }

    /// Reads every named file for an already decided policy (the stunnel and socat front-ends
    /// decide theirs from their own option syntax; `args.verify` and `args.peer_names` are
    /// then ignored). `None` accepts any peer, and a server then asks for no certificate.
    pub fn with_policy(args: &TlsSettings, policy: Option<Policy>) -> Result<Self> {
        versions(args)?;
        if policy.as_ref().is_some_and(|p| p.chain || p.pin) && args.ca.is_none() {
            return Err(Error::Usage(
                "verifying the peer needs trusted CAs (--ca, CAfile/CApath, cafile/capath)".into(),
            ));
        }
        let identity = match &args.cert {
            Some(cert) => {
                let (chain, key) = identity(cert, args.key.as_deref())?;
                valid_now(cert, &chain[0])?;
                Some((chain, key))
            }
            None => None,
        };
        warn_exposure(args);
        let mut prepared = Self {
            policy,
            identity,
            trusted: Vec::new(),
            ca_label: String::new(),
            crls: Vec::new(),
        };
        if let Some(ca) = &args.ca {
            prepared.trusted = pem::load_ca(ca)?;
            prepared.ca_label = ca.display().to_string();
        }
        if let Some(crl_path) = &args.crl {
            for (file, der) in pem::load_crls(crl_path)? {
                let crl = verify::Crl::parse(file, &der)
                    .map_err(|why| Error::file(crl_path, format!("malformed CRL: {why}")))?;
                prepared.crls.push(crl);
            }
        }
        if prepared.policy.is_none() && args.ca.is_some() {
            warn!("--verify none: --ca is loaded but not used; the peer is not authenticated");
        }
        Ok(prepared)
    }
}

/// Refuses to start with our own certificate out of its validity period: every peer would
/// reject it, but only once a donor connects (or, for a donor, after the SST has begun to
/// be set up); saying so at start names the file, the dates and the renewal command.
fn valid_now(cert: &Path, leaf: &CertificateDer<'_>) -> Result<()> {
    let Some(names) = CertNames::parse(leaf) else {
        return Ok(()); // identity() has refused what cannot be parsed.
    };
    let now = verify::unix_now();
    if names.valid_at(now) {
        return Ok(());
    }
    let date = |t: i64| verify::format_unix(u64::try_from(t).unwrap_or(0));
    let what = if names.not_before > now {
        format!(
            "is not valid before {} (check this host's clock)",
            date(names.not_before)
        )
    } else {
        format!("expired at {}", date(names.not_after))
    };
    Err(Error::Cert(format!(
        "{}: our own certificate '{}' {what} (valid {} to {}); renew it: sst-tunnel gen-certs \
         --out CA_DIR --renew --node {} (CA_DIR: where the cluster's ca-key.pem is kept)",
        cert.display(),
        names.subject,
        date(names.not_before),
        date(names.not_after),
        names.node_spec()
    )))
}

/// Warns (once per problem) about trust files another user could replace or read: the tunnel
/// still runs, since refusing would break an SST in progress, but `sst-tunnel check` makes
/// each of these an error.
fn warn_exposure(args: &TlsSettings) {
    let problems = crate::settings::files::trust_exposure(
        args.cert.as_deref(),
        args.key.as_deref(),
        args.ca.as_deref(),
    );
    for problem in problems {
        warn!("{problem} (sst-tunnel check reports this as an error)");
    }
}

/// Builds the client config, and the name to dial under, for `connect`.
///
/// `host` is the HOST part of the target: the default SNI when it is a DNS name.
pub fn client_config(
    args: &TlsSettings,
    mut prepared: Prepared,
    host: &str,
    sni: Option<&str>,
    no_sni: bool,
) -> Result<(Arc<ClientConfig>, ServerName<'static>)> {
    let provider = Arc::new(provider(args)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(args)?)
        .map_err(|e| Error::Usage(format!("--tls-min/--tls-max/--ciphers: {e}")))?;
    let identity = prepared.identity.take();
    let verifier = verifier(prepared, PeerRole::Server, &provider)?;
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Usage(format!("--cert: cannot use as client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = !no_sni;
    // The record hand-off needs the traffic keys; they never leave the process.
    config.enable_secret_extraction = true;
    // Every connection is a full handshake with every check: nothing is resumed.
    config.resumption = rustls::client::Resumption::disabled();
    let name_text = sni
        .unwrap_or(host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(name_text.to_string()).map_err(|_| {
        Error::Usage(format!(
            "--sni/HOST: '{name_text}' is not a valid DNS name or IP address"
        ))
    })?;
    Ok((Arc::new(config), name))
}

/// Builds the server config for `listen`.
pub fn server_config(args: &TlsSettings, mut prepared: Prepared) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(provider(args)?);
    let (chain, key) = prepared.identity.take().ok_or_else(|| {
        Error::Usage(
            "listen needs --cert FILE (and --key FILE unless the cert file holds the key)".into(),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(args)?)
        .map_err(|e| Error::Usage(format!("--tls-min/--tls-max/--ciphers: {e}")))?;
    let builder = if prepared.policy.is_some() {
        builder.with_client_cert_verifier(Arc::new(verifier(
            prepared,
            PeerRole::Client,
            &provider,
        )?))
    } else {
        builder.with_client_cert_verifier(WebPkiClientVerifier::no_client_auth())
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::Usage(format!("--cert: cannot use as server certificate: {e}")))?;
    // Our preference (ChaCha20 first where the kernel carries it) decides, not the client's.
    config.ignore_client_order =
        args.ciphers.is_none() && crate::fastpath::prefer_unlimited_cipher();
    // No session resumption between separate processes, so tickets would be dead weight.
    config.send_tls13_tickets = 0;
    config.enable_secret_extraction = true;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Classifies an error that came out of a TLS stream: certificate problems (ours or the peer's
/// verdict on us) are [`Error::Cert`], other TLS problems `other(message)`.
pub fn classify(err: &io::Error, other: fn(String) -> Error) -> Error {
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return other(describe_io(err));
    };
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(inner)) => {
            Error::Cert(inner.0.to_string())
        }
        rustls::Error::InvalidCertificate(e) => Error::Cert(format!("peer certificate: {e:?}")),
        rustls::Error::NoCertificatesPresented => Error::Cert(format!(
            "{NO_CLIENT_CERTIFICATE} (client certificates are required; give the client one: {PEERS_CERT})"
        )),
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied => Error::Cert(format!(
                "the peer rejected our certificate (alert {alert:?}): check that our certificate \
                 (--cert) is issued by a CA the peer trusts, is valid now, and names this host"
            )),
            other_alert => other(format!("the peer sent alert {other_alert:?}")),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            other(format!("{tls} (is the peer speaking TLS?)"))
        }
        rustls::Error::PeerIncompatible(_) => other(format!(
            "{tls} (check --tls-min/--tls-max/--ciphers on both ends)"
        )),
        _ => other(tls.to_string()),
    }
}

/// An I/O error on the local side (stdin/stdout, the child's stdio) worded for a log line.
pub fn describe_local(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::BrokenPipe => "broken pipe (the reader of our output went away)".into(),
        _ => err.to_string(),
    }
}

/// An I/O error on the peer's socket worded for a log line: every way the peer can vanish
/// mid-stream is named a truncation, whichever syscall noticed it first.
pub fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection without a TLS close_notify (stream truncated)".into()
        }
        io::ErrorKind::ConnectionReset => {
            "the peer reset the connection before a TLS close_notify (stream truncated)".into()
        }
        io::ErrorKind::BrokenPipe => {
            "the peer went away before a TLS close_notify: broken pipe (stream truncated)".into()
        }
        _ => err.to_string(),
    }
}

/// How a refusal of a client without a certificate begins (a scanner or health check is
/// told apart from a client whose certificate was rejected by it).
pub const NO_CLIENT_CERTIFICATE: &str = "the peer presented no certificate";

/// Test hook: a lower record limit per traffic key (`SST_TUNNEL_TEST_RECORD_LIMIT=N`), so
/// the tests can cross AES-GCM's 2^24-record limit without moving 256 GiB. It can only make
/// rekeying (TLS 1.3) or the TLS 1.2 stop happen sooner; it never weakens anything.
const TEST_RECORD_LIMIT: &str = "SST_TUNNEL_TEST_RECORD_LIMIT";

/// Records per traffic key below the suite's limit at which a TLS 1.2 sender stops (the
/// handshake used a few; one write is at most 32).
const RECORD_MARGIN: u64 = 256;

/// The most records a TLS 1.2 connection may still send before rustls would refuse to
/// encrypt: rustls then sends close_notify and drops the data, which the peer would take for
/// a clean end of the stream. `None` for TLS 1.3 (rustls rekeys with KeyUpdate) and suites
/// without a limit.
pub fn record_budget(conn: &rustls::CommonState) -> Option<u64> {
    match conn.negotiated_cipher_suite()? {
        SupportedCipherSuite::Tls12(suite) if suite.common.confidentiality_limit != u64::MAX => {
            Some(
                suite
                    .common
                    .confidentiality_limit
                    .saturating_sub(RECORD_MARGIN),
            )
        }
        _ => None,
    }
}

/// The negotiated suite's key-usage limit in records (AES-GCM: 2^24.5 by RFC 8446 5.5, or
/// the test hook's lower value); `None` when it has none (ChaCha20-Poly1305). The kernel
/// path enforces it itself: the kernel TLS layers we can test cannot rekey.
pub fn confidentiality_limit(conn: &rustls::CommonState) -> Option<u64> {
    let limit = match conn.negotiated_cipher_suite()? {
        SupportedCipherSuite::Tls12(suite) => suite.common.confidentiality_limit,
        SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
    };
    (limit != u64::MAX).then_some(limit)
}

/// Applies [`TEST_RECORD_LIMIT`] to every suite (leaked copies: a few per process).
fn with_test_record_limit(suites: Vec<SupportedCipherSuite>) -> Vec<SupportedCipherSuite> {
    let Some(limit) = std::env::var(TEST_RECORD_LIMIT)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return suites;
    };
    suites
        .into_iter()
        .map(|suite| match suite {
            SupportedCipherSuite::Tls13(s) => {
                SupportedCipherSuite::Tls13(Box::leak(Box::new(rustls::Tls13CipherSuite {
                    common: rustls::CipherSuiteCommon {
                        suite: s.common.suite,
                        hash_provider: s.common.hash_provider,
                        confidentiality_limit: limit.min(s.common.confidentiality_limit),
                    },
                    hkdf_provider: s.hkdf_provider,
                    aead_alg: s.aead_alg,
                    quic: s.quic,
                })))
            }
            SupportedCipherSuite::Tls12(s) => {
                SupportedCipherSuite::Tls12(Box::leak(Box::new(rustls::Tls12CipherSuite {
                    common: rustls::CipherSuiteCommon {
                        suite: s.common.suite,
                        hash_provider: s.common.hash_provider,
                        confidentiality_limit: limit.min(s.common.confidentiality_limit),
                    },
                    prf_provider: s.prf_provider,
                    kx: s.kx,
                    sign: s.sign,
                    aead_alg: s.aead_alg,
                })))
            }
        })
        .collect()
}

/// The crypto provider restricted to `--ciphers`.
fn provider(args: &TlsSettings) -> Result<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = with_test_record_limit(provider.cipher_suites);
    if args.ciphers.is_none() && crate::fastpath::prefer_unlimited_cipher() {
        // Stable: each version keeps its own order otherwise.
        provider.cipher_suites.sort_by_key(|s| {
            crate::fastpath::Cipher::of_suite(s.suite())
                != Some(crate::fastpath::Cipher::Chacha20Poly1305)
        });
    }
    if let Some(list) = &args.ciphers {
        let mut chosen = Vec::new();
        for name in list
            .split([':', ','])
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let suite = find_suite(name).ok_or_else(|| {
                Error::Usage(format!(
                    "--ciphers: unknown cipher suite '{name}'; supported: {}",
                    aws_lc_rs::ALL_CIPHER_SUITES
                        .iter()
                        .filter_map(|s| s.suite().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if !chosen
                .iter()
                .any(|s: &SupportedCipherSuite| s.suite() == suite.suite())
            {
                chosen.push(suite);
            }
        }
        if chosen.is_empty() {
            return Err(Error::Usage("--ciphers: empty list".into()));
        }
        provider.cipher_suites = with_test_record_limit(chosen);
    }
    Ok(provider)
}

/// Finds a suite by IANA name (`TLS_AES_256_GCM_SHA384`, `TLS13_…`, `TLS_ECDHE_…`) or
/// OpenSSL name (`ECDHE-RSA-AES256-GCM-SHA384`), case-insensitively.
pub fn find_suite(name: &str) -> Option<SupportedCipherSuite> {
    let wanted = name.to_ascii_uppercase().replace('-', "_");
    const OPENSSL: [(&str, &str); 6] = [
        (
            "ECDHE_ECDSA_AES256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            "ECDHE_ECDSA_AES128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            "ECDHE_ECDSA_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        (
            "ECDHE_RSA_AES256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            "ECDHE_RSA_AES128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            "ECDHE_RSA_CHACHA20_POLY1305",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ];
    let wanted = OPENSSL
        .iter()
        .find(|(openssl, _)| *openssl == wanted)
        .map_or(wanted.clone(), |(_, iana)| iana.to_string());
    aws_lc_rs::ALL_CIPHER_SUITES.iter().copied().find(|suite| {
        let iana = suite.suite().as_str().unwrap_or_default();
        iana == wanted
            || iana
                .strip_prefix("TLS13_")
                .is_some_and(|rest| wanted == format!("TLS_{rest}"))
    })
}

/// Builds a `--ciphers` list from OpenSSL-style lists, each replacing only its own version's
/// defaults (OpenSSL's `cipher list` is TLS 1.2, `ciphersuites` TLS 1.3). `None` for both
/// keeps the defaults. Errors name the entry that is not a suite sst-tunnel offers.
pub fn openssl_cipher_lists(
    tls12: Option<&str>,
    tls13: Option<&str>,
) -> Result<Option<String>, String> {
    if tls12.is_none() && tls13.is_none() {
        return Ok(None);
    }
    let mut names = Vec::new();
    for (list, is13) in [(tls12, false), (tls13, true)] {
        let Some(list) = list else {
            names.extend(default_suite_names(is13));
            continue;
        };
        for name in list.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            let suite = find_suite(name).ok_or_else(|| {
                format!(
                    "'{name}' is not a cipher suite sst-tunnel offers (list suites by name, e.g. \
                     ECDHE-RSA-AES256-GCM-SHA384; OpenSSL keywords such as HIGH are not understood)"
                )
            })?;
            if (suite.version() == &rustls::version::TLS13) != is13 {
                return Err(format!(
                    "'{name}' is a TLS {} suite and does not belong in this list",
                    if is13 { "1.2" } else { "1.3" }
                ));
            }
            names.push(name.to_string());
        }
    }
    Ok(Some(names.join(":")))
}

/// The IANA names of the suites offered by default for TLS 1.3 (`tls13`) or TLS 1.2.
pub fn default_suite_names(tls13: bool) -> Vec<String> {
    aws_lc_rs::DEFAULT_CIPHER_SUITES
        .iter()
        .filter(|s| (s.version() == &rustls::version::TLS13) == tls13)
        .filter_map(|s| s.suite().as_str().map(str::to_string))
        .collect()
}

/// The protocol versions between `--tls-min` and `--tls-max`.
fn versions(args: &TlsSettings) -> Result<Vec<&'static SupportedProtocolVersion>> {
    if args.tls_min > args.tls_max {
        return Err(Error::Usage("--tls-min is above --tls-max".into()));
    }
    let mut out = Vec::new();
    if args.tls_min <= TlsVersion::Tls13 && args.tls_max >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    if args.tls_min <= TlsVersion::Tls12 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// Applies the fail-closed defaults; `None` means "accept any peer" (explicit --verify none).
///
/// `dialled` is the client's HOST (the default identity); a server has none.
fn policy(args: &TlsSettings, dialled: Option<&str>) -> Result<Option<Policy>> {
    let mode = match (args.verify, &args.ca) {
        (Some(mode), _) => mode,
        (None, Some(_)) => VerifyMode::Chain,
        (None, None) => {
            return Err(Error::Usage(
                "no --ca given: refusing to run without verifying the peer; pass --ca FILE|DIR, \
                 or --verify none to accept any peer (encryption without authentication)"
                    .into(),
            ));
        }
    };
    if mode != VerifyMode::None && args.ca.is_none() {
        return Err(Error::Usage(format!(
            "--verify {} needs --ca FILE|DIR",
            mode_name(mode)
        )));
    }
    if mode != VerifyMode::Identity && !args.peer_names.is_empty() {
        return Err(Error::Usage("--peer-name needs --verify identity".into()));
    }
    Ok(match mode {
        VerifyMode::None => None,
        VerifyMode::Chain => Some(Policy::chain()),
        VerifyMode::Pin => Some(Policy::pin()),
        VerifyMode::Identity => {
            let mut wanted = args.peer_names.clone();
            if wanted.is_empty() {
                match dialled {
                    Some(host) => wanted.push(host.to_string()),
                    None => {
                        return Err(Error::Usage(
                            "--verify identity on a listener needs --peer-name NAME (the client names to accept)".into(),
                        ));
                    }
                }
            }
            Some(Policy::identity(wanted))
        }
    })
}

fn mode_name(mode: VerifyMode) -> &'static str {
    match mode {
        VerifyMode::None => "none",
        VerifyMode::Chain => "chain",
        VerifyMode::Identity => "identity",
        VerifyMode::Pin => "pin",
    }
}

/// Verifies our own chain (`--cert`) against `--ca` (and `--crl`) as a peer would, for both
/// uses a node's certificate has in SST (server as joiner, client as donor); for `check`.
pub fn verify_own_chain(
    args: &TlsSettings,
    chain: &[CertificateDer<'static>],
) -> Result<(), String> {
    let (leaf, intermediates) = chain.split_first().ok_or("the certificate file is empty")?;
    let provider = provider(args).map_err(|e| e.to_string())?;
    // Only what judges a chain (CAs, CRLs): our own key and dates are checked on their own.
    let trust = TlsSettings {
        cert: None,
        key: None,
        ..args.clone()
    };
    for role in [PeerRole::Server, PeerRole::Client] {
        let prepared =
            Prepared::with_policy(&trust, Some(Policy::chain())).map_err(|e| e.to_string())?;
        let verifier = verifier(prepared, role, &provider).map_err(|e| e.to_string())?;
        verifier
            .check(leaf, intermediates, rustls::pki_types::UnixTime::now())
            .map_err(|e| e.0)?;
    }
    Ok(())
}

/// Turns the prepared material into the verifier for `role`.
fn verifier(prepared: Prepared, role: PeerRole, provider: &CryptoProvider) -> Result<PeerVerifier> {
    let mut anchors = Vec::with_capacity(prepared.trusted.len());
    for cert in &prepared.trusted {
        let anchor = webpki::anchor_from_trusted_cert(&cert.der)
            .map_err(|e| Error::file(&cert.path, format!("not a usable CA certificate: {e:?}")))?;
        anchors.push(anchor.to_owned());
    }
    Ok(PeerVerifier::new(
        prepared.policy.unwrap_or_else(Policy::any),
        role,
        prepared.trusted,
        anchors,
        prepared.ca_label,
        prepared.crls,
        provider.signature_verification_algorithms,
    ))
}

/// Loads our certificate and key, checks that they belong together, and flags certificates
/// that rustls-based peers will refuse.
pub fn identity(
    cert: &Path,
    key: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (chain, key_der) = pem::load_identity(cert, key)?;
    let key_label = key.unwrap_or(cert);
    let names = CertNames::parse(&chain[0])
        .ok_or_else(|| Error::file(cert, "first certificate is not valid X.509"))?;
    if names.is_v1 {
        return Err(Error::file(
            cert,
            "X.509 v1 certificate: rustls (and so sst-tunnel peers) refuse v1 end-entity \
             certificates; reissue it as v3 with a subjectAltName",
        ));
    }
    if names.is_ca {
        warn!(
            "{}: a CA certificate (CA:TRUE) used as a node certificate; sst-tunnel peers accept it \
             only with --verify pin; issue a separate node certificate from the CA",
            cert.display()
        );
    }
    match CertifiedKey::from_der(
        chain.clone(),
        key_der.clone_key(),
        &aws_lc_rs::default_provider(),
    ) {
        Ok(_) => Ok((chain, key_der)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(Error::file(
            key_label,
            format!(
                "private key does not match the certificate in {}",
                cert.display()
            ),
        )),
        Err(e) => Err(Error::file(key_label, format!("unusable private key: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names() {
        let iana = find_suite("TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(iana.suite(), rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        let openssl = find_suite("ecdhe-rsa-aes128-gcm-sha256").unwrap();
        assert_eq!(
            openssl.suite(),
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        assert!(find_suite("TLS13_CHACHA20_POLY1305_SHA256").is_some());
        assert!(find_suite("RC4-MD5").is_none());
    }
}
