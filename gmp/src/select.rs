//! `select!`: wait on several channel operations, run exactly one.
//!
//! ```
//! use std::time::Duration;
//! gmp::run(|| {
//!     let (tx1, rx1) = gmp::chan::<i32>(0);
//!     let (tx2, rx2) = gmp::chan::<&str>(1);
//!     gmp::go(move || tx1.send(7).unwrap());
//!     let mut got = 0;
//!     while got < 2 {
//!         gmp::select! {
//!             recv(rx1) -> v => { assert_eq!(v, Ok(7)); got += 1 }
//!             send(tx2, "hi") -> r => { r.unwrap(); got += 1 }
//!             default(Duration::from_secs(5)) => panic!("timed out"),
//!         }
//!     }
//! });
//! ```
//!
//! # Syntax (crossbeam-channel's)
//! ```text
//! gmp::select! {
//!     recv(rx) -> msg => body,       // msg: Result<T, RecvError>
//!     send(tx, value) -> res => body, // res: Result<(), SendError<T>>
//!     default => body,               // optional: don't block
//!     default(duration) => body,     // optional: block at most `duration`
//! }
//! ```
//! Channel operands and sent values are evaluated once, in source order,
//! before anything else (Go's rule); the value of a send case that is not
//! chosen is dropped. A `recv` case fires on a value or on a closed channel
//! (`Err(RecvError)`); a `send` case fires when the value is taken or the
//! channel is closed (`Err(SendError(v))` — Go would panic). A case on
//! [`never()`](crate::channel::never) never fires; `select! {}` blocks
//! forever. Bodies run after every channel is unlocked and every case
//! object is dropped, so they may `break`, `return`, or reassign the
//! channel variables. Element types must be `'static` (see the design).
//!
//! # Design (Go's `selectgo`, without holding locks across the park)
//! 1. **Poll order**: a uniformly random permutation of the cases (inside-out
//!    Fisher–Yates), so no ready case starves another.
//! 2. **Pass 0**, lock-free prefilter: in poll order, a case whose channel
//!    *looks* ready (the atomics every unlock publishes: a buffered value or
//!    room, a parked counterpart, or a close) is tried under that channel's
//!    lock alone, exactly as a plain `try_recv`/`try_send`. The first that
//!    succeeds wins: a ready select takes one lock instead of all of them
//!    (Go locks all; crossbeam-channel also tries cases one by one). The
//!    hint may be stale either way: a false "ready" costs one lock and
//!    moves on; a false "not ready" is caught by pass 1. The choice is
//!    still the first ready case of a uniformly random order.
//!    **Yield once before blocking**: if pass 0 finds nothing and a few
//!    goroutines (1 to `YIELD_MAX_QUEUED`) wait in our P's run queue, we
//!    yield to them and run pass 0 again. They are usually our
//!    counterparts (the sender pass 0 just took from waits in `runnext`);
//!    they queue their sends, and the second look takes one with one lock,
//!    instead of an entry on every channel, a park, a claim and a cleanup.
//!    Go blocks at once. Not done with `default`, off a goroutine, or with
//!    an empty or long queue (the yield would bring us straight back, or
//!    delay us behind many time slices).
//! 3. **Lock order**: the cases sorted by channel address; each distinct
//!    channel is locked once, in that order (a channel that appears in
//!    several cases is locked by the first of them and lent to the others as
//!    `&mut dyn Any` — which is why element types are `'static`). Plain
//!    operations take one lock and selects take theirs in one global order,
//!    so there is no deadlock.
//! 4. **Pass 1**, all locks held, in poll order: the first case that can
//!    complete does so (taking from a parked sender or the buffer, handing
//!    to a parked receiver, or seeing the channel closed). Our select has no
//!    entry in any queue yet, so nobody can claim it concurrently: claiming
//!    another select's entry here is always safe.
//! 5. Nothing ready: with `default` we unlock and return. Otherwise a
//!    `SelState` is created (the select's claim word, Go's
//!    `g.selectDone`) and one entry per case is queued, still under all
//!    locks — so no counterpart can slip in between "not ready" and "queued".
//! 6. Unlock everything, then park. A waker that pops one of our entries
//!    must win the CAS on the claim word; losers drop the entry (a send
//!    entry's value is kept aside for our cleanup). The claim word also
//!    carries a `PARKED` bit that we set from the scheduler stack, after our
//!    status is `Waiting` (the `gopark` closure): a claimer that sees it
//!    wakes us; a claimer that came earlier does not, and our `PARKED` CAS
//!    then fails and the park is abandoned. So we are woken exactly once,
//!    and we never hold a channel lock while switching stacks. A timeout is
//!    one more claimer (a runtime timer, or a timed park on a plain thread).
//! 7. **Cleanup**: the chosen case locks its channel alone and collects
//!    the winner's completion; a losing send case locks its channel alone to
//!    take its entry (and value) back. A losing *receive* case takes no lock
//!    at all: its entry stays queued, dead — our claim word is set for good,
//!    so no waker can claim it (Go issue 2075: a live entry left behind
//!    would swallow a later send) — and whoever meets it next drops it: a
//!    sender popping it, a close, or the next registration on that channel,
//!    which also sweeps the queue so dead entries stay bounded
//!    (`State::register_recv`). Go's pass 3 locks every channel again to
//!    dequeue; for the usual all-receive select we lock one.
//!
//! Nothing is lost: a value moves (under a lock) from a sender to exactly
//! one receiver, and only the unique claimer of a select moves a value into
//! or out of it. Nothing is duplicated: every entry is removed by exactly
//! one party (its claimer, whoever finds it dead, or its owner).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmp_g::WaitReason;
use gmp_sched::park::{consume_thread_wake, park, park_thread_timeout, Waiter, Wake};
use gmp_sched::time::{start_timer, FnTimer};

