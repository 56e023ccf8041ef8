//! Channels: Go's `chan T` with crossbeam-channel's API shape.
//!
//! ```
//! let total: u64 = gmp::run(|| {
//!     let (tx, rx) = gmp::chan::<u64>(16);
//!     for w in 0..4u64 {
//!         let tx = tx.clone();
//!         gmp::go(move || {
//!             for i in 0..100 {
//!                 tx.send(w * 100 + i).unwrap();
//!             }
//!         });
//!     }
//!     drop(tx); // the channel closes when the last sender is gone
//!     rx.iter().sum()
//! });
//! assert_eq!(total, (0..400).sum());
//! ```
//!
//! # Semantics
//! * [`chan(cap)`](chan) / [`bounded`]: `cap == 0` is an unbuffered
//!   rendezvous, otherwise a FIFO buffer of `cap` values. [`unbounded`]
//!   never blocks senders.
//! * Both ends are `Clone` (many senders, many receivers). The channel
//!   closes on [`Sender::close`] / [`Receiver::close`] (a second close is a
//!   no-op that returns `false`), when the last [`Sender`] is dropped, or
//!   when the last [`Receiver`] is dropped (nobody could ever receive).
//! * After close, receivers drain the buffered values, then get
//!   [`RecvError`]; senders get their value back in [`SendError`]
//!   (Go panics here; Rust returns it). A sender or receiver blocked at the
//!   moment of close is released the same way.
//! * Every operation works from a goroutine (which parks; its M runs other
//!   goroutines) and from a plain OS thread (which blocks), so code outside
//!   the runtime can feed goroutines and vice versa.
//! * [`never()`] is a receiver that is never ready: Go's nil channel, for
//!   switching off a [`select!`](crate::select!) case.
//!
//! # Design (Go's `hchan`, `chansend`, `chanrecv`, `closechan`)
//! One `parking_lot::Mutex` per channel guards the whole state (its
//! adaptive spinning halved the contended fan-in cost against std's mutex:
//! ~200 vs ~430 ns/msg with 1,000 producers on 2 Ps), taken after Go's
//! `lock2` active spin when contended (4 x 30 pauses; parking_lot alone
//! yields the thread after ~14 pauses, which cost fan-in another ~40 %;
//! a blocking send spins longer, leaving the lock to the receiver, see
//! `Chan::lock_patient`): a
//! `VecDeque` ring for the buffer, the closed flag, `recvq` and `sendq`
//! (FIFO queues of parked operations, each entry with a per-channel id so
//! that a select can later find and remove its own entries) and a short
//! list of completions.
//!
//! * **Fast paths** take the lock once: a send that finds a parked receiver
//!   hands the value straight over (the receiver never touches the buffer,
//!   as in Go); otherwise it appends to the buffer if there is room. A
//!   receive pops the buffer, and if senders are parked on a full buffer it
//!   moves the first one's value to the tail, so FIFO order holds even with
//!   blocked senders; on an unbuffered channel it takes the value straight
//!   from a parked sender.
//! * **Blocking**: the operation appends an entry to its queue and calls
//!   [`gmp_sched::park::park`] with a closure that drops the lock guard; for
//!   a goroutine that closure runs on the scheduler stack after the
//!   goroutine's status is `Waiting` (`gopark`), so a waker can never
//!   `goready` a goroutine that is still running.
//! * **Waking**: the counterpart pops the entry under the lock, performs the
//!   transfer, records the outcome as a completion keyed by the entry id,
//!   unlocks, and only then wakes the waiter (Go's rule: no status change
//!   under a channel lock). A woken goroutine lands in the waker's
//!   `runnext`, as in Go. The woken operation re-takes the lock once to
//!   collect its completion (a value, "sent", or "closed") — except a
//!   goroutine sender whose value was taken, which is told through its
//!   `g.param` (Go's `gp.param`), and a plain goroutine receiver, whose
//!   sender (or closer) hands the value over through a
//!   `Mailbox` in the receiver's G (Go's
//!   `sudog.elem`): both return without touching the lock. The mailbox's
//!   delivery wins the receiver's `Waiting -> Runnable` CAS under the lock
//!   and only queues it after the unlock. Values that do not fit in the G
//!   (over 48 bytes) take the locked path.
//! * **Lock-free fast fails** (Go's `empty`/`full` checks): every unlock
//!   publishes the buffer length, the queue lengths and the closed flag to
//!   atomics, so a `try_recv` on an empty open channel or a `try_send` on a
//!   full one returns without locking; `len` and `is_closed` read them too.
//!   The loads are ordered as in Go (empty, then not closed), and closing is
//!   permanent, so a fast "empty" answer was true at the first load.
//! * **No loss, no duplicate**: a value is always owned by exactly one place
//!   — the sender, the buffer, a queued send entry, a completion, or the
//!   receiver — and it moves between them only under the lock. An entry is
//!   removed from its queue by exactly one party: the waker that claims it,
//!   the closer, or (for a select or timed operation that was not chosen)
//!   the owner's cleanup — or, for a select's losing receive case, whoever
//!   next finds it dead (its claim word already set); see [`mod@crate::select`] for how a select's entries
//!   on several channels are claimed at most once.
//! * No user value is dropped while the lock is held (values are only
//!   moved), so a `Drop` impl that uses the same channel cannot deadlock.
//!
//! Timed operations ([`Receiver::recv_timeout`], [`Sender::send_timeout`])
//! are one-case selects with a deadline; inside a runtime the deadline is a
//! runtime timer (`FnTimer`), on a plain thread a timed park.

