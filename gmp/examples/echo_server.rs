//! A TCP echo server: one goroutine per connection, all parked on the
//! netpoller while idle.
//!
//! ```sh
//! cargo run --example echo_server                      # serve on 127.0.0.1:7878
//! cargo run --example echo_server -- 0.0.0.0:9000      # another address
//! cargo run --example echo_server -- --selftest [N]    # N clients (default 1000), then exit
//! ```
//!
//! `--selftest` starts the server on an ephemeral port, runs N concurrent
//! clients that each send 16 KiB and check every byte of the echo, prints
//! a summary and exits 0 (non-zero on any mismatch or error), so CI can run
//! it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp::net::{TcpListener, TcpStream};

/// Echoes everything until the client closes (or an error, which only ends
/// this connection: the server goes on).
fn handle(mut c: TcpStream) {
    let mut buf = [0u8; 8192];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = c.write_all(&buf[..n]) {
                    eprintln!("echo_server: write: {e}");
                    return;
                }
            }
            Err(e) => {
                eprintln!("echo_server: read: {e}");
                return;
            }
        }
    }
}

/// Accepts forever. Accept errors (e.g. too many open files) are reported
/// and retried after a short back-off, as Go's `http.Server` does.
fn serve(l: TcpListener) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match l.accept() {
            Ok((c, _)) => {
                backoff = Duration::from_millis(5);
                gmp::go(move || handle(c));
            }
            Err(e) => {
                eprintln!("echo_server: accept: {e}; retrying in {backoff:?}");
                gmp::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn selftest(clients: usize) -> Result<(), String> {
    const LEN: usize = 16 * 1024;
    raise_nofile(2 * clients as u64 + 64);
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    gmp::go(move || serve(l));
    let start = Instant::now();
    let ok = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..clients)
        .map(|id| {
            let ok = ok.clone();
            gmp::go(move || -> Result<(), String> {
                let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                let data: Vec<u8> = (0..LEN).map(|i| (i * 31 + id * 7) as u8).collect();
                c.write_all(&data).map_err(|e| format!("write: {e}"))?;
                let mut back = vec![0u8; LEN];
                c.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
                if back != data {
                    return Err(format!("client {id}: echoed bytes differ"));
                }
                ok.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    let mut first_err = None;
    for h in hs {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert_with(|| "a client panicked".to_string());
            }
        }
    }
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "echo_server selftest: {ok}/{clients} clients, {} bytes echoed and checked in {:?}",
        ok * LEN,
        start.elapsed()
    );
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// 1,000 clients and their server connections need 2,000+ descriptors.
fn raise_nofile(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--selftest") {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
        if let Err(e) = gmp::run(move || selftest(n)) {
            eprintln!("echo_server selftest failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    gmp::run(move || {
        let l = match TcpListener::bind(&addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("echo_server: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        println!("echo_server: listening on {}", l.local_addr().unwrap());
        serve(l);
    });
}
