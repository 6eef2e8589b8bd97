//! `npipe::Server`: many clients from many processes, hostile clients, deadlines,
//! back-pressure, shutdown, panics, and no leaks.

// Some helpers and imports serve only the Unix-only tests below.
#![cfg_attr(windows, allow(unused_imports, dead_code))]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use npipe::server::InstanceState;
use npipe::{
    ConnectOptions, ErrorKind, ListenerOptions, Mode, Request, Response, Server, SpawnedServer,
};

use crate::util::drive::say;
use crate::util::{self, child, unique, wait_stats, Watchdog};

fn echo(request: Request) -> Response {
    let mut reply = b"Response to: ".to_vec();
    reply.extend_from_slice(request.body());
    Response::from(reply)
}

/// How a test's handler runs. A sync handler's connections are served on threads
/// of their own (Unix), an async handler's as tasks: tests of deadlines and
/// shutdown run with both.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sync,
    Async,
}

/// The two tests of a scenario `run(kind: Kind)`, one for each kind of handler.
macro_rules! with_both_kinds {
    ($(#[$attr:meta])* $run:ident: $sync:ident, $async:ident $(,)?) => {
        $(#[$attr])*
        #[test]
        fn $sync() {
            $run(Kind::Sync);
        }

        $(#[$attr])*
        #[test]
        fn $async() {
            $run(Kind::Async);
        }
    };
}

/// `builder` with a handler of `kind` that waits `delay`, then echoes.
fn slow_echo(
    builder: npipe::server::ServerBuilder,
    kind: Kind,
    delay: Duration,
) -> npipe::server::ServerBuilder {
    match kind {
        Kind::Sync => builder.handler(move |r| {
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            echo(r)
        }),
        Kind::Async => builder.async_handler(move |r: Request| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            echo(r)
        }),
    }
}

/// `builder` with a handler of `kind` that holds every request until `release`
/// is set, then echoes.
fn held_echo(
    builder: npipe::server::ServerBuilder,
    kind: Kind,
    release: &Arc<AtomicBool>,
) -> npipe::server::ServerBuilder {
    let release = Arc::clone(release);
    let held = move || {
        while !release.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
        }
    };
    match kind {
        Kind::Sync => builder.handler(move |r| {
            held();
            echo(r)
        }),
        Kind::Async => builder.async_handler(move |r: Request| {
            let held = held.clone();
            async move {
                tokio::task::spawn_blocking(held).await.unwrap();
                echo(r)
            }
        }),
    }
}

/// A client whose request `body` is in its handler, its reply not yet sent.
fn request_in_handler(server: &SpawnedServer, body: &[u8]) -> npipe::Stream {
    let mut client = npipe::Stream::connect(server.name()).unwrap();
    client.send(body).unwrap();
    wait_handling(server, "the request in its handler");
    client
}

/// Waits until a request is in its handler.
fn wait_handling(server: &SpawnedServer, what: &str) {
    wait_stats(server, what, |s| {
        s.instances
            .iter()
            .any(|i| i.state == InstanceState::Handling)
    });
}

fn raw_client(name: &str) -> npipe::Stream {
    let mut opts = ConnectOptions::new();
    opts.mode(Mode::Byte);
    opts.connect(name).unwrap()
}

fn socket_path(server: &SpawnedServer) -> std::path::PathBuf {
    match server.address() {
        npipe::Address::Path(path) => path.clone(),
        other => panic!("expected a socket path, got {other}"),
    }
}

#[test]
fn hundreds_of_clients_from_several_processes() {
    let _w = Watchdog::new(
        "hundreds_of_clients_from_several_processes",
        Duration::from_secs(120),
    );
    let name = unique("srv-many");
    let server = Server::builder(&name)
        .pending_instances(16)
        .handler(echo)
        .spawn()
        .unwrap();
    const PROCESSES: usize = 4;
    const THREADS: usize = 75;
    const REQUESTS: usize = 10;
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            child(
                "server-clients",
                &[&name, &THREADS.to_string(), &REQUESTS.to_string()],
            )
        })
        .collect();
    for c in &mut children {
        let line = c.expect_line("checked ");
        assert_eq!(line, (THREADS * (REQUESTS + 1)).to_string());
        assert!(c.wait_for(Duration::from_secs(60)).success());
    }
    let expected = (PROCESSES * THREADS * (REQUESTS + 1)) as u64;
    let stats = wait_stats(&server, "every connection closed", |s| s.active == 0);
    assert_eq!(stats.completed, expected);
    assert_eq!(stats.accepted, (PROCESSES * THREADS * 2) as u64);
    assert_eq!(stats.failed + stats.timed_out + stats.rejected_oversize, 0);
    assert!(stats.bytes_in > 0 && stats.bytes_out > stats.bytes_in);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn one_request_per_connection_and_persistent_connections() {
    let (_w, name) = util::begin("srv-modes");
    let _server = Server::builder(&name)
        .handler(|r| Response::new(format!("{}#{}", r.connection(), r.sequence())))
        .spawn()
        .unwrap();
    let a = npipe::call(&name, b"x", Duration::from_secs(5)).unwrap();
    let b = npipe::call(&name, b"x", Duration::from_secs(5)).unwrap();
    assert_eq!(a, b"1#1");
    assert_eq!(b, b"2#1");
    let mut s = npipe::Stream::connect(&name).unwrap();
    let mut reply = Vec::new();
    for seq in 1..=3 {
        s.send(b"x").unwrap();
        s.recv(&mut reply).unwrap().unwrap();
        assert_eq!(reply, format!("3#{seq}").as_bytes());
    }
}

