//! One waiting primitive for goroutines and plain threads alike.
//!
//! Channel and sync code registers a [`Waiter`] in its wait queue under its
//! own lock, then calls [`park`] with a closure that releases that lock. A
//! goroutine parks through `gopark` (its M goes on running others); a plain
//! OS thread blocks on its own parker. The waker removes the waiter from the
//! queue under the same lock and calls [`Waiter::wake`] after releasing it.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gmp_g::{GRef, WaitReason};

use crate::proc::{current_g, gopark, goready};

/// A blocked thread's parker.
#[derive(Default)]
pub struct ThreadParker {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl fmt::Debug for ThreadParker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadParker")
    }
}

thread_local! {
    static PARKER: Arc<ThreadParker> = Arc::new(ThreadParker::default());
}

/// The calling goroutine if it may park: a goroutine inside
/// `gmp::blocking` has given up its P and blocks like a plain thread.
fn parkable_g() -> Option<GRef> {
    current_g().filter(|g| g.status.get() == gmp_g::Status::Running)
}

/// Who is waiting: a goroutine or an OS thread.
#[derive(Clone)]
pub enum Waiter {
    /// A parked goroutine.
    G(GRef),
    /// A blocked OS thread.
    Thread(Arc<ThreadParker>),
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiter::G(g) => write!(f, "Waiter({g:?})"),
            Waiter::Thread(_) => write!(f, "Waiter(thread)"),
        }
    }
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (Waiter::G(a), Waiter::G(b)) => a == b,
            (Waiter::Thread(a), Waiter::Thread(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Waiter {
    /// The caller as a waiter.
    pub fn current() -> Waiter {
        match parkable_g() {
            Some(g) => Waiter::G(g),
            None => {
                crate::deadlock::note_external_use();
                Waiter::Thread(PARKER.with(|p| p.clone()))
            }
        }
    }
    /// Wakes the waiter. Call exactly once per [`park`], after removing the
    /// waiter from the queue it was registered in.
    pub fn wake(self) {
        match self {
            Waiter::G(g) => goready(g),
            Waiter::Thread(t) => {
                *t.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
                t.cv.notify_one();
            }
        }
    }
    /// The waiter as one word, for a slot inside a G (see
    /// [`G::set_join_waiter`](gmp_g::G::set_join_waiter)); never 0. A
    /// thread's parker reference moves into the word.
    pub fn into_word(self) -> usize {
        match self {
            // A G is 8-aligned: bit 0 is clear.
            Waiter::G(g) => g.as_ptr() as usize,
            // A ThreadParker holds a Mutex and a Condvar (4-aligned at
            // least): bit 0 of its address is clear, so it tags a thread.
            Waiter::Thread(t) => Arc::into_raw(t) as usize | 1,
        }
    }

    /// Rebuilds a waiter from [`Waiter::into_word`].
    ///
    /// # Safety
    /// `w` came from `into_word` and is turned back into a waiter once.
    pub unsafe fn from_word(w: usize) -> Waiter {
        debug_assert!(w != 0);
        if w & 1 == 0 {
            // SAFETY: per the contract, an untagged word is a live G pointer.
            Waiter::G(unsafe { GRef::from_ptr(w as *mut gmp_g::G) })
        } else {
            // SAFETY: per the contract, a tagged word is Arc::into_raw of a
            // ThreadParker whose reference we take back once.
            Waiter::Thread(unsafe { Arc::from_raw((w & !1) as *const ThreadParker) })
        }
    }

    /// The goroutine, if the waiter is one.
    pub fn goroutine(&self) -> Option<GRef> {
        match self {
            Waiter::G(g) => Some(*g),
            Waiter::Thread(_) => None,
        }
    }
}

/// Blocks the caller (registered as [`Waiter::current`]) until woken.
/// `unlock` runs once the caller is committed to sleeping; it must release
/// the lock that guards the queue holding the waiter.
pub fn park<F: FnOnce()>(reason: WaitReason, unlock: F) {
    if parkable_g().is_some() {
        gopark(reason, move |_g| {
            unlock();
            true
        });
    } else {
        let t = PARKER.with(|p| p.clone());
        unlock();
        let mut w = t.woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*w {
            w = t.cv.wait(w).unwrap_or_else(|e| e.into_inner());
        }
        *w = false;
    }
}

/// Like [`park`] for a plain thread, with a deadline: returns false on
/// timeout. The caller must then remove itself from the queue under its
/// lock; if it is no longer there, a wake is in flight and the caller must
/// call [`consume_thread_wake`].
pub fn park_thread_timeout<F: FnOnce()>(unlock: F, deadline: Instant) -> bool {
    let t = PARKER.with(|p| p.clone());
    unlock();
    let mut w = t.woken.lock().unwrap_or_else(|e| e.into_inner());
    while !*w {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        w =
            t.cv.wait_timeout(w, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
    }
    *w = false;
    true
}

/// Waits for (and consumes) a wake that is known to be in flight.
pub fn consume_thread_wake() {
    let t = PARKER.with(|p| p.clone());
    let mut w = t.woken.lock().unwrap_or_else(|e| e.into_inner());
    while !*w {
        w =
            t.cv.wait_timeout(w, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
    }
    *w = false;
}
