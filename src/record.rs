//! TLS 1.3 records in user space after rustls' handshake: the buffered path's bulk engine.
//!
//! Why not rustls' own record layer once the handshake is done: its buffered API copies each
//! received record three times (into its deframer, into a fresh `Vec`, into the caller's
//! buffer), and on the AMD machines this project runs on glibc's `rep movsb` copy crawls at
//! about 1.7 GB/s for half of the relative alignments those copies meet; that was a third
//! of the receiving tunnel's CPU. Here a record is received into one large buffer, opened in
//! place and copied out once; a record sent is sealed in place in one buffer.
//!
//! rustls still does the whole handshake and every certificate check. This module only takes
//! over once the keys exist, exactly where the kernel takes over on the kTLS path and with
//! the same hand-off ([`crate::ktls::hand_off`]): the handshake leaves the socket at a record
//! boundary. The keys come from rustls' supported export (`dangerous_into_kernel_connection`),
//! and each later generation from the `KernelConnection` it returns ([`Keyring`]), so both
//! directions rekey (RFC 8446 section 7.2): a peer's KeyUpdate is followed, and we rekey
//! ourselves before AES-GCM's key-usage limit. TLS 1.2 stays on rustls (it has no rekeying).
//!
//! The control records after the handshake are handled here for both engines ([`Control`]):
//! close_notify ends the stream, any other alert is an error, tickets are skipped. Nothing is
//! accepted that rustls' own record layer refuses, and every protocol error the peer makes is
//! a [`Violation`] carrying the alert RFC 8446 names for it (bad_record_mac, record_overflow,
//! decode_error, unexpected_message, illegal_parameter), which the stream sends before it
//! closes.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_lc_rs::aead;
use rustls::{AlertDescription, CipherSuite, ConnectionTrafficSecrets, ExtractedSecrets};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use crate::net::Outbox;
use crate::unbuffered::Keyring;

/// Content type of an alert record.
pub const ALERT: u8 = 21;
/// Content type of a handshake record.
pub const HANDSHAKE: u8 = 22;
/// Content type of an application data record (and the outer type of every TLS 1.3 one).
pub const APPLICATION_DATA: u8 = 23;
/// Content type of a ChangeCipherSpec record (only ever plaintext, only during a handshake).
const CHANGE_CIPHER_SPEC: u8 = 20;
/// Handshake message types that may follow the handshake.
const HELLO_REQUEST: u8 = 0;
const NEW_SESSION_TICKET: u8 = 4;
/// Handshake type of a KeyUpdate.
pub const KEY_UPDATE: u8 = 24;
/// Alert levels.
const WARNING: u8 = 1;
const FATAL: u8 = 2;
/// rustls' bounds on what a peer may repeat without sending data (BoringSSL's too): KeyUpdates,
/// empty records, warning alerts (user_canceled, the one TLS 1.3 allows).
const MAX_KEY_UPDATES: u8 = 32;
const MAX_EMPTY_RECORDS: u8 = 32;
const MAX_WARNINGS: u8 = 4;
/// Largest plaintext in one record.
pub const MAX_RECORD: usize = 16 * 1024;
/// Largest TLS 1.3 ciphertext (RFC 8446 5.2: plaintext, content type and padding, tag).
const MAX_CIPHERTEXT: usize = MAX_RECORD + 256;
const HEADER: usize = 5;
const TAG: usize = 16;
/// Bound on post-handshake handshake messages we reassemble (tickets are small).
const MAX_HANDSHAKE: usize = 64 * 1024;
/// Received ciphertext buffered at most (one receive can serve many records).
const RECEIVE_BUFFER: usize = 256 * 1024;
/// Records sealed per write call (the caller's buffer is 256 KiB).
const RECORDS_PER_WRITE: usize = 16;
/// We rekey this many records before the suite's key-usage limit.
const REKEY_MARGIN: u64 = 16;

/// Whether the user-space record layer is in use (`SST_TUNNEL_RECORDS=rustls` keeps rustls'
/// own record layer after the handshake: a diagnostic switch and the tests' second engine).
pub fn enabled() -> bool {
    std::env::var("SST_TUNNEL_RECORDS").map_or(true, |v| v != "rustls")
}

/// The AEAD of a TLS 1.3 suite this layer carries.
#[derive(Clone, Copy)]
struct Suite {
    aead: &'static aead::Algorithm,
}

