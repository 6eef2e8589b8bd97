//! Builders for listeners and client connections.

use std::io;
use std::time::Duration;

use crate::listener::Listener;
use crate::name::ToPipeName;
use crate::stream::Stream;

/// A builder setter that stores its argument in the field of the same name:
/// `pub fn NAME(&mut self, VALUE: TYPE) -> &mut Self`, with the docs given.
macro_rules! setter {
    ($(#[$doc:meta])* $name:ident($value:ident: $type:ty)) => {
        $(#[$doc])*
        pub fn $name(&mut self, $value: $type) -> &mut Self {
            self.$name = $value;
            self
        }
    };
}

/// Default maximum message size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: u32 = 16 * 1024 * 1024;

/// Default connect timeout: 5 s, the original `WAIT_TIME`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default number of listening instances kept ready for new clients.
pub const DEFAULT_PENDING_INSTANCES: u32 = 4;

/// Default socket buffer size in each direction (`nOutBufferSize`/`nInBufferSize`).
pub const DEFAULT_BUFFER_SIZE: usize = 1024 * 1024;

/// How data is delimited on the pipe.
///
/// Both ends must use the same mode: [`ListenerOptions::mode`] and
/// [`ConnectOptions::mode`].
///
/// # Examples
///
/// A byte stream, as with a plain socket: nothing is added on the wire, and
/// `Read`/`Write` move the bytes.
///
/// ```no_run
/// use std::io::Write;
/// use npipe::{ConnectOptions, Mode};
///
/// let mut stream = ConnectOptions::new().mode(Mode::Byte).connect("logs")?;
/// stream.write_all(b"one line\n")?;
/// assert_eq!(stream.mode().as_str(), "byte");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// A byte stream: what one side writes the other reads, nothing added
    /// (`PIPE_TYPE_BYTE | PIPE_READMODE_BYTE`).
    Byte,
    /// Messages whose boundaries are preserved (`PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE`).
    /// On Unix each message travels as a 4-byte little-endian length and the payload.
    #[default]
    Message,
}

impl Mode {
    /// `"byte"` or `"message"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Byte => "byte",
            Mode::Message => "message",
        }
    }

    /// The mode whose [`as_str`](Self::as_str) is `name`.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn from_name(name: &str) -> Option<Mode> {
        named([Mode::Byte, Mode::Message], Mode::as_str, name)
    }
}

/// Which way data flows, seen from the server (`PIPE_ACCESS_*`).
///
/// # Examples
///
/// An inbound pipe: clients send events, the server only reads them.
///
/// ```no_run
/// use npipe::{ConnectOptions, Direction, ListenerOptions};
///
/// let listener = ListenerOptions::new()
///     .direction(Direction::Inbound)
///     .create("events")?;
/// // The client says it only writes.
/// let mut client = ConnectOptions::new()
///     .direction(Direction::Inbound)
///     .connect("events")?;
/// client.send(b"started")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Client to server only (`PIPE_ACCESS_INBOUND`).
    Inbound,
    /// Server to client only (`PIPE_ACCESS_OUTBOUND`).
    Outbound,
    /// Both ways (`PIPE_ACCESS_DUPLEX`).
    #[default]
    Duplex,
}

impl Direction {
    pub(crate) fn server_reads(self) -> bool {
        self != Direction::Outbound
    }
    pub(crate) fn server_writes(self) -> bool {
        self != Direction::Inbound
    }
    /// `"inbound"`, `"outbound"` or `"duplex"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Duplex => "duplex",
        }
    }

    /// The direction whose [`as_str`](Self::as_str) is `name`.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn from_name(name: &str) -> Option<Direction> {
        let all = [Direction::Inbound, Direction::Outbound, Direction::Duplex];
        named(all, Direction::as_str, name)
    }
}

/// Who may connect to a pipe.
///
/// The default, [`Access::Owner`], admits only the user that created the pipe (and
/// root / `SYSTEM`). Extra users and groups can be admitted with
/// [`ListenerOptions::allow_uid`] and [`ListenerOptions::allow_gid`].
///
/// # Examples
///
/// ```no_run
/// use npipe::{Access, ListenerOptions};
///
/// // Members of the creating user's group may connect too.
/// let listener = ListenerOptions::new().access(Access::Group).create("team")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Access {
    /// Only the creating user (Unix socket file mode `0600`; Windows DACL: owner and SYSTEM).
    #[default]
    Owner,
    /// The creating user and members of its group (mode `0660`).
    Group,
    /// Every local user (mode `0666`; Windows: authenticated users).
    Everyone,
}

