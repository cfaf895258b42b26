//! `sst-tunnel check`: a pre-flight doctor for a node's SST certificate files.
//!
//! It runs every check a peer would (key matches certificate, chain to the CA for server and
//! client use, validity, revocation, names) plus the ones that bite later (expiry soon, a key
//! others can read, certificates other TLS stacks refuse), and prints one line per finding
//! with the fix, then a summary. Errors make the exit status non-zero.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::settings::mycnf;
use crate::settings::{Role, TlsSettings};
use crate::tls::verify::unix_now;
use crate::tls::{self, names::CertNames};
use clap::Args;

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

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warning,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// Collected findings, printed as they come.
#[derive(Default)]
struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
    fn say(&mut self, level: Level, text: impl fmt::Display) {
        match level {
            Level::Error => self.errors += 1,
            Level::Warning => self.warnings += 1,
            Level::Ok => {}
        }
        println!("{level}: {text}");
    }
}

/// Runs every check and prints the report; fails (exit 3) when any check is an error.
pub fn run(args: CheckArgs) -> Result<()> {
    let mut report = Report::default();
    let mut tls_args = TlsSettings {
        cert: args.cert.clone(),
        key: args.key.clone(),
        ca: args.ca.clone(),
        crl: args.crl.clone(),
        defaults_file: args.defaults_file.clone(),
        defaults_group_suffix: args.defaults_group_suffix.clone(),
        role: Some(args.role),
        ..TlsSettings::default()
    };
    for warning in mycnf::apply_and_lint(&mut tls_args, args.role)? {
        report.say(Level::Warning, warning);
    }
    let (Some(cert), Some(ca)) = (tls_args.cert.clone(), tls_args.ca.clone()) else {
        return Err(match &args.defaults_file {
            Some(file) => Error::file(
                file,
                format!(
                    "names no {} for the {}: set tcert/tkey/tca in [sst] (or ssl-cert/ssl-key/ssl-ca)",
                    match (tls_args.cert.is_some(), tls_args.ca.is_some()) {
                        (false, false) => "certificate and no CA",
                        (false, true) => "certificate",
                        _ => "CA",
                    },
                    match args.role {
                        Role::Donor => "donor",
                        Role::Joiner => "joiner",
                    }
                ),
            ),
            None => Error::Usage(
                "check needs a certificate and a CA: --cert and --ca, or an option file that names them"
                    .into(),
            ),
        });
    };
    if let Some(file) = &args.defaults_file {
        report.say(
            Level::Ok,
            format!(
                "{}: {} uses cert {}, key {}, CA {}",
                file.display(),
                match args.role {
                    Role::Donor => "the donor",
                    Role::Joiner => "the joiner",
                },
                cert.display(),
                tls_args.key.as_deref().unwrap_or(&cert).display(),
                ca.display()
            ),
        );
    }
    let key_path = tls_args.key.clone().unwrap_or_else(|| cert.clone());
    let key_path = key_path.as_path();
    check_exposure(&mut report, &cert, tls_args.key.as_deref(), &ca);
    let chain = match tls::identity(&cert, tls_args.key.as_deref()) {
        Ok((chain, _key)) => {
            report.say(
                Level::Ok,
                format!(
                    "{}: private key matches the certificate",
                    key_path.display()
                ),
            );
            chain
        }
        Err(e) => {
            report.say(Level::Error, e);
            // The key is one problem; the certificate and its chain may have others: check
            // them too, from the certificate file alone.
            match tls::pem::read_pem(&cert) {
                Ok(parsed) if !parsed.certs.is_empty() => parsed.certs,
                _ => return finish(report),
            }
        }
    };
    let names = CertNames::parse(&chain[0]).unwrap_or_default();
    report.say(
        Level::Ok,
        format!(
            "{}: '{}' issued by '{}' ({})",
            cert.display(),
            names.subject,
            names.issuer,
            names.describe_all()
        ),
    );
    if names.is_ca {
        report.say(
            Level::Error,
            "the node certificate is a CA certificate (CA:TRUE): rustls peers refuse it unless \
             pinned; issue a node certificate from the CA (sst-tunnel gen-certs)",
        );
    }
    match tls::verify_own_chain(&tls_args, &chain) {
        Ok(()) => report.say(
            Level::Ok,
            format!(
                "chain verifies against {} for server (joiner) and client (donor) use",
                ca.display()
            ),
        ),
        // A certificate out of its dates is said once, by check_expiry below with the
        // renewal command, not once more as a chain failure.
        Err(why) if !names.valid_at(unix_now()) && is_about_dates(&why.to_string()) => {}
        Err(why) => report.say(Level::Error, why),
    }
    check_expiry(&mut report, &names, &ca, args.warn_days);
    report_cas(&mut report, &ca, &names, args.warn_days);
    if names.dns.is_empty() && names.ips.is_empty() {
        report.say(
            Level::Warning,
            "no subjectAltName: stunnel's checkHost and sst-tunnel fall back to the CN, but \
             many TLS clients ignore CNs; reissue with DNS/IP SANs (sst-tunnel gen-certs)",
        );
    }
    for wanted in &args.peer_names {
        if names.matches(wanted) {
            report.say(Level::Ok, format!("certificate names '{wanted}'"));
        } else {
            report.say(
                Level::Error,
                format!(
                    "certificate does not name '{wanted}' ({}; stunnel checkHost and \
                     --verify identity look at SANs first, the CN only without SANs)",
                    names.describe()
                ),
            );
        }
    }
    report_kernel_tls(&mut report);
    finish(report)
}

