//! One control connection (protocol.md, section 8), the inherited fd or a socket connection: a
//! thin adapter that turns request lines into [`Handle`] calls and pushes events; the lines
//! themselves are the types of [`crate::control`]. One connection is a reader task and a writer
//! task; a slow request (a stop that waits for processes to go) runs on its own task, so it
//! never delays the others.
//!
//! Every connection's memory is bounded, whatever its peer does: at most [`MAX_IN_FLIGHT`]
//! requests are carried out at once and [`outbox::REPLY_QUEUE`] replies wait to be written; beyond
//! that the connection is not read (its peer's writes block), so a client that does not read
//! its replies is held back, not buffered. Events wait in a queue of at most [`outbox::EVENT_QUEUE`]
//! events and [`outbox::EVENT_QUEUE_BYTES`]; beyond that they are dropped for that connection, and
//! once there is room again it gets one `lagged` event with the number dropped.

mod outbox;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pm_child::protocol::{Frame, LineDecoder, MAX_LINE_BYTES};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, broadcast};

use crate::control::{
    Answer, Command, ErrorCode, Event, Failure, Logs, Message, Reply, Request, RequestId, Services,
    Start, Wait,
};
use crate::framing::LineReader;
use crate::supervisor::{ActionError, EventKind, Handle, ServiceId};
use outbox::Outbox;

/// `timeout_ms` of a `start` with `wait: "ready"` when the request does not say.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests of one connection carried out at once; the connection is not read meanwhile.
const MAX_IN_FLIGHT: usize = 32;

/// Why an action failed, as a reply says it.
fn action_failure(e: ActionError) -> Failure {
    let code = match e {
        ActionError::NoSuchService(_) => ErrorCode::NoSuchService,
        ActionError::ReservedData | ActionError::TooLarge(_) => ErrorCode::BadRequest,
        ActionError::ShuttingDown | ActionError::Gone => ErrorCode::ShuttingDown,
        ActionError::NoConfig => ErrorCode::NoConfig,
        ActionError::BadConfig(_) => ErrorCode::BadConfig,
    };
    Failure::new(code, e.to_string())
}

/// The reply line to request `id`.
fn reply(id: Option<RequestId>, result: Result<Answer, Failure>) -> Vec<u8> {
    Message::Reply(Reply { id, result }).encode()
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnEof {
    /// Nothing happens (a CLI connection).
    Nothing,
    /// Every service is stopped and the supervisor exits (the controlling process is gone).
    Shutdown,
}

/// Serves one control connection until EOF. `events`: push every event from this subscription
/// on (the inherited fd; made by the caller, so that nothing that happens before this task runs
/// is missed) rather than only after `subscribe`. `base`: folder for relative paths of `start`
/// specs.
pub(crate) async fn serve_connection<S>(
    stream: S,
    handle: Handle,
    events: Option<broadcast::Receiver<crate::supervisor::Event>>,
    base: Arc<Path>,
    on_eof: OnEof,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let outbox = Arc::new(Outbox::new());
    let writer = tokio::spawn(write_out(wr, outbox.clone()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut pusher = None;
    if let Some(events) = events {
        pusher = Some(tokio::spawn(push_events(events, outbox.clone())));
    }
    let mut reader = LineReader::new(rd, LineDecoder::new(MAX_LINE_BYTES), 64 * 1024);
    'read: loop {
        let mut lines = Vec::new();
        let more = reader
            .read(|f| {
                lines.push(match f {
                    Frame::Line(l) => Ok(l.to_vec()),
                    Frame::TooLong { len } => Err(len),
                })
            })
            .await;
        if !more {
            break;
        }
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

/// Checks one request line as a connection would: Ok for a request it would carry out (or an
/// empty line), Err with the error reply it would send. For fuzzing and tests.
pub fn check_request(line: &[u8]) -> Result<(), Value> {
    match Request::parse(line) {
        Ok(_) => Ok(()),
        Err(refusal) => Err(serde_json::to_value(Message::Reply(refusal)).unwrap_or(Value::Null)),
    }
}

async fn execute(command: Command, handle: &Handle, base: &Path) -> Result<Answer, Failure> {
    let done = match command {
        Command::Start(r) => return start(handle, *r, base).await,
        Command::Stop(which) => handle.stop(which).await.map(Answer::Rows),
        Command::Restart(which) => handle.restart(which).await.map(Answer::Rows),
        Command::Stopall => handle.stop(Services::All).await.map(Answer::Rows),
        Command::Delete(which) => handle.delete(which).await.map(Answer::Rows),
        Command::Describe(which) => handle
            .describe(which)
            .await
            .map(|services| Answer::Described { services }),
        Command::Reload => handle.reload().await.map(|r| Answer::Reloaded(Box::new(r))),
        Command::List => handle.list().await.map(Answer::Rows),
        Command::Send(s) => handle
            .send(s.to, s.data)
            .await
            .map(|sent| Answer::Sent { sent }),
        Command::Disconnect(which) => handle
            .disconnect(which)
            .await
            .map(|disconnected| Answer::Disconnected { disconnected }),
        Command::Logs(l) => handle
            .logs(
                l.of,
                l.lines.unwrap_or(Logs::MAX_LINES).min(Logs::MAX_LINES),
            )
            .await
            .map(|lines| Answer::Lines { lines }),
        Command::Shutdown => handle.shutdown().await.map(|()| Answer::Done),
        // The connection started pushing events when it read the request.
        Command::Subscribe => Ok(Answer::Done),
    };
    done.map_err(action_failure)
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
        .map_err(|e| Failure::bad_spec(&crate::config::path_to_string(&e.field), &e.message))?;
    let wait_ready = request.wait == Some(Wait::Ready);
    // Subscribed before the start, so the ready event cannot be missed.
    let mut events = handle.subscribe();
    let row = handle
        .start(spec, wait_ready)
        .await
        .map_err(action_failure)?;
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
    let rows = handle.list().await.map_err(action_failure)?;
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
mod tests;
