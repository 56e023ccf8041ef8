//! Scheduler events: `tracing` events (free when no subscriber listens:
//! each is a `tracing` macro behind its level's static filter) and, with
//! `GMP_TRACE=out.json`, a Chrome trace-event file (one track per P) written
//! at shutdown, readable by Perfetto or `chrome://tracing`.
//!
//! Cost when `GMP_TRACE` is unset: one relaxed load of a per-scheduler bool
//! per hook. When set, each P appends to its own buffer (a mutex only its
//! owning M takes, except at the final flush).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use gmp_g::GRef;

use crate::proc::Switch;
use crate::sched::Sched;

/// One recorded event.
#[derive(Debug, Clone)]
enum Ev {
    /// A goroutine ran on the P from `start` to `end` (ns), then stopped.
    Slice {
        goid: u64,
        start: u64,
        end: u64,
        why: &'static str,
    },
    /// A point event on the P's track.
    Instant {
        ts: u64,
        name: &'static str,
        goid: u64,
        arg: u64,
    },
}

#[derive(Debug, Default)]
struct PBuf {
    /// (goid, start) of the goroutine running now.
    cur: Option<(u64, u64)>,
    evs: Vec<Ev>,
}

/// The per-scheduler Chrome trace recorder.
#[derive(Debug)]
pub(crate) struct Tracer {
    on: AtomicBool,
    path: Option<String>,
    bufs: Box<[Mutex<PBuf>]>,
}

/// Cap on events per P (a long run keeps its first ~4M events).
const MAX_EVENTS_PER_P: usize = 4 << 20;

impl Tracer {
    /// Reads `GMP_TRACE`.
    pub(crate) fn from_env() -> Tracer {
        let path = std::env::var("GMP_TRACE").ok().filter(|p| !p.is_empty());
        let bufs = if path.is_some() {
            (0..crate::sched::MAX_PROCS)
                .map(|_| Mutex::new(PBuf::default()))
                .collect()
        } else {
            Vec::new().into_boxed_slice()
        };
        Tracer {
            on: AtomicBool::new(path.is_some()),
            path,
            bufs,
        }
    }

    #[inline]
    fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn with<R>(&self, p: usize, f: impl FnOnce(&mut PBuf) -> R) -> Option<R> {
        let b = self.bufs.get(p)?;
        let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut b))
    }

    fn push(&self, p: usize, ev: Ev) {
        self.with(p, |b| {
            if b.evs.len() < MAX_EVENTS_PER_P {
                b.evs.push(ev);
            }
        });
    }

    /// Renders the recorded events as Chrome trace-event JSON.
    fn render(&self) -> String {
        let mut out = String::with_capacity(1 << 16);
        out.push_str("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
        out.push_str(
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"gmp\"}}",
        );
        let us = |ns: u64| ns as f64 / 1000.0;
        for (p, b) in self.bufs.iter().enumerate() {
            let b = b.lock().unwrap_or_else(|e| e.into_inner());
            if b.evs.is_empty() && b.cur.is_none() {
                continue;
            }
            let _ = write!(
                out,
                ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{p},\"args\":{{\"name\":\"P{p}\"}}}}"
            );
            let _ = write!(
                out,
                ",\n{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":{p},\"args\":{{\"sort_index\":{p}}}}}"
            );
            for ev in &b.evs {
                match ev {
                    Ev::Slice {
                        goid,
                        start,
                        end,
                        why,
                    } => {
                        let _ = write!(
                            out,
                            ",\n{{\"name\":\"G{goid}\",\"cat\":\"goroutine\",\"ph\":\"X\",\"pid\":1,\"tid\":{p},\"ts\":{:.3},\"dur\":{:.3},\"args\":{{\"goid\":{goid},\"stop\":\"{why}\"}}}}",
                            us(*start),
                            us(end.saturating_sub(*start))
                        );
                    }
                    Ev::Instant {
                        ts,
                        name,
                        goid,
                        arg,
                    } => {
                        let _ = write!(
                            out,
                            ",\n{{\"name\":\"{name}\",\"cat\":\"sched\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":{p},\"ts\":{:.3},\"args\":{{\"goid\":{goid},\"arg\":{arg}}}}}",
                            us(*ts)
                        );
                    }
                }
            }
        }
        out.push_str("\n]}\n");
        out
    }
}

