//! `sst-tunnel selftest`: both ends in one process over loopback, with in-memory certificates.
//!
//! It runs the same config builders, handshake and relay as `connect`/`listen`, so a pass says
//! the TLS stack, verification and copy engine work on this machine, and how fast.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use aws_lc_rs::digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ends::session;
use crate::error::{Error, Result};
use crate::net::{self, HostPort};
use crate::relay::{self, Transfer};
use crate::settings::TlsSettings;
use crate::tls::pem::CaCert;
use crate::tls::{self, Policy, Prepared};
use crate::tools::pki::Pki;
use clap::Args;

/// `sst-tunnel selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Bytes to push through, e.g. 1GiB, 64MiB, 1000000.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = crate::settings::parse_size)]
    pub size: u64,
}

/// Size of the pattern the generator repeats; deliberately not a power of two so chunk
/// boundaries never line up with it and a dropped or doubled chunk changes the hash.
const PATTERN_LEN: usize = (1 << 20) + 13;

/// Runs the self-test and prints its report on stdout.
pub async fn run(args: SelftestArgs) -> Result<()> {
    let pki = Pki::generate()?;
    let trusted = || {
        vec![CaCert {
            der: pki.ca.clone(),
            path: PathBuf::from("<selftest CA>"),
        }]
    };
    let tls_args = TlsSettings::default();
    let server_cfg = tls::server_config(
        &tls_args,
        Prepared {
            policy: Some(Policy::chain()),
            identity: Some(pki.server),
            trusted: trusted(),
            ca_label: "<selftest CA>".into(),
            crls: Vec::new(),
        },
    )?;
    let (client_cfg, name) = tls::client_config(
        &tls_args,
        Prepared {
            policy: Some(Policy::identity(vec!["127.0.0.1".into()])),
            identity: Some(pki.client),
            trusted: trusted(),
            ca_label: "<selftest CA>".into(),
            crls: Vec::new(),
        },
        "127.0.0.1",
        None,
        false,
    )?;
    let listener = net::listen(&HostPort {
        host: "127.0.0.1".into(),
        port: 0,
    })
    .await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("selftest listener: {e}")))?;
    let limit = tls_args.handshake_timeout;

    let server = tokio::spawn(async move {
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|e| Error::Connect(format!("selftest accept: {e}")))?;
        let (mut stream, _) = session::accept(&server_cfg, tcp, limit).await?;
        let mut sink = HashSink::new();
        let transfer = relay::relay(
            &mut stream,
            tokio::io::empty(),
            &mut sink,
            relay::Options::default(),
        )
        .await
        .map_err(session::relay_error)?;
        Ok::<_, Error>((transfer, sink.finish()))
    });

    let started = Instant::now();
    let tcp = net::connect(
        &HostPort {
            host: "127.0.0.1".into(),
            port: addr.port(),
        },
        std::time::Duration::from_secs(10),
    )
    .await?;
    let (mut stream, info) = session::connect(client_cfg, name, tcp, limit).await?;
    let mut source = Generator::new(args.size);
    let sent: Transfer = relay::relay(
        &mut stream,
        &mut source,
        tokio::io::sink(),
        relay::Options::default(),
    )
    .await
    .map_err(session::relay_error)?;
    let (received, received_hash) = server
        .await
        .map_err(|e| Error::Internal(format!("selftest server task: {e}")))??;
    let elapsed = started.elapsed();
    let sent_hash = source.finish();

    if received.received != args.size || sent.sent != args.size || sent_hash != received_hash {
        return Err(Error::Transfer(format!(
            "selftest: sent {} bytes (sha256 {}), received {} bytes (sha256 {})",
            sent.sent, sent_hash, received.received, received_hash
        )));
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "sst-tunnel selftest: {} bytes over TLS on loopback ({addr})",
        args.size
    );
    println!("  TLS version:   {}", info.version);
    println!("  cipher suite:  {}", info.suite);
    println!("  verification:  mutual, chain + identity (127.0.0.1)");
    println!("  copy path:     {}", received.path);
    println!("  integrity:     SHA-256 match {received_hash}");
    println!(
        "  throughput:    {:.1} MB/s ({:.3} s)",
        args.size as f64 / secs.max(1e-9) / 1e6,
        secs
    );
    println!("selftest OK");
    Ok(())
}

/// An endless-looking source of `size` pseudo-random bytes that hashes what it hands out.
/// In memory: always the copy engine (the kernel path, if any, still encrypts).
impl relay::splice::Plain for Generator {}
impl relay::splice::Plain for HashSink {}

struct Generator {
    pattern: Vec<u8>,
    offset: usize,
    left: u64,
    hash: digest::Context,
}

impl Generator {
    fn new(size: u64) -> Self {
        // xorshift64*: cheap, and incompressible enough for a throughput figure.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let pattern = (0..PATTERN_LEN)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect();
        Self {
            pattern,
            offset: 0,
            left: size,
            hash: digest::Context::new(&digest::SHA256),
        }
    }

    fn finish(self) -> String {
        hex(self.hash.finish().as_ref())
    }
}

impl AsyncRead for Generator {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = usize::try_from(this.left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let n = want.min(this.pattern.len() - this.offset);
        let chunk = &this.pattern[this.offset..this.offset + n];
        this.hash.update(chunk);
        buf.put_slice(chunk);
        this.offset = (this.offset + n) % this.pattern.len();
        this.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// A destination that only hashes.
struct HashSink {
    hash: digest::Context,
}

impl HashSink {
    fn new() -> Self {
        Self {
            hash: digest::Context::new(&digest::SHA256),
        }
    }

    fn finish(self) -> String {
        hex(self.hash.finish().as_ref())
    }
}

impl AsyncWrite for HashSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().hash.update(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
