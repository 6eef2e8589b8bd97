//! Remote pipes (`\\HOST\pipe\NAME`) through the system's ssh client: the ssh
//! process, the socket pair it talks through, the handshake, and the reaping of
//! the process (see `crate::remote` for the command lines and the handshake).
//!
//! One end of a `socketpair(AF_UNIX, SOCK_STREAM)` is ssh's stdin and stdout;
//! the other becomes the stream's socket, so everything a stream does on a
//! socket (framing, the cap, deadlines, peeking, tokio) works unchanged.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::error::{err, err_src, fmt_duration, ErrorKind};
use crate::peer::PeerCredentials;
use crate::remote::{self as proto, MAX_HANDSHAKE, SETUP};

/// How long an ssh client may take to exit once its stream is closed (it tells
/// HOST, whose bridge closes the pipe and exits) before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// How much of ssh's stderr is kept for error messages.
const STDERR_KEPT: usize = 16 * 1024;

/// A remote pipe connected: the stream's socket, the remote server's credentials
/// from the handshake, and the ssh process.
pub(crate) struct Connected {
    pub(crate) sock: UnixStream,
    pub(crate) server: PeerCredentials,
    pub(crate) ssh: SshChild,
}

/// Connects to pipe `pipe` on `host` through ssh: the bridge on HOST waits up
/// to `timeout` for the pipe, and ssh has [`SETUP`] more to connect and log in.
pub(crate) fn connect(host: &str, pipe: &str, timeout: Duration) -> io::Result<Connected> {
    let deadline = Instant::now() + SETUP + timeout;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let ssh = SshChild::spawn(
        host,
        &proto::bridge_command(pipe, timeout),
        Stdio::from(theirs.try_clone()?),
        Stdio::from(theirs),
    )?;
    let sock = UnixStream::from(ours);
    match read_handshake(&sock, deadline) {
        Ok(line) => {
            let server = proto::parse_handshake(host, &line)?;
            Ok(Connected { sock, server, ssh })
        }
        Err(Ended::Closed) => Err(ssh.failure(host)),
        Err(Ended::Late) => Err(ssh.late(host, SETUP + timeout)),
        Err(Ended::Failed(e)) => Err(e),
    }
}

