//! Looking inside the runtime: the goroutine dump (Go's `traceback` of all
//! goroutines, as printed on a deadlock or `SIGQUIT`) and the
//! `GMP_DEBUG=schedtrace=<ms>[,scheddetail=1]` lines (Go's `schedtrace`).
//!
//! Both only read atomics and take the scheduler's bookkeeping locks
//! briefly (never a P's run queue): taking them cannot hang the runtime.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Once as StdOnce, Weak};

use gmp_g::{GRef, Status};
use gmp_m::M;

use crate::sched::Sched;

/// The `[...]` part of a dump header: status or wait reason, wait time
/// (minutes, only from one minute on, as Go), and `locked to thread`.
fn header(s: &Sched, g: GRef, now: u64) -> String {
    let st = Status::from_raw(g.status.raw());
    let mut h = match st {
        Some(Status::Waiting) => {
            let r = g.wait_reason().as_str();
            if r.is_empty() {
                "waiting".to_string()
            } else {
                r.to_string()
            }
        }
        Some(st) => st.as_str().to_string(),
        None => format!("unknown status {}", g.status.raw()),
    };
    if st == Some(Status::Waiting) {
        let since = g.wait_since.load(Ordering::Relaxed);
        if since != 0 {
            let mins = now.saturating_sub(since) / 60_000_000_000;
            if mins >= 1 {
                let _ = write!(h, ", {mins} minutes");
            }
        }
    }
    if g.lockedm.load(Ordering::Relaxed) != 0 {
        h.push_str(", locked to thread");
    }
    let _ = s;
    h
}

impl Sched {
    /// A Go-style dump of every live goroutine:
    ///
    /// ```text
    /// goroutine 7 [chan receive, 2 minutes]:
    /// created by src/main.rs:12:5 in goroutine 1
    /// ```
    pub fn dump(&self) -> String {
        let now = self.nanotime();
        let gs: Vec<GRef> = self.allgs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut rows: Vec<(u64, String)> = Vec::new();
        for g in gs {
            if g.system.load(Ordering::Relaxed) {
                continue;
            }
            match Status::from_raw(g.status.raw()) {
                Some(Status::Dead) | Some(Status::Idle) => continue,
                _ => {}
            }
            let goid = g.id();
            let mut out = format!("goroutine {goid} [{}]:\n", header(self, g, now));
            match g.created_at() {
                Some(loc) => {
                    let _ = write!(
                        out,
                        "created by {}:{}:{}",
                        loc.file(),
                        loc.line(),
                        loc.column()
                    );
                }
                None => out.push_str("created by ?"),
            }
            let parent = g.parent_goid.load(Ordering::Relaxed);
            if parent != 0 {
                let _ = write!(out, " in goroutine {parent}");
            }
            out.push('\n');
            rows.push((goid, out));
        }
        rows.sort_by_key(|r| r.0);
        let mut out = String::new();
        for (_, r) in rows {
            out.push_str(&r);
            out.push('\n');
        }
        out
    }

