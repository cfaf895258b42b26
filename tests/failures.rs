//! Every bad input fails closed: a specific one-line message and a distinct exit code
//! (2 usage/config, 3 certificate, 4 connection, 5 handshake, 6 transfer).

mod common;

use common::*;
use nix::sys::signal::Signal;

/// Runs a `--stdio` server as `server_cert` and a client with `client_args`; returns both
/// outcomes (client first).
fn pair(
    pki: &Pki,
    server_cert: &str,
    server_extra: &[&str],
    client_args: Vec<String>,
) -> (Outcome, Outcome) {
    let mut args = listen_args("127.0.0.1:0", &pki.args(server_cert));
    args.push("--stdio".into());
    args.extend(strs(server_extra));
    let mut server = Proc::spawn(bin(), &args);
    server.close_stdin();
    let port = server.port();
    let mut cargs = vec!["connect".to_string(), format!("127.0.0.1:{port}")];
    cargs.extend(client_args);
    let mut cl = Proc::spawn(bin(), &cargs);
    let _ = cl.stdin().write_all(b"secret payload");
    cl.close_stdin();
    let c = cl.finish();
    let s = server.refusal_or_exit();
    (c, s)
}

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

#[test]
fn wrong_ca() {
    let pki = Pki::new();
    let mut client_args = pki.args("client");
    client_args[5] = pki.s("other-ca.pem");
    let (c, s) = pair(&pki, "server", &[], client_args);
    c.fails(3, "is not signed by a CA in");
    // The listener hears the client's verdict, refuses that connection and waits on (its
    // exit is the test's SIGTERM, so the refusal line is what shows the rejection).
    s.refused("the peer rejected our certificate");
}

#[test]
fn client_signed_by_another_ca() {
    let pki = Pki::new();
    let (c, s) = pair(&pki, "server", &[], pki.args("rogue"));
    s.refused("client certificate 'CN=node1' (issuer 'CN=Other CA') is not signed by a CA in");
    assert!(
        s.stdout.is_empty(),
        "no byte may be delivered from an unverified client"
    );
    assert_ne!(c.code(), 0);
}

#[test]
fn expired_certificate() {
    let pki = Pki::new();
    // sst-tunnel will not serve its own expired certificate (see below): stock socat does.
    let c = against_stock_server(&pki, "expired");
    c.fails(3, "server certificate 'CN=node1' expired at 2021-01-01");
}

/// A client of stock socat serving `who`'s certificate, verifying it against the CA.
fn against_stock_server(pki: &Pki, who: &str) -> Outcome {
    let socat = require("socat");
    let port = free_port();
    let server = Proc::spawn(
        &socat,
        &strs(&[
            "-u",
            &format!(
                "openssl-listen:{port},reuseaddr,cert={},key={},verify=0",
                pki.s(&format!("{who}-cert.pem")),
                pki.s(&format!("{who}-key.pem"))
            ),
            "stdio",
        ]),
    );
    common::sst::wait_ready("socat", server.pid(), port, None);
    let mut cl = client(pki, port, "client", &[]);
    cl.close_stdin();
    cl.finish()
}

/// Review finding (issue 22): a node started with its own certificate expired (or not yet
/// valid) and failed only when the donor connected. Now `listen` and `connect` refuse to
/// start: exit 3, the file, the dates and the renewal command.
#[test]
fn an_expired_own_certificate_refuses_to_start() {
    let pki = Pki::new();
    for (who, what) in [
        ("expired", "expired at 2021-01-01"),
        ("future", "is not valid before 2090-01-01"),
    ] {
        let mut args = listen_args("127.0.0.1:0", &pki.args(who));
        args.push("--stdio".into());
        let out = Proc::spawn(bin(), &args).finish();
        out.fails(
            3,
            &format!(
                "{}: our own certificate 'CN=node1' {what}",
                pki.s(&format!("{who}-cert.pem"))
            ),
        )
        .fails(
            3,
            "sst-tunnel gen-certs --out CA_DIR --renew --node node1=127.0.0.1,::1",
        );
        assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
        let mut args = vec!["connect".to_string(), "127.0.0.1:9".to_string()];
        args.extend(pki.args(who));
        Proc::spawn(bin(), &args).finish().fails(3, what);
    }
}

#[test]
fn not_yet_valid_certificate() {
    let pki = Pki::new();
    let c = against_stock_server(&pki, "future");
    c.fails(3, "is not valid before 2090-01-01");
}

