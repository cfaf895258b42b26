//! `sst-tunnel generate man|completions DIR` (hidden): the man page and shell completions,
//! made from the clap definitions so they never drift from the real flags; the packages
//! ship them.

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use clap_complete::Shell;

use crate::error::{Error, Result};

/// `sst-tunnel generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: GenerateWhat,
    /// Directory to write into.
    pub out: PathBuf,
}

/// Generated packaging assets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GenerateWhat {
    /// Man pages (sst-tunnel.1 and one per sub-command).
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

/// Writes what was asked for into `args.out`, from `cli`: the whole command line's
/// definition, handed down by the face (so this tool needs nothing of it but clap's type).
pub fn run(args: GenerateArgs, cli: clap::Command) -> Result<()> {
    let out = &args.out;
    fs::create_dir_all(out).map_err(|e| Error::file_io(out, &e))?;
    match args.what {
        GenerateWhat::Man => man(out, cli),
        GenerateWhat::Completions => {
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let mut command = cli.clone();
                clap_complete::generate_to(shell, &mut command, "sst-tunnel", out)
                    .map_err(|e| Error::file_io(out, &e))?;
            }
            Ok(())
        }
    }
}

/// sst-tunnel.1, plus one page per sub-command (sst-tunnel-connect.1, ...).
fn man(out: &Path, command: clap::Command) -> Result<()> {
    let mut pages = vec![command.clone()];
    pages.extend(
        command
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| {
                // clap wants &'static names without its `string` feature; one page each, once.
                let name: &'static str =
                    Box::leak(format!("sst-tunnel-{}", c.get_name()).into_boxed_str());
                c.clone().name(name)
            }),
    );
    for page in pages {
        let path = out.join(format!("{}.1", page.get_name()));
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut text)
            .map_err(|e| Error::file_io(&path, &e))?;
        fs::write(&path, text).map_err(|e| Error::file_io(&path, &e))?;
    }
    Ok(())
}
