//! `npipe send NAME`: connect to a byte pipe and relay stdin/stdout, like `nc`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::exit;
use crate::relay::relay;
use crate::units::parse_duration;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe send chat                     # type lines; the server's bytes appear on stdout
  npipe send upload < file.tar        # stdin's EOF half-closes: the server reads EOF
  echo GET | npipe send web > reply

stdin goes to the pipe and the pipe to stdout, with nothing added. At stdin's EOF the
write side is closed (the server reads EOF) and the output is copied until the server
closes. Pair it with `npipe listen`, or any byte-mode server.";

/// `npipe send` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name.
    pub(crate) name: String,

    /// How long to wait for the pipe to appear or an instance to be free.
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) timeout: Duration,
}

/// Runs `npipe send`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stream = npipe::ConnectOptions::new()
        .mode(npipe::Mode::Byte)
        .timeout(args.timeout)
        .connect(args.name.as_str())
        .with_context(|| format!("connecting to pipe {}", args.name))?;
    if let Ok(peer) = stream.peer_credentials() {
        tracing::info!(pipe = %args.name, server_pid = ?peer.pid(), server_uid = ?peer.uid(), "connected");
    }
    relay(stream)?;
    Ok(exit::code(exit::SUCCESS))
}
