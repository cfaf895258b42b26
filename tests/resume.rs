//! Resuming (issue 24): a stream between two sst-tunnels outlives its TCP connection. A
//! fault proxy between donor and joiner resets connections mid-stream and refuses new ones
//! for a while; each test asserts the bytes (checksums), both exit codes and the log lines.

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::faultproxy::FaultProxy;
use common::*;

const MIB: u64 = 1 << 20;

/// `extra`, asking for resuming (off by default for now) unless it sets the window.
fn resuming<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = extra.to_vec();
    if !extra.contains(&"--resume-window") {
        all.extend(["--resume-window", "120s"]);
    }
    all
}

/// A `listen --stdio` joiner (node2) with `extra` flags.
fn joiner(pki: &Pki, extra: &[&str]) -> Proc {
    stdio_server(pki, &resuming(extra))
}

/// A donor (node1) dialling `port` with `extra` flags.
fn donor(pki: &Pki, port: u16, extra: &[&str]) -> Proc {
    Proc::spawn(bin(), &client_args(pki, port, "client", &resuming(extra)))
}

/// Asserts that the donor dialled into the proxy's outage (a connection refused there).
fn met_the_outage(proxy: &FaultProxy) {
    assert!(
        proxy
            .seen
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the donor never met the outage"
    );
}

/// `len` bytes one way through a proxy that resets the connections after the offsets in
/// `resets`: byte-exact, both exit 0, one "resumed" line per reset on each side and the
/// count in the summaries.
fn one_way(len: u64, resets: Vec<u64>) {
    let pki = Pki::new();
    let count = resets.len();
    let mut j = joiner(&pki, &[]);
    j.close_stdin();
    let proxy = FaultProxy::start(j.port(), resets, Duration::ZERO);
    let mut d = donor(&pki, proxy.port, &[]);
    let sent = feed(d.stdin(), len, 41);
    let d = d.finish();
    let j = j.finish();
    let sent = sent.join().unwrap();
    d.ok();
    j.ok();
    assert_eq!(j.stdout.len() as u64, len, "{}", j.stderr);
    assert_eq!(sha256(&j.stdout), sent, "the joiner's output differs");
    assert_eq!(
        proxy.seen.reset.load(std::sync::atomic::Ordering::Relaxed),
        count,
        "the proxy did not reset as planned"
    );
    for (who, out) in [("donor", &d), ("joiner", &j)] {
        let resumed = out.stderr.matches(": resumed after ").count();
        assert_eq!(resumed, count, "{who}: {}", out.stderr);
        if count > 0 {
            let summary = match count {
                1 => "resumed once".to_string(),
                n => format!("resumed {n} times"),
            };
            assert!(out.stderr.contains(&summary), "{who}: {}", out.stderr);
        }
    }
}

#[test]
fn a_one_way_stream_survives_one_reset() {
    one_way(256 * MIB, vec![100 * MIB]);
}

#[test]
fn a_one_way_stream_survives_two_resets() {
    one_way(256 * MIB, vec![40 * MIB, 60 * MIB]);
}

#[test]
fn a_one_way_stream_survives_five_resets() {
    one_way(
        256 * MIB,
        vec![20 * MIB, 30 * MIB, 40 * MIB, 50 * MIB, 60 * MIB],
    );
}

/// Both ways at once (the rsync shape's interactive protocol): each side's bytes arrive
/// exactly at the other, across two resets.
#[test]
fn a_two_way_stream_survives_resets() {
    let pki = Pki::new();
    let mut j = joiner(&pki, &[]);
    let proxy = FaultProxy::start(j.port(), vec![48 * MIB, 64 * MIB], Duration::ZERO);
    let mut d = donor(&pki, proxy.port, &[]);
    let up = feed(d.stdin(), 128 * MIB, 5);
    let down = feed(j.stdin(), 96 * MIB, 6);
    let d = d.finish();
    let j = j.finish();
    d.ok();
    j.ok();
    assert_eq!(
        sha256(&j.stdout),
        up.join().unwrap(),
        "donor -> joiner differs"
    );
    assert_eq!(
        sha256(&d.stdout),
        down.join().unwrap(),
        "joiner -> donor differs"
    );
    assert!(d.stderr.contains("resumed 2 times"), "{}", d.stderr);
}

