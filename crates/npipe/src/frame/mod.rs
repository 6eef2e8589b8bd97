//! Message framing: npipe's wire contract on byte-stream transports (Unix), and the
//! size cap of every transport.
//!
//! Every message is a 4-byte little-endian unsigned length followed by that many
//! bytes. The length is checked against the cap **before** anything is allocated,
//! and the room made for a payload follows the bytes that have arrived of it
//! ([`grown_len`]), never the length a peer announced.
//!
//! This module is the only place that encodes or decodes a length prefix. Its core
//! is sans-IO: [`Decoder`] is the state of one connection's incoming frames over the
//! bytes that have arrived (header, cap, the message being delivered, the server's
//! refusal notice, what `peek` may show), [`Cap`] the size cap with the broken
//! state it leaves, and [`outgoing`] what a writer puts on the wire for a message
//! (its header and payload in the fewest writes). The drivers move the bytes:
//!
//! - [`blocking`]: `FrameReader`, over any [`std::io::Read`] (the blocking `Stream`,
//!   the managed server's dedicated threads);
//! - `nonblocking`: the reader and writer of the tokio `Stream` over
//!   `AsyncRead`/`AsyncWrite` (feature `tokio`);
//! - `codec`: `MessageCodec` (public as `npipe::tokio::MessageCodec`), the same
//!   framing as a `tokio_util` codec (feature `tokio`).
//!
//! Windows pipes carry messages natively, with no length prefix: there [`Cap`],
//! [`grown_len`] and [`Received`] apply, and a framed tokio stream shows each
//! message to the codec as a frame ([`frame_header`], [`whole_frame`]).
//!
//! Why not tokio-util's `LengthDelimitedCodec`, which reads the same 4-byte
//! little-endian length with a `max_frame_length`: on a header within the cap it
//! reserves the whole announced frame at once (`src.reserve(n)` in its
//! `decode_head`), so a peer that sends a header and stalls would hold the cap's
//! worth of memory, breaking the promise that memory follows the bytes received
//! (SECURITY.md); its errors are plain `io::Error`s (`InvalidData`, "frame size too
//! big"; an end of stream inside a frame is "bytes remaining on stream"), not
//! npipe's [`ErrorKind`]s; a length over the cap does not break the stream for
//! good; and it cannot recognise the server's [`REFUSAL_NOTICE`].

pub(crate) mod blocking;
#[cfg(feature = "tokio")]
pub(crate) mod codec;
#[cfg(feature = "tokio")]
pub(crate) mod nonblocking;

use std::io;

use crate::error::{err, ErrorKind};

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 4;

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

/// How much more room a buffer holding `received` bytes of a message, of which
/// `left` are still to come, may take: up to [`grown_len`].
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn growth(received: usize, left: usize) -> usize {
    grown_len(received, received.saturating_add(left)) - received
}

/// The header for a `len`-byte message, or `MessageTooLarge` if `len` exceeds `max`
/// (checked before anything is sent, on every platform).
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

/// The header of a message of `len` bytes that has arrived without one: a native
/// Windows message presented to `MessageCodec` as a frame. `len` has passed the
/// cap, so it fits (else it reads as over any cap).
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn frame_header(len: usize) -> [u8; HEADER_LEN] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

/// The first whole frame at the front of `bytes`, if it is all there: its size
/// (header included) and its payload. For frames npipe's own codec wrote (a framed
/// Windows stream cuts them into native messages): no cap to check.
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn whole_frame(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let header = bytes.get(..HEADER_LEN)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let payload = bytes.get(HEADER_LEN..HEADER_LEN.checked_add(len)?)?;
    Some((HEADER_LEN + len, payload))
}

/// Messages up to this size are put behind their header on the writer's stack, in
/// a [`SmallFrame`]: a connection that carries one small request costs no
/// allocation for sending it.
const SMALL_MESSAGE: usize = 252;

