//! The runtime core (issue 2): spawning, parking, stealing, resizing,
//! panics, errors, locked threads.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gmp_g::WaitReason;
use gmp_sched::park::{park, Waiter};

/// A one-shot gate built directly on the runtime's park primitive: every
/// goroutine that `wait`s parks until `open`.
#[derive(Default)]
struct Gate {
    st: Mutex<(bool, Vec<Waiter>)>,
}

impl Gate {
    fn wait(&self) {
        let mut st = self.st.lock().unwrap();
        if st.0 {
            return;
        }
        st.1.push(Waiter::current());
        park(WaitReason::ChanReceive, move || drop(st));
    }
    fn open(&self) {
        let ws = {
            let mut st = self.st.lock().unwrap();
            st.0 = true;
            std::mem::take(&mut st.1)
        };
        for w in ws {
            w.wake();
        }
    }
    fn waiting(&self) -> usize {
        self.st.lock().unwrap().1.len()
    }
}

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

#[test]
fn a_million_goroutines_spawned_and_joined() {
    let n = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };
    let count = rt(2).block_on(move || {
        let c = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let c = c.clone();
                gmp::go(move || {
                    c.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        c.load(Ordering::Relaxed)
    });
    assert_eq!(count, n);
}

#[test]
fn a_million_goroutines_parked_alive_at_once() {
    // Stock vm.max_map_count is 65530: one mapping per stack would die at
    // ~32k. Slab stacks with MADV_GUARD guards keep the count flat.
    let n = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let r = rt(2);
    let (woken, maps_during) = r.block_on(move || {
        let gate = Arc::new(Gate::default());
        let woken = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (g, w) = (gate.clone(), woken.clone());
                gmp::go(move || {
                    g.wait();
                    w.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        let t = Instant::now();
        while gate.waiting() < n {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "goroutines never all parked"
            );
            gmp::sleep(Duration::from_millis(5));
        }
        assert!(
            gmp::num_goroutine() > n,
            "all {n} (plus main) alive at once"
        );
        let m = gmp::metrics().unwrap();
        assert!(m.goroutines_waiting >= n);
        let maps = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count();
        gate.open();
        for h in hs {
            h.join().unwrap();
        }
        (woken.load(Ordering::Relaxed), maps)
    });
    assert_eq!(woken, n);
    if gmp_stack::guard_mode() == gmp_stack::GuardMode::Madvise {
        assert!(
            maps_during < 30_000,
            "{maps_during} mappings for {n} goroutines"
        );
    }
}

#[test]
fn two_busy_goroutines_run_in_parallel_on_two_ms() {
    let r = rt(2);
    r.block_on(|| {
        // Each goroutine spins until it has seen the other running at the
        // same time, recording its thread id.
        let running = Arc::new(AtomicUsize::new(0));
        let overlap = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (running, overlap) = (running.clone(), overlap.clone());
                gmp::go(move || {
                    let tid = gmp_m::gettid();
                    running.fetch_add(1, Ordering::SeqCst);
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(10) && !overlap.load(Ordering::SeqCst) {
                        if running.load(Ordering::SeqCst) == 2 {
                            overlap.store(true, Ordering::SeqCst);
                        }
                        std::hint::spin_loop();
                    }
                    tid
                })
            })
            .collect();
        let tids: HashSet<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            overlap.load(Ordering::SeqCst),
            "the two goroutines never ran at the same time"
        );
        assert_eq!(tids.len(), 2, "both ran on one thread");
    });
}

#[test]
fn idle_p_steals_from_a_loaded_one() {
    let r = rt(2);
    let steals = r.block_on(|| {
        let before = gmp::metrics().unwrap().steals;
        // Spawn a batch from one goroutine: they all land on this P's queue.
        // The other P is idle and must steal to help.
        let done = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let done = done.clone();
                gmp::go(move || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_millis(2) {
                        std::hint::spin_loop();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), 64);
        gmp::metrics().unwrap().steals - before
    });
    assert!(steals > 0, "no goroutine was stolen by the idle P");
}

