//! The frame decoders against a reference model of the wire contract (4-byte LE
//! length + payload, lengths over the cap refused), fed in arbitrary chunks with
//! interrupted and timed-out reads in between:
//!
//! - the blocking decoder through `recv`, `recv_into` (small buffers, `more_data`),
//!   `read_bytes` and `peek`;
//! - the public tokio codec `npipe::tokio::MessageCodec` (`decode`, `decode_eof`).
//!
//! Input: 3 configuration bytes (cap, chunking, buffer size), then the wire bytes.

#![no_main]

use std::io::{self, Read};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use npipe::__fuzz::FrameDecoder;
use npipe::ErrorKind;
use tokio_util::codec::Decoder;

/// Caps small enough that an accepted length never makes the fuzzer run out of memory.
const CAPS: [u32; 8] = [0, 1, 3, 4, 16, 255, 4096, 1 << 20];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Clean,
    HeaderCut(usize),
    PayloadCut { got: usize, total: usize },
    TooLarge,
}

/// The wire contract, written as plainly as possible.
fn model(wire: &[u8], max: u32) -> (Vec<&[u8]>, End, &[u8]) {
    let mut messages = Vec::new();
    let mut rest = wire;
    loop {
        if rest.is_empty() {
            return (messages, End::Clean, &[]);
        }
        if rest.len() < 4 {
            return (messages, End::HeaderCut(rest.len()), &[]);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len > max {
            return (messages, End::TooLarge, &[]);
        }
        let len = len as usize;
        let body = &rest[4..];
        if body.len() < len {
            let partial = body;
            return (
                messages,
                End::PayloadCut {
                    got: body.len(),
                    total: len,
                },
                partial,
            );
        }
        messages.push(&body[..len]);
        rest = &body[len..];
    }
}

/// A socket-like source: hands out chunks of varying size, and now and then fails a
/// read with `Interrupted` (retried inside npipe) or `WouldBlock` (a read timeout,
/// reported to the caller, who tries again).
struct Source<'a> {
    data: &'a [u8],
    chunking: u8,
    reads: usize,
}

impl Read for Source<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        let stall = (self.chunking >> 4) as usize; // 0: never
        if stall >= 2 && self.reads % stall == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.chunking & 0x08 != 0 && self.reads % 3 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let chunk = match self.chunking & 0x07 {
            0 => usize::MAX,
            c => (c as usize) * (1 + self.reads % 5),
        };
        let n = chunk.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    ErrorKind::of(e) == ErrorKind::Timeout
}

fn check_end(e: &io::Error, end: End, how: &str) {
    let kind = ErrorKind::of(e);
    match end {
        End::Clean => panic!("{how}: error {e} where the model ends cleanly"),
        End::HeaderCut(_) | End::PayloadCut { .. } => {
            assert_eq!(kind, ErrorKind::Disconnected, "{how}: {e}")
        }
        End::TooLarge => assert_eq!(kind, ErrorKind::MessageTooLarge, "{how}: {e}"),
    }
}

fn via_recv(wire: &[u8], max: u32, chunking: u8, messages: &[&[u8]], end: End) {
    let mut src = Source {
        data: wire,
        chunking,
        reads: 0,
    };
    let mut dec = FrameDecoder::new(max);
    let mut got: Vec<Vec<u8>> = Vec::new();
    // What timed-out calls had delivered of the message in progress.
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    loop {
        let capacity = out.capacity();
        match dec.recv(&mut src, &mut out) {
            Ok(Some(n)) => {
                assert_eq!(n, out.len());
                pending.extend_from_slice(&out);
                got.push(std::mem::take(&mut pending));
            }
            Ok(None) => {
                assert_eq!(
                    end,
                    End::Clean,
                    "recv: clean end where the model has {end:?}"
                );
                assert!(pending.is_empty());
                break;
            }
            Err(e) if is_timeout(&e) => pending.extend_from_slice(&out),
            Err(e) => {
                check_end(&e, end, "recv");
                match end {
                    End::HeaderCut(n) => {
                        assert!(e.to_string().contains(&format!("({n} of 4 bytes)")), "{e}")
                    }
                    End::TooLarge => {
                        assert!(
                            out.capacity() <= capacity,
                            "allocated for a refused message"
                        );
                        let again = dec.recv(&mut src, &mut out).unwrap_err();
                        assert_eq!(ErrorKind::of(&again), ErrorKind::MessageTooLarge);
                    }
                    _ => {}
                }
                break;
            }
        }
    }
    assert_eq!(got, messages, "recv");
}

