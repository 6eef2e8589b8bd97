//! `npipe listen NAME`: create a byte pipe, accept one client, relay stdin/stdout,
//! like `nc -l`.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::AccessArg;
use crate::exit;
use crate::relay::relay;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe listen chat                   # then, elsewhere: npipe send chat
  npipe listen upload > file.tar      # receive a file sent with: npipe send upload < file.tar
  npipe listen shared --access group  # let the group connect too

Creates a byte-mode pipe, waits for one client and removes the name as soon as the
client is accepted (a second `listen` can take it). stdin goes to the client and the
client's bytes to stdout. At stdin's EOF the write side is closed; the command ends
once the client has closed too.";

/// `npipe listen` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name.
    pub(crate) name: String,

    /// Who may connect.
    #[arg(short, long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,
}

/// Runs `npipe listen`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let listener = npipe::ListenerOptions::new()
        .mode(npipe::Mode::Byte)
        .access(args.access.into())
        .pending_instances(1)
        .create(args.name.as_str())
        .with_context(|| format!("creating pipe {}", args.name))?;
    tracing::info!(pipe = %args.name, address = %listener.address(), "listening");
    let stream = listener
        .accept()
        .with_context(|| format!("accepting a client on pipe {}", args.name))?;
    drop(listener);
    if let Ok(peer) = stream.peer_credentials() {
        tracing::info!(pipe = %args.name, client_pid = ?peer.pid(), client_uid = ?peer.uid(), "client connected");
    }
    relay(stream)?;
    Ok(exit::code(exit::SUCCESS))
}
