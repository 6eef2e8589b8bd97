//! Peer credentials: `SO_PEERCRED` on Linux, `LOCAL_PEERCRED` + `LOCAL_PEERPID` on macOS.

use std::io;
use std::os::fd::AsFd;
use std::sync::OnceLock;

use crate::peer::PeerCredentials;

/// The peer's credentials from `cache`, asked of `sock` (`SO_PEERCRED`) the first
/// time only: they are fixed when the connection is made.
pub(crate) fn cached_peer_credentials(
    cache: &OnceLock<PeerCredentials>,
    sock: &impl AsFd,
) -> io::Result<PeerCredentials> {
    if let Some(peer) = cache.get() {
        return Ok(*peer);
    }
    let peer = peer_credentials(sock)?;
    Ok(*cache.get_or_init(|| peer))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_credentials<F: AsFd>(fd: &F) -> io::Result<PeerCredentials> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials as PeerCred};
    let cred = getsockopt(fd, PeerCred)?;
    let pid = u32::try_from(cred.pid()).ok().filter(|pid| *pid != 0);
    Ok(PeerCredentials::new(
        pid,
        Some(cred.uid()),
        Some(cred.gid()),
    ))
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
pub(crate) fn peer_credentials<F: AsFd>(fd: &F) -> io::Result<PeerCredentials> {
    use nix::sys::socket::{getsockopt, sockopt};
    let cred = getsockopt(fd, sockopt::LocalPeerCred)?;
    let pid = getsockopt(fd, sockopt::LocalPeerPid)
        .ok()
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|pid| *pid != 0);
    let gid = cred.groups().first().copied();
    Ok(PeerCredentials::new(pid, Some(cred.uid()), gid))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
pub(crate) fn peer_credentials<F: AsFd>(fd: &F) -> io::Result<PeerCredentials> {
    let (uid, gid) = nix::unistd::getpeereid(fd.as_fd())?;
    Ok(PeerCredentials::new(
        None,
        Some(uid.as_raw()),
        Some(gid.as_raw()),
    ))
}

/// Whether process `pid` has `gid` among its supplementary groups (Linux `/proc`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn in_supplementary_group(pid: u32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| {
            groups
                .split_whitespace()
                .any(|g| g.parse::<u32>() == Ok(gid))
        })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn in_supplementary_group(_pid: u32, _gid: u32) -> bool {
    false
}
