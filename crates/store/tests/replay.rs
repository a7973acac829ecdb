//! Replay-cache conformance (DPoP `jti` windows, `token-security.md` §5.3): every test runs
//! against `MemoryReplayCache` (always) and `RedisReplayCache` (when `GATEHOUSE_TEST_REDIS_URL`
//! is set, under a unique key prefix; otherwise it prints `skipped: …`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_store::{MemoryReplayCache, RedisReplayCache, ReplayCache};
use gatehouse_types::new_id;

const REDIS_ENV: &str = "GATEHOUSE_TEST_REDIS_URL";

async fn redis(name: &str) -> Option<Arc<dyn ReplayCache>> {
    let Ok(url) = std::env::var(REDIS_ENV) else {
        println!("skipped: {name} ({REDIS_ENV} not set)");
        return None;
    };
    let prefix = format!("gh-test:{}:", new_id().simple());
    Some(Arc::new(RedisReplayCache::connect(&url, &prefix).await.unwrap()))
}

macro_rules! replay_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                let c: Arc<dyn ReplayCache> = Arc::new(MemoryReplayCache::default());
                ($body)(c).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                if let Some(c) = super::redis(concat!(stringify!($name), "::redis")).await {
                    ($body)(c).await;
                }
            }
        }
    };
}

fn key(n: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = n;
    k[31] = 0xa5;
    k
}

replay_test!(first_use_then_replay, |c: Arc<dyn ReplayCache>| async move {
    assert!(c.first_use(&key(1), Duration::from_secs(90)).await.unwrap());
    assert!(!c.first_use(&key(1), Duration::from_secs(90)).await.unwrap());
    assert!(!c.first_use(&key(1), Duration::from_secs(90)).await.unwrap());
    // Another key is independent.
    assert!(c.first_use(&key(2), Duration::from_secs(90)).await.unwrap());
});

replay_test!(exactly_one_of_many_concurrent_attempts_wins, |c: Arc<dyn ReplayCache>| async move {
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.first_use(&key(7), Duration::from_secs(90)).await.unwrap() }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
});

replay_test!(a_key_is_new_again_after_its_window, |c: Arc<dyn ReplayCache>| async move {
    assert!(c.first_use(&key(3), Duration::from_millis(50)).await.unwrap());
    assert!(!c.first_use(&key(3), Duration::from_millis(50)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(c.first_use(&key(3), Duration::from_millis(50)).await.unwrap());
});

#[tokio::test]
async fn the_memory_twin_fails_closed_when_full_of_live_keys() {
    let c = MemoryReplayCache::new(2);
    assert!(c.first_use(&key(1), Duration::from_secs(90)).await.unwrap());
    assert!(c.first_use(&key(2), Duration::from_secs(90)).await.unwrap());
    assert!(!c.first_use(&key(3), Duration::from_secs(90)).await.unwrap());
    // Expired keys make room again.
    let c = MemoryReplayCache::new(1);
    assert!(c.first_use(&key(1), Duration::from_millis(20)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(c.first_use(&key(2), Duration::from_secs(90)).await.unwrap());
}
