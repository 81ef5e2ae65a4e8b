//! Launching a service's process, and what follows an exit or a failed launch.

use super::actor::Actor;
use super::effects::Effects;
use super::notes::Note;
use super::table::{Link, Proc, Run, label};
use super::timers::Timer;
use super::waiters::WaitFor;
use super::watchdog::Heartbeat;
use super::{EventKind, ServiceId};
use crate::process::launch::LaunchError;
use crate::process::sentinel::Record;
use crate::service::lifecycle::AfterExit;

impl<E: Effects> Actor<E> {
    /// Starts a process for service `id`.
    pub(super) fn launch(&mut self, id: ServiceId) {
        if self.hold_for_dependencies(id) {
            return self.settle(WaitFor::Launched(id));
        }
        let num = self.table.next_num();
        let Some(svc) = self.table.get(id) else {
            return;
        };
        let spec = svc.spec.clone();
        let launched = match self.fx.launch(id, num, &spec, &svc.log) {
            Ok(l) => l,
            Err(e) => return self.launch_failed(id, &e),
        };
        let pid = launched.pid;
        let proc = Proc {
            num,
            pid,
            label: label(spec.name.as_deref(), Some(pid), id).into(),
            started: self.fx.now(),
            start_ticks: launched.start_ticks,
            channel: launched.channel.map_or(Link::Closed, Link::Open),
            run: Run::Up { ready: false },
            cpu: None,
            beat: Heartbeat::default(),
            over_memory: 0,
        };
        self.table.attach(id, proc);
        if let Some(svc) = self.table.get_mut(id) {
            svc.life.launched();
            svc.error = None;
        }
        let command = launched.command;
        self.note(id, &Note::Started { pid, command });
        // Until it says `hello`, the sentinel SIGTERMs it if the supervisor dies.
        self.fx.sentinel_watch(&Record {
            pid: pid.as_raw(),
            start_time: launched.start_ticks,
            grace: spec.kill_timeout,
            term: true,
        });
        self.state_dirty = true;
        self.emit(id, EventKind::Started { pid: pid.as_raw() });
        self.guards_launched(id, &spec);
        self.settle(WaitFor::Launched(id));
    }

    fn launch_failed(&mut self, id: ServiceId, e: &LaunchError) {
        let now = self.fx.now();
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        svc.error = Some(e.to_string());
        let after = svc.life.launch_failed(now);
        self.note(id, &Note::CannotLaunch(e.to_string()));
        self.emit(
            id,
            EventKind::LaunchFailed {
                error: e.to_string(),
            },
        );
        self.after_exit(id, after);
        self.settle(WaitFor::Launched(id));
    }

    /// Carries out what the lifecycle decided after an exit or a failed launch.
    pub(super) fn after_exit(&mut self, id: ServiceId, after: AfterExit) {
        match after {
            AfterExit::Rest => {}
            AfterExit::LaunchNow => self.launch(id),
            AfterExit::LaunchAt { at, delay, crashes } => {
                self.note(id, &Note::Restarting { delay, crashes });
                self.timers.at(at, Timer::Restart(id));
                self.emit(
                    id,
                    EventKind::Restarting {
                        in_ms: delay.as_millis() as u64,
                        crashes,
                    },
                );
            }
        }
    }

    /// A pending restart's time came: launch if it is still pending.
    pub(super) fn restart_due(&mut self, id: ServiceId) {
        let now = self.fx.now();
        let due = self
            .table
            .get_mut(id)
            .is_some_and(|s| s.proc.is_none() && s.life.restart_due(now));
        if due && self.shutdown.is_none() {
            self.launch(id);
        }
    }
}
