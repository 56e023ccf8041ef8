//! Go's `sync.Mutex` and the runtime semaphore beneath it (`sync/mutex.go`,
//! `runtime/sema.go`), for the facade's `gmp::sync`.
//!
//! # Problem
//! A goroutine mutex must cost one atomic when nobody else wants it, must
//! not park a goroutine for a lock that its holder on another core is about
//! to release (a park and a wake cost a few hundred nanoseconds; a critical
//! section is often a few), and must never let a waiter starve behind a
//! stream of newcomers. Blocking must park the goroutine, never its M.
//!
//! # Mechanism
//! [`RawMutex`] is Go's state machine: one `u32` holds `LOCKED`, `WOKEN`
//! (a waiter is awake and competing, so `unlock` need not wake another),
//! `STARVING` and the number of parked waiters. `lock` is one CAS from 0;
//! under contention a goroutine first spins a few rounds of `PAUSE` when
//! Go's `sync_runtime_canSpin` allows it (more than one CPU, some other P
//! busy running code, our own run queue empty), then parks on the
//! [`Sema`]. `unlock` is one atomic subtraction; only when waiters exist and
//! none is awake does it wake one. A waiter that has waited more than 1 ms
//! (Go's `starvationThresholdNs`) switches the mutex to starvation mode, in
//! which `unlock` hands ownership straight to the first waiter and yields
//! to it, so newcomers cannot barge in.
//!
//! [`Sema`] is a counting semaphore with a FIFO queue of
//! `Waiter`s (goroutines or plain threads) under a
//! short std mutex. `release` gives its unit *directly* to the first waiter
//! when there is one (the waiter returns without competing again), else
//! adds it to the count; a re-queued waiter goes to the front (Go's
//! `queueLifo`).
//!
//! [`Mutex`] pairs a `RawMutex` with the data; its guard is `Send` because a
//! goroutine may resume on another thread after any park point.
//!
//! # Invariants
//! * The data is accessed only through a guard, and a guard exists only
//!   while `LOCKED` is set on its behalf (or, in starvation mode, after the
//!   hand-off made the woken waiter the owner).
//! * `Sema::count` grows only under the queue lock and only when the queue
//!   is empty; an acquirer re-checks the count under that lock before it
//!   queues itself. So a release either finds the acquirer queued (and wakes
//!   it) or leaves a unit the acquirer takes: no wake-up is lost.
//! * The waiter count in the state word equals the number of goroutines
//!   parked (or about to park) in `Sema::acquire` for this mutex; every
//!   `Sema::release` is preceded by a decrement of it (normal mode) or
//!   followed by the woken waiter's decrement (starvation mode).
//!
//! # Rejected alternatives
//! * A std mutex around the value (the first design): two locked RMWs per
//!   lock/unlock pair plus a futex round trip whenever two cores collide,
//!   and no spinning phase, so two busy Ps parked each other constantly.
//! * A global semaphore table keyed by address (Go's `semtable`): Go needs
//!   it because a `sync.Mutex` is two words; ours may own its queue.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex as StdMutex, OnceLock};
use std::time::Instant;

use gmp_g::{Status, WaitReason};

use crate::park::{park, Waiter};
use crate::proc::mp;
use crate::tls;

/// Set while somebody owns the mutex.
const LOCKED: u32 = 1;
/// A waiter has been woken (or a spinner announced itself) and competes.
const WOKEN: u32 = 2;
/// Starvation mode: `unlock` hands the mutex to the first waiter.
const STARVING: u32 = 4;
/// The waiter count starts at this bit.
const WAITER_SHIFT: u32 = 3;
/// One waiter in the count.
const WAITER: u32 = 1 << WAITER_SHIFT;
/// A waiter that waited this long switches the mutex to starvation mode
/// (Go's `starvationThresholdNs`).
pub const STARVATION_NS: u64 = 1_000_000;
/// Spin rounds before parking (Go's `active_spin`).
const ACTIVE_SPIN: u32 = 4;
/// `PAUSE`s per spin round (Go's `active_spin_cnt`).
const ACTIVE_SPIN_CNT: u32 = 30;

