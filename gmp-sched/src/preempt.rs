//! Preemption: the cooperative flag and the forced handoff of a P held by
//! an M stuck in user code. The protocol and its proof are in
//! `gmp-sysmon/DESIGN.md`; this file is the mechanism.
//!
//! * [`preemptone`] (Go's `preemptone`): sets the G's `preempt` flag,
//!   honoured at the next runtime entry ([`crate::check_preempt`]), and
//!   sends `SIGURG` to the M.
//! * `arm_alarm`: before a goroutine runs, the M's own alarm (a POSIX
//!   timer signalling its thread, `gmp_m::Alarm`) is set for the P's
//!   earliest timer, so a goroutine that never yields is cut at the timer's
//!   deadline by its own thread's signal, without waiting for the OS to run
//!   sysmon.
//! * The `SIGURG` handler runs on the M's own thread. If the M is in user
//!   code (`M::in_user`, written only by that thread) and the goroutine
//!   running there is the one asked (its `preempt` flag is still set: a late
//!   signal must not hit the next slice's goroutine) it *detaches* the P:
//!   the P goes straight to the reserve M (`Sched::spare_m`, claimed by
//!   one atomic swap) when work waits for it, or else becomes `Syscall`
//!   exactly as if the goroutine had entered `gmp::blocking`, and sysmon
//!   hands it to another M on its next tick.
//!   If the M is in the runtime, the handler does nothing: the flag will be
//!   seen at a safe point. The handler never switches stacks.
//! * The hog, at its next runtime entry, gets a P back exactly like a
//!   goroutine returning from a blocking call (`reacquire_after_forced_handoff`).

use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Once;

use gmp_g::{GRef, Status};
use gmp_m::M;
use gmp_p::{PStatus, P};

use crate::sched::Sched;
use crate::tls;

/// The signal used for preemption (Go uses SIGURG too: rarely used by
/// programs, and ignored by default if it leaks to a non-M thread).
pub const PREEMPT_SIGNAL: libc::c_int = libc::SIGURG;

static INSTALL: Once = Once::new();

pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: a valid sigaction with an async-signal-safe handler;
        // SA_RESTART keeps interrupted system calls transparent to user code
        // (and Rust's std retries EINTR where it does not apply).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = sigurg_handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(PREEMPT_SIGNAL, &sa, std::ptr::null_mut());
        }
    });
}

/// How long a goroutine must have run without a switch before its M's
/// alarm takes the P from it for an overdue timer: 1 ms (sysmon's
/// contended slice).
pub const ALARM_MIN_RUN_NS: u64 = 1_000_000;
/// How long a timer must have been overdue before the alarm acts: 10 µs.
/// Every pass through the scheduler runs the P's due timers, so a timer
/// overdue this long means the goroutine has not switched for that long;
/// a goroutine that switches often (a ping-pong pair sharing an inherited
/// slice) is left alone.
pub const ALARM_GRACE_NS: u64 = 10_000;
/// How long the thread of a goroutine that lost its P by force sleeps, at
/// most, inside the signal handler while work waits for the P: 1 ms.
pub const HANDOFF_NAP_MAX_NS: u64 = 1_000_000;
/// One nap step while waiting for the P to be taken: 20 µs.
const HANDOFF_NAP_STEP_NS: libc::c_long = 20_000;

/// Before a goroutine runs: make sure the M's alarm fires no later than the
/// P's earliest timer plus [`ALARM_GRACE_NS`] (but not before the goroutine
/// had [`ALARM_MIN_RUN_NS`]). One relaxed load when nothing changed; a
/// `timer_settime` only when the earliest timer moved earlier or the alarm
/// fired since.
#[inline]
pub(crate) fn arm_alarm(s: &Sched, m: &M, p: &P) {
    let when = p.timers.next_when();
    if when == u64::MAX {
        return;
    }
    let armed = m.alarm_for.load(Ordering::Relaxed);
    if armed != 0 && when >= armed {
        return;
    }
    arm_alarm_slow(s, m, when);
}

