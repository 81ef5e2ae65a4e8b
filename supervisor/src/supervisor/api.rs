//! The types of the actor's interface: which services an action applies to, the rows and events
//! it answers with, and why it refuses.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use crate::service::lifecycle::State;

/// Identifies a service for the life of the supervisor (across restarts of its process).
pub type ServiceId = u64;

/// Which services an action applies to. On the control channel, exactly one of `"name": "web"`,
/// `"service": 3` or `"all": true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ServicesFields", into = "ServicesFields")]
pub enum Services {
    /// `"name"`: every service with this name (a nameless service is never selected by name).
    Named(String),
    /// `"service"`: the service with this id (a row's `id`, an event's `service`).
    Id(ServiceId),
    /// `"all": true`: every service.
    All,
}

/// How a [`Services`] is written (also inside a `send` request).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServicesFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<ServiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) all: Option<bool>,
}

impl TryFrom<ServicesFields> for Services {
    type Error = String;

    fn try_from(f: ServicesFields) -> Result<Services, String> {
        match (f.name, f.service, f.all) {
            (Some(n), None, None) => Ok(Services::Named(n)),
            (None, Some(id), None) => Ok(Services::Id(id)),
            (None, None, Some(true)) => Ok(Services::All),
            _ => Err(
                "give exactly one of \"name\" (a service name), \"service\" (a service id) or \"all\": true"
                    .into(),
            ),
        }
    }
}

impl From<Services> for ServicesFields {
    fn from(t: Services) -> ServicesFields {
        match t {
            Services::Named(n) => ServicesFields {
                name: Some(n),
                ..ServicesFields::default()
            },
            Services::Id(id) => ServicesFields {
                service: Some(id),
                ..ServicesFields::default()
            },
            Services::All => ServicesFields {
                all: Some(true),
                ..ServicesFields::default()
            },
        }
    }
}

/// A row of the process table (`ls`, and the answer to most requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Identifies the service for the life of the supervisor.
    pub id: ServiceId,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Pid of its current process.
    pub pid: Option<i32>,
    /// What the service is doing.
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
    /// Resident memory of the current process's group (the process and every descendant that
    /// stayed in its group), in bytes (Linux).
    pub memory: Option<u64>,
    /// CPU use of the current process's group, in percent of one core, since the previous
    /// sample (the previous `list` or `describe`; the first one covers the time since the
    /// process started). Above 100 when several cores are busy (Linux).
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Its log file (None: the supervisor's stdout).
    pub log: Option<std::path::PathBuf>,
    /// Its `watchdogMs`, if it has a watchdog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_ms: Option<u64>,
    /// Its `maxMemory` in bytes, if it has a memory ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    /// Its `dependsOn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The services of `dependsOn` that are not up yet, while it waits for them to start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Whether watch mode restarts it when its files change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watch: bool,
    /// Times the watchdog found it hung (and restarted it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hangs: u32,
    /// Times it was restarted for staying above `maxMemory`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_restarts: u32,
    /// The last restart the supervisor decided on its own, and when: `hung`, `memory` or
    /// `watch`, with the time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_guard: Option<GuardRestart>,
}

/// A restart the supervisor decided on its own (a row's `last_guard`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardRestart {
    /// `hung`, `memory` or `watch`.
    pub why: String,
    /// When (RFC 3339 with milliseconds, UTC).
    pub time: String,
    /// What it saw: `no heartbeat for 1040 ms`, `RSS 612.0 MiB`, `src/app.js`.
    pub detail: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One process of a service that ended: when, how, and how long it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// When it was reaped (RFC 3339, UTC).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub time: SystemTime,
    /// Its pid.
    pub pid: i32,
    /// `exit code 1`, `signal SIGKILL`.
    pub exit: String,
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it (`SIGKILL`), when one did.
    pub signal: Option<String>,
    /// Whether a stop or restart was asked for.
    pub requested: bool,
    /// How long it ran.
    pub uptime_ms: u64,
}

/// Everything known about one service (`describe`): its row, its spec, since when it is in its
/// state, the pids of its process group, and its last exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// Its row, as `list` gives it.
    #[serde(flatten)]
    pub row: ServiceInfo,
    /// Since when it is in its `state` (RFC 3339, UTC).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub since: SystemTime,
    /// When its current process started.
    #[serde(
        default,
        serialize_with = "serialize_opt_time",
        deserialize_with = "deserialize_opt_time"
    )]
    pub started: Option<SystemTime>,
    /// The pids of its current process group (the process first).
    pub pids: Vec<i32>,
    /// Its last exits, the latest last (at most [`EXITS_KEPT`]).
    pub exits: Vec<ExitRecord>,
    /// The spec it runs, as a config file would write it, with paths resolved and defaults
    /// filled in.
    pub spec: serde_json::Value,
}

/// How many exits a service remembers for `describe`.
pub const EXITS_KEPT: usize = 5;

