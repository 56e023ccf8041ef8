//! Go's `note` (`lock_futex.go`): a one-shot event one thread sleeps on.
//!
//! The note is a single 32-bit word with three states: `CLEAR`, `SET` (a
//! wake-up arrived, not yet consumed) and `SLEEPING` (the owner is, or is
//! about to be, blocked in `futex_wait` on the word).
//!
//! * [`Note::wakeup`] swaps in `SET` and calls `futex_wake` only if it
//!   replaced `SLEEPING`: waking a thread that is still running costs one
//!   atomic, not a syscall. Atomics and one `futex` call are
//!   async-signal-safe, so a signal handler may wake a note.
//! * [`Note::sleep_and_clear`] moves `CLEAR -> SLEEPING` and waits on the
//!   word while it reads `SLEEPING`. The kernel checks the word under its
//!   own lock before blocking, so a `wakeup` that lands between our CAS and
//!   the wait makes the wait return at once: no wake-up is lost. A `SET`
//!   seen at any point is consumed (`SET -> CLEAR`) and ends the sleep.
//!
//! One thread sleeps on a note (an M on its own note, sysmon on its note,
//! the stop-the-world initiator on `stopnote`); any number may wake it.
//! Wake-ups before a clear merge into one, as in Go.
//!
//! Rejected: a `Mutex<bool>` + `Condvar` (the first version). A wake-up
//! then always paid the condvar's `futex_wake`, even with nobody asleep,
//! the woken sleeper re-took the mutex (a second futex round when the waker
//! still held it), and neither half was async-signal-safe.
//!
//! Under `--cfg gmp_loom` the two futex calls are modelled with loom's
//! `Mutex` + `Condvar` (the mutex stands for the kernel's hash-bucket
//! lock), so the loom models in `tests/loom_note.rs` check this state
//! machine itself.

use std::time::Duration;

#[cfg(gmp_loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(gmp_loom))]
use std::sync::atomic::{AtomicU32, Ordering};

const CLEAR: u32 = 0;
const SET: u32 = 1;
const SLEEPING: u32 = 2;

/// A one-shot event. `wakeup` before `sleep` is remembered until `clear`.
#[derive(Debug)]
pub struct Note {
    state: AtomicU32,
    #[cfg(gmp_loom)]
    model: futex_model::Bucket,
}

impl Default for Note {
    fn default() -> Self {
        Self::new()
    }
}

impl Note {
    /// A cleared note.
    pub fn new() -> Note {
        Note {
            state: AtomicU32::new(CLEAR),
            #[cfg(gmp_loom)]
            model: futex_model::Bucket::new(),
        }
    }

    /// Sets the note and wakes the sleeper, if one is asleep (Go's
    /// `notewakeup`). Async-signal-safe.
    pub fn wakeup(&self) {
        // Release: what the waker wrote before is visible to the sleeper
        // that consumes SET with Acquire.
        if self.state.swap(SET, Ordering::Release) == SLEEPING {
            self.futex_wake();
        }
    }

    /// Sleeps until the note is set (Go's `notesleep`), then clears it.
    pub fn sleep_and_clear(&self) {
        loop {
            if self.try_consume_or_announce() {
                return;
            }
            self.futex_wait(None);
        }
    }

