//! A managed multi-instance pipe server: the original `ServerNamedPipe` +
//! `PipeManager`, on tokio.
//!
//! [`Server`] accepts clients, reads each request, runs a handler (sync on threads
//! of tokio's blocking pool, or async), writes the reply, and keeps going until the
//! client leaves. See [`Server`] for the wire behaviour, deadlines and shutdown.
//!
//! Its main types are also at the crate root (`npipe::Server`, `npipe::Request`,
//! ...); [`InstanceState`] and [`InstanceStatus`] live here only.
//!
//! # Examples
//!
//! ```no_run
//! use npipe::server::{Response, Server};
//!
//! let server = Server::builder("demo")
//!     .handler(|request| Response::new(request.into_body()))
//!     .spawn()?;
//! server.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(unix)]
mod dedicated;
mod handler;
mod requests;
mod spawn;
mod stats;
mod task;

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use handler::{Cancellation, Request, Response};
pub use spawn::SpawnedServer;
pub use stats::{InstanceState, InstanceStatus, Stats};

use self::handler::Handler;
use self::stats::{add, Counters};
use crate::error::err;
use crate::name::{Address, PipeName, ToPipeName};
use crate::options::{Direction, ListenerOptions};
use crate::tokio::Listener;
use crate::ErrorKind;

/// Default time a connection may stay idle between requests: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default deadline for one request (read + handle + write): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time in-flight requests get to finish at shutdown: 5 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A pipe server: a pool of instances, a request handler, deadlines, graceful
/// shutdown and stats.
///
/// Built with [`Server::builder`]; [`ServerBuilder::bind`] creates the pipe inside
/// your tokio runtime and [`Server::run`] serves it, or [`ServerBuilder::spawn`] runs
/// it on background threads with a runtime of its own, for programs that are not
/// async.
///
/// # Requests and replies
///
/// - **Message mode** (the default): every message from the client is a request and
///   the handler's [`Response`] is sent back as one message. A connection carries any
///   number of requests (persistent), or just one: the original client pattern
///   (connect, request, reply, close, as [`crate::call`] does) needs nothing special.
/// - **Byte mode**: the request is every byte the client sends until it half-closes
///   (`shutdown(Write)`); the reply is written and the server closes the connection.
/// - An inbound pipe ([`Direction::Inbound`]) runs the handler and sends nothing
///   back. Outbound pipes cannot be served (the server would never read a request).
///
/// # Errors on the wire
///
/// Every byte sequence is a valid reply, so npipe never invents an in-band error
/// message. When the server cannot produce a reply — the handler panicked or failed,
/// its reply is over the maximum message size, the request deadline expired, the
/// client announced a message over the maximum size — it **closes the connection
/// without replying**, and counts the request once (see [`Stats`]). The client's `recv` then returns
/// `None` (end of stream) or fails with
/// [`ErrorKind::Disconnected`], and [`crate::call`]
/// fails with `Disconnected`. Nothing else is affected: other connections, and the
/// server, carry on. A protocol that needs application errors encodes them in its
/// replies.
///
/// # Deadlines
///
/// - Idle timeout ([`ServerBuilder::idle_timeout`], default 60 s): how long a
///   connection may wait for the first byte of its next request.
/// - Request deadline ([`ServerBuilder::request_timeout`], default 30 s): from the first
///   byte of a request to the last byte of its reply (read + handle + write), so a
///   client that sends half a message and stalls frees its instance.
///
/// Expired connections are closed and counted in [`Stats::timed_out`] (and their
/// requests in [`Stats::requests_timed_out`]). The request is then cancelled
/// ([`Request::cancellation`]): an async handler run by its connection is dropped; a
/// sync handler still running finishes on its thread (its reply is discarded), so it
/// should watch for the cancellation and stop early — and so should any work a
/// handler started that may outlive it (tasks, child processes). (On Unix a sync
/// handler's instance counts against `max_instances` until it returns.)
/// [`Request::deadline`] tells a handler the deadline ahead.
///
/// # Back-pressure
///
/// With `max_instances` set, at most that many clients are connected; the next ones
/// wait in the kernel and get [`PipeBusy`](crate::ErrorKind::PipeBusy) after their
/// connect timeout, never a silent drop.
///
/// # Shutdown
///
/// [`ServerHandle::shutdown`] stops accepting at once (the pipe disappears from the
/// namespace, so new clients get `NotFound`; clients queued but not yet accepted are
/// disconnected — except on a socket a service manager passed, which it keeps:
/// see [`ServerBuilder::activation`]), closes idle connections, and lets requests in flight finish within
/// the grace period ([`ServerBuilder::shutdown_grace`], default 5 s); what is still
/// running after that is cut off and its requests cancelled. Then [`Server::run`]
/// returns, without waiting for sync handlers that ignore the cancellation.
///
/// # Examples
///
/// ```no_run
/// use npipe::{Response, Server};
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let server = Server::builder("demo")
///         .handler(|request| {
///             let mut reply = b"Response to: ".to_vec();
///             reply.extend_from_slice(request.body());
///             Response::from(reply)
///         })
///         .bind()?;
///     server.run_until(tokio::signal::ctrl_c()).await
/// }
/// ```
pub struct Server {
    listener: Arc<Listener>,
    shared: Arc<Shared>,
    shutdown_grace: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", self.listener.name())
            .field("handler", &self.shared.handler)
            .finish_non_exhaustive()
    }
}