#[test]
fn park_ready_stress_across_ps_loses_no_wakeup() {
    // Ping-pong chains across Ps through the raw park/ready primitive; a
    // lost wake-up hangs a chain, which the deadline turns into a failure.
    let r = rt(4.min(gmp::default_procs().max(2)));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let total = r.block_on(|| {
            let pairs = 50;
            let rounds = 2_000;
            let hs: Vec<_> = (0..pairs)
                .map(|_| {
                    gmp::go(move || {
                        let a = Arc::new(Slot::default());
                        let b = Arc::new(Slot::default());
                        let (a2, b2) = (a.clone(), b.clone());
                        let echo = gmp::go(move || {
                            for _ in 0..rounds {
                                let v = a2.take();
                                b2.put(v + 1);
                            }
                        });
                        let mut sum = 0u64;
                        for i in 0..rounds {
                            a.put(i);
                            sum += b.take() - i;
                        }
                        echo.join().unwrap();
                        sum
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        tx.send(total).unwrap();
    });
    let total = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a wake-up was lost: the stress test hung");
    assert_eq!(total, 50 * 2_000);
}

/// A one-value mailbox on park/ready.
#[derive(Default)]
struct Slot {
    st: Mutex<(Option<u64>, Option<Waiter>)>,
}

impl Slot {
    fn put(&self, v: u64) {
        let w = {
            let mut st = self.st.lock().unwrap();
            assert!(st.0.is_none());
            st.0 = Some(v);
            st.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
    fn take(&self) -> u64 {
        loop {
            let mut st = self.st.lock().unwrap();
            if let Some(v) = st.0.take() {
                return v;
            }
            st.1 = Some(Waiter::current());
            park(WaitReason::ChanReceive, move || drop(st));
        }
    }
}

#[test]
fn set_gomaxprocs_down_and_up_under_load_loses_nothing() {
    let r = rt(2);
    r.block_on(|| {
        let done = Arc::new(AtomicU64::new(0));
        let n = 2_000u64;
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let done = done.clone();
                gmp::go(move || {
                    for _ in 0..20 {
                        gmp::yield_now();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i
                })
            })
            .collect();
        assert_eq!(gmp::gomaxprocs(), 2);
        assert_eq!(gmp::set_gomaxprocs(1), 2);
        assert_eq!(gmp::gomaxprocs(), 1);
        gmp::sleep(Duration::from_millis(5));
        assert_eq!(gmp::set_gomaxprocs(3), 1);
        assert_eq!(gmp::gomaxprocs(), 3);
        assert_eq!(gmp::set_gomaxprocs(2), 3);
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, n * (n - 1) / 2);
        assert_eq!(done.load(Ordering::Relaxed), n);
        assert_eq!(gmp::gomaxprocs(), 2);
    });
}

#[test]
fn panics_are_isolated() {
    let r = rt(2);
    r.block_on(|| {
        let bad = gmp::go(|| -> u32 { panic!("boom in a goroutine") });
        let good = gmp::go(|| 7u32);
        let err = bad.join().unwrap_err();
        assert_eq!(err.downcast_ref::<&str>(), Some(&"boom in a goroutine"));
        assert_eq!(good.join().unwrap(), 7);
        // A detached panicking goroutine is reported and the runtime goes on.
        drop(gmp::go(|| panic!("detached boom")));
        gmp::sleep(Duration::from_millis(10));
        let hs: Vec<_> = (0..100).map(|i| gmp::go(move || i)).collect();
        let s: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(s, 4950);
    });
    // The main goroutine's panic comes back to block_on's caller.
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.block_on(|| panic!("main panicked"))
    }))
    .unwrap_err();
    assert_eq!(e.downcast_ref::<&str>(), Some(&"main panicked"));
    // And the runtime still works afterwards.
    assert_eq!(r.block_on(|| gmp::go(|| 5).join().unwrap()), 5);
}

#[test]
fn clear_errors_for_bad_configuration() {
    let e = gmp::Runtime::builder().procs(0).build().unwrap_err();
    assert_eq!(e, gmp::BuildError::ZeroProcs);
    assert!(e.to_string().contains("at least 1"));
    let e = gmp::Runtime::builder()
        .stack_size(4096)
        .build()
        .unwrap_err();
    assert!(matches!(
        e,
        gmp::BuildError::Stack(gmp_stack::StackError::TooSmall { .. })
    ));
    assert!(e.to_string().contains("below the minimum"), "{e}");
}

#[test]
fn go_outside_a_runtime_says_so() {
    let e = gmp::try_go(|| 1).unwrap_err();
    assert_eq!(e, gmp::SpawnError::NoRuntime);
    let p = std::panic::catch_unwind(|| gmp::go(|| 1)).unwrap_err();
    let msg = p.downcast_ref::<String>().unwrap();
    assert!(msg.contains("outside a gmp runtime"), "{msg}");
}

#[test]
fn join_from_a_plain_thread() {
    let r = rt(2);
    let h = r.spawn(|| {
        gmp::sleep(Duration::from_millis(5));
        99
    });
    assert_eq!(h.join().unwrap(), 99);
}

#[test]
fn lock_os_thread_keeps_the_thread_while_others_run() {
    let r = rt(2);
    r.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let others: Vec<_> = (0..4)
            .map(|_| {
                let (stop, progress) = (stop.clone(), progress.clone());
                gmp::go(move || {
                    while !stop.load(Ordering::Relaxed) {
                        progress.fetch_add(1, Ordering::Relaxed);
                        gmp::yield_now();
                    }
                })
            })
            .collect();
        let locked = gmp::go(|| {
            gmp::lock_os_thread();
            let tid = gmp_m::gettid();
            for _ in 0..1000 {
                gmp::yield_now();
                assert_eq!(gmp_m::gettid(), tid, "locked goroutine moved threads");
            }
            gmp::unlock_os_thread();
            tid
        });
        let before = progress.load(Ordering::Relaxed);
        locked.join().unwrap();
        let after = progress.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        for h in others {
            h.join().unwrap();
        }
        assert!(after > before, "other goroutines made no progress");
    });
}

