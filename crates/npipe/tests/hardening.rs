//! Hardening: npipe between processes that do not trust each other (issue 7).
//!
//! Bad input, faults (killed peers, deleted files, exhausted descriptors), other
//! users and squatters, planted symlinks, what the logs say, and load. Every test
//! uses real processes, sockets and users; none asserts a timing. SECURITY.md maps
//! each guarantee to the tests here.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use npipe::{
    Access, ConnectOptions, ErrorKind, Listener, ListenerOptions, Mode, PipeName, Request,
    Response, Server, ServerBuilder, Stream,
};

use crate::util::{
    self, frame, kind, nobody, nobody_in, socket_path, unique, wait_stats, Watchdog,
};

// ---------------------------------------------------------------------------------
// Helpers

fn echo(request: Request) -> Response {
    Response::new(request.into_body())
}

/// A managed server of one instance with no other pending: while one client
/// holds it, nobody else can be served.
fn single_instance(name: &str, mut options: ListenerOptions) -> ServerBuilder {
    options.max_instances(Some(1)).pending_instances(1);
    Server::builder(name).options(options)
}

/// A handler that replies `size` bytes to `big` and echoes anything else.
fn big_reply(size: usize) -> impl Fn(Request) -> Response + Send + Sync + 'static {
    move |r: Request| match r.body() {
        b"big" => Response::new(vec![b'b'; size]),
        other => Response::new(other.to_vec()),
    }
}

/// A byte-mode client: writes go on the wire as they are, frame headers included.
fn raw(name: &str) -> Stream {
    ConnectOptions::new()
        .mode(Mode::Byte)
        .timeout(Duration::from_secs(30))
        .connect(name)
        .unwrap()
}

/// Everything the peer sends until it closes; a reset (the server closed with our
/// bytes unread) ends it too.
fn read_until_closed(stream: &mut Stream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_ne!(ErrorKind::of(&e), ErrorKind::Timeout, "never closed: {e}");
                return all;
            }
        }
    }
}

fn call(name: &str, request: &[u8]) -> Vec<u8> {
    npipe::call(name, request, Duration::from_secs(30)).unwrap()
}

fn lock_path(name: &str) -> PathBuf {
    beside_socket(name, "lock")
}

/// The record file beside a pipe's socket, where its server says who it is.
fn record_path(name: &str) -> PathBuf {
    beside_socket(name, "info")
}

fn beside_socket(name: &str, suffix: &str) -> PathBuf {
    util::beside(&socket_path(name), suffix)
}

/// The value of `key=` in a role's `key=value ...` line (the last key takes the
/// rest of the line).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 1;
    let rest = &line[start..];
    if key == "first" {
        rest
    } else {
        rest.split(' ').next().unwrap_or("")
    }
}

/// Name, inode, permission bits and content (regular files) of every entry of
/// `dir`, sorted: what must not change when npipe is attacked.
fn snapshot(dir: &Path) -> Vec<(String, u64, u32, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let content = if meta.is_file() {
                std::fs::read(entry.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                entry.file_name().to_string_lossy().into_owned(),
                meta.ino(),
                meta.mode(),
                content,
            )
        })
        .collect();
    out.sort();
    out
}

/// A listening socket only root may use (mode `0600`), counting the connections
/// that reach it: where nothing of npipe's may ever lead.
struct PrivateSocket {
    path: PathBuf,
    accepted: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl PrivateSocket {
    fn open() -> PrivateSocket {
        let path = std::env::temp_dir().join(unique("private"));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acceptor = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        PrivateSocket {
            path,
            accepted,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Stops listening, removes the socket, and says how many connections reached it.
    fn close(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.acceptor.take().unwrap().join().unwrap();
        std::fs::remove_file(&self.path).unwrap();
        self.accepted.load(Ordering::Relaxed)
    }
}

/// A test that fails before `close` leaves no socket behind either.
impl Drop for PrivateSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Raises this process's soft descriptor limit to the hard limit.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

// ---------------------------------------------------------------------------------
// Bad input

#[test]
fn length_prefixes_at_and_around_the_cap() {
    let _w = Watchdog::start("length_prefixes_at_and_around_the_cap");
    const CAP: u32 = 64 * 1024;
    let cases = [
        (CAP - 1, true),
        (CAP, true),
        (CAP + 1, false),
        (u32::MAX, false),
    ];

    // The blocking listener says why, and allocates nothing for a refused length.
    let name = unique("cap-blocking");
    let listener = ListenerOptions::new()
        .max_message_size(CAP)
        .create(&name)
        .unwrap();
    for (announced, fits) in cases {
        let mut client = raw(&name);
        let mut server = listener.accept().unwrap();
        client.write_all(&announced.to_le_bytes()).unwrap();
        if fits {
            client.write_all(&vec![b'x'; announced as usize]).unwrap();
        }
        let mut buf = Vec::new();
        match server.recv(&mut buf) {
            Ok(Some(n)) if fits => assert_eq!(n, announced as usize),
            Err(e) if !fits => {
                assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge, "{e}");
                let text = e.to_string();
                assert!(text.contains(&announced.to_string()), "{text}");
                assert!(text.contains(&CAP.to_string()), "{text}");
                assert_eq!(buf.capacity(), 0, "allocated for a refused message");
            }
            other => panic!("{announced}: {other:?}"),
        }
    }

    // The managed server closes the connection without a reply and serves the rest.
    let name = unique("cap-server");
    let mut options = ListenerOptions::new();
    options.max_message_size(CAP);
    let server = Server::builder(&name)
        .options(options)
        .handler(echo)
        .spawn()
        .unwrap();
    for (announced, fits) in cases {
        let mut client = raw(&name);
        client.write_all(&announced.to_le_bytes()).unwrap();
        if fits {
            client.write_all(&vec![b'y'; announced as usize]).unwrap();
        }
        client.shutdown(Shutdown::Write).unwrap();
        let reply = read_until_closed(&mut client);
        if fits {
            assert_eq!(reply, frame(&vec![b'y'; announced as usize]), "{announced}");
        } else {
            assert!(
                reply.is_empty(),
                "{announced}: a reply to a refused message"
            );
        }
        assert_eq!(call(&name, b"next"), b"next");
    }
    let stats = wait_stats(&server, "every connection closed", |s| s.active == 0);
    assert_eq!(stats.rejected_oversize, 2, "{stats:?}");
    assert_eq!(stats.completed, 6, "{stats:?}");
}

#[test]
fn frames_cut_off_mid_length_and_mid_payload() {
    let _w = Watchdog::start("frames_cut_off_mid_length_and_mid_payload");
    let cut_offs: [(&[u8], &str); 3] = [
        (&[5, 0], "header (2 of 4 bytes)"),
        (&[5, 0, 0], "header (3 of 4 bytes)"),
        (&[10, 0, 0, 0, b'a', b'b', b'c'], "(3 of 10 bytes)"),
    ];

    let name = unique("cut-blocking");
    let listener = Listener::bind(&name).unwrap();
    for (wire, why) in cut_offs {
        let mut client = raw(&name);
        let mut server = listener.accept().unwrap();
        client.write_all(wire).unwrap();
        drop(client);
        let e = server.recv(&mut Vec::new()).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }

    // The async listener reports the same.
    let name = unique("cut-tokio");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = npipe::tokio::Listener::bind(&name).unwrap();
        for (wire, why) in cut_offs {
            let mut client = raw(&name);
            let mut server = listener.accept().await.unwrap();
            client.write_all(wire).unwrap();
            drop(client);
            let e = server.recv(&mut Vec::new()).await.unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    });

    // The managed server drops such connections and keeps serving.
    let name = unique("cut-server");
    let server = Server::builder(&name).handler(echo).spawn().unwrap();
    for (wire, _) in cut_offs {
        let mut client = raw(&name);
        client.write_all(wire).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert!(read_until_closed(&mut client).is_empty());
        assert_eq!(call(&name, b"whole"), b"whole");
    }
    let stats = wait_stats(&server, "every connection closed", |s| s.active == 0);
    // Each cut-off frame began a request that ended without a reply: failed.
    assert_eq!(
        (stats.requests, stats.completed, stats.failed),
        (6, 3, 3),
        "{stats:?}"
    );
}

/// One instance only: until the server gives up on the silent client, nobody else
/// could be served.
#[test]
fn a_client_that_sends_nothing_is_closed_by_the_idle_deadline() {
    let (_w, name) = util::begin("a_client_that_sends_nothing");
    let server = single_instance(&name, ListenerOptions::new())
        .idle_timeout(Some(Duration::from_millis(300)))
        .handler(echo)
        .spawn()
        .unwrap();
    let mut silent = raw(&name);
    wait_stats(&server, "the silent client accepted", |s| s.active == 1);
    // Served once the silent client's instance is freed.
    assert_eq!(call(&name, b"next"), b"next");
    assert!(read_until_closed(&mut silent).is_empty());
    let stats = wait_stats(&server, "both closed", |s| s.active == 0);
    assert_eq!((stats.timed_out, stats.completed), (1, 1), "{stats:?}");
}

/// A slow loris keeps sending, one byte a second, so it is never idle: only the
/// request deadline (first byte to end of reply) frees its instance.
#[test]
fn a_slow_loris_is_cut_off_by_the_request_deadline() {
    let (_w, name) = util::begin("a_slow_loris");
    let server = single_instance(&name, ListenerOptions::new())
        .idle_timeout(Some(Duration::from_secs(60)))
        .request_timeout(Some(Duration::from_millis(1500)))
        .handler(echo)
        .spawn()
        .unwrap();
    let mut loris = raw(&name);
    wait_stats(&server, "the loris accepted", |s| s.active == 1);
    let dripping = thread::spawn(move || {
        loris.write_all(&1000u32.to_le_bytes()).unwrap();
        for sent in 0..60 {
            if loris.write_all(b"z").is_err() {
                return sent;
            }
            thread::sleep(Duration::from_secs(1));
        }
        panic!("the server let a slow loris hold its instance for a minute");
    });
    assert_eq!(call(&name, b"next"), b"next");
    let sent = dripping.join().unwrap();
    assert!(sent < 60);
    let stats = wait_stats(&server, "both closed", |s| s.active == 0);
    assert_eq!((stats.timed_out, stats.completed), (1, 1), "{stats:?}");
}

/// The reply does not fit in the socket buffers, and the client never reads: the
/// server's write blocks until the request deadline frees the instance.
#[test]
fn a_client_that_never_reads_its_large_reply_is_cut_off() {
    let (_w, name) = util::begin("a_client_that_never_reads");
    let server = single_instance(
        &name,
        ListenerOptions::new().max_message_size(64 << 20).clone(),
    )
    .request_timeout(Some(Duration::from_secs(1)))
    .handler(big_reply(32 << 20))
    .spawn()
    .unwrap();
    let mut lazy = ConnectOptions::new()
        .max_message_size(64 << 20)
        .connect(&name)
        .unwrap();
    lazy.send(b"big").unwrap();
    // Served once the server gave up writing to the lazy client.
    assert_eq!(call(&name, b"next"), b"next");
    let stats = wait_stats(&server, "the lazy client closed", |s| s.active == 0);
    assert_eq!((stats.timed_out, stats.completed), (1, 1), "{stats:?}");
    // What the lazy client finally reads is a message cut off, never a whole one.
    lazy.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let e = lazy.recv(&mut Vec::new()).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
}

#[test]
fn garbage_on_byte_and_message_pipes() {
    let _w = Watchdog::start("garbage_on_byte_and_message_pipes");
    let garbage: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();

    // A byte pipe carries anything, unchanged.
    let name = unique("garbage-byte");
    let _byte_server = Server::builder(&name)
        .options(ListenerOptions::new().mode(Mode::Byte).clone())
        .handler(echo)
        .spawn()
        .unwrap();
    let mut client = raw(&name);
    client.write_all(&garbage).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut client), garbage);

    // On a message pipe, text that is not framing announces an absurd length.
    let name = unique("garbage-msg");
    let server = Server::builder(&name).handler(echo).spawn().unwrap();
    let mut http = raw(&name);
    http.write_all(b"GET / HTTP/1.1\r\nHost: npipe\r\n\r\n")
        .unwrap();
    assert!(read_until_closed(&mut http).is_empty());
    // Valid frames and then garbage: the valid ones are answered, then it is closed.
    let mut mixed = raw(&name);
    let mut wire = frame(b"first");
    wire.extend_from_slice(&[0xff, 0xfe, 0x00]);
    mixed.write_all(&wire).unwrap();
    mixed.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut mixed), frame(b"first"));
    assert_eq!(call(&name, &garbage[..1000]), &garbage[..1000]);
    let stats = wait_stats(&server, "all closed", |s| s.active == 0);
    assert_eq!(stats.rejected_oversize, 1, "{stats:?}");
}

