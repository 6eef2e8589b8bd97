//! # npipe — Windows named pipes for Rust, on every operating system
//!
//! npipe gives Rust programs the inter-process communication model of Windows named
//! pipes — named endpoints, client and server ends, byte or message mode, a size cap
//! on messages, instances, `WaitNamedPipe` and `CallNamedPipe` — with the same API on
//! Windows (real named pipes) and Unix (Unix domain sockets).
//!
//! - [`Listener`] is the server end; [`Stream`] a connected end.
//! - Message mode (the default) preserves boundaries. On Unix each message travels as
//!   a 4-byte little-endian length followed by the payload: any language can speak it.
//! - A message over the maximum size (default 16 MiB) is refused **before** anything
//!   is allocated.
//! - Secure by default: only the creating user can connect.
//!
//! ## A server and a client
//!
//! ```no_run
//! use std::thread;
//! use std::time::Duration;
//!
//! // Server: answer each request with "Response to: <request>".
//! let listener = npipe::Listener::bind("demo")?;
//! thread::spawn(move || {
//!     for stream in listener.incoming() {
//!         let Ok(mut stream) = stream else { continue };
//!         thread::spawn(move || -> std::io::Result<()> {
//!             let mut request = Vec::new();
//!             while stream.recv(&mut request)?.is_some() {
//!                 let mut reply = b"Response to: ".to_vec();
//!                 reply.extend_from_slice(&request);
//!                 stream.send(&reply)?;
//!             }
//!             Ok(())
//!         });
//!     }
//! });
//!
//! // Client: a persistent connection...
//! let mut stream = npipe::Stream::connect("demo")?;
//! stream.send(b"hello")?;
//! let mut reply = Vec::new();
//! match stream.recv(&mut reply)? {
//!     Some(_) => assert_eq!(reply, b"Response to: hello"),
//!     // The server closed the connection without replying.
//!     None => eprintln!("no reply"),
//! }
//!
//! // ...or one transaction (CallNamedPipe).
//! let reply = npipe::call("demo", b"ping", Duration::from_secs(5))?;
//! assert_eq!(reply, b"Response to: ping");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## A managed server (feature `tokio`)
//!
//! `npipe::Server` keeps instances listening, runs a handler per request (sync on
//! threads of tokio's blocking pool, or async), enforces idle and request deadlines, shuts down
//! gracefully and keeps stats. Programs that are not async use `ServerBuilder::spawn`:
//!
//! ```no_run
//! # #[cfg(all(feature = "tokio", unix))]
//! # fn main() -> std::io::Result<()> {
//! use npipe::{Response, Server};
//!
//! let server = Server::builder("demo")
//!     .max_instances(Some(32))
//!     .handler(|request| {
//!         let mut reply = b"Response to: ".to_vec();
//!         reply.extend_from_slice(request.body());
//!         Response::from(reply)
//!     })
//!     .spawn()?;
//! # server.shutdown();
//! server.join()
//! # }
//! # #[cfg(not(all(feature = "tokio", unix)))]
//! # fn main() {}
//! ```
//!
//! The async API with the same names is in `npipe::tokio`.
//!
//! ## Names
//!
//! `NAME`, `\\.\pipe\NAME`, `@NAME` (Linux abstract namespace), and on Unix an
//! absolute socket path (`/run/app/api.sock`); see [`PipeName`]. On Unix `NAME` is
//! the socket file `/tmp/npipe-NAME`, or `$NPIPE_DIR/NAME`.
//! `\\HOST\pipe\NAME` is pipe `NAME` on machine `HOST`: on Windows through SMB, on
//! Unix through the system's ssh client and `npipe bridge` on HOST (see
//! [`ConnectOptions::connect`]); [`wait`] and [`call`] work there too.
//!
//! A server started by a service manager with its listening socket (systemd socket
//! activation) serves that socket: [`Listener::from_activation`].
//!
//! ## Errors
//!
//! Functions return `std::io::Result`. [`ErrorKind::of`] tells the pipe condition:
//! [`NotFound`](ErrorKind::NotFound), [`PipeBusy`](ErrorKind::PipeBusy),
//! [`AddrInUse`](ErrorKind::AddrInUse), [`AccessDenied`](ErrorKind::AccessDenied),
//! [`MessageTooLarge`](ErrorKind::MessageTooLarge), ...
//!
//! ## Cargo features and platforms
//!
//! - `tokio` (off by default): the async API (`npipe::tokio`) and the managed
//!   server (`npipe::Server` and the `npipe::server` module).
//!
//! The same API exists on Unix and on Windows. The few items that exist on one of
//! them only (`Stream::from_std`, the `AsFd`/`AsHandle` implementations) and the
//! items of the `tokio` feature say so in these docs ("Available on ... only"), and
//! each item's "Platform-specific behavior" section tells where the two differ.

