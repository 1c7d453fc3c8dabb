//! Rate-limited logging: a burst of lines per period, then a count of what
//! was left out. One type for every repeated warning (rejected records,
//! client errors, consume errors), so a flood of bad input or an outage
//! never floods the log.

use std::time::{Duration, Instant};

/// Allows `burst` events per `period`; counts the rest.
#[derive(Debug, Clone)]
pub struct RateLimit {
    period: Duration,
    burst: u32,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` events were left out since the last one logged.
    Log { suppressed: u64 },
    /// Leave it out (it is counted).
    Skip,
}

impl RateLimit {
    pub const fn new(period: Duration, burst: u32) -> Self {
        RateLimit { period, burst, window_start: None, used: 0, suppressed: 0 }
    }

    /// At most one line per `period`.
    pub const fn every(period: Duration) -> Self {
        Self::new(period, 1)
    }

    /// Decides about one event at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let fresh = self.window_start.is_none_or(|s| now.saturating_duration_since(s) >= self.period);
        if fresh {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Verdict::Log { suppressed: std::mem::take(&mut self.suppressed) }
        } else {
            self.suppressed += 1;
            Verdict::Skip
        }
    }

    /// Events left out since the last one logged.
    #[cfg(test)]
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_period_then_a_count() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(1), 2);
        assert_eq!(r.check(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(r.check(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(r.check(t0 + Duration::from_millis(10)), Verdict::Skip);
        assert_eq!(r.check(t0 + Duration::from_millis(20)), Verdict::Skip);
        assert_eq!(r.suppressed(), 2);
        assert_eq!(r.check(t0 + Duration::from_secs(1)), Verdict::Log { suppressed: 2 });
        assert_eq!(r.suppressed(), 0);
    }

    #[test]
    fn every_period_once() {
        let t0 = Instant::now();
        let mut r = RateLimit::every(Duration::from_secs(10));
        assert!(matches!(r.check(t0), Verdict::Log { .. }));
        assert_eq!(r.check(t0 + Duration::from_secs(9)), Verdict::Skip);
        assert_eq!(r.check(t0 + Duration::from_secs(10)), Verdict::Log { suppressed: 1 });
    }
}
