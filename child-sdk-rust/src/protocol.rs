//! The pm wire protocol, version 1: the message types both ends share, and the line codec.
//!
//! `protocol.md` at the root of the repository is the normative text; this module is its second
//! copy, and the vectors in `tests/protocol/` keep the two (and the Python and Node ends) in step.
//!
//! Framing: one JSON value per `\n`-terminated UTF-8 line, at most [`MAX_LINE_BYTES`] bytes
//! before the `\n`. Every object carries a string field `type`. Unknown types are ignored;
//! anything else that is not a valid message is a [`LineError`] that the reader reports and skips.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks (`PM_PROTOCOL` in the child's environment).
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either end accepts, not counting the terminating `\n`.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Environment variable naming the child's end of the channel (always `3` from pm-supervisor).
pub const ENV_CHANNEL_FD: &str = "PM_CHANNEL_FD";
/// Environment variable carrying the protocol version.
pub const ENV_PROTOCOL: &str = "PM_PROTOCOL";
/// Environment variable carrying the service's name (empty for a nameless service).
pub const ENV_SERVICE_NAME: &str = "PM_SERVICE_NAME";
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

/// A message from the supervisor to a child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToChild {
    /// Run the stop handlers and exit. After `timeout_ms` (plus granted extensions) the
    /// supervisor SIGKILLs the child's process group.
    Stop {
        /// Why the child is being stopped.
        reason: StopReason,
        /// Milliseconds until SIGKILL, counted from when this message was sent.
        timeout_ms: u64,
    },
    /// Application data sent to the service.
    Message {
        /// Any JSON value.
        #[serde(default)]
        data: Value,
    },
}

/// A message from a child to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromChild {
    /// First message of a child that understands the protocol: from now on it gets `stop`
    /// messages and answers them with `stopping`.
    Hello {
        /// Protocol version the child speaks.
        protocol: u32,
        /// Which SDK (or program) is talking, for the logs.
        #[serde(default)]
        sdk: String,
        /// Version of that SDK.
        #[serde(default)]
        version: String,
    },
    /// The service is ready (also sent as the bare JSON string `"ready"`).
    Ready,
    /// The child received `stop` and is running its handlers.
    Stopping,
    /// The child asks for `ms` more milliseconds before SIGKILL, counted from now.
    Extend {
        /// Milliseconds from now.
        ms: u64,
    },
    /// Application data sent to the supervisor.
    Message {
        /// Any JSON value.
        #[serde(default)]
        data: Value,
    },
}

/// A message type one end can receive: which `type` values it knows.
pub trait Incoming: DeserializeOwned {
    /// The `type` values this end understands; any other type is ignored.
    const TYPES: &'static [&'static str];
    /// A bare JSON string accepted as a message (`"ready"` from a child).
    fn from_bare_string(_s: &str) -> Option<Self> {
        None
    }
}

impl Incoming for ToChild {
    const TYPES: &'static [&'static str] = &["stop", "message"];
}

impl Incoming for FromChild {
    const TYPES: &'static [&'static str] = &["hello", "ready", "stopping", "extend", "message"];
    fn from_bare_string(s: &str) -> Option<Self> {
        (s == "ready").then_some(FromChild::Ready)
    }
}

/// A line that decoded without error.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// A message this end understands.
    Message(T),
    /// An object with a `type` this end does not know: ignored, as the protocol says.
    Unknown(String),
    /// An empty (or whitespace-only) line: ignored.
    Empty,
}

/// Why a line is not a valid message. The reader logs it and goes on with the next line.
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
    /// Valid JSON, but not an object with a string `type` (nor the bare string `"ready"`).
    NoType {
        /// What the value was: `array`, `number`, `object without "type"`, ...
        found: String,
    },
    /// A Node-internal message (`{"cmd":"NODE_..."}`), such as a handle being passed;
    /// pm neither sends nor accepts these.
    NodeInternal(String),
    /// A known `type` whose other fields are wrong.
    BadFields {
        /// The message type.
        kind: String,
        /// What serde said about it.
        error: String,
    },
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
            LineError::NotJson(e) => write!(f, "line is not JSON: {e}"),
            LineError::NoType { found } => {
                write!(
                    f,
                    "expected an object with a string \"type\", found {found}"
                )
            }
            LineError::NodeInternal(cmd) => write!(
                f,
                "Node-internal message {cmd:?} ignored (pm does not pass handles over the channel)"
            ),
            LineError::BadFields { kind, error } => write!(f, "bad \"{kind}\" message: {error}"),
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
    match value {
        Value::String(s) => match T::from_bare_string(&s) {
            Some(m) => Ok(Decoded::Message(m)),
            None => Err(LineError::NoType {
                found: format!("the string {s:?}"),
            }),
        },
        Value::Object(ref obj) => {
            // Node's handle passing carries a `type` of its own ("net.Socket"); `cmd` marks it.
            if let Some(Value::String(cmd)) = obj.get("cmd") {
                if cmd.starts_with("NODE_") {
                    return Err(LineError::NodeInternal(cmd.clone()));
                }
            }
            match obj.get("type") {
                Some(Value::String(kind)) => {
                    if !T::TYPES.contains(&kind.as_str()) {
                        return Ok(Decoded::Unknown(kind.clone()));
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
                    found: format!("an object whose \"type\" is {}", json_kind(other)),
                }),
                None => Err(LineError::NoType {
                    found: "an object without \"type\"".into(),
                }),
            }
        }
        other => Err(LineError::NoType {
            found: json_kind(&other).into(),
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

/// Encodes a message as one line, `\n` included. serde_json escapes every control character,
/// so the result never contains a `\n` before the last byte.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no failing Serialize impls.
    let mut out = serde_json::to_vec(msg).unwrap_or_else(|_| b"null".to_vec());
    out.push(b'\n');
    out
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
        let line = encode(&ToChild::Message {
            data: Value::String("a\nb\u{2028}".into()),
        });
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
    }

    #[test]
    fn bare_ready_and_unknown_types() {
        assert_eq!(
            decode::<FromChild>(b"\"ready\""),
            Ok(Decoded::Message(FromChild::Ready))
        );
        assert_eq!(
            decode::<FromChild>(br#"{"type":"later","x":1}"#),
            Ok(Decoded::Unknown("later".into()))
        );
        assert!(matches!(
            decode::<FromChild>(br#"{"cmd":"NODE_HANDLE"}"#),
            Err(LineError::NodeInternal(_))
        ));
    }
}
