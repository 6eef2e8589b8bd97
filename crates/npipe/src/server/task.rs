//! Connections served as tasks: tokio's I/O and timers, the handler run by
//! [`Handler::call`] (an async one in place, a sync one on the blocking pool).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use super::handler::{Handler, Panicked, Request, Response};
use super::requests::{finish, requests, Connection, Start};
use super::stats::Tracked;
use super::Shared;
use crate::error::{err, ErrorKind};
use crate::frame::HEADER_LEN;
use crate::options::Mode;
use crate::tokio::Stream;

/// Serves one connection until it ends. Shutdown closes it by aborting the task
/// (`Counters::close_idle`, `close_all`), so nothing here waits on a shared token:
/// polling one takes its lock, on every poll of every connection.
pub(crate) async fn serve(stream: Stream, shared: Arc<Shared>, id: u64, tracked: Tracked) {
    // One timer for every deadline of the connection. A tokio timer costs a
    // registration in the timer wheel (a lock) when first polled and another when
    // dropped; two timers per request (idle, request) were a large part of the
    // server's per-request cost. This one is kept no later than the deadline in
    // force and re-armed when it fires early (the deadline has moved on since):
    // on a busy connection, about once per timeout period instead of per request.
    let sleep = pin!(tokio::time::sleep_until(first_deadline(&shared)));
    let mut conn = Task {
        stream,
        handler: &shared.handler,
        max_message: shared.max_message,
        sleep,
    };
    let end = requests(&mut conn, &shared, id, &tracked).await;
    finish(&tracked, end);
}

/// A connection served as a task.
struct Task<'a> {
    stream: Stream,
    handler: &'a Handler,
    max_message: u32,
    sleep: Pin<&'a mut Sleep>,
}

impl Connection for Task<'_> {
    fn one_request(&self) -> bool {
        self.stream.mode() == Mode::Byte
    }

    async fn recv(&mut self, body: &mut Vec<u8>, start: &mut Start<'_>) -> io::Result<Option<u64>> {
        let arrived = {
            let wait = pin!(self.stream.wait_data());
            within(self.sleep.as_mut(), start.idle_deadline(), wait).await
        };
        if !arrived.ok_or_else(timed_out)?? || !start.begin() {
            return Ok(None);
        }
        let (stream, max) = (&mut self.stream, self.max_message);
        let receive = pin!(async move {
            match stream.mode() {
                Mode::Message => receive_message(stream, body).await,
                Mode::Byte => receive_until_half_close(stream, body, max).await,
            }
        });
        let received = within(self.sleep.as_mut(), start.deadline(), receive).await;
        received.ok_or_else(timed_out)?
    }

    async fn call(
        &mut self,
        request: Request,
        deadline: Option<Instant>,
    ) -> Option<Result<Response, Panicked>> {
        // Dropped unanswered (the deadline passed, the task was aborted), the
        // request is cancelled (see `Tracked::in_flight`).
        within(
            self.sleep.as_mut(),
            deadline,
            pin!(self.handler.call(request)),
        )
        .await
    }

    async fn send(&mut self, reply: &[u8], deadline: Option<Instant>) -> io::Result<u64> {
        let sent = {
            let send = pin!(self.stream.send(reply));
            within(self.sleep.as_mut(), deadline, send).await
        };
        sent.ok_or_else(timed_out)??;
        let framing = if self.stream.mode() == Mode::Message {
            HEADER_LEN
        } else {
            0
        };
        Ok((reply.len() + framing) as u64)
    }
}

async fn receive_message(stream: &mut Stream, body: &mut Vec<u8>) -> io::Result<Option<u64>> {
    Ok(stream
        .recv(body)
        .await?
        .map(|len| (len + HEADER_LEN) as u64))
}

/// Byte mode: the request is every byte until the client half-closes, at most the
/// maximum message size.
async fn receive_until_half_close(
    stream: &mut Stream,
    body: &mut Vec<u8>,
    max: u32,
) -> io::Result<Option<u64>> {
    let mut request = Vec::new();
    while stream.recv(body).await?.is_some() {
        if request.len() + body.len() > max as usize {
            return Err(err(
                ErrorKind::MessageTooLarge,
                format!("a byte-mode request over the maximum message size ({max} bytes)"),
            ));
        }
        request.extend_from_slice(body);
    }
    *body = request;
    Ok(Some(body.len() as u64))
}

/// The error of a wait whose deadline passed.
fn timed_out() -> io::Error {
    err(ErrorKind::Timeout, "the deadline passed")
}

/// Where a connection's timer starts: no later than any deadline it will have.
fn first_deadline(shared: &Shared) -> tokio::time::Instant {
    let earliest = [shared.idle_timeout, shared.request_timeout]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(FAR);
    tokio::time::Instant::now() + earliest.min(FAR)
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
    let Some(deadline) = deadline.map(tokio::time::Instant::from_std) else {
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
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            // Fired for an earlier deadline: wait on for this one.
            sleep.as_mut().reset(deadline);
        }
    })
    .await
}
