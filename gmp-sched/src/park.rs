//! One waiting primitive for goroutines and plain threads alike.
//!
//! Channel and sync code registers a [`Waiter`] in its wait queue under its
//! own lock, then calls [`park`] with a closure that releases that lock. A
//! goroutine parks through `gopark` (its M goes on running others); a plain
//! OS thread blocks on its own parker. The waker removes the waiter from the
//! queue under the same lock and calls [`Waiter::wake`] after releasing it.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use gmp_g::{GRef, Status, WaitReason};

use crate::proc::{current_g, gopark, goready, queue_readied};

/// A blocked thread's parker.
#[derive(Default)]
pub struct ThreadParker {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl fmt::Debug for ThreadParker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadParker")
    }
}

thread_local! {
    static PARKER: Arc<ThreadParker> = Arc::new(ThreadParker::default());
}

/// The calling goroutine if it may park: a goroutine inside
/// `gmp::blocking` has given up its P and blocks like a plain thread.
fn parkable_g() -> Option<GRef> {
    current_g().filter(|g| g.status.get() == gmp_g::Status::Running)
}

/// Who is waiting: a goroutine or an OS thread.
#[derive(Clone)]
pub enum Waiter {
    /// A parked goroutine.
    G(GRef),
    /// A blocked OS thread.
    Thread(Arc<ThreadParker>),
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiter::G(g) => write!(f, "Waiter({g:?})"),
            Waiter::Thread(_) => write!(f, "Waiter(thread)"),
        }
    }
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (Waiter::G(a), Waiter::G(b)) => a == b,
            (Waiter::Thread(a), Waiter::Thread(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Waiter {
    /// The caller as a waiter.
    pub fn current() -> Waiter {
        match parkable_g() {
            Some(g) => Waiter::G(g),
            None => {
                crate::deadlock::note_external_use();
                Waiter::Thread(PARKER.with(|p| p.clone()))
            }
        }
    }
    /// Wakes the waiter. Call exactly once per [`park`], after removing the
    /// waiter from the queue it was registered in.
    pub fn wake(self) {
        match self {
            Waiter::G(g) => goready(g),
            Waiter::Thread(t) => {
                *t.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
                t.cv.notify_one();
            }
        }
    }
    /// The waiter as one word, for a slot inside a G (see
    /// [`G::set_join_waiter`](gmp_g::G::set_join_waiter)); never 0. A
    /// thread's parker reference moves into the word.
    pub fn into_word(self) -> usize {
        match self {
            // A G is 8-aligned: bit 0 is clear.
            Waiter::G(g) => g.as_ptr() as usize,
            // A ThreadParker holds a Mutex and a Condvar (4-aligned at
            // least): bit 0 of its address is clear, so it tags a thread.
            Waiter::Thread(t) => Arc::into_raw(t) as usize | 1,
        }
    }

    /// Rebuilds a waiter from [`Waiter::into_word`].
    ///
    /// # Safety
    /// `w` came from `into_word` and is turned back into a waiter once.
    pub unsafe fn from_word(w: usize) -> Waiter {
        debug_assert!(w != 0);
        if w & 1 == 0 {
            // SAFETY: per the contract, an untagged word is a live G pointer.
            Waiter::G(unsafe { GRef::from_ptr(w as *mut gmp_g::G) })
        } else {
            // SAFETY: per the contract, a tagged word is Arc::into_raw of a
            // ThreadParker whose reference we take back once.
            Waiter::Thread(unsafe { Arc::from_raw((w & !1) as *const ThreadParker) })
        }
    }

    /// The goroutine, if the waiter is one.
    pub fn goroutine(&self) -> Option<GRef> {
        match self {
            Waiter::G(g) => Some(*g),
            Waiter::Thread(_) => None,
        }
    }
}

/// Blocks the caller (registered as [`Waiter::current`]) until woken.
/// `unlock` runs once the caller is committed to sleeping; it must release
/// the lock that guards the queue holding the waiter.
pub fn park<F: FnOnce()>(reason: WaitReason, unlock: F) {
    if parkable_g().is_some() {
        gopark(reason, move |_g| {
            unlock();
            true
        });
    } else {
        let t = PARKER.with(|p| p.clone());
        unlock();
        let mut w = t.woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*w {
            w = t.cv.wait(w).unwrap_or_else(|e| e.into_inner());
        }
        *w = false;
    }
}

/// Like [`park`] for a plain thread, with a deadline: returns false on
/// timeout. The caller must then remove itself from the queue under its
/// lock; if it is no longer there, a wake is in flight and the caller must
/// call [`consume_thread_wake`].
pub fn park_thread_timeout<F: FnOnce()>(unlock: F, deadline: Instant) -> bool {
    let t = PARKER.with(|p| p.clone());
    unlock();
    let mut w = t.woken.lock().unwrap_or_else(|e| e.into_inner());
    while !*w {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        w =
            t.cv.wait_timeout(w, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
    }
    *w = false;
    true
}

/// Waits for (and consumes) a wake that is known to be in flight.
pub fn consume_thread_wake() {
    let t = PARKER.with(|p| p.clone());
    let mut w = t.woken.lock().unwrap_or_else(|e| e.into_inner());
    while !*w {
        w =
            t.cv.wait_timeout(w, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
    }
    *w = false;
}

// ---------------------------------------------------------------------------
// Mailboxes: a value handed straight to a parked goroutine.
// ---------------------------------------------------------------------------

/// `g.param` of a goroutine whose mailbox `seq` got a value: `seq << 1`;
/// `seq << 1 | 1` means "closed" (no value). 0: nothing yet.
const MAIL_CLOSED: usize = 1;
// The tag holds a 63-bit sequence number, which never wraps.
const _: () = assert!(usize::BITS == 64, "mailbox tags need a 64-bit param word");

/// A parked goroutine's slot for one value handed to it by its waker (Go's
/// `sudog.elem`, which the sender fills while the receiver sleeps), so the
/// woken goroutine need not take the channel lock again to collect it.
///
/// The value travels in the G's entry-closure buffer (free while the
/// goroutine runs), the "it came" signal in `g.param`. Soundness does not
/// rest on callers: a [`Delivery`] writes only after winning the G's
/// `Waiting -> Runnable` CAS (the goroutine cannot run, so nobody else
/// touches the buffer) and only if the G's `mail_seq` is still its
/// mailbox's (a G never reuses a sequence number, so a stale delivery can
/// never reach a later mailbox, and the types always match); the mailbox
/// reads only a value tagged with its own sequence number.
#[derive(Debug)]
pub struct Mailbox<T> {
    g: GRef,
    seq: u64,
    /// Not Send: only the goroutine itself takes its mail.
    _t: PhantomData<*const T>,
}

/// The waker's half of a [`Mailbox`]: delivers one value (or "closed").
#[derive(Debug)]
pub struct Delivery<T> {
    g: GRef,
    seq: u64,
    _t: PhantomData<fn(T)>,
}

// SAFETY: a Delivery moves a T (Send) to the goroutine; the G is Sync.
unsafe impl<T: Send> Send for Delivery<T> {}

/// What a goroutine found in its mailbox after waking.
#[derive(Debug, PartialEq, Eq)]
pub enum Mail<T> {
    /// A value was delivered.
    Value(T),
    /// The waker had no value for it (the channel closed).
    Closed,
    /// Nothing: the goroutine was woken by someone else.
    Empty,
}

/// A goroutine moved `Waiting -> Runnable` by a [`Delivery`], not yet
/// queued: [`Ready::wake`] queues it (after the caller dropped its locks).
/// Dropping it queues it too, so it is never lost.
#[derive(Debug)]
pub struct Ready(Option<GRef>);

/// Whom an operation must wake once it has dropped its locks: a waiter, or
/// a goroutine a [`Delivery`] already made runnable (only to be queued).
#[derive(Debug)]
pub enum Wake {
    /// Wake this waiter ([`Waiter::wake`]).
    Waiter(Waiter),
    /// Queue this readied goroutine ([`Ready::wake`]).
    Ready(Ready),
}

impl Wake {
    /// Wakes or queues.
    #[inline]
    pub fn wake(self) {
        match self {
            Wake::Waiter(w) => w.wake(),
            Wake::Ready(r) => r.wake(),
        }
    }
}

impl Ready {
    /// Queues the goroutine, as [`goready`] does.
    pub fn wake(mut self) {
        if let Some(g) = self.0.take() {
            queue_readied(g);
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            queue_readied(g);
        }
    }
}

impl<T> Mailbox<T> {
    /// Arms a mailbox for the calling goroutine, with its delivery half.
    /// `None` outside a goroutine that may park, or if a `T` does not fit
    /// inside the G (the caller then uses its locked path).
    #[inline]
    pub fn arm() -> Option<(Mailbox<T>, Delivery<T>)> {
        if std::mem::size_of::<T>() > gmp_g::ENTRY_INLINE || std::mem::align_of::<T>() > 8 {
            return None;
        }
        let g = parkable_g()?;
        // Only the goroutine itself writes its mail_seq.
        let seq = g.mail_seq.load(Ordering::Relaxed) + 1;
        g.mail_seq.store(seq, Ordering::Relaxed);
        g.param.store(0, Ordering::Relaxed);
        Some((
            Mailbox {
                g,
                seq,
                _t: PhantomData,
            },
            Delivery {
                g,
                seq,
                _t: PhantomData,
            },
        ))
    }

    /// After waking: the value delivered to this mailbox, if any.
    #[inline]
    pub fn take(self) -> Mail<T> {
        // Acquire: pairs with the delivery's Release store (and the
        // status CAS and run-queue hand-off after it).
        let p = self.g.param.load(Ordering::Acquire);
        if p >> 1 != self.seq as usize || p == 0 {
            return Mail::Empty;
        }
        self.g.param.store(0, Ordering::Relaxed);
        if p & MAIL_CLOSED != 0 {
            return Mail::Closed;
        }
        // SAFETY: the tag carries our sequence number, so the Delivery
        // made with this mailbox (the only one with this number, for this
        // T) stored a T while we were parked and then resumed us; we take
        // it once (the tag is cleared).
        Mail::Value(unsafe { self.g.take_mail::<T>() })
    }
}

impl<T> Delivery<T> {
    /// Wins the right to resume the goroutine if it is still parked on
    /// this mailbox.
    #[inline]
    fn claim(&self) -> bool {
        // The sequence check first (a plain load: only the goroutine
        // writes it, while running), then the CAS that stops it from
        // running. A stale delivery (the goroutine moved on) fails one of
        // the two and touches nothing.
        self.g.mail_seq.load(Ordering::Relaxed) == self.seq
            && self.g.status.cas(Status::Waiting, Status::Runnable).is_ok()
    }

    /// Hands `v` to the parked goroutine. `Err(v)` if it is no longer
    /// parked on this mailbox (the caller tries its next waiter). On
    /// success, queue the goroutine with [`Ready::wake`] after unlocking.
    #[inline]
    pub fn deliver(self, v: T) -> Result<Ready, T> {
        if !self.claim() {
            return Err(v);
        }
        // Re-check after the CAS: the sequence cannot change now (the
        // goroutine cannot run), so a match means it is parked on our
        // mailbox, not on a later one that reused no number.
        if self.g.mail_seq.load(Ordering::Relaxed) != self.seq {
            // Only if someone else woke it meanwhile (a misuse of
            // goready): it parked again elsewhere, and we woke it.
            drop(Ready(Some(self.g)));
            return Err(v);
        }
        // SAFETY: (1) we won Waiting -> Runnable and have not queued the
        // G, so it does not run and nobody else may resume it; it has been
        // running since it armed the mailbox, so its entry closure was
        // moved out; (2) its mailbox (same sequence) reads the buffer only
        // after it resumes; (3) T: Send is required to use the mailbox
        // across threads (Delivery is Send only then).
        unsafe { self.g.put_mail(v) };
        // Release: publishes the value to the mailbox's Acquire load.
        self.g
            .param
            .store((self.seq as usize) << 1, Ordering::Release);
        Ok(Ready(Some(self.g)))
    }

    /// Tells the parked goroutine there is no value (the channel closed).
    /// `None` if it is no longer parked on this mailbox.
    pub fn close(self) -> Option<Ready> {
        if !self.claim() {
            return None;
        }
        if self.g.mail_seq.load(Ordering::Relaxed) == self.seq {
            // Release: as in deliver.
            self.g
                .param
                .store((self.seq as usize) << 1 | MAIL_CLOSED, Ordering::Release);
        }
        Some(Ready(Some(self.g)))
    }
}
