//! Loopback throughput benchmark: the same bytes through sst-tunnel, stunnel, socat with
//! OpenSSL and plaintext socat, in one run. Prints a markdown table (MB/s, tunnel CPU seconds
//! per GiB, peak RSS, ratios against stunnel and socat) and writes it to
//! `target/bench-throughput.md`.
//!
//! `SST_BENCH_BYTES` (default 1 GiB) and `SST_BENCH_ROUNDS` (default 3; the median is shown)
//! tune it. `SST_BENCH_BASELINE=/path/to/sst-tunnel` adds the exec, pipe and 4-stripe rows
//! of another build (an earlier commit, say) measured in the same run. stunnel, socat and dd
//! must be installed (scripts/test.sh installs them).
//!
//! Every tool gets the same topology and the harness stays out of the way: `cat FILE` feeds the
//! client's stdin pipe (an SST donor is fed through a pipe too), and the server's stream ends
//! in a sink (exec'd per connection, since stunnel can only exec; or reading the joiner's
//! stdout pipe) that compares every byte with the deterministic input as it arrives (a
//! memcmp, as cheap as `dd of=/dev/null`) and reports the count. On a 2-core machine a
//! harness that pumps pipes itself competes with the tunnels for the cores and squeezes every
//! ratio towards 1.
//!
//! Every run is verified: the sink saw exactly the input (no byte short, over or wrong), and
//! every process (feeder, client, server, sink) exited as it should. A row with a failed run
//! says so in the table, and the bench exits non-zero after writing it.

#[path = "../tests/common/mod.rs"]
#[allow(missing_docs)]
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Pki, Proc, bin, free_port, require, strs, wait_port};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// One measured run.
#[derive(Clone, Debug)]
struct Sample {
    /// Why the run does not count: bytes short, over or wrong, or a process that failed.
    failure: Option<String>,
    mbps: f64,
    cpu_per_gib: f64,
    rss_mib: f64,
}

/// The tools compared.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    /// The rsync SST shape: the joiner runs a program per connection.
    SstTunnel,
    Stunnel,
    /// The mariabackup SST shape: the joiner's stdout is a pipe into mbstream.
    SstTunnelStdio,
    SocatTls,
    SocatPlain,
    /// `SST_BENCH_BASELINE`'s build in the exec and pipe shapes.
    BaselineExec,
    BaselineStdio,
    /// The pipe shape striped over this many TLS connections (`--streams N` at both ends).
    Striped(u32),
    /// `SST_BENCH_BASELINE`'s build striped over 4 connections.
    BaselineStriped,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::SstTunnel => "exec: sst-tunnel (connect -> listen --exec)",
            Tool::Stunnel => "exec: stunnel (inetd client -> exec server)",
            Tool::SstTunnelStdio => "pipe: sst-tunnel (connect -> listen --stdio)",
            Tool::SocatTls => "pipe: socat OPENSSL (8 KiB blocks)",
            Tool::SocatPlain => "pipe: socat TCP, no TLS",
            Tool::BaselineExec => "exec: baseline build (SST_BENCH_BASELINE)",
            Tool::BaselineStdio => "pipe: baseline build (SST_BENCH_BASELINE)",
            Tool::Striped(2) => "pipe: sst-tunnel striped, --streams 2",
            Tool::Striped(4) => "pipe: sst-tunnel striped, --streams 4",
            Tool::Striped(_) => "pipe: sst-tunnel striped, --streams 8",
            Tool::BaselineStriped => "pipe: baseline build striped, --streams 4",
        }
    }

    /// The sst-tunnel binary this row runs.
    fn binary(self) -> String {
        match self {
            Tool::BaselineExec | Tool::BaselineStdio | Tool::BaselineStriped => {
                std::env::var("SST_BENCH_BASELINE").expect("SST_BENCH_BASELINE")
            }
            _ => bin().to_string(),
        }
    }
}

