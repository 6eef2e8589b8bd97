//! Where a pipe can live on Unix: explicit socket paths (`/run/app/api.sock`) and
//! sockets a service manager passed (systemd socket activation, driven here by
//! Debian's `systemd-socket-activate`, which needs no running systemd).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use npipe::{
    Access, Address, ErrorKind, Listener, ListenerOptions, PipeState, Request, Response, Server,
    Stream,
};

use crate::util::drive::say;
use crate::util::{self, unique, Watchdog};

/// A directory of the test's own under `/tmp` (root's, mode 0755), removed with
/// everything in it when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(label: &str) -> TestDir {
        let path = PathBuf::from("/tmp").join(unique(label));
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(path)
    }

    fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// The names in the directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Directories a test made unsafe must be made removable again first.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn echo(request: Request) -> Response {
    let mut reply = b"echo:".to_vec();
    reply.extend_from_slice(request.body());
    Response::from(reply)
}

/// Serves `n` connections on `listener`, answering each message with
/// `echo:<message>`, then drops it.
fn serve_n(listener: Listener, n: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..n {
            let mut stream = listener.accept().expect("accept");
            util::answer(&mut stream, b"echo:");
        }
    })
}

/// A Python client speaking the wire contract to the socket at a path: sends
/// `hello`, prints the reply.
const PYTHON_CLIENT: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(struct.pack('<I', 5) + b'hello')
n, = struct.unpack('<I', s.recv(4, socket.MSG_WAITALL))
print(s.recv(n, socket.MSG_WAITALL).decode(), flush=True)
"#;

fn python_call(path: &Path) -> String {
    util::peers::python(PYTHON_CLIENT, &[path.as_os_str()])
}

fn call(name: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    npipe::call(name, request, Duration::from_secs(20))
}

// ---------------------------------------------------------------------------------
// Explicit socket paths

