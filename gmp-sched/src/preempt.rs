//! Preemption: the cooperative flag and the forced handoff of a P held by
//! an M stuck in user code. The protocol and its proof are in
//! `gmp-sysmon/DESIGN.md`; this file is the mechanism.
//!
//! * [`preemptone`] (Go's `preemptone`): sets the G's `preempt` flag,
//!   honoured at the next runtime entry ([`crate::check_preempt`]), and
//!   sends `SIGURG` to the M.
//! * The `SIGURG` handler runs on the M's own thread. If the M is in user
//!   code (`M::in_user`, written only by that thread) and the goroutine
//!   running there is the one asked (its `preempt` flag is still set: a late
//!   signal must not hit the next slice's goroutine) it *detaches* the P:
//!   the P becomes `Syscall` exactly as if the goroutine had entered
//!   `gmp::blocking`, and sysmon hands it to another M on its next tick.
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

extern "C" fn sigurg_handler(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    let Some((m, s)) = tls::current() else { return };
    // Relaxed is enough: in_user and p are written by this very thread, and
    // the compiler fences around every write order them against us.
    if !m.in_user.load(Ordering::Relaxed) {
        return;
    }
    let p = m.p.load(Ordering::Relaxed);
    if p.is_null() {
        return;
    }
    // Go's `wantAsyncPreempt`: act only for the goroutine that was asked.
    // The signal is not addressed to a goroutine: `preemptone` sets the flag
    // and then signals, and a goroutine that enters the runtime in between
    // honours the flag (clearing it) and the P starts a new slice with
    // another goroutine — which the late signal must leave alone. (Measured:
    // in `ping_pong_hog_shares_time` about half the light pair's
    // preemptions, whose goroutine sees the flag within a microsecond,
    // detached the hog that took over 0.2 ms into its fresh slice, so the hog
    // pair got ~1 ms per light 15 ms slice: hog/light 0.3-0.5.)
    // Relaxed: preemptone's store precedes its pthread_kill, and the kernel
    // delivers the signal after that syscall; `execute` and `check_preempt`
    // clear the flag on this very thread.
    match m.curg() {
        Some(g) if g.preempt.load(Ordering::Relaxed) => {}
        _ => return,
    }
    // SAFETY: M::p holds a P of this M's scheduler, which outlives the M.
    let pr: &P = unsafe { &*p };
    m.p.store(std::ptr::null_mut(), Ordering::Release);
    m.oldp.store(p, Ordering::Release);
    m.p_detached.store(true, Ordering::Relaxed);
    pr.m.store(0, Ordering::Release);
    // A new "blocking call" for sysmon's bookkeeping: it must see a fresh
    // syscalltick, or it would retake at once on a stale observation.
    pr.syscalltick.fetch_add(1, Ordering::Relaxed);
    // Release: the P is up for grabs from here on (sysmon's retake CAS).
    pr.set_status(PStatus::Syscall);
    s.counters.forced_handoffs.fetch_add(1, Ordering::Relaxed);
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
