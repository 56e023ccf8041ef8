//! The netpoller through `gmp::net`: echo servers, errors, timeouts,
//! conversions, UDP and Unix sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

/// Raises the soft descriptor limit towards the hard one (1,000 clients
/// need 2,000+ descriptors in one process).
fn raise_nofile(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    }
}

/// Serves echo on `l` forever: one goroutine per connection.
fn spawn_echo_server(l: TcpListener) -> Arc<AtomicUsize> {
    let errors = Arc::new(AtomicUsize::new(0));
    let e2 = errors.clone();
    gmp::go(move || loop {
        match l.accept() {
            Ok((mut c, _)) => {
                let e3 = e2.clone();
                gmp::go(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if c.write_all(&buf[..n]).is_err() {
                                    e3.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                            Err(_) => {
                                e3.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                });
            }
            Err(_) => {
                e2.fetch_add(1, Ordering::Relaxed);
                gmp::sleep(Duration::from_millis(1));
            }
        }
    });
    errors
}

fn pattern(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ id.wrapping_mul(7919)) as u8)
        .collect()
}

#[test]
fn echo_1000_concurrent_clients() {
    raise_nofile(8192);
    const CLIENTS: usize = 1000;
    const LEN: usize = 8 * 1024;
    let rt = rt(2);
    let checked = rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let errors = spawn_echo_server(l);
        // Every client connects before any of them writes: 1,000
        // connections really are open at once.
        let connected = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let connected = connected.clone();
                gmp::go(move || {
                    // A connect can fail under a burst of 1000 (the CI box
                    // saw one client never connect, which left the other
                    // 999 waiting forever). Retry a few times, and count
                    // the client as arrived either way, so that a failure
                    // fails the test instead of hanging it.
                    let mut conn = Err(std::io::Error::other("no attempt"));
                    for _ in 0..20 {
                        conn = TcpStream::connect(addr);
                        if conn.is_ok() {
                            break;
                        }
                        gmp::sleep(Duration::from_millis(20));
                    }
                    connected.fetch_add(1, Ordering::SeqCst);
                    let mut c = match conn {
                        Ok(c) => c,
                        Err(e) => panic!("client {id}: connect failed 20 times: {e}"),
                    };
                    while connected.load(Ordering::SeqCst) < CLIENTS {
                        gmp::sleep(Duration::from_millis(1));
                    }
                    let data = pattern(id, LEN);
                    c.write_all(&data).unwrap();
                    let mut back = vec![0u8; LEN];
                    c.read_exact(&mut back).unwrap();
                    assert!(back == data, "client {id}: echoed bytes differ");
                    LEN
                })
            })
            .collect();
        let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(errors.load(Ordering::Relaxed), 0);
        total
    });
    assert_eq!(checked, CLIENTS * LEN);
}

#[test]
fn large_transfer_parks_writers_and_readers() {
    // 8 MiB through one connection: writes fill the socket buffers and park
    // (Mode::Write), while a reader goroutine on the same `&TcpStream`
    // drains the echo concurrently.
    const LEN: usize = 8 << 20;
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        spawn_echo_server(l);
        let c = Arc::new(TcpStream::connect(addr).unwrap());
        let c2 = c.clone();
        let reader = gmp::go(move || {
            let mut got = Vec::with_capacity(LEN);
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < LEN {
                let n = (&*c2).read(&mut buf).unwrap();
                assert!(n > 0, "early EOF");
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let data = pattern(7, LEN);
        (&*c).write_all(&data).unwrap();
        let got = reader.join().unwrap();
        assert!(got == data);
    });
}

#[test]
fn connection_refused_is_an_error_and_the_server_keeps_serving() {
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        spawn_echo_server(l);
        // A port nobody listens on.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        for _ in 0..3 {
            let e = TcpStream::connect(dead).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        }
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"still here").unwrap();
        let mut b = [0u8; 10];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"still here");
    });
    // The same from a plain thread (no goroutine: poll(2) underneath).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = TcpStream::connect(dead).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn reset_by_peer_is_an_error_and_the_listener_keeps_accepting() {
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicBool::new(false));
        let acc2 = accepted.clone();
        let server = gmp::go(move || {
            // First client: misbehaves (resets).
            let (mut c, _) = l.accept().unwrap();
            acc2.store(true, Ordering::SeqCst);
            let mut buf = [0u8; 16];
            let first = loop {
                match c.read(&mut buf) {
                    Ok(0) => break Ok(0),
                    Ok(_) => continue,
                    Err(e) => break Err(e.kind()),
                }
            };
            // Second client: served normally.
            let (mut c, _) = l.accept().unwrap();
            let n = c.read(&mut buf).unwrap();
            c.write_all(&buf[..n]).unwrap();
            first
        });
        let bad = TcpStream::connect(addr).unwrap();
        while !accepted.load(Ordering::SeqCst) {
            gmp::sleep(Duration::from_millis(1));
        }
        // SO_LINGER 0: close sends RST.
        nix::sys::socket::setsockopt(
            &bad,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(bad);
        let mut good = TcpStream::connect(addr).unwrap();
        good.write_all(b"ok").unwrap();
        let mut b = [0u8; 2];
        good.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ok");
        assert_eq!(server.join().unwrap(), Err(ErrorKind::ConnectionReset));
    });
}