use crate::channel::{
    wake, ChanGuard, Done, Receiver, RecvError, SelState, SendError, Sender, State, Who,
    TIMEOUT_CASE,
};

/// How a select waits when no case is ready.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum SelectMode {
    /// Block until a case is ready.
    Block,
    /// `default =>`: don't block.
    NonBlocking,
    /// `default(d) =>`: block at most `d`.
    Timeout(Duration),
}

/// A select's claim word, as handed to [`SelectCase::register`].
#[doc(hidden)]
pub struct SelHandle<'a>(&'a Arc<SelState>);

impl fmt::Debug for SelHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SelHandle")
    }
}

/// One case of a select, type-erased. Implemented by [`RecvCase`] and
/// [`SendCase`]; the macro's machinery, not a public extension point.
#[doc(hidden)]
pub trait SelectCase {
    /// The channel's address (lock order); 0 for a case that never fires.
    fn chan_addr(&self) -> usize;
    /// Locks the channel, keeping the guard.
    fn lock(&mut self);
    /// Drops the guard.
    fn unlock(&mut self);
    /// The locked state (`&mut State<T>`), lent to other cases on the
    /// same channel.
    fn locked_state(&mut self) -> &mut dyn Any;
    /// Pass 0: if the channel looks ready (lock-free hint), locks it alone
    /// and completes the operation if it can, then unlocks.
    fn poll_alone(&mut self) -> Option<Option<Wake>>;
    /// Pass 1: completes the operation if it can. `owner` is the locked
    /// state when another case holds this channel's lock.
    fn poll(&mut self, owner: Option<&mut dyn Any>) -> Option<Option<Wake>>;
    /// Pass 2: queues this case as `case` of the select `sel`.
    fn register(&mut self, owner: Option<&mut dyn Any>, sel: &SelHandle<'_>, case: usize);
    /// Pass 3: takes the completion (`won`) or removes the entry.
    fn finish(&mut self, won: bool);
    /// Marks the chosen case.
    fn set_selected(&mut self);
    /// Whether this case was chosen.
    fn is_selected(&self) -> bool;
}

/// A `recv(rx) -> msg` case.
#[doc(hidden)]
pub struct RecvCase<'a, T> {
    rx: &'a Receiver<T>,
    guard: Option<ChanGuard<'a, T>>,
    id: Option<u64>,
    result: Option<Result<T, RecvError>>,
    selected: bool,
}

