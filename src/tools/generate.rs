//! `sst-tunnel generate man|completions DIR` (hidden): the man page and shell completions,
//! made from the clap definitions so they never drift from the real flags; the packages
//! ship them.

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use clap_complete::Shell;

use super::manual;
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

/// sst-tunnel.1, plus one page per sub-command (sst-tunnel-connect.1, ...), each with the
/// sections of [`manual`] after clap's own.
fn man(out: &Path, command: clap::Command) -> Result<()> {
    // No `help` sub-command: its page would not exist, and the top page would name it.
    let command = command.disable_help_subcommand(true);
    let mut pages = vec![("sst-tunnel".to_string(), command.clone())];
    pages.extend(
        command
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| {
                // clap wants &'static names without its `string` feature; one page each, once.
                let name: &'static str =
                    Box::leak(format!("sst-tunnel-{}", c.get_name()).into_boxed_str());
                (c.get_name().to_string(), c.clone().name(name))
            }),
    );
    for (key, page) in pages {
        let path = out.join(format!("{}.1", page.get_name()));
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut text)
            .map_err(|e| Error::file_io(&path, &e))?;
        text.extend(sections(&key).into_bytes());
        fs::write(&path, text).map_err(|e| Error::file_io(&path, &e))?;
    }
    Ok(())
}

/// The roff of the sections clap does not make, for the page of `key` (`sst-tunnel`, or a
/// sub-command's name).
fn sections(key: &str) -> String {
    let mut roff = String::new();
    if !manual::front_end_notes(key).is_empty() {
        let (heading, items) = if key == "stunnel" {
            ("ACCEPTED DIRECTIVES", manual::STUNNEL_DIRECTIVES)
        } else {
            ("ACCEPTED SYNTAX", manual::SOCAT_SUBSET)
        };
        section(&mut roff, heading);
        tagged(&mut roff, items);
        section(&mut roff, "OUTSIDE THE SUBSET");
        paragraph(&mut roff, manual::front_end_notes(key));
    }
    section(&mut roff, "EXIT STATUS");
    if key == "socat" {
        tagged(
            &mut roff,
            &[
                ("0", "The stream ended with close_notify."),
                ("1", "Any failure (the error line says which), as socat."),
            ],
        );
    } else {
        tagged(&mut roff, manual::EXIT_STATUS);
    }
    section(&mut roff, "ENVIRONMENT");
    tagged(&mut roff, manual::ENVIRONMENT);
    section(&mut roff, "EXAMPLES");
    for (what, command) in manual::examples(key) {
        paragraph(&mut roff, what);
        roff.push_str(".RS 4\n.nf\n");
        roff.push_str(&escape(command));
        roff.push_str("\n.fi\n.RE\n");
    }
    section(&mut roff, "SEE ALSO");
    let mut see = Vec::new();
    if key != "sst-tunnel" {
        see.push("sst\\-tunnel(1)".to_string());
    }
    for other in [
        "connect",
        "listen",
        "gen-certs",
        "check",
        "stunnel",
        "socat",
    ] {
        if other != key {
            see.push(format!("sst\\-tunnel\\-{}(1)", escape(other)));
        }
    }
    see.push("sst\\-tunnel\\-switch(8), stunnel(8), socat(1)".into());
    roff.push_str(&see.join(", "));
    roff.push('\n');
    roff
}

fn section(roff: &mut String, heading: &str) {
    roff.push_str(&format!(".SH \"{heading}\"\n"));
}

fn paragraph(roff: &mut String, text: &str) {
    roff.push_str(".PP\n");
    roff.push_str(&escape(text));
    roff.push('\n');
}

/// A list of (term, its meaning), each term in bold.
fn tagged(roff: &mut String, items: &[(&str, &str)]) {
    for (term, meaning) in items {
        roff.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            escape(term),
            escape(meaning)
        ));
    }
}

/// Text as roff reads it literally: backslashes and hyphens escaped, and no line starting
/// with a control character.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
