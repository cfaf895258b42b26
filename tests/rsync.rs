//! Half-close proven by real rsync: a daemon over the tunnel, as the rsync SST runs it
//! (`listen --exec rsync --server --daemon`), pushed to and pulled from through `connect` as
//! rsync's remote shell, and through stock stunnel as the donor.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// A tree with empty, small, large and nested files and a symlink.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("db1/sub")).unwrap();
    fs::create_dir_all(root.join("db2")).unwrap();
    fs::create_dir_all(root.join("empty_dir")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("ib_logfile0"), bytes(6 << 20, 1)).unwrap();
    for i in 0..200u64 {
        let dir = if i % 2 == 0 { "db1" } else { "db1/sub" };
        fs::write(
            root.join(dir).join(format!("t{i}.ibd")),
            bytes((i * 997 % 40_000) as usize, i),
        )
        .unwrap();
    }
    fs::write(root.join("db2/big.MAD"), bytes(3 << 20, 9)).unwrap();
    std::os::unix::fs::symlink("db2/big.MAD", root.join("link")).unwrap();
}

/// rsyncd.conf with one writable module at `path`.
fn rsyncd_conf(pki: &Pki, path: &Path) -> String {
    let ids = if nix::unistd::Uid::effective().is_root() {
        // As root the daemon would switch to "nobody" and fail to write (contract section 5).
        "uid = 0\ngid = 0\n"
    } else {
        ""
    };
    pki.write(
        "rsyncd.conf",
        &format!(
            "use chroot = no\nmunge symlinks = no\nread only = no\ntimeout = 300\n{ids}\n[sst]\npath = {}\n",
            path.display()
        ),
    );
    pki.s("rsyncd.conf")
}

fn run_rsync(args: &[String]) {
    let out = Command::new(require("rsync")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Starts `listen --exec rsync --server --daemon` serving `dest`; returns it and its port.
fn rsync_daemon(pki: &Pki, dest: &Path) -> (Proc, u16) {
    let conf = rsyncd_conf(pki, dest);
    let mut args = listen_args("127.0.0.1:0", &pki.args("server"));
    args.extend(strs(&[
        "--exec",
        &require("rsync"),
        "--server",
        "--daemon",
        &format!("--config={conf}"),
        ".",
    ]));
    let server = Proc::spawn(bin(), &args);
    let port = server.port();
    (server, port)
}

#[test]
fn rsync_push_and_pull_through_the_tunnel() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let (src, dest, back) = (
        work.path().join("src"),
        work.path().join("dest"),
        work.path().join("back"),
    );
    make_tree(&src);
    fs::create_dir(&dest).unwrap();
    let (server, port) = rsync_daemon(&pki, &dest);
    let rsh = format!(
        "{} connect 127.0.0.1:{port} {} --",
        bin(),
        pki.args("client").join(" ")
    );

    run_rsync(&strs(&[
        "-a",
        "--rsh",
        &rsh,
        &format!("{}/", src.display()),
        "rsync://127.0.0.1/sst/",
    ]));
    same_tree(&src, &dest);
    run_rsync(&strs(&[
        "-a",
        "--rsh",
        &rsh,
        "rsync://127.0.0.1/sst/",
        &format!("{}/", back.display()),
    ]));
    same_tree(&src, &back);
    drop(server);
}

#[test]
fn rsync_through_stock_stunnel_donor_into_sst_tunnel_joiner() {
    let stunnel = require("stunnel");
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    make_tree(&src);
    fs::create_dir(&dest).unwrap();
    let (server, port) = rsync_daemon(&pki, &dest);
    let rsh = format!("{stunnel} {}", stunnel_donor_conf(&pki, port));
    run_rsync(&strs(&[
        "--owner",
        "--group",
        "--perms",
        "--links",
        "--specials",
        "--ignore-times",
        "--inplace",
        "--recursive",
        "--delete",
        "--quiet",
        "--whole-file",
        "--rsh",
        &rsh,
        &format!("{}/", src.display()),
        "rsync://127.0.0.1/sst",
    ]));
    same_tree(&src, &dest);
    drop(server);
}
