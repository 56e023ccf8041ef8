//! Timers: sleep accuracy and order, `after` in `select!`, `Timer` stop and
//! reset, tickers, 100,000 sleepers, and timers outside a runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gmp::time::{after, tick, Ticker, Timer};

const MS: Duration = Duration::from_millis(1);

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

#[test]
fn sleep_never_wakes_early() {
    for procs in [1, 2] {
        rt(procs).block_on(|| {
            for d in [1u64, 10, 15] {
                let d = Duration::from_millis(d);
                let t = Instant::now();
                gmp::time::sleep(d);
                assert!(t.elapsed() >= d, "slept {:?} for {d:?}", t.elapsed());
            }
            // Zero and sleep_until in the past return at once.
            gmp::time::sleep(Duration::ZERO);
            gmp::time::sleep_until(Instant::now() - MS);
            let dl = Instant::now() + 5 * MS;
            gmp::time::sleep_until(dl);
            assert!(Instant::now() >= dl);
        });
    }
}

#[test]
fn sleepers_wake_in_deadline_order() {
    rt(2).block_on(|| {
        // Deadlines from one base, 15 ms apart, created in scrambled order.
        let base = Instant::now() + 5 * MS;
        let order = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = [50u64, 10, 40, 20, 30, 60]
            .into_iter()
            .map(|k| {
                let order = order.clone();
                gmp::go(move || {
                    let deadline = base + Duration::from_millis(k * 3 / 2);
                    gmp::time::sleep_until(deadline);
                    assert!(Instant::now() >= deadline);
                    order.lock().unwrap().push(k);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![10, 20, 30, 40, 50, 60]);
    });
}

#[test]
fn after_in_select_picks_the_timeout_when_nothing_else_is_ready() {
    rt(2).block_on(|| {
        let (_tx, rx) = gmp::chan::<u32>(0);
        let t = Instant::now();
        let r = gmp::select! {
            recv(rx) -> _ => "value",
            recv(after(20 * MS)) -> at => {
                let at = at.unwrap();
                assert!(at >= t + 20 * MS);
                "timeout"
            },
        };
        assert_eq!(r, "timeout");
        assert!(t.elapsed() >= 20 * MS);

        // A ready channel wins over a pending timeout.
        let (tx, rx) = gmp::chan::<u32>(1);
        tx.send(7).unwrap();
        let r = gmp::select! {
            recv(rx) -> v => v.unwrap(),
            recv(after(Duration::from_secs(10))) -> _ => 0,
        };
        assert_eq!(r, 7);

        // A value arriving before the timeout wins too.
        let (tx, rx) = gmp::chan::<u32>(0);
        gmp::go(move || {
            gmp::sleep(5 * MS);
            tx.send(9).unwrap();
        });
        let r = gmp::select! {
            recv(rx) -> v => v.unwrap(),
            recv(after(Duration::from_secs(10))) -> _ => 0,
        };
        assert_eq!(r, 9);
    });
}

#[test]
fn timer_stop_prevents_the_fire() {
    rt(2).block_on(|| {
        let t = Timer::new(20 * MS);
        assert!(t.stop(), "a pending timer stops");
        assert!(!t.stop(), "stopping twice");
        gmp::sleep(40 * MS);
        assert!(t.receiver().try_recv().is_err(), "a stopped timer fired");

        // Received, then stop: false.
        let t = Timer::new(MS);
        t.receiver().recv().unwrap();
        assert!(!t.stop());

        // Fired but not received: stop returns true and the stale value
        // is gone (Go 1.23 semantics).
        let t = Timer::new(MS);
        gmp::sleep(20 * MS);
        assert!(t.stop());
        assert!(t.receiver().try_recv().is_err());
    });
}

#[test]
fn timer_reset() {
    rt(2).block_on(|| {
        let start = Instant::now();
        let t = Timer::new(Duration::from_secs(3600));
        assert!(t.reset(10 * MS), "reset of a pending timer");
        let at = t.receiver().recv().unwrap();
        assert!(at >= start + 10 * MS);
        assert!(start.elapsed() < Duration::from_secs(5));
        // Reset after it fired and was received: false, and it fires again.
        assert!(!t.reset(5 * MS));
        t.receiver().recv().unwrap();
        // Reset a stopped timer.
        t.stop();
        assert!(!t.reset(5 * MS));
        t.receiver().recv().unwrap();
        // Reset while a value waits unreceived: the stale one is dropped.
        let t = Timer::new(MS);
        gmp::sleep(10 * MS);
        let before = Instant::now();
        assert!(t.reset(20 * MS));
        let at = t.receiver().recv().unwrap();
        assert!(at >= before + 20 * MS, "received the stale value");
    });
}

#[test]
fn tickers_tick_drop_ticks_and_stop() {
    rt(2).block_on(|| {
        let start = Instant::now();
        let tk = Ticker::new(10 * MS);
        let mut last = start;
        for i in 1..=5u32 {
            let at = tk.receiver().recv().unwrap();
            assert!(at >= start + 10 * MS * i, "tick {i} early");
            assert!(at >= last);
            last = at;
        }
        // A slow receiver: the channel holds one tick, the rest are dropped.
        gmp::sleep(80 * MS);
        assert!(tk.receiver().try_recv().is_ok());
        assert!(tk.receiver().try_recv().is_err());
        // Still ticking afterwards, on schedule.
        let t = Instant::now();
        tk.receiver().recv().unwrap();
        assert!(t.elapsed() < 200 * MS);
        // Reset changes the period; stop stops.
        tk.reset(5 * MS);
        tk.receiver().recv().unwrap();
        assert!(tk.stop());
        gmp::sleep(30 * MS);
        assert!(tk.receiver().try_recv().is_err(), "a stopped ticker ticked");

        // tick(): in a select loop.
        let ticks = tick(5 * MS);
        let deadline = after(60 * MS);
        let mut n = 0;
        loop {
            gmp::select! {
                recv(ticks) -> _ => n += 1,
                recv(deadline) -> _ => break,
            }
        }
        assert!((3..=12).contains(&n), "ticks in 60 ms at 5 ms: {n}");
    });
}

#[test]
fn timers_fire_without_sysmon() {
    // No sysmon: nothing but the idle M's epoll timeout wakes the timers.
    let rt = gmp::Runtime::builder()
        .procs(2)
        .no_sysmon()
        .build()
        .unwrap();
    let t = Instant::now();
    rt.block_on(|| {
        for _ in 0..10 {
            gmp::sleep(10 * MS);
        }
    });
    assert!(t.elapsed() >= 100 * MS);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn an_earlier_timer_breaks_the_pollers_wait() {
    // The idle M blocks in epoll until the 2 s timer; a new 20 ms timer
    // must interrupt that wait (eventfd), not wait for the 2 s one.
    let rt = gmp::Runtime::builder()
        .procs(1)
        .no_sysmon()
        .build()
        .unwrap();
    let long = rt.spawn(|| gmp::sleep(Duration::from_secs(2)));
    std::thread::sleep(50 * MS);
    let t = Instant::now();
    rt.spawn(|| gmp::sleep(20 * MS)).join().unwrap();
    let e = t.elapsed();
    assert!(e >= 20 * MS);
    assert!(e < Duration::from_millis(1000), "woke after {e:?}");
    drop(long);
}

#[test]
fn timers_outside_a_runtime() {
    // A plain thread: a helper thread serves the timer channels.
    let t = Instant::now();
    let at = after(10 * MS).recv().unwrap();
    assert!(at >= t + 10 * MS);
    let tm = Timer::new(10 * MS);
    assert!(tm.stop());
    std::thread::sleep(20 * MS);
    assert!(tm.receiver().try_recv().is_err());
    assert!(!tm.reset(5 * MS));
    tm.receiver().recv().unwrap();
    let tk = Ticker::new(5 * MS);
    for _ in 0..3 {
        tk.receiver().recv().unwrap();
    }
    tk.stop();
    let t = Instant::now();
    gmp::sleep(5 * MS);
    assert!(t.elapsed() >= 5 * MS);
    // Timer channels made outside, received inside a runtime.
    let rx = after(10 * MS);
    rt(1).block_on(move || rx.recv().unwrap());
}
