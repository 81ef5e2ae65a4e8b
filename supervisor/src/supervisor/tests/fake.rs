//! A stand-in for the system: it records what the actor does and lets a test say what happens
//! (exits, the clock), as watchexec's job tests use a stand-in child.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::ServiceId;
use super::super::effects::{ChildChannel, Effects, Launched, Reaped};
use super::super::notes::Note;
use crate::config::ServiceSpec;
use crate::platform::{Exit, GroupUsage, Pid, Signal};
use crate::process::launch::LaunchError;
use crate::process::sentinel::Record;

/// What a channel was sent, shared between the actor's handle and the test.
#[derive(Debug, Default)]
pub(super) struct Wire {
    pub(super) lines: Vec<String>,
    /// The child does not read: its queue is full.
    pub(super) full: bool,
    pub(super) disconnected: bool,
}

#[derive(Debug)]
pub(super) struct FakeChannel(Rc<RefCell<Wire>>);

impl ChildChannel for FakeChannel {
    fn send(&self, line: Arc<[u8]>) -> bool {
        let mut w = self.0.borrow_mut();
        if w.full || w.disconnected {
            return false;
        }
        w.lines
            .push(String::from_utf8_lossy(&line).trim_end().to_owned());
        true
    }

    fn disconnect(self) {
        self.0.borrow_mut().disconnected = true;
    }
}

/// A process the actor launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Spawned {
    pub(super) id: ServiceId,
    pub(super) num: u64,
    pub(super) pid: Pid,
}

#[derive(Debug)]
pub(super) struct Fake {
    pub(super) clock: Instant,
    next_pid: i32,
    pub(super) spawned: Vec<Spawned>,
    /// Scripts whose launch fails.
    pub(super) unlaunchable: Vec<String>,
    /// Processes launched without a channel.
    pub(super) no_channel: bool,
    pub(super) wires: BTreeMap<u64, Rc<RefCell<Wire>>>,
    pub(super) signals: Vec<(Pid, Signal)>,
    /// Exits the system reports at the next SIGCHLD.
    pub(super) exits: VecDeque<Reaped>,
    pub(super) sweeps: Vec<Vec<u64>>,
    /// What the sentinel knows: pid → record.
    pub(super) sentinel: BTreeMap<i32, Record>,
    pub(super) sentinel_starts: usize,
    pub(super) states: Vec<Vec<(i32, u64)>>,
    /// Every line written about a service: (label, note).
    pub(super) notes: Vec<(String, Note)>,
    /// What each process group uses, as the test says.
    pub(super) usage: BTreeMap<Pid, GroupUsage>,
    /// Signals sent to single processes.
    pub(super) process_signals: Vec<(Pid, Signal)>,
    /// The process groups' RSS, as the test sets it.
    pub(super) rss: HashMap<Pid, u64>,
    /// How many times RSS was read.
    pub(super) rss_reads: usize,
    /// What was handed to the watcher.
    pub(super) watched: Vec<(ServiceId, Vec<std::path::PathBuf>)>,
    /// Services whose watching was given up, in order.
    pub(super) unwatched: Vec<ServiceId>,
}

impl Fake {
    pub(super) fn new() -> Fake {
        Fake {
            clock: Instant::now(),
            next_pid: 1000,
            spawned: Vec::new(),
            unlaunchable: Vec::new(),
            no_channel: false,
            wires: BTreeMap::new(),
            signals: Vec::new(),
            exits: VecDeque::new(),
            sweeps: Vec::new(),
            sentinel: BTreeMap::new(),
            sentinel_starts: 1,
            states: Vec::new(),
            notes: Vec::new(),
            usage: BTreeMap::new(),
            process_signals: Vec::new(),
            rss: HashMap::new(),
            rss_reads: 0,
            watched: Vec::new(),
            unwatched: Vec::new(),
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.clock += d;
    }

    pub(super) fn wire(&self, num: u64) -> std::cell::RefMut<'_, Wire> {
        self.wires[&num].borrow_mut()
    }
}

