//! # gmp-g: the goroutine
//!
//! ## The problem
//! A goroutine (G) is touched by many threads: the M running it, the M that
//! readies it from a channel, sysmon asking it to yield, a thief stealing it
//! from a run queue, a goroutine dump. Each must agree on one question at a
//! time: *who owns this G's stack right now?* Getting that wrong runs one
//! stack on two threads, or loses a wake-up.
//!
//! ## The mechanism
//! The answer is a single atomic status word, [`StatusWord`], with Go's
//! values (`runtime2.go`): [`Status::Idle`], [`Status::Runnable`],
//! [`Status::Running`], [`Status::Syscall`], [`Status::Waiting`],
//! [`Status::Dead`], [`Status::Copystack`], [`Status::Preempted`], plus the
//! [`SCAN`] bit. It is changed **only** by compare-and-swap through
//! [`StatusWord::cas`], whose `#[must_use]` result forces every caller to
//! decide what a lost race means. Who owns the stack in each status:
//!
//! | status | stack owned by | who may move it on |
//! |---|---|---|
//! | `Idle` | nobody (just allocated) | the creator |
//! | `Runnable` | the run queue holding it | whoever dequeues it |
//! | `Running` | the M executing it | that M |
//! | `Syscall` | the M executing it, which holds no P | that M |
//! | `Waiting` | nobody: parked in some wait queue | the single waker that wins the CAS to `Runnable` |
//! | `Dead` | the free list holding it, or its live `JoinHandle` (it holds no stack) | `newproc` reusing it |
//! | `Preempted` | nobody: stopped by a preemption request | the scheduler |
//! | `Copystack` | the M moving it (reserved; our stacks never move) | that M |
//!
//! The status lattice and the argument that no wake-up is lost live in
//! `gmp-sched/DESIGN.md`.
//!
//! A G carries its entry closure inline (up to [`ENTRY_INLINE`] bytes;
//! larger ones are boxed), so spawning a goroutine allocates nothing here:
//! Gs themselves are recycled through free lists. The same buffer then
//! holds the goroutine's result for its `JoinHandle` ([`G::put_result`]),
//! and the [`join`] word decides when both the goroutine and its handle
//! are done with the G, so that it goes back to a free list only then.
//!
//! Goroutine ids are unique and never reused: a P takes them from the global
//! counter in batches of [`GOID_BATCH`] (Go's `_GoidCacheBatch` = 16), so the
//! shared counter is touched once per 16 spawns. The main goroutine is 1.
//!
//! ## Invariants
//! 1. Only the thread that owns the stack (per the table) reads or writes the
//!    saved contexts, the entry closure and the stack field. A G has a stack
//!    only between its first run ([`G::start`]) and its exit
//!    ([`G::take_stack`]): one waiting in a run queue to start has none.
//! 2. A `GRef` stays valid until the runtime that made it is dropped: Gs are
//!    recycled through free lists, never freed while the runtime lives. A
//!    G whose `JoinHandle` outlives the runtime is freed by the handle.
//!
//! ## Rejected alternatives
//! * A `Mutex` per G: a lock on every switch, and no way for a signal handler
//!   or a dump to read the state without risking a deadlock.
//! * Reference-counted Gs (`Arc<G>`): two atomic RMWs per queue hop; Go's
//!   "Gs live forever, recycled" rule is cheaper and simpler to reason about.

#![warn(missing_docs)]

pub mod join;
pub mod sync;

pub use join::JoinWord;

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use gmp_stack::switch::Context;
use gmp_stack::Stack;

/// Goroutine ids handed to a P at once (Go's `_GoidCacheBatch`).
pub const GOID_BATCH: u64 = 16;

/// The scan bit, or-ed into a status while a stack scan holds the G (Go's
/// `_Gscan`). Kept for fidelity and for goroutine dumps; gmp has no GC.
pub const SCAN: u32 = 0x1000;

/// A goroutine status, with Go's numeric values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Just allocated, not yet initialised.
    Idle = 0,
    /// On a run queue, not executing user code; owns no stack owner.
    Runnable = 1,
    /// Executing user code on an M that holds a P.
    Running = 2,
    /// Executing a blocking call on an M that released its P.
    Syscall = 3,
    /// Parked in a wait queue (channel, timer, lock, netpoll).
    Waiting = 4,
    /// Finished (or never started): on a free list.
    Dead = 6,
    /// Its stack is being moved (reserved: gmp stacks never move).
    Copystack = 8,
    /// Stopped by a preemption request, not yet queued.
    Preempted = 9,
}

