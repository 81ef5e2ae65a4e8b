//! The link from the supervisor to its sentinel: a Unix stream socket (the sentinel's stdin)
//! that carries length-prefixed messages, and with a process's first message duplicates of its
//! stdout and stderr read ends (`SCM_RIGHTS`, attached to the message's first byte).
//!
//! The supervisor never waits on it: what the sentinel should know is a table (one entry per live
//! process group), and the messages that make up the difference from what it was told are
//! computed only when the previous ones are sent, so updates to the same group coalesce and a
//! group added and gone before the sentinel read anything costs nothing. Descriptors waiting to
//! be passed are those of live processes only; a process's are closed here once it is gone.
//!
//! A stream socket rather than a seqpacket one because macOS has no `AF_UNIX` seqpacket sockets.
//! Descriptors arrive no later than the first byte of the message they came with, and in order,
//! so the sentinel queues them and gives each `A` message that has an output the next two.
//!
//! Message layout (integers little-endian; each message is preceded by its length as a u32):
//!
//! ```text
//! 'A' pid:i32 start:u64 grace_ms:u64 term:u8 has_output:u8
//!     [strip_ansi:u8 label_len:u32 label to_file:u8 path_len:u32 path]  + fds [stdout, stderr]
//! 'U' pid:i32 start:u64 grace_ms:u64 term:u8          (the same process; its fds stay)
//! 'D' pid:i32                                          (gone: the sentinel closes its fds)
//! 'B'                                                  (clean exit: leave, touching nothing)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::socket;

use super::Record;

mod receive;

pub(crate) use receive::{Receiver, Told};

/// Largest message: a record, a label and a log path (at most `PATH_MAX`) fit well.
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;

/// What the sentinel needs to write a process's output as the supervisor would: duplicates of
/// its pipes' read ends (the sentinel never reads them while the supervisor lives), its label,
/// and where its lines go.
#[derive(Debug)]
pub(crate) struct Output {
    /// Read end of the process's stdout pipe.
    pub(crate) stdout: OwnedFd,
    /// Read end of the process's stderr pipe.
    pub(crate) stderr: OwnedFd,
    /// The label of its lines (the service's name, or the pid).
    pub(crate) label: Arc<str>,
    /// Its log file; None: the supervisor's stdout.
    pub(crate) log: Option<PathBuf>,
    /// Remove ANSI escape sequences.
    pub(crate) strip_ansi: bool,
}

impl Output {
    /// Duplicates of `stdout` and `stderr` (close-on-exec) with how their lines are written.
    pub(crate) fn new(
        stdout: &OwnedFd,
        stderr: &OwnedFd,
        label: Arc<str>,
        log: Option<PathBuf>,
        strip_ansi: bool,
    ) -> io::Result<Output> {
        Ok(Output {
            stdout: stdout.try_clone()?,
            stderr: stderr.try_clone()?,
            label,
            log,
            strip_ansi,
        })
    }
}

/// One message to send (with its length prefix), with the output whose descriptors go with
/// its first byte.
#[derive(Debug)]
struct Packet {
    bytes: Vec<u8>,
    output: Option<Arc<Output>>,
    /// The record of an `A` message, to send it again without descriptors.
    add: Option<Record>,
}

