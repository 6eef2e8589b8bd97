//! Overlapped operations awaited from async code, completed through an I/O
//! completion port of npipe's own: one thread per process dequeues completions and
//! wakes the tasks. Used by `npipe::tokio` on Windows, which cannot use tokio's named
//! pipes for message mode: their reads treat `ERROR_MORE_DATA` as a plain partial
//! read, so message boundaries would be lost.
//!
//! Ownership: an operation's `OVERLAPPED` and buffer live in an `Arc`; one reference
//! belongs to the system while the operation is in flight and is given back by the
//! port thread when the completion is dequeued. So dropping an [`AsyncOp`] early only
//! cancels the operation; nothing is freed under the system's feet, and nothing waits.

use std::cell::UnsafeCell;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_INVALID_PARAMETER, ERROR_IO_PENDING, ERROR_MORE_DATA, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Threading::INFINITE;
use windows_sys::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED,
};

/// The process's completion port for npipe's async pipes.
#[derive(Debug)]
struct Port(OwnedHandle);

static PORT: OnceLock<Result<Port, String>> = OnceLock::new();

fn port() -> io::Result<&'static Port> {
    let port = PORT.get_or_init(|| {
        // SAFETY: creates a new port (no file handle); the result is checked and
        // owned by `OwnedHandle`.
        let handle = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, ptr::null_mut(), 0, 1) };
        if handle.is_null() {
            return Err(io::Error::last_os_error().to_string());
        }
        // SAFETY: a valid new handle, owned from here on (for the process's life).
        let port = Port(unsafe { OwnedHandle::from_raw_handle(handle) });
        let raw = port.0.as_raw_handle() as usize;
        std::thread::Builder::new()
            .name("npipe-iocp".into())
            .stack_size(64 * 1024)
            .spawn(move || dequeue(raw as HANDLE))
            .map_err(|e| e.to_string())?;
        Ok(port)
    });
    port.as_ref()
        .map_err(|e| io::Error::other(format!("npipe's completion port: {e}")))
}