/// Which copy path SSTs on this host will take: not a problem either way, but a DBA
/// comparing hosts wants to see it (and how to turn the fast path on).
fn report_kernel_tls(report: &mut Report) {
    use crate::fastpath::{Cipher, ktls_probe};
    let ciphers = [
        (Cipher::Aes128Gcm, "AES-128-GCM"),
        (Cipher::Aes256Gcm, "AES-256-GCM"),
        (Cipher::Chacha20Poly1305, "ChaCha20-Poly1305"),
    ];
    let mut usable = Vec::new();
    let mut why = String::new();
    for (cipher, name) in ciphers {
        match ktls_probe(cipher) {
            Ok(()) => usable.push(name),
            Err(e) => why = e,
        }
    }
    if usable.is_empty() {
        report.say(
            Level::Ok,
            format!(
                "kernel TLS unavailable here ({why}): SSTs use the buffered rustls path; \
                 `modprobe tls` (the packages load it at boot) enables the kTLS + splice path"
            ),
        );
    } else {
        report.say(
            Level::Ok,
            format!(
                "kernel TLS available for {}: SSTs hand the connection to the kernel \
                 (kTLS + splice) unless --no-ktls",
                usable.join(", ")
            ),
        );
    }
}

/// Whether a chain failure is about validity dates.
fn is_about_dates(text: &str) -> bool {
    text.contains("expired at") || text.contains("is not valid before")
}

fn finish(report: Report) -> Result<()> {
    println!(
        "summary: {} error{}, {} warning{}",
        report.errors,
        if report.errors == 1 { "" } else { "s" },
        report.warnings,
        if report.warnings == 1 { "" } else { "s" }
    );
    if report.errors > 0 {
        Err(Error::Check(format!(
            "check found {} problem{} (see above)",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        )))
    } else {
        Ok(())
    }
}

/// Files another user could replace (a CA, certificate or key they could swap for their own)
/// or read (a key) are errors: on a shared host either hands that user the SST.
fn check_exposure(report: &mut Report, cert: &Path, key: Option<&Path>, ca: &Path) {
    let problems = crate::settings::files::trust_exposure(Some(cert), key, Some(ca));
    if problems.is_empty() {
        report.say(
            Level::Ok,
            "certificate, key and CA files are writable only by their owner, the key readable \
             by no other user",
        );
    }
    for problem in problems {
        report.say(Level::Error, problem);
    }
}

/// Expired is an error (the chain check says so too); soon is a warning that gives the
/// command that renews this node from the same CA.
fn check_expiry(report: &mut Report, leaf: &CertNames, ca: &Path, warn_days: u32) {
    let now = unix_now();
    let days_left = (leaf.not_after - now) / 86_400;
    let until = tls::verify::format_unix(u64::try_from(leaf.not_after).unwrap_or(0));
    if leaf.not_after < now {
        report.say(
            Level::Error,
            format!(
                "certificate expired at {until}; renew it: {}",
                renew_command(leaf, ca)
            ),
        );
    } else if leaf.not_before > now {
        report.say(
            Level::Error,
            format!(
                "certificate is not valid before {} (check this host's clock, or renew it: {})",
                tls::verify::format_unix(u64::try_from(leaf.not_before).unwrap_or(0)),
                renew_command(leaf, ca)
            ),
        );
    } else if days_left < i64::from(warn_days) {
        report.say(
            Level::Warning,
            format!(
                "certificate expires in {days_left} days ({until}): renew it before an SST needs \
                 it: {}",
                renew_command(leaf, ca)
            ),
        );
    } else {
        report.say(Level::Ok, format!("valid until {until} ({days_left} days)"));
    }
}

