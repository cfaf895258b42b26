//! `sst-tunnel check`: a pre-flight doctor for a node's SST certificate files.
//!
//! It runs every check a peer would (key matches certificate, chain to the CA for server and
//! client use, validity, revocation, names) plus the ones that bite later (expiry soon, a key
//! others can read, certificates other TLS stacks refuse), and prints one line per finding
//! with the fix, then a summary. Errors make the exit status non-zero.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cli::{CheckArgs, TlsArgs};
use crate::error::{Error, Result};
use crate::mycnf;
use crate::tls::{self, names::CertNames};

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
    let mut tls_args = TlsArgs::empty();
    tls_args.cert = args.cert.clone();
    tls_args.key = args.key.clone();
    tls_args.ca = args.ca.clone();
    tls_args.crl = args.crl.clone();
    tls_args.defaults_file = args.defaults_file.clone();
    tls_args.defaults_group_suffix = args.defaults_group_suffix.clone();
    tls_args.role = Some(args.role);
    mycnf::apply(&mut tls_args, args.role)?;
    let (Some(cert), Some(ca)) = (tls_args.cert.clone(), tls_args.ca.clone()) else {
        return Err(Error::Usage(
            "check needs a certificate and a CA: --cert and --ca, or an option file that names them"
                .into(),
        ));
    };
    if let Some(file) = &args.defaults_file {
        report.say(
            Level::Ok,
            format!(
                "{}: {} uses cert {}, key {}, CA {}",
                file.display(),
                match args.role {
                    crate::cli::Role::Donor => "the donor",
                    crate::cli::Role::Joiner => "the joiner",
                },
                cert.display(),
                tls_args.key.as_deref().unwrap_or(&cert).display(),
                ca.display()
            ),
        );
    }
    let key_path = tls_args.key.clone().unwrap_or_else(|| cert.clone());
    let key_path = key_path.as_path();
    check_key_mode(&mut report, key_path);
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
            return finish(report);
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
        Err(why) => report.say(Level::Error, why),
    }
    check_expiry(&mut report, &chain[0], args.warn_days);
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

fn finish(report: Report) -> Result<()> {
    println!(
        "summary: {} error{}, {} warning{}",
        report.errors,
        if report.errors == 1 { "" } else { "s" },
        report.warnings,
        if report.warnings == 1 { "" } else { "s" }
    );
    if report.errors > 0 {
        Err(Error::Cert(format!(
            "{} problem{} found (see above)",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        )))
    } else {
        Ok(())
    }
}

/// A private key others can read is a leaked key on a shared host.
fn check_key_mode(report: &mut Report, key: &Path) {
    let Ok(meta) = std::fs::metadata(key) else {
        return; // Loading reports the missing file.
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        report.say(
            Level::Warning,
            format!(
                "{}: private key is readable by every user (mode {mode:03o}); chmod 600 (or 640 \
                 with group mysql)",
                key.display()
            ),
        );
    }
}

/// Expired or not yet valid is an error (the chain check says so too); soon is a warning.
fn check_expiry(report: &mut Report, leaf: &[u8], warn_days: u32) {
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let not_after = cert.validity().not_after.timestamp();
    let days_left = (not_after - now) / 86_400;
    let until = tls::verify::format_unix(u64::try_from(not_after).unwrap_or(0));
    if not_after < now {
        report.say(Level::Error, format!("certificate expired at {until}"));
    } else if days_left < i64::from(warn_days) {
        report.say(
            Level::Warning,
            format!(
                "certificate expires in {days_left} days ({until}): renew it before an SST needs it"
            ),
        );
    } else {
        report.say(Level::Ok, format!("valid until {until} ({days_left} days)"));
    }
}
