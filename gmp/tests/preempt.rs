//! sysmon (issue 5): no goroutine can freeze the others.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hog(stop: Arc<AtomicBool>) -> impl FnOnce() + Send + 'static {
    move || {
        // Never enters the runtime.
        while !stop.load(Ordering::Relaxed) {
            std::hint::black_box(0);
        }
    }
}

#[test]
fn tight_loop_does_not_freeze_main_with_one_proc() {
    let rt = gmp::Runtime::builder().procs(1).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let (elapsed, m) = rt.block_on(move || {
        let h = gmp::go(hog(s2.clone()));
        gmp::yield_now(); // let the hog take the P
        let t = Instant::now();
        gmp::sleep(Duration::from_millis(1));
        println!("main goroutine still runs");
        let e = t.elapsed();
        let m = gmp::metrics().unwrap();
        s2.store(true, Ordering::Relaxed);
        h.join().unwrap();
        (e, m)
    });
    stop.store(true, Ordering::Relaxed);
    assert!(
        elapsed < Duration::from_secs(2),
        "main was frozen for {elapsed:?}"
    );
    assert!(m.preempt_requests > 0 || m.forced_handoffs > 0, "{m:?}");
}

#[test]
fn two_hogs_on_two_procs() {
    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let elapsed = rt.block_on(move || {
        let hs: Vec<_> = (0..2).map(|_| gmp::go(hog(s2.clone()))).collect();
        gmp::yield_now();
        let t = Instant::now();
        let mut sum = 0u64;
        for i in 0..100 {
            gmp::sleep(Duration::from_micros(100));
            sum += i;
        }
        assert_eq!(sum, 4950);
        let e = t.elapsed();
        s2.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        e
    });
    stop.store(true, Ordering::Relaxed);
    assert!(
        elapsed < Duration::from_secs(5),
        "main was starved: {elapsed:?}"
    );
}

