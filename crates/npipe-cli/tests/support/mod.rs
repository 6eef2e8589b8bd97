//! What the tests of the `npipe` binary share: unique names, spawning `npipe`
//! (output collected by threads, so a child never blocks on a full pipe; killed
//! and reaped on drop), waiting for a pipe, processes seen in `/proc`, users
//! switched with `setpriv`, and directories removed after the test. Every wait
//! has a deadline, so a hang fails the test instead of the run.

// Each test binary uses its own part of it.
#![allow(dead_code)]

pub(crate) mod sshd;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single command may run before the test fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// Whether the tests run under CI, where none may skip itself.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A unique pipe name for this test process, named after the test binary.
pub(crate) fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}{}-{n}-{tag}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    )
}

/// The `npipe` binary under test, with the default pipe directory.
pub(crate) fn npipe() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_npipe"));
    cmd.env_remove("NPIPE_DIR");
    cmd
}

/// The outcome of a finished command, as text.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A spawned process whose stdout and stderr threads collect; stopped (see
/// [`stop`]) and reaped on drop, however the test ends.
pub(crate) struct Proc {
    pub(crate) child: Child,
    /// What runs, for the message of a test that fails waiting for it.
    command: String,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Proc {
    /// `npipe ARGS`, with `stdin` as its input (then EOF), or none.
    pub(crate) fn spawn(args: &[&str], stdin: Option<&[u8]>) -> Proc {
        let mut cmd = npipe();
        cmd.args(args);
        Proc::spawn_cmd(cmd, stdin)
    }

    /// `cmd`, with `stdin` as its input (then EOF), or none.
    pub(crate) fn spawn_cmd(mut cmd: Command, stdin: Option<&[u8]>) -> Proc {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let command = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            let input = input.to_vec();
            thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let collect = |mut pipe: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Proc {
            child,
            command,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the process");
    }

    /// Waits for exit, failing the test after `limit` (the process killed), and
    /// collects the output as it is.
    pub(crate) fn output_within(mut self, limit: Duration) -> std::process::Output {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} still running after {limit:?}", self.command);
            }
            thread::sleep(Duration::from_millis(5));
        };
        let bytes = |h: Option<thread::JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        std::process::Output {
            status,
            stdout: bytes(self.stdout.take()),
            stderr: bytes(self.stderr.take()),
        }
    }

    /// Waits for exit, failing the test after `limit`, and collects the output
    /// as text.
    pub(crate) fn finish_within(self, limit: Duration) -> Output {
        let out = self.output_within(limit);
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Waits for exit (failing after [`LIMIT`]) and collects the output.
    pub(crate) fn finish(self) -> Output {
        self.finish_within(LIMIT)
    }

    /// Asks for a graceful stop (SIGTERM) and collects the output.
    pub(crate) fn terminate(self) -> Output {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.finish()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops `child` if it still runs: SIGTERM first, so a server shuts down
/// gracefully and removes its files, SIGKILL if it lingers. Always reaped.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while let Ok(None) = child.try_wait() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.wait();
}

/// Runs `npipe ARGS` to completion.
pub(crate) fn run(args: &[&str]) -> Output {
    Proc::spawn(args, None).finish()
}

/// Runs `npipe ARGS` with `input` on stdin.
pub(crate) fn run_with_input(args: &[&str], input: &[u8]) -> Output {
    Proc::spawn(args, Some(input)).finish()
}

/// Starts `npipe serve NAME EXTRA...` and waits until the pipe is live.
pub(crate) fn serve(name: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["serve", name];
    args.extend_from_slice(extra);
    let server = Proc::spawn(&args, None);
    wait_live(name);
    server
}

/// Waits until a server owns pipe `name` (`npipe wait`), failing the test if
/// none does within 20 s.
pub(crate) fn wait_live(name: &str) {
    let out = run(&["wait", name, "--timeout", "20s"]);
    assert_eq!(out.code(), Some(0), "pipe {name} never appeared: {out:?}");
}

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
}

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: the comm may hold spaces, not `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// `program` as user nobody (`setpriv`, no supplementary groups; stdio
/// /dev/null), or `None` when this process cannot switch users (the test is
/// then skipped, except under CI, where it fails).
pub(crate) fn as_nobody(program: &OsStr) -> Option<Command> {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !under_ci(),
            "cannot run under CI: needs root to run a process as user nobody (setpriv)"
        );
        eprintln!("SKIPPED: needs root to run a process as user nobody (setpriv)");
        return None;
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .env_remove("NPIPE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Some(cmd)
}

/// A directory of the test's own in `/tmp`, removed with everything in it when
/// dropped.
pub(crate) struct TestDir(pub(crate) PathBuf);

impl TestDir {
    /// Mode 0755: others may enter it but not write it.
    pub(crate) fn new(tag: &str) -> TestDir {
        TestDir::with_mode(tag, 0o755)
    }

    /// Mode 0700: only this user may use it (an `NPIPE_DIR`).
    pub(crate) fn private(tag: &str) -> TestDir {
        TestDir::with_mode(tag, 0o700)
    }

    fn with_mode(tag: &str, mode: u32) -> TestDir {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&path)
            .expect("create the test directory");
        // Whatever the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("set the test directory's mode");
        TestDir(path)
    }

    /// The path of `file` in it, as text.
    pub(crate) fn join(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }

    /// The names in it, sorted.
    pub(crate) fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
