//! The async driver of the framing: what the tokio `Stream` (Unix) and its
//! `ReadHalf` read with, and how they write, over any `AsyncRead`/`AsyncWrite`.
//!
//! The decoding rules (cap checked before allocating, `Disconnected` inside a frame,
//! the refusal notice) are the core's [`Decoder`]; this file only does the I/O. Every
//! byte read from the socket goes into `buf`, and state changes happen between
//! awaits, so a future dropped at any await loses nothing: that is what makes `recv`
//! cancel safe.

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{grown_len, outgoing, Decoder, Received, SmallFrame};
use crate::error::ErrorKind;
use crate::options::Mode;

/// Read-ahead: many small messages per `read` system call.
const READ_AHEAD: usize = 8 * 1024;

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
    decoder: Decoder,
    pub(crate) mode: Mode,
    can_read: bool,
    is_server: bool,
    /// An allocation kept for the next large message (the caller's previous buffer).
    spare: Vec<u8>,
}

impl Reader {
    /// The reader of a fresh connection, whose framing state is `decoder` (a
    /// client's first frame may be the refusal notice).
    pub(crate) fn new(mode: Mode, decoder: Decoder, can_read: bool, is_server: bool) -> Reader {
        Reader {
            buf: BytesMut::new(),
            decoder,
            mode,
            can_read,
            is_server,
            spare: Vec::new(),
        }
    }

    /// Whether a message has been partly delivered (after `more_data`).
    pub(crate) fn in_message(&self) -> bool {
        self.decoder.in_message()
    }

    /// The framing state, for a codec that goes on from here (`into_framed`).
    pub(crate) fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Whether no header has been read yet on a message client (a refusal notice
    /// may wait).
    pub(crate) fn expects_notice(&self) -> bool {
        self.decoder.expects_notice()
    }

    /// Whether the refusal notice has been read ahead (by `peek`) and waits here.
    pub(crate) fn holds_refusal(&self) -> bool {
        self.decoder.holds_refusal(&self.buf)
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

    /// What is left of the current message, or the length of the next one once its
    /// header is read. `None` at a clean end. Consumes nothing across an await.
    async fn next_message<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
    ) -> io::Result<Option<usize>> {
        if let Some((_, left)) = self.decoder.current() {
            return Ok(Some(left));
        }
        let mut at_end = false;
        self.decoder.check()?;
        loop {
            // Nothing read ahead can only mean "read more": decided without asking.
            if !self.buf.is_empty() || at_end {
                let start = self.decoder.start(&self.buf, at_end)?;
                self.buf.advance(start.consumed());
                if let Some(outcome) = start.outcome() {
                    return outcome;
                }
            }
            let more = self.buf.len() + 1;
            at_end = !self.fill(io, more).await?;
        }
    }

    /// Waits until part of a request has arrived; `false` at a clean end of stream.
    /// For the server's idle deadline.
    pub(crate) async fn wait_data<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> io::Result<bool> {
        self.check_read()?;
        if self.decoder.in_message() {
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
        let Some(left) = self.next_message(io).await? else {
            out.clear();
            return Ok(None);
        };
        if left > LARGE && self.buf.len() < left {
            return self.recv_large(io, out, left).await;
        }
        if !self.fill(io, left).await? {
            return Err(self.decoder.cut_off(self.buf.len()));
        }
        out.clear();
        out.extend_from_slice(&self.buf[..left]);
        self.buf.advance(left);
        self.decoder.delivered(left);
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
                return Err(self.decoder.cut_off(staged.large.len()));
            }
        }
        staged.done = true;
        std::mem::swap(out, &mut staged.large);
        let mut spare = std::mem::take(&mut staged.large);
        drop(staged);
        spare.clear();
        self.spare = spare;
        self.decoder.delivered(left);
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
        let Some(left) = self.next_message(io).await? else {
            return Ok(None);
        };
        let take = left.min(out.len());
        if !self.fill(io, take).await? {
            return Err(self.decoder.cut_off(self.buf.len()));
        }
        out[..take].copy_from_slice(&self.buf[..take]);
        self.buf.advance(take);
        self.decoder.delivered(take);
        Ok(Some(Received::new(take, self.decoder.in_message())))
    }

    /// Copies what has arrived of the next message (or bytes) without consuming it,
    /// pulling in what the socket has ready without waiting.
    pub(crate) fn peek(
        &mut self,
        try_read: impl FnOnce(&mut BytesMut) -> io::Result<usize>,
        out: &mut [u8],
    ) -> io::Result<usize> {
        self.check_read()?;
        self.decoder.check()?;
        self.buf.reserve(READ_AHEAD);
        match try_read(&mut self.buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let payload = match self.mode {
            Mode::Byte => &self.buf[..],
            Mode::Message => self.decoder.peek(&self.buf),
        };
        let n = payload.len().min(out.len());
        out[..n].copy_from_slice(&payload[..n]);
        Ok(n)
    }

    pub(crate) fn check_read(&self) -> io::Result<()> {
        if self.can_read {
            return Ok(());
        }
        Err(crate::error::one_way_error(self.is_server, false))
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
                let parts = [message];
                let mut small = SmallFrame::new();
                let wire = outgoing(&parts, self.max, &mut small, &mut self.buf)?;
                write_all_slices(io, &wire.slices()).await
            }
            Mode::Byte => io.write_all(message).await,
        };
        result.map_err(map_write_error)
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        if self.can_write {
            return Ok(());
        }
        Err(crate::error::one_way_error(self.is_server, true))
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

/// Writes every byte of `slices` (a frame from [`outgoing`]): a frame in one
/// piece with `write_all`, in several with vectored writes (one `sendmsg` where the
/// socket takes them at once: a header sent on its own would reach the reader as a
/// 4-byte segment of its own, and could wake it for nothing).
async fn write_all_slices<W: AsyncWrite + Unpin>(io: &mut W, slices: &[&[u8]]) -> io::Result<()> {
    match slices {
        [one] => io.write_all(one).await,
        [header, payload] => {
            write_all_vectored(
                io,
                &mut [io::IoSlice::new(header), io::IoSlice::new(payload)],
            )
            .await
        }
        many => {
            let mut bufs: Vec<io::IoSlice<'_>> = many.iter().map(|s| io::IoSlice::new(s)).collect();
            write_all_vectored(io, &mut bufs).await
        }
    }
}

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
