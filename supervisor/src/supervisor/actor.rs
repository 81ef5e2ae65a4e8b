//! The actor: the process table and every decision about it. Its inputs are requests, exits,
//! timers and channel events, each handled to the end in one call; its outputs go through
//! [`Effects`]. The `run_loop` feeds it on the tokio runtime; the tests feed it directly.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_child::protocol::{self, StopReason, ToChild};
use tokio::sync::{broadcast, oneshot};

use super::effects::{ChildChannel, Effects};
use super::notes::Note;
use super::order::HeldStops;
use super::table::Table;
use super::timers::Timers;
use super::waiters::{Then, WaitFor, Waiter, Waiters};
use super::{
    ActionError, Event, EventKind, LogLine, Reloaded, Request, Rows, ServiceId, ServiceInfo,
    Services,
};
use crate::config::ServiceSpec;
use crate::service::lifecycle::Lifecycle;
use crate::service::restart_policy::RestartPolicy;

/// Most bytes of text in the answer to a `logs` request.
const MAX_LOGS_ANSWER: usize = 1024 * 1024;

pub(super) struct Actor<E: Effects> {
    pub(super) fx: E,
    pub(super) table: Table<E::Log, E::Channel>,
    pub(super) waiters: Waiters,
    pub(super) timers: Timers,
    events: broadcast::Sender<Event>,
    /// Once shutting down: the replies waiting for the end.
    pub(super) shutdown: Option<Vec<oneshot::Sender<()>>>,
    /// Exited processes (by number) whose strays are still to be swept.
    pub(super) to_sweep: HashSet<u64>,
    /// The state file is behind the process table (written once per turn).
    pub(super) state_dirty: bool,
    /// When the next memory sample is due, if one is.
    pub(super) memory_at: Option<Instant>,
    /// Stops waiting for their dependents to be gone.
    pub(super) held_stops: HeldStops,
    /// When the actor started: the grid of the guards' wakeups counts from it.
    pub(super) epoch: Instant,
}

impl<E: Effects> Actor<E> {
    pub(super) fn new(fx: E, events: broadcast::Sender<Event>) -> Actor<E> {
        let epoch = fx.now();
        Actor {
            fx,
            table: Table::default(),
            waiters: Waiters::default(),
            timers: Timers::default(),
            events,
            shutdown: None,
            to_sweep: HashSet::new(),
            state_dirty: false,
            memory_at: None,
            held_stops: HeldStops::default(),
            epoch,
        }
    }

    /// The first time on the grid of `step` (counted from [`Actor::epoch`]) at or after
    /// `earliest`. The watchdog's looks and the memory samples fall on it, so that the guards of
    /// many services share their wakeups (a memory sample falls on a watchdog look's time).
    pub(super) fn on_grid(&self, earliest: Instant, step: Duration) -> Instant {
        let since = earliest.saturating_duration_since(self.epoch).as_nanos();
        let step_ns = step.as_nanos().max(1);
        let steps = since.div_ceil(step_ns);
        self.epoch + Duration::from_nanos(u64::try_from(steps * step_ns).unwrap_or(u64::MAX))
    }

    /// Ends a turn of the loop: one state file write however many launches the turn made (a
    /// hundred services start at once). True once shut down: every process is gone.
    pub(super) fn end_turn(&mut self) -> bool {
        let now = self.fx.now();
        // Awake anyway: timers whose window has begun fire now rather than wake the loop later.
        if self.timers.window_open(now) {
            self.timers_due();
        }
        for svc in self.table.services_mut() {
            svc.touch(now);
        }
        if std::mem::take(&mut self.state_dirty) {
            self.fx.record_state(&self.table.groups());
        }
        self.shutdown.is_some() && !self.table.has_processes()
    }

    /// Every handle is gone: nobody can stop the supervisor any more, so it stops everything.
    pub(super) fn handles_gone(&mut self) {
        if self.shutdown.is_none() {
            self.begin_shutdown(None);
        }
    }

    pub(super) fn into_effects(self) -> E {
        self.fx
    }

    /// Takes the replies waiting for the end of a shutdown.
    pub(super) fn finished(&mut self) -> Vec<oneshot::Sender<()>> {
        self.shutdown.take().unwrap_or_default()
    }

    pub(super) fn emit(&self, id: ServiceId, kind: EventKind) {
        let name = self.table.get(id).and_then(|s| s.spec.name.clone());
        let _ = self.events.send(Event {
            time: std::time::SystemTime::now(),
            id,
            name,
            kind,
        });
    }

