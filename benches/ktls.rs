//! `cargo bench --bench ktls`: kernel TLS (+ splice) against the buffered rustls path, both
//! measured in the same QEMU guest run (`scripts/ktls-vm-test.sh --bench`), because this
//! machine's kernel has no TLS module. Under QEMU's software CPU the guest's AES and the
//! kernel's work are emulated, so only the ratio between paths means anything; absolute
//! MB/s do not. 64 MiB client -> server streams, three interleaved rounds, median of the
//! server's own relay rate; through pipes (splice can run) and through files (the kernel
//! path copies); the kernel path both with the buffered path's suite (AES-256-GCM) and with
//! its own default (ChaCha20-Poly1305), and resumable (`--resume-window 120s` at both ends:
//! frames copied through the replay buffer, so no splice). Every run is verified in the guest
//! (exits, count, the bytes compared with the input); a failed row says so and the bench
//! exits non-zero. Writes target/bench-ktls.md. Needs what the test command installs
//! (qemu-system-x86, busybox-static, cpio, kmod); without it, it says so and measures nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "bench ktls: skipped: qemu-system-x86 is not installed (scripts/test.sh installs it)"
        );
        return ExitCode::SUCCESS;
    }
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/ktls-vm-test.sh"
    ))
    .args(["--bench", env!("CARGO_BIN_EXE_sst-tunnel")])
    .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("bench ktls: cannot run scripts/ktls-vm-test.sh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Every run is verified in the guest (exits, byte count, bytes compared with the input);
    // a failed one is a `FAIL bench CONFIG SHAPE: why` line and fails its row here.
    let mut failed: BTreeMap<(String, String), String> = BTreeMap::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("FAIL bench ") {
            let (what, why) = rest.split_once(':').unwrap_or((rest, ""));
            if let [config, shape] = what.split_whitespace().collect::<Vec<_>>()[..] {
                failed
                    .entry((shape.to_string(), config.to_string()))
                    .or_insert_with(|| why.trim().to_string());
            }
        }
    }
    // BENCH <config> <shape> <path> <suite> <MB/s>
    let mut runs: BTreeMap<(String, String), (String, Vec<f64>)> = BTreeMap::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["BENCH", config, shape, path, suite, rate] = words[..]
            && let Ok(rate) = rate.parse::<f64>()
        {
            let entry = runs
                .entry((shape.to_string(), config.to_string()))
                .or_insert_with(|| (format!("{path} | {suite}"), Vec::new()));
            entry.1.push(rate);
        }
    }
    if runs.is_empty() && failed.is_empty() {
        eprintln!(
            "bench ktls: the guest run measured nothing ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return ExitCode::FAILURE;
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut table = String::from(
        "| local ends | path | suite | MB/s in the guest (median) | x buffered |\n|---|---|---|---|---|\n",
    );
    for shape in ["pipes", "files"] {
        let base = runs
            .get(&(shape.to_string(), "buffered".to_string()))
            .map(|(_, v)| median(v));
        for config in ["buffered", "kernel-aes", "kernel", "kernel-resume"] {
            let key = (shape.to_string(), config.to_string());
            if let Some(why) = failed.get(&key) {
                let _ = writeln!(table, "| {shape} | {config} | FAILED: {why} | | |");
                continue;
            }
            if let Some((path, rates)) = runs.get(&key) {
                let m = median(rates);
                let ratio = base.map_or("?".to_string(), |b| format!("{:.2}", m / b));
                let resumable = if config == "kernel-resume" {
                    " (resumable)"
                } else {
                    ""
                };
                let _ = writeln!(table, "| {shape} | {path}{resumable} | {m:.1} | {ratio} |");
            }
        }
    }
    println!("{table}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-ktls.md");
    if let Err(e) = std::fs::write(path, &table) {
        eprintln!("bench ktls: {path}: {e}");
    }
    if !failed.is_empty() || !out.status.success() {
        eprintln!(
            "bench ktls: FAILED ({}, {} failed row(s)):\n{}",
            out.status,
            failed.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
