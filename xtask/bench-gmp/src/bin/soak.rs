//! `soak <seconds>`: a long mixed workload on gmp, every result checked.
//!
//! Runs on a runtime with the default number of Ps and repeats rounds until
//! the time is up. Each round mixes a spawn/join burst (with ~1% of the
//! goroutines panicking on purpose), channel ping-pong and fan-in, a
//! `select!` over several channels, a `gmp::sync::Mutex` counter, hundreds of
//! short sleepers, `gmp::blocking` calls and a TCP echo over 127.0.0.1.
//! Any wrong result exits 1 with a message.
//!
//! About once a second it prints
//! `SOAK t=<s> rounds=<n> rss_kb=<VmRSS> goroutines=<live>`; at the end a
//! `SOAK-SUMMARY ...` line on RSS after warm-up (the first 20% of the run),
//! and exits 1 if RSS grew by more than 20% + 16 MiB once warm.
//! `cargo xtask soak --minutes N` builds and drives it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp::sync::{Mutex, WaitGroup};

/// Marker in the payload of every injected panic; the panic hook stays
/// silent for these (and only these).
const MARKER: &str = "SOAK-INJECTED-PANIC";

const SPAWN_BURST: u64 = 10_000;
const PINGPONG_HOPS: u64 = 1_000;
const FANIN_PRODUCERS: u64 = 16;
const FANIN_PER: u64 = 500;
const SELECT_CHANS: usize = 4;
const SELECT_PER: u64 = 500;
const MUTEX_TASKS: u64 = 50;
const MUTEX_PER: u64 = 1_000;
const SLEEPERS: u64 = 300;
const BLOCKERS: u64 = 20;
const BLOCKING_PER: u64 = 5;
const ECHO_CLIENTS: usize = 20;
const ECHO_ROUNDS: usize = 50;
const ECHO_MSG: usize = 64;
/// A round that takes longer than this is a hang: the watchdog exits 1.
const STALL: Duration = Duration::from_secs(60);
/// Fraction of the run treated as warm-up for the RSS check.
const WARMUP_FRACTION: f64 = 0.2;
/// Allowed RSS growth once warm: 20% + 16 MiB.
const GROWTH_FACTOR: f64 = 0.2;
const GROWTH_SLACK_KB: u64 = 16 * 1024;

type Check = Result<(), String>;

/// xorshift64*: a tiny deterministic PRNG (no dependency).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ensure<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn goroutines() -> usize {
    gmp::metrics().map_or(0, |m| m.goroutines)
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_string()
    }
}

fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| p.downcast_ref::<String>().map(String::as_str));
        if msg.is_some_and(|m| m.contains(MARKER)) {
            return;
        }
        default(info)
    }));
}

/// 10k goroutines return their index; ~1% panic instead. The sum of the
/// returned values and the number of `Err` joins must be exact.
fn spawn_burst(rng: &mut Rng) -> Check {
    let mut want_sum = 0u64;
    let mut want_panics = 0u64;
    let mut hs = Vec::with_capacity(SPAWN_BURST as usize);
    for i in 0..SPAWN_BURST {
        let boom = rng.below(100) == 0;
        if boom {
            want_panics += 1;
        } else {
            want_sum += i;
        }
        hs.push(gmp::go(move || {
            if boom {
                panic!("{MARKER} goroutine {i}");
            }
            i
        }));
    }
    let (mut sum, mut panics) = (0u64, 0u64);
    for h in hs {
        match h.join() {
            Ok(v) => sum += v,
            Err(e) => {
                let m = panic_message(&*e);
                if !m.contains(MARKER) {
                    return Err(format!("spawn burst: unexpected panic: {m}"));
                }
                panics += 1;
            }
        }
    }
    ensure("spawn burst sum", sum, want_sum)?;
    ensure("spawn burst panics", panics, want_panics)
}

