//! rustls' unbuffered API driven on tokio: every handshake, and rustls' record layer wherever
//! the kernel does not take the records after one.
//!
//! Why not tokio-rustls: the hand-off to the kernel must start on a
//! record boundary with nothing of the peer's already consumed. Here the handshake reads the
//! socket one whole record at a time and hands rustls exactly that, so when rustls says the
//! handshake is done, every later byte is still in the socket; nothing relies on the internals
//! of someone else's read loop. The keys then come from rustls' supported conversion
//! (`dangerous_into_kernel_connection`), and later generations from its `KernelConnection`
//! ([`Keyring`]). Every fatal error rustls meets queues the alert RFC 8446 names; it is
//! encoded and sent before the error is returned.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CommonState, ConnectionTrafficSecrets, ExtractedSecrets};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::net::{Outbox, Preface};

/// A TLS record header: type, version (2), length (2).
const HEADER: usize = 5;
/// The largest record body rustls reads (TLS 1.2's allowance for compression and padding).
const MAX_BODY: usize = 16 * 1024 + 2048;
/// Received bytes buffered at most after the handshake.
const RECEIVE_BUFFER: usize = 256 * 1024;
/// Plaintext encrypted per write call: a resumable stream's whole frame (1 MiB and its
/// header, [`crate::ends::resume`]) in one, so the frame goes out in one send. (The relay
/// writes at most its 256 KiB buffer at a time.)
pub const WRITE_CHUNK: usize = 65 * 16 * 1024;

/// One side of a connection, as the driver needs it.
pub trait Side: Send + Sized + Unpin + 'static {
    /// rustls' per-side data.
    type Data;
    /// Whether this is the client.
    const CLIENT: bool;
    /// `process_tls_records` on this side.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// What was negotiated, and the peer's certificates.
    fn common(&self) -> &CommonState;
    /// The traffic keys, and what makes the next ones (rustls' supported secret export).
    fn into_kernel(self) -> Result<(ExtractedSecrets, Keyring), rustls::Error>;
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    const CLIENT: bool = true;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
    fn common(&self) -> &CommonState {
        self
    }
    fn into_kernel(self) -> Result<(ExtractedSecrets, Keyring), rustls::Error> {
        let (secrets, conn) = self.dangerous_into_kernel_connection()?;
        Ok((secrets, Keyring::Client(conn)))
    }
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    const CLIENT: bool = false;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
    fn common(&self) -> &CommonState {
        self
    }
    fn into_kernel(self) -> Result<(ExtractedSecrets, Keyring), rustls::Error> {
        let (secrets, conn) = self.dangerous_into_kernel_connection()?;
        Ok((secrets, Keyring::Server(conn)))
    }
}

/// rustls' hold on a connection whose records someone else makes: the next traffic keys of
/// each direction (TLS 1.3 KeyUpdate) and the parsing of tickets.
pub enum Keyring {
    /// Our side is the client.
    Client(KernelConnection<ClientConnectionData>),
    /// Our side is the server.
    Server(KernelConnection<ServerConnectionData>),
}

impl Keyring {
    /// Our next sending keys (after we send a KeyUpdate).
    pub fn next_tx(&mut self) -> io::Result<ConnectionTrafficSecrets> {
        match self {
            Self::Client(c) => c.update_tx_secret(),
            Self::Server(s) => s.update_tx_secret(),
        }
        .map(|(_, keys)| keys)
        .map_err(tls_error)
    }

    /// The peer's next sending keys (after its KeyUpdate).
    pub fn next_rx(&mut self) -> io::Result<ConnectionTrafficSecrets> {
        match self {
            Self::Client(c) => c.update_rx_secret(),
            Self::Server(s) => s.update_rx_secret(),
        }
        .map(|(_, keys)| keys)
        .map_err(tls_error)
    }

