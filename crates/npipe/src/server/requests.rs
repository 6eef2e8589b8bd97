//! A connection's requests, one after the other: the loop written once for the
//! connections served as tasks (`task.rs`) and on threads of their own
//! (`dedicated.rs`), with its phases, deadlines, end reasons, stats and request
//! cancellation.
//!
//! The loop asks a [`Connection`] to receive a request, run the handler and send
//! the reply; the two kinds of connection do it their own way (tokio's I/O and
//! timers; blocking calls that end by the deadline).

use std::io;
use std::time::{Duration, Instant};

use super::handler::{Panicked, Request, Response};
use super::stats::{Phase, Tracked, Unanswered};
use super::Shared;
use crate::error::ErrorKind;

/// What the request loop needs of a connection. A wait that outlasts its
/// deadline ends with an error of [`ErrorKind::Timeout`].
pub(super) trait Connection {
    /// Whether the connection carries one request only (byte mode: the request
    /// ends at the client's half-close, and the reply at the server's close).
    fn one_request(&self) -> bool;

    /// Receives the next request into `body`: waits for its first byte at most
    /// the idle timeout (until [`Start::idle_deadline`]), then calls
    /// [`Start::begin`] and, unless it gives up, receives the rest by the
    /// deadline it set. The bytes received, frame headers included; `Ok(None)`
    /// if the client closed the connection first, or `begin` gave up.
    async fn recv(&mut self, body: &mut Vec<u8>, start: &mut Start<'_>) -> io::Result<Option<u64>>;

    /// Runs the handler on `request`, a panic contained; `None` if `deadline`
    /// passed first and the handler was given up.
    async fn call(
        &mut self,
        request: Request,
        deadline: Option<Instant>,
    ) -> Option<Result<Response, Panicked>>;

    /// Sends `reply` by `deadline`: the bytes sent, frame header included.
    async fn send(&mut self, reply: &[u8], deadline: Option<Instant>) -> io::Result<u64>;
}

/// The wait for a request and its start, signalled by the connection when its
/// first byte has arrived.
#[derive(Debug)]
pub(super) struct Start<'a> {
    tracked: &'a Tracked,
    idle: Option<Duration>,
    limit: Option<Duration>,
    begun: bool,
    deadline: Option<Instant>,
}

impl Start<'_> {
    /// Until when the connection may wait for the request to begin: the idle
    /// timeout from the end of the last one (`None`: forever).
    pub(super) fn idle_deadline(&self) -> Option<Instant> {
        let idle = self.idle?;
        self.tracked.since().checked_add(idle)
    }

    /// A request has begun: it is in flight now, and shutdown lets it finish.
    /// `false` if shutdown has claimed the connection: give the request up.
    pub(super) fn begin(&mut self) -> bool {
        match self.tracked.begin_request(self.limit) {
            Some(deadline) => {
                self.begun = true;
                self.deadline = deadline;
                true
            }
            None => false,
        }
    }

    /// Whether the request has begun.
    pub(super) fn begun(&self) -> bool {
        self.begun
    }

    /// The deadline of the request begun (`None`: no deadline).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Why a connection ended; logged, and counted where the stats say so.
#[derive(Debug)]
pub(super) enum End {
    /// The client closed between requests (or, in byte mode, after its reply).
    ClientClosed,
    /// The server is shutting down and the connection was idle.
    Shutdown,
    IdleTimeout,
    RequestTimeout,
    /// The client announced a request over the maximum message size; `text`: the
    /// length's bytes looked like text (a byte-mode client, most likely).
    Oversize {
        text: bool,
    },
    HandlerPanicked,
    /// The handler answered with `Response::fail`.
    HandlerFailed(String),
    /// The handler's reply is over the maximum message size: nothing was sent.
    ReplyTooLarge(io::Error),
    Io(io::Error),
}