/// `gen-certs --renew` for this node: its CN and IP SANs, from the CA directory.
fn renew_command(leaf: &CertNames, ca: &Path) -> String {
    format!(
        "sst-tunnel gen-certs --out {} --renew --node {}{}",
        ca_dir_hint(ca),
        leaf.node_spec(),
        ca_dir_note(ca)
    )
}

/// The CA directory, when the CA file sits beside the CA's key (the admin host); else a
/// placeholder that [`ca_dir_note`] explains.
fn ca_dir_hint(ca: &Path) -> String {
    ca.parent()
        .filter(|d| ca.is_file() && d.join("ca-key.pem").is_file())
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "CA_DIR".to_string())
}

fn ca_dir_note(ca: &Path) -> &'static str {
    if ca_dir_hint(ca) == "CA_DIR" {
        " (CA_DIR: where the cluster's ca-key.pem is kept)"
    } else {
        ""
    }
}

/// The CAs the node trusts, by name and key (so two clusters' CAs, or a CA and its successor,
/// can be told apart), their expiry, and where a CA rotation stands on this node: one CA is
/// the steady state; two are the transition bundle, and the issuer of the node's own
/// certificate says whether it is still to be renewed (step 1) or ready for the end (step 2).
fn report_cas(report: &mut Report, ca_path: &Path, leaf: &CertNames, warn_days: u32) {
    let Ok(loaded) = tls::pem::load_ca(ca_path) else {
        return; // The chain check has reported why.
    };
    let cas: Vec<CertNames> = loaded
        .iter()
        .filter_map(|c| CertNames::parse(&c.der))
        .filter(|n| n.is_ca)
        .collect();
    let now = unix_now();
    for ca in &cas {
        let until = tls::verify::format_unix(u64::try_from(ca.not_after).unwrap_or(0));
        report.say(
            Level::Ok,
            format!(
                "{} trusts the CA '{}' (key {}, valid until {until})",
                ca_path.display(),
                ca.subject,
                CertNames::short_key_id(ca.subject_key_id.as_deref()),
            ),
        );
        if ca.not_after >= now && (ca.not_after - now) / 86_400 < i64::from(warn_days) {
            report.say(
                Level::Warning,
                format!(
                    "the CA '{}' expires in {} days ({until}): rotate it before then \
                     (sst-tunnel gen-certs --out {} --rotate-ca start; see README, \
                     Certificate lifecycle)",
                    ca.subject,
                    (ca.not_after - now) / 86_400,
                    ca_dir_hint(ca_path)
                ),
            );
        }
    }
    if cas.len() < 2 {
        return;
    }
    let Some(issuer) = cas.iter().find(|ca| leaf.issued_by(ca)) else {
        return; // Not issued by any of them: the chain check has said so.
    };
    let newest = cas.iter().max_by_key(|ca| ca.not_before).unwrap_or(issuer);
    if std::ptr::eq(issuer, newest) {
        report.say(
            Level::Ok,
            format!(
                "CA rotation, step 2 of 3 on this node: it trusts the old and the new CA and \
                 holds a certificate from the new CA '{}'; once every node is here, finish \
                 (sst-tunnel gen-certs --out {} --rotate-ca finish) and install the new \
                 ca.pem on every node",
                newest.subject,
                ca_dir_hint(ca_path)
            ),
        );
    } else {
        report.say(
            Level::Ok,
            format!(
                "CA rotation, step 1 of 3 on this node: it trusts the old and the new CA and \
                 still holds a certificate from the old CA '{}'; next, install a certificate \
                 from the new CA '{}': {}",
                issuer.subject,
                newest.subject,
                renew_command(leaf, ca_path)
            ),
        );
    }
}
