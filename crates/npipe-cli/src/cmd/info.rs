//! `npipe info NAME`: where a pipe lives and who serves it.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::cmd::{print_json, terminal_safe, write_stdout};
use crate::exit;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe info orders                   # human-readable
  npipe info orders --json | jq -r .address

Never connects: on Linux it reads the socket file, the kernel's list of listening
sockets (sock_diag), /proc/PID and the record file the server keeps beside its socket
(shown only when the record file's owner is the socket's; a live socket without one
was not created by npipe, e.g. a service manager's socket served by `npipe serve`
under socket activation). NAME may be an absolute socket path. The state is
`live` (a server listens on the very socket file now at the path),
`stale` (files of a server that died; the next server reclaims them) or `absent`.
The exit status is 0 whatever the state; 2 for an invalid name.";

/// `npipe info` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name.
    pub(crate) name: String,

    /// Print JSON: name, address, state, live, owner_uid, owner, permissions,
    /// server_pid, server_process, mode, direction, access (null where unknown),
    /// recorded (whether npipe's record file is beside the socket).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `npipe info`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let info = npipe::inspect(args.name.as_str())
        .with_context(|| format!("inspecting pipe {}", args.name))?;
    if args.json {
        print_json(&to_json(&info))?;
    } else {
        write_stdout(to_text(&info).as_bytes())?;
    }
    Ok(exit::code(exit::SUCCESS))
}

/// The JSON object for one pipe (also used by `list --json`).
pub(crate) fn to_json(info: &npipe::PipeInfo) -> serde_json::Value {
    json!({
        "name": info.name().to_string(),
        "address": info.address().to_string(),
        "state": info.state().as_str(),
        "live": info.is_live(),
        "owner_uid": info.owner_uid(),
        "owner": info.owner_name(),
        "permissions": info.permissions().map(|p| format!("{p:04o}")),
        "server_pid": info.server_pid(),
        "server_process": info.server_process(),
        "mode": info.mode().map(|m| m.as_str()),
        "direction": info.direction().map(|d| d.as_str()),
        "access": info.access().map(|a| a.as_str()),
        "recorded": info.is_recorded(),
    })
}

/// `alice (uid 1000)`, `uid 1000`, or `-`.
pub(crate) fn owner_text(info: &npipe::PipeInfo) -> String {
    match (info.owner_name(), info.owner_uid()) {
        (Some(name), Some(uid)) => format!("{name} (uid {uid})"),
        (None, Some(uid)) => format!("uid {uid}"),
        _ => "-".to_owned(),
    }
}

/// `info` as lines for a reader; every field that others choose is escaped
/// ([`terminal_safe`]).
fn to_text(info: &npipe::PipeInfo) -> String {
    let mut out = String::new();
    let state = match info.state() {
        npipe::PipeState::Live => "live (a server is listening)",
        npipe::PipeState::Stale => {
            "stale (files left by a server that is gone; the next server reclaims them)"
        }
        npipe::PipeState::Absent => "absent (no server)",
        _ => info.state().as_str(),
    };
    let _ = writeln!(
        out,
        "name:       {}",
        terminal_safe(&info.name().to_string())
    );
    let _ = writeln!(
        out,
        "address:    {}",
        terminal_safe(&info.address().to_string())
    );
    let _ = writeln!(out, "state:      {state}");
    if let Some(pid) = info.server_pid() {
        match info.server_process() {
            Some(process) => {
                let _ = writeln!(out, "server:     pid {pid} ({})", terminal_safe(process));
            }
            None => {
                let _ = writeln!(out, "server:     pid {pid}");
            }
        }
    }
    if info.owner_uid().is_some() {
        let _ = writeln!(out, "owner:      {}", terminal_safe(&owner_text(info)));
    }
    if let Some(mode) = info.mode() {
        let _ = writeln!(out, "mode:       {}", mode.as_str());
    }
    if let Some(direction) = info.direction() {
        let _ = writeln!(out, "direction:  {}", direction.as_str());
    }
    match (info.access(), info.permissions()) {
        (Some(access), Some(perm)) => {
            let _ = writeln!(
                out,
                "access:     {} (socket mode {perm:04o})",
                access.as_str()
            );
        }
        (Some(access), None) => {
            let _ = writeln!(out, "access:     {}", access.as_str());
        }
        (None, Some(perm)) => {
            let _ = writeln!(out, "access:     socket mode {perm:04o}");
        }
        (None, None) => {}
    }
    if info.is_live() && !info.is_recorded() && matches!(info.address(), npipe::Address::Path(_)) {
        let _ = writeln!(
            out,
            "record:     none: npipe did not create this socket (a service manager's, or another program's); mode and policy unknown"
        );
    }
    out
}
