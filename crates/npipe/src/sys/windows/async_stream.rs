//! The async connected end on Windows, under [`crate::tokio::Stream`]: real named
//! pipes with native messages.
//!
//! tokio's own named pipes cannot be used for message mode: their reads treat
//! `ERROR_MORE_DATA` as a plain partial read, so a message longer than the read
//! buffer would be split without notice. This end issues its own overlapped
//! `ReadFile`/`WriteFile` ([`AsyncOp`]), one message at a time, and wakes the task
//! from npipe's completion port thread when it completes. Connecting runs the
//! blocking connect (with its `WaitNamedPipe`) on tokio's blocking pool.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::ReadBuf;
use windows_sys::Win32::Foundation::ERROR_MORE_DATA;

use super::async_io::{register, AsyncOp};
use super::listener::Slot;
use super::stream::{
    disconnect_in_background, is_disconnect, left_this_message, open_client, peek_pipe,
    peer_credentials, EndState,
};
use crate::error::{err, err_src, ErrorKind};
use crate::frame::codec::MessageCodec;
use crate::frame::{encode_header, frame_header, growth, whole_frame, Cap, Received, HEADER_LEN};
use crate::name::PipeName;
use crate::options::{ConnectOptions, Mode};
use crate::peer::PeerCredentials;

/// Size of a read that starts a message (smaller than the cap if the cap is smaller).
const FIRST_READ: usize = 64 * 1024;
/// Largest single read of the rest of a long message.
const MAX_READ: usize = 16 * 1024 * 1024;
/// Largest chunk `recv` returns in byte mode, as in the blocking API.
const BYTE_CHUNK: usize = 64 * 1024;

/// What the stream (or both halves) share: the handle, and the server end's
/// disconnect when the last of them is dropped.
#[derive(Debug)]
struct End {
    pipe: Arc<OwnedHandle>,
    state: EndState,
    slot: std::sync::Mutex<Option<Slot>>,
}

impl Drop for End {
    fn drop(&mut self) {
        if self.state.disconnects_on_drop() {
            let slot = self.slot.get_mut().ok().and_then(Option::take);
            disconnect_in_background(&self.pipe, slot);
        }
    }
}

/// Read state: the data of the current message that has arrived and not been
/// delivered, kept here between awaits so that a dropped future loses nothing.
#[derive(Debug)]
struct Reader {
    end: Arc<End>,
    mode: Mode,
    /// The maximum message size, and the refusal of a message over it.
    cap: Cap,
    op: Option<AsyncOp>,
    /// Bytes received and not delivered; `ready` tells that they form a chunk (which
    /// may be an empty message).
    chunk: Vec<u8>,
    pos: usize,
    ready: bool,
    /// The message goes on after `chunk`.
    more: bool,
    /// Part of the current message has been delivered or accumulated.
    in_message: bool,
    /// `recv`'s message so far.
    acc: Vec<u8>,
    next_read: usize,
    /// Bytes of the current message read from the pipe so far (message mode).
    message_read: usize,
    eof: bool,
    /// `into_framed`: reads yield the Unix frame (length, payload) of each message.
    framed: bool,
    header: Option<([u8; HEADER_LEN], usize)>,
}

impl Reader {
    fn new(end: Arc<End>, mode: Mode, max: u32) -> Reader {
        Reader {
            end,
            mode,
            cap: Cap::new(max),
            op: None,
            chunk: Vec::new(),
            pos: 0,
            ready: false,
            more: false,
            in_message: false,
            acc: Vec::new(),
            next_read: FIRST_READ.min(max as usize),
            message_read: 0,
            eof: false,
            framed: false,
            header: None,
        }
    }

    fn check_read(&self) -> io::Result<()> {
        self.end.state.check_read()
    }