#[test]
fn async_handler_sees_peer_credentials() {
    let _w = Watchdog::start("async_handler_sees_peer_credentials");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = unique("srv-async");
    let server = rt.block_on(async {
        Server::builder(&name)
            .async_handler(|r: Request| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let pid = r.peer().and_then(|p| p.pid()).unwrap_or(0);
                Response::new(pid.to_string())
            })
            .bind()
            .unwrap()
    });
    let handle = server.handle();
    let running = rt.spawn(server.run());
    let reply = npipe::call(&name, b"who", Duration::from_secs(5)).unwrap();
    assert_eq!(reply, std::process::id().to_string().as_bytes());
    handle.shutdown();
    rt.block_on(running).unwrap().unwrap();
    assert_eq!(handle.stats().completed, 1);
}

#[test]
fn handler_panic_fails_only_its_request() {
    let (_w, name) = util::begin("handler_panic_fails_only_its_request");
    let server = Server::builder(&name)
        .handler(|r| {
            if r.body() == b"panic" {
                panic!("the handler was told to panic");
            }
            echo(r)
        })
        .spawn()
        .unwrap();
    // A persistent connection that survives its neighbour's panic.
    let mut other = npipe::Stream::connect(&name).unwrap();
    let mut reply = Vec::new();
    other.send(b"before").unwrap();
    other.recv(&mut reply).unwrap().unwrap();

    let mut victim = npipe::Stream::connect(&name).unwrap();
    victim.send(b"panic").unwrap();
    // The error reply: the connection ends without a reply.
    assert_eq!(victim.recv(&mut reply).unwrap(), None);
    let e = npipe::call(&name, b"panic", Duration::from_secs(5)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");

    other.send(b"after").unwrap();
    other.recv(&mut reply).unwrap().unwrap();
    assert_eq!(reply, b"Response to: after");
    assert_eq!(
        npipe::call(&name, b"fine", Duration::from_secs(5)).unwrap(),
        b"Response to: fine"
    );
    // Counters move just after the reply is written: wait for them, then check both.
    let stats = wait_stats(&server, "three answered", |s| s.completed == 3);
    assert_eq!(stats.failed, 2);
}

#[test]
fn a_handler_can_fail_its_request_without_panicking() {
    let (_w, name) = util::begin("a_handler_can_fail_its_request");
    let server = Server::builder(&name)
        .handler(|r| {
            if r.body() == b"bad" {
                return Response::fail("told to fail");
            }
            echo(r)
        })
        .spawn()
        .unwrap();
    let e = npipe::call(&name, b"bad", Duration::from_secs(5)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("without replying"), "{e}");
    assert_eq!(
        npipe::call(&name, b"good", Duration::from_secs(5)).unwrap(),
        b"Response to: good"
    );
    let stats = wait_stats(&server, "one answered", |s| s.completed == 1);
    assert_eq!(stats.failed, 1);
}

// Half a frame: the Unix wire contract (Windows messages are atomic).
with_both_kinds! {
    #[cfg(unix)]
    half_a_frame_then_silence:
        half_a_frame_then_silence_is_cut_off_by_the_request_deadline,
        half_a_frame_then_silence_is_cut_off_by_the_request_deadline_async
}

#[cfg(unix)]
fn half_a_frame_then_silence(kind: Kind) {
    let (_w, name) = util::begin("half_a_frame_then_silence_is_cut_off");
    // One instance only: without the deadline the staller would block everyone.
    let builder = Server::builder(&name)
        .max_instances(Some(1))
        .pending_instances(1)
        .request_timeout(Some(Duration::from_millis(300)));
    let server = slow_echo(builder, kind, Duration::ZERO).spawn().unwrap();
    let mut staller = raw_client(&name);
    staller.write_all(&100u32.to_le_bytes()).unwrap();
    staller.write_all(b"only ten b").unwrap();
    // The next client waits for the instance (up to 10 s), then is served.
    let mut patient = ConnectOptions::new();
    patient.timeout(Duration::from_secs(10));
    let mut s = patient.connect(&name).unwrap();
    s.send(b"next").unwrap();
    let mut reply = Vec::new();
    s.recv(&mut reply).unwrap().unwrap();
    assert_eq!(reply, b"Response to: next");
    // The staller's connection was closed by the server.
    let mut rest = Vec::new();
    staller.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let stats = server.stats();
    assert_eq!(stats.timed_out, 1);
    assert!(stats.rejected_busy >= 1, "{stats:?}");
}

with_both_kinds! {
    idle_connections_closed:
        idle_connections_are_closed_and_counted,
        idle_connections_are_closed_and_counted_async
}

fn idle_connections_closed(kind: Kind) {
    let (_w, name) = util::begin("idle_connections_are_closed_and_counted");
    let builder = Server::builder(&name).idle_timeout(Some(Duration::from_millis(200)));
    let server = slow_echo(builder, kind, Duration::ZERO).spawn().unwrap();
    let mut idle = npipe::Stream::connect(&name).unwrap();
    let mut reply = Vec::new();
    idle.send(b"one").unwrap();
    idle.recv(&mut reply).unwrap().unwrap();
    // Then silence: the server closes the connection.
    assert_eq!(idle.recv(&mut reply).unwrap(), None);
    let stats = wait_stats(&server, "the idle connection closed", |s| s.active == 0);
    assert_eq!((stats.timed_out, stats.completed), (1, 1));
}

// One client is killed in the middle of a hand-written frame: the Unix wire contract.
#[cfg(unix)]
#[test]
fn clients_killed_mid_request_do_not_disturb_the_server() {
    let (_w, name) = util::begin("clients_killed_mid_request");
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&release);
    let server = Server::builder(&name)
        .handler(move |r| {
            if r.body() == b"slow" {
                while !gate.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(5));
                }
            }
            echo(r)
        })
        .spawn()
        .unwrap();
    // One killed in the middle of sending a frame, one while its handler runs.
    let mut half = child("server-half-frame", &[&name]);
    half.expect_line("sent");
    let mut waiting = child("server-call", &[&name, "slow"]);
    wait_handling(&server, "the slow request in the handler");
    half.kill();
    waiting.kill();
    release.store(true, Ordering::Relaxed);
    let stats = wait_stats(&server, "both connections gone", |s| s.active == 0);
    assert_eq!(
        stats.completed, 0,
        "nobody was there to take the slow reply"
    );
    assert_eq!(
        npipe::call(&name, b"alive?", Duration::from_secs(5)).unwrap(),
        b"Response to: alive?"
    );
}

