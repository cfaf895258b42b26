//! The socat front-end under the stock mariabackup SST flow: the command lines of contract
//! 3.3, run through the binary named `socat` with a real byte stream, for every mode in the
//! contract's table; readiness as the script checks it; interop with stock socat both ways;
//! delegation of command lines outside the subset.

mod common;

use std::process::Command;

use common::sst::*;
use common::*;
use nix::sys::signal::Signal;

/// Bytes per transfer: enough for many TLS records and pipe refills.
const LEN: u64 = 8 << 20;

/// `cert=...,key=...` for node `who` (encrypt=3/4), or the combined file (encrypt=2).
fn identity(pki: &Pki, who: &str, combined: bool) -> String {
    if combined {
        let name = format!("{who}-combined.pem");
        let text = std::fs::read_to_string(pki.path(&format!("{who}-cert.pem"))).unwrap()
            + &std::fs::read_to_string(pki.path(&format!("{who}-key.pem"))).unwrap();
        pki.write(&name, &text);
        format!("cert={}", pki.s(&name))
    } else {
        format!(
            "cert={},key={}",
            pki.s(&format!("{who}-cert.pem")),
            pki.s(&format!("{who}-key.pem"))
        )
    }
}

/// An OpenSSL-hashed CA directory, as `tcapath` would be.
fn hashed_ca_dir(pki: &Pki) -> String {
    let dir = pki.path("capath");
    if !dir.exists() {
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(pki.path("ca.pem"), dir.join("ca.pem")).unwrap();
        let ok = Command::new(require("openssl"))
            .arg("rehash")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    format!("{}/", dir.display())
}

/// Starts the joiner `socat ARGS` and waits for the script's readiness condition.
fn joiner(socat: &str, args: &[String], port: u16) -> Proc {
    let j = Proc::spawn_raw_stdout(Command::new(socat).args(args));
    wait_ready("socat", j.pid(), port, None);
    j
}

/// Streams LEN seeded bytes through donor -> joiner; checks bytes, exit codes and that the
/// donor wrote nothing to its stdout (mysqld's protocol pipe).
fn stream(
    joiner_socat: &str,
    joiner_args: &[String],
    donor_socat: &str,
    donor_args: &[String],
    port: u16,
) {
    let mut j = joiner(joiner_socat, joiner_args, port);
    let received = hash_stdout(&mut j);
    let mut d = Proc::spawn(donor_socat, donor_args);
    let sent = feed(d.stdin(), LEN, 77);
    let donor = d.finish();
    donor.ok();
    assert!(
        donor.stdout.is_empty(),
        "the donor must not write to stdout"
    );
    j.finish().ok();
    assert_eq!(
        received.join().unwrap(),
        sent.join().unwrap(),
        "bytes differ"
    );
}

/// Hashes a child's stdout on a thread.
fn hash_stdout(p: &mut Proc) -> std::thread::JoinHandle<String> {
    let mut out = p.take_stdout();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut all).unwrap();
        sha256(&all)
    })
}

/// Runs one contract row with our binary on both ends.
fn row(joiner_addr: &str, donor_addr: &str, port: u16) {
    let personas = Personas::new();
    stream(
        &personas.socat(),
        &strs(&["-u", joiner_addr, "stdio"]),
        &personas.socat(),
        &strs(&["-u", "stdio", donor_addr]),
        port,
    );
}

#[test]
fn encrypt_4() {
    let pki = Pki::new();
    let port = free_port();
    row(
        &socat_listen(&pki, port, "server"),
        &socat_connect(&pki, port, "client"),
        port,
    );
}

#[test]
fn encrypt_3_with_ca_checks_localhost() {
    let pki = Pki::new();
    let port = free_port();
    let ca = pki.s("ca.pem");
    row(
        &socat_listen(&pki, port, "server"),
        &format!(
            "openssl-connect:127.0.0.1:{port},no-sni=1,{},cafile={ca},commonname=localhost",
            identity(&pki, "client", false)
        ),
        port,
    );
}

#[test]
fn encrypt_3_without_ca() {
    let pki = Pki::new();
    let port = free_port();
    row(
        &format!(
            "openssl-listen:{port},reuseaddr,{},verify=0",
            identity(&pki, "server", false)
        ),
        &format!(
            "openssl-connect:127.0.0.1:{port},no-sni=1,{},verify=0",
            identity(&pki, "client", false)
        ),
        port,
    );
}

#[test]
fn encrypt_2_combined_cert_and_key() {
    let pki = Pki::new();
    let port = free_port();
    let ca = pki.s("ca.pem");
    row(
        &format!(
            "openssl-listen:{port},reuseaddr,{},cafile={ca},commonname=",
            identity(&pki, "server", true)
        ),
        &format!(
            "openssl-connect:127.0.0.1:{port},no-sni=1,{},cafile={ca},commonname=",
            identity(&pki, "client", true)
        ),
        port,
    );
}

