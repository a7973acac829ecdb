//! In-memory [`Counters`] for a single node: one mutex over a map, so `acquire` is atomic.
//! Clock: the local wall clock (there is only one node).

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

enum Entry {
    /// Amount charged in window `window_id`.
    Rate { window_id: i64, used: u64 },
    /// Lease id → expiry (Unix ms).
    Leases(HashMap<String, i64>),
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// In-memory counters (see the module doc).
pub struct MemoryCounters {
    entries: Mutex<HashMap<String, Entry>>,
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
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut entries = self.lock();
        let mut states: Vec<BucketState> = buckets
            .iter()
            .map(|b| state_of(&mut entries, b, now))
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
                    entries.insert(
                        b.key.clone(),
                        Entry::Rate {
                            window_id: s.window_id,
                            used: s.used,
                        },
                    );
                }
            }
        }
        Ok(Decision::Admitted { states })
    }

    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), CountersError> {
        let mut entries = self.lock();
        for a in adjustments {
            if let Some(Entry::Rate { window_id, used }) = entries.get_mut(&a.key)
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
        let mut entries = self.lock();
        for k in keys {
            if let Some(Entry::Leases(l)) = entries.get_mut(k) {
                l.remove(lease);
            }
        }
        Ok(())
    }

    async fn peek(&self, buckets: &[Bucket]) -> Result<Vec<BucketState>, CountersError> {
        let now = (self.clock)();
        let mut entries = self.lock();
        Ok(buckets
            .iter()
            .map(|b| state_of(&mut entries, b, now))
            .collect())
    }
}
