//! Connecting to a pipe's socket: one attempt, and the wait for a pipe that is
//! absent or busy (`CreateFile` + `WaitNamedPipe`).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, UnixAddr};

use super::dir::ConnectTarget;
use super::{Endpoint, Kind};
use crate::error::{err, err_src, fmt_duration, ErrorKind};

pub(crate) fn abstract_addr(name: &str) -> io::Result<UnixAddr> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return Ok(UnixAddr::new_abstract(name.as_bytes())?);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    Err(err(
        ErrorKind::Unsupported,
        format!("abstract socket names (@{name}) exist only on Linux"),
    ))
}

/// One connection attempt. `wait`: how long a blocking `connect` may wait for room in
/// the server's accept queue (`None`: do not wait). The socket may be returned in
/// non-blocking mode either way.
///
/// A socket file is reached without following a symlink at its path (see
/// [`PipePath::connect_target`](super::dir::PipePath::connect_target)): a symlink
/// fails like a file nobody listens on (`ECONNREFUSED`).
pub(crate) fn raw_connect(endpoint: &Endpoint, wait: Option<Duration>) -> io::Result<UnixStream> {
    // Held until the connects are done: it may keep the socket file's inode open.
    let target = match endpoint {
        Endpoint::File(path) => path.connect_target()?,
        Endpoint::Abstract(name) => ConnectTarget::from(abstract_addr(name)?),
    };
    let addr = &target.addr;
    let nonblocking = wait.is_none_or(|w| w < Duration::from_micros(1));
    // First a connect that does not wait: a Unix socket connect completes at once
    // when the accept queue has room (the common case), and this spares the two
    // SO_SNDTIMEO calls the waiting connect needs. Only a full queue (EAGAIN)
    // takes the waiting path below, on a fresh socket.
    let sock = UnixStream::from(super::new_socket(true)?);
    loop {
        match socket::connect(sock.as_raw_fd(), addr) {
            Ok(()) => return Ok(sock),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if !nonblocking => break,
            Err(e) => return Err(e.into()),
        }
    }
    drop(sock);
    let sock = UnixStream::from(super::new_socket(false)?);
    // A blocking connect to a full accept queue waits up to SO_SNDTIMEO for room.
    sock.set_write_timeout(wait)?;
    loop {
        match socket::connect(sock.as_raw_fd(), addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    sock.set_write_timeout(None)?;
    Ok(sock)
}

/// Connects, waiting up to `timeout` while the pipe does not exist yet or every
/// instance is busy (`CreateFile` + `WaitNamedPipe`).
pub(crate) fn connect_waiting(endpoint: &Endpoint, timeout: Duration) -> io::Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = raw_connect(endpoint, (!remaining.is_zero()).then_some(remaining));
        let failure = match attempt {
            Ok(sock) => {
                // A non-blocking attempt leaves the socket non-blocking.
                sock.set_nonblocking(false)?;
                return Ok(sock);
            }
            Err(e) => e,
        };
        let os = failure.raw_os_error().map(Errno::from_raw);
        let busy = matches!(os, Some(Errno::EAGAIN));
        let absent = matches!(os, Some(Errno::ENOENT | Errno::ECONNREFUSED));
        if matches!(os, Some(Errno::EACCES | Errno::EPERM)) {
            return Err(err_src(
                ErrorKind::AccessDenied,
                format!(
                    "access to pipe {endpoint} denied: its access policy does not admit uid {}",
                    nix::unistd::geteuid()
                ),
                failure,
            ));
        }
        if !busy && !absent {
            return Err(failure);
        }
        if Instant::now() >= deadline {
            return Err(if busy {
                err(
                    ErrorKind::PipeBusy,
                    format!(
                        "all instances of pipe {endpoint} are busy (waited {})",
                        fmt_duration(timeout)
                    ),
                )
            } else {
                not_found(endpoint, timeout)
            });
        }
        if absent {
            thread::sleep(backoff.min(remaining));
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }
}

fn not_found(endpoint: &Endpoint, timeout: Duration) -> io::Error {
    let waited = if timeout.is_zero() {
        String::new()
    } else {
        format!(" (waited {})", fmt_duration(timeout))
    };
    let found = match endpoint {
        Endpoint::File(path) => path.stat().ok().flatten(),
        Endpoint::Abstract(_) => None,
    };
    let why = match found {
        Some(entry) if entry.kind == Kind::Socket => {
            "only a stale socket file of a server that is gone remains".to_owned()
        }
        Some(entry) => format!(
            "the socket path holds {}, not a pipe's socket (npipe does not follow or use it)",
            entry.kind.describe()
        ),
        None => "no server has created it".to_owned(),
    };
    err(
        ErrorKind::NotFound,
        format!("pipe {endpoint} not found: {why}{waited}"),
    )
}
