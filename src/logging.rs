//! Log set-up: everything goes to stderr (stdout carries payload or mysqld's protocol), in
//! the words of the front-end or option file in use ([`vocabulary::speak`]).

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::settings::vocabulary;

/// Installs the global subscriber: `RUST_LOG` if set, else `--log-level`, else `info`.
pub fn init(level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Spoken(io::stderr()))
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// stderr, each line rewritten into this run's words. The formatter hands over one whole
/// event per write, so a flag is never split across two writes.
struct Spoken(io::Stderr);

impl Write for Spoken {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(vocabulary::speak(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
