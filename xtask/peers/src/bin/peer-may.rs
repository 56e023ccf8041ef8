//! may (stackful coroutines) implementations of the gmp benchmark workloads.
//!
//! `peer-may <workload> <size> <procs>`; `procs` = `may::config().set_workers`.
//! Every workload body runs in a coroutine (the analogue of Go's main
//! goroutine) that the main thread joins.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp_bench_peers::*;
use may::coroutine;
use may::go;
use may::net::{TcpListener, TcpStream};
use may::sync::mpsc;
use may::sync::SyncFlag;

const RT: &str = "may";

fn main() {
    let args = parse_args();
    may::config().set_workers(args.procs);
    let n = args.size;
    let procs = args.procs;
    let out = match args.workload.as_str() {
        "hog-latency" => hog_latency(procs),
        w => {
            let w = w.to_string();
            in_coroutine(move || match w.as_str() {
                "spawn" => spawn(n),
                "skynet" => skynet_main(n),
                "pingpong" => pingpong(n),
                "ring" => ring(n),
                "fanin" => fanin(n),
                "yield" => yields(n),
                "sleepers" => sleepers(n),
                "select" => select(n),
                "mutex" => mutex(n),
                "echo" => echo(n),
                w => unreachable!("workload {w}"),
            })
        }
    };
    report(RT, &args.workload, out)
}

fn in_coroutine<F>(f: F) -> Outcome
where
    F: FnOnce() -> Outcome + Send + 'static,
{
    go!(f).join().expect("workload coroutine panicked")
}

/// Go's `sync.WaitGroup` on may: an atomic count plus a `SyncFlag`.
/// (`may::sync::WaitGroup` is Mutex+Condvar and clone-per-task; this is the
/// cheaper equivalent a may user would write for a hot path.)
struct WaitGroup {
    remaining: AtomicU64,
    flag: SyncFlag,
}

impl WaitGroup {
    fn new(n: u64) -> Arc<Self> {
        Arc::new(WaitGroup {
            remaining: AtomicU64::new(n),
            flag: SyncFlag::new(),
        })
    }
    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.flag.fire();
        }
    }
    fn wait(&self) {
        self.flag.wait();
    }
}

fn spawn(n: u64) -> Outcome {
    struct Shared {
        counter: AtomicU64,
        wg: Arc<WaitGroup>,
    }
    let shared = Arc::new(Shared {
        counter: AtomicU64::new(0),
        wg: WaitGroup::new(n),
    });
    let t0 = Instant::now();
    for _ in 0..n {
        let s = shared.clone();
        go!(move || {
            s.counter.fetch_add(1, Ordering::Relaxed);
            s.wg.done();
        });
    }
    shared.wg.wait();
    let el = t0.elapsed();
    Outcome::expect(el, n, "counter", shared.counter.load(Ordering::Relaxed), n)
}

