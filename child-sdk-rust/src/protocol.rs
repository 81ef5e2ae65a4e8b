//! The pm wire protocol, version 2: the message types both ends share, and the line codec.
//!
//! `protocol.md` at the root of the repository is the normative text; this module is its second
//! copy, and the vectors in `tests/protocol/` keep the two (and the Python and Node ends) in step.
//!
//! Framing: one JSON value per `\n`-terminated UTF-8 line, at most [`MAX_LINE_BYTES`] bytes
//! before the `\n`. pm's own messages are objects with `"cmd":"NODE_PM"` and a string `type`;
//! Node routes objects whose `cmd` starts with `NODE_` to its internal handler, never to the
//! application, so they cannot collide with user data. Every other value is application data,
//! carried as it is. Unknown pm types are ignored; anything else that is not a valid line is a
//! [`LineError`] that the reader reports and skips.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks (`PM_PROTOCOL` in the child's environment).
pub const PROTOCOL_VERSION: u32 = 2;

/// The longest line either end accepts, not counting the terminating `\n`.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The `cmd` of pm's own messages. Node treats every object whose `cmd` starts with `NODE_` as
/// one of its internal messages (`'internalMessage'`), so a Node child's `'message'` listeners
/// never see pm's messages, and nothing a Node application sends can look like one by accident.
pub const PM_CMD: &str = "NODE_PM";

/// Environment variable naming the child's end of the channel (always `3` from pm-supervisor).
pub const ENV_CHANNEL_FD: &str = "PM_CHANNEL_FD";
/// Environment variable identifying the child's end of the channel: `<st_dev>:<st_ino>` of the
/// socket, so that a process that inherited some other fd under that number (a cluster worker,
/// whose fd 3 is its own IPC channel) does not take it for pm's.
pub const ENV_CHANNEL_ID: &str = "PM_CHANNEL_ID";
/// Environment variable carrying the protocol version.
pub const ENV_PROTOCOL: &str = "PM_PROTOCOL";
/// Environment variable carrying the service's name (empty for a nameless service).
pub const ENV_SERVICE_NAME: &str = "PM_SERVICE_NAME";
/// Environment variable carrying the service's `watchdogMs`: the child must send `heartbeat` at
/// least that often (see [`WatchdogTiming`]). Set only for services that have one.
pub const ENV_WATCHDOG_MS: &str = "PM_WATCHDOG_MS";
/// Node's own variable for its fork IPC channel; set for Node children only.
pub const ENV_NODE_CHANNEL_FD: &str = "NODE_CHANNEL_FD";
/// Node's IPC serialization mode; pm always uses `json`.
pub const ENV_NODE_CHANNEL_SERIALIZATION_MODE: &str = "NODE_CHANNEL_SERIALIZATION_MODE";

/// Why the supervisor asks a child to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// The service itself was stopped (by name, or stop-all).
    Stop,
    /// The service is being restarted; a new process follows.
    Restart,
    /// The supervisor is shutting down.
    Shutdown,
}

/// A line from the supervisor to a child: one of pm's messages, or application data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToChild {
    /// Run the stop handlers and exit. After `timeout_ms` (plus granted extensions) the
    /// supervisor SIGKILLs the child's process group. Sent only to children that said `hello`.
    Stop {
        /// Why the child is being stopped.
        reason: StopReason,
        /// Milliseconds until SIGKILL, counted from when this message was sent.
        timeout_ms: u64,
    },
    /// The supervisor is about to close this channel on its controller's request: the EOF that
    /// follows is not the supervisor's death, and not a stop request.
    Disconnect,
    /// Application data from the controlling process: any JSON value, written as it is.
    #[serde(skip)]
    Data(Value),
}