#[test]
fn revoked_certificate() {
    let pki = Pki::new();
    let mut client_args = pki.args("client");
    client_args.extend(strs(&["--crl", &pki.s("crl.pem")]));
    let (c, _) = pair(&pki, "revoked", &[], client_args);
    c.fails(3, "is revoked (--crl)");
}

#[test]
fn crl_does_not_reject_good_certificates() {
    let pki = Pki::new();
    let mut client_args = pki.args("client");
    client_args.extend(strs(&["--crl", &pki.s("crl.pem")]));
    let (c, s) = pair(&pki, "server", &["--crl", &pki.s("crl.pem")], client_args);
    c.ok();
    assert_eq!(s.ok().stdout, b"secret payload");
}

#[test]
fn name_mismatch() {
    let pki = Pki::new();
    let mut client_args = pki.args("client");
    client_args.extend(strs(&["--verify", "identity"]));
    let (c, _) = pair(&pki, "wrongname", &[], client_args);
    c.fails(
        3,
        "(DNS:other.example) matches none of the expected names: 127.0.0.1",
    );
}

#[test]
fn cn_is_used_only_without_sans() {
    let pki = Pki::new();
    let mut client_args = pki.args("client");
    client_args.extend(strs(&["--verify", "identity", "--peer-name", "NODE9"]));
    let (c, s) = pair(&pki, "cnonly", &[], client_args);
    c.ok();
    assert_eq!(s.ok().stdout, b"secret payload");
}

#[test]
fn missing_client_certificate() {
    let pki = Pki::new();
    // With data to send, the client learns of the rejection from the alert or, when its write
    // hits the closed socket first, as a failed transfer: never as success.
    let (c, s) = pair(&pki, "server", &[], strs(&["--ca", &pki.s("ca.pem")]));
    s.refused("the peer presented no certificate");
    assert!([3, 6].contains(&c.code()), "{}", c.stderr);
    assert!(s.stdout.is_empty());
    // A client that only reads gets the alert itself.
    let mut server = stdio_server(&pki, &[]);
    server.close_stdin();
    let port = server.port();
    let mut cl = Proc::spawn(
        bin(),
        &strs(&[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--ca",
            &pki.s("ca.pem"),
        ]),
    );
    let _open = cl.stdin();
    cl.finish().fails(
        3,
        "the peer rejected our certificate (alert CertificateRequired)",
    );
    server
        .refusal_or_exit()
        .refused("the peer presented no certificate");
}

#[test]
fn no_ca_refuses_to_run() {
    let out = Proc::spawn(bin(), &strs(&["connect", "127.0.0.1:9"])).finish();
    out.fails(
        2,
        "no --ca given: refusing to run without verifying the peer",
    );
    let out = Proc::spawn(bin(), &strs(&["listen", "0", "--stdio", "--cert", "x.pem"])).finish();
    out.fails(2, "no --ca given");
}

#[test]
fn verify_none_must_be_explicit_and_works() {
    let pki = Pki::new();
    let (c, s) = pair(
        &pki,
        "server",
        &["--verify", "none"],
        strs(&["--verify", "none"]),
    );
    c.ok();
    assert_eq!(s.ok().stdout, b"secret payload");
}

#[test]
fn key_not_matching_certificate() {
    let pki = Pki::new();
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "0",
            "--stdio",
            "--cert",
            &pki.s("server-cert.pem"),
            "--key",
            &pki.s("client-key.pem"),
            "--ca",
            &pki.s("ca.pem"),
        ]),
    )
    .finish();
    out.fails(
        2,
        "client-key.pem: private key does not match the certificate in",
    );
}

#[test]
fn unreadable_files() {
    let pki = Pki::new();
    let missing = pki.s("nope.pem");
    let out = Proc::spawn(bin(), &strs(&["connect", "127.0.0.1:9", "--ca", &missing])).finish();
    out.fails(2, &format!("{missing}: no such file or directory"));
    let dir = pki.dir.path().to_string_lossy().into_owned();
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "connect",
            "127.0.0.1:9",
            "--ca",
            &pki.s("ca.pem"),
            "--cert",
            &dir,
        ]),
    )
    .finish();
    out.fails(2, &dir);
}