/// Everything the connection tasks share.
#[derive(Debug)]
struct Shared {
    handler: Handler,
    idle_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    max_message: u32,
    /// Whether the server writes replies (not on an inbound pipe).
    replies: bool,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
    /// For live stats while the server runs.
    listener: Mutex<Weak<Listener>>,
    /// Access refusals counted by the listener, kept after it is gone.
    denied_at_close: AtomicU64,
    /// Set (before `shutdown` is cancelled) when shutdown is asked: checked by every
    /// connection between requests, cheaper than asking the token.
    stopping: AtomicBool,
    /// The next connection's number.
    next_id: AtomicU64,
    /// Connections served on threads of their own now (`dedicated.rs`, Unix).
    #[cfg_attr(not(unix), allow(dead_code))]
    dedicated: AtomicUsize,
}

impl Shared {
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn stats(&self) -> Stats {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        match listener {
            Some(l) if !self.shutdown.is_cancelled() => {
                self.counters.snapshot(l.listening(), l.denied())
            }
            Some(l) => self.counters.snapshot(0, l.denied()),
            None => self
                .counters
                .snapshot(0, self.denied_at_close.load(Ordering::Relaxed)),
        }
    }
}

/// Builds a [`Server`]: the pipe name, [`ListenerOptions`], the handler, deadlines.
///
/// From [`Server::builder`]. Each setter says its default.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use npipe::{Access, ListenerOptions, Response, Server};
///
/// let mut options = ListenerOptions::new();
/// options.access(Access::Group).max_message_size(64 * 1024);
/// let server = Server::builder("orders")
///     .options(options)
///     .max_instances(Some(16))
///     .idle_timeout(Some(Duration::from_secs(10)))
///     .request_timeout(Some(Duration::from_secs(2)))
///     .handler(|request| Response::new(request.into_body()))
///     .spawn()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "a builder does nothing until bind() or spawn()"]
pub struct ServerBuilder {
    name: io::Result<PipeName>,
    options: ListenerOptions,
    handler: Option<Handler>,
    idle_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    shutdown_grace: Duration,
    worker_threads: Option<usize>,
    activation: bool,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("name", &self.name.as_ref().ok())
            .field("options", &self.options)
            .field("handler", &self.handler)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("activation", &self.activation)
            .finish()
    }
}

