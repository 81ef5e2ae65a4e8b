//! What only Linux offers: `/proc`, pidfds, the child subreaper, `waitid(P_ALL)`, and a few
//! flags (see [`super`] for what each guarantee rests on).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::MsgFlags;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::process::launch::ENV_SERVICE_TAG;

/// [`start_time`] names processes for good.
pub(crate) const KNOWS_START_TIMES: bool = true;
/// Where the open descriptors of this process are listed.
pub(super) const OPEN_FDS: &str = "/proc/self/fd";
/// A send that never raises SIGPIPE.
pub(super) const NO_SIGPIPE: MsgFlags = MsgFlags::MSG_NOSIGNAL;
/// Received descriptors are close-on-exec from the start.
pub(super) const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;

/// Descendants that leave their service's process group are re-parented to the supervisor, which
/// reaps them and finds them by their tag.
pub(super) fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%e, "cannot become a child subreaper; descendants that leave their process group may survive a stop");
    }
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Process state letter (`R`, `S`, `Z`, ...).
    state: u8,
    pgid: i32,
    /// CPU time used, user and system, in clock ticks.
    cpu_ticks: u64,
    /// Start time in clock ticks since boot: with the pid, identifies a process for good.
    start_time: u64,
    /// Resident set size, in pages.
    rss_pages: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    read_stat(&std::fs::File::open(format!("/proc/{pid}/stat")).ok()?)
}

/// Reads an open `/proc/<pid>/stat` from its start: one `pread` (a stat line is far shorter than
/// the buffer; `read_to_end` would add a `statx` and an `lseek` to every read).
fn read_stat(f: &std::fs::File) -> Option<Stat> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = f.read_at(&mut buf, 0).ok()?;
    parse_stat(&buf[..n])
}

/// Parses a stat line. The command name sits in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    // Fields after the name, from state (field 3): f[2] pgrp (5), f[11] utime (14), f[12]
    // stime (15), f[19] starttime (22), f[21] rss (24).
    let mut f = [""; 22];
    let mut n = 0;
    for (slot, field) in f.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = field;
        n += 1;
    }
    if n < 20 {
        return None;
    }
    let ticks = |i: usize| f[i].parse::<u64>().ok();
    Some(Stat {
        state: *f[0].as_bytes().first()?,
        pgid: f[2].parse().ok()?,
        cpu_ticks: ticks(11)?.saturating_add(ticks(12)?),
        start_time: ticks(19)?,
        rss_pages: ticks(21).unwrap_or(0),
    })
}

/// A process's start time (clock ticks since boot), which with its pid identifies it for good;
/// None when it is gone.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// What a process group uses, summed over its live members (one /proc scan for every group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupUsage {
    /// CPU time used (user + system) by the members alive now.
    pub(crate) cpu: Duration,
    /// Resident memory, in bytes.
    pub(crate) rss: u64,
    /// Its live members.
    pub(crate) pids: Vec<i32>,
}

/// The usage of each group of `pgids`, from one pass over /proc (one read of `stat` per
/// process on the system: a few milliseconds for a thousand processes). A group without a live
/// member is absent.
pub(crate) fn group_usage(pgids: &[i32]) -> std::collections::HashMap<i32, GroupUsage> {
    let mut out = std::collections::HashMap::new();
    if pgids.is_empty() {
        return out;
    }
    let wanted: HashSet<i32> = pgids.iter().copied().collect();
    // SAFETY: sysconf has no preconditions.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (tick, page) = (
        u64::try_from(tick).unwrap_or(100).max(1),
        u64::try_from(page).unwrap_or(4096),
    );
    for pid in all_pids() {
        let Some(st) = stat(pid) else { continue };
        if st.state == b'Z' || !wanted.contains(&st.pgid) {
            continue;
        }
        let u: &mut GroupUsage = out.entry(st.pgid).or_default();
        u.cpu += Duration::from_nanos(st.cpu_ticks.saturating_mul(1_000_000_000 / tick));
        u.rss += st.rss_pages.saturating_mul(page);
        u.pids.push(pid);
    }
    out
}

