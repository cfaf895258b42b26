//! Peer certificate verification: one verifier for both roles, four policies.
//!
//! rustls' stock verifiers cover `chain`, but SST needs more: stunnel's `verifyPeer` pinning,
//! OpenSSL-style CN fallback for identity checks, and messages a DBA can act on. So this module
//! drives rustls-webpki directly for chain building and revocation, and does the rest itself.
//! Handshake signatures are always checked, whatever the policy.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature};
use rustls::pki_types::TrustAnchor;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use webpki::{EndEntityCert, KeyUsage, OwnedCertRevocationList};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use super::names::CertNames;
use super::pem::CaCert;

/// What the peer's certificate must satisfy. The parts combine: stunnel's `verifyChain` plus
/// `verifyPeer` asks for both a chain and a pinned leaf, `verifyPeer` plus `checkHost` for a
/// pinned leaf with the right name, socat's `commonname` for a chain and a name.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// A valid chain to a trusted CA, not revoked.
    pub chain: bool,
    /// The peer's own certificate must be one of the trusted certificates (stunnel's
    /// `verifyPeer`); issuer chains do not matter.
    pub pin: bool,
    /// One of these names (DNS or IP) must name the peer; empty means no name check.
    pub names: Vec<String>,
    /// How `names` are compared with the certificate.
    pub rule: NameRule,
}

/// How a wanted name is compared with a certificate's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NameRule {
    /// OpenSSL's `X509_check_host` (stunnel `checkHost`, `--peer-name`): SANs of the type
    /// first, the CN only without such SANs, case-insensitive.
    #[default]
    OpenSsl,
    /// socat's `commonname`: case-sensitive, the CN accepted even beside DNS SANs.
    Socat,
}

impl Policy {
    /// Anything (the handshake signature is still checked against the presented key).
    pub fn any() -> Self {
        Self::default()
    }

    /// A chain to a trusted CA, no name check.
    pub fn chain() -> Self {
        Self {
            chain: true,
            ..Self::default()
        }
    }

    /// A pinned leaf.
    pub fn pin() -> Self {
        Self {
            pin: true,
            ..Self::default()
        }
    }

    /// A chain, and one of `names` (OpenSSL rule).
    pub fn identity(names: Vec<String>) -> Self {
        Self {
            chain: true,
            names,
            ..Self::default()
        }
    }

    /// True when nothing about the peer is checked.
    pub fn is_any(&self) -> bool {
        !self.chain && !self.pin && self.names.is_empty()
    }
}

/// Which side of the handshake is being verified, for usage checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// We are the client, checking the server.
    Server,
    /// We are the server, checking a client.
    Client,
}

/// A certificate problem, worded for the log; carried through rustls as `CertificateError::Other`.
#[derive(Debug)]
pub struct PeerCertError(pub String);

impl fmt::Display for PeerCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerCertError {}

/// One certificate revocation list from `--crl`, with what the messages need: its issuer's
/// name, when it expires and the file it came from.
#[derive(Debug, Clone)]
pub struct Crl {
    list: OwnedCertRevocationList,
    issuer: String,
    issuer_der: Vec<u8>,
    revoked: Vec<Vec<u8>>,
    next_update: i64,
    file: PathBuf,
}

impl Crl {
    /// Parses one DER CRL read from `file`; the error says what is wrong with it.
    pub fn parse(file: PathBuf, der: &[u8]) -> Result<Self, String> {
        let list = OwnedCertRevocationList::from_der(der).map_err(|e| format!("{e:?}"))?;
        let (_, parsed) = CertificateRevocationList::from_der(der).map_err(|e| e.to_string())?;
        // webpki refuses a CRL without nextUpdate, so this is always there once it parsed.
        let next_update = parsed
            .next_update()
            .map(|t| t.timestamp())
            .ok_or("no nextUpdate")?;
        Ok(Self {
            list,
            issuer: parsed.issuer().to_string(),
            issuer_der: parsed.issuer().as_raw().to_vec(),
            revoked: parsed
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
            next_update,
            file,
        })
    }

    /// Whether this CRL is the one `issuer` (a DER name as x509-parser gives it) publishes.
    fn issued_by(&self, issuer: &[u8]) -> bool {
        self.issuer_der == issuer
    }

    /// Whether it lists `serial` (raw, as x509-parser gives it) as revoked.
    fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked.iter().any(|r| r == serial)
    }

    fn expired_message(&self) -> String {
        format!(
            "the CRL from '{}' in {} expired at {} (--crl); fetch a fresh CRL",
            self.issuer,
            self.file.display(),
            format_unix(u64::try_from(self.next_update).unwrap_or(0))
        )
    }
}

