//! Windows backend: real named pipes through `windows-sys`.
//!
//! - `NAME` is `\\.\pipe\NAME`. Every handle is opened overlapped so that reads,
//!   writes, connects and accepts can be bounded by timeouts and cancelled.
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
    GetLastError, ERROR_BAD_PATHNAME, ERROR_FILE_NOT_FOUND, ERROR_SEM_TIMEOUT,
};
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;

#[cfg(feature = "tokio")]
pub(crate) use async_listener::AsyncListener;
#[cfg(feature = "tokio")]
pub(crate) use async_stream::{AsyncReadHalf, AsyncStream, AsyncWriteHalf, WRITES_VECTORED};
pub(crate) use listener::Listener;
pub(crate) use stream::Stream;

use crate::error::{err, fmt_duration, ErrorKind};
use crate::name::{Address, PipeName};

/// A NUL-terminated UTF-16 copy of `s`, for the `W` functions.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The `\\.\pipe\NAME` path of a local pipe.
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
/// 1 ms timeout: it tells "exists" from "does not" without connecting).
pub(crate) fn is_listening(name: &PipeName) -> io::Result<bool> {
    let path = wide(&pipe_path(name)?);
    // SAFETY: `path` is a NUL-terminated UTF-16 string alive for the call.
    let free = unsafe { WaitNamedPipeW(path.as_ptr(), 1) };
    if free != 0 {
        return Ok(true);
    }
    // SAFETY: reads this thread's last-error value.
    match unsafe { GetLastError() } {
        // Every instance is busy: the server is there.
        ERROR_SEM_TIMEOUT => Ok(true),
        ERROR_FILE_NOT_FOUND | ERROR_BAD_PATHNAME => Ok(false),
        code => Err(io::Error::from_raw_os_error(code as i32)),
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
