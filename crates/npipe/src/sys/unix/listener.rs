//! The server end: owning a name, binding the socket securely, accepting clients.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket;

use super::cred::in_supplementary_group;
use super::gate::{self, Gate};
use super::stream::{raw_connect, unix_addr, SendBuffer, Stream, SEND_FLAGS};
use crate::error::{err, err_src, ErrorKind};
use crate::name::{Address, PipeName};
use crate::options::{Access, Direction, ListenerOptions};
use crate::stream::PeerCredentials;

#[derive(Debug)]
pub(crate) struct Listener {
    sock: Arc<UnixListener>,
    name: PipeName,
    address: Address,
    opts: ListenerOptions,
    gate: Arc<Gate>,
    denied: AtomicU64,
    euid: u32,
    egid: u32,
    /// Whether accepting asks who the client is: the file mode of a socket file
    /// already admits exactly the owner and root (`Owner`) or everyone
    /// (`Everyone`), so only abstract sockets, groups (the kernel counts
    /// supplementary groups its own way) and allow lists need the check; and
    /// `SO_PEERCRED` is a system call on every connection. A stream that was
    /// not checked asks when `peer_credentials` is called.
    check_peer: bool,
    /// Dropped after `sock`'s users are gone: removes the socket and lock files.
    _owned: Option<OwnedName>,
}

impl Listener {
    pub(crate) fn create(name: PipeName, opts: ListenerOptions) -> io::Result<Listener> {
        let address = name.address()?;
        let backlog = Gate::initial_backlog(opts.max_instances, opts.pending_instances);
        let (sock, owned) = match &address {
            Address::Path(path) => {
                let (sock, owned) = bind_path(&name, path, &opts, backlog)?;
                (sock, Some(owned))
            }
            _ => (bind_abstract(&name, &address, backlog)?, None),
        };
        let sock = Arc::new(sock);
        let gate = Gate::new(
            &sock,
            address.clone(),
            opts.max_instances,
            opts.pending_instances,
        )?;
        tracing::debug!(pipe = %name, address = %address, "listening");
        let check_peer = !matches!(address, Address::Path(_))
            || opts.access == Access::Group
            || !opts.allow_uids.is_empty()
            || !opts.allow_gids.is_empty();
        Ok(Listener {
            sock,
            name,
            address,
            gate,
            denied: AtomicU64::new(0),
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            check_peer,
            opts,
            _owned: owned,
        })
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        loop {
            self.gate.reserve();
            let conn = match self.sock.accept() {
                Ok((conn, _)) => conn,
                Err(e) => {
                    self.gate.unreserve();
                    if is_transient_accept_error(&e) {
                        continue;
                    }
                    return Err(e);
                }
            };
            if let Some(stream) = self.finish_accept(conn)? {
                return Ok(stream);
            }
        }
    }

    /// What every accept does once the kernel handed over a connection, blocking or
    /// async: checks the peer against the access policy, turns the caller's gate
    /// reservation into a connected instance, sizes the buffers and shuts the
    /// direction the pipe does not carry. Consumes the reservation either way.
    /// `Ok(None)`: the client was refused (and counted in `denied`).
    pub(crate) fn finish_accept(&self, conn: UnixStream) -> io::Result<Option<Stream>> {
        let peer = if self.check_peer {
            let creds = super::peer_credentials(&conn);
            match &creds {
                Ok(c) if self.admits(c) => Some(*c),
                _ => {
                    self.gate.unreserve();
                    self.denied.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(pipe = %self.name, peer = ?creds.ok(), "client refused by the access policy");
                    send_refusal(&conn);
                    return Ok(None);
                }
            }
        } else {
            None
        };
        let slot = self.gate.admit();
        let send_buffer = SendBuffer::new(&conn, self.opts.buffer_size);
        match self.opts.direction {
            Direction::Inbound => conn.shutdown(std::net::Shutdown::Write)?,
            Direction::Outbound => conn.shutdown(std::net::Shutdown::Read)?,
            Direction::Duplex => {}
        }
        Ok(Some(Stream::from_accepted(
            conn,
            self.opts.mode,
            self.opts.direction,
            self.opts.max_message_size,
            slot,
            peer,
            send_buffer,
        )))
    }

    /// The listening socket, for an async acceptor that accepts on (a duplicate of)
    /// it and then calls [`finish_accept`](Self::finish_accept).
    #[cfg(feature = "tokio")]
    pub(crate) fn socket(&self) -> &UnixListener {
        &self.sock
    }

