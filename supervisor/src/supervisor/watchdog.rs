//! The watchdog (`watchdogMs`, protocol.md section 6.5): a process's first `heartbeat` arms it;
//! an armed process silent for more than `watchdogMs` is hung: logged, a `hung` event, a
//! diagnostic asked for where its `hello` offered one, then the stop sequence, and a restart on
//! the `restartAt` schedule as after a crash.
//!
//! One timer per watched process at a time, moved past the limit by each heartbeat (a move in
//! an ordered set, no wakeup): the supervisor wakes for a look only at a process gone silent,
//! so services that keep beating cost no wakeup of their own. A look may come anywhere in a
//! window (see [`super::timers`]): a supervisor awake anyway takes it then, and only a quiet one
//! wakes for it, at the window's end. Those ends fall on a grid of half the [`margin`]
//! ([`Actor::on_grid`]), so that many services going silent at once share their wakeups.

use std::time::{Duration, Instant};

use pm_child::protocol::{DIAGNOSTIC_SIGNALS, DIAGNOSTICS_SELF, DIAGNOSTICS_WINDOW_MS};

use super::actor::Actor;
use super::effects::Effects;
use super::notes::Note;
use super::table::Run;
use super::timers::Timer;
use super::{EventKind, ServiceId};
use crate::platform::Signal;

/// How a hung child gives a diagnostic (its `hello`'s `diagnostics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Diagnostics {
    /// The supervisor sends it this signal.
    Signal(Signal),
    /// It writes one itself when its heartbeats stop.
    Itself,
}

impl Diagnostics {
    /// From `hello`: a signal of [`DIAGNOSTIC_SIGNALS`], `"self"`, or nothing.
    pub(super) fn from_hello(value: Option<&str>) -> Option<Diagnostics> {
        let v = value?;
        if v == DIAGNOSTICS_SELF {
            return Some(Diagnostics::Itself);
        }
        if !DIAGNOSTIC_SIGNALS.contains(&v) {
            return None;
        }
        v.parse().ok().map(Diagnostics::Signal)
    }
}

/// A process's heartbeats.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    /// The last heartbeat; None until the first arms the watchdog.
    last: Option<Instant>,
    /// The window of the one pending look.
    look_at: Option<(Instant, Instant)>,
    /// Found hung: the stop begins at this time (the diagnostic's window).
    stop_at: Option<Instant>,
    /// "not watched" was said.
    said_unwatched: bool,
    pub(super) diagnostics: Option<Diagnostics>,
}

impl Heartbeat {
    /// No heartbeat can come any more (the channel closed): not watched from now on. A verdict
    /// already given stands.
    pub(super) fn disarm(&mut self) {
        self.last = None;
        self.said_unwatched = true;
    }
}

/// How late after the limit a silence is noticed: a tenth of the limit, at least 50 ms (so a
/// heartbeat arriving just at the limit, delayed by a busy machine, is not a hang).
pub(super) fn margin(limit: Duration) -> Duration {
    (limit / 10).max(Duration::from_millis(50))
}

impl<E: Effects> Actor<E> {
    /// Schedules the watchdog's look at service `id`'s process at `at`, unless one is pending.
    pub(super) fn watch_beats_at(&mut self, id: ServiceId, at: Instant) {
        self.watch_beats_within(id, at, at);
    }

    /// Schedules the look anywhere from `begins` to `ends` (see [`super::timers`]), unless one
    /// is pending.
    fn watch_beats_within(&mut self, id: ServiceId, begins: Instant, ends: Instant) {
        let Some(p) = self.table.get_mut(id).and_then(|s| s.proc.as_mut()) else {
            return;
        };
        if p.beat.look_at.is_none() {
            p.beat.look_at = Some((begins, ends));
            self.timers.within(begins, ends, Timer::Watchdog(p.num));
        }
    }

    /// A `heartbeat` from service `id`'s process. Ignored without a watchdog, during a stop and
    /// once found hung.
    pub(super) fn heartbeat(&mut self, id: ServiceId) {
        let now = self.fx.now();
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        let Some(limit) = svc.spec.watchdog else {
            return;
        };
        let Some(p) = svc.proc.as_mut() else { return };
        if !matches!(p.run, Run::Up { .. }) || p.beat.stop_at.is_some() {
            return;
        }
        p.beat.last = Some(now);
        // The pending look moves past this heartbeat: a process that keeps beating is never
        // looked at, and the supervisor wakes for a look only once one has gone silent.
        let num = p.num;
        if let Some((begins, ends)) = p.beat.look_at.take() {
            self.timers.cancel(begins, ends, Timer::Watchdog(num));
        }
        let (begins, ends) = self.look_after(now, limit);
        self.watch_beats_within(id, begins, ends);
    }

    /// When to look at a process whose last heartbeat was at `last`: from half the margin
    /// after `last + limit` (a heartbeat late by less is not a hang) to the next time on the
    /// grid of half the margin, no later than `last + limit + margin`.
    fn look_after(&self, last: Instant, limit: Duration) -> (Instant, Instant) {
        let step = margin(limit) / 2;
        let begins = last + limit + step;
        (begins, self.on_grid(begins, step))
    }

    /// The watchdog's look at process number `num`.
    pub(super) fn watchdog_due(&mut self, num: u64) {
        let now = self.fx.now();
        let Some(svc) = self.table.by_num(num) else {
            return;
        };
        let id = svc.id;
        let Some(limit) = svc.spec.watchdog else {
            return;
        };
        let Some(p) = svc.proc.as_mut() else { return };
        p.beat.look_at = None;
        if !matches!(p.run, Run::Up { .. }) {
            return;
        }
        if let Some(at) = p.beat.stop_at {
            if now >= at {
                self.guard_stop(id);
            } else {
                self.watch_beats_at(id, at);
            }
            return;
        }
        let Some(last) = p.beat.last else {
            if !std::mem::replace(&mut p.beat.said_unwatched, true) {
                self.note(id, &Note::NotWatched);
            }
            return;
        };
        let silence = now.saturating_duration_since(last);
        if silence <= limit {
            let (begins, ends) = self.look_after(last, limit);
            return self.watch_beats_within(id, begins, ends);
        }
        let pid = p.pid;
        let diagnostics = p.beat.diagnostics;
        let window = Duration::from_millis(DIAGNOSTICS_WINDOW_MS);
        if diagnostics.is_some() {
            p.beat.stop_at = Some(now + window);
        }
        svc.guards.hangs += 1;
        self.note(id, &Note::Hung { silence, limit });
        let ms = |d: Duration| d.as_millis() as u64;
        self.record_guard(id, "hung", format!("no heartbeat for {} ms", ms(silence)));
        self.emit(
            id,
            EventKind::Hung {
                pid: pid.as_raw(),
                silence_ms: ms(silence),
                watchdog_ms: ms(limit),
            },
        );
        match diagnostics {
            None => self.guard_stop(id),
            Some(d) => {
                let signal = match d {
                    Diagnostics::Signal(sig) => {
                        // To the process itself: the rest of its group may not handle it.
                        self.fx.signal_process(pid, sig);
                        Some(sig)
                    }
                    Diagnostics::Itself => None,
                };
                self.note(id, &Note::Diagnostic { signal, window });
                self.watch_beats_at(id, now + window);
            }
        }
    }
}
