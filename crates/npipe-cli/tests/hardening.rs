//! The `npipe` binary with hostile input (issue 7): binary and invalid UTF-8
//! payloads pass through unchanged, invalid UTF-8 and hostile names in arguments are
//! usage errors (exit 2) that say why. Things planted or deleted in the pipe
//! directory: a fifo at the lock path is "name in use" (7), a deleted socket is not
//! live for any verb, and names with spaces mean the same to every verb. Real
//! server and client processes; no timing is asserted.

#![cfg(unix)]

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single command may run before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// Bytes that are not UTF-8, with NULs, CR/LF and every high byte.
fn binary() -> Vec<u8> {
    let mut bytes = vec![0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'\r', b'\n', 0x00];
    bytes.extend(0..=255u8);
    bytes.extend_from_slice(&[0xed, 0xa0, 0x80, 0xf8, 0x88, 0x80, 0x80, 0x80]);
    bytes
}

fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("clih{}-{n}-{tag}", std::process::id())
}

fn npipe() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_npipe"));
    cmd.env_remove("NPIPE_DIR");
    cmd
}

/// Runs `npipe ARGS` with `input` on stdin; fails the test if it runs too long.
fn run<S: AsRef<OsStr>>(args: &[S], input: &[u8]) -> Output {
    let mut child = npipe()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn npipe");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let done = Guard(Some(child));
    let start = Instant::now();
    let mut done = done;
    loop {
        let child = done.0.as_mut().unwrap();
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "npipe {:?} still running",
            args_text(args)
        );
        thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    done.0.take().unwrap().wait_with_output().unwrap()
}

fn args_text<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

/// Stops and reaps a server when the test ends, however it ends: SIGTERM first, so
/// the server shuts down gracefully and removes its files, SIGKILL if it lingers.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serve(name: &str, extra: &[&str]) -> Guard {
    let server = npipe()
        .arg("serve")
        .arg(name)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn npipe serve");
    let guard = Guard(Some(server));
    let out = run(&["wait", name, "--timeout", "20s"], b"");
    assert!(out.status.success(), "pipe {name} never appeared: {out:?}");
    guard
}

#[test]
fn binary_requests_and_replies_pass_through_call_unchanged() {
    let payload = binary();
    for mode in ["message", "byte"] {
        let name = unique(mode);
        let _server = serve(&name, &["--echo", "--mode", mode]);
        let out = run(&["call", &name, "-", "-n", "--mode", mode], &payload);
        assert!(out.status.success(), "{mode}: {out:?}");
        assert_eq!(out.stdout, payload, "{mode}: the reply, byte for byte");
        assert!(out.stderr.is_empty(), "{mode}: {out:?}");
    }
}

#[test]
fn a_handler_printing_invalid_utf8_is_relayed_as_is() {
    let name = unique("exec");
    let _server = serve(&name, &["--exec", r"printf '\377\000\376ok'"]);
    let out = run(&["call", &name, "go", "-n"], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"\xff\x00\xfeok");
}

#[test]
fn invalid_utf8_arguments_are_usage_errors() {
    let bad = OsStr::from_bytes(b"caf\xe9");
    let name = unique("utf8");
    let _server = serve(&name, &["--echo"]);
    for args in [
        vec![OsStr::new("call"), OsStr::new(&name), bad],
        vec![OsStr::new("call"), bad, OsStr::new("hello")],
        vec![OsStr::new("info"), bad],
        vec![OsStr::new("serve"), bad],
    ] {
        let out = run(&args, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{:?}: {out:?}",
            args_text(&args)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("UTF-8"), "{:?}: {stderr}", args_text(&args));
    }
    // The server never saw anything and still answers.
    let out = run(&["call", &name, "still fine"], b"");
    assert_eq!(out.stdout, b"still fine\n");
}

#[test]
fn hostile_names_are_usage_errors_that_say_why() {
    let long = "n".repeat(300);
    for (name, why) in [
        ("..", "not names"),
        ("../etc/passwd", "start with `.`"),
        ("a/b", "`/`"),
        ("/etc/passwd", "`/`"),
        ("tab\there", "printable"),
        (long.as_str(), "the limit is 247"),
        (r"\\.\pipe\..", "not names"),
    ] {
        for verb in [
            vec!["call", name, "x"],
            vec!["serve", name],
            vec!["listen", name],
            vec!["info", name],
            vec!["wait", name, "--timeout", "10ms"],
        ] {
            let out = run(&verb, b"");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{verb:?}: {stderr}");
            assert!(stderr.contains(why), "{verb:?}: {stderr}");
        }
    }
    assert!(std::path::Path::new("/etc/passwd").exists());
}

/// `npipe info NAME --json`, parsed.
fn info(name: &str) -> serde_json::Value {
    let out = run(&["info", name, "--json"], b"");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("info prints JSON")
}

/// `npipe list --json`'s entry for `name`, if listed.
fn listed(name: &str) -> Option<serde_json::Value> {
    let out = run(&["list", "--json"], b"");
    assert!(out.status.success(), "{out:?}");
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list prints JSON");
    all.as_array()
        .expect("an array")
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// A fifo planted at the lock path: the name is taken by something else, exit 7
/// ("name in use") saying what is there, not a usage error; the fifo stays.
#[test]
fn a_fifo_at_the_lock_path_exits_7_with_the_reason() {
    let name = unique("fifo");
    let lock = format!("/tmp/.npipe-{name}.lock");
    let made = Command::new("mkfifo")
        .arg(&lock)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let out = run(&["serve", &name], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("is a fifo"), "{stderr}");
    assert!(!std::path::Path::new(&format!("/tmp/npipe-{name}")).exists());
    let meta = std::fs::symlink_metadata(&lock).expect("the fifo stays");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    std::fs::remove_file(&lock).unwrap();
}

/// The socket file of a live server deleted: no verb calls the pipe live. `call`
/// finds nothing (3), `wait` times out (5), `info` and `list` say stale.
#[test]
fn a_deleted_socket_is_not_live_for_any_verb() {
    let name = unique("deleted");
    let _server = serve(&name, &["--echo"]);
    let address = info(&name)["address"].as_str().expect("address").to_owned();
    std::fs::remove_file(&address).unwrap();
    let out = run(&["call", &name, "x", "--timeout", "200ms"], b"");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = run(&["wait", &name, "--timeout", "200ms"], b"");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let described = info(&name);
    assert_eq!(described["live"], false, "{described}");
    assert_eq!(described["state"], "stale", "{described}");
    let entry = listed(&name).expect("its lock file is listed");
    assert_eq!(entry["live"], false, "{entry}");
}

/// Names with consecutive or trailing spaces: `call`, `wait`, `info` and `list`
/// all find the live server.
#[test]
fn names_with_spaces_agree_in_every_verb() {
    for suffix in ["a  b", "x "] {
        let name = format!("{}{suffix}", unique("sp"));
        let _server = serve(&name, &["--echo"]);
        let out = run(&["call", &name, "hi"], b"");
        assert_eq!(out.stdout, b"hi\n", "{name:?}: {out:?}");
        let out = run(&["wait", &name, "--timeout", "5s"], b"");
        assert!(out.status.success(), "{name:?}: {out:?}");
        let described = info(&name);
        assert_eq!(described["live"], true, "{name:?}: {described}");
        let entry = listed(&name).expect("listed");
        assert_eq!(entry["live"], true, "{name:?}: {entry}");
    }
}
