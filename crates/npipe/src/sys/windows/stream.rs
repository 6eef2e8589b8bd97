//! A connected pipe end: overlapped `ReadFile`/`WriteFile` with timeouts, native
//! message mode with `ERROR_MORE_DATA`, and the client's connect loop.

use std::io;
use std::net::Shutdown;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_PARAMETER, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_PIPE_BUSY,
    ERROR_PIPE_NOT_CONNECTED, ERROR_SEM_TIMEOUT, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FlushFileBuffers, ReadFile, WriteFile, FILE_FLAG_OVERLAPPED, FILE_READ_ATTRIBUTES,
    FILE_WRITE_ATTRIBUTES, OPEN_EXISTING, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    DisconnectNamedPipe, GetNamedPipeClientProcessId, GetNamedPipeServerProcessId, PeekNamedPipe,
    SetNamedPipeHandleState, TransactNamedPipe, WaitNamedPipeW, PIPE_READMODE_MESSAGE,
};

use super::listener::Slot;
use super::overlapped::{millis, run, Done, Event, Timeout};
use super::{pipe_path, remote_error, wide};
use crate::error::{err, err_src, fmt_duration, ErrorKind};
use crate::frame::{encode_header, growth, Cap, Received};
use crate::name::PipeName;
use crate::options::{ConnectOptions, Direction, Mode};
use crate::peer::PeerCredentials;

/// The first read of a message asks for at least this much (and at most
/// [`MAX_FIRST_READ`], or the buffer's capacity in between); a longer message is
/// reported with `ERROR_MORE_DATA` and read in a second call once its size is known.
const FIRST_READ: usize = 4 * 1024;
const MAX_FIRST_READ: usize = 1024 * 1024;

/// Byte-mode `recv` delivers up to this much per call, like the Unix backend.
const BYTE_RECV: usize = 64 * 1024;

/// Byte-mode writes are issued in chunks no larger than this (a `WriteFile` length is
/// a `u32`).
const WRITE_CHUNK: usize = 1 << 30;

/// Stack size of the threads that disconnect dropped server ends.
const CLOSER_STACK: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Stream {
    /// Declared before `slot`: the instance handle is closed before the slot tells
    /// the listener that the instance is free.
    pipe: OwnedHandle,
    event: Event,
    mode: Mode,
    /// Which directions it may use, and which are shut down.
    state: EndState,
    /// The maximum message size, and the refusal of a message over it.
    cap: Cap,
    /// Part of a message has been delivered; the next read returns the rest of it.
    in_message: bool,
    read_timeout: Timeout,
    write_timeout: Timeout,
    /// Set by `set_deadline`: every read and write must end by then.
    deadline: Option<Instant>,
    slot: Option<Slot>,
}

/// What one `ReadFile` produced.
enum Got {
    Data { len: usize, more: bool },
    Eof,
}

impl Stream {
    pub(crate) fn from_accepted(
        pipe: OwnedHandle,
        mode: Mode,
        direction: Direction,
        max_message: u32,
        slot: Slot,
    ) -> io::Result<Stream> {
        Ok(Stream {
            pipe,
            event: Event::new()?,
            mode,
            state: EndState::server(direction),
            cap: Cap::new(max_message),
            in_message: false,
            read_timeout: Timeout::none(),
            write_timeout: Timeout::none(),
            deadline: None,
            slot: Some(slot),
        })
    }

    /// Connects (`CreateFile`, with `WaitNamedPipe` while every instance is busy),
    /// then sets the read mode (`SetNamedPipeHandleState`).
    pub(crate) fn connect(name: &PipeName, opts: &ConnectOptions) -> io::Result<Stream> {
        let client = open_client(name, opts)?;
        Ok(Stream {
            pipe: client.pipe,
            event: Event::new()?,
            mode: opts.mode,
            state: client.state,
            cap: Cap::new(opts.max_message_size),
            in_message: false,
            read_timeout: Timeout::none(),
            write_timeout: Timeout::none(),
            deadline: None,
            slot: None,
        })
    }
}

/// A client end fresh from `CreateFile`, in the requested read mode.
#[derive(Debug)]
pub(crate) struct ClientEnd {
    pub(crate) pipe: OwnedHandle,
    pub(crate) state: EndState,
}

