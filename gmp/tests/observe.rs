//! Issue #6, "see inside the runtime": deadlock detection, goroutine dumps,
//! SIGQUIT, schedtrace, the Chrome trace and metrics.
//!
//! Scenarios that end the process (or need an environment variable read at
//! runtime start) run in a child: the test re-executes this binary with
//! `OBSERVE_CHILD=<scenario>` and only that test selected.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "OBSERVE_CHILD";

fn child_scenario() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// Re-runs test `name` of this binary as a child with `OBSERVE_CHILD=name`.
fn run_child(name: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe);
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env_remove("GMP_DEBUG")
        .env_remove("GMP_TRACE")
        .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn rt(procs: usize) -> gmp::Runtime {
    gmp::Runtime::builder().procs(procs).build().unwrap()
}

// ---------------------------------------------------------------------------
// 1. Deadlock detection.
// ---------------------------------------------------------------------------

#[test]
fn deadlock_is_fatal_with_go_message_and_dump() {
    if child_scenario().is_some() {
        let r = rt(2);
        r.block_on(|| {
            let (tx, rx) = gmp::chan::<u32>(0);
            let (tx2, rx2) = gmp::chan::<u32>(0);
            let _h = gmp::go(move || {
                let _ = rx2.recv();
            });
            let _ = rx.recv();
            drop((tx, tx2));
        });
        unreachable!("the deadlock must end the process");
    }
    let o = run_child("deadlock_is_fatal_with_go_message_and_dump", &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("fatal error: all goroutines are asleep - deadlock!"),
        "{err}"
    );
    assert!(err.contains("goroutine 1 [chan receive"), "{err}");
    // The other parked goroutine is in the dump too, with its creator.
    assert!(
        err.lines()
            .any(|l| l.starts_with("goroutine ") && !l.starts_with("goroutine 1 ")),
        "{err}"
    );
    assert!(err.contains("created by "), "{err}");
}

#[test]
fn deadlock_non_fatal_returns_error_and_block_on_panics() {
    // In a child: detection turns itself off for the whole process once a
    // plain thread has used gmp objects, which other tests here do.
    if child_scenario().is_none() {
        let o = run_child("deadlock_non_fatal_returns_error_and_block_on_panics", &[]);
        assert!(o.status.success(), "child failed:\n{}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("non-fatal deadlock ok"));
        return;
    }
    let r = gmp::Runtime::builder()
        .procs(2)
        .deadlock_fatal(false)
        .build()
        .unwrap();
    let t = Instant::now();
    let e = r
        .try_block_on(|| {
            let (tx, rx) = gmp::chan::<u32>(0);
            let _ = rx.recv();
            drop(tx);
        })
        .expect_err("a deadlock");
    assert!(t.elapsed() < Duration::from_secs(10));
    let msg = e.to_string();
    assert!(
        msg.contains("all goroutines are asleep - deadlock!"),
        "{msg}"
    );
    assert!(e.dump.contains("[chan receive"), "{}", e.dump);

    // The runtime is still usable, and block_on panics with the message.
    assert_eq!(r.try_block_on(|| 7).unwrap(), 7);
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.block_on(|| {
            let m = std::sync::Arc::new(gmp::sync::Mutex::new(()));
            let g = m.lock();
            let _g2 = m.lock(); // locks itself out
            drop(g);
        })
    }))
    .expect_err("block_on panics on a deadlock");
    let s = p.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(s.contains("all goroutines are asleep - deadlock!"), "{s}");
    println!("non-fatal deadlock ok");
}

#[test]
fn no_deadlock_while_a_timer_a_thread_or_a_blocking_call_can_wake() {
    let r = gmp::Runtime::builder()
        .procs(2)
        .deadlock_fatal(false)
        .build()
        .unwrap();
    // A timer.
    r.try_block_on(|| gmp::sleep(Duration::from_millis(300)))
        .expect("sleep is no deadlock");
    // A plain thread that sends late (longer than the grace period): the
    // channel made outside any goroutine turns detection off.
    let (tx, rx) = gmp::chan::<u32>(0);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        tx.send(5).unwrap();
    });
    assert_eq!(r.try_block_on(move || rx.recv().unwrap()).unwrap(), 5);
    t.join().unwrap();
    // A blocking call.
    r.try_block_on(|| {
        gmp::blocking(|| std::thread::sleep(Duration::from_millis(300)));
    })
    .expect("a blocking call is no deadlock");
}

// ---------------------------------------------------------------------------
// 2. Goroutine dump and SIGQUIT.
// ---------------------------------------------------------------------------

