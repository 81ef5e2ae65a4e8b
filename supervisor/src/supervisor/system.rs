//! The actor's effects on the real system ([`System`]), and the loop that feeds the actor on the
//! tokio runtime: exits (SIGCHLD), deadlines, requests and channel events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::actor::Actor;
use super::effects::{ChildChannel, Effects, Launched, Reaped};
use super::notes::Note;
use super::table::label;
use super::{Options, Request, ServiceId, message_event_envelope};
use crate::config::ServiceSpec;
use crate::logs::file::Rotation;
use crate::logs::lines::{self, Stream};
use crate::logs::pump::Pump;
use crate::logs::writer::{LogHub, Sink};
use crate::platform::{self, Pid, Signal};
use crate::process::channel::{self, Channel, ChannelEvent};
use crate::process::launch::{self, LaunchError};
use crate::process::sentinel::{self, Record, Sentinel};
use crate::runtime::Instance;
use crate::service::watch::{Changes, FileWatcher};

/// How long a sweep waits for the strays it SIGKILLed to be gone. It returns as soon as they
/// are (a few ms); the bound only matters on a loaded machine, where 100 ms proved too short
/// for a stop reply to come after its strays were gone.
const SWEEP_WAIT: Duration = Duration::from_millis(300);
/// After the last process is reaped, output readers get this long to drain their pipes, and the
/// log writers until [`FINISH_WRITERS`], so that a shutdown ends within the largest killTimeout
/// plus a second whatever the log files do.
const FINISH_READERS: Duration = Duration::from_millis(300);
const FINISH_WRITERS: Duration = Duration::from_millis(600);
/// Most queued channel messages handled before a request (see [`run`]).
const CHANNEL_CATCH_UP: usize = 256;

/// The system the actor acts on.
pub(super) struct System {
    /// Prefix of every service tag of this run.
    token: String,
    hub: LogHub,
    sentinel: Option<Sentinel>,
    instance: Option<Instance>,
    chan_tx: mpsc::Sender<(u64, ChannelEvent)>,
    /// The output readers.
    pumps: JoinSet<()>,
    /// Copies of each live process's output pipes, to hand to a restarted sentinel.
    outputs: HashMap<Pid, Arc<sentinel::Output>>,
    /// Watch mode's watcher, started with the first watched service.
    watcher: Option<FileWatcher>,
    /// What the watcher saw change.
    changes: Arc<Changes>,
    /// Memory of the process groups with `maxMemory`.
    sampler: platform::GroupSampler,
}

impl System {
    pub(super) fn new(
        opts: Options,
        chan_tx: mpsc::Sender<(u64, ChannelEvent)>,
    ) -> std::io::Result<System> {
        let sentinel = if opts.sentinel {
            Some(Sentinel::start(&opts.token, std::iter::empty())?)
        } else {
            None
        };
        Ok(System {
            token: opts.token,
            hub: LogHub::default(),
            sentinel,
            instance: opts.instance,
            chan_tx,
            pumps: JoinSet::new(),
            outputs: HashMap::new(),
            watcher: None,
            changes: Arc::default(),
            sampler: platform::GroupSampler::default(),
        })
    }

    fn tag(&self, num: u64) -> String {
        format!("{}-{num}", self.token)
    }

    /// Ends the run once every process is reaped: kills what still carries the run's tag, lets
    /// output readers and log writers finish (within bounds), dismisses the sentinel and
    /// removes the runtime files.
    async fn finish(mut self) {
        let start = Instant::now();
        // Anything of this run still carrying its tag (descendants that left their group).
        let prefix = format!("{}-", self.token);
        platform::kill_tagged(|t| t.starts_with(&prefix), SWEEP_WAIT);
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
    }
}

impl ChildChannel for Channel {
    fn send(&self, line: Arc<[u8]>) -> bool {
        Channel::send(self, line)
    }

    fn disconnect(self) {
        Channel::disconnect(self);
    }
}

/// Labels are coloured when lines go to the supervisor's stdout and that is a terminal.
fn colour_for(sink: &Sink, label: &str) -> Option<u8> {
    static TTY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let tty = *TTY.get_or_init(|| std::io::IsTerminal::is_terminal(&std::io::stdout()));
    (sink.is_stdout() && tty).then(|| lines::label_colour(label))
}

impl Effects for System {
    type Channel = Channel;
    type Log = Sink;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn open_log(&mut self, spec: &ServiceSpec) -> Sink {
        let rotation = Rotation {
            max_size: spec.log_max_size,
            keep: spec.log_keep,
        };
        self.hub.sink(spec.log.as_deref(), rotation)
    }