/// Connects (`CreateFile`, with `WaitNamedPipe` while every instance is busy),
/// then sets the read mode (`SetNamedPipeHandleState`).
pub(crate) fn open_client(name: &PipeName, opts: &ConnectOptions) -> io::Result<ClientEnd> {
    let path = pipe_path(name)?;
    if let Some(uid) = opts.expect_server_uid {
        return Err(err(
                ErrorKind::Unsupported,
                format!(
                    "expect_server_uid({uid}) names a Unix user id; Windows pipes are protected by their DACL instead"
                ),
            ));
    }
    // Client directions are named as the server sees them.
    let can_read = opts.direction.server_writes();
    let can_write = opts.direction.server_reads();
    let (pipe, granted_read, granted_write) =
        open_waiting(&path, name.host(), can_read, can_write, opts.timeout)?;
    if opts.mode == Mode::Message {
        let mode = PIPE_READMODE_MESSAGE;
        // SAFETY: `pipe` is a live pipe handle; `mode` outlives the call; the
        // collection parameters are unused (null).
        let ok = unsafe {
            SetNamedPipeHandleState(pipe.as_raw_handle(), &mode, ptr::null(), ptr::null())
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
                return Err(err_src(
                        ErrorKind::InvalidData,
                        format!(
                            "pipe {path} is a byte pipe: it cannot be read in message mode (connect with Mode::Byte)"
                        ),
                        e,
                    ));
            }
            return Err(e);
        }
    }
    Ok(ClientEnd {
        pipe,
        state: EndState {
            is_server: false,
            can_read,
            can_write,
            // A duplex client of a one-way pipe: as on Unix, reads find the end of
            // the stream (the server never writes) or writes find nobody reading.
            read_shut: AtomicBool::new(can_read && !granted_read),
            write_shut: AtomicBool::new(can_write && !granted_write),
        },
    })
}