/// A value bounced between two goroutines over unbuffered channels, +1 per
/// hop; then fan-in of 16 producers into one buffered channel.
fn channels() -> Check {
    let (ping_tx, ping_rx) = gmp::chan::<u64>(0);
    let (pong_tx, pong_rx) = gmp::chan::<u64>(0);
    let echo = gmp::go(move || {
        let mut n = 0u64;
        while let Ok(v) = ping_rx.recv() {
            pong_tx.send(v + 1).expect("pong receiver gone");
            n += 1;
        }
        n
    });
    let mut v = 0u64;
    for _ in 0..PINGPONG_HOPS {
        ping_tx.send(v).map_err(|_| "ping-pong: echo gone")?;
        v = pong_rx.recv().map_err(|_| "ping-pong: echo closed")? + 1;
    }
    drop(ping_tx);
    let hops = echo.join().map_err(|_| "ping-pong: echo panicked")?;
    ensure("ping-pong hops", hops, PINGPONG_HOPS)?;
    ensure("ping-pong value", v, 2 * PINGPONG_HOPS)?;

    let (tx, rx) = gmp::chan::<u64>(64);
    for p in 0..FANIN_PRODUCERS {
        let tx = tx.clone();
        gmp::go(move || {
            for i in 0..FANIN_PER {
                tx.send(p * FANIN_PER + i).expect("fan-in receiver gone");
            }
        });
    }
    drop(tx);
    let (mut count, mut sum) = (0u64, 0u64);
    while let Ok(v) = rx.recv() {
        count += 1;
        sum += v;
    }
    let n = FANIN_PRODUCERS * FANIN_PER;
    ensure("fan-in (count,sum)", (count, sum), (n, n * (n - 1) / 2))
}

/// `select!` over four channels (two unbuffered, two buffered), each fed by
/// its own producer; per-channel counts and sums must be exact.
fn select() -> Check {
    let mut rxs = Vec::new();
    for c in 0..SELECT_CHANS {
        let (tx, rx) = gmp::chan::<u64>(if c % 2 == 0 { 0 } else { 4 });
        rxs.push(rx);
        gmp::go(move || {
            for v in 0..SELECT_PER {
                tx.send(v).expect("select consumer gone");
                if v % 64 == 0 {
                    gmp::yield_now();
                }
            }
        });
    }
    let (_keep, never) = gmp::chan::<u64>(0);
    let mut count = [0u64; SELECT_CHANS];
    let mut sum = [0u64; SELECT_CHANS];
    let mut open = SELECT_CHANS;
    while open > 0 {
        let (i, msg) = gmp::select! {
            recv(rxs[0]) -> m => (0, m),
            recv(rxs[1]) -> m => (1, m),
            recv(rxs[2]) -> m => (2, m),
            recv(rxs[3]) -> m => (3, m),
            default(Duration::from_secs(10)) => {
                return Err(format!("select: nothing ready for 10 s (open={open})"));
            }
        };
        match msg {
            Ok(v) => {
                count[i] += 1;
                sum[i] += v;
            }
            Err(_) => {
                rxs[i] = never.clone();
                open -= 1;
            }
        }
    }
    let want = SELECT_PER * (SELECT_PER - 1) / 2;
    ensure("select counts", count, [SELECT_PER; SELECT_CHANS])?;
    ensure("select sums", sum, [want; SELECT_CHANS])
}

