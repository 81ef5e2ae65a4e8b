//! The interface on Unix systems other than Linux, meant as the start of a macOS port (no
//! shipped binary or CI job builds it): no `/proc`, so no start times, no tag scan and no
//! subreaper. `protocol.md`, section 10, says what that costs; `docs/porting.md` what a real
//! macOS port would use instead.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::sys::socket::MsgFlags;
use nix::unistd::Pid;

/// [`start_time`] knows nothing: a recorded pid cannot be told from a recycled one.
pub(crate) const KNOWS_START_TIMES: bool = false;
/// Where the open descriptors of this process are listed.
pub(super) const OPEN_FDS: &str = "/dev/fd";
/// No MSG_NOSIGNAL: the binary ignores SIGPIPE, as every Rust binary does.
pub(super) const NO_SIGPIPE: MsgFlags = MsgFlags::empty();
/// Received descriptors: close-on-exec cannot be asked for at once.
pub(super) const RECV_CLOEXEC: libc::c_int = 0;

/// No child subreaper here: descendants that leave their group are re-parented to init.
pub(super) fn become_subreaper() {}

/// Not known without `/proc`: a recorded group is then never taken for the same process.
pub(crate) fn start_time(_pid: i32) -> Option<u64> {
    None
}

/// What a process group uses; not known without `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupUsage {
    /// CPU time used (user + system) by the members alive now.
    pub(crate) cpu: Duration,
    /// Resident memory, in bytes.
    pub(crate) rss: u64,
    /// Its live members.
    pub(crate) pids: Vec<i32>,
}

/// Not known without `/proc`: nothing.
pub(crate) fn group_usage(_pgids: &[i32]) -> std::collections::HashMap<i32, GroupUsage> {
    std::collections::HashMap::new()
}

/// Not known without `/proc`: `maxMemory` is not enforced here.
#[allow(dead_code)]
pub(crate) fn group_rss(_groups: &[i32]) -> std::collections::HashMap<i32, u64> {
    std::collections::HashMap::new()
}

/// [`group_rss`], sampled: nothing without `/proc`.
#[derive(Debug, Default)]
pub(crate) struct GroupSampler;

impl GroupSampler {
    /// Nothing is known here.
    pub(crate) fn sample(
        &mut self,
        _groups: &[i32],
        _now: std::time::Instant,
    ) -> std::collections::HashMap<i32, u64> {
        std::collections::HashMap::new()
    }
}

/// Which process groups still have a member: each question goes to the kernel, which counts
/// zombies too.
#[derive(Debug)]
pub(crate) struct LiveGroups;

impl LiveGroups {
    pub(crate) fn read() -> LiveGroups {
        LiveGroups
    }

    pub(crate) fn contains(&self, pgid: i32) -> bool {
        killpg(Pid::from_raw(pgid), None).is_ok()
    }
}

/// No tag scan without `/proc`: finds nothing.
pub(crate) fn signal_tagged(_matches: impl Fn(&str) -> bool, _sig: Signal) -> Vec<i32> {
    Vec::new()
}

/// No tag scan without `/proc`: finds nothing.
pub(crate) fn kill_tagged(_matches: impl Fn(&str) -> bool, _wait: Duration) -> Vec<i32> {
    Vec::new()
}

/// A known child that has exited and is not reaped yet: each is asked about in turn.
pub(crate) fn next_exited(known: &[Pid]) -> Option<Pid> {
    known.iter().copied().find(|&pid| {
        // SAFETY: zeroed siginfo is a valid out-parameter; waitid fills it or leaves si_pid 0.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            libc::waitid(libc::P_PID, pid.as_raw() as libc::id_t, &mut info, flags) == 0
                && info.si_pid != 0
        }
    })
}

/// The plain path: only this user or root can change the private runtime folder anyway.
pub(crate) fn path_through(_dir: &impl AsRawFd, path: &Path, name: &str) -> PathBuf {
    path.join(name)
}

/// The effective uid of the process at the other end of a Unix socket (`getpeereid`).
pub(crate) fn peer_uid(socket: &impl AsFd) -> std::io::Result<u32> {
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: getpeereid writes the two ids it is given.
    unsafe {
        let (mut uid, mut gid) = (0, 0);
        if libc::getpeereid(fd, &mut uid, &mut gid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// Pipes keep the system's size.
pub(crate) fn enlarge_pipe(_fd: &impl AsRawFd) {}

/// This binary, to start the sentinel from.
pub(crate) fn own_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "pm-supervisor".into())
}