#[test]
fn verify_identity_checks_the_joiner_cn() {
    let pki = Pki::new();
    let port = free_port();
    let ca = pki.s("ca.pem");
    row(
        &socat_listen(&pki, port, "node2"),
        &format!(
            "openssl-connect:127.0.0.1:{port},no-sni=1,{},cafile={ca},commonname=node2",
            identity(&pki, "client", false)
        ),
        port,
    );
}

#[test]
fn capath() {
    let pki = Pki::new();
    let port = free_port();
    let dir = hashed_ca_dir(&pki);
    row(
        &format!(
            "openssl-listen:{port},reuseaddr,{},capath={dir},commonname=",
            identity(&pki, "server", false)
        ),
        &format!(
            "openssl-connect:127.0.0.1:{port},no-sni=1,{},capath={dir},commonname=",
            identity(&pki, "client", false)
        ),
        port,
    );
}

#[test]
fn ipv6() {
    let pki = Pki::new();
    let port = free_port();
    let ca = pki.s("ca.pem");
    row(
        &format!(
            "openssl-listen:{port},reuseaddr,{},cafile={ca},commonname=,pf=ip6",
            identity(&pki, "server", false)
        ),
        &format!(
            "openssl-connect:[::1]:{port},no-sni=1,{},cafile={ca},commonname=,pf=ip6",
            identity(&pki, "client", false)
        ),
        port,
    );
}

#[test]
fn plaintext_encrypt_0() {
    let port = free_port();
    row(
        &format!("TCP-LISTEN:{port},reuseaddr"),
        &format!("TCP:127.0.0.1:{port}"),
        port,
    );
}

#[test]
fn socat_1_7_3_donor_form_without_u() {
    let pki = Pki::new();
    let port = free_port();
    let ca = pki.s("ca.pem");
    let personas = Personas::new();
    stream(
        &personas.socat(),
        &strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]),
        &personas.socat(),
        &strs(&[
            "stdio",
            &format!(
                "openssl-connect:127.0.0.1:{port},{},cafile={ca},commonname=,linger=10",
                identity(&pki, "client", false)
            ),
        ]),
        port,
    );
}

#[test]
fn commonname_is_case_sensitive_and_accepts_the_cn_beside_sans() {
    let pki = Pki::new();
    let ca = pki.s("ca.pem");
    let personas = Personas::new();
    // "server" is CN=node2 with DNS SAN localhost: socat accepts the CN even so.
    for (name, ok) in [
        ("node2", true),
        ("localhost", true),
        ("LOCALHOST", false),
        ("node3", false),
    ] {
        let port = free_port();
        let j = joiner(
            &personas.socat(),
            &strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]),
            port,
        );
        let mut d = Proc::spawn(
            &personas.socat(),
            &strs(&[
                "-u",
                "stdio",
                &format!(
                    "openssl-connect:127.0.0.1:{port},no-sni=1,{},cafile={ca},commonname={name}",
                    identity(&pki, "client", false)
                ),
            ]),
        );
        d.close_stdin();
        let out = d.finish();
        if ok {
            out.ok();
            j.finish().ok();
        } else {
            out.fails(1, &format!("matches none of the expected names: {name}"));
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
            // Unlike stock socat, the joiner goes on waiting for its verified donor.
            j.refusal_or_exit().refused("certificate");
        }
    }
}

#[test]
fn wrong_ca_fails_with_exit_1() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    let j = joiner(
        &personas.socat(),
        &strs(&[
            "-u",
            &format!(
                "openssl-listen:{port},reuseaddr,{},cafile={},commonname=",
                identity(&pki, "server", false),
                pki.s("ca.pem")
            ),
            "stdio",
        ]),
        port,
    );
    let mut d = Proc::spawn(
        &personas.socat(),
        &strs(&[
            "-u",
            "stdio",
            &format!(
                "openssl-connect:127.0.0.1:{port},no-sni=1,{},cafile={},commonname=",
                identity(&pki, "client", false),
                pki.s("other-ca.pem")
            ),
        ]),
    );
    d.close_stdin();
    d.finish().fails(1, "is not signed by a CA in");
    j.refusal_or_exit().refused("certificate");
}

