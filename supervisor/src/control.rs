//! The control channel (protocol.md, section 8): a thin adapter that turns request lines into
//! [`Handle`] calls and pushes events; the lines themselves are the types of [`protocol`]. One connection is a reader task and a writer task; a
//! slow request (a stop that waits for processes to go) runs on its own task, so it never
//! delays the others.
//!
//! Every connection's memory is bounded, whatever its peer does: at most [`MAX_IN_FLIGHT`]
//! requests are carried out at once and [`REPLY_QUEUE`] replies wait to be written; beyond
//! that the connection is not read (its peer's writes block), so a client that does not read
//! its replies is held back, not buffered. Events wait in a queue of at most [`EVENT_QUEUE`]
//! events and [`EVENT_QUEUE_BYTES`]; beyond that they are dropped for that connection, and
//! once there is room again it gets one `lagged` event with the number dropped.

pub mod protocol;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pm_child::protocol::{Frame, LineDecoder, MAX_LINE_BYTES};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, broadcast};

use crate::json_locate;
use crate::supervisor::{ActionError, EventKind, Handle, Selector, ServiceId};
use protocol::{
    Answer, Command, ErrorCode, Event, Failure, Lagged, Message, Reply, Request, RequestId,
    Services, Start, Wait,
};

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

/// Why an action failed, as a reply says it. `target`: what the request acted on.
fn action_failure(e: ActionError, target: Option<&Services>) -> Failure {
    match (e, target) {
        (ActionError::NoSuchService(_), Some(Services::Id(id))) => {
            Failure::new(ErrorCode::NoSuchService, format!("no service with id {id}"))
        }
        (e @ ActionError::NoSuchService(_), _) => {
            Failure::new(ErrorCode::NoSuchService, e.to_string())
        }
        (e @ (ActionError::ReservedData | ActionError::TooLarge(_)), _) => {
            Failure::new(ErrorCode::BadRequest, e.to_string())
        }
        (e, _) => Failure::new(ErrorCode::ShuttingDown, e.to_string()),
    }
}

/// The reply line to request `id`.
fn reply(id: Option<RequestId>, result: Result<Answer, Failure>) -> Vec<u8> {
    Message::Reply(Reply { id, result }).encode()
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
                        ErrorCode::BadRequest,
                        format!(
                            "request line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit"
                        ),
                    );
                    if outbox.reply(reply(None, Err(f))).await.is_err() {
                        break 'read;
                    }
                    continue;
                }
            };
            let request = match Request::parse(&line) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(refusal) => {
                    if outbox
                        .reply(Message::Reply(refusal).encode())
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                    continue;
                }
            };
            // Started here, before the reply is queued, so that no event after it is missed.
            if request.command == Command::Subscribe && pusher.is_none() {
                pusher = Some(tokio::spawn(push_events(
                    handle.subscribe(),
                    outbox.clone(),
                )));
            }
            // Back-pressure: while MAX_IN_FLIGHT requests wait to be carried out or for room for
            // their replies, nothing more is read from this connection.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break 'read;
            };
            let (handle, out, base) = (handle.clone(), outbox.clone(), base.clone());
            tokio::spawn(async move {
                let result = execute(request.command, &handle, &base).await;
                let _ = out.reply(reply(Some(request.id), result)).await;
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

    /// Queues a reply line, waiting for room. Err: the connection is gone.
    async fn reply(&self, line: Vec<u8>) -> Result<(), ()> {
        self.reply_room.acquire().await.map_err(|_| ())?.forget();
        if let Ok(mut q) = self.queue.lock() {
            q.lines.push_back((line, false));
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
    Message::Event(Event::Lagged(Lagged { missed })).encode()
}

/// Checks one request line as a connection would: Ok for a request it would carry out (or an
/// empty line), Err with the error reply it would send. For fuzzing and tests.
pub fn check_request(line: &[u8]) -> Result<(), Value> {
    match Request::parse(line) {
        Ok(_) => Ok(()),
        Err(refusal) => Err(serde_json::to_value(Message::Reply(refusal)).unwrap_or(Value::Null)),
    }
}

async fn execute(command: Command, handle: &Handle, base: &Path) -> Result<Answer, Failure> {
    match command {
        Command::Start(r) => start(handle, *r, base).await,
        Command::Stop(t) => rows(handle.stop(t.clone().into()).await, &t),
        Command::Restart(t) => rows(handle.restart(t.clone().into()).await, &t),
        Command::Stopall => rows(handle.stop(Selector::All).await, &Services::All),
        Command::List => handle
            .list()
            .await
            .map(Answer::Rows)
            .map_err(|e| action_failure(e, None)),
        Command::Send(s) => handle
            .send(s.to.clone().into(), s.data)
            .await
            .map(|sent| Answer::Sent { sent })
            .map_err(|e| action_failure(e, Some(&s.to))),
        Command::Disconnect(t) => handle
            .disconnect(t.clone().into())
            .await
            .map(|disconnected| Answer::Disconnected { disconnected })
            .map_err(|e| action_failure(e, Some(&t))),
        Command::Shutdown => handle
            .shutdown()
            .await
            .map(|()| Answer::Done)
            .map_err(|e| action_failure(e, None)),
        // The connection started pushing events when it read the request.
        Command::Subscribe => Ok(Answer::Done),
    }
}

fn rows(r: crate::supervisor::Rows, target: &Services) -> Result<Answer, Failure> {
    r.map(Answer::Rows)
        .map_err(|e| action_failure(e, Some(target)))
}

async fn start(handle: &Handle, request: Start, base: &Path) -> Result<Answer, Failure> {
    let base = request.base.as_deref().unwrap_or(base);
    let base = if base.is_absolute() {
        base.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(base)
    };
    let spec = request
        .spec
        .resolve(&base, None)
        .map_err(|e| Failure::bad_spec(&json_locate::path_to_string(&e.field), &e.message))?;
    let wait_ready = request.wait == Some(Wait::Ready);
    // Subscribed before the start, so the ready event cannot be missed.
    let mut events = handle.subscribe();
    let row = handle
        .start(spec, wait_ready)
        .await
        .map_err(|e| action_failure(e, None))?;
    if row.pid.is_none() {
        let why = row.error.clone().unwrap_or_else(|| "launch failed".into());
        return Err(Failure::new(ErrorCode::LaunchFailed, why));
    }
    if !wait_ready {
        return Ok(Answer::Row(Box::new(row)));
    }
    let limit = request
        .timeout_ms
        .map_or(DEFAULT_READY_TIMEOUT, Duration::from_millis);
    wait_ready_event(&mut events, row.id, limit).await?;
    let rows = handle.list().await.map_err(|e| action_failure(e, None))?;
    match rows.into_iter().find(|r| r.id == row.id) {
        Some(now) => Ok(Answer::Row(Box::new(now))),
        // Gone from the table (it cannot be, today): the row as launched.
        None => Ok(Answer::Row(Box::new(row))),
    }
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
                            ErrorCode::LaunchFailed,
                            format!("exited before it was ready: {exit}"),
                        ));
                    }
                    _ => {}
                },
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Failure::new(
                        ErrorCode::ShuttingDown,
                        "the supervisor is shutting down",
                    ));
                }
            }
        }
    };
    match tokio::time::timeout(limit, waiting).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            ErrorCode::Timeout,
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
            Ok(e) => outbox.event(Message::Event(Event::Service(e)).encode()),
            Err(broadcast::error::RecvError::Lagged(n)) => outbox.missed(n),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for case in protocol::vectors()
            .iter()
            .filter(|c| c.get("request").is_some())
        {
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
}
