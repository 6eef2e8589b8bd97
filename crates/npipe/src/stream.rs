//! A connected pipe end, client or server.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::frame::Received;
use crate::name::{PipeName, ToPipeName};
use crate::options::{ConnectOptions, Mode};
use crate::peer::PeerCredentials;
use crate::sys;

/// A connected pipe end: returned by [`Stream::connect`] on the client and by
/// [`Listener::accept`](crate::Listener::accept) on the server. A `Stream` is
/// connected by construction; dropping it closes the connection.
///
/// - **Message mode** (the default): [`send`](Self::send) writes one message,
///   [`recv`](Self::recv) returns one whole message, [`recv_into`](Self::recv_into)
///   returns what fits in a fixed buffer and reports [`Received::more_data`], with the
///   rest of the message following. `Write::write` sends one message per call;
///   `Read::read` returns payload bytes with the boundaries ignored (Windows' byte
///   read mode on a message pipe).
/// - **Byte mode**: `Read`/`Write` move bytes with nothing added on the wire.
///
/// # Flushing
///
/// npipe never buffers writes in user space: when `send` or `write` returns, every
/// byte is in the kernel, which delivers it to the peer even if this end is closed
/// right after (Unix sockets keep queued data for the reader; on Windows npipe calls
/// `FlushFileBuffers` before `DisconnectNamedPipe` so nothing is discarded).
/// `Write::flush` therefore returns at once.
///
/// # Examples
///
/// ```no_run
/// use npipe::Stream;
///
/// let mut stream = Stream::connect("demo")?;
/// stream.send(b"hello")?;
/// let mut reply = Vec::new();
/// if stream.recv(&mut reply)?.is_some() {
///     println!("{}", String::from_utf8_lossy(&reply));
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Stream {
    inner: sys::Stream,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("mode", &self.inner.mode())
            .field("server", &self.inner.is_server())
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub(crate) fn from_sys(inner: sys::Stream) -> Stream {
        Stream { inner }
    }

    /// Connects to a message-mode pipe with the default [`ConnectOptions`] (waits up to
    /// 5 s for the pipe to appear or an instance to be free).
    ///
    /// `CreateFile` + `WaitNamedPipe`.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`]: `NotFound`, `PipeBusy`, `AccessDenied`,
    /// `InvalidName`, `Unsupported` (see [`ErrorKind`](crate::ErrorKind)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let stream = npipe::Stream::connect(r"\\.\pipe\demo")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect(name: impl ToPipeName) -> io::Result<Stream> {
        ConnectOptions::new().connect(name)
    }

    /// Connects without waiting: fails at once with `NotFound` or `PipeBusy`
    /// (the original `TryConnect`).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{ErrorKind, Stream};
    ///
    /// match Stream::try_connect("demo") {
    ///     Ok(mut stream) => stream.send(b"hello")?,
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::NotFound => eprintln!("no server"),
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::PipeBusy => eprintln!("no free instance now"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_connect(name: impl ToPipeName) -> io::Result<Stream> {
        ConnectOptions::new().timeout(Duration::ZERO).connect(name)
    }

    pub(crate) fn connect_with(name: &PipeName, opts: &ConnectOptions) -> io::Result<Stream> {
        sys::Stream::connect(name, opts).map(Stream::from_sys)
    }

    /// The mode this end reads and writes in.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// Whether this is the server end (from [`Listener::accept`](crate::Listener::accept)).
    pub fn is_server(&self) -> bool {
        self.inner.is_server()
    }

    /// Sends one message (message mode) or the bytes (byte mode), all of it.
    ///
    /// `WriteFile`. On Unix a message is one `send` of its 4-byte little-endian length
    /// and payload.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge): over this
    ///   end's maximum message size; nothing was sent.
    /// - [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected): the peer closed,
    ///   or does not read (an outbound pipe).
    /// - [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied) (Unix, message
    ///   mode, a client that has read nothing yet): the server closed after sending
    ///   its [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE): its access policy refused
    ///   this client's credentials.
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout): the write timeout or the
    ///   [deadline](Self::set_deadline) expired; part of the message may have been
    ///   sent and the connection should be closed.
    /// - [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): this end is read-only.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut stream = npipe::Stream::connect("demo")?;
    /// stream.send(b"hello")?;
    /// stream.send(b"")?; // a zero-length message is a message too
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.inner.send(message)
    }

    /// Receives one whole message into `buf` (cleared first, then sized to the
    /// message). Returns `Some(len)`, or `None` when the peer closed the connection
    /// between messages. If an earlier [`recv_into`](Self::recv_into) returned part of
    /// a message, this returns the rest of it.
    ///
    /// In byte mode it returns whatever bytes have arrived (up to 64 KiB).
    ///
    /// `buf` grows with the bytes that arrive, not by the length the peer announced:
    /// to at most twice what has arrived plus 64 KiB, reusing the capacity `buf`
    /// already has. Reusing one buffer across messages saves the regrowth.
    ///
    /// `ReadFile` in `PIPE_READMODE_MESSAGE`.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge): the peer
    ///   announced a message over the maximum size; nothing was allocated and the
    ///   connection can no longer be read.
    /// - [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected): the peer closed in
    ///   the middle of a message.
    /// - [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied) (Unix, message
    ///   mode, a client's first message): the server sent its
    ///   [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE): its access policy refused this
    ///   client's credentials. Every later call fails the same way.
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout): the read timeout or the
    ///   [deadline](Self::set_deadline) expired. If part of a message had arrived, it
    ///   is in `buf` and the next call returns the rest.
    /// - [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): this end is write-only.
    ///
    /// # Examples
    ///
    /// A client: `None` means the server closed the connection without replying
    /// (a server that could not answer closes the connection), so it must not be
    /// taken for an empty reply.
    ///
    /// ```no_run
    /// use npipe::{Error, ErrorKind};
    ///
    /// let mut stream = npipe::Stream::connect("demo")?;
    /// stream.send(b"ping")?;
    /// let mut reply = Vec::new();
    /// match stream.recv(&mut reply)? {
    ///     Some(len) => println!("{len} bytes: {}", String::from_utf8_lossy(&reply)),
    ///     None => {
    ///         let closed = "the server closed the connection without replying";
    ///         return Err(Error::new(ErrorKind::Disconnected, closed).into());
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.inner.recv(buf)
    }

    /// Receives into a fixed buffer: as much of the next message as fits. When the
    /// message is longer, [`Received::more_data`] is true (`ERROR_MORE_DATA`) and the
    /// following reads return the rest of the same message. `None`: the peer closed
    /// the connection between messages.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut stream = npipe::Stream::connect("demo")?;
    /// let mut buf = [0u8; 512];
    /// let mut message = Vec::new();
    /// while let Some(part) = stream.recv_into(&mut buf)? {
    ///     message.extend_from_slice(&buf[..part.len()]);
    ///     if part.is_complete() {
    ///         break;
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.inner.recv_into(buf)
    }

    /// Copies bytes of the next message (or, in byte mode, the next bytes) that have
    /// already arrived into `buf` without removing them, and returns how many. Never
    /// blocks: `0` when nothing has arrived yet.
    ///
    /// `PeekNamedPipe`.
    ///
    /// # Errors
    ///
    /// I/O errors of the socket; `MessageTooLarge` after a refused message.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let listener = npipe::Listener::bind("demo")?;
    /// let mut stream = listener.accept()?;
    /// let mut first = [0u8; 1];
    /// if stream.peek(&mut first)? == 1 && first[0] == b'{' {
    ///     println!("the client's first message has begun arriving, and it looks like JSON");
    /// }
    /// // The peeked bytes are still there: `recv` returns the whole message.
    /// let mut message = Vec::new();
    /// stream.recv(&mut message)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf)
    }

    /// Who is at the other end.
    ///
    /// # Errors
    ///
    /// The OS could not tell (rare; e.g. the peer is gone on some systems).
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix, a client of a remote pipe (`\\HOST\pipe\NAME`, through ssh): the
    /// remote server process as npipe on HOST saw it when it connected there —
    /// its pid on HOST, its uid and gid in HOST's user database (not this
    /// machine's) — as reported by the bridge's handshake. It is what
    /// [`ConnectOptions::expect_server_uid`] checks. The server on HOST sees the
    /// user that ssh logged in as, and its access policy applies to that user.
    ///
    /// # Examples
    ///
    /// A server that gives administrative answers only to root:
    ///
    /// ```no_run
    /// let listener = npipe::Listener::bind("admin")?;
    /// let mut stream = listener.accept()?;
    /// let is_root = stream.peer_credentials()?.uid() == Some(0);
    /// stream.send(if is_root { b"welcome".as_slice() } else { b"read-only".as_slice() })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Limits how long a read may block (`None`: forever, the default). An expired
    /// read fails with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    ///
    /// The timeout bounds each wait of a read on its own: a peer that sends a
    /// message a few bytes at a time can make one [`recv`](Self::recv) last far
    /// longer. [`set_deadline`](Self::set_deadline) bounds whole operations.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::ErrorKind;
    ///
    /// let mut stream = npipe::Stream::connect("demo")?;
    /// stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    /// let mut reply = Vec::new();
    /// match stream.recv(&mut reply) {
    ///     Ok(Some(_)) => println!("{}", String::from_utf8_lossy(&reply)),
    ///     Ok(None) => eprintln!("the server closed the connection"),
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::Timeout => eprintln!("nothing within 1 s"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// Limits how long a write may block (`None`: forever, the default). Like the
    /// read timeout, it bounds each wait on its own (a peer that reads slowly
    /// can stretch a large [`send`](Self::send)); see
    /// [`set_deadline`](Self::set_deadline).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// Sets a deadline for every later read and write (`None`: no deadline, the
    /// default). An operation that has not finished by `deadline` fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) however many system calls
    /// it takes, and one started after it fails at once: a peer that trickles a
    /// reply or reads a request slowly cannot stretch it. The read and write
    /// timeouts still bound each wait within it.
    ///
    /// After a `Timeout`, as for the timeouts: part of a message may have been
    /// sent (the connection should be closed), and part of a message received is
    /// kept (the next read returns the rest of it).
    ///
    /// [`call`](crate::call) bounds its whole transaction this way.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    ///
    /// // The whole exchange, connecting included, within two seconds.
    /// let deadline = Instant::now() + Duration::from_secs(2);
    /// let mut stream = npipe::ConnectOptions::new()
    ///     .timeout(Duration::from_secs(2))
    ///     .connect("demo")?;
    /// stream.set_deadline(Some(deadline));
    /// stream.send(b"ping")?;
    /// let mut reply = Vec::new();
    /// if stream.recv(&mut reply)?.is_none() {
    ///     eprintln!("the server closed the connection without replying");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.inner.set_deadline(deadline);
    }

    /// Half-closes the connection: `Shutdown::Write` tells the peer no more data will
    /// come (its reads then return end of stream) while this end can still read.
    ///
    /// # Errors
    ///
    /// I/O errors of the socket.
    ///
    /// # Examples
    ///
    /// A byte-mode request whose end the server learns from the half-close, as
    /// the managed `Server` (feature `tokio`) reads byte-mode requests:
    ///
    /// ```no_run
    /// use std::io::{Read, Write};
    /// use std::net::Shutdown;
    /// use npipe::{ConnectOptions, Mode};
    ///
    /// let mut stream = ConnectOptions::new().mode(Mode::Byte).connect("upper")?;
    /// stream.write_all(b"make this loud")?;
    /// stream.shutdown(Shutdown::Write)?;
    /// let mut reply = Vec::new();
    /// stream.read_to_end(&mut reply)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Windows pipes cannot half-close. On the server end `Write` and `Both` wait
    /// until the client has read everything sent (`FlushFileBuffers`) and disconnect
    /// it (`DisconnectNamedPipe`); on the client end they stop this end's reads and
    /// writes at once, and the server sees the end of the stream when the stream is
    /// dropped (or [`disconnect`](Self::disconnect)ed).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// Ends the connection after everything sent has been handed to the kernel, and
    /// frees the server instance for the next client (`FlushFileBuffers` +
    /// `DisconnectNamedPipe`). Same as dropping the stream, with errors reported.
    ///
    /// # Errors
    ///
    /// I/O errors of the final shutdown (a peer already gone is not an error).
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix, a remote pipe (`\\HOST\pipe\NAME`): it also waits for the ssh
    /// client to exit (it tells HOST, whose bridge closes the pipe), for up to
    /// 5 s, and then kills it. Dropping the stream leaves that to a thread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let listener = npipe::Listener::bind("demo")?;
    /// let mut stream = listener.accept()?;
    /// stream.send(b"goodbye")?;
    /// stream.disconnect()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn disconnect(self) -> io::Result<()> {
        let ended = match self.inner.shutdown(Shutdown::Both) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        };
        #[cfg(unix)]
        self.inner.close_and_reap();
        ended
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    /// Writes every slice, as one message in message mode (one length for them
    /// all); on Unix with one `sendmsg` (gather) where the socket takes it.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    /// Returns at once: npipe keeps no write buffer (see [`Stream`]'s "Flushing").
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
mod unix_impls {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;

