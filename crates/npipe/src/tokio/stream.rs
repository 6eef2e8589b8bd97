//! The async connected end.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Framed, FramedParts};

use crate::error::{err, ErrorKind};
use crate::frame::codec::MessageCodec;
use crate::frame::nonblocking::{map_write_error, Reader, Writer};
use crate::frame::Received;
use crate::name::ToPipeName;
use crate::options::{ConnectOptions, Mode};
use crate::stream::PeerCredentials;
use crate::sys;
// Not `tokio::net::UnixStream`: see `sys::unix::tokio_io` for why.
use crate::sys::{AsyncUnixStream as UnixStream, OwnedReadHalf, OwnedWriteHalf};

/// A connected pipe end on tokio, client or server: returned by
/// [`Stream::connect`] and by [`Listener::accept`](super::Listener::accept). The async
/// twin of [`crate::Stream`]; dropping it closes the connection.
///
/// - **Message mode** (the default): [`send`](Self::send), [`recv`](Self::recv),
///   [`recv_into`](Self::recv_into) as in the blocking API, or
///   [`into_framed`](Self::into_framed) for a `futures::Stream` of messages and a
///   `Sink` to send them. `AsyncRead`/`AsyncWrite` fail with
///   [`ErrorKind::Unsupported`] in message mode, since they cannot keep boundaries.
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
pub struct Stream {
    io: UnixStream,
    reader: Reader,
    writer: Writer,
    is_server: bool,
    /// Server streams: the instance stays taken until the stream (or both halves) drop.
    slot: Option<Arc<sys::Slot>>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("mode", &self.reader.mode)
            .field("server", &self.is_server)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Wraps a stream fresh from the blocking code (connect or accept), whose
    /// socket is non-blocking already (`accept4` and the connect that does not
    /// wait make it so: setting it again would be a system call per connection).
    pub(crate) fn from_sys(stream: sys::Stream) -> io::Result<Stream> {
        let parts = stream.into_parts();
        Ok(Stream {
            io: UnixStream::from_std(parts.sock, parts.peer, parts.send_buffer, parts.is_server)?,
            reader: Reader::new(parts.mode, parts.decoder, parts.can_read, parts.is_server),
            writer: Writer::new(
                parts.mode,
                parts.max_message,
                parts.can_write,
                parts.is_server,
            ),
            is_server: parts.is_server,
            slot: parts.slot.map(Arc::new),
        })
    }

    /// Connects to a message-mode pipe with the default [`ConnectOptions`] (waits up
    /// to 5 s for the pipe to appear or an instance to be free).
    ///
    /// `CreateFile` + `WaitNamedPipe`.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`]: `NotFound`, `PipeBusy`, `AccessDenied`,
    /// `InvalidName`, `Unsupported` (see [`ErrorKind`]).
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
    pub async fn connect_with(
        name: impl ToPipeName,
        options: &ConnectOptions,
    ) -> io::Result<Stream> {
        let name = name.to_pipe_name()?;
        // A Unix socket connects at once when the server has room: no need for a
        // blocking thread then (a hand-off that costs more than the connect).
        if let Some(stream) = sys::Stream::connect_now(&name, options) {
            return Stream::from_sys(stream);
        }
        let options = options.clone();
        let stream = tokio::task::spawn_blocking(move || sys::Stream::connect(&name, &options))
            .await
            .map_err(|e| io::Error::other(format!("the connect task failed: {e}")))??;
        stream.set_nonblocking(true)?;
        Stream::from_sys(stream)
    }

    /// The mode this end reads and writes in.
    pub fn mode(&self) -> Mode {
        self.reader.mode
    }

    /// Whether this is the server end.
    pub fn is_server(&self) -> bool {
        self.is_server
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
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let sent = self.writer.send(&mut self.io, message).await;
        sent.map_err(|e| {
            // As the blocking client: a send that finds the connection closed
            // before anything was read may be the server's access refusal.
            if self.reader.expects_notice()
                && ErrorKind::of(&e) == ErrorKind::Disconnected
                && (self.reader.holds_refusal() || sys::refusal_waiting(self.io.as_fd()))
            {
                return sys::refused();
            }
            e
        })
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
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.reader.recv(&mut self.io, buf).await
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
    pub async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.reader.recv_into(&mut self.io, buf).await
    }

