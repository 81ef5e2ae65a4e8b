//! When a crashed service is started again: `restartAt` and `restartOk`, as pure arithmetic.
//!
//! A process that exits without having been asked to stop has crashed, whatever its exit code
//! or signal (a launch failure counts too, with no uptime). The Nth crash in a row waits
//! `restartAt[N-1]` ms; once the list is used up its last value repeats forever. A crash after
//! at least `restartOk` ms of uptime starts a new row: it counts as the first crash again.
//! `restartAt: []` or `[0]` means never restart.

use std::time::Duration;

/// A service's restart schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestartPolicy {
    delays_ms: Vec<u64>,
    ok_after: Duration,
}

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Crashes in a row, this one included.
    pub(crate) crashes: u32,
    /// Wait this long, then start again; None: do not restart.
    pub(crate) delay: Option<Duration>,
}

impl RestartPolicy {
    /// The schedule `restartAt` (ms) with the reset threshold `restartOk`.
    pub(crate) fn new(restart_at: &[u64], restart_ok: Duration) -> RestartPolicy {
        RestartPolicy {
            delays_ms: restart_at.to_vec(),
            ok_after: restart_ok,
        }
    }

    /// Whether this schedule never restarts.
    pub(crate) fn never(&self) -> bool {
        self.delays_ms.is_empty() || self.delays_ms == [0]
    }

    /// A process crashed after `uptime`, following `crashes_before` crashes in a row.
    pub(crate) fn on_crash(&self, crashes_before: u32, uptime: Duration) -> Decision {
        let crashes = if uptime >= self.ok_after {
            1
        } else {
            crashes_before.saturating_add(1)
        };
        let delay = if self.never() {
            None
        } else {
            let i = (crashes as usize - 1).min(self.delays_ms.len() - 1);
            Some(Duration::from_millis(self.delays_ms[i]))
        };
        Decision { crashes, delay }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::{DEFAULT_RESTART_AT, DEFAULT_RESTART_OK_MS};

    const MS: Duration = Duration::from_millis(1);

    fn default_policy() -> RestartPolicy {
        RestartPolicy::new(
            &DEFAULT_RESTART_AT,
            Duration::from_millis(DEFAULT_RESTART_OK_MS),
        )
    }

    /// Feeds a row of crashes (each after `uptime`) and returns the delays chosen.
    fn delays(p: &RestartPolicy, uptimes: &[Duration]) -> Vec<Option<u64>> {
        let mut crashes = 0;
        uptimes
            .iter()
            .map(|&u| {
                let d = p.on_crash(crashes, u);
                crashes = d.crashes;
                d.delay.map(|d| d.as_millis() as u64)
            })
            .collect()
    }

    #[test]
    fn the_default_schedule_ends_in_a_fifteen_minute_tail() {
        let p = default_policy();
        let got = delays(&p, &[MS; 12]);
        let s = |ms: u64| Some(ms);
        assert_eq!(
            got,
            vec![
                s(100),
                s(500),
                s(1_000),
                s(10_000),
                s(30_000),
                s(60_000),
                s(300_000),
                s(900_000),
                s(900_000),
                s(900_000),
                s(900_000),
                s(900_000)
            ]
        );
    }

    #[test]
    fn a_thousand_crashes_keep_the_last_delay() {
        let p = default_policy();
        let mut crashes = 0;
        for _ in 0..1000 {
            crashes = p.on_crash(crashes, Duration::ZERO).crashes;
        }
        let d = p.on_crash(crashes, Duration::ZERO);
        assert_eq!(d.crashes, 1001);
        assert_eq!(d.delay, Some(Duration::from_secs(900)));
    }

    #[test]
    fn a_long_run_resets_the_row() {
        let p = RestartPolicy::new(&[100, 500, 1000], Duration::from_secs(60));
        // Three quick crashes, then one after exactly restartOk, then quick again.
        let got = delays(
            &p,
            &[
                MS,
                MS,
                MS,
                Duration::from_secs(60),
                MS,
                Duration::from_secs(59),
                MS,
            ],
        );
        assert_eq!(
            got,
            vec![
                Some(100),
                Some(500),
                Some(1000),
                Some(100),
                Some(500),
                Some(1000),
                Some(1000)
            ]
        );
    }

    #[test]
    fn a_default_restart_ok_of_thirty_minutes() {
        let p = default_policy();
        let just_under = Duration::from_secs(30 * 60) - MS;
        let d = p.on_crash(5, just_under);
        assert_eq!((d.crashes, d.delay), (6, Some(Duration::from_secs(60))));
        let d = p.on_crash(5, Duration::from_secs(30 * 60));
        assert_eq!((d.crashes, d.delay), (1, Some(Duration::from_millis(100))));
    }

    #[test]
    fn empty_or_zero_means_never() {
        for at in [&[][..], &[0][..]] {
            let p = RestartPolicy::new(at, Duration::from_secs(1));
            assert!(p.never());
            assert_eq!(delays(&p, &[MS, MS]), vec![None, None]);
        }
        // A zero that is not alone is an immediate restart.
        let p = RestartPolicy::new(&[0, 250], Duration::from_secs(1));
        assert!(!p.never());
        assert_eq!(
            delays(&p, &[MS, MS, MS]),
            vec![Some(0), Some(250), Some(250)]
        );
    }

    #[test]
    fn a_launch_failure_counts_as_a_crash_with_no_uptime() {
        let p = RestartPolicy::new(&[100, 200], Duration::from_secs(1));
        assert_eq!(
            delays(&p, &[Duration::ZERO; 3]),
            vec![Some(100), Some(200), Some(200)]
        );
    }

    proptest! {
        /// Delays come from the schedule, the Nth crash in a row waits the Nth value (the last
        /// one repeating), and a long enough run starts the row over.
        #[test]
        fn the_schedule_holds_for_any_row_of_crashes(
            schedule in prop::collection::vec(1u64..100_000, 1..10),
            uptimes in prop::collection::vec(0u64..2_000, 1..50),
            ok in 1u64..2_000,
        ) {
            let p = RestartPolicy::new(&schedule, Duration::from_millis(ok));
            let mut crashes = 0;
            for u in uptimes {
                let d = p.on_crash(crashes, Duration::from_millis(u));
                let expect_crashes = if u >= ok { 1 } else { crashes + 1 };
                prop_assert_eq!(d.crashes, expect_crashes);
                let i = (d.crashes as usize - 1).min(schedule.len() - 1);
                prop_assert_eq!(d.delay, Some(Duration::from_millis(schedule[i])));
                crashes = d.crashes;
            }
        }
    }
}