#[cold]
fn arm_alarm_slow(s: &Sched, m: &M, when: u64) {
    let now = s.nanotime();
    let at = when
        .saturating_add(ALARM_GRACE_NS)
        .max(now + ALARM_MIN_RUN_NS);
    // u64::MAX: the kernel gave us no timer; do not ask again.
    let armed = if m.alarm.arm_in(at - now, PREEMPT_SIGNAL, true) {
        when
    } else {
        u64::MAX
    };
    m.alarm_for.store(armed, Ordering::Relaxed);
}

extern "C" fn sigurg_handler(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // The handler makes system calls (futex, nanosleep, sched_setattr)
    // that may set errno: the interrupted code must find its own.
    // SAFETY: __errno_location returns this thread's errno slot, valid for
    // the thread's lifetime.
    let errno = unsafe { *libc::__errno_location() };
    preempt_signal(info);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn preempt_signal(info: *mut libc::siginfo_t) {
    let Some((m, s)) = tls::current() else { return };
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let alarm = !info.is_null() && unsafe { (*info).si_code } == libc::SI_TIMER;
    if alarm {
        // Fired: the next `execute` re-arms (owner-only word: only this
        // thread and its handler write it).
        m.alarm_for.store(0, Ordering::Relaxed);
    }
    // Relaxed is enough: in_user and p are written by this very thread, and
    // the compiler fences around every write order them against us.
    if !m.in_user.load(Ordering::Relaxed) {
        return;
    }
    let p = m.p.load(Ordering::Relaxed);
    if p.is_null() {
        return;
    }
    // SAFETY: M::p holds a P of this M's scheduler, which outlives the M.
    let pr: &P = unsafe { &*p };
    let Some(g) = m.curg() else { return };
    if alarm {
        // The M's alarm (armed by `execute` for the P's earliest timer): if
        // that timer is overdue while a goroutine holds the P in user code,
        // the goroutine is a hog for the timer's purposes; take the P.
        // Otherwise the timer it was armed for has run: re-arm for the next.
        if !s.preempts() || pr.status() != PStatus::Running {
            return;
        }
        let when = pr.timers.next_when();
        if when == u64::MAX {
            return;
        }
        // Due: the timer overdue by the grace, and the goroutine running
        // without a switch for at least the minimum run (stamped by
        // `execute` at every resume, from a clock the scheduler refreshed
        // while running the P's timers). Not the slice start: a `runnext`
        // chain (a ping-pong pair, echo handlers) inherits one slice across
        // thousands of switches and is no hog.
        let now = s.nanotime();
        let start = m.run_start.load(Ordering::Relaxed);
        let due = when
            .saturating_add(ALARM_GRACE_NS)
            .max(start.saturating_add(ALARM_MIN_RUN_NS));
        if now < due {
            if m.alarm.arm_in(due - now, PREEMPT_SIGNAL, false) {
                m.alarm_for.store(when, Ordering::Relaxed);
            }
            return;
        }
        g.preempt.store(true, Ordering::Relaxed);
        pr.preempt.store(true, Ordering::Relaxed);
        s.counters.preempt_requests.fetch_add(1, Ordering::Relaxed);
        s.counters.alarm_preempts.fetch_add(1, Ordering::Relaxed);
    } else if !g.preempt.load(Ordering::Relaxed) {
        // Go's `wantAsyncPreempt`: act only for the goroutine that was asked.
        // The signal is not addressed to a goroutine: `preemptone` sets the
        // flag and then signals, and a goroutine that enters the runtime in
        // between honours the flag (clearing it) and the P starts a new
        // slice with another goroutine — which the late signal must leave
        // alone. (Measured: in `ping_pong_hog_shares_time` about half the
        // light pair's preemptions, whose goroutine sees the flag within a
        // microsecond, detached the hog that took over 0.2 ms into its fresh
        // slice, so the hog pair got ~1 ms per light 15 ms slice: hog/light
        // 0.3-0.5.) Relaxed: preemptone's store precedes its pthread_kill,
        // and the kernel delivers the signal after that syscall; `execute`
        // and `check_preempt` clear the flag on this very thread.
        return;
    }
    m.p.store(std::ptr::null_mut(), Ordering::Release);
    m.p_detached.store(true, Ordering::Relaxed);
    pr.m.store(0, Ordering::Release);
    s.counters.forced_handoffs.fetch_add(1, Ordering::Relaxed);
    let tick = pr.syscalltick.load(Ordering::Relaxed);
    let waits = work_waits(s, pr);
    if waits && handoff_to_spare_m(s, pr) {
        // The P is on its way to another M (still `Running`, no M yet):
        // nobody else may take it, and the hog will find `oldp` empty when
        // it next enters the runtime and look for a P like any goroutine
        // back from a blocking call.
        nap_until_taken(s, pr, tick);
        return;
    }
    m.oldp.store(p, Ordering::Release);
    pr.detached.store(true, Ordering::Relaxed);
    // A new "blocking call" for sysmon's bookkeeping: it must see a fresh
    // syscalltick, or it would retake at once on a stale observation.
    let tick = pr
        .syscalltick
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1);
    // Release: the P is up for grabs from here on (sysmon's retake CAS).
    pr.set_status(PStatus::Syscall);
    if alarm {
        // Nobody asked for this hand-off: wake sysmon to retake the P now
        // rather than at its next planned look. (A signal from sysmon's
        // own `preemptone` needs no wake: sysmon is waiting for it.)
        // Note::wakeup is an atomic swap and at most one futex call:
        // async-signal-safe.
        s.sysmon_note.wakeup();
    }
    if waits {
        nap_until_taken(s, pr, tick);
    }
}

