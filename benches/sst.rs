//! `cargo bench --bench sst`: the loopback SST benchmark. A real 2-node Galera cluster joined
//! by rsync and mariabackup SST with the stock stunnel/socat and through sst-tunnel, and an
//! rsync of a tree through each tunnel, all in one run (`scripts/sst-bench.sh` does the work;
//! the table lands in target/bench-sst.md). Needs root and MariaDB Galera (scripts/test.sh
//! installs it); without them it says so and measures nothing.
//!
//! `SST_BENCH_SST_MB` (default 300), `SST_BENCH_TREE_MB` (600) and `SST_BENCH_ROUNDS` (3)
//! size it.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("bench sst: skipped: needs root (mysqld runs as mysql, tcpdump captures)");
        return ExitCode::SUCCESS;
    }
    if Command::new("mariadbd").arg("--version").output().is_err() {
        eprintln!("bench sst: skipped: MariaDB is not installed (scripts/test.sh installs it)");
        return ExitCode::SUCCESS;
    }
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sst-bench.sh"))
        .args(["--bin", env!("CARGO_BIN_EXE_sst-tunnel")])
        .args(["--data-mb", &env("SST_BENCH_SST_MB", "300")])
        .args(["--tree-mb", &env("SST_BENCH_TREE_MB", "600")])
        .args(["--rounds", &env("SST_BENCH_ROUNDS", "3")])
        .args([
            "--out",
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-sst.md"),
        ])
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("bench sst: scripts/sst-bench.sh failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench sst: cannot run scripts/sst-bench.sh: {e}");
            ExitCode::FAILURE
        }
    }
}
