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
//! The same semantics as the async path (`connection.rs`), kept by other means:
//! - idle timeout: the socket's read timeout between requests; request deadline:
//!   every read of the request and every write of its reply end by it
//!   (`RequestWait`, `Stream::set_deadline`);
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

use super::connection::{finish, End};
use super::handler::{Handler, Request, SyncFn};
use super::stats::{Phase, Tracked, Wake};
use super::Shared;
use crate::error::ErrorKind;
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
    if !dedicate(shared, id, &stream, tracker) {
        return serve_as_task(stream, shared, id, tracked, tracker, span);
    }
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| serve(stream, handler.as_ref(), shared, id, tracked));
    });
}

/// Registers connection `id`, about to be served on a thread of its own, with
/// the shutdown paths. `false` if it cannot be reached from them (no descriptor
/// left for the handle): it must then be served as a task.
fn dedicate(shared: &Shared, id: u64, stream: &sys::Stream, tracker: &TaskTracker) -> bool {
    let socket = match sys::ShutdownHandle::of(stream) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!(error = %e, "serving the connection as a task");
            return false;
        }
    };
    let token = Some(tracker.token());
    shared.counters.dedicate(id, Wake { socket, token });
    shared.dedicated.fetch_add(1, Ordering::Relaxed);
    true
}

/// Serves a connection accepted blocking as a task after all, as `run` serves
/// the others. Needs the runtime's context.
fn serve_as_task(
    stream: sys::Stream,
    shared: &Arc<Shared>,
    id: u64,
    tracked: Tracked,
    tracker: &TaskTracker,
    span: tracing::Span,
) {
    let stream = stream
        .set_nonblocking(true)
        .and_then(|()| crate::tokio::Stream::from_sys(stream));
    match stream {
        Ok(stream) => {
            let task = super::connection::serve(stream, Arc::clone(shared), id, tracked);
            let task = tracker.spawn(tracing::Instrument::instrument(task, span));
            shared.counters.watch(id, task.abort_handle());
        }
        Err(e) => tracing::warn!(parent: &span, error = %e, "connection dropped"),
    }
}

/// Serves one connection on the current (blocking) thread until it ends.
pub(super) fn serve(
    mut stream: sys::Stream,
    handler: &SyncFn,
    shared: Arc<Shared>,
    id: u64,
    tracked: Tracked,
) {
    let end = requests(&mut stream, handler, &shared, id, &tracked);
    // Counted before the connection leaves the stats, as on the async path.
    finish(&tracked, end);
    drop(tracked);
    drop(stream);
    shared.dedicated.fetch_sub(1, Ordering::Relaxed);
}

fn requests(
    stream: &mut sys::Stream,
    handler: &SyncFn,
    shared: &Shared,
    id: u64,
    tracked: &Tracked,
) -> End {
    let peer = stream.peer_credentials().ok();
    let mut wait = RequestWait::new(shared.idle_timeout);
    let mut body = Vec::new();
    let mut sequence = 0;
    loop {
        if !tracked.enter(Phase::Idle) || shared.is_stopping() {
            return End::Shutdown;
        }
        // A request has begun: it is in flight, and shutdown lets it finish.
        let mut begin = || tracked.begin_request(shared.request_timeout);
        let len = match wait.recv(stream, &mut body, &mut begin) {
            Ok(Some(len)) => len,
            Ok(None) if tracked.is_closing() => return End::Shutdown,
            Ok(None) => return End::ClientClosed,
            Err(_) if tracked.is_closing() => return End::Shutdown,
            Err(e) => {
                return match ErrorKind::of(&e) {
                    ErrorKind::Timeout if wait.begun() => End::RequestTimeout,
                    ErrorKind::Timeout => End::IdleTimeout,
                    _ => End::receiving(e),
                }
            }
        };
        tracked.received((len + HEADER_LEN) as u64);
        if !tracked.enter(Phase::Handling) {
            return End::Shutdown;
        }
        sequence += 1;
        let deadline = wait.deadline();
        let request = Request::new(
            std::mem::take(&mut body),
            peer,
            id,
            sequence,
            deadline,
            tracked.conn(),
        );
        // Until answered, `cut_overdue` and `close_all` cancel the request, and so
        // does any return below that leaves it unanswered.
        let in_flight = tracked.in_flight(sequence);
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(request)));
        // Too late, or cut off: the async path would have given up on this request
        // (dropped its handler) whatever the handler made of its cancellation.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return End::RequestTimeout;
        }
        if tracked.is_closing() {
            return End::Shutdown;
        }
        let Ok(response) = outcome else {
            return End::HandlerPanicked;
        };
        if let Some(reason) = response.failure() {
            return End::HandlerFailed(reason.to_owned());
        }
        if !shared.replies {
            tracked.answered(0);
            in_flight.answered();
            continue;
        }
        if !tracked.enter(Phase::Writing) {
            return End::Shutdown;
        }
        let reply = response.into_body();
        stream.set_deadline(deadline);
        if let Err(e) = stream.send(&reply) {
            return match ErrorKind::of(&e) {
                _ if tracked.is_closing() => End::Shutdown,
                ErrorKind::Timeout => End::RequestTimeout,
                _ => End::sending(e),
            };
        }
        tracked.answered((reply.len() + HEADER_LEN) as u64);
        in_flight.answered();
        body = reply; // keep the allocation for the next request
    }
}

