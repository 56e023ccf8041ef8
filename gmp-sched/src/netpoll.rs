//! The network poller (Go's `netpoll.go` + `netpoll_epoll.go`).
//!
//! One edge-triggered epoll instance per P (a *shard*; at most 64), plus a
//! master instance holding the shards (level-triggered) and the wake
//! eventfd. A descriptor registers with one shard. `findrunnable` polls
//! its own P's shard first without blocking, so a descriptor's goroutine
//! keeps running on the P (and CPU) that owns its shard, and every shard
//! only when its own had nothing; at most one idle M waits on the master
//! (until the next timer; the eventfd breaks the wait when new work or an
//! earlier timer arrives), and sysmon polls every shard when nobody polled
//! for 10 ms. Go has one instance; the shards are for locality.
//!
//! **Where a descriptor goes.** By default shard `fd % shards`. The two
//! ends of a loopback TCP connection inside one runtime go to the *same*
//! shard ([`Netpoll::pair`]): on loopback the writer's `send` delivers the
//! segment on the writer's CPU, up to waking the epoll waiter, so a reader
//! that runs on that CPU finds the socket, its skbs and the epoll item in
//! cache, and one that runs on the other CPU pulls them all across. The
//! first end to register (or, for a `connect`, to complete) records its
//! (local, peer) addresses; the second finds them reversed and moves to
//! the first's shard (adding it to the new shard reports its current
//! readiness, so nothing is missed). Measured on echo (100 loopback
//! connections, 2 Ps): 45 % of goroutine runs were on another M than the
//! goroutine's previous one; shards by `fd % 2` alone did not help (a
//! connection's two descriptors are allocated one after the other, so they
//! usually land on different shards); with pairing the median round trip
//! went from ~8.7 to ~6.4 µs, and two 1-P runtimes with 50 connections
//! each had shown the same bound.
//!
//! A [`PollDesc`] holds one wait slot per direction (`rg`, `wg`) with Go's
//! states: `0` (nothing), `READY` (an event arrived with nobody waiting),
//! `WAIT` (a goroutine is committing to park), or the parked G's address.
//! The waiter moves `0 -> WAIT` before parking and `WAIT -> G` in the park's
//! unlock function; the poller moves any state to `READY`, readying the G
//! if it found one. Whichever order they run in, the event is seen: if the
//! poller runs before the commit, the commit's CAS fails and the park is
//! abandoned (Go's `netpollblockcommit`).
//!
//! Because the registration is edge-triggered and every edge ends as
//! `READY` on the slot, a reader that *knows* the receive queue is empty
//! may wait without trying the read first: [`recv_inq`] tells it so for
//! TCP (`TCP_INQ`), which saves the failing `recvfrom` of every
//! request/response exchange.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gmp_g::{GRef, WaitReason, G};
use gmp_p::Timer;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::proc::{gopark, goready};
use crate::sched::Sched;

const READY: usize = 1;
const WAIT: usize = 2;
const WAKE_TOKEN: u64 = u64::MAX;
/// Master-epoll token of shard `i`: `SHARD_TOKEN0 - i` (table indices, the
/// tokens inside a shard, stay far below).
const SHARD_TOKEN0: u64 = u64::MAX - 1;
/// At most this many shards, whatever the P count.
const MAX_SHARDS: usize = 64;

/// The runtime's poller.
pub struct Netpoll {
    /// Unique per poller ever created (never an address, which a later
    /// runtime could reuse): names the poller a [`PollDesc`] belongs to.
    id: u64,
    /// The master instance: the wake eventfd and every shard's epoll fd
    /// (level-triggered), for the blocking poll and sysmon's.
    ep: Epoll,
    /// One edge-triggered instance per P (modulo [`MAX_SHARDS`]): a
    /// descriptor registers with shard `fd % shards.len()`, and a P's
    /// non-blocking poll asks its own shard first.
    shards: Box<[Epoll]>,
    /// Loopback TCP ends whose partner has not registered yet: (local,
    /// peer) -> shard (see [`Netpoll::pair`]).
    pairs: Mutex<HashMap<PairKey, usize>>,
    wake_fd: EventFd,
    wake_pending: AtomicBool,
    waiters: AtomicUsize,
    table: RwLock<Vec<Option<Arc<PollDesc>>>>,
    free: Mutex<Vec<usize>>,
}

