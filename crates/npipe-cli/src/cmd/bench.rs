//! `npipe bench`: latency, throughput and connection rate of npipe across processes.
//!
//! The parent only orchestrates: it re-executes this binary as a server process
//! (`__bench-server`, a blocking `npipe::Listener` with a thread per connection)
//! and as client processes (`__bench-client`), starts the clients together, shows
//! progress from their reports, and prints one row per workload.
//!
//! Child protocol (one line each, on stdout): the server prints `ready` once
//! listening and stops when its stdin closes; a client prints `ready` once connected,
//! starts at `go` on its stdin, prints `progress OPS` about every 100 ms and ends
//! with `result {json}`.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::child::{self, Event, Worker};
use crate::cmd::{print_json, write_stdout};
use crate::exit;
use crate::stats::{Latency, Reservoir};
use crate::table::table;
use crate::units::{format_duration, format_size, parse_duration, parse_size_usize};

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe bench                         # all three workloads, about 4 s
  npipe bench latency --duration 5s
  npipe bench throughput --block 1MiB
  npipe bench connect-rate --clients 8
  npipe bench --json > bench.json
  npipe bench --baselines -- --quick  # the full harness: raw sockets, interprocess, tokio

Workloads (message mode; server and clients are separate processes):
  latency       one connection, ping-pong of --size bytes; round-trip percentiles
  throughput    one connection streams --block-byte messages; bytes/s the server read
  connect-rate  --clients processes loop connect / request / reply / close;
                connections/s and the latency of a whole connection

Rates use wall-clock time of the measured phase; percentiles are nearest-rank over up
to 100,000 samples per client. `--baselines` runs the full harness of benches/
(npipe against raw Unix sockets, interprocess and tokio) instead.";

/// Which measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// Round trips on one connection.
    Latency,
    /// One-way streaming on one connection.
    Throughput,
    /// New connection per request, several client processes.
    ConnectRate,
}

impl Workload {
    fn as_str(self) -> &'static str {
        match self {
            Workload::Latency => "latency",
            Workload::Throughput => "throughput",
            Workload::ConnectRate => "connect-rate",
        }
    }
}

/// `npipe bench` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Workloads to run (default: all).
    #[arg(value_enum)]
    pub(crate) workloads: Vec<Workload>,

    /// How long each workload is measured.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) duration: Duration,

    /// Request size for latency and connect-rate.
    #[arg(short, long, default_value = "64", value_parser = parse_size_usize, value_name = "BYTES")]
    pub(crate) size: usize,

    /// Message size for throughput.
    #[arg(short, long, default_value = "64KiB", value_parser = parse_size_usize, value_name = "BYTES")]
    pub(crate) block: usize,

    /// Client processes for connect-rate.
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) clients: u32,

    /// Print a JSON array of results instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Run the full harness instead: npipe against raw Unix sockets, `interprocess`
    /// and tokio (the `npipe-bench` program next to this one; arguments after `--`
    /// go to it, e.g. `npipe bench --baselines -- --quick`).
    #[arg(long, conflicts_with_all = ["workloads", "json"])]
    pub(crate) baselines: bool,

    /// Arguments for `npipe-bench` (with --baselines).
    #[arg(last = true, requires = "baselines", value_name = "HARNESS ARGS")]
    pub(crate) harness_args: Vec<String>,
}

/// One workload's result, as printed by `--json`.
#[derive(Debug, Serialize)]
struct Row {
    workload: Workload,
    message_bytes: usize,
    clients: u32,
    elapsed_s: f64,
    operations: u64,
    operations_per_s: f64,
    bytes_per_s: f64,
    latency: Latency,
}

/// What a client process reports at the end.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ClientReport {
    operations: u64,
    bytes: u64,
    elapsed_ns: u64,
    samples: Vec<u64>,
}

