//! `cargo bench --bench wan`: goodput over emulated long and lossy links, where one TCP stream
//! is bound by round trip and loss, not by CPU: socat OPENSSL (the stock mariabackup shape),
//! stunnel (the rsync shape) and sst-tunnel with 1, 8 and `--streams auto` streams, each with
//! the default congestion control (CUBIC) and with BBR, side by side in one run.
//!
//! This machine's kernel has no netem, so the links live in a QEMU guest booted from
//! Debian's kernel (`scripts/ktls-vm-test.sh --wan`, benches/wan-guest.sh): two network
//! namespaces joined by a veth pair with netem on both ends. Under TCG the guest's TLS moves
//! roughly 10 MB/s, so the links stay at 50 Mbit/s, where the link and not the emulated CPU
//! should be the bottleneck (the table's best rows show whether it was). Each row is a fresh
//! link; the donor is fed a deterministic stream by this binary (`--wan-source`), and the
//! joiner's sink (`--wan-sink`) compares every byte with it, measures the bytes delivered in
//! a fixed window after a warm-up, then stops the feeder and drains the rest, so a row also
//! ends the way an SST does (end of input, close_notify, every exit 0).
//!
//! Writes target/bench-wan.md and target/bench-wan.json. `SST_BENCH_WAN_PROFILES`
//! (comma-separated: metro, cross-region, lossy, intercontinental), `SST_BENCH_WAN_TOOLS`
//! (socat, stunnel, sst-tunnel, or one of sst-tunnel:1, sst-tunnel:8, sst-tunnel:auto),
//! `SST_BENCH_WAN_SECONDS` (the window, default 20) and `SST_BENCH_WAN_WARMUP` (default 5)
//! choose a subset; `SST_BENCH_WAN_EXTRA` adds flags to both sst-tunnels (a variant). The guest kernel is trixie-backports' newest (KTLS_VM_SUITE overrides).
//! A row that fails or is not verified says so, and the bench exits non-zero.

#[path = "../tests/common/mod.rs"]
#[allow(missing_docs)]
mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// A link profile: the ids, round trip, loss (each direction), rate.
struct Profile {
    id: &'static str,
    rtt_ms: u32,
    loss_pct: f64,
    rate_mbit: u32,
}

/// Every profile, in the order they are measured (handed to benches/wan-guest.sh as
/// `ID:RTT:LOSS:RATE`).
const PROFILES: [Profile; 4] = [
    Profile {
        id: "metro",
        rtt_ms: 10,
        loss_pct: 0.0,
        rate_mbit: 50,
    },
    Profile {
        id: "cross-region",
        rtt_ms: 80,
        loss_pct: 0.1,
        rate_mbit: 50,
    },
    Profile {
        id: "lossy",
        rtt_ms: 80,
        loss_pct: 1.0,
        rate_mbit: 50,
    },
    Profile {
        id: "intercontinental",
        rtt_ms: 200,
        loss_pct: 0.1,
        rate_mbit: 50,
    },
];

/// The tool choices `SST_BENCH_WAN_TOOLS` takes, and how many rows (x2: CUBIC, BBR) each is.
const TOOLS: [(&str, usize); 6] = [
    ("socat", 1),
    ("stunnel", 1),
    ("sst-tunnel", 3),
    ("sst-tunnel:1", 1),
    ("sst-tunnel:8", 1),
    ("sst-tunnel:auto", 1),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--wan-source") => source(&args[2..]),
        Some("--wan-sink") => sink(&args[2..]),
        _ => {}
    }
    match bench() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench wan: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One measured row, as the guest reports it.
struct Row {
    profile: String,
    rtt_ms: u32,
    loss_pct: f64,
    rate_mbit: u32,
    tool: String,
    streams: u32,
    auto: bool,
    congestion: String,
    seconds: f64,
    bytes: u64,
    verified: bool,
    why: String,
}

