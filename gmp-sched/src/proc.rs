//! The scheduler loop and the primitives every blocking operation builds
//! on. Names follow Go's `proc.go`; DESIGN.md argues why nothing is lost.

use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use gmp_g::{GRef, Status, WaitReason, G};
use gmp_m::M;
use gmp_p::{PStatus, P};
use gmp_stack::switch::{Context, Transfer};

use crate::preempt::RtSection;
use crate::sched::Sched;
use crate::tls;

/// Why a goroutine switched back to its M's scheduler (Go's `mcall`
/// targets: `park_m`, `gosched_m`, `gopreempt_m`, `goexit0`, `exitsyscall0`).
pub(crate) enum Switch {
    /// `gopark`: call `unlockf(data, g)` after the G is `Waiting`.
    Park {
        unlockf: unsafe fn(*mut (), GRef) -> bool,
        data: *mut (),
    },
    /// `Gosched`: to the tail of the global queue.
    Gosched,
    /// Preempted: like `Gosched`, counted.
    Preempt,
    /// `goyield`: to the tail of the local queue.
    Yield,
    /// The goroutine returned.
    Goexit,
    /// Came back from a blocking call and found no P.
    ExitSyscallNoP,
}

/// Error from spawning a goroutine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// Not inside a runtime and no runtime given.
    NoRuntime,
    /// The runtime is shutting down.
    Shutdown,
    /// No memory for the goroutine's stack.
    Stack(gmp_stack::StackError),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::NoRuntime => write!(
                f,
                "gmp::go called outside a gmp runtime: start one with gmp::run or Runtime::block_on"
            ),
            SpawnError::Shutdown => write!(f, "the gmp runtime is shutting down"),
            SpawnError::Stack(e) => write!(f, "cannot allocate a goroutine stack: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

// ---------------------------------------------------------------------------
// Switching between a goroutine and its M's scheduler (g0).
// ---------------------------------------------------------------------------

/// Switches from the running goroutine `g` to its M's scheduler, handing it
/// `sw`. Returns when the goroutine is resumed, possibly on another M.
#[inline(never)]
fn mcall(g: GRef, sw: &Switch) {
    // SAFETY: we are running on g's stack, so the back context is ours.
    let back = unsafe { g.take_back() }.expect("running goroutine has a scheduler context");
    // Leaving user code: the preemption signal handler must not act now.
    // Whether we were in a runtime section travels with the G: the M that
    // resumes it (maybe another) restores exactly that, so a section that
    // parks and resumes elsewhere stays closed to the handler until it
    // ends (its drop restores the state it saw at entry).
    // The running G's M is in `G::m` (stored by execute before the resume
    // and not changed while the G runs): no thread-local lookup per switch.
    let mptr = g.m.load(Ordering::Relaxed) as *const M;
    // SAFETY: a running G's `m` is its live M (Ms live as long as the
    // scheduler), or 0 for a G not run by `execute` (never the case here).
    if let Some(m) = unsafe { mptr.as_ref() } {
        let was_user = m.in_user.load(Ordering::Relaxed);
        m.in_user.store(false, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        g.in_runtime.store(!was_user, Ordering::Relaxed);
    }
    // SAFETY: (1) `back` is the g0 context that resumed us and has not been
    // resumed since; (2) callers hold no thread-local reference across this
    // call (all TLS access goes through tls::current, re-read after).
    let (new_back, _) = unsafe { back.resume(sw as *const Switch as usize) };
    // SAFETY: we were just resumed by a scheduler on our own stack.
    unsafe { g.set_back(new_back) };
}

extern "C" fn goroutine_main(t: Transfer) -> ! {
    let (back, data) = Context::from_transfer(t);
    // SAFETY: the scheduler passes the G pointer it is resuming (execute).
    let g = unsafe { GRef::from_ptr(data as *mut G) };
    // SAFETY: we run on g's stack, first thing after the first resume.
    unsafe { g.set_back(back) };
    // The facade's wrapper catches the user's panic and delivers it to the
    // JoinHandle; this catch is the last line of defence so that no panic
    // ever unwinds into the extern "C" frame.
    // SAFETY: we are the thread running g.
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { g.run_entry() })) {
        report_panic(g, &*p);
        std::mem::forget(p);
    }
    goexit(g)
}

/// Prints an uncaught goroutine panic (Go prints and dies; we print and go on).
pub fn report_panic(g: GRef, p: &(dyn std::any::Any + Send)) {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_string());
    if let Some((_, s)) = tls::current() {
        s.counters.panics.fetch_add(1, Ordering::Relaxed);
    }
    eprintln!(
        "goroutine {} panicked: {msg} (the runtime continues; join the goroutine to handle it)",
        g.id()
    );
}

fn goexit(g: GRef) -> ! {
    mcall(g, &Switch::Goexit);
    unreachable!("a dead goroutine was resumed");
}

// ---------------------------------------------------------------------------
// The M thread.
// ---------------------------------------------------------------------------

impl Sched {
    /// Reports a thread-creation failure once on stderr (and every time
    /// through `tracing`): the runtime keeps going on the threads it has.
    fn thread_limit_warning(&self, msg: std::fmt::Arguments<'_>) {
        tracing::error!("{msg}");
        if !self.thread_limit_reported.swap(true, Ordering::Relaxed) {
            eprintln!("{msg}");
        }
    }

    /// Go's `newm`: creates an M thread, which will start by acquiring `p`.
    /// Fails (returning `false`) past the thread cap or when the OS refuses.
    pub(crate) fn newm(&self, p: Option<&'static P>, spinning: bool) -> bool {
        self.newm_with(p, spinning, true)
    }

    /// [`newm`](Self::newm); `warn` says whether reaching the thread cap is
    /// worth the one-time warning (not for a spare, which is optional).
    pub(crate) fn newm_with(&self, p: Option<&'static P>, spinning: bool, warn: bool) -> bool {
        let n = self.allm.lock().unwrap().len();
        if n >= self.max_threads.load(Ordering::Relaxed) {
            if !warn {
                return false;
            }
            self.thread_limit_warning(format_args!(
                "gmp: program exceeds the {}-thread limit; continuing on the existing threads",
                self.max_threads.load(Ordering::Relaxed)
            ));
            return false;
        }
        let id = self.mnext.fetch_add(1, Ordering::Relaxed);
        let m = Arc::new(M::new(id));
        m.spinning.store(spinning, Ordering::Relaxed);
        m.nextp.store(
            p.map(|p| p as *const P as *mut P)
                .unwrap_or(std::ptr::null_mut()),
            Ordering::Release,
        );
        let s = self.arc();
        let m2 = m.clone();
        self.allm.lock().unwrap().push(m.clone());
        match gmp_m::spawn_thread(id, move || mstart(s, m2)) {
            Ok(t) => {
                self.threads.lock().unwrap().push(t);
                true
            }
            Err(e) => {
                self.allm.lock().unwrap().retain(|x| !Arc::ptr_eq(x, &m));
                if !warn {
                    return false;
                }
                self.thread_limit_warning(format_args!(
                    "gmp: cannot create thread gmp-m{id}: {e}; continuing on the existing threads"
                ));
                false
            }
        }
    }
}