impl Suite {
    fn of(suite: CipherSuite) -> Option<Self> {
        let aead = match suite {
            CipherSuite::TLS13_AES_128_GCM_SHA256 => &aead::AES_128_GCM,
            CipherSuite::TLS13_AES_256_GCM_SHA384 => &aead::AES_256_GCM,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => &aead::CHACHA20_POLY1305,
            _ => return None,
        };
        Some(Self { aead })
    }
}

/// Whether a finished handshake's suite can move to this layer (TLS 1.3 suites only).
pub fn carries(suite: CipherSuite) -> bool {
    Suite::of(suite).is_some()
}

/// One direction's traffic keys: the AEAD key, the IV and the record sequence number. The
/// key bytes stay inside aws-lc and rustls (both wipe them); the IV copy is wiped on drop.
struct Keys {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Drop for Keys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.iv);
    }
}

impl Keys {
    /// The keys rustls exported for one direction, from record `seq` on.
    fn new(suite: Suite, seq: u64, secrets: &ConnectionTrafficSecrets) -> io::Result<Self> {
        let (key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key.as_ref(), iv.as_ref()),
            _ => {
                return Err(io::Error::other(
                    "an unexpected suite at the record hand-off",
                ));
            }
        };
        let key = aead::UnboundKey::new(suite.aead, key)
            .map_err(|_| io::Error::other("rustls' key does not fit the suite"))?;
        let iv = iv
            .try_into()
            .map_err(|_| io::Error::other("rustls' IV does not fit the suite"))?;
        Ok(Self {
            key: aead::LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The per-record nonce: the IV XORed with the sequence number (RFC 8446 5.3).
    fn nonce(&self) -> aead::Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }
}

/// What a control record asked of the record layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing (a skipped ticket, or the peer's close_notify, see [`Control::peer_closed`]).
    None,
    /// The peer's KeyUpdate: its sending keys change; `requested` asks us to change ours.
    KeyUpdate {
        /// The peer asks us to send a KeyUpdate too.
        requested: bool,
    },
}

/// Has rustls parse the servers' tickets a control record completed (we never resume, so
/// that is all): one it cannot parse is the peer's decode_error.
pub fn tickets(control: &mut Control, keyring: &mut Keyring) -> io::Result<()> {
    for body in std::mem::take(&mut control.tickets) {
        keyring.ticket(&body).map_err(|e| {
            violation(
                AlertDescription::DecodeError,
                format!("a malformed NewSessionTicket ({e})"),
            )
        })?;
    }
    Ok(())
}

/// A protocol error of the peer's after the handshake: what it sent, and the fatal alert
/// RFC 8446 names for it, which the stream sends before closing.
#[derive(Debug)]
pub struct Violation {
    /// The alert to send.
    pub alert: AlertDescription,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the peer sent {} (fatal alert {:?})",
            self.what, self.alert
        )
    }
}

impl std::error::Error for Violation {}

/// The peer broke the protocol: `alert` goes back to it.
pub fn violation(alert: AlertDescription, what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        Violation {
            alert,
            what: what.into(),
        },
    )
}

/// The alert owed to the peer for a failure reading from it: a [`Violation`]'s, or
/// bad_record_mac for a record that failed authentication; `None` for everything else (the
/// peer's own alert, a reset, a local error).
pub fn alert_for(err: &io::Error) -> Option<AlertDescription> {
    let inner = err.get_ref()?;
    if let Some(v) = inner.downcast_ref::<Violation>() {
        return Some(v.alert);
    }
    match inner.downcast_ref::<rustls::Error>() {
        Some(rustls::Error::DecryptError) => Some(AlertDescription::BadRecordMac),
        _ => None,
    }
}

/// The records after the handshake that are not application data: alerts and post-handshake
/// handshake messages, which may span records. It also sees every data record's length, to
/// hold the peer to the rules that span records (RFC 8446 5.1: nothing between the fragments
/// of a handshake message) and to rustls' bounds on repetition.
pub struct Control {
    /// The peer's close_notify has arrived.
    pub peer_closed: bool,
    /// Whether we are the client (only a server may send NewSessionTicket).
    client: bool,
    /// A handshake message's fragments so far.
    handshake: Vec<u8>,
    /// Servers' tickets completed and not yet given to rustls ([`tickets`]).
    tickets: Vec<Vec<u8>>,
    key_updates: u8,
    empty_records: u8,
    warnings: u8,
}

