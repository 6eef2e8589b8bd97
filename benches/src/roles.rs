//! What the child processes do: generic server and client loops, written once
//! against the transport traits, and the hidden commands that start them.
//!
//! Child protocol (stdout, one line each): the server prints `ready` once it
//! listens. A client prints `ready` once its persistent connections are open,
//! waits for `go` on stdin, runs, and prints one JSON [`ClientReport`]. Either
//! ends when its stdin closes (the orchestrator is gone), so none outlives it.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::hist::{Hist, Latency};
use crate::transport::{AsyncConn, AsyncTransport, BlockingConn, BlockingTransport};
use crate::util::clock_ns;
use crate::workload::{Handler, Workload, SMALL};
use crate::{registry, util};

/// The hidden command of a server process.
pub const SERVER: &str = "__bench-server";
/// The hidden command of a client process.
pub const CLIENT: &str = "__bench-client";

/// The hidden commands of the child processes, for the command line of every
/// program that runs the harness (`npipe-bench`, `npipe`).
#[derive(Debug, clap::Subcommand)]
pub enum Role {
    #[command(name = SERVER, hide = true)]
    Server(RoleArgs),
    #[command(name = CLIENT, hide = true)]
    Client(RoleArgs),
}

#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    transport: String,
    /// The workload as JSON.
    workload: String,
    addr: String,
    #[arg(long)]
    cpu: Option<usize>,
}

/// Runs a child process's role; a server runs until it is killed or its stdin
/// closes.
pub fn child_main(role: Role) -> Result<()> {
    let (is_server, a) = match role {
        Role::Server(a) => (true, a),
        Role::Client(a) => (false, a),
    };
    // Pin before any thread (runtime, workers) exists so all inherit it.
    if let Some(cpu) = a.cpu {
        util::pin_to_cpu(cpu)?;
    }
    let entry = registry::find(&a.transport)
        .with_context(|| format!("unknown transport {:?}", a.transport))?;
    let w: Workload = serde_json::from_str(&a.workload).context("workload JSON")?;
    if is_server {
        exit_when_stdin_closes();
        entry.run_server(&a.addr, &w)
    } else {
        let r = entry.run_client(&a.addr, &w)?;
        print_report(&r)
    }
}

/// Ends this process once its stdin closes: the orchestrator holds the other
/// end, so the process goes with it, on every OS, even when the orchestrator
/// was killed and could not kill it.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
}

/// How a blocking server serves connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerModel {
    /// One connection at a time on the main thread.
    Iterative,
    /// N threads all blocking in `accept` on the shared listener, each
    /// serving its connection to completion.
    Pool(usize),
    /// Accept on the main thread, one thread per connection.
    ThreadPerConn,
}

/// Tokio runtime flavour (used by both the server and the client processes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

/// What a client process reports back to the orchestrator.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// CLOCK_MONOTONIC ns when the measured phase started / ended.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Round trips, messages or connections completed in the measured phase.
    pub ops: u64,
    /// Payload bytes moved in the measured phase (throughput workload).
    pub bytes: u64,
    /// Per-operation latency (ns), where the workload times operations.
    pub hist: Hist,
    /// Exact median and p99 (ns) from the raw samples (latency workload).
    pub exact_p50_p99: Option<(u64, u64)>,
}

/// Tell the orchestrator this process is listening / connected.
pub fn ready() -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

fn ready_and_wait_go() -> Result<()> {
    ready()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    ensure!(line.trim() == "go", "expected `go` on stdin, got {line:?}");
    exit_when_stdin_closes();
    Ok(())
}

fn print_report(r: &ClientReport) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, r)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn eof() -> anyhow::Error {
    anyhow::anyhow!("connection closed by server")
}

/// Round trips kept exactly up to this many (8 MiB); a latency workload
/// measured for a duration (`npipe bench latency --duration 1h`) may make more.
const EXACT_MAX: u64 = 1 << 20;

/// The round-trip times of the latency workload: all in a histogram, and the
/// first [`EXACT_MAX`] exactly, for an exact median and p99 when they all fit.
struct RoundTrips {
    start_ns: u64,
    exact: Vec<u64>,
    hist: Hist,
}

impl RoundTrips {
    /// Starts the measured phase of at most `iters` round trips.
    fn new(iters: u64) -> RoundTrips {
        RoundTrips {
            start_ns: clock_ns(),
            exact: Vec::with_capacity(iters.min(EXACT_MAX) as usize),
            hist: Hist::default(),
        }
    }

