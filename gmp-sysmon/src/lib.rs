//! # gmp-sysmon: the default system monitor
//!
//! ## The problem
//! A cooperative scheduler is at the mercy of its goroutines: one that loops
//! without entering the runtime, or blocks in the OS without saying so,
//! keeps its P and starves every goroutine queued behind it. Go's answer is
//! sysmon, a thread without a P that watches the Ps and intervenes.
//!
//! ## The mechanism ([`DefaultSysmon`], Go's `sysmon` loop)
//! * **Sleep until the next deadline**: the end of some running P's time
//!   slice, or the moment a timer falls due on a busy P (each P publishes
//!   its earliest timer, Go's `p.timer0When`), at most 10 ms. While a P is
//!   in a blocking call, Go's backoff also bounds the sleep: 20 µs,
//!   doubling after 1 ms without anything to do, up to 10 ms. When every P
//!   is idle, sleep until work arrives. A goroutine that adds a timer due
//!   well before sysmon's wake-up wakes it (`set_timer_horizon`).
//! * **Retake**: a P that has been in a blocking call (`gmp::blocking`) for
//!   a whole tick, while other work waits (queued goroutines, overdue
//!   timers) or no M is looking for work, is handed to another M. Once its
//!   goroutine's time slice is over, the P is retaken without waiting for
//!   a tick in the same call (Go's `sysretake`): a goroutine going from one
//!   short blocking call to the next shows sysmon a new call at every look
//!   and never passes through the scheduler, so its queue would starve
//!   (found by `gmp/tests/handoff_stress.rs`: 400 goroutines runnable and
//!   unrun for half a second beside 16 such goroutines).
//! * **Preempt**: a goroutine whose time slice is over is asked to yield (a
//!   flag checked at every runtime entry) and its M gets `SIGURG`. The
//!   slice is 10 ms (Go's), or [`CONTENDED_SLICE_NS`] (1 ms) while a timer
//!   in that P's heap is overdue. So a timer on a P held by a goroutine
//!   that never yields fires ~1 ms late, not 10-20 ms. Goroutines queued
//!   behind a busy P are normal load and wait for the 10 ms slice, as in
//!   Go: a short slice there turned a spawn-heavy program into a storm of
//!   preemptions (a million spawns under `GMP_DEBUG=migrate=1` took over a
//!   minute instead of half a second).
//!   Unlike Go, a slice is only taken when someone waits for the CPU: a
//!   goroutine queued on that P, one on the global queue, or the P's
//!   `runnext` when no idle P or spinning M can steal it. Go preempts
//!   regardless (it needs every goroutine at a safe point for its GC); we
//!   have no GC, and a preempted goroutine nobody waits for only goes to the
//!   global queue and comes straight back, or moves to an idle P and starts
//!   cold. Such a P is looked at again every [`IDLE_SLICE_LOOK_NS`].
//!   As in Go's `retake`, asking does not restart the slice, so if a
//!   `runnext` partner inherits it, the partner is asked too (every
//!   [`REPREEMPT_NS`]) until the P starts a new slice. If the M is in user
//!   code, the signal handler detaches the P (a *forced hand-off*), and
//!   sysmon, waiting up to [`HANDOFF_WAIT`] for that, hands the P to another
//!   M in the same tick (an M is started on the P itself if timers are
//!   overdue): the hog keeps running on its thread (the OS time-slices it)
//!   while the others run on the P. See `DESIGN.md` beside this file for
//!   why a P is never owned twice and never lost.
//! * Poll the network if nobody did for 10 ms; run overdue timers; every
//!   100 ms give back the memory of pooled dead goroutines' stacks beyond
//!   the bound (Go's background scavenger).
//! * Every action is counted in the scheduler's counters (`gmp::metrics`).
//!
//! ## Rejected alternatives
//! * Switching a goroutine away from inside the signal handler (Go's async
//!   preemption): the interrupted code may hold the allocator's lock or a
//!   std `Mutex`, and Rust gives no safe-point maps. We never switch at an
//!   arbitrary instruction; we only move the P.
//! * Compiler-inserted yield points: not available on stable Rust.