/// A `send(tx, v) -> res` case.
#[doc(hidden)]
pub struct SendCase<'a, T> {
    tx: &'a Sender<T>,
    guard: Option<ChanGuard<'a, T>>,
    value: Option<T>,
    id: Option<u64>,
    result: Option<Result<(), SendError<T>>>,
    selected: bool,
}

impl<T> fmt::Debug for RecvCase<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecvCase")
    }
}

impl<T> fmt::Debug for SendCase<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendCase")
    }
}

impl<'a, T> RecvCase<'a, T> {
    /// A receive case on `rx`.
    pub fn new(rx: &'a Receiver<T>) -> Self {
        RecvCase {
            rx,
            guard: None,
            id: None,
            result: None,
            selected: false,
        }
    }
    /// The outcome of the chosen case.
    pub fn into_result(self) -> Result<T, RecvError> {
        self.result.expect("gmp: select case without a result")
    }
}

impl<'a, T> SendCase<'a, T> {
    /// A send case offering `v` on `tx`.
    pub fn new(tx: &'a Sender<T>, v: T) -> Self {
        SendCase {
            tx,
            guard: None,
            value: Some(v),
            id: None,
            result: None,
            selected: false,
        }
    }
    /// The outcome of the chosen case.
    pub fn into_result(self) -> Result<(), SendError<T>> {
        self.result.expect("gmp: select case without a result")
    }
}

fn state_of<'s, T: 'static>(
    guard: &'s mut Option<ChanGuard<'_, T>>,
    owner: Option<&'s mut dyn Any>,
) -> &'s mut State<T> {
    match owner {
        Some(a) => a
            .downcast_mut::<State<T>>()
            .expect("gmp: select cases on one channel have one type"),
        None => guard.as_deref_mut().expect("gmp: select case not locked"),
    }
}

impl<T: 'static> SelectCase for RecvCase<'_, T> {
    fn chan_addr(&self) -> usize {
        self.rx.chan.as_ref().map_or(0, |c| c.addr())
    }
    fn lock(&mut self) {
        self.guard = self.rx.chan.as_ref().map(|c| c.lock());
    }
    fn unlock(&mut self) {
        self.guard = None;
    }
    fn locked_state(&mut self) -> &mut dyn Any {
        self.guard
            .as_deref_mut()
            .expect("gmp: select case not locked")
    }
    fn poll_alone(&mut self) -> Option<Option<Wake>> {
        let c = self.rx.chan.as_ref()?;
        if !c.may_recv() {
            return None;
        }
        let (r, w) = c.lock().try_recv()?;
        self.result = Some(r);
        Some(w)
    }
    fn poll(&mut self, owner: Option<&mut dyn Any>) -> Option<Option<Wake>> {
        let st = state_of(&mut self.guard, owner);
        let (r, w) = st.try_recv()?;
        self.result = Some(r);
        Some(w)
    }
    fn register(&mut self, owner: Option<&mut dyn Any>, sel: &SelHandle<'_>, case: usize) {
        let st = state_of(&mut self.guard, owner);
        self.id = Some(st.register_recv(Who::Select(sel.0.clone(), case)));
    }
    fn finish(&mut self, won: bool) {
        let (Some(id), Some(c)) = (self.id.take(), self.rx.chan.as_ref()) else {
            return;
        };
        // A losing entry stays queued, dead (our claim word is set); the
        // next sender, close or registration on that channel drops it
        // (`State::register_recv`). No lock taken.
        if won {
            self.result = Some(match c.lock().take_done(id) {
                Some(Done::Recv(v)) => Ok(v),
                Some(Done::RecvClosed) => Err(RecvError),
                _ => unreachable!("gmp: a chosen receive case has no completion"),
            });
        }
    }
    fn set_selected(&mut self) {
        self.selected = true;
    }
    fn is_selected(&self) -> bool {
        self.selected
    }
}

