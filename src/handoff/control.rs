//! The records after the handshake that are not application data, on the kernel path: the
//! kernel decrypts every record but hands the alerts and post-handshake handshake messages
//! to us, typed by a control message, and this module decides what each one means.
//!
//! Nothing is accepted that rustls' own record layer refuses, and every protocol error the
//! peer makes is a [`Violation`] carrying the alert RFC 8446 names for it (bad_record_mac,
//! record_overflow, decode_error, unexpected_message, illegal_parameter), which the kernel
//! stream seals and sends before it closes. Where rustls keeps the records (every connection
//! without kernel TLS) rustls does all of this itself.

use std::fmt;
use std::io;

use rustls::AlertDescription;
use tracing::debug;

use crate::handoff::unbuffered::Keyring;

/// Content type of an alert record.
pub const ALERT: u8 = 21;
/// Content type of a handshake record.
pub const HANDSHAKE: u8 = 22;
/// Content type of an application data record.
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
/// Bound on post-handshake handshake messages we reassemble (tickets are small).
const MAX_HANDSHAKE: usize = 64 * 1024;

/// What a control record asked of the stream.
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
    /// TLS 1.3 (else 1.2: no post-handshake messages at all, and warning alerts are
    /// tolerated as rustls tolerates them).
    tls13: bool,
    /// A handshake message's fragments so far.
    handshake: Vec<u8>,
    /// Servers' tickets completed and not yet given to rustls ([`tickets`]).
    tickets: Vec<Vec<u8>>,
    key_updates: u8,
    empty_records: u8,
    warnings: u8,
}

impl Control {
    /// The control state of one side's TLS 1.3 stream whose peer may already have closed
    /// (rustls saw the close_notify before the hand-off).
    pub fn new(client: bool, peer_closed: bool) -> Self {
        Self::for_version(client, peer_closed, true)
    }

    /// The same for a TLS 1.2 (`tls13` false) or 1.3 stream.
    pub fn for_version(client: bool, peer_closed: bool, tls13: bool) -> Self {
        Self {
            peer_closed,
            client,
            tls13,
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
            if description == AlertDescription::UserCanceled || !self.tls13 {
                // TLS 1.2 warnings are not fatal (RFC 5246 7.2; rustls logs and goes on).
                debug!("peer sent a warning alert {description:?}");
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
            if !self.tls13 {
                // TLS 1.2 has no post-handshake messages (rustls: inappropriate_message);
                // renegotiation is refused with it too, stricter than rustls' warning.
                return Err(violation(
                    AlertDescription::UnexpectedMessage,
                    format!(
                        "a handshake message (type {kind}) after a TLS 1.2 handshake, which has \
                         none"
                    ),
                ));
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
    fn tls12_has_no_post_handshake_messages_and_tolerates_warnings() {
        let tls12 = |client| Control::for_version(client, false, false);
        for client in [true, false] {
            // A KeyUpdate (type 24), a ticket, a HelloRequest: each unexpected_message.
            for body in [
                &[KEY_UPDATE, 0, 0, 1, 0][..],
                &[4, 0, 0, 0][..],
                &[0, 0, 0, 0][..],
            ] {
                assert_eq!(
                    alert(&mut tls12(client), HANDSHAKE, body),
                    Some(AlertDescription::UnexpectedMessage)
                );
            }
        }
        // A warning other than user_canceled passes under 1.2 (decode_error under 1.3)...
        let no_renegotiation = [WARNING, 100];
        let mut control = tls12(true);
        assert!(matches!(
            control.record(ALERT, &no_renegotiation),
            Ok(Event::None)
        ));
        assert_eq!(
            alert(&mut Control::new(true, false), ALERT, &no_renegotiation),
            Some(AlertDescription::DecodeError)
        );
        // ...up to the same bound on repeats.
        for _ in 1..MAX_WARNINGS {
            assert!(control.record(ALERT, &no_renegotiation).is_ok());
        }
        assert_eq!(
            alert(&mut control, ALERT, &no_renegotiation),
            Some(AlertDescription::UnexpectedMessage)
        );
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
