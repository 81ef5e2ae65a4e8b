//! The actor's state and event loop.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use pm_child::protocol::{self, FromChild, StopReason, ToChild};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;

use super::{
    ActionError, Event, EventKind, Options, Request, Rows, Selector, ServiceId, ServiceInfo, State,
};
use crate::channel::{self, Channel, ChannelEvent};
use crate::config::ServiceSpec;
use crate::launch::{self, LaunchError};
use crate::lifecycle::{AfterExit, Lifecycle};
use crate::log_writer::{LogHub, Sink};
use crate::output::{self, Stream};
use crate::procs;
use crate::rate_limit::RateLimit;
use crate::reap::{self, Exit};
use crate::restart_policy::RestartPolicy;
use crate::runtime::Instance;
use crate::sentinel::{self, Sentinel};
use crate::stop::{Action, StopSequence};

/// Exits within this window share one scan for strays (a read of every process's environment):
/// a crash loop of a hundred services costs a few scans a second, not hundreds. An exit someone
/// waits for (a stop or restart request) is swept at once instead, so that the reply comes
/// after its strays are gone.
const SWEEP_DELAY: Duration = Duration::from_millis(100);
/// How long a sweep waits for the strays it SIGKILLed to be gone.
const SWEEP_WAIT: Duration = Duration::from_millis(100);
/// After the last process is reaped, output readers get this long to drain their pipes, and the
/// log writers until [`FINISH_WRITERS`], so that a shutdown ends within the largest killTimeout
/// plus a second whatever the log files do.
const FINISH_READERS: Duration = Duration::from_millis(300);
const FINISH_WRITERS: Duration = Duration::from_millis(600);

/// Most queued channel messages handled before a request (see the run loop).
const CHANNEL_CATCH_UP: usize = 256;

/// One running process of a service.
struct Proc {
    num: u64,
    pid: Pid,
    started: Instant,
    start_ticks: u64,
    tag: String,
    chan: Option<Channel>,
    hello: bool,
    ready: bool,
    stop: Option<(StopSequence, StopReason)>,
    /// What to log about the SIGKILL sent to its group, once the exit shows it was needed.
    killed: Option<String>,
    /// Lines about its `extend` requests: a child may send any number.
    extend_lines: RateLimit,
    /// Copies of its output pipes for the sentinel, which writes its last lines if the
    /// supervisor dies (kept here to hand them to a restarted sentinel).
    output: Option<Arc<sentinel::Output>>,
}

struct Service {
    id: ServiceId,
    spec: Arc<ServiceSpec>,
    sink: Sink,
    proc: Option<Proc>,
    life: Lifecycle,
    last_exit: Option<Exit>,
    error: Option<String>,
    /// Warnings about messages it did not take: a controller may send any number.
    send_warnings: RateLimit,
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
        let now = Instant::now();
        ServiceInfo {
            id: self.id,
            name: self.spec.name.clone(),
            pid: self.proc.as_ref().map(|p| p.pid.as_raw()),
            state: self.life.state(),
            ready: self.proc.as_ref().is_some_and(|p| p.ready),
            restarts: self.life.restarts(),
            crashes: self.life.crashes(),
            uptime_ms: self
                .proc
                .as_ref()
                .map(|p| p.started.elapsed().as_millis() as u64),
            restart_in_ms: self
                .life
                .restart_at()
                .map(|t| t.saturating_duration_since(now).as_millis() as u64),
            last_exit: self.last_exit.map(|e| e.to_string()),
            error: self.error.clone(),
            memory: self.proc.as_ref().and_then(|p| procs::rss(p.pid.as_raw())),
            log: self.spec.log.clone(),
        }
    }

    /// Writes a lifecycle line to the service's log (and the supervisor's diagnostics).
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

/// What a pending reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WaitFor {
    /// The process with this number is reaped.
    Reaped(u64),
    /// The service has launched (or failed to launch) a new process.
    Launched(ServiceId),
}

struct Waiter {
    pending: HashSet<WaitFor>,
    services: Vec<ServiceId>,
    reply: oneshot::Sender<Rows>,
}

