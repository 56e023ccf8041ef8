//! Go's channel tests, ported to gmp.
//!
//! Ported from Go's `src/runtime/chan_test.go` (Copyright The Go Authors,
//! BSD license: <https://go.dev/LICENSE>). Rewritten in our own words and
//! code; each test names the Go test whose scenario it follows. Tests that
//! only make sense for Go's garbage collector or copying stacks are kept in
//! spirit (values stay intact while a blocked goroutine's stack is busy and
//! the goroutine migrates) or left out (interface conversions, reflect).
//!
//! Differences from Go that show up here: a send on a closed channel
//! returns the value in `Err` instead of panicking, and a receive on a
//! closed channel returns `Err(RecvError)` instead of `(zero, false)`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use gmp::channel::{never, Receiver, RecvError, Sender, TryRecvError, TrySendError};
use gmp::sync::WaitGroup;

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

/// TestChan: blocking, closing, FIFO order, many senders and receivers,
/// len and cap — for capacities 0..20, on 4 Ps.
#[test]
fn test_chan() {
    rt(4).block_on(|| {
        for cap in 0..20usize {
            // A receive on an empty channel blocks...
            {
                let (tx, rx) = gmp::chan::<i32>(cap);
                let got = Arc::new(AtomicBool::new(false));
                let g2 = got.clone();
                let rx2 = rx.clone();
                let h = gmp::go(move || {
                    let v = rx2.recv();
                    g2.store(true, Ordering::SeqCst);
                    v
                });
                gmp::sleep(Duration::from_millis(1));
                assert!(
                    !got.load(Ordering::SeqCst),
                    "cap {cap}: recv from empty chan"
                );
                // ...and so does a non-blocking one, which takes default.
                gmp::select! {
                    recv(rx) -> _v => panic!("cap {cap}: select recv from empty chan"),
                    default => {}
                }
                tx.send(0).unwrap();
                assert_eq!(h.join().unwrap(), Ok(0));
            }
            // A send on a full channel blocks.
            {
                let (tx, rx) = gmp::chan::<i32>(cap);
                for i in 0..cap {
                    tx.send(i as i32).unwrap();
                }
                let sent = Arc::new(AtomicBool::new(false));
                let s2 = sent.clone();
                let tx2 = tx.clone();
                let h = gmp::go(move || {
                    tx2.send(0).unwrap();
                    s2.store(true, Ordering::SeqCst);
                });
                gmp::sleep(Duration::from_millis(1));
                assert!(!sent.load(Ordering::SeqCst), "cap {cap}: send to full chan");
                gmp::select! {
                    send(tx, 0) -> _r => panic!("cap {cap}: select send to full chan"),
                    default => {}
                }
                rx.recv().unwrap();
                h.join().unwrap();
            }
            // Buffered values survive close, in order; then closed forever.
            {
                let (tx, rx) = gmp::chan::<i32>(cap);
                for i in 0..cap {
                    tx.send(i as i32).unwrap();
                }
                tx.close();
                for i in 0..cap {
                    assert_eq!(rx.recv(), Ok(i as i32), "cap {cap}");
                }
                assert_eq!(rx.recv(), Err(RecvError));
                assert_eq!(rx.recv(), Err(RecvError));
            }
            // Close releases a blocked receiver.
            {
                let (tx, rx) = gmp::chan::<i32>(cap);
                let done = Arc::new(AtomicBool::new(false));
                let d2 = done.clone();
                let h = gmp::go(move || {
                    let v = rx.recv();
                    d2.store(true, Ordering::SeqCst);
                    v
                });
                gmp::sleep(Duration::from_millis(1));
                assert!(!done.load(Ordering::SeqCst));
                tx.close();
                assert_eq!(h.join().unwrap(), Err(RecvError));
            }
            // 100 values from one sender arrive intact and in order.
            {
                let (tx, rx) = gmp::chan::<i32>(cap);
                gmp::go(move || {
                    for i in 0..100 {
                        tx.send(i).unwrap();
                    }
                });
                for i in 0..100 {
                    assert_eq!(rx.recv(), Ok(i), "cap {cap}: FIFO");
                }
            }
            // 4 senders each send 0..L; 4 receivers; every value arrives
            // exactly 4 times.
            {
                const P: usize = 4;
                const L: usize = 1000;
                let (tx, rx) = gmp::chan::<usize>(cap);
                for _ in 0..P {
                    let tx = tx.clone();
                    gmp::go(move || {
                        for i in 0..L {
                            tx.send(i).unwrap();
                        }
                    });
                }
                drop(tx);
                let hs: Vec<_> = (0..P)
                    .map(|_| {
                        let rx = rx.clone();
                        gmp::go(move || {
                            let mut seen = vec![0usize; L];
                            for v in &rx {
                                seen[v] += 1;
                            }
                            seen
                        })
                    })
                    .collect();
                let mut total = vec![0usize; L];
                for h in hs {
                    for (t, s) in total.iter_mut().zip(h.join().unwrap()) {
                        *t += s;
                    }
                }
                assert!(
                    total.iter().all(|&n| n == P),
                    "cap {cap}: lost or duplicated"
                );
            }
            // len and cap.
            {
                let (tx, rx) = gmp::chan::<usize>(cap);
                assert_eq!((rx.len(), rx.cap()), (0, cap));
                for i in 0..cap {
                    tx.send(i).unwrap();
                }
                assert_eq!((rx.len(), tx.cap()), (cap, cap));
            }
        }
    });
}