/// A pipe named by an absolute path is that socket file, in every verb: blocking
/// and tokio listeners and streams, `call`, `wait`, `inspect`, the managed server,
/// and a Python client that connects to the path. Its lock and record files are
/// beside it, and everything is removed when the server goes.
#[test]
fn an_explicit_socket_path_works_in_every_verb() {
    let _w = Watchdog::start("an_explicit_socket_path_works_in_every_verb");
    let dir = TestDir::new("paths");
    let path = dir.join("api.sock");
    let name = s(&path);

    let listener = Listener::bind(name).unwrap();
    assert_eq!(listener.address(), &Address::Path(path.clone()));
    assert_eq!(listener.name().socket_path(), Some(path.as_path()));
    assert_eq!(
        dir.entries(),
        [".api.sock.info", ".api.sock.lock", "api.sock"]
    );
    let mode = std::fs::symlink_metadata(&path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let server = serve_n(listener, 4);

    npipe::wait(name, Duration::from_secs(5)).unwrap();
    let info = npipe::inspect(name).unwrap();
    assert_eq!(info.state(), PipeState::Live);
    assert_eq!(info.address(), &Address::Path(path.clone()));
    assert_eq!(info.server_pid(), Some(std::process::id()));
    assert_eq!(info.access(), Some(Access::Owner));
    assert!(info.is_recorded());
    // A second server of the same path is refused, as for any name.
    let e = Listener::bind(name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");

    assert_eq!(call(name, b"one").unwrap(), b"echo:one");
    let mut stream = Stream::connect(name).unwrap();
    stream.send(b"two").unwrap();
    let mut reply = Vec::new();
    stream.recv(&mut reply).unwrap();
    assert_eq!(reply, b"echo:two");
    drop(stream);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut stream = npipe::tokio::Stream::connect(name).await.unwrap();
        stream.send(b"three").await.unwrap();
        let mut reply = Vec::new();
        stream.recv(&mut reply).await.unwrap();
        assert_eq!(reply, b"echo:three");
    });
    assert_eq!(python_call(&path), "echo:hello");
    server.join().unwrap();
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    assert_eq!(npipe::inspect(name).unwrap().state(), PipeState::Absent);

    // The tokio listener and the managed server.
    runtime.block_on(async {
        let listener = npipe::tokio::Listener::bind(name).unwrap();
        let accept = tokio::spawn(async move {
            let mut stream = listener.accept().await.unwrap();
            let mut request = Vec::new();
            stream.recv(&mut request).await.unwrap();
            stream.send(&request).await.unwrap();
        });
        let reply = tokio::task::spawn_blocking({
            let name = name.to_owned();
            move || call(&name, b"tokio")
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(reply, b"tokio");
        accept.await.unwrap();
    });
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    let server = Server::builder(name).handler(echo).spawn().unwrap();
    assert_eq!(server.address(), &Address::Path(path.clone()));
    assert_eq!(call(name, b"managed").unwrap(), b"echo:managed");
    assert_eq!(python_call(&path), "echo:hello");
    server.shutdown();
    server.join().unwrap();
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

/// The directory of an explicit path is checked as `NPIPE_DIR` is: writable by
/// others without the sticky bit, or owned by another user, itself or any
/// directory above it, and the server and its clients refuse it up front, naming
/// the directory; nothing is created in it.
#[test]
fn an_explicit_path_in_a_directory_others_could_change_is_refused() {
    let _w = Watchdog::start("an_explicit_path_in_a_directory_others_could_change");
    crate::require_root!("needs root to give directories to user nobody");
    let dir = TestDir::new("paths-open");
    let open = dir.join("open");
    let below = open.join("below");
    std::fs::create_dir_all(&below).unwrap();
    std::fs::set_permissions(&below, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cases: [(&Path, u32, u32, &str); 4] = [
        (&open, 0o777, 0, "no sticky bit"),
        (&open, 0o775, 0, "no sticky bit"),
        (&open, 0o755, 65534, "belongs to uid 65534"),
        (&below, 0o777, 0, "no sticky bit"),
    ];
    for (changed, mode, owner, why) in cases {
        for reset in [&open, &below] {
            std::fs::set_permissions(reset, std::fs::Permissions::from_mode(0o755)).unwrap();
            nix::unistd::chown(reset.as_path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        }
        std::fs::set_permissions(changed, std::fs::Permissions::from_mode(mode)).unwrap();
        nix::unistd::chown(changed, Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        let path = below.join("api.sock");
        let name = s(&path);
        let results = [
            ("Listener::bind", Listener::bind(name).map(drop)),
            ("Stream::connect", Stream::connect(name).map(drop)),
            ("inspect", npipe::inspect(name).map(drop)),
            ("wait", npipe::wait(name, Duration::ZERO)),
        ];
        for (api, result) in results {
            let e = result.expect_err(api);
            assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{api}: {e}");
            let message = e.to_string();
            assert!(message.contains(s(changed)), "{api}: {message}");
            assert!(message.contains(why), "{api}: {message}");
        }
        assert!(std::fs::read_dir(&below).unwrap().next().is_none());
    }
    // Made safe again (the sticky bit), it is used.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(&below, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(open.as_path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    nix::unistd::chown(below.as_path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let path = below.join("api.sock");
    let server = serve_n(Listener::bind(s(&path)).unwrap(), 1);
    assert_eq!(call(s(&path), b"ok").unwrap(), b"echo:ok");
    server.join().unwrap();
}

/// A symlink on the way to an explicit path's directory is followed only when
/// root or the user owns it, as on the way to `NPIPE_DIR`: root's link leads to
/// the directory (the pipe's address is the canonical path, and clients reach it
/// through the link or not); a link another user owns is refused, named.
#[test]
fn symlinked_directories_of_explicit_paths_are_checked() {
    let _w = Watchdog::start("symlinked_directories_of_explicit_paths_are_checked");
    crate::require_root!("needs root to give a symlink to user nobody");
    let dir = TestDir::new("paths-link");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let through_link = link.join("api.sock");
    let listener = Listener::bind(s(&through_link)).unwrap();
    assert_eq!(listener.address(), &Address::Path(real.join("api.sock")));
    assert!(real.join("api.sock").exists());
    let server = serve_n(listener, 2);
    assert_eq!(call(s(&through_link), b"link").unwrap(), b"echo:link");
    assert_eq!(
        call(s(&real.join("api.sock")), b"real").unwrap(),
        b"echo:real"
    );
    server.join().unwrap();
    assert!(std::fs::read_dir(&real).unwrap().next().is_none());

    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    for (api, result) in [
        ("Listener::bind", Listener::bind(s(&through_link)).map(drop)),
        (
            "Stream::connect",
            Stream::connect(s(&through_link)).map(drop),
        ),
    ] {
        let e = result.expect_err(api);
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied, "{api}: {e}");
        let wanted = format!(
            "{} is a symbolic link that belongs to uid 65534",
            link.display()
        );
        assert!(e.to_string().contains(&wanted), "{api}: {e}");
    }
    assert!(std::fs::read_dir(&real).unwrap().next().is_none());
}

/// A socket path that does not fit in `sun_path` is refused with the limit, never
/// truncated; so is a short path whose directory resolves to a long one (the
/// socket is bound by its canonical path). Nothing is created.
#[test]
fn an_explicit_path_too_long_for_sun_path_is_refused() {
    let _w = Watchdog::start("an_explicit_path_too_long_for_sun_path_is_refused");
    let dir = TestDir::new("paths-long");
    let long = dir.join(&"d".repeat(100));
    std::fs::create_dir(&long).unwrap();
    let short = dir.join("s");
    std::os::unix::fs::symlink(&long, &short).unwrap();
    for path in [long.join("api.sock"), short.join("api.sock")] {
        let name = s(&path);
        assert!(name.len() < 247);
        let e = Listener::bind(name).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{e}");
        assert!(
            e.to_string().contains("the limit on this OS is 107 bytes"),
            "{e}"
        );
        assert!(e.to_string().contains("use a shorter path"), "{e}");
        let e = Stream::connect(name).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{e}");
    }
    assert!(std::fs::read_dir(&long).unwrap().next().is_none());
}

/// An explicit path may name any file: one that is not a socket is refused
/// (`AddrInUse`, saying what it is) before anything is created beside it, and is
/// left untouched; a client finds no pipe there.
#[test]
fn an_explicit_path_to_a_file_that_is_not_a_socket_is_left_alone() {
    let _w = Watchdog::start("an_explicit_path_to_a_file_that_is_not_a_socket");
    let dir = TestDir::new("paths-file");
    let file = dir.join("victim");
    std::fs::write(&file, b"precious").unwrap();
    let name = s(&file);
    let e = Listener::bind(name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
    assert!(
        e.to_string().contains("is a regular file, not a socket"),
        "{e}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let e = runtime
        .block_on(async { Server::builder(name).handler(echo).bind().map(drop) })
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse, "{e}");
    let e = npipe::ConnectOptions::new()
        .timeout(Duration::ZERO)
        .connect(name)
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");
    assert_eq!(dir.entries(), ["victim"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

// ---------------------------------------------------------------------------------
// Socket activation

/// `systemd-socket-activate` listening on `sockets` (with `--fdname` names if
/// given), which starts this test binary in `role` with `args` when the first
/// client connects. (It makes its socket files mode 0644, whatever the umask.)
fn activate(sockets: &[&Path], names: Option<&str>, role: &str, args: &[&str]) -> util::Child {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        panic!("systemd-socket-activate is missing: install Debian's `systemd` package (scripts/test-all.sh does)");
    }
    let inner = util::drive::command(role, args);
    let mut cmd = Command::new("systemd-socket-activate");
    for socket in sockets {
        cmd.arg(format!("--listen={}", socket.display()));
    }
    if let Some(names) = names {
        cmd.arg(format!("--fdname={names}"));
    }
    // The manager passes only the variables it is told to.
    for (key, value) in inner.get_envs() {
        if let (Some(key), Some(value)) = (key.to_str(), value.and_then(|v| v.to_str())) {
            cmd.arg(format!("--setenv={key}={value}"));
        }
    }
    cmd.arg("--")
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let child = util::drive::spawn(cmd);
    for socket in sockets {
        wait_for_file(socket);
    }
    child
}

/// Until the socket exists: its file, or for `@NAME` a listening abstract socket.
fn wait_for_file(path: &Path) {
    for _ in 0..2000 {
        let there = match s(path).strip_prefix('@') {
            Some(_) => npipe::wait(s(path), Duration::ZERO).is_ok(),
            None => path.exists(),
        };
        if there {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!("{} never appeared", path.display());
}

/// Connects to the socket at `path` (the connection waits in its queue, which
/// makes `systemd-socket-activate` start the server) and returns the stream.
fn wake(path: &Path) -> std::os::unix::net::UnixStream {
    std::os::unix::net::UnixStream::connect(path).unwrap()
}

/// A socket a service manager passed is served by each API — the blocking
/// listener, the tokio listener, the managed server — in message mode with its
/// cap: the client that woke the manager is served, and so are later ones (npipe
/// and Python); `inspect` says live with no record; npipe creates no file beside
/// the socket and leaves the socket file in place when it goes.
#[test]
fn a_passed_socket_is_served_by_every_api() {
    let _w = Watchdog::new(
        "a_passed_socket_is_served_by_every_api",
        Duration::from_secs(120),
    );
    let dir = TestDir::new("activate");
    for api in ["blocking", "tokio", "server"] {
        let path = dir.join(&format!("{api}.sock"));
        let name = s(&path);
        let mut child = activate(
            &[&path],
            Some(&format!("{api}.sock")),
            "activated",
            &[name, api],
        );
        // The first client wakes the manager and waits in the queue.
        let first = std::thread::spawn({
            let name = name.to_owned();
            move || call(&name, b"first")
        });
        assert_eq!(child.expect_line("ready "), "activated=true");
        assert_eq!(first.join().unwrap().unwrap(), b"echo:first", "{api}");
        assert_eq!(call(name, b"second").unwrap(), b"echo:second", "{api}");
        assert_eq!(python_call(&path), "echo:hello", "{api}");
        // The maximum message size holds: a message over it is refused, and the
        // server goes on.
        let mut stream = Stream::connect(name).unwrap();
        stream.send(&[b'x'; 2000]).unwrap();
        let mut reply = Vec::new();
        assert!(
            !matches!(stream.recv(&mut reply), Ok(Some(_))),
            "{api}: an oversized message was answered"
        );
        assert_eq!(call(name, b"after").unwrap(), b"echo:after", "{api}");

        let info = npipe::inspect(name).unwrap();
        assert_eq!(info.state(), PipeState::Live, "{api}");
        assert_eq!(info.server_pid(), Some(child.id()), "{api}");
        assert!(!info.is_recorded(), "{api}");
        assert_eq!(info.mode(), None);
        npipe::wait(name, Duration::ZERO).unwrap();
        child.kill();
        assert_eq!(dir.entries(), [format!("{api}.sock")], "{api}");
        std::fs::remove_file(&path).unwrap();
    }
}

/// Several sockets passed: the one named for the pipe (`--fdname`) is served, or
/// without names the one bound to the pipe's address; a pipe none of them is
/// bound to is refused with a list of what was passed, and so is a socket bound
/// elsewhere even when it is the only one or is named for the pipe.
#[test]
fn the_passed_socket_is_chosen_by_name_or_address() {
    let _w = Watchdog::new(
        "the_passed_socket_is_chosen_by_name_or_address",
        Duration::from_secs(120),
    );
    let dir = TestDir::new("activate-pick");
    let a = dir.join("a.sock");
    let b = dir.join("b.sock");
    for names in [Some("a.sock:b.sock"), Some("first:second"), None] {
        let mut child = activate(&[&a, &b], names, "activated", &[s(&b), "blocking"]);
        let _waiting = wake(&a);
        assert_eq!(child.expect_line("ready "), "activated=true", "{names:?}");
        assert_eq!(call(s(&b), b"b").unwrap(), b"echo:b", "{names:?}");
        // a.sock is passed but not served: its client waits in the queue.
        let e = npipe::ConnectOptions::new()
            .timeout(Duration::ZERO)
            .connect(s(&dir.join("c.sock")))
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound);
        child.kill();
        for socket in [&a, &b] {
            std::fs::remove_file(socket).unwrap();
        }
    }
    let c = dir.join("c.sock");
    let refusals: [(Vec<&Path>, Option<&str>, &Path, &str); 3] = [
        (
            vec![&a, &b],
            Some("a.sock:b.sock"),
            &c,
            "none of the sockets passed to this process is its socket",
        ),
        (vec![&a], None, &c, "is bound to"),
        (vec![&a, &b], Some("c.sock:b.sock"), &c, "is bound to"),
    ];
    for (sockets, names, served, why) in refusals {
        let mut child = activate(&sockets, names, "activated", &[s(served), "blocking"]);
        let _waiting = wake(sockets[0]);
        let said = child.expect_line("error ");
        assert!(said.starts_with("NotFound "), "{said}");
        assert!(said.contains(why), "{said}");
        assert!(said.contains(s(sockets[0])), "{said}");
        assert!(child.wait_for(Duration::from_secs(20)).success());
        for socket in sockets {
            assert!(!dir
                .join(&format!(
                    ".{}.lock",
                    socket.file_name().unwrap().to_str().unwrap()
                ))
                .exists());
            std::fs::remove_file(socket).unwrap();
        }
    }
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

/// A passed descriptor whose number names another file by the time it is served
/// (closed and reused, here for a socket bound at the same path) is refused:
/// npipe never takes ownership of a descriptor that is not the one passed.
#[test]
fn a_passed_descriptor_closed_and_reused_is_never_served() {
    let _w = Watchdog::new(
        "a_passed_descriptor_closed_and_reused_is_never_served",
        Duration::from_secs(120),
    );
    let dir = TestDir::new("activate-reused");
    let path = dir.join("r.sock");
    let mut child = activate(&[&path], None, "activated", &[s(&path), "replaced"]);
    let _waiting = wake(&path);
    let said = child.expect_line("error ");
    assert!(said.contains("no longer the descriptor passed"), "{said}");
    assert!(child.wait_for(Duration::from_secs(20)).success());
}

/// A process that no service manager started finds no socket to serve:
/// `NotFound`, saying why.
#[test]
fn without_a_service_manager_there_is_no_socket_to_serve() {
    let _w = Watchdog::start("without_a_service_manager_there_is_no_socket_to_serve");
    assert!(!npipe::is_socket_activated());
    let name = unique("not-activated");
    let e = Listener::from_activation(&name, &ListenerOptions::new()).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string()
            .contains("no listening socket was passed to this process"),
        "{e}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let e = runtime
        .block_on(async {
            npipe::tokio::Listener::from_activation(&name, &ListenerOptions::new()).map(drop)
        })
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");
    assert!(npipe::inspect(&name).unwrap().state() == PipeState::Absent);
}

/// The access policy holds on a passed socket whose file mode lets everyone
/// connect (the manager's `SocketMode=0666`): the server checks every client's
/// credentials, so user nobody is refused with the refusal notice and never
/// reaches the handler, while the owner is served.
#[test]
fn the_access_policy_holds_on_a_passed_socket_open_to_all() {
    let _w = Watchdog::new(
        "the_access_policy_holds_on_a_passed_socket",
        Duration::from_secs(120),
    );
    crate::require_root!("needs root to run a client as user nobody (setpriv)");
    let dir = TestDir::new("activate-policy");
    for api in ["blocking", "server"] {
        let path = dir.join(&format!("{api}.sock"));
        let name = s(&path);
        let mut child = activate(&[&path], None, "activated", &[name, api]);
        // What `SocketMode=0666` makes: everyone may connect.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let first = std::thread::spawn({
            let name = name.to_owned();
            move || call(&name, b"owner")
        });
        assert_eq!(child.expect_line("ready "), "activated=true");
        assert_eq!(first.join().unwrap().unwrap(), b"echo:owner");
        let mut nobody = util::nobody("path-call", &[name]);
        let said = nobody.expect_line("");
        assert!(said.starts_with("error AccessDenied "), "{api}: {said}");
        assert!(
            said.contains("the server refused this client's credentials (uid 65534, gid 65534)"),
            "{api}: {said}"
        );
        assert!(nobody.wait_for(Duration::from_secs(20)).success());
        // The server counted the refusal, and served nobody's request to no one.
        assert_eq!(call(name, b"count").unwrap(), b"echo:count denied=1");
        child.kill();
        std::fs::remove_file(&path).unwrap();
    }
}

/// When npipe stops serving a passed socket, it leaves the socket as the manager
/// had it, for the server the manager starts next: the instance gate's plug (a
/// connection of npipe's own that fills the accept queue while every instance is
/// connected) is taken out, so the manager sees no client that is not there, and
/// the backlog is the system's maximum again, so new clients queue rather than
/// find the pipe busy.
#[test]
fn a_passed_socket_is_handed_back_as_the_manager_had_it() {
    let _w = Watchdog::start("a_passed_socket_is_handed_back");
    let dir = TestDir::new("activate-back");
    let path = dir.join("back.sock");
    let mut child = activate(&[&path], None, "activated-handback", &[s(&path)]);
    let _first = wake(&path);
    assert_eq!(child.expect_line("full "), "busy=PipeBusy");
    assert_eq!(child.expect_line("dropped "), "plug-queued=false queued=8");
    assert!(child.wait_for(Duration::from_secs(20)).success());
}

/// An abstract socket (`ListenStream=@NAME`) passed is served under `@NAME`.
#[test]
fn a_passed_abstract_socket_is_served() {
    let _w = Watchdog::start("a_passed_abstract_socket_is_served");
    let name = format!("@{}", unique("activate-abstract"));
    let mut child = activate(&[Path::new(&name)], None, "activated", &[&name, "server"]);
    let first = std::thread::spawn({
        let name = name.clone();
        move || call(&name, b"abstract")
    });
    assert_eq!(child.expect_line("ready "), "activated=true");
    assert_eq!(first.join().unwrap().unwrap(), b"echo:abstract");
    child.kill();
}

pub(crate) mod roles {
    use super::*;

    /// `NAME API`: serves the socket passed for NAME with API (`blocking`,
    /// `tokio` or `server`), answering `echo:<request>` (`count` is answered
    /// `echo:count denied=N`), with a 1 KiB maximum message size; says `ready
    /// activated=<is_socket_activated>`, or `error <Kind> <message>`.
    pub(crate) fn activated(args: &[&str]) -> i32 {
        let [name, api] = args else {
            say("error usage: NAME API");
            return 2;
        };
        let activated = npipe::is_socket_activated();
        let mut options = ListenerOptions::new();
        options.max_message_size(1024);
        let fail = |e: std::io::Error| {
            say(format!("error {:?} {e}", ErrorKind::of(&e)));
            0
        };
        match *api {
            "replaced" => {
                // After the variables were read, descriptor 3 is closed and its
                // number reused for a socket of the process's own, bound at the
                // same path: not the socket the manager passed.
                let _ = std::fs::remove_file(name);
                let other = std::os::unix::net::UnixListener::bind(name).unwrap();
                // SAFETY: dup2 onto descriptor 3, which the test passed to this
                // process and nothing else here uses.
                #[allow(unsafe_code)]
                let moved = unsafe { nix::libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&other), 3) };
                assert_eq!(moved, 3);
                match Listener::from_activation(*name, &options) {
                    Ok(_) => say("ready replaced socket served"),
                    Err(e) => return fail(e),
                }
                0
            }
            "blocking" => {
                let listener = match Listener::from_activation(*name, &options) {
                    Ok(listener) => listener,
                    Err(e) => return fail(e),
                };
                say(format!("ready activated={activated}"));
                let listener = std::sync::Arc::new(listener);
                loop {
                    let Ok(mut stream) = listener.accept() else {
                        continue;
                    };
                    let listener = std::sync::Arc::clone(&listener);
                    thread::spawn(move || {
                        let mut request = Vec::new();
                        while let Ok(Some(_)) = stream.recv(&mut request) {
                            let mut reply = b"echo:".to_vec();
                            reply.extend_from_slice(&request);
                            if request == b"count" {
                                reply.extend_from_slice(
                                    format!(" denied={}", listener.denied()).as_bytes(),
                                );
                            }
                            if stream.send(&reply).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            "tokio" => {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async {
                    let listener = match npipe::tokio::Listener::from_activation(*name, &options) {
                        Ok(listener) => listener,
                        Err(e) => return fail(e),
                    };
                    say(format!("ready activated={activated}"));
                    loop {
                        let Ok(mut stream) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(async move {
                            let mut request = Vec::new();
                            while let Ok(Some(_)) = stream.recv(&mut request).await {
                                let mut reply = b"echo:".to_vec();
                                reply.extend_from_slice(&request);
                                if stream.send(&reply).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                })
            }
            _ => {
                let stats = std::sync::Arc::new(std::sync::Mutex::new(None::<npipe::ServerHandle>));
                let handler_stats = std::sync::Arc::clone(&stats);
                let server = Server::builder(*name)
                    .options(options)
                    .activation(true)
                    .handler(move |request| {
                        if request.body() != b"count" {
                            return echo(request);
                        }
                        let denied = handler_stats
                            .lock()
                            .unwrap()
                            .as_ref()
                            .map_or(0, |h| h.stats().rejected_access);
                        Response::from(format!("echo:count denied={denied}").into_bytes())
                    })
                    .spawn();
                let server = match server {
                    Ok(server) => server,
                    Err(e) => return fail(e),
                };
                *stats.lock().unwrap() = Some(server.handle());
                say(format!("ready activated={activated}"));
                server.join().map_or(1, |()| 0)
            }
        }
    }

    /// `NAME`: serves the passed socket with one instance, and takes the client
    /// that woke the manager, so that the gate plugs the accept queue; says
    /// `full busy=<Kind>` (what a client without patience gets then). Then drops
    /// the listener, keeping the socket open as a manager does, and says `dropped
    /// plug-queued=<bool> queued=<N>`: whether a connection waits in the queue,
    /// and how many of 8 impatient clients found room in it.
    pub(crate) fn handback(args: &[&str]) -> i32 {
        use std::os::fd::AsFd;
        let name = args[0];
        let mut options = ListenerOptions::new();
        options.max_instances(Some(1)).pending_instances(1);
        let listener = match Listener::from_activation(name, &options) {
            Ok(listener) => listener,
            Err(e) => {
                say(format!("error {:?} {e}", ErrorKind::of(&e)));
                return 0;
            }
        };
        let kept = listener.as_fd().try_clone_to_owned().unwrap();
        let stream = listener.accept().unwrap();
        let busy = match Stream::try_connect(name) {
            Ok(_) => "connected".to_owned(),
            Err(e) => format!("{:?}", ErrorKind::of(&e)),
        };
        say(format!("full busy={busy}"));
        drop(listener);
        let queued = {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds = [PollFd::new(kept.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap() > 0
        };
        let room = (0..8)
            .filter_map(|_| Stream::try_connect(name).ok())
            .collect::<Vec<_>>();
        say(format!(
            "dropped plug-queued={queued} queued={}",
            room.len()
        ));
        drop(stream);
        0
    }

    /// `NAME`: one call; says `ok <reply>` or `error <Kind> <message>`.
    pub(crate) fn call(args: &[&str]) -> i32 {
        match npipe::call(args[0], b"hello", Duration::from_secs(10)) {
            Ok(reply) => say(format!("ok {}", String::from_utf8_lossy(&reply))),
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        let _ = std::io::stdout().flush();
        0
    }
}
