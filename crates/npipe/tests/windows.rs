//! Windows-only behaviour: interoperability with plain Win32 pipe programs (native
//! messages, no length prefix), flushing on disconnect, the pipe's DACL, remote
//! names (`\\HOST\pipe\NAME`, opened through SMB), and — in `real_windows` — what
//! Wine does not enforce or cannot do.

use std::io::{Read, Write};
use std::os::windows::io::AsRawHandle;
use std::ptr;
use std::thread;
use std::time::{Duration, Instant};

use npipe::{Access, ConnectOptions, ErrorKind, Listener, ListenerOptions, Mode, Stream};
use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, OPEN_EXISTING, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, SetNamedPipeHandleState, PIPE_READMODE_MESSAGE,
    PIPE_TYPE_MESSAGE, PIPE_WAIT,
};

use crate::util::{self, unique, Watchdog};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn path(name: &str) -> String {
    format!(r"\\.\pipe\{name}")
}

/// Whether this process runs under Wine (ntdll exports `wine_get_version`).
pub(crate) fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll = wide("ntdll.dll");
    // SAFETY: NUL-terminated strings; ntdll is always loaded; nothing is called.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// A raw Win32 message-mode client handle (what any Windows program would open).
struct RawClient(windows_sys::Win32::Foundation::HANDLE);

impl RawClient {
    fn open(name: &str) -> RawClient {
        let p = wide(&path(name));
        // SAFETY: NUL-terminated path; the handle is closed in Drop.
        unsafe {
            let h = CreateFileW(
                p.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                ptr::null(),
                OPEN_EXISTING,
                0,
                ptr::null_mut(),
            );
            assert_ne!(
                h,
                INVALID_HANDLE_VALUE,
                "{}",
                std::io::Error::last_os_error()
            );
            let mode = PIPE_READMODE_MESSAGE;
            assert_ne!(
                SetNamedPipeHandleState(h, &mode, ptr::null(), ptr::null()),
                0,
                "{}",
                std::io::Error::last_os_error()
            );
            RawClient(h)
        }
    }

