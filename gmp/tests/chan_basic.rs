//! Channel basics: the API surface, buffering, close, threads, timeouts.

use std::time::{Duration, Instant};

use gmp::channel::{
    self, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

#[test]
fn buffered_fifo_len_cap_close_drain() {
    let (tx, rx) = gmp::chan::<i32>(3);
    assert_eq!((tx.len(), tx.cap(), rx.cap()), (0, 3, 3));
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    tx.try_send(3).unwrap();
    assert!(tx.is_full());
    assert_eq!(tx.try_send(4), Err(TrySendError::Full(4)));
    assert_eq!(rx.len(), 3);
    assert!(tx.close());
    assert!(!tx.close(), "second close reports it");
    assert!(rx.is_closed());
    assert_eq!(tx.send(5), Err(SendError(5)));
    assert_eq!(tx.try_send(6), Err(TrySendError::Disconnected(6)));
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Ok(3));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn last_sender_drop_closes_last_receiver_drop_disconnects() {
    let (tx, rx) = gmp::chan::<i32>(1);
    let tx2 = tx.clone();
    drop(tx);
    assert!(!rx.is_closed());
    tx2.send(1).unwrap();
    drop(tx2);
    assert!(rx.is_closed());
    assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1]);

    let (tx, rx) = gmp::chan::<i32>(0);
    let rx2 = rx.clone();
    drop(rx);
    assert!(!tx.is_closed());
    drop(rx2);
    assert_eq!(tx.send(9), Err(SendError(9)));
}

#[test]
fn errors_display() {
    assert_eq!(
        RecvError.to_string(),
        "receiving on a closed and empty channel"
    );
    assert_eq!(SendError(1).to_string(), "sending on a closed channel");
    assert_eq!(
        TrySendError::Full(1).to_string(),
        "sending on a full channel"
    );
    assert_eq!(
        TryRecvError::Empty.to_string(),
        "receiving on an empty channel"
    );
    assert!(RecvTimeoutError::Timeout.is_timeout());
    assert_eq!(SendTimeoutError::Timeout(3).into_inner(), 3);
    let e: Box<dyn std::error::Error> = Box::new(SendError(String::from("x")));
    assert_eq!(e.to_string(), "sending on a closed channel");
    assert_eq!(format!("{:?}", TrySendError::Full(1)), "Full(..)");
}

#[test]
fn unbuffered_between_threads() {
    let (tx, rx) = gmp::chan::<u64>(0);
    let h = std::thread::spawn(move || (0..1000).map(|_| rx.recv().unwrap()).sum::<u64>());
    for i in 0..1000 {
        tx.send(i).unwrap();
    }
    assert_eq!(h.join().unwrap(), 999 * 1000 / 2);
}

#[test]
fn unbuffered_goroutines() {
    rt(2).block_on(|| {
        let (tx, rx) = gmp::chan::<u64>(0);
        let (rtx, rrx) = gmp::chan::<u64>(0);
        gmp::go(move || {
            for v in &rx {
                rtx.send(v * 2).unwrap();
            }
        });
        for i in 0..2000 {
            tx.send(i).unwrap();
            assert_eq!(rrx.recv().unwrap(), i * 2);
        }
        drop(tx);
        assert_eq!(rrx.recv(), Err(RecvError));
    });
}

#[test]
fn threads_feed_goroutines_and_back() {
    let (tx, rx) = gmp::chan::<u64>(4);
    let (otx, orx) = gmp::chan::<u64>(0);
    let r = rt(2);
    let feeder = std::thread::spawn(move || {
        for i in 0..5000 {
            tx.send(i).unwrap();
        }
    });
    let reader = std::thread::spawn(move || orx.iter().sum::<u64>());
    r.block_on(move || {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                let otx = otx.clone();
                gmp::go(move || {
                    for v in rx {
                        otx.send(v).unwrap();
                    }
                })
            })
            .collect();
        drop(otx);
        for h in hs {
            h.join().unwrap();
        }
    });
    feeder.join().unwrap();
    assert_eq!(reader.join().unwrap(), 4999 * 5000 / 2);
}

