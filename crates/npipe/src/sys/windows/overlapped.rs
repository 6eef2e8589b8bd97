//! Overlapped I/O with deadlines: every pipe handle npipe opens is overlapped, so each
//! blocking operation can be bounded by a timeout or stopped by an event, and is
//! always waited for before its `OVERLAPPED` and buffers go out of scope.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_OPERATION_ABORTED, HANDLE,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

/// A manual-reset event, unsignaled when created.
#[derive(Debug)]
pub(crate) struct Event(OwnedHandle);

impl Event {
    pub(crate) fn new() -> io::Result<Event> {
        // SAFETY: no security attributes and no name; the returned handle is checked
        // and then owned by `OwnedHandle`, which closes it exactly once.
        unsafe {
            let handle = CreateEventW(ptr::null(), 1, 0, ptr::null());
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            Ok(Event(OwnedHandle::from_raw_handle(handle)))
        }
    }

    pub(crate) fn raw(&self) -> HANDLE {
        self.0.as_raw_handle()
    }

    pub(crate) fn set(&self) {
        // SAFETY: the handle is a live event owned by `self`. Failure is impossible
        // for a valid event handle; there is nothing useful to do about it anyway.
        unsafe {
            SetEvent(self.raw());
        }
    }
}

/// How an overlapped operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// Completed: bytes transferred.
    Ok(u32),
    /// Failed with a Win32 error after transferring some bytes (`ERROR_MORE_DATA`
    /// carries the part of the message that was read).
    Err { code: u32, transferred: u32 },
    /// The timeout expired and the operation was cancelled.
    TimedOut,
    /// The stop event was signaled and the operation was cancelled.
    Stopped,
}

/// Runs one overlapped operation to completion.
///
/// `start` begins the operation with the `OVERLAPPED` it is given (whose event is
/// `event`). If it is still pending after `timeout_ms` (`INFINITE`: no limit), or
/// when `stop` is signaled, it is cancelled with `CancelIoEx`. In every case this
/// waits until the system has finished with the operation before returning.
///
/// # Safety
///
/// `start` must start at most one overlapped operation on `pipe`, using the given
/// `OVERLAPPED`, and every buffer that operation uses must stay valid until this
/// function returns (it does: the operation is complete or cancelled by then).
pub(crate) unsafe fn run(
    pipe: BorrowedHandle<'_>,
    event: &Event,
    timeout_ms: u32,
    stop: Option<&Event>,
    start: impl FnOnce(*mut OVERLAPPED) -> BOOL,
) -> Done {
    let mut ov = OVERLAPPED {
        hEvent: event.raw(),
        ..OVERLAPPED::default()
    };
    if start(&mut ov) == 0 {
        // SAFETY: reads this thread's last-error value; no pointers involved.
        let code = unsafe { GetLastError() };
        if code != ERROR_IO_PENDING && code != ERROR_MORE_DATA {
            // The operation failed to start: the system holds nothing of ours.
            return Done::Err {
                code,
                transferred: 0,
            };
        }
    }
    let woke = match stop {
        // SAFETY: both handles are live events owned by the caller for this call.
        Some(stop) => unsafe {
            let handles = [event.raw(), stop.raw()];
            WaitForMultipleObjects(2, handles.as_ptr(), 0, timeout_ms)
        },
        // SAFETY: `event` is a live event handle.
        None => unsafe { WaitForSingleObject(event.raw(), timeout_ms) },
    };
    let cancelled = match woke {
        WAIT_OBJECT_0 => None,
        WAIT_TIMEOUT => Some(Done::TimedOut),
        _ => Some(Done::Stopped),
    };
    if cancelled.is_some() {
        // SAFETY: `ov` is the OVERLAPPED of the operation started above, still on
        // this stack frame. Cancelling an operation that has just completed is
        // harmless (the call then fails with ERROR_NOT_FOUND, which is ignored).
        unsafe {
            CancelIoEx(pipe.as_raw_handle(), &ov);
        }
    }
    let mut transferred = 0u32;
    // SAFETY: `ov` belongs to the operation on `pipe`; bWait = TRUE blocks until the
    // system is done with it (completed or cancelled), after which `ov` and the
    // operation's buffers are no longer used.
    let ok = unsafe { GetOverlappedResult(pipe.as_raw_handle(), &ov, &mut transferred, 1) };
    if ok != 0 {
        // It completed before the cancellation took effect: keep the result.
        return Done::Ok(transferred);
    }
    // SAFETY: reads this thread's last-error value.
    let code = unsafe { GetLastError() };
    match cancelled {
        Some(why) if code == ERROR_OPERATION_ABORTED => why,
        _ => Done::Err { code, transferred },
    }
}

/// A timeout settable through `&self`, as the Win32 wait functions take it.
#[derive(Debug)]
pub(crate) struct Timeout(AtomicU32);

impl Timeout {
    pub(crate) fn none() -> Timeout {
        Timeout(AtomicU32::new(INFINITE))
    }

    pub(crate) fn set(&self, timeout: Option<Duration>) -> io::Result<()> {
        let ms = match timeout {
            None => INFINITE,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a zero duration timeout",
                ))
            }
            Some(d) => millis(d),
        };
        self.0.store(ms, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn millis(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whole milliseconds for a wait, rounded up (a 100 µs timeout must not mean
/// "don't wait"), and never `INFINITE`.
pub(crate) fn millis(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
}
