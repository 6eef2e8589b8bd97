//! Unique pipe names, so tests never collide with each other or with earlier runs.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A pipe name unique to this process and call: `t<pid>-<n>-<label>`.
pub(crate) fn unique(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}-{n}-{label}", std::process::id())
}
