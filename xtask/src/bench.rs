//! `cargo xtask bench`: every workload on gmp, Go, tokio and may.
//!
//! 1. Builds the four implementations: `bench-gmp` (root workspace),
//!    `peer-tokio`/`peer-may` (the separate `xtask/peers` workspace, so
//!    `cargo test --workspace` never builds tokio or may) and `peer-go`
//!    (`xtask/go/*.go`, stdlib only, `GO111MODULE=off`).
//! 2. Runs each workload `--runs` rounds, every runtime once per round
//!    (interleaved, so a drifting host weighs on all alike), each run a child
//!    process (`<bin> <workload> <size> <procs>`); parses its `RESULT` line, reaps
//!    it with `wait4` for its peak RSS and CPU time (user + system). A run
//!    that fails its self-check, crashes or times out makes the cell
//!    `failed: <reason>`.
//! 3. Prints a Markdown table (median time per unit · peak RSS, and gmp's
//!    ratio to the best peer), then a second one of the median CPU time per
//!    run and the host's steal over the runs (`/proc/stat`), and writes
//!    `target/bench/results.md`, `target/bench/ratios.svg` and
//!    `target/bench/runs.csv`.
//!
//! Why CPU time too: on a shared VM the host can take more of our CPUs
//! than we get (steal above 50 % was measured on the 2-core machines),
//! which stretches every wall time by a factor that changes minute to
//! minute. CPU time does not count steal, so its ratios move less; the
//! wall-time table stays the verdict.
//!
//! Why steal re-runs: the steal changes from one second to the next (10 %
//! to 75 % under load on this host), so one runtime's run can land in a
//! bad second and the next runtime's in a good one. A good run during
//! which the host took more than `--max-steal` % (default 20) of the
//! machine's CPU time is run again, up to `--steal-retries` times (default
//! 2), and the least-stolen attempt is kept. The rule is the same for
//! every runtime, a failure is never re-run away, and `runs.csv` records
//! each kept run's steal and attempt count.

mod child;
mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use child::{ChildRun, Exit};

/// How a workload's per-unit number is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// nanoseconds per unit
    Ns,
    /// microseconds per unit
    Us,
    /// milliseconds per unit (units = 1: total time)
    Ms,
}

impl Scale {
    fn divisor(self) -> f64 {
        match self {
            Scale::Ns => 1.0,
            Scale::Us => 1e3,
            Scale::Ms => 1e6,
        }
    }
}

/// One benchmark workload.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    /// Size of a normal run.
    full: u64,
    /// Size under `--quick`.
    quick: u64,
    scale: Scale,
    /// Unit label shown after the number ("ns/hop").
    unit: &'static str,
    /// One-line description for results.md.
    what: &'static str,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "spawn",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ns,
        unit: "ns/goroutine",
        what: "spawn N trivial goroutines that bump a counter, wait for all",
    },
    Workload {
        name: "skynet",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ms,
        unit: "ms",
        what: "skynet tree (10 children/node, sums through channels), N leaves",
    },
    Workload {
        name: "pingpong",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ns,
        unit: "ns/rt",
        what: "two goroutines, two unbuffered channels, N round trips",
    },
    Workload {
        name: "ring",
        full: 1_000,
        quick: 100,
        scale: Scale::Ns,
        unit: "ns/hop",
        what: "1000 goroutines in a ring of unbuffered channels, N laps of a token",
    },
    Workload {
        name: "fanin",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ns,
        unit: "ns/msg",
        what: "1000 producers into one channel of capacity 1024, N messages",
    },
    Workload {
        name: "yield",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ns,
        unit: "ns/yield",
        what: "1000 goroutines yielding, N yields in total",
    },
    Workload {
        name: "sleepers",
        full: 100_000,
        quick: 10_000,
        scale: Scale::Us,
        unit: "µs/sleeper",
        what: "N goroutines each sleep 10 ms once (total time / N)",
    },
    Workload {
        name: "select",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ns,
        unit: "ns/msg",
        what: "one consumer selecting over 4 channels fed by 4 producers, N messages",
    },
    Workload {
        name: "mutex",
        full: 1_000_000,
        quick: 100_000,
        scale: Scale::Ns,
        unit: "ns/lock",
        what: "1000 goroutines lock/unlock one runtime mutex, N locks in total",
    },
    Workload {
        name: "echo",
        full: 100_000,
        quick: 10_000,
        scale: Scale::Us,
        unit: "µs/rt",
        what: "TCP echo over loopback, 100 connections, N round trips of 64 B",
    },
    Workload {
        name: "hog-latency",
        full: 1,
        quick: 1,
        scale: Scale::Ms,
        unit: "ms",
        what: "every P spins without yielding; how late main's 1 ms sleep resumes (2 s cap)",
    },
];

const RUNTIMES: &[&str] = &["gmp", "go", "tokio", "may"];
const PEERS: &[&str] = &["go", "tokio", "may"];

const USAGE: &str = "\
usage: cargo xtask bench [options]

Runs every workload on gmp, Go, tokio and may and prints a Markdown table
(median time per unit · peak RSS, and gmp / best peer). Also writes
target/bench/results.md, target/bench/ratios.svg and target/bench/runs.csv.

options:
  --quick             1 run per cell and reduced sizes (~1 minute in all)
  --procs N           Ps / GOMAXPROCS / tokio workers / may workers
                      (default: number of CPUs)
  --only a,b          run only these workloads
  --runtimes a,b      run only these runtimes (gmp, go, tokio, may)
  --runs N            runs per cell, median reported (default 5; --quick: 1)
  --timeout SECS      per-run limit (default 60; --quick: 10)
  --max-steal PCT     a run during which the host took more than PCT % of
                      the machine's CPU time (steal, /proc/stat) is run
                      again (default 20; 100 never re-runs)
  --steal-retries N   re-runs per run at most, the least-stolen attempt
                      is kept (default 2; 0 never re-runs)
  --no-build          use the binaries already built
  -h, --help          this text

workloads: spawn skynet pingpong ring fanin yield sleepers select mutex echo hog-latency
";

/// Steal above which a run is re-run, percent of the machine's CPU time
/// (`--max-steal`). Under load this host's steal moved between ~10 % and
/// ~75 % from one second to the next, and a run's wall time follows it
/// (fanin on gmp: 131-148 ms at 37-42 % steal, 186-243 ms at 48-55 %).
const DEFAULT_MAX_STEAL: f64 = 20.0;
/// Re-runs per run for steal at most (`--steal-retries`).
const DEFAULT_STEAL_RETRIES: usize = 2;

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    quick: bool,
    procs: usize,
    only: Vec<&'static Workload>,
    runtimes: Vec<&'static str>,
    runs: usize,
    timeout: Duration,
    /// Steal (percent of the machine's CPU time) above which a run is
    /// re-run.
    max_steal: f64,
    /// How many times one run may be re-run for steal.
    steal_retries: usize,
    build: bool,
    /// The command line, for the report.
    argv: Vec<String>,
}

