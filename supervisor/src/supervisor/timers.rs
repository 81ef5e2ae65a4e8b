//! What the actor must do at a given time: a stop deadline, a restart falling due, the sweep
//! for strays. One ordered set, so the actor sleeps until the earliest; stale entries (a process
//! reaped before its deadline, a restart cancelled) are harmless, as each is checked when due.

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
        while let Some(&(t, timer)) = self.set.first() {
            if t > now {
                break;
            }
            self.set.pop_first();
            due.push(timer);
        }
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
}
