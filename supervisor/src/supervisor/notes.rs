//! The supervisor's own lines about a service (stream `pm` of its log), as values: the actor
//! decides what to say, the effects write it, and the tests read what was said.

use std::fmt;
use std::time::Duration;

use pm_child::protocol::StopReason;

use crate::platform::{Exit, Pid, Signal};

/// One line about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Note {
    /// A process was launched: `command` as executed.
    Started {
        pid: Pid,
        command: String,
    },
    Ready,
    Stopping {
        reason: StopReason,
        kill_timeout: Duration,
    },
    Sigterm {
        pid: Pid,
        why: TermWhy,
    },
    /// Logged at the exit, once the exit shows the SIGKILL ended the process: `after` the stop
    /// request, or forced (None) by a second signal.
    Sigkill {
        pid: Pid,
        after: Option<Duration>,
    },
    /// The child asked for `wanted` ms more; SIGKILL is now `kill_in` away; `hidden` earlier
    /// requests were not logged.
    Extended {
        wanted: u64,
        kill_in: Duration,
        hidden: u64,
    },
    /// It ended after a stop request (`after` it), having run `ran`.
    Stopped {
        exit: Exit,
        after: Duration,
        ran: Duration,
    },
    /// It ended on its own after running `ran`.
    Exited {
        exit: Exit,
        ran: Duration,
    },
    Restarting {
        delay: Duration,
        crashes: u32,
    },
    RestartCancelled,
    CannotLaunch(String),
    Disconnected,
    /// `watchdogMs` is set but the process sent no heartbeat within it.
    NotWatched,
    /// No heartbeat for `silence`, more than `limit`.
    Hung {
        silence: Duration,
        limit: Duration,
    },
    /// A hung process was asked for a diagnostic (by this signal, or None: it writes one
    /// itself); the stop begins `window` later.
    Diagnostic {
        signal: Option<Signal>,
        window: Duration,
    },
    /// The process group's RSS stayed above `max` for `over`.
    OverMemory {
        rss: u64,
        max: u64,
        over: Duration,
    },
    /// Not started until these services of its `dependsOn` are up.
    WaitingFor(Vec<String>),
    /// Watch mode: files changed (the first one seen).
    FilesChanged(String),
    /// Watch mode cannot watch something.
    CannotWatch(String),
}

/// Why a process group got SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TermWhy {
    /// The child answered `term`: it has no stop handlers.
    Asked,
    ChannelClosed,
    NoHello,
    /// No `stopping` within this long of the `stop`.
    NoAnswer(Duration),
}

impl Note {
    /// A line that needs a person's attention: also an error on stderr, whatever the log.
    pub(super) fn is_error(&self) -> bool {
        matches!(
            self,
            Note::CannotLaunch(_) | Note::Hung { .. } | Note::OverMemory { .. }
        )
    }
}

/// `120 ms`, or `12.3 s` from 100 s on.
pub(super) fn ms(d: Duration) -> String {
    if d < Duration::from_secs(100) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `612.3 MiB`
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Started { pid, command } => write!(f, "started pid {pid}: {command}"),
            Note::Ready => f.write_str("ready"),
            Note::Stopping {
                reason,
                kill_timeout,
            } => {
                let why = match reason {
                    StopReason::Stop => "stop requested",
                    StopReason::Restart => "restart requested",
                    StopReason::Shutdown => "supervisor shutting down",
                };
                write!(f, "stopping ({why}; killTimeout {})", ms(*kill_timeout))
            }
            Note::Sigterm { pid, why } => {
                write!(f, "SIGTERM sent to process group {pid} (")?;
                match why {
                    TermWhy::Asked => f.write_str("it has no stop handlers and asked for it")?,
                    TermWhy::ChannelClosed => f.write_str("its channel is closed")?,
                    TermWhy::NoHello => f.write_str("it never said hello on its channel")?,
                    TermWhy::NoAnswer(d) => write!(f, "no \"stopping\" answer within {}", ms(*d))?,
                }
                f.write_str(")")
            }
            Note::Sigkill { pid, after } => match after {
                Some(d) => write!(
                    f,
                    "SIGKILL sent to process group {pid} ({} after the stop request)",
                    ms(*d)
                ),
                None => write!(
                    f,
                    "SIGKILL sent to process group {pid} (forced by a second signal)"
                ),
            },
            Note::Extended {
                wanted,
                kill_in,
                hidden,
            } => {
                write!(
                    f,
                    "stop extended by {wanted} ms on request; SIGKILL in {}",
                    ms(*kill_in)
                )?;
                if *hidden > 0 {
                    write!(f, " ({hidden} more requests not shown)")?;
                }
                Ok(())
            }
            Note::Stopped { exit, after, ran } => write!(
                f,
                "stopped: {exit}, {} after the stop request (ran {})",
                ms(*after),
                ms(*ran)
            ),
            Note::Exited { exit, ran } => write!(f, "exited: {exit} after {}", ms(*ran)),
            Note::Restarting { delay, crashes } => {
                write!(f, "restarting in {} (crash {crashes} in a row)", ms(*delay))
            }
            Note::RestartCancelled => f.write_str("stopped (its pending restart is cancelled)"),
            Note::CannotLaunch(e) => write!(f, "cannot launch: {e}"),
            Note::Disconnected => f.write_str("channel closed on request (disconnect)"),
            Note::NotWatched => {
                f.write_str("watchdogMs is set, but the process sent no heartbeat: not watched")
            }
            Note::Hung { silence, limit } => write!(
                f,
                "hung: no heartbeat for {} ms (watchdogMs {})",
                silence.as_millis(),
                limit.as_millis()
            ),
            Note::Diagnostic { signal, window } => match signal {
                Some(sig) => write!(
                    f,
                    "{sig} sent to it for a diagnostic; stopping in {}",
                    ms(*window)
                ),
                None => write!(
                    f,
                    "it writes a diagnostic itself; stopping in {}",
                    ms(*window)
                ),
            },
            Note::OverMemory { rss, max, over } => write!(
                f,
                "memory: process group RSS {} above maxMemory {} for {}; restarting",
                mib(*rss),
                mib(*max),
                ms(*over)
            ),
            Note::WaitingFor(names) => {
                write!(f, "waiting for {} to start (dependsOn)", names.join(", "))
            }
            Note::FilesChanged(path) => write!(f, "files changed ({path}); restarting (watch)"),
            Note::CannotWatch(e) => write!(f, "watch: {e}"),
        }
    }
}