#![warn(missing_docs)]

use std::time::{Duration, Instant};

use gmp_p::PStatus;
use gmp_sched::{PSnapshot, Sysmon, SysmonHandle};

/// Go's `forcePreemptNS`: a time slice is 10 ms.
pub const FORCE_PREEMPT_NS: u64 = 10_000_000;
/// The slice of a goroutine while a timer in its P's heap is overdue: 1 ms.
/// Not Go's (Go keeps 10 ms and hog-latency measures 10-20 ms there);
/// chosen so that a timer on a P held by a goroutine that never yields
/// fires at most ~1 ms late, while a forced hand-off (a signal plus a
/// thread switch, ~10-30 µs measured here) costs a preempted hog at most a
/// few percent of its CPU.
///
/// Only an overdue timer shortens the slice. A P passes through the
/// scheduler (which runs its due timers) at every goroutine switch, so a
/// timer stays overdue only while one goroutine runs without switching:
/// the short slice hits exactly such a goroutine, at most once per timer.
/// A queued goroutine, by contrast, is what every busy P has; counting it
/// would preempt a spawner every millisecond.
pub const CONTENDED_SLICE_NS: u64 = 1_000_000;
/// Go's minimum sysmon sleep: 20 µs.
pub const MIN_SLEEP: Duration = Duration::from_micros(20);
/// Go's maximum sysmon sleep: 10 ms.
pub const MAX_SLEEP: Duration = Duration::from_millis(10);
/// How often a slice that overran is asked again to yield: 100 µs (Go
/// asks at every sysmon tick; this bounds the signals sent to a hog).
pub const REPREEMPT_NS: u64 = 100_000;
/// How often a P whose plain slice is over, but for whose CPU nobody waits,
/// is looked at again: 1 ms (so a goroutine that becomes runnable behind it
/// waits at most about that long past the slice's end).
pub const IDLE_SLICE_LOOK_NS: u64 = 1_000_000;
/// How long sysmon waits, yielding its thread, for a signalled M to detach
/// its P so that it can hand the P on in the same tick: 50 µs (a signal to
/// a running thread lands in a few µs; an M the OS has descheduled is left
/// to the next tick).
pub const HANDOFF_WAIT: Duration = Duration::from_micros(50);

/// Go's sysmon (see the crate docs).
#[derive(Debug, Clone)]
pub struct DefaultSysmon {
    /// Time slice before preemption.
    pub time_slice: Duration,
    /// Time slice while a timer on the P is overdue
    /// ([`CONTENDED_SLICE_NS`]); at most `time_slice` is used.
    pub contended_slice: Duration,
    /// Whether to preempt at all (false: only retake blocking calls).
    pub preempt: bool,
}