impl<T: 'static> SelectCase for SendCase<'_, T> {
    fn chan_addr(&self) -> usize {
        self.tx.chan.addr()
    }
    fn lock(&mut self) {
        self.guard = Some(self.tx.chan.lock());
    }
    fn unlock(&mut self) {
        self.guard = None;
    }
    fn locked_state(&mut self) -> &mut dyn Any {
        self.guard
            .as_deref_mut()
            .expect("gmp: select case not locked")
    }
    fn poll_alone(&mut self) -> Option<Option<Wake>> {
        if !self.tx.chan.may_send() {
            return None;
        }
        self.guard = Some(self.tx.chan.lock());
        let w = self.poll(None);
        self.guard = None;
        w
    }
    fn poll(&mut self, owner: Option<&mut dyn Any>) -> Option<Option<Wake>> {
        let cap = self.tx.chan.cap;
        let st = state_of(&mut self.guard, owner);
        let v = self.value.take().expect("gmp: send case without a value");
        match st.try_send(v, cap) {
            Ok(w) => {
                self.result = Some(Ok(()));
                Some(w)
            }
            Err((v, true)) => {
                self.result = Some(Err(SendError(v)));
                Some(None)
            }
            Err((v, false)) => {
                self.value = Some(v);
                None
            }
        }
    }
    fn register(&mut self, owner: Option<&mut dyn Any>, sel: &SelHandle<'_>, case: usize) {
        let st = state_of(&mut self.guard, owner);
        let v = self.value.take().expect("gmp: send case without a value");
        self.id = Some(st.register_send(Who::Select(sel.0.clone(), case), v));
    }
    fn finish(&mut self, won: bool) {
        let Some(id) = self.id.take() else { return };
        let mut st = self.tx.chan.lock();
        if won {
            self.result = Some(match st.take_done(id) {
                Some(Done::Sent) => Ok(()),
                Some(Done::SendClosed(v)) => Err(SendError(v)),
                _ => unreachable!("gmp: a chosen send case has no completion"),
            });
        } else {
            // Moved out under the lock, dropped with the case afterwards.
            self.value = st.unregister_send(id);
        }
    }
    fn set_selected(&mut self) {
        self.selected = true;
    }
    fn is_selected(&self) -> bool {
        self.selected
    }
}

// ---------------------------------------------------------------------------
// The algorithm.
// ---------------------------------------------------------------------------

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A cheap per-thread random number (xorshift64*), for the poll order.
/// `inline(never)` and fenced like the runtime's own TLS accessors: a
/// goroutine may move to another thread between two calls, and the
/// thread-local's address must not be cached across a park.
#[inline(never)]
fn fastrand() -> u64 {
    compiler_fence(Ordering::SeqCst);
    let r = RNG.with(|c| {
        let mut x = c.get();
        if x == 0 {
            // Seed from the thread's stack address and the clock.
            let local = 0u8;
            x = (&local as *const u8 as u64) ^ (Instant::now().elapsed().as_nanos() as u64);
            x ^= std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x |= 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    });
    compiler_fence(Ordering::SeqCst);
    r
}

/// The poll-order generator of one select: seeded once from the per-thread
/// [`fastrand`] (one TLS access per select, not one per case), then a local
/// xorshift64*.
struct PollRng(u64);

impl PollRng {
    #[inline]
    fn new() -> Self {
        PollRng(fastrand() | 1)
    }
    /// A uniform random number in `0..n` (Lemire's multiply-shift).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((r >> 32).wrapping_mul(n as u64) >> 32) as usize
    }
}