    fn write(&self, data: &[u8]) {
        let mut n = 0;
        // SAFETY: synchronous handle; `data` outlives the call.
        let ok = unsafe {
            WriteFile(
                self.0,
                data.as_ptr(),
                data.len() as u32,
                &mut n,
                ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        assert_eq!(n as usize, data.len());
    }

    fn read(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        // SAFETY: synchronous handle; `buf` outlives the call.
        let ok = unsafe {
            ReadFile(
                self.0,
                buf.as_mut_ptr(),
                buf.len() as u32,
                &mut n,
                ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
        buf.truncate(n as usize);
        buf
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        // SAFETY: the handle is owned by this value.
        unsafe { CloseHandle(self.0) };
    }
}

#[test]
fn messages_are_native_with_no_length_prefix() {
    let (_w, name) = util::begin("native");
    let listener = Listener::bind(&name).unwrap();
    let raw = RawClient::open(&name);
    let mut server = listener.accept().unwrap();
    // What a plain Win32 client writes arrives as exactly that message...
    raw.write(b"hello");
    raw.write(b"");
    raw.write(b"world!");
    let mut buf = Vec::new();
    assert_eq!(server.recv(&mut buf).unwrap(), Some(5));
    assert_eq!(buf, b"hello");
    assert_eq!(server.recv(&mut buf).unwrap(), Some(0));
    assert_eq!(server.recv(&mut buf).unwrap(), Some(6));
    assert_eq!(buf, b"world!");
    // ...and what npipe sends arrives as exactly the payload: nothing added.
    server.send(b"reply").unwrap();
    assert_eq!(raw.read(), b"reply");
    server.send(b"").unwrap();
    assert_eq!(raw.read(), b"");
}

#[test]
fn npipe_clients_talk_to_a_plain_win32_server() {
    let (_w, name) = util::begin("plainsrv");
    let p = wide(&path(&name));
    // SAFETY: NUL-terminated path, default security; closed below.
    let h = unsafe {
        CreateNamedPipeW(
            p.as_ptr(),
            PIPE_ACCESS_DUPLEX,
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
            1,
            4096,
            4096,
            0,
            ptr::null(),
        )
    };
    assert_ne!(h, INVALID_HANDLE_VALUE);
    let raw = h as usize;
    let server = thread::spawn(move || {
        let h = raw as windows_sys::Win32::Foundation::HANDLE;
        // SAFETY: synchronous server handle owned by this test; buffers outlive calls.
        unsafe {
            ConnectNamedPipe(h, ptr::null_mut());
            let mut buf = [0u8; 256];
            let mut n = 0;
            assert_ne!(
                ReadFile(h, buf.as_mut_ptr(), 256, &mut n, ptr::null_mut()),
                0
            );
            let mut reply = b"Response to: ".to_vec();
            reply.extend_from_slice(&buf[..n as usize]);
            WriteFile(
                h,
                reply.as_ptr(),
                reply.len() as u32,
                &mut n,
                ptr::null_mut(),
            );
            // Give the client time to read before the handle goes.
            thread::sleep(Duration::from_millis(300));
            CloseHandle(h);
        }
    });
    let reply = npipe::call(&name, b"ping", Duration::from_secs(5)).unwrap();
    assert_eq!(reply, b"Response to: ping");
    server.join().unwrap();
}

#[test]
fn a_reply_written_before_the_server_end_drops_is_delivered() {
    let (_w, name) = util::begin("lastwords");
    let (_listener, mut client, mut server) = util::pair(&name);
    server.send(b"one").unwrap();
    server.send(b"two").unwrap();
    drop(server);
    let mut buf = Vec::new();
    assert_eq!(client.recv(&mut buf).unwrap(), Some(3));
    assert_eq!(client.recv(&mut buf).unwrap(), Some(3));
    assert_eq!(buf, b"two");
    assert_eq!(client.recv(&mut buf).unwrap(), None);
}

#[test]
fn disconnect_flushes_before_disconnecting() {
    let (_w, name) = util::begin("flush");
    let (_listener, mut client, mut server) = util::pair(&name);
    let writer = thread::spawn(move || {
        server.send(&vec![9u8; 100_000]).unwrap();
        // Blocks in FlushFileBuffers until the client has read the message.
        let start = Instant::now();
        server.disconnect().unwrap();
        start.elapsed()
    });
    thread::sleep(Duration::from_millis(300));
    let mut buf = Vec::new();
    assert_eq!(client.recv(&mut buf).unwrap(), Some(100_000));
    let waited = writer.join().unwrap();
    assert!(
        waited >= Duration::from_millis(200),
        "disconnect did not wait: {waited:?}"
    );
    assert_eq!(client.recv(&mut buf).unwrap(), None);
}

#[test]
fn a_message_client_of_a_byte_pipe_is_told_to_use_byte_mode() {
    let (_w, name) = util::begin("bytepipe");
    let listener = ListenerOptions::new()
        .mode(Mode::Byte)
        .create(&name)
        .unwrap();
    let e = Stream::connect(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidData, "{e}");
    assert!(e.to_string().contains("Mode::Byte"), "{e}");
    let mut client = ConnectOptions::new()
        .mode(Mode::Byte)
        .connect(&name)
        .unwrap();
    client.write_all(b"bytes").unwrap();
    // The refused message-mode client may show up as a connection that has already
    // ended (unless it was gone before the server saw it); the byte client follows.
    let mut got = [0u8; 5];
    for _ in 0..2 {
        let mut server = listener.accept().unwrap();
        if server.read_exact(&mut got).is_ok() {
            break;
        }
    }
    assert_eq!(&got, b"bytes");
}

#[test]
fn a_transaction_reply_larger_than_the_first_read_is_whole() {
    let (_w, name) = util::begin("bigcall");
    let listener = Listener::bind(&name).unwrap();
    let server = util::serve_one(listener, move |mut stream| {
        let mut buf = Vec::new();
        stream.recv(&mut buf).unwrap();
        stream.send(&vec![b'x'; 200_000]).unwrap();
    });
    let reply = npipe::call(&name, b"big please", Duration::from_secs(5)).unwrap();
    assert_eq!(reply.len(), 200_000);
    server.join().unwrap();
}

/// `Stream::set_deadline` bounds a whole operation of many `ReadFile`s: a server
/// that sends twelve pieces 0.9 s apart, each within the read timeout, cannot
/// stretch `read_to_end` past the deadline.
#[test]
fn a_deadline_bounds_reads_however_the_bytes_trickle() {
    let (_w, name) = util::begin("deadline");
    let listener = ListenerOptions::new()
        .mode(Mode::Byte)
        .create(&name)
        .unwrap();
    let server = util::serve_one(listener, move |mut stream| {
        for piece in b"twelve bytes".chunks(1) {
            if stream.write_all(piece).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(900));
        }
    });
    let mut client = ConnectOptions::new()
        .mode(Mode::Byte)
        .connect(&name)
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.set_deadline(Some(Instant::now() + Duration::from_secs(2)));
    let mut got = Vec::new();
    let e = client.read_to_end(&mut got).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout, "{e}");
    assert!(got.len() < 12, "the deadline ended the read: {got:?}");
    drop(client);
    server.join().unwrap();
}

/// The pipe's DACL as SDDL, read through a client handle.
fn dacl_of(name: &str) -> String {
    let client = Stream::connect(name).unwrap();
    let mut sd = ptr::null_mut();
    // SAFETY: the client handle is live (GENERIC_READ includes READ_CONTROL); the
    // descriptor and the string are freed with LocalFree.
    unsafe {
        let rc = GetSecurityInfo(
            client.as_raw_handle(),
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut sd,
        );
        assert_eq!(
            rc,
            0,
            "GetSecurityInfo: {}",
            std::io::Error::from_raw_os_error(rc as i32)
        );
        let mut text = ptr::null_mut();
        let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        );
        assert_ne!(ok, 0);
        let mut len = 0;
        while *text.add(len) != 0 {
            len += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        LocalFree(sd);
        s
    }
}

#[test]
fn the_dacl_admits_only_the_owner_and_system_by_default() {
    let (_w, name) = util::begin("daclown");
    let _listener = Listener::bind(&name).unwrap();
    let dacl = dacl_of(&name);
    assert!(dacl.starts_with("D:P"), "not protected: {dacl}");
    assert!(dacl.contains(";;;SY)"), "no SYSTEM entry: {dacl}");
    let aces = dacl.matches("(A;").count();
    assert_eq!(aces, 2, "expected exactly owner and SYSTEM: {dacl}");
    assert!(
        !dacl.contains(";;;AU)") && !dacl.contains(";;;WD)"),
        "{dacl}"
    );
}

#[test]
fn access_everyone_admits_authenticated_users_without_instance_creation() {
    let (_w, name) = util::begin("daclall");
    let _listener = ListenerOptions::new()
        .access(Access::Everyone)
        .create(&name)
        .unwrap();
    let dacl = dacl_of(&name);
    let au = dacl
        .split(')')
        .find(|ace| ace.ends_with(";;;AU"))
        .unwrap_or_else(|| panic!("no authenticated-users entry: {dacl}"));
    // FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES, and not
    // FILE_CREATE_PIPE_INSTANCE (0x4).
    assert!(au.to_ascii_lowercase().contains("0x12018b"), "{au}");
}

/// The name through SMB of a local pipe: `\\localhost\pipe\NAME`. Windows sends it
/// through its SMB client to this machine's SMB server, so the pipe sees a client
/// from another machine; Wine has no SMB client for pipes.
fn through_smb(name: &str) -> String {
    format!(r"\\localhost\pipe\{name}")
}

/// The first client `listener` hands out says `hello` first: nothing else reached
/// the pipe before it.
fn first_client_is_local(listener: &Listener, name: &str) {
    let mut local = Stream::connect(name).unwrap();
    local.send(b"local").unwrap();
    let mut first = listener.accept().unwrap();
    let mut buf = Vec::new();
    assert_eq!(first.recv(&mut buf).unwrap(), Some(5));
    assert_eq!(buf, b"local", "another client reached the pipe first");
}

/// A server makes pipes on this machine only: a remote name is refused by every way
/// of serving, before anything goes on the network, and no local pipe of that name
/// is made instead.
#[test]
fn servers_create_pipes_on_this_machine_only() {
    let (_w, name) = util::begin("remote-bind");
    let remote = through_smb(&name);
    let mut accepting = ListenerOptions::new();
    accepting.reject_remote_clients(false);
    let mut refusals = vec![
        Listener::bind(&remote).unwrap_err(),
        accepting.create(&remote).unwrap_err(),
    ];
    #[cfg(feature = "tokio")]
    {
        refusals.push(npipe::tokio::Listener::bind_with(&remote, &accepting).unwrap_err());
        refusals.push(
            npipe::Server::builder(remote.as_str())
                .options(accepting.clone())
                .handler(|request| npipe::Response::new(request.into_body()))
                .spawn()
                .unwrap_err(),
        );
    }
    for e in refusals {
        assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("on this machine only"), "{e}");
    }
    assert!(!npipe::inspect(&name).unwrap().is_live());
}

/// `\\HOST\pipe\NAME` is that UNC path, opened like a local pipe: never the local
/// pipe `NAME`. Under Wine, which has no SMB client for pipes, every way of reaching
/// it fails at once (not after the 10-minute timeouts) with an error that names the
/// host; on Windows the client reaches the server through SMB.
#[test]
fn a_unc_name_is_opened_through_smb_not_as_the_local_pipe() {
    let (_w, name) = util::begin("remote-open");
    let remote = through_smb(&name);
    let listener = ListenerOptions::new()
        .reject_remote_clients(false)
        .create(&name)
        .unwrap();
    let patience = Duration::from_secs(600);
    if !under_wine() {
        let server = util::serve_one(listener, move |mut stream| {
            let mut buf = Vec::new();
            stream.recv(&mut buf).unwrap();
            stream.send(&buf).unwrap();
        });
        let reply = npipe::call(&remote, b"over smb", patience).unwrap();
        assert_eq!(reply, b"over smb");
        server.join().unwrap();
        return;
    }
    let mut failures = vec![
        (
            "connect",
            ConnectOptions::new()
                .timeout(patience)
                .connect(&remote)
                .unwrap_err(),
        ),
        ("call", npipe::call(&remote, b"x", patience).unwrap_err()),
        ("wait", npipe::wait(&remote, patience).unwrap_err()),
        ("inspect", npipe::inspect(&remote).unwrap_err()),
    ];
    #[cfg(feature = "tokio")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut options = ConnectOptions::new();
        options.timeout(patience);
        let e = runtime
            .block_on(npipe::tokio::Stream::connect_with(&remote, &options))
            .unwrap_err();
        failures.push(("tokio connect", e));
    }
    for (what, e) in failures {
        assert_eq!(ErrorKind::of(&e), ErrorKind::Io, "{what}: {e}");
        assert_eq!(e.kind(), std::io::ErrorKind::HostUnreachable, "{what}: {e}");
        let text = e.to_string();
        assert!(text.contains("cannot reach localhost"), "{what}: {e}");
        assert!(text.contains(&remote), "{what}: {e}");
        // Wine's answer for every `\\HOST\pipe\` path: ERROR_PATH_NOT_FOUND.
        let os = npipe::Error::from_io(&e).and_then(|e| e.io_error());
        assert_eq!(os.and_then(|os| os.raw_os_error()), Some(3), "{what}: {e}");
    }
    first_client_is_local(&listener, &name);
}