#[test]
fn dump_shows_wait_reason_creation_site_and_states() {
    rt(2).block_on(|| {
        let (tx, rx) = gmp::chan::<u32>(0);
        let line = line!() + 1;
        let h = gmp::go(move || rx.recv().unwrap());
        let sleeper = gmp::go(|| gmp::sleep(Duration::from_millis(400)));
        let locked = gmp::go(|| {
            gmp::lock_os_thread();
            gmp::sleep(Duration::from_millis(400));
            gmp::unlock_os_thread();
        });
        gmp::sleep(Duration::from_millis(100));
        let d = gmp::dump();
        let me = gmp::goid().unwrap();
        let want_created = format!("created by {}:{line}:", file!());
        let blocks: Vec<&str> = d.split("\n\n").filter(|b| !b.is_empty()).collect();
        let recv = blocks
            .iter()
            .find(|b| b.contains("[chan receive]") && b.contains(&want_created))
            .unwrap_or_else(|| panic!("no chan receive goroutine created at line {line}:\n{d}"));
        assert!(
            recv.starts_with(&format!("goroutine {} [", h.id())),
            "{recv}"
        );
        assert!(recv.contains(&format!(" in goroutine {me}")), "{recv}");
        assert!(d.contains(&format!("goroutine {me} [running]:")), "{d}");
        assert!(
            d.contains(&format!("goroutine {} [sleep]:", sleeper.id())),
            "{d}"
        );
        assert!(
            d.contains(&format!(
                "goroutine {} [sleep, locked to thread]:",
                locked.id()
            )),
            "{d}"
        );
        tx.send(1).unwrap();
        h.join().unwrap();
        sleeper.join().unwrap();
        locked.join().unwrap();
        // Dumps under churn neither hang nor crash.
        let hs: Vec<_> = (0..200)
            .map(|i| {
                gmp::go(move || {
                    for _ in 0..20 {
                        gmp::yield_now();
                    }
                    i
                })
            })
            .collect();
        for _ in 0..50 {
            let d = gmp::dump();
            assert!(d.contains("[running]"));
        }
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(gmp::dump(), "", "no runtime here");
}

#[test]
fn sigquit_prints_dump_and_exits_2() {
    if child_scenario().is_some() {
        rt(2).block_on(|| {
            let _h = gmp::go(|| gmp::sleep(Duration::from_secs(30)));
            println!("OBSERVE_READY");
            gmp::sleep(Duration::from_secs(30));
        });
        unreachable!();
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "sigquit_prints_dump_and_exits_2",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("GMP_DEBUG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("OBSERVE_READY") => break,
                Some(_) => continue,
                None => panic!("child ended early"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
    }
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGQUIT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("SIGQUIT: quit"), "{err}");
    assert!(err.contains("goroutine 1 [sleep]:"), "{err}");
    assert!(err.contains("created by "), "{err}");
}

// ---------------------------------------------------------------------------
// 3. schedtrace.
// ---------------------------------------------------------------------------

fn busy_child() {
    rt(2).block_on(|| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(400) {
            let hs: Vec<_> = (0..64).map(|i| gmp::go(move || i * 2)).collect();
            for h in hs {
                h.join().unwrap();
            }
            gmp::sleep(Duration::from_millis(5));
        }
    });
}

#[test]
fn schedtrace_prints_go_lines() {
    if child_scenario().is_some() {
        busy_child();
        return;
    }
    let o = run_child(
        "schedtrace_prints_go_lines",
        &[("GMP_DEBUG", "schedtrace=50")],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("SCHED ")).collect();
    assert!(lines.len() >= 3, "too few SCHED lines:\n{err}");
    for l in &lines {
        // SCHED 1004ms: gomaxprocs=2 idleprocs=0 threads=5 spinningthreads=0
        // idlethreads=1 runqueue=0 [3 0]
        let rest = l.strip_prefix("SCHED ").unwrap();
        let (ms, rest) = rest.split_once("ms: ").expect(l);
        ms.parse::<u64>().expect(l);
        let (kvs, queues) = rest.split_once(" [").expect(l);
        let keys: Vec<(&str, u64)> = kvs
            .split(' ')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect(l);
                (k, v.parse::<u64>().expect(l))
            })
            .collect();
        let names: Vec<&str> = keys.iter().map(|k| k.0).collect();
        assert_eq!(
            names,
            [
                "gomaxprocs",
                "idleprocs",
                "threads",
                "spinningthreads",
                "idlethreads",
                "runqueue"
            ],
            "{l}"
        );
        assert_eq!(keys[0].1, 2, "{l}");
        assert!(keys[1].1 <= 2, "{l}");
        let q: Vec<u64> = queues
            .strip_suffix(']')
            .expect(l)
            .split(' ')
            .map(|n| n.parse().expect(l))
            .collect();
        assert_eq!(q.len(), 2, "{l}");
    }

    let o = run_child(
        "schedtrace_prints_go_lines",
        &[("GMP_DEBUG", "schedtrace=50,scheddetail=1")],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("SCHED "), "{err}");
    assert!(err.contains("  P0: status="), "{err}");
    assert!(err.contains("  P1: status="), "{err}");
    assert!(err.lines().any(|l| l.starts_with("  M")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("  G1: status=")), "{err}");
}

