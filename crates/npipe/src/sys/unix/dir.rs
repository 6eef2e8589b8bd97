//! Pipe directories, held open.
//!
//! A pipe's socket and lock file live in a directory that other users may share
//! (`/tmp`) or that sits below directories others could write. Every operation on
//! those files is made relative to a descriptor of the directory, opened once after
//! checking the whole path, so nothing done later can be redirected by a directory
//! swapped in or a symlink planted meanwhile:
//!
//! - [`PipeDir::open`] walks the path from `/`, one `openat(…, O_NOFOLLOW)` per
//!   component, and checks each directory as OpenSSH's `StrictModes` does: owned by
//!   root or by the effective user, and not writable by group or others unless
//!   sticky. A symlink on the way must be owned by root or by the effective user;
//!   it is read and its target walked the same way. A component swapped between
//!   the check and the open fails the open (`O_NOFOLLOW`).
//! - Entries are examined with `fstatat(AT_SYMLINK_NOFOLLOW)`, opened with
//!   `O_NOFOLLOW`, and removed with `unlinkat` only after `fstatat` shows the very
//!   inode npipe created.
//! - Connecting never goes through a symlink at the socket path: only a socket is
//!   connected to, (Linux) through `/proc/self/fd/N` of an `O_PATH | O_NOFOLLOW`
//!   descriptor of it (see [`PipePath::connect_target`]).
//!
//! Binding is the one operation that takes a path string (there is no `bindat`); it
//! uses the canonical path, which the check above made sure no other user can
//! redirect (see `listener::bind_path`).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};

use super::record::Record;
use crate::error::{err, err_src, ErrorKind};

/// How a directory on the way to the pipe directory is opened: only to hold it and
/// look up names in it. Linux's `O_PATH` needs no permission on the directory
/// itself; elsewhere it is opened for reading, so a directory that may be searched
/// but not read (mode `--x`) cannot be used there.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DIR_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// A directory that holds pipes, opened after checking every directory on its
/// path, and held open: everything done in it is relative to this descriptor.
#[derive(Debug)]
pub(crate) struct PipeDir {
    fd: OwnedFd,
    /// The canonical path: for messages, and for `bind`, which takes a path.
    path: PathBuf,
}