/// Runs `npipe bench`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.baselines {
        return run_harness(&args.harness_args);
    }
    let mut workloads = args.workloads.clone();
    if workloads.is_empty() {
        workloads = vec![
            Workload::Latency,
            Workload::Throughput,
            Workload::ConnectRate,
        ];
    }
    workloads.dedup();
    let mut rows = Vec::new();
    for workload in workloads {
        rows.push(run_workload(workload, &args)?);
    }
    if args.json {
        print_json(&serde_json::to_value(&rows)?)?;
    } else {
        write_stdout(render(&rows).as_bytes())?;
    }
    Ok(exit::code(exit::SUCCESS))
}

/// `npipe bench --baselines`: runs the harness of `benches/`, built as the
/// `npipe-bench` binary into the same directory as `npipe`, with the terminal
/// handed over, and exits with its status.
fn run_harness(harness_args: &[String]) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot locate the npipe executable")?;
    let harness = exe.with_file_name(format!("npipe-bench{}", std::env::consts::EXE_SUFFIX));
    if !harness.is_file() {
        bail!(
            "the benchmark harness {} is not built; build it next to npipe with \
             `cargo build --release -p npipe-bench` (same target directory), or run \
             `cargo run --release -p npipe-bench -- ARGS` from the npipe repository",
            harness.display()
        );
    }
    let status = std::process::Command::new(&harness)
        .args(harness_args)
        .status()
        .with_context(|| format!("cannot run {}", harness.display()))?;
    Ok(match status.code() {
        Some(code) => exit::code(u8::try_from(code).unwrap_or(exit::FAILURE)),
        None => exit::code(exit::FAILURE),
    })
}

fn run_workload(workload: Workload, args: &Args) -> anyhow::Result<Row> {
    let (size, clients) = match workload {
        Workload::Latency => (args.size, 1),
        Workload::Throughput => (args.block, 1),
        Workload::ConnectRate => (args.size, args.clients),
    };
    let name = format!("bench-{}-{}", std::process::id(), workload.as_str());
    let size_arg = size.to_string();
    let (tx, rx) = mpsc::channel();

    let server_kind = if workload == Workload::Throughput {
        "sink"
    } else {
        "echo"
    };
    let mut server = child::spawn(
        0,
        &[
            "__bench-server".into(),
            name.clone(),
            "--kind".into(),
            server_kind.into(),
            "--max-message".into(),
            size_arg.clone(),
        ],
        tx.clone(),
    )?;
    expect_ready(&rx, &[0], "the bench server")?;

    let mut workers: Vec<Worker> = Vec::new();
    let ids: Vec<usize> = (1..=clients as usize).collect();
    for &id in &ids {
        workers.push(child::spawn(
            id,
            &[
                "__bench-client".into(),
                name.clone(),
                "--workload".into(),
                workload.as_str().into(),
                "--size".into(),
                size_arg.clone(),
                "--duration".into(),
                format!("{}ns", args.duration.as_nanos()),
            ],
            tx.clone(),
        )?);
    }
    drop(tx);
    expect_ready(&rx, &ids, "a bench client")?;

    let bar = ProgressBar::new(args.duration.as_millis().max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>13} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(workload.as_str());
    for worker in &mut workers {
        worker.tell("go")?;
    }
    let start = Instant::now();
    let limit = args.duration + Duration::from_secs(30);
    let mut progress: HashMap<usize, u64> = HashMap::new();
    let mut reports: HashMap<usize, ClientReport> = HashMap::new();
    while reports.len() < ids.len() {
        if start.elapsed() > limit {
            bar.abandon();
            bail!("{} bench clients did not finish in time", workload.as_str());
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Line(id, line)) => {
                if let Some(ops) = line.strip_prefix("progress ") {
                    progress.insert(id, ops.trim().parse().unwrap_or(0));
                } else if let Some(json) = line.strip_prefix("result ") {
                    let report: ClientReport =
                        serde_json::from_str(json).context("reading a bench client's report")?;
                    reports.insert(id, report);
                }
            }
            Ok(Event::Closed(id)) if id != 0 && !reports.contains_key(&id) => {
                bar.abandon();
                bail!("bench client {id} ended without a report (see its error above)");
            }
            Ok(Event::Closed(0)) => {
                bar.abandon();
                bail!("the bench server ended early (see its error above)");
            }
            Ok(Event::Closed(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        bar.set_position((start.elapsed().as_millis() as u64).min(bar.length().unwrap_or(0)));
        let ops: u64 = progress.values().sum();
        bar.set_message(format!("{ops} ops"));
    }
    bar.finish_and_clear();
    for worker in &mut workers {
        worker.wait()?;
    }
    server.stop(Duration::from_secs(2));

    let operations: u64 = reports.values().map(|r| r.operations).sum();
    let bytes: u64 = reports.values().map(|r| r.bytes).sum();
    let elapsed_ns = reports
        .values()
        .map(|r| r.elapsed_ns)
        .max()
        .unwrap_or(0)
        .max(1);
    let elapsed_s = elapsed_ns as f64 / 1e9;
    let mut samples: Vec<u64> = reports.into_values().flat_map(|r| r.samples).collect();
    Ok(Row {
        workload,
        message_bytes: size,
        clients,
        elapsed_s,
        operations,
        operations_per_s: operations as f64 / elapsed_s,
        bytes_per_s: bytes as f64 / elapsed_s,
        latency: Latency::of(&mut samples),
    })
}

/// Waits until each child in `ids` printed `ready`.
fn expect_ready(rx: &mpsc::Receiver<Event>, ids: &[usize], what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waiting: Vec<usize> = ids.to_vec();
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Line(id, line)) if line == "ready" => waiting.retain(|w| *w != id),
            Ok(Event::Closed(id)) if waiting.contains(&id) => {
                bail!("{what} exited before it was ready (see its error above)")
            }
            Ok(_) => {}
            Err(_) => bail!("{what} did not get ready within 10 s"),
        }
    }
    Ok(())
}

