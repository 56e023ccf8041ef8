//! The `SIGSEGV` handler that turns a guard-region hit into Go's message.
//!
//! The handler runs on an alternate signal stack (a thread whose stack just
//! overflowed has no room left to run it). [`ensure_altstack`] gives the
//! calling thread one if it has none; every M thread calls it at start.
//! The handler only reads atomics, a TLS cell and calls `write(2)` and
//! `abort(3)`, all async-signal-safe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::slab::guard_hit;

static INSTALLED: Once = Once::new();
static mut PREV_SEGV: libc::sigaction = zeroed_sigaction();
static mut PREV_BUS: libc::sigaction = zeroed_sigaction();
static PREV_READY: AtomicBool = AtomicBool::new(false);

const fn zeroed_sigaction() -> libc::sigaction {
    // SAFETY: sigaction is a plain C struct for which all-zero is a valid
    // value (SIG_DFL with an empty mask).
    unsafe { std::mem::zeroed() }
}

/// Installs the overflow handler for `SIGSEGV` and `SIGBUS` (once per process)
/// and an alternate signal stack for the calling thread.
pub fn install() {
    INSTALLED.call_once(|| {
        // SAFETY: we build a valid sigaction (handler with SA_SIGINFO |
        // SA_ONSTACK, empty mask) and save the previous one into statics that
        // are written only here, before PREV_READY is published with Release.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::addr_of_mut!(PREV_SEGV));
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::addr_of_mut!(PREV_BUS));
        }
        PREV_READY.store(true, Ordering::Release);
    });
    ensure_altstack();
}

/// Gives the calling thread an alternate signal stack if it has none.
/// The stack is leaked deliberately: it must outlive every signal the
/// thread can take, and threads are few.
pub fn ensure_altstack() {
    // SAFETY: sigaltstack with a null new-stack only queries.
    unsafe {
        let mut old: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut old);
        if old.ss_flags & libc::SS_DISABLE == 0 && !old.ss_sp.is_null() {
            return;
        }
        let size = 64 * 1024;
        let mem = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if mem == libc::MAP_FAILED {
            return;
        }
        let st = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&st, std::ptr::null_mut());
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(stack_size) = guard_hit(addr) {
        let (goid, _) = crate::current_goid();
        let mut buf = [0u8; 160];
        let mut n = copy(&mut buf, b"fatal error: goroutine ");
        n += itoa(&mut buf[n..], goid);
        n += copy(&mut buf[n..], b": stack overflow (stack size ");
        n += itoa(&mut buf[n..], stack_size as u64);
        n += copy(&mut buf[n..], b")\n");
        // SAFETY: write(2) and abort(3) are async-signal-safe; buf is ours.
        unsafe {
            libc::write(2, buf.as_ptr() as *const _, n);
            libc::abort();
        }
    }
    // Not ours: hand the signal to whoever was installed before.
    if !PREV_READY.load(Ordering::Acquire) {
        reset_default(sig);
        return;
    }
    // SAFETY: the PREV_* statics were written once before PREV_READY was
    // published and are only read afterwards.
    let prev = unsafe {
        if sig == libc::SIGBUS {
            std::ptr::addr_of!(PREV_BUS).read()
        } else {
            std::ptr::addr_of!(PREV_SEGV).read()
        }
    };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // Returning re-executes the faulting instruction, which now takes the
        // default action (a core-dumping kill), as it would without us.
        reset_default(sig);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed as an SA_SIGINFO handler
        // and has exactly this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain (non-SA_SIGINFO) handler takes only the signal.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig);
    }
}

fn reset_default(sig: libc::c_int) {
    // SAFETY: installing SIG_DFL for a signal is always valid.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn copy(dst: &mut [u8], src: &[u8]) -> usize {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

fn itoa(dst: &mut [u8], mut v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    copy(dst, &tmp[i..])
}
