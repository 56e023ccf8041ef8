//! `cargo xtask trace <example> [args...]`: runs
//! `cargo run --release -p gmp --example <example>` with `GMP_TRACE` set and
//! prints the path of the Chrome trace-event file (open it in
//! <https://ui.perfetto.dev> or `chrome://tracing`).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

pub fn main(args: &[String]) -> ExitCode {
    let Some(example) = args.first().filter(|a| !a.starts_with('-')) else {
        eprintln!(
            "usage: cargo xtask trace <example> [args...]\n\n\
             Runs the gmp example with GMP_TRACE=target/gmp-trace-<example>.json\n\
             and prints the trace file's path (open it in https://ui.perfetto.dev)."
        );
        return ExitCode::from(2);
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let out = root
        .join("target")
        .join(format!("gmp-trace-{example}.json"));
    let _ = std::fs::create_dir_all(root.join("target"));
    let _ = std::fs::remove_file(&out);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["run", "--release", "-p", "gmp", "--example", example, "--"])
        .args(&args[1..])
        .env("GMP_TRACE", &out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("xtask trace: the example failed ({s})");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("xtask trace: cannot run cargo: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !out.exists() {
        eprintln!(
            "xtask trace: no trace written to {} (does the example shut its runtime down?)",
            out.display()
        );
        return ExitCode::FAILURE;
    }
    println!("{}", out.display());
    ExitCode::SUCCESS
}
