//! A connected pipe end on a Unix stream socket, with message framing.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, setsockopt, sockopt};

use super::connect::connect_waiting;
use super::gate::Slot;
use super::remote::SshChild;
use crate::error::{err, err_src, ErrorKind};
use crate::frame::blocking::{read_retrying, FrameReader};
#[cfg(feature = "tokio")]
use crate::frame::Decoder;
use crate::frame::{outgoing, Received, SmallFrame};
use crate::name::PipeName;
use crate::options::{ConnectOptions, Direction, Mode};
use crate::peer::PeerCredentials;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: socket::MsgFlags = socket::MsgFlags::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: socket::MsgFlags = socket::MsgFlags::empty();

#[derive(Debug)]
pub(crate) struct Stream {
    sock: UnixStream,
    mode: Mode,
    can_read: bool,
    can_write: bool,
    is_server: bool,
    max_message: u32,
    reader: FrameReader,
    write_buf: Vec<u8>,
    send_buffer: SendBuffer,
    /// Set by `set_deadline`: every read and write must end by then.
    deadline: Option<Instant>,
    /// Held by server-side streams: the instance is free again when it drops.
    _slot: Option<Slot>,
    /// The peer's credentials once read (at accept when the access policy needs
    /// them, else when first asked; fixed at connect time), so that asking again
    /// costs no system call. A remote client's: the remote server's, from the
    /// bridge's handshake.
    peer: OnceLock<PeerCredentials>,
    /// A remote client's ssh process (`\\HOST\pipe\NAME`), reaped when the
    /// stream is dropped. After `sock`: the socket closes first.
    remote: Option<Box<SshChild>>,
}

impl Stream {
    pub(crate) fn from_accepted(
        sock: UnixStream,
        mode: Mode,
        direction: Direction,
        max_message: u32,
        slot: Slot,
        peer: Option<PeerCredentials>,
        send_buffer: SendBuffer,
    ) -> Stream {
        Stream {
            sock,
            mode,
            can_read: direction.server_reads(),
            can_write: direction.server_writes(),
            is_server: true,
            max_message,
            reader: FrameReader::new(max_message),
            write_buf: Vec::new(),
            send_buffer,
            deadline: None,
            _slot: Some(slot),
            peer: peer.map(OnceLock::from).unwrap_or_default(),
            remote: None,
        }
    }

    pub(crate) fn from_std(sock: UnixStream, mode: Mode) -> Stream {
        let max = crate::options::DEFAULT_MAX_MESSAGE;
        Stream {
            sock,
            mode,
            can_read: true,
            can_write: true,
            is_server: false,
            max_message: max,
            reader: FrameReader::new(max),
            write_buf: Vec::new(),
            send_buffer: SendBuffer::unchanged(),
            deadline: None,
            _slot: None,
            peer: OnceLock::new(),
            remote: None,
        }
    }

    /// Takes the stream apart for the async API, which does its own framing. Only
    /// for fresh streams (just connected or accepted): read-ahead bytes would be lost.
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(self) -> StreamParts {
        StreamParts {
            sock: self.sock,
            mode: self.mode,
            can_read: self.can_read,
            can_write: self.can_write,
            is_server: self.is_server,
            max_message: self.max_message,
            decoder: self.reader.into_decoder(),
            slot: self._slot,
            peer: self.peer.into_inner(),
            send_buffer: self.send_buffer,
            remote: self.remote,
        }
    }

    #[allow(clippy::result_large_err)]
    pub(crate) fn into_std(self) -> Result<UnixStream, Stream> {
        if self.reader.buffered() > 0 || self.reader.in_message() {
            return Err(self);
        }
        if let Some(ssh) = self.remote {
            ssh.detach();
        }
        Ok(self.sock)
    }

    pub(crate) fn connect(name: &PipeName, opts: &ConnectOptions) -> io::Result<Stream> {
        if let Some(host) = name.host() {
            return Stream::connect_remote(name, host, opts);
        }
        let endpoint = name.endpoint()?;
        let sock = connect_waiting(&endpoint, opts.timeout)?;
        Stream::finish_connect(name, opts, sock, None)
    }

