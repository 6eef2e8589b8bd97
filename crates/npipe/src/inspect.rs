//! Inspecting pipes without connecting to them: where a name lives, whether a live
//! server owns it, and who that server is (what `npipe info` and `npipe list` print).
//!
//! On Linux everything comes from the file system, the kernel and `/proc`: the
//! socket file's owner and permissions, the listening sockets (`sock_diag`, which
//! names the file each is bound to), the processes holding them (`/proc/PID/fd`,
//! readable for your own processes), and the record a server writes in the
//! record file beside its socket (`pid=.. mode=.. direction=.. access=..`).
//! Nothing here connects, so servers see no client.
//!
//! A pipe is live when a listening socket is bound to the very file now at its path:
//! what `connect` would reach, and what `wait` waits for. The record is
//! believed only when its owner is the socket's: anyone may create a record file
//! beside a socket that has none (one made by a service manager, say).

use std::fmt;
use std::io;

use crate::name::{Address, PipeName, ToPipeName};
use crate::options::{Access, Direction, Mode};

/// Whether a server owns a pipe right now, as seen by [`inspect`] and [`list`].
///
/// # Examples
///
/// ```no_run
/// use npipe::PipeState;
///
/// match npipe::inspect("demo")?.state() {
///     PipeState::Live => println!("a server is listening"),
///     PipeState::Stale => println!("a crashed server's files remain; the next server reclaims them"),
///     PipeState::Absent => println!("no such pipe"),
///     _ => println!("unknown"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipeState {
    /// A server is listening: clients can connect.
    Live,
    /// Files of a server that is gone remain (a socket nobody listens on, or a lock
    /// file without its socket). The next server to create the name reclaims them.
    /// A server that is starting at this very moment can also look stale briefly.
    Stale,
    /// Nothing exists under this name.
    Absent,
}

impl PipeState {
    /// `"live"`, `"stale"` or `"absent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PipeState::Live => "live",
            PipeState::Stale => "stale",
            PipeState::Absent => "absent",
        }
    }
}

impl fmt::Display for PipeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operating system tells about one pipe, from [`inspect`] or [`list`].
///
/// Every field but the name, address and state is optional: it is known only where
/// the OS tells it to this user (for example, another user's server pid is found
/// through its record file, not through `/proc`). The mode, direction, access
/// and recorded pid come from the record file the server keeps beside its socket,
/// shown only when the record file belongs to the socket's owner.
///
/// # Examples
///
/// ```no_run
/// for pipe in npipe::list()? {
///     let owner = pipe.owner_name().map_or_else(
///         || pipe.owner_uid().map_or("?".to_owned(), |uid| uid.to_string()),
///         str::to_owned,
///     );
///     let mode = pipe.mode().map_or("?", |mode| mode.as_str());
///     println!("{:20} {:6} {mode:8} {owner}", pipe.name().to_string(), pipe.state());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeInfo {
    name: PipeName,
    address: Address,
    state: PipeState,
    owner_uid: Option<u32>,
    owner_name: Option<String>,
    permissions: Option<u32>,
    server_pid: Option<u32>,
    server_process: Option<String>,
    mode: Option<Mode>,
    direction: Option<Direction>,
    access: Option<Access>,
    recorded: bool,
}

