//! Latency statistics: exact percentiles over recorded samples.
//!
//! Samples are durations in microseconds (`u64`). Percentiles use the nearest-rank method
//! (the smallest sample such that at least `p` percent of samples are ≤ it), computed exactly
//! over the sorted samples; a run of a minute at tens of thousands of requests per second is a
//! few million samples, which sorting handles in well under a second.

use serde::Serialize;
use std::collections::BTreeMap;

/// Percentile summary of one latency distribution, all figures in **milliseconds**.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean, ms.
    pub mean: f64,
    /// Smallest sample, ms.
    pub min: f64,
    /// 50th percentile (nearest rank), ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest sample, ms.
    pub max: f64,
}

/// Nearest-rank percentile of already **sorted** samples (`p` in 0..=100).
///
/// Returns `None` for an empty slice. `p <= 0` gives the minimum, `p >= 100` the maximum.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // A tiny epsilon keeps 0.999 × 1000 (= 999.000…01 in floating point) at rank 999.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    sorted.get(idx).copied()
}

/// Sorts `samples_us` in place and summarises it (µs in, ms out).
pub fn summarize(samples_us: &mut [u64]) -> Summary {
    if samples_us.is_empty() {
        return Summary::default();
    }
    samples_us.sort_unstable();
    let ms = |v: Option<u64>| v.map(|x| x as f64 / 1000.0).unwrap_or(0.0);
    let sum: u128 = samples_us.iter().map(|&v| u128::from(v)).sum();
    Summary {
        count: samples_us.len() as u64,
        mean: (sum as f64 / samples_us.len() as f64) / 1000.0,
        min: ms(samples_us.first().copied()),
        p50: ms(percentile_sorted(samples_us, 50.0)),
        p90: ms(percentile_sorted(samples_us, 90.0)),
        p99: ms(percentile_sorted(samples_us, 99.0)),
        p999: ms(percentile_sorted(samples_us, 99.9)),
        max: ms(samples_us.last().copied()),
    }
}

/// Per-worker tally that is merged at the end of a run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latencies of measured requests, µs.
    pub latencies_us: Vec<u64>,
    /// Second latency series (open model: service time from actual send), µs.
    pub service_us: Vec<u64>,
    /// Responses per HTTP status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Transport errors and timeouts (no HTTP status).
    pub errors: u64,
}

impl Tally {
    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.service_us.extend(other.service_us);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.errors += other.errors;
    }

    /// Total responses with an HTTP status.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50));
        assert_eq!(percentile_sorted(&v, 99.0), Some(99));
        assert_eq!(percentile_sorted(&v, 99.9), Some(100));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1));
        assert_eq!(percentile_sorted(&v, 1.0), Some(1));
    }

    #[test]
    fn p999_needs_a_thousand_samples_to_differ_from_max() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile_sorted(&v, 99.9), Some(999));
        assert_eq!(percentile_sorted(&v, 99.0), Some(990));
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(percentile_sorted(&[], 50.0), None);
        assert_eq!(percentile_sorted(&[7], 50.0), Some(7));
        assert_eq!(percentile_sorted(&[7], 99.9), Some(7));
        assert_eq!(summarize(&mut []), Summary::default());
    }

    #[test]
    fn summarize_sorts_and_converts_to_ms() {
        let mut v = vec![3000, 1000, 2000, 4000];
        let s = summarize(&mut v);
        assert_eq!(s.count, 4);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 4.0);
        assert_eq!(s.p50, 2.0);
        assert_eq!(s.mean, 2.5);
    }

    #[test]
    fn tally_merges() {
        let mut a = Tally::default();
        a.statuses.insert(200, 2);
        a.latencies_us.push(1);
        let mut b = Tally::default();
        b.statuses.insert(200, 3);
        b.statuses.insert(401, 1);
        b.errors = 2;
        b.latencies_us.push(2);
        a.merge(b);
        assert_eq!(a.statuses[&200], 5);
        assert_eq!(a.statuses[&401], 1);
        assert_eq!(a.responses(), 6);
        assert_eq!(a.errors, 2);
        assert_eq!(a.latencies_us.len(), 2);
    }
}