fn main() {
    // The sink is this same binary: `throughput --bench-sink` (see [`sink`]).
    if std::env::args().nth(1).as_deref() == Some(SINK_ARG) {
        sink();
    }
    let bytes: u64 = std::env::var("SST_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let rounds: usize = std::env::var("SST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let pki = Pki::new();
    // The input, written once: clients read it as stdin straight from the page cache.
    let input = pki.path("bench-input.bin");
    write_input(&input, bytes);
    let small_input = pki.path("bench-input-small.bin");
    write_input(&small_input, bytes / 8);
    let mut tools = vec![
        Tool::SstTunnel,
        Tool::Stunnel,
        Tool::SstTunnelStdio,
        Tool::SocatTls,
        Tool::SocatPlain,
    ];
    if std::env::var_os("SST_BENCH_BASELINE").is_some() {
        tools.extend([Tool::BaselineExec, Tool::BaselineStdio]);
    }
    // One stream over several connections, beside the single-stream pipe row: on two cores
    // this shows what it costs; with cores to spare, what it gains.
    tools.extend([Tool::Striped(2), Tool::Striped(4), Tool::Striped(8)]);
    if std::env::var_os("SST_BENCH_BASELINE").is_some() {
        tools.push(Tool::BaselineStriped);
    }
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); tools.len()];
    let mut small: Vec<Sample> = Vec::new();
    // Interleaved rounds, so drift in machine load hits every tool alike.
    for round in 0..rounds {
        for (i, tool) in tools.iter().enumerate() {
            let sample = run(&pki, *tool, &input, bytes);
            eprintln!(
                "round {round}: {:<40} {:>8.1} MB/s",
                tool.label(),
                sample.mbps
            );
            results[i].push(sample);
        }
        small.push(run(&pki, Tool::SstTunnel, &small_input, bytes / 8));
    }
    let med: Vec<Sample> = results.iter().map(|r| median(r)).collect();
    let small_failed = small.iter().find_map(|s| s.failure.clone());
    let small = median(&small);
    let stunnel = med[1].mbps;
    let socat = med[3].mbps;
    let mut table = format!(
        "Loopback, one stream, {} MiB per run, median of {rounds} interleaved rounds, mutual TLS 1.3; \
         `cat FILE |` feeds every client; exec rows (the rsync SST shape) exec a sink per connection, pipe rows (the mariabackup shape) write to a pipe read by the sink; the sink checks every byte against the input. Compare exec rows with stunnel, pipe rows with socat.\n\n\
         | tool | MB/s | tunnel CPU s/GiB | peak RSS MiB | x stunnel | x socat TLS |\n|---|---|---|---|---|---|\n",
        bytes >> 20
    );
    let mut failed = Vec::new();
    for ((tool, s), runs) in tools.iter().zip(&med).zip(&results) {
        // One failed run fails the row: its median would hide it.
        if let Some(why) = runs.iter().find_map(|r| r.failure.clone()) {
            table.push_str(&format!("| {} | FAILED: {why} | | | | |\n", tool.label()));
            failed.push(tool.label());
            continue;
        }
        table.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} |\n",
            tool.label(),
            s.mbps,
            s.cpu_per_gib,
            s.rss_mib,
            s.mbps / stunnel,
            s.mbps / socat
        ));
    }
    if let Some(why) = small_failed {
        table.push_str(&format!(
            "| sst-tunnel, {} MiB stream (RSS flatness) | FAILED: {why} | | | | |\n",
            (bytes / 8) >> 20
        ));
        failed.push("sst-tunnel, small stream");
    } else {
        table.push_str(&format!(
            "| sst-tunnel, {} MiB stream (RSS flatness) | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} |\n",
            (bytes / 8) >> 20,
            small.mbps,
            small.cpu_per_gib,
            small.rss_mib,
            small.mbps / stunnel,
            small.mbps / socat
        ));
    }
    table.push_str(
        "\nEvery run verified: the sink compared every byte with the input, and every process \
         exited as it should.\n",
    );
    println!("\n{table}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    std::fs::write(target.join("bench-throughput.md"), &table)
        .expect("write target/bench-throughput.md");
    if !failed.is_empty() {
        eprintln!("bench throughput: FAILED rows: {}", failed.join("; "));
        std::process::exit(1);
    }
}

