//! Log files, each owned by a writer thread of its own. Output readers send a file's thread
//! batches of whole, formatted lines; it gathers whatever is queued and writes it with one
//! `write` on an `O_APPEND` file, so lines from services sharing a file never mix, and a busy
//! child costs one syscall per batch, not per line. Under light load a batch goes out as soon as
//! it arrives; under heavy load batches grow by themselves (up to [`MAX_GATHER`]) while the
//! previous write is under way.
//!
//! Isolation: a file that is slow, stuck (a hung network disk) or busy rotating holds up only
//! its own thread, so it can never delay another file's lines, a control reply or the actor.
//! At shutdown each thread gets until a deadline to write what is queued; one still busy then is
//! abandoned, and the process exits without it.
//!
//! Back-pressure: bytes queued from children are bounded per file ([`BUDGET_BYTES`]). When a
//! file's budget is used up its readers wait, the children's pipes fill, and the children block
//! in `write` until the disk catches up: nothing is dropped. Lifecycle lines from the supervisor
//! itself bypass the budget, so the actor never waits on a disk; they are bounded separately
//! ([`PM_QUEUE_BYTES`]), and beyond that dropped and counted.
//!
//! Only regular files are logs: a path is opened with `O_NONBLOCK` (so opening a FIFO cannot
//! block), checked with `fstat`, and refused if it is a FIFO, a device or a folder.
//!
//! Rotation: the lines that still fit under `logMaxSize` go into the current file; then it is
//! renamed to `<file>.1` (older ones shift up to `<file>.<logKeep>`; the oldest is removed), a new
//! file is opened and the rest follows. The writer is the only one writing, so nothing written
//! during a rotation is lost; a line never straddles two files, and a file passes the limit only
//! to hold a single line longer than it, or while rotation fails.
//!
//! Failures: a file that cannot be opened or written (permission denied, disk full) is reported
//! once per episode; its output is discarded (and counted) rather than held, so the service is
//! never blocked by it, and writing is tried again every [`RETRY_AFTER`]. The episode ends, with
//! a report, once writes have succeeded for [`RETRY_AFTER`] without a failure (on a nearly full
//! disk one short line may still fit, which is no recovery). A failed write is truncated back
//! off the file, so no half line is left. A rotation that cannot rename is reported once too; the file grows past
//! its limit meanwhile, and rotation is tried again every [`RETRY_AFTER`]. A file deleted or
//! renamed by someone else (logrotate) is noticed within a second, or at the next rotation, and
//! created again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::sync::mpsc;

use tokio::sync::Semaphore;

/// Most bytes from children queued for one log file at once.
pub const BUDGET_BYTES: usize = 4 * 1024 * 1024;
const PERMIT_BYTES: usize = 1024;
const BUDGET_PERMITS: usize = BUDGET_BYTES / PERMIT_BYTES;
/// Most bytes of the supervisor's own lines queued for one log file; beyond, they are dropped.
pub const PM_QUEUE_BYTES: usize = 1024 * 1024;
/// A file that cannot be opened, written or rotated is tried again after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a file is checked for having been deleted or renamed under the writer.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Most bytes gathered before a write.
pub const MAX_GATHER: usize = 1024 * 1024;
/// Stack of a writer thread: nothing in it recurses.
const WRITER_STACK: usize = 256 * 1024;

/// Rotation settings of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before the file would pass this size; 0: never.
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
}

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
pub struct LogHub {
    targets: HashMap<Option<PathBuf>, Arc<Link>>,
    threads: Vec<(Arc<Link>, std::thread::JoinHandle<()>)>,
}

