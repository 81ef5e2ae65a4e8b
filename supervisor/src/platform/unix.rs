//! What every Unix system does alike: process groups and sessions, signals, reaping, descriptor
//! passing over Unix sockets, socket checks.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::socket::{self, ControlMessage, MsgFlags};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::os;

/// Signals a whole process group. A group that is already gone is not an error.
pub(crate) fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::debug!(pgid = pgid.as_raw(), %e, "killpg failed"),
    }
}

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

/// Reaps `pid`, which [`super::next_exited`] reported, and returns how it ended.
pub(crate) fn reap(pid: Pid) -> Option<Exit> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig)),
        _ => None,
    }
}

/// Makes the process fit to supervise: fds 0-2 open (so no child channel or log file lands on
/// them), every inherited fd close-on-exec (so nothing the supervisor was given leaks into a
/// service), and a child subreaper where the system has one (so descendants that leave their
/// service's group are re-parented here and can be found).
pub(crate) fn prepare_supervisor() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the flags of a descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // The lowest free number is `fd` itself.
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(std::os::fd::IntoRawFd::into_raw_fd);
        }
    }
    let fds: Vec<i32> = match std::fs::read_dir(os::OPEN_FDS) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect(),
        Err(_) => Vec::new(),
    };
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC changes no ownership; a number that is not open just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags != -1 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    os::become_subreaper();
}

/// Starts the command in a session of its own, so that its whole process group can be
/// signalled and signals to the supervisor's group (a terminal's Ctrl-C) do not reach it; with
/// `channel`, that descriptor becomes the child's fd `channel_fd`, open across exec.
pub(crate) fn new_session(cmd: &mut Command, channel: Option<(RawFd, RawFd)>) {
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setsid, dup2, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            let Some((fd, target)) = channel else {
                return Ok(());
            };
            if fd == target {
                // dup2 onto itself would leave close-on-exec set.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes reads of `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: &impl AsRawFd, on: bool) {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller holds.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags != -1 {
            let flags = if on {
                flags | libc::O_NONBLOCK
            } else {
                flags & !libc::O_NONBLOCK
            };
            libc::fcntl(fd, libc::F_SETFL, flags);
        }
    }
}

/// The sentinel's process: writes to a closed stdout or stderr, and the terminal's SIGINT and
/// SIGHUP, do not end it; it may hold as many descriptors as the system lets it (two per live
/// process of the supervisor; it starts nothing that could inherit a raised limit).
pub(crate) fn prepare_sentinel() {
    // SAFETY: setting a signal disposition to ignore is always sound; getrlimit/setrlimit with
    // a valid struct.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Whether `fd` is an open socket.
pub(crate) fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat only writes the zeroed struct it is given.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// `<st_dev>:<st_ino>` of a socket: what `PM_CHANNEL_ID` says, so that an SDK can tell the
/// channel pm gave its process from another fd that happens to have the same number.
pub(crate) fn socket_id(socket: &UnixStream) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::File::from(OwnedFd::from(socket.try_clone()?)).metadata()?;
    Ok(format!("{}:{}", meta.dev(), meta.ino()))
}

/// Writes `bytes` to the socket `fd` if it takes them at once: never waits, never raises
/// SIGPIPE. For a last message on a channel nobody may be reading.
pub(crate) fn send_now(fd: RawFd, bytes: &[u8]) {
    let flags = MsgFlags::MSG_DONTWAIT | os::NO_SIGPIPE;
    let _ = socket::send(fd, bytes, flags);
}

/// Sends `bytes` without blocking, with the descriptors `fds` attached to the first byte;
/// returns how many bytes went (`WouldBlock` when none could). A reader that died does not
/// raise SIGPIPE (a library user may not ignore it; macOS has no MSG_NOSIGNAL, and its binary
/// ignores SIGPIPE, as every Rust binary).
pub(crate) fn send_with_fds(fd: RawFd, bytes: &[u8], fds: Option<[RawFd; 2]>) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let rights;
    let cmsgs: &[ControlMessage] = match &fds {
        Some(fds) => {
            rights = [ControlMessage::ScmRights(fds)];
            &rights
        }
        None => &[],
    };
    let flags = MsgFlags::MSG_DONTWAIT | os::NO_SIGPIPE;
    Ok(socket::sendmsg::<()>(fd, &iov, cmsgs, flags, None)?)
}

/// Receives into `buf`, waiting for data: how many bytes (0 at EOF), the descriptors that came
/// with them (close-on-exec where the system can do it at once), and whether descriptors were
/// cut off (`MSG_CTRUNC`: no room for them here). Written against libc rather than nix so that
/// descriptors that did arrive are closed even when others were cut off.
pub(crate) fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
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
    let n = loop {
        // SAFETY: msg points to the buffers above, which outlive the call.
        let n = unsafe { libc::recvmsg(fd, &mut msg, os::RECV_CLOEXEC) };
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
