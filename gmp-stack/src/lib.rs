//! # gmp-stack: goroutine stacks and the context switch
//!
//! ## The problem
//! A goroutine is a stackful coroutine: it needs its own machine stack, and a
//! Go-style program keeps a million of them alive at once. Each stack must be
//! cheap while idle (only the pages a goroutine really touched may cost RSS),
//! and a goroutine that recurses too deeply must die with a clear message
//! naming it, never corrupt its neighbour or take a bare `SIGSEGV`.
//!
//! The obvious design, one `mmap` per stack plus an `mprotect`ed guard page,
//! costs two kernel mappings (VMAs) per goroutine. Linux caps a process at
//! `vm.max_map_count` = 65530 mappings, so that design dies at about 32k
//! goroutines (the `may` runtime fails exactly there with `ENOMEM`).
//!
//! ## The mechanism
//! * **Slabs.** Stacks are carved from large anonymous mappings ([`slab`]),
//!   each holding many equally sized *slots*. A slot is a guard region at its
//!   low end followed by the usable stack (stacks grow down, so an overflow
//!   runs into the slot's own guard). Memory is mapped `MAP_NORESERVE` and is
//!   only committed page by page as a goroutine touches it: the default
//!   256 KiB of address space per goroutine costs one or two pages of RSS for
//!   a typical goroutine.
//! * **Guard regions that cost no mapping.** Every slot's guard is installed
//!   with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+). A guard region is a
//!   marker in the page tables, not a separate VMA, so a slab of 256 stacks is
//!   still exactly one mapping, and the number of mappings grows with the
//!   number of slabs (one per 64 MiB of stacks), not with the number of
//!   goroutines. One million 256 KiB stacks use about 4,100 mappings.
//!   A slot gets its guard when it is carved, not when its slab is mapped:
//!   a burst of spawns reserves many more slots than it ever carves (each
//!   queued goroutine holds a reservation until it first runs), and the
//!   madvise costs ~1 µs per slot.
//!   On older kernels the madvise fails with `EINVAL` and we fall back to an
//!   `mprotect(PROT_NONE)` guard per slot, all installed when the slab is
//!   mapped; overflow is still caught, but each stack then costs two
//!   mappings and the goroutine count is bounded by `vm.max_map_count / 2`.
//!   [`guard_mode`] reports which is in use.
//! * **How every stack's overflow is detected.** Touching a guard region
//!   raises `SIGSEGV`. The handler installed by [`overflow::install`] runs on
//!   an alternate signal stack, looks the faulting address up in a lock-free
//!   table of slabs, and if it falls into a slot's guard it prints
//!   `fatal error: goroutine N: stack overflow (stack size S)` (the goroutine
//!   id comes from [`set_current_goid`], which the scheduler sets at every
//!   switch) and aborts. Rust emits stack probes for every frame larger than a
//!   page, so a large frame cannot jump over the guard. Faults elsewhere are
//!   passed on to the handler that was installed before ours (std's own
//!   thread-stack guard handler, or the default action).
//! * **The context switch** ([`switch`]) wraps the `context` crate's
//!   `jump_fcontext`: the scheduler saves the callee-saved registers and the
//!   stack pointer, and resumes another stack. The entry trampoline of a new
//!   goroutine is an `extern "C"` function, so the layer above must catch
//!   every panic before it reaches that frame (`gmp-sched` does, and
//!   [`switch::Context::new`] documents it as a `# Safety` requirement).
//!
//! ## Invariants
//! 1. A slot is handed out (by [`StackAllocator::alloc`] or
//!    [`StackAllocator::alloc_reserved`]) at most once until the allocator is
//!    dropped; stacks are recycled by the stack caches above this crate, not
//!    returned here.
//! 2. Every reservation ([`StackAllocator::reserve`]) is backed by a mapped,
//!    uncarved slot, so `alloc_reserved` never runs out of address space or
//!    mappings: the scheduler reserves at spawn (where an error can be
//!    reported) and carves at a goroutine's first run (where it could not
//!    be). What carving may still need, a `madvise` guard's page-table
//!    entry, fails only when the machine is out of memory, and that is
//!    fatal, as in Go.
//! 5. No stack is handed out before the guard below it is installed (by
//!    the slab's mapping in `mprotect` mode, by the carve otherwise).
//! 3. A slab is unmapped only when its allocator is dropped, and the runtime
//!    drops its allocator only after every M thread that could run on one of
//!    its stacks has been joined.
//! 4. The slab table read by the signal handler is append-only while a slab is
//!    live; removal clears an entry's base with a `Release` store before the
//!    memory is unmapped.
//!
//! ## Rejected alternatives
//! * *One mapping per stack* (may, early Go): dies at ~32k goroutines.
//! * *No guard at all, canary checked at each switch*: detects the overflow
//!   only after the neighbour's memory is already corrupted.
//! * *Segmented or copying stacks* (Go): need compiler support for stack
//!   checks in every prologue, which stable Rust does not give us.
//! * *Small (2 KiB) stacks*: Rust code with formatting or std I/O easily
//!   needs 10-30 KiB; lazy commit gives us small RSS with a large limit.

#![warn(missing_docs)]

pub mod overflow;
pub mod slab;
pub mod switch;

pub use slab::{guard_mode, GuardMode, Stack, StackAllocator, StackError};

use std::cell::Cell;

/// Smallest usable stack size accepted by [`StackAllocator::new`]: 16 KiB.
///
/// Measured here: a goroutine that formats a line and writes it to stderr
/// (the panic path) needs about 9 KiB; below 16 KiB ordinary std calls crash.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// Default usable stack size: 256 KiB of address space, lazily committed.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Size of the guard region below every stack: 16 KiB.
pub const GUARD_SIZE: usize = 16 * 1024;

thread_local! {
    /// The goroutine id running on this thread, for the overflow message.
    /// Plain `Cell<u64>` with a const initialiser and no destructor: reading
    /// it is a single TLS load, safe inside a signal handler.
    static CURRENT_GOID: Cell<u64> = const { Cell::new(0) };
    /// Usable size of the stack running on this thread, for the message.
    static CURRENT_STACK_SIZE: Cell<usize> = const { Cell::new(0) };
}

/// Records which goroutine (and stack size) this thread is about to run, so
/// that an overflow can name it. `goid` 0 means "the thread's own stack".
#[inline]
pub fn set_current_goid(goid: u64, stack_size: usize) {
    CURRENT_GOID.with(|c| c.set(goid));
    CURRENT_STACK_SIZE.with(|c| c.set(stack_size));
}

pub(crate) fn current_goid() -> (u64, usize) {
    (
        CURRENT_GOID.with(|c| c.get()),
        CURRENT_STACK_SIZE.with(|c| c.get()),
    )
}

/// Asks the CPU to fetch the three cache lines from `p` for writing
/// (`PREFETCHW`): a hint that changes no state and never faults, so `p`
/// may be stale or even unmapped. Used ahead of touching a cold G or a
/// suspended stack's top.
#[inline(always)]
pub fn prefetch_write_3_lines(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW only hints the cache: it never faults (not even on
    // an unmapped address), writes nothing architecturally visible and
    // touches no flags or registers besides its address operand. On CPUs
    // without the PRFCHW feature the instruction is a NOP (0F 0D is
    // reserved-NOP space).
    unsafe {
        std::arch::asm!(
            "prefetchw [{0}]",
            "prefetchw [{0} + 64]",
            "prefetchw [{0} + 128]",
            in(reg) p,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The system page size.
pub fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    let p = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as usize)
        .unwrap_or(4096);
    PAGE.store(p, Ordering::Relaxed);
    p
}
