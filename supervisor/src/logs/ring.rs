//! The recent lines of a console service (one without a `log` file, whose lines go to the
//! supervisor's stdout), kept in memory so that `logs NAME` can show them while the supervisor
//! runs (control request `logs`).
//!
//! Bounded per service in lines ([`RING_LINES`]) and bytes of text ([`RING_BYTES`]): the oldest
//! lines go first. Output readers add to it under a mutex held only to move finished lines in,
//! never across I/O, so a reader of the ring (a control connection) can never hold up a
//! service's output, and the log writer threads never see it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::lines::Stream;

/// Most lines kept per console service.
pub(crate) const RING_LINES: usize = 1000;
/// Most bytes of text kept per console service (a line is at most `MAX_LOG_LINE`, 64 KiB).
pub(crate) const RING_BYTES: usize = 256 * 1024;

/// One kept line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recent {
    pub(crate) time: SystemTime,
    pub(crate) stream: Stream,
    /// A part of a cut line that continues in the next one (`out+` in a log file).
    pub(crate) continued: bool,
    /// The line as written, without its `\n`; bytes that are not UTF-8 as U+FFFD.
    pub(crate) text: Box<str>,
}

/// A console service's recent lines.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    lines: VecDeque<Recent>,
    bytes: usize,
}

impl Ring {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves a consistent queue: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds lines (`(text, continued)`) read at `time`, dropping the oldest beyond the bounds.
    pub(crate) fn push(&self, time: SystemTime, stream: Stream, lines: &[(&[u8], bool)]) {
        if lines.is_empty() {
            return;
        }
        // Converted before taking the lock.
        let new: Vec<Recent> = lines
            .iter()
            .map(|&(text, continued)| Recent {
                time,
                stream,
                continued,
                text: String::from_utf8_lossy(text).into(),
            })
            .collect();
        let mut ring = self.lock();
        for line in new {
            ring.bytes += line.text.len();
            ring.lines.push_back(line);
        }
        while ring.lines.len() > RING_LINES || ring.bytes > RING_BYTES {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.text.len(),
                None => break,
            }
        }
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<Recent> {
        let ring = self.lock();
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_within_its_bounds() {
        let ring = Ring::default();
        let t = SystemTime::UNIX_EPOCH;
        for i in 0..(RING_LINES + 10) {
            let text = format!("line {i}");
            ring.push(t, Stream::Out, &[(text.as_bytes(), false)]);
        }
        let all = ring.last(usize::MAX);
        assert_eq!(all.len(), RING_LINES);
        assert_eq!(&*all[0].text, "line 10");
        assert_eq!(
            &*all[RING_LINES - 1].text,
            format!("line {}", RING_LINES + 9)
        );
        assert_eq!(ring.last(2).len(), 2);
        assert_eq!(&*ring.last(1)[0].text, format!("line {}", RING_LINES + 9));
        // Long lines: bounded by bytes.
        let long = vec![b'x'; 60 * 1024];
        for _ in 0..10 {
            ring.push(t, Stream::Err, &[(&long, true)]);
        }
        let kept = ring.last(usize::MAX);
        let bytes: usize = kept.iter().map(|l| l.text.len()).sum();
        assert!(bytes <= RING_BYTES, "{bytes}");
        assert_eq!(kept.len(), RING_BYTES / long.len());
        assert!(kept.iter().all(|l| l.stream == Stream::Err && l.continued));
    }
}
