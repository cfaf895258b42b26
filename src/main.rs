//! The `sst-tunnel` binary: decide which command line this is (native, or stunnel/socat by
//! the name it runs under), run it, exit with its status.

use std::process::ExitCode;

use sst_tunnel::cli::Invocation;
use sst_tunnel::{app, frontend};

fn main() -> ExitCode {
    match Invocation::from_env() {
        Invocation::Native(cli) => app::main(*cli),
        Invocation::Stunnel(args) => frontend::stunnel::main(args),
        Invocation::Socat(args) => frontend::socat::main(args),
    }
}
