//! Log files, each owned by a writer thread of its own. Output readers send a file's thread
//! batches of whole, formatted lines; it gathers whatever is queued and writes it with one
//! `write` on an `O_APPEND` file, so lines from services sharing a file never mix, and a busy
//! child costs one syscall per batch, not per line. Under light load a batch goes out as soon as
//! it arrives; under heavy load batches grow by themselves (up to [`MAX_GATHER`]) while the
//! previous write is under way. The file itself (opening, rotation, failures) is [`super::file`].
//!
//! Isolation: a file that is slow, stuck (a hung network disk) or busy rotating holds up only
//! its own thread, so it can never delay another file's lines, a control reply or the actor.
//! At shutdown each thread gets until a deadline to write what is queued; one still busy then is
//! abandoned, and the process exits without it.
//!
//! Back-pressure: bytes queued from children are bounded per file ([`BUDGET_BYTES`]). When a
//! file's budget is used up its readers wait, the children's pipes fill, and the children block
//! in `write` until the disk catches up: nothing is dropped. Lines from the supervisor itself
//! bypass the budget, so the actor never waits on a disk; they are bounded separately
//! ([`PM_QUEUE_BYTES`]), and beyond that dropped and counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::file::{Rotation, Target};
use super::ring::Ring;

/// Most bytes from children queued for one log file at once.
const BUDGET_BYTES: usize = 4 * 1024 * 1024;
const PERMIT_BYTES: usize = 1024;
const BUDGET_PERMITS: usize = BUDGET_BYTES / PERMIT_BYTES;
/// Most bytes of the supervisor's own lines queued for one log file; beyond, they are dropped.
const PM_QUEUE_BYTES: usize = 1024 * 1024;
/// Most bytes gathered before a write.
const MAX_GATHER: usize = 1024 * 1024;
/// Stack of a writer thread: nothing in it recurses.
const WRITER_STACK: usize = 256 * 1024;

enum Msg {
    Data {
        bytes: Vec<u8>,
        permits: u32,
        /// Bytes of the supervisor's own lines (counted against [`PM_QUEUE_BYTES`]).
        own: usize,
    },
    /// Write what came before and end the thread.
    Close,
}

/// What the sinks of one file and its writer thread share.
#[derive(Debug)]
struct Link {
    tx: mpsc::Sender<Msg>,
    budget: Semaphore,
    /// Bytes of the supervisor's own lines queued.
    own_queued: AtomicUsize,
    /// The supervisor's own lines dropped since the last report.
    own_dropped: AtomicU64,
    /// Set at the shutdown deadline: stop writing, drop the rest.
    abandon: AtomicBool,
    /// The thread could not be started: everything is discarded.
    dead: AtomicBool,
    path: Option<PathBuf>,
}

/// The log files and their writer threads.
#[derive(Debug, Default)]
pub(crate) struct LogHub {
    targets: HashMap<Option<PathBuf>, Arc<Link>>,
    threads: Vec<(Arc<Link>, std::thread::JoinHandle<()>)>,
}