impl ServerBuilder {
    /// The listener options: mode, direction, access policy, maximum message size,
    /// `pending_instances`, `max_instances`, buffers. Default: [`ListenerOptions::new`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{ListenerOptions, Mode, Response, Server};
    ///
    /// // A byte-mode server: the request is everything until the client half-closes.
    /// let mut options = ListenerOptions::new();
    /// options.mode(Mode::Byte);
    /// let server = Server::builder("upper")
    ///     .options(options)
    ///     .handler(|request| Response::new(request.body().to_ascii_uppercase()))
    ///     .spawn()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn options(mut self, options: ListenerOptions) -> Self {
        self.options = options;
        self
    }

    /// How many instances stay listening, ready for new clients. Default: 4.
    /// Same as [`ListenerOptions::pending_instances`].
    ///
    /// # Panics
    ///
    /// If `pending` is 0.
    pub fn pending_instances(mut self, pending: u32) -> Self {
        self.options.pending_instances(pending);
        self
    }

    /// At most this many clients connected at once (1..=254), `None` for unlimited.
    /// Default: unlimited. Same as [`ListenerOptions::max_instances`].
    ///
    /// # Panics
    ///
    /// If `max` is `Some(0)` or above 254.
    pub fn max_instances(mut self, max: Option<u32>) -> Self {
        self.options.max_instances(max);
        self
    }

    /// The request handler, run on threads of tokio's blocking pool (so it may
    /// block). Replaces any handler set before.
    ///
    /// On Unix, a message-mode connection is served by one thread of its own for as
    /// long as it stays — read, handle, write, with blocking calls and no hand-off
    /// between threads per request, like the original `PipeManager`'s thread per
    /// instance — for up to 128 connections at once; beyond that, and in byte mode
    /// and on Windows, each request is handed to the blocking pool and its reply
    /// back to the connection's task. On Linux without `max_instances`, the
    /// threads also accept: up to `pending_instances` of them (at most four or one
    /// per CPU, whichever is more) wait in `accept`, and the thread that takes a
    /// client serves it.
    ///
    /// Either way the handler runs on a thread of the runtime's blocking pool, so
    /// `tokio::runtime::Handle::current()` works in it (see [`Request`]'s examples).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{Response, Server};
    ///
    /// let server = Server::builder("upper")
    ///     // Requests are bytes from a peer: check them, never unwrap them.
    ///     .handler(|request| match std::str::from_utf8(request.body()) {
    ///         Ok(text) => Response::new(text.to_uppercase()),
    ///         Err(_) => Response::fail("the request is not UTF-8"),
    ///     })
    ///     .spawn()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        self.handler = Some(Handler::from_sync(handler));
        self
    }

    /// An async request handler, run by the connection's task (a panic fails only
    /// its request). Replaces any handler set before.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::{Request, Response, Server};
    ///
    /// async fn handle(request: Request) -> Response {
    ///     // Waiting costs no thread: other connections go on meanwhile.
    ///     tokio::time::sleep(Duration::from_millis(10)).await;
    ///     Response::new(request.into_body())
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let server = Server::builder("slow-echo").async_handler(handle).bind()?;
    ///     server.run_until(tokio::signal::ctrl_c()).await
    /// }
    /// ```
    pub fn async_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.handler = Some(Handler::from_async(handler));
        self
    }

    /// How long a connection may wait for its next request before it is closed
    /// (`None`: forever). Default: 60 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::{Response, Server};
    ///
    /// // Clients keep one connection open for the day and ask now and then.
    /// let server = Server::builder("config")
    ///     .idle_timeout(None)
    ///     .handler(|_| Response::from("colour=blue"))
    ///     .spawn()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long one request may take from its first byte to the end of its reply
    /// (`None`: no limit). Default: 30 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::{Response, Server};
    ///
    /// // Answers are quick; a request still unanswered after 500 ms is cut off,
    /// // and its handler is told (`Request::cancellation`).
    /// let server = Server::builder("lookup")
    ///     .request_timeout(Some(Duration::from_millis(500)))
    ///     .handler(|request| Response::new(request.into_body()))
    ///     .spawn()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long requests in flight may take to finish after shutdown is asked.
    /// Default: 5 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serve the listening socket a service manager passed to this process
    /// (systemd socket activation) instead of creating the pipe, as
    /// [`Listener::from_activation`](crate::Listener::from_activation) does (which
    /// says how the socket is chosen, and what the options mean for it). Default:
    /// false.
    ///
    /// At shutdown the server stops accepting at once, but the pipe stays: the
    /// manager keeps the socket, and clients that arrive queue for the server it
    /// starts next.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{Response, Server};
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let server = Server::builder("/run/orders/api.sock")
    ///     .activation(npipe::is_socket_activated())
    ///     .handler(|request| Response::new(request.into_body()))
    ///     .bind()?;
    /// server.run_until(tokio::signal::ctrl_c()).await
    /// # }
    /// ```
    pub fn activation(mut self, activated: bool) -> Self {
        self.activation = activated;
        self
    }

    /// Worker threads of the runtime [`spawn`](Self::spawn) creates. Default: the
    /// number of CPUs. Has no effect on [`bind`](Self::bind).
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = Some(threads.max(1));
        self
    }

    /// Creates the pipe (see [`ListenerOptions::create`]), or takes the socket a
    /// service manager passed ([`activation`](Self::activation)); serve it with
    /// [`Server::run`].
    ///
    /// # Errors
    ///
    /// - As [`ListenerOptions::create`]: `InvalidName`, `AddrInUse`, `AccessDenied`...
    ///   With [`activation`](Self::activation), as
    ///   [`Listener::from_activation`](crate::Listener::from_activation).
    /// - `InvalidInput`: no handler was set.
    /// - [`ErrorKind::Unsupported`]: an outbound pipe (the server could not read).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{ErrorKind, Response, Server};
    ///
    /// #[tokio::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let server = match Server::builder("demo").handler(|_| Response::from("hi")).bind() {
    ///         Ok(server) => server,
    ///         Err(e) if ErrorKind::of(&e) == ErrorKind::AddrInUse => {
    ///             eprintln!("another server is running: {e}");
    ///             return Ok(());
    ///         }
    ///         Err(e) => return Err(e),
    ///     };
    ///     println!("serving at {}", server.address());
    ///     server.run().await
    /// }
    /// ```
    pub fn bind(self) -> io::Result<Server> {
        let name = self.name?;
        let handler = self.handler.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server has no handler: call ServerBuilder::handler or async_handler",
            )
        })?;
        if self.options.direction == Direction::Outbound {
            return Err(err(
                ErrorKind::Unsupported,
                "a server reads requests: an outbound pipe cannot be served",
            ));
        }
        // Decided here: a listener for acceptor threads is never registered with
        // tokio (see `dedicated::Acceptors`). Never for a passed socket: waking
        // its acceptor threads would shut the socket the manager keeps.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let listener = if self.activation {
            Listener::from_activation(&name, &self.options)?
        } else if self::dedicated::Acceptors::fit(&self.options, &handler) {
            Listener::bind_blocking_with(&name, &self.options)?
        } else {
            Listener::bind_with(&name, &self.options)?
        };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let listener = if self.activation {
            Listener::from_activation(&name, &self.options)?
        } else {
            Listener::bind_with(&name, &self.options)?
        };
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            handler,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            max_message: self.options.max_message_size,
            replies: self.options.direction.server_writes(),
            shutdown: CancellationToken::new(),
            counters: Arc::default(),
            listener: Mutex::new(Arc::downgrade(&listener)),
            denied_at_close: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            dedicated: AtomicUsize::new(0),
        });
        Ok(Server {
            listener,
            shared,
            shutdown_grace: self.shutdown_grace,
        })
    }

    /// Creates the pipe and serves it on background threads with a tokio runtime of
    /// its own: for programs that are not async. Returns once the pipe exists.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), and failures to start the runtime or thread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{Response, Server};
    ///
    /// let server = Server::builder("demo")
    ///     .handler(|request| Response::new(request.into_body()))
    ///     .spawn()?;
    /// // ... later:
    /// println!("{:?}", server.stats());
    /// server.shutdown();
    /// server.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spawn(self) -> io::Result<SpawnedServer> {
        spawn::spawn(self)
    }
}