/// Where one service's lines go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sink {
    link: Arc<Link>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl LogHub {
    /// No files yet; each gets its thread when a service first names it.
    pub fn start() -> io::Result<LogHub> {
        Ok(LogHub::default())
    }

    /// The sink for a log file (None: the supervisor's stdout). Services naming the same file
    /// share one writer; the first one's rotation settings apply to it.
    pub fn sink(&mut self, path: Option<&Path>, rotation: Rotation) -> Sink {
        let key = path.map(Path::to_path_buf);
        if let Some(link) = self.targets.get(&key) {
            return Sink { link: link.clone() };
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
        Sink { link }
    }

    /// Writes everything queued and stops the threads, waiting for them until `deadline`. A
    /// thread still writing then (a stuck disk, a rotation storm) is told to stop and left
    /// behind, and what it had queued is lost; every other file is complete. Lines sent after
    /// this are lost, so call it after every reader is done.
    pub fn close(self, deadline: Instant) {
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
    pub fn is_stdout(&self) -> bool {
        self.link.path.is_none()
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
    pub fn write_now(&self, bytes: Vec<u8>) {
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

/// Opens a log file for appending, refusing anything but a regular file. `O_NONBLOCK` keeps the
/// open itself from blocking on a FIFO; it is cleared once the file is known to be regular.
fn open_log(path: &Path) -> io::Result<File> {
    let not_regular = |t: std::fs::FileType| {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_dir() {
            "a folder"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({what})"),
        )
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(not_regular(meta.file_type()));
        }
    } else if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags != -1 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// The supervisor's stdout, for the thread that writes the lines of services without a log
/// file. A duplicate of fd 1, so that a blocked stdout holds only this thread, never the lock of
/// `std::io::stdout` that anything else might take.
fn stdout_file() -> Option<File> {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = io::stdout().as_fd().try_clone_to_owned().ok()?;
    Some(File::from(fd))
}

/// A failure episode: when to try again, and since when writes have succeeded (without a
/// failure since).
#[derive(Debug, Clone, Copy)]
struct Trouble {
    retry_at: Instant,
    ok_since: Option<Instant>,
}

impl Trouble {
    fn new() -> Trouble {
        Trouble {
            retry_at: Instant::now() + RETRY_AFTER,
            ok_since: None,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.retry_at
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
    /// Opening or writing fails (reported when it began); ends at the first good write.
    trouble: Option<Trouble>,
    /// Rotation fails (reported when it began); ends at the first good rotation.
    rotation_trouble: Option<Trouble>,
    dropped: u64,
}

impl Target {
    fn new(path: Option<PathBuf>, rotation: Rotation) -> Target {
        let file = if path.is_none() { stdout_file() } else { None };
        Target {
            path,
            rotation,
            file,
            size: 0,
            checked_at: Instant::now(),
            pending: Vec::new(),
            trouble: None,
            rotation_trouble: None,
            dropped: 0,
        }
    }

    fn shown(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("-"))
    }

    /// Opening or writing failed: reported once per episode.
    fn fail(&mut self, what: &str, e: &io::Error) {
        if self.trouble.is_none() {
            tracing::error!(file = ?self.shown(), %e, "cannot {what} the log file; output is discarded until it can be written again (tried again every {} s)", RETRY_AFTER.as_secs());
        }
        self.file = None;
        self.trouble = Some(Trouble::new());
    }

    /// Ends a failure episode once writes have gone through for [`RETRY_AFTER`]. Returns when to
    /// look again, while one is under way.
    fn recovery(&mut self) -> Option<Duration> {
        let since = self.trouble?.ok_since?;
        let left = (since + RETRY_AFTER).saturating_duration_since(Instant::now());
        if !left.is_zero() {
            return Some(left);
        }
        tracing::warn!(file = ?self.shown(), lost_bytes = self.dropped, "log file usable again");
        self.dropped = 0;
        self.trouble = None;
        None
    }

    /// Opens the file if it is not open and it is time to try.
    fn open(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        if self.file.is_some() || self.trouble.is_some_and(|t| !t.due()) {
            return;
        }
        match open_log(&path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
                self.checked_at = Instant::now();
            }
            Err(e) => self.fail("open", &e),
        }
    }

    /// Whether the open file is still the one at the path (not deleted or renamed under us).
    fn still_there(&self) -> bool {
        let (Some(path), Some(file)) = (&self.path, &self.file) else {
            return true;
        };
        let ours = file.metadata().map(|m| (m.dev(), m.ino())).ok();
        let there = std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
        ours == there
    }

    /// Reopens the file if it was deleted or renamed under us (checked at most once a second).
    fn check_still_there(&mut self) {
        if self.file.is_none() || self.checked_at.elapsed() < CHECK_EVERY {
            return;
        }
        self.checked_at = Instant::now();
        if !self.still_there() {
            self.reopen_moved();
        }
    }

    fn reopen_moved(&mut self) {
        tracing::warn!(file = ?self.shown(), "log file was deleted or moved; creating it again");
        self.file = None;
        self.open();
    }

    /// Renames `f` to `f.1`, `f.1` to `f.2`, ... keeping `keep` old files, then opens a new `f`.
    /// Returns whether a new file is open. A file someone else moved away is not renamed: a new
    /// one is simply created. A failed rename is reported once; the current file stays.
    fn rotate(&mut self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        if !self.still_there() {
            self.reopen_moved();
            return self.file.is_some();
        }
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
                if self.rotation_trouble.take().is_some() {
                    tracing::warn!(file = ?path, "log rotation works again");
                }
                self.file = None;
                self.open();
                self.file.is_some()
            }
            // Moved away between the check and the rename.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.reopen_moved();
                self.file.is_some()
            }
            Err(e) => {
                if self.rotation_trouble.is_none() {
                    tracing::error!(file = ?path, %e, "cannot rotate the log file; it grows past logMaxSize until it can be rotated (tried again every {} s)", RETRY_AFTER.as_secs());
                }
                self.rotation_trouble = Some(Trouble::new());
                false
            }
        }
    }

    fn flush(&mut self, abandon: &AtomicBool) {
        if self.pending.is_empty() {
            return;
        }
        if self.path.is_none() {
            // A closed stdout (the terminal went away) discards.
            if let Some(f) = &mut self.file {
                let _ = f.write_all(&self.pending);
            }
            self.pending.clear();
            return;
        }
        self.open();
        self.check_still_there();
        let pending = std::mem::take(&mut self.pending);
        let mut rest = &pending[..];
        while !rest.is_empty() {
            if abandon.load(Ordering::Relaxed) {
                self.dropped += rest.len() as u64;
                break;
            }
            let chunk = &rest[..self.fitting(rest)];
            if !self.write_chunk(chunk) {
                self.dropped += (rest.len() - chunk.len()) as u64;
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
    /// longer than the limit goes whole into a file of its own. While rotation fails, everything
    /// goes into the current file.
    fn fitting(&mut self, lines: &[u8]) -> usize {
        let max = self.rotation.max_size;
        let fits = |t: &Target| {
            max == 0
                || t.file.is_none()
                || t.size + lines.len() as u64 <= max
                || t.rotation_trouble.is_some_and(|r| !r.due())
        };
        if fits(self) {
            return lines.len();
        }
        let room = max.saturating_sub(self.size) as usize;
        if let Some(i) = lines[..room.min(lines.len())]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            return i + 1;
        }
        // Not one more line fits: rotate, once.
        if self.size > 0 && (!self.rotate() || fits(self)) {
            return lines.len();
        }
        let room = max.saturating_sub(self.size) as usize;
        if let Some(i) = lines[..room.min(lines.len())]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            return i + 1;
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
                if let Some(t) = &mut self.trouble {
                    t.ok_since.get_or_insert_with(Instant::now);
                }
                self.recovery();
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
        t.flush(&AtomicBool::new(false));
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    #[test]
    fn rotation_renames_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 10, 2);
        for line in ["one 1234\n", "two 1234\n", "three 12\n", "four 123\n"] {
            write(&mut t, line);
        }
        assert_eq!(read(dir.path(), "a.log"), "four 123\n");
        assert_eq!(read(dir.path(), "a.log.1"), "three 12\n");
        assert_eq!(read(dir.path(), "a.log.2"), "two 1234\n");
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
        assert_eq!(read(dir.path(), "a.log.2"), "aaaa\nbbbb\n");
        assert_eq!(read(dir.path(), "a.log.1"), "cccc\ndddd\n");
        assert_eq!(read(dir.path(), "a.log"), "eeee\n");
    }

    #[test]
    fn a_line_larger_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 4, 1);
        write(&mut t, "0123456789\n");
        write(&mut t, "abcdefghij\n");
        assert_eq!(read(dir.path(), "a.log"), "abcdefghij\n");
        assert_eq!(read(dir.path(), "a.log.1"), "0123456789\n");
    }

    #[test]
    fn a_deleted_file_is_created_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 0, 0);
        write(&mut t, "before\n");
        std::fs::remove_file(dir.path().join("a.log")).expect("rm");
        t.checked_at -= CHECK_EVERY;
        write(&mut t, "after\n");
        assert_eq!(read(dir.path(), "a.log"), "after\n");
    }

    #[test]
    fn an_unopenable_file_discards_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A folder where the file should be: it is refused.
        std::fs::create_dir(dir.path().join("a.log")).expect("mkdir");
        let mut t = target(dir.path(), 0, 0);
        write(&mut t, "lost\n");
        assert_eq!(t.dropped, 5);
        assert!(t.trouble.is_some());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let e = open_log(&path).expect_err("a FIFO");
        assert!(e.to_string().contains("a FIFO"), "{e}");
        // Also when a reader holds it open, which would let a plain open succeed.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("reader");
        assert!(open_log(&path).is_err());
    }

    #[test]
    fn a_rotation_that_cannot_rename_keeps_writing_and_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A non-empty folder where the first rotated file goes: the rename fails, even as root.
        std::fs::create_dir_all(dir.path().join("a.log.1/x")).expect("mkdir");
        let mut t = target(dir.path(), 10, 1);
        for i in 0..100 {
            write(&mut t, &format!("line {i:03}\n"));
        }
        assert!(t.rotation_trouble.is_some());
        assert_eq!(
            read(dir.path(), "a.log").lines().count(),
            100,
            "nothing lost"
        );
        std::fs::remove_dir_all(dir.path().join("a.log.1")).expect("rm");
        t.rotation_trouble = Some(Trouble {
            retry_at: Instant::now(),
            ok_since: None,
        });
        write(&mut t, "line 100\n");
        assert!(t.rotation_trouble.is_none());
        assert_eq!(read(dir.path(), "a.log"), "line 100\n");
        assert_eq!(read(dir.path(), "a.log.1").lines().count(), 100);
    }

    #[test]
    fn a_file_moved_away_before_its_rotation_is_not_renamed_but_created_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 10, 3);
        write(&mut t, "one 1234\n");
        std::fs::rename(dir.path().join("a.log"), dir.path().join("moved")).expect("mv");
        write(&mut t, "two 1234\n");
        assert_eq!(read(dir.path(), "moved"), "one 1234\n");
        assert_eq!(read(dir.path(), "a.log"), "two 1234\n");
        assert!(!dir.path().join("a.log.1").exists());
        assert!(t.rotation_trouble.is_none() && t.trouble.is_none());
    }

    #[test]
    fn usable_again_only_once_writes_keep_succeeding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = target(dir.path(), 0, 0);
        t.fail("write", &io::Error::other("disk full"));
        // It reopens on the retry, but the episode lasts until writes go through for a while.
        t.trouble = Some(Trouble {
            retry_at: Instant::now(),
            ok_since: None,
        });
        t.open();
        assert!(t.file.is_some() && t.trouble.is_some());
        write(&mut t, "back\n");
        assert_eq!(read(dir.path(), "a.log"), "back\n");
        assert!(t.trouble.is_some_and(|t| t.ok_since.is_some()));
        // A failure meanwhile (one line fitted, the next did not) continues the same episode.
        t.fail("write", &io::Error::other("disk full"));
        assert!(t.trouble.is_some_and(|t| t.ok_since.is_none()));
        t.trouble = Some(Trouble {
            retry_at: Instant::now(),
            ok_since: Some(Instant::now() - RETRY_AFTER),
        });
        write(&mut t, "again\n");
        assert!(
            t.trouble.is_none(),
            "ended after a retry period of good writes"
        );
    }
}