/// `len` seeded pseudo-random bytes (incompressible, like a backup stream) into `path`.
fn write_input(path: &std::path::Path, len: u64) {
    let mut file = std::io::BufWriter::new(File::create(path).expect("bench input"));
    let block = pattern();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("bench input");
        left -= n as u64;
    }
    file.flush().expect("bench input");
}

/// The input is this 1 MiB block over and over (cut at the end), so the sink can check every
/// byte without reading the file.
fn pattern() -> Vec<u8> {
    common::bytes(1 << 20, 42)
}

fn median(samples: &[Sample]) -> Sample {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.mbps.total_cmp(&b.mbps));
    sorted[sorted.len() / 2].clone()
}

/// The argument that makes this binary the sink.
const SINK_ARG: &str = "--bench-sink";

/// The sink: reads stdin to EOF in 256 KiB reads (as `dd bs=262144` did), compares each byte
/// with the input pattern at its offset, and prints `N bytes verified` on stderr, or where the
/// first wrong byte was; exits 0 only when nothing was wrong (the count is the harness's
/// to compare with what was sent).
fn sink() -> ! {
    let block = pattern();
    let mut buf = vec![0u8; 256 << 10];
    let mut stdin = std::io::stdin().lock();
    let mut total: u64 = 0;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("sink: read failed after {total} bytes: {e}");
                std::process::exit(1);
            }
        };
        let mut done = 0;
        while done < n {
            let at = ((total + done as u64) % block.len() as u64) as usize;
            let len = (n - done).min(block.len() - at);
            if buf[done..done + len] != block[at..at + len] {
                let off = (0..len)
                    .find(|i| buf[done + i] != block[at + i])
                    .unwrap_or(0);
                eprintln!("sink: wrong byte at offset {}", total + (done + off) as u64);
                std::process::exit(1);
            }
            done += len;
        }
        total += n as u64;
    }
    eprintln!("sink: {total} bytes verified");
    std::process::exit(0);
}

/// The sink every server hands the stream to, the same for every tool (stunnel can only
/// exec): this binary as [`sink`], whose last stderr line says what arrived.
fn sink_argv() -> [String; 2] {
    [
        std::env::current_exe()
            .expect("the bench's own path")
            .to_string_lossy()
            .into_owned(),
        SINK_ARG.to_string(),
    ]
}

/// The sink's verdict line: `sink: N bytes verified`, or its complaint.
const SINK_LINE: &str = "sink: ";

