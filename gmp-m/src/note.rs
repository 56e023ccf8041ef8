//! Go's `note`: a one-shot event an M sleeps on.

#[cfg(gmp_loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(not(gmp_loom))]
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A one-shot event. `wakeup` before `sleep` is remembered until `clear`.
#[derive(Debug)]
pub struct Note {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Default for Note {
    fn default() -> Self {
        Self::new()
    }
}

impl Note {
    /// A cleared note.
    pub fn new() -> Note {
        Note {
            set: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
    /// Sets the note and wakes the sleeper (Go's `notewakeup`).
    pub fn wakeup(&self) {
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        *s = true;
        self.cv.notify_one();
    }
    /// Sleeps until the note is set (Go's `notesleep`), then clears it.
    pub fn sleep_and_clear(&self) {
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        while !*s {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        *s = false;
    }
    /// Sleeps until set or `d` passes; returns whether it was set (and
    /// clears it if so). Go's `notetsleep`.
    #[cfg(not(gmp_loom))]
    pub fn sleep_timeout_and_clear(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        while !*s {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *s = false;
        true
    }
    /// Under loom time does not pass: a timed sleep is a check.
    #[cfg(gmp_loom)]
    pub fn sleep_timeout_and_clear(&self, _d: Duration) -> bool {
        let mut s = self.set.lock().unwrap();
        let was = *s;
        *s = false;
        was
    }
    /// Clears the note (Go's `noteclear`).
    pub fn clear(&self) {
        *self.set.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

#[cfg(all(test, not(gmp_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wakeup_before_sleep_is_not_lost() {
        let n = Note::new();
        n.wakeup();
        n.sleep_and_clear();
        assert!(!n.sleep_timeout_and_clear(Duration::from_millis(1)));
    }

    #[test]
    fn cross_thread_wakeups_all_arrive() {
        let n = Arc::new(Note::new());
        let ack = Arc::new(Note::new());
        let (n2, ack2) = (n.clone(), ack.clone());
        let t = std::thread::spawn(move || {
            for _ in 0..2000 {
                n2.sleep_and_clear();
                ack2.wakeup();
            }
        });
        for _ in 0..2000 {
            n.wakeup();
            assert!(
                ack.sleep_timeout_and_clear(Duration::from_secs(10)),
                "lost wake-up"
            );
        }
        t.join().unwrap();
    }
}
