//! Test support: a PKI generated per run, spawning the real binary, waiting for lines and
//! ports, and seeded payloads. Nothing here sleeps to synchronise.

#![allow(dead_code)]

pub mod faultproxy;
pub mod rawtls;
pub mod sst;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, date_time_ymd,
};

/// Path of the binary under test: the one cargo built, or `SST_TUNNEL_BIN` (the kTLS guest
/// runs the conformance suite against the release binary it carries).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SST_TUNNEL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sst-tunnel").into())
    })
}

/// How long any single wait may take before the test fails (a bound, not a synchroniser).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A temporary directory of certificate files, removed on drop.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

/// Certificate/key file names written by [`Pki::new`].
impl Pki {
    /// Generates: `ca.pem`, `other-ca.pem`, node certificates `server`, `client` (both with
    /// SANs localhost/127.0.0.1/::1), `expired`, `future`, `revoked` (in `crl.pem`),
    /// `wrongname` (SAN other.example only), `cnonly` (CN=node9, no SAN), `rogue` (signed by the
    /// other CA), `forged` (signed by the other CA, a newline in its CN), `forgedcn` (that CN,
    /// no SAN, from the good CA), `combined.pem` (server cert + key), `leaves.pem` (CA + server + client),
    /// `node2` (CN node2, SANs node2/127.0.0.1/::1) and `nodes.pem` (CA + node2 + client).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Self { dir };
        let (ca_params, ca_key) = ca("SST Test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        pki.write("ca.pem", &ca_cert.pem());
        pki.write("ca-key.pem", &ca_key.serialize_pem());
        let issuer = Issuer::new(ca_params, ca_key);
        let (other_params, other_key) = ca("Other CA");
        let other_cert = other_params.self_signed(&other_key).unwrap();
        pki.write("other-ca.pem", &other_cert.pem());
        let other = Issuer::new(other_params, other_key);

        let std_names = &["localhost", "127.0.0.1", "::1"];
        let server = pki.leaf(&issuer, "server", "node2", std_names, |_| {});
        let client = pki.leaf(&issuer, "client", "node1", std_names, |_| {});
        pki.leaf(&issuer, "expired", "node1", std_names, |p| {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        });
        pki.leaf(&issuer, "future", "node1", std_names, |p| {
            p.not_before = date_time_ymd(2090, 1, 1);
            p.not_after = date_time_ymd(2091, 1, 1);
        });
        pki.leaf(&issuer, "revoked", "node1", std_names, |p| {
            p.serial_number = Some(SerialNumber::from(0x5eed_u64));
        });
        pki.leaf(&issuer, "wrongname", "node2", &["other.example"], |_| {});
        pki.leaf(&issuer, "cnonly", "node9", &[], |_| {});
        pki.leaf(&other, "rogue", "node1", std_names, |_| {});
        // A subject that would forge a log line if printed raw.
        pki.leaf(&other, "forged", FORGED_CN, std_names, |_| {});
        pki.leaf(&issuer, "forgedcn", FORGED_CN, &[], |_| {});
        // As the SST scripts' VERIFY_IDENTITY expects: the CN is also a DNS SAN.
        let node2 = pki.leaf(
            &issuer,
            "node2",
            "node2",
            &["node2", "127.0.0.1", "::1"],
            |_| {},
        );

        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(0x5eed_u64),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        pki.write("crl.pem", &crl.pem().unwrap());
        pki.write("combined.pem", &format!("{}{}", server.0, server.1));
        pki.write(
            "nodes.pem",
            &format!("{}{}{}", ca_cert.pem(), node2.0, client.0),
        );
        pki.write(
            "leaves.pem",
            &format!("{}{}{}", ca_cert.pem(), server.0, client.0),
        );
        pki
    }

