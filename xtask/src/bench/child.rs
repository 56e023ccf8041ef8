//! Running one workload process: timeout, output capture and peak RSS.
//!
//! The child is reaped with `wait4(2)` (polled with `WNOHANG`, which lets us
//! enforce a wall-clock limit without a thread per child).
//!
//! Peak RSS: `rusage.ru_maxrss` of a child is not quite its own peak. Linux
//! carries the high-water mark of the pre-`exec` image into it, and with
//! `posix_spawn` (vfork) that image is *our* address space, so every child
//! reports at least xtask's own peak RSS (~5 MB). We therefore also sample
//! `VmHWM` from `/proc/<pid>/status` on every poll (a high-water mark of
//! the exec'd image only) and use `ru_maxrss` only when it exceeds our own
//! peak, i.e. when it can only be the child's.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Keep at most this much of a child's stdout / stderr.
const CAPTURE_LIMIT: usize = 1 << 20;

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal (not by us).
    Signal(i32),
    /// We killed it after the timeout.
    TimedOut(Duration),
}

/// Everything we learn from one run.
#[derive(Debug, Clone)]
pub struct ChildRun {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    /// Peak RSS in KiB (`ru_maxrss`).
    pub maxrss_kib: u64,
    pub wall: Duration,
    /// CPU time the process used, user plus system (`ru_utime + ru_stime`).
    pub cpu: Duration,
}

/// Runs `bin args...` with `envs`, killing it after `timeout`.
pub fn run(
    bin: &Path,
    args: &[String],
    envs: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<ChildRun> {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let own_peak = self_maxrss_kib();
    let status_path = format!("/proc/{pid}/status");
    let mut hwm_kib = 0u64;
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);

    let mut killed = None;
    let mut poll = Duration::from_millis(1);
    let (status, rusage) = loop {
        // SAFETY: `rusage` is plain old data, all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut status: libc::c_int = 0;
        // SAFETY: `pid` is our own unreaped child; the out-pointers are valid
        // for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break (status, ru);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(h) = read_vmhwm_kib(&status_path) {
            hwm_kib = hwm_kib.max(h);
        }
        if killed.is_none() && start.elapsed() >= timeout {
            // SAFETY: plain syscall on our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = Some(start.elapsed());
        }
        thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(10));
    };
    let wall = start.elapsed();
    // The child is reaped: `child` must not be waited on or killed again;
    // dropping it only closes handles.
    drop(child);
    let stdout = out.map(join_drain).unwrap_or_default();
    let stderr = err.map(join_drain).unwrap_or_default();

    let exit = if let Some(after) = killed {
        Exit::TimedOut(after)
    } else if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(-1)
    };
    Ok(ChildRun {
        exit,
        stdout,
        stderr,
        maxrss_kib: peak_rss(
            u64::try_from(rusage.ru_maxrss).unwrap_or(0),
            own_peak,
            hwm_kib,
        ),
        wall,
        cpu: timeval(rusage.ru_utime) + timeval(rusage.ru_stime),
    })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// Combines the two peak-RSS sources (see the module docs).
fn peak_rss(ru_maxrss: u64, own_peak: u64, sampled_hwm: u64) -> u64 {
    if ru_maxrss > own_peak || sampled_hwm == 0 {
        ru_maxrss.max(sampled_hwm)
    } else {
        sampled_hwm
    }
}

/// The high-water RSS of our own address space in KiB: what a child's
/// `ru_maxrss` inherits. (Not `getrusage(RUSAGE_SELF)`: that one in turn
/// inherited cargo's peak when cargo spawned us.)
fn self_maxrss_kib() -> u64 {
    read_vmhwm_kib("/proc/self/status").unwrap_or(u64::MAX)
}

/// `VmHWM` (KiB) from a `/proc/<pid>/status` file.
fn read_vmhwm_kib(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    parse_vmhwm(&s)
}

fn parse_vmhwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Reads a pipe to its end on a thread, keeping the first `CAPTURE_LIMIT`
/// bytes (the pipe keeps being drained so the child never blocks on it).
fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = CAPTURE_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

fn join_drain(h: thread::JoinHandle<String>) -> String {
    h.join().unwrap_or_default()
}

/// Human name of a signal number.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> ChildRun {
        run(
            Path::new("/bin/sh"),
            &["-c".to_string(), script.to_string()],
            &[],
            timeout,
        )
        .expect("spawn /bin/sh")
    }

    #[test]
    fn captures_output_and_exit_code() {
        let r = sh("echo hi; echo oops >&2; exit 3", Duration::from_secs(10));
        assert_eq!(r.exit, Exit::Code(3));
        assert_eq!(r.stdout, "hi\n");
        assert_eq!(r.stderr, "oops\n");
        assert!(r.maxrss_kib > 0);
    }

    #[test]
    fn counts_the_childs_cpu_time() {
        // A shell loop that burns CPU, against one that sleeps.
        let busy = sh(
            "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done",
            Duration::from_secs(60),
        );
        assert_eq!(busy.exit, Exit::Code(0));
        assert!(busy.cpu >= Duration::from_millis(20), "{:?}", busy.cpu);
        let idle = sh("sleep 0.3", Duration::from_secs(10));
        assert!(idle.wall >= Duration::from_millis(300));
        assert!(idle.cpu < Duration::from_millis(150), "{:?}", idle.cpu);
    }

    #[test]
    fn peak_rss_sources() {
        assert_eq!(
            parse_vmhwm("Name:\tx\nVmHWM:\t    1956 kB\nVmRSS: 1 kB\n"),
            Some(1956)
        );
        assert_eq!(parse_vmhwm("Name:\tx\n"), None);
        // ru_maxrss polluted by our own peak: trust the sampled VmHWM.
        assert_eq!(peak_rss(4788, 4800, 2100), 2100);
        // ru_maxrss above our peak: it is the child's.
        assert_eq!(peak_rss(50_000, 4800, 40_000), 50_000);
        // never sampled: the only number we have.
        assert_eq!(peak_rss(4788, 4800, 0), 4788);
    }

    #[test]
    fn measures_a_big_child() {
        // A shell that allocates ~64 MiB (a string of 64M chars) peaks above us.
        let r = sh(
            "x=$(head -c 67108864 /dev/zero | tr '\\0' a); sleep 0.05; echo ${#x}",
            Duration::from_secs(30),
        );
        assert_eq!(r.stdout.trim(), "67108864");
        assert!(r.maxrss_kib > 64 * 1024, "{}", r.maxrss_kib);
    }

    #[test]
    fn kills_after_timeout() {
        let r = sh("exec sleep 30", Duration::from_millis(200));
        assert!(matches!(r.exit, Exit::TimedOut(_)), "{:?}", r.exit);
        assert!(r.wall < Duration::from_secs(10));
    }

    #[test]
    fn reports_signals() {
        let r = sh("kill -SEGV $$", Duration::from_secs(10));
        assert_eq!(r.exit, Exit::Signal(libc::SIGSEGV));
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
    }
}
