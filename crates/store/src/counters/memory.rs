//! In-memory [`Counters`] for a single node: one mutex over a map, so `acquire` is atomic.
//! Clock: the local wall clock (there is only one node).
//!
//! Memory stays bounded by the live buckets: rate entries remember when their window ends and
//! lease sets when their last lease expires. After `max(SWEEP_MIN_OPS, entries kept by the last
//! sweep)` acquisitions one pass drops what has ended (amortised O(1) per call), so keys that are
//! never used again (login throttling per client address, per-token caps) do not accumulate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Adjustment, Bucket, BucketState, Counters, CountersError, Decision, Window, local_now_ms,
    window_at,
};

/// Retry hint for a full concurrency bucket (ms).
const CONCURRENT_RETRY_MS: u64 = 1000;

/// Fewest acquisitions between two sweeps of ended entries.
const SWEEP_MIN_OPS: usize = 1024;

enum Entry {
    /// Amount charged in window `window_id`, which ends at `ends_at` (Unix ms).
    Rate { window_id: i64, used: u64, ends_at: i64 },
    /// Lease id → expiry (Unix ms).
    Leases(HashMap<String, i64>),
}

impl Entry {
    /// Still holds something at `now`: a window not yet ended, or an unexpired lease.
    fn live(&mut self, now: i64) -> bool {
        match self {
            Entry::Rate { ends_at, .. } => *ends_at > now,
            Entry::Leases(l) => {
                l.retain(|_, exp| *exp > now);
                !l.is_empty()
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Acquisitions since the last sweep.
    since_sweep: usize,
    /// Entries left by the last sweep: the next one waits for at least as many acquisitions.
    kept_by_sweep: usize,
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// In-memory counters (see the module doc).
pub struct MemoryCounters {
    entries: Mutex<Inner>,
    clock: Clock,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCounters {
    /// Counters on the local wall clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(local_now_ms))
    }

    /// Counters on a given clock returning Unix milliseconds (tests).
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            entries: Mutex::new(Inner::default()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of buckets held (tests of the sweep).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().map.len()
    }
}

fn state_of(entries: &mut HashMap<String, Entry>, b: &Bucket, now: i64) -> BucketState {
    match b.window {
        Window::Concurrent => {
            let held = match entries.get_mut(&b.key) {
                Some(Entry::Leases(l)) => {
                    l.retain(|_, exp| *exp > now);
                    l.len() as u64
                }
                _ => 0,
            };
            BucketState {
                used: held,
                reset_ms: 0,
                window_id: 0,
            }
        }
        w => {
            let (window_id, reset_ms) = window_at(w, now);
            let used = match entries.get(&b.key) {
                Some(Entry::Rate {
                    window_id: id,
                    used,
                    ..
                }) if *id == window_id => *used,
                _ => 0,
            };
            BucketState {
                used,
                reset_ms,
                window_id,
            }
        }
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn acquire(
        &self,
        buckets: &[Bucket],
        lease: &str,
        lease_ttl: Duration,
    ) -> Result<Decision, CountersError> {
        let now = (self.clock)();
        let mut inner = self.lock();
        inner.since_sweep += 1;
        if inner.since_sweep >= SWEEP_MIN_OPS.max(inner.kept_by_sweep) {
            inner.since_sweep = 0;
            inner.map.retain(|_, e| e.live(now));
            inner.kept_by_sweep = inner.map.len();
        }
        let entries = &mut inner.map;
        let mut states: Vec<BucketState> = buckets
            .iter()
            .map(|b| state_of(entries, b, now))
            .collect();
        let mut denied: Option<usize> = None;
        let mut retry_after_ms = 0;
        for (i, (b, s)) in buckets.iter().zip(&states).enumerate() {
            let (cost, retry) = match b.window {
                Window::Concurrent => (1, CONCURRENT_RETRY_MS),
                _ => (b.cost, s.reset_ms),
            };
            if s.used.saturating_add(cost) > b.limit {
                denied.get_or_insert(i);
                retry_after_ms = retry_after_ms.max(retry);
            }
        }
        if let Some(bucket) = denied {
            return Ok(Decision::Denied {
                bucket,
                retry_after_ms,
                states,
            });
        }
        let expiry = now.saturating_add(i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX));
        for (b, s) in buckets.iter().zip(states.iter_mut()) {
            match b.window {
                Window::Concurrent => {
                    let entry = entries
                        .entry(b.key.clone())
                        .or_insert_with(|| Entry::Leases(HashMap::new()));
                    if !matches!(entry, Entry::Leases(_)) {
                        *entry = Entry::Leases(HashMap::new());
                    }
                    if let Entry::Leases(l) = entry {
                        l.insert(lease.to_string(), expiry);
                        s.used = l.len() as u64;
                    }
                }
                _ => {
                    s.used = s.used.saturating_add(b.cost);
                    let ends_at = now.saturating_add(i64::try_from(s.reset_ms).unwrap_or(i64::MAX));
                    entries.insert(
                        b.key.clone(),
                        Entry::Rate {
                            window_id: s.window_id,
                            used: s.used,
                            ends_at,
                        },
                    );
                }
            }
        }
        Ok(Decision::Admitted { states })
    }

    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), CountersError> {
        let mut inner = self.lock();
        for a in adjustments {
            if let Some(Entry::Rate { window_id, used, .. }) = inner.map.get_mut(&a.key)
                && *window_id == a.window_id
            {
                *used = if a.delta >= 0 {
                    used.saturating_add(a.delta.unsigned_abs())
                } else {
                    used.saturating_sub(a.delta.unsigned_abs())
                };
            }
        }
        Ok(())
    }

    async fn release(&self, keys: &[String], lease: &str) -> Result<(), CountersError> {
        let mut inner = self.lock();
        for k in keys {
            if let Some(Entry::Leases(l)) = inner.map.get_mut(k) {
                l.remove(lease);
            }
        }
        Ok(())
    }

    async fn peek(&self, buckets: &[Bucket]) -> Result<Vec<BucketState>, CountersError> {
        let now = (self.clock)();
        let mut inner = self.lock();
        Ok(buckets
            .iter()
            .map(|b| state_of(&mut inner.map, b, now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    fn bucket(key: String, window: Window) -> Bucket {
        Bucket { key, window, limit: 10, cost: 1 }
    }

    /// Buckets whose window ended (or whose leases expired) are dropped by the periodic sweep,
    /// so one-off keys (a login attempt per client address) do not grow the map forever; live
    /// buckets keep their counts through a sweep.
    #[tokio::test]
    async fn ended_windows_and_expired_leases_are_swept_live_ones_kept() {
        let t = Arc::new(AtomicI64::new(1_700_000_000_000));
        let clock = t.clone();
        let c = MemoryCounters::with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
        let day = bucket("day:kept".into(), Window::Day);
        c.acquire(std::slice::from_ref(&day), "l", Duration::from_secs(60)).await.unwrap();
        for i in 0..3 * SWEEP_MIN_OPS {
            c.acquire(&[bucket(format!("minute:{i}"), Window::Minute)], "l", Duration::from_secs(60)).await.unwrap();
            c.acquire(&[bucket(format!("lease:{i}"), Window::Concurrent)], "l", Duration::from_secs(5)).await.unwrap();
        }
        assert!(c.held() > 2 * SWEEP_MIN_OPS, "nothing has ended yet: {}", c.held());
        t.fetch_add(120_000, Ordering::SeqCst); // two minutes later: every minute window ended
        for i in 0..7 * SWEEP_MIN_OPS {
            c.acquire(&[bucket(format!("later:{i}"), Window::Minute)], "l", Duration::from_secs(60)).await.unwrap();
        }
        // left: the day bucket and the live minute buckets of the second round
        assert_eq!(c.held(), 7 * SWEEP_MIN_OPS + 1, "every bucket of the first round was dropped");
        let after = c.peek(std::slice::from_ref(&day)).await.unwrap();
        assert_eq!(after[0].used, 1, "the day bucket is still counted");
    }
}