    /// `\\HOST\pipe\NAME`: through ssh and `npipe bridge` on HOST, whose
    /// handshake names the remote server.
    fn connect_remote(name: &PipeName, host: &str, opts: &ConnectOptions) -> io::Result<Stream> {
        let remote = super::remote::connect(host, name.as_str(), opts.timeout)?;
        let mut stream = Stream::finish_connect(name, opts, remote.sock, Some(remote.server))?;
        stream.remote = Some(Box::new(remote.ssh));
        Ok(stream)
    }

    /// Connects if that needs no waiting, for the async API: `Ok(None)` when the
    /// pipe is absent or busy or the attempt failed in any way, and then
    /// [`connect`](Self::connect) (on a blocking thread) waits and reports errors.
    /// The socket of a returned stream is non-blocking.
    #[cfg(feature = "tokio")]
    pub(crate) fn connect_now(name: &PipeName, opts: &ConnectOptions) -> Option<Stream> {
        if opts.expect_server_uid.is_some() {
            // A refusal must come from one connection, made by `connect`.
            return None;
        }
        let sock = super::connect::raw_connect(&name.endpoint().ok()?, None).ok()?;
        Stream::finish_connect(name, opts, sock, None).ok()
    }

    /// A client stream over `sock`, connected to pipe `name`. `server`: the
    /// server's credentials when the socket's peer is not the server (a remote
    /// pipe's: the bridge's handshake gives them).
    fn finish_connect(
        name: &PipeName,
        opts: &ConnectOptions,
        sock: UnixStream,
        server: Option<PeerCredentials>,
    ) -> io::Result<Stream> {
        let send_buffer = SendBuffer::new(&sock, opts.buffer_size);
        if let Some(expected) = opts.expect_server_uid {
            let server = match server {
                Some(server) => server,
                None => super::peer_credentials(&sock)?,
            };
            if server.uid() != Some(expected) {
                return Err(err(
                    ErrorKind::AccessDenied,
                    format!(
                        "the server of pipe {name} runs as uid {}, not the expected uid {expected}: refusing to talk to it",
                        server.uid().map_or_else(|| "unknown".to_owned(), |u| u.to_string())
                    ),
                ));
            }
        }
        // Client directions are named as the server sees them.
        let can_read = opts.direction.server_writes();
        let can_write = opts.direction.server_reads();
        if !can_read {
            let _ = sock.shutdown(Shutdown::Read);
        }
        let refused = refusal(server.is_some());
        Ok(Stream {
            sock,
            mode: opts.mode,
            can_read,
            can_write,
            is_server: false,
            max_message: opts.max_message_size,
            reader: match opts.mode {
                Mode::Message => FrameReader::for_client(opts.max_message_size, refused),
                Mode::Byte => FrameReader::new(opts.max_message_size),
            },
            write_buf: Vec::new(),
            send_buffer,
            deadline: None,
            _slot: None,
            peer: server.map(OnceLock::from).unwrap_or_default(),
            remote: None,
        })
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.is_server
    }

