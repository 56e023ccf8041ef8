//! # gmp: Go's goroutines for Rust
//!
//! `gmp` is Go's G/M/P runtime rebuilt in Rust: millions of cheap
//! goroutines (stackful coroutines on their own stacks), an M:N
//! work-stealing scheduler, channels with `select!`, timers, a netpoller
//! that parks goroutines instead of threads, blocking calls that don't
//! stall the other goroutines, and preemption of goroutines that hog a CPU.
//!
//! ```
//! let sum: u64 = gmp::run(|| {
//!     let handles: Vec<_> = (0..100u64).map(|i| gmp::go(move || i * 2)).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(sum, 9900);
//! ```
//!
//! ## Layers
//! This crate is the facade: documentation, re-exports and the thin user
//! API. The runtime lives below it, one crate per concept:
//! `gmp-stack` (stacks, context switch) → `gmp-g` (the goroutine) →
//! `gmp-p` (run queues, free lists, timers) → `gmp-m` (threads) →
//! `gmp-sched` (the scheduler) ← `gmp-sysmon` (the monitor).
//!
//! ## Soundness
//! `gmp::go` is a safe function. A goroutine may resume on a different OS
//! thread after any park point (a channel operation, `yield_now`, `sleep`,
//! a lock, `join`), exactly like an `async` task on a multi-threaded
//! executor; the closure is required to be `Send`, so everything it owns may
//! legally move between threads. What user code must not do is hold, across
//! a park point, something whose validity is tied to the *current thread*:
//! a reference obtained from a `thread_local!` (`LOCAL.with(|x| { park
//! here })`), or a `!Send` guard such as `std::sync::MutexGuard` (a std
//! mutex held across a park also blocks other goroutines' threads). The
//! compiler cannot see park points inside a goroutine, so these are rules,
//! not type errors — the same rules a Go programmer follows with
//! `LockOSThread`-dependent state. Use `gmp::lock_os_thread` to pin a
//! goroutine to its thread, and `gmp::sync::Mutex` for locks held across
//! park points.

#![warn(missing_docs)]

pub mod channel;
mod debug;
pub mod net;
mod runtime;
pub mod select;
pub mod sync;
mod task;
pub mod time;

pub use debug::dump;
pub use runtime::{default_procs, run, Builder, Runtime};
pub use task::{go, try_go, JoinHandle};
pub use time::sleep;

pub use channel::{chan, Receiver, Sender};

#[doc(inline)]
pub use gmp_p::{RunQueue, RunQueueFactory};
#[doc(inline)]
pub use gmp_sched::{blocking, BuildError, DeadlockError, SpawnError, Sysmon, SysmonHandle};

/// Re-exports for plug-in authors (custom sysmon or run queue).
pub mod plugin {
    pub use gmp_g::{GRef, Status as GStatus};
    pub use gmp_p::{GoRunQueue, PStatus, RunQueue, RunQueueFactory, LOCAL_QUEUE_CAP};
    pub use gmp_sched::{PSnapshot, Sysmon, SysmonHandle};
    pub use gmp_sysmon::DefaultSysmon;
}

/// Yields the processor, letting other goroutines run. The goroutine goes
/// to the tail of its P's local queue (Go's internal `goyield`; tokio and
/// may yield the same way), which keeps a yield core-local and cheap. It
/// cannot starve anything: the global queue is still checked every 61st
/// schedule and idle Ps steal from this one. For Go's exact
/// `runtime.Gosched` (to the global queue) use [`gosched`].
pub fn yield_now() {
    gmp_sched::check_preempt();
    gmp_sched::goyield();
}

/// Go's `runtime.Gosched`: yields the processor and puts the goroutine on
/// the global run queue, where any P may pick it up.
pub fn gosched() {
    gmp_sched::check_preempt();
    gmp_sched::gosched();
}

/// The number of live goroutines in the current runtime (0 outside one).
pub fn num_goroutine() -> usize {
    gmp_sched::with_current_sched(|s| s.num_goroutine()).unwrap_or(0)
}

/// The number of Ps of the current runtime (outside one: what a new
/// runtime would get from `GMP_MAXPROCS` or the CPU count).
pub fn gomaxprocs() -> usize {
    gmp_sched::with_current_sched(|s| s.gomaxprocs()).unwrap_or_else(default_procs)
}

/// Resizes the current runtime to `n` Ps (Go's `runtime.GOMAXPROCS(n)`),
/// returning the old value. Stops the world briefly; nothing is lost.
/// `n == 0` only queries. Outside a runtime it returns 0 and does nothing.
pub fn set_gomaxprocs(n: usize) -> usize {
    gmp_sched::with_current_sched(|s| {
        if n == 0 {
            s.gomaxprocs()
        } else {
            s.set_gomaxprocs(n)
        }
    })
    .unwrap_or(0)
}

/// Wires the calling goroutine to its OS thread until
/// [`unlock_os_thread`] (Go's `runtime.LockOSThread`; calls nest).
pub fn lock_os_thread() {
    gmp_sched::lock_os_thread()
}

/// Undoes one [`lock_os_thread`].
pub fn unlock_os_thread() {
    gmp_sched::unlock_os_thread()
}

/// The calling goroutine's id (`None` outside a goroutine).
pub fn goid() -> Option<u64> {
    gmp_sched::current_g().map(|g| g.id())
}

/// Scheduler metrics (see [`metrics`]).
pub use gmp_sched::SchedMetrics as Metrics;

/// A snapshot of the current runtime's metrics (`None` outside a runtime).
pub fn metrics() -> Option<Metrics> {
    gmp_sched::with_current_sched(|s| s.metrics())
}

impl Runtime {
    /// A snapshot of this runtime's metrics.
    pub fn metrics(&self) -> Metrics {
        self.sched().metrics()
    }
}
