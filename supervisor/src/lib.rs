//! # pm-supervisor
//!
//! Process supervision for desktop apps: starts an app's background services (Node scripts,
//! Python programs, binaries), talks to each over a newline-JSON channel on fd 3, captures their
//! output into line-clean logs, and stops every one of them cleanly — a `stop` message first,
//! SIGTERM to the process group if it is not answered, SIGKILL at `killTimeout` — so that no
//! process is left behind, even when the supervisor itself is killed with SIGKILL.
//!
//! ## Usage
//!
//! The crate is the `pm-supervisor` binary ([`main`]); its public modules are what a Rust
//! program needs to drive one: [`config`] reads and checks a config file, [`supervisor`] runs
//! services in-process through a [`supervisor::Handle`], [`control`] is the typed control
//! protocol a client speaks to a running supervisor, and [`runtime`] claims an instance.
//!
//! ## Theory of operation
//!
//! One actor ([`supervisor`]) owns the process table. Front-ends (`frontends`: `run` reads a
//! config file, `serve` a control channel, the CLI a control socket) translate their input into
//! its commands through a [`supervisor::Handle`]. Each child runs in a session of its own, so its
//! whole process group can be signalled; the supervisor is the only reaper of its children and a
//! child subreaper on Linux, so descendants that left the group are re-parented to it and found
//! by the service tag in their environment. A separate sentinel process stops everything if the
//! supervisor dies without a chance to do it, and a state file ([`runtime`]) lets the next start
//! clean up after a crash of both. The modules by concern:
//!
//! - `service`: a service's state as pure machines (lifecycle, restart schedule, stop sequence);
//! - `process`: starting children, their channel, the sentinel;
//! - `logs`: the log line format, output readers and log file writers;
//! - `frontends`: `run`, `serve`, the control connections and the CLI;
//! - `platform`: everything the operating system decides (see `docs/porting.md`).
//!
//! `protocol.md` in the repository is the normative description of the channel.

pub mod config;
pub mod control;
pub mod runtime;
pub mod supervisor;

mod framing;
mod frontends;
mod logs;
mod platform;
mod process;
mod rate_limit;
mod service;

/// The `pm-supervisor` command line: parses the arguments, runs the command and returns its exit
/// code.
pub fn main() -> std::process::ExitCode {
    frontends::cli::main()
}

/// What the fuzz targets and the integration tests reach inside the crate. Not an API: hidden
/// from the documentation, and may change in any release.
#[doc(hidden)]
pub mod testing {
    pub use crate::frontends::connection::check_request;
    pub use crate::logs::lines::{AnsiStripper, LogLines, label_colour};
    pub use crate::process::sentinel::DRAIN_LIMIT;
    pub use crate::runtime::instance::parse_state;
    pub use crate::runtime::instance_name;
}