    /// Writes a line about service `id` to its log.
    pub(super) fn note(&mut self, id: ServiceId, note: &Note) {
        if let Some(svc) = self.table.get(id) {
            self.fx.note(&svc.log, &svc.label(), note);
        }
    }

    fn info(&mut self, id: ServiceId) -> Option<ServiceInfo> {
        self.rows(&[id]).pop()
    }

    pub(super) fn request(&mut self, req: Request) {
        match req {
            Request::Start {
                spec,
                await_ready,
                reply,
            } => {
                let row = if self.shutdown.is_some() {
                    Err(ActionError::ShuttingDown)
                } else {
                    let id = self.add_service(*spec, await_ready);
                    self.info(id).ok_or(ActionError::Gone)
                };
                let _ = reply.send(row);
            }
            Request::Stop(which, reply) => self.stop(&which, reply),
            Request::Restart(which, reply) => self.restart(&which, reply),
            Request::Delete(which, reply) => self.delete(&which, reply),
            Request::Describe(which, reply) => {
                let _ = reply.send(self.describe(&which));
            }
            Request::Reload(specs, reply) => self.reload(specs, reply),
            Request::List(reply) => {
                let ids = self.table.ids();
                let _ = reply.send(self.rows(&ids));
            }
            Request::Send(which, data, reply) => {
                let _ = reply.send(self.send(&which, data));
            }
            Request::Disconnect(which, reply) => {
                let _ = reply.send(self.disconnect(&which));
            }
            Request::Logs(which, n, reply) => {
                let _ = reply.send(self.recent_lines(&which, n));
            }
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Request::KillAll => self.kill_all(),
        }
    }

    /// The last `n` kept lines of the selected services, oldest first, and at most
    /// [`MAX_LOGS_ANSWER`] bytes of text (the newest).
    fn recent_lines(&self, which: &Services, n: usize) -> Result<Vec<LogLine>, ActionError> {
        let mut all = Vec::new();
        for id in self.table.select(which)? {
            let Some(svc) = self.table.get(id) else {
                continue;
            };
            let label = svc.label();
            all.extend(
                self.fx
                    .recent(&svc.log, n)
                    .into_iter()
                    .map(|r| (r, label.clone())),
            );
        }
        // Stable: each service's lines keep their order.
        all.sort_by_key(|(r, _)| r.time);
        let mut bytes = 0;
        let mut newest: Vec<LogLine> = all
            .into_iter()
            .rev()
            .take(n)
            .take_while(|(r, _)| {
                bytes += r.text.len();
                bytes <= MAX_LOGS_ANSWER
            })
            .map(|(r, label)| LogLine::from_recent(r, &label))
            .collect();
        newest.reverse();
        Ok(newest)
    }

    pub(super) fn add_service(&mut self, spec: ServiceSpec, await_ready: bool) -> ServiceId {
        let log = self.fx.open_log(&spec);
        let policy = RestartPolicy::new(&spec.restart_at, spec.restart_ok);
        let now = self.fx.now();
        let watched = !spec.watch.is_empty();
        let id = self
            .table
            .add(spec, log, Lifecycle::new(policy, await_ready), now);
        if watched {
            self.start_watching(id);
        }
        self.launch(id);
        id
    }

    fn stop(&mut self, which: &Services, reply: oneshot::Sender<Rows>) {
        let ids = match self.table.select(which) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let nums = self.stop_ordered(&ids, StopReason::Stop);
        let pending = nums.into_iter().map(WaitFor::Reaped).collect();
        self.wait(pending, ids, Vec::new(), Then::Rows(reply));
    }

    /// Stops the selected services and forgets them once their processes are gone; the reply
    /// carries their last rows.
    fn delete(&mut self, which: &Services, reply: oneshot::Sender<Rows>) {
        let ids = match self.table.select(which) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let pending = self.remove_services(&ids);
        self.wait(pending, ids.clone(), ids, Then::Rows(reply));
    }

    /// Marks services to be forgotten and stops them; returns the exits to wait for.
    pub(super) fn remove_services(&mut self, ids: &[ServiceId]) -> HashSet<WaitFor> {
        for &id in ids {
            if let Some(svc) = self.table.get_mut(id) {
                svc.deleting = true;
                if !svc.spec.watch.is_empty() {
                    self.fx.unwatch(id);
                }
            }
        }
        // Dependents first, as any stop of several services.
        let nums = self.stop_ordered(ids, StopReason::Stop);
        nums.into_iter().map(WaitFor::Reaped).collect()
    }

