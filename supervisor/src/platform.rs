//! Everything the operating system decides, behind one interface, so that a port to another
//! system changes this folder (`docs/porting.md` says how each guarantee maps on macOS and
//! Windows, and what else a Windows port touches).
//!
//! - `unix`: what every Unix system does alike (process groups and sessions, signals, reaping,
//!   descriptor passing, socket checks). Linux and macOS share it.
//! - `linux`: what only Linux offers, each guarantee of the supervisor that rests on it:
//!   - `/proc/<pid>/stat`: a process's start time, which with its pid names it for good (the
//!     state file and the sentinel never signal a recycled pid), and which groups still have a
//!     live member (a zombie does not count);
//!   - `/proc/<pid>/environ` and pidfds: finding the processes that carry a run's service tag
//!     (descendants that left their group) and signalling each through a pidfd opened before
//!     its tag was read, so a pid reused in between is never hit; waiting for them to be gone;
//!   - the child subreaper (`prctl`): such descendants are re-parented to the supervisor, which
//!     reaps them;
//!   - `waitid(P_ALL, WNOWAIT)`: one call finds any exited child, peeked at before it is reaped;
//!   - `/proc/self/fd`: inherited descriptors to mark close-on-exec, and paths that go through
//!     an opened folder (the runtime folder's socket);
//!   - `SO_PEERCRED`, `F_SETPIPE_SZ`, `MSG_NOSIGNAL`, `MSG_CMSG_CLOEXEC`, `/proc/self/exe`.
//! - `fallback`: the same interface on other Unix systems, meant as the start of a macOS port
//!   (nothing built uses it): no start times, no tag scan, no subreaper, `waitid(P_PID)` per
//!   known child, `/dev/fd`, `getpeereid`. What that costs is in `protocol.md`, section 10.
//!
//! The interface, in the terms the rest of the code uses:
//!
//! | item | what it guarantees |
//! |---|---|
//! | [`signal_group`] | a signal to a whole process group; a gone group is not an error |
//! | [`next_exited`], [`reap`], [`Exit`] | an exited child is seen without being reaped, so its group can be killed while its zombie holds the group id; then its status |
//! | [`Pid`], [`Signal`] | a process (its group has the same id) and what it can be sent |
//! | [`start_time`], [`KNOWS_START_TIMES`], [`LiveGroups`] | a process named for good; which groups still run |
//! | [`signal_tagged`], [`kill_tagged`] | every process whose service tag matches, signalled without hitting a recycled pid |
//! | [`group_usage`], [`GroupUsage`] | CPU time and resident memory of process groups, in one scan |
//! | [`group_rss`], [`GroupSampler`] | resident memory of whole process groups for `maxMemory`, in one pass (sampled: members found by a full pass every 10 s, only they read in between) |
//! | [`prepare_supervisor`] | fds 0-2 open, inherited fds close-on-exec, subreaper where there is one |
//! | [`new_session`] | a child in a session of its own (whole group signalled), with its channel on fd 3 |
//! | [`enlarge_pipe`], [`set_nonblocking`] | output pipes with room for bursts; non-blocking reads |
//! | [`own_exe`], [`prepare_sentinel`] | the sentinel started from this binary; its signals and fd limit |
//! | [`send_with_fds`], [`recv_with_fds`] | the sentinel link: bytes with pipe descriptors attached, never raising SIGPIPE |
//! | [`send_now`], [`is_socket`], [`socket_id`], [`peer_uid`] | control sockets: a write that never waits, who is at the other end |
//! | [`path_through`] | a path to a file in an opened folder that does not depend on the folder's name |

mod unix;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(not(target_os = "linux"))]
mod fallback;
#[cfg(not(target_os = "linux"))]
use fallback as os;

pub(crate) use nix::sys::signal::Signal;
pub(crate) use nix::unistd::Pid;
#[allow(unused_imports)]
pub(crate) use os::group_rss;
pub(crate) use os::{
    GroupSampler, GroupUsage, KNOWS_START_TIMES, LiveGroups, enlarge_pipe, group_usage,
    kill_tagged, next_exited, own_exe, path_through, peer_uid, signal_tagged, start_time,
};
pub(crate) use unix::{
    Exit, is_socket, new_session, prepare_sentinel, prepare_supervisor, reap, recv_with_fds,
    send_now, send_with_fds, set_nonblocking, signal_group, socket_id,
};
