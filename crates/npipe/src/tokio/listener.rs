//! The async server end: one definition over each platform's async backend
//! (`sys::AsyncListener`).

use std::fmt;
use std::io;

use super::stream::Stream;
use crate::name::{Address, PipeName, ToPipeName};
use crate::options::ListenerOptions;
use crate::sys;

/// A pipe server on tokio: owns a pipe name and hands out a [`Stream`] per client.
/// The async twin of [`crate::Listener`], with the same access policy, instance
/// gate (`max_instances`, `pending_instances`) and name ownership; dropping it
/// removes the pipe from the namespace.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use npipe::{ListenerOptions, Mode};
/// use npipe::tokio::Listener;
///
/// let mut options = ListenerOptions::new();
/// options.mode(Mode::Message).max_instances(Some(8));
/// let listener = Listener::bind_with("orders", &options)?;
/// loop {
///     let mut stream = listener.accept().await?;
///     tokio::spawn(async move {
///         let mut request = Vec::new();
///         while let Ok(Some(_)) = stream.recv(&mut request).await {
///             let _ = stream.send(b"ok").await;
///         }
///     });
/// }
/// # }
/// ```
///
/// ## Platform-specific behavior
///
/// Unix: the listening socket is registered with tokio. Windows: the blocking
/// listener's pool of instances (each with a thread waiting in `ConnectNamedPipe`)
/// hands connected instances to `accept`.
pub struct Listener {
    inner: sys::AsyncListener,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("name", self.name())
            .field("address", self.address())
            .field("instances", &self.instances())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Creates a message-mode pipe with the default [`ListenerOptions`].
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::create`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// #[tokio::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let listener = npipe::tokio::Listener::bind("demo")?;
    ///     println!("listening at {}", listener.address());
    ///     Ok(())
    /// }
    /// ```
    pub fn bind(name: impl ToPipeName) -> io::Result<Listener> {
        Listener::bind_with(name, &ListenerOptions::new())
    }

    /// Creates the pipe with `options` (`CreateNamedPipe`).
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::create`]: `InvalidName`, `AddrInUse`, `AccessDenied`,
    /// `Unsupported`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use npipe::{Access, ListenerOptions};
    ///
    /// let mut options = ListenerOptions::new();
    /// options.access(Access::Group).max_message_size(64 * 1024);
    /// let listener = npipe::tokio::Listener::bind_with("team", &options)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind_with(name: impl ToPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        let inner = sys::AsyncListener::bind(name.to_pipe_name()?, options)?;
        Ok(Listener { inner })
    }

    /// Serves pipe `name` on the listening socket a service manager passed to
    /// this process (systemd socket activation), instead of creating the pipe: the
    /// async twin of [`crate::Listener::from_activation`], which says how the
    /// socket is chosen and checked, and what the options mean for it.
    ///
    /// # Errors
    ///
    /// As [`crate::Listener::from_activation`]: `NotFound` (no socket passed for
    /// this pipe), `Unsupported` (not a listening Unix stream socket, not the
    /// descriptor passed; Windows), `AddrInUse` (already served), `Io` (malformed
    /// variables).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use npipe::ListenerOptions;
    /// use npipe::tokio::Listener;
    ///
    /// let listener = Listener::from_activation("/run/orders/api.sock", &ListenerOptions::new())?;
    /// let mut stream = listener.accept().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix only: on Windows it fails with `Unsupported`.
    pub fn from_activation(
        name: impl ToPipeName,
        options: &ListenerOptions,
    ) -> io::Result<Listener> {
        sys::AsyncListener::activated(name.to_pipe_name()?, options).map(|inner| Listener { inner })
    }

    /// A listener whose clients are taken by threads that call a blocking
    /// `accept` (the managed server's acceptors, Linux); the async `accept`
    /// fails on it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn bind_blocking_with(
        name: &PipeName,
        options: &ListenerOptions,
    ) -> io::Result<Listener> {
        let inner = sys::AsyncListener::bind_blocking(name, options)?;
        Ok(Listener { inner })
    }

    /// Waits for a client and returns the connected server end (`ConnectNamedPipe`).
    ///
    /// Clients refused by the access policy are disconnected here and never returned
    /// (see [`denied`](Self::denied)). With `max_instances` set, this waits while
    /// that many streams from this listener are alive.
    ///
    /// # Errors
    ///
    /// I/O errors of the listening socket, such as running out of file descriptors
    /// (`EMFILE`); the listener stays usable. On Windows, a standing failure to
    /// create pipe instances.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no connection is taken from the system unless the future
    /// completes, and the instance it reserved is given back when it is dropped.
    ///
    /// # Examples
    ///
    /// An echo server with a task per client:
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = npipe::tokio::Listener::bind("echo")?;
    /// loop {
    ///     let mut stream = listener.accept().await?;
    ///     tokio::spawn(async move {
    ///         let mut message = Vec::new();
    ///         // Until the client closes (`None`) or fails.
    ///         while let Ok(Some(_)) = stream.recv(&mut message).await {
    ///             if stream.send(&message).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> io::Result<Stream> {
        self.inner.accept().await.map(Stream::new)
    }

    /// [`accept`](Self::accept), returning the connection before it is given to
    /// tokio: non-blocking, or blocking for a thread that will serve it (the
    /// managed server's sync handlers). Cancel safe, as `accept`.
    #[cfg(unix)]
    pub(crate) async fn accept_sys(&self, nonblocking: bool) -> io::Result<sys::Stream> {
        self.inner.accept_sys(nonblocking).await
    }

    /// Whether this listener's clients are taken by blocking `accept` calls
    /// ([`bind_blocking_with`](Self::bind_blocking_with)).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn accepts_blocking(&self) -> bool {
        self.inner.accepts_blocking()
    }

    /// The blocking listener, for threads that accept with blocking calls.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn blocking(&self) -> &sys::Listener {
        self.inner.blocking()
    }

    /// Wakes every thread blocked in a blocking `accept` on this listener, and
    /// refuses new clients.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn stop_accepting(&self) {
        self.inner.stop_accepting();
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        self.inner.blocking().name()
    }

    /// Where the pipe lives in the OS: the socket path on Unix, `\\.\pipe\NAME` on
    /// Windows.
    pub fn address(&self) -> &Address {
        self.inner.blocking().address()
    }

    /// How many accepted streams are alive now.
    pub fn instances(&self) -> u32 {
        self.inner.blocking().instances()
    }

    /// How many clients the access policy has refused so far.
    ///
    /// ## Platform-specific behavior
    ///
    /// Always 0 on Windows: the pipe's DACL refuses clients before they reach the
    /// server.
    pub fn denied(&self) -> u64 {
        self.inner.blocking().denied()
    }

    /// The options this listener was created with.
    pub fn options(&self) -> &ListenerOptions {
        self.inner.blocking().options()
    }

    /// How many more clients could connect now without waiting.
    pub(crate) fn listening(&self) -> u32 {
        self.inner.blocking().listening()
    }
}