/// Accepting clients from other machines admits nobody new by itself: the DACL is
/// the same, for every access policy, as when they are refused.
#[test]
fn accepting_remote_clients_adds_nothing_to_the_dacl() {
    let _w = Watchdog::start("remote dacl");
    for access in [Access::Owner, Access::Group, Access::Everyone] {
        let local_only = unique("dacl-local");
        let remote_too = unique("dacl-remote");
        let _a = ListenerOptions::new()
            .access(access)
            .create(&local_only)
            .unwrap();
        let _b = ListenerOptions::new()
            .access(access)
            .reject_remote_clients(false)
            .create(&remote_too)
            .unwrap();
        let dacl = dacl_of(&remote_too);
        assert_eq!(dacl, dacl_of(&local_only), "{access:?}");
        assert!(!dacl.contains(";;;NU)"), "{access:?}: {dacl}");
        assert!(!dacl.contains(";;;WD)"), "{access:?}: {dacl}");
    }
}

/// What Wine does not enforce or cannot do. Each test refuses to run under Wine (it
/// would prove nothing there); `.ci/windows/test.sh` skips them by name and lists them.
mod real_windows {
    use super::*;
    use std::sync::{Arc, Barrier};
    use windows_sys::Win32::Foundation::HANDLE;
    use windows_sys::Win32::Security::{
        CreateRestrictedToken, GetTokenInformation, ImpersonateLoggedOnUser, RevertToSelf,
        TokenUser, SID_AND_ATTRIBUTES, TOKEN_ASSIGN_PRIMARY, TOKEN_DUPLICATE, TOKEN_IMPERSONATE,
        TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    fn require_real_windows() {
        assert!(
            !under_wine(),
            "this test needs real Windows: Wine does not enforce pipe DACLs or FILE_FLAG_FIRST_PIPE_INSTANCE, impersonation is a stub, and it has no SMB client for pipes"
        );
    }

    /// Runs `f` on a thread impersonating our own token with our user SID disabled
    /// (deny-only): the same user's groups, but not the user.
    fn as_restricted_self<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        thread::spawn(move || {
            // SAFETY: standard token calls on handles we own; buffers are sized by
            // the first GetTokenInformation call and aligned for TOKEN_USER.
            unsafe {
                let mut token: HANDLE = ptr::null_mut();
                assert_ne!(
                    OpenProcessToken(
                        GetCurrentProcess(),
                        TOKEN_QUERY | TOKEN_DUPLICATE | TOKEN_IMPERSONATE | TOKEN_ASSIGN_PRIMARY,
                        &mut token,
                    ),
                    0
                );
                let mut needed = 0;
                GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut needed);
                let mut buf = vec![0u64; (needed as usize).div_ceil(8)];
                assert_ne!(
                    GetTokenInformation(
                        token,
                        TokenUser,
                        buf.as_mut_ptr().cast(),
                        needed,
                        &mut needed
                    ),
                    0
                );
                let user = (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid;
                let disable = SID_AND_ATTRIBUTES {
                    Sid: user,
                    Attributes: 0,
                };
                let mut restricted: HANDLE = ptr::null_mut();
                assert_ne!(
                    CreateRestrictedToken(
                        token,
                        0,
                        1,
                        &disable,
                        0,
                        ptr::null(),
                        0,
                        ptr::null(),
                        &mut restricted
                    ),
                    0,
                    "{}",
                    std::io::Error::last_os_error()
                );
                assert_ne!(ImpersonateLoggedOnUser(restricted), 0);
                let out = f();
                RevertToSelf();
                CloseHandle(restricted);
                CloseHandle(token);
                out
            }
        })
        .join()
        .unwrap()
    }