#[test]
fn truncated_stream_fails_the_joiner_unlike_stock_socat() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    // Both ends sst-tunnel resume by default: a short window, so the joiner gives up on the
    // killed donor soon, saying both what broke and that it did not come back.
    let mut j = Proc::spawn_raw_stdout(
        Command::new(personas.socat())
            .args(strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]))
            .env("SST_TUNNEL_RESUME_WINDOW", "2s"),
    );
    wait_ready("socat", j.pid(), port, None);
    let _sink = hash_stdout(&mut j);
    let mut d = Proc::spawn_with(
        Command::new(personas.socat())
            .args(strs(&[
                "-d",
                "-d",
                "-d",
                "-u",
                "stdio",
                &socat_connect(&pki, port, "client"),
            ]))
            .env("SST_TUNNEL_RESUME_WINDOW", "2s"),
    );
    let _feeder = feed(d.stdin(), 10 << 30, 5);
    d.wait_line("handshake complete");
    d.signal(Signal::SIGKILL);
    // Killed before its stream's opening went out, the stream fails at once; after, the
    // joiner waits for the window first ("... and the stream could not be resumed within
    // 2s"). Either way it is a truncated stream, and an error.
    j.finish().fails(1, "(stream truncated)");
}

#[test]
fn stock_socat_donor_into_our_joiner() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    stream(
        &personas.socat(),
        &strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]),
        &require("socat"),
        &strs(&["-u", "stdio", &socat_connect(&pki, port, "client")]),
        port,
    );
}

#[test]
fn our_donor_into_a_stock_socat_joiner() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    stream(
        &require("socat"),
        &strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]),
        &personas.socat(),
        &strs(&["-u", "stdio", &socat_connect(&pki, port, "client")]),
        port,
    );
}

#[test]
fn donor_with_retry_waits_for_a_late_joiner() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    // PXC's form: the donor may start first and retries refused connects.
    let mut d = Proc::spawn(
        &personas.socat(),
        &strs(&[
            "-d",
            "-d",
            "-u",
            "stdio",
            &format!(
                "{},retry=30,interval=0.2",
                socat_connect(&pki, port, "client")
            ),
        ]),
    );
    d.wait_line("retry 1 of 30");
    let mut j = joiner(
        &personas.socat(),
        &strs(&[
            "-u",
            &format!("{},retry=30", socat_listen(&pki, port, "server")),
            "stdio",
        ]),
        port,
    );
    let received = hash_stdout(&mut j);
    let sent = feed(d.stdin(), LEN, 3);
    d.finish().ok();
    j.finish().ok();
    assert_eq!(received.join().unwrap(), sent.join().unwrap());
}

#[test]
fn version_as_the_scripts_read_it() {
    let personas = Personas::new();
    let socat = personas.socat();
    let version = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{socat} -V | grep -m1 -owE '[0-9]+(\\.[0-9]+)+' | head -n1"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout), "1.7.4.4\n");
    let openssl = Command::new("sh")
        .arg("-c")
        .arg(format!("{socat} -V | grep -q -F 'WITH_OPENSSL 1'"))
        .status()
        .unwrap();
    assert!(openssl.success());
}

#[test]
fn other_command_lines_run_the_real_socat() {
    let personas = Personas::new();
    let out = Proc::spawn(
        &personas.socat(),
        &strs(&["-u", "SYSTEM:echo from-real-socat", "STDOUT"]),
    )
    .finish();
    out.ok();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-real-socat\n");
    assert!(
        out.stderr.contains("outside the SST subset; running"),
        "{}",
        out.stderr
    );
}

#[test]
fn without_a_real_socat_unknown_options_fail_loudly() {
    let personas = Personas::new();
    let empty = tempfile::tempdir().unwrap();
    let out = Proc::spawn_with(
        Command::new(personas.socat())
            .args([
                "-u",
                "openssl-listen:4444,fork,verify=0,cert=x.pem",
                "stdio",
            ])
            .env("PATH", empty.path())
            .env_remove("SST_TUNNEL_REAL_SOCAT"),
    )
    .finish();
    out.fails(1, "address 'openssl-listen:4444,fork,verify=0,cert=x.pem' is outside what sst-tunnel's socat front-end implements, and no real socat was found");
}

