//! The join word: who may still use a finished goroutine's G.
//!
//! A goroutine spawned with a `JoinHandle` has two owners of its G after it
//! is published: the goroutine itself (until it exits) and the handle (until
//! it is joined or dropped). The result and a waiting joiner live inside the
//! G (no allocation per spawn), so the G may go back to a free list only
//! when **both** are done with it. One atomic word decides that:
//!
//! | bit | set by | meaning |
//! |---|---|---|
//! | [`DONE`] | the goroutine, after writing the result | the result slot is the handle's |
//! | [`WAITING`] | the joiner, after writing the waiter slot | the waiter slot is the goroutine's |
//! | [`RELEASED`] | the handle (join or drop), after taking any result | the handle will not touch the G again |
//! | [`EXITED`] | the scheduler, after the goroutine switched out for good | the goroutine will not touch the G again |
//! | [`RECYCLING`] | the handle, with `RELEASED`, when it found `EXITED` | the handle is putting the G on a free list |
//! | [`ORPHAN`] | the runtime's drop, when the handle is still alive | the handle frees the G itself |
//!
//! Exactly one party sees the other's bit: the scheduler's `EXITED`
//! ([`JoinWord::exit`]) and the handle's `RELEASED` ([`JoinWord::release`])
//! are both read-modify-writes of this word, so exactly one of them finds
//! the other's bit already set, and that one recycles the G. A G without a
//! handle starts `RELEASED` ([`JoinWord::reset`]), so its exit recycles it
//! at once with a plain load.
//!
//! The handle can outlive its runtime (`Runtime::spawn`, then drop the
//! runtime). The runtime's drop frees every G whose handle is gone and marks
//! the others `ORPHAN` ([`JoinWord::orphan`]); the handle then frees its G
//! when it is released. While a handle holds `RECYCLING` it may still touch
//! the runtime (the free list), so the runtime's drop waits for the bit to
//! clear ([`JoinWord::recycled`]) before it goes on.
//!
//! Because the G is never reused while its handle lives, the handle needs
//! no generation check: the G it points to is always its own goroutine's.
//! Rejected: a separate reference-counted cell per spawn (the previous
//! design): one `malloc` on the spawning thread and one `free` on the
//! exiting one, which glibc makes slow across threads, plus three reference
//! count RMWs.

use std::sync::atomic::Ordering;

use crate::sync::AtomicU32;

/// The result slot holds the goroutine's result (or it was taken).
pub const DONE: u32 = 1;
/// The handle is gone (joined or dropped): it never touches the G again.
pub const RELEASED: u32 = 2;
/// A joiner is registered in the waiter slot.
pub const WAITING: u32 = 4;
/// The goroutine exited: its scheduler never touches the G again.
pub const EXITED: u32 = 8;
/// The handle, last to let go, is putting the G on a free list.
pub const RECYCLING: u32 = 16;
/// The runtime was dropped while the handle lived: the handle frees the G.
pub const ORPHAN: u32 = 32;

/// What the goroutine's completion found (see [`JoinWord::complete`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completed {
    /// The result is stored for the handle; nobody waits yet.
    Stored,
    /// The result is stored and a joiner waits: wake it (the waiter slot is
    /// the goroutine's to take).
    Wake,
    /// The handle is gone: the result slot is still the goroutine's, which
    /// must take the result back and dispose of it.
    Unheld,
}

/// What the handle must do with the G after [`JoinWord::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The goroutine has not exited: its exit recycles the G.
    Kept,
    /// The goroutine has exited: the handle puts the G on a free list and
    /// then calls [`JoinWord::recycled`].
    Recycle,
    /// The runtime is gone: the handle frees the G.
    Free,
}

/// The join word of a G (see the module docs).
pub struct JoinWord(AtomicU32);

impl std::fmt::Debug for JoinWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinWord({:#x})", self.0.load(Ordering::Relaxed))
    }
}

impl JoinWord {
    /// A word for a G without a handle.
    pub fn new() -> Self {
        JoinWord(AtomicU32::new(RELEASED))
    }

    /// Starts a new life of the G, with or without a handle.
    /// Requires: the caller owns the unpublished G (`Idle` or `Dead`, off
    /// every list); publishing it (a run-queue put) orders this store.
    #[inline]
    pub fn reset(&self, handle: bool) {
        self.0
            .store(if handle { 0 } else { RELEASED }, Ordering::Relaxed);
    }