impl Row {
    fn mbit_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1e6
        } else {
            0.0
        }
    }

    /// `WAN PROFILE RTT LOSS RATE TOOL STREAMS AUTO CONGESTION SECONDS BYTES VERIFIED [WHY]`
    fn parse(line: &str) -> Option<Row> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 12 || words[0] != "WAN" {
            return None;
        }
        Some(Row {
            profile: words[1].to_string(),
            rtt_ms: words[2].parse().ok()?,
            loss_pct: words[3].parse().ok()?,
            rate_mbit: words[4].parse().ok()?,
            tool: words[5].to_string(),
            streams: words[6].parse().ok()?,
            auto: words[7] == "1",
            congestion: words[8].to_string(),
            seconds: words[9].parse().ok()?,
            bytes: words[10].parse().ok()?,
            verified: words[11] == "1",
            why: words[12..].join(" "),
        })
    }

    fn label(&self) -> String {
        match (self.tool.as_str(), self.auto) {
            ("sst-tunnel", true) => format!("sst-tunnel --streams auto ({})", self.streams),
            ("sst-tunnel", false) => format!("sst-tunnel --streams {}", self.streams),
            (tool, _) => tool.to_string(),
        }
    }
}

/// A comma-separated env setting, each item checked against `known`.
fn selection(var: &str, known: &[&str]) -> Result<Vec<String>, String> {
    let Ok(value) = std::env::var(var) else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if let Some(bad) = items.iter().find(|i| !known.contains(&i.as_str())) {
        return Err(format!(
            "{var}={value}: unknown '{bad}' (one of {})",
            known.join(", ")
        ));
    }
    Ok(items)
}

fn seconds(var: &str, default: u64) -> Result<u64, String> {
    match std::env::var(var) {
        Err(_) => Ok(default),
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{var}={v}: a whole number of seconds above 0")),
        },
    }
}

