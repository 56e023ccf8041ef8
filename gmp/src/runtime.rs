//! Building and running a runtime.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

use gmp_p::RunQueueFactory;
use gmp_sched::{BuildError, Config, DeadlockError, DebugFlags, Sched, Sysmon};

/// A gmp runtime: Ps, Ms, a sysmon, and the goroutines on them.
/// Dropping it shuts it down (threads joined, stacks unmapped).
pub struct Runtime {
    sched: Arc<Sched>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("procs", &self.sched.gomaxprocs())
            .finish()
    }
}

/// Configures a [`Runtime`]. Explicit settings win over the environment
/// (`GMP_MAXPROCS`, `GMP_STACK_SIZE`, `GMP_DEBUG`), which wins over defaults.
pub struct Builder {
    procs: Option<usize>,
    stack_size: Option<usize>,
    max_threads: usize,
    sysmon: Option<Box<dyn Sysmon>>,
    no_sysmon: bool,
    run_queue: Option<Arc<dyn RunQueueFactory>>,
    debug: Option<DebugFlags>,
    deadlock_fatal: bool,
    sigquit_dump: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("procs", &self.procs)
            .field("stack_size", &self.stack_size)
            .finish()
    }
}

/// The number of CPUs this process may use (affinity and cgroup quota
/// respected), the default for `GMP_MAXPROCS`.
pub fn default_procs() -> usize {
    if let Some(n) = env_usize("GMP_MAXPROCS") {
        if n > 0 {
            return n;
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn env_usize(k: &str) -> Option<usize> {
    std::env::var(k).ok().and_then(|v| v.trim().parse().ok())
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            procs: None,
            stack_size: None,
            max_threads: gmp_sched::DEFAULT_MAX_THREADS,
            sysmon: None,
            no_sysmon: false,
            run_queue: None,
            debug: None,
            deadlock_fatal: true,
            sigquit_dump: true,
        }
    }
}

impl Builder {
    /// Number of Ps (`GOMAXPROCS`). `0` is rejected by [`build`](Self::build).
    pub fn procs(mut self, n: usize) -> Self {
        self.procs = Some(n);
        self
    }
    /// Usable bytes per goroutine stack (default 256 KiB; minimum
    /// [`gmp_stack::MIN_STACK_SIZE`]).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }
    /// Cap on OS threads (Go's `debug.SetMaxThreads`, default 10,000).
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n;
        self
    }
    /// Plugs in a sysmon (default: [`gmp_sysmon::DefaultSysmon`]).
    pub fn sysmon(mut self, s: impl Sysmon) -> Self {
        self.sysmon = Some(Box::new(s));
        self.no_sysmon = false;
        self
    }
    /// Runs without any sysmon: no preemption, no retake of blocking calls.
    pub fn no_sysmon(mut self) -> Self {
        self.sysmon = None;
        self.no_sysmon = true;
        self
    }
    /// Plugs in a per-P run queue (default: Go's 256-slot ring).
    pub fn run_queue(mut self, f: impl RunQueueFactory) -> Self {
        self.run_queue = Some(Arc::new(f));
        self
    }
    /// Debug modes, as in `GMP_DEBUG` (`"migrate=1,randomize=1"`).
    pub fn debug(mut self, spec: &str) -> Self {
        self.debug = Some(DebugFlags::parse(spec));
        self
    }
    /// Whether a deadlock (every goroutine asleep) ends the process with
    /// Go's fatal error (default) or makes `block_on` return an error.
    pub fn deadlock_fatal(mut self, fatal: bool) -> Self {
        self.deadlock_fatal = fatal;
        self
    }
    /// Whether `SIGQUIT` prints a goroutine dump and exits (default: yes).
    pub fn sigquit_dump(mut self, on: bool) -> Self {
        self.sigquit_dump = on;
        self
    }
    /// Builds the runtime.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let procs = self.procs.unwrap_or_else(default_procs);
        let stack_size = self
            .stack_size
            .or_else(|| env_usize("GMP_STACK_SIZE"))
            .unwrap_or(gmp_stack::DEFAULT_STACK_SIZE);
        let debug = self
            .debug
            .unwrap_or_else(|| DebugFlags::parse(&std::env::var("GMP_DEBUG").unwrap_or_default()));
        let sysmon: Option<Box<dyn Sysmon>> = if self.no_sysmon {
            None
        } else {
            Some(
                self.sysmon
                    .unwrap_or_else(|| Box::new(gmp_sysmon::DefaultSysmon::default())),
            )
        };
        let sched = Sched::new(Config {
            procs,
            stack_size,
            max_threads: self.max_threads,
            free_stacks_resident: 4096,
            run_queue: self.run_queue,
            sysmon,
            debug,
            deadlock_fatal: self.deadlock_fatal,
        })?;
        if self.sigquit_dump {
            gmp_sched::debug::register_sigquit(&sched);
        }
        Ok(Runtime { sched })
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }
    /// A runtime with the defaults (and the environment).
    pub fn new() -> Result<Runtime, BuildError> {
        Builder::default().build()
    }

    /// Runs `f` as the main goroutine and blocks the calling thread until it
    /// returns; a panic in it is resumed here. Other goroutines still running
    /// when it returns keep running until the runtime is dropped.
    ///
    /// Panics if called from inside a goroutine (it would block an M), and,
    /// when the runtime was built with `deadlock_fatal(false)`, if every
    /// goroutine falls asleep (with fatal deadlocks, the default, the
    /// process exits with status 2 as in Go).
    #[track_caller]
    pub fn block_on<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self.block_on_at(f, std::panic::Location::caller()) {
            Ok(v) => v,
            Err(e) => panic!("fatal error: {e}"),
        }
    }

    /// Like [`block_on`](Self::block_on), but a deadlock detected while the
    /// main goroutine is parked (runtime built with `deadlock_fatal(false)`)
    /// is returned as an error instead of a panic. The deadlocked
    /// goroutines stay parked until the runtime is dropped.
    #[track_caller]
    pub fn try_block_on<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DeadlockError> {
        self.block_on_at(f, std::panic::Location::caller())
    }

    fn block_on_at<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
        loc: &'static std::panic::Location<'static>,
    ) -> Result<T, DeadlockError> {
        type Slot<T> = Option<Result<std::thread::Result<T>, DeadlockError>>;
        assert!(
            !gmp_sched::in_goroutine(),
            "gmp: block_on called from inside a goroutine; use gmp::go and join instead"
        );
        let slot: Arc<(Mutex<Slot<T>>, Condvar)> = Arc::new((Mutex::new(None), Condvar::new()));
        let slot2 = slot.clone();
        let entry = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let mut s = slot2.0.lock().unwrap_or_else(|e| e.into_inner());
            if s.is_none() {
                *s = Some(Ok(r));
            }
            drop(s);
            slot2.1.notify_all();
        });
        let g = match gmp_sched::newproc(&self.sched, entry, loc) {
            Ok(g) => g,
            Err(e) => panic!("gmp: cannot start the main goroutine: {e}"),
        };
        let slot3 = slot.clone();
        let _watch = self.sched.watch_main(g, move |e| {
            let mut s = slot3.0.lock().unwrap_or_else(|e| e.into_inner());
            if s.is_none() {
                *s = Some(Err(e));
            }
            drop(s);
            slot3.1.notify_all();
        });
        let mut g = slot.0.lock().unwrap_or_else(|e| e.into_inner());
        while g.is_none() {
            g = slot.1.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        match g.take().expect("result present") {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(p)) => resume_unwind(p),
            Err(e) => Err(e),
        }
    }

    /// The scheduler (for the plug-in examples and tests).
    #[doc(hidden)]
    pub fn sched(&self) -> &Arc<Sched> {
        &self.sched
    }

    /// Spawns a goroutine on this runtime from outside it.
    #[track_caller]
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> crate::JoinHandle<T> {
        crate::task::spawn_on(&self.sched, f, std::panic::Location::caller())
            .unwrap_or_else(|e| panic!("gmp: {e}"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.sched.shutdown();
    }
}

/// Runs `f` as the main goroutine of a default runtime and returns its
/// result (Go's `main`). The runtime is shut down afterwards.
#[track_caller]
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("gmp: cannot start the runtime: {e}"));
    rt.block_on(f)
}
