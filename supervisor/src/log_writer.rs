//! One writer thread owns every log file. Output readers send it batches of whole, formatted
//! lines; it gathers whatever is queued and writes each file's share with one `write` on an
//! `O_APPEND` file, so lines from services sharing a file never mix, and a busy child costs one
//! syscall per batch, not per line. Under light load a batch goes out as soon as it arrives; under
//! heavy load batches grow by themselves (up to 4 MiB) while the previous write is under way.
//!
//! Back-pressure: bytes queued from children are bounded by a byte budget ([`BUDGET_BYTES`]).
//! When it is used up the reader waits, the child's pipe fills, and the child blocks in `write`
//! until the disk catches up: nothing is dropped. Lifecycle lines from the supervisor itself
//! bypass the budget, so the actor never waits on the disk.
//!
//! Rotation: the lines that still fit under `logMaxSize` go into the current file; then it is
//! renamed to `<file>.1` (older ones shift up to `<file>.<logKeep>`; the oldest is removed), a new
//! file is opened and the rest follows. The writer is the only one writing, so nothing written
//! during a rotation is lost; a line never straddles two files, and a file passes the limit only
//! to hold a single line longer than it.
//!
//! Failures: a file that cannot be opened or written (permission denied, disk full) is reported
//! once; its output is discarded (and counted) rather than held, so the service is never blocked
//! by it, and the file is tried again every [`RETRY_AFTER`]. A failed write is truncated back off
//! the file, so no half line is left. A file deleted or renamed by someone else is noticed within
//! a second and created again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

/// Most bytes from children queued for writing at once.
pub const BUDGET_BYTES: usize = 8 * 1024 * 1024;
const PERMIT_BYTES: usize = 1024;
const BUDGET_PERMITS: usize = BUDGET_BYTES / PERMIT_BYTES;
/// A file that cannot be opened or written is tried again after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often a file is checked for having been deleted or renamed under the writer.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Most bytes gathered before a write.
const MAX_GATHER: usize = 4 * 1024 * 1024;

/// Rotation settings of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before the file would pass this size; 0: never.
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
}