/// Writes the trace file (at shutdown). Errors go to stderr.
pub(crate) fn flush(s: &Sched) {
    let t = &s.tracer;
    if !t.on.swap(false, Ordering::AcqRel) {
        return;
    }
    let Some(path) = &t.path else { return };
    let json = t.render();
    if let Err(e) = std::fs::write(path, json) {
        eprintln!("gmp: cannot write the trace to {path}: {e}");
    }
}

#[inline]
pub(crate) fn go_create(_s: &Sched, g: GRef, loc: &'static std::panic::Location<'static>) {
    tracing::trace!(target: "gmp::sched", goid = g.id(), site = %loc, "spawn");
}

#[inline]
pub(crate) fn go_start(s: &Sched, p: usize, g: GRef) {
    if s.tracer.enabled() {
        let now = s.nanotime();
        s.tracer.with(p, |b| {
            // The previous goroutine lost this P without a switch (its M
            // is in a blocking call and sysmon retook the P).
            if let Some((goid, start)) = b.cur.replace((g.id(), now)) {
                if b.evs.len() < MAX_EVENTS_PER_P {
                    b.evs.push(Ev::Slice {
                        goid,
                        start,
                        end: now,
                        why: "lost P",
                    });
                }
            }
        });
    }
}

#[inline]
pub(crate) fn go_stop(s: &Sched, p: usize, g: GRef, sw: &Switch) {
    let why = match sw {
        Switch::Park { .. } => {
            tracing::trace!(target: "gmp::sched", goid = g.id(), p,
                reason = g.wait_reason().as_str(), "park");
            "park"
        }
        Switch::Gosched => "gosched",
        Switch::Preempt => {
            tracing::debug!(target: "gmp::sched", goid = g.id(), p, "preempted");
            "preempted"
        }
        Switch::Yield => "yield",
        Switch::Goexit => "exit",
        Switch::ExitSyscallNoP => "syscall-exit",
    };
    if s.tracer.enabled() {
        let now = s.nanotime();
        s.tracer.with(p, |b| {
            if let Some((goid, start)) = b.cur.take() {
                if b.evs.len() < MAX_EVENTS_PER_P {
                    let why = if let Switch::Park { .. } = sw {
                        g.wait_reason().as_str()
                    } else {
                        why
                    };
                    b.evs.push(Ev::Slice {
                        goid,
                        start,
                        end: now,
                        why: if why.is_empty() { "park" } else { why },
                    });
                }
            }
        });
    }
}

#[inline]
pub(crate) fn go_unpark(_s: &Sched, g: GRef) {
    tracing::trace!(target: "gmp::sched", goid = g.id(),
        reason = g.wait_reason().as_str(), "ready");
}

#[inline]
pub(crate) fn steal(s: &Sched, p: usize, victim: usize) {
    tracing::trace!(target: "gmp::sched", p, victim, "steal");
    if s.tracer.enabled() {
        let ts = s.nanotime();
        s.tracer.push(
            p,
            Ev::Instant {
                ts,
                name: "steal",
                goid: 0,
                arg: victim as u64,
            },
        );
    }
}

#[inline]
pub(crate) fn syscall(s: &Sched, p: usize, g: GRef, enter: bool) {
    tracing::trace!(target: "gmp::sched", goid = g.id(), p, enter, "syscall");
    if s.tracer.enabled() {
        let ts = s.nanotime();
        s.tracer.push(
            p,
            Ev::Instant {
                ts,
                name: if enter {
                    "syscall enter"
                } else {
                    "syscall exit"
                },
                goid: g.id(),
                arg: 0,
            },
        );
    }
}

/// Sysmon retook P `p` from a blocking call and handed it off.
#[inline]
pub(crate) fn handoff(s: &Sched, p: usize) {
    tracing::debug!(target: "gmp::sched", p, "handoff (sysmon retake)");
    if s.tracer.enabled() {
        let ts = s.nanotime();
        s.tracer.push(
            p,
            Ev::Instant {
                ts,
                name: "handoff",
                goid: 0,
                arg: 0,
            },
        );
    }
}