impl fmt::Debug for Netpoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Netpoll(waiters {})", self.waiters())
    }
}

/// Which way a goroutine waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Readable (or a listener with a pending connection).
    Read,
    /// Writable.
    Write,
}

/// Why a wait ended without readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The deadline passed.
    TimedOut,
    /// The descriptor was closed.
    Closed,
}

/// Per-descriptor poll state (Go's `pollDesc`).
pub struct PollDesc {
    fd: RawFd,
    /// The [`Netpoll::id`] of the poller it is registered with.
    owner: u64,
    /// The shard it is registered with (moves once at most, when
    /// [`Netpoll::pair`] finds the other end of a loopback connection).
    shard: AtomicUsize,
    /// Its key in [`Netpoll`]'s table of loopback ends waiting for their
    /// partner, while it is there.
    pair_key: Mutex<Option<PairKey>>,
    index: usize,
    rg: AtomicUsize,
    wg: AtomicUsize,
    closing: AtomicBool,
    /// Bumped at every deadline change so stale deadline timers do nothing.
    rseq: AtomicU64,
    wseq: AtomicU64,
    rexpired: AtomicBool,
    wexpired: AtomicBool,
}

impl fmt::Debug for PollDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PollDesc(fd {})", self.fd)
    }
}

impl Netpoll {
    /// A poller with `nshards` shards (the runtime's P count; clamped to
    /// 1..=[`MAX_SHARDS`]).
    pub(crate) fn new(nshards: usize) -> nix::Result<Netpoll> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake_fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        ep.add(
            wake_fd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        let mut shards = Vec::new();
        for i in 0..nshards.clamp(1, MAX_SHARDS) {
            let shard = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            ep.add(
                shard.0.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, SHARD_TOKEN0 - i as u64),
            )?;
            shards.push(shard);
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Netpoll {
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ep,
            shards: shards.into_boxed_slice(),
            pairs: Mutex::new(HashMap::new()),
            wake_fd,
            wake_pending: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            table: RwLock::new(Vec::new()),
            free: Mutex::new(Vec::new()),
        })
    }

    /// Goroutines parked on I/O.
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::SeqCst)
    }

    /// Breaks a blocking poll (Go's `netpollBreak`). Coalesced.
    pub fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.wake_fd.write(1);
    }

    /// Registers `fd` (which must be non-blocking) for edge-triggered events.
    pub fn register(&self, fd: BorrowedFd<'_>) -> std::io::Result<Arc<PollDesc>> {
        let index = {
            let mut free = self.free.lock().unwrap();
            let mut t = self.table.write().unwrap();
            match free.pop() {
                Some(i) => i,
                None => {
                    t.push(None);
                    t.len() - 1
                }
            }
        };
        let shard = fd.as_raw_fd() as usize % self.shards.len();
        let pd = Arc::new(PollDesc {
            fd: fd.as_raw_fd(),
            owner: self.id,
            shard: AtomicUsize::new(shard),
            pair_key: Mutex::new(None),
            index,
            rg: AtomicUsize::new(0),
            wg: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            rseq: AtomicU64::new(0),
            wseq: AtomicU64::new(0),
            rexpired: AtomicBool::new(false),
            wexpired: AtomicBool::new(false),
        });
        self.table.write().unwrap()[index] = Some(pd.clone());
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        if let Err(e) = self.shards[shard].add(fd, EpollEvent::new(flags, index as u64)) {
            self.table.write().unwrap()[index] = None;
            self.free.lock().unwrap().push(index);
            return Err(std::io::Error::from_raw_os_error(e as i32));
        }
        self.pair(&pd, fd);
        Ok(pd)
    }

    /// Puts the two ends of a loopback TCP connection inside this runtime
    /// on one shard, so that one P (one CPU) runs both: on loopback the
    /// writer's CPU delivers the segment, and a reader on the same CPU finds
    /// the socket's state in its cache. Called at registration and again
    /// once a `connect` completes (an end that has no peer yet is skipped).
    /// The first end of a pair to get here records itself; the second
    /// moves to the first's shard. Descriptors that are not connected
    /// loopback TCP sockets keep their shard.
    pub fn pair(&self, pd: &PollDesc, fd: BorrowedFd<'_>) {
        if self.shards.len() == 1 {
            return;
        }
        let Some(key) = loopback_pair_key(fd) else {
            return;
        };
        let mut slot = pd.pair_key.lock().unwrap();
        if slot.is_some() {
            return;
        }
        let mut pairs = self.pairs.lock().unwrap();
        let (local, peer) = key;
        match pairs.remove(&(peer, local)) {
            Some(shard) => {
                drop(pairs);
                // Paired: a second call (registration, then `connect`)
                // does nothing. Removing the key at deregistration is a
                // no-op, as only the first end's key was in the table.
                *slot = Some(key);
                let old = pd.shard.load(Ordering::Relaxed);
                if shard != old && self.move_to_shard(fd, pd, old, shard) {
                    pd.shard.store(shard, Ordering::Relaxed);
                }
            }
            None => {
                pairs.insert(key, pd.shard.load(Ordering::Relaxed));
                *slot = Some(key);
            }
        }
    }

    /// Re-registers `fd` from shard `old` to shard `new`. Adding it to the
    /// new shard reports its current readiness as an edge, so nothing that
    /// arrived meanwhile is missed.
    fn move_to_shard(&self, fd: BorrowedFd<'_>, pd: &PollDesc, old: usize, new: usize) -> bool {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        if self.shards[new]
            .add(fd, EpollEvent::new(flags, pd.index as u64))
            .is_err()
        {
            return false;
        }
        let _ = self.shards[old].delete(fd);
        true
    }

    /// Unregisters a descriptor before it is closed; wakes its waiters with
    /// [`WaitError::Closed`].
    pub fn deregister(&self, pd: &PollDesc, fd: BorrowedFd<'_>) {
        pd.closing.store(true, Ordering::SeqCst);
        let _ = self.shards[pd.shard.load(Ordering::Relaxed)].delete(fd);
        if let Some(key) = pd.pair_key.lock().unwrap().take() {
            self.pairs.lock().unwrap().remove(&key);
        }
        for g in [unblock(&pd.rg, false), unblock(&pd.wg, false)]
            .into_iter()
            .flatten()
        {
            goready(g);
        }
        self.table.write().unwrap()[pd.index] = None;
        self.free.lock().unwrap().push(pd.index);
    }

    /// The shard a P polls first.
    pub(crate) fn shard_of(&self, p: &gmp_p::P) -> usize {
        p.id % self.shards.len()
    }

    /// Polls shard `i` without waiting and returns the goroutines made
    /// runnable.
    pub(crate) fn poll_shard(&self, i: usize) -> Vec<GRef> {
        let mut out = Vec::new();
        self.drain_shard(i, &mut out);
        make_runnable(&out);
        out
    }

    /// Polls for up to `delay_ns` (`-1`: forever, `0`: no wait) on every
    /// shard and returns the goroutines made runnable (Go's `netpoll`).
    pub(crate) fn poll(&self, _s: &Sched, delay_ns: i64) -> Vec<GRef> {
        let timeout: EpollTimeout = if delay_ns < 0 {
            EpollTimeout::NONE
        } else if delay_ns == 0 {
            EpollTimeout::ZERO
        } else {
            // Round up to whole milliseconds: never wake before a timer.
            let ms = (delay_ns as u64).div_ceil(1_000_000).min(i32::MAX as u64) as i32;
            EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
        };
        let mut events = [EpollEvent::empty(); MAX_SHARDS + 1];
        let n = self.ep.wait(&mut events, timeout).unwrap_or_default();
        let mut out = Vec::new();
        for ev in &events[..n] {
            if ev.data() == WAKE_TOKEN {
                let _ = self.wake_fd.read();
                self.wake_pending.store(false, Ordering::Release);
                continue;
            }
            let i = (SHARD_TOKEN0 - ev.data()) as usize;
            if i < self.shards.len() {
                self.drain_shard(i, &mut out);
            }
        }
        make_runnable(&out);
        out
    }

    /// Takes up to 128 events from shard `i` without waiting, moving their
    /// slots on and collecting the parked Gs (still `Waiting`).
    fn drain_shard(&self, i: usize, out: &mut Vec<GRef>) {
        let mut events = [EpollEvent::empty(); 128];
        let n = self.shards[i]
            .wait(&mut events, EpollTimeout::ZERO)
            .unwrap_or_default();
        if n == 0 {
            return;
        }
        let table = self.table.read().unwrap();
        for ev in &events[..n] {
            let Some(Some(pd)) = table.get(ev.data() as usize) else {
                continue;
            };
            let f = ev.events();
            let err = f.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
            if err || f.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP) {
                if let Some(g) = unblock(&pd.rg, true) {
                    out.push(g);
                }
            }
            if err || f.contains(EpollFlags::EPOLLOUT) {
                if let Some(g) = unblock(&pd.wg, true) {
                    out.push(g);
                }
            }
        }
    }

    /// Parks the calling goroutine until `pd` is ready in `mode`, or the
    /// deadline set by [`PollDesc::set_deadline`] passes.
    pub fn wait(&self, pd: &PollDesc, mode: Mode) -> Result<(), WaitError> {
        let (slot, expired) = match mode {
            Mode::Read => (&pd.rg, &pd.rexpired),
            Mode::Write => (&pd.wg, &pd.wexpired),
        };
        if pd.closing.load(Ordering::SeqCst) {
            return Err(WaitError::Closed);
        }
        if expired.load(Ordering::SeqCst) {
            return Err(WaitError::TimedOut);
        }
        // 0 -> WAIT (or consume a READY that came first).
        loop {
            let old = slot.load(Ordering::SeqCst);
            if old == READY {
                slot.store(0, Ordering::SeqCst);
                return Ok(());
            }
            assert_eq!(
                old, 0,
                "gmp: two goroutines wait on one descriptor in one direction"
            );
            if slot
                .compare_exchange(0, WAIT, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break;
            }
        }
        // Go's netpollblock re-check: a deadline or close that ran between
        // the checks above and our 0 -> WAIT saw the slot at 0 and woke
        // nobody. (Its store to `expired`/`closing` and our CAS are SeqCst,
        // so one of the two sides sees the other.)
        if pd.closing.load(Ordering::SeqCst) || expired.load(Ordering::SeqCst) {
            if slot.swap(0, Ordering::SeqCst) == READY {
                return Ok(());
            }
            return Err(if pd.closing.load(Ordering::SeqCst) {
                WaitError::Closed
            } else {
                WaitError::TimedOut
            });
        }
        // A goroutine inside `blocking` (status Syscall, no P) must not
        // park: it waits like a plain thread.
        let can_park = crate::proc::current_g()
            .map(|g| g.status.get() == gmp_g::Status::Running)
            .unwrap_or(false);
        if can_park {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            gopark(WaitReason::IoWait, |g: GRef| {
                // Go's netpollblockcommit: WAIT -> G, unless the poller or a
                // deadline already moved the slot.
                slot.compare_exchange(
                    WAIT,
                    g.as_ptr() as usize,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            });
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            // The waker (poller or deadline) moved the slot on; consume it.
            let old = slot.swap(0, Ordering::SeqCst);
            if old == READY {
                return Ok(());
            }
        } else {
            // A plain thread: poll the fd directly with a short sleep loop.
            loop {
                let old = slot.load(Ordering::SeqCst);
                if old == READY {
                    slot.store(0, Ordering::SeqCst);
                    return Ok(());
                }
                if pd.closing.load(Ordering::SeqCst) || expired.load(Ordering::SeqCst) {
                    slot.store(0, Ordering::SeqCst);
                    break;
                }
                let fd = pd.fd;
                let mut pfd = [nix::poll::PollFd::new(
                    // SAFETY: the descriptor is open while its PollDesc is
                    // registered (the caller owns both).
                    unsafe { BorrowedFd::borrow_raw(fd) },
                    match mode {
                        Mode::Read => nix::poll::PollFlags::POLLIN,
                        Mode::Write => nix::poll::PollFlags::POLLOUT,
                    },
                )];
                if let Ok(n) = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10u8)) {
                    if n > 0 {
                        slot.store(0, Ordering::SeqCst);
                        return Ok(());
                    }
                }
            }
        }
        if pd.closing.load(Ordering::SeqCst) {
            Err(WaitError::Closed)
        } else {
            Err(WaitError::TimedOut)
        }
    }
}