/// An outage shorter than the window is waited out (the donor dials again with back-off
/// while the proxy refuses), and the stream completes.
#[test]
fn an_outage_shorter_than_the_window_is_survived() {
    let pki = Pki::new();
    let mut j = joiner(&pki, &["--resume-window", "30s"]);
    j.close_stdin();
    let proxy = FaultProxy::start(j.port(), vec![16 * MIB], Duration::from_secs(2));
    let mut d = donor(&pki, proxy.port, &["--resume-window", "30s"]);
    let sent = feed(d.stdin(), 64 * MIB, 7);
    let d = d.finish();
    let j = j.finish();
    d.ok();
    j.ok();
    assert_eq!(sha256(&j.stdout), sent.join().unwrap());
    met_the_outage(&proxy);
}

/// A connection the network breaks in its handshake (the proxy resets the first one as
/// its ClientHello crosses, then resets every new one for a second) is dialled again within
/// the window, as the rsync SST's next connection would be: no stream existed yet, so
/// nothing resumes, and the stream then goes through whole. With resuming off the same
/// break fails the donor at once, as it always did (exit 5, the handshake's).
#[test]
fn a_handshake_the_network_breaks_is_dialled_again() {
    for window in ["0", "30s"] {
        let pki = Pki::new();
        let mut j = joiner(&pki, &["--resume-window", window]);
        j.close_stdin();
        let proxy = FaultProxy::start(j.port(), vec![1], Duration::from_secs(1));
        let mut d = donor(&pki, proxy.port, &["--resume-window", window]);
        let sent = feed(d.stdin(), 8 * MIB, 5);
        let d = d.finish();
        if window == "0" {
            d.fails(5, "TLS handshake failed: ");
            assert!(!d.stderr.contains("dialling again"), "{}", d.stderr);
            continue;
        }
        d.ok();
        let j = j.finish();
        j.ok();
        assert_eq!(sha256(&j.stdout), sent.join().unwrap());
        assert!(
            d.stderr
                .contains("dialling again within the resume window (30s)"),
            "{}",
            d.stderr
        );
        met_the_outage(&proxy);
        for (who, out) in [("donor", &d), ("joiner", &j)] {
            assert!(!out.stderr.contains("resumed"), "{who}: {}", out.stderr);
        }
    }
}

/// An outage longer than the window fails both ends with exit 6 soon after the window,
/// saying the stream could not be resumed and how far it got; the joiner's output is a
/// strict prefix of the input.
#[test]
fn an_outage_longer_than_the_window_fails_both_ends() {
    let pki = Pki::new();
    let window = ["--resume-window", "2s"];
    let mut j = joiner(&pki, &window);
    j.close_stdin();
    let proxy = FaultProxy::start(j.port(), vec![16 * MIB], Duration::from_secs(60));
    let mut d = donor(&pki, proxy.port, &window);
    let input = bytes(64 << 20, 8);
    let mut stdin = d.stdin();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
        input
    });
    let started = Instant::now();
    let d = d.finish();
    let j = j.finish();
    let elapsed = started.elapsed();
    let input = writer.join().unwrap();
    for (who, out) in [("donor", &d), ("joiner", &j)] {
        out.fails(
            6,
            "the stream could not be resumed within 2s (--resume-window)",
        );
        assert!(out.stderr.contains("bytes sent"), "{who}: {}", out.stderr);
    }
    assert!(
        elapsed < Duration::from_secs(2 + 20),
        "took {elapsed:?} for a 2 s window"
    );
    assert!(
        j.stdout.len() < input.len() && input.starts_with(&j.stdout),
        "the joiner's output ({} bytes) is not a strict prefix",
        j.stdout.len()
    );
}

/// A connection that tries to take over the stream without its binding secret, or with
/// another node's certificate, is refused and logged, and the real stream completes.
#[test]
fn only_the_donor_with_the_secret_can_resume() {
    use std::io::Write;
    let pki = Pki::new();
    let mut j = joiner(&pki, &["--log-level", "debug"]);
    j.close_stdin();
    let port = j.port();
    let mut d = donor(&pki, port, &[]);
    let mut stdin = d.stdin();
    let first = bytes(4 << 20, 9);
    stdin.write_all(&first).unwrap();
    j.wait_line("handshake complete");
    // Openings that ask to resume: the donor's certificate with another secret, then the
    // joiner's own certificate (another node) with a secret of zeros.
    let opening = |fill: u8| {
        let mut o = [fill; 34];
        o[..2].copy_from_slice(&[0, 1]);
        o
    };
    for (who, presented) in [("client", opening(7)), ("server", opening(0))] {
        let config = rawtls::alpn_client(&pki, who, b"sst-tunnel/resume/3");
        rawtls::say(port, &config, &presented);
    }
    // In the order the attempts came.
    let refusals = [
        "does not carry this transfer's binding secret",
        "another peer certificate than the first connection's",
    ];
    for refusal in refusals {
        j.wait_line(refusal);
    }
    let second = bytes(4 << 20, 10);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let d = d.finish();
    let j = j.finish();
    d.ok();
    j.ok();
    assert!(j.stdout == [first, second].concat(), "the stream differs");
    assert!(!d.stderr.contains("resumed"), "{}", d.stderr);
}

