//! Running the per-connection program of `listen --exec` (the joiner's `rsync --daemon`).
//!
//! As under stunnel, the child's stdin and stdout are one end of a socketpair carrying the
//! decrypted stream (rsync's daemon expects a single bidirectional socket: with two pipes it
//! half-closes its output early), stderr is ours, and the environment is ours plus the four
//! variables stunnel sets, so scripts written for stunnel see the same values.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::Stdio;

use socket2::SockRef;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};

use crate::error::{Error, Result};

/// Socket buffer for our end of the child's socketpair: enough for one relay buffer.
const SOCKET_BUFFER: usize = 256 * 1024;

/// A spawned connection handler.
pub struct Spawned {
    /// The process, for waiting on its exit status.
    pub child: Child,
    /// What the child writes to stdout; goes to the peer.
    pub output: OwnedReadHalf,
    /// The child's stdin; the stream from the peer goes here. Dropping it shuts down our
    /// write side, which is the child's end of input.
    pub input: OwnedWriteHalf,
}

/// The program run per connection: the file to execute and the argv it sees, whose first
/// word need not be the file (stunnel's `exec` and `execargs` are separate).
#[derive(Debug, Clone)]
pub struct Program {
    /// Path or bare name (looked up in PATH) of the executable.
    pub path: String,
    /// The complete argv, argv[0] included.
    pub argv: Vec<String>,
}

impl Program {
    /// The usual case: argv[0] is also the file to run.
    pub fn from_argv(argv: Vec<String>) -> Result<Self> {
        let path = argv
            .first()
            .cloned()
            .ok_or_else(|| Error::Usage("--exec needs a program".into()))?;
        Ok(Self { path, argv })
    }
}

/// Who is on the other end, as exported to the child.
pub struct PeerEnv {
    /// The client's address.
    pub addr: SocketAddr,
    /// Client certificate subject DN, when one was presented.
    pub subject: Option<String>,
    /// Client certificate issuer DN, when one was presented.
    pub issuer: Option<String>,
}

/// Checks before listening that `argv[0]` names an executable file (directly, or through
/// PATH for a bare name), so a typo fails at start-up rather than on every connection.
pub fn check(program: &Program) -> Result<()> {
    let program = &program.path;
    let found = if program.contains('/') {
        is_executable(std::path::Path::new(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--exec {program}: no such executable file"
        )))
    }
}

/// A regular file with an execute bit set.
pub fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Spawns `argv` for one connection.
pub fn spawn(spec: &Program, peer: &PeerEnv) -> Result<Spawned> {
    let program = &spec.path;
    let (ours, theirs) = StdUnixStream::pair().map_err(spawn_error(program))?;
    for end in [&ours, &theirs] {
        let sock = SockRef::from(end);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    }
    let theirs = OwnedFd::from(theirs);
    let theirs_too = theirs.try_clone().map_err(spawn_error(program))?;
    let mut command = Command::new(program);
    if let Some(arg0) = spec.argv.first() {
        command.arg0(arg0);
    }
    command
        .args(spec.argv.iter().skip(1))
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::from(theirs_too))
        .stderr(Stdio::inherit())
        .env("REMOTE_HOST", peer.addr.ip().to_string())
        .env("REMOTE_PORT", peer.addr.port().to_string());
    if let Some(subject) = &peer.subject {
        command.env("SSL_CLIENT_DN", subject);
    }
    if let Some(issuer) = &peer.issuer {
        command.env("SSL_CLIENT_I_DN", issuer);
    }
    let child = command.spawn().map_err(spawn_error(program))?;
    // The command (and with it the child's copies of the socket) is dropped here, so the
    // child holds the only other end and its exit is our EOF.
    drop(command);
    ours.set_nonblocking(true).map_err(spawn_error(program))?;
    let (output, input) = UnixStream::from_std(ours)
        .map_err(spawn_error(program))?
        .into_split();
    Ok(Spawned {
        child,
        output,
        input,
    })
}

fn spawn_error(program: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Usage(format!("--exec {program}: cannot start: {e}"))
}
