//! The certificate lifecycle of a running cluster, as the README's recipes run it: first
//! setup, adding a node, renewing one, and rotating the CA in three steps. Each node is a
//! directory holding the files a DBA installs on it; after every single install, a verified
//! transfer (chain and identity, both ways) runs between every ordered pair of nodes.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;

/// One node's installed files: `ca.pem` (or, for a CApath node, a directory of CA files),
/// `cert.pem`, `key.pem`.
struct Host {
    name: &'static str,
    dir: tempfile::TempDir,
    ca_dir: bool,
}

impl Host {
    fn new(name: &'static str, ca_dir: bool) -> Self {
        Self {
            name,
            dir: tempfile::tempdir().unwrap(),
            ca_dir,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }

    /// `--ca`: the file, or the CApath-style directory.
    fn ca(&self) -> String {
        self.path(if self.ca_dir { "cas" } else { "ca.pem" })
    }

    /// Copies the admin's ca.pem here, as the recipe says; a CApath node gets one file per CA
    /// (what a DBA using a directory does: add the new CA's file, later remove the old one).
    fn install_ca(&self, admin: &Path) {
        let bundle = fs::read_to_string(admin.join("ca.pem")).unwrap();
        if self.ca_dir {
            let dir = self.dir.path().join("cas");
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            for (i, block) in split_pem(&bundle).iter().enumerate() {
                fs::write(dir.join(format!("ca-{i}.pem")), block).unwrap();
            }
        } else {
            fs::write(self.dir.path().join("ca.pem"), bundle).unwrap();
        }
    }

    /// Copies this node's certificate and key from the admin's directory.
    fn install_cert(&self, admin: &Path) {
        for (from, to) in [("cert.pem", "cert.pem"), ("key.pem", "key.pem")] {
            fs::copy(
                admin.join(format!("{}-{from}", self.name)),
                self.dir.path().join(to),
            )
            .unwrap();
        }
    }

    fn tls(&self) -> Vec<String> {
        strs(&[
            "--cert",
            &self.path("cert.pem"),
            "--key",
            &self.path("key.pem"),
            "--ca",
            &self.ca(),
            "--verify",
            "identity",
        ])
    }

    /// `sst-tunnel check` on this node's installed files.
    fn check(&self) -> Outcome {
        let mut args = strs(&["check"]);
        args.extend(self.tls().into_iter().take(6));
        Proc::spawn(bin(), &args).finish()
    }
}

fn split_pem(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    text.split_inclusive(END)
        .filter(|b| b.contains(END))
        .map(|b| format!("{}\n", b.trim_start()))
        .collect()
}

fn gen_certs(admin: &Path, extra: &[&str]) -> Outcome {
    let mut args = strs(&["gen-certs", "--out", admin.to_str().unwrap()]);
    args.extend(strs(extra));
    Proc::spawn(bin(), &args).finish()
}

/// Verified transfers, all at once, from each pair's donor into its joiner (each checks the
/// other's chain and name); every one must succeed with its bytes intact.
fn transfer_between(pairs: &[(&Host, &Host)], step: &str) {
    let mut runs = Vec::new();
    for (i, (joiner, donor)) in pairs.iter().enumerate() {
        let mut args = listen_args("127.0.0.1:0", &joiner.tls());
        args.extend(strs(&["--peer-name", donor.name, "--stdio"]));
        let mut server = Proc::spawn(bin(), &args);
        server.close_stdin();
        runs.push((i, server, joiner, donor));
    }
    let mut clients = Vec::new();
    for (i, server, joiner, donor) in &runs {
        let mut args = vec![
            "connect".to_string(),
            format!("127.0.0.1:{}", server.port()),
        ];
        args.extend(donor.tls());
        args.extend(strs(&["--peer-name", joiner.name]));
        let mut client = Proc::spawn(bin(), &args);
        let payload = bytes(10_000 + i, *i as u64);
        let mut input = client.stdin();
        input.write_all(&payload).unwrap();
        drop(input);
        clients.push((client, payload));
    }
    for ((_, server, joiner, donor), (client, payload)) in runs.into_iter().zip(clients) {
        let what = format!("{step}: {} -> {}", donor.name, joiner.name);
        let client = client.finish();
        assert_eq!(client.code(), 0, "{what}: donor: {}", client.stderr);
        let server = server.finish();
        assert_eq!(server.code(), 0, "{what}: joiner: {}", server.stderr);
        assert!(server.stdout == payload, "{what}: bytes differ");
    }
}

/// Every ordered pair of `hosts`.
fn all_pairs(hosts: &[Host], step: &str) {
    let mut pairs = Vec::new();
    for joiner in hosts {
        for donor in hosts {
            if joiner.name != donor.name {
                pairs.push((joiner, donor));
            }
        }
    }
    transfer_between(&pairs, step);
}

/// `sst-tunnel check` on a certificate, key and CA file.
fn check_files(cert: &Path, key: &Path, ca: &Path) -> Outcome {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    Proc::spawn(
        bin(),
        &strs(&[
            "check",
            "--cert",
            &s(cert),
            "--key",
            &s(key),
            "--ca",
            &s(ca),
        ]),
    )
    .finish()
}

fn stdout(out: &Outcome) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cert_count(path: PathBuf) -> usize {
    split_pem(&fs::read_to_string(path).unwrap()).len()
}

#[test]
fn add_renew_and_rotate_without_a_failed_transfer() {
    let admin_dir = tempfile::tempdir().unwrap();
    let admin = admin_dir.path();
    let hosts = [
        Host::new("node1", false),
        Host::new("node2", false),
        Host::new("node3", false),
        Host::new("node4", true),
    ];
    let node = |h: &Host| format!("{}=127.0.0.1", h.name);

    // First setup: three nodes, a CA named after the cluster with a random id.
    let out = gen_certs(
        admin,
        &[
            "--cluster",
            "prod",
            "--node",
            &node(&hosts[0]),
            "--node",
            &node(&hosts[1]),
            "--node",
            &node(&hosts[2]),
        ],
    );
    out.ok();
    assert!(stdout(&out).contains("made a new CA 'CN=prod SST CA "));
    for h in &hosts[..3] {
        h.install_ca(admin);
        h.install_cert(admin);
    }
    all_pairs(&hosts[..3], "setup");
    let first_ca = fs::read(admin.join("ca.pem")).unwrap();

    // Adding a node reuses the CA: old and new nodes trust each other.
    let out = gen_certs(admin, &["--node", &node(&hosts[3])]);
    out.ok();
    assert!(stdout(&out).contains("issuing from the CA in"));
    assert_eq!(fs::read(admin.join("ca.pem")).unwrap(), first_ca);
    hosts[3].install_ca(admin);
    hosts[3].install_cert(admin);
    all_pairs(&hosts, "add node4");

    // Renewing node1: refused without --renew; with it, same CA, new certificate and key.
    gen_certs(admin, &["--node", &node(&hosts[0])])
        .fails(2, "node1-cert.pem: already exists; pass --renew");
    let old_node1 = fs::read(admin.join("node1-cert.pem")).unwrap();
    gen_certs(admin, &["--renew", "--node", &node(&hosts[0])]).ok();
    assert_ne!(fs::read(admin.join("node1-cert.pem")).unwrap(), old_node1);
    assert_eq!(fs::read(admin.join("ca.pem")).unwrap(), first_ca);
    hosts[0].install_cert(admin);
    all_pairs(&hosts, "renew node1");
    let pre_rotation = tempfile::tempdir().unwrap();
    for file in ["node1-cert.pem", "node1-key.pem"] {
        fs::copy(admin.join(file), pre_rotation.path().join(file)).unwrap();
    }

    // Rotation step 1: the bundle, installed node by node.
    gen_certs(admin, &["--rotate-ca", "finish"]).fails(2, "no rotation is under way");
    let out = gen_certs(admin, &["--rotate-ca", "start"]);
    out.ok();
    assert!(stdout(&out).contains("step 1 of 3"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("made the new CA 'CN=prod SST CA "),
        "{}",
        stdout(&out)
    );
    assert_eq!(cert_count(admin.join("ca.pem")), 2);
    gen_certs(admin, &["--rotate-ca", "start"]).fails(2, "a rotation is already under way");
    for (i, h) in hosts.iter().enumerate() {
        h.install_ca(admin);
        all_pairs(&hosts, &format!("bundle on {} of 4", i + 1));
    }
    let at = hosts[1].check();
    at.ok();
    assert!(
        stdout(&at).contains("CA rotation, step 1 of 3 on this node"),
        "{}",
        stdout(&at)
    );

    // Step 2: certificates from the new CA, installed node by node. Finishing early is
    // refused while a node's certificate is still from the old CA.
    let three: Vec<String> = hosts[..3].iter().map(node).collect();
    gen_certs(
        admin,
        &[
            "--renew", "--node", &three[0], "--node", &three[1], "--node", &three[2],
        ],
    )
    .ok();
    gen_certs(admin, &["--rotate-ca", "finish"])
        .fails(2, "still issued by the old CA 'CN=prod SST CA ")
        .fails(
            2,
            "node4-cert.pem; renew it first (sst-tunnel gen-certs --out ",
        )
        .fails(2, " --renew --node node4=127.0.0.1) and install");
    gen_certs(admin, &["--renew", "--node", &node(&hosts[3])]).ok();
    for (i, h) in hosts.iter().enumerate() {
        h.install_cert(admin);
        all_pairs(&hosts, &format!("new certificate on {} of 4", i + 1));
    }
    let at = hosts[3].check();
    at.ok();
    assert!(
        stdout(&at).contains("CA rotation, step 2 of 3 on this node"),
        "{}",
        stdout(&at)
    );

    // Step 3: the old CA dropped, installed node by node.
    let out = gen_certs(admin, &["--rotate-ca", "finish"]);
    out.ok();
    assert!(stdout(&out).contains("step 3 of 3"), "{}", stdout(&out));
    assert_eq!(cert_count(admin.join("ca.pem")), 1);
    assert!(!admin.join("ca-old-key.pem").exists());
    for (i, h) in hosts.iter().enumerate() {
        h.install_ca(admin);
        all_pairs(&hosts, &format!("new CA only on {} of 4", i + 1));
    }
    let at = hosts[0].check();
    at.ok();
    assert!(!stdout(&at).contains("CA rotation"), "{}", stdout(&at));

    // The old CA is really gone: node1's pre-rotation certificate is refused now.
    let mut args = listen_args("127.0.0.1:0", &hosts[1].tls());
    args.extend(strs(&["--peer-name", "node1", "--stdio"]));
    let mut server = Proc::spawn(bin(), &args);
    server.close_stdin();
    let port = server.port();
    let p = |f: &str| pre_rotation.path().join(f).to_string_lossy().into_owned();
    let mut args = strs(&[
        "connect",
        &format!("127.0.0.1:{port}"),
        "--cert",
        &p("node1-cert.pem"),
        "--key",
        &p("node1-key.pem"),
        "--ca",
        &hosts[0].ca(),
        "--peer-name",
        "node2",
    ]);
    args.push("--verify".into());
    args.push("identity".into());
    let mut client = Proc::spawn(bin(), &args);
    client.close_stdin();
    assert_eq!(client.finish().code(), 3);
    server
        .finish()
        .fails(3, "client certificate 'CN=node1' (issuer 'CN=prod SST CA ");
}

#[test]
fn a_ca_directory_is_never_half_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let other = tempfile::tempdir().unwrap();
    gen_certs(d, &["--node", "node1"]).ok();
    gen_certs(other.path(), &["--node", "node1"]).ok();
    // Two CAs made without a name still differ by name.
    let name = |dir: &Path| {
        let out = check_files(
            &dir.join("node1-cert.pem"),
            &dir.join("node1-key.pem"),
            &dir.join("ca.pem"),
        );
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.contains("trusts the CA 'CN=Galera SST CA "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string();
        line.split('\'').nth(1).unwrap().to_string()
    };
    assert_ne!(name(d), name(other.path()));
    // A key from another CA: refused, nothing issued.
    fs::copy(other.path().join("ca-key.pem"), d.join("ca-key.pem")).unwrap();
    gen_certs(d, &["--node", "node2"]).fails(2, "ca-key.pem: does not belong to the CA in");
    assert!(!d.join("node2-cert.pem").exists());
    // Half a CA: refused.
    fs::remove_file(d.join("ca-key.pem")).unwrap();
    gen_certs(d, &["--node", "node2"]).fails(2, "ca-key.pem: missing");
    // Naming a CA that already exists is a mistake, not a silent no-op.
    gen_certs(other.path(), &["--cluster", "x", "--node", "node2"])
        .fails(2, "--cluster and --ca-name only name a new CA");
}

#[test]
fn check_names_a_look_alike_ca_and_how_to_renew() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [a.path(), b.path()] {
        gen_certs(
            dir,
            &[
                "--ca-name",
                "Galera SST CA",
                "--node",
                "node1=127.0.0.1",
                "--node",
                "node2=127.0.0.1",
            ],
        )
        .ok();
    }
    let p = |dir: &Path, f: &str| dir.join(f).to_string_lossy().into_owned();
    // node1 from cluster A checked against cluster B's CA of the same name.
    let out = check_files(
        &a.path().join("node1-cert.pem"),
        &a.path().join("node1-key.pem"),
        &b.path().join("ca.pem"),
    );
    assert_eq!(out.code(), 3);
    let text = stdout(&out);
    assert!(
        text.contains(
            "error: server certificate 'CN=node1' was issued by a different CA with the same \
             name 'CN=Galera SST CA': it was signed by key "
        ) && text.contains(&format!(
            "but the CA of that name in {} has key",
            p(b.path(), "ca.pem")
        )),
        "{text}"
    );
    assert!(!text.contains("bad signature"), "{text}");

    // The same words from a real handshake: B's joiner refuses A's donor.
    let mut server = Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "127.0.0.1:0",
            "--stdio",
            "--cert",
            &p(b.path(), "node2-cert.pem"),
            "--key",
            &p(b.path(), "node2-key.pem"),
            "--ca",
            &p(b.path(), "ca.pem"),
        ]),
    );
    server.close_stdin();
    let port = server.port();
    let mut client = Proc::spawn(
        bin(),
        &strs(&[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--cert",
            &p(a.path(), "node1-cert.pem"),
            "--key",
            &p(a.path(), "node1-key.pem"),
            "--ca",
            &p(b.path(), "ca.pem"),
            "--verify",
            "chain",
        ]),
    );
    client.close_stdin();
    assert_eq!(client.finish().code(), 3);
    server.finish().fails(
        3,
        "was issued by a different CA with the same name 'CN=Galera SST CA'",
    );

    // Near expiry: a warning with the date and the command that renews this very node.
    let c = tempfile::tempdir().unwrap();
    gen_certs(c.path(), &["--node", "node3=127.0.0.3", "--days", "10"]).ok();
    let out = check_files(
        &c.path().join("node3-cert.pem"),
        &c.path().join("node3-key.pem"),
        &c.path().join("ca.pem"),
    );
    out.ok();
    let text = stdout(&out);
    let dir = fs::canonicalize(c.path()).unwrap();
    assert!(
        text.contains("warning: certificate expires in ")
            && text.contains(&format!(
                "renew it before an SST needs it: sst-tunnel gen-certs --out {} --renew --node \
                 node3=127.0.0.3",
                dir.display()
            )),
        "{text}"
    );
}