/// A line from a child to the supervisor: one of pm's messages, or application data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromChild {
    /// First message of a child that speaks the protocol: from now on it gets `stop` messages
    /// and answers them with `stopping`.
    Hello {
        /// Protocol version the child speaks.
        protocol: u32,
        /// Which SDK (or program) is talking, for the logs.
        #[serde(default)]
        sdk: String,
        /// Version of that SDK.
        #[serde(default)]
        version: String,
        /// How to get a diagnostic out of this process when the watchdog finds it hung, before
        /// it is stopped: a signal name ([`DIAGNOSTIC_SIGNALS`]) that the supervisor sends it,
        /// or [`DIAGNOSTICS_SELF`] (it writes one itself when its heartbeats stop). Either way
        /// the supervisor then waits [`DIAGNOSTICS_WINDOW_MS`] before the stop.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diagnostics: Option<String>,
    },
    /// The service is ready (the bare string `"ready"`, PM2's `process.send('ready')`, says it
    /// too: see [`FromChild::means_ready`]).
    Ready,
    /// The child received `stop` and is running its handlers.
    Stopping,
    /// The answer to `stop` of a child that has no stop handlers: send SIGTERM to its process
    /// group now, as to a program without the SDK, so that it stops the way it would without it.
    Term,
    /// The child asks for `ms` more milliseconds before SIGKILL, counted from now.
    Extend {
        /// Milliseconds from now.
        ms: u64,
    },
    /// "I am alive", for the supervisor's watchdog (`PM_WATCHDOG_MS`). The first one arms the
    /// watchdog for this process; from then on a process silent for longer than the service's
    /// `watchdogMs` is hung.
    Heartbeat,
    /// Application data for the controlling process: any JSON value, as the child wrote it.
    #[serde(skip)]
    Data(Value),
}

impl FromChild {
    /// Whether this line says the service is ready: pm's `ready`, or the bare string `"ready"`
    /// (which is application data as well).
    pub fn means_ready(&self) -> bool {
        match self {
            FromChild::Ready => true,
            FromChild::Data(Value::String(s)) => s == "ready",
            _ => false,
        }
    }
}

/// The `diagnostics` of a child that writes its diagnostic itself when its heartbeats stop
/// (the Node SDK, whose watcher thread sees the event loop stall): nothing is sent to it.
pub const DIAGNOSTICS_SELF: &str = "self";

/// The signals a child may name in `diagnostics`. Any other value but [`DIAGNOSTICS_SELF`] is
/// treated as no `diagnostics` at all.
pub const DIAGNOSTIC_SIGNALS: &[&str] = &["SIGUSR1", "SIGUSR2", "SIGQUIT"];

/// How long the supervisor waits, once it found a child with `diagnostics` hung (and sent it
/// the signal it named), before it begins the stop: time for the diagnostic to reach the log.
pub const DIAGNOSTICS_WINDOW_MS: u64 = 500;

/// What a child makes of `PM_WATCHDOG_MS` (protocol.md, section 2; `tests/protocol/watchdog.jsonl`
/// holds the cases every SDK is tested against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogTiming {
    /// The service's `watchdogMs`: the longest silence the supervisor allows.
    pub limit_ms: u64,
    /// How often the SDKs send an automatic heartbeat: a third of the limit, so that two in a
    /// row may be late before the supervisor notices; at least [`Self::MIN_PERIOD_MS`].
    pub period_ms: u64,
    /// The shortest time between two heartbeats of the manual call (more frequent calls send
    /// nothing): a tenth of the limit, so a call costs nothing when made often, and a process
    /// is found hung no sooner than 0.9 × the limit after its last call.
    pub min_gap_ms: u64,
}

impl WatchdogTiming {
    /// The longest `PM_WATCHDOG_MS` taken (2^31 - 1 ms, about 24.8 days: Node's timers end there).
    pub const MAX_LIMIT_MS: u64 = 2_147_483_647;
    /// The shortest automatic heartbeat period.
    pub const MIN_PERIOD_MS: u64 = 10;

    /// The timing for a `PM_WATCHDOG_MS` value: ASCII digits only (no sign, space or unit),
    /// 1 to [`Self::MAX_LIMIT_MS`]. Anything else means no watchdog (None): the SDK sends no
    /// heartbeats.
    pub fn parse(value: &str) -> Option<WatchdogTiming> {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let limit_ms: u64 = value.parse().ok()?;
        if limit_ms == 0 || limit_ms > Self::MAX_LIMIT_MS {
            return None;
        }
        Some(WatchdogTiming {
            limit_ms,
            period_ms: (limit_ms / 3).max(Self::MIN_PERIOD_MS),
            min_gap_ms: limit_ms / 10,
        })
    }
}

/// A line type one end can receive.
pub trait Incoming: DeserializeOwned {
    /// The pm `type` values this end understands; any other pm type is ignored.
    const TYPES: &'static [&'static str];
    /// Application data.
    fn data(value: Value) -> Self;
}

impl Incoming for ToChild {
    const TYPES: &'static [&'static str] = &["stop", "disconnect"];
    fn data(value: Value) -> Self {
        ToChild::Data(value)
    }
}