/// Runs `f` on case `i`, lending it the locked state of the case that
/// holds its channel's lock (`owner[i]`) when that is another case.
fn with_owner<R>(
    cases: &mut [&mut dyn SelectCase],
    owner: &[usize],
    i: usize,
    f: impl FnOnce(&mut dyn SelectCase, Option<&mut dyn Any>) -> R,
) -> R {
    let o = owner[i];
    if o == i {
        f(&mut *cases[i], None)
    } else if o < i {
        let (a, b) = cases.split_at_mut(i);
        f(&mut *b[0], Some(a[o].locked_state()))
    } else {
        let (a, b) = cases.split_at_mut(o);
        f(&mut *a[i], Some(b[0].locked_state()))
    }
}

fn unlock_all(cases: &mut [&mut dyn SelectCase], lockorder: &[usize], owner: &[usize]) {
    for &i in lockorder.iter().rev() {
        if owner[i] == i {
            cases[i].unlock();
        }
    }
}

/// The longest local run queue a select that found nothing ready yields
/// to before blocking (step 2). A guess: the `select` benchmark's four
/// producers on two Ps; it bounds the extra wait to a few time slices.
const YIELD_MAX_QUEUED: usize = 4;

/// Number of cases whose scratch space lives on the stack.
const INLINE_CASES: usize = 16;

/// The select machinery behind [`select!`](crate::select!): returns the
/// index of the case that ran (its result is stored in the case), or `None`
/// for `default` / a timeout.
#[doc(hidden)]
pub fn select_impl(cases: &mut [&mut dyn SelectCase], mode: SelectMode) -> Option<usize> {
    gmp_sched::check_preempt();
    let deadline = match mode {
        SelectMode::Timeout(d) => Instant::now().checked_add(d),
        _ => None,
    };
    let nonblocking = matches!(mode, SelectMode::NonBlocking)
        || matches!(mode, SelectMode::Timeout(d) if d.is_zero());
    let n = cases.len();
    let mut inline = [0usize; 4 * INLINE_CASES];
    let mut heap = Vec::new();
    let scratch: &mut [usize] = if n <= INLINE_CASES {
        &mut inline[..4 * n]
    } else {
        heap.resize(4 * n, 0);
        &mut heap
    };
    let (order, rest) = scratch.split_at_mut(n);
    let (lockorder, rest) = rest.split_at_mut(n);
    let (owner, addr) = rest.split_at_mut(n);

    // 1. Poll order: inside-out Fisher–Yates over the cases that can fire.
    let mut m = 0;
    let mut rng = PollRng::new();
    for (i, c) in cases.iter().enumerate() {
        addr[i] = c.chan_addr();
        if addr[i] == 0 {
            continue;
        }
        let j = if m == 0 { 0 } else { rng.below(m + 1) };
        order[m] = order[j];
        order[j] = i;
        m += 1;
    }
    let order = &order[..m];
    if m == 0 {
        if nonblocking {
            return None;
        }
        match deadline {
            Some(d) => {
                crate::time::sleep(d.saturating_duration_since(Instant::now()));
                return None;
            }
            // No deadline: no timeout, or one too long to represent.
            None => block_forever(WaitReason::SelectNoCases),
        }
    }

    // 2. Pass 0 (lock-free prefilter): in poll order, the first case whose
    // channel looks ready is tried under that channel's lock alone. The
    // usual ready select then takes one lock instead of all of them; the
    // choice is still the first ready case in a uniformly random order.
    //
    // Nothing ready: before the costly block (an entry on every channel,
    // a park, and the cleanup), let the goroutines queued on our P run
    // once, if there are a few (YIELD_MAX_QUEUED). They are usually our
    // counterparts — the sender we just took from sits in `runnext` — and
    // they queue their sends, which the second look then takes without
    // blocking. A longer queue would delay us too much; an empty one
    // would only bring us straight back.
    let mut looked_twice = nonblocking || !parkable();
    loop {
        for &i in order {
            if let Some(w) = cases[i].poll_alone() {
                wake(w);
                cases[i].set_selected();
                return Some(i);
            }
        }
        if looked_twice {
            break;
        }
        looked_twice = true;
        if gmp_sched::local_runq_len().is_some_and(|n| (1..=YIELD_MAX_QUEUED).contains(&n)) {
            gmp_sched::goyield();
        } else {
            break;
        }
    }

    // 3. Lock order: by channel address (an insertion sort: selects are
    // small); duplicates share the first one's lock.
    let lockorder = &mut lockorder[..m];
    for (k, &i) in order.iter().enumerate() {
        let mut j = k;
        while j > 0 && addr[lockorder[j - 1]] > addr[i] {
            lockorder[j] = lockorder[j - 1];
            j -= 1;
        }
        lockorder[j] = i;
    }
    let mut prev = (0usize, usize::MAX);
    for &i in lockorder.iter() {
        if addr[i] == prev.0 {
            owner[i] = prev.1;
        } else {
            owner[i] = i;
            cases[i].lock();
            prev = (addr[i], i);
        }
    }
    let lockorder = &*lockorder;

    // 4. Pass 1: the first ready case in poll order wins.
    for &i in order {
        if let Some(w) = with_owner(cases, owner, i, |c, o| c.poll(o)) {
            unlock_all(cases, lockorder, owner);
            wake(w);
            cases[i].set_selected();
            return Some(i);
        }
    }
    if nonblocking || deadline.is_some_and(|d| Instant::now() >= d) {
        unlock_all(cases, lockorder, owner);
        return None;
    }

    // 5. Queue one entry per case, all locks still held.
    let sel = SelState::acquire(Waiter::current());
    let handle = SelHandle(&sel);
    for &i in lockorder {
        with_owner(cases, owner, i, |c, o| c.register(o, &handle, i));
    }
    unlock_all(cases, lockorder, owner);

    // 6. Park until one claimer wins.
    let won = park_on(&sel, deadline, WaitReason::Select);

    // 7. Cleanup, one channel at a time.
    for &i in lockorder {
        cases[i].finish(i == won);
    }
    SelState::recycle(sel);
    if won == TIMEOUT_CASE {
        return None;
    }
    cases[won].set_selected();
    Some(won)
}

