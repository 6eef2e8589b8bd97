//! Child processes: this same executable re-executed with a hidden role (the
//! harness's servers and clients, `npipe demo`'s clients). The stdout lines of
//! a group of children arrive on one channel, tagged with each child's id;
//! every child is killed and reaped when its handle drops, so nothing outlives
//! the parent's command, even on error.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

/// A line a child printed, or the end of its output.
#[derive(Debug)]
pub enum Event {
    Line(usize, String),
    Closed(usize),
}

/// Where a child's stderr goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stderr {
    /// To this process's stderr (the child's logs show as they come).
    Inherit,
    /// Kept, so that an error can quote the child's last words.
    Capture,
}

/// A running child; killed and reaped on drop.
#[derive(Debug)]
pub struct Child {
    what: String,
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    stderr: Option<Arc<Mutex<String>>>,
}

/// This executable, to be started with a hidden role's arguments.
pub fn this_program() -> Result<Command> {
    let exe = std::env::current_exe().context("cannot locate this program's executable")?;
    Ok(Command::new(exe))
}

/// Starts `cmd` (described as `what` in errors) with piped stdin, sending its
/// stdout lines to `events` as [`Event`]s tagged with `id`.
pub fn spawn(
    id: usize,
    what: String,
    mut cmd: Command,
    stderr: Stderr,
    events: Sender<Event>,
) -> Result<Child> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    cmd.stderr(match stderr {
        Stderr::Inherit => Stdio::inherit(),
        Stderr::Capture => Stdio::piped(),
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if events.send(Event::Line(id, line)).is_err() {
                return;
            }
        }
        let _ = events.send(Event::Closed(id));
    });
    let stderr = child.stderr.take().map(|mut pipe| {
        let kept = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&kept);
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            if let Ok(mut kept) = sink.lock() {
                kept.push_str(&text);
            }
        });
        kept
    });
    let stdin = child.stdin.take();
    Ok(Child {
        what,
        child,
        stdin,
        stderr,
    })
}

impl Child {
    /// What the child is, as given to [`spawn`].
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Writes a line to the child's stdin.
    pub fn tell(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("child stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("cannot write to {}", self.what))
    }

    /// Closes the child's stdin and waits for it to exit; `true` if it
    /// succeeded.
    pub fn wait(&mut self) -> Result<bool> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))?;
        Ok(status.success())
    }

    /// Why the child stopped early, for an error message: its exit status and
    /// the end of what it wrote on stderr (if captured).
    pub fn ended(&mut self) -> String {
        // Give the readers a moment to catch the dying words and the status.
        thread::sleep(Duration::from_millis(20));
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            _ => "running".into(),
        };
        let said = self
            .stderr
            .as_ref()
            .and_then(|kept| kept.lock().ok().map(|text| text.trim().to_owned()))
            .unwrap_or_default();
        // The last 500 bytes, cut at a character boundary.
        let tail = (said.len().saturating_sub(500)..said.len())
            .find(|&i| said.is_char_boundary(i))
            .map_or("", |i| &said[i..]);
        if tail.is_empty() {
            format!("{} exited ({status})", self.what)
        } else {
            format!("{} exited ({status}): {tail}", self.what)
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
