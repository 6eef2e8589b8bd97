//! The commands of `npipe serve --exec`: one per request, run through the shell
//! with the request on stdin and its stdout as the reply, and none of whose
//! processes outlives its request.
//!
//! On Unix each command runs in a process group of its own. The group is killed
//! (`SIGKILL`) when the request ends, whatever ends it: the command exited (what
//! it left running in the background goes with it), or the server cancelled the
//! request (its deadline passed, its client is gone, or the grace period of a
//! shutdown is over). At shutdown, every group still running is killed too.

#[cfg(not(unix))]
use std::io::Read;
use std::io::Write;
#[cfg(unix)]
use std::process::{Child, ExitStatus};
use std::process::{Command, Stdio};
#[cfg(unix)]
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use anyhow::Context;

/// Runs the commands of one server, and keeps track of them.
#[derive(Debug)]
pub(crate) struct Commands {
    /// The server's runtime, which watches for cancelled requests.
    #[cfg_attr(not(unix), allow(dead_code))]
    runtime: tokio::runtime::Handle,
    #[cfg(unix)]
    running: Mutex<Vec<Arc<group::Group>>>,
}

impl Commands {
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Commands {
        Commands {
            runtime,
            #[cfg(unix)]
            running: Mutex::new(Vec::new()),
        }
    }

    /// Runs `cmd` for `request`: its stdout, or an error when it could not start,
    /// exited unsuccessfully or was killed because the request was cancelled.
    pub(crate) fn run(&self, cmd: &str, request: &npipe::Request) -> anyhow::Result<Vec<u8>> {
        let mut command = shell(cmd);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting `{cmd}`"))?;
        #[cfg(unix)]
        let group = self.watch(&child, request);
        // Feed stdin on a thread of its own, so that a command that writes before
        // it has read everything cannot deadlock with us.
        let feeder = child.stdin.take().map(|mut stdin| {
            let input = request.body().to_vec();
            thread::spawn(move || {
                // A command that ignores its input closes the pipe early: not an error.
                let _ = stdin.write_all(&input);
            })
        });
        #[cfg(unix)]
        let (status, output) = self.collect(&mut child, &group);
        #[cfg(not(unix))]
        let (status, output) = {
            let reader = child.stdout.take().map(|mut stdout| {
                thread::spawn(move || {
                    let mut output = Vec::new();
                    stdout.read_to_end(&mut output).map(|_| output)
                })
            });
            let status = child.wait();
            let output = match reader.map(|reader| reader.join()) {
                Some(Ok(output)) => output,
                Some(Err(_)) => Err(std::io::Error::other("the reading thread panicked")),
                None => Ok(Vec::new()),
            };
            (status, output)
        };
        let status = status.with_context(|| format!("running `{cmd}`"))?;
        let output = output.with_context(|| format!("reading the output of `{cmd}`"))?;
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }
        if request.is_cancelled() {
            anyhow::bail!("`{cmd}` was killed: its request was cancelled");
        }
        if !status.success() {
            anyhow::bail!("`{cmd}` failed ({status})");
        }
        Ok(output)
    }

    /// Kills every command still running (at shutdown, after the grace period).
    pub(crate) fn kill_all(&self) {
        #[cfg(unix)]
        for group in self.running().iter() {
            group.kill();
        }
    }
}

fn shell(cmd: &str) -> Command {
    #[cfg(unix)]
    let (shell, flag) = ("sh", "-c");
    #[cfg(not(unix))]
    let (shell, flag) = ("cmd", "/C");
    let mut command = Command::new(shell);
    command.arg(flag).arg(cmd);
    command
}

#[cfg(unix)]
impl Commands {
    fn running(&self) -> MutexGuard<'_, Vec<Arc<group::Group>>> {
        // A list of groups: a panic elsewhere cannot leave it inconsistent.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the group of `child` (its own, see `process_group(0)`) and kills
    /// it if `request` is cancelled while the command runs.
    fn watch(&self, child: &Child, request: &npipe::Request) -> Arc<group::Group> {
        let group = Arc::new(group::Group::new(child.id()));
        self.running().push(Arc::clone(&group));
        let cancellation = request.cancellation();
        let watched = Arc::clone(&group);
        let watcher = self.runtime.spawn(async move {
            cancellation.cancelled().await;
            watched.kill();
        });
        group.set_watcher(watcher.abort_handle());
        if request.is_cancelled() {
            // Cancelled before the group was registered, as at shutdown, when
            // `kill_all` may have run already and the watcher may never run.
            group.kill();
        }
        group
    }