impl Status {
    /// Decodes a raw status word (scan bit ignored).
    pub fn from_raw(v: u32) -> Option<Status> {
        Some(match v & !SCAN {
            0 => Status::Idle,
            1 => Status::Runnable,
            2 => Status::Running,
            3 => Status::Syscall,
            4 => Status::Waiting,
            6 => Status::Dead,
            8 => Status::Copystack,
            9 => Status::Preempted,
            _ => return None,
        })
    }
    /// Go's name for the status as printed in dumps ("runnable", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Runnable => "runnable",
            Status::Running => "running",
            Status::Syscall => "syscall",
            Status::Waiting => "waiting",
            Status::Dead => "dead",
            Status::Copystack => "copystack",
            Status::Preempted => "preempted",
        }
    }
}

/// A failed status transition: what the word held instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CasError {
    /// The status that was expected.
    pub expected: Status,
    /// The raw word found.
    pub found: u32,
}

impl fmt::Display for CasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad goroutine status: expected {:?}, found {:?} (raw {:#x})",
            self.expected,
            Status::from_raw(self.found),
            self.found
        )
    }
}

/// The atomic status word. Changed only through [`StatusWord::cas`].
pub struct StatusWord(sync::AtomicU32);

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Status::from_raw(self.raw()))
    }
}

impl StatusWord {
    /// A word holding `s`.
    pub fn new(s: Status) -> Self {
        StatusWord(sync::AtomicU32::new(s as u32))
    }
    /// The raw word (Acquire: pairs with the AcqRel of the CAS that set it).
    #[inline]
    pub fn raw(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
    /// The status, scan bit ignored.
    #[inline]
    pub fn get(&self) -> Status {
        Status::from_raw(self.raw()).unwrap_or(Status::Idle)
    }
    /// Moves `from -> to` atomically (Go's `casgstatus`). AcqRel: the
    /// winner sees everything the previous owner wrote before its own CAS.
    #[inline]
    #[must_use = "a lost status race must be handled"]
    pub fn cas(&self, from: Status, to: Status) -> Result<(), CasError> {
        self.0
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|found| CasError {
                expected: from,
                found,
            })
    }
    /// Sets the scan bit on a G in status `s` (Go's `castogscanstatus`).
    #[must_use = "a lost status race must be handled"]
    pub fn cas_to_scan(&self, s: Status) -> Result<(), CasError> {
        self.0
            .compare_exchange(
                s as u32,
                s as u32 | SCAN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(|found| CasError { expected: s, found })
    }
    /// Clears the scan bit, landing in `to` (Go's `casfrom_Gscanstatus`).
    #[must_use = "a lost status race must be handled"]
    pub fn cas_from_scan(&self, s: Status, to: Status) -> Result<(), CasError> {
        self.0
            .compare_exchange(
                s as u32 | SCAN,
                to as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(|found| CasError { expected: s, found })
    }
}

/// Why a goroutine is waiting (Go's `waitReason`, printed in dumps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum WaitReason {
    Zero = 0,
    ChanReceive,
    ChanSend,
    ChanReceiveNilChan,
    ChanSendNilChan,
    Select,
    SelectNoCases,
    Sleep,
    SyncMutexLock,
    SyncRWMutexRLock,
    SyncRWMutexLock,
    SyncCondWait,
    SyncWaitGroupWait,
    SyncOnce,
    IoWait,
    Join,
    Preempted,
    GcStop,
    Syscall,
}

impl WaitReason {
    /// The printed string, Go's where Go has one.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Zero => "",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::ChanSend => "chan send",
            WaitReason::ChanReceiveNilChan => "chan receive (nil chan)",
            WaitReason::ChanSendNilChan => "chan send (nil chan)",
            WaitReason::Select => "select",
            WaitReason::SelectNoCases => "select (no cases)",
            WaitReason::Sleep => "sleep",
            WaitReason::SyncMutexLock => "sync.Mutex.Lock",
            WaitReason::SyncRWMutexRLock => "sync.RWMutex.RLock",
            WaitReason::SyncRWMutexLock => "sync.RWMutex.Lock",
            WaitReason::SyncCondWait => "sync.Cond.Wait",
            WaitReason::SyncWaitGroupWait => "sync.WaitGroup.Wait",
            WaitReason::SyncOnce => "sync.Once.Do",
            WaitReason::IoWait => "IO wait",
            WaitReason::Join => "goroutine join",
            WaitReason::Preempted => "preempted",
            WaitReason::GcStop => "stop the world",
            WaitReason::Syscall => "syscall",
        }
    }
    /// Decodes the byte stored in a G.
    pub fn from_u8(v: u8) -> WaitReason {
        use WaitReason::*;
        const ALL: [WaitReason; 19] = [
            Zero,
            ChanReceive,
            ChanSend,
            ChanReceiveNilChan,
            ChanSendNilChan,
            Select,
            SelectNoCases,
            Sleep,
            SyncMutexLock,
            SyncRWMutexRLock,
            SyncRWMutexLock,
            SyncCondWait,
            SyncWaitGroupWait,
            SyncOnce,
            IoWait,
            Join,
            Preempted,
            GcStop,
            Syscall,
        ];
        ALL.get(v as usize).copied().unwrap_or(Zero)
    }
}

