//! What a certificate says about its holder: subject/issuer DNs, SANs, CN, and name matching.
//!
//! webpki deliberately has no CN fallback, but the SST world is full of CN-only certificates
//! (MySQL's auto-generated ones, older `openssl req` recipes), and stunnel's `checkHost` uses
//! OpenSSL's rule: SANs of the matching type first, the subject CN only when the certificate has
//! no SAN of that type. This module implements that rule, case-insensitively.

use std::net::IpAddr;

use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::error::escape;

/// The parts of a certificate that name checks and logs use.
#[derive(Debug, Clone, Default)]
pub struct CertNames {
    /// Subject DN, OpenSSL one-line style (`CN=node1, O=Example`).
    pub subject: String,
    /// Issuer DN, same style.
    pub issuer: String,
    /// Subject common names.
    pub common_names: Vec<String>,
    /// DNS subjectAltNames.
    pub dns: Vec<String>,
    /// IP subjectAltNames.
    pub ips: Vec<IpAddr>,
    /// X.509 version 1 (no extensions): rustls refuses these as end-entity certificates.
    pub is_v1: bool,
    /// basicConstraints CA:TRUE: rustls refuses these as end-entity certificates.
    pub is_ca: bool,
    /// subjectKeyIdentifier: names the key this certificate holds (a CA's).
    pub subject_key_id: Option<Vec<u8>>,
    /// authorityKeyIdentifier: names the key that signed it, so a same-named CA with another
    /// key can be told apart from the real issuer.
    pub authority_key_id: Option<Vec<u8>>,
    /// Subject organisations (gen-certs keeps the cluster name there).
    pub organizations: Vec<String>,
    /// notBefore, seconds since the epoch.
    pub not_before: i64,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
    /// The certificate itself (DER), so "issued by" can be decided by the signature.
    pub der: Vec<u8>,
}

