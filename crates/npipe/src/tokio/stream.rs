//! The async connected end: one definition over each platform's async backend
//! (`sys::AsyncStream`).

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Framed, FramedParts};

use super::MessageCodec;
use crate::frame::Received;
use crate::name::ToPipeName;
use crate::options::{ConnectOptions, Mode};
use crate::peer::PeerCredentials;
use crate::sys;

/// A connected pipe end on tokio, client or server: returned by
/// [`Stream::connect`] and by [`Listener::accept`](super::Listener::accept). The async
/// twin of [`crate::Stream`]; dropping it closes the connection.
///
/// - **Message mode** (the default): [`send`](Self::send), [`recv`](Self::recv),
///   [`recv_into`](Self::recv_into) as in the blocking API, or
///   [`into_framed`](Self::into_framed) for a `futures::Stream` of messages and a
///   `Sink` to send them. `AsyncRead`/`AsyncWrite` fail with
///   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) in message mode,
///   since they cannot keep boundaries.
/// - **Byte mode**: `AsyncRead`/`AsyncWrite` move bytes with nothing added, and
///   [`into_split`](Self::into_split) gives independent halves.
///
/// Timeouts: wrap any call in `tokio::time::timeout`; `recv` and `recv_into` are
/// cancel safe, so nothing is lost when the timeout fires.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let mut stream = npipe::tokio::Stream::connect("demo").await?;
/// stream.send(b"hello").await?;
/// let mut reply = Vec::new();
/// if stream.recv(&mut reply).await?.is_some() {
///     println!("{}", String::from_utf8_lossy(&reply));
/// }
/// # Ok(())
/// # }
/// ```
///
/// ## Platform-specific behavior
///
/// Unix: a Unix domain socket, with npipe's length prefix in message mode; the
/// stream is `AsFd`/`AsRawFd`. Windows: a named pipe with native messages, read and
/// written with npipe's own overlapped `ReadFile`/`WriteFile` (tokio's named pipes
/// would split a message longer than the read buffer without telling); the stream
/// is `AsHandle`/`AsRawHandle`.
pub struct Stream {
    inner: sys::AsyncStream,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("mode", &self.mode())
            .field("server", &self.is_server())
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub(crate) fn new(inner: sys::AsyncStream) -> Stream {
        Stream { inner }
    }

    /// Wraps a stream fresh from the blocking code (connect or accept).
    #[cfg(unix)]
    pub(crate) fn from_sys(stream: sys::Stream) -> io::Result<Stream> {
        sys::AsyncStream::from_sys(stream).map(Stream::new)
    }