/// One end of a TCP connection: (local address, peer address).
type PairKey = (SocketAddr, SocketAddr);

/// The (local, peer) addresses of a connected TCP socket whose peer is a
/// loopback address; `None` for anything else (not a socket, not TCP, not
/// connected yet, a remote peer).
fn loopback_pair_key(fd: BorrowedFd<'_>) -> Option<PairKey> {
    use nix::sys::socket::{
        getpeername, getsockname, getsockopt, sockopt, SockType, SockaddrStorage,
    };
    if getsockopt(&fd, sockopt::SockType).ok()? != SockType::Stream {
        return None;
    }
    let to_addr = |a: SockaddrStorage| -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::from(*v4));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    };
    let peer = to_addr(getpeername::<SockaddrStorage>(fd.as_raw_fd()).ok()?)?;
    if !peer.ip().is_loopback() {
        return None;
    }
    let local = to_addr(getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok()?)?;
    Some((local, peer))
}

/// Makes the Gs a poll collected Runnable, once, for every caller: the
/// blocking poll in findrunnable runs the first G directly, so a caller
/// that forgot the transition would execute a Waiting G.
fn make_runnable(out: &[GRef]) {
    for g in out {
        if g.status
            .cas(gmp_g::Status::Waiting, gmp_g::Status::Runnable)
            .is_err()
        {
            panic!(
                "gmp: netpoll readied goroutine {} that was not waiting",
                g.id()
            );
        }
    }
}

