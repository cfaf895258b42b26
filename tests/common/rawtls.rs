//! A TLS 1.3 (or 1.2, AES-GCM) peer that can send any record after a real handshake, for
//! the conformance suite. rustls makes the handshake (reading the socket one record at a time, so nothing
//! after the handshake is consumed), then the traffic keys and secrets are the test's: it
//! seals whatever records a case needs (forged, oversized, padded, misordered) and decrypts
//! what comes back, to see the exact alert the tunnel answers with.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::{aead, hkdf};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ConnectionTrafficSecrets, SupportedCipherSuite};

use super::{PATIENCE, Pki};

/// Content types.
pub const CCS: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const DATA: u8 = 23;

/// One direction's record protection.
struct Dir {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    secret: Vec<u8>,
}

/// Keeps the application traffic secrets of the test's own connection (test code only; the
/// product reaches secrets only through rustls' supported APIs).
#[derive(Debug, Default)]
struct Secrets(Mutex<(Vec<u8>, Vec<u8>)>);

impl rustls::KeyLog for Secrets {
    fn log(&self, label: &str, _: &[u8], secret: &[u8]) {
        let mut held = self.0.lock().unwrap();
        match label {
            "CLIENT_TRAFFIC_SECRET_0" => held.0 = secret.to_vec(),
            "SERVER_TRAFFIC_SECRET_0" => held.1 = secret.to_vec(),
            _ => {}
        }
    }
}

/// Reads one TLS record per call, so rustls never sees a byte past the handshake.
struct OneRecord<'a> {
    sock: &'a mut TcpStream,
    pending: Vec<u8>,
}

impl Read for OneRecord<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            let mut header = [0u8; 5];
            self.sock.read_exact(&mut header)?;
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let mut body = vec![0; len];
            self.sock.read_exact(&mut body)?;
            self.pending.extend_from_slice(&header);
            self.pending.extend_from_slice(&body);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// A connection after a genuine TLS 1.3 handshake, with its keys in the test's hands.
pub struct RawPeer {
    pub sock: TcpStream,
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
    tx: Dir,
    rx: Dir,
    inbuf: Vec<u8>,
    /// TLS 1.2: records carry their type in the header and an explicit nonce.
    tls12: bool,
    /// The stream ended from the other side (EOF or reset), not by our read timeout.
    pub closed_by_peer: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // TLS 1.2 records are sealed here for AES-GCM (an explicit nonce); ChaCha20's differ.
    provider.cipher_suites.retain(|suite| {
        matches!(suite, SupportedCipherSuite::Tls13(_))
            || suite
                .suite()
                .as_str()
                .is_some_and(|name| name.contains("_GCM_"))
    });
    Arc::new(provider)
}

fn identity(pki: &Pki, who: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let certs = CertificateDer::pem_file_iter(pki.path(&format!("{who}-cert.pem")))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{who}-key.pem"))).unwrap();
    (certs, key)
}