    pub(crate) fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.send_parts(&[message])
    }

    /// Puts `parts` on the wire (see [`send_wire`](Self::send_wire)), by the
    /// deadline if one is set.
    fn send_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let sent = match self.deadline {
            None => self.send_wire(parts, send_all),
            Some(deadline) => self.send_wire(parts, |sock, parts| {
                send_all_by(sock, parts, Some(deadline), WaitLimit::SocketTimeout)
            }),
        };
        sent.map_err(|e| name_the_refuser(self.refused_or(e), || self.local_server()))
    }

    fn refused_or(&self, e: io::Error) -> io::Error {
        let notice = self.reader.holds_refusal();
        refused_or(
            e,
            self.reader.expects_notice(),
            notice,
            self.sock.as_fd(),
            refusal(self.remote.is_some()),
        )
    }

    /// `Write::write_vectored`: the slices are one message in message mode (one
    /// header for their total), and all written in byte mode, with one `sendmsg`
    /// where the socket takes them at once.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut stack: [&[u8]; 4] = [&[]; 4];
        let heap: Vec<&[u8]>;
        let parts: &[&[u8]] = if bufs.len() <= stack.len() {
            for (slot, buf) in stack.iter_mut().zip(bufs) {
                *slot = buf;
            }
            &stack[..bufs.len()]
        } else {
            heap = bufs.iter().map(|buf| &**buf).collect();
            &heap
        };
        self.send_parts(parts)?;
        Ok(parts.iter().map(|part| part.len()).sum())
    }

    /// Puts `parts` on the wire as one write with `send`: in message mode as one
    /// frame ([`outgoing`]: one header for their total length, copied next to it
    /// unless large, so that header and payload leave in one `send`), in byte mode
    /// as they are.
    fn send_wire(
        &mut self,
        parts: &[&[u8]],
        send: impl FnOnce(&UnixStream, &[&[u8]]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.check_write()?;
        let len = parts.iter().map(|part| part.len()).sum();
        self.send_buffer.before_send(&self.sock, len);
        match self.mode {
            Mode::Message => {
                let mut small = SmallFrame::new();
                let wire = outgoing(parts, self.max_message, &mut small, &mut self.write_buf)?;
                send(&self.sock, &wire.slices())
            }
            Mode::Byte => send(&self.sock, parts),
        }
    }

    pub(crate) fn recv(&mut self, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.check_read()?;
        let mut src = Source::new(&self.sock, self.deadline);
        match self.mode {
            Mode::Message => {
                let got = self.reader.recv(&mut src, out);
                got.map_err(|e| name_the_refuser(e, || self.local_server()))
            }
            Mode::Byte => {
                // A byte stream has no messages: deliver what has arrived.
                out.resize(64 * 1024, 0);
                let n = read_mapped(&mut src, out)?;
                out.truncate(n);
                Ok((n > 0).then_some(n))
            }
        }
    }

    pub(crate) fn recv_into(&mut self, out: &mut [u8]) -> io::Result<Option<Received>> {
        self.check_read()?;
        let mut src = Source::new(&self.sock, self.deadline);
        match self.mode {
            Mode::Message => {
                let got = self.reader.recv_into(&mut src, out);
                got.map_err(|e| name_the_refuser(e, || self.local_server()))
            }
            Mode::Byte => {
                let n = read_mapped(&mut src, out)?;
                Ok((n > 0 || out.is_empty()).then(|| Received::new(n, false)))
            }
        }
    }

    pub(crate) fn peek(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.check_read()?;
        match self.mode {
            Mode::Message => self.reader.peek(&mut NonBlocking(&self.sock), out),
            Mode::Byte => {
                match socket::recv(
                    self.sock.as_raw_fd(),
                    out,
                    socket::MsgFlags::MSG_PEEK | socket::MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(n) => Ok(n),
                    Err(Errno::EAGAIN) => Ok(0),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    pub(crate) fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.check_read()?;
        let mut src = Source::new(&self.sock, self.deadline);
        match self.mode {
            Mode::Message => {
                let got = self.reader.read_bytes(&mut src, out);
                got.map_err(|e| name_the_refuser(e, || self.local_server()))
            }
            Mode::Byte => read_mapped(&mut src, out),
        }
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send(data)?;
        Ok(data.len())
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how)
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }

    /// Every later read and write must end by `deadline` (`None`: no deadline).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    pub(crate) fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        super::cached_peer_credentials(&self.peer, &self.sock)
    }

    /// The server process on this machine, to name one that refused this client;
    /// none for a remote pipe (its server's uid is HOST's, not comparable here).
    fn local_server(&self) -> io::Result<PeerCredentials> {
        match self.remote {
            Some(_) => Err(io::ErrorKind::Unsupported.into()),
            None => self.peer_credentials(),
        }
    }

    /// Closes the socket and, for a remote pipe, waits for the ssh client to
    /// exit (killing it after a grace period).
    pub(crate) fn close_and_reap(self) {
        let Stream { sock, remote, .. } = self;
        drop(sock);
        if let Some(ssh) = remote {
            ssh.reap();
        }
    }

    fn check_write(&self) -> io::Result<()> {
        if self.can_write {
            Ok(())
        } else {
            Err(crate::error::one_way_error(self.is_server, true))
        }
    }

    fn check_read(&self) -> io::Result<()> {
        if self.can_read {
            Ok(())
        } else {
            Err(crate::error::one_way_error(self.is_server, false))
        }
    }
}

/// Receiving with every read of the socket timed by the caller: for the managed
/// server's dedicated connections (a thread per connection, `server::dedicated`),
/// which wait for a request with their idle timeout and read the rest of it by
/// the request's deadline.
#[cfg(feature = "tokio")]
impl Stream {
    /// Receives the next message (message mode) as [`recv`](Self::recv) does,
    /// but every read of the socket is `read(socket, room)`, which returns as
    /// `Read::read` does (a `WouldBlock` or `TimedOut` error is a timeout).
    pub(crate) fn recv_reading(
        &mut self,
        out: &mut Vec<u8>,
        read: impl FnMut(Socket<'_>, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Option<usize>> {
        self.check_read()?;
        self.reader
            .recv(&mut ReadWith(Socket(&self.sock), read), out)
    }

    /// Whether bytes of the next message have been read already: it has begun.
    pub(crate) fn has_read_ahead(&self) -> bool {
        self.reader.buffered() > 0 || self.reader.in_message()
    }

    /// For a connection accepted blocking that goes to the async path after all.
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.sock.set_nonblocking(on)
    }
}

/// A stream's socket, for the reads of [`Stream::recv_reading`].
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Socket<'a>(&'a UnixStream);

