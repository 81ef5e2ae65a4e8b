//! Exits: reaping, what an exit means for its service, the sweep for strays, the sentinel's own
//! death; and timers, which fire stop deadlines, restarts and sweeps.

use std::time::Duration;

use super::EventKind;
use super::actor::Actor;
use super::effects::{Effects, Reaped};
use super::notes::Note;
use super::table::PastExit;
use super::timers::Timer;
use super::waiters::WaitFor;
use crate::platform::{Exit, Pid, Signal};
use crate::process::sentinel::Record;
use crate::service::lifecycle::AfterExit;
use crate::service::stop::Killed;

/// Exits within this window share one scan for strays (a read of every process's environment):
/// a crash loop of a hundred services costs a few scans a second, not hundreds. An exit someone
/// waits for (a stop or restart request) is swept at once instead, so that the reply comes
/// after its strays are gone.
const SWEEP_DELAY: Duration = Duration::from_millis(100);

impl<E: Effects> Actor<E> {
    /// Reaps every exited child (SIGCHLD). Replies waiting for these exits go out once the
    /// exited processes' strays are gone.
    pub(super) fn reap(&mut self) {
        self.waiters.defer();
        loop {
            match self.fx.next_exit(&self.table.pids()) {
                Some(Reaped::Service(pid, exit)) => self.exited(pid, exit),
                Some(Reaped::Sentinel) => self.restart_sentinel(),
                None => break,
            }
        }
        let (happened, awaited) = self.waiters.resume();
        if awaited && !self.to_sweep.is_empty() {
            self.sweep();
        }
        for what in happened {
            self.settle(what);
        }
    }

    /// Bookkeeping for an exited process, then what its lifecycle says comes next.
    fn exited(&mut self, pid: Pid, exit: Exit) {
        self.fx.sentinel_forget(pid);
        let Some((id, p)) = self.table.detach(pid) else {
            return;
        };
        let now = self.fx.now();
        let ran = now.saturating_duration_since(p.started);
        let stop = p.run.into_stopping();
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        // A stop the supervisor began on its own (hung, memory) ends as a crash, unless someone
        // asked for a stop or restart meanwhile.
        let requested = stop.as_ref().is_some_and(|s| {
            !s.guard || svc.life.state() == crate::service::lifecycle::State::Stopping
        });
        svc.last_exit = Some(exit);
        svc.remember_exit(PastExit {
            at: now,
            pid,
            exit,
            requested,
            ran,
        });
        let after = svc.life.exited(now, ran, requested);
        let log = |a: &mut Self, note: Note| {
            if let Some(svc) = a.table.get(id) {
                a.fx.note(&svc.log, &p.label, &note);
            }
        };
        match stop {
            Some(s) => {
                if let (Some(killed), Exit::Signal(Signal::SIGKILL)) = (s.seq.killed(), exit) {
                    let after = match killed {
                        Killed::At(t) => Some(t.saturating_duration_since(s.seq.requested())),
                        Killed::Forced => None,
                    };
                    log(self, Note::Sigkill { pid, after });
                }
                let after = now.saturating_duration_since(s.seq.requested());
                log(self, Note::Stopped { exit, after, ran });
            }
            None => log(self, Note::Exited { exit, ran }),
        }
        self.to_sweep.insert(p.num);
        self.timers.at(now + SWEEP_DELAY, Timer::Sweep);
        self.emit(
            id,
            EventKind::Exited {
                pid: pid.as_raw(),
                exit: exit.to_string(),
                requested,
                uptime_ms: ran.as_millis() as u64,
            },
        );
        // The state file is rewritten at the next sweep: a stale entry is harmless (entries are
        // checked against start times), a missing one is not, so only launches write at once.
        self.settle(WaitFor::Reaped(p.num));
        if self.shutdown.is_none() && after != AfterExit::Rest {
            self.after_exit(id, after);
        } else {
            // No launch follows (a stop or a shutdown overtook a restart): a restart waiting
            // for one is answered with the rows as they are, not left hanging.
            self.settle(WaitFor::Launched(id));
        }
        self.release_stops();
    }

    /// Kills what is left of exited processes outside their groups (found by their tags). One
    /// scan serves every exit of the last [`SWEEP_DELAY`], so that 50 services stopping together
    /// cost one scan, not fifty.
    pub(super) fn sweep(&mut self) {
        self.timers.cancel_sweep();
        let nums: Vec<u64> = self.to_sweep.drain().collect();
        if nums.is_empty() {
            return;
        }
        let hit = self.fx.sweep(&nums);
        if !hit.is_empty() {
            let some = &hit[..hit.len().min(10)];
            tracing::info!(count = hit.len(), pids = ?some, "killed processes that had left their service's process group");
        }
        self.state_dirty = true;
    }

    fn restart_sentinel(&mut self) {
        let records = self
            .table
            .services()
            .filter_map(|svc| {
                let p = svc.proc.as_ref()?;
                Some(Record {
                    pid: p.pid.as_raw(),
                    start_time: p.start_ticks,
                    grace: svc.spec.kill_timeout,
                    term: !p.channel.speaks(),
                })
            })
            .collect();
        self.fx.sentinel_restart(records);
    }

    /// When the next timer is due.
    pub(super) fn next_deadline(&self) -> Option<std::time::Instant> {
        self.timers.next()
    }

    /// Fires every timer due now.
    pub(super) fn timers_due(&mut self) {
        let now = self.fx.now();
        for timer in self.timers.take_due(now) {
            match timer {
                Timer::Sweep => self.sweep(),
                Timer::Stop(num) => self.stop_due(num),
                Timer::Restart(id) => self.restart_due(id),
                Timer::Watchdog(num) => self.watchdog_due(num),
                Timer::Memory => self.memory_due(),
                Timer::Watch(id) => self.watch_due(id),
                Timer::Release => self.release_held(),
                Timer::StopDeadline => self.stop_deadline(),
            }
        }
    }
}
