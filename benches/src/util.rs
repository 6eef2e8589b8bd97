//! Process placement and clock helpers. Pinning is Linux-only
//! (`sched_setaffinity`); elsewhere every row runs unpinned.

use anyhow::Result;

/// Whether processes can be pinned to a CPU here (the `same-cpu` and
/// `cross-cpu` placements).
pub const CAN_PIN: bool = cfg!(target_os = "linux");

/// Pin the calling thread (call it before any thread is spawned, so the whole
/// process inherits it) to one CPU.
#[cfg(target_os = "linux")]
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    use anyhow::Context as _;
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .with_context(|| format!("sched_setaffinity(cpu {cpu})"))
}

#[cfg(not(target_os = "linux"))]
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    anyhow::bail!("cannot pin to cpu {cpu}: pinning is supported on Linux only")
}

/// Number of CPUs this process may run on.
pub fn available_cpus() -> usize {
    #[cfg(target_os = "linux")]
    if let Ok(set) = rustix::thread::sched_getaffinity(None) {
        return set.count() as usize;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A clock in ns that, unlike `Instant`, is comparable across processes:
/// CLOCK_MONOTONIC on Unix, the system time elsewhere.
pub fn clock_ns() -> u64 {
    #[cfg(unix)]
    {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
    #[cfg(not(unix))]
    {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
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
