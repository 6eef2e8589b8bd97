//! Message framing for byte-stream transports: the Unix wire contract.
//!
//! Every message is a 4-byte little-endian unsigned length followed by that many
//! bytes. The length is checked against the cap **before** anything is allocated.
//!
//! [`FrameReader`] decodes from any [`Read`] source through a small read-ahead buffer,
//! so a small message (header and payload) costs one `read` system call, and a large
//! payload is read straight into the caller's buffer with no extra copy.

use std::io::{self, Read};

use crate::error::{err, err_src, ErrorKind};

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 4;

/// First size of the read-ahead buffer: a small request and its header in one
/// `read`. Safe Rust hands out only initialised buffers, so every connection
/// pays for zeroing this much (an 8 KiB start was 1-2% of a connect, request,
/// reply, close cycle); connections that stream grow it below.
const READ_AHEAD: usize = 1024;

/// The read-ahead buffer doubles, up to this, each time a `read` fills it: a
/// connection that streams small messages then needs fewer system calls
/// (16 x 4 KiB messages per `read` rather than 2 with 8 KiB).
const MAX_READ_AHEAD: usize = 64 * 1024;

/// A message buffer grows by at most this much beyond what has arrived of the
/// message (see [`grown_len`]): what a header alone makes the receiver commit.
pub(crate) const GROWTH_STEP: usize = 64 * 1024;

/// How far a buffer for a `total`-byte payload may grow once `received` bytes of
/// it have arrived: twice that plus [`GROWTH_STEP`], never more than `total`.
///
/// Memory then follows the bytes received, not the bytes announced: a peer that
/// sends a header and stalls holds one step, and one that sends half a message
/// holds about the whole of it. Doubling keeps an honest large message to a few
/// steps, so its bytes are moved about once more at most (and not at all when
/// the caller's buffer, which the caller allocated, already has the room).
pub(crate) fn grown_len(received: usize, total: usize) -> usize {
    total.min(received.saturating_mul(2).saturating_add(GROWTH_STEP))
}

/// The header for a `len`-byte message, or `MessageTooLarge` if `len` exceeds `max`.
pub(crate) fn encode_header(len: usize, max: u32) -> io::Result<[u8; HEADER_LEN]> {
    match u32::try_from(len) {
        Ok(len32) if len32 <= max => Ok(len32.to_le_bytes()),
        _ => Err(err(
            ErrorKind::MessageTooLarge,
            format!(
                "cannot send a message of {len} bytes: the maximum message size is {max} bytes"
            ),
        )),
    }
}

// The decoding rules, shared by the blocking `FrameReader`, the async stream and the
// tokio codec: a length over the cap is refused before anything is allocated, an
// end of stream inside a frame is a `Disconnected` error, and a client's first
// frame may be the server's refusal notice.

/// What an npipe server on Unix writes to a client that its access policy refuses
/// after the connection was made, just before it closes the connection: the four
/// bytes `FF FF FF FF` and the ASCII text `npipe:access-denied` and a newline.
///
/// Servers check the client's credentials (`SO_PEERCRED`) after accepting it when
/// the socket file's mode cannot do the check: abstract `@NAME` sockets,
/// [`Access::Group`](crate::Access::Group) and allow lists. A refused client may
/// have sent its request already; without a word from the server, it would see
/// only its connection reset. No admitted client ever receives these bytes first.
///
/// npipe's message-mode clients (the blocking [`Stream`](crate::Stream), the tokio
/// `Stream` and `MessageCodec`) recognise the notice as the first frame and fail with
/// [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied). To a message reader
/// of any language it looks like a frame announcing 4 GiB − 1 bytes, which its cap
/// check refuses, and the text tells a person reading the raw bytes (`socat`) what
/// happened. Byte-mode clients receive the bytes as they are. The one ambiguity:
/// a server allowing 4 GiB − 1-byte messages whose first reply is exactly that
/// long and begins with `npipe:access-denied\n` would be taken for a refusal.
///
/// # Examples
///
/// ```
/// assert_eq!(&npipe::REFUSAL_NOTICE[..4], &u32::MAX.to_le_bytes());
/// assert!(npipe::REFUSAL_NOTICE.ends_with(b"npipe:access-denied\n"));
/// ```
pub const REFUSAL_NOTICE: &[u8] = b"\xFF\xFF\xFF\xFFnpipe:access-denied\n";

