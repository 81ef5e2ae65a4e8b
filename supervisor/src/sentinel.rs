//! The sentinel: a small process (this same binary, `pm-supervisor __sentinel`) that outlives a
//! supervisor killed with SIGKILL and stops what it had started.
//!
//! The supervisor keeps it informed over a pipe (the sentinel's stdin) of every process group it
//! runs; the supervisor's end is non-blocking, so a sentinel that stops reading cannot stall it. When that pipe closes without a `bye`, the supervisor is dead: the sentinel sends
//! SIGTERM to the groups whose child never spoke the protocol (the others see EOF on their
//! channel, which is their stop request), waits for them up to their grace time (at most
//! [`MAX_GRACE`]), then SIGKILLs every remaining group and every process carrying the run's
//! service tag (descendants that left their group), and exits.
//!
//! `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that forked a child exits, which
//! in a threaded runtime is not the same as the process dying, and it would only reach the
//! direct child anyway.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::Notify;

use crate::procs;

/// Longest a sentinel waits for stop handlers after the supervisor died before SIGKILL, so that
/// everything is gone within a second.
pub const MAX_GRACE: Duration = Duration::from_millis(800);

/// How long a clean exit waits for the sentinel to take its `bye` before it is killed (it may
/// be stopped, or stuck).
const DISMISS_WITHIN: Duration = Duration::from_millis(200);

/// The supervisor's handle on its sentinel.
///
/// The link never blocks the supervisor: what the sentinel should know is kept as a table (one
/// entry per live process group), and a task writes the difference from what it was told to the
/// non-blocking pipe whenever the pipe takes it. A sentinel that stops reading (SIGSTOP) costs
/// at most that table and one pending difference, however many processes come and go meanwhile.
#[derive(Debug)]
pub struct Sentinel {
    child: Child,
    link: Arc<Mutex<Link>>,
    wake: Arc<Notify>,
    writer: tokio::task::JoinHandle<()>,
}

/// One process group the sentinel watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Pid of the group leader (= pgid).
    pub pid: i32,
    /// The leader's start time (clock ticks since boot); 0 when unknown, which never matches.
    pub start_time: u64,
    /// How long its handlers may run after the supervisor died.
    pub grace: Duration,
    /// Send SIGTERM on supervisor death (the child never said `hello`).
    pub term: bool,
}

/// What the sentinel should know and what it has been told; the lines that make up the
/// difference are computed only when the previous ones are written, so updates to the same
/// group coalesce (a group added and gone before the sentinel read anything costs nothing).
#[derive(Debug, Default)]
struct Link {
    wanted: BTreeMap<i32, Record>,
    told: BTreeMap<i32, Record>,
    /// Encoded lines being written, and how much of them is written.
    out: Vec<u8>,
    written: usize,
    /// A clean exit: write `bye` after the rest, then nothing more.
    bye: bool,
    /// `bye` is in `out`: nothing follows it.
    done: bool,
}

impl Link {
    /// The bytes still to write, computing the next difference when the last one is out.
    fn pending(&mut self) -> &[u8] {
        if self.written == self.out.len() && !self.done {
            self.out.clear();
            self.written = 0;
            for pid in self.told.keys() {
                if !self.wanted.contains_key(pid) {
                    self.out
                        .extend_from_slice(format!("del {pid}\n").as_bytes());
                }
            }
            for (pid, r) in &self.wanted {
                if self.told.get(pid) != Some(r) {
                    self.out.extend_from_slice(
                        format!(
                            "add {} {} {} {}\n",
                            r.pid,
                            r.start_time,
                            r.grace.as_millis(),
                            if r.term { "term" } else { "-" }
                        )
                        .as_bytes(),
                    );
                }
            }
            self.told.clone_from(&self.wanted);
            if self.bye {
                self.out.extend_from_slice(b"bye\n");
                self.done = true;
            }
        }
        &self.out[self.written..]
    }
}

