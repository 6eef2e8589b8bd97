//! Unix backend: named pipes as Unix domain sockets (`SOCK_STREAM`).
//!
//! - `NAME` is the socket file `/tmp/npipe-NAME`, or `$NPIPE_DIR/NAME`; an
//!   explicit path `/DIR/FILE` is that file, `DIR` held and checked as
//!   `$NPIPE_DIR` is.
//! - Beside it, the lock file `.npipe-NAME.lock` (or `$NPIPE_DIR/.NAME.lock`, mode
//!   0600) is held with `flock` for the server's lifetime: it decides who owns the
//!   name, so a stale socket can be reclaimed without a race. The record file
//!   `.npipe-NAME.info` (0644) says the server's pid, mode, direction and access
//!   policy to everyone (a lock file others could read, they could also lock).
//! - `@NAME` (Linux) is an abstract socket: no files, released when the server exits.
//! - A socket a service manager passed (`activation`) is served as it is: the
//!   manager owns its file, so there is no lock or record file, and nothing is
//!   removed.
//! - Every file operation is relative to the pipe directory, held open after
//!   checking the whole path (`dir`); whether a pipe is live is one function
//!   (`liveness`).

#![allow(unsafe_code)]

mod activation;
#[cfg(feature = "tokio")]
mod async_io;
#[cfg(feature = "tokio")]
mod async_listener;
#[cfg(feature = "tokio")]
mod async_stream;
mod connect;
mod cred;
mod dir;
mod gate;
mod listener;
mod liveness;
mod process;
mod record;
mod remote;
#[cfg(feature = "tokio")]
mod shutdown;
mod stream;

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub(crate) use activation::is_activated;
pub(crate) use cred::{cached_peer_credentials, peer_credentials};
pub(crate) use dir::{Kind, PipeDir, PipePath};
pub(crate) use liveness::{socket_owners, Listening};
pub(crate) use process::{process_name, process_uid, user_name};
pub(crate) use record::Record;
pub(crate) use remote::wait as wait_remote;

#[cfg(feature = "tokio")]
pub(crate) use async_listener::AsyncListener;
#[cfg(feature = "tokio")]
pub(crate) use async_stream::{AsyncReadHalf, AsyncStream, AsyncWriteHalf, WRITES_VECTORED};
pub(crate) use listener::Listener;
#[cfg(feature = "tokio")]
pub(crate) use shutdown::{Reachable, ShutdownHandle};
#[cfg(feature = "tokio")]
pub(crate) use stream::Socket;
pub(crate) use stream::Stream;

use crate::error::{err, ErrorKind};
use crate::name::{Address, PipeName};

/// Bytes available for a path in `sockaddr_un.sun_path`, including the final NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SUN_PATH_LEN: usize = 108;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SUN_PATH_LEN: usize = 104;

/// The directory holding pipes when `$NPIPE_DIR` is unset. `/tmp` is owned by root
/// with the sticky bit: nobody can remove or replace another user's live pipe.
const DEFAULT_DIR: &str = "/tmp";
const DEFAULT_PREFIX: &str = "npipe-";

/// Where a pipe lives, resolved: a socket file in a held pipe directory, or an
/// abstract name (Linux).
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    File(PipePath),
    Abstract(String),
}

impl Endpoint {
    /// The public form of the address.
    pub(crate) fn address(&self) -> Address {
        match self {
            Endpoint::File(path) => Address::Path(path.path()),
            Endpoint::Abstract(name) => Address::Abstract(name.clone()),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::File(path) => write!(f, "{}", path.path().display()),
            Endpoint::Abstract(name) => write!(f, "@{name}"),
        }
    }
}

/// The pipe directory, opened and checked (see [`PipeDir::open`]), and the prefix
/// of socket file names in it: `$NPIPE_DIR` and none, or `/tmp` and `npipe-`.
///
/// `$NPIPE_DIR` is opened and checked on every call: the variable may change. The
/// default `/tmp` is opened and checked once per process and then held: only its
/// owner (root) could make the check fail later, and connecting, which resolves
/// the name every time, stays cheap.
pub(crate) fn pipe_dir() -> io::Result<(Arc<PipeDir>, &'static str)> {
    match std::env::var_os("NPIPE_DIR") {
        Some(dir) if !dir.is_empty() => Ok((Arc::new(PipeDir::open(Path::new(&dir))?), "")),
        _ => {
            static DEFAULT: OnceLock<Arc<PipeDir>> = OnceLock::new();
            if let Some(dir) = DEFAULT.get() {
                return Ok((Arc::clone(dir), DEFAULT_PREFIX));
            }
            let dir = Arc::new(PipeDir::open(Path::new(DEFAULT_DIR))?);
            Ok((Arc::clone(DEFAULT.get_or_init(|| dir)), DEFAULT_PREFIX))
        }
    }
}

