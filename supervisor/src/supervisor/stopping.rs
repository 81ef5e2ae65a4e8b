//! Carrying out stop sequences: the `stop` message, SIGTERM and SIGKILL when
//! [`StopSequence`] says so, and what a lost channel changes.

use std::time::Duration;

use pm_child::protocol::{self, StopReason, ToChild};

use super::actor::Actor;
use super::effects::{ChildChannel, Effects};
use super::notes::{Note, TermWhy};
use super::table::{Run, Stopping};
use super::timers::Timer;
use super::{EventKind, ServiceId};
use crate::platform::Signal;
use crate::process::sentinel::Record;
use crate::rate_limit::RateLimit;
use crate::service::stop::{Action, StopSequence};

impl<E: Effects> Actor<E> {
    /// Starts the stop sequence of service `id`'s process; returns its process number, or None
    /// when it has no process.
    pub(super) fn begin_stop(&mut self, id: ServiceId, reason: StopReason) -> Option<u64> {
        self.begin_stop_within(id, reason, None, false)
    }

    /// [`begin_stop`](Self::begin_stop), with SIGKILL no later than `within` (an ordered stop's
    /// overall deadline); `guard`: the supervisor stops it on its own (see [`Stopping::guard`]).
    pub(super) fn begin_stop_within(
        &mut self,
        id: ServiceId,
        reason: StopReason,
        within: Option<Duration>,
        guard: bool,
    ) -> Option<u64> {
        let now = self.fx.now();
        let svc = self.table.get_mut(id)?;
        let kill_timeout = within.map_or(svc.spec.kill_timeout, |w| w.min(svc.spec.kill_timeout));
        let p = svc.proc.as_mut()?;
        let num = p.num;
        let Run::Up { ready } = p.run else {
            return Some(num);
        };
        // Only a child that said `hello` understands `stop`; any other gets SIGTERM, like a plain
        // program (a Node child's IPC channel carries application data only).
        let (seq, actions) = StopSequence::start(now, kill_timeout, p.channel.speaks());
        p.run = Run::Stopping(Box::new(Stopping {
            seq,
            reason,
            ready,
            extend_lines: RateLimit::new(3, Duration::from_secs(1)),
            guard,
        }));
        let pid = p.pid.as_raw();
        self.note(
            id,
            &Note::Stopping {
                reason,
                kill_timeout,
            },
        );
        self.emit(id, EventKind::Stopping { pid, reason });
        self.apply(id, actions);
        Some(num)
    }

    /// SIGKILLs the process group of service `id`, whose stop is under way, now (a second
    /// Ctrl-C).
    pub(super) fn force_kill(&mut self, id: ServiceId) {
        let actions = self
            .table
            .get_mut(id)
            .and_then(|s| s.proc.as_mut())
            .and_then(|p| p.run.stopping())
            .map(|s| s.seq.force_kill())
            .unwrap_or_default();
        self.apply(id, actions);
    }

    /// The next step of a stop sequence is due.
    pub(super) fn stop_due(&mut self, num: u64) {
        let now = self.fx.now();
        let Some(svc) = self.table.by_num(num) else {
            return;
        };
        let id = svc.id;
        let actions = svc
            .proc
            .as_mut()
            .and_then(|p| p.run.stopping())
            .map(|s| s.seq.poll(now))
            .unwrap_or_default();
        self.apply(id, actions);
    }

    /// Carries out stop actions for service `id` and schedules its next deadline.
    pub(super) fn apply(&mut self, id: ServiceId, actions: Vec<Action>) {
        let now = self.fx.now();
        let mut queue = actions;
        while let Some(action) = queue.pop() {
            let Some(svc) = self.table.get_mut(id) else {
                return;
            };
            let timeout_ms = svc.spec.kill_timeout.as_millis() as u64;
            let Some(p) = svc.proc.as_mut() else { return };
            let pid = p.pid;
            let speaks = p.channel.speaks();
            let closed = p.channel.channel().is_none();
            let Run::Stopping(stop) = &mut p.run else {
                return;
            };
            match action {
                Action::SendStop => {
                    let line = protocol::encode(&ToChild::Stop {
                        reason: stop.reason,
                        timeout_ms,
                    });
                    let sent = p.channel.channel().is_some_and(|c| c.send(line.into()));
                    if !sent {
                        queue.extend(stop.seq.channel_lost());
                    }
                }
                Action::Term => {
                    let why = if stop.seq.term_was_requested() {
                        TermWhy::Asked
                    } else if closed {
                        TermWhy::ChannelClosed
                    } else if !speaks {
                        TermWhy::NoHello
                    } else {
                        TermWhy::NoAnswer(now.saturating_duration_since(stop.seq.requested()))
                    };
                    self.fx.signal_group(pid, Signal::SIGTERM);
                    self.note(id, &Note::Sigterm { pid, why });
                }
                Action::Kill => {
                    // Logged at the exit, if the exit shows the SIGKILL ended it: a process that
                    // exited just before (its zombie not reaped yet) was not killed.
                    self.fx.signal_group(pid, Signal::SIGKILL);
                    tracing::debug!(pid = pid.as_raw(), "SIGKILL sent to the process group");
                }
            }
        }
        let next = self
            .table
            .get_mut(id)
            .and_then(|s| s.proc.as_mut())
            .and_then(|p| Some((p.num, p.run.stopping()?.seq.next_deadline()?)));
        if let Some((num, at)) = next {
            self.timers.at(at, Timer::Stop(num));
        }
    }

    /// Bookkeeping once a running process's channel is gone: a child that said `hello` (`spoke`)
    /// can no longer see the supervisor's death as EOF, so the sentinel is to SIGTERM it
    /// instead; a stop in progress falls back to SIGTERM.
    pub(super) fn channel_gone(&mut self, id: ServiceId, spoke: bool) {
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        let grace = svc.spec.kill_timeout;
        let Some(p) = svc.proc.as_mut() else { return };
        p.beat.disarm();
        if spoke {
            self.fx.sentinel_watch(&Record {
                pid: p.pid.as_raw(),
                start_time: p.start_ticks,
                grace,
                term: true,
            });
        }
        let actions = p
            .run
            .stopping()
            .map(|s| s.seq.channel_lost())
            .unwrap_or_default();
        self.apply(id, actions);
    }
}