impl Control {
    /// The control state of one side's stream whose peer may already have closed (rustls saw
    /// the close_notify before the hand-off).
    pub fn new(client: bool, peer_closed: bool) -> Self {
        Self {
            peer_closed,
            client,
            handshake: Vec::new(),
            tickets: Vec::new(),
            key_updates: 0,
            empty_records: 0,
            warnings: 0,
        }
    }

    /// Whether a handshake message is incomplete: the next record must continue it.
    pub fn mid_message(&self) -> bool {
        !self.handshake.is_empty()
    }

    /// Checks an application data record of `len` bytes against the rules across records.
    pub fn data(&mut self, len: usize) -> io::Result<()> {
        if self.mid_message() {
            return Err(violation(
                AlertDescription::UnexpectedMessage,
                "application data between the fragments of a handshake message",
            ));
        }
        self.key_updates = 0;
        self.count_empty(len)
    }

    fn count_empty(&mut self, len: usize) -> io::Result<()> {
        if len > 0 {
            self.empty_records = 0;
            return Ok(());
        }
        self.empty_records += 1;
        if self.empty_records > MAX_EMPTY_RECORDS {
            return Err(violation(
                AlertDescription::UnexpectedMessage,
                format!("more than {MAX_EMPTY_RECORDS} empty records in a row"),
            ));
        }
        Ok(())
    }

    /// Handles one control record's plaintext.
    pub fn record(&mut self, kind: u8, body: &[u8]) -> io::Result<Event> {
        if kind != HANDSHAKE && self.mid_message() {
            return Err(violation(
                AlertDescription::UnexpectedMessage,
                format!(
                    "a record of content type {kind} between the fragments of a handshake message"
                ),
            ));
        }
        match kind {
            ALERT => self.alert(body),
            HANDSHAKE => self.handshake(body),
            CHANGE_CIPHER_SPEC => Err(violation(
                AlertDescription::UnexpectedMessage,
                "a ChangeCipherSpec after the handshake",
            )),
            other => Err(violation(
                AlertDescription::UnexpectedMessage,
                format!("a record of content type {other}"),
            )),
        }
    }

    /// An alert: close_notify ends the stream, user_canceled (the one warning TLS 1.3 keeps)
    /// is tolerated a few times, anything else ends the connection.
    fn alert(&mut self, body: &[u8]) -> io::Result<Event> {
        let [level, description] = *body else {
            return Err(violation(
                AlertDescription::DecodeError,
                format!("a malformed alert ({} bytes, not 2)", body.len()),
            ));
        };
        let description = AlertDescription::from(description);
        if level != WARNING && level != FATAL {
            return Err(violation(
                AlertDescription::IllegalParameter,
                format!("an alert of unknown level {level} ({description:?})"),
            ));
        }
        if description == AlertDescription::CloseNotify {
            debug!("peer's close_notify received");
            self.peer_closed = true;
            return Ok(Event::None);
        }
        if level == WARNING {
            self.warnings += 1;
            if self.warnings > MAX_WARNINGS {
                return Err(violation(
                    AlertDescription::UnexpectedMessage,
                    format!("more than {MAX_WARNINGS} warning alerts"),
                ));
            }
            if description == AlertDescription::UserCanceled {
                debug!("peer sent a user_canceled warning");
                return Ok(Event::None);
            }
            return Err(violation(
                AlertDescription::DecodeError,
                format!("a warning alert {description:?}, which TLS 1.3 does not have"),
            ));
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(description),
        ))
    }

    /// Handshake fragments: whole messages are checked and acted on as they complete.
    fn handshake(&mut self, body: &[u8]) -> io::Result<Event> {
        if body.is_empty() {
            // RFC 8446 5.1: zero-length handshake fragments are never sent.
            return Err(violation(
                AlertDescription::UnexpectedMessage,
                "an empty handshake record",
            ));
        }
        self.handshake.extend_from_slice(body);
        if self.handshake.len() > MAX_HANDSHAKE {
            return Err(violation(
                AlertDescription::UnexpectedMessage,
                "an oversized post-handshake message",
            ));
        }
        while self.handshake.len() >= 4 {
            let kind = self.handshake[0];
            let len =
                u32::from_be_bytes([0, self.handshake[1], self.handshake[2], self.handshake[3]])
                    as usize;
            if self.handshake.len() < 4 + len {
                break;
            }
            let event = match kind {
                NEW_SESSION_TICKET if self.client => {
                    self.tickets.push(self.handshake[4..4 + len].to_vec());
                    Event::None
                }
                NEW_SESSION_TICKET => {
                    return Err(violation(
                        AlertDescription::UnexpectedMessage,
                        "a NewSessionTicket, which only a server sends",
                    ));
                }
                KEY_UPDATE => Event::KeyUpdate {
                    requested: key_update_request(&self.handshake[4..4 + len])?,
                },
                HELLO_REQUEST => {
                    return Err(violation(
                        AlertDescription::UnexpectedMessage,
                        "a HelloRequest (TLS 1.2 renegotiation), which TLS 1.3 does not have",
                    ));
                }
                other => {
                    return Err(violation(
                        AlertDescription::UnexpectedMessage,
                        format!(
                            "an unexpected handshake message (type {other}) after the handshake"
                        ),
                    ));
                }
            };
            self.handshake.drain(..4 + len);
            if let Event::KeyUpdate { .. } = event {
                // New keys apply from the next record: nothing may share this one.
                if self.mid_message() {
                    return Err(violation(
                        AlertDescription::UnexpectedMessage,
                        "a KeyUpdate not at the end of its record",
                    ));
                }
                self.key_updates += 1;
                if self.key_updates > MAX_KEY_UPDATES {
                    return Err(violation(
                        AlertDescription::UnexpectedMessage,
                        format!("more than {MAX_KEY_UPDATES} KeyUpdates without data"),
                    ));
                }
                return Ok(event);
            }
        }
        Ok(Event::None)
    }
}