impl Access {
    /// `"owner"`, `"group"` or `"everyone"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Owner => "owner",
            Access::Group => "group",
            Access::Everyone => "everyone",
        }
    }

    /// The policy whose [`as_str`](Self::as_str) is `name`.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn from_name(name: &str) -> Option<Access> {
        named(
            [Access::Owner, Access::Group, Access::Everyone],
            Access::as_str,
            name,
        )
    }
}

/// The one of `all` that `as_str` names `name`: each name is written once, in
/// `as_str`.
#[cfg_attr(not(unix), allow(dead_code))]
fn named<T: Copy, const N: usize>(
    all: [T; N],
    as_str: fn(T) -> &'static str,
    name: &str,
) -> Option<T> {
    all.into_iter().find(|&value| as_str(value) == name)
}

/// Options for creating a pipe server, like Windows' `CreateNamedPipe` parameters.
///
/// One options value makes every instance: configure it once, then call
/// [`create`](Self::create).
///
/// # Examples
///
/// ```no_run
/// use npipe::{ListenerOptions, Mode};
///
/// let listener = ListenerOptions::new()
///     .mode(Mode::Message)
///     .max_message_size(1024 * 1024)
///     .pending_instances(8)
///     .create("orders")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    pub(crate) mode: Mode,
    pub(crate) direction: Direction,
    pub(crate) max_instances: Option<u32>,
    pub(crate) pending_instances: u32,
    pub(crate) max_message_size: u32,
    pub(crate) access: Access,
    pub(crate) allow_uids: Vec<u32>,
    pub(crate) allow_gids: Vec<u32>,
    pub(crate) buffer_size: usize,
    pub(crate) reject_remote: bool,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            mode: Mode::Message,
            direction: Direction::Duplex,
            max_instances: None,
            pending_instances: DEFAULT_PENDING_INSTANCES,
            max_message_size: DEFAULT_MAX_MESSAGE,
            access: Access::Owner,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            buffer_size: DEFAULT_BUFFER_SIZE,
            reject_remote: true,
        }
    }
}

impl ListenerOptions {
    /// The defaults: message mode, duplex, unlimited instances, 4 pending, 16 MiB
    /// messages, owner-only access.
    pub fn new() -> ListenerOptions {
        ListenerOptions::default()
    }

    setter! {
        /// Byte or message mode (`PIPE_TYPE_*` and `PIPE_READMODE_*`). Default:
        /// [`Mode::Message`].
        mode(mode: Mode)
    }

    setter! {
        /// Which way data flows (`PIPE_ACCESS_INBOUND/OUTBOUND/DUPLEX`). Default:
        /// [`Direction::Duplex`]. Writing on an end that may not write fails with
        /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
        direction(direction: Direction)
    }