fn skynet(tx: mpsc::Sender<u64>, num: u64, size: u64) {
    if size == 1 {
        let _ = tx.send(num);
        return;
    }
    let (ctx, crx) = mpsc::channel();
    let sub = size / SKYNET_DIV;
    for i in 0..SKYNET_DIV {
        let ctx = ctx.clone();
        go!(move || skynet(ctx, num + i * sub, sub));
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
    let (tx, rx) = mpsc::channel();
    go!(move || skynet(tx, 0, leaves));
    let sum = rx.recv().unwrap_or(0);
    let el = t0.elapsed();
    println!("{sum}");
    Outcome::expect(el, 1, "sum", sum, skynet_expected(leaves))
}

fn pingpong(n: u64) -> Outcome {
    // may's mpsc is unbounded; with one message in flight it behaves like
    // Go's unbuffered channel here.
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let t0 = Instant::now();
    let ponger = go!(move || {
        while let Ok(v) = ping_rx.recv() {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let pinger = go!(move || {
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
        let (tx, rx) = mpsc::channel::<u64>();
        txs.push(tx);
        rxs.push(rx);
    }
    let first = txs[0].clone();
    txs.rotate_left(1);
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let mut handles = Vec::with_capacity(nodes as usize);
    for (i, (rx, tx)) in rxs.into_iter().zip(txs).enumerate() {
        let done = done_tx.clone();
        handles.push(go!(move || {
            while let Ok(v) = rx.recv() {
                if v == 0 {
                    let _ = done.send(i as u64);
                    break;
                }
                if tx.send(v - 1).is_err() {
                    break;
                }
            }
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
    // may has no bounded channel; its mpsc is unbounded (so producers never
    // block — noted in BENCHMARKS.md).
    let (per, total) = split(size, FANIN_PRODUCERS);
    let (tx, rx) = mpsc::channel::<u64>();
    let t0 = Instant::now();
    for _ in 0..FANIN_PRODUCERS {
        let tx = tx.clone();
        go!(move || {
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
    let wg = WaitGroup::new(YIELD_TASKS);
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for _ in 0..YIELD_TASKS {
        let wg = wg.clone();
        let count = count.clone();
        go!(move || {
            for _ in 0..per {
                coroutine::yield_now();
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
    let wg = WaitGroup::new(n);
    let early = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for _ in 0..n {
        let wg = wg.clone();
        let early = early.clone();
        go!(move || {
            let s = Instant::now();
            coroutine::sleep(SLEEPER_SLEEP);
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
    // A closed channel's recv returns at once, so a finished producer's
    // receiver is swapped for one whose sender we keep alive (Go's nil-channel
    // trick).
    let mut nevers = Vec::new();
    let mut keep = Vec::new();
    let t0 = Instant::now();
    for _ in 0..SELECT_PRODUCERS {
        let (tx, rx) = mpsc::channel::<u64>();
        rxs.push(rx);
        let (ktx, nrx) = mpsc::channel::<u64>();
        keep.push(ktx);
        nevers.push(Some(nrx));
        go!(move || {
            for v in 0..per {
                tx.send(v).expect("consumer gone");
            }
        });
    }
    let count = AtomicU64::new(0);
    let sum = AtomicU64::new(0);
    let closed: [AtomicBool; 4] = Default::default();
    let on = |i: usize, r: Result<u64, std::sync::mpsc::RecvError>| match r {
        Ok(v) => {
            count.fetch_add(1, Ordering::Relaxed);
            sum.fetch_add(v, Ordering::Relaxed);
        }
        Err(_) => closed[i].store(true, Ordering::Relaxed),
    };
    let mut open = SELECT_PRODUCERS as usize;
    while open > 0 {
        {
            let (r0, r1, r2, r3) = (&rxs[0], &rxs[1], &rxs[2], &rxs[3]);
            may::select!(
                v = r0.recv() => on(0, v),
                v = r1.recv() => on(1, v),
                v = r2.recv() => on(2, v),
                v = r3.recv() => on(3, v)
            );
        }
        for (i, c) in closed.iter().enumerate() {
            if c.swap(false, Ordering::Relaxed) {
                rxs[i] = nevers[i].take().expect("channel closed twice");
                open -= 1;
            }
        }
    }
    let el = t0.elapsed();
    drop(keep);
    let got = count.load(Ordering::Relaxed);
    if got < total {
        // may::select! runs each arm in its own coroutine and cancels the
        // losers; an arm that had already taken its message loses it.
        return Outcome {
            elapsed: el,
            units: total,
            check: Err(format!(
                "lost {} of {total} messages (may::select! cancels arms that already received)",
                total - got
            )),
        };
    }
    Outcome::expect(
        el,
        total,
        "(count,sum)",
        (got, sum.load(Ordering::Relaxed)),
        (total, SELECT_PRODUCERS * triangle(per)),
    )
}

fn mutex(size: u64) -> Outcome {
    let (per, total) = split(size, MUTEX_TASKS);
    let m = Arc::new(may::sync::Mutex::new(0u64));
    let wg = WaitGroup::new(MUTEX_TASKS);
    let t0 = Instant::now();
    for _ in 0..MUTEX_TASKS {
        let m = m.clone();
        let wg = wg.clone();
        go!(move || {
            for _ in 0..per {
                *m.lock().expect("poisoned") += 1;
            }
            wg.done();
        });
    }
    wg.wait();
    let el = t0.elapsed();
    let got = *m.lock().expect("poisoned");
    Outcome::expect(el, total, "counter", got, total)
}

fn echo(size: u64) -> Outcome {
    let (rounds, total) = split(size, ECHO_CONNS);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = go!(move || {
        for _ in 0..ECHO_CONNS {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            go!(move || {
                let mut buf = [0u8; ECHO_MSG];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let wg = WaitGroup::new(ECHO_CONNS);
    let bad = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for c in 0..ECHO_CONNS {
        let wg = wg.clone();
        let bad = bad.clone();
        go!(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
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

fn hog_latency(procs: usize) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let (res_tx, res_rx) = std::sync::mpsc::channel::<Duration>();
    let (st, sd) = (stop.clone(), started.clone());
    let watchdog_start = Instant::now();
    go!(move || {
        for _ in 0..procs {
            let (stop, started) = (st.clone(), sd.clone());
            go!(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    hog_burst(&mut x);
                }
            });
        }
        while sd.load(Ordering::SeqCst) + 1 < procs && !st.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        coroutine::sleep(HOG_SLEEP);
        let _ = res_tx.send(t0.elapsed());
    });
    let (lat, never) = match res_rx.recv_timeout(HOG_CAP.saturating_sub(watchdog_start.elapsed())) {
        Ok(lat) => (lat, false),
        Err(_) => {
            stop.store(true, Ordering::SeqCst);
            let lat = res_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or(Duration::MAX);
            (lat, true)
        }
    };
    stop.store(true, Ordering::SeqCst);
    hog_outcome(lat, never)
}