impl PartialEq for Workload {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses the options; `Ok(None)` means `--help`.
fn parse_opts(args: &[String]) -> Result<Option<Opts>, String> {
    let mut quick = false;
    let mut procs = None;
    let mut only: Option<Vec<&'static Workload>> = None;
    let mut runtimes: Option<Vec<&'static str>> = None;
    let mut runs = None;
    let mut timeout = None;
    let mut max_steal = None;
    let mut steal_retries = None;
    let mut build = true;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> Result<usize, String> {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name}: expected a positive integer, got {v:?}"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "--no-build" => build = false,
            "--procs" => procs = Some(number(flag, value(flag)?)?),
            "--runs" => runs = Some(number(flag, value(flag)?)?),
            "--timeout" => timeout = Some(number(flag, value(flag)?)? as u64),
            "--max-steal" => {
                let v = value(flag)?;
                max_steal = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p))
                        .ok_or_else(|| format!("{flag}: expected a percentage, got {v:?}"))?,
                );
            }
            "--steal-retries" => {
                let v = value(flag)?;
                steal_retries =
                    Some(v.parse::<usize>().map_err(|_| {
                        format!("{flag}: expected a non-negative integer, got {v:?}")
                    })?);
            }
            "--only" => {
                let mut ws = Vec::new();
                for name in value(flag)?.split(',').filter(|s| !s.is_empty()) {
                    let w = WORKLOADS
                        .iter()
                        .find(|w| w.name == name)
                        .ok_or_else(|| format!("--only: unknown workload {name:?}"))?;
                    if !ws.contains(&w) {
                        ws.push(w);
                    }
                }
                if ws.is_empty() {
                    return Err("--only: no workloads given".into());
                }
                only = Some(ws);
            }
            "--runtimes" => {
                let mut rs = Vec::new();
                for name in value(flag)?.split(',').filter(|s| !s.is_empty()) {
                    let r = RUNTIMES
                        .iter()
                        .find(|r| **r == name)
                        .ok_or_else(|| format!("--runtimes: unknown runtime {name:?}"))?;
                    if !rs.contains(r) {
                        rs.push(*r);
                    }
                }
                if rs.is_empty() {
                    return Err("--runtimes: no runtimes given".into());
                }
                // Keep table order stable whatever order was typed.
                rs.sort_by_key(|r| RUNTIMES.iter().position(|x| x == r));
                runtimes = Some(rs);
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Some(Opts {
        quick,
        procs: procs.unwrap_or_else(cpu_count),
        only: only.unwrap_or_else(|| WORKLOADS.iter().collect()),
        runtimes: runtimes.unwrap_or_else(|| RUNTIMES.to_vec()),
        runs: runs.unwrap_or(if quick { 1 } else { 5 }),
        timeout: Duration::from_secs(timeout.unwrap_or(if quick { 10 } else { 60 })),
        max_steal: max_steal.unwrap_or(DEFAULT_MAX_STEAL),
        steal_retries: steal_retries.unwrap_or(DEFAULT_STEAL_RETRIES),
        build,
        argv: args.to_vec(),
    }))
}

/// Where the project lives.
#[derive(Debug)]
struct Paths {
    root: PathBuf,
    target: PathBuf,
    bench: PathBuf,
}

impl Paths {
    fn discover() -> Paths {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace root")
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => {
                let t = PathBuf::from(t);
                if t.is_absolute() {
                    t
                } else {
                    root.join(t)
                }
            }
            None => root.join("target"),
        };
        let bench = target.join("bench");
        Paths {
            root,
            target,
            bench,
        }
    }
    fn gmp_bin(&self) -> PathBuf {
        self.target.join("release").join("bench-gmp")
    }
    fn peers_target(&self) -> PathBuf {
        self.bench.join("peers")
    }
    fn peer_bin(&self, rt: &str) -> PathBuf {
        self.peers_target()
            .join("release")
            .join(format!("peer-{rt}"))
    }
    fn go_bin(&self) -> PathBuf {
        self.bench.join("go").join("peer-go")
    }
}

/// A runtime's binary, or why there is none.
#[derive(Debug, Clone)]
enum Bin {
    Ready(PathBuf),
    Unavailable(String),
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a build command, logging its output to `log`; on failure returns
/// the first `error` line.
fn run_build(mut cmd: Command, log: &Path) -> Result<(), String> {
    eprintln!("   $ {cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::write(log, &text);
    if out.status.success() {
        return Ok(());
    }
    let first = text
        .lines()
        .find(|l| l.starts_with("error") || l.contains(": error") || l.starts_with("# "))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("build failed")
        .trim()
        .to_string();
    Err(format!(
        "build failed: {} (log: {})",
        truncate(&first, 90),
        rel(log)
    ))
}

fn rel(p: &Path) -> String {
    let root = Paths::discover().root;
    p.strip_prefix(&root).unwrap_or(p).display().to_string()
}

/// Locates the Go toolchain: `go` on PATH, then Debian's golang-1.19 path.
fn find_go() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("go");
            if cand.is_file() {
                return Some(cand);
            }
        }
    }
    [
        "/usr/lib/go-1.19/bin/go",
        "/usr/lib/go/bin/go",
        "/usr/local/go/bin/go",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn go_env(p: &Paths) -> Vec<(String, String)> {
    vec![
        ("GO111MODULE".into(), "off".into()),
        (
            "GOCACHE".into(),
            p.bench.join("go-cache").display().to_string(),
        ),
        (
            "GOPATH".into(),
            p.bench.join("gopath").display().to_string(),
        ),
        ("GOFLAGS".into(), String::new()),
        ("CGO_ENABLED".into(), "0".into()),
    ]
}

/// Builds (or, with `--no-build`, just locates) every selected runtime.
fn build_all(opts: &Opts, p: &Paths, notes: &mut Vec<String>) -> BTreeMap<&'static str, Bin> {
    let mut bins = BTreeMap::new();
    let want = |rt: &str| opts.runtimes.contains(&rt);
    let ready_if_exists = |path: PathBuf| {
        if path.is_file() {
            Bin::Ready(path)
        } else {
            Bin::Unavailable(format!("not built ({})", rel(&path)))
        }
    };

    if want("gmp") {
        let bin = if !p.root.join("xtask/bench-gmp/Cargo.toml").is_file() {
            Bin::Unavailable("xtask/bench-gmp is missing".into())
        } else if opts.build {
            eprintln!("== building bench-gmp");
            let mut cmd = cargo();
            cmd.current_dir(&p.root).args([
                "build",
                "--release",
                "-p",
                "bench-gmp",
                "--features",
                "bin",
            ]);
            match run_build(cmd, &p.bench.join("build-gmp.log")) {
                Ok(()) => ready_if_exists(p.gmp_bin()),
                Err(e) => Bin::Unavailable(e),
            }
        } else {
            ready_if_exists(p.gmp_bin())
        };
        bins.insert("gmp", bin);
    }

    if want("tokio") || want("may") {
        let built = if opts.build {
            eprintln!("== building peers (tokio, may)");
            let mut cmd = cargo();
            cmd.current_dir(p.root.join("xtask/peers")).args([
                "build".as_ref(),
                "--release".as_ref(),
                "--manifest-path".as_ref(),
                p.root.join("xtask/peers/Cargo.toml").as_os_str(),
                "--target-dir".as_ref(),
                p.peers_target().as_os_str(),
            ]);
            run_build(cmd, &p.bench.join("build-peers.log"))
        } else {
            Ok(())
        };
        for rt in ["tokio", "may"] {
            if want(rt) {
                let bin = match &built {
                    Ok(()) => ready_if_exists(p.peer_bin(rt)),
                    Err(e) => Bin::Unavailable(e.clone()),
                };
                bins.insert(rt, bin);
            }
        }
    }

    if want("go") {
        let bin = if !opts.build {
            ready_if_exists(p.go_bin())
        } else if let Some(go) = find_go() {
            eprintln!("== building peer-go with {}", go.display());
            let dir = p.root.join("xtask/go");
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".go") && !n.ends_with("_test.go"))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            let _ = std::fs::create_dir_all(p.bench.join("go"));
            let mut cmd = Command::new(&go);
            cmd.current_dir(&dir)
                .envs(go_env(p))
                .arg("build")
                .arg("-o")
                .arg(p.go_bin())
                .args(&files);
            match run_build(cmd, &p.bench.join("build-go.log")) {
                Ok(()) => ready_if_exists(p.go_bin()),
                Err(e) => Bin::Unavailable(e),
            }
        } else {
            let why = "Go not found (apt-get install golang-1.19-go)";
            notes.push(format!("go: skipped: {why}"));
            Bin::Unavailable(why.into())
        };
        bins.insert("go", bin);
    }
    bins
}