mod state;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gmp_g::WaitReason;
use gmp_sched::park::{park, Mail, Mailbox, Waiter, Wake};

use crate::select::{block_forever, park_on};
pub(crate) use state::{Done, SelState, State, Who, PARAM_SENT, TIMEOUT_CASE};

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// A send on a closed channel; carries the value back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// A receive on a closed and empty channel.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct RecvError;

/// Why [`Sender::try_send`] failed; carries the value back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The buffer is full (or, unbuffered, no receiver is waiting).
    Full(T),
    /// The channel is closed.
    Disconnected(T),
}

/// Why [`Receiver::try_recv`] failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// Nothing to receive right now.
    Empty,
    /// The channel is closed and empty.
    Disconnected,
}

/// Why [`Receiver::recv_timeout`] failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time.
    Timeout,
    /// The channel is closed and empty.
    Disconnected,
}

/// Why [`Sender::send_timeout`] failed; carries the value back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// No room and no receiver in time.
    Timeout(T),
    /// The channel is closed.
    Disconnected(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Disconnected(v) => v,
        }
    }
    /// Whether the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
    /// Whether the channel was closed.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TrySendError::Disconnected(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => v,
        }
    }
    /// Whether the send timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }
    /// Whether the channel was closed.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendTimeoutError::Disconnected(_))
    }
}

impl TryRecvError {
    /// Whether the channel was merely empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }
    /// Whether the channel was closed and empty.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryRecvError::Disconnected)
    }
}

impl RecvTimeoutError {
    /// Whether the receive timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
    /// Whether the channel was closed and empty.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Disconnected)
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError { .. }")
    }
}
impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed channel")
    }
}
impl<T> std::error::Error for SendError<T> {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on a closed and empty channel")
    }
}
impl std::error::Error for RecvError {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}
impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Disconnected(_) => f.write_str("sending on a closed channel"),
        }
    }
}
impl<T> std::error::Error for TrySendError<T> {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => f.write_str("receiving on a closed and empty channel"),
        }
    }
}
impl std::error::Error for TryRecvError {}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting on a channel"),
            RecvTimeoutError::Disconnected => {
                f.write_str("receiving on a closed and empty channel")
            }
        }
    }
}
impl std::error::Error for RecvTimeoutError {}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}
impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out sending on a channel"),
            SendTimeoutError::Disconnected(_) => f.write_str("sending on a closed channel"),
        }
    }
}
impl<T> std::error::Error for SendTimeoutError<T> {}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> Self {
        TryRecvError::Disconnected
    }
}
impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> Self {
        RecvTimeoutError::Disconnected
    }
}
impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        TrySendError::Disconnected(e.0)
    }
}
impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        SendTimeoutError::Disconnected(e.0)
    }
}

// ---------------------------------------------------------------------------
// The channel.
// ---------------------------------------------------------------------------

/// The shared channel object (Go's `hchan`).
pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
    pub(crate) cap: usize,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Lock-free mirrors of the state, published by every [`ChanGuard`]
    /// just before it unlocks (Release; the fast paths load with Acquire):
    /// buffered values, parked senders, parked receivers, closed.
    len: AtomicUsize,
    nsend: AtomicUsize,
    nrecv: AtomicUsize,
    closed: AtomicBool,
}