fn via_recv_into(wire: &[u8], max: u32, chunking: u8, size: usize, messages: &[&[u8]], end: End) {
    let mut src = Source {
        data: wire,
        chunking,
        reads: 0,
    };
    let mut dec = FrameDecoder::new(max);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    let mut buf = vec![0u8; size];
    let mut first = true;
    loop {
        // An empty buffer takes nothing and loses nothing.
        if first {
            first = false;
            match dec.recv_into(&mut src, &mut []) {
                Ok(Some(r)) => {
                    assert_eq!(r.len(), 0);
                    if r.is_complete() {
                        got.push(Vec::new());
                        continue;
                    }
                }
                Ok(None) => {
                    assert_eq!(end, End::Clean);
                    break;
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => {
                    check_end(&e, end, "recv_into(empty)");
                    break;
                }
            }
        }
        match dec.recv_into(&mut src, &mut buf) {
            Ok(Some(r)) => {
                assert!(r.len() <= buf.len());
                current.extend_from_slice(&buf[..r.len()]);
                if r.is_complete() {
                    got.push(std::mem::take(&mut current));
                } else {
                    assert!(r.more_data());
                }
            }
            Ok(None) => {
                assert_eq!(end, End::Clean, "recv_into: clean end, model {end:?}");
                assert!(current.is_empty(), "clean end inside a message");
                break;
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                check_end(&e, end, "recv_into");
                break;
            }
        }
    }
    assert_eq!(got, messages, "recv_into with a {size}-byte buffer");
}

fn via_read_bytes(
    wire: &[u8],
    max: u32,
    chunking: u8,
    size: usize,
    messages: &[&[u8]],
    end: End,
    partial: &[u8],
) {
    let mut src = Source {
        data: wire,
        chunking,
        reads: 0,
    };
    let mut dec = FrameDecoder::new(max);
    let mut all = Vec::new();
    let mut buf = vec![0u8; size];
    loop {
        match dec.read_bytes(&mut src, &mut buf) {
            Ok(0) => {
                assert_eq!(end, End::Clean, "read: EOF where the model has {end:?}");
                break;
            }
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                check_end(&e, end, "read");
                break;
            }
        }
    }
    let mut expected = messages.concat();
    expected.extend_from_slice(partial);
    assert_eq!(all, expected, "read_bytes");
}

fn via_peek(wire: &[u8], max: u32, chunking: u8, messages: &[&[u8]]) {
    let mut src = Source {
        data: wire,
        chunking: chunking & 0x0F, // no timeouts: peek is non-blocking by nature
        reads: 0,
    };
    let mut dec = FrameDecoder::new(max);
    let mut buf = [0u8; 64];
    if let Ok(n) = dec.peek(&mut src, &mut buf) {
        if let Some(first) = messages.first() {
            assert!(first.starts_with(&buf[..n]), "peek shows the first message");
        }
    }
    // Peeking consumed nothing.
    let mut out = Vec::new();
    for m in messages {
        match dec.recv(&mut src, &mut out) {
            Ok(Some(_)) => assert_eq!(&out[..], *m, "recv after peek"),
            other => panic!("recv after peek: {other:?}"),
        }
    }
}

fn via_codec(wire: &[u8], max: u32, chunking: u8, messages: &[&[u8]], end: End) {
    let mut codec = npipe::tokio::MessageCodec::with_max_message_size(max);
    let mut buf = BytesMut::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let step = match chunking & 0x07 {
        0 => wire.len().max(1),
        c => c as usize,
    };
    let mut failed = None;
    'feed: for chunk in wire.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => got.push(m.to_vec()),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break 'feed;
                }
            }
        }
    }
    if failed.is_none() {
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(m)) => got.push(m.to_vec()),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
    }
    match failed {
        None => assert_eq!(end, End::Clean, "codec: clean end, model {end:?}"),
        Some(e) => {
            check_end(&e, end, "codec");
            if let End::PayloadCut { got, total } = end {
                assert!(
                    e.to_string().contains(&format!("({got} of {total} bytes)")),
                    "{e}"
                );
            }
        }
    }
    assert_eq!(got, messages, "codec");
}

fuzz_target!(|data: &[u8]| {
    let [cap, chunking, size, wire @ ..] = data else {
        return;
    };
    let max = CAPS[(*cap as usize) % CAPS.len()];
    let size = 1 + (*size as usize % 32);
    let (messages, end, partial) = model(wire, max);
    via_recv(wire, max, *chunking, &messages, end);
    via_recv_into(wire, max, *chunking, size, &messages, end);
    via_read_bytes(wire, max, *chunking, size, &messages, end, partial);
    via_peek(wire, max, *chunking, &messages);
    via_codec(wire, max, *chunking, &messages, end);
});