/// Total resident memory of each of `groups` (process group ids), in bytes: one pass over
/// `/proc`, one small read per process, however many groups are asked for. A group with no
/// live member is left out. (RSS counts pages shared between members once per member, as `ps`
/// and PM2 do.) The supervisor samples through [`GroupSampler`], which does this pass only
/// every 10 s; this one-shot form is for a single look.
#[allow(dead_code)]
pub(crate) fn group_rss(groups: &[i32]) -> HashMap<i32, u64> {
    let mut sampler = GroupSampler::default();
    sampler.sample(groups, std::time::Instant::now())
}

/// [`group_rss`] once a second at a bounded cost: the members of each group are found by a
/// pass over all of `/proc` every [`GroupSampler::RESCAN`] (and when a group is new to it);
/// in between, only the known members' `stat` is read, through a descriptor held open since the
/// pass (one `pread`, no path walk; it names that process for good, so a reused pid is never
/// read). A member that left the group or exited drops out; a process that joins a group is
/// counted from the next full pass.
#[derive(Debug, Default)]
pub(crate) struct GroupSampler {
    members: HashMap<i32, Vec<Member>>,
    /// Descriptors held, at most [`GroupSampler::HELD`].
    held: usize,
    scanned: Option<std::time::Instant>,
}

/// A known member of a sampled group.
#[derive(Debug)]
struct Member {
    pid: i32,
    /// Its `/proc/<pid>/stat` (`statm` for the group's leader), open; None past
    /// [`GroupSampler::HELD`] (read by path).
    file: Option<std::fs::File>,
}

impl Member {
    /// Its resident pages, if it is still a live member of group `g`.
    fn rss_pages(&self, g: i32) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 1024];
        match &self.file {
            // The leader: a service is a session leader, which cannot leave its group, so the
            // much cheaper `statm` does (a zombie's reads 0; one reaped fails).
            Some(f) if self.pid == g => {
                let n = f.read_at(&mut buf, 0).ok()?;
                let text = std::str::from_utf8(&buf[..n]).ok()?;
                return text.split_ascii_whitespace().nth(1)?.parse().ok();
            }
            Some(f) => read_stat(f).filter(|st| st.pgid == g && st.state != b'Z'),
            None => stat(self.pid).filter(|st| st.pgid == g && st.state != b'Z'),
        }
        .map(|st| st.rss_pages)
    }
}

impl GroupSampler {
    /// How often every process is looked at.
    pub(crate) const RESCAN: std::time::Duration = std::time::Duration::from_secs(10);
    /// Descriptors held open at most: a service that forks thousands of workers costs reads by
    /// path, never the supervisor's descriptors.
    const HELD: usize = 256;