/// Whether work waits for the P this handler is taking: goroutines on its
/// queue or the global queue, or an overdue timer on it.
fn work_waits(s: &Sched, pr: &P) -> bool {
    pr.runq_len() > 0
        || pr.timers.next_when() <= s.nanotime()
        || s.runqsize.load(Ordering::Relaxed) > 0
}

/// The direct hand-off: from the signal handler, give the P this M just
/// let go of (still `Running`, owned by nobody else) to the reserve M
/// (`Sched::spare_m`), as `startm_urgent` would, without waiting for
/// sysmon's thread to get a CPU. Returns false, leaving the P untouched,
/// when the slot is empty or the world is stopping (the stopper collects
/// `Syscall` Ps itself).
///
/// Async-signal-safe: the claim is one atomic swap, the rest are atomic
/// stores, `sched_setattr` and at most one `futex` wake. The claimed M
/// refills the slot once it runs (`M::refill_spare`): that needs the
/// scheduler lock, and perhaps a new thread, neither of which a handler
/// may take.
fn handoff_to_spare_m(s: &Sched, pr: &P) -> bool {
    if s.gcwaiting.load(Ordering::SeqCst) || s.is_shutdown() {
        return false;
    }
    let Some(nm) = crate::proc::take_spare_m(s) else {
        return false;
    };
    // Both before `nextp` is published: the M reads them once it has the P.
    nm.refill_spare.store(true, Ordering::Relaxed);
    s.counters.direct_handoffs.fetch_add(1, Ordering::Relaxed);
    crate::proc::wake_with_p(s, nm, pr, false, true);
    true
}

