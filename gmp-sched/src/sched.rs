//! The scheduler instance (Go's `schedt` plus `allp`/`allm`/`allgs`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_deque::{Injector, Steal};
use gmp_g::GRef;
use gmp_m::{Note, M};
use gmp_p::{GlobalFree, GoRunQueue, LocalQueue, RunQueueFactory, P};
use gmp_stack::StackAllocator;

use crate::netpoll::Netpoll;
use crate::sysmon::Sysmon;

/// Upper bound on `gomaxprocs` (the `allp` table is sized once).
pub const MAX_PROCS: usize = 1024;

/// Default cap on M threads (Go's `maxmcount`).
pub const DEFAULT_MAX_THREADS: usize = 10_000;

/// Debug modes (`GMP_DEBUG=migrate=1,randomize=1`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugFlags {
    /// Force a goroutine to another M at every yield.
    pub migrate: bool,
    /// Random steal victims, random runnext bypass, random yields.
    pub randomize: bool,
    /// Print a schedtrace line every N ms (0 = off).
    pub schedtrace_ms: u64,
    /// With schedtrace, a line per P, M and G.
    pub scheddetail: bool,
    /// `threadslice=<µs>`: the scheduling slice the runtime's threads ask
    /// the kernel for (`None`: [`DEFAULT_THREAD_SLICE_NS`]; 0: the kernel's
    /// own default). See [`gmp_m::request_slice_of`].
    pub thread_slice_us: Option<u64>,
}

/// The timer slack of sysmon and the Ms (see [`gmp_m::set_timer_slack`]):
/// 1 µs instead of Linux's 50 µs, so that sysmon wakes at a slice's end or
/// a timer's deadline, not up to 50 µs after it.
pub const THREAD_TIMER_SLACK_NS: u64 = 1_000;

/// The slice sysmon, and an M woken for a P taken from a hog, ask the
/// kernel for: its floor (0.1 ms), so that they preempt a hog's thread at
/// once instead of waiting for its slice to end.
pub const DEFAULT_THREAD_SLICE_NS: u64 = 100_000;

impl DebugFlags {
    /// The slice, in ns, that runtime threads request (0: kernel default).
    pub fn thread_slice_ns(&self) -> u64 {
        self.thread_slice_us
            .map_or(DEFAULT_THREAD_SLICE_NS, |us| us.saturating_mul(1000))
    }
    /// Parses Go-style `key=value,key=value` (unknown keys are ignored).
    pub fn parse(s: &str) -> DebugFlags {
        let mut d = DebugFlags::default();
        for kv in s.split(',') {
            let mut it = kv.splitn(2, '=');
            let k = it.next().unwrap_or("").trim();
            let v = it.next().unwrap_or("1").trim();
            let on = v != "0" && !v.is_empty();
            match k {
                "migrate" => d.migrate = on,
                "randomize" => d.randomize = on,
                "schedtrace" => d.schedtrace_ms = v.parse().unwrap_or(0),
                "scheddetail" => d.scheddetail = on,
                "threadslice" => d.thread_slice_us = v.parse().ok(),
                _ => {}
            }
        }
        d
    }
}

/// Everything needed to build a scheduler.
pub struct Config {
    /// Number of Ps.
    pub procs: usize,
    /// Usable bytes per goroutine stack.
    pub stack_size: usize,
    /// Cap on M threads.
    pub max_threads: usize,
    /// Stacks kept resident in the global free list.
    pub free_stacks_resident: usize,
    /// The run-queue plug-in (`None`: Go's ring).
    pub run_queue: Option<Arc<dyn RunQueueFactory>>,
    /// The sysmon plug-in (`None`: no sysmon thread).
    pub sysmon: Option<Box<dyn Sysmon>>,
    /// Debug modes.
    pub debug: DebugFlags,
    /// Whether a deadlock ends the process (Go) or is reported to `block_on`.
    pub deadlock_fatal: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("procs", &self.procs)
            .field("stack_size", &self.stack_size)
            .field("max_threads", &self.max_threads)
            .field("debug", &self.debug)
            .finish()
    }
}

