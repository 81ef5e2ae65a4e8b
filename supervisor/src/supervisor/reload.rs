//! `reload`: the services started from the config file brought in line with the file as it
//! reads now, as `supervisorctl update` does. [`plan`] decides (a pure function, tested
//! alone); the actor carries the plan out.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use pm_child::protocol::StopReason;
use tokio::sync::oneshot;

use super::actor::Actor;
use super::effects::Effects;
use super::waiters::{ReloadIds, Then, WaitFor};
use super::{ActionError, Reloaded, ServiceId};
use crate::config::ServiceSpec;
use crate::service::restart_policy::RestartPolicy;

/// What a reload does.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// New services, in file order.
    pub(super) add: Vec<ServiceSpec>,
    /// Services whose spec changed, with the new spec.
    pub(super) change: Vec<(ServiceId, ServiceSpec)>,
    /// Services no longer in the file.
    pub(super) remove: Vec<ServiceId>,
    /// Services that stay as they are.
    pub(super) keep: Vec<ServiceId>,
}

/// Matches the file's services with the running ones: a named service by its name (the k-th
/// service of a name in the file is the k-th one running, as names may repeat); a nameless one
/// only by an identical spec (it has nothing else to be known by), so a changed nameless service
/// is removed and added.
pub(super) fn plan(current: &[(ServiceId, &ServiceSpec)], wanted: Vec<ServiceSpec>) -> Plan {
    let mut p = Plan::default();
    let mut by_name: BTreeMap<&str, std::collections::VecDeque<(ServiceId, &ServiceSpec)>> =
        BTreeMap::new();
    let mut nameless: Vec<(ServiceId, &ServiceSpec)> = Vec::new();
    for &(id, spec) in current {
        match spec.name.as_deref() {
            Some(n) => by_name.entry(n).or_default().push_back((id, spec)),
            None => nameless.push((id, spec)),
        }
    }
    for spec in wanted {
        let found = match spec.name.as_deref() {
            Some(n) => by_name.get_mut(n).and_then(|q| q.pop_front()),
            None => nameless
                .iter()
                .position(|(_, s)| **s == spec)
                .map(|i| nameless.remove(i)),
        };
        match found {
            Some((id, old)) if *old == spec => p.keep.push(id),
            Some((id, _)) => p.change.push((id, spec)),
            None => p.add.push(spec),
        }
    }
    p.remove = by_name
        .into_values()
        .flatten()
        .chain(nameless)
        .map(|(id, _)| id)
        .collect();
    p.remove.sort_unstable();
    p
}

impl<E: Effects> Actor<E> {
    /// Carries out a reload to `wanted`; the reply comes once the removed services are gone and
    /// the changed ones relaunched.
    pub(super) fn reload(
        &mut self,
        wanted: Vec<ServiceSpec>,
        reply: oneshot::Sender<Result<Reloaded, ActionError>>,
    ) {
        if self.shutdown.is_some() {
            let _ = reply.send(Err(ActionError::ShuttingDown));
            return;
        }
        let current: Vec<(ServiceId, Arc<ServiceSpec>)> = self
            .table
            .services()
            .filter(|s| s.configured && !s.deleting)
            .map(|s| (s.id, s.spec.clone()))
            .collect();
        let refs: Vec<(ServiceId, &ServiceSpec)> =
            current.iter().map(|(id, s)| (*id, &**s)).collect();
        let plan = plan(&refs, wanted);
        let mut ids = ReloadIds {
            removed: plan.remove.clone(),
            unchanged: plan.keep,
            ..ReloadIds::default()
        };
        let mut pending: HashSet<WaitFor> = self.remove_services(&plan.remove);
        let mut launch_now = Vec::new();
        for (id, spec) in plan.change {
            let new_log = self
                .table
                .get(id)
                .is_some_and(|s| s.spec.log != spec.log)
                .then(|| self.fx.open_log(&spec));
            let Some(svc) = self.table.get_mut(id) else {
                continue;
            };
            svc.life
                .set_policy(RestartPolicy::new(&spec.restart_at, spec.restart_ok));
            // What it watches follows its new `watch` (and its new log, which is ignored).
            let watch_changed = svc.spec.watch != spec.watch || svc.spec.log != spec.log;
            let (was_watched, watched) = (!svc.spec.watch.is_empty(), !spec.watch.is_empty());
            svc.spec = Arc::new(spec);
            if let Some(log) = new_log {
                svc.log = log;
            }
            if watch_changed && watched {
                self.start_watching(id);
            } else if watch_changed && was_watched {
                self.fx.unwatch(id);
            }
            let Some(svc) = self.table.get_mut(id) else {
                continue;
            };
            ids.changed.push(id);
            pending.insert(WaitFor::Launched(id));
            if svc.life.restart_requested(svc.proc.is_some()) {
                self.begin_stop(id, StopReason::Restart);
            } else {
                launch_now.push(id);
            }
        }
        for spec in plan.add {
            let id = self.add_service(spec, false);
            if let Some(svc) = self.table.get_mut(id) {
                svc.configured = true;
            }
            ids.added.push(id);
        }
        let removed = ids.removed.clone();
        let mut services = Vec::new();
        services.extend(ids.added.iter().chain(&ids.changed).chain(&ids.removed));
        // The waiter first: the launches below settle it.
        self.wait(pending, services, removed, Then::Reload(ids, reply));
        for id in launch_now {
            self.launch(id);
        }
    }
}