    /// Makes the next chunk of data available; `false` at the end of the stream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            self.cap.check()?;
            if self.ready {
                return Poll::Ready(Ok(true));
            }
            if self.eof || self.end.state.read_shut() {
                return Poll::Ready(Ok(false));
            }
            let op = match &mut self.op {
                Some(op) => op,
                None => self
                    .op
                    .insert(AsyncOp::read(&self.end.pipe, self.next_read)?),
            };
            let outcome = ready!(op.poll(cx));
            self.op = None;
            let more = match outcome.error {
                None => false,
                Some(ERROR_MORE_DATA) if self.mode == Mode::Message => true,
                Some(ERROR_MORE_DATA) => false,
                Some(code) if is_disconnect(code) => {
                    self.eof = true;
                    return Poll::Ready(Ok(false));
                }
                Some(code) => return Poll::Ready(Err(io::Error::from_raw_os_error(code as i32))),
            };
            let len = outcome.buf.len();
            if self.mode == Mode::Byte {
                if len == 0 {
                    continue;
                }
                self.next_read = FIRST_READ;
            } else {
                let left = if more {
                    left_this_message(self.end.pipe.as_handle())?.max(1)
                } else {
                    0
                };
                if !self.in_message && !self.acc_started() {
                    let total = len + left;
                    self.cap.admit(total)?;
                    if self.framed {
                        self.header = Some((frame_header(total), 0));
                    }
                }
                // Each read of a long message may be larger than the last only as
                // far as the bytes read so far allow (`grown_len`): memory follows
                // what arrives, whatever the system says is left of the message.
                self.message_read = if more { self.message_read + len } else { 0 };
                self.next_read = if more {
                    growth(self.message_read, left).min(MAX_READ)
                } else {
                    FIRST_READ.min(self.cap.max() as usize)
                };
            }
            self.chunk = outcome.buf;
            self.pos = 0;
            self.more = more;
            self.ready = true;
        }
    }

    fn acc_started(&self) -> bool {
        !self.acc.is_empty()
    }

    fn cut_off(&self) -> io::Error {
        err(
            ErrorKind::Disconnected,
            "the peer closed the connection in the middle of a message",
        )
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Poll<io::Result<Option<usize>>> {
        self.check_read()?;
        if self.mode == Mode::Byte {
            if !ready!(self.poll_chunk(cx))? {
                out.clear();
                return Poll::Ready(Ok(None));
            }
            let n = (self.chunk.len() - self.pos).min(BYTE_CHUNK);
            out.clear();
            out.extend_from_slice(&self.chunk[self.pos..self.pos + n]);
            self.consume(n);
            return Poll::Ready(Ok(Some(n)));
        }
        loop {
            if !ready!(self.poll_chunk(cx))? {
                if self.acc.is_empty() && !self.in_message {
                    out.clear();
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(self.cut_off()));
            }
            self.acc.extend_from_slice(&self.chunk[self.pos..]);
            self.ready = false;
            if self.more {
                self.in_message = true;
                continue;
            }
            self.in_message = false;
            out.clear();
            std::mem::swap(out, &mut self.acc);
            return Poll::Ready(Ok(Some(out.len())));
        }
    }

    fn poll_recv_into(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<Option<Received>>> {
        self.check_read()?;
        if !self.acc.is_empty() {
            // Left by a `recv` whose future was dropped: it is the front of the message.
            let mut front = std::mem::take(&mut self.acc);
            if self.ready {
                front.extend_from_slice(&self.chunk[self.pos..]);
            } else {
                self.more = true;
            }
            self.chunk = front;
            self.pos = 0;
            self.ready = true;
        }
        if !ready!(self.poll_chunk(cx))? {
            return Poll::Ready(if self.in_message {
                Err(self.cut_off())
            } else {
                Ok(None)
            });
        }
        let avail = self.chunk.len() - self.pos;
        let n = avail.min(out.len());
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.consume(n);
        let more = self.mode == Mode::Message && (self.ready || self.more);
        self.in_message = more;
        Poll::Ready(Ok(Some(Received::new(n, more))))
    }

    /// Takes `n` bytes of the chunk; the chunk is done when all are taken.
    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.chunk.len() {
            self.ready = false;
        }
    }

    fn peek(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.check_read()?;
        if self.ready {
            let n = (self.chunk.len() - self.pos).min(out.len());
            out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
            return Ok(n);
        }
        if self.op.is_some() {
            // A read is waiting for data, or has just completed: take it in if so.
            let mut cx = Context::from_waker(Waker::noop());
            return match self.poll_chunk(&mut cx) {
                Poll::Ready(Ok(true)) => self.peek(out),
                Poll::Ready(Ok(false)) | Poll::Pending => Ok(0),
                Poll::Ready(Err(e)) => Err(e),
            };
        }
        self.cap.check()?;
        peek_pipe(self.end.pipe.as_handle(), out)
    }

    fn poll_read_bytes(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.mode != Mode::Byte && !self.framed {
            return Poll::Ready(Err(message_mode_io()));
        }
        self.check_read()?;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some((header, sent)) = &mut self.header {
            let n = (HEADER_LEN - *sent).min(buf.remaining());
            buf.put_slice(&header[*sent..*sent + n]);
            *sent += n;
            if *sent == HEADER_LEN {
                self.header = None;
            }
            return Poll::Ready(Ok(()));
        }
        loop {
            if !ready!(self.poll_chunk(cx))? {
                return Poll::Ready(if self.framed && self.in_message {
                    Err(self.cut_off())
                } else {
                    Ok(())
                });
            }
            if self.header.is_some() {
                // A new message: its frame header goes first.
                return self.poll_read_bytes(cx, buf);
            }
            let avail = self.chunk.len() - self.pos;
            if avail == 0 {
                // An empty message (its header was delivered) or the end of one.
                self.ready = false;
                self.in_message = self.more;
                continue;
            }
            let n = avail.min(buf.remaining());
            buf.put_slice(&self.chunk[self.pos..self.pos + n]);
            self.consume(n);
            self.in_message = self.ready || self.more;
            return Poll::Ready(Ok(()));
        }
    }
}