pub(super) struct Actor {
    services: BTreeMap<ServiceId, Service>,
    by_pid: HashMap<Pid, ServiceId>,
    by_proc: HashMap<u64, ServiceId>,
    /// Exited processes whose channel has not reached EOF yet: messages they sent just before
    /// exiting are still read and forwarded.
    lingering: HashMap<u64, (ServiceId, i32)>,
    next_service: ServiceId,
    next_proc: u64,
    token: String,
    hub: LogHub,
    sentinel: Option<Sentinel>,
    instance: Option<Instance>,
    /// Stop deadlines: (when, process number). Stale entries are harmless.
    stop_timers: BTreeSet<(Instant, u64)>,
    /// Pending restarts: (when, service). Stale entries are harmless.
    restart_timers: BTreeSet<(Instant, ServiceId)>,
    chan_tx: mpsc::Sender<(u64, ChannelEvent)>,
    chan_rx: Option<mpsc::Receiver<(u64, ChannelEvent)>>,
    events: broadcast::Sender<Event>,
    waiters: Vec<Waiter>,
    shutdown: Option<Vec<oneshot::Sender<()>>>,
    pumps: JoinSet<()>,
    /// Tags of exited processes whose strays are still to be killed, and when.
    to_sweep: HashSet<String>,
    sweep_at: Option<Instant>,
    /// The state file is behind the process table (written once per turn of the loop).
    state_dirty: bool,
    /// During a round of reaping: what waiters wait for that happened, settled after the
    /// round's sweep, so that replies come once the exited processes' strays are gone.
    deferred: Option<Vec<WaitFor>>,
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(100) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Actor {
    pub(super) fn new(opts: Options, events: broadcast::Sender<Event>) -> std::io::Result<Actor> {
        let hub = LogHub::start()?;
        let sentinel = if opts.sentinel {
            Some(Sentinel::start(&opts.token, std::iter::empty())?)
        } else {
            None
        };
        let (chan_tx, chan_rx) = mpsc::channel(1024);
        Ok(Actor {
            services: BTreeMap::new(),
            by_pid: HashMap::new(),
            by_proc: HashMap::new(),
            lingering: HashMap::new(),
            next_service: 1,
            next_proc: 1,
            token: opts.token,
            hub,
            sentinel,
            instance: opts.instance,
            stop_timers: BTreeSet::new(),
            restart_timers: BTreeSet::new(),
            chan_tx,
            chan_rx: Some(chan_rx),
            events,
            waiters: Vec::new(),
            shutdown: None,
            pumps: JoinSet::new(),
            to_sweep: HashSet::new(),
            sweep_at: None,
            state_dirty: false,
            deferred: None,
        })
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut sigchld: tokio::signal::unix::Signal,
    ) {
        let Some(mut chan_rx) = self.chan_rx.take() else {
            return;
        };
        loop {
            let deadline = [
                self.stop_timers.first().map(|&(t, _)| t),
                self.restart_timers.first().map(|&(t, _)| t),
                self.sweep_at,
            ]
            .into_iter()
            .flatten()
            .min();
            // Exits and deadlines first, then requests, then children's messages: a child that
            // floods its channel can delay neither a stop nor another client's answer.
            tokio::select! {
                biased;
                _ = sigchld.recv() => self.reap_round(),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                    self.fire_timers();
                }
                req = rx.recv() => match req {
                    Some(req) => {
                        // What children said before this request is known before it is acted
                        // on (a `hello` decides how a stop begins); bounded, so that a flood
                        // cannot hold the request up.
                        for _ in 0..chan_rx.len().min(CHANNEL_CATCH_UP) {
                            let Ok((proc, ev)) = chan_rx.try_recv() else { break };
                            self.on_channel(proc, ev);
                        }
                        self.on_request(req);
                    }
                    // Every handle is gone: nobody can stop us any more, so stop everything.
                    None if self.shutdown.is_none() => self.begin_shutdown(None),
                    None => {}
                },
                Some((proc, ev)) = chan_rx.recv() => self.on_channel(proc, ev),
            }
            // One write however many launches this turn made (a hundred services start at once).
            if std::mem::take(&mut self.state_dirty) {
                self.record_state();
            }
            if self.shutdown.is_some() && self.by_pid.is_empty() {
                break;
            }
        }
        self.finish().await;
    }

