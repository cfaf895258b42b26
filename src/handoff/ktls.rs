//! Kernel TLS, and the hand-off of a finished rustls handshake to whatever makes the records
//! from then on: the kernel, or rustls itself ([`RustlsStream`]).
//!
//! rustls does the handshake (certificate checks stay in one place) through its unbuffered
//! API, which leaves the socket exactly at the first record after it ([`super::unbuffered`]). Then,
//! when the kernel takes the negotiated cipher, the traffic keys and record sequence numbers
//! move into the socket and the kernel encrypts and decrypts; the keys, and every later
//! generation, come from rustls' supported export (`dangerous_into_kernel_connection`).
//! Everything else (no kTLS in the kernel, a cipher it lacks, `--no-ktls` /
//! `SST_TUNNEL_KTLS=off`) stays on rustls' own records.
//!
//! After the kernel hand-off the kernel returns non-data records to us ([`control::Control`]):
//! close_notify ends the stream cleanly, any other alert is an error, a server's tickets are
//! parsed by rustls and dropped (we never resume). TLS 1.3 KeyUpdates go both ways where the
//! kernel takes new keys (Linux 6.14 and later, probed once per process): a peer's is
//! followed with its next keys from rustls' `KernelConnection`, and we send our own when the
//! peer asks or before AES-GCM's key-usage limit. Older kernels cannot: there a peer's
//! KeyUpdate is a clear error and the sender stops before the limit (ChaCha20-Poly1305, which
//! has none, is preferred). A protocol error of the peer's is answered with the alert RFC 8446
//! names, sent through the kernel.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use rustls::{CommonState, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use crate::fastpath::{self, Cipher, Direction, TlsVersion};
use crate::handoff::control::{
    self, ALERT, APPLICATION_DATA, Control, Event, HANDSHAKE, KEY_UPDATE, MAX_RECORD,
};
use crate::handoff::unbuffered::{Keyring, RustlsStream, Side};
use crate::net::Preface;
use crate::tls;

/// Whether a hand-off may be attempted at all; decides how the handshake reads the socket
/// (record-exact when it may). Probes the kernel once per process.
pub fn wanted() -> bool {
    if fastpath::ktls_disabled() {
        return false;
    }
    match fastpath::ktls_probe(Cipher::Aes128Gcm)
        .or_else(|_| fastpath::ktls_probe(Cipher::Chacha20Poly1305))
    {
        Ok(()) => true,
        Err(why) => {
            static LOGGED: AtomicBool = AtomicBool::new(false);
            if !LOGGED.swap(true, Ordering::Relaxed) {
                debug!("kernel TLS unavailable, using the buffered path: {why}");
            }
            false
        }
    }
}

/// A connection after the handshake: records made by rustls or by the kernel.
pub enum Stream<S> {
    /// rustls' records.
    Rustls(Box<RustlsStream<S>>),
    /// The kernel's TLS socket.
    Kernel(Box<KernelStream>),
}

/// Moves a finished handshake to the kernel when it can; otherwise the records stay rustls'.
/// An error means the connection is unusable (the kernel refused keys after the point of no
/// return).
pub fn hand_off<S: Side>(conn: S, tcp: TcpStream) -> io::Result<Stream<S>> {
    let common = conn.common();
    // wanted() is false (and logged once) where the kernel has no TLS or --no-ktls is set.
    let kernel = wanted()
        && offload_check(&tcp, common)
            .inspect_err(|why| debug!("not offloading to kernel TLS: {why}"))
            .is_ok();
    if !kernel {
        return Ok(Stream::Rustls(Box::new(RustlsStream::new(conn, tcp))));
    }
    let budget = tls::confidentiality_limit(common);
    let version = match common.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
        _ => TlsVersion::Tls13,
    };
    // From here on the socket's records are no longer rustls' to make.
    let (secrets, keyring) = conn
        .into_kernel()
        .map_err(|e| io::Error::other(format!("TLS record hand-off: {e}")))?;
    let (tx_seq, tx) = &secrets.tx;
    let (rx_seq, rx) = &secrets.rx;
    for (direction, seq, keys) in [(Direction::Tx, *tx_seq, tx), (Direction::Rx, *rx_seq, rx)] {
        fastpath::ktls_set_keys(tcp.as_fd(), direction, version, seq, keys).map_err(|e| {
            io::Error::other(format!(
                "kernel TLS refused the {direction:?} keys after the hand-off: {e} (use --no-ktls)"
            ))
        })?;
    }
    // One record is kept for our close_notify (or the KeyUpdate that renews the keys).
    let records_left = budget.map(|limit| limit.saturating_sub(*tx_seq).saturating_sub(1));
    let rekeys = version == TlsVersion::Tls13 && Cipher::of(tx).is_some_and(fastpath::ktls_rekeys);
    debug!(
        tx_seq,
        rx_seq, rekeys, "handed the connection to kernel TLS"
    );
    let tcp = Arc::new(tcp);
    Ok(Stream::Kernel(Box::new(KernelStream {
        errors: ErrorWatch::default(),
        tcp,
        preface: Preface::default(),
        control: Control::for_version(S::CLIENT, false, version == TlsVersion::Tls13),
        keyring,
        rekeys,
        update_due: false,
        limit: budget,
        records_left,
        scratch: Vec::new(),
        close_sent: false,
        failed: false,
    })))
}

