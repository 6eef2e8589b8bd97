//! Connections served on a thread of their own, for sync handlers (Unix).
//!
//! A sync handler must run off tokio's I/O threads. Handing each request to the
//! blocking pool and its reply back costs two thread wake-ups per request — on a
//! VM, each can mean waking the other vCPU — and was most of what a sync-handler
//! server cost over a hand-written blocking server. So a connection with a sync
//! handler is served the way the original `PipeManager` served an instance: one
//! thread reads a request, runs the handler and writes the reply, with blocking
//! calls, for as long as the client stays. The thread comes from tokio's blocking
//! pool, so it is reused by the next connection.
//!
//! On Linux, with no `max_instances`, the threads accept too (`Acceptors`): the
//! thread the kernel wakes in `accept` serves the client, with no hand-off at all.
//!
//! The request loop is the one of the connections served as tasks
//! (`requests.rs`), run to its end by `block_on`: a dedicated connection's calls
//! block until done, so its futures never wait. What timers and aborts do for
//! the tasks is done by other means:
//! - idle timeout: the socket's read timeout between requests (`IdleWait`);
//!   request deadline: every read of the request and every write of its reply
//!   end by it; a handler past it is cut off by `cut_overdue`;
//! - graceful shutdown: idle connections are woken from their blocking read by
//!   `shutdown(SHUT_RD)` (`Counters::close_idle`); whether a connection is idle
//!   or has a request in flight is settled by one compare-and-swap on its phase;
//! - the hard stop after the grace period shuts every socket down and stops
//!   waiting for threads still inside a handler (`Counters::close_all`).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handler::{block_on, Handler, Panicked, Request, Response, SyncFn};
use super::requests::{finish, requests, Connection, Start};
use super::stats::{Tracked, Wake};
use super::Shared;
use crate::frame::HEADER_LEN;
use crate::options::Mode;
use crate::sys;
use crate::tokio::Listener;
use tokio_util::task::TaskTracker;

/// At most this many connections are served on threads of their own at once;
/// more are served as async tasks that hand each request to the blocking pool,
/// so that long-lived idle clients cannot use up tokio's blocking threads (512
/// by default) and starve the rest.
pub(super) const MAX_DEDICATED: usize = 128;

/// Whether the next connection should be served on a thread of its own, and with
/// which handler: sync handlers, message mode, while fewer than
/// [`MAX_DEDICATED`] are.
pub(super) fn eligible(listener: &Listener, shared: &Shared) -> Option<Arc<SyncFn>> {
    match &shared.handler {
        Handler::Sync(handler)
            if listener.options().mode == Mode::Message
                && shared.dedicated.load(Ordering::Relaxed) < MAX_DEDICATED =>
        {
            Some(Arc::clone(handler))
        }
        _ => None,
    }
}

/// Cuts off dedicated connections whose handler overran the request deadline or
/// whose client has gone ([`Counters::cut_overdue`](super::stats::Counters::cut_overdue)),
/// checking every twentieth of the deadline `limit` and at least every second,
/// until dropped.
pub(super) async fn cut_overdue(shared: Arc<Shared>, limit: Option<Duration>) {
    let period = limit.map_or(Duration::from_secs(1), |limit| {
        (limit / 20).clamp(Duration::from_millis(1), Duration::from_secs(1))
    });
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        shared.counters.cut_overdue();
    }
}

/// Hands an accepted (blocking) connection to a thread of tokio's blocking pool.
pub(super) fn start(
    stream: sys::Stream,
    handler: Arc<SyncFn>,
    shared: &Arc<Shared>,
    id: u64,
    tracked: Tracked,
    tracker: &TaskTracker,
    span: tracing::Span,
) {
    let stream = dedicate(shared, id, stream, tracker);
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| serve(stream, handler.as_ref(), shared, id, tracked));
    });
}

/// Registers connection `id`, about to be served on a thread of its own, with
/// the shutdown paths, which reach it through the stream returned.
fn dedicate(
    shared: &Shared,
    id: u64,
    stream: sys::Stream,
    tracker: &TaskTracker,
) -> sys::Reachable {
    let stream = sys::Reachable::new(stream);
    let wake = Wake {
        socket: stream.handle(),
        token: Some(tracker.token()),
    };
    shared.counters.dedicate(id, wake);
    shared.dedicated.fetch_add(1, Ordering::Relaxed);
    stream
}

