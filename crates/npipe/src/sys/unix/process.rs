//! What the OS tells about a process or a user, for `inspect`: Linux `/proc` and
//! the user database.

/// The name of process `pid` (`/proc/PID/comm`), if the OS tells.
pub(crate) fn process_name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let comm = comm.trim_end();
    (!comm.is_empty()).then(|| comm.to_owned())
}

/// The user running process `pid` (the owner of `/proc/PID`), if the OS tells.
pub(crate) fn process_uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// The login name of user `uid`, if the user database has it.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}