/// Write state: at most one `WriteFile` in flight.
#[derive(Debug)]
struct Writer {
    end: Arc<End>,
    mode: Mode,
    max: u32,
    op: Option<(AsyncOp, usize)>,
    /// `into_framed`: frames written by the codec, cut into messages here.
    framed: bool,
    frame: Vec<u8>,
}

impl Writer {
    fn check_write(&self) -> io::Result<()> {
        self.end.state.check_write()
    }

    /// Waits for the write in flight, if any.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((op, len)) = &mut self.op else {
            return Poll::Ready(Ok(()));
        };
        let outcome = ready!(op.poll(cx));
        let len = *len;
        self.op = None;
        Poll::Ready(match outcome.error {
            None if outcome.transferred == len => Ok(()),
            None => Err(err(
                ErrorKind::Io,
                format!("the system wrote {} of {len} bytes", outcome.transferred),
            )),
            Some(code) if is_disconnect(code) => Err(err_src(
                ErrorKind::Disconnected,
                "the other end closed the connection or does not read (an outbound pipe)",
                io::Error::from_raw_os_error(code as i32),
            )),
            Some(code) => Err(io::Error::from_raw_os_error(code as i32)),
        })
    }

    fn start(&mut self, data: Vec<u8>) -> io::Result<()> {
        let len = data.len();
        self.op = Some((AsyncOp::write(&self.end.pipe, data)?, len));
        Ok(())
    }

    async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.check_write()?;
        if self.mode == Mode::Message {
            encode_header(message.len(), self.max)?;
        }
        poll_fn(|cx| self.poll_idle(cx)).await?;
        if self.mode == Mode::Byte && message.is_empty() {
            return Ok(());
        }
        self.start(message.to_vec())?;
        poll_fn(|cx| self.poll_idle(cx)).await
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.mode != Mode::Byte && !self.framed {
            return Poll::Ready(Err(message_mode_io()));
        }
        self.check_write()?;
        ready!(self.poll_idle(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.framed {
            self.start(buf.to_vec())?;
            return Poll::Ready(Ok(buf.len()));
        }
        // Framed: collect frames; each one's payload goes out as one message.
        self.frame.extend_from_slice(buf);
        if let Some(message) = self.next_frame() {
            self.start(message)?;
        }
        Poll::Ready(Ok(buf.len()))
    }

    /// The payload of the first complete frame collected, if any.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        let (len, payload) = whole_frame(&self.frame)?;
        let message = payload.to_vec();
        self.frame.drain(..len);
        Some(message)
    }

    /// Waits until everything written has been sent, frame by frame.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_idle(cx))?;
            match self.next_frame() {
                Some(message) => self.start(message)?,
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

fn message_mode_io() -> io::Error {
    err(
        ErrorKind::Unsupported,
        "AsyncRead/AsyncWrite carry bytes; on a message-mode stream use send/recv or into_framed",
    )
}

/// Writes take one slice at a time: a `WriteFile` is one message.
pub(crate) const WRITES_VECTORED: bool = false;

/// A connected end: its reading and writing halves, and what both share.
#[derive(Debug)]
pub(crate) struct AsyncStream {
    read: AsyncReadHalf,
    write: AsyncWriteHalf,
    end: Arc<End>,
}

impl AsyncStream {
    pub(crate) fn new(
        pipe: OwnedHandle,
        mode: Mode,
        max: u32,
        state: EndState,
        slot: Option<Slot>,
    ) -> io::Result<AsyncStream> {
        register(&pipe)?;
        let end = Arc::new(End {
            pipe: Arc::new(pipe),
            state,
            slot: std::sync::Mutex::new(slot),
        });
        let writer = Writer {
            end: Arc::clone(&end),
            mode,
            max,
            op: None,
            framed: false,
            frame: Vec::new(),
        };
        Ok(AsyncStream {
            read: AsyncReadHalf {
                reader: Reader::new(Arc::clone(&end), mode, max),
            },
            write: AsyncWriteHalf { writer },
            end,
        })
    }

    /// Connects with the blocking code (`CreateFile`, `WaitNamedPipe`) on tokio's
    /// blocking pool.
    pub(crate) async fn connect(
        name: PipeName,
        options: &ConnectOptions,
    ) -> io::Result<AsyncStream> {
        let opts = options.clone();
        let client = tokio::task::spawn_blocking(move || open_client(&name, &opts))
            .await
            .map_err(|e| io::Error::other(format!("the connect task failed: {e}")))??;
        AsyncStream::new(
            client.pipe,
            options.mode,
            options.max_message_size,
            client.state,
            None,
        )
    }

    pub(crate) fn mode(&self) -> Mode {
        self.read.mode()
    }

    pub(crate) fn is_server(&self) -> bool {
        self.end.state.is_server
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.write.send(message).await
    }

    pub(crate) fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.reader.peek(buf)
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        self.read.peer_credentials()
    }

    /// See [`EndState::shutdown`].
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.end.state.shutdown(self.end.pipe.as_handle(), how)
    }

    pub(crate) fn into_split(self) -> (AsyncReadHalf, AsyncWriteHalf) {
        (self.read, self.write)
    }

    /// Turns a message-mode stream into the byte transport of a [`MessageCodec`]:
    /// each native message is presented to the codec as its frame, so the codec
    /// works unchanged; on the pipe, messages stay native. `None` (nothing changed)
    /// in byte mode or after part of a message was delivered.
    pub(crate) fn start_framing(&mut self) -> Option<(MessageCodec, BytesMut)> {
        let reader = &mut self.read.reader;
        if reader.mode != Mode::Message || reader.in_message || !reader.acc.is_empty() {
            return None;
        }
        let codec = MessageCodec::with_max_message_size(reader.cap.max());
        if reader.ready && reader.pos == 0 {
            // A message already read (in part): announce it like a new one.
            let left = if reader.more {
                left_this_message(self.end.pipe.as_handle()).unwrap_or(0)
            } else {
                0
            };
            reader.header = Some((frame_header(reader.chunk.len() + left), 0));
        }
        reader.framed = true;
        self.write.writer.framed = true;
        Some((codec, BytesMut::new()))
    }

    /// Waits until the start of the next request has arrived; `false` when the peer
    /// closed first.
    pub(crate) async fn wait_data(&mut self) -> io::Result<bool> {
        let reader = &mut self.read.reader;
        reader.check_read()?;
        poll_fn(|cx| reader.poll_chunk(cx)).await
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

impl AsHandle for AsyncStream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.end.pipe.as_handle()
    }
}

