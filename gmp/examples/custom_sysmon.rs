//! A custom sysmon plugged in through the builder: a 1 ms time slice
//! (instead of Go's 10 ms) that logs every preemption through `tracing`.
//! Uses only the public plug-in API (`gmp::plugin`), no runtime internals.
//!
//! `cargo run --example custom_sysmon`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp::plugin::{PStatus, Sysmon, SysmonHandle};

/// Preempts any goroutine that runs one time slice for more than `slice`,
/// and retakes Ps from blocking calls after one tick.
struct FastSlice {
    slice: Duration,
    preempts: Arc<AtomicU64>,
}

impl Sysmon for FastSlice {
    fn name(&self) -> &'static str {
        "fast-slice"
    }
    fn preempts(&self) -> bool {
        true
    }
    fn run(self: Box<Self>, h: SysmonHandle) {
        let slice = self.slice.as_nanos() as u64;
        let mut seen: Vec<(u32, u64, u32)> = Vec::new();
        while !h.is_shutdown() {
            std::thread::sleep(Duration::from_micros(100));
            let now = h.now();
            seen.resize(h.procs(), (0, now, 0));
            for (i, s) in seen.iter_mut().enumerate() {
                let Some(p) = h.p(i) else { continue };
                match p.status {
                    PStatus::Running => {
                        if p.schedtick != s.0 {
                            *s = (p.schedtick, now, s.2);
                        } else if now - s.1 > slice && h.preempt(i, p.schedtick) {
                            s.1 = now;
                            self.preempts.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(p = i, "fast-slice: preempted a goroutine after 1 ms");
                        }
                    }
                    PStatus::Syscall => {
                        if p.syscalltick == s.2 {
                            h.retake(i, p.syscalltick);
                        }
                        s.2 = p.syscalltick;
                    }
                    _ => {}
                }
            }
            h.poll_network();
            h.kick_overdue_timers();
        }
    }
}

fn main() {
    let preempts = Arc::new(AtomicU64::new(0));
    let rt = gmp::Runtime::builder()
        .procs(1)
        .sysmon(FastSlice {
            slice: Duration::from_millis(1),
            preempts: preempts.clone(),
        })
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let latency = rt.block_on(move || {
        let hog = gmp::go(move || {
            while !s2.load(Ordering::Relaxed) {
                std::hint::black_box(0);
            }
        });
        gmp::yield_now();
        let t = Instant::now();
        gmp::sleep(Duration::from_millis(1));
        let l = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        hog.join().unwrap();
        l
    });
    let n = preempts.load(Ordering::Relaxed);
    println!(
        "main's 1 ms sleep resumed after {latency:?} with a hog on the only P; {n} preemptions"
    );
    assert!(n > 0, "the custom sysmon never preempted");
    assert!(latency < Duration::from_secs(1));
}

#[test]
fn custom_sysmon_preempts() {
    main();
}