    async fn finish(mut self) {
        let start = Instant::now();
        // Anything of this run still carrying its tag (descendants that left their group).
        let prefix = format!("{}-", self.token);
        procs::kill_tagged(|t| t.starts_with(&prefix), SWEEP_WAIT);
        // Output pipes reach EOF once the last process holding them is gone; a reader still
        // waiting then (its pipe held by a process that escaped every sweep, or its log file
        // stuck) is dropped.
        let _ = tokio::time::timeout_at((start + FINISH_READERS).into(), async {
            while self.pumps.join_next().await.is_some() {}
        })
        .await;
        self.pumps.abort_all();
        self.hub.close(start + FINISH_WRITERS);
        if let Some(s) = self.sentinel.take() {
            s.dismiss().await;
        }
        if let Some(i) = &self.instance {
            i.clear();
        }
        tracing::debug!("every process is gone and every log line written");
        for reply in self.shutdown.take().unwrap_or_default() {
            let _ = reply.send(());
        }
    }

    fn emit(&self, id: ServiceId, kind: EventKind) {
        let name = self.services.get(&id).and_then(|s| s.spec.name.clone());
        let _ = self.events.send(Event {
            time: SystemTime::now(),
            id,
            name,
            kind,
        });
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Start {
                spec,
                await_ready,
                reply,
            } => {
                if self.shutdown.is_some() {
                    let _ = reply.send(Err(ActionError::ShuttingDown));
                    return;
                }
                let id = self.add_service(*spec, await_ready);
                let _ = reply.send(Ok(self.services[&id].info()));
            }
            Request::Stop(sel, reply) => self.stop_selected(&sel, reply),
            Request::Restart(sel, reply) => self.restart_selected(&sel, reply),
            Request::List(reply) => {
                let _ = reply.send(self.services.values().map(Service::info).collect());
            }
            Request::Send(sel, data, reply) => {
                let _ = reply.send(self.send_selected(&sel, data));
            }
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Request::Disconnect(sel, reply) => {
                let _ = reply.send(self.disconnect_selected(&sel));
            }
            Request::KillAll => {
                for svc in self.services.values_mut() {
                    if let Some(p) = &mut svc.proc {
                        procs::signal_group(p.pid, Signal::SIGKILL);
                        p.killed = Some(format!(
                            "SIGKILL sent to process group {} (forced by a second signal)",
                            p.pid
                        ));
                    }
                }
            }
        }
    }

    fn add_service(&mut self, spec: ServiceSpec, await_ready: bool) -> ServiceId {
        let id = self.next_service;
        self.next_service += 1;
        let rotation = crate::log_writer::Rotation {
            max_size: spec.log_max_size,
            keep: spec.log_keep,
        };
        let sink = self.hub.sink(spec.log.as_deref(), rotation);
        let policy = RestartPolicy::new(&spec.restart_at, spec.restart_ok);
        self.services.insert(
            id,
            Service {
                id,
                spec: Arc::new(spec),
                sink,
                proc: None,
                life: Lifecycle::new(policy, await_ready),
                last_exit: None,
                error: None,
                send_warnings: RateLimit::new(3, Duration::from_secs(10)),
            },
        );
        self.launch(id);
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
        let envelope = super::message_event_envelope(id, svc.spec.name.as_deref(), pid.as_raw());
        let chan = match channel::start(
            spawned.channel,
            label.clone(),
            num,
            envelope,
            self.chan_tx.clone(),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(service = %label, %e, "cannot set up the channel");
                None
            }
        };
        // Only while a sentinel runs: it is the one to read them, after the supervisor's death.
        let for_sentinel = self.sentinel.is_some().then(|| {
            sentinel::Output::new(
                &spawned.stdout,
                &spawned.stderr,
                label.clone(),
                svc.spec.log.clone(),
                svc.spec.strip_ansi,
            )
        });
        let for_sentinel = match for_sentinel {
            Some(Ok(o)) => Some(Arc::new(o)),
            Some(Err(e)) => {
                tracing::warn!(service = %label, %e, "cannot keep a copy of the output pipes: its last lines are lost if the supervisor is killed");
                None
            }
            None => None,
        };
        let pump = output::Pump {
            sink: svc.sink.clone(),
            colour: colour_for(&svc.sink, &label),
            label,
            strip_ansi: svc.spec.strip_ansi,
        };
        self.pumps
            .spawn(pump.clone().run(spawned.stdout, Stream::Out));
        self.pumps.spawn(pump.run(spawned.stderr, Stream::Err));
        svc.proc = Some(Proc {
            num,
            pid,
            started: Instant::now(),
            start_ticks,
            tag,
            chan,
            hello: false,
            ready: false,
            stop: None,
            killed: None,
            extend_lines: RateLimit::new(3, Duration::from_secs(1)),
            output: for_sentinel.clone(),
        });
        svc.life.launched();
        svc.error = None;
        svc.lifecycle(&format!("started pid {pid}: {}", plan.describe()));
        let grace = svc.spec.kill_timeout;
        self.by_pid.insert(pid, id);
        self.by_proc.insert(num, id);
        if let Some(s) = &mut self.sentinel {
            s.add(
                &sentinel::Record {
                    pid: pid.as_raw(),
                    start_time: start_ticks,
                    grace,
                    term: true,
                },
                for_sentinel,
            );
        }
        self.state_dirty = true;
        self.emit(id, EventKind::Started { pid: pid.as_raw() });
        self.settle(WaitFor::Launched(id));
    }

    fn launch_failed(&mut self, id: ServiceId, e: &LaunchError) {
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        svc.error = Some(e.to_string());
        let after = svc.life.launch_failed(Instant::now());
        // An error on stderr whatever the log target: it needs a person's attention. The log
        // line first, so that its time is the failure's.
        pm_line(&svc.label(), &svc.sink, &format!("cannot launch: {e}"));
        tracing::error!(service = %svc.label(), "cannot launch: {e}");
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
    fn after_exit(&mut self, id: ServiceId, after: AfterExit) {
        match after {
            AfterExit::Rest => {}
            AfterExit::LaunchNow => self.launch(id),
            AfterExit::LaunchAt { at, delay, crashes } => {
                if let Some(svc) = self.services.get(&id) {
                    svc.lifecycle(&format!(
                        "restarting in {} (crash {crashes} in a row)",
                        ms(delay)
                    ));
                }
                self.restart_timers.insert((at, id));
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

    fn select(&self, sel: &Selector) -> Result<Vec<ServiceId>, ActionError> {
        let ids: Vec<ServiceId> = self
            .services
            .values()
            .filter(|s| s.matches(sel))
            .map(|s| s.id)
            .collect();
        match sel {
            Selector::Name(n) if ids.is_empty() => Err(ActionError::NoSuchService(n.clone())),
            Selector::Id(i) if ids.is_empty() => Err(ActionError::NoSuchService(format!("#{i}"))),
            _ => Ok(ids),
        }
    }

    fn stop_selected(&mut self, sel: &Selector, reply: oneshot::Sender<Rows>) {
        let ids = match self.select(sel) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut pending = HashSet::new();
        for &id in &ids {
            if let Some(num) = self.stop_service(id, StopReason::Stop) {
                pending.insert(WaitFor::Reaped(num));
            }
        }
        self.wait(pending, ids, reply);
    }

    /// Stops one service: cancels a pending restart, begins the stop sequence if it has a
    /// process, and returns that process's number.
    fn stop_service(&mut self, id: ServiceId, reason: StopReason) -> Option<u64> {
        let svc = self.services.get_mut(&id)?;
        let waiting = svc.life.state() == State::Waiting;
        if !svc.life.stop_requested(svc.proc.is_some()) {
            if waiting {
                svc.lifecycle("stopped (its pending restart is cancelled)");
            }
            return None;
        }
        self.begin_stop(id, reason)
    }

    fn restart_selected(&mut self, sel: &Selector, reply: oneshot::Sender<Rows>) {
        if self.shutdown.is_some() {
            let _ = reply.send(Err(ActionError::ShuttingDown));
            return;
        }
        let ids = match self.select(sel) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let pending = ids.iter().map(|&id| WaitFor::Launched(id)).collect();
        let mut launch_now = Vec::new();
        for &id in &ids {
            let Some(svc) = self.services.get_mut(&id) else {
                continue;
            };
            if svc.life.restart_requested(svc.proc.is_some()) {
                self.begin_stop(id, StopReason::Restart);
            } else {
                launch_now.push(id);
            }
        }
        // Register the waiter first: the launches below settle it.
        self.wait(pending, ids, reply);
        for id in launch_now {
            self.launch(id);
        }
    }

    fn wait(
        &mut self,
        pending: HashSet<WaitFor>,
        services: Vec<ServiceId>,
        reply: oneshot::Sender<Rows>,
    ) {
        let waiter = Waiter {
            pending,
            services,
            reply,
        };
        if waiter.pending.is_empty() {
            self.answer(waiter);
        } else {
            self.waiters.push(waiter);
        }
    }

    /// Something a waiter may wait for happened.
    fn settle(&mut self, what: WaitFor) {
        if let Some(later) = &mut self.deferred {
            later.push(what);
            return;
        }
        let mut i = 0;
        while i < self.waiters.len() {
            self.waiters[i].pending.remove(&what);
            if self.waiters[i].pending.is_empty() {
                let w = self.waiters.swap_remove(i);
                self.answer(w);
            } else {
                i += 1;
            }
        }
    }

    fn answer(&self, w: Waiter) {
        let rows = w
            .services
            .iter()
            .filter_map(|id| self.services.get(id))
            .map(Service::info)
            .collect();
        let _ = w.reply.send(Ok(rows));
    }

    fn send_selected(
        &mut self,
        sel: &Selector,
        data: serde_json::Value,
    ) -> Result<usize, ActionError> {
        let ids = self.select(sel)?;
        if protocol::is_node_internal(&data) {
            return Err(ActionError::ReservedData);
        }
        let line: Arc<[u8]> = protocol::encode(&ToChild::Data(data)).into();
        if line.len() - 1 > protocol::MAX_LINE_BYTES {
            return Err(ActionError::TooLarge(line.len() - 1));
        }
        let mut sent = 0;
        for id in ids {
            let Some(svc) = self.services.get_mut(&id) else {
                continue;
            };
            if let Some(chan) = svc.proc.as_ref().and_then(|p| p.chan.as_ref()) {
                if chan.send(line.clone()) {
                    sent += 1;
                } else if let Some(more) = svc.send_warnings.allow() {
                    let label = svc.label();
                    tracing::warn!(service = %label, more_not_delivered = more, "message not delivered: the child is not reading its channel");
                }
            }
        }
        Ok(sent)
    }

    /// Closes the channel of every running process of the selected services, as a fork parent's
    /// `child.disconnect()` does; a child that said `hello` is told first, so that its SDK does
    /// not take the EOF for the supervisor's death. Returns how many channels were closed.
    fn disconnect_selected(&mut self, sel: &Selector) -> Result<usize, ActionError> {
        let ids = self.select(sel)?;
        let notice: Arc<[u8]> = protocol::encode(&ToChild::Disconnect).into();
        let mut closed = 0;
        for id in ids {
            let Some(svc) = self.services.get_mut(&id) else {
                continue;
            };
            let Some(p) = svc.proc.as_mut() else { continue };
            let Some(chan) = p.chan.take() else { continue };
            if p.hello {
                chan.send(notice.clone());
            }
            chan.disconnect();
            closed += 1;
            lifecycle(
                &label_of(&svc.spec, p.pid),
                &svc.sink,
                "channel closed on request (disconnect)",
            );
            self.channel_gone(id);
        }
        Ok(closed)
    }

    /// Bookkeeping once a running process's channel is gone: a child that said `hello` can no
    /// longer see the supervisor's death as EOF, so the sentinel is to SIGTERM it instead; a stop
    /// in progress falls back to SIGTERM.
    fn channel_gone(&mut self, id: ServiceId) {
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let Some(p) = svc.proc.as_mut() else { return };
        if p.hello {
            if let Some(s) = &mut self.sentinel {
                s.add(
                    &sentinel::Record {
                        pid: p.pid.as_raw(),
                        start_time: p.start_ticks,
                        grace: svc.spec.kill_timeout,
                        term: true,
                    },
                    None,
                );
            }
        }
        let actions = match p.stop.as_mut() {
            Some((seq, _)) => seq.channel_lost(),
            None => Vec::new(),
        };
        self.apply(id, actions);
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        let first = self.shutdown.is_none();
        self.shutdown.get_or_insert_with(Vec::new).extend(reply);
        if first {
            self.restart_timers.clear();
            let ids: Vec<ServiceId> = self.services.keys().copied().collect();
            for id in ids {
                self.stop_service(id, StopReason::Shutdown);
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
        // Only a child that said `hello` understands `stop`; any other gets SIGTERM, like a plain
        // program (a Node child's IPC channel carries application data only).
        let channel = p.chan.is_some() && p.hello;
        let (seq, actions) = StopSequence::start(Instant::now(), svc.spec.kill_timeout, channel);
        p.stop = Some((seq, reason));
        let pid = p.pid.as_raw();
        let reason_text = match reason {
            StopReason::Stop => "stop requested",
            StopReason::Restart => "restart requested",
            StopReason::Shutdown => "supervisor shutting down",
        };
        svc.lifecycle(&format!(
            "stopping ({reason_text}; killTimeout {})",
            ms(svc.spec.kill_timeout)
        ));
        self.emit(id, EventKind::Stopping { pid, reason });
        self.apply(id, actions);
        Some(num)
    }

    /// Carries out stop actions for service `id` and schedules its next deadline.
    fn apply(&mut self, id: ServiceId, actions: Vec<Action>) {
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let Some(p) = svc.proc.as_mut() else { return };
        let label = label_of(&svc.spec, p.pid);
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
                    let sent = p.chan.as_ref().is_some_and(|c| c.send(line.into()));
                    if !sent {
                        queue.extend(seq.channel_lost());
                    }
                }
                Action::Term => {
                    let why = if seq.term_was_requested() {
                        "it has no stop handlers and asked for it".to_owned()
                    } else if p.chan.is_none() {
                        "its channel is closed".to_owned()
                    } else if !p.hello {
                        "it never said hello on its channel".to_owned()
                    } else {
                        format!(
                            "no \"stopping\" answer within {}",
                            ms(seq.requested().elapsed())
                        )
                    };
                    procs::signal_group(p.pid, Signal::SIGTERM);
                    let text = format!("SIGTERM sent to process group {} ({why})", p.pid);
                    lifecycle(&label, &svc.sink, &text);
                }
                Action::Kill => {
                    procs::signal_group(p.pid, Signal::SIGKILL);
                    // Logged at the exit, if the exit shows the SIGKILL ended it: a process that
                    // exited just before (its zombie not reaped yet) was not killed.
                    tracing::debug!(service = %label, pid = p.pid.as_raw(), "SIGKILL sent to the process group");
                    p.killed = Some(format!(
                        "SIGKILL sent to process group {} ({} after the stop request)",
                        p.pid,
                        ms(seq.requested().elapsed())
                    ));
                }
            }
        }
        if let Some(next) = p.stop.as_ref().and_then(|(s, _)| s.next_deadline()) {
            self.stop_timers.insert((next, p.num));
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep();
        }
        while let Some(&(t, num)) = self.stop_timers.first() {
            if t > now {
                break;
            }
            self.stop_timers.pop_first();
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
        while let Some(&(t, id)) = self.restart_timers.first() {
            if t > now {
                break;
            }
            self.restart_timers.pop_first();
            let due = self
                .services
                .get_mut(&id)
                .is_some_and(|s| s.proc.is_none() && s.life.restart_due(now));
            if due && self.shutdown.is_none() {
                self.launch(id);
            }
        }
    }

    fn on_channel(&mut self, num: u64, ev: ChannelEvent) {
        let Some(&id) = self.by_proc.get(&num) else {
            return self.on_lingering_channel(num, ev);
        };
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let Some(p) = svc.proc.as_mut().filter(|p| p.num == num) else {
            return;
        };
        let label = label_of(&svc.spec, p.pid);
        let pid = p.pid.as_raw();
        let mut events = Vec::new();
        let mut actions = Vec::new();
        let mut lost = false;
        let says_ready = matches!(&ev, ChannelEvent::Message(m) if m.means_ready());
        if says_ready && !p.ready {
            p.ready = true;
            svc.life.ready();
            lifecycle(&label, &svc.sink, "ready");
            events.push(EventKind::Ready { pid });
        }
        match ev {
            ChannelEvent::Message(FromChild::Hello {
                protocol,
                sdk,
                version,
                ..
            }) => {
                p.hello = true;
                if protocol != protocol::PROTOCOL_VERSION {
                    tracing::warn!(service = %label, protocol, "child speaks another protocol version; continuing with version {}", protocol::PROTOCOL_VERSION);
                }
                tracing::debug!(service = %label, sdk, version, "hello");
                if let Some(s) = &mut self.sentinel {
                    s.hello(p.pid);
                }
            }
            ChannelEvent::Message(FromChild::Ready) => {}
            ChannelEvent::Message(FromChild::Heartbeat) => {}
            ChannelEvent::Message(FromChild::Stopping) => {
                if let Some((seq, _)) = p.stop.as_mut() {
                    seq.stopping();
                }
            }
            ChannelEvent::Message(FromChild::Term) => {
                if let Some((seq, _)) = p.stop.as_mut() {
                    actions = seq.term_requested();
                }
            }
            ChannelEvent::Message(FromChild::Extend { ms: wanted }) => {
                if let Some((seq, _)) = p.stop.as_mut() {
                    let until = seq.extend(Instant::now(), wanted);
                    if let Some(more) = p.extend_lines.allow() {
                        let also = match more {
                            0 => String::new(),
                            n => format!(" ({n} more requests not shown)"),
                        };
                        let text = format!(
                            "stop extended by {wanted} ms on request; SIGKILL in {}{also}",
                            ms(until.saturating_duration_since(Instant::now()))
                        );
                        lifecycle(&label, &svc.sink, &text);
                    }
                }
            }
            // PM2's `process.send('ready')` said ready above, and is application data as well.
            ChannelEvent::Message(FromChild::Data(data)) => {
                events.push(EventKind::Message { pid, data });
            }
            ChannelEvent::Closed => {
                // None already when the supervisor closed it (a `disconnect`).
                lost = p.chan.take().is_some();
            }
        }
        for kind in events {
            self.emit(id, kind);
        }
        self.apply(id, actions);
        if lost {
            self.channel_gone(id);
        }
    }

    /// Application data from a process that has exited (sent just before its exit) is still an
    /// event.
    fn on_lingering_channel(&mut self, num: u64, ev: ChannelEvent) {
        match ev {
            ChannelEvent::Message(FromChild::Data(data)) => {
                if let Some(&(id, pid)) = self.lingering.get(&num) {
                    self.emit(id, EventKind::Message { pid, data });
                }
            }
            ChannelEvent::Closed => {
                self.lingering.remove(&num);
            }
            ChannelEvent::Message(_) => {}
        }
    }

    /// Reaps every exited child. A service's process is peeked at first and its group killed
    /// while its zombie still holds the group id; strays outside the group are swept soon after.
    fn reap_round(&mut self) {
        self.deferred = Some(Vec::new());
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
                self.on_exit(id, pid, exit);
            } else if self.sentinel.as_ref().is_some_and(|s| s.pid() == pid) {
                let _ = reap::reap(pid);
                self.restart_sentinel();
            } else if reap::reap(pid).is_none() {
                break;
            }
        }
        // Replies waiting for these exits go out once the exited processes' strays are gone.
        let settled = self.deferred.take().unwrap_or_default();
        let awaited = self
            .waiters
            .iter()
            .any(|w| settled.iter().any(|s| w.pending.contains(s)));
        if awaited && !self.to_sweep.is_empty() {
            self.sweep();
        }
        for what in settled {
            self.settle(what);
        }
        // Finished output readers of earlier processes.
        while self.pumps.try_join_next().is_some() {}
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
        let hit = procs::kill_tagged(|t| tags.contains(t), SWEEP_WAIT);
        if !hit.is_empty() {
            let some = &hit[..hit.len().min(10)];
            tracing::info!(count = hit.len(), pids = ?some, "killed processes that had left their service's process group");
        }
        self.state_dirty = true;
    }

    fn restart_sentinel(&mut self) {
        tracing::warn!("the sentinel process died; starting a new one");
        let records = self.services.values().filter_map(|svc| {
            let p = svc.proc.as_ref()?;
            let record = sentinel::Record {
                pid: p.pid.as_raw(),
                start_time: p.start_ticks,
                grace: svc.spec.kill_timeout,
                term: !p.hello || p.chan.is_none(),
            };
            Some((record, p.output.clone()))
        });
        match Sentinel::start(&self.token, records) {
            Ok(s) => self.sentinel = Some(s),
            Err(e) => {
                tracing::error!(%e, "cannot start a new sentinel: a SIGKILL of the supervisor would now leave services running");
                self.sentinel = None;
            }
        }
    }

    /// Bookkeeping for an exited process, then what its lifecycle says comes next.
    fn on_exit(&mut self, id: ServiceId, pid: Pid, exit: Exit) {
        self.by_pid.remove(&pid);
        if let Some(s) = &mut self.sentinel {
            s.remove(pid);
        }
        let Some(svc) = self.services.get_mut(&id) else {
            return;
        };
        let Some(p) = svc.proc.take() else { return };
        self.by_proc.remove(&p.num);
        if p.chan.is_some() {
            self.lingering.insert(p.num, (id, pid.as_raw()));
        }
        let uptime = p.started.elapsed();
        svc.last_exit = Some(exit);
        let requested = p.stop.is_some();
        let label = label_of(&svc.spec, pid);
        if let (Some(killed), Exit::Signal(Signal::SIGKILL)) = (&p.killed, exit) {
            lifecycle(&label, &svc.sink, killed);
        }
        let text = match &p.stop {
            Some((seq, _)) => format!(
                "stopped: {exit}, {} after the stop request (ran {})",
                ms(seq.requested().elapsed()),
                ms(uptime)
            ),
            None => format!("exited: {exit} after {}", ms(uptime)),
        };
        lifecycle(&label, &svc.sink, &text);
        let after = svc.life.exited(Instant::now(), uptime, requested);
        self.to_sweep.insert(p.tag);
        self.sweep_at
            .get_or_insert_with(|| Instant::now() + SWEEP_DELAY);
        self.emit(
            id,
            EventKind::Exited {
                pid: pid.as_raw(),
                exit: exit.to_string(),
                requested,
                uptime_ms: uptime.as_millis() as u64,
            },
        );
        // The state file is rewritten at the next sweep: a stale entry is harmless (entries are
        // checked against start times), a missing one is not, so only launches write at once.
        self.settle(WaitFor::Reaped(p.num));
        if self.shutdown.is_some() {
            return;
        }
        self.after_exit(id, after);
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
    let mut line = output::prefix(
        SystemTime::now(),
        label,
        Stream::Pm.tag(false),
        colour_for(sink, label),
    )
    .into_bytes();
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    sink.write_now(line);
}

/// The label of a service whose process record is borrowed elsewhere.
fn label_of(spec: &ServiceSpec, pid: Pid) -> String {
    spec.name.clone().unwrap_or_else(|| pid.to_string())
}

/// Labels are coloured when lines go to the supervisor's stdout and that is a terminal.
fn colour_for(sink: &Sink, label: &str) -> Option<u8> {
    static TTY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let tty = *TTY.get_or_init(|| std::io::IsTerminal::is_terminal(&std::io::stdout()));
    (sink.is_stdout() && tty).then(|| output::label_colour(label))
}
