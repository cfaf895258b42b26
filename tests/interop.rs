//! Mixed clusters during a rolling upgrade: sst-tunnel against stock stunnel and socat (from
//! Debian's packages), both directions, mutual TLS.

mod common;

use std::io::Write;

use common::*;

/// Writes a stunnel config into the PKI directory and returns its path.
fn stunnel_conf(pki: &Pki, name: &str, body: &str) -> String {
    pki.write(name, body);
    pki.s(name)
}

#[test]
fn sst_tunnel_client_to_stunnel_exec_server() {
    let stunnel = require("stunnel");
    let pki = Pki::new();
    let port = free_port();
    let conf = stunnel_conf(
        &pki,
        "server.conf",
        &format!(
            "cert = {}\nkey = {}\nCAfile = {}\nforeground = yes\npid =\ndebug = warning\nverifyChain = yes\n\n[echo]\naccept = 127.0.0.1:{port}\nexec = /bin/cat\nexecargs = cat\n",
            pki.s("server-cert.pem"),
            pki.s("server-key.pem"),
            pki.s("ca.pem"),
        ),
    );
    let _server = Proc::spawn(&stunnel, &[conf]);
    wait_port(port);
    let mut cl = client(&pki, port, "client", &[]);
    let data = bytes(2 << 20, 21);
    let mut sin = cl.stdin();
    let copy = data.clone();
    let writer = std::thread::spawn(move || sin.write_all(&copy).unwrap());
    let out = cl.finish();
    writer.join().unwrap();
    out.ok();
    assert_eq!(
        sha256(&out.stdout),
        sha256(&data),
        "stunnel's cat must echo every byte"
    );
}

#[test]
fn stunnel_inetd_client_to_sst_tunnel_server() {
    let stunnel = require("stunnel");
    let pki = Pki::new();
    let mut server = stdio_server(&pki, &[]);
    // stunnel treats our close_notify as the end of the whole connection (no TLS half-close),
    // so, as with rsync on the joiner, our direction stays open until stunnel is done.
    let server_input = server.stdin();
    let port = server.port();
    let conf = stunnel_donor_conf(&pki, port);
    let mut cl = Proc::spawn(
        &stunnel,
        &[conf, "127.0.0.1".into(), "rsync".into(), "--server".into()],
    );
    let sent = feed(cl.stdin(), 8 << 20, 22);
    let c = cl.finish();
    drop(server_input);
    let s = server.finish();
    assert_eq!(c.code(), 0, "{}", c.stderr);
    s.ok();
    assert_eq!(sha256(&s.stdout), sent.join().unwrap());
    // stunnel sends the IP literal as SNI; rustls must tolerate it.
    assert!(s.stderr.contains("TLSv1.3"), "{}", s.stderr);
}

#[test]
fn sst_tunnel_client_to_socat_openssl_listen() {
    let socat = require("socat");
    let pki = Pki::new();
    let port = free_port();
    // The joiner command line wsrep_sst_mariabackup runs for encrypt=4 (contract 3.3).
    let listen = socat_listen(&pki, port, "server");
    let server = Proc::spawn(&socat, &strs(&["-d", "-d", "-u", &listen, "stdio"]));
    server.wait_line("listening on");
    let mut cl = client(&pki, port, "client", &[]);
    let sent = feed(cl.stdin(), 8 << 20, 23);
    let c = cl.finish();
    let s = server.finish();
    c.ok();
    assert_eq!(s.code(), 0, "{}", s.stderr);
    assert_eq!(sha256(&s.stdout), sent.join().unwrap());
}

#[test]
fn socat_openssl_client_to_sst_tunnel_server() {
    let socat = require("socat");
    let pki = Pki::new();
    let mut server = stdio_server(&pki, &[]);
    server.close_stdin();
    let port = server.port();
    // socat offers only P-256.
    let connect = socat_connect(&pki, port, "client");
    let mut cl = Proc::spawn(&socat, &strs(&["-u", "stdio", &connect]));
    let sent = feed(cl.stdin(), 8 << 20, 24);
    let c = cl.finish();
    let s = server.finish();
    assert_eq!(c.code(), 0, "{}", c.stderr);
    s.ok();
    assert_eq!(sha256(&s.stdout), sent.join().unwrap());
}

#[test]
fn stock_client_with_the_wrong_ca_is_refused() {
    let socat = require("socat");
    let pki = Pki::new();
    let mut server = stdio_server(&pki, &[]);
    server.close_stdin();
    let port = server.port();
    let connect = socat_connect(&pki, port, "rogue");
    let mut cl = Proc::spawn(&socat, &strs(&["-u", "stdio", &connect]));
    let _ = cl.stdin().write_all(b"should never arrive");
    cl.close_stdin();
    // Under TLS 1.3 the client finishes its handshake before the server judges its
    // certificate, so stock socat may still exit 0 here; the server is what must refuse.
    cl.finish();
    let s = server.refusal_or_exit();
    s.refused("is not signed by a CA in");
}

#[test]
fn openssl_peer_asks_for_a_key_update_and_gets_one() {
    // OpenSSL's s_client sends a KeyUpdate with update_requested on its "K" command: the
    // tunnel must follow the new keys and answer with its own KeyUpdate before its next
    // record, which OpenSSL must then decrypt (s_client -msg shows the KeyUpdate arrive).
    let openssl = require("openssl");
    let pki = Pki::new();
    let mut args = strs(&["--log-level", "debug"]);
    args.extend(listen_args("127.0.0.1:0", &tls_args(&pki, "server", &[])));
    args.push("--stdio".into());
    let mut server = Proc::spawn_raw_stdout(std::process::Command::new(bin()).args(&args));
    let mut server_in = server.stdin();
    let port = server.port();
    let mut server_out = std::io::BufReader::new(server.take_stdout());
    let mut peer = std::process::Command::new(&openssl)
        .args(strs(&[
            "s_client",
            "-msg",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ]))
        .args(strs(&["-cert", &pki.s("client-cert.pem"), "-key"]))
        .args(strs(&[
            &pki.s("client-key.pem"),
            "-CAfile",
            &pki.s("ca.pem"),
        ]))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn openssl s_client");
    let mut peer_in = peer.stdin.take().unwrap();
    let mut peer_out = std::io::BufReader::new(peer.stdout.take().unwrap());
    let read_line = |reader: &mut dyn std::io::BufRead| {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
    };
    // s_client takes a command only at the start of what it reads, so each waits for the
    // previous line to have crossed.
    peer_in.write_all(b"before\n").unwrap();
    assert_eq!(read_line(&mut server_out), "before\n");
    peer_in.write_all(b"K\n").unwrap();
    // -msg shows the KeyUpdate go out.
    loop {
        let line = read_line(&mut peer_out);
        assert!(!line.is_empty(), "s_client ended before its KeyUpdate");
        if line.starts_with(">>>") && line.contains("KeyUpdate") {
            break;
        }
    }
    peer_in.write_all(b"after\n").unwrap();
    assert_eq!(read_line(&mut server_out), "after\n");
    server_in.write_all(b"answer\n").unwrap();
    let mut key_update = false;
    loop {
        let line = read_line(&mut peer_out);
        assert!(!line.is_empty(), "s_client ended before our answer arrived");
        key_update |= line.starts_with("<<<") && line.contains("KeyUpdate");
        if line == "answer\n" {
            break;
        }
    }
    assert!(key_update, "no KeyUpdate from the tunnel before its answer");
    drop(peer_in);
    drop(server_in);
    let status = peer.wait().unwrap();
    assert!(status.success(), "s_client: {status:?}");
    server.finish().ok();
}
