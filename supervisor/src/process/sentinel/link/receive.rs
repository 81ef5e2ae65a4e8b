//! The sentinel's end of the link: messages and the descriptors that come with them.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{MAX_MESSAGE, Output, Record};

/// A message as the sentinel receives it.
#[derive(Debug)]
pub(crate) enum Told {
    /// A process group, with its output when it has one.
    Add {
        /// The group.
        record: Record,
        /// Its output pipes and how to write their lines.
        output: Option<Output>,
        /// It had an output, but the descriptors did not arrive (the sentinel's descriptor
        /// table is full).
        missing: bool,
    },
    /// New facts about the same process.
    Update(Record),
    /// The group is gone.
    Del(i32),
    /// Clean exit.
    Bye,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn bytes(&mut self) -> Option<&[u8]> {
        let n = u32::from_le_bytes(self.take()?) as usize;
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn record(&mut self) -> Option<Record> {
        Some(Record {
            pid: i32::from_le_bytes(self.take()?),
            start_time: u64::from_le_bytes(self.take()?),
            grace: Duration::from_millis(u64::from_le_bytes(self.take()?)),
            term: self.take::<1>()?[0] != 0,
        })
    }
}

/// Decodes a message. An `A` message with an output takes its two descriptors from the front
/// of `fds` (None there: they did not arrive). None for a message this version does not
/// understand.
pub(super) fn decode(message: &[u8], fds: &mut VecDeque<OwnedFd>) -> Option<Told> {
    let (&kind, rest) = message.split_first()?;
    let mut r = Reader(rest);
    match kind {
        b'A' => {
            let record = r.record()?;
            if r.take::<1>()?[0] == 0 {
                return Some(Told::Add {
                    record,
                    output: None,
                    missing: false,
                });
            }
            let strip_ansi = r.take::<1>()?[0] != 0;
            let label: Arc<str> = String::from_utf8_lossy(r.bytes()?).into();
            let to_file = r.take::<1>()?[0] != 0;
            let path = r.bytes()?;
            let log = to_file.then(|| PathBuf::from(OsString::from_vec(path.to_vec())));
            let output = match (fds.pop_front(), fds.pop_front()) {
                (Some(stdout), Some(stderr)) => Some(Output {
                    stdout,
                    stderr,
                    label,
                    log,
                    strip_ansi,
                }),
                _ => None,
            };
            Some(Told::Add {
                record,
                missing: output.is_none(),
                output,
            })
        }
        b'U' => Some(Told::Update(r.record()?)),
        b'D' => Some(Told::Del(i32::from_le_bytes(r.take()?))),
        b'B' => Some(Told::Bye),
        _ => None,
    }
}

/// The sentinel's end: reads messages and the descriptors that come with them.
#[derive(Debug)]
pub(crate) struct Receiver {
    fd: RawFd,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    /// Descriptors were cut off once (the sentinel's table was full): which message the next
    /// ones belong to is no longer known, so every later one is closed.
    lost_track: bool,
}

impl Receiver {
    /// Reads from `fd` (the sentinel's stdin), which stays open for the process's life.
    pub(crate) fn new(fd: RawFd) -> Receiver {
        Receiver {
            fd,
            buf: Vec::new(),
            fds: VecDeque::new(),
            lost_track: false,
        }
    }

    /// The next message, waiting for it; None at EOF (the supervisor closed its end, or died).
    /// An error for a stream that cannot be read or is not the supervisor's (a message longer
    /// than [`MAX_MESSAGE`]).
    pub(crate) fn next(&mut self) -> io::Result<Option<Told>> {
        loop {
            while let Some(len) = self.buf.first_chunk::<4>().map(|l| u32::from_le_bytes(*l)) {
                let len = len as usize;
                if len > MAX_MESSAGE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a message of {len} bytes on the link"),
                    ));
                }
                if self.buf.len() < 4 + len {
                    break;
                }
                let told = decode(&self.buf[4..4 + len], &mut self.fds);
                self.buf.drain(..4 + len);
                if let Some(told) = told {
                    return Ok(Some(told));
                }
            }
            let mut chunk = [0u8; 4096];
            let (n, fds, cut) = crate::platform::recv_with_fds(self.fd, &mut chunk)?;
            if cut {
                self.lost_track = true;
                self.fds.clear();
            }
            if !self.lost_track {
                self.fds.extend(fds);
            }
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
