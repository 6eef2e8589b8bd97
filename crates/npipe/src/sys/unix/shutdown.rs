//! Reaching a connection from another thread than the one using it: to shut it
//! down, or to see whether its peer has gone.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A second handle on a connected socket, for another thread than the one that
/// reads and writes it: [`shutdown`](Self::shutdown) wakes that thread from a
/// blocking call. It owns a duplicate of the socket's descriptor, so it is valid
/// for as long as it is kept, whenever the stream itself is closed (the socket
/// is closed when both are).
#[derive(Debug)]
pub(crate) struct ShutdownHandle {
    sock: UnixStream,
}

impl ShutdownHandle {
    /// A handle on `sock` (`fcntl(F_DUPFD_CLOEXEC)`).
    ///
    /// # Errors
    ///
    /// The process has no descriptor left (`EMFILE`).
    pub(crate) fn of(sock: &impl AsFd) -> io::Result<ShutdownHandle> {
        Ok(ShutdownHandle {
            sock: UnixStream::from(sock.as_fd().try_clone_to_owned()?),
        })
    }

    /// `shutdown(2)` of the socket, for every handle on it: a thread blocked reading
    /// it returns (end of stream), and with [`Shutdown::Both`] the peer sees the
    /// connection end.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how)
    }

    /// Whether the peer has closed its end entirely (`POLLHUP`), so that nothing
    /// written could reach it; a half-close is not a hang-up. Never blocks.
    pub(crate) fn hung_up(&self) -> bool {
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
            && fds[0]
                .revents()
                .is_some_and(|revents| revents.contains(PollFlags::POLLHUP))
    }
}