    /// The instance gate, for async acceptors (`reserve_async`, `unreserve`).
    #[cfg(feature = "tokio")]
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Whether the peer may use this pipe under the access policy.
    fn admits(&self, peer: &PeerCredentials) -> bool {
        let (Some(uid), gid) = (peer.uid(), peer.gid()) else {
            return false;
        };
        if uid == self.euid || uid == 0 || self.opts.allow_uids.contains(&uid) {
            return true;
        }
        if gid.is_some_and(|g| self.opts.allow_gids.contains(&g)) {
            return true;
        }
        match self.opts.access {
            Access::Everyone => true,
            Access::Group => {
                gid == Some(self.egid)
                    || peer
                        .pid()
                        .is_some_and(|pid| in_supplementary_group(pid, self.egid))
            }
            Access::Owner => false,
        }
    }

    pub(crate) fn name(&self) -> &PipeName {
        &self.name
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn instances(&self) -> u32 {
        self.gate.connected()
    }

    /// How many more clients could connect now without waiting.
    #[cfg(feature = "tokio")]
    pub(crate) fn listening(&self) -> u32 {
        self.gate.listening()
    }

    pub(crate) fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    pub(crate) fn options(&self) -> &ListenerOptions {
        &self.opts
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Tells a client refused after connecting why it is about to be disconnected:
/// writes [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE), which the kernel delivers
/// before the reset that closing a connection with unread bytes (the client's
/// request) causes. Never waits: a refused client must not stall the acceptor,
/// and the socket of a fresh connection has room for 24 bytes anyway.
fn send_refusal(conn: &UnixStream) {
    let flags = SEND_FLAGS | socket::MsgFlags::MSG_DONTWAIT;
    // The client may be gone already; it then needs no explanation.
    let _ = socket::send(conn.as_raw_fd(), crate::frame::REFUSAL_NOTICE, flags);
}

/// Accept failures that concern one connection only (it was reset before being
/// accepted, or a signal interrupted the call): the caller simply tries again.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO)
    )
}

/// The socket file mode for an access policy.
fn socket_mode(opts: &ListenerOptions) -> u32 {
    if !opts.allow_uids.is_empty() || !opts.allow_gids.is_empty() {
        return 0o666;
    }
    match opts.access {
        Access::Owner => 0o600,
        Access::Group => 0o660,
        Access::Everyone => 0o666,
    }
}

fn bind_abstract(name: &PipeName, address: &Address, backlog: i32) -> io::Result<UnixListener> {
    let fd = super::new_socket(false)?;
    match socket::bind(fd.as_raw_fd(), &unix_addr(address)?) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => {
            return Err(err(
                ErrorKind::AddrInUse,
                format!("pipe {name} is already served by another process"),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    gate::listen(&fd, backlog)?;
    Ok(UnixListener::from(fd))
}

/// Takes the name, reclaims a stale socket, binds with the access policy's mode
/// set before `listen` (connections are refused until `listen`, so there is no
/// window in which the wrong users can connect), and records who serves it.
fn bind_path(
    name: &PipeName,
    path: &Path,
    opts: &ListenerOptions,
    backlog: i32,
) -> io::Result<(UnixListener, OwnedName)> {
    let lock_path = super::lock_path(path);
    let lock = take_lock(name, &lock_path)?;
    let mut owned = OwnedName {
        socket_path: path.to_owned(),
        socket_ino: None,
        lock_path,
        lock: Some(lock),
    };
    reclaim_stale(name, path)?;
    let fd = super::new_socket(false)?;
    match socket::bind(fd.as_raw_fd(), &unix_addr(&Address::Path(path.to_owned()))?) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => {
            return Err(err(
                ErrorKind::AddrInUse,
                format!(
                    "pipe {name}: {} was created by another process while npipe held the name",
                    path.display()
                ),
            ))
        }
        Err(e @ (Errno::EACCES | Errno::EPERM | Errno::EROFS)) => {
            return Err(err_src(
                ErrorKind::AccessDenied,
                format!("cannot create the socket {}", path.display()),
                e.into(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let meta = fs::symlink_metadata(path)?;
    owned.socket_ino = Some((meta.dev(), meta.ino()));
    fs::set_permissions(path, fs::Permissions::from_mode(socket_mode(opts)))?;
    gate::listen(&fd, backlog)?;
    owned.record(opts);
    Ok((UnixListener::from(fd), owned))
}

/// Opens and locks the name's lock file; the holder owns the name.
fn take_lock(name: &PipeName, lock_path: &Path) -> io::Result<Flock<File>> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(lock_path);
        let file = match file {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(err_src(
                    ErrorKind::AccessDenied,
                    format!(
                        "refusing the lock file {}: it is a symbolic link",
                        lock_path.display()
                    ),
                    e,
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let owner = fs::symlink_metadata(lock_path)
                    .map(|m| m.uid().to_string())
                    .unwrap_or_else(|_| "unknown".to_owned());
                return Err(err_src(
                    ErrorKind::AddrInUse,
                    format!("pipe {name} belongs to another user (uid {owner})"),
                    e,
                ));
            }
            Err(e) => return Err(e),
        };
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut info = String::new();
                let _ = file.read_to_string(&mut info);
                let pid = parse_record(&info)
                    .pid
                    .map_or_else(String::new, |p| format!(" (pid {p})"));
                return Err(err(
                    ErrorKind::AddrInUse,
                    format!("pipe {name} is already served by another process{pid}"),
                ));
            }
            Err((_, e)) => return Err(e.into()),
        };
        // The previous owner may have removed the file between our open and lock;
        // then we locked an orphan and must start again.
        let ours = lock.metadata()?;
        match fs::symlink_metadata(lock_path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                lock.set_len(0)?;
                return Ok(lock);
            }
            _ => continue,
        }
    }
}

/// Removes a socket file left by a server that died, after making sure nothing
/// listens on it. Refuses anything that is not a socket or belongs to someone else.
fn reclaim_stale(name: &PipeName, path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(err(
            ErrorKind::AddrInUse,
            format!(
                "pipe {name}: {} exists and is not a socket; npipe will not remove it",
                path.display()
            ),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && me != 0 {
        return Err(err(
            ErrorKind::AddrInUse,
            format!(
                "pipe {name}: the socket {} belongs to uid {}; only that user or root can remove it",
                path.display(),
                meta.uid()
            ),
        ));
    }
    match raw_connect(&Address::Path(path.to_owned()), None) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ECONNREFUSED) => {
            tracing::debug!(path = %path.display(), "reclaiming a stale socket file");
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) if e.raw_os_error() != Some(nix::libc::EAGAIN) => Err(e),
        _ => Err(err(
            ErrorKind::AddrInUse,
            format!(
                "pipe {name}: a process is listening on {} without holding npipe's lock",
                path.display()
            ),
        )),
    }
}

/// What a lock file says about the server that holds it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pid: Option<u32>,
    pub(crate) mode: Option<String>,
}

pub(crate) fn parse_record(text: &str) -> Record {
    let mut record = Record::default();
    for field in text.split_whitespace() {
        match field.split_once('=') {
            Some(("pid", v)) => record.pid = v.parse().ok(),
            Some(("mode", v)) => record.mode = Some(v.to_owned()),
            _ => {}
        }
    }
    record
}

/// The files a path-named listener owns, removed when it is dropped.
#[derive(Debug)]
struct OwnedName {
    socket_path: PathBuf,
    socket_ino: Option<(u64, u64)>,
    lock_path: PathBuf,
    lock: Option<Flock<File>>,
}

impl OwnedName {
    fn record(&mut self, opts: &ListenerOptions) {
        if let Some(lock) = self.lock.as_mut() {
            let line = format!(
                "pid={} mode={} direction={} access={}\n",
                std::process::id(),
                opts.mode.as_str(),
                opts.direction.as_str(),
                opts.access.as_str()
            );
            // Informational only: a failed write leaves an empty record.
            let _ = lock.write_all(line.as_bytes());
        }
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        // Remove the socket only if it is still the one we bound.
        if let (Some(ino), Ok(meta)) = (self.socket_ino, fs::symlink_metadata(&self.socket_path)) {
            if (meta.dev(), meta.ino()) == ino {
                let _ = fs::remove_file(&self.socket_path);
            }
        }
        // Remove the lock file while still holding the lock: a process that opened
        // it meanwhile sees the inode change and starts over.
        if let Some(lock) = &self.lock {
            if let (Ok(ours), Ok(now)) = (lock.metadata(), fs::symlink_metadata(&self.lock_path)) {
                if ours.ino() == now.ino() && ours.dev() == now.dev() {
                    let _ = fs::remove_file(&self.lock_path);
                }
            }
        }
        self.lock = None;
    }
}
