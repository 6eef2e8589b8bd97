//! `npipe bench`: latency, throughput and connection rate of npipe across
//! processes, a front end of the benchmark harness of `benches/` (the
//! `npipe_bench` library, the workspace's one benchmark engine).
//!
//! Each workload is the harness's `rtt`, `tput` or `connrate` row of its `npipe`
//! transport (a blocking `npipe::Listener` serving one connection at a time),
//! unpinned, with the sizes and durations given here; the harness re-executes
//! this binary as the server and client processes (`__bench-server`,
//! `__bench-client`, see `cli.rs`). `--baselines` runs the whole harness in this
//! program.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use npipe_bench::hist::Latency;
use npipe_bench::orchestrate::{self, RowResult};
use npipe_bench::workload::{Placement, Workload as HarnessWorkload};
use npipe_bench::{command, registry};
use serde::Serialize;

use crate::cmd::{print_json, write_stdout};
use crate::exit;
use crate::table::table;
use crate::units::{format_duration, format_size, parse_duration, parse_size_usize};

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe bench                         # all three workloads, about 4 s
  npipe bench --quick                 # each as short as the harness's --quick
  npipe bench latency --duration 5s
  npipe bench throughput --block 1MiB
  npipe bench connect-rate --clients 8
  npipe bench --json > bench.json
  npipe bench --baselines --quick     # the full harness: raw sockets, interprocess, tokio
  npipe bench --baselines -- --filter rtt-64B --repeat 3

Workloads (message mode; server and clients are separate processes; the rows rtt, tput
and connrate of the harness's npipe transport, with these sizes):
  latency       one connection, ping-pong of --size bytes; round-trip percentiles
  throughput    one connection streams --block-byte messages; bytes/s the server read
  connect-rate  --clients processes loop connect / request / reply / close;
                connections/s and the latency of a whole connection

Each workload warms up, then is measured for --duration (with --quick: as long as the
harness's --quick runs it). Rates use wall-clock time of the measured phase;
percentiles are nearest-rank, from a histogram precise to 1%. Messages are at most
16 MiB, npipe's default limit. `--baselines` runs the full harness of benches/ (npipe
against raw Unix sockets, interprocess and tokio) in this program; --quick, --json and
the arguments after `--` go to it (`npipe bench --baselines -- --help` lists them).
On Windows the baselines (Unix sockets) are left out, and nothing is pinned.";

/// Which measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
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
    #[arg(short, long, default_value = "64", value_parser = parse_message_size, value_name = "BYTES")]
    pub(crate) size: usize,

    /// Message size for throughput.
    #[arg(short, long, default_value = "64KiB", value_parser = parse_block_size, value_name = "BYTES")]
    pub(crate) block: usize,

    /// Client processes for connect-rate.
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) clients: u32,

    /// Print a JSON array of results instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Measure each workload as long as the harness's `--quick` does, instead of
    /// for --duration (with --baselines: the harness's `--quick`).
    #[arg(long, conflicts_with = "duration")]
    pub(crate) quick: bool,

    /// Run the full harness instead: npipe against raw Unix sockets, `interprocess`
    /// and tokio (arguments after `--` go to it, e.g.
    /// `npipe bench --baselines -- --filter rtt-64B`).
    #[arg(long, conflicts_with = "workloads")]
    pub(crate) baselines: bool,

    /// Arguments for the harness (with --baselines).
    #[arg(last = true, requires = "baselines", value_name = "HARNESS ARGS")]
    pub(crate) harness_args: Vec<String>,
}

/// A message size npipe's default limit allows (16 MiB).
fn parse_message_size(text: &str) -> Result<usize, String> {
    let size = parse_size_usize(text)?;
    let max = npipe::DEFAULT_MAX_MESSAGE as usize;
    if size > max {
        return Err(format!(
            "{text:?} is too large: messages are at most {} (npipe's default limit)",
            format_size(max as f64)
        ));
    }
    Ok(size)
}

/// A throughput message: not empty (an empty message ends a batch).
fn parse_block_size(text: &str) -> Result<usize, String> {
    match parse_message_size(text)? {
        0 => Err("the block size must be at least 1 byte".into()),
        size => Ok(size),
    }
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

/// Runs `npipe bench`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.baselines {
        return run_harness(&args);
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
    let plan = workloads
        .iter()
        .map(|&w| {
            Ok(orchestrate::Row {
                workload: harness_workload(w, &args),
                entry: registry::find("npipe").context("the harness has no npipe transport")?,
                placement: Placement::Unpinned,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    orchestrate::remove_stale_sockets();
    let results = orchestrate::run_all(&plan, 1);
    let mut rows = Vec::new();
    for (&workload, result) in workloads.iter().zip(&results) {
        if let Some(error) = &result.error {
            anyhow::bail!("the {} benchmark failed: {error}", workload.as_str());
        }
        rows.push(row(workload, &args, result));
    }
    if args.json {
        print_json(&serde_json::to_value(&rows)?)?;
    } else {
        write_stdout(render(&rows).as_bytes())?;
    }
    Ok(exit::code(exit::SUCCESS))
}

/// The harness's workload for `workload` with the sizes and duration of `args`.
fn harness_workload(workload: Workload, args: &Args) -> HarnessWorkload {
    // The quick settings' warm-ups even when measured for --duration.
    let w = match workload {
        Workload::Latency => HarnessWorkload::latency(args.size, true),
        Workload::Throughput => HarnessWorkload::throughput(args.block, true),
        Workload::ConnectRate => HarnessWorkload::conn_rate(args.clients as usize, args.size, true),
    };
    if args.quick {
        w
    } else {
        w.measured_for(args.duration)
    }
}

fn row(workload: Workload, args: &Args, result: &RowResult) -> Row {
    let (message_bytes, clients) = match workload {
        Workload::Latency => (args.size, 1),
        Workload::Throughput => (args.block, 1),
        Workload::ConnectRate => (args.size, args.clients),
    };
    let elapsed_s = result.measured_s.max(1e-9);
    let operations_per_s = result.ops as f64 / elapsed_s;
    Row {
        workload,
        message_bytes,
        clients,
        elapsed_s,
        operations: result.ops,
        operations_per_s,
        // Throughput: the bytes the server acknowledged; otherwise the requests'.
        bytes_per_s: result
            .gb_per_s
            .map_or(operations_per_s * message_bytes as f64, |gb| gb * 1e9),
        latency: result
            .hist
            .as_ref()
            .map(Latency::of_hist)
            .unwrap_or_default(),
    }
}

/// `npipe bench --baselines`: the harness's own command line, run in this
/// program.
fn run_harness(args: &Args) -> anyhow::Result<ExitCode> {
    #[derive(Debug, Parser)]
    #[command(name = "npipe bench --baselines --")]
    struct Harness {
        #[command(flatten)]
        args: command::Args,
    }
    let flags = [("--quick", args.quick), ("--json", args.json)];
    let argv = std::iter::once("npipe bench --baselines --")
        .chain(flags.iter().filter(|(_, on)| *on).map(|(flag, _)| *flag))
        .chain(args.harness_args.iter().map(String::as_str));
    match Harness::try_parse_from(argv) {
        Ok(harness) => command::run(&harness.args),
        Err(e) => Ok(exit::parse_error(&e)),
    }
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
