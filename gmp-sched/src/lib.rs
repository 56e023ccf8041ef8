//! # gmp-sched: the scheduler
//!
//! ## The problem
//! Run any number of goroutines on `gomaxprocs` Ps and as many Ms as
//! needed, so that (1) every runnable goroutine eventually runs, (2) no
//! CPU sits idle while a runnable goroutine waits, (3) idle threads sleep
//! instead of burning CPU, and (4) the common operations — spawn, ready,
//! park, yield — touch no global lock.
//!
//! ## The mechanism (Go's `proc.go`, function for function)
//! * [`newproc`] takes a dead G from the P's free list (or a new one),
//!   reserves a stack for it, and puts it in the P's `runnext`. The G gets
//!   its stack only when `execute` first runs it (the most recently freed
//!   stack on the running P, still warm in that CPU's cache) and gives it
//!   back at exit, so goroutines queued but not yet started cost no stack
//!   memory (Go's 2 KiB stacks make that cheap for Go; ours are at least a
//!   4 KiB page each once touched).
//! * `schedule` (per M, on the M's own stack) calls `findrunnable`, which
//!   looks in Go's order: the P's timers, the global queue every 61st tick,
//!   `runnext` and the local queue, the global queue, a non-blocking
//!   netpoll, then stealing half of another P's queue (four passes in random
//!   order, timers and `runnext` on the last). Finding nothing, the M gives
//!   up its P and either becomes the one M blocked in netpoll (until the
//!   next timer) or parks on its note.
//! * Spinning Ms (looking for work with a P) are capped at half the busy
//!   Ps; work submitters call `wakep`, which starts a spinning M only if
//!   none spins. The last spinner to find work wakes the next. The
//!   decrement-then-recheck dance in `findrunnable` and the
//!   publish-then-check in `wakep` make lost wake-ups impossible: see
//!   `DESIGN.md` beside this file.
//! * [`gopark`]/[`goready`] are the only way goroutines block and wake: the
//!   park's unlock function runs on the scheduler stack after the G's status
//!   is `Waiting`, so a waker can never ready a G whose context is not saved.
//!   A [`park::Mailbox`] splits `goready` in two so that a waker can hand a
//!   value straight into the parked G (Go's `sudog.elem`).
//! * [`join`] keeps a goroutine's result and joiner inside its G; the G is
//!   recycled when both the goroutine and its handle are done with it.
//! * [`blocking`] is Go's `entersyscall`/`exitsyscall`; the P is retaken by
//!   sysmon through the [`Sysmon`] seam.
//! * [`Sched::set_gomaxprocs`] stops the world and runs `procresize`.
//! * Preemption: a flag checked at runtime entries ([`check_preempt`]) plus
//!   the forced handoff of a P from an M stuck in user code (`preempt.rs`,
//!   argued in `gmp-sysmon/DESIGN.md`).
//! * [`sync`] is Go's `sync.Mutex`/`sync.RWMutex` over the runtime
//!   semaphore (`sema.go`): one atomic when uncontended, Go's `canSpin`
//!   spinning, then a park through [`park`]; the facade's `gmp::sync`
//!   wraps it so that the facade needs no `unsafe`.
//!
//! ## Invariants
//! 1. A P is owned by at most one M: ownership changes only by a CAS on the
//!    P's status or by taking it off the idle list under the scheduler lock.
//! 2. A runnable G is in exactly one run queue (local ring, `runnext`, or
//!    global queue), or in an M's hands between dequeue and execute.
//! 3. While any G is runnable, some M with a P is running or spinning, or
//!    will be woken by the `wakep` of whoever made it runnable.
//! 4. Lock order: scheduler lock, then a P's timer lock. Channel locks are
//!    never held while taking the scheduler lock except through `goready`,
//!    which takes it only for the idle P list.
//!
//! ## Rejected alternatives
//! * tokio-style per-worker parking with a shared "searching" counter and
//!   no P/M split: cannot hand a P to another thread around a blocking call,
//!   which is the whole point of `gmp::blocking` and sysmon's retake.
//! * One lock-free global queue only: every spawn and wake would contend on
//!   it; Go's local rings keep the fast path core-local.

#![warn(missing_docs)]

pub mod deadlock;
pub mod debug;
pub mod join;
pub mod metrics;
pub use metrics::SchedMetrics;
pub mod netpoll;
pub mod park;
pub mod preempt;
pub mod proc;
pub mod sched;
pub mod stw;
pub mod sync;
pub mod syscall;
pub mod sysmon;
pub mod time;
mod tls;
mod trace;

pub use deadlock::{DeadlockError, MainWatch};
pub use proc::{
    check_preempt, current_g, current_sched, gopark, goready, goready_on, gosched, goyield,
    in_goroutine, is_locked_to_thread, local_runq_len, lock_os_thread, newproc, report_panic,
    unlock_os_thread, with_current_sched, SpawnError,
};
pub use sched::{BuildError, Config, Counters, DebugFlags, Sched, DEFAULT_MAX_THREADS, MAX_PROCS};
pub use syscall::blocking;
pub use sysmon::{PSnapshot, Sysmon, SysmonHandle};
