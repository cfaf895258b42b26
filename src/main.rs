//! The `sst-tunnel` binary: parse, set up logging, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;
use sst_tunnel::cli::Cli;
use sst_tunnel::{app, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level.as_deref());
    match app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sst-tunnel: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