/// `npipe wait` on `host`: whether a server owns pipe `pipe` there within
/// `timeout` (plus [`SETUP`] for ssh).
pub(crate) fn wait(host: &str, pipe: &str, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + SETUP + timeout;
    let mut ssh = SshChild::spawn(
        host,
        &proto::wait_command(pipe, timeout),
        Stdio::null(),
        Stdio::null(),
    )?;
    let status = loop {
        match ssh.try_wait()? {
            Some(status) => break status,
            None if Instant::now() >= deadline => return Err(ssh.late(host, SETUP + timeout)),
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    if status.success() {
        return Ok(());
    }
    Err(proto::exit_failure(host, status, &ssh.stderr.wait_text()))
}

/// An ssh client process: killed if need be, and always reaped, once its stream
/// is closed; what it writes on stderr is kept for error messages.
#[derive(Debug)]
pub(crate) struct SshChild {
    child: Option<Child>,
    stderr: Stderr,
}

impl SshChild {
    fn spawn(
        host: &str,
        remote_command: &str,
        stdin: Stdio,
        stdout: Stdio,
    ) -> io::Result<SshChild> {
        let (program, args) = proto::ssh_command(host, remote_command);
        let mut command = Command::new(&program);
        command
            .args(&args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            // Not in the caller's process group: a Ctrl-C at the terminal is for
            // the program, which closes its streams as it sees fit.
            .process_group(0);
        let spawned = command.spawn();
        // The command holds the child's ends of the socket pair: closed now, so
        // that the stream sees the end of the connection when ssh exits.
        drop(command);
        let mut child = spawned.map_err(|e| {
            let program = program.to_string_lossy();
            err_src(
                if e.kind() == io::ErrorKind::NotFound {
                    ErrorKind::Unsupported
                } else {
                    ErrorKind::Io
                },
                format!(
                    "cannot run the ssh client `{program}` to reach {host} (install OpenSSH's \
                     client, or set {} to one)",
                    proto::SSH_VAR
                ),
                e,
            )
        })?;
        let stderr = Stderr::read(child.stderr.take());
        Ok(SshChild {
            child: Some(child),
            stderr,
        })
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// The error of an ssh that closed the connection before the handshake:
    /// why, from its exit status and stderr.
    fn failure(mut self, host: &str) -> io::Error {
        let Some(mut child) = self.child.take() else {
            return err(ErrorKind::Io, format!("lost the ssh client for {host}"));
        };
        // It has closed its end of the socket pair: it is exiting, if not gone.
        let status = match wait_for(&mut child, EXIT_GRACE) {
            Ok(Some(status)) => status,
            _ => {
                reap_now(child);
                return err(
                    ErrorKind::Io,
                    format!(
                        "the ssh client for {host} closed the connection without an answer \
                         from npipe there{}",
                        said(&self.stderr.text())
                    ),
                );
            }
        };
        proto::exit_failure(host, status, &self.stderr.wait_text())
    }

    /// The error of an ssh that did not finish within `allowed`; it is killed.
    fn late(mut self, host: &str, allowed: Duration) -> io::Error {
        if let Some(child) = self.child.take() {
            reap_now(child);
        }
        err(
            ErrorKind::Timeout,
            format!(
                "no answer from npipe on {host} through ssh within {}{}",
                fmt_duration(allowed),
                said(&self.stderr.text())
            ),
        )
    }

    /// Waits for the process to exit (its stream is closed), killing it after
    /// [`EXIT_GRACE`].
    pub(crate) fn reap(mut self) {
        if let Some(mut child) = self.child.take() {
            if !matches!(wait_for(&mut child, EXIT_GRACE), Ok(Some(_))) {
                reap_now(child);
            }
        }
    }

    /// For a socket that leaves npipe's hands (`into_std`): the process is
    /// reaped whenever it exits, and never killed (its socket is still in use).
    pub(crate) fn detach(mut self) {
        if let Some(mut child) = self.child.take() {
            let reaper = thread::Builder::new()
                .name("npipe-ssh-reaper".into())
                .spawn(move || {
                    let _ = child.wait();
                });
            // Without a thread, the process stays a zombie until this one exits.
            drop(reaper);
        }
    }
}

impl Drop for SshChild {
    /// The stream's socket is closed (or about to be, with it): ssh sees the end
    /// of its input, tells HOST, and exits. It is reaped on a thread of its
    /// own, and killed if it has not exited within [`EXIT_GRACE`].
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let spawned = thread::Builder::new()
            .name("npipe-ssh-reaper".into())
            .spawn(move || {
                if !matches!(wait_for(&mut child, EXIT_GRACE), Ok(Some(_))) {
                    reap_now(child);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread to reap the ssh client: {e}");
        }
    }
}

/// Waits up to `limit` for `child` to exit.
fn wait_for(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Kills and reaps `child`.
fn reap_now(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `: what ssh said`, or nothing.
fn said(stderr: &[u8]) -> String {
    let text = proto::host_text(stderr);
    if text.is_empty() {
        String::new()
    } else {
        format!(" (ssh's stderr: {text})")
    }
}

/// ssh's stderr, read by a thread (so ssh never blocks on it), its first
/// [`STDERR_KEPT`] bytes kept.
#[derive(Debug, Clone)]
struct Stderr {
    kept: Arc<Mutex<(Vec<u8>, bool)>>,
}

impl Stderr {
    fn read(pipe: Option<std::process::ChildStderr>) -> Stderr {
        let kept = Arc::new(Mutex::new((Vec::new(), pipe.is_none())));
        if let Some(mut pipe) = pipe {
            let shared = Arc::clone(&kept);
            let reader = thread::Builder::new()
                .name("npipe-ssh-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match pipe.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut kept = shared.lock().unwrap_or_else(|e| e.into_inner());
                        let room = STDERR_KEPT.saturating_sub(kept.0.len());
                        kept.0.extend_from_slice(&buf[..n.min(room)]);
                    }
                    shared.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
                });
            if reader.is_err() {
                kept.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            }
        }
        Stderr { kept }
    }

    /// What has been read so far.
    fn text(&self) -> Vec<u8> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Everything, once the pipe is closed (ssh has exited; a process it
    /// started could hold the pipe open, so not more than a second).
    fn wait_text(&self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            {
                let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.1 || Instant::now() >= deadline {
                    return kept.0.clone();
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Why no handshake line came.
enum Ended {
    /// ssh closed the connection first.
    Closed,
    /// The deadline passed.
    Late,
    Failed(io::Error),
}

/// Reads the handshake line (without its newline) from `sock` by `deadline`,
/// and not one byte more: what follows belongs to the pipe.
fn read_handshake(sock: &UnixStream, deadline: Instant) -> Result<Vec<u8>, Ended> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let peeked = match socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return Err(Ended::Closed),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                wait_readable(sock, deadline)?;
                continue;
            }
            Err(Errno::ECONNRESET) => return Err(Ended::Closed),
            Err(e) => return Err(Ended::Failed(e.into())),
        };
        let newline = buf[..peeked].iter().position(|&b| b == b'\n');
        // Everything before the newline is the handshake's: take it.
        let take = newline.map_or(peeked, |at| at + 1);
        let n = loop {
            match socket::recv(sock.as_raw_fd(), &mut buf[..take], MsgFlags::MSG_DONTWAIT) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Ended::Failed(e.into())),
            }
        };
        line.extend_from_slice(&buf[..n]);
        if newline.is_some() && n == take {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if line.len() > MAX_HANDSHAKE {
            line.truncate(200);
            return Ok(line);
        }
    }
}

fn wait_readable(sock: &UnixStream, deadline: Instant) -> Result<(), Ended> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Ended::Late);
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Ended::Failed(e.into())),
        }
    }
}
