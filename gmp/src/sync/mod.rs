//! Goroutine-aware synchronisation: Go's `sync` package with std's shapes.
//!
//! | gmp | Go | std |
//! |---|---|---|
//! | [`Mutex`] | `sync.Mutex` | `std::sync::Mutex` |
//! | [`RwLock`] | `sync.RWMutex` | `std::sync::RwLock` |
//! | [`Condvar`] | `sync.Cond` | `std::sync::Condvar` |
//! | [`WaitGroup`] | `sync.WaitGroup` | — |
//! | [`Once`] | `sync.Once` | `std::sync::Once` |
//!
//! Blocking in any of them parks the calling goroutine (its M goes on
//! running other goroutines) or, from a plain OS thread, blocks the thread.
//! Waiting is always a park (a [`Mutex`] contender first spins a few
//! hundred cycles while the holder runs on another P, as Go's does), and
//! the internal `std::sync::Mutex` that guards each one's wait queue is
//! held for a few instructions only and never across a park. Guards are RAII and `Send`:
//! a goroutine that took a lock may release it on another thread after a
//! park point, which `std::sync::MutexGuard` cannot survive.
//!
//! # Design
//! Every primitive follows the channel protocol (see
//! [`crate::channel`]): register a [`Waiter`](gmp_sched::park::Waiter) in a
//! queue under the primitive's internal lock, park with a closure that
//! releases that lock (so, for a goroutine, the release happens after its
//! status is `Waiting`), and have the waker remove the waiter under the
//! same lock and wake it after releasing it. Whoever removes a waiter from
//! its queue wakes it — exactly once.
//!
//! [`Mutex`] and [`RwLock`] are Go's state machines from `gmp_sched::sync`
//! (one atomic per uncontended lock or unlock; a mutex contender spins
//! briefly before parking), where their `unsafe` lives; the facade has
//! none. [`RwLock::new`] and [`Once::new`] are `const`; [`Mutex::new`] is
//! not (its value is boxed, so that unsized values fit).

mod condvar;
mod mutex;
mod once;
mod rwlock;
mod waitgroup;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use once::Once;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use waitgroup::WaitGroup;

pub(crate) use std::sync::Mutex as StdMutex;

/// Locks an internal std mutex. Nothing panics while one is held (no user
/// code runs under it), so poison carries no information and is ignored.
#[inline]
pub(crate) fn lock_std<T: ?Sized>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
