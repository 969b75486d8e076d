//! `noise-echo completions SHELL`: a completion script generated from the clap
//! definitions by `clap_complete`, so it always knows every command and flag.

use std::io::Write as _;

use anyhow::Context;

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(super) struct Args {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// The shells `clap_complete` writes scripts for that noise-echo documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

const HELP: &str = "\
Examples:
  noise-echo completions bash > ~/.local/share/bash-completion/completions/noise-echo
  noise-echo completions zsh > ~/.zfunc/_noise-echo     # with fpath+=~/.zfunc
  noise-echo completions fish > ~/.config/fish/completions/noise-echo.fish

Exit statuses:
  0  success (also when the reader closes the output early)
  1  the script could not be written
  2  the command line could not be parsed";

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut super::command_definition(),
        "noise-echo",
        &mut script,
    );
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("cannot write the completion script to standard output")
}