// Announces a length by hand and measures memory in /proc: Unix.
#[cfg(unix)]
#[test]
fn oversized_announcement_allocates_nothing_and_others_are_served() {
    let _w = Watchdog::start("oversized_announcement_allocates_nothing");
    let mut c = child("server-oversize-memory", &[]);
    let line = c.expect_line("grew ");
    eprintln!("server memory: {line}");
    assert!(c.wait_for(Duration::from_secs(60)).success(), "{line}");
}

// Counts descriptors in /proc: Unix.
#[cfg(unix)]
#[test]
fn no_descriptor_leaks_after_10000_connections() {
    let _w = Watchdog::new("no_descriptor_leaks", Duration::from_secs(120));
    let mut c = child("server-fd-leak", &["10000"]);
    let line = c.expect_line("fds ");
    eprintln!("descriptors: {line}");
    assert!(c.wait_for(Duration::from_secs(100)).success(), "{line}");
}

// Checks the socket file: Unix.
with_both_kinds! {
    #[cfg(unix)]
    shutdown_lets_requests_finish:
        shutdown_lets_requests_in_flight_finish_and_removes_the_pipe,
        shutdown_lets_requests_in_flight_finish_and_removes_the_pipe_async
}

#[cfg(unix)]
fn shutdown_lets_requests_finish(kind: Kind) {
    let (_w, name) = util::begin("shutdown_lets_requests_in_flight_finish");
    const IN_FLIGHT: usize = 12;
    // The handlers hold their requests until released, which the test does only
    // once the idle connection has been closed: closing idle connections must not
    // wait for the requests in flight (nor for the grace period, which would cut
    // them off).
    let release = Arc::new(AtomicBool::new(false));
    let builder = Server::builder(&name).shutdown_grace(Duration::from_secs(30));
    let server = held_echo(builder, kind, &release).spawn().unwrap();
    let path = socket_path(&server);
    assert!(path.exists());
    let mut idle = npipe::Stream::connect(&name).unwrap();
    let clients: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let name = name.clone();
            thread::spawn(move || {
                let request = format!("in flight {i}");
                npipe::call(&name, request.as_bytes(), Duration::from_secs(30))
                    .map(|reply| assert_eq!(reply, format!("Response to: {request}").as_bytes()))
            })
        })
        .collect();
    wait_stats(&server, "every request in the handler", |s| {
        s.instances
            .iter()
            .filter(|i| i.state == InstanceState::Handling)
            .count()
            == IN_FLIGHT
    });
    server.shutdown();
    // The idle connection is closed at once, requests still in flight.
    assert_eq!(idle.recv(&mut Vec::new()).unwrap(), None);
    // The pipe leaves the namespace (at about the same time: wait for it).
    while path.exists() {
        thread::sleep(Duration::from_millis(5));
    }
    let e = npipe::Stream::try_connect(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");
    release.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap().expect("no request in flight is lost");
    }
    let handle = server.handle();
    server.join().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.completed, IN_FLIGHT as u64);
}

with_both_kinds! {
    grace_period_bounds: grace_period_bounds_shutdown, grace_period_bounds_shutdown_async
}

fn grace_period_bounds(kind: Kind) {
    let (_w, name) = util::begin("grace_period_bounds_shutdown");
    // Longer than the watchdog: only the grace period can end it (a sync handler's
    // thread sleeps on, abandoned, until the test process exits).
    let builder = Server::builder(&name).shutdown_grace(Duration::from_millis(100));
    let server = slow_echo(builder, kind, Duration::from_secs(3600))
        .spawn()
        .unwrap();
    let mut stuck = request_in_handler(&server, b"forever");
    server.shutdown();
    server.join().unwrap();
    assert_eq!(stuck.recv(&mut Vec::new()).unwrap(), None);
}

