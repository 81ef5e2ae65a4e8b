//! One writer thread owns every log file. Output readers send it batches of whole, formatted
//! lines; it gathers whatever is queued and writes each file's share with one `write` on an
//! `O_APPEND` file, so lines from services sharing a file never mix, and a busy child costs one
//! syscall per batch, not per line.
//!
//! Back-pressure: bytes queued from children are bounded by a byte budget ([`BUDGET_BYTES`]).
//! When it is used up the reader waits, the child's pipe fills, and the child blocks in
//! `write` until the disk catches up: nothing is dropped. Lifecycle lines from the supervisor
//! itself bypass the budget, so the actor never waits on the disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

/// Most bytes from children queued for writing at once.
pub const BUDGET_BYTES: usize = 8 * 1024 * 1024;
const PERMIT_BYTES: usize = 1024;
const BUDGET_PERMITS: usize = BUDGET_BYTES / PERMIT_BYTES;
/// A file that cannot be opened is tried again after this long.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

enum Msg {
    Open {
        id: u32,
        path: Option<PathBuf>,
    },
    Data {
        id: u32,
        bytes: Vec<u8>,
        permits: u32,
    },
    /// Write what came before and end the thread.
    Close,
}

/// The writer thread and the table of open targets.
#[derive(Debug)]
pub struct LogHub {
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<Semaphore>,
    targets: HashMap<Option<PathBuf>, u32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Where one service's lines go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<Semaphore>,
    id: u32,
    stdout: bool,
}

impl LogHub {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<LogHub> {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(BUDGET_PERMITS));
        let thread = std::thread::Builder::new()
            .name("pm-log-writer".into())
            .spawn({
                let budget = budget.clone();
                move || writer_loop(rx, &budget)
            })?;
        Ok(LogHub {
            tx,
            budget,
            targets: HashMap::new(),
            thread: Some(thread),
        })
    }

    /// The sink for a log file (None: the supervisor's stdout). Services naming the same file
    /// share one target.
    pub fn sink(&mut self, path: Option<&Path>) -> Sink {
        let key = path.map(Path::to_path_buf);
        let next = self.targets.len() as u32;
        let id = *self.targets.entry(key.clone()).or_insert_with(|| {
            let _ = self.tx.send(Msg::Open {
                id: next,
                path: key,
            });
            next
        });
        Sink {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            id,
            stdout: path.is_none(),
        }
    }

    /// Writes everything queued and stops the thread. Lines sent after this are lost, so call
    /// it after every reader is done.
    pub fn close(mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Sink {
    /// Whether the lines go to the supervisor's stdout.
    pub fn is_stdout(&self) -> bool {
        self.stdout
    }

    /// Queues output lines, waiting while the byte budget is used up (back-pressure).
    pub async fn write(&self, bytes: Vec<u8>) {
        let permits = bytes.len().div_ceil(PERMIT_BYTES).clamp(1, BUDGET_PERMITS) as u32;
        match self.budget.acquire_many(permits).await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        let _ = self.tx.send(Msg::Data {
            id: self.id,
            bytes,
            permits,
        });
    }

    /// Queues a line from the supervisor itself, without waiting.
    pub fn write_now(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(Msg::Data {
            id: self.id,
            bytes,
            permits: 0,
        });
    }
}

struct Target {
    path: Option<PathBuf>,
    file: Option<File>,
    pending: Vec<u8>,
    failed_at: Option<Instant>,
    dropped: u64,
}

impl Target {
    fn open(&mut self) {
        let Some(path) = &self.path else { return };
        if self.file.is_some() || self.failed_at.is_some_and(|t| t.elapsed() < REOPEN_AFTER) {
            return;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => {
                if self.dropped > 0 {
                    tracing::warn!(file = %path.display(), bytes = self.dropped, "log file usable again; output was lost while it was not");
                    self.dropped = 0;
                }
                self.file = Some(f);
                self.failed_at = None;
            }
            Err(e) => {
                if self.failed_at.is_none() {
                    tracing::error!(file = %path.display(), %e, "cannot open log file; output is discarded until it can be");
                }
                self.failed_at = Some(Instant::now());
            }
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let result = match &self.path {
            None => std::io::stdout().lock().write_all(&self.pending),
            Some(_) => {
                self.open();
                match &mut self.file {
                    Some(f) => f.write_all(&self.pending),
                    None => Err(std::io::Error::other("not open")),
                }
            }
        };
        if let Err(e) = result {
            if self.file.take().is_some() {
                tracing::error!(file = ?self.path, %e, "log write failed; output is discarded until the file can be written");
                self.failed_at = Some(Instant::now());
            }
            self.dropped += self.pending.len() as u64;
        }
        self.pending.clear();
    }
}

fn writer_loop(mut rx: mpsc::UnboundedReceiver<Msg>, budget: &Semaphore) {
    let mut targets: HashMap<u32, Target> = HashMap::new();
    let mut open = true;
    while open {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut permits = 0usize;
        let mut queued = 0usize;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Open { id, path } => {
                    let mut t = Target {
                        path,
                        file: None,
                        pending: Vec::new(),
                        failed_at: None,
                        dropped: 0,
                    };
                    t.open();
                    targets.insert(id, t);
                }
                Msg::Data {
                    id,
                    bytes,
                    permits: p,
                } => {
                    permits += p as usize;
                    queued += bytes.len();
                    if let Some(t) = targets.get_mut(&id) {
                        t.pending.extend_from_slice(&bytes);
                    }
                }
                Msg::Close => {
                    open = false;
                    break;
                }
            }
            // Gather what is queued, but write at least every 4 MiB.
            next = if queued < 4 * 1024 * 1024 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        for t in targets.values_mut() {
            t.flush();
        }
        budget.add_permits(permits);
    }
    for t in targets.values_mut() {
        t.flush();
    }
}

/// `2026-11-26T12:21:02.123Z`: UTC with milliseconds, the timestamp of every log line.
pub fn timestamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
