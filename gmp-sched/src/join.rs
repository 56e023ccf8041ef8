//! Joining a goroutine: its result and its waiting joiner live inside its
//! G, so spawning a joinable goroutine allocates nothing.
//!
//! [`spawn`] starts a goroutine whose entry closure, after running the
//! user's function, stores the result in the G ([`G::put_result`](gmp_g::G::put_result), in the
//! entry closure's own buffer) and publishes it on the G's join word
//! ([`gmp_g::join`]). The [`Joiner`] (inside the facade's `JoinHandle`)
//! points to that G. The join word's protocol, documented and
//! loom-checked in `gmp-g`, keeps the G off the free lists until both the
//! goroutine has exited and the handle is gone, so the handle's G is always
//! its own goroutine's (no generation check is needed), and it survives
//! the runtime's drop if the handle does.
//!
//! Who owns what: the result slot is the goroutine's until `DONE`, then the
//! handle's (unless the handle was already `RELEASED`: then the goroutine
//! takes the result back and disposes of it). The waiter slot is the
//! handle's until `WAITING`, then the goroutine's, which wakes the waiter
//! exactly once.
//!
//! Rejected: a separate `Arc`'d cell per spawn (the previous design): one
//! `malloc` on the spawning P and one `free` on the exiting one (glibc is
//! slow at cross-thread frees), and three reference-count RMWs.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::Ordering;

use gmp_g::join::{Completed, Release};
use gmp_g::{GRef, WaitReason};

use crate::park::{park, Waiter};
use crate::proc::{gopark, newproc_with, SpawnError};
use crate::sched::Sched;
use crate::tls;

/// A goroutine's result as the handle receives it: `Err` carries a panic.
pub type Outcome<T> = std::thread::Result<T>;

/// Reports on stderr the panic of a goroutine nobody will join (its id, the
/// payload); the runtime goes on.
pub fn report_unjoined(goid: u64, p: &(dyn Any + Send)) {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_string());
    eprintln!("goroutine {goid} panicked: {msg} (nobody joined it; the runtime continues)");
}

/// The reading half of a joinable goroutine: joins, polls or detaches.
/// Dropping it detaches (an unread result is dropped).
pub struct Joiner<T> {
    /// `None` once joined or detached.
    g: Option<GRef>,
    _result: PhantomData<fn() -> T>,
}

// SAFETY: a Joiner only moves its goroutine's result (T: Send) to the
// thread that holds it; the G is shared under the join word's protocol.
unsafe impl<T: Send> Send for Joiner<T> {}
// SAFETY: through `&Joiner` only the join word is read (`is_finished`).
unsafe impl<T: Send> Sync for Joiner<T> {}

impl<T> fmt::Debug for Joiner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Joiner(finished: {})", self.is_finished())
    }
}

/// Starts a goroutine running `f` on `s` (see [`newproc`](crate::newproc))
/// and returns its joiner. A panic in `f` is counted in the scheduler's
/// counters and delivered to the joiner, or reported with
/// [`report_unjoined`] if the joiner is gone by then. The entry closure
/// stored in the G is `f` plus one pointer.
#[inline]
pub fn spawn<T, F>(
    s: &Sched,
    f: F,
    loc: &'static Location<'static>,
) -> Result<Joiner<T>, SpawnError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let g = newproc_with(s, loc, true, move |g: GRef| {
        move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            if r.is_err() {
                if let Some((_, s)) = tls::current() {
                    s.counters.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            complete(g, r);
        }
    })?;
    Ok(Joiner {
        g: Some(g),
        _result: PhantomData,
    })
}

/// The goroutine `g`, at the end of its entry closure, hands `r` over.
#[inline]
fn complete<T: Send>(g: GRef, r: Outcome<T>) {
    // The usual detached goroutine: its handle is gone, nobody will read
    // the result; no store and no RMW.
    if g.join.is_released() {
        if let Err(p) = r {
            report_unjoined(g.id(), &*p);
        }
        return;
    }
    // SAFETY: we are g, inside its entry closure (moved out of the buffer),
    // and the slot is empty: this is the one completion of this life.
    unsafe { g.put_result(r) };
    match g.join.complete() {
        Completed::Stored => {}
        Completed::Wake => {
            // SAFETY: WAITING was set, so the waiter slot is ours; the
            // handle put a word from `into_word` there, taken once here.
            let w = unsafe { Waiter::from_word(g.take_join_waiter()) };
            w.wake();
        }
        Completed::Unheld => {
            // SAFETY: the handle released before DONE: the slot is still
            // ours and holds the Outcome<T> we just stored.
            let r: Outcome<T> = unsafe { g.take_result() };
            if let Err(p) = r {
                report_unjoined(g.id(), &*p);
            }
        }
    }
}

