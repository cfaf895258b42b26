//! Reading certificates, keys and CRLs from PEM files and directories.
//!
//! Every error names the file it came from, so a DBA can tell which of the four `[sst]` paths
//! is wrong without reading a backtrace.

use std::fs;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, SectionKind};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::error::{Error, Result};
use crate::settings::files;

/// One PEM file split into the kinds of object we use.
#[derive(Default)]
pub struct PemFile {
    /// CERTIFICATE blocks, in file order.
    pub certs: Vec<CertificateDer<'static>>,
    /// Private key blocks, in file order.
    pub keys: Vec<PrivateKeyDer<'static>>,
    /// X509 CRL blocks, in file order.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// A trusted certificate and the file it was read from.
pub struct CaCert {
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Where it came from, for error messages.
    pub path: PathBuf,
}

/// Reads and splits one PEM file; a malformed block is an error naming the file.
pub fn read_pem(path: &Path) -> Result<PemFile> {
    let bytes = files::read_bytes(path, files::PEM_LIMIT)?;
    parse_pem(path, &bytes)
}

/// Splits PEM text into certificates, keys and CRLs.
pub fn parse_pem(path: &Path, bytes: &[u8]) -> Result<PemFile> {
    let mut out = PemFile::default();
    let mut rest: &[u8] = bytes;
    loop {
        match pem::from_buf(&mut rest) {
            Ok(Some((kind, der))) => match kind {
                SectionKind::Certificate => out.certs.push(CertificateDer::from(der)),
                SectionKind::PrivateKey => out.keys.push(PrivatePkcs8KeyDer::from(der).into()),
                SectionKind::RsaPrivateKey => out.keys.push(PrivatePkcs1KeyDer::from(der).into()),
                SectionKind::EcPrivateKey => out.keys.push(PrivateSec1KeyDer::from(der).into()),
                SectionKind::Crl => out.crls.push(CertificateRevocationListDer::from(der)),
                _ => {}
            },
            Ok(None) => return Ok(out),
            Err(err) => {
                return Err(Error::file(
                    path,
                    format!("malformed PEM: {}", pem_reason(&err)),
                ));
            }
        }
    }
}

/// Loads our certificate chain and private key; the key comes from `cert` when `key` is None.
pub fn load_identity(
    cert: &Path,
    key: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_file = read_pem(cert)?;
    if cert_file.certs.is_empty() {
        return Err(Error::file(cert, "no PEM CERTIFICATE block found (--cert)"));
    }
    let key_path = key.unwrap_or(cert);
    let mut keys = match key {
        Some(path) => read_pem(path)?.keys,
        None => cert_file.keys,
    };
    if keys.is_empty() {
        let hint = if key.is_some() {
            ""
        } else {
            "; name the key file (--key)"
        };
        return Err(Error::file(
            key_path,
            format!("no PEM private key block found{hint}"),
        ));
    }
    if keys.len() > 1 {
        return Err(Error::file(
            key_path,
            "holds more than one private key; keep exactly one",
        ));
    }
    Ok((cert_file.certs, keys.remove(0)))
}

/// Loads trusted certificates from a PEM bundle or from every PEM file in a directory.
///
/// A directory is read the way OpenSSL's CApath is filled: hashed names (`1a2b3c4d.0`) and
/// plain `*.pem` files alike; files holding no certificate (CRLs, keys, READMEs) are skipped.
pub fn load_ca(path: &Path) -> Result<Vec<CaCert>> {
    let meta = fs::metadata(path).map_err(|e| Error::file_io(path, &e))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        for file in dir_files(path)? {
            let Ok(bytes) = files::read_bytes(&file, files::PEM_LIMIT) else {
                continue;
            };
            if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                continue;
            }
            let parsed = parse_pem(&file, &bytes)?;
            out.extend(parsed.certs.into_iter().map(|der| CaCert {
                der,
                path: file.clone(),
            }));
        }
        if out.is_empty() {
            return Err(Error::file(
                path,
                "directory holds no PEM CERTIFICATE (--ca)",
            ));
        }
    } else {
        let parsed = read_pem(path)?;
        if parsed.certs.is_empty() {
            return Err(Error::file(path, "no PEM CERTIFICATE block found (--ca)"));
        }
        out.extend(parsed.certs.into_iter().map(|der| CaCert {
            der,
            path: path.to_path_buf(),
        }));
    }
    Ok(out)
}

/// Loads CRLs from a file (PEM or DER) or from every file in a directory, each with the file
/// it came from (so that an expired one can be named).
pub fn load_crls(path: &Path) -> Result<Vec<(PathBuf, CertificateRevocationListDer<'static>)>> {
    let meta = fs::metadata(path).map_err(|e| Error::file_io(path, &e))?;
    let files = if meta.is_dir() {
        dir_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in files {
        let bytes = files::read_bytes(&file, files::CRL_LIMIT)?;
        if bytes.first() == Some(&0x30) {
            out.push((file, CertificateRevocationListDer::from(bytes)));
        } else {
            let crls = parse_pem(&file, &bytes)?.crls;
            out.extend(crls.into_iter().map(|der| (file.clone(), der)));
        }
    }
    if out.is_empty() {
        return Err(Error::file(path, "no X509 CRL found (--crl)"));
    }
    Ok(out)
}

/// Regular files in `dir`, sorted so loading order (and so error messages) is stable.
fn dir_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::file_io(dir, &e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A short reason for a PEM syntax error, without dumping raw bytes.
fn pem_reason(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!(
                "missing '-----END {}-----' line",
                String::from_utf8_lossy(end_marker).trim()
            )
        }
        pem::Error::IllegalSectionStart { .. } => "bad '-----BEGIN' line".to_string(),
        pem::Error::Base64Decode(_) => "invalid base64 inside a PEM block".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_pem_names_the_file() {
        let text = b"-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n";
        let err = parse_pem(Path::new("/x/cert.pem"), text)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("/x/cert.pem: malformed PEM"), "{err}");
        let text = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        let err = parse_pem(Path::new("/x/c.pem"), text)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("missing '-----END CERTIFICATE-----' line"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_has_nothing() {
        let parsed = parse_pem(Path::new("/x"), b"hello\n").unwrap();
        assert!(parsed.certs.is_empty() && parsed.keys.is_empty() && parsed.crls.is_empty());
    }
}
