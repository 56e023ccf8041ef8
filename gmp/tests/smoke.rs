use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn run_returns_value() {
    assert_eq!(gmp::run(|| 42), 42);
}

#[test]
fn spawn_and_join_many() {
    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    let n = rt.block_on(|| {
        let c = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..10_000)
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
    assert_eq!(n, 10_000);
}

#[test]
fn sleep_and_yield() {
    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    rt.block_on(|| {
        let t = std::time::Instant::now();
        gmp::sleep(std::time::Duration::from_millis(10));
        assert!(t.elapsed() >= std::time::Duration::from_millis(10));
        for _ in 0..100 {
            gmp::yield_now();
        }
    });
}
