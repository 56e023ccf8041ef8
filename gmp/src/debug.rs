//! Goroutine dumps: [`dump`] and [`Runtime::dump`](crate::Runtime::dump).
//! Go's `SIGQUIT` behaviour (print every goroutine, exit with status 2)
//! lives in `gmp_sched::debug::register_sigquit` (it needs a signal handler).

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
