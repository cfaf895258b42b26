//! Runs what a command line asks for: the native command line ([`main`]) or what a
//! front-end read from its own ([`run_frontend`]). Picks the runtime flavour, turns
//! SIGTERM/SIGINT into [`Error::Signal`] so the exit status says a signal ended the run, and
//! prints the one-line error.

use std::future::Future;
use std::process::ExitCode;

use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{Signal, SignalKind, signal};

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::ends::{client, resume, server};
use crate::error::{Error, Result};
use crate::frontend::{self, Launch, Start};
use crate::settings::vocabulary;
use crate::tools::{doctor, gencerts, generate, selftest};
use crate::{fastpath, logging};

/// How long an ending process lets its resumable streams tell their peers it stopped.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The native command line, start to exit status.
pub fn main(cli: Cli) -> ExitCode {
    if cli.no_ktls {
        fastpath::disable_ktls();
    }
    match cli.command {
        Command::Stunnel(pass) => return run_frontend(frontend::stunnel::launch(pass.args)),
        Command::Socat(pass) => return run_frontend(frontend::socat::launch(pass.args)),
        Command::GenCerts(args) => {
            return exit_status("sst-tunnel", gencerts::run(args), Error::exit_code);
        }
        Command::Check(args) => {
            return exit_status("sst-tunnel", doctor::run(args), Error::exit_code);
        }
        Command::Generate(args) => {
            let result = generate::run(args, Cli::command());
            return exit_status("sst-tunnel", result, Error::exit_code);
        }
        _ => {}
    }
    logging::init(cli.log_level.as_deref());
    if let Err(e) = choose_congestion(cli.congestion.as_deref()) {
        return exit_status("sst-tunnel", Err(e), Error::exit_code);
    }
    let multi = match &cli.command {
        // Many connections, or one stream's stripes on as many cores.
        Command::Listen(args) => args.exec.is_some() || args.streams != 1,
        Command::Connect(args) => args.streams != 1,
        Command::Selftest(_) => true,
        _ => false,
    };
    let result = execute(multi, dispatch(cli.command));
    exit_status("sst-tunnel", result, Error::exit_code)
}

/// Runs what a front-end read from its command line, to its exit status.
pub fn run_frontend(launch: Launch) -> ExitCode {
    let result = match launch.start {
        Ok(Start::Answered) => Ok(()),
        Ok(Start::Run(tunnel)) => {
            logging::init(Some(tunnel.log_level));
            match choose_congestion(None) {
                Ok(()) => (tunnel.settle)(execute(tunnel.multi, tunnel.work)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    exit_status(launch.label, result, launch.exit_code)
}

/// The TCP congestion control for every connection: `--congestion`, else
/// `SST_TUNNEL_CONGESTION` (the front-ends' way to ask), else the kernel's default.
fn choose_congestion(flag: Option<&str>) -> Result<()> {
    match flag {
        Some(name) => crate::net::choose_congestion(name, "--congestion"),
        None => match std::env::var("SST_TUNNEL_CONGESTION") {
            Ok(name) if !name.is_empty() => {
                crate::net::choose_congestion(&name, "SST_TUNNEL_CONGESTION")
            }
            _ => Ok(()),
        },
    }
}

/// Prints a failure as one line on stderr and turns the outcome into an exit status.
fn exit_status(label: &str, result: Result<()>, code: impl Fn(&Error) -> u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Aborted from outside (the SST script's timeout or cleanup): said as what it is,
        // with the exit status a signal gives, not as an error of ours.
        Err(err @ Error::Signal(_)) => {
            eprintln!("{label}: info: {}", vocabulary::speak(&err.to_string()));
            ExitCode::from(code(&err))
        }
        Err(err) => {
            eprintln!("{label}: error: {}", vocabulary::speak(&err.to_string()));
            ExitCode::from(code(&err))
        }
    }
}

/// Runs `work` to completion or until a terminating signal, on a multi-threaded runtime when
/// `multi` (many connections) and on the calling thread otherwise (one stream is faster so).
fn execute(multi: bool, work: impl Future<Output = Result<()>>) -> Result<()> {
    fastpath::tune_allocator();
    let runtime = runtime(multi)?;
    let result = runtime.block_on(async {
        // Handlers go in before the command runs, so a signal that arrives right after
        // `listening on` is logged is already ours, not the default (killed by signal).
        let stop = Terminated::install()?;
        tokio::select! {
            signo = stop.recv() => Err(Error::Signal(signo)),
            result = work => result,
        }
    });
    // A stream that ended early (a signal, a local failure) tells its peer so before the
    // process goes, rather than leave it waiting to resume (bounded: the peer may be gone).
    runtime.block_on(async {
        let _ = tokio::time::timeout(ABORT_GRACE, resume::quiesce()).await;
    });
    // Do not wait for blocking-pool stdio reads that may never return.
    runtime.shutdown_background();
    result
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Connect(args) => client::run(args.into()).await,
        Command::Listen(args) => server::run(args.into()).await,
        Command::Selftest(args) => selftest::run(args).await,
        Command::Stunnel(_)
        | Command::Socat(_)
        | Command::GenCerts(_)
        | Command::Check(_)
        | Command::Generate(_) => Err(Error::Internal(
            "front-ends and tools are dispatched before the runtime".into(),
        )),
    }
}

fn runtime(multi: bool) -> Result<Runtime> {
    let mut builder = if multi {
        Builder::new_multi_thread()
    } else {
        Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))
}

/// SIGTERM and SIGINT, caught from the moment of installation.
struct Terminated {
    term: Signal,
    int: Signal,
}

impl Terminated {
    fn install() -> Result<Self> {
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::Internal(format!("installing a signal handler: {e}")))
        };
        Ok(Self {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
        })
    }

    /// Resolves with the number of the first SIGTERM or SIGINT.
    async fn recv(mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => SignalKind::terminate().as_raw_value(),
            _ = self.int.recv() => SignalKind::interrupt().as_raw_value(),
        }
    }
}
