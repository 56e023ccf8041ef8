//! [`RwLock`]: Go's `sync.RWMutex` with std-like RAII guards.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// A reader-writer lock that parks goroutines (Go's `sync.RWMutex`).
///
/// Many readers or one writer. As in Go, a waiting writer blocks new
/// readers (so a stream of readers cannot starve it), and the readers that
/// queued during a write all get in when that write ends (so a stream of
/// writers cannot starve them). Guards are `Send` (a goroutine may release
/// on another thread than it locked on); no poisoning.
///
/// ```
/// let l = gmp::sync::RwLock::new(vec![1]);
/// {
///     let a = l.read();
///     let b = l.read();
///     assert_eq!(a.len() + b.len(), 2);
/// }
/// l.write().push(2);
/// assert_eq!(*l.read(), [1, 2]);
/// ```
///
/// # Design
/// Go's `sync.RWMutex` (see `gmp_sched::sync::RawRwLock`): an uncontended
/// read lock or unlock is one atomic add on a reader count, which a writer
/// drives negative to turn new readers away onto a semaphore; writers
/// serialise on a [`Mutex`](super::Mutex)-style lock and wait for the
/// readers that were inside when they arrived.
pub struct RwLock<T: ?Sized> {
    inner: gmp_sched::sync::RwLock<T>,
}

/// Shared-access guard of a [`RwLock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    inner: gmp_sched::sync::RwLockReadGuard<'a, T>,
}

/// Exclusive-access guard of a [`RwLock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    inner: gmp_sched::sync::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock holding `v`.
    pub const fn new(v: T) -> Self {
        RwLock {
            inner: gmp_sched::sync::RwLock::new(v),
        }
    }
    /// The value (no guard can exist: we own the lock).
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading (Go's `RLock`): parks while a writer holds the
    /// lock or waits for it.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        gmp_sched::check_preempt();
        RwLockReadGuard {
            inner: self.inner.read(),
        }
    }

    /// Locks for writing (Go's `Lock`): parks until the readers inside
    /// have left and no other writer holds it.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        gmp_sched::check_preempt();
        RwLockWriteGuard {
            inner: self.inner.write(),
        }
    }

    /// Locks for reading if no writer holds or waits for the lock.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        Some(RwLockReadGuard {
            inner: self.inner.try_read()?,
        })
    }

    /// Locks for writing if nobody holds the lock.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        Some(RwLockWriteGuard {
            inner: self.inner.try_write()?,
        })
    }

    /// Mutable access without locking (we own the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(v: T) -> Self {
        RwLock::new(v)
    }
}
