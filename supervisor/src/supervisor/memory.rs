//! The memory ceiling (`maxMemory`): once a second, while any running service has one, the
//! resident memory of every such service's process group is read in one pass over `/proc`
//! ([`platform::group_rss`](crate::platform::group_rss)); a group above its ceiling for
//! [`SAMPLES`] samples in a row (about 3 s: a short peak is not a leak) is stopped with the stop
//! sequence and restarted on the `restartAt` schedule, with a `memory` event. Services without
//! `maxMemory` cost nothing, and no sample is taken while none runs.

use std::time::{Duration, Instant};

use super::actor::Actor;
use super::effects::Effects;
use super::notes::Note;
use super::table::Run;
use super::timers::Timer;
use super::{EventKind, ServiceId};
use crate::platform::Pid;

/// Time between two samples.
pub(super) const PERIOD: Duration = Duration::from_secs(1);
/// Samples in a row above the ceiling that restart a service.
pub(super) const SAMPLES: u8 = 3;

impl<E: Effects> Actor<E> {
    /// Makes sure a sample is due, within 1.5 [`PERIOD`] of `now`: on whole periods of the
    /// guards' grid, which are times the watchdog's looks can fall on too (one wakeup for both),
    /// or up to a tenth of a period earlier if the supervisor is awake anyway.
    pub(super) fn schedule_memory(&mut self, now: Instant) {
        if self.memory_at.is_none() {
            let at = self.on_grid(now + PERIOD / 2, PERIOD);
            self.memory_at = Some(at);
            self.timers.within(at - PERIOD / 10, at, Timer::Memory);
        }
    }

    /// A sample is due.
    pub(super) fn memory_due(&mut self) {
        let now = self.fx.now();
        self.memory_at = None;
        let watched: Vec<(ServiceId, Pid, u64)> = self
            .table
            .services()
            .filter_map(|s| {
                let p = s
                    .proc
                    .as_ref()
                    .filter(|p| matches!(p.run, Run::Up { .. }))?;
                Some((s.id, p.pid, s.spec.max_memory?))
            })
            .collect();
        if watched.is_empty() {
            return;
        }
        let pids: Vec<Pid> = watched.iter().map(|&(_, pid, _)| pid).collect();
        let sizes = self.fx.group_rss(&pids);
        for (id, pid, max) in watched {
            let rss = sizes.get(&pid).copied().unwrap_or(0);
            let Some(p) = self.table.get_mut(id).and_then(|s| s.proc.as_mut()) else {
                continue;
            };
            p.over_memory = if rss > max {
                p.over_memory.saturating_add(1)
            } else {
                0
            };
            if p.over_memory >= SAMPLES {
                self.over_memory(id, pid, rss, max);
            }
        }
        self.schedule_memory(now);
    }

    fn over_memory(&mut self, id: ServiceId, pid: Pid, rss: u64, max: u64) {
        let over = PERIOD * u32::from(SAMPLES);
        if let Some(svc) = self.table.get_mut(id) {
            svc.guards.memory_restarts += 1;
        }
        self.note(id, &Note::OverMemory { rss, max, over });
        let detail = format!("RSS {}", super::notes::mib(rss));
        self.record_guard(id, "memory", detail);
        self.emit(
            id,
            EventKind::Memory {
                pid: pid.as_raw(),
                rss,
                max_memory: max,
                for_ms: over.as_millis() as u64,
            },
        );
        self.guard_stop(id);
    }
}
