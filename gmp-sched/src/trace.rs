//! `tracing` events for the scheduler (free when no subscriber listens:
//! each is a `tracing` macro behind its level's static filter).

use gmp_g::GRef;

use crate::proc::Switch;
use crate::sched::Sched;

#[inline]
pub(crate) fn go_create(_s: &Sched, g: GRef, loc: &'static std::panic::Location<'static>) {
    tracing::trace!(target: "gmp::sched", goid = g.id(), site = %loc, "spawn");
}

#[inline]
pub(crate) fn go_start(_s: &Sched, _p: usize, _g: GRef) {}

#[inline]
pub(crate) fn go_stop(_s: &Sched, p: usize, g: GRef, sw: &Switch) {
    if let Switch::Park { .. } = sw {
        tracing::trace!(target: "gmp::sched", goid = g.id(), p, "park");
    }
}

#[inline]
pub(crate) fn go_unpark(_s: &Sched, g: GRef) {
    tracing::trace!(target: "gmp::sched", goid = g.id(), "ready");
}

#[inline]
pub(crate) fn steal(_s: &Sched, p: usize, victim: usize) {
    tracing::trace!(target: "gmp::sched", p, victim, "steal");
}

#[inline]
pub(crate) fn syscall(_s: &Sched, p: usize, g: GRef, enter: bool) {
    tracing::trace!(target: "gmp::sched", goid = g.id(), p, enter, "syscall");
}