impl CertNames {
    /// Parses a DER certificate; `None` when it is not valid X.509.
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut names = Self {
            // Display strings, and peer-supplied: escaped once here, so no log or error line
            // that names a certificate can be forged by it.
            subject: escape(&cert.subject().to_string()),
            issuer: escape(&cert.issuer().to_string()),
            is_v1: cert.version().0 == 0,
            is_ca: cert.is_ca(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            der: der.to_vec(),
            ..Self::default()
        };
        names.organizations = cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    names.subject_key_id = Some(id.0.to_vec());
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    names.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
                }
                _ => {}
            }
        }
        names.common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.dns.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.ips.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(names)
    }

    /// True when `wanted` (a DNS name or an IP literal) names this certificate.
    ///
    /// IP literals match IP SANs; DNS names match DNS SANs (with a leftmost `*.` wildcard);
    /// either falls back to the subject CN only when no SAN of its type exists.
    pub fn matches(&self, wanted: &str) -> bool {
        let wanted = wanted.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = wanted.parse::<IpAddr>() {
            if !self.ips.is_empty() {
                return self.ips.contains(&ip);
            }
            return self
                .common_names
                .iter()
                .any(|cn| cn.parse::<IpAddr>().is_ok_and(|c| c == ip));
        }
        let candidates = if self.dns.is_empty() {
            &self.common_names
        } else {
            &self.dns
        };
        candidates
            .iter()
            .any(|pattern| dns_matches(pattern, wanted))
    }

    /// socat's `commonname` rule: an IP literal matches IP SANs; a name matches a DNS SAN or
    /// the subject CN, whichever exists, byte for byte (socat compares case-sensitively), with
    /// a leftmost `*.` wildcard covering exactly one label.
    pub fn matches_socat(&self, wanted: &str) -> bool {
        let wanted = wanted.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = wanted.parse::<IpAddr>() {
            return self.ips.contains(&ip) || self.common_names.iter().any(|cn| cn == wanted);
        }
        self.dns
            .iter()
            .chain(&self.common_names)
            .any(|pattern| wildcard_matches(pattern, wanted, false))
    }

    /// True when `ca`'s key signed this certificate: decided by the signature when both
    /// certificates are at hand, else by the authorityKeyIdentifier naming the CA's
    /// subjectKeyIdentifier; never by name, since two CAs can share one (a CA made again, or a
    /// rotation that kept the name) and only the key says which of them issued it.
    pub fn issued_by(&self, ca: &CertNames) -> bool {
        if !self.der.is_empty() && !ca.der.is_empty() {
            return signed_by(&self.der, &ca.der);
        }
        match (&self.authority_key_id, &ca.subject_key_id) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => false,
        }
    }

    /// Whether `now` (seconds since the epoch) is within the validity period.
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The `gen-certs --node` value that re-issues a certificate with the same names:
    /// `CN[=IP,...]`.
    pub fn node_spec(&self) -> String {
        let name = self
            .common_names
            .first()
            .or(self.dns.first())
            .cloned()
            .unwrap_or_else(|| "NAME".to_string());
        if self.ips.is_empty() {
            return name;
        }
        let ips: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
        format!("{name}={}", ips.join(","))
    }

    /// The first 8 bytes of a key identifier as hex, enough to tell keys apart in a message.
    pub fn short_key_id(id: Option<&[u8]>) -> String {
        match id {
            Some(id) => id.iter().take(8).map(|b| format!("{b:02x}")).collect(),
            None => "none".to_string(),
        }
    }

    /// Every name in the certificate, CN included, for messages under the socat rule.
    pub fn describe_all(&self) -> String {
        let mut parts: Vec<String> = self
            .common_names
            .iter()
            .map(|cn| format!("CN={}", escape(cn)))
            .collect();
        parts.extend(self.dns.iter().map(|d| format!("DNS:{}", escape(d))));
        parts.extend(self.ips.iter().map(|ip| format!("IP:{ip}")));
        if parts.is_empty() {
            "no names".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The names a user could pass to `--peer-name`, for error messages.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .dns
            .iter()
            .map(|d| format!("DNS:{}", escape(d)))
            .collect();
        parts.extend(self.ips.iter().map(|ip| format!("IP:{ip}")));
        if parts.is_empty() {
            parts.extend(
                self.common_names
                    .iter()
                    .map(|cn| format!("CN={}", escape(cn))),
            );
        }
        if parts.is_empty() {
            "no names".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// True when the key of the certificate `ca` made the signature on `cert` (both DER). A label
/// for bookkeeping and messages; whether a chain is acceptable is webpki's to decide.
pub fn signed_by(cert: &[u8], ca: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert),
        X509Certificate::from_der(ca),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Case-insensitive DNS name comparison with one leftmost-label wildcard (`*.example.com`).
fn dns_matches(pattern: &str, name: &str) -> bool {
    wildcard_matches(pattern, name, true)
}

/// DNS name comparison with one leftmost-label wildcard, case-insensitive or byte for byte.
fn wildcard_matches(pattern: &str, name: &str, ignore_case: bool) -> bool {
    let same = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let pattern = pattern.trim_end_matches('.');
    let name = name.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match name.split_once('.') {
            Some((label, rest)) => !label.is_empty() && same(rest, suffix),
            None => false,
        };
    }
    same(pattern, name)
}

/// An IP SAN's 4 or 16 octets as an address.
fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cn: &[&str], dns: &[&str], ips: &[&str]) -> CertNames {
        CertNames {
            common_names: cn.iter().map(|s| s.to_string()).collect(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ..CertNames::default()
        }
    }

    #[test]
    fn san_first_cn_ignored_when_dns_san_exists() {
        let cert = names(&["foo"], &["bar"], &[]);
        assert!(cert.matches("bar"));
        assert!(cert.matches("BAR"));
        assert!(!cert.matches("foo"));
        assert!(!cert.matches("127.0.0.1"));
    }

    #[test]
    fn cn_used_without_sans() {
        let cert = names(&["Node2"], &[], &[]);
        assert!(cert.matches("node2"));
        assert!(!cert.matches("node3"));
    }

    #[test]
    fn ip_sans_and_brackets() {
        let cert = names(&["node"], &["node"], &["127.0.0.2", "::1"]);
        assert!(cert.matches("127.0.0.2"));
        assert!(cert.matches("[::1]"));
        assert!(!cert.matches("127.0.0.3"));
        // An IP CN counts only when there are no IP SANs.
        let cn_ip = names(&["10.0.0.1"], &["x"], &[]);
        assert!(cn_ip.matches("10.0.0.1"));
    }

    #[test]
    fn socat_rule_is_case_sensitive_and_keeps_the_cn() {
        let cert = names(&["foo"], &["bar", "*.wild.test"], &["127.0.0.1"]);
        assert!(cert.matches_socat("foo"));
        assert!(cert.matches_socat("bar"));
        assert!(!cert.matches_socat("BAR"));
        assert!(cert.matches_socat("127.0.0.1"));
        assert!(!cert.matches_socat("127.0.0.2"));
        assert!(cert.matches_socat("x.wild.test"));
        assert!(!cert.matches_socat("a.b.wild.test"));
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_matches("*.wild.test", "x.wild.test"));
        assert!(dns_matches("*.wild.test", "X.WILD.test."));
        assert!(!dns_matches("*.wild.test", "a.b.wild.test"));
        assert!(!dns_matches("*.wild.test", "wild.test"));
    }
}
