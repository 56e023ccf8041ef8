//! The sysmon seam: a thread without a P that watches the Ps.
//!
//! The scheduler starts the plug-in's [`Sysmon::run`] on its own thread and
//! gives it a [`SysmonHandle`]: read-only views of the Ps plus the
//! mechanisms Go's sysmon uses (retake a P from a blocking call, ask a
//! goroutine to yield, poll the network, kick overdue timers). The policy —
//! when to look, what counts as too long — is the plug-in's.
//!
//! `Sysmon` is a safe trait: every mechanism on the handle re-checks its
//! precondition with a CAS (a P is retaken only if it is still in the
//! blocking call the sysmon observed), so a misbehaving plug-in can make the
//! runtime slow or unfair, never unsound.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gmp_p::PStatus;

use crate::proc::{handoffp, startm, startm_urgent};
use crate::sched::{Counters, Sched};

/// A system monitor plug-in (`gmp::Runtime::builder().sysmon(..)`).
pub trait Sysmon: Send + 'static {
    /// A short name for dumps and traces.
    fn name(&self) -> &'static str {
        "custom"
    }
    /// Whether this sysmon preempts goroutines that run too long. If not,
    /// the scheduler turns off `runnext` time-slice inheritance (as Go does
    /// without sysmon), so a ping-pong pair cannot starve a P's queue.
    fn preempts(&self) -> bool;
    /// The monitor loop. Must return soon after `handle.is_shutdown()`.
    fn run(self: Box<Self>, handle: SysmonHandle);
}

/// What sysmon sees of one P.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PSnapshot {
    /// Its status.
    pub status: PStatus,
    /// Time slices started (bumps on every non-inherited schedule).
    pub schedtick: u32,
    /// Blocking calls entered.
    pub syscalltick: u32,
    /// Gs queued on it, `runnext` included.
    pub runq_len: usize,
    /// Whether one of `runq_len` is the G in `runnext` (the one the running
    /// goroutine just readied: it runs next, or a spinning M steals it).
    pub runnext: bool,
    /// When its current time slice started (runtime clock, ns; a lower
    /// bound: the M stamps most slices from the coarse clock).
    pub slice_start: u64,
    /// Its earliest timer deadline (runtime clock, ns; `u64::MAX` if none;
    /// may be a stopped timer's). Go's `p.timer0When`.
    pub timer_when: u64,
    /// The P is in `Syscall` because the preemption signal handler took it
    /// from a goroutine that keeps running on its thread (a forced
    /// hand-off, e.g. by the M's timer alarm): hand it on at once.
    pub detached: bool,
}

/// The scheduler as a sysmon sees it.
pub struct SysmonHandle {
    s: Arc<Sched>,
}

impl fmt::Debug for SysmonHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SysmonHandle")
    }
}