    fn record(&mut self, ns: u64) {
        if (self.exact.len() as u64) < EXACT_MAX {
            self.exact.push(ns);
        }
        self.hist.record(ns);
    }

    fn report(mut self) -> ClientReport {
        let ops = self.hist.len();
        let all_kept = ops > 0 && self.exact.len() as u64 == ops;
        let exact = all_kept.then(|| {
            let l = Latency::of(&mut self.exact);
            (l.p50_ns, l.p99_ns)
        });
        ClientReport {
            start_ns: self.start_ns,
            end_ns: clock_ns(),
            ops,
            bytes: 0,
            hist: self.hist,
            exact_p50_p99: exact,
        }
    }
}

fn rate_report(hists: Vec<(u64, Hist)>, start_ns: u64) -> ClientReport {
    let end_ns = clock_ns();
    let mut hist = Hist::default();
    let mut ops = 0;
    for (n, h) in hists {
        ops += n;
        hist.merge(&h);
    }
    ClientReport {
        start_ns,
        end_ns,
        ops,
        bytes: 0,
        hist,
        exact_p50_p99: None,
    }
}

fn check_ack(buf: &[u8], sent: u64) -> Result<()> {
    ensure!(buf.len() == 8, "bad ack length {}", buf.len());
    let got = u64::from_le_bytes(buf.try_into().unwrap());
    ensure!(got == sent, "server acked {got} bytes, client sent {sent}");
    Ok(())
}

// ---------------------------------------------------------------- blocking

fn serve_conn_blocking<C: BlockingConn>(mut c: C, handler: Handler) -> io::Result<()> {
    let mut buf = Vec::with_capacity(SMALL);
    match handler {
        Handler::Echo => {
            while c.recv(&mut buf)? {
                c.send(&buf)?;
            }
        }
        Handler::Sink => {
            let mut total = 0u64;
            while c.recv(&mut buf)? {
                if buf.is_empty() {
                    c.send(&total.to_le_bytes())?;
                    total = 0;
                } else {
                    total += buf.len() as u64;
                }
            }
        }
    }
    Ok(())
}

/// Server process body for a blocking transport. Never returns on success:
/// the orchestrator kills the server when the run is over.
pub fn server_blocking<T: BlockingTransport>(
    addr: &str,
    w: &Workload,
    model: ServerModel,
) -> Result<()> {
    let handler = w.handler();
    let model = match model {
        ServerModel::Iterative if w.needs_concurrency() => ServerModel::ThreadPerConn,
        m => m,
    };
    let listener = T::bind(addr).with_context(|| format!("bind {addr}"))?;
    ready()?;
    // Per-connection errors (e.g. a client killed mid-run) are not fatal.
    match model {
        ServerModel::Iterative => loop {
            let c = T::accept(&listener).context("accept")?;
            let _ = serve_conn_blocking(c, handler);
        },
        ServerModel::ThreadPerConn => loop {
            let c = T::accept(&listener).context("accept")?;
            std::thread::spawn(move || serve_conn_blocking(c, handler));
        },
        ServerModel::Pool(n) => std::thread::scope(|s| {
            let workers: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let c = T::accept(&listener).context("accept")?;
                            let _ = serve_conn_blocking(c, handler);
                        }
                    })
                })
                .collect();
            for h in workers {
                h.join().expect("server worker panicked")?;
            }
            Ok(())
        }),
    }
}

fn round_trip<C: BlockingConn>(c: &mut C, msg: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    c.send(msg)?;
    if !c.recv(buf)? {
        return Err(eof());
    }
    ensure!(buf.len() == msg.len(), "echo length mismatch");
    Ok(())
}

