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
//!   the sleeper clears it, after waking. It is one futex word: a wake-up
//!   of a thread that is not asleep costs one atomic swap, and waking is
//!   async-signal-safe (see `note`'s own notes). The protocol that decides
//!   *which* M to wake lives in `gmp-sched` (spinning Ms, see its DESIGN.md).
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
//! * A `Mutex<bool>` + `Condvar` note (the first version): a syscall on
//!   every wake-up even with nobody asleep, a mutex round after waking, and
//!   not callable from a signal handler.

#![warn(missing_docs)]

pub mod alarm;
pub mod note;

pub use alarm::Alarm;
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
    /// Runtime clock (ns, coarse) when the current G was last resumed:
    /// unlike `slice_start`, not inherited along a `runnext` chain. Owner
    /// only (the M and its signal handler).
    pub run_start: AtomicU64,
    /// 1 while the M runs goroutine (user) code, 0 in the runtime. Written
    /// only by the M itself; read by its own signal handler.
    pub in_user: AtomicBool,
    /// Set by the preemption signal handler when it gave this M's P away.
    pub p_detached: AtomicBool,
    /// Set when the M must exit its scheduler loop.
    pub exit: AtomicBool,
    /// Its waker gave the thread a short kernel slice (see
    /// [`request_slice_of`]); the M restores the default when it parks.
    pub short_slice: AtomicBool,
    /// Set by the preemption signal handler that handed this M a P and took
    /// the last idle M doing so: the M makes a new spare once it runs (a
    /// signal handler cannot create threads).
    pub refill_spare: AtomicBool,
    /// The thread's alarm (see [`alarm`]): armed for the P's earliest timer
    /// while a goroutine runs.
    pub alarm: Alarm,
    /// The timer deadline (runtime clock, ns) the alarm is armed for; 0 when
    /// disarmed or fired. Owner only (the M's thread and its handler).
    pub alarm_for: AtomicU64,
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
            run_start: AtomicU64::new(0),
            in_user: AtomicBool::new(false),
            p_detached: AtomicBool::new(false),
            exit: AtomicBool::new(false),
            short_slice: AtomicBool::new(false),
            refill_spare: AtomicBool::new(false),
            alarm: Alarm::new(),
            alarm_for: AtomicU64::new(0),
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

/// The kernel's `struct sched_attr` (`SCHED_ATTR_SIZE_VER1`, 56 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// Asks the kernel to give thread `tid` (0: the calling thread) scheduling
/// slices of `slice_ns` (0: the kernel's default), keeping its policy and
/// nice value.
///
/// Linux 6.12+ (EEVDF) lets any thread of the normal policy request its
/// own slice length (`sched_attr::sched_runtime`, clamped to 0.1-100 ms).
/// The slice does not change the thread's share of the CPU (that is its
/// weight, i.e. its nice value), only *when* it runs: a woken thread with a
/// shorter slice than the one on the CPU may preempt it at once
/// (`PREEMPT_SHORT`), instead of waiting, on a 250 Hz kernel, up to a 4 ms
/// tick for the running thread's slice to end. That wait is what a P taken
/// from a hog costs: the M it is handed to, or sysmon itself, is woken onto
/// a CPU that a hog goroutine's thread is spinning on.
///
/// Best effort: older kernels ignore the runtime of a normal-policy thread
/// or refuse the call; a thread with a real-time or deadline policy (set by
/// the user) is left alone. Returns whether the kernel took the request.
pub fn request_slice_of(tid: u64, slice_ns: u64) -> bool {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, a
    // live, properly aligned `struct sched_attr` of exactly that size; a
    // wrong or exited tid only makes the call fail.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::pid_t,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if r != 0
        || (attr.sched_policy != libc::SCHED_OTHER as u32
            && attr.sched_policy != libc::SCHED_BATCH as u32)
    {
        return false;
    }
    if attr.sched_runtime == slice_ns {
        return true;
    }
    attr.size = size;
    attr.sched_flags = 0;
    attr.sched_runtime = slice_ns;
    // SAFETY: `attr` is a fully initialised `struct sched_attr` whose size
    // field matches its layout; the policy and nice value are the thread's
    // own (read above), so only the slice changes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::pid_t,
            &attr as *const SchedAttr,
            0,
        )
    };
    r == 0
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;

    fn slice_of_self() -> Option<u64> {
        let mut attr = SchedAttr::default();
        let size = std::mem::size_of::<SchedAttr>() as u32;
        // SAFETY: as in request_slice_of: a live sched_attr of `size` bytes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                size,
                0,
            )
        };
        (r == 0).then_some(attr.sched_runtime)
    }

    #[test]
    fn request_slice_sets_and_restores_the_threads_slice() {
        std::thread::spawn(|| {
            if !request_slice_of(0, 200_000) {
                // An old kernel without custom slices: nothing to check.
                return;
            }
            assert_eq!(slice_of_self(), Some(200_000));
            assert!(request_slice_of(0, 0));
            // Back to the default, which the kernel reports as its length.
            assert_ne!(slice_of_self(), Some(200_000));
            // A thread id that does not exist is refused, not a panic.
            assert!(!request_slice_of(u32::MAX as u64 / 2, 100_000));
        })
        .join()
        .unwrap();
    }
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`, ns; 0: back
/// to the process default). Linux lets a sleep that asked for time `t` end
/// anywhere in `[t, t + slack]` (50 µs by default) to batch wake-ups;
/// sysmon and the Ms sleep until deadlines that matter to the microsecond
/// (a hog's slice end, a timer on a hogged P), so they ask for less.
/// Returns whether the kernel took it.
pub fn set_timer_slack(ns: u64) -> bool {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) == 0 }
}
