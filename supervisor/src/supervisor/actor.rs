//! The actor: the process table and every decision about it. Its inputs are requests, exits,
//! timers and channel events, each handled to the end in one call; its outputs go through
//! [`Effects`]. The `run_loop` feeds it on the tokio runtime; the tests feed it directly.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use pm_child::protocol::{self, StopReason, ToChild};
use tokio::sync::{broadcast, oneshot};

use super::effects::{ChildChannel, Effects};
use super::notes::Note;
use super::order::HeldStops;
use super::table::Table;
use super::timers::Timers;
use super::waiters::{WaitFor, Waiter, Waiters};
use super::{ActionError, Event, EventKind, Request, Rows, ServiceId, ServiceInfo, Services};
use crate::config::ServiceSpec;
use crate::service::lifecycle::Lifecycle;
use crate::service::restart_policy::RestartPolicy;

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
    /// When the actor started: the watchdog's grid counts from it.
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

    /// Ends a turn of the loop: one state file write however many launches the turn made (a
    /// hundred services start at once). True once shut down: every process is gone.
    pub(super) fn end_turn(&mut self) -> bool {
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

    fn info(&self, id: ServiceId) -> Option<ServiceInfo> {
        let svc = self.table.get(id)?;
        let memory = svc.proc.as_ref().and_then(|p| self.fx.memory(p.pid));
        Some(svc.info(self.fx.now(), memory))
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
            Request::List(reply) => {
                let rows = self.table.ids().into_iter().filter_map(|id| self.info(id));
                let _ = reply.send(rows.collect());
            }
            Request::Send(which, data, reply) => {
                let _ = reply.send(self.send(&which, data));
            }
            Request::Disconnect(which, reply) => {
                let _ = reply.send(self.disconnect(&which));
            }
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Request::KillAll => self.kill_all(),
        }
    }

    fn add_service(&mut self, spec: ServiceSpec, await_ready: bool) -> ServiceId {
        let log = self.fx.open_log(&spec);
        let policy = RestartPolicy::new(&spec.restart_at, spec.restart_ok);
        let watched = !spec.watch.is_empty();
        let id = self
            .table
            .add(spec, log, Lifecycle::new(policy, await_ready));
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
        self.wait(pending, ids, reply);
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
        self.wait(pending, ids, reply);
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

    fn wait(
        &mut self,
        pending: HashSet<WaitFor>,
        services: Vec<ServiceId>,
        reply: oneshot::Sender<Rows>,
    ) {
        if let Some(w) = self.waiters.wait(pending, services, reply) {
            self.answer(w);
        }
    }

    /// Something a waiter may wait for happened.
    pub(super) fn settle(&mut self, what: WaitFor) {
        for w in self.waiters.settle(what) {
            self.answer(w);
        }
    }

    fn answer(&self, w: Waiter) {
        let rows = w.services.iter().filter_map(|&id| self.info(id)).collect();
        let _ = w.reply.send(Ok(rows));
    }
}