fn mstart(s: Arc<Sched>, m: Arc<M>) {
    let sp: &Sched = &s;
    tls::set_current(&*m as *const M, sp as *const Sched);
    m.bind_current_thread();
    gmp_m::set_timer_slack(crate::sched::THREAD_TIMER_SLACK_NS);
    gmp_stack::overflow::ensure_altstack();
    crate::preempt::install_handler();
    let np = m.nextp.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !np.is_null() {
        // SAFETY: nextp holds a P of this Sched, handed to us by startm.
        acquirep(sp, &m, unsafe { &*np });
    }
    schedule(sp, &m);
    // Exiting: give back the P if any.
    if let Some(p) = mp(&m) {
        releasep(&m);
        p.set_status(PStatus::Idle);
    }
    // The alarm's kernel timer names this thread: delete it with the thread.
    m.alarm.delete();
    tls::set_current(std::ptr::null(), std::ptr::null());
}

/// The P held by `m`.
#[inline]
pub(crate) fn mp(m: &M) -> Option<&'static P> {
    let p = m.p.load(Ordering::Acquire);
    // SAFETY: M::p holds null or a P of the M's Sched.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Go's `acquirep`: wire `p` to `m`. The P must be ours to take (from the
/// idle list, nextp, or a successful status CAS).
pub(crate) fn acquirep(_s: &Sched, m: &M, p: &'static P) {
    if p.detached.load(Ordering::Relaxed) {
        p.detached.store(false, Ordering::Relaxed);
    }
    p.set_status(PStatus::Running);
    p.m.store(m as *const M as usize, Ordering::Release);
    m.p.store(p as *const P as *mut P, Ordering::Release);
}

/// Go's `releasep`: unwire the P; the caller decides its next status.
pub(crate) fn releasep(m: &M) -> Option<&'static P> {
    let p = mp(m)?;
    p.m.store(0, Ordering::Release);
    m.p.store(std::ptr::null_mut(), Ordering::Release);
    Some(p)
}

/// Go's `schedule`, as a loop on the M's own stack (g0).
fn schedule(s: &Sched, m: &M) {
    loop {
        if m.exit.load(Ordering::Acquire) || s.is_shutdown() {
            return;
        }
        if m.refill_spare.load(Ordering::Relaxed) {
            // Taken from the reserve slot by a signal handler, which can
            // neither take the lock nor create a thread: refill the slot
            // for the next one. Here, after the goroutines the P was handed
            // over for have run, not before: a new thread costs a `clone`
            // and an `mmap` (measured: ~0.4 ms on the hand-off's critical
            // path when done right after waking).
            m.refill_spare.store(false, Ordering::Relaxed);
            refill_spare_m(s);
        }
        let lg = m.lockedg.load(Ordering::Acquire);
        if !lg.is_null() {
            // SAFETY: lockedg holds a live G of this Sched.
            let g = unsafe { GRef::from_ptr(lg) };
            if !stoplockedm(s, m) {
                return;
            }
            execute(s, m, g, false);
            continue;
        }
        let Some((g, inherit)) = findrunnable(s, m) else {
            return;
        };
        if m.spinning.load(Ordering::Relaxed) {
            resetspinning(s, m);
        }
        let lm = g.lockedm.load(Ordering::Acquire);
        if lm != 0 && lm != m as *const M as usize {
            startlockedm(s, m, g);
            continue;
        }
        execute(s, m, g, inherit);
    }
}

