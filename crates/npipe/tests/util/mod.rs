//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub(crate) mod drive;
pub(crate) mod ends;
pub(crate) mod names;
#[cfg(unix)]
pub(crate) mod peers;
pub(crate) mod watchdog;

#[cfg_attr(windows, allow(unused_imports))]
pub(crate) use drive::{child, Child};
pub(crate) use ends::{pair, pair_with, serve_one};
pub(crate) use names::unique;
#[cfg(unix)]
pub(crate) use names::{beside, socket_path};
#[cfg(unix)]
pub(crate) use peers::{as_user, nobody, nobody_in, running_as_root};
pub(crate) use watchdog::Watchdog;

/// The opening of a test: starts its watchdog (named `label`, the default
/// limit) and makes a pipe name unique to it.
pub(crate) fn begin(label: &str) -> (Watchdog, String) {
    (Watchdog::start(label), unique(label))
}

/// A tokio runtime of two worker threads, timers and I/O enabled.
#[cfg(feature = "tokio")]
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls `server`'s stats until `ready` holds, saying every 2 s what it waits
/// for (the watchdog bounds the wait).
#[cfg(feature = "tokio")]
pub(crate) fn wait_stats(
    server: &npipe::SpawnedServer,
    what: &str,
    ready: impl Fn(&npipe::Stats) -> bool,
) -> npipe::Stats {
    let mut last = std::time::Instant::now();
    loop {
        let stats = server.stats();
        if ready(&stats) {
            return stats;
        }
        if last.elapsed() > std::time::Duration::from_secs(2) {
            eprintln!("waiting for {what}: {stats:?}");
            last = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether tests run under CI (`CI=true`), where no test may skip itself.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The kind of the error `result` must be.
pub(crate) fn kind<T: std::fmt::Debug>(result: std::io::Result<T>) -> npipe::ErrorKind {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => npipe::ErrorKind::of(&e),
    }
}

/// `payload` framed as on the Unix wire: its length (4 bytes, little-endian),
/// then itself.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut wire = (payload.len() as u32).to_le_bytes().to_vec();
    wire.extend_from_slice(payload);
    wire
}

/// Answers every message on `stream` with `prefix` and the message, until the
/// peer closes.
pub(crate) fn answer(stream: &mut npipe::Stream, prefix: &[u8]) {
    let mut request = Vec::new();
    while let Ok(Some(_)) = stream.recv(&mut request) {
        let mut reply = prefix.to_vec();
        reply.extend_from_slice(&request);
        if stream.send(&reply).is_err() {
            return;
        }
    }
}

/// Skips the calling test with a reason, or fails it under CI.
#[macro_export]
macro_rules! skip_or_fail {
    ($($why:tt)*) => {{
        let why = format!($($why)*);
        if $crate::util::under_ci() {
            panic!("cannot run under CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }};
}

/// Skips the calling test (or fails it under CI) unless it runs as root, who
/// alone may run a peer as another user: `why` says what for.
#[cfg(unix)]
#[macro_export]
macro_rules! require_root {
    ($why:literal) => {
        if !$crate::util::running_as_root() {
            $crate::skip_or_fail!($why);
        }
    };
}
