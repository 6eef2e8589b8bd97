//! Latency percentiles for `demo` and `bench`.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latency samples, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) mean_ns: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p90_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) max_ns: u64,
}

impl Latency {
    /// Summarizes `samples` (sorted in place). All zero when empty.
    pub(crate) fn of(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Latency {
            samples: samples.len(),
            mean_ns: u64::try_from(sum / samples.len() as u128).unwrap_or(u64::MAX),
            p50_ns: percentile(samples, 50.0),
            p90_ns: percentile(samples, 90.0),
            p99_ns: percentile(samples, 99.0),
            max_ns: samples[samples.len() - 1],
        }
    }

    pub(crate) fn p50(&self) -> Duration {
        Duration::from_nanos(self.p50_ns)
    }
    pub(crate) fn p90(&self) -> Duration {
        Duration::from_nanos(self.p90_ns)
    }
    pub(crate) fn p99(&self) -> Duration {
        Duration::from_nanos(self.p99_ns)
    }
    pub(crate) fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[u64], pct: f64) -> u64 {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Keeps at most `cap` samples of an unbounded stream, each equally likely
/// (reservoir sampling), so a long run's report stays small.
#[derive(Debug)]
pub(crate) struct Reservoir {
    samples: Vec<u64>,
    seen: u64,
    cap: usize,
    rng: u64,
}

impl Reservoir {
    pub(crate) fn new(cap: usize) -> Reservoir {
        Reservoir {
            samples: Vec::with_capacity(cap.min(4096)),
            seen: 0,
            cap,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub(crate) fn push(&mut self, sample: u64) {
        self.seen += 1;
        if self.samples.len() < self.cap {
            self.samples.push(sample);
            return;
        }
        // xorshift64: statistical quality is plenty for picking samples.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.seen;
        if let Ok(slot) = usize::try_from(slot) {
            if slot < self.cap {
                self.samples[slot] = sample;
            }
        }
    }

    pub(crate) fn into_samples(self) -> Vec<u64> {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::of(&mut samples);
        assert_eq!(
            (l.p50_ns, l.p90_ns, l.p99_ns, l.max_ns, l.mean_ns),
            (50, 90, 99, 100, 50)
        );
        assert_eq!(Latency::of(&mut [7]).p99_ns, 7);
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn reservoir_is_bounded() {
        let mut r = Reservoir::new(10);
        for i in 0..1000 {
            r.push(i);
        }
        let samples = r.into_samples();
        assert_eq!(samples.len(), 10);
        assert!(samples.iter().all(|&s| s < 1000));
    }
}
