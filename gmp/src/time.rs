//! Time: sleeping goroutines (timer channels arrive with the timers issue).

use std::time::Duration;

/// Parks the calling goroutine for at least `d` (Go's `time.Sleep`).
/// Outside a goroutine it sleeps the calling thread.
pub fn sleep(d: Duration) {
    gmp_sched::time::sleep(d)
}