/// `--resume-window 0` is today's behaviour: a reset fails the transfer (exit 6 on both
/// sides, a truncated stream), nothing resumes.
#[test]
fn window_zero_never_resumes() {
    let pki = Pki::new();
    let mut j = joiner(&pki, &["--resume-window", "0"]);
    j.close_stdin();
    let proxy = FaultProxy::start(j.port(), vec![8 * MIB], Duration::ZERO);
    let mut d = donor(&pki, proxy.port, &["--resume-window", "0"]);
    let _sent = feed(d.stdin(), 64 * MIB, 11);
    let d = d.finish();
    let j = j.finish();
    assert_eq!(d.code(), 6, "{}", d.stderr);
    assert_eq!(j.code(), 6, "{}", j.stderr);
    assert!(!d.stderr.contains("resum"), "{}", d.stderr);
}

/// A joiner that fails locally (its output is a full disk: /dev/full) exits 6 naming the
/// error, and the donor hears it at once (an abort frame) and exits 6 saying why, instead of
/// waiting out its resume window.
#[test]
fn a_joiner_that_fails_locally_tells_the_donor_at_once() {
    let pki = Pki::new();
    let mut args = listen_args("127.0.0.1:0", &tls_args(&pki, "server", &[]));
    args.extend(strs(&["--stdio", "--resume-window", "120s"]));
    let script = format!("exec {} {} </dev/null >/dev/full", bin(), args.join(" "));
    let j = Proc::spawn("bash", &strs(&["-c", &script]));
    let mut d = donor(&pki, j.port(), &[]);
    let _sent = feed(d.stdin(), 64 * MIB, 12);
    let started = Instant::now();
    let d = d.finish();
    let j = j.finish();
    j.fails(6, "writing local output")
        .fails(6, "No space left on device");
    d.fails(
        6,
        "the peer aborted the stream: it failed: writing local output",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the donor took {:?}: it waited instead of hearing the abort",
        started.elapsed()
    );
}

/// A killed donor never comes back: the joiner waits out its window, then fails naming the
/// break (a truncated stream) and that the stream could not be resumed; a donor stopped by
/// SIGTERM says so first, and the joiner fails at once.
#[test]
fn a_stopped_donor_fails_the_joiner() {
    use nix::sys::signal::Signal;
    let pki = Pki::new();
    for (signal, window, says) in [
        (Signal::SIGKILL, "2s", "could not be resumed within 2s"),
        (Signal::SIGTERM, "120s", "the peer aborted the stream"),
    ] {
        let mut j = joiner(&pki, &["--resume-window", window]);
        j.close_stdin();
        let mut d = donor(
            &pki,
            j.port(),
            &["--resume-window", window, "--log-level", "debug"],
        );
        let _sent = feed(d.stdin(), 10 << 30, 13);
        // Stopped once the stream is under way (before, there is nothing to resume).
        d.wait_line("the stream resumes if its connection breaks");
        let started = Instant::now();
        d.signal(signal);
        let j = j.finish();
        j.fails(6, "(stream truncated)").fails(6, says);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{signal}: the joiner took {:?}",
            started.elapsed()
        );
    }
}

/// The idle timeout holds on a resumable stream (heartbeats are not data): a donor whose
/// input stays open and silent fails with the idle timeout, and tells the joiner why.
#[test]
fn the_idle_timeout_counts_data_not_heartbeats() {
    let pki = Pki::new();
    let mut j = joiner(&pki, &[]);
    j.close_stdin();
    let mut d = donor(&pki, j.port(), &["--idle-timeout", "3s"]);
    let _held_open = d.stdin();
    let d = d.finish();
    let j = j.finish();
    d.fails(
        6,
        "no data moved in either direction for 3s (--idle-timeout)",
    );
    j.fails(6, "the peer aborted the stream: it failed: no data moved");
}

