//! Loom model of the spinning-to-idle handoff: the lost-wake-up case that
//! `gmp-sched/src/proc.rs` avoids with `wakep` on one side and the
//! "delicate dance" at the end of `findrunnable` on the other (Go's
//! `proc.go`, findrunnable's "we must be careful ... re-check" step).
//!
//! This is a miniature, not the scheduler itself (gmp-sched does not build
//! under loom): the shared state is three counters, with the same
//! operations in the same order as the real code.
//!
//! * **submitter** (`runqput`/`globrunqput` then `wakep`): publish the work,
//!   SeqCst fence, read `npidle` and `nmspinning`; if there is an idle P and
//!   nobody spins, win the CAS `nmspinning 0 -> 1` and start an M.
//! * **spinner** (an M that found nothing): put its P on the idle list
//!   (`npidle += 1`), drop out of spinning (`nmspinning -= 1`), SeqCst fence,
//!   then re-check every work source; if work appeared, take a P back and
//!   spin again, else sleep.
//!
//! Invariant checked at the end of every execution: there is no state in
//! which work is pending, nobody spins, and nobody was woken.
//!
//! The two sides form a Dekker pattern (each writes its own variable, then
//! reads the other's): the fences forbid both reads seeing the old values.
//! Loom treats SeqCst *accesses* as AcqRel but models SeqCst *fences*, so
//! the model uses explicit fences, as a faithful reading of the SeqCst
//! accesses in proc.rs.
//!
//! Run with
//! `RUSTFLAGS="--cfg gmp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gmp-m --test loom_spinning --release`.
#![cfg(gmp_loom)]

use loom::sync::atomic::{fence, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

#[derive(Debug, Default)]
struct Sched {
    /// Gs queued anywhere (local run queues + global queue).
    work: AtomicUsize,
    /// Spinning Ms (`sched.nmspinning`).
    nmspinning: AtomicUsize,
    /// Idle Ps (`sched.npidle`).
    npidle: AtomicUsize,
    /// Ms started by `wakep` (`startm(.., spinning = true)`).
    started: AtomicUsize,
}

/// Which parts of the protocol a model keeps (the known-bad variants drop
/// one).
#[derive(Clone, Copy)]
struct Variant {
    recheck: bool,
    fences: bool,
}

const GOOD: Variant = Variant {
    recheck: true,
    fences: true,
};

/// The submitter side: `goready`/`newproc` then `wakep`.
fn submit(s: &Sched, v: Variant) {
    s.work.fetch_add(1, SeqCst);
    if v.fences {
        fence(SeqCst);
    }
    // wakep: nothing to do without an idle P or with a spinner around.
    if s.npidle.load(SeqCst) == 0 || s.nmspinning.load(SeqCst) != 0 {
        return;
    }
    if s.nmspinning.compare_exchange(0, 1, SeqCst, SeqCst).is_err() {
        return;
    }
    // pidleget + startm(p, spinning): the new M owns the spinning count.
    s.npidle.fetch_sub(1, SeqCst);
    s.started.fetch_add(1, SeqCst);
}

/// The spinner side: findrunnable found nothing, releases its P and stops
/// spinning. Returns true if it went back to spinning (found the work).
fn stop_spinning(s: &Sched, v: Variant) -> bool {
    s.npidle.fetch_add(1, SeqCst); // pidleput
    s.nmspinning.fetch_sub(1, SeqCst);
    if v.fences {
        fence(SeqCst);
    }
    if v.recheck && s.work.load(SeqCst) != 0 {
        // pidleget_spinning: take a P back (if wakep's new M took the only
        // idle P first, the work is that M's, which is also fine).
        if s.npidle
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            s.nmspinning.fetch_add(1, SeqCst);
            return true;
        }
    }
    false // stopm: sleep on the park note
}

/// `submitters` threads submit one G each while one M stops spinning.
fn handoff(v: Variant, submitters: usize) {
    loom::model(move || {
        // Start: one M spinning with its P; every other P busy.
        let s = Arc::new(Sched::default());
        s.nmspinning.store(1, SeqCst);

        let hs: Vec<_> = (0..submitters)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || submit(&s, v))
            })
            .collect();
        let respun = stop_spinning(&s, v);
        for h in hs {
            h.join().unwrap();
        }

        let pending = s.work.load(SeqCst) != 0;
        let spinning = s.nmspinning.load(SeqCst) != 0;
        let started = s.started.load(SeqCst);
        assert!(
            !pending || spinning || started > 0,
            "lost wake-up: work pending, nobody spinning, nobody woken \
             (respun {respun}, started {started})"
        );
        assert!(started <= 1, "wakep started {started} spinning Ms");
    });
}

#[test]
fn one_submitter_no_lost_wakeup() {
    handoff(GOOD, 1);
}

#[test]
fn two_submitters_no_lost_wakeup() {
    handoff(GOOD, 2);
}

/// Known-bad variant: the spinner sleeps without re-checking the work
/// sources after dropping `nmspinning`. The submitter that read
/// `nmspinning == 1` just before the decrement skipped `wakep`, so the G
/// is stranded. Loom finds this interleaving (see gmp-sched/DESIGN.md,
/// "Loom models"); ignored so that CI stays green.
#[test]
#[ignore = "known-bad variant: demonstrates that the model catches the lost wake-up"]
#[should_panic(expected = "lost wake-up")]
fn bad_without_recheck_loses_wakeup() {
    handoff(
        Variant {
            recheck: false,
            fences: true,
        },
        1,
    );
}

/// Known-bad variant: the re-check is there but the SeqCst fences are not,
/// so (as loom weakens SeqCst accesses to AcqRel) both sides may read the
/// other's old value — the store-buffering outcome.
#[test]
#[ignore = "known-bad variant: demonstrates that the model needs the fences"]
#[should_panic(expected = "lost wake-up")]
fn bad_without_fences_loses_wakeup() {
    handoff(
        Variant {
            recheck: true,
            fences: false,
        },
        1,
    );
}