impl PipeDir {
    /// Opens the directory `dir` after checking that no other user can change what
    /// it holds: every directory on the way from `/` (and `dir` itself) is owned by
    /// root or by the effective user and is not writable by group or others unless
    /// sticky, and every symlink on the way is owned by root or by the effective
    /// user. The path is resolved here, one `openat(O_NOFOLLOW)` per component, so
    /// what is checked is what is held: a symlink is read (`readlinkat`) and its
    /// target walked and checked the same way, and a component swapped between the
    /// check and the use fails the `O_NOFOLLOW` open.
    ///
    /// (Resolving first with `realpath` and checking the result would not do: a
    /// symlink on the way that another user owns — `/tmp/theirs` pointing at a
    /// directory of root's — resolves to a path that passes every check, and its
    /// owner decides where it leads.)
    ///
    /// Errors: `NotFound` if it does not exist; `AccessDenied` naming the unsafe
    /// directory or symlink, its owner and mode, and the fix; `InvalidName` if it
    /// is not a directory.
    pub(crate) fn open(dir: &Path) -> io::Result<PipeDir> {
        /// Symlinks followed before giving up, as Linux's `MAXSYMLINKS`.
        const MAX_LINKS: usize = 40;
        let me = nix::unistd::geteuid().as_raw();
        let absolute = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| err_src(ErrorKind::Io, "the current directory", e))?
                .join(dir)
        };
        let mut todo: VecDeque<OsString> = VecDeque::new();
        push_front(&mut todo, &absolute);
        let root = nix::fcntl::open("/", DIR_FLAGS, Mode::empty())
            .map_err(|e| err_src(ErrorKind::Io, "opening the root directory", e.into()))?;
        let root_entry = Entry::from(fstat(&root)?);
        check_dir(dir, Path::new("/"), &root_entry, me, is_final(&todo))?;
        // The directories walked, from `/` to the current one, each held and checked.
        let mut walked: Vec<(OwnedFd, PathBuf)> = vec![(root, PathBuf::from("/"))];
        let mut links = 0;
        while let Some(part) = todo.pop_front() {
            if part == "." {
                continue;
            }
            if part == ".." {
                if walked.len() > 1 {
                    walked.pop();
                }
                continue;
            }
            let Some((current, current_path)) = walked.last() else {
                break;
            };
            let path = current_path.join(&part);
            match openat(current, part.as_os_str(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => {
                    let entry = Entry::from(fstat(&fd)?);
                    check_dir(dir, &path, &entry, me, is_final(&todo))?;
                    walked.push((fd, path));
                }
                // O_NOFOLLOW met a symlink (Linux says ENOTDIR with O_PATH), or it
                // is not a directory.
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    let entry =
                        match fstatat(current, part.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                            Ok(stat) => Entry::from(stat),
                            Err(e) => return Err(open_error(dir, &path, e)),
                        };
                    if entry.kind != Kind::Symlink {
                        return Err(err(
                            ErrorKind::InvalidName,
                            format!(
                                "pipe directory {}: {} is {}, not a directory",
                                dir.display(),
                                path.display(),
                                entry.kind.describe()
                            ),
                        ));
                    }
                    check_link(dir, &path, &entry, me)?;
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(err_src(
                            ErrorKind::InvalidName,
                            format!("pipe directory {}: too many symbolic links", dir.display()),
                            Errno::ELOOP.into(),
                        ));
                    }
                    // Its owner is root or this user, and so is the directory that
                    // holds it: nobody else can change it before it is read.
                    let target = readlinkat(current, part.as_os_str())
                        .map_err(|e| open_error(dir, &path, e))?;
                    let target = Path::new(&target);
                    if target.is_absolute() {
                        walked.truncate(1);
                    }
                    push_front(&mut todo, target);
                }
                Err(e) => return Err(open_error(dir, &path, e)),
            }
        }
        let Some((fd, path)) = walked.pop() else {
            return Err(Errno::ENOENT.into());
        };
        Ok(PipeDir { fd, path })
    }

    /// The canonical path of the directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What is at `file` in the directory, not following a symlink; `None` if
    /// nothing is.
    pub(crate) fn stat(&self, file: &OsStr) -> io::Result<Option<Entry>> {
        match fstatat(&self.fd, file, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Entry::from(stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `file` if it is still the inode `id` (what npipe created). Whoever
    /// else could replace the entry between the check and the removal owns the
    /// directory or the entry (the directory checks admit no one else), so the
    /// check cannot be raced by another user.
    pub(crate) fn remove_if(&self, file: &OsStr, id: FileId) -> io::Result<bool> {
        match self.stat(file)? {
            Some(entry) if entry.id() == id => {
                match nix::unistd::unlinkat(&self.fd, file, nix::unistd::UnlinkatFlags::NoRemoveDir)
                {
                    Ok(()) | Err(Errno::ENOENT) => Ok(true),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(false),
        }
    }

    /// Whether this user may create files here (`faccessat(W_OK)` with the
    /// effective ids).
    pub(crate) fn writable(&self) -> bool {
        nix::unistd::faccessat(
            &self.fd,
            ".",
            nix::unistd::AccessFlags::W_OK,
            AtFlags::AT_EACCESS,
        )
        .is_ok()
    }

    /// Opens (creating it if absent) the lock file `file` for reading and writing,
    /// never through a symlink and never blocking on a fifo. The caller checks what
    /// it opened before using it.
    ///
    /// Mode 0600: `flock` needs only a descriptor open for reading, so a lock file
    /// others could read would let them hold a lock on it (a shared one) and keep
    /// its user from taking the name back after a crash. What others may read
    /// about the server is in the record file beside it ([`write_record`](Self::write_record)).
    pub(crate) fn open_lock(&self, file: &OsStr) -> nix::Result<File> {
        let fd = openat(
            &self.fd,
            file,
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(0o600),
        )?;
        Ok(File::from(fd))
    }

    /// Writes `text` as the record file `file` (created if absent, mode 0644: the
    /// record is there for others to read), only into a regular file of this user
    /// with one link, never through a symlink: what was written, or `None` when
    /// something else is there (the record is informational; a file planted by
    /// another user is left alone, and ignored by readers, see
    /// [`read_record`](Self::read_record)).
    pub(crate) fn write_record(&self, file: &OsStr, text: &str) -> io::Result<Option<FileId>> {
        use std::io::Write;
        let fd = openat(
            &self.fd,
            file,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(0o644),
        )?;
        let entry = Entry::from(fstat(&fd)?);
        let me = nix::unistd::geteuid().as_raw();
        if entry.kind != Kind::File || entry.uid != me || entry.nlink != 1 {
            return Ok(None);
        }
        // Readable by others whatever the umask: that is what it is for.
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o644))?;
        let mut file = File::from(fd);
        file.set_len(0)?;
        file.write_all(text.as_bytes())?;
        Ok(Some(entry.id()))
    }

    /// Reads the record file `file` (at most 4 KiB), only from a
    /// regular file and never through a symlink: what it is, and what it says.
    pub(crate) fn read_record(&self, file: &OsStr) -> Option<(Entry, Record)> {
        let fd = openat(
            &self.fd,
            file,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let entry = Entry::from(fstat(&fd).ok()?);
        if entry.kind != Kind::File {
            return None;
        }
        let mut text = String::new();
        let _ = File::from(fd).take(4096).read_to_string(&mut text);
        Some((entry, Record::parse(&text)))
    }

    /// The names in the directory, with what each is where the directory listing
    /// tells (`None`: ask [`stat`](Self::stat)).
    pub(crate) fn entries(&self) -> io::Result<Vec<(OsString, Option<Kind>)>> {
        use nix::dir::{Dir, Type};
        let mut dir = Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = entry.file_type().map(|t| match t {
                Type::Socket => Kind::Socket,
                Type::File => Kind::File,
                Type::Directory => Kind::Dir,
                Type::Symlink => Kind::Symlink,
                Type::Fifo => Kind::Fifo,
                _ => Kind::Other,
            });
            out.push((name.to_owned(), kind));
        }
        Ok(out)
    }

    /// Sets the mode of the socket `file` if it is still the inode `id`, without
    /// following a symlink and without a window in which the entry could be
    /// swapped between the check and the change (Linux: the change goes through a
    /// descriptor of the checked entry).
    pub(crate) fn chmod_socket(&self, file: &OsStr, id: FileId, mode: u32) -> io::Result<()> {
        let changed = || {
            err(
                ErrorKind::AddrInUse,
                format!(
                    "{} changed while npipe set its permissions",
                    self.path.join(file).display()
                ),
            )
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if proc_fd_works() {
            let entry = openat(
                &self.fd,
                file,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            if Entry::from(fstat(&entry)?).id() != id {
                return Err(changed());
            }
            // `fchmod` refuses an O_PATH descriptor; its /proc link names exactly
            // the inode checked above.
            let link = ProcFdPath::new(&entry);
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                link.as_str(),
                Mode::from_bits_truncate(mode as _),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
            return Ok(());
        }
        // The entry is ours, and the directory checks leave only its owner and
        // root able to replace it: the check holds until the change.
        if self.stat(file)?.map(|e| e.id()) != Some(id) {
            return Err(changed());
        }
        nix::sys::stat::fchmodat(
            &self.fd,
            file,
            Mode::from_bits_truncate(mode as _),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )?;
        Ok(())
    }
}

/// A file in a pipe directory: the socket of a pipe, with its lock file beside it.
#[derive(Debug, Clone)]
pub(crate) struct PipePath {
    dir: Arc<PipeDir>,
    file: OsString,
}

impl PipePath {
    pub(crate) fn new(dir: Arc<PipeDir>, file: OsString) -> PipePath {
        PipePath { dir, file }
    }

    pub(crate) fn dir(&self) -> &PipeDir {
        &self.dir
    }

    /// The file name in the directory.
    pub(crate) fn file(&self) -> &OsStr {
        &self.file
    }

    /// The full path (the canonical directory and the file name).
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path.join(&self.file)
    }

    /// Its length in bytes, as `sockaddr_un` counts it (without the final NUL).
    pub(crate) fn path_len(&self) -> usize {
        let dir = self.dir.path.as_os_str().len();
        let separator = usize::from(!self.dir.path.as_os_str().as_bytes().ends_with(b"/"));
        dir + separator + self.file.len()
    }

    /// The full path as a socket address, built without an allocation (connecting
    /// resolves the name every time).
    pub(crate) fn socket_addr(&self) -> io::Result<nix::sys::socket::UnixAddr> {
        let dir = self.dir.path.as_os_str().as_bytes();
        let file = self.file.as_bytes();
        let separator = usize::from(!dir.ends_with(b"/"));
        let len = dir.len() + separator + file.len();
        // Filled with '/': the separator between the two parts is already there.
        let mut buf = [b'/'; 128];
        let Some(path) = buf.get_mut(..len) else {
            return Err(Errno::ENAMETOOLONG.into());
        };
        path[..dir.len()].copy_from_slice(dir);
        path[len - file.len()..].copy_from_slice(file);
        Ok(nix::sys::socket::UnixAddr::new(OsStr::from_bytes(path))?)
    }

    /// The lock file that decides who owns the socket: `.<file name>.lock` beside
    /// it. Valid names never start with `.`, so it cannot be another pipe's socket.
    pub(crate) fn lock_file(&self) -> OsString {
        self.beside(".lock")
    }

    /// The record file beside the socket: `.<file name>.info`, the server's pid,
    /// mode, direction and access policy, readable by everyone (the lock file
    /// itself is not: see [`PipeDir::open_lock`]).
    pub(crate) fn record_file(&self) -> OsString {
        self.beside(".info")
    }

    /// `.<file name><suffix>`: a file beside the socket. Valid names never start
    /// with `.`, so it cannot be another pipe's socket.
    fn beside(&self, suffix: &str) -> OsString {
        let mut name = OsString::with_capacity(self.file.len() + 1 + suffix.len());
        name.push(".");
        name.push(&self.file);
        name.push(suffix);
        name
    }

    /// What is at the socket path now (not following a symlink).
    pub(crate) fn stat(&self) -> io::Result<Option<Entry>> {
        self.dir.stat(&self.file)
    }

    /// The address to connect to, and what must stay open until `connect` returns;
    /// never a way through a symlink at the socket path.
    ///
    /// Linux: the entry is opened with `O_PATH | O_NOFOLLOW` and reached through
    /// `/proc/self/fd/N`, so the kernel connects to exactly the inode that was
    /// checked: a socket with one link. A symlink (whatever it points to) or
    /// anything else that is not a socket is refused as `ECONNREFUSED`, as a
    /// socket nobody listens on, without connecting; a socket with more than one
    /// link (a hard link another user made to someone else's socket, where the
    /// kernel allows it) is refused too. This holds whoever owns the entry: in a
    /// shared sticky directory, a server's own socket vanishes when it stops or is
    /// reclaimed, and anyone may plant a symlink in its place at that moment, so
    /// checking the entry and then connecting by its path would be a race.
    ///
    /// Elsewhere, and on Linux without a usable `/proc`: `fstatat`, then the path
    /// (documented in SECURITY.md: a symlink planted between the two would be
    /// followed).
    pub(crate) fn connect_target(&self) -> io::Result<ConnectTarget> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if proc_fd_works() {
            let fd = openat(
                &self.dir.fd,
                self.file.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let entry = Entry::from(fstat(&fd)?);
            check_connectable(&entry)?;
            let addr = nix::sys::socket::UnixAddr::new(ProcFdPath::new(&fd).as_str())?;
            return Ok(ConnectTarget {
                addr,
                _entry: Some(fd),
            });
        }
        match self.stat()? {
            None => Err(Errno::ENOENT.into()),
            Some(entry) => {
                check_connectable(&entry)?;
                Ok(ConnectTarget {
                    addr: self.socket_addr()?,
                    _entry: None,
                })
            }
        }
    }
}

/// A socket with one link: what a client connects to. Anything else at the socket
/// path is `ECONNREFUSED` (not a pipe's socket, so nobody listens), a socket
/// removed since it was opened is `ENOENT`, and a socket with more links, which
/// only a hard link can make, is refused by name.
fn check_connectable(entry: &Entry) -> io::Result<()> {
    if entry.kind != Kind::Socket {
        return Err(Errno::ECONNREFUSED.into());
    }
    if entry.nlink == 0 {
        // Removed since it was opened: the server is gone.
        return Err(Errno::ENOENT.into());
    }
    if entry.nlink > 1 {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "refusing a socket file with {} links: another name for it was made (a hard link), so it may be someone else's socket",
                entry.nlink
            ),
        ));
    }
    Ok(())
}

