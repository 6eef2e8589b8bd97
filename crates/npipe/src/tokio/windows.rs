//! The async API on Windows: the same [`Listener`], [`Stream`], [`ReadHalf`] and
//! [`WriteHalf`] as on Unix, over real named pipes.
//!
//! tokio's own named pipes cannot be used for message mode: their reads treat
//! `ERROR_MORE_DATA` as a plain partial read, so a message longer than the read
//! buffer would be split without notice. These types issue their own overlapped
//! `ReadFile`/`WriteFile` (`sys::AsyncOp`), one message at a time, and wake the task
//! from the system thread pool when it completes. Accepting uses the blocking
//! listener's pool of instances; connecting runs the blocking connect (with its
//! `WaitNamedPipe`) on tokio's blocking pool.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::Framed;
use windows_sys::Win32::Foundation::ERROR_MORE_DATA;

use crate::error::{err, err_src, ErrorKind};
use crate::frame::codec::MessageCodec;
use crate::frame::{encode_header, grown_len, Received, HEADER_LEN};
use crate::name::{Address, PipeName, ToPipeName};
use crate::options::{ConnectOptions, ListenerOptions, Mode};
use crate::stream::PeerCredentials;
use crate::sys::{self, AsyncOp};

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
    is_server: bool,
    can_write: bool,
    read_shut: AtomicBool,
    write_shut: AtomicBool,
    slot: std::sync::Mutex<Option<sys::Slot>>,
}

impl Drop for End {
    fn drop(&mut self) {
        if self.is_server && !self.write_shut.load(Ordering::Relaxed) {
            let slot = self.slot.get_mut().ok().and_then(Option::take);
            sys::disconnect_in_background(&self.pipe, slot);
        }
    }
}

/// Read state: the data of the current message that has arrived and not been
/// delivered, kept here between awaits so that a dropped future loses nothing.
#[derive(Debug)]
struct Reader {
    end: Arc<End>,
    mode: Mode,
    max: u32,
    can_read: bool,
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
    poisoned: Option<String>,
    /// `into_framed`: reads yield the Unix frame (length, payload) of each message.
    framed: bool,
    header: Option<([u8; HEADER_LEN], usize)>,
}

impl Reader {
    fn new(end: Arc<End>, mode: Mode, max: u32, can_read: bool) -> Reader {
        Reader {
            end,
            mode,
            max,
            can_read,
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
            poisoned: None,
            framed: false,
            header: None,
        }
    }

    fn check_read(&self) -> io::Result<()> {
        if self.can_read {
            return Ok(());
        }
        Err(crate::options::one_way_error(self.end.is_server, false))
    }

