//! A goroutine that overflows its stack dies with Go's message naming it,
//! never with a bare SIGSEGV. Checked in a child process (rayon-core's
//! stack_overflow_crash pattern): the test binary re-runs itself.

use std::process::Command;

const CHILD: &str = "GMP_OVERFLOW_CHILD";

// Deliberately unbounded: the point is to overflow.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(n: u64, buf: &mut [u8; 512]) -> u64 {
    let mut local = [0u8; 512];
    local[(n % 512) as usize] = buf[(n % 512) as usize].wrapping_add(1);
    std::hint::black_box(&mut local);
    recurse(n + 1, &mut local) + local[0] as u64
}

fn child() {
    let rt = gmp::Runtime::builder()
        .procs(2)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    rt.block_on(|| {
        let h = gmp::go(|| {
            let mut b = [0u8; 512];
            recurse(0, &mut b)
        });
        let _ = h.join();
    });
    println!("unreachable: the overflow did not abort");
}

#[test]
fn stack_overflow_names_the_goroutine_and_aborts() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "stack_overflow_names_the_goroutine_and_aborts",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "child exited cleanly: {stdout}");
    assert!(!stdout.contains("unreachable"), "{stdout}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "status {:?}: {stderr}",
        out.status
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("fatal error: goroutine "))
        .unwrap_or_else(|| panic!("no fatal error line in: {stderr}"));
    // The main goroutine is 1; the overflowing one is a later id.
    let id: u64 = line["fatal error: goroutine ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > 1, "{line}");
    assert!(
        line.ends_with(": stack overflow (stack size 65536)"),
        "{line}"
    );
}

fn libc_sigabrt() -> i32 {
    6
}