/// How far the donor read ahead of the joiner through a black hole (the proxy swallows what
/// crosses after 8 MiB, so no acknowledgement comes back), with `--resume-buffer buffer` on
/// both ends: what it had read when it took the silent connection for broken. The stream
/// then resumes and completes byte-exact.
fn read_ahead_through_a_black_hole(buffer: &str) -> u64 {
    let pki = Pki::new();
    let flags = ["--resume-buffer", buffer];
    let mut j = joiner(&pki, &flags);
    j.close_stdin();
    let proxy = FaultProxy::black_hole(j.port(), 8 * MIB);
    let mut d = donor(&pki, proxy.port, &flags);
    let written = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
    let sent = feed_counted(d.stdin(), 96 * MIB, 16, written.clone());
    // Both ends count the silence from their last frame; whichever finds it first drops
    // the connection, and the other then sees it closed.
    d.wait_line("connection lost (");
    let ahead = written.load(std::sync::atomic::Ordering::SeqCst);
    let d = d.finish();
    let j = j.finish();
    d.ok();
    j.ok();
    assert_eq!(sha256(&j.stdout), sent.join().unwrap());
    assert!(d.stderr.contains("resumed once"), "{}", d.stderr);
    let silence = "connection lost (nothing arrived for 10s)";
    assert!(
        d.stderr.contains(silence) || j.stderr.contains(silence),
        "no end found the silence:\n{}\n{}",
        d.stderr,
        j.stderr
    );
    ahead
}

/// A black hole (no reset, nothing moves) is found by the silence limit (10 s without a
/// frame, where heartbeats come every 2 s) and the stream resumes on a new connection; the
/// joiner lets the new connection take over from the dead one. Meanwhile the donor keeps
/// reading into its replay buffer (64 MiB by default) as far as that lets it: the buffer
/// counts the frames' memory, and frames a pipe read left a quarter full count whole, so at
/// least 16 MiB of data.
#[test]
fn a_black_hole_is_detected_and_resumed() {
    let large = read_ahead_through_a_black_hole("64MiB");
    assert!(
        large >= 16 * MIB,
        "with a 64 MiB replay buffer the donor read only {large} bytes"
    );
}

/// The replay buffer is a bound (issue 24: the sender blocks, never grows): with no
/// acknowledgement coming back, a donor keeping 2 MiB reads at most that much past what
/// crossed before the hole (8 MiB), give or take a frame and a pipe's worth.
#[test]
fn the_replay_buffer_bounds_what_the_donor_reads_ahead() {
    let small = read_ahead_through_a_black_hole("2MiB");
    assert!(
        small <= 12 * MIB,
        "with a 2 MiB replay buffer the donor read {small} bytes into a black hole at 8 MiB"
    );
}

/// `--resume-buffer` below the smallest replay buffer is refused at start-up, naming the
/// flag; `SST_TUNNEL_RESUME_BUFFER` likewise for the front-ends, naming the variable.
#[test]
fn a_replay_buffer_below_one_mebibyte_is_refused() {
    let pki = Pki::new();
    let out = Proc::spawn(
        bin(),
        &client_args(&pki, 9, "client", &["--resume-buffer", "512KiB"]),
    )
    .finish();
    out.fails(2, "--resume-buffer");
    assert!(
        out.stderr
            .contains("524288 bytes is below the smallest replay buffer, 1MiB"),
        "{}",
        out.stderr
    );
    let conf = stunnel_donor_conf(&pki, 9);
    let out = Proc::spawn_with(
        std::process::Command::new(bin())
            .arg0("stunnel")
            .arg(&conf)
            .env("SST_TUNNEL_RESUME_BUFFER", "lots"),
    )
    .finish();
    out.fails(2, "SST_TUNNEL_RESUME_BUFFER: 'lots' is not a size");
}

/// `listen --exec` resuming, its program a shell that notes each start in the returned file
/// and then echoes (`cat`): what comes back is what the program was given.
fn counting_exec_joiner(pki: &Pki) -> (Proc, std::path::PathBuf) {
    let starts = pki.path("starts");
    let script = format!("echo $$ >> {}; exec cat", starts.display());
    let mut args = listen_args("127.0.0.1:0", &pki.args("server"));
    args.extend(strs(&[
        "--resume-window",
        "120s",
        "--exec",
        "/bin/sh",
        "-c",
        &script,
    ]));
    (Proc::spawn(bin(), &args), starts)
}