/// A boxed entry closure (any `FnOnce() + Send + 'static` is accepted by
/// [`G::prepare`]; this is the type-erased form some callers hold).
pub type Entry = Box<dyn FnOnce() + Send + 'static>;

/// Bytes of entry closure stored inside the G itself: the G's third cache
/// line less the vtable pointer and the mailbox sequence (see [`G`]'s
/// layout). It holds `gmp::go`'s wrapper (the user's closure plus one G
/// pointer) around a user closure of up to 40 bytes, e.g. two `Arc`s and
/// three integers. Larger closures are boxed. Go copies a new goroutine's
/// arguments onto its stack the same way, with no allocation. The same
/// bytes later carry values handed to the parked goroutine
/// ([`G::put_mail`]) and its result ([`G::put_result`]).
pub const ENTRY_INLINE: usize = 48;

/// Storage for an entry closure: inline bytes, 8-aligned.
#[repr(C, align(8))]
struct EntryBuf([MaybeUninit<u8>; ENTRY_INLINE]);

/// How to run or drop the closure in an [`EntryBuf`].
struct EntryVtable {
    /// Moves the closure out of the buffer and calls it.
    call: unsafe fn(*mut u8),
    /// Drops the closure in place without calling it.
    drop: unsafe fn(*mut u8),
}

/// The entry closure slot: `vtable` is `Some` while a closure is stored.
/// 56 bytes: with [`G::mail_seq`] one cache line.
#[repr(C)]
struct EntrySlot {
    vtable: Option<&'static EntryVtable>,
    buf: EntryBuf,
}

/// # Safety
/// `p` holds an initialised `F` (inline) that is not used afterwards.
unsafe fn call_inline<F: FnOnce()>(p: *mut u8) {
    // SAFETY: per the contract; the read moves the closure out.
    let f = unsafe { std::ptr::read(p as *mut F) };
    f()
}
/// # Safety
/// As [`call_inline`].
unsafe fn drop_inline<F>(p: *mut u8) {
    // SAFETY: per the contract.
    unsafe { std::ptr::drop_in_place(p as *mut F) }
}
/// # Safety
/// `p` holds a `Box<F>` (as a raw pointer) that is not used afterwards.
unsafe fn call_boxed<F: FnOnce()>(p: *mut u8) {
    // SAFETY: per the contract; the pointer came from Box::into_raw.
    let f = unsafe { Box::from_raw(std::ptr::read(p as *mut *mut F)) };
    f()
}
/// # Safety
/// As [`call_boxed`].
unsafe fn drop_boxed<F>(p: *mut u8) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(std::ptr::read(p as *mut *mut F)) })
}

/// Whether `F` is stored inside the G rather than boxed.
const fn fits_inline<F>() -> bool {
    std::mem::size_of::<F>() <= ENTRY_INLINE && std::mem::align_of::<F>() <= 8
}

struct Vtables<F>(std::marker::PhantomData<F>);
impl<F: FnOnce()> Vtables<F> {
    const INLINE: EntryVtable = EntryVtable {
        call: call_inline::<F>,
        drop: drop_inline::<F>,
    };
    const BOXED: EntryVtable = EntryVtable {
        call: call_boxed::<F>,
        drop: drop_boxed::<F>,
    };
}