/// The channel lock held. On drop it publishes the mirrors, then unlocks,
/// so every unlock — including the one in a parking goroutine's `gopark`
/// closure — leaves them exact (`nrecv` counts queued entries, so dead
/// select receive entries make it an over-estimate: its "no receiver"
/// answers stay true).
pub(crate) struct ChanGuard<'a, T> {
    chan: &'a Chan<T>,
    st: MutexGuard<'a, State<T>>,
}

impl<T> Deref for ChanGuard<'_, T> {
    type Target = State<T>;
    #[inline]
    fn deref(&self) -> &State<T> {
        &self.st
    }
}

impl<T> DerefMut for ChanGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut State<T> {
        &mut self.st
    }
}

impl<T> Drop for ChanGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let (nsend, nrecv) = self.st.waiters();
        let c = self.chan;
        // Release: pairs with the Acquire loads of the fast paths. `closed`
        // goes last: a reader that sees a length published after a close
        // also sees the close.
        c.len.store(self.st.buf.len(), Ordering::Release);
        c.nsend.store(nsend, Ordering::Release);
        c.nrecv.store(nrecv, Ordering::Release);
        c.closed.store(self.st.closed, Ordering::Release);
    }
}

impl<T> Chan<T> {
    /// Takes the channel lock. The state is never left inconsistent by a
    /// panic (no user code runs under the lock), so poison is ignored.
    #[inline]
    pub(crate) fn lock(&self) -> ChanGuard<'_, T> {
        self.lock_with(false)
    }

    /// [`Chan::lock`] for a blocking send: when contended it waits
    /// *patiently* (its spin rounds double), leaving the lock to the side
    /// that makes progress. Under fan-in (many senders on a full buffer,
    /// one receiver) every blocking send only queues itself and parks,
    /// while the receiver is the bottleneck; an eager sender on the other
    /// core pulls the lock line over on nearly every receive. Measured on
    /// `fanin` (1,000 x 1,000 messages, 2 Ps, 10 interleaved runs):
    /// 116-386 ms (median 135) before, 68-93 ms (median 85) after, Go 1.19
    /// 118-169 ms (median 142) at the same time. Checking the lock after
    /// every pause instead made it worse (median 216 vs 97 ms): the less
    /// eagerly a waiter grabs a freed lock, the longer the holder keeps
    /// the line in its cache for its next acquisitions.
    #[inline]
    pub(crate) fn lock_patient(&self) -> ChanGuard<'_, T> {
        self.lock_with(true)
    }

    #[inline(always)]
    fn lock_with(&self, patient: bool) -> ChanGuard<'_, T> {
        let st = match self.state.try_lock() {
            Some(st) => st,
            None => self.lock_contended(patient),
        };
        ChanGuard { chan: self, st }
    }

    /// The contended lock: Go's `lock2` active spin first (4 rounds of 30
    /// pause instructions, `active_spin`/`active_spin_cnt`), re-trying
    /// whenever the lock looks free, and only then parking_lot's own slow
    /// path. Channel critical sections are a few dozen ns, so the holder
    /// (running on another P) nearly always lets go within the spin;
    /// parking_lot alone falls back to `sched_yield` after ~14 pauses,
    /// which under fan-in contention was ~150k syscalls per 1M messages.
    /// A `patient` caller (see [`Chan::lock_patient`]) spins 5 rounds of
    /// 30, 60, 120, 240 and 480 pauses instead (about 17 us in all here).
    #[cold]
    #[inline(never)]
    fn lock_contended(&self, patient: bool) -> MutexGuard<'_, State<T>> {
        let (rounds, grow) = if patient { (5, 1) } else { (4, 0) };
        for r in 0..rounds {
            for _ in 0..(30 << (r * grow)) {
                std::hint::spin_loop();
            }
            if !self.state.is_locked() {
                if let Some(st) = self.state.try_lock() {
                    return st;
                }
            }
        }
        self.state.lock()
    }

    /// Go's lock-free `empty(c)` check for a non-blocking receive: nothing
    /// buffered and (unbuffered) no parked sender.
    #[inline]
    fn looks_empty(&self) -> bool {
        if self.cap == 0 {
            self.nsend.load(Ordering::Acquire) == 0
        } else {
            self.len.load(Ordering::Acquire) == 0
        }
    }

    /// Go's lock-free `full(c)` check for a non-blocking send.
    #[inline]
    fn looks_full(&self) -> bool {
        if self.cap == 0 {
            self.nrecv.load(Ordering::Acquire) == 0
        } else {
            self.len.load(Ordering::Acquire) >= self.cap
        }
    }

    /// A lock-free hint that a receive would not block right now: a
    /// buffered value, a parked sender, or a close. Only a hint (the state
    /// may change before the lock is taken); `select!`'s pass 0 uses it to
    /// lock one channel instead of all of them.
    #[inline]
    pub(crate) fn may_recv(&self) -> bool {
        !self.looks_empty() || self.closed.load(Ordering::Acquire)
    }

    /// A lock-free hint that a send would not block right now: room in the
    /// buffer, a parked receiver, or a close.
    #[inline]
    pub(crate) fn may_send(&self) -> bool {
        !self.looks_full() || self.closed.load(Ordering::Acquire)
    }

    fn close(&self) -> bool {
        let (closed, wake) = self.lock().close();
        for w in wake {
            w.wake();
        }
        closed
    }

    /// The address that orders lock acquisition in a select.
    #[inline]
    pub(crate) fn addr(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as *const () as usize
    }
}

