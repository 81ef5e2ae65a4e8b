//! The supervisor is the only reaper of its children (nothing in it uses `tokio::process` or
//! `std::process::Child::wait`). An exited child is first *peeked at* without being reaped: its
//! zombie keeps its pid and process-group id reserved, so the rest of its group can be killed
//! without any risk of hitting a recycled id; only then is it reaped.

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It called exit with this code.
    Code(i32),
    /// A signal ended it.
    Signal(Signal),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {}", s.as_str()),
        }
    }
}

/// A child that has exited and is not reaped yet, if there is one. On Linux this is any
/// child, including descendants re-parented to the supervisor as subreaper; elsewhere only the
/// pids in `known` are asked about.
pub(crate) fn peek_exited(known: impl Iterator<Item = Pid>) -> Option<Pid> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        use nix::sys::wait::{Id, waitid};
        let _ = known;
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::All, flags) {
            Ok(WaitStatus::StillAlive) | Err(_) => None,
            Ok(status) => status.pid(),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        known.into_iter().find(|&pid| {
            // SAFETY: zeroed siginfo is a valid out-parameter; waitid fills it or leaves si_pid 0.
            unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
                libc::waitid(libc::P_PID, pid.as_raw() as libc::id_t, &mut info, flags) == 0
                    && info.si_pid != 0
            }
        })
    }
}

/// Reaps `pid`, which [`peek_exited`] reported, and returns how it ended.
pub(crate) fn reap(pid: Pid) -> Option<Exit> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig)),
        _ => None,
    }
}
