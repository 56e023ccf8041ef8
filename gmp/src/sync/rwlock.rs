//! [`RwLock`]: Go's `sync.RWMutex` with std-like RAII guards.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use gmp_g::WaitReason;
use gmp_sched::park::{park, Waiter};

use super::{lock_std, StdMutex};

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
/// The value lives in an `Arc`: each reader's guard holds a clone (shared
/// `&T`), and a writer holds the only one (`Arc::get_mut` gives `&mut T`).
/// Readers drop their clone *before* they deregister, so when the reader
/// count reaches zero the writer's `Arc` is unique. All bookkeeping is
/// under one short `std::sync::Mutex` section per lock/unlock; waiting is
/// by park. No `unsafe`.
pub struct RwLock<T: ?Sized> {
    state: StdMutex<RwState<T>>,
}

struct RwState<T: ?Sized> {
    /// Active readers, including granted ones not yet running.
    readers: usize,
    /// A writer holds the lock or has been granted it.
    writer: bool,
    writers_waiting: VecDeque<(u64, Waiter)>,
    readers_waiting: Vec<Waiter>,
    /// The value handed to a granted writer, by id.
    handoff: Option<(u64, Arc<T>)>,
    next_id: u64,
    /// `None` while a writer has it.
    value: Option<Arc<T>>,
}

/// Shared-access guard of a [`RwLock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    value: Option<Arc<T>>,
}

/// Exclusive-access guard of a [`RwLock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    value: Option<Arc<T>>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock holding `v`.
    pub fn new(v: T) -> Self {
        RwLock::from_arc(Arc::new(v))
    }
    /// The value (no guard can exist: we own the lock).
    pub fn into_inner(self) -> T {
        let st = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        let a = st.value.expect("gmp: rwlock consumed while locked");
        Arc::try_unwrap(a)
            .ok()
            .expect("gmp: rwlock value still shared")
    }
}

impl<T: ?Sized> RwLock<T> {
    fn from_arc(v: Arc<T>) -> Self {
        RwLock {
            state: StdMutex::new(RwState {
                readers: 0,
                writer: false,
                writers_waiting: VecDeque::new(),
                readers_waiting: Vec::new(),
                handoff: None,
                next_id: 0,
                value: Some(v),
            }),
        }
    }

    /// Locks for reading (Go's `RLock`).
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        gmp_sched::check_preempt();
        let mut st = lock_std(&self.state);
        if !st.writer && st.writers_waiting.is_empty() {
            st.readers += 1;
            let v = st.value.clone();
            return RwLockReadGuard {
                lock: self,
                value: v,
            };
        }
        st.readers_waiting.push(Waiter::current());
        park(WaitReason::SyncRWMutexRLock, move || drop(st));
        // Granted by the writer's unlock: our reader slot is counted and
        // no writer can get in before we leave.
        let v = lock_std(&self.state).value.clone();
        debug_assert!(v.is_some());
        RwLockReadGuard {
            lock: self,
            value: v,
        }
    }

    /// Locks for writing (Go's `Lock`).
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        gmp_sched::check_preempt();
        let mut st = lock_std(&self.state);
        if !st.writer && st.readers == 0 {
            st.writer = true;
            let v = st.value.take();
            return RwLockWriteGuard {
                lock: self,
                value: v,
            };
        }
        let id = st.next_id;
        st.next_id += 1;
        st.writers_waiting.push_back((id, Waiter::current()));
        park(WaitReason::SyncRWMutexLock, move || drop(st));
        let (h, v) = lock_std(&self.state)
            .handoff
            .take()
            .expect("gmp: woken writer without the lock");
        debug_assert_eq!(h, id);
        RwLockWriteGuard {
            lock: self,
            value: Some(v),
        }
    }

    /// Locks for reading if that is possible right now.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut st = lock_std(&self.state);
        if st.writer || !st.writers_waiting.is_empty() {
            return None;
        }
        st.readers += 1;
        let v = st.value.clone();
        Some(RwLockReadGuard {
            lock: self,
            value: v,
        })
    }

    /// Locks for writing if the lock is free right now.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut st = lock_std(&self.state);
        if st.writer || st.readers != 0 {
            return None;
        }
        st.writer = true;
        let v = st.value.take();
        Some(RwLockWriteGuard {
            lock: self,
            value: v,
        })
    }

    /// Mutable access without locking (we own the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        Arc::get_mut(st.value.as_mut().expect("gmp: rwlock locked"))
            .expect("gmp: rwlock value still shared")
    }

    fn read_unlock(&self) {
        let mut st = lock_std(&self.state);
        st.readers -= 1;
        if st.readers != 0 {
            return;
        }
        if let Some((id, w)) = st.writers_waiting.pop_front() {
            st.writer = true;
            let v = st.value.take().expect("unlocked value present");
            st.handoff = Some((id, v));
            drop(st);
            w.wake();
        }
    }

    fn write_unlock(&self, v: Arc<T>) {
        let mut st = lock_std(&self.state);
        if !st.readers_waiting.is_empty() {
            // Readers that queued during the write go first (Go's Unlock
            // releases all blocked readers).
            st.value = Some(v);
            st.writer = false;
            let ws = std::mem::take(&mut st.readers_waiting);
            st.readers += ws.len();
            drop(st);
            for w in ws {
                w.wake();
            }
        } else if let Some((id, w)) = st.writers_waiting.pop_front() {
            st.handoff = Some((id, v));
            drop(st);
            w.wake();
        } else {
            st.value = Some(v);
            st.writer = false;
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().expect("gmp: guard without its value")
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        // Our clone goes first, so the next writer's Arc is unique.
        drop(self.value.take());
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().expect("gmp: guard without its value")
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::get_mut(self.value.as_mut().expect("gmp: guard without its value"))
            .expect("gmp: a reader still holds the value under a write lock")
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            self.lock.write_unlock(v);
        }
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