    /// The line goes to the service's log, and to the supervisor's diagnostics when that log is
    /// a file (on stdout it would show twice); an error goes to both whatever the log, the log
    /// line first, so that its time is the failure's.
    fn note(&mut self, log: &Sink, label: &str, note: &Note) {
        let text = note.to_string();
        let line = lines::supervisor_line(label, colour_for(log, label), &text);
        if let Some(ring) = log.ring() {
            ring.push(
                std::time::SystemTime::now(),
                Stream::Pm,
                &[(text.as_bytes(), false)],
            );
        }
        if note.is_error() {
            log.write_now(line);
            tracing::error!(service = %label, "{text}");
            return;
        }
        if !log.is_stdout() {
            tracing::info!(service = %label, "{text}");
        }
        log.write_now(line);
    }

    fn recent(&self, log: &Sink, n: usize) -> Vec<crate::logs::ring::Recent> {
        log.ring().map_or_else(Vec::new, |r| r.last(n))
    }

    fn launch(
        &mut self,
        id: ServiceId,
        num: u64,
        spec: &ServiceSpec,
        log: &Sink,
    ) -> Result<Launched<Channel>, LaunchError> {
        let path_var = spec
            .env
            .get("PATH")
            .map(std::ffi::OsString::from)
            .or_else(|| std::env::var_os("PATH"));
        let plan = launch::plan(spec, path_var.as_deref())?;
        let spawned = launch::spawn(&plan, spec, &self.tag(num))?;
        let pid = spawned.pid;
        let start_ticks = platform::start_time(pid.as_raw()).unwrap_or(0);
        let label: Arc<str> = label(spec.name.as_deref(), Some(pid), id).into();
        let envelope = message_event_envelope(id, spec.name.as_deref(), pid.as_raw());
        let chan = channel::start(
            spawned.channel,
            label.clone(),
            num,
            envelope,
            self.chan_tx.clone(),
        );
        let chan = chan
            .inspect_err(|e| tracing::error!(service = %label, %e, "cannot set up the channel"))
            .ok();
        // Only while a sentinel runs: it is the one to read them, after the supervisor's death.
        if self.sentinel.is_some() {
            let kept = sentinel::Output::new(
                &spawned.stdout,
                &spawned.stderr,
                label.clone(),
                spec.log.clone(),
                spec.strip_ansi,
            );
            match kept {
                Ok(o) => {
                    self.outputs.insert(pid, Arc::new(o));
                }
                Err(e) => {
                    tracing::warn!(service = %label, %e, "cannot keep a copy of the output pipes: its last lines are lost if the supervisor is killed");
                }
            }
        }
        let pump = Pump {
            sink: log.clone(),
            colour: colour_for(log, &label),
            label,
            strip_ansi: spec.strip_ansi,
        };
        self.pumps
            .spawn(pump.clone().run(spawned.stdout, Stream::Out));
        self.pumps.spawn(pump.run(spawned.stderr, Stream::Err));
        Ok(Launched {
            pid,
            start_ticks,
            channel: chan,
            command: plan.describe(),
        })
    }

    fn signal_group(&mut self, pgid: Pid, sig: Signal) {
        platform::signal_group(pgid, sig);
    }

    /// A service's process is peeked at first and its group killed while its zombie still
    /// holds the group id; strays outside the group are swept soon after.
    fn next_exit(&mut self, services: &[Pid]) -> Option<Reaped> {
        let sentinel = self.sentinel.as_ref().map(Sentinel::pid);
        let mut known = services.to_vec();
        known.extend(sentinel);
        let reaped = loop {
            let Some(pid) = platform::next_exited(&known) else {
                break None;
            };
            if services.contains(&pid) {
                // The rest of its group goes with it: services run in the foreground.
                platform::signal_group(pid, Signal::SIGKILL);
                break platform::reap(pid).map(|exit| Reaped::Service(pid, exit));
            } else if sentinel == Some(pid) {
                let _ = platform::reap(pid);
                break Some(Reaped::Sentinel);
            } else if platform::reap(pid).is_none() {
                break None;
            }
        };
        if reaped.is_none() {
            // Finished output readers of earlier processes.
            while self.pumps.try_join_next().is_some() {}
        }
        reaped
    }

    fn sweep(&mut self, nums: &[u64]) -> Vec<i32> {
        let tags: HashSet<String> = nums.iter().map(|&n| self.tag(n)).collect();
        platform::kill_tagged(|t| tags.contains(t), SWEEP_WAIT)
    }

    fn sentinel_watch(&mut self, record: &Record) {
        let pid = Pid::from_raw(record.pid);
        if let Some(s) = &mut self.sentinel {
            s.add(record, self.outputs.get(&pid).cloned());
        }
    }

