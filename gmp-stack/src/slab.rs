//! Slab allocation of goroutine stacks (see the crate docs for the design).
//!
//! Layout of one slab (addresses grow to the right):
//!
//! ```text
//! | guard | stack 0 ...... | guard | stack 1 ...... | ... | guard | stack n-1 .... |
//! ^ slab base             ^ slot 1                                               ^ slab end
//! ```
//!
//! Stacks grow down, so stack *i* overflows into its own guard, never into
//! stack *i-1*.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::{page_size, GUARD_SIZE, MIN_STACK_SIZE};

/// Address space of one slab: 64 MiB (a guess balancing mapping count
/// against waste for small programs; 1M default stacks need ~4,100 slabs).
const SLAB_BYTES: usize = 64 << 20;

/// Capacity of the slab table read by the overflow handler: 65,536 slabs,
/// i.e. 4 TiB of stacks at the default slab size.
pub(crate) const MAX_SLABS: usize = 1 << 16;

/// `madvise` advice that installs a guard region (Linux 6.13+).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// One live slab, as seen by the signal handler. `base == 0` means free.
pub(crate) struct SlabEntry {
    pub(crate) base: AtomicUsize,
    pub(crate) len: AtomicUsize,
    pub(crate) slot_size: AtomicUsize,
    pub(crate) stack_size: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_ENTRY: SlabEntry = SlabEntry {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot_size: AtomicUsize::new(0),
    stack_size: AtomicUsize::new(0),
};

/// The process-wide table of live slabs. Append-only while a slab lives.
pub(crate) static SLABS: [SlabEntry; MAX_SLABS] = [EMPTY_ENTRY; MAX_SLABS];
/// High-water mark of used entries in [`SLABS`] (entries past it are free).
pub(crate) static SLABS_HIGH: AtomicUsize = AtomicUsize::new(0);

/// How stack overflow is caught on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// `MADV_GUARD_INSTALL` guard regions: no extra mapping per stack.
    Madvise,
    /// `mprotect(PROT_NONE)` guard pages: one extra mapping per stack.
    Mprotect,
}

const MODE_UNKNOWN: u8 = 0;
const MODE_MADVISE: u8 = 1;
const MODE_MPROTECT: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_UNKNOWN);

/// The guard mechanism in use (decided at the first stack allocation;
/// `Madvise` is assumed until then).
pub fn guard_mode() -> GuardMode {
    match MODE.load(Ordering::Relaxed) {
        MODE_MPROTECT => GuardMode::Mprotect,
        _ => GuardMode::Madvise,
    }
}

/// Why a stack could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// The requested size is below [`MIN_STACK_SIZE`].
    TooSmall {
        /// What was asked for.
        requested: usize,
        /// The minimum.
        minimum: usize,
    },
    /// The requested size overflows the address computations.
    TooLarge(usize),
    /// The kernel refused the mapping (address-space limit, map count).
    Mmap(i32),
    /// The guard region could not be installed.
    Guard(i32),
    /// Every entry of the slab table is in use.
    SlabTableFull,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::TooSmall { requested, minimum } => write!(
                f,
                "goroutine stack size {requested} bytes is below the minimum of {minimum} bytes"
            ),
            StackError::TooLarge(s) => write!(f, "goroutine stack size {s} bytes is too large"),
            StackError::Mmap(e) => write!(
                f,
                "cannot map goroutine stacks: {} (address space or vm.max_map_count exhausted?)",
                std::io::Error::from_raw_os_error(*e)
            ),
            StackError::Guard(e) => write!(
                f,
                "cannot install a stack guard region: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
            StackError::SlabTableFull => write!(f, "too many stack slabs ({MAX_SLABS})"),
        }
    }
}

impl std::error::Error for StackError {}

/// A goroutine stack: `size` usable bytes ending at `top()`, with a guard
/// region below `bottom()`. Plain data: the memory belongs to the
/// [`StackAllocator`] that made it and lives until that allocator is dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    bottom: NonNull<u8>,
    size: usize,
}

// SAFETY: a Stack is an address range description; the memory it names is
// shared by nobody else while a G owns it, and moving the description to
// another thread (a G migrating between Ms) is the whole point.
unsafe impl Send for Stack {}
// SAFETY: as above; &Stack only exposes the addresses.
unsafe impl Sync for Stack {}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stack({:p}, {} bytes)", self.bottom, self.size)
    }
}