impl Stream {
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.state.is_server
    }

    pub(crate) fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.state.check_write()?;
        match self.mode {
            Mode::Message => {
                // Refused before anything is written.
                encode_header(message.len(), self.cap.max())?;
                let sent = self.write_once(message)?;
                if sent != message.len() {
                    return Err(err(
                        ErrorKind::Io,
                        format!(
                            "the system wrote {sent} of the {} bytes of a message",
                            message.len()
                        ),
                    ));
                }
                Ok(())
            }
            Mode::Byte => {
                let mut sent = 0;
                while sent < message.len() {
                    let end = message.len().min(sent + WRITE_CHUNK);
                    sent += self.write_once(&message[sent..end])?;
                }
                Ok(())
            }
        }
    }

    pub(crate) fn recv(&mut self, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.state.check_read()?;
        out.clear();
        if self.state.read_shut() {
            return Ok(None);
        }
        let timeout = self.read_timeout.millis();
        if self.mode == Mode::Byte {
            out.reserve(BYTE_RECV);
            loop {
                match self.read_spare(out, BYTE_RECV, timeout)? {
                    Got::Data { len: 0, .. } => continue,
                    Got::Data { len, .. } => return Ok(Some(len)),
                    Got::Eof => return Ok(None),
                }
            }
        }
        self.cap.check()?;
        let at_start = !self.in_message;
        let mut want = out.capacity().clamp(FIRST_READ, MAX_FIRST_READ);
        if at_start {
            // A message that fills the cap exactly still fits; one byte more is
            // reported as more data and refused below, before any allocation.
            want = want.min(self.cap.max() as usize);
        }
        loop {
            out.reserve_exact(want);
            match self.read_spare(out, want, timeout)? {
                Got::Data { more: false, .. } => {
                    self.in_message = false;
                    return Ok(Some(out.len()));
                }
                Got::Data { more: true, .. } => {
                    self.in_message = true;
                    let left = self.left_this_message()?;
                    if at_start {
                        self.cap.admit(out.len() + left.max(1))?;
                    }
                    want = next_read(out, left);
                }
                Got::Eof => {
                    return if out.is_empty() && !self.in_message {
                        Ok(None)
                    } else {
                        Err(self.cut_off(out.len()))
                    };
                }
            }
        }
    }

    pub(crate) fn recv_into(&mut self, out: &mut [u8]) -> io::Result<Option<Received>> {
        self.state.check_read()?;
        if self.state.read_shut() {
            return Ok(None);
        }
        let timeout = self.read_timeout.millis();
        if self.mode == Mode::Byte {
            if out.is_empty() {
                return Ok(Some(Received::new(0, false)));
            }
            loop {
                match self.read_raw(out.as_mut_ptr(), out.len(), timeout)? {
                    Got::Data { len: 0, .. } => continue,
                    Got::Data { len, .. } => return Ok(Some(Received::new(len, false))),
                    Got::Eof => return Ok(None),
                }
            }
        }
        self.cap.check()?;
        let at_start = !self.in_message;
        match self.read_raw(out.as_mut_ptr(), out.len(), timeout)? {
            Got::Data { len, more } => {
                if at_start {
                    let left = if more {
                        self.left_this_message()?.max(1)
                    } else {
                        0
                    };
                    self.cap.admit(len + left)?;
                }
                self.in_message = more;
                Ok(Some(Received::new(len, more)))
            }
            Got::Eof if self.in_message => Err(self.cut_off(0)),
            Got::Eof => Ok(None),
        }
    }

    pub(crate) fn peek(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.state.check_read()?;
        if self.mode == Mode::Message {
            self.cap.check()?;
        }
        peek_pipe(self.pipe.as_handle(), out)
    }

    pub(crate) fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.state.check_read()?;
        if self.state.read_shut() || out.is_empty() {
            return Ok(0);
        }
        if self.mode == Mode::Message {
            self.cap.check()?;
        }
        let timeout = self.read_timeout.millis();
        loop {
            let at_start = !self.in_message;
            match self.read_raw(out.as_mut_ptr(), out.len(), timeout)? {
                // A zero-length message carries no bytes for `Read`.
                Got::Data {
                    len: 0,
                    more: false,
                } => self.in_message = false,
                Got::Data { len, more } => {
                    if at_start && self.mode == Mode::Message {
                        let left = if more {
                            self.left_this_message()?.max(1)
                        } else {
                            0
                        };
                        self.cap.admit(len + left)?;
                    }
                    self.in_message = more;
                    return Ok(len);
                }
                Got::Eof if self.in_message => return Err(self.cut_off(0)),
                Got::Eof => return Ok(0),
            }
        }
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send(data)?;
        Ok(data.len())
    }

    /// The slices gathered into one write: one message in message mode.
    pub(crate) fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match bufs {
            [one] => self.write(one),
            _ => self.write(
                &bufs
                    .iter()
                    .flat_map(|buf| buf.iter().copied())
                    .collect::<Vec<u8>>(),
            ),
        }
    }

    /// See [`EndState::shutdown`].
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.state.shutdown(self.pipe.as_handle(), how)
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(timeout)
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(timeout)
    }

    /// Every later read and write must end by `deadline` (`None`: no deadline).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// A wait of `timeout_ms` (a read or write timeout, or `INFINITE`) cut to the
    /// time left before the deadline, for one `ReadFile` or `WriteFile`: each is
    /// given what is left, so the deadline bounds an operation of many.
    fn bounded(&self, timeout_ms: u32) -> io::Result<u32> {
        let Some(deadline) = self.deadline else {
            return Ok(timeout_ms);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(err(ErrorKind::Timeout, "the deadline has passed"));
        }
        Ok(timeout_ms.min(millis(left)))
    }

    /// The peer's process id (`GetNamedPipeClientProcessId` on the server end,
    /// `GetNamedPipeServerProcessId` on the client end). Windows has no uid or gid.
    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        peer_credentials(self.pipe.as_handle(), self.state.is_server)
    }

    /// Sends `request` and receives the reply in one `TransactNamedPipe`.
    pub(crate) fn transact(&mut self, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
        self.state.check_write()?;
        self.state.check_read()?;
        if self.mode != Mode::Message {
            return Err(err(
                ErrorKind::Unsupported,
                "a transaction needs a message pipe",
            ));
        }
        encode_header(request.len(), self.cap.max())?;
        let deadline = Instant::now() + timeout;
        let want = FIRST_READ.min(self.cap.max() as usize);
        let mut reply = Vec::with_capacity(want);
        let spare = reply.spare_capacity_mut();
        let reply_ptr = spare.as_mut_ptr().cast::<u8>();
        let raw = self.pipe.as_raw_handle();
        // SAFETY: the request is readable and the reply's spare capacity writable for
        // the lengths given, both until `run` returns (it waits for completion).
        let done = unsafe {
            run(
                self.pipe.as_handle(),
                &self.event,
                millis(timeout),
                None,
                |ov| {
                    TransactNamedPipe(
                        raw,
                        request.as_ptr().cast(),
                        request.len() as u32,
                        reply_ptr.cast(),
                        want as u32,
                        ptr::null_mut(),
                        ov,
                    )
                },
            )
        };
        let (len, more) = match done {
            Done::Ok(n) => (n as usize, false),
            Done::Err {
                code: ERROR_MORE_DATA,
                transferred,
            } => (transferred as usize, true),
            Done::Err { code, .. } if is_disconnect(code) => {
                return Err(err(
                    ErrorKind::Disconnected,
                    "the server closed the connection without replying",
                ))
            }
            Done::TimedOut | Done::Stopped => {
                return Err(err(
                    ErrorKind::Timeout,
                    format!("no reply within {}", fmt_duration(timeout)),
                ))
            }
            Done::Err { code, .. } => return Err(io::Error::from_raw_os_error(code as i32)),
        };
        // SAFETY: the system wrote `len` (<= `want`) bytes into the spare capacity.
        unsafe { reply.set_len(len) };
        if !more {
            return Ok(reply);
        }
        self.in_message = true;
        let left = self.left_this_message()?;
        self.cap.admit(len + left.max(1))?;
        let mut want = next_read(&reply, left);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(err(
                    ErrorKind::Timeout,
                    format!("no whole reply within {}", fmt_duration(timeout)),
                ));
            }
            let wait = millis(left);
            reply.reserve_exact(want);
            match self.read_spare(&mut reply, want, wait)? {
                Got::Data { more: false, .. } => {
                    self.in_message = false;
                    return Ok(reply);
                }
                Got::Data { more: true, .. } => {
                    let left = self.left_this_message()?;
                    self.cap.admit(reply.len() + left.max(1))?;
                    want = next_read(&reply, left);
                }
                Got::Eof => return Err(self.cut_off(reply.len())),
            }
        }
    }

    /// One `WriteFile`, bounded by the write timeout.
    fn write_once(&self, data: &[u8]) -> io::Result<usize> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let raw = self.pipe.as_raw_handle();
        let timeout = self.bounded(self.write_timeout.millis())?;
        // SAFETY: `data` is readable for `len` bytes until `run` returns.
        let done = unsafe {
            run(self.pipe.as_handle(), &self.event, timeout, None, |ov| {
                WriteFile(raw, data.as_ptr(), len, ptr::null_mut(), ov)
            })
        };
        match done {
            Done::Ok(n) => Ok(n as usize),
            Done::Err { code, .. } if is_disconnect(code) => Err(err_src(
                ErrorKind::Disconnected,
                "the other end closed the connection or does not read (an outbound pipe)",
                io::Error::from_raw_os_error(code as i32),
            )),
            Done::TimedOut | Done::Stopped => Err(err(
                ErrorKind::Timeout,
                format!(
                    "write timed out after {}",
                    fmt_duration(Duration::from_millis(timeout.into()))
                ),
            )),
            Done::Err { code, .. } => Err(io::Error::from_raw_os_error(code as i32)),
        }
    }

    /// One `ReadFile` into `len` bytes at `buf`, bounded by `timeout_ms` and the
    /// deadline.
    fn read_raw(&self, buf: *mut u8, len: usize, timeout_ms: u32) -> io::Result<Got> {
        let timeout_ms = self.bounded(timeout_ms)?;
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let raw = self.pipe.as_raw_handle();
        // SAFETY: callers pass a buffer writable for `len` bytes that outlives this
        // call, and `run` returns only once the system is done with it.
        let done = unsafe {
            run(self.pipe.as_handle(), &self.event, timeout_ms, None, |ov| {
                ReadFile(raw, buf, len, ptr::null_mut(), ov)
            })
        };
        match done {
            Done::Ok(n) => Ok(Got::Data {
                len: n as usize,
                more: false,
            }),
            Done::Err {
                code: ERROR_MORE_DATA,
                transferred,
            } => Ok(Got::Data {
                len: transferred as usize,
                more: true,
            }),
            Done::Err { code, .. } if is_disconnect(code) => Ok(Got::Eof),
            Done::TimedOut | Done::Stopped => Err(err(
                ErrorKind::Timeout,
                format!(
                    "read timed out after {}",
                    fmt_duration(Duration::from_millis(timeout_ms.into()))
                ),
            )),
            Done::Err { code, .. } => Err(io::Error::from_raw_os_error(code as i32)),
        }
    }

    /// `read_raw` into `want` bytes of `out`'s spare capacity, extending `out`.
    fn read_spare(&self, out: &mut Vec<u8>, want: usize, timeout_ms: u32) -> io::Result<Got> {
        let spare = out.spare_capacity_mut();
        let want = want.min(spare.len());
        let got = self.read_raw(spare.as_mut_ptr().cast(), want, timeout_ms)?;
        if let Got::Data { len, .. } = got {
            debug_assert!(len <= want);
            // SAFETY: ReadFile initialised the first `len` (<= `want`) spare bytes.
            unsafe { out.set_len(out.len() + len.min(want)) };
        }
        Ok(got)
    }

    /// Bytes of the current message not read yet (`PeekNamedPipe`'s
    /// `lpBytesLeftThisMessage`), after a read reported `ERROR_MORE_DATA`.
    fn left_this_message(&self) -> io::Result<usize> {
        left_this_message(self.pipe.as_handle())
    }

    fn cut_off(&self, got: usize) -> io::Error {
        err(
            ErrorKind::Disconnected,
            format!(
                "the peer closed the connection in the middle of a message (after {got} bytes)"
            ),
        )
    }
}

