//! Deadlock detection (Go's `checkdead`) and the "all done" hook.

use crate::sched::{Locked, Sched};

/// Go's `checkdead`, called with the scheduler lock held when an M goes idle.
pub(crate) fn checkdead(_s: &Sched, _l: &Locked) {}

/// Called when the last goroutine exits.
pub(crate) fn all_done(_s: &Sched) {}