    #[test]
    fn owner_only_pipes_refuse_a_token_without_the_owner() {
        require_real_windows();
        let (_w, name) = util::begin("daclenf");
        let _listener = Listener::bind(&name).unwrap();
        let n = name.clone();
        let e = as_restricted_self(move || Stream::try_connect(&n).map(|_| ()))
            .expect_err("a token without the owner's SID connected to an owner-only pipe");
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
        // The owner itself still connects.
        Stream::try_connect(&name).unwrap();
    }

    #[test]
    fn everyone_pipes_admit_a_token_without_the_owner() {
        require_real_windows();
        let (_w, name) = util::begin("daclau");
        let _listener = ListenerOptions::new()
            .access(Access::Everyone)
            .create(&name)
            .unwrap();
        let n = name.clone();
        as_restricted_self(move || Stream::try_connect(&n).map(|_| ())).unwrap();
    }

    #[test]
    fn servers_created_at_the_same_moment_elect_exactly_one_owner() {
        require_real_windows();
        let _w = Watchdog::start("first instance race");
        for round in 0..20 {
            let name = unique(&format!("race{round}"));
            let barrier = Arc::new(Barrier::new(8));
            let contenders: Vec<_> = (0..8)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
                    let name = name.clone();
                    thread::spawn(move || {
                        barrier.wait();
                        Listener::bind(&name)
                    })
                })
                .collect();
            let results: Vec<_> = contenders.into_iter().map(|t| t.join().unwrap()).collect();
            let owners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(owners, 1, "round {round}: {owners} servers own the name");
            for e in results.iter().filter_map(|r| r.as_ref().err()) {
                assert_eq!(ErrorKind::of(e), ErrorKind::AddrInUse, "{e}");
            }
        }
    }

    /// Whether the pipe was created with `PIPE_REJECT_REMOTE_CLIENTS`, as the system
    /// reports its type (`FilePipeLocalInformation`) through a client handle. Wine
    /// drops the flag: it reports the same type either way.
    fn rejects_remote_clients(name: &str) -> bool {
        use windows_sys::Wdk::Storage::FileSystem::{
            FilePipeLocalInformation, NtQueryInformationFile, FILE_PIPE_LOCAL_INFORMATION,
        };
        use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;
        /// `FILE_PIPE_REJECT_REMOTE_CLIENTS` in `NamedPipeType`.
        const REJECT_REMOTE: u32 = 2;
        let client = Stream::connect(name).unwrap();
        // SAFETY: the client handle is live; both structures are plain data written
        // by the call, sized as passed.
        unsafe {
            let mut info: FILE_PIPE_LOCAL_INFORMATION = std::mem::zeroed();
            let mut status: IO_STATUS_BLOCK = std::mem::zeroed();
            let rc = NtQueryInformationFile(
                client.as_raw_handle(),
                &mut status,
                (&mut info as *mut FILE_PIPE_LOCAL_INFORMATION).cast(),
                std::mem::size_of::<FILE_PIPE_LOCAL_INFORMATION>() as u32,
                FilePipeLocalInformation,
            );
            assert_eq!(rc, 0, "NtQueryInformationFile: {rc:#x}");
            info.NamedPipeType & REJECT_REMOTE != 0
        }
    }

    #[test]
    fn every_instance_rejects_remote_clients_unless_told_otherwise() {
        require_real_windows();
        let _w = Watchdog::start("reject flag");
        let default = unique("flag-default");
        let accepting = unique("flag-accept");
        let _a = ListenerOptions::new()
            .pending_instances(3)
            .create(&default)
            .unwrap();
        let _b = ListenerOptions::new()
            .pending_instances(3)
            .reject_remote_clients(false)
            .create(&accepting)
            .unwrap();
        // Three instances each: the first (FILE_FLAG_FIRST_PIPE_INSTANCE) and the others.
        for _ in 0..3 {
            assert!(rejects_remote_clients(&default), "{default}");
            assert!(!rejects_remote_clients(&accepting), "{accepting}");
        }
    }

    #[test]
    fn a_default_server_refuses_its_owner_through_smb() {
        require_real_windows();
        let (_w, name) = util::begin("smb-refused");
        let listener = Listener::bind(&name).unwrap();
        let e = Stream::try_connect(through_smb(&name))
            .expect_err("a client through SMB reached a server that rejects remote clients");
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{e}");
        assert!(
            e.to_string()
                .contains("does not accept clients from other machines"),
            "{e}"
        );
        first_client_is_local(&listener, &name);
    }

    #[test]
    fn a_server_accepting_remote_clients_serves_its_owner_through_smb() {
        require_real_windows();
        let (_w, name) = util::begin("smb-served");
        let remote = through_smb(&name);
        let listener = ListenerOptions::new()
            .reject_remote_clients(false)
            .create(&name)
            .unwrap();
        let server = thread::spawn(move || {
            for _ in 0..2 {
                let mut stream = listener.accept().unwrap();
                let mut buf = Vec::new();
                while stream.recv(&mut buf).unwrap().is_some() {
                    stream.send(&buf).unwrap();
                }
            }
        });
        npipe::wait(&remote, Duration::from_secs(30)).unwrap();
        assert!(npipe::inspect(&remote).unwrap().is_live());
        // Message boundaries hold across SMB, the empty message and the long one too.
        let mut client = Stream::connect(&remote).unwrap();
        let mut buf = Vec::new();
        for message in [&b"one"[..], b"", &vec![7u8; 300_000]] {
            client.send(message).unwrap();
            assert_eq!(client.recv(&mut buf).unwrap(), Some(message.len()));
            assert_eq!(buf, message);
        }
        drop(client);
        // One transaction (TransactNamedPipe) on a fresh connection.
        let reply = npipe::call(&remote, b"transact", Duration::from_secs(30)).unwrap();
        assert_eq!(reply, b"transact");
        server.join().unwrap();
    }
}

