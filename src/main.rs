//! The `sst-tunnel` binary: decide which command line this is (native, or stunnel/socat by
//! the name it runs under), run it, exit with its status.

use std::process::ExitCode;

use sst_tunnel::cli::Invocation;
use sst_tunnel::{app, frontend};

fn main() -> ExitCode {
    match Invocation::from_env() {
        Invocation::Native(cli) => app::main(*cli),
        Invocation::Stunnel(args) => app::run_frontend(frontend::stunnel::launch(args)),
        Invocation::Socat(args) => app::run_frontend(frontend::socat::launch(args)),
    }
}
