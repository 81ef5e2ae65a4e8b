//! The log line format, and turning output bytes into log lines.
//!
//! Line format (one per line of output):
//!
//! ```text
//! 2026-11-26T12:21:02.123Z web out | the text of the line
//! ```
//!
//! UTC time with milliseconds (when the supervisor read the line), the service's label (its
//! name, or its pid for a nameless service), the stream (`out`, `err`, or `pm` for the
//! supervisor's own lines about the service), then ` | ` and the bytes of the line as written,
//! without its `\n` (and without a `\r` before it). Bytes that are not UTF-8 are kept as they
//! are (with `stripANSI`, they become U+FFFD, as on a terminal). A line longer than
//! [`MAX_LOG_LINE`] is cut into parts: every part but the last has the stream `out+` (or
//! `err+`), meaning "continues in the next line of this service and stream".

use std::time::SystemTime;

/// Longest log line kept whole; longer lines are cut into parts of this size.
pub(crate) const MAX_LOG_LINE: usize = 64 * 1024;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
    /// The supervisor's own lines about the service.
    Pm,
}

impl Stream {
    /// `out`, `err` or `pm`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
            Stream::Pm => "pm",
        }
    }

    /// The tag written in each line; `continued` for a part of a cut line that is not the last.
    fn tag(self, continued: bool) -> &'static str {
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
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
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

/// Removes terminal escape sequences from a byte stream, keeping its state between reads so
/// that a sequence split across two reads is still removed whole.
///
/// A terminal parser (the `vte` crate, the one Alacritty uses) reads the stream as a terminal
/// would, and only printed text is kept: every ECMA-48 sequence goes, CSI (colours, cursor
/// moves), OSC (titles, hyperlinks), DCS, SOS/PM/APC strings with their payload, charset
/// selections (`ESC ( B`, which `tput sgr0` writes) and every other escape. Control characters
/// other than `\n`, `\r` and `\t` go too (BEL, backspace, C1 controls), and bytes that are not
/// UTF-8 become U+FFFD, as on a terminal. A `\n` ends any sequence still open (its bytes are
/// dropped), so one broken sequence never swallows the lines that follow. Memory is bounded:
/// the parser keeps at most 1 KiB of an OSC string, and ignores the rest.
#[derive(Default)]
pub struct AnsiStripper {
    parser: vte::Parser,
    /// The start of a UTF-8 character cut by the end of a read, held for the next one: the
    /// parser decodes the same characters wherever reads end.
    held: Vec<u8>,
}

impl std::fmt::Debug for AnsiStripper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnsiStripper")
    }
}

/// What the parser hands out that is kept: printed characters, and line structure.
struct Printed<'a>(&'a mut Vec<u8>);

impl vte::Perform for Printed<'_> {
    fn print(&mut self, c: char) {
        if c == '\x7f' {
            return;
        }
        let mut utf8 = [0u8; 4];
        self.0
            .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn execute(&mut self, byte: u8) {
        if matches!(byte, b'\n' | b'\r' | b'\t') {
            self.0.push(byte);
        }
    }
}

impl AnsiStripper {
    /// Appends `data` without its escape sequences to `out`.
    pub fn strip(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let joined;
        let data = if self.held.is_empty() {
            data
        } else {
            self.held.extend_from_slice(data);
            joined = std::mem::take(&mut self.held);
            &joined[..]
        };
        let mut printed = Printed(out);
        for piece in data.split_inclusive(|&b| b == b'\n') {
            match piece.split_last() {
                Some((b'\n', line)) => {
                    self.parser.advance(&mut printed, line);
                    // CAN cancels whatever sequence is open, and is not printed itself.
                    self.parser.advance(&mut printed, b"\x18\n");
                }
                _ => {
                    let cut = piece.len() - unfinished_utf8(piece);
                    self.parser.advance(&mut printed, &piece[..cut]);
                    self.held.extend_from_slice(&piece[cut..]);
                }
            }
        }
    }
}

/// How many bytes at the end of `data` begin a UTF-8 character that needs more (0 to 3).
fn unfinished_utf8(data: &[u8]) -> usize {
    for back in 1..=data.len().min(3) {
        let b = data[data.len() - back];
        let needs = match b {
            0x80..=0xbf => continue,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0,
        };
        return if back < needs { back } else { 0 };
    }
    0
}

/// `2026-11-26T12:21:02.123Z`: UTC with milliseconds, the timestamp of every log line.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `2026-11-26T12:21:02.123Z web out | ` (the text of the line follows). `colour`: an ANSI
/// colour code for the label (stdout on a terminal).
fn prefix(t: SystemTime, label: &str, tag: &str, colour: Option<u8>) -> String {
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

/// Formats the lines `split` hands out (`(line, continued)`, as [`LogLines`] does) into one
/// batch of log lines of `stream`, all with the current time. The supervisor's output readers
/// and the sentinel write a service's output this way.
pub(crate) fn format_output(
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

/// One line of the supervisor's own about a service (stream `pm`), with the current time.
pub(crate) fn supervisor_line(label: &str, colour: Option<u8>, text: &str) -> Vec<u8> {
    let mut line = prefix(SystemTime::now(), label, Stream::Pm.tag(false), colour).into_bytes();
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    line
}

/// A log line read back: `2026-11-26T12:21:02.123Z web api out | text` (labels may hold spaces,
/// never `|`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    pub(crate) time: &'a str,
    pub(crate) label: &'a str,
    pub(crate) stream: Stream,
    /// `out+`, `err+`: continues in the next line of this service and stream.
    pub(crate) continued: bool,
    pub(crate) text: &'a str,
}

/// Reads a log line back; None for a line not in the format.
pub(crate) fn parse_line(line: &str) -> Option<Parsed<'_>> {
    let (head, text) = line.split_once(" | ")?;
    let (time, rest) = head.split_once(' ')?;
    let (label, tag) = rest.trim_end().rsplit_once(' ')?;
    let (stream, continued) = match tag {
        "out" => (Stream::Out, false),
        "out+" => (Stream::Out, true),
        "err" => (Stream::Err, false),
        "err+" => (Stream::Err, true),
        "pm" => (Stream::Pm, false),
        _ => return None,
    };
    Some(Parsed {
        time,
        label,
        stream,
        continued,
        text,
    })
}

#[cfg(test)]
mod tests;
