//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub(crate) mod drive;
pub(crate) mod names;
pub(crate) mod watchdog;

#[cfg_attr(windows, allow(unused_imports))]
pub(crate) use drive::{child, Child};
pub(crate) use names::unique;
pub(crate) use watchdog::Watchdog;

/// Whether tests run under CI (`CI=true`), where no test may skip itself.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
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
