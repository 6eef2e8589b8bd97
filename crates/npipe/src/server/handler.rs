//! Requests, responses and the handler that turns one into the other.

use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::stats::Conn;
use crate::peer::PeerCredentials;

/// One request received by a [`Server`](super::Server): the message (or, in byte
/// mode, every byte until the client half-closed), who sent it, and when the
/// server gives up on it.
///
/// # Cancellation
///
/// When the server stops wanting the reply — the request deadline passed, the
/// grace period of a shutdown is over, the server was dropped, or (for a sync
/// handler serving a message-mode connection on Unix) the client closed its
/// connection — the request is *cancelled*: the client has been cut off or is
/// gone, and whatever the handler still does is wasted. An async handler run by its connection is simply dropped
/// then. A sync handler cannot be stopped from outside, and an async one may have
/// started work that outlives it (a task, a child process): they learn of it
/// through [`is_cancelled`](Self::is_cancelled) or
/// [`cancellation`](Self::cancellation), which can also wait for it, without
/// polling, from a thread or a task. A request answered in full is never
/// cancelled; one whose handler failed or panicked is, once its handler returned.
///
/// # Examples
///
/// A sync handler that works in steps and stops when its reply is no longer
/// wanted:
///
/// ```no_run
/// use std::time::Duration;
/// use npipe::{Request, Response, Server};
///
/// fn checksum(request: Request) -> Response {
///     let mut sum = 0u64;
///     for chunk in request.body().chunks(4096) {
///         if request.is_cancelled() {
///             return Response::fail("cancelled");
///         }
///         sum = chunk.iter().fold(sum, |sum, &b| sum.rotate_left(5) ^ u64::from(b));
///     }
///     Response::from(sum.to_string())
/// }
///
/// let server = Server::builder("checksum")
///     .request_timeout(Some(Duration::from_secs(2)))
///     .handler(checksum)
///     .spawn()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A sync handler that runs a child process and kills it when the request is
/// cancelled. Sync handlers run on the blocking threads of the server's tokio
/// runtime, so they can wait for two things at once with
/// `Handle::current().block_on`:
///
/// ```no_run
/// use npipe::{Request, Response};
///
/// fn run_job(request: Request) -> Response {
///     let cancellation = request.cancellation();
///     tokio::runtime::Handle::current().block_on(async {
///         let mut job = match tokio::process::Command::new("sleep")
///             .arg("60")
///             .kill_on_drop(true)
///             .spawn()
///         {
///             Ok(job) => job,
///             Err(e) => return Response::fail(e.to_string()),
///         };
///         tokio::select! {
///             status = job.wait() => Response::from(format!("{status:?}")),
///             // Dropping `job` kills it.
///             _ = cancellation.cancelled() => Response::fail("cancelled"),
///         }
///     })
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    pub(super) body: Vec<u8>,
    pub(super) peer: Option<PeerCredentials>,
    pub(super) connection: u64,
    pub(super) sequence: u64,
    pub(super) deadline: Option<Instant>,
    /// Its connection, where the server marks it cancelled.
    pub(super) conn: Arc<Conn>,
}

impl Request {
    /// The request's bytes.
    ///
    /// They come from the client as they are: parse them, and answer a malformed
    /// request with a reply or [`Response::fail`], never a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// use npipe::{Request, Response};
    ///
    /// // A handler that adds two little-endian u32s.
    /// fn add(request: Request) -> Response {
    ///     let Ok(bytes) = <[u8; 8]>::try_from(request.body()) else {
    ///         return Response::fail("expected 8 bytes");
    ///     };
    ///     let a = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    ///     let b = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    ///     Response::new(a.wrapping_add(b).to_le_bytes())
    /// }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use npipe::{Request, Response};
    ///
    /// // Only root may ask for the secret; everyone else gets a public answer.
    /// fn handle(request: Request) -> Response {
    ///     match request.peer().and_then(|peer| peer.uid()) {
    ///         Some(0) => Response::from("the secret"),
    ///         _ => Response::from("public information"),
    ///     }
    /// }
    /// ```
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

