//! tokio (multi-thread runtime) implementations of the gmp benchmark workloads.
//!
//! `peer-tokio <workload> <size> <procs>`; `procs` = `worker_threads`.
//! Every workload body runs in a spawned task (the analogue of Go's main
//! goroutine), never on the `block_on` thread, so all work is scheduled by
//! the worker threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp_bench_peers::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Notify};

const RT: &str = "tokio";

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.procs)
        .enable_all()
        .build()
        .expect("build tokio runtime");
    let n = args.size;
    let out = match args.workload.as_str() {
        "spawn" => in_task(&rt, spawn(n)),
        "skynet" => in_task(&rt, skynet_main(n)),
        "pingpong" => in_task(&rt, pingpong(n)),
        "ring" => in_task(&rt, ring(n)),
        "fanin" => in_task(&rt, fanin(n)),
        "yield" => in_task(&rt, yields(n)),
        "sleepers" => in_task(&rt, sleepers(n)),
        "select" => in_task(&rt, select(n)),
        "mutex" => in_task(&rt, mutex(n)),
        "echo" => in_task(&rt, echo(n)),
        "hog-latency" => hog_latency(&rt, args.procs),
        w => unreachable!("workload {w}"),
    };
    report(RT, &args.workload, out)
}

/// Runs `fut` as a spawned task and waits for it from outside the runtime.
fn in_task<F>(rt: &Runtime, fut: F) -> Outcome
where
    F: Future<Output = Outcome> + Send + 'static,
{
    rt.block_on(rt.spawn(fut)).expect("workload task panicked")
}

/// Go's `sync.WaitGroup`, tokio style: an atomic count plus a `Notify`.
struct WaitGroup {
    remaining: AtomicU64,
    notify: Notify,
}

impl WaitGroup {
    fn new(n: u64) -> Arc<Self> {
        Arc::new(WaitGroup {
            remaining: AtomicU64::new(n),
            notify: Notify::new(),
        })
    }
    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // notify_one stores a permit if nobody waits yet.
            self.notify.notify_one();
        }
    }
    async fn wait(&self) {
        while self.remaining.load(Ordering::Acquire) != 0 {
            self.notify.notified().await;
        }
    }
}

async fn spawn(n: u64) -> Outcome {
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
        tokio::spawn(async move {
            s.counter.fetch_add(1, Ordering::Relaxed);
            s.wg.done();
        });
    }
    shared.wg.wait().await;
    let el = t0.elapsed();
    Outcome::expect(el, n, "counter", shared.counter.load(Ordering::Relaxed), n)
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

fn skynet(tx: mpsc::Sender<u64>, num: u64, size: u64) -> BoxFut {
    Box::pin(async move {
        if size == 1 {
            let _ = tx.send(num).await;
            return;
        }
        let (ctx, mut crx) = mpsc::channel(SKYNET_DIV as usize);
        let sub = size / SKYNET_DIV;
        for i in 0..SKYNET_DIV {
            tokio::spawn(skynet(ctx.clone(), num + i * sub, sub));
        }
        drop(ctx);
        let mut sum = 0;
        for _ in 0..SKYNET_DIV {
            sum += crx.recv().await.expect("skynet child vanished");
        }
        let _ = tx.send(sum).await;
    })
}

async fn skynet_main(leaves: u64) -> Outcome {
    if !is_power_of_div(leaves) {
        return bad_size("skynet", leaves);
    }
    let t0 = Instant::now();
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(skynet(tx, 0, leaves));
    let sum = rx.recv().await.unwrap_or(0);
    let el = t0.elapsed();
    println!("{sum}");
    Outcome::expect(el, 1, "sum", sum, skynet_expected(leaves))
}

fn bad_size(w: &str, n: u64) -> Outcome {
    Outcome {
        elapsed: Duration::ZERO,
        units: n,
        check: Err(format!("{w}: bad size {n}")),
    }
}

async fn pingpong(n: u64) -> Outcome {
    // tokio's bounded mpsc cannot be unbuffered; capacity 1 is the closest.
    let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
    let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
    let t0 = Instant::now();
    let ponger = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).await.is_err() {
                break;
            }
        }
    });
    let pinger = tokio::spawn(async move {
        let mut sum = 0u64;
        for i in 0..n {
            ping_tx.send(i).await.expect("ponger gone");
            sum += pong_rx.recv().await.expect("ponger gone");
        }
        sum
    });
    let sum = pinger.await.expect("pinger panicked");
    let el = t0.elapsed();
    ponger.await.expect("ponger panicked");
    Outcome::expect(el, n, "sum", sum, triangle(n))
}

async fn ring(laps: u64) -> Outcome {
    let nodes = RING_NODES;
    let hops = laps * nodes;
    let mut txs = Vec::with_capacity(nodes as usize);
    let mut rxs = Vec::with_capacity(nodes as usize);
    for _ in 0..nodes {
        let (tx, rx) = mpsc::channel::<u64>(1);
        txs.push(tx);
        rxs.push(rx);
    }
    let first = txs[0].clone();
    txs.rotate_left(1); // node i sends to node i+1
    let (done_tx, mut done_rx) = mpsc::channel::<u64>(1);
    let mut handles = Vec::with_capacity(nodes as usize);
    for (i, (mut rx, tx)) in rxs.into_iter().zip(txs).enumerate() {
        let done = done_tx.clone();
        handles.push(tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                if v == 0 {
                    let _ = done.send(i as u64).await;
                    break;
                }
                if tx.send(v - 1).await.is_err() {
                    break;
                }
            }
            // dropping rx and tx closes the ring behind us
        }));
    }
    drop(done_tx);
    let t0 = Instant::now();
    first.send(hops).await.expect("ring node 0 gone");
    drop(first);
    let last = done_rx.recv().await;
    let el = t0.elapsed();
    for h in handles {
        h.await.expect("ring node panicked");
    }
    Outcome::expect(el, hops, "final node", last, Some(hops % nodes))
}

