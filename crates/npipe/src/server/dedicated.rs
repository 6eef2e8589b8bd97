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
//! The same semantics as the async path (`connection.rs`), kept by other means:
//! - idle timeout: the socket's read timeout between requests; request deadline:
//!   the read and write timeouts set to the time left (`RequestWait`, `send_by`);
//! - graceful shutdown: idle connections are woken from their blocking read by
//!   `shutdown(SHUT_RD)` (`Counters::close_idle`); whether a connection is idle
//!   or has a request in flight is settled by one compare-and-swap on its phase;
//! - the hard stop after the grace period shuts every socket down and stops
//!   waiting for threads still inside a handler (`Counters::close_all`).

use std::os::fd::AsRawFd;
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
use crate::sys::RequestWait;
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

/// Cuts off dedicated connections whose handler overran the request deadline
/// ([`Counters::cut_overdue`](super::stats::Counters::cut_overdue)), checking
/// every twentieth of the deadline (at most every second), until dropped.
pub(super) async fn cut_overdue(shared: Arc<Shared>, limit: Duration) {
    let period = (limit / 20).clamp(Duration::from_millis(1), Duration::from_secs(1));
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
    shared.counters.dedicate(
        id,
        Wake {
            fd: stream.as_raw_fd(),
            token: Some(tracker.token()),
        },
    );
    shared.dedicated.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| serve(stream, handler.as_ref(), shared, id, tracked));
    });
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
    finish(&shared, end);
    // Unregister the socket before closing it: the shutdown paths use its
    // descriptor while it is registered.
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
        let len = match stream.recv_request(&mut body, &mut wait, &mut begin) {
            Ok(Some(len)) => len,
            Ok(None) if tracked.is_closing() => return End::Shutdown,
            Ok(None) => return End::ClientClosed,
            Err(_) if tracked.is_closing() => return End::Shutdown,
            Err(e) => {
                return match ErrorKind::of(&e) {
                    ErrorKind::Timeout if wait.begun() => End::RequestTimeout,
                    ErrorKind::Timeout => End::IdleTimeout,
                    ErrorKind::MessageTooLarge => End::Oversize,
                    _ => End::Io(e),
                }
            }
        };
        tracked.received((len + HEADER_LEN) as u64);
        if !tracked.enter(Phase::Handling) {
            return End::Shutdown;
        }
        sequence += 1;
        let request = Request::new(std::mem::take(&mut body), peer, id, sequence);
        let Ok(response) = catch_unwind(AssertUnwindSafe(|| handler(request))) else {
            return End::HandlerPanicked;
        };
        if let Some(reason) = response.failure() {
            return End::HandlerFailed(reason.to_owned());
        }
        let deadline = wait.deadline();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Too late: the async path would have given up on this request too.
            return End::RequestTimeout;
        }
        if !shared.replies {
            tracked.answered(0);
            continue;
        }
        if !tracked.enter(Phase::Writing) {
            return End::Shutdown;
        }
        let reply = response.into_body();
        if let Err(e) = stream.send_by(&reply, deadline) {
            return match ErrorKind::of(&e) {
                _ if tracked.is_closing() => End::Shutdown,
                ErrorKind::Timeout => End::RequestTimeout,
                _ => End::Io(e),
            };
        }
        tracked.answered((reply.len() + HEADER_LEN) as u64);
        body = reply; // keep the allocation for the next request
    }
}
