//! A real MariaDB Galera cluster on loopback joins a node by SST through sst-tunnel, reached
//! through the DBA switch by the unmodified wsrep_sst_rsync and wsrep_sst_mariabackup
//! scripts: every mode of the contract's matrix plus the failure drills, each checked by
//! `scripts/galera-sst.sh` (identical checksums, replication both ways, TLS on the wire,
//! sst-tunnel's own summary lines in the error log, clean aborts and no leftovers).

mod common;

use std::process::Command;

use common::*;

/// Every case of the matrix; CI runs them all (about three minutes on two cores).
const CASES: [&str; 13] = [
    "rsync:VERIFY_CA",
    "mariabackup:encrypt=4",
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
];

#[test]
fn galera_joins_by_sst_through_sst_tunnel() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the Galera SST test runs mysqld as the mysql user and tcpdump: run scripts/test.sh as root"
    );
    require("mariadbd");
    let data_mb = std::env::var("SST_GALERA_DATA_MB").unwrap_or_else(|_| "200".into());
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/galera-sst.sh"
    ))
    .args(["--bin", bin(), "--data-mb", &data_mb])
    .args(CASES)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "galera-sst.sh failed:\n{stdout}\n{stderr}"
    );
    for case in CASES {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("PASS {case} tunnel=sst-tunnel ")))
            .unwrap_or_else(|| panic!("no PASS line for {case}:\n{stdout}\n{stderr}"));
        if case.ends_with("WRONG_CA") {
            assert!(line.contains("certificate verification failed"), "{line}");
        }
        if case.ends_with("KILL_TUNNEL") {
            assert!(line.contains("(stream truncated)"), "{line}");
        }
    }
}