#[cfg(feature = "tokio")]
impl Socket<'_> {
    /// One `recv` that does not wait: `WouldBlock` if nothing has arrived.
    pub(crate) fn recv_now(self, out: &mut [u8]) -> io::Result<usize> {
        Ok(socket::recv(
            self.0.as_raw_fd(),
            out,
            socket::MsgFlags::MSG_DONTWAIT,
        )?)
    }

    /// One `recv` that waits, at most the socket's read timeout.
    pub(crate) fn recv_waiting(self, out: &mut [u8]) -> io::Result<usize> {
        (&mut &*self.0).read(out)
    }

    /// One `recv` that ends by `deadline` (see [`recv_by`]): `TimedOut` after it.
    pub(crate) fn recv_by(self, out: &mut [u8], deadline: Instant) -> io::Result<usize> {
        recv_by(self.0, out, Some(deadline), WaitLimit::None)
    }

    /// `SO_RCVTIMEO`: how long [`recv_waiting`](Self::recv_waiting) waits (`None`:
    /// forever).
    pub(crate) fn set_read_timeout(self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }
}

/// The reads of [`Stream::recv_reading`] as `FrameReader` sees them.
#[cfg(feature = "tokio")]
struct ReadWith<'a, F>(Socket<'a>, F);

#[cfg(feature = "tokio")]
impl<F: FnMut(Socket<'_>, &mut [u8]) -> io::Result<usize>> Read for ReadWith<'_, F> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        (self.1)(self.0, out)
    }
}

