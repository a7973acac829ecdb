//! Redis [`Counters`] for several nodes: each operation is one Lua script run atomically by
//! the server, on the server's clock (`TIME`).
//!
//! Versioning: every script and key carries a version (`acquire_v1.lua`, keys
//! `<prefix>v1:<logical key>`). Scripts are addressed by their SHA-1 (`EVALSHA`, loaded on
//! first use), so nodes running different script versions can share one Redis during a rolling
//! deploy; a layout change bumps the version and so uses new keys.
//!
//! Layout: rate buckets are hashes `{w: window id, n: amount}` expiring one minute after their
//! window; concurrency buckets are sorted sets of lease ids scored by expiry (Unix ms).
//! Not for Redis Cluster: the keys of one request are not in one hash slot.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};

use super::{Adjustment, Bucket, BucketState, Counters, CountersError, Decision};

const LAYOUT_VERSION: &str = "v1";

/// Redis counters (see the module doc).
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
    acquire: Script,
    settle: Script,
    peek: Script,
}

fn backend(e: &redis::RedisError) -> CountersError {
    // Category and detail only: RedisError's Display never carries the URL, but stay terse.
    CountersError::Backend(format!(
        "{:?}: {}",
        e.kind(),
        e.detail().unwrap_or("redis error")
    ))
}

impl RedisCounters {
    /// Connects to `url` (`redis://host:port/db`, `rediss://` for TLS is not enabled); keys are
    /// namespaced under `prefix` (e.g. `gatehouse:`). Reconnects automatically after failures.
    ///
    /// Errors: [`CountersError::Backend`] for a bad URL or an unreachable server (the message
    /// never contains the URL, which may hold a password).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CountersError> {
        let client = redis::Client::open(url)
            .map_err(|e| CountersError::Backend(format!("invalid redis URL ({:?})", e.kind())))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| backend(&e))?;
        Ok(Self {
            conn,
            prefix: format!("{prefix}{LAYOUT_VERSION}:"),
            acquire: Script::new(include_str!("acquire_v1.lua")),
            settle: Script::new(include_str!("settle_v1.lua")),
            peek: Script::new(include_str!("peek_v1.lua")),
        })
    }

    fn key(&self, logical: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + logical.len());
        k.push_str(&self.prefix);
        k.push_str(logical);
        k
    }

    async fn run(&self, inv: &ScriptInvocation<'_>) -> Result<Vec<i64>, CountersError> {
        let mut conn = self.conn.clone();
        inv.invoke_async::<Vec<i64>>(&mut conn)
            .await
            .map_err(|e| backend(&e))
    }
}

fn states(values: &[i64]) -> Vec<BucketState> {
    values
        .chunks_exact(3)
        .map(|c| BucketState {
            used: u64::try_from(c[0]).unwrap_or(0),
            reset_ms: u64::try_from(c[1]).unwrap_or(0),
            window_id: c[2],
        })
        .collect()
}

#[async_trait]
impl Counters for RedisCounters {
    async fn acquire(
        &self,
        buckets: &[Bucket],
        lease: &str,
        lease_ttl: Duration,
    ) -> Result<Decision, CountersError> {
        if buckets.is_empty() {
            return Ok(Decision::Admitted { states: Vec::new() });
        }
        let mut inv = self.acquire.prepare_invoke();
        inv.arg(lease)
            .arg(u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX));
        for b in buckets {
            inv.key(self.key(&b.key))
                .arg(b.window.code())
                .arg(b.limit)
                .arg(b.cost);
        }
        let v = self.run(&inv).await?;
        if v.len() != 3 + 3 * buckets.len() {
            return Err(CountersError::Backend(
                "unexpected answer from the acquire script".into(),
            ));
        }
        let st = states(&v[3..]);
        if v[0] == 1 {
            Ok(Decision::Admitted { states: st })
        } else {
            let bucket = usize::try_from(v[1] - 1).unwrap_or(0);
            Ok(Decision::Denied {
                bucket,
                retry_after_ms: u64::try_from(v[2]).unwrap_or(0),
                states: st,
            })
        }
    }

    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), CountersError> {
        if adjustments.is_empty() {
            return Ok(());
        }
        let mut inv = self.settle.prepare_invoke();
        for a in adjustments {
            inv.key(self.key(&a.key)).arg(a.window_id).arg(a.delta);
        }
        self.run(&inv).await.map(|_| ())
    }

    async fn release(&self, keys: &[String], lease: &str) -> Result<(), CountersError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for k in keys {
            pipe.zrem(self.key(k), lease).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| backend(&e))
    }

    async fn peek(&self, buckets: &[Bucket]) -> Result<Vec<BucketState>, CountersError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.peek.prepare_invoke();
        for b in buckets {
            inv.key(self.key(&b.key)).arg(b.window.code());
        }
        let v = self.run(&inv).await?;
        if v.len() != 3 * buckets.len() {
            return Err(CountersError::Backend(
                "unexpected answer from the peek script".into(),
            ));
        }
        Ok(states(&v))
    }
}
