//! `sst-tunnel gen-certs`: a cluster CA and one certificate per node, ready for the SST
//! scripts' `[sst]` tca/tcert/tkey, plus the my.cnf snippet for each node.
//!
//! Certificates are what every peer in the SST world accepts: X.509 v3, P-256 ECDSA, the
//! node name as CN *and* DNS SAN (stunnel's checkHost and sst-tunnel ignore the CN beside a
//! DNS SAN; the scripts' VERIFY_IDENTITY sends the CN), the node's IPs as IP SANs, serverAuth
//! and clientAuth (a node is the server as joiner and the client as donor). Keys are written
//! 0600 and nothing is overwritten without `--force`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::cli::{GenCertsArgs, Node};
use crate::error::{Error, Result};

/// Writes the CA, the node certificates and the snippets; prints what to do next.
pub fn run(args: GenCertsArgs) -> Result<()> {
    let out = &args.out;
    fs::create_dir_all(out).map_err(|e| Error::file_io(out, &e))?;
    let mut files = vec![out.join("ca.pem"), out.join("ca-key.pem")];
    for node in &args.nodes {
        for suffix in ["-cert.pem", "-key.pem", "-sst.cnf"] {
            files.push(out.join(format!("{}{suffix}", node.name)));
        }
    }
    if !args.force
        && let Some(existing) = files.iter().find(|f| f.exists())
    {
        return Err(Error::file(
            existing,
            "already exists; pass --force to replace the whole set",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().map_err(rcgen_error)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, args.ca_name.as_str());
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::hours(1);
    ca.not_after = now + Duration::days(i64::from(args.ca_days));
    let ca_cert = ca.self_signed(&ca_key).map_err(rcgen_error)?;
    write(&out.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    write(
        &out.join("ca-key.pem"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    let issuer = Issuer::new(ca, ca_key);
    let abs = fs::canonicalize(out).map_err(|e| Error::file_io(out, &e))?;
    for node in &args.nodes {
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
        params.not_after = now + Duration::days(i64::from(args.days));
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
        let stem = |suffix: &str| out.join(format!("{}{suffix}", node.name));
        write(&stem("-cert.pem"), cert.pem().as_bytes(), 0o644)?;
        write(&stem("-key.pem"), key.serialize_pem().as_bytes(), 0o600)?;
        write(&stem("-sst.cnf"), snippet(&abs, node).as_bytes(), 0o644)?;
    }
    println!(
        "sst-tunnel: wrote a CA and {} node certificates to {}",
        args.nodes.len(),
        abs.display()
    );
    for node in &args.nodes {
        println!(
            "  {name}: {dir}/{name}-cert.pem, {dir}/{name}-key.pem; my.cnf snippet {dir}/{name}-sst.cnf",
            name = node.name,
            dir = abs.display()
        );
    }
    println!(
        "Copy ca.pem and each node's files to that node (keep ca-key.pem offline), make the key \
         readable by mysqld (chown mysql), and include its -sst.cnf in the server's option files."
    );
    Ok(())
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
        ca = path("ca.pem"),
        cert = path(&format!("{}-cert.pem", node.name)),
        key = path(&format!("{}-key.pem", node.name)),
    )
}

/// Writes a file with `mode`, replacing what is there (the caller checked --force).
fn write(path: &PathBuf, data: &[u8], mode: u32) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::file_io(path, &e))?;
    file.write_all(data).map_err(|e| Error::file_io(path, &e))
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Internal(format!("generating certificates: {e}"))
}
