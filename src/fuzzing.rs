//! Entry points for the fuzz targets (`tests/fuzz`): each runs one parser of outside input
//! over arbitrary bytes, through the same code the commands use. Errors are the expected
//! outcome for most inputs; a panic, a hang or unbounded memory is a bug.

use std::ffi::OsString;
use std::path::Path;

use crate::settings::mycnf;
use crate::settings::{Role, TlsSettings};
use crate::{frontend, tls};

/// A stunnel configuration file, parsed and translated (certificate paths in it are read).
pub fn stunnel_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = frontend::stunnel::check(Path::new("fuzz/stunnel.conf"), &text);
}

/// A socat command line: one argument per line of `data`.
pub fn socat_args(data: &[u8]) {
    let args: Vec<OsString> = String::from_utf8_lossy(data)
        .split('\n')
        .map(OsString::from)
        .collect();
    let _ = frontend::socat::check(&args);
}

/// One socat address (`openssl-connect:HOST:PORT,opt=value,...`).
pub fn socat_address(data: &[u8]) {
    let _ = frontend::socat::address::Address::parse(&String::from_utf8_lossy(data));
}

/// A MariaDB option file, resolved for both roles and applied to empty TLS flags.
pub fn my_cnf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/my.cnf");
    let Ok(files) = mycnf::OptionFiles::parse(path, &text) else {
        return;
    };
    for role in [Role::Donor, Role::Joiner] {
        for suffix in [None, Some(".2")] {
            let tls = mycnf::SstTls::resolve(&files, role, suffix);
            let _ = tls.fill(&mut TlsSettings::default(), path);
        }
    }
}

/// A `wsrep_provider_options` value.
pub fn provider_options(data: &[u8]) {
    let _ = mycnf::provider_options(&String::from_utf8_lossy(data));
}

/// PEM text as a certificate, key or CRL file: split into blocks, then every certificate's
/// names read, every key loaded by the crypto provider and every CRL parsed, as loading does.
pub fn pem(data: &[u8]) {
    let Ok(file) = tls::pem::parse_pem(Path::new("fuzz.pem"), data) else {
        return;
    };
    for cert in &file.certs {
        let _ = tls::names::CertNames::parse(cert);
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    for key in file.keys {
        let _ = provider.key_provider.load_private_key(key);
    }
    for crl in &file.crls {
        let _ = webpki::OwnedCertRevocationList::from_der(crl);
    }
}

/// The records after a TLS 1.3 handshake as the kernel hands them to us (type from the
/// control message, content decrypted and unpadded): `data` is a sequence of records (a type
/// byte, a big-endian u16 length, then that many bytes of content), run through the same
/// checks, for a client and a server. Every message we accept must parse in rustls too
/// (never laxer than rustls): alerts of a known level, KeyUpdates, and whole handshake
/// messages. A panic is a finding.
pub fn records(data: &[u8]) {
    use rustls::internal::msgs::base::Payload;
    use rustls::internal::msgs::message::{Message, PlainMessage};
    use rustls::{ContentType, ProtocolVersion};

    use crate::handoff::control::{self, Control};

    let parses = |kind: u8, body: &[u8]| {
        let plain = PlainMessage {
            typ: ContentType::from(kind),
            version: ProtocolVersion::TLSv1_3,
            payload: Payload::new(body.to_vec()),
        };
        Message::try_from(plain).is_ok()
    };
    for (client, tls13) in [(true, true), (false, true), (true, false), (false, false)] {
        let mut control = Control::for_version(client, false, tls13);
        let mut rest = data;
        while let [kind, a, b, tail @ ..] = rest {
            let kind = *kind;
            let len = usize::from(u16::from_be_bytes([*a, *b]))
                .min(tail.len())
                .min(control::MAX_RECORD);
            let (content, tail) = tail.split_at(len);
            rest = tail;
            let whole = !control.mid_message();
            let result = if kind == control::APPLICATION_DATA {
                control.data(content.len())
            } else {
                control.record(kind, content).map(|_| ())
            };
            if result.is_err() {
                break;
            }
            // One whole message in one record, accepted by us: rustls must parse it too.
            if kind != control::APPLICATION_DATA && whole && !control.mid_message() {
                let single = kind != control::HANDSHAKE
                    || (content.len() >= 4
                        && 4 + (usize::from(content[1]) << 16
                            | usize::from(content[2]) << 8
                            | usize::from(content[3]))
                            == content.len());
                // A client's tickets go to rustls' own parser (KernelConnection) at the stream.
                let ticket = kind == control::HANDSHAKE && content.first() == Some(&4);
                if single && !ticket && !control.peer_closed {
                    assert!(
                        parses(kind, content),
                        "accepted a record rustls cannot parse: type {kind}, {content:?}"
                    );
                }
            }
            if control.peer_closed {
                break;
            }
        }
    }
}

/// What a resumable stream's peer sends: the opening its connections start with (a new
/// stream, or a secret to resume), read as a listener reads it and checked against a
/// stream's secret, and the frames (offsets, acknowledgements, ends, aborts), met by a stream
/// with real state.
pub fn resume_frames(data: &[u8]) {
    use crate::ends::stripes;
    let opening = &data[..data.len().min(stripes::OPENING_LEN)];
    let _ = stripes::parse_opening(opening);
    let _ = stripes::check_join(&[7; stripes::TOKEN_LEN], opening, 4);
    let _ = crate::ends::resume::read_frames(data);
}
