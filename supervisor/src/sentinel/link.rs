//! The link from the supervisor to its sentinel: a Unix seqpacket socket (the sentinel's stdin)
//! that carries one message per packet, and with a process's first message duplicates of its
//! stdout and stderr read ends (`SCM_RIGHTS`).
//!
//! The supervisor never waits on it: what the sentinel should know is a table (one entry per live
//! process group), and the messages that make up the difference from what it was told are
//! computed only when the previous ones are sent, so updates to the same group coalesce and a
//! group added and gone before the sentinel read anything costs nothing. Descriptors waiting to
//! be passed are those of live processes only; a process's are closed here once it is gone.
//!
//! Packet layout (integers little-endian):
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{self, ControlMessage, MsgFlags};

use super::Record;

/// Largest packet: a record, a label and a log path (at most `PATH_MAX`) fit well.
pub const MAX_PACKET: usize = 16 * 1024;

/// Descriptors passed with a packet: stdout and stderr.
const FDS: usize = 2;

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

/// One packet to send, with the output whose descriptors go with it.
#[derive(Debug)]
pub struct Packet {
    pub bytes: Vec<u8>,
    pub output: Option<Arc<Output>>,
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

    /// The packet to send now, computing the next difference when the last one is out.
    pub fn next(&mut self) -> Option<&Packet> {
        if self.out.is_empty() && !self.done {
            self.diff();
        }
        self.out.front()
    }

    /// The packet from [`next`](Self::next) went out.
    pub fn sent(&mut self) {
        self.out.pop_front();
    }