#[test]
fn unmarked_blocking_call_does_not_freeze_main() {
    // std::thread::sleep inside a goroutine without gmp::blocking: sysmon
    // must move the P away so that main finishes while the sleeper sleeps.
    let rt = gmp::Runtime::builder().procs(1).build().unwrap();
    let (main_done_at, sleeper_done_at) = rt.block_on(|| {
        let t0 = Instant::now();
        let h = gmp::go(move || {
            std::thread::sleep(Duration::from_millis(1000));
            t0.elapsed()
        });
        gmp::yield_now();
        let mut work = 0u64;
        for i in 0..1000u64 {
            work += i;
            if i % 100 == 0 {
                gmp::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(work, 499_500);
        let main_done = t0.elapsed();
        (main_done, h.join().unwrap())
    });
    assert!(
        main_done_at < sleeper_done_at,
        "main finished at {main_done_at:?}, after the sleeper ({sleeper_done_at:?})"
    );
    assert!(
        main_done_at < Duration::from_millis(900),
        "main took {main_done_at:?}"
    );
}

#[test]
fn a_stray_preempt_signal_leaves_an_unasked_goroutine_alone() {
    // The preemption signal names no goroutine: sysmon sets one's flag and
    // then signals its thread, and by the time the signal lands that
    // goroutine may have yielded and another started a fresh slice. Only an
    // asked goroutine may lose its P (Go's wantAsyncPreempt). No sysmon
    // here, so nothing ever asks: every signal is stray.
    let rt = gmp::Runtime::builder()
        .procs(1)
        .no_sysmon()
        .build()
        .unwrap();
    let (spins, m) = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = Arc::new(std::sync::Mutex::new(None));
        let (s2, t2) = (stop.clone(), thread.clone());
        let signaller = std::thread::spawn(move || {
            let t = loop {
                if let Some(t) = *t2.lock().unwrap() {
                    break t;
                }
                std::thread::sleep(Duration::from_micros(100));
            };
            for _ in 0..50 {
                nix::sys::pthread::pthread_kill(t, nix::sys::signal::Signal::SIGURG).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
            s2.store(true, Ordering::Relaxed);
        });
        let h = gmp::go(move || {
            *thread.lock().unwrap() = Some(nix::sys::pthread::pthread_self());
            let mut spins = 0u64;
            // User code only: the signal finds the M outside the runtime.
            while !stop.load(Ordering::Relaxed) {
                spins = std::hint::black_box(spins + 1);
            }
            spins
        });
        let spins = h.join().unwrap();
        signaller.join().unwrap();
        (spins, gmp::metrics().unwrap())
    });
    assert!(spins > 0);
    assert_eq!(m.forced_handoffs, 0, "{m:?}");
}

#[test]
fn ping_pong_shares_time_with_a_hog() {
    // Go's TestPingPongHog idea: a hog and a ping-pong pair on one P; both
    // get CPU within a bound.
    let rt = gmp::Runtime::builder().procs(1).build().unwrap();
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let hog_iters = Arc::new(AtomicU64::new(0));
        let (s2, hi) = (stop.clone(), hog_iters.clone());
        let hog = gmp::go(move || {
            while !s2.load(Ordering::Relaxed) {
                hi.fetch_add(1, Ordering::Relaxed);
            }
        });
        let (tx1, rx1) = gmp::chan::<u64>(0);
        let (tx2, rx2) = gmp::chan::<u64>(0);
        let echo = gmp::go(move || {
            while let Ok(v) = rx1.recv() {
                if tx2.send(v).is_err() {
                    break;
                }
            }
        });
        let t = Instant::now();
        let mut rounds = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            tx1.send(rounds).unwrap();
            assert_eq!(rx2.recv().unwrap(), rounds);
            rounds += 1;
        }
        stop.store(true, Ordering::Relaxed);
        drop(tx1);
        echo.join().unwrap();
        hog.join().unwrap();
        assert!(rounds > 10, "ping-pong starved by the hog: {rounds} rounds");
        assert!(hog_iters.load(Ordering::Relaxed) > 0, "hog starved");
    });
}

#[test]
fn yield_progress() {
    // Go's TestYieldProgress: a goroutine spinning on yield_now lets
    // another one finish.
    let rt = gmp::Runtime::builder().procs(1).build().unwrap();
    rt.block_on(|| {
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        let h = gmp::go(move || d2.store(true, Ordering::SeqCst));
        let t = Instant::now();
        while !done.load(Ordering::SeqCst) {
            gmp::yield_now();
            assert!(t.elapsed() < Duration::from_secs(5));
        }
        h.join().unwrap();
    });
}

