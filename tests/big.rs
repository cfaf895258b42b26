//! Issue 23, point 6: more than 4 GiB through the binary production runs (release: counters
//! wrap there instead of panicking), in both SST shapes, checksummed, so every byte counter
//! passes 2^32. Needs the release binary: `scripts/test.sh` runs it with `SST_TUNNEL_BIN` set
//! to the packaged one, after the packages are built.

mod common;

use std::io::Read;
use std::process::Command;

use aws_lc_rs::digest;
use common::*;

const LEN: u64 = 5 << 30;

#[test]
#[ignore = "moves 10 GiB through the release binary: scripts/test.sh runs it with SST_TUNNEL_BIN"]
fn five_gib_in_both_shapes_through_the_release_binary() {
    assert!(
        std::env::var_os("SST_TUNNEL_BIN").is_some(),
        "set SST_TUNNEL_BIN to a release build (the debug one checks overflow, production wraps)"
    );
    let pki = Pki::new();
    // The mariabackup shape: connect -> listen --stdio -> a pipe, hashed as it arrives.
    let mut args = listen_args("127.0.0.1:0", &pki.args("server"));
    args.push("--stdio".into());
    let mut server = Proc::spawn_raw_stdout(Command::new(bin()).args(&args));
    server.close_stdin();
    let mut sink = server.take_stdout();
    let hashed = std::thread::spawn(move || {
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match sink.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    total += n as u64;
                }
            }
        }
        (hex(hash.finish().as_ref()), total)
    });
    let mut cl = client(&pki, server.port(), "client", &[]);
    let sent = feed(cl.stdin(), LEN, 31);
    let c = cl.finish();
    let s = server.finish();
    c.ok();
    s.ok();
    let (got, total) = hashed.join().unwrap();
    assert_eq!(total, LEN, "pipe shape: bytes delivered");
    assert_eq!(got, sent.join().unwrap(), "pipe shape: the stream differs");
    assert!(
        c.stderr.contains(&format!("sent {LEN} bytes")),
        "{}",
        c.stderr
    );
    assert!(
        s.stderr.contains(&format!("received {LEN} bytes")),
        "{}",
        s.stderr
    );

    // The rsync shape: connect -> listen --exec, the program hashing what it reads and
    // answering with the digest.
    let mut args = listen_args("127.0.0.1:0", &pki.args("server"));
    args.extend(strs(&[
        "--exec",
        "/bin/sh",
        "-c",
        "sha256sum | cut -d' ' -f1",
    ]));
    let server = Proc::spawn(bin(), &args);
    let mut cl = client(&pki, server.port(), "client", &[]);
    let sent = feed(cl.stdin(), LEN, 32);
    let c = cl.finish();
    c.ok();
    let answer = String::from_utf8_lossy(&c.stdout).trim().to_string();
    assert_eq!(
        answer,
        sent.join().unwrap(),
        "exec shape: the program read another stream"
    );
    assert!(
        c.stderr.contains(&format!("sent {LEN} bytes")),
        "{}",
        c.stderr
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let s = server.finish();
    assert!(
        s.stderr.contains(&format!("received {LEN} bytes")),
        "{}",
        s.stderr
    );
}
