//! A service's lifecycle as a pure state machine: which state it is in, whether a crash is
//! followed by a restart and when, and what stop and restart requests do to a pending restart.
//! The actor feeds it events with their times and carries out what it answers; the tests drive
//! it with made-up instants, so hours of schedule take microseconds.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::restart_policy::RestartPolicy;

/// The state a service shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its process runs but was asked to report `ready` and has not yet.
    Starting,
    /// Its process runs.
    Running,
    /// A stop (or the stop half of a restart) is in progress.
    Stopping,
    /// It crashed and waits for its restart.
    Waiting,
    /// Stopped on request.
    Stopped,
    /// It exited on its own and its schedule says never restart.
    Exited,
    /// It could not be launched and its schedule says never restart.
    Failed,
}

/// What the actor does after an exit or a launch failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterExit {
    /// Nothing more: the service stays stopped, exited or failed.
    Rest,
    /// Launch again now (the second half of a requested restart).
    LaunchNow,
    /// Launch again at this time (crash restart).
    LaunchAt {
        at: Instant,
        /// How long from the exit.
        delay: Duration,
        /// Crashes in a row, this one included.
        crashes: u32,
    },
}

/// One service's lifecycle.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    policy: RestartPolicy,
    state: State,
    /// Crashes in a row.
    crashes: u32,
    /// Processes launched after the first one.
    restarts: u32,
    launches: u32,
    restart_at: Option<Instant>,
    /// The current stop is the first half of a restart.
    restarting: bool,
    /// Launches report `starting` until the process says `ready`.
    await_ready: bool,
}

impl Lifecycle {
    /// A service not launched yet.
    pub(crate) fn new(policy: RestartPolicy, await_ready: bool) -> Lifecycle {
        Lifecycle {
            policy,
            state: State::Stopped,
            crashes: 0,
            restarts: 0,
            launches: 0,
            restart_at: None,
            restarting: false,
            await_ready,
        }
    }

    /// A new restart schedule (a reloaded spec's), from the next crash on.
    pub(crate) fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    /// The visible state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Crashes in a row.
    pub(crate) fn crashes(&self) -> u32 {
        self.crashes
    }

    /// Processes launched after the first one.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }

    /// When a pending restart is due.
    pub(crate) fn restart_at(&self) -> Option<Instant> {
        self.restart_at
    }

    /// A process was launched.
    pub(crate) fn launched(&mut self) {
        if self.launches > 0 {
            self.restarts += 1;
        }
        self.launches += 1;
        self.restart_at = None;
        self.restarting = false;
        self.state = if self.await_ready {
            State::Starting
        } else {
            State::Running
        };
    }

    /// The process said `ready`.
    pub(crate) fn ready(&mut self) {
        if self.state == State::Starting {
            self.state = State::Running;
        }
    }

    /// A launch failed at `now`: like a crash without uptime.
    pub(crate) fn launch_failed(&mut self, now: Instant) -> AfterExit {
        if self.launches > 0 {
            self.restarts += 1;
        }
        self.launches += 1;
        self.restarting = false;
        self.crashed(now, Duration::ZERO, State::Failed)
    }

    /// The process exited at `now` after `uptime`. `requested`: a stop was in progress.
    pub(crate) fn exited(&mut self, now: Instant, uptime: Duration, requested: bool) -> AfterExit {
        if requested {
            self.restart_at = None;
            if std::mem::take(&mut self.restarting) {
                self.state = State::Starting;
                return AfterExit::LaunchNow;
            }
            self.state = State::Stopped;
            return AfterExit::Rest;
        }
        self.crashed(now, uptime, State::Exited)
    }

    fn crashed(&mut self, now: Instant, uptime: Duration, resting: State) -> AfterExit {
        let d = self.policy.on_crash(self.crashes, uptime);
        self.crashes = d.crashes;
        match d.delay {
            Some(delay) => {
                let at = now + delay;
                self.restart_at = Some(at);
                self.state = State::Waiting;
                AfterExit::LaunchAt {
                    at,
                    delay,
                    crashes: d.crashes,
                }
            }
            None => {
                self.restart_at = None;
                self.state = resting;
                AfterExit::Rest
            }
        }
    }

    /// A pending restart's time came: launch if it is still pending.
    pub(crate) fn restart_due(&mut self, now: Instant) -> bool {
        match self.restart_at {
            Some(at) if now >= at => {
                self.restart_at = None;
                true
            }
            _ => false,
        }
    }

    /// A stop was requested. Cancels a pending restart. Returns whether a process must be stopped
    /// (`has_process`).
    pub(crate) fn stop_requested(&mut self, has_process: bool) -> bool {
        self.restart_at = None;
        self.restarting = false;
        if has_process {
            self.state = State::Stopping;
        } else {
            self.state = State::Stopped;
        }
        has_process
    }

    /// A restart was requested: the crash count starts over. With a process, stop it first and
    /// launch when it is gone (returns true); without one, launch now (returns false).
    pub(crate) fn restart_requested(&mut self, has_process: bool) -> bool {
        self.crashes = 0;
        self.restart_at = None;
        if has_process {
            self.restarting = true;
            self.state = State::Stopping;
        }
        has_process
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_RESTART_AT, DEFAULT_RESTART_OK_MS};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn default_life() -> Lifecycle {
        Lifecycle::new(
            RestartPolicy::new(&DEFAULT_RESTART_AT, ms(DEFAULT_RESTART_OK_MS)),
            false,
        )
    }