impl SysmonHandle {
    pub(crate) fn new(s: Arc<Sched>) -> Self {
        SysmonHandle { s }
    }
    /// Runtime clock in ns.
    pub fn now(&self) -> u64 {
        self.s.nanotime()
    }
    /// Whether the runtime is shutting down (return from `run`).
    pub fn is_shutdown(&self) -> bool {
        self.s.is_shutdown()
    }
    /// Number of Ps.
    pub fn procs(&self) -> usize {
        self.s.gomaxprocs()
    }
    /// A view of P `i`.
    pub fn p(&self, i: usize) -> Option<PSnapshot> {
        let p = self.s.p(i)?;
        let m = p.m.load(Ordering::Acquire);
        let slice_start = if m != 0 {
            // SAFETY: P::m holds a live M of this scheduler.
            unsafe { &*(m as *const gmp_m::M) }
                .slice_start
                .load(Ordering::Relaxed)
        } else {
            0
        };
        Some(PSnapshot {
            status: p.status(),
            schedtick: p.schedtick.load(Ordering::Relaxed),
            syscalltick: p.syscalltick.load(Ordering::Relaxed),
            runq_len: p.runq_len(),
            runnext: p.has_runnext(),
            slice_start,
            timer_when: p.timers.next_when(),
            detached: p.detached.load(Ordering::Relaxed),
        })
    }
    /// Idle Ps plus spinning Ms: capacity already looking for work.
    pub fn idle_capacity(&self) -> usize {
        self.s.npidle.load(Ordering::SeqCst) + self.s.nmspinning.load(Ordering::SeqCst)
    }
    /// Gs on the global queue.
    pub fn global_queue_len(&self) -> usize {
        self.s.runqsize.load(Ordering::SeqCst)
    }
    /// Go's syscall retake: if P `i` is still in the blocking call that had
    /// `syscalltick`, take it (CAS `Syscall -> Idle`) and hand it to another
    /// M. Returns whether it did.
    pub fn retake(&self, i: usize, syscalltick: u32) -> bool {
        let Some(p) = self.s.p(i) else { return false };
        if p.syscalltick.load(Ordering::Relaxed) != syscalltick {
            return false;
        }
        if !p.cas_status(PStatus::Syscall, PStatus::Idle) {
            return false;
        }
        // We own the P now (it is on no list); give it away like handoffp.
        p.set_status(PStatus::Running);
        self.s
            .counters
            .syscall_handoffs
            .fetch_add(1, Ordering::Relaxed);
        crate::trace::handoff(&self.s, p.id);
        if p.detached.load(Ordering::Relaxed) || p.timers.next_when() <= self.s.nanotime() {
            // Taken from a hog, or overdue timers (often why): an M runs on
            // this very P at once, rather than the P going idle and some M
            // finding it while stealing, and that M is woken urgently (the
            // CPUs may all be running hogs). If no thread can be had,
            // startm leaves the P on the idle list.
            startm_urgent(&self.s, p);
            return true;
        }
        handoffp(&self.s, p);
        true
    }
    /// Go's `preemptone`, if P `i` still runs the time slice `schedtick`.
    pub fn preempt(&self, i: usize, schedtick: u32) -> bool {
        let Some(p) = self.s.p(i) else { return false };
        if p.status() != PStatus::Running || p.schedtick.load(Ordering::Relaxed) != schedtick {
            return false;
        }
        crate::preempt::preemptone(&self.s, p)
    }
    /// Polls the network if nobody did for 10 ms; returns Gs readied.
    pub fn poll_network(&self) -> usize {
        self.s.sysmon_netpoll()
    }
    /// If a timer is overdue on a P whose M is busy, start an M to run it
    /// (Go's sysmon `startm` for timers). Returns whether it started one.
    pub fn kick_overdue_timers(&self) -> bool {
        let now = self.s.nanotime();
        let overdue = (0..self.s.gomaxprocs()).any(|i| {
            self.s
                .p(i)
                .map(|p| p.timers.next_when() < now.saturating_sub(1_000_000))
                .unwrap_or(false)
        });
        if overdue {
            // Run them from here: any thread may run a P's due timers.
            for i in 0..self.s.gomaxprocs() {
                if let Some(p) = self.s.p(i) {
                    p.timers.run_due(now);
                }
            }
            if self.s.npidle.load(Ordering::SeqCst) > 0 {
                return startm(&self.s, None, false);
            }
        }
        false
    }
    /// Whether every P is idle and no goroutine is in a blocking call.
    pub fn all_idle(&self) -> bool {
        self.s.npidle.load(Ordering::SeqCst) == self.s.gomaxprocs()
            && self.s.nsyscall.load(Ordering::Relaxed) == 0
    }
    /// From now until the next [`sleep`](Self::sleep) returns, a goroutine
    /// that adds a timer due before `horizon` (runtime clock, ns), which
    /// becomes the earliest of its P, wakes sysmon. 0 turns it off.
    ///
    /// A sysmon that bounds its sleep by the Ps' timers
    /// ([`PSnapshot::timer_when`]) sets it before sleeping and then re-reads
    /// the deadlines: a timer added before the store is seen by the
    /// re-read, one added after it sees the horizon (both sides are
    /// `SeqCst`).
    pub fn set_timer_horizon(&self, horizon: u64) {
        self.s.sysmon_horizon.store(horizon, Ordering::SeqCst);
    }
    /// Sleeps for `d`, or until woken (an earlier timer, see
    /// [`set_timer_horizon`](Self::set_timer_horizon), or an M started
    /// while [`wait_for_work`](Self::wait_for_work) was pending); returns
    /// whether it was woken. Clears the timer horizon on return.
    pub fn sleep(&self, d: Duration) -> bool {
        let woken = self.s.sysmon_note.sleep_timeout_and_clear(d);
        self.s.sysmon_horizon.store(0, Ordering::SeqCst);
        woken
    }
    /// Sleeps until work arrives (an M is started) or `max` passes.
    pub fn wait_for_work(&self, max: Duration) {
        self.s.sysmon_wait.store(true, Ordering::SeqCst);
        if self.all_idle() {
            self.s.sysmon_note.sleep_timeout_and_clear(max);
        }
        self.s.sysmon_wait.store(false, Ordering::SeqCst);
    }
    /// Gives back the memory of pooled dead goroutines' stacks beyond the
    /// runtime's bound (Go frees stacks at GC; we do it here, off the hot
    /// path). Returns how many stacks were released.
    pub fn scavenge_stacks(&self) -> usize {
        self.s.gfree.scavenge()
    }
    /// The scheduler's counters.
    pub fn counters(&self) -> &Counters {
        &self.s.counters
    }
    /// Prints a schedtrace line if one is due (hook for `GMP_DEBUG`).
    pub fn schedtrace_tick(&self) {}
}
