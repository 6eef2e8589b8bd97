//! Which pipes are live: the one answer `wait`, `inspect` and `list` give.
//!
//! A pipe is live when a listening Unix stream socket is bound to the very file now
//! at its path — what `connect` would reach (a socket whose file was deleted or
//! replaced is not), or for an abstract name, when a listening socket has that name.
//!
//! - Linux asks the kernel (`NETLINK_SOCK_DIAG`, `UNIX_DIAG`): every listening
//!   socket with the device and inode of the file it is bound to, compared with
//!   `fstatat` of the path. Exact for any name (spaces included), deleted or
//!   replaced files; unprivileged; and nothing connects, so servers see no client.
//! - Without sock_diag (a kernel built without `CONFIG_UNIX_DIAG`): `/proc/net/unix`,
//!   matched by path, with the file at the path a socket. A socket bound by another
//!   path string to the same file is then missed.
//! - Without either (other systems): a connection, closed at once.
//!
//! The owner pid of a listening socket comes from `/proc/*/fd` (processes this user
//! may inspect).

use std::collections::{HashMap, HashSet};
use std::io;

use super::dir::Kind;
use super::Endpoint;

/// The listening Unix stream sockets of this network namespace, read once (one
/// `list` asks about many pipes).
#[derive(Debug)]
pub(crate) struct Listening {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// From sock_diag.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Diag(Vec<diag::Socket>),
    /// From `/proc/net/unix`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Table(Vec<TableSocket>),
    /// Nothing to read: probe each pipe by connecting.
    Probe,
}

/// A live pipe's listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    /// The socket's inode (in sockfs), to find the process holding it; `None`
    /// where the OS does not tell.
    pub(crate) socket_inode: Option<u64>,
}

impl Listening {
    /// Reads the listening sockets.
    pub(crate) fn read() -> Listening {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            match diag::listening() {
                Ok(sockets) => {
                    return Listening {
                        source: Source::Diag(sockets),
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "sock_diag unavailable; reading /proc/net/unix")
                }
            }
            if let Ok(table) = std::fs::read("/proc/net/unix") {
                return Listening {
                    source: Source::Table(parse_proc_net_unix(&table)),
                };
            }
        }
        Listening {
            source: Source::Probe,
        }
    }

    /// The listening socket that serves `endpoint` now, if any.
    pub(crate) fn find(&self, endpoint: &Endpoint) -> io::Result<Option<Live>> {
        // Whatever listens, a client reaches only the socket file now at the path.
        #[cfg_attr(
            not(any(target_os = "linux", target_os = "android")),
            allow(unused_variables)
        )]
        let file = match endpoint {
            Endpoint::File(path) => match path.stat()? {
                Some(entry) if entry.kind == Kind::Socket => Some(entry),
                _ => return Ok(None),
            },
            Endpoint::Abstract(_) => None,
        };
        match &self.source {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Source::Diag(sockets) => {
                let found = match (endpoint, file) {
                    (Endpoint::File(_), Some(entry)) => {
                        let file = diag::VfsId::of(entry.dev, entry.ino);
                        sockets.iter().find(|s| s.file == Some(file))
                    }
                    (Endpoint::Abstract(name), _) => sockets.iter().find(|s| {
                        s.name
                            .as_deref()
                            .and_then(|n| n.strip_prefix(b"\0"))
                            .is_some_and(|n| n == name.as_bytes())
                    }),
                    _ => None,
                };
                Ok(found.map(|s| Live {
                    socket_inode: Some(u64::from(s.inode)),
                }))
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Source::Table(sockets) => {
                use std::os::unix::ffi::OsStringExt;
                let wanted = match endpoint {
                    Endpoint::File(path) => path.path().into_os_string().into_vec(),
                    Endpoint::Abstract(name) => format!("@{name}").into_bytes(),
                };
                Ok(sockets.iter().find(|s| s.path == wanted).map(|s| Live {
                    socket_inode: Some(s.inode),
                }))
            }
            Source::Probe => {
                // Every instance busy (a full accept queue) is live too.
                let live = match super::connect::raw_connect(endpoint, None) {
                    Ok(_) => true,
                    Err(e) => e.raw_os_error() == Some(nix::libc::EAGAIN),
                };
                Ok(live.then_some(Live { socket_inode: None }))
            }
        }
    }
}