/// An address for `connect`, with the descriptor it refers to (Linux).
#[derive(Debug)]
pub(crate) struct ConnectTarget {
    pub(crate) addr: nix::sys::socket::UnixAddr,
    _entry: Option<OwnedFd>,
}

impl From<nix::sys::socket::UnixAddr> for ConnectTarget {
    fn from(addr: nix::sys::socket::UnixAddr) -> ConnectTarget {
        ConnectTarget { addr, _entry: None }
    }
}

/// `/proc/self/fd/N`, on the stack.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct ProcFdPath {
    buf: [u8; 32],
    len: usize,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl ProcFdPath {
    fn new(fd: &impl std::os::fd::AsRawFd) -> ProcFdPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 10];
        let mut n = fd.as_raw_fd().unsigned_abs();
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, digit) in digits[..count].iter().rev().enumerate() {
            buf[PREFIX.len() + i] = *digit;
        }
        ProcFdPath {
            buf,
            len: PREFIX.len() + count,
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("/proc/self/fd/")
    }
}

/// Whether `/proc/self/fd/N` leads to the inode of descriptor N here (procfs
/// mounted). Asked once per process.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn proc_fd_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let Ok(root) = nix::fcntl::open("/", DIR_FLAGS, Mode::empty()) else {
            return false;
        };
        let (Ok(direct), Ok(through_proc)) = (
            fstat(&root),
            nix::sys::stat::stat(ProcFdPath::new(&root).as_str()),
        ) else {
            return false;
        };
        (direct.st_dev, direct.st_ino) == (through_proc.st_dev, through_proc.st_ino)
    })
}