/// The error of a client that received [`REFUSAL_NOTICE`].
pub(crate) fn refused() -> io::Error {
    #[cfg(unix)]
    let who = format!(
        " (uid {}, gid {})",
        nix::unistd::geteuid(),
        nix::unistd::getegid()
    );
    #[cfg(not(unix))]
    let who = "";
    err(
        ErrorKind::AccessDenied,
        format!(
            "the server refused this client's credentials{who}: its access policy does not admit them"
        ),
    )
}

/// How far `bytes` (what has arrived of a client's first frame) match the refusal
/// notice: `Some(true)` all of it, `Some(false)` a beginning of it (more to read),
/// `None` not it.
pub(crate) fn match_refusal(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(REFUSAL_NOTICE.len());
    (bytes[..n] == REFUSAL_NOTICE[..n]).then_some(n == REFUSAL_NOTICE.len())
}

/// The payload length announced by a frame header, or the message for people
/// explaining why it is refused (over `max`; the framing is lost after this).
pub(crate) fn check_announced(header: [u8; HEADER_LEN], max: u32) -> Result<usize, String> {
    let len = u32::from_le_bytes(header);
    if len > max {
        return Err(format!(
            "the peer announced a message of {len} bytes{}; the maximum message size is {max} bytes (nothing was allocated; the connection can no longer be read)",
            text_hint(header)
        ));
    }
    usize::try_from(len).map_err(|_| format!("a message of {len} bytes does not fit in memory"))
}

/// A length whose four bytes are printable text was most likely written by a peer
/// that does not frame its messages: a byte-mode client on a message pipe ("hell"
/// of "hello"), or a byte-mode server answering a message client. Says so.
fn text_hint(header: [u8; HEADER_LEN]) -> String {
    let text = |b: &u8| b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    if !header.iter().all(text) {
        return String::new();
    }
    let bytes: String = header.iter().map(|&b| char::from(b)).collect();
    format!(" (the bytes {bytes:?} look like text: {BYTE_MODE_HINT})")
}

/// The end of [`text_hint`], for the server's log (which must not quote the bytes).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) const BYTE_MODE_HINT: &str = "the peer may be writing in byte mode";

/// The error for an end of stream after `got` bytes of a frame header.
pub(crate) fn header_cut_off(got: usize) -> io::Error {
    err(
        ErrorKind::Disconnected,
        format!(
            "the peer closed the connection in the middle of a message header ({got} of {HEADER_LEN} bytes)"
        ),
    )
}

/// The error for an end of stream after `got` of `total` payload bytes.
pub(crate) fn payload_cut_off(got: usize, total: usize) -> io::Error {
    err(
        ErrorKind::Disconnected,
        format!(
            "the peer closed the connection in the middle of a message ({got} of {total} bytes)"
        ),
    )
}

/// The outcome of [`crate::Stream::recv_into`]: how many bytes were stored and whether
/// the message is complete.
///
/// When the buffer was too small, `more_data()` is true (Windows `ERROR_MORE_DATA`) and
/// the rest of the same message is returned by the following reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    len: usize,
    more_data: bool,
}

impl Received {
    /// Bytes stored in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes were stored (a zero-length message, or an empty buffer).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the rest of this message is still to be read (`ERROR_MORE_DATA`).
    pub fn more_data(&self) -> bool {
        self.more_data
    }

    /// Whether the message ended within this read.
    pub fn is_complete(&self) -> bool {
        !self.more_data
    }

    pub(crate) fn new(len: usize, more_data: bool) -> Received {
        Received { len, more_data }
    }
}

/// Decoder state for one connection.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Payload bytes of the current message not yet delivered; `None` between messages.
    remaining: Option<usize>,
    max: u32,
    /// Set once the framing is lost (oversized length, refusal): every later read fails.
    poisoned: Option<(ErrorKind, String)>,
    /// Whether the next header may begin the server's [`REFUSAL_NOTICE`]: a
    /// client's first.
    notice: bool,
}