    fn diff(&mut self) {
        for pid in self.told.keys() {
            if !self.wanted.contains_key(pid) {
                self.out.push_back(Packet {
                    bytes: encode_del(*pid),
                    output: None,
                });
            }
        }
        for (pid, e) in &self.wanted {
            match self.told.get(pid) {
                Some(t) if t.same_process(e) => {
                    if t.record != e.record {
                        self.out.push_back(Packet {
                            bytes: encode_record(b'U', &e.record),
                            output: None,
                        });
                    }
                }
                _ => self.out.push_back(encode_add(&e.record, e.output.as_ref())),
            }
        }
        self.told.clone_from(&self.wanted);
        if self.bye {
            self.out.push_back(Packet {
                bytes: b"B".to_vec(),
                output: None,
            });
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

/// An `A` packet. An output whose description would not fit in a packet is left out: the
/// sentinel then cannot keep that process's last words, and still stops it.
fn encode_add(r: &Record, output: Option<&Arc<Output>>) -> Packet {
    let mut b = encode_record(b'A', r);
    let Some(o) = output else {
        b.push(0);
        return Packet {
            bytes: b,
            output: None,
        };
    };
    let path = o
        .log
        .as_ref()
        .map(|p| p.as_os_str().as_bytes())
        .unwrap_or(b"");
    if b.len() + 11 + o.label.len() + path.len() > MAX_PACKET {
        b.push(0);
        return Packet {
            bytes: b,
            output: None,
        };
    }
    b.push(1);
    b.push(u8::from(o.strip_ansi));
    b.extend_from_slice(&(o.label.len() as u32).to_le_bytes());
    b.extend_from_slice(o.label.as_bytes());
    b.push(u8::from(o.log.is_some()));
    b.extend_from_slice(&(path.len() as u32).to_le_bytes());
    b.extend_from_slice(path);
    Packet {
        bytes: b,
        output: Some(o.clone()),
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

/// Decodes a packet; `fds` are the descriptors that came with it (closed when not used). None
/// for a packet this version does not understand.
pub fn decode(packet: &[u8], fds: Vec<OwnedFd>) -> Option<Told> {
    let (&kind, rest) = packet.split_first()?;
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
            let mut fds = fds.into_iter();
            let output = match (fds.next(), fds.next()) {
                (Some(stdout), Some(stderr)) => Some(Output {
                    stdout,
                    stderr,
                    label,
                    log,
                    strip_ansi,
                }),
                // The descriptors did not arrive (the sentinel's descriptor table is full).
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
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let fd = ours.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((ours, theirs))
}

/// Sends one packet without blocking (`WouldBlock` when the sentinel's queue is full).
pub fn send(fd: RawFd, p: &Packet) -> io::Result<()> {
    let iov = [IoSlice::new(&p.bytes)];
    let fds;
    let rights;
    let cmsgs: &[ControlMessage] = match &p.output {
        Some(o) => {
            fds = [o.stdout.as_raw_fd(), o.stderr.as_raw_fd()];
            rights = [ControlMessage::ScmRights(&fds)];
            &rights
        }
        None => &[],
    };
    socket::sendmsg::<()>(
        fd,
        &iov,
        cmsgs,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Receives one packet into `buf`, waiting for it: its length (0 at EOF) and the descriptors
/// that came with it, close-on-exec. Written against libc rather than nix so that descriptors
/// that did arrive are closed even when others were cut off (`MSG_CTRUNC`).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // Room for FDS descriptors, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((FDS * size_of::<RawFd>()) as u32) } as usize;
    debug_assert!(space <= size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty one; the fields set point to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points to the buffers above, which outlive the call.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
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
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        // Larger than any packet the supervisor sends (its descriptors are closed here).
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet too large",
        ));
    }
    Ok((n, fds))
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

    fn describe(p: &Packet) -> String {
        let fds = if p.output.is_some() {
            vec![
                OwnedFd::from(std::fs::File::open("/dev/null").expect("null")),
                OwnedFd::from(std::fs::File::open("/dev/null").expect("null")),
            ]
        } else {
            Vec::new()
        };
        match decode(&p.bytes, fds).expect("decodes") {
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

    fn take(t: &mut Table) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(p) = t.next() {
            out.push(describe(p));
            t.sent();
            if t.out.is_empty() {
                break;
            }
        }
        out
    }

    fn output(label: &str, log: Option<&str>) -> Arc<Output> {
        let null = OwnedFd::from(std::fs::File::open("/dev/null").expect("null"));
        Arc::new(
            Output::new(&null, &null, label.into(), log.map(PathBuf::from), true).expect("dup"),
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
    fn a_new_process_with_a_reused_pid_is_added_again_with_its_output() {
        let mut t = Table::default();
        t.add(&rec(1), Some(output("a", None)));
        take(&mut t);
        let mut again = rec(1);
        again.start_time = 8;
        t.add(&again, Some(output("b", None)));
        assert_eq!(take(&mut t), ["add 1 8 200 term b None true"]);
        // Re-adding the same process without an output (its channel closed) keeps the output.
        again.term = false;
        t.add(&again, None);
        t.hello(1);
        again.term = true;
        t.add(&again, None);
        assert_eq!(take(&mut t), [] as [String; 0]);
    }

    #[test]
    fn descriptors_of_gone_processes_are_closed_without_being_sent() {
        let mut t = Table::default();
        let o = output("a", None);
        let weak = Arc::downgrade(&o);
        t.add(&rec(1), Some(o));
        t.remove(1);
        assert!(weak.upgrade().is_none(), "dropped with the entry");
        assert!(t.next().is_none());
    }

    #[test]
    fn packets_round_trip_over_a_socket_with_their_descriptors() {
        let (ours, theirs) = pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let o = Arc::new(
            Output::new(&r, &r, "svc".into(), Some("/var/log/x y.log".into()), false).expect("dup"),
        );
        let mut t = Table::default();
        t.add(&rec(42), Some(o));
        let p = t.next().expect("packet");
        send(ours.as_raw_fd(), p).expect("send");
        t.sent();
        drop(t);
        let mut buf = vec![0u8; MAX_PACKET];
        let (n, fds) = recv(theirs.as_raw_fd(), &mut buf).expect("recv");
        let Some(Told::Add {
            record: rec,
            output: Some(out),
            ..
        }) = decode(&buf[..n], fds)
        else {
            panic!("not an add with output");
        };
        assert_eq!(rec.pid, 42);
        assert_eq!(&*out.label, "svc");
        assert_eq!(
            out.log.as_deref(),
            Some(std::path::Path::new("/var/log/x y.log"))
        );
        // The passed descriptor reads what is written into the pipe.
        nix::unistd::write(&w, b"hi").expect("write");
        let mut got = [0u8; 2];
        let n = nix::unistd::read(&out.stdout, &mut got).expect("read");
        assert_eq!(&got[..n], b"hi");
        drop(ours);
        assert_eq!(recv(theirs.as_raw_fd(), &mut buf).expect("eof").0, 0);
    }

    #[test]
    fn truncated_or_unknown_packets_are_ignored() {
        assert!(decode(b"", Vec::new()).is_none());
        assert!(decode(b"A\x01\x00", Vec::new()).is_none());
        assert!(decode(b"Z", Vec::new()).is_none());
        let mut add = encode_add(&rec(1), Some(&output("a", None))).bytes;
        add.truncate(add.len() - 2);
        assert!(decode(&add, Vec::new()).is_none());
    }
}
