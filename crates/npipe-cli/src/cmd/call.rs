//! `npipe call NAME [MESSAGE | -]`: one request, one reply (CallNamedPipe).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::ModeArg;
use crate::cmd::write_stdout;
use crate::exit;
use crate::units::parse_duration;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe call orders hello             # prints the reply, e.g. \"Response to: hello\"
  echo hello | npipe call orders -    # the request from stdin
  npipe call orders --timeout 500ms ping || echo \"failed with status $?\"
  npipe call raw --mode byte GET      # byte pipe: send, half-close, print all until EOF

The reply is written to stdout as is, followed by a newline unless it ends with one
(or -n is given). Errors go to stderr and set the exit status:
";

/// `npipe call` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name: NAME, \\.\pipe\NAME or @NAME.
    pub(crate) name: String,

    /// The request. Omitted or `-`: read it from stdin until EOF.
    pub(crate) message: Option<String>,

    /// How long the whole call may take: waiting for the pipe to appear or an
    /// instance to be free, sending, and the reply.
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) timeout: Duration,

    /// The pipe's mode. In byte mode the request is sent, the write side is closed,
    /// and everything the server sends until it closes is the reply.
    #[arg(short, long, value_enum, default_value_t = ModeArg::Message)]
    pub(crate) mode: ModeArg,

    /// Require the server to run as this user id; a server run by anybody else
    /// (a squatter that took the name first) is refused with "access denied".
    #[arg(long, value_name = "UID")]
    pub(crate) server_uid: Option<u32>,

    /// Do not add a newline after the reply.
    #[arg(short = 'n', long)]
    pub(crate) no_newline: bool,
}

/// Runs `npipe call`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let request = match args.message.as_deref() {
        None | Some("-") => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .context("reading the request from stdin")?;
            buf
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    // The deadline of the whole call, from before connecting.
    let deadline = Instant::now().checked_add(args.timeout);
    let mut options = npipe::ConnectOptions::new();
    options.mode(args.mode.into()).timeout(args.timeout);
    if let Some(uid) = args.server_uid {
        options.expect_server_uid(uid);
    }
    let reply = match args.mode {
        ModeArg::Message if args.server_uid.is_none() => {
            npipe::call(args.name.as_str(), &request, args.timeout)
        }
        ModeArg::Message => call_message(&options, &args.name, &request, deadline),
        ModeArg::Byte => call_bytes(&options, &args.name, &request, deadline),
    }
    .with_context(|| format!("calling pipe {}", args.name))?;
    let mut out = reply;
    if !args.no_newline && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    write_stdout(&out)?;
    Ok(exit::code(exit::SUCCESS))
}

/// `npipe::call` with connect options (for `--server-uid`), done by `deadline`.
fn call_message(
    options: &npipe::ConnectOptions,
    name: &str,
    request: &[u8],
    deadline: Option<Instant>,
) -> io::Result<Vec<u8>> {
    let mut stream = options.connect(name)?;
    stream.set_deadline(deadline);
    stream.send(request)?;
    let mut reply = Vec::new();
    match stream.recv(&mut reply)? {
        Some(_) => Ok(reply),
        None => Err(npipe::Error::new(
            npipe::ErrorKind::Disconnected,
            "the server closed the connection without replying",
        )
        .into()),
    }
}

/// A transaction on a byte pipe, done by `deadline`: connect, write, half-close,
/// read until EOF.
fn call_bytes(
    options: &npipe::ConnectOptions,
    name: &str,
    request: &[u8],
    deadline: Option<Instant>,
) -> io::Result<Vec<u8>> {
    let mut stream = options.connect(name)?;
    stream.set_deadline(deadline);
    stream.write_all(request)?;
    stream.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(reply),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
