//! SST-shaped fixtures: a datadir-like tree, the joiner's rsyncd.conf, running rsync, and
//! comparing trees.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;

/// A tree with empty, small, large and nested files and a symlink.
pub fn make_tree(root: &Path) {
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
pub fn rsyncd_conf(pki: &Pki, path: &Path) -> String {
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

pub fn run_rsync(args: &[String]) {
    let out = Command::new(require("rsync")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn same_tree(a: &Path, b: &Path) {
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

/// The donor's rsync call of wsrep_sst_rsync (rsync:507-675): `src/` into `url` with `rsh` as
/// the remote shell (rsync appends `HOST rsync --server --daemon .` to it).
pub fn sst_rsync_args(rsh: &str, src: &Path, url: &str) -> Vec<String> {
    strs(&[
        &format!("--rsh={rsh}"),
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
        &format!("{}/", src.display()),
        url,
    ])
}

/// rsync's full output, for runs expected to fail.
pub fn rsync_output(args: &[String]) -> std::process::Output {
    Command::new(require("rsync")).args(args).output().unwrap()
}

/// A directory with `stunnel` and `socat` symlinked to the binary under test: the names the
/// SST scripts run, and what the DBA switch installs.
pub struct Personas {
    dir: tempfile::TempDir,
}

impl Personas {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["stunnel", "socat"] {
            std::os::unix::fs::symlink(bin(), dir.path().join(name)).unwrap();
        }
        Self { dir }
    }

    pub fn stunnel(&self) -> String {
        self.dir
            .path()
            .join("stunnel")
            .to_string_lossy()
            .into_owned()
    }

    pub fn socat(&self) -> String {
        self.dir.path().join("socat").to_string_lossy().into_owned()
    }
}

/// Waits until the SST scripts would call the joiner ready (`check_pid_and_port`, contract
/// 2.2 step 4): `ss -nlpH` shows a listener on `port` owned by a process called `name*` with
/// PID `pid`, and, when given, `pid_file` holds that PID.
pub fn wait_ready(name: &str, pid: i32, port: u16, pid_file: Option<&Path>) {
    let deadline = Instant::now() + PATIENCE;
    let filter = format!("( sport = :{port} )");
    let owner = format!("((\"{name}");
    let pid_tag = format!(",pid={pid},");
    loop {
        let out = Command::new(require("ss"))
            .args(["-nlpH", "-t", &filter])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        let listed = table
            .lines()
            .any(|l| l.contains(&owner) && l.contains(&pid_tag));
        let pid_ok = pid_file
            .is_none_or(|f| fs::read_to_string(f).is_ok_and(|text| text == format!("{pid}\n")));
        if listed && pid_ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready as the SST script sees it: ss shows {table:?}, pid file {:?}",
            pid_file.map(fs::read_to_string)
        );
        thread::sleep(Duration::from_millis(20));
    }
}