/// The port thread: hands each completion to its operation and wakes the task.
fn dequeue(port: HANDLE) {
    loop {
        let mut transferred = 0u32;
        let mut key = 0usize;
        let mut ov: *mut OVERLAPPED = ptr::null_mut();
        // SAFETY: `port` is the process's completion port, never closed.
        let ok = unsafe {
            GetQueuedCompletionStatus(port, &mut transferred, &mut key, &mut ov, INFINITE)
        };
        if ov.is_null() {
            // No packet was dequeued (the port itself failed): nothing to hand out.
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        let error = if ok != 0 {
            0
        } else {
            // SAFETY: reads this thread's last-error value.
            unsafe { GetLastError() }
        };
        // SAFETY: every OVERLAPPED queued to this port is the first field of a
        // `Shared` whose `Arc` reference was given to the system when the operation
        // started (`Arc::into_raw`); taking it back here releases that reference.
        let shared = unsafe { Arc::from_raw(ov.cast::<Shared>()) };
        shared.transferred.store(transferred, Ordering::Relaxed);
        shared.error.store(error, Ordering::Relaxed);
        shared.done.store(true, Ordering::Release);
        let waker = shared
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(shared);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Associates a pipe handle with npipe's completion port (once per handle).
pub(crate) fn register(pipe: &OwnedHandle) -> io::Result<()> {
    let port = port()?;
    // SAFETY: both handles are live; the key is unused.
    let ok = unsafe { CreateIoCompletionPort(pipe.as_raw_handle(), port.0.as_raw_handle(), 0, 0) };
    if ok.is_null() {
        let e = io::Error::last_os_error();
        // Already associated (with this port) is fine.
        if e.raw_os_error() != Some(ERROR_INVALID_PARAMETER as i32) {
            return Err(e);
        }
    }
    Ok(())
}

/// One operation's state, shared by its owner and the system. `ov` must stay first:
/// the port thread turns the OVERLAPPED pointer back into the `Shared`.
#[repr(C)]
struct Shared {
    ov: UnsafeCell<OVERLAPPED>,
    buf: UnsafeCell<Vec<u8>>,
    read: bool,
    done: AtomicBool,
    error: AtomicU32,
    transferred: AtomicU32,
    waker: Mutex<Option<Waker>>,
}

// SAFETY: `ov` and `buf` are used by the system while the operation is in flight and
// by the owner only after `done` is set (Release/Acquire), never at the same time;
// everything else is atomic or behind a mutex.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointers inside OVERLAPPED are not dereferenced by us.
unsafe impl Send for Shared {}

/// How an operation ended: the Win32 error (if any), bytes transferred, and the
/// buffer (for reads, holding the data).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) error: Option<u32>,
    pub(crate) transferred: usize,
    pub(crate) buf: Vec<u8>,
}

/// One overlapped `ReadFile` or `WriteFile` on a pipe registered with [`register`].
pub(crate) struct AsyncOp {
    pipe: Arc<OwnedHandle>,
    shared: Arc<Shared>,
    /// Failed to start (nothing in flight), or already handed out.
    failed: Option<u32>,
    taken: bool,
}

impl std::fmt::Debug for AsyncOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncOp")
            .field("done", &self.shared.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AsyncOp {
    /// Starts reading up to `len` bytes.
    pub(crate) fn read(pipe: &Arc<OwnedHandle>, len: usize) -> io::Result<AsyncOp> {
        AsyncOp::start(pipe, Vec::with_capacity(len), true)
    }

    /// Starts writing `data` (one message on a message pipe).
    pub(crate) fn write(pipe: &Arc<OwnedHandle>, data: Vec<u8>) -> io::Result<AsyncOp> {
        AsyncOp::start(pipe, data, false)
    }

    fn start(pipe: &Arc<OwnedHandle>, buf: Vec<u8>, read: bool) -> io::Result<AsyncOp> {
        let shared = Arc::new(Shared {
            ov: UnsafeCell::new(OVERLAPPED::default()),
            buf: UnsafeCell::new(buf),
            read,
            done: AtomicBool::new(false),
            error: AtomicU32::new(0),
            transferred: AtomicU32::new(0),
            waker: Mutex::new(None),
        });
        let in_flight = Arc::into_raw(Arc::clone(&shared));
        let ov = shared.ov.get();
        // SAFETY: nothing else uses the buffer until the operation completes.
        let buf = unsafe { &mut *shared.buf.get() };
        let raw = pipe.as_raw_handle();
        let started = if read {
            let len = u32::try_from(buf.capacity()).unwrap_or(u32::MAX);
            // SAFETY: the buffer's capacity and the OVERLAPPED live in `shared`, kept
            // alive by the reference given to the system (`in_flight`).
            unsafe { ReadFile(raw, buf.as_mut_ptr(), len, ptr::null_mut(), ov) }
        } else {
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            // SAFETY: as above, for the data to write.
            unsafe { WriteFile(raw, buf.as_ptr(), len, ptr::null_mut(), ov) }
        };
        let mut failed = None;
        if started == 0 {
            // SAFETY: reads this thread's last-error value.
            let code = unsafe { GetLastError() };
            if code != ERROR_IO_PENDING && code != ERROR_MORE_DATA {
                // Nothing was queued: the system's reference is ours again.
                // SAFETY: `in_flight` came from `Arc::into_raw` above and was not used.
                drop(unsafe { Arc::from_raw(in_flight) });
                failed = Some(code);
            }
        }
        Ok(AsyncOp {
            pipe: Arc::clone(pipe),
            shared,
            failed,
            taken: false,
        })
    }

    /// Polls for completion.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        if self.taken {
            return Poll::Ready(Outcome {
                error: Some(ERROR_INVALID_PARAMETER),
                transferred: 0,
                buf: Vec::new(),
            });
        }
        if let Some(code) = self.failed {
            self.taken = true;
            // SAFETY: the operation never started: the buffer is ours.
            let buf = std::mem::take(unsafe { &mut *self.shared.buf.get() });
            return Poll::Ready(Outcome {
                error: Some(code),
                transferred: 0,
                buf,
            });
        }
        if !self.shared.done.load(Ordering::Acquire) {
            *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if !self.shared.done.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        self.taken = true;
        let error = self.shared.error.load(Ordering::Relaxed);
        let transferred = self.shared.transferred.load(Ordering::Relaxed) as usize;
        // SAFETY: `done` (Acquire) means the system has finished with the buffer.
        let mut buf = std::mem::take(unsafe { &mut *self.shared.buf.get() });
        if self.shared.read {
            let n = transferred.min(buf.capacity());
            // SAFETY: ReadFile initialised the first `transferred` bytes.
            unsafe { buf.set_len(n) };
        }
        Poll::Ready(Outcome {
            error: (error != 0).then_some(error),
            transferred,
            buf,
        })
    }
}

impl Drop for AsyncOp {
    fn drop(&mut self) {
        if self.failed.is_none() && !self.shared.done.load(Ordering::Acquire) {
            // SAFETY: the OVERLAPPED identifies our operation on `pipe`; cancelling one
            // that has just completed is harmless. Its memory stays alive until the
            // port thread dequeues the completion.
            unsafe {
                CancelIoEx(self.pipe.as_raw_handle(), self.shared.ov.get());
            }
        }
    }
}
