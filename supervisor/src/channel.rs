//! The supervisor's end of a child's channel: a reader task that decodes lines into events for
//! the actor, and a writer task fed through a bounded queue, so that a child that never reads
//! can fill its own queue but never block the supervisor.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_child::protocol::{self, Decoded, Frame, FromChild, LineDecoder, LineError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Messages queued for a child that is not reading; beyond this, sends fail at once.
pub const QUEUE_LEN: usize = 64;

/// What a channel reports to the actor, with the process number it belongs to.
#[derive(Debug)]
pub enum ChannelEvent {
    /// A valid message.
    Message(FromChild),
    /// The channel is closed or broken (EOF, or a write failed).
    Closed,
}

/// Starts the reader and writer tasks for `stream` (the supervisor's end). Returns the queue for
/// lines to send. Events go to `events` tagged with `proc`.
pub fn start(
    stream: UnixStream,
    label: Arc<str>,
    proc: u64,
    events: mpsc::Sender<(u64, ChannelEvent)>,
) -> std::io::Result<mpsc::Sender<Arc<[u8]>>> {
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(QUEUE_LEN);

    let writer_events = events.clone();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(&line).await.is_err() {
                let _ = writer_events.send((proc, ChannelEvent::Closed)).await;
                return;
            }
        }
    });

    tokio::spawn(async move {
        let mut decoder = LineDecoder::default();
        let mut warn = WarnLimit::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut decoded = Vec::new();
            decoder.feed(&buf[..n], |frame| match frame {
                Frame::Line(line) => decoded.push(protocol::decode::<FromChild>(line)),
                Frame::TooLong { len } => decoded.push(Err(LineError::TooLong { len })),
            });
            for d in decoded {
                match d {
                    Ok(Decoded::Message(m)) => {
                        if events.send((proc, ChannelEvent::Message(m))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Decoded::Unknown(kind)) => {
                        tracing::debug!(service = %label, kind, "unknown message type ignored");
                    }
                    Ok(Decoded::Empty) => {}
                    Err(e) => warn.warn(&label, &e),
                }
            }
        }
        if decoder.has_pending() {
            tracing::warn!(service = %label, "channel closed in the middle of a line; the partial line is dropped");
        }
        let _ = events.send((proc, ChannelEvent::Closed)).await;
    });
    Ok(tx)
}

/// At most [`WarnLimit::BURST`] warnings per window per channel, then a count of the rest, so
/// that a child writing garbage cannot flood the supervisor's own log.
#[derive(Debug)]
struct WarnLimit {
    window: Instant,
    shown: u32,
    hidden: u64,
}

impl Default for WarnLimit {
    fn default() -> Self {
        Self {
            window: Instant::now(),
            shown: 0,
            hidden: 0,
        }
    }
}

impl WarnLimit {
    const BURST: u32 = 5;
    const WINDOW: Duration = Duration::from_secs(10);

    fn warn(&mut self, label: &str, e: &LineError) {
        if self.window.elapsed() >= Self::WINDOW {
            if self.hidden > 0 {
                tracing::warn!(service = %label, count = self.hidden, "more bad channel lines were skipped");
            }
            *self = Self::default();
        }
        if self.shown < Self::BURST {
            self.shown += 1;
            tracing::warn!(service = %label, "bad channel line skipped: {e}");
        } else {
            self.hidden += 1;
        }
    }
}
