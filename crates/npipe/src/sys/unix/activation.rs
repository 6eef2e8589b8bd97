//! Sockets a service manager passed to this process: systemd socket activation
//! (`sd_listen_fds(3)`).
//!
//! The manager creates, binds and listens on the socket, then starts the server
//! with it open as descriptor 3 (and the next ones), `LISTEN_PID` set to the
//! server's pid, `LISTEN_FDS` to how many descriptors, and `LISTEN_FDNAMES` to
//! their names, separated by `:`. The variables are read once per process, the
//! first time they are asked about; then every passed descriptor is made
//! close-on-exec (as `sd_listen_fds` does), and each is taken (owned, then closed
//! with the listener that serves it) at most once.
//!
//! Written out rather than taken from a crate: the protocol is three variables,
//! and what the crates add on top of parsing them — a raw descriptor to own —
//! is the part npipe must do itself anyway (validate it, own it once, close it on
//! exec). npipe never changes the environment: removing a variable is not safe
//! while other threads may read it (see [`crate::is_socket_activated`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike};

use super::dir::{Entry, Kind};
use super::Endpoint;
use crate::error::{err, ErrorKind};
use crate::name::PipeName;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// What the environment said, read once.
#[derive(Debug)]
enum Passed {
    /// No socket was passed to this process; why, for the error.
    None(String),
    /// The variables are malformed.
    Invalid(String),
    Sockets(Vec<PassedSocket>),
}

#[derive(Debug)]
struct PassedSocket {
    fd: RawFd,
    /// Its `LISTEN_FDNAMES` entry.
    name: Option<String>,
    /// The descriptor's file (device, inode) when the variables were read; `None`
    /// if it was not open. One that was not is never looked at again: its number
    /// may have been reused since by something else of the process's (a
    /// runtime's epoll, say); nor is one whose number names another file now.
    identity: Option<(u64, u64)>,
    /// Owned by a listener of this process (then closed with it).
    taken: bool,
}

/// A passed socket taken to be served.
#[derive(Debug)]
pub(crate) struct Activated {
    pub(crate) socket: UnixListener,
    /// `fd 3 ("api.socket")`: for logs.
    pub(crate) description: String,
}

fn passed() -> MutexGuard<'static, Passed> {
    static PASSED: OnceLock<Mutex<Passed>> = OnceLock::new();
    PASSED
        .get_or_init(|| {
            let var = |name: &str| std::env::var(name).ok();
            let passed = match parse(
                var("LISTEN_PID").as_deref(),
                var("LISTEN_FDS").as_deref(),
                var("LISTEN_FDNAMES").as_deref(),
                std::process::id(),
                descriptor_limit(),
            ) {
                Ok(Some(names)) => Passed::Sockets(
                    (FIRST_FD..)
                        .zip(names)
                        .map(|(fd, name)| PassedSocket {
                            fd,
                            name,
                            identity: close_on_exec(fd).then(|| identity(fd)).flatten(),
                            taken: false,
                        })
                        .collect(),
                ),
                Ok(None) => Passed::None(not_passed_reason(
                    var("LISTEN_PID").as_deref(),
                    var("LISTEN_FDS").as_deref(),
                )),
                Err(why) => Passed::Invalid(why),
            };
            Mutex::new(passed)
        })
        .lock()
        // Plain data: a panic while it was held leaves it usable.
        .unwrap_or_else(|e| e.into_inner())
}

/// Makes passed descriptor `fd` close-on-exec, as `sd_listen_fds(3)` does, so that
/// the sockets are not inherited by what the process runs, served or not; false
/// if `fd` is not open.
fn close_on_exec(fd: RawFd) -> bool {
    // SAFETY: `F_GETFD` and `F_SETFD` only read and set this process's
    // descriptor flags, for any number; a number that is not open fails with
    // EBADF and is left alone.
    unsafe {
        let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
        flags != -1 && nix::libc::fcntl(fd, nix::libc::F_SETFD, flags | nix::libc::FD_CLOEXEC) != -1
    }
}

/// The (device, inode) of the file descriptor `fd` is open on, `None` if it is not
/// open.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<nix::libc::stat>::uninit();
    // SAFETY: `fstat` only writes the status of descriptor `fd` into `stat`, which
    // is large enough; for a number that is not open it fails with EBADF and
    // writes nothing, and `stat` is read only after it succeeded.
    unsafe {
        if nix::libc::fstat(fd, stat.as_mut_ptr()) != 0 {
            return None;
        }
        let stat = stat.assume_init();
        // The types differ between systems (u64 here, i32 and u64 on macOS).
        #[allow(clippy::unnecessary_cast)]
        Some((stat.st_dev as u64, stat.st_ino as u64))
    }
}

