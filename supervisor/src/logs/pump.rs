//! Reading a child's stdout and stderr into its log, line by line.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::lines::{AnsiStripper, LogLines, Stream, format_output};
use super::writer::Sink;

/// Bytes read from a child's pipe at once.
const READ_BUF: usize = 256 * 1024;
/// After a read that did not fill the buffer, output is left to gather this long before the next
/// read.
pub(crate) const PACE: std::time::Duration = std::time::Duration::from_millis(2);

/// How a service's output is turned into log lines.
#[derive(Debug, Clone)]
pub(crate) struct Pump {
    pub(crate) sink: Sink,
    pub(crate) label: Arc<str>,
    pub(crate) strip_ansi: bool,
    /// Colour for the label (stdout on a terminal).
    pub(crate) colour: Option<u8>,
}

impl Pump {
    /// Copies one output pipe of a child into its log sink, line by line, until EOF.
    pub(crate) async fn run(self, fd: OwnedFd, stream: Stream) {
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
        // A console service's lines for its ring, each with its `continued` flag as last byte.
        let mut recent = self.sink.ring().map(|_| Vec::new());
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
            let batch = format_output(&self.label, self.colour, stream, |emit| {
                lines.feed(data, |l, continued| {
                    emit(l, continued);
                    keep(&mut recent, l, continued);
                });
            });
            self.deliver(batch, stream, &mut recent).await;
        }
        let batch = format_output(&self.label, self.colour, stream, |emit| {
            lines.finish(|l, continued| {
                emit(l, continued);
                keep(&mut recent, l, continued);
            });
        });
        self.deliver(batch, stream, &mut recent).await;
    }

    /// Writes a batch to the log, and its lines (`recent`, emptied) to the ring of a console
    /// service.
    async fn deliver(&self, batch: Vec<u8>, stream: Stream, recent: &mut Option<Vec<Vec<u8>>>) {
        if let (Some(ring), Some(lines)) = (self.sink.ring(), recent.as_mut()) {
            let parts: Vec<(&[u8], bool)> = lines
                .iter()
                .map(|l| match l.split_last() {
                    Some((&continued, text)) => (text, continued == 1),
                    None => (&l[..], false),
                })
                .collect();
            ring.push(std::time::SystemTime::now(), stream, &parts);
            lines.clear();
        }
        if !batch.is_empty() {
            self.sink.write(batch).await;
        }
    }
}

/// Copies a line for the ring (when there is one).
fn keep(recent: &mut Option<Vec<Vec<u8>>>, line: &[u8], continued: bool) {
    if let Some(r) = recent {
        let mut l = Vec::with_capacity(line.len() + 1);
        l.extend_from_slice(line);
        l.push(u8::from(continued));
        r.push(l);
    }
}