#[test]
fn read_and_write_timeouts() {
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let server = gmp::go(move || {
            let (c, _) = l.accept().unwrap();
            // Say nothing until told, then one byte.
            gmp::blocking(|| rx.recv().unwrap());
            (&c).write_all(b"x").unwrap();
            // Then never read: the client's writes fill the buffers.
            gmp::blocking(|| rx.recv().ok());
            drop(c);
        });
        let c = TcpStream::connect(addr).unwrap();
        assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(50)));
        let t = Instant::now();
        let e = (&c).read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{:?}",
            t.elapsed()
        );
        // The stream is still usable after a timeout.
        c.set_read_timeout(None).unwrap();
        tx.send(()).unwrap();
        let mut b = [0u8; 1];
        (&c).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        // Write timeout: nobody reads, so the buffers fill and the write
        // times out (having possibly written part of the data).
        c.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        let t = Instant::now();
        let e = loop {
            if let Err(e) = (&c).write(&chunk) {
                break e;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "write never blocked");
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        tx.send(()).unwrap();
        server.join().unwrap();
    });
}

#[test]
fn shutdown_write_gives_the_peer_eof() {
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = gmp::go(move || {
            let (mut c, peer) = l.accept().unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            c.write_all(&all).unwrap();
            (all, peer)
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        assert!(c.nodelay().unwrap());
        assert_eq!(c.peer_addr().unwrap(), addr);
        c.write_all(b"abc").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        let (all, peer) = server.join().unwrap();
        assert_eq!(all, b"abc");
        assert_eq!(back, b"abc");
        assert_eq!(peer, c.local_addr().unwrap());
    });
}