/// TestNonblockRecvRace: a non-blocking receive racing with close must
/// never report "not ready" — the channel always has a value or is closed.
#[test]
fn test_nonblock_recv_race() {
    rt(4).block_on(|| {
        for _ in 0..2000 {
            let (tx, rx) = gmp::chan::<i32>(1);
            tx.send(1).unwrap();
            let rx2 = rx.clone();
            let h = gmp::go(move || {
                gmp::select! {
                    recv(rx2) -> _v => true,
                    default => false,
                }
            });
            tx.close();
            let _ = rx.recv();
            assert!(h.join().unwrap(), "chan is not ready");
        }
    });
}

/// TestNonblockSelectRace: one of two 1-buffered channels always holds a
/// value, so a select over both with a default must never take default.
#[test]
fn test_nonblock_select_race() {
    rt(4).block_on(|| {
        for _ in 0..2000 {
            let (tx1, rx1) = gmp::chan::<i32>(1);
            let (tx2, rx2) = gmp::chan::<i32>(1);
            tx1.send(1).unwrap();
            let (a, b) = (rx1.clone(), rx2.clone());
            let h = gmp::go(move || {
                gmp::select! {
                    recv(a) -> _v => true,
                    recv(b) -> _v => true,
                    default => false,
                }
            });
            tx2.send(1).unwrap();
            gmp::select! {
                recv(rx1) -> _v => {},
                default => {},
            }
            assert!(h.join().unwrap(), "no chan is ready");
        }
    });
}

/// TestNonblockSelectRace2: as above, with the second channel closed
/// instead of filled.
#[test]
fn test_nonblock_select_race2() {
    rt(4).block_on(|| {
        for _ in 0..2000 {
            let (tx1, rx1) = gmp::chan::<i32>(1);
            let (tx2, rx2) = gmp::chan::<i32>(0);
            tx1.send(1).unwrap();
            let (a, b) = (rx1.clone(), rx2.clone());
            let h = gmp::go(move || {
                gmp::select! {
                    recv(a) -> _v => true,
                    recv(b) -> _v => true,
                    default => false,
                }
            });
            tx2.close();
            gmp::select! {
                recv(rx1) -> _v => {},
                default => {},
            }
            assert!(h.join().unwrap(), "no chan is ready");
            drop(tx2);
        }
    });
}

