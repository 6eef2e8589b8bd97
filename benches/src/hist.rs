//! Latency statistics, written once for the harness and the `npipe` command
//! line: nearest-rank percentiles ([`Latency`]) of exact samples or of a tiny
//! mergeable log-linear histogram ([`Hist`]: 128 sub-buckets per power of two,
//! so any reported quantile is within ~0.8% of the true value).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hist {
    /// bucket index -> count (sparse)
    counts: BTreeMap<u32, u64>,
    total: u64,
    /// Exact sum and largest value, for the mean and the maximum.
    #[serde(default)]
    sum: u64,
    #[serde(default)]
    max: u64,
}

fn index(v: u64) -> u32 {
    if v < SUB {
        return v as u32;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let mant = (v >> shift) as u32; // in [SUB, 2*SUB)
    ((shift + 1) << SUB_BITS) + (mant - SUB as u32)
}

/// Representative (mid-point) value of a bucket.
fn value(idx: u32) -> u64 {
    if u64::from(idx) < SUB {
        return u64::from(idx);
    }
    let shift = (idx >> SUB_BITS) - 1;
    let mant = u64::from(idx & (SUB as u32 - 1)) + SUB;
    (mant << shift) + ((1u64 << shift) >> 1)
}

impl Hist {
    pub fn record(&mut self, v: u64) {
        *self.counts.entry(index(v)).or_insert(0) += 1;
        self.total += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (&k, &c) in &other.counts {
            *self.counts.entry(k).or_insert(0) += c;
        }
        self.total += other.total;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Value at quantile `q` in [0, 1] (nearest-rank).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = nearest_rank(q, self.total);
        let mut seen = 0;
        for (&k, &c) in &self.counts {
            seen += c;
            if seen >= rank {
                return Some(value(k));
            }
        }
        self.counts.keys().next_back().map(|&k| value(k))
    }

    /// (value, cumulative fraction) points, for plotting a CDF.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let mut seen = 0;
        self.counts
            .iter()
            .map(|(&k, &c)| {
                seen += c;
                (value(k), seen as f64 / self.total as f64)
            })
            .collect()
    }
}

/// The nearest rank (1-based) of quantile `q` in [0, 1] among `n` > 0 values:
/// the smallest value that at least `q` of them do not exceed.
fn nearest_rank(q: f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n)
}

/// Percentiles of a set of latency samples, in nanoseconds (all zero when
/// there are none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    /// Exact percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| samples[nearest_rank(q, n as u64) as usize - 1];
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Latency {
            samples: n,
            mean_ns: u64::try_from(sum / n as u128).unwrap_or(u64::MAX),
            p50_ns: at(0.5),
            p90_ns: at(0.9),
            p99_ns: at(0.99),
            max_ns: samples[n - 1],
        }
    }

    /// Percentiles of the histogram (within its precision; the mean and the
    /// maximum are exact).
    pub fn of_hist(hist: &Hist) -> Latency {
        let at = |q: f64| hist.quantile(q).unwrap_or(0);
        Latency {
            samples: usize::try_from(hist.total).unwrap_or(usize::MAX),
            mean_ns: hist.sum.checked_div(hist.total).unwrap_or(0),
            p50_ns: at(0.5),
            p90_ns: at(0.9),
            p99_ns: at(0.99),
            max_ns: hist.max,
        }
    }

    pub fn p50(&self) -> Duration {
        Duration::from_nanos(self.p50_ns)
    }
    pub fn p90(&self) -> Duration {
        Duration::from_nanos(self.p90_ns)
    }
    pub fn p99(&self) -> Duration {
        Duration::from_nanos(self.p99_ns)
    }
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(37) {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let r = value(i) as f64;
            assert!(
                (r - v as f64).abs() <= (v as f64 * 0.008).max(1.0),
                "{v} -> {r}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01);
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01);
    }

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
    fn a_histogram_gives_the_same_percentiles_where_its_buckets_are_exact() {
        // Below 128 every value has a bucket of its own.
        let mut samples: Vec<u64> = (1..=100).collect();
        let mut h = Hist::default();
        for &s in &samples {
            h.record(s);
        }
        let mut merged = Hist::default();
        merged.merge(&h);
        assert_eq!(Latency::of_hist(&merged), Latency::of(&mut samples));
        assert_eq!(Latency::of_hist(&Hist::default()), Latency::default());
    }
}
