//! `sst-tunnel gen-certs`: the cluster's CA directory over its whole life: first setup,
//! adding and renewing nodes from the same CA, and rotating the CA without an outage.
//!
//! Certificates are what every peer in the SST world accepts: X.509 v3, P-256 ECDSA, the
//! node name as CN *and* DNS SAN (stunnel's checkHost and sst-tunnel ignore the CN beside a
//! DNS SAN; the scripts' VERIFY_IDENTITY sends the CN), the node's IPs as IP SANs, serverAuth
//! and clientAuth (a node is the server as joiner and the client as donor).
//!
//! The directory holds `ca.pem` (what every node trusts: one CA, or during a rotation the old
//! and the new one), `ca-key.pem` (the key of the CA that signs now) and per node
//! `NAME-cert.pem`, `NAME-key.pem`, `NAME-sst.cnf`. A CA found there is always reused, so a
//! node added or renewed later is trusted by the nodes already running; replacing it is a
//! rotation (`--rotate-ca start`, renew every node, `--rotate-ca finish`), never a side effect.
//! Keys are written 0600, every file by rename so a node copying it never reads half of it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::tls::{names::CertNames, pem};
use clap::{Args, ValueEnum};
use std::net::IpAddr;

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

    /// Node certificate lifetime in days, 1 to 36500 (never past the CA's own end).
    #[arg(long, value_name = "DAYS", default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS))]
    pub days: u32,

    /// Lifetime in days of a CA made now, 1 to 36500.
    #[arg(long, value_name = "DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS))]
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

/// The longest lifetime gen-certs issues: a hundred years, far inside X.509's year 9999, so
/// no date arithmetic can overflow, whatever a command line asks.
const MAX_DAYS: i64 = 36_500;

/// File names inside the CA directory.
const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
/// The old CA's key, kept aside during a rotation and removed when it finishes.
const OLD_KEY_FILE: &str = "ca-old-key.pem";

/// Runs the step the flags ask for.
pub fn run(args: GenCertsArgs) -> Result<()> {
    if !args.out.exists() {
        // Ours from the start: nobody else may add or swap files in the CA directory.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.out)
            .map_err(|e| Error::file_io(&args.out, &e))?;
    }
    let dir = fs::canonicalize(&args.out).map_err(|e| Error::file_io(&args.out, &e))?;
    kept_by_us(&dir)?;
    let existing = CaDir::read(&dir)?;
    match (args.rotate_ca, existing) {
        (None, None) => {
            let ca = new_ca(&args, None)?;
            ca.write(&dir, &[])?;
            println!(
                "sst-tunnel: made a new CA '{}' in {}",
                ca.names.subject,
                dir.display()
            );
            issue(&args, &dir, &ca)
        }
        (None, Some(ca_dir)) => {
            if args.cluster.is_some() || args.ca_name.is_some() {
                return Err(Error::file(
                    &dir.join(CA_FILE),
                    format!(
                        "a CA is already here ('{}'); --cluster and --ca-name only name a new \
                         CA (to replace it, rotate: --rotate-ca start)",
                        ca_dir.signing.names.subject
                    ),
                ));
            }
            println!(
                "sst-tunnel: issuing from the CA in {}: '{}'",
                dir.join(CA_FILE).display(),
                ca_dir.signing.names.subject
            );
            issue(&args, &dir, &ca_dir.signing)
        }
        (Some(_), None) => Err(Error::file(
            &dir.join(CA_FILE),
            "no CA here to rotate; make one first (sst-tunnel gen-certs --out DIR --node NAME ...)",
        )),
        (Some(RotateStep::Start), Some(ca_dir)) => rotate_start(&args, &dir, ca_dir),
        (Some(RotateStep::Finish), Some(ca_dir)) => rotate_finish(&dir, ca_dir),
    }
}