impl Stack {
    /// Lowest usable address (just above the guard region).
    pub fn bottom(&self) -> *mut u8 {
        self.bottom.as_ptr()
    }
    /// One past the highest usable address; stacks grow down from here.
    pub fn top(&self) -> *mut u8 {
        // SAFETY: bottom + size is the end of the slot, inside (or one past)
        // the slab mapping that contains this stack.
        unsafe { self.bottom.as_ptr().add(self.size) }
    }
    /// Usable bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// Gives the stack's memory back to the OS (`MADV_DONTNEED`): the next
    /// use starts from zero pages. Keeps the address range and its guard.
    ///
    /// Requires: no goroutine is running on this stack.
    pub fn release_memory(&self) {
        // SAFETY: the range is part of a live private anonymous mapping owned
        // by our allocator; DONTNEED on it only drops page contents (no one
        // runs on the stack, per the precondition), and keeps guard markers.
        unsafe {
            libc::madvise(self.bottom() as *mut _, self.size, libc::MADV_DONTNEED);
        }
    }
}

/// A slot just carved: its stack, and the guard still to install (a
/// lazily guarded slab's fresh slot).
#[must_use]
struct Carved {
    stack: Stack,
    guard: Option<(usize, usize)>,
}

impl Carved {
    /// Installs the guard if it is still missing; only then may the stack
    /// be used. A failed guard leaves the slot carved and unused (a lost
    /// slot, not a hole: nothing ever runs on it).
    fn finish(self) -> Result<Stack, StackError> {
        if let Some((slot, len)) = self.guard {
            install_lazy_guard(slot, len)?;
        }
        Ok(self.stack)
    }
}

struct Slab {
    base: usize,
    len: usize,
    table_index: usize,
    /// Whether every slot's guard went in when the slab was mapped
    /// (`mprotect` mode); otherwise each slot gets its guard when carved.
    guarded: bool,
}

/// The slabs and the carving cursor. A slab mapped in `mprotect` mode has
/// every slot's guard installed at mapping; in `madvise` mode slot 0's is,
/// and every slot gets its own when carved (re-installing slot 0's is a
/// harmless no-op), so carving is arithmetic plus at most one madvise.
struct Carver {
    slabs: Vec<Slab>,
    /// Index in `slabs` of the slab being carved, and its next unused slot.
    /// Slabs after `current` are mapped but wholly uncarved.
    current: usize,
    next_slot: usize,
    /// Stacks promised by [`StackAllocator::reserve`] and not yet carved by
    /// [`StackAllocator::alloc_reserved`] or given back by
    /// [`StackAllocator::unreserve`]. Invariant: `reserved <= uncarved`.
    reserved: usize,
    /// Free stacks handed back by [`StackAllocator::give_back`] (when the
    /// address space ran out), handed out again before fresh slots.
    returned: Vec<Stack>,
}

impl Carver {
    /// Slots that can still be handed out: fresh ones plus given-back ones.
    fn uncarved(&self, per_slab: usize) -> usize {
        (self.slabs.len() - self.current) * per_slab - self.next_slot + self.returned.len()
    }
}

/// Hands out stacks of one size, carved from slabs. Dropping it unmaps
/// every slab (see the crate invariants for when that is allowed).
///
/// Besides [`alloc`](Self::alloc), it *reserves*: [`reserve`](Self::reserve)
/// maps (but does not touch) enough slabs that the promised number of
/// stacks can later be carved by [`alloc_reserved`](Self::alloc_reserved),
/// which cannot fail. The scheduler reserves a stack when a goroutine is
/// spawned and takes one only when it first runs, so a goroutine that waits
/// in a run queue costs no stack memory, yet running out of address space
/// is still reported at spawn.
pub struct StackAllocator {
    stack_size: usize,
    slot_size: usize,
    slots_per_slab: usize,
    carver: Mutex<Carver>,
    allocated: AtomicUsize,
}

impl fmt::Debug for StackAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackAllocator")
            .field("stack_size", &self.stack_size)
            .field("allocated", &self.allocated.load(Ordering::Relaxed))
            .finish()
    }
}

