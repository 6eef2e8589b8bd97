//! `npipe*`: npipe's own message mode (blocking, Tokio, and the managed
//! `npipe::Server`), where npipe frames messages itself, so `send`/`recv` just
//! call the library; and npipe's byte mode, framed by the harness like `raw`.
//!
//! Names: the harness address is where npipe puts pipe `bench-<pid>-<n>.sock`
//! (`/tmp/npipe-bench-<pid>-<n>.sock`, or `$NPIPE_DIR/bench-<pid>-<n>.sock`),
//! so the socket is exactly the file the harness removes, and the listener's
//! lock file (`.<file name>.lock` beside it) is removed by the harness too (see
//! `orchestrate::PathGuard`), since the server process is killed and cannot
//! remove it itself. On Windows the address only carries the pipe name.

use std::io;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::roles;
use crate::transport::{
    AsyncConn, AsyncFramed, AsyncTransport, BlockingConn, BlockingTransport, Framed,
};
use crate::workload::Workload;

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

/// The npipe pipe name whose socket file is `addr` (`/tmp/npipe-NAME` or
/// `$NPIPE_DIR/NAME`). Cheap: clients call it for every connection of the
/// `connrate` rows.
fn pipe_name(addr: &str) -> io::Result<&str> {
    let file = Path::new(addr).file_name().and_then(|f| f.to_str());
    file.map(|f| f.strip_prefix("npipe-").unwrap_or(f))
        .ok_or_else(|| invalid(format!("{addr}: no pipe name in it")))
}

/// `pipe_name`, checked (once, by the server) to resolve back to `addr`, so
/// the harness never leaves files it does not know about.
pub fn server_pipe_name(addr: &str) -> io::Result<&str> {
    let name = pipe_name(addr)?;
    match npipe::PipeName::new(name)?.address()? {
        npipe::Address::Path(p) if p == Path::new(addr) => Ok(name),
        // A Windows pipe lives in the kernel's namespace: no file to leave.
        npipe::Address::Windows(_) => Ok(name),
        other => Err(invalid(format!(
            "pipe {name} resolves to {other}, not {addr}"
        ))),
    }
}

/// `NPIPE_BENCH_BUFFER_SIZE=BYTES` overrides npipe's default `buffer_size`
/// (SO_SNDBUF) in server and clients, `NPIPE_BENCH_PENDING=N` its
/// `pending_instances` (the accept queue): the knobs for the experiments in the
/// README. Unset: npipe's defaults, as a user gets them.
fn knob(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

fn listener_options() -> npipe::ListenerOptions {
    let mut o = npipe::ListenerOptions::new();
    if let Some(p) = knob("NPIPE_BENCH_PENDING") {
        o.pending_instances(u32::try_from(p).unwrap_or(u32::MAX));
    }
    if let Some(b) = knob("NPIPE_BENCH_BUFFER_SIZE") {
        o.buffer_size(b);
    }
    o
}

/// Built once per process: clients connect many times, and looking the knobs
/// up each time would be the harness's cost, not npipe's.
fn connect_options() -> npipe::ConnectOptions {
    static OPTIONS: OnceLock<npipe::ConnectOptions> = OnceLock::new();
    OPTIONS
        .get_or_init(|| {
            let mut o = npipe::ConnectOptions::new();
            if let Some(b) = knob("NPIPE_BENCH_BUFFER_SIZE") {
                o.buffer_size(b);
            }
            o
        })
        .clone()
}

/// Blocking API: `npipe::Listener` / `npipe::Stream`, message mode.
#[derive(Debug)]
pub struct NpipeBlocking;

impl BlockingConn for npipe::Stream {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        npipe::Stream::send(self, msg)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        npipe::Stream::recv(self, buf).map(|r| r.is_some())
    }
}

impl BlockingTransport for NpipeBlocking {
    // `accept` takes `&self` and may be called from several threads at once.
    type Listener = npipe::Listener;
    type Conn = npipe::Stream;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        listener_options().create(server_pipe_name(addr)?)
    }
    fn accept(listener: &Self::Listener) -> io::Result<Self::Conn> {
        listener.accept()
    }
    fn connect(addr: &str) -> io::Result<Self::Conn> {
        connect_options().connect(pipe_name(addr)?)
    }
}

/// As [`NpipeBlocking`], with `pending_instances(64)`: room in the accept
/// queue for bursts of clients (std's `UnixListener` queues 128), where the
/// default is 4 (DESIGN.md). For the `connrate-8c` row, beside the default.
#[derive(Debug)]
pub struct NpipeDeepQueue;

