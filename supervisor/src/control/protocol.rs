//! The control protocol (protocol.md, section 8) as types, one definition for both ends: the
//! server ([`crate::control`]) parses [`Request`]s and writes [`Message`]s; the CLI
//! ([`crate::cli`]) writes requests and parses messages. The Node manager
//! (`child-sdk-node/lib/manager.js`) speaks the same lines, and `tests/protocol/control.jsonl`
//! holds vectors that the server's, the CLI's and the manager's tests all read.
//!
//! Every line is one JSON object. A controller sends requests,
//! `{"type":"stop","id":7,"name":"web"}`; the supervisor writes one reply per request (with its
//! `id`), events, and, when it cannot run at all, one `fatal` message just before it exits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::RawService;
use crate::json_locate::{self, Segment};
pub use crate::supervisor::ServiceInfo as Row;
use crate::supervisor::{Event as ServiceEvent, Selector, ServiceId};

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
    /// Stops every service; the supervisor exits after the answer, [`Answer::Done`], once every
    /// process is gone.
    Shutdown,
    /// From now on this connection gets events (the inherited fd always does). Answer:
    /// [`Answer::Done`].
    Subscribe,
}

impl Command {
    /// Every request `type`.
    pub const TYPES: [&'static str; 9] = [
        "start",
        "stop",
        "restart",
        "stopall",
        "list",
        "send",
        "disconnect",
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
            "stopall" => typed::<NoFields>(fields).map(|_| Command::Stopall),
            "list" => typed::<NoFields>(fields).map(|_| Command::List),
            "send" => typed(fields).map(Command::Send),
            "disconnect" => typed(fields).map(Command::Disconnect),
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

/// Which services a request acts on. On the wire, exactly one of `"name": "web"`,
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

impl From<Services> for Selector {
    fn from(t: Services) -> Selector {
        match t {
            Services::Named(n) => Selector::Name(n),
            Services::Id(id) => Selector::Id(id),
            Services::All => Selector::All,
        }
    }
}

/// How a [`Services`] is written.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicesFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<ServiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
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

/// A request type without fields of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

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
    /// (`fatal`) The config file (`serve --config`) cannot be used.
    BadConfig,
    /// (`fatal`) The runtime folder or the instance's lock file cannot be used; the message says
    /// how to choose another folder.
    RuntimeFolder,
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

/// A field of a request that could not be read, from serde_path_to_error.
struct FieldError {
    path: Vec<Segment>,
    message: String,
}

impl FieldError {
    fn failure(self, kind: &str) -> Failure {
        match self.path.split_first() {
            Some((Segment::Key(k), rest)) if kind == "start" && k == "spec" => {
                Failure::bad_spec(&json_locate::path_to_string(rest), &self.message)
            }
            _ if self.path.is_empty() => Failure::new(
                ErrorCode::BadRequest,
                format!("bad \"{kind}\" request: {}", self.message),
            ),
            _ => Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "bad \"{kind}\" request: {}: {}",
                    json_locate::path_to_string(&self.path),
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

/// The answer to a request, by request `type` (see [`Command`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// `null`: `shutdown`, `subscribe`.
    Done,
    /// `stop`, `restart`, `stopall`, `list`.
    Rows(Vec<Row>),
    /// `start`.
    Row(Box<Row>),
    /// `send`: how many running processes the data was queued for.
    Sent {
        /// That many.
        sent: usize,
    },
    /// `disconnect`: how many channels were closed.
    Disconnected {
        /// That many.
        disconnected: usize,
    },
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
    /// How many.
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
    /// Something happened.
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
mod tests {
    use std::time::SystemTime;

    use serde_json::json;

    use super::*;
    use crate::supervisor::EventKind;

    #[test]
    fn every_message_vector_parses_to_its_kind_and_is_written_back_as_it_was() {
        let mut seen = 0;
        for case in vectors().iter().filter(|c| c.get("message").is_some()) {
            let name = &case["name"];
            let line = case["message"].as_str().expect("message");
            let message = Message::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expect = &case["expect"];
            match &message {
                Message::Reply(Reply { result: Ok(a), .. }) => {
                    let kind = match a {
                        Answer::Done => "done",
                        Answer::Rows(_) => "rows",
                        Answer::Row(_) => "row",
                        Answer::Sent { .. } => "sent",
                        Answer::Disconnected { .. } => "disconnected",
                    };
                    assert_eq!(expect["answer"], kind, "{name}");
                }
                Message::Reply(Reply { result: Err(f), .. }) => {
                    assert_eq!(expect["failure"]["code"], json!(f.code), "{name}");
                    assert_eq!(
                        expect["failure"].get("field").and_then(Value::as_str),
                        f.field.as_deref(),
                        "{name}"
                    );
                }
                Message::Event(Event::Lagged(_)) => assert_eq!(expect["event"], "lagged"),
                Message::Event(Event::Service(e)) => {
                    assert_eq!(json!(e)["event"], expect["event"], "{name}");
                }
                Message::Fatal(f) => assert_eq!(expect["fatal"], json!(f.code), "{name}"),
            }
            let written: Value = serde_json::from_slice(&message.encode()).expect("json");
            let given: Value = serde_json::from_str(line).expect("json");
            assert_eq!(written, given, "{name}");
            seen += 1;
        }
        assert!(seen > 20, "{seen} message vectors");
    }

    #[test]
    fn a_code_from_a_later_supervisor_still_reads() {
        let line = br#"{"type":"reply","id":1,"ok":false,"error":"x","code":"flux"}"#;
        match Message::parse(line) {
            Ok(Message::Reply(Reply { result: Err(f), .. })) => {
                assert_eq!((f.code, f.message.as_str()), (ErrorCode::Unknown, "x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_event_is_as_long_as_the_actor_reckons() {
        let event = ServiceEvent {
            time: SystemTime::now(),
            id: 12,
            name: Some("wéb \"x\"".into()),
            kind: EventKind::Message {
                pid: 4242,
                data: Value::Null,
            },
        };
        let line = Message::Event(Event::Service(event)).encode();
        assert_eq!(
            line.len() - 1 - "null".len(),
            crate::supervisor::message_event_envelope(12, Some("wéb \"x\""), 4242)
        );
    }

    #[test]
    fn requests_round_trip() {
        let r = Request {
            id: 7.into(),
            command: Command::Send(SendData {
                to: Services::Id(3),
                data: json!({"a": [1]}),
            }),
        };
        let line = r.encode();
        assert_eq!(
            serde_json::from_slice::<Value>(&line).expect("json"),
            json!({"type": "send", "id": 7, "service": 3, "data": {"a": [1]}})
        );
        assert_eq!(Request::parse(&line).expect("parses"), Some(r));
        for kind in Command::TYPES {
            let line = format!(
                "{{\"type\":\"{kind}\",\"id\":1,\"all\":true,\"spec\":{{\"script\":\"x\"}}}}"
            );
            let got = Request::parse(line.as_bytes());
            // Every type is known: an error (if any) is about its fields, not its type.
            if let Err(Reply { result: Err(f), .. }) = got {
                assert!(!f.message.contains("unknown request type"), "{kind}: {f}");
            }
        }
    }
}
