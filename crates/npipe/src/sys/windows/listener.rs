//! The server end: a pool of listening instances, like the original `PipeManager`.
//!
//! `create` makes `min(pending_instances, max_instances)` instances at once (the
//! first with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so the name is ours) and gives each to
//! a worker thread that waits for a client in an overlapped `ConnectNamedPipe`.
//! Connected instances are queued for `accept`, and the worker makes a new instance
//! while fewer than `pending_instances` are listening or queued and the total stays
//! within `max_instances` — so a burst of clients never sees `ERROR_PIPE_BUSY` while
//! the application is between two `accept` calls, and a flood of clients that the
//! application does not accept is held to `pending_instances`, like a Unix backlog.
//! Dropping the listener signals the workers, which cancel their `ConnectNamedPipe`.

use std::collections::VecDeque;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_NO_DATA, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX, PIPE_ACCESS_INBOUND,
    PIPE_ACCESS_OUTBOUND,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, PIPE_ACCEPT_REMOTE_CLIENTS,
    PIPE_READMODE_BYTE, PIPE_READMODE_MESSAGE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE,
    PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::INFINITE;

use super::overlapped::{run, Done, Event};
use super::security::SecurityDescriptor;
use super::stream::Stream;
use super::{pipe_path, wide};
use crate::error::{err, err_src, ErrorKind};
use crate::name::{Address, PipeName};
use crate::options::{Direction, ListenerOptions, Mode, DEFAULT_CONNECT_TIMEOUT};

/// Stack size of the threads waiting in `ConnectNamedPipe`: they hold a few handles.
const WORKER_STACK: usize = 64 * 1024;

/// How long a worker waits before retrying an instance the system refused to make.
const RETRY_CREATE: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(crate) struct Listener {
    name: PipeName,
    address: Address,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// What the listener, its workers and its accepted streams share.
#[derive(Debug)]
struct Shared {
    path: Vec<u16>,
    opts: ListenerOptions,
    security: SecurityDescriptor,
    state: Mutex<State>,
    /// Signaled for `accept`: a connected instance was queued.
    queued: Condvar,
    /// Signaled for the workers: an instance may be made (or the listener stops).
    room: Condvar,
    /// Set when the listener is dropped: cancels the workers' `ConnectNamedPipe`.
    stop: Event,
}

#[derive(Debug)]
struct State {
    /// Connected instances not yet returned by `accept`.
    queue: VecDeque<OwnedHandle>,
    /// Instances waiting for a client.
    listening: u32,
    /// Accepted streams alive.
    connected: u32,
    stopping: bool,
    /// Async acceptors to wake when an instance is queued.
    wakers: Vec<std::task::Waker>,
    /// Why the last instance could not be made, for `accept` to report if nothing listens.
    error: Option<io::Error>,
}

/// One accepted instance; frees it (for `max_instances`) when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.connected -= 1;
        drop(state);
        self.shared.room.notify_one();
    }
}

impl Listener {
    /// Socket activation hands over Unix sockets: refused on Windows, where a
    /// pipe is created by its server.
    pub(crate) fn activated(name: PipeName, _opts: ListenerOptions) -> io::Result<Listener> {
        Err(err(
            ErrorKind::Unsupported,
            format!("pipe {name}: socket activation hands over Unix sockets; Windows pipes are created by their server"),
        ))
    }

