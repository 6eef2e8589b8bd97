// See lib.rs: an internal harness, not a published API.
#![allow(missing_docs)]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use npipe_bench::workload::{self, Workload};
use npipe_bench::{orchestrate, registry, report, roles, util};

/// Benchmarks npipe-style IPC transports (server and clients in separate
/// processes) against hand-written Unix domain sockets, `interprocess` and
/// Tokio.
#[derive(Parser)]
#[command(name = "npipe-bench", version)]
struct Cli {
    /// Short run (< 60 s): fewer iterations, shorter durations.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Only run rows whose `workload/transport/placement` contains this (a
    /// comma-separated list: any of them).
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,
    /// Also write latency CDFs and ratios vs raw as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Also write the results as Markdown tables (for the READMEs).
    #[arg(long, value_name = "FILE.md")]
    markdown: Option<PathBuf>,
    /// Rounds: every row runs once per round, with fresh processes, the rows of
    /// one workload and placement interleaved; the median run is reported and
    /// ratios are taken round by round [default: 1 with --quick, else 5].
    #[arg(long, value_name = "N")]
    repeat: Option<usize>,
    /// Run nothing: render the results of an earlier `--json` run (table, or
    /// with `--markdown` the Markdown tables).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["json", "plot", "quick", "repeat"])]
    from_json: Option<PathBuf>,
    /// List the rows that would run and exit.
    #[arg(long)]
    list: bool,
    #[command(subcommand)]
    role: Option<Role>,
}

/// Internal: the roles of the re-executed child processes.
#[derive(Subcommand)]
enum Role {
    #[command(name = "__server", hide = true)]
    Server(RoleArgs),
    #[command(name = "__client", hide = true)]
    Client(RoleArgs),
}

#[derive(clap::Args)]
struct RoleArgs {
    transport: String,
    /// The workload as JSON.
    workload: String,
    addr: String,
    #[arg(long)]
    cpu: Option<usize>,
}

fn child_main(role: Role) -> Result<()> {
    util::die_with_parent();
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
        entry.run_server(&a.addr, &w)
    } else {
        let r = entry.run_client(&a.addr, &w)?;
        roles::print_report(&r)
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(role) = cli.role {
        return child_main(role);
    }

    if let Some(path) = &cli.from_json {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let doc: report::SavedDocument =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        if let Some(md) = &cli.markdown {
            std::fs::write(
                md,
                report::markdown(&doc.rows, doc.machine.as_ref(), doc.repeats),
            )
            .with_context(|| format!("write {}", md.display()))?;
            eprintln!("wrote {}", md.display());
        }
        return write_stdout(&report::table(&doc.rows));
    }

    orchestrate::remove_stale_sockets();
    let cpus = util::available_cpus();
    let rows = orchestrate::plan(&workload::suite(cli.quick), cpus, cli.filter.as_deref());
    if cli.list {
        let ids: String = rows.iter().map(|r| r.id() + "\n").collect();
        return write_stdout(&ids);
    }
    if rows.is_empty() {
        bail!("no row matches the filter");
    }

    let repeats = cli
        .repeat
        .unwrap_or(workload::default_repeats(cli.quick))
        .max(1);
    let machine = util::Machine::read(cpus);
    let load = machine.loadavg_at_start;
    if !cli.json {
        eprintln!("machine: {}", machine.summary());
    }
    if load > 0.5 {
        eprintln!("note: load average is {load:.2} before starting; figures may be noisy");
    }
    let pb = ProgressBar::new((rows.len() * repeats) as u64).with_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let mut results = Vec::with_capacity(rows.len());
    // Rows come grouped by workload and placement; each group runs interleaved.
    for group in rows.chunk_by(|a, b| a.workload == b.workload && a.placement == b.placement) {
        let group: Vec<&orchestrate::Row> = group.iter().collect();
        let group_results = orchestrate::run_group(&group, repeats, |row, done| {
            if done {
                pb.inc(1);
            } else {
                pb.set_message(row.id());
            }
        });
        for (row, r) in group.iter().zip(&group_results) {
            if let Some(e) = &r.error {
                pb.suspend(|| eprintln!("warning: {}: {e}", row.id()));
            }
        }
        results.extend(group_results);
    }
    pb.finish_and_clear();
    orchestrate::fill_ratios(&mut results);

    if cli.json {
        let doc = report::Document {
            quick: cli.quick,
            repeats,
            cpus,
            loadavg_at_start: load,
            machine: &machine,
            rows: &results,
        };
        write_stdout(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        write_stdout(&report::table(&results))?;
    }
    if let Some(path) = &cli.markdown {
        std::fs::write(path, report::markdown(&results, Some(&machine), repeats))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &cli.plot {
        std::fs::write(path, report::svg(&results))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        eprintln!("error: {failed} of {} rows failed", results.len());
        std::process::exit(1);
    }
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
