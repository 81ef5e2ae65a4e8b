//! The stop's state, in one place: whether it has begun, whether the handlers are done, whether
//! the app waits for it, and the app's waits (blocking and async).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What began a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The supervisor's `stop` message.
    Stop,
    /// EOF on the channel without a `disconnect` notice: the supervisor died.
    Eof,
    /// SIGTERM or SIGINT (the signal's number).
    Signal(i32),
}

impl Trigger {
    /// The signal that stands for this stop when it is handed to the app's own handler:
    /// the signal itself, else SIGTERM (what pm sends a program without the SDK).
    pub fn signal(self) -> i32 {
        match self {
            Trigger::Signal(s) => s,
            _ => libc::SIGTERM,
        }
    }
}

/// Where the stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No stop yet.
    Idle,
    /// The handlers are running.
    Running,
    /// The handlers are done; the stop is the app's (or the SDK ends the process).
    Done,
}

/// How long the process waits at exit for handlers still running when no deadline is known
/// (a stop by signal): the protocol's cap on a stop.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

struct State {
    phase: Phase,
    trigger: Option<Trigger>,
    /// When the supervisor's SIGKILL is due (moved by `extend`), if known.
    deadline: Option<Instant>,
    wakers: Vec<Waker>,
}

pub(crate) struct Stop {
    state: Mutex<State>,
    changed: Condvar,
    /// The app waits for the stop through the SDK: it decides when the process exits.
    app_waits: AtomicBool,
    /// The process is exiting (the SDK's `atexit` hook ran): the SDK does not call `exit`.
    exiting: AtomicBool,
}

impl Stop {
    pub(crate) const fn new() -> Stop {
        Stop {
            state: Mutex::new(State {
                phase: Phase::Idle,
                trigger: None,
                deadline: None,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
            app_waits: AtomicBool::new(false),
            exiting: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub(crate) fn trigger(&self) -> Option<Trigger> {
        self.lock().trigger
    }

    /// Idle to Running. Returns whether this call began the stop.
    pub(crate) fn begin(&self, trigger: Trigger, timeout: Option<Duration>) -> bool {
        let mut st = self.lock();
        if st.phase != Phase::Idle {
            return false;
        }
        st.phase = Phase::Running;
        st.trigger = Some(trigger);
        st.deadline = timeout.map(|t| Instant::now() + t);
        self.wake(st);
        true
    }

    /// Running to Done.
    pub(crate) fn finish(&self) {
        let mut st = self.lock();
        st.phase = Phase::Done;
        self.wake(st);
    }

    fn wake(&self, mut st: std::sync::MutexGuard<'_, State>) {
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.changed.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// `extend(ms)`: the SIGKILL comes no earlier than `ms` from now.
    pub(crate) fn extend(&self, ms: u64) {
        let mut st = self.lock();
        if st.phase == Phase::Running {
            let until = Instant::now() + Duration::from_millis(ms);
            st.deadline = Some(st.deadline.map_or(until, |d| d.max(until)));
        }
    }

    pub(crate) fn set_app_waits(&self) {
        self.app_waits.store(true, Ordering::SeqCst);
    }

    pub(crate) fn app_waits(&self) -> bool {
        self.app_waits.load(Ordering::SeqCst)
    }

    pub(crate) fn set_exiting(&self) -> bool {
        self.exiting.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    /// Blocks until the phase is at least `phase`, or until `timeout`. Returns whether it got
    /// there.
    pub(crate) fn wait(&self, phase: Phase, timeout: Option<Duration>) -> bool {
        let until = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        while !reached(st.phase, phase) {
            st = match until {
                None => self
                    .changed
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
        true
    }

    /// At exit: waits for handlers still running, until the stop's deadline.
    pub(crate) fn wait_at_exit(&self) {
        let left = {
            let st = self.lock();
            if st.phase != Phase::Running {
                return;
            }
            st.deadline.map_or(DEFAULT_WAIT, |d| {
                d.saturating_duration_since(Instant::now())
            })
        };
        self.wait(Phase::Done, Some(left));
    }

    fn poll_phase(&self, phase: Phase, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if reached(st.phase, phase) {
            return Poll::Ready(());
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

fn reached(now: Phase, wanted: Phase) -> bool {
    let rank = |p| match p {
        Phase::Idle => 0,
        Phase::Running => 1,
        Phase::Done => 2,
    };
    rank(now) >= rank(wanted)
}

pub(crate) static STOP: Stop = Stop::new();

/// A future that resolves when the stop reaches a phase: returned by
/// [`stop_requested`](crate::stop_requested) and [`handlers_done`](crate::handlers_done). It
/// needs no particular runtime.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct StopFuture {
    pub(crate) phase: Phase,
}

impl Future for StopFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        STOP.poll_phase(self.phase, cx)
    }
}
