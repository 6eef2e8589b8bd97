//! Output: text table, JSON document, optional SVG plot.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::orchestrate::RowResult;
use crate::units::format_duration;

#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub quick: bool,
    pub repeats: usize,
    pub cpus: usize,
    pub loadavg_at_start: f64,
    pub machine: &'a crate::util::Machine,
    pub rows: &'a [RowResult],
}

/// A [`Document`] read back (`--from-json`).
#[derive(Debug, Deserialize)]
pub struct SavedDocument {
    #[serde(default)]
    pub repeats: usize,
    #[serde(default)]
    pub machine: Option<crate::util::Machine>,
    pub rows: Vec<RowResult>,
}

fn fmt_ns(ns: u64) -> String {
    format_duration(Duration::from_nanos(ns))
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn result_cell(r: &RowResult) -> String {
    if let Some(e) = &r.error {
        let first = e.lines().next().unwrap_or("");
        return format!("ERROR: {}", &first[..first.len().min(70)]);
    }
    let lat = match (r.median_ns, r.p99_ns) {
        (Some(m), Some(p)) => format!("p50 {} / p99 {}", fmt_ns(m), fmt_ns(p)),
        _ => String::new(),
    };
    if let Some(g) = r.gb_per_s {
        format!("{g:.2} GB/s")
    } else if let Some(o) = r.ops_per_s {
        let unit = if r.workload.starts_with("conn") {
            "conn/s"
        } else {
            "req/s"
        };
        format!("{} {unit} ({lat})", fmt_rate(o))
    } else {
        lat
    }
}

pub fn ratio_cell(r: &RowResult) -> String {
    match (r.ratio_vs_raw, r.ratio_vs_raw_range) {
        (Some(x), Some((lo, hi))) if r.runs.len() > 1 => {
            format!("{x:.2}x [{lo:.2}-{hi:.2}]")
        }
        (Some(x), _) => format!("{x:.2}x"),
        (None, _) => "-".into(),
    }
}

pub fn pool_ratio_cell(r: &RowResult) -> String {
    r.ratio_vs_pool.map_or("".into(), |x| format!("{x:.2}x"))
}

pub fn table(rows: &[RowResult]) -> String {
    let header = [
        "workload",
        "transport",
        "placement",
        "result",
        "vs raw",
        "vs raw-pool4",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.clone(),
                r.transport.clone(),
                r.placement.clone(),
                result_cell(r),
                ratio_cell(r),
                pool_ratio_cell(r),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: &[String; 6]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:>w5$}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
            w5 = width[5]
        );
    };
    line(&mut out, &header.map(String::from));
    let total: usize = width.iter().sum::<usize>() + 10;
    let _ = writeln!(out, "{}", "-".repeat(total));
    let mut last = None;
    for (r, c) in rows.iter().zip(&cells) {
        if last.is_some_and(|l: &str| l != r.workload) {
            out.push('\n');
        }
        last = Some(&r.workload);
        line(&mut out, c);
    }
    out.push_str(
        "\nvs raw = metric / raw's metric, same workload and placement \
         (rtt: median, lower is better; tput, connrate, reqresp: higher is better), \
         the median of the per-round ratios [lowest-highest]: rows of one workload and \
         placement run interleaved, round after round; vs raw-pool4 likewise, for connrate.\n\
         Server models: raw/interprocess/npipe = blocking iterative server (thread per \
         connection for reqresp); *-pool4 = 4 threads accepting on a shared listener \
         (npipe-pool4-q64: with pending_instances(64)); tokio/interprocess-tokio/npipe-tokio = \
         task per connection; *-bytes = npipe's byte mode framed by the harness like raw; \
         npipe-server = npipe::Server (ServerBuilder::spawn), sync handler (Linux: threads \
         that accept and serve); npipe-server-async = the same with an async handler; \
         npipe-tokio-mt-srv = npipe's tokio multi-thread server, task per connection, the \
         async server's baseline. Clients of npipe-server* and npipe-tokio-mt-srv are npipe \
         blocking clients.\n",
    );
    out
}

// ------------------------------------------------------------- Markdown

/// The transports of each Markdown table, `raw` (the reference) first: the
/// blocking APIs, then the async ones. Transports not listed are left out.
const MARKDOWN_TABLES: [(&str, &[&str]); 2] = [
    (
        "Blocking APIs",
        &[
            "raw",
            "raw-pool4",
            "npipe",
            "npipe-pool4",
            "npipe-pool4-q64",
            "npipe-bytes",
            "npipe-server",
            "interprocess",
        ],
    ),
    (
        "Tokio",
        &[
            "raw",
            "npipe-tokio-ct",
            "npipe-tokio-ct-bytes",
            "npipe-tokio-mt",
            "npipe-server-async",
            "npipe-tokio-mt-srv",
            "tokio-ct",
            "tokio-mt",
            "interprocess-tokio",
        ],
    ),
];

