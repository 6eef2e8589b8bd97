//! Inspecting pipes without connecting to them: where a name lives, whether a live
//! server owns it, and who that server is (what `npipe info` and `npipe list` print).
//!
//! On Linux everything comes from the file system and `/proc`: the socket file's
//! owner and permissions, the listening sockets in `/proc/net/unix`, the processes
//! holding them (`/proc/PID/fd`, readable for your own processes), and the record
//! a server writes in its lock file (`pid=.. mode=.. direction=.. access=..`).
//! Nothing here connects, so servers see no client.

use std::fmt;
use std::io;

use crate::name::{Address, PipeName, ToPipeName};
use crate::options::{Access, Direction, Mode};

/// Whether a server owns a pipe right now, as seen by [`inspect`] and [`list`].
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
/// through its lock file record, not through `/proc`).
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
    /// `/proc`, own processes), else the pid its lock file records.
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
/// Linux reads `/proc` and never connects. Other Unix systems find whether a server
/// listens by connecting and closing at once. Windows reports the address and
/// whether the pipe exists.
pub fn inspect(name: impl ToPipeName) -> io::Result<PipeInfo> {
    let name = name.to_pipe_name()?;
    let address = name.address()?;
    imp::inspect(name, address)
}

/// Lists the pipes in this user's namespace: on Unix the socket files (and leftover
/// lock files) in the pipe directory, `/tmp/npipe-*` or `$NPIPE_DIR/*`, sorted by
/// name. Linux abstract `@NAME` pipes have no file and are not listed; use
/// [`inspect`] for them.
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

/// The value of `key` in a lock file record `pid=.. mode=.. direction=.. access=..`.
#[cfg_attr(not(unix), allow(dead_code))]
fn record_field<'a>(record: &'a str, key: &str) -> Option<&'a str> {
    record
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg_attr(not(unix), allow(dead_code))]
fn parse_mode(s: &str) -> Option<Mode> {
    match s {
        "byte" => Some(Mode::Byte),
        "message" => Some(Mode::Message),
        _ => None,
    }
}

#[cfg_attr(not(unix), allow(dead_code))]
fn parse_direction(s: &str) -> Option<Direction> {
    match s {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        "duplex" => Some(Direction::Duplex),
        _ => None,
    }
}

#[cfg_attr(not(unix), allow(dead_code))]
fn parse_access(s: &str) -> Option<Access> {
    match s {
        "owner" => Some(Access::Owner),
        "group" => Some(Access::Group),
        "everyone" => Some(Access::Everyone),
        _ => None,
    }
}

#[cfg(unix)]
mod imp {
    use std::collections::{HashMap, HashSet};
    use std::fs;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    use super::{parse_access, parse_direction, parse_mode, record_field, PipeInfo, PipeState};
    use crate::name::{Address, PipeName};
    use crate::sys;

    /// What the system says about listening sockets: path (`@name` for abstract
    /// ones) to socket inode, and inode to the process holding it.
    #[derive(Debug, Default)]
    struct Listening {
        /// `None` where the OS gives no table (not Linux).
        by_path: Option<HashMap<Vec<u8>, u64>>,
        owners: HashMap<u64, u32>,
    }

    impl Listening {
        fn read() -> Listening {
            Listening::scan(None)
        }

        /// Only the socket of `address`, whose holder is looked for first in
        /// process `hint` (the pid its lock file records): describing one pipe
        /// then costs a few system calls, not a scan of every process (`npipe
        /// call` checks the pipe's mode this way before each call).
        fn read_one(address: &Address, hint: Option<u32>) -> Listening {
            match key(address) {
                Some(key) => Listening::scan(Some((&key, hint))),
                None => Listening::read(),
            }
        }