impl EntrySlot {
    const fn empty() -> Self {
        EntrySlot {
            vtable: None,
            buf: EntryBuf([MaybeUninit::uninit(); ENTRY_INLINE]),
        }
    }
    fn put<F: FnOnce() + Send + 'static>(&mut self, f: F) {
        self.clear();
        let p = self.buf.0.as_mut_ptr() as *mut u8;
        if fits_inline::<F>() {
            // SAFETY: the buffer is 8-aligned and ENTRY_INLINE bytes, which
            // holds an F (checked just above); it holds nothing live.
            unsafe { std::ptr::write(p as *mut F, f) };
            self.vtable = Some(&Vtables::<F>::INLINE);
        } else {
            // SAFETY: a pointer fits in the buffer, which holds nothing live.
            unsafe { std::ptr::write(p as *mut *mut F, Box::into_raw(Box::new(f))) };
            self.vtable = Some(&Vtables::<F>::BOXED);
        }
    }
    /// Runs the stored closure, if any (it is gone afterwards). No
    /// reference to the slot is held while the closure runs, so the
    /// closure may reuse the buffer (for its result, see [`G::put_result`]).
    ///
    /// # Safety
    /// `this` points to a live slot that nothing else accesses meanwhile
    /// except through the G's result methods.
    unsafe fn run(this: *mut EntrySlot) -> bool {
        // SAFETY: per the contract; the temporary borrow ends here.
        let Some(vt) = (unsafe { (*this).vtable.take() }) else {
            return false;
        };
        // SAFETY: vtable was Some, so the buffer holds the closure it was
        // made for; taking the vtable first means it is used once, and the
        // call moves the closure out before running it.
        unsafe { (vt.call)(std::ptr::addr_of_mut!((*this).buf) as *mut u8) };
        true
    }
    fn clear(&mut self) {
        if let Some(vt) = self.vtable.take() {
            // SAFETY: as in `run`.
            unsafe { (vt.drop)(self.buf.0.as_mut_ptr() as *mut u8) };
        }
    }
}

impl Drop for EntrySlot {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A goroutine. Shared by raw reference ([`GRef`]); see the crate docs for
/// who may touch which field.
///
/// Layout: three cache lines, in the order a goroutine's life touches
/// them. A spawned G usually runs and dies on another P than its spawner's
/// and comes back through the free lists, so each line it spans crosses
/// between CPUs twice per goroutine (measured: the first touch of a line
/// was most of `newproc`'s and `execute`'s cost in the spawn benchmark).
/// Line 0 holds what every switch touches (status, contexts, stack, M),
/// line 1 what spawn, park and wake touch, line 2 the entry closure (then
/// values handed over while parked, then the result).
#[repr(C, align(64))]
pub struct G {
    // Line 0: every switch.
    /// The status word (see the table in the crate docs).
    pub status: StatusWord,
    /// Who may still use the G once the goroutine finishes: the goroutine,
    /// its `JoinHandle`, or both (see [`join`]).
    pub join: JoinWord,
    /// Goroutine id; assigned anew each time the G is reused.
    pub goid: AtomicU64,
    /// The stack, from the goroutine's first run until it exits (a G
    /// waiting in a run queue to start has none).
    stack: UnsafeCell<Option<Stack>>,
    ctx: UnsafeCell<Option<Context>>,
    back: UnsafeCell<Option<Context>>,
    /// The M executing this G, as an opaque address (0 when none).
    pub m: AtomicUsize,
    /// The M this G is locked to (`lock_os_thread`), as an opaque address.
    pub lockedm: AtomicUsize,
    // Line 1: spawn, park, wake.
    /// Runtime clock (ns) when it last became runnable (latency metric).
    pub runnable_since: AtomicU64,
    /// Runtime clock (ns) when it started waiting, 0 if not waiting.
    pub wait_since: AtomicU64,
    /// The scheduler this G belongs to, as an opaque address.
    pub sched: AtomicUsize,
    /// Word passed by the waker to the woken G (Go's `g.param`): which
    /// select case fired, or a handoff marker.
    pub param: AtomicUsize,
    /// Id of the goroutine that spawned this one (0 for none).
    pub parent_goid: AtomicU64,
    /// Where `go` was called (`#[track_caller]`).
    created_at: AtomicPtr<Location<'static>>,
    /// A joiner waiting for the result, as an opaque word owned per the
    /// [`join`] protocol (0 when none).
    join_waiter: UnsafeCell<usize>,
    /// `lock_os_thread` nesting depth (touched only by the G itself).
    pub lock_count: AtomicU32,
    /// Why it waits (a [`WaitReason`] byte), valid while `Waiting`.
    pub wait_reason: AtomicU8,
    /// Set by sysmon or stop-the-world: yield at the next runtime entry.
    pub preempt: AtomicBool,
    /// Whether the runtime itself owns this G (not counted as a user G).
    pub system: AtomicBool,
    /// Set while the G is switched out from inside a runtime section (its
    /// M's `in_user` was false at the switch): the M that resumes it must
    /// keep the preemption signal handler off until the section ends.
    pub in_runtime: AtomicBool,
    // Line 2: the entry closure, then mail, then the result.
    entry: UnsafeCell<EntrySlot>,
    /// The sequence number of the goroutine's current mailbox (bumped by
    /// the goroutine itself when it arms one; never reset, so it never
    /// repeats for this G). See `gmp_sched::park::Mailbox`.
    pub mail_seq: AtomicU64,
}

// SAFETY: the UnsafeCell fields are only touched by the thread that owns the
// G's stack per its status (crate invariant 1), and the status CAS with
// AcqRel orders those accesses between successive owners.
unsafe impl Sync for G {}
// SAFETY: as above; a G moves between threads as Go's Gs move between Ms.
unsafe impl Send for G {}

impl fmt::Debug for G {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("G")
            .field("goid", &self.goid.load(Ordering::Relaxed))
            .field("status", &self.status)
            .finish()
    }
}