#[test]
fn max_instances_makes_clients_wait_then_pipe_busy() {
    let (_w, name) = util::begin("srv-busy");
    let server = Server::builder(&name)
        .max_instances(Some(2))
        .pending_instances(2)
        .handler(echo)
        .spawn()
        .unwrap();
    let a = npipe::Stream::connect(&name).unwrap();
    let b = npipe::Stream::connect(&name).unwrap();
    wait_stats(&server, "two connections", |s| s.active == 2);
    let mut quick = ConnectOptions::new();
    quick.timeout(Duration::from_millis(300));
    let e = quick.connect(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::PipeBusy, "{e}");
    assert_eq!(server.stats().listening(), 0);
    drop(a);
    let mut c = npipe::Stream::connect(&name).unwrap();
    c.send(b"in").unwrap();
    let mut reply = Vec::new();
    c.recv(&mut reply).unwrap().unwrap();
    assert_eq!(reply, b"Response to: in");
    drop(b);
}

// Half-close, which Windows pipes do not have.
#[cfg(unix)]
#[test]
fn byte_mode_request_ends_at_half_close() {
    let (_w, name) = util::begin("byte_mode_request_ends_at_half_close");
    let _server = Server::builder(&name)
        .options(ListenerOptions::new().mode(Mode::Byte).clone())
        .handler(echo)
        .spawn()
        .unwrap();
    let mut s = raw_client(&name);
    s.write_all(b"all of ").unwrap();
    s.write_all(b"this").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"Response to: all of this");
}

