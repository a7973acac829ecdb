//! Prometheus metrics of the data plane (issue 6), through the `metrics` facade: the server
//! installs a `metrics-exporter-prometheus` recorder and serves `GET /metrics` on the admin
//! listener; without a recorder (tests, library use) every call here is a no-op.
//!
//! Labels are low-cardinality and never carry a secret or client input verbatim: `provider`
//! (configured provider name), `model` (configured public model name or `provider/model` of a
//! configured provider), `outcome` (`success` or an `ErrorCode` label), `state`.
//!
//! | name | type | labels | meaning |
//! |------|------|--------|---------|
//! | `gatehouse_upstream_attempts_total` | counter | provider, model, outcome | upstream calls, failover attempts included |
//! | `gatehouse_upstream_attempt_duration_seconds` | histogram | provider, model | time to response headers / first chunk of an attempt |
//! | `gatehouse_deployment_circuit_state` | gauge | provider, model, deployment | 0 closed, 1 half-open, 2 open (refreshed on scrape) |
//! | `gatehouse_deployment_in_flight` | gauge | provider, model, deployment | calls in flight on this node (refreshed on scrape) |
//! | `gatehouse_provider_key_status` | gauge | provider, credential_id, status | 1 for the key's current status (refreshed on scrape) |

use std::time::Duration;

/// Counts one upstream attempt and its latency.
pub(crate) fn attempt(provider: &str, model: &str, outcome: &'static str, latency: Duration) {
    metrics::counter!(
        "gatehouse_upstream_attempts_total",
        "provider" => provider.to_string(),
        "model" => model.to_string(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "gatehouse_upstream_attempt_duration_seconds",
        "provider" => provider.to_string(),
        "model" => model.to_string()
    )
    .record(latency.as_secs_f64());
}