impl G {
    /// The goroutine id.
    #[inline]
    pub fn id(&self) -> u64 {
        self.goid.load(Ordering::Relaxed)
    }
    /// The stack this G runs on: `None` before its first run and after it
    /// exits.
    ///
    /// # Safety
    /// The caller owns the G's stack (crate invariant 1).
    #[inline]
    pub unsafe fn stack(&self) -> Option<Stack> {
        // SAFETY: per the contract, nobody writes the field concurrently.
        unsafe { *self.stack.get() }
    }
    /// Asks the CPU to fetch the G's three cache lines for writing, ahead of
    /// its reuse: a dead G usually comes back from another CPU, and its
    /// lines' first touches were most of `newproc`'s cost. A hint only: it
    /// changes no state and never faults.
    #[inline(always)]
    pub fn prefetch_for_write(&self) {
        G::prefetch_raw(self);
    }

    /// [`G::prefetch_for_write`] through a raw pointer, which may be stale
    /// or dangling: a prefetch never dereferences (it is a hint the CPU
    /// drops for an unmapped address), so any pointer is fine.
    #[inline(always)]
    pub fn prefetch_raw(g: *const G) {
        gmp_stack::prefetch_write_3_lines(g as *const u8);
    }

    /// Where the goroutine was created.
    pub fn created_at(&self) -> Option<&'static Location<'static>> {
        let p = self.created_at.load(Ordering::Acquire);
        // SAFETY: the pointer is null or came from a `&'static Location`.
        unsafe { p.as_ref() }
    }
    /// Records the creation site.
    pub fn set_created_at(&self, loc: &'static Location<'static>) {
        self.created_at
            .store(loc as *const _ as *mut _, Ordering::Release);
    }
    /// The current wait reason.
    pub fn wait_reason(&self) -> WaitReason {
        WaitReason::from_u8(self.wait_reason.load(Ordering::Relaxed))
    }

