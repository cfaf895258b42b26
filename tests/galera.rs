//! A real MariaDB Galera cluster on loopback joins a node by SST through sst-tunnel, reached
//! through the DBA switch by the unmodified wsrep_sst_rsync and wsrep_sst_mariabackup
//! scripts: every mode of the contract's matrix plus the failure drills, each checked by
//! `scripts/galera-sst.sh` (identical checksums, replication both ways, TLS on the wire,
//! sst-tunnel's own summary lines in the error log, clean aborts and no leftovers).
//!
//! The harness runs in its own process group under a deadline, and its progress lines go
//! straight to the test's stderr as they come (past libtest's capture), so a wedged cluster fails the run with the
//! step it was on and both nodes' logs instead of stalling CI.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use common::*;

/// Every case of the matrix; CI runs them all (about four minutes on two cores).
const CASES: [&str; 18] = [
    "rsync:VERIFY_CA",
    "mariabackup:encrypt=4",
    // The SST runs through a middlebox (NAT to a relay) that resets its connections twice
    // mid-stream: the stream resumes, node2 joins.
    "rsync:RESETS",
    "mariabackup:RESETS",
    "mariabackup:STRIPED",
    "rsync:REQUIRED",
    "rsync:VERIFY_IDENTITY",
    "rsync:CAPATH",
    "rsync:IPV6",
    "mariabackup:encrypt=3",
    "mariabackup:encrypt=2",
    "mariabackup:VERIFY_IDENTITY",
    "mariabackup:CAPATH",
    "rsync:KILL_TUNNEL",
    "rsync:WRONG_CA",
    "mariabackup:WRONG_CA",
    // The wire check's own drills: without TLS it must find the rows' text on the wire.
    "rsync:CLEARTEXT",
    "mariabackup:CLEARTEXT",
];

/// The whole matrix normally takes about three minutes; past this the run is wedged.
const DEADLINE: Duration = Duration::from_secs(15 * 60);

#[test]
fn galera_joins_by_sst_through_sst_tunnel() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the Galera SST test runs mysqld as the mysql user and tcpdump: run scripts/test.sh as root"
    );
    require("mariadbd");
    let data_mb = std::env::var("SST_GALERA_DATA_MB").unwrap_or_else(|_| "200".into());
    let (stdout, stderr) = run_bounded(
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/galera-sst.sh"
        ))
        .args(["--bin", bin(), "--data-mb", &data_mb])
        .args(CASES),
    );
    for case in CASES {
        let pass = if case.ends_with("CLEARTEXT") {
            format!("PASS {case} wire=cleartext ")
        } else {
            format!("PASS {case} tunnel=sst-tunnel ")
        };
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&pass))
            .unwrap_or_else(|| panic!("no PASS line for {case}:\n{stdout}\n{stderr}"));
        if case.ends_with("RESETS") {
            assert!(line.contains(" resumed="), "{line}");
        }
        if case.ends_with("WRONG_CA") {
            assert!(line.contains("certificate verification failed"), "{line}");
        }
        if case.ends_with("KILL_TUNNEL") {
            // Killed mid-stream (galera-sst.sh waits for an established connection with data
            // landing): whether the donor's next syscall is the read that sees the FIN/RST
            // or the write that gets EPIPE, it is the same reported failure, a truncated
            // transfer (exit 6), never success and never a refused connection.
            assert!(
                line.contains("error: transfer failed: ") && line.contains("(stream truncated)"),
                "{line}"
            );
        }
    }
}

/// Runs the harness in a new process group; echoes its stderr live (unbuffered, past the
/// test's output capture); on the deadline sends the group SIGTERM (the harness then prints
/// its diagnostics and cleans up), then SIGKILL. Panics unless it exits 0 in time.
fn run_bounded(command: &mut Command) -> (String, String) {
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn galera-sst.sh");
    let group = Pid::from_raw(child.id() as i32);
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let (text_tx, texts) = mpsc::channel();
    let tx = text_tx.clone();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = tx.send((1, text));
    });
    thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.starts_with("galera-sst:") || line.starts_with("FAIL") {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            text.push_str(&line);
            text.push('\n');
        }
        let _ = text_tx.send((2, text));
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(DEADLINE) {
        Ok(status) => Some(status.expect("wait for galera-sst.sh")),
        Err(_) => {
            // The harness's TERM trap prints where it was and both nodes' logs, then cleans up.
            let _ = killpg(group, Signal::SIGTERM);
            let _ = rx.recv_timeout(Duration::from_secs(120));
            None
        }
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for _ in 0..2 {
        let (which, text) = match texts.recv_timeout(Duration::from_secs(10)) {
            Ok(got) => got,
            Err(_) => {
                // Something of the harness's group still holds the pipes open. The group
                // cannot have been reused while a member lives: only our processes are hit.
                let _ = killpg(group, Signal::SIGKILL);
                texts
                    .recv_timeout(PATIENCE)
                    .expect("pipes close once the group is gone")
            }
        };
        if which == 1 {
            stdout = text
        } else {
            stderr = text
        }
    }
    match status {
        Some(status) if status.success() => (stdout, stderr),
        Some(status) => panic!("galera-sst.sh failed ({status}):\n{stdout}\n{stderr}"),
        None => panic!(
            "galera-sst.sh did not finish within {} s; stopped:\n{stdout}\n{stderr}",
            DEADLINE.as_secs()
        ),
    }
}