    pub(crate) fn create(name: PipeName, opts: ListenerOptions) -> io::Result<Listener> {
        if let Some(host) = name.host() {
            // Before anything goes on the network: `CreateNamedPipe` makes pipes on
            // this machine only.
            let bare = name.as_str();
            return Err(err(
                ErrorKind::Unsupported,
                format!(
                    "a server creates pipes on this machine only, not on {host}: serve {bare} \
                     here and let clients on other machines open \\\\THIS-MACHINE\\pipe\\{bare} \
                     (with reject_remote_clients(false), `npipe serve --remote`)"
                ),
            ));
        }
        let path = pipe_path(&name)?;
        let address = Address::Windows(path.clone());
        if !opts.allow_uids.is_empty() || !opts.allow_gids.is_empty() {
            return Err(err(
                ErrorKind::Unsupported,
                "allow_uid/allow_gid name Unix users and groups; on Windows use Access::Group or Access::Everyone",
            ));
        }
        // FILE_FLAG_FIRST_PIPE_INSTANCE settles ownership; asking first gives a clear
        // error even where that flag is not enforced.
        if super::is_listening(&name)? {
            return Err(in_use(&name, None));
        }
        let security = SecurityDescriptor::for_access(opts.access)?;
        let ahead = opts
            .pending_instances
            .min(opts.max_instances.unwrap_or(PIPE_UNLIMITED_INSTANCES));
        let shared = Arc::new(Shared {
            path: wide(&path),
            opts,
            security,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                listening: 0,
                connected: 0,
                stopping: false,
                wakers: Vec::new(),
                error: None,
            }),
            queued: Condvar::new(),
            room: Condvar::new(),
            stop: Event::new()?,
        });
        let first =
            shared
                .create_instance(true)
                .map_err(|e| match e.raw_os_error().map(|c| c as u32) {
                    Some(ERROR_ACCESS_DENIED | ERROR_PIPE_BUSY) => in_use(&name, Some(e)),
                    _ => e,
                })?;
        let mut instances = vec![first];
        for _ in 1..ahead {
            instances.push(shared.create_instance(false)?);
        }
        shared.lock().listening = ahead;
        let mut listener = Listener {
            name,
            address,
            shared,
            workers: Vec::new(),
        };
        for (n, instance) in instances.into_iter().enumerate() {
            let shared = Arc::clone(&listener.shared);
            let worker = thread::Builder::new()
                .name(format!("npipe-listen-{n}"))
                .stack_size(WORKER_STACK)
                .spawn(move || shared.serve(instance))?;
            listener.workers.push(worker);
        }
        tracing::debug!(pipe = %listener.name, sddl = listener.shared.security.sddl(), "listening");
        Ok(listener)
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let pipe = loop {
            if let Some(pipe) = state.queue.pop_front() {
                state.connected += 1;
                break pipe;
            }
            if state.listening == 0 {
                if let Some(e) = state.error.take() {
                    return Err(e);
                }
            }
            state = shared.queued.wait(state).unwrap_or_else(|e| e.into_inner());
        };
        drop(state);
        // The queue has room again: a worker may make the next instance.
        shared.room.notify_one();
        let slot = Slot {
            shared: Arc::clone(shared),
        };
        Stream::from_accepted(
            pipe,
            shared.opts.mode,
            shared.opts.direction,
            shared.opts.max_message_size,
            slot,
        )
    }

    #[cfg(feature = "tokio")]
    /// `accept` for async code: a connected instance and its slot, or `Pending` with
    /// the task woken when a client connects. Cancel safe: nothing is taken unless
    /// `Ready` is returned.
    pub(crate) fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(OwnedHandle, Slot)>> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if let Some(pipe) = state.queue.pop_front() {
            state.connected += 1;
            drop(state);
            shared.room.notify_one();
            let slot = Slot {
                shared: Arc::clone(shared),
            };
            return std::task::Poll::Ready(Ok((pipe, slot)));
        }
        if state.listening == 0 {
            if let Some(e) = state.error.take() {
                return std::task::Poll::Ready(Err(e));
            }
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }

    #[cfg(feature = "tokio")]
    /// Instances waiting for a client now: how many more clients could connect
    /// without waiting.
    pub(crate) fn listening(&self) -> u32 {
        self.shared.lock().listening
    }

    pub(crate) fn name(&self) -> &PipeName {
        &self.name
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn instances(&self) -> u32 {
        self.shared.lock().connected
    }

    /// The DACL refuses clients before they reach the server: nothing to count.
    pub(crate) fn denied(&self) -> u64 {
        0
    }

    pub(crate) fn options(&self) -> &ListenerOptions {
        &self.shared.opts
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let wakers = {
            let mut state = self.shared.lock();
            state.stopping = true;
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(std::task::Waker::wake);
        self.shared.room.notify_all();
        self.shared.stop.set();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // Queued instances close here, with the shared state; accepted streams keep
        // theirs.
        self.shared.lock().queue.clear();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a worker may make one more listening instance.
    fn has_room(&self, state: &State) -> bool {
        let unaccepted = state.listening + state.queue.len() as u32;
        let total = unaccepted + state.connected;
        unaccepted < self.opts.pending_instances
            && self.opts.max_instances.is_none_or(|max| total < max)
    }

    /// A worker: waits for a client on `instance`, queues it, makes the next one.
    fn serve(self: Arc<Self>, instance: OwnedHandle) {
        let event = match Event::new() {
            Ok(event) => event,
            Err(e) => {
                self.lock().listening -= 1;
                tracing::warn!(error = %e, "npipe listener worker could not start");
                return;
            }
        };
        let mut instance = Some(instance);
        loop {
            let pipe = match instance.take() {
                Some(pipe) => pipe,
                None => match self.next_instance() {
                    Some(pipe) => pipe,
                    None => return,
                },
            };
            // SAFETY: ConnectNamedPipe uses no buffer, only the OVERLAPPED `run` gives it.
            let done = unsafe {
                run(
                    std::os::windows::io::AsHandle::as_handle(&pipe),
                    &event,
                    INFINITE,
                    Some(&self.stop),
                    |ov| ConnectNamedPipe(pipe.as_raw_handle(), ov),
                )
            };
            match done {
                Done::Ok(_)
                | Done::Err {
                    code: ERROR_PIPE_CONNECTED,
                    ..
                } => {
                    let mut state = self.lock();
                    state.listening -= 1;
                    state.queue.push_back(pipe);
                    let wakers = std::mem::take(&mut state.wakers);
                    drop(state);
                    self.queued.notify_one();
                    wakers.into_iter().for_each(std::task::Waker::wake);
                }
                Done::Err {
                    code: ERROR_NO_DATA,
                    ..
                } => {
                    // The client came and went before we saw it: listen again.
                    // SAFETY: `pipe` is the server end of an instance.
                    unsafe { DisconnectNamedPipe(pipe.as_raw_handle()) };
                    instance = Some(pipe);
                }
                Done::Stopped | Done::TimedOut => {
                    self.lock().listening -= 1;
                    return;
                }
                Done::Err { code, .. } => {
                    let e = io::Error::from_raw_os_error(code as i32);
                    tracing::warn!(error = %e, "ConnectNamedPipe failed; replacing the instance");
                    let mut state = self.lock();
                    state.listening -= 1;
                    state.error = Some(e);
                    drop(state);
                    self.queued.notify_all();
                    // Not in a tight loop if the system keeps refusing.
                    let _ = self.room.wait_timeout(self.lock(), RETRY_CREATE);
                }
            }
        }
    }

    /// Waits for room, then makes a listening instance. `None` when stopping.
    fn next_instance(&self) -> Option<OwnedHandle> {
        loop {
            let mut state = self.lock();
            while !state.stopping && !self.has_room(&state) {
                state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.stopping {
                return None;
            }
            state.listening += 1;
            drop(state);
            match self.create_instance(false) {
                Ok(pipe) => {
                    // Only a failure that still stands is reported by `accept`.
                    self.lock().error = None;
                    return Some(pipe);
                }
                Err(e) => {
                    let busy = e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32);
                    let mut state = self.lock();
                    state.listening -= 1;
                    if !busy {
                        tracing::warn!(error = %e, "could not create a pipe instance");
                        state.error = Some(e);
                        drop(state);
                        self.queued.notify_all();
                    } else {
                        // An instance we closed still counts until its client closes too.
                        drop(state);
                    }
                    let _ = self.room.wait_timeout(self.lock(), RETRY_CREATE);
                }
            }
        }
    }

    /// `CreateNamedPipeW` with the listener's options.
    fn create_instance(&self, first: bool) -> io::Result<OwnedHandle> {
        let opts = &self.opts;
        let mut open_mode = FILE_FLAG_OVERLAPPED
            | match opts.direction {
                Direction::Inbound => PIPE_ACCESS_INBOUND,
                Direction::Outbound => PIPE_ACCESS_OUTBOUND,
                Direction::Duplex => PIPE_ACCESS_DUPLEX,
            };
        if first {
            open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
        }
        let pipe_mode = PIPE_WAIT
            | match opts.mode {
                Mode::Message => PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE,
                Mode::Byte => PIPE_TYPE_BYTE | PIPE_READMODE_BYTE,
            }
            | if opts.reject_remote {
                PIPE_REJECT_REMOTE_CLIENTS
            } else {
                PIPE_ACCEPT_REMOTE_CLIENTS
            };
        let max = opts.max_instances.unwrap_or(PIPE_UNLIMITED_INSTANCES);
        let buffer = u32::try_from(opts.buffer_size).unwrap_or(u32::MAX);
        let default_timeout = u32::try_from(DEFAULT_CONNECT_TIMEOUT.as_millis()).unwrap_or(5000);
        let attributes = self.security.attributes();
        // SAFETY: `path` is NUL-terminated UTF-16; `attributes` points at a security
        // descriptor owned by `self`; both outlive the call. A valid handle is owned
        // by `OwnedHandle` at once.
        unsafe {
            let handle = CreateNamedPipeW(
                self.path.as_ptr(),
                open_mode,
                pipe_mode,
                max,
                buffer,
                buffer,
                default_timeout,
                &attributes,
            );
            if handle == INVALID_HANDLE_VALUE {
                return Err(io::Error::from_raw_os_error(GetLastError() as i32));
            }
            Ok(OwnedHandle::from_raw_handle(handle))
        }
    }
}

fn in_use(name: &PipeName, source: Option<io::Error>) -> io::Error {
    let msg = format!("pipe {name} is already served by another process");
    match source {
        Some(e) => err_src(ErrorKind::AddrInUse, msg, e),
        None => err(ErrorKind::AddrInUse, msg),
    }
}
