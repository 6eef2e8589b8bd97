//! Remote pipes on Unix (`\\HOST\pipe\NAME`) through a real OpenSSH server on
//! 127.0.0.1 (`support/sshd.rs`): the library's blocking and tokio clients, and
//! the `npipe` binary's `call`, `wait`, `bridge` and `forward`. "HOST" is this
//! machine, logged in to as root (or as a user created for the run), and npipe
//! there is this build's binary.
//!
//! Every test uses pipe names of its own, checks that no process mentioning
//! them (ssh clients, bridges on HOST, forwards) is left, and has a watchdog.
//! Under CI=true none skips itself: sshd must be installed (scripts/test-all.sh
//! installs openssh-server) and the tests run as root.

#![cfg(unix)]

mod support;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use npipe::{ConnectOptions, ErrorKind, ListenerOptions, Mode, Stream};

use support::sshd::{self, Sshd, BAD_KEY_HOST, DEAD_HOST, HOST, OTHER_USER_HOST};
use support::{npipe, under_ci, unique, Proc};

/// How long any test may run before it is aborted.
const LIMIT: Duration = Duration::from_secs(120);
/// How long processes may take to go once their connection is closed (npipe
/// kills an ssh client 5 s after its stream is dropped).
const GONE_WITHIN: Duration = Duration::from_secs(20);