impl Server {
    /// A builder for a server of pipe `name`, with the default [`ListenerOptions`]
    /// (message mode, owner-only access, 4 pending instances, unlimited instances).
    /// An invalid name is reported by [`ServerBuilder::bind`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{Response, Server};
    ///
    /// let server = Server::builder("demo")
    ///     .handler(|request| {
    ///         let mut reply = b"Response to: ".to_vec();
    ///         reply.extend_from_slice(request.body());
    ///         Response::new(reply)
    ///     })
    ///     .spawn()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder(name: impl ToPipeName) -> ServerBuilder {
        ServerBuilder {
            name: name.to_pipe_name(),
            options: ListenerOptions::new(),
            handler: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            worker_threads: None,
            activation: false,
        }
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        self.listener.name()
    }

    /// Where the pipe lives in the OS (the socket path on Unix).
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// A handle to ask for shutdown and read the stats, usable from anywhere.
    ///
    /// # Examples
    ///
    /// See [`ServerHandle`].
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until [`ServerHandle::shutdown`], then shuts down gracefully (see
    /// [`Server`]) and returns. The pipe is gone from the namespace when it returns.
    ///
    /// # Errors
    ///
    /// None today: accept failures such as running out of file descriptors are logged
    /// and retried. The `Result` leaves room for fatal conditions.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the server abruptly: the pipe is removed and every
    /// connection is closed without waiting for requests in flight. Use
    /// [`ServerHandle::shutdown`] to stop gracefully.
    ///
    /// # Examples
    ///
    /// A server that stops itself on the request `quit`:
    ///
    /// ```no_run
    /// use std::sync::{Arc, OnceLock};
    /// use npipe::{Response, Server, ServerHandle};
    ///
    /// #[tokio::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let handle = Arc::new(OnceLock::<ServerHandle>::new());
    ///     let handler_handle = Arc::clone(&handle);
    ///     let server = Server::builder("demo")
    ///         .handler(move |request| {
    ///             if request.body() == b"quit" {
    ///                 if let Some(handle) = handler_handle.get() {
    ///                     handle.shutdown();
    ///                 }
    ///                 return Response::from("bye");
    ///             }
    ///             Response::new(request.into_body())
    ///         })
    ///         .bind()?;
    ///     let _ = handle.set(server.handle());
    ///     server.run().await
    /// }
    /// ```
    pub async fn run(self) -> io::Result<()> {
        let Server {
            listener,
            shared,
            shutdown_grace,
        } = self;
        let tracker = TaskTracker::new();
        // Connections must not outlive an abruptly dropped `run`.
        let _hard_stop_on_drop = HardStop {
            shared: &shared,
            listener: Arc::downgrade(&listener),
        };
        let max = listener.options().max_instances;
        let span = tracing::debug_span!("npipe.server", pipe = %listener.name());
        tracing::debug!(parent: &span, address = %listener.address(), "serving");
        let shutdown = shared.shutdown.cancelled();
        tokio::pin!(shutdown);
        // Sync handlers on threads of their own cannot be interrupted: something
        // else must close their connection, and cancel their request, at the
        // deadline or when the client has gone. Ends with `run`.
        #[cfg(unix)]
        let _cut_overdue = match &shared.handler {
            Handler::Sync(_) => Some(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                self::dedicated::cut_overdue(Arc::clone(&shared), shared.request_timeout),
            ))),
            Handler::Async(_) => None,
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let acceptors = match &shared.handler {
            Handler::Sync(handler) if listener.accepts_blocking() => Some(Arc::clone(handler)),
            _ => None,
        };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let acceptors: Option<()> = None;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(handler) = acceptors.clone() {
            // Threads accept and serve (see `dedicated::Acceptors`); this task
            // only waits for shutdown.
            self::dedicated::Acceptors::start(&listener, &shared, handler, &tracker, &span);
            (&mut shutdown).await;
            listener.stop_accepting();
        }
        while acceptors.is_none() {
            if max.is_some_and(|max| listener.instances() >= max) {
                add(&shared.counters.rejected_busy, 1);
                tracing::debug!(parent: &span, "every instance is connected; new clients wait");
            }
            #[cfg(unix)]
            let dedicated = self::dedicated::eligible(&listener, &shared);
            #[cfg(unix)]
            let accept = listener.accept_sys(dedicated.is_none());
            #[cfg(windows)]
            let accept = listener.accept();
            let accepted = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = accept => accepted,
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "accept failed; retrying");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let peer = stream.peer_credentials().ok();
            let tracked = shared.counters.open(id, peer);
            let conn_span = tracing::debug_span!(
                parent: &span,
                "npipe.connection",
                id,
                pid = peer.and_then(|p| p.pid()),
                uid = peer.and_then(|p| p.uid()),
            );
            tracing::debug!(parent: &conn_span, "accepted");
            #[cfg(unix)]
            let stream = match dedicated {
                Some(handler) => {
                    self::dedicated::start(
                        stream, handler, &shared, id, tracked, &tracker, conn_span,
                    );
                    continue;
                }
                None => match crate::tokio::Stream::from_sys(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(parent: &conn_span, error = %e, "connection dropped");
                        continue;
                    }
                },
            };
            let task = task::serve(stream, Arc::clone(&shared), id, tracked);
            let task = tracker.spawn(tracing::Instrument::instrument(task, conn_span));
            shared.counters.watch(id, task.abort_handle());
        }
        // Stop accepting at once: the pipe leaves the namespace now.
        shared
            .denied_at_close
            .store(listener.denied(), Ordering::Relaxed);
        drop(listener);
        shared.counters.close_idle();
        tracker.close();
        tracing::debug!(parent: &span, in_flight = tracker.len(), "shutting down");
        if tokio::time::timeout(shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(parent: &span, left = tracker.len(), "grace period over; closing what is left");
            shared.counters.close_all();
            tracker.wait().await;
        }
        tracing::debug!(parent: &span, "stopped");
        Ok(())
    }

    /// [`run`](Self::run) until `signal` completes (e.g. `tokio::signal::ctrl_c()`),
    /// then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// Stopping when another part of the program says so:
    ///
    /// ```no_run
    /// use npipe::{Response, Server};
    /// use tokio::sync::oneshot;
    ///
    /// #[tokio::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let (stop, stopped) = oneshot::channel::<()>();
    ///     let server = Server::builder("demo").handler(|_| Response::from("ok")).bind()?;
    ///     let serving = tokio::spawn(server.run_until(stopped));
    ///     // ... later:
    ///     let _ = stop.send(());
    ///     serving.await?
    /// }
    /// ```
    pub async fn run_until<F: Future>(self, signal: F) -> io::Result<()> {
        let handle = self.handle();
        let run = self.run();
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => return result,
            _ = signal => handle.shutdown(),
        }
        run.await
    }

    /// The stats now.
    ///
    /// # Examples
    ///
    /// See [`Stats`].
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

