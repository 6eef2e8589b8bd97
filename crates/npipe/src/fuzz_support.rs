//! **Not public API.** Internals made reachable for the fuzz targets in `fuzz/`, and
//! only when the crate is built with `--cfg fuzzing` (as `cargo fuzz` does). Nothing
//! here is covered by semver; ordinary builds do not contain this module.

use std::io::{self, Read};

use crate::frame;
use crate::frame::blocking::FrameReader;
pub use crate::frame::Received;

/// The frame decoder of the blocking API (`crate::frame::FrameReader`), as is.
#[derive(Debug)]
pub struct FrameDecoder(FrameReader);

impl FrameDecoder {
    /// A decoder refusing announced lengths over `max`.
    pub fn new(max: u32) -> FrameDecoder {
        FrameDecoder(FrameReader::new(max))
    }

    /// `Stream::recv` in message mode.
    pub fn recv<R: Read>(&mut self, src: &mut R, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.0.recv(src, out)
    }

    /// `Stream::recv_into` in message mode.
    pub fn recv_into<R: Read>(
        &mut self,
        src: &mut R,
        out: &mut [u8],
    ) -> io::Result<Option<Received>> {
        self.0.recv_into(src, out)
    }

    /// `Read::read` on a message-mode stream (payloads concatenated).
    pub fn read_bytes<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<usize> {
        self.0.read_bytes(src, out)
    }

    /// `Stream::peek` in message mode.
    pub fn peek<R: Read>(&mut self, src: &mut R, out: &mut [u8]) -> io::Result<usize> {
        self.0.peek(src, out)
    }
}

/// The header for a `len`-byte message under the cap `max`.
pub fn encode_header(len: usize, max: u32) -> io::Result<[u8; 4]> {
    frame::encode_header(len, max)
}