#[test]
fn hostile_names_are_refused_everywhere() {
    let _w = Watchdog::start("hostile_names_are_refused_everywhere");
    let long = "n".repeat(300);
    let hostile = [
        ("..", "not names"),
        (".", "not names"),
        ("../etc/passwd", "`/`"),
        ("a/../../etc/passwd", "`/`"),
        // An absolute path is a socket path, with no way around its directory.
        ("/tmp/../etc/passwd", "`..` components"),
        ("/etc/.passwd", "may not start with `.`"),
        ("a\0b", "printable"),
        ("\0", "printable"),
        (long.as_str(), "the limit is 247"),
        (r"\\.\pipe\..", "not names"),
        (r"\\.\pipe\a\..\..\x", r"`\`"),
        ("@../x", "`/`"),
        ("", "empty"),
    ];
    let before: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (name, rule) in hostile {
        let results = [
            ("PipeName::new", PipeName::new(name).map(drop)),
            ("Listener::bind", Listener::bind(name).map(drop)),
            ("Stream::connect", Stream::connect(name).map(drop)),
            (
                "call",
                npipe::call(name, b"x", Duration::from_millis(10)).map(drop),
            ),
            ("wait", npipe::wait(name, Duration::from_millis(10))),
            ("inspect", npipe::inspect(name).map(drop)),
            (
                "Server",
                runtime.block_on(async { Server::builder(name).handler(echo).bind().map(drop) }),
            ),
        ];
        for (api, result) in results {
            let e = result.expect_err(api);
            assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{api} {name:?}");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{api}");
            assert!(e.to_string().contains(rule), "{api} {name:?}: {e}");
        }
    }
    // A valid name whose socket path would not fit is refused, never truncated.
    let e = Listener::bind("x".repeat(200)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName);
    assert!(e.to_string().contains("limit"), "{e}");
    let after: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|f| {
            let new_to_us = !before.iter().any(|b| b.to_string_lossy() == *f);
            new_to_us
                && (f.contains("passwd") || ["npipe-", "npipe-.", "npipe-.."].contains(&f.as_str()))
        })
        .collect();
    assert!(
        after.is_empty(),
        "files created for refused names: {after:?}"
    );
    assert!(Path::new("/etc/passwd").exists());
}

// ---------------------------------------------------------------------------------
// Faults

/// The client waiting for its reply gets `Disconnected` at once, not a hang; the
/// dead server's files are reclaimed by the next server.
#[test]
fn a_server_killed_mid_request_disconnects_its_clients_and_frees_the_name() {
    let (_w, name) = util::begin("a_server_killed_mid_request");
    let mut server = util::child("hard-server", &[&name]);
    server.expect_line("ready");
    let client_name = name.clone();
    let waiting =
        thread::spawn(move || npipe::call(&client_name, b"slow", Duration::from_secs(120)));
    server.expect_line("handling slow");
    server.kill();
    let e = waiting.join().unwrap().unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
    assert!(
        socket_path(&name).exists(),
        "SIGKILL leaves the socket file"
    );
    // The next server reclaims the name.
    let next = Server::builder(&name).handler(echo).spawn().unwrap();
    assert_eq!(call(&name, b"again"), b"again");
    drop(next);
    assert!(!socket_path(&name).exists() && !lock_path(&name).exists());
}

/// A client killed while the server writes it a large reply: the instance is free
/// again at once (the request deadline is far away, so it is the kill that counts).
#[test]
fn a_client_killed_mid_reply_frees_its_instance() {
    let (_w, name) = util::begin("a_client_killed_mid_reply");
    let server = single_instance(&name, ListenerOptions::new())
        .request_timeout(Some(Duration::from_secs(600)))
        .handler(big_reply(8 << 20))
        .spawn()
        .unwrap();
    let mut client = util::child("hard-no-read", &[&name, "big"]);
    client.expect_line("sent");
    wait_stats(&server, "the server writing the reply", |s| {
        s.instances
            .iter()
            .any(|i| i.state == npipe::server::InstanceState::Writing)
    });
    client.kill();
    assert_eq!(call(&name, b"next"), b"next");
    let stats = wait_stats(&server, "all closed", |s| s.active == 0);
    assert_eq!((stats.completed, stats.timed_out), (1, 0), "{stats:?}");
}