/// Go's `netpollunblock`: move the slot to READY (ioready) or 0, returning
/// the parked G if there was one.
fn unblock(slot: &AtomicUsize, ioready: bool) -> Option<GRef> {
    loop {
        let old = slot.load(Ordering::SeqCst);
        if old == READY {
            return None;
        }
        if old == 0 && !ioready {
            return None;
        }
        let new = if ioready { READY } else { 0 };
        // For a deadline (ioready false) we still need the waiter to see a
        // non-READY wake: it reads 0 and reports the timeout/close.
        if slot
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            if old > WAIT {
                // SAFETY: the slot held the address of the parked G
                // (stored by the waiter's commit).
                return Some(unsafe { GRef::from_ptr(old as *mut G) });
            }
            return None;
        }
    }
}

struct DeadlineTimer {
    pd: Arc<PollDesc>,
    mode: Mode,
    seq: u64,
    armed: AtomicBool,
}

impl Timer for DeadlineTimer {
    fn armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }
    fn fire(&self, _now: u64) -> Option<u64> {
        if !self.armed.swap(false, Ordering::AcqRel) {
            return None;
        }
        let (seq, expired, slot) = match self.mode {
            Mode::Read => (&self.pd.rseq, &self.pd.rexpired, &self.pd.rg),
            Mode::Write => (&self.pd.wseq, &self.pd.wexpired, &self.pd.wg),
        };
        if seq.load(Ordering::SeqCst) != self.seq {
            return None;
        }
        expired.store(true, Ordering::SeqCst);
        if let Some(g) = unblock(slot, false) {
            goready(g);
        }
        None
    }
}