/// A fresh stream's pieces: see [`Stream::into_parts`].
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub(crate) struct StreamParts {
    pub(crate) sock: UnixStream,
    pub(crate) mode: Mode,
    pub(crate) can_read: bool,
    pub(crate) can_write: bool,
    pub(crate) is_server: bool,
    pub(crate) max_message: u32,
    /// The framing state: a client's first frame may be the refusal notice.
    pub(crate) decoder: Decoder,
    /// Server streams: the instance, freed when dropped.
    pub(crate) slot: Option<Slot>,
    /// Server streams: the client's credentials, read at accept; remote
    /// clients: the remote server's.
    pub(crate) peer: Option<PeerCredentials>,
    pub(crate) send_buffer: SendBuffer,
    /// Remote clients: the ssh process.
    pub(crate) remote: Option<Box<SshChild>>,
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl From<Stream> for OwnedFd {
    fn from(stream: Stream) -> OwnedFd {
        if let Some(ssh) = stream.remote {
            ssh.detach();
        }
        stream.sock.into()
    }
}

/// The socket as `FrameReader` and byte-mode reads see it: blocking reads, each
/// bounded by the socket's read timeout, or while a deadline is set, reads that
/// end by it ([`recv_by`]).
enum Source<'a> {
    Blocking(&'a UnixStream),
    By(&'a UnixStream, Instant),
}

impl<'a> Source<'a> {
    fn new(sock: &'a UnixStream, deadline: Option<Instant>) -> Source<'a> {
        match deadline {
            None => Source::Blocking(sock),
            Some(deadline) => Source::By(sock, deadline),
        }
    }
}

impl Read for Source<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match *self {
            Source::Blocking(sock) => (&mut &*sock).read(out),
            Source::By(sock, deadline) => {
                recv_by(sock, out, Some(deadline), WaitLimit::SocketTimeout)
            }
        }
    }
}

/// What bounds each wait of a timed operation besides its deadline.
#[derive(Debug, Clone, Copy)]
enum WaitLimit {
    /// Nothing else (the managed server's requests).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    None,
    /// The socket's own read or write timeout (`SO_RCVTIMEO`, `SO_SNDTIMEO`), as
    /// the blocking calls honour it.
    SocketTimeout,
}

impl WaitLimit {
    /// The limit on one wait for `events`, read from the socket when needed.
    fn get(self, sock: &UnixStream, events: PollFlags) -> io::Result<Option<Duration>> {
        match self {
            WaitLimit::None => Ok(None),
            WaitLimit::SocketTimeout if events.contains(PollFlags::POLLOUT) => sock.write_timeout(),
            WaitLimit::SocketTimeout => sock.read_timeout(),
        }
    }
}

/// One `recv` that ends by `deadline` (`None`: no deadline): the timed receive.
/// What has arrived is returned at once; otherwise it waits (`poll`) for the time
/// left, and for no more than `limit`. An expired wait, or a deadline already
/// passed, is `TimedOut`. It never changes the socket's options, so the
/// deadline covers every read of an operation together: a peer that trickles
/// its bytes cannot stretch it, as it can a per-call `SO_RCVTIMEO`.
fn recv_by(
    sock: &UnixStream,
    out: &mut [u8],
    deadline: Option<Instant>,
    limit: WaitLimit,
) -> io::Result<usize> {
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(timed_out(true));
        }
        match socket::recv(sock.as_raw_fd(), out, socket::MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let limit = limit.get(sock, PollFlags::POLLIN)?;
                wait_ready(sock, PollFlags::POLLIN, deadline, limit)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `sock` is ready for `events` (`poll`), at most until `deadline`
/// and at most `limit`. `TimedOut` if it is not ready in time.
fn wait_ready(
    sock: &UnixStream,
    events: PollFlags,
    deadline: Option<Instant>,
    limit: Option<Duration>,
) -> io::Result<()> {
    loop {
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let (wait, by_deadline) = match (left, limit) {
            (Some(left), Some(limit)) => (Some(left.min(limit)), left <= limit),
            (Some(left), None) => (Some(left), true),
            (None, limit) => (limit, false),
        };
        if wait.is_some_and(|wait| wait.is_zero()) {
            return Err(timed_out(by_deadline));
        }
        // Whole milliseconds, rounded up: a wait shorter than one must still wait.
        let timeout = wait.map_or(PollTimeout::NONE, |wait| {
            PollTimeout::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = [PollFd::new(sock.as_fd(), events)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Err(timed_out(by_deadline)),
            // Ready, or an error or hang-up that the next call reports.
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A timed wait that expired: the deadline, or the socket's own timeout.
fn timed_out(by_deadline: bool) -> io::Error {
    let what = if by_deadline {
        "the deadline passed"
    } else {
        "the socket's timeout expired"
    };
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// Reads that never block, for `peek`.
struct NonBlocking<'a>(&'a UnixStream);

impl Read for NonBlocking<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match socket::recv(self.0.as_raw_fd(), out, socket::MsgFlags::MSG_DONTWAIT) {
            Ok(n) => Ok(n),
            Err(e) => Err(e.into()),
        }
    }
}

/// A byte-mode read: as the framing's reads (`EINTR` retried, timeouts reported
/// as `Timeout`), and a connection reset as `Disconnected`.
fn read_mapped(src: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
    read_retrying(src, out).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionReset => err_src(
            ErrorKind::Disconnected,
            "the other end closed the connection",
            e,
        ),
        _ => e,
    })
}

/// Sends every byte of `parts`, in order, without raising `SIGPIPE`.
fn send_all(sock: &UnixStream, parts: &[&[u8]]) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut sent = 0;
    while sent < total {
        match send_some(sock, parts, sent, SEND_FLAGS) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(write_timed_out(sent, total)),
            Err(e) => return Err(send_error(e)),
        }
    }
    Ok(())
}

/// [`send_all`] by `deadline` (`None`: no deadline): the timed send. Sends
/// without blocking, which is all a message needs while the peer keeps reading;
/// when the send buffer is full, waits (`poll`) for room, for the time left and
/// no more than `limit`. One deadline for every `send`: a blocking `send` with
/// `SO_SNDTIMEO` would restart its timeout for each buffer's worth of a large
/// message, so a peer that reads slowly could stretch it without end.
fn send_all_by(
    sock: &UnixStream,
    parts: &[&[u8]],
    deadline: Option<Instant>,
    limit: WaitLimit,
) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut sent = 0;
    while sent < total {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(write_timed_out(sent, total));
        }
        match send_some(
            sock,
            parts,
            sent,
            SEND_FLAGS | socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let limit = limit.get(sock, PollFlags::POLLOUT)?;
                match wait_ready(sock, PollFlags::POLLOUT, deadline, limit) {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(write_timed_out(sent, total))
                    }
                    other => other?,
                }
            }
            Err(e) => return Err(send_error(e)),
        }
    }
    Ok(())
}

