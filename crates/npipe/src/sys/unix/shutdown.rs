//! Reaching a connection from another thread than the one using it: to shut it
//! down, or to see whether its peer has gone.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::stream::{Socket, Stream};

/// A stream that other threads reach through its [`ShutdownHandle`]s while one
/// thread uses it: the managed server's dedicated connections, whose thread
/// shutdown must wake from a blocking read. It lends its user what a dedicated
/// connection needs, never the stream itself, so that the socket the handles
/// borrow stays its own; when it drops, it takes the socket back from them
/// before closing it.
#[derive(Debug)]
pub(crate) struct Reachable {
    lent: Arc<Lent>,
    stream: Stream,
}

/// The descriptor of a [`Reachable`]'s socket while the stream lives.
#[derive(Debug)]
struct Lent(Mutex<Option<RawFd>>);

impl Lent {
    fn lock(&self) -> MutexGuard<'_, Option<RawFd>> {
        // A plain value behind the lock: a panic elsewhere cannot break it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reachable {
    pub(crate) fn new(stream: Stream) -> Reachable {
        Reachable {
            lent: Arc::new(Lent(Mutex::new(Some(stream.as_raw_fd())))),
            stream,
        }
    }

    /// A handle on the socket, for other threads.
    pub(crate) fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            lent: Arc::clone(&self.lent),
        }
    }

    /// [`Stream::recv_reading`].
    pub(crate) fn recv_reading(
        &mut self,
        out: &mut Vec<u8>,
        read: impl FnMut(Socket<'_>, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Option<usize>> {
        self.stream.recv_reading(out, read)
    }

    /// [`Stream::has_read_ahead`].
    pub(crate) fn has_read_ahead(&self) -> bool {
        self.stream.has_read_ahead()
    }

    /// [`Stream::set_deadline`].
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.stream.set_deadline(deadline);
    }

    /// [`Stream::send`].
    pub(crate) fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.stream.send(message)
    }
}

impl Drop for Reachable {
    fn drop(&mut self) {
        // Before `stream` closes the socket: no handle uses it after this.
        *self.lent.lock() = None;
    }
}

/// A handle on a [`Reachable`] stream's socket, for another thread than the one
/// that reads and writes it: [`shutdown`](Self::shutdown) wakes that thread from
/// a blocking call. Once the stream is gone, it does nothing.
#[derive(Debug)]
pub(crate) struct ShutdownHandle {
    lent: Arc<Lent>,
}

impl ShutdownHandle {
    /// Calls `f` with the socket, if the stream still lives (and holds it open
    /// until `f` returns).
    fn with_socket<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        let lent = self.lent.lock();
        // SAFETY: the descriptor is in `lent` only while its `Reachable` owns the
        // open socket: `Reachable::drop` takes it out, under this lock, before the
        // socket is closed, and nothing else can take the stream out of it. So the
        // socket stays open while the lock is held, which outlasts the borrow.
        lent.map(|fd| f(unsafe { BorrowedFd::borrow_raw(fd) }))
    }

    /// `shutdown(2)` of the socket: a thread blocked reading it returns (end of
    /// stream), and with [`Shutdown::Both`] the peer sees the connection end.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        use nix::sys::socket::Shutdown as How;
        let how = match how {
            Shutdown::Read => How::Read,
            Shutdown::Write => How::Write,
            Shutdown::Both => How::Both,
        };
        // A socket whose peer has gone already may refuse: nothing to wake then.
        let _ = self.with_socket(|sock| nix::sys::socket::shutdown(sock.as_raw_fd(), how));
    }

    /// Whether the peer has closed its end entirely (`POLLHUP`), so that nothing
    /// written could reach it; a half-close is not a hang-up. Never blocks.
    pub(crate) fn hung_up(&self) -> bool {
        self.with_socket(|sock| {
            let mut fds = [PollFd::new(sock, PollFlags::empty())];
            matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
                && fds[0]
                    .revents()
                    .is_some_and(|revents| revents.contains(PollFlags::POLLHUP))
        })
        .unwrap_or(false)
    }
}
