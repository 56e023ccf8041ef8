//! Deadlock detection (Go's `checkdead`).
//!
//! Go declares a deadlock when no M is running and no goroutine can be woken
//! by a timer or the netpoller. gmp has one more source of wake-ups Go lacks:
//! plain OS threads, which may send on a channel or unlock a
//! `gmp::sync::Mutex` at any time. So gmp is more conservative; it declares a
//! deadlock only when *all* of these hold, under the scheduler lock:
//!
//! * no M is running (every M is idle or parked as a locked M): nobody is in
//!   user code, in a blocking call, in netpoll, or spinning;
//! * no goroutine is runnable, running or in a blocking call, and no run
//!   queue holds anything;
//! * no P has an armed timer and nobody waits on the netpoller;
//! * a *main goroutine* (the one `block_on` runs) is itself parked, so the
//!   thread that called `block_on` is blocked on it and cannot wake anything;
//! * no plain OS thread has been seen using the runtime's objects: a
//!   channel or `WaitGroup` created outside a goroutine, a plain thread
//!   blocked on a gmp object, or a goroutine readied from a plain thread all
//!   call [`note_external_use`], after which a plain thread may legitimately
//!   wake a parked goroutine at any time (Go has no such threads) and
//!   detection stays off for the process;
//! * the above stays true, with no scheduling progress at all, for a grace
//!   period ([`GRACE`]), which absorbs transient states (checked by a
//!   short-lived `gmp-checkdead` thread).
//!
//! Then, as Go, the process prints `fatal error: all goroutines are asleep -
//! deadlock!` and a goroutine dump and exits with status 2 — or, when the
//! runtime was built with `deadlock_fatal(false)`, every `block_on` waiting
//! on a parked main goroutine is told, and returns a [`DeadlockError`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gmp_g::{GRef, Status};

use crate::sched::{Locked, Sched};

/// How long a deadlocked state must last, with no progress, before it is
/// declared.
pub const GRACE: Duration = Duration::from_millis(100);

/// Go's message.
pub const DEADLOCK_MSG: &str = "all goroutines are asleep - deadlock!";

/// Every goroutine is asleep and nothing can wake any of them.
#[derive(Clone, Debug)]
pub struct DeadlockError {
    /// The goroutine dump taken when the deadlock was declared.
    pub dump: String,
}

impl fmt::Display for DeadlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DEADLOCK_MSG}\n\n{}", self.dump)
    }
}

impl std::error::Error for DeadlockError {}

type Notify = Box<dyn Fn(DeadlockError) + Send + Sync>;

struct MainEntry {
    token: u64,
    g: GRef,
    goid: u64,
    notify: Notify,
}

// SAFETY: GRef is an address of a G that lives as long as its Sched (Gs are
// freed only when the Sched drops); we only read its atomics.
unsafe impl Send for MainEntry {}

/// Per-scheduler deadlock-detection state.
#[derive(Default)]
pub(crate) struct DeadlockState {
    mains: Mutex<Vec<MainEntry>>,
    /// A `gmp-checkdead` thread is running.
    pending: AtomicBool,
    next_token: AtomicU64,
}

impl fmt::Debug for DeadlockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlockState")
            .field("pending", &self.pending)
            .finish()
    }
}

/// Registration of a main goroutine; dropping it unregisters.
#[derive(Debug)]
pub struct MainWatch {
    s: Arc<Sched>,
    token: u64,
}

impl Drop for MainWatch {
    fn drop(&mut self) {
        self.s
            .dl
            .mains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| e.token != self.token);
    }
}

impl Sched {
    /// Registers `g` as a main goroutine (one a thread blocks on, as
    /// `block_on` does). `notify` is called, from another thread, if the
    /// runtime is not deadlock-fatal and a deadlock is declared while `g`
    /// is parked.
    pub fn watch_main(
        self: &Arc<Self>,
        g: GRef,
        notify: impl Fn(DeadlockError) + Send + Sync + 'static,
    ) -> MainWatch {
        let token = self.dl.next_token.fetch_add(1, Ordering::Relaxed);
        self.dl
            .mains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(MainEntry {
                token,
                g,
                goid: g.id(),
                notify: Box::new(notify),
            });
        // The main goroutine may have parked before it was registered, with
        // every M already idle: check now.
        {
            let l = self.locked();
            checkdead(self, &l);
        }
        MainWatch {
            s: self.clone(),
            token,
        }
    }

    /// Whether a deadlock makes the process exit (Go's behaviour).
    pub fn deadlock_fatal(&self) -> bool {
        self.deadlock_fatal
    }
}

static EXTERNAL_USE: AtomicBool = AtomicBool::new(false);

