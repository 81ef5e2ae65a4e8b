//! The actor that owns the process table, and the [`Handle`] every front-end uses to talk to it
//! (the config file, the control fd, the CLI socket): one command interface — start a spec, stop
//! restart, delete or describe [`Services`], reload the config file, list, send — that the control channel adapts one-to-one.
//!
//! Everything that happens to a child (its exit, its channel messages, a stop deadline, a
//! restart falling due) arrives in the actor as an event. Signals are sent and exit statuses
//! reaped only by the actor, so a pid is never signalled after it has been reaped.
//!
//! Inside: `actor` holds the state and answers requests; `launching`, `stopping`, `exits` and
//! `messages` handle what happens to a process; `table` is the process table, each process's
//! channel and run state an enum of its own; `timers` and `waiters` are the deadlines and the
//! replies that wait; `notes` is what the supervisor writes about a service. What the
//! supervisor decides on its own about a running service has a module each, with small hooks in
//! the others: `watchdog` (`watchdogMs`), `memory` (`maxMemory`), `order` (`dependsOn`) and
//! `watching` (`watch`), their per-service state in `guards`. The actor acts on
//! the world only through `effects::Effects`: `system` implements it (and runs the event loop),
//! and the tests drive the actor with a stand-in, without processes.

mod actor;
mod api;
mod describe;
mod effects;
mod exits;
mod guards;
mod launching;
mod memory;
mod messages;
mod notes;
mod order;
mod reload;
mod stopping;
mod system;
mod table;
mod timers;
mod waiters;
mod watchdog;
mod watching;

#[cfg(test)]
mod tests;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use api::{
    ActionError, Description, EXITS_KEPT, Event, EventKind, ExitRecord, GuardRestart, LogLine,
    Reloaded, Rows, ServiceId, ServiceInfo, Services, State,
};
pub(crate) use api::{ServicesFields, message_event_envelope};

use crate::config::ServiceSpec;
use crate::runtime::Instance;

enum Request {
    Start {
        spec: Box<ServiceSpec>,
        await_ready: bool,
        reply: oneshot::Sender<Result<ServiceInfo, ActionError>>,
    },
    Stop(Services, oneshot::Sender<Rows>),
    Restart(Services, oneshot::Sender<Rows>),
    Delete(Services, oneshot::Sender<Rows>),
    Describe(
        Services,
        oneshot::Sender<Result<Vec<Description>, ActionError>>,
    ),
    /// The services of the config file, as it reads now.
    Reload(
        Vec<ServiceSpec>,
        oneshot::Sender<Result<Reloaded, ActionError>>,
    ),
    List(oneshot::Sender<Vec<ServiceInfo>>),
    Send(
        Services,
        serde_json::Value,
        oneshot::Sender<Result<usize, ActionError>>,
    ),
    Disconnect(Services, oneshot::Sender<Result<usize, ActionError>>),
    Logs(
        Services,
        usize,
        oneshot::Sender<Result<Vec<LogLine>, ActionError>>,
    ),
    Shutdown(oneshot::Sender<()>),
    KillAll,
}