impl<T> Joiner<T> {
    fn g(&self) -> GRef {
        self.g
            .expect("a joiner is used only until joined or detached")
    }

    /// Whether the result is in.
    pub fn is_finished(&self) -> bool {
        self.g.map(|g| g.join.is_done()).unwrap_or(true)
    }

    /// The goroutine's id (0 once joined or detached).
    pub fn id(&self) -> u64 {
        self.g.map(|g| g.id()).unwrap_or(0)
    }

    /// Waits for the result (parking the calling goroutine, or blocking the
    /// calling thread) and takes it. Joins once: panics if called again.
    pub fn join(&mut self) -> Outcome<T> {
        let g = self.g();
        if !g.join.is_done() {
            let w = Waiter::current();
            let is_g = w.goroutine().is_some();
            // SAFETY: before WAITING the waiter slot is ours.
            unsafe { g.set_join_waiter(w.into_word()) };
            if is_g {
                // The goroutine registers only once it is Waiting (in
                // gopark's unlock step, on its M's stack), so the
                // completion's wake always finds it parked. A lost race
                // (DONE already) aborts the park.
                gopark(WaitReason::Join, move |_| g.join.register_waiter());
            } else if g.join.register_waiter() {
                // A thread's wake is a flag: an early wake is not lost.
                park(WaitReason::Join, || {});
            }
            // Woken (the completion took the waiter) or the race was lost
            // (the word is still ours): drop what is left.
            // SAFETY: DONE is set now (woken, or the failed registration saw
            // it), so the completion is done with the waiter slot.
            let left = unsafe { g.take_join_waiter() };
            if left != 0 {
                // SAFETY: our own word from into_word, never handed over.
                drop(unsafe { Waiter::from_word(left) });
            }
        }
        debug_assert!(g.join.is_done());
        // SAFETY: DONE is set (Acquire) and we have not released: the slot
        // is ours and holds the goroutine's Outcome<T>.
        let r = unsafe { g.take_result() };
        self.g = None;
        let rel = g.join.release(true).expect("the result was taken");
        dispose(g, rel);
        r
    }

    /// Gives up on the result. If it is already in (and was not taken by
    /// [`join`](Self::join)), it is returned for the caller to dispose of;
    /// otherwise the goroutine disposes of it.
    pub fn detach(&mut self) -> Option<Outcome<T>> {
        let g = self.g.take()?;
        let mut taken = None;
        let rel = loop {
            match g.join.release(taken.is_some()) {
                Some(rel) => break rel,
                // SAFETY: DONE is set (release's Acquire saw it) and we
                // have not released: the slot is ours, taken once.
                None => taken = Some(unsafe { g.take_result() }),
            }
        };
        dispose(g, rel);
        taken
    }
}

impl<T> Drop for Joiner<T> {
    fn drop(&mut self) {
        drop(self.detach());
    }
}

/// What the handle does with its G after releasing it.
fn dispose(g: GRef, rel: Release) {
    match rel {
        Release::Kept => {}
        Release::Recycle => {
            let gs = g.sched.load(Ordering::Acquire) as *const Sched;
            match tls::current() {
                Some((_, s)) if std::ptr::eq(s, gs) => {
                    // Our M keeps the scheduler alive.
                    g.join.recycled();
                    s.gfree.put(g);
                }
                _ => {
                    // SAFETY: the scheduler's memory is alive: its drop
                    // waits while we hold RECYCLING (JoinWord::orphan), and
                    // the Weak in self_ref keeps the Arc allocation.
                    let sched = unsafe { &*gs }
                        .self_ref
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .upgrade();
                    g.join.recycled();
                    // Without a strong reference the scheduler is being
                    // dropped, and frees the (released) G itself.
                    if let Some(s) = sched {
                        s.gfree.put(g);
                    }
                }
            }
        }
        // SAFETY: the scheduler is gone and left the G to us (ORPHAN); no
        // thread runs it and nothing else refers to it.
        Release::Free => unsafe { g.free() },
    }
}
