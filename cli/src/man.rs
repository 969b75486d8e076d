//! `noise-echo man [COMMAND]`: the manual page, in roff, generated from the clap
//! definitions by `clap_mangen`: `noise-echo(1)` or one command's, such as
//! `noise-echo-connect(1)`.

use std::io::Write as _;

use anyhow::Context;

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(super) struct Args {
    /// The command whose page to print (e.g. connect); without it, noise-echo(1)
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
}

const HELP: &str = "\
Examples:
  noise-echo man | man -l -                 # read it now
  noise-echo man connect | man -l -         # noise-echo-connect(1)
  noise-echo man > /usr/local/share/man/man1/noise-echo.1

Exit statuses:
  0  success (also when the reader closes the output early)
  1  no such command, or the page could not be written
  2  the command line could not be parsed";

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let top = super::command_definition();
    let page = match &args.command {
        None => top,
        Some(name) => {
            let names: Vec<String> = top
                .get_subcommands()
                .map(|command| command.get_name().to_owned())
                .filter(|name| name != "help")
                .collect();
            let mut top = top;
            // Built so the subcommand's usage line reads `noise-echo connect ...`.
            top.build();
            let command = top
                .find_subcommand(name)
                .filter(|_| name != "help")
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!("no command '{name}' (one of: {})", names.join(", "))
                })?;
            let page_name = format!("noise-echo-{}", command.get_name());
            command.name(page_name)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("cannot render the manual page")?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&roff)
        .and_then(|()| stdout.flush())
        .context("cannot write the manual page to standard output")
}
