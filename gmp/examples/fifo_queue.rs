//! A custom run queue plugged in through the builder: a strict-FIFO,
//! unbounded queue (a `Mutex<VecDeque>`), in place of Go's 256-slot ring.
//! Uses only the public plug-in API (`gmp::plugin`).
//!
//! `cargo run --example fifo_queue`

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gmp::plugin::{GRef, RunQueue, RunQueueFactory};

#[derive(Default)]
struct Fifo {
    q: Mutex<VecDeque<GRef>>,
    pushes: Arc<AtomicU64>,
}

// SAFETY: every G pushed is stored once in the deque and leaves it exactly
// once, by `pop` or `steal_half`, under the mutex; `len` is exact. That is
// the whole contract of `RunQueue` (nothing lost, nothing duplicated).
unsafe impl RunQueue for Fifo {
    fn push_back(&self, g: GRef, _overflow: &mut dyn FnMut(GRef)) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.q.lock().unwrap().push_back(g);
    }
    fn pop(&self) -> Option<GRef> {
        self.q.lock().unwrap().pop_front()
    }
    fn steal_half(&self, out: &mut Vec<GRef>) {
        let mut q = self.q.lock().unwrap();
        let n = q.len() - q.len() / 2;
        out.extend(q.drain(..n));
    }
    fn len(&self) -> usize {
        self.q.lock().unwrap().len()
    }
}

struct FifoFactory {
    pushes: Arc<AtomicU64>,
}

impl RunQueueFactory for FifoFactory {
    fn name(&self) -> &'static str {
        "strict-fifo"
    }
    fn new_queue(&self, _p: usize) -> Box<dyn RunQueue> {
        Box::new(Fifo {
            q: Mutex::default(),
            pushes: self.pushes.clone(),
        })
    }
}

fn main() {
    let pushes = Arc::new(AtomicU64::new(0));
    let rt = gmp::Runtime::builder()
        .procs(1)
        // The order check below needs the plain scheduler: ignore GMP_DEBUG
        // (randomize=1 bypasses runnext on purpose).
        .debug("")
        .run_queue(FifoFactory {
            pushes: pushes.clone(),
        })
        .build()
        .expect("runtime");
    let order = rt.block_on(|| {
        let order = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = (1..=300u32)
            .map(|i| {
                let order = order.clone();
                gmp::go(move || order.lock().unwrap().push(i))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let v = order.lock().unwrap().clone();
        v
    });
    // The newest goroutine sits in `runnext` and runs first (Go's rule);
    // everything else runs in strict spawn order, even past 256 (the
    // default ring would have spilled half of them to the global queue).
    let mut want = vec![300];
    want.extend(1..300);
    assert_eq!(order, want);
    let n = pushes.load(Ordering::Relaxed);
    assert!(n >= 299, "the custom queue saw {n} pushes");
    println!("300 goroutines ran in FIFO order through the plugged-in queue ({n} pushes)");
}

#[test]
fn fifo_queue_is_used() {
    main();
}