// ---------------------------------------------------------------------------
// 5. GMP_TRACE.
// ---------------------------------------------------------------------------

#[test]
fn gmp_trace_writes_chrome_json_with_several_p_tracks() {
    if child_scenario().is_some() {
        rt(4).block_on(|| {
            let hs: Vec<_> = (0..400)
                .map(|i| {
                    gmp::go(move || {
                        let t = Instant::now();
                        let mut x = i as u64;
                        while t.elapsed() < Duration::from_micros(300) {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        let (tx, rx) = gmp::chan(1);
                        tx.send(x).unwrap();
                        gmp::yield_now();
                        rx.recv().unwrap()
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            gmp::blocking(|| std::thread::sleep(Duration::from_millis(5)));
        });
        return;
    }
    let dir = std::env::temp_dir().join(format!("gmp-observe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.json");
    let o = run_child(
        "gmp_trace_writes_chrome_json_with_several_p_tracks",
        &[("GMP_TRACE", path.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let v = json::parse(&text).unwrap_or_else(|e| panic!("invalid JSON: {e}"));
    let evs = v.get("traceEvents").and_then(|e| e.as_array()).unwrap();
    let mut tracks = std::collections::BTreeSet::new();
    let mut slices = 0;
    let mut syscalls = 0;
    for e in evs {
        let ph = e.get("ph").and_then(|p| p.as_str()).unwrap();
        if ph == "X" {
            slices += 1;
            tracks.insert(e.get("tid").and_then(|t| t.as_f64()).unwrap() as u64);
            assert!(e.get("ts").and_then(|t| t.as_f64()).is_some());
            assert!(e.get("dur").and_then(|t| t.as_f64()).unwrap() >= 0.0);
            let name = e.get("name").and_then(|n| n.as_str()).unwrap();
            assert!(name.starts_with('G'), "{name}");
        }
        if ph == "i" && e.get("name").and_then(|n| n.as_str()) == Some("syscall enter") {
            syscalls += 1;
        }
    }
    assert!(slices >= 400, "only {slices} goroutine slices");
    assert!(
        tracks.len() > 1,
        "goroutines ran on one P track only: {tracks:?}"
    );
    assert!(syscalls >= 1, "no syscall event");
}

/// A tiny JSON parser (enough to validate the trace file).
mod json {
    #[derive(Debug)]
    pub enum V {
        Null,
        Bool(#[allow(dead_code)] bool),
        Num(f64),
        Str(String),
        Arr(Vec<V>),
        Obj(Vec<(String, V)>),
    }
    impl V {
        pub fn get(&self, k: &str) -> Option<&V> {
            match self {
                V::Obj(kv) => kv.iter().find(|(a, _)| a == k).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_array(&self) -> Option<&Vec<V>> {
            match self {
                V::Arr(a) => Some(a),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                V::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                V::Num(n) => Some(*n),
                _ => None,
            }
        }
    }
    pub fn parse(s: &str) -> Result<V, String> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = value(b, &mut i)?;
        ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing data at {i}"));
        }
        Ok(v)
    }
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    fn expect(b: &[u8], i: &mut usize, c: u8) -> Result<(), String> {
        ws(b, i);
        if b.get(*i) == Some(&c) {
            *i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, *i))
        }
    }
    fn value(b: &[u8], i: &mut usize) -> Result<V, String> {
        ws(b, i);
        match b.get(*i).copied() {
            Some(b'{') => {
                *i += 1;
                let mut kv = Vec::new();
                ws(b, i);
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(V::Obj(kv));
                }
                loop {
                    ws(b, i);
                    let V::Str(k) = value(b, i)? else {
                        return Err(format!("object key at {i}"));
                    };
                    expect(b, i, b':')?;
                    kv.push((k, value(b, i)?));
                    ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return Ok(V::Obj(kv));
                        }
                        _ => return Err(format!("expected , or }} at {i}")),
                    }
                }
            }
            Some(b'[') => {
                *i += 1;
                let mut a = Vec::new();
                ws(b, i);
                if b.get(*i) == Some(&b']') {
                    *i += 1;
                    return Ok(V::Arr(a));
                }
                loop {
                    a.push(value(b, i)?);
                    ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b']') => {
                            *i += 1;
                            return Ok(V::Arr(a));
                        }
                        _ => return Err(format!("expected , or ] at {i}")),
                    }
                }
            }
            Some(b'"') => {
                *i += 1;
                let mut s = String::new();
                loop {
                    match b.get(*i).copied() {
                        None => return Err("unterminated string".into()),
                        Some(b'"') => {
                            *i += 1;
                            return Ok(V::Str(s));
                        }
                        Some(b'\\') => {
                            let c = b.get(*i + 1).copied().ok_or("bad escape")?;
                            match c {
                                b'"' | b'\\' | b'/' => s.push(c as char),
                                b'n' => s.push('\n'),
                                b't' => s.push('\t'),
                                b'r' => s.push('\r'),
                                b'b' | b'f' => {}
                                b'u' => {
                                    let h = std::str::from_utf8(
                                        b.get(*i + 2..*i + 6).ok_or("bad \\u")?,
                                    )
                                    .map_err(|e| e.to_string())?;
                                    let c =
                                        u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                                    s.push(char::from_u32(c).unwrap_or('?'));
                                    *i += 4;
                                }
                                _ => return Err(format!("bad escape at {i}")),
                            }
                            *i += 2;
                        }
                        Some(c) if c < 0x20 => return Err(format!("control char at {i}")),
                        Some(_) => {
                            let start = *i;
                            while *i < b.len() && b[*i] != b'"' && b[*i] != b'\\' && b[*i] >= 0x20 {
                                *i += 1;
                            }
                            s.push_str(
                                std::str::from_utf8(&b[start..*i]).map_err(|e| e.to_string())?,
                            );
                        }
                    }
                }
            }
            Some(b't') if b[*i..].starts_with(b"true") => {
                *i += 4;
                Ok(V::Bool(true))
            }
            Some(b'f') if b[*i..].starts_with(b"false") => {
                *i += 5;
                Ok(V::Bool(false))
            }
            Some(b'n') if b[*i..].starts_with(b"null") => {
                *i += 4;
                Ok(V::Null)
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = *i;
                *i += 1;
                while *i < b.len()
                    && matches!(b[*i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    *i += 1;
                }
                let t = std::str::from_utf8(&b[start..*i]).unwrap();
                t.parse::<f64>()
                    .map(V::Num)
                    .map_err(|e| format!("{t}: {e}"))
            }
            _ => Err(format!("unexpected input at {i}")),
        }
    }
}

// ---------------------------------------------------------------------------
// 6. Metrics.
// ---------------------------------------------------------------------------

#[test]
fn metrics_count_what_the_test_caused() {
    const N: u64 = 300;
    const PANICS: u64 = 7;
    rt(2).block_on(|| {
        let before = gmp::metrics().unwrap();
        let hs: Vec<_> = (0..N).map(|i| gmp::go(move || i)).collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, N * (N - 1) / 2);
        let mid = gmp::metrics().unwrap();
        assert_eq!(mid.spawned - before.spawned, N);
        assert_eq!(mid.panics, before.panics);

        let hs: Vec<_> = (0..PANICS)
            .map(|i| gmp::go(move || -> u64 { panic!("observe: deliberate panic {i}") }))
            .collect();
        for h in hs {
            assert!(h.join().is_err());
        }
        let after = gmp::metrics().unwrap();
        assert_eq!(after.panics - mid.panics, PANICS);
        assert_eq!(after.spawned - mid.spawned, PANICS);
        assert_eq!(after.gomaxprocs, 2);
        // Only the main goroutine is left (joined goroutines may still be
        // on their way out).
        let t = Instant::now();
        while gmp::metrics().unwrap().goroutines != 1 {
            assert!(t.elapsed() < Duration::from_secs(5), "goroutines linger");
            gmp::sleep(Duration::from_millis(1));
        }
        assert!(after.goroutines_running >= 1);
        let lat: u64 = after.sched_latency_ns.iter().sum();
        assert!(lat > 0, "empty latency histogram");
    });
}