enum Msg {
    Open {
        id: u32,
        path: Option<PathBuf>,
        rotation: Rotation,
    },
    Data {
        id: u32,
        bytes: Vec<u8>,
        permits: u32,
    },
    /// Write what came before and end the thread.
    Close,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// The writer thread and the table of targets.
#[derive(Debug)]
pub struct LogHub {
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<Semaphore>,
    targets: HashMap<Option<PathBuf>, u32>,
    thread: Option<std::thread::JoinHandle<()>>,
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
    /// share one target; the first one's rotation settings apply to it.
    pub fn sink(&mut self, path: Option<&Path>, rotation: Rotation) -> Sink {
        let key = path.map(Path::to_path_buf);
        let next = self.targets.len() as u32;
        let id = *self.targets.entry(key.clone()).or_insert_with(|| {
            let _ = self.tx.send(Msg::Open {
                id: next,
                path: key,
                rotation,
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
    rotation: Rotation,
    file: Option<File>,
    /// Size of the open file as far as this writer knows (it is the only writer).
    size: u64,
    checked_at: Instant,
    pending: Vec<u8>,
    failed_at: Option<Instant>,
    dropped: u64,
}

impl Target {
    fn new(path: Option<PathBuf>, rotation: Rotation) -> Target {
        Target {
            path,
            rotation,
            file: None,
            size: 0,
            checked_at: Instant::now(),
            pending: Vec::new(),
            failed_at: None,
            dropped: 0,
        }
    }

    fn fail(&mut self, what: &str, e: &std::io::Error) {
        if self.failed_at.is_none() {
            let file = self.path.as_deref().unwrap_or(Path::new("-")).display();
            tracing::error!(%file, %e, "cannot {what} the log file; output is discarded until it can be (tried again every {} s)", RETRY_AFTER.as_secs());
        }
        self.file = None;
        self.failed_at = Some(Instant::now());
    }

    /// Opens the file if it is not open and it is time to try.
    fn open(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        if self.file.is_some() || self.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
                self.checked_at = Instant::now();
                if self.failed_at.take().is_some() {
                    tracing::warn!(file = %path.display(), lost_bytes = self.dropped, "log file usable again");
                    self.dropped = 0;
                }
            }
            Err(e) => self.fail("open", &e),
        }
    }

    /// Reopens the file if it was deleted or renamed under us (checked at most once a second).
    fn check_still_there(&mut self) {
        let (Some(path), Some(file)) = (&self.path, &self.file) else {
            return;
        };
        if self.checked_at.elapsed() < CHECK_EVERY {
            return;
        }
        self.checked_at = Instant::now();
        let ours = file.metadata().map(|m| (m.dev(), m.ino())).ok();
        let there = std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
        if ours != there {
            tracing::warn!(file = %path.display(), "log file was deleted or moved; creating it again");
            self.file = None;
            self.open();
        }
    }

    /// Renames `f` to `f.1`, `f.1` to `f.2`, ... keeping `keep` old files, then opens a new `f`.
    fn rotate(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let name = |n: u32| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let result = if self.rotation.keep == 0 {
            std::fs::remove_file(&path)
        } else {
            let _ = std::fs::remove_file(name(self.rotation.keep));
            for n in (1..self.rotation.keep).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            std::fs::rename(&path, name(1))
        };
        match result {
            Ok(()) => {
                self.file = None;
                self.open();
            }
            // Keep writing to the current file rather than lose lines.
            Err(e) => tracing::warn!(file = %path.display(), %e, "log rotation failed"),
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.path.is_none() {
            let _ = std::io::stdout().lock().write_all(&self.pending);
            self.pending.clear();
            return;
        }
        self.open();
        self.check_still_there();
        let pending = std::mem::take(&mut self.pending);
        let mut rest = &pending[..];
        while !rest.is_empty() {
            let chunk = &rest[..self.fitting(rest)];
            if !self.write_chunk(chunk) {
                self.dropped += rest.len() as u64 - chunk.len() as u64;
                break;
            }
            rest = &rest[chunk.len()..];
        }
        // Keep the buffer's capacity for the next batch.
        self.pending = pending;
        self.pending.clear();
    }

    /// How much of `lines` (whole lines) goes into the current file: all of it, or the lines
    /// that still fit under `logMaxSize`, rotating first when not even one does. A single line
    /// longer than the limit goes whole into a file of its own.
    fn fitting(&mut self, lines: &[u8]) -> usize {
        let max = self.rotation.max_size;
        if max == 0 || self.file.is_none() || self.size + lines.len() as u64 <= max {
            return lines.len();
        }
        let room = max.saturating_sub(self.size) as usize;
        if let Some(i) = lines[..room.min(lines.len())]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            return i + 1;
        }
        if self.size > 0 {
            self.rotate();
            return self.fitting(lines);
        }
        lines
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |i| i + 1)
    }

    /// Writes whole lines; on failure they are cut back off the file and counted as dropped.
    fn write_chunk(&mut self, chunk: &[u8]) -> bool {
        let Some(file) = &mut self.file else {
            self.dropped += chunk.len() as u64;
            return false;
        };
        match file.write_all(chunk) {
            Ok(()) => {
                self.size += chunk.len() as u64;
                true
            }
            Err(e) => {
                // No half line left behind: cut the file back to where this write began.
                let _ = file.set_len(self.size);
                self.dropped += chunk.len() as u64;
                self.fail("write", &e);
                false
            }
        }
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
        let mut gathered = 0usize;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Open { id, path, rotation } => {
                    let mut t = Target::new(path, rotation);
                    t.open();
                    targets.insert(id, t);
                }
                Msg::Data {
                    id,
                    bytes,
                    permits: p,
                } => {
                    permits += p as usize;
                    gathered += bytes.len();
                    if let Some(t) = targets.get_mut(&id) {
                        if t.pending.is_empty() {
                            t.pending = bytes;
                        } else {
                            t.pending.extend_from_slice(&bytes);
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &Path, max: u64, keep: u32) -> Target {
        let mut t = Target::new(
            Some(dir.join("a.log")),
            Rotation {
                max_size: max,
                keep,
            },
        );
        t.open();
        t
    }

    fn write(t: &mut Target, s: &str) {
        t.pending.extend_from_slice(s.as_bytes());
        t.flush();
    }

    #[test]
    fn rotation_renames_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 10, 2);
        for line in ["one 1234\n", "two 1234\n", "three 12\n", "four 123\n"] {
            write(&mut t, line);
        }
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
        assert_eq!(read("a.log"), "four 123\n");
        assert_eq!(read("a.log.1"), "three 12\n");
        assert_eq!(read("a.log.2"), "two 1234\n");
        assert!(
            !dir.path().join("a.log.3").exists(),
            "only logKeep files are kept"
        );
    }

    #[test]
    fn a_large_batch_is_split_at_line_ends_across_rotations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 10, 5);
        write(&mut t, "aaaa\nbbbb\ncccc\ndddd\neeee\n");
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
        assert_eq!(read("a.log.2"), "aaaa\nbbbb\n");
        assert_eq!(read("a.log.1"), "cccc\ndddd\n");
        assert_eq!(read("a.log"), "eeee\n");
    }

    #[test]
    fn a_line_larger_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 4, 1);
        write(&mut t, "0123456789\n");
        write(&mut t, "abcdefghij\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log")).expect("log"),
            "abcdefghij\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.1")).expect("log"),
            "0123456789\n"
        );
    }

    #[test]
    fn a_deleted_file_is_created_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 0, 0);
        write(&mut t, "before\n");
        std::fs::remove_file(dir.path().join("a.log")).expect("rm");
        t.checked_at -= CHECK_EVERY;
        write(&mut t, "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log")).expect("log"),
            "after\n"
        );
    }

    #[test]
    fn an_unopenable_file_discards_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A folder where the file should be: opening it for writing fails.
        std::fs::create_dir(dir.path().join("a.log")).expect("mkdir");
        let mut t = target(dir.path(), 0, 0);
        write(&mut t, "lost\n");
        assert_eq!(t.dropped, 5);
        assert!(t.failed_at.is_some());
    }
}