/// Client process body for a blocking transport.
pub fn client_blocking<T: BlockingTransport>(addr: &str, w: &Workload) -> Result<ClientReport> {
    let mut conns = (0..w.preconnect())
        .map(|_| T::connect(addr).with_context(|| format!("connect {addr}")))
        .collect::<Result<Vec<_>>>()?;
    ready_and_wait_go()?;
    match *w {
        Workload::Latency {
            size,
            warmup,
            iters,
            max_ms,
        } => {
            let c = &mut conns[0];
            let msg = vec![0x5a; size];
            let mut buf = Vec::with_capacity(size);
            for _ in 0..warmup {
                round_trip(c, &msg, &mut buf)?;
            }
            let mut samples = RoundTrips::new(iters);
            let deadline = Instant::now() + Duration::from_millis(max_ms);
            for _ in 0..iters {
                let t = Instant::now();
                round_trip(c, &msg, &mut buf)?;
                let now = Instant::now();
                samples.record((now - t).as_nanos() as u64);
                if now >= deadline {
                    break;
                }
            }
            Ok(samples.report())
        }
        Workload::Throughput {
            size,
            warmup_ms,
            dur_ms,
        } => {
            let c = &mut conns[0];
            let msg = vec![0xa5; size];
            let mut buf = Vec::with_capacity(8);
            let mut sent = 0u64;
            let warm_until = Instant::now() + Duration::from_millis(warmup_ms);
            while Instant::now() < warm_until {
                c.send(&msg)?;
                sent += size as u64;
            }
            // Drain: the measured phase starts with an empty pipe.
            c.send(&[])?;
            if !c.recv(&mut buf)? {
                return Err(eof());
            }
            check_ack(&buf, sent)?;
            let start_ns = clock_ns();
            let until = Instant::now() + Duration::from_millis(dur_ms);
            let (mut sent, mut ops) = (0u64, 0u64);
            loop {
                c.send(&msg)?;
                sent += size as u64;
                ops += 1;
                if Instant::now() >= until {
                    break;
                }
            }
            c.send(&[])?;
            if !c.recv(&mut buf)? {
                return Err(eof());
            }
            let end_ns = clock_ns();
            check_ack(&buf, sent)?;
            Ok(ClientReport {
                start_ns,
                end_ns,
                ops,
                bytes: sent,
                ..Default::default()
            })
        }
        Workload::ConnRate { size, dur_ms, .. } => {
            let msg = vec![0x11u8; size];
            let mut buf = Vec::with_capacity(size);
            let mut hist = Hist::default();
            let mut ops = 0;
            let start_ns = clock_ns();
            let until = Instant::now() + Duration::from_millis(dur_ms);
            loop {
                let t = Instant::now();
                let mut c = T::connect(addr).context("connect")?;
                round_trip(&mut c, &msg, &mut buf)?;
                drop(c);
                let now = Instant::now();
                hist.record((now - t).as_nanos() as u64);
                ops += 1;
                if now >= until {
                    break;
                }
            }
            Ok(rate_report(vec![(ops, hist)], start_ns))
        }
        Workload::ReqResp { dur_ms, .. } => {
            let start_ns = clock_ns();
            let until = Instant::now() + Duration::from_millis(dur_ms);
            let results = std::thread::scope(|s| {
                let handles: Vec<_> = conns
                    .iter_mut()
                    .map(|c| {
                        s.spawn(move || -> Result<(u64, Hist)> {
                            let msg = [0x22u8; SMALL];
                            let mut buf = Vec::with_capacity(SMALL);
                            let mut hist = Hist::default();
                            let mut ops = 0;
                            loop {
                                let t = Instant::now();
                                round_trip(c, &msg, &mut buf)?;
                                let now = Instant::now();
                                hist.record((now - t).as_nanos() as u64);
                                ops += 1;
                                if now >= until {
                                    return Ok((ops, hist));
                                }
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("client thread panicked"))
                    .collect::<Result<Vec<_>>>()
            })?;
            Ok(rate_report(results, start_ns))
        }
    }
}

// ---------------------------------------------------------------- async

fn runtime(flavor: Flavor) -> Result<tokio::runtime::Runtime> {
    let mut b = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(b.enable_all().build()?)
}

async fn serve_conn_async<C: AsyncConn>(mut c: C, handler: Handler) -> io::Result<()> {
    let mut buf = Vec::with_capacity(SMALL);
    match handler {
        Handler::Echo => {
            while c.recv(&mut buf).await? {
                c.send(&buf).await?;
            }
        }
        Handler::Sink => {
            let mut total = 0u64;
            while c.recv(&mut buf).await? {
                if buf.is_empty() {
                    c.send(&total.to_le_bytes()).await?;
                    total = 0;
                } else {
                    total += buf.len() as u64;
                }
            }
        }
    }
    Ok(())
}

/// Server process body for an async transport: accept loop spawning one task
/// per connection.
pub fn server_async<T: AsyncTransport>(addr: &str, w: &Workload, flavor: Flavor) -> Result<()> {
    let handler = w.handler();
    runtime(flavor)?.block_on(async {
        let mut listener = T::bind(addr).with_context(|| format!("bind {addr}"))?;
        ready()?;
        loop {
            let c = T::accept(&mut listener).await.context("accept")?;
            tokio::spawn(serve_conn_async(c, handler));
        }
    })
}

async fn round_trip_async<C: AsyncConn>(c: &mut C, msg: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    c.send(msg).await?;
    if !c.recv(buf).await? {
        return Err(eof());
    }
    ensure!(buf.len() == msg.len(), "echo length mismatch");
    Ok(())
}

async fn conn_loop_async<C: AsyncConn>(mut c: C, until: Instant) -> Result<(u64, Hist)> {
    let msg = [0x22u8; SMALL];
    let mut buf = Vec::with_capacity(SMALL);
    let mut hist = Hist::default();
    let mut ops = 0;
    loop {
        let t = Instant::now();
        round_trip_async(&mut c, &msg, &mut buf).await?;
        let now = Instant::now();
        hist.record((now - t).as_nanos() as u64);
        ops += 1;
        if now >= until {
            return Ok((ops, hist));
        }
    }
}

/// Client process body for an async transport.
pub fn client_async<T: AsyncTransport>(
    addr: &str,
    w: &Workload,
    flavor: Flavor,
) -> Result<ClientReport> {
    let rt = runtime(flavor)?;
    let mut conns = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..w.preconnect() {
            v.push(
                T::connect(addr)
                    .await
                    .with_context(|| format!("connect {addr}"))?,
            );
        }
        anyhow::Ok(v)
    })?;
    ready_and_wait_go()?;
    rt.block_on(async move {
        match *w {
            Workload::Latency {
                size,
                warmup,
                iters,
                max_ms,
            } => {
                let c = &mut conns[0];
                let msg = vec![0x5a; size];
                let mut buf = Vec::with_capacity(size);
                for _ in 0..warmup {
                    round_trip_async(c, &msg, &mut buf).await?;
                }
                let mut samples = RoundTrips::new(iters);
                let deadline = Instant::now() + Duration::from_millis(max_ms);
                for _ in 0..iters {
                    let t = Instant::now();
                    round_trip_async(c, &msg, &mut buf).await?;
                    let now = Instant::now();
                    samples.record((now - t).as_nanos() as u64);
                    if now >= deadline {
                        break;
                    }
                }
                Ok(samples.report())
            }
            Workload::Throughput {
                size,
                warmup_ms,
                dur_ms,
            } => {
                let c = &mut conns[0];
                let msg = vec![0xa5; size];
                let mut buf = Vec::with_capacity(8);
                let mut sent = 0u64;
                let warm_until = Instant::now() + Duration::from_millis(warmup_ms);
                while Instant::now() < warm_until {
                    c.send(&msg).await?;
                    sent += size as u64;
                }
                c.send(&[]).await?;
                if !c.recv(&mut buf).await? {
                    return Err(eof());
                }
                check_ack(&buf, sent)?;
                let start_ns = clock_ns();
                let until = Instant::now() + Duration::from_millis(dur_ms);
                let (mut sent, mut ops) = (0u64, 0u64);
                loop {
                    c.send(&msg).await?;
                    sent += size as u64;
                    ops += 1;
                    if Instant::now() >= until {
                        break;
                    }
                }
                c.send(&[]).await?;
                if !c.recv(&mut buf).await? {
                    return Err(eof());
                }
                let end_ns = clock_ns();
                check_ack(&buf, sent)?;
                Ok(ClientReport {
                    start_ns,
                    end_ns,
                    ops,
                    bytes: sent,
                    ..Default::default()
                })
            }
            Workload::ConnRate { size, dur_ms, .. } => {
                let msg = vec![0x11u8; size];
                let mut buf = Vec::with_capacity(size);
                let mut hist = Hist::default();
                let mut ops = 0;
                let start_ns = clock_ns();
                let until = Instant::now() + Duration::from_millis(dur_ms);
                loop {
                    let t = Instant::now();
                    let mut c = T::connect(addr).await.context("connect")?;
                    round_trip_async(&mut c, &msg, &mut buf).await?;
                    drop(c);
                    let now = Instant::now();
                    hist.record((now - t).as_nanos() as u64);
                    ops += 1;
                    if now >= until {
                        break;
                    }
                }
                Ok(rate_report(vec![(ops, hist)], start_ns))
            }
            Workload::ReqResp { dur_ms, .. } => {
                let start_ns = clock_ns();
                let until = Instant::now() + Duration::from_millis(dur_ms);
                let tasks: Vec<_> = conns
                    .into_iter()
                    .map(|c| tokio::spawn(conn_loop_async(c, until)))
                    .collect();
                let mut results = Vec::with_capacity(tasks.len());
                for t in tasks {
                    results.push(t.await.context("client task panicked")??);
                }
                Ok(rate_report(results, start_ns))
            }
        }
    })
}
