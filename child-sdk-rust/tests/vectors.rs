//! The shared protocol vectors (`tests/protocol/`), run through the Rust codec that both the
//! supervisor and the Python SDK use: line splitting, decoding and encoding.

use std::path::PathBuf;

use pm_child::protocol::{
    self, Decoded, Frame, FromChild, Incoming, LineDecoder, LineError, MAX_LINE_BYTES, Outgoing,
    ToChild,
};
use serde::Serialize;
use serde_json::Value;

/// A vector file. `tests/protocol` in this crate is a symlink to the repository's
/// `tests/protocol/`, which `cargo package` turns into copies: the published crate carries them.
fn vectors(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/protocol")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("vector is JSON"))
        .collect()
}

/// The bytes of a case's line.
fn line_of(case: &Value) -> Vec<u8> {
    if let Some(s) = case["line"].as_str() {
        return s.as_bytes().to_vec();
    }
    if let Some(h) = case["line_hex"].as_str() {
        return (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
            .collect();
    }
    let g = &case["line_gen"];
    let (prefix, repeat, suffix) = (
        g["prefix"].as_str().expect("prefix"),
        g["repeat"].as_str().expect("repeat"),
        g["suffix"].as_str().expect("suffix"),
    );
    let total = g["total"].as_u64().expect("total") as usize;
    let fill = (total - prefix.len() - suffix.len()) / repeat.len();
    let mut line = prefix.as_bytes().to_vec();
    line.extend(repeat.as_bytes().repeat(fill));
    line.extend(suffix.as_bytes());
    assert_eq!(line.len(), total);
    line
}

/// Runs the line through the same path as a reader: line splitting, then decoding.
fn read<T: Incoming>(line: &[u8]) -> Vec<Result<Decoded<T>, LineError>> {
    let mut decoder = LineDecoder::new(MAX_LINE_BYTES);
    let mut out = Vec::new();
    let mut stream = line.to_vec();
    stream.push(b'\n');
    // Odd read sizes, so that reassembly is part of every case.
    for chunk in stream.chunks(7919) {
        decoder.feed(chunk, |f| match f {
            Frame::Line(l) => out.push(protocol::decode::<T>(l)),
            Frame::TooLong { len } => out.push(Err(LineError::TooLong { len })),
        });
    }
    out
}

/// The case's expectation for a decoded line, in the vectors' terms.
trait Expected: Incoming + Serialize + Outgoing {
    /// `"ready": true` in a from_child case.
    fn means_ready(&self) -> bool {
        false
    }
}

impl Expected for ToChild {}

impl Expected for FromChild {
    fn means_ready(&self) -> bool {
        FromChild::means_ready(self)
    }
}

fn check<T: Expected>(file: &str) {
    let cases = vectors(file);
    assert!(cases.len() >= 10, "{file} has its cases");
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let got = read::<T>(&line_of(&case));
        assert_eq!(got.len(), 1, "{name}: one line in, one result out");
        let got = got.into_iter().next().expect("one");
        let expect = &case["expect"];
        match got {
            Ok(Decoded::Message(m)) => {
                match m.as_data() {
                    Some(data) => {
                        if let Some(len) = expect["data_len"].as_u64() {
                            assert_eq!(data.as_str().map(str::len), Some(len as usize), "{name}");
                        } else {
                            assert_eq!(Some(data), expect.get("data"), "{name}");
                            // Keys in the order the writer wrote them.
                            assert_eq!(data.to_string(), expect["data"].to_string(), "{name}");
                        }
                    }
                    None => {
                        let value = serde_json::to_value(&m).expect("serializable");
                        assert_eq!(&value, &expect["pm"], "{name}");
                    }
                }
                let ready = expect["ready"]
                    .as_bool()
                    .unwrap_or(expect["pm"]["type"] == "ready");
                assert_eq!(m.means_ready(), ready, "{name}: ready");
            }
            Ok(Decoded::Unknown(_)) => assert_eq!(expect["ignored"], "unknown", "{name}"),
            Ok(Decoded::Empty) => assert_eq!(expect["ignored"], "empty", "{name}"),
            Err(e) => assert_eq!(expect["error"], e.kind(), "{name}: {e}"),
        }
    }
}

#[test]
fn lines_from_children() {
    check::<FromChild>("from_child.jsonl");
}

#[test]
fn lines_to_children() {
    check::<ToChild>("to_child.jsonl");
}

/// A message of the vectors' `encode.jsonl`: `{"pm": M}` or `{"data": V}`.
fn message<T: Incoming>(m: &Value) -> T {
    match (m.get("pm"), m.get("data")) {
        (Some(pm), None) => serde_json::from_value(pm.clone()).expect("a pm message"),
        (None, Some(data)) => T::data(data.clone()),
        _ => panic!("a message is {{\"pm\": M}} or {{\"data\": V}}: {m}"),
    }
}

#[test]
fn encoding_is_byte_exact() {
    let cases = vectors("encode.jsonl");
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let line = match case["direction"].as_str() {
            Some("from_child") => protocol::encode(&message::<FromChild>(&case["message"])),
            _ => protocol::encode(&message::<ToChild>(&case["message"])),
        };
        let expected = format!("{}\n", case["line"].as_str().expect("line"));
        assert_eq!(String::from_utf8(line).expect("utf-8"), expected, "{name}");
    }
}

#[test]
fn watchdog_timing_from_the_environment() {
    let cases = vectors("watchdog.jsonl");
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let value = case["value"].as_str().expect("value");
        let got = protocol::WatchdogTiming::parse(value).map(|t| {
            serde_json::json!({
                "limit_ms": t.limit_ms,
                "period_ms": t.period_ms,
                "min_gap_ms": t.min_gap_ms,
            })
        });
        assert_eq!(got.unwrap_or(Value::Null), case["expect"], "{name}");
    }
}