#[test]
fn timeouts_in_goroutines_and_threads() {
    let check = || {
        let (tx, rx) = gmp::chan::<i32>(0);
        let t = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
        let t = Instant::now();
        assert_eq!(
            tx.send_timeout(5, Duration::from_millis(20)),
            Err(SendTimeoutError::Timeout(5))
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert_eq!(rx.waiting(), (0, 0), "timed-out entries are removed");
        let never = channel::never::<i32>();
        assert_eq!(
            never.recv_timeout(Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        assert_eq!(never.try_recv(), Err(TryRecvError::Empty));
    };
    check();
    rt(2).block_on(check);
}

#[test]
fn timed_recv_gets_value_before_deadline() {
    rt(2).block_on(|| {
        let (tx, rx) = gmp::chan::<i32>(0);
        gmp::go(move || {
            gmp::sleep(Duration::from_millis(5));
            tx.send(42).unwrap();
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(42));
        let (tx, rx) = gmp::chan::<i32>(0);
        let h = gmp::go(move || tx.send_timeout(7, Duration::from_secs(5)));
        gmp::sleep(Duration::from_millis(5));
        assert_eq!(rx.recv(), Ok(7));
        assert_eq!(h.join().unwrap(), Ok(()));
    });
}

#[test]
fn close_releases_blocked_goroutines() {
    rt(2).block_on(|| {
        let (tx, rx) = gmp::chan::<i32>(0);
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let rx = rx.clone();
                gmp::go(move || rx.recv())
            })
            .collect();
        while rx.waiting().1 < 8 {
            gmp::yield_now();
        }
        assert!(tx.close());
        for h in hs {
            assert_eq!(h.join().unwrap(), Err(RecvError));
        }
        let (tx, rx) = gmp::chan::<i32>(0);
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let tx = tx.clone();
                gmp::go(move || tx.send(i))
            })
            .collect();
        while rx.waiting().0 < 8 {
            gmp::yield_now();
        }
        assert!(rx.close());
        let mut back: Vec<i32> = hs
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_err().into_inner())
            .collect();
        back.sort();
        assert_eq!(back, (0..8).collect::<Vec<_>>());
    });
}

#[test]
fn unbounded_never_blocks() {
    let (tx, rx) = channel::unbounded::<usize>();
    for i in 0..10_000 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.len(), 10_000);
    drop(tx);
    assert!(rx.into_iter().eq(0..10_000));
}

#[test]
fn select_basic_forms() {
    let (tx, rx) = gmp::chan::<i32>(1);
    let out = gmp::select! {
        send(tx, 1) -> r => { r.unwrap(); "sent" }
        recv(rx) -> _v => "received",
    };
    assert_eq!(out, "sent");
    let out = gmp::select! {
        recv(rx) -> v => v.unwrap(),
        default => -1,
    };
    assert_eq!(out, 1);
    let out = gmp::select! {
        recv(rx) -> v => v.unwrap(),
        default => -1
    };
    assert_eq!(out, -1);
    let t = Instant::now();
    let out = gmp::select! {
        recv(rx) -> v => v.unwrap(),
        default(Duration::from_millis(10)) => -2,
    };
    assert_eq!(out, -2);
    assert!(t.elapsed() >= Duration::from_millis(10));
    let n = channel::never::<i32>();
    let rref = &rx;
    tx.send(3).unwrap();
    let out = gmp::select! {
        recv(n) -> _v => unreachable!(),
        recv(rref) -> v => v.unwrap(),
    };
    assert_eq!(out, 3);
    let mut rx2 = rx.clone();
    tx.close();
    gmp::select! {
        recv(rx2) -> v => { assert!(v.is_err()); rx2 = channel::never(); }
    }
    assert_eq!(rx2.cap(), 0);
    let out: i32 = gmp::select! { default => 5 };
    assert_eq!(out, 5);
    let r = gmp::select! {
        send(tx, 9) -> r => r,
    };
    assert_eq!(r, Err(SendError(9)));
}

