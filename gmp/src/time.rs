//! Time: sleeping goroutines, timer channels and tickers (Go's `time`
//! package over the runtime's timers).
//!
//! ```
//! use std::time::Duration;
//! use gmp::time;
//!
//! gmp::run(|| {
//!     let (_tx, rx) = gmp::chan::<u32>(0);
//!     // Nothing arrives on `rx`: the timeout case wins.
//!     let timed_out = gmp::select! {
//!         recv(rx) -> _ => false,
//!         recv(time::after(Duration::from_millis(10))) -> _ => true,
//!     };
//!     assert!(timed_out);
//! });
//! ```
//!
//! ## The design
//! * **Timers live on the Ps** (Go 1.14+): each P has a heap of deadlines
//!   (`gmp_p::TimerHeap`). Adding a timer takes the current P's heap lock
//!   only; there is no timer thread. Due timers are run by whichever M
//!   passes through `findrunnable` (its own P's heap first, other Ps' while
//!   stealing), and by sysmon when a P's timers are overdue because its M is
//!   busy. An idle M blocks in the netpoller (`epoll_wait`) only until the
//!   earliest timer of any P; adding an earlier timer breaks that wait
//!   through an eventfd (Go's `wakeNetPoller`).
//! * [`sleep`] parks the goroutine with a timer that readies it; the timer
//!   is armed in the park's unlock function, *after* the goroutine is
//!   parked, so even a zero-length timer cannot wake it too early. Sleeping
//!   costs one heap entry and no thread: 100,000 sleeping goroutines are a
//!   routine load.
//! * **Timer channels** ([`after`], [`tick`], [`Timer`], [`Ticker`]) are gmp
//!   channels of capacity 1, so they work in [`select!`](macro@crate::select). The
//!   timer's callback does a non-blocking `try_send` of the current
//!   [`Instant`]; a ticker whose receiver is slow drops ticks (like Go), and
//!   re-arms itself at the next multiple of its period, skipping the ones it
//!   missed.
//! * [`Timer::stop`] and [`Timer::reset`] have Go 1.23 semantics: after
//!   they return, no value from before the call can be received (a
//!   generation counter invalidates a firing in flight, and a value already
//!   buffered is drained); they return `true` if the timer was still
//!   pending, i.e. had not fired or its value had not been received.
//!   Stopped timers are dropped from the heap lazily, when they reach its
//!   top (Go's deleted timers).
//! * Outside a runtime (a plain thread), [`sleep`] sleeps the thread and
//!   the timer channels are served by one lazily started helper thread
//!   with its own heap, so they work everywhere.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};

pub use std::time::{Duration, Instant};

use gmp_sched::Sched;

use crate::{chan, Receiver, Sender};

/// Parks the calling goroutine for at least `d` (Go's `time.Sleep`).
/// Outside a goroutine it sleeps the calling thread.
pub fn sleep(d: Duration) {
    gmp_sched::time::sleep(d)
}

/// Parks the calling goroutine until `deadline` (at least).
pub fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        sleep(deadline - now);
    }
}

/// A channel that receives the current time once, after `d` (Go's
/// `time.After`). Use it in [`select!`](macro@crate::select) for a timeout.
///
/// Unlike Go's, the channel closes once its value has been delivered (its
/// only sender, held by the timer, is gone): a second receive returns
/// `Err(RecvError)` instead of blocking forever. Use a [`Timer`] to keep it
/// open.
pub fn after(d: Duration) -> Receiver<Instant> {
    let (tx, rx) = chan(1);
    let shared = Arc::new(Shared::new(tx));
    arm(&Clock::current(), ChanTimer::new(shared, 0, 0), d);
    rx
}

/// A channel that receives the current time every `d` (Go's `time.Tick`).
/// Ticks are dropped while the receiver is slow; the ticker stops when
/// every receiver is gone. Panics if `d` is zero.
pub fn tick(d: Duration) -> Receiver<Instant> {
    assert!(!d.is_zero(), "gmp::time: non-positive interval for tick");
    let (tx, c) = chan(1);
    // No handle: the ticker runs until every receiver is gone.
    let _ = Handle::start(tx, d, true);
    c
}

/// A single event: after its duration the current time is sent on
/// [`receiver`](Self::receiver) (Go's `time.Timer`).
#[derive(Debug)]
pub struct Timer {
    c: Receiver<Instant>,
    inner: Handle,
}

/// A periodic event: every period the current time is sent on
/// [`receiver`](Self::receiver), dropping ticks while the receiver is slow
/// (Go's `time.Ticker`).
#[derive(Debug)]
pub struct Ticker {
    c: Receiver<Instant>,
    inner: Handle,
}