#[test]
fn bad_option_values_are_one_line_errors() {
    let personas = Personas::new();
    for (address, needle) in [
        ("openssl-connect:h:1,verify=2", "verify=2: expected 0 or 1"),
        ("openssl-connect:h:1,retry=x", "retry=x: expected a count"),
        (
            "openssl-connect:h:1,cafile=/nonexistent/ca.pem",
            "/nonexistent/ca.pem: no such file",
        ),
        (
            "openssl-connect:h:1",
            "verify=1 (socat's default) needs cafile= or capath=",
        ),
        ("openssl-connect:h", "expected TYPE:HOST:PORT"),
        (
            "openssl-connect:h:1,verify=0,cipher=HIGH",
            "'HIGH' is not a cipher suite",
        ),
    ] {
        let out = Proc::spawn(&personas.socat(), &strs(&["-u", "stdio", address])).finish();
        out.fails(1, needle);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// Review finding: one stray connection (a scanner, a plaintext probe, a monitoring check)
/// ended the joiner (as it ends stock socat), and the real donor then got "connection
/// refused". Now ten bad connections (plaintext, TLS-shaped garbage, a TLS client with a
/// certificate from another CA) are refused one line each and the real donor's stream, with
/// or without `retry=`, arrives byte-exact.
#[test]
fn listener_survives_bad_clients_before_the_donor() {
    let pki = Pki::new();
    let personas = Personas::new();
    for retry in [",retry=3", ""] {
        let port = free_port();
        let mut j = joiner(
            &personas.socat(),
            &strs(&[
                "-u",
                &format!("{}{retry}", socat_listen(&pki, port, "server")),
                "stdio",
            ]),
            port,
        );
        let received = hash_stdout(&mut j);
        for i in 0..10u8 {
            let mut bad = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let junk: Vec<u8> = match i % 3 {
                // Plaintext where a ClientHello belongs.
                0 => b"GET / HTTP/1.0\r\n\r\n".to_vec(),
                // A TLS handshake record header, then garbage.
                1 => [
                    &[0x16, 0x03, 0x01, 0x00, 0x40][..],
                    &bytes(64, u64::from(i)),
                ]
                .concat(),
                _ => bytes(4096, u64::from(i)),
            };
            let _ = std::io::Write::write_all(&mut bad, &junk);
            drop(bad);
            j.wait_line(REFUSED);
        }
        // A verified-looking client whose certificate is from another CA.
        let mut rogue = Proc::spawn(
            &personas.socat(),
            &strs(&["-u", "stdio", &socat_connect(&pki, port, "rogue")]),
        );
        rogue.close_stdin();
        rogue.finish();
        j.wait_line("is not signed by a CA in");
        let mut d = Proc::spawn(
            &personas.socat(),
            &strs(&["-u", "stdio", &socat_connect(&pki, port, "client")]),
        );
        let sent = feed(d.stdin(), 1 << 20, 8);
        d.finish().ok();
        j.finish().ok();
        assert_eq!(received.join().unwrap(), sent.join().unwrap());
    }
}

#[test]
fn idle_donor_with_t_fails_instead_of_truncating() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    let mut j = joiner(
        &personas.socat(),
        &strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]),
        port,
    );
    let _sink = hash_stdout(&mut j);
    // stdin stays open and silent: stock socat would exit 0 after 1 s.
    let mut d = Proc::spawn(
        &personas.socat(),
        &strs(&[
            "-T",
            "1",
            "-u",
            "stdio",
            &socat_connect(&pki, port, "client"),
        ]),
    );
    let _held_open = d.stdin();
    d.finish().fails(1, "no data moved in either direction");
    // The donor's abort frame tells the joiner why (both ends resume by default).
    j.finish().fails(
        1,
        "the peer aborted the stream: it failed: no data moved in either direction for 1s",
    );
}

#[test]
fn subcommand_form_is_named_socat_for_the_readiness_check() {
    let pki = Pki::new();
    let port = free_port();
    let personas = Personas::new();
    // `sst-tunnel socat ...`: argv[0] is sst-tunnel, so only the process name says socat.
    let mut args = strs(&["socat"]);
    args.extend(strs(&["-u", &socat_listen(&pki, port, "server"), "stdio"]));
    stream(
        bin(),
        &args,
        &personas.socat(),
        &strs(&["-u", "stdio", &socat_connect(&pki, port, "client")]),
        port,
    );
}

/// Review finding (issue 22), the mariabackup shape: a donor whose certificate the joiner
/// rejects (its commonname check wants another name) reports the rejection, never a
/// truncation, however its writes and the joiner's alert race: 20 runs, each exit 1 (socat's
/// failure status) with the alert, and the hint in socat's words.
#[test]
fn a_rejected_socat_donor_reports_the_alert_every_time() {
    let pki = Pki::new();
    let personas = Personas::new();
    for run in 0..20 {
        let port = free_port();
        let listen = format!(
            "openssl-listen:{port},reuseaddr,{},cafile={},commonname=node3",
            identity(&pki, "server", false),
            pki.s("ca.pem")
        );
        let j = joiner(&personas.socat(), &strs(&["-u", &listen, "stdio"]), port);
        let mut d = Proc::spawn(
            &personas.socat(),
            &strs(&["-u", "stdio", &socat_connect(&pki, port, "client")]),
        );
        let _sent = feed(d.stdin(), 4 << 20, 23);
        let out = d.finish();
        assert_eq!(out.code(), 1, "run {run}: {}", out.stderr);
        // The hint names socat's own option (issue 22, point 5).
        assert!(
            out.stderr
                .contains("the peer rejected our certificate (alert")
                && out
                    .stderr
                    .contains("our certificate (socat's cert= option)"),
            "run {run}: {}",
            out.stderr
        );
        j.refusal_or_exit().refused("certificate");
    }
}