#[test]
fn a_write_nobody_reads_times_out() {
    let (_w, name) = util::begin("wtimeout");
    let (_listener, _client, mut server) = util::pair_with(
        &name,
        ListenerOptions::new().buffer_size(4096),
        &ConnectOptions::new(),
    );
    server
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut result = Ok(());
    // The pipe buffers up to its quota; the write that does not fit must time out.
    for _ in 0..64 {
        result = server.send(&[1u8; 64 * 1024]);
        if result.is_err() {
            break;
        }
    }
    let e = result.expect_err("writes to a client that never reads never blocked");
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout, "{e}");
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[test]
fn accept_hands_out_clients_that_connected_before_it_was_called() {
    let (_w, name) = util::begin("early");
    let listener = ListenerOptions::new()
        .pending_instances(3)
        .create(&name)
        .unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|_| Stream::try_connect(&name).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("client {i}").as_bytes()).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut s = listener.accept().unwrap();
        let mut buf = Vec::new();
        s.recv(&mut buf).unwrap();
        seen.push(String::from_utf8(buf).unwrap());
    }
    seen.sort();
    assert_eq!(seen, ["client 0", "client 1", "client 2"]);
    // The pool is refilled: another client connects at once.
    Stream::try_connect(&name).unwrap();
}