/// Someone deletes the socket file of a live server. Nobody can reach that socket
/// any more, but the server still owns the name through its lock:
/// - new clients get `NotFound`; `wait` does not report the pipe as live, nor do
///   `inspect` and `list` (stale: its lock remains);
/// - a second server gets `AddrInUse`, naming the live server's pid;
/// - the live server keeps serving the connections it has;
/// - when it stops, it removes its lock (not someone else's socket), and the name
///   can be served again.
#[test]
fn deleting_the_socket_file_under_a_live_server() {
    let (_w, name) = util::begin("deleting_the_socket_file");
    let server = Server::builder(&name).handler(echo).spawn().unwrap();
    let mut connected = Stream::connect(&name).unwrap();
    std::fs::remove_file(socket_path(&name)).unwrap();

    assert_eq!(kind(Stream::try_connect(&name)), ErrorKind::NotFound);
    assert_eq!(
        kind(npipe::call(&name, b"x", Duration::from_millis(200))),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(npipe::wait(&name, Duration::from_millis(200))),
        ErrorKind::Timeout
    );
    // One notion of liveness: `inspect` and `list` agree with `connect` and `wait`.
    let info = npipe::inspect(&name).unwrap();
    assert_eq!(info.state(), npipe::PipeState::Stale, "{info:?}");
    let listed = npipe::list().unwrap();
    let entry = listed
        .iter()
        .find(|p| p.name().as_str() == name)
        .expect("listed");
    assert_eq!(entry.state(), npipe::PipeState::Stale, "{entry:?}");
    let e = Listener::bind(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    assert!(
        !socket_path(&name).exists(),
        "the refused server created nothing"
    );

    connected.send(b"still").unwrap();
    let mut reply = Vec::new();
    connected.recv(&mut reply).unwrap().unwrap();
    assert_eq!(reply, b"still");
    drop(connected);

    // Someone else's file now at the socket path survives the server's exit.
    std::fs::write(socket_path(&name), b"not yours").unwrap();
    server.shutdown();
    server.join().unwrap();
    assert_eq!(std::fs::read(socket_path(&name)).unwrap(), b"not yours");
    assert!(!lock_path(&name).exists());
    std::fs::remove_file(socket_path(&name)).unwrap();
    let _again = Server::builder(&name).handler(echo).spawn().unwrap();
    assert_eq!(call(&name, b"back"), b"back");
}

#[test]
fn unsafe_pipe_directories_are_refused_with_the_reason() {
    let _w = Watchdog::start("unsafe_pipe_directories");
    let base = std::env::temp_dir().join(unique("pipedir"));
    std::fs::create_dir(&base).unwrap();
    let set_mode = |mode| std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode));
    let bind_in = |dir: &Path| {
        let mut cmd = util::drive::command("hard-bind", &["svc"]);
        cmd.env("NPIPE_DIR", dir);
        let mut child = util::drive::spawn(cmd);
        let said = child.expect_line("");
        // Gone, and its files with it, before the next step looks.
        assert!(child.wait_for(Duration::from_secs(20)).success());
        said
    };
    set_mode(0o700).unwrap();
    assert_eq!(bind_in(&base), "created");
    for (mode, why) in [(0o777, "sticky"), (0o770, "sticky"), (0o722, "sticky")] {
        set_mode(mode).unwrap();
        let refused = bind_in(&base);
        assert!(
            refused.starts_with("error AccessDenied"),
            "{mode:o}: {refused}"
        );
        assert!(refused.contains(why), "{refused}");
        assert!(!base.join("svc").exists());
    }
    set_mode(0o1777).unwrap();
    assert_eq!(bind_in(&base), "created");
    let missing = base.join("missing");
    assert!(bind_in(&missing).starts_with("error NotFound"));
    crate::require_root!("needs root to give the directory to another user");
    set_mode(0o755).unwrap();
    nix::unistd::chown(&base, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let refused = bind_in(&base);
    assert!(refused.starts_with("error AccessDenied"), "{refused}");
    assert!(refused.contains("belongs to uid 65534"), "{refused}");

    // Root's own directory, below one that another user owns or may write: they
    // could swap `pipes` for a symlink at any moment. Servers and clients refuse it
    // up front, naming the directory above and why.
    let connect_in = |dir: &Path| {
        let mut cmd = util::drive::command("hard-connect", &["svc"]);
        cmd.env("NPIPE_DIR", dir);
        util::drive::spawn(cmd).expect_line("")
    };
    let pipes = base.join("pipes");
    std::fs::create_dir(&pipes).unwrap();
    std::fs::set_permissions(&pipes, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (owner, mode, why) in [
        (65534, 0o755, "belongs to uid 65534"),
        (0, 0o777, "no sticky bit"),
        (0, 0o775, "no sticky bit"),
    ] {
        nix::unistd::chown(&base, Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        set_mode(mode).unwrap();
        for said in [bind_in(&pipes), connect_in(&pipes)] {
            assert!(
                said.starts_with("error AccessDenied"),
                "{owner} {mode:o}: {said}"
            );
            let above = format!("the directory {} above it", base.display());
            assert!(said.contains(&above), "{said}");
            assert!(said.contains(why), "{said}");
        }
        assert!(!pipes.join("svc").exists());
    }
    // NPIPE_DIR a symlink that another user owns, leading to root's `pipes`: its
    // owner decides where it leads. Refused, naming the link; root's own link to
    // the same directory is followed.
    nix::unistd::chown(&base, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    set_mode(0o755).unwrap();
    let link = std::env::temp_dir().join(unique("link"));
    std::os::unix::fs::symlink(&pipes, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    for said in [bind_in(&link), connect_in(&link)] {
        assert!(said.starts_with("error AccessDenied"), "{said}");
        assert!(
            said.contains(&format!(
                "{} is a symbolic link that belongs to uid 65534",
                link.display()
            )),
            "{said}"
        );
    }
    std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
    assert_eq!(bind_in(&link), "created");
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}

/// With its descriptors exhausted, the server cannot accept: new clients wait (as
/// for a busy pipe) and are served when descriptors free up. It neither dies nor
/// spins on `EMFILE`, and it keeps serving the clients it has.
#[test]
fn descriptor_exhaustion_refuses_cleanly_and_recovers() {
    let _w = Watchdog::new("descriptor_exhaustion", Duration::from_secs(120));
    let name = unique("emfile");
    let mut server = util::child("hard-server", &[&name, "nofile+6"]);
    server.expect_line("ready");
    let pid = server.id();
    let mut held: Vec<Stream> = Vec::new();
    let mut stalled = None;
    for i in 0..64 {
        let mut client = match ConnectOptions::new()
            .timeout(Duration::from_secs(2))
            .connect(&name)
        {
            Ok(client) => client,
            Err(e) => {
                assert_eq!(ErrorKind::of(&e), ErrorKind::PipeBusy, "{e}");
                break;
            }
        };
        client.send(format!("held {i}").as_bytes()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut reply = Vec::new();
        match client.recv(&mut reply) {
            Ok(Some(_)) => {
                assert_eq!(reply, format!("held {i}").as_bytes());
                held.push(client);
            }
            Err(e) if ErrorKind::of(&e) == ErrorKind::Timeout => {
                stalled = Some(client);
                break;
            }
            other => panic!("client {i}: {other:?}"),
        }
    }
    assert!(!held.is_empty(), "no client was served at all");
    assert!(held.len() < 64, "the descriptor limit never bit");
    eprintln!("{} clients served before the limit", held.len());
    // Exhausted: the accept loop retries with a pause instead of spinning.
    let (ticks, start) = (cpu_ticks(pid), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - ticks;
    let wall_ticks = start.elapsed().as_millis() as u64 / 10;
    eprintln!("server used {used} CPU ticks in {wall_ticks} while out of descriptors");
    assert!(used * 4 < wall_ticks, "the server spins on EMFILE");
    // Clients it has are still served.
    let mut reply = Vec::new();
    held[0].send(b"still here").unwrap();
    held[0].recv(&mut reply).unwrap().unwrap();
    assert_eq!(reply, b"still here");
    // Free descriptors: the waiting client is served, and so are new ones.
    held.clear();
    if let Some(mut client) = stalled {
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        client.recv(&mut reply).unwrap().unwrap();
        assert!(reply.starts_with(b"held "), "{reply:?}");
    }
    assert_eq!(call(&name, b"recovered"), b"recovered");
}

// ---------------------------------------------------------------------------------
// Security

#[test]
fn another_user_is_refused_by_a_default_server() {
    let _w = Watchdog::start("another_user_is_refused_by_a_default_server");
    crate::require_root!("needs root to run a client as user nobody (setpriv)");
    // A socket file: the kernel refuses the connection (mode 0600).
    let name = unique("owner-only");
    let server = Server::builder(&name).handler(echo).spawn().unwrap();
    let mut peer = nobody("connect-kind", &[&name]);
    assert_eq!(peer.expect_line(""), "error AccessDenied");
    assert!(peer.wait_for(Duration::from_secs(20)).success());
    // An abstract socket has no file mode: npipe's peer check refuses on accept.
    let name = format!("@{}", unique("owner-only-abs"));
    let abstract_server = Server::builder(&name).handler(echo).spawn().unwrap();
    let mut peer = nobody("connect-kind", &[&name]);
    assert_eq!(peer.expect_line(""), "error AccessDenied");
    assert!(peer.wait_for(Duration::from_secs(20)).success());
    let stats = abstract_server.stats();
    assert_eq!((stats.rejected_access, stats.accepted), (1, 0), "{stats:?}");
    // The owner is served by both.
    assert_eq!(call(&name, b"me"), b"me");
    assert_eq!(call(server.name().as_str(), b"me"), b"me");
}

#[test]
fn group_and_allow_list_policies() {
    let _w = Watchdog::new("group_and_allow_list_policies", Duration::from_secs(120));
    crate::require_root!("needs root to run clients as other users (setpriv)");
    let my_gid = nix::unistd::getegid().as_raw();
    let group = my_gid.to_string();
    // (policy, client uid, gid, supplementary groups, admitted)
    type Policy = fn(&mut ListenerOptions);
    type Case<'a> = (&'a str, Policy, u32, u32, Option<&'a str>, bool);
    let cases: [Case<'_>; 6] = [
        (
            "group-other",
            |o| {
                o.access(Access::Group);
            },
            65534,
            65534,
            None,
            false,
        ),
        (
            "group-primary",
            |o| {
                o.access(Access::Group);
            },
            65534,
            my_gid,
            None,
            true,
        ),
        (
            "group-supplementary",
            |o| {
                o.access(Access::Group);
            },
            65534,
            65534,
            Some(group.as_str()),
            true,
        ),
        (
            "allow-uid-other",
            |o| {
                o.allow_uid(12345);
            },
            65534,
            65534,
            None,
            false,
        ),
        (
            "allow-uid",
            |o| {
                o.allow_uid(65534);
            },
            65534,
            65534,
            None,
            true,
        ),
        (
            "allow-gid",
            |o| {
                o.allow_gid(65534);
            },
            65534,
            65534,
            None,
            true,
        ),
    ];
    for (label, policy, uid, gid, groups, admitted) in cases {
        let name = unique(label);
        let mut options = ListenerOptions::new();
        policy(&mut options);
        let server = Server::builder(&name)
            .options(options)
            .handler(|r: Request| {
                let uid = r.peer().and_then(|p| p.uid()).unwrap_or(u32::MAX);
                Response::new(format!("uid {uid}"))
            })
            .spawn()
            .unwrap();
        let mut peer = util::as_user(uid, gid, groups, "connect-kind", &[&name]);
        let outcome = peer.expect_line("");
        assert!(peer.wait_for(Duration::from_secs(20)).success());
        let stats = server.stats();
        if admitted {
            assert_eq!(outcome, format!("ok uid {uid}"), "{label}");
            assert_eq!(stats.rejected_access, 0, "{label}");
        } else {
            assert_eq!(outcome, "error AccessDenied", "{label}");
            assert_eq!(stats.accepted, 0, "{label}: reached the handler");
        }
    }
}

/// What every npipe message client of user nobody says when the server's access
/// policy refuses it after the connection was made (see `roles::refused`).
const REFUSED: &str = "AccessDenied the server refused this client's credentials (uid 65534, gid 65534): its access policy does not admit them";

/// A client refused after connecting (an abstract socket, with `Access::Owner` or
/// `Group`; a socket file open to all, mode 0666, with an allow list: the checks
/// made on `SO_PEERCRED` at accept; a socket file with `Owner` or `Group` refuses
/// at connect by its mode, which is already `AccessDenied`) learns that its
/// credentials were refused — `AccessDenied`, not a reset connection — whether
/// it sent its request before the server closed or after, through the blocking
/// and the tokio API and the codec; a byte-mode client reads the notice itself.
#[test]
fn a_client_refused_after_connecting_is_told_its_credentials_were_refused() {
    let _w = Watchdog::new(
        "a_client_refused_after_connecting",
        Duration::from_secs(120),
    );
    crate::require_root!("needs root to run the client as user nobody (setpriv)");
    let notice_hex: String = npipe::REFUSAL_NOTICE
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    type Policy = fn(&mut ListenerOptions);
    let cases: [(String, Policy, bool); 3] = [
        (format!("@{}", unique("refuse-abs")), |_| {}, false),
        (
            format!("@{}", unique("refuse-group")),
            |o| {
                o.access(Access::Group);
            },
            true,
        ),
        (
            unique("refuse-allow"),
            |o| {
                o.allow_uid(12345);
            },
            false,
        ),
    ];
    for (name, policy, async_handler) in cases {
        let mut options = ListenerOptions::new();
        policy(&mut options);
        let builder = Server::builder(&name).options(options);
        // Both ways of accepting: threads that accept (sync handler) and tasks.
        let server = if async_handler {
            builder.async_handler(|r: Request| async move { echo(r) })
        } else {
            builder.handler(echo)
        }
        .spawn()
        .unwrap();
        let mut peer = nobody("hard-refused", &[&name]);
        for how in [
            "call",
            "recv",
            "send",
            "tokio-recv",
            "tokio-send",
            "tokio-framed",
        ] {
            assert_eq!(
                peer.expect_line(&format!("{how} ")),
                REFUSED,
                "{name}: {how}"
            );
        }
        assert_eq!(peer.expect_line("bytes "), notice_hex, "{name}: byte mode");
        assert!(peer.wait_for(Duration::from_secs(20)).success());
        let stats = server.stats();
        assert_eq!((stats.accepted, stats.rejected_access), (0, 7), "{name}");
        // The owner is served as before.
        assert_eq!(call(&name, b"me"), b"me");
    }
}

/// A squatter who sends npipe's refusal notice (a client of root's, whom every npipe
/// policy admits, would otherwise be told its credentials were refused) is named
/// by the error: the refusing server's uid, from the connection.
#[test]
fn a_forged_refusal_names_the_server_that_sent_it() {
    let (_w, name) = util::begin("a_forged_refusal_names_the_server");
    crate::require_root!("needs root to run the squatter as user nobody (setpriv)");
    let mut squatter = nobody("hard-forge-refusal", &[&name]);
    assert_eq!(squatter.expect_line(""), "ready");
    let e = npipe::call(&name, b"hello", Duration::from_secs(10)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("uid 65534"),
        "the refusing server is named: {text}"
    );
    assert!(text.contains("squatter"), "{text}");
    squatter.kill();
    let _ = std::fs::remove_file(socket_path(&name));
}

/// A user who grabbed the name first (a squatter) is exposed by a client that
/// states which user its server must run as; the real server cannot take the name
/// and says who holds it.
#[test]
fn a_squatter_is_detected_by_expect_server_uid() {
    let _w = Watchdog::start("a_squatter_is_detected");
    crate::require_root!("needs root to run the squatter as user nobody (setpriv)");
    let shared_dir = std::env::temp_dir().join(unique("shared"));
    std::fs::create_dir(&shared_dir).unwrap();
    std::fs::set_permissions(&shared_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    for dir in [None, Some(shared_dir.as_path())] {
        let name = unique("squat");
        let mut squatter = match dir {
            Some(dir) => nobody_in(dir, "hard-squat", &[&name]),
            None => nobody("hard-squat", &[&name]),
        };
        let said = squatter.expect_line("");
        assert!(said.starts_with("ready"), "{said}");
        let squatter_pid = squatter.id();
        let (check, expect) = {
            let mut cmd = util::drive::command("hard-expect-root", &[&name]);
            let mut bind = util::drive::command("hard-bind", &[&name]);
            if let Some(dir) = dir {
                cmd.env("NPIPE_DIR", dir);
                bind.env("NPIPE_DIR", dir);
            }
            (
                util::drive::spawn(cmd).expect_line(""),
                util::drive::spawn(bind).expect_line(""),
            )
        };
        assert!(check.starts_with("error AccessDenied"), "{check}");
        assert!(
            check.contains("runs as uid 65534, not the expected uid 0"),
            "{check}"
        );
        assert!(expect.starts_with("error AddrInUse"), "{expect}");
        // The lock's record names the holder; where the kernel does not let root
        // open another user's file in a sticky directory (fs.protected_regular),
        // the owner is named instead.
        assert!(
            expect.contains(&format!("pid {squatter_pid}"))
                || expect.contains("belongs to another user (uid 65534)"),
            "{expect}"
        );
        squatter.kill();
    }
    std::fs::remove_dir_all(&shared_dir).unwrap();
}

/// Files planted where npipe will put its socket or lock: npipe refuses them and
/// neither follows a symlink nor removes or changes anything that is not its own.
#[test]
fn planted_symlinks_and_files_are_refused_and_victims_untouched() {
    use std::os::unix::fs::symlink;
    let _w = Watchdog::start("planted_symlinks_and_files");
    let victim = std::env::temp_dir().join(unique("victim"));
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    let victim_before = std::fs::metadata(&victim).unwrap();
    let check_victim = |what: &str| {
        let now = std::fs::metadata(&victim).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{what}");
        assert_eq!(now.mode(), victim_before.mode(), "{what}");
        assert_eq!(now.ino(), victim_before.ino(), "{what}");
        assert_eq!(now.uid(), victim_before.uid(), "{what}");
    };
    type Plant = fn(&Path, &Path, &Path);
    let plants: [(&str, Plant, ErrorKind, &str); 4] = [
        (
            "socket-symlink",
            |sock, _, v| symlink(v, sock).unwrap(),
            ErrorKind::AddrInUse,
            "not a socket",
        ),
        (
            "lock-symlink",
            |_, lock, v| symlink(v, lock).unwrap(),
            ErrorKind::AddrInUse,
            "symbolic link",
        ),
        (
            "socket-file",
            |sock, _, _| std::fs::write(sock, b"mine").unwrap(),
            ErrorKind::AddrInUse,
            "not a socket",
        ),
        (
            "socket-dir-symlink",
            |sock, _, _| symlink("/etc", sock).unwrap(),
            ErrorKind::AddrInUse,
            "not a socket",
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (label, plant, expected, why) in plants {
        let name = unique(label);
        let (sock, lock) = (socket_path(&name), lock_path(&name));
        plant(&sock, &lock, &victim);
        let entries = || -> Vec<_> {
            [&sock, &lock]
                .iter()
                .map(|p| {
                    std::fs::symlink_metadata(p)
                        .ok()
                        .map(|m| (m.ino(), m.file_type()))
                })
                .collect()
        };
        let planted = entries();
        let e = Listener::bind(&name).unwrap_err();
        assert_eq!(ErrorKind::of(&e), expected, "{label}: {e}");
        assert!(e.to_string().contains(why), "{label}: {e}");
        let e = runtime
            .block_on(async { Server::builder(&name).handler(echo).bind().map(drop) })
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), expected, "{label} (Server): {e}");
        check_victim(label);
        let still = entries();
        for (before, after) in planted.iter().zip(&still) {
            if before.is_some() {
                assert_eq!(before, after, "{label}: a planted file was replaced");
            }
        }
        // Clients do not take a planted file for a server.
        assert_eq!(
            kind(Stream::try_connect(&name)),
            ErrorKind::NotFound,
            "{label}"
        );
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&lock);
    }
    assert!(Path::new("/etc/passwd").exists());

    // Swapped in after the bind: a server leaving never removes what is not its own.
    let name = unique("swapped");
    let listener = Listener::bind(&name).unwrap();
    let (sock, lock) = (socket_path(&name), lock_path(&name));
    std::fs::remove_file(&sock).unwrap();
    symlink(&victim, &sock).unwrap();
    drop(listener);
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_symlink());
    check_victim("swapped socket");
    assert!(!lock.exists());
    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(&victim).unwrap();
}

/// Another user who can write a directory above `NPIPE_DIR` swaps `NPIPE_DIR`,
/// thousands of times a second, for a symlink to a directory of root's (with a
/// stale root socket and a root lock file where the pipe's files would be) and to
/// a directory of their own (where they serve the same name, open to everyone),
/// while a root process creates the pipe and connects to it hundreds of times.
/// npipe refuses the directory up front, naming the one above it, so nothing can
/// be redirected: root's files keep their mode, content and inode, nothing is
/// created or removed beside them, and no root client reaches the other server.
#[test]
fn a_directory_swapped_above_npipe_dir_redirects_nothing() {
    let _w = Watchdog::start("a_directory_swapped_above_npipe_dir");
    crate::require_root!("needs root to race user nobody (setpriv)");
    let nobody_uid = Some(nix::unistd::Uid::from_raw(65534));
    let name = unique("swapped-dir");
    let base = std::env::temp_dir().join(unique("swap"));
    let (parent, victim, squat) = (base.join("parent"), base.join("victim"), base.join("squat"));
    let pipes = parent.join("pipes");
    for dir in [&base, &parent, &victim, &squat, &pipes] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    nix::unistd::chown(&parent, nobody_uid, None).unwrap();
    nix::unistd::chown(&squat, nobody_uid, None).unwrap();
    // Root's files where the pipe's socket and lock would be.
    drop(std::os::unix::net::UnixListener::bind(victim.join(&name)).unwrap());
    std::fs::set_permissions(victim.join(&name), std::fs::Permissions::from_mode(0o600)).unwrap();
    let lock = victim.join(format!(".{name}.lock"));
    std::fs::write(&lock, b"precious lock").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = snapshot(&victim);

    let mut squatter = nobody_in(&squat, "hard-squat", &[&name]);
    let said = squatter.expect_line("");
    assert!(said.starts_with("ready"), "{said}");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let mut swapper = nobody(
        "hard-swap",
        &[&path(&parent), "3000", &path(&victim), &path(&squat)],
    );
    swapper.expect_line("swapping");
    let mut race = util::drive::command("hard-dir-race", &[&name, "300", "2500"]);
    race.env("NPIPE_DIR", &pipes);
    let result = util::drive::spawn(race).expect_line("done ");
    let swaps: u64 = swapper.expect_line("swapped ").parse().unwrap();
    squatter.kill();
    eprintln!("{result}; {swaps} swaps");

    assert!(swaps >= 200, "the swapping hardly ran: {swaps} swaps");
    assert!(field(&result, "attempts").parse::<u64>().unwrap() >= 300);
    assert_eq!(
        field(&result, "other"),
        "0",
        "a root client reached nobody's server: {result}"
    );
    assert_eq!(field(&result, "bound"), "0", "{result}");
    assert_eq!(field(&result, "connected"), "0", "{result}");
    let first = field(&result, "first");
    assert!(
        first.contains(&format!("the directory {} above it", parent.display()))
            && first.contains("belongs to uid 65534"),
        "{first}"
    );
    assert_eq!(
        snapshot(&victim),
        before,
        "root's files beside the swapped directory changed"
    );
    assert!(std::fs::symlink_metadata(&pipes).unwrap().is_dir());
    assert!(snapshot(&pipes).is_empty(), "{:?}", snapshot(&pipes));
    std::fs::remove_dir_all(&base).unwrap();
}

/// In a directory shared with another user (`/tmp`, sticky), that user plants
/// symlinks at the pipe's socket and lock paths — to a file of root's and to a
/// listening socket only root may use — hundreds of times, and also puts a socket
/// of their own there and renames a symlink over it, while root creates the pipe
/// and connects to it over and over. npipe follows none of them: every
/// refusal is `AddrInUse` (something else holds the name), every connect without a
/// server of root's is `NotFound`, root's file keeps its content, mode and inode,
/// and the private socket's server never sees a connection. (A client connects
/// only to a socket; to another user's through an `O_PATH | O_NOFOLLOW`
/// descriptor of it, so a symlink swapped in meanwhile is not followed.)
#[test]
fn symlinks_planted_in_a_shared_directory_are_never_followed() {
    let (_w, name) = util::begin("symlinks_planted_in_a_shared_directory");
    crate::require_root!("needs root to race user nobody (setpriv)");
    let (sock, lock) = (socket_path(&name), lock_path(&name));
    let victim = std::env::temp_dir().join(unique("victim"));
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let victim_before = std::fs::metadata(&victim).unwrap();
    let private = PrivateSocket::open();

    // Deterministic first: a symlink at the socket path to the private socket.
    std::os::unix::fs::symlink(&private.path, &sock).unwrap();
    assert_eq!(kind(Stream::try_connect(&name)), ErrorKind::NotFound);
    assert_eq!(kind(Listener::bind(&name)), ErrorKind::AddrInUse);
    std::fs::remove_file(&sock).unwrap();

    let text = |p: &Path| p.to_str().unwrap().to_owned();
    let mut planter = nobody(
        "hard-plant",
        &[
            &name,
            "3000",
            &text(&sock),
            &text(&private.path),
            &text(&sock),
            &text(&victim),
            &text(&lock),
            &text(&victim),
            &text(&lock),
            &text(&private.path),
            &format!("swap:{}", text(&sock)),
            &text(&private.path),
        ],
    );
    planter.expect_line("planting");
    let start = Instant::now();
    let (mut attempts, mut served, mut refused) = (0u64, 0u64, 0u64);
    while attempts < 300 || start.elapsed() < Duration::from_millis(2500) {
        attempts += 1;
        match ListenerOptions::new()
            .access(Access::Everyone)
            .create(name.as_str())
        {
            Ok(listener) => {
                served += 1;
                let meta = std::fs::symlink_metadata(&sock).unwrap();
                assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
                assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o666));
                let client = Stream::try_connect(&name).expect("root's own server");
                let server = client.peer_credentials().unwrap();
                assert_eq!(server.pid(), Some(std::process::id()));
                drop(client);
                drop(listener);
            }
            Err(e) => {
                assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
                refused += 1;
            }
        }
        match Stream::try_connect(&name) {
            Ok(s) => panic!(
                "connected with no server of root's: followed a planted symlink (server {:?})",
                s.peer_credentials()
            ),
            Err(e) => assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}"),
        }
    }
    let planted: u64 = planter.expect_line("planted ").parse().unwrap();
    let reached = private.close();
    eprintln!(
        "{attempts} attempts: {served} served, {refused} refused; {planted} symlinks planted"
    );

    assert_eq!(reached, 0, "the private socket saw a connection");
    assert!(planted >= 100, "the planting hardly ran: {planted}");
    assert!(refused > 0, "no plant was ever in the way");
    assert!(served > 0, "root never served");
    let now = std::fs::metadata(&victim).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(
        (now.ino(), now.mode(), now.uid()),
        (
            victim_before.ino(),
            victim_before.mode(),
            victim_before.uid()
        )
    );
    for leftover in [&sock, &lock] {
        if let Ok(meta) = std::fs::symlink_metadata(leftover) {
            assert_eq!(meta.uid(), 65534, "{leftover:?}");
            std::fs::remove_file(leftover).unwrap();
        }
    }
    std::fs::remove_file(&victim).unwrap();
}

/// Root's clients connect to root's socket by its path after `fstatat` showed it
/// (the "cannot be swapped" shortcut of `connect_target`). In a sticky shared
/// directory the entry can still change between the two calls: its owner removes
/// it (the server stops, or a stale socket is reclaimed) and then anyone may create
/// a new entry there. Another user who plants a symlink the moment the socket is
/// gone makes a root client that checked the old socket follow the symlink: to a
/// private socket only root may use (here), or to another server of root's, which
/// `expect_server_uid(0)` accepts. Nothing may ever reach the private socket.
#[test]

fn a_symlink_planted_as_the_server_leaves_is_never_followed_by_its_clients() {
    let (_w, name) = util::begin("a_symlink_planted_as_the_server_leaves");
    crate::require_root!("needs root to race user nobody (setpriv)");
    let sock = socket_path(&name);
    let private = PrivateSocket::open();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut planter = nobody(
        "hard-plant-spin",
        &[
            &name,
            "6000",
            sock.to_str().unwrap(),
            private.path.to_str().unwrap(),
        ],
    );
    planter.expect_line("planting");
    // Root's server comes and goes; root's clients keep connecting meanwhile.
    let served = Arc::new(AtomicU64::new(0));
    let server = {
        let (name, stop, served) = (name.clone(), Arc::clone(&stop), Arc::clone(&served));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match Listener::bind(&name) {
                    Ok(listener) => {
                        served.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(1));
                        drop(listener);
                    }
                    Err(e) => assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}"),
                }
            }
        })
    };
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (name, stop) = (name.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(Stream::try_connect(&name));
                }
            })
        })
        .collect();
    let planted: u64 = planter.expect_line("planted ").parse().unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    for client in clients {
        client.join().unwrap();
    }
    let reached = private.close();
    if let Ok(meta) = std::fs::symlink_metadata(&sock) {
        assert_eq!(meta.uid(), 65534, "{sock:?}");
        std::fs::remove_file(&sock).unwrap();
    }
    eprintln!(
        "{} servers, {planted} symlinks planted",
        served.load(Ordering::Relaxed)
    );
    assert!(served.load(Ordering::Relaxed) > 0, "root never served");
    assert!(planted > 0, "the planting never ran");
    assert_eq!(
        reached, 0,
        "root's clients reached the private socket through a planted symlink"
    );
}