impl Sentinel {
    /// Starts the sentinel for the run whose service tags start with `token`, telling it about
    /// `records` first. Must be called within the tokio runtime.
    pub fn start(token: &str, records: impl IntoIterator<Item = Record>) -> io::Result<Sentinel> {
        // The binary's own path (so `ps` shows pm-supervisor); on Linux /proc/self/exe still
        // works if the file was replaced by an upgrade while this process runs.
        let exe = std::env::current_exe()
            .ok()
            .filter(|p| p.exists())
            .unwrap_or_else(|| "/proc/self/exe".into());
        let mut cmd = Command::new(exe);
        cmd.arg("__sentinel")
            .arg(token)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: setsid is async-signal-safe. A session of its own keeps the sentinel out of
        // reach of signals sent to the supervisor's process group (a terminal's Ctrl-C, or a
        // parent killing the group).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        let pipe = tokio::net::unix::pipe::Sender::from_owned_fd(stdin.into())?;
        let link = Arc::new(Mutex::new(Link {
            wanted: records.into_iter().map(|r| (r.pid, r)).collect(),
            ..Link::default()
        }));
        let wake = Arc::new(Notify::new());
        let writer = tokio::spawn(write_link(pipe, link.clone(), wake.clone()));
        Ok(Sentinel {
            child,
            link,
            wake,
            writer,
        })
    }

    /// The sentinel's pid (the reaper must recognise it).
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn update(&self, f: impl FnOnce(&mut Link)) {
        if let Ok(mut link) = self.link.lock() {
            f(&mut link);
        }
        self.wake.notify_one();
    }

    /// Tells the sentinel about a new process group.
    pub fn add(&mut self, r: &Record) {
        self.update(|l| {
            l.wanted.insert(r.pid, r.clone());
        });
    }

    /// The child spoke the protocol: it handles EOF itself and gets no SIGTERM.
    pub fn hello(&mut self, pid: Pid) {
        self.update(|l| {
            if let Some(r) = l.wanted.get_mut(&pid.as_raw()) {
                r.term = false;
            }
        });
    }

    /// The group is gone.
    pub fn remove(&mut self, pid: Pid) {
        self.update(|l| {
            l.wanted.remove(&pid.as_raw());
        });
    }