/// Why a scheduler could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// `procs(0)`.
    ZeroProcs,
    /// More Ps than [`MAX_PROCS`].
    TooManyProcs(usize),
    /// The stack size is unusable.
    Stack(gmp_stack::StackError),
    /// The netpoller could not be created.
    Netpoll(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroProcs => write!(f, "procs must be at least 1 (got 0)"),
            BuildError::TooManyProcs(n) => {
                write!(f, "procs {n} exceeds the maximum of {MAX_PROCS}")
            }
            BuildError::Stack(e) => write!(f, "{e}"),
            BuildError::Netpoll(e) => write!(f, "cannot create the netpoller: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Scheduler-wide counters (Relaxed: statistics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Ps retaken from blocking calls by sysmon.
    pub syscall_handoffs: AtomicU64,
    /// Preemption requests made.
    pub preempt_requests: AtomicU64,
    /// Goroutines that yielded because of a preemption request.
    pub preemptions: AtomicU64,
    /// Ps taken from an M stuck in user code.
    pub forced_handoffs: AtomicU64,
    /// Preemptions requested by an M's own timer alarm (an overdue timer on
    /// a P whose goroutine never yields).
    pub alarm_preempts: AtomicU64,
    /// Forced hand-offs in which the signal handler gave the P straight to
    /// an idle M (no sysmon retake).
    pub direct_handoffs: AtomicU64,
    /// Goroutines spawned.
    pub spawned: AtomicU64,
    /// Panics caught in goroutines.
    pub panics: AtomicU64,
    /// Ms parked (stopm).
    pub mparks: AtomicU64,
}

pub(crate) struct Locked {
    /// Idle Ps (Go's `sched.pidle`).
    pub(crate) pidle: Vec<&'static P>,
    /// Idle Ms (Go's `sched.midle`).
    pub(crate) midle: Vec<Arc<M>>,
    /// A spinning M found work but no P (Go's `needspinning`).
    pub(crate) needspinning: bool,
}

/// How far the coarse clock may lag the last [`Sched::nanotime`] read
/// before a read republishes it: 16 µs, far below any use of it (wait-since
/// stamps, slice starts) and rare enough that its cache line stays shared.
pub const COARSE_GRANULE_NS: u64 = 16_384;

/// The scheduler: one per runtime.
pub struct Sched {
    pub(crate) allp: Box<[AtomicPtr<P>]>,
    pub(crate) gomaxprocs: AtomicUsize,
    pub(crate) lock: Mutex<Locked>,
    pub(crate) npidle: AtomicUsize,
    pub(crate) nmspinning: AtomicUsize,
    pub(crate) nmidle: AtomicUsize,
    pub(crate) nmidlelocked: AtomicUsize,
    pub(crate) runq: Injector<GRef>,
    pub(crate) runqsize: AtomicUsize,
    pub(crate) gfree: GlobalFree,
    pub(crate) stacks: StackAllocator,
    pub(crate) allgs: Mutex<Vec<GRef>>,
    pub(crate) allm: Mutex<Vec<Arc<M>>>,
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(crate) mnext: AtomicU64,
    pub(crate) max_threads: AtomicUsize,
    pub(crate) thread_limit_reported: AtomicBool,
    /// A spare M is being created ([`crate::proc::ensure_spare_m`]);
    /// cleared when an M parks on the idle list.
    pub(crate) spare_starting: AtomicBool,
    /// The reserve M: one idle M parked outside `midle`, claimed by one
    /// atomic swap, so that the preemption signal handler can hand a P to
    /// it without the scheduler lock (see `preempt::handoff_to_spare_m`).
    /// Counted in `nmidle`. Null when empty. Ms live in `allm` until the
    /// scheduler is dropped, so the pointer never dangles.
    pub(crate) spare_m: AtomicPtr<M>,
    pub(crate) goidgen: AtomicU64,
    pub(crate) main_goid_taken: AtomicBool,
    /// Live goroutines created or exited without a P (the per-P counters
    /// in `PStats` hold the rest; `num_goroutine` sums them).
    pub(crate) ngoroutine: AtomicI64,
    /// Goroutines inside `gmp::blocking`.
    pub(crate) nsyscall: AtomicI64,
    pub(crate) gcwaiting: AtomicBool,
    pub(crate) stopwait: AtomicI64,
    pub(crate) stopnote: Note,
    pub(crate) stw_lock: Mutex<()>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) epoch: Instant,
    pub(crate) coarse: AtomicU64,
    pub(crate) netpoll: Netpoll,
    /// 0 while an M is blocked in netpoll, else the time of the last poll.
    pub(crate) lastpoll: AtomicU64,
    /// When the M blocked in netpoll will wake up (0: none).
    pub(crate) poll_until: AtomicU64,
    pub(crate) run_queue: Option<Arc<dyn RunQueueFactory>>,
    pub(crate) preempts: AtomicBool,
    pub(crate) sysmon_wait: AtomicBool,
    pub(crate) sysmon_note: Note,
    /// A timer that becomes the earliest of its P and is due before this
    /// (runtime-clock ns) wakes sysmon; 0 while sysmon is awake (see
    /// `SysmonHandle::set_timer_horizon`).
    pub(crate) sysmon_horizon: AtomicU64,
    pub(crate) debug: DebugFlags,
    pub(crate) deadlock_fatal: bool,
    /// Scheduler-wide counters.
    pub counters: Counters,
    pub(crate) latency: crate::metrics::Histogram,
    pub(crate) self_ref: Mutex<std::sync::Weak<Sched>>,
    pub(crate) dl: crate::deadlock::DeadlockState,
    pub(crate) tracer: crate::trace::Tracer,
}