    /// Crash-loops a service on a made-up clock: each process runs `uptime`, then crashes; the
    /// restart happens exactly when due. Returns the delays between each crash and the next
    /// launch, and the clock at the end.
    fn crash_loop(
        life: &mut Lifecycle,
        t0: Instant,
        rounds: usize,
        uptime: Duration,
    ) -> (Vec<u64>, Instant) {
        let mut now = t0;
        let mut delays = Vec::new();
        life.launched();
        for _ in 0..rounds {
            now += uptime;
            match life.exited(now, uptime, false) {
                AfterExit::LaunchAt { at, delay, .. } => {
                    assert_eq!(life.state(), State::Waiting);
                    assert!(!life.restart_due(at - ms(1)), "never early");
                    assert!(life.restart_due(at));
                    delays.push(delay.as_millis() as u64);
                    now = at;
                    life.launched();
                }
                other => panic!("expected a restart, got {other:?}"),
            }
        }
        (delays, now)
    }

    #[test]
    fn a_crash_loop_follows_the_whole_default_schedule() {
        let mut life = default_life();
        let t0 = Instant::now();
        let (delays, end) = crash_loop(&mut life, t0, 11, ms(5));
        assert_eq!(
            delays,
            [
                100, 500, 1_000, 10_000, 30_000, 60_000, 300_000, 900_000, 900_000, 900_000,
                900_000
            ]
        );
        assert_eq!(life.restarts(), 11);
        assert_eq!(life.crashes(), 11);
        // Four 15-minute waits in the tail: more than an hour of schedule, simulated.
        assert!(end - t0 > Duration::from_secs(3600));
    }

    #[test]
    fn running_restart_ok_long_starts_the_row_again() {
        let mut life = default_life();
        let t0 = Instant::now();
        let (_, now) = crash_loop(&mut life, t0, 4, ms(5));
        assert_eq!(life.crashes(), 4);
        // This process runs 30 minutes before it crashes: a first crash again.
        let later = now + ms(DEFAULT_RESTART_OK_MS);
        match life.exited(later, ms(DEFAULT_RESTART_OK_MS), false) {
            AfterExit::LaunchAt { delay, crashes, .. } => {
                assert_eq!((delay, crashes), (ms(100), 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stop_cancels_a_pending_restart() {
        let mut life = default_life();
        let t0 = Instant::now();
        life.launched();
        let AfterExit::LaunchAt { at, .. } = life.exited(t0, ms(5), false) else {
            panic!("restart expected")
        };
        assert!(!life.stop_requested(false), "no process to stop");
        assert_eq!(life.state(), State::Stopped);
        assert!(!life.restart_due(at + ms(1)), "the restart was cancelled");
    }

    #[test]
    fn a_manual_restart_resets_the_count_and_cancels_the_pending_one() {
        let mut life = default_life();
        let t0 = Instant::now();
        crash_loop(&mut life, t0, 3, ms(5));
        let AfterExit::LaunchAt { at, .. } = life.exited(t0, ms(5), false) else {
            panic!("restart expected")
        };
        assert_eq!(life.crashes(), 4);
        // Waiting, no process: a manual restart launches at once.
        assert!(!life.restart_requested(false));
        assert!(!life.restart_due(at), "pending restart cancelled");
        life.launched();
        assert_eq!(life.crashes(), 0);
        match life.exited(t0, ms(5), false) {
            AfterExit::LaunchAt { delay, crashes, .. } => {
                assert_eq!((delay, crashes), (ms(100), 1))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_restart_of_a_running_service_stops_then_launches() {
        let mut life = default_life();
        life.launched();
        assert!(life.restart_requested(true));
        assert_eq!(life.state(), State::Stopping);
        assert_eq!(
            life.exited(Instant::now(), ms(5), true),
            AfterExit::LaunchNow
        );
        life.launched();
        assert_eq!(life.state(), State::Running);
        assert_eq!(life.restarts(), 1);
    }

    #[test]
    fn a_requested_stop_is_not_a_crash() {
        let mut life = default_life();
        life.launched();
        assert!(life.stop_requested(true));
        assert_eq!(life.exited(Instant::now(), ms(5), true), AfterExit::Rest);
        assert_eq!((life.state(), life.crashes()), (State::Stopped, 0));
    }

    #[test]
    fn never_restart_leaves_exited_or_failed() {
        for at in [&[][..], &[0][..]] {
            let mut life = Lifecycle::new(RestartPolicy::new(at, ms(1000)), false);
            life.launched();
            assert_eq!(life.exited(Instant::now(), ms(5), false), AfterExit::Rest);
            assert_eq!(life.state(), State::Exited);
            assert_eq!(life.launch_failed(Instant::now()), AfterExit::Rest);
            assert_eq!(life.state(), State::Failed);
        }
    }

    #[test]
    fn launch_failures_follow_the_schedule() {
        let mut life = Lifecycle::new(RestartPolicy::new(&[100, 400], ms(1000)), false);
        let t0 = Instant::now();
        let a = life.launch_failed(t0);
        let b = life.launch_failed(t0);
        let c = life.launch_failed(t0);
        let delays: Vec<_> = [a, b, c]
            .iter()
            .map(|x| match x {
                AfterExit::LaunchAt { delay, .. } => delay.as_millis(),
                _ => 0,
            })
            .collect();
        assert_eq!(delays, [100, 400, 400]);
        assert_eq!(life.state(), State::Waiting);
    }

    #[test]
    fn starting_until_ready_when_asked() {
        let mut life = Lifecycle::new(RestartPolicy::new(&[100], ms(1000)), true);
        life.launched();
        assert_eq!(life.state(), State::Starting);
        life.ready();
        assert_eq!(life.state(), State::Running);
    }
}
