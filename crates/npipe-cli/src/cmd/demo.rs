//! `npipe demo`: the original article's demo in one command. A server answering
//! `Response to: <request>` (in this process, on `npipe::Server`) and several client
//! processes (this binary re-executed as `__demo-client`) exchanging requests, with
//! a live progress bar and a summary: requests, errors, latency percentiles,
//! throughput, and the server's own statistics.
//!
//! Client protocol (stdout lines): `ok NANOS` or `err CODE MESSAGE` per request,
//! where CODE is the exit code the error maps to (see `exit.rs`).

// `npipe::Server` is Unix-only so far: elsewhere only the client half is built.
#![cfg_attr(not(unix), allow(unused_imports, dead_code))]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use npipe_bench::child::{self, Child, Event, Stderr};
use npipe_bench::hist::Latency;

use crate::cmd::{print_json, write_stdout};
use crate::exit;
use crate::table::table;
use crate::units::{format_duration, parse_duration, parse_size_usize};

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe demo                          # 4 client processes x 1000 requests
  npipe demo --clients 8 --requests 1000 --persistent
  npipe demo --json | jq .latency_ns

The server runs in this process on npipe::Server; each client is a separate process
(this program re-executed). By default every request is a CallNamedPipe transaction
(connect, send, receive, close), the original client's pattern; --persistent keeps one
connection per client. Every reply is checked against \"Response to: <request>\".
Exit status 0 when every request succeeded, 1 otherwise.";

/// `npipe demo` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Client processes.
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) clients: u32,

    /// Requests per client.
    #[arg(short, long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) requests: u32,

    /// Pad each request to at least this size.
    #[arg(short, long, default_value = "0", value_parser = parse_size_usize, value_name = "BYTES")]
    pub(crate) size: usize,

    /// Keep one connection per client instead of one per request.
    #[arg(short, long)]
    pub(crate) persistent: bool,

    /// The pipe name (default: demo-PID).
    #[arg(long)]
    pub(crate) name: Option<String>,

    /// Each request's timeout (connect and reply).
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) timeout: Duration,

    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `__demo-client` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    name: String,
    #[arg(long)]
    id: u32,
    #[arg(long)]
    requests: u32,
    #[arg(long, value_parser = parse_size_usize)]
    size: usize,
    #[arg(long)]
    persistent: bool,
    #[arg(long, value_parser = parse_duration)]
    timeout: Duration,
}

/// Per-client tallies in the parent.
#[derive(Debug, Default)]
struct Tally {
    pid: u32,
    ok: u64,
    errors: u64,
    samples: Vec<u64>,
    first_error: Option<String>,
    finished: bool,
}

