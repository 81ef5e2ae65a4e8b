//! One log file as its writer thread sees it: opening (regular files only), rotation, and what
//! happens when the disk or someone else gets in the way.
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
//! off the file, so no half line is left. A rotation that cannot rename is reported once too; the
//! file grows past its limit meanwhile, and rotation is tried again every [`RETRY_AFTER`]. A file
//! deleted or renamed by someone else (logrotate) is noticed within a second, or at the next
//! rotation, and created again.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A file that cannot be opened, written or rotated is tried again after this long.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a file is checked for having been deleted or renamed under the writer.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Rotation settings of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// Rotate before the file would pass this size; 0: never.
    pub(crate) max_size: u64,
    /// Rotated files kept.
    pub(crate) keep: u32,
}

/// What a file that is not a regular file is, for messages: `a FIFO`, `a folder`, ...
pub(crate) fn kind_of(t: FileType) -> &'static str {
    if t.is_file() {
        "a file"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Opens a log file for appending, refusing anything but a regular file. `O_NONBLOCK` keeps the
/// open itself from blocking on a FIFO; it is cleared once the file is known to be regular.
pub(crate) fn open_log(path: &Path) -> io::Result<File> {
    let not_regular = |t: FileType| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", kind_of(t)),
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
    crate::platform::set_nonblocking(&file, false);
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

/// A log file (or the supervisor's stdout), written by one thread.
pub(super) struct Target {
    path: Option<PathBuf>,
    rotation: Rotation,
    file: Option<File>,
    /// Size of the open file as far as this writer knows (it is the only writer).
    size: u64,
    checked_at: Instant,
    /// Lines gathered for the next write.
    pub(super) pending: Vec<u8>,
    /// Opening or writing fails (reported when it began); ends at the first good write.
    trouble: Option<Trouble>,
    /// Rotation fails (reported when it began); ends at the first good rotation.
    rotation_trouble: Option<Trouble>,
    dropped: u64,
}

impl Target {
    pub(super) fn new(path: Option<PathBuf>, rotation: Rotation) -> Target {
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

    pub(super) fn shown(&self) -> &Path {
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
    pub(super) fn recovery(&mut self) -> Option<Duration> {
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
    pub(super) fn open(&mut self) {
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

    /// Writes [`pending`](Self::pending), rotating as needed; drops the rest once `abandon` is
    /// set.
    pub(super) fn flush(&mut self, abandon: &AtomicBool) {
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

#[cfg(test)]
mod tests;