/// Parks the caller (goroutine or thread) registered under `sel` until a
/// claimer wins, or until `deadline`. Returns the claimed case
/// ([`TIMEOUT_CASE`] on timeout). See the module docs, step 6.
pub(crate) fn park_on(sel: &Arc<SelState>, deadline: Option<Instant>, reason: WaitReason) -> usize {
    if sel.is_goroutine() {
        let timer = deadline.map(|dl| {
            let s2 = sel.clone();
            let t = FnTimer::new(move || s2.fire_timeout());
            let d = dl.saturating_duration_since(Instant::now());
            gmp_sched::with_current_sched(|s| start_timer(s, d, t.clone()));
            t
        });
        let st: &SelState = sel;
        // The closure runs on the scheduler stack once we are Waiting; it
        // touches only the heap-allocated claim word, never our stack.
        gmp_sched::gopark(reason, move |_| st.try_park());
        if let Some(t) = timer {
            t.stop();
        }
    } else if sel.try_park() {
        match deadline {
            None => park(reason, || ()),
            Some(dl) => {
                if !park_thread_timeout(|| (), dl) && sel.claim(TIMEOUT_CASE).is_none() {
                    // A waker claimed us just as we timed out: its wake is
                    // in flight and must be consumed.
                    consume_thread_wake();
                }
            }
        }
    }
    sel.selected()
}

/// Whether the caller parks as a goroutine (rather than blocking its
/// thread): it runs on a goroutine that holds its P. A goroutine inside
/// `gmp::blocking` has given its P up and blocks like a plain thread, as
/// [`Waiter::current`] decides.
pub(crate) fn parkable() -> bool {
    gmp_sched::current_g().is_some_and(|g| g.status.get() == gmp_g::Status::Running)
}

