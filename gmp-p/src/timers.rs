//! Per-P timer heaps (Go 1.14+: timers live on the P that set them and are
//! run by whichever M passes through `findrunnable` on any P, or by sysmon).
//!
//! A heap entry points at a [`Timer`]; stopping a timer only flips its state
//! (a CAS), and the stale entry is dropped lazily when it reaches the top of
//! the heap, as Go's `timerDeleted` entries are.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Something that happens at a deadline: ready a sleeping G, send on a
/// timer channel.
pub trait Timer: Send + Sync + 'static {
    /// Whether the timer is still armed (a stopped timer is skipped).
    fn armed(&self) -> bool;
    /// Runs the timer; called at most once per arming, without locks held.
    /// Returns `Some(next_when)` to re-arm (a ticker), `None` otherwise.
    fn fire(&self, now: u64) -> Option<u64>;
}

struct Entry {
    when: u64,
    seq: u64,
    timer: Arc<dyn Timer>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.when == o.when && self.seq == o.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest on top.
        o.when.cmp(&self.when).then(o.seq.cmp(&self.seq))
    }
}

/// A P's timers. `next` caches the earliest deadline (`u64::MAX` if none) so
/// that other Ms can check it without taking the lock.
pub struct TimerHeap {
    heap: Mutex<(BinaryHeap<Entry>, u64)>,
    next: AtomicU64,
    /// Heap size after the last purge of stopped timers.
    purged_len: std::sync::atomic::AtomicUsize,
}

/// Heaps smaller than this are never purged (a scan is not worth it).
const PURGE_MIN: usize = 64;

impl std::fmt::Debug for TimerHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimerHeap(next {})", self.next_when())
    }
}

impl Default for TimerHeap {
    fn default() -> Self {
        TimerHeap {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            next: AtomicU64::new(u64::MAX),
            purged_len: std::sync::atomic::AtomicUsize::new(PURGE_MIN / 2),
        }
    }
}

impl TimerHeap {
    /// Earliest deadline, `u64::MAX` if none (may be a stopped timer's).
    #[inline]
    pub fn next_when(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Number of entries (including stopped ones not yet dropped).
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BinaryHeap<Entry>, u64)> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a timer firing at `when`. Returns true if it became the earliest.
    ///
    /// Stopped timers stay in the heap until they reach the top; so that a
    /// loop of long, early-stopped timeouts cannot grow it without bound,
    /// the heap is purged of stopped entries whenever it has doubled since
    /// the last purge (amortised O(1) per add; Go purges when a quarter of
    /// the heap is deleted timers).
    pub fn add(&self, when: u64, timer: Arc<dyn Timer>) -> bool {
        let mut h = self.lock();
        h.1 += 1;
        let seq = h.1;
        if h.0.len() >= PURGE_MIN && h.0.len() >= 2 * self.purged_len.load(Ordering::Relaxed) {
            h.0.retain(|e| e.timer.armed());
            self.purged_len
                .store(h.0.len().max(PURGE_MIN / 2), Ordering::Relaxed);
        }
        h.0.push(Entry { when, seq, timer });
        let earliest = when < self.next.load(Ordering::Relaxed);
        if earliest {
            // Release: pairs with the Acquire in next_when.
            self.next.store(when, Ordering::Release);
        }
        earliest
    }

    /// Runs every timer due at `now` (Go's `checkTimers`/`runtimer`) and
    /// returns how many fired. Timer functions run without the lock held.
    pub fn run_due(&self, now: u64) -> usize {
        if self.next_when() > now {
            return 0;
        }
        let mut fired = 0;
        loop {
            let e = {
                let mut h = self.lock();
                loop {
                    match h.0.peek() {
                        Some(e) if !e.timer.armed() => {
                            h.0.pop();
                        }
                        _ => break,
                    }
                }
                match h.0.peek() {
                    Some(e) if e.when <= now => h.0.pop(),
                    top => {
                        let next = top.map(|e| e.when).unwrap_or(u64::MAX);
                        self.next.store(next, Ordering::Release);
                        None
                    }
                }
            };
            let Some(e) = e else { break };
            fired += 1;
            if let Some(again) = e.timer.fire(now) {
                self.add(again, e.timer);
            }
        }
        fired
    }

    /// Moves every armed timer into `dst` (a P being destroyed).
    pub fn move_to(&self, dst: &TimerHeap) {
        let entries: Vec<Entry> = {
            let mut h = self.lock();
            self.next.store(u64::MAX, Ordering::Release);
            h.0.drain().collect()
        };
        for e in entries {
            if e.timer.armed() {
                dst.add(e.when, e.timer);
            }
        }
    }

    /// Whether any armed timer remains (deadlock detection).
    pub fn has_armed(&self) -> bool {
        self.lock().0.iter().any(|e| e.timer.armed())
    }
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    struct T {
        armed: AtomicBool,
        log: Arc<Mutex<Vec<u64>>>,
        id: u64,
        fired: AtomicUsize,
    }
    impl Timer for T {
        fn armed(&self) -> bool {
            self.armed.load(Ordering::Relaxed)
        }
        fn fire(&self, _now: u64) -> Option<u64> {
            self.fired.fetch_add(1, Ordering::Relaxed);
            self.log.lock().unwrap().push(self.id);
            None
        }
    }

    #[test]
    fn fires_in_deadline_order_and_skips_stopped() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = TimerHeap::default();
        let mk = |id| {
            Arc::new(T {
                armed: AtomicBool::new(true),
                log: log.clone(),
                id,
                fired: AtomicUsize::new(0),
            })
        };
        let (a, b, c) = (mk(1), mk(2), mk(3));
        assert!(h.add(30, a.clone()));
        assert!(h.add(10, b.clone()));
        assert!(!h.add(20, c.clone()));
        assert_eq!(h.next_when(), 10);
        c.armed.store(false, Ordering::Relaxed);
        assert_eq!(h.run_due(5), 0);
        assert_eq!(h.run_due(25), 1);
        assert_eq!(h.next_when(), 30);
        assert_eq!(h.run_due(100), 1);
        assert_eq!(*log.lock().unwrap(), vec![2, 1]);
        assert_eq!(c.fired.load(Ordering::Relaxed), 0);
        assert_eq!(h.next_when(), u64::MAX);
    }

    #[test]
    fn stopped_timers_do_not_accumulate() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = TimerHeap::default();
        // A loop of long timeouts, each stopped early (a recv_timeout that
        // got its value): the heap stays bounded.
        for i in 0..10_000u64 {
            let t = Arc::new(T {
                armed: AtomicBool::new(true),
                log: log.clone(),
                id: i,
                fired: AtomicUsize::new(0),
            });
            h.add(1_000_000_000 + i, t.clone());
            t.armed.store(false, Ordering::Relaxed);
        }
        assert!(h.len() <= 2 * PURGE_MIN, "heap grew to {}", h.len());
        // Armed timers survive purges and still fire in order.
        let keep = Arc::new(T {
            armed: AtomicBool::new(true),
            log: log.clone(),
            id: 42,
            fired: AtomicUsize::new(0),
        });
        h.add(5, keep.clone());
        for i in 0..1_000u64 {
            let t = Arc::new(T {
                armed: AtomicBool::new(false),
                log: log.clone(),
                id: i,
                fired: AtomicUsize::new(0),
            });
            h.add(10 + i, t);
        }
        assert_eq!(h.run_due(6), 1);
        assert_eq!(*log.lock().unwrap(), vec![42]);
    }
}