/// The sshd, or `None` (the test is skipped; under CI it fails).
fn fixture() -> Option<&'static Sshd> {
    match sshd::sshd() {
        Ok(sshd) => Some(sshd),
        Err(why) => {
            assert!(!under_ci(), "cannot run under CI: {why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// `\\host\pipe\name`.
fn on(host: &str, name: &str) -> String {
    format!(r"\\{host}\pipe\{name}")
}

/// Aborts the test process if not dropped within [`LIMIT`].
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn start(label: &'static str) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < LIMIT {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            eprintln!("WATCHDOG: test `{label}` still running after {LIMIT:?}: aborting");
            std::process::abort();
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// No process mentions `name` any more: no ssh client, no bridge on HOST.
fn assert_nothing_left(name: &str) {
    let left = sshd::wait_until_none_mention(name, GONE_WITHIN);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

type Handler = Arc<dyn Fn(Stream, &Sender<io::Error>) + Send + Sync>;

/// A pipe served in this process (the "remote" server: the bridge on HOST
/// connects to it), each connection by `handler` on a thread of its own.
/// Errors the handlers report arrive on `errors`. Dropping it stops accepting
/// and removes the pipe.
struct TestServer {
    listener: Arc<npipe::Listener>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    errors: Receiver<io::Error>,
}

impl TestServer {
    fn start(name: &str, options: &ListenerOptions, handler: Handler) -> TestServer {
        let listener = Arc::new(options.create(name).expect("create the pipe"));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, errors) = mpsc::channel();
        let thread = {
            let (listener, stop) = (Arc::clone(&listener), Arc::clone(&stop));
            thread::spawn(move || loop {
                let accepted = listener.accept();
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = accepted else { continue };
                let (handler, tx) = (Arc::clone(&handler), tx.clone());
                thread::spawn(move || handler(stream, &tx));
            })
        };
        TestServer {
            listener,
            stop,
            thread: Some(thread),
            errors,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Replies to each message with the message itself, or to `big` with 2 MiB.
fn echo() -> Handler {
    Arc::new(|mut stream, errors| {
        let mut request = Vec::new();
        loop {
            match stream.recv(&mut request) {
                Ok(Some(_)) => {
                    let reply = if request == b"big" {
                        vec![7u8; 2 << 20]
                    } else {
                        request.clone()
                    };
                    if let Err(e) = stream.send(&reply) {
                        let _ = errors.send(e);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = errors.send(e);
                    return;
                }
            }
        }
    })
}

/// `n` bytes that differ from message to message.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (n as u8)).collect()
}

/// Message mode through ssh: boundaries of messages in flight together, an
/// empty one, 3 MiB, and `more_data` into a small buffer, as locally; the
/// client's peer is the server process itself (its pid and uid as HOST saw
/// them); closing the stream leaves no ssh client or bridge behind.
#[test]
fn message_mode_keeps_boundaries_through_ssh() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("message_mode_keeps_boundaries_through_ssh");
    let name = unique("msg");
    let server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let mut stream = Stream::connect(on(HOST, &name)).expect("connect through ssh");
    let sizes = [5, 0, 1, 65_536, 3 << 20];
    for &n in &sizes {
        stream.send(&pattern(n)).expect("send");
    }
    let mut reply = Vec::new();
    for &n in &sizes {
        assert_eq!(stream.recv(&mut reply).expect("recv"), Some(n));
        assert!(
            reply == pattern(n),
            "message of {n} bytes changed on the way"
        );
    }
    stream.send(b"0123456789").expect("send");
    let mut small = [0u8; 4];
    let part = stream
        .recv_into(&mut small)
        .expect("recv_into")
        .expect("a part");
    assert!(part.more_data() && part.len() == 4 && &small == b"0123");
    let mut rest = Vec::new();
    assert_eq!(stream.recv(&mut rest).expect("the rest"), Some(6));
    assert_eq!(rest, b"456789");

    let peer = stream.peer_credentials().expect("peer credentials");
    assert_eq!(
        peer.pid(),
        Some(std::process::id()),
        "the server is this process"
    );
    assert_eq!(peer.uid(), Some(0));
    // `disconnect` waits for the ssh client, which exits after the bridge.
    stream.disconnect().expect("disconnect");
    assert_eq!(sshd::processes_mentioning(&name), Vec::new());
    drop(server);
}

/// `call` (CallNamedPipe) through ssh.
#[test]
fn call_through_ssh() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("call_through_ssh");
    let name = unique("call");
    let _server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let reply = npipe::call(on(HOST, &name), b"ping", Duration::from_secs(20)).expect("call");
    assert_eq!(reply, b"ping");
    assert_nothing_left(&name);
}

/// The cap holds on both sides of the ssh route: a message over the server's
/// maximum is refused there (before allocation, the connection closed), and a
/// reply over the client's maximum is refused here, as `MessageTooLarge`; a
/// message over the client's own maximum is not sent at all.
#[test]
fn the_cap_holds_through_ssh() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("the_cap_holds_through_ssh");
    let name = unique("cap");
    let mut options = ListenerOptions::new();
    options.max_message_size(1 << 20);
    let server = TestServer::start(&name, &options, echo());

    let mut stream = Stream::connect(on(HOST, &name)).expect("connect");
    // The client's cap is 16 MiB, so the message leaves; the server may refuse
    // it and the whole route close before the last of its 2 MiB is written.
    match stream.send(&vec![1u8; 2 << 20]) {
        Ok(()) => {}
        Err(e) if ErrorKind::of(&e) == ErrorKind::Disconnected => {}
        Err(e) => panic!("sent (the client's cap is 16 MiB): {e}"),
    }
    let refused = server
        .errors
        .recv_timeout(Duration::from_secs(30))
        .expect("the server reports the refusal");
    assert_eq!(
        ErrorKind::of(&refused),
        ErrorKind::MessageTooLarge,
        "{refused}"
    );
    let mut reply = Vec::new();
    match stream.recv(&mut reply) {
        Ok(None) => {}
        Err(e) if ErrorKind::of(&e) == ErrorKind::Disconnected => {}
        other => panic!("the server should have closed the connection: {other:?}"),
    }
    drop(stream);

    drop(server);

    // A server with the default cap of 16 MiB, a client with 1 MiB.
    let big = TestServer::start(&name, &ListenerOptions::new(), echo());
    let mut client = ConnectOptions::new();
    client.max_message_size(1 << 20);
    let mut stream = client.connect(on(HOST, &name)).expect("connect");
    let e = stream.send(&vec![1u8; (1 << 20) + 1]).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge, "{e}");
    stream.send(b"big").expect("send");
    let e = stream.recv(&mut reply).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge, "{e}");
    drop(stream);
    drop(big);
    assert_nothing_left(&name);
}

/// Byte mode through ssh: bytes unchanged (ssh's escape sequences among
/// them), and a half-close travels to the server on HOST (it reads the end of the request, replies, closes), whose
/// close travels back.
#[test]
fn byte_mode_and_half_close_through_ssh() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("byte_mode_and_half_close_through_ssh");
    let name = unique("bytes");
    let mut options = ListenerOptions::new();
    options.mode(Mode::Byte);
    let reverse: Handler = Arc::new(|mut stream, errors| {
        let mut request = Vec::new();
        let done = stream.read_to_end(&mut request).and_then(|_| {
            request.reverse();
            stream.write_all(&request)
        });
        if let Err(e) = done {
            let _ = errors.send(e);
        }
    });
    let _server = TestServer::start(&name, &options, reverse);
    let mut client = ConnectOptions::new();
    client.mode(Mode::Byte);
    let mut stream = client.connect(on(HOST, &name)).expect("connect");
    // ssh's escape sequences (`~.` after a newline ends a session) are data here.
    let mut request = b"\n~.\n~C\r\n~.".to_vec();
    request.extend(pattern(300_000));
    stream.write_all(&request).expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("read until the server closes");
    let mut expected = request;
    expected.reverse();
    assert!(
        reply == expected,
        "{} bytes came back, not the reversed request",
        reply.len()
    );
    drop(stream);
    assert_nothing_left(&name);
}

/// `wait` on a remote pipe: a server that appears during the wait is waited
/// for; none within the timeout is `Timeout`, said by HOST.
#[test]
fn wait_for_a_remote_pipe() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("wait_for_a_remote_pipe");
    let name = unique("wait");
    let e = npipe::wait(on(HOST, &name), Duration::from_millis(200)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().starts_with(&format!("on {HOST}: ")), "{e}");

    let late = {
        let name = name.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(1500));
            TestServer::start(&name, &ListenerOptions::new(), echo())
        })
    };
    npipe::wait(on(HOST, &name), Duration::from_secs(30)).expect("the server appeared");
    drop(late.join());
    assert_nothing_left(&name);
}