/// `openssl verify` of a node certificate against a CA bundle, as every OpenSSL peer (stunnel,
/// socat) decides it.
fn openssl_verify(ca: &Path, cert: &Path) -> Result<(), String> {
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl (the test command installs it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn all_verify(admin: &Path, nodes: &[&str], step: &str) {
    for node in nodes {
        let cert = admin.join(format!("{node}-cert.pem"));
        if let Err(why) = openssl_verify(&admin.join("ca.pem"), &cert) {
            panic!("{step}: openssl verify {node}: {why}");
        }
    }
}

/// Review finding: with a fixed --ca-name, `--rotate-ca start` made a new CA of the old one's
/// name and `finish` (no node renewed) dropped the old CA, since "issued by" went by name; every
/// node's certificate then failed `openssl verify`. Now a same-named new CA is refused, "issued
/// by" is decided by key (certificates carry authorityKeyIdentifier), `finish` refuses while a
/// node still needs the old CA or a certificate file cannot be read, and every node verifies
/// at every step of a correct rotation.
#[test]
fn a_rotation_never_drops_a_ca_a_node_still_needs() {
    let admin_dir = tempfile::tempdir().unwrap();
    let admin = admin_dir.path();
    let name = "Prod SST CA";
    gen_certs(
        admin,
        &["--ca-name", name, "--node", "n1=127.0.0.1", "--node", "n2"],
    )
    .ok();
    let nodes = ["n1", "n2"];
    all_verify(admin, &nodes, "first setup");
    let n1_before = fs::read(admin.join("n1-cert.pem")).unwrap();
    let aki = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "authorityKeyIdentifier", "-in"])
        .arg(admin.join("n1-cert.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&aki.stdout).contains("Authority Key Identifier"),
        "no authorityKeyIdentifier: {}",
        String::from_utf8_lossy(&aki.stdout)
    );

    // The reported reproduction: the same name again is refused, and nothing is written.
    gen_certs(admin, &["--rotate-ca", "start", "--ca-name", name]).fails(
        2,
        "the new CA would have the old CA's name 'CN=Prod SST CA'",
    );
    assert_eq!(cert_count(admin.join("ca.pem")), 1);
    assert!(!admin.join("ca-old-key.pem").exists());

    // A correct rotation, with a fixed new name.
    gen_certs(
        admin,
        &["--rotate-ca", "start", "--ca-name", "Prod SST CA 2027"],
    )
    .ok();
    all_verify(admin, &nodes, "after start");
    // No node renewed: finish refuses, names both, and leaves the bundle whole.
    gen_certs(admin, &["--rotate-ca", "finish"])
        .fails(2, "still issued by the old CA 'CN=Prod SST CA'")
        .fails(2, "n1-cert.pem")
        .fails(2, "n2-cert.pem");
    assert_eq!(cert_count(admin.join("ca.pem")), 2);
    all_verify(admin, &nodes, "after a refused finish");

    gen_certs(admin, &["--renew", "--node", "n1=127.0.0.1"]).ok();
    assert_ne!(fs::read(admin.join("n1-cert.pem")).unwrap(), n1_before);
    all_verify(admin, &nodes, "after renewing n1");
    // check tells a renewed node (new CA) from one still on the old CA, by key.
    let ca = admin.join("ca.pem");
    let n1 = check_files(&admin.join("n1-cert.pem"), &admin.join("n1-key.pem"), &ca);
    n1.ok();
    assert!(stdout(&n1).contains("step 2 of 3"), "{}", stdout(&n1));
    let n2 = check_files(&admin.join("n2-cert.pem"), &admin.join("n2-key.pem"), &ca);
    n2.ok();
    assert!(stdout(&n2).contains("step 1 of 3"), "{}", stdout(&n2));
    gen_certs(admin, &["--rotate-ca", "finish"])
        .fails(2, "n2-cert.pem")
        .fails(2, "--node n2");

    // An unreadable certificate file stops finish: it could be a node on the old CA.
    gen_certs(admin, &["--renew", "--node", "n2"]).ok();
    fs::write(admin.join("n3-cert.pem"), "not a certificate\n").unwrap();
    gen_certs(admin, &["--rotate-ca", "finish"]).fails(2, "n3-cert.pem");
    fs::remove_file(admin.join("n3-cert.pem")).unwrap();

    gen_certs(admin, &["--rotate-ca", "finish"]).ok();
    assert_eq!(cert_count(admin.join("ca.pem")), 1);
    all_verify(admin, &nodes, "after finish");
}

/// Review finding: gen-certs issued from whatever CA sat in --out, so whoever could write
/// that directory (or the key) could plant a CA the cluster then trusts. A directory or CA
/// files that are not ours alone are refused with the reason and the fix; nothing is issued.
#[test]
fn gen_certs_refuses_a_ca_directory_others_could_have_planted() {
    use std::os::unix::fs::PermissionsExt;
    let admin_dir = tempfile::tempdir().unwrap();
    let admin = admin_dir.path().join("ca");
    gen_certs(&admin, &["--node", "n1"]).ok();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&admin), 0o700, "a new CA directory is ours alone");
    assert_eq!(mode(&admin.join("ca-key.pem")), 0o600);
    let set = |path: &Path, m: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
    };
    let refused = |needle: &str| {
        gen_certs(&admin, &["--node", "n2"])
            .fails(2, needle)
            .fails(2, "another user could have put their own CA here");
        assert!(
            !admin.join("n2-cert.pem").exists(),
            "issued from a suspect CA"
        );
    };
    set(&admin, 0o777);
    refused("has mode 777");
    set(&admin, 0o700);
    set(&admin.join("ca-key.pem"), 0o666);
    refused("chmod 600");
    set(&admin.join("ca-key.pem"), 0o640);
    refused("has mode 640");
    set(&admin.join("ca-key.pem"), 0o600);
    set(&admin.join("ca.pem"), 0o646);
    refused("chmod go-w");
    set(&admin.join("ca.pem"), 0o644);
    // Owned by someone else (root can chown; the test runs as root in CI).
    if nix_uid() == 0 {
        std::os::unix::fs::chown(admin.join("ca-key.pem"), Some(65534), None).unwrap();
        refused("belongs to uid 65534");
        std::os::unix::fs::chown(admin.join("ca-key.pem"), Some(0), None).unwrap();
    }
    gen_certs(&admin, &["--node", "n2"]).ok();
}

fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::tempfile().unwrap();
    probe.metadata().unwrap().uid()
}

/// Review finding: `--days 4294967295` panicked (exit 101) after the CA was written. Every
/// lifetime is range-checked before anything is written.
#[test]
fn gen_certs_lifetimes_are_range_checked_before_writing() {
    let admin_dir = tempfile::tempdir().unwrap();
    let admin = admin_dir.path().join("ca");
    for flag in ["--days", "--ca-days"] {
        for value in ["4294967295", "36501", "0", "-1", "1e9"] {
            let out = gen_certs(&admin, &[&format!("{flag}={value}"), "--node", "n1"]);
            out.fails(2, flag);
            assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
            assert!(!admin.join("ca.pem").exists(), "{flag} {value}: wrote a CA");
        }
    }
    gen_certs(
        &admin,
        &["--days", "36500", "--ca-days", "36500", "--node", "n1"],
    )
    .ok();
}

/// Review finding (issue 22): `--renew --node node2` (no addresses) dropped the node's IP
/// SANs, and the replaced certificate and key were gone. Now the addresses are kept unless
/// new ones are given, the issued names are printed, and the old pair stays as `.old`.
#[test]
fn renew_keeps_a_nodes_addresses_and_the_replaced_pair() {
    use std::os::unix::fs::PermissionsExt;
    let admin_dir = tempfile::tempdir().unwrap();
    let admin = admin_dir.path();
    gen_certs(admin, &["--node", "node2=127.0.0.2,::1"]).ok();
    let before_cert = fs::read(admin.join("node2-cert.pem")).unwrap();
    let before_key = fs::read(admin.join("node2-key.pem")).unwrap();
    let sans = |file: &str| {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(admin.join(file))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = gen_certs(admin, &["--renew", "--node", "node2"]);
    out.ok();
    assert!(
        stdout(&out).contains("node2 (DNS:node2, IP:127.0.0.2, IP:::1)"),
        "{}",
        stdout(&out)
    );
    let now = sans("node2-cert.pem");
    assert!(
        now.contains("IP Address:127.0.0.2") && now.contains("IP Address:0:0:0:0:0:0:0:1"),
        "{now}"
    );
    assert_eq!(
        fs::read(admin.join("node2-cert.pem.old")).unwrap(),
        before_cert
    );
    assert_eq!(
        fs::read(admin.join("node2-key.pem.old")).unwrap(),
        before_key
    );
    let mode = fs::metadata(admin.join("node2-key.pem.old"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // New addresses given: they replace the old ones.
    gen_certs(admin, &["--renew", "--node", "node2=10.1.1.2"]).ok();
    let now = sans("node2-cert.pem");
    assert!(
        now.contains("IP Address:10.1.1.2") && !now.contains("127.0.0.2"),
        "{now}"
    );
    // The .old files are no node certificates: a rotation's finish ignores them.
    assert_eq!(cert_count(admin.join("ca.pem")), 1);
}
