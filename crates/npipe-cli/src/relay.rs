//! Copying between stdin/stdout and a byte pipe in both directions, like `nc`
//! (`npipe send`, `npipe listen`).
//!
//! stdin is copied to the pipe by a thread; at stdin's EOF the pipe's write side is
//! closed (half-close), so the peer reads EOF while its answer can still come back.
//! The pipe is copied to stdout until the peer closes its write side. The relay then
//! ends when stdin is done too, or at once if the peer closed the whole connection.

use std::io::{self, Read, Write};

/// Relays until both directions are done.
pub(crate) fn relay(stream: npipe::Stream) -> anyhow::Result<()> {
    imp::relay(stream)
}

#[cfg_attr(not(unix), allow(dead_code))]
/// Whether a write error means "the peer is gone" rather than a failure.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

#[cfg_attr(not(unix), allow(dead_code))]
/// Copies `from` to `to` until EOF, flushing every chunk so interactive use works.
fn pump(mut from: impl Read, mut to: impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
}

#[cfg(unix)]
mod imp {
    use std::io;
    use std::net::Shutdown;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use anyhow::{anyhow, Context};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    use super::{peer_gone, pump};
    use crate::exit::stdout_error;

    pub(super) fn relay(stream: npipe::Stream) -> anyhow::Result<()> {
        let sock: UnixStream = stream.into_std().map_err(|_| {
            anyhow!("the pipe is in message mode; send and listen need a byte pipe")
        })?;
        let mut writer = sock.try_clone().context("duplicating the socket")?;
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let result = pump(io::stdin().lock(), &mut writer);
            let _ = writer.shutdown(Shutdown::Write);
            let _ = done_tx.send(result);
        });

        let mut reader = &sock;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = io::stdout().lock();
        loop {
            let n = match io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if peer_gone(&e) => break,
                Err(e) => return Err(e).context("reading from the pipe"),
            };
            io::Write::write_all(&mut out, &buf[..n]).map_err(stdout_error)?;
            io::Write::flush(&mut out).map_err(stdout_error)?;
        }

        // The peer will send no more. Wait for stdin to finish, unless the peer closed
        // the whole connection (then nothing more can be delivered).
        loop {
            match done_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Err(e)) if !peer_gone(&e) => return Err(e).context("copying stdin to the pipe"),
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) if hung_up(&sock) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Whether the peer closed both directions (`POLLHUP`), not just its write side.
    fn hung_up(sock: &UnixStream) -> bool {
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            Err(_) => true,
        }
    }
}

#[cfg(not(unix))]
mod imp {
    /// Windows: npipe's `Stream` cannot be split between two threads yet, and
    /// Windows pipes cannot half-close.
    pub(super) fn relay(_stream: npipe::Stream) -> anyhow::Result<()> {
        anyhow::bail!("send and listen are not available on this platform yet")
    }
}
