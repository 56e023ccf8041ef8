//! gmp implementations of the `cargo xtask bench` workloads.
//!
//! `bench-gmp <workload> <size> <procs>` prints one
//! `RESULT name=.. runtime=gmp ns=.. units=.. ok=1` line (see
//! `xtask/peers/src/lib.rs`, shared with the tokio and may peers, for the
//! protocol and the workload shapes). Each workload is written the way the Go
//! version in `xtask/go/` is, with gmp's Go-like API.

#[path = "../../peers/src/lib.rs"]
mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gmp::sync::{Mutex, WaitGroup};

const RT: &str = "gmp";

fn main() {
    let args = parse_args();
    let rt = gmp::Runtime::builder()
        .procs(args.procs)
        .build()
        .expect("build gmp runtime");
    let n = args.size;
    let out = match args.workload.as_str() {
        "spawn" => rt.block_on(move || spawn(n)),
        "skynet" => rt.block_on(move || skynet_main(n)),
        "pingpong" => rt.block_on(move || pingpong(n)),
        "ring" => rt.block_on(move || ring(n)),
        "fanin" => rt.block_on(move || fanin(n)),
        "yield" => rt.block_on(move || yields(n)),
        "sleepers" => rt.block_on(move || sleepers(n)),
        "select" => rt.block_on(move || select(n)),
        "mutex" => rt.block_on(move || mutex(n)),
        "echo" => rt.block_on(move || echo(n)),
        "hog-latency" => hog_latency(&rt, args.procs),
        w => unreachable!("workload {w}"),
    };
    if std::env::var_os("GMP_BENCH_METRICS").is_some() {
        // Diagnostics for profiling a workload: the scheduler's counters.
        eprintln!("{:#?}", rt.metrics());
    }
    // `report` exits the process; the runtime is never dropped.
    report(RT, &args.workload, out)
}

fn wait_group(n: u64) -> Arc<WaitGroup> {
    let wg = Arc::new(WaitGroup::new());
    wg.add(n as isize);
    wg
}

fn spawn(n: u64) -> Outcome {
    struct Shared {
        counter: AtomicU64,
        wg: WaitGroup,
    }
    let shared = Arc::new(Shared {
        counter: AtomicU64::new(0),
        wg: WaitGroup::new(),
    });
    let t0 = Instant::now();
    shared.wg.add(n as isize);
    for _ in 0..n {
        let s = shared.clone();
        gmp::go(move || {
            s.counter.fetch_add(1, Ordering::Relaxed);
            s.wg.done();
        });
    }
    shared.wg.wait();
    let el = t0.elapsed();
    Outcome::expect(el, n, "counter", shared.counter.load(Ordering::Relaxed), n)
}

fn skynet(tx: gmp::Sender<u64>, num: u64, size: u64) {
    if size == 1 {
        let _ = tx.send(num);
        return;
    }
    let (ctx, crx) = gmp::chan(SKYNET_DIV as usize);
    let sub = size / SKYNET_DIV;
    for i in 0..SKYNET_DIV {
        let ctx = ctx.clone();
        gmp::go(move || skynet(ctx, num + i * sub, sub));
    }
    drop(ctx);
    let mut sum = 0;
    for _ in 0..SKYNET_DIV {
        sum += crx.recv().expect("skynet child vanished");
    }
    let _ = tx.send(sum);
}

fn skynet_main(leaves: u64) -> Outcome {
    if !is_power_of_div(leaves) {
        return Outcome {
            elapsed: Duration::ZERO,
            units: leaves,
            check: Err(format!("skynet: bad size {leaves}")),
        };
    }
    let t0 = Instant::now();
    let (tx, rx) = gmp::chan(1);
    gmp::go(move || skynet(tx, 0, leaves));
    let sum = rx.recv().unwrap_or(0);
    let el = t0.elapsed();
    println!("{sum}");
    Outcome::expect(el, 1, "sum", sum, skynet_expected(leaves))
}