async fn fanin(size: u64) -> Outcome {
    let (per, total) = split(size, FANIN_PRODUCERS);
    let (tx, mut rx) = mpsc::channel::<u64>(FANIN_CAP);
    let t0 = Instant::now();
    for _ in 0..FANIN_PRODUCERS {
        let tx = tx.clone();
        tokio::spawn(async move {
            for v in 0..per {
                tx.send(v).await.expect("consumer gone");
            }
        });
    }
    drop(tx);
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(v) = rx.recv().await {
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

async fn yields(size: u64) -> Outcome {
    let (per, total) = split(size, YIELD_TASKS);
    let wg = WaitGroup::new(YIELD_TASKS);
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for _ in 0..YIELD_TASKS {
        let wg = wg.clone();
        let count = count.clone();
        tokio::spawn(async move {
            for _ in 0..per {
                tokio::task::yield_now().await;
            }
            count.fetch_add(per, Ordering::Relaxed);
            wg.done();
        });
    }
    wg.wait().await;
    let el = t0.elapsed();
    Outcome::expect(el, total, "yields", count.load(Ordering::Relaxed), total)
}

async fn sleepers(n: u64) -> Outcome {
    let wg = WaitGroup::new(n);
    let early = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for _ in 0..n {
        let wg = wg.clone();
        let early = early.clone();
        tokio::spawn(async move {
            let s = Instant::now();
            tokio::time::sleep(SLEEPER_SLEEP).await;
            if s.elapsed() < SLEEPER_SLEEP {
                early.fetch_add(1, Ordering::Relaxed);
            }
            wg.done();
        });
    }
    wg.wait().await;
    let el = t0.elapsed();
    Outcome::expect(el, n, "woke early", early.load(Ordering::Relaxed), 0)
}

async fn select(size: u64) -> Outcome {
    let (per, total) = split(size, SELECT_PRODUCERS);
    let mut rxs = Vec::new();
    let t0 = Instant::now();
    for _ in 0..SELECT_PRODUCERS {
        let (tx, rx) = mpsc::channel::<u64>(1);
        rxs.push(rx);
        tokio::spawn(async move {
            for v in 0..per {
                tx.send(v).await.expect("consumer gone");
            }
        });
    }
    let [mut r0, mut r1, mut r2, mut r3]: [mpsc::Receiver<u64>; 4] =
        rxs.try_into().expect("4 producers");
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        // A branch whose pattern fails (channel closed) is disabled;
        // `else` runs once all four are.
        let v = tokio::select! {
            Some(v) = r0.recv() => v,
            Some(v) = r1.recv() => v,
            Some(v) = r2.recv() => v,
            Some(v) = r3.recv() => v,
            else => break,
        };
        count += 1;
        sum += v;
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

async fn mutex(size: u64) -> Outcome {
    let (per, total) = split(size, MUTEX_TASKS);
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let wg = WaitGroup::new(MUTEX_TASKS);
    let t0 = Instant::now();
    for _ in 0..MUTEX_TASKS {
        let m = m.clone();
        let wg = wg.clone();
        tokio::spawn(async move {
            for _ in 0..per {
                *m.lock().await += 1;
            }
            wg.done();
        });
    }
    wg.wait().await;
    let el = t0.elapsed();
    let got = *m.lock().await;
    Outcome::expect(el, total, "counter", got, total)
}

async fn echo(size: u64) -> Outcome {
    let (rounds, total) = split(size, ECHO_CONNS);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = tokio::spawn(async move {
        for _ in 0..ECHO_CONNS {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let mut buf = [0u8; ECHO_MSG];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
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
        tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = [0u8; ECHO_MSG];
            for r in 0..rounds {
                let msg = echo_pattern(c, r);
                s.write_all(&msg).await.expect("write");
                s.read_exact(&mut buf).await.expect("read");
                if buf != msg {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
            wg.done();
        });
    }
    wg.wait().await;
    let el = t0.elapsed();
    server.await.expect("accept loop panicked");
    Outcome::expect(el, total, "bad echoes", bad.load(Ordering::Relaxed), 0)
}

fn hog_latency(rt: &Runtime, procs: usize) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let (res_tx, res_rx) = std::sync::mpsc::channel::<Duration>();
    let (st, sd) = (stop.clone(), started.clone());
    let watchdog_start = Instant::now();
    rt.spawn(async move {
        for _ in 0..procs {
            let (stop, started) = (st.clone(), sd.clone());
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    hog_burst(&mut x);
                }
            });
        }
        // Let the other workers pick up their hogs; ours takes the last one
        // as soon as we park in sleep.
        while sd.load(Ordering::SeqCst) + 1 < procs && !st.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        tokio::time::sleep(HOG_SLEEP).await;
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