impl Default for DefaultSysmon {
    fn default() -> Self {
        DefaultSysmon {
            time_slice: Duration::from_nanos(FORCE_PREEMPT_NS),
            contended_slice: Duration::from_nanos(CONTENDED_SLICE_NS),
            preempt: true,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Seen {
    schedtick: u32,
    /// When the current slice started, as best sysmon knows (a lower bound:
    /// the M's stamp, from the coarse clock, but not before the previous
    /// look, which saw another slice). Used for the contended slice.
    schedwhen: u64,
    /// When sysmon first saw the current slice (an upper bound on its start,
    /// Go's `schedwhen`). Used for the plain slice, which must never end
    /// early: the coarse clock that stamps slices can lag by a whole
    /// sysmon sleep while hogs run (nobody else reads the clock), and the
    /// lower bound then cut fresh 10 ms slices to a millisecond.
    observed: u64,
    syscalltick: u32,
    syscallwhen: u64,
    /// When this P's current slice was last asked to yield.
    preempted_at: u64,
    /// This P's slice was asked to yield and has not been seen to end: if
    /// the P turns up in `Syscall`, that is the forced hand-off.
    asked: bool,
    /// The P's earliest timer at the last look (to notice an earlier one).
    timer_when: u64,
    /// This slice was found contended: it stays short (asked again every
    /// [`REPREEMPT_NS`]) until it ends, even if sysmon itself runs the
    /// overdue timer meanwhile (the goroutine it readied still needs a P).
    short: bool,
}

/// What one tick knows about the work waiting for Ps.
struct Waiting {
    now: u64,
    global: usize,
}

impl Waiting {
    /// Whether a timer is overdue on P `p` (see [`CONTENDED_SLICE_NS`]).
    fn contended(&self, p: &PSnapshot) -> bool {
        p.timer_when <= self.now
    }
}

impl DefaultSysmon {
    /// When the P's current slice ends: the contended slice after its
    /// (lower-bound) start while a timer on it is overdue, else the plain
    /// slice after sysmon first saw it.
    fn slice_end(&self, p: &PSnapshot, sn: &Seen, w: &Waiting) -> u64 {
        let slice = self.time_slice.as_nanos() as u64;
        let cslice = (self.contended_slice.as_nanos() as u64).min(slice);
        if sn.short || w.contended(p) {
            sn.schedwhen.saturating_add(cslice)
        } else {
            sn.observed.saturating_add(slice)
        }
    }

    /// One look at a running P: preempts its goroutine if its slice is
    /// over, and returns when this P next needs a look.
    fn check_running(
        &self,
        h: &SysmonHandle,
        i: usize,
        p: &PSnapshot,
        sn: &mut Seen,
        w: &Waiting,
    ) -> u64 {
        let slice = self.time_slice.as_nanos() as u64;
        let cslice = (self.contended_slice.as_nanos() as u64).min(slice);
        let now = w.now;
        let contended = sn.short || w.contended(p);
        let end = self.slice_end(p, sn, w);
        let mut next = end;
        if now >= end && !contended && !Self::work_waits(h, p, w) {
            // The plain slice is over but nobody waits for this CPU: the
            // goroutine (often a runnext chain, a ring of hand-offs, that
            // inherits one slice) would only go to the global queue and be
            // taken straight back, or by an idle P, which then starts cold.
            // Look again in a while: work that turns up meanwhile waits at
            // most that long past the slice's end.
            next = now.saturating_add(IDLE_SLICE_LOOK_NS);
        } else if now >= end {
            // As Go's retake: the slice's start is NOT reset by asking. If
            // the G yields but its runnext partner inherits the slice (same
            // schedtick), the partner is asked too, a moment later;
            // resetting would hand the chain a fresh slice (measured: a
            // ping-pong pair then took 3-4x the CPU of a pair it was
            // supposed to share with).
            if now.saturating_sub(sn.preempted_at) >= REPREEMPT_NS {
                if h.preempt(i, p.schedtick) {
                    sn.asked = true;
                    sn.short = contended;
                    tracing::debug!(target: "gmp::sysmon", p = i, contended, "preempt");
                }
                sn.preempted_at = now;
            }
            next = sn.preempted_at.saturating_add(REPREEMPT_NS);
        }
        if !contended && p.timer_when != u64::MAX {
            // The timer makes the P contended when it falls due.
            next = next.min(p.timer_when.max(sn.schedwhen.saturating_add(cslice)));
        }
        next
    }

    /// Whether some goroutine waits for a CPU that P's running goroutine
    /// holds: one queued behind it, one on the global queue, or the one in
    /// its `runnext` when no idle P or spinning M is there to steal it.
    fn work_waits(h: &SysmonHandle, p: &PSnapshot, w: &Waiting) -> bool {
        p.runq_len > usize::from(p.runnext) || w.global > 0 || (p.runnext && h.idle_capacity() == 0)
    }

    /// Whether P `i` in `Syscall` should be handed to another M now.
    fn should_retake(h: &SysmonHandle, p: &PSnapshot, sn: &Seen, w: &Waiting) -> bool {
        // Go: leave it if nothing waits, someone is already looking for
        // work, and the call is younger than 10 ms. Overdue timers wait too.
        !(p.runq_len == 0
            && w.global == 0
            && p.timer_when > w.now
            && h.idle_capacity() > 0
            && w.now.saturating_sub(sn.syscallwhen) < 10_000_000)
    }
}

impl Sysmon for DefaultSysmon {
    fn name(&self) -> &'static str {
        "gmp-sysmon"
    }
    fn preempts(&self) -> bool {
        self.preempt
    }
    fn run(self: Box<Self>, h: SysmonHandle) {
        let cslice =
            (self.contended_slice.as_nanos() as u64).min(self.time_slice.as_nanos() as u64);
        let mut seen: Vec<Seen> = Vec::new();
        let mut asked: Vec<usize> = Vec::new();
        let mut idle = 0u32;
        let mut delay = MIN_SLEEP;
        let mut last_scavenge = 0u64;
        let mut last_tick = 0u64;
        // When some running P next needs a look (a slice ends, a timer
        // falls due on a busy P).
        let mut deadline = u64::MAX;
        // Whether the last tick saw a P in a blocking call or acted.
        let mut busy = true;
        while !h.is_shutdown() {
            if idle == 0 {
                delay = MIN_SLEEP;
            } else if idle > 50 {
                delay = (delay * 2).min(MAX_SLEEP);
            }
            // Sleep until the next deadline. Go's backoff (20 µs doubling to
            // 10 ms) only matters while some P is in a blocking call (to
            // retake it soon) or sysmon just did something; otherwise the
            // deadlines say when to look, and a long sleep also earns the
            // thread the OS's favour when it wakes (measured: a sysmon
            // ticking at 20 µs beside hogs was woken up to 8 ms late on a
            // loaded 2-core box; one sleeping until the deadline, ~on time).
            let now = h.now();
            let bound = if busy { delay } else { MAX_SLEEP };
            let d = if deadline > now {
                bound
                    .min(Duration::from_nanos(deadline - now))
                    .max(MIN_SLEEP)
            } else {
                MIN_SLEEP
            };
            // A timer added during the sleep that would fire more than a
            // contended slice before we wake wakes us (it may sit on a P
            // whose goroutine never yields). Then re-read the deadlines: a
            // timer added before the horizon was published shows here.
            let horizon = (now + d.as_nanos() as u64).saturating_sub(cslice);
            h.set_timer_horizon(horizon);
            let earlier = self.preempt
                && seen.iter().enumerate().any(|(i, sn)| {
                    h.p(i)
                        .map(|p| p.timer_when < sn.timer_when && p.timer_when < horizon)
                        .unwrap_or(false)
                });
            if earlier {
                h.set_timer_horizon(0);
            } else {
                h.sleep(d);
            }
            if h.is_shutdown() {
                break;
            }
            if h.all_idle() && h.global_queue_len() == 0 {
                h.wait_for_work(Duration::from_millis(100));
                idle = 0;
            }
            let now = h.now();
            let mut acted = h.poll_network() > 0;
            // Go scavenges in the background; every 100 ms is plenty here.
            if now.saturating_sub(last_scavenge) > 100_000_000 {
                last_scavenge = now;
                h.scavenge_stacks();
            }
            let procs = h.procs();
            if seen.len() < procs {
                seen.resize(
                    procs,
                    Seen {
                        timer_when: u64::MAX,
                        ..Seen::default()
                    },
                );
            }
            let w = Waiting {
                now,
                global: h.global_queue_len(),
            };
            deadline = u64::MAX;
            asked.clear();
            let mut in_syscall = false;
            for (i, sn) in seen.iter_mut().enumerate().take(procs) {
                let Some(p) = h.p(i) else { continue };
                sn.timer_when = p.timer_when;
                if p.schedtick != sn.schedtick {
                    // A new slice began since the last look, so after it.
                    sn.schedtick = p.schedtick;
                    sn.schedwhen = p.slice_start.max(last_tick);
                    sn.observed = now;
                    sn.short = false;
                    sn.asked = false;
                }
                match p.status {
                    PStatus::Running if self.preempt => {
                        sn.syscallwhen = 0;
                        let next = self.check_running(&h, i, &p, sn, &w);
                        if sn.asked && sn.preempted_at == now {
                            asked.push(i);
                        }
                        deadline = deadline.min(next);
                    }
                    PStatus::Syscall => {
                        in_syscall = true;
                        let forced = std::mem::take(&mut sn.asked) || p.detached;
                        // Go's `sysretake`: a goroutine that goes from one
                        // short blocking call to the next keeps its P (each
                        // look sees a new syscalltick) and its slice (it
                        // never passes through the scheduler), so the P's
                        // queue would starve. Once the slice is over, the
                        // tick gate does not apply.
                        let (slice_end, slice_over) = if self.preempt {
                            let end = self.slice_end(&p, sn, &w);
                            (end, now >= end)
                        } else {
                            (u64::MAX, false)
                        };
                        if !slice_over {
                            deadline = deadline.min(slice_end);
                        }
                        if !forced
                            && !slice_over
                            && (p.syscalltick != sn.syscalltick || sn.syscallwhen == 0)
                        {
                            // A blocking call seen for the first time: give
                            // it a tick (Go).
                            sn.syscalltick = p.syscalltick;
                            sn.syscallwhen = now;
                            continue;
                        }
                        if forced {
                            // Our own forced hand-off: no need to wait a
                            // tick to know the M is stuck.
                            sn.syscalltick = p.syscalltick;
                            sn.syscallwhen = sn.schedwhen;
                        }
                        if Self::should_retake(&h, &p, sn, &w) && h.retake(i, p.syscalltick) {
                            // A retake that follows our own preemption is
                            // part of it and does not reset the backoff
                            // (hogs on every P must not keep sysmon at
                            // 20 µs ticks).
                            acted |= !forced;
                            sn.syscallwhen = 0;
                            tracing::debug!(target: "gmp::sysmon", p = i, forced, "retake");
                        }
                    }
                    _ => {
                        sn.syscallwhen = 0;
                    }
                }
            }
            // Hand the Ps of the Ms just signalled on at once, rather than
            // a tick later: wait briefly for each to detach (or to yield).
            if !asked.is_empty() {
                let t0 = Instant::now();
                while !asked.is_empty() && t0.elapsed() < HANDOFF_WAIT {
                    // Yield, not spin: on a machine whose CPUs all run
                    // Ms, the thread we signalled may be queued behind us
                    // on this very CPU, and a spin would keep its handler
                    // (the detach we wait for) from running.
                    std::thread::yield_now();
                    asked.retain(|&i| {
                        let Some(p) = h.p(i) else { return false };
                        let sn = &mut seen[i];
                        match p.status {
                            PStatus::Running => p.schedtick == sn.schedtick,
                            PStatus::Syscall => {
                                sn.asked = false;
                                sn.syscalltick = p.syscalltick;
                                sn.syscallwhen = sn.schedwhen;
                                if Self::should_retake(&h, &p, sn, &w) && h.retake(i, p.syscalltick)
                                {
                                    sn.syscallwhen = 0;
                                    tracing::debug!(target: "gmp::sysmon", p = i, "retake at once");
                                }
                                false
                            }
                            _ => false,
                        }
                    });
                }
                if !asked.is_empty() {
                    // Some M has not detached yet: look again soon.
                    deadline = deadline.min(now + MIN_SLEEP.as_nanos() as u64);
                }
            }
            // Timers overdue by more than a millisecond are run from here
            // (Go's sysmon starts an M for them). After the Ps: a hogged
            // P's overdue timer is what makes its slice short, and running
            // it here first would leave the goroutine it readies queued
            // behind the hog for a whole plain slice.
            acted |= h.kick_overdue_timers();
            last_tick = now;
            h.schedtrace_tick();
            busy = acted || in_syscall;
            if acted {
                idle = 0;
            } else {
                idle += 1;
            }
        }
    }
}
