//! The server end: owning a name, binding the socket securely, accepting clients.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket;

use super::connect::{abstract_addr, raw_connect};
use super::cred::in_supplementary_group;
use super::dir::FileId;
use super::gate::{self, Gate};
use super::record::Record;
use super::stream::{SendBuffer, Stream, SEND_FLAGS};
use super::{Endpoint, Kind, PipePath};
use crate::error::{err, err_src, ErrorKind};
use crate::name::{Address, PipeName};
use crate::options::{Access, Direction, ListenerOptions};
use crate::peer::PeerCredentials;

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
    /// Serving a socket a service manager passed (see `activation`): it owns the
    /// socket's file, so npipe keeps no lock or record for it and removes nothing.
    activated: bool,
    /// Dropped after `sock`'s users are gone: removes the socket and lock files.
    _owned: Option<OwnedName>,
}

impl Listener {
    pub(crate) fn create(name: PipeName, opts: ListenerOptions) -> io::Result<Listener> {
        let endpoint = name.endpoint()?;
        let address = endpoint.address();
        let backlog = Gate::initial_backlog(opts.max_instances, opts.pending_instances);
        let (sock, owned) = match &endpoint {
            Endpoint::File(path) => {
                let (sock, owned) = bind_path(&name, path, &opts, backlog)?;
                (sock, Some(owned))
            }
            Endpoint::Abstract(abstract_name) => {
                (bind_abstract(&name, abstract_name, backlog)?, None)
            }
        };
        let check_peer = !matches!(address, Address::Path(_))
            || opts.access == Access::Group
            || !opts.allow_uids.is_empty()
            || !opts.allow_gids.is_empty();
        let listener = Listener::serving(name, endpoint, sock, opts, check_peer, false, owned)?;
        tracing::debug!(pipe = %listener.name, address = %listener.address, "listening");
        Ok(listener)
    }

    /// Serves the listening socket a service manager passed to this process for
    /// pipe `name` (see `activation::take`) instead of creating one. The manager
    /// owns its file: no lock, no record, nothing removed.
    ///
    /// Every client's credentials are checked against the access policy on
    /// accept, whatever the policy: the manager set the file's mode
    /// (`SocketMode=`), so the mode cannot be trusted to say the policy. The
    /// instance gate applies as to a socket npipe created: it sets the listen
    /// backlog again (`pending_instances`), and gives the socket back with the
    /// system's maximum backlog when the listener is dropped.
    pub(crate) fn activated(name: PipeName, opts: ListenerOptions) -> io::Result<Listener> {
        let endpoint = name.endpoint()?;
        let activated = super::activation::take(&name, &endpoint)?;
        let listener = Listener::serving(name, endpoint, activated.socket, opts, true, true, None)?;
        tracing::debug!(pipe = %listener.name, address = %listener.address, socket = %activated.description, "listening on the socket the service manager passed");
        Ok(listener)
    }

    /// The listener of `sock` at `endpoint`, behind a new instance gate (see
    /// the fields for the rest).
    fn serving(
        name: PipeName,
        endpoint: Endpoint,
        sock: UnixListener,
        opts: ListenerOptions,
        check_peer: bool,
        activated: bool,
        owned: Option<OwnedName>,
    ) -> io::Result<Listener> {
        let address = endpoint.address();
        let sock = Arc::new(sock);
        let gate = Gate::new(&sock, endpoint, opts.max_instances, opts.pending_instances)?;
        Ok(Listener {
            sock,
            name,
            address,
            gate,
            denied: AtomicU64::new(0),
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            check_peer,
            activated,
            opts,
            _owned: owned,
        })
    }

