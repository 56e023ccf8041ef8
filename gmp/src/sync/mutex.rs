//! [`Mutex`]: Go's `sync.Mutex` with a std-like RAII guard.

use std::fmt;
use std::ops::{Deref, DerefMut};

use gmp_g::WaitReason;

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
/// Go's `sync.Mutex` (see `gmp_sched::sync` for the state machine): an
/// uncontended lock or unlock is one atomic. A contender spins a few rounds
/// while the holder runs on another P (Go's `canSpin`), then parks.
///
/// * **Normal mode**: waiters queue FIFO; `unlock` wakes the first one but
///   newcomers may barge in and take the lock first (throughput). A woken
///   waiter that loses goes back to the *front* of the queue. Only one
///   woken waiter is in flight at a time (Go's `mutexWoken`).
/// * **Starvation mode**: once a waiter has waited longer than 1 ms,
///   `unlock` hands the lock directly to the first waiter, so nobody can
///   barge in, and the unlocking goroutine yields so that the new owner
///   runs at once. The mode ends when the last waiter takes the lock or a
///   waiter got it within 1 ms.
///
/// The value is boxed, so that `Mutex<[u8]>` or `Mutex<dyn Trait>` can be
/// built with [`from_box`](Mutex::from_box).
pub struct Mutex<T: ?Sized> {
    inner: gmp_sched::sync::Mutex<T>,
}

/// RAII guard of a [`Mutex`]: the lock is released when it is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    inner: gmp_sched::sync::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `v`.
    pub fn new(v: T) -> Self {
        Mutex {
            inner: gmp_sched::sync::Mutex::new(v),
        }
    }
    /// The value (no guard can exist: we own the mutex).
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// A new unlocked mutex holding the boxed `v` (works for unsized `T`).
    pub fn from_box(v: Box<T>) -> Self {
        Mutex {
            inner: gmp_sched::sync::Mutex::from_box(v),
        }
    }

    /// Acquires the lock, parking the calling goroutine (or blocking the
    /// calling thread) while another holds it.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        gmp_sched::check_preempt();
        MutexGuard {
            mutex: self,
            inner: self.inner.lock(WaitReason::SyncMutexLock),
        }
    }

    /// Acquires the lock if it is free right now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        Some(MutexGuard {
            mutex: self,
            inner: self.inner.try_lock()?,
        })
    }

    /// Mutable access without locking (we own the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether the lock is held right now (racy; for debugging).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard locks.
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
    /// Unlocks without the starvation-mode yield (the caller holds another
    /// lock).
    pub(crate) fn unlock_no_yield(self) {
        gmp_sched::sync::MutexGuard::unlock_no_yield(self.inner);
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
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