/// `listen --exec` (the rsync shape) resumes too: a stream through an exec'd program keeps
/// that one program across resets (it never notices), and both ways arrive byte-exact.
/// Another stream on the same listener at the same time keeps its own program and bytes.
#[test]
fn an_exec_stream_survives_resets_with_its_one_program() {
    let pki = Pki::new();
    let (j, starts) = counting_exec_joiner(&pki);
    let port = j.port();
    let proxy = FaultProxy::start(port, vec![24 * MIB, 40 * MIB], Duration::ZERO);
    let mut d = donor(&pki, proxy.port, &[]);
    // A second stream straight to the listener, at the same time, without faults.
    let mut other = donor(&pki, port, &[]);
    let sent = feed(d.stdin(), 64 * MIB, 21);
    let other_sent = feed(other.stdin(), 8 * MIB, 22);
    let d = d.finish();
    let other = other.finish();
    d.ok();
    other.ok();
    assert_eq!(sha256(&d.stdout), sent.join().unwrap(), "the echo differs");
    assert_eq!(
        sha256(&other.stdout),
        other_sent.join().unwrap(),
        "the other stream's echo differs"
    );
    assert_eq!(
        proxy.seen.reset.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert!(d.stderr.contains("resumed 2 times"), "{}", d.stderr);
    assert!(!other.stderr.contains("resumed"), "{}", other.stderr);
    j.signal(nix::sys::signal::Signal::SIGTERM);
    let j = j.finish();
    let started = std::fs::read_to_string(&starts).unwrap();
    assert_eq!(
        started.lines().count(),
        2,
        "one program per stream, none per resumption: {started:?}\n{}",
        j.stderr
    );
    assert_eq!(
        j.stderr.matches(": resumed after ").count(),
        2,
        "{}",
        j.stderr
    );
}

/// While a stream is under way on an exec listener, a connection that opens with another
/// secret, or with neither a new stream nor a resumption, is refused, starts no program and
/// takes nothing over: the real stream completes with its one program.
#[test]
fn an_exec_listener_refuses_to_resume_what_it_does_not_carry() {
    use std::io::Write;
    let pki = Pki::new();
    let (j, starts) = counting_exec_joiner(&pki);
    let port = j.port();
    // The real stream, under way: its program has started (so the stream is registered).
    let mut d = donor(&pki, port, &[]);
    let mut stdin = d.stdin();
    let first = bytes(MIB as usize, 23);
    stdin.write_all(&first).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read_to_string(&starts).map_or(0, |s| s.lines().count()) < 1 {
        assert!(Instant::now() < deadline, "the program never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = rawtls::alpn_client(&pki, "client", b"sst-tunnel/resume/3");
    // The donor's own certificate: a resumption with a secret that is not the stream's, then
    // an opening that is neither kind.
    for (mark, fill) in [([0u8, 1], 7u8), ([0, 2], 0)] {
        let mut presented = [fill; 34];
        presented[..2].copy_from_slice(&mark);
        let rest = rawtls::say(port, &config, &presented);
        assert!(
            rest.is_empty(),
            "a refused connection got {} bytes",
            rest.len()
        );
    }
    j.wait_line("it resumes no stream under way here");
    j.wait_line("neither a new stream nor a stream under way");
    let second = bytes(MIB as usize, 24);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let d = d.finish();
    d.ok();
    assert!(d.stdout == [first, second].concat(), "the echo differs");
    assert!(!d.stderr.contains("resum"), "{}", d.stderr);
    j.signal(nix::sys::signal::Signal::SIGTERM);
    j.finish();
    let started = std::fs::read_to_string(&starts).unwrap();
    assert_eq!(started.lines().count(), 1, "{started:?}");
}

/// A striped stream resumes stripe by stripe: two of its four connections reset mid-stream
/// (each by itself, the others going on), every byte arrives in order, both ends exit 0 and
/// count both resumptions, each logged under its stripe.
#[test]
fn a_striped_stream_survives_resets_of_single_stripes() {
    let pki = Pki::new();
    let mut j = joiner(&pki, &["--streams", "4"]);
    j.close_stdin();
    // Connections 0-3 are the stripes, in the order the donor opens them; 1 and 3 reset.
    let never = u64::MAX;
    let proxy = FaultProxy::start(
        j.port(),
        vec![never, 8 * MIB, never, 12 * MIB],
        Duration::ZERO,
    );
    let mut d = donor(&pki, proxy.port, &["--streams", "4"]);
    let sent = feed(d.stdin(), 128 * MIB, 25);
    let d = d.finish();
    let j = j.finish();
    let sent = sent.join().unwrap();
    d.ok();
    j.ok();
    assert_eq!(j.stdout.len() as u64, 128 * MIB, "{}", j.stderr);
    assert_eq!(sha256(&j.stdout), sent, "the joiner's output differs");
    assert_eq!(
        proxy.seen.reset.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    for (who, out) in [("donor", &d), ("joiner", &j)] {
        assert!(
            out.stderr.contains("4 streams, resumed 2 times"),
            "{who}: {}",
            out.stderr
        );
        for stripe in [1, 3] {
            assert!(
                out.stderr
                    .contains(&format!("(stream {stripe}): resumed after ")),
                "{who}: stripe {stripe}: {}",
                out.stderr
            );
        }
    }
}

/// A stripe that cannot come back within the window fails the whole striped stream at both
/// ends (exit 6, saying so), and the joiner's output is a strict prefix of the input.
#[test]
fn a_stripe_gone_longer_than_the_window_fails_both_ends() {
    let pki = Pki::new();
    let flags = ["--streams", "4", "--resume-window", "2s"];
    let mut j = joiner(&pki, &flags);
    j.close_stdin();
    let never = u64::MAX;
    let proxy = FaultProxy::start(j.port(), vec![never, 8 * MIB], Duration::from_secs(60));
    let mut d = donor(&pki, proxy.port, &flags);
    let input = bytes(64 << 20, 26);
    let mut stdin = d.stdin();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
        input
    });
    let started = Instant::now();
    let d = d.finish();
    let j = j.finish();
    let elapsed = started.elapsed();
    let input = writer.join().unwrap();
    for (who, out) in [("donor", &d), ("joiner", &j)] {
        out.fails(6, "could not be resumed within 2s (--resume-window)");
        assert!(out.stderr.contains("bytes sent"), "{who}: {}", out.stderr);
    }
    assert!(
        elapsed < Duration::from_secs(2 + 20),
        "took {elapsed:?} for a 2 s window"
    );
    assert!(
        j.stdout.len() < input.len() && input.starts_with(&j.stdout),
        "the joiner's output ({} bytes) is not a strict prefix",
        j.stdout.len()
    );
}

/// Review finding (cd814df): a connection that takes over while the joiner is in the middle
/// of writing a frame out to a slow local side (the write future dropped between two
/// partial writes) must not have those bytes sent again. Here the joiner's stdout is not
/// read at all until the donor has resumed: the joiner is blocked writing a frame (its
/// one-page pipe full, after a partial write) when the proxy resets the connection after
/// 2 MiB and the donor's new connection takes over. Every byte then arrives exactly once.
/// (With cd814df's fix undone as it was, the payload written with `write_all` and counted
/// after it, this failed 12 runs of 12; an earlier, rougher undo failed 2 of 4.)
#[test]
fn a_takeover_while_the_joiner_is_writing_delivers_nothing_twice() {
    use std::io::Read;
    let pki = Pki::new();
    let args = stdio_server_args(&pki, &resuming(&[]));
    let mut j = Proc::spawn_raw_stdout(std::process::Command::new(bin()).args(&args));
    j.close_stdin();
    let mut out = j.take_stdout();
    // A one-page pipe: the joiner's last write before it blocks is then a partial one.
    nix::fcntl::fcntl(&out, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    let proxy = FaultProxy::start(j.port(), vec![2 * MIB], Duration::ZERO);
    let len = 32 * MIB;
    let mut d = donor(&pki, proxy.port, &[]);
    let sent = feed(d.stdin(), len, 29);
    d.wait_line(": resumed after ");
    j.wait_line(": resumed after ");
    let mut got = Vec::new();
    out.read_to_end(&mut got).unwrap();
    let d = d.finish();
    let j = j.finish();
    d.ok();
    j.ok();
    assert_eq!(got.len() as u64, len, "bytes delivered twice or lost");
    assert_eq!(sha256(&got), sent.join().unwrap());
}
