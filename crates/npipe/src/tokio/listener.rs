//! The async server end.

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
pub struct Listener {
    /// The blocking listener: name ownership, access policy and instance gate.
    inner: sys::Listener,
    /// The same listening socket (a duplicate descriptor) registered with tokio;
    /// `None` for a listener whose clients are taken by threads in a blocking
    /// `accept` ([`bind_blocking_with`](Self::bind_blocking_with)).
    socket: Option<sys::AsyncListener>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Listener")
            .field("name", inner.name())
            .field("address", inner.address())
            .field("instances", &inner.instances())
            .finish_non_exhaustive()
    }
}

/// An instance reserved in the gate for an `accept` in progress; given back if the
/// accept does not produce a connection (including when its future is dropped).
struct Reservation<'a> {
    listener: Option<&'a sys::Listener>,
}

impl Reservation<'_> {
    fn consume(mut self) {
        self.listener = None;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(listener) = self.listener {
            listener.gate().unreserve();
        }
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
    pub fn bind_with(name: impl ToPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        let inner = sys::Listener::create(name.to_pipe_name()?, options.clone())?;
        let socket = inner.socket().try_clone()?;
        socket.set_nonblocking(true)?;
        Ok(Listener {
            socket: Some(sys::AsyncListener::from_std(socket)?),
            inner,
        })
    }

    /// A listener whose clients are taken by threads that call a blocking
    /// `accept` (the managed server's acceptors, Linux): its socket stays
    /// blocking and is not registered with tokio, whose reactor would otherwise
    /// wake up for every client for nothing. The async `accept` fails on it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn bind_blocking_with(
        name: &PipeName,
        options: &ListenerOptions,
    ) -> io::Result<Listener> {
        Ok(Listener {
            inner: sys::Listener::create(name.clone(), options.clone())?,
            socket: None,
        })
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
    /// (`EMFILE`); the listener stays usable.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no connection is taken from the kernel unless the future
    /// completes, and the instance it reserved is given back when it is dropped.
    pub async fn accept(&self) -> io::Result<Stream> {
        let stream = self.accept_sys(true).await?;
        Stream::from_sys(stream)
    }

    /// [`accept`](Self::accept), returning the connection before it is given to
    /// tokio: non-blocking, or blocking for a thread that will serve it (the
    /// managed server's sync handlers). Cancel safe, as `accept`.
    pub(crate) async fn accept_sys(&self, nonblocking: bool) -> io::Result<sys::Stream> {
        let listener = &self.inner;
        let Some(socket) = &self.socket else {
            return Err(io::Error::other(
                "this listener's clients are accepted by blocking threads",
            ));
        };
        loop {
            listener.gate().reserve_async().await;
            let reservation = Reservation {
                listener: Some(listener),
            };
            let conn = loop {
                match socket.accept(nonblocking).await {
                    Ok(conn) => break conn,
                    Err(e) if sys::is_transient_accept_error(&e) => continue,
                    Err(e) => return Err(e),
                }
            };
            // From here to the return there is no await: the future cannot be
            // dropped with a connection in hand.
            reservation.consume();
            if let Some(stream) = listener.finish_accept(conn)? {
                return Ok(stream);
            }
        }
    }

    /// Whether this listener's clients are taken by blocking `accept` calls
    /// ([`bind_blocking_with`](Self::bind_blocking_with)).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn accepts_blocking(&self) -> bool {
        self.socket.is_none()
    }

    /// The blocking listener, for threads that accept with blocking calls.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn blocking(&self) -> &sys::Listener {
        &self.inner
    }

    /// Wakes every thread blocked in a blocking `accept` on this listener (which
    /// then fails with `EINVAL`), and refuses new clients: Linux's
    /// `shutdown(SHUT_RD)` on a listening Unix socket.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn stop_accepting(&self) {
        use std::os::fd::AsRawFd;
        let fd = self.inner.socket().as_raw_fd();
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        self.inner.name()
    }

    /// Where the pipe lives in the OS (the socket path on Unix).
    pub fn address(&self) -> &Address {
        self.inner.address()
    }

    /// How many accepted streams are alive now.
    pub fn instances(&self) -> u32 {
        self.inner.instances()
    }

    /// How many clients the access policy has refused so far.
    pub fn denied(&self) -> u64 {
        self.inner.denied()
    }

    /// The options this listener was created with.
    pub fn options(&self) -> &ListenerOptions {
        self.inner.options()
    }

    /// How many more clients could connect now without waiting.
    pub(crate) fn listening(&self) -> u32 {
        self.inner.listening()
    }
}
