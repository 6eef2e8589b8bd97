//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub(crate) mod drive;
pub(crate) mod names;
#[cfg(unix)]
pub(crate) mod peers;
pub(crate) mod watchdog;

#[cfg_attr(windows, allow(unused_imports))]
pub(crate) use drive::{child, Child};
pub(crate) use names::unique;
#[cfg(unix)]
pub(crate) use peers::{as_user, nobody, nobody_in, running_as_root};
pub(crate) use watchdog::Watchdog;

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