/// Whether a server is listening on `endpoint` now (see the module docs).
pub(crate) fn is_live(endpoint: &Endpoint) -> io::Result<bool> {
    Ok(Listening::read().find(endpoint)?.is_some())
}

/// A listening stream socket in `/proc/net/unix`.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableSocket {
    inode: u64,
    /// The path, verbatim, or `@name` for an abstract socket.
    path: Vec<u8>,
}

/// The listening stream sockets in a `/proc/net/unix` table. Each line is
/// `Num: RefCount Protocol Flags Type St Inode[ Path]` with fixed-width hex fields,
/// the inode printed `%5lu` (so maybe after extra spaces) and the path after one
/// space, verbatim: spaces in it, consecutive or trailing, are part of it.
/// Unparsable lines are skipped.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn parse_proc_net_unix(table: &[u8]) -> Vec<TableSocket> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    const SOCK_STREAM: u32 = 1;
    fn hex(field: &[u8]) -> Option<u32> {
        u32::from_str_radix(std::str::from_utf8(field).ok()?, 16).ok()
    }
    let mut out = Vec::new();
    for line in table.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.windows(2).position(|w| w == b": ") else {
            continue;
        };
        let mut rest = &line[colon + 2..];
        // RefCount, Protocol, Flags, Type, St: each followed by one space.
        let mut fixed = [0u32; 5];
        let mut ok = true;
        for value in &mut fixed {
            let Some(space) = rest.iter().position(|b| *b == b' ') else {
                ok = false;
                break;
            };
            match hex(&rest[..space]) {
                Some(v) => *value = v,
                None => ok = false,
            }
            rest = &rest[space + 1..];
        }
        let [_, _, flags, kind, _] = fixed;
        if !ok || flags & SO_ACCEPTCON == 0 || kind != SOCK_STREAM {
            continue;
        }
        let digits_start = rest.iter().position(|b| *b != b' ').unwrap_or(rest.len());
        let rest = &rest[digits_start..];
        let digits_end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let Some(inode) = std::str::from_utf8(&rest[..digits_end])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        // An unbound socket has no path; a bound one has one space, then the path.
        if let Some(path) = rest[digits_end..].strip_prefix(b" ") {
            if !path.is_empty() {
                out.push(TableSocket {
                    inode,
                    path: path.to_vec(),
                });
            }
        }
    }
    out
}

/// Which process holds each of `inodes` (socket inodes), scanning `/proc/*/fd`
/// (only processes this user may inspect). The lowest pid wins when several share
/// a socket. Empty where there is no `/proc`.
pub(crate) fn socket_owners(inodes: &HashSet<u64>, hints: &[u32]) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    if inodes.is_empty() {
        return owners;
    }
    // The pids the lock files record first: describing one pipe then costs a few
    // system calls, not a scan of every process (`npipe call` checks the pipe's
    // mode this way before each call).
    for &pid in hints {
        scan_fds(pid, inodes, &mut owners);
    }
    if owners.len() == inodes.len() {
        return owners;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    let mut pids: Vec<u32> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        scan_fds(pid, inodes, &mut owners);
        if owners.len() == inodes.len() {
            break;
        }
    }
    owners
}

