//! Loom model of the reserve-M slot (`Sched::spare_m` in
//! `gmp-sched/src/proc.rs`) that lets the preemption signal handler hand a
//! P to a parked M without the scheduler lock (`preempt::handoff_to_spare_m`;
//! the argument is in `gmp-sysmon/DESIGN.md`, piece 5).
//!
//! A miniature, like `loom_spinning.rs` (gmp-sched does not build under
//! loom): Ms are indices, the idle list is a `Vec` under a mutex, the slot
//! an atomic holding `M index + 1` (0 = empty), and each M's `nextp` an
//! atomic that a claimer sets. The operations are the real code's, in its
//! order:
//!
//! * **park** (`stopm`): under the lock, CAS the slot empty -> self, else
//!   push on the list; then `nmidle += 1`.
//! * **handler**: swap the slot to empty; if it held an M, `nmidle -= 1`
//!   and hand it a P (`nextp`). No lock.
//! * **startm**: under the lock, pop the list, else swap the slot; hand the
//!   M a P.
//! * **refill** (the claimed M, later): under the lock, if the slot is
//!   empty, move an M from the list into it.
//!
//! Checked in every execution: no M is handed two Ps; at the end every M
//! is either handed a P or idle (in exactly one of list and slot), never
//! both, never neither; and `nmidle` equals the number of idle Ms.
//!
//! Run with
//! `RUSTFLAGS="--cfg gmp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p gmp-m --test loom_spare_slot --release`.
#![cfg(gmp_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

const NM: usize = 3;

struct Sched {
    /// The idle list (`Locked::midle`).
    midle: Mutex<Vec<usize>>,
    /// The reserve slot: M index + 1, 0 when empty.
    slot: AtomicUsize,
    nmidle: AtomicUsize,
    /// Per M: the P handed to it (P id + 1), 0 if none.
    nextp: [AtomicUsize; NM],
}

impl Sched {
    fn new() -> Self {
        Sched {
            midle: Mutex::new(Vec::new()),
            slot: AtomicUsize::new(0),
            nmidle: AtomicUsize::new(0),
            nextp: [
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ],
        }
    }

    fn park(&self, m: usize) {
        let mut l = self.midle.lock().unwrap();
        if self
            .slot
            .compare_exchange(0, m + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            l.push(m);
        }
        self.nmidle.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands P `p` to M `m`: must be the only hand-off to it.
    fn hand(&self, m: usize, p: usize) {
        let prev = self.nextp[m].swap(p + 1, Ordering::AcqRel);
        assert_eq!(prev, 0, "M {m} handed two Ps");
    }

    fn take_slot(&self) -> Option<usize> {
        let v = self.slot.swap(0, Ordering::AcqRel);
        if v == 0 {
            return None;
        }
        self.nmidle.fetch_sub(1, Ordering::Relaxed);
        Some(v - 1)
    }

    fn handler(&self, p: usize) -> Option<usize> {
        let m = self.take_slot()?;
        self.hand(m, p);
        Some(m)
    }

    fn startm(&self, p: usize) -> Option<usize> {
        let mut l = self.midle.lock().unwrap();
        let m = match l.pop() {
            Some(m) => {
                self.nmidle.fetch_sub(1, Ordering::Relaxed);
                m
            }
            None => self.take_slot()?,
        };
        drop(l);
        self.hand(m, p);
        Some(m)
    }

    fn refill(&self) {
        let mut l = self.midle.lock().unwrap();
        if self.slot.load(Ordering::Acquire) != 0 {
            return;
        }
        if let Some(m) = l.pop() {
            self.slot.store(m + 1, Ordering::Release);
        }
    }

    /// The end state: each of the Ms `0..parked` (those that parked)
    /// handed a P or idle, exactly once.
    fn check(&self, parked: usize) {
        let l = self.midle.lock().unwrap();
        let slot = self.slot.load(Ordering::Acquire);
        let mut idle = 0;
        for m in 0..parked {
            let handed = self.nextp[m].load(Ordering::Acquire) != 0;
            let listed = l.iter().filter(|&&x| x == m).count();
            let slotted = usize::from(slot == m + 1);
            assert!(listed + slotted <= 1, "M {m} idle twice");
            assert!(
                handed != (listed + slotted == 1),
                "M {m}: handed {handed}, listed {listed}, in slot {slotted}"
            );
            idle += listed + slotted;
        }
        assert_eq!(self.nmidle.load(Ordering::Relaxed), idle, "nmidle");
    }
}

#[test]
fn the_reserve_m_is_claimed_once_and_never_lost() {
    loom::model(|| {
        let s = Arc::new(Sched::new());
        let parkers: Vec<_> = (0..NM)
            .map(|m| {
                let s = s.clone();
                thread::spawn(move || s.park(m))
            })
            .collect();
        let h = {
            let s = s.clone();
            // The handler, then (as the claimed M would) the refill.
            thread::spawn(move || {
                if s.handler(0).is_some() {
                    s.refill();
                }
            })
        };
        s.startm(1);
        for t in parkers {
            t.join().unwrap();
        }
        h.join().unwrap();
        s.check(NM);
    });
}

#[test]
fn the_slot_is_filled_before_the_list() {
    // With one M parked and nobody claiming, it is the reserve: the
    // handler, which cannot take the lock, always finds it.
    loom::model(|| {
        let s = Arc::new(Sched::new());
        let t = {
            let s = s.clone();
            thread::spawn(move || s.park(0))
        };
        t.join().unwrap();
        assert_eq!(s.handler(0), Some(0));
        s.check(1);
    });
}
