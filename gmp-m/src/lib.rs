//! # gmp-m: the machine (OS worker thread)
//!
//! ## The problem
//! Goroutines run on OS threads, and the runtime must put a thread to sleep
//! when there is nothing to do and wake exactly the right one when work
//! arrives — without ever losing a wake-up (a sleeping thread while a
//! runnable G waits) and without a thundering herd.
//!
//! ## The mechanism
//! * [`M`] is Go's `m`: the thread's scheduler state. Fields other threads
//!   may read are atomics; the rest are owner-only.
//! * [`Note`] is Go's one-shot event (`lock_futex.go`): `wakeup` sets it,
//!   `sleep` waits until it is set, `clear` re-arms it. A wake-up that comes
//!   before the sleep is not lost: the note stays set until cleared, and only
//!   the sleeper clears it, after waking. The protocol that decides *which*
//!   M to wake lives in `gmp-sched` (spinning Ms, see its DESIGN.md).
//! * Threads are named `gmp-m<N>`; creating one can fail (thread limits),
//!   and [`spawn_thread`] returns the error instead of panicking so the
//!   scheduler keeps running on the threads it has.
//!
//! ## Invariants
//! 1. A note is woken at most once between two clears by the scheduler's
//!    protocol (an M is taken off the idle list by exactly one waker).
//! 2. `M::p` is written only by the M itself (acquire/release of a P) or by
//!    the world-stopper while the M is parked.
//!
//! ## Rejected alternatives
//! * `std::thread::park`/`unpark`: its token is shared with everything else
//!   that may park the thread (a user's own `park` inside `gmp::blocking`
//!   would eat our wake-up).

#![warn(missing_docs)]

pub mod note;

pub use note::Note;

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use gmp_g::{GRef, G};
use gmp_p::P;

/// An OS worker thread's scheduler state (Go's `m`).
pub struct M {
    /// Thread number: the thread is named `gmp-m<id>`.
    pub id: u64,
    /// Where the M sleeps when idle.
    pub note: Note,
    /// The P this M holds (null when none).
    pub p: AtomicPtr<P>,
    /// The P handed to this M by whoever woke it.
    pub nextp: AtomicPtr<P>,
    /// The P held before a blocking call (Go's `oldp`).
    pub oldp: AtomicPtr<P>,
    /// The goroutine being executed (null on g0).
    pub curg: AtomicPtr<G>,
    /// The goroutine locked to this M (`lock_os_thread`), null if none.
    pub lockedg: AtomicPtr<G>,
    /// Whether the M is spinning (looking for work while holding a P).
    pub spinning: AtomicBool,
    /// Set while the M sleeps on its note (for dumps).
    pub blocked: AtomicBool,
    /// `pthread_self()` of the thread, for preemption signals (0 until set).
    pub thread: AtomicUsize,
    /// The OS thread id (gettid), for dumps and tests (0 until set).
    pub tid: AtomicU64,
    /// Runtime clock (ns) when the current G started its time slice.
    pub slice_start: AtomicU64,
    /// 1 while the M runs goroutine (user) code, 0 in the runtime. Written
    /// only by the M itself; read by its own signal handler.
    pub in_user: AtomicBool,
    /// Set by the preemption signal handler when it gave this M's P away.
    pub p_detached: AtomicBool,
    /// Set when the M must exit its scheduler loop.
    pub exit: AtomicBool,
    /// Owner only: scratch buffer for steals.
    scratch: UnsafeCell<Vec<GRef>>,
    /// Owner only: xorshift state for random steal order.
    rng: UnsafeCell<u64>,
}

// SAFETY: `scratch` and `rng` are owner-only (used by the M's own thread);
// every other field is atomic.
unsafe impl Sync for M {}
// SAFETY: as above.
unsafe impl Send for M {}

impl fmt::Debug for M {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("M").field("id", &self.id).finish()
    }
}

impl M {
    /// A new M with the given id.
    pub fn new(id: u64) -> M {
        M {
            id,
            note: Note::new(),
            p: AtomicPtr::new(std::ptr::null_mut()),
            nextp: AtomicPtr::new(std::ptr::null_mut()),
            oldp: AtomicPtr::new(std::ptr::null_mut()),
            curg: AtomicPtr::new(std::ptr::null_mut()),
            lockedg: AtomicPtr::new(std::ptr::null_mut()),
            spinning: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            thread: AtomicUsize::new(0),
            tid: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            in_user: AtomicBool::new(false),
            p_detached: AtomicBool::new(false),
            exit: AtomicBool::new(false),
            scratch: UnsafeCell::new(Vec::with_capacity(gmp_p::LOCAL_QUEUE_CAP)),
            rng: UnsafeCell::new(
                0x9E37_79B9_7F4A_7C15 ^ (id.wrapping_mul(0xA24B_AED4_963E_E407) | 1),
            ),
        }
    }

    /// The current G, if any.
    #[inline]
    pub fn curg(&self) -> Option<GRef> {
        let p = self.curg.load(Ordering::Acquire);
        // SAFETY: curg holds null or a live G.
        (!p.is_null()).then(|| unsafe { GRef::from_ptr(p) })
    }

    /// The steal scratch buffer.
    ///
    /// # Safety
    /// Called only on the M's own thread, and the borrow must end before the
    /// next call.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn scratch(&self) -> &mut Vec<GRef> {
        // SAFETY: owner-only per the contract.
        unsafe { &mut *self.scratch.get() }
    }

    /// A pseudo-random number (xorshift64*), owner only.
    pub fn fastrand(&self) -> u64 {
        // SAFETY: `rng` is only touched on the M's own thread (the caller).
        let s = unsafe { &mut *self.rng.get() };
        let mut x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Records the calling thread's identity (called first thing on the M).
    pub fn bind_current_thread(&self) {
        // SAFETY: pthread_self and gettid have no preconditions.
        let (pt, tid) = unsafe { (libc::pthread_self(), libc::gettid()) };
        self.thread.store(pt as usize, Ordering::Release);
        self.tid.store(tid as u64, Ordering::Release);
    }
}

/// Spawns an M thread named `gmp-m<id>` running `f`.
pub fn spawn_thread(
    id: u64,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("gmp-m{id}"))
        .stack_size(2 << 20)
        .spawn(f)
}

/// The calling thread's OS id.
pub fn gettid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}
