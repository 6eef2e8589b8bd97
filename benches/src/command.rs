//! The harness's command line, for every program that offers it: the
//! `npipe-bench` binary and `npipe bench --baselines`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::workload::{self, Workload};
use crate::{orchestrate, report, util};

/// The harness's options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Short run (< 60 s): fewer iterations, shorter durations.
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only run rows whose `workload/transport/placement` contains this (a
    /// comma-separated list: any of them).
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,
    /// Also write latency CDFs and ratios vs raw as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also write the results as Markdown tables (for the READMEs).
    #[arg(long, value_name = "FILE.md")]
    pub markdown: Option<PathBuf>,
    /// Rounds: every row runs once per round, with fresh processes, the rows of
    /// one workload and placement interleaved; the median run is reported and
    /// ratios are taken round by round [default: 1 with --quick, else 5].
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
    /// Run nothing: render the results of an earlier `--json` run (table, or
    /// with `--markdown` the Markdown tables).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["json", "plot", "quick", "repeat"])]
    pub from_json: Option<PathBuf>,
    /// List the rows that would run and exit.
    #[arg(long)]
    pub list: bool,
}

/// Runs the harness as `args` say; fails (exit status 1) if a row failed.
pub fn run(args: &Args) -> Result<ExitCode> {
    if let Some(path) = &args.from_json {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let doc: report::SavedDocument =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        if let Some(md) = &args.markdown {
            std::fs::write(
                md,
                report::markdown(&doc.rows, doc.machine.as_ref(), doc.repeats),
            )
            .with_context(|| format!("write {}", md.display()))?;
            eprintln!("wrote {}", md.display());
        }
        write_stdout(&report::table(&doc.rows))?;
        return Ok(ExitCode::SUCCESS);
    }

    orchestrate::remove_stale_sockets();
    let cpus = util::available_cpus();
    let suite: Vec<Workload> = workload::suite(args.quick);
    let rows = orchestrate::plan(&suite, cpus, args.filter.as_deref());
    if args.list {
        let ids: String = rows.iter().map(|r| r.id() + "\n").collect();
        write_stdout(&ids)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        bail!("no row matches the filter");
    }

    let repeats = args
        .repeat
        .unwrap_or(workload::default_repeats(args.quick))
        .max(1);
    let machine = util::Machine::read(cpus);
    let load = machine.loadavg_at_start;
    if !args.json {
        eprintln!("machine: {}", machine.summary());
    }
    if load > 0.5 {
        eprintln!("note: load average is {load:.2} before starting; figures may be noisy");
    }
    let results = orchestrate::run_all(&rows, repeats);
    for (row, r) in rows.iter().zip(&results) {
        if let Some(e) = &r.error {
            eprintln!("warning: {}: {e}", row.id());
        }
    }

    if args.json {
        let doc = report::Document {
            quick: args.quick,
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
    if let Some(path) = &args.markdown {
        std::fs::write(path, report::markdown(&results, Some(&machine), repeats))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, report::svg(&results))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        eprintln!("error: {failed} of {} rows failed", results.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