/// Records process `pid` as the owner of each of `inodes` it holds (the lowest pid
/// scanned first wins).
fn scan_fds(pid: u32, inodes: &HashSet<u64>, owners: &mut HashMap<u64, u32>) {
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

/// `socket:[INODE]` → INODE.
fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// sock_diag for Unix sockets: a dump request over `NETLINK_SOCK_DIAG` and a parser
/// of its answer. Written out rather than taken from a netlink crate: it is one
/// fixed request and three fixed structures (`linux/unix_diag.h`), parsed here by
/// safe code over bytes and unit-tested, where the crates would bring a family of
/// dependencies for it.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod diag {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
        SockProtocol, SockType,
    };

    /// A listening socket as sock_diag describes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Socket {
        pub(super) inode: u32,
        /// The file it is bound to.
        pub(super) file: Option<VfsId>,
        /// Its address: a path, or `\0` and an abstract name.
        pub(super) name: Option<Vec<u8>>,
    }

    const NLMSG_HDRLEN: usize = 16;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const AF_UNIX: u8 = 1;
    const TCP_LISTEN: u32 = 10;
    const UDIAG_SHOW_NAME: u32 = 0x1;
    const UDIAG_SHOW_VFS: u32 = 0x2;
    const UNIX_DIAG_NAME: u16 = 0;
    const UNIX_DIAG_VFS: u16 = 1;
    /// `struct unix_diag_msg`: family, type, state, pad (u8 each), ino, cookie[2].
    const UNIX_DIAG_MSG_LEN: usize = 16;
    const SOCK_STREAM: u8 = 1;

    /// A file as the kernel names it in `unix_diag_vfs`: the device as the kernel's
    /// internal `dev_t` (major in the top 12 bits, minor in the low 20) and the low
    /// 32 bits of the inode number (`udiag_vfs_ino` is 32 bits wide).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct VfsId {
        major: u32,
        minor: u32,
        ino: u32,
    }

    impl VfsId {
        /// From `stat`'s `st_dev` (the C library's encoding) and `st_ino`.
        pub(super) fn of(st_dev: u64, st_ino: u64) -> VfsId {
            let major = ((st_dev >> 32) & 0xffff_f000) | ((st_dev >> 8) & 0x0000_0fff);
            let minor = ((st_dev >> 12) & 0xffff_ff00) | (st_dev & 0x0000_00ff);
            VfsId {
                major: major as u32,
                minor: minor as u32,
                ino: st_ino as u32,
            }
        }

        /// From `unix_diag_vfs`.
        fn from_kernel(dev: u32, ino: u32) -> VfsId {
            VfsId {
                major: dev >> 20,
                minor: dev & 0x000f_ffff,
                ino,
            }
        }
    }

    /// The dump request: every Unix socket in `TCP_LISTEN` state, with its name
    /// and the file it is bound to.
    fn request(seq: u32) -> [u8; NLMSG_HDRLEN + 24] {
        const LEN: usize = NLMSG_HDRLEN + 24;
        let mut msg = [0u8; LEN];
        msg[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        // pid 0: to the kernel. Then `struct unix_diag_req`.
        let req = &mut msg[NLMSG_HDRLEN..];
        req[0] = AF_UNIX;
        // protocol, pad: 0
        req[4..8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        // udiag_ino 0: all
        req[12..16].copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS).to_ne_bytes());
        // cookie: ignored by a dump
        msg
    }

    /// Asks the kernel for the listening Unix sockets.
    pub(super) fn listening() -> io::Result<Vec<Socket>> {
        let sock = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        // The kernel answers at once; this only bounds a kernel that never does.
        setsockopt(
            &sock,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::from(libc_timeval(Duration::from_secs(2))),
        )?;
        let seq = 1;
        sendto(
            sock.as_raw_fd(),
            &request(seq),
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag: the kernel closed the dump",
                ));
            }
            if parse(&buf[..n], seq, &mut out)? {
                return Ok(out);
            }
        }
    }

    fn libc_timeval(d: Duration) -> nix::libc::timeval {
        nix::libc::timeval {
            tv_sec: d.as_secs() as _,
            tv_usec: d.subsec_micros() as _,
        }
    }

    fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    }

    fn malformed(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sock_diag: malformed answer ({what})"),
        )
    }

    /// Parses one datagram of the dump into `out`. `Ok(true)`: the dump is done.
    pub(super) fn parse(mut datagram: &[u8], seq: u32, out: &mut Vec<Socket>) -> io::Result<bool> {
        while datagram.len() >= NLMSG_HDRLEN {
            let len = u32_at(datagram, 0).ok_or_else(|| malformed("length"))? as usize;
            let kind = u16_at(datagram, 4).ok_or_else(|| malformed("type"))?;
            let msg_seq = u32_at(datagram, 8).ok_or_else(|| malformed("sequence"))?;
            if len < NLMSG_HDRLEN || len > datagram.len() {
                return Err(malformed("message length"));
            }
            let payload = &datagram[NLMSG_HDRLEN..len];
            if msg_seq == seq {
                match kind {
                    NLMSG_DONE => return Ok(true),
                    NLMSG_ERROR => {
                        let code = u32_at(payload, 0).ok_or_else(|| malformed("error"))? as i32;
                        return Err(io::Error::from_raw_os_error(
                            code.checked_neg().unwrap_or(0),
                        ));
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        if let Some(socket) = parse_socket(payload)? {
                            out.push(socket);
                        }
                    }
                    _ => {}
                }
            }
            // Messages are padded to 4 bytes.
            let next = (len + 3) & !3;
            datagram = datagram.get(next..).unwrap_or(&[]);
        }
        Ok(false)
    }

    /// A `struct unix_diag_msg` and its attributes; `None` for a socket that is not
    /// a stream socket.
    fn parse_socket(payload: &[u8]) -> io::Result<Option<Socket>> {
        if payload.len() < UNIX_DIAG_MSG_LEN {
            return Err(malformed("unix_diag_msg"));
        }
        if payload[1] != SOCK_STREAM {
            return Ok(None);
        }
        let inode = u32_at(payload, 4).ok_or_else(|| malformed("inode"))?;
        let mut socket = Socket {
            inode,
            file: None,
            name: None,
        };
        let mut attrs = &payload[UNIX_DIAG_MSG_LEN..];
        while attrs.len() >= 4 {
            let len = usize::from(u16_at(attrs, 0).ok_or_else(|| malformed("attribute"))?);
            let kind = u16_at(attrs, 2).ok_or_else(|| malformed("attribute"))?;
            if len < 4 || len > attrs.len() {
                return Err(malformed("attribute length"));
            }
            let value = &attrs[4..len];
            match kind {
                UNIX_DIAG_NAME => socket.name = Some(value.to_vec()),
                UNIX_DIAG_VFS => {
                    let (Some(ino), Some(dev)) = (u32_at(value, 0), u32_at(value, 4)) else {
                        return Err(malformed("unix_diag_vfs"));
                    };
                    socket.file = Some(VfsId::from_kernel(dev, ino));
                }
                _ => {}
            }
            let next = (len + 3) & !3;
            attrs = attrs.get(next..).unwrap_or(&[]);
        }
        Ok(Some(socket))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
            let mut msg = Vec::new();
            msg.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(&2u16.to_ne_bytes());
            msg.extend_from_slice(&seq.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes());
            msg.extend_from_slice(payload);
            while msg.len() % 4 != 0 {
                msg.push(0);
            }
            msg
        }

        fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
            let mut attr = Vec::new();
            attr.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            attr.extend_from_slice(&kind.to_ne_bytes());
            attr.extend_from_slice(value);
            while attr.len() % 4 != 0 {
                attr.push(0);
            }
            attr
        }

        fn socket(kind: u8, inode: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
            let mut payload = vec![AF_UNIX, kind, TCP_LISTEN as u8, 0];
            payload.extend_from_slice(&inode.to_ne_bytes());
            payload.extend_from_slice(&[0xff; 8]);
            for attr in attrs {
                payload.extend_from_slice(attr);
            }
            payload
        }

        fn vfs(ino: u32, dev: u32) -> Vec<u8> {
            let mut value = ino.to_ne_bytes().to_vec();
            value.extend_from_slice(&dev.to_ne_bytes());
            attribute(UNIX_DIAG_VFS, &value)
        }

        #[test]
        fn a_dump_is_parsed() {
            // /tmp/npipe-a  b (with two spaces and an odd length), bound to inode 77
            // on device 0:38; an abstract socket; a datagram socket; then done.
            let mut datagram = message(
                SOCK_DIAG_BY_FAMILY,
                1,
                &socket(
                    SOCK_STREAM,
                    1001,
                    &[attribute(UNIX_DIAG_NAME, b"/tmp/npipe-a  b"), vfs(77, 38)],
                ),
            );
            datagram.extend(message(
                SOCK_DIAG_BY_FAMILY,
                1,
                &socket(SOCK_STREAM, 1002, &[attribute(UNIX_DIAG_NAME, b"\0bus")]),
            ));
            datagram.extend(message(
                SOCK_DIAG_BY_FAMILY,
                1,
                &socket(2, 1003, &[attribute(UNIX_DIAG_NAME, b"/tmp/dgram")]),
            ));
            let mut out = Vec::new();
            assert!(!parse(&datagram, 1, &mut out).unwrap());
            assert!(parse(&message(NLMSG_DONE, 1, &[0; 4]), 1, &mut out).unwrap());
            assert_eq!(
                out,
                vec![
                    Socket {
                        inode: 1001,
                        file: Some(VfsId {
                            major: 0,
                            minor: 38,
                            ino: 77
                        }),
                        name: Some(b"/tmp/npipe-a  b".to_vec()),
                    },
                    Socket {
                        inode: 1002,
                        file: None,
                        name: Some(b"\0bus".to_vec()),
                    },
                ]
            );
        }

        #[test]
        fn errors_and_garbage_are_errors_not_panics() {
            let mut out = Vec::new();
            let e = parse(
                &message(NLMSG_ERROR, 1, &(-nix::libc::ENOENT).to_ne_bytes()),
                1,
                &mut out,
            )
            .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(nix::libc::ENOENT));
            // A length beyond the datagram, a short unix_diag_msg, a bad attribute.
            let mut long = message(SOCK_DIAG_BY_FAMILY, 1, &[0; 16]);
            long[0] = 200;
            assert!(parse(&long, 1, &mut out).is_err());
            assert!(parse(&message(SOCK_DIAG_BY_FAMILY, 1, &[0; 8]), 1, &mut out).is_err());
            let mut bad_attr = socket(SOCK_STREAM, 1, &[]);
            bad_attr.extend_from_slice(&[50, 0, 1, 0]);
            assert!(parse(&message(SOCK_DIAG_BY_FAMILY, 1, &bad_attr), 1, &mut out).is_err());
            // Other sequences are not ours; a partial header ends the datagram.
            assert!(!parse(&message(NLMSG_DONE, 9, &[0; 4]), 1, &mut out).unwrap());
            assert!(!parse(&[1, 2, 3], 1, &mut out).unwrap());
            for len in 0..40 {
                let _ = parse(&vec![0xff; len], 1, &mut out);
            }
        }

        #[test]
        fn devices_are_compared_by_major_and_minor() {
            // st_dev 0x0803 is 8:3 (sda3); the kernel says (8 << 20) | 3.
            assert_eq!(VfsId::of(0x0803, 5), VfsId::from_kernel((8 << 20) | 3, 5));
            // A large minor (0:300, as tmpfs may have) and a large major.
            let st_dev = (300 & 0xff) | ((300 & !0xff) << 12);
            assert_eq!(VfsId::of(st_dev, 9), VfsId::from_kernel(300, 9));
            let st_dev = ((259 & 0xfff) << 8) | 1;
            assert_eq!(VfsId::of(st_dev, 9), VfsId::from_kernel((259 << 20) | 1, 9));
            // Inode numbers beyond 32 bits are compared by their low 32 bits.
            assert_eq!(VfsId::of(0x0803, (1 << 32) | 5).ino, 5);
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"Num       RefCount Protocol Flags    Type St Inode Path
000000005e76ac8c: 00000002 00000000 00010000 0001 01 1510614 /tmp/npipe-demo
000000000f29abee: 00000002 00000000 00010000 0001 01 228778 @abstract
00000000d0f91e68: 00000003 00000000 00000000 0001 03 228143 /tmp/npipe-connected
00000000d0f91e69: 00000002 00000000 00010000 0002 01 228144 /tmp/dgram
00000000d0f91e6a: 00000002 00000000 00010000 0001 01 228145 /tmp/with space
00000000d0f91e6b: 00000002 00000000 00010000 0001 01 228146
0000000000000000: 00000002 00000000 00010000 0001 01   812 /tmp/npipe-a  b
0000000000000000: 00000002 00000000 00010000 0001 01 99999 /tmp/npipe-x 
0000000000000000: 00000002 00000000 00010000 0001 01    17  lead
garbage line
0000000000000000: 0000000Z 00000000 00010000 0001 01 5 /tmp/bad-hex
";

    #[test]
    fn proc_net_unix_paths_are_taken_verbatim() {
        let got = parse_proc_net_unix(TABLE);
        let want: Vec<(u64, &[u8])> = vec![
            (1510614, b"/tmp/npipe-demo"),
            (228778, b"@abstract"),
            (228145, b"/tmp/with space"),
            (812, b"/tmp/npipe-a  b"),
            (99999, b"/tmp/npipe-x "),
            (17, b" lead"),
        ];
        let got: Vec<(u64, &[u8])> = got.iter().map(|s| (s.inode, &s.path[..])).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn socket_links_are_parsed() {
        assert_eq!(socket_inode(b"socket:[1510614]"), Some(1510614));
        assert_eq!(socket_inode(b"pipe:[12]"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }
}