#[test]
fn goroutine_parallelism() {
    // Go's TestGoroutineParallelism idea: with P procs, P goroutines
    // busy-waiting on a shared counter all make progress together.
    let procs = 2;
    let rt = gmp::Runtime::builder().procs(procs).build().unwrap();
    rt.block_on(move || {
        let x = Arc::new(AtomicU64::new(0));
        let n = 200u64;
        let hs: Vec<_> = (0..procs as u64)
            .map(|p| {
                let x = x.clone();
                gmp::go(move || {
                    for i in 0..n {
                        let want = p + i * procs as u64;
                        let t = Instant::now();
                        while x.load(Ordering::SeqCst) != want {
                            assert!(
                                t.elapsed() < Duration::from_secs(20),
                                "no parallel progress"
                            );
                            std::hint::spin_loop();
                        }
                        x.store(want + 1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(x.load(Ordering::SeqCst), n * procs as u64);
    });
}

#[test]
fn block_locked_goroutine() {
    // Go's TestBlockLocked: a goroutine locked to its thread blocks and
    // wakes repeatedly, and everything else still works.
    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = gmp::chan::<u32>(0);
        let h = gmp::go(move || {
            gmp::lock_os_thread();
            let tid = gmp_m::gettid();
            for i in 0..100 {
                tx.send(i).unwrap();
                assert_eq!(gmp_m::gettid(), tid);
            }
            gmp::unlock_os_thread();
        });
        for i in 0..100 {
            assert_eq!(rx.recv().unwrap(), i);
        }
        h.join().unwrap();
    });
}

/// Go's `TestPingPongHog` (src/runtime/proc_test.go; Copyright The Go
/// Authors, BSD license; rewritten here): a "hog" pair and a "light" pair
/// ping-pong on one P; the hog does 1,000,000 units of work per hand-off,
/// the light pair 1,000. If time slices work (runnext inheritance ended by
/// sysmon's preemption), both pairs get similar CPU time, so the work they
/// count is within a factor of 2 (Go's own test allows 5; Go 1.19 measures
/// 0.9-1.3 here; gmp 0.9-1.15 on a loaded 2-core box). It measured 0.3-0.5
/// while a late preemption signal, meant for a light goroutine that had
/// already yielded, detached the hog that took the P next; and 1.2-2.3 while
/// sysmon timed plain slices from the M's coarse-clock stamp, which lags
/// while hogs run, ending some slices early.
#[test]
fn ping_pong_hog_shares_time() {
    // A timing measurement on a shared 2-core box: take the best of five
    // tries (a broken scheduler is off by ~1000x, not by a blip).
    let factor = 2;
    let mut tries = Vec::new();
    for _ in 0..5 {
        let (hog, light) = ping_pong_hog_once();
        eprintln!(
            "ping-pong hog/light = {:.2}",
            hog as f64 / light.max(1) as f64
        );
        assert!(
            hog > 0 && light > 0,
            "a pair starved: hog {hog}, light {light}"
        );
        if hog / factor <= light && light / factor <= hog {
            return;
        }
        tries.push(format!("{hog}/{light} = {:.2}", hog as f64 / light as f64));
    }
    panic!("want hog/light in [1/{factor}, {factor}]; got {tries:?}");
}

fn ping_pong_hog_once() -> (u64, u64) {
    // Pin the plain scheduler (GMP_DEBUG=randomize bypasses runnext and
    // reorders queues on purpose).
    let rt = gmp::Runtime::builder().procs(1).debug("").build().unwrap();
    rt.block_on(|| {
        let done = Arc::new(AtomicBool::new(false));
        let hog_count = Arc::new(AtomicU64::new(0));
        let light_count = Arc::new(AtomicU64::new(0));
        let run = |limit: u64,
                   counter: Arc<AtomicU64>,
                   rx: gmp::Receiver<bool>,
                   tx: gmp::Sender<bool>,
                   done: Arc<AtomicBool>| {
            gmp::go(move || {
                while rx.recv().is_ok() {
                    if done.load(Ordering::Relaxed) {
                        let _ = tx.send(true);
                        return;
                    }
                    let mut c = 0u64;
                    for _ in 0..limit {
                        c = std::hint::black_box(c + 1);
                    }
                    counter.fetch_add(c, Ordering::Relaxed);
                    if tx.send(true).is_err() {
                        return;
                    }
                }
            })
        };
        let mut hs = Vec::new();
        for (limit, counter) in [
            (1_000_000u64, hog_count.clone()),
            (1_000, light_count.clone()),
        ] {
            // A pair: a -> b -> a ...
            let (a_tx, a_rx) = gmp::chan::<bool>(0);
            let (b_tx, b_rx) = gmp::chan::<bool>(0);
            hs.push(run(limit, counter.clone(), a_rx, b_tx, done.clone()));
            hs.push(run(limit, counter, b_rx, a_tx.clone(), done.clone()));
            // Kick the pair off.
            let kick = a_tx;
            gmp::go(move || {
                let _ = kick.send(true);
            });
        }
        gmp::sleep(Duration::from_millis(800));
        done.store(true, Ordering::Relaxed);
        let h = hog_count.load(Ordering::Relaxed);
        let l = light_count.load(Ordering::Relaxed);
        if std::env::var_os("PPH_METRICS").is_some() {
            let m = gmp::metrics().unwrap();
            eprintln!(
                "preempt_requests {} preemptions {} forced {} syscall_handoffs {} threads {}",
                m.preempt_requests, m.preemptions, m.forced_handoffs, m.syscall_handoffs, m.threads
            );
        }
        (h, l)
    })
}

/// A goroutine whose slice is over but for whose CPU nobody waits is left
/// alone (no signal, no trip through the global queue): on 1 P, a hog runs
/// 40 ms (four plain slices) while main is parked on `join`, and sysmon
/// asks nothing. Then main's timer falls due on the hogged P, and the hog
/// is asked to yield so main runs.
#[test]
fn a_hog_nobody_waits_for_is_not_preempted() {
    let rt = gmp::Runtime::builder().procs(1).build().unwrap();
    let (quiet, after) = rt.block_on(|| {
        let h = gmp::go(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(40) {
                std::hint::black_box(0);
            }
            gmp::metrics().unwrap()
        });
        let quiet = h.join().unwrap();
        // Now someone waits: main's own wake-up, behind a second hog.
        let stop = Arc::new(AtomicBool::new(false));
        let h2 = gmp::go(hog(stop.clone()));
        gmp::yield_now(); // let the hog take the P
        gmp::sleep(Duration::from_millis(1));
        let after = gmp::metrics().unwrap();
        stop.store(true, Ordering::Relaxed);
        h2.join().unwrap();
        (quiet, after)
    });
    assert_eq!(
        (
            quiet.preempt_requests,
            quiet.preemptions,
            quiet.forced_handoffs
        ),
        (0, 0, 0),
        "a hog nobody waited for was preempted: {quiet:?}"
    );
    assert!(
        after.preempt_requests + after.alarm_preempts + after.forced_handoffs > 0,
        "main resumed behind a hog without a preemption: {after:?}"
    );
}

#[test]
fn a_p_taken_from_a_hog_goes_to_a_parked_spare_m() {
    // Every P runs a hog; main sleeps, so each wake-up needs a P taken from
    // a hog and an M to run it. A spare M is kept parked for that hand-off
    // (proc::ensure_spare_m), so after main resumes one must come back to
    // the idle list, and the thread count must not grow with the cycles.
    const PROCS: usize = 2;
    const CYCLES: usize = 30;
    let rt = gmp::Runtime::builder().procs(PROCS).build().unwrap();
    let sched = rt.sched().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let (spare_seen, threads) = rt.block_on(move || {
        let hs: Vec<_> = (0..PROCS).map(|_| gmp::go(hog(s2.clone()))).collect();
        gmp::yield_now();
        let mut threads = Vec::new();
        let mut spare_seen = 0;
        for _ in 0..CYCLES {
            gmp::sleep(Duration::from_millis(1));
            // The spare is created after the hand-off, by whoever woke the
            // last idle M: give its thread time to start and park.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(2) {
                if gmp::metrics().unwrap().idle_threads >= 1 {
                    spare_seen += 1;
                    break;
                }
                std::hint::spin_loop();
            }
            threads.push(gmp::metrics().unwrap().threads);
        }
        s2.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        (spare_seen, threads)
    });
    stop.store(true, Ordering::Relaxed);
    assert_eq!(spare_seen, CYCLES, "no parked spare M after a hand-off");
    // A spare is made only while no M is idle, one at a time, so the count
    // is at most the Ms that are not idle at such a moment plus one: one
    // per P, one per hog that lost its P (it keeps its thread), one in the
    // blocking netpoll, one per P between giving its P up and parking, and
    // the spare. A spare per hand-off would pass that within a few cycles.
    let max = *threads.iter().max().unwrap();
    assert!(
        max <= 3 * PROCS + 2,
        "threads grew with hand-offs: {threads:?} (scheduler mcount {})",
        sched.mcount()
    );
}