/// A handle to a [`Server`]: ask it to shut down, read its stats. Cheap to clone.
///
/// # Examples
///
/// Stopping a server from another task after a minute, and reporting what it did:
///
/// ```no_run
/// use std::time::Duration;
/// use npipe::{Response, Server};
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let server = Server::builder("demo").handler(|_| Response::from("ok")).bind()?;
///     let handle = server.handle();
///     tokio::spawn(async move {
///         tokio::time::sleep(Duration::from_secs(60)).await;
///         handle.shutdown();
///     });
///     let handle = server.handle();
///     server.run().await?;
///     println!("answered {} requests", handle.stats().completed);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Asks the server to shut down gracefully (see [`Server`]); returns at once.
    /// [`Server::run`] returns when it is done.
    pub fn shutdown(&self) {
        // In this order: a connection that finds `stopping` unset has made itself
        // visibly idle before, so the scan after the cancellation closes it.
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
    }

    /// Whether shutdown has been asked.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// The stats now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

/// Ends every connection when dropped: the abrupt end of [`Server::run`].
struct HardStop<'a> {
    shared: &'a Shared,
    listener: Weak<Listener>,
}

impl Drop for HardStop<'_> {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(listener) = self.listener.upgrade() {
            // Threads blocked in `accept` hold the listener: wake them.
            listener.stop_accepting();
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = &self.listener;
        self.shared.counters.close_all();
    }
}