    /// Connects to a message-mode pipe with the default [`ConnectOptions`] (waits up
    /// to 5 s for the pipe to appear or an instance to be free).
    ///
    /// `CreateFile` + `WaitNamedPipe`.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`]: `NotFound`, `PipeBusy`, `AccessDenied`,
    /// `InvalidName`, `Unsupported` (see [`ErrorKind`](crate::ErrorKind)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection made after the future was dropped is closed at once
    /// (the server sees a client that connected and left).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = npipe::tokio::Stream::connect("demo").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(name: impl ToPipeName) -> io::Result<Stream> {
        Stream::connect_with(name, &ConnectOptions::new()).await
    }

    /// Connects without waiting: fails at once with `NotFound` or `PipeBusy`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use npipe::ErrorKind;
    /// use npipe::tokio::Stream;
    ///
    /// match Stream::try_connect("demo").await {
    ///     Ok(mut stream) => stream.send(b"hello").await?,
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::PipeBusy => eprintln!("busy, try later"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_connect(name: impl ToPipeName) -> io::Result<Stream> {
        let mut opts = ConnectOptions::new();
        opts.timeout(std::time::Duration::ZERO);
        Stream::connect_with(name, &opts).await
    }

    /// Connects with `options` (timeout, mode, direction, maximum message size,
    /// expected server user).
    ///
    /// The wait for a busy or absent pipe runs on tokio's blocking pool, with the
    /// very code of the blocking [`ConnectOptions::connect`], so both give the same
    /// answers.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`].
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use npipe::ConnectOptions;
    ///
    /// let mut options = ConnectOptions::new();
    /// options.timeout(Duration::from_secs(1)).max_message_size(64 * 1024);
    /// let stream = npipe::tokio::Stream::connect_with("orders", &options).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix: a pipe that accepts at once is connected on the calling task, with no
    /// hand-off to the blocking pool. A remote pipe (`\\HOST\pipe\NAME`, through
    /// ssh) is connected on the blocking pool, by the blocking code, and its
    /// socket then driven by tokio like any other.
    pub async fn connect_with(
        name: impl ToPipeName,
        options: &ConnectOptions,
    ) -> io::Result<Stream> {
        let name = name.to_pipe_name()?;
        sys::AsyncStream::connect(name, options)
            .await
            .map(Stream::new)
    }

    /// The mode this end reads and writes in.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// Whether this is the server end.
    pub fn is_server(&self) -> bool {
        self.inner.is_server()
    }

    /// Sends one message (message mode) or the bytes (byte mode), all of it.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`]: `MessageTooLarge` (nothing sent), `Disconnected`,
    /// `Unsupported` on a read-only end.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped before it completes, part of the
    /// message may have been written and the connection must be closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let mut stream = npipe::tokio::Stream::connect("demo").await?;
    /// stream.send(b"hello").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Windows: the message goes out in one `WriteFile`, which completes even if
    /// the future is dropped.
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.inner.send(message).await
    }

    /// Receives one whole message into `buf` (cleared first). `None`: the peer closed
    /// between messages. After a [`recv_into`](Self::recv_into) that returned part of
    /// a message, returns the rest of it. In byte mode, returns what has arrived (up
    /// to 64 KiB).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`]: `MessageTooLarge` (refused before allocating; the
    /// stream can no longer be read), `Disconnected` in the middle of a message,
    /// `Unsupported` on a write-only end.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read before the future was dropped stay in the stream, and
    /// the next call returns the whole message. `buf` is only changed on completion.
    ///
    /// # Examples
    ///
    /// A request with a time limit. `None` means the server closed the connection
    /// without replying, which is not an empty reply.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use npipe::{Error, ErrorKind};
    ///
    /// let mut stream = npipe::tokio::Stream::connect("demo").await?;
    /// stream.send(b"ping").await?;
    /// let mut reply = Vec::new();
    /// match tokio::time::timeout(Duration::from_secs(5), stream.recv(&mut reply)).await {
    ///     Ok(Ok(Some(_))) => println!("{}", String::from_utf8_lossy(&reply)),
    ///     Ok(Ok(None)) => {
    ///         let closed = "the server closed the connection without replying";
    ///         return Err(Error::new(ErrorKind::Disconnected, closed).into());
    ///     }
    ///     Ok(Err(e)) => return Err(e),
    ///     Err(_elapsed) => eprintln!("no reply within 5 s"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.inner.read_half().recv(buf).await
    }

    /// Receives as much of the next message as fits in `buf`;
    /// [`Received::more_data`] tells that the rest follows (`ERROR_MORE_DATA`).
    /// `None`: the peer closed between messages.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed unless the future completes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let mut stream = npipe::tokio::Stream::connect("demo").await?;
    /// let mut buf = [0u8; 512];
    /// let mut message = Vec::new();
    /// while let Some(part) = stream.recv_into(&mut buf).await? {
    ///     message.extend_from_slice(&buf[..part.len()]);
    ///     if part.is_complete() {
    ///         break;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.inner.read_half().recv_into(buf).await
    }

    /// Copies what has already arrived of the next message (or the next bytes) into
    /// `buf` without consuming it. Never waits: `0` when nothing has arrived.
    ///
    /// `PeekNamedPipe`.
    ///
    /// # Errors
    ///
    /// I/O errors of the pipe; `MessageTooLarge` after a refused message.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut stream: npipe::tokio::Stream) -> std::io::Result<()> {
    /// let mut first = [0u8; 1];
    /// if stream.peek(&mut first)? == 0 {
    ///     println!("nothing has arrived yet");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf)
    }

    /// Who is at the other end.
    ///
    /// # Errors
    ///
    /// The OS could not tell.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = npipe::tokio::Listener::bind("demo")?;
    /// let stream = listener.accept().await?;
    /// if let Some(pid) = stream.peer_credentials()?.pid() {
    ///     println!("client process {pid}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Windows tells only the process id (`GetNamedPipeClientProcessId` on the
    /// server end, `GetNamedPipeServerProcessId` on the client end).
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Half-closes the connection (see [`crate::Stream::shutdown`]).
    ///
    /// # Errors
    ///
    /// I/O errors of the pipe.
    ///
    /// # Examples
    ///
    /// A byte-mode request whose end the server learns from the half-close:
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use std::net::Shutdown;
    /// use npipe::{ConnectOptions, Mode};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let mut options = ConnectOptions::new();
    /// options.mode(Mode::Byte);
    /// let mut stream = npipe::tokio::Stream::connect_with("upper", &options).await?;
    /// stream.write_all(b"make this loud").await?;
    /// stream.shutdown(Shutdown::Write)?;
    /// let mut reply = Vec::new();
    /// stream.read_to_end(&mut reply).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Windows pipes cannot half-close: the server end flushes (blocking until the
    /// client has read everything) and disconnects; the client end stops reading and
    /// writing at once.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// Ends the connection; same as dropping the stream, with errors reported.
    ///
    /// # Errors
    ///
    /// I/O errors of the final shutdown (a peer already gone is not an error).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let listener = npipe::tokio::Listener::bind("demo")?;
    /// let mut stream = listener.accept().await?;
    /// stream.send(b"goodbye").await?;
    /// stream.disconnect()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// As [`shutdown`](Self::shutdown): on Windows the server end blocks until the
    /// client has read everything.
    pub fn disconnect(self) -> io::Result<()> {
        match self.shutdown(Shutdown::Both) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }

    /// Splits into a read half and a write half that can be used from different
    /// tasks. In message mode they keep the framing ([`ReadHalf::recv`],
    /// [`WriteHalf::send`]); in byte mode they are `AsyncRead` / `AsyncWrite`.
    ///
    /// # Examples
    ///
    /// Sending and receiving at the same time, from two tasks:
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stream = npipe::tokio::Stream::connect("events").await?;
    /// let (mut reader, mut writer) = stream.into_split();
    /// let sender = tokio::spawn(async move {
    ///     for n in 0..3 {
    ///         writer.send(format!("event {n}").as_bytes()).await?;
    ///     }
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// let mut message = Vec::new();
    /// while reader.recv(&mut message).await?.is_some() {
    ///     println!("{}", String::from_utf8_lossy(&message));
    /// }
    /// sender.await??;
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (read, write) = self.inner.into_split();
        (ReadHalf { inner: read }, WriteHalf { inner: write })
    }

    /// A `futures::Stream` of received messages and a `Sink` of messages to send,
    /// framed by [`MessageCodec`] with this stream's maximum message size.
    ///
    /// Message mode only (the codec does the framing; the stream underneath then
    /// carries the raw bytes). Bytes already read ahead are handed to the codec.
    ///
    /// # Errors
    ///
    /// Gives the stream back, unchanged, if it is in byte mode or a message has been
    /// partly received with [`recv_into`](Self::recv_into).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use futures_util::{SinkExt, StreamExt};
    ///
    /// let stream = npipe::tokio::Stream::connect("demo").await?;
    /// let Ok(mut messages) = stream.into_framed() else {
    ///     unreachable!("a stream connected in message mode, with nothing read yet");
    /// };
    /// messages.send(bytes::Bytes::from_static(b"hello")).await?;
    /// if let Some(reply) = messages.next().await {
    ///     println!("{:?}", reply?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Windows: the pipe keeps its native messages; each one is presented to the
    /// codec as its frame (length and payload), and each frame the codec writes
    /// goes out as one message.
    // Giving the stream back unchanged is the point, as `crate::Stream::into_std` does.
    #[allow(clippy::result_large_err)]
    pub fn into_framed(mut self) -> Result<Framed<Stream, MessageCodec>, Stream> {
        let Some((codec, read_ahead)) = self.inner.start_framing() else {
            return Err(self);
        };
        let mut parts = FramedParts::new::<bytes::Bytes>(self, codec);
        parts.read_buf = read_ahead;
        Ok(Framed::from_parts(parts))
    }

    /// Waits until the start of the next request has arrived; `false` when the peer
    /// closed first. The server's idle deadline wraps this.
    pub(crate) async fn wait_data(&mut self) -> io::Result<bool> {
        self.inner.wait_data().await
    }
}

