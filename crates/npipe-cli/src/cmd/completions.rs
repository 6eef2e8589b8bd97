//! `npipe completions SHELL`: print a completion script.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::cmd::write_stdout;
use crate::exit;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe completions bash > ~/.local/share/bash-completion/completions/npipe
  npipe completions zsh > ~/.zfunc/_npipe
  npipe completions fish > ~/.config/fish/completions/npipe.fish";

/// `npipe completions` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell to generate for.
    #[arg(value_enum)]
    pub(crate) shell: Shell,
}

/// Runs `npipe completions`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut public_command(), "npipe", &mut script);
    write_stdout(&script)?;
    Ok(exit::code(exit::SUCCESS))
}

/// The command line without the hidden subcommands (the child processes of `demo`
/// and `bench`), which clap_complete would otherwise offer.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut public = clap::Command::new("npipe").version(env!("CARGO_PKG_VERSION"));
    for arg in full.get_arguments() {
        public = public.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        public = public.subcommand(sub.clone());
    }
    public
}