impl PipeInfo {
    fn new(name: PipeName, address: Address) -> PipeInfo {
        PipeInfo {
            name,
            address,
            state: PipeState::Absent,
            owner_uid: None,
            owner_name: None,
            permissions: None,
            server_pid: None,
            server_process: None,
            mode: None,
            direction: None,
            access: None,
            recorded: false,
        }
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// Where the pipe lives in the OS: the socket path, `@name`, or `\\.\pipe\NAME`.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Whether a server owns the pipe now.
    pub fn state(&self) -> PipeState {
        self.state
    }

    /// Whether a server is listening ([`PipeState::Live`]).
    pub fn is_live(&self) -> bool {
        self.state == PipeState::Live
    }

    /// The user owning the pipe: the socket file's owner (Unix), or for an abstract
    /// socket the owner of the server process.
    pub fn owner_uid(&self) -> Option<u32> {
        self.owner_uid
    }

    /// The login name of [`owner_uid`](Self::owner_uid), if the user database has it.
    pub fn owner_name(&self) -> Option<&str> {
        self.owner_name.as_deref()
    }

    /// The socket file's permission bits, e.g. `0o600` (Unix files only).
    pub fn permissions(&self) -> Option<u32> {
        self.permissions
    }

    /// The server's process id: the process holding the listening socket (Linux
    /// `/proc`, own processes), else the pid its record file says.
    pub fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }

    /// The server process's name (Linux `/proc/PID/comm`).
    pub fn server_process(&self) -> Option<&str> {
        self.server_process.as_deref()
    }

    /// The pipe's mode, as its server recorded it.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// The pipe's direction, as its server recorded it.
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// The access policy, as its server recorded it.
    pub fn access(&self) -> Option<Access> {
        self.access
    }

    /// Whether the pipe's server keeps npipe's record beside its socket (the
    /// source of [`mode`](Self::mode), [`direction`](Self::direction) and
    /// [`access`](Self::access)). A live socket file without one was not created
    /// by npipe: a socket a service manager made (and passed to an npipe server,
    /// see [`Listener::from_activation`](crate::Listener::from_activation)), or
    /// another program's. Always false for abstract sockets and on Windows.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let info = npipe::inspect("/run/orders/api.sock")?;
    /// if info.is_live() && !info.is_recorded() {
    ///     println!("served on a socket npipe did not create (a service manager's?)");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_recorded(&self) -> bool {
        self.recorded
    }
}

/// Describes one pipe without connecting to it.
///
/// The name need not exist: an absent pipe is reported as [`PipeState::Absent`].
///
/// # Errors
///
/// - [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName),
///   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported),
///   [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied) (unsafe
///   `$NPIPE_DIR`): as for [`PipeName::address`].
/// - I/O errors reading the pipe directory or `/proc`.
///
/// # Examples
///
/// ```no_run
/// let info = npipe::inspect("demo")?;
/// println!("{} at {}: {}", info.name(), info.address(), info.state());
/// if let Some(pid) = info.server_pid() {
///     println!("served by pid {pid}");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// ## Platform-specific behavior
///
/// Linux asks the kernel (`sock_diag`; `/proc/net/unix` where that is missing) and
/// never connects. Other Unix systems find whether a server listens by connecting
/// and closing at once. Windows reports the address and whether the pipe exists
/// (`WaitNamedPipeW`; for `\\HOST\pipe\NAME` HOST is asked through SMB, and errors
/// on the way to it are as for [`ConnectOptions::connect`](crate::ConnectOptions::connect)).
pub fn inspect(name: impl ToPipeName) -> io::Result<PipeInfo> {
    imp::inspect(name.to_pipe_name()?)
}

/// Lists the pipes in this user's namespace: on Unix the socket files (and leftover
/// lock files) in the pipe directory, `/tmp/npipe-*` or `$NPIPE_DIR/*`, sorted by
/// name. Linux abstract `@NAME` pipes have no file, and pipes named by an explicit
/// socket path (`/run/app/api.sock`) live outside the pipe directory: neither is
/// listed; use [`inspect`] for them.
///
/// # Errors
///
/// I/O errors reading the pipe directory, and `AccessDenied` for an unsafe
/// `$NPIPE_DIR` (see [`PipeName::address`]).
///
/// # Examples
///
/// ```no_run
/// for pipe in npipe::list()? {
///     println!("{:20} {}", pipe.name().to_string(), pipe.state());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// ## Platform-specific behavior
///
/// Windows lists `\\.\pipe\`, which holds every pipe on the machine.
pub fn list() -> io::Result<Vec<PipeInfo>> {
    let mut pipes = imp::list()?;
    pipes.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(pipes)
}

