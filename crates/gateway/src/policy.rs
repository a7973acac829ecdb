//! Routing policy (issue 6): how a request walks the deployments of its model — attempts,
//! backoff, `Retry-After`, circuit breaker, key re-checks — and the per-model options
//! (selection strategy, fallback chain, timeouts).
//!
//! Defaults are chosen so that a single-deployment model behaves as before (one attempt per
//! deployment, no waiting) while a multi-deployment model fails over within a few hundred
//! milliseconds.

use std::collections::HashMap;
use std::time::Duration;

/// How the next deployment is picked among the healthy deployments of the best priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Weighted random: a deployment of weight `w` is picked first with probability
    /// `w / Σw` among its priority group (default). Weight 0 = only when the others failed.
    #[default]
    Weighted,
    /// The deployment with the fewest calls in flight on this node first (ties: weighted
    /// random). Suits upstreams with a concurrency limit (self-hosted vLLM, Ollama).
    LeastInFlight,
}

impl Strategy {
    /// Parses `weighted` / `least_in_flight` (the configuration spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "weighted" => Some(Self::Weighted),
            "least_in_flight" => Some(Self::LeastInFlight),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weighted => "weighted",
            Self::LeastInFlight => "least_in_flight",
        }
    }
}

/// Per-model timeouts; `None` = the upstream client's default (`[upstream]` settings).
/// Each one that fires answers 504 `upstream_timeout` naming it (`connect`, `first byte`,
/// `time to first token`, `idle`, `total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimeouts {
    /// TCP + TLS connect.
    pub connect: Option<Duration>,
    /// Sending the request → the response headers.
    pub first_byte: Option<Duration>,
    /// Request start → the first streamed chunk (streams only; failover is still possible
    /// when it fires, nothing has been sent to the client yet).
    pub ttft: Option<Duration>,
    /// Longest gap between two streamed chunks (mid-stream: the stream ends with an error event).
    pub idle: Option<Duration>,
    /// The whole call, streamed or not (mid-stream: the stream ends with an error event).
    pub total: Option<Duration>,
}

impl ModelTimeouts {
    /// Whether any timeout is set.
    pub fn any(&self) -> bool {
        self.connect.is_some() || self.first_byte.is_some() || self.ttft.is_some() || self.idle.is_some() || self.total.is_some()
    }
}

/// Options of one public model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPolicy {
    pub strategy: Strategy,
    /// Public models tried, in order, after every deployment of this model failed (e.g.
    /// `gpt-4o` → `["claude-sonnet-4-5"]`). Their own fallbacks are not followed (no cycles).
    pub fallbacks: Vec<String>,
    pub timeouts: ModelTimeouts,
}

/// Circuit breaker of one deployment: opens after `consecutive_failures` failures in a row, or
/// when at least `min_calls` calls within `window` failed at a rate ≥ `error_rate`; stays open
/// for `cool_down`, then lets one probe through (half-open): success closes it, failure opens
/// it again. Failures are connect errors, timeouts, 5xx/529 and malformed answers; 429, client
/// errors and key errors are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub consecutive_failures: u32,
    /// 0.0..=1.0.
    pub error_rate: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { consecutive_failures: 5, error_rate: 0.5, min_calls: 20, window: Duration::from_secs(60), cool_down: Duration::from_secs(30) }
    }
}

/// The routing policy of the data plane.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// Upper bound of upstream calls for one request, over all deployments, keys and fallback
    /// models (≥ 1; default 3).
    pub max_attempts: u32,
    /// Backoff before attempt `n ≥ 2`: uniformly random in `0..=min(backoff_max, backoff_base ·
    /// 2^(n−2))` ("full jitter"). Defaults 25 ms and 1 s.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A deployment that answered `Retry-After: s` is skipped for `s` seconds; when no other
    /// deployment is left and the wait is at most this long, the request waits instead
    /// (default 2 s; 0 = never wait).
    pub max_retry_after_wait: Duration,
    pub breaker: BreakerSettings,
    /// A provider key marked invalid or out of quota is tried again after this long (default
    /// 10 min); an operator can restore it at once through the admin API.
    pub key_recheck: Duration,
    /// Per-model options by public model name.
    pub models: HashMap<String, ModelPolicy>,
    /// Seed of the selection RNG (tests); `None` = random.
    pub seed: Option<u64>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            max_retry_after_wait: Duration::from_secs(2),
            breaker: BreakerSettings::default(),
            key_recheck: Duration::from_secs(600),
            models: HashMap::new(),
            seed: None,
        }
    }
}

impl RoutingSettings {
    /// The options of `model` (defaults when it has none).
    pub fn model(&self, model: &str) -> ModelPolicy {
        self.models.get(model).cloned().unwrap_or_default()
    }

    /// The full-jitter backoff ceiling before attempt `attempt` (1-based; 0 for the first).
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempt.saturating_sub(2).min(20)).unwrap_or(u32::MAX);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = RoutingSettings::default();
        assert_eq!(s.backoff_ceiling(1), Duration::ZERO);
        assert_eq!(s.backoff_ceiling(2), Duration::from_millis(25));
        assert_eq!(s.backoff_ceiling(3), Duration::from_millis(50));
        assert_eq!(s.backoff_ceiling(40), Duration::from_secs(1));
    }

    #[test]
    fn strategy_names() {
        assert_eq!(Strategy::parse("least_in_flight"), Some(Strategy::LeastInFlight));
        assert_eq!(Strategy::parse("weighted").map(Strategy::as_str), Some("weighted"));
        assert_eq!(Strategy::parse("random"), None);
    }
}