    /// Clean exit: the sentinel leaves without touching anything, and is reaped here so that no
    /// zombie is left for an init that does not reap. A sentinel that does not take its `bye`
    /// within [`DISMISS_WITHIN`] (stopped, or stuck) is killed instead: every service is gone by
    /// now, so there is nothing left for it to do.
    pub async fn dismiss(mut self) {
        self.update(|l| l.bye = true);
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

/// Writes what the sentinel has not been told yet whenever its pipe takes it. Ends after `bye`,
/// or when the pipe breaks (the sentinel died; the reaper starts a new one).
async fn write_link(
    pipe: tokio::net::unix::pipe::Sender,
    link: Arc<Mutex<Link>>,
    wake: Arc<Notify>,
) {
    loop {
        let (chunk, last) = {
            let Ok(mut l) = link.lock() else { return };
            let chunk = l.pending().to_vec();
            (chunk, l.done)
        };
        if chunk.is_empty() {
            if last {
                return;
            }
            wake.notified().await;
            continue;
        }
        match pipe.writable().await.and_then(|()| pipe.try_write(&chunk)) {
            Ok(n) => {
                if let Ok(mut l) = link.lock() {
                    l.written += n;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(%e, "sentinel pipe write failed");
                return;
            }
        }
    }
}

/// The sentinel process's main loop. Returns when the supervisor is gone and cleanup is done.
pub fn run(token: &str) -> io::Result<()> {
    // Tell the operating system not to kill us for writing to a closed stderr.
    // SAFETY: setting a signal disposition to ignore is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut records: BTreeMap<i32, Record> = BTreeMap::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut f = line.split(' ');
        match (f.next(), f.next()) {
            (Some("add"), Some(pid)) => {
                let (Ok(pid), Some(Ok(start_time)), Some(Ok(grace))) = (
                    pid.parse(),
                    f.next().map(str::parse),
                    f.next().map(str::parse::<u64>),
                ) else {
                    continue;
                };
                let term = f.next() == Some("term");
                records.insert(
                    pid,
                    Record {
                        pid,
                        start_time,
                        grace: Duration::from_millis(grace),
                        term,
                    },
                );
            }
            (Some("hello"), Some(pid)) => {
                if let Some(r) = pid.parse().ok().and_then(|p: i32| records.get_mut(&p)) {
                    r.term = false;
                }
            }
            (Some("del"), Some(pid)) => {
                if let Ok(pid) = pid.parse::<i32>() {
                    records.remove(&pid);
                }
            }
            (Some("bye"), _) => return Ok(()),
            _ => {}
        }
    }
    // EOF without bye: the supervisor died.
    let records: Vec<Record> = records.into_values().collect();
    cleanup(token, &records, MAX_GRACE);
    Ok(())
}

/// Stops what a dead supervisor left: SIGTERM to the groups marked for it, a grace period
/// (bounded by `max_grace`) for every group to exit, then SIGKILL to what is left, including
/// every process carrying a service tag that starts with `token`. Returns how many groups and
/// stray processes were signalled.
pub fn cleanup(token: &str, records: &[Record], max_grace: Duration) -> usize {
    let start = Instant::now();
    let ours: Vec<&Record> = records.iter().filter(|r| still_ours(r)).collect();
    let groups = ours.len();
    for r in &ours {
        if r.term {
            procs::signal_group(Pid::from_raw(r.pid), Signal::SIGTERM);
        }
    }
    let mut waiting: Vec<&Record> = ours;
    while !waiting.is_empty() {
        let elapsed = start.elapsed();
        let live = procs::LiveGroups::read();
        waiting.retain(|r| {
            let alive = live.contains(r.pid);
            if alive && elapsed >= r.grace.min(max_grace) {
                procs::signal_group(Pid::from_raw(r.pid), Signal::SIGKILL);
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
        procs::signal_tagged(|tag| tag.starts_with(&prefix), Signal::SIGKILL)
    };
    groups + strays.len()
}

/// True when the group recorded is still the one the supervisor started: its leader is alive
/// with the recorded start time, or (leader gone) some member is left, which keeps the id from
/// being reused.
fn still_ours(r: &Record) -> bool {
    match procs::stat(r.pid) {
        // A leader with another start time is a new process that got the pid, which the kernel
        // only hands out once no group uses the number any more.
        Some(s) => r.start_time != 0 && s.start_time == r.start_time,
        None => procs::LiveGroups::read().contains(r.pid),
    }
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

    fn take(l: &mut Link) -> String {
        let s = String::from_utf8_lossy(l.pending()).into_owned();
        l.written = l.out.len();
        s
    }

    #[test]
    fn updates_coalesce_while_the_sentinel_does_not_read() {
        let mut l = Link::default();
        l.wanted.insert(1, rec(1));
        assert_eq!(take(&mut l), "add 1 7 200 term\n");
        // The sentinel stops reading; a thousand groups come and go meanwhile.
        let _ = l.pending();
        for pid in 100..1100 {
            l.wanted.insert(pid, rec(pid));
            l.wanted.remove(&pid);
        }
        l.wanted.get_mut(&1).expect("1").term = false;
        l.wanted.insert(2, rec(2));
        assert_eq!(take(&mut l), "add 1 7 200 -\nadd 2 7 200 term\n");
        l.wanted.remove(&1);
        l.bye = true;
        assert_eq!(take(&mut l), "del 1\nbye\n");
        l.wanted.insert(3, rec(3));
        assert_eq!(take(&mut l), "", "nothing after bye");
    }

    #[test]
    fn a_partly_written_difference_is_finished_before_the_next() {
        let mut l = Link::default();
        l.wanted.insert(1, rec(1));
        assert_eq!(l.pending(), b"add 1 7 200 term\n");
        l.written = 4;
        l.wanted.insert(2, rec(2));
        assert_eq!(l.pending(), b"1 7 200 term\n");
        l.written = l.out.len();
        assert_eq!(l.pending(), b"add 2 7 200 term\n");
    }
}
