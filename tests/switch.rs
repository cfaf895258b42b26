//! The DBA switch (`scripts/sst-tunnel-switch`) in a scratch root: mysqld's PATH rule applied
//! to the drop-in it writes must resolve `stunnel` and `socat` to sst-tunnel, survive the
//! `/usr//bin` prepend, leave the system's tools alone, and be undone by `off`.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn switch(args: &[&str]) -> Output {
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/sst-tunnel-switch"
    ))
    .args(args)
    .output()
    .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "switch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// wsrep_prepend_PATH() in mysqld: prepend "<basedir>/bin" unless the string is present.
fn mysqld_path(path: &str) -> String {
    if path.contains("/usr//bin") {
        path.to_string()
    } else {
        format!("/usr//bin:{path}")
    }
}

/// Resolves and runs the tools with `path`, as the SST scripts do (`command -v`).
fn resolve(path: &str) -> String {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("command -v stunnel; command -v socat; stunnel -version 2>&1; socat -V | head -n1")
        .env("PATH", path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dropin_path(root: &Path, unit: &str) -> String {
    let text =
        fs::read_to_string(root.join(format!("etc/systemd/system/{unit}.d/sst-tunnel.conf")))
            .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Environment=\"PATH="))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a PATH line")
        .to_string()
}

#[test]
fn on_routes_mysqld_through_sst_tunnel_and_off_undoes_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    ok(switch(&["on", "--root", r, "--bin", bin(), "--no-reload"]));
    // Idempotent.
    ok(switch(&["on", "--root", r, "--bin", bin(), "--no-reload"]));

    let path = dropin_path(root.path(), "mariadb.service");
    let effective = mysqld_path(&path);
    assert_eq!(
        effective, path,
        "mysqld must leave the drop-in's PATH alone"
    );
    assert!(effective.starts_with("/usr/lib/sst-tunnel/bin:"));
    // The shims live under the scratch root here.
    let shim_dir = format!("{r}/usr/lib/sst-tunnel/bin");
    let seen = resolve(&effective.replace("/usr/lib/sst-tunnel/bin", &shim_dir));
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], format!("{shim_dir}/stunnel"));
    assert_eq!(lines[1], format!("{shim_dir}/socat"));
    assert!(
        lines[2].starts_with("stunnel 5.68 compatible: sst-tunnel"),
        "{seen}"
    );
    assert!(
        lines[3].starts_with("socat version 1.7.4.4 compatible: sst-tunnel"),
        "{seen}"
    );

    let status = ok(switch(&["status", "--root", r]));
    assert!(status.contains("mariadb.service: on"), "{status}");
    assert!(
        status.contains("SST scripts run stunnel as: /usr/lib/sst-tunnel/bin/stunnel"),
        "{status}"
    );

    let off = ok(switch(&["off", "--root", r, "--no-reload"]));
    assert!(off.contains("back to the stock stunnel and socat"), "{off}");
    assert!(
        !root
            .path()
            .join("etc/systemd/system/mariadb.service.d")
            .exists()
    );
    let status = ok(switch(&["status", "--root", r]));
    assert!(status.contains("mariadb.service: off"), "{status}");
    assert!(!status.contains("sst-tunnel/bin"), "{status}");
}

#[test]
fn without_the_switch_the_prepend_picks_the_stock_tools() {
    // The trap the switch exists for: a drop-in earlier in PATH loses to /usr//bin.
    let stunnel = require("stunnel");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(bin(), dir.path().join("stunnel")).unwrap();
    let naive = mysqld_path(&format!("{}:/usr/bin:/bin", dir.path().display()));
    let seen = resolve(&naive);
    assert_eq!(
        seen.lines().next(),
        Some(stunnel.replace("/usr/bin", "/usr//bin").as_str())
    );
}

#[test]
fn the_unit_is_found_and_bad_input_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    fs::create_dir_all(root.path().join("lib/systemd/system")).unwrap();
    fs::write(
        root.path().join("lib/systemd/system/mysql.service"),
        "[Service]\n",
    )
    .unwrap();
    ok(switch(&["on", "--root", r, "--bin", bin(), "--no-reload"]));
    assert!(dropin_path(root.path(), "mysql.service").ends_with(":/usr//bin"));

    let out = switch(&[
        "on",
        "--root",
        r,
        "--bin",
        "/nonexistent/sst-tunnel",
        "--no-reload",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sst-tunnel-switch: error: /nonexistent/sst-tunnel: no sst-tunnel executable there (give --bin PATH)\n"
    );
    let out = switch(&["sideways"]);
    assert_eq!(out.status.code(), Some(2));
}
