//! Reading a child's stdout and stderr and turning the bytes into whole, prefixed log lines.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::log_writer::{Sink, timestamp};

/// Longest log line kept whole; longer lines are cut into parts of this size.
pub const MAX_LOG_LINE: usize = 64 * 1024;

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
    /// The tag written in each line.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
            Stream::Pm => "pm ",
        }
    }
}

/// Splits output into lines: `\n` ends a line, a `\r` before it is dropped, a line longer than
/// [`MAX_LOG_LINE`] is cut, and [`finish`](Self::finish) hands out a last line without `\n`.
#[derive(Debug, Default)]
pub struct LogLines {
    partial: Vec<u8>,
}

impl LogLines {
    /// Feeds bytes; calls `line` for each complete line.
    pub fn feed(&mut self, mut data: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&data[..i], &data[i + 1..]);
            if self.partial.is_empty() {
                emit_cut(head, &mut line);
            } else {
                self.partial.extend_from_slice(head);
                let whole = std::mem::take(&mut self.partial);
                emit_cut(&whole, &mut line);
            }
            data = rest;
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LOG_LINE {
            let rest = self.partial.split_off(MAX_LOG_LINE);
            line(&self.partial);
            self.partial = rest;
        }
    }

    /// The stream ended: the unterminated last line, if any.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            emit_cut(&whole, &mut line);
        }
    }
}

fn emit_cut(l: &[u8], line: &mut impl FnMut(&[u8])) {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    if l.is_empty() {
        line(l);
    }
    for part in l.chunks(MAX_LOG_LINE) {
        line(part);
    }
}

/// `2026-11-26T12:21:02.123Z web out | ` (the text of the line follows).
pub fn prefix(t: SystemTime, label: &str, stream: Stream) -> String {
    format!("{} {label} {} | ", timestamp(t), stream.tag())
}

/// Copies one output pipe of a child into its log sink, line by line, until EOF.
pub async fn pump(fd: OwnedFd, sink: Sink, label: Arc<str>, stream: Stream) {
    let mut rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(service = %label, %e, "cannot read child output");
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = LogLines::default();
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(service = %label, %e, "reading child output failed");
                break;
            }
        };
        let head = prefix(SystemTime::now(), &label, stream);
        let mut batch = Vec::with_capacity(n + 64);
        lines.feed(&buf[..n], |l| {
            batch.extend_from_slice(head.as_bytes());
            batch.extend_from_slice(l);
            batch.push(b'\n');
        });
        if !batch.is_empty() {
            sink.write(batch).await;
        }
    }
    let head = prefix(SystemTime::now(), &label, stream);
    let mut batch = Vec::new();
    lines.finish(|l| {
        batch.extend_from_slice(head.as_bytes());
        batch.extend_from_slice(l);
        batch.push(b'\n');
    });
    if !batch.is_empty() {
        sink.write(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(reads: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut l = LogLines::default();
        let mut out = Vec::new();
        for r in reads {
            l.feed(r, |x| out.push(x.to_vec()));
        }
        l.finish(|x| out.push(x.to_vec()));
        out
    }

    #[test]
    fn pieces_make_one_line_and_crlf_is_one_end() {
        assert_eq!(
            split(&[b"hel", b"lo\r", b"\nworld\n", b"tail"]),
            vec![b"hello".to_vec(), b"world".to_vec(), b"tail".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LOG_LINE * 2 + 5];
        let out = split(&[&long, b"\n"]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].len(), 5);
    }
}
