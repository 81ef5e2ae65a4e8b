//! The actor that owns the process table. Every front-end (the config file, the control fd, the
//! CLI socket) talks to it through a [`Handle`]; everything that happens to a child (its exit,
//! its channel messages, a stop deadline) arrives here as an event. Signals are sent and exit
//! statuses reaped only by this task, so a pid is never signalled after it has been reaped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use pm_child::protocol::{self, FromChild, StopReason, ToChild};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::channel::{self, ChannelEvent};
use crate::config::ServiceSpec;
use crate::launch::{self, LaunchError};
use crate::log_writer::{LogHub, Sink};
use crate::output::{self, Stream};
use crate::procs;
use crate::reap::{self, Exit};
use crate::runtime::Instance;
use crate::sentinel::{self, Sentinel};
use crate::stop::{Action, StopSequence};

/// Identifies a service for the life of the supervisor (across restarts of its process).
pub type ServiceId = u64;

/// Which services an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every service.
    All,
    /// Every service with this name.
    Name(String),
    /// One service.
    Id(ServiceId),
}

/// A service's visible state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its process runs.
    Running,
    /// A stop is in progress.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Its process exited without being asked to.
    Exited,
    /// It could not be launched.
    Failed,
}

/// A row of the process table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    /// Service id.
    pub id: ServiceId,
    /// Its name, if any.
    pub name: Option<String>,
    /// Pid of its current process.
    pub pid: Option<i32>,
    /// State.
    pub state: State,
    /// Whether the current process said it is ready.
    pub ready: bool,
    /// Milliseconds since the current process started.
    pub uptime_ms: Option<u64>,
    /// How the last process ended (`exit code 1`, `signal SIGKILL`).
    pub last_exit: Option<String>,
    /// Why the last launch failed.
    pub error: Option<String>,
}

/// What the actor tells subscribers.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A process started.
    Started {
        /// Service id.
        id: ServiceId,
        /// Name.
        name: Option<String>,
        /// Pid.
        pid: i32,
    },
    /// A process said it is ready.
    Ready {
        /// Service id.
        id: ServiceId,
        /// Name.
        name: Option<String>,
        /// Pid.
        pid: i32,
    },
    /// A process ended.
    Exited {
        /// Service id.
        id: ServiceId,
        /// Name.
        name: Option<String>,
        /// Pid.
        pid: i32,
        /// `exit code 0`, `signal SIGKILL`.
        exit: String,
        /// Whether it was asked to stop.
        requested: bool,
        /// Milliseconds it ran.
        uptime_ms: u64,
    },
    /// A launch failed.
    LaunchFailed {
        /// Service id.
        id: ServiceId,
        /// Name.
        name: Option<String>,
        /// Why.
        error: String,
    },
    /// A child sent a message.
    Message {
        /// Service id.
        id: ServiceId,
        /// Name.
        name: Option<String>,
        /// Pid.
        pid: i32,
        /// The data.
        data: serde_json::Value,
    },
}

/// No service matches a selector.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("no service named {0:?}")]
pub struct NoSuchService(pub String);

enum Request {
    Start(Box<ServiceSpec>, oneshot::Sender<ServiceInfo>),
    Stop(
        Selector,
        oneshot::Sender<Result<Vec<ServiceInfo>, NoSuchService>>,
    ),
    List(oneshot::Sender<Vec<ServiceInfo>>),
    Send(
        Selector,
        serde_json::Value,
        oneshot::Sender<Result<usize, NoSuchService>>,
    ),
    Shutdown(oneshot::Sender<()>),
    KillAll,
}

/// How front-ends talk to the actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
}