/// Serves one connection on the current (blocking) thread until it ends.
fn serve(stream: sys::Reachable, handler: &SyncFn, shared: Arc<Shared>, id: u64, tracked: Tracked) {
    let mut conn = Dedicated {
        stream,
        handler,
        idle: IdleWait::new(shared.idle_timeout),
    };
    // Its futures never wait: each call blocks until done or its deadline.
    let end = block_on(requests(&mut conn, &shared, id, &tracked));
    // Counted before the connection leaves the stats, as on the async path.
    finish(&tracked, end);
    drop(tracked);
    drop(conn);
    shared.dedicated.fetch_sub(1, Ordering::Relaxed);
}

/// A connection served on a thread of its own (message mode).
struct Dedicated<'a> {
    stream: sys::Reachable,
    handler: &'a SyncFn,
    idle: IdleWait,
}

impl Connection for Dedicated<'_> {
    fn one_request(&self) -> bool {
        false
    }

    /// Waits for the first byte with the idle timeout as the socket's read
    /// timeout, and reads the rest by the request's deadline.
    async fn recv(&mut self, body: &mut Vec<u8>, start: &mut Start<'_>) -> io::Result<Option<u64>> {
        // The client sent ahead: this request has begun already.
        if self.stream.has_read_ahead() && !start.begin() {
            return Ok(None);
        }
        let idle = &mut self.idle;
        let mut gave_up = false;
        let received = self.stream.recv_reading(body, |sock, out| {
            if start.begun() {
                return match start.deadline() {
                    Some(deadline) => sock.recv_by(out, deadline),
                    // No request deadline: the socket's timeout (the idle timeout).
                    None => sock.recv_waiting(out),
                };
            }
            let n = idle.read(sock, out)?;
            if n > 0 && !start.begin() {
                // Nothing was delivered yet: reporting an end drops it.
                gave_up = true;
                return Ok(0);
            }
            Ok(n)
        });
        if gave_up {
            body.clear();
            return Ok(None);
        }
        Ok(received?.map(|len| (len + HEADER_LEN) as u64))
    }

    /// Runs the handler in place, to its end: a thread cannot be stopped.
    async fn call(
        &mut self,
        request: Request,
        _deadline: Option<Instant>,
    ) -> Option<Result<Response, Panicked>> {
        Some(catch_unwind(AssertUnwindSafe(|| (self.handler)(request))).map_err(|_| Panicked))
    }

    async fn send(&mut self, reply: &[u8], deadline: Option<Instant>) -> io::Result<u64> {
        self.stream.set_deadline(deadline);
        self.stream.send(reply)?;
        Ok((reply.len() + HEADER_LEN) as u64)
    }
}

/// A dedicated connection's wait for a request to begin: the socket's read
/// timeout, set only once a wait would block, so that a connection whose request
/// is already there (the usual connect-request-reply-close client) costs no
/// system call for it.
#[derive(Debug)]
struct IdleWait {
    timeout: Option<Duration>,
    /// Whether the socket's read timeout is `timeout`. A fresh socket has none,
    /// which is right for no idle limit.
    installed: bool,
}

impl IdleWait {
    fn new(timeout: Option<Duration>) -> IdleWait {
        IdleWait {
            timeout,
            installed: timeout.is_none(),
        }
    }

    /// One read of `sock` that waits at most the idle timeout.
    fn read(&mut self, sock: sys::Socket<'_>, out: &mut [u8]) -> io::Result<usize> {
        if !self.installed {
            match sock.recv_now(out) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sock.set_read_timeout(self.timeout)?;
                    self.installed = true;
                }
                other => return other,
            }
        }
        sock.recv_waiting(out)
    }
}

/// Threads that accept and then serve what they accepted: the original
/// `PipeManager`'s pool of listening instances (Linux, sync handlers, no
/// `max_instances`).
///
/// Accepting on a tokio worker and handing the connection to a serving thread
/// costs a cross-thread wake-up per connection; here the thread that the kernel
/// wakes in `accept` serves the connection itself. `accepting` threads wait in
/// `accept`; when the last one takes a connection, another is started so that
/// someone is always accepting; a thread whose connection ended goes back to
/// accepting while fewer than `accepting` are, and otherwise returns to the
/// blocking pool. Shutdown wakes the threads in `accept` with
/// `shutdown(SHUT_RD)` on the listening socket (`Listener::stop_accepting`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) struct Acceptors {
    shared: Arc<Shared>,
    handler: Arc<SyncFn>,
    /// Held strongly only while a thread waits in `accept`, so that the pipe
    /// leaves the namespace when `run` lets go of it at shutdown.
    listener: std::sync::Weak<Listener>,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    span: tracing::Span,
    /// Threads waiting in (or on their way to) `accept`.
    listening: std::sync::atomic::AtomicUsize,
    /// How many threads to keep in `accept`: `pending_instances`, but no more
    /// than [`MIN_ACCEPTING`] or one per CPU, whichever is more. Clients beyond
    /// them wait in the accept queue, whose room is `pending_instances`: more
    /// threads would only take turns at the same queue.
    accepting: usize,
}

