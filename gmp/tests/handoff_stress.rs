//! Stress for the forced hand-off protocol: hogs that lose their P to the
//! preemption signal while sleepers, blocking calls, channel pairs and
//! spawners keep every other path of P ownership busy (signal detach,
//! `reattach_on_g0`, exitsyscall's fast and slow paths, sysmon's retake).
//!
//! A P owned twice, or lost, shows up as a panic on an M, a goroutine that
//! never runs again (a join that never returns: the watchdog fails the
//! test), or a count that does not add up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use gmp::net::{TcpListener, TcpStream};

fn busy(d: Duration, stop: &AtomicBool) {
    let t = Instant::now();
    while t.elapsed() < d && !stop.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
}

/// Each worker does at least this much, however long it takes, and then
/// goes on until told to stop: progress is asserted by completion (a
/// starved or lost goroutine hangs the run, and the watchdog fails it),
/// never by a count reached in a fixed time.
const MIN_SLEEPS: u64 = 3;
const MIN_BLOCKS: u64 = 3;
const MIN_PONGS: u64 = 100;
const MIN_CONNS: u64 = 1;
const MIN_BATCHES: u64 = 2;

fn run_mix(procs: usize, secs: f64) {
    let rt = gmp::Runtime::builder().procs(procs).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    // Watchdog: a lost goroutine must fail the run, not hang CI.
    let d2 = done.clone();
    let watchdog = std::thread::spawn(move || {
        let t = Instant::now();
        while !d2.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            if t.elapsed() > Duration::from_secs(120) {
                eprintln!(
                    "handoff_stress: stuck after 120 s; sending SIGQUIT for a goroutine dump"
                );
                // SAFETY: raising a signal in our own process; the runtime's
                // SIGQUIT handler prints every goroutine and exits.
                unsafe { libc::raise(libc::SIGQUIT) };
                std::thread::sleep(Duration::from_secs(2));
                std::process::exit(101);
            }
        }
    });
    let stop2 = stop.clone();
    let (sleeps, blocks, pongs, spawned, hog_runs, echoes, metrics) = rt.block_on(move || {
        let stop = stop2;
        let sleeps = Arc::new(AtomicU64::new(0));
        let blocks = Arc::new(AtomicU64::new(0));
        let pongs = Arc::new(AtomicU64::new(0));
        let spawned = Arc::new(AtomicU64::new(0));
        let hog_runs = Arc::new(AtomicU64::new(0));
        let echoes = Arc::new(AtomicU64::new(0));
        let mut hs = Vec::new();
        // Pure hogs: never enter the runtime until told to stop.
        for _ in 0..procs {
            let stop = stop.clone();
            let hog_runs = hog_runs.clone();
            hs.push(gmp::go(move || {
                busy(Duration::from_secs(3600), &stop);
                hog_runs.fetch_add(1, Ordering::Relaxed);
            }));
        }
        // Hogs that enter the runtime now and then (after losing the P).
        for i in 0..procs {
            let stop = stop.clone();
            let hog_runs = hog_runs.clone();
            hs.push(gmp::go(move || {
                while !stop.load(Ordering::Relaxed) {
                    busy(Duration::from_millis(3), &stop);
                    hog_runs.fetch_add(1, Ordering::Relaxed);
                    match i % 3 {
                        0 => gmp::yield_now(),
                        1 => gmp::gosched(),
                        _ => gmp::sleep(Duration::from_micros(100)),
                    }
                }
            }));
        }
        for _ in 0..300 {
            let stop = stop.clone();
            let sleeps = sleeps.clone();
            hs.push(gmp::go(move || {
                for k in 0.. {
                    if k >= MIN_SLEEPS && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    gmp::sleep(Duration::from_millis(1));
                    sleeps.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for i in 0..16 {
            let stop = stop.clone();
            let blocks = blocks.clone();
            hs.push(gmp::go(move || {
                for k in 0.. {
                    if k >= MIN_BLOCKS && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    gmp::blocking(|| std::thread::sleep(Duration::from_micros(50 + 40 * i)));
                    blocks.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for _ in 0..8 {
            let (ptx, prx) = gmp::chan::<u64>(0);
            let (qtx, qrx) = gmp::chan::<u64>(0);
            let stop = stop.clone();
            let pongs = pongs.clone();
            hs.push(gmp::go(move || {
                let mut n = 0u64;
                for k in 0.. {
                    if k >= MIN_PONGS && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    ptx.send(n).unwrap();
                    n = qrx.recv().unwrap() + 1;
                    pongs.fetch_add(1, Ordering::Relaxed);
                }
                drop(ptx);
            }));
            hs.push(gmp::go(move || {
                while let Ok(v) = prx.recv() {
                    if qtx.send(v).is_err() {
                        break;
                    }
                }
            }));
        }
        // Network: an echo server and clients that reconnect now and then
        // (netpoll parks and wakes, accept and connect readiness).
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        gmp::go(move || {
            while let Ok((mut c, _)) = l.accept() {
                gmp::go(move || {
                    let mut buf = [0u8; 2048];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        for id in 0..32u8 {
            let stop = stop.clone();
            let echoes = echoes.clone();
            hs.push(gmp::go(move || {
                let data = vec![id; 1500];
                let mut back = vec![0u8; 1500];
                for k in 0.. {
                    if k >= MIN_CONNS && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut c = TcpStream::connect(addr).unwrap();
                    for _ in 0..10 {
                        c.write_all(&data).unwrap();
                        c.read_exact(&mut back).unwrap();
                        assert_eq!(back, data);
                        echoes.fetch_add(1, Ordering::Relaxed);
                        gmp::sleep(Duration::from_micros(200 * (id as u64 % 5)));
                    }
                }
            }));
        }
        {
            let stop = stop.clone();
            let spawned = spawned.clone();
            hs.push(gmp::go(move || {
                for k in 0.. {
                    if k >= MIN_BATCHES && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let inner: Vec<_> = (0..50).map(|k| gmp::go(move || k * 2)).collect();
                    let sum: u64 = inner.into_iter().map(|h| h.join().unwrap()).sum();
                    assert_eq!(sum, 2 * (0..50).sum::<u64>());
                    spawned.fetch_add(50, Ordering::Relaxed);
                }
            }));
        }
        gmp::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        (
            sleeps.load(Ordering::Relaxed),
            blocks.load(Ordering::Relaxed),
            pongs.load(Ordering::Relaxed),
            spawned.load(Ordering::Relaxed),
            hog_runs.load(Ordering::Relaxed),
            echoes.load(Ordering::Relaxed),
            gmp::metrics().unwrap(),
        )
    });
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    // Every worker finished its minimum (or the run would have hung).
    assert!(sleeps >= 300 * MIN_SLEEPS, "sleeps {sleeps}");
    assert!(blocks >= 16 * MIN_BLOCKS, "blocks {blocks}");
    assert!(pongs >= 8 * MIN_PONGS, "pongs {pongs}");
    assert!(echoes >= 32 * MIN_CONNS * 10, "echoes {echoes}");
    assert!(spawned >= 50 * MIN_BATCHES, "spawned {spawned}");
    assert!(hog_runs >= procs as u64, "hogs did not all finish");
    assert!(
        metrics.forced_handoffs > 0,
        "the hogs never lost a P by signal: the test did not test the hand-off"
    );
}

#[test]
fn forced_handoffs_lose_no_p_and_no_goroutine_2_procs() {
    for _ in 0..3 {
        run_mix(2, 0.5);
    }
}

#[test]
fn forced_handoffs_lose_no_p_and_no_goroutine_3_procs() {
    run_mix(3, 0.8);
}
