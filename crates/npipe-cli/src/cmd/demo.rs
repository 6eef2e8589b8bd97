//! `npipe demo`: a server and client processes in one command.

use std::process::ExitCode;

pub(crate) const AFTER_HELP: &str = "";

/// `npipe demo` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// The hidden client process.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {}

/// Runs `npipe demo`.
pub(crate) fn run(_args: Args, _verbose: u8) -> anyhow::Result<ExitCode> {
    anyhow::bail!("todo")
}

/// Runs one demo client.
pub(crate) fn run_client(_args: ClientArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("todo")
}
