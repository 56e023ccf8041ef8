//! Too many open files: `accept` and `connect` return `EMFILE` as an
//! `io::Error`, and the server keeps serving once descriptors free up.
//!
//! The descriptor limit is process-wide, so the real test runs in a child
//! process (this test binary re-executed with `GMP_TEST_EMFILE_CHILD=1`)
//! that lowers `RLIMIT_NOFILE`; the harness itself is never starved.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gmp::net::{TcpListener, TcpStream};

const CHILD_ENV: &str = "GMP_TEST_EMFILE_CHILD";

#[test]
fn emfile_is_an_error_and_the_server_keeps_serving() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["emfile_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("EMFILE CHILD OK"),
        "child did not run:\n{text}"
    );
}

/// The child's body; a no-op unless re-executed by the test above.
#[test]
fn emfile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256.min(hard), hard).unwrap();

    let rt = gmp::Runtime::builder().procs(2).build().unwrap();
    rt.block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accept_emfile = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (ae, sv) = (accept_emfile.clone(), served.clone());
        gmp::go(move || loop {
            match l.accept() {
                Ok((mut c, _)) => {
                    let sv = sv.clone();
                    gmp::go(move || {
                        let mut b = [0u8; 4];
                        if c.read_exact(&mut b).is_ok() && c.write_all(&b).is_ok() {
                            sv.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(nix::libc::EMFILE), "{e}");
                    ae.fetch_add(1, Ordering::SeqCst);
                    gmp::sleep(Duration::from_millis(2));
                }
            }
        });

        // Use up every descriptor.
        let mut hog = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => hog.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(nix::libc::EMFILE));
                    break;
                }
            }
        }
        // connect cannot even create its socket.
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::EMFILE), "{e}");

        // One descriptor free: the client gets it, the server's accept
        // fails with EMFILE (the connection waits in the backlog).
        hog.pop();
        let mut c = TcpStream::connect(addr).unwrap();
        while accept_emfile.load(Ordering::SeqCst) == 0 {
            gmp::sleep(Duration::from_millis(1));
        }

        // Descriptors back: the same connection is accepted and served.
        drop(hog);
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");

        // And new clients too.
        for _ in 0..20 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"pong").unwrap();
            c.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"pong");
        }
        // (A handler counts after its write, which may be after our read.)
        let t = std::time::Instant::now();
        while served.load(Ordering::SeqCst) < 21 && t.elapsed() < Duration::from_secs(2) {
            gmp::sleep(Duration::from_millis(1));
        }
        assert_eq!(served.load(Ordering::SeqCst), 21);
        // The connection refused path, for good measure.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(
            TcpStream::connect(dead).unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );
    });
    println!("EMFILE CHILD OK");
}
