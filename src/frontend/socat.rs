//! `socat ARGS`: every command line goes to the real socat until the front-end lands.

use std::ffi::OsString;
use std::process::ExitCode;

use super::{Unsupported, delegate};
use crate::app;

/// Runs a socat command line (by delegation, for now).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let unsupported = Unsupported {
        location: "command line".into(),
        what: "socat (its front-end is not built yet)".into(),
    };
    let err = delegate("socat", &args, &unsupported);
    app::exit_status("sst-tunnel (socat)", Err(err), |_| 1)
}
