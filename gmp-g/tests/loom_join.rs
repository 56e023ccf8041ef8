//! Loom models of the join word (`gmp_g::join`): the goroutine's completion
//! and exit race its handle's join or drop, and the runtime's drop.
//!
//! Run with
//! `RUSTFLAGS="--cfg gmp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gmp-g --test loom_join --release`.
#![cfg(gmp_loom)]

use gmp_g::join::{Completed, JoinWord, Release};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// The G as the model sees it: the join word, the result slot (loom's
/// cell flags any unsynchronised access), and who recycled or freed it.
struct G {
    join: JoinWord,
    result: UnsafeCell<Option<u32>>,
    /// Results that ended in the handle's or the goroutine's hands.
    delivered: AtomicUsize,
    /// Times the G went back to a free list (or was freed).
    recycled: AtomicUsize,
}

fn g(handle: bool) -> Arc<G> {
    let g = G {
        join: JoinWord::new(),
        result: UnsafeCell::new(None),
        delivered: AtomicUsize::new(0),
        recycled: AtomicUsize::new(0),
    };
    g.join.reset(handle);
    Arc::new(g)
}

/// The goroutine: store the result, complete, then (on g0) exit.
fn goroutine(g: &G) {
    // SAFETY: before DONE the slot is the goroutine's (loom's cell checks
    // that no other access races this one).
    g.result.with_mut(|r| unsafe { *r = Some(7) });
    match g.join.complete() {
        Completed::Stored | Completed::Wake => {}
        Completed::Unheld => {
            // SAFETY: the handle released before DONE: the slot is still
            // ours (checked by loom's cell).
            let r = g.result.with_mut(|r| unsafe { (*r).take() });
            assert_eq!(r, Some(7));
            g.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
    if g.join.exit() {
        g.recycled.fetch_add(1, Ordering::Relaxed);
    }
}

/// The handle dropped: take a result that came in, then release.
fn detach(g: &G) {
    let mut taken = false;
    let rel = loop {
        match g.join.release(taken) {
            Some(rel) => break rel,
            None => {
                // SAFETY: DONE is set and we have not released: the slot is
                // the handle's (checked by loom's cell).
                let r = g.result.with_mut(|r| unsafe { (*r).take() });
                assert_eq!(r, Some(7));
                g.delivered.fetch_add(1, Ordering::Relaxed);
                taken = true;
            }
        }
    };
    match rel {
        Release::Kept => {}
        Release::Recycle => {
            g.join.recycled();
            g.recycled.fetch_add(1, Ordering::Relaxed);
        }
        Release::Free => {
            g.recycled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The handle drops while the goroutine completes and exits: the result is
/// delivered exactly once (to whoever holds the slot) and the G recycled
/// exactly once, with no unsynchronised access to the slot.
#[test]
fn detach_races_completion_and_exit() {
    loom::model(|| {
        let g = g(true);
        let g2 = g.clone();
        let t = thread::spawn(move || goroutine(&g2));
        detach(&g);
        t.join().unwrap();
        assert_eq!(g.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(g.recycled.load(Ordering::Relaxed), 1);
    });
}

/// A handle that polls and joins once the result is in, racing the exit.
#[test]
fn join_after_done_races_exit() {
    loom::model(|| {
        let g = g(true);
        let g2 = g.clone();
        let t = thread::spawn(move || goroutine(&g2));
        // A waiting joiner: register, or find the result in.
        if g.join.register_waiter() {
            // Parked until the completion wakes us: model it by waiting
            // for DONE (the wake happens after complete's RMW).
            while !g.join.is_done() {
                thread::yield_now();
            }
        }
        // SAFETY: DONE is set (registration failed on it, or we waited for
        // it): the slot is the handle's (checked by loom's cell).
        let r = g.result.with_mut(|r| unsafe { (*r).take() });
        assert_eq!(r, Some(7));
        match g.join.release(true).unwrap() {
            Release::Kept => {}
            Release::Recycle => {
                g.join.recycled();
                g.recycled.fetch_add(1, Ordering::Relaxed);
            }
            Release::Free => unreachable!("no runtime drop here"),
        }
        t.join().unwrap();
        assert_eq!(g.recycled.load(Ordering::Relaxed), 1);
    });
}

/// The runtime's drop (after the goroutine exited) races the handle's
/// drop: the G is freed exactly once, by the runtime or by the handle, and
/// never while the handle is still recycling it.
#[test]
fn runtime_drop_races_handle_drop() {
    loom::model(|| {
        let g = g(true);
        goroutine(&g);
        assert_eq!(g.recycled.load(Ordering::Relaxed), 0, "the handle holds it");
        let g2 = g.clone();
        let t = thread::spawn(move || detach(&g2));
        // The runtime's drop: free unless orphaned. A handle recycling
        // (RECYCLING) is waited for; it then finds the runtime gone.
        let left_to_handle = g.join.orphan();
        t.join().unwrap();
        let by_handle = g.recycled.load(Ordering::Relaxed);
        if left_to_handle {
            assert_eq!(by_handle, 1, "an orphan is freed by its handle");
        } else {
            // The handle released first (Kept is impossible: it exited; so
            // it recycled into the runtime's list, which the runtime frees).
            assert_eq!(by_handle, 1);
        }
        assert_eq!(g.delivered.load(Ordering::Relaxed), 1);
    });
}
