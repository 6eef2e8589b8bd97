//! Windows backend: real named pipes through `windows-sys`.
//!
//! - `NAME` is `\\.\pipe\NAME`. Every handle is opened overlapped so that reads,
//!   writes, connects and accepts can be bounded by timeouts and cancelled.
//! - `\\HOST\pipe\NAME` is that UNC path: a client opens it like a local pipe and
//!   the system's SMB client carries it to HOST (see [`remote_error`] for what can go
//!   wrong on the way). A server creates pipes on this machine only.
//! - Message mode is the native one (`PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE`):
//!   no length prefix on the wire, so npipe talks to any Windows pipe program.
//! - The listener keeps `pending_instances` instances listening ahead, each with a
//!   thread waiting in `ConnectNamedPipe` (the original `PipeManager`'s pool), and
//!   queues connected instances for `accept`.
//! - Security: the pipe's DACL (see `security`), `FILE_FLAG_FIRST_PIPE_INSTANCE`,
//!   `PIPE_REJECT_REMOTE_CLIENTS`, and clients that open with `SECURITY_IDENTIFICATION`
//!   so a server can never act as them.

#![allow(unsafe_code)]

#[cfg(feature = "tokio")]
mod async_io;
#[cfg(feature = "tokio")]
mod async_listener;
#[cfg(feature = "tokio")]
mod async_stream;
mod listener;
mod overlapped;
mod security;
mod stream;

use std::io;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_ACCOUNT_DISABLED, ERROR_ACCOUNT_LOCKED_OUT,
    ERROR_ACCOUNT_RESTRICTION, ERROR_BAD_NETPATH, ERROR_BAD_NET_NAME, ERROR_BAD_PATHNAME,
    ERROR_CONNECTION_REFUSED, ERROR_DEV_NOT_EXIST, ERROR_FILE_NOT_FOUND, ERROR_HOST_UNREACHABLE,
    ERROR_INVALID_NETNAME, ERROR_LOGON_FAILURE, ERROR_NETNAME_DELETED, ERROR_NETWORK_ACCESS_DENIED,
    ERROR_NETWORK_UNREACHABLE, ERROR_NO_NET_OR_BAD_PATH, ERROR_PASSWORD_EXPIRED,
    ERROR_PASSWORD_MUST_CHANGE, ERROR_PATH_NOT_FOUND, ERROR_PORT_UNREACHABLE, ERROR_REM_NOT_LIST,
    ERROR_SEM_TIMEOUT, ERROR_UNEXP_NET_ERR,
};
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;

#[cfg(feature = "tokio")]
pub(crate) use async_listener::AsyncListener;
#[cfg(feature = "tokio")]
pub(crate) use async_stream::{AsyncReadHalf, AsyncStream, AsyncWriteHalf, WRITES_VECTORED};
pub(crate) use listener::Listener;
pub(crate) use stream::Stream;

use crate::error::{err, err_src, fmt_duration, Error, ErrorKind};
use crate::name::{Address, PipeName};

/// A NUL-terminated UTF-16 copy of `s`, for the `W` functions.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The path of a pipe: `\\.\pipe\NAME`, or `\\HOST\pipe\NAME` for a remote one.
pub(crate) fn pipe_path(name: &PipeName) -> io::Result<String> {
    match name.address()? {
        Address::Windows(path) => Ok(path),
        other => Err(err(
            ErrorKind::Unsupported,
            format!("{other} is not a Windows pipe path"),
        )),
    }
}

/// Whether a server has an instance of the pipe right now (`WaitNamedPipe` with a
/// 1 ms timeout: it tells "exists" from "does not" without connecting). For a pipe
/// on another machine, an error when HOST cannot be reached or refuses this user.
pub(crate) fn is_listening(name: &PipeName) -> io::Result<bool> {
    let path = pipe_path(name)?;
    let wide_path = wide(&path);
    // SAFETY: `wide_path` is a NUL-terminated UTF-16 string alive for the call.
    let free = unsafe { WaitNamedPipeW(wide_path.as_ptr(), 1) };
    if free != 0 {
        return Ok(true);
    }
    // SAFETY: reads this thread's last-error value.
    match unsafe { GetLastError() } {
        // Every instance is busy: the server is there.
        ERROR_SEM_TIMEOUT => Ok(true),
        ERROR_FILE_NOT_FOUND | ERROR_BAD_PATHNAME => Ok(false),
        code => Err(name
            .host()
            .and_then(|host| remote_error(host, &path, code))
            .unwrap_or_else(|| io::Error::from_raw_os_error(code as i32))),
    }
}

