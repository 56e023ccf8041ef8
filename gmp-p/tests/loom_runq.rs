//! Loom model of Go's SPMC run-queue ring (`GoRunQueue`), with the ring
//! shrunk to `LOCAL_QUEUE_CAP == 4` under `--cfg gmp_loom`.
//!
//! Every model checks the ring's contract (`RunQueue`'s safety section):
//! each G pushed comes out exactly once, through the owner's `pop`, a
//! thief's `steal_half`, or the overflow callback — never lost, never twice.
//!
//! Run with
//! `RUSTFLAGS="--cfg gmp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gmp-p --test loom_runq --release`.
#![cfg(gmp_loom)]

use gmp_g::GRef;
use gmp_p::{GoRunQueue, LOCAL_QUEUE_CAP};
use loom::sync::Arc;
use loom::thread;

/// Most Gs any model pushes.
const MAX_GS: usize = 8;

/// `n` fresh Gs (status `Idle`, no stack: they never run) for one
/// execution; the G headers hold loom atomics, so they are made afresh
/// inside each execution.
fn gs(n: usize) -> Vec<GRef> {
    assert!(n <= MAX_GS);
    (0..n).map(|_| GRef::alloc()).collect()
}

/// Asserts that `out` is a permutation of `all` (compared by pointer), then
/// frees the Gs.
fn check_exactly_once(all: Vec<GRef>, out: Vec<GRef>) {
    let mut want: Vec<usize> = all.iter().map(|g| g.as_ptr() as usize).collect();
    let mut got: Vec<usize> = out.iter().map(|g| g.as_ptr() as usize).collect();
    want.sort_unstable();
    got.sort_unstable();
    for w in got.windows(2) {
        assert_ne!(w[0], w[1], "a G came out twice: {got:x?}");
    }
    assert_eq!(got, want, "a G was lost (or a foreign one appeared)");
    for g in all {
        // SAFETY: the Gs never ran and no reference to them survives this
        // execution.
        unsafe { g.free() };
    }
}

/// Owner pushes `n` Gs (spilling to `overflow` when full) and interleaves
/// `pops` pops; `thieves` threads each call `steal_half` once. Afterwards the
/// owner drains the ring, and every G must appear exactly once.
fn model(n: usize, pops_between: usize, thieves: usize) {
    loom::model(move || {
        let all = gs(n);
        let q = Arc::new(GoRunQueue::new());
        let handles: Vec<_> = (0..thieves)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut out = Vec::new();
                    q.steal_half(&mut out);
                    out
                })
            })
            .collect();

        let mut out = Vec::new();
        for (i, &g) in all.iter().enumerate() {
            q.push(g, &mut |spilled| out.push(spilled));
            if i % 2 == 1 {
                for _ in 0..pops_between {
                    if let Some(g) = q.pop() {
                        out.push(g);
                    }
                }
            }
        }
        for h in handles {
            out.extend(h.join().unwrap());
        }
        while let Some(g) = q.pop() {
            out.push(g);
        }
        assert!(q.is_empty());
        check_exactly_once(all, out);
    });
}

#[test]
fn cap_is_small_under_loom() {
    assert_eq!(LOCAL_QUEUE_CAP, 4);
}

/// Owner push/pop against one thief, no overflow.
#[test]
fn push_pop_vs_one_thief() {
    model(3, 1, 1);
}

/// Owner pushes past the 4 slots (half the ring spills to the overflow)
/// while a thief steals: the spill's head CAS races the thief's.
#[test]
fn overflow_vs_one_thief() {
    model(6, 0, 1);
}

/// Overflow, wrap-around (pops free slots that are then reused) and a thief.
#[test]
fn overflow_wraparound_with_pops_vs_one_thief() {
    model(7, 1, 1);
}

/// Two thieves racing each other and the owner's pushes and pops.
#[test]
fn push_pop_vs_two_thieves() {
    model(4, 1, 2);
}

/// Two thieves against a spilling owner.
#[test]
fn overflow_vs_two_thieves() {
    model(5, 0, 2);
}
