//! The run-queue seam and Go's local run queue.
//!
//! [`GoRunQueue`] is Go's `p.runq`: a fixed ring of [`LOCAL_QUEUE_CAP`]
//! slots with one producer (the owner P) and many consumers (the owner and
//! thieves). `head` and `tail` only grow; a slot is `index % CAP`.
//!
//! * **push** (owner): if the ring has room, write the slot, then publish it
//!   with a Release store of `tail`. Full: move half of the ring plus the new
//!   G to the global queue in one go (Go's `runqputslow`), so a spawning loop
//!   does not hit the global queue once per G.
//! * **pop** (owner): read the head slot, claim it with a CAS on `head`.
//! * **steal_half** (any P): read `n = ceil((tail-head)/2)` slots, claim them
//!   all with one CAS on `head` (Go's `runqgrab`). If the CAS fails somebody
//!   else moved `head` and the copied slots are discarded.
//!
//! Why nothing is lost or duplicated: a slot is only ever *claimed* by a
//! successful CAS on `head` that moves past it, and a CAS succeeds for
//! exactly one claimant per head value. The owner writes slot `t % CAP` only
//! when `t - head < CAP`, i.e. when that slot's previous occupant was
//! already claimed; a thief that read a slot which the owner then overwrote
//! must have read a `head` that has since moved, so its CAS fails.
//! The loom model in `tests/loom_runq.rs` checks exactly this with the ring
//! shrunk to 4 slots.

use std::fmt;

use gmp_g::sync::{AtomicPtr, AtomicU32};
use gmp_g::{GRef, G};
use std::sync::atomic::Ordering;

/// Slots in the local ring: Go's 256 (4 under loom, to reach overflow and
/// wrap-around in a model small enough to check exhaustively).
#[cfg(not(gmp_loom))]
pub const LOCAL_QUEUE_CAP: usize = 256;
/// Slots in the local ring under loom.
#[cfg(gmp_loom)]
pub const LOCAL_QUEUE_CAP: usize = 4;

/// A per-P run queue, pluggable through the runtime builder.
///
/// The owner P calls `push_back` and `pop`; any thread may call
/// `steal_half` and `len`. The scheduler keeps `runnext` itself.
///
/// # Safety
/// The scheduler trusts implementations with goroutine ownership:
/// 1. every G passed to `push_back` must come out exactly once, through
///    `pop`, `steal_half`, or the `overflow` callback — never lost, never
///    returned twice (a duplicate runs one stack on two threads);
/// 2. `steal_half` may be called concurrently with the owner's calls and
///    with other thieves, and must uphold 1 under that concurrency;
/// 3. `len` must not report 0 while a pushed G is still inside and no
///    concurrent pop/steal is in progress (the scheduler's re-check before
///    an M sleeps relies on it to avoid losing a wake-up).
pub unsafe trait RunQueue: Send + Sync + 'static {
    /// Appends `g` (owner only). A bounded queue that is full hands some of
    /// its Gs (and/or `g`) to `overflow`, which puts them on the global queue.
    fn push_back(&self, g: GRef, overflow: &mut dyn FnMut(GRef));
    /// Removes the next G to run (owner only).
    fn pop(&self) -> Option<GRef>;
    /// Moves about half of the queue into `out` (any thread).
    fn steal_half(&self, out: &mut Vec<GRef>);
    /// Number of queued Gs (any thread; may be stale).
    fn len(&self) -> usize;
    /// Whether the queue looks empty (any thread).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes one [`RunQueue`] per P. Passed to `gmp::Runtime::builder().run_queue(..)`.
pub trait RunQueueFactory: Send + Sync + 'static {
    /// A short name for dumps and traces.
    fn name(&self) -> &'static str;
    /// A new, empty queue for P number `p_id`.
    fn new_queue(&self, p_id: usize) -> Box<dyn RunQueue>;
}

/// Go's bounded SPMC ring (see the module docs).
pub struct GoRunQueue {
    /// Next slot to consume. Consumers (owner and thieves) advance it by CAS.
    head: AtomicU32,
    /// Next slot to fill. Written only by the owner (Release), read by all.
    tail: AtomicU32,
    buf: Box<[AtomicPtr<G>]>,
}

impl fmt::Debug for GoRunQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoRunQueue(len {})", self.len())
    }
}

impl Default for GoRunQueue {
    fn default() -> Self {
        Self::new()
    }
}

const CAP32: u32 = LOCAL_QUEUE_CAP as u32;

