//! The two small traits every benchmarked transport implements, plus shared
//! message-framing helpers.
//!
//! Wire format used by every transport in this harness ("message mode"):
//! a 4-byte little-endian payload length followed by the payload, over a
//! byte stream. A zero-length message is legal (the throughput workload uses
//! it as an end-of-batch marker).
//!
//! To add a transport, implement [`BlockingTransport`] or [`AsyncTransport`]
//! and add one line to [`crate::registry::entries`].

use std::future::Future;
use std::io::{self, BufRead, IoSlice, Write};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One established, message-framed, bidirectional connection (blocking API).
pub trait BlockingConn: Send + 'static {
    /// Send one whole message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receive one whole message into `buf` (cleared/resized to the message
    /// length). Returns `Ok(false)` on a clean end-of-stream before a header.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool>;
}

/// A blocking transport: how to listen, accept and connect.
///
/// `addr` is a harness-generated unique path under /tmp (e.g.
/// `/tmp/npipe-bench-1234-7.sock`); the harness deletes it before the server
/// starts and after the run. A transport with its own namespace (e.g. Windows
/// pipe names) may derive its name from it.
pub trait BlockingTransport: 'static {
    /// Shared by all accepting threads of a pool server, hence `Sync`
    /// (wrap it in a `Mutex` if the real listener is not).
    type Listener: Send + Sync + 'static;
    type Conn: BlockingConn;
    fn bind(addr: &str) -> io::Result<Self::Listener>;
    fn accept(listener: &Self::Listener) -> io::Result<Self::Conn>;
    fn connect(addr: &str) -> io::Result<Self::Conn>;
}

/// One established, message-framed connection (async API, Tokio runtime).
pub trait AsyncConn: Send + 'static {
    fn send(&mut self, msg: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Same contract as [`BlockingConn::recv`].
    fn recv(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = io::Result<bool>> + Send;
}

/// An async transport. All methods are called from inside a Tokio runtime
/// (current-thread or multi-thread, chosen by the registry entry).
pub trait AsyncTransport: 'static {
    type Listener: Send + 'static;
    type Conn: AsyncConn;
    fn bind(addr: &str) -> io::Result<Self::Listener>;
    fn accept(listener: &mut Self::Listener)
        -> impl Future<Output = io::Result<Self::Conn>> + Send;
    fn connect(addr: &str) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

fn too_long() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "message longer than u32::MAX")
}

/// Write header + payload with vectored writes (one `writev` in the common
/// case), handling partial writes.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, msg: &[u8]) -> io::Result<()> {
    let hdr = u32::try_from(msg.len())
        .map_err(|_| too_long())?
        .to_le_bytes();
    let mut slices = [IoSlice::new(&hdr), IoSlice::new(msg)];
    let mut bufs: &mut [IoSlice<'_>] = &mut slices;
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read one frame from a buffered reader: the header normally comes out of
/// the buffer filled by the previous read, so no separate syscall is spent on
/// it; large payloads bypass the buffer.
pub fn read_frame<R: BufRead + ?Sized>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    if r.fill_buf()?.is_empty() {
        return Ok(false);
    }
    let mut hdr = [0u8; 4];
    r.read_exact(&mut hdr)?;
    buf.resize(u32::from_le_bytes(hdr) as usize, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Async counterpart of [`write_frame`].
pub async fn write_frame_async<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    msg: &[u8],
) -> io::Result<()> {
    let hdr = u32::try_from(msg.len())
        .map_err(|_| too_long())?
        .to_le_bytes();
    let mut slices = [IoSlice::new(&hdr), IoSlice::new(msg)];
    let mut bufs: &mut [IoSlice<'_>] = &mut slices;
    while !bufs.is_empty() {
        match w.write_vectored(bufs).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Async counterpart of [`read_frame`].
pub async fn read_frame_async<R: AsyncBufRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    if r.fill_buf().await?.is_empty() {
        return Ok(false);
    }
    let mut hdr = [0u8; 4];
    r.read_exact(&mut hdr).await?;
    buf.resize(u32::from_le_bytes(hdr) as usize, 0);
    r.read_exact(buf).await?;
    Ok(true)
}

/// Read buffer size used by the framed wrappers below.
pub const READ_BUF: usize = 64 * 1024;

/// Generic blocking framed connection over any byte stream `S`. Reads go
/// through a `BufReader`; writes go straight to `S` (the reader never buffers
/// writes, so this is safe).
#[derive(Debug)]
pub struct Framed<S: io::Read + Write> {
    inner: io::BufReader<S>,
}

impl<S: io::Read + Write> Framed<S> {
    pub fn new(stream: S) -> Self {
        Self {
            inner: io::BufReader::with_capacity(READ_BUF, stream),
        }
    }
}

impl<S: io::Read + Write + Send + 'static> BlockingConn for Framed<S> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        write_frame(self.inner.get_mut(), msg)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        read_frame(&mut self.inner, buf)
    }
}

/// Messages up to this size are copied next to their header and written
/// with one call when the stream does not support vectored writes.
pub const COALESCE_MAX: usize = 4 * 1024;

/// Generic async framed connection over any Tokio byte stream `S`.
///
/// If `S` reports `!is_write_vectored()` (e.g. `interprocess`'s Tokio
/// local-socket enum, whose `write_vectored` falls back to writing the first
/// slice only), small messages are coalesced into one buffer so that header
/// and payload still go out in one syscall.
#[derive(Debug)]
pub struct AsyncFramed<S> {
    inner: tokio::io::BufReader<S>,
    scratch: Vec<u8>,
}

impl<S: tokio::io::AsyncRead + AsyncWrite + Unpin> AsyncFramed<S> {
    pub fn new(stream: S) -> Self {
        Self {
            inner: tokio::io::BufReader::with_capacity(READ_BUF, stream),
            scratch: Vec::new(),
        }
    }
}

impl<S: tokio::io::AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncConn for AsyncFramed<S> {
    async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let w = self.inner.get_mut();
        if msg.len() <= COALESCE_MAX && !w.is_write_vectored() {
            self.scratch.clear();
            self.scratch
                .extend_from_slice(&(msg.len() as u32).to_le_bytes());
            self.scratch.extend_from_slice(msg);
            return w.write_all(&self.scratch).await;
        }
        write_frame_async(w, msg).await
    }
    async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        read_frame_async(&mut self.inner, buf).await
    }
}