    fn leaf(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        name: &str,
        cn: &str,
        sans: &[&str],
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        tweak(&mut params);
        let cert = params.signed_by(&key, issuer).unwrap();
        let pair = (cert.pem(), key.serialize_pem());
        self.write(&format!("{name}-cert.pem"), &pair.0);
        self.write(&format!("{name}-key.pem"), &pair.1);
        // Private keys as they should be on disk (`check` warns about readable ones).
        let key_path = self.path(&format!("{name}-key.pem"));
        std::fs::set_permissions(
            &key_path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        pair
    }

    /// Writes a file into the PKI directory.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Full path of a file in the PKI directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--cert X-cert.pem --key X-key.pem --ca ca.pem` for node `name`.
    pub fn args(&self, name: &str) -> Vec<String> {
        vec![
            "--cert".into(),
            self.s(&format!("{name}-cert.pem")),
            "--key".into(),
            self.s(&format!("{name}-key.pem")),
            "--ca".into(),
            self.s("ca.pem"),
        ]
    }

    /// Path as a String.
    pub fn s(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

fn ca(cn: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, key)
}

/// The CN of the `forged` certificate: a newline, then what looks like a log line.
pub const FORGED_CN: &str =
    "evil\n2026-01-01T00:00:00.000000Z  INFO closed 127.0.0.1:1: sent 0 bytes";

/// What a listener logs for a connection it refuses while waiting for its verified peer.
pub const REFUSED: &str = "refused a connection from";

/// A spawned process whose stderr is collected line by line.
pub struct Proc {
    child: Option<Child>,
    pid: i32,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
}

impl Proc {
    /// Spawns `program args`, stdin piped, stdout collected, stderr collected.
    pub fn spawn(program: &str, args: &[String]) -> Self {
        Self::spawn_with(Command::new(program).args(args))
    }

    /// Spawns a prepared command (stdin piped, stdout and stderr captured).
    pub fn spawn_with(command: &mut Command) -> Self {
        Self::spawn_inner(command, true)
    }

    /// Like [`Proc::spawn_with`], but stdout is left for [`Proc::take_stdout`] (benchmarks).
    pub fn spawn_raw_stdout(command: &mut Command) -> Self {
        Self::spawn_inner(command, false)
    }

    fn spawn_inner(command: &mut Command, collect_stdout: bool) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let stdout = if collect_stdout {
            let mut stdout = child.stdout.take().unwrap();
            Some(thread::spawn(move || {
                let mut out = Vec::new();
                let _ = stdout.read_to_end(&mut out);
                out
            }))
        } else {
            None
        };
        let pid = child.id() as i32;
        Self {
            child: Some(child),
            pid,
            lines,
            log,
            stdout,
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no stderr line containing {needle:?}; got: {:#?}",
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for `listening on ADDR` and returns the port.
    pub fn port(&self) -> u16 {
        let line = self.wait_line("listening on ");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Takes the raw stdout pipe (only after [`Proc::spawn_raw_stdout`]).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .as_mut()
            .unwrap()
            .stdout
            .take()
            .expect("stdout is collected")
    }

    /// Takes the stdin pipe.
    pub fn stdin(&mut self) -> ChildStdin {
        self.child.as_mut().unwrap().stdin.take().unwrap()
    }

    /// Closes stdin.
    pub fn close_stdin(&mut self) {
        drop(self.child.as_mut().unwrap().stdin.take());
    }

    /// Waits for exit (bounded); returns status, stdout, stderr text.
    pub fn finish(mut self) -> Outcome {
        let mut child = self.child.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(PATIENCE) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                self.signal(nix::sys::signal::Signal::SIGKILL);
                panic!("process did not exit; stderr: {:#?}", self.stderr());
            }
        };
        let stdout = self
            .stdout
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        // The stderr reader ends at EOF, which the exit brings.
        while self.lines.recv_timeout(PATIENCE).is_ok() {}
        Outcome {
            status,
            stdout,
            stderr: self.stderr().join("\n"),
        }
    }

    /// For a listener waiting for its verified peer: waits until it either exits or logs
    /// that it refused a connection, which it survives; it is then ended with SIGTERM (as the
    /// SST script's own timeout would end it). Returns how it ended; see [`Outcome::refused`].
    pub fn refusal_or_exit(self) -> Outcome {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(REFUSED) => {
                    self.signal(nix::sys::signal::Signal::SIGTERM);
                    return self.finish();
                }
                Ok(_) => {}
                // stderr closed: the process is exiting by itself.
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.finish(),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "neither an exit nor a refused connection; stderr: {:#?}",
                    self.stderr()
                ),
            }
        }
    }

    /// stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal to this process (one we started).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a process ended.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    /// Exit code (panics if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| {
            panic!(
                "killed by signal: {:?}; stderr: {}",
                self.status, self.stderr
            )
        })
    }

    /// Asserts success.
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code(), 0, "stderr: {}", self.stderr);
        self
    }

    /// Asserts that a listener refused a connection with `needle` in the reason, delivered
    /// nothing, and went on waiting until it was ended (SIGTERM, exit 143): see
    /// [`Proc::refusal_or_exit`].
    pub fn refused(&self, needle: &str) -> &Self {
        assert_eq!(
            self.code(),
            143,
            "still waiting, then SIGTERM; stderr: {}",
            self.stderr
        );
        assert!(
            self.stderr
                .lines()
                .any(|l| l.contains(REFUSED) && l.contains(needle)),
            "expected a refusal with {needle:?} in stderr: {}",
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "a refused connection delivered bytes"
        );
        self
    }

    /// Asserts a failure with `code` whose stderr contains `needle`.
    pub fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(self.code(), code, "stderr: {}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr: {}",
            self.stderr
        );
        self
    }
}

