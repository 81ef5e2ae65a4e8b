//! A bound on lines the supervisor writes about what others do (a child flooding `extend`
//! requests, a controller sending to a child that does not read, another user knocking on the
//! control socket): a few per window, and the count of the rest with the next one shown.

use std::time::{Duration, Instant};

/// At most `burst` lines per `window`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: u32,
    window: Duration,
    start: Instant,
    shown: u32,
    hidden: u64,
}

impl RateLimit {
    /// A limit of `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit {
            burst,
            window,
            start: Instant::now(),
            shown: 0,
            hidden: 0,
        }
    }

    /// Whether to write the next line: `Some(n)` to write it, `n` being how many lines were
    /// left out since the last one written (say so when it is not 0); `None` to leave it out.
    pub fn allow(&mut self) -> Option<u64> {
        if self.start.elapsed() >= self.window {
            self.start = Instant::now();
            self.shown = 0;
        }
        if self.shown < self.burst {
            self.shown += 1;
            Some(std::mem::take(&mut self.hidden))
        } else {
            self.hidden += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_count() {
        let mut r = RateLimit::new(2, Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(r.allow(), None);
        }
        r.start -= Duration::from_secs(3600);
        assert_eq!(r.allow(), Some(1000));
        assert_eq!(r.allow(), Some(0));
    }
}
