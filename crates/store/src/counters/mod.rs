//! Shared counters for rate limits, quotas and budgets: the [`Counters`] trait with an in-memory
//! backend ([`MemoryCounters`], one node) and a Redis backend ([`RedisCounters`], several nodes),
//! both passing `tests/counters.rs`.
//!
//! Model (estimate → settle, `architecture-anchors.md` §1.3):
//! * A request names every [`Bucket`] that applies to it (its team's, app's, key's and model's
//!   limits) and [`Counters::acquire`] checks and charges them **together**: either every bucket
//!   has room for its `cost` and all are charged, or none is charged (all-or-nothing, atomic;
//!   in Redis one Lua script, in memory one mutex).
//! * Rate buckets ([`Window::Minute`], [`Window::Day`], [`Window::Month`]) are fixed windows
//!   aligned to the counter backend's clock (Redis: server `TIME`, never the node's clock):
//!   minute = Unix minute, day = UTC calendar day, month = UTC calendar month. A bucket is
//!   admitted when `used + cost <= limit`.
//! * Concurrency buckets ([`Window::Concurrent`]) hold one lease per in-flight request (the
//!   request's id); a lease expires by itself after `lease_ttl` so a crashed node cannot leak
//!   capacity forever; [`Counters::release`] ends it.
//! * [`Counters::settle`] corrects a charged estimate with the real amount (`delta` may be
//!   negative) in the window it was charged in; when that window is over, the correction is
//!   dropped (the old window no longer limits anything).
//!
//! Keys are logical (`rpm:key:<id>`); each backend adds its own namespace. Amounts are plain
//! integers: requests, tokens, or micro-USD for spend.

mod memory;
mod metric;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryCounters;
pub use metric::{LimitBucket, Metric, bucket_key, limit_buckets};
pub use redis::RedisCounters;

/// How a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Fixed window of one Unix minute (resets at second 0 of every minute).
    Minute,
    /// Fixed window of one UTC calendar day.
    Day,
    /// Fixed window of one UTC calendar month.
    Month,
    /// In-flight requests (leases), no time window.
    Concurrent,
}

impl Window {
    /// Short code used in backend keys and scripts: `m`, `d`, `M`, `c`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Minute => "m",
            Self::Day => "d",
            Self::Month => "M",
            Self::Concurrent => "c",
        }
    }
}

/// One bucket to check and charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Logical key, unique per (limit kind, scope), e.g. `tpm:team:<uuid>`.
    pub key: String,
    pub window: Window,
    /// Largest admitted amount per window (or number of leases for `Concurrent`).
    pub limit: u64,
    /// Amount charged by this request (ignored for `Concurrent`: one lease).
    pub cost: u64,
}

/// The state of one bucket as seen by one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketState {
    /// Amount used in the current window: after the charge when admitted, before it when denied.
    /// For `Concurrent`: leases held.
    pub used: u64,
    /// Milliseconds until the window resets (0 for `Concurrent`).
    pub reset_ms: u64,
    /// Identifier of the window charged (pass it back to [`Counters::settle`]); 0 for
    /// `Concurrent`. Minute: Unix minutes; day: days since 1970-01-01; month: `year*12+month-1`.
    pub window_id: i64,
}

/// The answer of [`Counters::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every bucket was charged; one state per bucket, in request order.
    Admitted { states: Vec<BucketState> },
    /// Nothing was charged. `bucket` is the index of the first bucket without room;
    /// `retry_after_ms` the time until every full bucket has room again (for `Concurrent`
    /// a fixed 1 s: when a lease ends is unknown).
    Denied {
        bucket: usize,
        retry_after_ms: u64,
        states: Vec<BucketState>,
    },
}

/// A correction of an earlier charge (see [`Counters::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub key: String,
    /// The `window_id` returned by `acquire` for this bucket.
    pub window_id: i64,
    /// Real amount minus charged amount; the stored amount never goes below 0.
    pub delta: i64,
}

/// Why a counters call failed (backend unreachable, script error). Never contains a URL.
#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error("counters backend error: {0}")]
    Backend(String),
}

/// Shared counters (see the module doc). Implementations must be atomic per call.
#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// Checks every bucket and, only if all have room, charges all (all-or-nothing).
    /// `lease` identifies the request in `Concurrent` buckets; a lease expires after `lease_ttl`.
    async fn acquire(
        &self,
        buckets: &[Bucket],
        lease: &str,
        lease_ttl: Duration,
    ) -> Result<Decision, CountersError>;
    /// Applies corrections to charges made by `acquire`, each in the window it was charged in.
    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), CountersError>;
    /// Ends `lease` in the given `Concurrent` buckets (idempotent).
    async fn release(&self, keys: &[String], lease: &str) -> Result<(), CountersError>;
    /// Current state of buckets without charging anything (`cost` and `limit` are ignored).
    async fn peek(&self, buckets: &[Bucket]) -> Result<Vec<BucketState>, CountersError>;
}

/// The window id and the milliseconds until its end, for `window` at `now_ms` (Unix ms, UTC).
/// `Concurrent` → `(0, 0)`. The Redis script computes the same from the server's clock.
pub fn window_at(window: Window, now_ms: i64) -> (i64, u64) {
    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;
    let reset = |end: i64| u64::try_from(end - now_ms).unwrap_or(0);
    match window {
        Window::Minute => {
            let w = now_ms.div_euclid(MIN);
            (w, reset((w + 1) * MIN))
        }
        Window::Day => {
            let w = now_ms.div_euclid(DAY);
            (w, reset((w + 1) * DAY))
        }
        Window::Month => {
            let days = now_ms.div_euclid(DAY);
            let (y, m, _) = civil_from_days(days);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (y * 12 + m - 1, reset(days_from_civil(ny, nm, 1) * DAY))
        }
        Window::Concurrent => (0, 0),
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`; the Lua script uses the same arithmetic).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01 (inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the Unix epoch from the local clock (memory backend only).
pub(crate) fn local_now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trip_and_month_windows() {
        for days in [-1000_i64, 0, 59, 60, 365, 11_016, 19_782, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let date =
                time::Date::from_julian_day(i32::try_from(days + 2_440_588).unwrap()).unwrap();
            assert_eq!(
                (y, m, d),
                (
                    i64::from(date.year()),
                    i64::from(u8::from(date.month())),
                    i64::from(date.day())
                )
            );
        }
        // 2024-02-29T12:00:00Z: month window 2024*12+1, resets at 2024-03-01T00:00Z (12 h).
        let ms = 1_709_208_000_000;
        assert_eq!(
            window_at(Window::Month, ms),
            (2024 * 12 + 1, 12 * 3_600_000)
        );
        assert_eq!(window_at(Window::Day, ms).1, 12 * 3_600_000);
        assert_eq!(window_at(Window::Minute, ms + 1_500), (ms / 60_000, 58_500));
        // December rolls into January of the next year.
        let dec = 1_735_646_400_000; // 2024-12-31T12:00:00Z
        assert_eq!(
            window_at(Window::Month, dec),
            (2024 * 12 + 11, 12 * 3_600_000)
        );
    }
}