/// A KeyUpdate's body: one byte, update_not_requested (0) or update_requested (1).
fn key_update_request(body: &[u8]) -> io::Result<bool> {
    match body {
        [0] => Ok(false),
        [1] => Ok(true),
        [other] => Err(violation(
            AlertDescription::IllegalParameter,
            format!("a KeyUpdate with the invalid value {other}"),
        )),
        _ => Err(violation(
            AlertDescription::DecodeError,
            format!("a malformed KeyUpdate ({} bytes, not 1)", body.len()),
        )),
    }
}

/// A TLS 1.3 record's opened plaintext (content, type, zero padding; RFC 8446 5.4): its
/// content type and the length of its content, or the violation it is.
pub fn inner_type(opened: &[u8]) -> io::Result<(u8, usize)> {
    if opened.len() > MAX_RECORD + 1 {
        return Err(violation(
            AlertDescription::RecordOverflow,
            format!(
                "a record of {} bytes of content, type and padding (at most 2^14+1)",
                opened.len()
            ),
        ));
    }
    // The inner content type is the last non-zero byte; zeros after it are padding.
    let Some(kind_at) = opened.iter().rposition(|&b| b != 0) else {
        return Err(violation(
            AlertDescription::UnexpectedMessage,
            "a record with no content type (all padding)",
        ));
    };
    Ok((opened[kind_at], kind_at))
}

/// Plaintext to deliver before anything the socket brings: on the kernel path, the part of a
/// record a small read could not take (the hand-off itself leaves nothing decrypted behind).
#[derive(Default)]
pub struct Preface {
    bytes: Vec<u8>,
    at: usize,
}

impl Preface {
    /// Whether some are still to be delivered.
    pub fn pending(&self) -> bool {
        self.at < self.bytes.len()
    }

    /// Queues more after what is pending.
    pub fn push(&mut self, more: &[u8]) {
        self.bytes.extend_from_slice(more);
    }

    /// Moves what fits into `out`; `false` when nothing was pending.
    pub fn deliver(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if !self.pending() {
            return false;
        }
        let n = (self.bytes.len() - self.at).min(out.remaining());
        out.put_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        if !self.pending() {
            *self = Self::default();
        }
        true
    }
}