/// Everything that can still say "no" without harming the connection: the suite, the
/// kernel's support for its cipher, attaching the kernel's TLS layer.
fn offload_check(tcp: &TcpStream, common: &CommonState) -> Result<(), String> {
    let suite = common
        .negotiated_cipher_suite()
        .ok_or("no suite negotiated")?;
    let cipher = Cipher::of_suite(suite.suite()).ok_or_else(|| {
        format!(
            "{} has no kernel implementation",
            suite.suite().as_str().unwrap_or("this suite")
        )
    })?;
    fastpath::ktls_probe(cipher)?;
    fastpath::ktls_attach(tcp.as_fd()).map_err(|e| format!("TCP_ULP \"tls\": {e}"))
}

/// A TCP socket whose TLS records the kernel encrypts and decrypts.
pub struct KernelStream {
    /// Shared with the [`ErrorWatch`]'s waiting future, which must own its socket.
    tcp: Arc<TcpStream>,
    /// Wakes a waiting reader when the kernel aborts the socket (EPOLLERR alone).
    errors: ErrorWatch,
    /// The part of a record a small read could not take, delivered first.
    preface: Preface,
    /// Alerts and post-handshake messages (the peer's close_notify among them).
    control: Control,
    /// rustls' hold on the connection: tickets parsed, and the next keys of either
    /// direction for a kernel that takes them.
    keyring: Keyring,
    /// This kernel takes new TLS 1.3 keys (Linux 6.14+), so KeyUpdates go both ways.
    rekeys: bool,
    /// The peer asked for our KeyUpdate: it goes out before our next record.
    update_due: bool,
    /// The suite's key-usage limit in records (`None`: none).
    limit: Option<u64>,
    /// Records we may still send under the cipher's key-usage limit (`None`: no limit).
    records_left: Option<u64>,
    /// Room for a whole record when the caller's buffer is smaller.
    scratch: Vec<u8>,
    close_sent: bool,
    /// A read failed (and any alert owed was sent): nothing more goes either way.
    failed: bool,
}

impl KernelStream {
    /// The socket (for splice and readiness).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether plaintext a small read left over is still to be delivered (it must come
    /// first), or the peer's close_notify has arrived: either way the receiving direction is
    /// the copy engine's, which knows both.
    pub fn has_preface(&self) -> bool {
        self.preface.pending() || self.control.peer_closed
    }

