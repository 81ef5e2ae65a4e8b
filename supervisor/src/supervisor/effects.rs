//! Everything the actor does to the world goes through [`Effects`]: launching, signalling,
//! reaping, sweeping strays, the sentinel, the state file, log lines and the clock. The actor
//! only decides; `System` carries its decisions out, and the tests drive the same decisions
//! against a stand-in that records them, without processes and in microseconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::ServiceId;
use super::notes::Note;
use crate::config::ServiceSpec;
use crate::platform::{Exit, GroupUsage, Pid, Signal};
use crate::process::launch::LaunchError;
use crate::process::sentinel::Record;

/// The supervisor's end of a child's channel.
pub(super) trait ChildChannel {
    /// Queues a line for the child; false when the queue is full or the channel is gone.
    fn send(&self, line: Arc<[u8]>) -> bool;
    /// Closes the channel for good (what is queued is still written; the child then reads EOF).
    fn disconnect(self);
}

/// A process launched for a service.
#[derive(Debug)]
pub(super) struct Launched<C> {
    pub(super) pid: Pid,
    /// Its start time, which with its pid names it for good (0: not known).
    pub(super) start_ticks: u64,
    /// Its channel; None when the channel could not be set up (the process still runs).
    pub(super) channel: Option<C>,
    /// The command line as executed, for the log.
    pub(super) command: String,
}

/// What ended, once reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaped {
    /// A service's process; the rest of its group was SIGKILLed before its zombie was reaped.
    Service(Pid, Exit),
    /// The sentinel.
    Sentinel,
}

/// How the actor acts on the world.
pub(super) trait Effects {
    type Channel: ChildChannel;
    /// Where a service's lines go.
    type Log;

    fn now(&self) -> Instant;

    /// Opens the log of a new service.
    fn open_log(&mut self, spec: &ServiceSpec) -> Self::Log;

    /// Writes one of the supervisor's own lines to a service's log (labelled `label`).
    fn note(&mut self, log: &Self::Log, label: &str, note: &Note);

    /// The last `n` lines kept in memory for a service whose log is the supervisor's stdout
    /// (none for a log file).
    fn recent(&self, _log: &Self::Log, _n: usize) -> Vec<crate::logs::ring::Recent> {
        Vec::new()
    }

    /// Starts process number `num` of service `id`: its output goes to `log`, its channel's
    /// events come back tagged with `num`, and the sentinel gets copies of its output pipes.
    fn launch(
        &mut self,
        id: ServiceId,
        num: u64,
        spec: &ServiceSpec,
        log: &Self::Log,
    ) -> Result<Launched<Self::Channel>, LaunchError>;

    fn signal_group(&mut self, pgid: Pid, sig: Signal);

    /// The next child that exited, reaped; None when no more have. `services` are the pids of
    /// the services' processes; any other child (a re-parented descendant) is reaped silently.
    fn next_exit(&mut self, services: &[Pid]) -> Option<Reaped>;

    /// SIGKILLs what is left of exited processes `nums` outside their groups (found by their
    /// tags), waiting briefly for them to be gone. Returns the pids killed.
    fn sweep(&mut self, nums: &[u64]) -> Vec<i32>;

    /// Tells the sentinel about a process group, or new facts about it (it keeps the output
    /// pipes it holds).
    fn sentinel_watch(&mut self, record: &Record);
    /// The group's child spoke the protocol: it sees the supervisor's death as EOF.
    fn sentinel_hello(&mut self, pid: Pid);
    /// The group is gone.
    fn sentinel_forget(&mut self, pid: Pid);
    /// The sentinel died: starts another one that knows `records`.
    fn sentinel_restart(&mut self, records: Vec<Record>);

    /// Records the running process groups (pid, start time) in the state file.
    fn record_state(&mut self, groups: &[(i32, u64)]);

    /// CPU time, resident memory and members of the process groups `groups`, for their rows
    /// (one scan for all of them); a group that is gone is absent.
    fn usage(&mut self, groups: &[Pid]) -> std::collections::HashMap<Pid, GroupUsage>;

    /// A signal to one process (not its group): a hung child's diagnostic.
    fn signal_process(&mut self, pid: Pid, sig: Signal);

    /// Total resident memory of each process group of `groups`, in bytes, in one pass; a group
    /// without a live member is left out.
    fn group_rss(&mut self, groups: &[Pid]) -> HashMap<Pid, u64>;

    /// Watches the files of service `id` (its `watch`); changes come back as
    /// `Actor::files_changed`. An error says what cannot be watched.
    fn watch(&mut self, id: ServiceId, spec: &ServiceSpec) -> Result<(), String>;

    /// Stops watching the files of service `id` (deleted, removed by a reload, or no longer
    /// with `watch`); folders no other service watches are given up.
    fn unwatch(&mut self, id: ServiceId);
}
