//! 100,000 goroutines sleeping at once is routine: all wake, none early.
//! (Its own test binary: cargo runs binaries one at a time, so the load
//! does not disturb the timing tests of `time.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

#[test]
fn one_hundred_thousand_sleepers() {
    const N: usize = 100_000;
    let rt = gmp::Runtime::builder()
        .procs(2)
        .stack_size(32 * 1024)
        .build()
        .unwrap();
    let t = Instant::now();
    let (woke, early, peak) = rt.block_on(move || {
        let woke = Arc::new(AtomicUsize::new(0));
        let early = Arc::new(AtomicUsize::new(0));
        let sleeping = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        // Everyone waits at a gate (channels closed below, 100 waiters
        // each), then all sleep at once.
        let gates: Vec<_> = (0..N / 100).map(|_| gmp::chan::<()>(0)).collect();
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let (woke, early) = (woke.clone(), early.clone());
                let (sleeping, peak) = (sleeping.clone(), peak.clone());
                let gate = gates[i / 100].1.clone();
                gmp::go(move || {
                    let _ = gate.recv();
                    let n = sleeping.fetch_add(1, Ordering::Relaxed) + 1;
                    peak.fetch_max(n, Ordering::Relaxed);
                    let t = Instant::now();
                    gmp::sleep(10 * MS);
                    if t.elapsed() < 10 * MS {
                        early.fetch_add(1, Ordering::Relaxed);
                    }
                    sleeping.fetch_sub(1, Ordering::Relaxed);
                    woke.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        let spawned = t.elapsed();
        drop(gates);
        for h in hs {
            h.join().unwrap();
        }
        eprintln!("spawned in {spawned:?}, all woke after {:?}", t.elapsed());
        (
            woke.load(Ordering::Relaxed),
            early.load(Ordering::Relaxed),
            peak.load(Ordering::Relaxed),
        )
    });
    assert_eq!(woke, N);
    assert_eq!(early, 0);
    // Tens of thousands really were asleep at the same time (how many
    // depends on how fast the gates release them: ~half in debug builds).
    assert!(peak > N / 10, "peak sleepers: {peak}");
    eprintln!("100,000 sleepers: {:?}, peak {peak}", t.elapsed());
}
