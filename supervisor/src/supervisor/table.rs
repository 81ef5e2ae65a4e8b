//! The process table: every service, its current process and what that process is doing, with
//! the indexes that find a process by pid and by number kept in one place.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_child::protocol::StopReason;

use super::guards::Guards;
use super::watchdog::Heartbeat;
use super::{ActionError, EXITS_KEPT, ServiceId, ServiceInfo, Services};
use crate::config::ServiceSpec;
use crate::platform::{Exit, Pid};
use crate::rate_limit::RateLimit;
use crate::service::lifecycle::{Lifecycle, State};
use crate::service::stop::StopSequence;

/// How a service is named in its log lines and the supervisor's diagnostics: its name; a
/// nameless one by its process's pid, or `#id` while it has none.
pub(super) fn label(name: Option<&str>, pid: Option<Pid>, id: ServiceId) -> String {
    match (name, pid) {
        (Some(n), _) => n.to_owned(),
        (None, Some(p)) => p.to_string(),
        (None, None) => format!("#{id}"),
    }
}

/// One service: its spec, its lifecycle and its current process.
#[derive(Debug)]
pub(super) struct Service<L, C> {
    pub(super) id: ServiceId,
    pub(super) spec: Arc<ServiceSpec>,
    pub(super) log: L,
    pub(super) proc: Option<Proc<C>>,
    pub(super) life: Lifecycle,
    pub(super) last_exit: Option<Exit>,
    /// Why the last launch failed.
    pub(super) error: Option<String>,
    /// Warnings about messages it did not take: a controller may send any number.
    pub(super) send_warnings: RateLimit,
    /// Started from the config file (`reload` manages it), not by a `start` request.
    pub(super) configured: bool,
    /// A `delete` or `reload` is removing it: forgotten once its process is gone.
    pub(super) deleting: bool,
    /// Its state when last looked at, and since when (for `describe`).
    pub(super) since: (State, Instant),
    /// Its last exits, the latest last.
    pub(super) exits: VecDeque<PastExit>,
    /// What the watchdog, the memory ceiling, start order and watch mode keep about it.
    pub(super) guards: Guards,
}

/// An exit, as a service remembers it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PastExit {
    pub(super) at: Instant,
    pub(super) pid: Pid,
    pub(super) exit: Exit,
    pub(super) requested: bool,
    pub(super) ran: Duration,
}

/// A process group's usage when last sampled: at, CPU time used then, and the CPU percentage
/// computed then.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuSample {
    pub(super) at: Instant,
    pub(super) used: Duration,
    pub(super) percent: Option<f64>,
}

/// A running process of a service.
#[derive(Debug)]
pub(super) struct Proc<C> {
    /// Numbers processes across services, for the life of the supervisor: its channel's events
    /// and its stop deadlines name it, and its service tag ends with it.
    pub(super) num: u64,
    pub(super) pid: Pid,
    pub(super) label: Arc<str>,
    pub(super) started: Instant,
    pub(super) start_ticks: u64,
    pub(super) channel: Link<C>,
    pub(super) run: Run,
    /// The previous CPU sample of its group (None: not sampled yet).
    pub(super) cpu: Option<CpuSample>,
    /// Its heartbeats, for the watchdog.
    pub(super) beat: Heartbeat,
    /// Memory samples in a row above `maxMemory`.
    pub(super) over_memory: u8,
}

/// What the supervisor can say to a process over its channel.
#[derive(Debug)]
pub(super) enum Link<C> {
    /// Open, and the child has not said `hello` (a plain program, or a Node child that uses IPC
    /// only): data goes over it; stops go by signal.
    Open(C),
    /// Open, and the child said `hello`: it understands `stop`, and takes EOF on its channel (the
    /// supervisor's death) as a stop request.
    Spoken(C),
    /// Closed (EOF, a failed write, a `disconnect`), or never set up: signals only.
    Closed,
}

impl<C> Link<C> {
    pub(super) fn channel(&self) -> Option<&C> {
        match self {
            Link::Open(c) | Link::Spoken(c) => Some(c),
            Link::Closed => None,
        }
    }

    /// Whether `stop` can be sent: the channel is open and the child speaks the protocol.
    pub(super) fn speaks(&self) -> bool {
        matches!(self, Link::Spoken(_))
    }

    /// The child said `hello`.
    pub(super) fn hello(&mut self) {
        if let Link::Open(_) = self
            && let Link::Open(c) = std::mem::replace(self, Link::Closed)
        {
            *self = Link::Spoken(c);
        }
    }

