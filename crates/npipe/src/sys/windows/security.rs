//! The pipe's security descriptor, built from an SDDL string.
//!
//! - [`Access::Owner`]: `D:P(A;;GA;;;<user>)(A;;GA;;;SY)` — only the creating user
//!   and `SYSTEM`. A protected DACL, so nothing is inherited.
//! - [`Access::Group`]: also the creating user's primary group, read/write.
//! - [`Access::Everyone`]: also authenticated users (`AU`), read/write.
//!
//! "Read/write" is `FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES`
//! (`0x12018b`): what a client needs to connect, read, write and set the read mode,
//! and deliberately *not* `FILE_APPEND_DATA`, which on a pipe is
//! `FILE_CREATE_PIPE_INSTANCE`: other users must not be able to add instances to
//! our pipe and catch our clients.
//!
//! Clients on other machines, when the listener accepts them
//! (`reject_remote_clients(false)`), meet the same DACL as the account they logged
//! on to this machine as over SMB: nothing is added for them (no `NETWORK` entry).
//! Nor is anything denied to them when they are refused: `PIPE_REJECT_REMOTE_CLIENTS`
//! refuses them whatever the DACL, and a deny entry for `NETWORK` (S-1-5-2) would
//! also refuse local processes running under a network logon (a PowerShell
//! remoting session, say).

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{LocalFree, ERROR_INSUFFICIENT_BUFFER, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenPrimaryGroup, TokenUser, PSID, SECURITY_ATTRIBUTES,
    TOKEN_INFORMATION_CLASS, TOKEN_PRIMARY_GROUP, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::wide;
use crate::options::Access;

/// Rights granted to the other users admitted by the access policy.
const CLIENT_RIGHTS: &str = "0x12018b";

/// A self-relative security descriptor allocated by the system (`LocalFree`d on drop).
#[derive(Debug)]
pub(crate) struct SecurityDescriptor {
    ptr: *mut c_void,
    sddl: String,
}

// SAFETY: the descriptor is immutable after creation and only read by the system
// (as `lpSecurityDescriptor`), from any thread; it is freed once, on drop.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above: shared references only ever read it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    pub(crate) fn for_access(access: Access) -> io::Result<SecurityDescriptor> {
        let user = token_sid(TokenUser)?;
        let mut sddl = format!("D:P(A;;GA;;;{user})(A;;GA;;;SY)");
        match access {
            Access::Owner => {}
            Access::Group => {
                let group = token_sid(TokenPrimaryGroup)?;
                sddl.push_str(&format!("(A;;{CLIENT_RIGHTS};;;{group})"));
            }
            Access::Everyone => sddl.push_str(&format!("(A;;{CLIENT_RIGHTS};;;AU)")),
        }
        let text = wide(&sddl);
        let mut ptr = ptr::null_mut();
        // SAFETY: `text` is a NUL-terminated UTF-16 string that outlives the call;
        // on success the system allocates the descriptor with LocalAlloc and we own it.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut ptr,
                ptr::null_mut(),
            )
        };
        if ok == 0 || ptr.is_null() {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot build the pipe's security descriptor {sddl}: {e}"),
            ));
        }
        Ok(SecurityDescriptor { ptr, sddl })
    }

    /// The SDDL it was built from (for diagnostics).
    pub(crate) fn sddl(&self) -> &str {
        &self.sddl
    }

    /// Attributes pointing at this descriptor; valid while `self` lives.
    pub(crate) fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.ptr,
            bInheritHandle: 0,
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW
        // and is freed exactly once, here.
        unsafe {
            LocalFree(self.ptr);
        }
    }
}

/// The string form (`S-1-5-...`) of the current process token's user or primary group.
fn token_sid(class: TOKEN_INFORMATION_CLASS) -> io::Result<String> {
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing;
    // OpenProcessToken writes a new token handle that `OwnedHandle` then owns.
    let token = unsafe {
        let mut token: HANDLE = ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedHandle::from_raw_handle(token)
    };
    // u64 elements: the structure holds pointers and must be aligned for them.
    let mut buf: Vec<u64> = vec![0; 16];
    loop {
        let bytes = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        let mut needed = 0u32;
        // SAFETY: `buf` is writable for `bytes` bytes; the token handle is live.
        let ok = unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                class,
                buf.as_mut_ptr().cast(),
                bytes,
                &mut needed,
            )
        };
        if ok != 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_INSUFFICIENT_BUFFER as i32) || needed <= bytes {
            return Err(e);
        }
        buf = vec![0; (needed as usize).div_ceil(8)];
    }
    let sid: PSID = if class == TokenUser {
        // SAFETY: GetTokenInformation(TokenUser) filled `buf` with a TOKEN_USER whose
        // SID points into the same buffer, which is aligned for it.
        unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid }
    } else {
        // SAFETY: as above, for TokenPrimaryGroup and TOKEN_PRIMARY_GROUP.
        unsafe { (*buf.as_ptr().cast::<TOKEN_PRIMARY_GROUP>()).PrimaryGroup }
    };
    let mut text = ptr::null_mut();
    // SAFETY: `sid` points into `buf`, alive for this call; on success the system
    // allocates a NUL-terminated string with LocalAlloc, freed below.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `text` is a NUL-terminated UTF-16 string from the system: count its
    // length, copy it, then free it exactly once.
    let sid = unsafe {
        let mut len = 0;
        while *text.add(len) != 0 {
            len += 1;
        }
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        sid
    };
    Ok(sid)
}