/// Records that a plain OS thread (not a goroutine) holds or uses runtime
/// objects, so it may wake goroutines later: deadlock detection is then
/// off for the rest of the process. Cheap (one relaxed load when set).
#[inline]
pub fn note_external_use() {
    if !EXTERNAL_USE.load(Ordering::Relaxed) {
        EXTERNAL_USE.store(true, Ordering::Relaxed);
    }
}

/// Whether [`note_external_use`] was called.
pub fn external_use_seen() -> bool {
    EXTERNAL_USE.load(Ordering::Relaxed)
}

/// The dead state, checked under the scheduler lock.
fn is_dead(s: &Sched, _l: &Locked) -> bool {
    if s.is_shutdown() || s.gcwaiting.load(Ordering::SeqCst) || external_use_seen() {
        return false;
    }
    let nm = s.allm.lock().unwrap_or_else(|e| e.into_inner()).len();
    let idle = s.nmidle.load(Ordering::SeqCst) + s.nmidlelocked.load(Ordering::SeqCst);
    if nm > idle
        || s.runqsize.load(Ordering::SeqCst) != 0
        || s.nsyscall.load(Ordering::SeqCst) > 0
        || s.netpoll.waiters() > 0
    {
        return false;
    }
    for i in 0..crate::sched::MAX_PROCS {
        let Some(p) = s.p(i) else { break };
        if !p.runq_empty() || p.timers.has_armed() {
            return false;
        }
    }
    let main_parked =
        s.dl.mains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|e| e.g.id() == e.goid && e.g.status.get() == Status::Waiting);
    if !main_parked {
        return false;
    }
    let gs = s.allgs.lock().unwrap_or_else(|e| e.into_inner());
    for g in gs.iter() {
        if g.system.load(Ordering::Relaxed) {
            continue;
        }
        match Status::from_raw(g.status.raw()) {
            Some(Status::Waiting) | Some(Status::Dead) | Some(Status::Idle) => {}
            _ => return false,
        }
    }
    true
}

/// Everything that moves when anything at all is scheduled.
fn progress(s: &Sched) -> (u64, u64, u64) {
    let mut ticks = 0u64;
    for i in 0..crate::sched::MAX_PROCS {
        let Some(p) = s.p(i) else { break };
        ticks += p.schedtick.load(Ordering::Relaxed) as u64;
        ticks += p.syscalltick.load(Ordering::Relaxed) as u64;
    }
    (
        s.counters.mparks.load(Ordering::Relaxed),
        s.metrics_spawned(),
        ticks,
    )
}

/// Go's `checkdead`, called with the scheduler lock held when an M goes idle.
pub(crate) fn checkdead(s: &Sched, l: &Locked) {
    if !is_dead(s, l) || s.dl.pending.swap(true, Ordering::AcqRel) {
        return;
    }
    let arc = s.arc();
    let r = std::thread::Builder::new()
        .name("gmp-checkdead".into())
        .spawn(move || confirm(arc));
    if r.is_err() {
        s.dl.pending.store(false, Ordering::Release);
    }
}

/// The `gmp-checkdead` thread: declares the deadlock once it has lasted
/// [`GRACE`] with no progress.
fn confirm(s: Arc<Sched>) {
    let mut last = None;
    loop {
        {
            let l = s.locked();
            if !is_dead(&s, &l) {
                // Cleared under the lock: a later checkdead starts anew.
                s.dl.pending.store(false, Ordering::Release);
                return;
            }
            let now = progress(&s);
            if last == Some(now) {
                break;
            }
            last = Some(now);
        }
        std::thread::sleep(GRACE);
    }
    declare(&s);
}

fn declare(s: &Sched) {
    let dump = s.dump();
    if s.deadlock_fatal {
        eprintln!("fatal error: {DEADLOCK_MSG}\n\n{dump}");
        std::process::exit(2);
    }
    tracing::error!(target: "gmp::sched", "{DEADLOCK_MSG}");
    let parked: Vec<MainEntry> = {
        let mut m = s.dl.mains.lock().unwrap_or_else(|e| e.into_inner());
        let (parked, rest): (Vec<_>, Vec<_>) = m
            .drain(..)
            .partition(|e| e.g.id() == e.goid && e.g.status.get() == Status::Waiting);
        *m = rest;
        parked
    };
    // Cleared under the scheduler lock, before anyone is told: the next
    // deadlock (possibly right after `block_on` returns) starts a new check.
    {
        let _l = s.locked();
        s.dl.pending.store(false, Ordering::Release);
    }
    for e in parked {
        (e.notify)(DeadlockError { dump: dump.clone() });
    }
}