/// The refusal of a certificate whose extendedKeyUsage does not allow its role.
fn lacks_eku(who: &str, subject: &str) -> String {
    format!(
        "{who} certificate '{subject}' lacks extendedKeyUsage {} (reissue it with serverAuth and \
         clientAuth)",
        if who == "server" {
            "serverAuth"
        } else {
            "clientAuth"
        }
    )
}

/// The verifier installed in both client and server configs.
pub struct PeerVerifier {
    policy: Policy,
    role: PeerRole,
    anchors: Vec<TrustAnchor<'static>>,
    trusted: Vec<CaCert>,
    ca_label: String,
    crls: Vec<Crl>,
    algs: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl PeerVerifier {
    /// Builds a verifier; `anchors` are made from `trusted` by the caller (so that errors can
    /// name the file), `ca_label` is the --ca path as the user wrote it.
    pub fn new(
        policy: Policy,
        role: PeerRole,
        trusted: Vec<CaCert>,
        anchors: Vec<TrustAnchor<'static>>,
        ca_label: String,
        crls: Vec<Crl>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        let hints = trusted
            .iter()
            .filter_map(|ca| X509Certificate::from_der(&ca.der).ok())
            .map(|(_, cert)| DistinguishedName::from(cert.subject().as_raw().to_vec()))
            .collect();
        Self {
            policy,
            role,
            anchors,
            trusted,
            ca_label,
            crls,
            algs,
            hints,
        }
    }

    /// Applies the policy to a presented chain.
    pub(crate) fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), PeerCertError> {
        let names = CertNames::parse(end_entity).unwrap_or_default();
        let who = match self.role {
            PeerRole::Server => "server",
            PeerRole::Client => "client",
        };
        let subject = if names.subject.is_empty() {
            "?"
        } else {
            names.subject.as_str()
        };
        let policy = &self.policy;
        if policy.pin {
            self.check_pinned(end_entity, now, who, subject)?;
        }
        if policy.chain {
            self.check_chain(end_entity, intermediates, now, who, &names)?;
        }
        if policy.names.is_empty() {
            return Ok(());
        }
        let matched = match policy.rule {
            NameRule::OpenSsl => policy.names.iter().any(|w| names.matches(w)),
            NameRule::Socat => policy.names.iter().any(|w| names.matches_socat(w)),
        };
        if matched {
            return Ok(());
        }
        let described = match policy.rule {
            NameRule::OpenSsl => names.describe(),
            NameRule::Socat => names.describe_all(),
        };
        Err(PeerCertError(format!(
            "{who} certificate '{subject}' ({described}) matches none of the expected names: {} \
             (check the expected name, or reissue the certificate with the right subjectAltName)",
            policy.names.join(", ")
        )))
    }

