//! The supervisor's end of a child's channel: a reader task that decodes lines into events for
//! the actor, and a writer task fed through a bounded queue, so that a child that never reads
//! can fill its own queue but never block the supervisor.

use std::fmt::Display;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use pm_child::protocol::{self, Decoded, Frame, FromChild, LineDecoder, LineError};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::framing::LineReader;

/// Messages queued for a child that is not reading; beyond this, sends fail at once.
const QUEUE_LEN: usize = 64;

/// What a channel reports to the actor, with the process number it belongs to.
#[derive(Debug)]
pub(crate) enum ChannelEvent {
    /// A valid message, or application data.
    Message(FromChild),
    /// The channel is closed or broken (EOF, or a write failed).
    Closed,
}

/// The actor's handle on a child's channel.
#[derive(Debug)]
pub(crate) struct Channel {
    tx: mpsc::Sender<Arc<[u8]>>,
    close: oneshot::Sender<()>,
}

impl Channel {
    /// Queues a line for the child; false when the queue is full or the channel is gone.
    pub(crate) fn send(&self, line: Arc<[u8]>) -> bool {
        self.tx.try_send(line).is_ok()
    }

    /// Closes the channel for good: what is queued is still written, then the supervisor's end
    /// is closed, so the child reads EOF. Nothing more is read from the child.
    pub(crate) fn disconnect(self) {
        let _ = self.close.send(());
        // Dropping the queue's sender ends the writer once the queue is empty.
    }
}

/// Starts the reader and writer tasks for `stream` (the supervisor's end). Events go to
/// `events` tagged with `proc`. `envelope` is the size of a `message` event of this process on
/// the control channel without its data: data that would make the event longer than a line may
/// be is dropped (with a counted warning) rather than forwarded.
pub(crate) fn start(
    stream: UnixStream,
    label: Arc<str>,
    proc: u64,
    envelope: usize,
    events: mpsc::Sender<(u64, ChannelEvent)>,
) -> std::io::Result<Channel> {
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let (rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(QUEUE_LEN);
    let (close, mut closed) = oneshot::channel::<()>();

    let writer_events = events.clone();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(&line).await.is_err() {
                let _ = writer_events.send((proc, ChannelEvent::Closed)).await;
                return;
            }
        }
        // Dropping the write half shuts it down: the child reads EOF once the reader is gone too
        // (after a `disconnect`), or half-closed while the reader still reads last words.
    });

    tokio::spawn(async move {
        let mut reader = LineReader::new(rd, LineDecoder::default(), 16 * 1024);
        let mut bad = BadLines::new(Instant::now());
        let max_data = protocol::MAX_LINE_BYTES.saturating_sub(envelope);
        let mut may_close = true;
        loop {
            let mut decoded = Vec::new();
            tokio::select! {
                biased;
                // A `disconnect` ends the reading; the sender's drop at the process's exit does
                // not: its last words are still read to the end.
                close = &mut closed, if may_close => {
                    if close.is_ok() {
                        break;
                    }
                    may_close = false;
                    continue;
                }
                more = reader.read(|frame| decoded.push(match frame {
                    Frame::Line(line) => protocol::decode::<FromChild>(line),
                    Frame::TooLong { len } => Err(LineError::TooLong { len }),
                })) => if !more {
                    break;
                },
                _ = tokio::time::sleep_until(bad.due().unwrap_or_else(Instant::now)), if bad.due().is_some() => {
                    bad.summary(&label);
                    continue;
                }
            }
            for d in decoded {
                match d {
                    Ok(Decoded::Message(FromChild::Data(data)))
                        if protocol::encoded_len(&data) > max_data =>
                    {
                        let len = protocol::encoded_len(&data);
                        bad.warn(&label, Instant::now(), &TooBig { len, max_data });
                    }
                    Ok(Decoded::Message(m)) => {
                        if events.send((proc, ChannelEvent::Message(m))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Decoded::Unknown(kind)) => {
                        tracing::debug!(service = %label, kind, "unknown pm message type ignored");
                    }
                    Ok(Decoded::Empty) => {}
                    Err(e) => bad.warn(&label, Instant::now(), &e),
                }
            }
        }
        if reader.has_partial() {
            tracing::warn!(service = %label, "channel closed in the middle of a line; the partial line is dropped");
        }
        bad.summary(&label);
        let _ = events.send((proc, ChannelEvent::Closed)).await;
    });
    Ok(Channel { tx, close })
}