#[cfg(unix)]
mod imp {
    use std::collections::HashSet;
    use std::io;
    use std::sync::Arc;

    use super::{PipeInfo, PipeState};
    use crate::error::ErrorKind;
    use crate::name::PipeName;
    use crate::sys::{self, Endpoint, Kind, Listening, Record};

    /// A pipe described, before the process holding its socket is looked up (one
    /// scan of `/proc` for all the pipes `list` describes).
    struct Described {
        info: PipeInfo,
        socket_inode: Option<u64>,
        recorded_pid: Option<u32>,
    }

    pub(super) fn inspect(name: PipeName) -> io::Result<PipeInfo> {
        let endpoint = name.endpoint()?;
        let described = describe(name, &endpoint, &Listening::read())?;
        Ok(finish(vec![described]).remove(0))
    }

    pub(super) fn list() -> io::Result<Vec<PipeInfo>> {
        let (dir, prefix) = match sys::pipe_dir() {
            Ok(found) => found,
            Err(e) if ErrorKind::of(&e) == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let lock_prefix = format!(".{prefix}");
        let mut names = HashSet::new();
        for (file, kind) in dir.entries()? {
            let Some(file) = file.to_str() else { continue };
            let candidate = if let Some(rest) = file.strip_prefix(&lock_prefix) {
                rest.strip_suffix(".lock")
            } else if let Some(rest) = file.strip_prefix(prefix) {
                // Only sockets: `/tmp/npipe-*` may hold unrelated files.
                let kind = match kind {
                    Some(kind) => Some(kind),
                    None => dir.stat(file.as_ref())?.map(|e| e.kind),
                };
                (kind == Some(Kind::Socket)).then_some(rest)
            } else {
                None
            };
            if let Some(name) = candidate.and_then(|n| PipeName::new(n).ok()) {
                names.insert(name);
            }
        }
        let listening = Listening::read();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            // A name whose path is too long for sun_path cannot be a pipe.
            let Ok(endpoint) = sys::endpoint_in(Arc::clone(&dir), prefix, name.as_str()) else {
                continue;
            };
            out.push(describe(name, &endpoint, &listening)?);
        }
        Ok(finish(out))
    }

    fn describe(
        name: PipeName,
        endpoint: &Endpoint,
        listening: &Listening,
    ) -> io::Result<Described> {
        let mut info = PipeInfo::new(name, endpoint.address());
        let live = listening.find(endpoint)?;
        let mut files_exist = false;
        let mut record = Record::default();
        if let Endpoint::File(path) = endpoint {
            let socket_owner = match path.stat()? {
                Some(entry) if entry.kind == Kind::Socket => {
                    files_exist = true;
                    info.owner_uid = Some(entry.uid);
                    info.permissions = Some(entry.mode);
                    Some(entry.uid)
                }
                _ => None,
            };
            let lock_file = path.lock_file();
            if let Some(lock) = path.dir().stat(&lock_file)? {
                files_exist = true;
                info.owner_uid.get_or_insert(lock.uid);
            }
            // The record speaks for the socket only if the socket's owner wrote it:
            // anyone can create a record file beside a socket that has none.
            if let Some((file, written)) = path.dir().read_record(&path.record_file()) {
                if socket_owner.is_none_or(|owner| owner == file.uid) {
                    record = written;
                    info.recorded = true;
                }
            }
        }
        info.state = match (&live, files_exist) {
            (Some(_), _) => PipeState::Live,
            (None, true) => PipeState::Stale,
            (None, false) => PipeState::Absent,
        };
        info.mode = record.mode;
        info.direction = record.direction;
        info.access = record.access;
        Ok(Described {
            info,
            socket_inode: live.and_then(|l| l.socket_inode),
            recorded_pid: record.pid,
        })
    }