impl Timer {
    /// A timer that fires once after `d` (Go's `time.NewTimer`).
    pub fn new(d: Duration) -> Timer {
        let (tx, c) = chan(1);
        Timer {
            c,
            inner: Handle::start(tx, d, false),
        }
    }

    /// The channel the time is sent on (Go's `t.C`).
    pub fn receiver(&self) -> &Receiver<Instant> {
        &self.c
    }

    /// Stops the timer. Returns `true` if it was pending (it had not fired,
    /// or its value had not been received: that value is discarded),
    /// `false` if it had already been received or stopped. After `stop`
    /// returns, no value can be received until a [`reset`](Self::reset).
    pub fn stop(&self) -> bool {
        self.inner.stop(&self.c)
    }

    /// Re-arms the timer to fire `d` from now, with what [`stop`](Self::stop)
    /// would have returned (Go's `Timer.Reset`, 1.23 semantics: no stale
    /// value is received afterwards).
    pub fn reset(&self, d: Duration) -> bool {
        self.inner.reset(&self.c, d, false)
    }
}

impl Ticker {
    /// A ticker with period `d` (Go's `time.NewTicker`). Panics if `d` is
    /// zero, as Go's does.
    pub fn new(d: Duration) -> Ticker {
        assert!(!d.is_zero(), "gmp::time: non-positive interval for Ticker");
        let (tx, c) = chan(1);
        Ticker {
            c,
            inner: Handle::start(tx, d, true),
        }
    }

    /// The channel the ticks are sent on (Go's `t.C`).
    pub fn receiver(&self) -> &Receiver<Instant> {
        &self.c
    }

    /// Stops the ticker; no tick can be received afterwards (until
    /// [`reset`](Self::reset)). Returns whether it was running.
    pub fn stop(&self) -> bool {
        self.inner.stop(&self.c)
    }

    /// Stops the ticker and restarts it with period `d`. Panics if `d` is
    /// zero.
    pub fn reset(&self, d: Duration) {
        assert!(
            !d.is_zero(),
            "gmp::time: non-positive interval for Ticker.reset"
        );
        self.inner.reset(&self.c, d, true);
    }
}

impl Drop for Ticker {
    /// A dropped ticker stops (its receiver may have been cloned, but
    /// nothing could stop the ticks any more).
    fn drop(&mut self) {
        self.inner.stop(&self.c);
    }
}

// ---------------------------------------------------------------------------
// The machinery.
// ---------------------------------------------------------------------------

/// What the firings of one `Timer`/`Ticker` share: the sending side and the
/// generation, bumped by every stop/reset. A firing sends only if its
/// generation is current, under the lock that stop/reset hold while they
/// bump it and drain the channel: so after they return nothing stale can
/// arrive.
struct Shared {
    tx: Sender<Instant>,
    gen: Mutex<u64>,
}

impl Shared {
    fn new(tx: Sender<Instant>) -> Shared {
        Shared {
            tx,
            gen: Mutex::new(0),
        }
    }

    /// Sends now if `gen` is current; false if the firing should not
    /// re-arm (stale, or every receiver is gone).
    fn send(&self, gen: u64) -> bool {
        let g = self.gen.lock().unwrap_or_else(PoisonError::into_inner);
        if *g != gen {
            return false;
        }
        match self.tx.try_send(Instant::now()) {
            Ok(()) => true,
            // A slow receiver: drop the tick (Go).
            Err(e) => !e.is_disconnected(),
        }
    }
}

/// One arming of a timer: an entry in some heap.
struct ChanTimer {
    shared: Arc<Shared>,
    gen: u64,
    /// Period in clock ns; 0 for a one-shot timer.
    period: u64,
    /// When the pending firing is due (clock ns), for a ticker's catch-up.
    when: AtomicU64,
    armed: AtomicBool,
}

impl ChanTimer {
    fn new(shared: Arc<Shared>, gen: u64, period: u64) -> Arc<ChanTimer> {
        Arc::new(ChanTimer {
            shared,
            gen,
            period,
            when: AtomicU64::new(0),
            armed: AtomicBool::new(true),
        })
    }

    /// Disarms; true if it had not fired (a one-shot) or was running (a
    /// ticker).
    fn disarm(&self) -> bool {
        self.armed.swap(false, Ordering::AcqRel)
    }
}

impl gmp_p::Timer for ChanTimer {
    fn armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    fn fire(&self, now: u64) -> Option<u64> {
        if self.period == 0 {
            // One-shot: exactly one of fire and stop wins.
            if self.disarm() {
                self.shared.send(self.gen);
            }
            return None;
        }
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        if !self.shared.send(self.gen) {
            self.armed.store(false, Ordering::Release);
            return None;
        }
        // Go's periodic timers: skip the ticks that were missed.
        let when = self.when.load(Ordering::Relaxed);
        let late = now.saturating_sub(when);
        let next = when.saturating_add(self.period.saturating_mul(1 + late / self.period));
        self.when.store(next, Ordering::Relaxed);
        Some(next)
    }
}