/// Data too large to be forwarded as an event.
struct TooBig {
    len: usize,
    max_data: usize,
}

impl Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message of {} bytes dropped: its event would exceed the {}-byte line limit of the \
             control channel (at most {} bytes of data for this service)",
            self.len,
            protocol::MAX_LINE_BYTES,
            self.max_data
        )
    }
}

/// Warnings about bad lines of one channel: at most [`BadLines::BURST`] per
/// [`BadLines::WINDOW`], each numbered; the count of the ones not shown is printed when the
/// window ends (the reader wakes up for it) or when the channel closes. Each warning is a few
/// hundred bytes at most and quotes nothing a child wrote (see [`LineError`]'s `Display`).
#[derive(Debug)]
struct BadLines {
    window: Instant,
    shown: u32,
    hidden: u64,
    total: u64,
}

impl BadLines {
    const BURST: u32 = 5;
    const WINDOW: Duration = Duration::from_secs(10);

    fn new(now: Instant) -> Self {
        Self {
            window: now,
            shown: 0,
            hidden: 0,
            total: 0,
        }
    }

    /// Records a bad line at `now`; returns whether it is to be shown.
    fn record(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Self::WINDOW && self.hidden == 0 {
            self.window = now;
            self.shown = 0;
        }
        self.total += 1;
        if self.shown < Self::BURST && self.hidden == 0 {
            self.shown += 1;
            true
        } else {
            self.hidden += 1;
            false
        }
    }

    /// When the count of hidden lines is due, if there are any.
    fn due(&self) -> Option<Instant> {
        (self.hidden > 0).then(|| self.window + Self::WINDOW)
    }

    /// Takes the count of hidden lines (and the total so far), opening a new window.
    fn take_hidden(&mut self, now: Instant) -> Option<(u64, u64)> {
        let hidden = std::mem::take(&mut self.hidden);
        self.window = now;
        self.shown = 0;
        (hidden > 0).then_some((hidden, self.total))
    }

    fn warn(&mut self, label: &str, now: Instant, what: &dyn Display) {
        if self.record(now) {
            tracing::warn!(service = %label, "bad channel line #{} skipped: {what}", self.total);
        }
    }

    fn summary(&mut self, label: &str) {
        if let Some((hidden, total)) = self.take_hidden(Instant::now()) {
            tracing::warn!(service = %label, "{hidden} more bad channel lines skipped ({total} in all)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_show_a_burst_then_count_the_rest_when_the_window_ends() {
        let t0 = Instant::now();
        let mut b = BadLines::new(t0);
        let shown: Vec<bool> = (0..8).map(|_| b.record(t0)).collect();
        assert_eq!(shown, [true, true, true, true, true, false, false, false]);
        // The count is due when the window ends, not only when another bad line comes.
        assert_eq!(b.due(), Some(t0 + BadLines::WINDOW));
        let later = t0 + BadLines::WINDOW;
        assert_eq!(b.take_hidden(later), Some((3, 8)));
        assert_eq!(b.due(), None);
        // A new window shows a burst again, and the numbering goes on.
        assert!(b.record(later + Duration::from_secs(1)));
        assert_eq!(b.total, 9);
        assert_eq!(b.take_hidden(later), None);
    }

    #[test]
    fn a_window_without_hidden_lines_starts_over_by_itself() {
        let t0 = Instant::now();
        let mut b = BadLines::new(t0);
        for _ in 0..5 {
            assert!(b.record(t0));
        }
        assert_eq!(b.due(), None, "nothing hidden, nothing due");
        let t1 = t0 + BadLines::WINDOW;
        let shown: Vec<bool> = (0..6).map(|_| b.record(t1)).collect();
        assert_eq!(shown, [true, true, true, true, true, false]);
        assert_eq!(b.due(), Some(t1 + BadLines::WINDOW));
    }
}
