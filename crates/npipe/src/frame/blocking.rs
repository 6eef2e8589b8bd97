//! The blocking driver of the framing: [`FrameReader`] reads frames from any
//! [`Read`] source (a socket, bounded by its timeouts or a deadline, or the managed
//! server's request source) through a small read-ahead buffer, so a small message
//! (header and payload) costs one `read` system call, and a large payload is read
//! straight into the caller's buffer with no extra copy.

use std::io::{self, Read};

use super::{grown_len, Decoder, Received, HEADER_LEN};
use crate::error::{err_src, ErrorKind};

/// First size of the read-ahead buffer: a small request and its header in one
/// `read`. Safe Rust hands out only initialised buffers, so every connection
/// pays for zeroing this much (an 8 KiB start was 1-2% of a connect, request,
/// reply, close cycle); connections that stream grow it below.
const READ_AHEAD: usize = 1024;

/// The read-ahead buffer doubles, up to this, each time a `read` fills it: a
/// connection that streams small messages then needs fewer system calls
/// (16 x 4 KiB messages per `read` rather than 2 with 8 KiB).
const MAX_READ_AHEAD: usize = 64 * 1024;

/// Decoder state for one connection, with its read-ahead buffer.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    decoder: Decoder,
}

impl FrameReader {
    pub(crate) fn new(max: u32) -> FrameReader {
        FrameReader::with(Decoder::new(max))
    }

    /// The reader of a client, whose first frame may be the server's refusal notice
    /// (see [`Decoder::for_client`]).
    pub(crate) fn for_client(max: u32, refused: fn() -> io::Error) -> FrameReader {
        FrameReader::with(Decoder::for_client(max, refused))
    }

