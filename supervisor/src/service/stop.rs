//! The stop sequence of one process, as a pure state machine over time: no I/O, no clock of its
//! own. The actor feeds it what happened and carries out the actions it returns.
//!
//! 1. A child with a channel that said `hello` is sent `stop`. If it does not answer `stopping`
//!    within [`ack_window`], or it has no such channel, its process group gets SIGTERM.
//! 2. At `killTimeout` after the request (later if the child asked with `extend`, up to
//!    [`max_stop_time`]) the process group gets SIGKILL.
//!
//! The sequence ends when the process is reaped, which the actor handles.

use std::time::{Duration, Instant};

/// How long a child with a channel has to answer `stop` with `stopping` before it gets SIGTERM:
/// 50 ms, or half of `killTimeout` when that is shorter.
pub(crate) fn ack_window(kill_timeout: Duration) -> Duration {
    Duration::from_millis(50).min(kill_timeout / 2)
}

/// `extend` requests can push SIGKILL to at most this long after the stop request: 30 s, or
/// `killTimeout` when that is longer.
pub(crate) fn max_stop_time(kill_timeout: Duration) -> Duration {
    Duration::from_secs(30).max(kill_timeout)
}

/// Something the actor must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `{"cmd":"NODE_PM","type":"stop",...}` on the channel.
    SendStop,
    /// SIGTERM to the process group.
    Term,
    /// SIGKILL to the process group.
    Kill,
}

/// Why SIGKILL was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Killed {
    /// `killTimeout` (or the `extend`ed deadline) passed, at this time.
    At(Instant),
    /// A second signal to the supervisor forced it.
    Forced,
}

/// Progress of one stop.
#[derive(Debug, Clone)]
pub(crate) struct StopSequence {
    requested: Instant,
    kill_timeout: Duration,
    /// When SIGTERM is due if no `stopping` arrived; None once settled.
    term_at: Option<Instant>,
    kill_at: Instant,
    acked: bool,
    /// The child answered `term`.
    term_asked: bool,
    termed: bool,
    killed: Option<Killed>,
}

impl StopSequence {
    /// Starts a stop at `now`. `channel` says whether the child can be sent `stop`.
    pub(crate) fn start(
        now: Instant,
        kill_timeout: Duration,
        channel: bool,
    ) -> (StopSequence, Vec<Action>) {
        let mut seq = StopSequence {
            requested: now,
            kill_timeout,
            term_at: None,
            kill_at: now + kill_timeout,
            acked: false,
            term_asked: false,
            termed: false,
            killed: None,
        };
        let mut actions = Vec::new();
        if kill_timeout.is_zero() {
            seq.killed = Some(Killed::At(now));
            actions.push(Action::Kill);
        } else if channel {
            seq.term_at = Some(now + ack_window(kill_timeout));
            actions.push(Action::SendStop);
        } else {
            seq.termed = true;
            actions.push(Action::Term);
        }
        (seq, actions)
    }

    /// The child answered `stopping`: its handlers run, no SIGTERM will interrupt them.
    pub(crate) fn stopping(&mut self) {
        self.acked = true;
        self.term_at = None;
    }

    /// The child asks for `ms` more milliseconds from `now`. Returns the new SIGKILL time.
    pub(crate) fn extend(&mut self, now: Instant, ms: u64) -> Instant {
        let cap = self.requested + max_stop_time(self.kill_timeout);
        let wanted = now + Duration::from_millis(ms);
        if self.killed.is_none() {
            self.kill_at = self.kill_at.max(wanted.min(cap));
        }
        self.kill_at
    }

    /// The child answered `term` (it has no stop handlers): SIGTERM now, unless sent already.
    pub(crate) fn term_requested(&mut self) -> Vec<Action> {
        if self.termed || self.killed.is_some() {
            return Vec::new();
        }
        self.term_asked = true;
        self.termed = true;
        self.term_at = None;
        vec![Action::Term]
    }

    /// Whether the SIGTERM was sent because the child answered `term`.
    pub(crate) fn term_was_requested(&self) -> bool {
        self.term_asked
    }

    /// The channel is gone (or `stop` could not be queued): fall back to SIGTERM at once, unless
    /// the child already said `stopping`.
    pub(crate) fn channel_lost(&mut self) -> Vec<Action> {
        if self.acked || self.termed || self.killed.is_some() {
            return Vec::new();
        }
        self.termed = true;
        self.term_at = None;
        vec![Action::Term]
    }

