//! The parent process: plans rows, spawns server and client processes (this
//! same binary re-executed with a hidden role), enforces timeouts, and turns
//! client reports into results.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::hist::Hist;
use crate::registry::{self, Entry};
use crate::roles::ClientReport;
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

/// A child process that is killed and reaped when dropped, whose stdout is
/// read line by line on a helper thread (so a timeout can be applied) and
/// whose stderr is collected for error messages.
struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(what: String, mut cmd: Command) -> Result<Proc> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawn {what}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        let stdin = child.stdin.take();
        Ok(Proc {
            what,
            child,
            stdin,
            lines,
            stderr,
        })
    }

    fn stderr_tail(&self) -> String {
        // Give the stderr reader a moment to catch the dying words.
        std::thread::sleep(Duration::from_millis(20));
        let s = self.stderr.lock().unwrap();
        let s = s.trim();
        if s.is_empty() {
            String::new()
        } else {
            format!(": {}", &s[s.len().saturating_sub(500)..])
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Result<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => bail!("{}: timed out", self.what),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                bail!(
                    "{} exited ({}){}",
                    self.what,
                    status.map_or("running".into(), |s| s.to_string()),
                    self.stderr_tail()
                )
            }
        }
    }

    fn expect_ready(&mut self, deadline: Instant) -> Result<()> {
        let l = self.next_line(deadline)?;
        if l.trim() != "ready" {
            bail!("{}: expected `ready`, got {l:?}", self.what);
        }
        Ok(())
    }

    fn go(&mut self) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the socket path on drop, and the lock file an npipe listener keeps
/// next to it (`.<file name>.lock`): the server is killed, so npipe cannot
/// remove its files itself.
struct PathGuard(PathBuf);

impl PathGuard {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(lock_sibling(&self.0));
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// npipe's lock file for the socket at `path`: `.<file name>.lock` beside it.
fn lock_sibling(path: &std::path::Path) -> PathBuf {
    let mut file = std::ffi::OsString::from(".");
    file.push(path.file_name().unwrap_or_default());
    file.push(".lock");
    path.with_file_name(file)
}

const SOCK_PREFIX: &str = "npipe-bench-";

/// Remove socket files left by harness processes that no longer exist (e.g.
/// a run killed with SIGKILL, which cannot clean up after itself).
pub fn remove_stale_sockets() {
    let Ok(dir) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        // npipe lock files: `.npipe-bench-<pid>-<n>.sock.lock`.
        let name = name.to_str().map(|n| n.strip_prefix('.').unwrap_or(n));
        let Some(rest) = name.and_then(|n| n.strip_prefix(SOCK_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn unique_addr() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    PathBuf::from(format!(
        "/tmp/{SOCK_PREFIX}{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn role_cmd(exe: &PathBuf, role: &str, row: &Row, addr: &str, cpu: Option<usize>) -> Command {
    // `NPIPE_BENCH_SERVER_WRAP="valgrind --tool=callgrind"` (or `..._CLIENT_WRAP`):
    // run the server (client) processes under a tool, for profiling (the
    // figures are then the tool's).
    let var = match role {
        "__server" => "NPIPE_BENCH_SERVER_WRAP",
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
    let addr = path.to_str().expect("utf-8 path");
    let deadline = Instant::now() + row.workload.expected() + TIMEOUT_SLACK;

    let mut server = Proc::spawn(
        format!("server {}", row.id()),
        role_cmd(&exe, "__server", row, addr, row.placement.server_cpu()),
    )?;
    server.expect_ready(deadline)?;

    let mut clients = (0..row.workload.client_procs())
        .map(|i| {
            Proc::spawn(
                format!("client#{i} {}", row.id()),
                role_cmd(&exe, "__client", row, addr, row.placement.client_cpu()),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    for c in &mut clients {
        c.expect_ready(deadline)?;
    }
    for c in &mut clients {
        c.go()?;
    }
    let mut reports = Vec::with_capacity(clients.len());
    for c in &mut clients {
        let line = c.next_line(deadline)?;
        let r: ClientReport = serde_json::from_str(&line)
            .with_context(|| format!("{}: bad report {line:?}", c.what))?;
        reports.push(r);
    }
    // Server and clients are killed and reaped by Drop, then the path removed.
    drop(clients);
    drop(server);
    drop(guard);
    Ok(reports)
}

fn summarize(w: &Workload, reports: &[ClientReport], res: &mut RowResult) {
    let start = reports.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let end = reports.iter().map(|r| r.end_ns).max().unwrap_or(0);
    let secs = (end.saturating_sub(start)) as f64 / 1e9;
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
