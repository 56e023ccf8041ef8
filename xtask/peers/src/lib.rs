//! Shared plumbing for the benchmark workload binaries (`peer-tokio`,
//! `peer-may`, and — through `#[path]` inclusion — `bench-gmp`).
//!
//! Every workload binary is invoked as `<bin> <workload> <size> <procs>` and
//! prints exactly one machine-readable line on stdout:
//!
//! ```text
//! RESULT name=<workload> runtime=<rt> ns=<timed-section ns> units=<n> ok=1
//! RESULT name=<workload> runtime=<rt> ns=<ns> units=<n> ok=0 err=<reason>
//! ```
//!
//! `cargo xtask bench` parses that line; a run whose result is wrong exits
//! non-zero. The constants below are the shape of each workload and must stay
//! in sync with `xtask/go/*.go`.
#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

/// Goroutines in the `ring` workload.
pub const RING_NODES: u64 = 1000;
/// Producers in the `fanin` workload.
pub const FANIN_PRODUCERS: u64 = 1000;
/// Capacity of the `fanin` channel.
pub const FANIN_CAP: usize = 1024;
/// Goroutines in the `yield` workload.
pub const YIELD_TASKS: u64 = 1000;
/// Goroutines in the `mutex` workload.
pub const MUTEX_TASKS: u64 = 1000;
/// Producers (= channels) in the `select` workload.
pub const SELECT_PRODUCERS: u64 = 4;
/// Children per skynet node.
pub const SKYNET_DIV: u64 = 10;
/// Connections in the `echo` workload.
pub const ECHO_CONNS: u64 = 100;
/// Bytes per echo message.
pub const ECHO_MSG: usize = 64;
/// How long each sleeper sleeps.
pub const SLEEPER_SLEEP: Duration = Duration::from_millis(10);
/// What main sleeps in `hog-latency`.
pub const HOG_SLEEP: Duration = Duration::from_millis(1);
/// After this, a `hog-latency` run is declared "never" and the hogs are stopped.
pub const HOG_CAP: Duration = Duration::from_secs(2);

/// All workload names, in table order.
pub const WORKLOADS: &[&str] = &[
    "spawn",
    "skynet",
    "pingpong",
    "ring",
    "fanin",
    "yield",
    "sleepers",
    "select",
    "mutex",
    "echo",
    "hog-latency",
];

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub workload: String,
    pub size: u64,
    pub procs: usize,
}

/// Parses `<workload> <size> <procs>`; exits with status 2 on misuse.
pub fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!(
            "usage: {} <workload> <size> <procs>\nworkloads: {}",
            argv.first().map(String::as_str).unwrap_or("peer"),
            WORKLOADS.join(", ")
        );
        std::process::exit(2)
    };
    if argv.len() != 4 {
        usage();
    }
    let workload = argv[1].clone();
    if !WORKLOADS.contains(&workload.as_str()) {
        eprintln!("unknown workload {workload:?}");
        usage();
    }
    let size: u64 = argv[2].parse().unwrap_or_else(|_| usage());
    let procs: usize = argv[3].parse().unwrap_or_else(|_| usage());
    if size == 0 || procs == 0 {
        usage();
    }
    Args {
        workload,
        size,
        procs,
    }
}

/// What one workload run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Timed-section duration.
    pub elapsed: Duration,
    /// Units of work actually performed (ops, hops, messages, ...).
    pub units: u64,
    /// `Err(reason)` if the self-check failed.
    pub check: Result<(), String>,
}

impl Outcome {
    pub fn ok(elapsed: Duration, units: u64) -> Self {
        Outcome {
            elapsed,
            units,
            check: Ok(()),
        }
    }

    /// `Ok` if `got == want`, else a descriptive error.
    pub fn expect<T: PartialEq + std::fmt::Debug>(
        elapsed: Duration,
        units: u64,
        what: &str,
        got: T,
        want: T,
    ) -> Self {
        let check = if got == want {
            Ok(())
        } else {
            Err(format!("{what}: got {got:?}, want {want:?}"))
        };
        Outcome {
            elapsed,
            units,
            check,
        }
    }
}

/// Prints the RESULT line and exits the process (0 if the check passed, 1 if
/// not). Exiting directly avoids hanging in runtime teardown.
pub fn report(runtime: &str, workload: &str, out: Outcome) -> ! {
    let ns = out.elapsed.as_nanos();
    let line = match &out.check {
        Ok(()) => format!(
            "RESULT name={workload} runtime={runtime} ns={ns} units={} ok=1",
            out.units
        ),
        Err(e) => {
            eprintln!("{runtime} {workload}: check failed: {e}");
            format!(
                "RESULT name={workload} runtime={runtime} ns={ns} units={} ok=0 err={}",
                out.units,
                sanitize(e)
            )
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    drop(stdout);
    std::process::exit(if out.check.is_ok() { 0 } else { 1 })
}

/// Error reasons travel as one whitespace-free token.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// `size` split evenly across `tasks`: returns (per task, total units).
/// Rounds down, but always at least one unit per task.
pub fn split(size: u64, tasks: u64) -> (u64, u64) {
    let per = (size / tasks).max(1);
    (per, per * tasks)
}

/// Sum of the skynet leaves `0..leaves`.
pub fn skynet_expected(leaves: u64) -> u64 {
    leaves * (leaves - 1) / 2
}

/// Skynet needs a power of `SKYNET_DIV` leaves.
pub fn is_power_of_div(mut n: u64) -> bool {
    while n > 1 {
        if n / SKYNET_DIV * SKYNET_DIV != n {
            return false;
        }
        n /= SKYNET_DIV;
    }
    n == 1
}

/// Sum of `0..n`.
pub fn triangle(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// The byte pattern client `conn` sends in round `round` of the echo workload.
pub fn echo_pattern(conn: u64, round: u64) -> [u8; ECHO_MSG] {
    let mut buf = [0u8; ECHO_MSG];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (conn as u8)
            .wrapping_mul(31)
            .wrapping_add(round as u8)
            .wrapping_add(i as u8);
    }
    buf
}

/// One burst of the never-yielding hog loop: pure computation hidden from the
/// optimiser with `black_box`. Callers check their stop flag between bursts,
/// so there is no function call into any runtime.
#[inline(always)]
pub fn hog_burst(x: &mut u64) {
    for _ in 0..1000 {
        *x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Outcome of `hog-latency`: `lat` is how long main's 1 ms sleep took;
/// `never` is true if the watchdog had to stop the hogs first.
pub fn hog_outcome(lat: Duration, never: bool) -> Outcome {
    Outcome {
        elapsed: lat,
        units: 1,
        check: if never {
            Err(format!("never (>{} s cap)", HOG_CAP.as_secs()))
        } else {
            Ok(())
        },
    }
}
