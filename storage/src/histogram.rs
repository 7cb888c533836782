//! A fixed-bucket latency histogram that many threads update without locks, rendered in
//! Prometheus's cumulative form.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket, +Inf, is implicit).
pub const BOUNDS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram { buckets: [const { AtomicU64::new(0) }; BOUNDS.len() + 1], sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| secs <= *b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Cumulative counts per bound (+Inf last), the sum in seconds, and the count.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut cumulative = 0;
        let mut out = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            out.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        (out, self.sum_micros.load(Relaxed) as f64 / 1e6, self.count.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 10.00305).abs() < 1e-9);
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets.iter().find(|(b, _)| *b == 0.005).unwrap().1, 2);
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 3));
    }
}
