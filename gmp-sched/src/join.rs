//! A one-shot, lock-free cell carrying a goroutine's result to its
//! `JoinHandle`.
//!
//! Two owners share one allocation: the [`Completer`] (moved into the
//! goroutine) writes the result once; the [`Joiner`] (inside the handle)
//! waits for it, or detaches. One atomic state word orders them:
//!
//! * `DONE`: the result slot is written (set by the completer, after writing).
//! * `DETACHED`: the joiner is gone or gave up (set by the joiner).
//! * `WAITING`: a waiter is registered in the waiter slot (set by the joiner,
//!   after writing it; for a goroutine, only once it is `Waiting`).
//!
//! Who may touch what: the result slot belongs to the completer until it
//! sets `DONE`, then to the joiner unless `DETACHED` was already set (then
//! the completer takes it back). The waiter slot belongs to the joiner until
//! it sets `WAITING`, then to the completer, which wakes the waiter exactly
//! once. Every transition is a single RMW on the state word with `AcqRel`,
//! so the owner-to-be always sees the previous owner's writes.
//!
//! Rejected: `Arc<Mutex<state>>` (the previous design) took a lock three
//! or four times per goroutine, plus one at join.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use gmp_g::WaitReason;

use crate::park::{park, Waiter};
use crate::proc::gopark;

const DONE: u8 = 1;
const DETACHED: u8 = 2;
const WAITING: u8 = 4;

struct Cell<T> {
    state: AtomicU8,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    waiter: UnsafeCell<Option<Waiter>>,
}

// SAFETY: the UnsafeCell slots are touched only by their owner of the moment
// as the module docs define it, ownership passing through AcqRel RMWs on
// `state`; the result (T: Send) and the waiter move between threads.
unsafe impl<T: Send> Sync for Cell<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Cell<T> {}

/// The writing half: completes the cell once.
pub struct Completer<T>(Arc<Cell<T>>);

/// The reading half: joins, polls or detaches.
pub struct Joiner<T>(Arc<Cell<T>>);

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Completer")
    }
}

impl<T> fmt::Debug for Joiner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Joiner(finished: {})", self.is_finished())
    }
}

/// A fresh cell's two halves.
pub fn oneshot<T>() -> (Completer<T>, Joiner<T>) {
    let c = Arc::new(Cell {
        state: AtomicU8::new(0),
        result: UnsafeCell::new(None),
        waiter: UnsafeCell::new(None),
    });
    (Completer(c.clone()), Joiner(c))
}

impl<T> Completer<T> {
    /// Stores the result and wakes a waiting joiner. If the joiner has
    /// detached, nobody will read the result: it is handed back (the caller
    /// reports a panic nobody will see otherwise).
    pub fn complete(self, r: std::thread::Result<T>) -> Option<std::thread::Result<T>> {
        let c = &*self.0;
        // SAFETY: before DONE the result slot is the completer's, and this
        // is the only completer (moved in by value, consumed here).
        unsafe { *c.result.get() = Some(r) };
        // AcqRel: Release publishes the result to the joiner's Acquire of
        // DONE; Acquire sees the waiter slot written before WAITING.
        let prev = c.state.fetch_or(DONE, Ordering::AcqRel);
        if prev & DETACHED != 0 {
            // SAFETY: the joiner detached before DONE, so it never reads the
            // slot: it is still ours.
            return unsafe { (*c.result.get()).take() };
        }
        if prev & WAITING != 0 {
            // SAFETY: WAITING hands the waiter slot to us; the joiner does
            // not touch it again until it has been woken.
            let w = unsafe { (*c.waiter.get()).take() };
            w.expect("a registered joiner").wake();
        }
        None
    }
}

impl<T> Joiner<T> {
    /// Whether the result is in.
    pub fn is_finished(&self) -> bool {
        self.0.state.load(Ordering::Acquire) & DONE != 0
    }

