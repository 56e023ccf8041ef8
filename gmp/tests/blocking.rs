//! `gmp::blocking`: Go's entersyscall/exitsyscall. A goroutine blocked in
//! the OS must not stop the others; sysmon hands its P to another M.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_blocking_call_does_not_stall_other_goroutines_with_one_p() {
    let rt = gmp::Runtime::builder().procs(1).build().unwrap();
    let (during, total) = rt.block_on(|| {
        let progress = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p2, s2) = (progress.clone(), stop.clone());
        let counter = gmp::go(move || {
            while !s2.load(Ordering::Relaxed) {
                p2.fetch_add(1, Ordering::Relaxed);
                gmp::yield_now();
            }
        });
        // Let the counter start.
        while progress.load(Ordering::Relaxed) == 0 {
            gmp::yield_now();
        }
        let p3 = progress.clone();
        let blocker = gmp::go(move || {
            let before = p3.load(Ordering::Relaxed);
            let t = Instant::now();
            gmp::blocking(|| std::thread::sleep(Duration::from_millis(200)));
            assert!(t.elapsed() >= Duration::from_millis(200));
            p3.load(Ordering::Relaxed) - before
        });
        let during = blocker.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        counter.join().unwrap();
        (during, progress.load(Ordering::Relaxed))
    });
    // In 200 ms the counter yields thousands of times once sysmon has
    // handed the P over (20 µs to 10 ms); without the handoff it would be 0.
    assert!(during > 100, "progress during the blocking call: {during}");
    assert!(total >= during);
}

#[test]
fn many_blocking_calls_run_in_parallel() {
    // 40 goroutines each blocked 100 ms on 2 Ps: sysmon keeps handing Ps to
    // new Ms, so the whole batch takes about 100 ms, not 2 s.
    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    let t = Instant::now();
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..40)
            .map(|i| {
                gmp::go(move || {
                    gmp::blocking(|| std::thread::sleep(Duration::from_millis(100)));
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(n, (0..40).sum());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn the_thread_cap_degrades_gracefully() {
    // Past the cap no new M is created (an error is logged); blocked
    // goroutines still finish, queued ones run when a call returns.
    let rt = gmp::Runtime::builder()
        .procs(1)
        .max_threads(3)
        .build()
        .unwrap();
    let sched = rt.sched().clone();
    let done = rt.block_on(|| {
        let hs: Vec<_> = (0..8)
            .map(|_| gmp::go(|| gmp::blocking(|| std::thread::sleep(Duration::from_millis(30)))))
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).count()
    });
    assert_eq!(done, 8);
    assert!(sched.mcount() <= 3, "threads: {}", sched.mcount());
}

#[test]
fn blocking_returns_values_and_propagates_panics() {
    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    rt.block_on(|| {
        assert_eq!(gmp::blocking(|| 6 * 7), 42);
        let h = gmp::go(|| gmp::blocking(|| -> u32 { panic!("inside blocking") }));
        let e = h.join().unwrap_err();
        assert_eq!(e.downcast_ref::<&str>(), Some(&"inside blocking"));
        // The runtime is fine afterwards.
        assert_eq!(gmp::go(|| gmp::blocking(|| 1)).join().unwrap(), 1);
    });
    // Outside a runtime it just calls the function.
    assert_eq!(gmp::blocking(|| "plain"), "plain");
}