    /// Sends our KeyUpdate through the kernel and gives it our next keys, when the peer
    /// asked for one or the key-usage limit is reached and this kernel can rekey; `Ready(Ok)`
    /// at once otherwise. Runs before every send.
    pub fn poll_rekey(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let at_limit = self.records_left == Some(0);
        if !self.rekeys || !(self.update_due || at_limit) {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let fd = self.tcp.as_fd();
            match self.tcp.try_io(Interest::WRITABLE, || {
                fastpath::ktls_send_record(fd, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0])
            }) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(kernel_error(e))),
            }
        }
        let keys = self.keyring.next_tx()?;
        fastpath::ktls_set_keys(self.tcp.as_fd(), Direction::Tx, TlsVersion::Tls13, 0, &keys)
            .map_err(|e| io::Error::other(format!("kernel TLS refused our next keys: {e}")))?;
        self.records_left = self.limit.map(|l| l.saturating_sub(1));
        debug!(
            limit = at_limit,
            requested = self.update_due,
            "rekeyed (TLS 1.3 KeyUpdate sent through kernel TLS)"
        );
        self.update_due = false;
        Poll::Ready(Ok(()))
    }

    /// Counts `n` bytes of data received by splice (our record checks see no data record
    /// then, only that some came: enough for the limits that count records between them).
    pub fn received(&mut self, n: usize) {
        let _ = self.control.data(n);
    }

    /// A splice from the socket returned 0: the end of the stream, or an empty data record
    /// the kernel passed through (RFC 8446 allows them)? A peek tells: 0 only at the end;
    /// otherwise the empty record is counted like any other (rustls' bound on runs of them).
    pub fn empty_or_end(&mut self) -> io::Result<bool> {
        let room = record_room(&mut self.scratch);
        let at_end = match fastpath::ktls_peek(self.tcp.as_fd(), room) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // A control record is next (the kernel will not splice it): not the end.
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => false,
            Err(e) => return Err(self.fail(refused_record(e))),
        };
        if !at_end && let Err(e) = self.control.data(0) {
            return Err(self.fail(e));
        }
        Ok(at_end)
    }

    /// A splice from the socket said EINVAL: a control record is next, or (the same errno,
    /// and that call took it) the kernel aborted the socket for a record header it refused.
    /// A control record is there to peek at; after an abort nothing ever is, and a reader
    /// would wait for the peer to leave. So a peek that finds nothing is the abort.
    pub fn control_or_abort(&mut self) -> io::Result<()> {
        let room = record_room(&mut self.scratch);
        match fastpath::ktls_peek(self.tcp.as_fd(), room) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                debug!("splice said EINVAL and no record is next: kernel TLS aborted the socket");
                let refused = io::Error::from_raw_os_error(nix::libc::EINVAL);
                Err(self.fail(refused_record(refused)))
            }
            Err(e) => Err(self.fail(refused_record(e))),
        }
    }

    /// How many of `want` bytes may be sent now under the cipher's key-usage limit; an
    /// error once it is reached.
    pub fn send_allowance(&self, want: usize) -> io::Result<usize> {
        let Some(left) = self.records_left else {
            return Ok(want);
        };
        if left == 0 {
            return Err(io::Error::other(
                "the cipher's key-usage limit is reached and this kernel's TLS layer cannot \
                 rekey: stopping rather than weaken AES-GCM (rerun with --no-ktls, which \
                 rekeys, or choose ChaCha20-Poly1305 with --ciphers)",
            ));
        }
        let most = usize::try_from(left.saturating_mul(MAX_RECORD as u64)).unwrap_or(usize::MAX);
        Ok(want.min(most))
    }

    /// Counts what one send call of `sent` bytes cost: the kernel cuts records of at most
    /// 16 KiB and ends one per call, so at most ceil(n / 16 KiB) records (an upper bound).
    pub fn charge(&mut self, sent: usize) {
        if let Some(left) = self.records_left.as_mut() {
            *left = left.saturating_sub(sent.div_ceil(MAX_RECORD) as u64);
        }
    }

    /// Pending until the kernel aborts the socket (a record it refused), then its error, as
    /// a failed read (see [`ErrorWatch`]); for a reader that waits on readability elsewhere.
    pub fn poll_abort(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let e = ready!(self.errors.poll(&self.tcp, cx));
        Poll::Ready(self.fail(e))
    }

    /// Reads the control record the kernel has next (a splice from the socket said EINVAL)
    /// and handles it, with the rest of a handshake message it starts (nothing may come
    /// between its fragments, so they are read here rather than spliced): `Ready(Ok(true))`
    /// for close_notify, `Ready(Ok(false))` for a skipped ticket, an error for anything else.
    pub fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let room = record_room(&mut self.scratch);
            let (kind, n) = match ready!(poll_recv(&self.tcp, &mut self.errors, cx, room)) {
                Ok(got) => got,
                Err(e) => return Poll::Ready(Err(self.fail(e))),
            };
            if kind == APPLICATION_DATA {
                let e = if n == 0 {
                    io::ErrorKind::UnexpectedEof.into()
                } else if self.control.mid_message() {
                    control::violation(
                        rustls::AlertDescription::UnexpectedMessage,
                        "application data between the fragments of a handshake message",
                    )
                } else {
                    io::Error::other("kernel TLS returned data where a control record was due")
                };
                return Poll::Ready(Err(self.fail(e)));
            }
            let body = self.scratch[..n].to_vec();
            if let Err(e) = self.control(kind, &body) {
                return Poll::Ready(Err(self.fail(e)));
            }
            if !self.control.mid_message() {
                return Poll::Ready(Ok(self.control.peer_closed));
            }
        }
    }

    /// Handles one control record: close_notify marks the peer closed, a ticket is skipped,
    /// a KeyUpdate is an error (the kernels we can test cannot take new keys), anything else
    /// is an error.
    fn control(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        let event = self.control.record(kind, body)?;
        control::tickets(&mut self.control, &mut self.keyring)?;
        match event {
            Event::None => Ok(()),
            // The kernel holds back what follows until it has the peer's next keys.
            Event::KeyUpdate { requested } if self.rekeys => {
                let keys = self.keyring.next_rx()?;
                fastpath::ktls_set_keys(
                    self.tcp.as_fd(),
                    Direction::Rx,
                    TlsVersion::Tls13,
                    0,
                    &keys,
                )
                .map_err(|e| {
                    io::Error::other(format!("kernel TLS refused the peer's next keys: {e}"))
                })?;
                self.update_due |= requested;
                debug!(
                    requested,
                    "peer rekeyed (TLS 1.3 KeyUpdate followed through kernel TLS)"
                );
                Ok(())
            }
            Event::KeyUpdate { .. } => Err(io::Error::other(
                "the peer rekeyed (TLS 1.3 KeyUpdate) and this kernel's TLS layer cannot take \
                 new keys (Linux 6.14 and later can); rerun with --no-ktls",
            )),
        }
    }

    /// A read from the peer failed: if it was the peer's protocol error (a record the kernel
    /// could not authenticate among them), the alert RFC 8446 names goes out through the
    /// kernel, best effort and without waiting; nothing follows it, not even close_notify.
    fn fail(&mut self, err: io::Error) -> io::Error {
        if let Some(alert) = control::alert_for(&err)
            && !self.close_sent
        {
            self.close_sent = true;
            let sent = fastpath::ktls_send_record(self.tcp.as_fd(), ALERT, &[2, u8::from(alert)]);
            debug!(
                ?alert,
                ok = sent.is_ok(),
                "sent a fatal alert through kernel TLS"
            );
        }
        self.failed = true;
        err
    }
}

