//! The framing as a tokio-util codec: [`MessageCodec`], driven by `Framed` over the
//! core's [`Decoder`](super::Decoder). Why not tokio-util's own
//! `LengthDelimitedCodec`: see the [module documentation](super).

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{encode_header, grown_len, Start, HEADER_LEN};
use crate::options::DEFAULT_MAX_MESSAGE;

/// npipe's message framing as a [`tokio_util::codec`] codec: each message is a
/// 4-byte little-endian length followed by the payload, and an announced length over
/// the maximum is refused **before** any buffer is reserved for it. Within the
/// maximum, room is reserved as the payload arrives (at most twice what has arrived
/// plus 64 KiB), not for the announced length at once.
///
/// Use it through [`Stream::into_framed`](crate::tokio::Stream::into_framed), or with
/// `Framed`/`FramedRead`/`FramedWrite` over any byte transport that speaks npipe's
/// wire contract. Decoding yields `BytesMut`; messages to send may be `Bytes`,
/// `Vec<u8>` or `&[u8]`.
///
/// # Errors
///
/// Decoding fails with [`MessageTooLarge`](crate::ErrorKind::MessageTooLarge) for
/// an oversized length (the framing is lost; every later call fails the same way),
/// with [`Disconnected`](crate::ErrorKind::Disconnected) when the stream ends
/// inside a message. The codec of a client stream
/// ([`Stream::into_framed`](crate::tokio::Stream::into_framed) on a client) fails
/// with [`AccessDenied`](crate::ErrorKind::AccessDenied) when the first frame is the
/// server's [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE): the server's access policy
/// refused this client. Encoding fails with `MessageTooLarge` when a message is
/// over the maximum (nothing is written).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use npipe::tokio::MessageCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = MessageCodec::with_max_message_size(1024);
/// let mut wire = BytesMut::new();
/// codec.encode(&b"hello"[..], &mut wire)?;
/// assert_eq!(&wire[..4], &5u32.to_le_bytes());
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some(&b"hello"[..]));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MessageCodec {
    decoder: super::Decoder,
}

impl Default for MessageCodec {
    fn default() -> Self {
        MessageCodec::new()
    }
}

impl MessageCodec {
    /// A codec with the default maximum message size (16 MiB).
    ///
    /// # Examples
    ///
    /// Messages over any byte transport that speaks npipe's wire contract; here,
    /// an in-memory pipe:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use futures_util::{SinkExt, StreamExt};
    /// use npipe::tokio::MessageCodec;
    /// use tokio_util::codec::Framed;
    ///
    /// let (a, b) = tokio::io::duplex(1024);
    /// let mut a = Framed::new(a, MessageCodec::new());
    /// let mut b = Framed::new(b, MessageCodec::new());
    /// a.send(&b"hello"[..]).await?;
    /// let message = b.next().await.transpose()?;
    /// assert_eq!(message.as_deref(), Some(&b"hello"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new() -> MessageCodec {
        MessageCodec::with_max_message_size(DEFAULT_MAX_MESSAGE)
    }

    /// A codec accepting and sending messages of at most `max` bytes.
    pub fn with_max_message_size(max: u32) -> MessageCodec {
        MessageCodec::with_decoder(super::Decoder::new(max))
    }

    /// The codec that goes on where a stream's reader stopped (`into_framed`),
    /// between messages: its cap, and on a fresh client the refusal notice to look
    /// for. (Windows pipes refuse clients at `CreateFile`: no notice there.)
    pub(crate) fn with_decoder(decoder: super::Decoder) -> MessageCodec {
        MessageCodec { decoder }
    }

    /// The maximum message size.
    pub fn max_message_size(&self) -> u32 {
        self.decoder.max()
    }

    fn encode_slice(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        let header = encode_header(message.len(), self.decoder.max())?;
        dst.reserve(HEADER_LEN + message.len());
        dst.put_slice(&header);
        dst.put_slice(message);
        Ok(())
    }

    /// The next message in `src`, if it has arrived whole. `at_end`: no more bytes
    /// will come, so a message cut off is an error.
    fn decode_at(&mut self, src: &mut BytesMut, at_end: bool) -> io::Result<Option<BytesMut>> {
        if !self.decoder.in_message() {
            let start = self.decoder.start(src, at_end)?;
            src.advance(start.consumed());
            match start {
                Start::Message(_) => {}
                Start::Refused(e) => return Err(e),
                Start::More | Start::End => return Ok(None),
            }
        }
        let left = self.decoder.left();
        if src.len() >= left {
            self.decoder.delivered(left);
            return Ok(Some(src.split_to(left)));
        }
        if at_end {
            return Err(self.decoder.cut_off(src.len()));
        }
        // Room for more of this message as it arrives (`grown_len`), so a header
        // alone reserves one step, not the message.
        src.reserve(grown_len(src.len(), left) - src.len());
        Ok(None)
    }
}

