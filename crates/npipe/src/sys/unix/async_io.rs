//! The Unix sockets under the async API: a connected socket on tokio that is
//! registered for **readability only** ([`AsyncSocket`], the I/O under
//! `AsyncStream`), and a listening one whose `accept` returns plain sockets.
//!
//! Why not `tokio::net::UnixStream`: it registers every socket for readable *and*
//! writable events, edge-triggered. Linux signals "writable" on a Unix socket every
//! time the peer reads data we sent (the freed send-buffer memory wakes the
//! writer's wait queue), so in a request/reply exchange each reply read by the
//! client wakes the server's runtime once more for nothing, and vice versa: an
//! extra `epoll_wait` return and, on a shared CPU, an extra context switch per
//! message. That wake-up was a third of tokio's round-trip overhead over blocking
//! sockets (npipe's benches, `rtt-64B`).
//!
//! Here writes go straight to the non-blocking socket. Only when one would block
//! (the send buffer is full) is writability needed; then a duplicate of the
//! socket is registered for writable events, once, and used from then on.
//!
//! The API is the subset of `tokio::net::UnixStream` that `AsyncStream` uses.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::stream::SendBuffer;
use crate::peer::PeerCredentials;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

/// A connected, non-blocking Unix stream socket driven by tokio.
#[derive(Debug)]
pub(crate) struct AsyncSocket {
    inner: Arc<Inner>,
    /// Used by the writing side only.
    send_buffer: SendBuffer,
    /// A write half of its own ([`shut_write_on_drop`](Self::shut_write_on_drop)):
    /// dropping it shuts the write direction down.
    write_half: bool,
}

#[derive(Debug)]
struct Inner {
    /// The socket, registered for readable events only.
    read: AsyncFd<std::os::unix::net::UnixStream>,
    /// A duplicate registered for writable events, made the first time a write
    /// would block.
    write: OnceLock<AsyncFd<OwnedFd>>,
    /// The peer's credentials once read (fixed at connect time).
    peer: OnceLock<PeerCredentials>,
    /// Set until the first read of a server stream: that read is tried at once.
    /// A client sends its request as soon as it is connected, so by the time
    /// the server reads, the request has usually arrived; waiting for the
    /// reactor to report it first would cost a trip through the runtime per
    /// connection (tokio's own sockets read first too).
    read_first: AtomicBool,
}

