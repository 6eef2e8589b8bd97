//! Memory follows the bytes received, not the bytes announced: peers that send a
//! header announcing the largest message allowed and then stall must not make a
//! server commit that much, on any receive path (blocking `Stream::recv`, tokio
//! `Stream::recv`, the `MessageCodec`, `npipe::Server` with sync and async
//! handlers), and a large message that arrives slowly is still delivered whole.
//!
//! The server runs in a child process (role `mem-server`); the test connects to it
//! with plain Unix sockets and reads its memory in `/proc/PID/status`: the growth
//! of its peak resident size (`VmHWM`, reset before the headers are sent), which
//! shows buffers that are zeroed, and of its data size (`VmData`), which shows
//! buffers reserved but not yet written.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crate::util::drive::say;
use crate::util::{child, unique, Child, Watchdog};

const MIB: u64 = 1024 * 1024;

/// The receive paths, as the role names them.
const BLOCKING: &str = "blocking";
const TOKIO: &str = "tokio";
const CODEC: &str = "codec";
const SERVER_SYNC: &str = "server-sync";
const SERVER_ASYNC: &str = "server-async";

#[test]
fn header_only_peers_hold_little_memory_blocking_stream() {
    memory_follows_bytes(BLOCKING);
}

#[test]
fn header_only_peers_hold_little_memory_tokio_stream() {
    memory_follows_bytes(TOKIO);
}

#[test]
fn header_only_peers_hold_little_memory_codec() {
    memory_follows_bytes(CODEC);
}

#[test]
fn header_only_peers_hold_little_memory_server_sync() {
    memory_follows_bytes(SERVER_SYNC);
}

#[test]
fn header_only_peers_hold_little_memory_server_async() {
    memory_follows_bytes(SERVER_ASYNC);
}

/// 128 peers announce 16 MiB (the default cap) each, then one peer announces
/// 1 GiB to a server whose cap is 1 GiB; neither may make the server commit more
/// than a small fraction of what was announced. Then an 8 MiB message sent in
/// small pieces comes back whole.
fn memory_follows_bytes(kind: &str) {
    let _w = Watchdog::new(
        &format!("memory_follows_bytes_{kind}"),
        Duration::from_secs(120),
    );
    let (mut server, name) = start(kind, 16 * MIB, 128);
    let many = header_only_peers(&mut server, &name, 16 * MIB, 128);
    slow_large_message(&name, 8 << 20);
    drop(server);
    let (mut server, name) = start(kind, 1 << 30, 1);
    let one = header_only_peers(&mut server, &name, 1 << 30, 1);
    drop(server);
    // Far less than the 2 GiB announced: at most 1 MiB a connection (a step of
    // 64 KiB for the message, and the connection's own buffers and task or thread).
    assert!(
        many < 128 * MIB,
        "{kind}: 128 headers of 16 MiB made the server grow by {} KiB",
        many / 1024
    );
    assert!(
        one < 8 * MIB,
        "{kind}: one header of 1 GiB made the server grow by {} KiB",
        one / 1024
    );
}

/// Starts a `kind` server with the cap `cap` that says "accepted" after `peers`
/// connections.
fn start(kind: &str, cap: u64, peers: usize) -> (Child, String) {
    let name = unique(&format!("mem-{kind}"));
    let mut server = child(
        "mem-server",
        &[&name, kind, &cap.to_string(), &peers.to_string()],
    );
    server.expect_line("ready");
    (server, name)
}

fn socket(name: &str) -> PathBuf {
    match npipe::PipeName::new(name).unwrap().address().unwrap() {
        npipe::Address::Path(path) => path,
        other => panic!("not a socket path: {other:?}"),
    }
}

/// Opens `count` connections, each sending only a header that announces `cap`
/// bytes, and returns by how much the server's memory grew once it has read them
/// all (the larger of the growth of its peak resident and its data size, in bytes).
fn header_only_peers(server: &mut Child, name: &str, cap: u64, count: usize) -> u64 {
    let path = socket(name);
    let peers: Vec<UnixStream> = (0..count)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let pid = server.id();
    // The server has every connection and waits for its first byte.
    server.expect_line("accepted");
    wait_quiet(pid);
    let before = Memory::baseline(pid);
    let header = u32::try_from(cap).unwrap().to_le_bytes();
    for mut peer in &peers {
        peer.write_all(&header).unwrap();
    }
    for peer in &peers {
        wait_consumed(peer);
    }
    // The server read every header; whatever it does about them is done once
    // all its threads sleep again. (Zeroing gigabytes can take long enough on a
    // busy machine that a request deadline frees them first: the peak resident
    // size still shows them.)
    wait_quiet(pid);
    let after = Memory::of(pid);
    let rss = after.peak_rss.saturating_sub(before.peak_rss);
    let data = after.data.saturating_sub(before.data);
    eprintln!(
        "{count} header(s) announcing {} MiB: the server's peak resident size grew by {} KiB, its data size by {} KiB ({} KiB per connection)",
        cap / MIB,
        rss / 1024,
        data / 1024,
        rss.max(data) / 1024 / count as u64
    );
    rss.max(data)
}