fn ncpu() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Go's `sync_runtime_canSpin`: whether a contender for a mutex should spin
/// round `iter` rather than park. Spinning pays only on a multicore machine
/// when the holder is running on another P right now and nothing else is
/// waiting for ours.
pub fn can_spin(iter: u32) -> bool {
    if iter >= ACTIVE_SPIN || ncpu() <= 1 {
        return false;
    }
    let Some((m, s)) = tls::current() else {
        // A plain thread: it owns its CPU; a short spin is as good as Go's.
        return true;
    };
    let busy = s.gomaxprocs();
    let idle = s.npidle.load(Ordering::Relaxed) + s.nmspinning.load(Ordering::Relaxed);
    if busy <= idle + 1 {
        return false;
    }
    match m.curg() {
        Some(g) if g.status.get() == Status::Running => mp(m).map_or(true, |p| p.runq_empty()),
        _ => true,
    }
}

/// One spin round (Go's `procyield(active_spin_cnt)`).
fn do_spin() {
    for _ in 0..ACTIVE_SPIN_CNT {
        std::hint::spin_loop();
    }
}

/// A counting semaphore whose waiters park (Go's `semacquire` /
/// `semrelease` on one address).
pub struct Sema {
    /// Units available (Go's `*addr`).
    count: AtomicU32,
    /// Who waits, first out first (a re-queued waiter goes to the front).
    queue: StdMutex<VecDeque<Waiter>>,
}

impl Sema {
    /// A semaphore holding `n` units.
    pub const fn new(n: u32) -> Sema {
        Sema {
            count: AtomicU32::new(n),
            queue: StdMutex::new(VecDeque::new()),
        }
    }

