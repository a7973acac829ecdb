//! Open-model arrival schedule: request `k` is *intended* to be sent at `start + k / rate`.
//!
//! Latency in the open model is measured from the intended send time, not from when the
//! request actually left (which may be later when every connection is busy or the generator
//! fell behind). This is the correction for "coordinated omission" described by Gil Tene and
//! implemented by wrk2: a stalled system cannot hide its stall by slowing the load down.

use std::time::Duration;

/// A fixed-rate schedule, relative to the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Interval between intended sends, in nanoseconds (1e9 / rate).
    interval_ns: f64,
    /// Number of requests in the schedule.
    total: u64,
}

/// Errors building a schedule.
#[derive(Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The rate was zero, negative or not finite.
    BadRate,
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::BadRate => write!(f, "rate must be a positive number of requests per second"),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Schedule {
    /// A schedule of `rate` requests per second over `length` (the count is `floor(length × rate)`).
    pub fn new(rate: f64, length: Duration) -> Result<Self, ScheduleError> {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(ScheduleError::BadRate);
        }
        let total = (length.as_secs_f64() * rate).floor() as u64;
        Ok(Self { interval_ns: 1e9 / rate, total })
    }

    /// Number of requests in the schedule.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Offset of request `k`'s intended send time from the start of the run.
    pub fn offset(&self, k: u64) -> Duration {
        Duration::from_nanos((k as f64 * self.interval_ns).round() as u64)
    }

    /// Index of the first request whose intended time is at or after `offset` (for warm-up cuts).
    pub fn first_at_or_after(&self, offset: Duration) -> u64 {
        (offset.as_nanos() as f64 / self.interval_ns).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_rate() {
        let s = Schedule::new(1000.0, Duration::from_secs(2)).unwrap();
        assert_eq!(s.total(), 2000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1000), Duration::from_secs(1));
        assert_eq!(s.offset(1999), Duration::from_millis(1999));
    }

    #[test]
    fn fractional_rate_has_no_drift() {
        let s = Schedule::new(3.0, Duration::from_secs(10)).unwrap();
        assert_eq!(s.total(), 30);
        // 3 req/s: request 3 is at exactly 1 s, request 30 would be at 10 s.
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(30), Duration::from_secs(10));
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn warmup_cut_index() {
        let s = Schedule::new(500.0, Duration::from_secs(3)).unwrap();
        assert_eq!(s.first_at_or_after(Duration::from_secs(1)), 500);
        assert_eq!(s.first_at_or_after(Duration::from_micros(1)), 1);
        assert_eq!(s.first_at_or_after(Duration::ZERO), 0);
    }

    #[test]
    fn rejects_bad_rates() {
        assert_eq!(Schedule::new(0.0, Duration::from_secs(1)), Err(ScheduleError::BadRate));
        assert_eq!(Schedule::new(-1.0, Duration::from_secs(1)), Err(ScheduleError::BadRate));
        assert_eq!(Schedule::new(f64::NAN, Duration::from_secs(1)), Err(ScheduleError::BadRate));
    }
}