impl AsHandle for Stream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.pipe.as_handle()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.state.disconnects_on_drop() {
            disconnect_in_background(&self.pipe, self.slot.take());
        }
    }
}

/// What an end may do and has been told: the directions it was opened for, and
/// which it has shut down. The blocking [`Stream`] and the async end (whose two
/// halves share it) follow the same rules.
#[derive(Debug)]
pub(crate) struct EndState {
    pub(crate) is_server: bool,
    can_read: bool,
    can_write: bool,
    read_shut: AtomicBool,
    write_shut: AtomicBool,
}

impl EndState {
    /// A server end fresh from `ConnectNamedPipe`.
    pub(crate) fn server(direction: Direction) -> EndState {
        EndState {
            is_server: true,
            can_read: direction.server_reads(),
            can_write: direction.server_writes(),
            read_shut: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
        }
    }

    pub(crate) fn check_read(&self) -> io::Result<()> {
        if self.can_read {
            Ok(())
        } else {
            Err(crate::error::one_way_error(self.is_server, false))
        }
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        if !self.can_write {
            return Err(crate::error::one_way_error(self.is_server, true));
        }
        if self.write_shut.load(Ordering::Relaxed) {
            return Err(err(
                ErrorKind::Disconnected,
                "this end of the pipe cannot write: it was shut down, or the server does not read (an outbound pipe)",
            ));
        }
        Ok(())
    }