/// The reading half of a [`Stream`], from [`Stream::into_split`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let stream = npipe::tokio::Stream::connect("news").await?;
/// let (mut reader, _writer) = stream.into_split();
/// let mut message = Vec::new();
/// // `None`: the server closed the connection.
/// while reader.recv(&mut message).await?.is_some() {
///     println!("{}", String::from_utf8_lossy(&message));
/// }
/// # Ok(())
/// # }
/// ```
pub struct ReadHalf {
    inner: sys::AsyncReadHalf,
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf")
            .field("mode", &self.inner.mode())
            .finish_non_exhaustive()
    }
}

impl ReadHalf {
    /// As [`Stream::recv`].
    ///
    /// # Errors
    ///
    /// As [`Stream::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Stream::recv`].
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.inner.recv(buf).await
    }

    /// As [`Stream::recv_into`].
    ///
    /// # Errors
    ///
    /// As [`Stream::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Stream::recv_into`].
    pub async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.inner.recv_into(buf).await
    }

    /// The peer's credentials, as [`Stream::peer_credentials`].
    ///
    /// # Errors
    ///
    /// The OS could not tell.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.inner.peer_credentials()
    }
}

/// The writing half of a [`Stream`], from [`Stream::into_split`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let stream = npipe::tokio::Stream::connect("log").await?;
/// let (_reader, mut writer) = stream.into_split();
/// writer.send(b"started").await?;
/// # Ok(())
/// # }
/// ```
///
/// ## Platform-specific behavior
///
/// Unix: dropping it half-closes the connection (the peer's reads end).
pub struct WriteHalf {
    inner: sys::AsyncWriteHalf,
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf")
            .field("mode", &self.inner.mode())
            .finish_non_exhaustive()
    }
}

