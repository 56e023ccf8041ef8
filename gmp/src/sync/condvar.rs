//! [`Condvar`]: Go's `sync.Cond`, with std's `Condvar` API.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp_g::WaitReason;
use gmp_sched::park::{consume_thread_wake, park, park_thread_timeout, Waiter};
use gmp_sched::time::{start_timer, FnTimer};

use super::{lock_std, MutexGuard, StdMutex};

/// A condition variable for [`Mutex`](super::Mutex) (Go's `sync.Cond`).
///
/// `wait` atomically releases the mutex and parks; `notify_one` wakes the
/// longest waiter, `notify_all` every waiter. Waking is FIFO and there are
/// no spurious wakeups (but, as always, recheck the condition in a loop:
/// another goroutine may get the mutex first).
///
/// ```
/// use std::sync::Arc;
/// use gmp::sync::{Condvar, Mutex};
/// gmp::run(|| {
///     let pair = Arc::new((Mutex::new(false), Condvar::new()));
///     let p2 = pair.clone();
///     gmp::go(move || {
///         *p2.0.lock() = true;
///         p2.1.notify_one();
///     });
///     let (m, cv) = &*pair;
///     let g = cv.wait_while(m.lock(), |ready| !*ready);
///     assert!(*g);
/// });
/// ```
///
/// # Design
/// A FIFO of waiters under a short `std::sync::Mutex`. A waiter enqueues
/// itself *before* releasing the user's mutex, and releases that mutex
/// while still holding the queue lock, so a notify that follows the
/// release always finds it (no lost wakeup). A notifier removes the
/// waiter under the queue lock and wakes it after releasing it; a timed
/// wait's timer does the same, so whoever removes the entry is the one
/// that wakes — exactly once.
#[derive(Default)]
pub struct Condvar {
    inner: Arc<StdMutex<CvState>>,
}

#[derive(Default)]
struct CvState {
    waiters: VecDeque<(u64, Waiter)>,
    /// Ids whose timer removed them (the waiter collects its own).
    timed_out: Vec<u64>,
    next_id: u64,
}

/// Whether a timed wait timed out (std's `WaitTimeoutResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the time ran out.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Self {
        Condvar::default()
    }

    /// Releases `guard`'s mutex, parks until notified, and locks it again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        gmp_sched::check_preempt();
        let m = guard.mutex();
        let mut cv = lock_std(&self.inner);
        let id = cv.next_id;
        cv.next_id += 1;
        cv.waiters.push_back((id, Waiter::current()));
        guard.unlock_no_yield();
        park(WaitReason::SyncCondWait, move || drop(cv));
        m.lock()
    }

    /// Waits while `cond` holds, rechecking after each wakeup.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut cond: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while cond(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`wait`](Self::wait), giving up after `timeout`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.wait_deadline(guard, d),
            None => (self.wait(guard), WaitTimeoutResult(false)),
        }
    }

    /// Like [`wait_while`](Self::wait_while), giving up after `timeout`.
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut cond: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return (self.wait_while(guard, cond), WaitTimeoutResult(false));
        };
        while cond(&mut *guard) {
            if Instant::now() >= deadline {
                return (guard, WaitTimeoutResult(true));
            }
            guard = self.wait_deadline(guard, deadline).0;
        }
        (guard, WaitTimeoutResult(false))
    }

    fn wait_deadline<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        gmp_sched::check_preempt();
        let m = guard.mutex();
        let mut cv = lock_std(&self.inner);
        let id = cv.next_id;
        cv.next_id += 1;
        let w = Waiter::current();
        let goroutine = w.goroutine().is_some();
        cv.waiters.push_back((id, w));
        guard.unlock_no_yield();
        let timed_out = if goroutine {
            let inner = self.inner.clone();
            let t = FnTimer::new(move || {
                let mut cv = lock_std(&inner);
                if let Some(i) = cv.waiters.iter().position(|(w, _)| *w == id) {
                    let (_, w) = cv.waiters.remove(i).expect("found");
                    cv.timed_out.push(id);
                    drop(cv);
                    w.wake();
                }
            });
            let d = deadline.saturating_duration_since(Instant::now());
            gmp_sched::with_current_sched(|s| start_timer(s, d, t.clone()));
            // The timer locks the queue, so it cannot remove us before the
            // park below has released it.
            park(WaitReason::SyncCondWait, move || drop(cv));
            t.stop();
            let mut cv = lock_std(&self.inner);
            match cv.timed_out.iter().position(|w| *w == id) {
                Some(i) => {
                    cv.timed_out.swap_remove(i);
                    true
                }
                None => false,
            }
        } else if park_thread_timeout(move || drop(cv), deadline) {
            false
        } else {
            let mut cv = lock_std(&self.inner);
            match cv.waiters.iter().position(|(w, _)| *w == id) {
                Some(i) => {
                    cv.waiters.remove(i);
                    true
                }
                None => {
                    // A notify removed us just as we timed out: its wake is
                    // in flight; consume it.
                    drop(cv);
                    consume_thread_wake();
                    false
                }
            }
        };
        (m.lock(), WaitTimeoutResult(timed_out))
    }

    /// Wakes the longest-waiting goroutine or thread, if any (Go's
    /// `Signal`).
    pub fn notify_one(&self) {
        let w = lock_std(&self.inner).waiters.pop_front();
        if let Some((_, w)) = w {
            w.wake();
        }
    }

    /// Wakes every waiter (Go's `Broadcast`).
    pub fn notify_all(&self) {
        let ws = std::mem::take(&mut lock_std(&self.inner).waiters);
        for (_, w) in ws {
            w.wake();
        }
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