/// One `send`/`sendmsg` of what is left of `parts` after `sent` bytes.
fn send_some(
    sock: &UnixStream,
    parts: &[&[u8]],
    sent: usize,
    flags: socket::MsgFlags,
) -> Result<usize, Errno> {
    if parts.len() == 1 {
        socket::send(sock.as_raw_fd(), &parts[0][sent..], flags)
    } else {
        let slices = remaining_slices(parts, sent);
        socket::sendmsg::<()>(sock.as_raw_fd(), &slices, &[], flags, None)
    }
}

fn write_timed_out(sent: usize, total: usize) -> io::Error {
    err(
        ErrorKind::Timeout,
        format!("write timed out after {sent} of {total} bytes"),
    )
}

fn send_error(e: Errno) -> io::Error {
    match e {
        Errno::EPIPE | Errno::ECONNRESET => err_src(
            ErrorKind::Disconnected,
            "the other end closed the connection or does not read (an outbound pipe)",
            Errno::EPIPE.into(),
        ),
        e => e.into(),
    }
}

/// How a refusal by the server's access policy is told: the local server's, or
/// (`remote`: a pipe reached through ssh) the server's on HOST.
pub(crate) fn refusal(remote: bool) -> fn() -> io::Error {
    if remote {
        crate::remote::refused
    } else {
        refused
    }
}

/// The error of this client once the server's
/// [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE) arrived: it names the user and group
/// that the server refused.
fn refused() -> io::Error {
    let ids = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    crate::frame::refused(Some(ids))
}

/// `e`, naming the server that refused this client if `e` is that refusal
/// (`AccessDenied` on a connected client can only be) and the server is neither
/// root nor this user: its pid and uid, from `SO_PEERCRED` (`server`), so that a
/// notice a squatter sent is not taken for the pipe's own policy. (A refusal by
/// root's or this user's own server is the pipe's policy, and says so as it is.)
/// The error path only: nothing is asked otherwise.
pub(crate) fn name_the_refuser(
    e: io::Error,
    server: impl FnOnce() -> io::Result<PeerCredentials>,
) -> io::Error {
    if ErrorKind::of(&e) != ErrorKind::AccessDenied {
        return e;
    }
    let Ok(peer) = server() else { return e };
    let me = nix::unistd::geteuid().as_raw();
    let Some(uid) = peer.uid().filter(|uid| *uid != 0 && *uid != me) else {
        return e;
    };
    let pid = peer
        .pid()
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    err(
        ErrorKind::AccessDenied,
        format!(
            "{e} (the server that refused it is pid {pid}, uid {uid}; if that is not the user who should serve this pipe, it may be a squatter: require the server's user with expect_server_uid)"
        ),
    )
}

