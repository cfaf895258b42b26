//! Resource bounds of `listen --exec`, measured: resident memory per live connection with 64
//! and 512 concurrent mid-stream TLS connections, descriptors before, during and after, and
//! 10,000 sequential connections leaving no descriptor or child behind.
//! The clients are in this process (sst-tunnel's own client sessions), so only the listener
//! is measured. Prints a table and writes `target/bench-resources.md`.
//! `SST_BENCH_BASELINE=/path/to/sst-tunnel` measures that build's listener instead (another
//! commit's, for a comparison on the same machine).

#[path = "../tests/common/mod.rs"]
#[allow(missing_docs)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Pki, Proc, bin, listen_args};
use sst_tunnel::settings::TlsSettings;
use sst_tunnel::tls::{self, Policy, Prepared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

/// Bytes each connection echoes before it waits with the others.
const ECHO: usize = 256 * 1024;

fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The listener's descriptor count once it has reaped every child and closed every socket
/// (back to `idle` or more), polled for up to 10 s: the count itself is what is reported.
fn settled_fds(pid: i32, idle: usize) -> usize {
    let mut now = fds(pid);
    for _ in 0..500 {
        if now <= idle {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        now = fds(pid);
    }
    now
}

fn main() {
    let pki = Pki::new();
    let mut args = listen_args("127.0.0.1:0", &pki.args("server"));
    args.extend(
        [
            "--max-connections",
            "1024",
            "--log-level",
            "warn",
            "--exec",
            "/bin/cat",
        ]
        .map(String::from),
    );
    let listener = std::env::var("SST_BENCH_BASELINE").unwrap_or_else(|_| bin().to_string());
    let server = Proc::spawn(&listener, &args);
    // The port line is at info level: ask ss instead of the log.
    let pid = server.pid();
    let port = loop {
        let out = std::process::Command::new("ss")
            .args(["-Hltnp"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains(&format!("pid={pid},"))) {
            let local = line.split_whitespace().nth(3).unwrap();
            break local.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let tls = TlsSettings {
        cert: Some(pki.path("client-cert.pem")),
        key: Some(pki.path("client-key.pem")),
        ca: Some(pki.path("ca.pem")),
        ..TlsSettings::default()
    };
    let prepared = Prepared::with_policy(&tls, Some(Policy::chain())).unwrap();
    let (config, name) = tls::client_config(&tls, prepared, "localhost", None, false).unwrap();
    // The clients are sst-tunnel's own client sessions, in process.
    let connect = |name, tcp| {
        sst_tunnel::ends::session::connect(Arc::clone(&config), name, tcp, Duration::from_secs(60))
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let idle_rss = status_kib(pid, "VmRSS:");
    let idle_fds = fds(pid);
    let mut table = format!(
        "`listen --exec /bin/cat`, N mutual-TLS 1.3 connections each mid-stream after echoing {} KiB.\n\n\
         | connections | listener RSS MiB | per connection KiB | peak RSS MiB | fds open | fds after close |\n|---|---|---|---|---|---|\n| 0 | {:.1} | | | {idle_fds} | |\n",
        ECHO / 1024,
        idle_rss as f64 / 1024.0
    );
    for n in [64usize, 512] {
        let barrier = Arc::new(Barrier::new(n + 1));
        let release = Arc::new(Barrier::new(n + 1));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (config, name) = (config.clone(), name.clone());
            let (barrier, release) = (barrier.clone(), release.clone());
            tasks.push(runtime.spawn(async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let (mut stream, _) =
                    sst_tunnel::ends::session::connect(config, name, tcp, Duration::from_secs(60))
                        .await
                        .unwrap();
                let data = vec![(i % 251) as u8; ECHO];
                let (mut rd, mut wr) = tokio::io::split(&mut stream);
                let write = async {
                    wr.write_all(&data).await.unwrap();
                    wr
                };
                let read = async {
                    let mut back = vec![0u8; ECHO];
                    rd.read_exact(&mut back).await.unwrap();
                    assert!(back == data, "echo differs");
                    rd
                };
                let (mut wr, _rd) = tokio::join!(write, read);
                barrier.wait().await;
                release.wait().await;
                wr.shutdown().await.unwrap();
            }));
        }
        runtime.block_on(barrier.wait());
        let rss = status_kib(pid, "VmRSS:");
        let hwm = status_kib(pid, "VmHWM:");
        let open = fds(pid);
        runtime.block_on(release.wait());
        for task in tasks {
            runtime.block_on(task).unwrap();
        }
        let after = settled_fds(pid, idle_fds);
        let per = rss.saturating_sub(idle_rss) as f64 / n as f64;
        eprintln!("{n} connections: RSS {rss} KiB ({per:.0} KiB each), {open} fds, {after} after");
        table.push_str(&format!(
            "| {n} | {:.1} | {per:.0} | {:.1} | {open} | {after} |\n",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ));
    }
    // 10,000 short connections one after another: nothing may accumulate.
    let total = 10_000;
    let started = std::time::Instant::now();
    runtime.block_on(async {
        for i in 0..total {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut stream, _) = connect(name.clone(), tcp).await.unwrap();
            let data = [(i % 251) as u8; 100];
            stream.write_all(&data).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut back = Vec::new();
            stream.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, data, "connection {i}: echo differs");
        }
    });
    let elapsed = started.elapsed();
    let after = settled_fds(pid, idle_fds);
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default())
        .collect::<String>();
    let live_children = children.split_whitespace().count();
    table.push_str(&format!(
        "\n{total} sequential connections in {:.1}s: {after} fds open afterwards ({idle_fds} before), \
         {live_children} children left, RSS {:.1} MiB (peak {:.1}).\n",
        elapsed.as_secs_f64(),
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    ));
    assert!(
        after <= idle_fds + 2,
        "descriptors leaked: {idle_fds} -> {after}"
    );
    assert_eq!(live_children, 0, "children left behind: {children}");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    println!("\n{table}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    std::fs::write(target.join("bench-resources.md"), &table).unwrap();
}
