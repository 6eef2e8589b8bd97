//! One connection: read a request, run the handler, write the reply, until the
//! client leaves, a deadline expires or the server shuts down.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::handler::Request;
use super::stats::{Phase, Tracked, Unanswered};
use super::Shared;
use crate::error::ErrorKind;
use crate::frame::HEADER_LEN;
use crate::options::Mode;
use crate::tokio::Stream;

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

impl End {
    /// The end of a connection whose request could not be received.
    pub(super) fn receiving(e: io::Error) -> End {
        match ErrorKind::of(&e) {
            ErrorKind::MessageTooLarge => End::Oversize {
                text: e.to_string().contains(crate::frame::BYTE_MODE_HINT),
            },
            _ => End::Io(e),
        }
    }

    /// The end of a connection whose reply could not be sent (not for a deadline).
    pub(super) fn sending(e: io::Error) -> End {
        match ErrorKind::of(&e) {
            ErrorKind::MessageTooLarge => End::ReplyTooLarge(e),
            _ => End::Io(e),
        }
    }
}

/// Serves one connection until it ends. Shutdown closes it by aborting the task
/// (`Counters::close_idle`, `close_all`), so nothing here waits on a shared token:
/// polling one takes its lock, on every poll of every connection.
pub(crate) async fn serve(mut stream: Stream, shared: Arc<Shared>, id: u64, tracked: Tracked) {
    let end = requests(&mut stream, &shared, id, &tracked).await;
    finish(&tracked, end);
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
            tracing::info!("the handler failed a request; connection closed without a reply");
            tracing::debug!(%reason, "handler failure");
        }
        other => tracing::debug!(reason = ?other, "connection closed"),
    }
}

async fn requests(stream: &mut Stream, shared: &Shared, id: u64, tracked: &Tracked) -> End {
    let peer = stream.peer_credentials().ok();
    let mut sequence = 0;
    let mut body = Vec::new();
    // One timer for every deadline of the connection. A tokio timer costs a
    // registration in the timer wheel (a lock) when first polled and another when
    // dropped; two timers per request (idle, request) were a large part of the
    // server's per-request cost. This one is kept no later than the deadline in
    // force and re-armed when it fires early (the deadline has moved on since):
    // on a busy connection, about once per timeout period instead of per request.
    let sleep = tokio::time::sleep_until(first_deadline(shared));
    tokio::pin!(sleep);
    loop {
        if !tracked.enter(Phase::Idle) || shared.is_stopping() {
            return End::Shutdown;
        }
        // Between requests the connection is idle: shutdown closes it at once.
        let idle = after(tracked, shared.idle_timeout);
        match within(sleep.as_mut(), idle, pin!(stream.wait_data())).await {
            None => return End::IdleTimeout,
            Some(Ok(true)) => {}
            Some(Ok(false)) => return End::ClientClosed,
            Some(Err(e)) => return End::Io(e),
        }
        // A request has begun: it is in flight, and shutdown lets it finish.
        if !tracked.enter(Phase::Reading) {
            return End::Shutdown;
        }
        sequence += 1;
        let deadline = after(tracked, shared.request_timeout);
        let byte_mode = stream.mode() == Mode::Byte;
        let one = pin!(one_request(
            stream, shared, tracked, &mut body, peer, id, sequence, deadline
        ));
        match within(sleep.as_mut(), deadline, one).await {
            None => return End::RequestTimeout,
            Some(Ok(())) => {}
            Some(Err(end)) => return end,
        }
        if byte_mode {
            // Byte mode: one request per connection, ended by the client's half-close.
            return End::ClientClosed;
        }
    }
}