/// Sends a `len`-byte message in 64 KiB pieces with pauses in between, and checks
/// that the server sends it back whole.
fn slow_large_message(name: &str, len: usize) {
    let mut peer = UnixStream::connect(socket(name)).unwrap();
    let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    peer.write_all(&u32::try_from(len).unwrap().to_le_bytes())
        .unwrap();
    for piece in message.chunks(64 * 1024) {
        peer.write_all(piece).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    let mut header = [0u8; 4];
    peer.read_exact(&mut header).unwrap();
    assert_eq!(u32::from_le_bytes(header) as usize, len, "reply length");
    let mut reply = vec![0u8; len];
    peer.read_exact(&mut reply).unwrap();
    assert!(reply == message, "the message came back altered");
}

/// A process's peak resident size and its data size (`VmHWM`, `VmData`), in bytes.
#[derive(Debug, Clone, Copy)]
struct Memory {
    peak_rss: u64,
    data: u64,
}

impl Memory {
    /// The memory of `pid` now, its peak resident size reset to the current one
    /// (`clear_refs`), so that a later peak counts only what came after.
    fn baseline(pid: u32) -> Memory {
        fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        Memory::of(pid)
    }

    fn of(pid: u32) -> Memory {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
                * 1024
        };
        Memory {
            peak_rss: field("VmHWM:"),
            data: field("VmData:"),
        }
    }
}

/// Waits until no thread of process `pid` is running, three times in a row.
fn wait_quiet(pid: u32) {
    let mut calm = 0;
    while calm < 3 {
        let running = fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|task| fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .any(|stat| {
                // "TID (COMM) STATE ...": the name may hold spaces and parentheses.
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                state.is_some_and(|s| s.starts_with('R'))
            });
        calm = if running { 0 } else { calm + 1 };
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the peer has read everything sent on `sock`.
fn wait_consumed(sock: &UnixStream) {
    loop {
        let mut queued: nix::libc::c_int = 0;
        // SAFETY: SIOCOUTQ (Linux defines it as TIOCOUTQ) writes one int, the bytes
        // sent on the socket and not yet read by the peer, into `queued`; the
        // descriptor is open for the duration of the call.
        let rc = unsafe { nix::libc::ioctl(sock.as_raw_fd(), nix::libc::TIOCOUTQ, &mut queued) };
        assert_eq!(rc, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
        if queued == 0 {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) mod roles {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use npipe::{ListenerOptions, Request, Response, Server};

    use super::*;

    fn fail(what: impl std::fmt::Display) -> i32 {
        eprintln!("role failed: {what}");
        1
    }

    /// `NAME KIND CAP PEERS`: an echo server of `KIND` with the maximum message size
    /// CAP; says "ready" once it listens and "accepted" once PEERS connections are
    /// open, and serves until killed.
    pub(crate) fn server(args: &[&str]) -> i32 {
        let [name, kind, cap, peers] = args else {
            return fail("usage: NAME KIND CAP PEERS");
        };
        let (Ok(cap), Ok(peers)) = (cap.parse::<u32>(), peers.parse::<usize>()) else {
            return fail("bad numbers");
        };
        let mut options = ListenerOptions::new();
        options.max_message_size(cap);
        let result = match *kind {
            BLOCKING => blocking(name, &options, peers),
            TOKIO | CODEC => runtime()
                .and_then(|rt| rt.block_on(tokio_server(name, &options, peers, *kind == CODEC))),
            SERVER_SYNC | SERVER_ASYNC => managed(name, options, peers, *kind == SERVER_ASYNC),
            other => return fail(format!("unknown kind {other}")),
        };
        match result {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    }

    fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }

    /// Says "accepted" when the `peers`-th connection is in.
    fn count(accepted: &mut usize, peers: usize) {
        *accepted += 1;
        if *accepted == peers {
            say("accepted");
        }
    }

    fn blocking(name: &str, options: &ListenerOptions, peers: usize) -> std::io::Result<()> {
        let listener = options.create(name)?;
        say("ready");
        let mut accepted = 0;
        loop {
            let mut stream = listener.accept()?;
            thread::spawn(move || {
                let mut buf = Vec::new();
                while let Ok(Some(_)) = stream.recv(&mut buf) {
                    if stream.send(&buf).is_err() {
                        break;
                    }
                }
            });
            count(&mut accepted, peers);
        }
    }

    async fn tokio_server(
        name: &str,
        options: &ListenerOptions,
        peers: usize,
        codec: bool,
    ) -> std::io::Result<()> {
        let listener = npipe::tokio::Listener::bind_with(name, options)?;
        say("ready");
        let mut accepted = 0;
        loop {
            let mut stream = listener.accept().await?;
            tokio::spawn(async move {
                if codec {
                    let Ok(mut framed) = stream.into_framed() else {
                        return;
                    };
                    while let Some(Ok(message)) = framed.next().await {
                        if framed.send(message.freeze()).await.is_err() {
                            break;
                        }
                    }
                } else {
                    let mut buf = Vec::new();
                    while let Ok(Some(_)) = stream.recv(&mut buf).await {
                        if stream.send(&buf).await.is_err() {
                            break;
                        }
                    }
                }
            });
            count(&mut accepted, peers);
        }
    }

    fn managed(
        name: &str,
        options: ListenerOptions,
        peers: usize,
        asynchronous: bool,
    ) -> std::io::Result<()> {
        let builder = Server::builder(name).options(options);
        let server = if asynchronous {
            builder.async_handler(|r: Request| async move { Response::new(r.into_body()) })
        } else {
            builder.handler(|r: Request| Response::new(r.into_body()))
        }
        .spawn()?;
        say("ready");
        while (server.stats().active as usize) < peers {
            thread::sleep(Duration::from_millis(5));
        }
        say("accepted");
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
}
