//! # gmp-sysmon: the default system monitor
//!
//! ## The problem
//! A cooperative scheduler is at the mercy of its goroutines: one that loops
//! without entering the runtime, or blocks in the OS without saying so,
//! keeps its P and starves every goroutine queued behind it. Go's answer is
//! sysmon, a thread without a P that watches the Ps and intervenes.
//!
//! ## The mechanism ([`DefaultSysmon`], Go's `sysmon` loop)
//! * Sleep 20 µs; after 1 ms without anything to do, double the sleep up to
//!   10 ms; when every P is idle, sleep until work arrives.
//! * **Retake**: a P that has been in a blocking call (`gmp::blocking`, or a
//!   forced handoff, below) for a whole tick, while other work waits or no M
//!   is looking for work, is handed to another M.
//! * **Preempt**: a goroutine that has run the same time slice for more than
//!   10 ms is asked to yield (a flag checked at every runtime entry) and its
//!   M gets `SIGURG`; as in Go's `retake`, asking does not restart the
//!   slice, so if a `runnext` partner inherits it, the partner is asked too
//!   (every [`REPREEMPT_NS`]) until the P starts a new slice. If the M is in user code, the signal handler detaches
//!   the P, which the next retake hands to another M: the hog keeps running
//!   on its thread (the OS time-slices it) while the others run on the P.
//!   See `DESIGN.md` beside this file for why a P is never owned twice and
//!   never lost.
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

use std::time::Duration;

use gmp_p::PStatus;
use gmp_sched::{Sysmon, SysmonHandle};

/// Go's `forcePreemptNS`: a time slice is 10 ms.
pub const FORCE_PREEMPT_NS: u64 = 10_000_000;
/// Go's minimum sysmon sleep: 20 µs.
pub const MIN_SLEEP: Duration = Duration::from_micros(20);
/// Go's maximum sysmon sleep: 10 ms.
pub const MAX_SLEEP: Duration = Duration::from_millis(10);
/// How often a slice that overran is asked again to yield: 100 µs (Go
/// asks at every sysmon tick; this bounds the signals sent to a hog).
pub const REPREEMPT_NS: u64 = 100_000;

/// Go's sysmon (see the crate docs).
#[derive(Debug, Clone)]
pub struct DefaultSysmon {
    /// Time slice before preemption.
    pub time_slice: Duration,
    /// Whether to preempt at all (false: only retake blocking calls).
    pub preempt: bool,
}

impl Default for DefaultSysmon {
    fn default() -> Self {
        DefaultSysmon {
            time_slice: Duration::from_nanos(FORCE_PREEMPT_NS),
            preempt: true,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Seen {
    schedtick: u32,
    schedwhen: u64,
    syscalltick: u32,
    syscallwhen: u64,
    /// When this P's current slice was last asked to yield.
    preempted_at: u64,
}

impl Sysmon for DefaultSysmon {
    fn name(&self) -> &'static str {
        "gmp-sysmon"
    }
    fn preempts(&self) -> bool {
        self.preempt
    }
    fn run(self: Box<Self>, h: SysmonHandle) {
        let slice = self.time_slice.as_nanos() as u64;
        let mut seen: Vec<Seen> = Vec::new();
        let mut idle = 0u32;
        let mut delay = MIN_SLEEP;
        let mut last_scavenge = 0u64;
        while !h.is_shutdown() {
            if idle == 0 {
                delay = MIN_SLEEP;
            } else if idle > 50 {
                delay = (delay * 2).min(MAX_SLEEP);
            }
            std::thread::sleep(delay);
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
            acted |= h.kick_overdue_timers();
            let procs = h.procs();
            if seen.len() < procs {
                seen.resize(procs, Seen::default());
            }
            for (i, sn) in seen.iter_mut().enumerate().take(procs) {
                let Some(p) = h.p(i) else { continue };
                match p.status {
                    PStatus::Running if self.preempt => {
                        sn.syscallwhen = 0;
                        if p.schedtick != sn.schedtick {
                            sn.schedtick = p.schedtick;
                            sn.schedwhen = now;
                        } else if now.saturating_sub(sn.schedwhen) >= slice
                            && now.saturating_sub(sn.preempted_at) >= REPREEMPT_NS
                        {
                            // As Go's retake: the slice's start is NOT reset
                            // by asking. If the G yields but its runnext
                            // partner inherits the slice (same schedtick),
                            // the partner is asked too, a moment later;
                            // resetting would hand the chain a fresh 10 ms
                            // (measured: a ping-pong pair then took 3-4x
                            // the CPU of a pair it was supposed to share with).
                            if h.preempt(i, p.schedtick) {
                                acted = true;
                                tracing::debug!(target: "gmp::sysmon", p = i, "preempt");
                            }
                            sn.preempted_at = now;
                        }
                    }
                    PStatus::Syscall => {
                        if p.syscalltick != sn.syscalltick || sn.syscallwhen == 0 {
                            sn.syscalltick = p.syscalltick;
                            sn.syscallwhen = now;
                            continue;
                        }
                        // Go: leave it if nothing waits, someone is already
                        // looking for work, and the call is younger than 10 ms.
                        if p.runq_len == 0
                            && h.global_queue_len() == 0
                            && h.idle_capacity() > 0
                            && now.saturating_sub(sn.syscallwhen) < 10_000_000
                        {
                            continue;
                        }
                        if h.retake(i, p.syscalltick) {
                            acted = true;
                            sn.syscallwhen = 0;
                            tracing::debug!(target: "gmp::sysmon", p = i, "retake");
                        }
                    }
                    _ => {
                        sn.syscallwhen = 0;
                    }
                }
            }
            h.schedtrace_tick();
            if acted {
                idle = 0;
            } else {
                idle += 1;
            }
        }
    }
}
