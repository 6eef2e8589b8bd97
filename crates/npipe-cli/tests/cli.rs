//! End-to-end tests of the `npipe` binary: real server and client processes.
//!
//! Every test uses its own pipe name, every child is killed and reaped when its
//! handle drops, and every wait has a deadline, so a hang fails the test instead of
//! the run. No test asserts a timing.

#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use support::{
    as_nobody, json, npipe, run, run_with_input, running, serve, unique, wait_live, Output, Proc,
    TestDir, LIMIT,
};

#[test]
fn help_documents_examples_and_exit_codes() {
    let out = run(&["--help"]);
    assert_eq!(out.code(), Some(0));
    for needle in [
        "Examples:",
        "npipe demo",
        "Exit status:",
        "3  pipe not found",
    ] {
        assert!(out.stdout.contains(needle), "--help lacks {needle:?}");
    }
    let out = run(&["call", "--help"]);
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.contains("4  pipe busy"), "{}", out.stdout);
    let out = run(&["--version"]);
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.starts_with("npipe "));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["frobnicate"]).code(), Some(2));
    assert_eq!(run(&["call"]).code(), Some(2));
    assert_eq!(
        run(&["call", "x", "y", "--timeout", "5 parsecs"]).code(),
        Some(2)
    );
    let out = run(&["call", "bad/name", "hi"]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("may not contain"), "{}", out.stderr);
    assert_eq!(run(&["info", ".hidden"]).code(), Some(2));
}

#[test]
fn serve_answers_like_the_original_demo_server() {
    let name = unique("demo");
    let server = serve(&name, &[]);
    let out = run(&["call", &name, "hello"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "Response to: hello\n");

    let out = run_with_input(&["call", &name, "-"], b"from stdin");
    assert_eq!(out.stdout, "Response to: from stdin\n");
    let out = run(&["call", &name, "-n", "x"]);
    assert_eq!(out.stdout, "Response to: x");

    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("requests answered  3"),
        "{}",
        out.stdout
    );
    // The pipe is gone once the server has stopped.
    let info = json(&run(&["info", &name, "--json"]).stdout);
    assert_eq!(info["state"], "absent");
}

#[test]
fn serve_echo_and_json_stats() {
    let name = unique("echo");
    let server = serve(&name, &["--echo", "--json"]);
    let out = run(&["call", &name, "same"]);
    assert_eq!(out.stdout, "same\n");
    let out = server.terminate();
    let stats = json(&out.stdout);
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["completed"], 1);
    assert_eq!(stats["failed"], 0);
    assert_eq!(stats["requests_timed_out"], 0);
}

/// `serve --remote` lifts Windows' refusal of clients on other machines (SMB). A
/// Unix server has no such refusal to lift (clients on other machines come through
/// ssh, as local users), so it serves as ever and says that the flag changed nothing.
#[test]
fn serve_remote_on_unix_serves_and_says_it_changes_nothing() {
    let name = unique("remote");
    let server = serve(&name, &["--remote", "--echo"]);
    let out = run(&["call", &name, "near"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "near\n");
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains("--remote changes nothing on Unix"),
        "{}",
        out.stderr
    );
}