    /// When the server gives up on this request: its first byte's arrival plus the
    /// request deadline ([`ServerBuilder::request_timeout`](super::ServerBuilder::request_timeout)).
    /// `None` without a request deadline. The reply must be written by then, so a
    /// handler that can shorten its work (a timeout of its own, a query's limit)
    /// should finish well before it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use npipe::{Request, Response};
    ///
    /// fn handle(request: Request) -> Response {
    ///     // Leave 100 ms of the deadline for writing the reply.
    ///     let budget = request
    ///         .deadline()
    ///         .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    ///         .map_or(Duration::from_secs(5), |left| left.saturating_sub(Duration::from_millis(100)));
    ///     Response::from(format!("I may work for {} ms", budget.as_millis()))
    /// }
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the request has been cancelled: its reply is no longer wanted (see
    /// [Cancellation](Self#cancellation)). Cheap: one atomic load.
    pub fn is_cancelled(&self) -> bool {
        self.conn.cancels.is_cancelled(self.sequence)
    }

    /// A handle that tells when this request is cancelled, to check, await, or
    /// wait for on a thread; clones of it may go to other threads and tasks and
    /// outlive the request.
    ///
    /// # Examples
    ///
    /// Work handed to a thread of its own stops when the request is cancelled:
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use npipe::{Request, Response};
    ///
    /// fn handle(request: Request) -> Response {
    ///     let cancellation = request.cancellation();
    ///     let (tx, rx) = mpsc::channel();
    ///     std::thread::spawn(move || {
    ///         let mut done = 0;
    ///         while done < 100 && !cancellation.is_cancelled() {
    ///             std::thread::sleep(Duration::from_millis(10)); // one step of the work
    ///             done += 1;
    ///         }
    ///         let _ = tx.send(done);
    ///     });
    ///     match rx.recv() {
    ///         Ok(100) => Response::from("done"),
    ///         _ => Response::fail("cancelled"),
    ///     }
    /// }
    /// ```
    pub fn cancellation(&self) -> Cancellation {
        Cancellation {
            token: self.conn.cancels.token(self.sequence),
        }
    }
}

/// Tells when a [`Request`] is cancelled: the server no longer wants its reply
/// (see [Cancellation](Request#cancellation)). From [`Request::cancellation`];
/// cheap to clone, and usable from any thread or task.
///
/// # Examples
///
/// ```
/// use npipe::{Request, Response};
///
/// // Counts the request's zero bytes, and gives up once the reply is not wanted.
/// fn zeros(request: Request) -> Response {
///     let cancellation = request.cancellation();
///     let mut count = 0;
///     for part in request.body().chunks(64 * 1024) {
///         if cancellation.is_cancelled() {
///             return Response::fail("cancelled");
///         }
///         count += part.iter().filter(|&&b| b == 0).count();
///     }
///     Response::from(count.to_string())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Cancellation {
    token: CancellationToken,
}

impl Cancellation {
    /// Whether the request has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when the request is cancelled (never, if its reply is written).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing; a new one completes just
    /// the same.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{Request, Response};
    ///
    /// // Work that goes on in a task of its own stops with the request.
    /// async fn handle(request: Request) -> Response {
    ///     let cancellation = request.cancellation();
    ///     let work = tokio::spawn(async move {
    ///         tokio::select! {
    ///             _ = cancellation.cancelled() => None,
    ///             _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => Some(b"done".to_vec()),
    ///         }
    ///     });
    ///     match work.await {
    ///         Ok(Some(reply)) => Response::from(reply),
    ///         _ => Response::fail("cancelled"),
    ///     }
    /// }
    /// ```
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Blocks the calling thread until the request is cancelled (forever, if its
    /// reply is written: wait on a thread that is dropped with the work, or use
    /// [`wait_timeout`](Self::wait_timeout)). The thread sleeps meanwhile and is
    /// woken by the cancellation itself, without polling.
    ///
    /// # Panics
    ///
    /// Never; it may be called inside or outside a tokio runtime, though blocking a
    /// runtime's worker thread stalls its tasks.
    pub fn wait(&self) {
        self.block_until(None);
    }

    /// Blocks the calling thread until the request is cancelled or `timeout` has
    /// passed; `true` if it was cancelled. As [`wait`](Self::wait), without polling.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::{Request, Response};
    ///
    /// // Retries a busy resource until it is free or the request is cancelled.
    /// fn handle(request: Request, try_take: impl Fn() -> Option<Vec<u8>>) -> Response {
    ///     let cancellation = request.cancellation();
    ///     loop {
    ///         if let Some(reply) = try_take() {
    ///             return Response::from(reply);
    ///         }
    ///         if cancellation.wait_timeout(Duration::from_millis(50)) {
    ///             return Response::fail("cancelled");
    ///         }
    ///     }
    /// }
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.block_until(Some(Instant::now().checked_add(timeout)).flatten()) || self.is_cancelled()
    }