/// Refuses a CA directory that another user could have planted a CA in, or could change: the
/// directory, `ca.pem` and `ca-key.pem` must belong to us and be writable by nobody else, and
/// the key readable by nobody else. A CA someone else put in place would let them mint
/// certificates the whole cluster accepts, and receive its snapshots.
fn kept_by_us(dir: &Path) -> Result<()> {
    let me = crate::settings::files::effective_uid();
    let check = |path: &Path, forbidden: u32, must: &str| -> Result<()> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::file_io(path, &e)),
        };
        let mode = meta.mode() & 0o777;
        let why = if meta.uid() != me {
            format!("belongs to uid {}, not to us (uid {me})", meta.uid())
        } else if mode & forbidden != 0 {
            format!("has mode {mode:03o}")
        } else {
            return Ok(());
        };
        Err(Error::file(
            path,
            format!(
                "{why}: refusing to use this CA directory, since another user could have put \
                 their own CA here and would then mint certificates the cluster trusts; if \
                 the files are yours, {must}, or use a new --out"
            ),
        ))
    };
    check(
        dir,
        0o022,
        &format!("chown $(id -u) {0} and chmod go-w {0}", dir.display()),
    )?;
    for (name, forbidden, fix) in [
        (CA_KEY_FILE, 0o077, "chmod 600"),
        (CA_FILE, 0o022, "chmod go-w"),
        (OLD_KEY_FILE, 0o077, "chmod 600"),
    ] {
        let path = dir.join(name);
        check(
            &path,
            forbidden,
            &format!("chown $(id -u) {0} and {fix} {0}", path.display()),
        )?;
    }
    Ok(())
}

/// A CA that can sign: its certificate, parsed names, and key.
struct SigningCa {
    der: CertificateDer<'static>,
    pem: String,
    names: CertNames,
    key: KeyPair,
}

impl SigningCa {
    /// Writes `ca.pem` (this CA after `others`, the bundle every node trusts) and its key.
    fn write(&self, dir: &Path, others: &[String]) -> Result<()> {
        let key_pem = Zeroizing::new(self.key.serialize_pem());
        write(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), 0o600)?;
        let mut bundle = others.concat();
        bundle.push_str(&self.pem);
        write(&dir.join(CA_FILE), bundle.as_bytes(), 0o644)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_der(&self.der, &self.key).map_err(rcgen_error)
    }
}

/// What the CA directory holds: the CA that signs, and every CA `ca.pem` trusts (two during a
/// rotation: the old one first).
struct CaDir {
    signing: SigningCa,
    trusted: Vec<(String, CertNames)>,
}

