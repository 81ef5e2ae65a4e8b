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
use std::ffi::OsString;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{self, ControlMessage, MsgFlags};

use super::Record;

/// Largest message: a record, a label and a log path (at most `PATH_MAX`) fit well.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// What the sentinel needs to write a process's output as the supervisor would: duplicates of
/// its pipes' read ends (the sentinel never reads them while the supervisor lives), its label,
/// and where its lines go.
#[derive(Debug)]
pub struct Output {
    /// Read end of the process's stdout pipe.
    pub stdout: OwnedFd,
    /// Read end of the process's stderr pipe.
    pub stderr: OwnedFd,
    /// The label of its lines (the service's name, or the pid).
    pub label: Arc<str>,
    /// Its log file; None: the supervisor's stdout.
    pub log: Option<PathBuf>,
    /// Remove ANSI escape sequences.
    pub strip_ansi: bool,
}

impl Output {
    /// Duplicates of `stdout` and `stderr` (close-on-exec) with how their lines are written.
    pub fn new(
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
pub struct Table {
    wanted: BTreeMap<i32, Entry>,
    told: BTreeMap<i32, Entry>,
    out: VecDeque<Packet>,
    /// Bytes of the first packet in `out` already sent.
    written: usize,
    /// A clean exit: send `bye` after the rest, then nothing more.
    pub bye: bool,
    /// `bye` is queued: nothing follows it.
    pub done: bool,
}

impl Table {
    /// Starts with `entries` to tell.
    pub fn with(entries: impl IntoIterator<Item = (Record, Option<Arc<Output>>)>) -> Table {
        Table {
            wanted: entries
                .into_iter()
                .map(|(record, output)| (record.pid, Entry { record, output }))
                .collect(),
            ..Table::default()
        }
    }

    /// A new process group, or new facts about one (`output` None keeps what it had).
    pub fn add(&mut self, record: &Record, output: Option<Arc<Output>>) {
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
    pub fn hello(&mut self, pid: i32) {
        if let Some(e) = self.wanted.get_mut(&pid) {
            e.record.term = false;
        }
    }

    /// The group is gone.
    pub fn remove(&mut self, pid: i32) {
        self.wanted.remove(&pid);
    }

    /// The bytes to send now, and the descriptors to attach to them (at a message's start),
    /// computing the next difference when the last one is out.
    pub fn pending(&mut self) -> Option<(&[u8], Option<&Output>)> {
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
    pub fn drop_descriptors(&mut self) {
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
    pub fn sent(&mut self, n: usize) {
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

/// A message as the sentinel receives it.
#[derive(Debug)]
pub enum Told {
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
fn decode(message: &[u8], fds: &mut VecDeque<OwnedFd>) -> Option<Told> {
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

/// The two ends of a new link: (the supervisor's, the sentinel's). Close-on-exec; the
/// supervisor's is non-blocking.
///
/// The supervisor's send buffer is as small as the system allows, so that only a few messages
/// wait in the socket while the sentinel does not read (stopped with SIGSTOP, say): the pipes of
/// processes that are gone are not kept open in it, and everything else waits in the table, where
/// updates coalesce.
pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    socket::setsockopt(&ours, socket::sockopt::SndBuf, &SEND_BUFFER)?;
    Ok((ours, theirs))
}

/// Send buffer asked for (the kernel doubles it, and has a floor of a few KiB).
const SEND_BUFFER: usize = 2048;

/// Sends `bytes` without blocking, with `output`'s descriptors attached to the first byte;
/// returns how many bytes went (`WouldBlock` when none could).
pub fn send(fd: RawFd, bytes: &[u8], output: Option<&Output>) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let fds;
    let rights;
    let cmsgs: &[ControlMessage] = match output {
        Some(o) => {
            fds = [o.stdout.as_raw_fd(), o.stderr.as_raw_fd()];
            rights = [ControlMessage::ScmRights(&fds)];
            &rights
        }
        None => &[],
    };
    // A sentinel that died must not kill the supervisor with SIGPIPE (a library user may not
    // ignore it). macOS has no MSG_NOSIGNAL; its binary ignores SIGPIPE, as every Rust binary.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = MsgFlags::MSG_DONTWAIT;
    Ok(socket::sendmsg::<()>(fd, &iov, cmsgs, flags, None)?)
}

/// The sentinel's end: reads messages and the descriptors that come with them.
#[derive(Debug)]
pub struct Receiver {
    fd: RawFd,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    /// Descriptors were cut off once (the sentinel's table was full): which message the next
    /// ones belong to is no longer known, so every later one is closed.
    lost_track: bool,
}

impl Receiver {
    /// Reads from `fd` (the sentinel's stdin), which stays open for the process's life.
    pub fn new(fd: RawFd) -> Receiver {
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
    pub fn next(&mut self) -> io::Result<Option<Told>> {
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
            let (n, fds, cut) = recv(self.fd, &mut chunk)?;
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

/// Receives into `buf`, waiting for data: how many bytes (0 at EOF), the descriptors that came
/// with them, and whether descriptors were cut off (`MSG_CTRUNC`: no room for them here).
/// Written against libc rather than nix so that descriptors that did arrive are closed even when
/// others were cut off.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
    // Room for a few messages' descriptors, aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty one; the fields set point to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = 0;
    let n = loop {
        // SAFETY: msg points to the buffers above, which outlive the call.
        let n = unsafe { libc::recvmsg(fd, &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled in, within
    // msg_controllen; every descriptor in an SCM_RIGHTS message is ours to own.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fds, msg.msg_flags & libc::MSG_CTRUNC != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pid: i32) -> Record {
        Record {
            pid,
            start_time: 7,
            grace: Duration::from_millis(200),
            term: true,
        }
    }

    fn null() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/dev/null").expect("null"))
    }

    fn describe(told: Told) -> String {
        match told {
            Told::Add {
                record: r,
                output: o,
                ..
            } => format!(
                "add {} {} {} {}{}",
                r.pid,
                r.start_time,
                r.grace.as_millis(),
                if r.term { "term" } else { "-" },
                o.map(|o| format!(" {} {:?} {}", o.label, o.log, o.strip_ansi))
                    .unwrap_or_default()
            ),
            Told::Update(r) => format!("update {} {}", r.pid, if r.term { "term" } else { "-" }),
            Told::Del(pid) => format!("del {pid}"),
            Told::Bye => "bye".into(),
        }
    }

    /// Everything pending, decoded, sent `step` bytes at a time.
    fn take_in_steps(t: &mut Table, step: usize) -> Vec<String> {
        let mut bytes = Vec::new();
        let mut fds = VecDeque::new();
        while let Some((b, o)) = t.pending() {
            let n = b.len().min(step);
            bytes.extend_from_slice(&b[..n]);
            let (len, with_fds) = (b.len(), o.is_some());
            if with_fds {
                fds.extend([null(), null()]);
            }
            let last = t.out.len() == 1 && n == len;
            t.sent(n);
            if last {
                break;
            }
        }
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            out.push(describe(decode(&tail[..len], &mut fds).expect("decodes")));
            rest = &tail[len..];
        }
        assert!(fds.is_empty(), "every descriptor taken by its message");
        out
    }

    fn take(t: &mut Table) -> Vec<String> {
        take_in_steps(t, usize::MAX)
    }

    fn output(label: &str, log: Option<&str>) -> Arc<Output> {
        Arc::new(
            Output::new(&null(), &null(), label.into(), log.map(PathBuf::from), true).expect("dup"),
        )
    }

    #[test]
    fn updates_coalesce_while_the_sentinel_does_not_read() {
        let mut t = Table::default();
        t.add(&rec(1), Some(output("web", Some("/l/web.log"))));
        assert_eq!(
            take(&mut t),
            ["add 1 7 200 term web Some(\"/l/web.log\") true"]
        );
        // The sentinel stops reading; a thousand groups come and go meanwhile.
        for pid in 100..1100 {
            t.add(&rec(pid), Some(output("x", None)));
            t.remove(pid);
        }
        t.hello(1);
        t.add(&rec(2), None);
        assert_eq!(take(&mut t), ["update 1 -", "add 2 7 200 term"]);
        t.remove(1);
        t.bye = true;
        assert_eq!(take(&mut t), ["del 1", "bye"]);
        t.add(&rec(3), None);
        assert!(take(&mut t).is_empty(), "nothing after bye");
    }

    #[test]
    fn a_partly_sent_difference_is_finished_before_the_next() {
        let mut t = Table::default();
        t.add(&rec(1), Some(output("a", None)));
        t.add(&rec(2), None);
        let (first, fds) = t
            .pending()
            .map(|(b, o)| (b.len(), o.is_some()))
            .expect("pending");
        assert!(fds, "descriptors go with the first byte");
        t.sent(3);
        let (rest, fds) = t
            .pending()
            .map(|(b, o)| (b.len(), o.is_some()))
            .expect("pending");
        assert_eq!(rest, first - 3);
        assert!(!fds, "and only with it");
        t.sent(rest);
        t.add(&rec(3), None);
        // The rest of the first difference comes before the new one.
        assert_eq!(take_in_steps(&mut t, 5), ["add 2 7 200 term"]);
        assert_eq!(take_in_steps(&mut t, 5), ["add 3 7 200 term"]);
    }

    #[test]
    fn a_new_process_with_a_reused_pid_is_added_again_with_its_output() {
        let mut t = Table::default();
        t.add(&rec(1), Some(output("a", None)));
        take(&mut t);
        let mut again = rec(1);
        again.start_time = 8;
        t.add(&again, Some(output("b", None)));
        assert_eq!(take(&mut t), ["add 1 8 200 term b None true"]);
        // The same process told again without an output (its channel closed) keeps its output.
        t.hello(1);
        t.add(&again, None);
        assert!(take(&mut t).is_empty());
    }

    #[test]
    fn descriptors_of_gone_processes_are_closed_without_being_sent() {
        let mut t = Table::default();
        let o = output("a", None);
        let weak = Arc::downgrade(&o);
        t.add(&rec(1), Some(o));
        t.remove(1);
        assert!(weak.upgrade().is_none(), "dropped with the entry");
        assert!(t.pending().is_none());
    }

    #[test]
    fn messages_cross_a_socket_with_their_descriptors() {
        let (ours, theirs) = pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let mut t = Table::default();
        for (pid, label) in [(41, "one"), (42, "two")] {
            let o = Output::new(&r, &r, label.into(), Some("/var/log/x y.log".into()), false)
                .expect("dup");
            t.add(&rec(pid), Some(Arc::new(o)));
        }
        t.add(&rec(43), None);
        t.bye = true;
        let reader = std::thread::spawn(move || {
            let mut rx = Receiver::new(theirs.as_raw_fd());
            let mut labels = Vec::new();
            let mut outputs = Vec::new();
            while let Some(told) = rx.next().expect("receive") {
                match told {
                    Told::Add {
                        record,
                        output: Some(o),
                        ..
                    } => {
                        labels.push(format!("{} {}", record.pid, o.label));
                        assert_eq!(
                            o.log.as_deref(),
                            Some(std::path::Path::new("/var/log/x y.log"))
                        );
                        outputs.push(o);
                    }
                    Told::Add {
                        record,
                        output: None,
                        missing,
                    } => {
                        assert!(!missing);
                        labels.push(format!("{} -", record.pid));
                    }
                    Told::Bye => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (labels, outputs, rx, theirs)
        });
        // Sent a few bytes at a time, as a busy socket may take them.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while let Some((b, o)) = t.pending() {
            match send(ours.as_raw_fd(), &b[..b.len().min(7)], o) {
                Ok(n) => t.sent(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < end, "the reader does not read");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        drop(t);
        let (labels, outputs, mut rx, _theirs) = reader.join().expect("reader");
        assert_eq!(labels, ["41 one", "42 two", "43 -"]);
        // A passed descriptor reads what is written into the pipe.
        nix::unistd::write(&w, b"hi").expect("write");
        let mut got = [0u8; 2];
        let n = nix::unistd::read(&outputs[1].stdout, &mut got).expect("read");
        assert_eq!(&got[..n], b"hi");
        drop(ours);
        assert!(rx.next().expect("eof").is_none());
    }

    #[test]
    fn a_sentinel_that_does_not_read_holds_the_pipes_of_a_few_processes_at_most() {
        let (ours, _theirs) = pair().expect("pair");
        let o = output("a-service-name", Some("/var/log/a-service.log"));
        let mut accepted = 0;
        loop {
            let p = encode_add(&rec(accepted), Some(&o));
            match send(ours.as_raw_fd(), &p.bytes, p.output.as_deref()) {
                Ok(n) => {
                    assert_eq!(n, p.bytes.len(), "whole small messages go out");
                    accepted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("send: {e}"),
            }
            assert!(accepted < 1000, "the socket takes messages without end");
        }
        assert!(
            accepted <= 16,
            "{accepted} messages with descriptors wait in the socket"
        );
        assert!(accepted >= 1);
    }

    #[test]
    fn a_message_whose_descriptors_cannot_be_passed_goes_without_them() {
        let mut t = Table::default();
        t.add(&rec(1), Some(output("a", None)));
        t.pending();
        t.drop_descriptors();
        assert_eq!(take(&mut t), ["add 1 7 200 term"]);
    }

    #[test]
    fn a_message_too_long_for_the_link_is_an_error() {
        let (ours, theirs) = pair().expect("pair");
        let len = (MAX_MESSAGE as u32 + 1).to_le_bytes();
        send(ours.as_raw_fd(), &len, None).expect("send");
        let e = Receiver::new(theirs.as_raw_fd())
            .next()
            .expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_or_unknown_messages_are_ignored() {
        let mut fds = VecDeque::new();
        assert!(decode(b"", &mut fds).is_none());
        assert!(decode(b"A\x01\x00", &mut fds).is_none());
        assert!(decode(b"Z", &mut fds).is_none());
        let mut add = encode_add(&rec(1), Some(&output("a", None))).bytes;
        add.truncate(add.len() - 2);
        assert!(decode(&add[4..], &mut fds).is_none());
    }
}
