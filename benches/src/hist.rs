//! A tiny mergeable log-linear latency histogram (128 sub-buckets per power of
//! two, so any reported quantile is within ~0.8% of the true value).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hist {
    /// bucket index -> count (sparse)
    counts: BTreeMap<u32, u64>,
    total: u64,
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
    }

    pub fn merge(&mut self, other: &Hist) {
        for (&k, &c) in &other.counts {
            *self.counts.entry(k).or_insert(0) += c;
        }
        self.total += other.total;
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
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
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

/// Exact nearest-rank quantile of an already sorted slice.
pub fn exact_quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
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
}