/// Whether sockets were passed to this process (taken since or not), or the
/// variables that would pass them are malformed: then serving them fails with
/// the reason, rather than a program falling back to a socket of its own.
pub(crate) fn is_activated() -> bool {
    matches!(&*passed(), Passed::Sockets(_) | Passed::Invalid(_))
}

/// The most descriptors this process can hold (the hard `RLIMIT_NOFILE`): a
/// `LISTEN_FDS` beyond it cannot be true.
fn descriptor_limit() -> usize {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) => usize::try_from(hard).unwrap_or(usize::MAX),
        Err(_) => usize::MAX,
    }
}

/// The names of the passed descriptors, one per descriptor (`None` where
/// `LISTEN_FDNAMES` is absent), if `LISTEN_PID` is `me` and `LISTEN_FDS` at least
/// 1; `Ok(None)` when no socket was passed to this process, as `sd_listen_fds`
/// returns 0. Descriptors 3..3+`LISTEN_FDS` must fit under `max_fds`, the
/// process's descriptor limit.
fn parse(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
    max_fds: usize,
) -> Result<Option<Vec<Option<String>>>, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != me {
        return Ok(None);
    }
    let count: usize = fds
        .parse()
        .map_err(|_| format!("LISTEN_FDS={fds:?} is not a number of descriptors"))?;
    // Descriptors 3..3+count must be numbers a descriptor of this process can
    // have.
    let most = max_fds
        .min(RawFd::MAX as usize)
        .saturating_sub(FIRST_FD as usize);
    if count > most {
        return Err(format!(
            "LISTEN_FDS={count} is too many descriptors: this process can have {most} from descriptor 3 on"
        ));
    }
    if count == 0 {
        return Ok(None);
    }
    let names = match names {
        None => vec![None; count],
        Some(names) => {
            let names: Vec<Option<String>> =
                names.split(':').map(|name| Some(name.to_owned())).collect();
            if names.len() != count {
                return Err(format!(
                    "LISTEN_FDNAMES has {} names for LISTEN_FDS={count} descriptors",
                    names.len()
                ));
            }
            names
        }
    };
    Ok(Some(names))
}

fn not_passed_reason(pid: Option<&str>, fds: Option<&str>) -> String {
    match (pid, fds) {
        (None, _) | (_, None) => {
            "no listening socket was passed to this process (LISTEN_PID and LISTEN_FDS are not set: a service manager sets them when it starts a server with its socket)".to_owned()
        }
        (Some(pid), Some(_)) if pid != std::process::id().to_string() => format!(
            "no listening socket was passed to this process: LISTEN_PID is {pid}, not this process ({}); the sockets were passed to another process",
            std::process::id()
        ),
        _ => "no listening socket was passed to this process (LISTEN_FDS is 0)".to_owned(),
    }
}

/// What a passed descriptor is.
#[derive(Debug)]
struct Described {
    /// Why it cannot be served: it is not a listening Unix stream socket.
    unusable: Option<String>,
    bound: Bound,
}

/// The address a Unix socket is bound to.
#[derive(Debug, PartialEq, Eq)]
enum Bound {
    Path(PathBuf),
    Abstract(Vec<u8>),
    /// Unbound, or not a Unix socket.
    Nothing,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Path(path) => write!(f, "{}", path.display()),
            Bound::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Bound::Nothing => f.write_str("no address"),
        }
    }
}

fn describe(fd: BorrowedFd<'_>) -> Described {
    let mut described = Described {
        unusable: None,
        bound: Bound::Nothing,
    };
    let kind = match nix::sys::stat::fstat(fd) {
        Ok(stat) => Entry::from(stat).kind,
        Err(e) => {
            described.unusable = Some(format!("unreadable ({e})"));
            return described;
        }
    };
    if kind != Kind::Socket {
        described.unusable = Some(format!("{}, not a socket", kind.describe()));
        return described;
    }
    let family = getsockname::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd())
        .map(|addr| {
            if let Some(unix) = addr.as_unix_addr() {
                if let Some(path) = unix.path() {
                    described.bound = Bound::Path(path.to_owned());
                }
                #[cfg(any(target_os = "linux", target_os = "android"))]
                if let Some(name) = unix.as_abstract() {
                    described.bound = Bound::Abstract(name.to_owned());
                }
            }
            addr.family()
        })
        .ok()
        .flatten();
    let unusable = if family != Some(AddressFamily::Unix) {
        Some(format!(
            "not a Unix socket ({})",
            family.map_or_else(|| "unknown family".to_owned(), |f| format!("{f:?}"))
        ))
    } else if getsockopt(&fd, sockopt::SockType).ok() != Some(SockType::Stream) {
        Some("not a stream socket (ListenStream=)".to_owned())
    } else if getsockopt(&fd, sockopt::AcceptConn).ok() != Some(true) {
        Some("not listening".to_owned())
    } else if described.bound == Bound::Nothing {
        Some("not bound to an address".to_owned())
    } else {
        None
    };
    described.unusable = unusable;
    described
}

