//! Per-P timer heaps (Go 1.14+: timers live on the P that set them and are
//! run by whichever M passes through `findrunnable` on any P, or by sysmon).
//!
//! The heap is 4-ary, as Go's (`siftupTimer`/`siftdownTimer`): half the
//! depth of a binary heap, and a node's four children share a cache line or
//! two, so a pop touches fewer lines on the way down.
//!
//! An entry either points at a [`Timer`] (timer channels, user timers) or,
//! for a sleeping goroutine, holds the goroutine and the function that
//! readies it ([`TimerHeap::add_ready`]): a `sleep` then costs no allocation,
//! as Go's `time.Sleep` reuses the timer embedded in its `g`. Stopping a
//! [`Timer`] only flips its state (a CAS), and the stale entry is dropped
//! lazily when it reaches the top of the heap, as Go's `timerDeleted`
//! entries are; a sleep is never stopped.
//!
//! The earliest deadline is published in an atomic ([`TimerHeap::next_when`],
//! Go's `p.timer0When`) so that other Ms and sysmon can check it without
//! the lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gmp_g::GRef;

/// Something that happens at a deadline: ready a sleeping G, send on a
/// timer channel.
pub trait Timer: Send + Sync + 'static {
    /// Whether the timer is still armed (a stopped timer is skipped).
    fn armed(&self) -> bool;
    /// Runs the timer; called at most once per arming, without locks held.
    /// Returns `Some(next_when)` to re-arm (a ticker), `None` otherwise.
    fn fire(&self, now: u64) -> Option<u64>;
}

/// What an entry does when it fires.
enum Action {
    /// A timer object.
    Timer(Arc<dyn Timer>),
    /// Ready a sleeping goroutine: `ready(g)` (always armed).
    Ready(fn(GRef), GRef),
}

struct Entry {
    when: u64,
    /// Insertion order: entries with equal deadlines fire first-in first-out.
    seq: u64,
    action: Action,
}

impl Entry {
    #[inline]
    fn before(&self, o: &Entry) -> bool {
        (self.when, self.seq) < (o.when, o.seq)
    }
    #[inline]
    fn armed(&self) -> bool {
        match &self.action {
            Action::Timer(t) => t.armed(),
            Action::Ready(..) => true,
        }
    }
}

/// A 4-ary min-heap on (when, seq).
#[derive(Default)]
struct Heap {
    v: Vec<Entry>,
    seq: u64,
}

impl Heap {
    fn push(&mut self, when: u64, action: Action) {
        self.seq += 1;
        self.v.push(Entry {
            when,
            seq: self.seq,
            action,
        });
        self.sift_up(self.v.len() - 1);
    }

    fn peek(&self) -> Option<&Entry> {
        self.v.first()
    }

    fn pop(&mut self) -> Option<Entry> {
        let last = self.v.pop()?;
        if self.v.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.v[0], last);
        self.sift_down(0);
        Some(top)
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 4;
            if !self.v[i].before(&self.v[parent]) {
                break;
            }
            self.v.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.v.len();
        loop {
            let first = 4 * i + 1;
            if first >= n {
                break;
            }
            let mut min = first;
            for c in first + 1..(first + 4).min(n) {
                if self.v[c].before(&self.v[min]) {
                    min = c;
                }
            }
            if !self.v[min].before(&self.v[i]) {
                break;
            }
            self.v.swap(i, min);
            i = min;
        }
    }

    /// Drops stopped timers and restores the heap order.
    fn purge(&mut self) {
        self.v.retain(Entry::armed);
        for i in (0..self.v.len().div_ceil(4)).rev() {
            self.sift_down(i);
        }
    }
}

/// A P's timers. `next` caches the earliest deadline (`u64::MAX` if none) so
/// that other Ms can check it without taking the lock.
pub struct TimerHeap {
    heap: Mutex<Heap>,
    next: AtomicU64,
    /// Heap size after the last purge of stopped timers.
    purged_len: AtomicUsize,
}

/// Heaps smaller than this are never purged (a scan is not worth it).
const PURGE_MIN: usize = 64;

/// Due entries taken per lock acquisition in [`TimerHeap::run_due`] (a
/// batch of readied sleepers pays for one lock round trip, not one each).
const RUN_BATCH: usize = 16;

impl std::fmt::Debug for TimerHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimerHeap(next {})", self.next_when())
    }
}

impl Default for TimerHeap {
    fn default() -> Self {
        TimerHeap {
            heap: Mutex::new(Heap::default()),
            next: AtomicU64::new(u64::MAX),
            purged_len: AtomicUsize::new(PURGE_MIN / 2),
        }
    }
}

impl TimerHeap {
    /// Earliest deadline, `u64::MAX` if none (may be a stopped timer's).
    #[inline]
    pub fn next_when(&self) -> u64 {
        // SeqCst: pairs with the SeqCst store in `push`, so that a watcher
        // that publishes its own wake-up time and then reads this (Dekker
        // style) cannot miss an earlier timer (see gmp-sysmon/DESIGN.md).
        self.next.load(Ordering::SeqCst)
    }

