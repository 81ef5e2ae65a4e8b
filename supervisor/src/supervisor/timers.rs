//! What the actor must do at a given time: a stop deadline, a restart falling due, the sweep
//! for strays. One ordered set, so the actor sleeps until the earliest; stale entries (a process
//! reaped before its deadline, a restart cancelled) are harmless, as each is checked when due.
//!
//! Some timers may fire anywhere in a window (the guards' looks and samples): the actor sleeps
//! until the window's end, but one awake for something else (a heartbeat, a log line) once the
//! window has begun fires it then, so that a busy supervisor spends no wakeup of its own on them.

use std::collections::BTreeSet;
use std::time::Instant;

use super::ServiceId;

/// Something due at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Sweep the strays of processes that exited (one sweep serves every exit of a short
    /// window).
    Sweep,
    /// The next step of the stop sequence of process number `.0`.
    Stop(u64),
    /// The pending restart of a service.
    Restart(ServiceId),
    /// The watchdog's next look at process number `.0`.
    Watchdog(u64),
    /// The next memory sample of the services with `maxMemory`.
    Memory,
    /// Watch mode: the debounce of a service's file changes ends.
    Watch(ServiceId),
    /// Services waiting for their dependencies look again (a dependency without `hello` counts
    /// as up after a while).
    Release,
    /// The overall deadline of an ordered stop: whatever still waits for its dependents is
    /// stopped now.
    StopDeadline,
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    set: BTreeSet<(Instant, Timer)>,
    /// The timers with a window, by its beginning: (begins, ends, timer); each also in `set`
    /// at its end.
    windows: BTreeSet<(Instant, Instant, Timer)>,
    /// When the pending sweep is due: exits do not postpone it.
    sweep_at: Option<Instant>,
}

impl Timers {
    pub(super) fn at(&mut self, when: Instant, timer: Timer) {
        if timer == Timer::Sweep {
            if self.sweep_at.is_some() {
                return;
            }
            self.sweep_at = Some(when);
        }
        self.set.insert((when, timer));
    }

    /// A timer that may fire at any time from `begins` to `ends`.
    pub(super) fn within(&mut self, begins: Instant, ends: Instant, timer: Timer) {
        if begins < ends {
            self.windows.insert((begins, ends, timer));
        }
        self.at(ends, timer);
    }

    /// Takes back a timer set by [`Timers::within`] (or [`Timers::at`], with `begins` equal to
    /// `ends`).
    pub(super) fn cancel(&mut self, begins: Instant, ends: Instant, timer: Timer) {
        self.windows.remove(&(begins, ends, timer));
        self.set.remove(&(ends, timer));
    }

    /// Whether a window has begun at `now`: worth a call of [`Timers::take_due`] by an actor
    /// that is awake anyway.
    pub(super) fn window_open(&self, now: Instant) -> bool {
        self.windows
            .first()
            .is_some_and(|&(begins, _, _)| begins <= now)
    }

    /// The earliest time something is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(t, _)| t)
    }

    /// Takes every timer due at `now`: a sweep first, then by time. Timers set while these are
    /// handled wait for the next call, even if already due (a restart delay of 0).
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        if let Some(at) = self.sweep_at.filter(|&t| t <= now) {
            self.set.remove(&(at, Timer::Sweep));
            self.sweep_at = None;
            due.push(Timer::Sweep);
        }
        let mut timed = Vec::new();
        while let Some(&(begins, ends, timer)) = self.windows.first() {
            if begins > now {
                break;
            }
            self.windows.pop_first();
            self.set.remove(&(ends, timer));
            timed.push((ends, timer));
        }
        while let Some(&(t, timer)) = self.set.first() {
            if t > now {
                break;
            }
            self.set.pop_first();
            // A window that ended: it began before, and was taken above.
            timed.push((t, timer));
        }
        timed.sort_unstable();
        due.extend(timed.into_iter().map(|(_, timer)| timer));
        due
    }

    /// The sweep was done early (a reply waited for it).
    pub(super) fn cancel_sweep(&mut self) {
        if let Some(at) = self.sweep_at.take() {
            self.set.remove(&(at, Timer::Sweep));
        }
    }

    /// No restart happens any more (shutting down).
    pub(super) fn cancel_restarts(&mut self) {
        self.set.retain(|(_, t)| !matches!(t, Timer::Restart(_)));
        self.windows
            .retain(|(_, _, t)| !matches!(t, Timer::Restart(_)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_come_due_in_order_with_the_sweep_first() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timers::default();
        t.at(t0 + ms(50), Timer::Stop(7));
        t.at(t0 + ms(10), Timer::Restart(2));
        t.at(t0 + ms(30), Timer::Sweep);
        // A later exit does not postpone the sweep.
        t.at(t0 + ms(40), Timer::Sweep);
        assert_eq!(t.next(), Some(t0 + ms(10)));
        assert_eq!(t.take_due(t0 + ms(5)), []);
        assert_eq!(
            t.take_due(t0 + ms(60)),
            [Timer::Sweep, Timer::Restart(2), Timer::Stop(7)]
        );
        assert_eq!(t.take_due(t0 + ms(60)), []);
        t.at(t0 + ms(70), Timer::Sweep);
        t.at(t0 + ms(80), Timer::Restart(3));
        t.cancel_sweep();
        t.cancel_restarts();
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_window_fires_at_its_end_or_on_any_call_after_it_began() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timers::default();
        t.within(t0 + ms(100), t0 + ms(150), Timer::Watchdog(1));
        t.within(t0 + ms(120), t0 + ms(150), Timer::Watchdog(2));
        t.at(t0 + ms(130), Timer::Restart(4));
        // The actor sleeps until the earliest end; before any window begins nothing is open.
        assert_eq!(t.next(), Some(t0 + ms(130)));
        assert!(!t.window_open(t0 + ms(99)));
        assert_eq!(t.take_due(t0 + ms(99)), []);
        // Awake for something else once the first window began: it fires then, alone.
        assert!(t.window_open(t0 + ms(110)));
        assert_eq!(t.take_due(t0 + ms(110)), [Timer::Watchdog(1)]);
        assert!(!t.window_open(t0 + ms(110)));
        // At the end of the other window: every due timer, by time.
        assert_eq!(
            t.take_due(t0 + ms(150)),
            [Timer::Restart(4), Timer::Watchdog(2)]
        );
        assert_eq!(t.next(), None);
        // A window of no length is a plain timer.
        t.within(t0 + ms(200), t0 + ms(200), Timer::Memory);
        assert!(!t.window_open(t0 + ms(200)));
        assert_eq!(t.take_due(t0 + ms(200)), [Timer::Memory]);
        // One taken back is gone from both.
        t.within(t0 + ms(300), t0 + ms(350), Timer::Watchdog(3));
        t.cancel(t0 + ms(300), t0 + ms(350), Timer::Watchdog(3));
        assert!(!t.window_open(t0 + ms(320)));
        assert_eq!(t.next(), None);
    }
}