/// The tokio API through ssh: connect (on the blocking pool), send and receive,
/// the remote server's credentials, and `expect_server_uid`.
#[test]
fn tokio_connect_through_ssh() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("tokio_connect_through_ssh");
    let name = unique("tokio");
    let _server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut stream = npipe::tokio::Stream::connect(on(HOST, &name))
            .await
            .expect("connect");
        let peer = stream.peer_credentials().expect("peer");
        assert_eq!(
            (peer.pid(), peer.uid()),
            (Some(std::process::id()), Some(0))
        );
        let mut reply = Vec::new();
        for n in [3, 0, 1 << 20] {
            stream.send(&pattern(n)).await.expect("send");
            assert_eq!(stream.recv(&mut reply).await.expect("recv"), Some(n));
            assert!(reply == pattern(n));
        }
        let mut wrong = ConnectOptions::new();
        wrong.expect_server_uid(65534);
        let e = npipe::tokio::Stream::connect_with(on(HOST, &name), &wrong)
            .await
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
    });
    drop(runtime);
    assert_nothing_left(&name);
}

/// `expect_server_uid` is checked against the server on HOST, as its npipe saw
/// it: root is accepted as root, and refused when another uid is required.
#[test]
fn expect_server_uid_is_checked_against_the_remote_server() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("expect_server_uid_is_checked_against_the_remote_server");
    let name = unique("uid");
    let _server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let mut right = ConnectOptions::new();
    right.expect_server_uid(0);
    let mut stream = right.connect(on(HOST, &name)).expect("root serves it");
    stream.send(b"hi").expect("send");
    let mut reply = Vec::new();
    assert_eq!(stream.recv(&mut reply).expect("recv"), Some(2));
    drop(stream);

    let mut wrong = ConnectOptions::new();
    wrong.expect_server_uid(65534);
    let e = wrong.connect(on(HOST, &name)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string()
            .contains("runs as uid 0, not the expected uid 65534"),
        "{e}"
    );
    assert_nothing_left(&name);
}

