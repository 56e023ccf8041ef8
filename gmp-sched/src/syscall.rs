//! Blocking calls (Go's `entersyscall` / `exitsyscall`).
//!
//! `blocking(f)` keeps the P with the M on the fast path (status `Syscall`,
//! free for the taking by CAS). If `f` takes long, sysmon retakes the P and
//! hands it to another M, so the other goroutines keep running. On return
//! the goroutine wins its old P back by CAS, or takes an idle one, or
//! queues itself globally and parks the M.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use gmp_g::Status;
use gmp_p::{PStatus, P};

use crate::proc::{acquirep, check_preempt, mcall_exit_syscall_no_p, mp, pidleget};
use crate::tls;

/// Runs `f`, which may block in the OS, without stalling other goroutines.
/// Outside a goroutine it just calls `f`.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let Some((m, s)) = tls::current() else {
        return f();
    };
    let Some(g) = m.curg() else { return f() };
    check_preempt();
    let rt = crate::preempt::RtSection::enter(m);
    let Some(p) = mp(m) else {
        drop(rt);
        return f();
    };
    // entersyscall: the P stays ours unless someone CASes it away.
    p.syscalltick.fetch_add(1, Ordering::Relaxed);
    m.oldp.store(p as *const P as *mut P, Ordering::Release);
    m.p.store(std::ptr::null_mut(), Ordering::Release);
    if g.status.cas(Status::Running, Status::Syscall).is_err() {
        panic!("gmp: entersyscall: bad status for goroutine {}", g.id());
    }
    s.nsyscall.fetch_add(1, Ordering::Relaxed);
    crate::trace::syscall(s, p.id, g, true);
    // Release: publishes the state above before the P can be taken.
    p.set_status(PStatus::Syscall);
    if s.gcwaiting.load(Ordering::SeqCst) && p.cas_status(PStatus::Syscall, PStatus::Gcstop) {
        // A stop-the-world is waiting for this P: give it now.
        if s.stopwait.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.stopnote.wakeup();
        }
    }
    drop(rt);
    let r = catch_unwind(AssertUnwindSafe(f));
    {
        let (m, _) = tls::current().expect("on an M");
        let _rt = crate::preempt::RtSection::enter(m);
        exitsyscall();
    }
    check_preempt();
    match r {
        Ok(v) => v,
        Err(e) => resume_unwind(e),
    }
}

/// Go's `exitsyscall`: get a P back before running Go code again.
pub(crate) fn exitsyscall() {
    // Re-read: we are on the same thread, but never cache TLS.
    let (m, s) = tls::current().expect("exitsyscall on an M");
    let g = m.curg().expect("exitsyscall in a goroutine");
    s.nsyscall.fetch_sub(1, Ordering::Relaxed);
    let oldp = m.oldp.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // Fast path: our old P is still waiting for us.
    if !oldp.is_null() {
        // SAFETY: oldp is a P of this Sched.
        let p = unsafe { &*oldp };
        if p.cas_status(PStatus::Syscall, PStatus::Running) {
            acquirep(s, m, p);
            if g.status.cas(Status::Syscall, Status::Running).is_err() {
                panic!("gmp: exitsyscall: bad status for goroutine {}", g.id());
            }
            crate::trace::syscall(s, p.id, g, false);
            return;
        }
    }
    // Any idle P (unless the world is stopping).
    if !s.gcwaiting.load(Ordering::SeqCst) {
        let p = {
            let mut l = s.locked();
            pidleget(s, &mut l)
        };
        if let Some(p) = p {
            acquirep(s, m, p);
            if g.status.cas(Status::Syscall, Status::Running).is_err() {
                panic!("gmp: exitsyscall: bad status for goroutine {}", g.id());
            }
            return;
        }
    }
    // No P: queue the goroutine and park this M (Go's exitsyscall0).
    mcall_exit_syscall_no_p(g);
}
