//! The project's own shell scripts fail closed: a step that fails is never followed by a mark
//! that later runs trust (issue 23: `packaging/foreign.sh` marked a sysroot ready after its
//! download had failed, since `foreign_builder && foreign_sysroot` suspends errexit inside).

use std::process::Command;

#[test]
fn a_failed_sysroot_download_is_never_marked_ready() {
    let dir = tempfile::tempdir().unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    // The download fails (apt-get stubbed); called inside `&&`, as build.sh calls it.
    let script = format!(
        "set -euo pipefail
         . {repo}/packaging/foreign.sh
         chroots={dir} debarch=arm64
         private_apt() {{ private_apt_opts=(); }}
         apt-get() {{ return 100; }}
         if true && foreign_sysroot; then echo made; else echo refused; fi",
        dir = dir.path().display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("refused"),
        "stdout: {stdout}; stderr: {stderr}"
    );
    assert!(
        !dir.path().join("sysroot-arm64/.sst-ready").exists(),
        "a failed sysroot was marked ready; stderr: {stderr}"
    );
    assert!(
        stderr.contains("cannot download bullseye's libc6:arm64"),
        "{stderr}"
    );
}
