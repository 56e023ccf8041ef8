//! The default sysmon's contended slice: a goroutine that never yields loses
//! its P after the short slice when a timer on that P is overdue, and only
//! then (a queued goroutine is normal load).
//!
//! Each runtime here uses a one-hour plain slice, so any preemption seen is
//! the contended one; the assertions are on counts, the time bounds only
//! catch a hang.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp::plugin::DefaultSysmon;

const HOUR: Duration = Duration::from_secs(3600);

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder()
        .procs(procs)
        .debug("")
        .sysmon(DefaultSysmon {
            time_slice: HOUR,
            contended_slice: Duration::from_millis(1),
            preempt: true,
        })
        .build()
        .unwrap()
}

/// A goroutine that never enters the runtime until `stop`.
fn hog(started: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> impl FnOnce() + Send + 'static {
    move || {
        started.store(true, Ordering::SeqCst);
        while !stop.load(Ordering::Relaxed) {
            std::hint::black_box(0);
        }
    }
}

#[test]
fn timer_on_a_hogged_p_fires() {
    // One P: main sleeps, the hog takes the P, and main's timer sits in the
    // hogged P's heap. Only the contended slice can get main back.
    let rt = rt(1);
    let (started, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let s2 = stop.clone();
    let (elapsed, m) = rt.block_on(move || {
        let h = gmp::go(hog(started.clone(), s2.clone()));
        let t = Instant::now();
        // If the OS stalls this thread for the whole millisecond before the
        // hog starts, the timer readies main ahead of it and no preemption
        // is needed: sleep again. Once the hog has run before main woke,
        // main can only have woken by taking the P from it.
        gmp::sleep(Duration::from_millis(1));
        while !started.load(Ordering::SeqCst) {
            gmp::sleep(Duration::from_millis(1));
        }
        let e = t.elapsed();
        let m = gmp::metrics().unwrap();
        s2.store(true, Ordering::Relaxed);
        h.join().unwrap();
        (e, m)
    });
    stop.store(true, Ordering::Relaxed);
    assert!(elapsed < Duration::from_secs(60), "main slept {elapsed:?}");
    assert!(m.preempt_requests >= 1, "{m:?}");
    assert!(m.forced_handoffs >= 1, "the hog kept its P: {m:?}");
}

#[test]
fn queued_goroutine_does_not_shorten_a_slice() {
    // One P: main yields to the global queue behind a running hog. That is
    // normal load (every busy P has queued work), not a reason for the
    // short slice: with a one-hour plain slice nobody preempts the hog. A
    // plain thread stops it after a while so that main can finish.
    let rt = rt(1);
    let (started, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (st2, s2) = (started.clone(), stop.clone());
    let stopper = std::thread::spawn(move || {
        while !st2.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Many contended slices long.
        std::thread::sleep(Duration::from_millis(50));
        s2.store(true, Ordering::SeqCst);
    });
    let (st3, s3) = (started.clone(), stop.clone());
    let (m, yields) = rt.block_on(move || {
        let h = gmp::go(hog(st3.clone(), s3));
        let mut yields = 0u64;
        while !st3.load(Ordering::SeqCst) {
            gmp::gosched();
            yields += 1;
        }
        h.join().unwrap();
        (gmp::metrics().unwrap(), yields)
    });
    stopper.join().unwrap();
    assert!(started.load(Ordering::SeqCst) && stop.load(Ordering::SeqCst));
    assert!(yields >= 1);
    assert_eq!(m.preempt_requests, 0, "{m:?}");
    assert_eq!(m.forced_handoffs, 0, "{m:?}");
}