fn bench() -> Result<ExitCode, String> {
    let ids: Vec<&str> = PROFILES.iter().map(|p| p.id).collect();
    let mut profiles = selection("SST_BENCH_WAN_PROFILES", &ids)?;
    if profiles.is_empty() {
        profiles = ids.iter().map(|s| s.to_string()).collect();
    }
    let tool_ids: Vec<&str> = TOOLS.iter().map(|t| t.0).collect();
    let mut tools = selection("SST_BENCH_WAN_TOOLS", &tool_ids)?;
    if tools.is_empty() {
        tools = ["socat", "stunnel", "sst-tunnel"]
            .map(String::from)
            .to_vec();
    }
    let window = seconds("SST_BENCH_WAN_SECONDS", 20)?;
    let warmup = seconds("SST_BENCH_WAN_WARMUP", 5)?;
    // Extra flags for both sst-tunnels (a variant to compare), kept to flag-like words.
    let extra = std::env::var("SST_BENCH_WAN_EXTRA").unwrap_or_default();
    if !extra
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " -_=.,:/".contains(c))
    {
        return Err(format!(
            "SST_BENCH_WAN_EXTRA={extra}: only flags and plain values"
        ));
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "bench wan: skipped: qemu-system-x86 is not installed (scripts/test.sh installs it)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let per_profile: usize = tools
        .iter()
        .map(|t| TOOLS.iter().find(|k| k.0 == t).map_or(0, |k| k.1) * 2)
        .sum();
    let expected = per_profile * profiles.len();
    // Each row: warm-up, window, the drain at the slowest row's rate, set-up; then the boot.
    let timeout = expected as u64 * (warmup + window + 90) + 600;
    let helper = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/ktls-vm-test.sh"
    ));
    command
        .args(["--wan", env!("CARGO_BIN_EXE_sst-tunnel")])
        .env("KTLS_VM_WAN_HELPER", &helper)
        .env(
            "KTLS_VM_WAN_ENV",
            format!(
                "WAN_PROFILES={}\nWAN_TOOLS={}\nWAN_SECONDS={window}\nWAN_WARMUP={warmup}\nWAN_EXTRA='{extra}'\n",
                PROFILES
                    .iter()
                    .filter(|p| profiles.iter().any(|id| id == p.id))
                    .map(|p| format!("{}:{}:{}:{}", p.id, p.rtt_ms, p.loss_pct, p.rate_mbit))
                    .collect::<Vec<_>>()
                    .join(","),
                tools.join(",")
            ),
        )
        .env("KTLS_VM_TIMEOUT", timeout.to_string())
        .stdout(Stdio::piped());
    // BBR's and netem's newest behaviour, and the kernel the test command's second guest runs.
    if std::env::var_os("KTLS_VM_SUITE").is_none() {
        command
            .env("KTLS_VM_SUITE", "trixie-backports")
            .env("KTLS_VM_KERNEL_MIN", "6.14");
    }
    eprintln!(
        "bench wan: {expected} rows ({} profile(s) x {per_profile}), {warmup} s warm-up + {window} s each, in a QEMU guest (up to {} min)",
        profiles.len(),
        timeout / 60
    );
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run scripts/ktls-vm-test.sh: {e}"))?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut choices = Vec::new();
    let mut links = Vec::new();
    // Lines as they come: the run is long, and each row is worth seeing when it lands.
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.map_err(|e| format!("reading the guest's output: {e}"))?;
        eprintln!("{line}");
        if let Some(row) = Row::parse(&line) {
            rows.push(row);
        } else if let Some(choice) = line.strip_prefix("KTLSVM auto ") {
            choices.push(choice.to_string());
        } else if let Some(link) = line.strip_prefix("KTLSVM link ") {
            links.push(link.to_string());
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            problems.push(rest.to_string());
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the guest: {e}"))?;
    if !status.success() {
        problems.push(format!(
            "scripts/ktls-vm-test.sh --wan exited with {status}"
        ));
    }
    if rows.len() != expected {
        problems.push(format!("{} of {expected} rows reported", rows.len()));
    }
    for row in rows.iter().filter(|r| !r.verified) {
        problems.push(format!(
            "{} {} {}: {}",
            row.profile,
            row.label(),
            row.congestion,
            row.why
        ));
    }

    let mut table = report(&rows, window, warmup);
    if !links.is_empty() {
        table.push_str("\nThe links as ping saw them (5 pings, ms):\n\n");
        for link in &links {
            let _ = writeln!(table, "- {link}");
        }
    }
    if !choices.is_empty() {
        table.push_str("\n`--streams auto`, as the donor measured the path (TCP_INFO after the TCP handshake):\n\n");
        for choice in &choices {
            let _ = writeln!(table, "- {choice}");
        }
    }
    println!("{table}");
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/target");
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut o = json!({
                "profile": r.profile,
                "rtt_ms": r.rtt_ms,
                "loss_pct": r.loss_pct,
                "rate_mbit": r.rate_mbit,
                "tool": r.tool,
                "streams": r.streams,
                "congestion": r.congestion,
                "seconds": r.seconds,
                "bytes": r.bytes,
                "mbit_s": (r.mbit_s() * 100.0).round() / 100.0,
                "verified": r.verified,
            });
            if r.auto {
                o["auto"] = json!(true);
            }
            o
        })
        .collect();
    let json = serde_json::to_string_pretty(&json).expect("JSON of plain values");
    for (name, text) in [("bench-wan.md", &table), ("bench-wan.json", &json)] {
        let path = Path::new(target).join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!("bench wan: wrote {target}/bench-wan.md and {target}/bench-wan.json");
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench wan: FAILED:\n  {}", problems.join("\n  "));
        Ok(ExitCode::FAILURE)
    }
}