/// TestSelfSelect: two goroutines select between sending and receiving on
/// the same channel; on an unbuffered channel a goroutine must never
/// receive its own value.
#[test]
fn test_self_select() {
    rt(2).block_on(|| {
        for cap in [0usize, 10] {
            let (tx, rx) = gmp::chan::<usize>(cap);
            let wg = WaitGroup::new();
            for p in 0..2usize {
                let (tx, rx) = (tx.clone(), rx.clone());
                wg.go(move || {
                    for i in 0..1000usize {
                        if p == 0 || i % 2 == 0 {
                            gmp::select! {
                                send(tx, p) -> r => r.unwrap(),
                                recv(rx) -> v => {
                                    let v = v.unwrap();
                                    assert!(!(cap == 0 && v == p), "self receive");
                                }
                            }
                        } else {
                            gmp::select! {
                                recv(rx) -> v => {
                                    let v = v.unwrap();
                                    assert!(!(cap == 0 && v == p), "self receive");
                                }
                                send(tx, p) -> r => r.unwrap(),
                            }
                        }
                    }
                });
            }
            wg.wait();
        }
    });
}

/// TestSelectStress: per channel (2 unbuffered, caps 2 and 3) a plain
/// sender and a plain receiver, plus one goroutine that select-sends N to
/// every channel and one that select-receives N from every channel,
/// switching a case off (to `never`) when its channel is done. Must finish
/// with every count right.
#[test]
fn test_select_stress() {
    const N: usize = 3000;
    rt(4).block_on(|| {
        let caps = [0usize, 0, 2, 3];
        let chans: Vec<(Sender<usize>, Receiver<usize>)> =
            caps.iter().map(|&c| gmp::chan(c)).collect();
        let wg = WaitGroup::new();
        let received = Arc::new(AtomicUsize::new(0));
        for (tx, rx) in &chans {
            let tx = tx.clone();
            wg.go(move || {
                for i in 0..N {
                    tx.send(i).unwrap();
                }
            });
            let rx = rx.clone();
            let received = received.clone();
            wg.go(move || {
                for _ in 0..N {
                    rx.recv().unwrap();
                    received.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The select sender: a `never` receiver stands in for Go's nil
        // channel; a send case is switched off by using a dead-end
        // channel's sender that nobody receives from (and stays open).
        let txs: Vec<Sender<usize>> = chans.iter().map(|c| c.0.clone()).collect();
        wg.go(move || {
            let mut n = [0usize; 4];
            let (dead_tx, _dead_rx) = gmp::chan::<usize>(0);
            let pick = |n: &[usize; 4], k: usize| if n[k] < N { &txs[k] } else { &dead_tx };
            while n.iter().any(|&c| c < N) {
                gmp::select! {
                    send(pick(&n, 0), 0) -> r => { r.unwrap(); n[0] += 1 }
                    send(pick(&n, 1), 1) -> r => { r.unwrap(); n[1] += 1 }
                    send(pick(&n, 2), 2) -> r => { r.unwrap(); n[2] += 1 }
                    send(pick(&n, 3), 3) -> r => { r.unwrap(); n[3] += 1 }
                }
            }
        });
        let rxs: Vec<Receiver<usize>> = chans.iter().map(|c| c.1.clone()).collect();
        let received2 = received.clone();
        wg.go(move || {
            let mut n = [0usize; 4];
            let off = never::<usize>();
            let pick = |n: &[usize; 4], k: usize| if n[k] < N { &rxs[k] } else { &off };
            while n.iter().any(|&c| c < N) {
                gmp::select! {
                    recv(pick(&n, 0)) -> v => { v.unwrap(); n[0] += 1 }
                    recv(pick(&n, 1)) -> v => { v.unwrap(); n[1] += 1 }
                    recv(pick(&n, 2)) -> v => { v.unwrap(); n[2] += 1 }
                    recv(pick(&n, 3)) -> v => { v.unwrap(); n[3] += 1 }
                }
                received2.fetch_add(1, Ordering::Relaxed);
            }
        });
        wg.wait();
        assert_eq!(received.load(Ordering::Relaxed), 8 * N);
        for (_, rx) in &chans {
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        }
    });
}

/// TestSelectFairness: a select over four receive cases, two of which
/// always have data, must pick those two about equally often.
#[test]
fn test_select_fairness() {
    const TRIALS: usize = 10_000;
    rt(2).block_on(|| {
        let (tx1, rx1) = gmp::chan::<u8>(TRIALS + 1);
        let (tx2, rx2) = gmp::chan::<u8>(TRIALS + 1);
        for _ in 0..=TRIALS {
            tx1.send(1).unwrap();
            tx2.send(2).unwrap();
        }
        let (_tx3, rx3) = gmp::chan::<u8>(0);
        let (_tx4, rx4) = gmp::chan::<u8>(0);
        let (out_tx, out_rx) = gmp::chan::<u8>(0);
        let (done_tx, done_rx) = gmp::chan::<()>(0);
        let h = gmp::go(move || loop {
            let b = gmp::select! {
                recv(rx3) -> v => v.unwrap(),
                recv(rx4) -> v => v.unwrap(),
                recv(rx1) -> v => v.unwrap(),
                recv(rx2) -> v => v.unwrap(),
            };
            gmp::select! {
                send(out_tx, b) -> r => r.unwrap(),
                recv(done_rx) -> _d => return,
            }
        });
        let (mut cnt1, mut cnt2) = (0usize, 0usize);
        for _ in 0..TRIALS {
            match out_rx.recv().unwrap() {
                1 => cnt1 += 1,
                2 => cnt2 += 1,
                b => panic!("unexpected value {b} on channel"),
            }
        }
        // More than 10 sigma away from an even split means unfair.
        let p = 0.5f64;
        let sigmas = 10.0;
        let t = TRIALS as f64;
        let hi = t * (p + sigmas * (p * (1.0 - p) / t).sqrt());
        assert!(
            (cnt1 as f64) <= hi && (cnt2 as f64) <= hi,
            "unfair select: in {TRIALS} trials, results were {cnt1}, {cnt2}"
        );
        drop(done_tx);
        h.join().unwrap();
    });
}

/// TestPseudoRandomSend: a select with two send cases on the same channel
/// must pick both.
#[test]
fn test_pseudo_random_send() {
    const N: usize = 100;
    rt(2).block_on(|| {
        for cap in [0usize, N] {
            let (tx, rx) = gmp::chan::<u8>(cap);
            let h = gmp::go(move || (0..N).map(|_| rx.recv().unwrap()).collect::<Vec<_>>());
            for _ in 0..N {
                gmp::select! {
                    send(tx, 1) -> r => r.unwrap(),
                    send(tx, 0) -> r => r.unwrap(),
                }
            }
            let l = h.join().unwrap();
            let n1 = l.iter().filter(|&&v| v == 1).count();
            let n0 = N - n1;
            assert!(
                n0 > N / 10 && n1 > N / 10,
                "want pseudo-random, got {n0} zeros and {n1} ones (chan cap {cap})"
            );
        }
    });
}

/// TestMultiConsumer: 23 workers drain a work channel and forward the
/// results; count and sum must match what was sent.
#[test]
fn test_multi_consumer() {
    const NWORK: usize = 23;
    const NITER: usize = 27_183;
    let pn = [2usize, 3, 7, 11, 13, 17, 19, 23, 27, 31];
    rt(4).block_on(move || {
        let (qtx, qrx) = gmp::chan::<usize>(NWORK * 3);
        let (rtx, rrx) = gmp::chan::<usize>(NWORK * 3);
        let wg = WaitGroup::new();
        for w in 0..NWORK {
            let (qrx, rtx) = (qrx.clone(), rtx.clone());
            wg.go(move || {
                for v in &qrx {
                    // Mix things up a bit.
                    if pn[w % pn.len()] == v {
                        gmp::yield_now();
                    }
                    rtx.send(v).unwrap();
                }
            });
        }
        drop((qrx, rtx));
        let wg2 = wg.clone();
        let (cnt_tx, cnt_rx) = gmp::chan::<(usize, usize)>(1);
        gmp::go(move || {
            let (mut n, mut s) = (0, 0);
            for v in &rrx {
                n += 1;
                s += v;
            }
            cnt_tx.send((n, s)).unwrap();
        });
        let mut expect = 0;
        for i in 0..NITER {
            let v = pn[i % pn.len()];
            expect += v;
            qtx.send(v).unwrap();
        }
        drop(qtx);
        wg2.wait();
        assert_eq!(cnt_rx.recv().unwrap(), (NITER, expect));
    });
}

fn deep(n: usize, salt: u64) -> u64 {
    // Uses real stack in every frame so a later value check would notice a
    // clobbered stack.
    let buf = [salt; 32];
    if n == 0 {
        return buf.iter().fold(0u64, |a, &b| a.wrapping_add(b));
    }
    deep(n - 1, salt.wrapping_mul(31).wrapping_add(1)) ^ std::hint::black_box(buf)[n % 32]
}

/// TestShrinkStackDuringBlockedSend, in spirit: the sender blocks in a send
/// between bursts of deep stack use, the receiver yields and migrates
/// between receives; every value arrives intact and in order.
#[test]
fn test_values_intact_across_blocked_send() {
    rt(2).block_on(|| {
        let (tx, rx) = gmp::chan::<[u64; 16]>(0);
        let h = gmp::go(move || {
            let mut acc = 0;
            for i in 0..200u64 {
                tx.send([i; 16]).unwrap();
                acc ^= deep(40, i);
            }
            acc
        });
        for i in 0..200u64 {
            let v = rx.recv().unwrap();
            assert_eq!(v, [i; 16]);
            gmp::yield_now();
        }
        h.join().unwrap();
    });
}

/// TestSelectDuplicateChannel: a goroutine selecting on the same channel
/// twice, woken through a third channel, must take both of its entries out
/// of that channel's queue, or a later send would try to wake it instead
/// of the goroutine really waiting there.
#[test]
fn test_select_duplicate_channel() {
    rt(2).block_on(|| {
        let (c_tx, c_rx) = gmp::chan::<i32>(0);
        let (d_tx, d_rx) = gmp::chan::<i32>(0);
        let (e_tx, e_rx) = gmp::chan::<i32>(0);
        // Goroutine A: two cases on c, one on d.
        let (c1, c2) = (c_rx.clone(), c_rx.clone());
        let a = gmp::go(move || {
            let got = gmp::select! {
                recv(c1) -> v => v.unwrap(),
                recv(c2) -> v => v.unwrap(),
                recv(d_rx) -> v => v.unwrap(),
            };
            e_tx.send(9).unwrap();
            got
        });
        while c_rx.waiting().1 < 2 {
            gmp::yield_now();
        }
        // Goroutine B queues on c behind A's two entries.
        let c3 = c_rx.clone();
        let b = gmp::go(move || c3.recv().unwrap());
        while c_rx.waiting().1 < 3 {
            gmp::yield_now();
        }
        d_tx.send(7).unwrap(); // wakes A, which must leave c's queue
        assert_eq!(e_rx.recv().unwrap(), 9);
        assert_eq!(c_rx.waiting().1, 1, "only B is left on c");
        c_tx.send(8).unwrap(); // must reach B
        assert_eq!(b.join().unwrap(), 8);
        assert_eq!(a.join().unwrap(), 7);
    });
}

/// Not in Go's file, but Go's semantics: a send case on a closed channel
/// fires (Go panics; we return the value), and try_send reports it.
#[test]
fn closed_channel_in_select() {
    let (tx, rx) = gmp::chan::<i32>(0);
    rx.close();
    let r = gmp::select! {
        send(tx, 5) -> r => r,
        default => panic!("a send on a closed channel is ready"),
    };
    assert_eq!(r.unwrap_err().into_inner(), 5);
    assert_eq!(tx.try_send(6), Err(TrySendError::Disconnected(6)));
    let seen = StdMutex::new(0);
    gmp::select! {
        recv(rx) -> v => { assert_eq!(v, Err(RecvError)); *seen.lock().unwrap() += 1 }
    }
    assert_eq!(*seen.lock().unwrap(), 1);
}