    /// Adds the server process of each live pipe: the process holding its socket
    /// (`/proc/*/fd`, processes this user may inspect), else the pid its record
    /// names.
    fn finish(described: Vec<Described>) -> Vec<PipeInfo> {
        let inodes: HashSet<u64> = described
            .iter()
            .filter(|d| d.info.is_live())
            .filter_map(|d| d.socket_inode)
            .collect();
        let hints: Vec<u32> = described.iter().filter_map(|d| d.recorded_pid).collect();
        let owners = sys::socket_owners(&inodes, &hints);
        described
            .into_iter()
            .map(|d| {
                let mut info = d.info;
                if info.is_live() {
                    info.server_pid = d
                        .socket_inode
                        .and_then(|inode| owners.get(&inode).copied())
                        .or(d.recorded_pid);
                }
                if let Some(pid) = info.server_pid {
                    info.server_process = sys::process_name(pid);
                    if info.owner_uid.is_none() {
                        info.owner_uid = sys::process_uid(pid);
                    }
                }
                info.owner_name = info.owner_uid.and_then(sys::user_name);
                info
            })
            .collect()
    }
}

#[cfg(windows)]
mod imp {
    use std::io;

    use super::{PipeInfo, PipeState};
    use crate::name::PipeName;
    use crate::sys;

    pub(super) fn inspect(name: PipeName) -> io::Result<PipeInfo> {
        let address = name.address()?;
        let mut info = PipeInfo::new(name, address);
        if sys::is_listening(&info.name)? {
            info.state = PipeState::Live;
        }
        Ok(info)
    }

    pub(super) fn list() -> io::Result<Vec<PipeInfo>> {
        let mut out = Vec::new();
        for name in sys::pipe_names()? {
            let Some(name) = name.to_str().and_then(|n| PipeName::new(n).ok()) else {
                continue;
            };
            let Ok(address) = name.address() else {
                continue;
            };
            let mut info = PipeInfo::new(name, address);
            info.state = PipeState::Live;
            out.push(info);
        }
        Ok(out)
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    /// A live listener, then the stale socket file a crashed server leaves, then nothing.
    #[test]
    fn live_stale_and_absent() {
        use std::os::unix::fs::MetadataExt;

        let name = format!("inspect-unit-{}", std::process::id());
        let listener = crate::ListenerOptions::new()
            .mode(Mode::Byte)
            .create(name.as_str())
            .expect("bind");
        let Address::Path(path) = listener.address().clone() else {
            panic!("expected a socket path");
        };

        let info = inspect(name.as_str()).expect("inspect");
        assert_eq!(info.state(), PipeState::Live);
        assert_eq!(info.address(), &Address::Path(path.clone()));
        assert_eq!(info.server_pid(), Some(std::process::id()));
        assert!(info.server_process().is_some());
        assert_eq!(info.mode(), Some(Mode::Byte));
        assert_eq!(info.direction(), Some(Direction::Duplex));
        assert_eq!(info.access(), Some(Access::Owner));
        assert_eq!(info.permissions(), Some(0o600));
        let me = std::fs::metadata("/proc/self").expect("proc").uid();
        assert_eq!(info.owner_uid(), Some(me));
        let listed = list().expect("list");
        assert!(listed
            .iter()
            .any(|p| p.name().as_str() == name && p.is_live()));
        drop(listener);

        assert_eq!(
            inspect(name.as_str()).expect("inspect").state(),
            PipeState::Absent
        );

        // A socket file nobody listens on: what a killed server leaves behind.
        let stale = std::os::unix::net::UnixListener::bind(&path).expect("bind stale");
        drop(stale);
        let info = inspect(name.as_str()).expect("inspect");
        assert_eq!(info.state(), PipeState::Stale);
        assert_eq!(info.server_pid(), None);
        let listed = list().expect("list");
        assert!(listed
            .iter()
            .any(|p| p.name().as_str() == name && p.state() == PipeState::Stale));
        std::fs::remove_file(&path).expect("cleanup");
    }
}