    /// Installs the entry closure for a (re)start. The G gets its stack
    /// and first context only when it first runs ([`G::start`]).
    ///
    /// # Safety
    /// The caller owns the G (status `Idle` or `Dead`, not yet published).
    #[inline]
    pub unsafe fn prepare<F: FnOnce() + Send + 'static>(&self, f: F) {
        // SAFETY: exclusive ownership per the contract.
        unsafe {
            debug_assert!((*self.stack.get()).is_none(), "a dead G kept its stack");
            (*self.entry.get()).put(f);
            *self.ctx.get() = None;
            *self.back.get() = None;
        }
    }

    /// Gives a G that never ran its stack, and returns the context that
    /// starts it at `entry_fn`.
    ///
    /// # Safety
    /// 1. The caller owns the G (status `Running`, about to resume it) and
    ///    the G has no stack and no saved context (it never ran).
    /// 2. `stack` is used by nothing else until [`G::take_stack`] returns it,
    ///    and `entry_fn` obeys [`Context::new`]'s contract.
    pub unsafe fn start(&self, stack: Stack, entry_fn: gmp_stack::switch::EntryFn) -> Context {
        // SAFETY: exclusive ownership per point 1; the stack is ours and
        // unused per point 2.
        unsafe {
            debug_assert!((*self.stack.get()).is_none() && (*self.ctx.get()).is_none());
            *self.stack.get() = Some(stack);
            Context::new(&stack, entry_fn)
        }
    }

    /// Takes the stack back from a G that exited, and drops its saved
    /// context (which points into that stack).
    ///
    /// # Safety
    /// The caller owns the G (status `Dead`), and no thread runs on its
    /// stack any more.
    pub unsafe fn take_stack(&self) -> Option<Stack> {
        // SAFETY: exclusive ownership per the contract.
        unsafe {
            *self.ctx.get() = None;
            *self.back.get() = None;
            (*self.stack.get()).take()
        }
    }

    /// Runs the entry closure (done once, by the G itself, at start);
    /// returns false if there was none. A panic propagates to the caller.
    ///
    /// # Safety
    /// Called only by the thread running this G.
    pub unsafe fn run_entry(&self) -> bool {
        // SAFETY: only the running thread touches `entry` (invariant 1); the
        // closure is moved out of the slot before it runs, so the slot is
        // not borrowed while user code runs.
        unsafe { EntrySlot::run(self.entry.get()) }
    }

    /// Stores the goroutine's result in the G, in the entry closure's
    /// buffer (free once the closure started), boxed if it does not fit.
    ///
    /// # Safety
    /// 1. Called by the goroutine itself, from inside its entry closure
    ///    (which has been moved out of the buffer).
    /// 2. The slot holds no result, and nobody reads it until the caller
    ///    publishes it (the [`join`] protocol's `DONE`).
    /// 3. `R` may move to the thread that takes it (`Send`, or taken on
    ///    this thread).
    pub unsafe fn put_result<R>(&self, r: R) {
        // SAFETY: point 1: the closure was moved out and the vtable taken,
        // so the buffer holds nothing live; run() holds no reference to it.
        let p = unsafe { std::ptr::addr_of_mut!((*self.entry.get()).buf) } as *mut u8;
        if fits_inline::<R>() {
            // SAFETY: the 8-aligned buffer holds an R (checked above).
            unsafe { std::ptr::write(p as *mut R, r) };
        } else {
            // SAFETY: a pointer fits in the buffer.
            unsafe { std::ptr::write(p as *mut *mut R, Box::into_raw(Box::new(r))) };
        }
    }

    /// Moves the result stored by [`G::put_result`] out of the G.
    ///
    /// # Safety
    /// The slot holds an `R` stored by `put_result` and not yet taken, and
    /// the caller owns the slot (per the [`join`] protocol).
    pub unsafe fn take_result<R>(&self) -> R {
        // SAFETY: per the contract, the buffer holds an R written the same
        // way (inline or boxed is decided by R alone).
        unsafe {
            let p = std::ptr::addr_of_mut!((*self.entry.get()).buf) as *mut u8;
            if fits_inline::<R>() {
                std::ptr::read(p as *mut R)
            } else {
                *Box::from_raw(std::ptr::read(p as *mut *mut R))
            }
        }
    }

    /// Stores a value handed to this parked goroutine, in the entry
    /// closure's buffer (boxed if it does not fit).
    ///
    /// # Safety
    /// 1. The goroutine is parked and the caller alone may resume it (it
    ///    won the status CAS `Waiting -> Runnable` and has not queued it),
    ///    and its entry closure has started (the buffer holds no closure).
    /// 2. Nothing else of value is in the buffer (a value left there is
    ///    overwritten, never dropped), and nobody reads it until the
    ///    goroutine is resumed.
    /// 3. `T` may move to the goroutine's thread.
    pub unsafe fn put_mail<T>(&self, v: T) {
        // SAFETY: per the contract, as put_result's points 1 and 2 (the
        // goroutine does not run, so nothing else touches the buffer).
        unsafe { self.put_result(v) }
    }

    /// Takes the value stored by [`G::put_mail`].
    ///
    /// # Safety
    /// Called by the goroutine itself after it was resumed by the caller of
    /// `put_mail`, which stored a `T` not yet taken.
    pub unsafe fn take_mail<T>(&self) -> T {
        // SAFETY: per the contract; same layout rule as take_result.
        unsafe { self.take_result() }
    }

    /// Stores the joiner's waiter word (opaque to this crate).
    ///
    /// # Safety
    /// The caller owns the waiter slot (per the [`join`] protocol: the
    /// handle, before it sets `WAITING`).
    pub unsafe fn set_join_waiter(&self, w: usize) {
        // SAFETY: per the contract.
        unsafe { *self.join_waiter.get() = w }
    }

    /// Takes the joiner's waiter word (0 if none).
    ///
    /// # Safety
    /// The caller owns the waiter slot (per the [`join`] protocol: the
    /// goroutine after it saw `WAITING`, or the handle otherwise).
    pub unsafe fn take_join_waiter(&self) -> usize {
        // SAFETY: per the contract.
        unsafe { std::mem::replace(&mut *self.join_waiter.get(), 0) }
    }

    /// Takes the saved context of this (suspended) G, to resume it.
    ///
    /// # Safety
    /// The caller owns the G's stack and is about to resume it.
    pub unsafe fn take_context(&self) -> Option<Context> {
        // SAFETY: per the contract.
        unsafe { (*self.ctx.get()).take() }
    }
    /// Prefetches the top of this G's suspended stack, if it has one (see
    /// [`gmp_stack::switch::Context::prefetch`]), ahead of resuming it.
    ///
    /// # Safety
    /// The caller owns the G: it took it off a run queue (or holds it
    /// Running), so nobody stores or takes its context meanwhile.
    #[inline(always)]
    pub unsafe fn prefetch_context(&self) {
        // SAFETY: per the contract, no concurrent write of the cell.
        if let Some(c) = unsafe { &*self.ctx.get() } {
            c.prefetch();
        }
    }
    /// Stores the context of this G after it switched out.
    ///
    /// # Safety
    /// The caller is the scheduler that this G just switched to.
    pub unsafe fn set_context(&self, c: Context) {
        // SAFETY: per the contract.
        unsafe { *self.ctx.get() = Some(c) }
    }
    /// Takes the scheduler context this running G must switch back to.
    ///
    /// # Safety
    /// Called only on this G's own stack while it runs.
    pub unsafe fn take_back(&self) -> Option<Context> {
        // SAFETY: per the contract.
        unsafe { (*self.back.get()).take() }
    }
    /// Stores the scheduler context that just resumed this G.
    ///
    /// # Safety
    /// Called only on this G's own stack right after it was resumed.
    pub unsafe fn set_back(&self, c: Context) {
        // SAFETY: per the contract.
        unsafe { *self.back.get() = Some(c) }
    }
}

