//! Loom models of the goroutine status word's races (`StatusWord`, whose
//! atomic is loom's under `--cfg gmp_loom`).
//!
//! Run with
//! `RUSTFLAGS="--cfg gmp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gmp-g --test loom_status --release`.
#![cfg(gmp_loom)]

use std::sync::atomic::Ordering;

use gmp_g::sync::AtomicBool;
use gmp_g::{Status, StatusWord, SCAN};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// A parked G and its waker. The parker (gopark) puts the G in a wait queue
/// under the queue's lock, moves it `Running -> Waiting`, and only then
/// releases the lock (Go's `park_m` runs `unlockf` after the CAS). The
/// waker (goready) dequeues under the same lock and moves it
/// `Waiting -> Runnable`. The waker must never find a G that is still
/// `Running`, and a G in the queue is never left unwoken by a dequeue.
#[test]
fn ready_vs_park() {
    loom::model(|| {
        let status = Arc::new(StatusWord::new(Status::Running));
        let waitq = Arc::new(Mutex::new(false)); // "the G is queued"

        let (st, q) = (status.clone(), waitq.clone());
        let waker = thread::spawn(move || {
            let dequeued = std::mem::replace(&mut *q.lock().unwrap(), false);
            if dequeued {
                st.cas(Status::Waiting, Status::Runnable)
                    .expect("goready found a G that was not Waiting");
            }
            dequeued
        });

        // gopark: enqueue, CAS to Waiting, then unlock (unlockf).
        {
            let mut queued = waitq.lock().unwrap();
            *queued = true;
            status
                .cas(Status::Running, Status::Waiting)
                .expect("park: the G was not Running");
        }

        let woken = waker.join().unwrap();
        let queued = *waitq.lock().unwrap();
        match (woken, queued, status.get()) {
            (true, false, Status::Runnable) => {}
            (false, true, Status::Waiting) => {}
            other => panic!("inconsistent park/ready outcome {other:?}"),
        }
    });
}

/// Two wakers for one parked G (e.g. two `select!` cases firing, or a
/// channel send racing a timer): exactly one CAS `Waiting -> Runnable` wins,
/// so the G is queued once.
#[test]
fn two_wakers_one_winner() {
    loom::model(|| {
        let status = Arc::new(StatusWord::new(Status::Waiting));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let st = status.clone();
                thread::spawn(move || st.cas(Status::Waiting, Status::Runnable).is_ok())
            })
            .collect();
        let wins = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&w| w)
            .count();
        assert_eq!(wins, 1, "a parked G was readied {wins} times");
        assert_eq!(status.get(), Status::Runnable);
    });
}

/// Preempt vs exit. The preempter (Go's `suspendG` on a running G) takes the
/// scan bit on a `Running` G, raises its `preempt` flag, and drops the bit;
/// if the G is already `Dead` it does nothing. The exiting G (gdestroy)
/// moves `Running -> Dead` (retrying while the scan bit is held) and then
/// clears `preempt`, so a recycled G never starts with a stale request.
/// Exactly one of "preempter saw Running" / "saw Dead" happens, the G ends
/// `Dead`, and the flag ends clear.
#[test]
fn preempt_vs_exit() {
    loom::model(|| {
        let status = Arc::new(StatusWord::new(Status::Running));
        let preempt = Arc::new(AtomicBool::new(false));

        let (st, pr) = (status.clone(), preempt.clone());
        let preempter = thread::spawn(move || match st.cas_to_scan(Status::Running) {
            Ok(()) => {
                pr.store(true, Ordering::Release);
                st.cas_from_scan(Status::Running, Status::Running)
                    .expect("scan bit lost while held");
                true
            }
            Err(e) => {
                assert_eq!(e.found, Status::Dead as u32, "unexpected status");
                false
            }
        });

        // gdestroy.
        loop {
            match status.cas(Status::Running, Status::Dead) {
                Ok(()) => break,
                Err(e) if e.found == Status::Running as u32 | SCAN => thread::yield_now(),
                Err(e) => panic!("exit: {e}"),
            }
        }
        preempt.store(false, Ordering::Relaxed);

        let saw_running = preempter.join().unwrap();
        let _ = saw_running; // either outcome is fine; both are checked above
        assert_eq!(status.get(), Status::Dead);
        assert!(
            !preempt.load(Ordering::Relaxed),
            "a dead G kept a preemption request"
        );
    });
}