    /// Go's `cansemacquire`.
    #[inline]
    fn try_take(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(v) => c = v,
            }
        }
        false
    }

    /// Takes a unit, parking the caller until one is released to it.
    /// `lifo`: queue at the front (a waiter that already waited once).
    pub fn acquire(&self, lifo: bool, reason: WaitReason) {
        if self.try_take() {
            return;
        }
        #[cfg(test)]
        tests::race_hook();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        // Re-check under the lock: the count only grows under it.
        if self.try_take() {
            return;
        }
        let me = Waiter::current();
        if lifo {
            q.push_front(me);
        } else {
            q.push_back(me);
        }
        // The unit is handed to us by `release`, which popped us.
        park(reason, move || drop(q));
    }

    /// Gives a unit to the first waiter (waking it) or, with none, to the
    /// count. With `handoff`, a goroutine caller that woke a waiter yields
    /// so that the waiter (now in its `runnext`) runs at once. Returns
    /// whether a waiter was woken.
    pub fn release(&self, handoff: bool) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = q.pop_front() else {
            self.count.fetch_add(1, Ordering::Release);
            return false;
        };
        drop(q);
        let woke_g = w.goroutine().is_some();
        w.wake();
        if handoff && woke_g && running_goroutine() {
            crate::proc::goyield();
        }
        true
    }

    /// Waiters queued right now (racy; for debugging and tests).
    pub fn waiters(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Default for Sema {
    fn default() -> Self {
        Sema::new(0)
    }
}

impl fmt::Debug for Sema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sema")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Whether the caller is a goroutine that may park (not inside `blocking`).
fn running_goroutine() -> bool {
    crate::proc::current_g().is_some_and(|g| g.status.get() == Status::Running)
}

/// Go's `sync.Mutex` without data: lock state plus a [`Sema`].
pub struct RawMutex {
    state: AtomicU32,
    sema: Sema,
}

impl RawMutex {
    /// An unlocked mutex.
    pub const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            sema: Sema::new(0),
        }
    }

    /// Locks, spinning briefly and then parking while another holds it.
    #[inline]
    pub fn lock(&self, reason: WaitReason) {
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(reason);
        }
    }

    /// Locks if that is possible without waiting (never in starvation
    /// mode, where the lock belongs to the first waiter).
    #[inline]
    pub fn try_lock(&self) -> bool {
        let old = self.state.load(Ordering::Relaxed);
        old & (LOCKED | STARVING) == 0
            && self
                .state
                .compare_exchange(old, old | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether somebody holds the lock right now (racy).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }

    /// Go's `lockSlow`.
    #[cold]
    fn lock_slow(&self, reason: WaitReason) {
        let mut wait_start: Option<Instant> = None;
        let mut starving = false;
        let mut awoke = false;
        let mut iter = 0;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while the holder runs and the mutex is in normal mode
            // (in starvation mode the lock goes to the first waiter anyway).
            if old & (LOCKED | STARVING) == LOCKED && can_spin(iter) {
                // Announce ourselves so that unlock does not wake a waiter
                // that would only compete with us.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self
                        .state
                        .compare_exchange(old, old | WOKEN, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    awoke = true;
                }
                do_spin();
                iter += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            let mut new = old;
            // Newcomers do not take a starving mutex: it is handed over.
            if old & STARVING == 0 {
                new |= LOCKED;
            }
            if old & (LOCKED | STARVING) != 0 {
                new = new.wrapping_add(WAITER);
            }
            // Switch to starvation mode only if the lock is still held
            // (otherwise unlock would expect a waiter that is not there).
            if starving && old & LOCKED != 0 {
                new |= STARVING;
            }
            if awoke {
                debug_assert!(new & WOKEN != 0, "gmp: inconsistent mutex state");
                new &= !WOKEN;
            }
            match self
                .state
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if old & (LOCKED | STARVING) == 0 {
                        return; // Locked it with the CAS.
                    }
                    let lifo = wait_start.is_some();
                    let since = *wait_start.get_or_insert_with(Instant::now);
                    self.sema.acquire(lifo, reason);
                    starving = starving || since.elapsed().as_nanos() as u64 > STARVATION_NS;
                    old = self.state.load(Ordering::Acquire);
                    if old & STARVING != 0 {
                        // Handed to us: LOCKED is clear and our waiter is
                        // still counted. Take both in one step.
                        debug_assert!(
                            old & (LOCKED | WOKEN) == 0 && old >> WAITER_SHIFT != 0,
                            "gmp: inconsistent mutex state"
                        );
                        let mut delta = LOCKED.wrapping_sub(WAITER);
                        if !starving || old >> WAITER_SHIFT == 1 {
                            // Leave starvation mode: we are the last waiter,
                            // or we did not wait long.
                            delta = delta.wrapping_sub(STARVING);
                        }
                        self.state.fetch_add(delta, Ordering::AcqRel);
                        return;
                    }
                    awoke = true;
                    iter = 0;
                }
                Err(v) => old = v,
            }
        }
    }

    /// Unlocks. With `may_yield`, a starvation hand-off yields the caller's
    /// P to the new owner (pass false while holding another lock).
    #[inline]
    pub fn unlock(&self, may_yield: bool) {
        let new = self
            .state
            .fetch_sub(LOCKED, Ordering::Release)
            .wrapping_sub(LOCKED);
        if new != 0 {
            self.unlock_slow(new, may_yield);
        }
    }

    /// Go's `unlockSlow`.
    #[cold]
    fn unlock_slow(&self, new: u32, may_yield: bool) {
        assert!(
            new.wrapping_add(LOCKED) & LOCKED != 0,
            "gmp: unlock of an unlocked mutex"
        );
        if new & STARVING != 0 {
            // Hand the mutex to the first waiter (LOCKED stays clear; the
            // waiter sets it) and let it run at once.
            self.sema.release(may_yield);
            return;
        }
        let mut old = new;
        loop {
            // Nobody to wake, or someone already took the lock, or a waiter
            // is already awake, or starvation began meanwhile.
            if old >> WAITER_SHIFT == 0 || old & (LOCKED | WOKEN | STARVING) != 0 {
                return;
            }
            let new = old.wrapping_sub(WAITER) | WOKEN;
            match self
                .state
                .compare_exchange(old, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.sema.release(false);
                    return;
                }
                Err(v) => old = v,
            }
        }
    }
}

