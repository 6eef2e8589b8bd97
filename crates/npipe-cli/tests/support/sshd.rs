//! A real OpenSSH server on 127.0.0.1 for the remote-pipe tests: "the remote host"
//! is this machine, reached through ssh.
//!
//! One sshd per test process, started by the first test that asks for it: keys
//! generated for the run, an `sshd_config` listening on a spare port of
//! 127.0.0.1 only, and an `ssh_config` naming the hosts the tests use:
//!
//! | host | what it is |
//! |---|---|
//! | `npipe-test` | root, with the authorized key |
//! | `npipe-test-badkey` | root, with a key sshd does not know: ssh cannot log in |
//! | `npipe-test-dead` | a port of 127.0.0.1 nothing listens on: ssh cannot connect |
//! | `npipe-test-other` | [`Sshd::other_user`], a user created for the run |
//!
//! The library and the `npipe` children find them through `NPIPE_SSH="ssh -F
//! CONFIG"`, and npipe on "HOST" is this build's binary (`NPIPE_REMOTE_NPIPE`):
//! both set in this process's environment once, before any remote test uses
//! them (the same values for every test).
//!
//! Nothing outlives the test process: sshd runs under a guardian shell that
//! reads a pipe this process holds open for its whole life; when the process
//! exits (or aborts) the pipe closes, and the guardian kills sshd, deletes the
//! user it may have created and removes the directory.

#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The host the tests reach pipes on.
pub(crate) const HOST: &str = "npipe-test";
/// A host sshd refuses to log in to (the key is not authorized).
pub(crate) const BAD_KEY_HOST: &str = "npipe-test-badkey";
/// A host ssh cannot connect to (nothing listens on its port).
pub(crate) const DEAD_HOST: &str = "npipe-test-dead";
/// The host as [`Sshd::other_user`].
pub(crate) const OTHER_USER_HOST: &str = "npipe-test-other";

/// The test process's sshd.
pub(crate) struct Sshd {
    pub(crate) dir: PathBuf,
    pub(crate) ssh_config: PathBuf,
    /// `ssh -F CONFIG`: what `NPIPE_SSH` is set to.
    pub(crate) ssh_command: String,
    other_user: String,
    other_created: Mutex<Option<Result<u32, String>>>,
    /// Held for the life of the process: its closing stops the guardian.
    _lifeline: Mutex<ChildStdin>,
}

/// The sshd of this test process, started on first use; `Err(why)` when it
/// cannot run here (the caller skips the test, or fails under CI).
pub(crate) fn sshd() -> Result<&'static Sshd, String> {
    static SSHD: OnceLock<Result<Sshd, String>> = OnceLock::new();
    SSHD.get_or_init(start).as_ref().map_err(Clone::clone)
}

impl Sshd {
    /// A user other than root that ssh can log in as (`npipe-test-other`),
    /// created for this run (`useradd`) and deleted when the process exits: its
    /// uid, or why there is none.
    pub(crate) fn other_user(&self) -> Result<u32, String> {
        let mut created = self.other_created.lock().unwrap_or_else(|e| e.into_inner());
        created
            .get_or_insert_with(|| create_user(&self.other_user))
            .clone()
    }
}

