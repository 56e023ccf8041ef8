//! "Current M" for the running thread.
//!
//! A goroutine may resume on another thread after any switch, so nothing
//! here may be cached across one: the accessors are `#[inline(never)]` and
//! fenced, so the compiler re-reads the thread-local after every call that
//! could have switched stacks (generator-rs#79, LLVM#98479).

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, Ordering};

use gmp_m::M;

use crate::sched::Sched;

thread_local! {
    static CUR: Cell<(*const M, *const Sched)> = const { Cell::new((std::ptr::null(), std::ptr::null())) };
}

/// The M and scheduler of the calling thread, if it is an M.
#[inline(never)]
pub(crate) fn current() -> Option<(&'static M, &'static Sched)> {
    compiler_fence(Ordering::SeqCst);
    let (m, s) = CUR.with(|c| c.get());
    compiler_fence(Ordering::SeqCst);
    if m.is_null() {
        None
    } else {
        // SAFETY: set_current stores pointers to an M and a Sched that stay
        // alive while this thread runs as that M (the M thread holds an Arc
        // of both until it clears the slot on exit).
        Some(unsafe { (&*m, &*s) })
    }
}

#[inline(never)]
pub(crate) fn set_current(m: *const M, s: *const Sched) {
    compiler_fence(Ordering::SeqCst);
    CUR.with(|c| c.set((m, s)));
    compiler_fence(Ordering::SeqCst);
}