/// Whether a socket bound to `bound` is the one clients of `endpoint` reach: the
/// same path, or a path that leads to the very file at the endpoint's path (a
/// socket bound through a symlinked directory); the same abstract name.
fn serves(endpoint: &Endpoint, bound: &Bound) -> bool {
    match (endpoint, bound) {
        (Endpoint::File(path), Bound::Path(bound)) => {
            if *bound == path.path() {
                return true;
            }
            // Looked up from `/`, not through a held directory: the path is the
            // one the service manager (trusted, it passed the socket) bound, and
            // this only decides which passed socket to serve; a lookup redirected
            // by another user can only refuse it (the inode must be the socket at
            // the pipe's own, checked path).
            let there = nix::sys::stat::lstat(bound.as_path()).ok().map(Entry::from);
            match (there, path.stat()) {
                (Some(there), Ok(Some(here))) => {
                    there.kind == Kind::Socket
                        && here.kind == Kind::Socket
                        && there.id() == here.id()
                }
                _ => false,
            }
        }
        (Endpoint::Abstract(name), Bound::Abstract(bound)) => bound == name.as_bytes(),
        _ => false,
    }
}

/// Whether the passed socket's `LISTEN_FDNAMES` entry names pipe `name`: its
/// written form, its bare name, or for a path its file name.
fn named(socket: &PassedSocket, name: &PipeName) -> bool {
    let Some(fd_name) = socket.name.as_deref() else {
        return false;
    };
    fd_name == name.as_str()
        || fd_name == name.to_string()
        || name
            .socket_path()
            .and_then(Path::file_name)
            .is_some_and(|file| file == fd_name)
}

fn label(socket: &PassedSocket) -> String {
    match &socket.name {
        Some(name) => format!("fd {} ({name:?})", socket.fd),
        None => format!("fd {}", socket.fd),
    }
}