/// The `RESULT key=value ...` line of a run, if any (the last one wins).
fn parse_result(stdout: &str) -> Option<BTreeMap<String, String>> {
    let line = stdout.lines().rev().find(|l| l.starts_with("RESULT "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The most telling line of a crashed run's stderr: a Rust panic message,
/// a Go `fatal error:`/`panic:`, or an allocation failure.
fn stderr_hint(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.contains("panicked at") {
            // Rust >= 1.73 puts the message on the next line.
            let after = t.split("panicked at").nth(1).unwrap_or("");
            let msg = match lines.get(i + 1) {
                Some(next) if after.trim_end().ends_with(':') && !next.trim().is_empty() => {
                    next.trim().to_string()
                }
                _ => after.trim().to_string(),
            };
            return Some(msg);
        }
        if t.starts_with("fatal error:")
            || t.starts_with("panic: ")
            || t.starts_with("runtime: ")
            || t.contains("memory allocation of")
            || t.contains("Cannot allocate memory")
            || t.contains("out of memory")
        {
            return Some(t.to_string());
        }
    }
    None
}

/// Shortens a Rust error debug dump in a hint: `failed to alloc sys stack:
/// IoError(Os { code: 12, .., message: "Cannot allocate memory" })` becomes
/// `failed to alloc sys stack: Cannot allocate memory`.
fn simplify_hint(h: &str) -> String {
    let Some(i) = h.find("message: \"") else {
        return h.to_string();
    };
    let rest = &h[i + "message: \"".len()..];
    let msg = rest.split('"').next().unwrap_or(rest);
    let head = &h[..h[..i].find('(').unwrap_or(i)];
    let head = head.rsplit_once(": ").map_or(head, |(a, _)| a).trim();
    if head.is_empty() {
        msg.to_string()
    } else {
        format!("{head}: {msg}")
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    ns: f64,
    units: u64,
    maxrss_kib: u64,
    /// CPU time of the whole process (user + system), ms.
    cpu_ms: f64,
}

/// Judges one finished child run.
fn judge(run: &ChildRun) -> Result<Sample, String> {
    let result = parse_result(&run.stdout);
    let hint = stderr_hint(&run.stderr).map(|h| simplify_hint(&h));
    let with_hint = |what: String| match &hint {
        Some(h) => format!("{what}: {h}"),
        None => what,
    };
    match &run.exit {
        Exit::TimedOut(after) => Err(with_hint(format!("timeout after {} s", after.as_secs()))),
        Exit::Signal(sig) => Err(with_hint(format!("crashed ({})", child::signal_name(*sig)))),
        Exit::Code(code) => match result {
            Some(r) if r.get("ok").map(String::as_str) == Some("1") && *code == 0 => {
                let ns = r.get("ns").and_then(|v| v.parse::<f64>().ok());
                let units = r.get("units").and_then(|v| v.parse::<u64>().ok());
                match (ns, units) {
                    (Some(ns), Some(units)) if units > 0 => Ok(Sample {
                        ns,
                        units,
                        maxrss_kib: run.maxrss_kib,
                        cpu_ms: run.cpu.as_secs_f64() * 1e3,
                    }),
                    _ => Err("malformed RESULT line".into()),
                }
            }
            Some(r) if r.get("ok").map(String::as_str) == Some("0") => {
                let e = r
                    .get("err")
                    .map(|e| e.replace('_', " "))
                    .unwrap_or_else(|| "self-check failed".into());
                // A wrong result is often the symptom of a crash elsewhere.
                Err(match &hint {
                    Some(h) => format!("{e} (stderr: {h})"),
                    None => e,
                })
            }
            // 101 is how a Rust program exits after a panic on main.
            _ if *code == 101 && hint.is_some() => Err(with_hint("panic".into())),
            Some(_) => Err(with_hint(format!("exit code {code}"))),
            None => Err(with_hint(format!("exit code {code}, no RESULT line"))),
        },
    }
}

/// The outcome of one table cell.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Ok {
        /// Median time per unit, in the workload's display unit.
        value: f64,
        /// Peak RSS over the runs, KiB.
        rss_kib: u64,
        runs: usize,
        /// Median CPU time of the process (user + system) per run, ms.
        cpu_ms: f64,
    },
    Failed(String),
    /// Not run (binary unavailable).
    Missing(String),
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// One CSV row per run, for `runs.csv`.
#[derive(Debug)]
struct RunRow {
    workload: &'static str,
    runtime: &'static str,
    run: usize,
    status: String,
    ns: f64,
    units: u64,
    maxrss_kib: u64,
    wall_ms: u128,
    cpu_ms: u128,
    /// Host steal during the kept attempt, percent.
    steal_pct: Option<f64>,
    /// Attempts made for this run (1 + re-runs for steal).
    attempts: usize,
}

/// A cell being filled, run by run.
#[derive(Debug, Default)]
struct CellRuns {
    /// Time per unit of each good run, in the workload's display unit.
    values: Vec<f64>,
    /// Peak RSS over the runs, KiB.
    rss_kib: u64,
    /// CPU time (user + system) of each good run, ms.
    cpu_ms: Vec<f64>,
    /// The first failure, which ends the cell.
    failed: Option<String>,
}

impl CellRuns {
    fn finish(mut self) -> Cell {
        match self.failed {
            Some(e) => Cell::Failed(e),
            None => Cell::Ok {
                value: median(&mut self.values),
                rss_kib: self.rss_kib,
                runs: self.values.len(),
                cpu_ms: median(&mut self.cpu_ms),
            },
        }
    }
}

/// Runs one workload on every ready runtime, `opts.runs` rounds, each
/// round running every runtime once in turn: a host whose speed drifts
/// over seconds or minutes (a shared VM) then weighs on every runtime
/// alike, instead of on whichever ran during a slow minute. A runtime's
/// first failure ends its cell; the others go on.
fn run_workload(
    w: &Workload,
    ready: &[(&'static str, &Path)],
    opts: &Opts,
    rows: &mut Vec<RunRow>,
    failures: &mut Vec<String>,
) -> BTreeMap<&'static str, CellRuns> {
    let mut cells: BTreeMap<&'static str, CellRuns> = ready
        .iter()
        .map(|(rt, _)| (*rt, CellRuns::default()))
        .collect();
    for i in 1..=opts.runs {
        for &(rt, bin) in ready {
            let cell = cells.get_mut(rt).expect("a cell per ready runtime");
            if cell.failed.is_some() {
                continue;
            }
            match run_once(w, rt, bin, opts, i, rows, failures) {
                Ok(s) => {
                    cell.values.push(s.per_unit);
                    cell.rss_kib = cell.rss_kib.max(s.maxrss_kib);
                    cell.cpu_ms.push(s.cpu_ms);
                }
                Err(e) => {
                    cell.failed = Some(if opts.runs > 1 {
                        format!("{e} (run {i}/{})", opts.runs)
                    } else {
                        e
                    });
                }
            }
        }
    }
    cells
}

/// What a good run contributes to its cell.
struct RunOk {
    /// Time per unit, in the workload's display unit.
    per_unit: f64,
    maxrss_kib: u64,
    cpu_ms: f64,
}

/// Runs `bin` once on `w`: its time per unit (display unit), peak RSS and
/// CPU time, or why it failed. Logs the run to stderr and `rows`.
///
/// A good run during which the host took more than `opts.max_steal` % of
/// the machine's CPU time is run again, up to `opts.steal_retries` times,
/// and the least-stolen attempt is kept (see [`keep_attempt`]). Every
/// runtime gets the same treatment; a failed attempt is never retried away.
fn run_once(
    w: &Workload,
    rt: &'static str,
    bin: &Path,
    opts: &Opts,
    i: usize,
    rows: &mut Vec<RunRow>,
    failures: &mut Vec<String>,
) -> Result<RunOk, String> {
    let size = if opts.quick { w.quick } else { w.full };
    let args = vec![w.name.to_string(), size.to_string(), opts.procs.to_string()];
    let envs = vec![
        ("GOMAXPROCS".to_string(), opts.procs.to_string()),
        ("GMP_MAXPROCS".to_string(), opts.procs.to_string()),
        ("RUST_BACKTRACE".to_string(), "0".to_string()),
    ];
    let mut kept: Option<Attempt> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = cpu_ticks();
        let run = child::run(bin, &args, &envs, opts.timeout)
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let steal = before
            .zip(cpu_ticks())
            .and_then(|(b, a)| steal_percent(b, a));
        let judged = judge(&run);
        let next = Attempt { run, judged, steal };
        let retries_left = attempts <= opts.steal_retries;
        let (keep, retry) = keep_attempt(kept.as_ref(), &next, opts.max_steal, retries_left);
        if keep {
            kept = Some(next);
        }
        if !retry {
            break;
        }
        eprintln!(
            "   {:<11} {:<5} run {i}/{}: host steal {:.0} %, running it again",
            w.name,
            rt,
            opts.runs,
            steal.unwrap_or(f64::NAN)
        );
    }
    let Attempt { run, judged, steal } = kept.expect("at least one attempt");
    rows.push(RunRow {
        workload: w.name,
        runtime: rt,
        run: i,
        status: match &judged {
            Ok(_) => "ok".into(),
            Err(e) => format!("failed: {e}"),
        },
        ns: judged.as_ref().map_or(f64::NAN, |s| s.ns),
        units: judged.as_ref().map_or(0, |s| s.units),
        maxrss_kib: run.maxrss_kib,
        wall_ms: run.wall.as_millis(),
        cpu_ms: run.cpu.as_millis(),
        steal_pct: steal,
        attempts,
    });
    match judged {
        Ok(s) => {
            let per_unit = s.ns / s.units as f64 / w.scale.divisor();
            eprintln!(
                "   {:<11} {:<5} run {i}/{}: {} {} · {}",
                w.name,
                rt,
                opts.runs,
                fmt_num(per_unit),
                w.unit,
                fmt_rss(s.maxrss_kib)
            );
            Ok(RunOk {
                per_unit,
                maxrss_kib: s.maxrss_kib,
                cpu_ms: s.cpu_ms,
            })
        }
        Err(e) => {
            let tail: Vec<&str> = run.stderr.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failures.push(format!(
                "{rt} / {} (run {i}, {:?}, size {size}): {e}\n  stderr tail:\n    {}",
                w.name,
                run.exit,
                tail.join("\n    ")
            ));
            eprintln!(
                "   {:<11} {:<5} run {i}/{}: FAILED: {e}",
                w.name, rt, opts.runs
            );
            Err(e)
        }
    }
}

/// One child run of a workload, judged, with the host's steal during it.
struct Attempt {
    run: ChildRun,
    judged: Result<Sample, String>,
    /// Percent of the machine's CPU time the host took meanwhile (None
    /// where `/proc/stat` is unreadable).
    steal: Option<f64>,
}

/// Steal-aware retries: whether `next` replaces the attempt kept so far,
/// and whether to run once more. `may_retry` says whether retries are
/// left.
///
/// A failed attempt is always kept and ends the run (a crash or a wrong
/// result is the runtime's, whatever the host did). Among good attempts
/// the least-stolen is kept; another is made while the best so far is
/// above `max_steal`. Without a steal reading nothing is retried.
fn keep_attempt(
    kept: Option<&Attempt>,
    next: &Attempt,
    max_steal: f64,
    may_retry: bool,
) -> (bool, bool) {
    if next.judged.is_err() {
        return (true, false);
    }
    let keep = match kept.map(|k| k.steal) {
        None => true,
        Some(Some(k)) => next.steal.is_some_and(|n| n < k),
        Some(None) => false,
    };
    let best = if keep {
        next.steal
    } else {
        kept.and_then(|k| k.steal)
    };
    let retry = may_retry && best.is_some_and(|b| b > max_steal);
    (keep, retry)
}

/// Numbers with about three significant digits.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "?".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_rss(kib: u64) -> String {
    let mb = kib as f64 / 1024.0;
    if mb >= 10.0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn fmt_cell(w: &Workload, c: &Cell) -> String {
    match c {
        Cell::Ok { value, rss_kib, .. } => {
            format!("{} {} · {}", fmt_num(*value), w.unit, fmt_rss(*rss_kib))
        }
        Cell::Failed(e) => format!("failed: {}", md_escape(&truncate(e, 70))),
        // The full reason is in the notes; the table keeps the gist.
        Cell::Missing(e) => format!(
            "n/a: {}",
            md_escape(&truncate(e.split(':').next().unwrap_or(e), 50))
        ),
    }
}

/// gmp / best successful peer: `(ratio, best peer)`, or why there is none.
fn ratio(cells: &BTreeMap<&str, Cell>) -> Result<(f64, &'static str), String> {
    let gmp = match cells.get("gmp") {
        Some(Cell::Ok { value, .. }) => *value,
        Some(Cell::Failed(_)) => return Err("gmp failed".into()),
        Some(Cell::Missing(_)) => return Err("gmp unavailable".into()),
        None => return Err("gmp not run".into()),
    };
    let best = PEERS
        .iter()
        .filter_map(|p| match cells.get(p) {
            Some(Cell::Ok { value, .. }) => Some((*value, *p)),
            _ => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((v, p)) if v > 0.0 => Ok((gmp / v, p)),
        Some(_) => Err("peer time is zero".into()),
        None => Err("no peer succeeded".into()),
    }
}

fn fmt_ratio(r: &Result<(f64, &str), String>) -> String {
    match r {
        Ok((x, p)) if *x >= 1.0 => format!("{x:.2}× vs {p} ⚠ behind"),
        Ok((x, p)) => format!("{x:.2}× vs {p}"),
        Err(e) => format!("n/a ({e})"),
    }
}

type Results = Vec<(&'static Workload, BTreeMap<&'static str, Cell>)>;

/// The Markdown table.
fn render_table(opts: &Opts, results: &Results) -> String {
    render_grid(opts, results, "gmp / best peer", fmt_cell, |cells| {
        fmt_ratio(&ratio(cells))
    })
}

/// A table with a row per workload, a column per runtime (`cell` renders
/// one; a runtime not in a row's map shows `—`) and a last column
/// (`last` renders it from the row).
fn render_grid(
    opts: &Opts,
    results: &Results,
    last_header: &str,
    cell: impl Fn(&Workload, &Cell) -> String,
    last: impl Fn(&BTreeMap<&'static str, Cell>) -> String,
) -> String {
    let mut s = String::new();
    let _ = write!(s, "| workload |");
    for rt in &opts.runtimes {
        let _ = write!(s, " {rt} |");
    }
    let _ = writeln!(s, " {last_header} |");
    let _ = write!(s, "|---|");
    for _ in &opts.runtimes {
        let _ = write!(s, "---|");
    }
    let _ = writeln!(s, "---|");
    for (w, cells) in results {
        let _ = write!(s, "| {} |", w.name);
        for rt in &opts.runtimes {
            let c = cells
                .get(rt)
                .map_or_else(|| "—".to_string(), |c| cell(w, c));
            let _ = write!(s, " {c} |");
        }
        let _ = writeln!(s, " {} |", last(cells));
    }
    s
}

/// gmp's CPU time / the least of the successful peers': `(ratio, peer)`.
fn cpu_ratio(cells: &BTreeMap<&str, Cell>) -> Option<(f64, &'static str)> {
    let Some(Cell::Ok { cpu_ms: gmp, .. }) = cells.get("gmp") else {
        return None;
    };
    PEERS
        .iter()
        .filter_map(|p| match cells.get(p) {
            Some(Cell::Ok { cpu_ms, .. }) if *cpu_ms > 0.0 => Some((*cpu_ms, *p)),
            _ => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(v, p)| (gmp / v, p))
}

/// The CPU-time table: median user + system time of each process per
/// run. On a shared host, time the host gives to other guests (steal)
/// stretches wall times but is not counted here, so this table is the
/// steadier view of how much work each runtime did.
fn render_cpu_table(opts: &Opts, results: &Results) -> String {
    render_grid(
        opts,
        results,
        "gmp / least peer",
        |_, c| match c {
            Cell::Ok { cpu_ms, .. } => format!("{} ms", fmt_num(*cpu_ms)),
            Cell::Failed(_) => "failed".into(),
            Cell::Missing(_) => "—".into(),
        },
        |cells| match cpu_ratio(cells) {
            Some((x, p)) if x >= 1.0 => format!("{x:.2}× vs {p} ⚠ more"),
            Some((x, p)) => format!("{x:.2}× vs {p}"),
            None => "n/a".into(),
        },
    )
}

/// The machine-wide CPU counters of `/proc/stat`: `(steal, total)` in
/// ticks, total being user + nice + system + idle + iowait + irq +
/// softirq + steal.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_ticks(stat.lines().next()?)
}

fn parse_cpu_ticks(line: &str) -> Option<(u64, u64)> {
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    (v.len() == 8).then(|| (v[7], v.iter().sum()))
}

/// Share of the machine's CPU time that the host gave to other guests
/// between two [`cpu_ticks`] readings, in percent.
fn steal_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1)?;
    let steal = after.0.checked_sub(before.0)?;
    (total > 0).then(|| 100.0 * steal as f64 / total as f64)
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock (civil-from-days).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Howard Hinnant's days-since-1970 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Env {
    date: String,
    cpu: String,
    cpus: usize,
    rustc: String,
    go: String,
    /// Host steal over the runs, percent (None where `/proc/stat` is
    /// unreadable).
    steal_percent: Option<f64>,
    /// Runs re-run for steal, and all runs.
    retried: (usize, usize),
}

fn render_report(
    opts: &Opts,
    env: &Env,
    table: &str,
    cpu_table: &str,
    failures: &[String],
    notes: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# gmp benchmark results\n");
    let _ = writeln!(s, "- date: {}", env.date);
    let _ = writeln!(
        s,
        "- command: `cargo xtask bench{}{}`",
        if opts.argv.is_empty() { "" } else { " " },
        opts.argv.join(" ")
    );
    let _ = writeln!(
        s,
        "- mode: {}, {} run{} per cell, runtimes interleaved round by round (cell = median time per unit · peak RSS of the process, max over runs)",
        if opts.quick { "quick, reduced sizes" } else { "full sizes" },
        opts.runs,
        if opts.runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "- machine: {}, {} CPUs", env.cpu, env.cpus);
    let _ = writeln!(
        s,
        "- procs: {} (gmp procs / GOMAXPROCS / tokio worker_threads / may workers)",
        opts.procs
    );
    let _ = writeln!(s, "- rustc: {}", env.rustc);
    let _ = writeln!(s, "- go: {}", env.go);
    let _ = writeln!(s, "- per-run timeout: {} s", opts.timeout.as_secs());
    if opts.steal_retries == 0 || opts.max_steal >= 100.0 {
        let _ = writeln!(s, "- steal re-runs: off");
    } else {
        let _ = writeln!(
            s,
            "- steal re-runs: a good run during which the host took more than {} % of the machine's CPU time is run again, up to {} more time{}, and the least-stolen attempt is kept, alike for every runtime (`runs.csv`: `steal_pct`, `attempts`); {} of {} runs were re-run",
            opts.max_steal,
            opts.steal_retries,
            if opts.steal_retries == 1 { "" } else { "s" },
            env.retried.0,
            env.retried.1
        );
    }
    match env.steal_percent {
        Some(p) => {
            let _ = writeln!(
                s,
                "- host steal during the runs: {p:.1} % of the machine's CPU time (`/proc/stat`: time the host gave to other guests; it stretches wall times, see the CPU-time table)\n"
            );
        }
        None => s.push('\n'),
    }
    s.push_str(table);
    let _ = writeln!(
        s,
        "\n`gmp / best peer` < 1 means gmp is faster than every peer that succeeded; ⚠ marks where it is behind.\n"
    );
    let _ = writeln!(
        s,
        "## CPU time\n\nMedian user + system CPU time of the whole process per run (startup included). Steal is not in it, so on a shared host it varies less than the wall times above.\n"
    );
    s.push_str(cpu_table);
    let _ = writeln!(s, "\n## Workloads\n");
    let _ = writeln!(s, "| workload | size | unit | what |\n|---|---|---|---|");
    for w in &opts.only {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            w.name,
            if opts.quick { w.quick } else { w.full },
            w.unit,
            w.what
        );
    }
    if !failures.is_empty() {
        let _ = writeln!(s, "\n## Failures\n\n```text");
        for f in failures {
            let _ = writeln!(s, "{f}");
        }
        let _ = writeln!(s, "```");
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn render_csv(rows: &[RunRow]) -> String {
    let mut s = String::from(
        "workload,runtime,run,status,ns,units,maxrss_kib,wall_ms,cpu_ms,steal_pct,attempts\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},\"{}\",{},{},{},{},{},{},{}",
            r.workload,
            r.runtime,
            r.run,
            r.status.replace('"', "'"),
            if r.ns.is_finite() {
                format!("{:.0}", r.ns)
            } else {
                String::new()
            },
            r.units,
            r.maxrss_kib,
            r.wall_ms,
            r.cpu_ms,
            r.steal_pct.map_or(String::new(), |p| format!("{p:.1}")),
            r.attempts
        );
    }
    s
}

/// Entry point of `cargo xtask bench`.
pub fn main(args: &[String]) -> ExitCode {
    let opts = match parse_opts(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("xtask bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let paths = Paths::discover();
    if let Err(e) = std::fs::create_dir_all(&paths.bench) {
        eprintln!("xtask bench: cannot create {}: {e}", paths.bench.display());
        return ExitCode::FAILURE;
    }
    let mut notes = Vec::new();
    let bins = build_all(&opts, &paths, &mut notes);
    for (rt, bin) in &bins {
        if let Bin::Unavailable(why) = bin {
            eprintln!("   {rt}: unavailable: {why}");
        }
    }

    let total = opts.only.len();
    eprintln!(
        "== running {} workload(s) × {} runtime(s), {} round(s) (every runtime once per round), procs={}{}",
        opts.only.len(),
        opts.runtimes.len(),
        opts.runs,
        opts.procs,
        if opts.quick { ", quick sizes" } else { "" }
    );
    let ticks_before = cpu_ticks();
    let mut results: Results = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut n = 0;
    for w in &opts.only {
        n += 1;
        let ready: Vec<(&'static str, &Path)> = opts
            .runtimes
            .iter()
            .filter_map(|&rt| match bins.get(rt) {
                Some(Bin::Ready(bin)) => Some((rt, bin.as_path())),
                _ => None,
            })
            .collect();
        eprintln!(
            "[{n}/{total}] {} on {}",
            w.name,
            ready
                .iter()
                .map(|(rt, _)| *rt)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut runs = run_workload(w, &ready, &opts, &mut rows, &mut failures);
        let mut cells = BTreeMap::new();
        for &rt in &opts.runtimes {
            let cell = match (runs.remove(rt), bins.get(rt)) {
                (Some(r), _) => r.finish(),
                (None, Some(Bin::Unavailable(why))) => Cell::Missing(why.clone()),
                _ => Cell::Missing("not selected".into()),
            };
            cells.insert(rt, cell);
        }
        results.push((*w, cells));
    }

    let steal = ticks_before
        .zip(cpu_ticks())
        .and_then(|(b, a)| steal_percent(b, a));
    let table = render_table(&opts, &results);
    println!("{table}");
    let cpu_table = render_cpu_table(&opts, &results);
    println!("CPU time per run (user + system, median):\n\n{cpu_table}");
    if let Some(p) = steal {
        println!("host steal during the runs: {p:.1} % of the machine's CPU time");
    }
    for (rt, bin) in &bins {
        if let Bin::Unavailable(why) = bin {
            eprintln!("note: {rt}: unavailable: {why}");
        }
    }

    let env = Env {
        date: utc_now(),
        cpu: cpu_model(),
        cpus: cpu_count(),
        rustc: command_line("rustc", &["-V"]).unwrap_or_else(|| "unknown".into()),
        go: match bins.get("go") {
            Some(Bin::Ready(_)) => find_go()
                .and_then(|g| command_line(&g.display().to_string(), &["version"]))
                .unwrap_or_else(|| "unknown".into()),
            Some(Bin::Unavailable(why)) => format!("unavailable: {why}"),
            None => "not run".into(),
        },
        steal_percent: steal,
        retried: (rows.iter().filter(|r| r.attempts > 1).count(), rows.len()),
    };
    for (rt, bin) in &bins {
        if let Bin::Unavailable(why) = bin {
            if *rt != "go" || !why.starts_with("Go not found") {
                notes.push(format!("{rt}: unavailable: {why}"));
            }
        }
    }
    let report = render_report(&opts, &env, &table, &cpu_table, &failures, &notes);
    let bars: Vec<svg::Bar> = results
        .iter()
        .map(|(w, cells)| {
            let r = ratio(cells);
            svg::Bar {
                name: w.name.to_string(),
                ratio: r.as_ref().ok().map(|x| x.0),
                note: match &r {
                    Ok((_, p)) => format!("vs {p}"),
                    Err(e) => format!("n/a ({e})"),
                },
            }
        })
        .collect();
    let title = format!(
        "gmp vs best peer — {}, procs={}, {}",
        if opts.quick { "quick" } else { "full" },
        opts.procs,
        env.date
    );
    let outputs = [
        ("results.md", report),
        ("ratios.svg", svg::render(&title, &bars)),
        ("runs.csv", render_csv(&rows)),
    ];
    for (name, text) in outputs {
        let path = paths.bench.join(name);
        match std::fs::write(&path, text) {
            Ok(()) => eprintln!("wrote {}", rel(&path)),
            Err(e) => eprintln!("xtask bench: cannot write {}: {e}", path.display()),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn option_defaults_and_quick() {
        let o = parse_opts(&[]).unwrap().unwrap();
        assert!(!o.quick);
        assert_eq!(o.runs, 5);
        assert_eq!(o.only.len(), WORKLOADS.len());
        assert_eq!(o.runtimes, RUNTIMES.to_vec());
        assert_eq!(o.procs, cpu_count());
        let q = parse_opts(&s(&["--quick"])).unwrap().unwrap();
        assert_eq!(q.runs, 1);
        assert_eq!(q.timeout, Duration::from_secs(10));
        assert_eq!(o.max_steal, 20.0);
        assert_eq!(o.steal_retries, 2);
        let r = parse_opts(&s(&["--max-steal=12.5", "--steal-retries", "0"]))
            .unwrap()
            .unwrap();
        assert_eq!(r.max_steal, 12.5);
        assert_eq!(r.steal_retries, 0);
    }

    #[test]
    fn option_values() {
        let o = parse_opts(&s(&[
            "--procs",
            "3",
            "--only=ring,spawn",
            "--runs",
            "2",
            "--runtimes",
            "may,gmp",
            "--timeout=7",
            "--no-build",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.procs, 3);
        assert_eq!(
            o.only.iter().map(|w| w.name).collect::<Vec<_>>(),
            ["ring", "spawn"]
        );
        assert_eq!(o.runs, 2);
        assert_eq!(o.runtimes, ["gmp", "may"]);
        assert_eq!(o.timeout, Duration::from_secs(7));
        assert!(!o.build);
        assert!(parse_opts(&s(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn option_errors() {
        assert!(parse_opts(&s(&["--only", "nope"])).is_err());
        assert!(parse_opts(&s(&["--runs", "0"])).is_err());
        assert!(parse_opts(&s(&["--procs"])).is_err());
        assert!(parse_opts(&s(&["--frobnicate"])).is_err());
        assert!(parse_opts(&s(&["--runtimes", "rayon"])).is_err());
        assert!(parse_opts(&s(&["--max-steal", "150"])).is_err());
        assert!(parse_opts(&s(&["--max-steal", "lots"])).is_err());
        assert!(parse_opts(&s(&["--steal-retries", "-1"])).is_err());
    }

    #[test]
    fn workload_table_is_consistent() {
        let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
        assert_eq!(
            names,
            [
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
                "hog-latency"
            ]
        );
        for w in WORKLOADS {
            assert!(w.quick <= w.full, "{}", w.name);
        }
    }

    #[test]
    fn parses_result_lines() {
        let r = parse_result("499999500000\nRESULT name=skynet runtime=go ns=123 units=1 ok=1\n")
            .unwrap();
        assert_eq!(r["name"], "skynet");
        assert_eq!(r["ns"], "123");
        assert_eq!(r["ok"], "1");
        assert!(parse_result("hello\n").is_none());
    }

    fn run_of(exit: Exit, stdout: &str, stderr: &str) -> ChildRun {
        ChildRun {
            exit,
            stdout: stdout.into(),
            stderr: stderr.into(),
            maxrss_kib: 2048,
            wall: Duration::from_millis(5),
            cpu: Duration::from_micros(3_500),
        }
    }

    fn attempt(ok: bool, steal: Option<f64>) -> Attempt {
        let run = if ok {
            run_of(
                Exit::Code(0),
                "RESULT name=ring runtime=gmp ns=10 units=1 ok=1\n",
                "",
            )
        } else {
            run_of(Exit::Signal(11), "", "")
        };
        let judged = judge(&run);
        assert_eq!(judged.is_ok(), ok);
        Attempt { run, judged, steal }
    }

    #[test]
    fn steal_retries_keep_the_least_stolen_good_attempt() {
        let max = 20.0;
        // A quiet first run is kept and not repeated.
        assert_eq!(
            keep_attempt(None, &attempt(true, Some(5.0)), max, true),
            (true, false)
        );
        // A stolen one is kept for now and repeated while retries are left...
        assert_eq!(
            keep_attempt(None, &attempt(true, Some(50.0)), max, true),
            (true, true)
        );
        // ...but not once they are spent.
        assert_eq!(
            keep_attempt(None, &attempt(true, Some(50.0)), max, false),
            (true, false)
        );
        let first = attempt(true, Some(50.0));
        // A less-stolen attempt replaces it; still above the bar: once more.
        assert_eq!(
            keep_attempt(Some(&first), &attempt(true, Some(30.0)), max, true),
            (true, true)
        );
        // A quieter one replaces it and ends the run.
        assert_eq!(
            keep_attempt(Some(&first), &attempt(true, Some(10.0)), max, true),
            (true, false)
        );
        // A more-stolen one is dropped; the kept one is still above the bar.
        assert_eq!(
            keep_attempt(Some(&first), &attempt(true, Some(60.0)), max, true),
            (false, true)
        );
        assert_eq!(
            keep_attempt(Some(&first), &attempt(true, Some(60.0)), max, false),
            (false, false)
        );
        // A failure is the runtime's: kept, never retried away.
        assert_eq!(
            keep_attempt(Some(&first), &attempt(false, Some(60.0)), max, true),
            (true, false)
        );
        assert_eq!(
            keep_attempt(None, &attempt(false, Some(90.0)), max, true),
            (true, false)
        );
        // No steal reading: nothing to judge by, no retry.
        assert_eq!(
            keep_attempt(None, &attempt(true, None), max, true),
            (true, false)
        );
        // The bar itself is not above the bar.
        assert_eq!(
            keep_attempt(None, &attempt(true, Some(20.0)), max, true),
            (true, false)
        );
    }

    #[test]
    fn csv_rows_carry_steal_and_attempts() {
        let row = |steal_pct, attempts| RunRow {
            workload: "ring",
            runtime: "gmp",
            run: 2,
            status: "ok".into(),
            ns: 1234.0,
            units: 10,
            maxrss_kib: 512,
            wall_ms: 7,
            cpu_ms: 9,
            steal_pct,
            attempts,
        };
        let csv = render_csv(&[row(Some(12.34), 3), row(None, 1)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            [
                "workload,runtime,run,status,ns,units,maxrss_kib,wall_ms,cpu_ms,steal_pct,attempts",
                "ring,gmp,2,\"ok\",1234,10,512,7,9,12.3,3",
                "ring,gmp,2,\"ok\",1234,10,512,7,9,,1",
            ]
        );
    }

    #[test]
    fn report_header_states_the_steal_policy() {
        let env = Env {
            date: "2026-01-01 00:00 UTC".into(),
            cpu: "cpu".into(),
            cpus: 2,
            rustc: "rustc".into(),
            go: "go".into(),
            steal_percent: Some(31.0),
            retried: (4, 20),
        };
        let on = parse_opts(&[]).unwrap().unwrap();
        let r = render_report(&on, &env, "", "", &[], &[]);
        assert!(
            r.contains("- steal re-runs: a good run during which the host took more than 20 % of the machine's CPU time is run again, up to 2 more times, and the least-stolen attempt is kept"),
            "{r}"
        );
        assert!(r.contains("; 4 of 20 runs were re-run\n"), "{r}");
        assert!(r.contains("- host steal during the runs: 31.0 %"), "{r}");
        let off = parse_opts(&s(&["--steal-retries=0"])).unwrap().unwrap();
        let r = render_report(&off, &env, "", "", &[], &[]);
        assert!(r.contains("- steal re-runs: off\n"), "{r}");
    }

    #[test]
    fn judges_runs() {
        let ok = run_of(
            Exit::Code(0),
            "RESULT name=ring runtime=go ns=1000 units=10 ok=1\n",
            "",
        );
        assert_eq!(
            judge(&ok),
            Ok(Sample {
                ns: 1000.0,
                units: 10,
                maxrss_kib: 2048,
                cpu_ms: 3.5
            })
        );
        let bad = run_of(
            Exit::Code(1),
            "RESULT name=hog-latency runtime=tokio ns=1 units=1 ok=0 err=never_(>2_s_cap)\n",
            "",
        );
        assert_eq!(judge(&bad), Err("never (>2 s cap)".into()));
        let panicked = run_of(
            Exit::Code(101),
            "",
            "thread '<unnamed>' panicked at src/stack.rs:588:45:\nfailed to alloc sys stack\nnote: ...\n",
        );
        assert_eq!(
            judge(&panicked),
            Err("panic: failed to alloc sys stack".into())
        );
        let hung = run_of(Exit::TimedOut(Duration::from_secs(10)), "", "");
        assert_eq!(judge(&hung), Err("timeout after 10 s".into()));
        let segv = run_of(Exit::Signal(libc::SIGSEGV), "", "");
        assert_eq!(judge(&segv), Err("crashed (SIGSEGV)".into()));
        let go = run_of(
            Exit::Code(2),
            "",
            "fatal error: out of memory\n\ngoroutine 1 [running]:\n",
        );
        assert_eq!(
            judge(&go),
            Err("exit code 2, no RESULT line: fatal error: out of memory".into())
        );
    }

    #[test]
    fn simplifies_hints() {
        assert_eq!(
            simplify_hint(
                r#"failed to alloc sys stack: IoError(Os { code: 12, kind: OutOfMemory, message: "Cannot allocate memory" })"#
            ),
            "failed to alloc sys stack: Cannot allocate memory"
        );
        assert_eq!(simplify_hint("plain words"), "plain words");
    }

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(fmt_num(312.4), "312");
        assert_eq!(fmt_num(31.24), "31.2");
        assert_eq!(fmt_num(3.124), "3.12");
        assert_eq!(fmt_rss(45 * 1024), "45 MB");
        assert_eq!(fmt_rss(3 * 1024), "3.0 MB");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(md_escape("a|b"), "a\\|b");
    }

    #[test]
    fn ratios_against_best_peer() {
        let ok = |v| Cell::Ok {
            value: v,
            rss_kib: 1,
            runs: 1,
            cpu_ms: 2.0 * v,
        };
        let mut cells = BTreeMap::new();
        cells.insert("gmp", ok(150.0));
        cells.insert("go", ok(100.0));
        cells.insert("tokio", ok(300.0));
        cells.insert("may", Cell::Failed("never".into()));
        let r = ratio(&cells);
        assert_eq!(r, Ok((1.5, "go")));
        assert!(fmt_ratio(&r).contains("⚠ behind"));
        cells.insert("gmp", ok(50.0));
        let r = ratio(&cells);
        assert_eq!(r, Ok((0.5, "go")));
        assert!(!fmt_ratio(&r).contains('⚠'));
        cells.insert("gmp", Cell::Failed("x".into()));
        assert!(ratio(&cells).is_err());
        let mut only_gmp = BTreeMap::new();
        only_gmp.insert("gmp", ok(1.0));
        assert_eq!(ratio(&only_gmp), Err("no peer succeeded".into()));
    }

    #[test]
    fn table_shape() {
        let opts = parse_opts(&s(&["--only", "ring"])).unwrap().unwrap();
        let mut cells = BTreeMap::new();
        cells.insert(
            "gmp",
            Cell::Ok {
                value: 120.0,
                rss_kib: 4096,
                runs: 5,
                cpu_ms: 90.0,
            },
        );
        cells.insert("go", Cell::Failed("timeout after 60 s".into()));
        cells.insert(
            "tokio",
            Cell::Missing("build failed: error[E0432]: x (log: y)".into()),
        );
        cells.insert(
            "may",
            Cell::Ok {
                value: 100.0,
                rss_kib: 8192,
                runs: 5,
                cpu_ms: 60.0,
            },
        );
        let results = vec![(&WORKLOADS[3], cells)];
        let t = render_table(&opts, &results);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "| workload | gmp | go | tokio | may | gmp / best peer |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|");
        assert_eq!(
            lines[2],
            "| ring | 120 ns/hop · 4.0 MB | failed: timeout after 60 s | n/a: build failed | 100 ns/hop · 8.0 MB | 1.20× vs may ⚠ behind |"
        );
        let c = render_cpu_table(&opts, &results);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(
            lines[0],
            "| workload | gmp | go | tokio | may | gmp / least peer |"
        );
        assert_eq!(
            lines[2],
            "| ring | 90.0 ms | failed | — | 60.0 ms | 1.50× vs may ⚠ more |"
        );
    }

    #[test]
    fn steal_from_proc_stat() {
        let before = parse_cpu_ticks("cpu  100 0 50 800 0 0 0 50 0 0").unwrap();
        assert_eq!(before, (50, 1000));
        let after = parse_cpu_ticks("cpu  200 0 100 1500 0 0 0 200 0 0").unwrap();
        let p = steal_percent(before, after).unwrap();
        assert!((p - 15.0).abs() < 1e-9, "{p}");
        assert_eq!(parse_cpu_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_ticks("cpu 1 2 3"), None);
        assert_eq!(steal_percent(after, after), None);
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