#[test]
fn malformed_pem() {
    let pki = Pki::new();
    pki.write(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB@@@@\n-----END CERTIFICATE-----\n",
    );
    let out = Proc::spawn(
        bin(),
        &strs(&["connect", "127.0.0.1:9", "--ca", &pki.s("bad.pem")]),
    )
    .finish();
    out.fails(2, "bad.pem: malformed PEM");
    pki.write("empty.pem", "just text\n");
    let out = Proc::spawn(
        bin(),
        &strs(&["connect", "127.0.0.1:9", "--ca", &pki.s("empty.pem")]),
    )
    .finish();
    out.fails(2, "empty.pem: no PEM CERTIFICATE block found (--ca)");
}

#[test]
fn devices_and_fifos_are_not_read_as_files() {
    // /dev/zero would be read forever and a FIFO would block: both are one-line errors.
    let pki = Pki::new();
    let out = Proc::spawn(
        bin(),
        &strs(&["connect", "127.0.0.1:9", "--ca", "/dev/zero"]),
    )
    .finish();
    out.fails(2, "/dev/zero: is not a regular file");
    let fifo = pki.path("fifo.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut args = tls_args(&pki, "client", &[]);
    args.splice(0..0, strs(&["connect", "127.0.0.1:9"]));
    args.extend(strs(&["--crl", &pki.s("fifo.pem")]));
    Proc::spawn(bin(), &args)
        .finish()
        .fails(2, "fifo.pem: is not a regular file");
    let conf = pki.path("stunnel.conf");
    std::fs::write(
        &conf,
        "client = yes\ncert = /dev/zero\nconnect = 127.0.0.1:9\n",
    )
    .unwrap();
    Proc::spawn(bin(), &strs(&["stunnel", &pki.s("stunnel.conf")]))
        .finish()
        .fails(2, "/dev/zero: is not a regular file");
}

#[test]
fn connection_refused() {
    let pki = Pki::new();
    let port = free_port();
    client(&pki, port, "client", &[])
        .finish()
        .fails(4, "connection refused");
}

#[test]
fn client_killed_mid_stream_is_truncation_on_the_server() {
    // Without resuming the truncation ends the server at once; with it (the default between
    // two sst-tunnels) the server waits the window for a donor that never comes back, then
    // fails saying both. The kill waits for the line that says the stream is under way: a
    // resumable one is bound only after the handshake (a kill between the two is a stream
    // cut before it began, another message).
    for (window, under_way, why) in [
        ("0", "handshake complete", "(stream truncated) (after"),
        (
            "2s",
            "the stream resumes if its connection breaks",
            "(stream truncated), and the stream could not be resumed within 2s",
        ),
    ] {
        let pki = Pki::new();
        let (server, cl, _feeder) = resumable_pair(&pki, window, &[]);
        cl.wait_line(under_way);
        cl.signal(Signal::SIGKILL);
        let s = server.finish();
        s.fails(6, why);
    }
}

/// A resumable stream whose listener dies (SIGKILL, not the network) fails the donor at once,
/// not at the end of its window: dialling again is refused, so nothing listens there any
/// more and waiting would only delay the failure Galera must see.
#[test]
fn a_listener_killed_mid_stream_fails_the_donor_at_once_not_after_the_window() {
    let pki = Pki::new();
    let window = Duration::from_secs(60);
    let (server, cl, _feeder) = resumable_pair(&pki, "60s", &[]);
    cl.wait_line("the stream resumes if its connection breaks");
    server.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let c = cl.finish();
    let took = killed.elapsed();
    c.fails(6, "(stream truncated)");
    assert!(c.stderr.contains("connection refused"), "{}", c.stderr);
    // Retrying refusals would have ended only with the window.
    assert!(
        took < window / 2,
        "the donor took {took:?} to fail:\n{}",
        c.stderr
    );
}

#[test]
fn server_killed_mid_stream_fails_the_client() {
    let pki = Pki::new();
    let mut args = vec!["--log-level".to_string(), "debug".into()];
    args.extend(listen_args("127.0.0.1:0", &pki.args("server")));
    args.push("--stdio".into());
    let mut server = Proc::spawn(bin(), &args);
    let _server_feed = feed(server.stdin(), 10 << 30, 6);
    let port = server.port();
    let mut cl = client(&pki, port, "client", &[]);
    let _feeder = feed(cl.stdin(), 10 << 30, 5);
    server.wait_line("handshake complete");
    server.signal(Signal::SIGKILL);
    let c = cl.finish();
    assert_eq!(c.code(), 6, "{}", c.stderr);
    assert!(c.stderr.contains("(stream truncated)"), "{}", c.stderr);
}

#[test]
fn bad_flags_name_the_flag() {
    let out = Proc::spawn(bin(), &strs(&["connect", "::1:44", "--verify", "none"])).finish();
    out.fails(2, "HOST:PORT '::1:44': IPv6 addresses must be bracketed");
    let out = Proc::spawn(
        bin(),
        &strs(&["connect", "h:1", "--verify", "none", "--ciphers", "RC4"]),
    )
    .finish();
    out.fails(2, "--ciphers: unknown cipher suite 'RC4'");
    let out = Proc::spawn(bin(), &strs(&["connect", "h:1", "--verify", "chain"])).finish();
    out.fails(2, "--verify chain needs --ca");
    let out = Proc::spawn(bin(), &strs(&["connect", "h:1", "--idle-timeout", "soon"])).finish();
    out.fails(2, "--idle-timeout");
}

/// Timeouts past any clock's range (they overflowed timer arithmetic, a panic) are refused as
/// one-line usage errors, from flags and from the front-ends' options alike.
#[test]
fn extreme_timeouts_are_refused_never_a_panic() {
    for (flag, value, why) in [
        ("--idle-timeout", "100000000000000s", "at most 365 days"),
        ("--handshake-timeout", "9999999h", "at most 365 days"),
        ("--connect-timeout", "18446744073709551615", "too big"),
    ] {
        let out = Proc::spawn(
            bin(),
            &strs(&["connect", "h:1", "--verify", "none", flag, value]),
        )
        .finish();
        out.fails(2, why).fails(2, flag);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let socat = [
        strs(&["-T", "1e18", "-u", "stdio", "openssl-connect:h:1,verify=0"]),
        strs(&[
            "-u",
            "stdio",
            "openssl-connect:h:1,verify=0,connect-timeout=1e12",
        ]),
    ];
    for args in socat {
        let out =
            Proc::spawn_with(std::process::Command::new(bin()).arg0("socat").args(&args)).finish();
        assert_ne!(out.code(), 101, "{}", out.stderr);
        assert!(out.stderr.contains("at most 365 days"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// A TLS client (rustls, in this test) that sends data and then a TCP FIN without close_notify.
/// A TLS client that trusts anything and has written `data`, so the test controls how the
/// TCP connection ends.
fn raw_client(
    port: u16,
    data: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use std::sync::Arc;

    #[derive(Debug)]
    struct AnyServer;
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyServer))
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(data).unwrap();
    tls.flush().unwrap();
    tls
}

#[test]
fn fin_without_close_notify_is_truncation() {
    use std::io::Read;

    let pki = Pki::new();
    // Verifies nothing: the raw client has no certificate.
    let mut server = stdio_server(&pki, &["--verify", "none"]);
    let port = server.port();
    let _held_open = server.stdin();
    let mut tls = raw_client(port, b"first half of a backup");
    // FIN, no close_notify.
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    let s = server.finish();
    s.fails(
        6,
        "the peer closed the connection without a TLS close_notify (stream truncated)",
    );
}

#[test]
fn tcp_reset_mid_stream_is_truncation() {
    let pki = Pki::new();
    // Verifies nothing: the raw client has no certificate.
    let mut server = stdio_server(&pki, &["--verify", "none", "--log-level", "debug"]);
    let port = server.port();
    let _held_open = server.stdin();
    let tls = raw_client(port, b"first half of a backup");
    // The reset must land mid-stream, not mid-handshake (that is exit 5, another test's case).
    server.wait_line("handshake complete");
    // RST: linger 0, then close.
    socket2::SockRef::from(&tls.sock)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(tls);
    // The kernel may drop what was queued when the reset lands: whatever came, the transfer
    // is reported failed.
    let s = server.finish();
    s.fails(
        6,
        "reset the connection before a TLS close_notify (stream truncated)",
    );
}

#[test]
fn ca_certificate_used_as_node_certificate() {
    let pki = Pki::new();
    let mut args = listen_args(
        "127.0.0.1:0",
        &strs(&[
            "--stdio",
            "--cert",
            &pki.s("ca.pem"),
            "--key",
            &pki.s("ca-key.pem"),
            "--ca",
            &pki.s("ca.pem"),
        ]),
    );
    args.extend(strs(&["--verify", "none"]));
    let server = Proc::spawn(bin(), &args);
    let port = server.port();
    let mut cl = client(&pki, port, "client", &[]);
    cl.close_stdin();
    cl.finish().fails(
        3,
        "is a CA certificate (basicConstraints CA:TRUE) used as a node certificate (found in",
    );
    let s = server.refusal_or_exit();
    assert!(
        s.stderr
            .contains("a CA certificate (CA:TRUE) used as a node certificate"),
        "{}",
        s.stderr
    );
}

#[test]
fn listener_identity_checks_client_names() {
    let pki = Pki::new();
    let (c, s) = pair(
        &pki,
        "server",
        &["--verify", "identity", "--peer-name", "localhost"],
        pki.args("client"),
    );
    c.ok();
    assert_eq!(s.ok().stdout, b"secret payload");
    let (c, s) = pair(
        &pki,
        "server",
        &["--verify", "identity", "--peer-name", "node7"],
        pki.args("client"),
    );
    s.refused("client certificate 'CN=node1' (DNS:localhost, IP:127.0.0.1, IP:::1) matches none of the expected names: node7");
    assert!(s.stdout.is_empty());
    assert_ne!(c.code(), 0);
    let out = Proc::spawn(
        bin(),
        &listen_args("0", &{
            let mut a = pki.args("server");
            a.extend(strs(&["--stdio", "--verify", "identity"]));
            a
        }),
    )
    .finish();
    out.fails(2, "--verify identity on a listener needs --peer-name");
}

/// X.509 v1 (what `openssl x509 -req` makes without extensions) is refused at load time,
/// naming the file and the remedy; rcgen cannot make one, so the openssl CLI does.
#[test]
fn x509_v1_certificate_is_refused_with_a_remedy() {
    let openssl = require("openssl");
    let pki = Pki::new();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&openssl)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (key, csr, cert) = (pki.s("v1-key.pem"), pki.s("v1.csr"), pki.s("v1-cert.pem"));
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=v1node",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &pki.s("ca.pem"),
        "-CAkey",
        &pki.s("ca-key.pem"),
        "-out",
        &cert,
        "-days",
        "1",
        "-set_serial",
        "7",
        "-extfile",
        "/dev/null",
    ]);
    let out = Proc::spawn(
        bin(),
        &strs(&[
            "listen",
            "0",
            "--stdio",
            "--cert",
            &cert,
            "--key",
            &key,
            "--ca",
            &pki.s("ca.pem"),
        ]),
    )
    .finish();
    out.fails(2, "v1-cert.pem: X.509 v1 certificate: rustls (and so sst-tunnel peers) refuse v1 end-entity certificates; reissue it as v3");
}

#[test]
fn exec_program_must_exist() {
    let pki = Pki::new();
    let mut args = listen_args("127.0.0.1:0", &pki.args("server"));
    args.extend(strs(&["--exec", "/usr/bin/no-such-rsync", "--daemon"]));
    Proc::spawn(bin(), &args)
        .finish()
        .fails(2, "--exec /usr/bin/no-such-rsync: no such executable file");
}

/// What a tunnel receiving `injected` after a genuine handshake and a genuine first record
/// reports: records are authenticated one by one, so nothing forged is ever delivered.
fn inject_after_handshake(injected: &[u8]) -> Outcome {
    let pki = Pki::new();
    let mut args = listen_args("127.0.0.1:0", &tls_args(&pki, "server", &[]));
    args.extend(strs(&[
        "--stdio",
        "--verify",
        "none",
        "--log-level",
        "debug",
    ]));
    let mut server = Proc::spawn(bin(), &args);
    let port = server.port();
    let _held_open = server.stdin();
    let mut tls = raw_client(port, b"genuine first record\n");
    server.wait_line("handshake complete");
    tls.sock.write_all(injected).unwrap();
    let s = server.finish();
    // The genuine bytes may or may not have been written before the failure: the transfer
    // has failed either way. Nothing else may have been.
    assert!(
        b"genuine first record\n".starts_with(&s.stdout),
        "unauthenticated bytes reached the output: {:?}",
        s.stdout
    );
    s
}

#[test]
fn a_forged_record_mid_stream_fails_the_transfer() {
    let mut forged = vec![23, 3, 3, 0, 64];
    forged.extend_from_slice(&[0x41; 64]);
    inject_after_handshake(&forged).fails(6, "decrypt");
}

#[test]
fn malformed_records_after_the_handshake_are_refused() {
    inject_after_handshake(&[23, 3, 3, 0xff, 0xff, 0]).fails(6, "MessageTooLarge");
    inject_after_handshake(&[21, 3, 3, 0, 2, 2, 40]).fails(6, "cannot decrypt peer's message");
}

/// Review finding: certificate subjects were logged raw, so a certificate whose CN holds a
/// newline wrote a forged line into the SST log. Peer text is escaped onto one line, on the
/// listener (refusing the client) and on the client (refusing the server).
#[test]
fn a_certificate_cannot_forge_a_log_line() {
    let pki = Pki::new();
    let forged_line = FORGED_CN.split('\n').nth(1).unwrap();
    let (c, s) = pair(&pki, "server", &[], pki.args("forged"));
    assert_ne!(c.code(), 0);
    // The whole subject stays on the refusal's line.
    s.refused("INFO closed 127.0.0.1:1: sent 0 bytes' (issuer 'CN=Other CA')");
    for out in [&c, &s] {
        assert!(
            !out.stderr.lines().any(|l| l.starts_with(forged_line)),
            "a forged line: {}",
            out.stderr
        );
    }
    // A valid certificate whose CN (no SAN) is quoted as its name.
    let (_, s) = pair(
        &pki,
        "server",
        &["--verify", "identity", "--peer-name", "node7"],
        pki.args("forgedcn"),
    );
    s.refused("INFO closed 127.0.0.1:1: sent 0 bytes) matches none of the expected names: node7");
    assert!(
        !s.stderr.lines().any(|l| l.starts_with(forged_line)),
        "a forged line: {}",
        s.stderr
    );
    // The client refusing a server with that certificate: one line, escaped.
    let (c, _) = pair(&pki, "forged", &["--verify", "none"], pki.args("client"));
    c.fails(
        3,
        "INFO closed 127.0.0.1:1: sent 0 bytes' (issuer 'CN=Other CA')",
    );
    assert_eq!(c.stderr.lines().count(), 1, "{}", c.stderr);
    assert!(c.stderr.starts_with("sst-tunnel: error: "), "{}", c.stderr);
}

/// Review finding (issue 22): a donor rejected by the joiner's identity check exited 3 in some
/// runs and 6 ("reset", "broken pipe") in others, depending on whether its next write or the
/// joiner's alert came first. The joiner now makes sure its alert arrives (FIN after it, and
/// what the donor still sends read and dropped before closing), and a donor whose write fails
/// reads what the joiner said first: exit 3 and the alert, every time.
#[test]
fn a_rejected_donor_reports_the_alert_every_time() {
    let pki = Pki::new();
    let payload = bytes(4 << 20, 22);
    for run in 0..20 {
        let mut server = stdio_server(&pki, &["--verify", "identity", "--peer-name", "node3"]);
        server.close_stdin();
        let port = server.port();
        let mut cl = client(&pki, port, "client", &[]);
        let mut input = cl.stdin();
        let data = payload.clone();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let c = cl.finish();
        writer.join().unwrap();
        assert_eq!(c.code(), 3, "run {run}: {}", c.stderr);
        assert!(
            c.stderr
                .contains("the peer rejected our certificate (alert"),
            "run {run}: {}",
            c.stderr
        );
        server
            .refusal_or_exit()
            .refused("matches none of the expected names: node3");
    }
}

/// Numbers at and past every type's edge, as text: each is refused with a one-line error
/// naming where it came from, or taken; never a panic.
const EXTREMES: [&str; 9] = [
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e309",
    "nan",
    "inf",
    "99999999999999999999h",
];

/// What is wrong with the outcome for an extreme `value` of `option`: a panic, or a
/// refusal that does not name the option.
fn no_panic(out: &Outcome, option: &str, value: &str) -> Option<String> {
    let said = out.stderr.trim_end();
    if out.code() == 101 || said.contains("panicked") {
        return Some(format!("{option} {value}: panicked: {said}"));
    }
    // Taken, the run ends at the connect (or the bind); refused, the error line (clap adds
    // a usage hint after it) names the option.
    let error = said.lines().find(|l| l.contains("error")).unwrap_or("");
    let taken = ["cannot connect to", "cannot listen on"]
        .iter()
        .any(|end| error.contains(end));
    if out.code() != 0 && !taken && !error.to_lowercase().contains(&option.to_lowercase()) {
        return Some(format!(
            "{option} {value}: refused without naming it: {said}"
        ));
    }
    None
}

/// Issue 21, point 5: no panic is reachable from any number on a command line or in a
/// config file. Every option of `connect`, `listen` and `check` whose value is a number or
/// a duration (found in their `--help`, so a new one is covered the day it is added), the
/// numeric stunnel directives, socat's numeric options and `-T`, and SST_TUNNEL_STREAMS get
/// each of [`EXTREMES`]. Nothing listens on the target port, so whatever is taken ends at
/// the connect.
#[test]
fn no_number_on_any_command_line_panics() {
    let pki = Pki::new();
    let refused = free_port();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let mut wrong = Vec::new();
    let numeric = |command: &str| -> Vec<String> {
        let help = Proc::spawn(bin(), &strs(&[command, "--help"])).finish();
        help.ok();
        let flags: Vec<String> = String::from_utf8_lossy(&help.stdout)
            .lines()
            .filter_map(|line| {
                let (flag, value) = line.trim().rsplit_once(' ')?;
                let flag = flag.rsplit(' ').next()?;
                let numeric = ["<N>", "<N|auto>", "<DURATION>", "<DAYS>"].contains(&value);
                (flag.starts_with("--") && numeric).then(|| flag.to_string())
            })
            .collect();
        assert!(
            !flags.is_empty(),
            "{command} --help lists no numeric option"
        );
        flags
    };
    let base = |command: &str| -> Vec<String> {
        match command {
            "connect" => client_args(&pki, refused, "client", &[]),
            "listen" => {
                let mut args = listen_args(
                    &format!("127.0.0.1:{busy_port}"),
                    &tls_args(&pki, "server", &[]),
                );
                args.push("--stdio".into());
                args
            }
            _ => strs(&[
                "check",
                "--cert",
                &pki.s("server-cert.pem"),
                "--key",
                &pki.s("server-key.pem"),
                "--ca",
                &pki.s("ca.pem"),
            ]),
        }
    };
    for command in ["connect", "listen", "check"] {
        for flag in numeric(command) {
            for value in EXTREMES {
                let mut args = base(command);
                args.push(format!("{flag}={value}"));
                let out = Proc::spawn(bin(), &args).finish();
                wrong.extend(no_panic(&out, &flag, value));
            }
        }
    }
    // stunnel: the donor's config with one numeric directive changed.
    let conf = stunnel_donor_conf(&pki, refused);
    let text = std::fs::read_to_string(&conf).unwrap();
    for directive in ["TIMEOUTclose", "TIMEOUTidle", "TIMEOUTconnect", "debug"] {
        for value in EXTREMES {
            let changed =
                format!("{text}\n{directive} = {value}\n").replace("TIMEOUTclose = 0\n", "");
            pki.write("extreme.conf", &changed);
            let mut stunnel = std::process::Command::new(bin());
            stunnel.arg0("stunnel").arg(pki.path("extreme.conf"));
            let out = Proc::spawn_with(&mut stunnel).finish();
            wrong.extend(no_panic(&out, directive, value));
        }
    }
    // socat: -T and every numeric address option, and the stripe count it reads from the
    // environment.
    let target = format!("openssl-connect:127.0.0.1:{refused},verify=0");
    for option in [
        "retry",
        "interval",
        "connect-timeout",
        "backlog",
        "sndbuf",
        "linger",
        "-T",
        "SST_TUNNEL_STREAMS",
        "SST_TUNNEL_RESUME_BUFFER",
    ] {
        for value in EXTREMES {
            let mut socat = std::process::Command::new(bin());
            socat.arg0("socat");
            match option {
                "-T" => socat.args(["-T", value, "-u", "stdio", &target]),
                "SST_TUNNEL_STREAMS" | "SST_TUNNEL_RESUME_BUFFER" => {
                    socat.env(option, value).args(["-u", "stdio", &target])
                }
                _ => socat.args(["-u", "stdio", &format!("{target},{option}={value}")]),
            };
            let out = Proc::spawn_with(&mut socat).finish();
            wrong.extend(no_panic(&out, option, value));
        }
    }
    drop(busy);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
