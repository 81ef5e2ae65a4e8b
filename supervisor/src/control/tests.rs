use std::time::SystemTime;

use serde_json::json;

use super::*;
use crate::supervisor::{Event as ServiceEvent, EventKind};

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
                    Answer::Lines { .. } => "lines",
                    Answer::Described { .. } => "described",
                    Answer::Reloaded(_) => "reloaded",
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
        let line =
            format!("{{\"type\":\"{kind}\",\"id\":1,\"all\":true,\"spec\":{{\"script\":\"x\"}}}}");
        let got = Request::parse(line.as_bytes());
        // Every type is known: an error (if any) is about its fields, not its type.
        if let Err(Reply { result: Err(f), .. }) = got {
            assert!(!f.message.contains("unknown request type"), "{kind}: {f}");
        }
    }
}