    /// Whether reads end here (`shutdown`, or a pipe that never writes to us).
    pub(crate) fn read_shut(&self) -> bool {
        self.read_shut.load(Ordering::Relaxed)
    }

    /// Whether a dropped server end must still disconnect its client (it was not
    /// shut down).
    pub(crate) fn disconnects_on_drop(&self) -> bool {
        self.is_server && !self.write_shut.load(Ordering::Relaxed)
    }

    /// Windows pipes cannot half-close. The server end flushes (waits until the
    /// client has read everything) and disconnects the client; the client end
    /// stops reading and writing at once and closes its handle when dropped.
    pub(crate) fn shutdown(&self, pipe: BorrowedHandle<'_>, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Write {
            self.read_shut.store(true, Ordering::Relaxed);
        }
        if how == Shutdown::Read {
            return Ok(());
        }
        let already = self.write_shut.swap(true, Ordering::Relaxed);
        if !self.is_server || already {
            return Ok(());
        }
        disconnect_server(pipe, self.can_write)
    }
}

/// The peer's process id (`GetNamedPipeClientProcessId` on the server end,
/// `GetNamedPipeServerProcessId` on the client end). Windows has no uid or gid.
pub(crate) fn peer_credentials(
    pipe: BorrowedHandle<'_>,
    is_server: bool,
) -> io::Result<PeerCredentials> {
    let mut pid = 0u32;
    // SAFETY: `pipe` is a live pipe handle and `pid` a valid place for the result.
    let ok = unsafe {
        if is_server {
            GetNamedPipeClientProcessId(pipe.as_raw_handle(), &mut pid)
        } else {
            GetNamedPipeServerProcessId(pipe.as_raw_handle(), &mut pid)
        }
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials::new(
        Some(pid).filter(|p| *p != 0),
        None,
        None,
    ))
}

