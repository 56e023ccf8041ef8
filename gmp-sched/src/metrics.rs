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

/// A snapshot of the scheduler's state and counters.
#[derive(Clone, Debug, Default)]
pub struct SchedMetrics {
    /// Number of Ps.
    pub gomaxprocs: usize,
    /// Live user goroutines.
    pub goroutines: usize,
    /// Goroutines by status: runnable, running, syscall, waiting.
    pub goroutines_runnable: usize,
    /// Running.
    pub goroutines_running: usize,
    /// In a blocking call.
    pub goroutines_syscall: usize,
    /// Parked.
    pub goroutines_waiting: usize,
    /// OS threads (Ms) created.
    pub threads: usize,
    /// Idle Ps.
    pub idle_procs: usize,
    /// Spinning Ms.
    pub spinning_threads: usize,
    /// Idle Ms.
    pub idle_threads: usize,
    /// Gs stolen between Ps.
    pub steals: u64,
    /// Gs run from `runnext`.
    pub runnext_hits: u64,
    /// Gs taken from the global queue.
    pub global_takes: u64,
    /// Ps retaken from blocking calls.
    pub syscall_handoffs: u64,
    /// Preemption requests.
    pub preempt_requests: u64,
    /// Goroutines that yielded to a preemption request.
    pub preemptions: u64,
    /// Ps taken from Ms stuck in user code.
    pub forced_handoffs: u64,
    /// Preemptions made by an M's timer alarm (an overdue timer on a P
    /// whose goroutine never yields).
    pub alarm_preempts: u64,
    /// Of `forced_handoffs`, those in which the signal handler handed the P
    /// straight to an idle M instead of leaving it for sysmon to retake.
    pub direct_handoffs: u64,
    /// Goroutines spawned.
    pub spawned: u64,
    /// Panics caught.
    pub panics: u64,
    /// Gs on the global run queue.
    pub global_runq: usize,
    /// Address space reserved for stacks.
    pub stack_bytes_reserved: usize,
    /// Stacks allocated (each at most `stack_size` resident).
    pub stacks_allocated: usize,
    /// Bytes of stack memory resident, estimated as one page per live
    /// goroutine (a parked goroutine touches the top page of its stack; a
    /// `mincore` walk over every slab would cost more than the snapshot).
    pub stack_bytes_resident: usize,
    /// Scheduling latency histogram (runnable -> running), log2 ns buckets.
    pub sched_latency_ns: Vec<u64>,
}

impl crate::Sched {
    /// A snapshot of the scheduler's metrics.
    pub fn metrics(&self) -> SchedMetrics {
        use gmp_g::Status;
        let mut m = SchedMetrics {
            gomaxprocs: self.gomaxprocs(),
            goroutines: self.num_goroutine(),
            threads: self.mcount(),
            idle_procs: self.npidle.load(Ordering::SeqCst),
            spinning_threads: self.nmspinning.load(Ordering::SeqCst),
            idle_threads: self.nmidle.load(Ordering::SeqCst),
            syscall_handoffs: self.counters.syscall_handoffs.load(Ordering::Relaxed),
            preempt_requests: self.counters.preempt_requests.load(Ordering::Relaxed),
            preemptions: self.counters.preemptions.load(Ordering::Relaxed),
            forced_handoffs: self.counters.forced_handoffs.load(Ordering::Relaxed),
            alarm_preempts: self.counters.alarm_preempts.load(Ordering::Relaxed),
            direct_handoffs: self.counters.direct_handoffs.load(Ordering::Relaxed),
            spawned: self.counters.spawned.load(Ordering::Relaxed),
            panics: self.counters.panics.load(Ordering::Relaxed),
            global_runq: self.runqsize.load(Ordering::SeqCst),
            stack_bytes_reserved: self.stacks.reserved_bytes(),
            stacks_allocated: self.stacks.allocated(),
            sched_latency_ns: self.latency.snapshot().to_vec(),
            ..Default::default()
        };
        for i in 0..crate::sched::MAX_PROCS {
            let Some(p) = self.p(i) else { break };
            m.steals += p.stats.steals.load(Ordering::Relaxed);
            m.runnext_hits += p.stats.runnext_hits.load(Ordering::Relaxed);
            m.global_takes += p.stats.global_takes.load(Ordering::Relaxed);
            m.spawned += p.stats.spawned.load(Ordering::Relaxed);
        }
        for g in self.allgs.lock().unwrap().iter() {
            if g.system.load(Ordering::Relaxed) {
                continue;
            }
            match g.status.get() {
                Status::Runnable => m.goroutines_runnable += 1,
                Status::Running => m.goroutines_running += 1,
                Status::Syscall => m.goroutines_syscall += 1,
                Status::Waiting => m.goroutines_waiting += 1,
                _ => {}
            }
        }
        m.stack_bytes_resident = m.goroutines * gmp_stack::page_size();
        m
    }
}