    /// One schedtrace report (Go's `schedtrace(detailed)`), as printed every
    /// `schedtrace` ms.
    pub fn schedtrace(&self, detailed: bool) -> String {
        let now_ms = self.nanotime() / 1_000_000;
        let procs = self.gomaxprocs();
        let ms: Vec<Arc<M>> = self.allm.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = format!(
            "SCHED {now_ms}ms: gomaxprocs={procs} idleprocs={} threads={} spinningthreads={} idlethreads={} runqueue={}",
            self.npidle.load(Ordering::SeqCst),
            ms.len(),
            self.nmspinning.load(Ordering::SeqCst),
            self.nmidle.load(Ordering::SeqCst),
            self.runqsize.load(Ordering::SeqCst),
        );
        if detailed {
            let _ = write!(
                out,
                " gcwaiting={} nmidlelocked={} stopwait={} sysmonwait={}",
                self.gcwaiting.load(Ordering::Relaxed),
                self.nmidlelocked.load(Ordering::Relaxed),
                self.stopwait.load(Ordering::Relaxed),
                self.sysmon_wait.load(Ordering::Relaxed),
            );
        } else {
            out.push_str(" [");
            for i in 0..procs {
                let n = self.p(i).map(|p| p.runq_len()).unwrap_or(0);
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{n}");
            }
            out.push(']');
        }
        out.push('\n');
        if !detailed {
            return out;
        }
        let mid = |addr: usize| -> i64 {
            ms.iter()
                .find(|m| Arc::as_ptr(m) as usize == addr)
                .map(|m| m.id as i64)
                .unwrap_or(-1)
        };
        for i in 0..procs {
            let Some(p) = self.p(i) else { continue };
            let _ = writeln!(
                out,
                "  P{i}: status={} schedtick={} syscalltick={} m={} runqsize={} gfreecnt={} timerslen={}",
                p.status() as u32,
                p.schedtick.load(Ordering::Relaxed),
                p.syscalltick.load(Ordering::Relaxed),
                mid(p.m.load(Ordering::Relaxed)),
                p.runq_len(),
                p.gfree_len(),
                p.timers.len(),
            );
        }
        for m in &ms {
            let p = m.p.load(Ordering::Relaxed);
            let pid = if p.is_null() {
                -1
            } else {
                // SAFETY: M::p holds null or a P of this Sched, which lives
                // until the Sched drops.
                unsafe { (*p).id as i64 }
            };
            let curg = m.curg().map(|g| g.id() as i64).unwrap_or(-1);
            let lg = m.lockedg.load(Ordering::Relaxed);
            let lockedg = if lg.is_null() {
                -1
            } else {
                // SAFETY: lockedg holds null or a live G of this Sched (Gs
                // are freed only when the Sched drops).
                unsafe { GRef::from_ptr(lg) }.id() as i64
            };
            let _ = writeln!(
                out,
                "  M{}: p={pid} curg={curg} spinning={} blocked={} lockedg={lockedg}",
                m.id,
                m.spinning.load(Ordering::Relaxed),
                m.blocked.load(Ordering::Relaxed),
            );
        }
        let gs: Vec<GRef> = self.allgs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for g in gs {
            let st = Status::from_raw(g.status.raw());
            if matches!(st, Some(Status::Dead) | Some(Status::Idle)) {
                continue;
            }
            let reason = if st == Some(Status::Waiting) {
                g.wait_reason().as_str()
            } else {
                ""
            };
            let lm = g.lockedm.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "  G{}: status={}({reason}) m={} lockedm={}",
                g.id(),
                g.status.raw(),
                mid(g.m.load(Ordering::Relaxed)),
                if lm == 0 { -1 } else { mid(lm) },
            );
        }
        out
    }
}

/// Starts the `gmp-schedtrace` thread: a report to stderr every
/// `schedtrace_ms` until the scheduler shuts down.
pub(crate) fn start_schedtrace(s: &Arc<Sched>) {
    let ms = s.debug.schedtrace_ms;
    if ms == 0 {
        return;
    }
    let w: Weak<Sched> = Arc::downgrade(s);
    let detailed = s.debug.scheddetail;
    let _ = std::thread::Builder::new()
        .name("gmp-schedtrace".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            let Some(s) = w.upgrade() else { return };
            if s.is_shutdown() {
                return;
            }
            let line = s.schedtrace(detailed);
            drop(s);
            eprint!("{line}");
        });
}

// ---------------------------------------------------------------------------
// SIGQUIT: Go's goroutine dump on `kill -QUIT`.
// ---------------------------------------------------------------------------

/// Runtimes that asked for the `SIGQUIT` dump.
static SIGQUIT_SCHEDS: StdMutex<Vec<Weak<Sched>>> = StdMutex::new(Vec::new());
/// Write end of the self-pipe the signal handler writes to.
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
static INSTALL: StdOnce = StdOnce::new();

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
pub fn register_sigquit(s: &Arc<Sched>) {
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
