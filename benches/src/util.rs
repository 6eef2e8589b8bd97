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