/// A server killed (SIGKILL, the OOM killer) leaves its socket and lock file; the
/// next server of the same user reclaims them. The lock file is readable by
/// everyone (`0644`, for `inspect`), and `flock` needs no more than a descriptor
/// open for reading: another user who holds a shared lock on it from the moment
/// the server dies keeps root from ever serving the name again, and root is told
/// that the dead server's pid still serves it.
#[test]
fn another_user_cannot_keep_a_crashed_servers_name_from_its_user() {
    let (_w, name) = util::begin("crashed-lock");
    crate::require_root!("needs root to lock the file as user nobody (setpriv)");
    let mut server = util::child("hard-server", &[&name]);
    server.expect_line("ready");
    let lock = lock_path(&name);
    let mut holder = nobody("hard-flock", &[lock.to_str().unwrap(), "20000"]);
    assert_eq!(holder.expect_line(""), "opened");
    server.kill();
    let held = holder.expect_line("");
    assert!(
        socket_path(&name).exists(),
        "SIGKILL leaves the socket file"
    );
    let next = Listener::bind(&name);
    drop(holder);
    let next = next.unwrap_or_else(|e| panic!("root's stale name ({held}): {e}"));
    drop(next);
    assert!(!socket_path(&name).exists() && !lock_path(&name).exists());
}

