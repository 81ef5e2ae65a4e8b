//! Start and stop order (`dependsOn`). A service is launched only once every service it names
//! is up: its process said `ready`, or it has run [`HELLO_WAIT`] without saying `hello` (a
//! program without an SDK cannot say `ready`, so running is all it can show). A service that
//! said `hello` is waited for until it says `ready`. A name no service has yet (a controller
//! may start the dependency later) keeps the dependent waiting; a config file is checked for
//! missing names and cycles before anything starts.
//!
//! When several services stop together (a shutdown, `stop` of all), each one's stop begins
//! once the services that depend on it and stop too are gone, all within one deadline: the
//! longest `killTimeout` of them from the request. A service whose turn comes late gets what is
//! left of that deadline as its `killTimeout`.
//!
//! A dependency that crashes does not restart its dependents.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use pm_child::protocol::StopReason;

use super::ServiceId;
use super::actor::Actor;
use super::effects::Effects;
use super::notes::Note;
use super::table::Run;
use super::timers::Timer;

/// How long a dependency that did not say `hello` runs before it counts as up.
pub(super) const HELLO_WAIT: Duration = Duration::from_secs(1);

/// Services whose stop waits for their dependents: for each, the reason, and the one deadline.
#[derive(Debug, Default)]
pub(super) struct HeldStops {
    held: BTreeMap<ServiceId, StopReason>,
    deadline: Option<Instant>,
}

impl<E: Effects> Actor<E> {
    /// The names of service `id`'s `dependsOn` that are not up at `now`.
    fn not_up(&self, id: ServiceId, now: Instant) -> Vec<String> {
        let Some(svc) = self.table.get(id) else {
            return Vec::new();
        };
        svc.spec
            .depends_on
            .iter()
            .filter(|name| {
                let mut named = self
                    .table
                    .services()
                    .filter(|s| s.spec.name.as_deref() == Some(name.as_str()))
                    .peekable();
                named.peek().is_none()
                    || !named.all(|s| {
                        s.proc.as_ref().is_some_and(|p| {
                            matches!(p.run, Run::Up { .. })
                                && (p.run.ready()
                                    || (!p.channel.speaks()
                                        && now.saturating_duration_since(p.started) >= HELLO_WAIT))
                        })
                    })
            })
            .cloned()
            .collect()
    }

    /// Whether service `id`'s launch must wait for its dependencies; says so once in its log.
    pub(super) fn hold_for_dependencies(&mut self, id: ServiceId) -> bool {
        let now = self.fx.now();
        let missing = self.not_up(id, now);
        let Some(svc) = self.table.get_mut(id) else {
            return false;
        };
        let changed = svc.guards.waiting_for != missing;
        svc.guards.waiting_for = missing;
        if svc.guards.waiting_for.is_empty() {
            return false;
        }
        if changed {
            let names = svc.guards.waiting_for.clone();
            self.note(id, &Note::WaitingFor(names));
        }
        true
    }

    /// A process was launched: services waiting for it look again once a dependency without
    /// `hello` counts as up.
    pub(super) fn dependency_launched(&mut self) {
        if self
            .table
            .services()
            .any(|s| !s.guards.waiting_for.is_empty())
        {
            let at = self.fx.now() + HELLO_WAIT;
            self.timers.at(at, Timer::Release);
        }
    }

    /// Launches the waiting services whose dependencies are all up now.
    pub(super) fn release_held(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let waiting: Vec<ServiceId> = self
            .table
            .services()
            .filter(|s| !s.guards.waiting_for.is_empty() && s.proc.is_none())
            .map(|s| s.id)
            .collect();
        // A stop request clears `waiting_for`: what is left was not asked to stay stopped.
        for id in waiting {
            self.launch(id);
        }
    }

    /// Stops `ids` (a shutdown, a stop of several): dependents first, within one deadline.
    /// Returns the numbers of the processes that will be stopped.
    pub(super) fn stop_ordered(&mut self, ids: &[ServiceId], reason: StopReason) -> Vec<u64> {
        let now = self.fx.now();
        let mut nums = Vec::new();
        let mut longest = Duration::ZERO;
        for &id in ids {
            let Some(svc) = self.table.get_mut(id) else {
                continue;
            };
            svc.guards.waiting_for.clear();
            let waiting = svc.life.state() == crate::service::lifecycle::State::Waiting;
            let has_proc = svc.proc.is_some();
            if !svc.life.stop_requested(has_proc) {
                if waiting {
                    self.note(id, &Note::RestartCancelled);
                }
                continue;
            }
            let Some(p) = svc.proc.as_ref() else { continue };
            nums.push(p.num);
            longest = longest.max(svc.spec.kill_timeout);
            self.held_stops.held.insert(id, reason);
        }
        if !self.held_stops.held.is_empty() {
            let deadline = now + longest;
            let d = self.held_stops.deadline.get_or_insert(deadline);
            *d = (*d).min(deadline);
            self.timers.at(*d, Timer::StopDeadline);
        }
        self.release_stops_now(true);
        nums
    }

    /// Begins the stops whose dependents are gone (after an exit).
    pub(super) fn release_stops(&mut self) {
        self.release_stops_now(false);
    }

    /// `at_request`: in the request's own turn, a stop that need not wait gets its whole
    /// `killTimeout` (which the deadline is the longest of); later ones what is left of it.
    fn release_stops_now(&mut self, at_request: bool) {
        if self.held_stops.held.is_empty() {
            return;
        }
        let now = self.fx.now();
        // Names of the services still running that stop too, or are stopping.
        let going: Vec<(ServiceId, Vec<String>)> = self
            .table
            .services()
            .filter(|s| {
                s.proc.as_ref().is_some_and(|p| {
                    self.held_stops.held.contains_key(&s.id) || matches!(p.run, Run::Stopping(_))
                })
            })
            .map(|s| (s.id, s.spec.depends_on.clone()))
            .collect();
        let needed: HashSet<&str> = going
            .iter()
            .flat_map(|(_, deps)| deps.iter().map(String::as_str))
            .collect();
        let free: Vec<(ServiceId, StopReason)> = self
            .held_stops
            .held
            .iter()
            .filter(|&(&id, _)| {
                self.table
                    .get(id)
                    .and_then(|s| s.spec.name.as_deref())
                    .is_none_or(|n| !needed.contains(n))
            })
            .map(|(&id, &r)| (id, r))
            .collect();
        let left = self
            .held_stops
            .deadline
            .filter(|_| !at_request)
            .map(|d| d.saturating_duration_since(now));
        for (id, reason) in free {
            self.held_stops.held.remove(&id);
            self.begin_stop_within(id, reason, left, false);
        }
        if self.held_stops.held.is_empty() {
            self.held_stops.deadline = None;
        }
    }

    /// The ordered stop's deadline: whatever still waits is stopped now (SIGKILL at once).
    pub(super) fn stop_deadline(&mut self) {
        let now = self.fx.now();
        if self.held_stops.deadline.is_some_and(|d| d > now) {
            return;
        }
        let held = std::mem::take(&mut self.held_stops.held);
        self.held_stops.deadline = None;
        for (id, reason) in held {
            self.begin_stop_within(id, reason, Some(Duration::ZERO), false);
        }
    }
}