/// A shared reference to a G. Plain pointer; valid while the runtime lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GRef(NonNull<G>);

// SAFETY: G is Sync; GRef is a pointer to one that outlives every use.
unsafe impl Send for GRef {}
// SAFETY: as above.
unsafe impl Sync for GRef {}

impl fmt::Debug for GRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.id())
    }
}

impl std::ops::Deref for GRef {
    type Target = G;
    #[inline]
    fn deref(&self) -> &G {
        // SAFETY: crate invariant 2: a GRef points to a live G.
        unsafe { self.0.as_ref() }
    }
}

impl GRef {
    /// Allocates a new G (status `Idle`), without a stack.
    pub fn alloc() -> GRef {
        let g = Box::new(G {
            status: StatusWord::new(Status::Idle),
            goid: AtomicU64::new(0),
            parent_goid: AtomicU64::new(0),
            created_at: AtomicPtr::new(std::ptr::null_mut()),
            wait_reason: AtomicU8::new(0),
            wait_since: AtomicU64::new(0),
            runnable_since: AtomicU64::new(0),
            preempt: AtomicBool::new(false),
            lockedm: AtomicUsize::new(0),
            m: AtomicUsize::new(0),
            param: AtomicUsize::new(0),
            system: AtomicBool::new(false),
            in_runtime: AtomicBool::new(false),
            sched: AtomicUsize::new(0),
            lock_count: AtomicU32::new(0),
            join: JoinWord::new(),
            join_waiter: UnsafeCell::new(0),
            mail_seq: AtomicU64::new(0),
            stack: UnsafeCell::new(None),
            ctx: UnsafeCell::new(None),
            back: UnsafeCell::new(None),
            entry: UnsafeCell::new(EntrySlot::empty()),
        });
        // SAFETY: Box::into_raw never returns null.
        GRef(unsafe { NonNull::new_unchecked(Box::into_raw(g)) })
    }