impl AsyncSocket {
    /// Registers `sock` (already non-blocking) with the current runtime. `peer`:
    /// the peer's credentials if already read (they cannot change).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    pub(crate) fn from_std(
        sock: std::os::unix::net::UnixStream,
        peer: Option<PeerCredentials>,
        send_buffer: SendBuffer,
        is_server: bool,
    ) -> io::Result<AsyncSocket> {
        Ok(AsyncSocket {
            inner: Arc::new(Inner {
                read: register(sock, Interest::READABLE)?,
                write: OnceLock::new(),
                peer: peer.map(OnceLock::from).unwrap_or_default(),
                read_first: AtomicBool::new(is_server),
            }),
            send_buffer,
            write_half: false,
        })
    }

    /// Who is at the other end (`SO_PEERCRED`, read once).
    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        super::cached_peer_credentials(&self.inner.peer, self)
    }

    /// One read that does not wait, appended to `buf`'s spare capacity;
    /// `WouldBlock` when nothing has arrived.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(64);
        }
        let spare = buf.spare_capacity_mut();
        let n = recv_uninit(self.as_raw_fd(), spare)?;
        // SAFETY: `recv_uninit` initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// A second handle on the socket, for reading: a stream's read half, while
    /// this one writes (and alone applies the send buffer size).
    pub(crate) fn reader(&self) -> AsyncSocket {
        AsyncSocket {
            inner: Arc::clone(&self.inner),
            send_buffer: SendBuffer::unchanged(),
            write_half: false,
        }
    }

    /// Makes this handle a write half of its own: dropping it shuts the write
    /// direction down (the peer's reads end), as tokio's `OwnedWriteHalf` does.
    pub(crate) fn shut_write_on_drop(&mut self) {
        self.write_half = true;
    }

    fn poll_read_priv(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            // The first read of a server stream goes ahead without waiting for
            // the reactor (see `Inner::read_first`); every other read waits for
            // readiness first.
            let mut guard = if self.inner.read_first.swap(false, Ordering::Relaxed) {
                None
            } else {
                Some(ready!(self.inner.read.poll_read_ready(cx))?)
            };
            // SAFETY: `recv_uninit` only writes to the slice, never de-initialises it.
            let unfilled = unsafe { buf.unfilled_mut() };
            let len = unfilled.len();
            match recv_uninit(self.as_raw_fd(), unfilled) {
                Ok(n) => {
                    // SAFETY: `recv_uninit` initialised the first `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    // A short read emptied the receive queue: wait for the next
                    // event rather than spend a system call to learn it (tokio's
                    // own sockets do the same).
                    if let Some(guard) = guard.as_mut().filter(|_| n > 0 && n < len) {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(guard) = guard.as_mut() {
                        guard.clear_ready();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn try_send(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        loop {
            let sent = match bufs {
                [one] => socket::send(self.as_raw_fd(), one, SEND_FLAGS),
                _ => socket::sendmsg::<()>(self.as_raw_fd(), bufs, &[], SEND_FLAGS, None),
            };
            match sent {
                Err(Errno::EINTR) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// The registration for writable events, made on first use.
    fn writable(&self) -> io::Result<&AsyncFd<OwnedFd>> {
        if let Some(w) = self.inner.write.get() {
            return Ok(w);
        }
        let dup = self.as_fd().try_clone_to_owned()?;
        let registered = register(dup, Interest::WRITABLE)?;
        // Two halves racing here: the loser's registration is dropped.
        let _ = self.inner.write.set(registered);
        Ok(self.inner.write.get().expect("set above"))
    }

    fn poll_write_priv(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        self.send_buffer.before_send(self.inner.read.get_ref(), len);
        loop {
            match self.try_send(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
            let mut guard = ready!(self.writable()?.poll_write_ready(cx))?;
            match guard.try_io(|_| self.try_send(bufs)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Half-closes or closes the connection (`shutdown`).
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.read.get_ref().shutdown(how)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self.shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

/// A listening socket on tokio whose `accept` hands back plain non-blocking std
/// sockets. `tokio::net::UnixListener::accept` registers every connection with the
/// reactor, and `into_std` deregisters it again before npipe registers it its own
/// way: two `epoll_ctl` calls per connection for nothing.
#[derive(Debug)]
pub(crate) struct ListeningSocket {
    io: AsyncFd<std::os::unix::net::UnixListener>,
}

impl ListeningSocket {
    /// Registers `listener` (already non-blocking) with the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    pub(crate) fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        Ok(ListeningSocket {
            io: register(listener, Interest::READABLE)?,
        })
    }

    /// Waits for a connection and takes it, as a non-blocking socket or (for a
    /// thread that will serve it) a blocking one.
    ///
    /// Cancel safe: a connection is taken from the kernel only by the final,
    /// synchronous step.
    pub(crate) async fn accept(
        &self,
        nonblocking: bool,
    ) -> io::Result<std::os::unix::net::UnixStream> {
        loop {
            let mut guard = self.io.readable().await?;
            if let Ok(result) = guard.try_io(|l| accept_now(l.get_ref(), nonblocking)) {
                return result;
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn accept_now(
    listener: &std::os::unix::net::UnixListener,
    nonblocking: bool,
) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
    let mut flags = socket::SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= socket::SockFlag::SOCK_NONBLOCK;
    }
    let fd = socket::accept4(listener.as_raw_fd(), flags)?;
    // SAFETY: `accept4` just returned this descriptor, open and owned by nobody else.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) })
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn accept_now(
    listener: &std::os::unix::net::UnixListener,
    nonblocking: bool,
) -> io::Result<std::os::unix::net::UnixStream> {
    let (conn, _) = listener.accept()?;
    conn.set_nonblocking(nonblocking)?;
    Ok(conn)
}

/// `AsyncFd::with_interest`, deprecated in tokio 1.54 for types whose `as_raw_fd`
/// could change or close under it; the types used here (a std socket, an `OwnedFd`)
/// own their descriptor for life, which is what its unsafe successor
/// `register_with_interest` asks, and that successor does not exist in the tokio
/// versions npipe supports (>= 1.38).
#[allow(deprecated)]
fn register<T: AsRawFd>(io: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    AsyncFd::with_interest(io, interest)
}

/// `recv` into possibly uninitialised memory; returns how many bytes it wrote.
fn recv_uninit(fd: RawFd, out: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    loop {
        // SAFETY: `out` is valid for writes of `out.len()` bytes for the duration of
        // the call, and `recv` writes only bytes, never reads them.
        let n = unsafe { nix::libc::recv(fd, out.as_mut_ptr().cast(), out.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl AsFd for AsyncSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.read.get_ref().as_fd()
    }
}

impl AsRawFd for AsyncSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.read.as_raw_fd()
    }
}

impl AsyncRead for AsyncSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_read_priv(cx, buf)
    }
}

impl AsyncWrite for AsyncSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_priv(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_priv(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

impl Drop for AsyncSocket {
    fn drop(&mut self) {
        if self.write_half {
            let _ = self.shutdown_write();
        }
    }
}
