//! Copying bytes both ways between a byte pipe and stdin/stdout, like `nc`
//! (`npipe send`, `npipe listen`, `npipe bridge`), or between two sockets
//! (`npipe forward`).
//!
//! Each direction is copied until its source ends, and then the destination's
//! write side is closed (half-close), so the peer reads the end while its answer
//! can still come back: stdin's EOF shuts the pipe's write side down; the pipe's
//! EOF closes stdout. A direction also stops when its destination hangs up (a
//! socket whose peer closed it, a stdout whose reader is gone: the ssh session
//! of `npipe bridge` ended), since nothing written there can arrive. The relay
//! ends when both directions are done, or at once when the pipe's peer closed
//! the whole connection.

use std::io;

/// Relays between `stream` (a byte pipe) and stdin/stdout until both directions
/// are done.
pub(crate) fn relay(stream: npipe::Stream) -> anyhow::Result<()> {
    imp::relay(stream)
}

#[cfg(unix)]
pub(crate) use imp::splice;

#[cfg_attr(not(unix), allow(dead_code))]
/// Whether a write error means "the peer is gone" rather than a failure.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

#[cfg_attr(not(unix), allow(dead_code))]
/// How one direction of a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source ended (EOF).
    Done,
    /// The destination hung up: nothing more can be delivered.
    Gone,
}

#[cfg(unix)]
mod imp {
    use std::fs::File;
    use std::io::{self, Read, Write};
    use std::net::Shutdown;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::{peer_gone, End};
    use crate::exit::stdout_error;
    use crate::sys::{self, Watch};
    use anyhow::{anyhow, Context};

    pub(super) fn relay(stream: npipe::Stream) -> anyhow::Result<()> {
        let sock: UnixStream = stream.into_std().map_err(|_| {
            anyhow!("the pipe is in message mode; send and listen need a byte pipe")
        })?;
        let mut writer = sock.try_clone().context("duplicating the socket")?;
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let stdin = io::stdin();
            let result = copy(stdin.as_fd(), &mut stdin.lock(), &mut writer);
            let _ = writer.shutdown(Shutdown::Write);
            let _ = done_tx.send(result);
        });

        let mut out = io::stdout().lock();
        let end = copy(sock.as_fd(), &mut &sock, &mut out).map_err(|e| match e {
            Failure::Read(e) => anyhow::Error::new(e).context("reading from the pipe"),
            Failure::Write(e) => stdout_error(e),
        })?;
        drop(out);
        if end == End::Gone {
            // stdout's reader is gone: nothing more can be delivered.
            return Ok(());
        }
        close_stdout();

        // The peer will send no more. Wait for stdin to finish, unless the peer closed
        // the whole connection (then nothing more can be delivered).
        loop {
            match done_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Err(Failure::Read(e))) => return Err(e).context("reading standard input"),
                Ok(Err(Failure::Write(e))) if !peer_gone(&e) => {
                    return Err(e).context("copying stdin to the pipe")
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) if hung_up(sock.as_fd()) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Relays between two sockets until both directions are done (each
    /// half-closed after its source ended), or one side hung up and the other
    /// direction ended too.
    pub(crate) fn splice(a: UnixStream, b: UnixStream) -> io::Result<()> {
        let (a_in, b_out) = (a.try_clone()?, b.try_clone()?);
        let forward = thread::Builder::new()
            .name("npipe-relay".into())
            .spawn(move || {
                let result = copy(a_in.as_fd(), &mut &a_in, &mut &b_out);
                let _ = b_out.shutdown(Shutdown::Write);
                result
            })?;
        let back = copy(b.as_fd(), &mut &b, &mut &a);
        let _ = a.shutdown(Shutdown::Write);
        if matches!(back, Ok(End::Gone)) {
            // `a` hung up: the other direction cannot go on either.
            let _ = a.shutdown(Shutdown::Both);
        }
        let forward = forward
            .join()
            .unwrap_or_else(|_| Err(Failure::Read(io::Error::other("relay thread panicked"))));
        for result in [back, forward] {
            match result {
                Err(Failure::Read(e) | Failure::Write(e)) if !peer_gone(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// What failed in [`copy`].
    #[derive(Debug)]
    pub(super) enum Failure {
        Read(io::Error),
        Write(io::Error),
    }

    /// Copies `from` (readable as `source`) to `to` until `from` ends or `to`
    /// hangs up, flushing every chunk so that interactive use works.
    fn copy(
        source: BorrowedFd<'_>,
        from: &mut impl Read,
        to: &mut (impl Write + AsFd),
    ) -> Result<End, Failure> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Wait for bytes, or for the destination to hang up (reported even
            // when no event is asked for).
            let [input, output] =
                sys::wait_ready([(source, Watch::Input), (to.as_fd(), Watch::HangUp)])
                    .map_err(Failure::Read)?;
            if !input.any() && (output.hang_up() || output.error()) {
                return Ok(End::Gone);
            }
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(End::Done),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if peer_gone(&e) => return Ok(End::Done),
                Err(e) => return Err(Failure::Read(e)),
            };
            match to.write_all(&buf[..n]).and_then(|()| to.flush()) {
                Ok(()) => {}
                Err(e) if peer_gone(&e) => return Ok(End::Gone),
                Err(e) => return Err(Failure::Write(e)),
            }
        }
    }

    /// Closes stdout for its reader (who sees the end of the stream) while
    /// keeping descriptor 1 valid: `/dev/null` takes its place.
    fn close_stdout() {
        let _ = io::stdout().flush();
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            let _ = sys::redirect_stdout(null);
        }
    }

    /// Whether the peer closed both directions (`POLLHUP`), not just its write side.
    fn hung_up(sock: BorrowedFd<'_>) -> bool {
        match sys::ready_now(sock, Watch::HangUp) {
            Ok(ready) => ready.hang_up() || ready.error(),
            Err(_) => true,
        }
    }
}

#[cfg(not(unix))]
mod imp {
    /// Windows: npipe's `Stream` cannot be split between two threads yet, and
    /// Windows pipes cannot half-close.
    pub(super) fn relay(_stream: npipe::Stream) -> anyhow::Result<()> {
        anyhow::bail!("send, listen and bridge are not available on this platform yet")
    }
}