/// Runs one transfer of `input` (a file of `bytes` bytes) through `tool`, measuring the tunnel
/// processes only. The harness stays light: `cat` feeds the client's stdin pipe and the
/// server's child writes to /dev/null, so on a 2-core machine the cores go to the tunnels.
fn run(pki: &Pki, tool: Tool, input: &std::path::Path, bytes: u64) -> Sample {
    let before = children_cpu();
    let (server, client, sink): (Proc, Client, Sink) = match tool {
        Tool::SstTunnel | Tool::BaselineExec => {
            let mut args = strs(&["--log-level", "info", "listen", "127.0.0.1:0"]);
            args.extend(pki.args("server"));
            args.push("--exec".into());
            args.extend(sink_argv());
            let mut server = Proc::spawn(&tool.binary(), &args);
            server.close_stdin();
            let port = server.port();
            let mut cargs = vec!["connect".to_string(), format!("127.0.0.1:{port}")];
            cargs.extend(pki.args("client"));
            (
                server,
                spawn_client(Command::new(tool.binary()), &cargs, input),
                Sink::Exec,
            )
        }
        Tool::SstTunnelStdio | Tool::BaselineStdio | Tool::Striped(_) | Tool::BaselineStriped => {
            let streams = match tool {
                Tool::Striped(n) => n.to_string(),
                Tool::BaselineStriped => "4".to_string(),
                _ => "1".to_string(),
            };
            let mut args = strs(&["--log-level", "info", "listen", "127.0.0.1:0", "--stdio"]);
            args.extend(pki.args("server"));
            if streams != "1" {
                args.extend(strs(&["--streams", &streams]));
            }
            let mut server = Proc::spawn_raw_stdout(Command::new(tool.binary()).args(&args));
            server.close_stdin();
            let port = server.port();
            let sink = pipe_sink(pki, &mut server);
            let mut cargs = vec!["connect".to_string(), format!("127.0.0.1:{port}")];
            cargs.extend(pki.args("client"));
            if streams != "1" {
                cargs.extend(strs(&["--streams", &streams]));
            }
            let client = Command::new(tool.binary());
            (server, spawn_client(client, &cargs, input), sink)
        }
        Tool::Stunnel => {
            let stunnel = require("stunnel");
            let port = free_port();
            pki.write(
                "bench-server.conf",
                &format!(
                    "cert = {}\nkey = {}\nCAfile = {}\nforeground = yes\npid =\ndebug = warning\nverifyChain = yes\n[sink]\naccept = 127.0.0.1:{port}\nexec = {}\nexecargs = throughput {}\n",
                    pki.s("server-cert.pem"),
                    pki.s("server-key.pem"),
                    pki.s("ca.pem"),
                    sink_argv()[0],
                    sink_argv()[1],
                ),
            );
            let server = Proc::spawn(&stunnel, &[pki.s("bench-server.conf")]);
            wait_port(port);
            pki.write(
                "bench-client.conf",
                &format!(
                    "key = {}\ncert = {}\nCAfile = {}\nforeground = yes\ndebug = warning\nclient = yes\nconnect = 127.0.0.1:{port}\nTIMEOUTclose = 0\nverifyChain = yes\n",
                    pki.s("client-key.pem"),
                    pki.s("client-cert.pem"),
                    pki.s("ca.pem"),
                ),
            );
            (
                server,
                spawn_client(Command::new(&stunnel), &[pki.s("bench-client.conf")], input),
                Sink::Exec,
            )
        }
        Tool::SocatTls | Tool::SocatPlain => {
            let socat = require("socat");
            let port = free_port();
            let (listen, connect) = if tool == Tool::SocatTls {
                (
                    common::socat_listen(pki, port, "server"),
                    common::socat_connect(pki, port, "client"),
                )
            } else {
                (
                    format!("TCP-LISTEN:{port},reuseaddr"),
                    format!("TCP:127.0.0.1:{port}"),
                )
            };
            let mut server = Proc::spawn_raw_stdout(
                Command::new(&socat).args(strs(&["-d", "-d", "-u", &listen, "stdio"])),
            );
            server.close_stdin();
            server.wait_line("listening on");
            let sink = pipe_sink(pki, &mut server);
            (
                server,
                spawn_client(
                    Command::new(&socat),
                    &strs(&["-u", "stdio", &connect]),
                    input,
                ),
                sink,
            )
        }
    };
    measure(
        server,
        client,
        sink,
        bytes,
        matches!(tool, Tool::Stunnel | Tool::SstTunnel | Tool::BaselineExec),
        before,
    )
}

/// The client, fed through a pipe by `cat FILE` as an SST donor is fed by rsync or mariabackup.
fn spawn_client(mut command: Command, args: &[String], input: &std::path::Path) -> Client {
    let mut feeder = Command::new("cat")
        .arg(input)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let pipe = feeder.stdout.take().unwrap();
    enlarge(&pipe);
    let tunnel = command
        .args(args)
        .stdin(pipe)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    Client { tunnel, feeder }
}

/// Where the server's stream ends up, and so where the sink's verdict is read.
enum Sink {
    /// The server's own exec'd child (its stderr is the server's).
    Exec,
    /// A sink reading the server's stdout pipe; its stderr goes to the file.
    Pipe(Child, std::path::PathBuf),
}

/// Starts the sink on the server's stdout pipe.
fn pipe_sink(pki: &Pki, server: &mut Proc) -> Sink {
    let out = server.take_stdout();
    enlarge(&out);
    let log = pki.path("bench-sink.log");
    let [program, arg] = sink_argv();
    let sink = Command::new(program)
        .arg(arg)
        .stdin(out)
        .stderr(File::create(&log).expect("sink log"))
        .spawn()
        .expect("spawn the sink");
    Sink::Pipe(sink, log)
}

