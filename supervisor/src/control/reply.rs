//! What the supervisor writes to a controller: replies, events and the `fatal` message.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RequestId, encode};
use crate::supervisor::{
    Description, Event as ServiceEvent, LogLine, Reloaded, ServiceInfo as Row,
};

/// Why a request failed: a reply's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not an object, no `type`, no `id`, a field of the wrong type or unknown, an unknown
    /// `type`, reserved or too long `send` data, a line too long or not JSON.
    BadRequest,
    /// The `start` spec is invalid; the reply's `field` says which field.
    BadSpec,
    /// No service matches the request's target.
    NoSuchService,
    /// `wait: "ready"` timed out; the service keeps running.
    Timeout,
    /// The service could not be launched, or exited before it was ready.
    LaunchFailed,
    /// The supervisor is shutting down and starts nothing new.
    ShuttingDown,
    /// (`fatal`) Another supervisor runs this instance; exit code [`EXIT_ALREADY_RUNNING`].
    AlreadyRunning,
    /// (`fatal`) The instance name (`serve --name`) is not one the supervisor accepts.
    BadInstanceName,
    /// (`fatal`) The config file (`serve --config`) cannot be used; (`reload`) the config file
    /// as it reads now cannot be used, and nothing was changed.
    BadConfig,
    /// (`fatal`) The runtime folder or the instance's lock file cannot be used; the message says
    /// how to choose another folder.
    RuntimeFolder,
    /// `reload` on a supervisor started without a config file.
    NoConfig,
    /// A code this build does not know (from a later supervisor); the message says what is
    /// wrong.
    #[serde(other)]
    Unknown,
}

/// Exit code of a supervisor that finds its instance already run by another one.
pub const EXIT_ALREADY_RUNNING: u8 = 3;

/// A request that failed: the reply's `code`, `error` and, for [`ErrorCode::BadSpec`],
/// `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why, for programs.
    pub code: ErrorCode,
    /// Why, for a person: names what is wrong (`spec.cwd: folder does not exist: /x`).
    pub message: String,
    /// For `bad_spec`: the spec field at fault, as a path below the spec (`cwd`, `env.PORT`,
    /// `args[1]`); empty for the spec as a whole.
    pub field: Option<String>,
}

impl Failure {
    /// A failure without a field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A `bad_spec` failure of `field` (a path below the spec; empty for the spec itself).
    pub fn bad_spec(field: &str, message: &str) -> Failure {
        let at = if field.is_empty() {
            "spec".to_owned()
        } else {
            format!("spec.{field}")
        };
        Failure {
            code: ErrorCode::BadSpec,
            message: format!("{at}: {message}"),
            field: Some(field.to_owned()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The answer to a request, by request `type` (see [`Command`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// `null`: `shutdown`, `subscribe`.
    Done,
    /// `stop`, `restart`, `delete`, `stopall`, `list`.
    Rows(Vec<Row>),
    /// `start`.
    Row(Box<Row>),
    /// `send`: how many running processes the data was queued for.
    #[allow(missing_docs)]
    Sent { sent: usize },
    /// `disconnect`: how many channels were closed.
    #[allow(missing_docs)]
    Disconnected { disconnected: usize },
    /// `logs`: the lines, oldest first.
    #[allow(missing_docs)]
    Lines { lines: Vec<LogLine> },
    /// `describe`: everything known about each selected service.
    #[allow(missing_docs)]
    Described { services: Vec<Description> },
    /// `reload`: what was added, changed, removed and left alone.
    Reloaded(Box<Reloaded>),
}

/// The reply to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReplyFields", into = "ReplyFields")]
pub struct Reply {
    /// The request's id; None (`null`) for a line that could not be read as a request with one.
    pub id: Option<RequestId>,
    /// `"ok": true` and `result`, or `"ok": false` and `error`, `code` (and `field`).
    pub result: Result<Answer, Failure>,
}

/// How a [`Reply`] is written.
#[derive(Debug, Serialize, Deserialize)]
struct ReplyFields {
    id: Option<RequestId>,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl From<Reply> for ReplyFields {
    fn from(r: Reply) -> ReplyFields {
        match r.result {
            Ok(answer) => ReplyFields {
                id: r.id,
                ok: true,
                result: Some(serde_json::to_value(answer).unwrap_or(Value::Null)),
                error: None,
                code: None,
                field: None,
            },
            Err(f) => ReplyFields {
                id: r.id,
                ok: false,
                result: None,
                error: Some(f.message),
                code: Some(f.code),
                field: f.field,
            },
        }
    }
}

impl TryFrom<ReplyFields> for Reply {
    type Error = String;

    fn try_from(f: ReplyFields) -> Result<Reply, String> {
        let result = if f.ok {
            let answer = serde_json::from_value(f.result.unwrap_or(Value::Null))
                .map_err(|e| format!("result: {e}"))?;
            Ok(answer)
        } else {
            Err(Failure {
                code: f.code.ok_or("an error reply has a \"code\"")?,
                message: f.error.ok_or("an error reply has an \"error\"")?,
                field: f.field,
            })
        };
        Ok(Reply { id: f.id, result })
    }
}

/// An event, as a controller gets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Event {
    /// Events were dropped for this connection: it read too slowly.
    Lagged(Lagged),
    /// Something happened to a service.
    Service(ServiceEvent),
}

/// `{"event":"lagged","missed":N}`: N events were dropped for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename = "lagged")]
pub struct Lagged {
    /// How many events were dropped.
    pub missed: u64,
}

/// Why the supervisor cannot run: written once on the inherited control fd just before it
/// exits, so that the controlling process learns why without reading its stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fatal {
    /// [`ErrorCode::AlreadyRunning`], [`ErrorCode::BadInstanceName`], [`ErrorCode::BadConfig`]
    /// or [`ErrorCode::RuntimeFolder`].
    pub code: ErrorCode,
    /// What is wrong, for a person (the line the supervisor also writes to its stderr).
    pub error: String,
}

/// Every line the supervisor writes to a controller; the variant is its `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// The reply to a request.
    Reply(Reply),
    /// An event (a connection gets them after `subscribe`; the inherited fd always does).
    Event(Event),
    /// The supervisor cannot run and exits.
    Fatal(Fatal),
}

impl Message {
    /// Reads one line the supervisor wrote.
    pub fn parse(line: &[u8]) -> Result<Message, String> {
        serde_json::from_slice(line).map_err(|e| e.to_string())
    }

    /// The message as one line, with its `\n`.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}
