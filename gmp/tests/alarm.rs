//! The M's timer alarm: a goroutine that never yields loses its P when a
//! timer on that P is overdue, by a signal its own thread's POSIX timer
//! sends, without sysmon asking.
//!
//! The sysmon here never preempts: it only hands on Ps the signal handler
//! detached. So every preemption counted is the alarm's. Assertions are on
//! counts; time bounds only catch a hang.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp::plugin::{PStatus, Sysmon, SysmonHandle};

/// Hands on the Ps that the preemption signal handler detached; asks
/// nothing of anyone.
struct HandOnly;

impl Sysmon for HandOnly {
    fn name(&self) -> &'static str {
        "hand-only"
    }
    fn preempts(&self) -> bool {
        true
    }
    fn run(self: Box<Self>, h: SysmonHandle) {
        while !h.is_shutdown() {
            h.sleep(Duration::from_micros(100));
            for i in 0..h.procs() {
                if let Some(p) = h.p(i) {
                    if p.detached && p.status == PStatus::Syscall {
                        h.retake(i, p.syscalltick);
                    }
                }
            }
        }
    }
}

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder()
        .procs(procs)
        .debug("")
        .sysmon(HandOnly)
        .build()
        .unwrap()
}

#[test]
fn alarm_takes_the_p_from_a_hog_for_an_overdue_timer() {
    let rt = rt(1);
    let stop = Arc::new(AtomicBool::new(false));
    // A watchdog so that a broken alarm fails the test instead of hanging.
    let wd = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        wd.store(true, Ordering::SeqCst);
    });
    let s2 = stop.clone();
    let (elapsed, m) = rt.block_on(move || {
        let started = Arc::new(AtomicBool::new(false));
        let (st, s3) = (started.clone(), s2.clone());
        let h = gmp::go(move || {
            st.store(true, Ordering::SeqCst);
            while !s3.load(Ordering::Relaxed) {
                std::hint::black_box(0);
            }
        });
        // Sleep: the hog takes the (only) P, and main's timer sits in its
        // heap. (Waiting for the hog first would hang: with one P and a
        // sysmon that never preempts, main would stay queued behind it.)
        let t = Instant::now();
        gmp::sleep(Duration::from_millis(2));
        let e = t.elapsed();
        assert!(started.load(Ordering::SeqCst), "the hog never ran");
        let m = gmp::metrics().unwrap();
        s2.store(true, Ordering::SeqCst);
        h.join().unwrap();
        (e, m)
    });
    assert!(!stop.load(Ordering::SeqCst) || elapsed < Duration::from_secs(60));
    assert!(
        elapsed >= Duration::from_millis(2),
        "woke early: {elapsed:?}"
    );
    assert!(m.alarm_preempts >= 1, "the alarm never fired: {m:?}");
    assert_eq!(
        m.preempt_requests, m.alarm_preempts,
        "only the alarm may ask: {m:?}"
    );
    assert!(m.forced_handoffs >= 1, "the hog kept its P: {m:?}");
}

#[test]
fn alarm_leaves_goroutines_that_switch_alone() {
    // A goroutine that yields all the time passes through the scheduler,
    // which runs due timers, so no timer stays overdue for the grace and
    // each fresh slice is shorter than the minimum run: the alarm must not
    // preempt. (A few are tolerated: an OS that deschedules the thread for
    // a millisecond right after a deadline makes the goroutine look like a
    // 1 ms run with an overdue timer; a loaded 2-core CI box did that 3
    // times in one run. An alarm that ignored the grace and the minimum run
    // would preempt at each of the 20 sleeps.)
    let rt = rt(1);
    let m = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let h = gmp::go(move || {
            let mut n = 0u64;
            while !s2.load(Ordering::Relaxed) {
                gmp::yield_now();
                n += 1;
            }
            n
        });
        for _ in 0..20 {
            gmp::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(h.join().unwrap() > 20);
        gmp::metrics().unwrap()
    });
    assert!(
        m.alarm_preempts <= 5,
        "alarm preempted a yielding goroutine: {m:?}"
    );
    assert!(m.forced_handoffs <= 5, "{m:?}");
}

/// Retakes nothing for its first `RESCUE_AFTER`, then behaves like
/// [`HandOnly`] (so that a broken direct hand-off fails the test's counts
/// instead of hanging it).
struct RetakesLate;

const RESCUE_AFTER: Duration = Duration::from_secs(5);

impl Sysmon for RetakesLate {
    fn name(&self) -> &'static str {
        "retakes-late"
    }
    fn preempts(&self) -> bool {
        true
    }
    fn run(self: Box<Self>, h: SysmonHandle) {
        let start = Instant::now();
        while !h.is_shutdown() {
            h.sleep(Duration::from_millis(1));
            if start.elapsed() < RESCUE_AFTER {
                continue;
            }
            for i in 0..h.procs() {
                if let Some(p) = h.p(i) {
                    if p.status == PStatus::Syscall {
                        h.retake(i, p.syscalltick);
                    }
                }
            }
        }
    }
}

#[test]
fn alarm_hands_the_p_to_an_idle_m_without_sysmon() {
    // A hog on every P and main asleep on a timer: the alarm of the M whose
    // P holds the timer takes the P, and its signal handler hands the P to
    // the parked reserve M itself. The sysmon here retakes nothing for 5 s,
    // so main can only wake sooner through that direct hand-off; the counts
    // say which way it went.
    let rt = gmp::Runtime::builder()
        .procs(2)
        .debug("")
        .sysmon(RetakesLate)
        .build()
        .unwrap();
    let mut tested = 0;
    for round in 0..6 {
        let r = rt.block_on(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let hogs: Vec<_> = (0..2)
                .map(|_| {
                    let (stop, running) = (stop.clone(), running.clone());
                    gmp::go(move || {
                        running.fetch_add(1, Ordering::SeqCst);
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            n = std::hint::black_box(n + 1);
                        }
                        n
                    })
                })
                .collect();
            // Main keeps P0 (a plain spin, no runtime entry) until the
            // other P runs a hog and an idle M is parked: the reserve.
            // (The M started for the other P may have been the reserve,
            // whose replacement is a new thread that needs a CPU first.)
            let t = Instant::now();
            let mut before = gmp::metrics().unwrap();
            while t.elapsed() < Duration::from_secs(2)
                && (running.load(Ordering::SeqCst) == 0 || before.idle_threads == 0)
            {
                std::hint::spin_loop();
                before = gmp::metrics().unwrap();
            }
            gmp::sleep(Duration::from_millis(2));
            let after = gmp::metrics().unwrap();
            let both = running.load(Ordering::SeqCst) == 2;
            stop.store(true, Ordering::SeqCst);
            for h in hogs {
                h.join().unwrap();
            }
            (before, after, both)
        });
        let (before, after, both) = r;
        if !both || before.idle_threads == 0 {
            // Main woke before a hog started, or no M was idle: nothing
            // was tested this round.
            continue;
        }
        tested += 1;
        assert!(
            after.forced_handoffs > before.forced_handoffs,
            "round {round}: main woke, but no hog lost its P: {after:?}"
        );
        assert_eq!(
            after.syscall_handoffs, before.syscall_handoffs,
            "round {round}: sysmon had to retake (the direct hand-off failed): {after:?}"
        );
        assert!(
            after.direct_handoffs > before.direct_handoffs,
            "round {round}: main woke without a direct hand-off: {after:?}"
        );
    }
    assert!(tested >= 3, "only {tested} of 6 rounds had their setup");
}
