//! The end of a log file, followed as it grows, is rotated (`app.log` renamed to `app.log.1`
//! and a new `app.log` created) or truncated. Only the end is ever read, and only a bounded
//! number of lines is kept, whatever the file's size or the service's output rate.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::logs::lines::parse_line;

/// Bytes read back from the end of a file when the tail opens it.
const BACKLOG: u64 = 64 * 1024;
/// Bytes read at most per poll: a service writing faster than that skips ahead (the pane shows
/// the newest lines, not every line).
const MAX_READ: u64 = 256 * 1024;
/// Characters kept of a line: more than a terminal line shows.
const MAX_LINE_CHARS: usize = 1024;
/// Bytes of an unfinished line held; a longer one is cut (the writer splits long lines anyway).
const MAX_PARTIAL: usize = 80 * 1024;

/// A followed log file.
#[derive(Debug)]
pub(super) struct Tail {
    path: PathBuf,
    /// Only lines of this label (services may share a file); None: every line.
    label: Option<String>,
    /// The file being read, and its (device, inode).
    file: Option<(File, (u64, u64))>,
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    /// Drop the next line: reading started in the middle of it.
    skip_first: bool,
    /// Whether a file was opened before (a file opened after a rotation is read from its start).
    opened_once: bool,
    lines: VecDeque<String>,
    cap: usize,
    /// Why the file cannot be read now.
    error: Option<String>,
    /// Changes with what the tail shows (new lines, an error): the view redraws then.
    generation: u64,
}

impl Tail {
    /// Follows `path`, keeping the last `cap` lines of `label` (every line with None).
    pub(super) fn new(path: &Path, label: Option<String>, cap: usize) -> Tail {
        Tail {
            path: path.to_path_buf(),
            label,
            file: None,
            offset: 0,
            partial: Vec::new(),
            skip_first: false,
            opened_once: false,
            lines: VecDeque::new(),
            cap: cap.max(1),
            error: None,
            generation: 0,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The kept lines, oldest first.
    pub(super) fn lines(&self) -> &VecDeque<String> {
        &self.lines
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Changes whenever [`lines`](Self::lines) or [`error`](Self::error) do.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    fn set_error(&mut self, e: Option<String>) {
        if self.error != e {
            self.error = e;
            self.generation += 1;
        }
    }

    /// Reads what was written since the last poll.
    pub(super) fn poll(&mut self) {
        let now_at_path = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if let Some((_, id)) = &self.file {
            if now_at_path.as_ref().ok() != Some(id) {
                // Rotated (or deleted): what the old file got before the switch comes first.
                self.read_more();
                if now_at_path.is_ok() {
                    self.file = None;
                    self.partial.clear();
                    self.skip_first = false;
                } else {
                    return; // the new file is not there yet: keep the old one
                }
            }
        }
        if self.file.is_none() {
            let opened = File::open(&self.path).and_then(|f| {
                let m = f.metadata()?;
                Ok((f, (m.dev(), m.ino()), m.len()))
            });
            match opened {
                Ok((f, id, len)) => {
                    self.set_error(None);
                    self.offset = if self.opened_once {
                        0
                    } else {
                        len.saturating_sub(BACKLOG)
                    };
                    self.skip_first = self.offset > 0;
                    self.opened_once = true;
                    self.file = Some((f, id));
                }
                Err(e) => {
                    self.set_error(Some(format!("{}: {e}", self.path.display())));
                    return;
                }
            }
        }
        self.read_more();
    }

    /// Reads the held file from the offset on, at most [`MAX_READ`] bytes (its end when more
    /// is there).
    fn read_more(&mut self) {
        let Some((f, _)) = &mut self.file else {
            return;
        };
        let len = match f.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.set_error(Some(format!("{}: {e}", self.path.display())));
                return;
            }
        };
        if len < self.offset {
            // Truncated: start over.
            self.offset = 0;
            self.partial.clear();
            self.skip_first = false;
        }
        if len - self.offset > MAX_READ {
            self.offset = len - MAX_READ;
            self.partial.clear();
            self.skip_first = true;
        }
        if len == self.offset {
            return;
        }
        let mut chunk = Vec::new();
        let read = f
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| f.take(MAX_READ).read_to_end(&mut chunk));
        if let Err(e) = read {
            self.set_error(Some(format!("{}: {e}", self.path.display())));
            return;
        }
        self.offset += chunk.len() as u64;
        self.feed(&chunk);
    }

    /// Splits bytes into lines and keeps the ones of the label.
    pub(super) fn feed(&mut self, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(i);
            data = &rest[1..];
            let whole = if self.partial.is_empty() {
                String::from_utf8_lossy(line).into_owned()
            } else {
                self.partial.extend_from_slice(line);
                let s = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                s
            };
            if std::mem::take(&mut self.skip_first) {
                continue;
            }
            self.keep(&whole);
        }
        let room = MAX_PARTIAL.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    fn keep(&mut self, line: &str) {
        if let Some(label) = &self.label {
            if parse_line(line).map(|p| p.label) != Some(label.as_str()) {
                return;
            }
        }
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back(clean(line));
        self.generation += 1;
    }
}

/// A line as the terminal may show it: no control characters (an escape sequence in a log
/// file would move the cursor), at most [`MAX_LINE_CHARS`].
pub(super) fn clean(line: &str) -> String {
    line.chars()
        .take(MAX_LINE_CHARS)
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}