#[test]
fn many_clients_in_one_process_with_a_barrier() {
    let (_w, name) = util::begin("srv-burst");
    let server = Server::builder(&name).handler(echo).spawn().unwrap();
    const CLIENTS: usize = 200;
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (name, start) = (name.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let request = format!("burst {i}");
                let reply =
                    npipe::call(&name, request.as_bytes(), Duration::from_secs(30)).unwrap();
                assert_eq!(reply, format!("Response to: {request}").as_bytes());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let stats = wait_stats(&server, "all closed", |s| s.active == 0);
    assert_eq!(stats.completed, CLIENTS as u64);
}

/// Roles run in child processes (dispatched from `tests.rs`).
pub(crate) mod roles {
    use super::*;

    fn fail(what: impl std::fmt::Display) -> i32 {
        eprintln!("role failed: {what}");
        1
    }

    /// `NAME THREADS REQUESTS`: every thread makes one persistent connection with
    /// REQUESTS requests and one `call`, checking every reply.
    pub(crate) fn clients(args: &[&str]) -> i32 {
        let [name, threads, requests] = args else {
            return fail("usage: NAME THREADS REQUESTS");
        };
        let (Ok(threads), Ok(requests)) = (threads.parse::<usize>(), requests.parse::<usize>())
        else {
            return fail("bad numbers");
        };
        let pid = std::process::id();
        let start = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (name, start) = (name.to_string(), Arc::clone(&start));
                thread::spawn(move || -> Result<usize, String> {
                    start.wait();
                    let mut opts = ConnectOptions::new();
                    opts.timeout(Duration::from_secs(30));
                    let mut s = opts.connect(&name).map_err(|e| e.to_string())?;
                    let mut reply = Vec::new();
                    for r in 0..requests {
                        let request = format!("{pid}/{t}/{r}");
                        s.send(request.as_bytes()).map_err(|e| e.to_string())?;
                        s.recv(&mut reply).map_err(|e| e.to_string())?;
                        if reply != format!("Response to: {request}").as_bytes() {
                            return Err(format!("wrong reply to {request}"));
                        }
                    }
                    drop(s);
                    let request = format!("{pid}/{t}/call");
                    let reply = npipe::call(&name, request.as_bytes(), Duration::from_secs(30))
                        .map_err(|e| e.to_string())?;
                    if reply != format!("Response to: {request}").as_bytes() {
                        return Err(format!("wrong reply to {request}"));
                    }
                    Ok(requests + 1)
                })
            })
            .collect();
        let mut checked = 0;
        for w in workers {
            match w.join() {
                Ok(Ok(n)) => checked += n,
                Ok(Err(e)) => return fail(e),
                Err(_) => return fail("a client thread panicked"),
            }
        }
        say(format!("checked {checked}"));
        0
    }

    /// `NAME`: sends half a frame, says so, and waits to be killed.
    pub(crate) fn half_frame(args: &[&str]) -> i32 {
        let [name] = args else {
            return fail("usage: NAME");
        };
        let mut s = raw_client(name);
        if s.write_all(&1000u32.to_le_bytes()).is_err() || s.write_all(&[7; 500]).is_err() {
            return fail("write");
        }
        say("sent");
        thread::sleep(Duration::from_secs(60));
        0
    }

    /// `NAME REQUEST`: one call (to be killed while it waits).
    pub(crate) fn call(args: &[&str]) -> i32 {
        let [name, request] = args else {
            return fail("usage: NAME REQUEST");
        };
        match npipe::call(name, request.as_bytes(), Duration::from_secs(60)) {
            Ok(_) => 0,
            Err(e) => fail(e),
        }
    }

    fn status_kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Announces 4 GiB - 1 fifty times to a server with the default 16 MiB cap while
    /// other clients are served; the server's own memory must not grow.
    pub(crate) fn oversize_memory(_args: &[&str]) -> i32 {
        let name = unique("srv-oversize");
        let server = match Server::builder(&name).handler(echo).spawn() {
            Ok(server) => server,
            Err(e) => return fail(e),
        };
        // Warm up the runtime's threads and buffers before measuring.
        for _ in 0..50 {
            if npipe::call(&name, b"warm", Duration::from_secs(5)).is_err() {
                return fail("warm-up call");
            }
        }
        let (rss_before, peak_before) = (status_kib("VmRSS:"), status_kib("VmPeak:"));
        let mut hostile = Vec::new();
        for _ in 0..50 {
            let mut s = raw_client(&name);
            if s.write_all(&u32::MAX.to_le_bytes()).is_err() {
                return fail("write");
            }
            hostile.push(s);
            match npipe::call(&name, b"meanwhile", Duration::from_secs(5)) {
                Ok(reply) if reply == b"Response to: meanwhile" => {}
                other => return fail(format!("an honest client was not served: {other:?}")),
            }
        }
        for mut s in hostile {
            let mut rest = Vec::new();
            if s.read_to_end(&mut rest).is_err() || !rest.is_empty() {
                return fail("the hostile connection was not closed without a reply");
            }
        }
        let stats = server.stats();
        let (rss_after, peak_after) = (status_kib("VmRSS:"), status_kib("VmPeak:"));
        let rss_grew = rss_after.saturating_sub(rss_before);
        let peak_grew = peak_after.saturating_sub(peak_before);
        say(format!(
            "grew rss {rss_grew} KiB, peak virtual {peak_grew} KiB, {stats:?}"
        ));
        if rss_before == 0 || peak_before == 0 {
            return fail("no /proc/self/status");
        }
        if stats.rejected_oversize != 50 {
            return fail(format!("rejected_oversize = {}", stats.rejected_oversize));
        }
        // One 4 GiB allocation, even untouched, would show in the peak virtual size.
        if rss_grew > 64 * 1024 || peak_grew > 2 * 1024 * 1024 {
            return fail("the server's memory grew");
        }
        0
    }

    /// `COUNT`: COUNT connections to a server spawned and shut down in this process;
    /// the open descriptors must be the same before and after.
    pub(crate) fn fd_leak(args: &[&str]) -> i32 {
        let Some(Ok(count)) = args.first().map(|c| c.parse::<usize>()) else {
            return fail("usage: COUNT");
        };
        let fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let list = || {
            std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| format!("{:?}", std::fs::read_link(e.path())))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        // A first server brings up what tokio keeps for the whole process (the signal
        // driver's socket pair); only what comes after is counted.
        let warm_up = unique("srv-fds-warm");
        match Server::builder(&warm_up).handler(echo).spawn() {
            Ok(server) => {
                let _ = npipe::call(&warm_up, b"warm", Duration::from_secs(5));
                server.shutdown();
                let _ = server.join();
            }
            Err(e) => return fail(e),
        }
        let listed = list();
        let before = fds();
        let name = unique("srv-fds");
        let server = match Server::builder(&name)
            .worker_threads(2)
            .handler(echo)
            .spawn()
        {
            Ok(server) => server,
            Err(e) => return fail(e),
        };
        let threads = 4;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let name = name.clone();
                thread::spawn(move || {
                    for i in 0..count / threads {
                        let request = format!("{t}/{i}");
                        match npipe::call(&name, request.as_bytes(), Duration::from_secs(10)) {
                            Ok(reply) if reply == format!("Response to: {request}").as_bytes() => {}
                            _ => return false,
                        }
                    }
                    true
                })
            })
            .collect();
        if !workers.into_iter().all(|w| w.join().unwrap_or(false)) {
            return fail("a call failed");
        }
        let stats = wait_stats(&server, "all closed", |s| s.active == 0);
        server.shutdown();
        if let Err(e) = server.join() {
            return fail(e);
        }
        let after = fds();
        say(format!(
            "fds before {before} after {after}, {} connections ({listed:?} -> {:?})",
            stats.accepted,
            list()
        ));
        if stats.accepted != (count / threads * threads) as u64 || before != after || before == 0 {
            return fail("descriptor count changed or connections missing");
        }
        0
    }
}

