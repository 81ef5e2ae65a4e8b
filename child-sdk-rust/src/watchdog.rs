//! The watchdog's heartbeats (protocol.md, sections 6.5 and 9.2): when the supervisor set
//! `PM_WATCHDOG_MS`, the process must send `heartbeat` at least that often. They come from a
//! call the service makes ([`crate::heartbeat`]), and, with the `tokio` feature, automatically
//! from a task on the runtime current at the first SDK call made inside one: the task cannot run
//! while that runtime is blocked, so the heartbeats stop when it does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::protocol::{ENV_WATCHDOG_MS, WatchdogTiming};

/// The heartbeat state of a process that has a watchdog and a supervisor.
pub(crate) struct Watchdog {
    timing: WatchdogTiming,
    start: Instant,
    /// When the last heartbeat of [`crate::heartbeat`] went out, in ms since `start`, plus one
    /// (0: none yet). The automatic ones do not count: the app's first call always sends one.
    last: AtomicU64,
    /// The app called [`crate::heartbeat`]: the automatic heartbeats are off for good.
    manual: AtomicBool,
    /// No heartbeat can reach the supervisor any more (the channel is closed).
    ended: AtomicBool,
    /// A runtime's heartbeat task was started (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub(crate) bound: AtomicBool,
}

impl Watchdog {
    /// The watchdog `PM_WATCHDOG_MS` asks for, if it holds one.
    pub(crate) fn from_env() -> Option<Watchdog> {
        let timing = WatchdogTiming::parse(&std::env::var(ENV_WATCHDOG_MS).ok()?)?;
        Some(Watchdog {
            timing,
            start: Instant::now(),
            last: AtomicU64::new(0),
            manual: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            #[cfg(feature = "tokio")]
            bound: AtomicBool::new(false),
        })
    }

    pub(crate) fn timing(&self) -> WatchdogTiming {
        self.timing
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A call of [`crate::heartbeat`]: turns the automatic heartbeats off, and says whether a
    /// heartbeat is to go out now (none went out in the last tenth of the limit).
    pub(crate) fn manual_due(&self) -> bool {
        self.manual.store(true, Ordering::SeqCst);
        if self.ended.load(Ordering::SeqCst) {
            return false;
        }
        let now = self.now();
        let mut last = self.last.load(Ordering::SeqCst);
        loop {
            if last != 0 && now.saturating_sub(last) < self.timing.min_gap_ms {
                return false;
            }
            match self
                .last
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(other) => last = other,
            }
        }
    }

    /// Whether the automatic heartbeats are still on.
    pub(crate) fn automatic(&self) -> bool {
        !self.manual.load(Ordering::SeqCst) && !self.ended.load(Ordering::SeqCst)
    }

    /// The channel is closed: no heartbeat goes out any more.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }
}
