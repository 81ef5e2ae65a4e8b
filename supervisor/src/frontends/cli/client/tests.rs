use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::control::vectors;

/// A client whose supervisor is `serve`, run on a thread: it gets the other end of the
/// connection and returns what the test wants to see.
fn with_server<T: Send + 'static>(
    serve: impl FnOnce(BufReader<UnixStream>) -> T + Send + 'static,
) -> (Client, std::thread::JoinHandle<T>) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    for s in [&ours, &theirs] {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
    }
    let server = std::thread::spawn(move || serve(BufReader::new(theirs)));
    (
        Client::over(ours, Path::new("test.sock")).expect("client"),
        server,
    )
}

fn read_request(conn: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    conn.read_line(&mut line).expect("a request line");
    serde_json::from_str(&line).expect("the CLI writes JSON")
}

/// Every request of the shared vectors, as the CLI writes it, is what the supervisor reads.
#[test]
fn the_cli_writes_requests_as_the_vectors_say() {
    let mut seen = 0;
    for case in vectors() {
        let Some(want) = case["expect"].get("request") else {
            continue;
        };
        let request: Request = serde_json::from_value(want.clone()).expect("a request");
        let (mut client, server) = with_server(|mut conn| {
            let got = read_request(&mut conn);
            let reply =
                serde_json::json!({"type": "reply", "id": got["id"], "ok": true, "result": null});
            conn.get_mut()
                .write_all(format!("{reply}\n").as_bytes())
                .expect("write");
            got
        });
        assert_eq!(client.request(request.command).ok(), Some(Answer::Done));
        let mut got = server.join().expect("server");
        let mut want = want.clone();
        // The client numbers its own requests.
        got["id"] = Value::Null;
        want["id"] = Value::Null;
        assert_eq!(got, want, "{}", case["name"]);
        seen += 1;
    }
    assert!(seen > 15, "{seen}");
}

/// The CLI reads every reply of the shared vectors (events before it are skipped): an answer,
/// or the error message; a `fatal` message ends the request with its error.
#[test]
fn the_cli_reads_replies_as_the_vectors_say() {
    let event = vectors()
        .into_iter()
        .find(|c| c["expect"].get("event").is_some())
        .expect("an event vector");
    let mut seen = 0;
    for case in vectors() {
        let Some(line) = case["message"].as_str() else {
            continue;
        };
        let mut message: Value = serde_json::from_str(line).expect("json");
        if message["type"] == "event" {
            continue;
        }
        let event = event["message"].as_str().expect("message").to_owned();
        let (mut client, server) = with_server(move |mut conn| {
            let got = read_request(&mut conn);
            if message["type"] == "reply" {
                message["id"] = got["id"].clone();
            }
            let w = conn.get_mut();
            w.write_all(format!("{event}\n{message}\n").as_bytes())
                .expect("write");
            message
        });
        let result = client.request(Command::List);
        let message = server.join().expect("server");
        match result {
            Ok(answer) => {
                assert_eq!(message["ok"], true, "{}", case["name"]);
                assert_eq!(
                    serde_json::to_value(answer).ok().as_ref(),
                    Some(&message["result"])
                );
            }
            Err(e) => {
                let error = message.get("error").expect("an error");
                assert_eq!(error.as_str(), Some(e.0.as_str()), "{}", case["name"]);
            }
        }
        seen += 1;
    }
    assert!(seen > 10, "{seen}");
}
