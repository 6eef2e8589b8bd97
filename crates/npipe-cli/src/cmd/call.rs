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
(or -n is given). A --mode that is not the one the pipe's server recorded (as
`npipe info` shows it) is a usage error. In byte mode a server that closes without
sending anything has not replied (exit 8). Errors go to stderr and set the exit
status:
";

/// `npipe call` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name: NAME, \\.\pipe\NAME, @NAME, an absolute socket path (Unix) or
    /// \\HOST\pipe\NAME (another machine).
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
    // The whole call is bounded from before connecting.
    let start = Instant::now();
    let mut options = npipe::ConnectOptions::new();
    options.mode(args.mode.into()).timeout(args.timeout);
    if let Some(uid) = args.server_uid {
        options.expect_server_uid(uid);
    }
    check_mode(&args.name, args.mode, args.server_uid)
        .with_context(|| format!("calling pipe {}", args.name))?;
    let reply = match args.mode {
        ModeArg::Message if args.server_uid.is_none() => {
            npipe::call(args.name.as_str(), &request, args.timeout)
        }
        mode => connect(&options, &args.name, start, args.timeout).and_then(|stream| match mode {
            ModeArg::Message => call_message(stream, &request),
            ModeArg::Byte => call_bytes(stream, &request),
        }),
    }
    .with_context(|| format!("calling pipe {}", args.name))?;
    let mut out = reply;
    if !args.no_newline && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    write_stdout(&out)?;
    Ok(exit::code(exit::SUCCESS))
}

/// Refuses a `--mode` that is not the pipe's, as its server recorded it (what
/// `npipe info` shows; pipes without a record, such as `@NAME`, are not checked).
/// A byte request to a message server would be read as a length prefix ("hell"
/// of "hello" announcing 1.8 GB), and a message request to a byte server would
/// wait for a half-close that never comes.
///
/// With `--server-uid`, a record is believed only from that user: a squatter's
/// record must not turn the refusal `--server-uid` promises ("access denied",
/// naming the squatter's uid, from the connection itself) into advice to call the
/// squatter in its mode.
fn check_mode(name: &str, mode: ModeArg, server_uid: Option<u32>) -> anyhow::Result<()> {
    // An invalid or unreachable name is reported by the call itself.
    let Ok(info) = npipe::inspect(name) else {
        return Ok(());
    };
    if server_uid.is_some() && info.owner_uid() != server_uid {
        return Ok(());
    }
    let wanted = npipe::Mode::from(mode);
    match info.mode() {
        Some(served) if info.is_live() && served != wanted => Err(exit::Usage(format!(
            "the pipe serves {} mode, not {} mode: call it with `--mode {}`",
            served.as_str(),
            wanted.as_str(),
            served.as_str()
        ))
        .into()),
        _ => Ok(()),
    }
}

/// Connects with `options` (for `--mode` and `--server-uid`); the stream's
/// every operation must be done `timeout` after `start`.
fn connect(
    options: &npipe::ConnectOptions,
    name: &str,
    start: Instant,
    timeout: Duration,
) -> io::Result<npipe::Stream> {
    let name: npipe::PipeName = name.parse()?;
    let mut stream = options.connect(&name)?;
    // As `npipe::call`: through ssh, the time connecting took (up to
    // `npipe::REMOTE_SETUP`) comes on top of the timeout.
    let login = if name.host().is_some() {
        start.elapsed().min(npipe::REMOTE_SETUP)
    } else {
        Duration::ZERO
    };
    stream.set_deadline(start.checked_add(timeout + login));
    Ok(stream)
}

/// `npipe::call` on a stream connected with connect options (for `--server-uid`).
fn call_message(mut stream: npipe::Stream, request: &[u8]) -> io::Result<Vec<u8>> {
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

/// A transaction on a byte pipe, once connected: write, half-close, read until
/// EOF.
fn call_bytes(mut stream: npipe::Stream, request: &[u8]) -> io::Result<Vec<u8>> {
    let sent = stream
        .write_all(request)
        .and_then(|()| stream.shutdown(Shutdown::Write));
    if let Err(e) = sent {
        if npipe::ErrorKind::of(&e) != npipe::ErrorKind::Disconnected {
            return Err(e);
        }
        // The server closed before reading the request: if its access policy
        // refused this client, its notice waits to be read and says so.
        let mut notice = [0u8; 64];
        let got = stream.read(&mut notice).unwrap_or(0);
        return byte_reply(notice[..got].to_vec(), Some(e));
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return byte_reply(reply, None),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return byte_reply(reply, Some(e)),
        }
    }
}

/// What a byte-mode call received until the server closed (or `error` ended it):
/// the reply, unless the server sent its refusal notice (its access policy
/// refused this client), or nothing at all (no reply: a byte stream cannot tell
/// an empty reply from none).
fn byte_reply(reply: Vec<u8>, error: Option<io::Error>) -> io::Result<Vec<u8>> {
    if reply == npipe::REFUSAL_NOTICE {
        return Err(refused());
    }
    if let Some(e) = error {
        return Err(e);
    }
    if reply.is_empty() {
        return Err(npipe::Error::new(
            npipe::ErrorKind::Disconnected,
            "the server closed the connection without replying (a message-mode server \
             does so when it reads a byte-mode request as an oversized length: if the \
             pipe is in message mode, call it without `--mode byte`)",
        )
        .into());
    }
    Ok(reply)
}

/// The error of a byte-mode client that received the server's refusal notice, in
/// the words of npipe's message clients.
fn refused() -> io::Error {
    #[cfg(unix)]
    let who = {
        let (uid, gid) = crate::sys::current_ids();
        format!(" (uid {uid}, gid {gid})")
    };
    #[cfg(not(unix))]
    let who = "";
    npipe::Error::new(
        npipe::ErrorKind::AccessDenied,
        format!(
            "the server refused this client's credentials{who}: its access policy does not admit them"
        ),
    )
    .into()
}
