//! Unique pipe names, so tests never collide with each other or with earlier runs.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A pipe name unique to this process and call: `t<pid>-<n>-<label>`.
pub(crate) fn unique(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}-{n}-{label}", std::process::id())
}

/// The socket file of pipe `name`, if it has one (Unix names that are not abstract).
#[cfg(unix)]
pub(crate) fn socket_file(name: &str) -> Option<std::path::PathBuf> {
    match npipe::PipeName::new(name).ok()?.address().ok()? {
        npipe::Address::Path(path) => Some(path),
        _ => None,
    }
}

/// The socket file of pipe `name`, which must have one.
#[cfg(unix)]
pub(crate) fn socket_path(name: &str) -> std::path::PathBuf {
    socket_file(name).unwrap_or_else(|| panic!("{name:?} has no socket path"))
}

/// The file `.<socket file name>.<suffix>` beside `socket` (`lock`: who owns the
/// name; `info`: the server's record).
#[cfg(unix)]
pub(crate) fn beside(socket: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let file = socket.file_name().unwrap_or_default().to_string_lossy();
    socket.with_file_name(format!(".{file}.{suffix}"))
}
