//! The async side of message framing: what a [`Stream`](super::Stream) or
//! [`ReadHalf`](super::ReadHalf) reads with, and how it writes.
//!
//! The decoding rules (cap checked before allocating, `Disconnected` inside a frame)
//! come from [`crate::frame`]; this file only does the I/O. Every byte read from the
//! socket goes into `buf`, and state changes happen between awaits, so a future
//! dropped at any await loses nothing: that is what makes `recv` cancel safe.

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{err, ErrorKind};
use crate::frame::{
    check_announced, encode_header, grown_len, header_cut_off_error as header_cut_off,
    match_refusal, payload_cut_off, refused_here as refused, Received, HEADER_LEN, REFUSAL_NOTICE,
};
use crate::options::Mode;

/// Read-ahead: many small messages per `read` system call.
const READ_AHEAD: usize = 8 * 1024;

/// Messages up to this size are copied behind their header and written at once.
const COALESCE_LIMIT: usize = 16 * 1024;

/// Largest chunk `recv` returns in byte mode, as in the blocking API.
const BYTE_CHUNK: usize = 64 * 1024;

/// Payloads larger than this are read by `recv` into a buffer that is then handed
/// to the caller whole (see [`Staged`]), not copied out of the read-ahead buffer.
const LARGE: usize = 64 * 1024;

