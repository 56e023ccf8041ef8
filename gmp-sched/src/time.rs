//! Timers on Ps (Go 1.14+): `sleep`, and the hook for timer channels.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gmp_g::{GRef, WaitReason};
use gmp_p::Timer;

use crate::proc::{check_preempt, gopark, goready, mp};
use crate::sched::Sched;
use crate::tls;

/// Wakes the M blocked in netpoll if it would sleep past `when`
/// (Go's `wakeNetPoller`).
pub(crate) fn wake_netpoller(s: &Sched, when: u64) {
    if s.lastpoll.load(Ordering::SeqCst) == 0 {
        let pu = s.poll_until.load(Ordering::SeqCst);
        if pu == 0 || pu > when {
            s.netpoll.wake();
        }
    } else {
        // Nobody is polling: make sure an M is looking.
        crate::proc::wakep(s);
    }
}

/// Adds `t` to the current P's heap (or P0's from outside), firing at the
/// runtime-clock time `when` (ns), and wakes the poller if it sleeps too long.
pub fn add_timer(s: &Sched, when: u64, t: Arc<dyn Timer>) {
    add_entry(s, when, |p| p.timers.add(when, t));
}

/// Adds the entry with `push` to the current P's heap (or P0's from
/// outside); if it became that heap's earliest, wakes whoever sleeps past
/// `when` (the netpoller, sysmon).
fn add_entry(s: &Sched, when: u64, push: impl FnOnce(&gmp_p::P) -> bool) {
    let cur = tls::current().filter(|(_, cs)| std::ptr::eq(*cs, s));
    let _rt = cur.map(|(m, _)| crate::preempt::RtSection::enter(m));
    let p = cur
        .and_then(|(m, _)| mp(m))
        .or_else(|| s.p(0))
        .expect("P0 exists");
    if push(p) {
        wake_netpoller(s, when);
        // SeqCst: the store of the P's earliest deadline (in `push`) and
        // this load pair with sysmon's store of its horizon and its re-read
        // of every P's deadline (Dekker): one of the two sees the other.
        if when < s.sysmon_horizon.load(Ordering::SeqCst) {
            // Sysmon sleeps past this timer: it may sit on a P whose
            // goroutine never yields, and sysmon must be up to preempt it.
            s.sysmon_note.wakeup();
        }
    }
}

const ARMED: u8 = 0;
const FIRED: u8 = 1;
const STOPPED: u8 = 2;

/// Parks the calling goroutine for at least `d` (Go's `time.Sleep`).
/// Outside a goroutine it sleeps the thread.
pub fn sleep(d: Duration) {
    let Some((m, s)) = tls::current() else {
        std::thread::sleep(d);
        return;
    };
    let Some(g) = m.curg() else {
        std::thread::sleep(d);
        return;
    };
    check_preempt();
    if d.is_zero() {
        crate::proc::gosched();
        return;
    }
    let _ = s;
    gopark(WaitReason::Sleep, move |g2: GRef| {
        debug_assert_eq!(g2, g);
        // Re-read: we run on g0 of the M the goroutine parked on.
        let (_, s) = tls::current().expect("on an M");
        let when = s
            .nanotime()
            .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
        // Go's resetForSleep: the timer readies the G. It is added here,
        // after the G is Waiting, so it can never fire on a running G; the
        // entry holds the G itself (no allocation), which stays valid
        // because nothing else readies a sleeping G.
        add_entry(s, when, |p| p.timers.add_ready(when, goready, g2));
        true
    });
}

/// A stoppable one-shot action at a deadline, for the facade's timers.
pub struct FnTimer<F: Fn() + Send + Sync + 'static> {
    state: AtomicU8,
    f: F,
}

impl<F: Fn() + Send + Sync + 'static> std::fmt::Debug for FnTimer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnTimer(state {})", self.state.load(Ordering::Relaxed))
    }
}

impl<F: Fn() + Send + Sync + 'static> FnTimer<F> {
    /// An armed timer running `f` when it fires.
    pub fn new(f: F) -> Arc<Self> {
        Arc::new(FnTimer {
            state: AtomicU8::new(ARMED),
            f,
        })
    }
    /// Disarms it; true if it had not fired yet (Go's `Timer.Stop`).
    pub fn stop(&self) -> bool {
        self.state
            .compare_exchange(ARMED, STOPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    /// Whether it has fired.
    pub fn fired(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIRED
    }
}

impl<F: Fn() + Send + Sync + 'static> Timer for FnTimer<F> {
    fn armed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ARMED
    }
    fn fire(&self, _now: u64) -> Option<u64> {
        if self
            .state
            .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            (self.f)();
        }
        None
    }
}

/// Arms `t` to fire after `d` on the calling runtime (or `s`).
pub fn start_timer(s: &Sched, d: Duration, t: Arc<dyn Timer>) {
    let when = s
        .nanotime()
        .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    add_timer(s, when, t);
}
