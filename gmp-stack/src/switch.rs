//! The context switch: a thin, documented wrapper over the `context` crate.
//!
//! A [`Context`] is a suspended execution: the saved registers at the top of
//! some stack. [`Context::resume`] suspends the caller, resumes the target
//! and, when somebody later resumes the caller, returns a [`Transfer`] naming
//! who did and the word they passed. The scheduler (g0, on the M's thread
//! stack) resumes a goroutine with `resume`, and the goroutine resumes g0
//! back the same way: every switch is g0 -> G or G -> g0, as in Go.

pub use context::Transfer;

use crate::Stack;

/// The entry function of a new goroutine context. It receives the first
/// [`Transfer`] (the scheduler's context and its data word) and must never
/// return or unwind.
pub type EntryFn = extern "C" fn(Transfer) -> !;

/// A suspended execution context.
#[derive(Debug)]
pub struct Context(context::Context);

impl Context {
    /// Prepares `stack` to run `entry` on the first [`resume`](Self::resume).
    ///
    /// # Safety
    /// 1. `stack` must stay mapped, and used by no other context, for as long
    ///    as the returned context (or any context derived from it by
    ///    resuming) may be resumed.
    /// 2. `entry` must never return and must not let a panic unwind out of it
    ///    (catch every panic inside): unwinding through the `extern "C"`
    ///    frame aborts the process.
    pub unsafe fn new(stack: &Stack, entry: EntryFn) -> Context {
        // SAFETY: top/bottom describe a mapped, unused stack (caller's point 1).
        let st =
            unsafe { context::stack::Stack::new(stack.top() as *mut _, stack.bottom() as *mut _) };
        // SAFETY: the context crate only reads the addresses; entry obeys
        // the contract (caller's point 2).
        Context(unsafe { context::Context::new(&st, entry) })
    }

    /// Suspends the current execution and resumes `self`, passing `data`.
    ///
    /// # Safety
    /// 1. `self` must be a context that was suspended (or freshly made) and
    ///    not resumed since: a context is resumed at most once.
    /// 2. Nothing the caller holds may be invalidated by the other context
    ///    running in between (the usual coroutine rule: no thread-local
    ///    reference held across the call, since the caller may come back on
    ///    another thread).
    #[inline(always)]
    pub unsafe fn resume(self, data: usize) -> (Context, usize) {
        // SAFETY: per the contract above.
        let t = unsafe { self.0.resume(data) };
        (Context(t.context), t.data)
    }

    /// Asks the CPU to fetch the top of the suspended stack — the saved
    /// register record and the innermost frames, which a resume reads and
    /// returns through first — so that those cache misses overlap with the
    /// scheduler's work before [`resume`](Self::resume). A hint only: it
    /// changes no state and never faults.
    #[inline(always)]
    pub fn prefetch(&self) {
        // SAFETY: context::Context is `#[repr(C)] struct Context(&'static
        // c_void)`: exactly one pointer, so copying it out as a usize reads
        // that pointer (the suspended stack pointer) and nothing else.
        let sp: usize = unsafe { std::mem::transmute_copy(&self.0) };
        crate::prefetch_write_3_lines(sp as *const u8);
    }

    /// Wraps a raw context received as a [`Transfer`] in an entry function.
    pub fn from_transfer(t: Transfer) -> (Context, usize) {
        (Context(t.context), t.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StackAllocator;

    extern "C" fn entry(t: Transfer) -> ! {
        let (mut back, mut data) = Context::from_transfer(t);
        loop {
            // SAFETY: `back` is the context that just resumed us.
            let (b, d) = unsafe { back.resume(data * 2) };
            back = b;
            data = d;
        }
    }

    #[test]
    fn ping_pong_between_contexts() {
        let a = StackAllocator::new(64 * 1024).unwrap();
        let s = a.alloc().unwrap();
        // SAFETY: fresh stack used only by this context; entry never returns.
        let mut c = unsafe { Context::new(&s, entry) };
        for i in 1..100usize {
            // SAFETY: c was suspended by the coroutine's last resume.
            let (nc, v) = unsafe { c.resume(i) };
            assert_eq!(v, i * 2);
            c = nc;
        }
        // The coroutine stays suspended forever; its stack is unmapped with
        // the allocator (nothing on it needs dropping).
    }
}
