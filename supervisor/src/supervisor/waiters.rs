//! Replies that wait for something to happen: a stop is answered once its processes are reaped
//! (and their strays swept), a restart once the new processes are launched.

use std::collections::HashSet;

use tokio::sync::oneshot;

use super::{ActionError, Reloaded, Rows, ServiceId};

/// What a pending reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum WaitFor {
    /// The process with this number is reaped.
    Reaped(u64),
    /// The service has launched (or failed to launch) a new process.
    Launched(ServiceId),
}

/// A reply waiting: for what, the services whose rows it carries, and the services to forget
/// once it is answered (a `delete`, the services a `reload` removes).
#[derive(Debug)]
pub(super) struct Waiter {
    pending: HashSet<WaitFor>,
    pub(super) services: Vec<ServiceId>,
    pub(super) forget: Vec<ServiceId>,
    pub(super) reply: Then,
}

/// How a waiting reply is answered.
#[derive(Debug)]
pub(super) enum Then {
    /// With the rows of its services.
    Rows(oneshot::Sender<Rows>),
    /// With what a reload did to each service.
    Reload(ReloadIds, oneshot::Sender<Result<Reloaded, ActionError>>),
}

/// What a reload did, by service id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ReloadIds {
    pub(super) added: Vec<ServiceId>,
    pub(super) changed: Vec<ServiceId>,
    pub(super) removed: Vec<ServiceId>,
    pub(super) unchanged: Vec<ServiceId>,
}

/// The waiting replies.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    list: Vec<Waiter>,
    /// While a round of reaping runs: what happened, settled after the round's sweep.
    deferred: Option<Vec<WaitFor>>,
}

impl Waiters {
    /// A reply to `reply` with the rows of `services` once everything in `pending` happened;
    /// given back when nothing is pending (to be answered now).
    pub(super) fn wait(
        &mut self,
        pending: HashSet<WaitFor>,
        services: Vec<ServiceId>,
        forget: Vec<ServiceId>,
        reply: Then,
    ) -> Option<Waiter> {
        let w = Waiter {
            pending,
            services,
            forget,
            reply,
        };
        if w.pending.is_empty() {
            return Some(w);
        }
        self.list.push(w);
        None
    }

    /// Something happened; returns the waiters it completed (none while deferring).
    pub(super) fn settle(&mut self, what: WaitFor) -> Vec<Waiter> {
        if let Some(later) = &mut self.deferred {
            later.push(what);
            return Vec::new();
        }
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            self.list[i].pending.remove(&what);
            if self.list[i].pending.is_empty() {
                done.push(self.list.swap_remove(i));
            } else {
                i += 1;
            }
        }
        done
    }

    /// Holds what happens from now on until [`resume`](Self::resume).
    pub(super) fn defer(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// Ends deferring: what happened meanwhile, to settle, and whether a reply waits for any
    /// of it.
    pub(super) fn resume(&mut self) -> (Vec<WaitFor>, bool) {
        let happened = self.deferred.take().unwrap_or_default();
        let awaited = self
            .list
            .iter()
            .any(|w| happened.iter().any(|h| w.pending.contains(h)));
        (happened, awaited)
    }
}