/// Identifies a file: `(st_dev, st_ino)`.
pub(crate) type FileId = (u64, u64);

/// What kind of file a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Socket,
    File,
    Dir,
    Symlink,
    Fifo,
    Other,
}

impl Kind {
    /// "a socket", "a symbolic link", ...: for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Socket => "a socket",
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a fifo",
            Kind::Other => "a device or other special file",
        }
    }
}

/// The facts of `lstat`/`fstat` npipe decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    pub(crate) uid: u32,
    /// Permission bits, with set-id and sticky bits (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
}

impl Entry {
    pub(crate) fn id(&self) -> FileId {
        (self.dev, self.ino)
    }
}

impl From<FileStat> for Entry {
    // The field types differ between systems (`st_mode` is 16 bits on macOS).
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from(stat: FileStat) -> Entry {
        let mode = stat.st_mode as u32;
        let kind = match mode & (nix::libc::S_IFMT as u32) {
            m if m == nix::libc::S_IFSOCK as u32 => Kind::Socket,
            m if m == nix::libc::S_IFREG as u32 => Kind::File,
            m if m == nix::libc::S_IFDIR as u32 => Kind::Dir,
            m if m == nix::libc::S_IFLNK as u32 => Kind::Symlink,
            m if m == nix::libc::S_IFIFO as u32 => Kind::Fifo,
            _ => Kind::Other,
        };
        Entry {
            kind,
            uid: stat.st_uid as u32,
            mode: mode & 0o7777,
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            nlink: stat.st_nlink as u64,
        }
    }
}