/// What a `reload` did, by service: the services it started, the ones whose spec changed (and
/// were restarted), the ones removed (stopped and forgotten), and the ones left as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    /// In the file, not in the supervisor: started.
    pub added: Vec<ServiceInfo>,
    /// Changed in the file: restarted with the new spec.
    pub changed: Vec<ServiceInfo>,
    /// Gone from the file: stopped and forgotten (their last rows).
    pub removed: Vec<ServiceInfo>,
    /// The same in the file: left alone.
    pub unchanged: Vec<ServiceInfo>,
}

/// Something that happened to a service: `{"time": ..., "service": 3, "name": "web", "event":
/// "started", "pid": 4242}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (RFC 3339 with milliseconds, UTC).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub time: SystemTime,
    /// The service's id (`service` on the wire).
    #[serde(rename = "service")]
    pub id: ServiceId,
    /// The service's name, if it has one.
    pub name: Option<String>,
    /// What happened (`event` on the wire, with its details).
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, with its details; `pid` is the process it happened to. Each variant's
/// documentation names its fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum EventKind {
    /// A process started.
    Started { pid: i32 },
    /// The process said it is ready.
    Ready { pid: i32 },
    /// A stop began, for a `reason`: `stop`, `restart` or `shutdown`.
    Stopping {
        pid: i32,
        reason: pm_child::protocol::StopReason,
    },
    /// A process ended: how (`exit`: `exit code 0`, `signal SIGKILL`), whether it was asked to
    /// stop (`requested`), and how long it ran (`uptime_ms`).
    Exited {
        pid: i32,
        exit: String,
        requested: bool,
        uptime_ms: u64,
    },
    /// A launch failed, with the `error`.
    LaunchFailed { error: String },
    /// A crashed service will be started again in `in_ms` milliseconds, after `crashes` crashes
    /// in a row.
    Restarting { in_ms: u64, crashes: u32 },
    /// A child sent application `data`, exactly as it sent it.
    Message { pid: i32, data: serde_json::Value },
    /// The watchdog found the process hung: no heartbeat for `silence_ms` (more than
    /// `watchdog_ms`). It is stopped and restarted on its `restartAt` schedule.
    Hung {
        pid: i32,
        silence_ms: u64,
        watchdog_ms: u64,
    },
    /// The process group's resident memory (`rss`, bytes) stayed above `max_memory` for
    /// `for_ms`: it is stopped and restarted on its `restartAt` schedule.
    Memory {
        pid: i32,
        rss: u64,
        max_memory: u64,
        for_ms: u64,
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
    s.serialize_str(&crate::logs::lines::timestamp(*t))
}

fn serialize_opt_time<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_time(t, s),
        None => s.serialize_none(),
    }
}

fn deserialize_opt_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SystemTime>, D::Error> {
    let text = Option::<std::borrow::Cow<str>>::deserialize(d)?;
    text.map(|t| humantime::parse_rfc3339(&t).map_err(serde::de::Error::custom))
        .transpose()
}

fn deserialize_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(d)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

/// Why an action was not carried out.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionError {
    /// No service matches (a name or an id; `all` always matches).
    #[error("{}", no_such(.0))]
    NoSuchService(Services),
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
    /// `reload` on a supervisor that was not started from a config file.
    #[error("this supervisor runs no config file (it was started without one): nothing to reload")]
    NoConfig,
    /// `reload` found the config file unusable; nothing was changed.
    #[error("{0}; nothing was changed")]
    BadConfig(String),
    /// Data for a child that is longer than a channel line may be, once serialized.
    #[error("data: {0} bytes of JSON, more than the 1048576 bytes a channel line may hold")]
    TooLarge(usize),
}

/// The reply to an action on a selector: the rows of the services it applied to.
pub type Rows = Result<Vec<ServiceInfo>, ActionError>;

fn no_such(s: &Services) -> String {
    match s {
        Services::Named(n) => format!("no service named {n:?}"),
        Services::Id(id) => format!("no service with id {id}"),
        Services::All => "no services".into(),
    }
}

/// A log line as the `logs` request answers it, and as `pm-supervisor logs --json` writes it:
/// `{"time": "2026-11-26T12:21:02.123Z", "service": "web", "stream": "out", "text": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the supervisor read it (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The service's label: its name, or its pid for a nameless service.
    pub service: String,
    /// `out`, `err`, or `pm` (the supervisor's own lines about the service).
    pub stream: String,
    /// The line as written, without its `\n`; bytes that are not UTF-8 as U+FFFD.
    pub text: String,
    /// A part of a line longer than 64 KiB, continued by the next line of the same service and
    /// stream (written only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}

impl LogLine {
    pub(crate) fn from_recent(r: crate::logs::ring::Recent, service: &str) -> LogLine {
        LogLine {
            time: crate::logs::lines::timestamp(r.time),
            service: service.to_owned(),
            stream: r.stream.name().to_owned(),
            text: r.text.into(),
            continued: r.continued,
        }
    }
}