/// What an error from opening, or waiting for, the pipe `path` on `host` says, for
/// the codes that concern the way to HOST rather than the pipe: `None` for the
/// others (`ERROR_FILE_NOT_FOUND`: no server there has created it; busy...).
///
/// - SMB could not reach HOST: `ErrorKind::Io` with `io::ErrorKind::HostUnreachable`,
///   not `NotFound` (a missing host is not a pipe to wait for), and at once.
///   `ERROR_PATH_NOT_FOUND` is here too: Wine answers it for every `\\HOST\pipe\`
///   path (it has no SMB client for pipes).
/// - HOST would not log this user on, or opening the pipe was refused: `AccessDenied`.
///   A server that rejects remote clients (`PIPE_REJECT_REMOTE_CLIENTS`, npipe's
///   default) refuses with `ERROR_ACCESS_DENIED` whatever its DACL says.
pub(crate) fn remote_error(host: &str, path: &str, code: u32) -> Option<io::Error> {
    let os = io::Error::from_raw_os_error(code as i32);
    match code {
        ERROR_ACCESS_DENIED | ERROR_NETWORK_ACCESS_DENIED => Some(err_src(
            ErrorKind::AccessDenied,
            format!(
                "access to pipe {path} denied: its server does not accept clients from other machines \
                 (npipe's default; a server accepts them with reject_remote_clients(false), \
                 `npipe serve --remote`), or its DACL does not admit the account this user \
                 logs on to {host} as"
            ),
            os,
        )),
        ERROR_LOGON_FAILURE
        | ERROR_ACCOUNT_RESTRICTION
        | ERROR_ACCOUNT_DISABLED
        | ERROR_ACCOUNT_LOCKED_OUT
        | ERROR_PASSWORD_EXPIRED
        | ERROR_PASSWORD_MUST_CHANGE => Some(err_src(
            ErrorKind::AccessDenied,
            format!("cannot open pipe {path}: {host} would not log this user on over SMB"),
            os,
        )),
        ERROR_PATH_NOT_FOUND
        | ERROR_BAD_NETPATH
        | ERROR_BAD_NET_NAME
        | ERROR_REM_NOT_LIST
        | ERROR_DEV_NOT_EXIST
        | ERROR_UNEXP_NET_ERR
        | ERROR_NETNAME_DELETED
        | ERROR_INVALID_NETNAME
        | ERROR_NO_NET_OR_BAD_PATH
        | ERROR_NETWORK_UNREACHABLE
        | ERROR_HOST_UNREACHABLE
        | ERROR_PORT_UNREACHABLE
        | ERROR_CONNECTION_REFUSED => Some(io::Error::new(
            io::ErrorKind::HostUnreachable,
            Error::with_source(
                ErrorKind::Io,
                format!(
                    "cannot reach {host} for pipe {path}: the host is unknown or unreachable, \
                     its SMB server (TCP port 445) does not answer, or this system has no SMB \
                     client for named pipes (Wine has none)"
                ),
                os,
            ),
        )),
        _ => None,
    }
}

/// The names of the pipes on this machine: the entries of `\\.\pipe\`.
pub(crate) fn pipe_names() -> io::Result<Vec<std::ffi::OsString>> {
    let entries = std::fs::read_dir(r"\\.\pipe\")?;
    Ok(entries.flatten().map(|entry| entry.file_name()).collect())
}

/// One transaction (`TransactNamedPipe` on a fresh connection): `npipe::call`.
pub(crate) fn call(name: &PipeName, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let start = std::time::Instant::now();
    let mut stream = Stream::connect(name, crate::ConnectOptions::new().timeout(timeout))?;
    // `transact` bounds the rest of the call by what is left.
    let left = timeout.saturating_sub(start.elapsed());
    if left.is_zero() {
        return Err(err(
            ErrorKind::Timeout,
            format!("no reply within {}", fmt_duration(timeout)),
        ));
    }
    stream.transact(request, left)
}