#[test]
fn an_inbound_server_end_disconnects_cleanly() {
    let (_w, name) = util::begin("inbound-disc");
    let (listener, mut client, mut server) = util::pair_with(
        &name,
        ListenerOptions::new().direction(npipe::Direction::Inbound),
        &ConnectOptions::new(),
    );
    client.send(b"up").unwrap();
    let mut buf = Vec::new();
    server.recv(&mut buf).unwrap();
    server.disconnect().unwrap();
    assert_eq!(listener.instances(), 0);
    assert_eq!(util::kind(client.send(b"more")), ErrorKind::Disconnected);
}

/// `npipe::tokio` on Windows: what tokio's own named pipes would get wrong (long
/// messages split without notice), cancellation, and byte mode without half-close.
#[cfg(feature = "tokio")]
mod tokio_windows {
    use super::*;
    use crate::util::runtime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn long_messages_keep_their_boundaries_and_more_data_is_reported() {
        let _w = Watchdog::start("tokio long messages");
        runtime().block_on(async {
            let name = unique("tk-long");
            let (_listener, mut c, mut s) = util::ends::tokio_pair(&name).await;
            let sizes = [70_000usize, 0, 5, 3 * 1024 * 1024, 65_536, 65_537, 1];
            let sender = tokio::spawn(async move {
                for n in sizes {
                    c.send(&vec![(n % 251) as u8; n]).await.unwrap();
                }
                c
            });
            let mut buf = Vec::new();
            for n in sizes {
                assert_eq!(s.recv(&mut buf).await.unwrap(), Some(n));
                assert!(buf.iter().all(|b| *b == (n % 251) as u8));
            }
            let mut c = sender.await.unwrap();
            // A fixed buffer: the first part and more data, then the rest.
            s.send(&[7u8; 100_000]).await.unwrap();
            let mut small = [0u8; 1000];
            let part = c.recv_into(&mut small).await.unwrap().unwrap();
            assert_eq!((part.len(), part.more_data()), (1000, true));
            c.recv(&mut buf).await.unwrap();
            assert_eq!(buf.len(), 99_000);
            drop(s);
            assert_eq!(c.recv(&mut buf).await.unwrap(), None);
        });
    }

