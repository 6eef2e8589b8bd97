//! Deadlines and child processes of the `npipe` binary (issue "Hardening II"):
//! `npipe call --timeout` bounds the whole call however a server paces its bytes,
//! and `npipe serve --exec` leaves no command running after its request ended or
//! the server stopped. Real server and client processes; no timing is asserted,
//! only outcomes (exit codes, processes alive or gone), with generous limits so a
//! hang fails the test.

#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use npipe::{ListenerOptions, Mode};
use support::{run, run_with_input, running, serve, unique, Proc, LIMIT};

// ---------------------------------------------------------------------------------
// `npipe call --timeout`

/// A pipe of `mode` (as `npipe info` and `npipe call` see it) whose connections
/// the servers below drive by hand, as plain sockets.
fn raw_listener(name: &str, mode: Mode) -> npipe::Listener {
    ListenerOptions::new()
        .mode(mode)
        .create(name)
        .expect("create pipe")
}

/// The next connection of `listener`, as the plain socket under it.
fn raw_accept(listener: &npipe::Listener) -> std::os::unix::net::UnixStream {
    let stream = listener.accept().expect("accept");
    stream.into_std().expect("a fresh stream has read nothing")
}

/// A server that speaks the wire contract by hand (a byte-mode listener in this
/// process) and sends its reply in 12 pieces 0.9 s apart: each within any
/// timeout below, all of them far beyond. In message mode it first reads one
/// request frame; in byte mode, the request until the client half-closes. It
/// stops when the client is gone.
fn trickling_server(name: &str, mode: Mode) -> thread::JoinHandle<()> {
    let listener = raw_listener(name, mode);
    thread::spawn(move || {
        let mut stream = raw_accept(&listener);
        let mut reply = b"a reply sent a piece at a time".to_vec();
        if mode == Mode::Message {
            let mut header = [0u8; 4];
            stream.read_exact(&mut header).expect("request header");
            let mut request = vec![0u8; u32::from_le_bytes(header) as usize];
            stream.read_exact(&mut request).expect("request");
            let mut wire = (reply.len() as u32).to_le_bytes().to_vec();
            wire.append(&mut reply);
            reply = wire;
        } else {
            let mut request = Vec::new();
            stream.read_to_end(&mut request).expect("request");
        }
        for piece in reply.chunks(reply.len().div_ceil(12)) {
            if stream.write_all(piece).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(900));
        }
    })
}

