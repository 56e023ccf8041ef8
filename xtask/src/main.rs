//! `cargo xtask <subcommand>`: project automation for gmp.
//!
//! `main` is only a dispatcher; each subcommand lives in its own module.
//! Subcommands planned by others (`trace`, `soak`, `ci`) slot into
//! [`SUBCOMMANDS`] and the `match` in [`main`].

mod bench;
mod ci;
mod soak;
mod trace;

use std::process::ExitCode;

/// (name, one-line description) of every subcommand, for `--help`.
const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "bench",
        "run every workload on gmp, Go, tokio and may; print a Markdown table",
    ),
    (
        "trace",
        "run a gmp example with GMP_TRACE set; print the Chrome trace file's path",
    ),
    (
        "soak",
        "run a mixed, self-checking gmp workload for --minutes N (default 1); fail on RSS growth",
    ),
    ("ci", "run exactly what CI runs (bash .ci/run)"),
];

fn usage() -> String {
    let mut s = String::from("usage: cargo xtask <subcommand> [options]\n\nsubcommands:\n");
    for (name, what) in SUBCOMMANDS {
        s.push_str(&format!("  {name:<8} {what}\n"));
    }
    s.push_str("\n`cargo xtask <subcommand> --help` for a subcommand's options.\n");
    s
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let sub = args.next();
    let rest: Vec<String> = args.collect();
    match sub.as_deref() {
        Some("bench") => bench::main(&rest),
        Some("trace") => trace::main(&rest),
        Some("soak") => soak::main(&rest),
        Some("ci") => ci::main(&rest),
        None | Some("-h" | "--help" | "help") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown subcommand {other:?}\n");
            eprint!("{}", usage());
            ExitCode::from(2)
        }
    }
}