/// See [`Acceptors::accepting`].
#[cfg(any(target_os = "linux", target_os = "android"))]
const MIN_ACCEPTING: usize = 4;

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Acceptors {
    /// Whether a server with these options and this handler has its connections
    /// accepted by serving threads: sync handlers in message mode, without
    /// `max_instances` (waiting for a free instance happens before `accept`,
    /// where `stop_accepting` cannot reach it).
    pub(super) fn fit(options: &crate::options::ListenerOptions, handler: &Handler) -> bool {
        matches!(handler, Handler::Sync(_))
            && options.mode == Mode::Message
            && options.max_instances.is_none()
    }

    /// Starts the accepting threads; they stop at shutdown (`Shared::stopping`
    /// and `Listener::stop_accepting`).
    pub(super) fn start(
        listener: &Arc<Listener>,
        shared: &Arc<Shared>,
        handler: Arc<SyncFn>,
        tracker: &TaskTracker,
        span: &tracing::Span,
    ) {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let pending = listener.options().pending_instances as usize;
        let pool = Arc::new(Acceptors {
            shared: Arc::clone(shared),
            handler,
            listener: Arc::downgrade(listener),
            tracker: tracker.clone(),
            runtime: tokio::runtime::Handle::current(),
            span: span.clone(),
            listening: std::sync::atomic::AtomicUsize::new(0),
            accepting: pending.min(cpus.max(MIN_ACCEPTING)),
        });
        for _ in 0..pool.accepting {
            pool.spawn();
        }
    }

    /// Starts one more accepting thread.
    fn spawn(self: &Arc<Self>) {
        self.listening.fetch_add(1, Ordering::SeqCst);
        let this = Arc::clone(self);
        self.runtime.spawn_blocking(move || this.run());
    }

    fn run(self: Arc<Self>) {
        loop {
            let Some(listener) = self.listener.upgrade() else {
                return;
            };
            if self.shared.is_stopping() {
                return;
            }
            let accepted = listener.blocking().accept();
            drop(listener);
            let stream = match accepted {
                Ok(stream) => stream,
                Err(_) if self.shared.is_stopping() => return,
                Err(e) => {
                    tracing::warn!(parent: &self.span, error = %e, "accept failed; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.listening.fetch_sub(1, Ordering::SeqCst) == 1 {
                // This was the last thread accepting: start another first.
                self.spawn();
            }
            self.serve(stream);
            if self.listening.fetch_add(1, Ordering::SeqCst) >= self.accepting {
                // Enough threads are accepting: give this one back to the pool.
                self.listening.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
    }

    fn serve(&self, stream: sys::Stream) {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let peer = stream.peer_credentials().ok();
        let tracked = shared.counters.open(id, peer);
        let span = tracing::debug_span!(
            parent: &self.span,
            "npipe.connection",
            id,
            pid = peer.and_then(|p| p.pid()),
            uid = peer.and_then(|p| p.uid()),
        );
        tracing::debug!(parent: &span, "accepted");
        if shared.dedicated.load(Ordering::Relaxed) < MAX_DEDICATED {
            let stream = dedicate(shared, id, stream, &self.tracker);
            span.in_scope(|| {
                serve(
                    stream,
                    self.handler.as_ref(),
                    Arc::clone(shared),
                    id,
                    tracked,
                )
            });
            return;
        }
        // Past the limit of threads: serve it as a task, as `run` would.
        let _runtime = self.runtime.enter();
        let stream = stream
            .set_nonblocking(true)
            .and_then(|()| crate::tokio::Stream::from_sys(stream));
        match stream {
            Ok(stream) => {
                let task = super::task::serve(stream, Arc::clone(shared), id, tracked);
                let task = self
                    .tracker
                    .spawn(tracing::Instrument::instrument(task, span));
                shared.counters.watch(id, task.abort_handle());
            }
            Err(e) => tracing::warn!(parent: &span, error = %e, "connection dropped"),
        }
    }
}