impl Incoming for FromChild {
    const TYPES: &'static [&'static str] =
        &["hello", "ready", "stopping", "term", "extend", "heartbeat"];
    fn data(value: Value) -> Self {
        FromChild::Data(value)
    }
}

/// A line type one end writes.
pub trait Outgoing: Serialize {
    /// The application data this line carries as it is, if it is not one of pm's messages.
    fn as_data(&self) -> Option<&Value>;
}

impl Outgoing for ToChild {
    fn as_data(&self) -> Option<&Value> {
        match self {
            ToChild::Data(v) => Some(v),
            _ => None,
        }
    }
}

impl Outgoing for FromChild {
    fn as_data(&self) -> Option<&Value> {
        match self {
            FromChild::Data(v) => Some(v),
            _ => None,
        }
    }
}

/// A line that decoded without error.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// A message this end understands, or application data.
    Message(T),
    /// A pm message with a `type` this end does not know: ignored, as the protocol says.
    Unknown(String),
    /// An empty (or whitespace-only) line: ignored.
    Empty,
}

/// Whether Node would route `value` to its internal handler (`'internalMessage'`) instead of the
/// application's `'message'` listeners: an object whose `cmd` is a string longer than `NODE_`
/// that starts with it. pm's own messages are such objects; application data never is.
pub fn is_node_internal(value: &Value) -> bool {
    match value.get("cmd") {
        Some(Value::String(cmd)) => cmd.len() > "NODE_".len() && cmd.starts_with("NODE_"),
        _ => false,
    }
}

/// Why a line is not a valid message. The reader logs it and goes on with the next line. The
/// `Display` text is bounded (a few hundred bytes) and quotes nothing of the line but short
/// protocol fields, so it can go to a log whatever the line was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// The line is longer than [`MAX_LINE_BYTES`]; it was discarded up to its `\n`.
    TooLong {
        /// Bytes the line had (at least; counting stops at the `\n`).
        len: usize,
    },
    /// The line is not UTF-8.
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        at: usize,
    },
    /// The line is not JSON.
    NotJson(String),
    /// A pm message (`"cmd":"NODE_PM"`) without a string `type`.
    NoType {
        /// What the `type` was: `missing`, `a number`, ...
        found: String,
    },
    /// A Node-internal message other than pm's own (`{"cmd":"NODE_HANDLE",...}`, a handle being
    /// passed); pm neither sends nor accepts these.
    NodeInternal(String),
    /// A known pm `type` whose other fields are wrong.
    BadFields {
        /// The message type.
        kind: String,
        /// What serde said about it.
        error: String,
    },
}

/// A protocol name (`cmd`, `type`) as a report may show it: whole when it is short, else only
/// its length (it is then something a child made up, not a protocol name).
fn name_or_len(s: &str) -> String {
    if s.len() <= 24 {
        s.to_owned()
    } else {
        format!("<{} bytes>", s.len())
    }
}

/// At most `max` bytes of `s` (cut at a character boundary), marked when cut.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// serde's message with every quoted value longer than a short protocol field replaced by its
/// length: serde quotes the offending value (`invalid type: string "..."`), which may be
/// anything a child wrote.
fn without_values(error: &str) -> String {
    const SHORT: usize = 24;
    let mut out = String::new();
    let mut rest = error;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        // serde writes strings with Debug escapes, so an unescaped quote closes the value.
        let mut close = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                close = Some(i);
                break;
            }
        }
        let Some(close) = close else {
            out.push_str(&format!("<{} bytes>", after.len()));
            return out;
        };
        let inner = &after[..close];
        if inner.len() > SHORT {
            out.push_str(&format!("<{} bytes>", inner.len()));
        } else {
            out.push_str(inner);
        }
        out.push(quote);
        rest = &after[close + quote.len_utf8()..];
    }
    out.push_str(rest);
    out
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong { len } => write!(
                f,
                "line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit; discarded"
            ),
            LineError::NotUtf8 { at } => {
                write!(f, "line is not UTF-8 (invalid byte at offset {at})")
            }
            LineError::NotJson(e) => write!(f, "line is not JSON: {}", bounded(e, 120)),
            LineError::NoType { found } => write!(
                f,
                "a pm message (\"cmd\":\"{PM_CMD}\") needs a string \"type\", found {}",
                name_or_len(found)
            ),
            LineError::NodeInternal(cmd) => write!(
                f,
                "Node-internal message {:?} ignored (pm does not pass handles over the channel)",
                name_or_len(cmd)
            ),
            LineError::BadFields { kind, error } => write!(
                f,
                "bad \"{}\" message: {}",
                name_or_len(kind),
                bounded(&without_values(error), 160)
            ),
        }
    }
}

