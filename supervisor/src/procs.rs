//! Looking at and signalling other processes: process groups, start times (to tell a process
//! from a later one that got the same pid), and the service tag that finds descendants which
//! left their process group.
//!
//! Linux reads `/proc`. On other systems the tag scan finds nothing and start times are not
//! known, which `protocol.md` states.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Signals a whole process group. A group that is already gone is not an error.
pub fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::debug!(pgid = pgid.as_raw(), %e, "killpg failed"),
    }
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process state letter (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Start time in clock ticks since boot: with the pid, identifies a process for good.
    pub start_time: u64,
}

impl Stat {
    /// A zombie has exited and only waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

/// Reads `/proc/<pid>/stat`; None when the process is gone (or on systems without `/proc`).
pub fn stat(pid: i32) -> Option<Stat> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Parses a stat line. The command name sits in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // Fields after the name: state(3) ppid(4) pgrp(5) ... starttime(22).
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let start_time = fields.nth(16)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgid,
        start_time,
    })
}

/// Resident memory of a process in bytes (Linux; None elsewhere).
pub fn rss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Pids of all processes (Linux; empty elsewhere).
pub fn all_pids() -> Vec<i32> {
    #[cfg(target_os = "linux")]
    {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// The process groups that have at least one live (not zombie) member, read in one pass.
#[derive(Debug)]
pub struct LiveGroups(Option<std::collections::HashSet<i32>>);

impl LiveGroups {
    /// Reads `/proc` once (Linux); elsewhere each question goes to the kernel.
    pub fn read() -> LiveGroups {
        if !cfg!(target_os = "linux") {
            return LiveGroups(None);
        }
        LiveGroups(Some(
            all_pids()
                .into_iter()
                .filter_map(stat)
                .filter(|s| !s.is_zombie())
                .map(|s| s.pgid)
                .collect(),
        ))
    }

    /// Whether `pgid` has a live member. Without `/proc` the kernel is asked, and it counts
    /// zombies too.
    pub fn contains(&self, pgid: i32) -> bool {
        match &self.0 {
            Some(set) => set.contains(&pgid),
            None => killpg(Pid::from_raw(pgid), None).is_ok(),
        }
    }
}

/// The value of [`crate::launch::ENV_SERVICE_TAG`] in a process's initial environment.
fn tag_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{}=", crate::launch::ENV_SERVICE_TAG);
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()))
        .and_then(|v| String::from_utf8(v.to_vec()).ok())
}

/// Sends `sig` to every process (other than this one) whose service tag satisfies `matches`,
/// and returns their pids. On Linux each process is opened as a pidfd before its environment is
/// read, and signalled through that pidfd, so a pid reused in between is never hit.
pub fn signal_tagged(matches: impl Fn(&str) -> bool, sig: Signal) -> Vec<i32> {
    signal_tagged_fds(matches, sig)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// SIGKILLs every process whose service tag satisfies `matches`, as [`signal_tagged`] does,
/// then waits up to `wait` for them to be gone (their pidfds report the exit), so that what
/// follows can count on it. Returns their pids.
pub fn kill_tagged(matches: impl Fn(&str) -> bool, wait: std::time::Duration) -> Vec<i32> {
    let hit = signal_tagged_fds(matches, Signal::SIGKILL);
    let (pids, fds): (Vec<i32>, Vec<_>) = hit.into_iter().unzip();
    pidfd::wait_exited(&fds, wait);
    pids
}

fn signal_tagged_fds(matches: impl Fn(&str) -> bool, sig: Signal) -> Vec<(i32, pidfd::Fd)> {
    let me = std::process::id() as i32;
    let mut hit = Vec::new();
    for pid in all_pids() {
        if pid == me || pid <= 1 {
            continue;
        }
        let Some(fd) = pidfd::open(pid) else { continue };
        let Some(tag) = tag_of(pid) else { continue };
        if matches(&tag) && pidfd::send_signal(&fd, sig) {
            hit.push((pid, fd));
        }
    }
    hit
}

#[cfg(target_os = "linux")]
mod pidfd {
    use std::os::fd::{FromRawFd, OwnedFd};

    use nix::sys::signal::Signal;

    pub type Fd = OwnedFd;

    pub fn open(pid: i32) -> Option<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a fresh fd that nothing else owns.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    pub fn send_signal(fd: &OwnedFd, sig: Signal) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid pidfd, a valid signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        r == 0
    }

    /// Waits until every process is gone (its pidfd is readable), or `wait` has passed.
    pub fn wait_exited(fds: &[OwnedFd], wait: std::time::Duration) {
        use std::os::fd::AsRawFd;
        let end = std::time::Instant::now() + wait;
        let mut polls: Vec<libc::pollfd> = fds
            .iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !polls.is_empty() {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            // SAFETY: a valid array of pollfd structs of the given length.
            let n = unsafe {
                libc::poll(
                    polls.as_mut_ptr(),
                    polls.len() as libc::nfds_t,
                    left.as_millis().max(1) as libc::c_int,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
            polls.retain(|p| p.revents == 0);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod pidfd {
    use nix::sys::signal::Signal;

    pub struct Fd;

    pub fn open(_pid: i32) -> Option<Fd> {
        None
    }

    pub fn send_signal(_fd: &Fd, _sig: Signal) -> bool {
        false
    }

    pub fn wait_exited(_fds: &[Fd], _wait: std::time::Duration) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let line =
            b"4242 (we(ir) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).expect("parses");
        assert_eq!(
            s,
            Stat {
                state: b'S',
                ppid: 1,
                pgid: 4242,
                start_time: 987654
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_stat_is_readable() {
        let me = std::process::id() as i32;
        let s = stat(me).expect("own stat");
        assert!(!s.is_zombie());
        assert_eq!(
            Some(s),
            stat(me).map(|mut t| {
                t.state = s.state;
                t
            })
        );
    }
}