impl Default for RawMutex {
    fn default() -> Self {
        RawMutex::new()
    }
}

impl fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct("RawMutex")
            .field("locked", &(s & LOCKED != 0))
            .field("woken", &(s & WOKEN != 0))
            .field("starving", &(s & STARVING != 0))
            .field("waiters", &(s >> WAITER_SHIFT))
            .finish()
    }
}

/// A [`RawMutex`] with the data it protects (boxed, so that unsized values
/// such as `[u8]` or `dyn Trait` can be built from a `Box`).
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<Box<T>>,
}

// SAFETY: the mutex owns its data; sending the mutex sends the data, which
// is sound when T: Send.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: shared access reaches the data only through a guard, and the
// RawMutex admits one guard at a time, so threads sharing a Mutex only ever
// move exclusive access to T between them: T: Send suffices (as for std's
// Mutex).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Exclusive access to a [`Mutex`]'s data; unlocks on drop. `Send` (when
/// `T: Send`): a goroutine may resume on another thread while holding it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// Sync only when T: Sync (the guard hands out `&T`).
    _data: PhantomData<&'a mut T>,
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `v`.
    pub fn new(v: T) -> Self {
        Mutex::from_box(Box::new(v))
    }

    /// The value (no guard can exist: we own the mutex).
    pub fn into_inner(self) -> T {
        *self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// An unlocked mutex holding the boxed `v`.
    pub fn from_box(v: Box<T>) -> Self {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(v),
        }
    }

    /// Locks (see [`RawMutex::lock`]), recording `reason` if it parks.
    #[inline]
    pub fn lock(&self, reason: WaitReason) -> MutexGuard<'_, T> {
        self.raw.lock(reason);
        MutexGuard {
            mutex: self,
            _data: PhantomData,
        }
    }

    /// Locks if that is possible without waiting.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // Lazily: a guard built for a failed attempt would unlock on drop.
        self.raw.try_lock().then(|| MutexGuard {
            mutex: self,
            _data: PhantomData,
        })
    }

    /// Mutable access without locking (we own the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether the lock is held right now (racy; for debugging).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard locks.
    pub fn mutex(this: &Self) -> &'a Mutex<T> {
        this.mutex
    }

    /// Unlocks without the starvation-mode yield (for callers that hold
    /// another lock).
    pub fn unlock_no_yield(this: Self) {
        let m = this.mutex;
        std::mem::forget(this);
        m.raw.unlock(false);
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while the RawMutex is held on its
        // behalf, so no other reference to the data exists.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow
        // through the guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.raw.unlock(true);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Readers allowed at once (Go's `rwmutexMaxReaders`).
const MAX_READERS: i32 = 1 << 30;

/// Go's `sync.RWMutex` without data: writers serialise on a [`RawMutex`];
/// `reader_count` counts active readers and goes negative (by
/// `MAX_READERS`) while a writer is pending, which sends new readers to
/// `reader_sem`; the pending writer waits on `writer_sem` until the readers
/// that were active when it arrived (`reader_wait`) have left.
pub struct RawRwLock {
    w: RawMutex,
    writer_sem: Sema,
    reader_sem: Sema,
    reader_count: AtomicI32,
    reader_wait: AtomicI32,
}

impl RawRwLock {
    /// An unlocked lock.
    pub const fn new() -> RawRwLock {
        RawRwLock {
            w: RawMutex::new(),
            writer_sem: Sema::new(0),
            reader_sem: Sema::new(0),
            reader_count: AtomicI32::new(0),
            reader_wait: AtomicI32::new(0),
        }
    }

    /// Go's `RLock`: one atomic unless a writer is pending or active.
    #[inline]
    pub fn read(&self) {
        if self.reader_count.fetch_add(1, Ordering::Acquire) + 1 < 0 {
            // A writer is pending: wait for its unlock to let us in.
            self.reader_sem.acquire(false, WaitReason::SyncRWMutexRLock);
        }
    }

    /// Go's `TryRLock`.
    #[inline]
    pub fn try_read(&self) -> bool {
        let mut c = self.reader_count.load(Ordering::Relaxed);
        loop {
            if c < 0 {
                return false;
            }
            match self.reader_count.compare_exchange_weak(
                c,
                c + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(v) => c = v,
            }
        }
    }

    /// Go's `RUnlock`.
    #[inline]
    pub fn read_unlock(&self) {
        let r = self.reader_count.fetch_sub(1, Ordering::Release) - 1;
        if r < 0 {
            self.read_unlock_slow(r);
        }
    }

    #[cold]
    fn read_unlock_slow(&self, r: i32) {
        assert!(
            r + 1 != 0 && r + 1 != -MAX_READERS,
            "gmp: read-unlock of an rwlock not locked for reading"
        );
        // A writer is pending; the last of the readers it waits for lets
        // it in.
        if self.reader_wait.fetch_sub(1, Ordering::AcqRel) - 1 == 0 {
            self.writer_sem.release(false);
        }
    }

    /// Go's `Lock`.
    pub fn write(&self) {
        self.w.lock(WaitReason::SyncRWMutexLock);
        // Announce the writer to readers; r readers are still inside.
        let r = self.reader_count.fetch_sub(MAX_READERS, Ordering::AcqRel);
        if r != 0 && self.reader_wait.fetch_add(r, Ordering::AcqRel) + r != 0 {
            self.writer_sem.acquire(false, WaitReason::SyncRWMutexLock);
        }
    }

    /// Go's `TryLock`.
    pub fn try_write(&self) -> bool {
        if !self.w.try_lock() {
            return false;
        }
        if self
            .reader_count
            .compare_exchange(0, -MAX_READERS, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.w.unlock(false);
            return false;
        }
        true
    }

    /// Go's `Unlock`: lets in every reader that queued behind the writer,
    /// then releases the writers' mutex.
    pub fn write_unlock(&self) {
        let r = self.reader_count.fetch_add(MAX_READERS, Ordering::Release) + MAX_READERS;
        assert!(
            r < MAX_READERS,
            "gmp: unlock of an rwlock not locked for writing"
        );
        for _ in 0..r {
            self.reader_sem.release(false);
        }
        self.w.unlock(true);
    }
}

impl Default for RawRwLock {
    fn default() -> Self {
        RawRwLock::new()
    }
}

impl fmt::Debug for RawRwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRwLock")
            .field("reader_count", &self.reader_count.load(Ordering::Relaxed))
            .field("reader_wait", &self.reader_wait.load(Ordering::Relaxed))
            .field("w", &self.w)
            .finish()
    }
}

