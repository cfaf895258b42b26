//! Operator tools: `gen-certs` (a cluster PKI that OpenSSL, the SST scripts' pre-checks and
//! both tunnel ends accept) and `check` (the pre-flight doctor).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn gen_certs(dir: &Path, extra: &[&str]) -> Outcome {
    let mut args = strs(&["gen-certs", "--out", dir.to_str().unwrap()]);
    args.extend(strs(extra));
    Proc::spawn(bin(), &args).finish()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new(require("openssl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gen_certs_makes_a_pki_openssl_and_both_ends_accept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = gen_certs(
        d,
        &["--node", "node1=127.0.0.1", "--node", "node2=127.0.0.2,::1"],
    );
    out.ok();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    for key in ["ca-key.pem", "node1-key.pem", "node2-key.pem"] {
        let mode = fs::metadata(d.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // The SST scripts' pre-checks (common:1393-1478): chain and key/cert match.
    for node in ["node1", "node2"] {
        let verified = openssl(&[
            "verify",
            "-CAfile",
            &p("ca.pem"),
            &p(&format!("{node}-cert.pem")),
        ]);
        assert!(verified.trim_end().ends_with(": OK"), "{verified}");
        assert_eq!(
            openssl(&[
                "x509",
                "-noout",
                "-pubkey",
                "-in",
                &p(&format!("{node}-cert.pem"))
            ]),
            openssl(&["pkey", "-pubout", "-in", &p(&format!("{node}-key.pem"))])
        );
    }
    let text = openssl(&["x509", "-noout", "-text", "-in", &p("node2-cert.pem")]);
    assert!(text.contains("Subject: CN = node2"), "{text}");
    assert!(
        text.contains("DNS:node2, IP Address:127.0.0.2, IP Address:0:0:0:0:0:0:0:1"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    let snippet = fs::read_to_string(d.join("node1-sst.cnf")).unwrap();
    assert!(
        snippet.contains(&format!("[sst]\ntca={}\n", p("ca.pem"))),
        "{snippet}"
    );
    assert!(snippet.contains(&format!("tkey={}\n", p("node1-key.pem"))));

    // The pair works as joiner and donor with identity checks by name.
    let mut server = Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "127.0.0.1:0",
            "--stdio",
            "--cert",
            &p("node2-cert.pem"),
            "--key",
            &p("node2-key.pem"),
            "--ca",
            &p("ca.pem"),
            "--verify",
            "identity",
            "--peer-name",
            "node1",
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
            &p("node1-cert.pem"),
            "--key",
            &p("node1-key.pem"),
            "--ca",
            &p("ca.pem"),
            "--verify",
            "identity",
            "--peer-name",
            "node2",
        ]),
    );
    client.close_stdin();
    client.finish().ok();
    server.finish().ok();
}

#[test]
fn gen_certs_never_overwrites_without_renew_and_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gen_certs(d, &["--node", "node1"]).ok();
    let ca = fs::read(d.join("ca.pem")).unwrap();
    let cert = fs::read(d.join("node1-cert.pem")).unwrap();
    gen_certs(d, &["--node", "node1"]).fails(
        2,
        &format!(
            "{}: already exists; pass --renew",
            fs::canonicalize(d)
                .unwrap()
                .join("node1-cert.pem")
                .display()
        ),
    );
    assert_eq!(fs::read(d.join("node1-cert.pem")).unwrap(), cert);
    // --force is the old spelling of --renew: the node is re-issued, the CA never replaced.
    gen_certs(d, &["--node", "node1", "--force"]).ok();
    assert_ne!(fs::read(d.join("node1-cert.pem")).unwrap(), cert);
    assert_eq!(fs::read(d.join("ca.pem")).unwrap(), ca);
    gen_certs(d, &["--node", "node1=10.0.0.300"]).fails(2, "'10.0.0.300' is not an IP address");
}