/// A server that reads the request (the wire contract by hand, as above) 256 KiB
/// at a time, 0.3 s apart, then replies. It stops when the client is gone and
/// returns how many bytes of the request it got.
fn slowly_reading_server(name: &str, mode: Mode) -> thread::JoinHandle<usize> {
    let listener = raw_listener(name, mode);
    thread::spawn(move || {
        let mut stream = raw_accept(&listener);
        let mut len = usize::MAX;
        if mode == Mode::Message {
            let mut header = [0u8; 4];
            stream.read_exact(&mut header).expect("request header");
            len = u32::from_le_bytes(header) as usize;
        }
        let mut got = 0;
        let mut buf = vec![0u8; 256 * 1024];
        while got < len {
            thread::sleep(Duration::from_millis(300));
            match stream.read(&mut buf[..(len - got).min(256 * 1024)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let _ = stream.write_all(b"\x04\0\0\0done");
        got
    })
}

/// `npipe call --timeout 2s` against a server that trickles its reply over ten
/// seconds exits 5 (timeout), in message mode with and without `--server-uid`
/// and in byte mode. The timeout used to bound each read: the message-mode calls
/// succeeded after about 11 s.
#[test]
fn call_timeout_bounds_the_whole_call_against_a_trickling_server() {
    let me = nix::unistd::geteuid().as_raw().to_string();
    let cases: [(&str, Mode, &[&str]); 3] = [
        ("message", Mode::Message, &[]),
        ("server-uid", Mode::Message, &["--server-uid", &me]),
        ("byte", Mode::Byte, &["--mode", "byte"]),
    ];
    for (label, mode, extra) in cases {
        let name = unique(label);
        let server = trickling_server(&name, mode);
        let mut args = vec!["call", &name, "hi", "--timeout", "2s"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.code(), Some(5), "{label}: {out:?}");
        assert!(out.stderr.contains("timed out"), "{label}: {out:?}");
        server.join().expect("server thread");
    }
}

/// The same for sending: against a server that reads an 8 MiB request over ten
/// seconds, `npipe call --timeout 2s` exits 5 and gives up sending, in message and
/// byte mode. The write timeout used to bound each wait for room in the socket's
/// buffer: the whole request was sent, over ten seconds.
#[test]
fn call_timeout_bounds_sending_to_a_slowly_reading_server() {
    let request = vec![b'x'; 8 * 1024 * 1024];
    let cases: [(&str, Mode, &[&str]); 2] = [
        ("message", Mode::Message, &[]),
        ("byte", Mode::Byte, &["--mode", "byte"]),
    ];
    for (label, mode, extra) in cases {
        let name = unique(label);
        let server = slowly_reading_server(&name, mode);
        let mut args = vec!["call", &name, "-", "--timeout", "2s"];
        args.extend_from_slice(extra);
        let out = run_with_input(&args, &request);
        assert_eq!(out.code(), Some(5), "{label}: {out:?}");
        let got = server.join().expect("server thread");
        assert!(
            got < request.len(),
            "{label}: the call gave up at its deadline, yet the server got all {got} bytes"
        );
    }
}

// ---------------------------------------------------------------------------------
// `npipe serve --exec`: no command outlives its request or the server

/// A file where `--exec` commands write the pids of their processes (`$$` and
/// `$!`). Dropping it kills whatever recorded process is still alive, so a
/// failing test leaves nothing running, and removes the file.
struct Record {
    path: PathBuf,
}

impl Record {
    fn new(tag: &str) -> Record {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(tag));
        std::fs::write(&path, "").expect("create the pid record");
        Record { path }
    }

    /// The path, for the shell.
    fn file(&self) -> String {
        self.path.display().to_string()
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }

    /// Waits until at least `n` pids are recorded.
    fn wait_for(&self, n: usize) -> Vec<u32> {
        let start = Instant::now();
        loop {
            let pids = self.pids();
            if pids.len() >= n {
                return pids;
            }
            assert!(start.elapsed() < LIMIT, "only {pids:?} recorded");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The recorded processes still alive once every one has had `limit` to go.
    fn survivors(&self, limit: Duration) -> Vec<u32> {
        let start = Instant::now();
        loop {
            let alive: Vec<u32> = self.pids().into_iter().filter(|&p| running(p)).collect();
            if alive.is_empty() || start.elapsed() > limit {
                return alive;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        for pid in self.pids() {
            if running(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// After SIGTERM, a server whose handler is still running its command (`sleep
/// 300` in the background, waited for) cuts the client off after the grace
/// period, kills the command's processes and exits with status 0 and its stats.
/// It used to stay until the command ended by itself, 300 s later.
#[test]
fn serve_exits_after_the_grace_period_and_kills_the_running_command() {
    let record = Record::new("grace");
    let name = unique("grace");
    let exec = format!(
        "echo $$ >> {f}; sleep 300 & echo $! >> {f}; wait; cat",
        f = record.file()
    );
    let server = serve(&name, &["--exec", &exec, "--grace", "1s"]);
    let call = Proc::spawn(&["call", &name, "hi", "--timeout", "60s"], None);
    let pids = record.wait_for(2);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("requests answered  0"), "{out:?}");
    let survivors = record.survivors(Duration::from_secs(10));
    assert!(
        survivors.is_empty(),
        "processes {survivors:?} of the command (of {pids:?}) outlived the server"
    );
    let call = call.finish();
    assert_ne!(call.code(), Some(0), "the call was cut off: {call:?}");
}

/// Requests whose deadline expires while their command runs leave no process of
/// it behind: 12 requests to a command that sleeps 300 s with a 300 ms request
/// deadline, in message mode (served on threads of their own) and in byte mode
/// (served as tasks). Each used to leave its `sh` and `sleep` running.
#[test]
fn expired_requests_leave_no_command_running() {
    for (mode, extra) in [("message", &[][..]), ("byte", &["--mode", "byte"][..])] {
        let record = Record::new(mode);
        let name = unique(mode);
        let exec = format!(
            "echo $$ >> {f}; sleep 300 & echo $! >> {f}; wait",
            f = record.file()
        );
        let mut args = vec!["--exec", &exec, "--request-timeout", "300ms"];
        args.extend_from_slice(extra);
        let _server = serve(&name, &args);
        for _ in 0..12 {
            let mut call = vec!["call", &name, "hi", "--timeout", "20s"];
            call.extend_from_slice(extra);
            let out = run(&call);
            // Closed without a reply: in byte mode, that is an empty reply.
            if mode == "message" {
                assert_eq!(out.code(), Some(8), "{mode}: {out:?}");
            }
            assert!(out.stdout.trim().is_empty(), "{mode}: {out:?}");
        }
        let pids = record.wait_for(24);
        let survivors = record.survivors(Duration::from_secs(10));
        assert!(
            survivors.is_empty(),
            "{mode}: {} of the {} processes of expired requests are still running: {survivors:?}",
            survivors.len(),
            pids.len()
        );
    }
}

/// A command that leaves a process in the background (`sleep 300 &`, which also
/// holds its stdout open) is answered as soon as the command itself exits, and
/// the process it left is killed. The server used to wait for the end of that
/// stdout: the call timed out.
#[test]
fn a_command_s_background_processes_are_killed_when_it_exits() {
    let record = Record::new("background");
    let name = unique("background");
    let exec = format!("sleep 300 & echo $! >> {}; echo hi", record.file());
    let _server = serve(&name, &["--exec", &exec]);
    let out = run(&["call", &name, "x", "--timeout", "10s"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "hi\n");
    let pids = record.wait_for(1);
    let survivors = record.survivors(Duration::from_secs(10));
    assert!(
        survivors.is_empty(),
        "the background process {pids:?} outlived its request"
    );
}

/// A client that gives up (`npipe call --timeout 1s`) while the command of its
/// request runs has its command killed, long before the request deadline (30 s
/// by default): its reply can reach nobody. It used to run to its end.
#[test]
fn a_client_that_gives_up_has_its_command_killed() {
    let record = Record::new("gone");
    let name = unique("gone");
    let exec = format!(
        "echo $$ >> {f}; sleep 300 & echo $! >> {f}; wait",
        f = record.file()
    );
    let _server = serve(&name, &["--exec", &exec]);
    let out = run(&["call", &name, "hi", "--timeout", "1s"]);
    assert_eq!(out.code(), Some(5), "{out:?}");
    let pids = record.wait_for(2);
    let survivors = record.survivors(Duration::from_secs(10));
    assert!(
        survivors.is_empty(),
        "the command's processes {pids:?} outlived the client that gave up"
    );
}