    /// stunnel `verifyPeer`: the leaf itself must be trusted; issuer chains do not matter.
    fn check_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
        who: &str,
        subject: &str,
    ) -> Result<(), PeerCertError> {
        if !self
            .trusted
            .iter()
            .any(|ca| ca.der.as_ref() == end_entity.as_ref())
        {
            return Err(PeerCertError(format!(
                "{who} certificate '{subject}' is not in {} (pinning, as stunnel's verifyPeer: add \
                 the node certificates themselves to that bundle, or verify the chain instead: \
                 --verify chain, ssl-mode=VERIFY_CA)",
                self.ca_label
            )));
        }
        let Ok((_, cert)) = X509Certificate::from_der(end_entity) else {
            return Err(PeerCertError(format!(
                "{who} certificate is not valid X.509"
            )));
        };
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = cert.validity();
        if secs > validity.not_after.timestamp() {
            return Err(PeerCertError(format!(
                "{who} certificate '{subject}' expired at {}",
                format_unix(u64::try_from(validity.not_after.timestamp()).unwrap_or(0))
            )));
        }
        if secs < validity.not_before.timestamp() {
            return Err(PeerCertError(format!(
                "{who} certificate '{subject}' is not valid before {} (check both clocks)",
                format_unix(u64::try_from(validity.not_before.timestamp()).unwrap_or(0))
            )));
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            let eku = eku.value;
            let wanted = match self.role {
                PeerRole::Server => eku.server_auth,
                PeerRole::Client => eku.client_auth,
            };
            // As webpki in chain mode: an EKU extension must name the role (or anyEKU).
            if !wanted && !eku.any {
                return Err(PeerCertError(lacks_eku(who, subject)));
            }
        }
        self.check_revocation_pinned(&cert, secs, who, subject)
    }

    /// `--crl` for a pinned leaf: its issuer's CRL must be there, be current and not list it.
    /// (webpki is not involved: a pinned leaf has no chain for it to walk.)
    fn check_revocation_pinned(
        &self,
        cert: &X509Certificate<'_>,
        now: i64,
        who: &str,
        subject: &str,
    ) -> Result<(), PeerCertError> {
        if self.crls.is_empty() {
            return Ok(());
        }
        let issuer = cert.issuer().as_raw();
        let from_issuer: Vec<&Crl> = self.crls.iter().filter(|c| c.issued_by(issuer)).collect();
        if from_issuer.is_empty() {
            return Err(self.no_crl_for(who, subject, &cert.issuer().to_string()));
        }
        if let Some(expired) = from_issuer.iter().find(|c| now >= c.next_update) {
            return Err(PeerCertError(expired.expired_message()));
        }
        if from_issuer.iter().any(|c| c.revokes(cert.raw_serial())) {
            return Err(PeerCertError(format!(
                "{who} certificate '{subject}' is revoked (--crl)"
            )));
        }
        Ok(())
    }

    /// The policy for a CRL set that does not cover the peer: with `--crl` given, the issuer of
    /// the peer's certificate must have published one of them. Accepting the peer anyway
    /// (webpki's `UnknownStatusPolicy::Allow`) would turn a wrong CRL file into no revocation
    /// checking at all, silently; OpenSSL's CRL checking fails the same way.
    fn no_crl_for(&self, who: &str, subject: &str, issuer: &str) -> PeerCertError {
        PeerCertError(format!(
            "{who} certificate '{subject}' cannot be checked for revocation: no CRL in --crl is \
             from its issuer '{issuer}' (add that CA's CRL)"
        ))
    }

    /// Chain building and revocation through webpki, with errors reworded.
    fn check_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        who: &str,
        names: &CertNames,
    ) -> Result<(), PeerCertError> {
        let subject = names.subject.as_str();
        let usage = match self.role {
            PeerRole::Server => KeyUsage::server_auth(),
            PeerRole::Client => KeyUsage::client_auth(),
        };
        let cert = EndEntityCert::try_from(end_entity)
            .map_err(|e| self.explain(e, who, subject, names, end_entity))?;
        let crl_refs: Vec<webpki::CertRevocationList<'_>> = self
            .crls
            .iter()
            .map(|c| webpki::CertRevocationList::from(c.list.clone()))
            .collect();
        let crl_ptrs: Vec<&webpki::CertRevocationList<'_>> = crl_refs.iter().collect();
        // Every certificate in the chain is checked against its issuer's CRL when that CRL is
        // given (a revoked intermediate is refused); the leaf's issuer must have one (below).
        let revocation = match webpki::RevocationOptionsBuilder::new(&crl_ptrs) {
            Ok(builder) => Some(
                builder
                    .with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build(),
            ),
            Err(_) => None,
        };
        cert.verify_for_usage(
            self.algs.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            revocation,
            None,
        )
        .map_err(|e| self.explain_chain(e, who, subject, names, end_entity, intermediates))?;
        if self.crls.is_empty() {
            return Ok(());
        }
        let Ok((_, leaf)) = X509Certificate::from_der(end_entity) else {
            return Err(PeerCertError(format!(
                "{who} certificate is not valid X.509"
            )));
        };
        if !self
            .crls
            .iter()
            .any(|c| c.issued_by(leaf.issuer().as_raw()))
        {
            return Err(self.no_crl_for(who, subject, &leaf.issuer().to_string()));
        }
        Ok(())
    }

    /// [`Self::explain`], naming the revoked certificate when it is not the leaf and the CRL
    /// file when one expired: webpki's errors say neither.
    fn explain_chain(
        &self,
        err: webpki::Error,
        who: &str,
        subject: &str,
        names: &CertNames,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> PeerCertError {
        match &err {
            webpki::Error::CertRevoked => {
                for der in intermediates {
                    let Ok((_, ca)) = X509Certificate::from_der(der) else {
                        continue;
                    };
                    let revoked = self
                        .crls
                        .iter()
                        .any(|c| c.issued_by(ca.issuer().as_raw()) && c.revokes(ca.raw_serial()));
                    if revoked {
                        return PeerCertError(format!(
                            "{who} certificate '{subject}' is issued by CA '{}', which is revoked \
                             (--crl)",
                            ca.subject()
                        ));
                    }
                }
            }
            webpki::Error::CrlExpired { next_update, .. } => {
                let at = i64::try_from(next_update.as_secs()).unwrap_or(i64::MAX);
                if let Some(crl) = self.crls.iter().find(|c| c.next_update == at) {
                    return PeerCertError(crl.expired_message());
                }
            }
            _ => {}
        }
        self.explain(err, who, subject, names, end_entity)
    }

    /// Turns a webpki error into a sentence with a remedy.
    fn explain(
        &self,
        err: webpki::Error,
        who: &str,
        subject: &str,
        names: &CertNames,
        end_entity: &CertificateDer<'_>,
    ) -> PeerCertError {
        use webpki::Error as E;
        let ca = &self.ca_label;
        let pinned_file = self
            .trusted
            .iter()
            .find(|c| c.der.as_ref() == end_entity.as_ref())
            .map(|c| c.path.clone());
        let text = match err {
            E::UnsupportedCertVersion => format!(
                "{who} certificate '{subject}' is X.509 v1; rustls accepts only v3 end-entity \
                 certificates: reissue it as v3 with a subjectAltName, or pin it (--verify pin)"
            ),
            E::CaUsedAsEndEntity => format!(
                "{who} certificate '{subject}' is a CA certificate (basicConstraints CA:TRUE) used \
                 as a node certificate{}; issue a separate node certificate from the CA, or pin it \
                 (--verify pin)",
                pinned_file
                    .map(|p| format!(" (found in {})", p.display()))
                    .unwrap_or_default()
            ),
            E::UnknownIssuer => format!(
                "{who} certificate '{subject}' (issuer '{}') is not signed by a CA in {ca} (wrong --ca?)",
                names.issuer
            ),
            E::CertExpired { not_after, .. } => format!(
                "{who} certificate '{subject}' expired at {}",
                format_unix(not_after.as_secs())
            ),
            E::CertNotValidYet { not_before, .. } => format!(
                "{who} certificate '{subject}' is not valid before {} (check both clocks)",
                format_unix(not_before.as_secs())
            ),
            E::CertRevoked => format!("{who} certificate '{subject}' is revoked (--crl)"),
            E::CrlExpired { next_update, .. } => format!(
                "a CRL in --crl expired at {}; fetch a fresh CRL",
                format_unix(next_update.as_secs())
            ),
            E::RequiredEkuNotFoundContext(_) => lacks_eku(who, subject),
            E::InvalidSignatureForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => self
                .same_name_other_key(who, subject, names)
                .unwrap_or_else(|| {
                    format!("{who} certificate '{subject}' has a bad signature from its issuer")
                }),
            other => format!("{who} certificate '{subject}' rejected: {other:?} (CA {ca})"),
        };
        PeerCertError(text)
    }

    /// A signature that fails against a trusted CA *of the issuer's name* almost always means
    /// another CA with the same name signed it (another cluster's, or a CA made again), not
    /// corruption: say so, with both key ids and the file holding the look-alike.
    fn same_name_other_key(&self, who: &str, subject: &str, names: &CertNames) -> Option<String> {
        let look_alike = self.trusted.iter().find_map(|ca| {
            let ca_names = CertNames::parse(&ca.der)?;
            (ca_names.subject == names.issuer).then_some((ca, ca_names))
        })?;
        let (ca, ca_names) = look_alike;
        Some(format!(
            "{who} certificate '{subject}' was issued by a different CA with the same name \
             '{}': it was signed by key {}, but the CA of that name in {} has key {} (a CA from \
             another cluster, or one made again); install the CA that issued it, or reissue the \
             certificate from this CA (sst-tunnel gen-certs --renew)",
            names.issuer,
            CertNames::short_key_id(names.authority_key_id.as_deref()),
            ca.path.display(),
            CertNames::short_key_id(ca_names.subject_key_id.as_deref()),
        ))
    }

    fn verdict(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        self.check(end_entity, intermediates, now).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Use the SPKI directly: this is the same check webpki makes, and it also works for a
        // pinned X.509 v1 certificate, which webpki cannot parse as an end-entity certificate.
        let (_, parsed) = X509Certificate::from_der(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
    }
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("policy", &self.policy)
            .field("role", &self.role)
            .field("ca", &self.ca_label)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verdict(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verdict(end_entity, intermediates, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Now, in seconds since the epoch (as certificate dates are kept in [`CertNames`]).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no deps).
pub fn format_unix(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_formatting() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix(1_798_761_599), "2026-12-31 23:59:59 UTC");
    }
}