impl CaDir {
    /// `None` when the directory has no CA yet; an error when it has half of one, or a key
    /// that belongs to none of the certificates in `ca.pem`.
    fn read(dir: &Path) -> Result<Option<Self>> {
        let (ca_path, key_path) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
        match (ca_path.exists(), key_path.exists()) {
            (false, false) => return Ok(None),
            (true, false) => {
                return Err(Error::file(
                    &key_path,
                    format!(
                        "missing: {} has a CA but not its key, so no certificate can be issued \
                         that the cluster trusts; put the CA's key back (or use another --out)",
                        ca_path.display()
                    ),
                ));
            }
            (false, true) => {
                return Err(Error::file(
                    &ca_path,
                    format!(
                        "missing beside {}: put the CA certificate back (or use another --out)",
                        key_path.display()
                    ),
                ));
            }
            (true, true) => {}
        }
        let parsed = pem::read_pem(&ca_path)?;
        if parsed.certs.is_empty() {
            return Err(Error::file(&ca_path, "no PEM CERTIFICATE block found"));
        }
        let key_text = Zeroizing::new(
            String::from_utf8(crate::settings::files::read_bytes(
                &key_path,
                crate::settings::files::PEM_LIMIT,
            )?)
            .map_err(|_| Error::file(&key_path, "not a PEM private key"))?,
        );
        let key = KeyPair::from_pem(&key_text)
            .map_err(|e| Error::file(&key_path, format!("not a usable private key: {e}")))?;
        let mut trusted = Vec::new();
        let mut signing = None;
        for der in parsed.certs {
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| Error::file(&ca_path, format!("unparsable certificate: {e}")))?;
            let names = CertNames::parse(&der)
                .ok_or_else(|| Error::file(&ca_path, "unparsable certificate"))?;
            if !names.is_ca {
                return Err(Error::file(
                    &ca_path,
                    format!("'{}' is not a CA certificate", names.subject),
                ));
            }
            let pem_text = pem_block(&der);
            if cert.public_key().raw == key.subject_public_key_info().as_slice() {
                signing = Some(SigningCa {
                    der: der.clone(),
                    pem: pem_text.clone(),
                    names: names.clone(),
                    key: KeyPair::from_pem(&key_text).map_err(rcgen_error)?,
                });
            }
            trusted.push((pem_text, names));
        }
        let Some(signing) = signing else {
            return Err(Error::file(
                &key_path,
                format!(
                    "does not belong to the CA in {} ({}): the key and the certificate are from \
                     different CAs; put back the matching pair",
                    ca_path.display(),
                    trusted
                        .iter()
                        .map(|(_, n)| format!("'{}'", n.subject))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        Ok(Some(Self { signing, trusted }))
    }

    /// The CAs in `ca.pem` other than the one that signs: the old CA(s) during a rotation.
    fn others(&self) -> impl Iterator<Item = &(String, CertNames)> {
        self.trusted
            .iter()
            .filter(|(pem, _)| *pem != self.signing.pem)
    }
}

/// Makes a CA: named by `--ca-name`, else "<cluster> SST CA <random id>" so two clusters'
/// CAs, and a CA and its successor, never share a name. A rotation keeps the cluster name
/// (kept in the subject's O).
fn new_ca(args: &GenCertsArgs, previous: Option<&CertNames>) -> Result<SigningCa> {
    let cluster = args
        .cluster
        .clone()
        .or_else(|| previous.and_then(|p| p.organizations.first().cloned()));
    let name = match &args.ca_name {
        Some(name) => name.clone(),
        None => format!(
            "{} SST CA {}",
            cluster.as_deref().unwrap_or("Galera"),
            random_id()?
        ),
    };
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    if let Some(cluster) = &cluster {
        params
            .distinguished_name
            .push(DnType::OrganizationName, cluster.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, name.as_str());
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(args.ca_days).min(MAX_DAYS));
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    let der = cert.der().clone();
    let names =
        CertNames::parse(&der).ok_or_else(|| Error::Internal("new CA unparsable".into()))?;
    Ok(SigningCa {
        pem: cert.pem(),
        der,
        names,
        key,
    })
}

/// Eight hex digits from the system's CSPRNG.
fn random_id() -> Result<String> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness for the CA name".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Issues every `--node` from `ca`; nothing is written when any node's files exist and
/// `--renew` was not given.
fn issue(args: &GenCertsArgs, dir: &Path, ca: &SigningCa) -> Result<()> {
    if !args.renew {
        for node in &args.nodes {
            for suffix in ["-cert.pem", "-key.pem"] {
                let file = dir.join(format!("{}{suffix}", node.name));
                if file.exists() {
                    return Err(Error::file(
                        &file,
                        format!(
                            "already exists; pass --renew to issue {} a new certificate from the \
                             same CA",
                            node.name
                        ),
                    ));
                }
            }
        }
    }
    let nodes = if args.renew {
        args.nodes
            .iter()
            .map(|node| kept_addresses(dir, node))
            .collect::<Result<Vec<_>>>()?
    } else {
        args.nodes.clone()
    };
    let issuer = ca.issuer()?;
    let now = OffsetDateTime::now_utc();
    // A node certificate that outlives its CA would only fail later with a CA error.
    let ca_end = OffsetDateTime::from_unix_timestamp(ca.names.not_after)
        .map_err(|e| Error::Internal(format!("CA end date: {e}")))?;
    let mut not_after = now + Duration::days(i64::from(args.days).min(MAX_DAYS));
    if not_after > ca_end {
        not_after = ca_end;
        println!(
            "note: node certificates end with the CA on {} (sooner than --days {})",
            crate::tls::verify::format_unix(u64::try_from(ca.names.not_after).unwrap_or(0)),
            args.days
        );
    }
    for node in &nodes {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, node.name.as_str());
        params.subject_alt_names = std::iter::once(SanType::DnsName(
            node.name.clone().try_into().map_err(rcgen_error)?,
        ))
        .chain(node.ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - Duration::hours(1);
        params.not_after = not_after;
        // Names the CA's key: "issued by" is then a matter of keys, not of names (a CA made
        // again, or one that kept its name through a rotation, has the same name).
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
        let stem = |suffix: &str| dir.join(format!("{}{suffix}", node.name));
        let key_pem = Zeroizing::new(key.serialize_pem());
        if args.renew {
            // The replaced pair stays beside the new one, for a node that still runs with it
            // (or to go back): NAME-cert.pem.old, and the key as NAME-key.pem.old, 0600.
            keep_old(&stem("-key.pem"), 0o600)?;
            keep_old(&stem("-cert.pem"), 0o644)?;
        }
        // Key first: a copy taken in between has a new key and the old certificate, which
        // fails its key check loudly, never a certificate with someone else's key.
        write(&stem("-key.pem"), key_pem.as_bytes(), 0o600)?;
        write(&stem("-cert.pem"), cert.pem().as_bytes(), 0o644)?;
        write(&stem("-sst.cnf"), snippet(dir, node).as_bytes(), 0o644)?;
    }
    println!(
        "sst-tunnel: {} {} node certificate{} in {}",
        if args.renew { "renewed" } else { "wrote" },
        args.nodes.len(),
        if args.nodes.len() == 1 { "" } else { "s" },
        dir.display()
    );
    for node in &nodes {
        let ips: Vec<String> = node.ips.iter().map(|ip| format!(", IP:{ip}")).collect();
        println!(
            "  {name} (DNS:{name}{ips}): {dir}/{name}-cert.pem, {dir}/{name}-key.pem; my.cnf \
             snippet {dir}/{name}-sst.cnf{old}",
            name = node.name,
            ips = ips.concat(),
            dir = dir.display(),
            old = if args.renew {
                "; the replaced pair is kept as NAME-cert.pem.old and NAME-key.pem.old"
            } else {
                ""
            }
        );
    }
    println!(
        "Copy ca.pem and each node's files to that node (keep ca-key.pem off the nodes), make \
         the key readable by mysqld (chown mysql), and include its -sst.cnf in the server's \
         option files. Running nodes pick new files up at their next SST."
    );
    Ok(())
}

/// A renewed node keeps the addresses its current certificate names unless `--node` gives
/// new ones: `--renew --node node2` must not drop node2's `IP:` names (its peers dial it by
/// them), and `check` prints exactly that command.
fn kept_addresses(dir: &Path, node: &Node) -> Result<Node> {
    let current = dir.join(format!("{}-cert.pem", node.name));
    if !node.ips.is_empty() || !current.exists() {
        return Ok(node.clone());
    }
    let parsed = pem::read_pem(&current)?;
    let names = parsed
        .certs
        .first()
        .and_then(|der| CertNames::parse(der))
        .ok_or_else(|| Error::file(&current, "holds no parsable certificate to renew"))?;
    Ok(Node {
        name: node.name.clone(),
        ips: names.ips,
    })
}

/// Moves `path` (when there) to `path.old` with `mode`.
fn keep_old(path: &Path, mode: u32) -> Result<()> {
    let Ok(bytes) = fs::read(path) else {
        return Ok(());
    };
    let bytes = Zeroizing::new(bytes);
    let mut old = path.as_os_str().to_owned();
    old.push(".old");
    write(Path::new(&old), &bytes, mode)
}

/// Rotation step 1: a new CA beside the old one. `ca.pem` becomes the bundle (old, then
/// new) that every node installs first; from now on certificates come from the new CA.
fn rotate_start(args: &GenCertsArgs, dir: &Path, ca_dir: CaDir) -> Result<()> {
    if ca_dir.trusted.len() > 1 {
        return Err(Error::file(
            &dir.join(CA_FILE),
            format!(
                "holds {} CAs: a rotation is already under way; renew every node, then \
                 finish it (--rotate-ca finish)",
                ca_dir.trusted.len()
            ),
        ));
    }
    let old = ca_dir.signing;
    let new = new_ca(args, Some(&old.names))?;
    if new.names.subject == old.names.subject {
        // Nodes, OpenSSL and logs tell CAs apart by name first; two CAs of one name in one
        // bundle would make every certificate's issuer ambiguous until the rotation ends.
        return Err(Error::Usage(format!(
            "--rotate-ca start: the new CA would have the old CA's name '{}'; give it another \
             (--ca-name \"...\"), or leave --ca-name out for a unique one",
            old.names.subject
        )));
    }
    let old_key = Zeroizing::new(old.key.serialize_pem());
    write(&dir.join(OLD_KEY_FILE), old_key.as_bytes(), 0o600)?;
    new.write(dir, std::slice::from_ref(&old.pem))?;
    println!(
        "sst-tunnel: CA rotation step 1 of 3: made the new CA '{}'; {} now trusts it and the \
         old CA '{}'.",
        new.names.subject,
        dir.join(CA_FILE).display(),
        old.names.subject
    );
    println!(
        "  1. Install this ca.pem on every node, over the CA file its my.cnf names (tca / ssl-ca). \
         SSTs keep working: the bundle trusts both CAs.\n  \
         2. Then renew every node from the new CA: sst-tunnel gen-certs --out {dir} --renew \
         --node NAME[=IP,...] ..., and install each node's new certificate and key.\n  \
         3. When every node holds a certificate from the new CA (sst-tunnel check says \
         step 2 of 3 on each): sst-tunnel gen-certs --out {dir} --rotate-ca finish, and \
         install the new ca.pem on every node.",
        dir = dir.display()
    );
    Ok(())
}

/// Rotation step 3: drop the old CA. Refused while a node certificate in the directory still
/// comes from it, since that node's next SST would fail once its peers trust only the new CA.
fn rotate_finish(dir: &Path, ca_dir: CaDir) -> Result<()> {
    let old: Vec<&CertNames> = ca_dir.others().map(|(_, n)| n).collect();
    if old.is_empty() {
        return Err(Error::file(
            &dir.join(CA_FILE),
            "holds one CA: no rotation is under way (start one with --rotate-ca start)",
        ));
    }
    // Every node certificate here must be signed by the new CA's key before the old CA can
    // go; one that cannot be read or parsed could be a node still on the old CA, so it stops
    // the step too.
    let mut stale = Vec::new();
    for path in node_certs(dir)? {
        let parsed = pem::read_pem(&path).map_err(|e| {
            Error::file(
                &path,
                format!(
                    "cannot be read ({e}), so it is unknown whether that node still needs the \
                     old CA; fix or remove the file, then finish the rotation"
                ),
            )
        })?;
        let Some(names) = parsed.certs.first().and_then(|d| CertNames::parse(d)) else {
            return Err(Error::file(
                &path,
                "holds no parsable certificate, so it is unknown whether that node still needs \
                 the old CA; fix or remove the file, then finish the rotation",
            ));
        };
        if !names.issued_by(&ca_dir.signing.names) {
            stale.push((path, names));
        }
    }
    if let Some((_, first)) = stale.first() {
        let files: Vec<String> = stale
            .iter()
            .map(|(path, _)| path.display().to_string())
            .collect();
        let nodes: Vec<String> = stale
            .iter()
            .map(|(_, n)| format!("--node {}", n.node_spec()))
            .collect();
        return Err(Error::file(
            dir,
            format!(
                "still issued by the old CA '{}': {}; renew {} first (sst-tunnel gen-certs --out \
                 {} --renew {}) and install the new files on {}, or remove the files of a node \
                 that has left the cluster",
                first.issuer,
                files.join(", "),
                if stale.len() == 1 { "it" } else { "them" },
                dir.display(),
                nodes.join(" "),
                if stale.len() == 1 {
                    "that node"
                } else {
                    "those nodes"
                },
            ),
        ));
    }
    ca_dir.signing.write(dir, &[])?;
    match fs::remove_file(dir.join(OLD_KEY_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file_io(&dir.join(OLD_KEY_FILE), &e)),
    }
    println!(
        "sst-tunnel: CA rotation step 3 of 3: {} now trusts only '{}' (dropped '{}', and the old \
         CA's key). Install this ca.pem on every node; the rotation is done.",
        dir.join(CA_FILE).display(),
        ca_dir.signing.names.subject,
        old.iter()
            .map(|n| n.subject.as_str())
            .collect::<Vec<_>>()
            .join("', '"),
    );
    Ok(())
}

/// Every `NAME-cert.pem` in the directory, sorted.
fn node_certs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::file_io(dir, &e))? {
        let path = entry.map_err(|e| Error::file_io(dir, &e))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("-cert.pem"))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The option-file snippet for one node: the SST scripts' legacy `[sst]` names, which both
/// rsync and mariabackup SST read first (contract 1.3).
fn snippet(dir: &Path, node: &Node) -> String {
    let path = |file: &str| dir.join(file).display().to_string();
    format!(
        "# Galera SST over TLS for {name}, written by sst-tunnel gen-certs.\n\
         # Files are where gen-certs wrote them; adjust the paths if you copy them elsewhere.\n\
         [sst]\n\
         tca={ca}\n\
         tcert={cert}\n\
         tkey={key}\n\
         # mariabackup SST: TLS with a mandatory CA (socat/sst-tunnel verify the chain).\n\
         encrypt=4\n\
         # Verify the peer's certificate chain (rsync SST: stunnel verifyChain).\n\
         ssl-mode=VERIFY_CA\n",
        name = node.name,
        ca = path(CA_FILE),
        cert = path(&format!("{}-cert.pem", node.name)),
        key = path(&format!("{}-key.pem", node.name)),
    )
}

/// One certificate as a PEM block.
fn pem_block(der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new("CERTIFICATE", der.to_vec()),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// Writes a file with `mode` under a temporary name, then renames it over `path`, so a reader
/// sees the old file or the new one, never part of either.
fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::file_io(&tmp, &e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::file_io(&tmp, &e))?;
    fs::rename(&tmp, path).map_err(|e| Error::file_io(path, &e))
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Internal(format!("generating certificates: {e}"))
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
}
