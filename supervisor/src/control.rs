//! The control channel (protocol.md, section 8): a thin adapter that turns request lines into
//! [`Handle`] calls and pushes events. One connection is a reader task and a writer task; a
//! slow request (a stop that waits for processes to go) runs on its own task, so it never
//! delays the others.
//!
//! Every connection's memory is bounded, whatever its peer does: at most [`MAX_IN_FLIGHT`]
//! requests are carried out at once and [`REPLY_QUEUE`] replies wait to be written; beyond
//! that the connection is not read (its peer's writes block), so a client that does not read
//! its replies is held back, not buffered. Events wait in a queue of at most [`EVENT_QUEUE`]
//! events and [`EVENT_QUEUE_BYTES`]; beyond that they are dropped for that connection, and
//! once there is room again it gets one `lagged` event with the number dropped.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pm_child::protocol::{Frame, LineDecoder, MAX_LINE_BYTES};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, broadcast};

use crate::config::RawService;
use crate::json_locate;
use crate::supervisor::{ActionError, EventKind, Handle, Selector, ServiceId};

/// `timeout_ms` of a `start` with `wait: "ready"` when the request does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests of one connection carried out at once; the connection is not read meanwhile.
pub const MAX_IN_FLIGHT: usize = 32;
/// Replies of one connection waiting to be written.
pub const REPLY_QUEUE: usize = 16;
/// Events waiting to be written to one connection, at most...
pub const EVENT_QUEUE: usize = 1024;
/// ...and at most this many bytes of them: room for several messages of the largest size a
/// child may send (1 MiB), so that a burst of large messages reaches a controller that reads
/// normally (a single larger event still goes into an empty queue).
pub const EVENT_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// A request, as parsed from a line.
#[derive(Debug)]
enum Request {
    Start(Box<StartRequest>),
    Stop(NameRequest),
    Restart(NameRequest),
    Stopall(IdOnly),
    List(IdOnly),
    Send(SendRequest),
    Disconnect(NameRequest),
    Shutdown(IdOnly),
    Subscribe(IdOnly),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    #[serde(rename = "type")]
    _type: String,
    id: Value,
    spec: RawService,
    base: Option<PathBuf>,
    wait: Option<Wait>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    #[serde(rename = "type")]
    _type: String,
    id: Value,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    #[serde(rename = "type")]
    _type: String,
    id: Value,
    name: String,
    #[serde(default)]
    data: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdOnly {
    #[serde(rename = "type")]
    _type: String,
    id: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Wait {
    Launched,
    Ready,
}

/// A failed request: an error code and a message a person can act on.
#[derive(Debug)]
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<ActionError> for Failure {
    fn from(e: ActionError) -> Failure {
        let code = match e {
            ActionError::NoSuchService(_) => "no_such_service",
            ActionError::ReservedData | ActionError::TooLarge(_) => "bad_request",
            _ => "shutting_down",
        };
        Failure::new(code, e.to_string())
    }
}

fn reply(id: &Value, result: Result<Value, Failure>) -> Value {
    match result {
        Ok(result) => json!({"type": "reply", "id": id, "ok": true, "result": result}),
        Err(f) => {
            json!({"type": "reply", "id": id, "ok": false, "error": f.message, "code": f.code})
        }
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEof {
    /// Nothing happens (a CLI connection).
    Nothing,
    /// Every service is stopped and the supervisor exits (the controlling process is gone).
    Shutdown,
}

/// Serves one control connection until EOF. `events`: push every event from this subscription
/// on (the inherited fd; made by the caller, so that nothing that happens before this task runs
/// is missed) rather than only after `subscribe`. `base`: folder for relative paths of `start`
/// specs.
pub async fn serve_connection<S>(
    stream: S,
    handle: Handle,
    events: Option<broadcast::Receiver<crate::supervisor::Event>>,
    base: Arc<Path>,
    on_eof: OnEof,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let outbox = Arc::new(Outbox::new());
    let writer = tokio::spawn(write_out(wr, outbox.clone()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut pusher = None;
    if let Some(events) = events {
        pusher = Some(tokio::spawn(push_events(events, outbox.clone())));
    }
    let mut decoder = LineDecoder::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut lines = Vec::new();
        decoder.feed(&buf[..n], |f| {
            lines.push(match f {
                Frame::Line(l) => Ok(l.to_vec()),
                Frame::TooLong { len } => Err(len),
            })
        });
        for line in lines {
            let line = match line {
                Ok(l) => l,
                Err(len) => {
                    let f = Failure::new(
                        "bad_request",
                        format!(
                            "request line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit"
                        ),
                    );
                    if outbox.reply(reply(&Value::Null, Err(f))).await.is_err() {
                        break 'read;
                    }
                    continue;
                }
            };
            let request = match parse(&line) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err((id, f)) => {
                    if outbox.reply(reply(&id, Err(f))).await.is_err() {
                        break 'read;
                    }
                    continue;
                }
            };
            if let Request::Subscribe(r) = &request {
                if pusher.is_none() {
                    pusher = Some(tokio::spawn(push_events(
                        handle.subscribe(),
                        outbox.clone(),
                    )));
                }
                if outbox.reply(reply(&r.id, Ok(Value::Null))).await.is_err() {
                    break 'read;
                }
                continue;
            }
            // Back-pressure: while MAX_IN_FLIGHT requests wait to be carried out or for room for
            // their replies, nothing more is read from this connection.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break 'read;
            };
            let (handle, out, base) = (handle.clone(), outbox.clone(), base.clone());
            tokio::spawn(async move {
                let (id, result) = execute(request, &handle, &base).await;
                let _ = out.reply(reply(&id, result)).await;
                drop(permit);
            });
        }
    }
    if on_eof == OnEof::Shutdown {
        tracing::info!(
            "the controlling process closed the control channel: stopping every service"
        );
        let _ = handle.shutdown().await;
    }
    if let Some(p) = pusher {
        p.abort();
    }
    // Every request read is answered before the connection is let go.
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    outbox.finish();
    let _ = writer.await;
}

/// One line of JSON, as written on the channel.
fn encode(v: &Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    line.push(b'\n');
    line
}

/// Writes what the outbox holds, in order, until it is finished and empty or the peer is gone.
async fn write_out<W: AsyncWrite>(wr: W, outbox: Arc<Outbox>) {
    tokio::pin!(wr);
    while let Some(line) = outbox.next().await {
        if wr.write_all(&line).await.is_err() {
            break;
        }
    }
    outbox.close();
}

/// What waits to be written to one connection, in the order it happened: replies (at most
/// [`REPLY_QUEUE`]; a request waits for room) and events (at most [`EVENT_QUEUE`] and
/// [`EVENT_QUEUE_BYTES`]; beyond, they are dropped and counted).
#[derive(Debug)]
struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    ready: Notify,
    /// Room for replies.
    reply_room: Semaphore,
}

#[derive(Debug, Default)]
struct Queue {
    /// Lines, and whether each is an event.
    lines: VecDeque<(Vec<u8>, bool)>,
    events: usize,
    event_bytes: usize,
    /// Events dropped since the last `lagged` event.
    missed: u64,
    /// Nothing more comes: the writer ends once the queue is empty.
    finished: bool,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            reply_room: Semaphore::new(REPLY_QUEUE),
        }
    }

