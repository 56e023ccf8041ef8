//! select! under stress: every value delivered exactly once, FIFO per
//! sender, and no entry left behind in a wait queue (Go issue 2075).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gmp::channel::{never, Receiver, RecvTimeoutError, Sender};
use gmp::sync::WaitGroup;

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

const SENDERS: usize = 6;
const PER_SENDER: usize = 2500;

/// Select-senders (goroutines and plain threads, some with timeouts that
/// make them retry the same value) race select-receivers, plain receivers
/// and timed receivers over four channels of mixed capacity. Fails if any
/// value is delivered twice or lost.
fn exactly_once(procs: usize) {
    let caps = [0usize, 0, 1, 4];
    let chans: Vec<(Sender<usize>, Receiver<usize>)> = caps.iter().map(|&c| gmp::chan(c)).collect();
    let rxs: Vec<Receiver<usize>> = chans.iter().map(|c| c.1.clone()).collect();
    let txs: Vec<Sender<usize>> = chans.iter().map(|c| c.0.clone()).collect();
    drop(chans);
    let sender = move |txs: Vec<Sender<usize>>, me: usize| {
        let mut retries = 0usize;
        for k in 0..PER_SENDER {
            let v = me * PER_SENDER + k;
            loop {
                let sent = if (me + k) % 5 == 0 {
                    // A short timeout: a timed-out value must not have been
                    // delivered, since we send it again.
                    gmp::select! {
                        send(txs[0], v) -> r => { r.unwrap(); true }
                        send(txs[1], v) -> r => { r.unwrap(); true }
                        send(txs[2], v) -> r => { r.unwrap(); true }
                        send(txs[3], v) -> r => { r.unwrap(); true }
                        default(Duration::from_micros(50)) => false,
                    }
                } else if (me + k) % 7 == 0 {
                    gmp::select! {
                        send(txs[3], v) -> r => { r.unwrap(); true }
                        send(txs[2], v) -> r => { r.unwrap(); true }
                        default => false,
                    }
                } else {
                    gmp::select! {
                        send(txs[0], v) -> r => { r.unwrap(); true }
                        send(txs[1], v) -> r => { r.unwrap(); true }
                        send(txs[2], v) -> r => { r.unwrap(); true }
                        send(txs[3], v) -> r => { r.unwrap(); true }
                    }
                };
                if sent {
                    break;
                }
                retries += 1;
                if retries % 64 == 0 {
                    gmp::yield_now();
                }
            }
        }
    };
    // Two senders are plain OS threads.
    let threads: Vec<_> = (SENDERS - 2..SENDERS)
        .map(|me| {
            let txs = txs.clone();
            std::thread::spawn(move || sender(txs, me))
        })
        .collect();
    let got: Vec<usize> = rt(procs).block_on(move || {
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let wg = WaitGroup::new();
        for me in 0..SENDERS - 2 {
            let txs = txs.clone();
            wg.go(move || sender(txs, me));
        }
        drop(txs);
        let receivers = WaitGroup::new();
        // Select-receivers over all four channels; a closed channel's case
        // is switched off with `never`.
        for r in 0..3 {
            let mut rs: Vec<Receiver<usize>> = rxs.clone();
            let out = out.clone();
            receivers.go(move || {
                let mut mine = Vec::new();
                let mut open = 4;
                while open > 0 {
                    let (k, v) = if r == 0 {
                        gmp::select! {
                            recv(rs[0]) -> v => (0, v),
                            recv(rs[1]) -> v => (1, v),
                            recv(rs[2]) -> v => (2, v),
                            recv(rs[3]) -> v => (3, v),
                            default(Duration::from_micros(100)) => continue,
                        }
                    } else {
                        gmp::select! {
                            recv(rs[3]) -> v => (3, v),
                            recv(rs[2]) -> v => (2, v),
                            recv(rs[1]) -> v => (1, v),
                            recv(rs[0]) -> v => (0, v),
                        }
                    };
                    match v {
                        Ok(v) => mine.push(v),
                        Err(_) => {
                            rs[k] = never();
                            open -= 1;
                        }
                    }
                }
                out.lock().unwrap().extend(mine);
            });
        }
        // A plain receiver and a timed receiver per channel.
        for rx in &rxs {
            let (rx1, out1) = (rx.clone(), out.clone());
            receivers.go(move || {
                let mine: Vec<usize> = rx1.iter().collect();
                out1.lock().unwrap().extend(mine);
            });
            let (rx, out) = (rx.clone(), out.clone());
            receivers.go(move || {
                let mut mine = Vec::new();
                loop {
                    match rx.recv_timeout(Duration::from_micros(200)) {
                        Ok(v) => mine.push(v),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                out.lock().unwrap().extend(mine);
            });
        }
        drop(rxs);
        wg.wait();
        receivers.wait();
        let v = std::mem::take(&mut *out.lock().unwrap());
        v
    });
    for t in threads {
        t.join().unwrap();
    }
    let mut seen = HashSet::with_capacity(got.len());
    for &v in &got {
        assert!(seen.insert(v), "value {v} delivered twice (procs {procs})");
    }
    assert_eq!(
        got.len(),
        SENDERS * PER_SENDER,
        "values lost (procs {procs})"
    );
}

#[test]
fn select_delivers_exactly_once_2_procs() {
    exactly_once(2);
}

#[test]
fn select_delivers_exactly_once_4_procs() {
    exactly_once(4);
}

/// Several senders, one receiver, per-sender sequence numbers: each
/// sender's values arrive in order (FIFO per channel), on 2 and 4 Ps, with
/// and without a buffer, with senders blocked on a full buffer.
#[test]
fn fifo_per_sender_under_several_ps() {
    for procs in [2, 4] {
        for cap in [0usize, 1, 16] {
            rt(procs).block_on(move || {
                const N: usize = 3000;
                const S: usize = 4;
                let (tx, rx) = gmp::chan::<(usize, usize)>(cap);
                for s in 0..S {
                    let tx = tx.clone();
                    gmp::go(move || {
                        for i in 0..N {
                            tx.send((s, i)).unwrap();
                        }
                    });
                }
                drop(tx);
                let mut next = [0usize; S];
                for (s, i) in &rx {
                    assert_eq!(
                        i, next[s],
                        "sender {s} out of order (cap {cap}, procs {procs})"
                    );
                    next[s] += 1;
                }
                assert_eq!(next, [N; S]);
            });
        }
    }
}

/// Go issue 2075: a select woken by one channel must not stay claimable on
/// the others, or a later send would be swallowed by a dead entry. (Its
/// losing receive entries may stay queued, dead, until someone meets them:
/// `waiting` counts only the live ones.)
#[test]
fn select_leaves_no_entries_behind() {
    rt(2).block_on(|| {
        let (a_tx, a_rx) = gmp::chan::<i32>(0);
        let (b_tx, b_rx) = gmp::chan::<i32>(0);
        for i in 0..300 {
            let (a, b) = (a_rx.clone(), b_rx.clone());
            let h = gmp::go(move || {
                gmp::select! {
                    recv(a) -> v => v.unwrap(),
                    recv(b) -> v => v.unwrap() + 1000,
                    recv(a) -> v => v.unwrap(),
                }
            });
            while a_rx.waiting().1 < 2 || b_rx.waiting().1 < 1 {
                gmp::yield_now();
            }
            if i % 2 == 0 {
                b_tx.send(i).unwrap();
                assert_eq!(h.join().unwrap(), i + 1000);
            } else {
                a_tx.send(i).unwrap();
                assert_eq!(h.join().unwrap(), i);
            }
            assert_eq!(a_rx.waiting(), (0, 0), "entry left on a");
            assert_eq!(b_rx.waiting(), (0, 0), "entry left on b");
            // A plain receiver now gets the next value on either channel.
            let a = a_rx.clone();
            let r = gmp::go(move || a.recv().unwrap());
            a_tx.send(-1).unwrap();
            assert_eq!(r.join().unwrap(), -1);
        }
        // Send cases too: the value of a case not chosen is not delivered.
        let (c_tx, c_rx) = gmp::chan::<i32>(0);
        for i in 0..300 {
            let (c, b) = (c_tx.clone(), b_rx.clone());
            let h = gmp::go(move || {
                gmp::select! {
                    send(c, i) -> r => { r.unwrap(); 0 }
                    recv(b) -> v => v.unwrap(),
                }
            });
            while c_rx.waiting().0 < 1 {
                gmp::yield_now();
            }
            b_tx.send(7).unwrap();
            assert_eq!(h.join().unwrap(), 7);
            assert_eq!(c_rx.waiting(), (0, 0));
            assert!(
                c_rx.try_recv().is_err(),
                "the unchosen send leaked its value"
            );
        }
    });
}

/// Selects between goroutines and plain threads over the same channels,
/// with both sides parked (threads block, goroutines park).
/// A select's losing receive entries are left in their queues, dead; a
/// channel that nobody sends on must not collect them without bound, even
/// behind a live receiver that keeps the head of its queue occupied.
#[test]
fn dead_select_entries_stay_bounded() {
    rt(2).block_on(|| {
        let (data_tx, data_rx) = gmp::chan::<u32>(0);
        let (quiet_tx, quiet_rx) = gmp::chan::<u32>(0);
        let (done_tx, done_rx) = gmp::chan::<usize>(0);
        // A plain receiver parked at the head of quiet's queue for good.
        let q = quiet_rx.clone();
        let head = gmp::go(move || q.recv());
        while quiet_rx.waiting().1 < 1 {
            gmp::yield_now();
        }
        let (d, q) = (data_rx.clone(), quiet_rx.clone());
        let consumer = gmp::go(move || {
            let mut max_queued = 0;
            let mut sum = 0u32;
            for _ in 0..2000 {
                gmp::select! {
                    recv(d) -> v => sum += v.unwrap(),
                    recv(q) -> _v => unreachable!("quiet channel fired"),
                }
                max_queued = max_queued.max(q.queued().1);
            }
            done_tx.send(max_queued).unwrap();
            sum
        });
        for i in 0..2000 {
            // Wait until the consumer blocks (registers on both channels),
            // so every round leaves one dead entry on quiet.
            while data_rx.waiting().1 < 1 {
                gmp::yield_now();
            }
            data_tx.send(i).unwrap();
        }
        let max_queued = done_rx.recv().unwrap();
        assert_eq!(consumer.join().unwrap(), (0..2000).sum::<u32>());
        assert!(max_queued <= 20, "quiet's queue grew to {max_queued}");
        assert_eq!(
            quiet_rx.waiting(),
            (0, 1),
            "only the plain receiver is live"
        );
        // The dead entries behind it swallow nothing.
        quiet_tx.send(5).unwrap();
        assert_eq!(head.join().unwrap(), Ok(5));
    });
}

/// A select that finds nothing ready first lets the few goroutines queued
/// on its P run; a sender among them queues its value, which the select's
/// second look takes without blocking: no entry is ever queued on the
/// other channel. (One P: the new goroutine waits in our run queue. The
/// plain scheduler is pinned: GMP_DEBUG=migrate hands every yield to
/// another thread, and randomize reorders the queues.)
#[test]
fn select_yields_to_a_queued_sender_before_blocking() {
    let rt = gmp::Runtime::builder().procs(1).debug("").build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = gmp::chan::<u32>(0);
        let (_other_tx, other_rx) = gmp::chan::<u32>(0);
        for i in 0..100 {
            let tx = tx.clone();
            gmp::go(move || tx.send(i).unwrap());
            let v = gmp::select! {
                recv(other_rx) -> _v => unreachable!("nothing is sent on other"),
                recv(rx) -> v => v.unwrap(),
            };
            assert_eq!(v, i);
            assert_eq!(other_rx.queued(), (0, 0), "round {i}: the select blocked");
        }
    });
}