fn render(rows: &[Row]) -> String {
    let header = [
        "WORKLOAD", "SIZE", "CLIENTS", "OPS", "RATE", "P50", "P90", "P99", "MAX",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let rate = match r.workload {
                Workload::Latency => format!("{:.0} round trips/s", r.operations_per_s),
                Workload::Throughput => format!(
                    "{}/s ({:.0} msg/s)",
                    format_size(r.bytes_per_s),
                    r.operations_per_s
                ),
                Workload::ConnectRate => format!("{:.0} connections/s", r.operations_per_s),
            };
            let lat = |d: Duration| {
                if r.latency.samples == 0 {
                    "-".to_owned()
                } else {
                    format_duration(d)
                }
            };
            [
                r.workload.as_str().to_owned(),
                format_size(r.message_bytes as f64),
                r.clients.to_string(),
                r.operations.to_string(),
                rate,
                lat(r.latency.p50()),
                lat(r.latency.p90()),
                lat(r.latency.p99()),
                lat(r.latency.max()),
            ]
        })
        .collect();
    table(&header, &cells)
}

/// `__bench-server` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    name: String,
    /// `echo` replies with each message; `sink` counts bytes and, on an empty
    /// message, replies with the count (8 bytes, little-endian).
    #[arg(long)]
    kind: String,
    #[arg(long, value_parser = parse_size_usize)]
    max_message: usize,
}

/// Runs the bench server process until its stdin closes.
pub(crate) fn run_server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let sink = match args.kind.as_str() {
        "echo" => false,
        "sink" => true,
        other => bail!("unknown bench server kind {other:?}"),
    };
    let max = u32::try_from(args.max_message.max(1024)).unwrap_or(u32::MAX);
    let listener = Arc::new(
        npipe::ListenerOptions::new()
            .max_message_size(max)
            .pending_instances(64)
            .create(args.name.as_str())
            .with_context(|| format!("creating pipe {}", args.name))?,
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let acceptor = {
        let listener = Arc::clone(&listener);
        let stopping = Arc::clone(&stopping);
        thread::spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        thread::spawn(move || serve_connection(stream, sink));
                    }
                    Err(_) if stopping.load(Ordering::Relaxed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            let _ = done_tx.send(());
        })
    };
    println!("ready");
    io::stdout().flush().ok();
    // Run until the parent closes our stdin.
    let mut line = String::new();
    while io::stdin()
        .lock()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {
        line.clear();
    }
    stopping.store(true, Ordering::Relaxed);
    wake_acceptor(&listener);
    if done_rx.recv_timeout(Duration::from_secs(1)).is_ok() {
        let _ = acceptor.join();
    }
    // Dropping the last handle removes the socket and lock files.
    drop(listener);
    Ok(exit::code(exit::SUCCESS))
}