/// The actor has ended (after a shutdown).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the supervisor has shut down")]
pub struct Gone;

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Gone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// Adds a service and starts it. A launch failure is reported in the returned state.
    pub async fn start(&self, spec: ServiceSpec) -> Result<ServiceInfo, Gone> {
        self.ask(|tx| Request::Start(Box::new(spec), tx)).await
    }

    /// Stops the selected services; resolves when their processes are gone.
    pub async fn stop(
        &self,
        sel: Selector,
    ) -> Result<Result<Vec<ServiceInfo>, NoSuchService>, Gone> {
        self.ask(|tx| Request::Stop(sel, tx)).await
    }

    /// The process table.
    pub async fn list(&self) -> Result<Vec<ServiceInfo>, Gone> {
        self.ask(Request::List).await
    }

    /// Sends `data` to the selected services; returns how many it was queued for.
    pub async fn send(
        &self,
        sel: Selector,
        data: serde_json::Value,
    ) -> Result<Result<usize, NoSuchService>, Gone> {
        self.ask(|tx| Request::Send(sel, data, tx)).await
    }

    /// Stops everything and ends the actor; resolves when every process is gone.
    pub async fn shutdown(&self) -> Result<(), Gone> {
        self.ask(Request::Shutdown).await
    }

    /// SIGKILLs every process group now (a second Ctrl-C).
    pub async fn kill_all(&self) {
        let _ = self.tx.send(Request::KillAll).await;
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// What the actor needs besides its requests.
#[derive(Debug)]
pub struct Options {
    /// Prefix of every service tag of this run (see [`launch::ENV_SERVICE_TAG`]).
    pub token: String,
    /// Runtime instance whose state file records the running groups.
    pub instance: Option<Instance>,
    /// Start a sentinel that cleans up if this process is SIGKILLed.
    pub sentinel: bool,
}

/// Starts the actor on the current tokio runtime. The join handle resolves after a shutdown,
/// when every process is gone and every log line is written.
pub fn spawn(opts: Options) -> std::io::Result<(Handle, tokio::task::JoinHandle<()>)> {
    // Registered before any child exists, so no exit can be missed.
    let sigchld = signal(SignalKind::child())?;
    let hub = LogHub::start()?;
    let sentinel = if opts.sentinel {
        Some(Sentinel::start(&opts.token)?)
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(256);
    let (chan_tx, chan_rx) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(1024);
    let actor = Actor {
        services: BTreeMap::new(),
        by_pid: HashMap::new(),
        by_proc: HashMap::new(),
        next_service: 1,
        next_proc: 1,
        token: opts.token,
        hub,
        sentinel,
        instance: opts.instance,
        timers: BTreeSet::new(),
        chan_tx,
        events: events.clone(),
        waiters: Vec::new(),
        shutdown: None,
        pumps: JoinSet::new(),
        to_sweep: HashSet::new(),
        sweep_at: None,
    };
    let join = tokio::spawn(actor.run(rx, chan_rx, sigchld));
    Ok((Handle { tx, events }, join))
}

struct Proc {
    num: u64,
    pid: Pid,
    started: Instant,
    start_ticks: u64,
    tag: String,
    chan: Option<mpsc::Sender<Arc<[u8]>>>,
    node: bool,
    hello: bool,
    ready: bool,
    stop: Option<(StopSequence, StopReason)>,
}

struct Service {
    id: ServiceId,
    spec: Arc<ServiceSpec>,
    sink: Sink,
    proc: Option<Proc>,
    state: State,
    last_exit: Option<Exit>,
    error: Option<String>,
}

impl Service {
    fn label(&self) -> String {
        match (&self.spec.name, &self.proc) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => p.pid.to_string(),
            (None, None) => format!("#{}", self.id),
        }
    }

    fn info(&self) -> ServiceInfo {
        ServiceInfo {
            id: self.id,
            name: self.spec.name.clone(),
            pid: self.proc.as_ref().map(|p| p.pid.as_raw()),
            state: self.state,
            ready: self.proc.as_ref().is_some_and(|p| p.ready),
            uptime_ms: self
                .proc
                .as_ref()
                .map(|p| p.started.elapsed().as_millis() as u64),
            last_exit: self.last_exit.map(|e| e.to_string()),
            error: self.error.clone(),
        }
    }

    /// Writes a lifecycle line to the service's log and to the supervisor's own diagnostics.
    fn lifecycle(&self, text: &str) {
        lifecycle(&self.label(), &self.sink, text);
    }

    fn matches(&self, sel: &Selector) -> bool {
        match sel {
            Selector::All => true,
            Selector::Name(n) => self.spec.name.as_deref() == Some(n.as_str()),
            Selector::Id(id) => self.id == *id,
        }
    }
}

struct Waiter {
    procs: HashSet<u64>,
    services: Vec<ServiceId>,
    reply: oneshot::Sender<Result<Vec<ServiceInfo>, NoSuchService>>,
}

struct Actor {
    services: BTreeMap<ServiceId, Service>,
    by_pid: HashMap<Pid, ServiceId>,
    by_proc: HashMap<u64, ServiceId>,
    next_service: ServiceId,
    next_proc: u64,
    token: String,
    hub: LogHub,
    sentinel: Option<Sentinel>,
    instance: Option<Instance>,
    /// Stop deadlines: (when, process number). Stale entries are harmless.
    timers: BTreeSet<(Instant, u64)>,
    chan_tx: mpsc::Sender<(u64, ChannelEvent)>,
    events: broadcast::Sender<Event>,
    waiters: Vec<Waiter>,
    shutdown: Option<Vec<oneshot::Sender<()>>>,
    pumps: JoinSet<()>,
    /// Tags of exited processes whose strays are still to be killed, and when.
    to_sweep: HashSet<String>,
    sweep_at: Option<Instant>,
}

/// Exits within this window share one scan for strays.
const SWEEP_DELAY: Duration = Duration::from_millis(20);

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut chan_rx: mpsc::Receiver<(u64, ChannelEvent)>,
        mut sigchld: tokio::signal::unix::Signal,
    ) {
        loop {
            let deadline = [self.timers.first().map(|&(t, _)| t), self.sweep_at]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                biased;
                _ = sigchld.recv() => self.reap_round(),
                Some((proc, ev)) = chan_rx.recv() => self.on_channel(proc, ev),
                req = rx.recv() => match req {
                    Some(req) => self.on_request(req),
                    // Every handle is gone: nobody can stop us any more, so stop everything.
                    None if self.shutdown.is_none() => self.begin_shutdown(None),
                    None => {}
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                    self.fire_timers();
                }
            }
            if self.shutdown.is_some() && self.by_pid.is_empty() {
                break;
            }
        }
        self.finish().await;
    }

    async fn finish(mut self) {
        // Anything of this run still carrying its tag (descendants that left their group).
        let prefix = format!("{}-", self.token);
        procs::signal_tagged(|t| t.starts_with(&prefix), Signal::SIGKILL);
        tracing::debug!("final sweep done");
        // Output pipes reach EOF once the last process holding them is gone.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.pumps.join_next().await.is_some() {}
        })
        .await;
        self.pumps.abort_all();
        tracing::debug!("output pipes closed");
        self.hub.close();
        tracing::debug!("logs written");
        if let Some(s) = self.sentinel.take() {
            s.dismiss();
        }
        tracing::debug!("sentinel dismissed");
        if let Some(i) = &self.instance {
            i.clear();
        }
        for reply in self.shutdown.take().unwrap_or_default() {
            let _ = reply.send(());
        }
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Start(spec, reply) => {
                let id = self.add_service(*spec);
                let _ = reply.send(self.services[&id].info());
            }
            Request::Stop(sel, reply) => self.stop_selected(&sel, StopReason::Stop, reply),
            Request::List(reply) => {
                let _ = reply.send(self.services.values().map(Service::info).collect());
            }
            Request::Send(sel, data, reply) => {
                let _ = reply.send(self.send_selected(&sel, data));
            }
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Request::KillAll => {
                for svc in self.services.values() {
                    if let Some(p) = &svc.proc {
                        svc.lifecycle("SIGKILL sent (forced)");
                        procs::signal_group(p.pid, Signal::SIGKILL);
                    }
                }
            }
        }
    }

    fn add_service(&mut self, spec: ServiceSpec) -> ServiceId {
        let id = self.next_service;
        self.next_service += 1;
        let sink = self.hub.sink(spec.log.as_deref());
        self.services.insert(
            id,
            Service {
                id,
                spec: Arc::new(spec),
                sink,
                proc: None,
                state: State::Stopped,
                last_exit: None,
                error: None,
            },
        );
        if self.shutdown.is_none() {
            self.launch(id);
        }
        id
    }

    /// Starts a process for service `id`.
    fn launch(&mut self, id: ServiceId) {
        let num = self.next_proc;
        self.next_proc += 1;
        let tag = format!("{}-{num}", self.token);
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let path_var = svc
            .spec
            .env
            .get("PATH")
            .map(std::ffi::OsString::from)
            .or_else(|| std::env::var_os("PATH"));
        let spawned = launch::plan(&svc.spec, path_var.as_deref())
            .and_then(|plan| launch::spawn(&plan, &svc.spec, &tag).map(|s| (plan, s)));
        let (plan, spawned) = match spawned {
            Ok(ok) => ok,
            Err(e) => return self.launch_failed(id, &e),
        };
        let pid = spawned.pid;
        let start_ticks = procs::stat(pid.as_raw()).map_or(0, |s| s.start_time);
        let label: Arc<str> = svc
            .spec
            .name
            .clone()
            .unwrap_or_else(|| pid.to_string())
            .into();
        let chan = match channel::start(spawned.channel, label.clone(), num, self.chan_tx.clone()) {
            Ok(tx) => Some(tx),
            Err(e) => {
                tracing::error!(service = %label, %e, "cannot set up the channel");
                None
            }
        };
        self.pumps.spawn(output::pump(
            spawned.stdout,
            svc.sink.clone(),
            label.clone(),
            Stream::Out,
        ));
        self.pumps.spawn(output::pump(
            spawned.stderr,
            svc.sink.clone(),
            label,
            Stream::Err,
        ));
        svc.proc = Some(Proc {
            num,
            pid,
            started: Instant::now(),
            start_ticks,
            tag,
            chan,
            node: plan.node,
            hello: false,
            ready: false,
            stop: None,
        });
        svc.state = State::Running;
        svc.error = None;
        svc.lifecycle(&format!("started pid {pid}: {}", plan.describe()));
        let (grace, name) = (svc.spec.kill_timeout, svc.spec.name.clone());
        self.by_pid.insert(pid, id);
        self.by_proc.insert(num, id);
        if let Some(s) = &mut self.sentinel {
            s.add(&sentinel::Record {
                pid: pid.as_raw(),
                start_time: start_ticks,
                grace,
                term: true,
            });
        }
        self.record_state();
        let _ = self.events.send(Event::Started {
            id,
            name,
            pid: pid.as_raw(),
        });
    }

    fn launch_failed(&mut self, id: ServiceId, e: &LaunchError) {
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        svc.state = State::Failed;
        svc.error = Some(e.to_string());
        // An error on stderr whatever the log target: it needs a person's attention.
        tracing::error!(service = %svc.label(), "cannot launch: {e}");
        pm_line(&svc.label(), &svc.sink, &format!("cannot launch: {e}"));
        let _ = self.events.send(Event::LaunchFailed {
            id,
            name: svc.spec.name.clone(),
            error: e.to_string(),
        });
    }

    fn record_state(&self) {
        if let Some(i) = &self.instance {
            i.record(
                &self.token,
                self.services
                    .values()
                    .filter_map(|s| s.proc.as_ref())
                    .map(|p| (p.pid.as_raw(), p.start_ticks)),
            );
        }
    }

    fn stop_selected(
        &mut self,
        sel: &Selector,
        reason: StopReason,
        reply: oneshot::Sender<Result<Vec<ServiceInfo>, NoSuchService>>,
    ) {
        let ids: Vec<ServiceId> = self
            .services
            .values()
            .filter(|s| s.matches(sel))
            .map(|s| s.id)
            .collect();
        if ids.is_empty() && *sel != Selector::All {
            let what = match sel {
                Selector::Name(n) => n.clone(),
                Selector::Id(i) => format!("#{i}"),
                Selector::All => String::new(),
            };
            let _ = reply.send(Err(NoSuchService(what)));
            return;
        }
        let mut procs = HashSet::new();
        for &id in &ids {
            if let Some(num) = self.begin_stop(id, reason) {
                procs.insert(num);
            }
        }
        let waiter = Waiter {
            procs,
            services: ids,
            reply,
        };
        if waiter.procs.is_empty() {
            self.answer(waiter);
        } else {
            self.waiters.push(waiter);
        }
    }

    fn answer(&self, w: Waiter) {
        let infos = w
            .services
            .iter()
            .filter_map(|id| self.services.get(id))
            .map(Service::info)
            .collect();
        let _ = w.reply.send(Ok(infos));
    }

    fn send_selected(
        &mut self,
        sel: &Selector,
        data: serde_json::Value,
    ) -> Result<usize, NoSuchService> {
        let line: Arc<[u8]> = protocol::encode(&ToChild::Message { data }).into();
        let mut matched = false;
        let mut sent = 0;
        for svc in self.services.values().filter(|s| s.matches(sel)) {
            matched = true;
            if let Some(tx) = svc.proc.as_ref().and_then(|p| p.chan.as_ref()) {
                match tx.try_send(line.clone()) {
                    Ok(()) => sent += 1,
                    Err(_) => {
                        tracing::warn!(service = %svc.label(), "message not delivered: the child is not reading its channel")
                    }
                }
            }
        }
        if matched || *sel == Selector::All {
            Ok(sent)
        } else {
            Err(NoSuchService(match sel {
                Selector::Name(n) => n.clone(),
                _ => String::new(),
            }))
        }
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        let first = self.shutdown.is_none();
        self.shutdown.get_or_insert_with(Vec::new).extend(reply);
        if first {
            let ids: Vec<ServiceId> = self.services.keys().copied().collect();
            for id in ids {
                self.begin_stop(id, StopReason::Shutdown);
            }
        }
    }

    /// Starts the stop sequence of service `id`'s process; returns its process number, or None
    /// when it has no process.
    fn begin_stop(&mut self, id: ServiceId, reason: StopReason) -> Option<u64> {
        let svc = self.services.get_mut(&id)?;
        let p = svc.proc.as_mut()?;
        let num = p.num;
        if p.stop.is_some() {
            return Some(num);
        }
        let channel = p.chan.is_some() && (p.hello || p.node);
        let (seq, actions) = StopSequence::start(Instant::now(), svc.spec.kill_timeout, channel);
        p.stop = Some((seq, reason));
        svc.state = State::Stopping;
        let reason_text = match reason {
            StopReason::Stop => "stop requested",
            StopReason::Restart => "restart requested",
            StopReason::Shutdown => "supervisor shutting down",
        };
        svc.lifecycle(&format!(
            "stopping ({reason_text}; killTimeout {})",
            ms(svc.spec.kill_timeout)
        ));
        self.apply(id, actions);
        Some(num)
    }

    /// Carries out stop actions for service `id` and schedules its next deadline.
    fn apply(&mut self, id: ServiceId, actions: Vec<Action>) {
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let Some(p) = svc.proc.as_mut() else { return };
        let mut queue = actions;
        while let Some(action) = queue.pop() {
            let Some((seq, reason)) = p.stop.as_mut() else {
                return;
            };
            match action {
                Action::SendStop => {
                    let line = protocol::encode(&ToChild::Stop {
                        reason: *reason,
                        timeout_ms: svc.spec.kill_timeout.as_millis() as u64,
                    });
                    let sent = p
                        .chan
                        .as_ref()
                        .is_some_and(|tx| tx.try_send(line.into()).is_ok());
                    if !sent {
                        queue.extend(seq.channel_lost());
                    }
                }
                Action::Term => {
                    let why = if p.chan.is_none() {
                        "its channel is closed".to_owned()
                    } else if !(p.hello || p.node) {
                        "it never said hello on its channel".to_owned()
                    } else {
                        format!(
                            "no \"stopping\" answer within {}",
                            ms(seq.requested().elapsed())
                        )
                    };
                    procs::signal_group(p.pid, Signal::SIGTERM);
                    let text = format!("SIGTERM sent to process group {} ({why})", p.pid);
                    lifecycle(&label_of(&svc.spec, p.pid), &svc.sink, &text);
                }
                Action::Kill => {
                    procs::signal_group(p.pid, Signal::SIGKILL);
                    let text = format!(
                        "SIGKILL sent to process group {} ({} after the stop request)",
                        p.pid,
                        ms(seq.requested().elapsed())
                    );
                    lifecycle(&label_of(&svc.spec, p.pid), &svc.sink, &text);
                }
            }
        }
        if let Some(next) = p.stop.as_ref().and_then(|(s, _)| s.next_deadline()) {
            self.timers.insert((next, p.num));
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep();
        }
        while let Some(&(t, num)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(&id) = self.by_proc.get(&num) else {
                continue;
            };
            let actions = self
                .services
                .get_mut(&id)
                .and_then(|s| s.proc.as_mut())
                .filter(|p| p.num == num)
                .and_then(|p| p.stop.as_mut())
                .map(|(seq, _)| seq.poll(now))
                .unwrap_or_default();
            self.apply(id, actions);
        }
    }

    fn on_channel(&mut self, num: u64, ev: ChannelEvent) {
        let Some(&id) = self.by_proc.get(&num) else {
            return;
        };
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let Some(p) = svc.proc.as_mut().filter(|p| p.num == num) else {
            return;
        };
        let label = label_of(&svc.spec, p.pid);
        let mut actions = Vec::new();
        match ev {
            ChannelEvent::Message(FromChild::Hello {
                protocol,
                sdk,
                version,
            }) => {
                p.hello = true;
                if protocol != protocol::PROTOCOL_VERSION {
                    tracing::warn!(service = %label, protocol, "child speaks another protocol version; continuing with version 1");
                }
                tracing::debug!(service = %label, sdk, version, "hello");
                if let Some(s) = &mut self.sentinel {
                    s.hello(p.pid);
                }
            }
            ChannelEvent::Message(FromChild::Ready) => {
                if !p.ready {
                    p.ready = true;
                    let pid = p.pid.as_raw();
                    lifecycle(&label, &svc.sink, "ready");
                    let _ = self.events.send(Event::Ready {
                        id,
                        name: svc.spec.name.clone(),
                        pid,
                    });
                }
            }
            ChannelEvent::Message(FromChild::Stopping) => {
                if let Some((seq, _)) = p.stop.as_mut() {
                    seq.stopping();
                }
            }
            ChannelEvent::Message(FromChild::Extend { ms: wanted }) => {
                if let Some((seq, _)) = p.stop.as_mut() {
                    let until = seq.extend(Instant::now(), wanted);
                    let text = format!(
                        "stop extended by {wanted} ms on request; SIGKILL in {}",
                        ms(until.saturating_duration_since(Instant::now()))
                    );
                    lifecycle(&label, &svc.sink, &text);
                }
            }
            ChannelEvent::Message(FromChild::Message { data }) => {
                let _ = self.events.send(Event::Message {
                    id,
                    name: svc.spec.name.clone(),
                    pid: p.pid.as_raw(),
                    data,
                });
            }
            ChannelEvent::Closed => {
                p.chan = None;
                if let Some((seq, _)) = p.stop.as_mut() {
                    actions = seq.channel_lost();
                }
            }
        }
        self.apply(id, actions);
    }

    /// Reaps every exited child. A service's process is peeked at first and its group killed
    /// while its zombie still holds the group id; then anything else carrying its tag is killed.
    fn reap_round(&mut self) {
        loop {
            let known: Vec<Pid> = self
                .by_pid
                .keys()
                .copied()
                .chain(self.sentinel.as_ref().map(Sentinel::pid))
                .collect();
            let Some(pid) = reap::peek_exited(known.into_iter()) else {
                break;
            };
            if let Some(&id) = self.by_pid.get(&pid) {
                // The rest of its group goes with it: services run in the foreground.
                procs::signal_group(pid, Signal::SIGKILL);
                let Some(exit) = reap::reap(pid) else { break };
                if let Some(tag) = self.on_exit(id, pid, exit) {
                    self.to_sweep.insert(tag);
                    self.sweep_at
                        .get_or_insert_with(|| Instant::now() + SWEEP_DELAY);
                }
            } else if self.sentinel.as_ref().is_some_and(|s| s.pid() == pid) {
                let _ = reap::reap(pid);
                self.restart_sentinel();
            } else if reap::reap(pid).is_none() {
                break;
            }
        }
    }

    /// Kills what is left of exited processes outside their groups (found by their tags). One
    /// `/proc` scan serves every exit of the last [`SWEEP_DELAY`], so that 50 services stopping
    /// together cost one scan, not fifty.
    fn sweep(&mut self) {
        self.sweep_at = None;
        let tags = std::mem::take(&mut self.to_sweep);
        if tags.is_empty() {
            return;
        }
        let hit = procs::signal_tagged(|t| tags.contains(t), Signal::SIGKILL);
        if !hit.is_empty() {
            tracing::info!(pids = ?hit, "killed processes that had left their service's process group");
        }
        self.record_state();
    }

    fn restart_sentinel(&mut self) {
        tracing::warn!("the sentinel process died; starting a new one");
        match Sentinel::start(&self.token) {
            Ok(mut s) => {
                for svc in self.services.values() {
                    if let Some(p) = &svc.proc {
                        s.add(&sentinel::Record {
                            pid: p.pid.as_raw(),
                            start_time: p.start_ticks,
                            grace: svc.spec.kill_timeout,
                            term: !p.hello,
                        });
                    }
                }
                self.sentinel = Some(s);
            }
            Err(e) => {
                tracing::error!(%e, "cannot start a new sentinel: a SIGKILL of the supervisor would now leave services running");
                self.sentinel = None;
            }
        }
    }

    /// Bookkeeping for an exited process; returns its tag.
    fn on_exit(&mut self, id: ServiceId, pid: Pid, exit: Exit) -> Option<String> {
        self.by_pid.remove(&pid);
        if let Some(s) = &mut self.sentinel {
            s.remove(pid);
        }
        let svc = self.services.get_mut(&id)?;
        let p = svc.proc.take()?;
        self.by_proc.remove(&p.num);
        let uptime = p.started.elapsed();
        svc.last_exit = Some(exit);
        let requested = p.stop.is_some();
        match &p.stop {
            Some((seq, _)) => {
                svc.state = State::Stopped;
                let text = format!(
                    "stopped: {exit}, {} after the stop request (ran {})",
                    ms(seq.requested().elapsed()),
                    ms(uptime)
                );
                lifecycle(&label_of(&svc.spec, pid), &svc.sink, &text);
            }
            None => {
                svc.state = State::Exited;
                let text = format!("exited: {exit} after {}", ms(uptime));
                lifecycle(&label_of(&svc.spec, pid), &svc.sink, &text);
            }
        }
        let _ = self.events.send(Event::Exited {
            id,
            name: svc.spec.name.clone(),
            pid: pid.as_raw(),
            exit: exit.to_string(),
            requested,
            uptime_ms: uptime.as_millis() as u64,
        });
        // The state file is rewritten at the next sweep: a stale entry is harmless (entries are
        // checked against start times), a missing one is not, so only launches write at once.
        let mut i = 0;
        while i < self.waiters.len() {
            self.waiters[i].procs.remove(&p.num);
            if self.waiters[i].procs.is_empty() {
                let w = self.waiters.swap_remove(i);
                self.answer(w);
            } else {
                i += 1;
            }
        }
        Some(p.tag)
    }
}

/// Writes a lifecycle line to a service's log, and to the supervisor's own diagnostics when
/// that log is a file (on stdout it would show twice).
fn lifecycle(label: &str, sink: &Sink, text: &str) {
    if !sink.is_stdout() {
        tracing::info!(service = %label, "{text}");
    }
    pm_line(label, sink, text);
}

/// Writes one line of the supervisor's own (stream `pm`) to a service's log.
fn pm_line(label: &str, sink: &Sink, text: &str) {
    let mut line = output::prefix(SystemTime::now(), label, Stream::Pm).into_bytes();
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    sink.write_now(line);
}

/// The label of a service whose process record is borrowed elsewhere.
fn label_of(spec: &ServiceSpec, pid: Pid) -> String {
    spec.name.clone().unwrap_or_else(|| pid.to_string())
}
