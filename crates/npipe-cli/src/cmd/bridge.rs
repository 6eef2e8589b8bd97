//! `npipe bridge NAME`: relay stdin/stdout to a pipe on this machine. The far
//! end of `\\HOST\pipe\NAME`: an npipe elsewhere runs `ssh HOST npipe bridge
//! --handshake NAME` and talks to the pipe through ssh's stdin and stdout.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cmd::write_stdout;
use crate::exit;
use crate::relay::relay;
use crate::units::parse_duration;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe bridge orders                 # stdin to pipe orders, its bytes to stdout
  ssh build-01 npipe bridge orders    # the same, on build-01, from here
  socat UNIX-LISTEN:/tmp/o.sock EXEC:'ssh build-01 npipe bridge orders'

Connects to the pipe and copies bytes both ways, unchanged: a message pipe's
framing (4-byte little-endian length + payload) passes through end to end. At
stdin's EOF the pipe's write side is closed; at the pipe's EOF, stdout is closed.
It ends when both directions are done, or when the server or stdout's reader
hangs up.

npipe's remote clients (\\\\HOST\\pipe\\NAME) run `npipe bridge --handshake` on
HOST through ssh. With --handshake the first line on stdout says how connecting
went, before the pipe's bytes:
  npipe-bridge 1 ok pid=P uid=U gid=G          (the server process on this machine)
  npipe-bridge 1 error KIND MESSAGE            (KIND: notfound busy denied invalid timeout other)
and on error nothing is written to stderr. The exit status is that of the table in
`npipe --help` (3 not found, 4 busy, 6 access denied, ...).";

/// `npipe bridge` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name on this machine.
    pub(crate) name: String,

    /// Write the handshake line first (what npipe's remote clients read).
    #[arg(long)]
    pub(crate) handshake: bool,

    /// How long to wait for the pipe to appear or an instance to be free.
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) timeout: Duration,
}

/// The first word of a handshake line and the version spoken.
const HANDSHAKE: &str = "npipe-bridge 1";

/// Runs `npipe bridge`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Byte mode whatever the pipe's: the bytes pass through unchanged, framing
    // included, and the client at the far end reads them in its mode.
    let connected = npipe::ConnectOptions::new()
        .mode(npipe::Mode::Byte)
        .timeout(args.timeout)
        .connect(args.name.as_str());
    let stream = match connected {
        Ok(stream) => stream,
        Err(e) if args.handshake => {
            let kind = npipe::ErrorKind::of(&e);
            write_stdout(error_line(kind, &e).as_bytes())?;
            return Ok(exit::code(exit::code_for_kind(kind)));
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to pipe {}", args.name)),
    };
    if args.handshake {
        write_stdout(ok_line(stream.peer_credentials().ok()).as_bytes())?;
    }
    // Under sshd, stdin and stdout are pipes of 64 KiB: larger ones let the relay
    // move a large message in fewer wake-ups.
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        crate::sys::grow_pipe_buffer(io::stdin().as_fd(), 1 << 20);
        crate::sys::grow_pipe_buffer(io::stdout().as_fd(), 1 << 20);
    }
    relay(stream)?;
    Ok(exit::code(exit::SUCCESS))
}

/// `npipe-bridge 1 ok pid=P uid=U gid=G`, with what is known of the server.
fn ok_line(server: Option<npipe::PeerCredentials>) -> String {
    let mut line = format!("{HANDSHAKE} ok");
    if let Some(server) = server {
        for (key, value) in [
            ("pid", server.pid()),
            ("uid", server.uid()),
            ("gid", server.gid()),
        ] {
            if let Some(value) = value {
                line.push_str(&format!(" {key}={value}"));
            }
        }
    }
    line.push('\n');
    line
}

/// `npipe-bridge 1 error KIND MESSAGE`, the message on one line.
fn error_line(kind: npipe::ErrorKind, error: &io::Error) -> String {
    let word = match kind {
        npipe::ErrorKind::NotFound => "notfound",
        npipe::ErrorKind::PipeBusy => "busy",
        npipe::ErrorKind::AccessDenied => "denied",
        npipe::ErrorKind::InvalidName => "invalid",
        npipe::ErrorKind::Timeout => "timeout",
        _ => "other",
    };
    let message = error.to_string().replace(['\r', '\n'], " ");
    format!("{HANDSHAKE} error {word} {message}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_lines() {
        let server = None;
        assert_eq!(ok_line(server), "npipe-bridge 1 ok\n");
        let e: io::Error = npipe::Error::new(npipe::ErrorKind::PipeBusy, "all\nbusy").into();
        assert_eq!(
            error_line(npipe::ErrorKind::PipeBusy, &e),
            "npipe-bridge 1 error busy all busy\n"
        );
    }
}