    /// Reads the command's stdout while waiting for its shell to exit, kills what
    /// is left of its group, reaps the shell and forgets the group: the exit
    /// status and the output.
    ///
    /// The command's end is its shell's exit, not the end of its stdout: a process
    /// that left the group (`setsid`) and still holds stdout must not hold back
    /// the reply. So a thread waits for the shell and, once it has exited and its
    /// group is killed, wakes this one, which takes what the pipe holds by then
    /// (everything the command wrote) and stops reading.
    fn collect(
        &self,
        child: &mut Child,
        group: &Arc<group::Group>,
    ) -> (std::io::Result<ExitStatus>, std::io::Result<Vec<u8>>) {
        let stdout = child.stdout.take();
        let (status, output) = thread::scope(|scope| {
            let (exited, wake) = match std::os::unix::net::UnixStream::pair() {
                Ok(pair) => pair,
                Err(e) => return (group::wait_and_retire(child, group), Err(e)),
            };
            let waiter = scope.spawn(move || {
                let status = group::wait_and_retire(child, group);
                // Wakes the reader; dropping `exited` would do it too.
                let _ = (&exited).write_all(&[1]);
                status
            });
            let output = match stdout {
                Some(stdout) => group::read_until_exit(stdout, &wake),
                None => Ok(Vec::new()),
            };
            let status = waiter
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the waiting thread panicked")));
            (status, output)
        });
        self.running().retain(|g| !Arc::ptr_eq(g, group));
        (status, output)
    }
}

#[cfg(unix)]
mod group {
    use std::process::{Child, ExitStatus};
    use std::sync::Mutex;

    use crate::sys::{self, ProcessGroup, Watch};

    /// A command's process group.
    #[derive(Debug)]
    pub(super) struct Group {
        /// The group's id, the shell's pid, as long as the group may be signalled:
        /// until the shell is reaped, no other process or group can take the id.
        /// `None` once retired.
        id: Mutex<Option<ProcessGroup>>,
        /// The task that kills the group if its request is cancelled.
        watcher: Mutex<Option<tokio::task::AbortHandle>>,
    }

    impl Group {
        pub(super) fn new(leader: u32) -> Group {
            Group {
                id: Mutex::new(ProcessGroup::led_by(leader)),
                watcher: Mutex::new(None),
            }
        }

        pub(super) fn set_watcher(&self, watcher: tokio::task::AbortHandle) {
            *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        }

        /// Kills every process of the group, unless it is retired.
        pub(super) fn kill(&self) {
            let id = self.id.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = *id {
                id.kill();
            }
        }

        /// Kills what is left of the group for the last time.
        fn retire(&self) {
            if let Some(watcher) = self
                .watcher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                watcher.abort();
            }
            let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = id.take() {
                id.kill();
            }
        }
    }

    /// Reads `stdout` until its end, or until `exited` is readable (the command's
    /// shell has exited and its group is killed): then what the pipe holds is
    /// taken without waiting for an end that a process outside the group could
    /// withhold.
    pub(super) fn read_until_exit(
        stdout: std::process::ChildStdout,
        exited: &std::os::unix::net::UnixStream,
    ) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        use std::os::fd::AsFd;
        let stdout = std::fs::File::from(std::os::fd::OwnedFd::from(stdout));
        let mut output = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let [out, shell] = sys::wait_ready([
                (stdout.as_fd(), Watch::Input),
                (exited.as_fd(), Watch::Input),
            ])?;
            let has_data = out.input() || out.hang_up();
            let shell_gone = shell.any();
            if has_data {
                match (&stdout).read(&mut chunk) {
                    Ok(0) => return Ok(output),
                    Ok(n) => {
                        output.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if shell_gone {
                // Everything the group wrote is in the pipe: take it without
                // blocking, then stop.
                sys::set_nonblocking(&stdout)?;
                loop {
                    match (&stdout).read(&mut chunk) {
                        Ok(0) => return Ok(output),
                        Ok(n) => output.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(output),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Waits for `child`, the group's leader, to exit; then retires the group and
    /// reaps the child. On Linux the child is reaped only after the group is
    /// killed, so that its id cannot have been reused by then.
    pub(super) fn wait_and_retire(child: &mut Child, group: &Group) -> std::io::Result<ExitStatus> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Leaves the child a zombie, for `child.wait` below.
            sys::wait_exited(child.id())?;
            group.retire();
            child.wait()
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            // Without `waitid`'s WNOWAIT: the group is killed right after the
            // leader is reaped (its id is free again only in theory, for a moment).
            let status = child.wait();
            group.retire();
            status
        }
    }
}