    /// Whether this listener serves a socket a service manager passed.
    #[cfg(feature = "tokio")]
    pub(crate) fn is_activated(&self) -> bool {
        self.activated
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

impl Drop for Listener {
    fn drop(&mut self) {
        // The service manager keeps the socket (it may start the server again for
        // the next client): leave it as the manager would, not as the gate made it.
        if self.activated {
            self.gate.hand_back(&self.sock);
        }
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

fn bind_abstract(name: &PipeName, abstract_name: &str, backlog: i32) -> io::Result<UnixListener> {
    let fd = super::new_socket(false)?;
    match socket::bind(fd.as_raw_fd(), &abstract_addr(abstract_name)?) {
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

/// Takes the name, reclaims a stale socket, binds with the access policy's mode,
/// and records who serves it. Every file operation is relative to the held pipe
/// directory and never follows a symlink (see `dir`).
///
/// `bind` is the one call that takes a path: there is no `bindat`. It gets the
/// canonical path, not `/proc/self/fd/N/NAME`: the directory checks made sure that
/// no other user can change any directory on that path, and the kernel records
/// the string given to `bind` as the socket's address, which clients see
/// (`getpeername`), `ss` and `/proc/net/unix` print, and which must fit in
/// `sun_path` (`/proc/self/fd/N/` is longer than `/tmp/`). After `bind`, `fstatat`
/// in the held directory must find a socket of ours, whose inode is recorded so
/// that only it is ever removed.
///
/// The mode: Linux gives the new file the socket's own mode less the umask, so the
/// socket gets the policy's mode (`fchmod`) before `bind` and the file never has a
/// wider one. Where the umask took bits the policy grants (0660, 0666), they are
/// added through the checked entry after `bind`. Other systems create the file with
/// `0777 & ~umask`, and the policy's mode is set the same way after `bind`. Either
/// way it is done before `listen`, and until then every connection is refused.
fn bind_path(
    name: &PipeName,
    target: &PipePath,
    opts: &ListenerOptions,
    backlog: i32,
) -> io::Result<(UnixListener, OwnedName)> {
    // Before the lock file appears beside it: an explicit path may name any file
    // (`/etc/passwd`), and nothing is created next to a file that is not a socket.
    // `reclaim_stale` decides again under the lock.
    if let Ok(Some(entry)) = target.stat() {
        if entry.kind != Kind::Socket {
            return Err(not_a_socket(name, target, entry.kind));
        }
    }
    let lock = take_lock(name, target)?;
    let mut owned = OwnedName {
        target: target.clone(),
        socket: None,
        lock_file: target.lock_file(),
        lock: Some(lock),
        record_file: target.record_file(),
        record: None,
    };
    reclaim_stale(name, target)?;
    let fd = super::new_socket(false)?;
    let mode = socket_mode(opts);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(mode as _))?;
    let path = target.path();
    match socket::bind(fd.as_raw_fd(), &target.socket_addr()?) {
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
    let me = nix::unistd::geteuid().as_raw();
    let bound = match target.stat()? {
        Some(entry) if entry.kind == Kind::Socket && entry.uid == me => entry,
        other => {
            return Err(err(
                ErrorKind::AddrInUse,
                format!(
                    "pipe {name}: after bind, {} holds {} rather than npipe's socket (was the directory replaced?)",
                    path.display(),
                    other.map_or("nothing", |e| e.kind.describe())
                ),
            ))
        }
    };
    owned.socket = Some(bound.id());
    if bound.mode & 0o777 != mode {
        target.dir().chmod_socket(target.file(), bound.id(), mode)?;
    }
    gate::listen(&fd, backlog)?;
    owned.record(opts);
    Ok((UnixListener::from(fd), owned))
}

/// Opens and locks the name's lock file; the holder owns the name.
///
/// Only a regular file of this user with one link is used: anything else planted
/// at the lock path (a symlink, a fifo, another user's file, a hard link to some
/// other file) is refused with `AddrInUse` naming what it is and whose, and is
/// never truncated, written or removed.
fn take_lock(name: &PipeName, target: &PipePath) -> io::Result<Flock<File>> {
    let dir = target.dir();
    let lock_file = target.lock_file();
    let lock_path = dir.path().join(&lock_file);
    let me = nix::unistd::geteuid().as_raw();
    // What is at the lock path, if it is not a regular file of this user's.
    let refusal = |entry: &super::dir::Entry| -> Option<io::Error> {
        if entry.kind == Kind::File && entry.uid != me {
            return Some(err(
                ErrorKind::AddrInUse,
                format!(
                    "pipe {name} belongs to another user (uid {}): the lock file {} is theirs; npipe will not use or remove it",
                    entry.uid,
                    lock_path.display()
                ),
            ));
        }
        let whose = if entry.uid == me {
            String::new()
        } else {
            format!(" that belongs to uid {}", entry.uid)
        };
        (entry.kind != Kind::File).then(|| {
            err(
                ErrorKind::AddrInUse,
                format!(
                    "pipe {name}: the lock file {} is {}{whose}; npipe will not use or remove it",
                    lock_path.display(),
                    entry.kind.describe()
                ),
            )
        })
    };
    // Attempts to open an entry that vanished between the failed open and the look
    // at it (someone is planting and removing things there).
    let mut vanished = 0;
    loop {
        let file = match dir.open_lock(&lock_file) {
            Ok(file) => file,
            // The open failed: O_NOFOLLOW met a symlink (ELOOP; FreeBSD says
            // EMLINK; Linux says EACCES for another user's symlink in a sticky
            // directory), or it is something that cannot be opened for writing
            // (a socket, a directory, another user's file). Say what is there.
            Err(e) => match dir.stat(&lock_file)? {
                Some(entry) => {
                    return Err(refusal(&entry).unwrap_or_else(|| {
                        err_src(
                            ErrorKind::Io,
                            format!("opening the lock file {}", lock_path.display()),
                            e.into(),
                        )
                    }))
                }
                // Nothing there, and this user may not create it: the directory
                // refuses (it is not writable by this user, or read-only). Not a
                // name in use. (In a sticky directory the same errors come from
                // another user's symlink that has vanished since: retried below.)
                None if matches!(e, Errno::EACCES | Errno::EPERM | Errno::EROFS)
                    && !dir.writable() =>
                {
                    return Err(err_src(
                        ErrorKind::AccessDenied,
                        format!(
                            "cannot create the lock file {} (uid {me} may not create files in {})",
                            lock_path.display(),
                            dir.path().display()
                        ),
                        e.into(),
                    ))
                }
                None if !matches!(
                    e,
                    Errno::ELOOP | Errno::EMLINK | Errno::ENOENT | Errno::EACCES | Errno::EPERM
                ) =>
                {
                    return Err(err_src(
                        ErrorKind::Io,
                        format!("creating the lock file {}", lock_path.display()),
                        e.into(),
                    ))
                }
                None if vanished < 100 => {
                    vanished += 1;
                    continue;
                }
                None => {
                    return Err(err_src(
                        ErrorKind::AddrInUse,
                        format!(
                        "pipe {name}: something keeps appearing and vanishing at the lock file {}",
                        lock_path.display()
                    ),
                        e.into(),
                    ))
                }
            },
        };
        let entry = super::dir::Entry::from(nix::sys::stat::fstat(&file)?);
        if let Some(refused) = refusal(&entry) {
            return Err(refused);
        }
        if entry.nlink != 1 {
            return Err(err(
                ErrorKind::AddrInUse,
                format!(
                    "pipe {name}: the lock file {} has {} hard links (it is also another file); npipe will not use or remove it",
                    lock_path.display(),
                    entry.nlink
                ),
            ));
        }
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                // The holder's record, if it is this user's (it is: so is the lock).
                let pid = dir
                    .read_record(&target.record_file())
                    .filter(|(entry, _)| entry.uid == me)
                    .and_then(|(_, record)| record.pid)
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
        if dir.stat(&lock_file)?.map(|now| now.id()) == Some(entry.id()) {
            lock.set_len(0)?;
            // A lock file left by an older npipe may be readable by others.
            nix::sys::stat::fchmod(&*lock, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
            return Ok(lock);
        }
    }
}

/// Removes a socket file left by a server that died, after making sure nothing
/// listens on it. Refuses anything that is not a socket, or not this user's (root
/// included: npipe never removes another user's file).
fn reclaim_stale(name: &PipeName, target: &PipePath) -> io::Result<()> {
    let Some(entry) = target.stat()? else {
        return Ok(());
    };
    let path = target.path();
    if entry.kind != Kind::Socket {
        return Err(not_a_socket(name, target, entry.kind));
    }
    let me = nix::unistd::geteuid().as_raw();
    if entry.uid != me {
        return Err(err(
            ErrorKind::AddrInUse,
            format!(
                "pipe {name}: the socket {} belongs to uid {}; npipe will not remove another user's socket",
                path.display(),
                entry.uid
            ),
        ));
    }
    match raw_connect(&Endpoint::File(target.clone()), None) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ECONNREFUSED) => {
            tracing::debug!(path = %path.display(), "reclaiming a stale socket file");
            target.dir().remove_if(target.file(), entry.id())?;
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(()),
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

/// Something that is not a socket is at the socket path.
fn not_a_socket(name: &PipeName, target: &PipePath, kind: Kind) -> io::Error {
    err(
        ErrorKind::AddrInUse,
        format!(
            "pipe {name}: {} exists and is {}, not a socket; npipe will not remove it",
            target.path().display(),
            kind.describe()
        ),
    )
}

/// The files a path-named listener owns, removed when it is dropped.
#[derive(Debug)]
struct OwnedName {
    target: PipePath,
    /// The socket file npipe bound, once it did.
    socket: Option<FileId>,
    lock_file: OsString,
    lock: Option<Flock<File>>,
    record_file: OsString,
    /// The record file npipe wrote, once it did.
    record: Option<FileId>,
}

impl OwnedName {
    fn record(&mut self, opts: &ListenerOptions) {
        let line = Record::serving(opts).to_string();
        // Informational only: without it, others see less of the pipe in `info`.
        match self.target.dir().write_record(&self.record_file, &line) {
            Ok(written) => self.record = written,
            Err(e) => tracing::debug!(error = %e, "could not write the record file"),
        }
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        let dir = self.target.dir();
        // Remove the socket only if it is still the one we bound.
        if let Some(socket) = self.socket {
            let _ = dir.remove_if(self.target.file(), socket);
        }
        if let Some(record) = self.record {
            let _ = dir.remove_if(&self.record_file, record);
        }
        // Remove the lock file while still holding the lock: a process that opened
        // it meanwhile sees the inode change and starts over.
        if let Some(lock) = &self.lock {
            if let Ok(ours) = nix::sys::stat::fstat(&**lock) {
                let ours = super::dir::Entry::from(ours);
                let _ = dir.remove_if(&self.lock_file, ours.id());
            }
        }
        self.lock = None;
    }
}
