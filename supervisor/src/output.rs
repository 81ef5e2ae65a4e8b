//! Reading a child's stdout and stderr and turning the bytes into whole, prefixed log lines.
//!
//! Line format (one per line of output):
//!
//! ```text
//! 2026-11-26T12:21:02.123Z web out | the text of the line
//! ```
//!
//! UTC time with milliseconds (when the supervisor read the line), the service's name (its pid
//! for a nameless service), the stream (`out`, `err`, or `pm` for the supervisor's own lifecycle
//! lines), then ` | ` and the bytes of the line as written, without its `\n` (and without a `\r`
//! before it). Bytes that are not UTF-8 are kept as they are. A line longer than
//! [`MAX_LOG_LINE`] is cut into parts: every part but the last has the stream `out+` (or
//! `err+`), meaning "continues in the next line of this service and stream".

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::log_writer::{Sink, timestamp};

/// Longest log line kept whole; longer lines are cut into parts of this size.
pub const MAX_LOG_LINE: usize = 64 * 1024;

/// Bytes read from a child's pipe at once.
const READ_BUF: usize = 256 * 1024;
/// After a read that did not fill the buffer, output is left to gather this long before the next
/// read.
pub const PACE: std::time::Duration = std::time::Duration::from_millis(2);

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout
    Out,
    /// stderr
    Err,
    /// The supervisor's own lifecycle lines.
    Pm,
}

impl Stream {
    /// The tag written in each line; `continued` for a part of a cut line that is not the last.
    pub fn tag(self, continued: bool) -> &'static str {
        match (self, continued) {
            (Stream::Out, false) => "out",
            (Stream::Out, true) => "out+",
            (Stream::Err, false) => "err",
            (Stream::Err, true) => "err+",
            (Stream::Pm, _) => "pm ",
        }
    }
}

/// Splits output into lines: `\n` ends a line, a `\r` before it is dropped, a line longer than
/// the cap is handed out in parts (`continued: true` for all but the last), and
/// [`finish`](Self::finish) hands out a last line without `\n`. Holds at most one cap's worth.
#[derive(Debug)]
pub struct LogLines {
    partial: Vec<u8>,
    cap: usize,
}

impl Default for LogLines {
    fn default() -> Self {
        Self::new(MAX_LOG_LINE)
    }
}