/// Room on a writer's stack for a small message and its header (see [`outgoing`]).
#[derive(Debug)]
pub(crate) struct SmallFrame([u8; HEADER_LEN + SMALL_MESSAGE]);

impl SmallFrame {
    #[inline]
    pub(crate) fn new() -> SmallFrame {
        SmallFrame([0; HEADER_LEN + SMALL_MESSAGE])
    }
}

/// Messages up to this size are copied behind their header into a reused buffer,
/// so that header and payload leave in one write; larger ones go out as they are,
/// behind their header, with one vectored write (`sendmsg`) and no copy.
const COALESCE_LIMIT: usize = 16 * 1024;

/// One message made ready to write by [`outgoing`]: its header and payload as the
/// fewest system calls take them. [`slices`](Self::slices) says what to write.
#[derive(Debug)]
pub(crate) enum Wire<'a> {
    /// A small or medium message: header and payload copied together (into the
    /// writer's [`SmallFrame`] or its reused buffer), for one write.
    Joined(&'a [u8]),
    /// A large message: the header, then the parts as they are.
    Gathered {
        header: [u8; HEADER_LEN],
        parts: &'a [&'a [u8]],
    },
}

/// The frame of one message made of `parts` (one header for their total length),
/// or `MessageTooLarge` if it exceeds `max` (nothing to write then). The writer
/// lends room for the copy: `small` on its stack, `scratch` a buffer it keeps for
/// medium messages.
#[inline]
pub(crate) fn outgoing<'a>(
    parts: &'a [&'a [u8]],
    max: u32,
    small: &'a mut SmallFrame,
    scratch: &'a mut Vec<u8>,
) -> io::Result<Wire<'a>> {
    let len = parts.iter().map(|part| part.len()).sum();
    let header = encode_header(len, max)?;
    if len <= SMALL_MESSAGE {
        let frame = &mut small.0[..HEADER_LEN + len];
        frame[..HEADER_LEN].copy_from_slice(&header);
        let mut at = HEADER_LEN;
        for part in parts {
            frame[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(Wire::Joined(frame))
    } else if len <= COALESCE_LIMIT {
        scratch.clear();
        // One allocation for the first message, not a growth per part.
        scratch.reserve(HEADER_LEN + len);
        scratch.extend_from_slice(&header);
        parts
            .iter()
            .for_each(|part| scratch.extend_from_slice(part));
        Ok(Wire::Joined(scratch))
    } else {
        Ok(Wire::Gathered { header, parts })
    }
}

impl Wire<'_> {
    /// What to write, in order: one slice, or the header and the parts.
    pub(crate) fn slices(&self) -> Slices<'_> {
        match self {
            Wire::Joined(bytes) => Slices::One([bytes]),
            Wire::Gathered {
                header,
                parts: [message],
            } => Slices::Two([header, message]),
            Wire::Gathered { header, parts } => Slices::Many(
                std::iter::once(&header[..])
                    .chain(parts.iter().copied())
                    .collect(),
            ),
        }
    }
}

