//! Spawning goroutines and joining them.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::{Arc, Mutex};

use gmp_g::WaitReason;
use gmp_sched::park::{park, Waiter};
use gmp_sched::{Sched, SpawnError};

struct JoinState<T> {
    result: Option<std::thread::Result<T>>,
    waiter: Option<Waiter>,
    detached: bool,
    goid: u64,
}

/// An owned permission to join a goroutine (like `std::thread::JoinHandle`).
/// Dropping it detaches the goroutine; a panic in a detached goroutine is
/// reported on stderr with its id, and the runtime goes on.
pub struct JoinHandle<T> {
    inner: Arc<Mutex<JoinState<T>>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinHandle(goroutine {})", self.id())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn report(goid: u64, p: &(dyn Any + Send)) {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_string());
    eprintln!("goroutine {goid} panicked: {msg} (nobody joined it; the runtime continues)");
}

impl<T> JoinHandle<T> {
    /// Waits for the goroutine to finish; `Err` carries its panic. Parks
    /// only the calling goroutine (or blocks the calling plain thread).
    pub fn join(self) -> std::thread::Result<T> {
        gmp_sched::check_preempt();
        let mut st = lock(&self.inner);
        loop {
            if let Some(r) = st.result.take() {
                return r;
            }
            st.waiter = Some(Waiter::current());
            park(WaitReason::Join, move || drop(st));
            st = lock(&self.inner);
        }
    }
    /// Whether the goroutine has finished.
    pub fn is_finished(&self) -> bool {
        lock(&self.inner).result.is_some()
    }
    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        lock(&self.inner).goid
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.inner);
        st.detached = true;
        if let Some(Err(p)) = st.result.take() {
            let goid = st.goid;
            drop(st);
            report(goid, &*p);
        }
    }
}

pub(crate) fn spawn_on<T: Send + 'static>(
    s: &Sched,
    f: impl FnOnce() -> T + Send + 'static,
    loc: &'static Location<'static>,
) -> Result<JoinHandle<T>, SpawnError> {
    let inner = Arc::new(Mutex::new(JoinState {
        result: None,
        waiter: None,
        detached: false,
        goid: 0,
    }));
    let inner2 = inner.clone();
    let entry = Box::new(move || {
        if let Some(g) = gmp_sched::current_g() {
            lock(&inner2).goid = g.id();
        }
        let r = catch_unwind(AssertUnwindSafe(f));
        if r.is_err() {
            gmp_sched::with_current_sched(|s| {
                s.counters
                    .panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            });
        }
        let mut st = lock(&inner2);
        if st.detached {
            if let Err(p) = &r {
                let goid = st.goid;
                drop(st);
                report(goid, &**p);
                return;
            }
            return;
        }
        st.result = Some(r);
        let w = st.waiter.take();
        drop(st);
        if let Some(w) = w {
            w.wake();
        }
    });
    let g = gmp_sched::newproc(s, entry, loc)?;
    lock(&inner).goid = g.id();
    Ok(JoinHandle { inner })
}

/// Starts a goroutine running `f` on the current runtime (Go's `go f()`).
///
/// Panics with a clear message outside a runtime, or if no stack can be
/// had; [`try_go`] returns those as errors instead.
#[track_caller]
pub fn go<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    match try_go_at(f, Location::caller()) {
        Ok(h) => h,
        Err(e) => panic!("gmp: {e}"),
    }
}

/// Like [`go`], returning an error instead of panicking.
#[track_caller]
pub fn try_go<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    try_go_at(f, Location::caller())
}

fn try_go_at<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    loc: &'static Location<'static>,
) -> Result<JoinHandle<T>, SpawnError> {
    gmp_sched::check_preempt();
    let s = gmp_sched::with_current_sched(|s| s).ok_or(SpawnError::NoRuntime)?;
    spawn_on(s, f, loc)
}
