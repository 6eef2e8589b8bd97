//! Exit codes that scripts can rely on, and the mapping from errors to them.

use std::io;
use std::process::ExitCode;

use npipe::ErrorKind;

/// Interrupted by Ctrl-C or SIGTERM (`listen`), as shells report SIGINT.
pub(crate) const INTERRUPTED: u8 = 130;
/// Success.
pub(crate) const SUCCESS: u8 = 0;
/// Any other failure (I/O errors, a failed request in `demo`, ...).
pub(crate) const FAILURE: u8 = 1;
/// Bad usage: unknown flag, invalid value, invalid pipe name, a `call --mode` that
/// is not the pipe's (clap uses 2 too).
pub(crate) const USAGE: u8 = 2;
/// No server has created the pipe.
pub(crate) const NOT_FOUND: u8 = 3;
/// The pipe exists but every instance stayed busy.
pub(crate) const BUSY: u8 = 4;
/// A timeout expired (connect, reply, or `wait`).
pub(crate) const TIMEOUT: u8 = 5;
/// The access policy or the OS refused this user.
pub(crate) const ACCESS_DENIED: u8 = 6;
/// Another live server owns the name (`serve`, `listen`).
pub(crate) const IN_USE: u8 = 7;
/// The server closed the connection without replying: its handler failed (e.g. the
/// `--exec` command of `npipe serve` exited non-zero), a deadline expired, or (byte
/// mode) it sent nothing at all.
pub(crate) const DISCONNECTED: u8 = 8;

/// The table printed in `--help`.
pub(crate) const TABLE: &str = "\
Exit status:
    0  success
    1  other failure (I/O error, a failed request in `demo`, ...)
    2  usage error: bad flag or value, invalid pipe name, a `call --mode` that
       is not the pipe's mode
    3  pipe not found: no server has created it
    4  pipe busy: every instance stayed busy for the whole timeout
    5  timed out (connect, reply, or `wait`)
    6  access denied by the pipe's access policy or the OS
    7  name in use: another live server owns it (`serve`, `listen`)
    8  no reply: the server closed the connection without replying (its handler
       failed, e.g. `serve --exec` exited non-zero, or a deadline expired; in
       byte mode, it sent nothing)
  130  interrupted by Ctrl-C or SIGTERM (`listen`; `serve` stops gracefully with 0)";

/// A usage error found after the command line was parsed (a `call --mode` that is
/// not the pipe's): exit status [`USAGE`].
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Prints what the command-line parser said: help and version go to stdout
/// with status 0, usage errors to stderr with status 2.
pub(crate) fn parse_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    code(match e.exit_code() {
        0 => SUCCESS,
        _ => USAGE,
    })
}

/// Writing to our stdout failed because the reader went away (`npipe list | head`):
/// not an error, the program just stops.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Wraps an error writing to stdout: a broken pipe becomes [`StdoutClosed`].
pub(crate) fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to standard output")
    }
}

/// The exit code for a pipe error kind.
pub(crate) fn code_for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::PipeBusy => BUSY,
        ErrorKind::Timeout => TIMEOUT,
        ErrorKind::AccessDenied => ACCESS_DENIED,
        ErrorKind::AddrInUse => IN_USE,
        ErrorKind::Disconnected => DISCONNECTED,
        ErrorKind::InvalidName => USAGE,
        _ => FAILURE,
    }
}

/// The exit code for an error from `run`: that of the first pipe error in its chain.
pub(crate) fn code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return USAGE;
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return code_for_kind(ErrorKind::of(io));
        }
        if let Some(pipe) = cause.downcast_ref::<npipe::Error>() {
            return code_for_kind(pipe.kind());
        }
    }
    FAILURE
}

/// Turns a code into an `ExitCode`.
pub(crate) fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_errors_map_to_documented_codes() {
        let e: io::Error = npipe::Error::new(ErrorKind::PipeBusy, "busy").into();
        let e = anyhow::Error::new(e).context("calling demo");
        assert_eq!(code_for(&e), BUSY);
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(code_for(&e), NOT_FOUND);
        assert_eq!(code_for(&anyhow::anyhow!("plain")), FAILURE);
    }

    #[test]
    fn every_code_is_in_the_table() {
        for code in [
            SUCCESS,
            FAILURE,
            USAGE,
            NOT_FOUND,
            BUSY,
            TIMEOUT,
            ACCESS_DENIED,
            IN_USE,
            DISCONNECTED,
            INTERRUPTED,
        ] {
            assert!(
                TABLE.contains(&format!("\n  {code:>3}  ")),
                "{code} missing"
            );
        }
    }
}