// Sync-handler connections are served on threads of their own up to a limit (128),
// then as tasks: both kinds at once, persistent, all answered and counted.
#[test]
fn more_persistent_clients_than_dedicated_threads() {
    let (_w, name) = util::begin("srv-overflow");
    const CLIENTS: usize = 150;
    let server = Server::builder(&name)
        .handler(|r| Response::new(format!("{}#{}", r.connection(), r.sequence())))
        .spawn()
        .unwrap();
    let mut clients: Vec<npipe::Stream> = (0..CLIENTS)
        .map(|_| npipe::Stream::connect(&name).unwrap())
        .collect();
    let mut reply = Vec::new();
    let mut connections = std::collections::BTreeSet::new();
    for round in 1..=2u64 {
        for c in &mut clients {
            c.send(b"x").unwrap();
        }
        for c in &mut clients {
            c.recv(&mut reply).unwrap().unwrap();
            let text = String::from_utf8(reply.clone()).unwrap();
            let (connection, sequence) = text.split_once('#').unwrap();
            assert_eq!(sequence, round.to_string(), "{text}");
            connections.insert(connection.to_owned());
        }
    }
    assert_eq!(
        connections.len(),
        CLIENTS,
        "each client has its own connection"
    );
    let stats = wait_stats(&server, "every connection open", |s| {
        s.active == CLIENTS as u64 && s.completed == 2 * CLIENTS as u64
    });
    assert!(
        stats
            .instances
            .iter()
            .all(|i| i.connection.is_none() || i.requests == 2),
        "{stats:?}"
    );
    drop(clients);
    let stats = wait_stats(&server, "every connection closed", |s| s.active == 0);
    assert_eq!(stats.completed, 2 * CLIENTS as u64, "{stats:?}");
    assert_eq!(stats.bytes_in, 2 * CLIENTS as u64 * 5, "{stats:?}");
}

// A handler that overruns the request deadline: the client is told at the
// deadline (its connection closes), not when the handler returns; the handler is
// held until the client has seen that.
with_both_kinds! {
    handler_past_the_deadline:
        a_handler_past_the_deadline_loses_its_client_at_the_deadline,
        a_handler_past_the_deadline_loses_its_client_at_the_deadline_async
}

fn handler_past_the_deadline(kind: Kind) {
    let (_w, name) = util::begin("a_handler_past_the_deadline");
    let release = Arc::new(AtomicBool::new(false));
    let builder = Server::builder(&name).request_timeout(Some(Duration::from_millis(200)));
    let server = held_echo(builder, kind, &release).spawn().unwrap();
    let mut client = npipe::Stream::connect(&name).unwrap();
    client.send(b"slow").unwrap();
    match client.recv(&mut Vec::new()) {
        Ok(None) => {}
        Err(e) if ErrorKind::of(&e) == ErrorKind::Disconnected => {}
        other => panic!("expected the connection closed without a reply, got {other:?}"),
    }
    release.store(true, Ordering::SeqCst);
    let stats = wait_stats(&server, "the connection counted as timed out", |s| {
        s.active == 0 && s.timed_out == 1
    });
    assert_eq!(stats.completed, 0, "{stats:?}");
}

// Dropping `Server::run` stops the server abruptly: connections closed, the pipe
// gone, threads waiting in `accept` (sync handlers on Linux) released.
with_both_kinds! {
    #[cfg(unix)]
    dropping_run: dropping_run_closes_everything, dropping_run_closes_everything_async
}