/// The payload of a large message being read by `recv_large`. If the read is
/// abandoned (its future dropped), the bytes go back in front of the read-ahead
/// buffer, so that the next call finds them where it expects them.
struct Staged<'a> {
    large: Vec<u8>,
    buf: &'a mut BytesMut,
    done: bool,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.done && !self.large.is_empty() {
            let mut restored = BytesMut::with_capacity(self.large.len() + self.buf.len());
            restored.extend_from_slice(&self.large);
            restored.extend_from_slice(self.buf);
            *self.buf = restored;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) buf: BytesMut,
    /// The message being delivered: (its length, payload bytes not yet delivered).
    current: Option<(usize, usize)>,
    /// Set once an oversized length (or a refusal notice) arrived: the framing is lost.
    poisoned: Option<(ErrorKind, String)>,
    /// Whether the next header may begin the server's refusal notice: a client's
    /// first (see [`REFUSAL_NOTICE`]).
    notice: bool,
    max: u32,
    pub(crate) mode: Mode,
    can_read: bool,
    is_server: bool,
    /// An allocation kept for the next large message (the caller's previous buffer).
    spare: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(mode: Mode, max: u32, can_read: bool, is_server: bool) -> Reader {
        Reader {
            buf: BytesMut::new(),
            current: None,
            poisoned: None,
            notice: !is_server && mode == Mode::Message,
            max,
            mode,
            can_read,
            is_server,
            spare: Vec::new(),
        }
    }

    /// Whether a message has been partly delivered (after `more_data`).
    pub(crate) fn in_message(&self) -> bool {
        self.current.is_some()
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Whether no header has been read yet on a message client (a refusal notice
    /// may wait).
    pub(crate) fn expects_notice(&self) -> bool {
        self.notice
    }

    /// Whether the refusal notice has been read ahead (by `peek`) and waits here.
    pub(crate) fn holds_refusal(&self) -> bool {
        self.notice && match_refusal(&self.buf) == Some(true)
    }

    /// Reads until `buf` holds `want` bytes; `false` at end of stream before that.
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R, want: usize) -> io::Result<bool> {
        while self.buf.len() < want {
            // `want` is at most a header, a payload of at most `LARGE` or the part
            // of one that fits the caller's buffer: room for it is made as the bytes
            // arrive (`grown_len`), never for an announced length at once.
            let room = grown_len(self.buf.len(), want) - self.buf.len();
            self.buf.reserve(room.max(READ_AHEAD));
            if io.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Starts the next message: reads and checks its header. `None` at a clean end.
    async fn next_message<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
    ) -> io::Result<Option<(usize, usize)>> {
        if let Some((total, left)) = self.current {
            return Ok(Some((total, left)));
        }
        if let Some((kind, msg)) = &self.poisoned {
            return Err(err(*kind, msg.clone()));
        }
        if !self.fill(io, HEADER_LEN).await? {
            return match self.buf.len() {
                0 => Ok(None),
                got => Err(header_cut_off(got)),
            };
        }
        if self.notice {
            if self.refusal_follows(io).await? {
                self.buf.advance(REFUSAL_NOTICE.len());
                let e = refused();
                self.poisoned = Some((ErrorKind::AccessDenied, e.to_string()));
                return Err(e);
            }
            self.notice = false;
        }
        let header = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        match check_announced(header, self.max) {
            Ok(len) => {
                self.buf.advance(HEADER_LEN);
                self.current = Some((len, len));
                Ok(self.current)
            }
            Err(msg) => {
                self.poisoned = Some((ErrorKind::MessageTooLarge, msg.clone()));
                Err(err(ErrorKind::MessageTooLarge, msg))
            }
        }
    }

    /// Whether the bytes at the front of `buf` begin the server's refusal notice:
    /// reads on while what has arrived matches it. Consumes nothing (cancel safe).
    async fn refusal_follows<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> io::Result<bool> {
        loop {
            match match_refusal(&self.buf) {
                Some(true) => return Ok(true),
                None => return Ok(false),
                Some(false) => {}
            }
            let more = self.buf.len() + 1;
            if !self.fill(io, more).await? {
                return Ok(false);
            }
        }
    }

    /// Waits until part of a request has arrived; `false` at a clean end of stream.
    /// For the server's idle deadline.
    pub(crate) async fn wait_data<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> io::Result<bool> {
        self.check_read()?;
        if self.current.is_some() {
            return Ok(true);
        }
        self.fill(io, 1).await
    }

    pub(crate) async fn recv<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        out: &mut Vec<u8>,
    ) -> io::Result<Option<usize>> {
        self.check_read()?;
        if self.mode == Mode::Byte {
            if !self.fill(io, 1).await? {
                out.clear();
                return Ok(None);
            }
            let n = self.buf.len().min(BYTE_CHUNK);
            out.clear();
            out.extend_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            return Ok(Some(n));
        }
        let Some((total, left)) = self.next_message(io).await? else {
            out.clear();
            return Ok(None);
        };
        if left > LARGE && self.buf.len() < left {
            return self.recv_large(io, out, total, left).await;
        }
        if !self.fill(io, left).await? {
            return Err(payload_cut_off(total - left + self.buf.len(), total));
        }
        out.clear();
        out.extend_from_slice(&self.buf[..left]);
        self.buf.advance(left);
        self.current = None;
        Ok(Some(left))
    }

    /// `recv` of a large payload: read into a buffer of our own and swap it with
    /// `out` at the end, which saves copying the payload once more (a whole memory
    /// pass per message). Cancel safe like `recv`: if the future is dropped, the
    /// bytes read so far go back to the front of the read-ahead buffer.
    ///
    /// The buffer is the caller's previous one (`spare`), used as it is; beyond its
    /// capacity it grows with the bytes that arrive (`grown_len`), so a peer that
    /// announces a large message and stalls holds one step, not the message.
    async fn recv_large<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        out: &mut Vec<u8>,
        total: usize,
        left: usize,
    ) -> io::Result<Option<usize>> {
        let mut staged = Staged {
            large: std::mem::take(&mut self.spare),
            buf: &mut self.buf,
            done: false,
        };
        staged.large.clear();
        let first = staged.buf.len();
        staged.large.reserve_exact(grown_len(first, left));
        staged.large.extend_from_slice(staged.buf);
        staged.buf.clear();
        while staged.large.len() < left {
            let got = staged.large.len();
            if got == staged.large.capacity() {
                staged.large.reserve_exact(grown_len(got, left) - got);
            }
            if io
                .read_buf(&mut (&mut staged.large).limit(left - got))
                .await?
                == 0
            {
                return Err(payload_cut_off(total - left + staged.large.len(), total));
            }
        }
        staged.done = true;
        std::mem::swap(out, &mut staged.large);
        let mut spare = std::mem::take(&mut staged.large);
        drop(staged);
        spare.clear();
        self.spare = spare;
        self.current = None;
        Ok(Some(left))
    }

    pub(crate) async fn recv_into<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        out: &mut [u8],
    ) -> io::Result<Option<Received>> {
        self.check_read()?;
        if self.mode == Mode::Byte {
            let n = if self.buf.is_empty() {
                io.read(out).await?
            } else {
                let n = self.buf.len().min(out.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                n
            };
            return Ok((n > 0 || out.is_empty()).then(|| Received::new(n, false)));
        }
        let Some((total, left)) = self.next_message(io).await? else {
            return Ok(None);
        };
        let take = left.min(out.len());
        if !self.fill(io, take).await? {
            return Err(payload_cut_off(total - left + self.buf.len(), total));
        }
        out[..take].copy_from_slice(&self.buf[..take]);
        self.buf.advance(take);
        let rest = left - take;
        self.current = (rest > 0).then_some((total, rest));
        Ok(Some(Received::new(take, rest > 0)))
    }

    /// Copies what has arrived of the next message (or bytes) without consuming it,
    /// pulling in what the socket has ready without waiting.
    pub(crate) fn peek(
        &mut self,
        try_read: impl FnOnce(&mut BytesMut) -> io::Result<usize>,
        out: &mut [u8],
    ) -> io::Result<usize> {
        self.check_read()?;
        if let Some((kind, msg)) = &self.poisoned {
            return Err(err(*kind, msg.clone()));
        }
        self.buf.reserve(READ_AHEAD);
        match try_read(&mut self.buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let avail = &self.buf[..];
        let payload = match (self.mode, self.current) {
            (Mode::Byte, _) => avail,
            (Mode::Message, Some((_, left))) => &avail[..left.min(avail.len())],
            (Mode::Message, None) if avail.len() >= HEADER_LEN => {
                let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
                let body = &avail[HEADER_LEN..];
                &body[..len.min(body.len())]
            }
            (Mode::Message, None) => &[],
        };
        let n = payload.len().min(out.len());
        out[..n].copy_from_slice(&payload[..n]);
        Ok(n)
    }

    pub(crate) fn check_read(&self) -> io::Result<()> {
        if self.can_read {
            return Ok(());
        }
        Err(crate::options::one_way_error(self.is_server, false))
    }
}

#[derive(Debug)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    max: u32,
    pub(crate) mode: Mode,
    can_write: bool,
    is_server: bool,
}

