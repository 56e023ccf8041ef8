//! `cargo xtask soak [--minutes N]`: the long mixed-workload soak test.
//!
//! Builds the `soak` binary of `bench-gmp` (release) and runs it for `N`
//! minutes (default 1; fractions allowed, e.g. `0.5`). The binary runs
//! rounds of spawn/join bursts, channels, `select!`, mutexes, sleeps,
//! blocking calls, TCP echo and injected panics, checking every result, and
//! prints `SOAK t=.. rounds=.. rss_kb=.. goroutines=..` about once a
//! second plus a `SOAK-SUMMARY` line on RSS after warm-up. This driver
//! streams those lines, writes the samples to `target/soak/rss.csv`, and
//! exits non-zero if the soak failed (a wrong result, a hang, or RSS growth
//! once warm), crashed, or overran its deadline.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask soak [--minutes N]

Runs the gmp soak workload for N minutes (default 1; fractional allowed)
and fails on any wrong result, hang, or RSS growth after warm-up.
Writes target/soak/rss.csv.";

/// Slack past the requested duration before the driver kills the child
/// (the last round, the leak check and process exit).
const GRACE: Duration = Duration::from_secs(120);

fn parse(args: &[String]) -> Result<Option<f64>, String> {
    let mut minutes = 1.0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--minutes" => it.next().ok_or("--minutes needs a value")?.clone(),
            s if s.starts_with("--minutes=") => s["--minutes=".len()..].to_string(),
            s => return Err(format!("unknown option {s:?}")),
        };
        minutes = v
            .parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0)
            .ok_or_else(|| format!("--minutes: not a positive number: {v:?}"))?;
    }
    Ok(Some(minutes))
}

/// `(t, rounds, rss_kb, goroutines)` from a `SOAK t=..` line.
fn parse_sample(line: &str) -> Option<(String, String, String, String)> {
    let rest = line.strip_prefix("SOAK t=")?;
    let mut t = None;
    let mut rounds = None;
    let mut rss = None;
    let mut gs = None;
    for (i, kv) in rest.split_whitespace().enumerate() {
        if i == 0 {
            t = Some(kv.to_string());
            continue;
        }
        let (k, v) = kv.split_once('=')?;
        match k {
            "rounds" => rounds = Some(v.to_string()),
            "rss_kb" => rss = Some(v.to_string()),
            "goroutines" => gs = Some(v.to_string()),
            _ => {}
        }
    }
    Some((t?, rounds?, rss?, gs?))
}

pub fn main(args: &[String]) -> ExitCode {
    let minutes = match parse(args) {
        Ok(Some(m)) => m,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("xtask soak: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let secs = minutes * 60.0;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if PathBuf::from(&t).is_absolute() => PathBuf::from(t),
        Some(t) => root.join(t),
        None => root.join("target"),
    };

    eprintln!("== building soak (cargo build --release -p bench-gmp --bin soak)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "bench-gmp", "--bin", "soak"])
        .status();
    match built {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("xtask soak: build failed ({s})");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("xtask soak: cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    }

    let bin = target.join("release").join("soak");
    eprintln!("== running {} {secs} ({minutes} min)", bin.display());
    let mut child = match Command::new(&bin)
        .arg(format!("{secs}"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask soak: cannot run {}: {e}", bin.display());
            return ExitCode::FAILURE;
        }
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs_f64(secs) + GRACE;
    let mut csv = String::from("t_s,rounds,rss_kb,goroutines\n");
    let mut summary = None;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                println!("{line}");
                if let Some((t, r, rss, g)) = parse_sample(&line) {
                    csv.push_str(&format!("{t},{r},{rss},{g}\n"));
                } else if line.starts_with("SOAK-SUMMARY") {
                    summary = Some(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= deadline {
                    eprintln!("xtask soak: past its deadline; killing it");
                    let _ = child.kill();
                    timed_out = true;
                    break;
                }
            }
        }
    }
    let status = child.wait();
    let _ = reader.join();

    let dir = target.join("soak");
    let csv_path = dir.join("rss.csv");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&csv_path, &csv)) {
        Ok(()) => eprintln!("xtask soak: wrote {}", csv_path.display()),
        Err(e) => eprintln!("xtask soak: cannot write {}: {e}", csv_path.display()),
    }
    if let Some(s) = &summary {
        eprintln!("xtask soak: {s}");
    }
    match status {
        Ok(s) if s.success() && !timed_out => {
            eprintln!("xtask soak: passed");
            ExitCode::SUCCESS
        }
        Ok(s) => {
            eprintln!("xtask soak: FAILED ({s})");
            match s.code() {
                Some(c) if c != 0 => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                _ => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("xtask soak: cannot wait for the soak: {e}");
            ExitCode::FAILURE
        }
    }
}
