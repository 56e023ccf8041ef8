//! [`Once`]: Go's `sync.Once`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use gmp_g::WaitReason;
use gmp_sched::park::{park, Waiter};

use super::{lock_std, StdMutex};

/// Runs an action exactly once (Go's `sync.Once`).
///
/// Concurrent callers park until the first call's action has returned. As
/// in Go, an action that panics still counts as done (no poisoning).
///
/// ```
/// static INIT: gmp::sync::Once = gmp::sync::Once::new();
/// let mut n = 0;
/// INIT.call_once(|| n += 1);
/// INIT.call_once(|| n += 1);
/// assert_eq!(n, 1);
/// assert!(INIT.is_completed());
/// ```
///
/// # Design
/// Go's: an atomic `done` flag for the fast path; the slow path marks the
/// action as running under a short `std::sync::Mutex` and parks the other
/// callers, whom the runner wakes once `done` is set.
pub struct Once {
    done: AtomicBool,
    slow: StdMutex<OnceState>,
}

struct OnceState {
    running: bool,
    waiters: Vec<Waiter>,
}

impl Once {
    /// A new `Once` that has not run.
    pub const fn new() -> Self {
        Once {
            done: AtomicBool::new(false),
            slow: StdMutex::new(OnceState {
                running: false,
                waiters: Vec::new(),
            }),
        }
    }

    /// Runs `f` if no call has run yet; otherwise waits for that call to
    /// finish and returns.
    pub fn call_once(&self, f: impl FnOnce()) {
        // Acquire: pairs with the Release store in `Finish`, so `f`'s
        // effects are visible to everyone who sees `done`.
        if self.done.load(Ordering::Acquire) {
            return;
        }
        self.call_slow(f);
    }

    #[cold]
    fn call_slow(&self, f: impl FnOnce()) {
        gmp_sched::check_preempt();
        let mut st = lock_std(&self.slow);
        while st.running {
            st.waiters.push(Waiter::current());
            park(WaitReason::SyncOnce, move || drop(st));
            st = lock_std(&self.slow);
        }
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        st.running = true;
        drop(st);
        /// Marks the action done and wakes the waiters, even if it panics.
        struct Finish<'a>(&'a Once);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut st = lock_std(&self.0.slow);
                self.0.done.store(true, Ordering::Release);
                st.running = false;
                let ws = std::mem::take(&mut st.waiters);
                drop(st);
                for w in ws {
                    w.wake();
                }
            }
        }
        let _finish = Finish(self);
        f();
    }

    /// Whether a call has completed.
    pub fn is_completed(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

impl Default for Once {
    fn default() -> Self {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("done", &self.is_completed())
            .finish()
    }
}