    /// At most this many clients connected at once, 1..=254, or `None` for unlimited
    /// (`nMaxInstances`, `PIPE_UNLIMITED_INSTANCES`). Default: unlimited.
    ///
    /// A client that arrives while all are connected waits up to its connect timeout
    /// and then fails with [`ErrorKind::PipeBusy`](crate::ErrorKind::PipeBusy).
    ///
    /// # Panics
    ///
    /// If `max` is `Some(0)` or above 254.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // At most 8 clients at once; the 9th waits, then gets `PipeBusy`.
    /// let listener = npipe::ListenerOptions::new()
    ///     .max_instances(Some(8))
    ///     .create("orders")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_instances(&mut self, max: Option<u32>) -> &mut Self {
        if let Some(max) = max {
            assert!(
                (1..=254).contains(&max),
                "max_instances must be 1..=254 or None (unlimited), got {max}"
            );
        }
        self.max_instances = max;
        self
    }

    /// How many instances stay listening, ready for clients that arrive while the
    /// server is busy with others. Default: 4.
    ///
    /// Windows: the number of instances created ahead with `CreateNamedPipe`, each
    /// waiting in `ConnectNamedPipe` on a thread of its own (the original
    /// `PipeManager`); clients connected but not yet accepted count against it.
    /// Unix: the `listen` backlog (kept at or below the free instances when
    /// `max_instances` is set).
    ///
    /// A client that finds every pending instance taken waits, up to its connect
    /// timeout, until the server accepts one (then fails with `PipeBusy`). Many
    /// clients that each connect for one request arrive faster than a server
    /// busy with others accepts them; raise this for them. In npipe's benchmark,
    /// 8 such client processes against a pool of 4 threads calling
    /// [`Listener::accept`](crate::Listener::accept) reached 0.84× the
    /// connection rate of a hand-written Unix socket pool (whose queue, like
    /// `std`'s, holds 128) with 4 pending instances and 1.01× with 64; the
    /// managed `Server` (feature `tokio`), which always keeps a thread in
    /// `accept`, reached 1.04× with the default. On Unix a pending instance
    /// costs nothing until a client takes it; on Windows each is a pipe
    /// instance created ahead.
    ///
    /// # Panics
    ///
    /// If `pending` is 0.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // Many short-lived clients, each connecting for one request.
    /// let listener = npipe::ListenerOptions::new()
    ///     .pending_instances(64)
    ///     .create("jobs")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pending_instances(&mut self, pending: u32) -> &mut Self {
        assert!(pending >= 1, "pending_instances must be at least 1");
        self.pending_instances = pending;
        self
    }

    setter! {
        /// Largest message accepted, in bytes, up to 4 GiB - 1. Default: 16 MiB.
        ///
        /// A peer that announces a larger message is refused before anything is allocated
        /// ([`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge)).
        ///
        /// # Examples
        ///
        /// ```no_run
        /// // Requests are small: refuse anything over 64 KiB.
        /// let listener = npipe::ListenerOptions::new()
        ///     .max_message_size(64 * 1024)
        ///     .create("orders")?;
        /// # Ok::<(), std::io::Error>(())
        /// ```
        max_message_size(bytes: u32)
    }

    setter! {
        /// Who may connect. Default: [`Access::Owner`].
        ///
        /// Unix: the socket file's mode, set before `listen` so there is no window in which
        /// others can connect, and a check of the peer's credentials on accept (the only
        /// protection for abstract `@NAME` sockets). Windows: the pipe's DACL (a protected
        /// DACL granting the owner and `SYSTEM` everything; `Group` and `Everyone` add
        /// read/write, but never `FILE_CREATE_PIPE_INSTANCE`, for the user's primary group
        /// or for authenticated users).
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use npipe::{Access, ListenerOptions};
        ///
        /// // Every local user may connect: a public service.
        /// let listener = ListenerOptions::new().access(Access::Everyone).create("status")?;
        /// # Ok::<(), std::io::Error>(())
        /// ```
        access(access: Access)
    }

    /// Also admits user `uid` (checked against the peer's credentials on accept).
    /// May be called repeatedly. The socket file becomes connectable by all users so
    /// that the listed ones can reach it; everyone else is refused on accept.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // The owner, and the service account with uid 990 (say, a web server).
    /// let listener = npipe::ListenerOptions::new().allow_uid(990).create("backend")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix only: on Windows, `create` fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) rather than ignore it.
    pub fn allow_uid(&mut self, uid: u32) -> &mut Self {
        self.allow_uids.push(uid);
        self
    }

    /// Also admits peers whose primary group is `gid` (checked on accept). May be
    /// called repeatedly.
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix only, as [`allow_uid`](Self::allow_uid).
    pub fn allow_gid(&mut self, gid: u32) -> &mut Self {
        self.allow_gids.push(gid);
        self
    }

    setter! {
        /// Kernel buffer size for each direction of every connection, in bytes
        /// (`nInBufferSize`/`nOutBufferSize`; Unix `SO_SNDBUF`/`SO_RCVBUF`, capped by the
        /// system's maximum). Default: 1 MiB. Memory is only used when data is queued.
        ///
        /// ## Platform-specific behavior
        ///
        /// Linux limits a Unix socket by the sender's `SO_SNDBUF` only; npipe sets it once
        /// the connection has sent 256 KiB (sizes of 256 KiB and more), so connections
        /// that carry small messages don't pay a system call for it.
        buffer_size(bytes: usize)
    }

    /// Refuse clients from other machines (`PIPE_REJECT_REMOTE_CLIENTS`, else
    /// `PIPE_ACCEPT_REMOTE_CLIENTS`). Default: true.
    ///
    /// ## Platform-specific behavior
    ///
    /// Windows: with `false`, a client on another machine may open
    /// `\\THIS-MACHINE\pipe\NAME` through SMB, and is admitted if the
    /// [`access`](Self::access) policy admits the account it logged on to this machine
    /// as; nothing else changes (the pipe's DACL is the same, see `SECURITY.md`). With
    /// `true` the system refuses such clients with access denied, whatever the DACL.
    ///
    /// Unix sockets are always local, and this option changes nothing there: a client
    /// on another machine reaches a Unix pipe through ssh, as a local user of this
    /// machine.
    pub fn reject_remote_clients(&mut self, reject: bool) -> &mut Self {
        self.reject_remote = reject;
        self
    }

    /// Creates the pipe and starts listening (`CreateNamedPipe` with
    /// `FILE_FLAG_FIRST_PIPE_INSTANCE`).
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName): the name is invalid
    ///   or its socket path is too long.
    /// - [`ErrorKind::AddrInUse`](crate::ErrorKind::AddrInUse): a live server owns the
    ///   name, or its files belong to another user. A stale socket file left by a
    ///   server that died is reclaimed instead.
    /// - [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied): the pipe directory
    ///   is unsafe or not writable.
    /// - [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): a remote name (a
    ///   server creates pipes on its own machine only).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{ErrorKind, ListenerOptions};
    ///
    /// match ListenerOptions::new().create("orders") {
    ///     Ok(listener) => println!("serving at {}", listener.address()),
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::AddrInUse => {
    ///         eprintln!("another server already owns the name: {e}");
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create(&self, name: impl ToPipeName) -> io::Result<Listener> {
        Listener::create(name.to_pipe_name()?, self.clone())
    }
}

