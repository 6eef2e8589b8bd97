//! The parent process: plans rows, spawns server and client processes (this
//! same binary re-executed with a hidden role), enforces timeouts, and turns
//! client reports into results.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::child::{self, Child, Event, Stderr};
use crate::hist::Hist;
use crate::registry::{self, Entry};
use crate::roles::{self, ClientReport};
use crate::workload::{Placement, Workload};

/// One row of the benchmark: a workload, a transport, a placement.
#[derive(Debug)]
pub struct Row {
    pub workload: Workload,
    pub entry: Entry,
    pub placement: Placement,
}

impl Row {
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.workload.label(),
            self.entry.name,
            self.placement.label()
        )
    }
}

/// All rows for the suite, in run order, keeping those whose
/// `workload/transport/placement` id contains `filter` (or, for a comma-separated
/// list, any of its parts).
pub fn plan(workloads: &[Workload], cpus: usize, filter: Option<&str>) -> Vec<Row> {
    let mut rows = Vec::new();
    for w in workloads {
        for p in w.placements(cpus) {
            for entry in registry::entries() {
                if !entry.supports(w) {
                    continue;
                }
                let row = Row {
                    workload: *w,
                    entry,
                    placement: p,
                };
                let id = row.id();
                if filter.is_none_or(|f| f.split(',').any(|part| id.contains(part))) {
                    rows.push(row);
                }
            }
        }
    }
    rows
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowResult {
    pub workload: String,
    pub transport: String,
    pub placement: String,
    pub server: String,
    /// Latency workloads: per-round-trip; rate workloads: per-operation.
    pub median_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    /// Throughput workloads, 10^9 bytes per second.
    pub gb_per_s: Option<f64>,
    /// Rate workloads: connections/s or requests/s (all clients together).
    pub ops_per_s: Option<f64>,
    pub ops: u64,
    /// Seconds from the first client's start of the measured phase to the
    /// last one's end.
    #[serde(default)]
    pub measured_s: f64,
    /// Primary metric of every repetition (the reported one is the median).
    pub runs: Vec<f64>,
    pub wall_ms: f64,
    /// Primary metric / the `raw` row's primary metric, same workload and
    /// placement (latency: median, lower is better; others: higher is better).
    pub ratio_vs_raw: Option<f64>,
    /// Lowest and highest of the per-round ratios behind `ratio_vs_raw`.
    #[serde(default)]
    pub ratio_vs_raw_range: Option<(f64, f64)>,
    /// `connrate` rows: primary metric / the `raw-pool4` row's (a pool of
    /// accepting threads is the fair baseline for a server that accepts
    /// concurrently).
    pub ratio_vs_pool: Option<f64>,
    pub higher_is_better: bool,
    pub error: Option<String>,
    #[serde(skip)]
    pub hist: Option<Hist>,
}

impl RowResult {
    pub fn primary(&self) -> Option<f64> {
        self.gb_per_s
            .or(self.ops_per_s)
            .or(self.median_ns.map(|v| v as f64))
    }
}

/// Removes the socket path on drop, and the lock file an npipe listener keeps
/// and record file next to it (`.<file name>.lock`, `.info`): the server is killed, so npipe cannot
/// remove its files itself.
struct PathGuard(PathBuf);

impl PathGuard {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
        for suffix in [".lock", ".info"] {
            let _ = std::fs::remove_file(sibling(&self.0, suffix));
        }
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// npipe's files beside the socket at `path`: `.<file name><suffix>` (the lock
/// file `.lock`, the record file `.info`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut file = std::ffi::OsString::from(".");
    file.push(path.file_name().unwrap_or_default());
    file.push(suffix);
    path.with_file_name(file)
}

/// Where the socket of npipe pipe `name` lives: `/tmp/npipe-NAME`, or
/// `$NPIPE_DIR/NAME` when `NPIPE_DIR` is set. Every transport of a run uses
/// that path, so the npipe rows work wherever npipe puts its pipes. Windows
/// pipes have no file: there the path only carries the name.
fn socket_path(name: &str) -> PathBuf {
    match npipe::PipeName::new(name).and_then(|n| n.address()) {
        Ok(npipe::Address::Path(path)) => path,
        _ => PathBuf::from(format!("/tmp/npipe-{name}")),
    }
}

/// The pipe names of the harness's runs start with this, then `<pid>-<n>`.
const NAME_PREFIX: &str = "bench-";

/// Remove socket files left by harness processes that no longer exist (e.g.
/// a run killed with SIGKILL, which cannot clean up after itself).
pub fn remove_stale_sockets() {
    // Processes are looked up in /proc.
    if !cfg!(target_os = "linux") {
        return;
    }
    // NAME maps to a path by adding a prefix to it, so the path of the bare
    // prefix names the directory and the start of every file name.
    let probe = socket_path(NAME_PREFIX);
    let (Some(dir), Some(start)) = (probe.parent(), probe.file_name().and_then(|f| f.to_str()))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        // npipe lock and record files: `.<socket file name>.lock`, `.info`.
        let name = name.to_str().map(|n| n.strip_prefix('.').unwrap_or(n));
        let Some(rest) = name.and_then(|n| n.strip_prefix(start)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn unique_addr() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    socket_path(&format!(
        "{NAME_PREFIX}{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn role_cmd(exe: &PathBuf, role: &str, row: &Row, addr: &str, cpu: Option<usize>) -> Command {
    // `NPIPE_BENCH_SERVER_WRAP="valgrind --tool=callgrind"` (or `..._CLIENT_WRAP`):
    // run the server (client) processes under a tool, for profiling (the
    // figures are then the tool's).
    let var = match role {
        roles::SERVER => "NPIPE_BENCH_SERVER_WRAP",
        _ => "NPIPE_BENCH_CLIENT_WRAP",
    };
    let wrap = std::env::var(var).ok();
    let wrap: Vec<&str> = wrap
        .as_deref()
        .map(|w| w.split_whitespace().collect())
        .unwrap_or_default();
    let mut cmd = match wrap.split_first() {
        Some((tool, args)) => {
            let mut cmd = Command::new(tool);
            cmd.args(args).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.arg(role)
        .arg(row.entry.name)
        .arg(serde_json::to_string(&row.workload).expect("serializable"))
        .arg(addr);
    if let Some(cpu) = cpu {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    cmd
}

/// Slack on top of a workload's expected duration before a run is declared
/// hung and its processes killed.
const TIMEOUT_SLACK: Duration = Duration::from_secs(15);

/// Run a group of rows (one workload and placement, every transport)
/// `repeats` times, interleaved: each round runs every row once, each with
/// fresh processes, starting one row later than the round before. A slow
/// drift of the machine (another guest on the host, thermal state) then
/// touches every transport alike, and [`fill_ratios`] compares the rows
/// round by round. For each row the run with the median primary metric is
/// kept; never leaves processes or socket files behind. `progress(row, done)`
/// is called before (`false`) and after (`true`) each run.
pub fn run_group(
    rows: &[&Row],
    repeats: usize,
    mut progress: impl FnMut(&Row, bool),
) -> Vec<RowResult> {
    let repeats = repeats.max(1);
    let mut runs: Vec<Vec<RowResult>> = rows.iter().map(|_| Vec::with_capacity(repeats)).collect();
    let mut failed: Vec<Option<RowResult>> = rows.iter().map(|_| None).collect();
    for round in 0..repeats {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            if failed[i].is_some() {
                continue;
            }
            progress(rows[i], false);
            let r = run_once(rows[i]);
            progress(rows[i], true);
            if r.error.is_some() {
                failed[i] = Some(r);
            } else {
                runs[i].push(r);
            }
        }
    }
    runs.into_iter()
        .zip(failed)
        .map(|(runs, failed)| failed.unwrap_or_else(|| median_run(runs)))
        .collect()
}

/// Runs `rows` (as planned: grouped by workload and placement) `repeats`
/// times each, group by group (see [`run_group`]), with a progress bar on
/// stderr, and fills in the ratios. A row that failed has its `error` set.
pub fn run_all(rows: &[Row], repeats: usize) -> Vec<RowResult> {
    let pb = ProgressBar::new((rows.len() * repeats.max(1)) as u64).with_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let mut results = Vec::with_capacity(rows.len());
    for group in rows.chunk_by(|a, b| a.workload == b.workload && a.placement == b.placement) {
        let group: Vec<&Row> = group.iter().collect();
        results.extend(run_group(&group, repeats, |row, done| {
            if done {
                pb.inc(1);
            } else {
                pb.set_message(row.id());
            }
        }));
    }
    pb.finish_and_clear();
    fill_ratios(&mut results);
    results
}

/// The run with the median primary metric, carrying every run's metric (in
/// round order) and the total wall time.
fn median_run(mut runs: Vec<RowResult>) -> RowResult {
    let primaries: Vec<f64> = runs.iter().filter_map(RowResult::primary).collect();
    let wall_ms = runs.iter().map(|r| r.wall_ms).sum();
    runs.sort_by(|a, b| a.primary().partial_cmp(&b.primary()).expect("no NaN"));
    let mut best = runs.swap_remove(runs.len() / 2);
    best.runs = primaries;
    best.wall_ms = wall_ms;
    best
}

fn run_once(row: &Row) -> RowResult {
    let t0 = Instant::now();
    let mut res = RowResult {
        workload: row.workload.label(),
        transport: row.entry.name.to_string(),
        placement: row.placement.label().to_string(),
        server: row.entry.describe(&row.workload),
        median_ns: None,
        p99_ns: None,
        gb_per_s: None,
        ops_per_s: None,
        ops: 0,
        measured_s: 0.0,
        runs: Vec::new(),
        wall_ms: 0.0,
        ratio_vs_raw: None,
        ratio_vs_raw_range: None,
        ratio_vs_pool: None,
        higher_is_better: row.workload.higher_is_better(),
        error: None,
        hist: None,
    };
    match run_row_inner(row) {
        Ok(reports) => summarize(&row.workload, &reports, &mut res),
        Err(e) => res.error = Some(format!("{e:#}")),
    }
    res.wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    res
}

fn run_row_inner(row: &Row) -> Result<Vec<ClientReport>> {
    let exe = std::env::current_exe().context("current_exe")?;
    let path = unique_addr();
    let guard = PathGuard(path.clone());
    guard.remove();
    let addr = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let deadline = Instant::now() + row.workload.expected() + TIMEOUT_SLACK;
    let (tx, events) = mpsc::channel();
    let spawn = |id: usize, what: String, role: &str, cpu: Option<usize>| {
        let cmd = role_cmd(&exe, role, row, addr, cpu);
        child::spawn(id, what, cmd, Stderr::Capture, tx.clone())
    };

    // The server is child 0, the clients 1..=n.
    let what = format!("server {}", row.id());
    let mut children = vec![spawn(0, what, roles::SERVER, row.placement.server_cpu())?];
    expect_lines(&events, &mut children, 0..1, deadline, |_, line| {
        ensure_ready(line)
    })?;
    for i in 1..=row.workload.client_procs() {
        let what = format!("client#{} {}", i - 1, row.id());
        children.push(spawn(i, what, roles::CLIENT, row.placement.client_cpu())?);
    }
    let clients = 1..children.len();
    expect_lines(
        &events,
        &mut children,
        clients.clone(),
        deadline,
        |_, line| ensure_ready(line),
    )?;
    for c in &mut children[clients.clone()] {
        c.tell("go")?;
    }
    let mut reports = Vec::with_capacity(clients.len());
    expect_lines(&events, &mut children, clients, deadline, |_, line| {
        let r = serde_json::from_str(line).with_context(|| format!("bad report {line:?}"))?;
        reports.push(r);
        Ok(())
    })?;
    // Server and clients are killed and reaped by Drop, then the path removed.
    drop(children);
    drop(guard);
    Ok(reports)
}

fn ensure_ready(line: &str) -> Result<()> {
    if line.trim() != "ready" {
        bail!("expected `ready`, got {line:?}");
    }
    Ok(())
}

/// Takes the next line of each child in `ids`, by `deadline`, and hands it
/// to `take`. A child that ends first is an error that quotes its stderr.
fn expect_lines(
    events: &Receiver<Event>,
    children: &mut [Child],
    ids: Range<usize>,
    deadline: Instant,
    mut take: impl FnMut(usize, &str) -> Result<()>,
) -> Result<()> {
    let mut waiting: Vec<usize> = ids.collect();
    while let Some(&first) = waiting.first() {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Line(id, line)) if waiting.contains(&id) => {
                take(id, &line).with_context(|| children[id].what().to_owned())?;
                waiting.retain(|&w| w != id);
            }
            Ok(Event::Closed(id)) if waiting.contains(&id) => bail!(children[id].ended()),
            Ok(_) => {}
            Err(_) => bail!("{}: timed out", children[first].what()),
        }
    }
    Ok(())
}

fn summarize(w: &Workload, reports: &[ClientReport], res: &mut RowResult) {
    let start = reports.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let end = reports.iter().map(|r| r.end_ns).max().unwrap_or(0);
    let secs = (end.saturating_sub(start)) as f64 / 1e9;
    res.measured_s = secs;
    let mut hist = Hist::default();
    for r in reports {
        hist.merge(&r.hist);
    }
    res.ops = reports.iter().map(|r| r.ops).sum();
    match w {
        Workload::Latency { .. } => {
            if let [r] = reports {
                if let Some((p50, p99)) = r.exact_p50_p99 {
                    res.median_ns = Some(p50);
                    res.p99_ns = Some(p99);
                }
            }
        }
        Workload::Throughput { .. } => {
            let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
            res.gb_per_s = (secs > 0.0).then(|| bytes as f64 / secs / 1e9);
        }
        Workload::ConnRate { .. } | Workload::ReqResp { .. } => {
            res.ops_per_s = (secs > 0.0).then(|| res.ops as f64 / secs);
        }
    }
    if !hist.is_empty() {
        res.median_ns = res.median_ns.or(hist.quantile(0.5));
        res.p99_ns = res.p99_ns.or(hist.quantile(0.99));
        res.hist = Some(hist);
    }
}

/// Fill in `ratio_vs_raw` for every row that has a `raw` row with the same
/// workload and placement, and `ratio_vs_pool` for the `connrate` rows.
///
/// Paired: the ratio of each round is taken between runs of the same round
/// (see [`run_group`]), and the median of those is reported, with the lowest
/// and highest in `ratio_vs_raw_range`. Rows with a different number of runs
/// (a filter that split a group) are compared median to median.
pub fn fill_ratios(results: &mut [RowResult]) {
    let runs_of = |name: &str| -> Vec<(String, String, Vec<f64>, f64)> {
        results
            .iter()
            .filter(|r| r.transport == name)
            .filter_map(|r| {
                Some((
                    r.workload.clone(),
                    r.placement.clone(),
                    r.runs.clone(),
                    r.primary()?,
                ))
            })
            .collect()
    };
    let base = runs_of(registry::BASELINE);
    let pool = runs_of(registry::POOL_BASELINE);
    let paired = |base: &[(String, String, Vec<f64>, f64)], r: &RowResult| -> Option<Vec<f64>> {
        let (_, _, base_runs, base_primary) = base
            .iter()
            .find(|(w, p, _, _)| *w == r.workload && *p == r.placement)?;
        let mut ratios: Vec<f64> = if base_runs.len() == r.runs.len() && !r.runs.is_empty() {
            r.runs.iter().zip(base_runs).map(|(v, b)| v / b).collect()
        } else {
            vec![r.primary()? / base_primary]
        };
        ratios.retain(|x| x.is_finite());
        ratios.sort_by(f64::total_cmp);
        (!ratios.is_empty()).then_some(ratios)
    };
    for r in results.iter_mut() {
        if let Some(ratios) = paired(&base, r) {
            r.ratio_vs_raw = Some(ratios[ratios.len() / 2]);
            r.ratio_vs_raw_range = Some((ratios[0], ratios[ratios.len() - 1]));
        }
        if r.workload.starts_with("connrate") {
            r.ratio_vs_pool = paired(&pool, r).map(|ratios| ratios[ratios.len() / 2]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(transport: &str, runs: &[f64]) -> RowResult {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        RowResult {
            workload: "connrate-1c".into(),
            transport: transport.into(),
            placement: "unpinned".into(),
            server: String::new(),
            median_ns: None,
            p99_ns: None,
            gb_per_s: None,
            ops_per_s: Some(sorted[sorted.len() / 2]),
            ops: 0,
            measured_s: 0.0,
            runs: runs.to_vec(),
            wall_ms: 0.0,
            ratio_vs_raw: None,
            ratio_vs_raw_range: None,
            ratio_vs_pool: None,
            higher_is_better: true,
            error: None,
            hist: None,
        }
    }

    #[test]
    fn ratios_are_paired_round_by_round() {
        // The machine slows down in round 2 for everyone: paired ratios stay at
        // 0.9, while medians taken apart would say 0.9 too only by luck.
        let mut rows = [
            row(registry::BASELINE, &[100.0, 50.0, 100.0]),
            row(registry::POOL_BASELINE, &[200.0, 100.0, 200.0]),
            row("npipe", &[90.0, 45.0, 90.0]),
        ];
        fill_ratios(&mut rows);
        let npipe = &rows[2];
        assert!((npipe.ratio_vs_raw.unwrap() - 0.9).abs() < 1e-9);
        let (lo, hi) = npipe.ratio_vs_raw_range.unwrap();
        assert!((lo - 0.9).abs() < 1e-9 && (hi - 0.9).abs() < 1e-9);
        assert!((npipe.ratio_vs_pool.unwrap() - 0.45).abs() < 1e-9);
        assert_eq!(rows[0].ratio_vs_raw, Some(1.0));
    }

    #[test]
    fn the_median_of_the_paired_ratios_is_reported_with_its_range() {
        let mut rows = [
            row(registry::BASELINE, &[100.0, 100.0, 100.0, 100.0, 100.0]),
            row("npipe", &[80.0, 120.0, 95.0, 105.0, 100.0]),
        ];
        fill_ratios(&mut rows);
        assert_eq!(rows[1].ratio_vs_raw, Some(1.0));
        assert_eq!(rows[1].ratio_vs_raw_range, Some((0.8, 1.2)));
    }

    #[test]
    fn rows_with_other_rounds_are_compared_median_to_median() {
        let mut rows = [
            row(registry::BASELINE, &[100.0, 100.0, 100.0]),
            row("npipe", &[50.0]),
        ];
        fill_ratios(&mut rows);
        assert_eq!(rows[1].ratio_vs_raw, Some(0.5));
    }
}