impl PollDesc {
    /// Sets (or clears, with `None`) the deadline for waits in `mode`,
    /// `d` from now (Go's `poll_runtime_pollSetDeadline`).
    pub fn set_deadline(self: &Arc<Self>, s: &Sched, mode: Mode, d: Option<Duration>) {
        let (seq, expired) = match mode {
            Mode::Read => (&self.rseq, &self.rexpired),
            Mode::Write => (&self.wseq, &self.wexpired),
        };
        let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
        expired.store(false, Ordering::SeqCst);
        if let Some(d) = d {
            let t = Arc::new(DeadlineTimer {
                pd: self.clone(),
                mode,
                seq: n,
                armed: AtomicBool::new(true),
            });
            crate::time::start_timer(s, d, t);
        }
    }
    /// [`Netpoll::wait`] on the poller `self` is registered with, if the
    /// caller runs on one of that runtime's Ms (the common case, which then
    /// costs no reference count on the runtime); `None` otherwise.
    pub fn wait_here(&self, mode: Mode) -> Option<Result<(), WaitError>> {
        let (_, s) = crate::tls::current()?;
        if s.netpoll.id != self.owner {
            return None;
        }
        Some(s.netpoll.wait(self, mode))
    }

    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Sched {
    /// Polls without blocking and makes the ready goroutines runnable:
    /// returns one to run now (if `p` is given) and queues the rest.
    ///
    /// `p`'s own shard is asked first, so a descriptor's goroutine keeps
    /// running on the P (and CPU) that owns its shard; the other shards only
    /// when that one had nothing.
    pub(crate) fn netpoll_inject(&self, delay: i64, p: Option<&'static gmp_p::P>) -> Option<GRef> {
        let mut list = match p {
            Some(p) if delay == 0 => self.netpoll.poll_shard(self.netpoll.shard_of(p)),
            _ => Vec::new(),
        };
        if list.is_empty() {
            list = self.netpoll.poll(self, delay);
        }
        if list.is_empty() {
            return None;
        }
        self.lastpoll
            .store(self.nanotime().max(1), Ordering::SeqCst);
        let mut it = list.into_iter();
        let first = if p.is_some() { it.next() } else { None };
        self.inject_list(it.collect(), p);
        first
    }

    /// Go's `injectglist`: queue Gs that [`Netpoll::poll`] made runnable.
    pub(crate) fn inject_list(&self, list: Vec<GRef>, p: Option<&'static gmp_p::P>) {
        if list.is_empty() {
            return;
        }
        let n = list.len();
        for g in list {
            debug_assert_eq!(g.status.get(), gmp_g::Status::Runnable);
            g.runnable_since
                .store(self.sample_clock(), Ordering::Relaxed);
            match p {
                Some(p) => p.runq_put(g, false, &mut |x| self.globrunqput(x)),
                None => self.globrunqput(g),
            }
        }
        for _ in 0..n.min(self.npidle.load(Ordering::SeqCst)) {
            if !crate::proc::startm(self, None, false) {
                break;
            }
        }
        crate::proc::wakep(self);
    }

    /// Sysmon's poll: if nobody polled for 10 ms, poll and inject
    /// (Go's sysmon `netpoll(0)` step). Returns how many were readied.
    pub fn sysmon_netpoll(&self) -> usize {
        let last = self.lastpoll.load(Ordering::SeqCst);
        let now = self.nanotime();
        if self.netpoll.waiters() == 0 || last == 0 || now.saturating_sub(last) < 10_000_000 {
            return 0;
        }
        if self
            .lastpoll
            .compare_exchange(last, now.max(1), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return 0;
        }
        let list = self.netpoll.poll(self, 0);
        let n = list.len();
        self.inject_list(list, None);
        n
    }

    /// The runtime's netpoller.
    pub fn netpoller(&self) -> &Netpoll {
        &self.netpoll
    }
}

// ---------------------------------------------------------------------------
// Receive-queue hints: skipping the read that would only say EAGAIN.
// ---------------------------------------------------------------------------
//
// A request/response connection reads right after it wrote, before the
// peer could answer, so Go's "try, then park on EAGAIN" pays a failed
// `recvfrom` per message (a third of the syscalls of a TCP echo). Linux's
// `TCP_INQ` makes `recvmsg` report how many bytes are left in the receive
// queue after the read; when that is zero the next read can park at once.
// That is sound with edge-triggered epoll because every byte that arrives
// after the read fires a new edge, which the poller turns into `READY` on
// the descriptor's read slot after the reader consumed the previous one;
// `Netpoll::wait` returns at once on `READY`. The kernel reports 1, not 0,
// once the peer shut down, so end-of-file is never skipped.

/// Turns on `TCP_INQ` for a TCP socket, so [`recv_inq`] learns whether it
/// emptied the receive queue (Linux 4.18+; an error means "unsupported").
pub fn enable_tcp_inq(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: (1) `fd` is an open descriptor, borrowed for the call;
    // (2) the option value points to a live `c_int` and the length passed
    // is its size; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INQ,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `recvmsg(2)` into `bufs` on a socket with `TCP_INQ` on: the bytes read,
/// and whether the kernel reported an empty receive queue right after the
/// read (false when it reported nothing, e.g. `TCP_INQ` is off, or at
/// end-of-file).
pub fn recv_inq(
    fd: BorrowedFd<'_>,
    bufs: &mut [std::io::IoSliceMut<'_>],
) -> std::io::Result<(usize, bool)> {
    /// Room for one `cmsghdr` carrying an `int` (`CMSG_SPACE(4)` is 24 on
    /// 64-bit Linux), aligned like a `cmsghdr`.
    #[repr(C, align(8))]
    struct CmsgBuf([u8; 32]);
    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic on their argument only.
    const INQ_CMSG_SPACE: usize = unsafe { libc::CMSG_SPACE(4) } as usize;
    // SAFETY: as above.
    const INQ_CMSG_LEN: usize = unsafe { libc::CMSG_LEN(4) } as usize;
    const _: () = assert!(INQ_CMSG_SPACE <= std::mem::size_of::<CmsgBuf>());
    let mut cbuf = CmsgBuf([0; 32]);
    // SAFETY: `msghdr` is a plain C struct for which all-zero is valid
    // (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSliceMut` is ABI-compatible with `iovec` on Unix (std's guarantee).
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
    // SAFETY: (1) `fd` is open for the call; (2) `msg` points to `iovlen`
    // live, writable iovecs borrowed from `bufs` and to a control buffer of
    // `controllen` writable bytes, all outliving the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut drained = false;
    // SAFETY: `msg` was filled by the kernel: CMSG_FIRSTHDR/NXTHDR walk the
    // `controllen` bytes it wrote inside `cbuf` and return null past them.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is non-null, so it points to a complete `cmsghdr`
        // inside `cbuf` (CMSG_FIRSTHDR/NXTHDR check the length).
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_TCP
            && h.cmsg_type == libc::TCP_CM_INQ
            && h.cmsg_len as usize >= INQ_CMSG_LEN
        {
            // SAFETY: the header's length covers an `int` of data, which
            // CMSG_DATA points to (possibly unaligned, hence the read).
            let inq = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()) };
            drained = inq == 0;
        }
        // SAFETY: as above; `c` is a header inside the kernel-written area.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok((n as usize, drained && n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    fn shard(pd: &PollDesc) -> usize {
        pd.shard.load(Ordering::Relaxed)
    }