#[test]
fn many_goroutines_reading_one_stream_share_it_safely() {
    // Readers in one direction are serialized (Go's fdMutex): no panic, no
    // byte lost or duplicated.
    const READERS: usize = 8;
    const LEN: usize = 256 * 1024;
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let writer = gmp::go(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(&vec![1u8; LEN]).unwrap();
        });
        let c = Arc::new(TcpStream::connect(addr).unwrap());
        let total = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..READERS)
            .map(|_| {
                let (c, total) = (c.clone(), total.clone());
                gmp::go(move || {
                    let mut buf = [0u8; 1000];
                    loop {
                        match (&*c).read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                assert!(buf[..n].iter().all(|&b| b == 1));
                                total.fetch_add(n, Ordering::SeqCst);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(total.load(Ordering::SeqCst), LEN);
    });
}

#[test]
fn std_conversions_and_plain_threads() {
    let rt = rt(2);
    // A std listener converted inside the runtime; std and plain-thread
    // gmp clients.
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    let server = rt.spawn(move || {
        let l = TcpListener::from(std_l);
        for i in 0..2 {
            let (c, _) = l.accept().unwrap();
            let mut s = String::new();
            (&c).read_to_string(&mut s).unwrap();
            assert_eq!(s, format!("client {i}"));
        }
        // Back to std: blocking again.
        let std_l = l.into_std().unwrap();
        gmp::blocking(|| {
            let (mut c, _) = std_l.accept().unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        })
    });
    let mut a = std::net::TcpStream::connect(addr).unwrap();
    a.write_all(b"client 0").unwrap();
    drop(a);
    // gmp::net on a plain thread (outside any goroutine).
    let mut b = TcpStream::connect(addr).unwrap();
    b.write_all(b"client 1").unwrap();
    drop(b);
    let c = TcpStream::from(std::net::TcpStream::connect(addr).unwrap());
    let mut c = c.into_std().unwrap();
    c.write_all(b"std again").unwrap();
    drop(c);
    assert_eq!(server.join().unwrap(), "std again");
}

#[test]
fn udp_round_trip_and_timeout() {
    let rt = rt(2);
    rt.block_on(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let echo = gmp::go(move || {
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                let (n, from) = b.recv_from(&mut buf).unwrap();
                b.send_to(&buf[..n], from).unwrap();
            }
        });
        for i in 0..100u32 {
            a.send_to(&i.to_le_bytes(), ba).unwrap();
            let mut buf = [0u8; 4];
            let (n, from) = a.recv_from(&mut buf).unwrap();
            assert_eq!((n, from, u32::from_le_bytes(buf)), (4, ba, i));
        }
        echo.join().unwrap();
        a.connect(ba).unwrap();
        assert_eq!(a.peer_addr().unwrap(), ba);
        assert_ne!(aa, ba);
        a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let t = Instant::now();
        assert_eq!(
            a.recv(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn unix_sockets() {
    let dir = std::env::temp_dir().join(format!("gmp-net-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let rt = rt(2);
    let p2 = path.clone();
    rt.block_on(move || {
        let l = UnixListener::bind(&p2).unwrap();
        gmp::go(move || {
            for c in l.incoming().take(20) {
                let mut c = c.unwrap();
                gmp::go(move || {
                    let mut buf = [0u8; 256];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => c.write_all(&buf[..n]).unwrap(),
                        }
                    }
                });
            }
        });
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let p = p2.clone();
                gmp::go(move || {
                    let mut c = UnixStream::connect(&p).unwrap();
                    let data = pattern(i, 3000);
                    c.write_all(&data).unwrap();
                    let mut back = vec![0u8; 3000];
                    c.read_exact(&mut back).unwrap();
                    assert!(back == data);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Pairs and datagrams.
        let (a, b) = UnixStream::pair().unwrap();
        let r = gmp::go(move || {
            let mut s = String::new();
            (&b).read_to_string(&mut s).unwrap();
            s
        });
        (&a).write_all(b"pair").unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        assert_eq!(r.join().unwrap(), "pair");
        let (x, y) = UnixDatagram::pair().unwrap();
        let r = gmp::go(move || {
            let mut buf = [0u8; 8];
            let n = y.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        x.send(b"dgram").unwrap();
        assert_eq!(r.join().unwrap(), b"dgram");
        // A missing socket is an error, not a panic.
        let e = UnixStream::connect(p2.with_file_name("nobody.sock")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_connections_park_goroutines_not_threads() {
    // 200 goroutines blocked in read on idle connections, with procs(1):
    // another goroutine keeps running, and the thread count stays small.
    let rt = rt(1);
    let sched = rt.sched().clone();
    rt.block_on(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = gmp::go(move || {
            let mut conns = Vec::new();
            for _ in 0..200 {
                conns.push(l.accept().unwrap().0);
            }
            conns
        });
        let clients: Vec<_> = (0..200)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let conns = server.join().unwrap();
        let readers: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                gmp::go(move || {
                    let mut b = [0u8; 1];
                    c.read_exact(&mut b).unwrap();
                    b[0]
                })
            })
            .collect();
        // Main keeps getting the P while 200 readers are parked (a count,
        // not a time window: under GMP_DEBUG=migrate in a debug build every
        // yield is a thread hand-off, and a 50 ms window saw < 10 of them).
        let t = Instant::now();
        for _ in 0..100 {
            gmp::yield_now();
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "main starved by idle connections"
            );
        }
        assert!(sched.mcount() < 20, "threads: {}", sched.mcount());
        for (i, c) in clients.iter().enumerate() {
            (&*c).write_all(&[i as u8]).unwrap();
        }
        let got: Vec<u8> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, (0..200).map(|i| i as u8).collect::<Vec<_>>());
    });
}

#[test]
fn socket_ops_inside_blocking_wait_like_a_plain_thread() {
    // Inside `gmp::blocking` the goroutine has no P and must not park; the
    // netpoller makes it wait in poll(2) instead.
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        gmp::go(move || {
            let (mut c, _) = l.accept().unwrap();
            gmp::sleep(Duration::from_millis(30));
            c.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            let _ = c.read(&mut b);
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let mut b = [0u8; 1];
        gmp::blocking(|| c.read_exact(&mut b)).unwrap();
        assert_eq!(&b, b"x");
    });
}

#[test]
fn many_short_timeouts_never_hang() {
    // Deadlines racing with the waiter's park (the netpoller re-checks the
    // deadline after announcing the wait, as Go's netpollblock does).
    let rt = rt(2);
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = gmp::go(move || (0..50).map(|_| l.accept().unwrap().0).collect::<Vec<_>>());
        let clients: Vec<_> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let _conns = server.join().unwrap();
        let hs: Vec<_> = clients
            .into_iter()
            .map(|c| {
                gmp::go(move || {
                    let mut b = [0u8; 1];
                    for i in 0..20u64 {
                        let d = Duration::from_micros(200 + 100 * (i % 7));
                        c.set_read_timeout(Some(d)).unwrap();
                        let e = (&c).read(&mut b).unwrap_err();
                        assert_eq!(e.kind(), ErrorKind::TimedOut);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn a_socket_outlives_its_runtime() {
    // Registered with a runtime that is then dropped: it keeps working on a
    // plain thread (poll(2) underneath).
    let (a, b) = {
        let rt = rt(1);
        rt.block_on(|| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            (c, s)
        })
    };
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 3];
        (&b).read_exact(&mut buf).unwrap();
        buf
    });
    std::thread::sleep(Duration::from_millis(20));
    (&a).write_all(b"hey").unwrap();
    assert_eq!(&t.join().unwrap(), b"hey");
}