/// Writes `len` seeded pseudo-random bytes to `sink` from a thread; returns the SHA-256.
pub fn feed(sink: impl Write + Send + 'static, len: u64, seed: u64) -> JoinHandle<String> {
    feed_counted(sink, len, seed, Arc::default())
}

/// [`feed`], adding each write to `written` as soon as `sink` took it (how far a reader
/// has read ahead, up to the pipe's buffer).
pub fn feed_counted(
    mut sink: impl Write + Send + 'static,
    len: u64,
    seed: u64,
    written: Arc<std::sync::atomic::AtomicU64>,
) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut state = seed | 1;
        let mut chunk = vec![0u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            for b in chunk.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let n = (chunk.len() as u64).min(left) as usize;
            hash.update(&chunk[..n]);
            if sink.write_all(&chunk[..n]).is_err() {
                break;
            }
            written.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
            left -= n as u64;
        }
        drop(sink);
        hex(hash.finish().as_ref())
    })
}

/// Seeded bytes in memory (for small payloads).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// SHA-256 of a slice, hex.
pub fn sha256(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (for stock tools that
/// print no readiness line).
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listening on port {port}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A free TCP port on loopback (for stock tools that cannot report theirs).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails loudly when a tool the suite needs is missing.
pub fn require(tool: &str) -> String {
    for dir in ["/usr/bin", "/bin", "/usr/sbin"] {
        let path = Path::new(dir).join(tool);
        if path.exists() {
            return path.to_string_lossy().into_owned();
        }
    }
    panic!(
        "{tool} is not installed; scripts/test.sh installs it (apt-get install stunnel4 socat rsync)"
    );
}

/// `listen` args: `[HOST:]PORT` then the rest.
pub fn listen_args(bind: &str, rest: &[String]) -> Vec<String> {
    let mut v = vec!["listen".to_string(), bind.to_string()];
    v.extend_from_slice(rest);
    v
}

/// Turns `&["a", "b"]` into owned strings.
pub fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `--cert/--key/--ca` for `who`, without the default `--ca` when `extra` brings its own.
pub fn tls_args(pki: &Pki, who: &str, extra: &[&str]) -> Vec<String> {
    let mut args = pki.args(who);
    if extra.contains(&"--ca") {
        args.truncate(4);
    }
    args
}

/// `sst-tunnel listen 127.0.0.1:0 --stdio` as node2 with `extra` flags.
pub fn stdio_server(pki: &Pki, extra: &[&str]) -> Proc {
    Proc::spawn(bin(), &stdio_server_args(pki, extra))
}

/// The argv of [`stdio_server`] (for a listener whose stdout the test reads itself).
pub fn stdio_server_args(pki: &Pki, extra: &[&str]) -> Vec<String> {
    let mut args = listen_args("127.0.0.1:0", &tls_args(pki, "server", extra));
    args.push("--stdio".into());
    args.extend(strs(extra));
    args
}

/// A one-way stream with the resume window `window` at both ends: a `--stdio` listener (its
/// stdin closed, `server_extra` added) and a client logging at debug level (its lines say
/// how far the stream got), fed 10 GiB, more than any test lets through before it kills one
/// end. Returns the listener, the client and the feeder, which must outlive the kill.
pub fn resumable_pair(
    pki: &Pki,
    window: &str,
    server_extra: &[&str],
) -> (Proc, Proc, JoinHandle<String>) {
    let mut extra = vec!["--resume-window", window];
    extra.extend_from_slice(server_extra);
    let mut server = stdio_server(pki, &extra);
    server.close_stdin();
    let mut args = strs(&["--log-level", "debug"]);
    args.extend(client_args(
        pki,
        server.port(),
        "client",
        &["--resume-window", window],
    ));
    let mut client = Proc::spawn(bin(), &args);
    let feeder = feed(client.stdin(), 10 << 30, 5);
    (server, client, feeder)
}

/// `sst-tunnel connect 127.0.0.1:PORT` as `who` with `extra` flags.
pub fn client(pki: &Pki, port: u16, who: &str, extra: &[&str]) -> Proc {
    Proc::spawn(bin(), &client_args(pki, port, who, extra))
}

/// The argv of [`client`].
pub fn client_args(pki: &Pki, port: u16, who: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["connect".to_string(), format!("127.0.0.1:{port}")];
    args.extend(tls_args(pki, who, extra));
    args.extend(strs(extra));
    args
}

/// The donor `stunnel.conf` wsrep_sst_rsync writes (contract 2.3), for node1 dialling `port`;
/// returns its path.
pub fn stunnel_donor_conf(pki: &Pki, port: u16) -> String {
    pki.write(
        "donor.conf",
        &format!(
            "key = {}\ncert = {}\nCAfile = {}\n\nforeground = yes\npid = {}\ndebug = warning\nclient = yes\nconnect = 127.0.0.1:{port}\nTIMEOUTclose = 0\nverifyChain = yes\n\n\n\n",
            pki.s("client-key.pem"),
            pki.s("client-cert.pem"),
            pki.s("ca.pem"),
            pki.s("stunnel.pid"),
        ),
    );
    pki.s("donor.conf")
}

/// A `--stdio` server (node2, `server_extra`) and a client (node1, `client_extra`) with both
/// inputs closed at once: just the handshake and the close. Returns (client, server).
pub fn handshake_only(
    pki: &Pki,
    server_extra: &[&str],
    client_extra: &[&str],
) -> (Outcome, Outcome) {
    let mut server = stdio_server(pki, server_extra);
    server.close_stdin();
    let port = server.port();
    let mut cl = client(pki, port, "client", client_extra);
    cl.close_stdin();
    // A failed handshake leaves the listener waiting for its verified peer.
    (cl.finish(), server.refusal_or_exit())
}

/// The joiner address wsrep_sst_mariabackup gives socat for encrypt=4 (contract 3.3), as `who`.
pub fn socat_listen(pki: &Pki, port: u16, who: &str) -> String {
    format!(
        "openssl-listen:{port},reuseaddr,cert={},key={},cafile={},commonname=",
        pki.s(&format!("{who}-cert.pem")),
        pki.s(&format!("{who}-key.pem")),
        pki.s("ca.pem")
    )
}

/// The donor address wsrep_sst_mariabackup gives socat for encrypt=4 (contract 3.3), as `who`.
pub fn socat_connect(pki: &Pki, port: u16, who: &str) -> String {
    format!(
        "openssl-connect:127.0.0.1:{port},no-sni=1,cert={},key={},cafile={},commonname=",
        pki.s(&format!("{who}-cert.pem")),
        pki.s(&format!("{who}-key.pem")),
        pki.s("ca.pem")
    )
}