/// The slices of a [`Wire`]; allocated only for a large message of several parts.
#[derive(Debug)]
pub(crate) enum Slices<'a> {
    One([&'a [u8]; 1]),
    Two([&'a [u8]; 2]),
    Many(Vec<&'a [u8]>),
}

impl<'a> std::ops::Deref for Slices<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        match self {
            Slices::One(one) => one,
            Slices::Two(two) => two,
            Slices::Many(many) => many,
        }
    }
}

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
/// [`ErrorKind::AccessDenied`]. To a message reader of any language it looks like a
/// frame announcing 4 GiB − 1 bytes, which its cap check refuses, and the text tells
/// a person reading the raw bytes (`socat`) what happened. Byte-mode clients receive
/// the bytes as they are. The one ambiguity: a server allowing 4 GiB − 1-byte
/// messages whose first reply is exactly that long and begins with
/// `npipe:access-denied\n` would be taken for a refusal.
///
/// # Examples
///
/// ```
/// assert_eq!(&npipe::REFUSAL_NOTICE[..4], &u32::MAX.to_le_bytes());
/// assert!(npipe::REFUSAL_NOTICE.ends_with(b"npipe:access-denied\n"));
/// ```
pub const REFUSAL_NOTICE: &[u8] = b"\xFF\xFF\xFF\xFFnpipe:access-denied\n";

/// The error of a client that received [`REFUSAL_NOTICE`]; `ids`: its effective
/// user and group ids, where the OS has them (the backend's `refused` fills them in).
pub(crate) fn refused(ids: Option<(u32, u32)>) -> io::Error {
    let who = match ids {
        Some((uid, gid)) => format!(" (uid {uid}, gid {gid})"),
        None => String::new(),
    };
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
fn header_cut_off(got: usize) -> io::Error {
    err(
        ErrorKind::Disconnected,
        format!(
            "the peer closed the connection in the middle of a message header ({got} of {HEADER_LEN} bytes)"
        ),
    )
}

/// The outcome of [`crate::Stream::recv_into`]: how many bytes were stored and whether
/// the message is complete.
///
/// When the buffer was too small, `more_data()` is true (Windows `ERROR_MORE_DATA`) and
/// the rest of the same message is returned by the following reads.
///
/// # Examples
///
/// ```no_run
/// let mut stream = npipe::Stream::connect("demo")?;
/// let mut buf = [0u8; 16];
/// match stream.recv_into(&mut buf)? {
///     Some(part) if part.more_data() => println!("{} bytes, more to come", part.len()),
///     Some(part) => println!("a whole {}-byte message", part.len()),
///     None => println!("the server closed the connection"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
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

/// The maximum size of one connection's incoming messages, and what breaking the
/// framing left: once a peer announced (or, on Windows, sent) a message over the
/// cap, or the server's refusal notice arrived, every later read fails alike.
#[derive(Debug, Clone)]
pub(crate) struct Cap {
    max: u32,
    broken: Option<(ErrorKind, String)>,
}

impl Cap {
    pub(crate) fn new(max: u32) -> Cap {
        Cap { max, broken: None }
    }

    /// The maximum message size.
    #[cfg_attr(all(unix, not(feature = "tokio")), allow(dead_code))]
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// The error of a connection whose framing is lost, if it is.
    #[inline]
    pub(crate) fn check(&self) -> io::Result<()> {
        match &self.broken {
            Some((kind, msg)) => Err(err(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    /// Fails every later read with `e` (its kind and text).
    fn break_with(&mut self, e: io::Error) -> io::Error {
        self.broken = Some((ErrorKind::of(&e), e.to_string()));
        e
    }

    /// The payload length `header` announces, or `MessageTooLarge` (for good) if it
    /// is over the cap: nothing has been allocated for it.
    #[inline]
    fn announced(&mut self, header: [u8; HEADER_LEN]) -> io::Result<usize> {
        let len = u32::from_le_bytes(header);
        if len > self.max {
            let e = err(
                ErrorKind::MessageTooLarge,
                format!(
                    "the peer announced a message of {len} bytes{}; the maximum message size is {} bytes (nothing was allocated; the connection can no longer be read)",
                    text_hint(header),
                    self.max
                ),
            );
            return Err(self.break_with(e));
        }
        usize::try_from(len).map_err(|_| {
            err(
                ErrorKind::MessageTooLarge,
                format!("a message of {len} bytes does not fit in memory"),
            )
        })
    }

    /// Admits a native message (Windows) of `total` bytes, as far as the system
    /// tells, or fails with `MessageTooLarge` for good: the rest was not read.
    #[cfg_attr(unix, allow(dead_code))]
    pub(crate) fn admit(&mut self, total: usize) -> io::Result<()> {
        if total <= self.max as usize {
            return Ok(());
        }
        let e = err(
            ErrorKind::MessageTooLarge,
            format!(
                "the peer sent a message of {total} bytes; the maximum message size is {} bytes (the rest was not read; the connection can no longer be read)",
                self.max
            ),
        );
        Err(self.break_with(e))
    }
}

/// What the bytes at the front of the input say between messages: see
/// [`Decoder::start`].
#[derive(Debug)]
pub(crate) enum Start {
    /// Too few bytes to tell: read more and ask again.
    More,
    /// The stream ended cleanly, between messages.
    End,
    /// A message of this many payload bytes begins: consume its header
    /// ([`HEADER_LEN`] bytes); the message is now the current one unless empty.
    Message(usize),
    /// The server's refusal notice: consume it ([`REFUSAL_NOTICE`]`.len()` bytes)
    /// and fail with the error, as every later read will.
    Refused(io::Error),
}

impl Start {
    /// What a reader of whole messages makes of it once [`consumed`](Self::consumed):
    /// the length of the message that begins, `None` at the end of the stream, or
    /// the refusal; `None` (outer) when it must read more first.
    #[inline]
    pub(crate) fn outcome(self) -> Option<io::Result<Option<usize>>> {
        match self {
            Start::More => None,
            Start::End => Some(Ok(None)),
            Start::Message(len) => Some(Ok(Some(len))),
            Start::Refused(e) => Some(Err(e)),
        }
    }

    /// Bytes of the input this outcome consumes.
    #[inline]
    pub(crate) fn consumed(&self) -> usize {
        match self {
            Start::Message(_) => HEADER_LEN,
            Start::Refused(_) => REFUSAL_NOTICE.len(),
            Start::More | Start::End => 0,
        }
    }
}

/// The decoding state of one connection's incoming frames, over the bytes that have
/// arrived and not been consumed (the *input*, which a driver keeps and reads into).
/// No I/O: the drivers read and ask it what the bytes mean.
///
/// The rules: a length over the cap is refused before anything is allocated and the
/// connection can no longer be read; an end of stream inside a frame is a
/// `Disconnected` error saying how much arrived; a client's first frame may be the
/// server's [`REFUSAL_NOTICE`].
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    cap: Cap,
    /// The message being delivered: its length, and its payload bytes not yet
    /// delivered (never 0). `None` between messages.
    current: Option<(usize, usize)>,
    /// A client's decoder before its first frame: the error to fail with if that
    /// frame is the server's refusal notice.
    notice: Option<fn() -> io::Error>,
}

impl Decoder {
    /// The decoder of a server, or of a client in byte mode turned framed.
    pub(crate) fn new(max: u32) -> Decoder {
        Decoder {
            cap: Cap::new(max),
            current: None,
            notice: None,
        }
    }

    /// The decoder of a client, whose first frame may be the server's refusal
    /// notice: `refused` makes the error then (it names the client's user).
    pub(crate) fn for_client(max: u32, refused: fn() -> io::Error) -> Decoder {
        Decoder {
            notice: Some(refused),
            ..Decoder::new(max)
        }
    }

    /// The maximum message size.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn max(&self) -> u32 {
        self.cap.max()
    }

    /// Whether no header has been read yet on a client (a refusal notice may wait).
    pub(crate) fn expects_notice(&self) -> bool {
        self.notice.is_some()
    }

    /// Whether `input` begins with the whole refusal notice, on a client that has
    /// not read a header yet (`peek` may have read it ahead).
    pub(crate) fn holds_refusal(&self, input: &[u8]) -> bool {
        self.expects_notice() && match_refusal(input) == Some(true)
    }

    /// Whether a message has been partly delivered (after `more_data`, or a read
    /// that timed out).
    #[inline]
    pub(crate) fn in_message(&self) -> bool {
        self.current.is_some()
    }

    /// The message being delivered: its length and the payload bytes not yet
    /// delivered (at least one).
    #[inline]
    pub(crate) fn current(&self) -> Option<(usize, usize)> {
        self.current
    }

    /// Payload bytes of the current message not yet delivered (0 between messages).
    #[inline]
    pub(crate) fn left(&self) -> usize {
        self.current.map_or(0, |(_, left)| left)
    }

    /// The error of a connection whose framing is lost, if it is.
    pub(crate) fn check(&self) -> io::Result<()> {
        self.cap.check()
    }

    /// Between messages: what the bytes at the front of `input` say. `at_end`: no
    /// more bytes will come (the peer closed). Errors: the connection's framing is
    /// lost (before, or by this header: `MessageTooLarge`), or the stream ended
    /// inside a header (`Disconnected`).
    #[inline]
    pub(crate) fn start(&mut self, input: &[u8], at_end: bool) -> io::Result<Start> {
        debug_assert!(self.current.is_none(), "a message is being delivered");
        self.check()?;
        if input.len() < HEADER_LEN {
            return match (at_end, input.len()) {
                (false, _) => Ok(Start::More),
                (true, 0) => Ok(Start::End),
                (true, got) => Err(header_cut_off(got)),
            };
        }
        if let Some(refused) = self.notice {
            match match_refusal(input) {
                Some(true) => return Ok(Start::Refused(self.cap.break_with(refused()))),
                // What has arrived may be the beginning of the notice.
                Some(false) if !at_end => return Ok(Start::More),
                _ => self.notice = None,
            }
        }
        let len = self
            .cap
            .announced([input[0], input[1], input[2], input[3]])?;
        self.current = (len > 0).then_some((len, len));
        Ok(Start::Message(len))
    }

    /// `n` more payload bytes of the current message were delivered (at most what
    /// is left of it); the message ends when none are left.
    #[inline]
    pub(crate) fn delivered(&mut self, n: usize) {
        if let Some((total, left)) = self.current {
            debug_assert!(n <= left);
            let left = left - n.min(left);
            self.current = (left > 0).then_some((total, left));
        }
    }

    /// The error for an end of stream once `got` more bytes of the current message
    /// than those delivered have arrived.
    pub(crate) fn cut_off(&self, got: usize) -> io::Error {
        let (total, left) = self.current.unwrap_or_default();
        err(
            ErrorKind::Disconnected,
            format!(
                "the peer closed the connection in the middle of a message ({} of {total} bytes)",
                total - left + got
            ),
        )
    }

    /// The payload bytes of the current or next message that `input` holds: what
    /// `peek` shows, without consuming anything (nor checking the cap: nothing is
    /// allocated for it).
    pub(crate) fn peek<'a>(&self, input: &'a [u8]) -> &'a [u8] {
        match self.current {
            Some((_, left)) => &input[..left.min(input.len())],
            None if input.len() >= HEADER_LEN => {
                let len = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) as usize;
                let body = &input[HEADER_LEN..];
                &body[..len.min(body.len())]
            }
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> io::Error {
        super::refused(Some((65534, 65534)))
    }

    #[test]
    fn the_decoders_cap_is_inclusive() {
        assert!(encode_header(16, 16).is_ok());
        let e = encode_header(17, 16).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
        let mut decoder = Decoder::new(16);
        let start = decoder.start(&16u32.to_le_bytes(), false).unwrap();
        assert!(matches!(start, Start::Message(16)));
        let mut decoder = Decoder::new(16);
        let e = decoder.start(&17u32.to_le_bytes(), false).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn a_clients_decoder_waits_for_what_may_be_the_notice() {
        let mut decoder = Decoder::for_client(1024, refused);
        for n in 0..REFUSAL_NOTICE.len() {
            assert!(matches!(
                decoder.start(&REFUSAL_NOTICE[..n], false).unwrap(),
                Start::More
            ));
        }
        // At the end of the stream, a beginning of the notice is a header.
        let e = decoder.start(&REFUSAL_NOTICE[..10], true).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);

        let mut decoder = Decoder::for_client(1024, refused);
        let start = decoder.start(REFUSAL_NOTICE, false).unwrap();
        assert_eq!(start.consumed(), REFUSAL_NOTICE.len());
        assert!(matches!(start, Start::Refused(_)));
        let e = decoder.start(&[], false).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "stays refused");
        assert_eq!(
            e.to_string(),
            "the server refused this client's credentials (uid 65534, gid 65534): its access policy does not admit them"
        );
    }

    #[test]
    fn delivery_counts_down_the_current_message() {
        let mut decoder = Decoder::new(1024);
        let mut input = 10u32.to_le_bytes().to_vec();
        input.extend_from_slice(b"abcdefghij");
        assert!(matches!(
            decoder.start(&input, false).unwrap(),
            Start::Message(10)
        ));
        assert_eq!(decoder.peek(&input[HEADER_LEN..][..3]), b"abc");
        decoder.delivered(4);
        assert_eq!(decoder.current(), Some((10, 6)));
        let e = decoder.cut_off(2);
        assert!(e.to_string().contains("(6 of 10 bytes)"), "{e}");
        decoder.delivered(6);
        assert!(!decoder.in_message());
        // An empty message is never current.
        assert!(matches!(
            decoder.start(&[0, 0, 0, 0], false).unwrap(),
            Start::Message(0)
        ));
        assert!(!decoder.in_message());
        assert!(matches!(decoder.start(&[], true).unwrap(), Start::End));
    }

    #[test]
    fn outgoing_frames_carry_one_header_for_all_parts() {
        let mut scratch = Vec::new();
        for len in [
            0,
            1,
            SMALL_MESSAGE,
            SMALL_MESSAGE + 1,
            COALESCE_LIMIT,
            COALESCE_LIMIT + 1,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (a, b) = payload.split_at(len / 3);
            for parts in [&[&payload[..]][..], &[a, b][..]] {
                let mut small = SmallFrame::new();
                let wire = outgoing(parts, u32::MAX, &mut small, &mut scratch).unwrap();
                let bytes = wire.slices().concat();
                assert_eq!(bytes[..HEADER_LEN], (len as u32).to_le_bytes(), "{len}");
                assert_eq!(bytes[HEADER_LEN..], payload[..], "{len}");
                let pieces = wire.slices().len();
                match len {
                    _ if len <= COALESCE_LIMIT => assert_eq!(pieces, 1, "{len}: one write"),
                    _ => assert_eq!(pieces, 1 + parts.len(), "{len}: no copy"),
                }
            }
        }
        let e = outgoing(&[b"abc"], 2, &mut SmallFrame::new(), &mut scratch).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn whole_frames_are_cut_from_what_arrived() {
        let mut scratch = Vec::new();
        let mut small = SmallFrame::new();
        let mut bytes = outgoing(&[b"hello"], u32::MAX, &mut small, &mut scratch)
            .unwrap()
            .slices()
            .concat();
        assert_eq!(bytes[..HEADER_LEN], frame_header(5));
        bytes.extend_from_slice(&frame_header(3));
        assert_eq!(whole_frame(&bytes), Some((9, &b"hello"[..])));
        assert_eq!(whole_frame(&bytes[9..]), None, "a header alone");
        assert_eq!(whole_frame(&bytes[..8]), None, "a payload cut short");
        assert_eq!(frame_header(usize::MAX), u32::MAX.to_le_bytes());
    }

    #[test]
    fn growth_follows_the_bytes_received() {
        assert_eq!(grown_len(0, 1 << 30), GROWTH_STEP);
        assert_eq!(grown_len(1000, 1 << 30), 2000 + GROWTH_STEP);
        assert_eq!(grown_len(1000, 1500), 1500);
        assert_eq!(growth(1000, 1 << 30), 1000 + GROWTH_STEP);
        assert_eq!(growth(1000, 500), 500);
    }
}