impl LogLines {
    /// A splitter that cuts lines longer than `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            partial: Vec::new(),
            cap,
        }
    }

    /// Feeds bytes; calls `line(bytes, continued)` for each complete line or part.
    pub fn feed(&mut self, mut data: &[u8], mut line: impl FnMut(&[u8], bool)) {
        while let Some(i) = memchr(data) {
            let chunk = &data[..i];
            data = &data[i + 1..];
            if self.partial.is_empty() && chunk.len() <= self.cap {
                // Fast path: a whole line inside this read, no copy.
                line(strip_cr(chunk), false);
                continue;
            }
            self.append(chunk, &mut line);
            let mut l = std::mem::take(&mut self.partial);
            line(strip_cr(&l), false);
            l.clear();
            self.partial = l;
        }
        self.append(data, &mut line);
    }

    /// Adds to the unfinished line; every time it would pass the cap, a full part goes out.
    fn append(&mut self, mut chunk: &[u8], line: &mut impl FnMut(&[u8], bool)) {
        while self.partial.len() + chunk.len() > self.cap {
            let room = self.cap - self.partial.len();
            self.partial.extend_from_slice(&chunk[..room]);
            chunk = &chunk[room..];
            line(&self.partial, true);
            self.partial.clear();
        }
        self.partial.extend_from_slice(chunk);
    }

    /// The stream ended: the unterminated last line, if any.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            line(&self.partial, false);
            self.partial.clear();
        }
    }
}

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn memchr(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

/// Removes ANSI escape sequences (colours, cursor moves, titles) from a byte stream, keeping its
/// state between reads so that a sequence split across two reads is still removed whole.
/// Handles CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL` or `ESC ] ... ESC \`), and two-byte
/// escapes (`ESC x`).
#[derive(Debug, Default, Clone)]
pub struct AnsiStripper {
    state: Ansi,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Ansi {
    #[default]
    Text,
    Esc,
    Csi,
    Osc,
    OscEsc,
}

impl AnsiStripper {
    /// Appends `data` without its escape sequences to `out`.
    pub fn strip(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &b in data {
            self.state = match (self.state, b) {
                (Ansi::Text, 0x1b) => Ansi::Esc,
                (Ansi::Text, _) => {
                    out.push(b);
                    Ansi::Text
                }
                (Ansi::Esc, b'[') => Ansi::Csi,
                (Ansi::Esc, b']') => Ansi::Osc,
                (Ansi::Esc, 0x1b) => Ansi::Esc,
                (Ansi::Esc, _) => Ansi::Text,
                // Parameter and intermediate bytes, then one final byte in 0x40..=0x7e. A newline
                // inside means the sequence was broken: keep the newline, end the sequence.
                (Ansi::Csi, 0x20..=0x3f) => Ansi::Csi,
                (Ansi::Csi, b'\n') | (Ansi::Osc, b'\n') => {
                    out.push(b'\n');
                    Ansi::Text
                }
                (Ansi::Csi, _) => Ansi::Text,
                (Ansi::Osc, 0x07) => Ansi::Text,
                (Ansi::Osc, 0x1b) => Ansi::OscEsc,
                (Ansi::Osc, _) => Ansi::Osc,
                (Ansi::OscEsc, b'\\') => Ansi::Text,
                (Ansi::OscEsc, _) => Ansi::Osc,
            };
        }
    }
}

/// `2026-11-26T12:21:02.123Z web out | ` (the text of the line follows). `colour`: an ANSI
/// colour code for the label (stdout on a terminal).
pub fn prefix(t: SystemTime, label: &str, tag: &str, colour: Option<u8>) -> String {
    match colour {
        Some(c) => format!("{} \x1b[{c}m{label}\x1b[0m {tag} | ", timestamp(t)),
        None => format!("{} {label} {tag} | ", timestamp(t)),
    }
}

/// A colour per label, stable across runs, for output on a terminal.
pub fn label_colour(label: &str) -> u8 {
    const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];
    let h = label
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    COLOURS[(h % COLOURS.len() as u32) as usize]
}

/// How a service's output is turned into log lines.
#[derive(Debug, Clone)]
pub struct Pump {
    /// Where the lines go.
    pub sink: Sink,
    /// The service's label.
    pub label: Arc<str>,
    /// Remove ANSI escape sequences.
    pub strip_ansi: bool,
    /// Colour for the label (stdout on a terminal).
    pub colour: Option<u8>,
}

impl Pump {
    /// Copies one output pipe of a child into its log sink, line by line, until EOF.
    pub async fn run(self, fd: OwnedFd, stream: Stream) {
        let mut rx = match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => rx,
            Err(e) => {
                tracing::error!(service = %self.label, %e, "cannot read child output");
                return;
            }
        };
        // Small at first (most services write little); doubled, up to READ_BUF, each time a
        // read fills it.
        let mut buf = vec![0u8; 16 * 1024];
        let mut clean = Vec::new();
        let mut ansi = AnsiStripper::default();
        let mut lines = LogLines::default();
        let mut small = false;
        loop {
            if !small {
                // A child writing at full speed keeps this pipe ready forever; let the actor and
                // the control connections run between two large reads.
                tokio::task::yield_now().await;
            } else {
                // A child writing line by line would otherwise cost a wake-up, a read and a
                // batch per line. Letting output gather for a moment costs at most PACE of
                // latency and turns thousands of tiny reads into a few large ones. The pipe
                // leaves the reactor meanwhile: each write of the child would wake it.
                let fd = match rx.into_nonblocking_fd() {
                    Ok(fd) => fd,
                    Err(e) => {
                        tracing::warn!(service = %self.label, %e, "reading child output failed");
                        break;
                    }
                };
                tokio::time::sleep(PACE).await;
                rx = match pipe::Receiver::from_owned_fd_unchecked(fd) {
                    Ok(rx) => rx,
                    Err(e) => {
                        tracing::warn!(service = %self.label, %e, "reading child output failed");
                        break;
                    }
                };
            }
            let n = match rx.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(service = %self.label, %e, "reading child output failed");
                    break;
                }
            };
            // A read that fills the buffer means output is waiting: read again at once (with a
            // larger buffer); otherwise let it gather.
            small = n < buf.len();
            if !small && buf.len() < READ_BUF {
                buf.resize(buf.len() * 2, 0);
            }
            let data = if self.strip_ansi {
                clean.clear();
                ansi.strip(&buf[..n], &mut clean);
                &clean[..]
            } else {
                &buf[..n]
            };
            let batch = self.format(stream, |emit| lines.feed(data, emit));
            if !batch.is_empty() {
                self.sink.write(batch).await;
            }
        }
        let batch = self.format(stream, |emit| lines.finish(emit));
        if !batch.is_empty() {
            self.sink.write(batch).await;
        }
    }

    /// Formats the lines `split` hands out into one batch; one timestamp per read.
    fn format(&self, stream: Stream, split: impl FnOnce(&mut dyn FnMut(&[u8], bool))) -> Vec<u8> {
        format_lines(&self.label, self.colour, stream, split)
    }
}

