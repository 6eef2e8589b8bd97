//! `npipe wait NAME`: block until a server owns the pipe (WaitNamedPipe).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::exit;
use crate::units::parse_duration;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe serve orders & npipe wait orders --timeout 10s && npipe call orders ping

Prints nothing. It does not connect (on Linux it asks the kernel which sockets
listen), so the server sees no client. Live means what it means for `info` and
`list`: a server listens on the very socket file now at the pipe's path. Exit status 0 once the pipe is live, 5 when the timeout
expires first, 2 for an invalid name.";

/// `npipe wait` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name.
    pub(crate) name: String,

    /// How long to wait; 0 checks once.
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) timeout: Duration,
}

/// Runs `npipe wait`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    npipe::wait(args.name.as_str(), args.timeout)
        .with_context(|| format!("waiting for pipe {}", args.name))?;
    Ok(exit::code(exit::SUCCESS))
}