/// The components of `path` in front of `todo` (the root is implied).
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(part) => todo.push_front(part.to_owned()),
            Component::ParentDir => todo.push_front(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

/// Whether nothing but `.` and `..` is left to walk: the directory just opened is
/// the pipe directory itself (for the wording of a refusal).
fn is_final(todo: &VecDeque<OsString>) -> bool {
    todo.iter().all(|part| part == "." || part == "..")
}

/// An `openat` on the way to the pipe directory failed.
fn open_error(dir: &Path, path: &Path, e: Errno) -> io::Error {
    let kind = match e {
        Errno::ENOENT => ErrorKind::NotFound,
        Errno::EACCES | Errno::EPERM => ErrorKind::AccessDenied,
        Errno::ENOTDIR | Errno::ELOOP => ErrorKind::InvalidName,
        _ => ErrorKind::Io,
    };
    let context = if path == dir {
        format!("pipe directory {}", dir.display())
    } else {
        format!("pipe directory {}: {}", dir.display(), path.display())
    };
    err_src(kind, context, e.into())
}

/// A symlink on the way must be owned by root or by this user: its owner decides
/// where it leads (and can replace it, even in a sticky directory).
fn check_link(dir: &Path, path: &Path, entry: &Entry, me: u32) -> io::Result<()> {
    if entry.uid != 0 && entry.uid != me {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "refusing pipe directory {}: {} is a symbolic link that belongs to uid {}, who could point it elsewhere; use the directory it leads to, or a link owned by you or by root",
                dir.display(),
                path.display(),
                entry.uid
            ),
        ));
    }
    Ok(())
}

