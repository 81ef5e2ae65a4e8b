//! The sentinel: a small process (this same binary, `pm-supervisor __sentinel`) that outlives a
//! supervisor killed with SIGKILL and stops what it had started.
//!
//! The supervisor keeps it informed over a pipe (the sentinel's stdin) of every process group it
//! runs. When that pipe closes without a `bye`, the supervisor is dead: the sentinel sends
//! SIGTERM to the groups whose child never spoke the protocol (the others see EOF on their
//! channel, which is their stop request), waits for them up to their grace time (at most
//! [`MAX_GRACE`]), then SIGKILLs every remaining group and every process carrying the run's
//! service tag (descendants that left their group), and exits.
//!
//! `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that forked a child exits, which
//! in a threaded runtime is not the same as the process dying, and it would only reach the
//! direct child anyway.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::procs;

/// Longest a sentinel waits for stop handlers after the supervisor died before SIGKILL, so that
/// everything is gone within a second.
pub const MAX_GRACE: Duration = Duration::from_millis(800);

/// The supervisor's handle on its sentinel.
#[derive(Debug)]
pub struct Sentinel {
    child: Child,
    stdin: ChildStdin,
}

/// One process group the sentinel watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Pid of the group leader (= pgid).
    pub pid: i32,
    /// The leader's start time (clock ticks since boot), 0 when unknown.
    pub start_time: u64,
    /// How long its handlers may run after the supervisor died.
    pub grace: Duration,
    /// Send SIGTERM on supervisor death (the child never said `hello`).
    pub term: bool,
}

impl Sentinel {
    /// Starts the sentinel for the run whose service tags start with `token`.
    pub fn start(token: &str) -> io::Result<Sentinel> {
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
        Ok(Sentinel { child, stdin })
    }

    /// The sentinel's pid (the reaper must recognise it).
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Tells the sentinel about a new process group.
    pub fn add(&mut self, r: &Record) {
        self.send(&format!(
            "add {} {} {} {}\n",
            r.pid,
            r.start_time,
            r.grace.as_millis(),
            if r.term { "term" } else { "-" }
        ));
    }

    /// The child spoke the protocol: it handles EOF itself and gets no SIGTERM.
    pub fn hello(&mut self, pid: Pid) {
        self.send(&format!("hello {pid}\n"));
    }

    /// The group is gone.
    pub fn remove(&mut self, pid: Pid) {
        self.send(&format!("del {pid}\n"));
    }

    /// Clean exit: the sentinel leaves without touching anything, and is reaped here so that no
    /// zombie is left for an init that does not reap.
    pub fn dismiss(mut self) {
        self.send("bye\n");
        drop(self.stdin);
        let _ = self.child.wait();
    }

    fn send(&mut self, line: &str) {
        // Lines are tiny and the sentinel reads at once, so this never blocks for long. A dead
        // sentinel shows up in the reaper, which starts a new one.
        if let Err(e) = self.stdin.write_all(line.as_bytes()) {
            tracing::debug!(%e, "sentinel pipe write failed");
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
        Some(s) => r.start_time == 0 || s.start_time == r.start_time,
        None => procs::LiveGroups::read().contains(r.pid),
    }
}