/// After a forced hand-off, while work waits for the P: keep this thread
/// off its CPU until another M runs on the P (at most
/// [`HANDOFF_NAP_MAX_NS`]).
///
/// The hog goes on running on this thread without a P; on a machine whose
/// CPUs all run hogs, the M that takes the P (and sysmon, which hands it
/// over) would otherwise wait for the OS to preempt a hog thread, up to a
/// scheduler tick (4 ms at 250 Hz) or more. A napping thread leaves its CPU
/// idle, and an idle CPU runs (or pulls from a busy one) the woken thread at
/// once. Async-signal-safe: atomics, the vDSO clock and `nanosleep`.
fn nap_until_taken(s: &Sched, pr: &P, tick: u32) {
    let start = s.nanotime();
    loop {
        // Taken means running on another M, not just retaken: the M it is
        // handed to still has to get a CPU, and ours is the one to give.
        let handing_over = match pr.status() {
            PStatus::Syscall => pr.syscalltick.load(Ordering::Relaxed) == tick,
            PStatus::Running => pr.m.load(Ordering::Relaxed) == 0,
            _ => false,
        };
        if !handing_over {
            return;
        }
        if s.nanotime().saturating_sub(start) >= HANDOFF_NAP_MAX_NS {
            return;
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: HANDOFF_NAP_STEP_NS,
        };
        // SAFETY: a valid relative timespec; the remainder pointer may be
        // null. nanosleep is async-signal-safe.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
}

/// A stretch of runtime code on a goroutine stack that touches the P: while
/// it lives the signal handler leaves the P alone.
///
/// A section may span a switch (exitsyscall can park the goroutine): the
/// exit re-reads the current M rather than keeping the one it entered on.
pub(crate) struct RtSection {
    prev: bool,
}

impl RtSection {
    #[inline]
    pub(crate) fn enter(m: &M) -> RtSection {
        let prev = m.in_user.load(Ordering::Relaxed);
        m.in_user.store(false, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        RtSection { prev }
    }
}

impl Drop for RtSection {
    #[inline]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        if let Some((m, _)) = tls::current() {
            m.in_user.store(self.prev, Ordering::Relaxed);
        }
    }
}

/// Go's `preemptone`: ask the goroutine running on `p` to yield, and signal
/// its M so that a goroutine that never enters the runtime loses the P.
pub fn preemptone(s: &Sched, p: &P) -> bool {
    let m = p.m.load(Ordering::Acquire);
    if m == 0 {
        return false;
    }
    // SAFETY: P::m holds the address of a live M of this scheduler (Ms are
    // kept in allm until the scheduler is dropped).
    let m: &M = unsafe { &*(m as *const M) };
    let Some(g) = m.curg() else { return false };
    g.preempt.store(true, Ordering::Release);
    p.preempt.store(true, Ordering::Release);
    s.counters.preempt_requests.fetch_add(1, Ordering::Relaxed);
    if s.preempts() {
        let t = m.thread.load(Ordering::Acquire);
        if t != 0 {
            // SAFETY: t is the pthread_t of a live M thread (Ms only exit at
            // shutdown, after sysmon and every preempter stopped).
            unsafe { libc::pthread_kill(t as libc::pthread_t, PREEMPT_SIGNAL) };
        }
    }
    true
}

/// The hog entered the runtime after losing its P: get one back like a
/// goroutine returning from a blocking call (may park the goroutine).
pub(crate) fn reacquire_after_forced_handoff(s: &Sched, m: &'static M, g: GRef) {
    let _rt = RtSection::enter(m);
    if !m.p_detached.swap(false, Ordering::Relaxed) {
        return;
    }
    if g.status.cas(Status::Running, Status::Syscall).is_err() {
        panic!("gmp: forced handoff: bad status for goroutine {}", g.id());
    }
    s.nsyscall.fetch_add(1, Ordering::Relaxed);
    crate::syscall::exitsyscall();
}

/// On g0 after a switch: if the P was detached while the G ran, try to take
/// it straight back (the G is no longer running, so there is no hog).
pub(crate) fn reattach_on_g0(s: &Sched, m: &M) {
    // Only this M's own signal handler sets the flag, and only while
    // `in_user` (cleared before we got here): a plain load that reads false
    // cannot miss a later set, and saves a locked `xchg` on every switch.
    if !m.p_detached.load(Ordering::Relaxed) || !m.p_detached.swap(false, Ordering::Relaxed) {
        return;
    }
    let oldp = m.oldp.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if oldp.is_null() {
        return;
    }
    // SAFETY: oldp is a P of this scheduler.
    let p = unsafe { &*oldp };
    if p.cas_status(PStatus::Syscall, PStatus::Running) {
        crate::proc::acquirep(s, m, p);
    }
}
