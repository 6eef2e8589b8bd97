//! Requests, responses and the handler that turns one into the other.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

use crate::stream::PeerCredentials;

/// One request received by a [`Server`](super::Server): the message (or, in byte
/// mode, every byte until the client half-closed) and who sent it.
#[derive(Debug, Clone)]
pub struct Request {
    body: Vec<u8>,
    peer: Option<PeerCredentials>,
    connection: u64,
    sequence: u64,
}

impl Request {
    pub(crate) fn new(
        body: Vec<u8>,
        peer: Option<PeerCredentials>,
        connection: u64,
        sequence: u64,
    ) -> Request {
        Request {
            body,
            peer,
            connection,
            sequence,
        }
    }

    /// The request's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The request's bytes, owned.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The client's process id, user id and group id, as far as the OS tells.
    /// `None` only if the OS could not say (the access policy has already admitted
    /// the client either way).
    pub fn peer(&self) -> Option<PeerCredentials> {
        self.peer
    }

    /// The connection this request came on: a number unique within the server,
    /// starting at 1, as in [`InstanceStatus::connection`](super::InstanceStatus).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// Which request of its connection this is, starting at 1.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// The reply to a [`Request`]: one message (message mode) or the bytes written
/// before the server closes the connection (byte mode) — or, from
/// [`Response::fail`], no reply at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    body: Vec<u8>,
    /// Why the handler could not answer; `None` for a reply.
    failure: Option<String>,
}

impl Response {
    /// A reply carrying `body`.
    pub fn new(body: impl Into<Vec<u8>>) -> Response {
        Response {
            body: body.into(),
            failure: None,
        }
    }

    /// Fails this request: the server sends no reply and closes the connection, the
    /// client sees the connection end
    /// ([`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) from
    /// [`call`](crate::call)), and the request counts in [`Stats::failed`](crate::Stats).
    /// Other connections are not affected. `reason` is logged at `debug` level only,
    /// since it may carry request data.
    ///
    /// Any byte string is a valid reply, so npipe has no in-band error message: an
    /// application that wants errors its clients can read puts them in its replies.
    ///
    /// # Examples
    ///
    /// ```
    /// use npipe::Response;
    ///
    /// fn handle(body: &[u8]) -> Response {
    ///     match std::str::from_utf8(body) {
    ///         Ok(text) => Response::new(text.to_uppercase()),
    ///         Err(_) => Response::fail("request is not UTF-8"),
    ///     }
    /// }
    /// assert!(handle(&[0xff]).is_failure());
    /// assert_eq!(handle(b"hi").body(), b"HI");
    /// ```
    pub fn fail(reason: impl Into<String>) -> Response {
        Response {
            body: Vec::new(),
            failure: Some(reason.into()),
        }
    }

    /// Whether this is a failure made by [`Response::fail`].
    pub fn is_failure(&self) -> bool {
        self.failure.is_some()
    }

    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// An empty reply (a zero-length message in message mode).
    pub fn empty() -> Response {
        Response::default()
    }

    /// The reply's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The reply's bytes, owned.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

impl From<Vec<u8>> for Response {
    fn from(body: Vec<u8>) -> Response {
        Response::new(body)
    }
}

impl From<&[u8]> for Response {
    fn from(body: &[u8]) -> Response {
        Response::new(body)
    }
}

impl From<String> for Response {
    fn from(body: String) -> Response {
        Response::new(body)
    }
}

impl From<&str> for Response {
    fn from(body: &str) -> Response {
        Response::new(body)
    }
}

pub(crate) type SyncFn = dyn Fn(Request) -> Response + Send + Sync;
type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
type AsyncFn = dyn Fn(Request) -> BoxFuture + Send + Sync;

/// The request handler, sync or async.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Run off the I/O threads: on a thread serving its connection
    /// (`dedicated.rs`), or handed to tokio's blocking pool per request.
    Sync(Arc<SyncFn>),
    /// Run inside the connection's task, its panics caught.
    Async(Arc<AsyncFn>),
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Handler::Sync(_) => "Handler::Sync",
            Handler::Async(_) => "Handler::Async",
        })
    }
}

/// The handler panicked; the panic was contained to its request.
#[derive(Debug)]
pub(crate) struct Panicked;

impl Handler {
    pub(crate) fn from_sync<F>(handler: F) -> Handler
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        Handler::Sync(Arc::new(handler))
    }

    pub(crate) fn from_async<F, Fut>(handler: F) -> Handler
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        Handler::Async(Arc::new(move |request| Box::pin(handler(request))))
    }

    /// Runs the handler for one request so that a panic fails only this request: a
    /// sync handler on the blocking pool, an async one in place with its panics
    /// caught. Dropping the future abandons the request: an async handler is
    /// dropped; a sync one runs to its end on the blocking pool and its reply is
    /// discarded (threads cannot be stopped).
    pub(crate) async fn call(&self, request: Request) -> Result<Response, Panicked> {
        let task = match self {
            Handler::Sync(f) => {
                let f = Arc::clone(f);
                tokio::task::spawn_blocking(move || f(request))
            }
            Handler::Async(f) => return call_in_place(f.as_ref(), request).await,
        };
        AbortOnDropHandle::new(task).await.map_err(|_| Panicked)
    }
}

/// Runs an async handler inside the connection's task, a panic caught where it
/// happens: a task per request would cost a spawn and a wake-up (often of another
/// worker thread) for every request.
async fn call_in_place(f: &AsyncFn, request: Request) -> Result<Response, Panicked> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::Poll;
    // The handler's state is dropped after a panic, never used again.
    let mut future = catch_unwind(AssertUnwindSafe(|| f(request))).map_err(|_| Panicked)?;
    std::future::poll_fn(move |cx| {
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    })
    .await
}