impl StackAllocator {
    /// An allocator for stacks of `stack_size` usable bytes (rounded up to a
    /// page). Fails with [`StackError::TooSmall`] below [`MIN_STACK_SIZE`].
    pub fn new(stack_size: usize) -> Result<Self, StackError> {
        if stack_size < MIN_STACK_SIZE {
            return Err(StackError::TooSmall {
                requested: stack_size,
                minimum: MIN_STACK_SIZE,
            });
        }
        let page = page_size();
        let stack_size = stack_size
            .checked_add(page - 1)
            .ok_or(StackError::TooLarge(stack_size))?
            & !(page - 1);
        let slot_size = stack_size
            .checked_add(GUARD_SIZE.max(page))
            .ok_or(StackError::TooLarge(stack_size))?;
        if slot_size > (1usize << 40) {
            return Err(StackError::TooLarge(stack_size));
        }
        crate::overflow::install();
        Ok(StackAllocator {
            stack_size,
            slot_size,
            slots_per_slab: (SLAB_BYTES / slot_size).max(1),
            carver: Mutex::new(Carver {
                slabs: Vec::new(),
                current: 0,
                next_slot: 0,
                reserved: 0,
                returned: Vec::new(),
            }),
            allocated: AtomicUsize::new(0),
        })
    }

    /// Usable size of every stack this allocator makes.
    pub fn stack_size(&self) -> usize {
        self.stack_size
    }

    /// Number of stacks handed out so far.
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Number of stacks reserved and not yet carved or given back.
    pub fn reserved(&self) -> usize {
        self.lock().reserved
    }