impl Effects for Fake {
    type Channel = FakeChannel;
    type Log = ();

    fn now(&self) -> Instant {
        self.clock
    }

    fn open_log(&mut self, _spec: &ServiceSpec) {}

    fn note(&mut self, _log: &(), label: &str, note: &Note) {
        self.notes.push((label.to_owned(), note.clone()));
    }

    fn launch(
        &mut self,
        id: ServiceId,
        num: u64,
        spec: &ServiceSpec,
        _log: &(),
    ) -> Result<Launched<FakeChannel>, LaunchError> {
        if self.unlaunchable.contains(&spec.script) {
            return Err(LaunchError::ScriptNotFound(spec.cwd.join(&spec.script)));
        }
        self.next_pid += 1;
        let pid = Pid::from_raw(self.next_pid);
        self.spawned.push(Spawned { id, num, pid });
        let channel = (!self.no_channel).then(|| {
            let wire = Rc::new(RefCell::new(Wire::default()));
            self.wires.insert(num, wire.clone());
            FakeChannel(wire)
        });
        Ok(Launched {
            pid,
            start_ticks: 7000 + num,
            channel,
            command: format!("{} {}", spec.script, spec.args.join(" ")),
        })
    }

    fn signal_group(&mut self, pgid: Pid, sig: Signal) {
        self.signals.push((pgid, sig));
    }

    fn next_exit(&mut self, services: &[Pid]) -> Option<Reaped> {
        let i = self.exits.iter().position(|r| match r {
            Reaped::Service(pid, _) => services.contains(pid),
            Reaped::Sentinel => true,
        })?;
        let r = self.exits.remove(i)?;
        if let Reaped::Service(pid, _) = r {
            // As the system does: the group goes with its leader.
            self.signals.push((pid, Signal::SIGKILL));
        }
        Some(r)
    }

    fn sweep(&mut self, nums: &[u64]) -> Vec<i32> {
        let mut nums = nums.to_vec();
        nums.sort_unstable();
        self.sweeps.push(nums);
        Vec::new()
    }

    fn sentinel_watch(&mut self, record: &Record) {
        self.sentinel.insert(record.pid, record.clone());
    }

    fn sentinel_hello(&mut self, pid: Pid) {
        if let Some(r) = self.sentinel.get_mut(&pid.as_raw()) {
            r.term = false;
        }
    }

    fn sentinel_forget(&mut self, pid: Pid) {
        self.sentinel.remove(&pid.as_raw());
    }

    fn sentinel_restart(&mut self, records: Vec<Record>) {
        self.sentinel_starts += 1;
        self.sentinel = records.into_iter().map(|r| (r.pid, r)).collect();
    }

    fn record_state(&mut self, groups: &[(i32, u64)]) {
        self.states.push(groups.to_vec());
    }

    fn usage(&mut self, groups: &[Pid]) -> std::collections::HashMap<Pid, GroupUsage> {
        groups
            .iter()
            .filter_map(|p| Some((*p, self.usage.get(p)?.clone())))
            .collect()
    }

    fn signal_process(&mut self, pid: Pid, sig: Signal) {
        self.process_signals.push((pid, sig));
    }

    fn group_rss(&mut self, groups: &[Pid]) -> HashMap<Pid, u64> {
        self.rss_reads += 1;
        groups
            .iter()
            .filter_map(|p| Some((*p, *self.rss.get(p)?)))
            .collect()
    }

    fn watch(&mut self, id: ServiceId, spec: &ServiceSpec) -> Result<(), String> {
        self.watched.push((id, spec.watch.clone()));
        Ok(())
    }

    fn unwatch(&mut self, id: ServiceId) {
        self.unwatched.push(id);
    }
}

/// What the actor reported exit status as.
pub(super) fn code(c: i32) -> Exit {
    Exit::Code(c)
}
