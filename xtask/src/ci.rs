//! `cargo xtask ci`: runs `.ci/run`, CI's single source of truth.
//!
//! Executes `bash .ci/run` from the workspace root with inherited stdio
//! (output streams as it comes) and exits with its status.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

pub fn main(args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        if matches!(a.as_str(), "-h" | "--help") {
            println!("usage: cargo xtask ci\n\nRuns `bash .ci/run` (fmt, clippy, docs, tests, debug modes, loom).");
            return ExitCode::SUCCESS;
        }
        eprintln!("xtask ci: takes no options (got {a:?})");
        return ExitCode::from(2);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf();
    eprintln!("xtask ci: $ bash .ci/run  (in {})", root.display());
    match Command::new("bash")
        .arg(".ci/run")
        .current_dir(&root)
        .status()
    {
        Ok(st) => match st.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(c) => {
                eprintln!("xtask ci: .ci/run failed (exit {c})");
                ExitCode::from(u8::try_from(c).unwrap_or(1))
            }
            None => {
                eprintln!("xtask ci: .ci/run killed by a signal ({st})");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("xtask ci: cannot run bash: {e}");
            ExitCode::FAILURE
        }
    }
}
