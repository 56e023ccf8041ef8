//! # gmp-p: the processor
//!
//! ## The problem
//! An M needs somewhere to find work without taking a global lock every
//! time, and spawning or waking a goroutine must be cheap in the common case
//! where the same thread will run it next. Go's answer is the P: a token of
//! "permission to run Go code" (there are `GOMAXPROCS` of them) that carries
//! the per-CPU caches: a run queue, a `runnext` slot, a free list of dead Gs
//! with their stacks, a goid cache, and the P's timers.
//!
//! ## The mechanism
//! * [`runq`]: Go's 256-slot lock-free ring (single producer, many
//!   consumers), behind the [`RunQueue`] seam so a user crate can plug in its
//!   own queue. Overflow moves half the ring to the global queue; stealing
//!   takes half.
//! * `runnext` ([`P::runq_put`] with `next = true`): a G readied by the
//!   running G runs next and inherits the remaining time slice (`schedtick`
//!   is not bumped), so a communicating pair runs as a unit.
//! * [`P::gfput`]/[`P::gfget`] with [`GlobalFree`]: Go's thresholds — a local
//!   list of up to 64 dead Gs, half moved to the global list when it fills,
//!   refilled with 32 from it when empty.
//! * Stacks live apart from Gs: a goroutine gets one only when it first runs
//!   ([`P::stack_get`], from the P's stack cache, most recently freed first)
//!   and gives it back when it exits ([`P::stack_put`]), so a goroutine that
//!   waits in a run queue to start costs a G struct, not a stack page. At
//!   spawn, [`P::stack_reserve`] promises it a stack (the allocator maps the
//!   address space then), so running out of stacks is an error at spawn,
//!   never at first run. Free stacks pooled globally beyond [`GlobalFree`]'s
//!   bound are given back to the OS.
//! * [`timers`]: the P's timer heap.
//!
//! ## Invariants
//! 1. Fields documented "owner only" are touched only by the M that holds
//!    the P (status `Running`), or by the world-stopper while every P is
//!    stopped. Acquiring a P is a CAS on [`P::status`], which orders the
//!    previous owner's writes before the new owner's reads.
//! 2. A G is in at most one of: a run queue, `runnext`, the global queue,
//!    a free list, running on an M, or parked in a wait queue.
//!
//! ## Rejected alternatives
//! * `crossbeam_deque::Worker` as the local queue: unbounded, so a spawning
//!   loop never spills to the global queue where idle Ps would find it; and
//!   its steal takes at most 32 rather than half. We use crossbeam's
//!   `Injector` for the global queue and `crossbeam_queue::SegQueue` for the
//!   global stack pool, where their shape fits exactly.
//! * A lock-free queue for the global G free list: Gs move in batches, so a
//!   lock per batch beats a CAS per G (see [`GlobalFree`]).

#![warn(missing_docs)]

pub mod runq;
pub mod timers;

pub use runq::{
    GoRunQueue, GoRunQueueFactory, LocalQueue, RunQueue, RunQueueFactory, LOCAL_QUEUE_CAP,
};
pub use timers::{Timer, TimerHeap};

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_queue::SegQueue;
use gmp_g::{GRef, G, GOID_BATCH};
use gmp_stack::{Stack, StackAllocator, StackError};

/// Dead Gs kept on a P before half move to the global list (Go's `gfput`).
pub const LOCAL_FREE_MAX: usize = 64;
/// Dead Gs moved to/from the global list at once (Go's 32).
pub const FREE_BATCH: usize = 32;
/// Free stacks kept on a P before half move to the global pool. Go's
/// per-P stack cache holds 32 KiB per size class (16 stacks of 2 KiB) and
/// moves half; ours are larger, so we follow the G free list's numbers.
pub const LOCAL_STACKS_MAX: usize = 64;
/// Free stacks moved to/from the global pool at once.
pub const STACK_BATCH: usize = 32;
/// Stack reservations a P takes from the allocator at once (a guess: one
/// allocator lock per 32 spawns). A P holding more than twice this gives
/// a batch back.
pub const RESERVE_BATCH: usize = 32;