        #[cfg_attr(
            not(any(target_os = "linux", target_os = "android")),
            allow(unused_variables)
        )]
        fn scan(only: Option<(&[u8], Option<u32>)>) -> Listening {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                let Ok(table) = fs::read("/proc/net/unix") else {
                    return Listening::default();
                };
                let mut by_path: HashMap<Vec<u8>, u64> = super::procfs::listening(&table)
                    .into_iter()
                    .map(|(inode, path)| (path, inode))
                    .collect();
                if let Some((key, _)) = only {
                    by_path.retain(|path, _| path == key);
                }
                let inodes: HashSet<u64> = by_path.values().copied().collect();
                let hint = only.and_then(|(_, hint)| hint);
                let owners = super::procfs::socket_owners(&inodes, hint);
                Listening {
                    by_path: Some(by_path),
                    owners,
                }
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            {
                Listening::default()
            }
        }

        /// `Some(pid or None)` when listening, `None` when not.
        fn lookup(&self, name: &PipeName, address: &Address) -> io::Result<Option<Option<u32>>> {
            let Some(key) = key(address) else {
                return Ok(None);
            };
            match &self.by_path {
                Some(table) => Ok(table.get(&key).map(|inode| self.owners.get(inode).copied())),
                None => Ok(sys::is_listening(name)?.then_some(None)),
            }
        }
    }

    /// How `/proc/net/unix` names the socket of `address`.
    fn key(address: &Address) -> Option<Vec<u8>> {
        match address {
            Address::Path(path) => Some(path.as_os_str().as_bytes().to_vec()),
            Address::Abstract(name) => Some(format!("@{name}").into_bytes()),
            Address::Windows(_) => None,
        }
    }

    pub(super) fn inspect(name: PipeName, address: Address) -> io::Result<PipeInfo> {
        let hint = match &address {
            Address::Path(path) => record_field(&read_record(&sys::lock_path(path)), "pid")
                .and_then(|pid| pid.parse::<u32>().ok()),
            _ => None,
        };
        let listening = Listening::read_one(&address, hint);
        describe(name, address, &listening)
    }

    pub(super) fn list() -> io::Result<Vec<PipeInfo>> {
        let (dir, prefix) = sys::pipe_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let lock_prefix = format!(".{prefix}");
        let mut names = HashSet::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let candidate = if let Some(rest) = file.strip_prefix(&lock_prefix) {
                rest.strip_suffix(".lock")
            } else if let Some(rest) = file.strip_prefix(prefix) {
                // Only sockets: `/tmp/npipe-*` may hold unrelated files.
                match entry.file_type() {
                    Ok(t) if t.is_socket() => Some(rest),
                    _ => None,
                }
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
            let Ok(address) = name.address() else {
                continue;
            };
            out.push(describe(name, address, &listening)?);
        }
        Ok(out)
    }

    fn describe(name: PipeName, address: Address, listening: &Listening) -> io::Result<PipeInfo> {
        let mut info = PipeInfo::new(name, address.clone());
        let live = listening.lookup(&info.name, &address)?;
        let mut files_exist = false;
        let mut record = String::new();
        if let Address::Path(path) = &address {
            if let Ok(meta) = fs::symlink_metadata(path) {
                if meta.file_type().is_socket() {
                    files_exist = true;
                    info.owner_uid = Some(meta.uid());
                    info.permissions = Some(meta.mode() & 0o7777);
                }
            }
            let lock = sys::lock_path(path);
            if let Ok(meta) = fs::symlink_metadata(&lock) {
                files_exist = true;
                info.owner_uid.get_or_insert(meta.uid());
                record = read_record(&lock);
            }
        }
        info.state = match (&live, files_exist) {
            (Some(_), _) => PipeState::Live,
            (None, true) => PipeState::Stale,
            (None, false) => PipeState::Absent,
        };
        let recorded_pid = record_field(&record, "pid").and_then(|p| p.parse::<u32>().ok());
        info.mode = record_field(&record, "mode").and_then(parse_mode);
        info.direction = record_field(&record, "direction").and_then(parse_direction);
        info.access = record_field(&record, "access").and_then(parse_access);
        if let Some(found) = live {
            info.server_pid = found.or(recorded_pid);
        }
        if let Some(pid) = info.server_pid {
            info.server_process = process_name(pid);
            if info.owner_uid.is_none() {
                info.owner_uid = process_uid(pid);
            }
        }
        info.owner_name = info.owner_uid.and_then(user_name);
        Ok(info)
    }

    /// The lock file's record; empty if unreadable (it is informational).
    fn read_record(lock: &Path) -> String {
        use std::io::Read;
        let mut text = String::new();
        // O_NOFOLLOW: never read through a link someone planted.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(lock);
        if let Ok(file) = file {
            let _ = file.take(4096).read_to_string(&mut text);
        }
        text
    }

    fn process_name(pid: u32) -> Option<String> {
        let comm = fs::read_to_string(PathBuf::from(format!("/proc/{pid}/comm"))).ok()?;
        let comm = comm.trim_end();
        (!comm.is_empty()).then(|| comm.to_owned())
    }

    fn process_uid(pid: u32) -> Option<u32> {
        fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
    }

    fn user_name(uid: u32) -> Option<String> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name)
    }
}

