//! Peers of another user: roles run through `setpriv` as `nobody` (or any uid),
//! which only root may do.

use std::path::Path;
use std::process::{Command, Stdio};

use super::drive::{command, spawn, Child};

/// Whether this process may run peers as another user.
pub(crate) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a role as another user: `setpriv --reuid UID --regid GID` with the given
/// supplementary groups (none: `--clear-groups`).
pub(crate) fn as_user(
    uid: u32,
    gid: u32,
    groups: Option<&str>,
    role: &str,
    args: &[&str],
) -> Child {
    spawn(setpriv(uid, gid, groups, command(role, args)))
}

/// Runs a role as user `nobody`.
pub(crate) fn nobody(role: &str, args: &[&str]) -> Child {
    as_user(65534, 65534, None, role, args)
}

/// Runs a role as user `nobody` with `NPIPE_DIR` set to `dir`.
pub(crate) fn nobody_in(dir: &Path, role: &str, args: &[&str]) -> Child {
    let mut inner = command(role, args);
    inner.env("NPIPE_DIR", dir);
    spawn(setpriv(65534, 65534, None, inner))
}

/// `inner` wrapped in `setpriv`, its environment kept.
fn setpriv(uid: u32, gid: u32, groups: Option<&str>, inner: Command) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    match groups {
        Some(groups) => cmd.arg(format!("--groups={groups}")),
        None => cmd.arg("--clear-groups"),
    };
    cmd.arg("--")
        .arg(inner.get_program())
        .args(inner.get_args())
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

/// What a Python script printed (its exit checked), trimmed of the final newline.
pub(crate) fn python(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}