/// Where one service's lines go. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    link: Arc<Link>,
    /// A console service's recent lines (its lines go to the supervisor's stdout).
    ring: Option<Arc<Ring>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl LogHub {
    /// The sink of one service for a log file (None: the supervisor's stdout, and a ring of
    /// its own). Services naming the same file share one writer; the first one's rotation
    /// settings apply to it.
    pub(crate) fn sink(&mut self, path: Option<&Path>, rotation: Rotation) -> Sink {
        let key = path.map(Path::to_path_buf);
        let ring = path.is_none().then(|| Arc::new(Ring::default()));
        if let Some(link) = self.targets.get(&key) {
            return Sink {
                link: link.clone(),
                ring,
            };
        }
        let (tx, rx) = mpsc::channel();
        let link = Arc::new(Link {
            tx,
            budget: Semaphore::new(BUDGET_PERMITS),
            own_queued: AtomicUsize::new(0),
            own_dropped: AtomicU64::new(0),
            abandon: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            path: key.clone(),
        });
        let target = Target::new(key.clone(), rotation);
        let theirs = link.clone();
        let spawned = std::thread::Builder::new()
            .name("pm-log-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || writer_loop(target, rx, &theirs));
        match spawned {
            Ok(thread) => self.threads.push((link.clone(), thread)),
            Err(e) => {
                tracing::error!(file = ?key, %e, "cannot start a log writer thread; this log's output is discarded");
                link.dead.store(true, Ordering::Relaxed);
            }
        }
        self.targets.insert(key, link.clone());
        Sink { link, ring }
    }

    /// Writes everything queued and stops the threads, waiting for them until `deadline`. A
    /// thread still writing then (a stuck disk, a rotation storm) is told to stop and left
    /// behind, and what it had queued is lost; every other file is complete. Lines sent after
    /// this are lost, so call it after every reader is done.
    pub(crate) fn close(self, deadline: Instant) {
        for (link, _) in &self.threads {
            let _ = link.tx.send(Msg::Close);
        }
        for (link, thread) in self.threads {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                link.abandon.store(true, Ordering::Relaxed);
                tracing::warn!(file = ?link.path, "log file still being written at the shutdown deadline; its last lines are lost");
            }
        }
    }
}

impl Sink {
    /// Whether the lines go to the supervisor's stdout.
    pub(crate) fn is_stdout(&self) -> bool {
        self.link.path.is_none()
    }

    /// The recent lines of a console service.
    pub(crate) fn ring(&self) -> Option<&Arc<Ring>> {
        self.ring.as_ref()
    }

    /// Queues output lines, waiting while this file's byte budget is used up (back-pressure).
    pub async fn write(&self, bytes: Vec<u8>) {
        if self.link.dead.load(Ordering::Relaxed) {
            return;
        }
        let permits = bytes.len().div_ceil(PERMIT_BYTES).clamp(1, BUDGET_PERMITS) as u32;
        match self.link.budget.acquire_many(permits).await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        let _ = self.link.tx.send(Msg::Data {
            bytes,
            permits,
            own: 0,
        });
    }

    /// Queues a line from the supervisor itself, without waiting. While this file's queue of
    /// such lines is full (its disk does not keep up), the line is dropped and counted.
    pub(crate) fn write_now(&self, bytes: Vec<u8>) {
        let link = &self.link;
        let own = bytes.len();
        if link.dead.load(Ordering::Relaxed) {
            return;
        }
        if link.own_queued.fetch_add(own, Ordering::Relaxed) + own > PM_QUEUE_BYTES {
            link.own_queued.fetch_sub(own, Ordering::Relaxed);
            if link.own_dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(file = ?link.path, "log file is not keeping up: the supervisor's own lines for it are dropped until it does");
            }
            return;
        }
        let _ = link.tx.send(Msg::Data {
            bytes,
            permits: 0,
            own,
        });
    }
}

fn writer_loop(mut target: Target, rx: mpsc::Receiver<Msg>, link: &Link) {
    let mut open = true;
    target.open();
    while open {
        let first = match target.recovery() {
            // A recovery under way is confirmed even if nothing more is written.
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        let (mut permits, mut own, mut gathered) = (0usize, 0usize, 0usize);
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Data {
                    bytes,
                    permits: p,
                    own: o,
                } => {
                    permits += p as usize;
                    own += o;
                    gathered += bytes.len();
                    if target.pending.is_empty() {
                        target.pending = bytes;
                    } else {
                        target.pending.extend_from_slice(&bytes);
                    }
                }
                Msg::Close => {
                    open = false;
                    break;
                }
            }
            next = if gathered < MAX_GATHER {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        target.flush(&link.abandon);
        link.budget.add_permits(permits);
        link.own_queued.fetch_sub(own, Ordering::Relaxed);
        if link.own_queued.load(Ordering::Relaxed) == 0 {
            let dropped = link.own_dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(file = ?target.shown(), count = dropped, "log file keeps up again; lines of the supervisor's own were dropped meanwhile");
            }
        }
    }
}