    /// Copies what has already arrived of the next message (or the next bytes) into
    /// `buf` without consuming it. Never waits: `0` when nothing has arrived.
    ///
    /// `PeekNamedPipe`.
    ///
    /// # Errors
    ///
    /// I/O errors of the socket; `MessageTooLarge` after a refused message.
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let io = &self.io;
        self.reader.peek(|b| io.try_read_buf(b), buf)
    }

    /// Who is at the other end.
    ///
    /// # Errors
    ///
    /// The OS could not tell.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.io.peer_credentials()
    }

    /// Half-closes the connection (see [`crate::Stream::shutdown`]).
    ///
    /// # Errors
    ///
    /// I/O errors of the socket.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown_fd(self.io.as_fd(), how)
    }

    /// Ends the connection; same as dropping the stream, with errors reported.
    ///
    /// # Errors
    ///
    /// I/O errors of the final shutdown (a peer already gone is not an error).
    pub fn disconnect(self) -> io::Result<()> {
        match self.shutdown(Shutdown::Both) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }

    /// Splits into a read half and a write half that can be used from different
    /// tasks. In message mode they keep the framing ([`ReadHalf::recv`],
    /// [`WriteHalf::send`]); in byte mode they are `AsyncRead` / `AsyncWrite`.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (read, write) = self.io.into_split();
        (
            ReadHalf {
                io: read,
                reader: self.reader,
                _slot: self.slot.clone(),
            },
            WriteHalf {
                io: write,
                writer: self.writer,
                _slot: self.slot,
            },
        )
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
    /// let mut messages = stream.into_framed().expect("message mode");
    /// messages.send(bytes::Bytes::from_static(b"hello")).await?;
    /// if let Some(reply) = messages.next().await {
    ///     println!("{:?}", reply?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    // Giving the stream back unchanged is the point, as `crate::Stream::into_std` does.
    #[allow(clippy::result_large_err)]
    pub fn into_framed(mut self) -> Result<Framed<Stream, MessageCodec>, Stream> {
        if self.reader.mode != Mode::Message || self.reader.in_message() {
            return Err(self);
        }
        let codec = MessageCodec::with_decoder(self.reader.decoder().clone());
        let buffered = std::mem::take(&mut self.reader.buf);
        self.reader.mode = Mode::Byte;
        self.writer.mode = Mode::Byte;
        let mut parts = FramedParts::new::<bytes::Bytes>(self, codec);
        parts.read_buf = buffered;
        Ok(Framed::from_parts(parts))
    }

    /// Waits until the start of the next request has arrived; `false` when the peer
    /// closed first. The server's idle deadline wraps this.
    pub(crate) async fn wait_data(&mut self) -> io::Result<bool> {
        self.reader.wait_data(&mut self.io).await
    }
}

fn shutdown_fd(fd: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    use nix::sys::socket::{shutdown, Shutdown as NixShutdown};
    let how = match how {
        Shutdown::Read => NixShutdown::Read,
        Shutdown::Write => NixShutdown::Write,
        Shutdown::Both => NixShutdown::Both,
    };
    shutdown(fd.as_raw_fd(), how).map_err(io::Error::from)
}

fn message_mode_io() -> io::Error {
    err(
        ErrorKind::Unsupported,
        "AsyncRead/AsyncWrite carry bytes; on a message-mode stream use send/recv or into_framed",
    )
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_read_bytes(&mut this.reader, Pin::new(&mut this.io), cx, buf)
    }
}

/// The byte-mode `AsyncWrite` of a whole stream and of its write half: both
/// hold a `writer` (mode, direction) and an `io` to write to.
macro_rules! byte_mode_async_write {
    ($type:ty) => {
        impl AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                let bufs = [io::IoSlice::new(buf)];
                poll_write_bytes(&this.writer, Pin::new(&mut this.io), cx, &bufs)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                poll_write_bytes(&this.writer, Pin::new(&mut this.io), cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}

byte_mode_async_write!(Stream);

/// Byte-mode writes, with one `sendmsg` for several slices.
fn poll_write_bytes<W: AsyncWrite>(
    writer: &Writer,
    io: Pin<&mut W>,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    if writer.mode != Mode::Byte {
        return Poll::Ready(Err(message_mode_io()));
    }
    writer.check_write()?;
    io.poll_write_vectored(cx, bufs).map_err(map_write_error)
}

/// Byte-mode reads: bytes read ahead first, then the socket.
fn poll_read_bytes<R: AsyncRead>(
    reader: &mut Reader,
    io: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if reader.mode != Mode::Byte {
        return Poll::Ready(Err(message_mode_io()));
    }
    reader.check_read()?;
    if !reader.buf.is_empty() {
        let n = reader.buf.len().min(buf.remaining());
        buf.put_slice(&reader.buf[..n]);
        reader.buf.advance(n);
        return Poll::Ready(Ok(()));
    }
    io.poll_read(cx, buf)
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

/// The reading half of a [`Stream`], from [`Stream::into_split`].
pub struct ReadHalf {
    io: OwnedReadHalf,
    reader: Reader,
    _slot: Option<Arc<sys::Slot>>,
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf")
            .field("mode", &self.reader.mode)
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
        self.reader.recv(&mut self.io, buf).await
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
        self.reader.recv_into(&mut self.io, buf).await
    }

    /// The peer's credentials.
    ///
    /// # Errors
    ///
    /// The OS could not tell.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.io.as_ref().peer_credentials()
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_read_bytes(&mut this.reader, Pin::new(&mut this.io), cx, buf)
    }
}

/// The writing half of a [`Stream`], from [`Stream::into_split`]. Dropping it
/// half-closes the connection (the peer's reads end).
pub struct WriteHalf {
    io: OwnedWriteHalf,
    writer: Writer,
    _slot: Option<Arc<sys::Slot>>,
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf")
            .field("mode", &self.writer.mode)
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
    /// Not cancel safe, as [`Stream::send`].
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.writer.send(&mut self.io, message).await
    }
}

byte_mode_async_write!(WriteHalf);
