//! The sentinel: a small process (this same binary, `pm-supervisor __sentinel`) that outlives a
//! supervisor killed with SIGKILL, stops what it had started and keeps what the services print
//! while they stop.
//!
//! The supervisor keeps it informed over a link (module `link`: a Unix socket on the
//! sentinel's stdin) of every process group it runs, and hands it duplicates of each process's
//! stdout and stderr read ends, which the sentinel holds without reading; the supervisor's end is
//! non-blocking, so a sentinel that stops reading cannot stall it. When the link closes without a
//! `bye`, the supervisor is dead. The sentinel then reads the pipes it holds and writes their
//! lines to the services' logs (module `drain`), so a service's writes never fail and what its
//! stop handlers print is kept; meanwhile it sends SIGTERM to the groups whose child never spoke
//! the protocol (the others see EOF on their channel, which is their stop request), waits for
//! them up to their grace time (at most [`MAX_GRACE`]), then SIGKILLs every remaining group and
//! every process carrying the run's service tag (descendants that left their group). It exits
//! once every pipe is at EOF and every line written, or at the drain's limits ([`DRAIN_LIMIT`],
//! [`drain::WRITE_GRACE`]).
//!
//! `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that forked a child exits, which
//! in a threaded runtime is not the same as the process dying, and it would only reach the
//! direct child anyway.

/// A line on the sentinel's stderr (the supervisor's), ignoring a stderr that is gone: the
/// sentinel has no logger, and must never panic over a closed stream.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "pm-supervisor sentinel: {}", format_args!($($arg)*));
    }};
}

mod drain;
mod link;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::platform::{self, Pid, Signal};

pub use drain::DRAIN_LIMIT;
pub(crate) use link::Output;

/// Longest a sentinel waits for stop handlers after the supervisor died before SIGKILL, so that
/// everything is gone within a second.
pub(crate) const MAX_GRACE: Duration = Duration::from_millis(800);

/// How long a clean exit waits for the sentinel to take its `bye` before it is killed (it may
/// be stopped, or stuck).
const DISMISS_WITHIN: Duration = Duration::from_millis(200);

/// The supervisor's handle on its sentinel.
///
/// The link never blocks the supervisor: what the sentinel should know is kept as a table (one
/// entry per live process group, with its output pipes), and a task sends the difference from
/// what it was told whenever the socket takes it. A sentinel that stops reading (SIGSTOP) costs
/// at most that table and one pending difference, however many processes come and go meanwhile.
#[derive(Debug)]
pub(crate) struct Sentinel {
    child: Child,
    table: Arc<Mutex<link::Table>>,
    wake: Arc<Notify>,
    writer: tokio::task::JoinHandle<()>,
}

/// One process group the sentinel watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Pid of the group leader (= pgid).
    pub(crate) pid: i32,
    /// The leader's start time (clock ticks since boot); 0 when unknown, which never matches.
    pub(crate) start_time: u64,
    /// How long its handlers may run after the supervisor died.
    pub(crate) grace: Duration,
    /// Send SIGTERM on supervisor death (the child never said `hello`).
    pub(crate) term: bool,
}

impl Sentinel {
    /// Starts the sentinel for the run whose service tags start with `token`, telling it about
    /// `records` (and their outputs) first. Must be called within the tokio runtime. The
    /// sentinel gets the supervisor's stdout, where it writes the last lines of services that
    /// log there, and its stderr.
    pub(crate) fn start(
        token: &str,
        records: impl IntoIterator<Item = (Record, Option<Arc<Output>>)>,
    ) -> io::Result<Sentinel> {
        let (ours, theirs) = link::pair()?;
        let mut cmd = Command::new(platform::own_exe());
        cmd.arg("__sentinel")
            .arg(token)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        // A session of its own keeps the sentinel out of reach of signals sent to the
        // supervisor's process group (a terminal's Ctrl-C, or a parent killing the group).
        platform::new_session(&mut cmd, None);
        let child = cmd.spawn()?;
        // The sentinel's end of the link is closed here with `cmd`: only the sentinel holds it.
        drop(cmd);
        let sock = tokio::net::UnixStream::from_std(ours)?;
        let table = Arc::new(Mutex::new(link::Table::with(records)));
        let wake = Arc::new(Notify::new());
        let writer = tokio::spawn(write_link(sock, table.clone(), wake.clone()));
        Ok(Sentinel {
            child,
            table,
            wake,
            writer,
        })
    }

    /// The sentinel's pid (the reaper must recognise it).
    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn update(&self, f: impl FnOnce(&mut link::Table)) {
        if let Ok(mut t) = self.table.lock() {
            f(&mut t);
        }
        self.wake.notify_one();
    }

    /// Tells the sentinel about a new process group, or new facts about one; `output` is the
    /// process's output to keep after the supervisor's death (None: keep what it had).
    pub(crate) fn add(&mut self, r: &Record, output: Option<Arc<Output>>) {
        self.update(|t| t.add(r, output));
    }

    /// The child spoke the protocol: it handles EOF itself and gets no SIGTERM.
    pub(crate) fn hello(&mut self, pid: Pid) {
        self.update(|t| t.hello(pid.as_raw()));
    }

    /// The group is gone; the sentinel closes its copies of the group's pipes.
    pub(crate) fn remove(&mut self, pid: Pid) {
        self.update(|t| t.remove(pid.as_raw()));
    }