fn roots(pki: &Pki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

impl RawPeer {
    /// Connects to `port` as the PKI's `client` (TLS 1.3, the server verified by the CA).
    pub fn client(port: u16, pki: &Pki) -> Self {
        Self::client_on(port, pki, &rustls::version::TLS13)
    }

    /// The same over TLS 1.2 (AES-GCM suites only: their records are what this peer seals).
    pub fn client12(port: u16, pki: &Pki) -> Self {
        Self::client_on(port, pki, &rustls::version::TLS12)
    }

    fn client_on(port: u16, pki: &Pki, version: &'static rustls::SupportedProtocolVersion) -> Self {
        let secrets = Arc::new(Secrets::default());
        let conn = client_conn(pki, version, &secrets);
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        Self::finish(sock, conn, &secrets, true)
    }

    /// Accepts one connection on `listener` as the PKI's `server` (TLS 1.3, no tickets of
    /// its own; the client's certificate is verified by the CA).
    pub fn server(listener: &TcpListener, pki: &Pki) -> Self {
        Self::server_on(listener, pki, &rustls::version::TLS13)
    }

    /// The same over TLS 1.2 (AES-GCM suites only).
    pub fn server12(listener: &TcpListener, pki: &Pki) -> Self {
        Self::server_on(listener, pki, &rustls::version::TLS12)
    }

    fn server_on(
        listener: &TcpListener,
        pki: &Pki,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Self {
        let secrets = Arc::new(Secrets::default());
        let conn = server_conn(pki, version, &secrets);
        let (sock, _) = listener.accept().unwrap();
        Self::finish(sock, conn, &secrets, false)
    }

    fn finish(
        mut sock: TcpStream,
        mut conn: rustls::Connection,
        secrets: &Secrets,
        client: bool,
    ) -> Self {
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = OneRecord {
            sock: &mut sock.try_clone().unwrap(),
            pending: Vec::new(),
        };
        while conn.is_handshaking() || conn.wants_write() {
            while conn.wants_write() {
                conn.write_tls(&mut sock).unwrap();
            }
            if conn.is_handshaking() {
                conn.read_tls(&mut reader).unwrap();
                conn.process_new_packets().unwrap();
            }
        }
        assert!(reader.pending.is_empty(), "a record was left half read");
        let suite = conn.negotiated_cipher_suite().unwrap();
        let tls12 = matches!(suite, SupportedCipherSuite::Tls12(_));
        let hkdf = match suite.suite() {
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        };
        let (client_secret, server_secret) = secrets.0.lock().unwrap().clone();
        let (ours, theirs) = if client {
            (client_secret, server_secret)
        } else {
            (server_secret, client_secret)
        };
        let extracted = match conn {
            rustls::Connection::Client(c) => c.dangerous_extract_secrets(),
            rustls::Connection::Server(s) => s.dangerous_extract_secrets(),
        }
        .unwrap();
        let (aead, tx) = dir(extracted.tx, ours);
        let (_, rx) = dir(extracted.rx, theirs);
        Self {
            sock,
            aead,
            hkdf,
            tx,
            rx,
            inbuf: Vec::new(),
            tls12,
            closed_by_peer: false,
        }
    }

    /// A TLS 1.2 record of `kind` carrying `content`, sealed under the sending keys: the
    /// explicit nonce, then the ciphertext; the additional data is the sequence number and the
    /// plaintext's header (RFC 5246 6.2.3.3).
    pub fn seal12(&mut self, kind: u8, content: &[u8]) -> Vec<u8> {
        assert!(self.tls12, "a TLS 1.2 record on a TLS 1.3 connection");
        let nonce = nonce(&self.tx);
        let explicit = nonce.as_ref()[4..].to_vec();
        let mut aad = self.tx.seq.to_be_bytes().to_vec();
        let len = u16::try_from(content.len()).unwrap();
        aad.extend_from_slice(&[kind, 3, 3, (len >> 8) as u8, len as u8]);
        let mut body = content.to_vec();
        self.tx
            .key
            .seal_in_place_append_tag(nonce, aead::Aad::from(aad), &mut body)
            .unwrap();
        self.tx.seq += 1;
        let wire = u16::try_from(explicit.len() + body.len()).unwrap();
        let mut record = vec![kind, 3, 3, (wire >> 8) as u8, wire as u8];
        record.extend_from_slice(&explicit);
        record.extend_from_slice(&body);
        record
    }

    /// One record as it goes on the wire: `content`, then the inner type, then `padding`
    /// zeros, sealed under the current sending keys.
    pub fn seal(&mut self, kind: u8, content: &[u8], padding: usize) -> Vec<u8> {
        let mut inner = content.to_vec();
        inner.push(kind);
        inner.resize(inner.len() + padding, 0);
        self.seal_inner(inner)
    }

    /// Seals an inner plaintext exactly as given (no type byte added).
    pub fn seal_inner(&mut self, mut inner: Vec<u8>) -> Vec<u8> {
        let len = u16::try_from(inner.len() + 16).unwrap();
        let header = [DATA, 3, 3, (len >> 8) as u8, len as u8];
        let nonce = nonce(&self.tx);
        self.tx
            .key
            .seal_in_place_append_tag(nonce, aead::Aad::from(header), &mut inner)
            .unwrap();
        self.tx.seq += 1;
        let mut record = header.to_vec();
        record.extend_from_slice(&inner);
        record
    }

    /// A KeyUpdate record, after which our sending keys are the next generation's.
    pub fn key_update(&mut self, requested: bool) -> Vec<u8> {
        let record = self.seal(HANDSHAKE, &[24, 0, 0, 1, u8::from(requested)], 0);
        self.tx = next(self.aead, self.hkdf, &self.tx);
        record
    }

    /// Sends bytes as they are; a peer that already closed may refuse them (ignored: the
    /// case then reads what the tunnel said).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.sock.write_all(bytes);
    }

    /// Sends application data in records of up to 16 KiB.
    pub fn send_data(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        for chunk in data.chunks(16384) {
            let record = if self.tls12 {
                self.seal12(DATA, chunk)
            } else {
                self.seal(DATA, chunk, 0)
            };
            out.extend(record);
        }
        self.send(&out);
    }

    /// Our close_notify.
    pub fn close_notify(&mut self) {
        let record = if self.tls12 {
            self.seal12(ALERT, &[1, 0])
        } else {
            self.seal(ALERT, &[1, 0], 0)
        };
        self.send(&record);
    }

    /// The next record from the peer, decrypted (its KeyUpdates followed): `(type, content)`,
    /// or `None` at the end of the stream.
    pub fn read_record(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.inbuf.len() >= 5 {
                let len = usize::from(u16::from_be_bytes([self.inbuf[3], self.inbuf[4]]));
                if self.inbuf.len() >= 5 + len {
                    let header: [u8; 5] = self.inbuf[..5].try_into().unwrap();
                    let mut body = self.inbuf[5..5 + len].to_vec();
                    self.inbuf.drain(..5 + len);
                    if self.tls12 {
                        return Some(self.open12(header[0], body));
                    }
                    assert_eq!(header[0], DATA, "a plaintext record after the handshake");
                    let nonce = nonce(&self.rx);
                    let plain = self
                        .rx
                        .key
                        .open_in_place(nonce, aead::Aad::from(header), &mut body)
                        .expect("the tunnel's record authenticates");
                    self.rx.seq += 1;
                    let at = plain.iter().rposition(|&b| b != 0).expect("a content type");
                    let (kind, content) = (plain[at], plain[..at].to_vec());
                    if kind == HANDSHAKE && content.first() == Some(&24) {
                        self.rx = next(self.aead, self.hkdf, &self.rx);
                    }
                    return Some((kind, content));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    self.closed_by_peer = true;
                    return None;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => {
                    self.closed_by_peer = true;
                    return None;
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Opens a TLS 1.2 record's body (explicit nonce, ciphertext): `(type, content)`.
    fn open12(&mut self, kind: u8, mut body: Vec<u8>) -> (u8, Vec<u8>) {
        let mut nonce = self.rx.iv;
        nonce[4..].copy_from_slice(&body[..8]);
        let mut sealed = body.split_off(8);
        let len = u16::try_from(sealed.len() - 16).unwrap();
        let mut aad = self.rx.seq.to_be_bytes().to_vec();
        aad.extend_from_slice(&[kind, 3, 3, (len >> 8) as u8, len as u8]);
        let plain = self
            .rx
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut sealed,
            )
            .expect("the tunnel's TLS 1.2 record authenticates");
        self.rx.seq += 1;
        (kind, plain.to_vec())
    }

    /// Reads until the peer's alert and returns `(level, description)`; `None` when the
    /// stream ends without one. Data and tickets on the way are skipped.
    pub fn alert(&mut self) -> Option<(u8, u8)> {
        self.sock
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        while let Some((kind, content)) = self.read_record() {
            if kind == ALERT {
                return Some((content[0], content[1]));
            }
        }
        None
    }
}

/// A client connection as the PKI's `client`, keeping its secrets in `secrets`.
fn client_conn(
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
    secrets: &Arc<Secrets>,
) -> rustls::Connection {
    let (certs, key) = identity(pki, "client");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots(pki))
        .with_client_auth_cert(certs, key)
        .unwrap();
    config.enable_secret_extraction = true;
    config.key_log = secrets.clone();
    let name = ServerName::try_from("localhost").unwrap();
    rustls::Connection::Client(rustls::ClientConnection::new(Arc::new(config), name).unwrap())
}

/// A server connection as the PKI's `server` (no tickets of its own; the client's
/// certificate verified by the CA), keeping its secrets in `secrets`.
fn server_conn(
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
    secrets: &Arc<Secrets>,
) -> rustls::Connection {
    let (certs, key) = identity(pki, "server");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(pki)),
        provider(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.enable_secret_extraction = true;
    config.key_log = secrets.clone();
    config.send_tls13_tickets = 0;
    rustls::Connection::Server(rustls::ServerConnection::new(Arc::new(config)).unwrap())
}

/// A handshake interrupted by `inject` (issue 21, point 8): as the client (connecting to
/// `port`) or, with `listener`, as the server, the test sends the first record of its first
/// flight, then `inject`, and reads what the tunnel answers through the handshake's own
/// keys (rustls, fed everything the tunnel sends): the fatal alert it received, or `None`
/// when the tunnel closed without one (or said nothing within [`PATIENCE`]).
pub fn interrupted_handshake(
    pki: &Pki,
    tls12: bool,
    port_or_listener: Result<u16, &TcpListener>,
    inject: &[u8],
) -> Option<rustls::AlertDescription> {
    let version = if tls12 {
        &rustls::version::TLS12
    } else {
        &rustls::version::TLS13
    };
    let secrets = Arc::new(Secrets::default());
    let (mut sock, mut conn) = match port_or_listener {
        Ok(port) => (
            TcpStream::connect(("127.0.0.1", port)).unwrap(),
            client_conn(pki, version, &secrets),
        ),
        Err(listener) => (
            listener.accept().unwrap().0,
            server_conn(pki, version, &secrets),
        ),
    };
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut chunk = vec![0u8; 65536];
    // A server speaks once the ClientHello is in.
    while !conn.wants_write() {
        let n = sock.read(&mut chunk).unwrap();
        assert!(n > 0, "the tunnel closed before its ClientHello");
        conn.read_tls(&mut &chunk[..n]).unwrap();
        conn.process_new_packets().unwrap();
    }
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    let first = 5 + usize::from(u16::from_be_bytes([flight[3], flight[4]]));
    sock.write_all(&flight[..first]).unwrap();
    let _ = sock.write_all(inject);
    loop {
        let n = match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        let mut fed = &chunk[..n];
        while !fed.is_empty() {
            conn.read_tls(&mut fed).unwrap();
            match conn.process_new_packets() {
                Ok(_) => {}
                Err(rustls::Error::AlertReceived(alert)) => return Some(alert),
                Err(other) => panic!("the tunnel's answer did not parse: {other}"),
            }
        }
    }
}

fn dir(
    extracted: (u64, ConnectionTrafficSecrets),
    secret: Vec<u8>,
) -> (&'static aead::Algorithm, Dir) {
    let (seq, keys) = extracted;
    let (alg, key, iv): (&'static aead::Algorithm, &[u8], &[u8]) = match &keys {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            (&aead::AES_128_GCM, key.as_ref(), iv.as_ref())
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            (&aead::AES_256_GCM, key.as_ref(), iv.as_ref())
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (&aead::CHACHA20_POLY1305, key.as_ref(), iv.as_ref())
        }
        _ => panic!("unexpected suite"),
    };
    let dir = Dir {
        key: aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).unwrap()),
        iv: iv.try_into().unwrap(),
        seq,
        secret,
    };
    (alg, dir)
}

