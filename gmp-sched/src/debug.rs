//! `GMP_DEBUG=schedtrace=<ms>` output.

use crate::sched::Sched;

pub(crate) fn start_schedtrace(_s: &std::sync::Arc<Sched>) {}