    fn restart(&mut self, which: &Services, reply: oneshot::Sender<Rows>) {
        if self.shutdown.is_some() {
            let _ = reply.send(Err(ActionError::ShuttingDown));
            return;
        }
        let ids = match self.table.select(which) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let pending = ids.iter().map(|&id| WaitFor::Launched(id)).collect();
        let mut launch_now = Vec::new();
        for &id in &ids {
            let Some(svc) = self.table.get_mut(id) else {
                continue;
            };
            if svc.life.restart_requested(svc.proc.is_some()) {
                self.begin_stop(id, StopReason::Restart);
            } else {
                launch_now.push(id);
            }
        }
        // The waiter first: the launches below settle it.
        self.wait(pending, ids, Vec::new(), Then::Rows(reply));
        for id in launch_now {
            self.launch(id);
        }
    }

    fn send(&mut self, which: &Services, data: serde_json::Value) -> Result<usize, ActionError> {
        let ids = self.table.select(which)?;
        if protocol::is_node_internal(&data) {
            return Err(ActionError::ReservedData);
        }
        let line: Arc<[u8]> = protocol::encode(&ToChild::Data(data)).into();
        if line.len() - 1 > protocol::MAX_LINE_BYTES {
            return Err(ActionError::TooLarge(line.len() - 1));
        }
        let mut sent = 0;
        for id in ids {
            let Some(svc) = self.table.get_mut(id) else {
                continue;
            };
            let Some(chan) = svc.proc.as_ref().and_then(|p| p.channel.channel()) else {
                continue;
            };
            if chan.send(line.clone()) {
                sent += 1;
            } else if let Some(more) = svc.send_warnings.allow() {
                let label = svc.label();
                tracing::warn!(service = %label, more_not_delivered = more, "message not delivered: the child is not reading its channel");
            }
        }
        Ok(sent)
    }

    /// Closes the channel of every running process of the selected services, as a fork parent's
    /// `child.disconnect()` does; a child that said `hello` is told first, so that its SDK does
    /// not take the EOF for the supervisor's death. Returns how many channels were closed.
    fn disconnect(&mut self, which: &Services) -> Result<usize, ActionError> {
        let ids = self.table.select(which)?;
        let notice: Arc<[u8]> = protocol::encode(&ToChild::Disconnect).into();
        let mut closed = 0;
        for id in ids {
            let Some(p) = self.table.get_mut(id).and_then(|s| s.proc.as_mut()) else {
                continue;
            };
            let Some((chan, spoke)) = p.channel.close() else {
                continue;
            };
            if spoke {
                chan.send(notice.clone());
            }
            chan.disconnect();
            closed += 1;
            self.note(id, &Note::Disconnected);
            self.channel_gone(id, spoke);
        }
        Ok(closed)
    }

    pub(super) fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        let first = self.shutdown.is_none();
        self.shutdown.get_or_insert_with(Vec::new).extend(reply);
        if first {
            self.timers.cancel_restarts();
            let ids = self.table.ids();
            self.stop_ordered(&ids, StopReason::Shutdown);
        }
    }

    /// A second Ctrl-C: the supervisor shuts down, and every process group gets SIGKILL now.
    fn kill_all(&mut self) {
        self.handles_gone();
        for id in self.table.ids() {
            self.force_kill(id);
        }
    }

    pub(super) fn wait(
        &mut self,
        pending: HashSet<WaitFor>,
        services: Vec<ServiceId>,
        forget: Vec<ServiceId>,
        reply: Then,
    ) {
        if let Some(w) = self.waiters.wait(pending, services, forget, reply) {
            self.answer(w);
        }
    }

    /// Something a waiter may wait for happened.
    pub(super) fn settle(&mut self, what: WaitFor) {
        for w in self.waiters.settle(what) {
            self.answer(w);
        }
    }

    fn answer(&mut self, w: Waiter) {
        match w.reply {
            Then::Rows(reply) => {
                let rows = self.rows(&w.services);
                let _ = reply.send(Ok(rows));
            }
            Then::Reload(ids, reply) => {
                let done = Reloaded {
                    added: self.rows(&ids.added),
                    changed: self.rows(&ids.changed),
                    removed: self.rows(&ids.removed),
                    unchanged: self.rows(&ids.unchanged),
                };
                let _ = reply.send(Ok(done));
            }
        }
        for id in w.forget {
            if self.table.get(id).is_some_and(|s| s.deleting) {
                self.table.remove(id);
            }
        }
    }
}
