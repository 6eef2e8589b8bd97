//! The async connected end on Unix, under [`crate::tokio::Stream`]: the socket
//! registered with tokio ([`AsyncSocket`]) and the framing's async driver
//! ([`crate::frame::nonblocking`]). A stream is its two halves, joined until
//! [`into_split`](AsyncStream::into_split) lets them go.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::async_io::AsyncSocket;
use super::gate::Slot;
use super::remote::SshChild;
use super::stream::{name_the_refuser, refusal, refused_or, Stream};
use crate::frame::codec::MessageCodec;
use crate::frame::nonblocking::{map_write_error, Reader, Writer};
use crate::frame::Received;
use crate::name::PipeName;
use crate::options::{ConnectOptions, Mode};
use crate::peer::PeerCredentials;

/// Writes of several slices go out in one `sendmsg`.
pub(crate) const WRITES_VECTORED: bool = true;

/// A connected end: its reading and writing halves over one socket, and (server
/// ends) the instance it holds or (remote clients) the ssh process, until both
/// halves drop.
#[derive(Debug)]
pub(crate) struct AsyncStream {
    read: AsyncReadHalf,
    write: AsyncWriteHalf,
    is_server: bool,
    /// How a refusal by the server's access policy is told.
    refused: fn() -> io::Error,
}

impl AsyncStream {
    /// Wraps a stream fresh from the blocking code (connect or accept), whose
    /// socket is non-blocking already (`accept4` and the connect that does not
    /// wait make it so: setting it again would be a system call per connection).
    pub(crate) fn from_sys(stream: Stream) -> io::Result<AsyncStream> {
        let parts = stream.into_parts();
        let io = AsyncSocket::from_std(parts.sock, parts.peer, parts.send_buffer, parts.is_server)?;
        let slot = parts.slot.map(Arc::new);
        let refused = refusal(parts.remote.is_some());
        let remote = parts.remote.map(|ssh| Arc::new(*ssh));
        Ok(AsyncStream {
            read: AsyncReadHalf {
                io: io.reader(),
                reader: Reader::new(parts.mode, parts.decoder, parts.can_read, parts.is_server),
                _slot: slot.clone(),
                remote: remote.clone(),
            },
            write: AsyncWriteHalf {
                io,
                writer: Writer::new(
                    parts.mode,
                    parts.max_message,
                    parts.can_write,
                    parts.is_server,
                ),
                _slot: slot,
                _remote: remote,
            },
            is_server: parts.is_server,
            refused,
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
        self.read.mode()
    }

    pub(crate) fn is_server(&self) -> bool {
        self.is_server
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let sent = self.write.send(message).await;
        // As the blocking client: a send that finds the connection closed before
        // anything was read may be the server's access refusal.
        sent.map_err(|e| {
            let reader = &self.read.reader;
            let fd = self.read.io.as_fd();
            let notice = reader.holds_refusal();
            let e = refused_or(e, reader.expects_notice(), notice, fd, self.refused);
            name_the_refuser(e, || self.read.local_server())
        })
    }

    pub(crate) fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let io = &self.read.io;
        self.read.reader.peek(|b| io.try_read_buf(b), buf)
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.read.peer_credentials()
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.read.io.shutdown(how)
    }

    /// The halves, to be used from different tasks. Dropping the write half shuts
    /// the write direction down, as tokio's `OwnedWriteHalf` does.
    pub(crate) fn into_split(mut self) -> (AsyncReadHalf, AsyncWriteHalf) {
        self.write.io.shut_write_on_drop();
        (self.read, self.write)
    }

    /// Turns a message-mode stream into the byte transport of a [`MessageCodec`]:
    /// the codec, which goes on from the reader's framing state, and the bytes read
    /// ahead, for the codec's buffer. `None` (nothing changed) in byte mode or
    /// after part of a message was delivered.
    pub(crate) fn start_framing(&mut self) -> Option<(MessageCodec, BytesMut)> {
        let reader = &mut self.read.reader;
        if reader.mode != Mode::Message || reader.in_message() {
            return None;
        }
        let codec = MessageCodec::with_decoder(reader.decoder().clone());
        reader.mode = Mode::Byte;
        self.write.writer.mode = Mode::Byte;
        Some((codec, std::mem::take(&mut reader.buf)))
    }

    /// Waits until the start of the next request has arrived; `false` when the peer
    /// closed first.
    pub(crate) async fn wait_data(&mut self) -> io::Result<bool> {
        self.read.reader.wait_data(&mut self.read.io).await
    }

    /// The reading half, joined: the stream's `recv`, `recv_into` and
    /// `AsyncRead`.
    pub(crate) fn read_half(&mut self) -> &mut AsyncReadHalf {
        &mut self.read
    }

    /// The writing half, joined: the stream's `AsyncWrite`.
    pub(crate) fn write_half(&mut self) -> &mut AsyncWriteHalf {
        &mut self.write
    }
}

fn message_mode_io() -> io::Error {
    crate::error::err(
        crate::ErrorKind::Unsupported,
        "AsyncRead/AsyncWrite carry bytes; on a message-mode stream use send/recv or into_framed",
    )
}

impl AsFd for AsyncStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.io.as_fd()
    }
}

impl AsRawFd for AsyncStream {
    fn as_raw_fd(&self) -> RawFd {
        self.read.io.as_raw_fd()
    }
}

/// The reading half of an [`AsyncStream`].
#[derive(Debug)]
pub(crate) struct AsyncReadHalf {
    io: AsyncSocket,
    reader: Reader,
    _slot: Option<Arc<Slot>>,
    /// A remote client's ssh process, reaped once both halves are dropped.
    remote: Option<Arc<SshChild>>,
}

impl AsyncReadHalf {
    pub(crate) fn mode(&self) -> Mode {
        self.reader.mode
    }

    pub(crate) async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let got = self.reader.recv(&mut self.io, buf).await;
        got.map_err(|e| name_the_refuser(e, || self.local_server()))
    }

    pub(crate) async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let got = self.reader.recv_into(&mut self.io, buf).await;
        got.map_err(|e| name_the_refuser(e, || self.local_server()))
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.io.peer_credentials()
    }

    /// The server process on this machine, to name one that refused this client;
    /// none for a remote pipe (its server's uid is HOST's, not comparable here).
    fn local_server(&self) -> io::Result<PeerCredentials> {
        match self.remote {
            Some(_) => Err(io::ErrorKind::Unsupported.into()),
            None => self.peer_credentials(),
        }
    }

    /// Byte-mode reads: bytes read ahead first, then the socket; an error in
    /// message mode.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let reader = &mut self.reader;
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
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

/// The writing half of an [`AsyncStream`]; once split off, dropping it half-closes
/// the connection.
#[derive(Debug)]
pub(crate) struct AsyncWriteHalf {
    io: AsyncSocket,
    writer: Writer,
    _slot: Option<Arc<Slot>>,
    _remote: Option<Arc<SshChild>>,
}

impl AsyncWriteHalf {
    pub(crate) fn mode(&self) -> Mode {
        self.writer.mode
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.writer.send(&mut self.io, message).await
    }

    /// Byte-mode writes, with one `sendmsg` for several slices; an error in
    /// message mode.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.writer.mode != Mode::Byte {
            return Poll::Ready(Err(message_mode_io()));
        }
        self.writer.check_write()?;
        Pin::new(&mut self.io)
            .poll_write_vectored(cx, bufs)
            .map_err(map_write_error)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