impl fmt::Debug for Sched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sched")
            .field("gomaxprocs", &self.gomaxprocs())
            .finish()
    }
}

impl Sched {
    /// Builds a scheduler; Ms are started on demand as work arrives.
    pub fn new(cfg: Config) -> Result<Arc<Sched>, BuildError> {
        if cfg.procs == 0 {
            return Err(BuildError::ZeroProcs);
        }
        if cfg.procs > MAX_PROCS {
            return Err(BuildError::TooManyProcs(cfg.procs));
        }
        let stacks = StackAllocator::new(cfg.stack_size).map_err(BuildError::Stack)?;
        let netpoll = Netpoll::new(cfg.procs).map_err(|e| BuildError::Netpoll(e.to_string()))?;
        let preempts = cfg.sysmon.as_ref().map(|s| s.preempts()).unwrap_or(false);
        let s = Arc::new(Sched {
            allp: (0..MAX_PROCS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            gomaxprocs: AtomicUsize::new(0),
            lock: Mutex::new(Locked {
                pidle: Vec::new(),
                midle: Vec::new(),
                needspinning: false,
            }),
            npidle: AtomicUsize::new(0),
            nmspinning: AtomicUsize::new(0),
            nmidle: AtomicUsize::new(0),
            nmidlelocked: AtomicUsize::new(0),
            runq: Injector::new(),
            runqsize: AtomicUsize::new(0),
            gfree: GlobalFree::new(cfg.free_stacks_resident),
            stacks,
            allgs: Mutex::new(Vec::new()),
            allm: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            mnext: AtomicU64::new(0),
            max_threads: AtomicUsize::new(cfg.max_threads.max(cfg.procs + 1)),
            thread_limit_reported: AtomicBool::new(false),
            spare_starting: AtomicBool::new(false),
            spare_m: AtomicPtr::new(std::ptr::null_mut()),
            goidgen: AtomicU64::new(2),
            main_goid_taken: AtomicBool::new(false),
            ngoroutine: AtomicI64::new(0),
            nsyscall: AtomicI64::new(0),
            gcwaiting: AtomicBool::new(false),
            stopwait: AtomicI64::new(0),
            stopnote: Note::new(),
            stw_lock: Mutex::new(()),
            shutdown: AtomicBool::new(false),
            epoch: Instant::now(),
            coarse: AtomicU64::new(0),
            netpoll,
            lastpoll: AtomicU64::new(1),
            poll_until: AtomicU64::new(0),
            run_queue: cfg.run_queue,
            preempts: AtomicBool::new(preempts),
            sysmon_wait: AtomicBool::new(false),
            sysmon_note: Note::new(),
            sysmon_horizon: AtomicU64::new(0),
            debug: cfg.debug,
            deadlock_fatal: cfg.deadlock_fatal,
            counters: Counters::default(),
            latency: crate::metrics::Histogram::default(),
            self_ref: Mutex::new(std::sync::Weak::new()),
            dl: Default::default(),
            tracer: crate::trace::Tracer::from_env(),
        });
        *s.self_ref.lock().unwrap() = Arc::downgrade(&s);
        // Ps start Gcstop; procresize makes them idle (Go's schedinit).
        {
            let _w = s.stw_lock.lock().unwrap();
            s.procresize(cfg.procs);
        }
        if let Some(sm) = cfg.sysmon {
            let h = crate::sysmon::SysmonHandle::new(s.clone());
            let slice_ns = s.debug.thread_slice_ns();
            let t = std::thread::Builder::new()
                .name("gmp-sysmon".into())
                .spawn(move || {
                    gmp_m::request_slice_of(0, slice_ns);
                    gmp_m::set_timer_slack(crate::sched::THREAD_TIMER_SLACK_NS);
                    sm.run(h)
                });
            match t {
                Ok(t) => s.threads.lock().unwrap().push(t),
                Err(e) => {
                    tracing::warn!("gmp: cannot start sysmon: {e}; running without preemption");
                    s.preempts.store(false, Ordering::Relaxed);
                }
            }
        }
        if s.debug.schedtrace_ms > 0 {
            crate::debug::start_schedtrace(&s);
        }
        Ok(s)
    }

    pub(crate) fn arc(&self) -> Arc<Sched> {
        self.self_ref
            .lock()
            .unwrap()
            .upgrade()
            .expect("scheduler is alive")
    }

    /// Nanoseconds since the scheduler started (Go's `nanotime`). Also
    /// refreshes the coarse clock when it lags by more than
    /// [`COARSE_GRANULE_NS`].
    #[inline]
    pub fn nanotime(&self) -> u64 {
        let t = self.epoch.elapsed().as_nanos() as u64;
        // Publish only when the coarse clock is more than COARSE_GRANULE_NS
        // behind: every M reads `coarse` on each switch, and a write on
        // every read of the clock kept that cache line bouncing between
        // cores (measured: ~25 % of a yield's cost on 2 cores).
        if t > self.coarse.load(Ordering::Relaxed) + COARSE_GRANULE_NS {
            self.coarse.fetch_max(t, Ordering::Relaxed);
        }
        t
    }

    /// The last clock value anyone read (refreshed by every `nanotime` and
    /// every sysmon tick): for wait-since stamps, where a clock read on
    /// every park would cost more than the park.
    #[inline]
    pub fn coarse_nanotime(&self) -> u64 {
        self.coarse.load(Ordering::Relaxed)
    }

    /// The clock for 1 in 64 calls on this thread, else 0: stamps the
    /// runnable time of a sample of Gs for the latency histogram.
    #[inline]
    pub(crate) fn sample_clock(&self) -> u64 {
        thread_local! {
            static N: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = N.with(|c| {
            let v = c.get().wrapping_add(1);
            c.set(v);
            v
        });
        if n % 64 == 0 {
            self.nanotime().max(1)
        } else {
            0
        }
    }

    /// The number of Ps.
    #[inline]
    pub fn gomaxprocs(&self) -> usize {
        self.gomaxprocs.load(Ordering::Acquire)
    }

    /// P number `i` (must be below the number ever created).
    #[inline]
    pub(crate) fn p(&self, i: usize) -> Option<&'static P> {
        let p = self.allp[i].load(Ordering::Acquire);
        // SAFETY: Ps are allocated once and freed only when the Sched drops;
        // the 'static is a convenience within the Sched's lifetime.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    pub(crate) fn new_p(&self, id: usize) -> &'static P {
        if let Some(p) = self.p(id) {
            return p;
        }
        let q = match &self.run_queue {
            Some(f) => LocalQueue::Custom(f.new_queue(id)),
            None => LocalQueue::Go(GoRunQueue::new()),
        };
        let p = Box::into_raw(Box::new(P::new(id, q)));
        self.allp[id].store(p, Ordering::Release);
        // SAFETY: just allocated; freed only in Drop.
        unsafe { &*p }
    }

    pub(crate) fn locked(&self) -> MutexGuard<'_, Locked> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `g` on the global queue (Go's `globrunqput`).
    #[inline]
    pub(crate) fn globrunqput(&self, g: GRef) {
        self.runq.push(g);
        // SeqCst: part of the publish-then-check-spinning handshake.
        self.runqsize.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes one G from the global queue.
    #[inline]
    pub(crate) fn globrunqget_one(&self) -> Option<GRef> {
        if self.runqsize.load(Ordering::SeqCst) == 0 {
            return None;
        }
        loop {
            match self.runq.steal() {
                Steal::Success(g) => {
                    self.runqsize.fetch_sub(1, Ordering::SeqCst);
                    return Some(g);
                }
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Go's `globrunqget(p, max)`: one G to run plus a batch moved to `p`'s
    /// local queue: n = min(size, size/gomaxprocs + 1, cap/2).
    pub(crate) fn globrunqget(&self, p: &P, max: usize) -> Option<GRef> {
        let size = self.runqsize.load(Ordering::SeqCst);
        if size == 0 {
            return None;
        }
        let procs = self.gomaxprocs().max(1);
        let mut n = size.min(size / procs + 1).min(gmp_p::LOCAL_QUEUE_CAP / 2);
        if max > 0 {
            n = n.min(max);
        }
        let first = self.globrunqget_one()?;
        p.stats.global_takes.fetch_add(1, Ordering::Relaxed);
        for _ in 1..n {
            match self.globrunqget_one() {
                Some(g) => p.runq_put(g, false, &mut |g| self.globrunqput(g)),
                None => break,
            }
        }
        Some(first)
    }

    /// Goroutines alive (user goroutines: running, runnable, waiting).
    pub fn num_goroutine(&self) -> usize {
        let mut n = self.ngoroutine.load(Ordering::Relaxed);
        for i in 0..MAX_PROCS {
            let Some(p) = self.p(i) else { break };
            n += p.stats.spawned.load(Ordering::Relaxed) as i64;
            n -= p.stats.exited.load(Ordering::Relaxed) as i64;
        }
        n.max(0) as usize
    }

    /// Goroutines spawned so far.
    pub(crate) fn metrics_spawned(&self) -> u64 {
        let mut n = self.counters.spawned.load(Ordering::Relaxed);
        for i in 0..MAX_PROCS {
            let Some(p) = self.p(i) else { break };
            n += p.stats.spawned.load(Ordering::Relaxed);
        }
        n
    }

    /// Whether some sysmon preempts goroutines.
    pub fn preempts(&self) -> bool {
        self.preempts.load(Ordering::Relaxed)
    }

    /// The debug flags in force.
    pub fn debug(&self) -> DebugFlags {
        self.debug
    }

    /// Number of Ms created so far.
    pub fn mcount(&self) -> usize {
        self.allm.lock().unwrap().len()
    }

    /// Whether shutdown was requested.
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// The stack allocator.
    pub fn stacks(&self) -> &StackAllocator {
        &self.stacks
    }

    /// Stops every M, joins the threads that can be joined. Goroutines still
    /// parked are abandoned (as Go abandons them when `main` returns).
    pub fn shutdown(&self) {
        if self.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        self.netpoll.wake();
        self.sysmon_note.wakeup();
        self.stopnote.wakeup();
        let ms: Vec<Arc<M>> = self.allm.lock().unwrap().clone();
        for m in &ms {
            m.exit.store(true, Ordering::Release);
            m.note.wakeup();
        }
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().unwrap());
        let me = std::thread::current().id();
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        let mut leaked = false;
        for t in threads {
            if t.thread().id() == me {
                continue;
            }
            // Wait a bounded time: an M stuck in user code (a goroutine in an
            // endless loop or a blocking call) cannot be joined.
            while !t.is_finished() && Instant::now() < deadline {
                self.netpoll.wake();
                for m in &ms {
                    m.note.wakeup();
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                leaked = true;
            }
        }
        crate::trace::flush(self);
        // A goroutine still parked may be listed in a wait queue that
        // outlives the runtime (a channel held by a plain thread, a mutex):
        // a later wake-up from outside would touch its G and this Sched.
        // Keep both alive rather than free them under such a waker; `goready`
        // leaves the Gs of a shut-down scheduler alone.
        let parked = self
            .allgs
            .lock()
            .unwrap()
            .iter()
            .any(|g| g.status.get() == gmp_g::Status::Waiting);
        if leaked || parked {
            // Some M still runs a goroutine, or a parked G may be woken:
            // keep all memory alive forever rather than freeing it under
            // them.
            std::mem::forget(self.arc());
        }
    }
}

impl Drop for Sched {
    fn drop(&mut self) {
        // Every M thread holds an Arc<Sched>, so reaching here means all of
        // them have exited: no stack is in use (gmp-stack invariant 2).
        for g in self.allgs.get_mut().unwrap().drain(..) {
            // A G whose JoinHandle lives on is left to the handle, which
            // frees it when released (gmp_g::join).
            if g.join.orphan() {
                continue;
            }
            // SAFETY: no thread runs any G any more, the allgs list holds
            // the only owning reference, and no handle holds it.
            unsafe { g.free() };
        }
        for slot in self.allp.iter() {
            let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !p.is_null() {
                // SAFETY: allocated by Box::into_raw in new_p; no thread uses
                // it any more.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}