/// A select with `default` never yields: at one P a goroutine that would
/// send is still queued, so the select sees nothing ready.
#[test]
fn nonblocking_select_does_not_yield() {
    let rt = gmp::Runtime::builder().procs(1).debug("").build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = gmp::chan::<u32>(0);
        let h = gmp::go(move || tx.send(1).unwrap());
        let r = gmp::select! {
            recv(rx) -> v => v.ok(),
            default => None,
        };
        assert_eq!(r, None, "the default select ran the queued sender");
        assert_eq!(rx.recv(), Ok(1));
        h.join().unwrap();
    });
}

#[test]
fn select_between_threads_and_goroutines() {
    let (tx, rx) = gmp::chan::<usize>(0);
    let (ack_tx, ack_rx) = gmp::chan::<usize>(0);
    let t = std::thread::spawn(move || {
        let mut sum = 0;
        loop {
            gmp::select! {
                recv(rx) -> v => match v {
                    Ok(v) => {
                        sum += v;
                        ack_tx.send(v).unwrap();
                    }
                    Err(_) => break,
                },
                default(Duration::from_millis(50)) => {}
            }
        }
        sum
    });
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    rt(2).block_on(move || {
        for i in 0..1000 {
            gmp::select! {
                send(tx, i) -> r => r.unwrap(),
            }
            assert_eq!(ack_rx.recv().unwrap(), i);
            n2.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert_eq!(t.join().unwrap(), 499_500);
    assert_eq!(n.load(Ordering::Relaxed), 1000);
}

/// A close racing a select send, through every path of the select (the
/// lock-free pass 0 when the receiver is parked or the buffer has room,
/// the all-locks pass 1, and a parked send released by the close): every
/// value the select reports sent is received exactly once, in order, and
/// the value of the send that fails on the close comes back unsent.
#[test]
fn close_racing_select_send() {
    rt(2).block_on(|| {
        let (_keep, quiet) = gmp::chan::<usize>(0);
        for i in 0..600usize {
            let cap = i % 3;
            let (tx, rx) = gmp::chan::<usize>(cap);
            let take = i % 7;
            let closer = {
                let rx = rx.clone();
                gmp::go(move || {
                    let mut got = Vec::new();
                    for _ in 0..take {
                        match rx.recv() {
                            Ok(v) => got.push(v),
                            Err(_) => break,
                        }
                    }
                    if take % 2 == 0 {
                        gmp::yield_now();
                    }
                    rx.close();
                    got
                })
            };
            let mut sent = Vec::new();
            let mut v = 0usize;
            let unsent = loop {
                let r = gmp::select! {
                    send(tx, v) -> r => r,
                    recv(quiet) -> _m => unreachable!("quiet channel fired"),
                };
                match r {
                    Ok(()) => {
                        sent.push(v);
                        v += 1;
                    }
                    Err(e) => break e.into_inner(),
                }
            };
            assert_eq!(unsent, v, "the failed send gave back another value");
            let mut got = closer.join().unwrap();
            // Values buffered before the close are still delivered.
            got.extend(rx.try_iter());
            assert_eq!(got, sent, "cap {cap}, take {take}");
            assert_eq!(rx.waiting(), (0, 0));
        }
    });
}

/// Select receivers whose pass-0 hint ("a value is buffered", "a sender is
/// parked") is stale because another receiver took the value first: they
/// fall back to the locked passes or park, and every value still arrives
/// exactly once. Cases name the same channel twice and include a channel
/// that never fires.
#[test]
fn select_receivers_race_on_one_channel() {
    for &(procs, cap) in &[(2usize, 0usize), (2, 3), (4, 1)] {
        rt(procs).block_on(move || {
            const N: usize = 20_000;
            const RECEIVERS: usize = 3;
            let (tx, rx) = gmp::chan::<usize>(cap);
            let seen = Arc::new((0..N).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
            let wg = Arc::new(WaitGroup::new());
            wg.add(RECEIVERS as isize);
            for _ in 0..RECEIVERS {
                let (rx, seen, wg) = (rx.clone(), seen.clone(), wg.clone());
                gmp::go(move || {
                    let nothing = never::<usize>();
                    loop {
                        let v = gmp::select! {
                            recv(rx) -> v => v,
                            recv(nothing) -> _v => unreachable!("never() fired"),
                            recv(rx) -> v => v,
                        };
                        match v {
                            Ok(v) => {
                                seen[v].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                    wg.done();
                });
            }
            drop(rx);
            for v in 0..N {
                tx.send(v).unwrap();
            }
            drop(tx);
            wg.wait();
            let counts: Vec<usize> = seen.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            assert!(
                counts.iter().all(|&c| c == 1),
                "procs {procs} cap {cap}: a value was lost or duplicated"
            );
        });
    }
}

/// Blocking selects reuse a per-thread claim word. Alternate selects that
/// time out (their timer may still hold the word), selects woken by a
/// value, and selects woken by a close, on goroutines and a plain thread:
/// each must report its own outcome, never a stale claim of an earlier one.
#[test]
fn blocking_selects_reuse_claim_words() {
    fn round(i: usize, tx: &Sender<usize>, rx: &Receiver<usize>) {
        match i % 3 {
            0 => {
                let r = gmp::select! {
                    recv(rx) -> v => Some(v),
                    default(Duration::from_micros(200)) => None,
                };
                assert_eq!(r, None, "round {i}: nothing was sent");
            }
            1 => {
                let v = gmp::select! {
                    recv(rx) -> v => v.unwrap(),
                    send(tx, usize::MAX) -> _r => unreachable!("nobody receives on tx"),
                };
                assert_eq!(v, i, "round {i}");
            }
            _ => {
                let r = gmp::select! {
                    recv(rx) -> v => v,
                    default(Duration::from_secs(30)) => unreachable!("round {i}: timed out"),
                };
                assert!(r.is_err(), "round {i}: expected the close");
            }
        }
    }
    let body = |rounds: usize| {
        for i in 0..rounds {
            let (tx, rx) = gmp::chan::<usize>(0);
            let (dead_tx, dead_rx) = gmp::chan::<usize>(0);
            let feeder = std::thread::spawn({
                let tx = tx.clone();
                let rx = rx.clone();
                move || {
                    // Wait until the select is parked, then act.
                    while rx.waiting().1 == 0 && i % 3 != 0 {
                        std::thread::yield_now();
                    }
                    match i % 3 {
                        1 => tx.send(i).unwrap(),
                        2 => drop(rx.close()),
                        _ => {}
                    }
                }
            });
            round(i, &dead_tx, &rx);
            feeder.join().unwrap();
            drop((tx, dead_rx));
        }
    };
    rt(2).block_on(move || {
        let hs: Vec<_> = (0..3).map(|_| gmp::go(move || body(60))).collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    body(30);
}

/// The poll order is uniform over all cases, not only between two (Go's
/// TestSelectFairness covers two): with four always-ready cases, each is
/// chosen about a quarter of the time.
#[test]
fn poll_order_is_uniform_over_four_cases() {
    rt(1).block_on(|| {
        const TRIALS: usize = 40_000;
        let chans: Vec<(Sender<usize>, Receiver<usize>)> =
            (0..4).map(|_| gmp::chan::<usize>(1)).collect();
        let mut hits = [0usize; 4];
        for (i, (tx, _)) in chans.iter().enumerate() {
            tx.send(i).unwrap();
        }
        for _ in 0..TRIALS {
            let i = gmp::select! {
                recv(chans[0].1) -> v => v.unwrap(),
                recv(chans[1].1) -> v => v.unwrap(),
                recv(chans[2].1) -> v => v.unwrap(),
                recv(chans[3].1) -> v => v.unwrap(),
            };
            hits[i] += 1;
            chans[i].0.send(i).unwrap();
        }
        // Expected 10,000 each, standard deviation ~87: 1,000 is > 10 sigma.
        for (i, &h) in hits.iter().enumerate() {
            assert!(
                (9_000..=11_000).contains(&h),
                "case {i} chosen {h} times in {TRIALS}: {hits:?}"
            );
        }
    });
}
