//! The `npipe` binary with pipes outside the pipe directory: an absolute socket
//! path given as the name, and a socket a service manager passed (systemd socket
//! activation, driven by Debian's `systemd-socket-activate`). Real processes; no
//! timing is asserted; nothing is left running or on disk.

#![cfg(unix)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{json, npipe, run, Proc, TestDir, LIMIT};

/// The `npipe` binary under test.
fn npipe_exe() -> &'static str {
    env!("CARGO_BIN_EXE_npipe")
}

/// `npipe serve /abs/path` with `call`, `wait`, `info` and `list` on it: the pipe is
/// that socket file, its lock and record beside it; `list` (the pipe directory)
/// does not show it; everything is removed when the server stops.
#[test]
fn serve_call_wait_and_info_on_an_explicit_path() {
    let dir = TestDir::new("path");
    let path = dir.join("api.sock");
    let server = Proc::spawn(&["serve", &path, "--echo"], None);
    let waited = run(&["wait", &path, "--timeout", "20s"]);
    assert_eq!(waited.status.code(), Some(0), "{waited:?}");
    assert_eq!(
        dir.entries(),
        [".api.sock.info", ".api.sock.lock", "api.sock"]
    );

    let out = run(&["call", &path, "hello"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "hello\n");

    let info = json(&run(&["info", &path, "--json"]).stdout);
    assert_eq!(info["name"], path.as_str());
    assert_eq!(info["address"], path.as_str());
    assert_eq!(info["state"], "live");
    assert_eq!(info["server_pid"], server.child.id());
    assert_eq!(info["access"], "owner");
    assert_eq!(info["permissions"], "0600");
    assert_eq!(info["recorded"], true);
    let listed = json(&run(&["list", "--json"]).stdout);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["address"] == path.as_str()),
        "{listed}"
    );

    let out = server.terminate();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&format!("serving {path} at {path}")),
        "{}",
        out.stderr
    );
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    let out = run(&["call", &path, "again", "--timeout", "0"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // A relative path is refused with the rule, as a usage error.
    let out = run(&["call", "run/api.sock", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("an explicit socket path is absolute"),
        "{}",
        out.stderr
    );
}

/// `systemd-socket-activate -l PATH -- npipe serve PATH`: the first client wakes
/// the manager and is served by npipe on the socket it passed, as are later ones;
/// `info` says live with no record of npipe's; `--exec` commands see neither the
/// manager's variables nor the socket; SIGTERM stops the server with status 0;
/// npipe created no file beside the socket and left the socket file in place.
#[test]
fn serve_under_socket_activation() {
    let dir = TestDir::new("activate");
    let path = dir.join("x.sock");
    let mut cmd = Command::new(activator());
    cmd.arg(format!("--listen={path}"))
        .arg("--fdname=x.sock")
        .args(["--", npipe_exe(), "serve", &path])
        .args(["--exec", "env; ls -l /proc/$$/fd"]);
    let server = Proc::spawn_cmd(cmd, None);
    wait_for_file(Path::new(&path));
    // Wakes the manager, waits in the queue, and is answered by npipe.
    let out = run(&["call", &path, "first", "--timeout", "20s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!out.stdout.contains("LISTEN_"), "{}", out.stdout);
    assert!(out.stdout.contains("PATH="), "{}", out.stdout);
    assert!(!out.stdout.contains("socket:["), "{}", out.stdout);
    let waited = run(&["wait", &path, "--timeout", "0"]);
    assert_eq!(waited.status.code(), Some(0), "{waited:?}");

    let info = run(&["info", &path]);
    assert!(info.stdout.contains("state:      live"), "{}", info.stdout);
    assert!(info.stdout.contains("record:     none"), "{}", info.stdout);
    let info = json(&run(&["info", &path, "--json"]).stdout);
    assert_eq!(info["state"], "live");
    assert_eq!(info["recorded"], false);
    assert_eq!(info["server_pid"], server.child.id());

    let out = server.terminate();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "serving {path} at {path} on the socket the service manager passed"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("requests answered  1"),
        "{}",
        out.stdout
    );
    assert_eq!(dir.entries(), ["x.sock"]);
}

/// A passed socket that is not the pipe's is refused: `serve` exits 3 (not found)
/// saying where the socket is bound, and creates nothing.
#[test]
fn serve_refuses_a_passed_socket_bound_elsewhere() {
    let dir = TestDir::new("elsewhere");
    let passed = dir.join("a.sock");
    let served = dir.join("b.sock");
    let mut cmd = Command::new(activator());
    cmd.arg(format!("--listen={passed}"))
        .args(["--", npipe_exe(), "serve", &served]);
    let server = Proc::spawn_cmd(cmd, None);
    wait_for_file(Path::new(&passed));
    let _waiting = std::os::unix::net::UnixStream::connect(&passed).unwrap();
    let out = server.finish();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "is bound to {passed}, not to the pipe's socket {served}"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(dir.entries(), ["a.sock"]);
}

/// The variables of socket activation set by hand (`sh` keeps its pid across
/// `exec`, so `LISTEN_PID=$$` is npipe's): a descriptor 3 that is not a listening
/// Unix socket, or that is not open, is refused (exit 1) saying what it is, and
/// nothing is created; so are malformed variables (exit 1, saying which);
/// variables meant for another process are ignored, and the pipe is created as
/// usual.
#[test]
fn serve_checks_what_it_was_passed() {
    let dir = TestDir::new("passed");
    let path = dir.join("x.sock");
    for (setup, why) in [
        ("exec 3</etc/hostname", "is a regular file, not a socket"),
        ("exec 3<&-", "is not open"),
    ] {
        let script = format!(
            "{setup}; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=x.sock exec \"$0\" serve \"$1\""
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, npipe_exe(), &path]);
        let out = Proc::spawn_cmd(cmd, None).finish();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("the socket passed as fd 3 (\"x.sock\") {why}")),
            "{}",
            out.stderr
        );
        assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    }
    // Malformed variables for this process are an error, never a fall-back to a
    // socket of serve's own (whose --exec commands would inherit the passed one).
    for (vars, why) in [
        ("LISTEN_FDS=abc", "LISTEN_FDS=\"abc\" is not a number"),
        ("LISTEN_FDS=-1", "LISTEN_FDS=\"-1\" is not a number"),
        (
            "LISTEN_FDS=1 LISTEN_FDNAMES=a:b",
            "2 names for LISTEN_FDS=1",
        ),
        ("LISTEN_FDS=2147483644", "too many descriptors"),
    ] {
        let script =
            format!("exec 3</etc/hostname; LISTEN_PID=$$ {vars} exec \"$0\" serve \"$1\" --echo");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, npipe_exe(), &path]);
        let out = Proc::spawn_cmd(cmd, None).finish();
        assert_eq!(out.status.code(), Some(1), "{vars}: {out:?}");
        assert!(out.stderr.contains("malformed"), "{vars}: {}", out.stderr);
        assert!(out.stderr.contains(why), "{vars}: {}", out.stderr);
        assert!(out.stderr.len() < 2000, "{vars}: {}", out.stderr);
        assert!(dir.entries().is_empty(), "{vars}: {:?}", dir.entries());
    }
    let mut cmd = npipe();
    cmd.args(["serve", &path, "--echo"]);
    cmd.env("LISTEN_PID", "1").env("LISTEN_FDS", "1");
    let server = Proc::spawn_cmd(cmd, None);
    let out = run(&["call", &path, "created", "--timeout", "20s"]);
    assert_eq!(out.stdout, "created\n", "{out:?}");
    assert_eq!(dir.entries(), [".x.sock.info", ".x.sock.lock", "x.sock"]);
    let out = server.terminate();
    assert!(!out.stderr.contains("service manager"), "{}", out.stderr);
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

fn activator() -> &'static str {
    let found = Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "systemd-socket-activate is missing: install Debian's `systemd` package (scripts/test-all.sh does)"
    );
    "systemd-socket-activate"
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < LIMIT, "{} never appeared", path.display());
        thread::sleep(Duration::from_millis(5));
    }
}