/// Formats the lines `split` hands out (`(line, continued)`, as [`LogLines`] does) into one
/// batch of log lines, all with the current time. Also used by the sentinel, which writes a
/// dead supervisor's last lines the same way.
pub fn format_lines(
    label: &str,
    colour: Option<u8>,
    stream: Stream,
    split: impl FnOnce(&mut dyn FnMut(&[u8], bool)),
) -> Vec<u8> {
    let now = SystemTime::now();
    let whole = prefix(now, label, stream.tag(false), colour);
    let mut part = None;
    let mut batch = Vec::new();
    split(&mut |l: &[u8], continued: bool| {
        let head = if continued {
            part.get_or_insert_with(|| prefix(now, label, stream.tag(true), colour))
        } else {
            &whole
        };
        batch.reserve(head.len() + l.len() + 1);
        batch.extend_from_slice(head.as_bytes());
        batch.extend_from_slice(l);
        batch.push(b'\n');
    });
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cap: usize, reads: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut l = LogLines::new(cap);
        let mut out = Vec::new();
        for r in reads {
            l.feed(r, |x, c| out.push((x.to_vec(), c)));
        }
        l.finish(|x, c| out.push((x.to_vec(), c)));
        out
    }

    fn whole(s: &[u8]) -> (Vec<u8>, bool) {
        (s.to_vec(), false)
    }

    #[test]
    fn pieces_make_one_line_and_crlf_is_one_end() {
        assert_eq!(
            split(100, &[b"hel", b"lo\r", b"\nworld\n", b"\n", b"tail"]),
            vec![whole(b"hello"), whole(b"world"), whole(b""), whole(b"tail")]
        );
    }

    #[test]
    fn long_lines_are_cut_into_marked_parts() {
        let out = split(4, &[b"abcdefghij\nxy", b"z\n"]);
        assert_eq!(
            out,
            vec![
                (b"abcd".to_vec(), true),
                (b"efgh".to_vec(), true),
                whole(b"ij"),
                whole(b"xyz")
            ]
        );
        // A line of exactly the cap is whole.
        assert_eq!(split(4, &[b"ab", b"cd\n"]), vec![whole(b"abcd")]);
        assert_eq!(split(4, &[b"abcd\n"]), vec![whole(b"abcd")]);
    }

    #[test]
    fn invalid_utf8_is_kept_byte_for_byte() {
        assert_eq!(
            split(100, &[b"\xff\xfe\x00ok\n"]),
            vec![whole(b"\xff\xfe\x00ok")]
        );
    }

    #[test]
    fn ansi_sequences_are_removed_even_when_split_across_reads() {
        let text = b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain \x1b]8;;http://x\x1b\\link\x1b[2K\x1bc end\n";
        let expect = b"red plain link end\n".to_vec();
        for cut in 0..text.len() {
            let mut s = AnsiStripper::default();
            let mut out = Vec::new();
            s.strip(&text[..cut], &mut out);
            s.strip(&text[cut..], &mut out);
            assert_eq!(out, expect, "cut at {cut}");
        }
    }

    #[test]
    fn labels_get_stable_colours() {
        assert_eq!(label_colour("web"), label_colour("web"));
        assert!(
            prefix(SystemTime::UNIX_EPOCH, "web", "out", Some(36))
                .contains("\x1b[36mweb\x1b[0m out | ")
        );
        assert_eq!(
            prefix(SystemTime::UNIX_EPOCH, "web", "out", None),
            "1970-01-01T00:00:00.000Z web out | "
        );
    }
}
