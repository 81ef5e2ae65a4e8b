//! The control protocol (protocol.md, section 8) as types, one definition for both ends: the
//! server (the control connections of `run` and `serve`) parses [`Request`]s and writes
//! [`Message`]s; the CLI writes requests and parses messages. The Node manager
//! (`child-sdk-node/lib/manager.js`) speaks the same lines, and `tests/protocol/control.jsonl`
//! holds vectors that the server's, the CLI's and the manager's tests all read.
//!
//! Every line is one JSON object. A controller sends requests,
//! `{"type":"stop","id":7,"name":"web"}`; the supervisor writes one reply per request (with its
//! `id`), events, and, when it cannot run at all, one `fatal` message just before it exits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod reply;

pub use crate::supervisor::LogLine;
pub use crate::supervisor::ServiceInfo as Row;
pub use crate::supervisor::Services;
pub use reply::{
    Answer, EXIT_ALREADY_RUNNING, ErrorCode, Event, Failure, Fatal, Lagged, Message, Reply,
};

use crate::config::{RawService, Segment, path_to_string};
use crate::supervisor::{ServiceId, ServicesFields};

/// A request's `id`, which its reply repeats: a JSON number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// `7`
    Number(serde_json::Number),
    /// `"a"`
    String(String),
}

impl From<u64> for RequestId {
    fn from(n: u64) -> RequestId {
        RequestId::Number(n.into())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// One request: what it asks for, and the `id` its reply repeats. On the wire, one object with
/// the command's `type` and fields, and `id`: `{"type":"stop","name":"web","id":7}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    /// What it asks for.
    #[serde(flatten)]
    pub command: Command,
    /// Repeated by the reply.
    pub id: RequestId,
}

/// What a request asks for; the variant is the request's `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Adds a service and launches it. Answer: its [`Row`], once launched (or ready).
    Start(Box<Start>),
    /// Stops the selected [`Services`] (cancelling pending restarts). Answer: their rows, once
    /// their processes are gone.
    Stop(Services),
    /// Restarts the selected [`Services`]. Answer: their rows, once the new processes are
    /// launched.
    Restart(Services),
    /// Stops the selected [`Services`] and forgets them. Answer: their last rows, once their
    /// processes are gone.
    Delete(Services),
    /// Answer: [`Answer::Described`], everything known about the selected [`Services`].
    Describe(Services),
    /// Reads the config file again: starts the services added to it, stops and forgets the ones
    /// removed, restarts the ones changed. Answer: [`Answer::Reloaded`], once the removed are
    /// gone and the changed relaunched. A supervisor without a config file answers `no_config`;
    /// a file that cannot be used, `bad_config` (and nothing changes).
    Reload,
    /// Stops every service (`stop` with `all`). Answer: every row, once every process is gone.
    Stopall,
    /// Answer: every row.
    List,
    /// Sends application data to every running process of the selected [`Services`].
    /// Answer: [`Answer::Sent`].
    Send(SendData),
    /// Closes the channel of every running process of the selected [`Services`], as a fork
    /// parent's `child.disconnect()` does; the processes keep running. Answer:
    /// [`Answer::Disconnected`].
    Disconnect(Services),
    /// The recent lines of the selected [`Services`] whose output goes to the supervisor's
    /// stdout (console services), kept in memory. Answer: [`Answer::Lines`].
    Logs(Logs),
    /// Stops every service; the supervisor exits after the answer, [`Answer::Done`], once every
    /// process is gone.
    Shutdown,
    /// From now on this connection gets events (the inherited fd always does). Answer:
    /// [`Answer::Done`].
    Subscribe,
}

impl Command {
    /// Every request `type`.
    pub const TYPES: [&'static str; 13] = [
        "start",
        "stop",
        "restart",
        "delete",
        "describe",
        "reload",
        "stopall",
        "list",
        "send",
        "disconnect",
        "logs",
        "shutdown",
        "subscribe",
    ];

    /// Reads the command of `type` `kind` from the request's other fields (without `type` and
    /// `id`). The error names the field at fault.
    fn from_fields(kind: &str, fields: Map<String, Value>) -> Result<Command, Failure> {
        let fields = Value::Object(fields);
        let parsed = match kind {
            "start" => typed(fields).map(|s| Command::Start(Box::new(s))),
            "stop" => typed(fields).map(Command::Stop),
            "restart" => typed(fields).map(Command::Restart),
            "delete" => typed(fields).map(Command::Delete),
            "describe" => typed(fields).map(Command::Describe),
            "reload" => typed::<NoFields>(fields).map(|_| Command::Reload),
            "stopall" => typed::<NoFields>(fields).map(|_| Command::Stopall),
            "list" => typed::<NoFields>(fields).map(|_| Command::List),
            "send" => typed(fields).map(Command::Send),
            "disconnect" => typed(fields).map(Command::Disconnect),
            "logs" => typed(fields).map(Command::Logs),
            "shutdown" => typed::<NoFields>(fields).map(|_| Command::Shutdown),
            "subscribe" => typed::<NoFields>(fields).map(|_| Command::Subscribe),
            _ => {
                return Err(Failure::new(
                    ErrorCode::BadRequest,
                    format!(
                        "unknown request type {kind:?} (known: {})",
                        Command::TYPES.join(", ")
                    ),
                ));
            }
        };
        parsed.map_err(|e| e.failure(kind))
    }
}

/// The fields of a `start` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The service: the fields of a config-file service.
    pub spec: RawService,
    /// Folder that relative `cwd` and `log` resolve against (default: the supervisor's working
    /// folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    /// When the answer comes (default: once launched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// With [`Wait::Ready`]: how long to wait, in ms (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// When a `start` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// Once the process is launched.
    Launched,
    /// Once the service said it is ready.
    Ready,
}

