//! Child processes: the test binary re-executes itself to play a role in another
//! process (a server, a client, another user).
//!
//! `child(role, args)` runs this test executable with `NPIPE_TEST_ROLE=role` and
//! `NPIPE_TEST_ARGS` set, filtered to the `child_role` test, which dispatches to the
//! role function and exits. Roles are registered in `tests/tests.rs::child_role`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Marks the lines a role says, apart from what the test harness prints.
const MARK: &str = "@@ ";

/// Says one line to the parent test (on its own line, whatever libtest printed).
pub(crate) fn say(line: impl std::fmt::Display) {
    println!("\n{MARK}{line}");
}

/// A spawned role process; killed when dropped if still running.
pub(crate) struct Child {
    inner: std::process::Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    /// The pipe the role was given (its first argument), cleaned up on drop.
    #[cfg_attr(not(unix), allow(dead_code))]
    pipe: Option<String>,
}

/// The command for a role, to adjust (e.g. run as another user) before spawning.
pub(crate) fn command(role: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("test executable path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("NPIPE_TEST_ROLE", role)
        .env("NPIPE_TEST_ARGS", args.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Spawns this test binary in `role`.
pub(crate) fn child(role: &str, args: &[&str]) -> Child {
    spawn(command(role, args))
}

/// Spawns a prepared command (see [`command`]).
pub(crate) fn spawn(mut cmd: Command) -> Child {
    let pipe = cmd
        .get_envs()
        .find(|(k, _)| *k == "NPIPE_TEST_ARGS")
        .and_then(|(_, v)| v?.to_str()?.split('\u{1f}').next().map(str::to_owned))
        .filter(|p| !p.is_empty());
    let mut inner = cmd.spawn().expect("spawn child role");
    let stdout = inner.stdout.take().map(BufReader::new);
    Child {
        inner,
        stdout,
        pipe,
    }
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Reads the child's [`say`] lines until one starts with `prefix`, returning the
    /// rest of it. Panics if the child ends first.
    pub(crate) fn expect_line(&mut self, prefix: &str) -> String {
        let out = self.stdout.as_mut().expect("stdout captured");
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "child ended before saying {prefix:?}");
            let said = line.trim_end().strip_prefix(MARK);
            if let Some(rest) = said.and_then(|l| l.strip_prefix(prefix)) {
                return rest.to_owned();
            }
        }
    }

    /// The rest of stdout (waits for the child to close it).
    pub(crate) fn rest_of_output(&mut self) -> String {
        let mut s = String::new();
        if let Some(out) = self.stdout.as_mut() {
            out.read_to_string(&mut s).expect("read child stdout");
        }
        s
    }

    /// Waits for exit, failing after `limit`.
    pub(crate) fn wait_for(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.inner.try_wait().expect("wait child") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "child still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.inner.try_wait() {
            self.kill();
        }
        // A role killed while serving leaves its socket and lock files (SIGKILL skips
        // every destructor); remove them unless a live server owns the name again.
        #[cfg(unix)]
        if let Some(pipe) = &self.pipe {
            remove_stale_files(pipe);
        }
    }
}

#[cfg(unix)]
fn remove_stale_files(pipe: &str) {
    if npipe::wait(pipe, Duration::ZERO).is_ok() {
        return;
    }
    if let Some(path) = super::names::socket_file(pipe) {
        for suffix in ["lock", "info"] {
            let _ = std::fs::remove_file(super::names::beside(&path, suffix));
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// The role and arguments this process was started with, if it is a child.
pub(crate) fn role() -> Option<(String, Vec<String>)> {
    let role = std::env::var("NPIPE_TEST_ROLE").ok()?;
    let args = std::env::var("NPIPE_TEST_ARGS").unwrap_or_default();
    let args = if args.is_empty() {
        Vec::new()
    } else {
        args.split('\u{1f}').map(str::to_owned).collect()
    };
    Some((role, args))
}