fn start() -> Result<Sshd, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root to run sshd and log in through it".into());
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} is missing (apt-get install openssh-server openssh-client)"
            ));
        }
    }
    let dir = PathBuf::from(format!("/tmp/npipe-sshd-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Searchable by all: sshd reads authorized_keys as the user logging in, and
    // the tests log in as a second user too. The private keys are 0600.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    for key in ["host_key", "user_key", "unknown_key"] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "npipe-test", "-f"])
            .arg(dir.join(key))
            .output()
            .map_err(|e| format!("ssh-keygen: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ssh-keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let authorized = dir.join("authorized_keys");
    fs::copy(dir.join("user_key.pub"), &authorized).map_err(|e| e.to_string())?;
    fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644))
        .map_err(|e| e.to_string())?;
    let port = spare_port()?;
    let dead_port = spare_port()?;
    let other_user = format!("npipe-rt{}", std::process::id());
    let d = dir.display();
    fs::write(
        dir.join("sshd_config"),
        format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             MaxStartups 100:30:200\n\
             LogLevel ERROR\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let host = |alias: &str, port: u16, user: &str, key: &str| {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
             IdentityFile {d}/{key}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking accept-new\n  BatchMode yes\n  LogLevel ERROR\n"
        )
    };
    let ssh_config = dir.join("ssh_config");
    fs::write(
        &ssh_config,
        [
            host(HOST, port, "root", "user_key"),
            host(BAD_KEY_HOST, port, "root", "unknown_key"),
            host(DEAD_HOST, dead_port, "root", "user_key"),
            host(OTHER_USER_HOST, port, &other_user, "user_key"),
        ]
        .concat(),
    )
    .map_err(|e| e.to_string())?;
    // sshd's privilege separation directory.
    fs::create_dir_all("/run/sshd").map_err(|e| format!("creating /run/sshd: {e}"))?;

    // The guardian: sshd in the background, then wait for this process's end.
    let script = format!(
        "/usr/sbin/sshd -D -e -f '{d}/sshd_config' 2>>'{d}/sshd.log' & sshd=$!\n\
         cat >/dev/null\n\
         kill $sshd 2>/dev/null; wait $sshd\n\
         userdel '{other_user}' 2>/dev/null\n\
         rm -rf '{d}'\n"
    );
    let mut guardian = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting sshd: {e}"))?;
    let lifeline = guardian.stdin.take().ok_or("no stdin")?;
    // Reaped by nobody: it must outlive this process to clean up after it.
    thread::spawn(move || {
        let _ = guardian.wait();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            return Err(format!(
                "sshd did not start listening on port {port}: {log}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    let ssh_command = format!("ssh -F {}", ssh_config.display());
    // The same for every test of this process, set before any of them reads it.
    std::env::set_var("NPIPE_SSH", &ssh_command);
    std::env::set_var("NPIPE_REMOTE_NPIPE", env!("CARGO_BIN_EXE_npipe"));
    // The bridge on "HOST" runs in sshd's environment, without NPIPE_DIR: so do
    // the servers of these tests.
    std::env::remove_var("NPIPE_DIR");
    let sshd = Sshd {
        dir,
        ssh_config,
        ssh_command,
        other_user,
        other_created: Mutex::new(None),
        _lifeline: Mutex::new(lifeline),
    };
    // One login first: accepts the host key into the run's known_hosts, so that
    // tests running at once do not race to write it.
    let out = Command::new("ssh")
        .args(["-F"])
        .arg(&sshd.ssh_config)
        .args([HOST, "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ssh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh {HOST} true failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(sshd)
}

/// A port of 127.0.0.1 nobody listens on now.
fn spare_port() -> Result<u16, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// `useradd` of a user with a shell (sshd runs commands with it), no home and a
/// password that is unusable but not "locked" (sshd without PAM refuses locked
/// accounts, even with a key).
fn create_user(name: &str) -> Result<u32, String> {
    let out = Command::new("useradd")
        .args([
            "-M",
            "-N",
            "-d",
            "/nonexistent",
            "-s",
            "/bin/sh",
            "-p",
            "*",
            name,
        ])
        .output()
        .map_err(|e| format!("useradd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new("id")
        .args(["-u", name])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("id -u {name}: {e}"))
}

/// Processes whose command line contains `needle` (the test's unique pipe name
/// is in the command line of its ssh clients and of `npipe bridge` on "HOST").
pub(crate) fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push((pid, text));
        }
    }
    found
}

/// Waits (up to `limit`) until no process mentions `needle`; the ones left.
pub(crate) fn wait_until_none_mention(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