    /// Number of entries (including stopped ones not yet dropped).
    pub fn len(&self) -> usize {
        self.lock().v.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Heap> {
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
        self.push(when, Action::Timer(timer))
    }

    /// Adds an entry that calls `ready(g)` at `when` (a sleeping goroutine;
    /// nothing is allocated). Returns true if it became the earliest.
    ///
    /// `g` must stay valid until `ready` runs: the caller parks it and
    /// nothing else readies it (Go's `resetForSleep`).
    pub fn add_ready(&self, when: u64, ready: fn(GRef), g: GRef) -> bool {
        self.push(when, Action::Ready(ready, g))
    }

    fn push(&self, when: u64, action: Action) -> bool {
        let mut h = self.lock();
        let len = h.v.len();
        if len >= PURGE_MIN && len >= 2 * self.purged_len.load(Ordering::Relaxed) {
            h.purge();
            self.purged_len
                .store(h.v.len().max(PURGE_MIN / 2), Ordering::Relaxed);
        }
        h.push(when, action);
        let earliest = when < self.next.load(Ordering::Relaxed);
        if earliest {
            // SeqCst: pairs with the SeqCst load in next_when.
            self.next.store(when, Ordering::SeqCst);
        }
        earliest
    }

    /// Runs every timer due at `now` (Go's `checkTimers`/`runtimer`) and
    /// returns how many fired. Timer functions run without the lock held,
    /// in deadline order; due entries are taken `RUN_BATCH` (16) at a time.
    pub fn run_due(&self, now: u64) -> usize {
        if self.next_when() > now {
            return 0;
        }
        let mut fired = 0;
        let mut batch: [Option<Entry>; RUN_BATCH] = [const { None }; RUN_BATCH];
        loop {
            let mut n = 0;
            {
                let mut h = self.lock();
                while n < RUN_BATCH {
                    match h.peek() {
                        Some(e) if !e.armed() => {
                            h.pop();
                        }
                        Some(e) if e.when <= now => {
                            batch[n] = h.pop();
                            n += 1;
                        }
                        _ => break,
                    }
                }
                let next = h.peek().map(|e| e.when).unwrap_or(u64::MAX);
                self.next.store(next, Ordering::SeqCst);
            }
            for slot in batch.iter_mut().take(n) {
                let Some(e) = slot.take() else { continue };
                fired += 1;
                match e.action {
                    Action::Ready(ready, g) => ready(g),
                    Action::Timer(t) => {
                        if let Some(again) = t.fire(now) {
                            self.add(again, t);
                        }
                    }
                }
            }
            if n < RUN_BATCH {
                break;
            }
        }
        fired
    }

    /// Moves every armed timer into `dst` (a P being destroyed).
    pub fn move_to(&self, dst: &TimerHeap) {
        let entries: Vec<Entry> = {
            let mut h = self.lock();
            self.next.store(u64::MAX, Ordering::SeqCst);
            std::mem::take(&mut h.v)
        };
        for e in entries {
            if e.armed() {
                dst.push(e.when, e.action);
            }
        }
    }

    /// Whether any armed timer remains (deadlock detection).
    pub fn has_armed(&self) -> bool {
        self.lock().v.iter().any(Entry::armed)
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

    thread_local! {
        static READY: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn record(g: GRef) {
        READY.with(|r| r.borrow_mut().push(g.id()));
    }

    #[test]
    fn many_deadlines_fire_in_order_with_fifo_ties() {
        // The 4-ary heap against a sort: pseudo-random deadlines (with many
        // ties, which must fire in insertion order), mixed sleep entries and
        // timer objects, popped in several run_due calls.
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = TimerHeap::default();
        let mut want: Vec<(u64, u64)> = Vec::new();
        let mut x = 12345u64;
        let mut keep = Vec::new();
        for id in 1..=1000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let when = x % 200;
            want.push((when, id));
            if id % 2 == 0 {
                let g = GRef::alloc();
                g.goid.store(id, Ordering::Relaxed);
                keep.push(g);
                h.add_ready(when, record, g);
            } else {
                h.add(
                    when,
                    Arc::new(T {
                        armed: AtomicBool::new(true),
                        log: log.clone(),
                        id,
                        fired: AtomicUsize::new(0),
                    }),
                );
            }
        }
        want.sort();
        let mut fired = 0;
        for now in [0, 50, 51, 120, 199] {
            fired += h.run_due(now);
            let due = want.iter().filter(|(w, _)| *w <= now).count();
            assert_eq!(fired, due, "at {now}");
            let next = want.get(due).map(|(w, _)| *w).unwrap_or(u64::MAX);
            assert_eq!(h.next_when(), next);
        }
        // Both kinds ran, in one global deadline order (ties FIFO).
        let ready = READY.with(|r| r.borrow().clone());
        let objs = log.lock().unwrap().clone();
        let ids: Vec<u64> = want.iter().map(|(_, id)| *id).collect();
        let even: Vec<u64> = ids.iter().copied().filter(|i| i % 2 == 0).collect();
        let odd: Vec<u64> = ids.iter().copied().filter(|i| i % 2 == 1).collect();
        assert_eq!(ready, even);
        assert_eq!(objs, odd);
        assert!(h.is_empty());
    }
}
