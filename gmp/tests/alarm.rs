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
