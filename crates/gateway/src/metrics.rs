//! Prometheus metrics of the data plane (issue 6), through the `metrics` facade: the server
//! installs a `metrics-exporter-prometheus` recorder and serves `GET /metrics` on the admin
//! listener; without a recorder (tests, library use) every call here is a no-op.
//!
//! Labels are low-cardinality and never carry a secret or client input verbatim: `provider`
//! (configured provider name), `endpoint` (route template), `status` (HTTP status), `deployment` and
//! `credential_id` (ids of configured deployments and keys), `model` (configured public model name or `provider/model` of a
//! configured provider), `outcome` (`success` or an `ErrorCode` label), `state`.
//!
//! | name | type | labels | meaning |
//! |------|------|--------|---------|
//! | `gatehouse_upstream_attempts_total` | counter | provider, model, outcome | upstream calls, failover attempts included |
//! | `gatehouse_upstream_attempt_duration_seconds` | histogram | provider, model | time to response headers / first chunk of an attempt |
//! | `gatehouse_requests_total` | counter | endpoint, status | finished requests (status answered; 499 = client gone) |
//! | `gatehouse_request_duration_seconds` | histogram | endpoint | request latency |
//! | `gatehouse_time_to_first_token_seconds` | histogram | endpoint | streams: first chunk sent |
//! | `gatehouse_overhead_seconds` | histogram | endpoint | non-streamed: latency minus the upstream call |
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

/// Counts one finished data-plane request: `gatehouse_requests_total{endpoint, status}`,
/// `gatehouse_request_duration_seconds{endpoint}`, `gatehouse_time_to_first_token_seconds{endpoint}`
/// (streams) and `gatehouse_overhead_seconds{endpoint}` (non-streamed calls: total latency minus
/// the upstream call, i.e. what the gateway adds). `endpoint` is the route template
/// (`POST /v1/chat/completions`, `POST *` for unknown paths).
pub(crate) fn request(endpoint: &str, status: u16, stream: bool, latency_ms: u64, ttft_ms: Option<u64>, upstream_ms: Option<u64>) {
    let endpoint = endpoint.to_string();
    metrics::counter!("gatehouse_requests_total", "endpoint" => endpoint.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("gatehouse_request_duration_seconds", "endpoint" => endpoint.clone()).record(ms(latency_ms));
    if let Some(t) = ttft_ms {
        metrics::histogram!("gatehouse_time_to_first_token_seconds", "endpoint" => endpoint.clone()).record(ms(t));
    }
    if let (false, Some(up)) = (stream, upstream_ms) {
        metrics::histogram!("gatehouse_overhead_seconds", "endpoint" => endpoint).record(ms(latency_ms.saturating_sub(up)));
    }
}

fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

/// Refreshes the deployment and key gauges from the health registry (before each scrape).
pub(crate) async fn export(state: &crate::AppState) {
    let now = std::time::Instant::now();
    let health = state.plane.health();
    let (models, providers) = state.routing.inventory().await;
    for c in &models {
        let v = health.view(&c.deployment, now);
        let state_value = match v.state {
            "closed" => 0.0,
            "half_open" => 1.0,
            _ => 2.0,
        };
        let labels = [("provider", c.provider.name.clone()), ("model", c.model.to_string()), ("deployment", c.deployment.clone())];
        metrics::gauge!("gatehouse_deployment_circuit_state", &labels).set(state_value);
        metrics::gauge!("gatehouse_deployment_in_flight", &labels).set(v.in_flight as f64);
    }
    for p in &providers {
        for k in &p.credentials {
            let (status, _) = health.key_status(k.id, now);
            for s in ["active", "invalid", "quota_exceeded"] {
                let labels = [("provider", p.name.clone()), ("credential_id", k.id.to_string()), ("status", s.to_string())];
                metrics::gauge!("gatehouse_provider_key_status", &labels).set(if status.as_str() == s { 1.0 } else { 0.0 });
            }
        }
    }
}