impl GoRunQueue {
    /// An empty ring.
    pub fn new() -> Self {
        GoRunQueue {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            buf: (0..LOCAL_QUEUE_CAP)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    #[inline]
    fn slot(&self, i: u32) -> &AtomicPtr<G> {
        &self.buf[(i % CAP32) as usize]
    }

    /// Go's `runqput` without `next`. Requires: caller owns the P.
    #[inline]
    pub fn push(&self, g: GRef, overflow: &mut dyn FnMut(GRef)) {
        loop {
            // Acquire: pairs with the AcqRel head CAS of consumers, so the
            // slot we are about to reuse was fully read by its claimant.
            let h = self.head.load(Ordering::Acquire);
            // Relaxed: only this thread writes tail.
            let t = self.tail.load(Ordering::Relaxed);
            if t.wrapping_sub(h) < CAP32 {
                self.slot(t).store(g.as_ptr(), Ordering::Relaxed);
                // Release: pairs with the Acquire tail load in pop/steal.
                self.tail.store(t.wrapping_add(1), Ordering::Release);
                return;
            }
            if self.push_slow(g, h, t, overflow) {
                return;
            }
        }
    }

    /// Go's `runqputslow`: moves half the ring plus `g` to the overflow.
    #[cold]
    fn push_slow(&self, g: GRef, h: u32, t: u32, overflow: &mut dyn FnMut(GRef)) -> bool {
        let n = t.wrapping_sub(h) / 2;
        debug_assert_eq!(n, CAP32 / 2, "push_slow on a queue that is not full");
        let mut batch = [std::ptr::null_mut::<G>(); LOCAL_QUEUE_CAP / 2];
        for (i, b) in batch.iter_mut().enumerate().take(n as usize) {
            *b = self.slot(h.wrapping_add(i as u32)).load(Ordering::Relaxed);
        }
        // AcqRel: claims the batch; fails if a thief claimed part of it.
        if self
            .head
            .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        for &p in batch.iter().take(n as usize) {
            // SAFETY: every claimed slot held a live G pushed by the owner.
            overflow(unsafe { GRef::from_ptr(p) });
        }
        overflow(g);
        true
    }

    /// Go's `runqget` on the ring. Requires: caller owns the P.
    #[inline]
    pub fn pop(&self) -> Option<GRef> {
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            if t == h {
                return None;
            }
            let p = self.slot(h).load(Ordering::Relaxed);
            // AcqRel: claims the slot (pairs with thieves' CAS and the
            // owner's Acquire head load before reusing the slot).
            if self
                .head
                .compare_exchange(h, h.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // The next G out of the ring usually ran or was spawned on
                // another CPU: start fetching its lines now, while this one
                // runs (a hint: a thief may take it first, no harm done).
                #[cfg(not(gmp_loom))]
                if h.wrapping_add(1) != t {
                    G::prefetch_raw(self.slot(h.wrapping_add(1)).load(Ordering::Relaxed));
                }
                // SAFETY: the slot was published by push and we claimed it.
                return Some(unsafe { GRef::from_ptr(p) });
            }
        }
    }

    /// Go's `runqgrab`: copies half (rounded up) into `out` and claims it.
    pub fn steal_half(&self, out: &mut Vec<GRef>) {
        let base = out.len();
        loop {
            let h = self.head.load(Ordering::Acquire);
            // Acquire: pairs with the owner's Release tail store, making the
            // slot contents visible.
            let t = self.tail.load(Ordering::Acquire);
            let n = t.wrapping_sub(h);
            let n = n - n / 2;
            if n == 0 {
                return;
            }
            if n > CAP32 / 2 {
                // Inconsistent snapshot (head moved between the loads).
                continue;
            }
            for i in 0..n {
                let p = self.slot(h.wrapping_add(i)).load(Ordering::Relaxed);
                // SAFETY: slot published by the owner; if the CAS below fails
                // the copy is discarded without being used.
                out.push(unsafe { GRef::from_ptr(p) });
            }
            if self
                .head
                .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            out.truncate(base);
        }
    }

    /// Number of Gs in the ring (may be stale when read by a thief).
    #[inline]
    pub fn len(&self) -> usize {
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        (t.wrapping_sub(h) as usize).min(LOCAL_QUEUE_CAP)
    }

    /// Whether the ring is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: GoRunQueue implements Go's ring, whose no-loss/no-duplicate
// argument is in the module docs and is model-checked under loom.
unsafe impl RunQueue for GoRunQueue {
    fn push_back(&self, g: GRef, overflow: &mut dyn FnMut(GRef)) {
        self.push(g, overflow)
    }
    fn pop(&self) -> Option<GRef> {
        GoRunQueue::pop(self)
    }
    fn steal_half(&self, out: &mut Vec<GRef>) {
        GoRunQueue::steal_half(self, out)
    }
    fn len(&self) -> usize {
        GoRunQueue::len(self)
    }
}

/// The default factory: Go's ring for every P.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoRunQueueFactory;

impl RunQueueFactory for GoRunQueueFactory {
    fn name(&self) -> &'static str {
        "go-ring"
    }
    fn new_queue(&self, _p_id: usize) -> Box<dyn RunQueue> {
        Box::new(GoRunQueue::new())
    }
}

/// A P's local queue: Go's ring called directly (no virtual call on the hot
/// path), or a plugged-in queue.
pub enum LocalQueue {
    /// The built-in ring.
    Go(GoRunQueue),
    /// A queue from a user [`RunQueueFactory`].
    Custom(Box<dyn RunQueue>),
}

impl fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalQueue::Go(q) => q.fmt(f),
            LocalQueue::Custom(q) => write!(f, "Custom(len {})", q.len()),
        }
    }
}

impl LocalQueue {
    /// Owner only.
    #[inline]
    pub fn push_back(&self, g: GRef, overflow: &mut dyn FnMut(GRef)) {
        match self {
            LocalQueue::Go(q) => q.push(g, overflow),
            LocalQueue::Custom(q) => q.push_back(g, overflow),
        }
    }
    /// Owner only.
    #[inline]
    pub fn pop(&self) -> Option<GRef> {
        match self {
            LocalQueue::Go(q) => q.pop(),
            LocalQueue::Custom(q) => q.pop(),
        }
    }
    /// Any thread.
    #[inline]
    pub fn steal_half(&self, out: &mut Vec<GRef>) {
        match self {
            LocalQueue::Go(q) => q.steal_half(out),
            LocalQueue::Custom(q) => q.steal_half(out),
        }
    }
    /// Any thread.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            LocalQueue::Go(q) => q.len(),
            LocalQueue::Custom(q) => q.len(),
        }
    }
    /// Any thread.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
