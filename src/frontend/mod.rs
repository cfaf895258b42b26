//! Drop-in front-ends: the stunnel config files and socat command lines that the stock SST
//! scripts produce, translated into the same client/server plans the native CLI uses. A
//! front-end reads its command line into a [`Launch`]; the face runs it.
//!
//! Each front-end implements the subset the Galera SST scripts use (see the README) with the
//! original tool's semantics. Anything outside that subset is not guessed at: the real tool
//! is run instead when one is installed beside us ([`delegate`]), so other uses of stunnel
//! and socat keep working; otherwise the run fails naming what was not understood.

pub mod socat;
pub mod stunnel;

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::pin::Pin;

use crate::error::{Error, Result};

/// What a front-end's command line asks for, for the face to run.
pub struct Launch {
    /// Names the tool in the one-line error: `sst-tunnel (stunnel)`.
    pub label: &'static str,
    /// The exit status of a failure, by the original tool's conventions.
    pub exit_code: fn(&Error) -> u8,
    /// What to run, or why there is nothing to run.
    pub start: Result<Start>,
}

/// A command line that reads correctly.
pub enum Start {
    /// Already answered (`-version`, `-V`): exit 0.
    Answered,
    /// A tunnel to run.
    Run(Tunnel),
}

/// A tunnel to run, with how its outcome is reported.
pub struct Tunnel {
    /// The tool's log level (from its verbosity settings).
    pub log_level: &'static str,
    /// Many connections at once (a daemon): a multi-threaded runtime.
    pub multi: bool,
    /// The run itself.
    pub work: Pin<Box<dyn Future<Output = Result<()>>>>,
    /// Turns the run's outcome into what is reported (a stunnel daemon stopped by the SST
    /// script's SIGTERM has succeeded, as stock stunnel's does).
    pub settle: fn(Result<()>) -> Result<()>,
}

impl Tunnel {
    /// The outcome as it is.
    pub fn as_is(result: Result<()>) -> Result<()> {
        result
    }
}

/// A part of the input outside what a front-end implements.
#[derive(Debug)]
pub struct Unsupported {
    /// Where it is, worded for a message: `FILE: line N` or `argument 'X'`.
    pub location: String,
    /// What it is: `directive 'output'`, `option 'fork'`.
    pub what: String,
}

/// Where the real tool may live when we have taken its name: Debian's own name for stunnel,
/// a dpkg-divert'ed copy, or the plain name further down PATH.
fn candidates(tool: &str) -> Vec<String> {
    match tool {
        "stunnel" => vec![
            "stunnel4".into(),
            "stunnel.distrib".into(),
            "stunnel".into(),
        ],
        _ => vec![format!("{tool}.distrib"), tool.to_string()],
    }
}

/// Finds the real `tool`: `SST_TUNNEL_REAL_<TOOL>` if set (empty means "there is none"),
/// else the first candidate in PATH that is not this very binary.
pub fn real_tool(tool: &str) -> Option<PathBuf> {
    let override_var = format!("SST_TUNNEL_REAL_{}", tool.to_ascii_uppercase());
    if let Some(value) = std::env::var_os(&override_var) {
        return (!value.is_empty()).then(|| PathBuf::from(value));
    }
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for name in candidates(tool) {
        for dir in &dirs {
            let candidate = dir.join(&name);
            let Ok(real) = candidate.canonicalize() else {
                continue;
            };
            if Some(&real) != me.as_ref() && crate::ends::exec::is_executable(&real) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Replaces this process with the real `tool` run on `args`; returns only on failure, with
/// an error that names what we did not implement.
pub fn delegate(tool: &str, args: &[OsString], unsupported: &Unsupported) -> Error {
    let Some(real) = real_tool(tool) else {
        return Error::Usage(format!(
            "{}: {} is outside what sst-tunnel's {tool} front-end implements, and no real \
             {tool} was found to run it (looked in PATH for {}; SST_TUNNEL_REAL_{} overrides)",
            unsupported.location,
            unsupported.what,
            candidates(tool).join(", "),
            tool.to_ascii_uppercase()
        ));
    };
    eprintln!(
        "sst-tunnel: {}: {} is outside the SST subset; running {} instead",
        unsupported.location,
        unsupported.what,
        real.display()
    );
    let err = std::process::Command::new(&real)
        .arg0(tool)
        .args(args)
        .exec();
    Error::Usage(format!(
        "{}: {} needs the real {tool}, but running {} failed: {err}",
        unsupported.location,
        unsupported.what,
        real.display()
    ))
}