/// A [`RawRwLock`] with the data it protects.
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: the lock owns its data; sending it sends the data (T: Send).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: readers on several threads share `&T` (needs T: Sync), and a
// writer on any thread gets `&mut T` (needs T: Send); the RawRwLock never
// admits a writer together with anyone else (as for std's RwLock).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to a [`RwLock`]'s data; read-unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// Send/Sync exactly when `&T` is (T: Sync).
    _data: PhantomData<&'a T>,
}

/// Exclusive access to a [`RwLock`]'s data; unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// Send when T: Send, Sync when T: Sync (as `&mut T`).
    _data: PhantomData<&'a mut T>,
}

impl<T> RwLock<T> {
    /// An unlocked lock holding `v`.
    pub const fn new(v: T) -> Self {
        RwLock {
            raw: RawRwLock::new(),
            data: UnsafeCell::new(v),
        }
    }

    /// The value (no guard can exist: we own the lock).
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading (see [`RawRwLock::read`]).
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.raw.read();
        RwLockReadGuard {
            lock: self,
            _data: PhantomData,
        }
    }

    /// Locks for reading if no writer holds or waits for the lock.
    #[inline]
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        // Lazily: a guard built for a failed attempt would unlock on drop.
        self.raw.try_read().then(|| RwLockReadGuard {
            lock: self,
            _data: PhantomData,
        })
    }

    /// Locks for writing.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.raw.write();
        RwLockWriteGuard {
            lock: self,
            _data: PhantomData,
        }
    }

    /// Locks for writing if nobody holds the lock.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.raw.try_write().then(|| RwLockWriteGuard {
            lock: self,
            _data: PhantomData,
        })
    }

    /// Mutable access without locking (we own the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while the RawRwLock counts it as
        // a reader, which excludes every writer: only shared borrows exist.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a write guard exists only while the RawRwLock admits its
        // writer alone: no other borrow of the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow
        // through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    //! Plain threads only (their waiters block on a condvar): the state
    //! machine and the semaphore, without a scheduler.
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    use std::time::Duration;

    const R: WaitReason = WaitReason::SyncMutexLock;

    thread_local! {
        /// Runs once on this thread between `Sema::acquire`'s lock-free
        /// attempt and its queue lock: the window a racing release hits.
        static RACE: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            const { std::cell::RefCell::new(None) };
    }

    pub(super) fn race_hook() {
        if let Some(f) = RACE.with(|r| r.borrow_mut().take()) {
            f();
        }
    }

    /// A release that lands after the lock-free attempt failed but before
    /// the acquirer queued itself leaves a unit in the count and finds
    /// nobody to wake; the acquirer must take that unit (the re-check under
    /// the queue lock), not park forever.
    #[test]
    fn sema_release_racing_an_acquire_is_not_lost() {
        let s = Arc::new(Sema::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (s2, done2) = (s.clone(), done.clone());
        let t = std::thread::spawn(move || {
            let s3 = s2.clone();
            RACE.with(|r| {
                *r.borrow_mut() = Some(Box::new(move || {
                    assert!(!s3.release(false), "nobody is queued yet");
                }))
            });
            s2.acquire(false, R);
            done2.store(true, Ordering::SeqCst);
        });
        let t0 = Instant::now();
        while !done.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let lost = !done.load(Ordering::SeqCst);
        if lost {
            s.release(false); // unblock the thread before failing
        }
        t.join().unwrap();
        assert!(!lost, "the racing release was lost: the acquirer parked");
        assert_eq!(s.count.load(Ordering::Relaxed), 0);
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "condition never held"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    #[test]
    fn sema_keeps_units_released_before_acquire() {
        let s = Sema::new(0);
        assert!(!s.release(false), "nobody to wake");
        assert!(!s.release(false));
        s.acquire(false, R);
        s.acquire(false, R);
        assert_eq!(s.count.load(Ordering::Relaxed), 0);
        assert!(!s.try_take());
    }

    #[test]
    fn sema_wakes_waiters_first_in_first_out_and_lifo_jumps_the_queue() {
        let s = Arc::new(Sema::new(0));
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut ts = Vec::new();
        // 1 and 2 queue at the back in that order, 3 at the front.
        for (id, lifo) in [(1, false), (2, false), (3, true)] {
            let (s2, o) = (s.clone(), order.clone());
            ts.push(std::thread::spawn(move || {
                s2.acquire(lifo, R);
                o.lock().unwrap().push(id);
            }));
            wait_for(|| s.waiters() == id);
        }
        for n in 1..=3 {
            assert!(s.release(false), "a waiter was queued");
            wait_for(|| order.lock().unwrap().len() == n);
        }
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*order.lock().unwrap(), [3, 1, 2]);
        assert_eq!(s.count.load(Ordering::Relaxed), 0, "units went to waiters");
    }

    #[test]
    fn mutex_excludes_and_leaves_the_state_clean() {
        let m = Arc::new(Mutex::new(0u64));
        let inside = Arc::new(AtomicUsize::new(0));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let mut g = m.lock(R);
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                        *g += 1;
                        if i % 1000 == 0 {
                            // Long enough for the others to park.
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        inside.fetch_sub(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*m.lock(R), 80_000);
        assert_eq!(m.raw.state.load(Ordering::Relaxed), 0, "{:?}", m.raw);
        assert_eq!(m.raw.sema.waiters(), 0);
    }

    /// A holder that unlocks and at once re-locks wins normal-mode races
    /// against a woken waiter; after 1 ms the waiter sets STARVING and the
    /// next unlock hands the lock to it. (If the OS deschedules the holder
    /// between its unlock and re-lock, the waiter wins without starving:
    /// legal, so a round like that is repeated.)
    #[test]
    fn a_starving_waiter_gets_the_lock_handed_over() {
        for _round in 0..20 {
            let m = Arc::new(RawMutex::new());
            m.lock(R);
            let got = Arc::new(AtomicBool::new(false));
            let (m2, got2) = (m.clone(), got.clone());
            let waiter = std::thread::spawn(move || {
                m2.lock(R);
                got2.store(true, Ordering::SeqCst);
                m2.unlock(false);
            });
            wait_for(|| m.sema.waiters() == 1);
            std::thread::sleep(Duration::from_millis(3));
            let mut saw_starving = false;
            let t = Instant::now();
            while !got.load(Ordering::SeqCst) {
                assert!(t.elapsed() < Duration::from_secs(10), "waiter starved");
                saw_starving |= m.state.load(Ordering::Relaxed) & STARVING != 0;
                m.unlock(false);
                m.lock(R);
            }
            m.unlock(false);
            waiter.join().unwrap();
            assert_eq!(m.state.load(Ordering::Relaxed), 0, "{m:?}");
            if saw_starving {
                return;
            }
        }
        panic!("the mutex never entered starvation mode in 20 rounds");
    }

    #[test]
    fn rwlock_pending_writer_turns_new_readers_away_then_lets_them_all_in() {
        let l = Arc::new(RwLock::new(0u32));
        let r1 = l.read();
        // A writer arrives while a reader is inside: it waits for it.
        let l2 = l.clone();
        let writer = std::thread::spawn(move || {
            *l2.write() += 1;
        });
        wait_for(|| l.raw.reader_count.load(Ordering::Relaxed) < 0);
        assert!(
            l.try_read().is_none(),
            "a pending writer blocks new readers"
        );
        assert!(l.try_write().is_none());
        // Readers that arrive now queue behind the writer...
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (l, seen) = (l.clone(), seen.clone());
                std::thread::spawn(move || {
                    let v = *l.read();
                    seen.lock().unwrap().push(v);
                })
            })
            .collect();
        wait_for(|| l.raw.reader_sem.waiters() == 3);
        assert!(seen.lock().unwrap().is_empty());
        // ...and see the write once the first reader leaves.
        drop(r1);
        writer.join().unwrap();
        readers.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*seen.lock().unwrap(), [1, 1, 1]);
        assert_eq!(l.raw.reader_count.load(Ordering::Relaxed), 0);
        assert_eq!(l.raw.reader_wait.load(Ordering::Relaxed), 0);
        assert!(l.try_write().is_some());
    }

    #[test]
    fn rwlock_stress_readers_share_writers_exclude() {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let ts: Vec<_> = (0..6)
            .map(|k| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..5000u64 {
                        if (i + k) % 4 == 0 {
                            let mut g = l.write();
                            g.0 += 1;
                            g.1 += 1;
                        } else {
                            let g = l.read();
                            assert_eq!(g.0, g.1, "a reader saw a half-done write");
                        }
                    }
                })
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*l.read(), (7500, 7500));
        assert_eq!(l.raw.reader_count.load(Ordering::Relaxed), 0);
        assert_eq!(l.raw.w.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    #[should_panic(expected = "not locked for reading")]
    fn read_unlocking_an_unlocked_rwlock_is_a_clear_panic() {
        RawRwLock::new().read_unlock();
    }

    #[test]
    #[should_panic(expected = "unlock of an unlocked mutex")]
    fn unlocking_an_unlocked_raw_mutex_is_a_clear_panic() {
        RawMutex::new().unlock(false);
    }
}
