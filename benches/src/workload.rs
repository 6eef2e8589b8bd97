//! Workload definitions (what a row measures) and placements (where the
//! processes run).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Size of the request and reply in the latency / connection-rate /
/// request-response workloads.
pub const SMALL: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// Ping-pong of one `size`-byte message on one connection: `warmup`
    /// round trips, then at most `iters` timed ones for at most `max_ms`.
    Latency {
        size: usize,
        warmup: u64,
        iters: u64,
        max_ms: u64,
    },
    /// Client streams `size`-byte messages for `dur_ms`; the server reads them
    /// and acknowledges a zero-length end marker with the byte count.
    Throughput {
        size: usize,
        warmup_ms: u64,
        dur_ms: u64,
    },
    /// `clients` processes each loop: connect, `size`-byte request, reply,
    /// close.
    ConnRate {
        clients: usize,
        size: usize,
        dur_ms: u64,
    },
    /// `clients` processes x `conns` persistent connections each doing closed
    /// loop 64 B request / 64 B reply.
    ReqResp {
        clients: usize,
        conns: usize,
        dur_ms: u64,
    },
}

/// What the server does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Send every message straight back.
    Echo,
    /// Swallow messages; on an empty message reply with the 8-byte LE count
    /// of payload bytes received since the previous empty message.
    Sink,
}

impl Workload {
    /// The round-trip workload of the harness's suite (`quick`: its short
    /// settings).
    pub fn latency(size: usize, quick: bool) -> Workload {
        let (warmup, iters, max_ms) = if quick {
            (500, 5_000, 1_500)
        } else {
            (2_000, 15_000, 2_500)
        };
        Workload::Latency {
            size,
            warmup,
            iters,
            max_ms,
        }
    }

    /// The streaming workload of the harness's suite.
    pub fn throughput(size: usize, quick: bool) -> Workload {
        let (warmup_ms, dur_ms) = if quick { (40, 150) } else { (100, 300) };
        Workload::Throughput {
            size,
            warmup_ms,
            dur_ms,
        }
    }

    /// The connection-rate workload of the harness's suite.
    pub fn conn_rate(clients: usize, size: usize, quick: bool) -> Workload {
        Workload::ConnRate {
            clients,
            size,
            dur_ms: if quick { 250 } else { 800 },
        }
    }

    /// The same workload with its measured phase lasting `d` (the latency
    /// workload: as many round trips as fit).
    pub fn measured_for(self, d: Duration) -> Workload {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match self {
            Workload::Latency { size, warmup, .. } => Workload::Latency {
                size,
                warmup,
                iters: u64::MAX,
                max_ms: ms,
            },
            Workload::Throughput {
                size, warmup_ms, ..
            } => Workload::Throughput {
                size,
                warmup_ms,
                dur_ms: ms,
            },
            Workload::ConnRate { clients, size, .. } => Workload::ConnRate {
                clients,
                size,
                dur_ms: ms,
            },
            Workload::ReqResp { clients, conns, .. } => Workload::ReqResp {
                clients,
                conns,
                dur_ms: ms,
            },
        }
    }

    pub fn label(&self) -> String {
        match *self {
            Workload::Latency { size, .. } => format!("rtt-{}", size_label(size)),
            Workload::Throughput { size, .. } => format!("tput-{}", size_label(size)),
            Workload::ConnRate { clients, size, .. } if size != SMALL => {
                format!("connrate-{clients}c-{}", size_label(size))
            }
            Workload::ConnRate { clients, .. } => format!("connrate-{clients}c"),
            Workload::ReqResp { clients, conns, .. } => format!("reqresp-{clients}x{conns}"),
        }
    }

    pub fn handler(&self) -> Handler {
        match self {
            Workload::Throughput { .. } => Handler::Sink,
            _ => Handler::Echo,
        }
    }

    /// Number of client processes.
    pub fn client_procs(&self) -> usize {
        match *self {
            Workload::ConnRate { clients, .. } | Workload::ReqResp { clients, .. } => clients,
            _ => 1,
        }
    }

