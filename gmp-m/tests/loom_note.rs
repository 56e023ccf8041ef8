//! Loom models of the M park note (`Note`: one futex word; under
//! `--cfg gmp_loom` the futex is modelled with loom's `Mutex` + `Condvar`):
//! a wake-up is never lost, whether it comes before or after the sleeper
//! announces itself or blocks.
//!
//! Run with
//! `RUSTFLAGS="--cfg gmp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gmp-m --test loom_note --release`.
#![cfg(gmp_loom)]

use gmp_m::note::Note;
use loom::sync::Arc;
use loom::thread;

/// One waker, one sleeper, in every interleaving: the sleeper returns
/// (loom reports a deadlock if a wake-up were lost) and the note ends clear.
#[test]
fn wakeup_vs_sleep_never_lost() {
    loom::model(|| {
        let n = Arc::new(Note::new());
        let n2 = n.clone();
        let waker = thread::spawn(move || n2.wakeup());
        n.sleep_and_clear();
        waker.join().unwrap();
        assert!(!n.sleep_timeout_and_clear(std::time::Duration::ZERO));
    });
}

/// A ping-pong of two rounds (an M parked, woken, parked again, as in
/// stopm/startm): each round's wake-up arrives, and a wake-up from round 1
/// cannot satisfy round 2's sleep because the sleeper cleared it.
#[test]
fn two_rounds_handshake() {
    loom::model(|| {
        let n = Arc::new(Note::new());
        let ack = Arc::new(Note::new());
        let (n2, ack2) = (n.clone(), ack.clone());
        let m = thread::spawn(move || {
            for _ in 0..2 {
                n2.sleep_and_clear();
                ack2.wakeup();
            }
        });
        for _ in 0..2 {
            n.wakeup();
            ack.sleep_and_clear();
        }
        m.join().unwrap();
    });
}

/// Two wakers racing one sleeper (a `wakep` and a netpoll inject both
/// waking the same parked M): the sleeper returns however the swaps and
/// the wake interleave, and at most one wake-up is left over.
#[test]
fn two_wakers_one_sleeper() {
    loom::model(|| {
        let n = Arc::new(Note::new());
        let (a, b) = (n.clone(), n.clone());
        let wa = thread::spawn(move || a.wakeup());
        let wb = thread::spawn(move || b.wakeup());
        n.sleep_and_clear();
        wa.join().unwrap();
        wb.join().unwrap();
        // Either both merged into the consumed one, or the second is
        // still set: consume it, after which the note is clear.
        let _ = n.sleep_timeout_and_clear(std::time::Duration::ZERO);
        assert!(!n.sleep_timeout_and_clear(std::time::Duration::ZERO));
    });
}