/// The socket file of pipe `name` (a local name, validated) in the pipe directory.
pub(crate) fn local_endpoint(name: &str) -> io::Result<Endpoint> {
    let (dir, prefix) = pipe_dir()?;
    endpoint_in(dir, prefix, name)
}

/// The socket file of pipe `name` in `dir`. A path that would not fit in
/// `sun_path` is refused: never truncated.
pub(crate) fn endpoint_in(dir: Arc<PipeDir>, prefix: &str, name: &str) -> io::Result<Endpoint> {
    let mut file = OsString::with_capacity(prefix.len() + name.len());
    file.push(prefix);
    file.push(name);
    file_endpoint(PipePath::new(dir, file), "use a shorter name or NPIPE_DIR")
}

/// The socket file an explicit path names (validated by `PipeName`: absolute, with
/// a file name and no `.`, `..` or empty components): its directory is opened and
/// checked exactly as `$NPIPE_DIR` is, on every resolution.
pub(crate) fn path_endpoint(path: &Path) -> io::Result<Endpoint> {
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        return Err(err(
            ErrorKind::InvalidName,
            format!(
                "{}: a socket path names a file in a directory",
                path.display()
            ),
        ));
    };
    let dir = Arc::new(PipeDir::open(dir)?);
    file_endpoint(PipePath::new(dir, file.to_owned()), "use a shorter path")
}

/// `path` as an endpoint, if it fits in `sun_path`: never truncated.
fn file_endpoint(path: PipePath, hint: &str) -> io::Result<Endpoint> {
    let len = path.path_len();
    if len + 1 > SUN_PATH_LEN {
        return Err(err(
            ErrorKind::InvalidName,
            format!(
                "the socket path {} is {len} bytes; the limit on this OS is {} bytes ({hint})",
                path.path().display(),
                SUN_PATH_LEN - 1
            ),
        ));
    }
    Ok(Endpoint::File(path))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn abstract_endpoint(name: &str) -> io::Result<Endpoint> {
    if name.len() + 1 > SUN_PATH_LEN {
        return Err(err(
            ErrorKind::InvalidName,
            format!(
                "the abstract name @{name} is {} bytes; the limit is {} bytes",
                name.len(),
                SUN_PATH_LEN - 1
            ),
        ));
    }
    Ok(Endpoint::Abstract(name.to_owned()))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn abstract_endpoint(name: &str) -> io::Result<Endpoint> {
    Err(err(
        ErrorKind::Unsupported,
        format!("abstract socket names (@{name}) exist only on Linux"),
    ))
}

/// A new Unix stream socket, close-on-exec, never raising `SIGPIPE` where the OS
/// offers a socket option for that (Linux uses `MSG_NOSIGNAL` per send instead).
pub(crate) fn new_socket(nonblocking: bool) -> io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let mut flags = SockFlag::SOCK_CLOEXEC;
        if nonblocking {
            flags |= SockFlag::SOCK_NONBLOCK;
        }
        Ok(socket(AddressFamily::Unix, SockType::Stream, flags, None)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )?;
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        if nonblocking {
            fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        }
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        {
            use std::os::fd::AsRawFd;
            let on: nix::libc::c_int = 1;
            // SAFETY: `fd` is an open socket; the option value is a valid c_int whose
            // size is passed alongside.
            let rc = unsafe {
                nix::libc::setsockopt(
                    fd.as_raw_fd(),
                    nix::libc::SOL_SOCKET,
                    nix::libc::SO_NOSIGPIPE,
                    (&on as *const nix::libc::c_int).cast(),
                    std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(fd)
    }
}

/// Whether a server is listening on the pipe now: the one notion of liveness of
/// `wait`, `inspect` and `list` (see [`liveness`]).
pub(crate) fn is_listening(name: &PipeName) -> io::Result<bool> {
    liveness::is_live(&name.endpoint()?)
}