/// Makes a blocked `accept` return (Linux: `shutdown` on a listening socket).
fn wake_acceptor(listener: &npipe::Listener) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let _ = nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
    #[cfg(not(unix))]
    let _ = listener;
}

fn serve_connection(mut stream: npipe::Stream, sink: bool) {
    let mut buf = Vec::new();
    let mut count: u64 = 0;
    while let Ok(Some(len)) = stream.recv(&mut buf) {
        let sent = if !sink {
            stream.send(&buf)
        } else if len == 0 {
            let reply = count.to_le_bytes();
            count = 0;
            stream.send(&reply)
        } else {
            count += len as u64;
            Ok(())
        };
        if sent.is_err() {
            return;
        }
    }
}

/// `__bench-client` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    name: String,
    #[arg(long, value_enum)]
    workload: Workload,
    #[arg(long, value_parser = parse_size_usize)]
    size: usize,
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
}

const MAX_SAMPLES: usize = 100_000;

/// Runs one bench client process.
pub(crate) fn run_client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let payload = vec![0xA5u8; args.size];
    let max = u32::try_from(args.size.max(1024)).unwrap_or(u32::MAX);
    let connect = || {
        npipe::ConnectOptions::new()
            .max_message_size(max)
            .connect(args.name.as_str())
            .with_context(|| format!("connecting to pipe {}", args.name))
    };
    let mut stream = match args.workload {
        Workload::ConnectRate => None,
        _ => Some(connect()?),
    };
    let mut reply = Vec::new();
    if let Some(stream) = stream.as_mut() {
        if args.workload == Workload::Latency {
            for _ in 0..100 {
                stream.send(&payload)?;
                stream.recv(&mut reply)?;
            }
        }
    }
    println!("ready");
    io::stdout().flush().ok();
    let mut go = String::new();
    io::stdin().lock().read_line(&mut go)?;
    if go.trim() != "go" {
        return Ok(exit::code(exit::FAILURE));
    }

    let mut samples = Reservoir::new(MAX_SAMPLES);
    let mut operations = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut next_report = start + Duration::from_millis(100);
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_report {
            println!("progress {operations}");
            io::stdout().flush().ok();
            next_report = now + Duration::from_millis(100);
        }
        match (args.workload, stream.as_mut()) {
            (Workload::Latency, Some(stream)) => {
                let t0 = Instant::now();
                stream.send(&payload)?;
                expect_reply(stream.recv(&mut reply)?)?;
                samples.push(t0.elapsed().as_nanos() as u64);
            }
            (Workload::Throughput, Some(stream)) => {
                stream.send(&payload)?;
            }
            _ => {
                let t0 = Instant::now();
                let mut conn = connect()?;
                conn.send(&payload)?;
                expect_reply(conn.recv(&mut reply)?)?;
                drop(conn);
                samples.push(t0.elapsed().as_nanos() as u64);
            }
        }
        operations += 1;
        bytes += payload.len() as u64;
    }
    if let (Workload::Throughput, Some(stream)) = (args.workload, stream.as_mut()) {
        // The server's count, so bytes still in the socket buffers are not counted.
        stream.send(&[])?;
        expect_reply(stream.recv(&mut reply)?)?;
        let count: [u8; 8] = reply
            .as_slice()
            .try_into()
            .context("the bench server's byte count is not 8 bytes")?;
        bytes = u64::from_le_bytes(count);
    }
    let report = ClientReport {
        operations,
        bytes,
        elapsed_ns: start.elapsed().as_nanos() as u64,
        samples: samples.into_samples(),
    };
    println!("result {}", serde_json::to_string(&report)?);
    io::stdout().flush().ok();
    Ok(exit::code(exit::SUCCESS))
}

fn expect_reply(received: Option<usize>) -> anyhow::Result<()> {
    match received {
        Some(_) => Ok(()),
        None => bail!("the bench server closed the connection"),
    }
}
