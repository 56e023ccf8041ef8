//! The read hint of `gmp::net::TcpStream`: once a read empties the receive
//! queue (the kernel says so through `TCP_INQ`), the next read parks before
//! trying. These tests make every way data or end-of-file can arrive after
//! such a read happen many times over, across Ms, and check that no reader
//! misses it (a lost wake-up shows up as a hang, caught by the guard).

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use gmp::net::{TcpListener, TcpStream};

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

/// Runs `f` in a fresh runtime; panics if it has not finished after a
/// generous bound (a hang guard for lost wake-ups, not a speed check).
fn guarded(procs: usize, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        rt(procs).block_on(f);
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The thread panicked: surface its panic.
            t.join().unwrap();
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: a reader missed its wake-up"),
    }
}

/// A connected pair (client, server side) inside the runtime.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = gmp::go(move || l.accept().unwrap().0);
    let c = TcpStream::connect(addr).unwrap();
    let s = h.join().unwrap();
    c.set_nodelay(true).unwrap();
    s.set_nodelay(true).unwrap();
    (c, s)
}

fn byte(conn: usize, round: usize, i: usize) -> u8 {
    (conn * 31 + round * 7 + i) as u8
}

/// Many connections, each round a request the server answers in pieces
/// (split writes with yields between, so the client's read of the first
/// piece drains the queue and the rest arrives while it parks or is about
/// to), or as two answers back to back (so the first read leaves bytes
/// behind and must not park).
#[test]
fn request_response_in_pieces_never_loses_a_wakeup() {
    for procs in [1, 2, 4] {
        guarded(procs, || {
            const CONNS: usize = 40;
            const ROUNDS: usize = 300;
            let bad = Arc::new(AtomicUsize::new(0));
            let wg = Arc::new(gmp::sync::WaitGroup::new());
            wg.add(CONNS as isize);
            for c in 0..CONNS {
                let (mut cl, mut sv) = pair();
                gmp::go(move || {
                    let mut req = [0u8; 8];
                    for r in 0..ROUNDS {
                        sv.read_exact(&mut req).unwrap();
                        let ans: Vec<u8> = (0..64).map(|i| byte(c, r, i)).collect();
                        match r % 4 {
                            0 => sv.write_all(&ans).unwrap(),
                            1 => {
                                for piece in ans.chunks(16) {
                                    sv.write_all(piece).unwrap();
                                    gmp::yield_now();
                                }
                            }
                            2 => {
                                sv.write_all(&ans[..1]).unwrap();
                                gmp::sleep(Duration::from_micros(50));
                                sv.write_all(&ans[1..]).unwrap();
                            }
                            _ => {
                                // The answer twice: the client reads one copy
                                // per round, so a copy waits in the queue.
                                sv.write_all(&ans).unwrap();
                                sv.write_all(&ans).unwrap();
                            }
                        }
                    }
                });
                let bad = bad.clone();
                let wg = wg.clone();
                gmp::go(move || {
                    let mut buf = [0u8; 64];
                    let mut extra = 0;
                    for r in 0..ROUNDS {
                        cl.write_all(&[r as u8; 8]).unwrap();
                        cl.read_exact(&mut buf).unwrap();
                        if buf.iter().enumerate().any(|(i, &b)| b != byte(c, r, i)) {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                        if r % 4 == 3 {
                            extra += 1;
                            cl.read_exact(&mut buf).unwrap();
                            if buf.iter().enumerate().any(|(i, &b)| b != byte(c, r, i)) {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    assert_eq!(extra, ROUNDS / 4);
                    wg.done();
                });
            }
            wg.wait();
            assert_eq!(bad.load(Ordering::Relaxed), 0, "corrupted answers");
        });
    }
}

/// After a read that drained the queue: end-of-file, a local read
/// shutdown, a zero-length read, and a read timeout all still return.
#[test]
fn eof_shutdown_empty_reads_and_timeouts_after_a_draining_read() {
    guarded(2, || {
        let mut buf = [0u8; 4];
        for round in 0..200 {
            // Peer closes after a message the reader drained.
            let (mut c, mut s) = pair();
            let h = gmp::go(move || {
                s.write_all(b"ping").unwrap();
                if round % 2 == 0 {
                    gmp::yield_now();
                }
                drop(s);
            });
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            assert_eq!(c.read(&mut buf).unwrap(), 0, "end-of-file");
            assert_eq!(c.read(&mut buf).unwrap(), 0, "end-of-file again");
            h.join().unwrap();
        }

        // A zero-length read returns at once on an empty queue (as in Go;
        // the kernel would say EAGAIN and park it until data came).
        let (mut c, mut s) = pair();
        s.write_all(b"ping").unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(c.read(&mut []).unwrap(), 0);
        assert_eq!(
            c.read_vectored(&mut [std::io::IoSliceMut::new(&mut [])])
                .unwrap(),
            0
        );

        // A timeout still fires on a drained queue, and data afterwards is
        // still seen.
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = c.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        s.write_all(b"pong").unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        c.set_read_timeout(None).unwrap();

        // Another goroutine shuts the read half down while this one parks
        // after a draining read.
        let c = Arc::new(c);
        s.write_all(b"ping").unwrap();
        (&*c).read_exact(&mut buf).unwrap();
        let c2 = c.clone();
        let h = gmp::go(move || {
            gmp::sleep(Duration::from_millis(5));
            c2.shutdown(Shutdown::Read).unwrap();
        });
        assert_eq!(
            (&*c).read(&mut buf).unwrap(),
            0,
            "shutdown gives end-of-file"
        );
        h.join().unwrap();
    });
}

/// Two handles on one connection (`try_clone`): data drained through one
/// and arriving later is seen by a reader parked on the other.
#[test]
fn a_clone_reads_what_arrives_after_the_other_handle_drained() {
    guarded(2, || {
        let (c, mut s) = pair();
        let c2 = c.try_clone().unwrap();
        let mut buf = [0u8; 4];
        for i in 0..500u32 {
            s.write_all(&i.to_le_bytes()).unwrap();
            // Alternate handles: each one's hint may say "drained" while the
            // bytes arrive for the other.
            let mut r = if i % 2 == 0 { &c } else { &c2 };
            r.read_exact(&mut buf).unwrap();
            assert_eq!(u32::from_le_bytes(buf), i);
        }
    });
}

/// The per-direction op lock under contention: goroutines and plain threads
/// read one stream while the data trickles in, so readers park on the
/// netpoller while others queue on the lock (two parked on one slot would
/// panic in the poller). Every byte is read exactly once.
#[test]
fn goroutines_and_threads_contend_for_one_stream() {
    guarded(2, || {
        const CHUNKS: usize = 2000;
        const CHUNK: usize = 37;
        let (c, mut s) = pair();
        let c = Arc::new(c);
        let total = Arc::new(AtomicUsize::new(0));
        let reader = |c: Arc<TcpStream>, total: Arc<AtomicUsize>| {
            move || {
                let mut buf = [0u8; 64];
                loop {
                    match (&*c).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            assert!(buf[..n].iter().all(|&b| b == 7));
                            total.fetch_add(n, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        };
        let gs: Vec<_> = (0..8)
            .map(|_| gmp::go(reader(c.clone(), total.clone())))
            .collect();
        let ts: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(reader(c.clone(), total.clone())))
            .collect();
        for i in 0..CHUNKS {
            s.write_all(&[7u8; CHUNK]).unwrap();
            if i % 3 == 0 {
                gmp::yield_now();
            }
        }
        drop(s);
        for g in gs {
            g.join().unwrap();
        }
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(total.load(Ordering::SeqCst), CHUNKS * CHUNK);
    });
}