/// A P status, with Go's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PStatus {
    /// Not running code; on the idle list; run queue empty.
    Idle = 0,
    /// Owned by an M running Go code.
    Running = 1,
    /// Its M is in a blocking call; free to be taken by CAS.
    Syscall = 2,
    /// Halted for stop-the-world.
    Gcstop = 3,
    /// Beyond `gomaxprocs`; kept for reuse.
    Dead = 4,
}

impl PStatus {
    /// Decodes a raw status.
    pub fn from_raw(v: u32) -> PStatus {
        match v {
            0 => PStatus::Idle,
            1 => PStatus::Running,
            2 => PStatus::Syscall,
            3 => PStatus::Gcstop,
            _ => PStatus::Dead,
        }
    }
    /// Go's printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            PStatus::Idle => "_Pidle",
            PStatus::Running => "_Prunning",
            PStatus::Syscall => "_Psyscall",
            PStatus::Gcstop => "_Pgcstop",
            PStatus::Dead => "_Pdead",
        }
    }
}

/// Counters kept per P for metrics (Relaxed: statistics only).
#[derive(Debug, Default)]
pub struct PStats {
    /// Gs this P stole from others.
    pub steals: AtomicU64,
    /// Gs taken from `runnext` (owner-written).
    pub runnext_hits: AtomicU64,
    /// Gs taken from the global queue.
    pub global_takes: AtomicU64,
    /// Goroutines created on this P (owner-written).
    pub spawned: AtomicU64,
    /// Goroutines that exited on this P (owner-written).
    pub exited: AtomicU64,
}

impl PStats {
    /// Adds one to an owner-written counter: a plain load and store, no
    /// locked instruction (only the P's owner writes it; readers sum).
    /// Requires: caller owns the P.
    #[inline]
    pub fn bump_owner(&self, c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// The processor.
pub struct P {
    /// Index in `allp`.
    pub id: usize,
    /// [`PStatus`] as a raw word; see [`P::status`].
    status: AtomicU32,
    /// The local run queue.
    pub runq: LocalQueue,
    /// A G to run before the run queue (Go's `runnext`).
    runnext: AtomicPtr<G>,
    /// Bumped every time a new time slice starts (sysmon reads it).
    pub schedtick: AtomicU32,
    /// Bumped at every blocking-call entry (sysmon reads it).
    pub syscalltick: AtomicU32,
    /// The M holding this P, as an opaque address (0 if none).
    pub m: AtomicUsize,
    /// Ask the P's M to enter the scheduler at the next safe point.
    pub preempt: AtomicBool,
    /// Set by the preemption signal handler when it took this P from a
    /// goroutine that keeps running on its thread (a forced hand-off), so
    /// that sysmon hands it on without waiting a tick; cleared when an M
    /// acquires the P.
    pub detached: AtomicBool,
    /// The P's timers.
    pub timers: TimerHeap,
    /// Metrics.
    pub stats: PStats,
    /// Owner only: dead Gs (without stacks).
    gfree: UnsafeCell<Vec<GRef>>,
    /// Owner only: free stacks, most recently used last.
    stackcache: UnsafeCell<Vec<Stack>>,
    /// Owner only: stack reservations held by this P (see [`P::stack_reserve`]).
    stack_credit: UnsafeCell<usize>,
    /// Owner only: next goid to hand out and the end of the cached batch.
    goid_cache: UnsafeCell<(u64, u64)>,
}

// SAFETY: the UnsafeCell fields are owner-only (crate invariant 1); all
// other fields are atomics or Sync types.
unsafe impl Sync for P {}
// SAFETY: as above.
unsafe impl Send for P {}

impl fmt::Debug for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P")
            .field("id", &self.id)
            .field("status", &self.status())
            .field("runq", &self.runq)
            .finish()
    }
}

