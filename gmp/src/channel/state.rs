//! The locked heart of a channel (Go's `hchan`): the buffer, the two wait
//! queues and the completions handed from wakers to the woken.
//!
//! Everything here runs with the channel's lock held and never blocks,
//! never wakes anyone and never drops a user value: each operation returns
//! the [`Waiter`] to wake, and the caller wakes it after unlocking (Go's
//! rule: never change another goroutine's status under a channel lock).
//! User values are only ever *moved* under the lock, so a `Drop` impl that
//! touches the same channel cannot deadlock.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering};
use std::sync::Arc;

use gmp_sched::park::{Delivery, Waiter, Wake};

use super::RecvError;

/// `SelState::state` bit: the owner has committed to sleeping, so whoever
/// claims it must wake it.
const PARKED: usize = 1;
/// The "case" a select's own timer claims.
pub(crate) const TIMEOUT_CASE: usize = usize::MAX >> 2;

/// The shared word of one blocked select (or timed operation): Go's
/// `g.selectDone` plus the "already asleep" bit that lets the owner
/// register on its channels *before* committing to sleep.
///
/// `state` is `(selected_case + 1) << 1 | PARKED`. It only ever grows:
/// 0 → `PARKED` (the owner, once it is `Waiting`) and, exactly once,
/// "no case" → "case k" (the one claimer that wins the CAS). The claimer
/// wakes the owner iff it saw `PARKED`; if the owner had not parked yet,
/// its own CAS to `PARKED` fails and it does not sleep. Either way the
/// owner is woken exactly once or not at all — never twice, never lost.
#[derive(Debug)]
pub(crate) struct SelState {
    state: AtomicUsize,
    waiter: Waiter,
}