fn check(pki: &Pki, node: &str, extra: &[&str]) -> Outcome {
    let mut args = strs(&[
        "check",
        "--cert",
        &pki.s(&format!("{node}-cert.pem")),
        "--key",
        &pki.s(&format!("{node}-key.pem")),
    ]);
    if !extra.contains(&"--ca") {
        args.extend(strs(&["--ca", &pki.s("ca.pem")]));
    }
    args.extend(strs(extra));
    Proc::spawn(bin(), &args).finish()
}

fn stdout(out: &Outcome) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_passes_a_good_node_and_names_each_problem() {
    let pki = Pki::new();
    let good = check(
        &pki,
        "node2",
        &["--peer-name", "node2", "--peer-name", "127.0.0.1"],
    );
    good.ok();
    let text = stdout(&good);
    assert!(text.contains("ok: chain verifies against"), "{text}");
    assert!(text.contains("ok: certificate names 'node2'"), "{text}");
    // Which copy path SSTs will take here (scripts/ktls-vm-test.sh checks the kTLS answer).
    assert!(
        text.contains("ok: kernel TLS unavailable here (")
            || text.contains("ok: kernel TLS available for "),
        "{text}"
    );
    assert!(text.ends_with("summary: 0 errors, 0 warnings\n"), "{text}");

    let cases: [(&str, &[&str], &str); 5] = [
        (
            "node2",
            &["--peer-name", "node3"],
            "error: certificate does not name 'node3'",
        ),
        ("rogue", &[], "is not signed by a CA in"),
        ("expired", &[], "error: certificate expired at"),
        ("revoked", &["--crl", &pki.s("crl.pem")], "is revoked"),
        (
            "node2",
            &["--ca", &pki.s("other-ca.pem")],
            "is not signed by a CA in",
        ),
    ];
    for (node, extra, needle) in cases {
        let out = check(&pki, node, extra);
        assert_eq!(out.code(), 3, "{node} {extra:?}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(needle),
            "{node} {extra:?}: {}",
            stdout(&out)
        );
    }
    // A key that belongs to another certificate.
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "check",
            "--cert",
            &pki.s("node2-cert.pem"),
            "--key",
            &pki.s("client-key.pem"),
            "--ca",
            &pki.s("ca.pem"),
        ]),
    )
    .finish();
    assert_eq!(out.code(), 3);
    assert!(stdout(&out).contains("private key does not match the certificate"));
}

#[test]
fn check_warns_about_readable_keys_and_missing_sans() {
    let pki = Pki::new();
    let out = check(&pki, "cnonly", &[]);
    out.ok();
    let text = stdout(&out);
    assert!(text.contains("warning: no subjectAltName"), "{text}");
    assert!(text.ends_with("summary: 0 errors, 1 warning\n"), "{text}");
    // Near expiry.
    let out = check(&pki, "node2", &["--warn-days", "1000000"]);
    out.ok();
    assert!(
        stdout(&out).contains("warning: certificate expires in"),
        "{}",
        stdout(&out)
    );
}