    #[test]
    fn a_cancelled_recv_loses_nothing() {
        let _w = Watchdog::start("tokio cancel");
        runtime().block_on(async {
            let name = unique("tk-cancel-win");
            let (listener, mut c, mut s) = util::ends::tokio_pair(&name).await;
            let mut m = b"untouched".to_vec();
            for _ in 0..3 {
                let r = tokio::time::timeout(Duration::from_millis(50), s.recv(&mut m)).await;
                assert!(r.is_err(), "nothing was sent");
            }
            assert_eq!(m, b"untouched");
            c.send(&vec![1u8; 200_000]).await.unwrap();
            c.send(b"second").await.unwrap();
            assert_eq!(s.recv(&mut m).await.unwrap(), Some(200_000));
            assert_eq!(s.recv(&mut m).await.unwrap(), Some(6));
            assert_eq!(m, b"second");
            // An accept cancelled while nobody connects takes nothing either.
            let r = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
            assert!(r.is_err());
        });
    }

    #[test]
    fn byte_mode_split_echo() {
        let _w = Watchdog::start("tokio bytes");
        runtime().block_on(async {
            let name = unique("tk-bytes-win");
            let mut opts = ListenerOptions::new();
            opts.mode(Mode::Byte);
            let listener = npipe::tokio::Listener::bind_with(&name, &opts).unwrap();
            const LEN: usize = 300_000;
            let server = tokio::spawn(async move {
                let s = listener.accept().await.unwrap();
                let (mut r, mut w) = s.into_split();
                let mut data = vec![0u8; LEN];
                r.read_exact(&mut data).await.unwrap();
                w.write_all(&data).await.unwrap();
                w.flush().await.unwrap();
                (r, w)
            });
            let mut copts = ConnectOptions::new();
            copts.mode(Mode::Byte);
            let c = npipe::tokio::Stream::connect_with(&name, &copts)
                .await
                .unwrap();
            let (mut r, mut w) = c.into_split();
            let data: Vec<u8> = (0..LEN as u32).map(|i| (i % 251) as u8).collect();
            w.write_all(&data).await.unwrap();
            w.flush().await.unwrap();
            let mut back = vec![0u8; LEN];
            r.read_exact(&mut back).await.unwrap();
            assert_eq!(back, data);
            let _ends = server.await.unwrap();
        });
    }
}
