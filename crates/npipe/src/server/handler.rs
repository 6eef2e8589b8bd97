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
/// before the server closes the connection (byte mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    body: Vec<u8>,
}

impl Response {
    /// A reply carrying `body`.
    pub fn new(body: impl Into<Vec<u8>>) -> Response {
        Response { body: body.into() }
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
        Response { body }
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

type SyncFn = dyn Fn(Request) -> Response + Send + Sync;
type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
type AsyncFn = dyn Fn(Request) -> BoxFuture + Send + Sync;

/// The request handler, sync or async.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Run on tokio's blocking pool, off the I/O threads.
    Sync(Arc<SyncFn>),
    /// Run as its own task.
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

    /// Runs the handler for one request in a task of its own, so that a panic fails
    /// only this request. Dropping the future abandons the request: an async handler
    /// is aborted; a sync one runs to its end on the blocking pool and its reply is
    /// discarded (threads cannot be stopped).
    pub(crate) async fn call(&self, request: Request) -> Result<Response, Panicked> {
        let task = match self {
            Handler::Sync(f) => {
                let f = Arc::clone(f);
                tokio::task::spawn_blocking(move || f(request))
            }
            Handler::Async(f) => tokio::spawn(f(request)),
        };
        AbortOnDropHandle::new(task).await.map_err(|_| Panicked)
    }
}