    fn sentinel_hello(&mut self, pid: Pid) {
        if let Some(s) = &mut self.sentinel {
            s.hello(pid);
        }
    }

    fn sentinel_forget(&mut self, pid: Pid) {
        self.outputs.remove(&pid);
        if let Some(s) = &mut self.sentinel {
            s.remove(pid);
        }
    }

    fn sentinel_restart(&mut self, records: Vec<Record>) {
        tracing::warn!("the sentinel process died; starting a new one");
        let with_outputs = records.into_iter().map(|r| {
            let output = self.outputs.get(&Pid::from_raw(r.pid)).cloned();
            (r, output)
        });
        match Sentinel::start(&self.token, with_outputs) {
            Ok(s) => self.sentinel = Some(s),
            Err(e) => {
                tracing::error!(%e, "cannot start a new sentinel: a SIGKILL of the supervisor would now leave services running");
                self.sentinel = None;
            }
        }
    }

    fn record_state(&mut self, groups: &[(i32, u64)]) {
        if let Some(i) = &self.instance {
            i.record(&self.token, groups.iter().copied());
        }
    }

    fn usage(&mut self, groups: &[Pid]) -> std::collections::HashMap<Pid, platform::GroupUsage> {
        let raw: Vec<i32> = groups.iter().map(|p| p.as_raw()).collect();
        platform::group_usage(&raw)
            .into_iter()
            .map(|(pgid, u)| (Pid::from_raw(pgid), u))
            .collect()
    }

    fn signal_process(&mut self, pid: Pid, sig: Signal) {
        let _ = nix::sys::signal::kill(pid, sig);
    }

    fn group_rss(&mut self, groups: &[Pid]) -> HashMap<Pid, u64> {
        let raw: Vec<i32> = groups.iter().map(|p| p.as_raw()).collect();
        self.sampler
            .sample(&raw, Instant::now())
            .into_iter()
            .map(|(g, rss)| (Pid::from_raw(g), rss))
            .collect()
    }

    fn watch(&mut self, id: ServiceId, spec: &ServiceSpec) -> Result<(), String> {
        if self.watcher.is_none() {
            let w = FileWatcher::new(self.changes.clone())
                .map_err(|e| format!("cannot start the file watcher: {e}"))?;
            self.watcher = Some(w);
        }
        match &mut self.watcher {
            Some(w) => w.watch(id, spec),
            None => Ok(()),
        }
    }

    fn unwatch(&mut self, id: ServiceId) {
        if let Some(w) = &mut self.watcher {
            w.unwatch(id);
        }
    }
}

/// Feeds the actor until it has shut down and every process is gone, then ends the run.
pub(super) async fn run(
    mut actor: Actor<System>,
    mut rx: mpsc::Receiver<Request>,
    mut sigchld: tokio::signal::unix::Signal,
    mut chan_rx: mpsc::Receiver<(u64, ChannelEvent)>,
) {
    let mut requests_open = true;
    let changes = actor.fx.changes.clone();
    // One timer, moved only when the earliest deadline moves: most turns (a heartbeat, a log
    // line) leave it where it is and cost the runtime's timer wheel nothing.
    let sleep = tokio::time::sleep_until(Instant::now().into());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        let deadline = actor.next_deadline();
        if let Some(at) = deadline.filter(|&at| armed != Some(at)) {
            sleep.as_mut().reset(at.into());
        }
        armed = deadline;
        // Exits and deadlines first, then requests, then children's messages: a child that
        // floods its channel can delay neither a stop nor another client's answer.
        tokio::select! {
            biased;
            _ = sigchld.recv() => actor.reap(),
            _ = &mut sleep, if deadline.is_some() => {
                armed = None;
                actor.timers_due();
            }
            req = rx.recv(), if requests_open => match req {
                Some(req) => {
                    // What children said before this request is known before it is acted on
                    // (a `hello` decides how a stop begins); bounded, so that a flood cannot
                    // hold the request up.
                    for _ in 0..chan_rx.len().min(CHANNEL_CATCH_UP) {
                        let Ok((num, ev)) = chan_rx.try_recv() else { break };
                        actor.channel(num, ev);
                    }
                    actor.request(req);
                }
                None => {
                    requests_open = false;
                    actor.handles_gone();
                }
            },
            Some((num, ev)) = chan_rx.recv() => actor.channel(num, ev),
            _ = changes.wake.notified() => {
                for (id, path) in changes.take() {
                    actor.files_changed(id, path);
                }
            }
        }
        if actor.end_turn() {
            break;
        }
    }
    let replies = actor.finished();
    actor.into_effects().finish().await;
    for reply in replies {
        let _ = reply.send(());
    }
}