#[test]
fn serve_exec_replies_with_the_command_output() {
    let name = unique("exec");
    let _server = serve(&name, &["--exec", "tr a-z A-Z"]);
    let out = run(&["call", &name, "shout"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "SHOUT\n");
}

#[test]
fn failing_exec_closes_without_reply_exit_8() {
    let name = unique("fail");
    let server = serve(&name, &["--exec", "exit 3"]);
    let out = run(&["call", &name, "boom"]);
    assert_eq!(out.code(), Some(8), "{out:?}");
    assert!(out.stderr.contains("without replying"), "{}", out.stderr);
    // The server survives and counts the failure.
    let out = server.terminate();
    assert!(
        out.stdout.contains("requests failed    1"),
        "{}",
        out.stdout
    );
}

#[test]
fn not_found_exits_3() {
    let out = run(&["call", &unique("none"), "hi", "--timeout", "200ms"]);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
}

#[test]
fn busy_exits_4() {
    let name = unique("busy");
    let _server = serve(&name, &["--instances", "1"]);
    // Take the only instance and keep it: a request proves it was admitted.
    let mut holder = npipe::Stream::connect(name.as_str()).expect("connect");
    holder.send(b"mine").expect("send");
    let mut reply = Vec::new();
    holder.recv(&mut reply).expect("recv");
    let out = run(&["call", &name, "hi", "--timeout", "300ms"]);
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(out.stderr.contains("busy"), "{}", out.stderr);
    drop(holder);
}

#[test]
fn timeout_exits_5() {
    let name = unique("slow");
    let _server = serve(&name, &["--exec", "sleep 2"]);
    let out = run(&["call", &name, "hi", "--timeout", "300ms"]);
    assert_eq!(out.code(), Some(5), "{out:?}");
    let out = run(&["wait", &unique("never"), "--timeout", "100ms"]);
    assert_eq!(out.code(), Some(5), "{out:?}");
}

#[test]
fn wrong_server_user_exits_6() {
    let name = unique("squat");
    let _server = serve(&name, &[]);
    // This server runs as us; demanding another uid must be refused.
    let me = nix::unistd::geteuid().as_raw();
    let other = if me == 12345 { 12346 } else { 12345 };
    let out = run(&["call", &name, "hi", "--server-uid", &other.to_string()]);
    assert_eq!(out.code(), Some(6), "{out:?}");
    let out = run(&["call", &name, "hi", "--server-uid", &me.to_string()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
}

#[test]
fn other_user_is_denied_exit_6() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let name = unique("owner");
    let _server = serve(&name, &[]);
    let mut cmd = npipe();
    cmd.args(["call", &name, "hi", "--timeout", "300ms"])
        .uid(65534)
        .gid(65534);
    let out = Proc::spawn_cmd(cmd, None).finish();
    assert_eq!(out.code(), Some(6), "{out:?}");
}

/// `npipe ARGS` run as user nobody, or `None` (see [`as_nobody`]).
fn run_as_nobody(args: &[&str]) -> Option<Output> {
    let mut cmd = as_nobody(env!("CARGO_BIN_EXE_npipe").as_ref())?;
    cmd.args(args);
    Some(Proc::spawn_cmd(cmd, None).finish())
}

/// A client that the server's access policy refuses once connected (an abstract
/// socket has no file mode to refuse it at connect) exits 6 and says that its
/// credentials were refused, in message and byte mode, rather than "connection
/// reset" and 8.
#[test]
fn a_client_refused_after_connecting_exits_6_and_says_why() {
    let name = format!("@{}", unique("refused"));
    let server = serve(&name, &[]);
    for mode in ["message", "byte"] {
        let Some(out) = run_as_nobody(&["call", &name, "hello", "--mode", mode]) else {
            return;
        };
        assert_eq!(out.code(), Some(6), "{mode}: {out:?}");
        assert!(
            out.stderr.contains(
                "the server refused this client's credentials (uid 65534, gid 65534): its access policy does not admit them"
            ),
            "{mode}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{mode}: {out:?}");
    }
    let out = server.terminate();
    assert!(
        out.stdout.contains("0 busy, 2 access, 0 oversize"),
        "{}",
        out.stdout
    );
}

/// An error caused by the OS names that cause once, not once per layer.
#[test]
fn os_errors_are_named_once() {
    let name = unique("owner-only");
    let _server = serve(&name, &[]);
    let Some(out) = run_as_nobody(&["call", &name, "hello"]) else {
        return;
    };
    assert_eq!(out.code(), Some(6), "{out:?}");
    assert_eq!(
        out.stderr
            .matches("Permission denied (os error 13)")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

/// `call --mode` that is not the mode the pipe's server recorded is a usage error
/// naming the mode to use, found before anything is sent: the server counts
/// nothing.
#[test]
fn a_mode_that_is_not_the_pipes_is_a_usage_error() {
    for (served, called) in [("message", "byte"), ("byte", "message")] {
        let name = unique(served);
        let server = serve(&name, &["--mode", served, "--echo"]);
        let out = run(&["call", &name, "hello", "--mode", called]);
        assert_eq!(out.code(), Some(2), "{served}: {out:?}");
        assert!(
            out.stderr.contains(&format!(
                "the pipe serves {served} mode, not {called} mode: call it with `--mode {served}`"
            )),
            "{served}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{served}: {out:?}");
        let out = server.terminate();
        assert!(
            out.stdout.contains("connections        0"),
            "{}",
            out.stdout
        );
    }
}

/// Where the mode is not recorded (an abstract socket), a byte-mode call to a
/// message server never exits 0 without a reply: the server reads "hell" of
/// "hello" as a length over the cap, counts it, and closes.
#[test]
fn a_byte_call_that_gets_no_reply_exits_8() {
    let name = format!("@{}", unique("unrecorded"));
    let server = serve(&name, &[]);
    let out = run(&["call", &name, "hello", "--mode", "byte"]);
    assert_eq!(out.code(), Some(8), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr
            .contains("the server closed the connection without replying"),
        "{}",
        out.stderr
    );
    let out = server.terminate();
    assert!(out.stdout.contains("1 oversize"), "{}", out.stdout);
    assert!(
        out.stdout.contains("requests           1"),
        "{}",
        out.stdout
    );
}

/// An OS error that std reports as `InvalidInput` (here `ftruncate` on a fifo
/// planted at the lock path) is an I/O failure, not an invalid pipe name: not exit 2.
#[test]
fn an_invalid_argument_from_the_os_is_not_a_usage_error() {
    let name = unique("fifo");
    let info = json(&run(&["info", &name, "--json"]).stdout);
    let socket = std::path::PathBuf::from(info["address"].as_str().expect("address"));
    let lock = socket.with_file_name(format!(
        ".{}.lock",
        socket.file_name().unwrap().to_string_lossy()
    ));
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let out = run(&["serve", &name]);
    let _ = std::fs::remove_file(&lock);
    let _ = std::fs::remove_file(&socket);
    assert_ne!(out.code(), Some(0), "{out:?}");
    assert_ne!(out.code(), Some(2), "{out:?}");
    assert!(!out.stderr.contains("invalid pipe name"), "{}", out.stderr);
}

#[test]
fn second_server_exits_7() {
    let name = unique("inuse");
    let _server = serve(&name, &[]);
    let out = run(&["serve", &name]);
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert!(out.stderr.contains("already served"), "{}", out.stderr);
}

#[test]
fn info_and_list_describe_a_live_server() {
    let name = unique("info");
    let server = serve(&name, &["--mode", "byte", "--access", "group"]);
    let out = run(&["info", &name, "--json"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let info = json(&out.stdout);
    assert_eq!(info["state"], "live");
    assert_eq!(info["server_pid"], server.pid());
    assert_eq!(info["mode"], "byte");
    assert_eq!(info["access"], "group");
    assert_eq!(info["permissions"], "0660");
    assert_eq!(info["address"], format!("/tmp/npipe-{name}"));

    let out = run(&["info", &name]);
    assert!(out
        .stdout
        .contains(&format!("address:    /tmp/npipe-{name}")));
    assert!(out.stdout.contains("state:      live"), "{}", out.stdout);

    let list = json(&run(&["list", "--json"]).stdout);
    let entry = list
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["name"] == name.as_str())
        .expect("listed");
    assert_eq!(entry["server_pid"], server.pid());
    let out = run(&["list"]);
    assert!(out.stdout.starts_with("NAME"), "{}", out.stdout);
    assert!(out.stdout.contains(&name));
}

#[test]
fn list_flags_the_files_of_a_killed_server_as_stale() {
    let name = unique("stale");
    let mut server = serve(&name, &[]);
    // SIGKILL: the server cannot remove its files.
    server.child.kill().expect("kill");
    server.child.wait().expect("reap");
    let info = json(&run(&["info", &name, "--json"]).stdout);
    assert_eq!(info["state"], "stale");
    let list = json(&run(&["list", "--json"]).stdout);
    assert!(list
        .as_array()
        .expect("array")
        .iter()
        .any(|p| p["name"] == name.as_str() && p["state"] == "stale"));
    // The next server reclaims the name.
    let server = serve(&name, &[]);
    assert_eq!(run(&["call", &name, "back"]).stdout, "Response to: back\n");
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn byte_mode_serve_and_call() {
    let name = unique("bytes");
    let _server = serve(&name, &["--mode", "byte", "--echo"]);
    let out = run(&["call", &name, "--mode", "byte", "raw bytes"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "raw bytes\n");
}

#[test]
fn send_and_listen_relay_both_ways() {
    let name = unique("nc");
    let listener = Proc::spawn(&["listen", &name], Some(b"from listen\n"));
    wait_live(&name);
    let sender = Proc::spawn(&["send", &name], Some(b"from send\n"));
    let sent = sender.finish();
    let heard = listener.finish();
    assert_eq!(sent.code(), Some(0), "{sent:?}");
    assert_eq!(heard.code(), Some(0), "{heard:?}");
    assert_eq!(sent.stdout, "from listen\n");
    assert_eq!(heard.stdout, "from send\n");
}

#[test]
fn interrupted_listen_exits_130_and_frees_the_name() {
    let name = unique("intr");
    let listener = Proc::spawn(&["listen", &name], Some(b""));
    wait_live(&name);
    let out = listener.terminate();
    assert_eq!(out.code(), Some(130), "{out:?}");
    let info = json(&run(&["info", &name, "--json"]).stdout);
    assert_eq!(info["state"], "absent");
}

#[test]
fn wait_succeeds_once_the_server_is_up() {
    let name = unique("wait");
    let waiter = Proc::spawn(&["wait", &name, "--timeout", "20s"], None);
    let _server = serve(&name, &[]);
    assert_eq!(waiter.finish().code(), Some(0));
}

#[test]
fn broken_stdout_exits_quietly() {
    let name = unique("pipe");
    let _server = serve(&name, &["--echo"]);
    let big = vec![b'x'; 4 << 20];
    let mut child = npipe()
        .args(["call", &name, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&big);
    });
    // Read a little of the reply, then hang up.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("read");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("wait");
    let _ = feeder.join();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

#[test]
fn demo_runs_by_itself_and_cleans_up() {
    let name = unique("demo");
    let out = run(&[
        "demo",
        "--clients",
        "2",
        "--requests",
        "20",
        "--name",
        &name,
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("requests     40 (40 ok, 0 failed)"),
        "{}",
        out.stdout
    );
    let out = run(&[
        "demo",
        "--clients",
        "2",
        "--requests",
        "10",
        "--persistent",
        "--json",
        "--name",
        &name,
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let summary = json(&out.stdout);
    assert_eq!(summary["ok"], 20);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["server"]["accepted"], 2);
    let info = json(&run(&["info", &name, "--json"]).stdout);
    assert_eq!(info["state"], "absent");
}

#[test]
fn demo_fails_when_the_name_is_taken() {
    let name = unique("taken");
    let _server = serve(&name, &[]);
    let out = run(&["demo", "--requests", "1", "--name", &name]);
    assert_eq!(out.code(), Some(7), "{out:?}");
}

#[test]
fn bench_reports_every_workload_as_json() {
    let out = run(&["bench", "--duration", "100ms", "--clients", "2", "--json"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let rows = json(&out.stdout);
    let rows = rows.as_array().expect("array");
    let names: Vec<_> = rows.iter().map(|r| r["workload"].clone()).collect();
    assert_eq!(names, ["latency", "throughput", "connect-rate"]);
    for row in rows {
        assert!(row["operations"].as_u64().unwrap_or(0) > 0, "{row}");
    }
    assert!(rows[1]["bytes_per_s"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn bench_quick_is_accepted_directly() {
    // The harness's short settings, without `--baselines --`.
    let out = run(&[
        "bench",
        "--quick",
        "latency",
        "connect-rate",
        "--clients",
        "2",
        "--json",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let rows = json(&out.stdout);
    assert_eq!(rows[0]["workload"], "latency");
    // The harness's quick latency row times at most 5,000 round trips.
    let round_trips = rows[0]["operations"].as_u64().unwrap_or(0);
    assert!((1..=5_000).contains(&round_trips), "{rows}");
    assert_eq!(rows[1]["clients"], 2);
    assert!(rows[1]["operations"].as_u64().unwrap_or(0) > 0, "{rows}");
    assert_eq!(
        run(&["bench", "--quick", "--duration", "1s"]).code(),
        Some(2)
    );
}

#[test]
fn bench_baselines_run_in_this_program() {
    // No `npipe-bench` binary needed: this program serves the raw-socket
    // baseline's processes too.
    let out = run(&[
        "bench",
        "--baselines",
        "--quick",
        "--json",
        "--",
        "--filter",
        "rtt-64B/raw/unpinned,rtt-64B/npipe/unpinned",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let doc = json(&out.stdout);
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{doc}");
    for row in rows {
        assert!(row["error"].is_null(), "{row}");
    }
    let npipe = rows
        .iter()
        .find(|r| r["transport"] == "npipe")
        .expect("npipe");
    assert!(npipe["ratio_vs_raw"].as_f64().is_some(), "{npipe}");
    let help = run(&["bench", "--baselines", "--", "--help"]);
    assert_eq!(help.code(), Some(0), "{help:?}");
    assert!(help.stdout.contains("--filter"), "{}", help.stdout);
}

#[test]
fn bench_refuses_messages_npipe_cannot_carry() {
    // Above npipe's default message limit, and an empty throughput message
    // (which would end a batch rather than carry data).
    for args in [
        ["bench", "latency", "--size", "17MiB"],
        ["bench", "throughput", "--block", "0"],
    ] {
        let out = run(&args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn bench_keeps_its_pipes_in_npipe_dir() {
    let dir = TestDir::private("bench-dir");
    let mut cmd = npipe();
    cmd.env("NPIPE_DIR", &dir.0)
        .args(["bench", "latency", "--duration", "50ms", "--json"]);
    let out = Proc::spawn_cmd(cmd, None).finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(&dir.0).expect("dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir(&dir.0).expect("remove dir");
}

/// The processes whose parent is `parent` (from /proc).
#[cfg(target_os = "linux")]
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: the comm may hold spaces, not `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

#[cfg(target_os = "linux")]
#[test]
fn bench_processes_end_with_a_killed_bench() {
    let dir = TestDir::private("bench-killed");
    let mut cmd = npipe();
    cmd.env("NPIPE_DIR", &dir.0).args([
        "bench",
        "connect-rate",
        "--clients",
        "2",
        "--duration",
        "60s",
    ]);
    let mut bench = Proc::spawn_cmd(cmd, None);
    let start = Instant::now();
    let children = loop {
        let children = children_of(bench.pid());
        if children.len() == 3 {
            break children;
        }
        assert!(
            start.elapsed() < LIMIT,
            "no server and clients: {children:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    // Time for the clients to get `go` and measure (before it, they would end
    // at the missing `go`, which proves less).
    thread::sleep(Duration::from_secs(2));
    // SIGKILL: `npipe bench` cannot stop its processes.
    bench.child.kill().expect("kill");
    bench.child.wait().expect("reap");
    let start = Instant::now();
    while children.iter().any(|&pid| running(pid)) {
        // Far less than the 60 s the clients would measure for.
        assert!(
            start.elapsed() < LIMIT,
            "outlived npipe bench: {children:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // The server could not remove its socket and lock files.
    std::fs::remove_dir_all(&dir.0).expect("remove dir");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code(), Some(0), "{shell}: {out:?}");
        assert!(out.stdout.contains("serve"), "{shell}");
        assert!(
            !out.stdout.contains("__demo-client"),
            "{shell} lists a hidden command"
        );
    }
}