impl P {
    /// A new P (status `Gcstop`, as Go's `procresize` creates them).
    pub fn new(id: usize, runq: LocalQueue) -> P {
        P {
            id,
            status: AtomicU32::new(PStatus::Gcstop as u32),
            runq,
            runnext: AtomicPtr::new(std::ptr::null_mut()),
            schedtick: AtomicU32::new(0),
            syscalltick: AtomicU32::new(0),
            m: AtomicUsize::new(0),
            preempt: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            timers: TimerHeap::default(),
            stats: PStats::default(),
            gfree: UnsafeCell::new(Vec::with_capacity(LOCAL_FREE_MAX)),
            stackcache: UnsafeCell::new(Vec::with_capacity(LOCAL_STACKS_MAX)),
            stack_credit: UnsafeCell::new(0),
            goid_cache: UnsafeCell::new((0, 0)),
        }
    }

    /// The status.
    #[inline]
    pub fn status(&self) -> PStatus {
        PStatus::from_raw(self.status.load(Ordering::Acquire))
    }

    /// Moves the status `from -> to` by CAS. AcqRel: acquiring a P sees the
    /// previous owner's writes to owner-only fields.
    #[inline]
    #[must_use = "a lost P status race must be handled"]
    pub fn cas_status(&self, from: PStatus, to: PStatus) -> bool {
        self.status
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Sets the status unconditionally.
    /// Requires: caller owns the P, or the world is stopped.
    #[inline]
    pub fn set_status(&self, s: PStatus) {
        self.status.store(s as u32, Ordering::Release);
    }

    /// Go's `runqput`. With `next`, `g` takes `runnext` and any previous
    /// occupant is kicked to the tail of the ring. Requires: caller owns the P.
    #[inline]
    pub fn runq_put(&self, g: GRef, next: bool, overflow: &mut dyn FnMut(GRef)) {
        let g = if next {
            // Only the owner (us) writes a G into runnext; thieves and
            // runq_get only CAS a G out of it. So an empty runnext stays
            // empty until we fill it: a plain store does (the common case
            // of a channel hand-off), saving a locked swap. Release:
            // publishes g's state to a thief's Acquire/AcqRel take.
            if self.runnext.load(Ordering::Relaxed).is_null() {
                self.runnext.store(g.as_ptr(), Ordering::Release);
                return;
            }
            // AcqRel: as above, and a thief may be taking the old one.
            let old = self.runnext.swap(g.as_ptr(), Ordering::AcqRel);
            if old.is_null() {
                return;
            }
            // SAFETY: runnext only ever holds live G pointers.
            unsafe { GRef::from_ptr(old) }
        } else {
            g
        };
        self.runq.push_back(g, overflow);
    }

    /// Go's `runqget`: `runnext` first (returns `inherit = true`), then the
    /// ring. Requires: caller owns the P.
    #[inline]
    pub fn runq_get(&self) -> Option<(GRef, bool)> {
        let n = self.runnext.load(Ordering::Relaxed);
        if !n.is_null()
            && self
                .runnext
                .compare_exchange(n, std::ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // Owner-written: a plain increment, not a locked add (that
            // was as costly as the CAS above, on every hand-off).
            self.stats.bump_owner(&self.stats.runnext_hits);
            // SAFETY: runnext holds live G pointers; we claimed it.
            return Some((unsafe { GRef::from_ptr(n) }, true));
        }
        self.runq.pop().map(|g| (g, false))
    }

    /// Takes `runnext` if it holds a G (any thread; a thief's last resort).
    pub fn steal_runnext(&self) -> Option<GRef> {
        let n = self.runnext.load(Ordering::Acquire);
        if n.is_null() {
            return None;
        }
        self.runnext
            .compare_exchange(n, std::ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            // SAFETY: as in runq_get.
            .map(|p| unsafe { GRef::from_ptr(p) })
    }

    /// The G in `runnext` right now, as an opaque pointer (null if none),
    /// for a thief that backs off before [`steal_runnext_if`]
    /// (any thread).
    ///
    /// [`steal_runnext_if`]: Self::steal_runnext_if
    #[inline]
    pub fn runnext_ptr(&self) -> *mut G {
        self.runnext.load(Ordering::Acquire)
    }

    /// Takes `runnext` only if it still holds `seen` (Go's `runqgrab`
    /// CASes the `next` it saw before its back-off): a G that the owner
    /// ran and replaced meanwhile was not stuck (any thread).
    pub fn steal_runnext_if(&self, seen: *mut G) -> Option<GRef> {
        if seen.is_null() {
            return None;
        }
        self.runnext
            .compare_exchange(
                seen,
                std::ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()
            // SAFETY: as in runq_get.
            .map(|p| unsafe { GRef::from_ptr(p) })
    }

    /// Whether `runnext` is occupied (any thread).
    #[inline]
    pub fn has_runnext(&self) -> bool {
        !self.runnext.load(Ordering::Acquire).is_null()
    }

    /// Go's `runqempty`: no runnext and an empty ring (any thread).
    #[inline]
    pub fn runq_empty(&self) -> bool {
        !self.has_runnext() && self.runq.is_empty()
    }

    /// Number of runnable Gs queued on this P (any thread; approximate).
    pub fn runq_len(&self) -> usize {
        self.runq.len() + self.has_runnext() as usize
    }

    /// Empties runnext and the ring into `out` (P being destroyed).
    /// Requires: world stopped.
    pub fn runq_drain(&self, out: &mut Vec<GRef>) {
        if let Some(g) = self.steal_runnext() {
            out.push(g);
        }
        while let Some(g) = self.runq.pop() {
            out.push(g);
        }
    }

    /// Go's `gfput`: keeps a dead G (its stack already given back with
    /// [`P::stack_put`]) for reuse. Requires: caller owns the P.
    #[inline]
    pub fn gfput(&self, g: GRef, global: &GlobalFree) {
        // SAFETY: owner-only field (invariant 1).
        let list = unsafe { &mut *self.gfree.get() };
        list.push(g);
        if list.len() >= LOCAL_FREE_MAX {
            // The oldest half goes, in one lock hold; the most recently
            // freed (still in this CPU's cache) stay for local reuse.
            global.put_batch(&list[..FREE_BATCH]);
            list.drain(..FREE_BATCH);
        }
    }

    /// Go's `gfget`: a dead G to reuse, refilling from the global list.
    /// Requires: caller owns the P.
    #[inline]
    pub fn gfget(&self, global: &GlobalFree) -> Option<GRef> {
        // SAFETY: owner-only field (invariant 1).
        let list = unsafe { &mut *self.gfree.get() };
        if list.is_empty() {
            global.take(FREE_BATCH, list);
        }
        let g = list.pop();
        // The next spawn takes the next G: start pulling its lines from the
        // CPU where it died (it hides a miss per line; measured below).
        if let Some(next) = list.last() {
            next.prefetch_for_write();
        }
        g
    }

    /// Number of dead Gs on the local list (owner or stopped world).
    pub fn gfree_len(&self) -> usize {
        // SAFETY: a length read; owner-only per the precondition.
        unsafe { (*self.gfree.get()).len() }
    }

    /// Moves the whole local free list and stack cache to the global ones
    /// (P destroyed). The P keeps its stack reservations for its reuse.
    /// Requires: world stopped.
    pub fn gfpurge(&self, global: &GlobalFree) {
        // SAFETY: the world is stopped, nobody else owns the P.
        let list = unsafe { &mut *self.gfree.get() };
        global.put_batch(list);
        list.clear();
        // SAFETY: as above.
        let cache = unsafe { &mut *self.stackcache.get() };
        for st in cache.drain(..) {
            global.put_stack(st);
        }
    }

    /// Reserves a stack for a goroutine being spawned, which takes one with
    /// [`P::stack_get`] when it first runs (on this P or another). Takes
    /// reservations from `alloc` [`RESERVE_BATCH`] at a time, so the
    /// allocator's lock is touched once per batch; fails only when the
    /// allocator cannot map more stacks. Requires: caller owns the P.
    ///
    /// The accounting: `alloc`'s outstanding reservations equal the credit
    /// held by all Ps plus the goroutines spawned and not yet started. A
    /// starting goroutine that finds a cached stack passes its reservation
    /// to the P's credit; one that finds none consumes it by carving a new
    /// stack, which therefore cannot fail.
    ///
    /// When no more address space can be mapped, the free stacks cached on
    /// this P and in `global` go back to `alloc`, which promises them again
    /// (dead goroutines' stacks are reused instead of spawning failing).
    #[inline]
    pub fn stack_reserve(
        &self,
        global: &GlobalFree,
        alloc: &StackAllocator,
    ) -> Result<(), StackError> {
        // SAFETY: owner-only field (invariant 1).
        let credit = unsafe { &mut *self.stack_credit.get() };
        if *credit == 0 {
            *credit = self.reserve_batch(global, alloc)?;
        }
        *credit -= 1;
        Ok(())
    }

    #[cold]
    fn reserve_batch(
        &self,
        global: &GlobalFree,
        alloc: &StackAllocator,
    ) -> Result<usize, StackError> {
        let Err(e) = alloc.reserve(RESERVE_BATCH) else {
            return Ok(RESERVE_BATCH);
        };
        // SAFETY: owner-only field (invariant 1).
        let cache = unsafe { &mut *self.stackcache.get() };
        global.take_stacks(usize::MAX, cache);
        // SAFETY: the stacks came from `alloc` (every stack does), sat in
        // free caches (no goroutine on them) and leave those caches here.
        unsafe { alloc.give_back(cache.drain(..)) };
        alloc.reserve(1).map_err(|_| e)?;
        Ok(1)
    }

    /// A stack for a goroutine's first run, which holds a reservation (see
    /// [`P::stack_reserve`]): the most recently freed local stack (its top
    /// is likely still in this CPU's cache), else a batch from the global
    /// pool, else a new one carved from the reservation.
    /// Requires: caller owns the P.
    #[inline]
    pub fn stack_get(&self, global: &GlobalFree, alloc: &StackAllocator) -> Stack {
        // SAFETY: owner-only fields (invariant 1).
        let (cache, credit) =
            unsafe { (&mut *self.stackcache.get(), &mut *self.stack_credit.get()) };
        if cache.is_empty() {
            global.take_stacks(STACK_BATCH, cache);
        }
        match cache.pop() {
            Some(st) => {
                // The goroutine's reservation is now this P's.
                *credit += 1;
                if *credit > 2 * RESERVE_BATCH {
                    alloc.unreserve(RESERVE_BATCH);
                    *credit -= RESERVE_BATCH;
                }
                st
            }
            None => alloc.alloc_reserved(),
        }
    }

    /// Keeps the stack of a goroutine that exited for the next one to
    /// start here. Requires: caller owns the P.
    #[inline]
    pub fn stack_put(&self, st: Stack, global: &GlobalFree) {
        // SAFETY: owner-only field (invariant 1).
        let cache = unsafe { &mut *self.stackcache.get() };
        cache.push(st);
        if cache.len() >= LOCAL_STACKS_MAX {
            // The oldest (coldest) half goes.
            for st in cache.drain(..STACK_BATCH) {
                global.put_stack(st);
            }
        }
    }

    /// Number of free stacks cached on this P (owner or stopped world).
    pub fn stackcache_len(&self) -> usize {
        // SAFETY: a length read; owner-only per the precondition.
        unsafe { (*self.stackcache.get()).len() }
    }

    /// A fresh goroutine id from the P's cache, refilled from `gen` in
    /// batches of [`GOID_BATCH`]. Requires: caller owns the P.
    #[inline]
    pub fn next_goid(&self, gen: &AtomicU64) -> u64 {
        // SAFETY: owner-only field (invariant 1).
        let c = unsafe { &mut *self.goid_cache.get() };
        if c.0 == c.1 {
            let start = gen.fetch_add(GOID_BATCH, Ordering::Relaxed);
            *c = (start, start + GOID_BATCH);
        }
        let id = c.0;
        c.0 += 1;
        id
    }
}

/// The global free list of dead Gs and the global pool of free stacks.
///
/// Dead Gs move between Ps in batches of [`FREE_BATCH`] (Go's `gfput` and
/// `gfget` do the same under `sched.gFree.lock`), so the list is a plain
/// `Vec` under a mutex taken once per batch. It was a lock-free `SegQueue`
/// with one CAS per G each way: ~10 % of the spawn benchmark's samples.
/// Free stacks stay in crossbeam's lock-free `SegQueue`s (they rarely move
/// between Ps: a stack is taken and given back on the P that runs its G).
///
/// Dead Gs hold no stack. Free stacks arrive on the `hot` list with their
/// memory resident, so a stack reused soon costs no page fault.
/// [`GlobalFree::scavenge`] (run by sysmon, off the hot path) moves stacks
/// beyond `keep_resident` to the `cold` list and gives their memory back to
/// the OS with `madvise(MADV_DONTNEED)`, so a burst of a million goroutines
/// does not pin its stacks after it ends. Releasing on the spawn/exit path
/// instead costs a TLB shootdown per goroutine (measured: it doubled the
/// spawn benchmark).
pub struct GlobalFree {
    gs: Mutex<Vec<GRef>>,
    /// `gs`'s length, written under its lock, read without it to skip
    /// locking an empty list (a hint: a racing put is found next time).
    ngs: AtomicUsize,
    hot: SegQueue<Stack>,
    cold: SegQueue<Stack>,
    keep_resident: usize,
    released: AtomicU64,
}

impl fmt::Debug for GlobalFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GlobalFree(gs {}, hot stacks {}, cold stacks {})",
            self.len(),
            self.hot.len(),
            self.cold.len()
        )
    }
}