/// A TCP socket whose TLS 1.3 records we seal and open ourselves.
pub struct UserStream {
    tcp: TcpStream,
    suite: Suite,
    rx: Keys,
    tx: Keys,
    /// Records per sending key before we rekey (`None`: the suite has no limit).
    rekey_at: Option<u64>,
    /// Received bytes: ciphertext in `start..end`; the record opened last has its plaintext
    /// in `plain` (offsets into the same buffer, delivered before anything moves).
    inbuf: Box<[u8]>,
    start: usize,
    end: usize,
    plain: (usize, usize),
    control: Control,
    /// rustls' hold on the connection: each direction's next keys, tickets parsed.
    keyring: Keyring,
    /// The peer asked for our KeyUpdate; it goes out before our next record.
    update_due: bool,
    /// Sealed records not yet written.
    out: Outbox,
    close_sent: bool,
    /// A read failed (and any alert owed was sent): nothing more goes either way.
    failed: bool,
}

impl UserStream {
    /// Takes over a connection whose handshake rustls finished: the current keys and the
    /// keyring from `dangerous_into_kernel_connection`, the AES-GCM key-usage `limit`.
    pub fn new(
        tcp: TcpStream,
        suite: CipherSuite,
        client: bool,
        secrets: &ExtractedSecrets,
        keyring: Keyring,
        limit: Option<u64>,
    ) -> io::Result<Self> {
        let suite = Suite::of(suite)
            .ok_or_else(|| io::Error::other("this suite has no user-space record layer"))?;
        let (tx_seq, tx) = &secrets.tx;
        let (rx_seq, rx) = &secrets.rx;
        Ok(Self {
            tcp,
            suite,
            rx: Keys::new(suite, *rx_seq, rx)?,
            tx: Keys::new(suite, *tx_seq, tx)?,
            rekey_at: limit.map(|l| l.saturating_sub(REKEY_MARGIN).max(1)),
            inbuf: vec![0; RECEIVE_BUFFER + HEADER + MAX_CIPHERTEXT].into_boxed_slice(),
            start: 0,
            end: 0,
            plain: (0, 0),
            control: Control::new(client, false),
            keyring,
            update_due: false,
            // Grows to one write's records on first use: a receive-only end never needs it.
            out: Outbox::default(),
            close_sent: false,
            failed: false,
        })
    }

    /// Opens the next whole record in the buffer, if there is one: data becomes `plain`,
    /// control records are handled. `Ok(false)`: more bytes are needed. Every check rustls'
    /// record layer makes is made here, with the alert RFC 8446 names (sections 5.1-5.4).
    fn open_next(&mut self) -> io::Result<bool> {
        let avail = &self.inbuf[self.start..self.end];
        if avail.len() < HEADER {
            return Ok(false);
        }
        let header: [u8; HEADER] = avail[..HEADER].try_into().expect("five bytes");
        if header[0] != APPLICATION_DATA {
            return Err(violation(
                AlertDescription::UnexpectedMessage,
                format!(
                    "a record of type {} where only encrypted records may follow the handshake",
                    header[0]
                ),
            ));
        }
        if header[1] != 3 {
            return Err(violation(
                AlertDescription::DecodeError,
                format!("a record with version bytes {}.{}", header[1], header[2]),
            ));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_CIPHERTEXT {
            return Err(violation(
                AlertDescription::RecordOverflow,
                format!("a record of impossible length {len} (at most 2^14+256)"),
            ));
        }
        if avail.len() < HEADER + len {
            return Ok(false);
        }
        let body_at = self.start + HEADER;
        let body = &mut self.inbuf[body_at..body_at + len];
        // Too short for a tag fails authentication like any other forgery.
        let opened = self
            .rx
            .key
            .open_in_place(self.rx.nonce(), aead::Aad::from(header), body)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError))?;
        self.rx.seq += 1;
        let (kind, kind_at) = inner_type(opened)?;
        self.start += HEADER + len;
        if kind == APPLICATION_DATA {
            self.control.data(kind_at)?;
            self.plain = (body_at, body_at + kind_at);
            return Ok(true);
        }
        let body = self.inbuf[body_at..body_at + kind_at].to_vec();
        let event = self.control.record(kind, &body)?;
        tickets(&mut self.control, &mut self.keyring)?;
        if let Event::KeyUpdate { requested } = event {
            self.rx = Keys::new(self.suite, 0, &self.keyring.next_rx()?)?;
            self.update_due |= requested;
            debug!(requested, "peer rekeyed (TLS 1.3 KeyUpdate)");
        }
        Ok(true)
    }

    /// A read from the peer failed: if it was the peer's protocol error, the alert RFC 8446
    /// names goes out (sealed, best effort, without waiting: the connection is over) and
    /// nothing follows it, not even close_notify.
    fn fail(&mut self, err: io::Error) -> io::Error {
        if let Some(alert) = alert_for(&err)
            && !self.close_sent
        {
            self.close_sent = true;
            if self.seal(ALERT, &[FATAL, u8::from(alert)]).is_ok() {
                self.out.flush_now(&self.tcp);
            }
            debug!(?alert, "sent a fatal alert");
        }
        self.failed = true;
        err
    }

    /// Receives more ciphertext; EOF before close_notify is a truncation.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end + HEADER + MAX_CIPHERTEXT > self.inbuf.len() {
            // Room for a whole record: move the partial one to the front.
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut room = ReadBuf::new(&mut self.inbuf[self.end..]);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut room))?;
        let n = room.filled().len();
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        self.end += n;
        Poll::Ready(Ok(()))
    }

    /// Seals one record of `kind` onto the output.
    fn seal(&mut self, kind: u8, data: &[u8]) -> io::Result<()> {
        let len = u16::try_from(data.len() + 1 + TAG).expect("one record");
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let out = self.out.buf();
        let at = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.push(kind);
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(
                self.tx.nonce(),
                aead::Aad::from(header),
                &mut out[at + HEADER..],
            )
            .map_err(|_| io::Error::other("sealing a TLS record failed"))?;
        out.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
        Ok(())
    }

    /// Sends our KeyUpdate (under the old keys) and switches to the next keys when the peer
    /// asked for it or the key-usage limit is near.
    fn maybe_rekey(&mut self) -> io::Result<()> {
        let limit_near = self.rekey_at.is_some_and(|at| self.tx.seq >= at);
        if self.update_due || limit_near {
            self.seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0])?;
            self.tx = Keys::new(self.suite, 0, &self.keyring.next_tx()?)?;
            self.update_due = false;
            debug!(limit_near, "rekeyed (TLS 1.3 KeyUpdate sent)");
        }
        Ok(())
    }

    /// Writes sealed records out until none are left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_drain(&mut self.tcp, cx)
    }
}