impl Packet {
    fn new(message: Vec<u8>, output: Option<Arc<Output>>) -> Packet {
        let mut bytes = Vec::with_capacity(4 + message.len());
        bytes.extend_from_slice(&(message.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&message);
        Packet {
            bytes,
            output,
            add: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    output: Option<Arc<Output>>,
}

impl Entry {
    /// The same process with the same output: only its record may differ.
    fn same_process(&self, other: &Entry) -> bool {
        self.record.pid == other.record.pid
            && self.record.start_time == other.record.start_time
            && match (&self.output, &other.output) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// What the sentinel should know and what it has been told.
#[derive(Debug, Default)]
pub(crate) struct Table {
    wanted: BTreeMap<i32, Entry>,
    told: BTreeMap<i32, Entry>,
    out: VecDeque<Packet>,
    /// Bytes of the first packet in `out` already sent.
    written: usize,
    /// A clean exit: send `bye` after the rest, then nothing more.
    pub(crate) bye: bool,
    /// `bye` is queued: nothing follows it.
    pub(crate) done: bool,
}

impl Table {
    /// Starts with `entries` to tell.
    pub(crate) fn with(entries: impl IntoIterator<Item = (Record, Option<Arc<Output>>)>) -> Table {
        Table {
            wanted: entries
                .into_iter()
                .map(|(record, output)| (record.pid, Entry { record, output }))
                .collect(),
            ..Table::default()
        }
    }

    /// A new process group, or new facts about one (`output` None keeps what it had).
    pub(crate) fn add(&mut self, record: &Record, output: Option<Arc<Output>>) {
        let output = match output {
            Some(o) => Some(o),
            None => self
                .wanted
                .get(&record.pid)
                .filter(|e| e.record.start_time == record.start_time)
                .and_then(|e| e.output.clone()),
        };
        self.wanted.insert(
            record.pid,
            Entry {
                record: record.clone(),
                output,
            },
        );
    }

    /// The child said `hello`: no SIGTERM for it.
    pub(crate) fn hello(&mut self, pid: i32) {
        if let Some(e) = self.wanted.get_mut(&pid) {
            e.record.term = false;
        }
    }

    /// The group is gone.
    pub(crate) fn remove(&mut self, pid: i32) {
        self.wanted.remove(&pid);
    }

    /// The bytes to send now, and the descriptors to attach to them (at a message's start),
    /// computing the next difference when the last one is out.
    pub(crate) fn pending(&mut self) -> Option<(&[u8], Option<&Output>)> {
        if self.out.is_empty() && !self.done {
            self.diff();
        }
        let p = self.out.front()?;
        let fds = if self.written == 0 {
            p.output.as_deref()
        } else {
            None
        };
        Some((&p.bytes[self.written..], fds))
    }

    /// The descriptors of the message about to be sent cannot be passed (the kernel refused
    /// them): it is sent without them.
    pub(crate) fn drop_descriptors(&mut self) {
        if self.written > 0 {
            return;
        }
        if let Some(p) = self.out.front_mut()
            && p.output.is_some()
            && let Some(r) = &p.add
        {
            *p = encode_add(r, None);
        }
    }

    /// `n` bytes of [`pending`](Self::pending) went out.
    pub(crate) fn sent(&mut self, n: usize) {
        self.written += n;
        if self
            .out
            .front()
            .is_some_and(|p| self.written >= p.bytes.len())
        {
            self.out.pop_front();
            self.written = 0;
        }
    }

    fn diff(&mut self) {
        for pid in self.told.keys() {
            if !self.wanted.contains_key(pid) {
                self.out.push_back(Packet::new(encode_del(*pid), None));
            }
        }
        for (pid, e) in &self.wanted {
            match self.told.get(pid) {
                Some(t) if t.same_process(e) => {
                    if t.record != e.record {
                        self.out
                            .push_back(Packet::new(encode_record(b'U', &e.record), None));
                    }
                }
                _ => self.out.push_back(encode_add(&e.record, e.output.as_ref())),
            }
        }
        self.told.clone_from(&self.wanted);
        if self.bye {
            self.out.push_back(Packet::new(b"B".to_vec(), None));
            self.done = true;
        }
    }
}

fn encode_record(kind: u8, r: &Record) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.push(kind);
    b.extend_from_slice(&r.pid.to_le_bytes());
    b.extend_from_slice(&r.start_time.to_le_bytes());
    b.extend_from_slice(&(r.grace.as_millis() as u64).to_le_bytes());
    b.push(u8::from(r.term));
    b
}

fn encode_del(pid: i32) -> Vec<u8> {
    let mut b = vec![b'D'];
    b.extend_from_slice(&pid.to_le_bytes());
    b
}

/// An `A` message. An output whose description would not fit in a message is left out: the
/// sentinel then cannot keep that process's last words, and still stops it.
fn encode_add(r: &Record, output: Option<&Arc<Output>>) -> Packet {
    let mut b = encode_record(b'A', r);
    let path = output
        .and_then(|o| o.log.as_ref())
        .map_or(&b""[..], |p| p.as_os_str().as_bytes());
    let Some(o) = output.filter(|o| b.len() + 11 + o.label.len() + path.len() <= MAX_MESSAGE)
    else {
        b.push(0);
        return Packet {
            add: Some(r.clone()),
            ..Packet::new(b, None)
        };
    };
    b.push(1);
    b.push(u8::from(o.strip_ansi));
    b.extend_from_slice(&(o.label.len() as u32).to_le_bytes());
    b.extend_from_slice(o.label.as_bytes());
    b.push(u8::from(o.log.is_some()));
    b.extend_from_slice(&(path.len() as u32).to_le_bytes());
    b.extend_from_slice(path);
    Packet {
        add: Some(r.clone()),
        ..Packet::new(b, Some(o.clone()))
    }
}

/// The two ends of a new link: (the supervisor's, the sentinel's). Close-on-exec; the
/// supervisor's is non-blocking.
///
/// The supervisor's send buffer is as small as the system allows, so that only a few messages
/// wait in the socket while the sentinel does not read (stopped with SIGSTOP, say): the pipes of
/// processes that are gone are not kept open in it, and everything else waits in the table, where
/// updates coalesce.
pub(crate) fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    socket::setsockopt(&ours, socket::sockopt::SndBuf, &SEND_BUFFER)?;
    Ok((ours, theirs))
}

/// Send buffer asked for (the kernel doubles it, and has a floor of a few KiB).
const SEND_BUFFER: usize = 2048;

/// Sends `bytes` without blocking, with `output`'s descriptors attached to the first byte;
/// returns how many bytes went (`WouldBlock` when none could).
pub(crate) fn send(fd: RawFd, bytes: &[u8], output: Option<&Output>) -> io::Result<usize> {
    let fds = output.map(|o| [o.stdout.as_raw_fd(), o.stderr.as_raw_fd()]);
    crate::platform::send_with_fds(fd, bytes, fds)
}

#[cfg(test)]
mod tests;