/// Room for one whole record (a control record must be received whole).
fn record_room(scratch: &mut Vec<u8>) -> &mut [u8] {
    if scratch.len() < MAX_RECORD {
        scratch.resize(MAX_RECORD, 0);
    }
    scratch
}

/// One non-blocking receive from the kTLS socket once it is readable (or aborted):
/// `(content type, bytes)`, with the kernel's errors in TLS terms.
fn poll_recv(
    tcp: &Arc<TcpStream>,
    errors: &mut ErrorWatch,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<(u8, usize)>> {
    loop {
        match tcp.poll_read_ready(cx) {
            Poll::Ready(ready) => ready?,
            Poll::Pending => return errors.poll(tcp, cx).map(Err),
        }
        match tcp.try_io(Interest::READABLE, || fastpath::ktls_recv(tcp.as_fd(), buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other.map_err(refused_record)),
        }
    }
}

/// A record the kernel refuses itself (a bad tag, a header or length it will not parse)
/// makes it abort the socket and report only EPOLLERR, which does not wake a reader waiting
/// for readability (tokio's read readiness leaves errors out): the tunnel would wait until the
/// peer left, then report a truncation instead of the violation. So a waiting reader also
/// waits for error readiness, through a future that owns its share of the socket.
#[derive(Default)]
pub struct ErrorWatch {
    armed: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl ErrorWatch {
    /// Ready with `tcp`'s pending error (in TLS terms) once the kernel reports one;
    /// otherwise pending, and woken by it.
    pub fn poll(&mut self, tcp: &Arc<TcpStream>, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let armed = self.armed.get_or_insert_with(|| {
                let tcp = Arc::clone(tcp);
                Box::pin(async move {
                    let _ = tcp.ready(Interest::ERROR).await;
                })
            });
            ready!(armed.as_mut().poll(cx));
            self.armed = None;
            if let Some(e) = fastpath::socket_error(tcp.as_fd()) {
                debug!("kernel TLS aborted the socket: {e}");
                return Poll::Ready(refused_record(e));
            }
            debug!("error readiness on the kernel TLS socket, but no error pending");
            // Error readiness with no error left (a read took it): clear it, wait again.
            let _ = tcp.try_io(Interest::ERROR, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }
}

/// A receive the kernel failed, in TLS terms: besides [`kernel_error`]'s, a record longer than
/// TLS allows (EMSGSIZE) and a record header it refused (EINVAL); the kernel aborts the socket
/// on those and on EBADMSG, so the alert they earn cannot be sent after them. EKEYEXPIRED is
/// the kernel waiting for keys we will not give.
fn refused_record(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(nix::libc::EMSGSIZE) => control::violation(
            rustls::AlertDescription::RecordOverflow,
            "a record longer than TLS allows (refused by kernel TLS)",
        ),
        // The kernel checks the version bytes before decrypting; RFC 8446 says to ignore
        // them, but they are in the record's additional data, so the record cannot
        // authenticate: bad_record_mac, as the AEAD would have said.
        Some(nix::libc::EINVAL) => control::violation(
            rustls::AlertDescription::BadRecordMac,
            "a record whose header cannot authenticate (wrong version bytes, refused by kernel \
             TLS)",
        ),
        // A kernel that rekeys holds back everything after a handshake record that starts a
        // KeyUpdate; we only give it keys once the KeyUpdate is whole, so this is a KeyUpdate
        // split across records, which rustls refuses too (the socket still sends: the alert
        // goes out).
        Some(nix::libc::EKEYEXPIRED) => control::violation(
            rustls::AlertDescription::UnexpectedMessage,
            "a KeyUpdate split across records",
        ),
        _ => kernel_error(e),
    }
}

/// The kernel's errors in TLS terms: EBADMSG is a record that failed authentication.
pub fn kernel_error(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::libc::EBADMSG) {
        io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError)
    } else {
        e
    }
}