/// Serves the requests of a connection until it ends, and says why it ended.
pub(super) async fn requests(
    conn: &mut impl Connection,
    shared: &Shared,
    id: u64,
    tracked: &Tracked,
) -> End {
    let mut body = Vec::new();
    let mut sequence = 0;
    loop {
        if !tracked.enter(Phase::Idle) || shared.is_stopping() {
            return End::Shutdown;
        }
        // Between requests the connection is idle: shutdown closes it at once.
        let mut start = Start {
            tracked,
            idle: shared.idle_timeout,
            limit: shared.request_timeout,
            begun: false,
            deadline: None,
        };
        let received = conn.recv(&mut body, &mut start).await;
        let received = match received {
            Ok(Some(bytes)) => bytes,
            // Shutdown woke the connection from its wait.
            Ok(None) | Err(_) if tracked.is_closing() => return End::Shutdown,
            Ok(None) => return End::ClientClosed,
            Err(e) if ErrorKind::of(&e) == ErrorKind::Timeout && start.begun() => {
                return End::RequestTimeout
            }
            Err(e) if ErrorKind::of(&e) == ErrorKind::Timeout => return End::IdleTimeout,
            Err(e) => return End::receiving(e),
        };
        tracked.received(received);
        if !tracked.enter(Phase::Handling) {
            return End::Shutdown;
        }
        sequence += 1;
        let deadline = start.deadline();
        let request = Request {
            body: std::mem::take(&mut body),
            peer: tracked.peer(),
            connection: id,
            sequence,
            deadline,
            conn: tracked.conn(),
        };
        // Until answered, the hard stop and (for dedicated connections) the
        // overdue cut cancel the request, and so does any return below that
        // leaves it unanswered (the task's abort included).
        let in_flight = tracked.in_flight(sequence);
        let Some(outcome) = conn.call(request, deadline).await else {
            return End::RequestTimeout;
        };
        // Too late, or cut off: the reply is no longer wanted, whatever the
        // handler made of its cancellation.
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
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
        if shared.replies {
            if !tracked.enter(Phase::Writing) {
                return End::Shutdown;
            }
            let reply = response.into_body();
            match conn.send(&reply, deadline).await {
                Ok(sent) => tracked.answered(sent),
                Err(_) if tracked.is_closing() => return End::Shutdown,
                Err(e) if ErrorKind::of(&e) == ErrorKind::Timeout => return End::RequestTimeout,
                Err(e) => return End::sending(e),
            }
            body = reply; // keep the allocation for the next request
        } else {
            // An inbound pipe: the server cannot write, the handler's reply is dropped.
            tracked.answered(0);
        }
        in_flight.answered();
        if conn.one_request() {
            return End::ClientClosed;
        }
    }
}

impl End {
    /// The end of a connection whose request could not be received.
    fn receiving(e: io::Error) -> End {
        match ErrorKind::of(&e) {
            ErrorKind::MessageTooLarge => End::Oversize {
                text: e.to_string().contains(crate::frame::BYTE_MODE_HINT),
            },
            _ => End::Io(e),
        }
    }

    /// The end of a connection whose reply could not be sent (not for a deadline).
    fn sending(e: io::Error) -> End {
        match ErrorKind::of(&e) {
            ErrorKind::MessageTooLarge => End::ReplyTooLarge(e),
            _ => End::Io(e),
        }
    }
}

/// Counts and logs how a connection ended: a request in flight ends unanswered,
/// counted once (see [`Stats`](super::Stats)).
pub(super) fn finish(tracked: &Tracked, end: End) {
    match &end {
        End::IdleTimeout => tracked.timed_out(),
        End::RequestTimeout => {
            tracked.timed_out();
            tracked.unanswered(Unanswered::TimedOut);
        }
        End::Oversize { .. } => tracked.unanswered(Unanswered::Oversize),
        // The client went away or broke the framing mid-request, the handler
        // failed, or shutdown cut the request off.
        _ => tracked.unanswered(Unanswered::Failed),
    }
    match &end {
        End::Io(e) => tracing::debug!(error = %e, "connection closed"),
        // Not the length itself: when it is text, it is the client's bytes.
        End::Oversize { text: true } => tracing::debug!(
            "a request over the maximum message size: its length looks like text, so the client may be writing in byte mode; connection closed"
        ),
        End::ReplyTooLarge(e) => {
            tracing::warn!(error = %e, "the handler's reply is over the maximum message size; connection closed without a reply")
        }
        End::HandlerPanicked => {
            tracing::warn!("the handler panicked; connection closed without a reply")
        }
        End::HandlerFailed(reason) => {
            tracing::info!("the handler failed a request; connection closed without a reply")
            ;
            tracing::debug!(%reason, "handler failure");
        }
        other => tracing::debug!(reason = ?other, "connection closed"),
    }
}