    /// Makes the next chunk of data available; `false` at the end of the stream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if let Some(msg) = &self.poisoned {
                return Poll::Ready(Err(err(ErrorKind::MessageTooLarge, msg.clone())));
            }
            if self.ready {
                return Poll::Ready(Ok(true));
            }
            if self.eof || self.end.read_shut.load(Ordering::Relaxed) {
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
                Some(code) if sys::is_disconnect(code) => {
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
                    sys::left_this_message(self.end.pipe.as_handle())?.max(1)
                } else {
                    0
                };
                if !self.in_message && !self.acc_started() {
                    let total = len + left;
                    if total > self.max as usize {
                        let msg = format!(
                            "the peer sent a message of {total} bytes; the maximum message size is {} bytes (the rest was not read; the connection can no longer be read)",
                            self.max
                        );
                        self.poisoned = Some(msg.clone());
                        return Poll::Ready(Err(err(ErrorKind::MessageTooLarge, msg)));
                    }
                    if self.framed {
                        let total = u32::try_from(total).unwrap_or(u32::MAX);
                        self.header = Some((total.to_le_bytes(), 0));
                    }
                }
                // Each read of a long message may be larger than the last only as
                // far as the bytes read so far allow (`grown_len`): memory follows
                // what arrives, whatever the system says is left of the message.
                self.message_read = if more { self.message_read + len } else { 0 };
                self.next_read = if more {
                    let got = self.message_read;
                    (grown_len(got, got + left) - got).min(MAX_READ)
                } else {
                    FIRST_READ.min(self.max as usize)
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
        if let Some(msg) = &self.poisoned {
            return Err(err(ErrorKind::MessageTooLarge, msg.clone()));
        }
        sys::peek_pipe(self.end.pipe.as_handle(), out)
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
    can_write: bool,
    op: Option<(AsyncOp, usize)>,
    /// `into_framed`: frames written by the codec, cut into messages here.
    framed: bool,
    frame: Vec<u8>,
}

impl Writer {
    fn check_write(&self) -> io::Result<()> {
        if !self.can_write {
            return Err(crate::options::one_way_error(self.end.is_server, true));
        }
        if self.end.write_shut.load(Ordering::Relaxed) {
            return Err(err(
                ErrorKind::Disconnected,
                "this end of the pipe cannot write: it was shut down, or the server does not read (an outbound pipe)",
            ));
        }
        Ok(())
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
            Some(code) if sys::is_disconnect(code) => Err(err_src(
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
        let h = self.frame.get(..HEADER_LEN)?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if self.frame.len() < HEADER_LEN + len {
            return None;
        }
        let rest = self.frame.split_off(HEADER_LEN + len);
        let frame = std::mem::replace(&mut self.frame, rest);
        Some(frame[HEADER_LEN..].to_vec())
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

/// A connected pipe end on tokio, client or server (see the Unix documentation of
/// the same type: the API and its cancel safety are the same).
pub struct Stream {
    reader: Reader,
    writer: Writer,
    end: Arc<End>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("mode", &self.reader.mode)
            .field("server", &self.end.is_server)
            .finish_non_exhaustive()
    }
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    fn new(
        pipe: OwnedHandle,
        mode: Mode,
        max: u32,
        can_read: bool,
        can_write: bool,
        read_shut: bool,
        write_shut: bool,
        slot: Option<sys::Slot>,
    ) -> io::Result<Stream> {
        sys::register_async(&pipe)?;
        let is_server = slot.is_some();
        let end = Arc::new(End {
            pipe: Arc::new(pipe),
            is_server,
            can_write,
            read_shut: AtomicBool::new(read_shut),
            write_shut: AtomicBool::new(write_shut),
            slot: std::sync::Mutex::new(slot),
        });
        Ok(Stream {
            reader: Reader::new(Arc::clone(&end), mode, max, can_read),
            writer: Writer {
                end: Arc::clone(&end),
                mode,
                max,
                can_write,
                op: None,
                framed: false,
                frame: Vec::new(),
            },
            end,
        })
    }

    /// Connects to a message-mode pipe with the default [`ConnectOptions`].
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection made after the future was dropped is closed at once.
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

    /// Connects with `options`; the wait for a busy or absent pipe runs on tokio's
    /// blocking pool with the code of the blocking [`ConnectOptions::connect`].
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
        let opts = options.clone();
        let client = tokio::task::spawn_blocking(move || sys::open_client(&name, &opts))
            .await
            .map_err(|e| io::Error::other(format!("the connect task failed: {e}")))??;
        Stream::new(
            client.pipe,
            options.mode,
            options.max_message_size,
            client.can_read,
            client.can_write,
            client.read_shut,
            client.write_shut,
            None,
        )
    }

    /// The mode this end reads and writes in.
    pub fn mode(&self) -> Mode {
        self.reader.mode
    }

    /// Whether this is the server end.
    pub fn is_server(&self) -> bool {
        self.end.is_server
    }

    /// Sends one message (message mode) or the bytes (byte mode): one `WriteFile`.
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::send`].
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the write in flight still completes.
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.writer.send(message).await
    }

    /// Receives one whole message into `buf` (see [`crate::Stream::recv`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Stream::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what was read stays in the stream; `buf` changes on completion.
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        poll_fn(|cx| self.reader.poll_recv(cx, buf)).await
    }

    /// Receives as much of the next message as fits in `buf`;
    /// [`Received::more_data`] tells that the rest follows.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed unless the future completes.
    pub async fn recv_into(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        poll_fn(|cx| self.reader.poll_recv_into(cx, buf)).await
    }

    /// Copies what has already arrived of the next message into `buf` without
    /// consuming it; never waits (`PeekNamedPipe`).
    ///
    /// # Errors
    ///
    /// I/O errors; `MessageTooLarge` after a refused message.
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.peek(buf)
    }

    /// Who is at the other end (the process id).
    ///
    /// # Errors
    ///
    /// The OS could not tell.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        sys::peer_credentials(self.end.pipe.as_handle(), self.end.is_server)
    }

    /// See [`crate::Stream::shutdown`]: Windows pipes cannot half-close; the server
    /// end flushes (blocking until the client has read everything) and disconnects.
    ///
    /// # Errors
    ///
    /// I/O errors of the disconnect.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(&self.end, how)
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

    /// Splits into a read half and a write half usable from different tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                reader: self.reader,
            },
            WriteHalf {
                writer: self.writer,
            },
        )
    }

    /// A `futures::Stream` of received messages and a `Sink` of messages to send,
    /// framed by [`MessageCodec`]. Each native message is presented to the codec as
    /// its Unix frame, so the codec works unchanged; on the pipe, messages stay native.
    ///
    /// # Errors
    ///
    /// Gives the stream back, unchanged, in byte mode or after a partial
    /// [`recv_into`](Self::recv_into).
    #[allow(clippy::result_large_err)]
    pub fn into_framed(mut self) -> Result<Framed<Stream, MessageCodec>, Stream> {
        if self.reader.mode != Mode::Message
            || self.reader.in_message
            || !self.reader.acc.is_empty()
        {
            return Err(self);
        }
        let codec = MessageCodec::with_max_message_size(self.reader.max);
        if self.reader.ready && self.reader.pos == 0 {
            // A message already read (in part): announce it like a new one.
            let left = if self.reader.more {
                sys::left_this_message(self.end.pipe.as_handle()).unwrap_or(0)
            } else {
                0
            };
            let total = u32::try_from(self.reader.chunk.len() + left).unwrap_or(u32::MAX);
            self.reader.header = Some((total.to_le_bytes(), 0));
        }
        self.reader.framed = true;
        self.writer.framed = true;
        Ok(Framed::new(self, codec))
    }

    /// Waits until the start of the next request has arrived; `false` when the peer
    /// closed first.
    pub(crate) async fn wait_data(&mut self) -> io::Result<bool> {
        self.reader.check_read()?;
        poll_fn(|cx| self.reader.poll_chunk(cx)).await
    }
}

fn shutdown(end: &End, how: Shutdown) -> io::Result<()> {
    if how != Shutdown::Write {
        end.read_shut.store(true, Ordering::Relaxed);
    }
    if how == Shutdown::Read {
        return Ok(());
    }
    let already = end.write_shut.swap(true, Ordering::Relaxed);
    if !end.is_server || already {
        return Ok(());
    }
    sys::disconnect_server(end.pipe.as_handle(), end.can_write)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().reader.poll_read_bytes(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().writer.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_flush(cx)
    }
}

impl AsHandle for Stream {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.end.pipe.as_handle()
    }
}

impl AsRawHandle for Stream {
    fn as_raw_handle(&self) -> RawHandle {
        self.end.pipe.as_raw_handle()
    }
}

/// The reading half of a [`Stream`], from [`Stream::into_split`].
pub struct ReadHalf {
    reader: Reader,
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
        poll_fn(|cx| self.reader.poll_recv(cx, buf)).await
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
        poll_fn(|cx| self.reader.poll_recv_into(cx, buf)).await
    }

    /// The peer's credentials.
    ///
    /// # Errors
    ///
    /// The OS could not tell.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let end = &self.reader.end;
        sys::peer_credentials(end.pipe.as_handle(), end.is_server)
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().reader.poll_read_bytes(cx, buf)
    }
}

/// The writing half of a [`Stream`], from [`Stream::into_split`].
pub struct WriteHalf {
    writer: Writer,
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
    /// As [`Stream::send`].
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.writer.send(message).await
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().writer.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.poll_flush(cx)
    }
}

/// A pipe server on tokio: the async twin of [`crate::Listener`], with its pool of
/// listening instances.
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
    pub fn bind(name: impl ToPipeName) -> io::Result<Listener> {
        Listener::bind_with(name, &ListenerOptions::new())
    }

    /// Creates the pipe with `options` (`CreateNamedPipe`).
    ///
    /// # Errors
    ///
    /// As [`ListenerOptions::create`].
    pub fn bind_with(name: impl ToPipeName, options: &ListenerOptions) -> io::Result<Listener> {
        let inner = sys::Listener::create(name.to_pipe_name()?, options.clone())?;
        Ok(Listener { inner })
    }

    /// Waits for a client and returns the connected server end.
    ///
    /// # Errors
    ///
    /// A standing failure to create pipe instances.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no connection is taken unless the future completes.
    pub async fn accept(&self) -> io::Result<Stream> {
        let (pipe, slot) = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        let opts = self.inner.options();
        let direction = opts.direction;
        Stream::new(
            pipe,
            opts.mode,
            opts.max_message_size,
            direction.server_reads(),
            direction.server_writes(),
            false,
            false,
            Some(slot),
        )
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        self.inner.name()
    }

    /// Where the pipe lives (`\\.\pipe\NAME`).
    pub fn address(&self) -> &Address {
        self.inner.address()
    }

    /// How many accepted streams are alive now.
    pub fn instances(&self) -> u32 {
        self.inner.instances()
    }

    /// Always 0 on Windows: the DACL refuses clients before they reach the server.
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
