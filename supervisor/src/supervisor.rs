//! The actor that owns the process table, and the [`Handle`] every front-end uses to talk to it
//! (the config file, the control fd, the CLI socket): one command interface — start a spec, stop
//! or restart a selector, list, send — that the control channel adapts one-to-one.
//!
//! Everything that happens to a child (its exit, its channel messages, a stop deadline, a
//! restart falling due) arrives in the actor as an event. Signals are sent and exit statuses
//! reaped only by the actor, so a pid is never signalled after it has been reaped.

mod actor;

use std::time::SystemTime;

use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::ServiceSpec;
pub use crate::lifecycle::State;
use crate::runtime::Instance;

/// Identifies a service for the life of the supervisor (across restarts of its process).
pub type ServiceId = u64;

/// Which services an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every service.
    All,
    /// Every service with this name. A nameless service is never selected by name.
    Name(String),
    /// One service.
    Id(ServiceId),
}

/// A row of the process table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    /// Service id.
    pub id: ServiceId,
    /// Its name, if any.
    pub name: Option<String>,
    /// Pid of its current process.
    pub pid: Option<i32>,
    /// State.
    pub state: State,
    /// Whether the current process said it is ready.
    pub ready: bool,
    /// Processes launched after the first one.
    pub restarts: u32,
    /// Crashes in a row.
    pub crashes: u32,
    /// Milliseconds since the current process started.
    pub uptime_ms: Option<u64>,
    /// Milliseconds until a pending restart.
    pub restart_in_ms: Option<u64>,
    /// How the last process ended (`exit code 1`, `signal SIGKILL`).
    pub last_exit: Option<String>,
    /// Why the last launch failed.
    pub error: Option<String>,
    /// Resident memory of the current process, in bytes (Linux).
    pub memory: Option<u64>,
    /// Its log file (None: the supervisor's stdout).
    pub log: Option<std::path::PathBuf>,
}

/// Something that happened to a service.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When.
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    /// Service id.
    #[serde(rename = "service")]
    pub id: ServiceId,
    /// Its name.
    pub name: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, with its details.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A process started.
    Started {
        /// Pid.
        pid: i32,
    },
    /// The process said it is ready.
    Ready {
        /// Pid.
        pid: i32,
    },
    /// A stop began.
    Stopping {
        /// Pid.
        pid: i32,
        /// `stop`, `restart` or `shutdown`.
        reason: pm_child::protocol::StopReason,
    },
    /// A process ended.
    Exited {
        /// Pid.
        pid: i32,
        /// `exit code 0`, `signal SIGKILL`.
        exit: String,
        /// Whether it was asked to stop.
        requested: bool,
        /// Milliseconds it ran.
        uptime_ms: u64,
    },
    /// A launch failed.
    LaunchFailed {
        /// Why.
        error: String,
    },
    /// A crashed service will be started again.
    Restarting {
        /// In this many milliseconds.
        in_ms: u64,
        /// Crashes in a row.
        crashes: u32,
    },
    /// A child sent application data.
    Message {
        /// Pid.
        pid: i32,
        /// The data, exactly as the child sent it.
        data: serde_json::Value,
    },
}

/// Bytes of a `message` event of service `id` (named `name`) for process `pid` on the control
/// channel, without its data: what a child's data may add before the event would pass the
/// line limit. The control channel writes an event as this serialization with `"type":"event"`
/// added; the time is always 24 characters.
pub(crate) fn message_event_envelope(id: ServiceId, name: Option<&str>, pid: i32) -> usize {
    let event = Event {
        time: SystemTime::now(),
        id,
        name: name.map(str::to_owned),
        kind: EventKind::Message {
            pid,
            data: serde_json::Value::Null,
        },
    };
    let len = serde_json::to_vec(&event).map_or(0, |v| v.len());
    len - "null".len() + r#","type":"event""#.len()
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::log_writer::timestamp(*t))
}