/// Parks the caller forever (Go's nil-channel operations and `select {}`).
pub(crate) fn block_forever(reason: WaitReason) -> ! {
    loop {
        if parkable() {
            gmp_sched::gopark(reason, |_| true);
        } else {
            std::thread::park();
        }
    }
}

/// Waits on several channel operations and runs the one that completes
/// first (Go's `select`), with crossbeam-channel's syntax.
///
/// ```
/// let (tx, rx) = gmp::chan::<i32>(1);
/// let out = gmp::select! {
///     send(tx, 1) -> r => { r.unwrap(); "sent" }
///     recv(rx) -> _v => "received",
/// };
/// assert_eq!(out, "sent");
/// let out = gmp::select! {
///     recv(rx) -> v => v.unwrap(),
///     default => -1,
/// };
/// assert_eq!(out, 1);
/// ```
///
/// See the [`select`](mod@crate::select) module for the rules and the design.
/// Cases are polled in random order; at most 32 cases; element types must
/// be `'static`.
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__gmp_select!(@parse () ()
            ([_c0 _r0] [_c1 _r1] [_c2 _r2] [_c3 _r3] [_c4 _r4] [_c5 _r5] [_c6 _r6] [_c7 _r7]
             [_c8 _r8] [_c9 _r9] [_c10 _r10] [_c11 _r11] [_c12 _r12] [_c13 _r13] [_c14 _r14]
             [_c15 _r15] [_c16 _r16] [_c17 _r17] [_c18 _r18] [_c19 _r19] [_c20 _r20]
             [_c21 _r21] [_c22 _r22] [_c23 _r23] [_c24 _r24] [_c25 _r25] [_c26 _r26]
             [_c27 _r27] [_c28 _r28] [_c29 _r29] [_c30 _r30] [_c31 _r31])
            $($tokens)*)
    };
}