/// The markdown table, and the goals judged on the rows measured.
fn report(rows: &[Row], window: u64, warmup: u64) -> String {
    let mut out = format!(
        "Goodput: verified bytes delivered per second in a {window} s window after {warmup} s of warm-up, over a netem link in a QEMU guest.\n\n\
         | profile | RTT ms | loss % | link Mbit/s | tool | congestion | goodput Mbit/s | % of link | x socat (same congestion) |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    let find = |profile: &str, tool: &str, cc: &str, auto: bool| {
        rows.iter().find(|r| {
            r.profile == profile
                && r.tool == tool
                && r.congestion == cc
                && r.auto == auto
                && r.verified
        })
    };
    for row in rows {
        let socat = find(&row.profile, "socat", &row.congestion, false).map(Row::mbit_s);
        let ratio = match socat {
            Some(s) if s > 0.0 && row.verified => format!("{:.2}", row.mbit_s() / s),
            _ => String::new(),
        };
        let goodput = if row.verified {
            format!("{:.2}", row.mbit_s())
        } else {
            format!("FAILED: {}", row.why)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {goodput} | {:.0} | {ratio} |",
            row.profile,
            row.rtt_ms,
            row.loss_pct,
            row.rate_mbit,
            row.label(),
            row.congestion,
            100.0 * row.mbit_s() / row.rate_mbit as f64,
        );
    }
    out.push_str("\nGoals:\n\n");
    let lossy_auto = find("lossy", "sst-tunnel", "cubic", true);
    let lossy_socat = find("lossy", "socat", "cubic", false);
    if let (Some(a), Some(s)) = (lossy_auto, lossy_socat) {
        let x = a.mbit_s() / s.mbit_s().max(1e-9);
        let _ = writeln!(
            out,
            "- lossy, `--streams auto` against socat (both CUBIC): {:.2} / {:.2} Mbit/s = {x:.1}x (goal 6x): {}",
            a.mbit_s(),
            s.mbit_s(),
            if x >= 6.0 { "met" } else { "NOT met" }
        );
    }
    if let Some(a) = find("lossy", "sst-tunnel", "bbr", true) {
        let pct = 100.0 * a.mbit_s() / a.rate_mbit as f64;
        let _ = writeln!(
            out,
            "- lossy, `--streams auto --congestion bbr`: {:.2} Mbit/s = {pct:.0} % of the link (goal 70 %): {}",
            a.mbit_s(),
            if pct >= 70.0 { "met" } else { "NOT met" }
        );
    }
    for p in PROFILES {
        let best = |tool: &str| {
            rows.iter()
                .filter(|r| r.profile == p.id && r.tool == tool && r.verified)
                .max_by(|a, b| a.mbit_s().total_cmp(&b.mbit_s()))
        };
        if let (Some(ours), Some(socat)) = (best("sst-tunnel"), best("socat")) {
            let _ = writeln!(
                out,
                "- {}: sst-tunnel's best ({} {}, {:.2} Mbit/s) against socat's best ({}, {:.2}): {}",
                p.id,
                ours.label(),
                ours.congestion,
                ours.mbit_s(),
                socat.congestion,
                socat.mbit_s(),
                if ours.mbit_s() >= socat.mbit_s() {
                    "at least socat's"
                } else {
                    "BELOW socat's"
                }
            );
        }
    }
    out
}

/// The source's 1 MiB pattern (incompressible, like a backup stream): the tests' seeded
/// bytes.
fn pattern() -> Vec<u8> {
    common::bytes(1 << 20, 42)
}

/// Block `k` of the stream: the pattern with its first 8 bytes XORed with `k`, so a block
/// delivered twice or skipped is a wrong byte too.
fn stamp(block: &mut [u8], pattern: &[u8], k: u64) {
    for (i, b) in k.to_le_bytes().iter().enumerate() {
        block[i] = pattern[i] ^ b;
    }
}

