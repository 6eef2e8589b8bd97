//! The command line: every verb, its flags, and the help text.

use clap::{Parser, Subcommand, ValueEnum};

use crate::cmd;
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  npipe demo                          # a server and 4 client processes, with a summary
  npipe serve orders                  # answer \"Response to: <request>\" until Ctrl-C
  npipe serve orders --echo -v        # echo requests back, log each connection
  npipe serve upper --exec 'tr a-z A-Z'
  npipe call orders 'hello'           # one request, prints the reply
  echo hello | npipe call orders -    # the request from stdin
  npipe listen chat                   # like `nc -l`: a byte pipe, one client
  npipe send chat < file              # like `nc`: stdin to the pipe, the pipe to stdout
  npipe wait orders --timeout 10s && npipe call orders ping
  npipe call '\\\\build-01\\pipe\\orders' hello   # the pipe orders on build-01, through ssh
  npipe forward orders '\\\\build-01\\pipe\\orders' # a local pipe served by that one
  npipe info orders --json            # the socket path, server pid, owner, mode
  npipe list                          # every pipe in the namespace, stale ones flagged
  npipe bench --json > bench.json     # latency, throughput, connect rate
  npipe completions bash > /etc/bash_completion.d/npipe

Names: NAME, \\\\.\\pipe\\NAME, or on Linux @NAME (abstract socket). On Unix NAME is the
socket /tmp/npipe-NAME, or $NPIPE_DIR/NAME when NPIPE_DIR is set, and an absolute path
(/run/app/api.sock) is that socket file, its directory checked as NPIPE_DIR is.
`npipe list` lists the pipe directory only.
\\\\HOST\\pipe\\NAME is pipe NAME on HOST: on Windows through SMB; on Unix reached with
`ssh HOST npipe bridge --handshake NAME` (your ssh config, keys and agent apply; NPIPE_SSH sets the
ssh command, NPIPE_REMOTE_NPIPE the path of npipe on HOST).

Durations: 500ms, 5s, 1.5s, 2m, 1h (a bare number is seconds).
Sizes: 1000, 64KiB (or 64K), 16MiB, 1GiB; KB, MB, GB are powers of 1000.
";

/// Windows named pipes on every OS: serve, call, inspect and benchmark them.
#[derive(Debug, Parser)]
#[command(
    name = "npipe",
    version,
    propagate_version = true,
    after_help = "See `npipe --help` for examples and exit codes.",
    after_long_help = format!("{EXAMPLES}\n{}", exit::TABLE),
)]
pub(crate) struct Cli {
    /// Log more to stderr: -v connections and requests, -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a request/response server until Ctrl-C (the original demo server).
    #[command(after_long_help = cmd::serve::AFTER_HELP)]
    Serve(cmd::serve::Args),
    /// Send one request and print the reply (CallNamedPipe).
    #[command(after_long_help = format!("{}\n{}", cmd::call::AFTER_HELP, exit::TABLE))]
    Call(cmd::call::Args),
    /// Connect to a pipe and copy stdin to it and it to stdout, like `nc`.
    #[command(after_long_help = cmd::send::AFTER_HELP)]
    Send(cmd::send::Args),
    /// Create a byte pipe, accept one client, copy both ways, like `nc -l`.
    #[command(after_long_help = cmd::listen::AFTER_HELP)]
    Listen(cmd::listen::Args),
    /// Show where a pipe lives and who serves it.
    #[command(after_long_help = cmd::info::AFTER_HELP)]
    Info(cmd::info::Args),
    /// List the pipes in the namespace, with owner, server pid and mode.
    #[command(after_long_help = cmd::list::AFTER_HELP)]
    List(cmd::list::Args),
    /// Wait until a server owns the pipe (WaitNamedPipe).
    #[command(after_long_help = cmd::wait::AFTER_HELP)]
    Wait(cmd::wait::Args),
    /// Serve a local pipe whose clients are forwarded to another pipe (\\HOST\pipe\NAME).
    #[command(after_long_help = cmd::forward::AFTER_HELP)]
    Forward(cmd::forward::Args),
    /// Relay stdin/stdout to a pipe on this machine (the far end of \\HOST\pipe\NAME).
    #[command(after_long_help = cmd::bridge::AFTER_HELP)]
    Bridge(cmd::bridge::Args),
    /// Run a server and client processes, show progress, print a summary.
    #[command(after_long_help = cmd::demo::AFTER_HELP)]
    Demo(cmd::demo::Args),
    /// Measure latency, throughput and connection rate across processes.
    #[command(after_long_help = cmd::bench::AFTER_HELP)]
    Bench(cmd::bench::Args),
    /// Print a shell completion script.
    #[command(after_long_help = cmd::completions::AFTER_HELP)]
    Completions(cmd::completions::Args),
    /// A client process of `npipe demo` (internal).
    #[command(name = "__demo-client", hide = true)]
    DemoClient(cmd::demo::ClientArgs),
    /// The server and client processes of `npipe bench` (internal, hidden).
    #[command(flatten)]
    BenchRole(npipe_bench::roles::Role),
}

/// `--mode`: how data is delimited on the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// Boundaries preserved (4-byte little-endian length + payload on Unix).
    Message,
    /// A plain byte stream.
    Byte,
}

impl From<ModeArg> for npipe::Mode {
    fn from(mode: ModeArg) -> npipe::Mode {
        match mode {
            ModeArg::Message => npipe::Mode::Message,
            ModeArg::Byte => npipe::Mode::Byte,
        }
    }
}

/// `--access`: who may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AccessArg {
    /// Only this user (socket mode 0600; Windows: this account and SYSTEM).
    Owner,
    /// This user and its group (0660; Windows: the account's primary group).
    Group,
    /// Every local user (0666; Windows: Authenticated Users).
    Everyone,
}

impl From<AccessArg> for npipe::Access {
    fn from(access: AccessArg) -> npipe::Access {
        match access {
            AccessArg::Owner => npipe::Access::Owner,
            AccessArg::Group => npipe::Access::Group,
            AccessArg::Everyone => npipe::Access::Everyone,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }
}
