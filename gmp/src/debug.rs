//! Goroutine dumps: [`dump`], [`Runtime::dump`](crate::Runtime::dump), and
//! Go's `SIGQUIT` behaviour (print every goroutine, exit with status 2).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use gmp_sched::Sched;

/// A Go-style dump of every live goroutine of the current runtime (empty
/// outside a runtime): one block per goroutine,
///
/// ```text
/// goroutine 7 [chan receive, 2 minutes]:
/// created by src/main.rs:12:5 in goroutine 1
/// ```
///
/// with `[running]`, `[runnable]`, `[syscall]` or the wait reason, the wait
/// time once it reaches a minute, and `locked to thread` for goroutines
/// wired to their thread. Taking a dump never blocks the runtime.
pub fn dump() -> String {
    gmp_sched::with_current_sched(|s| s.dump()).unwrap_or_default()
}

impl crate::Runtime {
    /// A goroutine dump of this runtime (see [`dump`]).
    pub fn dump(&self) -> String {
        self.sched().dump()
    }
}

/// Runtimes that asked for the `SIGQUIT` dump.
static SIGQUIT_SCHEDS: Mutex<Vec<Weak<Sched>>> = Mutex::new(Vec::new());
/// Write end of the self-pipe the signal handler writes to.
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
static INSTALL: Once = Once::new();

extern "C" fn on_sigquit(_sig: libc::c_int) {
    let fd = PIPE_W.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; `b` lives across the call.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

/// Registers `s` for the `SIGQUIT` dump, installing the handler and the
/// `gmp-sigquit` thread on first use.
pub(crate) fn register_sigquit(s: &Arc<Sched>) {
    {
        let mut v = SIGQUIT_SCHEDS.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(s));
    }
    INSTALL.call_once(install);
}

fn install() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        tracing::warn!("gmp: cannot create the SIGQUIT pipe; no SIGQUIT dump");
        return;
    }
    let (r, w) = (fds[0], fds[1]);
    PIPE_W.store(w, Ordering::Relaxed);
    let t = std::thread::Builder::new()
        .name("gmp-sigquit".into())
        .spawn(move || loop {
            let mut b = 0u8;
            // SAFETY: `r` is the read end of our pipe; `b` is a valid 1-byte
            // buffer.
            let n = unsafe { libc::read(r, &mut b as *mut u8 as *mut libc::c_void, 1) };
            if n == 1 {
                sigquit_dump();
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                return;
            }
        });
    if t.is_err() {
        tracing::warn!("gmp: cannot start the SIGQUIT thread; no SIGQUIT dump");
        return;
    }
    let act = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigquit),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only calls write(2), which is async-signal-safe.
    if let Err(e) = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGQUIT, &act) }
    {
        tracing::warn!("gmp: cannot install the SIGQUIT handler: {e}");
    }
}

/// Go's `SIGQUIT`: every goroutine of every registered runtime to stderr,
/// then exit status 2.
fn sigquit_dump() {
    let scheds: Vec<Arc<Sched>> = SIGQUIT_SCHEDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|w| w.upgrade())
        .collect();
    let mut out = String::from("SIGQUIT: quit\n\n");
    for s in &scheds {
        out.push_str(&s.dump());
    }
    eprint!("{out}");
    std::process::exit(2);
}