    /// Closes the link, returning the channel and whether the child had said `hello`.
    pub(super) fn close(&mut self) -> Option<(C, bool)> {
        match std::mem::replace(self, Link::Closed) {
            Link::Open(c) => Some((c, false)),
            Link::Spoken(c) => Some((c, true)),
            Link::Closed => None,
        }
    }
}

/// Where a process is in its life.
#[derive(Debug)]
pub(super) enum Run {
    /// Running; `ready` once it said so.
    Up { ready: bool },
    /// A stop is under way.
    Stopping(Box<Stopping>),
}

/// A stop under way.
#[derive(Debug)]
pub(super) struct Stopping {
    pub(super) seq: StopSequence,
    pub(super) reason: StopReason,
    pub(super) ready: bool,
    /// Lines about its `extend` requests: a child may send any number.
    pub(super) extend_lines: RateLimit,
    /// The supervisor stops it on its own (hung, over its memory ceiling): its exit is a crash,
    /// restarted on the `restartAt` schedule, unless a stop or restart was requested meanwhile.
    pub(super) guard: bool,
}

impl Run {
    pub(super) fn ready(&self) -> bool {
        match self {
            Run::Up { ready } => *ready,
            Run::Stopping(s) => s.ready,
        }
    }

    pub(super) fn set_ready(&mut self) {
        match self {
            Run::Up { ready } => *ready = true,
            Run::Stopping(s) => s.ready = true,
        }
    }

    pub(super) fn stopping(&mut self) -> Option<&mut Stopping> {
        match self {
            Run::Stopping(s) => Some(s),
            Run::Up { .. } => None,
        }
    }

    pub(super) fn into_stopping(self) -> Option<Box<Stopping>> {
        match self {
            Run::Stopping(s) => Some(s),
            Run::Up { .. } => None,
        }
    }
}

impl<L, C> Service<L, C> {
    pub(super) fn label(&self) -> Arc<str> {
        match &self.proc {
            Some(p) => p.label.clone(),
            None => label(self.spec.name.as_deref(), None, self.id).into(),
        }
    }

    /// Remembers an exit (at most [`EXITS_KEPT`]).
    pub(super) fn remember_exit(&mut self, e: PastExit) {
        if self.exits.len() == EXITS_KEPT {
            self.exits.pop_front();
        }
        self.exits.push_back(e);
    }

    /// Notes a change of state (called once per turn of the actor).
    pub(super) fn touch(&mut self, now: Instant) {
        let state = self.life.state();
        if state != self.since.0 {
            self.since = (state, now);
        }
    }

    /// Its row, at `now`, with its process group's `memory` and `cpu`.
    pub(super) fn info(&self, now: Instant, memory: Option<u64>, cpu: Option<f64>) -> ServiceInfo {
        let ms = |d: Duration| d.as_millis() as u64;
        ServiceInfo {
            id: self.id,
            name: self.spec.name.clone(),
            pid: self.proc.as_ref().map(|p| p.pid.as_raw()),
            state: self.life.state(),
            ready: self.proc.as_ref().is_some_and(|p| p.run.ready()),
            restarts: self.life.restarts(),
            crashes: self.life.crashes(),
            uptime_ms: self
                .proc
                .as_ref()
                .map(|p| ms(now.saturating_duration_since(p.started))),
            restart_in_ms: self
                .life
                .restart_at()
                .map(|t| ms(t.saturating_duration_since(now))),
            last_exit: self.last_exit.map(|e| e.to_string()),
            error: self.error.clone(),
            memory,
            cpu,
            log: self.spec.log.clone(),
            watchdog_ms: self.spec.watchdog.map(ms),
            max_memory: self.spec.max_memory,
            depends_on: self.spec.depends_on.clone(),
            waiting_for: self.guards.waiting_for.clone(),
            watch: !self.spec.watch.is_empty(),
            hangs: self.guards.hangs,
            memory_restarts: self.guards.memory_restarts,
            last_guard: self.guards.last.clone(),
        }
    }

    fn matches(&self, which: &Services) -> bool {
        match which {
            Services::All => true,
            Services::Named(n) => self.spec.name.as_deref() == Some(n.as_str()),
            Services::Id(id) => self.id == *id,
        }
    }
}

/// The services, and where their processes are.
#[derive(Debug)]
pub(super) struct Table<L, C> {
    services: BTreeMap<ServiceId, Service<L, C>>,
    by_pid: HashMap<Pid, ServiceId>,
    by_num: HashMap<u64, ServiceId>,
    /// Exited processes whose channel has not reached EOF yet: what they sent just before
    /// exiting is still read, and their data forwarded. By number: (service, pid).
    lingering: HashMap<u64, (ServiceId, i32)>,
    next_service: ServiceId,
    next_num: u64,
}

