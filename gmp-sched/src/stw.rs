//! Stop-the-world and `procresize` (Go's `stopTheWorldWithSema`,
//! `startTheWorldWithSema`, `procresize`), used by `set_gomaxprocs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gmp_g::GRef;
use gmp_p::PStatus;

use crate::proc::{pidleput, startm, wakep};
use crate::sched::{Sched, MAX_PROCS};

impl Sched {
    /// Changes the number of Ps, returning the old number. Runs the resize
    /// with the world stopped; nothing queued on a removed P is lost.
    /// Called from a goroutine it first leaves its P (as a blocking call).
    pub fn set_gomaxprocs(&self, n: usize) -> usize {
        let n = n.clamp(1, MAX_PROCS);
        crate::syscall::blocking(|| {
            let _w = self.stw_lock.lock().unwrap();
            let old = self.gomaxprocs();
            if n == old {
                return old;
            }
            self.stop_the_world();
            let runnable = self.procresize(n);
            self.start_the_world(runnable);
            old
        })
    }

    /// Go's `stopTheWorldWithSema`: every P ends up `Gcstop`.
    /// Requires: `stw_lock` held; the caller holds no P.
    pub(crate) fn stop_the_world(&self) {
        let procs = self.gomaxprocs();
        {
            let mut l = self.locked();
            self.stopwait.store(procs as i64, Ordering::SeqCst);
            self.gcwaiting.store(true, Ordering::SeqCst);
            // Idle Ps.
            while let Some(p) = l.pidle.pop() {
                self.npidle.fetch_sub(1, Ordering::SeqCst);
                p.set_status(PStatus::Gcstop);
                self.stopwait.fetch_sub(1, Ordering::SeqCst);
            }
        }
        loop {
            // Ps in blocking calls.
            for i in 0..procs {
                if let Some(p) = self.p(i) {
                    if p.cas_status(PStatus::Syscall, PStatus::Gcstop) {
                        self.stopwait.fetch_sub(1, Ordering::SeqCst);
                    } else if p.status() == PStatus::Running {
                        crate::preempt::preemptone(self, p);
                    }
                }
            }
            if self.stopwait.load(Ordering::SeqCst) <= 0 || self.is_shutdown() {
                break;
            }
            // Wake spinning/idle Ms so they notice gcwaiting.
            for m in self.allm.lock().unwrap().iter() {
                if m.spinning.load(Ordering::Relaxed) {
                    m.note.wakeup();
                }
            }
            self.netpoll.wake();
            self.stopnote
                .sleep_timeout_and_clear(Duration::from_micros(100));
        }
    }

    /// Go's `procresize` with the world stopped: returns Ps that have work.
    pub(crate) fn procresize(&self, n: usize) -> Vec<&'static gmp_p::P> {
        let old = self.gomaxprocs();
        for i in 0..n {
            let p = self.new_p(i);
            if p.status() == PStatus::Dead {
                p.set_status(PStatus::Gcstop);
            }
        }
        // Destroy surplus Ps: their Gs go to the head of the global queue
        // (we append; order across Ps is not specified), their timers to P0,
        // their free Gs to the global list.
        let p0 = self.p(0).expect("P0 exists");
        for i in n..old {
            let Some(p) = self.p(i) else { continue };
            let mut gs: Vec<GRef> = Vec::new();
            p.runq_drain(&mut gs);
            for g in gs {
                self.globrunqput(g);
            }
            p.timers.move_to(&p0.timers);
            p.gfpurge(&self.gfree);
            p.set_status(PStatus::Dead);
        }
        self.gomaxprocs.store(n, Ordering::SeqCst);
        let mut runnable = Vec::new();
        let mut l = self.locked();
        for i in (0..n).rev() {
            let p = self.p(i).expect("P exists");
            if p.runq_empty() {
                pidleput(self, &mut l, p);
            } else {
                p.set_status(PStatus::Idle);
                runnable.push(p);
            }
        }
        runnable
    }

    /// Go's `startTheWorldWithSema`.
    pub(crate) fn start_the_world(&self, runnable: Vec<&'static gmp_p::P>) {
        self.gcwaiting.store(false, Ordering::SeqCst);
        for p in runnable {
            // Ps with work are not on the idle list: hand each to an M.
            p.set_status(PStatus::Running);
            if !startm(self, Some(p), false) {
                let mut l = self.locked();
                pidleput(self, &mut l, p);
            }
        }
        wakep(self);
        if self.runqsize.load(Ordering::SeqCst) > 0 {
            // More global work than one spinning M: start Ms for idle Ps.
            for _ in 0..self.npidle.load(Ordering::SeqCst) {
                if !startm(self, None, false) {
                    break;
                }
            }
        }
    }
}