fn nonce(dir: &Dir) -> aead::Nonce {
    let mut nonce = dir.iv;
    for (n, s) in nonce[4..].iter_mut().zip(dir.seq.to_be_bytes()) {
        *n ^= s;
    }
    aead::Nonce::assume_unique_for_key(nonce)
}

/// The next generation of one direction's keys (RFC 8446 7.2).
fn next(alg: &'static aead::Algorithm, hkdf: hkdf::Algorithm, dir: &Dir) -> Dir {
    let secret = expand(hkdf, &dir.secret, b"traffic upd", dir.secret.len());
    let key = expand(hkdf, &secret, b"key", alg.key_len());
    let iv = expand(hkdf, &secret, b"iv", 12);
    Dir {
        key: aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).unwrap()),
        iv: iv.try_into().unwrap(),
        seq: 0,
        secret,
    }
}

/// HKDF-Expand-Label with an empty context (RFC 8446 7.1).
fn expand(alg: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let out_len = (len as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0; len];
    prk.expand(&info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

/// A rustls client as the PKI's `who` (default versions, the CA's roots) offering `alpn`:
/// a peer that speaks the tunnel's own protocols by hand.
pub fn alpn_client(pki: &Pki, who: &str, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let (certs, key) = identity(pki, who);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(pki))
    .with_client_auth_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Connects to `port` with `config`, sends `bytes` and reads until the tunnel closes (or
/// [`PATIENCE`] passes): what it sent back.
pub fn say(port: u16, config: &Arc<rustls::ClientConfig>, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let _ = tls.write_all(bytes);
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    rest
}