    fn with(decoder: Decoder) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            decoder,
        }
    }

    /// The decoding state, for a driver that takes over a fresh connection (one
    /// with nothing read ahead).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_decoder(self) -> Decoder {
        debug_assert_eq!(self.buffered(), 0, "bytes read ahead would be lost");
        self.decoder
    }

    /// Whether no header has been read yet on a client (a refusal notice may wait).
    pub(crate) fn expects_notice(&self) -> bool {
        self.decoder.expects_notice()
    }

    /// Whether the refusal notice has been read ahead (by `peek`) and waits here.
    pub(crate) fn holds_refusal(&self) -> bool {
        self.decoder.holds_refusal(&self.buf[self.pos..self.end])
    }

    /// Bytes read ahead from the transport and not yet delivered.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// Whether a message has been partly delivered (after `more_data`).
    pub(crate) fn in_message(&self) -> bool {
        self.decoder.in_message()
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
        let len = match self.next_message(src) {
            Ok(Some(len)) => len,
            other => {
                out.clear();
                return other;
            }
        };
        // Reuse the caller's buffer without zeroing what it already holds: every byte
        // of `out[..len]` is overwritten below. Beyond that, `out` grows (and is
        // zeroed) a step at a time as the payload arrives, within the room the caller
        // gave it where it can (`grown_len`): a header alone commits one step.
        out.truncate(len);
        let mut done = 0;
        while done < len {
            let step = grown_len(done, len);
            if out.len() < step {
                out.reserve_exact(step - out.len());
                out.resize(step, 0);
            }
            let end = out.len();
            if let Err(e) = self.fill_exact(src, &mut out[done..end]) {
                out.truncate(len - self.decoder.left());
                return Err(e);
            }
            done = end;
        }
        Ok(Some(len))
    }

    /// Receives into a fixed buffer: what fits, with `more_data` when the message goes on.
    pub(crate) fn recv_into<R: Read>(
        &mut self,
        src: &mut R,
        out: &mut [u8],
    ) -> io::Result<Option<Received>> {
        let Some(len) = self.next_message(src)? else {
            return Ok(None);
        };
        let take = len.min(out.len());
        if let Err(e) = self.fill_exact(src, &mut out[..take]) {
            // A timeout after some bytes were stored is a short read: report them
            // (with `more_data`) rather than lose them; the next read goes on.
            let done = len - self.decoder.left();
            if done > 0 && ErrorKind::of(&e) == ErrorKind::Timeout {
                return Ok(Some(Received::new(done, true)));
            }
            return Err(e);
        }
        Ok(Some(Received::new(take, self.decoder.in_message())))
    }

    /// `Read` semantics over the message payloads, boundaries ignored (Windows' byte
    /// read mode on a message pipe). `Ok(0)` only at end of stream or for an empty `out`.
    pub(crate) fn read_bytes<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let left = match self.next_message(src)? {
                Some(0) => continue,
                Some(left) => left,
                None => return Ok(0),
            };
            let want = left.min(out.len());
            let got = if self.buffered() > 0 {
                let n = want.min(self.buffered());
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                n
            } else {
                match read_retrying(src, &mut out[..want])? {
                    0 => return Err(self.decoder.cut_off(0)),
                    n => n,
                }
            };
            self.decoder.delivered(got);
            return Ok(got);
        }
    }

    /// Copies the bytes of the current or next message that have already arrived,
    /// without consuming them. `src` is read at most once, to pull in bytes that are
    /// ready without blocking.
    pub(crate) fn peek<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<usize> {
        self.decoder.check()?;
        self.compact_for(HEADER_LEN);
        match src.read(&mut self.buf[self.end..]) {
            Ok(n) => self.end += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let payload = self.decoder.peek(&self.buf[self.pos..self.end]);
        let n = payload.len().min(out.len());
        out[..n].copy_from_slice(&payload[..n]);
        Ok(n)
    }

    /// What is left of the current message, or the length of the next one once its
    /// header is read. `Ok(None)` at a clean end of stream.
    fn next_message<R: Read>(&mut self, src: &mut R) -> io::Result<Option<usize>> {
        if let Some((_, left)) = self.decoder.current() {
            return Ok(Some(left));
        }
        self.decoder.check()?;
        self.compact_for(HEADER_LEN);
        let mut at_end = false;
        loop {
            // Nothing read ahead can only mean "read more" (the decoder is not
            // broken): the usual case, decided without asking.
            if self.buffered() > 0 || at_end {
                let start = self.decoder.start(&self.buf[self.pos..self.end], at_end)?;
                self.pos += start.consumed();
                if let Some(outcome) = start.outcome() {
                    return outcome;
                }
            }
            // A read timeout below leaves what arrived of a header (or notice) in
            // the buffer, for the next call.
            if self.end == self.buf.len() {
                // Less than a notice waits in a buffer of at least `READ_AHEAD`
                // bytes: moving it to the front makes room.
                self.compact_for(1);
            }
            let n = read_retrying(src, &mut self.buf[self.end..])?;
            self.end += n;
            at_end = n == 0;
            if self.end == self.buf.len() && self.buf.len() < MAX_READ_AHEAD {
                let grown = (self.buf.len() * 2).min(MAX_READ_AHEAD);
                self.buf.resize(grown, 0);
            }
        }
    }

    /// Fills `out` completely with payload bytes of the current message, first from
    /// the read-ahead buffer, then straight from `src`; the decoder counts what was
    /// delivered, also on an error (the framing is kept).
    fn fill_exact<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<()> {
        let from_buf = out.len().min(self.buffered());
        out[..from_buf].copy_from_slice(&self.buf[self.pos..self.pos + from_buf]);
        self.pos += from_buf;
        self.decoder.delivered(from_buf);
        let mut done = from_buf;
        while done < out.len() {
            match read_retrying(src, &mut out[done..])? {
                0 => return Err(self.decoder.cut_off(0)),
                n => {
                    self.decoder.delivered(n);
                    done += n;
                }
            }
        }
        Ok(())
    }

    /// Makes room for at least `want` more bytes at the end of the buffer (which
    /// must be able to hold them).
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
pub(crate) fn read_retrying<R: Read>(src: &mut R, out: &mut [u8]) -> io::Result<usize> {
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
    use crate::frame::{encode_header, GROWTH_STEP, REFUSAL_NOTICE};

    /// The error of a refused client, as the Unix backend makes it.
    fn refused() -> io::Error {
        crate::frame::refused(Some((65534, 65534)))
    }

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
            let mut reader = FrameReader::for_client(1024, refused);
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
                FrameReader::for_client(1024, refused),
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
        let e = FrameReader::for_client(1024, refused)
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
        let mut reader = FrameReader::for_client(1024, refused);
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
    use crate::frame::encode_header;

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
