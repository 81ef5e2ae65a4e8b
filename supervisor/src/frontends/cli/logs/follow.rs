//! `logs -f`: the new lines of log files as they come, through rotation and truncation, woken
//! by file-change notification (inotify on Linux), not by polling.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::super::client::{CliError, err};
use super::{End, MAX_ROTATED, Options};

/// `-f`: new lines of the log files as they come.
pub(super) struct Follow {
    _watcher: notify::RecommendedWatcher,
    events: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    files: Vec<PathBuf>,
}

/// A followed file: the open file, where reading goes on, and a line begun but not ended.
struct Tail {
    file: Option<(File, End)>,
    /// The file last read to its end while no file was at the name (caught between the
    /// writer's rename and its create): the files rotated after it are still read.
    gone: Option<(u64, u64)>,
    partial: Vec<u8>,
}

impl Follow {
    /// Watches the folders of the files (a rotation renames the file and creates a new one).
    pub(super) fn start(files: &BTreeSet<PathBuf>) -> Result<Follow, CliError> {
        use notify::Watcher;
        let (tx, events) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |e| {
            let _ = tx.send(e);
        })
        .map_err(|e| err(format!("cannot watch the log files: {e}")))?;
        let folders: BTreeSet<PathBuf> = files
            .iter()
            .map(|f| f.parent().unwrap_or(Path::new("/")).to_path_buf())
            .collect();
        for folder in &folders {
            watcher
                .watch(folder, notify::RecursiveMode::NonRecursive)
                .map_err(|e| err(format!("cannot watch {}: {e}", folder.display())))?;
        }
        Ok(Follow {
            _watcher: watcher,
            events,
            files: files.iter().cloned().collect(),
        })
    }

    /// Prints new lines until stdout closes.
    pub(super) fn run(self, ends: HashMap<PathBuf, End>, opts: &Options) -> Result<(), CliError> {
        let mut tails: Vec<(PathBuf, Tail)> = self
            .files
            .iter()
            .map(|p| {
                let file = ends
                    .get(p)
                    .and_then(|&end| File::open(p).ok().map(|f| (f, end)))
                    .filter(|(f, end)| f.metadata().is_ok_and(|m| (m.dev(), m.ino()) == end.id));
                (
                    p.clone(),
                    Tail {
                        file,
                        gone: None,
                        partial: Vec::new(),
                    },
                )
            })
            .collect();
        // Anything written between the first read and the watch.
        let mut first = true;
        loop {
            if !first {
                // Blocks until a file changes; a burst of events is one pass.
                match self.events.recv() {
                    Ok(_) => while self.events.try_recv().is_ok() {},
                    Err(_) => return Err(err("file-change notification stopped")),
                }
            }
            first = false;
            let mut out = std::io::stdout().lock();
            for (path, tail) in &mut tails {
                for line in tail.read_new(path) {
                    if let Some(s) = opts.pick(&line) {
                        if opts.write(&mut out, &s).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            if out.flush().is_err() {
                return Ok(());
            }
        }
    }
}

impl Tail {
    /// The lines added since the last call: the rest of the open file, and, once the file at
    /// `path` is another one (rotated) or shorter (truncated), the new file from its start.
    fn read_new(&mut self, path: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        // The name is looked at before the old file is read: once it names another file, the
        // old one gets no more writes, so reading it to its end misses nothing.
        let now = std::fs::metadata(path)
            .ok()
            .map(|m| ((m.dev(), m.ino()), m.len()));
        if let Some((f, end)) = &mut self.file {
            // Whatever the old file got before it was renamed away is still read through it.
            let read_from = end.offset;
            let mut chunk = Vec::new();
            if f.seek(SeekFrom::Start(end.offset)).is_ok() && f.read_to_end(&mut chunk).is_ok() {
                end.offset += chunk.len() as u64;
                take_lines(&mut self.partial, &chunk, &mut lines);
            }
            match now {
                // Shorter than where this read began (the length is from before the read, so
                // lines written meanwhile do not count as a truncation).
                Some((id, len)) if id == end.id && len < read_from => {
                    // Truncated: from its start again.
                    end.offset = 0;
                    self.partial.clear();
                    return self.read_again(lines);
                }
                Some((id, _)) if id == end.id => return lines,
                _ => {
                    // Rotated or removed: a line it did not end is ended.
                    if !self.partial.is_empty() {
                        lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                        self.partial.clear();
                    }
                    let old = end.id;
                    self.file = None;
                    return self.switch(path, Some(old), lines);
                }
            }
        }
        if now.is_none() {
            return lines;
        }
        let gone = self.gone.take();
        self.switch(path, gone, lines)
    }

    /// Goes on in the file now at `path`, from its start, after the files rotated between `old`
    /// and it (rotated more than once meanwhile), read whole. Each file is known by the identity
    /// of the descriptor it was opened as, never by an earlier `stat` of its name: the writer may
    /// rotate again at any moment, and a name then means another file.
    fn switch(
        &mut self,
        path: &Path,
        old: Option<(u64, u64)>,
        mut lines: Vec<String>,
    ) -> Vec<String> {
        let mut files = open_generations(path, old);
        if files.is_empty() {
            self.gone = old;
            return lines;
        }
        let (current, id) = files.remove(0);
        if let Some(k) = old.and_then(|old| files.iter().position(|(_, i)| *i == old)) {
            for (mut between, _) in files.drain(..k).rev() {
                let mut text = Vec::new();
                if between.read_to_end(&mut text).is_ok() {
                    take_lines(&mut self.partial, &text, &mut lines);
                }
            }
        }
        self.file = Some((current, End { id, offset: 0 }));
        self.read_again(lines)
    }

    /// Reads the open file from its offset on, after a switch.
    fn read_again(&mut self, mut lines: Vec<String>) -> Vec<String> {
        if let Some((f, end)) = &mut self.file {
            let mut chunk = Vec::new();
            if f.seek(SeekFrom::Start(end.offset)).is_ok() && f.read_to_end(&mut chunk).is_ok() {
                end.offset += chunk.len() as u64;
                take_lines(&mut self.partial, &chunk, &mut lines);
            }
        }
        lines
    }
}

/// Adds the lines `chunk` ends to `lines`; `partial` holds a line begun but not ended.
fn take_lines(partial: &mut Vec<u8>, chunk: &[u8], lines: &mut Vec<String>) {
    let mut rest = chunk;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        partial.extend_from_slice(&rest[..i]);
        lines.push(String::from_utf8_lossy(partial).into_owned());
        partial.clear();
        rest = &rest[i + 1..];
    }
    partial.extend_from_slice(rest);
}

/// Rotated files a follower catches up through at most: one further behind has lost lines.
const MAX_BEHIND: usize = 100;

/// A file and its rotated files, newest first, down to the one known as `upto` (the file
/// followed before; only the current file without one), each opened and known by its
/// descriptor's identity; empty when there is no file at `path`. A rotation during the walk
/// shifts names under it, so the walk counts only if the file at `path` is still the one it
/// began with (nothing rotated meanwhile); it is walked again otherwise, a bounded number of
/// times.
fn open_generations(path: &Path, upto: Option<(u64, u64)>) -> Vec<(File, (u64, u64))> {
    let mut files = Vec::new();
    for _ in 0..20 {
        files = walk_generations(path, upto);
        let still = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        if files.first().map(|(_, id)| *id) == still {
            break;
        }
    }
    files
}

/// One walk for [`open_generations`]. Names are walked upwards while a rotation shifts files
/// upwards too, so a file is met twice (kept once) rather than skipped, and the one name the
/// writer has freed for a moment is passed over. At most [`MAX_BEHIND`] files are held open.
fn walk_generations(path: &Path, upto: Option<(u64, u64)>) -> Vec<(File, (u64, u64))> {
    let mut files: Vec<(File, (u64, u64))> = Vec::new();
    let mut missing = 0;
    for n in 0..=MAX_ROTATED {
        if files.len() > MAX_BEHIND || (n > 0 && upto.is_none()) {
            break;
        }
        let name = if n == 0 {
            path.to_path_buf()
        } else {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let Some(opened) = File::open(&name)
            .ok()
            .and_then(|f| f.metadata().ok().map(|m| (f, (m.dev(), m.ino()))))
        else {
            missing += 1;
            if n == 0 || missing == 2 {
                break;
            }
            continue;
        };
        missing = 0;
        let id = opened.1;
        if !files.iter().any(|(_, known)| *known == id) {
            files.push(opened);
        }
        if Some(id) == upto {
            break;
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_walk_opens_the_rotated_files_down_to_the_one_followed_and_never_more_than_a_hundred() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.log");
        std::fs::write(&path, "now\n").expect("write");
        let id = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| (m.dev(), m.ino()))
                .expect("stat")
        };
        for n in 1..=300 {
            std::fs::write(format!("{}.{n}", path.display()), "old\n").expect("write");
        }
        let named = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert_eq!(
            walk_generations(&path, None).len(),
            1,
            "no file followed: the current one"
        );
        let three = walk_generations(&path, Some(id(&named(3))));
        let ids: Vec<_> = three.iter().map(|(_, i)| *i).collect();
        let want = vec![id(&path), id(&named(1)), id(&named(2)), id(&named(3))];
        assert_eq!(ids, want);
        // Further behind than a follower catches up through: a bounded number held open.
        assert_eq!(
            walk_generations(&path, Some(id(&named(300)))).len(),
            MAX_BEHIND + 1
        );
    }

    /// A writer rotating as fast as it can while `-f` reads: every line once, in order. The
    /// follower must never take one file's identity for another's (a stat before the open).
    #[test]
    fn a_follower_sees_every_line_once_while_the_file_rotates_under_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.log");
        std::fs::write(&path, "").expect("create");
        let id = std::fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .expect("stat");
        let mut tail = Tail {
            file: Some((File::open(&path).expect("open"), End { id, offset: 0 })),
            gone: None,
            partial: Vec::new(),
        };
        const LINES: usize = 20_000;
        // The writer keeps 40 old files; it waits for a follower more than 20 rotations behind
        // (a starved test thread), so a line lost is the follower's fault, not the test's.
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = {
            let path = path.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .expect("open");
                let mut rotations = 0;
                for i in 0..LINES {
                    f.write_all(format!("{i}\n").as_bytes()).expect("write");
                    if i % 7 == 6 {
                        let behind = std::time::Instant::now() + Duration::from_secs(10);
                        while seen.load(std::sync::atomic::Ordering::Relaxed) + 140 < i
                            && std::time::Instant::now() < behind
                        {
                            std::thread::yield_now();
                        }
                        // Rotate the way the log writer does: shift the old ones, then a new file.
                        for n in (1..=rotations.min(40)).rev() {
                            let _ = std::fs::rename(
                                format!("{}.{n}", path.display()),
                                format!("{}.{}", path.display(), n + 1),
                            );
                        }
                        std::fs::rename(&path, format!("{}.1", path.display())).expect("rotate");
                        f = File::create(&path).expect("new file");
                        rotations += 1;
                    }
                }
            })
        };
        let mut got: Vec<usize> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.last() != Some(&(LINES - 1)) && std::time::Instant::now() < deadline {
            for line in tail.read_new(&path) {
                got.push(
                    line.parse()
                        .unwrap_or_else(|_| panic!("a whole line: {line:?}")),
                );
            }
            seen.store(
                got.last().copied().unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        writer.join().expect("writer");
        let first = got.first().copied().unwrap_or(0);
        let want: Vec<usize> = (first..LINES).collect();
        if got != want {
            let at = got.windows(2).position(|w| w[1] != w[0] + 1).unwrap_or(0);
            let around = &got[at.saturating_sub(10)..(at + 10).min(got.len())];
            panic!(
                "{} lines, first gap or repeat at {at}: {around:?}",
                got.len()
            );
        }
    }
}