/// The rule of OpenSSH's `StrictModes` for one directory on the way to (or being)
/// the pipe directory.
fn check_dir(dir: &Path, walked: &Path, entry: &Entry, me: u32, last: bool) -> io::Result<()> {
    if entry.kind != Kind::Dir {
        return Err(err(
            ErrorKind::InvalidName,
            format!("pipe directory {} is not a directory", walked.display()),
        ));
    }
    let writable_by_others = entry.mode & 0o022 != 0 && entry.mode & 0o1000 == 0;
    let foreign_owner = entry.uid != 0 && entry.uid != me;
    if last {
        if writable_by_others {
            return Err(err(
                ErrorKind::AccessDenied,
                format!(
                    "refusing pipe directory {} (mode {:o}, owner uid {}): other users can write to it and it has no sticky bit, so they could replace sockets; use chmod o-w,g-w or chmod +t",
                    dir.display(),
                    entry.mode,
                    entry.uid
                ),
            ));
        }
        if foreign_owner {
            return Err(err(
                ErrorKind::AccessDenied,
                format!(
                    "refusing pipe directory {}: it belongs to uid {}, who could replace sockets in it; use a directory owned by you or by root",
                    dir.display(),
                    entry.uid
                ),
            ));
        }
        return Ok(());
    }
    if writable_by_others {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "refusing pipe directory {}: the directory {} above it (mode {:o}, owner uid {}) is writable by other users and has no sticky bit, so they could swap the directories below it; use chmod o-w,g-w or chmod +t on {}, or another directory",
                dir.display(),
                walked.display(),
                entry.mode,
                entry.uid,
                walked.display()
            ),
        ));
    }
    if foreign_owner {
        return Err(err(
            ErrorKind::AccessDenied,
            format!(
                "refusing pipe directory {}: the directory {} above it belongs to uid {} (mode {:o}), who could swap the directories below it; use a directory whose every parent is owned by you or by root",
                dir.display(),
                walked.display(),
                entry.uid,
                entry.mode
            ),
        ));
    }
    Ok(())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn proc_fd_paths_are_spelled_out() {
        struct Raw(i32);
        impl std::os::fd::AsRawFd for Raw {
            fn as_raw_fd(&self) -> i32 {
                self.0
            }
        }
        assert_eq!(ProcFdPath::new(&Raw(0)).as_str(), "/proc/self/fd/0");
        assert_eq!(ProcFdPath::new(&Raw(7)).as_str(), "/proc/self/fd/7");
        assert_eq!(
            ProcFdPath::new(&Raw(i32::MAX)).as_str(),
            "/proc/self/fd/2147483647"
        );
    }
}