/// A dedicated connection's waits for its requests, kept across requests.
#[derive(Debug)]
struct RequestWait {
    /// The wait allowed for a request to begin.
    idle: Option<Duration>,
    /// Whether the socket's read timeout is `idle`: set only once a wait would
    /// block, so a connection whose request is already there (the usual
    /// connect-request-reply-close client) costs no system call for it.
    idle_installed: bool,
    begun: bool,
    deadline: Option<Instant>,
}

impl RequestWait {
    fn new(idle: Option<Duration>) -> RequestWait {
        RequestWait {
            idle,
            // A fresh socket has no read timeout, which is right for no idle limit.
            idle_installed: idle.is_none(),
            begun: false,
            deadline: None,
        }
    }

    /// Whether the last [`recv`](Self::recv) got as far as beginning a request
    /// (a timeout then is the request's deadline, not the idle timeout).
    fn begun(&self) -> bool {
        self.begun
    }

    /// The current request's deadline.
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn start(&mut self, deadline: Option<Instant>) {
        self.begun = true;
        self.deadline = deadline;
    }

    /// Receives the next request (message mode): waits for its first byte with
    /// the idle timeout, then calls `begin` — which returns the request's
    /// deadline, or `None` to give up (shutdown claimed the connection) — and
    /// reads the rest by that deadline. `Ok(None)`: the client closed between
    /// requests, or `begin` gave up.
    fn recv(
        &mut self,
        stream: &mut sys::Stream,
        out: &mut Vec<u8>,
        begin: &mut dyn FnMut() -> Option<Option<Instant>>,
    ) -> io::Result<Option<usize>> {
        self.begun = false;
        self.deadline = None;
        if stream.has_read_ahead() {
            // The client sent ahead: this request has begun already.
            match begin() {
                Some(deadline) => self.start(deadline),
                None => return Ok(None),
            }
        }
        let mut gave_up = false;
        let got = stream.recv_reading(out, |sock, out| {
            if self.begun {
                return match self.deadline {
                    Some(deadline) => sock.recv_by(out, deadline),
                    // No request deadline: the socket's timeout (the idle timeout).
                    None => sock.recv_waiting(out),
                };
            }
            let n = self.read_idle(sock, out)?;
            if n > 0 {
                match begin() {
                    Some(deadline) => self.start(deadline),
                    None => {
                        // Nothing was delivered yet: reporting an end drops it.
                        gave_up = true;
                        return Ok(0);
                    }
                }
            }
            Ok(n)
        });
        if gave_up {
            out.clear();
            return Ok(None);
        }
        got
    }

    /// Waits for a request to begin, at most the idle timeout.
    fn read_idle(&mut self, sock: sys::Socket<'_>, out: &mut [u8]) -> io::Result<usize> {
        if !self.idle_installed {
            match sock.recv_now(out) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sock.set_read_timeout(self.idle)?;
                    self.idle_installed = true;
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
        if shared.dedicated.load(Ordering::Relaxed) < MAX_DEDICATED
            && dedicate(shared, id, &stream, &self.tracker)
        {
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
        // Past the limit of threads (or out of descriptors for the shutdown
        // handle): serve it as a task, as `run` would.
        let _runtime = self.runtime.enter();
        serve_as_task(stream, shared, id, tracked, &self.tracker, span);
    }
}