#[cfg(unix)]
fn dropping_run(kind: Kind) {
    let (_w, name) = util::begin("dropping_run_closes_everything");
    let runtime = crate::util::runtime();
    let server = {
        let _enter = runtime.enter();
        slow_echo(Server::builder(&name), kind, Duration::ZERO)
            .bind()
            .unwrap()
    };
    let path = crate::util::socket_path(&name);
    let task = runtime.spawn(server.run());
    let mut client = npipe::Stream::connect(&name).unwrap();
    let mut reply = Vec::new();
    client.send(b"before").unwrap();
    client.recv(&mut reply).unwrap().unwrap();
    assert_eq!(reply, b"Response to: before");
    task.abort();
    // The connection is closed and the pipe leaves the namespace.
    assert!(matches!(client.recv(&mut reply), Ok(None) | Err(_)));
    while path.exists() {
        thread::sleep(Duration::from_millis(5));
    }
    let e = npipe::Stream::try_connect(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");
    // Nothing is left running: dropping the runtime waits for its blocking
    // threads (a thread still blocked in `accept` would hang here, and the
    // watchdog would fail the test).
    drop(runtime);
}

with_both_kinds! {
    /// Every request that begins is counted once however it ends (`Stats` states the
    /// sum): answered; failed — the handler failed it, its reply was over the cap,
    /// the client was killed in the middle of it, the grace period cut it off; timed
    /// out; oversized. A connection that sends nothing is no request.
    #[cfg(unix)]
    requests_counted:
        every_request_is_counted_once_however_it_ends,
        every_request_is_counted_once_however_it_ends_async
}

#[cfg(unix)]
fn requests_counted(kind: Kind) {
    let (_w, name) = util::begin("every_request_is_counted_once");
    let release = Arc::new(AtomicBool::new(false));
    // What the handler does with a request; `Some(delay)`: answer after it.
    let plan = |body: &[u8]| -> Result<Option<Duration>, Response> {
        match body {
            b"fail" => Err(Response::fail("asked to fail")),
            b"big" => Err(Response::new(vec![7; 2048])),
            b"slow" => Ok(Some(Duration::from_secs(3))),
            _ => Ok(None),
        }
    };
    let mut options = ListenerOptions::new();
    options.max_message_size(1024);
    let builder = Server::builder(&name)
        .options(options)
        // The grace period ends long before a request's deadline: the request
        // in flight at shutdown is cut off by the one, not the other.
        .request_timeout(Some(Duration::from_secs(2)))
        .shutdown_grace(Duration::from_millis(100));
    let builder = match kind {
        Kind::Sync => {
            let release = Arc::clone(&release);
            builder.handler(move |r: Request| {
                if r.body() == b"hang" {
                    while !release.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                match plan(r.body()) {
                    Err(response) => response,
                    Ok(delay) => {
                        thread::sleep(delay.unwrap_or_default());
                        Response::new(r.into_body())
                    }
                }
            })
        }
        Kind::Async => builder.async_handler(move |r: Request| async move {
            if r.body() == b"hang" {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            match plan(r.body()) {
                Err(response) => response,
                Ok(delay) => {
                    tokio::time::sleep(delay.unwrap_or_default()).await;
                    Response::new(r.into_body())
                }
            }
        }),
    };
    let server = builder.spawn().unwrap();
    let call = |request: &[u8]| npipe::call(&name, request, Duration::from_secs(10));
    assert_eq!(call(b"ok").unwrap(), b"ok");
    for request in [&b"fail"[..], b"big", b"slow"] {
        let e = call(request).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
    }
    // A client killed in the middle of sending a frame.
    let mut half = child("server-half-frame", &[&name]);
    half.expect_line("sent");
    wait_stats(&server, "the half frame", |s| s.requests == 5);
    half.kill();
    // A length over the cap; a client that connects and leaves without a word.
    let mut oversized = raw_client(&name);
    oversized.write_all(&5000u32.to_le_bytes()).unwrap();
    drop(raw_client(&name));
    let mut rest = Vec::new();
    let _ = oversized.read_to_end(&mut rest);
    let stats = wait_stats(&server, "every connection closed", |s| s.active == 0);
    assert_eq!(stats.requests, 6, "{stats:?}");
    // A request the end of the grace period cuts off.
    let mut stuck = request_in_handler(&server, b"hang");
    let handle = server.handle();
    server.shutdown();
    server.join().unwrap();
    assert_eq!(stuck.recv(&mut Vec::new()).unwrap(), None);
    // A sync handler's thread runs on until it returns, then counts its end.
    release.store(true, Ordering::SeqCst);
    let stats = loop {
        let stats = handle.stats();
        if stats.active == 0 {
            break stats;
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        (
            stats.requests,
            stats.completed,
            stats.failed,
            stats.requests_timed_out,
            stats.rejected_oversize
        ),
        (7, 1, 4, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.timed_out, 1, "{stats:?}");
}

// ---------------------------------------------------------------------------------
// Request cancellation: a handler learns when its reply is no longer wanted

/// The ways a handler runs, for the cancellation tests: a sync handler on a thread
/// serving its connection (message mode, Unix), a sync handler handed to the
/// blocking pool by the connection's task (byte mode), an async handler whose
/// work goes on in a task of its own.
#[derive(Debug, Clone, Copy)]
enum Runs {
    SyncDedicated,
    SyncPerRequest,
    Async,
}

/// What a reporting handler tells of its request: its deadline, and whether it
/// was cancelled within 30 s.
type Report = (Option<std::time::Instant>, bool);

/// A server whose handler reports each request (it never replies first), and the
/// reports.
fn reporting_server(
    builder: npipe::server::ServerBuilder,
    runs: Runs,
) -> (SpawnedServer, std::sync::mpsc::Receiver<Report>) {
    let (reports, received) = std::sync::mpsc::channel();
    let builder = match runs {
        Runs::SyncPerRequest => {
            let mut opts = ListenerOptions::new();
            opts.mode(Mode::Byte);
            builder.options(opts)
        }
        _ => builder,
    };
    let builder = match runs {
        Runs::SyncDedicated | Runs::SyncPerRequest => builder.handler(move |r: Request| {
            // Blocks without polling until the server cancels the request.
            let cancelled = r.cancellation().wait_timeout(Duration::from_secs(30));
            let _ = reports.send((r.deadline(), cancelled));
            echo(r)
        }),
        Runs::Async => builder.async_handler(move |r: Request| {
            let reports = reports.clone();
            async move {
                // Work of its own outlives the handler, which the server drops
                // (a thread: a task of the server's runtime would not outlive a
                // shutdown past the grace period, which ends the runtime).
                let (deadline, cancellation) = (r.deadline(), r.cancellation());
                thread::spawn(move || {
                    let cancelled = cancellation.wait_timeout(Duration::from_secs(30));
                    let _ = reports.send((deadline, cancelled));
                });
                std::future::pending::<Response>().await
            }
        }),
    };
    (builder.spawn().unwrap(), received)
}

/// Sends one request in the mode of `runs` and expects no reply.
fn call_without_reply(name: &str, runs: Runs) {
    match runs {
        Runs::SyncPerRequest => {
            let mut s = raw_client(name);
            s.write_all(b"work").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            assert!(reply.is_empty(), "no reply expected, got {reply:?}");
        }
        _ => {
            let e = npipe::call(name, b"work", Duration::from_secs(20)).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
        }
    }
}

/// A request whose deadline passes while its handler works is cancelled, and the
/// handler (or the work it left running) learns it, however the handler runs; the
/// request tells its deadline.
#[cfg(unix)]
#[test]
fn a_request_past_its_deadline_is_cancelled() {
    let _w = Watchdog::start("a_request_past_its_deadline_is_cancelled");
    for runs in [Runs::SyncDedicated, Runs::SyncPerRequest, Runs::Async] {
        let name = unique("srv-cancel");
        let builder = Server::builder(&name).request_timeout(Some(Duration::from_millis(300)));
        let (server, rx) = reporting_server(builder, runs);
        call_without_reply(&name, runs);
        let (deadline, cancelled) = rx.recv_timeout(Duration::from_secs(40)).unwrap();
        assert!(deadline.is_some(), "{runs:?}: a request deadline was set");
        assert!(cancelled, "{runs:?}: the handler was told");
        let stats = wait_stats(&server, "the request counted", |s| s.active == 0);
        assert_eq!(stats.timed_out, 1, "{runs:?}: {stats:?}");
    }
}

/// Shutdown past its grace period cancels the requests still in their handler,
/// and `join` returns without waiting for them.
#[cfg(unix)]
#[test]
fn shutdown_past_the_grace_period_cancels_running_requests() {
    let _w = Watchdog::start("shutdown_past_the_grace_period_cancels_running_requests");
    for runs in [Runs::SyncDedicated, Runs::SyncPerRequest, Runs::Async] {
        let name = unique("srv-cancel-grace");
        let builder = Server::builder(&name)
            .request_timeout(None)
            .shutdown_grace(Duration::from_millis(200));
        let (server, rx) = reporting_server(builder, runs);
        let client = {
            let name = name.clone();
            thread::spawn(move || call_without_reply(&name, runs))
        };
        wait_handling(&server, "the request in its handler");
        server.shutdown();
        server.join().unwrap();
        let (deadline, cancelled) = rx.recv_timeout(Duration::from_secs(40)).unwrap();
        assert!(deadline.is_none(), "{runs:?}: no request deadline was set");
        assert!(cancelled, "{runs:?}: the handler was told");
        client.join().unwrap();
    }
}

/// A client that closes its connection while a sync handler on a thread of its
/// own works on its request cancels the request (no reply can reach it), with no
/// request deadline to end it otherwise.
#[cfg(unix)]
#[test]
fn a_client_gone_cancels_its_request() {
    let (_w, name) = util::begin("a_client_gone_cancels_its_request");
    let builder = Server::builder(&name).request_timeout(None);
    let (server, rx) = reporting_server(builder, Runs::SyncDedicated);
    let client = request_in_handler(&server, b"work");
    drop(client);
    let (_, cancelled) = rx.recv_timeout(Duration::from_secs(40)).unwrap();
    assert!(cancelled, "the handler was told");
}

/// A request answered in full is never cancelled, even once its connection is
/// gone; its deadline is ahead of it while the handler runs.
#[test]
fn an_answered_request_is_not_cancelled() {
    let (_w, name) = util::begin("an_answered_request_is_not_cancelled");
    let (tx, rx) = std::sync::mpsc::channel();
    let server = Server::builder(&name)
        .request_timeout(Some(Duration::from_secs(30)))
        .handler(move |r: Request| {
            let ahead = r.deadline().is_some_and(|d| d > std::time::Instant::now());
            let _ = tx.send((ahead, r.cancellation()));
            echo(r)
        })
        .spawn()
        .unwrap();
    let reply = npipe::call(&name, b"hi", Duration::from_secs(10)).unwrap();
    assert_eq!(reply, b"Response to: hi");
    let (ahead, cancellation) = rx.recv().unwrap();
    assert!(ahead, "the deadline is ahead while the handler runs");
    wait_stats(&server, "the connection closed", |s| s.active == 0);
    assert!(!cancellation.is_cancelled());
    assert!(!cancellation.wait_timeout(Duration::from_millis(100)));
    server.shutdown();
    server.join().unwrap();
    assert!(!cancellation.is_cancelled(), "not even by the shutdown");
}

/// A client that reads its large reply slowly — each read well within the request
/// deadline, the whole 8 MiB in about ten seconds — is cut off at the deadline,
/// however the handler runs: the deadline bounds the whole write. A connection
/// served on a thread of its own (sync handler) used to bound each wait for room
/// in the socket's buffer on its own, and the client got the whole reply.
#[cfg(unix)]
#[test]
fn a_client_that_reads_its_reply_slowly_is_cut_off_at_the_deadline() {
    let _w = Watchdog::start("a_client_that_reads_its_reply_slowly");
    const REPLY: usize = 8 << 20;
    for kind in [Kind::Sync, Kind::Async] {
        let name = unique("srv-slow-reader");
        let builder = Server::builder(&name).request_timeout(Some(Duration::from_secs(1)));
        let server = match kind {
            Kind::Sync => builder.handler(|_| Response::new(vec![b'r'; REPLY])),
            Kind::Async => builder.async_handler(|_| async { Response::new(vec![b'r'; REPLY]) }),
        }
        .spawn()
        .unwrap();
        let mut client = raw_client(&name);
        client.write_all(b"\x03\0\0\0big").unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            thread::sleep(Duration::from_millis(200));
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(
            got < 4 + REPLY,
            "{kind:?}: all {got} bytes of the reply arrived"
        );
        let stats = wait_stats(&server, "the slow reader cut off", |s| s.active == 0);
        assert_eq!(
            (stats.timed_out, stats.completed),
            (1, 0),
            "{kind:?}: {stats:?}"
        );
    }
}