    /// A NewSessionTicket's body, parsed by rustls (we never resume, so it is only checked).
    pub fn ticket(&mut self, body: &[u8]) -> Result<(), rustls::Error> {
        match self {
            Self::Client(c) => c.handle_new_session_ticket(body),
            Self::Server(_) => Err(rustls::Error::General("a ticket sent to a server".into())),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Encodes one handshake or alert record rustls has ready onto `out`.
fn encode<D>(
    state: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
    out: &mut Outbox,
) -> io::Result<()> {
    let mut room = 4096;
    loop {
        match state.encode(out.spare(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

/// After rustls failed with `err`, the alert it queued for the peer (if any), encoded onto
/// `out`; the error itself comes back for the caller to return. `incoming` must be what is
/// left of the buffer rustls failed on (it may keep positions into it).
fn queued_alert<S: Side>(
    conn: &mut S,
    incoming: &mut [u8],
    out: &mut Outbox,
    err: rustls::Error,
) -> io::Error {
    // One call only: it hands out what rustls queued (the alert) before it would look at
    // the failed record again, which would fail it a second time.
    if let Ok(ConnectionState::EncodeTlsData(mut state)) = conn.process(incoming).state {
        let _ = encode(&mut state, out);
    }
    tls_error(err)
}

/// Reads exactly one record (its header, then its body) onto `buf`. A header no TLS stack
/// sends is passed on alone: rustls refuses it with its own alert.
async fn read_record(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let at = buf.len();
    buf.resize(at + HEADER, 0);
    tcp.read_exact(&mut buf[at..]).await?;
    let len = usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
    if !(20..=24).contains(&buf[at]) || len > MAX_BODY {
        return Ok(());
    }
    buf.resize(at + HEADER + len, 0);
    tcp.read_exact(&mut buf[at + HEADER..]).await?;
    Ok(())
}

/// Runs the handshake to its end: every certificate check is rustls'. The socket is read one
/// whole record at a time, so it is left exactly at the first record after the handshake.
pub async fn handshake<S: Side>(conn: &mut S, tcp: &mut TcpStream) -> io::Result<()> {
    let mut incoming = Vec::new();
    let mut outgoing = Outbox::default();
    loop {
        let UnbufferedStatus { discard, state } = conn.process(&mut incoming);
        let mut need_more = false;
        let mut done = false;
        match state {
            Ok(ConnectionState::EncodeTlsData(mut state)) => encode(&mut state, &mut outgoing)?,
            Ok(ConnectionState::TransmitTlsData(state)) => {
                tcp.write_all(outgoing.queued()).await?;
                outgoing.clear();
                state.done();
            }
            Ok(ConnectionState::BlockedHandshake) => need_more = true,
            // A server may be allowed to send before the client's Finished; the handshake
            // (and with it the check of the client's certificate) is over only when rustls
            // says so.
            Ok(ConnectionState::WriteTraffic(_)) => done = true,
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // Application data the peer sends before the handshake allows it is refused by
            // rustls itself, with its alert (bad_record_mac under TLS 1.3's handshake keys,
            // unexpected_message under TLS 1.2: the Err arm below; the conformance suite
            // checks both). rustls hands out data only once the peer may send it, which for
            // us is after our own Finished, and one record is read at a time: this arm is
            // not reachable from the wire. Should a later rustls reach it, fail closed.
            Ok(_) => {
                return Err(io::Error::other(
                    "unexpected application data during the handshake",
                ));
            }
            Err(e) => {
                incoming.drain(..discard);
                let err = queued_alert(conn, &mut incoming, &mut outgoing, e);
                last_words(tcp, outgoing.queued()).await;
                return Err(err);
            }
        }
        incoming.drain(..discard);
        if done {
            if !conn.common().is_handshaking() {
                debug_assert!(incoming.is_empty());
                return Ok(());
            }
            need_more = true;
        }
        if need_more {
            read_record(tcp, &mut incoming).await?;
        }
    }
}

/// How long a failed handshake waits for its alert to reach the peer.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// Sends a failed handshake's alert so that it arrives: the alert, then FIN, then whatever
/// the peer still sends is read and dropped (for at most [`LAST_WORDS`]) until it closes.
/// Closing a socket with unread data resets it at once, and the kernel then drops what it
/// had not sent yet, alert included: the peer (a donor busy writing) would see only a reset
/// and report a truncated stream instead of the certificate verdict.
async fn last_words(tcp: &mut TcpStream, alert: &[u8]) {
    let drain = async {
        tcp.write_all(alert).await?;
        tcp.shutdown().await?;
        let mut sink = vec![0u8; 64 * 1024];
        while tcp.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(LAST_WORDS, drain).await;
}

/// A connection whose records stay rustls' after the handshake.
pub struct RustlsStream<S> {
    conn: S,
    tcp: TcpStream,
    /// Received bytes not yet consumed by rustls: `incoming[start..filled]`.
    incoming: Box<[u8]>,
    start: usize,
    filled: usize,
    /// The tail of a decrypted record the caller's buffer could not take.
    plain: Preface,
    /// Encoded records not yet sent.
    out: Outbox,
    peer_closed: bool,
    close_queued: bool,
    /// A fatal error happened (its alert, if any, is queued): nothing more either way.
    failed: bool,
}

/// What processing the received bytes came to.
enum Step {
    /// Everything received is processed; more must be read.
    Idle,
    /// Plaintext was written into the caller's buffer by the write request (bytes taken).
    Wrote(usize),
}

impl<S: Side> RustlsStream<S> {
    /// Takes over a connection whose handshake [`handshake`] finished.
    pub fn new(conn: S, tcp: TcpStream) -> Self {
        Self {
            conn,
            tcp,
            incoming: vec![0; RECEIVE_BUFFER + HEADER + MAX_BODY].into_boxed_slice(),
            start: 0,
            filled: 0,
            plain: Preface::default(),
            out: Outbox::default(),
            peer_closed: false,
            close_queued: false,
            failed: false,
        }
    }

    /// The connection's negotiated parameters.
    pub fn common(&self) -> &CommonState {
        self.conn.common()
    }

    /// Lets rustls process what was received: plaintext goes straight into `read` (what does
    /// not fit waits in `plain`, and processing stops there: the rest stays ciphertext until
    /// the next read), records rustls wants sent (KeyUpdate answers, alerts) to `out`. With
    /// `write`, once rustls may send, encrypts a chunk of it (or, with `close`, our
    /// close_notify).
    fn drive(
        &mut self,
        mut read: Option<&mut ReadBuf<'_>>,
        write: Option<&[u8]>,
        close: bool,
    ) -> io::Result<Step> {
        loop {
            let UnbufferedStatus { discard, state } = self
                .conn
                .process(&mut self.incoming[self.start..self.filled]);
            let mut step = None;
            match state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let payload = record.map_err(tls_error)?.payload;
                        let took = match read.as_deref_mut() {
                            Some(out) => {
                                let n = payload.len().min(out.remaining());
                                out.put_slice(&payload[..n]);
                                n
                            }
                            None => 0,
                        };
                        self.plain.push(&payload[took..]);
                    }
                    // A read stops once its buffer is full; a write goes on to encrypt (the
                    // plaintext waits in `plain` for the next read).
                    if read
                        .as_ref()
                        .is_some_and(|r| r.remaining() == 0 || self.plain.pending())
                    {
                        step = Some(Step::Idle);
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut state)) => {
                    encode(&mut state, &mut self.out)?;
                }
                Ok(ConnectionState::TransmitTlsData(state)) => state.done(),
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    step = Some(Step::Idle);
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    step = Some(Step::Idle);
                    let out = &mut self.out;
                    if close && !self.close_queued {
                        let n = traffic
                            .queue_close_notify(out.spare(64))
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        out.commit(n);
                        self.close_queued = true;
                    } else if let Some(data) = write {
                        let take = data.len().min(WRITE_CHUNK);
                        let mut room = take + take / 64 + 1024;
                        loop {
                            match traffic.encrypt(&data[..take], out.spare(room)) {
                                Ok(n) => {
                                    out.commit(n);
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                    required_size,
                                })) => room = required_size,
                                Err(e) => return Err(io::Error::other(e.to_string())),
                            }
                        }
                        step = Some(Step::Wrote(take));
                    }
                }
                Ok(ConnectionState::BlockedHandshake) => step = Some(Step::Idle),
                Ok(_) => {
                    return Err(io::Error::other(
                        "unexpected early data after the handshake",
                    ));
                }
                Err(e) => {
                    self.consume(discard);
                    self.failed = true;
                    let rest = &mut self.incoming[self.start..self.filled];
                    return Err(queued_alert(&mut self.conn, rest, &mut self.out, e));
                }
            }
            self.consume(discard);
            if let Some(step) = step {
                return Ok(step);
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        }
    }

    /// Room to receive into, with a whole record's worth guaranteed: a partial record moves
    /// to the front when the end of the buffer is near.
    fn make_room(&mut self) {
        if self.filled + HEADER + MAX_BODY > self.incoming.len() {
            self.incoming.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
    }

    /// Sends what is encoded; `Ready(Ok)` once all of it is out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_drain(&mut self.tcp, cx)
    }

    /// A fatal error: its alert goes out without waiting (the connection is over).
    fn fail(&mut self, err: io::Error) -> io::Error {
        self.failed = true;
        self.out.flush_now(&self.tcp);
        err
    }
}

impl<S: Side> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain.deliver(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(io::Error::other("the connection has failed")));
            }
            let before = buf.filled().len();
            if let Err(e) = this.drive(Some(buf), None, false) {
                return Poll::Ready(Err(this.fail(e)));
            }
            // KeyUpdate answers go out as soon as the socket takes them. A send side that is
            // gone already (the peer reset) must not hide what the peer sent before it went:
            // its last words, an alert or a refusal, are still to be read.
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) {
                    return Poll::Ready(Err(e));
                }
                this.out.clear();
            }
            if buf.filled().len() > before || this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            this.make_room();
            let mut room = ReadBuf::new(&mut this.incoming[this.filled..]);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut room))?;
            let n = room.filled().len();
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            this.filled += n;
        }
    }
}

impl<S: Side> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(io::Error::other("the connection has failed")));
        }
        ready!(this.poll_drain(cx))?;
        match this.drive(None, Some(buf), false) {
            Ok(Step::Wrote(n)) => {
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(n))
            }
            Ok(Step::Idle) => Poll::Ready(Err(io::Error::other(
                "rustls cannot send application data on this connection",
            ))),
            Err(e) => Poll::Ready(Err(this.fail(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    /// close_notify, then the TCP FIN; after a fatal alert only the FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.failed && !this.close_queued {
            ready!(this.poll_drain(cx))?;
            if let Err(e) = this.drive(None, None, true) {
                return Poll::Ready(Err(this.fail(e)));
            }
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