    /// Parks the thread until cancelled or `deadline` (`None`: no deadline, or
    /// one too far to represent).
    fn block_until(&self, deadline: Option<Instant>) -> bool {
        block_on_until(pin!(self.token.cancelled()), deadline).is_some()
    }
}

/// Runs `future` to its end on the calling thread, which sleeps while it waits
/// (the dedicated connections, Unix, whose futures are ready when first polled:
/// they block instead of waiting).
#[cfg(unix)]
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    // Nothing to wake when it is ready at once: spare making a waker.
    if let Poll::Ready(output) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return output;
    }
    loop {
        // Without a deadline, it returns only with the output.
        if let Some(output) = block_on_until(future.as_mut(), None) {
            return output;
        }
    }
}

/// Runs `future` on the calling thread, which sleeps while it waits and is woken
/// by the future's own waker, without polling; `None` if `deadline` passes first.
fn block_on_until<F: Future>(
    mut future: Pin<&mut F>,
    deadline: Option<Instant>,
) -> Option<F::Output> {
    /// Wakes a parked thread.
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        // A spurious wake-up polls again.
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}

/// A connection's record of which of its requests was cancelled. At most one
/// ever is: a cancelled request ends its connection.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    /// The sequence number of the cancelled request; 0: none.
    cancelled: AtomicU64,
    /// The token of the request whose handler asked for one, made on demand so
    /// that requests that never ask cost nothing.
    token: Mutex<Option<(u64, CancellationToken)>>,
}

impl Cancels {
    /// Cancels request `sequence` (1 or more).
    pub(crate) fn cancel(&self, sequence: u64) {
        // Before taking the lock: `token` checks it under the lock, so a token
        // made at any moment is cancelled by one side or the other.
        self.cancelled.store(sequence, Ordering::SeqCst);
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((of, token)) = &*token {
            if *of == sequence {
                token.cancel();
            }
        }
    }

    fn is_cancelled(&self, sequence: u64) -> bool {
        self.cancelled.load(Ordering::SeqCst) == sequence
    }

    /// The token of request `sequence`, made now if needed.
    fn token(&self, sequence: u64) -> CancellationToken {
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((of, token)) = &*slot {
            if *of == sequence {
                return token.clone();
            }
        }
        let token = CancellationToken::new();
        if self.is_cancelled(sequence) {
            token.cancel();
        }
        *slot = Some((sequence, token.clone()));
        token
    }
}

/// The reply to a [`Request`]: one message (message mode) or the bytes written
/// before the server closes the connection (byte mode) — or, from
/// [`Response::fail`], no reply at all.
///
/// Made from bytes or text with [`Response::new`] or `From`.
///
/// # Examples
///
/// ```
/// use npipe::Response;
///
/// assert_eq!(Response::new(b"ok".to_vec()).body(), b"ok");
/// assert_eq!(Response::from("ok").body(), b"ok");
/// assert_eq!(Response::from(String::from("ok")).into_body(), b"ok".to_vec());
/// assert!(Response::empty().body().is_empty());
/// assert!(Response::fail("the request is not UTF-8").is_failure());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    body: Vec<u8>,
    /// Why the handler could not answer; `None` for a reply.
    failure: Option<String>,
}

impl Response {
    /// A reply carrying `body`.
    ///
    /// # Examples
    ///
    /// ```
    /// use npipe::{Request, Response};
    ///
    /// fn handle(request: Request) -> Response {
    ///     let mut reply = b"Response to: ".to_vec();
    ///     reply.extend_from_slice(request.body());
    ///     Response::new(reply)
    /// }
    /// ```
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