fn pingpong(n: u64) -> Outcome {
    let (ping_tx, ping_rx) = gmp::chan::<u64>(0);
    let (pong_tx, pong_rx) = gmp::chan::<u64>(0);
    let t0 = Instant::now();
    let ponger = gmp::go(move || {
        while let Ok(v) = ping_rx.recv() {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let pinger = gmp::go(move || {
        let mut sum = 0u64;
        for i in 0..n {
            ping_tx.send(i).expect("ponger gone");
            sum += pong_rx.recv().expect("ponger gone");
        }
        sum
    });
    let sum = pinger.join().expect("pinger panicked");
    let el = t0.elapsed();
    ponger.join().expect("ponger panicked");
    Outcome::expect(el, n, "sum", sum, triangle(n))
}

fn ring(laps: u64) -> Outcome {
    let nodes = RING_NODES;
    let hops = laps * nodes;
    let mut txs = Vec::with_capacity(nodes as usize);
    let mut rxs = Vec::with_capacity(nodes as usize);
    for _ in 0..nodes {
        let (tx, rx) = gmp::chan::<u64>(0);
        txs.push(tx);
        rxs.push(rx);
    }
    let first = txs[0].clone();
    txs.rotate_left(1); // node i sends to node i+1
    let (done_tx, done_rx) = gmp::chan::<u64>(1);
    let mut handles = Vec::with_capacity(nodes as usize);
    for (i, (rx, tx)) in rxs.into_iter().zip(txs).enumerate() {
        let done = done_tx.clone();
        handles.push(gmp::go(move || {
            while let Ok(v) = rx.recv() {
                if v == 0 {
                    let _ = done.send(i as u64);
                    break;
                }
                if tx.send(v - 1).is_err() {
                    break;
                }
            }
            // dropping rx and tx closes the ring behind us
        }));
    }
    drop(done_tx);
    let t0 = Instant::now();
    first.send(hops).expect("ring node 0 gone");
    drop(first);
    let last = done_rx.recv().ok();
    let el = t0.elapsed();
    for h in handles {
        h.join().expect("ring node panicked");
    }
    Outcome::expect(el, hops, "final node", last, Some(hops % nodes))
}

fn fanin(size: u64) -> Outcome {
    let (per, total) = split(size, FANIN_PRODUCERS);
    let (tx, rx) = gmp::chan::<u64>(FANIN_CAP);
    let t0 = Instant::now();
    for _ in 0..FANIN_PRODUCERS {
        let tx = tx.clone();
        gmp::go(move || {
            for v in 0..per {
                tx.send(v).expect("consumer gone");
            }
        });
    }
    drop(tx);
    let (mut count, mut sum) = (0u64, 0u64);
    while let Ok(v) = rx.recv() {
        count += 1;
        sum += v;
    }
    let el = t0.elapsed();
    Outcome::expect(
        el,
        total,
        "(count,sum)",
        (count, sum),
        (total, FANIN_PRODUCERS * triangle(per)),
    )
}

fn yields(size: u64) -> Outcome {
    let (per, total) = split(size, YIELD_TASKS);
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let wg = wait_group(YIELD_TASKS);
    for _ in 0..YIELD_TASKS {
        let wg = wg.clone();
        let count = count.clone();
        gmp::go(move || {
            for _ in 0..per {
                gmp::yield_now();
            }
            count.fetch_add(per, Ordering::Relaxed);
            wg.done();
        });
    }
    wg.wait();
    let el = t0.elapsed();
    Outcome::expect(el, total, "yields", count.load(Ordering::Relaxed), total)
}

fn sleepers(n: u64) -> Outcome {
    let early = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let wg = wait_group(n);
    for _ in 0..n {
        let wg = wg.clone();
        let early = early.clone();
        gmp::go(move || {
            let s = Instant::now();
            gmp::time::sleep(SLEEPER_SLEEP);
            if s.elapsed() < SLEEPER_SLEEP {
                early.fetch_add(1, Ordering::Relaxed);
            }
            wg.done();
        });
    }
    wg.wait();
    let el = t0.elapsed();
    Outcome::expect(el, n, "woke early", early.load(Ordering::Relaxed), 0)
}

fn select(size: u64) -> Outcome {
    let (per, total) = split(size, SELECT_PRODUCERS);
    let mut rxs = Vec::new();
    let t0 = Instant::now();
    for _ in 0..SELECT_PRODUCERS {
        let (tx, rx) = gmp::chan::<u64>(0);
        rxs.push(rx);
        gmp::go(move || {
            for v in 0..per {
                tx.send(v).expect("consumer gone");
            }
        });
    }
    // Go's nil-channel trick: a finished producer's receiver is replaced by
    // one that never becomes ready (we keep its sender alive).
    let (_keep, never) = gmp::chan::<u64>(0);
    let (mut count, mut sum) = (0u64, 0u64);
    let mut open = SELECT_PRODUCERS;
    while open > 0 {
        let (i, msg) = gmp::select! {
            recv(rxs[0]) -> msg => (0, msg),
            recv(rxs[1]) -> msg => (1, msg),
            recv(rxs[2]) -> msg => (2, msg),
            recv(rxs[3]) -> msg => (3, msg),
        };
        match msg {
            Ok(v) => {
                count += 1;
                sum += v;
            }
            Err(_) => {
                rxs[i] = never.clone();
                open -= 1;
            }
        }
    }
    let el = t0.elapsed();
    Outcome::expect(
        el,
        total,
        "(count,sum)",
        (count, sum),
        (total, SELECT_PRODUCERS * triangle(per)),
    )
}

fn mutex(size: u64) -> Outcome {
    let (per, total) = split(size, MUTEX_TASKS);
    let m = Arc::new(Mutex::new(0u64));
    let t0 = Instant::now();
    let wg = wait_group(MUTEX_TASKS);
    for _ in 0..MUTEX_TASKS {
        let m = m.clone();
        let wg = wg.clone();
        gmp::go(move || {
            for _ in 0..per {
                *m.lock() += 1;
            }
            wg.done();
        });
    }
    wg.wait();
    let el = t0.elapsed();
    let got = *m.lock();
    Outcome::expect(el, total, "counter", got, total)
}

fn echo(size: u64) -> Outcome {
    let (rounds, total) = split(size, ECHO_CONNS);
    let listener = gmp::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = gmp::go(move || {
        for _ in 0..ECHO_CONNS {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            gmp::go(move || {
                let mut buf = [0u8; ECHO_MSG];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let bad = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let wg = wait_group(ECHO_CONNS);
    for c in 0..ECHO_CONNS {
        let wg = wg.clone();
        let bad = bad.clone();
        gmp::go(move || {
            // TCP_NODELAY everywhere, as Go does by default.
            let mut s = gmp::net::TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = [0u8; ECHO_MSG];
            for r in 0..rounds {
                let msg = echo_pattern(c, r);
                s.write_all(&msg).expect("write");
                s.read_exact(&mut buf).expect("read");
                if buf != msg {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
            wg.done();
        });
    }
    wg.wait();
    let el = t0.elapsed();
    server.join().expect("accept loop panicked");
    Outcome::expect(el, total, "bad echoes", bad.load(Ordering::Relaxed), 0)
}

fn hog_latency(rt: &gmp::Runtime, procs: usize) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The watchdog is an OS thread outside the runtime: if main has not
    // resumed within the cap, it stops the hogs so the process can finish.
    let wd_stop = stop.clone();
    let watchdog = std::thread::spawn(move || match done_rx.recv_timeout(HOG_CAP) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            wd_stop.store(true, Ordering::SeqCst);
            true
        }
        _ => false,
    });
    let lat = rt.block_on(move || {
        for _ in 0..procs {
            let (stop, started) = (stop.clone(), started.clone());
            gmp::go(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    hog_burst(&mut x);
                }
            });
        }
        // Wait (without yielding) until every other P runs a hog; ours
        // takes the last one when we park in sleep.
        while started.load(Ordering::SeqCst) + 1 < procs && !stop.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        gmp::sleep(HOG_SLEEP);
        let lat = t0.elapsed();
        stop.store(true, Ordering::SeqCst);
        let _ = done_tx.send(());
        lat
    });
    let never = watchdog.join().unwrap_or(true);
    hog_outcome(lat, never)
}
