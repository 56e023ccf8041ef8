//! The M's alarm: a POSIX timer that signals the M's own thread.
//!
//! Sysmon notices a goroutine that holds a P past a timer's deadline only
//! when the OS runs sysmon, and with hogs on every CPU that can take a
//! scheduler tick or more. A timer created with `SIGEV_THREAD_ID` instead
//! makes the kernel interrupt the hog's own thread, which is on a CPU by
//! definition, at the deadline itself: the scheduler arms it (at most one
//! `timer_settime` per change of the P's earliest timer) before it runs a
//! goroutine, and the preemption signal handler (in `gmp-sched`) treats an
//! alarm that finds an overdue timer on the running P as a preemption
//! request. The protocol is in `gmp-sysmon/DESIGN.md`.
//!
//! Owner-only: the timer targets the thread that created it, so
//! [`Alarm::arm_in`] creates it on first use from the M's own thread, and
//! only that thread (or its signal handler) arms it. All state is atomic,
//! so a call from the wrong thread only misdirects a signal, which the
//! handler ignores.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A per-thread one-shot timer delivering a signal to its creator thread.
#[derive(Debug)]
pub struct Alarm {
    /// The kernel timer (`timer_t`) plus one (glibc's first timer is 0),
    /// 0 until first armed or if the kernel refused to create one.
    timer: AtomicUsize,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm::new()
    }
}

impl Alarm {
    /// No timer yet.
    pub const fn new() -> Alarm {
        Alarm {
            timer: AtomicUsize::new(0),
        }
    }

    /// Whether the kernel timer exists (it is created by the first
    /// [`arm_in`](Self::arm_in)).
    pub fn exists(&self) -> bool {
        self.timer.load(Ordering::Relaxed) != 0
    }

    /// Arms the alarm to send `signal` to the calling thread in `ns`
    /// nanoseconds (at least 1), replacing any earlier setting. The first
    /// call creates the timer for the calling thread. Async-signal-safe once
    /// the timer exists (`timer_settime` is); `create` false never creates
    /// one (for use inside a signal handler). Returns whether it is armed.
    pub fn arm_in(&self, ns: u64, signal: libc::c_int, create: bool) -> bool {
        let mut t = self.timer.load(Ordering::Relaxed);
        if t == 0 {
            if !create {
                return false;
            }
            match create_thread_timer(signal) {
                Some(nt) => {
                    t = (nt as usize).wrapping_add(1);
                    self.timer.store(t, Ordering::Relaxed);
                }
                None => return false,
            }
        }
        let t = t.wrapping_sub(1) as libc::timer_t;
        let ns = ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `t` is a timer this Alarm created and has not deleted
        // (deletion clears the field first and happens only on the owner
        // thread at exit); `spec` is a valid relative one-shot setting and
        // the old-value pointer may be null.
        unsafe { libc::timer_settime(t, 0, &spec, std::ptr::null_mut()) == 0 }
    }

    /// Disarms the alarm (keeps the timer for the next [`arm_in`](Self::arm_in)).
    pub fn disarm(&self) {
        let t = self.timer.load(Ordering::Relaxed);
        if t == 0 {
            return;
        }
        // SAFETY: an all-zero itimerspec disarms; the timer is live as in
        // arm_in.
        unsafe {
            let spec: libc::itimerspec = std::mem::zeroed();
            libc::timer_settime(
                t.wrapping_sub(1) as libc::timer_t,
                0,
                &spec,
                std::ptr::null_mut(),
            );
        }
    }

    /// Disarms and deletes the kernel timer (the M's thread is exiting).
    pub fn delete(&self) {
        let t = self.timer.swap(0, Ordering::Relaxed);
        if t != 0 {
            // SAFETY: `t - 1` came from timer_create and was swapped out
            // above, so it is deleted exactly once and never armed again.
            unsafe { libc::timer_delete(t.wrapping_sub(1) as libc::timer_t) };
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `timer_create(CLOCK_MONOTONIC)` notifying the calling thread by `signal`.
fn create_thread_timer(signal: libc::c_int) -> Option<*mut libc::c_void> {
    // SAFETY: sigevent is plain old data; all-zero is a valid start value.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_THREAD_ID;
    sev.sigev_signo = signal;
    // SAFETY: gettid has no preconditions.
    sev.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut t: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `sev` is a fully initialised sigevent naming this thread and
    // `t` is a valid out-pointer.
    let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut t) };
    (r == 0).then_some(t)
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static HITS: AtomicUsize = AtomicUsize::new(0);
    static TIMER_CODE: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_sig(_s: libc::c_int, info: *mut libc::siginfo_t, _c: *mut libc::c_void) {
        HITS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        if unsafe { (*info).si_code } == libc::SI_TIMER {
            TIMER_CODE.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn alarm_signals_its_own_thread_once() {
        let sig = libc::SIGRTMIN() + 3;
        // SAFETY: installs a handler that only touches atomics.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sig as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
        }
        let a = Alarm::new();
        assert!(
            !a.arm_in(1_000, sig, false),
            "no timer may be created inside a handler"
        );
        assert!(!a.exists());
        assert!(a.arm_in(2_000_000, sig, true));
        assert!(a.exists());
        let t0 = std::time::Instant::now();
        while HITS.load(Ordering::SeqCst) == 0 && t0.elapsed() < std::time::Duration::from_secs(5) {
            std::hint::spin_loop();
        }
        assert_eq!(HITS.load(Ordering::SeqCst), 1, "one-shot alarm fired once");
        assert_eq!(
            TIMER_CODE.load(Ordering::SeqCst),
            1,
            "si_code says SI_TIMER"
        );
        assert!(t0.elapsed() >= std::time::Duration::from_millis(2));
        // Re-arming replaces: two settings, one signal.
        assert!(a.arm_in(50_000_000, sig, true));
        assert!(a.arm_in(1_000_000, sig, true));
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert_eq!(HITS.load(Ordering::SeqCst), 2);
        // A disarmed alarm stays silent.
        assert!(a.arm_in(5_000_000, sig, true));
        a.disarm();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(HITS.load(Ordering::SeqCst), 2);
        a.delete();
        assert!(!a.exists());
        assert!(!a.arm_in(1_000, sig, false));
    }
}