/// Each way of failing says which side failed: not found, busy and denied on
/// HOST (with HOST's words); ssh that cannot connect or cannot log in.
#[test]
fn errors_say_which_side_failed() {
    let Some(sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("errors_say_which_side_failed");
    let name = unique("errors");
    let mut quick = ConnectOptions::new();
    quick.timeout(Duration::from_millis(300));

    let e = quick.connect(on(HOST, &name)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("on {HOST}: pipe /tmp/npipe-{name} not found")),
        "{e}"
    );

    let mut one = ListenerOptions::new();
    one.max_instances(Some(1));
    let _server = TestServer::start(&name, &one, echo());
    let holder = Stream::connect(name.as_str()).expect("the one instance, taken here");
    let e = quick.connect(on(HOST, &name)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::PipeBusy, "{e}");
    assert!(e.to_string().starts_with(&format!("on {HOST}: ")), "{e}");
    drop(holder);

    let e = quick.connect(on(DEAD_HOST, &name)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("ssh could not connect to {DEAD_HOST}: ")),
        "{e}"
    );
    assert!(e.to_string().contains("Connection refused"), "{e}");

    let e = quick.connect(on(BAD_KEY_HOST, &name)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("ssh could not log in to {BAD_KEY_HOST}: ")),
        "{e}"
    );
    assert!(e.to_string().contains("Permission denied"), "{e}");

    match sshd.other_user() {
        Ok(uid) => {
            let e = quick.connect(on(OTHER_USER_HOST, &name)).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("on {OTHER_USER_HOST}: ")),
                "{e}"
            );
            assert!(e.to_string().contains(&format!("uid {uid}")), "{e}");

            // A server whose allow list leaves the file open to all and refuses
            // that user once connected: its refusal notice reaches the client
            // through ssh, which says whose credentials were refused.
            let refusing = unique("refusing");
            let mut allow = ListenerOptions::new();
            allow.allow_uid(65534);
            let _refusing = TestServer::start(&refusing, &allow, echo());
            let mut stream = quick
                .connect(on(OTHER_USER_HOST, &refusing))
                .expect("connected: the server refuses after accepting");
            let mut reply = Vec::new();
            let e = stream.recv(&mut reply).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
            assert!(
                e.to_string().contains(
                    "the server on the remote host refused the credentials of the user ssh logged in as there"
                ),
                "{e}"
            );
            drop(stream);
            assert_nothing_left(&refusing);
        }
        Err(why) => {
            assert!(!under_ci(), "cannot run under CI: {why}");
            eprintln!("SKIPPED (the denied case): {why}");
        }
    }
    assert_nothing_left(&name);
}

/// A stream whose server on HOST never closes (it holds the connection and
/// reads nothing): once the stream is dropped, its ssh client is killed after
/// the grace period and reaped, and the bridge on HOST goes with the session.
#[test]
fn a_dropped_stream_leaves_no_process_even_if_the_server_holds_on() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog =
        Watchdog::start("a_dropped_stream_leaves_no_process_even_if_the_server_holds_on");
    let name = unique("hold");
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder: Handler = {
        let held = Arc::clone(&held);
        Arc::new(move |stream, _| held.lock().unwrap().push(stream))
    };
    let _server = TestServer::start(&name, &ListenerOptions::new(), holder);
    let mut stream = Stream::connect(on(HOST, &name)).expect("connect");
    stream.send(b"nobody reads this").expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the server never got the connection"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!sshd::processes_mentioning(&name).is_empty());
    drop(stream);
    assert_nothing_left(&name);
    assert_eq!(
        held.lock().unwrap().len(),
        1,
        "the server still holds its end"
    );
}

// ---- the `npipe` binary ----

/// Runs `cmd` to its end (failing the test after [`LIMIT`]).
fn finish(cmd: Command) -> Output {
    Proc::spawn_cmd(cmd, None).output_within(LIMIT)
}

/// A child process killed and reaped if the test ends before it does.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `npipe call` and `npipe wait` of `\\HOST\pipe\NAME`, and their exit codes
/// when a side fails; `info` of a remote name says it cannot.
#[test]
fn cli_call_and_wait_through_ssh() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("cli_call_and_wait_through_ssh");
    let name = unique("cli");
    let _server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let remote = on(HOST, &name);

    let mut wait = npipe();
    wait.args(["wait", &remote, "--timeout", "10s"]);
    let out = finish(wait);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let mut call = npipe();
    call.args(["call", &remote, "hello"]);
    let out = finish(call);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "hello\n");

    let missing = on(HOST, &format!("{name}-missing"));
    let mut call = npipe();
    call.args(["call", &missing, "hello", "--timeout", "200ms"]);
    let out = finish(call);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!(": on {HOST}: pipe ")),
        "{out:?}"
    );

    for (host, code, said) in [
        (DEAD_HOST, 1, "ssh could not connect to"),
        (BAD_KEY_HOST, 6, "ssh could not log in to"),
    ] {
        let mut call = npipe();
        call.args(["call", &on(host, &name), "hello"]);
        let out = finish(call);
        assert_eq!(out.status.code(), Some(code), "{host}: {out:?}");
        assert!(text(&out.stderr).contains(said), "{host}: {out:?}");
    }

    let mut info = npipe();
    info.args(["info", &remote]);
    let out = finish(info);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!("is a pipe on {HOST}")),
        "{out:?}"
    );
    assert_nothing_left(&name);
}

