//! Traffic-control wiring (issue 6): which counters back rate limits, quotas and budgets.

use std::sync::Arc;

use gatehouse_gateway::TrafficDeps;
use gatehouse_store::{RedisCounters, RedisReplayCache};

/// Key namespace of Gatehouse counters in Redis.
pub const REDIS_PREFIX: &str = "gatehouse:";

/// In-memory counters without `redis_url`; Redis counters (shared by every node using the same
/// Redis) with it. Errors: Redis unreachable or a bad URL (never echoes the URL).
pub async fn traffic_deps(redis_url: Option<&str>) -> Result<TrafficDeps, String> {
    let mut deps = TrafficDeps::default();
    if let Some(url) = redis_url.filter(|u| !u.trim().is_empty()) {
        let counters = RedisCounters::connect(url.trim(), REDIS_PREFIX)
            .await
            .map_err(|e| format!("cannot use Redis for rate limits: {e}"))?;
        deps.counters = Arc::new(counters);
        // Redis counters are durable and shared: no seeding from the call log.
        deps.seed_from_call_log = false;
        tracing::info!("rate-limit counters in Redis");
        // DPoP `jti` replay windows shared by every node (issue 5).
        let replay = RedisReplayCache::connect(url.trim(), REDIS_PREFIX)
            .await
            .map_err(|e| format!("cannot use Redis for DPoP replay windows: {e}"))?;
        deps.replay = Arc::new(replay);
    }
    Ok(deps)
}

/// The routing policy of the data plane (issue 6): attempts, backoff, circuit breaker and
/// per-model options from the configuration's `[routing]` table and `[[models]]` entries.
pub fn routing_settings(config: &gatehouse_config::Config) -> gatehouse_gateway::policy::RoutingSettings {
    use gatehouse_gateway::policy::{ModelPolicy, ModelTimeouts, RoutingSettings, Strategy};
    let r = &config.routing;
    let mut s = RoutingSettings::default();
    if let Some(v) = r.max_attempts {
        s.max_attempts = v;
    }
    s.backoff_base = r.backoff_base.unwrap_or(s.backoff_base);
    s.backoff_max = r.backoff_max.unwrap_or(s.backoff_max);
    s.max_retry_after_wait = r.max_retry_after_wait.unwrap_or(s.max_retry_after_wait);
    s.key_recheck = r.key_recheck.unwrap_or(s.key_recheck);
    s.breaker.consecutive_failures = r.breaker_failures.unwrap_or(s.breaker.consecutive_failures);
    if let Some(p) = r.breaker_error_rate_percent {
        s.breaker.error_rate = f64::from(p) / 100.0;
    }
    s.breaker.min_calls = r.breaker_min_calls.unwrap_or(s.breaker.min_calls);
    s.breaker.window = r.breaker_window.unwrap_or(s.breaker.window);
    s.breaker.cool_down = r.breaker_cool_down.unwrap_or(s.breaker.cool_down);
    for m in &r.models {
        let policy = ModelPolicy {
            // Validated by the config loader; an unknown name cannot reach here.
            strategy: m.strategy.as_deref().and_then(Strategy::parse).unwrap_or_default(),
            fallbacks: m.fallbacks.clone(),
            timeouts: ModelTimeouts {
                connect: m.connect_timeout,
                first_byte: m.first_byte_timeout,
                ttft: m.ttft_timeout,
                idle: m.idle_timeout,
                total: m.total_timeout,
            },
        };
        s.models.insert(m.name.clone(), policy);
    }
    s
}