impl<L, C> Default for Table<L, C> {
    fn default() -> Self {
        Table {
            services: BTreeMap::new(),
            by_pid: HashMap::new(),
            by_num: HashMap::new(),
            lingering: HashMap::new(),
            next_service: 1,
            next_num: 1,
        }
    }
}

impl<L, C> Table<L, C> {
    /// Adds a service, not launched yet.
    pub(super) fn add(
        &mut self,
        spec: ServiceSpec,
        log: L,
        life: Lifecycle,
        now: Instant,
    ) -> ServiceId {
        let id = self.next_service;
        self.next_service += 1;
        let since = (life.state(), now);
        let svc = Service {
            configured: false,
            deleting: false,
            since,
            exits: VecDeque::new(),
            id,
            spec: Arc::new(spec),
            log,
            proc: None,
            life,
            last_exit: None,
            error: None,
            send_warnings: RateLimit::new(3, Duration::from_secs(10)),
            guards: Guards::default(),
        };
        self.services.insert(id, svc);
        id
    }

    /// Forgets a service that has no process; returns it.
    pub(super) fn remove(&mut self, id: ServiceId) -> Option<Service<L, C>> {
        if self.services.get(&id)?.proc.is_some() {
            return None;
        }
        self.services.remove(&id)
    }

    /// Every service, to change (once per turn).
    pub(super) fn services_mut(&mut self) -> impl Iterator<Item = &mut Service<L, C>> {
        self.services.values_mut()
    }

    /// A number for the next process.
    pub(super) fn next_num(&mut self) -> u64 {
        let n = self.next_num;
        self.next_num += 1;
        n
    }

    pub(super) fn get(&self, id: ServiceId) -> Option<&Service<L, C>> {
        self.services.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: ServiceId) -> Option<&mut Service<L, C>> {
        self.services.get_mut(&id)
    }

    pub(super) fn services(&self) -> impl Iterator<Item = &Service<L, C>> {
        self.services.values()
    }

    pub(super) fn ids(&self) -> Vec<ServiceId> {
        self.services.keys().copied().collect()
    }

    /// The services `which` names; an error when a name or an id names none.
    pub(super) fn select(&self, which: &Services) -> Result<Vec<ServiceId>, ActionError> {
        let ids: Vec<ServiceId> = self
            .services
            .values()
            .filter(|s| s.matches(which))
            .map(|s| s.id)
            .collect();
        match which {
            Services::Named(_) | Services::Id(_) if ids.is_empty() => {
                Err(ActionError::NoSuchService(which.clone()))
            }
            _ => Ok(ids),
        }
    }

    /// Gives service `id` its new process.
    pub(super) fn attach(&mut self, id: ServiceId, proc: Proc<C>) {
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        self.by_pid.insert(proc.pid, id);
        self.by_num.insert(proc.num, id);
        svc.proc = Some(proc);
    }

    /// Takes the process of the service whose process has `pid` (it exited). A process whose
    /// channel is still open lingers until its channel's EOF.
    pub(super) fn detach(&mut self, pid: Pid) -> Option<(ServiceId, Proc<C>)> {
        let id = self.by_pid.remove(&pid)?;
        let proc = self.services.get_mut(&id)?.proc.take()?;
        self.by_num.remove(&proc.num);
        if proc.channel.channel().is_some() {
            self.lingering.insert(proc.num, (id, pid.as_raw()));
        }
        Some((id, proc))
    }

    /// The service whose running process has number `num`.
    pub(super) fn by_num(&mut self, num: u64) -> Option<&mut Service<L, C>> {
        let id = *self.by_num.get(&num)?;
        let svc = self.services.get_mut(&id)?;
        svc.proc.as_ref().filter(|p| p.num == num)?;
        Some(svc)
    }

    /// An exited process whose channel is still being read: (service, pid).
    pub(super) fn lingering(&self, num: u64) -> Option<(ServiceId, i32)> {
        self.lingering.get(&num).copied()
    }

    pub(super) fn forget_lingering(&mut self, num: u64) {
        self.lingering.remove(&num);
    }

    /// The pids of every service's process.
    pub(super) fn pids(&self) -> Vec<Pid> {
        self.by_pid.keys().copied().collect()
    }

    pub(super) fn has_processes(&self) -> bool {
        !self.by_pid.is_empty()
    }

    /// The running process groups: (pid, start time), for the state file.
    pub(super) fn groups(&self) -> Vec<(i32, u64)> {
        self.services
            .values()
            .filter_map(|s| s.proc.as_ref())
            .map(|p| (p.pid.as_raw(), p.start_ticks))
            .collect()
    }
}
