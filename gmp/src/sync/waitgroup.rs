//! [`WaitGroup`]: Go's `sync.WaitGroup`.

use std::fmt;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use gmp_g::WaitReason;
use gmp_sched::park::{park, Waiter};

use super::{lock_std, StdMutex};

/// Waits for a collection of goroutines to finish (Go's `sync.WaitGroup`).
///
/// `add(n)` before starting work, `done()` when each piece finishes,
/// `wait()` parks until the counter is zero. A counter that goes negative
/// panics ("sync: negative WaitGroup counter"), as in Go. Cloning gives
/// another handle to the *same* group (Go shares it by pointer).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// gmp::run(|| {
///     let wg = gmp::sync::WaitGroup::new();
///     let n = Arc::new(AtomicUsize::new(0));
///     for _ in 0..10 {
///         let (wg, n) = (wg.clone(), n.clone());
///         wg.add(1);
///         gmp::go(move || {
///             n.fetch_add(1, Ordering::Relaxed);
///             wg.done();
///         });
///     }
///     wg.wait();
///     assert_eq!(n.load(Ordering::Relaxed), 10);
/// });
/// ```
///
/// # Design
/// The counter is an atomic (`add`/`done` touch no lock unless they bring
/// it to zero); waiters register under a short `std::sync::Mutex` after
/// re-reading the counter there, and whoever brings the counter to zero
/// takes that lock before waking them all — so a waiter either sees zero or
/// is seen.
#[derive(Clone, Default)]
pub struct WaitGroup {
    inner: Arc<WgInner>,
}

#[derive(Default)]
struct WgInner {
    count: AtomicIsize,
    waiters: StdMutex<Vec<Waiter>>,
}

impl WaitGroup {
    /// A group with counter 0.
    pub fn new() -> Self {
        if !gmp_sched::in_goroutine() {
            gmp_sched::deadlock::note_external_use();
        }
        WaitGroup::default()
    }

    /// Adds `delta` (may be negative) to the counter; at zero, releases
    /// every waiter. Panics if the counter goes negative.
    pub fn add(&self, delta: isize) {
        // AcqRel: the work before `done` happens-before the waiter's return.
        let v = self.inner.count.fetch_add(delta, Ordering::AcqRel) + delta;
        if v < 0 {
            panic!("sync: negative WaitGroup counter");
        }
        if v == 0 && delta != 0 {
            let ws = std::mem::take(&mut *lock_std(&self.inner.waiters));
            for w in ws {
                w.wake();
            }
        }
    }

    /// Decrements the counter by one.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Parks until the counter is zero.
    pub fn wait(&self) {
        gmp_sched::check_preempt();
        if self.inner.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut ws = lock_std(&self.inner.waiters);
        // Re-read under the lock: a `done` that reached zero before we
        // locked is visible here; one after will find us in the list.
        if self.inner.count.load(Ordering::Acquire) == 0 {
            return;
        }
        ws.push(Waiter::current());
        park(WaitReason::SyncWaitGroupWait, move || drop(ws));
    }

    /// The current counter.
    pub fn count(&self) -> isize {
        self.inner.count.load(Ordering::Acquire)
    }

    /// Starts `f` in a goroutine counted by this group (Go 1.25's
    /// `WaitGroup.Go`): `add(1)` now, `done()` when `f` returns or panics.
    #[track_caller]
    pub fn go(&self, f: impl FnOnce() + Send + 'static) {
        struct Done(WaitGroup);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.done();
            }
        }
        self.add(1);
        let d = Done(self.clone());
        drop(crate::go(move || {
            let _d = d;
            f();
        }));
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}
