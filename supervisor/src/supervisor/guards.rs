//! What the supervisor decides on its own about a running service: the watchdog
//! (`watchdog`), the memory ceiling (`memory`), start and stop order (`order`) and watch mode
//! (`watching`). This module holds what they keep per service and their common steps: what a
//! launch sets up, and a restart the supervisor decides.

use std::time::{Instant, SystemTime};

use pm_child::protocol::StopReason;

use super::GuardRestart;
use super::ServiceId;
use super::actor::Actor;
use super::effects::Effects;
use super::table::Run;
use crate::config::ServiceSpec;

/// Per service.
#[derive(Debug, Default)]
pub(crate) struct Guards {
    /// Its launch waits for these services of its `dependsOn`.
    pub(super) waiting_for: Vec<String>,
    /// Times found hung.
    pub(super) hangs: u32,
    /// Restarts for staying above `maxMemory`.
    pub(super) memory_restarts: u32,
    /// The last restart the supervisor decided on its own.
    pub(super) last: Option<GuardRestart>,
    /// Watch mode: a restart is due at this time, unless more changes come first; and the first
    /// changed path of the batch.
    pub(super) watch_due: Option<(Instant, String)>,
}

impl<E: Effects> Actor<E> {
    /// A process was launched for service `id`: its watchdog, its memory samples, and the
    /// services waiting for it.
    pub(super) fn guards_launched(&mut self, id: ServiceId, spec: &ServiceSpec) {
        let now = self.fx.now();
        if let Some(limit) = spec.watchdog {
            // The first look: a process that has sent no heartbeat by then is said not watched.
            self.watch_beats_at(id, now + limit);
        }
        if spec.max_memory.is_some() {
            self.schedule_memory(now);
        }
        self.dependency_launched();
    }

    /// Records a restart the supervisor decided, for the row.
    pub(super) fn record_guard(&mut self, id: ServiceId, why: &str, detail: String) {
        if let Some(svc) = self.table.get_mut(id) {
            svc.guards.last = Some(GuardRestart {
                why: why.to_owned(),
                time: crate::logs::lines::timestamp(SystemTime::now()),
                detail,
            });
        }
    }

    /// Stops service `id`'s running process on the supervisor's own decision (hung, over its
    /// memory ceiling); its exit is a crash, restarted on the `restartAt` schedule.
    pub(super) fn guard_stop(&mut self, id: ServiceId) {
        let up = self
            .table
            .get(id)
            .and_then(|s| s.proc.as_ref())
            .is_some_and(|p| matches!(p.run, Run::Up { .. }));
        if up {
            self.begin_stop_within(id, StopReason::Restart, None, true);
        }
    }
}