/// `--wan-source STOP`: the deterministic stream on stdout, 64 KiB at a time, until the file
/// STOP exists (the sink's window has closed); then end of input, as a donor's backup ends.
fn source(args: &[String]) -> ! {
    let [stop] = args else {
        eprintln!("usage: wan --wan-source STOP");
        std::process::exit(2);
    };
    let stop = Path::new(stop);
    let pattern = pattern();
    let mut block = pattern.clone();
    let mut out = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => {
            eprintln!("wan source: stdout: {e}");
            std::process::exit(1);
        }
    };
    let mut k = 0u64;
    loop {
        stamp(&mut block, &pattern, k);
        for chunk in block.chunks(64 << 10) {
            if stop.exists() {
                std::process::exit(0);
            }
            if let Err(e) = out.write_all(chunk) {
                eprintln!("wan source: writing block {k}: {e}");
                std::process::exit(1);
            }
        }
        k += 1;
    }
}

/// `--wan-sink WARMUP SECONDS STOP RESULT`: reads stdin to its end, comparing every byte with
/// the source's stream at its offset. From the first byte it waits WARMUP seconds, then
/// counts what arrives in the next SECONDS (timed by the reads themselves), then creates STOP
/// so the source ends, and drains. Writes `WINDOW BYTES SECONDS TOTAL ok` to RESULT, or what
/// went wrong (a wrong byte and its offset, an end before the window closed), and exits 0
/// only when nothing did.
fn sink(args: &[String]) -> ! {
    let [warmup, window, stop, result] = args else {
        eprintln!("usage: wan --wan-sink WARMUP SECONDS STOP RESULT");
        std::process::exit(2);
    };
    let (Ok(warmup), Ok(window)) = (warmup.parse::<f64>(), window.parse::<f64>()) else {
        eprintln!("wan sink: WARMUP and SECONDS are numbers");
        std::process::exit(2);
    };
    let (warmup, window) = (
        Duration::from_secs_f64(warmup),
        Duration::from_secs_f64(window),
    );
    let verdict = |text: String, code: i32| -> ! {
        let _ = std::fs::write(stop, b"");
        if let Err(e) = std::fs::write(result, format!("{text}\n")) {
            eprintln!("wan sink: {result}: {e}");
            std::process::exit(1);
        }
        std::process::exit(code);
    };
    let pattern = pattern();
    let mut block = pattern.clone();
    let mut block_no = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    let mut input = std::io::stdin().lock();
    let mut total: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut opened: Option<(Instant, u64)> = None;
    let mut closed: Option<(Instant, u64)> = None;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => verdict(format!("read failed after {total} bytes: {e}"), 1),
        };
        let now = Instant::now();
        let mut done = 0;
        while done < n {
            let offset = total + done as u64;
            let (k, at) = (offset >> 20, (offset & ((1 << 20) - 1)) as usize);
            if k != block_no {
                stamp(&mut block, &pattern, k);
                block_no = k;
            }
            let len = (n - done).min(block.len() - at);
            if buf[done..done + len] != block[at..at + len] {
                let off = (0..len)
                    .find(|i| buf[done + i] != block[at + i])
                    .unwrap_or(0);
                verdict(format!("wrong byte at offset {}", offset + off as u64), 1);
            }
            done += len;
        }
        total += n as u64;
        let start = *first.get_or_insert(now);
        match (opened, closed) {
            (None, _) if now - start >= warmup => opened = Some((now, total)),
            (Some((at, _)), None) if now - at >= window => {
                closed = Some((now, total));
                let _ = std::fs::write(stop, b"");
            }
            _ => {}
        }
    }
    match (opened, closed) {
        (Some((t0, b0)), Some((t1, b1))) => verdict(
            format!(
                "WINDOW {} {:.3} {total} ok",
                b1 - b0,
                (t1 - t0).as_secs_f64()
            ),
            0,
        ),
        _ => verdict(
            format!("the stream ended after {total} bytes, before the window closed"),
            1,
        ),
    }
}