impl Writer {
    pub(crate) fn new(mode: Mode, max: u32, can_write: bool, is_server: bool) -> Writer {
        Writer {
            buf: Vec::new(),
            max,
            mode,
            can_write,
            is_server,
        }
    }

    pub(crate) async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        message: &[u8],
    ) -> io::Result<()> {
        self.check_write()?;
        let result = match self.mode {
            Mode::Message => {
                let header = encode_header(message.len(), self.max)?;
                if message.len() <= COALESCE_LIMIT {
                    self.buf.clear();
                    // One allocation for the first message, not a growth per part.
                    self.buf.reserve(header.len() + message.len());
                    self.buf.extend_from_slice(&header);
                    self.buf.extend_from_slice(message);
                    io.write_all(&self.buf).await
                } else {
                    write_all_vectored(
                        io,
                        &mut [io::IoSlice::new(&header), io::IoSlice::new(message)],
                    )
                    .await
                }
            }
            Mode::Byte => io.write_all(message).await,
        };
        result.map_err(map_write_error)
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        if self.can_write {
            return Ok(());
        }
        Err(crate::options::one_way_error(self.is_server, true))
    }
}

/// A peer that went away while we wrote is [`ErrorKind::Disconnected`].
pub(crate) fn map_write_error(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => crate::error::err_src(
            ErrorKind::Disconnected,
            "the other end closed the connection or does not read (an outbound pipe)",
            e,
        ),
        _ => e,
    }
}

/// Writes every byte of `bufs`, gathering them into one `sendmsg` where the
/// socket takes them at once: a header sent on its own would reach the reader
/// as a 4-byte segment of its own, and could wake it for nothing.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut bufs: &mut [io::IoSlice<'_>],
) -> io::Result<()> {
    while !bufs.is_empty() {
        match io.write_vectored(bufs).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