impl AsyncRead for UserStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let (from, to) = this.plain;
            if from < to {
                let n = (to - from).min(out.remaining());
                out.put_slice(&this.inbuf[from..from + n]);
                this.plain.0 += n;
                return Poll::Ready(Ok(()));
            }
            if this.control.peer_closed || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(io::Error::other("the connection has failed")));
            }
            match this.open_next() {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = ready!(this.poll_fill(cx)) {
                        return Poll::Ready(Err(this.fail(e)));
                    }
                }
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            }
        }
    }
}

impl AsyncWrite for UserStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(io::Error::other("the connection has failed")));
        }
        if this.close_sent {
            return Poll::Ready(Err(io::Error::other("write after close_notify")));
        }
        ready!(this.poll_drain(cx))?;
        let take = buf.len().min(RECORDS_PER_WRITE * MAX_RECORD);
        for chunk in buf[..take].chunks(MAX_RECORD) {
            this.maybe_rekey()?;
            this.seal(APPLICATION_DATA, chunk)?;
        }
        // Start sending now; what the socket does not take yet goes at the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    /// close_notify, then the TCP FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            // A fatal alert ended it: no close_notify may follow.
            return Pin::new(&mut this.tcp).poll_shutdown(cx);
        }
        ready!(this.poll_drain(cx))?;
        if !this.close_sent {
            this.seal(ALERT, &[1, 0])?;
            this.close_sent = true;
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alert a control record earns, or `None` when it is accepted.
    fn alert(control: &mut Control, kind: u8, body: &[u8]) -> Option<AlertDescription> {
        control
            .record(kind, body)
            .err()
            .map(|e| alert_for(&e).unwrap_or_else(|| panic!("no alert for {e}")))
    }

    #[test]
    fn key_updates_are_checked_like_rustls_checks_them() {
        use AlertDescription as A;
        let mut control = Control::new(true, false);
        assert_eq!(
            control
                .record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 1])
                .unwrap(),
            Event::KeyUpdate { requested: true }
        );
        let cases: [(&[u8], A); 5] = [
            (
                &[KEY_UPDATE, 0, 0, 1, 0, NEW_SESSION_TICKET],
                A::UnexpectedMessage,
            ),
            (&[KEY_UPDATE, 0, 0, 1, 2], A::IllegalParameter),
            (&[KEY_UPDATE, 0, 0, 0], A::DecodeError),
            (&[KEY_UPDATE, 0, 0, 2, 0, 0], A::DecodeError),
            (
                &[KEY_UPDATE, 0, 0, 1, 0, KEY_UPDATE, 0, 0, 1, 0],
                A::UnexpectedMessage,
            ),
        ];
        for (body, want) in cases {
            let mut control = Control::new(true, false);
            assert_eq!(alert(&mut control, HANDSHAKE, body), Some(want), "{body:?}");
        }
        // 32 in a row are accepted, the 33rd is not; data resets the count.
        let mut control = Control::new(false, false);
        for _ in 0..MAX_KEY_UPDATES {
            assert!(control.record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0]).is_ok());
        }
        control.data(1).unwrap();
        for _ in 0..MAX_KEY_UPDATES {
            assert!(control.record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0]).is_ok());
        }
        assert_eq!(
            alert(&mut control, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0]),
            Some(A::UnexpectedMessage)
        );
    }

    #[test]
    fn handshake_messages_and_alerts_follow_rfc_8446() {
        use AlertDescription as A;
        // A ticket is queued for rustls by a client, refused by a server.
        let ticket = [NEW_SESSION_TICKET, 0, 0, 3, 1, 2, 3];
        let mut client = Control::new(true, false);
        assert_eq!(client.record(HANDSHAKE, &ticket).unwrap(), Event::None);
        assert_eq!(client.tickets, vec![vec![1, 2, 3]]);
        assert_eq!(
            alert(&mut Control::new(false, false), HANDSHAKE, &ticket),
            Some(A::UnexpectedMessage)
        );
        let cases: [(u8, &[u8], Option<A>); 11] = [
            (
                HANDSHAKE,
                &[HELLO_REQUEST, 0, 0, 0],
                Some(A::UnexpectedMessage),
            ),
            (HANDSHAKE, &[99, 0, 0, 0], Some(A::UnexpectedMessage)),
            (HANDSHAKE, &[], Some(A::UnexpectedMessage)),
            (ALERT, &[], Some(A::DecodeError)),
            (ALERT, &[2, 0, 0], Some(A::DecodeError)),
            (ALERT, &[3, 0], Some(A::IllegalParameter)),
            (ALERT, &[1, 90], None),
            (ALERT, &[1, 40], Some(A::DecodeError)),
            (ALERT, &[1, 0], None),
            (CHANGE_CIPHER_SPEC, &[1], Some(A::UnexpectedMessage)),
            (0, &[], Some(A::UnexpectedMessage)),
        ];
        for (kind, body, want) in cases {
            let mut control = Control::new(true, false);
            assert_eq!(alert(&mut control, kind, body), want, "{kind} {body:?}");
        }
        // The peer's own fatal alert is its error, not ours to answer.
        let err = Control::new(true, false)
            .record(ALERT, &[2, 40])
            .unwrap_err();
        assert!(alert_for(&err).is_none(), "{err}");
        // Nothing may come between the fragments of a handshake message.
        let mut control = Control::new(true, false);
        assert_eq!(
            control.record(HANDSHAKE, &[KEY_UPDATE, 0]).unwrap(),
            Event::None
        );
        assert!(control.mid_message());
        let err = control.data(5).unwrap_err();
        assert_eq!(alert_for(&err), Some(A::UnexpectedMessage));
        let mut control = Control::new(true, false);
        control.record(HANDSHAKE, &[KEY_UPDATE, 0]).unwrap();
        assert_eq!(
            control.record(HANDSHAKE, &[0, 1, 0]).unwrap(),
            Event::KeyUpdate { requested: false }
        );
        // More than four warnings, or 32 empty records in a row, are a flood.
        let mut control = Control::new(true, false);
        for _ in 0..MAX_WARNINGS {
            assert!(control.record(ALERT, &[1, 90]).is_ok());
        }
        assert_eq!(
            alert(&mut control, ALERT, &[1, 90]),
            Some(A::UnexpectedMessage)
        );
        let mut control = Control::new(true, false);
        for _ in 0..MAX_EMPTY_RECORDS {
            control.data(0).unwrap();
        }
        assert_eq!(
            control.data(0).err().and_then(|e| alert_for(&e)),
            Some(A::UnexpectedMessage)
        );
        assert!(control.record(ALERT, &[1, 0]).is_ok());
        assert!(control.peer_closed);
    }
}