    /// Address space reserved for stacks (slabs mapped), in bytes.
    pub fn reserved_bytes(&self) -> usize {
        self.lock().slabs.iter().map(|s| s.len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Carver> {
        self.carver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Maps slabs until `want` slots are uncarved.
    fn ensure_uncarved(&self, c: &mut Carver, want: usize) -> Result<(), StackError> {
        while c.uncarved(self.slots_per_slab) < want {
            let slab = self.map_slab()?;
            c.slabs.push(slab);
        }
        Ok(())
    }

    /// Carves the next slot. Requires: at least one uncarved slot. The
    /// stack must not be handed out before [`Carved::finish`] installs its
    /// guard (done outside the lock: it is a system call).
    fn carve(&self, c: &mut Carver) -> Carved {
        debug_assert!(c.uncarved(self.slots_per_slab) > 0);
        if let Some(st) = c.returned.pop() {
            // Carved once before, so its guard is in.
            return Carved {
                stack: st,
                guard: None,
            };
        }
        let slab = &c.slabs[c.current];
        let slot = slab.base + c.next_slot * self.slot_size;
        let guarded = slab.guarded;
        c.next_slot += 1;
        if c.next_slot == self.slots_per_slab {
            c.current += 1;
            c.next_slot = 0;
        }
        self.allocated.fetch_add(1, Ordering::Relaxed);
        let bottom = slot + (self.slot_size - self.stack_size);
        Carved {
            stack: Stack {
                // SAFETY: slot is inside a successful mmap, hence non-null.
                bottom: unsafe { NonNull::new_unchecked(bottom as *mut u8) },
                size: self.stack_size,
            },
            guard: (!guarded).then_some((slot, self.slot_size - self.stack_size)),
        }
    }

    /// Carves a fresh stack (mapping a new slab when none is left over the
    /// reservations).
    pub fn alloc(&self) -> Result<Stack, StackError> {
        let carved = {
            let mut c = self.lock();
            let want = c.reserved + 1;
            self.ensure_uncarved(&mut c, want)?;
            self.carve(&mut c)
        };
        carved.finish()
    }

    /// Promises `n` more stacks to later [`alloc_reserved`](Self::alloc_reserved)
    /// calls, mapping slabs (address space only: nothing is touched) as
    /// needed. Fails, promising nothing, when the kernel refuses a mapping.
    pub fn reserve(&self, n: usize) -> Result<(), StackError> {
        let mut c = self.lock();
        let want = c.reserved + n;
        self.ensure_uncarved(&mut c, want)?;
        c.reserved = want;
        Ok(())
    }

    /// Takes back free stacks that this allocator made, so that
    /// [`reserve`](Self::reserve) can promise them again once no more
    /// address space can be mapped (the scheduler's free-stack caches would
    /// otherwise sit idle while spawning fails).
    ///
    /// # Safety
    /// Every stack came from this allocator, is used by nothing (no live
    /// context on it) and is held nowhere else: the allocator will hand it
    /// out again.
    pub unsafe fn give_back(&self, stacks: impl IntoIterator<Item = Stack>) {
        self.lock().returned.extend(stacks);
    }

    /// Gives back `n` promises made by [`reserve`](Self::reserve).
    pub fn unreserve(&self, n: usize) {
        let mut c = self.lock();
        assert!(c.reserved >= n, "unreserving stacks never reserved");
        c.reserved -= n;
    }

    /// Carves a stack promised by an earlier [`reserve`](Self::reserve),
    /// consuming the promise. The slot is already mapped, so this cannot
    /// run out of address space or mappings; in `madvise` mode it installs
    /// the slot's guard, and if the kernel cannot even allocate the page
    /// table for that (the machine is out of memory) the process dies with
    /// a message, as Go's does when `stackalloc` finds no memory. Panics if
    /// no promise is outstanding (a caller bug).
    pub fn alloc_reserved(&self) -> Stack {
        let carved = {
            let mut c = self.lock();
            assert!(c.reserved > 0, "alloc_reserved without a reservation");
            c.reserved -= 1;
            self.carve(&mut c)
        };
        carved.finish().unwrap_or_else(|e| {
            eprintln!("fatal error: out of memory: {e}");
            std::process::abort()
        })
    }

    fn map_slab(&self) -> Result<Slab, StackError> {
        let len = self.slots_per_slab * self.slot_size;
        // SAFETY: anonymous private mapping at a kernel-chosen address; no
        // existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(StackError::Mmap(errno()));
        }
        let base = base as usize;
        let unmap = || {
            // SAFETY: we just mapped exactly this range and nobody uses it.
            unsafe { libc::munmap(base as *mut _, len) };
        };
        // Slot 0's guard now: the first one also decides the guard mode.
        // An mprotect guard splits the mapping, which may hit
        // vm.max_map_count, so in that mode every slot's guard goes in now,
        // where the failure reaches `reserve` (a spawn) and carving cannot
        // fail later. A madvise guard costs no mapping, only a page-table
        // entry, so those go in as slots are carved: a burst of spawns
        // reserves far more slots than it ever carves (1M trivial
        // goroutines reserved ~55,000 and carved 4), and one madvise per
        // slot at mapping time cost ~1 us each on the spawning thread.
        let guard_len = self.slot_size - self.stack_size;
        if let Err(e) = install_guard(base, guard_len) {
            unmap();
            return Err(e);
        }
        let guarded = MODE.load(Ordering::Relaxed) == MODE_MPROTECT;
        if guarded {
            for i in 1..self.slots_per_slab {
                if let Err(e) = install_guard(base + i * self.slot_size, guard_len) {
                    unmap();
                    return Err(e);
                }
            }
        }
        match register_slab(base, len, self.slot_size, self.stack_size) {
            Some(table_index) => Ok(Slab {
                base,
                len,
                table_index,
                guarded,
            }),
            None => {
                unmap();
                Err(StackError::SlabTableFull)
            }
        }
    }
}

impl Drop for StackAllocator {
    fn drop(&mut self) {
        let c = self.carver.get_mut().unwrap_or_else(|e| e.into_inner());
        for s in c.slabs.drain(..) {
            // The handler must not see this slab once it is unmapped.
            unregister(s.table_index);
            // SAFETY: per the crate invariant 3, no thread runs on these
            // stacks any more; the range is exactly one mapping of ours.
            unsafe { libc::munmap(s.base as *mut _, s.len) };
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Installs the guard region `[slot, slot + len)`.
/// Requires: the range lies in one of our slabs (being mapped, or a slot
/// just carved), with no stack handed out over it yet.
fn install_guard(slot: usize, len: usize) -> Result<(), StackError> {
    let mode = MODE.load(Ordering::Relaxed);
    if mode != MODE_MPROTECT {
        // SAFETY: the range lies inside a private anonymous mapping we own and
        // no stack has been handed out over it yet.
        let r = unsafe { libc::madvise(slot as *mut _, len, MADV_GUARD_INSTALL) };
        if r == 0 {
            MODE.store(MODE_MADVISE, Ordering::Relaxed);
            return Ok(());
        }
        let e = errno();
        if e != libc::EINVAL {
            return Err(StackError::Guard(e));
        }
        MODE.store(MODE_MPROTECT, Ordering::Relaxed);
    }
    mprotect_guard(slot, len)
}

/// Installs the guard of a slot being carved from a lazily guarded slab
/// (`madvise` mode). Should the madvise fail (no memory for the page
/// table), an mprotect guard is tried before giving up.
fn install_lazy_guard(slot: usize, len: usize) -> Result<(), StackError> {
    install_guard(slot, len).or_else(|e| mprotect_guard(slot, len).map_err(|_| e))
}

/// An `mprotect(PROT_NONE)` guard over `[slot, slot + len)`.
/// Requires: as [`install_guard`].
fn mprotect_guard(slot: usize, len: usize) -> Result<(), StackError> {
    // SAFETY: per the requirement, the range lies inside a private
    // anonymous mapping we own and no stack is handed out over it;
    // PROT_NONE on it touches nothing else.
    let r = unsafe { libc::mprotect(slot as *mut _, len, libc::PROT_NONE) };
    if r != 0 {
        return Err(StackError::Guard(errno()));
    }
    Ok(())
}

fn register_slab(base: usize, len: usize, slot_size: usize, stack_size: usize) -> Option<usize> {
    // Reuse a freed entry below the high-water mark, else extend it.
    let high = SLABS_HIGH.load(Ordering::Acquire);
    let mut idx = None;
    for (i, e) in SLABS.iter().enumerate().take(high) {
        if e.base.load(Ordering::Relaxed) == 0 && e.len.load(Ordering::Relaxed) == 0 {
            // Claim the entry through `len` (base stays 0 until published).
            if e.len
                .compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                idx = Some(i);
                break;
            }
        }
    }
    let i = match idx {
        Some(i) => i,
        None => {
            let i = SLABS_HIGH.fetch_add(1, Ordering::AcqRel);
            if i >= MAX_SLABS {
                SLABS_HIGH.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            SLABS[i].len.store(len, Ordering::Relaxed);
            i
        }
    };
    let e = &SLABS[i];
    e.slot_size.store(slot_size, Ordering::Relaxed);
    e.stack_size.store(stack_size, Ordering::Relaxed);
    // Release: publishes len/slot_size/stack_size to the handler's Acquire.
    e.base.store(base, Ordering::Release);
    Some(i)
}

/// For an address, the slab slot guard it falls in: `Some(stack_size)`.
pub(crate) fn guard_hit(addr: usize) -> Option<usize> {
    let high = SLABS_HIGH.load(Ordering::Acquire).min(MAX_SLABS);
    for e in SLABS.iter().take(high) {
        // Acquire: pairs with the Release in register_slab.
        let base = e.base.load(Ordering::Acquire);
        if base == 0 {
            continue;
        }
        let len = e.len.load(Ordering::Relaxed);
        if addr < base || addr >= base + len {
            continue;
        }
        let slot_size = e.slot_size.load(Ordering::Relaxed);
        let stack_size = e.stack_size.load(Ordering::Relaxed);
        let off = (addr - base) % slot_size;
        if off < slot_size - stack_size {
            return Some(stack_size);
        }
        return None;
    }
    None
}

/// Frees the table entry at `i` (used when an allocator is dropped).
fn unregister(i: usize) {
    SLABS[i].base.store(0, Ordering::Release);
    SLABS[i].len.store(0, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_small_is_a_clear_error() {
        let e = StackAllocator::new(1024).unwrap_err();
        assert_eq!(
            e,
            StackError::TooSmall {
                requested: 1024,
                minimum: MIN_STACK_SIZE
            }
        );
        assert!(e.to_string().contains("below the minimum"));
    }

    #[test]
    fn stacks_are_distinct_aligned_and_writable() {
        let a = StackAllocator::new(64 * 1024).unwrap();
        let s1 = a.alloc().unwrap();
        let s2 = a.alloc().unwrap();
        assert_ne!(s1.bottom(), s2.bottom());
        assert_eq!(s1.size(), 64 * 1024);
        assert_eq!(s1.top() as usize % page_size(), 0);
        // SAFETY: the stack range is ours and unused.
        unsafe {
            std::ptr::write_bytes(s1.bottom(), 0xAB, s1.size());
            assert_eq!(*s1.top().sub(1), 0xAB);
        }
        // the byte just below the bottom is a guard
        assert!(guard_hit(s1.bottom() as usize - 1).is_some());
        assert!(guard_hit(s1.bottom() as usize).is_none());
        s1.release_memory();
        // SAFETY: released memory reads back as zero pages.
        unsafe { assert_eq!(*s1.top().sub(1), 0) };
        assert_eq!(a.allocated(), 2);
    }

    #[test]
    fn given_back_stacks_are_promised_again_before_new_slabs() {
        let a = StackAllocator::new(16 * 1024).unwrap();
        let per_slab = a.slots_per_slab;
        // Fill the first slab exactly.
        let st: Vec<Stack> = (0..per_slab).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(a.reserved_bytes(), per_slab * a.slot_size);
        // SAFETY: the stacks came from `a` and nothing runs on them.
        unsafe { a.give_back(st[..3].iter().copied()) };
        // Three promises fit without mapping a second slab...
        a.reserve(3).unwrap();
        assert_eq!(a.reserved_bytes(), per_slab * a.slot_size);
        let again: std::collections::HashSet<usize> = (0..3)
            .map(|_| a.alloc_reserved().bottom() as usize)
            .collect();
        let back: std::collections::HashSet<usize> =
            st[..3].iter().map(|s| s.bottom() as usize).collect();
        assert_eq!(again, back, "the given-back stacks were handed out again");
        assert_eq!(a.allocated(), per_slab, "nothing new was carved");
        // ...and the next one needs a new slab.
        a.reserve(1).unwrap();
        assert_eq!(a.reserved_bytes(), 2 * per_slab * a.slot_size);
    }

    #[test]
    fn reservations_are_kept_and_consumed() {
        let a = StackAllocator::new(16 * 1024).unwrap();
        let per_slab = a.slots_per_slab;
        a.reserve(per_slab + 1).unwrap();
        assert_eq!(a.reserved(), per_slab + 1);
        // Two slabs mapped, nothing carved yet.
        assert_eq!(a.reserved_bytes(), 2 * per_slab * a.slot_size);
        assert_eq!(a.allocated(), 0);
        // A plain alloc must not eat into the promises: it maps a third slab
        // only once the promised slots are all that is left.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..per_slab - 1 {
            assert!(seen.insert(a.alloc().unwrap().bottom() as usize));
        }
        assert_eq!(a.reserved_bytes(), 2 * per_slab * a.slot_size);
        assert!(seen.insert(a.alloc().unwrap().bottom() as usize));
        assert_eq!(a.reserved_bytes(), 3 * per_slab * a.slot_size);
        for _ in 0..per_slab + 1 {
            let s = a.alloc_reserved();
            assert!(seen.insert(s.bottom() as usize));
            assert!(guard_hit(s.bottom() as usize - 1).is_some());
        }
        assert_eq!(a.reserved(), 0);
        a.reserve(3).unwrap();
        a.unreserve(2);
        assert_eq!(a.reserved(), 1);
        assert_eq!(a.allocated(), 2 * per_slab + 1);
    }

    /// Writes one byte at `addr` in a forked child; true if the child died
    /// of a signal (the guard: our overflow handler aborts, or SIGSEGV).
    fn write_kills_a_child(addr: *mut u8) -> bool {
        // SAFETY: the child only performs a volatile store and `_exit`
        // (async-signal-safe after fork in a threaded process); the parent
        // reaps it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                std::ptr::write_volatile(addr, 1u8);
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::WIFSIGNALED(status)
        }
    }

    #[test]
    fn every_carved_stack_has_a_real_guard_below_it() {
        let a = StackAllocator::new(16 * 1024).unwrap();
        a.reserve(2).unwrap();
        // The first slot's guard goes in with the slab; later slots get
        // theirs when carved, by either path.
        let stacks = [a.alloc_reserved(), a.alloc_reserved(), a.alloc().unwrap()];
        for st in stacks {
            assert!(
                !write_kills_a_child(st.bottom()),
                "the stack itself is writable"
            );
            assert!(
                write_kills_a_child(st.bottom().wrapping_sub(1)),
                "no guard below {st:?} ({:?} mode)",
                guard_mode()
            );
        }
    }

    #[test]
    fn many_stacks_do_not_grow_mappings_per_stack() {
        let count_maps = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .count()
        };
        let a = StackAllocator::new(16 * 1024).unwrap();
        let _warm = a.alloc().unwrap();
        let before = count_maps();
        let n = 20_000;
        for _ in 0..n {
            a.alloc().unwrap();
        }
        let after = count_maps();
        if guard_mode() == GuardMode::Madvise {
            // 20k stacks of 32 KiB slots = 10 slabs of 64 MiB.
            assert!(
                after.saturating_sub(before) < 100,
                "mappings grew by {} for {n} stacks",
                after.saturating_sub(before)
            );
        }
    }
}