/// How front-ends talk to the actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
    /// The config file `reload` reads again.
    config: Option<std::sync::Arc<std::path::Path>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl Handle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ActionError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ActionError::Gone)?;
        rx.await.map_err(|_| ActionError::Gone)
    }

    /// Adds a service and launches it; resolves once it is launched (or failed to launch, which
    /// its row says). `await_ready`: it shows as `starting` until it says `ready`.
    pub async fn start(
        &self,
        spec: ServiceSpec,
        await_ready: bool,
    ) -> Result<ServiceInfo, ActionError> {
        self.ask(|reply| Request::Start {
            spec: Box::new(spec),
            await_ready,
            reply,
        })
        .await?
    }

    /// Stops the selected services (cancelling pending restarts); resolves when their processes
    /// are gone.
    pub async fn stop(&self, which: Services) -> Rows {
        self.ask(|tx| Request::Stop(which, tx)).await?
    }

    /// Restarts the selected services (resetting their crash counts); resolves when the new
    /// processes are launched.
    pub async fn restart(&self, which: Services) -> Rows {
        self.ask(|tx| Request::Restart(which, tx)).await?
    }

    /// Stops the selected services and forgets them; resolves when their processes are gone,
    /// with their last rows.
    pub async fn delete(&self, which: Services) -> Rows {
        self.ask(|tx| Request::Delete(which, tx)).await?
    }

    /// Everything known about the selected services.
    pub async fn describe(&self, which: Services) -> Result<Vec<Description>, ActionError> {
        self.ask(|tx| Request::Describe(which, tx)).await?
    }

    /// Reads the config file again and brings the services in line with it, as
    /// `supervisorctl update` does: starts added services, stops and forgets removed ones,
    /// restarts changed ones. Resolves once the removed are gone and the changed relaunched.
    /// A file that cannot be used changes nothing.
    pub async fn reload(&self) -> Result<Reloaded, ActionError> {
        let path = self.config.clone().ok_or(ActionError::NoConfig)?;
        let config = tokio::task::spawn_blocking(move || crate::config::Config::load(&path))
            .await
            .map_err(|_| ActionError::Gone)?
            .map_err(|e| ActionError::BadConfig(e.to_string()))?;
        self.apply_config(config.services).await
    }

    /// Brings the services started from the config file in line with `services` (what
    /// [`reload`](Self::reload) does once the file is read; the first call starts them all).
    pub async fn apply_config(&self, services: Vec<ServiceSpec>) -> Result<Reloaded, ActionError> {
        self.ask(|tx| Request::Reload(services, tx)).await?
    }

    /// The process table.
    pub async fn list(&self) -> Result<Vec<ServiceInfo>, ActionError> {
        self.ask(Request::List).await
    }

    /// Sends `data` to the selected services; returns how many processes it was queued for.
    pub async fn send(
        &self,
        which: Services,
        data: serde_json::Value,
    ) -> Result<usize, ActionError> {
        self.ask(|tx| Request::Send(which, data, tx)).await?
    }

    /// Closes the channel of every running process of the selected services (the child sees
    /// its channel disconnect, as from a fork parent's `child.disconnect()`); returns how many
    /// were closed. The processes keep running, and are stopped by signals from now on.
    pub async fn disconnect(&self, which: Services) -> Result<usize, ActionError> {
        self.ask(|tx| Request::Disconnect(which, tx)).await?
    }

    /// The last `lines` lines (at most) kept in memory for the selected services whose output
    /// goes to the supervisor's stdout, oldest first across services; services with a log file
    /// have none (their file has them).
    pub async fn logs(&self, which: Services, lines: usize) -> Result<Vec<LogLine>, ActionError> {
        self.ask(|tx| Request::Logs(which, lines, tx)).await?
    }

    /// Stops everything and ends the actor; resolves when every process is gone and every log
    /// line written.
    pub async fn shutdown(&self) -> Result<(), ActionError> {
        self.ask(Request::Shutdown).await
    }

    /// Shuts down at once: every process group gets SIGKILL now (a second Ctrl-C), and the
    /// actor ends when they are gone, as after [`shutdown`](Self::shutdown).
    pub async fn kill_all(&self) {
        let _ = self.tx.send(Request::KillAll).await;
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// What the actor needs besides its requests.
#[derive(Debug)]
pub struct Options {
    /// Prefix of every service tag of this run (see `PM_SERVICE_TAG`).
    pub token: String,
    /// Runtime instance whose state file records the running groups.
    pub instance: Option<Instance>,
    /// Start a sentinel that cleans up if this process is SIGKILLed.
    pub sentinel: bool,
    /// The config file, which `reload` reads again (None: `reload` is refused).
    pub config: Option<std::path::PathBuf>,
}

/// Starts the actor on the current tokio runtime. The join handle resolves after a shutdown,
/// when every process is gone and every log line is written.
pub fn spawn(opts: Options) -> std::io::Result<(Handle, tokio::task::JoinHandle<()>)> {
    // Registered before any child exists, so that no exit can be missed.
    let sigchld = signal(SignalKind::child())?;
    let (tx, rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let (chan_tx, chan_rx) = mpsc::channel(1024);
    let config = opts.config.clone().map(std::sync::Arc::from);
    let fx = system::System::new(opts, chan_tx)?;
    let actor = actor::Actor::new(fx, events.clone());
    let join = tokio::spawn(system::run(actor, rx, sigchld, chan_rx));
    Ok((Handle { tx, events, config }, join))
}
