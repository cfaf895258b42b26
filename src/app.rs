//! Runs a parsed command: picks the runtime flavour, dispatches, and turns SIGTERM/SIGINT into
//! [`Error::Signal`] so the exit status says a signal ended the run.

use tokio::runtime::{Builder, Runtime};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::{client, fastpath, selftest, server};

/// Runs `cli.command` to completion or until a terminating signal.
pub fn run(cli: Cli) -> Result<()> {
    fastpath::tune_allocator();
    let runtime = runtime(&cli.command)?;
    let result = runtime.block_on(async {
        // Handlers go in before the command runs, so a signal that arrives right after
        // `listening on` is logged is already ours, not the default (killed by signal).
        let stop = Terminated::install()?;
        tokio::select! {
            signo = stop.recv() => Err(Error::Signal(signo)),
            result = dispatch(cli.command) => result,
        }
    });
    // Do not wait for blocking-pool stdio reads that may never return.
    runtime.shutdown_background();
    result
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Connect(args) => client::run(args).await,
        Command::Listen(args) => server::run(args).await,
        Command::Selftest(args) => selftest::run(args).await,
    }
}

/// One stream needs one thread (and is faster on one); many connections or both selftest
/// ends want every core.
fn runtime(command: &Command) -> Result<Runtime> {
    let multi = match command {
        Command::Listen(args) => args.exec.is_some(),
        Command::Selftest(_) => true,
        Command::Connect(_) => false,
    };
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
