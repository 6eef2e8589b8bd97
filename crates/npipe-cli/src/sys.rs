//! Every OS call of the CLI (Unix only: on Windows the CLI needs none beyond std
//! and the library). The commands keep their policy — what a signal does, when a
//! group is killed — and call these primitives for the system calls:
//!
//! - signals: [`on_stop_signals`] (SIGINT and SIGTERM handled on a thread of their
//!   own) and [`wake_accept`] (`npipe listen`, `npipe forward`);
//! - credentials: [`current_ids`] (`npipe call`);
//! - process groups: [`ProcessGroup`] and [`wait_exited`] (`npipe serve --exec`);
//! - descriptors: [`wait_ready`], [`ready_now`], [`set_nonblocking`] and
//!   [`redirect_stdout`] (the relays, the commands' output).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::thread;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::unistd::Pid;

/// Blocks SIGINT and SIGTERM in the calling thread and runs `handler` on a thread of
/// its own for each of them that arrives (`sigwait`), until waiting fails.
///
/// Call it before any other thread exists: threads inherit the mask, so the signals
/// then reach only this handler's thread.
///
/// # Errors
///
/// The error of `pthread_sigmask` when the signals cannot be blocked.
pub(crate) fn on_stop_signals(mut handler: impl FnMut() + Send + 'static) -> io::Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    thread::spawn(move || {
        while signals.wait().is_ok() {
            handler();
        }
    });
    Ok(())
}

/// Wakes a thread blocked in `accept` on `listener` (`shutdown(SHUT_RDWR)`): its
/// `accept` fails and no client is accepted any more. Errors are ignored (the
/// socket may be closing already).
///
/// `listener` must be open for the duration of the call.
pub(crate) fn wake_accept(listener: RawFd) {
    let _ = nix::sys::socket::shutdown(listener, nix::sys::socket::Shutdown::Both);
}

/// This process's effective user and group ids (`geteuid`, `getegid`).
pub(crate) fn current_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// A process group, named by its leader's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessGroup(Pid);

impl ProcessGroup {
    /// The group led by the process `leader` (a child spawned in a group of its
    /// own); `None` if `leader` is no valid pid.
    pub(crate) fn led_by(leader: u32) -> Option<ProcessGroup> {
        i32::try_from(leader)
            .ok()
            .map(|pid| ProcessGroup(Pid::from_raw(pid)))
    }

    /// Sends `SIGKILL` to every process of the group (`killpg`). Errors are ignored:
    /// `ESRCH` means nobody is left.
    pub(crate) fn kill(self) {
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// Waits until the child `pid` has exited, leaving it a zombie to be reaped by
/// `Child::wait` (`waitid` with `WNOWAIT`): until then its pid, and the id of the
/// group it led, cannot be reused. Retries on `EINTR`.
///
/// # Errors
///
/// The error of `waitid` (`ECHILD` when `pid` is not a child of this process).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn wait_exited(pid: u32) -> io::Result<()> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let pid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// What a descriptor is watched for by [`wait_ready`] and [`ready_now`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Bytes to read, or the end of the input (`POLLIN`).
    Input,
    /// Only what `poll` always reports: a hang-up or an error.
    HangUp,
}

/// What `poll` reported for one descriptor (its `revents`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready(PollFlags);

impl Ready {
    /// Anything at all was reported.
    pub(crate) fn any(self) -> bool {
        !self.0.is_empty()
    }

    /// There are bytes to read (`POLLIN`).
    pub(crate) fn input(self) -> bool {
        self.0.contains(PollFlags::POLLIN)
    }

    /// The other side hung up (`POLLHUP`).
    pub(crate) fn hang_up(self) -> bool {
        self.0.contains(PollFlags::POLLHUP)
    }

    /// An error condition (`POLLERR`): for a pipe's write end, its reader is gone.
    pub(crate) fn error(self) -> bool {
        self.0.contains(PollFlags::POLLERR)
    }
}

/// Waits until at least one of `fds` is ready (`poll` without a timeout, retried on
/// `EINTR`): what was reported for each, in order.
///
/// # Errors
///
/// The error of `poll`.
pub(crate) fn wait_ready<const N: usize>(
    fds: [(BorrowedFd<'_>, Watch); N],
) -> io::Result<[Ready; N]> {
    let mut polled = fds.map(|(fd, watch)| PollFd::new(fd, flags(watch)));
    loop {
        match poll(&mut polled, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(polled.each_ref().map(revents)),
        }
    }
}

/// What `fd` is ready for right now (`poll` with a zero timeout).
///
/// # Errors
///
/// The error of `poll`, `EINTR` included.
pub(crate) fn ready_now(fd: BorrowedFd<'_>, watch: Watch) -> io::Result<Ready> {
    let mut polled = [PollFd::new(fd, flags(watch))];
    poll(&mut polled, PollTimeout::ZERO)?;
    Ok(revents(&polled[0]))
}

fn flags(watch: Watch) -> PollFlags {
    match watch {
        Watch::Input => PollFlags::POLLIN,
        Watch::HangUp => PollFlags::empty(),
    }
}

fn revents(polled: &PollFd<'_>) -> Ready {
    Ready(polled.revents().unwrap_or(PollFlags::empty()))
}

/// Makes reads from `fd` return `WouldBlock` instead of waiting
/// (`fcntl(F_SETFL, O_NONBLOCK)`, which clears the other status flags).
///
/// # Errors
///
/// The error of `fcntl`.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// Grows the buffer of `fd` to `bytes` if it is a pipe (`F_SETPIPE_SZ`, Linux),
/// so that a relay moves more per wake-up; anything else, or a size the system
/// refuses (`/proc/sys/fs/pipe-max-size`), is left as it is.
pub(crate) fn grow_pipe_buffer(fd: impl AsFd, bytes: i32) {
    #[cfg(target_os = "linux")]
    if nix::sys::stat::fstat(&fd)
        .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO)
    {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(bytes));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, bytes);
}

/// Puts `to` in the place of descriptor 1, stdout (`dup2`).
///
/// # Errors
///
/// The error of `dup2`.
pub(crate) fn redirect_stdout(to: impl AsFd) -> io::Result<()> {
    nix::unistd::dup2_stdout(to)?;
    Ok(())
}