    /// Queues a reply, waiting for room. Err: the connection is gone.
    async fn reply(&self, reply: Value) -> Result<(), ()> {
        self.reply_room.acquire().await.map_err(|_| ())?.forget();
        if let Ok(mut q) = self.queue.lock() {
            q.lines.push_back((encode(&reply), false));
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Queues an event, or drops it (and counts it) when the queue is full. When there is room
    /// again after drops, a `lagged` event saying how many goes first.
    fn event(&self, line: Vec<u8>) {
        let Ok(mut q) = self.queue.lock() else { return };
        // One place is kept for the `lagged` event.
        let room = q.events == 0
            || (q.events + 2 <= EVENT_QUEUE && q.event_bytes + line.len() <= EVENT_QUEUE_BYTES);
        if !room {
            q.missed += 1;
            return;
        }
        if q.missed > 0 {
            let lagged = lagged(std::mem::take(&mut q.missed));
            q.push_event(lagged);
        }
        q.push_event(line);
        drop(q);
        self.ready.notify_one();
    }

    /// Events the broadcast itself dropped for this connection.
    fn missed(&self, n: u64) {
        if let Ok(mut q) = self.queue.lock() {
            q.missed += n;
        }
        self.ready.notify_one();
    }

    /// The next line to write (the `lagged` event once the queue is empty after drops), or None
    /// once finished and empty.
    async fn next(&self) -> Option<Vec<u8>> {
        loop {
            if let Ok(mut q) = self.queue.lock() {
                if let Some((line, event)) = q.lines.pop_front() {
                    if event {
                        q.events -= 1;
                        q.event_bytes -= line.len();
                    } else {
                        self.reply_room.add_permits(1);
                    }
                    return Some(line);
                }
                if q.missed > 0 {
                    return Some(lagged(std::mem::take(&mut q.missed)));
                }
                if q.finished {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Nothing more will be queued.
    fn finish(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.finished = true;
        }
        self.ready.notify_one();
    }

    /// The peer is gone: replies are refused from now on.
    fn close(&self) {
        self.reply_room.close();
    }
}

impl Queue {
    fn push_event(&mut self, line: Vec<u8>) {
        self.events += 1;
        self.event_bytes += line.len();
        self.lines.push_back((line, true));
    }
}

fn lagged(missed: u64) -> Vec<u8> {
    encode(&json!({"type": "event", "event": "lagged", "missed": missed}))
}

/// Checks one request line as a connection would: Ok for a request it would carry out (or an
/// empty line), Err with the error reply it would send. For fuzzing and tests.
pub fn check_request(line: &[u8]) -> Result<(), Value> {
    match parse(line) {
        Ok(_) => Ok(()),
        Err((id, f)) => Err(reply(&id, Err(f))),
    }
}

/// Parses a request line. Ok(None): an empty line. Err carries the id (if one could be read).
fn parse(line: &[u8]) -> Result<Option<Request>, (Value, Failure)> {
    let bad = |id: Value, m: String| Err((id, Failure::new("bad_request", m)));
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(e) => {
            return bad(
                Value::Null,
                format!(
                    "request is not UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            );
        }
    };
    if text.is_empty() {
        return Ok(None);
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad(Value::Null, format!("request is not JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return bad(
            Value::Null,
            "a request is a JSON object with \"type\" and \"id\"".into(),
        );
    };
    let id = match obj.get("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id.clone(),
        Some(_) => return bad(Value::Null, "\"id\" must be a number or a string".into()),
        None => return bad(Value::Null, "request has no \"id\"".into()),
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return bad(id, "request has no string \"type\"".into());
    };
    let kind = kind.to_owned();
    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
        serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })
    }
    let parsed = match kind.as_str() {
        "start" => typed(value).map(|r| Request::Start(Box::new(r))),
        "stop" => typed(value).map(Request::Stop),
        "restart" => typed(value).map(Request::Restart),
        "stopall" => typed(value).map(Request::Stopall),
        "list" => typed(value).map(Request::List),
        "send" => typed(value).map(Request::Send),
        "disconnect" => typed(value).map(Request::Disconnect),
        "shutdown" => typed(value).map(Request::Shutdown),
        "subscribe" => typed(value).map(Request::Subscribe),
        _ => {
            return bad(
                id,
                format!(
                    "unknown request type {kind:?} (known: start, stop, restart, stopall, list, send, disconnect, shutdown, subscribe)"
                ),
            );
        }
    };
    parsed.map(Some).map_err(|e| {
        // The spec's own fields describe the caller's service, not the request's shape.
        let code = if e.starts_with("spec") {
            "bad_spec"
        } else {
            "bad_request"
        };
        (
            id,
            Failure::new(code, format!("bad \"{kind}\" request: {e}")),
        )
    })
}

async fn execute(
    request: Request,
    handle: &Handle,
    base: &Path,
) -> (Value, Result<Value, Failure>) {
    match request {
        Request::Start(r) => {
            let base = r.base.as_deref().unwrap_or(base);
            let result = start(handle, &r.spec, base, r.wait, r.timeout_ms).await;
            (r.id, result)
        }
        Request::Stop(r) => (r.id, rows(handle.stop(Selector::Name(r.name)).await)),
        Request::Restart(r) => (r.id, rows(handle.restart(Selector::Name(r.name)).await)),
        Request::Stopall(r) => (r.id, rows(handle.stop(Selector::All).await)),
        Request::List(r) => (r.id, rows(handle.list().await)),
        Request::Send(r) => {
            let sent = handle
                .send(Selector::Name(r.name), r.data)
                .await
                .map(|n| json!({ "sent": n }))
                .map_err(Failure::from);
            (r.id, sent)
        }
        Request::Disconnect(r) => {
            let closed = handle
                .disconnect(Selector::Name(r.name))
                .await
                .map(|n| json!({ "disconnected": n }))
                .map_err(Failure::from);
            (r.id, closed)
        }
        Request::Shutdown(r) => (
            r.id,
            handle
                .shutdown()
                .await
                .map(|()| Value::Null)
                .map_err(Failure::from),
        ),
        Request::Subscribe(r) => (r.id, Ok(Value::Null)),
    }
}

fn rows<T: serde::Serialize>(r: Result<T, ActionError>) -> Result<Value, Failure> {
    r.map(|rows| serde_json::to_value(rows).unwrap_or(Value::Null))
        .map_err(Failure::from)
}

async fn start(
    handle: &Handle,
    raw: &RawService,
    base: &Path,
    wait: Option<Wait>,
    timeout_ms: Option<u64>,
) -> Result<Value, Failure> {
    let base = if base.is_absolute() {
        base.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(base)
    };
    let spec = raw.resolve(&base, None).map_err(|e| {
        let field = json_locate::path_to_string(&e.field);
        Failure::new("bad_spec", format!("spec.{field}: {}", e.message))
    })?;
    let wait_ready = wait == Some(Wait::Ready);
    // Subscribed before the start, so the ready event cannot be missed.
    let mut events = handle.subscribe();
    let row = handle
        .start(spec, wait_ready)
        .await
        .map_err(Failure::from)?;
    if row.pid.is_none() {
        let why = row.error.clone().unwrap_or_else(|| "launch failed".into());
        return Err(Failure::new("launch_failed", why));
    }
    if wait_ready {
        let limit = timeout_ms.map_or(DEFAULT_READY_TIMEOUT, Duration::from_millis);
        wait_ready_event(&mut events, row.id, limit).await?;
        let rows = handle.list().await.map_err(Failure::from)?;
        let row = rows.into_iter().find(|r| r.id == row.id);
        return Ok(serde_json::to_value(row).unwrap_or(Value::Null));
    }
    Ok(serde_json::to_value(row).unwrap_or(Value::Null))
}

async fn wait_ready_event(
    events: &mut broadcast::Receiver<crate::supervisor::Event>,
    id: ServiceId,
    limit: Duration,
) -> Result<(), Failure> {
    let waiting = async {
        loop {
            match events.recv().await {
                Ok(e) if e.id == id => match e.kind {
                    EventKind::Ready { .. } => return Ok(()),
                    EventKind::Exited { exit, .. } => {
                        return Err(Failure::new(
                            "launch_failed",
                            format!("exited before it was ready: {exit}"),
                        ));
                    }
                    _ => {}
                },
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Failure::new(
                        "shutting_down",
                        "the supervisor is shutting down",
                    ));
                }
            }
        }
    };
    match tokio::time::timeout(limit, waiting).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            "timeout",
            format!("not ready after {} ms; it keeps running", limit.as_millis()),
        )),
    }
}

