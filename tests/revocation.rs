//! Revocation and key usage as README promises them: a root CA with intermediates, CRLs from
//! each, revocation anywhere in the chain, CRL files and directories, both roles, stunnel's
//! `CRLfile`/`CRLpath`, an expired CRL, a CRL from another issuer, extendedKeyUsage, and the
//! same checks for a pinned peer (`--verify pin`).

mod common;

use std::os::unix::process::CommandExt;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, date_time_ymd,
};

/// Serial numbers of the certificates the CRLs list.
const REVOKED_LEAF: u64 = 0x1eaf;
const REVOKED_CA: u64 = 0xca;

/// Writes, into a fresh [`Pki`] directory (whose ordinary files stay usable):
/// - `root.pem` (CN=Rev Root CA); intermediates `inter` (CN=Rev Intermediate CA) and `badca`
///   (CN=Revoked Intermediate CA, revoked by the root);
/// - node certificates, each file the leaf then its intermediate: `good` and `good2` (under
///   `inter`), `revoked` (under `inter`, revoked by it), `underbad` (under `badca`),
///   `serveronly` (under `inter`, extendedKeyUsage serverAuth only);
/// - self-signed leaves for pinning: `pinned`, `pinexpired` (expired 2021), `pinserveronly`;
///   `pins.pem` holds all three;
/// - CRLs: `root.crl` (revokes `badca`), `inter.crl` (revokes `revoked`), `stale.crl` (from
///   `inter`, expired 2021), `other.crl` (from another CA), `pinned.crl` (from `pinned`'s own
///   key, revoking nothing); the directory `crls/` holds `root.crl` and `inter.crl`.
struct Tiers {
    pki: Pki,
}

impl Tiers {
    fn new() -> Self {
        let pki = Pki::new();
        let (root_params, root_key) = ca("Rev Root CA", 1);
        let root_cert = root_params.self_signed(&root_key).unwrap();
        pki.write("root.pem", &root_cert.pem());
        let root = Issuer::new(root_params, root_key);

        let (inter_params, inter_key) = ca("Rev Intermediate CA", 2);
        let inter_pem = inter_params.signed_by(&inter_key, &root).unwrap().pem();
        let inter = Issuer::new(inter_params, inter_key);
        let (bad_params, bad_key) = ca("Revoked Intermediate CA", REVOKED_CA);
        let bad_pem = bad_params.signed_by(&bad_key, &root).unwrap().pem();
        let bad = Issuer::new(bad_params, bad_key);

        let t = Self { pki };
        t.leaf(&inter, &inter_pem, "good", 10, |_| {});
        t.leaf(&inter, &inter_pem, "good2", 11, |_| {});
        t.leaf(&inter, &inter_pem, "revoked", REVOKED_LEAF, |_| {});
        t.leaf(&bad, &bad_pem, "underbad", 12, |_| {});
        t.leaf(&inter, &inter_pem, "serveronly", 13, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        });