/// A client process and the `cat` feeding it.
struct Client {
    tunnel: Child,
    feeder: Child,
}

/// What is wrong with a process's exit, if anything. A server we stopped with SIGTERM may
/// report it (exit 143, or the signal itself).
fn exit_problem(who: &str, status: ExitStatus, stopped: bool) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let fine = status.success()
        || (stopped && (status.code() == Some(143) || status.signal() == Some(15)));
    (!fine).then(|| format!("{who} exited with {status}"))
}

fn measure(
    server: Proc,
    mut client: Client,
    sink: Sink,
    bytes: u64,
    stop_server: bool,
    before: f64,
) -> Sample {
    let pids = [server.pid(), client.tunnel.id() as i32];
    let sampler = RssSampler::start(&pids);
    let started = Instant::now();
    let mut problems = Vec::new();
    // The sink's verdict: every byte has landed and was checked (or the stream went wrong).
    let (line, elapsed) = match sink {
        Sink::Exec => {
            let line = server.wait_line(SINK_LINE);
            (line, started.elapsed())
        }
        Sink::Pipe(mut sink, log) => {
            let status = sink.wait().expect("sink");
            let elapsed = started.elapsed();
            problems.extend(exit_problem("the sink", status, false));
            let text = std::fs::read_to_string(log).expect("sink log");
            let line = text
                .lines()
                .find(|l| l.contains(SINK_LINE))
                .unwrap_or("the sink printed no verdict")
                .to_string();
            (line, elapsed)
        }
    };
    let verified: Option<u64> = line
        .strip_suffix(" bytes verified")
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok());
    match verified {
        Some(got) if got == bytes => {}
        Some(got) if got < bytes => problems.push(format!("{got} of {bytes} bytes arrived")),
        Some(got) => problems.push(format!("{got} bytes arrived, {bytes} were sent")),
        None => problems.push(line.trim().to_string()),
    }
    let rss = sampler.stop();
    let status = client.tunnel.wait().unwrap();
    problems.extend(exit_problem("the client", status, false));
    if stop_server {
        let _ = kill(Pid::from_raw(pids[0]), Signal::SIGTERM);
    }
    let out = server.finish();
    problems.extend(exit_problem("the server", out.status, stop_server));
    // The feeder is reaped after the CPU reading: its time is the harness's, not a tunnel's.
    let cpu = children_cpu() - before;
    let status = client.feeder.wait().unwrap();
    problems.extend(exit_problem("the feeder (cat)", status, false));
    if !problems.is_empty() {
        eprintln!("FAILED run: {}", problems.join("; "));
    }
    Sample {
        failure: (!problems.is_empty()).then(|| problems.join("; ")),
        mbps: bytes as f64 / elapsed.as_secs_f64() / 1e6,
        cpu_per_gib: cpu / (bytes as f64 / (1u64 << 30) as f64),
        rss_mib: rss,
    }
}

/// F_SETPIPE_SZ to 1 MiB on a harness pipe (best effort), as every tool's pipes get alike.
fn enlarge(fd: &impl std::os::fd::AsFd) {
    let _ = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

/// User + system seconds of every waited-for child so far.
fn children_cpu() -> f64 {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let secs = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

/// Samples VmHWM of the tunnel processes while they run; the largest wins.
struct RssSampler {
    stop: std::sync::mpsc::Sender<()>,
    handle: thread::JoinHandle<f64>,
}

impl RssSampler {
    fn start(pids: &[i32]) -> Self {
        let pids = pids.to_vec();
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            let mut peak_kib = 0u64;
            loop {
                for pid in &pids {
                    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                        for line in status.lines().filter(|l| l.starts_with("VmHWM:")) {
                            let kib: u64 = line
                                .split_whitespace()
                                .nth(1)
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            peak_kib = peak_kib.max(kib);
                        }
                    }
                }
                if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                    return peak_kib as f64 / 1024.0;
                }
            }
        });
        Self { stop, handle }
    }

    fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.handle.join().unwrap()
    }
}