async fn push_events(
    mut events: broadcast::Receiver<crate::supervisor::Event>,
    outbox: Arc<Outbox>,
) {
    loop {
        match events.recv().await {
            Ok(e) => {
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("type".into(), "event".into());
                }
                outbox.event(encode(&v));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => outbox.missed(n),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> (Value, &'static str, String) {
        match parse(line.as_bytes()) {
            Err((id, f)) => (id, f.code, f.message),
            Ok(r) => panic!("{line} parsed: {r:?}"),
        }
    }

    proptest::proptest! {
        /// Whatever a controller sends, parsing answers (a request or an error), never panics.
        #[test]
        fn parsing_never_panics(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&line);
        }

        #[test]
        fn parsing_json_shaped_junk_never_panics(
            kind in "start|stop|restart|stopall|list|send|disconnect|shutdown|subscribe|x",
            id in "1|\"a\"|null|\\{\\}|\\[\\]|-1|1\\.5",
            extra in "|,\"name\":1|,\"spec\":\\{\\}|,\"spec\":\\{\"script\":1\\}|,\"data\":\\[\\]|,\"wait\":\"soon\"",
        ) {
            let line = format!("{{\"type\":\"{kind}\",\"id\":{id}{extra}}}");
            let _ = parse(line.as_bytes());
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
        assert_eq!(v["missed"], json!(500 + 1));
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
        outbox.reply(json!(1)).await.expect("room");
        outbox.event(b"e2\n".to_vec());
        for i in 2..=REPLY_QUEUE {
            outbox.reply(json!(i)).await.expect("room");
        }
        // The queue of replies is full: the next one waits until one is written.
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.reply(json!("last")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(outbox.next().await, Some(b"e1\n".to_vec()));
        assert_eq!(outbox.next().await, Some(b"1\n".to_vec()));
        waiting.await.expect("task").expect("room");
        assert_eq!(outbox.next().await, Some(b"e2\n".to_vec()));
        // The peer is gone: replies are refused rather than held.
        outbox.close();
        assert!(outbox.reply(json!("x")).await.is_err());
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

    #[test]
    fn good_requests_parse() {
        assert!(matches!(
            parse(br#"{"type":"stop","id":1,"name":"web"}"#),
            Ok(Some(Request::Stop(_)))
        ));
        assert!(matches!(
            parse(br#"{"type":"list","id":"a"}"#),
            Ok(Some(Request::List(_)))
        ));
        assert!(matches!(
            parse(br#"{"type":"start","id":2,"spec":{"script":"a.js","name":"x"},"wait":"ready"}"#),
            Ok(Some(Request::Start(r))) if r.wait == Some(Wait::Ready)
        ));
        assert!(matches!(parse(b"   "), Ok(None)));
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        assert_eq!(err("{oops").1, "bad_request");
        let (id, _, m) = err(r#"{"type":"stop","name":"x"}"#);
        assert_eq!((id, m.as_str()), (Value::Null, "request has no \"id\""));
        let (id, _, m) = err(r#"{"type":"frobnicate","id":4}"#);
        assert_eq!(id, json!(4));
        assert!(m.contains("unknown request type \"frobnicate\""), "{m}");
        let (_, _, m) = err(r#"{"type":"stop","id":5,"name":7}"#);
        assert!(
            m.contains("bad \"stop\" request: name: invalid type"),
            "{m}"
        );
        let (_, code, m) = err(r#"{"type":"start","id":6,"spec":{"scirpt":"a.js"}}"#);
        assert_eq!(code, "bad_spec");
        assert!(
            m.contains("spec") && m.contains("unknown field `scirpt`"),
            "{m}"
        );
        let (_, _, m) = err(r#"{"type":"stop","id":{},"name":"x"}"#);
        assert!(m.contains("number or a string"), "{m}");
        assert_eq!(err("[1]").1, "bad_request");
    }
}