    /// Frees the G (a stack it still holds belongs to the allocator and is
    /// not touched).
    ///
    /// # Safety
    /// No other reference to this G may be used afterwards, and no thread may
    /// be running on its stack.
    pub unsafe fn free(self) {
        // SAFETY: the pointer came from Box::into_raw in `alloc` and, per the
        // contract, this is the last use.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }

    /// The raw pointer (for intrusive queues and opaque words).
    #[inline]
    pub fn as_ptr(self) -> *mut G {
        self.0.as_ptr()
    }

    /// Rebuilds a reference from [`as_ptr`](Self::as_ptr).
    ///
    /// # Safety
    /// `p` must come from `as_ptr` of a G that is still alive.
    #[inline]
    pub unsafe fn from_ptr(p: *mut G) -> GRef {
        // SAFETY: per the contract p is a live G pointer, hence non-null.
        GRef(unsafe { NonNull::new_unchecked(p) })
    }
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;

    #[test]
    fn status_changes_only_by_matching_cas() {
        let w = StatusWord::new(Status::Dead);
        assert!(w.cas(Status::Dead, Status::Runnable).is_ok());
        let e = w.cas(Status::Waiting, Status::Runnable).unwrap_err();
        assert_eq!(e.expected, Status::Waiting);
        assert_eq!(e.found, Status::Runnable as u32);
        assert!(w.cas(Status::Runnable, Status::Running).is_ok());
        assert!(w.cas_to_scan(Status::Running).is_ok());
        assert_eq!(w.raw(), Status::Running as u32 | SCAN);
        assert_eq!(w.get(), Status::Running);
        // A scanned G cannot be moved by a plain CAS.
        assert!(w.cas(Status::Running, Status::Waiting).is_err());
        assert!(w.cas_from_scan(Status::Running, Status::Waiting).is_ok());
        assert_eq!(w.get(), Status::Waiting);
    }

    #[test]
    fn only_one_waker_wins() {
        use std::sync::Arc;
        for _ in 0..200 {
            let w = Arc::new(StatusWord::new(Status::Waiting));
            let wins: usize = (0..4)
                .map(|_| {
                    let w = w.clone();
                    std::thread::spawn(move || {
                        w.cas(Status::Waiting, Status::Runnable).is_ok() as usize
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum();
            assert_eq!(wins, 1);
        }
    }

    #[test]
    fn entries_run_once_inline_or_boxed_and_unrun_ones_are_dropped() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let runs = Arc::new(AtomicUsize::new(0));
        let g = GRef::alloc();
        // Small: inline.
        let r = runs.clone();
        let small = move || {
            r.fetch_add(1, Ordering::Relaxed);
        };
        assert!(fits_inline_of(&small));
        // SAFETY: the G is Idle and ours; the test is its only user.
        unsafe {
            g.prepare(small);
            assert!(g.run_entry());
            assert!(!g.run_entry(), "an entry runs once");
        }
        // Large: boxed.
        let r = runs.clone();
        let pad = [7u64; 16];
        let big = move || {
            r.fetch_add(pad[15] as usize, Ordering::Relaxed);
        };
        assert!(!fits_inline_of(&big));
        // SAFETY: as above.
        unsafe {
            g.prepare(big);
            assert!(g.run_entry());
        }
        assert_eq!(runs.load(Ordering::Relaxed), 8);
        // Unrun closures are dropped: replaced by prepare, or with the G.
        let r = runs.clone();
        // SAFETY: as above.
        unsafe { g.prepare(move || drop(r)) };
        assert_eq!(Arc::strong_count(&runs), 2);
        let r = runs.clone();
        // SAFETY: as above.
        unsafe { g.prepare(move || drop(r)) };
        assert_eq!(Arc::strong_count(&runs), 2);
        // SAFETY: nothing else refers to the G.
        unsafe { g.free() };
        assert_eq!(Arc::strong_count(&runs), 1);
    }

    fn fits_inline_of<F>(_: &F) -> bool {
        fits_inline::<F>()
    }

    #[test]
    fn a_g_is_three_cache_lines_in_touch_order() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(align_of::<G>(), 64);
        assert_eq!(size_of::<G>(), 192);
        assert_eq!(size_of::<EntrySlot>(), 56);
        assert_eq!(offset_of!(G, mail_seq), 128 + 56);
        // Line 0: what every switch touches.
        for off in [
            offset_of!(G, status),
            offset_of!(G, goid),
            offset_of!(G, ctx),
            offset_of!(G, back),
            offset_of!(G, stack),
            offset_of!(G, m),
            offset_of!(G, lockedm),
        ] {
            assert!(off < 64, "{off}");
        }
        // Line 1: spawn, park and wake.
        for off in [
            offset_of!(G, runnable_since),
            offset_of!(G, wait_since),
            offset_of!(G, param),
            offset_of!(G, sched),
            offset_of!(G, preempt),
            offset_of!(G, wait_reason),
        ] {
            assert!((64..128).contains(&off), "{off}");
        }
        assert_eq!(offset_of!(G, entry), 128);
    }

    #[test]
    fn wait_reasons_round_trip() {
        for v in 0..19u8 {
            assert_eq!(WaitReason::from_u8(v) as u8, v);
        }
        assert_eq!(WaitReason::ChanReceive.as_str(), "chan receive");
    }
}
