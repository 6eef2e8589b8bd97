//! One connection: read a request, run the handler, write the reply, until the
//! client leaves, a deadline expires or the server shuts down.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handler::Request;
use super::stats::{add, InstanceState, Tracked};
use super::Shared;
use crate::error::ErrorKind;
use crate::frame::HEADER_LEN;
use crate::options::Mode;
use crate::tokio::Stream;

/// Why a connection ended; logged, and counted where the stats say so.
#[derive(Debug)]
enum End {
    /// The client closed between requests (or, in byte mode, after its reply).
    ClientClosed,
    /// The server is shutting down and the connection was idle.
    Shutdown,
    IdleTimeout,
    RequestTimeout,
    Oversize,
    HandlerPanicked,
    /// The handler answered with `Response::fail`.
    HandlerFailed(String),
    Io(io::Error),
}

pub(crate) async fn serve(
    mut stream: Stream,
    shared: Arc<Shared>,
    id: u64,
    tracked: Tracked,
    hard_stop: CancellationToken,
) {
    let end = tokio::select! {
        // Past the grace period: drop the connection whatever it is doing.
        _ = hard_stop.cancelled() => End::Shutdown,
        end = requests(&mut stream, &shared, id, &tracked) => end,
    };
    match &end {
        End::IdleTimeout | End::RequestTimeout => add(&shared.counters.timed_out, 1),
        End::Oversize => add(&shared.counters.rejected_oversize, 1),
        End::HandlerPanicked | End::HandlerFailed(_) => add(&shared.counters.failed, 1),
        _ => {}
    }
    match &end {
        End::Io(e) => tracing::debug!(error = %e, "connection closed"),
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
    loop {
        tracked.set(InstanceState::Reading);
        // Between requests the connection is idle: shutdown closes it at once.
        let started = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return End::Shutdown,
            started = deadline(shared.idle_timeout, stream.wait_data()) => started,
        };
        match started {
            None => return End::IdleTimeout,
            Some(Ok(true)) => {}
            Some(Ok(false)) => return End::ClientClosed,
            Some(Err(e)) => return End::Io(e),
        }
        // A request has begun: it is in flight, and shutdown lets it finish.
        sequence += 1;
        let one = one_request(stream, shared, tracked, &mut body, peer, id, sequence);
        match deadline(shared.request_timeout, one).await {
            None => return End::RequestTimeout,
            Some(Ok(())) => tracked.answered(),
            Some(Err(end)) => return end,
        }
        if stream.mode() == Mode::Byte {
            // Byte mode: one request per connection, ended by the client's half-close.
            return End::ClientClosed;
        }
        if shared.shutdown.is_cancelled() {
            return End::Shutdown;
        }
    }
}

async fn one_request(
    stream: &mut Stream,
    shared: &Shared,
    tracked: &Tracked,
    body: &mut Vec<u8>,
    peer: Option<crate::PeerCredentials>,
    id: u64,
    sequence: u64,
) -> Result<(), End> {
    let received = match stream.mode() {
        Mode::Message => receive_message(stream, body).await?,
        Mode::Byte => receive_until_half_close(stream, body, shared.max_message).await?,
    };
    add(&shared.counters.bytes_in, received);
    tracked.set(InstanceState::Handling);
    let request = Request::new(std::mem::take(body), peer, id, sequence);
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
        return Ok(());
    }
    tracked.set(InstanceState::Writing);
    let reply = response.into_body();
    stream.send(&reply).await.map_err(End::Io)?;
    let framing = if stream.mode() == Mode::Message {
        HEADER_LEN
    } else {
        0
    };
    add(&shared.counters.bytes_out, (reply.len() + framing) as u64);
    *body = reply; // keep the allocation for the next request
    Ok(())
}

async fn receive_message(stream: &mut Stream, body: &mut Vec<u8>) -> Result<u64, End> {
    match stream.recv(body).await {
        Ok(Some(len)) => Ok((len + HEADER_LEN) as u64),
        Ok(None) => Err(End::ClientClosed),
        Err(e) if ErrorKind::of(&e) == ErrorKind::MessageTooLarge => Err(End::Oversize),
        Err(e) => Err(End::Io(e)),
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
                    return Err(End::Oversize);
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

/// `Some(output)`, or `None` if `limit` passed first (no limit: never).
async fn deadline<F: Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}