/// HOST without npipe (not installed, or not on the PATH of a non-interactive
/// session): the error says so and what to do.
#[test]
fn npipe_missing_on_the_host_says_what_to_install() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("npipe_missing_on_the_host_says_what_to_install");
    let name = unique("missing");
    let mut call = npipe();
    call.args(["call", &on(HOST, &name), "hello"])
        .env("NPIPE_REMOTE_NPIPE", "/nonexistent/npipe");
    let out = finish(call);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "npipe is not installed on {HOST}, or not on the PATH of a non-interactive ssh session there"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("/nonexistent/npipe"), "{stderr}");
    assert!(
        stderr.contains("install npipe on npipe-test, or set NPIPE_REMOTE_NPIPE"),
        "{stderr}"
    );
    assert_nothing_left(&name);
}

/// A slow ssh login does not eat a call's timeout: it comes on top (up to
/// `npipe::REMOTE_SETUP`), for `npipe call` in message mode (`npipe::call`) and
/// with `--server-uid` (the CLI's own connect). The "ssh" here takes 1.5 s to
/// log in and then runs the command on this machine, as ssh would on HOST.
#[test]
fn a_slow_login_comes_on_top_of_the_calls_timeout() {
    let _watchdog = Watchdog::start("a_slow_login_comes_on_top_of_the_calls_timeout");
    let dir = support::TestDir::private("slow-ssh");
    let slow_ssh = dir.join("slow-ssh");
    std::fs::write(
        &slow_ssh,
        "#!/bin/sh\n# ssh OPTIONS... -- HOST COMMAND\nwhile [ \"$1\" != -- ]; do shift; done\nsleep 1.5\nexec sh -c \"$3\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &slow_ssh,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let name = unique("slow");
    let _server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let me = nix::unistd::geteuid().as_raw().to_string();
    for extra in [&[][..], &["--server-uid", me.as_str()][..]] {
        let mut call = npipe();
        call.args(["call", &on("slowhost", &name), "hello", "--timeout", "1s"])
            .args(extra)
            .env("NPIPE_SSH", &slow_ssh)
            .env("NPIPE_REMOTE_NPIPE", env!("CARGO_BIN_EXE_npipe"));
        let out = finish(call);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {out:?}");
        assert_eq!(text(&out.stdout), "hello\n", "{extra:?}");
    }
}

/// `npipe bridge` alone, with a Python peer on its stdin and stdout (no ssh):
/// the handshake, messages framed by the peer passing unchanged, the half-close
/// both ways (stdin's EOF reaches the server, the server's close ends stdout),
/// and an error as a handshake line with the exit status of the table.
#[test]
fn bridge_relays_for_a_python_peer() {
    let _watchdog = Watchdog::start("bridge_relays_for_a_python_peer");
    let name = unique("bridge");
    let bytes_name = unique("bridge-bytes");
    let _server = TestServer::start(&name, &ListenerOptions::new(), echo());
    let mut options = ListenerOptions::new();
    options.mode(Mode::Byte);
    let upper: Handler = Arc::new(|mut stream, _| {
        let mut request = Vec::new();
        if stream.read_to_end(&mut request).is_ok() {
            let _ = stream.write_all(&request.to_ascii_uppercase());
        }
    });
    let _bytes = TestServer::start(&bytes_name, &options, upper);
    let script = r#"
import struct, subprocess, sys
npipe, name, bytes_name, missing = sys.argv[1:5]
def bridge(*args):
    return subprocess.Popen([npipe, "bridge", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
p = bridge("--handshake", name)
line = p.stdout.readline()
assert line.startswith(b"npipe-bridge 1 ok pid="), line
for msg in [b"hello", b"", b"x" * 200000]:
    p.stdin.write(struct.pack("<I", len(msg)) + msg)
    p.stdin.flush()
    n, = struct.unpack("<I", p.stdout.read(4))
    assert p.stdout.read(n) == msg
p.stdin.close()
assert p.stdout.read() == b""
assert p.wait(30) == 0
assert p.stderr.read() == b""
p = bridge(bytes_name)
out, err = p.communicate(b"half-closed", timeout=30)
assert (out, err, p.returncode) == (b"HALF-CLOSED", b"", 0), (out, err, p.returncode)
q = subprocess.run([npipe, "bridge", "--handshake", "--timeout", "100ms", missing],
                   capture_output=True, timeout=30)
assert q.stdout.startswith(b"npipe-bridge 1 error notfound pipe /tmp/npipe-"), q.stdout
assert q.stdout.count(b"\n") == 1 and q.returncode == 3 and q.stderr == b"", q
print("ok")
"#;
    let mut python = Command::new("python3");
    python
        .args([
            "-c",
            script,
            env!("CARGO_BIN_EXE_npipe"),
            &name,
            &bytes_name,
        ])
        .arg(format!("{name}-missing"))
        .env_remove("NPIPE_DIR");
    let out = finish(python);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "ok\n");
}

/// `npipe forward LOCAL \\HOST\pipe\REMOTE`: two local clients at once, each
/// served through a connection (an ssh client and a bridge) of its own, with
/// REMOTE's framing end to end; LOCAL admits only its owner; SIGTERM removes
/// LOCAL at once, cuts the connection still open after the grace period, and
/// leaves nothing running.
#[test]
fn forward_gives_each_local_client_its_own_remote_connection() {
    let Some(_sshd) = fixture() else { return };
    let _watchdog = Watchdog::start("forward_gives_each_local_client_its_own_remote_connection");
    let remote = unique("fwd-remote");
    let local = unique("fwd-local");
    // Replies with the pid of the client it sees: the bridge on HOST.
    let tag: Handler = Arc::new(|mut stream, _| {
        let pid = stream.peer_credentials().ok().and_then(|p| p.pid());
        let mut request = Vec::new();
        while let Ok(Some(_)) = stream.recv(&mut request) {
            let reply = format!("{}:{}", pid.unwrap_or(0), String::from_utf8_lossy(&request));
            if stream.send(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    let _server = TestServer::start(&remote, &ListenerOptions::new(), tag);
    let mut forward = KillOnDrop(Some(
        npipe()
            .args(["forward", &local, &on(HOST, &remote), "--grace", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn npipe forward"),
    ));
    npipe::wait(local.as_str(), Duration::from_secs(30)).expect("LOCAL appears");

    let mut a = Stream::connect(local.as_str()).expect("client a");
    let mut b = Stream::connect(local.as_str()).expect("client b");
    let ask = |stream: &mut Stream, what: &str| -> (String, String) {
        stream.send(what.as_bytes()).expect("send");
        let mut reply = Vec::new();
        stream.recv(&mut reply).expect("recv").expect("a reply");
        let reply = text(&reply);
        let (pid, said) = reply.split_once(':').expect("pid:request");
        (pid.to_owned(), said.to_owned())
    };
    let (a_pid, said) = ask(&mut a, "a1");
    assert_eq!(said, "a1");
    let (b_pid, said) = ask(&mut b, "b1");
    assert_eq!(said, "b1");
    assert_eq!(ask(&mut a, "a2"), (a_pid.clone(), "a2".to_owned()));
    assert_eq!(ask(&mut b, ""), (b_pid.clone(), String::new()));
    assert_ne!(a_pid, b_pid, "each local client has a bridge of its own");

    if nix::unistd::geteuid().is_root() {
        let out = finish({
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_npipe"))
                .args(["call", &local, "hello", "--timeout", "300ms"])
                .env_remove("NPIPE_DIR");
            cmd
        });
        assert_eq!(out.status.code(), Some(6), "nobody is refused: {out:?}");
    }

    drop(b);
    let forward = forward.0.take().expect("forward");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(forward.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let out = forward.wait_with_output().expect("forward's output");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stderr).contains("forwarded 2 connections (0 could not reach"),
        "{out:?}"
    );
    // The connection still open was cut off after the grace period.
    let mut reply = Vec::new();
    match a.recv(&mut reply) {
        Ok(None) => {}
        Err(e) if ErrorKind::of(&e) == ErrorKind::Disconnected => {}
        other => panic!("client a should have been cut off: {other:?}"),
    }
    let info = npipe::inspect(local.as_str()).expect("inspect LOCAL");
    assert_eq!(info.state(), npipe::PipeState::Absent, "{info:?}");
    assert_nothing_left(&remote);
    assert_nothing_left(&local);
}
