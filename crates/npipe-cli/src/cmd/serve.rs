//! `npipe serve NAME`: a request/response server built on `npipe::Server`.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{AccessArg, ModeArg};
use crate::units::{parse_duration, parse_size_u32};

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe serve orders                  # replies \"Response to: <request>\"
  npipe serve orders --echo -v        # replies with the request; logs connections
  npipe serve upper --exec 'tr a-z A-Z'
  npipe serve shared --access group --instances 16 --idle-timeout 30s

Handlers: none (the original demo server's \"Response to: <request>\"), --echo, or
--exec CMD: CMD runs through `sh -c` for each request, with the request on stdin; its
stdout is the reply. A non-zero exit sends an error reply (`npipe call` exits 9).
Ctrl-C or SIGTERM stops accepting at once, lets requests in flight finish, and prints
the statistics (JSON with --json).";

/// `npipe serve` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name.
    pub(crate) name: String,

    /// Reply with the request unchanged.
    #[arg(long, conflicts_with = "exec")]
    pub(crate) echo: bool,

    /// Run CMD (with `sh -c`) for each request: the request on its stdin, its stdout
    /// is the reply; a non-zero exit sends an error reply.
    #[arg(long, value_name = "CMD")]
    pub(crate) exec: Option<String>,

    /// The pipe's mode.
    #[arg(short, long, value_enum, default_value_t = ModeArg::Message)]
    pub(crate) mode: ModeArg,

    /// At most N clients connected at once, 1..=254 (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=254))]
    pub(crate) instances: Option<u32>,

    /// Listening instances kept ready for bursts of clients.
    #[arg(long, value_name = "N", default_value_t = npipe::DEFAULT_PENDING_INSTANCES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) pending: u32,

    /// Largest request accepted; larger ones are refused before allocation.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_size_u32)]
    pub(crate) max_message: u32,

    /// Close a connection idle this long between requests.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) idle_timeout: Option<Duration>,

    /// Fail a request whose handling takes longer than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) request_timeout: Option<Duration>,

    /// Who may connect.
    #[arg(short, long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,

    /// How long requests in flight may take to finish at shutdown.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub(crate) grace: Duration,

    /// Print the final statistics as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `npipe serve`.
pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("npipe serve: waiting for npipe::Server")
}