/// Where timers are armed: a runtime's Ps, or the helper thread.
#[derive(Clone)]
enum Clock {
    Sched(Weak<Sched>),
    Fallback,
}

impl Clock {
    fn current() -> Clock {
        match gmp_sched::current_sched() {
            Some(s) => Clock::Sched(Arc::downgrade(&s)),
            None => Clock::Fallback,
        }
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Arms `t` to fire `d` from now on `clock`.
fn arm(clock: &Clock, t: Arc<ChanTimer>, d: Duration) {
    if let Clock::Sched(w) = clock {
        if let Some(s) = w.upgrade() {
            let when = s.nanotime().saturating_add(ns(d));
            t.when.store(when, Ordering::Relaxed);
            gmp_sched::time::add_timer(&s, when, t);
            return;
        }
    }
    fallback().add(t, d);
}

/// The state behind a `Timer` or `Ticker` handle.
struct Handle {
    shared: Arc<Shared>,
    cur: Mutex<Arc<ChanTimer>>,
    clock: Clock,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = self.cur.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Timer")
            .field("armed", &cur.armed.load(Ordering::Relaxed))
            .field("period", &Duration::from_nanos(cur.period))
            .finish()
    }
}

impl Handle {
    fn start(tx: Sender<Instant>, d: Duration, periodic: bool) -> Handle {
        let shared = Arc::new(Shared::new(tx));
        let t = ChanTimer::new(shared.clone(), 0, if periodic { ns(d).max(1) } else { 0 });
        let clock = Clock::current();
        arm(&clock, t.clone(), d);
        Handle {
            shared,
            cur: Mutex::new(t),
            clock,
        }
    }

    /// Disarms the current arming, invalidates firings in flight and drains
    /// the channel; returns whether the timer was pending. Called with
    /// `cur` locked; returns the new generation.
    fn stop_locked(&self, cur: &ChanTimer, c: &Receiver<Instant>) -> (bool, u64) {
        let mut gen = self
            .shared
            .gen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let pending = cur.disarm();
        *gen += 1;
        let drained = c.try_recv().is_ok();
        (pending || drained, *gen)
    }

    fn stop(&self, c: &Receiver<Instant>) -> bool {
        let cur = self.cur.lock().unwrap_or_else(PoisonError::into_inner);
        self.stop_locked(&cur, c).0
    }

    fn reset(&self, c: &Receiver<Instant>, d: Duration, periodic: bool) -> bool {
        let mut cur = self.cur.lock().unwrap_or_else(PoisonError::into_inner);
        let (pending, gen) = self.stop_locked(&cur, c);
        let t = ChanTimer::new(
            self.shared.clone(),
            gen,
            if periodic { ns(d).max(1) } else { 0 },
        );
        arm(&self.clock, t.clone(), d);
        *cur = t;
        pending
    }
}

// ---------------------------------------------------------------------------
// Outside a runtime: one helper thread with its own heap.
// ---------------------------------------------------------------------------

struct Fallback {
    heap: gmp_p::TimerHeap,
    epoch: Instant,
    /// The deadline the helper sleeps until (`u64::MAX`: none).
    sleeping_until: Mutex<u64>,
    cv: Condvar,
}

fn fallback() -> &'static Fallback {
    static F: OnceLock<&'static Fallback> = OnceLock::new();
    F.get_or_init(|| {
        let f: &'static Fallback = Box::leak(Box::new(Fallback {
            heap: gmp_p::TimerHeap::default(),
            epoch: Instant::now(),
            sleeping_until: Mutex::new(u64::MAX),
            cv: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("gmp-timers".into())
            .spawn(move || f.run())
            .expect("gmp::time: cannot start the timer thread used outside a runtime");
        f
    })
}

impl Fallback {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn add(&self, t: Arc<ChanTimer>, d: Duration) {
        let when = self.now().saturating_add(ns(d));
        t.when.store(when, Ordering::Relaxed);
        self.heap.add(when, t);
        let until = self
            .sleeping_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if when < *until {
            self.cv.notify_one();
        }
    }

    fn run(&self) {
        let mut until = self
            .sleeping_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            drop(until);
            self.heap.run_due(self.now());
            until = self
                .sleeping_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let next = self.heap.next_when();
            *until = next;
            let now = self.now();
            if next <= now {
                continue;
            }
            until = if next == u64::MAX {
                self.cv.wait(until).unwrap_or_else(PoisonError::into_inner)
            } else {
                self.cv
                    .wait_timeout(until, Duration::from_nanos(next - now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            };
            *until = 0;
        }
    }
}