impl AsyncRead for KernelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.preface.deliver(out) {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.control.peer_closed || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // A control record must fit whole, so small reads go through a scratch buffer.
            let direct = out.remaining() >= MAX_RECORD;
            let buf = if direct {
                out.initialize_unfilled()
            } else {
                record_room(&mut this.scratch)
            };
            let (kind, n) = match ready!(poll_recv(&this.tcp, &mut this.errors, cx, buf)) {
                Ok(got) => got,
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            };
            if kind != APPLICATION_DATA {
                let body = buf[..n].to_vec();
                if let Err(e) = this.control(kind, &body) {
                    return Poll::Ready(Err(this.fail(e)));
                }
                continue;
            }
            if n == 0 {
                // The end of the stream, or an empty record the kernel passed through.
                if this.empty_or_end()? {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                continue;
            }
            if let Err(e) = this.control.data(n) {
                return Poll::Ready(Err(this.fail(e)));
            }
            if direct {
                out.advance(n);
            } else {
                let fit = n.min(out.remaining());
                out.put_slice(&this.scratch[..fit]);
                this.preface.push(&this.scratch[fit..n]);
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for KernelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(io::Error::other("the connection has failed")));
        }
        ready!(this.poll_rekey(cx))?;
        let buf = &buf[..this.send_allowance(buf.len())?];
        loop {
            ready!(this.tcp.poll_write_ready(cx))?;
            match this.tcp.try_write(buf) {
                Ok(n) => {
                    this.charge(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(kernel_error(e))),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// close_notify through the kernel (an alert record), then the TCP FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // After a fatal alert (`failed`) no close_notify may follow: close_sent is set.
        while !this.close_sent {
            ready!(this.tcp.poll_write_ready(cx))?;
            let fd = this.tcp.as_fd();
            match this.tcp.try_io(Interest::WRITABLE, || {
                fastpath::ktls_send_record(fd, ALERT, &[1, 0])
            }) {
                Ok(_) => this.close_sent = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(kernel_error(e))),
            }
        }
        // What tokio's own poll_shutdown does (the socket is shared with the error watch).
        Poll::Ready(socket2::SockRef::from(&*this.tcp).shutdown(std::net::Shutdown::Write))
    }
}

impl<S: Side> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Rustls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Self::Kernel(k) => Pin::new(&mut **k).poll_read(cx, buf),
        }
    }
}

impl<S: Side> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Rustls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Self::Kernel(k) => Pin::new(&mut **k).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Rustls(s) => Pin::new(&mut **s).poll_flush(cx),
            Self::Kernel(k) => Pin::new(&mut **k).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Rustls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Self::Kernel(k) => Pin::new(&mut **k).poll_shutdown(cx),
        }
    }
}