impl std::error::Error for LineError {}

impl LineError {
    /// The kind's name in the shared test vectors (`tests/protocol/`): `too_long`, `not_utf8`,
    /// `not_json`, `no_type`, `node_internal` or `bad_fields`.
    pub fn kind(&self) -> &'static str {
        match self {
            LineError::TooLong { .. } => "too_long",
            LineError::NotUtf8 { .. } => "not_utf8",
            LineError::NotJson(_) => "not_json",
            LineError::NoType { .. } => "no_type",
            LineError::NodeInternal(_) => "node_internal",
            LineError::BadFields { .. } => "bad_fields",
        }
    }
}

/// Decodes one line (without its `\n`; a trailing `\r` is tolerated).
pub fn decode<T: Incoming>(line: &[u8]) -> Result<Decoded<T>, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong { len: line.len() });
    }
    let text = std::str::from_utf8(line).map_err(|e| LineError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Ok(Decoded::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| LineError::NotJson(e.to_string()))?;
    if !is_node_internal(&value) {
        return Ok(Decoded::Message(T::data(value)));
    }
    // Node's handle passing carries a `type` of its own ("net.Socket"); only `cmd` tells.
    if value["cmd"] != PM_CMD {
        let cmd = value["cmd"].as_str().unwrap_or_default();
        return Err(LineError::NodeInternal(name_or_len(cmd)));
    }
    match value.get("type") {
        Some(Value::String(kind)) => {
            if !T::TYPES.contains(&kind.as_str()) {
                return Ok(Decoded::Unknown(name_or_len(kind)));
            }
            let kind = kind.clone();
            serde_json::from_value(value)
                .map(Decoded::Message)
                .map_err(|e| LineError::BadFields {
                    kind,
                    error: e.to_string(),
                })
        }
        Some(other) => Err(LineError::NoType {
            found: json_kind(other).into(),
        }),
        None => Err(LineError::NoType {
            found: "none".into(),
        }),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// pm's messages on the wire: `cmd` first, then the message's own fields.
#[derive(Serialize)]
struct Envelope<'a, T> {
    cmd: &'static str,
    #[serde(flatten)]
    msg: &'a T,
}

/// Encodes a line, `\n` included: application data as it is, pm's messages with their `cmd`.
/// serde_json escapes every control character, so the result never contains a `\n` before the
/// last byte.
pub fn encode<T: Outgoing>(msg: &T) -> Vec<u8> {
    // Serializing JSON values and these types cannot fail: no maps with non-string keys, no
    // failing Serialize impls.
    let out = match msg.as_data() {
        Some(data) => serde_json::to_vec(data),
        None => serde_json::to_vec(&Envelope { cmd: PM_CMD, msg }),
    };
    let mut out = out.unwrap_or_else(|_| b"null".to_vec());
    out.push(b'\n');
    out
}

/// The length of `value` as [`encode`] writes it (without the `\n`), without building it.
pub fn encoded_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// What [`LineDecoder::feed`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n`.
    Line(&'a [u8]),
    /// A line longer than the limit ended; its bytes were dropped. `len` is its length.
    TooLong {
        /// Length of the dropped line, without its `\n`.
        len: usize,
    },
}

/// Splits a byte stream into `\n`-terminated lines, whatever the sizes of the reads, with a
/// bounded buffer: a line longer than the limit is dropped (and reported) instead of held.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max: usize,
    /// Some(n) while dropping an over-long line of which n bytes have been seen.
    dropping: Option<usize>,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

impl LineDecoder {
    /// A decoder that accepts lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            dropping: None,
        }
    }

    /// Feeds the next bytes read; calls `on_frame` for each line they complete.
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let chunk = &data[..newline.unwrap_or(data.len())];
            if let Some(seen) = self.dropping.as_mut() {
                *seen += chunk.len();
            } else if self.buf.len() + chunk.len() > self.max {
                self.dropping = Some(self.buf.len() + chunk.len());
                self.buf = Vec::new();
            } else if newline.is_some() && self.buf.is_empty() {
                // Fast path: the whole line is in this read; no copy.
                on_frame(Frame::Line(chunk));
                data = &data[chunk.len() + 1..];
                continue;
            } else {
                self.buf.extend_from_slice(chunk);
            }
            let Some(_) = newline else { break };
            match self.dropping.take() {
                Some(len) => on_frame(Frame::TooLong { len }),
                None => {
                    on_frame(Frame::Line(&self.buf));
                    self.buf.clear();
                }
            }
            data = &data[chunk.len() + 1..];
        }
    }

    /// Bytes of an unfinished line held so far (a line without its `\n` when the stream ends).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// True when an unfinished line (kept or being dropped) is pending.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty() || self.dropping.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoder: &mut LineDecoder, reads: &[&[u8]]) -> Vec<Result<Vec<u8>, usize>> {
        let mut out = Vec::new();
        for r in reads {
            decoder.feed(r, |f| match f {
                Frame::Line(l) => out.push(Ok(l.to_vec())),
                Frame::TooLong { len } => out.push(Err(len)),
            });
        }
        out
    }

    #[test]
    fn lines_are_reassembled_across_reads() {
        let mut d = LineDecoder::new(16);
        let got = lines(&mut d, &[b"ab", b"c\nde", b"f\n\ng"]);
        assert_eq!(
            got,
            vec![Ok(b"abc".to_vec()), Ok(b"def".to_vec()), Ok(Vec::new())]
        );
        assert_eq!(d.pending(), b"g");
    }

    #[test]
    fn over_long_lines_are_dropped_and_the_next_line_survives() {
        let mut d = LineDecoder::new(4);
        let got = lines(&mut d, &[b"abc", b"defgh", b"ij\nok\n"]);
        assert_eq!(got, vec![Err(10), Ok(b"ok".to_vec())]);
        assert!(!d.has_pending());
    }

    #[test]
    fn encode_is_one_line() {
        let line = encode(&ToChild::Data(Value::String("a\nb\u{2028}".into())));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
    }

    #[test]
    fn pm_messages_are_node_internal_and_data_is_anything_else() {
        assert_eq!(
            decode::<FromChild>(b"\"ready\""),
            Ok(Decoded::Message(FromChild::Data(Value::String(
                "ready".into()
            ))))
        );
        assert!(FromChild::Data(Value::String("ready".into())).means_ready());
        assert_eq!(
            decode::<FromChild>(br#"{"cmd":"NODE_PM","type":"later","x":1}"#),
            Ok(Decoded::Unknown("later".into()))
        );
        assert_eq!(
            decode::<FromChild>(br#"{"type":"ready"}"#),
            Ok(Decoded::Message(FromChild::Data(
                serde_json::json!({"type": "ready"})
            )))
        );
        assert!(matches!(
            decode::<FromChild>(br#"{"cmd":"NODE_HANDLE"}"#),
            Err(LineError::NodeInternal(_))
        ));
        assert_eq!(
            encode(&FromChild::Extend { ms: 5 }),
            b"{\"cmd\":\"NODE_PM\",\"type\":\"extend\",\"ms\":5}\n".to_vec()
        );
    }

    #[test]
    fn error_texts_are_bounded_whatever_the_line() {
        let huge = "x".repeat(800_000);
        let lines = [
            format!("{{\"cmd\":\"NODE_{huge}\"}}"),
            format!("{{\"cmd\":\"NODE_PM\",\"type\":\"extend\",\"ms\":\"{huge}\"}}"),
            format!(
                "{{\"cmd\":\"NODE_PM\",\"type\":\"hello\",\"protocol\":1,\"sdk\":[\"{huge}\"]}}"
            ),
            format!("{{\"cmd\":\"NODE_PM\",\"type\":{{\"{huge}\":1}}}}"),
            format!("\"{huge}"),
            huge.clone(),
        ];
        for line in &lines {
            let e = decode::<FromChild>(line.as_bytes()).expect_err("a bad line");
            let text = e.to_string();
            assert!(
                text.len() <= 300,
                "{} bytes: {}",
                text.len(),
                &text[..300.min(text.len())]
            );
            assert!(!text.contains(&"x".repeat(50)), "{text}");
        }
        let unknown = format!("{{\"cmd\":\"NODE_PM\",\"type\":\"{huge}\"}}");
        match decode::<FromChild>(unknown.as_bytes()) {
            Ok(Decoded::Unknown(kind)) => assert!(kind.len() < 100),
            other => panic!("{other:?}"),
        }
    }
}