    use super::Stream;
    use crate::options::Mode;
    use crate::sys;

    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl AsFd for Stream {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inner.as_fd()
        }
    }

    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl AsRawFd for Stream {
        fn as_raw_fd(&self) -> RawFd {
            self.inner.as_raw_fd()
        }
    }

    /// Gives up the socket. In message mode, bytes npipe had already read ahead are
    /// lost; use [`Stream::into_std`] to be refused instead.
    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl IntoRawFd for Stream {
        fn into_raw_fd(self) -> RawFd {
            OwnedFd::from(self.inner).into_raw_fd()
        }
    }

    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl Stream {
        /// Wraps a connected std socket as a client end in `mode` (default options).
        ///
        /// # Examples
        ///
        /// Messages over a socket pair, for a child process that inherits one end:
        ///
        /// ```
        /// use std::os::unix::net::UnixStream;
        /// use npipe::{Mode, Stream};
        ///
        /// let (a, b) = UnixStream::pair()?;
        /// let (mut a, mut b) = (Stream::from_std(a, Mode::Message), Stream::from_std(b, Mode::Message));
        /// a.send(b"hello")?;
        /// let mut message = Vec::new();
        /// assert_eq!(b.recv(&mut message)?, Some(5));
        /// assert_eq!(message, b"hello");
        /// # Ok::<(), std::io::Error>(())
        /// ```
        ///
        /// ## Platform-specific behavior
        ///
        /// Unix only.
        pub fn from_std(stream: UnixStream, mode: Mode) -> Stream {
            Stream::from_sys(sys::Stream::from_std(stream, mode))
        }

        /// Returns the std socket, or gives the stream back if npipe holds bytes it read
        /// ahead (in message mode) that would otherwise be lost.
        ///
        /// # Errors
        ///
        /// The stream itself, unchanged, when read-ahead bytes would be lost.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use std::io;
        ///
        /// let stream = npipe::Stream::connect("demo")?;
        /// let socket = stream
        ///     .into_std()
        ///     .map_err(|_| io::Error::other("npipe holds bytes of a message; read them first"))?;
        /// # Ok::<(), std::io::Error>(())
        /// ```
        ///
        /// ## Platform-specific behavior
        ///
        /// Unix only.
        // The stream is handed back whole, as std's `IntoInnerError` does.
        #[allow(clippy::result_large_err)]
        pub fn into_std(self) -> Result<UnixStream, Stream> {
            self.inner.into_std().map_err(Stream::from_sys)
        }
    }

    #[cfg_attr(docsrs, doc(cfg(unix)))]
    impl From<UnixStream> for Stream {
        /// A byte-mode client end over `stream`.
        fn from(stream: UnixStream) -> Stream {
            Stream::from_std(stream, Mode::Byte)
        }
    }
}

#[cfg(windows)]
mod windows_impls {
    use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, RawHandle};

    use super::Stream;

    #[cfg_attr(docsrs, doc(cfg(windows)))]
    impl AsHandle for Stream {
        fn as_handle(&self) -> BorrowedHandle<'_> {
            self.inner.as_handle()
        }
    }

    #[cfg_attr(docsrs, doc(cfg(windows)))]
    impl AsRawHandle for Stream {
        fn as_raw_handle(&self) -> RawHandle {
            self.inner.as_handle().as_raw_handle()
        }
    }
}
