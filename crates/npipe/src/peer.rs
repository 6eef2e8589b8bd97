//! Who is at the other end of a connection.

/// Who is at the other end of a connection: process id, user id and group id, as
/// far as the OS tells (Linux `SO_PEERCRED`, macOS `LOCAL_PEERCRED` + `LOCAL_PEERPID`,
/// Windows `GetNamedPipeClientProcessId`/`GetNamedPipeServerProcessId`).
///
/// On the server it describes the client; on the client, the server process (as it
/// was when it created the pipe).
///
/// # Examples
///
/// ```no_run
/// let listener = npipe::Listener::bind("demo")?;
/// let stream = listener.accept()?;
/// let peer = stream.peer_credentials()?;
/// match (peer.pid(), peer.uid()) {
///     (Some(pid), Some(uid)) => println!("client: process {pid}, user {uid}"),
///     (Some(pid), None) => println!("client: process {pid}"),
///     _ => println!("client: unknown"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// ## Platform-specific behavior
///
/// Windows, a pipe on another machine (`\\HOST\pipe\NAME`, through SMB): a process
/// id the system reports for the other end is not a process on this machine; never
/// look it up here. Who the client is was settled by the pipe's DACL, which admitted
/// the account the client logged on to the server's machine as (see `SECURITY.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    pid: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl PeerCredentials {
    pub(crate) fn new(pid: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> PeerCredentials {
        PeerCredentials { pid, uid, gid }
    }

    /// The peer's process id, if the OS tells it.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The peer's effective user id (Unix).
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The peer's effective primary group id (Unix).
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }
}