impl WriteHalf {
    /// As [`Stream::send`].
    ///
    /// # Errors
    ///
    /// As [`Stream::send`].
    ///
    /// # Cancel safety
    ///
    /// As [`Stream::send`].
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.inner.send(message).await
    }
}

/// `AsyncRead` of the stream and its read half: the backend's read half, which
/// moves bytes in byte mode (and, on a framed stream, the frames), and fails in
/// message mode.
macro_rules! forward_async_read {
    ($type:ty, $this:ident => $half:expr) => {
        impl AsyncRead for $type {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let $this = self.get_mut();
                $half.poll_read(cx, buf)
            }
        }
    };
}

/// `AsyncWrite` of the stream and its write half: the backend's write half, as
/// [`forward_async_read`].
macro_rules! forward_async_write {
    ($type:ty, $this:ident => $half:expr) => {
        impl AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let $this = self.get_mut();
                $half.poll_write(cx, &[io::IoSlice::new(buf)])
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let $this = self.get_mut();
                $half.poll_write(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                sys::WRITES_VECTORED
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = self.get_mut();
                $half.poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = self.get_mut();
                $half.poll_shutdown(cx)
            }
        }
    };
}

forward_async_read!(Stream, this => this.inner.read_half());
forward_async_read!(ReadHalf, this => this.inner);
forward_async_write!(Stream, this => this.inner.write_half());
forward_async_write!(WriteHalf, this => this.inner);

#[cfg(unix)]
#[cfg_attr(docsrs, doc(cfg(unix)))]
impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(unix)]
#[cfg_attr(docsrs, doc(cfg(unix)))]
impl std::os::fd::AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(windows)]
#[cfg_attr(docsrs, doc(cfg(windows)))]
impl std::os::windows::io::AsHandle for Stream {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.inner.as_handle()
    }
}

#[cfg(windows)]
#[cfg_attr(docsrs, doc(cfg(windows)))]
impl std::os::windows::io::AsRawHandle for Stream {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        self.inner.as_raw_handle()
    }
}
