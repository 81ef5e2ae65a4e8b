//! What waits to be written to one connection, and the bounds on it.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::{Notify, Semaphore};

use crate::control::{Event, Lagged, Message};

/// Replies of one connection waiting to be written.
pub(super) const REPLY_QUEUE: usize = 16;
/// Events waiting to be written to one connection, at most...
pub(super) const EVENT_QUEUE: usize = 1024;
/// ...and at most this many bytes of them: room for several messages of the largest size a
/// child may send (1 MiB), so that a burst of large messages reaches a controller that reads
/// normally (a single larger event still goes into an empty queue).
pub(super) const EVENT_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// What waits to be written to one connection, in the order it happened: replies (at most
/// [`REPLY_QUEUE`]; a request waits for room) and events (at most [`EVENT_QUEUE`] and
/// [`EVENT_QUEUE_BYTES`]; beyond, they are dropped and counted).
#[derive(Debug)]
pub(super) struct Outbox {
    pub(super) queue: Mutex<Queue>,
    /// Wakes the writer.
    ready: Notify,
    /// Room for replies.
    reply_room: Semaphore,
}

#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Lines, and whether each is an event.
    lines: VecDeque<(Vec<u8>, bool)>,
    events: usize,
    pub(super) event_bytes: usize,
    /// Events dropped since the last `lagged` event.
    pub(super) missed: u64,
    /// Nothing more comes: the writer ends once the queue is empty.
    finished: bool,
}

impl Outbox {
    pub(super) fn new() -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            reply_room: Semaphore::new(REPLY_QUEUE),
        }
    }

    /// Queues a reply line, waiting for room. Err: the connection is gone.
    pub(super) async fn reply(&self, line: Vec<u8>) -> Result<(), ()> {
        self.reply_room.acquire().await.map_err(|_| ())?.forget();
        if let Ok(mut q) = self.queue.lock() {
            q.lines.push_back((line, false));
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Queues an event, or drops it (and counts it) when the queue is full. When there is room
    /// again after drops, a `lagged` event saying how many goes first.
    pub(super) fn event(&self, line: Vec<u8>) {
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
    pub(super) fn missed(&self, n: u64) {
        if let Ok(mut q) = self.queue.lock() {
            q.missed += n;
        }
        self.ready.notify_one();
    }

    /// The next line to write (the `lagged` event once the queue is empty after drops), or None
    /// once finished and empty.
    pub(super) async fn next(&self) -> Option<Vec<u8>> {
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
    pub(super) fn finish(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.finished = true;
        }
        self.ready.notify_one();
    }

    /// The peer is gone: replies are refused from now on.
    pub(super) fn close(&self) {
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