#[inline]
pub(crate) fn wake(w: Option<Wake>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// Creates a channel of capacity `cap` (Go's `make(chan T, cap)`); `cap`
/// 0 is an unbuffered rendezvous.
///
/// ```
/// let (tx, rx) = gmp::chan::<&str>(1);
/// tx.send("hi").unwrap();
/// assert_eq!(rx.recv(), Ok("hi"));
/// ```
pub fn chan<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    if !gmp_sched::in_goroutine() {
        // A plain thread may keep an end and use it later: see
        // gmp_sched::deadlock (detection must not fire on it).
        gmp_sched::deadlock::note_external_use();
    }
    let c = Arc::new(Chan {
        state: Mutex::new(State::new(cap)),
        cap,
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        len: AtomicUsize::new(0),
        nsend: AtomicUsize::new(0),
        nrecv: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    (Sender { chan: c.clone() }, Receiver { chan: Some(c) })
}

/// Same as [`chan`] (crossbeam-channel's name).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    chan(cap)
}

/// A channel whose buffer grows without bound: sends never block.
/// [`Sender::cap`] reports `usize::MAX`.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    chan(usize::MAX)
}

/// A receiver that is never ready (Go's nil channel): `recv` blocks
/// forever, `try_recv` is always `Empty`, and a [`select!`](crate::select!)
/// case on it never fires.
///
/// ```
/// use std::time::Duration;
/// let rx = gmp::channel::never::<i32>();
/// let r = gmp::select! {
///     recv(rx) -> _m => "impossible",
///     default(Duration::from_millis(5)) => "timed out",
/// };
/// assert_eq!(r, "timed out");
/// ```
pub fn never<T>() -> Receiver<T> {
    Receiver { chan: None }
}

/// The sending half of a channel. Clone it for more senders; the channel
/// closes when the last one is dropped.
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

/// The receiving half of a channel. Clone it for more receivers (each value
/// goes to exactly one of them).
pub struct Receiver<T> {
    pub(crate) chan: Option<Arc<Chan<T>>>,
}