/// A lock file another user created before root's server starts (with a record of
/// their choosing) is never adopted: root's server refuses with `AddrInUse` naming
/// that user, and leaves the file as it was. A fifo at the lock path is refused the
/// same way, before anything is written to it.
#[test]
fn a_lock_file_planted_by_another_user_or_a_fifo_is_never_adopted() {
    let (_w, name) = util::begin("a_lock_file_planted");
    crate::require_root!("needs root to plant the file as user nobody (setpriv)");
    let lock = lock_path(&name);
    let record = "pid=1 mode=byte direction=inbound access=everyone\n";
    let mut writer = nobody("hard-write-file", &[lock.to_str().unwrap(), record]);
    assert_eq!(writer.expect_line(""), "written");
    let before = std::fs::symlink_metadata(&lock).unwrap();
    assert_eq!(before.uid(), 65534);
    let e = Listener::bind(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
    assert!(e.to_string().contains("uid 65534"), "{e}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let e = runtime
        .block_on(async { Server::builder(&name).handler(echo).bind().map(drop) })
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
    let after = std::fs::symlink_metadata(&lock).unwrap();
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), record);
    assert_eq!(
        (after.ino(), after.uid(), after.mode(), after.len()),
        (before.ino(), before.uid(), before.mode(), before.len())
    );
    assert!(
        !socket_path(&name).exists(),
        "the refused server created a socket"
    );
    std::fs::remove_file(&lock).unwrap();

    // A fifo: opening it blocks nobody, and nothing is written to it.
    let name = unique("fifo-lock");
    let lock = lock_path(&name);
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let e = Listener::bind(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
    assert!(e.to_string().contains("is a fifo"), "{e}");
    let meta = std::fs::symlink_metadata(&lock).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    assert!(!socket_path(&name).exists());
    std::fs::remove_file(&lock).unwrap();
}

/// Names with consecutive or trailing spaces are legal, and every verb agrees on
/// them: `call` reaches the server, `wait` returns, `inspect` and `list` say live
/// (and `inspect` names the server); after the server stops, all agree it is gone.
/// The same for an abstract name (Linux), which `list` does not show.
#[test]
fn names_with_consecutive_or_trailing_spaces_agree_in_every_verb() {
    let _w = Watchdog::start("names_with_spaces");
    for (prefix, suffix) in [("", "a  b"), ("", "x "), ("", "  "), ("@", "a  b ")] {
        let name = format!("{prefix}{}{suffix}", unique("sp"));
        let server = Server::builder(&name).handler(echo).spawn().unwrap();
        assert_eq!(call(&name, b"hi"), b"hi", "{name:?}");
        npipe::wait(&name, Duration::from_secs(5)).unwrap();
        let info = npipe::inspect(&name).unwrap();
        assert_eq!(info.state(), npipe::PipeState::Live, "{name:?}");
        assert_eq!(info.server_pid(), Some(std::process::id()), "{info:?}");
        // `list` shows the pipe directory: abstract names have no file there.
        if prefix.is_empty() {
            let listed = npipe::list().unwrap();
            let entry = listed
                .iter()
                .find(|p| p.name().as_str() == name)
                .expect("listed");
            assert!(entry.is_live(), "{name:?}: {entry:?}");
        }
        server.shutdown();
        server.join().unwrap();
        assert_eq!(kind(Stream::try_connect(&name)), ErrorKind::NotFound);
        assert_eq!(
            kind(npipe::wait(&name, Duration::from_millis(50))),
            ErrorKind::Timeout
        );
        assert_eq!(
            npipe::inspect(&name).unwrap().state(),
            npipe::PipeState::Absent
        );
    }
}

/// A socket served by something other than npipe (a service manager, another
/// program) has no lock file; another user can create one beside it with a record
/// of their choosing. `inspect` and `list` show the record only when the lock
/// file's owner is the socket's: here they show none of it.
#[test]
fn a_record_planted_by_another_user_is_not_shown() {
    let (_w, name) = util::begin("a_record_planted");
    crate::require_root!("needs root to plant the record as user nobody (setpriv)");
    let (sock, lock) = (socket_path(&name), record_path(&name));
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let record = "pid=1 mode=byte direction=inbound access=everyone\n";
    let mut writer = nobody("hard-write-file", &[lock.to_str().unwrap(), record]);
    assert_eq!(writer.expect_line(""), "written");
    let info = npipe::inspect(&name).unwrap();
    assert_eq!(info.state(), npipe::PipeState::Live);
    assert_eq!(info.owner_uid(), Some(0));
    assert_eq!(
        (info.mode(), info.direction(), info.access()),
        (None, None, None),
        "{info:?}"
    );
    assert_eq!(info.server_pid(), Some(std::process::id()), "{info:?}");
    let listed = npipe::list().unwrap();
    let entry = listed
        .iter()
        .find(|p| p.name().as_str() == name)
        .expect("listed");
    assert_eq!((entry.mode(), entry.access()), (None, None), "{entry:?}");
    assert_eq!(entry.server_pid(), Some(std::process::id()), "{entry:?}");
    drop(listener);
    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(&lock).unwrap();
}

/// At the default level (INFO), and even at TRACE, npipe's logs carry no request
/// or reply bytes: not on success, oversize, cut-off frames, panics or deadlines.
#[test]
fn logs_carry_no_payload_at_info_or_even_trace() {
    let _w = Watchdog::start("logs_carry_no_payload");
    for level in ["info", "trace"] {
        let mut c = util::child("hard-logs", &[level]);
        let line = c.expect_line("logged ");
        eprintln!("{line}");
        assert!(c.wait_for(Duration::from_secs(60)).success(), "{line}");
    }
}

// ---------------------------------------------------------------------------------
// Load and soak

/// `clients` clients connected at once to one server in another process, then
/// `requests` requests in all, every reply checked; the server's descriptors and
/// resident memory are sampled after a warm-up round and at the end.
fn soak(clients: usize, requests: usize) {
    let limit = raise_nofile();
    assert!(
        limit as usize > 2 * clients + 64,
        "RLIMIT_NOFILE hard limit {limit} is too low for {clients} clients"
    );
    let name = unique("soak");
    let mut server = util::child("hard-server", &[&name, "pending=64"]);
    server.expect_line("ready");
    let pid = server.id();
    let settle = |baseline: Option<usize>| {
        // Closed connections are released asynchronously: wait (a while) until the
        // count is steady, and back to the baseline if one is given.
        let mut last = fd_count(pid);
        for _ in 0..150 {
            thread::sleep(Duration::from_millis(200));
            let now = fd_count(pid);
            if now == last && baseline.is_none_or(|b| now <= b) {
                break;
            }
            last = now;
        }
        fd_count(pid)
    };
    let round = |clients: usize, requests: usize| -> u64 {
        let base = settle(None);
        let connected = Arc::new(Barrier::new(clients + 1));
        let verified = Arc::new(AtomicU64::new(0));
        let per_client = requests / clients;
        let extra = requests % clients;
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let (name, connected, verified) =
                    (name.clone(), Arc::clone(&connected), Arc::clone(&verified));
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let mut stream = ConnectOptions::new()
                            .timeout(Duration::from_secs(120))
                            .connect(&name)
                            .unwrap();
                        connected.wait();
                        let mut reply = Vec::new();
                        let mine = per_client + usize::from(c < extra);
                        for r in 0..mine {
                            let request = format!("{c}/{r}/{}", "p".repeat(r % 97));
                            stream.send(request.as_bytes()).unwrap();
                            stream.recv(&mut reply).unwrap().unwrap();
                            assert_eq!(reply, request.as_bytes(), "client {c} request {r}");
                            verified.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .unwrap()
            })
            .collect();
        // Every client connects; none sends until the server holds them all.
        let mut held = 0;
        for _ in 0..600 {
            held = fd_count(pid).saturating_sub(base);
            if held >= clients {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        connected.wait();
        for w in workers {
            w.join().unwrap();
        }
        assert!(
            held >= clients,
            "the server held {held} of {clients} clients at once"
        );
        verified.load(Ordering::Relaxed)
    };
    // Warm-up: the same concurrency, so pools and tables reach their working size.
    let warm = round(clients, clients * 5);
    assert_eq!(warm, (clients * 5) as u64);
    let (fds_start, rss_start) = (settle(None), rss_kib(pid));
    let started = Instant::now();
    let verified = round(clients, requests);
    let elapsed = started.elapsed();
    let (fds_end, rss_end) = (settle(Some(fds_start)), rss_kib(pid));
    let summary = format!(
        "soak: {clients} concurrent clients, {verified} of {requests} replies verified in {:.1} s ({:.0} req/s); server fds start {fds_start} end {fds_end}; server RSS start {rss_start} KiB end {rss_end} KiB ({:+} KiB)",
        elapsed.as_secs_f64(),
        verified as f64 / elapsed.as_secs_f64(),
        rss_end as i64 - rss_start as i64
    );
    println!("\n{summary}");
    eprintln!("{summary}");
    assert_eq!(verified, requests as u64);
    assert_eq!(fds_end, fds_start, "descriptors leaked");
    // Noise: allocator caches and the blocking pool's threads; a leak of even
    // 100 bytes a request would show far above this over 50,000 requests or more.
    assert!(
        rss_end <= rss_start + 16 * 1024,
        "the server's memory grew: {summary}"
    );
    assert!(rss_start > 0, "no /proc/PID/status");
    server.kill();
}

/// The shortened soak that runs in CI: 100 concurrent clients, 50,000 requests.
#[test]
fn soak_100_concurrent_clients_50000_requests() {
    let _w = Watchdog::new("soak_100_clients", Duration::from_secs(300));
    soak(100, 50_000);
}

/// The full soak, run by `scripts/soak.sh`: 1,000 concurrent clients and 1,000,000
/// requests (NPIPE_SOAK_CLIENTS and NPIPE_SOAK_REQUESTS change them).
#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn soak_1000_concurrent_clients_1000000_requests() {
    let env = |key: &str, default: usize| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let _w = Watchdog::new("soak_1000_clients", Duration::from_secs(3600));
    soak(
        env("NPIPE_SOAK_CLIENTS", 1000),
        env("NPIPE_SOAK_REQUESTS", 1_000_000),
    );
}

// ---------------------------------------------------------------------------------
// Roles run in child processes (dispatched from `tests.rs`)

pub(crate) mod roles {
    use super::*;
    use crate::util::drive::say;

    fn fail(what: impl std::fmt::Display) -> i32 {
        eprintln!("role failed: {what}");
        1
    }

    fn open_fds() -> u64 {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
    }

    /// `NAME [nofile+N] [pending=N]`: a server (message mode, sync handler) that
    /// echoes, answers `slow` only after saying `handling slow` and sleeping, and
    /// runs until killed. `nofile+N` leaves it N descriptors beyond those it has
    /// once serving; otherwise its limit is raised to the hard limit.
    pub(crate) fn server(args: &[&str]) -> i32 {
        let Some(name) = args.first() else {
            return fail("usage: NAME [nofile+N] [pending=N]");
        };
        let mut builder = Server::builder(*name).handler(|r: Request| {
            if r.body() == b"slow" {
                say("handling slow");
                thread::sleep(Duration::from_secs(600));
            }
            Response::new(r.into_body())
        });
        let mut headroom = None;
        for arg in &args[1..] {
            if let Some(n) = arg.strip_prefix("nofile+") {
                headroom = n.parse::<u64>().ok();
            } else if let Some(n) = arg.strip_prefix("pending=") {
                builder = builder.pending_instances(n.parse().unwrap_or(4));
            }
        }
        raise_nofile();
        let server = match builder.spawn() {
            Ok(server) => server,
            Err(e) => return fail(e),
        };
        // Bring up the runtime's threads before the limit bites.
        for _ in 0..8 {
            if npipe::call(*name, b"warm", Duration::from_secs(5)).is_err() {
                return fail("warm-up call");
            }
        }
        if let Some(headroom) = headroom {
            use nix::sys::resource::{getrlimit, setrlimit, Resource};
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, open_fds() + headroom, hard) {
                return fail(e);
            }
        }
        say(format!("ready {}", std::process::id()));
        loop {
            thread::sleep(Duration::from_secs(1));
            let _ = server.stats();
        }
    }

    /// `NAME REQUEST`: sends REQUEST, never reads the reply, says `sent`, sleeps.
    pub(crate) fn no_read(args: &[&str]) -> i32 {
        let [name, request] = args else {
            return fail("usage: NAME REQUEST");
        };
        let mut stream = match Stream::connect(*name) {
            Ok(stream) => stream,
            Err(e) => return fail(e),
        };
        if let Err(e) = stream.send(request.as_bytes()) {
            return fail(e);
        }
        say("sent");
        thread::sleep(Duration::from_secs(600));
        0
    }

    /// `NAME`: creates the pipe (in `$NPIPE_DIR` if set); says `created` or
    /// `error <Kind> <message>`, and exits.
    pub(crate) fn bind(args: &[&str]) -> i32 {
        match Listener::bind(args[0]) {
            Ok(_) => say("created"),
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        0
    }

    /// `NAME`: takes the name first, open to everyone, and echoes until killed.
    /// A squatter that answers every client with npipe's refusal notice, as if a
    /// policy had refused it: a plain socket at the pipe's path.
    pub(crate) fn forge_refusal(args: &[&str]) -> i32 {
        let path = super::socket_path(args[0]);
        let listener = match std::os::unix::net::UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) => {
                say(format!("error {e}"));
                return 0;
            }
        };
        say("ready");
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(npipe::REFUSAL_NOTICE);
        }
        0
    }

    pub(crate) fn squat(args: &[&str]) -> i32 {
        let listener = match ListenerOptions::new()
            .access(Access::Everyone)
            .create(args[0])
        {
            Ok(listener) => listener,
            Err(e) => {
                say(format!("error {:?} {e}", ErrorKind::of(&e)));
                return 0;
            }
        };
        say(format!("ready {}", std::process::id()));
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = Vec::new();
                while let Ok(Some(_)) = stream.recv(&mut buf) {
                    if stream.send(b"squatter says hi").is_err() {
                        return;
                    }
                }
            });
        }
        0
    }

    /// Waits until `stream`'s server has closed the connection (its notice, if
    /// any, is then waiting to be read).
    fn wait_closed(stream: &impl std::os::fd::AsFd) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // Not POLLIN: that comes with the notice, just before the close. POLLHUP
        // needs no asking: once the server has closed, poll reports it.
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::empty())];
        let _ = poll(&mut fds, PollTimeout::from(20_000u16));
    }

    /// `NAME`: a client that the server's access policy refuses once connected,
    /// in every way npipe talks to a server; says `HOW <Kind> <message>` (or
    /// `HOW ok <reply>`) for `call`, `recv` (send, then read), `send` (after the
    /// server closed), `tokio-recv`, `tokio-send`, `tokio-framed`, then `bytes
    /// <hex>`: what a byte-mode client reads before the connection ends.
    pub(crate) fn refused(args: &[&str]) -> i32 {
        use futures_util::{SinkExt, StreamExt};
        use std::io::Result;

        let name = args[0];
        let outcome = |how: &str, result: Result<Vec<u8>>| match result {
            Ok(reply) => say(format!("{how} ok {}", String::from_utf8_lossy(&reply))),
            Err(e) => say(format!("{how} {:?} {e}", ErrorKind::of(&e))),
        };
        let timeout = Duration::from_secs(10);
        outcome("call", npipe::call(name, b"hello", timeout));
        let recv = || -> Result<Vec<u8>> {
            let mut s = Stream::connect(name)?;
            s.send(b"hello")?;
            let mut reply = Vec::new();
            s.recv(&mut reply)?;
            Ok(reply)
        };
        outcome("recv", recv());
        let send = || -> Result<Vec<u8>> {
            let mut s = Stream::connect(name)?;
            wait_closed(&s);
            s.send(b"hello")?;
            Ok(Vec::new())
        };
        outcome("send", send());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let recv = async {
                let mut s = npipe::tokio::Stream::connect(name).await?;
                s.send(b"hello").await?;
                let mut reply = Vec::new();
                s.recv(&mut reply).await?;
                Ok(reply)
            };
            outcome("tokio-recv", recv.await);
            let send = async {
                let mut s = npipe::tokio::Stream::connect(name).await?;
                wait_closed(&s);
                s.send(b"hello").await?;
                Ok(Vec::new())
            };
            outcome("tokio-send", send.await);
            let framed = async {
                let s = npipe::tokio::Stream::connect(name).await?;
                let mut framed = s.into_framed().expect("message mode");
                // The server may have closed already: what the next frame says counts.
                let _ = framed.send(bytes::Bytes::from_static(b"hello")).await;
                match framed.next().await {
                    Some(reply) => Ok(reply?.to_vec()),
                    None => Ok(b"<end>".to_vec()),
                }
            };
            outcome("tokio-framed", framed.await);
        });
        let mut raw = raw(name);
        let _ = raw.write_all(b"hello");
        let bytes = read_until_closed(&mut raw);
        say(format!(
            "bytes {}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        0
    }

    /// `NAME`: connects requiring the server to run as root; says `ok` or
    /// `error <Kind> <message>`.
    pub(crate) fn expect_root(args: &[&str]) -> i32 {
        match ConnectOptions::new()
            .expect_server_uid(0)
            .timeout(Duration::from_secs(5))
            .connect(args[0])
        {
            Ok(_) => say("ok"),
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        0
    }

    /// `NAME`: connects once without waiting; says `connected uid=UID` (the
    /// server's) or `error <Kind> <message>`.
    pub(crate) fn connect(args: &[&str]) -> i32 {
        match Stream::try_connect(args[0]) {
            Ok(stream) => {
                let uid = stream.peer_credentials().ok().and_then(|c| c.uid());
                say(format!("connected uid={}", uid.map_or(-1, i64::from)));
            }
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        0
    }

    /// `PATH CONTENT`: writes a file as whoever runs it; says `written` or `error`.
    pub(crate) fn write_file(args: &[&str]) -> i32 {
        let [path, content] = args else {
            return fail("usage: PATH CONTENT");
        };
        match std::fs::write(path, content) {
            Ok(()) => say("written"),
            Err(e) => say(format!("error {e}")),
        }
        0
    }

    /// `PARENT MILLIS VICTIM SQUAT`: makes the symlinks `PARENT/to-victim` →
    /// VICTIM and `PARENT/to-squat` → SQUAT, says `swapping`, then for MILLIS
    /// exchanges `PARENT/pipes` with each of them and back (`RENAME_EXCHANGE`, so
    /// `PARENT/pipes` is a directory or a symlink at every instant), and says
    /// `swapped N`. An even number of exchanges per link leaves `pipes` in place.
    pub(crate) fn swap(args: &[&str]) -> i32 {
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
        let [parent, millis, victim, squat] = args else {
            return fail("usage: PARENT MILLIS VICTIM SQUAT");
        };
        let parent = Path::new(parent);
        let pipes = parent.join("pipes");
        let links = [parent.join("to-victim"), parent.join("to-squat")];
        for (link, target) in links.iter().zip([victim, squat]) {
            if let Err(e) = std::os::unix::fs::symlink(target, link) {
                return fail(e);
            }
        }
        let until = Instant::now() + Duration::from_millis(millis.parse().unwrap_or(2000));
        say("swapping");
        let mut swaps = 0u64;
        while Instant::now() < until {
            for link in &links {
                for _ in 0..2 {
                    let exchange = RenameFlags::RENAME_EXCHANGE;
                    if renameat2(AT_FDCWD, &pipes, AT_FDCWD, link, exchange).is_ok() {
                        swaps += 1;
                    }
                }
            }
        }
        say(format!("swapped {swaps}"));
        0
    }

    /// `NAME MIN_ATTEMPTS MILLIS` (with `NPIPE_DIR` set): at least MIN_ATTEMPTS
    /// times and for at least MILLIS, creates the pipe (open to everyone) and
    /// drops it, then connects once without waiting. Says `done attempts=N
    /// bound=N connected=N other=N binds=KINDS connects=KINDS first=MESSAGE`:
    /// `other` counts connections whose server was not this user, KINDS the
    /// error kinds seen, MESSAGE the first refusal of a bind.
    pub(crate) fn dir_race(args: &[&str]) -> i32 {
        use std::collections::BTreeMap;
        let [name, attempts, millis] = args else {
            return fail("usage: NAME MIN_ATTEMPTS MILLIS");
        };
        let min_attempts: u64 = attempts.parse().unwrap_or(300);
        let until = Instant::now() + Duration::from_millis(millis.parse().unwrap_or(2000));
        let me = nix::unistd::geteuid().as_raw();
        let (mut done, mut bound, mut connected, mut other) = (0u64, 0u64, 0u64, 0u64);
        let mut binds: BTreeMap<String, u64> = BTreeMap::new();
        let mut connects: BTreeMap<String, u64> = BTreeMap::new();
        let mut first = None;
        while done < min_attempts || Instant::now() < until {
            done += 1;
            match ListenerOptions::new()
                .access(Access::Everyone)
                .create(*name)
            {
                Ok(listener) => {
                    bound += 1;
                    drop(listener);
                }
                Err(e) => {
                    *binds.entry(format!("{:?}", ErrorKind::of(&e))).or_default() += 1;
                    first.get_or_insert_with(|| e.to_string());
                }
            }
            match Stream::try_connect(*name) {
                Ok(stream) => {
                    connected += 1;
                    let uid = stream.peer_credentials().ok().and_then(|c| c.uid());
                    if uid != Some(me) {
                        other += 1;
                    }
                }
                Err(e) => {
                    *connects
                        .entry(format!("{:?}", ErrorKind::of(&e)))
                        .or_default() += 1;
                }
            }
        }
        let kinds = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k}:{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        say(format!(
            "done attempts={done} bound={bound} connected={connected} other={other} binds={} connects={} first={}",
            kinds(&binds),
            kinds(&connects),
            first.unwrap_or_default()
        ));
        0
    }

    /// `NAME MILLIS PATH TARGET [PATH TARGET]...` (NAME: the pipe whose files
    /// are targeted, for clean-up): says `planting`, then for MILLIS
    /// plants a symlink PATH → TARGET for each pair (pairs for the same PATH take
    /// turns; for `swap:PATH`, first a socket of its own at PATH, then the symlink
    /// renamed over it), waits a little, removes its own symlinks, waits again;
    /// then says `planted N`.
    pub(crate) fn plant(args: &[&str]) -> i32 {
        let [_, millis, rest @ ..] = args else {
            return fail("usage: NAME MILLIS PATH TARGET...");
        };
        let pairs: Vec<(&str, &str)> = rest
            .chunks(2)
            .filter_map(|pair| match pair {
                [path, target] => Some((*path, *target)),
                _ => None,
            })
            .collect();
        let me = nix::unistd::geteuid().as_raw();
        let until = Instant::now() + Duration::from_millis(millis.parse().unwrap_or(2000));
        say("planting");
        let mut planted = 0u64;
        let mut round = 0usize;
        while Instant::now() < until {
            round += 1;
            let order: Vec<&(&str, &str)> = if round % 2 == 0 {
                pairs.iter().collect()
            } else {
                pairs.iter().rev().collect()
            };
            for (path, target) in order {
                if let Some(path) = path.strip_prefix("swap:") {
                    // A socket of our own at PATH, then atomically a symlink in
                    // its place: a client that checked the socket and then used
                    // the path would follow the symlink.
                    let (socket, link) = (format!("{path}.s"), format!("{path}.l"));
                    drop(std::os::unix::net::UnixListener::bind(&socket));
                    if std::fs::rename(&socket, path).is_ok() {
                        planted += 1;
                        if std::os::unix::fs::symlink(target, &link).is_ok() {
                            let _ = std::fs::rename(&link, path);
                        }
                    }
                    let _ = std::fs::remove_file(&socket);
                    let _ = std::fs::remove_file(&link);
                } else if std::os::unix::fs::symlink(target, path).is_ok() {
                    planted += 1;
                }
            }
            thread::sleep(Duration::from_micros(300));
            for (path, _) in &pairs {
                let path = path.strip_prefix("swap:").unwrap_or(path);
                let ours = std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == me);
                if ours {
                    let _ = std::fs::remove_file(path);
                }
            }
            thread::sleep(Duration::from_micros(300));
        }
        say(format!("planted {planted}"));
        0
    }

    /// `NAME MILLIS PATH TARGET`: plants a symlink at PATH to TARGET the moment
    /// PATH is free (trying without pause), keeps it 200 µs, removes it, and again,
    /// for MILLIS; then says `planted N`.
    pub(crate) fn plant_spin(args: &[&str]) -> i32 {
        let [_, millis, path, target] = args else {
            return fail("usage: NAME MILLIS PATH TARGET");
        };
        let until = Instant::now() + Duration::from_millis(millis.parse().unwrap_or(2000));
        say("planting");
        let mut planted = 0u64;
        while Instant::now() < until {
            for _ in 0..1000 {
                if std::os::unix::fs::symlink(target, path).is_ok() {
                    planted += 1;
                    thread::sleep(Duration::from_micros(200));
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        say(format!("planted {planted}"));
        0
    }

    /// `PATH MILLIS`: opens PATH for reading (says `opened`), takes a shared
    /// `flock` on it as soon as it can (says `locked`), holds it for MILLIS.
    pub(crate) fn flock(args: &[&str]) -> i32 {
        let [path, millis] = args else {
            return fail("usage: PATH MILLIS");
        };
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) => {
                say("opened");
                say(format!("cannot open: {e}"));
                return 0;
            }
        };
        say("opened");
        let until = Instant::now() + Duration::from_millis(millis.parse().unwrap_or(2000));
        loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
                Ok(lock) => {
                    say("locked");
                    thread::sleep(until.saturating_duration_since(Instant::now()));
                    drop(lock);
                    return 0;
                }
                Err((back, _)) if Instant::now() < until => {
                    file = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((_, e)) => {
                    say(format!("cannot lock: {e}"));
                    return 0;
                }
            }
        }
    }

    /// A writer shared with the log subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `LEVEL`: captures npipe's logs at LEVEL while a server and clients go through
    /// every path that logs, with a secret in every payload; fails if the secret
    /// (or its hex) appears in the logs.
    pub(crate) fn logs(args: &[&str]) -> i32 {
        let level: tracing::Level = args
            .first()
            .and_then(|l| l.parse().ok())
            .unwrap_or(tracing::Level::INFO);
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        std::panic::set_hook(Box::new(|_| {})); // the handler's panic below is expected

        const SECRET: &str = "hunter2-SECRET-7f3a";
        let name = unique("logs");
        let mut options = ListenerOptions::new();
        options.max_message_size(1024);
        let server = match Server::builder(&name)
            .options(options)
            .idle_timeout(Some(Duration::from_millis(200)))
            .request_timeout(Some(Duration::from_millis(500)))
            .handler(|r: Request| {
                if r.body().starts_with(b"panic") {
                    panic!("handler saw {}", String::from_utf8_lossy(r.body()));
                }
                Response::new(r.into_body())
            })
            .spawn()
        {
            Ok(server) => server,
            Err(e) => return fail(e),
        };
        let secret_request = format!("request {SECRET}");
        if npipe::call(&name, secret_request.as_bytes(), Duration::from_secs(5)).is_err() {
            return fail("call");
        }
        let panic_request = format!("panic {SECRET}");
        let _ = npipe::call(&name, panic_request.as_bytes(), Duration::from_secs(5));
        // Oversized, cut off, stalled: each with the secret on the wire.
        let mut wire = 5000u32.to_le_bytes().to_vec();
        wire.extend_from_slice(SECRET.as_bytes());
        let mut cut = 100u32.to_le_bytes().to_vec();
        cut.extend_from_slice(SECRET.as_bytes());
        for bytes in [wire, cut.clone(), SECRET.as_bytes().to_vec()] {
            let mut s = raw(&name);
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(Shutdown::Write);
            let _ = read_until_closed(&mut s);
        }
        let mut stalled = raw(&name);
        let _ = stalled.write_all(&cut);
        let _ = read_until_closed(&mut stalled);
        let _ = wait_stats(&server, "all closed", |s| s.active == 0);
        server.shutdown();
        let _ = server.join();

        let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
        let leaked = logs.contains(SECRET) || logs.contains(&hex) || logs.contains("hunter2");
        say(format!(
            "logged {} lines at {level}, secret {}",
            logs.lines().count(),
            if leaked { "LEAKED" } else { "absent" }
        ));
        if leaked {
            return fail(format!("the logs carry payload bytes:\n{logs}"));
        }
        // The capture works: the panic is logged as a warning at INFO and above.
        if !logs.contains("panicked") {
            return fail(format!("nothing was captured:\n{logs}"));
        }
        0
    }
}