    /// Waits for the result (parking the calling goroutine, or blocking the
    /// calling thread) and takes it. Returns `None` if it was already taken.
    pub fn join(&self) -> Option<std::thread::Result<T>> {
        let c = &*self.0;
        // Acquire: pairs with the completer's Release of DONE.
        if c.state.load(Ordering::Acquire) & DONE == 0 {
            let w = Waiter::current();
            let is_g = w.goroutine().is_some();
            // SAFETY: before WAITING the waiter slot is ours.
            unsafe { *c.waiter.get() = Some(w) };
            // AcqRel on success: Release hands the waiter slot to the
            // completer. On failure the completer set DONE first: it will
            // never look at the waiter slot, which stays ours.
            let register = || {
                c.state
                    .compare_exchange(0, WAITING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            };
            if is_g {
                // The goroutine registers only once it is Waiting (in
                // gopark's unlock step, on its M's stack), so the
                // completer's wake always finds it parked. A lost race
                // (DONE already) aborts the park.
                gopark(WaitReason::Join, move |_| register());
            } else if register() {
                // A thread's wake is a flag: an early wake is not lost.
                park(WaitReason::Join, || {});
            }
            // Either woken (the completer took the waiter) or the race was
            // lost (the slot is still ours): clear whatever is left.
            // SAFETY: DONE is set now (woken, or the failed CAS saw it), so
            // the completer is done with the waiter slot.
            unsafe { *c.waiter.get() = None };
        }
        // Acquire: pairs with the completer's Release of DONE.
        let s = c.state.load(Ordering::Acquire);
        debug_assert!(s & DONE != 0 && s & DETACHED == 0);
        // SAFETY: DONE is set and we have not detached: the slot is ours.
        unsafe { (*c.result.get()).take() }
    }

    /// Gives up on the result. If it is already in (and was not taken by
    /// [`join`](Self::join)), it is returned for the caller to dispose of;
    /// otherwise the completer will hand it back to the goroutine.
    pub fn detach(&self) -> Option<std::thread::Result<T>> {
        let c = &*self.0;
        // AcqRel: Acquire sees the result if DONE was set first; Release
        // tells the completer the slot is its own again.
        let prev = c.state.fetch_or(DETACHED, Ordering::AcqRel);
        if prev & (DONE | DETACHED) == DONE {
            // SAFETY: DONE was set before we detached: the slot is ours.
            unsafe { (*c.result.get()).take() }
        } else {
            None
        }
    }
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;

    #[test]
    fn result_reaches_a_thread_joiner_whatever_the_order() {
        // Completer first.
        let (tx, rx) = oneshot::<u32>();
        assert!(!rx.is_finished());
        assert!(tx.complete(Ok(5)).is_none());
        assert!(rx.is_finished());
        assert_eq!(rx.join().unwrap().unwrap(), 5);
        assert!(rx.detach().is_none(), "taken once");
        // Joiner first, from a plain thread that blocks.
        for _ in 0..100 {
            let (tx, rx) = oneshot::<String>();
            let t = std::thread::spawn(move || tx.complete(Ok("hi".to_string())));
            assert_eq!(rx.join().unwrap().unwrap(), "hi");
            assert!(t.join().unwrap().is_none());
        }
    }

    #[test]
    fn detached_results_go_back_to_whoever_holds_them() {
        // Detached before completion: the completer gets it back.
        let (tx, rx) = oneshot::<u32>();
        assert!(rx.detach().is_none());
        assert_eq!(tx.complete(Ok(3)).unwrap().unwrap(), 3);
        // Detached after completion: the joiner gets it back.
        let (tx, rx) = oneshot::<u32>();
        assert!(tx.complete(Ok(4)).is_none());
        assert_eq!(rx.detach().unwrap().unwrap(), 4);
        // Dropping both halves drops an untaken result.
        let v = Arc::new(());
        let (tx, rx) = oneshot::<Arc<()>>();
        assert!(tx.complete(Ok(v.clone())).is_none());
        drop(rx);
        assert_eq!(Arc::strong_count(&v), 1);
    }
}
