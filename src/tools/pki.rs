//! A throwaway certificate authority made in memory with rcgen, for `selftest`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};

/// A certificate chain and its private key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A CA and two node certificates it signed.
pub struct Pki {
    /// The CA certificate.
    pub ca: CertificateDer<'static>,
    /// Server certificate for `localhost` / `127.0.0.1` / `::1`.
    pub server: Identity,
    /// Client certificate.
    pub client: Identity,
}

impl Pki {
    /// Generates a P-256 CA and leaf certificates valid for a day.
    pub fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate().map_err(rcgen_error)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sst-tunnel selftest CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(rcgen_error)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |cn: &str| -> Result<Identity> {
            let key = KeyPair::generate().map_err(rcgen_error)?;
            let names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            let mut params = CertificateParams::new(names).map_err(rcgen_error)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
            let key_der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
            Ok((vec![cert.der().clone()], key_der))
        };
        Ok(Self {
            ca: ca_cert.der().clone(),
            server: leaf("selftest-server")?,
            client: leaf("selftest-client")?,
        })
    }
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Internal(format!("generating certificates: {e}"))
}
