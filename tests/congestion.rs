//! `--congestion NAME` (and `SST_TUNNEL_CONGESTION` for the front-ends): every connection
//! runs the chosen TCP congestion control, read back from the kernel on both ends; a name the
//! kernel does not have, or will not let this user choose, fails at start naming the sysctl
//! and the module.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// What the kernel has and what it lets an unprivileged process choose.
fn sysctl(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn both_ends_run_the_chosen_congestion_control() {
    // reno is built into every kernel and always allowed.
    let pki = Pki::new();
    let mut server = stdio_server(&pki, &["--congestion", "reno", "--log-level", "debug"]);
    server.close_stdin();
    let port = server.port();
    let mut cl = client(
        &pki,
        port,
        "client",
        &["--congestion", "reno", "--log-level", "debug"],
    );
    std::io::Write::write_all(&mut cl.stdin(), b"over reno").unwrap();
    let c = cl.finish();
    c.ok();
    let s = server.finish();
    s.ok();
    assert_eq!(s.stdout, b"over reno");
    for (who, out) in [("client", &c), ("server", &s)] {
        assert!(
            out.stderr.contains("congestion control reno"),
            "{who}: the kernel's own answer for the connection: {}",
            out.stderr
        );
    }
}

#[test]
fn a_congestion_control_the_kernel_lacks_fails_at_start() {
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "connect",
            "127.0.0.1:9",
            "--verify",
            "none",
            "--congestion",
            "nosuchcc",
        ]),
    )
    .finish();
    out.fails(
        2,
        "--congestion nosuchcc: this kernel has no congestion control",
    )
    .fails(2, "net.ipv4.tcp_available_congestion_control")
    .fails(2, "modprobe tcp_nosuchcc");
    assert!(!out.stderr.contains("cannot connect"), "{}", out.stderr);
    // The front-ends' variable, in its own name.
    let out = Proc::spawn_with(
        Command::new(bin())
            .args([
                "socat",
                "-u",
                "stdio",
                "openssl-connect:127.0.0.1:9,verify=0",
            ])
            .env("SST_TUNNEL_CONGESTION", "nosuchcc"),
    )
    .finish();
    assert_ne!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("SST_TUNNEL_CONGESTION nosuchcc: this kernel has no congestion control"),
        "{}",
        out.stderr
    );
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "127.0.0.1:0",
            "--verify",
            "none",
            "--stdio",
            "--congestion",
            "a b",
        ]),
    )
    .finish();
    out.fails(2, "not a congestion control name");
}

/// An algorithm the kernel has but does not allow unprivileged users (bbr on a stock Debian
/// host until an administrator lists it) is refused for an unprivileged process with the
/// sysctl to change. Needs root to become `nobody`, and such an algorithm on this host (it
/// fails, rather than passing unchecked, where there is none).
#[test]
fn a_congestion_control_not_allowed_for_the_user_names_the_sysctl() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "run as root (scripts/test.sh does), to try as nobody"
    );
    let allowed = sysctl("tcp_allowed_congestion_control");
    // Not a silent pass where there is nothing to refuse: that host cannot run this check.
    let name = sysctl("tcp_available_congestion_control")
        .into_iter()
        .find(|a| !allowed.contains(a))
        .unwrap_or_else(|| {
            panic!(
                "every available congestion control is allowed here ({allowed:?}), so nothing \
                 can be refused: this check needs a host (like the CI kind) with one available \
                 and not allowed"
            )
        });
    // A copy of the binary nobody may run (the build directory may be closed to it).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("sst-tunnel");
    std::fs::copy(bin(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Proc::spawn(
        &require("setpriv"),
        &strs(&[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            copy.to_str().unwrap(),
            "connect",
            "127.0.0.1:9",
            "--verify",
            "none",
            "--congestion",
            &name,
        ]),
    )
    .finish();
    out.fails(
        2,
        &format!("--congestion {name}: \"{name}\" is not allowed for this user"),
    )
    .fails(2, "sysctl -w net.ipv4.tcp_allowed_congestion_control=");
}
