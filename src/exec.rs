//! Running the per-connection program of `listen --exec` (the joiner's `rsync --daemon`).
//!
//! The child gets the decrypted stream on stdin/stdout, our stderr, and our environment plus
//! the four variables stunnel sets, so scripts written for stunnel see the same values.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Stdio;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::error::{Error, Result};
use crate::fastpath;

/// A spawned connection handler.
pub struct Spawned {
    /// The process, for waiting on its exit status.
    pub child: Child,
    /// Its standard input: the stream from the peer goes here.
    pub stdin: ChildStdin,
    /// Its standard output: this goes to the peer.
    pub stdout: ChildStdout,
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

/// Spawns `argv` for one connection.
pub fn spawn(argv: &[String], peer: &PeerEnv) -> Result<Spawned> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Usage("--exec needs a program".into()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("REMOTE_HOST", peer.addr.ip().to_string())
        .env("REMOTE_PORT", peer.addr.port().to_string());
    if let Some(subject) = &peer.subject {
        command.env("SSL_CLIENT_DN", subject);
    }
    if let Some(issuer) = &peer.issuer {
        command.env("SSL_CLIENT_I_DN", issuer);
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::Usage(format!("--exec {program}: cannot start: {e}")))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Internal("child pipes missing".into()));
    };
    fastpath::enlarge_pipe(stdin.as_fd());
    fastpath::enlarge_pipe(stdout.as_fd());
    Ok(Spawned {
        child,
        stdin,
        stdout,
    })
}