/// How much the next read of a message may take once `out` holds what has been
/// read of it and `left` bytes are still to come (`PeekNamedPipe`'s count, 0 if
/// the system does not say): the room `out` already has, or the growth that the
/// bytes received so far allow ([`growth`]), never the whole of `left` at once.
/// Whether `left` counts bytes that have arrived or only bytes a writer has
/// announced, memory then follows what was actually read.
fn next_read(out: &Vec<u8>, left: usize) -> usize {
    let left = if left == 0 { FIRST_READ } else { left };
    let room = out.capacity() - out.len();
    left.min(room.max(growth(out.len(), left)))
}

/// Copies what has arrived of the next message (or the next bytes) without
/// consuming it (`PeekNamedPipe`, which never blocks); 0 when nothing has arrived
/// or the peer is gone.
pub(crate) fn peek_pipe(pipe: BorrowedHandle<'_>, out: &mut [u8]) -> io::Result<usize> {
    let mut read = 0u32;
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
    // SAFETY: `out` is writable for `len` bytes; PeekNamedPipe copies at most `len`
    // bytes (of one message, on a message pipe).
    let ok = unsafe {
        PeekNamedPipe(
            pipe.as_raw_handle(),
            out.as_mut_ptr().cast(),
            len,
            &mut read,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        // SAFETY: reads this thread's last-error value.
        return match unsafe { GetLastError() } {
            code if is_disconnect(code) => Ok(0),
            code => Err(io::Error::from_raw_os_error(code as i32)),
        };
    }
    Ok(read as usize)
}

/// Bytes of the current message not read yet (`PeekNamedPipe`'s
/// `lpBytesLeftThisMessage`), after a read reported `ERROR_MORE_DATA`.
pub(crate) fn left_this_message(pipe: BorrowedHandle<'_>) -> io::Result<usize> {
    let mut left = 0u32;
    // SAFETY: `pipe` is live; no buffer is passed, only the count is written.
    let ok = unsafe {
        PeekNamedPipe(
            pipe.as_raw_handle(),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            &mut left,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(left as usize)
}

/// Waits until the client has read everything sent (`FlushFileBuffers`, skipped for
/// an end that cannot write), then disconnects it (`DisconnectNamedPipe`).
pub(crate) fn disconnect_server(pipe: BorrowedHandle<'_>, can_write: bool) -> io::Result<()> {
    // SAFETY: `pipe` is a live server end. FlushFileBuffers blocks until the client
    // has read what was written, so DisconnectNamedPipe discards nothing.
    let flushed = !can_write || unsafe { FlushFileBuffers(pipe.as_raw_handle()) } != 0;
    if !flushed {
        // SAFETY: reads this thread's last-error value.
        let code = unsafe { GetLastError() };
        if !is_disconnect(code) {
            return Err(io::Error::from_raw_os_error(code as i32));
        }
    }
    // SAFETY: `pipe` is the server end of a pipe instance.
    if unsafe { DisconnectNamedPipe(pipe.as_raw_handle()) } == 0 {
        // SAFETY: reads this thread's last-error value.
        let code = unsafe { GetLastError() };
        if is_disconnect(code) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the client had already disconnected",
            ));
        }
        return Err(io::Error::from_raw_os_error(code as i32));
    }
    Ok(())
}

/// For a server end dropped without an explicit disconnect: a thread waits until the
/// client has read everything (closing a pipe end discards nothing, but a closed
/// instance still counts against `max_instances` until its client closes too), then
/// disconnects the client so the instance is freed at once, then frees the slot.
pub(crate) fn disconnect_in_background(pipe: &OwnedHandle, slot: Option<Slot>) {
    let Ok(pipe) = pipe.try_clone() else {
        return;
    };
    let closer = thread::Builder::new()
        .name("npipe-disconnect".into())
        .stack_size(CLOSER_STACK)
        .spawn(move || {
            // SAFETY: `pipe` is a duplicate of the server end, owned here.
            unsafe {
                FlushFileBuffers(pipe.as_raw_handle());
                DisconnectNamedPipe(pipe.as_raw_handle());
            }
            drop(pipe);
            drop(slot);
        });
    if let Err(e) = closer {
        tracing::debug!(error = %e, "closing a pipe instance without waiting for its client");
    }
}