impl SelState {
    pub(crate) fn new(waiter: Waiter) -> Self {
        SelState {
            state: AtomicUsize::new(0),
            waiter,
        }
    }
    /// A claim word for `waiter`, reusing one of this thread's cached ones
    /// that nobody else holds any more (no allocation per blocking select,
    /// as Go's per-P sudog cache). Give it back with [`SelState::recycle`].
    pub(crate) fn acquire(waiter: Waiter) -> Arc<SelState> {
        match sel_cache_take() {
            Some(mut a) => {
                let s = Arc::get_mut(&mut a).expect("sel_cache_take returns a unique Arc");
                *s.state.get_mut() = 0;
                s.waiter = waiter;
                a
            }
            None => Arc::new(SelState::new(waiter)),
        }
    }
    /// Caches `sel` for a later [`SelState::acquire`] on this thread. It
    /// may still be shared — a select's losing receive entries stay queued,
    /// dead, until someone meets them — so `acquire` reuses it only once it
    /// is unique again, and the cache keeps a few (a select usually finds
    /// the one before last free: the next registrations drop its entries).
    pub(crate) fn recycle(sel: Arc<SelState>) {
        sel_cache_put(sel);
    }
    /// Claims the select for `case`. `None`: somebody else won (the entry
    /// is dead). `Some(w)`: we won; wake `w` (if any) after unlocking.
    pub(crate) fn claim(&self, case: usize) -> Option<Option<Waiter>> {
        // Acquire: pairs with the owner's AcqRel CAS to PARKED, so that a
        // claimer that sees PARKED wakes a goroutine that really is Waiting.
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur >> 1 != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                cur,
                cur | ((case + 1) << 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some((cur & PARKED != 0).then(|| self.waiter.clone()));
                }
                Err(c) => cur = c,
            }
        }
    }
    /// The owner commits to sleeping; false if a case was already claimed
    /// (then nobody will wake it and it must not sleep).
    pub(crate) fn try_park(&self) -> bool {
        self.state
            .compare_exchange(0, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    /// Whether the owner is a goroutine (parks) or a thread (blocks).
    pub(crate) fn is_goroutine(&self) -> bool {
        matches!(self.waiter, Waiter::G(_))
    }
    /// The claimed case (call only once claimed).
    pub(crate) fn selected(&self) -> usize {
        let s = self.state.load(Ordering::Acquire) >> 1;
        debug_assert!(s != 0, "select woken without a claimed case");
        s.wrapping_sub(1)
    }
    /// Whether some case was claimed: every queue entry of this select is
    /// dead for good (the claim is never undone while an entry holds this
    /// `Arc`, since reuse needs it unique).
    #[inline]
    fn is_claimed(&self) -> bool {
        // Relaxed: only decides whether to drop a dead entry; a stale
        // "unclaimed" keeps it one more round, and no data is read on
        // the strength of a "claimed".
        self.state.load(Ordering::Relaxed) >> 1 != 0
    }
    /// The timer's claim: wakes the owner if it was asleep.
    pub(crate) fn fire_timeout(&self) {
        if let Some(Some(w)) = self.claim(TIMEOUT_CASE) {
            w.wake();
        }
    }
}

/// Claim words cached per thread. A guess, measured on the `select`
/// benchmark: with one slot nearly every blocking select allocated (the
/// previous word is still held by its dead entries); with a few, the one
/// before last is almost always free again.
const SEL_CACHE_SLOTS: usize = 4;

/// This thread's cached claim words, and the slot the next put replaces
/// when none is empty.
struct SelCache {
    slots: [Cell<Option<Arc<SelState>>>; SEL_CACHE_SLOTS],
    next: Cell<usize>,
}

thread_local! {
    static SEL_CACHE: SelCache = const {
        SelCache {
            slots: [const { Cell::new(None) }; SEL_CACHE_SLOTS],
            next: Cell::new(0),
        }
    };
}

/// Takes a cached claim word that nobody else holds, if any. `inline(never)`
/// and fenced like the runtime's TLS accessors: a goroutine may resume on
/// another thread, so the thread-local's address must not be cached across
/// a park.
#[inline(never)]
fn sel_cache_take() -> Option<Arc<SelState>> {
    compiler_fence(Ordering::SeqCst);
    let a = SEL_CACHE.with(|c| {
        for slot in &c.slots {
            let Some(mut a) = slot.take() else { continue };
            // The count is only a hint (a load, skipping `get_mut`'s
            // read-modify-write on a word still shared); `get_mut`
            // decides for real.
            if Arc::strong_count(&a) == 1 && Arc::get_mut(&mut a).is_some() {
                return Some(a);
            }
            slot.set(Some(a));
        }
        None
    });
    compiler_fence(Ordering::SeqCst);
    a
}

/// Caches a claim word on this thread: in an empty slot, else in place of
/// the oldest (dropping it: it is probably still shared).
#[inline(never)]
fn sel_cache_put(sel: Arc<SelState>) {
    compiler_fence(Ordering::SeqCst);
    let old = SEL_CACHE.with(|c| {
        if let Some(slot) = c.slots.iter().find(|s| {
            let a = s.take();
            let empty = a.is_none();
            s.set(a);
            empty
        }) {
            slot.set(Some(sel));
            return None;
        }
        let i = c.next.get();
        c.next.set((i + 1) % SEL_CACHE_SLOTS);
        c.slots[i].replace(Some(sel))
    });
    drop(old);
    compiler_fence(Ordering::SeqCst);
}

/// Who waits in a queue entry.
#[derive(Debug)]
pub(crate) enum Who {
    /// A plain blocking operation: parked under the channel lock, always
    /// claimable by the first waker that pops it.
    Plain(Waiter),
    /// One case of a select (or a timed operation): claimable only by
    /// winning [`SelState::claim`].
    Select(Arc<SelState>, usize),
}

impl Who {
    /// Whether this is a select entry whose select is already decided:
    /// no waker can claim it any more.
    #[inline]
    fn is_dead(&self) -> bool {
        matches!(self, Who::Select(s, _) if s.is_claimed())
    }
    /// `None`: a dead select entry (drop it). `Some(w)`: claimed; wake `w`
    /// (if any) after unlocking.
    #[inline]
    fn claim(self) -> Option<Option<Waiter>> {
        match self {
            Who::Plain(w) => Some(Some(w)),
            Who::Select(s, case) => s.claim(case),
        }
    }
}

/// Who waits in a receive entry: a claimable waiter, or a plain goroutine
/// receiver with a mailbox the sender fills directly (Go's `sudog.elem`),
/// so that it need not re-take the lock once woken.
#[derive(Debug)]
enum RecvWho<T> {
    Who(Who),
    Mail(Delivery<T>),
}

impl<T> RecvWho<T> {
    /// Whether this is a decided select's entry (see [`Who::is_dead`]); a
    /// mailbox receiver is a plain goroutine, never dead.
    #[inline]
    fn is_dead(&self) -> bool {
        match self {
            RecvWho::Who(w) => w.is_dead(),
            RecvWho::Mail(_) => false,
        }
    }
}

/// `g.param` value telling a plain sender that its value was taken.
pub(crate) const PARAM_SENT: usize = 1;

/// Records that the sender of entry `id` (already claimed, waiter `w`)
/// had its value taken. A plain goroutine sender learns it through its
/// `g.param` (Go's `gp.param`), so it need not re-take the channel lock
/// after waking; everyone else gets a completion.
#[inline]
fn sent<T>(done: &mut Vec<(u64, Done<T>)>, id: u64, plain: bool, w: &Option<Waiter>) {
    if let (true, Some(Waiter::G(g))) = (plain, w) {
        // Release: published to the sender by goready's status CAS.
        g.param.store(PARAM_SENT, Ordering::Release);
    } else {
        done.push((id, Done::Sent));
    }
}

/// A parked receiver (Go's `sudog` on `recvq`).
#[derive(Debug)]
pub(crate) struct RecvEntry<T> {
    id: u64,
    who: RecvWho<T>,
}

/// A parked sender with the value it offers.
#[derive(Debug)]
pub(crate) struct SendEntry<T> {
    id: u64,
    who: Who,
    value: T,
}

/// What a waker leaves for the woken operation (keyed by its entry id).
#[derive(Debug)]
pub(crate) enum Done<T> {
    /// A receive got this value.
    Recv(T),
    /// A receive was released by close.
    RecvClosed,
    /// A send was taken.
    Sent,
    /// A send was released by close; the value goes back.
    SendClosed(T),
    /// A dead select send entry was popped by a waker that lost the claim:
    /// the value waits here for the owner's cleanup.
    Unsent(T),
}

/// The channel state guarded by the channel's one mutex.
#[derive(Debug)]
pub(crate) struct State<T> {
    pub(crate) buf: VecDeque<T>,
    pub(crate) closed: bool,
    recvq: VecDeque<RecvEntry<T>>,
    sendq: VecDeque<SendEntry<T>>,
    done: Vec<(u64, Done<T>)>,
    next_id: u64,
    /// `recvq` length at which [`State::register_recv`] next sweeps out
    /// dead select entries (see there).
    recv_sweep_at: usize,
}

/// The smallest `recvq` length that triggers a sweep of dead select
/// entries (a guess: a few entries cost less to skip than to sweep).
const RECV_SWEEP_MIN: usize = 8;

impl<T> State<T> {
    pub(crate) fn new(cap: usize) -> Self {
        State {
            // Go allocates the whole ring up front; we cap the eager part
            // (a guess: big enough for every benchmark, small for huge caps).
            buf: VecDeque::with_capacity(cap.min(1024)),
            closed: false,
            recvq: VecDeque::new(),
            sendq: VecDeque::new(),
            done: Vec::new(),
            next_id: 0,
            recv_sweep_at: RECV_SWEEP_MIN,
        }
    }

    /// Go's `chanrecv` under the lock. `None`: it would block.
    /// `Some((result, wake))`: done; wake `wake` after unlocking.
    #[inline]
    pub(crate) fn try_recv(&mut self) -> Option<(Result<T, RecvError>, Option<Wake>)> {
        if let Some(v) = self.buf.pop_front() {
            // A full buffer with parked senders: move the first live one's
            // value to the tail, so FIFO order is kept (Go's `recv`).
            let mut wake = None;
            while let Some(e) = self.sendq.pop_front() {
                let plain = matches!(e.who, Who::Plain(_));
                match e.who.claim() {
                    Some(w) => {
                        self.buf.push_back(e.value);
                        sent(&mut self.done, e.id, plain, &w);
                        wake = w.map(Wake::Waiter);
                        break;
                    }
                    None => self.done.push((e.id, Done::Unsent(e.value))),
                }
            }
            return Some((Ok(v), wake));
        }
        if self.closed {
            return Some((Err(RecvError), None));
        }
        // Unbuffered (or an empty buffer): take straight from a sender.
        while let Some(e) = self.sendq.pop_front() {
            let plain = matches!(e.who, Who::Plain(_));
            match e.who.claim() {
                Some(w) => {
                    sent(&mut self.done, e.id, plain, &w);
                    return Some((Ok(e.value), w.map(Wake::Waiter)));
                }
                None => self.done.push((e.id, Done::Unsent(e.value))),
            }
        }
        None
    }

    /// Go's `chansend` under the lock. `Ok(wake)`: sent. `Err((v, true))`:
    /// closed. `Err((v, false))`: it would block.
    #[inline]
    pub(crate) fn try_send(&mut self, v: T, cap: usize) -> Result<Option<Wake>, (T, bool)> {
        if self.closed {
            return Err((v, true));
        }
        // A parked receiver implies an empty buffer: hand the value over.
        let mut v = v;
        while let Some(e) = self.recvq.pop_front() {
            match e.who {
                RecvWho::Mail(d) => match d.deliver(v) {
                    Ok(r) => return Ok(Some(Wake::Ready(r))),
                    Err(back) => v = back,
                },
                RecvWho::Who(who) => {
                    if let Some(w) = who.claim() {
                        self.done.push((e.id, Done::Recv(v)));
                        return Ok(w.map(Wake::Waiter));
                    }
                }
            }
        }
        if self.buf.len() < cap {
            self.buf.push_back(v);
            return Ok(None);
        }
        Err((v, false))
    }

    /// Go's `closechan` under the lock: releases every parked operation.
    /// Returns whether this call closed it, and whom to wake.
    pub(crate) fn close(&mut self) -> (bool, Vec<Wake>) {
        if self.closed {
            return (false, Vec::new());
        }
        self.closed = true;
        let mut wake = Vec::new();
        for e in std::mem::take(&mut self.recvq) {
            match e.who {
                RecvWho::Mail(d) => wake.extend(d.close().map(Wake::Ready)),
                RecvWho::Who(who) => {
                    if let Some(w) = who.claim() {
                        self.done.push((e.id, Done::RecvClosed));
                        wake.extend(w.map(Wake::Waiter));
                    }
                }
            }
        }
        for e in std::mem::take(&mut self.sendq) {
            match e.who.claim() {
                Some(w) => {
                    self.done.push((e.id, Done::SendClosed(e.value)));
                    wake.extend(w.map(Wake::Waiter));
                }
                None => self.done.push((e.id, Done::Unsent(e.value))),
            }
        }
        (true, wake)
    }

    #[inline]
    fn next_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Parks a receiver at the tail of `recvq`; returns its entry id.
    ///
    /// A select's receive cases that lost are not removed by their owner
    /// (it would lock every channel a second time, as Go's `selectgo`
    /// pass 3 does): their claim word marks them dead, and whoever meets
    /// one drops it — a sender popping it, a close, or this function,
    /// which pops dead entries off the head and, once the queue reaches
    /// `recv_sweep_at`, sweeps them all and doubles the threshold over
    /// what is left (amortized O(1) per registration). So a queue that no
    /// sender ever pops stays within about twice its live entries.
    #[inline]
    pub(crate) fn register_recv(&mut self, who: Who) -> u64 {
        self.drop_dead_recvs();
        let id = self.next_id();
        self.recvq.push_back(RecvEntry {
            id,
            who: RecvWho::Who(who),
        });
        id
    }

    /// Parks a plain goroutine receiver with a mailbox at the tail of
    /// `recvq`: a sender hands it the value directly (or close tells it).
    #[inline]
    pub(crate) fn register_recv_mail(&mut self, d: Delivery<T>) {
        self.drop_dead_recvs();
        let id = self.next_id();
        self.recvq.push_back(RecvEntry {
            id,
            who: RecvWho::Mail(d),
        });
    }

    /// Drops dead select entries off the head of `recvq` and, once it
    /// reaches `recv_sweep_at`, everywhere (see [`State::register_recv`]).
    #[inline]
    fn drop_dead_recvs(&mut self) {
        while self.recvq.front().is_some_and(|e| e.who.is_dead()) {
            self.recvq.pop_front();
        }
        if self.recvq.len() >= self.recv_sweep_at {
            self.recvq.retain(|e| !e.who.is_dead());
            self.recv_sweep_at = (2 * self.recvq.len()).max(RECV_SWEEP_MIN);
        }
    }

    /// Parks a sender and its value at the tail of `sendq`.
    #[inline]
    pub(crate) fn register_send(&mut self, who: Who, value: T) -> u64 {
        let id = self.next_id();
        self.sendq.push_back(SendEntry { id, who, value });
        id
    }

    /// Takes the completion left for entry `id`.
    #[inline]
    pub(crate) fn take_done(&mut self, id: u64) -> Option<Done<T>> {
        let i = self.done.iter().position(|(d, _)| *d == id)?;
        Some(self.done.swap_remove(i).1)
    }

    /// Removes a receive entry that nobody claimed (a timed receive that
    /// timed out; select leaves its losing entries dead instead).
    pub(crate) fn unregister_recv(&mut self, id: u64) {
        if let Some(i) = self.recvq.iter().position(|e| e.id == id) {
            self.recvq.remove(i);
        }
    }

    /// Removes a send entry that nobody claimed, giving its value back
    /// (from the queue, or from where a waker that lost the claim left it).
    pub(crate) fn unregister_send(&mut self, id: u64) -> Option<T> {
        if let Some(i) = self.sendq.iter().position(|e| e.id == id) {
            return self.sendq.remove(i).map(|e| e.value);
        }
        match self.take_done(id) {
            Some(Done::Unsent(v)) => Some(v),
            Some(_) => unreachable!("gmp: an unclaimed send case has a completion"),
            None => None,
        }
    }

    /// Number of queued senders and receivers, dead select receive entries
    /// included (an upper bound on the parked ones; the lock-free mirrors).
    pub(crate) fn waiters(&self) -> (usize, usize) {
        (self.sendq.len(), self.recvq.len())
    }

    /// Number of parked senders and receivers that a counterpart could
    /// still claim (for tests and debugging).
    pub(crate) fn live_waiters(&self) -> (usize, usize) {
        let live_recv = self.recvq.iter().filter(|e| !e.who.is_dead()).count();
        (self.sendq.len(), live_recv)
    }
}