/// Takes the passed socket that serves pipe `name` (resolved to `endpoint`):
/// the one whose `LISTEN_FDNAMES` entry names the pipe, else the only one passed,
/// else the one bound to the pipe's address. It must be a listening Unix stream
/// socket bound to the pipe's address (clients of the name must reach it). It is
/// made blocking, and owned from here on.
pub(crate) fn take(name: &PipeName, endpoint: &Endpoint) -> io::Result<Activated> {
    let mut passed = passed();
    let sockets = match &mut *passed {
        Passed::Sockets(sockets) => sockets,
        Passed::None(why) => return Err(err(ErrorKind::NotFound, format!("pipe {name}: {why}"))),
        Passed::Invalid(why) => {
            return Err(err(
                ErrorKind::Io,
                format!("pipe {name}: the service manager's variables are malformed: {why}"),
            ))
        }
    };
    if sockets.iter().all(|s| s.taken) {
        return Err(err(
            ErrorKind::AddrInUse,
            format!(
                "pipe {name}: every socket passed to this process is served already (each can be served once)"
            ),
        ));
    }
    let only_one = sockets.len() == 1;
    let mut candidates: Vec<(usize, Described)> = Vec::new();
    for (index, socket) in sockets.iter().enumerate() {
        if socket.taken {
            continue;
        }
        let unusable = match socket.identity {
            None => Some("not open"),
            Some(then) if identity(socket.fd) != Some(then) => Some(
                "no longer the descriptor passed (closed since the variables were read, its number reused)",
            ),
            Some(_) => None,
        };
        if let Some(why) = unusable {
            candidates.push((
                index,
                Described {
                    unusable: Some(why.to_owned()),
                    bound: Bound::Nothing,
                },
            ));
            continue;
        }
        // SAFETY: the descriptor was open when the variables were read and is
        // open on the same file now, and descriptors 3.. were passed to this
        // process for it to use (sd_listen_fds(3)): an untaken one is owned by no
        // object of npipe, so nothing in npipe closes it while the registry lock
        // is held (the program must not own or close it: see
        // `Listener::from_activation`).
        let fd = unsafe { BorrowedFd::borrow_raw(socket.fd) };
        candidates.push((index, describe(fd)));
    }
    let by_name: Vec<usize> = candidates
        .iter()
        .filter(|(i, _)| named(&sockets[*i], name))
        .map(|(i, _)| *i)
        .collect();
    let chosen = if by_name.len() == 1 {
        Some(by_name[0])
    } else if only_one {
        candidates.first().map(|(i, _)| *i)
    } else {
        let by_address: Vec<usize> = candidates
            .iter()
            .filter(|(i, d)| {
                (by_name.is_empty() || by_name.contains(i)) && serves(endpoint, &d.bound)
            })
            .map(|(i, _)| *i)
            .collect();
        (by_address.len() == 1).then(|| by_address[0])
    };
    // The first few, so that the message stays readable however many came.
    const LISTED: usize = 8;
    let listing = || {
        let mut text = candidates
            .iter()
            .take(LISTED)
            .map(|(i, d)| match &d.unusable {
                Some(why) => format!("{}: {why}", label(&sockets[*i])),
                None => format!("{} at {}", label(&sockets[*i]), d.bound),
            })
            .collect::<Vec<_>>()
            .join("; ");
        if candidates.len() > LISTED {
            text += &format!("; and {} more", candidates.len() - LISTED);
        }
        text
    };
    let Some(chosen) = chosen else {
        return Err(err(
            ErrorKind::NotFound,
            format!(
                "pipe {name}: none of the sockets passed to this process is its socket {endpoint} ({}); name it with FileDescriptorName= (systemd-socket-activate --fdname=), or serve the name of its address",
                listing()
            ),
        ));
    };
    let Some(position) = candidates.iter().position(|(i, _)| *i == chosen) else {
        return Err(err(
            ErrorKind::Io,
            format!("pipe {name}: lost track of a passed socket"),
        ));
    };
    let described = candidates.swap_remove(position).1;
    let socket = &mut sockets[chosen];
    if let Some(why) = described.unusable {
        return Err(err(
            ErrorKind::Unsupported,
            format!(
                "pipe {name}: the socket passed as {} is {why}; npipe serves a listening Unix stream socket (ListenStream= with a path or @name)",
                label(socket)
            ),
        ));
    }
    if !serves(endpoint, &described.bound) {
        return Err(err(
            ErrorKind::NotFound,
            format!(
                "pipe {name}: the socket passed as {} is bound to {}, not to the pipe's socket {endpoint}, so the pipe's clients would never reach it; serve the name {}, or pass the pipe's socket",
                label(socket),
                described.bound,
                described.bound
            ),
        ));
    }
    // SAFETY: as above; `describe` found it open, and marking it taken (under the
    // registry lock) makes this the only owner npipe ever creates for it.
    let fd = unsafe { OwnedFd::from_raw_fd(socket.fd) };
    socket.taken = true;
    let socket_listener = UnixListener::from(fd);
    socket_listener.set_nonblocking(false)?;
    Ok(Activated {
        socket: socket_listener,
        description: label(socket),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_are_read_as_sd_listen_fds_reads_them() {
        let me = 4242;
        let parse = |pid, fds, names, me| parse(pid, fds, names, me, 1024);
        let names = |n: &[&str]| -> Option<Vec<Option<String>>> {
            Some(n.iter().map(|s| Some((*s).to_owned())).collect())
        };
        assert_eq!(parse(None, None, None, me), Ok(None));
        assert_eq!(parse(Some("4242"), None, None, me), Ok(None));
        assert_eq!(parse(None, Some("1"), None, me), Ok(None));
        // Passed to another process (a parent that did not unset them).
        assert_eq!(parse(Some("1"), Some("1"), None, me), Ok(None));
        assert_eq!(parse(Some("4242"), Some("0"), None, me), Ok(None));
        assert_eq!(
            parse(Some("4242"), Some("2"), None, me),
            Ok(Some(vec![None, None]))
        );
        assert_eq!(
            parse(Some("4242"), Some("2"), Some("api.socket:admin"), me),
            Ok(names(&["api.socket", "admin"]))
        );
        assert_eq!(
            parse(Some("4242"), Some("1"), Some(""), me),
            Ok(names(&[""]))
        );
        assert_eq!(
            parse(Some("4242"), Some("1021"), None, me).map(|n| n.map(|n| n.len())),
            Ok(Some(1021))
        );
        for (pid, fds, fd_names, needle) in [
            ("x", "1", None, "LISTEN_PID=\"x\" is not a process id"),
            ("4242", "-1", None, "LISTEN_FDS=\"-1\" is not a number"),
            ("4242", "99999999999", None, "too many"),
            // Beyond the descriptor limit (1024 here): never a guess at memory.
            (
                "4242",
                "2147483644",
                None,
                "can have 1021 from descriptor 3 on",
            ),
            ("4242", "1022", None, "too many"),
            ("4242", "2", Some("one"), "1 names for LISTEN_FDS=2"),
        ] {
            let e = parse(Some(pid), Some(fds), fd_names, me).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
