//! One-time-use windows for replay protection (`token-security.md` §5.3, §5.4; RFC 9449 §11.1):
//! the [`ReplayCache`] trait with an in-memory twin for one node ([`MemoryReplayCache`]) and a
//! Redis backend shared by every node ([`RedisReplayCache`], `SET key 1 NX PX ttl`).
//!
//! Keys are fixed-size digests chosen by the caller (for DPoP: SHA-256 over `htu` and `jti`), so
//! neither a proof nor a token ever reaches the cache. Both backends answer "first use" exactly
//! once per key within `ttl`, also under concurrent attempts.
//!
//! Failure policy is the caller's: the data plane fails closed (503) when Redis is unreachable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::counters::CountersError;

/// Remembers keys for a while and tells whether a key is new.
#[async_trait]
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` for `ttl`. `Ok(true)`: first use within the window; `Ok(false)`: the key was
    /// seen within its window (a replay), or the memory twin is full of live keys (fail closed).
    ///
    /// Errors: [`CountersError::Backend`] when the backend cannot be reached.
    async fn first_use(&self, key: &[u8; 32], ttl: Duration) -> Result<bool, CountersError>;
}

/// In-memory window for one node, bounded to `capacity` live keys.
pub struct MemoryReplayCache {
    seen: Mutex<HashMap<[u8; 32], Instant>>,
    capacity: usize,
}

impl MemoryReplayCache {
    /// A cache holding at most `capacity` live keys (expired keys are purged when full).
    pub fn new(capacity: usize) -> Self {
        Self { seen: Mutex::new(HashMap::new()), capacity }
    }
}

impl Default for MemoryReplayCache {
    /// One million keys (≈ 50 MB worst case).
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn first_use(&self, key: &[u8; 32], ttl: Duration) -> Result<bool, CountersError> {
        let now = Instant::now();
        let mut seen = self.seen.lock().map_err(|_| CountersError::Backend("replay cache poisoned".into()))?;
        if let Some(until) = seen.get(key)
            && *until > now
        {
            return Ok(false);
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until > now);
            if seen.len() >= self.capacity {
                return Ok(false);
            }
        }
        seen.insert(*key, now + ttl);
        Ok(true)
    }
}

/// Redis window shared by every node: `SET <prefix>replay:v1:<hex key> 1 NX PX <ttl ms>`.
/// Use a Redis with `maxmemory-policy noeviction` (§5.3): an evicted key re-opens the window.
pub struct RedisReplayCache {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisReplayCache {
    /// Connects to `url` (`redis://host:port/db`); keys live under `prefix` (e.g. `gatehouse:`).
    ///
    /// Errors: [`CountersError::Backend`] for a bad URL or an unreachable server (never echoes
    /// the URL, which may hold a password).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CountersError> {
        let client =
            redis::Client::open(url).map_err(|e| CountersError::Backend(format!("invalid redis URL ({:?})", e.kind())))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| CountersError::Backend(format!("{:?}: {}", e.kind(), e.detail().unwrap_or("redis error"))))?;
        Ok(Self { conn, prefix: format!("{prefix}replay:v1:") })
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn first_use(&self, key: &[u8; 32], ttl: Duration) -> Result<bool, CountersError> {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        for b in key {
            name.push_str(&format!("{b:02x}"));
        }
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(&name)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| CountersError::Backend(format!("{:?}: {}", e.kind(), e.detail().unwrap_or("redis error"))))?;
        Ok(reply.is_some())
    }
}
