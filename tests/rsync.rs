//! Half-close proven by real rsync: a daemon over the tunnel, as the rsync SST runs it
//! (`listen --exec rsync --server --daemon`), pushed to and pulled from through `connect` as
//! rsync's remote shell, and through stock stunnel as the donor.

mod common;

use std::fs;
use std::path::Path;

use common::sst::*;
use common::*;

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
    run_rsync(&sst_rsync_args(&rsh, &src, "rsync://127.0.0.1/sst"));
    same_tree(&src, &dest);
    drop(server);
}