/// Go's `execute` and what its `mcall` targets do on return. Runs `g` until
/// it switches back, then finishes the switch (park, yield, exit).
fn execute(s: &Sched, m: &M, g: GRef, inherit: bool) {
    let mut inherit = inherit;
    loop {
        // Start the misses on the G's stack top now: they overlap with the
        // status CAS and the bookkeeping below instead of stalling the
        // resume (a ring of 1000 goroutines touches each stack once per lap;
        // measured: ring 1M hops -15 to -20 %, yield and pingpong unchanged
        // with three lines, yield slower with six).
        // SAFETY: the G came to us off a run queue (or back from a switch):
        // we own it, nobody stores or takes its context meanwhile.
        unsafe { g.prefetch_context() };
        let Some(p) = mp(m) else {
            // The P went away between findrunnable and here. Seen once
            // under forced hand-offs before `in_user` travelled with the G
            // (gmp-sysmon/DESIGN.md, case 5); not reached since. The G is
            // still Runnable: queue it for any M rather than kill this
            // thread with a panic (which hung the runtime).
            s.globrunqput(g);
            wakep(s);
            return;
        };
        if g.status.cas(Status::Runnable, Status::Running).is_err() {
            panic!(
                "gmp: execute: goroutine {} has status {:?}, not runnable",
                g.id(),
                g.status.get()
            );
        }
        // The clock is read only for sampled Gs (see Sched::sample_clock):
        // a clock read costs ~70 ns on some VMs, more than a switch.
        // A plain load (and a store only for sampled Gs): the G came to us
        // through a run queue, which ordered its stamp before; an `xchg`
        // here would cost a locked instruction on every switch.
        let since = g.runnable_since.load(Ordering::Relaxed);
        let now = if since != 0 {
            g.runnable_since.store(0, Ordering::Relaxed);
            let now = s.nanotime();
            s.latency.record(now.saturating_sub(since));
            now
        } else {
            s.coarse_nanotime()
        };
        m.curg.store(g.as_ptr(), Ordering::Release);
        g.m.store(m as *const M as usize, Ordering::Release);
        g.wait_since.store(0, Ordering::Relaxed);
        // Go's execute: a new time slice starts, so an older preemption
        // request is void (it would make the G yield twice: once by being
        // descheduled, once more at its next runtime entry).
        g.preempt.store(false, Ordering::Relaxed);
        if !inherit || !s.preempts() {
            // Only the P's owner writes schedtick (Go's plain `schedtick++`);
            // sysmon just reads it, so no locked read-modify-write.
            let t = p.schedtick.load(Ordering::Relaxed);
            p.schedtick.store(t.wrapping_add(1), Ordering::Relaxed);
            m.slice_start.store(now, Ordering::Relaxed);
        }
        m.run_start.store(now, Ordering::Relaxed);
        gmp_stack::set_current_goid(g.id(), s.stacks.stack_size());
        crate::trace::go_start(s, p.id, g);
        // SAFETY: the G is Running and owned by this M (CAS above); its
        // saved context was stored when it last switched out.
        let (ctx, fresh) = match unsafe { g.take_context() } {
            Some(ctx) => (ctx, false),
            // Never ran: it gets its stack now (newproc reserved one).
            None => {
                let stack = p.stack_get(&s.gfree, &s.stacks);
                // SAFETY: (1) we own the Running G, which never ran; (2) the
                // stack came off a free list or the allocator, so nothing
                // else uses it; goroutine_main catches every panic and never
                // returns.
                (unsafe { g.start(stack, goroutine_main) }, true)
            }
        };
        if s.preempts() {
            crate::preempt::arm_alarm(s, m, p);
        }
        // User code, unless the G switched out inside a runtime section
        // (see mcall): then the handler stays off until the section ends.
        m.in_user.store(
            fresh || !g.in_runtime.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        // SAFETY: (1) the context is resumed once; (2) g0 holds no TLS
        // reference across the switch.
        let (gctx, data) = unsafe { ctx.resume(g.as_ptr() as usize) };
        m.in_user.store(false, Ordering::Relaxed);
        // SAFETY: g just switched to us; we own its stack until we publish it.
        unsafe { g.set_context(gctx) };
        gmp_stack::set_current_goid(0, 0);
        m.curg.store(std::ptr::null_mut(), Ordering::Release);
        g.m.store(0, Ordering::Release);
        // SAFETY: data is the &Switch the goroutine passed to mcall; the G is
        // suspended, so its stack (holding the Switch) is intact. We copy it
        // out before anything can make the G runnable again.
        let sw = unsafe { std::ptr::read(data as *const Switch) };
        crate::preempt::reattach_on_g0(s, m);
        let p = mp(m);
        crate::trace::go_stop(s, p.map(|p| p.id).unwrap_or(0), g, &sw);
        match sw {
            Switch::Park { unlockf, data } => {
                if g.status.cas(Status::Running, Status::Waiting).is_err() {
                    panic!("gmp: park: bad status for goroutine {}", g.id());
                }
                // SAFETY: unlockf/data come from gopark, which guarantees the
                // pair is valid to call once on g0 (see gopark).
                if !unsafe { unlockf(data, g) } {
                    // Park aborted: run it again right away (Go's park_m).
                    if g.status.cas(Status::Waiting, Status::Runnable).is_ok() {
                        if mp(m).is_none() {
                            s.globrunqput(g);
                            wakep(s);
                            return;
                        }
                        inherit = true;
                        continue;
                    }
                }
                return;
            }
            Switch::Gosched | Switch::Preempt => {
                if matches!(sw, Switch::Preempt) {
                    s.counters.preemptions.fetch_add(1, Ordering::Relaxed);
                }
                make_runnable(s, g);
                if s.debug.migrate && g.lockedm.load(Ordering::Relaxed) == 0 {
                    migrate_handoff(s, m, g);
                    return;
                }
                s.globrunqput(g);
                wakep(s);
                return;
            }
            Switch::Yield => {
                make_runnable(s, g);
                if s.debug.migrate && g.lockedm.load(Ordering::Relaxed) == 0 {
                    migrate_handoff(s, m, g);
                    return;
                }
                if let Some(p) = p {
                    p.runq_put(g, false, &mut |x| s.globrunqput(x));
                } else {
                    s.globrunqput(g);
                    wakep(s);
                }
                return;
            }
            Switch::Goexit => {
                gdestroy(s, m, g);
                return;
            }
            Switch::ExitSyscallNoP => {
                if g.status.cas(Status::Syscall, Status::Runnable).is_err() {
                    panic!("gmp: exitsyscall0: bad status for goroutine {}", g.id());
                }
                g.runnable_since.store(s.sample_clock(), Ordering::Relaxed);
                s.globrunqput(g);
                wakep(s);
                if m.lockedg.load(Ordering::Acquire) == g.as_ptr() {
                    // Our locked G waits for a P; stoplockedm (at the top of
                    // schedule) parks us until someone hands one over.
                    return;
                }
                if mp(m).is_some() {
                    // reattach_on_g0 just won back the P a signal had
                    // detached from us: keep scheduling with it (it will
                    // find the G we queued) rather than park holding it.
                    return;
                }
                stopm(s, m);
                return;
            }
        }
    }
}

fn make_runnable(s: &Sched, g: GRef) {
    if g.status.cas(Status::Running, Status::Runnable).is_err() {
        panic!("gmp: gosched: bad status for goroutine {}", g.id());
    }
    g.runnable_since.store(s.sample_clock(), Ordering::Relaxed);
}

/// `GMP_DEBUG=migrate=1`: hand the yielding G to another M. We put it on
/// the global queue and give our P away to an idle M, then park ourselves.
fn migrate_handoff(s: &Sched, m: &M, g: GRef) {
    s.globrunqput(g);
    let Some(p) = releasep(m) else {
        // Our P was detached by a forced hand-off while g ran: whoever took
        // it may already have found the global queue empty and idled it,
        // so g needs a wakep like any other global put.
        wakep(s);
        return;
    };
    // Start (or wake) another M on our P; it will find g on the global queue.
    if !startm(s, Some(p), false) {
        // No other M could be had: keep running here.
        acquirep(s, m, p);
        return;
    }
    stopm(s, m);
}

fn gdestroy(s: &Sched, m: &M, g: GRef) {
    if g.status.cas(Status::Running, Status::Dead).is_err() {
        panic!("gmp: goexit: bad status for goroutine {}", g.id());
    }
    g.wait_reason.store(0, Ordering::Relaxed);
    g.preempt.store(false, Ordering::Relaxed);
    // Only the G itself (lock_os_thread) and we write lockedm, so a load
    // and a store, not a locked swap on every exit.
    if g.lockedm.load(Ordering::Relaxed) != 0 {
        g.lockedm.store(0, Ordering::Release);
        m.lockedg.store(std::ptr::null_mut(), Ordering::Release);
    }
    // Goroutine counts are per-P (owner-written, no shared cache line on
    // the spawn/exit path); without a P, the global adjustment counter.
    // SAFETY: the G is Dead and its M (us, on g0) owns it; it switched out
    // for the last time, so nothing runs on its stack.
    let stack = unsafe { g.take_stack() }.expect("an exiting goroutine has a stack");
    // Last touch of the G by its goroutine's side: from here a live
    // JoinHandle may recycle it (gmp_g::join). If the handle is gone, the
    // G is ours to recycle now.
    let recycle = g.join.exit();
    match mp(m) {
        Some(p) => {
            p.stats.bump_owner(&p.stats.exited);
            p.stack_put(stack, &s.gfree);
            if recycle {
                p.gfput(g, &s.gfree);
            }
        }
        None => {
            s.ngoroutine.fetch_sub(1, Ordering::AcqRel);
            s.gfree.put_stack(stack);
            if recycle {
                s.gfree.put(g);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Spinning, parking and waking Ms.
// ---------------------------------------------------------------------------

/// Go's `wakep`: start a spinning M if there is an idle P and nobody spins.
#[inline]
pub(crate) fn wakep(s: &Sched) {
    // SeqCst: the work we just published must be visible before we read
    // the spinning count (Dekker pairing with the spinning M's decrement
    // followed by its re-check; DESIGN.md, "the delicate dance").
    if s.npidle.load(Ordering::SeqCst) == 0 || s.nmspinning.load(Ordering::SeqCst) != 0 {
        return;
    }
    if s.nmspinning
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return;
    }
    let p = {
        let mut l = s.locked();
        let p = pidleget(s, &mut l);
        if p.is_none() {
            l.needspinning = true;
        }
        p
    };
    match p {
        Some(p) => {
            if !startm(s, Some(p), true) {
                s.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
        }
        None => {
            s.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Go's `startm`: run some M on `p` (an idle P if `None`). Returns false if
/// no P or no thread could be had (the P, if any, is back on the idle list).
pub(crate) fn startm(s: &Sched, p: Option<&'static P>, spinning: bool) -> bool {
    startm_with(s, p, spinning, false)
}

/// [`startm`] for a P that must run *now* (taken from a hog, or with
/// overdue timers): the M woken for it first asks the kernel for a short
/// slice (`gmp_m::request_slice_of`), so that it preempts a hog's thread on
/// whatever CPU it is woken onto instead of queueing behind it for up to a
/// scheduler tick. The M goes back to the default slice when it next parks.
pub(crate) fn startm_urgent(s: &Sched, p: &'static P) -> bool {
    startm_with(s, Some(p), false, true)
}

fn startm_with(s: &Sched, p: Option<&'static P>, spinning: bool, urgent: bool) -> bool {
    if s.sysmon_wait.load(Ordering::Relaxed) {
        s.sysmon_note.wakeup();
    }
    let mut l = s.locked();
    let p = match p {
        Some(p) => p,
        None => match pidleget(s, &mut l) {
            Some(p) => p,
            None => return false,
        },
    };
    // The idle list first: the reserve M (`spare_m`) is kept for the
    // preemption signal handler, which cannot take the lock.
    let popped = l.midle.pop();
    let nm: Option<&M> = match &popped {
        Some(nm) => Some(nm),
        None => take_spare_m(s),
    };
    if let Some(nm) = nm {
        if popped.is_some() {
            s.nmidle.fetch_sub(1, Ordering::Relaxed);
        }
        let took_last = l.midle.is_empty() && s.spare_m.load(Ordering::Acquire).is_null();
        drop(l);
        wake_with_p(s, nm, p, spinning, urgent);
        if took_last {
            ensure_spare_m(s);
        }
        return true;
    }
    drop(l);
    if s.newm(Some(p), spinning) {
        ensure_spare_m(s);
        return true;
    }
    // No thread for this P (thread cap or OS refusal): its queued Gs go to
    // the global queue, where any running M finds them, before it idles.
    // We hold the P (it is on no list and no M owns it), so draining it is
    // the owner's operation.
    let mut gs = Vec::new();
    p.runq_drain(&mut gs);
    for g in gs {
        s.globrunqput(g);
    }
    let mut l = s.locked();
    pidleput(s, &mut l, p);
    false
}

/// Keeps one M parked in reserve: called by `startm` when it took the last
/// idle M or had to create a thread, i.e. when the next `startm` would have
/// to create one.
///
/// Why: the `startm` that matters most for latency is the one that hands a
/// P taken from a hog (or from an M stuck in a blocking call) to another
/// M, often from sysmon or right after a signal, while every CPU runs a
/// hog. Waking a parked M costs one futex wake; creating one costs a
/// `clone`, a stack `mmap` and the new thread's first trip through the OS
/// scheduler, measured at 100-400 µs on a loaded 2-core VM (hog-latency:
/// 1 ms sleep resumed at 1.25-1.6 ms, of which the thread start was the
/// largest part). Here the thread is created by the caller after it
/// already woke (or created) the M it needed, so nobody waits for it.
///
/// Bound: a spare is created only while the idle list is empty, and at
/// most one is in flight (`spare_starting`, cleared when any M parks). The
/// Ms that are not idle hold a P, sit in a blocking call or in the blocking
/// netpoll, or are between giving up a P and parking, so the pool stays
/// within that count plus one, and never beyond the thread cap (a spare
/// past the cap is silently not made: it is an optimisation, not a need).
pub(crate) fn ensure_spare_m(s: &Sched) {
    // An M between giving up its P and parking may have parked since the
    // caller saw the idle list empty: then it is the spare.
    if s.nmidle.load(Ordering::Relaxed) != 0 || s.spare_starting.swap(true, Ordering::AcqRel) {
        return;
    }
    if !s.newm_with(None, false, false) {
        s.spare_starting.store(false, Ordering::Relaxed);
    }
}

/// Go's `stopm`: park this M on the idle list until it is handed a P.
pub(crate) fn stopm(s: &Sched, m: &M) {
    debug_assert!(mp(m).is_none(), "stopm holding a P");
    let armed = m.alarm_for.load(Ordering::Relaxed);
    if armed != 0 && armed != u64::MAX {
        // No goroutine to cut short while parked: a stray alarm would only
        // wake us for nothing.
        m.alarm.disarm();
        m.alarm_for.store(0, Ordering::Relaxed);
    }
    if m.short_slice.load(Ordering::Relaxed) {
        // Woken urgently with a short slice (startm_urgent): back to the
        // kernel's default now that the urgent work is done.
        m.short_slice.store(false, Ordering::Relaxed);
        gmp_m::request_slice_of(0, 0);
    }
    {
        let mut l = s.locked();
        // The reserve slot first, if it is empty (see `Sched::spare_m`).
        let me = m as *const M as *mut M;
        if s.spare_m
            .compare_exchange(
                std::ptr::null_mut(),
                me,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            l.midle.push(m_arc(s, m));
        }
        s.nmidle.fetch_add(1, Ordering::Relaxed);
        // The idle list is not empty any more: a spare may be made again
        // once it is (see ensure_spare_m).
        s.spare_starting.store(false, Ordering::Relaxed);
        crate::deadlock::checkdead(s, &l);
    }
    s.counters.mparks.fetch_add(1, Ordering::Relaxed);
    m.blocked.store(true, Ordering::Relaxed);
    loop {
        m.note.sleep_and_clear();
        let np = m.nextp.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !np.is_null() {
            m.blocked.store(false, Ordering::Relaxed);
            // SAFETY: whoever set nextp transferred that P to us.
            acquirep(s, m, unsafe { &*np });
            return;
        }
        if m.exit.load(Ordering::Acquire) || s.is_shutdown() {
            m.blocked.store(false, Ordering::Relaxed);
            let mut l = s.locked();
            let before = l.midle.len();
            l.midle.retain(|x| !std::ptr::eq(&**x, m));
            let me = m as *const M as *mut M;
            let in_slot = s
                .spare_m
                .compare_exchange(
                    me,
                    std::ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
            if in_slot || l.midle.len() != before {
                s.nmidle.fetch_sub(1, Ordering::Relaxed);
            }
            drop(l);
            // A claimer may have handed us a P since we looked: hold it,
            // so that the exit path (`mstart`) puts it back to `Idle` like
            // any P an exiting M holds.
            let np = m.nextp.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !np.is_null() {
                // SAFETY: whoever set nextp transferred that P to us.
                acquirep(s, m, unsafe { &*np });
            }
            return;
        }
    }
}

/// Hands `p` to `nm`, an idle M the caller took off the idle list or out
/// of the reserve slot, and wakes it; with `urgent`, first asks the kernel
/// for a short slice for it (see [`startm_urgent`]). Async-signal-safe
/// (atomic stores, `sched_getattr`/`sched_setattr`, at most one `futex`
/// wake): the preemption signal handler uses it too.
pub(crate) fn wake_with_p(s: &Sched, nm: &M, p: &P, spinning: bool, urgent: bool) {
    nm.spinning.store(spinning, Ordering::Relaxed);
    nm.nextp.store(p as *const P as *mut P, Ordering::Release);
    let slice = s.debug.thread_slice_ns();
    if urgent && slice != 0 {
        let tid = nm.tid.load(Ordering::Acquire);
        if tid != 0 && gmp_m::request_slice_of(tid, slice) {
            nm.short_slice.store(true, Ordering::Relaxed);
        }
    }
    nm.note.wakeup();
}

/// Claims the reserve M (`Sched::spare_m`) with one atomic swap: the
/// caller owns it (it is parked, or about to park, on its note) and must
/// hand it a P through `nextp` and wake it. Async-signal-safe.
pub(crate) fn take_spare_m(s: &Sched) -> Option<&M> {
    let m = s.spare_m.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if m.is_null() {
        return None;
    }
    s.nmidle.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: the slot holds only Ms of this scheduler, which `allm` keeps
    // alive until the scheduler is dropped.
    Some(unsafe { &*m })
}

/// After the signal handler took the reserve M: move an idle M from the
/// idle list into the empty slot (it keeps sleeping; only where it is
/// listed changes), or make a new spare if none is idle.
fn refill_spare_m(s: &Sched) {
    let mut l = s.locked();
    if !s.spare_m.load(Ordering::Acquire).is_null() {
        return;
    }
    let Some(nm) = l.midle.pop() else {
        drop(l);
        ensure_spare_m(s);
        return;
    };
    let ptr = Arc::as_ptr(&nm) as *mut M;
    // Under the lock nobody else fills the slot (stopm holds it too); the
    // handler only empties it. So the slot is still empty.
    s.spare_m.store(ptr, Ordering::Release);
}

fn m_arc(s: &Sched, m: &M) -> Arc<M> {
    s.allm
        .lock()
        .unwrap()
        .iter()
        .find(|x| std::ptr::eq(&***x, m))
        .cloned()
        .expect("M is registered")
}

/// Go's `pidleget`.
pub(crate) fn pidleget(s: &Sched, l: &mut crate::sched::Locked) -> Option<&'static P> {
    let p = l.pidle.pop()?;
    s.npidle.fetch_sub(1, Ordering::SeqCst);
    if !p.cas_status(PStatus::Idle, PStatus::Running) {
        // Only idle Ps live on the list.
        panic!("gmp: pidleget: P {} is {:?}", p.id, p.status());
    }
    Some(p)
}

/// Go's `pidleput`. Requires: the P's run queue is empty (or the world is
/// stopped and its Gs were moved).
pub(crate) fn pidleput(s: &Sched, l: &mut crate::sched::Locked, p: &'static P) {
    p.m.store(0, Ordering::Release);
    p.set_status(PStatus::Idle);
    l.pidle.push(p);
    s.npidle.fetch_add(1, Ordering::SeqCst);
}

/// Go's `resetspinning`: the last spinning M to find work wakes another.
fn resetspinning(s: &Sched, m: &M) {
    m.spinning.store(false, Ordering::Relaxed);
    let n = s.nmspinning.fetch_sub(1, Ordering::SeqCst);
    debug_assert!(n > 0, "negative nmspinning");
    wakep(s);
}

/// Go's `handoffp`: find an M for a P whose M is going away (blocking call,
/// locked M parking, sysmon retake).
pub(crate) fn handoffp(s: &Sched, p: &'static P) {
    // Work to do: start an M right away.
    if !p.runq_empty() || s.runqsize.load(Ordering::SeqCst) != 0 {
        if !startm(s, Some(p), false) {
            let mut l = s.locked();
            if p.status() != PStatus::Idle {
                pidleput(s, &mut l, p);
            }
        }
        return;
    }
    // Nobody spinning and no idle P: this P should look for work.
    if s.nmspinning.load(Ordering::SeqCst) + s.npidle.load(Ordering::SeqCst) == 0
        && s.nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        if !startm(s, Some(p), true) {
            s.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
        return;
    }
    let mut l = s.locked();
    if s.gcwaiting.load(Ordering::SeqCst) {
        p.set_status(PStatus::Gcstop);
        p.m.store(0, Ordering::Release);
        drop(l);
        if s.stopwait.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.stopnote.wakeup();
        }
        return;
    }
    if s.runqsize.load(Ordering::SeqCst) != 0 {
        drop(l);
        if !startm(s, Some(p), false) {
            let mut l = s.locked();
            pidleput(s, &mut l, p);
        }
        return;
    }
    // The last running P and nobody in netpoll: someone must poll.
    if s.npidle.load(Ordering::SeqCst) + 1 == s.gomaxprocs()
        && s.lastpoll.load(Ordering::SeqCst) != 0
        && (s.netpoll.waiters() > 0 || p.timers.next_when() != u64::MAX)
    {
        drop(l);
        if !startm(s, Some(p), false) {
            let mut l = s.locked();
            pidleput(s, &mut l, p);
        }
        return;
    }
    let when = p.timers.next_when();
    pidleput(s, &mut l, p);
    drop(l);
    if when != u64::MAX {
        crate::time::wake_netpoller(s, when);
    }
}

// ---------------------------------------------------------------------------
// findrunnable.
// ---------------------------------------------------------------------------

/// Go's `findRunnable`: blocks until there is a G to run. `None` on shutdown.
fn findrunnable(s: &Sched, m: &M) -> Option<(GRef, bool)> {
    'top: loop {
        if m.exit.load(Ordering::Acquire) || s.is_shutdown() {
            return None;
        }
        if s.gcwaiting.load(Ordering::SeqCst) {
            gcstopm(s, m);
            continue 'top;
        }
        let Some(p) = mp(m) else {
            // Woken without a P (should not happen); park again.
            stopm(s, m);
            continue 'top;
        };
        let now = if p.timers.next_when() != u64::MAX {
            let now = s.nanotime();
            p.timers.run_due(now);
            now
        } else {
            s.coarse_nanotime()
        };

        // Fairness: one G from the global queue every 61st tick.
        if p.schedtick.load(Ordering::Relaxed) % 61 == 0 && s.runqsize.load(Ordering::Relaxed) > 0 {
            if let Some(g) = s.globrunqget(p, 1) {
                return Some((g, false));
            }
        }
        if s.debug.randomize && m.fastrand() % 8 == 0 {
            if let Some(g) = s.globrunqget(p, 1) {
                return Some((g, false));
            }
        }
        if let Some(x) = p.runq_get() {
            return Some(x);
        }
        if let Some(g) = s.globrunqget(p, 0) {
            return Some((g, false));
        }
        // Non-blocking netpoll.
        if s.netpoll.waiters() > 0 && s.lastpoll.load(Ordering::SeqCst) != 0 {
            if let Some(g) = s.netpoll_inject(0, Some(p)) {
                return Some((g, false));
            }
        }
        // Steal.
        let procs = s.gomaxprocs();
        if m.spinning.load(Ordering::Relaxed)
            || 2 * s.nmspinning.load(Ordering::SeqCst)
                < procs.saturating_sub(s.npidle.load(Ordering::SeqCst))
        {
            if !m.spinning.load(Ordering::Relaxed) {
                m.spinning.store(true, Ordering::Relaxed);
                s.nmspinning.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(g) = steal_work(s, m, p, now) {
                return Some((g, false));
            }
            if !p.runq_empty() {
                // Stolen timers readied something onto our queue.
                continue 'top;
            }
        }

        // Nothing found: give up the P.
        {
            let mut l = s.locked();
            if s.gcwaiting.load(Ordering::SeqCst) {
                continue 'top;
            }
            if s.runqsize.load(Ordering::SeqCst) != 0 {
                drop(l);
                if let Some(g) = s.globrunqget(p, 0) {
                    return Some((g, false));
                }
                continue 'top;
            }
            if !m.spinning.load(Ordering::Relaxed) && l.needspinning {
                l.needspinning = false;
                m.spinning.store(true, Ordering::Relaxed);
                s.nmspinning.fetch_add(1, Ordering::SeqCst);
                continue 'top;
            }
            if !p.runq_empty() {
                continue 'top;
            }
            releasep(m);
            pidleput(s, &mut l, p);
        }

        let was_spinning = m.spinning.load(Ordering::Relaxed);
        if was_spinning {
            // The delicate dance: decrement, then re-check every source.
            m.spinning.store(false, Ordering::Relaxed);
            s.nmspinning.fetch_sub(1, Ordering::SeqCst);
            if s.runqsize.load(Ordering::SeqCst) != 0 {
                if let Some(p) = pidleget_spinning(s) {
                    acquirep(s, m, p);
                    m.spinning.store(true, Ordering::Relaxed);
                    s.nmspinning.fetch_add(1, Ordering::SeqCst);
                    continue 'top;
                }
            }
            if check_runqs_no_p(s) {
                if let Some(p) = pidleget_spinning(s) {
                    acquirep(s, m, p);
                    m.spinning.store(true, Ordering::Relaxed);
                    s.nmspinning.fetch_add(1, Ordering::SeqCst);
                    continue 'top;
                }
            }
        } else if s.runqsize.load(Ordering::SeqCst) != 0 {
            // Go checks the global queue and idles its P under one lock, and
            // its globrunqput takes that lock too. Ours is lock-free: a put
            // that landed after the check above read npidle before our
            // pidleput, so it woke nobody. We published our idle P (SeqCst)
            // before this load, so either we see the put here or the putter
            // saw our P in its wakep. (Found as a hang: every P idle, every
            // M asleep, main alone on the global queue.)
            let p = {
                let mut l = s.locked();
                pidleget(s, &mut l)
            };
            if let Some(p) = p {
                acquirep(s, m, p);
                continue 'top;
            }
        }

        // Earliest timer on any P.
        let mut poll_until = u64::MAX;
        for i in 0..s.gomaxprocs() {
            if let Some(q) = s.p(i) {
                poll_until = poll_until.min(q.timers.next_when());
            }
        }
        // Blocking netpoll: at most one M sleeps in epoll_wait, until the
        // next timer (Go's step q).
        if (s.netpoll.waiters() > 0 || poll_until != u64::MAX)
            && s.lastpoll.swap(0, Ordering::SeqCst) != 0
        {
            s.poll_until.store(poll_until, Ordering::SeqCst);
            let now = s.nanotime();
            let delay = if poll_until == u64::MAX {
                -1
            } else {
                poll_until.saturating_sub(now) as i64
            };
            let list = s.netpoll.poll(s, delay);
            s.poll_until.store(0, Ordering::SeqCst);
            s.lastpoll.store(s.nanotime().max(1), Ordering::SeqCst);
            let p = {
                let mut l = s.locked();
                pidleget(s, &mut l)
            };
            match p {
                None => {
                    s.inject_list(list, None);
                }
                Some(p) => {
                    acquirep(s, m, p);
                    let mut it = list.into_iter();
                    if let Some(g) = it.next() {
                        s.inject_list(it.collect(), Some(p));
                        return Some((g, false));
                    }
                    if was_spinning {
                        m.spinning.store(true, Ordering::Relaxed);
                        s.nmspinning.fetch_add(1, Ordering::SeqCst);
                    }
                    continue 'top;
                }
            }
        } else if poll_until != u64::MAX {
            crate::time::wake_netpoller(s, poll_until);
        }
        stopm(s, m);
    }
}

/// Go's `pidlegetSpinning`.
fn pidleget_spinning(s: &Sched) -> Option<&'static P> {
    let mut l = s.locked();
    let p = pidleget(s, &mut l);
    if p.is_none() {
        l.needspinning = true;
    }
    p
}

/// Go's `checkRunqsNoP`: does any P have queued work?
fn check_runqs_no_p(s: &Sched) -> bool {
    (0..s.gomaxprocs()).any(|i| s.p(i).map(|p| !p.runq_empty()).unwrap_or(false))
}

/// Go's `stealWork`: four passes over all Ps in random order; timers and
/// `runnext` only on the last pass.
fn steal_work(s: &Sched, m: &M, p: &'static P, now: u64) -> Option<GRef> {
    const STEAL_TRIES: usize = 4;
    let n = s.gomaxprocs();
    for pass in 0..STEAL_TRIES {
        let last = pass == STEAL_TRIES - 1;
        let start = (m.fastrand() as usize) % n;
        let stride = coprime_stride(n, m.fastrand() as usize);
        let mut pos = start;
        for _ in 0..n {
            if s.gcwaiting.load(Ordering::Relaxed) {
                return None;
            }
            let i = pos;
            pos = (pos + stride) % n;
            if i == p.id {
                continue;
            }
            let Some(victim) = s.p(i) else { continue };
            if last
                && victim.timers.next_when() <= now.max(s.coarse_nanotime())
                && victim.timers.run_due(s.nanotime()) > 0
            {
                if let Some((g, _)) = p.runq_get() {
                    return Some(g);
                }
            }
            // Idle Ps normally have empty queues; but a P whose hand-off
            // failed (thread cap) may sit idle with work: steal that too.
            if victim.runq_empty() {
                continue;
            }
            // SAFETY: scratch is used only here, on this M's own thread.
            let buf = unsafe { m.scratch() };
            buf.clear();
            victim.runq.steal_half(buf);
            if buf.is_empty() && last {
                if let Some(g) = steal_runnext(s, victim) {
                    buf.push(g);
                }
            }
            if let Some(g) = buf.pop() {
                p.stats
                    .steals
                    .fetch_add(buf.len() as u64 + 1, Ordering::Relaxed);
                for x in buf.drain(..) {
                    p.runq_put(x, false, &mut |y| s.globrunqput(y));
                }
                crate::trace::steal(s, p.id, victim.id);
                return Some(g);
            }
        }
    }
    None
}

/// How long a spinning M leaves a running victim's `runnext` alone before
/// taking it (see [`steal_runnext`]). 50 µs, not Go's literal 3: Go's
/// `usleep(3)` sleeps ~55 µs under Linux's default timer slack, and that is
/// the figure its behaviour was tuned on. With a literal 3 µs (our Ms run
/// with 1 µs slack, for the alarm) the spinner polled a ring's hand-offs
/// ~10× as often: 27-38k syscalls and 11-14k context switches per 1M ring
/// hops at 2 Ps, against 18k and 10k.
const RUNNEXT_BACKOFF: std::time::Duration = std::time::Duration::from_micros(50);

/// Steals a victim's runnext, giving a running victim [`RUNNEXT_BACKOFF`]
/// to run it itself first (Go's `runqgrab` back-off: a synchronous channel
/// op takes ~50 ns, so a readied G is usually run by its own P by then).
///
/// The back-off *sleeps*, as Go's `usleep(3)` does, rather than
/// busy-waiting: the M stays counted in `nmspinning` meanwhile, so the
/// victim's next `goready`/`wakep` (one per channel hand-off in a
/// ping-pong) is a no-op instead of a futex wake of an M that a short
/// busy-wait had let give up and sleep. Measured on the
/// channel workloads (2 Ps): futex calls per 1M select messages 59k -> 4k,
/// pingpong ~900 -> ~560 ns per round trip.
///
/// After the back-off only the G seen before it is taken (Go CASes the
/// `next` it read): if the victim ran it and readied another meanwhile, it
/// is busy, not stuck, and we look again (Go's `continue` in `runqgrab`,
/// which also re-reads the ring: if that filled, we return so the caller
/// steals half of it), staying a spinner, instead of pulling a chain of
/// hand-offs (a ring, a select fan-in) onto our P every few tens of µs.
fn steal_runnext(s: &Sched, victim: &P) -> Option<GRef> {
    loop {
        let seen = victim.runnext_ptr();
        if seen.is_null() || s.gcwaiting.load(Ordering::Relaxed) || s.is_shutdown() {
            return None;
        }
        if victim.status() != PStatus::Running {
            return victim.steal_runnext_if(seen);
        }
        std::thread::sleep(RUNNEXT_BACKOFF);
        if let Some(g) = victim.steal_runnext_if(seen) {
            return Some(g);
        }
        if !victim.runq.is_empty() {
            // Its ring filled meanwhile: let the caller steal half of it.
            return None;
        }
    }
}

fn coprime_stride(n: usize, r: usize) -> usize {
    if n <= 1 {
        return 1;
    }
    let mut k = r % n;
    for _ in 0..n {
        if k != 0 && gcd(k, n) == 1 {
            return k;
        }
        k = (k + 1) % n;
    }
    1
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Go's `gcstopm`: give the P to the world-stopper and park.
fn gcstopm(s: &Sched, m: &M) {
    if m.spinning.swap(false, Ordering::Relaxed) {
        s.nmspinning.fetch_sub(1, Ordering::SeqCst);
    }
    if let Some(p) = releasep(m) {
        p.set_status(PStatus::Gcstop);
        if s.stopwait.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.stopnote.wakeup();
        }
    }
    stopm(s, m);
}

// ---------------------------------------------------------------------------
// Locked goroutines.
// ---------------------------------------------------------------------------

/// Go's `stoplockedm`: our locked G is not runnable here; give the P away
/// and sleep until someone hands us a P with the G runnable. Returns false
/// on shutdown.
fn stoplockedm(s: &Sched, m: &M) -> bool {
    if let Some(p) = releasep(m) {
        handoffp(s, p);
    }
    s.nmidlelocked.fetch_add(1, Ordering::SeqCst);
    loop {
        m.note.sleep_and_clear();
        if m.exit.load(Ordering::Acquire) || s.is_shutdown() {
            s.nmidlelocked.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        let np = m.nextp.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !np.is_null() {
            s.nmidlelocked.fetch_sub(1, Ordering::SeqCst);
            // SAFETY: startlockedm transferred that P to us.
            acquirep(s, m, unsafe { &*np });
            return true;
        }
    }
}

/// Go's `startlockedm`: `g` is locked to another M: hand it our P.
fn startlockedm(s: &Sched, m: &M, g: GRef) {
    // SAFETY: lockedm holds the address of a live M of this Sched.
    let target = unsafe { &*(g.lockedm.load(Ordering::Acquire) as *const M) };
    let p = releasep(m).expect("startlockedm without a P");
    target
        .nextp
        .store(p as *const P as *mut P, Ordering::Release);
    target.note.wakeup();
    stopm(s, m);
}

// ---------------------------------------------------------------------------
// The user-facing primitives.
// ---------------------------------------------------------------------------

/// The goroutine running on this thread, if any.
#[inline]
pub fn current_g() -> Option<GRef> {
    let (m, _) = tls::current()?;
    m.curg()
}

/// Whether the caller runs on a goroutine.
#[inline]
pub fn in_goroutine() -> bool {
    current_g().is_some()
}

/// Runs `f` with the scheduler of the calling goroutine or M thread.
pub fn with_current_sched<R>(f: impl FnOnce(&'static Sched) -> R) -> Option<R> {
    tls::current().map(|(_, s)| f(s))
}

/// The scheduler of the calling goroutine or M thread.
pub fn current_sched() -> Option<Arc<Sched>> {
    tls::current().map(|(_, s)| s.arc())
}

/// Go's `newproc`: creates a goroutine running `f` and queues it in the
/// creator's `runnext` (the creator keeps running). From outside the
/// runtime it goes to the global queue.
///
/// The closure is stored inside the G when it is small (see
/// [`gmp_g::ENTRY_INLINE`]), so spawning allocates nothing.
#[inline]
pub fn newproc<F: FnOnce() + Send + 'static>(
    s: &Sched,
    f: F,
    loc: &'static Location<'static>,
) -> Result<GRef, SpawnError> {
    newproc_with(s, loc, false, move |_| f)
}

/// [`newproc`] with the entry closure built from the new G by `build`
/// (before the G is published). With `handle`, the G gets a join handle's
/// share of it (see [`gmp_g::join`]): its exit does not recycle it until
/// the handle is released ([`crate::join`]).
#[inline]
pub(crate) fn newproc_with<F, B>(
    s: &Sched,
    loc: &'static Location<'static>,
    handle: bool,
    build: B,
) -> Result<GRef, SpawnError>
where
    F: FnOnce() + Send + 'static,
    B: FnOnce(GRef) -> F,
{
    if s.is_shutdown() {
        return Err(SpawnError::Shutdown);
    }
    let cur = tls::current().filter(|(_, cs)| std::ptr::eq(*cs, s));
    // One runtime section over both halves: the P must stay ours from the
    // reservation to the run-queue put.
    let _rt = cur.map(|(m, _)| RtSection::enter(m));
    let local_p = cur.and_then(|(m, _)| mp(m));
    let g = newproc_g(s, local_p)?;
    g.join.reset(handle);
    // SAFETY: g is Idle (new) or Dead (from a free list), unpublished: ours.
    unsafe { g.prepare(build(g)) };
    newproc_publish(s, g, cur, local_p, loc);
    Ok(g)
}

type Current = Option<(&'static M, &'static Sched)>;

/// `newproc`'s first half: a stack reservation and an unpublished G.
/// Requires: `local_p` (if any) is held by the calling M, in a runtime
/// section.
fn newproc_g(s: &Sched, local_p: Option<&'static P>) -> Result<GRef, SpawnError> {
    // The G takes its stack when it first runs (execute); reserve it now so
    // that running out of stacks is reported here, to the spawner.
    match local_p {
        Some(p) => p.stack_reserve(&s.gfree, &s.stacks),
        None => s.stacks.reserve(1),
    }
    .map_err(SpawnError::Stack)?;
    let g = match local_p.and_then(|p| p.gfget(&s.gfree)).or_else(|| {
        let mut v = Vec::with_capacity(1);
        s.gfree.take(1, &mut v);
        v.pop()
    }) {
        Some(g) => g,
        None => {
            let g = GRef::alloc();
            s.allgs.lock().unwrap().push(g);
            g
        }
    };
    Ok(g)
}

/// `newproc`'s second half: names the prepared G and queues it.
/// Requires: as `newproc_g`.
fn newproc_publish(
    s: &Sched,
    g: GRef,
    cur: Current,
    local_p: Option<&'static P>,
    loc: &'static Location<'static>,
) {
    let parent = cur.and_then(|(m, _)| m.curg()).map(|g| g.id()).unwrap_or(0);
    let goid = match local_p {
        Some(p) => p.next_goid(&s.goidgen),
        None if !s.main_goid_taken.swap(true, Ordering::AcqRel) => 1,
        None => s.goidgen.fetch_add(1, Ordering::Relaxed),
    };
    g.goid.store(goid, Ordering::Relaxed);
    g.parent_goid.store(parent, Ordering::Relaxed);
    g.set_created_at(loc);
    g.sched.store(s as *const Sched as usize, Ordering::Release);
    g.lock_count.store(0, Ordering::Relaxed);
    g.lockedm.store(0, Ordering::Relaxed);
    g.param.store(0, Ordering::Relaxed);
    g.runnable_since.store(s.sample_clock(), Ordering::Relaxed);
    let from = g.status.get();
    if g.status.cas(from, Status::Runnable).is_err() {
        panic!("gmp: newproc: goroutine {} has a bad status", g.id());
    }
    match local_p {
        Some(p) => p.stats.bump_owner(&p.stats.spawned),
        None => {
            s.ngoroutine.fetch_add(1, Ordering::AcqRel);
            s.counters.spawned.fetch_add(1, Ordering::Relaxed);
        }
    }
    crate::trace::go_create(s, g, loc);
    match local_p {
        Some(p) => {
            let next =
                !(s.debug.randomize && cur.map(|(m, _)| m.fastrand() % 4 == 0).unwrap_or(false));
            p.runq_put(g, next, &mut |x| s.globrunqput(x));
        }
        None => s.globrunqput(g),
    }
    wakep(s);
}

/// Go's `gopark`: parks the calling goroutine. `unlockf` runs on the M's
/// scheduler stack *after* the goroutine is `Waiting`; it typically releases
/// the lock guarding the wait queue the goroutine registered in, and from
/// that moment a waker may call [`goready`]. If it returns `false` the park
/// is abandoned and the goroutine resumes at once.
///
/// Panics if called outside a goroutine.
pub fn gopark<F: FnOnce(GRef) -> bool>(reason: WaitReason, unlockf: F) {
    let (m, s) = tls::current().expect("gopark outside a goroutine");
    let g = m.curg().expect("gopark outside a goroutine");
    g.wait_reason.store(reason as u8, Ordering::Relaxed);
    g.wait_since.store(s.coarse_nanotime(), Ordering::Relaxed);
    let mut f = ManuallyDrop::new(unlockf);
    /// # Safety
    /// `data` points to a `ManuallyDrop<F>` that is read exactly once.
    unsafe fn call<F: FnOnce(GRef) -> bool>(data: *mut (), g: GRef) -> bool {
        // SAFETY: per the contract; the closure is moved onto g0's stack
        // before it runs, so it never touches the parked G's stack after
        // releasing its lock.
        let f = unsafe { std::ptr::read(data as *mut F) };
        f(g)
    }
    let sw = Switch::Park {
        unlockf: call::<F>,
        data: &mut *f as *mut F as *mut (),
    };
    mcall(g, &sw);
    g.wait_reason.store(0, Ordering::Relaxed);
}

/// Go's `goready`: makes a goroutine parked by [`gopark`] runnable. From a
/// goroutine or M with a P it takes that P's `runnext` (it runs next and
/// inherits the time slice); from anywhere else it goes to the global queue.
///
/// Panics if `g` is not `Waiting` (a double wake-up is a bug in the caller).
pub fn goready(g: GRef) {
    if let Err(e) = g.status.cas(Status::Waiting, Status::Runnable) {
        panic!("gmp: goready of goroutine {}: {e}", g.id());
    }
    queue_readied(g);
}

/// `goready`'s second half: queues `g`, which the caller moved `Waiting ->
/// Runnable` (and so alone may queue).
pub(crate) fn queue_readied(g: GRef) {
    let gs = g.sched.load(Ordering::Acquire) as *const Sched;
    // SAFETY: a G records the Sched that created it, which outlives it (a
    // Sched with parked Gs at shutdown is never freed: Sched::shutdown).
    if unsafe { &*gs }.is_shutdown() {
        // Its runtime is gone: the G stays Runnable and never runs again,
        // like a goroutine abandoned when Go's main returns.
        return;
    }
    let cur = tls::current().filter(|(_, s)| std::ptr::eq(*s, gs));
    let Some((m, s)) = cur else {
        // A plain thread, or an M of another runtime: the G's own scheduler
        // takes it on its global queue.
        crate::deadlock::note_external_use();
        // SAFETY: a G records the Sched that created it, which outlives it.
        goready_on(unsafe { &*gs }, g);
        return;
    };
    g.runnable_since.store(s.sample_clock(), Ordering::Relaxed);
    crate::trace::go_unpark(s, g);
    let _rt = RtSection::enter(m);
    match mp(m) {
        Some(p) => p.runq_put(g, true, &mut |x| s.globrunqput(x)),
        None => s.globrunqput(g),
    }
    wakep(s);
}

/// Readies `g` on scheduler `s` from any thread (global queue).
pub fn goready_on(s: &Sched, g: GRef) {
    g.runnable_since.store(s.sample_clock(), Ordering::Relaxed);
    s.globrunqput(g);
    wakep(s);
}

/// Go's `Gosched`: yields the processor; the goroutine goes to the tail of
/// the global queue. Outside a goroutine, yields the OS thread.
pub fn gosched() {
    match tls::current().and_then(|(m, _)| m.curg()) {
        Some(g) => mcall(g, &Switch::Gosched),
        None => std::thread::yield_now(),
    }
}

/// Go's `goyield`: yields to the tail of the local run queue.
pub fn goyield() {
    match tls::current().and_then(|(m, _)| m.curg()) {
        Some(g) => mcall(g, &Switch::Yield),
        None => std::thread::yield_now(),
    }
}

/// Number of runnable goroutines queued on the caller's P (`runnext`
/// included; approximate, lock-free); `None` off a P. Lets a blocking
/// operation judge whether a [`goyield`] would run anybody, and how long
/// it would wait.
pub fn local_runq_len() -> Option<usize> {
    let (m, _) = tls::current()?;
    mp(m).map(|p| p.runq_len())
}

/// A runtime entry point: yields if a preemption was requested for the
/// calling goroutine (Go's `stackguard0` check in every prologue).
#[inline]
pub fn check_preempt() {
    if let Some((m, s)) = tls::current() {
        if let Some(g) = m.curg() {
            if g.status.get() != Status::Running {
                // Inside `blocking` (Syscall): not a preemption point; a
                // racing preemptone may have set the flag after entersyscall.
                return;
            }
            if m.p_detached.load(Ordering::Relaxed) {
                crate::preempt::reacquire_after_forced_handoff(s, m, g);
            }
            if g.preempt.load(Ordering::Relaxed) {
                g.preempt.store(false, Ordering::Relaxed);
                if let Some(p) = mp(m) {
                    p.preempt.store(false, Ordering::Relaxed);
                }
                mcall(g, &Switch::Preempt);
            }
        }
    }
}

pub(crate) fn mcall_exit_syscall_no_p(g: GRef) {
    mcall(g, &Switch::ExitSyscallNoP);
}

/// Go's `LockOSThread`: wires the calling goroutine to its current thread.
/// Nested calls count; each needs an `unlock_os_thread`.
pub fn lock_os_thread() {
    let Some((m, _)) = tls::current() else { return };
    let Some(g) = m.curg() else { return };
    g.lockedm.store(m as *const M as usize, Ordering::Release);
    m.lockedg.store(g.as_ptr(), Ordering::Release);
    g.lock_count.fetch_add(1, Ordering::Relaxed);
}

/// Go's `UnlockOSThread`.
pub fn unlock_os_thread() {
    let Some((m, _)) = tls::current() else { return };
    let Some(g) = m.curg() else { return };
    let n = g.lock_count.load(Ordering::Relaxed);
    if n == 0 {
        return;
    }
    g.lock_count.store(n - 1, Ordering::Relaxed);
    if n == 1 {
        g.lockedm.store(0, Ordering::Release);
        m.lockedg.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// Whether the calling goroutine is locked to its thread.
pub fn is_locked_to_thread() -> bool {
    current_g()
        .map(|g| g.lockedm.load(Ordering::Relaxed) != 0)
        .unwrap_or(false)
}