impl BlockingTransport for NpipeDeepQueue {
    type Listener = npipe::Listener;
    type Conn = npipe::Stream;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        let mut options = listener_options();
        options.pending_instances(64);
        options.create(server_pipe_name(addr)?)
    }
    fn accept(listener: &Self::Listener) -> io::Result<Self::Conn> {
        listener.accept()
    }
    fn connect(addr: &str) -> io::Result<Self::Conn> {
        NpipeBlocking::connect(addr)
    }
}

/// Tokio API: `npipe::tokio::{Listener, Stream}`, message mode.
#[derive(Debug)]
pub struct NpipeTokio;

impl AsyncConn for npipe::tokio::Stream {
    async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        npipe::tokio::Stream::send(self, msg).await
    }
    async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        npipe::tokio::Stream::recv(self, buf)
            .await
            .map(|r| r.is_some())
    }
}

impl AsyncTransport for NpipeTokio {
    type Listener = npipe::tokio::Listener;
    type Conn = npipe::tokio::Stream;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        npipe::tokio::Listener::bind_with(server_pipe_name(addr)?, &listener_options())
    }
    async fn accept(listener: &mut Self::Listener) -> io::Result<Self::Conn> {
        listener.accept().await
    }
    async fn connect(addr: &str) -> io::Result<Self::Conn> {
        npipe::tokio::Stream::connect_with(pipe_name(addr)?, &connect_options()).await
    }
}

/// Blocking API in byte mode: the plain stream npipe gives (nothing added on
/// the wire), framed by the harness exactly as the `raw` rows frame a
/// `UnixStream` (one `writev` per message, a 64 KiB read buffer).
#[derive(Debug)]
pub struct NpipeBytes;

fn byte_mode_listener() -> npipe::ListenerOptions {
    let mut o = listener_options();
    o.mode(npipe::Mode::Byte);
    o
}

fn byte_mode_connect() -> npipe::ConnectOptions {
    let mut o = connect_options();
    o.mode(npipe::Mode::Byte);
    o
}

impl BlockingTransport for NpipeBytes {
    type Listener = npipe::Listener;
    type Conn = Framed<npipe::Stream>;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        byte_mode_listener().create(server_pipe_name(addr)?)
    }
    fn accept(listener: &Self::Listener) -> io::Result<Self::Conn> {
        listener.accept().map(Framed::new)
    }
    fn connect(addr: &str) -> io::Result<Self::Conn> {
        byte_mode_connect()
            .connect(pipe_name(addr)?)
            .map(Framed::new)
    }
}

/// Tokio API in byte mode, framed by the harness as the `tokio-*` rows frame
/// tokio's `UnixStream`.
#[derive(Debug)]
pub struct NpipeTokioBytes;

impl AsyncTransport for NpipeTokioBytes {
    type Listener = npipe::tokio::Listener;
    type Conn = AsyncFramed<npipe::tokio::Stream>;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        npipe::tokio::Listener::bind_with(server_pipe_name(addr)?, &byte_mode_listener())
    }
    async fn accept(listener: &mut Self::Listener) -> io::Result<Self::Conn> {
        listener.accept().await.map(AsyncFramed::new)
    }
    async fn connect(addr: &str) -> io::Result<Self::Conn> {
        npipe::tokio::Stream::connect_with(pipe_name(addr)?, &byte_mode_connect())
            .await
            .map(AsyncFramed::new)
    }
}

/// Which handler a managed-server row gives `npipe::Server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedHandler {
    /// `ServerBuilder::handler` (a sync fn, run on Tokio's blocking pool).
    Sync,
    /// `ServerBuilder::async_handler`.
    Async,
}

/// Server process body for the managed rows: `npipe::Server` started with
/// `ServerBuilder::spawn` (its own multi-thread runtime, default options), the
/// echo handler every other row uses for `rtt`, `connrate` and `reqresp`.
pub fn server_managed(addr: &str, w: &Workload, handler: ManagedHandler) -> Result<()> {
    anyhow::ensure!(
        w.handler() == crate::workload::Handler::Echo,
        "the managed server rows only run request/reply workloads"
    );
    let builder = npipe::Server::builder(server_pipe_name(addr)?).options(listener_options());
    let builder = match handler {
        ManagedHandler::Sync => builder.handler(|req| npipe::Response::from(req.into_body())),
        ManagedHandler::Async => {
            builder.async_handler(|req| async move { npipe::Response::from(req.into_body()) })
        }
    };
    // `NPIPE_BENCH_WORKERS=N`: the runtime's worker threads (default: one per CPU).
    let builder = match std::env::var("NPIPE_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => builder.worker_threads(n),
        None => builder,
    };
    let server = builder.spawn().with_context(|| format!("serve {addr}"))?;
    roles::ready()?;
    server.join().context("server stopped")?;
    Ok(())
}
