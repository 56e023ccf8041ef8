//! Channel micro-benchmarks, ignored by default. Run them in release:
//! `cargo test --release -p gmp --test chan_bench -- --ignored --nocapture`.
//! Reference numbers (Go 1.19, 2-vCPU VM) are in `shared/GO-RUNTIME.md`,
//! section 13.2.

use std::time::{Duration, Instant};

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

fn report(name: &str, procs: usize, el: Duration, n: u64) {
    eprintln!(
        "{name:<28} procs {procs}: {:>8.1} ns/op",
        el.as_nanos() as f64 / n as f64
    );
}

/// Go's BenchmarkChanUncontended: 100 sends then 100 receives on a private
/// buffered channel (ns per operation).
#[test]
#[ignore]
fn bench_uncontended() {
    rt(1).block_on(|| {
        let (tx, rx) = gmp::chan::<u64>(100);
        let iters = 20_000u64;
        let t = Instant::now();
        for _ in 0..iters {
            for i in 0..100 {
                tx.send(i).unwrap();
            }
            for _ in 0..100 {
                rx.recv().unwrap();
            }
        }
        report("uncontended send+recv", 1, t.elapsed(), iters * 200);
    });
}

/// Unbuffered round trip between two goroutines (ns per round trip).
#[test]
#[ignore]
fn bench_pingpong() {
    for procs in [1, 2] {
        rt(procs).block_on(move || {
            let (ptx, prx) = gmp::chan::<u64>(0);
            let (qtx, qrx) = gmp::chan::<u64>(0);
            gmp::go(move || {
                for v in &prx {
                    qtx.send(v).unwrap();
                }
            });
            let n = 200_000u64;
            let t = Instant::now();
            for i in 0..n {
                ptx.send(i).unwrap();
                qrx.recv().unwrap();
            }
            report("unbuffered round trip", procs, t.elapsed(), n);
        });
    }
}

/// Buffered fan-in: several producers, one consumer (ns per message).
#[test]
#[ignore]
fn bench_fanin() {
    for procs in [1, 2] {
        for producers in [4u64, 1000] {
            rt(procs).block_on(move || {
                let per = 2_000_000 / producers;
                let (tx, rx) = gmp::chan::<u64>(1024);
                let t = Instant::now();
                for _ in 0..producers {
                    let tx = tx.clone();
                    gmp::go(move || {
                        for v in 0..per {
                            tx.send(v).unwrap();
                        }
                    });
                }
                drop(tx);
                let n = rx.iter().count() as u64;
                report(
                    &format!("fan-in {producers} producers"),
                    procs,
                    t.elapsed(),
                    n,
                );
            });
        }
    }
}

/// A 2-case select on private buffered channels (Go's
/// BenchmarkSelectUncontended), ns per select.
#[test]
#[ignore]
fn bench_select_uncontended() {
    rt(1).block_on(|| {
        let (tx1, rx1) = gmp::chan::<u64>(1);
        let (tx2, rx2) = gmp::chan::<u64>(1);
        tx1.send(0).unwrap();
        let n = 1_000_000u64;
        let t = Instant::now();
        for _ in 0..n {
            gmp::select! {
                recv(rx1) -> v => tx2.send(v.unwrap()).unwrap(),
                recv(rx2) -> v => tx1.send(v.unwrap()).unwrap(),
            }
        }
        report("select uncontended", 1, t.elapsed(), n);
    });
}

/// Go's BenchmarkChanNonblocking: a failed try_recv.
#[test]
#[ignore]
fn bench_nonblocking() {
    let (_tx, rx) = gmp::chan::<u64>(0);
    let n = 10_000_000u64;
    let t = Instant::now();
    for _ in 0..n {
        assert!(rx.try_recv().is_err());
    }
    report("failed try_recv", 1, t.elapsed(), n);
}

/// Uncontended gmp::sync::Mutex lock+unlock.
#[test]
#[ignore]
fn bench_mutex_uncontended() {
    let m = gmp::sync::Mutex::new(0u64);
    let n = 10_000_000u64;
    let t = Instant::now();
    for _ in 0..n {
        *m.lock() += 1;
    }
    report("mutex lock+unlock", 1, t.elapsed(), n);
}