/// 50 goroutines × 1000 increments under `gmp::sync::Mutex`.
fn mutex() -> Check {
    let m = Arc::new(Mutex::new(0u64));
    let hs: Vec<_> = (0..MUTEX_TASKS)
        .map(|_| {
            let m = m.clone();
            gmp::go(move || {
                for i in 0..MUTEX_PER {
                    *m.lock() += 1;
                    if i % 100 == 0 {
                        gmp::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().map_err(|_| "mutex: worker panicked")?;
    }
    let got = *m.lock();
    ensure("mutex counter", got, MUTEX_TASKS * MUTEX_PER)
}

/// Hundreds of goroutines sleeping 1-5 ms; each must sleep at least its
/// duration, and all must finish (WaitGroup).
fn sleepers(rng: &mut Rng) -> Check {
    let wg = Arc::new(WaitGroup::new());
    let short = Arc::new(AtomicU64::new(0));
    let woke = Arc::new(AtomicU64::new(0));
    wg.add(SLEEPERS as isize);
    for _ in 0..SLEEPERS {
        let d = Duration::from_micros(1_000 + rng.below(4_001));
        let (wg, short, woke) = (wg.clone(), short.clone(), woke.clone());
        gmp::go(move || {
            let t0 = Instant::now();
            gmp::sleep(d);
            if t0.elapsed() < d {
                short.fetch_add(1, Ordering::Relaxed);
            }
            woke.fetch_add(1, Ordering::Relaxed);
            wg.done();
        });
    }
    wg.wait();
    ensure("sleepers woken", woke.load(Ordering::Relaxed), SLEEPERS)?;
    ensure("sleepers woken early", short.load(Ordering::Relaxed), 0u64)
}

/// `gmp::blocking(|| std::thread::sleep(1 ms))` from 20 goroutines.
fn blocking() -> Check {
    let hs: Vec<_> = (0..BLOCKERS)
        .map(|g| {
            gmp::go(move || {
                (0..BLOCKING_PER)
                    .map(|k| {
                        gmp::blocking(move || {
                            std::thread::sleep(Duration::from_millis(1));
                            g * BLOCKING_PER + k
                        })
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    let mut sum = 0u64;
    for h in hs {
        sum += h.join().map_err(|_| "blocking: goroutine panicked")?;
    }
    let n = BLOCKERS * BLOCKING_PER;
    ensure("blocking sum", sum, n * (n - 1) / 2)
}

fn echo_pattern(c: usize, r: usize, round: u64) -> [u8; ECHO_MSG] {
    let mut m = [0u8; ECHO_MSG];
    for (i, b) in m.iter_mut().enumerate() {
        *b = (c.wrapping_mul(31) ^ r.wrapping_mul(7) ^ i ^ round as usize) as u8;
    }
    m
}

/// A listener goroutine (one handler goroutine per connection) and 20
/// client goroutines × 50 round trips of 64 bytes; every byte checked, and
/// the server's echoed byte count must match.
fn tcp_echo(round: u64) -> Check {
    let listener = gmp::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let server = gmp::go(move || -> Result<u64, String> {
        let mut handlers = Vec::with_capacity(ECHO_CLIENTS);
        for _ in 0..ECHO_CLIENTS {
            let (mut s, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
            handlers.push(gmp::go(move || {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; ECHO_MSG];
                let mut bytes = 0u64;
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                    bytes += ECHO_MSG as u64;
                }
                bytes
            }));
        }
        let mut total = 0u64;
        for h in handlers {
            total += h.join().map_err(|_| "echo handler panicked".to_string())?;
        }
        Ok(total)
    });
    let clients: Vec<_> = (0..ECHO_CLIENTS)
        .map(|c| {
            gmp::go(move || -> Result<u64, String> {
                let mut s = gmp::net::TcpStream::connect(addr)
                    .map_err(|e| format!("client {c}: connect: {e}"))?;
                s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
                let mut buf = [0u8; ECHO_MSG];
                let mut good = 0u64;
                for r in 0..ECHO_ROUNDS {
                    let msg = echo_pattern(c, r, round);
                    s.write_all(&msg)
                        .map_err(|e| format!("client {c}: write: {e}"))?;
                    s.read_exact(&mut buf)
                        .map_err(|e| format!("client {c}: read: {e}"))?;
                    if buf != msg {
                        return Err(format!("client {c} round {r}: echoed bytes differ"));
                    }
                    good += ECHO_MSG as u64;
                }
                Ok(good)
            })
        })
        .collect();
    let mut client_bytes = 0u64;
    for h in clients {
        client_bytes += h.join().map_err(|_| "echo client panicked")??;
    }
    let server_bytes = server.join().map_err(|_| "echo server panicked")??;
    let want = (ECHO_CLIENTS * ECHO_ROUNDS * ECHO_MSG) as u64;
    ensure("echo client bytes", client_bytes, want)?;
    ensure("echo server bytes", server_bytes, want)
}

fn one_round(round: u64, rng: &mut Rng) -> Check {
    spawn_burst(rng)?;
    channels()?;
    select()?;
    mutex()?;
    sleepers(rng)?;
    blocking()?;
    tcp_echo(round)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    rss_kb: u64,
}

fn soak(secs: f64, progress: Arc<AtomicU64>, start: Instant) -> Result<Vec<Sample>, String> {
    let mut rng = Rng::new(0x5EED ^ u64::from(std::process::id()));
    let mut samples = Vec::new();
    let mut last_print: Option<Instant> = None;
    let mut rounds = 0u64;
    let sample = |rounds: u64| {
        let s = Sample {
            t: start.elapsed().as_secs_f64(),
            rss_kb: rss_kb(),
        };
        println!(
            "SOAK t={:.1} rounds={rounds} rss_kb={} goroutines={}",
            s.t,
            s.rss_kb,
            goroutines()
        );
        s
    };
    while start.elapsed().as_secs_f64() < secs {
        one_round(rounds, &mut rng).map_err(|e| format!("round {rounds}: {e}"))?;
        rounds += 1;
        progress.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        let due = match last_print {
            None => true,
            Some(p) => p.elapsed() >= Duration::from_secs(1),
        };
        if due {
            last_print = Some(Instant::now());
            samples.push(sample(rounds));
        }
    }
    // The final sample, unless the last round just printed one.
    if !last_print.is_some_and(|p| p.elapsed() < Duration::from_millis(200)) {
        samples.push(sample(rounds));
    }
    if rounds == 0 {
        return Err("no round completed".into());
    }
    // Everything each round spawned has been joined or waited for: the
    // goroutine count must settle back to (about) just main.
    let t0 = Instant::now();
    while goroutines() > 2 {
        if t0.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "goroutine leak: {} live goroutines 5 s after the last round",
                goroutines()
            ));
        }
        gmp::sleep(Duration::from_millis(10));
    }
    Ok(samples)
}

/// RSS after warm-up: min/max, and growth from the first warm sample to the
/// last. Fails if the growth exceeds 20% + 16 MiB.
fn summarize(samples: &[Sample], secs: f64) -> Check {
    let warm_t = secs * WARMUP_FRACTION;
    let mut warm: Vec<Sample> = samples.iter().copied().filter(|s| s.t >= warm_t).collect();
    if warm.len() < 2 {
        // A very short run: use the last two samples there are.
        warm = samples[samples.len().saturating_sub(2)..].to_vec();
    }
    let first = warm[0].rss_kb;
    let last = warm[warm.len() - 1].rss_kb;
    let min = warm.iter().map(|s| s.rss_kb).min().unwrap_or(0);
    let max = warm.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let growth = last as i64 - first as i64;
    let limit = (first as f64 * GROWTH_FACTOR) as u64 + GROWTH_SLACK_KB;
    let ok = growth <= limit as i64;
    println!(
        "SOAK-SUMMARY warm_from_t={:.1} warm_samples={} rss_min_kb={min} rss_max_kb={max} \
         first_warm_kb={first} last_kb={last} growth_kb={growth} limit_kb={limit} ok={}",
        warm[0].t,
        warm.len(),
        u8::from(ok)
    );
    if ok {
        Ok(())
    } else {
        Err(format!(
            "RSS grew {growth} KiB after warm-up (from {first} to {last} KiB; limit {limit} KiB)"
        ))
    }
}

fn main() {
    let arg = std::env::args().nth(1);
    let secs: f64 = match arg.as_deref().map(str::parse) {
        Some(Ok(s)) if s > 0.0 => s,
        _ => {
            eprintln!("usage: soak <seconds>  (fractional allowed)");
            std::process::exit(2);
        }
    };
    install_panic_hook();
    let start = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));

    // Watchdog: an OS thread outside the runtime; a round that stalls for
    // STALL is a hang (deadlock, lost wakeup) and fails the soak.
    let wd = progress.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let last = Duration::from_millis(wd.load(Ordering::Relaxed));
        if start.elapsed().saturating_sub(last) > STALL {
            eprintln!(
                "SOAK FAIL: no round finished for {} s (hang?) at t={:.1}",
                STALL.as_secs(),
                start.elapsed().as_secs_f64()
            );
            std::process::exit(1);
        }
    });

    let rt = match gmp::Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("SOAK FAIL: cannot build runtime: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "SOAK start secs={secs} procs={} pid={}",
        rt.metrics().gomaxprocs,
        std::process::id()
    );
    let res = rt
        .block_on(move || soak(secs, progress, start))
        .and_then(|samples| summarize(&samples, secs));
    match res {
        Ok(()) => {
            println!("SOAK OK");
            std::process::exit(0);
        }
        Err(e) => {
            println!("SOAK FAIL: {e}");
            eprintln!("SOAK FAIL: {e}");
            std::process::exit(1);
        }
    }
}