/// Options for connecting a client, like Windows' `CreateFile` + `WaitNamedPipe`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use npipe::ConnectOptions;
///
/// let mut stream = ConnectOptions::new()
///     .timeout(Duration::from_millis(500))
///     .connect("orders")?;
/// stream.send(b"hello")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) timeout: Duration,
    pub(crate) mode: Mode,
    pub(crate) direction: Direction,
    pub(crate) max_message_size: u32,
    pub(crate) buffer_size: usize,
    pub(crate) expect_server_uid: Option<u32>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: DEFAULT_CONNECT_TIMEOUT,
            mode: Mode::Message,
            direction: Direction::Duplex,
            max_message_size: DEFAULT_MAX_MESSAGE,
            buffer_size: DEFAULT_BUFFER_SIZE,
            expect_server_uid: None,
        }
    }
}

impl ConnectOptions {
    /// The defaults: 5 s timeout, message mode, duplex, 16 MiB messages.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    setter! {
        /// How long to wait while the pipe does not exist yet or all its instances are
        /// busy (`WaitNamedPipe`). `Duration::ZERO` tries once. Default: 5 s.
        ///
        /// It bounds connecting only; to bound what follows too, give the stream a
        /// deadline ([`Stream::set_deadline`]), as [`call`](crate::call) does.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use std::time::Duration;
        ///
        /// // A server that starts along with this client may take a while to appear.
        /// let stream = npipe::ConnectOptions::new()
        ///     .timeout(Duration::from_secs(30))
        ///     .connect("orders")?;
        /// # Ok::<(), std::io::Error>(())
        /// ```
        ///
        /// ## Platform-specific behavior
        ///
        /// Unix, a remote pipe (`\\HOST\pipe\NAME`): it bounds the wait for the pipe
        /// on HOST, as here; ssh has up to 15 s more to connect and log in.
        timeout(timeout: Duration)
    }

    setter! {
        /// Byte or message mode; must match the server's (`PIPE_READMODE_*` set with
        /// `SetNamedPipeHandleState`). Default: [`Mode::Message`].
        mode(mode: Mode)
    }

    setter! {
        /// What this client will do, seen from the server as for
        /// [`ListenerOptions::direction`] (`GENERIC_READ`/`GENERIC_WRITE`): with
        /// [`Direction::Inbound`] the client only writes, with `Outbound` it only reads.
        /// Default: [`Direction::Duplex`].
        direction(direction: Direction)
    }

    setter! {
        /// Largest message this client accepts or sends. Default: 16 MiB.
        max_message_size(bytes: u32)
    }

    setter! {
        /// Kernel buffer size for each direction. Default: 1 MiB. As
        /// [`ListenerOptions::buffer_size`] (on Linux, applied once 256 KiB have been sent).
        buffer_size(bytes: usize)
    }

    /// Requires the server process to run as user `uid`; a connection to a server run
    /// by anybody else is closed and fails with
    /// [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied). This defends
    /// against a squatter that created the name first.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // A system service runs as root: refuse to talk to anyone else at its name.
    /// let stream = npipe::ConnectOptions::new()
    ///     .expect_server_uid(0)
    ///     .connect("system-agent")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// Unix only: on Windows, connecting fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) (Windows has no uids;
    /// there the pipe's DACL and `FILE_FLAG_FIRST_PIPE_INSTANCE` guard the name).
    ///
    /// For a remote pipe (`\\HOST\pipe\NAME`, through ssh), `uid` is a uid of
    /// HOST's user database, checked against the server process as npipe on HOST
    /// saw it (see [`Stream::peer_credentials`]).
    pub fn expect_server_uid(&mut self, uid: u32) -> &mut Self {
        self.expect_server_uid = Some(uid);
        self
    }

    /// Connects (`CreateFile` with `WaitNamedPipe` on `ERROR_PIPE_BUSY`).
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`](crate::ErrorKind::NotFound): no live server appeared
    ///   within the timeout.
    /// - [`ErrorKind::PipeBusy`](crate::ErrorKind::PipeBusy): the server exists but no
    ///   instance became free within the timeout.
    /// - [`ErrorKind::AccessDenied`](crate::ErrorKind::AccessDenied): the access policy
    ///   refuses this user, or the server is not the expected user.
    /// - [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName),
    ///   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): as for names.
    /// - A remote pipe on Unix (below): the kinds above as HOST's npipe met them,
    ///   the message starting with "on HOST: "; `AccessDenied` when ssh could not
    ///   log in ("ssh could not log in to HOST: " and what ssh said), `Io` when it
    ///   could not connect, `Timeout` when HOST did not answer in time,
    ///   `Unsupported` when npipe is not installed on HOST (or not on the `PATH`
    ///   of a non-interactive ssh session there) or there is no ssh client here,
    ///   `InvalidData` when HOST printed something other than npipe's answer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::{ConnectOptions, ErrorKind};
    ///
    /// let mut options = ConnectOptions::new();
    /// options.timeout(Duration::from_secs(1));
    /// match options.connect("orders") {
    ///     Ok(mut stream) => stream.send(b"hello")?,
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::NotFound => eprintln!("no server is running"),
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::PipeBusy => eprintln!("the server is busy"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Pipe `jobs` on machine build-01 (through ssh on Unix, SMB on Windows):
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use npipe::ConnectOptions;
    ///
    /// let mut stream = ConnectOptions::new()
    ///     .timeout(Duration::from_secs(2))
    ///     .connect(r"\\build-01\pipe\jobs")?;
    /// stream.send(b"status")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// ## Platform-specific behavior
    ///
    /// On Unix, where the socket file's mode cannot tell who may connect (abstract
    /// `@NAME` sockets, [`Access::Group`], allow lists), the server checks the
    /// client's credentials after accepting it, so connecting succeeds and the
    /// refusal comes with the first `send` or `recv` of a message client, as
    /// `AccessDenied` (see [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE)). A byte-mode
    /// client reads the notice's bytes.
    ///
    /// On Windows, `\\HOST\pipe\NAME` is opened through SMB like a local pipe, and
    /// the timeout applies the same way. Two errors are its own: `AccessDenied` when
    /// the server does not accept clients from other machines
    /// ([`ListenerOptions::reject_remote_clients`]), when its DACL does not admit the
    /// account HOST authenticated, or when HOST would not log this user on; and,
    /// at once rather than after the timeout, [`ErrorKind::Io`](crate::ErrorKind::Io)
    /// with `io::ErrorKind::HostUnreachable` when HOST cannot be reached (unknown,
    /// down, TCP port 445 blocked, or no SMB client for pipes, as under Wine).
    ///
    /// On Unix, `\\HOST\pipe\NAME` runs the system's ssh client: `ssh HOST npipe
    /// bridge --handshake NAME`, with one end of a socket pair as ssh's stdin and
    /// stdout and the other as the stream's socket, so everything a stream does
    /// works the same. Your ssh config, keys, agent and `known_hosts` apply, and
    /// HOST resolves `NAME` by its own rules (its `NPIPE_DIR`, its `/tmp`). The
    /// ssh command is `$NPIPE_SSH` (default `ssh`; split at white space, e.g.
    /// `ssh -F ~/.ssh/pipes_config`) with `-T -e none -o BatchMode=yes` and no
    /// forwardings; npipe on HOST is `$NPIPE_REMOTE_NPIPE` (default `npipe`, found
    /// on the `PATH` of a non-interactive ssh session there). Before returning,
    /// the stream reads the bridge's one-line answer: the server's credentials
    /// (see [`Stream::peer_credentials`]) or why connecting failed on HOST. When
    /// the stream is dropped, ssh sees the end of its input and exits; it is
    /// reaped on a thread, and killed if it has not exited 5 s later
    /// ([`Stream::disconnect`] waits for it). The README's "Beyond this machine"
    /// says why npipe uses a bridge and not `ssh -L`.
    pub fn connect(&self, name: impl ToPipeName) -> io::Result<Stream> {
        Stream::connect_with(&name.to_pipe_name()?, self)
    }
}