// One argument per thing a request needs; a struct would only move them.
#[allow(clippy::too_many_arguments)]
async fn one_request(
    stream: &mut Stream,
    shared: &Shared,
    tracked: &Tracked,
    body: &mut Vec<u8>,
    peer: Option<crate::PeerCredentials>,
    id: u64,
    sequence: u64,
    deadline: Option<Instant>,
) -> Result<(), End> {
    let received = match stream.mode() {
        Mode::Message => receive_message(stream, body).await?,
        Mode::Byte => receive_until_half_close(stream, body, shared.max_message).await?,
    };
    tracked.received(received);
    tracked.enter(Phase::Handling);
    let request = Request::new(
        std::mem::take(body),
        peer,
        id,
        sequence,
        deadline.map(Instant::into_std),
        tracked.conn(),
    );
    // Dropped unanswered (the deadline passed and `within` dropped this future,
    // the task was aborted, the handler failed): the request is cancelled.
    let in_flight = tracked.in_flight(sequence);
    let response = shared
        .handler
        .call(request)
        .await
        .map_err(|_| End::HandlerPanicked)?;
    if let Some(reason) = response.failure() {
        return Err(End::HandlerFailed(reason.to_owned()));
    }
    if !shared.replies {
        // An inbound pipe: the server cannot write, the handler's reply is dropped.
        tracked.answered(0);
        in_flight.answered();
        return Ok(());
    }
    if !tracked.enter(Phase::Writing) {
        // Cut off by the hard stop while the handler ran: no reply.
        return Err(End::Shutdown);
    }
    let reply = response.into_body();
    stream.send(&reply).await.map_err(End::sending)?;
    let framing = if stream.mode() == Mode::Message {
        HEADER_LEN
    } else {
        0
    };
    tracked.answered((reply.len() + framing) as u64);
    in_flight.answered();
    *body = reply; // keep the allocation for the next request
    Ok(())
}

async fn receive_message(stream: &mut Stream, body: &mut Vec<u8>) -> Result<u64, End> {
    match stream.recv(body).await {
        Ok(Some(len)) => Ok((len + HEADER_LEN) as u64),
        Ok(None) => Err(End::ClientClosed),
        Err(e) => Err(End::receiving(e)),
    }
}

/// Byte mode: the request is every byte until the client half-closes, at most the
/// maximum message size.
async fn receive_until_half_close(
    stream: &mut Stream,
    body: &mut Vec<u8>,
    max: u32,
) -> Result<u64, End> {
    let mut request = Vec::new();
    loop {
        match stream.recv(body).await {
            Ok(Some(_)) => {
                if request.len() + body.len() > max as usize {
                    return Err(End::Oversize { text: false });
                }
                request.extend_from_slice(body);
            }
            Ok(None) => break,
            Err(e) => return Err(End::Io(e)),
        }
    }
    *body = request;
    Ok(body.len() as u64)
}

/// The deadline of the phase just entered, if it may last `limit`.
fn after(tracked: &Tracked, limit: Option<Duration>) -> Option<Instant> {
    limit.map(|limit| Instant::from_std(tracked.since()) + limit.min(FAR))
}

/// Where a connection's timer starts: no later than any deadline it will have.
fn first_deadline(shared: &Shared) -> Instant {
    let earliest = [shared.idle_timeout, shared.request_timeout]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(FAR);
    Instant::now() + earliest.min(FAR)
}

/// Longer than any timeout worth waiting for; tokio's timer saturates beyond ~2 years.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// `Some(output)`, or `None` if `deadline` passed first (no deadline: never).
/// `future` is pinned by the caller: moving a large future into this one would
/// cost a copy per request.
async fn within<F: Future>(
    mut sleep: Pin<&mut Sleep>,
    deadline: Option<Instant>,
    mut future: Pin<&mut F>,
) -> Option<F::Output> {
    let Some(deadline) = deadline else {
        return Some(future.await);
    };
    if deadline < sleep.deadline() {
        sleep.as_mut().reset(deadline);
    }
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        loop {
            ready!(sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            // Fired for an earlier deadline: wait on for this one.
            sleep.as_mut().reset(deadline);
        }
    })
    .await
}