/// The fields of a `send` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SendFields", into = "SendFields")]
pub struct SendData {
    /// Who gets it.
    pub to: Services,
    /// Any JSON value (default null); each process gets it exactly as sent.
    pub data: Value,
}

/// How [`SendData`] is written: the fields of [`Services`], and `data`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<ServiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
    #[serde(default)]
    data: Value,
}

impl TryFrom<SendFields> for SendData {
    type Error = String;

    fn try_from(f: SendFields) -> Result<SendData, String> {
        let to = Services::try_from(ServicesFields {
            name: f.name,
            service: f.service,
            all: f.all,
        })?;
        Ok(SendData { to, data: f.data })
    }
}

impl From<SendData> for SendFields {
    fn from(s: SendData) -> SendFields {
        let ServicesFields { name, service, all } = s.to.into();
        SendFields {
            name,
            service,
            all,
            data: s.data,
        }
    }
}

/// The fields of a `logs` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LogsFields", into = "LogsFields")]
pub struct Logs {
    /// Whose lines.
    pub of: Services,
    /// At most this many, the newest (default and most: [`Logs::MAX_LINES`], every line kept).
    pub lines: Option<usize>,
}

impl Logs {
    /// Lines kept in memory per console service, the most a `logs` request answers per service.
    pub const MAX_LINES: usize = crate::logs::ring::RING_LINES;
}

/// How [`Logs`] is written: the fields of [`Services`], and `lines`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<ServiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lines: Option<usize>,
}

impl TryFrom<LogsFields> for Logs {
    type Error = String;

    fn try_from(f: LogsFields) -> Result<Logs, String> {
        let of = Services::try_from(ServicesFields {
            name: f.name,
            service: f.service,
            all: f.all,
        })?;
        Ok(Logs { of, lines: f.lines })
    }
}

impl From<Logs> for LogsFields {
    fn from(l: Logs) -> LogsFields {
        let ServicesFields { name, service, all } = l.of.into();
        LogsFields {
            name,
            service,
            all,
            lines: l.lines,
        }
    }
}

/// A request type without fields of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// A field of a request that could not be read, from serde_path_to_error.
struct FieldError {
    path: Vec<Segment>,
    message: String,
}

impl FieldError {
    fn failure(self, kind: &str) -> Failure {
        match self.path.split_first() {
            Some((Segment::Key(k), rest)) if kind == "start" && k == "spec" => {
                Failure::bad_spec(&path_to_string(rest), &self.message)
            }
            _ if self.path.is_empty() => Failure::new(
                ErrorCode::BadRequest,
                format!("bad \"{kind}\" request: {}", self.message),
            ),
            _ => Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "bad \"{kind}\" request: {}: {}",
                    path_to_string(&self.path),
                    self.message
                ),
            ),
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let mut path: Vec<Segment> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let mut message = e.into_inner().to_string();
        // "missing field `script`" is reported at the object that lacks it: name the field.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            path.push(Segment::Key(name.to_owned()));
            message = "missing".into();
        }
        FieldError { path, message }
    })
}

impl Request {
    /// Reads a request line. Ok(None): an empty line. Err: the error reply it gets (with its id
    /// when one could be read).
    pub fn parse(line: &[u8]) -> Result<Option<Request>, Reply> {
        let refuse = |id: Option<RequestId>, f: Failure| Reply { id, result: Err(f) };
        let bad = |m: String| refuse(None, Failure::new(ErrorCode::BadRequest, m));
        let text = match std::str::from_utf8(line) {
            Ok(t) => t.trim(),
            Err(e) => {
                return Err(bad(format!(
                    "request is not UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                )));
            }
        };
        if text.is_empty() {
            return Ok(None);
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Err(bad(format!("request is not JSON: {e}"))),
        };
        Request::from_value(value).map(Some)
    }

    /// Reads a request from its JSON value.
    pub fn from_value(value: Value) -> Result<Request, Reply> {
        let refuse = |id: Option<RequestId>, m: &str| Reply {
            id,
            result: Err(Failure::new(ErrorCode::BadRequest, m)),
        };
        let Value::Object(mut fields) = value else {
            return Err(refuse(
                None,
                "a request is a JSON object with \"type\" and \"id\"",
            ));
        };
        let id = match fields.remove("id") {
            Some(Value::Number(n)) => RequestId::Number(n),
            Some(Value::String(s)) => RequestId::String(s),
            Some(_) => return Err(refuse(None, "\"id\" must be a number or a string")),
            None => return Err(refuse(None, "request has no \"id\"")),
        };
        let kind = match fields.remove("type") {
            Some(Value::String(k)) => k,
            _ => return Err(refuse(Some(id), "request has no string \"type\"")),
        };
        match Command::from_fields(&kind, fields) {
            Ok(command) => Ok(Request { command, id }),
            Err(f) => Err(Reply {
                id: Some(id),
                result: Err(f),
            }),
        }
    }

    /// The request as one line, with its `\n`.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
        Request::from_value(Value::deserialize(d)?).map_err(|reply| {
            let message = match reply.result {
                Err(f) => f.message,
                Ok(_) => String::new(),
            };
            serde::de::Error::custom(message)
        })
    }
}

fn encode(v: &impl Serialize) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string.
    let mut line = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    line.push(b'\n');
    line
}

/// The shared vectors of the control protocol, `tests/protocol/control.jsonl` (through the
/// crate's `tests/protocol`, a symlink that `cargo package` turns into copies).
#[cfg(test)]
pub(crate) fn vectors() -> Vec<Value> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protocol/control.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests;