/// `e`, or the refusal it stands for: a message client (`expects_notice`: it has
/// not read a frame yet) whose send found the connection closed may have been
/// refused by the server's access policy; then the server's refusal notice waits
/// to be read, read ahead already (`read_ahead`) or on `sock`, and says so better
/// than `EPIPE`, in the words of `refused`. The blocking and the async clients'
/// sends.
pub(crate) fn refused_or(
    e: io::Error,
    expects_notice: bool,
    read_ahead: bool,
    sock: BorrowedFd<'_>,
    refused: fn() -> io::Error,
) -> io::Error {
    if expects_notice
        && ErrorKind::of(&e) == ErrorKind::Disconnected
        && (read_ahead || refusal_waiting(sock))
    {
        return refused();
    }
    e
}

/// Whether the server's [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE) waits unread on
/// the client socket `sock`: looked at with `MSG_PEEK`, so nothing is consumed,
/// and without waiting (the notice arrives before the server closes).
fn refusal_waiting(sock: BorrowedFd<'_>) -> bool {
    let mut head = [0u8; 32];
    let flags = socket::MsgFlags::MSG_PEEK | socket::MsgFlags::MSG_DONTWAIT;
    match socket::recv(sock.as_raw_fd(), &mut head, flags) {
        Ok(n) => crate::frame::match_refusal(&head[..n]) == Some(true),
        Err(_) => false,
    }
}

fn remaining_slices<'a>(parts: &[&'a [u8]], mut skip: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        out.push(IoSlice::new(&part[skip..]));
        skip = 0;
    }
    out
}

/// Connections that carry only small messages never need more than the kernel's
/// default send buffer (about 208 KiB on Linux), and asking for a larger one is a
/// system call on every connection. So on Linux a large `buffer_size` is applied
/// once a connection has sent this much: before the first large message, or after
/// a few hundred small ones.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_BUFFER_AFTER: usize = 256 * 1024;

/// The `buffer_size` a connection still has to apply (see [`SEND_BUFFER_AFTER`]).
#[derive(Debug)]
pub(crate) struct SendBuffer {
    /// Bytes to ask for; 0 once applied or when there is nothing to apply.
    want: usize,
    sent: usize,
}

impl SendBuffer {
    /// Sizes `sock`'s buffers for `bytes` now, or (Linux, large sizes) on the way.
    /// Small sizes are applied at once: whoever asks for one wants back-pressure
    /// from the first byte.
    pub(crate) fn new(sock: &UnixStream, bytes: usize) -> SendBuffer {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if bytes >= SEND_BUFFER_AFTER {
            return SendBuffer {
                want: bytes,
                sent: 0,
            };
        }
        set_buffer_sizes(sock, bytes);
        SendBuffer::unchanged()
    }

    /// Nothing to apply (the kernel's defaults stay).
    pub(crate) fn unchanged() -> SendBuffer {
        SendBuffer { want: 0, sent: 0 }
    }

    /// Call before sending `len` more bytes on `sock`.
    #[inline]
    pub(crate) fn before_send(&mut self, sock: &impl AsFd, len: usize) {
        // Elsewhere the buffer size is applied at connect (see `new`).
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = sock;
        if self.want == 0 {
            return;
        }
        self.sent = self.sent.saturating_add(len);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.sent >= SEND_BUFFER_AFTER {
            // The kernel caps it at its maximum; a refusal only costs throughput.
            let _ = setsockopt(sock, sockopt::SndBuf, &self.want);
            self.want = 0;
        }
    }
}

pub(crate) fn set_buffer_sizes(sock: &UnixStream, bytes: usize) {
    // The kernel caps these at its maximum; a refusal only costs throughput.
    let _ = setsockopt(sock, sockopt::SndBuf, &bytes);
    // Linux bounds the data in flight on a Unix stream socket by the *sender's*
    // SO_SNDBUF alone and never reads SO_RCVBUF, so setting it would only cost a
    // system call on every connection. Elsewhere (BSD, macOS) the receive buffer
    // is the limit.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = setsockopt(sock, sockopt::RcvBuf, &bytes);
}