    /// Total RSS of each of `groups` at `now`.
    pub(crate) fn sample(&mut self, groups: &[i32], now: std::time::Instant) -> HashMap<i32, u64> {
        let mut out = HashMap::new();
        if groups.is_empty() {
            self.members.clear();
            self.held = 0;
            return out;
        }
        // SAFETY: sysconf has no preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let wanted: HashSet<i32> = groups.iter().copied().collect();
        let due = self
            .scanned
            .is_none_or(|t| now.saturating_duration_since(t) >= Self::RESCAN)
            || groups.iter().any(|g| !self.members.contains_key(g));
        if due {
            self.scanned = Some(now);
            self.members = groups.iter().map(|&g| (g, Vec::new())).collect();
            self.held = 0;
            for pid in all_pids() {
                let path = format!("/proc/{pid}/stat");
                let Ok(f) = std::fs::File::open(&path) else {
                    continue;
                };
                let Some(st) = read_stat(&f) else {
                    continue;
                };
                if st.state != b'Z' && wanted.contains(&st.pgid) {
                    *out.entry(st.pgid).or_insert(0) += st.rss_pages * page;
                    let file = if self.held >= Self::HELD {
                        None
                    } else if pid == st.pgid {
                        std::fs::File::open(format!("/proc/{pid}/statm")).ok()
                    } else {
                        Some(f)
                    };
                    self.held += usize::from(file.is_some());
                    self.members
                        .entry(st.pgid)
                        .or_default()
                        .push(Member { pid, file });
                }
            }
            return out;
        }
        self.members.retain(|g, _| wanted.contains(g));
        let mut held = 0;
        for (&g, members) in &mut self.members {
            members.retain(|m| match m.rss_pages(g) {
                Some(pages) => {
                    *out.entry(g).or_insert(0) += pages * page;
                    true
                }
                None => false,
            });
            held += members.iter().filter(|m| m.file.is_some()).count();
        }
        self.held = held;
        out
    }
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The process groups that have at least one live (not zombie) member, read in one pass.
#[derive(Debug)]
pub(crate) struct LiveGroups(HashSet<i32>);

impl LiveGroups {
    pub(crate) fn read() -> LiveGroups {
        LiveGroups(
            all_pids()
                .into_iter()
                .filter_map(stat)
                .filter(|s| s.state != b'Z')
                .map(|s| s.pgid)
                .collect(),
        )
    }

    /// Whether `pgid` has a live member.
    pub(crate) fn contains(&self, pgid: i32) -> bool {
        self.0.contains(&pgid)
    }
}

/// The value of [`ENV_SERVICE_TAG`] in a process's initial environment.
fn tag_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{ENV_SERVICE_TAG}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()))
        .and_then(|v| String::from_utf8(v.to_vec()).ok())
}

/// Sends `sig` to every process (other than this one) whose service tag satisfies `matches`,
/// and returns their pids. Each process is opened as a pidfd before its environment is read,
/// and signalled through that pidfd, so a pid reused in between is never hit.
pub(crate) fn signal_tagged(matches: impl Fn(&str) -> bool, sig: Signal) -> Vec<i32> {
    signal_tagged_fds(matches, sig)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// SIGKILLs every process whose service tag satisfies `matches`, as [`signal_tagged`] does,
/// then waits up to `wait` for them to be gone (their pidfds report the exit), so that what
/// follows can count on it. Returns their pids.
pub(crate) fn kill_tagged(matches: impl Fn(&str) -> bool, wait: Duration) -> Vec<i32> {
    let hit = signal_tagged_fds(matches, Signal::SIGKILL);
    let (pids, fds): (Vec<i32>, Vec<OwnedFd>) = hit.into_iter().unzip();
    wait_exited(&fds, wait);
    pids
}

fn signal_tagged_fds(matches: impl Fn(&str) -> bool, sig: Signal) -> Vec<(i32, OwnedFd)> {
    let me = std::process::id() as i32;
    let mut hit = Vec::new();
    for pid in all_pids() {
        if pid == me || pid <= 1 {
            continue;
        }
        let Some(fd) = pidfd_open(pid) else { continue };
        let Some(tag) = tag_of(pid) else { continue };
        if matches(&tag) && pidfd_send_signal(&fd, sig) {
            hit.push((pid, fd));
        }
    }
    hit
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_send_signal(fd: &OwnedFd, sig: Signal) -> bool {
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
fn wait_exited(fds: &[OwnedFd], wait: Duration) {
    let end = Instant::now() + wait;
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !polls.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
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

/// A child that has exited and is not reaped yet, if there is one: any child, including
/// descendants re-parented to the supervisor as subreaper (`known` is not needed here).
pub(crate) fn next_exited(_known: &[Pid]) -> Option<Pid> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::All, flags) {
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(status) => status.pid(),
    }
}

/// A path to `name` in the folder open as `dir` (at `path`) that goes through the opened
/// folder rather than its name, so swapping the folder's path after it was checked changes
/// nothing.
pub(crate) fn path_through(dir: &impl AsRawFd, _path: &Path, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// The effective uid of the process at the other end of a Unix socket, as the kernel recorded
/// it when the connection was made.
pub(crate) fn peer_uid(socket: &impl AsFd) -> std::io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(cred.uid())
}

/// Room for a burst in a child's output pipe while its reader lets output gather (see
/// `logs::pump::PACE`). 1 MiB is the default limit for unprivileged processes; if it is lower,
/// the default stays.
pub(crate) fn enlarge_pipe(fd: &impl AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe fd the caller owns.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1024 * 1024) };
}