/// Linux `/proc` parsing: pure functions over the table text, plus the fd scan.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod procfs {
    use std::collections::{HashMap, HashSet};

    /// The listening stream sockets in a `/proc/net/unix` table: `(inode, path)`, the
    /// path as `@name` for abstract sockets. Unparsable lines are skipped.
    pub(super) fn listening(table: &[u8]) -> Vec<(u64, Vec<u8>)> {
        const SO_ACCEPTCON: u32 = 0x0001_0000;
        let mut out = Vec::new();
        for line in table.split(|b| *b == b'\n').skip(1) {
            // Num RefCount Protocol Flags Type St Inode Path (the path may hold spaces)
            let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
            let fixed: Vec<&[u8]> = fields.by_ref().take(7).collect();
            let [_, _, _, flags, kind, _, inode] = fixed[..] else {
                continue;
            };
            let flags = std::str::from_utf8(flags)
                .ok()
                .and_then(|f| u32::from_str_radix(f, 16).ok())
                .unwrap_or(0);
            let inode = std::str::from_utf8(inode)
                .ok()
                .and_then(|i| i.parse::<u64>().ok());
            // Type 0001 is SOCK_STREAM.
            let (Some(inode), true) = (inode, flags & SO_ACCEPTCON != 0 && kind == b"0001") else {
                continue;
            };
            let path: Vec<&[u8]> = fields.collect();
            if !path.is_empty() {
                out.push((inode, path.join(&b' ')));
            }
        }
        out
    }

    /// `socket:[INODE]` → INODE.
    pub(super) fn socket_inode(link: &[u8]) -> Option<u64> {
        let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    /// Which process holds each of `inodes`, scanning `/proc/*/fd` (only processes
    /// this user may inspect): process `first` if it holds them all, else the
    /// lowest pid when several share a socket.
    pub(super) fn socket_owners(inodes: &HashSet<u64>, first: Option<u32>) -> HashMap<u64, u32> {
        let mut owners = HashMap::new();
        if inodes.is_empty() {
            return owners;
        }
        if let Some(pid) = first {
            holders(pid, inodes, &mut owners);
            if owners.len() == inodes.len() {
                return owners;
            }
            owners.clear();
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return owners;
        };
        let mut pids: Vec<u32> = procs
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            holders(pid, inodes, &mut owners);
            if owners.len() == inodes.len() {
                break;
            }
        }
        owners
    }

    /// Records `pid` as the owner of those of `inodes` it holds that have none yet.
    fn holders(pid: u32, inodes: &HashSet<u64>, owners: &mut HashMap<u64, u32>) {
        use std::os::unix::ffi::OsStrExt;
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(link.as_os_str().as_bytes()) {
                if inodes.contains(&inode) {
                    owners.entry(inode).or_insert(pid);
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const TABLE: &[u8] = b"Num       RefCount Protocol Flags    Type St Inode Path
000000005e76ac8c: 00000002 00000000 00010000 0001 01 1510614 /tmp/npipe-demo
000000000f29abee: 00000002 00000000 00010000 0001 01 228778 @abstract
00000000d0f91e68: 00000003 00000000 00000000 0001 03 228143 /tmp/npipe-connected
00000000d0f91e69: 00000002 00000000 00010000 0002 01 228144 /tmp/dgram
00000000d0f91e6a: 00000002 00000000 00010000 0001 01 228145 /tmp/with space
00000000d0f91e6b: 00000002 00000000 00010000 0001 01 228146
garbage line
";

        #[test]
        fn listening_sockets_are_parsed() {
            let got = listening(TABLE);
            assert_eq!(
                got,
                vec![
                    (1510614, b"/tmp/npipe-demo".to_vec()),
                    (228778, b"@abstract".to_vec()),
                    (228145, b"/tmp/with space".to_vec()),
                ]
            );
        }

        #[test]
        fn socket_links_are_parsed() {
            assert_eq!(socket_inode(b"socket:[1510614]"), Some(1510614));
            assert_eq!(socket_inode(b"pipe:[12]"), None);
            assert_eq!(socket_inode(b"socket:[x]"), None);
            assert_eq!(socket_inode(b"/dev/null"), None);
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::io;

    use super::{PipeInfo, PipeState};
    use crate::name::{Address, PipeName};
    use crate::sys;

    pub(super) fn inspect(name: PipeName, address: Address) -> io::Result<PipeInfo> {
        let mut info = PipeInfo::new(name, address);
        if sys::is_listening(&info.name)? {
            info.state = PipeState::Live;
        }
        Ok(info)
    }

    pub(super) fn list() -> io::Result<Vec<PipeInfo>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(r"\\.\pipe\")? {
            let Ok(entry) = entry else { continue };
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| PipeName::new(n).ok())
            else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields_are_read() {
        let record = "pid=42 mode=byte direction=inbound access=group\n";
        assert_eq!(record_field(record, "pid"), Some("42"));
        assert_eq!(
            record_field(record, "mode").and_then(parse_mode),
            Some(Mode::Byte)
        );
        assert_eq!(
            record_field(record, "direction").and_then(parse_direction),
            Some(Direction::Inbound)
        );
        assert_eq!(
            record_field(record, "access").and_then(parse_access),
            Some(Access::Group)
        );
        assert_eq!(record_field("", "pid"), None);
        assert_eq!(record_field("pid", "pid"), None);
        assert_eq!(
            record_field("mode=weird", "mode").and_then(parse_mode),
            None
        );
    }

    /// A live listener, then the stale socket file a crashed server leaves, then nothing.
    #[cfg(any(target_os = "linux", target_os = "android"))]
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