/// Why an action was not carried out.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionError {
    /// No service matches.
    #[error("no service named {0:?}")]
    NoSuchService(String),
    /// The supervisor is shutting down and starts nothing new.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    /// The actor has ended.
    #[error("the supervisor has shut down")]
    Gone,
    /// Data for a child that is an object whose `cmd` starts with `NODE_`: that form is reserved
    /// for Node's and pm's own messages, which a Node child would act on.
    #[error(
        "data: an object whose \"cmd\" starts with \"NODE_\" is reserved for Node's and pm's own messages"
    )]
    ReservedData,
    /// Data for a child that is longer than a channel line may be, once serialized.
    #[error("data: {0} bytes of JSON, more than the 1048576 bytes a channel line may hold")]
    TooLarge(usize),
}

/// The reply to an action on a selector: the rows of the services it applied to.
pub type Rows = Result<Vec<ServiceInfo>, ActionError>;

enum Request {
    Start {
        spec: Box<ServiceSpec>,
        await_ready: bool,
        reply: oneshot::Sender<Result<ServiceInfo, ActionError>>,
    },
    Stop(Selector, oneshot::Sender<Rows>),
    Restart(Selector, oneshot::Sender<Rows>),
    List(oneshot::Sender<Vec<ServiceInfo>>),
    Send(
        Selector,
        serde_json::Value,
        oneshot::Sender<Result<usize, ActionError>>,
    ),
    Disconnect(Selector, oneshot::Sender<Result<usize, ActionError>>),
    Shutdown(oneshot::Sender<()>),
    KillAll,
}

/// How front-ends talk to the actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
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
    pub async fn stop(&self, sel: Selector) -> Rows {
        self.ask(|tx| Request::Stop(sel, tx)).await?
    }

    /// Restarts the selected services (resetting their crash counts); resolves when the new
    /// processes are launched.
    pub async fn restart(&self, sel: Selector) -> Rows {
        self.ask(|tx| Request::Restart(sel, tx)).await?
    }

    /// The process table.
    pub async fn list(&self) -> Result<Vec<ServiceInfo>, ActionError> {
        self.ask(Request::List).await
    }

    /// Sends `data` to the selected services; returns how many processes it was queued for.
    pub async fn send(&self, sel: Selector, data: serde_json::Value) -> Result<usize, ActionError> {
        self.ask(|tx| Request::Send(sel, data, tx)).await?
    }

    /// Closes the channel of every running process of the selected services (the child sees
    /// its channel disconnect, as from a fork parent's `child.disconnect()`); returns how many
    /// were closed. The processes keep running, and are stopped by signals from now on.
    pub async fn disconnect(&self, sel: Selector) -> Result<usize, ActionError> {
        self.ask(|tx| Request::Disconnect(sel, tx)).await?
    }

    /// Stops everything and ends the actor; resolves when every process is gone and every log
    /// line written.
    pub async fn shutdown(&self) -> Result<(), ActionError> {
        self.ask(Request::Shutdown).await
    }

    /// SIGKILLs every process group now (a second Ctrl-C).
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
    /// Prefix of every service tag of this run (see [`crate::launch::ENV_SERVICE_TAG`]).
    pub token: String,
    /// Runtime instance whose state file records the running groups.
    pub instance: Option<Instance>,
    /// Start a sentinel that cleans up if this process is SIGKILLed.
    pub sentinel: bool,
}

/// Starts the actor on the current tokio runtime. The join handle resolves after a shutdown,
/// when every process is gone and every log line is written.
pub fn spawn(opts: Options) -> std::io::Result<(Handle, tokio::task::JoinHandle<()>)> {
    // Registered before any child exists, so that no exit can be missed.
    let sigchld = signal(SignalKind::child())?;
    let (tx, rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let actor = actor::Actor::new(opts, events.clone())?;
    let join = tokio::spawn(actor.run(rx, sigchld));
    Ok((Handle { tx, events }, join))
}