fn markdown_cell(r: &RowResult) -> String {
    if r.error.is_some() {
        return "error".into();
    }
    let value = if let Some(g) = r.gb_per_s {
        format!("{g:.2} GB/s")
    } else if let Some(o) = r.ops_per_s {
        format!("{}/s", fmt_rate(o))
    } else if let Some(m) = r.median_ns {
        fmt_ns(m)
    } else {
        return "—".into();
    };
    if r.transport == crate::registry::BASELINE {
        return format!("**{value}**");
    }
    let mut cell = value;
    if let Some(x) = r.ratio_vs_raw {
        let _ = write!(cell, " ({x:.2}×");
        if let Some((lo, hi)) = r.ratio_vs_raw_range.filter(|_| r.runs.len() > 1) {
            let _ = write!(cell, " {lo:.2}–{hi:.2}");
        }
        cell.push(')');
    }
    if let Some(p) = r
        .ratio_vs_pool
        .filter(|_| r.transport != crate::registry::POOL_BASELINE)
    {
        let _ = write!(cell, " [{p:.2}× pool]");
    }
    cell
}

/// The results as Markdown tables (one per API family; a row per workload and
/// placement, a column per transport): value, then the median of the per-round
/// ratios vs `raw` with their range, and for `connrate` the ratio vs
/// `raw-pool4`.
pub fn markdown(
    rows: &[RowResult],
    machine: Option<&crate::util::Machine>,
    repeats: usize,
) -> String {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !groups.contains(&(r.workload.as_str(), r.placement.as_str())) {
            groups.push((&r.workload, &r.placement));
        }
    }
    let mut out = String::new();
    if let Some(machine) = machine {
        let _ = writeln!(out, "Machine: {}.\n", machine.summary());
    }
    if repeats > 0 {
        let _ = writeln!(
            out,
            "Cells: the median of {repeats} rounds; `(x× lo–hi)` = the median and range of the per-round ratios vs `raw`; `[x× pool]` = the same vs `raw-pool4`.\n"
        );
    }
    for (title, transports) in MARKDOWN_TABLES {
        let present: Vec<&str> = transports
            .iter()
            .copied()
            .filter(|t| rows.iter().any(|r| r.transport == *t))
            .collect();
        if present.is_empty() {
            continue;
        }
        let _ = writeln!(out, "#### {title}\n");
        let _ = writeln!(out, "| workload | placement | {} |", present.join(" | "));
        let _ = writeln!(out, "|---|---|{}", "---|".repeat(present.len()));
        for (workload, placement) in &groups {
            let cells: Vec<String> = present
                .iter()
                .map(|t| {
                    rows.iter()
                        .find(|r| {
                            r.transport == *t
                                && r.workload == *workload
                                && r.placement == *placement
                        })
                        .map_or("—".into(), markdown_cell)
                })
                .collect();
            if cells.iter().skip(1).all(|c| c == "—") {
                continue;
            }
            let _ = writeln!(out, "| {workload} | {placement} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    out
}

// ------------------------------------------------------------------ SVG

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Two panels: latency CDFs of the round-trip rows (log-x), and a bar chart
/// of every row's ratio vs raw (log scale, 1.0 marked).
pub fn svg(rows: &[RowResult]) -> String {
    let lat: Vec<&RowResult> = rows
        .iter()
        .filter(|r| r.workload.starts_with("rtt") && r.hist.is_some())
        .collect();
    let ratios: Vec<&RowResult> = rows.iter().filter(|r| r.ratio_vs_raw.is_some()).collect();

    let w = 1000.0;
    let (pl, pr) = (70.0, 260.0); // plot left margin, legend width
    let cdf_top = 40.0;
    let cdf_h = 360.0;
    let bar_top = cdf_top + cdf_h + 90.0;
    let bar_h = 16.0;
    let bar_area = (ratios.len() as f64) * bar_h;
    let h = bar_top + bar_area + 60.0;
    let pw = w - pl - pr;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{pl}" y="24" font-size="15" font-weight="bold">Round-trip latency CDF (64 B; solid same-cpu, dashed cross-cpu, dotted unpinned)</text>"#
    );

    // CDF panel: x = log10(ns) between bounds.
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for r in &lat {
        for (v, _) in r.hist.as_ref().unwrap().cdf() {
            lo = lo.min(v.max(1) as f64);
            hi = hi.max(v.max(1) as f64);
        }
    }
    if lat.is_empty() {
        (lo, hi) = (1e3, 1e5);
    }
    let (llo, lhi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let x_of = |v: f64| pl + (v.max(1.0).log10() - llo) / (lhi - llo) * pw;
    // y: "nines" scale, so the tail is visible: 0, 0.9, 0.99, 0.999 equally spaced.
    let y_of = |f: f64| {
        let nines = (-(1.0 - f.min(0.999)).log10()).clamp(0.0, 3.0);
        cdf_top + cdf_h - nines / 3.0 * cdf_h
    };
    let _ = writeln!(
        s,
        r##"<rect x="{pl}" y="{cdf_top}" width="{pw}" height="{cdf_h}" fill="none" stroke="#888"/>"##
    );
    let mut d = llo;
    while d <= lhi {
        let x = x_of(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{cdf_top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            cdf_top + cdf_h,
            cdf_top + cdf_h + 14.0,
            esc(&fmt_ns(10f64.powf(d) as u64))
        );
        d += 1.0;
    }
    for f in [0.0, 0.5, 0.9, 0.99, 0.999] {
        let y = y_of(f);
        let _ = writeln!(
            s,
            r##"<line x1="{pl}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{f}</text>"##,
            pl + pw,
            pl - 4.0,
            y + 4.0
        );
    }
    // Colour by transport, dash pattern by placement.
    let mut transports: Vec<&str> = Vec::new();
    for r in &lat {
        if !transports.contains(&r.transport.as_str()) {
            transports.push(&r.transport);
        }
    }
    for (i, r) in lat.iter().enumerate() {
        let ti = transports
            .iter()
            .position(|t| *t == r.transport)
            .unwrap_or(0);
        let color = PALETTE[ti % PALETTE.len()];
        let dash = match r.placement.as_str() {
            "same-cpu" => "",
            "cross-cpu" => r#" stroke-dasharray="6,3""#,
            _ => r#" stroke-dasharray="2,2""#,
        };
        let pts: Vec<String> = r
            .hist
            .as_ref()
            .unwrap()
            .cdf()
            .iter()
            .map(|&(v, f)| format!("{:.1},{:.1}", x_of(v as f64), y_of(f)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
            pts.join(" ")
        );
        let ly = cdf_top + 10.0 + i as f64 * 14.0;
        let lx = pl + pw + 10.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 20.0,
            lx + 24.0,
            ly + 4.0,
            esc(&format!("{} {}", r.transport, r.placement))
        );
    }

    // Ratio panel: horizontal bars on a log2 scale centred on 1.0.
    let _ = writeln!(
        s,
        r#"<text x="{pl}" y="{:.1}" font-size="15" font-weight="bold">Ratio vs raw (same workload and placement; rtt: lower is better, others: higher is better)</text>"#,
        bar_top - 30.0
    );
    let lab_w = 300.0;
    let bx = pl + lab_w;
    let bw = w - bx - 40.0;
    let lim = ratios
        .iter()
        .filter_map(|r| r.ratio_vs_raw)
        .map(|x| x.log2().abs())
        .fold(1.0f64, f64::max)
        .ceil();
    let cx = bx + bw / 2.0;
    let xr = |x: f64| cx + x.log2() / lim * (bw / 2.0);
    let mut k = -lim;
    while k <= lim {
        let x = xr(2f64.powf(k));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}x</text>"##,
            bar_top - 12.0,
            bar_top + bar_area,
            if k == 0.0 { "#000" } else { "#ddd" },
            bar_top + bar_area + 14.0,
            2f64.powf(k)
        );
        k += 1.0;
    }
    for (i, r) in ratios.iter().enumerate() {
        let y = bar_top + i as f64 * bar_h;
        let x = r.ratio_vs_raw.unwrap();
        let better = if r.higher_is_better {
            x >= 1.0
        } else {
            x <= 1.0
        };
        let color = if better { "#2ca02c" } else { "#d62728" };
        let (x0, x1) = if x >= 1.0 { (cx, xr(x)) } else { (xr(x), cx) };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}">{x:.2}</text>"#,
            bx - 6.0,
            y + bar_h - 4.0,
            esc(&format!("{} {} {}", r.workload, r.transport, r.placement)),
            y + 2.0,
            (x1 - x0).max(1.0),
            bar_h - 4.0,
            x1.max(x0) + 3.0,
            y + bar_h - 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