    /// Connections each client opens before signalling "ready".
    pub fn preconnect(&self) -> usize {
        match *self {
            Workload::Latency { .. } | Workload::Throughput { .. } => 1,
            Workload::ConnRate { .. } => 0,
            Workload::ReqResp { conns, .. } => conns,
        }
    }

    /// Needs a server that serves many connections *concurrently* (an
    /// iterative blocking server would deadlock).
    pub fn needs_concurrency(&self) -> bool {
        matches!(self, Workload::ReqResp { .. })
    }

    /// Rough upper bound of the measuring phase, for the per-run timeout.
    pub fn expected(&self) -> Duration {
        Duration::from_millis(match *self {
            Workload::Latency { max_ms, .. } => max_ms,
            Workload::Throughput {
                warmup_ms, dur_ms, ..
            } => warmup_ms + dur_ms,
            Workload::ConnRate { dur_ms, .. } | Workload::ReqResp { dur_ms, .. } => dur_ms,
        })
    }

    pub fn placements(&self, cpus: usize) -> Vec<Placement> {
        if !crate::util::CAN_PIN {
            return vec![Placement::Unpinned];
        }
        match self {
            Workload::Latency { .. } | Workload::Throughput { .. } if cpus >= 2 => {
                vec![Placement::SameCpu, Placement::CrossCpu, Placement::Unpinned]
            }
            Workload::Latency { .. } | Workload::Throughput { .. } => {
                vec![Placement::SameCpu, Placement::Unpinned]
            }
            // One client: on one CPU the connection rate measures the code of
            // connecting and accepting, not the wake-ups of the other vCPU.
            Workload::ConnRate { clients: 1, .. } => vec![Placement::SameCpu, Placement::Unpinned],
            _ => vec![Placement::Unpinned],
        }
    }

    /// Higher value of the primary metric is better?
    pub fn higher_is_better(&self) -> bool {
        !matches!(self, Workload::Latency { .. })
    }
}

fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size.trailing_zeros() >= 20 {
        format!("{}MiB", size >> 20)
    } else if size >= 1 << 10 && size.trailing_zeros() >= 10 {
        format!("{}KiB", size >> 10)
    } else {
        format!("{size}B")
    }
}

/// Default number of repetitions of each row (the median run is reported).
pub fn default_repeats(quick: bool) -> usize {
    if quick {
        1
    } else {
        5
    }
}

/// The full list of workloads, in the order they are run.
pub fn suite(quick: bool) -> Vec<Workload> {
    let mut v = vec![Workload::latency(SMALL, quick)];
    for size in [4 << 10, 64 << 10, 1 << 20] {
        v.push(Workload::throughput(size, quick));
    }
    v.push(Workload::conn_rate(1, SMALL, quick));
    v.push(Workload::conn_rate(8, SMALL, quick));
    v.push(Workload::ReqResp {
        clients: 8,
        conns: 4,
        dur_ms: if quick { 400 } else { 1_000 },
    });
    v
}

/// Where the server and client processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Server and client(s) both pinned to CPU 0.
    SameCpu,
    /// Server pinned to CPU 0, client(s) to CPU 1.
    CrossCpu,
    /// No pinning; the scheduler decides.
    Unpinned,
}

impl Placement {
    pub fn label(&self) -> &'static str {
        match self {
            Placement::SameCpu => "same-cpu",
            Placement::CrossCpu => "cross-cpu",
            Placement::Unpinned => "unpinned",
        }
    }
    pub fn server_cpu(&self) -> Option<usize> {
        match self {
            Placement::Unpinned => None,
            _ => Some(0),
        }
    }
    pub fn client_cpu(&self) -> Option<usize> {
        match self {
            Placement::SameCpu => Some(0),
            Placement::CrossCpu => Some(1),
            Placement::Unpinned => None,
        }
    }
}
