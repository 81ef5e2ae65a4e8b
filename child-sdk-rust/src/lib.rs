//! # pm-child
//!
//! The child side of the [pm](https://github.com/pm-supervisor/pm) process supervisor: a
//! service registers stop handlers, says when it is ready, and exchanges messages with the
//! supervisor. This crate is also the home of the protocol types both ends share (the
//! `protocol` module: public for pm's own crates, hidden from these docs and not covered by
//! semver; `protocol.md` in the repository is the protocol's description).
//!
//! ## Usage
//!
//! ```no_run
//! pm_child::on_stopping(|| {
//!     println!("flushing the queue before exit");
//! });
//! pm_child::on_message(|data| println!("the app sent {data}"));
//! pm_child::ready();
//! loop {
//!     // ... the service's work ...
//!     std::thread::sleep(std::time::Duration::from_secs(1));
//! }
//! ```
//!
//! ## Theory of operation
//!
//! The first call into the crate connects: it takes the channel named by `PM_CHANNEL_FD`
//! (fd 3, a Unix socket from `pm-supervisor`) if it is the socket `PM_CHANNEL_ID` identifies and
//! this process leads its own session (pm starts every service with `setsid`), marks it
//! close-on-exec, and sends `hello`. A descendant that inherited the fd and the variables (a
//! shell's child, a forked worker) is not its session's leader and runs unsupervised; so the
//! SDK never changes the environment, and its first call may come at any time, on any thread.
//!
//! A background thread (`pm-child`) reads the channel; it never keeps the process alive.
//! Until the app registers a stop handler or waits for the stop ([`stop_requested`],
//! [`handlers_done`] and their blocking forms), the SDK changes nothing about how the process
//! stops: it installs no signal handler, and answers the supervisor's `stop` with `term` (the
//! supervisor then sends SIGTERM at once). Once it does, the stop handlers run once, in
//! registration order, on a thread of their own (`pm-child-stop`), on whichever of these comes
//! first:
//! - the supervisor's `stop` message (the SDK answers `stopping`: no SIGTERM comes; SIGKILL
//!   still comes at `killTimeout`, unless a handler asks for more time with [`extend`]);
//! - EOF on the channel (the supervisor died);
//! - SIGTERM or SIGINT (so the same program behaves under systemd, Docker or a terminal's
//!   Ctrl-C).
//!
//! A handler that panics is reported on stderr and the next one runs. Then the app decides when
//! it exits: if it waits for the stop through the SDK, its wait ends and `main` ends the
//! process; else if it has a SIGTERM (or SIGINT) handler of its own (tokio's `signal`, `ctrlc`,
//! a `sigaction`), installed before or after the SDK's, that handler gets the signal once;
//! else the process exits with code 0 (`std::process::exit`, which flushes stdout). If `main`
//! returns while handlers run, the exit waits for them (until the stop's deadline); after a
//! stop, the rest of the process group gets SIGTERM as the process exits, when it leads it.
//!
//! A service with a watchdog (`watchdogMs`: the supervisor sets `PM_WATCHDOG_MS`) must send a
//! heartbeat at least that often. [`heartbeat`] sends one (at most one per tenth of the limit,
//! however often it is called) and turns the automatic ones off for good. With the `tokio`
//! feature the heartbeats are automatic: the first SDK call made inside a tokio runtime binds
//! them to it, and a thread of the SDK (`pm-child-watchdog`) queues a task on it every third of
//! the limit that sends one, so they stop when the runtime cannot run tasks (a current-thread
//! runtime blocked, or every worker of a multi-thread one).
//!
//! Without a supervisor, [`ready`], [`send`], [`extend`] and [`heartbeat`] do nothing,
//! [`supervised`] is false, and the signal triggers still work.
//!
//! With the `tokio` feature, `on_stopping_async` registers an async handler.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod child;
mod output;
mod signals;
mod stop;
mod watchdog;
// The wire format and codec, shared with pm-supervisor: not an API for services.
#[doc(hidden)]
pub mod protocol;

#[cfg(feature = "tokio")]
pub use child::on_stopping_async;
pub use child::{
    extend, handlers_done, heartbeat, on_message, on_stopping, on_stopping_fallible, ready, send,
    stop_requested, supervised, wait_handlers_done, wait_stop_requested,
};
pub use stop::StopFuture;
// For language bindings built on this crate (the Python SDK): not part of the stable API.
#[doc(hidden)]
pub use child::{
    Finish, Options, StopHandler, app_takes_part, auto_heartbeat, auto_heartbeats_on, exit_now,
    exiting, finish_default, init, owns_channel, set_app_waits, spawn_thread, stop_phase,
    stop_trigger, trigger_stop, wait_for_handlers_at_exit, wait_phase, watchdog_timing,
};
#[doc(hidden)]
pub use output::{quiet_broken_output, term_own_group};
#[doc(hidden)]
pub use stop::{Phase, Trigger};
