//! Child processes of `demo` and `bench`: this same binary re-executed with a hidden
//! subcommand. Each child's stdout lines arrive on one shared channel; every child
//! is killed and reaped when its handle is dropped, so nothing outlives the parent's
//! command even on error.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

/// A line a child printed, or its end of output.
#[derive(Debug)]
pub(crate) enum Event {
    Line(usize, String),
    Closed(usize),
}

/// A running child; killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// Starts `npipe ARGS...` (this executable), sending its stdout lines as
/// [`Event`]s tagged with `id`. Its stderr is inherited.
pub(crate) fn spawn(id: usize, args: &[String], events: Sender<Event>) -> anyhow::Result<Worker> {
    let exe = std::env::current_exe().context("finding the npipe executable")?;
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let stdin = child.stdin.take();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if events.send(Event::Line(id, line)).is_err() {
                return;
            }
        }
        let _ = events.send(Event::Closed(id));
    });
    Ok(Worker { child, stdin })
}

impl Worker {
    /// The child's process id.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Writes a line to the child's stdin.
    pub(crate) fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("child stdin closed")?;
        writeln!(stdin, "{line}").context("writing to a child process")?;
        stdin.flush().context("writing to a child process")
    }

    /// Closes the child's stdin (the signal to stop), waits up to `grace` for it to
    /// exit, then kills it. `true` if it exited successfully by itself.
    pub(crate) fn stop(&mut self, grace: Duration) -> bool {
        drop(self.stdin.take());
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return false;
                }
            }
        }
    }

    /// Waits for the child to exit; `true` if it succeeded.
    pub(crate) fn wait(&mut self) -> anyhow::Result<bool> {
        drop(self.stdin.take());
        Ok(self
            .child
            .wait()
            .context("waiting for a child process")?
            .success())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
