//! Spawning goroutines and joining them.

use std::fmt;
use std::panic::Location;

use gmp_sched::join::{report_unjoined, Joiner};
use gmp_sched::{Sched, SpawnError};

/// An owned permission to join a goroutine (like `std::thread::JoinHandle`).
/// Dropping it detaches the goroutine; a panic in a detached goroutine is
/// reported on stderr with its id, and the runtime goes on.
pub struct JoinHandle<T> {
    inner: Joiner<T>,
    goid: u64,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinHandle(goroutine {})", self.id())
    }
}

impl<T> JoinHandle<T> {
    /// Waits for the goroutine to finish; `Err` carries its panic. Parks
    /// only the calling goroutine (or blocks the calling plain thread).
    pub fn join(mut self) -> std::thread::Result<T> {
        gmp_sched::check_preempt();
        self.inner.join()
    }
    /// Whether the goroutine has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.goid
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(Err(p)) = self.inner.detach() {
            report_unjoined(self.goid, &*p);
        }
    }
}

pub(crate) fn spawn_on<T: Send + 'static>(
    s: &Sched,
    f: impl FnOnce() -> T + Send + 'static,
    loc: &'static Location<'static>,
) -> Result<JoinHandle<T>, SpawnError> {
    let inner = gmp_sched::join::spawn(s, f, loc)?;
    let goid = inner.id();
    Ok(JoinHandle { inner, goid })
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
