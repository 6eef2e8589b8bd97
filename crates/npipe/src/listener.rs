//! The server end of a pipe.

use std::fmt;
use std::io;

use crate::name::{Address, PipeName, ToPipeName};
use crate::options::ListenerOptions;
use crate::stream::Stream;
use crate::sys;

/// A pipe server: owns a pipe name and hands out a [`Stream`] for each client.
///
/// Created by [`ListenerOptions::create`] or [`Listener::bind`]. The first server
/// to create a name owns it; others get
/// [`ErrorKind::AddrInUse`](crate::ErrorKind::AddrInUse) while it lives. Dropping the
/// listener removes the pipe from the namespace (on Unix: its socket file and lock
/// file; a socket a service manager passed stays, see
/// [`from_activation`](Self::from_activation)). Connections already accepted carry on.
///
/// `accept` may be called from several threads at once (the original's pool of
/// server threads): each call takes one instance.
///
/// Unlike [`Stream`], a `Listener` does not convert to or from std's `UnixListener`:
/// it owns its name (the lock that makes it the first instance, and the files it
/// removes when dropped) and the instance accounting, none of which a bare socket can
/// carry. Borrow the socket with `AsFd` where an event loop needs it.
///
/// # Examples
///
/// The original demo server: answer each request with `Response to: <request>`.
///
/// ```no_run
/// use npipe::Listener;
///
/// let listener = Listener::bind("demo")?;
/// loop {
///     let mut stream = listener.accept()?;
///     std::thread::spawn(move || -> std::io::Result<()> {
///         let mut request = Vec::new();
///         while stream.recv(&mut request)?.is_some() {
///             let mut reply = b"Response to: ".to_vec();
///             reply.extend_from_slice(&request);
///             stream.send(&reply)?;
///         }
///         Ok(())
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// ## Platform-specific behavior
///
/// Windows: every connection is a pipe instance, so the name stays in the namespace
/// (and a new server cannot take it) until the accepted streams are dropped too.
/// Clients that connect at once are accepted in no particular order.
pub struct Listener {
    inner: sys::Listener,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("name", self.inner.name())
            .field("address", self.inner.address())
            .field("instances", &self.inner.instances())
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
    /// # Examples
    ///
    /// ```no_run
    /// let listener = npipe::Listener::bind("demo")?;
    /// println!("listening at {}", listener.address());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind(name: impl ToPipeName) -> io::Result<Listener> {
        ListenerOptions::new().create(name)
    }

    pub(crate) fn create(name: PipeName, opts: ListenerOptions) -> io::Result<Listener> {
        sys::Listener::create(name, opts).map(|inner| Listener { inner })
    }

    /// Serves pipe `name` on the listening socket a service manager passed to this
    /// process (systemd socket activation, `sd_listen_fds(3)`), instead of creating
    /// the pipe.
    ///
    /// The socket is chosen among those passed (`LISTEN_PID` is this process,
    /// `LISTEN_FDS` of them from descriptor 3 on): the one whose `LISTEN_FDNAMES`
    /// entry (`FileDescriptorName=`) is the pipe's name, its bare name or, for an
    /// explicit path, its file name; else the only one passed; else the one bound
    /// to the pipe's address. It must be a listening Unix stream socket bound to
    /// the pipe's address ([`PipeName::address`]: the path, through the same
    /// checked directory, or `@NAME`), so that the pipe's clients reach it. npipe
    /// takes it over (it is closed with the listener); each passed socket can be
    /// served once per process. Every passed socket is made close-on-exec when
    /// the variables are read, so that commands the server runs do not inherit
    /// them.
    ///
    /// The service manager owns the socket file: npipe writes no lock or record
    /// file beside it (`inspect` shows no mode or policy for it) and never removes
    /// it. The options apply as to a pipe npipe creates: mode, direction, maximum
    /// message size, `max_instances`. The access policy is enforced on every
    /// client's credentials at accept (`SO_PEERCRED`), whatever the file's mode
    /// (`SocketMode=`) lets connect; give the socket a mode that admits whom the
    /// policy admits, or clients refused by the file get `AccessDenied` at
    /// connect. `pending_instances` sets the listen backlog again, as for a pipe
    /// npipe creates (the socket unit's `Backlog=` applies until the server
    /// starts); when the listener is dropped, npipe sets the backlog to the
    /// system's maximum (systemd's default) so clients queue for the next start.
    ///
    /// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are read once per process
    /// (see [`is_socket_activated`](crate::is_socket_activated)) and never
    /// changed. Do not also hand the passed descriptors to other code, nor close
    /// them: npipe owns the one it serves. (A descriptor whose number names
    /// another file than when the variables were read is refused, never taken.)
    /// npipe sets the socket's blocking mode as its API needs (the tokio API
    /// leaves it non-blocking); the flag is shared with the manager's copy,
    /// which service managers only poll.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`](crate::ErrorKind::NotFound): no socket was passed
    ///   to this process, or none of those passed is bound to the pipe's address
    ///   (the message lists what was passed).
    /// - [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): the socket
    ///   chosen is not a listening Unix stream socket, was not open when the
    ///   variables were read, or is no longer the descriptor passed; on Windows,
    ///   always.
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io): the variables are malformed
    ///   (`LISTEN_FDS` not a number or beyond the descriptor limit,
    ///   `LISTEN_FDNAMES` not one name per descriptor).
    /// - [`ErrorKind::AddrInUse`](crate::ErrorKind::AddrInUse): every passed socket
    ///   is served already by a listener of this process.
    /// - As [`PipeName::address`] for the name.
    ///
    /// # Examples
    ///
    /// A service started by systemd with a socket unit holding
    /// `ListenStream=/run/orders/api.sock`:
    ///
    /// ```no_run
    /// use npipe::{Listener, ListenerOptions};
    ///
    /// let listener = Listener::from_activation("/run/orders/api.sock", &ListenerOptions::new())?;
    /// for stream in listener.incoming() {
    ///     let mut stream = stream?;
    ///     let mut request = Vec::new();
    ///     while stream.recv(&mut request)?.is_some() {
    ///         stream.send(&request)?;
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix only: on Windows it fails with `Unsupported`.
    pub fn from_activation(
        name: impl ToPipeName,
        options: &ListenerOptions,
    ) -> io::Result<Listener> {
        sys::Listener::activated(name.to_pipe_name()?, options.clone())
            .map(|inner| Listener { inner })
    }

    /// Waits for a client and returns the connected server end (`ConnectNamedPipe`).
    ///
    /// Clients refused by the access policy are disconnected here and never returned
    /// (see [`denied`](Self::denied)). With `max_instances` set, this blocks while
    /// that many streams from this listener are alive.
    ///
    /// # Errors
    ///
    /// I/O errors of the listening socket, such as running out of file descriptors
    /// (`EMFILE`); the listener stays usable.
    ///
    /// # Examples
    ///
    /// An echo server that serves one client at a time:
    ///
    /// ```no_run
    /// let listener = npipe::Listener::bind("echo")?;
    /// loop {
    ///     let mut stream = listener.accept()?;
    ///     let mut message = Vec::new();
    ///     // `None`: the client closed the connection.
    ///     while stream.recv(&mut message)?.is_some() {
    ///         stream.send(&message)?;
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&self) -> io::Result<Stream> {
        self.inner.accept().map(Stream::from_sys)
    }

    /// An endless iterator over [`accept`](Self::accept).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let listener = npipe::Listener::bind("greeter")?;
    /// for stream in listener.incoming() {
    ///     match stream {
    ///         Ok(mut stream) => {
    ///             if let Err(e) = stream.send(b"hello") {
    ///                 eprintln!("the client left early: {e}");
    ///             }
    ///         }
    ///         Err(e) => eprintln!("accept failed: {e}"),
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        self.inner.name()
    }

    /// Where the pipe lives in the OS (the socket path on Unix).
    pub fn address(&self) -> &Address {
        self.inner.address()
    }

    /// How many accepted streams are alive now (`GetNamedPipeHandleState`'s
    /// `lpCurInstances`, counting connected instances).
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
}

/// Iterator returned by [`Listener::incoming`].
///
/// Every item is one call of [`Listener::accept`]; the iterator never ends.
///
/// # Examples
///
/// Serving the first two clients, one after the other:
///
/// ```no_run
/// let listener = npipe::Listener::bind("demo")?;
/// for stream in listener.incoming().take(2) {
///     let mut stream = stream?;
///     stream.send(b"hello")?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a Listener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<Stream>;

    fn next(&mut self) -> Option<io::Result<Stream>> {
        Some(self.listener.accept())
    }
}

#[cfg(unix)]
mod unix_impls {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

    use super::Listener;

    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl AsFd for Listener {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inner.as_fd()
        }
    }

    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl AsRawFd for Listener {
        fn as_raw_fd(&self) -> RawFd {
            self.inner.as_raw_fd()
        }
    }
}