        let pinned = t.self_signed("pinned", |_| {});
        t.self_signed("pinexpired", |p| {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        });
        t.self_signed("pinserveronly", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        });
        let pins: String = ["pinned", "pinexpired", "pinserveronly"]
            .iter()
            .map(|n| std::fs::read_to_string(t.pki.path(&format!("{n}-cert.pem"))).unwrap())
            .collect();
        t.pki.write("pins.pem", &pins);

        t.crl("root.crl", &root, 2099, &[REVOKED_CA]);
        t.crl("inter.crl", &inter, 2099, &[REVOKED_LEAF]);
        t.crl("stale.crl", &inter, 2021, &[]);
        let (other_params, other_key) = ca("Unrelated CA", 3);
        t.crl(
            "other.crl",
            &Issuer::new(other_params, other_key),
            2099,
            &[],
        );
        t.crl("pinned.crl", &pinned, 2099, &[]);
        std::fs::create_dir(t.pki.path("crls")).unwrap();
        for name in ["root.crl", "inter.crl"] {
            std::fs::copy(t.pki.path(name), t.pki.path("crls").join(name)).unwrap();
        }
        t
    }

    fn leaf(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        issuer_pem: &str,
        name: &str,
        serial: u64,
        tweak: impl FnOnce(&mut CertificateParams),
    ) {
        let key = KeyPair::generate().unwrap();
        let mut params = node_params(name);
        params.serial_number = Some(SerialNumber::from(serial));
        tweak(&mut params);
        let cert = params.signed_by(&key, issuer).unwrap();
        self.write_pair(name, &format!("{}{issuer_pem}", cert.pem()), &key);
    }

    /// A self-signed node certificate; returns it as an issuer (for its own CRL).
    fn self_signed(
        &self,
        name: &str,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().unwrap();
        let mut params = node_params(name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        tweak(&mut params);
        let cert = params.self_signed(&key).unwrap();
        self.write_pair(name, &cert.pem(), &key);
        Issuer::new(params, key)
    }

    fn write_pair(&self, name: &str, cert: &str, key: &KeyPair) {
        self.pki.write(&format!("{name}-cert.pem"), cert);
        let key_file = format!("{name}-key.pem");
        self.pki.write(&key_file, &key.serialize_pem());
        std::fs::set_permissions(
            self.pki.path(&key_file),
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
    }

    fn crl(&self, file: &str, issuer: &Issuer<'_, KeyPair>, until: i32, serials: &[u64]) {
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(until, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2020, 6, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap();
        self.pki.write(file, &crl.pem().unwrap());
    }

    /// `--cert NAME-cert.pem --key NAME-key.pem --ca CA` then `extra`.
    /// (`extra`'s own `--ca` replaces CA).
    fn args(&self, name: &str, ca: &str, extra: &[&str]) -> Vec<String> {
        let mut v = strs(&[
            "--cert",
            &self.pki.s(&format!("{name}-cert.pem")),
            "--key",
            &self.pki.s(&format!("{name}-key.pem")),
        ]);
        if !extra.contains(&"--ca") {
            v.extend(["--ca".to_string(), self.pki.s(ca)]);
        }
        v.extend(strs(extra));
        v
    }

    /// A `--stdio` listener as `server` (with `server_extra`) and a client as `client` (with
    /// `client_extra`) sending a short payload; both verify against `ca`. Returns (client,
    /// listener); a listener that refused its client was ended with SIGTERM after the refusal.
    fn pair(
        &self,
        ca: &str,
        (server, server_extra): (&str, &[&str]),
        (client, client_extra): (&str, &[&str]),
    ) -> (Outcome, Outcome) {
        let mut args = listen_args("127.0.0.1:0", &self.args(server, ca, server_extra));
        args.push("--stdio".into());
        let mut listener = Proc::spawn(bin(), &args);
        listener.close_stdin();
        let port = listener.port();
        let mut cargs = vec!["connect".to_string(), format!("127.0.0.1:{port}")];
        cargs.extend(self.args(client, ca, client_extra));
        let mut cl = Proc::spawn(bin(), &cargs);
        // A client that refuses to start closes its stdin: its exit says why.
        let _ = std::io::Write::write_all(&mut cl.stdin(), b"revocation payload");
        (cl.finish(), listener.refusal_or_exit())
    }

    fn s(&self, name: &str) -> String {
        self.pki.s(name)
    }
}

fn ca(cn: &str, serial: u64) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.serial_number = Some(SerialNumber::from(serial));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    (params, key)
}

fn node_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(strs(&["localhost", "127.0.0.1", "::1"])).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

/// The good pair completes with every CRL form: a file of one issuer's CRL (the leaf's), a
/// file of both, and the directory; so each refusal below is the CRL's doing.
#[test]
fn good_certificates_pass_every_crl_form() {
    let t = Tiers::new();
    let both = format!(
        "{}{}",
        std::fs::read_to_string(t.pki.path("root.crl")).unwrap(),
        std::fs::read_to_string(t.pki.path("inter.crl")).unwrap()
    );
    t.pki.write("both.crl", &both);
    for crl in ["inter.crl", "both.crl", "crls"] {
        let crl = t.s(crl);
        let extra: &[&str] = &["--crl", &crl];
        let (c, s) = t.pair("root.pem", ("good", extra), ("good2", extra));
        c.ok();
        assert_eq!(s.ok().stdout, b"revocation payload", "--crl {crl}");
    }
}

/// A revoked intermediate CA refuses every certificate under it, and says which CA.
#[test]
fn a_revoked_intermediate_is_refused() {
    let t = Tiers::new();
    let crls = t.s("crls");
    let (c, s) = t.pair("root.pem", ("underbad", &[]), ("good", &["--crl", &crls]));
    c.fails(
        3,
        "server certificate 'CN=underbad' is issued by CA 'CN=Revoked Intermediate CA', which is \
         revoked (--crl)",
    );
    s.refused("the peer rejected our certificate");
}

/// A listener with a CRL directory refuses a revoked client, delivers nothing from it, and
/// still takes the good client that comes next.
#[test]
fn a_listener_refuses_a_revoked_client_then_takes_the_good_one() {
    let t = Tiers::new();
    let crls = t.s("crls");
    let mut args = listen_args(
        "127.0.0.1:0",
        &t.args("good", "root.pem", &["--crl", &crls]),
    );
    args.push("--stdio".into());
    let mut listener = Proc::spawn(bin(), &args);
    listener.close_stdin();
    let port = listener.port();
    let connect = |who: &str| {
        let mut cargs = vec!["connect".to_string(), format!("127.0.0.1:{port}")];
        cargs.extend(t.args(who, "root.pem", &[]));
        let mut cl = Proc::spawn(bin(), &cargs);
        std::io::Write::write_all(&mut cl.stdin(), who.as_bytes()).unwrap();
        cl.finish()
    };
    assert_ne!(connect("revoked").code(), 0);
    listener.wait_line("client certificate 'CN=revoked' is revoked (--crl)");
    connect("good2").ok();
    let out = listener.finish();
    out.ok();
    assert_eq!(out.stdout, b"good2", "only the good client's bytes");
}

/// stunnel's `CRLfile` and `CRLpath`: the donor refuses a revoked joiner, in the config's words.
#[test]
fn stunnel_crlfile_and_crlpath_refuse_a_revoked_peer() {
    let t = Tiers::new();
    for (directive, crl) in [("CRLfile", "inter.crl"), ("CRLpath", "crls")] {
        let mut args = listen_args("127.0.0.1:0", &t.args("revoked", "root.pem", &[]));
        args.push("--stdio".into());
        let mut listener = Proc::spawn(bin(), &args);
        listener.close_stdin();
        let port = listener.port();
        let conf = format!(
            "key = {}\ncert = {}\nCAfile = {}\n{directive} = {}\nforeground = yes\nclient = yes\n\
             connect = 127.0.0.1:{port}\nTIMEOUTclose = 0\nverifyChain = yes\n",
            t.s("good-key.pem"),
            t.s("good-cert.pem"),
            t.s("root.pem"),
            t.s(crl),
        );
        t.pki.write("donor.conf", &conf);
        let mut donor = std::process::Command::new(bin());
        donor.arg0("stunnel").arg(t.pki.path("donor.conf"));
        let out = Proc::spawn_with(&mut donor).finish();
        out.fails(3, "server certificate 'CN=revoked' is revoked")
            .fails(3, "'CRLfile =' (or 'CRLpath =') in");
        assert!(
            !out.stderr.contains("--crl"),
            "stunnel's words, not ours: {}",
            out.stderr
        );
        listener
            .refusal_or_exit()
            .refused("the peer rejected our certificate");
    }
}

/// An expired CRL is an error naming its issuer, its file and the date, in chain and pin mode.
#[test]
fn an_expired_crl_is_an_error() {
    let t = Tiers::new();
    let stale = t.s("stale.crl");
    let (c, _) = t.pair("root.pem", ("good", &[]), ("good2", &["--crl", &stale]));
    c.fails(
        3,
        &format!("the CRL from 'CN=Rev Intermediate CA' in {stale} expired at 2021-01-01"),
    );
    // Pinned: the pinned leaf's own issuer published the stale CRL... so pin `good`.
    let pinned_good = t.s("good-cert.pem");
    let (c, _) = t.pair(
        "good-cert.pem",
        ("good", &["--verify", "pin"]),
        (
            "good2",
            &["--verify", "pin", "--ca", &pinned_good, "--crl", &stale],
        ),
    );
    c.fails(
        3,
        &format!("the CRL from 'CN=Rev Intermediate CA' in {stale} expired at 2021-01-01"),
    );
}

/// Policy: with `--crl`, the issuer of the peer's certificate must have a CRL there. A CRL
/// from another issuer only (a wrong file) is refused, not silently ignored.
#[test]
fn a_crl_from_another_issuer_is_refused_not_ignored() {
    let t = Tiers::new();
    let other = t.s("other.crl");
    let (c, _) = t.pair("root.pem", ("good", &[]), ("good2", &["--crl", &other]));
    c.fails(
        3,
        "server certificate 'CN=good' cannot be checked for revocation: no CRL in --crl is from \
         its issuer 'CN=Rev Intermediate CA'",
    );
    // The root's CRL alone covers the intermediate but not the leaf: refused too.
    let root_only = t.s("root.crl");
    let (c, _) = t.pair("root.pem", ("good", &[]), ("good2", &["--crl", &root_only]));
    c.fails(
        3,
        "no CRL in --crl is from its issuer 'CN=Rev Intermediate CA'",
    );
    // Pinned self-signed peers: their own CRL covers them; another issuer's does not.
    let pinned_crl = t.s("pinned.crl");
    let pin = |crl: &str| {
        t.pair(
            "pins.pem",
            ("pinned", &["--verify", "pin"]),
            ("pinned", &["--verify", "pin", "--crl", crl]),
        )
    };
    let (c, s) = pin(&pinned_crl);
    c.ok();
    assert_eq!(s.ok().stdout, b"revocation payload");
    let (c, _) = pin(&other);
    c.fails(3, "no CRL in --crl is from its issuer 'CN=pinned'");
}

/// A certificate whose extendedKeyUsage lacks clientAuth is refused as a client, chained or
/// pinned; the same certificate serves fine as a server.
#[test]
fn a_leaf_without_client_auth_is_refused_as_a_client() {
    let t = Tiers::new();
    let (c, s) = t.pair("root.pem", ("good", &[]), ("serveronly", &[]));
    assert_ne!(c.code(), 0);
    s.refused("client certificate 'CN=serveronly' lacks extendedKeyUsage clientAuth");
    let (c, s) = t.pair("root.pem", ("serveronly", &[]), ("good", &[]));
    c.ok();
    assert_eq!(s.ok().stdout, b"revocation payload");
    let pin: &[&str] = &["--verify", "pin"];
    let (c, s) = t.pair("pins.pem", ("pinned", pin), ("pinserveronly", pin));
    assert_ne!(c.code(), 0);
    s.refused("client certificate 'CN=pinserveronly' lacks extendedKeyUsage clientAuth");
}

/// Pinning trusts the certificate itself, not its dates: an expired pinned certificate is
/// refused, and a revoked one too.
#[test]
fn pinning_still_refuses_expired_and_revoked_certificates() {
    let t = Tiers::new();
    let pin: &[&str] = &["--verify", "pin"];
    // sst-tunnel will not present its own expired certificate, so stock socat does.
    let socat = require("socat");
    let mut args = listen_args("127.0.0.1:0", &t.args("pinned", "pins.pem", pin));
    args.push("--stdio".into());
    let mut listener = Proc::spawn(bin(), &args);
    listener.close_stdin();
    let port = listener.port();
    let mut stock = Proc::spawn(
        &socat,
        &strs(&[
            "-u",
            "stdio",
            &format!(
                "openssl-connect:127.0.0.1:{port},cert={},key={},verify=0",
                t.s("pinexpired-cert.pem"),
                t.s("pinexpired-key.pem")
            ),
        ]),
    );
    let _ = std::io::Write::write_all(&mut stock.stdin(), b"expired");
    // Under TLS 1.3 socat may have written and left before the refusal came back: the
    // listener's verdict is what is checked.
    stock.close_stdin();
    let _ = stock.finish();
    listener
        .refusal_or_exit()
        .refused("client certificate 'CN=pinexpired' expired at 2021-01-01");
    t.pki.write(
        "pin-revoked.pem",
        &std::fs::read_to_string(t.pki.path("revoked-cert.pem")).unwrap(),
    );
    let crl = t.s("inter.crl");
    let (c, s) = t.pair(
        "pin-revoked.pem",
        ("revoked", &["--verify", "pin"]),
        ("revoked", &["--verify", "pin", "--crl", &crl]),
    );
    c.fails(3, "server certificate 'CN=revoked' is revoked (--crl)");
    s.refused("the peer rejected our certificate");
}
