//! The async connected end on Unix, under [`crate::tokio::Stream`]: the socket
//! registered with tokio ([`AsyncSocket`]) and the framing's async driver
//! ([`crate::frame::nonblocking`]).

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::async_io::{AsyncSocket, SocketReadHalf, SocketWriteHalf};
use super::gate::Slot;
use super::stream::{refused_or, Stream};
use crate::frame::codec::MessageCodec;
use crate::frame::nonblocking::{map_write_error, Reader, Writer};
use crate::frame::Received;
use crate::name::PipeName;
use crate::options::{ConnectOptions, Mode};
use crate::stream::PeerCredentials;

/// A connected end: the socket, the framing both ways, and (server ends) the
/// instance it holds.
pub(crate) struct AsyncStream {
    io: AsyncSocket,
    reader: Reader,
    writer: Writer,
    is_server: bool,
    /// Server streams: the instance stays taken until the stream (or both halves) drop.
    slot: Option<Arc<Slot>>,
}

impl fmt::Debug for AsyncStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncStream")
            .field("mode", &self.reader.mode)
            .field("server", &self.is_server)
            .finish_non_exhaustive()
    }
}

impl AsyncStream {
    /// Wraps a stream fresh from the blocking code (connect or accept), whose
    /// socket is non-blocking already (`accept4` and the connect that does not
    /// wait make it so: setting it again would be a system call per connection).
    pub(crate) fn from_sys(stream: Stream) -> io::Result<AsyncStream> {
        let parts = stream.into_parts();
        Ok(AsyncStream {
            io: AsyncSocket::from_std(parts.sock, parts.peer, parts.send_buffer, parts.is_server)?,
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

    /// Connects with the blocking code: at once when that needs no waiting (a Unix
    /// socket connects at once when the server has room, and a hand-off to a
    /// blocking thread costs more than the connect), else on tokio's blocking pool.
    pub(crate) async fn connect(
        name: PipeName,
        options: &ConnectOptions,
    ) -> io::Result<AsyncStream> {
        if let Some(stream) = Stream::connect_now(&name, options) {
            return AsyncStream::from_sys(stream);
        }
        let options = options.clone();
        let stream = tokio::task::spawn_blocking(move || Stream::connect(&name, &options))
            .await
            .map_err(|e| io::Error::other(format!("the connect task failed: {e}")))??;
        stream.set_nonblocking(true)?;
        AsyncStream::from_sys(stream)
    }

    pub(crate) fn mode(&self) -> Mode {
        self.reader.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.is_server
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let sent = self.writer.send(&mut self.io, message).await;
        // As the blocking client: a send that finds the connection closed before
        // anything was read may be the server's access refusal.
        sent.map_err(|e| {
            let notice = self.reader.holds_refusal();
            refused_or(e, self.reader.expects_notice(), notice, self.io.as_fd())
        })
    }

    pub(crate) async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.reader.recv(&mut self.io, buf).await
    }

    pub(crate) async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.reader.recv_into(&mut self.io, buf).await
    }

    pub(crate) fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let io = &self.io;
        self.reader.peek(|b| io.try_read_buf(b), buf)
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.io.peer_credentials()
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.shutdown(how)
    }

    pub(crate) fn into_split(self) -> (AsyncReadHalf, AsyncWriteHalf) {
        let (read, write) = self.io.into_split();
        (
            AsyncReadHalf {
                io: read,
                reader: self.reader,
                _slot: self.slot.clone(),
            },
            AsyncWriteHalf {
                io: write,
                writer: self.writer,
                _slot: self.slot,
            },
        )
    }

    /// Turns a message-mode stream into the byte transport of a [`MessageCodec`]:
    /// the codec, which goes on from the reader's framing state, and the bytes read
    /// ahead, for the codec's buffer. `None` (nothing changed) in byte mode or
    /// after part of a message was delivered.
    pub(crate) fn start_framing(&mut self) -> Option<(MessageCodec, BytesMut)> {
        if self.reader.mode != Mode::Message || self.reader.in_message() {
            return None;
        }
        let codec = MessageCodec::with_decoder(self.reader.decoder().clone());
        self.reader.mode = Mode::Byte;
        self.writer.mode = Mode::Byte;
        Some((codec, std::mem::take(&mut self.reader.buf)))
    }

    /// Waits until the start of the next request has arrived; `false` when the peer
    /// closed first.
    pub(crate) async fn wait_data(&mut self) -> io::Result<bool> {
        self.reader.wait_data(&mut self.io).await
    }
}

fn message_mode_io() -> io::Error {
    crate::error::err(
        crate::ErrorKind::Unsupported,
        "AsyncRead/AsyncWrite carry bytes; on a message-mode stream use send/recv or into_framed",
    )
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

/// The byte-mode `AsyncRead` of a whole stream and of its read half: both hold a
/// `reader` and an `io` to read from.
macro_rules! byte_mode_async_read {
    ($type:ty) => {
        impl AsyncRead for $type {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                poll_read_bytes(&mut this.reader, Pin::new(&mut this.io), cx, buf)
            }
        }
    };
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

byte_mode_async_read!(AsyncStream);
byte_mode_async_write!(AsyncStream);

impl AsFd for AsyncStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for AsyncStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

/// The reading half of an [`AsyncStream`].
pub(crate) struct AsyncReadHalf {
    io: SocketReadHalf,
    reader: Reader,
    _slot: Option<Arc<Slot>>,
}

impl AsyncReadHalf {
    pub(crate) fn mode(&self) -> Mode {
        self.reader.mode
    }

    pub(crate) async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.reader.recv(&mut self.io, buf).await
    }

    pub(crate) async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.reader.recv_into(&mut self.io, buf).await
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.io.as_ref().peer_credentials()
    }
}

byte_mode_async_read!(AsyncReadHalf);

/// The writing half of an [`AsyncStream`]; dropping it half-closes the connection.
pub(crate) struct AsyncWriteHalf {
    io: SocketWriteHalf,
    writer: Writer,
    _slot: Option<Arc<Slot>>,
}

impl AsyncWriteHalf {
    pub(crate) fn mode(&self) -> Mode {
        self.writer.mode
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.writer.send(&mut self.io, message).await
    }
}

byte_mode_async_write!(AsyncWriteHalf);
