//! Watch mode (`watch`, `run --watch`): the watcher (`service::watch`, a thread of its own)
//! reports which services' files changed; a service is restarted once its files have been
//! quiet for [`DEBOUNCE`] (an editor's save, a `git checkout`, a build writing many files are
//! one restart). A service stopped on request is not started by a change; one that crashed or
//! exited is (the change may be the fix).

use std::time::Duration;

use super::ServiceId;
use super::actor::Actor;
use super::effects::Effects;
use super::notes::Note;
use super::timers::Timer;
use crate::service::lifecycle::State;

/// Quiet time after the last change before the restart.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(300);

impl<E: Effects> Actor<E> {
    /// Service `id` has `watch`: its paths are handed to the watcher.
    pub(super) fn start_watching(&mut self, id: ServiceId) {
        let Some(svc) = self.table.get(id) else {
            return;
        };
        let spec = svc.spec.clone();
        if let Err(e) = self.fx.watch(id, &spec) {
            self.note(id, &Note::CannotWatch(e));
        }
    }

    /// The watcher saw `path` of service `id` change.
    pub(super) fn files_changed(&mut self, id: ServiceId, path: String) {
        let now = self.fx.now();
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        let first = svc.guards.watch_due.is_none();
        let path = match svc.guards.watch_due.take() {
            Some((_, p)) => p,
            None => path,
        };
        svc.guards.watch_due = Some((now + DEBOUNCE, path));
        if first {
            self.timers.at(now + DEBOUNCE, Timer::Watch(id));
        }
    }

    /// The debounce of service `id` may be over.
    pub(super) fn watch_due(&mut self, id: ServiceId) {
        let now = self.fx.now();
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        let Some((due, path)) = svc.guards.watch_due.take() else {
            return;
        };
        if now < due {
            svc.guards.watch_due = Some((due, path));
            self.timers.at(due, Timer::Watch(id));
            return;
        }
        if self.shutdown.is_some() || matches!(svc.life.state(), State::Stopped | State::Stopping) {
            return;
        }
        self.note(id, &Note::FilesChanged(path.clone()));
        self.record_guard(id, "watch", path);
        // Folders created since are watched from now on.
        self.start_watching(id);
        let Some(svc) = self.table.get_mut(id) else {
            return;
        };
        if svc.life.restart_requested(svc.proc.is_some()) {
            self.begin_stop(id, pm_child::protocol::StopReason::Restart);
        } else {
            self.launch(id);
        }
    }
}