/// Inside `gmp::blocking` a goroutine has given up its P: channel and lock
/// operations there block its thread instead of parking.
#[test]
fn channel_ops_inside_blocking_sections() {
    rt(2).block_on(|| {
        let (tx, rx) = gmp::chan::<i32>(0);
        let (tx2, rx2) = gmp::chan::<i32>(0);
        gmp::go(move || {
            gmp::sleep(Duration::from_millis(5));
            tx.send(1).unwrap();
            assert_eq!(rx2.recv(), Ok(2));
        });
        let v = gmp::blocking(|| {
            let v = rx.recv().unwrap();
            let r = gmp::select! {
                send(tx2, v + 1) -> r => r,
                default(Duration::from_secs(5)) => panic!("timed out"),
            };
            r.unwrap();
            let (_keep, quiet) = gmp::chan::<i32>(0);
            assert_eq!(
                quiet.recv_timeout(Duration::from_millis(2)),
                Err(RecvTimeoutError::Timeout)
            );
            let m = gmp::sync::Mutex::new(v);
            let cv = gmp::sync::Condvar::new();
            let (g, t) = cv.wait_timeout(m.lock(), Duration::from_millis(2));
            assert!(t.timed_out());
            let x = *g;
            drop(g);
            x
        });
        assert_eq!(v, 1);
    });
}

#[test]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<gmp::Sender<Vec<u8>>>();
    both::<gmp::Receiver<Vec<u8>>>();
    both::<gmp::sync::Mutex<Vec<u8>>>();
    both::<gmp::sync::RwLock<Vec<u8>>>();
    both::<gmp::sync::Condvar>();
    both::<gmp::sync::WaitGroup>();
    both::<gmp::sync::Once>();
}

/// A parked goroutine receiver gets its value straight from the sender
/// (a mailbox in its G); big values, thread receivers and select receivers
/// take the locked path. Mixed on one channel, every value arrives exactly
/// once and is dropped exactly once.
#[test]
fn direct_handoff_to_parked_receivers_mixes_with_every_other_kind() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    struct V(u64, [u64; 2], Arc<AtomicUsize>);
    impl Drop for V {
        fn drop(&mut self) {
            self.2.fetch_add(1, Ordering::Relaxed);
        }
    }
    const N: u64 = 4000;
    let drops = Arc::new(AtomicUsize::new(0));
    let r = rt(2);
    let (tx, rx) = gmp::chan::<V>(0);
    let (btx, brx) = gmp::chan::<[u64; 16]>(0); // too big for a mailbox
    let thread_rx = rx.clone();
    let t = std::thread::spawn(move || {
        let mut s = 0;
        while let Ok(v) = thread_rx.recv() {
            s += v.0;
        }
        s
    });
    let d = drops.clone();
    let (sum, big) = r.block_on(move || {
        let recvs: Vec<_> = (0..3)
            .map(|k| {
                let rx = rx.clone();
                gmp::go(move || {
                    let mut s = 0;
                    loop {
                        let v = if k == 0 {
                            gmp::select! {
                                recv(rx) -> v => v,
                            }
                        } else {
                            rx.recv()
                        };
                        match v {
                            Ok(v) => s += v.0 + v.1[1],
                            Err(_) => return s,
                        }
                    }
                })
            })
            .collect();
        drop(rx);
        let bigr = gmp::go(move || {
            let mut s = 0;
            while let Ok(b) = brx.recv() {
                s += b[15];
            }
            s
        });
        for i in 0..N {
            tx.send(V(i, [0, 0], d.clone())).unwrap();
            if i % 8 == 0 {
                btx.send([i; 16]).unwrap();
            }
        }
        drop(tx);
        drop(btx);
        let s: u64 = recvs.into_iter().map(|h| h.join().unwrap()).sum();
        (s, bigr.join().unwrap())
    });
    let total = sum + t.join().unwrap();
    assert_eq!(total, N * (N - 1) / 2);
    assert_eq!(big, (0..N).step_by(8).sum::<u64>());
    assert_eq!(drops.load(Ordering::Relaxed), N as usize);
}