impl FrameReader {
    pub(crate) fn new(max: u32) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            remaining: None,
            max,
            poisoned: None,
            notice: false,
        }
    }

    /// The reader of a client, whose first frame may be the server's refusal notice.
    pub(crate) fn for_client(max: u32) -> FrameReader {
        FrameReader {
            notice: true,
            ..FrameReader::new(max)
        }
    }

    /// Whether no header has been read yet on a client (a refusal notice may wait).
    pub(crate) fn expects_notice(&self) -> bool {
        self.notice
    }

    /// Whether the refusal notice has been read ahead (by `peek`) and waits here.
    pub(crate) fn holds_refusal(&self) -> bool {
        self.notice && match_refusal(&self.buf[self.pos..self.end]) == Some(true)
    }

    /// Bytes read ahead from the transport and not yet delivered.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// Whether a message has been partly delivered (after `more_data`).
    pub(crate) fn in_message(&self) -> bool {
        self.remaining.is_some()
    }

    /// Receives the rest of the current message, or the next whole message, into `out`
    /// (cleared first). `Ok(None)`: the peer closed the connection at a message boundary.
    pub(crate) fn recv<R: Read>(
        &mut self,
        src: &mut R,
        out: &mut Vec<u8>,
    ) -> io::Result<Option<usize>> {
        // Whatever happens, `out` ends up holding exactly what this call delivered:
        // after a timeout, the part of the message that arrived (the next call returns
        // the rest), never the previous message or unfilled bytes.
        let len = match self.remaining.take() {
            Some(len) => len,
            None => match self.next_header(src) {
                Ok(Some(len)) => len,
                other => {
                    out.clear();
                    return other;
                }
            },
        };
        // Reuse the caller's buffer without zeroing what it already holds: every byte
        // of `out[..len]` is overwritten below. Beyond that, `out` grows (and is
        // zeroed) a step at a time as the payload arrives, within the room the caller
        // gave it where it can (`grown_len`): a header alone commits one step.
        out.truncate(len);
        self.remaining = Some(len);
        let mut done = 0;
        while done < len {
            let step = grown_len(done, len);
            if out.len() < step {
                out.reserve_exact(step - out.len());
                out.resize(step, 0);
            }
            let end = out.len();
            if let Err(e) = self.fill_exact(src, &mut out[done..end], done) {
                out.truncate(len - self.remaining.unwrap_or(len));
                return Err(e);
            }
            done = end;
        }
        self.remaining = None;
        Ok(Some(len))
    }

    /// Receives into a fixed buffer: what fits, with `more_data` when the message goes on.
    pub(crate) fn recv_into<R: Read>(
        &mut self,
        src: &mut R,
        out: &mut [u8],
    ) -> io::Result<Option<Received>> {
        let len = match self.remaining.take() {
            Some(len) => len,
            None => match self.next_header(src)? {
                Some(len) => len,
                None => return Ok(None),
            },
        };
        let take = len.min(out.len());
        self.remaining = Some(len);
        if let Err(e) = self.fill_exact(src, &mut out[..take], 0) {
            // A timeout after some bytes were stored is a short read: report them
            // (with `more_data`) rather than lose them; the next read goes on.
            let done = len - self.remaining.unwrap_or(len);
            if done > 0 && ErrorKind::of(&e) == ErrorKind::Timeout {
                return Ok(Some(Received::new(done, true)));
            }
            return Err(e);
        }
        let left = len - take;
        self.remaining = (left > 0).then_some(left);
        Ok(Some(Received::new(take, left > 0)))
    }

    /// `Read` semantics over the message payloads, boundaries ignored (Windows' byte
    /// read mode on a message pipe). `Ok(0)` only at end of stream or for an empty `out`.
    pub(crate) fn read_bytes<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let left = match self.remaining {
                Some(left) => left,
                None => match self.next_header(src)? {
                    Some(len) => len,
                    None => return Ok(0),
                },
            };
            if left == 0 {
                self.remaining = None;
                continue;
            }
            let want = left.min(out.len());
            let got = if self.buffered() > 0 {
                let n = want.min(self.buffered());
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                n
            } else {
                self.remaining = Some(left);
                let n = read_retrying(src, &mut out[..want])?;
                if n == 0 {
                    return Err(self.cut_off(left));
                }
                n
            };
            let rest = left - got;
            self.remaining = (rest > 0).then_some(rest);
            return Ok(got);
        }
    }

    /// Copies the bytes of the current or next message that have already arrived,
    /// without consuming them. `more` is called at most once to pull in bytes that are
    /// ready without blocking.
    pub(crate) fn peek<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.poisoned {
            return Err(err(*kind, msg.clone()));
        }
        self.compact_for(HEADER_LEN);
        match src.read(&mut self.buf[self.end..]) {
            Ok(0) => {}
            Ok(n) => self.end += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let avail = &self.buf[self.pos..self.end];
        let payload = match self.remaining {
            Some(left) => &avail[..left.min(avail.len())],
            None if avail.len() >= HEADER_LEN => {
                let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
                let body = &avail[HEADER_LEN..];
                &body[..len.min(body.len())]
            }
            None => &[],
        };
        let n = payload.len().min(out.len());
        out[..n].copy_from_slice(&payload[..n]);
        Ok(n)
    }

    /// Reads the next header. `Ok(None)` at a clean end of stream.
    fn next_header<R: Read>(&mut self, src: &mut R) -> io::Result<Option<usize>> {
        if let Some((kind, msg)) = &self.poisoned {
            return Err(err(*kind, msg.clone()));
        }
        self.compact_for(HEADER_LEN);
        while self.buffered() < HEADER_LEN {
            let n = read_retrying(src, &mut self.buf[self.end..])?;
            if n == 0 {
                if self.buffered() == 0 {
                    return Ok(None);
                }
                return Err(header_cut_off(self.buffered()));
            }
            self.end += n;
            if self.end == self.buf.len() && self.buf.len() < MAX_READ_AHEAD {
                let grown = (self.buf.len() * 2).min(MAX_READ_AHEAD);
                self.buf.resize(grown, 0);
            }
        }
        let h = &self.buf[self.pos..self.pos + HEADER_LEN];
        let announced = [h[0], h[1], h[2], h[3]];
        if self.notice {
            if self.refusal_follows(src)? {
                self.pos += REFUSAL_NOTICE.len();
                let e = refused();
                self.poisoned = Some((ErrorKind::AccessDenied, e.to_string()));
                return Err(e);
            }
            self.notice = false;
        }
        self.pos += HEADER_LEN;
        match check_announced(announced, self.max) {
            Ok(len) => Ok(Some(len)),
            Err(msg) => {
                self.poisoned = Some((ErrorKind::MessageTooLarge, msg.clone()));
                Err(err(ErrorKind::MessageTooLarge, msg))
            }
        }
    }

    /// Whether the header at `pos` begins the server's refusal notice: reads on
    /// while what has arrived matches it. Consumes nothing, so a read timeout here
    /// leaves the header to the next call.
    fn refusal_follows<R: Read>(&mut self, src: &mut R) -> io::Result<bool> {
        loop {
            match match_refusal(&self.buf[self.pos..self.end]) {
                Some(true) => return Ok(true),
                None => return Ok(false),
                Some(false) => {}
            }
            // The notice is the first thing on the connection and shorter than the
            // read-ahead buffer: there is room for the rest of it.
            match read_retrying(src, &mut self.buf[self.end..])? {
                0 => return Ok(false),
                n => self.end += n,
            }
        }
    }

    /// Fills `out` completely with payload bytes of the current message, first from
    /// the read-ahead buffer, then straight from `src`. `self.remaining` holds the
    /// bytes of the message still to come, and is left holding them after what was
    /// stored (also on an error: the framing is kept); `before` bytes of the
    /// message were delivered earlier (for the error's count).
    fn fill_exact<R: Read>(
        &mut self,
        src: &mut R,
        out: &mut [u8],
        before: usize,
    ) -> io::Result<()> {
        let left = self.remaining.unwrap_or(out.len()).max(out.len());
        let from_buf = out.len().min(self.buffered());
        out[..from_buf].copy_from_slice(&self.buf[self.pos..self.pos + from_buf]);
        self.pos += from_buf;
        let mut done = from_buf;
        while done < out.len() {
            match read_retrying(src, &mut out[done..]) {
                Ok(0) => {
                    self.remaining = Some(left - done);
                    return Err(payload_cut_off(before + done, before + left));
                }
                Ok(n) => done += n,
                Err(e) => {
                    self.remaining = Some(left - done);
                    return Err(e);
                }
            }
        }
        self.remaining = Some(left - done);
        Ok(())
    }

    fn cut_off(&self, left: usize) -> io::Error {
        err(
            ErrorKind::Disconnected,
            format!("the peer closed the connection with {left} bytes of a message still to come"),
        )
    }

    /// Makes room for at least `want` more bytes at the end of the buffer.
    fn compact_for(&mut self, want: usize) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_AHEAD];
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < want {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
    }
}