/// Runs `npipe demo`.
pub(crate) fn run(args: Args, verbose: u8) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("demo-{}", std::process::id()));
    let server = npipe::Server::builder(name.as_str())
        .pending_instances(args.clients.clamp(4, 64))
        .handler(|request| {
            let mut reply = b"Response to: ".to_vec();
            reply.extend_from_slice(request.body());
            npipe::Response::from(reply)
        })
        .worker_threads(2)
        .spawn()
        .with_context(|| format!("starting the demo server on pipe {name}"))?;
    let address = server.address().to_string();
    if !args.json {
        eprintln!(
            "npipe demo: server on {address}; {} client processes x {} requests ({})",
            args.clients,
            args.requests,
            if args.persistent {
                "one connection per client"
            } else {
                "one connection per request, like CallNamedPipe"
            }
        );
    }

    let (tx, rx) = mpsc::channel();
    let mut workers: Vec<Child> = Vec::new();
    let mut tallies: BTreeMap<usize, Tally> = BTreeMap::new();
    let started = Instant::now();
    for id in 1..=args.clients as usize {
        let mut argv = vec![
            "__demo-client".to_owned(),
            name.clone(),
            "--id".into(),
            id.to_string(),
            "--requests".into(),
            args.requests.to_string(),
            "--size".into(),
            args.size.to_string(),
            "--timeout".into(),
            format!("{}ns", args.timeout.as_nanos()),
        ];
        if args.persistent {
            argv.push("--persistent".into());
        }
        if verbose > 0 {
            argv.push(format!("-{}", "v".repeat(usize::from(verbose))));
        }
        let mut program = child::this_program()?;
        program.args(&argv);
        let what = format!("demo client {id}");
        let worker = child::spawn(id, what, program, Stderr::Inherit, tx.clone())?;
        tallies.insert(
            id,
            Tally {
                pid: worker.id(),
                ..Tally::default()
            },
        );
        workers.push(worker);
    }
    drop(tx);

    let total = u64::from(args.clients) * u64::from(args.requests);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:36}] {pos}/{len} requests  {per_sec:>12}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    // A whole run may take each request's timeout many times over if the server
    // stalls; past this the demo gives up rather than hang.
    let limit = Duration::from_secs(60) + args.timeout * 4;
    let mut errors = 0u64;
    let mut open = tallies.len();
    while open > 0 {
        if started.elapsed() > limit {
            bar.abandon();
            bail!(
                "the demo clients did not finish within {}",
                format_duration(limit)
            );
        }
        let event = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Line(id, line) => {
                let Some(tally) = tallies.get_mut(&id) else {
                    continue;
                };
                if let Some(nanos) = line.strip_prefix("ok ") {
                    tally.ok += 1;
                    tally.samples.push(nanos.trim().parse().unwrap_or(0));
                    bar.inc(1);
                } else if let Some(error) = line.strip_prefix("err ") {
                    tally.errors += 1;
                    errors += 1;
                    tally.first_error.get_or_insert_with(|| error.to_owned());
                    bar.inc(1);
                    bar.set_message(format!("{errors} errors"));
                } else if line == "done" {
                    tally.finished = true;
                }
            }
            Event::Closed(_) => open -= 1,
        }
    }
    let wall = started.elapsed();
    bar.finish_and_clear();

    let mut crashed = 0;
    for worker in &mut workers {
        if !worker.wait()? {
            crashed += 1;
        }
    }
    server.shutdown();
    let stats = server.stats();
    server.join().context("stopping the demo server")?;
    // Requests a crashed client never reported count as failed too.
    let reported: u64 = tallies.values().map(|t| t.ok + t.errors).sum();
    let missing = total.saturating_sub(reported);
    let failed = errors + missing;

    let mut all: Vec<u64> = tallies
        .values()
        .flat_map(|t| t.samples.iter().copied())
        .collect();
    let latency = Latency::of(&mut all);
    let ok: u64 = tallies.values().map(|t| t.ok).sum();
    let throughput = ok as f64 / wall.as_secs_f64().max(1e-9);

    if args.json {
        let clients: Vec<_> = tallies
            .iter()
            .map(|(id, t)| {
                let mut samples = t.samples.clone();
                json!({
                    "client": id,
                    "pid": t.pid,
                    "ok": t.ok,
                    "errors": t.errors,
                    "finished": t.finished,
                    "first_error": t.first_error,
                    "latency_ns": Latency::of(&mut samples),
                })
            })
            .collect();
        print_json(&json!({
            "pipe": name,
            "address": address,
            "clients": args.clients,
            "requests": total,
            "ok": ok,
            "failed": failed,
            "wall_s": wall.as_secs_f64(),
            "requests_per_s": throughput,
            "latency_ns": latency,
            "per_client": clients,
            "server": {
                "accepted": stats.accepted,
                "completed": stats.completed,
                "failed": stats.failed,
                "timed_out": stats.timed_out,
                "bytes_in": stats.bytes_in,
                "bytes_out": stats.bytes_out,
            },
        }))?;
    } else {
        let mut out = String::new();
        let header = ["CLIENT", "PID", "OK", "ERRORS", "P50", "P90", "P99"];
        let rows: Vec<[String; 7]> = tallies
            .iter()
            .map(|(id, t)| {
                let mut samples = t.samples.clone();
                let l = Latency::of(&mut samples);
                [
                    id.to_string(),
                    t.pid.to_string(),
                    t.ok.to_string(),
                    t.errors.to_string(),
                    format_duration(l.p50()),
                    format_duration(l.p90()),
                    format_duration(l.p99()),
                ]
            })
            .collect();
        out.push_str(&table(&header, &rows));
        out.push('\n');
        let _ = writeln!(out, "requests     {total} ({ok} ok, {failed} failed)");
        let _ = writeln!(out, "wall time    {}", format_duration(wall));
        let _ = writeln!(out, "throughput   {throughput:.0} requests/s");
        let _ = writeln!(
            out,
            "latency      p50 {}  p90 {}  p99 {}  max {}",
            format_duration(latency.p50()),
            format_duration(latency.p90()),
            format_duration(latency.p99()),
            format_duration(latency.max()),
        );
        let _ = writeln!(
            out,
            "server       {} connections, {} answered, {} failed, {} timed out, {} B in, {} B out",
            stats.accepted,
            stats.completed,
            stats.failed,
            stats.timed_out,
            stats.bytes_in,
            stats.bytes_out
        );
        write_stdout(out.as_bytes())?;
    }
    for (id, tally) in &tallies {
        if let Some(error) = &tally.first_error {
            eprintln!(
                "npipe demo: client {id}: {} errors, the first: {error}",
                tally.errors
            );
        }
    }
    if crashed > 0 {
        eprintln!("npipe demo: {crashed} client processes failed");
    }
    if failed > 0 || crashed > 0 {
        return Ok(exit::code(exit::FAILURE));
    }
    Ok(exit::code(exit::SUCCESS))
}