impl AsRawHandle for AsyncStream {
    fn as_raw_handle(&self) -> RawHandle {
        self.end.pipe.as_raw_handle()
    }
}

/// The reading half of an [`AsyncStream`].
#[derive(Debug)]
pub(crate) struct AsyncReadHalf {
    reader: Reader,
}

impl AsyncReadHalf {
    pub(crate) fn mode(&self) -> Mode {
        self.reader.mode
    }

    pub(crate) async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        poll_fn(|cx| self.reader.poll_recv(cx, buf)).await
    }

    pub(crate) async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        poll_fn(|cx| self.reader.poll_recv_into(cx, buf)).await
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let end = &self.reader.end;
        peer_credentials(end.pipe.as_handle(), end.state.is_server)
    }

    /// Byte-mode reads, or a framed stream's frames; an error in message mode.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reader.poll_read_bytes(cx, buf)
    }
}

/// The writing half of an [`AsyncStream`].
#[derive(Debug)]
pub(crate) struct AsyncWriteHalf {
    writer: Writer,
}

impl AsyncWriteHalf {
    pub(crate) fn mode(&self) -> Mode {
        self.writer.mode
    }

    pub(crate) async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.writer.send(message).await
    }

    /// Byte-mode writes, or a framed stream's frames; an error in message mode.
    /// One slice at a time (the first that is not empty, as tokio's
    /// `poll_write_vectored` does for a writer without vectored writes).
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.writer.poll_write(cx, first)
    }

    /// Waits until everything written has been sent.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.poll_flush(cx)
    }

    /// A flush: Windows pipes cannot half-close.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.poll_flush(cx)
    }
}