    /// A connected loopback pair whose two descriptors have different
    /// default shards (`fd % 2`), so that pairing has something to move.
    fn pair_with_split_parity(np: &Netpoll) -> (TcpListener, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // Descriptors are reused lowest first, so keep the misses open (and
        // one extra descriptor between tries) to shift the numbers.
        let mut misses = Vec::new();
        for _ in 0..20 {
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (a, _) = l.accept().unwrap();
            let n = np.shards.len();
            if c.as_raw_fd() as usize % n != a.as_raw_fd() as usize % n {
                return (l, c, a);
            }
            misses.push((c, a, UdpSocket::bind("127.0.0.1:0").unwrap()));
        }
        panic!("no connection with split parity in 20 tries")
    }

    #[test]
    fn the_two_ends_of_a_loopback_connection_share_a_shard() {
        let np = Netpoll::new(2).unwrap();
        let (_l, c, a) = pair_with_split_parity(&np);
        let pc = np.register(c.as_fd()).unwrap();
        assert_eq!(np.pairs.lock().unwrap().len(), 1, "first end waits");
        let pa = np.register(a.as_fd()).unwrap();
        assert_eq!(shard(&pa), shard(&pc), "second end moved to the first's");
        assert_eq!(
            shard(&pc),
            c.as_raw_fd() as usize % 2,
            "first end kept its shard"
        );
        assert!(np.pairs.lock().unwrap().is_empty(), "pair completed");
        np.pair(&pa, a.as_fd());
        np.pair(&pc, c.as_fd());
        assert!(
            np.pairs.lock().unwrap().is_empty(),
            "pairing again leaves nothing behind"
        );
        assert_eq!(shard(&pa), shard(&pc));
        // The moved end still gets its events from the new shard: data
        // written by the client readies the server end's slot.
        use std::io::Write;
        (&c).write_all(b"x").unwrap();
        let mut evs = [EpollEvent::empty(); 4];
        let mut got = 0;
        for _ in 0..100 {
            got = np.shards[shard(&pa)]
                .wait(&mut evs, EpollTimeout::from(10u16))
                .unwrap();
            if evs[..got].iter().any(|e| e.data() == pa.index as u64) {
                break;
            }
        }
        assert!(
            evs[..got].iter().any(|e| e.data() == pa.index as u64),
            "no event for the moved end on its new shard"
        );
        np.deregister(&pa, a.as_fd());
        np.deregister(&pc, c.as_fd());
    }