/// This binary, to start the sentinel from (so `ps` shows pm-supervisor): its path, or
/// `/proc/self/exe`, which still works if the file was replaced by an upgrade meanwhile.
pub(crate) fn own_exe() -> PathBuf {
    std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| "/proc/self/exe".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stat_line_with_a_strange_name_gives_cpu_and_memory() {
        let line = b"42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 777 1000 300 18446744073709551615";
        let s = super::parse_stat(line).expect("parses");
        assert_eq!((s.pgid, s.cpu_ticks, s.rss_pages), (42, 300, 300));
        // Cut short before the start time: not a stat line.
        assert_eq!(
            super::parse_stat(b"42 (a) S 1 42 42 0 -1 4194560 100 0 0 0 250 50"),
            None
        );
    }

    #[test]
    fn group_usage_finds_this_process_group() {
        let me = nix::unistd::getpgrp().as_raw();
        let u = super::group_usage(&[me]);
        let mine = u.get(&me).expect("this test's own group");
        assert!(mine.rss > 1024 * 1024, "{mine:?}");
    }

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
                pgid: 4242,
                cpu_ticks: 3,
                start_time: 987654,
                rss_pages: 10,
            }
        );
    }

    #[test]
    fn group_rss_adds_up_the_group() {
        let me = nix::unistd::getpgrp().as_raw();
        let sizes = group_rss(&[me]);
        // SAFETY: sysconf has no preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let own = stat(std::process::id() as i32).expect("own stat").rss_pages * page;
        // The test runner's group holds at least this process.
        assert!(
            sizes.get(&me).is_some_and(|&total| total >= own / 2),
            "{sizes:?}"
        );
        assert!(group_rss(&[]).is_empty());
        // Between full passes only known members are read; a new group gets a full pass.
        let mut sampler = GroupSampler::default();
        let t0 = std::time::Instant::now();
        let first = sampler.sample(&[me], t0);
        assert!(first.get(&me).is_some_and(|&t| t > 0));
        let again = sampler.sample(&[me], t0 + std::time::Duration::from_secs(1));
        assert!(again.get(&me).is_some_and(|&t| t > 0));
        assert!(sampler.sample(&[], t0).is_empty());
    }

    #[test]
    fn the_sampler_reads_members_through_held_descriptors_and_drops_the_gone() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let pgid = child.id() as i32;
        let mut sampler = GroupSampler::default();
        let t0 = std::time::Instant::now();
        let first = sampler.sample(&[pgid], t0);
        let _ = child.kill();
        let _ = child.wait();
        assert!(first.get(&pgid).is_some_and(|&t| t > 0), "{first:?}");
        assert_eq!(sampler.held, 1);
        // Between full passes: the member is read through its descriptor, which says it is gone
        // (whatever process may take the pid by now is never read as it).
        let after = sampler.sample(&[pgid], t0 + std::time::Duration::from_secs(1));
        assert_eq!(after.get(&pgid), None, "{after:?}");
        assert_eq!(sampler.held, 0);
    }

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own stat");
        assert!(t > 0);
        assert_eq!(start_time(me), Some(t));
        assert!(LiveGroups::read().contains(nix::unistd::getpgrp().as_raw()));
    }
}
