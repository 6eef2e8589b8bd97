//! Process placement and clock helpers.

use anyhow::{Context, Result};
use rustix::thread::CpuSet;

/// Pin the calling thread (call it before any thread is spawned, so the whole
/// process inherits it) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .with_context(|| format!("sched_setaffinity(cpu {cpu})"))
}

/// Number of CPUs this process may run on.
pub fn available_cpus() -> usize {
    rustix::thread::sched_getaffinity(None)
        .map(|s| s.count() as usize)
        .unwrap_or(1)
}

/// CLOCK_MONOTONIC in ns: unlike `Instant`, comparable across processes.
pub fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Ask the kernel to SIGKILL this (child) process when its parent dies, so a
/// crashed or killed harness never leaves orphans behind.
pub fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
}

/// 1-minute load average (0.0 if unavailable).
pub fn loadavg1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// What about the machine shapes the figures: the CPU, the kernel, how an idle
/// vCPU waits (a guest that halts at once, `guest_halt_poll_ns` = 0, pays a
/// wake-up of ~20 µs each time the other side's message arrives), the
/// socket buffer limits. Each field is `None` where it cannot be read.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub cpuidle_driver: Option<String>,
    pub guest_halt_poll_ns: Option<u64>,
    pub wmem_default: Option<u64>,
    pub wmem_max: Option<u64>,
    pub loadavg_at_start: f64,
}

impl Machine {
    pub fn read(cpus: usize) -> Machine {
        let text = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let number = |path: &str| text(path)?.parse().ok();
        Machine {
            cpus,
            cpu_model: text("/proc/cpuinfo").and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            }),
            kernel: text("/proc/sys/kernel/osrelease"),
            cpuidle_driver: text("/sys/devices/system/cpu/cpuidle/current_driver"),
            guest_halt_poll_ns: number("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
            wmem_default: number("/proc/sys/net/core/wmem_default"),
            wmem_max: number("/proc/sys/net/core/wmem_max"),
            loadavg_at_start: loadavg1(),
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        let num = |v: Option<u64>| v.map_or_else(|| "?".into(), |n| n.to_string());
        format!(
            "{} CPUs ({}), Linux {}, cpuidle {} (guest_halt_poll_ns {}), wmem_default {} / wmem_max {}, load {:.2} at start",
            self.cpus,
            or(&self.cpu_model),
            or(&self.kernel),
            or(&self.cpuidle_driver),
            num(self.guest_halt_poll_ns),
            num(self.wmem_default),
            num(self.wmem_max),
            self.loadavg_at_start,
        )
    }
}