#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(unix, windows)))]
compile_error!("npipe supports Unix and Windows");

mod error;
// On Windows only `Received` and the size check are used: messages are native there.
#[cfg_attr(windows, allow(dead_code))]
mod frame;
// Not public API: internals for the fuzz targets in `fuzz/`, only under `--cfg fuzzing`.
#[cfg(fuzzing)]
#[doc(hidden)]
#[path = "fuzz_support.rs"]
pub mod __fuzz;
mod inspect;
mod listener;
mod name;
mod options;
mod peer;
#[cfg(unix)]
mod remote;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod server;
mod stream;
mod sys;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

// The README's Rust examples are compiled as doc tests, so they cannot drift from
// the API. They are whole programs a reader can copy (no hidden lines), some
// using the `tokio` feature: compiled when it is on (as `scripts/test-all.sh` runs).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

use std::io;
use std::thread;
use std::time::{Duration, Instant};

pub use error::{Error, ErrorKind};
pub use frame::{Received, REFUSAL_NOTICE};

/// How long ssh may take to connect to HOST and log in when a client on Unix
/// connects to a remote pipe (`\\HOST\pipe\NAME`), on top of any timeout:
/// [`ConnectOptions::timeout`] bounds the wait for the pipe on HOST, and
/// [`call`]'s timeout the call, with the time connecting through ssh took (up to
/// this) added.
/// It is also ssh's `ConnectTimeout`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// // The latest a remote `npipe::call(name, request, timeout)` can end.
/// let timeout = Duration::from_secs(2);
/// let latest = Instant::now() + timeout + npipe::REMOTE_SETUP;
/// # let _ = latest;
/// ```
pub const REMOTE_SETUP: Duration = Duration::from_secs(15);
pub use inspect::{inspect, list, PipeInfo, PipeState};
pub use listener::{Incoming, Listener};
pub use name::{Address, PipeName, ToPipeName, MAX_NAME_LEN};
pub use options::{
    Access, ConnectOptions, Direction, ListenerOptions, Mode, DEFAULT_BUFFER_SIZE,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE, DEFAULT_PENDING_INSTANCES,
};
pub use peer::PeerCredentials;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use server::{
    Cancellation, Request, Response, Server, ServerBuilder, ServerHandle, SpawnedServer, Stats,
};
pub use stream::Stream;