impl Decoder for MessageCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        self.decode_at(src, false)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        self.decode_at(src, true)
    }
}

impl Encoder<&[u8]> for MessageCodec {
    type Error = io::Error;

    fn encode(&mut self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        self.encode_slice(message, dst)
    }
}

impl Encoder<Bytes> for MessageCodec {
    type Error = io::Error;

    fn encode(&mut self, message: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_slice(&message, dst)
    }
}

impl Encoder<Vec<u8>> for MessageCodec {
    type Error = io::Error;

    fn encode(&mut self, message: Vec<u8>, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_slice(&message, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn oversized_is_refused_before_reserving() {
        let mut codec = MessageCodec::with_max_message_size(16);
        let mut src = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let cap_before = src.capacity();
        let e = codec.decode(&mut src).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
        assert_eq!(src.capacity(), cap_before, "nothing reserved");
        let e = codec.decode(&mut src).unwrap_err();
        assert_eq!(
            ErrorKind::of(&e),
            ErrorKind::MessageTooLarge,
            "stays refused"
        );
    }

    #[test]
    fn a_header_alone_reserves_one_step_and_room_follows_the_bytes() {
        let cap = 1 << 30;
        let mut codec = MessageCodec::with_max_message_size(cap);
        let mut src = BytesMut::from(&cap.to_le_bytes()[..]);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(
            src.capacity() <= 2 * crate::frame::GROWTH_STEP,
            "{} bytes reserved for a header alone",
            src.capacity()
        );
        // Half a megabyte more: room for about as much again, not the gigabyte.
        src.extend_from_slice(&vec![7u8; 512 * 1024]);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() <= 4 * src.len(), "{}", src.capacity());
    }

    #[test]
    fn zero_length_and_partial_frames() {
        let mut codec = MessageCodec::new();
        let mut src = BytesMut::new();
        codec.encode(&b""[..], &mut src).unwrap();
        codec.encode(&b"abc"[..], &mut src).unwrap();
        assert_eq!(codec.decode(&mut src).unwrap().as_deref(), Some(&b""[..]));
        src.truncate(src.len() - 1);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        let e = codec.decode_eof(&mut src).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected);
        assert!(e.to_string().contains("(2 of 3 bytes)"), "{e}");
    }

    #[test]
    fn a_client_codec_recognises_the_refusal_notice() {
        let mut client = MessageCodec::with_decoder(crate::frame::Decoder::for_client(
            DEFAULT_MAX_MESSAGE,
            || crate::frame::refused(Some((65534, 65534))),
        ));
        let mut src = BytesMut::from(&crate::REFUSAL_NOTICE[..10]);
        assert_eq!(client.decode(&mut src).unwrap(), None, "waits for the rest");
        src.extend_from_slice(&crate::REFUSAL_NOTICE[10..]);
        let e = client.decode(&mut src).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied);
        assert!(
            e.to_string().contains("refused this client's credentials"),
            "{e}"
        );
        let e = client.decode(&mut src).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "stays refused");
        // A hand-made codec (a server's, say) reads a length over the cap.
        let mut src = BytesMut::from(crate::REFUSAL_NOTICE);
        let e = MessageCodec::new().decode(&mut src).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn encode_refuses_oversized() {
        let mut codec = MessageCodec::with_max_message_size(2);
        let mut dst = BytesMut::new();
        let e = codec.encode(&b"abc"[..], &mut dst).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
        assert!(dst.is_empty());
    }
}