#[test]
fn new_runtime_after_drop_in_same_process() {
    for i in 0..5 {
        let r = rt(2);
        assert_eq!(
            r.block_on(move || gmp::go(move || i * 2).join().unwrap()),
            i * 2
        );
        drop(r);
    }
}

#[test]
fn main_goroutine_is_goroutine_one() {
    let r = rt(1);
    assert_eq!(r.block_on(gmp::goid), Some(1));
    let ids = r.block_on(|| {
        let hs: Vec<_> = (0..40).map(|_| gmp::go(|| gmp::goid().unwrap())).collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<HashSet<_>>()
    });
    assert_eq!(ids.len(), 40, "goroutine ids are unique");
    assert!(!ids.contains(&1));
}

/// A goroutine parked on a channel when its runtime is dropped may still be
/// in that channel's wait queue; a plain thread that sends afterwards must
/// not touch freed memory. Without the fix the freed G is reused by the
/// next runtime's goroutines and the send's wake-up fails its status check
/// (or worse).
#[test]
fn waking_a_goroutine_of_a_dropped_runtime_is_harmless() {
    let (tx, rx) = gmp::channel::chan::<u64>(0);
    let (started_tx, started_rx) = gmp::channel::chan::<()>(1);
    {
        let r = rt(2);
        r.block_on(move || {
            gmp::go(move || {
                started_tx.send(()).unwrap();
                // Parks forever: nobody sends while the runtime lives.
                let _ = rx.recv();
            });
            started_rx.recv().unwrap();
            // Let the receiver reach its park.
            for _ in 0..100 {
                gmp::yield_now();
            }
        });
    }
    // A new runtime churns through goroutines (reusing any freed memory).
    let r2 = rt(2);
    let sum: u64 = r2.block_on(|| {
        let hs: Vec<_> = (0..2000u64).map(|i| gmp::go(move || i)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(sum, 2000 * 1999 / 2);
    // The old receiver is still listed in the channel's wait queue, so a
    // send finds it and hands the value over; its runtime is gone, so the
    // wake-up is dropped. Nothing crashes and r2 keeps working.
    let sent = std::thread::spawn(move || tx.try_send(7).is_ok())
        .join()
        .expect("sending to an abandoned goroutine must not panic");
    assert!(sent, "the parked receiver takes the value");
    assert_eq!(r2.block_on(|| gmp::go(|| 5u32).join().unwrap()), 5);
}

/// A result that counts its drops, to check that every result is dropped
/// exactly once whoever ends up holding it.
struct Counted(u64, Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

/// The join state lives in the G: the handle and the goroutine race to let
/// go of it (join or drop before, during or after the goroutine's exit),
/// from goroutines and from plain threads. Every result reaches its joiner
/// or is dropped exactly once, and a G recycled by either side is never
/// confused with the next goroutine that reuses it (ids and values match).
#[test]
fn join_handles_race_goroutine_exits_without_loss_or_confusion() {
    let drops = Arc::new(AtomicUsize::new(0));
    let r = rt(2);
    const N: u64 = 20_000;
    let d = drops.clone();
    let (joined, from_threads) = r.block_on(move || {
        let mut joined = 0u64;
        let mut keep = Vec::new();
        for i in 0..N {
            let d = d.clone();
            let h = gmp::go(move || Counted(i, d));
            match i % 4 {
                // Dropped at once (usually before it runs).
                0 => drop(h),
                // Joined at once.
                1 => {
                    let id = h.id();
                    let v = h.join().unwrap();
                    assert_eq!(v.0, i, "goroutine {id} returned another's value");
                    joined += 1;
                }
                // Kept: dropped or joined later, after it exited.
                _ => keep.push((i, h)),
            }
        }
        // Hand half of the kept handles to plain threads.
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for (k, (i, h)) in keep.into_iter().enumerate() {
            if k % 2 == 0 {
                mine.push((i, h));
            } else {
                theirs.push((i, h));
            }
        }
        let t = std::thread::spawn(move || {
            let mut n = 0u64;
            for (i, h) in theirs {
                if i % 3 == 0 {
                    drop(h);
                } else {
                    assert_eq!(h.join().unwrap().0, i);
                    n += 1;
                }
            }
            n
        });
        for (i, h) in mine {
            if i % 3 == 0 {
                drop(h);
            } else {
                assert_eq!(h.join().unwrap().0, i);
                joined += 1;
            }
        }
        let from_threads = gmp::blocking(move || t.join().unwrap());
        (joined, from_threads)
    });
    assert!(joined > 0 && from_threads > 0);
    // Detached results are dropped by their goroutines, which may still be
    // finishing; wait for them in a fresh batch on the same runtime.
    r.block_on(|| {
        for _ in 0..100 {
            gmp::yield_now();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while drops.load(Ordering::Relaxed) < N as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        drops.load(Ordering::Relaxed),
        N as usize,
        "each result dropped once"
    );
    // Gs released by handles were recycled: the runtime still spawns fine.
    assert_eq!(r.block_on(|| gmp::go(|| 3u8).join().unwrap()), 3);
}

/// A handle may outlive its runtime: joining it afterwards gets the result
/// (the runtime's drop leaves the G to the handle), and dropping it frees
/// the G and the result.
#[test]
fn join_handles_outlive_their_runtime() {
    let drops = Arc::new(AtomicUsize::new(0));
    let r = rt(2);
    let d = drops.clone();
    let hs: Vec<_> = (0..100u64)
        .map(|i| {
            let d = d.clone();
            r.spawn(move || Counted(i, d))
        })
        .collect();
    while !hs.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Give the goroutines time to exit after completing.
    std::thread::sleep(Duration::from_millis(20));
    drop(r);
    let mut n = 0;
    for (i, h) in hs.into_iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(h.join().unwrap().0, i as u64);
            n += 1;
        } else {
            drop(h);
        }
    }
    assert_eq!(n, 50);
    assert_eq!(drops.load(Ordering::Relaxed), 100);
}