/// Waits until a server owns the pipe (`WaitNamedPipe`), up to `timeout`.
///
/// It does not connect (on Linux it asks the kernel which sockets listen, with
/// `sock_diag`), so the server sees no connection. "Live" means what it means for
/// [`inspect`] and [`list`]: a listening socket is bound to the very file now at the
/// pipe's path, so a server whose socket file was deleted or replaced is not waited
/// for. As on Windows, another client may take the free instance before this
/// caller connects.
///
/// On Unix, for `\\HOST\pipe\NAME` it runs `npipe wait NAME` on HOST through
/// ssh (as [`ConnectOptions::connect`] runs `npipe bridge`): `timeout` is the
/// wait there, and ssh has up to 15 s more to connect and log in.
///
/// # Errors
///
/// - [`ErrorKind::Timeout`]: no server appeared within `timeout`.
/// - [`ErrorKind::InvalidName`], [`ErrorKind::Unsupported`]: as for names.
/// - Windows, `\\HOST\pipe\NAME` (asked of HOST through SMB): errors on the way to
///   HOST, at once, as for [`ConnectOptions::connect`].
/// - A remote pipe on Unix: as for [`ConnectOptions::connect`] of one.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// npipe::wait("demo", Duration::from_secs(10))?;
/// let stream = npipe::Stream::connect("demo")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait(name: impl ToPipeName, timeout: Duration) -> io::Result<()> {
    let name = name.to_pipe_name()?;
    #[cfg(unix)]
    if let Some(host) = name.host() {
        return sys::wait_remote(host, name.as_str(), timeout);
    }
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        if sys::is_listening(&name)? {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(error::err(
                ErrorKind::Timeout,
                format!(
                    "no server created pipe {name} within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
        thread::sleep(backoff.min(deadline - now));
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// One transaction on a message pipe (`CallNamedPipe`): connect, send `request`,
/// receive one reply, close. `timeout` bounds the whole call: waiting for the pipe
/// or a free instance, sending and receiving, however the server paces its bytes.
/// For a remote pipe on Unix (through ssh), connecting to HOST and logging in
/// come on top (up to 15 s).
///
/// # Errors
///
/// - Connect errors as for [`ConnectOptions::connect`] (`NotFound`, `PipeBusy`, ...).
/// - [`ErrorKind::Timeout`]: the request was not sent, or the whole reply not
///   received, within `timeout`.
/// - [`ErrorKind::Disconnected`]: the server closed without replying.
/// - [`ErrorKind::MessageTooLarge`]: the request or reply exceeds 16 MiB.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// let reply = npipe::call("demo", b"ping", Duration::from_secs(5))?;
/// println!("{}", String::from_utf8_lossy(&reply));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn call(name: impl ToPipeName, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    call_impl(&name.to_pipe_name()?, request, timeout)
}

/// Windows has the transaction in one system call (`TransactNamedPipe`).
#[cfg(windows)]
fn call_impl(name: &PipeName, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    sys::call(name, request, timeout)
}

#[cfg(unix)]
fn call_impl(name: &PipeName, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let start = Instant::now();
    let mut stream = ConnectOptions::new().timeout(timeout).connect(name)?;
    // Through ssh, the time the login took comes on top (REMOTE_SETUP at most).
    let login = match name.host() {
        Some(_) => start.elapsed().min(REMOTE_SETUP),
        None => Duration::ZERO,
    };
    stream.set_deadline(start.checked_add(timeout + login));
    stream.send(request)?;
    let mut reply = Vec::new();
    match stream.recv(&mut reply)? {
        Some(_) => Ok(reply),
        None => Err(error::err(
            ErrorKind::Disconnected,
            "the server closed the connection without replying",
        )),
    }
}

/// Whether a service manager passed listening sockets to this process (systemd
/// socket activation: `LISTEN_PID` is this process and `LISTEN_FDS` at least 1),
/// for [`Listener::from_activation`], its tokio twin and the managed server's
/// `ServerBuilder::activation` to serve. Also `true` when the variables are
/// malformed (`LISTEN_FDS` not a number or beyond the descriptor limit,
/// `LISTEN_FDNAMES` not one name per descriptor, `LISTEN_PID` not a process id):
/// then `from_activation` fails saying why, rather than the program quietly
/// creating a socket of its own beside the one it was given.
///
/// The variables are read once per process, by the first call of this function
/// or of a `from_activation`; npipe never changes them. A program that does not
/// want its children to see them (as `sd_listen_fds(3)` does with
/// `unset_environment`) removes them itself after that first call and before it
/// starts any thread — `std::env::remove_var` is not safe while other threads
/// may read the environment; `npipe serve` does so. The variables are harmless
/// to children anyway (`LISTEN_PID` is not theirs, and npipe makes every passed
/// socket close-on-exec when it reads them).
///
/// # Examples
///
/// ```no_run
/// use npipe::{Listener, ListenerOptions};
///
/// let options = ListenerOptions::new();
/// let listener = if npipe::is_socket_activated() {
///     Listener::from_activation("/run/orders/api.sock", &options)?
/// } else {
///     options.create("/run/orders/api.sock")?
/// };
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// ## Platform-specific behavior
///
/// Always `false` on Windows.
pub fn is_socket_activated() -> bool {
    #[cfg(unix)]
    return sys::is_activated();
    #[cfg(windows)]
    false
}
