//! The actor's decisions, driven without processes: a stand-in system ([`fake::Fake`]) records
//! what the actor does, and each test says what happens (exits, channel messages, the clock).
//! Every sequence runs in microseconds, however long its timeouts and schedules.

mod edits;
mod fake;
mod guards;
mod restarts;
mod runs;
mod stops;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pm_child::protocol::FromChild;
use tokio::sync::{broadcast, oneshot};

use super::actor::Actor;
use super::effects::Reaped;
use super::notes::{Note, TermWhy};
use super::{ActionError, Event, EventKind, Request, Rows, ServiceInfo, Services, State};
use crate::config::ServiceSpec;
use crate::platform::{Exit, Pid, Signal};
use crate::process::channel::ChannelEvent;
use fake::{Fake, Spawned};

const MS: Duration = Duration::from_millis(1);

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_owned()),
        script: format!("{name}.js"),
        args: Vec::new(),
        cwd: PathBuf::from("/srv"),
        log: None,
        env: BTreeMap::new(),
        restart_at: vec![100, 500, 1000],
        restart_ok: Duration::from_secs(60),
        strip_ansi: false,
        interpreter: None,
        node_path: None,
        kill_timeout: 200 * MS,
        log_max_size: 0,
        log_keep: 0,
        watchdog: None,
        max_memory: None,
        depends_on: Vec::new(),
        watch: Vec::new(),
        watch_off: false,
    }
}

/// The actor with a stand-in system, and what it emits.
struct Sup {
    actor: Actor<Fake>,
    events: broadcast::Receiver<Event>,
}

impl Sup {
    fn new() -> Sup {
        let (tx, events) = broadcast::channel(1024);
        Sup {
            actor: Actor::new(Fake::new(), tx),
            events,
        }
    }

    fn fx(&mut self) -> &mut Fake {
        &mut self.actor.fx
    }

    /// Ends the turn as the loop does; true once shut down.
    fn turn(&mut self) -> bool {
        self.actor.end_turn()
    }

    fn ask<T>(&mut self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.actor.request(make(tx));
        self.turn();
        rx
    }

    fn start(&mut self, spec: ServiceSpec) -> ServiceInfo {
        let mut rx = self.ask(|reply| Request::Start {
            spec: Box::new(spec),
            await_ready: false,
            reply,
        });
        rx.try_recv().expect("answered at once").expect("started")
    }

    fn stop(&mut self, which: Services) -> oneshot::Receiver<Rows> {
        self.ask(|tx| Request::Stop(which, tx))
    }

    fn restart(&mut self, which: Services) -> oneshot::Receiver<Rows> {
        self.ask(|tx| Request::Restart(which, tx))
    }

    fn list(&mut self) -> Vec<ServiceInfo> {
        self.ask(Request::List).try_recv().expect("answered")
    }

    fn row(&mut self, id: u64) -> ServiceInfo {
        self.list().into_iter().find(|r| r.id == id).expect("a row")
    }

    /// The latest process of service `id`.
    fn proc(&self, id: u64) -> Spawned {
        *self
            .actor
            .fx
            .spawned
            .iter()
            .rev()
            .find(|s| s.id == id)
            .expect("launched")
    }

    fn say(&mut self, num: u64, m: FromChild) {
        self.actor.channel(num, ChannelEvent::Message(m));
        self.turn();
    }

    fn hello(&mut self, num: u64) {
        self.say(
            num,
            FromChild::Hello {
                protocol: pm_child::protocol::PROTOCOL_VERSION,
                sdk: "test".into(),
                version: "0".into(),
                diagnostics: None,
            },
        );
    }

    fn close_channel(&mut self, num: u64) {
        self.actor.channel(num, ChannelEvent::Closed);
        self.turn();
    }

    /// The process `pid` exits with `exit`, and the actor sees SIGCHLD.
    fn exit(&mut self, pid: Pid, exit: Exit) {
        self.fx().exits.push_back(Reaped::Service(pid, exit));
        self.actor.reap();
        self.turn();
    }

    /// Time passes; as in the loop, the timers fire if the earliest deadline has come, and the
    /// turn ends.
    fn advance(&mut self, d: Duration) {
        self.fx().advance(d);
        let now = crate::supervisor::effects::Effects::now(&self.actor.fx);
        if self.actor.next_deadline().is_some_and(|t| t <= now) {
            self.actor.timers_due();
        }
        self.turn();
    }

    /// Signals sent since the last call.
    fn signals(&mut self) -> Vec<(Pid, Signal)> {
        std::mem::take(&mut self.fx().signals)
    }

    /// Lines written since the last call, as text.
    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.fx().notes)
            .into_iter()
            .map(|(label, n)| format!("{label}: {n}"))
            .collect()
    }

    fn events(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e.kind);
        }
        out
    }
}

fn rows(rx: &mut oneshot::Receiver<Rows>) -> Option<Vec<ServiceInfo>> {
    rx.try_recv().ok().map(|r| r.expect("rows"))
}
