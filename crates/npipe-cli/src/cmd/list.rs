//! `npipe list`: the pipes in the namespace.

use std::process::ExitCode;

use anyhow::Context;

use crate::cmd::{info, print_json, terminal_safe, write_stdout};
use crate::exit;
use crate::table::table;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe list
  npipe list --json | jq -r '.[] | select(.state == \"stale\") | .address'

Lists the socket files in the pipe directory (/tmp/npipe-*, or $NPIPE_DIR/*) and the
lock files their servers keep, with the owner, the server's pid and process name, and
the mode where the OS tells (another user's process is known by the pid its record
file says). `stale` marks files of a server that died: the next server reclaims them.
Linux abstract @NAME pipes have no file, and pipes named by an absolute socket path
(/run/app/api.sock) live outside the pipe directory: neither is listed; use
`npipe info @NAME` or `npipe info /run/app/api.sock`.";

/// `npipe list` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print a JSON array of the objects `npipe info --json` prints.
    #[arg(long)]
    pub(crate) json: bool,

    /// Only live pipes (hide stale files).
    #[arg(long)]
    pub(crate) live: bool,
}

/// Runs `npipe list`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut pipes = npipe::list().context("listing pipes")?;
    if args.live {
        pipes.retain(npipe::PipeInfo::is_live);
    }
    if args.json {
        let all: Vec<_> = pipes.iter().map(info::to_json).collect();
        print_json(&serde_json::Value::Array(all))?;
        return Ok(exit::code(exit::SUCCESS));
    }
    if pipes.is_empty() {
        eprintln!("no pipes");
        return Ok(exit::code(exit::SUCCESS));
    }
    let rows: Vec<[String; 7]> = pipes
        .iter()
        .map(|p| {
            [
                terminal_safe(&p.name().to_string()).into_owned(),
                p.state().to_string(),
                p.owner_name()
                    .map(|owner| terminal_safe(owner).into_owned())
                    .or_else(|| p.owner_uid().map(|u| u.to_string()))
                    .unwrap_or_else(|| "-".to_owned()),
                p.server_pid()
                    .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
                terminal_safe(p.server_process().unwrap_or("-")).into_owned(),
                p.mode().map_or("-", |m| m.as_str()).to_owned(),
                p.access().map_or("-", |a| a.as_str()).to_owned(),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "OWNER", "PID", "PROCESS", "MODE", "ACCESS"];
    write_stdout(table(&header, &rows).as_bytes())?;
    Ok(exit::code(exit::SUCCESS))
}