    /// The actions due at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.killed.is_some() {
            return actions;
        }
        if now >= self.kill_at {
            self.killed = Some(Killed::At(now));
            self.term_at = None;
            actions.push(Action::Kill);
            return actions;
        }
        if let Some(t) = self.term_at {
            if now >= t {
                self.term_at = None;
                self.termed = true;
                actions.push(Action::Term);
            }
        }
        actions
    }

    /// When [`poll`](Self::poll) next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.killed.is_some() {
            return None;
        }
        Some(self.term_at.map_or(self.kill_at, |t| t.min(self.kill_at)))
    }

    /// SIGKILL now, whatever the sequence was waiting for (a second Ctrl-C). Sent again if it
    /// was sent already: the second signal asks for it.
    pub(crate) fn force_kill(&mut self) -> Vec<Action> {
        self.killed = Some(Killed::Forced);
        self.term_at = None;
        vec![Action::Kill]
    }

    /// Whether SIGKILL was sent, and why.
    pub(crate) fn killed(&self) -> Option<Killed> {
        self.killed
    }

    /// When the stop was requested.
    pub(crate) fn requested(&self) -> Instant {
        self.requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn channel_child_that_answers_gets_no_sigterm() {
        let t0 = Instant::now();
        let (mut s, a) = StopSequence::start(t0, 200 * MS, true);
        assert_eq!(a, vec![Action::SendStop]);
        assert_eq!(s.next_deadline(), Some(t0 + 50 * MS));
        s.stopping();
        assert_eq!(s.next_deadline(), Some(t0 + 200 * MS));
        assert!(s.poll(t0 + 199 * MS).is_empty());
        assert_eq!(s.poll(t0 + 200 * MS), vec![Action::Kill]);
        assert!(s.poll(t0 + 300 * MS).is_empty());
        assert!(!s.termed, "no SIGTERM at any point");
    }

    #[test]
    fn silent_channel_child_gets_sigterm_after_the_ack_window() {
        let t0 = Instant::now();
        let (mut s, _) = StopSequence::start(t0, 200 * MS, true);
        assert!(s.poll(t0 + 49 * MS).is_empty());
        assert_eq!(s.poll(t0 + 50 * MS), vec![Action::Term]);
        assert_eq!(s.poll(t0 + 200 * MS), vec![Action::Kill]);
    }

    #[test]
    fn short_kill_timeout_shortens_the_ack_window() {
        let t0 = Instant::now();
        let (s, _) = StopSequence::start(t0, 40 * MS, true);
        assert_eq!(s.next_deadline(), Some(t0 + 20 * MS));
    }

    #[test]
    fn no_channel_means_sigterm_at_once() {
        let (_, a) = StopSequence::start(Instant::now(), 200 * MS, false);
        assert_eq!(a, vec![Action::Term]);
    }

    #[test]
    fn zero_kill_timeout_kills_at_once() {
        let (mut s, a) = StopSequence::start(Instant::now(), Duration::ZERO, true);
        assert_eq!(a, vec![Action::Kill]);
        assert_eq!(s.next_deadline(), None);
        assert!(s.poll(Instant::now()).is_empty());
    }

    #[test]
    fn extend_moves_sigkill_up_to_the_cap() {
        let t0 = Instant::now();
        let (mut s, _) = StopSequence::start(t0, 200 * MS, true);
        s.stopping();
        assert_eq!(s.extend(t0 + 100 * MS, 500), t0 + 600 * MS);
        // A shorter extension never brings SIGKILL forward.
        assert_eq!(s.extend(t0 + 150 * MS, 10), t0 + 600 * MS);
        assert!(s.poll(t0 + 599 * MS).is_empty());
        assert_eq!(s.extend(t0 + 599 * MS, 3_600_000), t0 + 30_000 * MS);
        assert_eq!(s.poll(t0 + 30_000 * MS), vec![Action::Kill]);
    }

    #[test]
    fn term_answer_gets_sigterm_at_once_and_only_once() {
        let t0 = Instant::now();
        let (mut seq, actions) = StopSequence::start(t0, 200 * MS, true);
        assert_eq!(actions, vec![Action::SendStop]);
        assert_eq!(seq.term_requested(), vec![Action::Term]);
        assert!(seq.term_requested().is_empty());
        assert!(
            seq.poll(t0 + 60 * MS).is_empty(),
            "no second SIGTERM at the ack window"
        );
        assert_eq!(seq.poll(t0 + 200 * MS), vec![Action::Kill]);
    }

    #[test]
    fn sigkill_says_why_it_was_sent() {
        let t0 = Instant::now();
        let (mut s, _) = StopSequence::start(t0, 200 * MS, false);
        assert_eq!(s.killed(), None);
        s.poll(t0 + 250 * MS);
        assert_eq!(s.killed(), Some(Killed::At(t0 + 250 * MS)));
        assert_eq!(s.force_kill(), vec![Action::Kill]);
        assert_eq!(s.killed(), Some(Killed::Forced));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn lost_channel_falls_back_to_sigterm_once() {
        let t0 = Instant::now();
        let (mut s, _) = StopSequence::start(t0, 200 * MS, true);
        assert_eq!(s.channel_lost(), vec![Action::Term]);
        assert!(s.channel_lost().is_empty());
        assert!(s.poll(t0 + 60 * MS).is_empty());
        assert_eq!(s.poll(t0 + 200 * MS), vec![Action::Kill]);
    }
}