/// A key every user can read, and a CA, certificate or directory another user can write, are
/// errors for `check` (they hand the SST to whoever is on the host) and warnings for the
/// tunnel itself, which still runs.
#[test]
fn check_refuses_files_others_can_read_or_replace() {
    let pki = Pki::new();
    let mode = |file: &str, mode: u32| {
        fs::set_permissions(pki.path(file), fs::Permissions::from_mode(mode)).unwrap()
    };
    mode("cnonly-key.pem", 0o644);
    let out = check(&pki, "cnonly", &[]);
    out.fails(3, "check found 1 problem (see above)");
    let text = stdout(&out);
    assert!(
        text.contains("error: ")
            && text.contains("cnonly-key.pem: private key is readable by every user (mode 644)"),
        "{text}"
    );
    mode("cnonly-key.pem", 0o600);
    mode("ca.pem", 0o666);
    mode("cnonly-cert.pem", 0o664);
    let out = check(&pki, "cnonly", &[]);
    out.fails(3, "check found 2 problems (see above)");
    let text = stdout(&out);
    assert!(
        text.contains("ca.pem: writable by group and others (mode 666)"),
        "{text}"
    );
    assert!(
        text.contains("cnonly-cert.pem: writable by its group (mode 664)"),
        "{text}"
    );
    mode("ca.pem", 0o644);
    mode("cnonly-cert.pem", 0o644);
    fs::set_permissions(pki.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = check(&pki, "cnonly", &[]);
    out.fails(3, "check found 1 problem (see above)");
    let text = stdout(&out);
    assert!(
        text.contains("directory writable by group and others (mode 777)"),
        "{text}"
    );
    // The tunnel warns and runs.
    let mut server = stdio_server(&pki, &[]);
    server.close_stdin();
    let port = server.port();
    let mut cl = client(&pki, port, "client", &[]);
    drop(cl.stdin());
    cl.finish().ok();
    let out = server.finish();
    out.ok();
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("writable by group and others (mode 777)")
                && l.contains("sst-tunnel check reports this as an error")),
        "{}",
        out.stderr
    );
    fs::set_permissions(pki.dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn progress_lines_show_a_running_transfer() {
    let pki = Pki::new();
    let mut server = stdio_server(&pki, &["--progress", "100ms"]);
    server.close_stdin();
    let port = server.port();
    let mut cl = client(&pki, port, "client", &[]);
    let mut input = cl.stdin();
    std::io::Write::write_all(&mut input, &bytes(1000, 3)).unwrap();
    // The stream stays open: only the periodic line can report these bytes now.
    let line = server.wait_line("received 1000 bytes");
    assert!(line.contains("progress 127.0.0.1:"), "{line}");
    assert!(line.contains("sent 0 bytes"), "{line}");
    drop(input);
    cl.finish().ok();
    server.finish().ok();
}

#[test]
fn stats_json_records_success_and_failure() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let server_stats = dir.path().join("server.json");
    let client_stats = dir.path().join("client.json");
    let mut server = stdio_server(&pki, &["--stats-json", server_stats.to_str().unwrap()]);
    server.close_stdin();
    let port = server.port();
    let mut cl = client(
        &pki,
        port,
        "client",
        &["--stats-json", client_stats.to_str().unwrap()],
    );
    let feeder = feed(cl.stdin(), 3 << 20, 4);
    cl.finish().ok();
    server.finish().ok();
    feeder.join().unwrap();
    let s = fs::read_to_string(&server_stats).unwrap();
    assert!(
        s.starts_with("{\"result\":\"ok\",\"peer\":\"127.0.0.1:"),
        "{s}"
    );
    assert!(
        s.contains("\"sent_bytes\":0,\"received_bytes\":3145728,"),
        "{s}"
    );
    assert!(s.contains("\"tls_version\":\"TLSv1.3\""), "{s}");
    assert!(s.contains("\"peer_subject\":\"CN=node1\""), "{s}");
    assert!(s.ends_with("}\n") && s.lines().count() == 1, "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert!(v["seconds"].as_f64().is_some_and(|t| t > 0.0), "{s}");
    assert!(
        v["cipher_suite"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{s}"
    );
    assert!(
        v["copy_path"].is_string() && v.get("error").is_none(),
        "{s}"
    );
    let c = fs::read_to_string(&client_stats).unwrap();
    assert!(
        c.contains("\"sent_bytes\":3145728,\"received_bytes\":0,"),
        "{c}"
    );

    // A client killed mid-stream: the server's record says so (after a short resume window:
    // both ends resume by default, and the killed client never comes back).
    let (server, cl, _feeder) = resumable_pair(
        &pki,
        "2s",
        &["--stats-json", server_stats.to_str().unwrap()],
    );
    cl.wait_line("handshake complete");
    cl.signal(nix::sys::signal::Signal::SIGKILL);
    server.finish().fails(6, "(stream truncated)");
    let s = fs::read_to_string(&server_stats).unwrap();
    assert!(s.starts_with("{\"result\":\"error\""), "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("(stream truncated)")),
        "{s}"
    );
}

/// A node's option file as a DBA writes it: server TLS in [mariadb], SST files in [sst].
fn my_cnf(pki: &Pki, name: &str, node: &str, mode: &str) -> String {
    pki.write(
        name,
        &format!(
            "[mariadb]\nssl-ca = {ca}\nssl_cert = /wrong/server-cert.pem\n\n[galera]\nwsrep_on = ON\n\n[sst]\ntca = \"{ca}\"\ntcert = {cert}\ntkey = {key}   # the node key\nloose-ssl-mode = {mode}\n",
            ca = pki.s("ca.pem"),
            cert = pki.s(&format!("{node}-cert.pem")),
            key = pki.s(&format!("{node}-key.pem")),
        ),
    );
    pki.s(name)
}

#[test]
fn defaults_file_supplies_the_tls_settings() {
    let pki = Pki::new();
    let joiner_cnf = my_cnf(&pki, "node2.cnf", "node2", "VERIFY_CA");
    let donor_cnf = my_cnf(&pki, "node1.cnf", "client", "VERIFY_CA");
    let mut server = Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "127.0.0.1:0",
            "--stdio",
            "--defaults-file",
            &joiner_cnf,
        ]),
    );
    server.close_stdin();
    let port = server.port();
    let mut cl = Proc::spawn(
        bin(),
        &strs(&[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--defaults-file",
            &donor_cnf,
        ]),
    );
    let feeder = feed(cl.stdin(), 1 << 20, 9);
    cl.finish().ok();
    let out = server.finish();
    out.ok();
    assert_eq!(sha256(&out.stdout), feeder.join().unwrap());

    // check reads the same file, and says which files it found.
    let out = Proc::spawn(bin(), &strs(&["check", "--defaults-file", &joiner_cnf])).finish();
    out.ok();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("uses cert {}", pki.s("node2-cert.pem"))),
        "{text}"
    );

    // ssl-mode=DISABLED is not silently turned into something else, and a bad line is named.
    let disabled = my_cnf(&pki, "off.cnf", "node2", "DISABLED");
    Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "127.0.0.1:0",
            "--stdio",
            "--defaults-file",
            &disabled,
        ]),
    )
    .finish()
    .fails(2, "ssl-mode=DISABLED: this node's SST is not encrypted");
    pki.write("bad.cnf", "[sst]\ntca='/x\n");
    Proc::spawn(
        bin(),
        &strs(&[
            "connect",
            "127.0.0.1:1",
            "--defaults-file",
            &pki.s("bad.cnf"),
        ]),
    )
    .finish()
    .fails(
        2,
        &format!("{}: line 2: 'tca='/x': unbalanced '", pki.s("bad.cnf")),
    );
}

