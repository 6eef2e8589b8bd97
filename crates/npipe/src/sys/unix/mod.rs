//! Unix backend: named pipes as Unix domain sockets (`SOCK_STREAM`).
//!
//! - `NAME` is the socket file `/tmp/npipe-NAME`, or `$NPIPE_DIR/NAME`.
//! - Beside it, the lock file `.npipe-NAME.lock` (or `$NPIPE_DIR/.NAME.lock`) is held
//!   with `flock` for the server's lifetime: it decides who owns the name, so a stale
//!   socket can be reclaimed without a race, and it records the server's pid and mode.
//! - `@NAME` (Linux) is an abstract socket: no files, released when the server exits.

#![allow(unsafe_code)]

mod cred;
mod gate;
mod listener;
mod stream;
#[cfg(feature = "tokio")]
mod tokio_io;

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub(crate) use cred::peer_credentials;

/// The peer's credentials from `cache`, asked of `sock` (`SO_PEERCRED`) the first
/// time only: they are fixed when the connection is made.
pub(crate) fn cached_peer_credentials(
    cache: &std::sync::OnceLock<crate::stream::PeerCredentials>,
    sock: &impl std::os::fd::AsFd,
) -> io::Result<crate::stream::PeerCredentials> {
    if let Some(peer) = cache.get() {
        return Ok(*peer);
    }
    let peer = peer_credentials(sock)?;
    Ok(*cache.get_or_init(|| peer))
}
pub(crate) use listener::Listener;
#[cfg(feature = "tokio")]
pub(crate) use stream::hung_up;
pub(crate) use stream::Stream;
#[cfg(feature = "tokio")]
pub(crate) use tokio_io::{
    AsyncListener, OwnedReadHalf, OwnedWriteHalf, UnixStream as AsyncUnixStream,
};
#[cfg(feature = "tokio")]
pub(crate) use {gate::Slot, listener::is_transient_accept_error, stream::RequestWait};

use crate::error::{err, err_src, ErrorKind};
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

/// The directory holding pipe sockets: `$NPIPE_DIR` or `/tmp`, and the prefix of
/// socket file names in it.
pub(crate) fn pipe_dir() -> (PathBuf, &'static str) {
    match std::env::var_os("NPIPE_DIR") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), ""),
        _ => (PathBuf::from(DEFAULT_DIR), DEFAULT_PREFIX),
    }
}

pub(crate) fn unix_address(name: &str) -> io::Result<Address> {
    let (dir, prefix) = pipe_dir();
    if prefix.is_empty() {
        check_dir(&dir)?;
    } else {
        // The default directory is /tmp: if it passes once, only its owner (root)
        // could make it fail later. Checking it once per process spares two system
        // calls on every connect.
        static DEFAULT_DIR_CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        if DEFAULT_DIR_CHECKED.get().is_none() {
            check_dir(&dir)?;
            let _ = DEFAULT_DIR_CHECKED.set(());
        }
    }
    // One allocation: connecting resolves the name every time.
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + prefix.len() + name.len());
    path.push(&dir);
    path.push(prefix);
    path.as_mut_os_string().push(name);
    let len = path.as_os_str().len();
    if len + 1 > SUN_PATH_LEN {
        return Err(err(
            ErrorKind::InvalidName,
            format!(
                "the socket path {} is {len} bytes; the limit on this OS is {} bytes (use a shorter name or NPIPE_DIR)",
                path.display(),
                SUN_PATH_LEN - 1
            ),
        ));
    }
    Ok(Address::Path(path))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn abstract_address(name: &str) -> io::Result<Address> {
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
    Ok(Address::Abstract(name.to_owned()))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn abstract_address(name: &str) -> io::Result<Address> {
    Err(err(
        ErrorKind::Unsupported,
        format!("abstract socket names (@{name}) exist only on Linux"),
    ))
}

/// The lock file that decides who owns the socket at `path`: `.<file name>.lock`
/// in the same directory. Valid names never start with `.`, so it cannot collide
/// with another pipe's socket.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut file = OsString::from(".");
    file.push(path.file_name().unwrap_or_default());
    file.push(".lock");
    path.with_file_name(file)
}

/// Refuses a pipe directory in which someone else could swap sockets.
fn check_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        let kind = if e.kind() == io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        err_src(kind, format!("pipe directory {}", dir.display()), e)
    })?;
    if !meta.is_dir() {
        return Err(err(
            ErrorKind::InvalidName,
            format!("pipe directory {} is not a directory", dir.display()),
        ));
    }
    let mode = meta.mode();
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "refusing pipe directory {} (mode {:o}): other users can write to it and it has no sticky bit, so they could replace sockets; use chmod o-w,g-w or chmod +t",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "refusing pipe directory {}: it belongs to uid {}, who could replace sockets in it; use a directory owned by you or by root",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
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

/// Whether a server is listening on the pipe's address right now.
///
/// Linux reads `/proc/net/unix` (no connection is made); other systems probe with a
/// connection that is closed at once.
pub(crate) fn is_listening(name: &PipeName) -> io::Result<bool> {
    let address = name.address()?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let wanted = match &address {
            Address::Path(path) => {
                use std::os::unix::ffi::OsStrExt;
                path.as_os_str().as_bytes().to_vec()
            }
            Address::Abstract(name) => format!("@{name}").into_bytes(),
            Address::Windows(_) => return Ok(false),
        };
        let listed = listening_sockets()?.iter().any(|s| s == &wanted);
        // A listening socket whose file was deleted is still listed by the kernel,
        // but nobody can connect to it any more.
        Ok(listed
            && match &address {
                Address::Path(path) => {
                    use std::os::unix::fs::FileTypeExt;
                    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
                }
                _ => true,
            })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        match stream::raw_connect(&address, None) {
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        }
    }
}

/// The addresses of every listening Unix stream socket in this network namespace
/// (`@name` for abstract ones), from `/proc/net/unix`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn listening_sockets() -> io::Result<Vec<Vec<u8>>> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let table = std::fs::read("/proc/net/unix")?;
    let mut out = Vec::new();
    for line in table.split(|b| *b == b'\n').skip(1) {
        // Num RefCount Protocol Flags Type St Inode Path
        let mut fields = line.splitn(8, |b| *b == b' ').filter(|f| !f.is_empty());
        let (Some(_), Some(_), Some(_), Some(flags), Some(kind)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let flags = std::str::from_utf8(flags)
            .ok()
            .and_then(|f| u32::from_str_radix(f, 16).ok())
            .unwrap_or(0);
        // Type 0001 is SOCK_STREAM.
        if flags & SO_ACCEPTCON == 0 || kind != b"0001" {
            continue;
        }
        let rest: Vec<&[u8]> = line
            .split(|b| *b == b' ')
            .filter(|f| !f.is_empty())
            .skip(7)
            .collect();
        if !rest.is_empty() {
            // A path with spaces was split above; rejoin it.
            out.push(rest.join(&b' '));
        }
    }
    Ok(out)
}