impl GlobalFree {
    /// A list that keeps the memory of up to `keep_resident` free stacks.
    pub fn new(keep_resident: usize) -> Self {
        GlobalFree {
            gs: Mutex::new(Vec::new()),
            ngs: AtomicUsize::new(0),
            hot: SegQueue::new(),
            cold: SegQueue::new(),
            keep_resident,
            released: AtomicU64::new(0),
        }
    }
    fn gs(&self) -> std::sync::MutexGuard<'_, Vec<GRef>> {
        // A panic never happens under this lock (pushes and drains of
        // plain pointers); tolerate poisoning anyway.
        self.gs.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Adds a dead G.
    pub fn put(&self, g: GRef) {
        self.put_batch(&[g]);
    }
    /// Adds dead Gs, in one lock hold.
    pub fn put_batch(&self, gs: &[GRef]) {
        let mut l = self.gs();
        l.extend_from_slice(gs);
        self.ngs.store(l.len(), Ordering::Relaxed);
    }
    /// Moves up to `n` dead Gs into `out` (the most recently added), in one
    /// lock hold.
    pub fn take(&self, n: usize, out: &mut Vec<GRef>) {
        if self.ngs.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut l = self.gs();
        let from = l.len().saturating_sub(n);
        out.extend(l.drain(from..));
        self.ngs.store(l.len(), Ordering::Relaxed);
    }
    /// Adds a free stack (it stays resident until scavenged).
    pub fn put_stack(&self, st: Stack) {
        self.hot.push(st);
    }
    /// Moves up to `n` free stacks into `out`, resident ones first.
    pub fn take_stacks(&self, n: usize, out: &mut Vec<Stack>) {
        for _ in 0..n {
            match self.hot.pop().or_else(|| self.cold.pop()) {
                Some(st) => out.push(st),
                None => break,
            }
        }
    }
    /// Releases the memory of resident free stacks beyond the bound;
    /// returns how many stacks it released.
    pub fn scavenge(&self) -> usize {
        let mut n = 0;
        while self.hot.len() > self.keep_resident {
            let Some(st) = self.hot.pop() else { break };
            st.release_memory();
            self.cold.push(st);
            n += 1;
        }
        self.released.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
    /// Number of dead Gs listed.
    pub fn len(&self) -> usize {
        self.gs().len()
    }
    /// Whether no dead G is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of free stacks pooled.
    pub fn stacks_len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
    /// Stacks released to the OS so far.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(gmp_loom)))]
mod tests;