/// Runs one demo client process: `requests` requests, one result line each.
pub(crate) fn run_client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut stream: Option<npipe::Stream> = None;
    let mut reply = Vec::new();
    for seq in 1..=args.requests {
        let mut request = format!("request {seq} from client {}", args.id).into_bytes();
        if request.len() < args.size {
            request.resize(args.size, b'.');
        }
        let started = Instant::now();
        let result = if args.persistent {
            persistent_call(&mut stream, &args, &request, &mut reply)
        } else {
            npipe::call(args.name.as_str(), &request, args.timeout).map(|r| reply = r)
        };
        let elapsed = started.elapsed().as_nanos();
        let line = match result {
            Ok(()) if reply.strip_prefix(b"Response to: ") == Some(&request[..]) => {
                format!("ok {elapsed}")
            }
            Ok(()) => format!(
                "err {} wrong reply {:?}",
                exit::FAILURE,
                String::from_utf8_lossy(&reply[..reply.len().min(80)])
            ),
            Err(e) => {
                stream = None;
                let code = exit::code_for_kind(npipe::ErrorKind::of(&e));
                format!("err {code} {e}")
            }
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // The parent is gone: stop quietly.
            return Ok(exit::code(exit::FAILURE));
        }
    }
    let _ = writeln!(out, "done");
    Ok(exit::code(exit::SUCCESS))
}

/// One request on the client's persistent connection, connecting first if needed.
fn persistent_call(
    stream: &mut Option<npipe::Stream>,
    args: &ClientArgs,
    request: &[u8],
    reply: &mut Vec<u8>,
) -> io::Result<()> {
    let conn = match stream {
        Some(conn) => conn,
        None => {
            let conn = npipe::ConnectOptions::new()
                .timeout(args.timeout)
                .connect(args.name.as_str())?;
            conn.set_read_timeout(Some(args.timeout))?;
            conn.set_write_timeout(Some(args.timeout))?;
            stream.insert(conn)
        }
    };
    conn.send(request)?;
    match conn.recv(reply)? {
        Some(_) => Ok(()),
        None => Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the server closed the connection without replying",
        )),
    }
}