/// Review finding (issue 22): `[sst] tcret=...` (for `tcert`) was silently ignored, the
/// donor ran without a client certificate and failed later as a truncated stream, and
/// `check --defaults-file` said only that it needs a certificate. Now a near miss of a TLS
/// option is a warning naming file, line and the option meant (from `connect`, `listen` and
/// `check` alike), `tkey` without `tcert` is an error naming the line, and `check` names the
/// file that lacks the certificate.
#[test]
fn option_file_typos_are_named_with_the_option_meant() {
    let pki = Pki::new();
    let cnf = pki.dir.path().join("typo.cnf");
    fs::write(
        &cnf,
        format!(
            "[mysqld]\nssl_cret=/x.pem\nwsrep_provider_options=\"socket.ssl_kye=/k.pem;gcache.size=1G\"\n\
             [sst]\ntcret={}\ntkey={}\ntca={}\nsockopt=,keepalive\n",
            pki.s("client-cert.pem"),
            pki.s("client-key.pem"),
            pki.s("ca.pem")
        ),
    )
    .unwrap();
    let cnf = cnf.to_string_lossy().into_owned();
    // tkey without tcert (the typo hides it): an error naming the line.
    let out = Proc::spawn(
        bin(),
        &strs(&["connect", "127.0.0.1:9", "--defaults-file", &cnf]),
    )
    .finish();
    out.fails(2, "line 6: [sst] tkey is set but tcert is not");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("line 5: [sst] tcret: unknown option, did you mean tcert?"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("line 2: [mysqld] ssl-cret: unknown option, did you mean ssl-cert?"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "wsrep_provider_options socket.ssl_kye: unknown option, did you mean socket.ssl_key?"
        ),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("sockopt"),
        "a known [sst] option reported: {}",
        out.stderr
    );
    // check: the same warnings as findings.
    let out = Proc::spawn(bin(), &strs(&["check", "--defaults-file", &cnf])).finish();
    out.fails(2, "tkey is set but tcert is not");
    // Without tkey: check names the file that lacks the certificate, after the warning.
    let text = fs::read_to_string(&cnf).unwrap().replace("tkey=", "#tkey=");
    fs::write(&cnf, text).unwrap();
    let out = Proc::spawn(bin(), &strs(&["check", "--defaults-file", &cnf])).finish();
    out.fails(2, &format!("{cnf}: names no certificate for the joiner"));
    assert!(
        stdout(&out).contains("warning: ")
            && stdout(&out).contains("tcret: unknown option, did you mean tcert?"),
        "{}",
        stdout(&out)
    );
}