impl<T> Sender<T> {
    /// Sends `v`, blocking while the channel is full (unbuffered: until a
    /// receiver takes it). `Err` gives the value back if the channel is
    /// closed, or gets closed while the sender waits.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        gmp_sched::check_preempt();
        let chan = &*self.chan;
        let mut st = chan.lock_patient();
        match st.try_send(v, chan.cap) {
            Ok(w) => {
                drop(st);
                wake(w);
                Ok(())
            }
            Err((v, true)) => Err(SendError(v)),
            Err((v, false)) => {
                let w = Waiter::current();
                let me = w.goroutine();
                if let Some(g) = me {
                    g.param.store(0, Ordering::Relaxed);
                }
                let id = st.register_send(Who::Plain(w), v);
                park(WaitReason::ChanSend, move || drop(st));
                // A receiver that took our value said so in g.param (the
                // common case: no need to take the lock again).
                if let Some(g) = me {
                    // Acquire: pairs with the receiver's Release store (the
                    // goready after it also orders it). Only our waker wrote
                    // it, and it is done: a plain store clears it, no
                    // locked swap.
                    if g.param.load(Ordering::Acquire) == PARAM_SENT {
                        g.param.store(0, Ordering::Relaxed);
                        return Ok(());
                    }
                }
                let done = chan.lock().take_done(id);
                match done {
                    Some(Done::Sent) => Ok(()),
                    Some(Done::SendClosed(v)) => Err(SendError(v)),
                    _ => unreachable!("gmp: a woken send has no completion"),
                }
            }
        }
    }

    /// Sends without blocking.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        let chan = &*self.chan;
        // Go's lock-free fast fail: a channel that is open and full at the
        // moment of the second load was full and open then (closing never
        // makes a channel not ready for sending).
        if !chan.closed.load(Ordering::Acquire) && chan.looks_full() {
            return Err(TrySendError::Full(v));
        }
        let mut st = chan.lock();
        match st.try_send(v, chan.cap) {
            Ok(w) => {
                drop(st);
                wake(w);
                Ok(())
            }
            Err((v, true)) => Err(TrySendError::Disconnected(v)),
            Err((v, false)) => Err(TrySendError::Full(v)),
        }
    }

    /// Sends, waiting at most `timeout`.
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.send_deadline(v, d),
            None => self.send(v).map_err(SendTimeoutError::from),
        }
    }

    /// Sends, waiting until `deadline` at the latest.
    pub fn send_deadline(&self, v: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        gmp_sched::check_preempt();
        let chan = &*self.chan;
        let mut st = chan.lock();
        let v = match st.try_send(v, chan.cap) {
            Ok(w) => {
                drop(st);
                wake(w);
                return Ok(());
            }
            Err((v, true)) => return Err(SendTimeoutError::Disconnected(v)),
            Err((v, false)) => v,
        };
        if Instant::now() >= deadline {
            return Err(SendTimeoutError::Timeout(v));
        }
        let sel = Arc::new(SelState::new(Waiter::current()));
        let id = st.register_send(Who::Select(sel.clone(), 0), v);
        drop(st);
        let won = park_on(&sel, Some(deadline), WaitReason::ChanSend);
        let mut st = chan.lock();
        if won == 0 {
            match st.take_done(id) {
                Some(Done::Sent) => Ok(()),
                Some(Done::SendClosed(v)) => Err(SendTimeoutError::Disconnected(v)),
                _ => unreachable!("gmp: a claimed send has no completion"),
            }
        } else {
            let v = st
                .unregister_send(id)
                .expect("gmp: an unclaimed send lost its value");
            Err(SendTimeoutError::Timeout(v))
        }
    }

    /// Closes the channel (Go's `close(c)`). Returns false if it was
    /// already closed (a no-op, not a panic).
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.chan.closed.load(Ordering::Acquire)
    }

    /// Number of buffered values (Go's `len(c)`).
    pub fn len(&self) -> usize {
        self.chan.len.load(Ordering::Acquire)
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer is full (always true when unbuffered).
    pub fn is_full(&self) -> bool {
        self.len() >= self.chan.cap
    }

    /// Capacity (Go's `cap(c)`); `usize::MAX` for [`unbounded`].
    pub fn cap(&self) -> usize {
        self.chan.cap
    }

    /// Whether both handles belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    /// Receives a value, blocking while the channel is empty. Buffered
    /// values are drained first; once the channel is closed and empty,
    /// `Err(RecvError)`.
    pub fn recv(&self) -> Result<T, RecvError> {
        gmp_sched::check_preempt();
        let Some(chan) = &self.chan else {
            block_forever(WaitReason::ChanReceiveNilChan)
        };
        let mut st = chan.lock();
        if let Some((r, w)) = st.try_recv() {
            drop(st);
            wake(w);
            return r;
        }
        // A goroutine gets the value (or the close) straight from its
        // waker, without taking the lock again.
        if let Some((mb, d)) = Mailbox::<T>::arm() {
            st.register_recv_mail(d);
            park(WaitReason::ChanReceive, move || drop(st));
            return match mb.take() {
                Mail::Value(v) => Ok(v),
                Mail::Closed => Err(RecvError),
                Mail::Empty => unreachable!("gmp: a woken receive has no value"),
            };
        }
        let id = st.register_recv(Who::Plain(Waiter::current()));
        park(WaitReason::ChanReceive, move || drop(st));
        let done = chan.lock().take_done(id);
        match done {
            Some(Done::Recv(v)) => Ok(v),
            Some(Done::RecvClosed) => Err(RecvError),
            _ => unreachable!("gmp: a woken receive has no completion"),
        }
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let Some(chan) = &self.chan else {
            return Err(TryRecvError::Empty);
        };
        // Go's lock-free fast fail. Order matters: empty first, then not
        // closed. Closing is permanent, so the channel was empty and open
        // at the moment of the first load.
        if chan.looks_empty() && !chan.closed.load(Ordering::Acquire) {
            return Err(TryRecvError::Empty);
        }
        let mut st = chan.lock();
        match st.try_recv() {
            Some((r, w)) => {
                drop(st);
                wake(w);
                r.map_err(TryRecvError::from)
            }
            None => Err(TryRecvError::Empty),
        }
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.recv_deadline(d),
            None => self.recv().map_err(RecvTimeoutError::from),
        }
    }

    /// Receives, waiting until `deadline` at the latest.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        gmp_sched::check_preempt();
        let Some(chan) = &self.chan else {
            crate::time::sleep(deadline.saturating_duration_since(Instant::now()));
            return Err(RecvTimeoutError::Timeout);
        };
        let mut st = chan.lock();
        if let Some((r, w)) = st.try_recv() {
            drop(st);
            wake(w);
            return r.map_err(RecvTimeoutError::from);
        }
        if Instant::now() >= deadline {
            return Err(RecvTimeoutError::Timeout);
        }
        let sel = Arc::new(SelState::new(Waiter::current()));
        let id = st.register_recv(Who::Select(sel.clone(), 0));
        drop(st);
        let won = park_on(&sel, Some(deadline), WaitReason::ChanReceive);
        let mut st = chan.lock();
        if won == 0 {
            match st.take_done(id) {
                Some(Done::Recv(v)) => Ok(v),
                Some(Done::RecvClosed) => Err(RecvTimeoutError::Disconnected),
                _ => unreachable!("gmp: a claimed receive has no completion"),
            }
        } else {
            st.unregister_recv(id);
            Err(RecvTimeoutError::Timeout)
        }
    }

    /// Closes the channel. Returns false if it was already closed (or this
    /// is a [`never()`] receiver).
    pub fn close(&self) -> bool {
        self.chan.as_ref().is_some_and(|c| c.close())
    }

    /// Whether the channel is closed (false for [`never()`]).
    pub fn is_closed(&self) -> bool {
        self.chan
            .as_ref()
            .is_some_and(|c| c.closed.load(Ordering::Acquire))
    }

    /// Number of buffered values (Go's `len(c)`).
    pub fn len(&self) -> usize {
        self.chan
            .as_ref()
            .map_or(0, |c| c.len.load(Ordering::Acquire))
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity (Go's `cap(c)`; 0 for [`never()`], `usize::MAX` for
    /// [`unbounded`]).
    pub fn cap(&self) -> usize {
        self.chan.as_ref().map_or(0, |c| c.cap)
    }

    /// Whether both handles belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        match (&self.chan, &other.chan) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Blocking iterator: yields until the channel is closed and drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// Non-blocking iterator over what can be received right now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Parked senders and receivers (tests use it to wait until a
    /// goroutine is blocked).
    #[doc(hidden)]
    pub fn waiting(&self) -> (usize, usize) {
        self.chan
            .as_ref()
            .map_or((0, 0), |c| c.lock().live_waiters())
    }

    /// Queue entries, dead select receive entries included (tests use it
    /// to check that those stay bounded).
    #[doc(hidden)]
    pub fn queued(&self) -> (usize, usize) {
        self.chan.as_ref().map_or((0, 0), |c| c.lock().waiters())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last dropper sees every other sender's sends done.
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close();
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        if let Some(c) = &self.chan {
            c.receivers.fetch_add(1, Ordering::Relaxed);
        }
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(c) = &self.chan {
            if c.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
                c.close();
            }
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("cap", &self.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.chan {
            Some(c) => f
                .debug_struct("Receiver")
                .field("cap", &c.cap)
                .finish_non_exhaustive(),
            None => f.write_str("Receiver(never)"),
        }
    }
}

/// Blocking iterator of [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator of [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator (`for v in rx`).
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