    /// Sleeps until set or `d` passes; returns whether it was set (and
    /// clears it if so). Go's `notetsleep`.
    #[cfg(not(gmp_loom))]
    pub fn sleep_timeout_and_clear(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        loop {
            if self.try_consume_or_announce() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return self.withdraw();
            }
            self.futex_wait(Some(deadline - now));
        }
    }

    /// Under loom time does not pass: a timed sleep is a check.
    #[cfg(gmp_loom)]
    pub fn sleep_timeout_and_clear(&self, _d: Duration) -> bool {
        self.state.swap(CLEAR, Ordering::Acquire) == SET
    }

    /// Clears the note (Go's `noteclear`). Only its sleeper clears it, and
    /// not while asleep.
    pub fn clear(&self) {
        self.state.store(CLEAR, Ordering::Relaxed);
    }

    /// Consumes a SET (true), or announces the sleep: `CLEAR -> SLEEPING`,
    /// or `SLEEPING` already there from a spurious return (false).
    fn try_consume_or_announce(&self) -> bool {
        match self
            .state
            .compare_exchange(CLEAR, SLEEPING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(SET) => {
                // Only the sleeper moves SET on; a wake-up racing this store
                // merges with the one consumed.
                self.state.store(CLEAR, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// A timed sleep gives up: `SLEEPING -> CLEAR`, unless a wake-up came
    /// meanwhile (then it is consumed and the sleep succeeded).
    #[cfg(not(gmp_loom))]
    fn withdraw(&self) -> bool {
        match self
            .state
            .compare_exchange(SLEEPING, CLEAR, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(_) => {
                self.state.store(CLEAR, Ordering::Relaxed);
                true
            }
        }
    }

    #[cfg(not(gmp_loom))]
    fn futex_wait(&self, timeout: Option<Duration>) {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the word is a live, aligned u32 owned by `self` for the
        // whole call; FUTEX_WAIT only reads it, and `tsp` is null or points
        // to a timespec on this stack frame. EINTR, EAGAIN (the word
        // changed) and ETIMEDOUT all just return to the caller's loop,
        // which re-reads the word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.state.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                SLEEPING,
                tsp,
            );
        }
    }

    #[cfg(not(gmp_loom))]
    fn futex_wake(&self) {
        // SAFETY: the word is a live, aligned u32 owned by `self`;
        // FUTEX_WAKE does not touch memory, it wakes at most one thread
        // blocked on this address.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.state.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
    }

    #[cfg(gmp_loom)]
    fn futex_wait(&self, _timeout: Option<Duration>) {
        self.model
            .wait_while(|| self.state.load(Ordering::Relaxed) == SLEEPING);
    }

    #[cfg(gmp_loom)]
    fn futex_wake(&self) {
        self.model.wake();
    }
}

/// The kernel's futex, for loom: `wait_while` blocks while the check holds,
/// taking the bucket lock around the check as the kernel does; `wake`
/// takes the same lock, so it cannot fall between a check and the block.
#[cfg(gmp_loom)]
mod futex_model {
    use loom::sync::{Condvar, Mutex};

    #[derive(Debug)]
    pub(super) struct Bucket {
        lock: Mutex<()>,
        cv: Condvar,
    }

    impl Bucket {
        pub(super) fn new() -> Bucket {
            Bucket {
                lock: Mutex::new(()),
                cv: Condvar::new(),
            }
        }
        /// One FUTEX_WAIT: returns after one wake (or at once if `check`
        /// fails); the caller loops, as it must for spurious returns.
        pub(super) fn wait_while(&self, check: impl Fn() -> bool) {
            let g = self.lock.lock().unwrap();
            if check() {
                drop(self.cv.wait(g).unwrap());
            }
        }
        pub(super) fn wake(&self) {
            let _g = self.lock.lock().unwrap();
            self.cv.notify_one();
        }
    }
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wakeup_before_sleep_is_not_lost() {
        let n = Note::new();
        n.wakeup();
        n.sleep_and_clear();
        assert!(!n.sleep_timeout_and_clear(Duration::from_millis(1)));
    }

    #[test]
    fn timed_sleep_times_out_then_still_sees_a_later_wakeup() {
        let n = Note::new();
        let t0 = std::time::Instant::now();
        assert!(!n.sleep_timeout_and_clear(Duration::from_millis(20)));
        assert!(t0.elapsed() >= Duration::from_millis(20));
        // The withdrawn sleep left the note clear, not SLEEPING: a wake-up
        // now is remembered.
        n.wakeup();
        assert!(n.sleep_timeout_and_clear(Duration::ZERO));
    }

    #[test]
    fn clear_forgets_a_wakeup() {
        let n = Note::new();
        n.wakeup();
        n.clear();
        assert!(!n.sleep_timeout_and_clear(Duration::from_millis(1)));
    }

    #[test]
    fn timed_sleep_is_woken_early() {
        let n = Arc::new(Note::new());
        let n2 = n.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            n2.wakeup();
        });
        let t0 = std::time::Instant::now();
        assert!(n.sleep_timeout_and_clear(Duration::from_secs(60)));
        assert!(t0.elapsed() < Duration::from_secs(30));
        t.join().unwrap();
    }

    #[test]
    fn cross_thread_wakeups_all_arrive() {
        let n = Arc::new(Note::new());
        let ack = Arc::new(Note::new());
        let (n2, ack2) = (n.clone(), ack.clone());
        let t = std::thread::spawn(move || {
            for _ in 0..20_000 {
                n2.sleep_and_clear();
                ack2.wakeup();
            }
        });
        for _ in 0..20_000 {
            n.wakeup();
            assert!(
                ack.sleep_timeout_and_clear(Duration::from_secs(10)),
                "lost wake-up"
            );
        }
        t.join().unwrap();
    }

    #[test]
    fn many_wakers_one_sleeper_never_hangs() {
        let n = Arc::new(Note::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wakers: Vec<_> = (0..3)
            .map(|_| {
                let (n, stop) = (n.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n.wakeup();
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        for _ in 0..5_000 {
            assert!(
                n.sleep_timeout_and_clear(Duration::from_secs(10)),
                "a sleeper with wakers running was never woken"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in wakers {
            w.join().unwrap();
        }
    }
}