/// Errors that mean the other end is gone.
pub(crate) fn is_disconnect(code: u32) -> bool {
    matches!(
        code,
        ERROR_BROKEN_PIPE | ERROR_NO_DATA | ERROR_PIPE_NOT_CONNECTED
    )
}

/// Opens the client end, waiting up to `timeout` while the pipe does not exist yet
/// or every instance is busy. Returns the handle and whether it may read and write.
/// `host` is the machine of a remote pipe: errors on the way to it end the wait at
/// once (see [`remote_error`]).
fn open_waiting(
    path: &str,
    host: Option<&str>,
    read: bool,
    write: bool,
    timeout: Duration,
) -> io::Result<(OwnedHandle, bool, bool)> {
    let wide_path = wide(path);
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        let code = match open_once(&wide_path, read, write) {
            Ok(pipe) => return Ok((pipe, read, write)),
            Err(code) => code,
        };
        // A duplex client of a one-way pipe: open it the way the pipe allows, as a
        // Unix client of such a pipe can still use the direction that works.
        let code = if code == ERROR_ACCESS_DENIED && read && write {
            match open_once(&wide_path, false, true) {
                Ok(pipe) => return Ok((pipe, false, true)),
                Err(_) => match open_once(&wide_path, true, false) {
                    Ok(pipe) => return Ok((pipe, true, false)),
                    Err(_) => code,
                },
            }
        } else {
            code
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match code {
            ERROR_PIPE_BUSY => {
                if remaining.is_zero() {
                    return Err(busy(path, timeout));
                }
                // SAFETY: `wide_path` is NUL-terminated UTF-16 alive for the call.
                let free = unsafe { WaitNamedPipeW(wide_path.as_ptr(), millis(remaining)) };
                // SAFETY: reads this thread's last-error value.
                if free == 0 && unsafe { GetLastError() } == ERROR_SEM_TIMEOUT {
                    return Err(busy(path, timeout));
                }
                // Free now (another client may still win it), or gone: try again.
            }
            ERROR_FILE_NOT_FOUND => {
                if remaining.is_zero() {
                    let waited = if timeout.is_zero() {
                        String::new()
                    } else {
                        format!(" (waited {})", fmt_duration(timeout))
                    };
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("pipe {path} not found: no server has created it{waited}"),
                    ));
                }
                thread::sleep(backoff.min(remaining));
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            _ if host.is_some() => {
                return Err(host
                    .and_then(|host| remote_error(host, path, code))
                    .unwrap_or_else(|| io::Error::from_raw_os_error(code as i32)))
            }
            ERROR_ACCESS_DENIED => {
                return Err(err_src(
                    ErrorKind::AccessDenied,
                    format!("access to pipe {path} denied: its DACL does not admit this user"),
                    io::Error::from_raw_os_error(code as i32),
                ))
            }
            _ => return Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
}

fn busy(path: &str, timeout: Duration) -> io::Error {
    err(
        ErrorKind::PipeBusy,
        format!(
            "all instances of pipe {path} are busy (waited {})",
            fmt_duration(timeout)
        ),
    )
}

/// One `CreateFile` on the pipe path; the Win32 error code on failure.
fn open_once(path: &[u16], read: bool, write: bool) -> Result<OwnedHandle, u32> {
    // Reading needs FILE_WRITE_ATTRIBUTES too, to set the read mode; writing needs
    // FILE_READ_ATTRIBUTES, to learn the server's process id.
    let mut access = 0;
    if read {
        access |= GENERIC_READ | FILE_WRITE_ATTRIBUTES;
    }
    if write {
        access |= GENERIC_WRITE | FILE_READ_ATTRIBUTES;
    }
    // SAFETY: `path` is NUL-terminated UTF-16 alive for the call; no security
    // attributes or template. SECURITY_IDENTIFICATION: the server may learn who we
    // are but never act as us. A valid handle is owned by `OwnedHandle` at once.
    unsafe {
        let handle = CreateFileW(
            path.as_ptr(),
            access,
            0,
            ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            ptr::null_mut(),
        );
        if handle == INVALID_HANDLE_VALUE {
            return Err(GetLastError());
        }
        Ok(OwnedHandle::from_raw_handle(handle))
    }
}
