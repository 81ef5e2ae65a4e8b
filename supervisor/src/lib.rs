//! # pm-supervisor
//!
//! Process supervision for desktop apps: starts an app's background services (Node scripts,
//! Python programs, binaries), talks to each over a newline-JSON channel on fd 3, captures their
//! output into line-clean logs, and stops every one of them cleanly — a `stop` message first,
//! SIGTERM to the process group if it is not answered, SIGKILL at `killTimeout` — so that no
//! process is left behind, even when the supervisor itself is killed with SIGKILL.
//!
//! ## Theory of operation
//!
//! One actor ([`supervisor`]) owns the process table. Front-ends translate their input into
//! its commands through a [`supervisor::Handle`]: [`run`] reads a config file. Each child runs
//! in a session of its own, so its whole process group can be signalled; the supervisor is the
//! only reaper of its children ([`reap`]) and a child subreaper on Linux, so descendants that
//! left the group are re-parented to it and found by the service tag in their environment
//! ([`procs`]). A separate sentinel process ([`sentinel`]) stops everything if the supervisor
//! dies without a chance to do it, and a state file ([`runtime`]) lets the next start clean
//! up after a crash of both. `protocol.md` in the repository is the normative description of the
//! channel.

pub mod channel;
pub mod cli;
pub mod config;
pub mod control;
pub mod json_locate;
pub mod launch;
pub mod lifecycle;
pub mod log_writer;
pub mod output;
pub mod procs;
pub mod rate_limit;
pub mod reap;
pub mod restart_policy;
pub mod run;
pub mod runtime;
pub mod sentinel;
pub mod shipped_python;
pub mod stop;
pub mod supervisor;
