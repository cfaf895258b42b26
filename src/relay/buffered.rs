//! The portable copy engine: one buffer per direction, greedy reads, half-close.
//!
//! Each direction reads as much as is ready (up to [`BUF_SIZE`]) before writing once, so a
//! 16 KiB TLS record or a small pipe read does not cost a write syscall each. Buffers are
//! allocated once per connection; nothing is allocated per chunk.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes buffered per direction.
pub const BUF_SIZE: usize = 256 * 1024;

/// Largest plaintext in one TLS record: how rustls fragments a write.
const MAX_RECORD_PAYLOAD: u64 = 16 * 1024;

/// What went wrong in one direction, and on which side.
#[derive(Debug)]
pub enum Fault {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing or flushing the destination failed.
    Write(io::Error),
    /// Every byte was written, but shutting the destination down (close_notify + FIN) failed.
    Shutdown(io::Error),
}

/// One direction of the copy: source -> buffer -> destination.
pub struct Pump {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The source reached EOF.
    eof: bool,
    /// Written but maybe not yet flushed (rustls may hold records until a flush).
    dirty: bool,
    /// EOF seen, everything written, destination shut down.
    pub done: bool,
    /// Bytes delivered to the destination.
    pub moved: u64,
    /// TLS records the destination may still take (set on the direction into TLS 1.2).
    pub record_budget: Option<u64>,
    /// TLS records written so far (a write of n bytes is ceil(n / 16 KiB) records).
    records: u64,
}

impl Pump {
    /// A pump with its buffer.
    pub fn new() -> Self {
        Self {
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            dirty: false,
            done: false,
            moved: 0,
            record_budget: None,
            records: 0,
        }
    }

    /// Treats the source as ended: what is buffered is still written, then the destination
    /// is shut down.
    pub fn stop_reading(&mut self) {
        self.eof = true;
    }

    /// Moves bytes until both sides would block, or the direction is finished (`Ready(Ok)`):
    /// source EOF, all bytes written, destination shut down. `progress` is set when any byte
    /// moved, for the idle timer.
    pub fn poll_pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut source: Pin<&mut R>,
        mut dest: Pin<&mut W>,
        progress: &mut bool,
    ) -> Poll<Result<(), Fault>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut read_pending = false;
            if self.start == self.end {
                // Drained: reuse the whole buffer.
                self.start = 0;
                self.end = 0;
            }
            if !self.eof && self.end < self.buf.len() {
                let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
                match source.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            self.end += n;
                            *progress = true;
                            // Greedy: keep reading while data is ready and room is left.
                            continue;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Read(e))),
                    Poll::Pending => read_pending = true,
                }
            }
            if self.start < self.end {
                if self
                    .record_budget
                    .is_some_and(|budget| self.records >= budget)
                {
                    return Poll::Ready(Err(Fault::Write(io::Error::other(format!(
                        "the TLS 1.2 key usage limit is reached after {} records ({} bytes): \
                         stopping rather than let the stream end early; use TLS 1.3, which \
                         rekeys, for transfers this large",
                        self.records, self.moved
                    )))));
                }
                match dest
                    .as_mut()
                    .poll_write(cx, &self.buf[self.start..self.end])
                {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Fault::Write(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.moved += n as u64;
                        self.records += (n as u64).div_ceil(MAX_RECORD_PAYLOAD);
                        self.dirty = true;
                        *progress = true;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Write(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // The buffer is empty here.
            if self.dirty {
                match dest.as_mut().poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.dirty = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Write(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.eof {
                return match dest.as_mut().poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        self.done = true;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(Fault::Shutdown(e))),
                    Poll::Pending => Poll::Pending,
                };
            }
            if read_pending {
                return Poll::Pending;
            }
        }
    }
}

impl Default for Pump {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_and_shuts_down_through_a_tiny_pipe() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut src_w, mut src_r) = tokio::io::duplex(8);
        let (mut dst_w, mut dst_r) = tokio::io::duplex(8);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            src_w.write_all(&sent).await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            dst_r.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut pump = Pump::new();
        let mut progress = false;
        poll_fn(|cx| {
            pump.poll_pump(
                cx,
                Pin::new(&mut src_r),
                Pin::new(&mut dst_w),
                &mut progress,
            )
        })
        .await
        .unwrap();
        drop(dst_w);
        writer.await.unwrap();
        assert_eq!(pump.moved, data.len() as u64);
        assert_eq!(reader.await.unwrap(), data);
    }

    #[tokio::test]
    async fn always_ready_source_larger_than_the_buffer() {
        // A source that never blocks fills the buffer completely; the pump must drain and
        // reuse it rather than spin.
        let data: Vec<u8> = (0..3 * BUF_SIZE + 17).map(|i| (i % 253) as u8).collect();
        let mut out = Vec::new();
        let mut pump = Pump::new();
        let mut progress = false;
        let mut source = &data[..];
        poll_fn(|cx| pump.poll_pump(cx, Pin::new(&mut source), Pin::new(&mut out), &mut progress))
            .await
            .unwrap();
        assert_eq!(out, data);
    }
}