/// `read` that retries `EINTR` and reports timeouts as [`ErrorKind::Timeout`].
fn read_retrying<R: Read>(src: &mut R, out: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(err_src(ErrorKind::Timeout, "read timed out", e))
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out at most `chunk` bytes per read, like a slow socket.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn frames(messages: &[&[u8]]) -> Vec<u8> {
        let mut wire = Vec::new();
        for m in messages {
            wire.extend_from_slice(&encode_header(m.len(), u32::MAX).unwrap());
            wire.extend_from_slice(m);
        }
        wire
    }

    #[test]
    fn round_trip_any_chunking() {
        let big = vec![7u8; 20_000];
        let messages: Vec<&[u8]> = vec![b"hello", b"", b"x", &big, b"tail"];
        let wire = frames(&messages);
        for chunk in [1, 3, 4, 5, 100, 8192, usize::MAX] {
            let mut src = Chunked { data: &wire, chunk };
            let mut reader = FrameReader::new(u32::MAX);
            let mut out = Vec::new();
            for m in &messages {
                assert_eq!(reader.recv(&mut src, &mut out).unwrap(), Some(m.len()));
                assert_eq!(&out[..], *m, "chunk {chunk}");
            }
            assert_eq!(reader.recv(&mut src, &mut out).unwrap(), None);
        }
    }

    #[test]
    fn recv_into_reports_more_data_and_continues() {
        let wire = frames(&[b"abcdefghij", b"next"]);
        let mut src = Chunked {
            data: &wire,
            chunk: 3,
        };
        let mut reader = FrameReader::new(1024);
        let mut buf = [0u8; 4];
        let r = reader.recv_into(&mut src, &mut buf).unwrap().unwrap();
        assert_eq!((r.len(), r.more_data()), (4, true));
        assert_eq!(&buf, b"abcd");
        let r = reader.recv_into(&mut src, &mut buf).unwrap().unwrap();
        assert_eq!((r.len(), r.more_data()), (4, true));
        assert_eq!(&buf, b"efgh");
        // recv after a partial read returns the rest of the same message.
        let mut out = Vec::new();
        assert_eq!(reader.recv(&mut src, &mut out).unwrap(), Some(2));
        assert_eq!(out, b"ij");
        let r = reader.recv_into(&mut src, &mut buf).unwrap().unwrap();
        assert_eq!((r.len(), r.is_complete()), (4, true));
        assert_eq!(&buf, b"next");
        assert!(reader.recv_into(&mut src, &mut buf).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused_before_allocating_and_poisons() {
        let wire = 0xFFFF_FFFFu32.to_le_bytes();
        let mut src = &wire[..];
        let mut reader = FrameReader::new(1024);
        let mut out = Vec::new();
        let e = reader.recv(&mut src, &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
        assert!(e.to_string().contains("4294967295"), "{e}");
        assert_eq!(out.capacity(), 0, "nothing allocated");
        let e = reader.recv(&mut src, &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn a_clients_first_frame_may_be_the_refusal_notice() {
        let mut wire = REFUSAL_NOTICE.to_vec();
        wire.extend_from_slice(&frames(&[b"after"]));
        for chunk in [1, 3, 4, 5, 23, 24, 100] {
            let mut src = Chunked { data: &wire, chunk };
            let mut reader = FrameReader::for_client(1024);
            let mut out = Vec::new();
            let e = reader.recv(&mut src, &mut out).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "chunk {chunk}");
            assert!(e.to_string().contains("refused this client's credentials"));
            let e = reader.recv(&mut src, &mut out).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "stays refused");
        }
        // A server's reader, and a client's after its first frame, see a length.
        for (mut reader, wire) in [
            (FrameReader::new(1024), REFUSAL_NOTICE.to_vec()),
            (
                FrameReader::for_client(1024),
                [&frames(&[b"first"])[..], REFUSAL_NOTICE].concat(),
            ),
        ] {
            let mut src = &wire[..];
            let mut out = Vec::new();
            let mut last = reader.recv(&mut src, &mut out);
            if let Ok(Some(5)) = last {
                last = reader.recv(&mut src, &mut out);
            }
            assert_eq!(
                ErrorKind::of(&last.unwrap_err()),
                ErrorKind::MessageTooLarge
            );
        }
        // Bytes that only begin like the notice are a frame header like any other.
        let mut wire = 0xFFFF_FFFFu32.to_le_bytes().to_vec();
        wire.extend_from_slice(b"npipe:something else");
        let e = FrameReader::for_client(1024)
            .recv(&mut &wire[..], &mut Vec::new())
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn a_timeout_inside_the_notice_loses_nothing() {
        let (head, tail) = REFUSAL_NOTICE.split_at(10);
        let head: &'static [u8] = head;
        let tail: &'static [u8] = tail;
        let mut src = props::Script::new(vec![Some(head), None, Some(tail)]);
        let mut reader = FrameReader::for_client(1024);
        let e = reader.recv(&mut src, &mut Vec::new()).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
        let e = reader.recv(&mut src, &mut Vec::new()).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied);
    }

    #[test]
    fn a_length_that_looks_like_text_says_byte_mode() {
        let mut reader = FrameReader::new(16 * 1024 * 1024);
        let e = reader
            .recv(&mut &b"hello"[..], &mut Vec::new())
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
        let text = e.to_string();
        assert!(text.contains("1819043176 bytes"), "{text}");
        assert!(
            text.contains(
                "(the bytes \"hell\" look like text: the peer may be writing in byte mode)"
            ),
            "{text}"
        );
        // Not every oversized length is text.
        let e = FrameReader::new(16)
            .recv(&mut &u32::MAX.to_le_bytes()[..], &mut Vec::new())
            .unwrap_err();
        assert!(!e.to_string().contains("look like text"), "{e}");
    }

    #[test]
    fn cap_is_inclusive() {
        let wire = frames(&[&[1u8; 16]]);
        let mut reader = FrameReader::new(16);
        let mut out = Vec::new();
        assert_eq!(reader.recv(&mut &wire[..], &mut out).unwrap(), Some(16));
        assert!(encode_header(16, 16).is_ok());
        let e = encode_header(17, 16).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn truncated_frames_are_disconnects() {
        let mut reader = FrameReader::new(1024);
        let mut out = Vec::new();
        let e = reader.recv(&mut &[5u8, 0][..], &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected);
        assert!(e.to_string().contains("header (2 of 4"), "{e}");

        let mut reader = FrameReader::new(1024);
        let wire = [5u8, 0, 0, 0, b'a', b'b'];
        let e = reader.recv(&mut &wire[..], &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected);
        assert!(e.to_string().contains("(2 of 5 bytes)"), "{e}");
    }

    #[test]
    fn read_bytes_concatenates_payloads() {
        let wire = frames(&[b"ab", b"", b"cde"]);
        let mut src = Chunked {
            data: &wire,
            chunk: 2,
        };
        let mut reader = FrameReader::new(1024);
        let mut all = Vec::new();
        let mut buf = [0u8; 2];
        loop {
            let n = reader.read_bytes(&mut src, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        assert_eq!(all, b"abcde");
    }

    #[test]
    fn peek_does_not_consume() {
        let wire = frames(&[b"hello", b"world"]);
        let mut src = &wire[..];
        let mut reader = FrameReader::new(1024);
        let mut buf = [0u8; 3];
        assert_eq!(reader.peek(&mut src, &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"hel");
        let mut out = Vec::new();
        reader.recv(&mut src, &mut out).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(reader.peek(&mut src, &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"wor");
    }

    /// A source that hands out `chunk` bytes per read and then times out (or
    /// every `stall`-th read), noting the largest room a read was offered beyond
    /// the bytes handed out before it.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
        stall: usize,
        reads: usize,
        sent: usize,
        widest_beyond_sent: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let beyond = out.len().saturating_sub(self.sent);
            self.widest_beyond_sent = self.widest_beyond_sent.max(beyond);
            if self.data.is_empty() || (self.stall > 1 && self.reads % self.stall == 0) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.sent += n;
            Ok(n)
        }
    }

    #[test]
    fn a_header_alone_commits_one_step_not_the_announced_length() {
        let cap = 16 << 20;
        let wire = encode_header(cap, cap as u32).unwrap();
        let mut src = Trickle {
            data: &wire,
            chunk: usize::MAX,
            stall: 0,
            reads: 0,
            sent: 0,
            widest_beyond_sent: 0,
        };
        let mut reader = FrameReader::new(cap as u32);
        let mut out = Vec::new();
        let e = reader.recv(&mut src, &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
        assert!(out.is_empty());
        assert!(
            out.capacity() <= GROWTH_STEP,
            "{} bytes committed for a header alone",
            out.capacity()
        );
        assert!(src.widest_beyond_sent <= GROWTH_STEP);
    }

    #[test]
    fn a_large_message_arriving_slowly_grows_the_buffer_with_its_bytes() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let wire = frames(&[&big, b"after"]);
        for reuse in [false, true] {
            let mut src = Trickle {
                data: &wire,
                chunk: 1000,
                stall: 7,
                reads: 0,
                sent: 0,
                widest_beyond_sent: 0,
            };
            let mut reader = FrameReader::new(u32::MAX);
            let mut out = if reuse {
                Vec::with_capacity(big.len())
            } else {
                Vec::new()
            };
            let allocation = out.as_ptr();
            let mut got = Vec::new();
            let message = loop {
                match reader.recv(&mut src, &mut out) {
                    Ok(Some(_)) => {
                        got.extend_from_slice(&out);
                        break got;
                    }
                    Err(e) if ErrorKind::of(&e) == ErrorKind::Timeout => {
                        got.extend_from_slice(&out);
                        // As long as the message is incomplete, what `out` holds
                        // follows what arrived.
                        if !reuse {
                            assert!(out.capacity() <= 2 * src.sent + GROWTH_STEP);
                        }
                    }
                    other => panic!("{other:?}"),
                }
            };
            assert!(message == big, "the message arrives whole");
            assert!(
                src.widest_beyond_sent <= src.sent.min(big.len()) + GROWTH_STEP,
                "a read was offered {} bytes beyond those sent",
                src.widest_beyond_sent
            );
            if reuse {
                assert_eq!(out.as_ptr(), allocation, "the caller's buffer is reused");
            }
            while reader.recv(&mut src, &mut out).is_err() {}
            assert_eq!(out, b"after");
        }
    }

    #[test]
    fn reused_buffer_is_exact() {
        let wire = frames(&[b"a long first message", b"short"]);
        let mut reader = FrameReader::new(1024);
        let mut out = Vec::new();
        let mut src = &wire[..];
        reader.recv(&mut src, &mut out).unwrap();
        reader.recv(&mut src, &mut out).unwrap();
        assert_eq!(out, b"short");
    }
}

/// Properties of the framing over generated messages, chunkings and read timeouts
/// (the fuzz target `fuzz/fuzz_targets/frame_decoder.rs` explores the same rules on
/// arbitrary bytes).
#[cfg(test)]
mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// Hands out `chunks[i % len]` bytes per read (0: everything) and fails every
    /// `stall`-th read with `WouldBlock`, as a socket with a read timeout does.
    struct Socket<'a> {
        data: &'a [u8],
        chunks: &'a [usize],
        stall: usize,
        reads: usize,
    }

    impl Read for Socket<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.stall > 1 && self.reads % self.stall == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let chunk = match self.chunks[self.reads % self.chunks.len()] {
                0 => usize::MAX,
                n => n,
            };
            let n = chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn wire(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for m in messages {
            wire.extend_from_slice(&encode_header(m.len(), u32::MAX).unwrap());
            wire.extend_from_slice(m);
        }
        wire
    }

    fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
        vec(
            prop_oneof![vec(any::<u8>(), 0..16), vec(any::<u8>(), 0..20_000)],
            0..12,
        )
    }

    fn is_timeout(e: &io::Error) -> bool {
        ErrorKind::of(e) == ErrorKind::Timeout
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// recv returns every message whole, in order, whatever the chunking, and
        /// read timeouts lose nothing: what a timed-out call left in `out` plus what
        /// the next call returns is the message.
        #[test]
        fn recv_round_trips(
            messages in messages(),
            chunks in vec(0usize..9000, 1..8),
            stall in 0usize..6,
        ) {
            let wire = wire(&messages);
            let mut src = Socket { data: &wire, chunks: &chunks, stall, reads: 0 };
            let mut reader = FrameReader::new(20_000);
            let (mut got, mut pending, mut out) = (Vec::new(), Vec::new(), Vec::new());
            loop {
                match reader.recv(&mut src, &mut out) {
                    Ok(Some(n)) => {
                        prop_assert_eq!(n, out.len());
                        pending.extend_from_slice(&out);
                        got.push(std::mem::take(&mut pending));
                    }
                    Ok(None) => break,
                    Err(e) if is_timeout(&e) => pending.extend_from_slice(&out),
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            prop_assert!(pending.is_empty());
            prop_assert_eq!(got, messages);
        }

        /// recv_into with a small buffer reassembles every message through
        /// `more_data`, timeouts included; a part with `more_data` fills the buffer
        /// unless a timeout cut it short.
        #[test]
        fn more_data_reassembles(
            messages in messages(),
            chunks in vec(0usize..300, 1..8),
            size in 1usize..64,
            stall in 0usize..6,
        ) {
            let wire = wire(&messages);
            let mut src = Socket { data: &wire, chunks: &chunks, stall, reads: 0 };
            let mut reader = FrameReader::new(20_000);
            let mut buf = vec![0u8; size];
            let (mut got, mut current) = (Vec::new(), Vec::new());
            loop {
                match reader.recv_into(&mut src, &mut buf) {
                    Ok(Some(part)) => {
                        prop_assert!(part.len() <= size);
                        prop_assert_eq!(part.more_data(), !part.is_complete());
                        if stall == 0 && part.more_data() {
                            prop_assert_eq!(part.len(), size);
                        }
                        current.extend_from_slice(&buf[..part.len()]);
                        if part.is_complete() {
                            got.push(std::mem::take(&mut current));
                        }
                    }
                    Ok(None) => break,
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            prop_assert!(current.is_empty());
            prop_assert_eq!(got, messages);
        }

        /// Any announced length over the cap is refused before anything is
        /// allocated, and the connection stays refused.
        #[test]
        fn over_the_cap_is_refused_without_allocating(max in 0u32..100_000, over in 1u32..) {
            let announced = max.saturating_add(over);
            prop_assume!(announced > max);
            let wire = announced.to_le_bytes();
            let mut reader = FrameReader::new(max);
            let mut out = Vec::new();
            let e = reader.recv(&mut &wire[..], &mut out).unwrap_err();
            prop_assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
            prop_assert_eq!(out.capacity(), 0);
            let e = reader.recv(&mut &wire[..], &mut out).unwrap_err();
            prop_assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
            prop_assert!(encode_header(announced as usize, max).is_err());
        }
    }

    /// A socket playing a script: each step is the bytes one read returns, or
    /// `None` for a read that times out.
    pub(super) struct Script(Vec<Option<&'static [u8]>>);

    impl Script {
        pub(super) fn new(steps: Vec<Option<&'static [u8]>>) -> Script {
            Script(steps)
        }
    }

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            match self.0.remove(0) {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(bytes) => {
                    out[..bytes.len()].copy_from_slice(bytes);
                    Ok(bytes.len())
                }
            }
        }
    }

    /// Found by the fuzz target (`crash-d24a65da`): a read timeout before the next
    /// header left the previous message in `out`, and one in the middle of a payload
    /// left `out` at the full length with unfilled bytes, so a caller could not tell
    /// what had arrived; recv_into lost the bytes it had stored.
    #[test]
    fn a_timeout_leaves_exactly_what_arrived() {
        let mut src = Script(vec![
            Some(b"\x01\0\0\0a"),
            None,
            Some(b"\x05\0\0\0"),
            Some(b"he"),
            None,
            Some(b"llo"),
            None,
        ]);
        let mut reader = FrameReader::new(1024);
        let mut out = Vec::new();
        assert_eq!(reader.recv(&mut src, &mut out).unwrap(), Some(1));
        assert_eq!(out, b"a");
        let e = reader.recv(&mut src, &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
        assert!(out.is_empty(), "not the previous message again");
        let e = reader.recv(&mut src, &mut out).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
        assert_eq!(out, b"he", "exactly the part that arrived");
        assert_eq!(reader.recv(&mut src, &mut out).unwrap(), Some(3));
        assert_eq!(out, b"llo", "the rest of the same message");
        assert!(reader.recv(&mut src, &mut out).is_err());
        assert!(out.is_empty());
        assert_eq!(reader.recv(&mut src, &mut out).unwrap(), None);

        let mut src = Script(vec![Some(b"\x05\0\0\0"), Some(b"he"), None, Some(b"llo")]);
        let mut reader = FrameReader::new(1024);
        let mut buf = [0u8; 8];
        let part = reader.recv_into(&mut src, &mut buf).unwrap().unwrap();
        assert_eq!((&buf[..part.len()], part.more_data()), (&b"he"[..], true));
        let part = reader.recv_into(&mut src, &mut buf).unwrap().unwrap();
        assert_eq!(
            (&buf[..part.len()], part.is_complete()),
            (&b"llo"[..], true)
        );
    }
}