    /// Clean exit: the sentinel leaves without touching anything, and is reaped here so that no
    /// zombie is left for an init that does not reap. A sentinel that does not take its `bye`
    /// within `DISMISS_WITHIN` (stopped, or stuck) is killed instead: every service is gone by
    /// now, so there is nothing left for it to do.
    pub async fn dismiss(mut self) {
        self.update(|t| t.bye = true);
        let end = Instant::now() + DISMISS_WITHIN;
        let _ = tokio::time::timeout_at(end.into(), &mut self.writer).await;
        self.writer.abort();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= end => break,
                Ok(None) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        tracing::warn!(
            pid = self.child.id(),
            "the sentinel did not leave when asked; killing it"
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends what the sentinel has not been told yet whenever its socket takes it. Ends after `bye`,
/// or when the socket breaks (the sentinel died; the reaper starts a new one).
async fn write_link(
    sock: tokio::net::UnixStream,
    table: Arc<Mutex<link::Table>>,
    wake: Arc<Notify>,
) {
    let mut refused = false;
    loop {
        let sent = {
            let Ok(mut t) = table.lock() else { return };
            let result = t.pending().map(|(bytes, fds)| {
                sock.try_io(tokio::io::Interest::WRITABLE, || {
                    link::send(sock.as_raw_fd(), bytes, fds)
                })
            });
            match result {
                Some(Ok(n)) => t.sent(n),
                None if t.done => return,
                _ => {}
            }
            result
        };
        match sent {
            None => wake.notified().await,
            Some(Ok(_)) => {}
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    return;
                }
            }
            // The sentinel died; the reaper starts a new one.
            Some(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                tracing::debug!(%e, "sentinel link closed");
                return;
            }
            // The kernel refused to pass the descriptors (ETOOMANYREFS: too many in flight for
            // this user; or out of memory): the message goes without them, that process's last
            // words are lost, and everything else still works.
            Some(Err(e)) => {
                if !std::mem::replace(&mut refused, true) {
                    tracing::warn!(%e, "cannot pass output pipes to the sentinel; the last lines of some services are lost if the supervisor is killed");
                }
                match table.lock() {
                    Ok(mut t) => t.drop_descriptors(),
                    Err(_) => return,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The sentinel process's main loop. Returns when the supervisor is gone, cleanup is done and its
/// services' last output written (or the drain's limits passed).
pub(crate) fn run(token: &str) -> io::Result<()> {
    platform::prepare_sentinel();
    let mut records: BTreeMap<i32, (Record, Option<Output>)> = BTreeMap::new();
    let mut link = link::Receiver::new(libc::STDIN_FILENO);
    let mut warned = false;
    loop {
        let told = match link.next() {
            Ok(Some(told)) => told,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                // Not a supervisor's link: leave without touching anything (a supervisor whose
                // sentinel exits starts another one).
                note!("cannot read the supervisor's link: {e}");
                return Err(e);
            }
        };
        match told {
            link::Told::Add {
                record,
                output,
                missing,
            } => {
                if missing && !std::mem::replace(&mut warned, true) {
                    note!(
                        "out of descriptors; some services' last output will be lost if the supervisor dies"
                    );
                }
                records.insert(record.pid, (record, output));
            }
            link::Told::Update(record) => {
                if let Some(held) = records.get_mut(&record.pid) {
                    held.0 = record;
                }
            }
            link::Told::Del(pid) => {
                records.remove(&pid);
            }
            link::Told::Bye => return Ok(()),
        }
    }
    // EOF without bye: the supervisor died. Its services' output is read from now on, while
    // they are stopped.
    let died = Instant::now();
    let (records, outputs): (Vec<Record>, Vec<Option<Output>>) = records.into_values().unzip();
    let drain = drain::start(outputs.into_iter().flatten().collect(), died);
    cleanup(token, &records, MAX_GRACE);
    drain.finish();
    Ok(())
}

/// Stops what a dead supervisor left: SIGTERM to the groups marked for it, a grace period
/// (bounded by `max_grace`) for every group to exit, then SIGKILL to what is left, including
/// every process carrying a service tag that starts with `token`. Returns how many groups and
/// stray processes were signalled.
pub(crate) fn cleanup(token: &str, records: &[Record], max_grace: Duration) -> usize {
    let start = Instant::now();
    let ours: Vec<&Record> = records.iter().filter(|r| still_ours(r)).collect();
    let groups = ours.len();
    for r in &ours {
        if r.term {
            platform::signal_group(Pid::from_raw(r.pid), Signal::SIGTERM);
        }
    }
    let mut waiting: Vec<&Record> = ours;
    while !waiting.is_empty() {
        let elapsed = start.elapsed();
        let live = platform::LiveGroups::read();
        waiting.retain(|r| {
            let alive = live.contains(r.pid);
            if alive && elapsed >= r.grace.min(max_grace) {
                platform::signal_group(Pid::from_raw(r.pid), Signal::SIGKILL);
                return false;
            }
            alive
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let prefix = format!("{token}-");
    let strays = if token.is_empty() {
        Vec::new()
    } else {
        platform::signal_tagged(|tag| tag.starts_with(&prefix), Signal::SIGKILL)
    };
    groups + strays.len()
}

/// True when the group recorded is still the one the supervisor started: its leader is alive
/// with the recorded start time, or (leader gone) some member is left, which keeps the id from
/// being reused.
fn still_ours(r: &Record) -> bool {
    match platform::start_time(r.pid) {
        // A leader with another start time is a new process that got the pid, which the kernel
        // only hands out once no group uses the number any more.
        Some(t) => r.start_time != 0 && t == r.start_time,
        None => platform::LiveGroups::read().contains(r.pid),
    }
}