/// Implementation detail of [`select!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __gmp_select {
    // ---- parsing: (@parse (cases) (default) (labels) tokens...) ----
    (@parse $cases:tt $def:tt $labels:tt) => {
        $crate::__gmp_select!(@gen $cases $def)
    };
    (@parse $cases:tt $def:tt () $($t:tt)+) => {
        ::core::compile_error!("gmp::select!: too many cases (at most 32)")
    };
    // recv
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        recv($r:expr) -> $res:pat => $body:block, $($t:tt)*) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl recv ($r) $res $body]) $def ($($ls)*) $($t)*)
    };
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        recv($r:expr) -> $res:pat => $body:block $($t:tt)*) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl recv ($r) $res $body]) $def ($($ls)*) $($t)*)
    };
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        recv($r:expr) -> $res:pat => $body:expr, $($t:tt)*) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl recv ($r) $res $body]) $def ($($ls)*) $($t)*)
    };
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        recv($r:expr) -> $res:pat => $body:expr) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl recv ($r) $res $body]) $def ($($ls)*))
    };
    // send
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        send($s:expr, $v:expr) -> $res:pat => $body:block, $($t:tt)*) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl send ($s, $v) $res $body]) $def ($($ls)*) $($t)*)
    };
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        send($s:expr, $v:expr) -> $res:pat => $body:block $($t:tt)*) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl send ($s, $v) $res $body]) $def ($($ls)*) $($t)*)
    };
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        send($s:expr, $v:expr) -> $res:pat => $body:expr, $($t:tt)*) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl send ($s, $v) $res $body]) $def ($($ls)*) $($t)*)
    };
    (@parse ($($c:tt)*) $def:tt ([$l:ident $rl:ident] $($ls:tt)*)
        send($s:expr, $v:expr) -> $res:pat => $body:expr) => {
        $crate::__gmp_select!(@parse ($($c)* [$l $rl send ($s, $v) $res $body]) $def ($($ls)*))
    };
    // default
    (@parse $cases:tt ($($d:tt)+) $labels:tt default $($t:tt)*) => {
        ::core::compile_error!("gmp::select!: more than one `default` case")
    };
    (@parse $cases:tt () $labels:tt default => $body:block, $($t:tt)*) => {
        $crate::__gmp_select!(@parse $cases (nonblocking $body) $labels $($t)*)
    };
    (@parse $cases:tt () $labels:tt default => $body:block $($t:tt)*) => {
        $crate::__gmp_select!(@parse $cases (nonblocking $body) $labels $($t)*)
    };
    (@parse $cases:tt () $labels:tt default => $body:expr, $($t:tt)*) => {
        $crate::__gmp_select!(@parse $cases (nonblocking $body) $labels $($t)*)
    };
    (@parse $cases:tt () $labels:tt default => $body:expr) => {
        $crate::__gmp_select!(@parse $cases (nonblocking $body) $labels)
    };
    (@parse $cases:tt () $labels:tt default($d:expr) => $body:block, $($t:tt)*) => {
        $crate::__gmp_select!(@parse $cases (timeout ($d) $body) $labels $($t)*)
    };
    (@parse $cases:tt () $labels:tt default($d:expr) => $body:block $($t:tt)*) => {
        $crate::__gmp_select!(@parse $cases (timeout ($d) $body) $labels $($t)*)
    };
    (@parse $cases:tt () $labels:tt default($d:expr) => $body:expr, $($t:tt)*) => {
        $crate::__gmp_select!(@parse $cases (timeout ($d) $body) $labels $($t)*)
    };
    (@parse $cases:tt () $labels:tt default($d:expr) => $body:expr) => {
        $crate::__gmp_select!(@parse $cases (timeout ($d) $body) $labels)
    };
    (@parse $cases:tt $def:tt $labels:tt $($t:tt)+) => {
        ::core::compile_error!(
            "gmp::select!: expected `recv(rx) -> msg => body`, `send(tx, value) -> res => body`, \
             `default => body` or `default(timeout) => body`"
        )
    };

    // ---- generation ----
    (@gen ($([$l:ident $rl:ident $kind:ident $args:tt $res:tt $body:tt])*) $def:tt) => {{
        $( let mut $rl = ::core::option::Option::None; )*
        $crate::__gmp_select!(@nest ($([$l $rl $kind $args])*) ($([$l $rl])*) $def);
        $( if let ::core::option::Option::Some($res) = $rl { $body } else )*
        { $crate::__gmp_select!(@default $def) }
    }};
    (@nest ([$l:ident $rl:ident recv ($r:expr)] $($rest:tt)*) $all:tt $def:tt) => {
        match $crate::select::RecvCase::new(&$r) {
            mut $l => $crate::__gmp_select!(@nest ($($rest)*) $all $def),
        }
    };
    (@nest ([$l:ident $rl:ident send ($s:expr, $v:expr)] $($rest:tt)*) $all:tt $def:tt) => {
        match $crate::select::SendCase::new(&$s, $v) {
            mut $l => $crate::__gmp_select!(@nest ($($rest)*) $all $def),
        }
    };
    (@nest () ($([$l:ident $rl:ident])*) $def:tt) => {{
        let _ = $crate::select::select_impl(
            &mut [$( &mut $l as &mut dyn $crate::select::SelectCase ),*],
            $crate::__gmp_select!(@mode $def),
        );
        $( if $crate::select::SelectCase::is_selected(&$l) { $rl = ::core::option::Option::Some($l.into_result()); } )*
    }};
    (@mode ()) => { $crate::select::SelectMode::Block };
    (@mode (nonblocking $body:tt)) => { $crate::select::SelectMode::NonBlocking };
    (@mode (timeout ($d:expr) $body:tt)) => { $crate::select::SelectMode::Timeout($d) };
    (@default ()) => { ::core::unreachable!("gmp::select!: no case fired") };
    (@default (nonblocking $body:tt)) => { $body };
    (@default (timeout ($d:expr) $body:tt)) => { $body };
}