/// Issue 22, point 5: a donor whose certificate came from an option file and is rejected is
/// told about the option file's key (`tcert in FILE`), not a `--cert` flag it never gave;
/// a flag given on the command line keeps its own name.
#[test]
fn hints_name_the_option_file_key_that_gave_the_certificate() {
    let pki = Pki::new();
    let cnf = pki.dir.path().join("donor.cnf");
    fs::write(
        &cnf,
        format!(
            "[sst]\ntcert={}\ntkey={}\ntca={}\n",
            pki.s("rogue-cert.pem"),
            pki.s("rogue-key.pem"),
            pki.s("ca.pem")
        ),
    )
    .unwrap();
    let cnf = cnf.to_string_lossy().into_owned();
    for (extra, words) in [
        (vec![], format!("our certificate (tcert in {cnf})")),
        (
            strs(&[
                "--cert",
                &pki.s("rogue-cert.pem"),
                "--key",
                &pki.s("rogue-key.pem"),
            ]),
            "our certificate (--cert)".to_string(),
        ),
    ] {
        let server = stdio_server(&pki, &[]);
        let port = server.port();
        let mut args = strs(&[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--defaults-file",
            &cnf,
        ]);
        args.extend(extra);
        let mut donor = Proc::spawn(bin(), &args);
        donor.close_stdin();
        let out = donor.finish();
        out.fails(3, "the peer rejected our certificate")
            .fails(3, &words);
        server.refusal_or_exit().refused("certificate");
    }
}

/// Review finding (issue 22): `check` stopped after a key error, reported an expired
/// certificate twice, and ended with "certificate verification failed: 1 problem found".
/// Now every problem is named once, as what it is, and checking goes on after a key error.
#[test]
fn check_names_each_problem_once_and_goes_on_after_a_key_error() {
    let pki = Pki::new();
    let out = check(&pki, "expired", &[]);
    out.fails(3, "check found 1 problem (see above)");
    assert!(
        !out.stderr.contains("certificate verification failed"),
        "{}",
        out.stderr
    );
    let text = stdout(&out);
    assert_eq!(text.matches("expired at").count(), 1, "{text}");
    assert!(
        text.contains("error: certificate expired at 2021-01-01"),
        "{text}"
    );
    // A key from another node and a certificate from another CA: both are named.
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "check",
            "--cert",
            &pki.s("rogue-cert.pem"),
            "--key",
            &pki.s("client-key.pem"),
            "--ca",
            &pki.s("ca.pem"),
        ]),
    )
    .finish();
    out.fails(3, "check found 2 problems (see above)");
    let text = stdout(&out);
    assert!(
        text.contains("private key does not match the certificate"),
        "{text}"
    );
    assert!(text.contains("is not signed by a CA in"), "{text}");
}