    #[test]
    fn an_end_registered_before_its_connect_completes_pairs_afterwards() {
        // gmp's `connect` registers the socket while the handshake is in
        // flight (no peer yet), then calls `pair` once it completes.
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
        let np = Netpoll::new(2).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(addr) = l.local_addr().unwrap() else {
            unreachable!()
        };
        let mut misses = Vec::new();
        for _ in 0..50 {
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            let pc = np.register(fd.as_fd()).unwrap();
            assert!(np.pairs.lock().unwrap().is_empty(), "no peer yet");
            let _ = connect(fd.as_raw_fd(), &SockaddrIn::from(addr));
            let (a, _) = l.accept().unwrap();
            if fd.as_raw_fd() as usize % 2 == a.as_raw_fd() as usize % 2 {
                np.deregister(&pc, fd.as_fd());
                // Keep them open (plus one more descriptor) so the next
                // try gets other numbers.
                misses.push((fd, a, UdpSocket::bind("127.0.0.1:0").unwrap()));
                continue;
            }
            let pa = np.register(a.as_fd()).unwrap();
            assert_eq!(np.pairs.lock().unwrap().len(), 1, "server end waits");
            np.pair(&pc, fd.as_fd());
            assert_eq!(shard(&pc), shard(&pa), "client end moved");
            assert!(np.pairs.lock().unwrap().is_empty());
            np.deregister(&pa, a.as_fd());
            np.deregister(&pc, fd.as_fd());
            return;
        }
        panic!("no connection with split parity in 50 tries");
    }

    #[test]
    fn an_unpaired_end_leaves_the_table_when_deregistered() {
        let np = Netpoll::new(2).unwrap();
        let (_l, c, _a) = pair_with_split_parity(&np);
        let pc = np.register(c.as_fd()).unwrap();
        assert_eq!(np.pairs.lock().unwrap().len(), 1);
        np.deregister(&pc, c.as_fd());
        assert!(np.pairs.lock().unwrap().is_empty());
    }

    #[test]
    fn other_descriptors_keep_their_default_shard() {
        let np = Netpoll::new(2).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let pu = np.register(u.as_fd()).unwrap();
        let pl = np.register(l.as_fd()).unwrap();
        assert_eq!(shard(&pu), u.as_raw_fd() as usize % 2);
        assert_eq!(shard(&pl), l.as_raw_fd() as usize % 2);
        assert!(np.pairs.lock().unwrap().is_empty());
        np.deregister(&pu, u.as_fd());
        np.deregister(&pl, l.as_fd());
    }

    #[test]
    fn one_shard_means_no_pairing() {
        let np = Netpoll::new(1).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let pc = np.register(c.as_fd()).unwrap();
        assert!(np.pairs.lock().unwrap().is_empty());
        np.deregister(&pc, c.as_fd());
    }
}
