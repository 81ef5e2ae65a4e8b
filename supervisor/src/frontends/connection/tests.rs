use super::outbox::{EVENT_QUEUE, EVENT_QUEUE_BYTES, REPLY_QUEUE};
use super::*;
use crate::control::vectors;

fn err(line: &str) -> (Option<RequestId>, ErrorCode, String) {
    match Request::parse(line.as_bytes()) {
        Err(Reply { id, result: Err(f) }) => (id, f.code, f.message),
        other => panic!("{line} parsed: {other:?}"),
    }
}

proptest::proptest! {
    /// Whatever a controller sends, parsing answers (a request or an error), never panics.
    #[test]
    fn parsing_never_panics(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = Request::parse(&line);
    }

    #[test]
    fn parsing_json_shaped_junk_never_panics(
        kind in "start|stop|restart|stopall|list|send|disconnect|shutdown|subscribe|x",
        id in "1|\"a\"|null|\\{\\}|\\[\\]|-1|1\\.5",
        extra in "|,\"name\":1|,\"spec\":\\{\\}|,\"spec\":\\{\"script\":1\\}|,\"data\":\\[\\]|,\"wait\":\"soon\"",
    ) {
        let line = format!("{{\"type\":\"{kind}\",\"id\":{id}{extra}}}");
        let _ = Request::parse(line.as_bytes());
    }
}

#[tokio::test]
async fn events_beyond_the_queue_are_dropped_then_announced_once() {
    let outbox = Outbox::new();
    for i in 0..EVENT_QUEUE + 500 {
        outbox.event(format!("{i}\n").into_bytes());
    }
    let mut seen = Vec::new();
    // The writer catches up a little: room returns, the next event is preceded by `lagged`.
    for _ in 0..10 {
        seen.extend(outbox.next().await);
    }
    outbox.event(b"late\n".to_vec());
    outbox.finish();
    while let Some(line) = outbox.next().await {
        seen.push(line);
    }
    let text: Vec<String> = seen
        .iter()
        .map(|l| String::from_utf8_lossy(l).trim().to_owned())
        .collect();
    let lagged: Vec<&String> = text.iter().filter(|l| l.contains("lagged")).collect();
    assert_eq!(lagged.len(), 1, "{lagged:?}");
    let v: Value = serde_json::from_str(lagged[0]).expect("json");
    // One place is kept free for the lagged event itself.
    assert_eq!(v["missed"], serde_json::json!(500 + 1));
    assert_eq!(text.last().map(String::as_str), Some("late"));
    assert_eq!(
        text[..10],
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>()[..]
    );
}

#[tokio::test]
async fn replies_and_events_keep_their_order_and_replies_wait_for_room() {
    let outbox = Arc::new(Outbox::new());
    outbox.event(b"e1\n".to_vec());
    outbox.reply(b"1\n".to_vec()).await.expect("room");
    outbox.event(b"e2\n".to_vec());
    for i in 2..=REPLY_QUEUE {
        outbox
            .reply(format!("{i}\n").into_bytes())
            .await
            .expect("room");
    }
    // The queue of replies is full: the next one waits until one is written.
    let waiting = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.reply(b"last\n".to_vec()).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    assert_eq!(outbox.next().await, Some(b"e1\n".to_vec()));
    assert_eq!(outbox.next().await, Some(b"1\n".to_vec()));
    waiting.await.expect("task").expect("room");
    assert_eq!(outbox.next().await, Some(b"e2\n".to_vec()));
    // The peer is gone: replies are refused rather than held.
    outbox.close();
    assert!(outbox.reply(b"x\n".to_vec()).await.is_err());
}

#[test]
fn the_event_queue_is_bounded_in_bytes() {
    let outbox = Outbox::new();
    let size = 100 * 1024;
    let fit = EVENT_QUEUE_BYTES / size;
    for _ in 0..fit + 100 {
        outbox.event(vec![b'x'; size]);
    }
    let q = outbox.queue.lock().expect("lock");
    assert!(q.event_bytes <= EVENT_QUEUE_BYTES, "{}", q.event_bytes);
    assert!(q.missed >= 100, "{} dropped", q.missed);
}

/// The server reads every request of the shared vectors as they say: the request it carries
/// out (written back by the same types), or the error reply it sends.
#[test]
fn the_server_reads_the_request_vectors() {
    let mut seen = 0;
    for case in vectors().iter().filter(|c| c.get("request").is_some()) {
        let name = &case["name"];
        let line = case["request"].as_str().expect("request");
        let expect = &case["expect"];
        match Request::parse(line.as_bytes()) {
            Ok(Some(r)) => {
                assert_eq!(
                    serde_json::to_value(&r).ok().as_ref(),
                    expect.get("request"),
                    "{name}"
                );
                assert_eq!(check_request(line.as_bytes()), Ok(()), "{name}");
            }
            Ok(None) => panic!("{name}: read as an empty line"),
            Err(refusal) => {
                let want = &expect["refused"];
                let reply = check_request(line.as_bytes()).expect_err("refused");
                assert_eq!(reply["type"], "reply", "{name}");
                assert_eq!(reply["ok"], false, "{name}");
                assert_eq!(reply["id"], want["id"], "{name}: {reply}");
                assert_eq!(reply["code"], want["code"], "{name}: {reply}");
                assert_eq!(reply.get("field"), want.get("field"), "{name}: {reply}");
                let has = want["error_has"].as_str().expect("error_has");
                let error = reply["error"].as_str().expect("error");
                assert!(error.contains(has), "{name}: {error:?} lacks {has:?}");
                assert_eq!(
                    serde_json::to_value(Message::Reply(refusal)).ok(),
                    Some(reply)
                );
            }
        }
        seen += 1;
    }
    assert!(seen >= 30, "{seen} request vectors");
}

#[test]
fn good_requests_parse() {
    let parse = |line: &[u8]| Request::parse(line).expect("parses").map(|r| r.command);
    assert_eq!(
        parse(br#"{"type":"stop","id":1,"name":"web"}"#),
        Some(Command::Stop(Services::Named("web".into())))
    );
    assert_eq!(parse(br#"{"type":"list","id":"a"}"#), Some(Command::List));
    assert!(matches!(
        parse(br#"{"type":"start","id":2,"spec":{"script":"a.js","name":"x"},"wait":"ready"}"#),
        Some(Command::Start(r)) if r.wait == Some(Wait::Ready)
    ));
    assert_eq!(parse(b"   "), None);
}

#[test]
fn bad_requests_name_what_is_wrong() {
    assert_eq!(err("{oops").1, ErrorCode::BadRequest);
    let (id, _, m) = err(r#"{"type":"stop","name":"x"}"#);
    assert_eq!((id, m.as_str()), (None, "request has no \"id\""));
    let (id, _, m) = err(r#"{"type":"frobnicate","id":4}"#);
    assert_eq!(id, Some(4.into()));
    assert!(m.contains("unknown request type \"frobnicate\""), "{m}");
    let (_, _, m) = err(r#"{"type":"stop","id":5,"name":7}"#);
    assert!(
        m.contains("bad \"stop\" request: name: invalid type"),
        "{m}"
    );
    let (_, code, m) = err(r#"{"type":"start","id":6,"spec":{"scirpt":"a.js"}}"#);
    assert_eq!(code, ErrorCode::BadSpec);
    assert!(m.starts_with("spec.scirpt: unknown field `scirpt`"), "{m}");
    let (_, _, m) = err(r#"{"type":"stop","id":{},"name":"x"}"#);
    assert!(m.contains("number or a string"), "{m}");
    assert_eq!(err("[1]").1, ErrorCode::BadRequest);
}
