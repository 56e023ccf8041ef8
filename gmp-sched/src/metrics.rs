//! Scheduling-latency histogram (runnable -> running), Go's headline metric.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets are powers of two of nanoseconds: bucket i holds [2^i, 2^(i+1)).
pub const BUCKETS: usize = 40;

/// A lock-free log2 histogram.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Records one sample of `ns` nanoseconds.
    #[inline]
    pub fn record(&self, ns: u64) {
        let b = (64 - ns.max(1).leading_zeros() as usize - 1).min(BUCKETS - 1);
        self.counts[b].fetch_add(1, Ordering::Relaxed);
    }
    /// A copy of the bucket counts.
    pub fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn buckets_are_log2() {
        let h = Histogram::default();
        h.record(0);
        h.record(1);
        h.record(3);
        h.record(1024);
        let s = h.snapshot();
        assert_eq!(s[0], 2);
        assert_eq!(s[1], 1);
        assert_eq!(s[10], 1);
    }
}
