//! [`Mutex`]: Go's `sync.Mutex` with a std-like RAII guard.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use gmp_g::WaitReason;
use gmp_sched::park::{park, Waiter};

use super::{lock_std, StdMutex};

/// A waiter that has waited this long gets the lock handed to it (Go's
/// `starvationThresholdNs`, `sync/mutex.go`).
pub(crate) const STARVATION: Duration = Duration::from_millis(1);

/// A mutual-exclusion lock that parks goroutines (Go's `sync.Mutex`).
///
/// Held across a park point (a channel operation, a sleep, another lock),
/// it blocks only the goroutines that want it, never an OS thread. Its
/// guard may be dropped on another thread than the one that took it — a
/// goroutine may have migrated in between — which is why it is `Send`,
/// unlike `std::sync::MutexGuard`. There is no poisoning (as in Go).
///
/// ```
/// use std::sync::Arc;
/// let n = gmp::run(|| {
///     let m = Arc::new(gmp::sync::Mutex::new(0u64));
///     let hs: Vec<_> = (0..8).map(|_| {
///         let m = m.clone();
///         gmp::go(move || for _ in 0..100 { *m.lock() += 1 })
///     }).collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     let v = *m.lock();
///     v
/// });
/// assert_eq!(n, 800);
/// ```
///
/// # Design
/// The protected value lives in a `Box` that the lock owner *holds* (in its
/// guard): the lock is free exactly when the box is back in the mutex's
/// state. That keeps the facade free of `unsafe` (no `UnsafeCell`), at the
/// price of one short `std::sync::Mutex` critical section on lock and one on
/// unlock (never held across a park, so threads never block on each other
/// for longer than a few instructions).
///
/// * **Normal mode** (Go's): waiters queue FIFO; `unlock` wakes the first
///   one but newcomers may barge in and take the lock first (throughput).
///   A woken waiter that loses goes back to the *front* of the queue,
///   keeping its original arrival time. Only one woken waiter is in flight
///   at a time (Go's `mutexWoken`).
/// * **Starvation mode** (Go's, per unlock): if the first waiter has waited
///   longer than 1 ms, `unlock` hands the box directly to it, so nobody can
///   barge in, and the unlocking goroutine yields so that the new owner
///   runs at once. No waiter waits forever: once it is first in line its
///   wait is bounded by 1 ms plus one critical section.
pub struct Mutex<T: ?Sized> {
    state: StdMutex<MState<T>>,
}

struct MWaiter {
    id: u64,
    waiter: Waiter,
    since: Instant,
}

struct MState<T: ?Sized> {
    waiters: VecDeque<MWaiter>,
    /// The lock handed to a starving waiter, by id.
    handoff: Option<(u64, Box<T>)>,
    /// A waiter was woken in normal mode and has not run yet.
    woken: bool,
    next_id: u64,
    /// The value while unlocked; `None` while somebody holds the lock.
    value: Option<Box<T>>,
}

/// RAII guard of a [`Mutex`]: the lock is released when it is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    value: Option<Box<T>>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `v`.
    pub fn new(v: T) -> Self {
        Mutex::from_box(Box::new(v))
    }
    /// The value (no guard can exist: we own the mutex).
    pub fn into_inner(self) -> T {
        let st = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        *st.value.expect("gmp: mutex consumed while locked")
    }
}

impl<T: ?Sized> Mutex<T> {
    /// A new unlocked mutex holding the boxed `v` (works for unsized `T`).
    pub fn from_box(v: Box<T>) -> Self {
        Mutex {
            state: StdMutex::new(MState {
                waiters: VecDeque::new(),
                handoff: None,
                woken: false,
                next_id: 0,
                value: Some(v),
            }),
        }
    }

    /// Acquires the lock, parking the calling goroutine (or blocking the
    /// calling thread) while another holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.lock_as(WaitReason::SyncMutexLock)
    }

    pub(crate) fn lock_as(&self, reason: WaitReason) -> MutexGuard<'_, T> {
        gmp_sched::check_preempt();
        let mut st = lock_std(&self.state);
        if let Some(b) = st.value.take() {
            return self.guard(b);
        }
        let id = st.next_id;
        st.next_id += 1;
        let since = Instant::now();
        let mut requeue = false;
        loop {
            let me = MWaiter {
                id,
                waiter: Waiter::current(),
                since,
            };
            // A woken waiter that lost to a newcomer goes back to the front
            // (Go's queueLifo), keeping its arrival time for the
            // starvation check.
            if requeue {
                st.waiters.push_front(me);
            } else {
                st.waiters.push_back(me);
            }
            requeue = true;
            park(reason, move || drop(st));
            st = lock_std(&self.state);
            if st.handoff.as_ref().is_some_and(|(h, _)| *h == id) {
                let (_, b) = st.handoff.take().expect("checked");
                return self.guard(b);
            }
            // Woken in normal mode: compete with newcomers.
            st.woken = false;
            if let Some(b) = st.value.take() {
                return self.guard(b);
            }
        }
    }

    /// Acquires the lock if it is free right now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let b = lock_std(&self.state).value.take()?;
        Some(self.guard(b))
    }

    /// Mutable access without locking (we own the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        self.state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .as_deref_mut()
            .expect("gmp: mutex borrowed mutably while locked")
    }

    /// Whether the lock is held right now (racy; for debugging).
    pub fn is_locked(&self) -> bool {
        lock_std(&self.state).value.is_none()
    }

    fn guard(&self, b: Box<T>) -> MutexGuard<'_, T> {
        MutexGuard {
            mutex: self,
            value: Some(b),
        }
    }

    /// Releases the lock, giving the box back. `may_yield`: after a
    /// starvation handoff, yield the P to the new owner (callers holding
    /// another std lock pass false).
    fn unlock(&self, b: Box<T>, may_yield: bool) {
        let mut st = lock_std(&self.state);
        let Some(front) = st.waiters.front() else {
            st.value = Some(b);
            return;
        };
        if front.since.elapsed() >= STARVATION {
            let w = st.waiters.pop_front().expect("non-empty");
            st.handoff = Some((w.id, b));
            drop(st);
            w.waiter.wake();
            if may_yield && crate::select::parkable() {
                // The new owner sits in our runnext: let it run now
                // (Go's semrelease handoff + goyield).
                gmp_sched::goyield();
            }
            return;
        }
        st.value = Some(b);
        if st.woken {
            return;
        }
        st.woken = true;
        let w = st.waiters.pop_front().expect("non-empty");
        drop(st);
        w.waiter.wake();
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard locks.
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
    /// Unlocks without yielding (see [`Mutex::unlock`]).
    pub(crate) fn unlock_no_yield(mut self) {
        if let Some(b) = self.value.take() {
            self.mutex.unlock(b, false);
        }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().expect("gmp: guard without its value")
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_deref_mut()
            .expect("gmp: guard without its value")
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(b) = self.value.take() {
            self.mutex.unlock(b, true);
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
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

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(v: T) -> Self {
        Mutex::new(v)
    }
}