    /// The raw word (Acquire: pairs with the AcqRel of the RMW that set it).
    #[inline]
    pub fn raw(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether the result is in (Acquire: the result is visible after true).
    #[inline]
    pub fn is_done(&self) -> bool {
        self.raw() & DONE != 0
    }

    /// Whether the handle is gone for good (Acquire: pairs with the AcqRel
    /// that set RELEASED, so its last accesses to the G happened before).
    #[inline]
    pub fn is_released(&self) -> bool {
        self.raw() & RELEASED != 0
    }

    /// The goroutine publishes its result (already written in the slot).
    /// Requires: called once, by the goroutine, for a G with a handle.
    #[inline]
    pub fn complete(&self) -> Completed {
        // A handle dropped already (the usual `go(..)` whose handle is
        // discarded) never touches the word again: no RMW needed. Acquire:
        // pairs with the AcqRel that set RELEASED.
        if self.is_released() {
            return Completed::Unheld;
        }
        // AcqRel: Release publishes the result to the handle's Acquire of
        // DONE; Acquire sees the waiter slot written before WAITING, and the
        // handle's last accesses before RELEASED.
        let prev = self.0.fetch_or(DONE, Ordering::AcqRel);
        debug_assert!(prev & (DONE | EXITED) == 0, "completed twice");
        if prev & RELEASED != 0 {
            Completed::Unheld
        } else if prev & WAITING != 0 {
            Completed::Wake
        } else {
            Completed::Stored
        }
    }

    /// The joiner registers its waiter (already written in the slot).
    /// Returns false if the result is already in: the waiter slot stays the
    /// joiner's and it must not wait.
    /// Requires: called by the handle, at most once, before releasing.
    #[inline]
    pub fn register_waiter(&self) -> bool {
        // Acquire: a DONE seen here makes the result visible.
        let mut s = self.0.load(Ordering::Acquire);
        loop {
            if s & DONE != 0 {
                return false;
            }
            debug_assert!(s & (WAITING | RELEASED) == 0);
            // AcqRel on success: Release hands the waiter slot to the
            // goroutine (its complete's Acquire); on failure Acquire sees
            // the result if DONE raced in.
            match self
                .0
                .compare_exchange_weak(s, s | WAITING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
    }

    /// The scheduler, after the goroutine switched out for the last time:
    /// returns true if the G may be recycled now (its handle is gone);
    /// otherwise the handle recycles it when released.
    #[inline]
    pub fn exit(&self) -> bool {
        // Acquire: pairs with the handle's AcqRel that set RELEASED (its
        // accesses to the G happened before). Once RELEASED is set the
        // handle never writes the word again, so no RMW is needed.
        if self.0.load(Ordering::Acquire) & RELEASED != 0 {
            return true;
        }
        // AcqRel: Release orders the goroutine's last accesses before the
        // handle's recycling; Acquire as above if RELEASED raced in.
        self.0.fetch_or(EXITED, Ordering::AcqRel) & RELEASED != 0
    }

    /// The handle lets go of the G. Returns `None` if the result is in and
    /// `result_taken` is false: the caller must take it first (it may have
    /// arrived since the caller last looked) and call again with true.
    /// Requires: called by the handle, which never touches the G after a
    /// `Some` answer (except to recycle or free it as told).
    #[inline]
    pub fn release(&self, result_taken: bool) -> Option<Release> {
        let mut s = self.0.load(Ordering::Acquire);
        loop {
            debug_assert!(s & RELEASED == 0, "released twice");
            if s & DONE != 0 && !result_taken {
                return None;
            }
            let (new, out) = if s & ORPHAN != 0 {
                (s | RELEASED, Release::Free)
            } else if s & EXITED != 0 {
                (s | RELEASED | RECYCLING, Release::Recycle)
            } else {
                (s | RELEASED, Release::Kept)
            };
            // AcqRel: Release orders our reads of the result and waiter
            // slots before whoever recycles the G; Acquire sees the
            // goroutine's last writes if it exited first. A DONE that
            // arrives meanwhile fails the CAS, so it is never missed.
            match self
                .0
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(out),
                Err(x) => s = x,
            }
        }
    }

    /// The handle is done recycling (see [`Release::Recycle`]).
    #[inline]
    pub fn recycled(&self) {
        // Release: pairs with the Acquire load in `orphan`.
        self.0.fetch_and(!RECYCLING, Ordering::Release);
    }

    /// The runtime is being dropped (no goroutine runs any more): returns
    /// true if the G's handle is still alive and will free the G itself,
    /// false if the runtime must free it. Waits while a handle recycles it.
    pub fn orphan(&self) -> bool {
        loop {
            // Acquire: pairs with `recycled` and with the handle's release.
            let s = self.0.load(Ordering::Acquire);
            if s & RELEASED != 0 {
                if s & RECYCLING != 0 {
                    std::hint::spin_loop();
                    #[cfg(gmp_loom)]
                    loom::thread::yield_now();
                    continue;
                }
                return false;
            }
            // AcqRel: the handle's release sees ORPHAN, or we see RELEASED.
            if self
                .0
                .compare_exchange(s, s | ORPHAN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }
}

impl Default for JoinWord {
    fn default() -> Self {
        Self::new()
    }
}
