//! The TCP side of a TLS connection as rustls sees it: reads with a large read-ahead, or,
//! while a kernel-TLS hand-off may follow, reads that never cross a TLS record boundary.
//!
//! Why the record-exact mode exists: once the handshake is done the kernel takes over the
//! socket, and any byte rustls has read but not yet turned into plaintext would be lost to
//! it. Reading at most up to the end of the current record (header first, then exactly its
//! body) means rustls only ever holds whole records, which it decrypts; what is left in the
//! socket starts on a record boundary. The read-ahead mode is the fast one for user-space TLS:
//! rustls asks for at most 4 KiB per read, so without it a 16 KiB record costs several recvs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Read-ahead size in the fast mode (one recv serves many records).
const READ_AHEAD: usize = 256 * 1024;
/// A TLS record header: type, version (2), length (2).
const HEADER: usize = 5;

/// A connected socket with TLS-aware read buffering; writes pass straight through.
pub struct Wire {
    tcp: TcpStream,
    mode: Mode,
}

enum Mode {
    /// Read-ahead buffer and the unread window `start..end` in it.
    ReadAhead {
        buf: Box<[u8]>,
        start: usize,
        end: usize,
    },
    /// Record-exact reading: the header bytes seen so far, then the body bytes still due;
    /// `pause` once a record is complete (see `poll_read`).
    Exact {
        header: [u8; HEADER],
        have: usize,
        body_left: usize,
        pause: bool,
    },
}

impl Wire {
    /// A wire for a handshake: record-exact when a kernel hand-off may follow (`exact`),
    /// read-ahead (the user-space TLS path from the first byte) otherwise.
    pub fn new(tcp: TcpStream, exact: bool) -> Self {
        let mut wire = Self {
            tcp,
            mode: Mode::Exact {
                header: [0; HEADER],
                have: 0,
                body_left: 0,
                pause: false,
            },
        };
        if !exact {
            wire.set_read_ahead();
        }
        wire
    }

    /// Whether it reads record-exact, i.e. a hand-off was possible when it was made.
    pub fn is_exact(&self) -> bool {
        matches!(self.mode, Mode::Exact { .. })
    }

    /// Whether a record has been partly read: the hand-off must finish it first.
    pub fn mid_record(&self) -> bool {
        match &self.mode {
            Mode::Exact {
                have, body_left, ..
            } => (*have > 0 && *have < HEADER) || *body_left > 0,
            Mode::ReadAhead { start, end, .. } => start != end,
        }
    }

    /// Switches to read-ahead (the hand-off was declined); nothing buffered is lost because
    /// the exact mode buffers nothing.
    pub fn set_read_ahead(&mut self) {
        if let Mode::Exact { .. } = self.mode {
            self.mode = Mode::ReadAhead {
                buf: vec![0; READ_AHEAD].into_boxed_slice(),
                start: 0,
                end: 0,
            };
        }
    }

    /// The socket, for the kernel. Only valid when nothing is buffered (see [`Self::mid_record`]).
    pub fn into_tcp(self) -> TcpStream {
        debug_assert!(!self.mid_record());
        self.tcp
    }

    /// The socket, for options and addresses.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.mode {
            Mode::ReadAhead { buf, start, end } => {
                if start == end {
                    if out.remaining() >= buf.len() {
                        // A large read gains nothing from a detour through our buffer.
                        return Pin::new(&mut this.tcp).poll_read(cx, out);
                    }
                    let mut fill = ReadBuf::new(buf);
                    ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut fill))?;
                    *start = 0;
                    *end = fill.filled().len();
                }
                let n = (*end - *start).min(out.remaining());
                out.put_slice(&buf[*start..*start + n]);
                *start += n;
                Poll::Ready(Ok(()))
            }
            Mode::Exact {
                header,
                have,
                body_left,
                pause,
            } => {
                // After each whole record, one read says "not yet" (and asks to be polled
                // again at once): tokio-rustls' handshake loop then re-checks whether the
                // handshake is over before it reads on, so it never pulls the peer's first
                // application records (up to its plaintext limit) into rustls.
                if std::mem::take(pause) {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if *have == HEADER && *body_left == 0 {
                    *have = 0;
                }
                let want = if *have < HEADER {
                    HEADER - *have
                } else {
                    *body_left
                };
                let want = want.min(out.remaining());
                if want == 0 {
                    return Poll::Ready(Ok(()));
                }
                let mut part = ReadBuf::new(&mut out.initialize_unfilled()[..want]);
                ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut part))?;
                let got = part.filled().len();
                if *have < HEADER {
                    header[*have..*have + got].copy_from_slice(&part.filled()[..got]);
                    *have += got;
                    if *have == HEADER {
                        *body_left = usize::from(u16::from_be_bytes([header[3], header[4]]));
                    }
                } else {
                    *body_left -= got;
                }
                *pause = got > 0 && *have == HEADER && *body_left == 0;
                out.advance(got);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Two records and a tail arrive in one segment; exact reads stop at each boundary.
    #[tokio::test]
    async fn exact_reads_stop_at_record_boundaries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut bytes = vec![22, 3, 3, 0, 3, b'a', b'b', b'c'];
        bytes.extend_from_slice(&[23, 3, 3, 0, 2, b'x', b'y', 21, 3]);
        peer.write_all(&bytes).await.unwrap();
        let mut wire = Wire::new(tcp, true);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 8 {
            let n = wire.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            assert!(got.len() <= 8, "read past the first record: {got:?}");
        }
        assert!(!wire.mid_record());
        while got.len() < 15 {
            let n = wire.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            assert!(got.len() <= 15, "read past the second record: {got:?}");
        }
        assert!(!wire.mid_record());
        let n = wire.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &[21, 3]);
        assert!(wire.mid_record(), "a partial header is mid-record");
        wire.set_read_ahead();
        let mut rest = wire;
        peer.write_all(&[3, 0, 2, 1, 0]).await.unwrap();
        drop(peer);
        let mut tail = Vec::new();
        rest.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, [3, 0, 2, 1, 0]);
    }
}
