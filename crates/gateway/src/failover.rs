//! Load balancing and failover (issue 6): the order one request tries the deployments of its
//! model ([`RoutePlane::plan`]) and the walk over them ([`walk`]).
//!
//! Order: the model's deployments grouped by `priority` ascending; within a group weighted
//! random without replacement ([`Strategy::Weighted`]) or fewest calls in flight first
//! ([`Strategy::LeastInFlight`]); then the deployments of each fallback model, ordered the same
//! way by that model's own strategy.
//!
//! Walk: for each deployment whose breaker admits a call and that is not waiting out a
//! `Retry-After`, each usable key of its provider's pool in priority order; at most
//! `max_attempts` upstream calls in all, with full-jitter exponential backoff before every
//! attempt after the first. What happens on an error:
//!
//! | error                                           | effect                                  |
//! |-------------------------------------------------|-----------------------------------------|
//! | connect error, timeout, 408, 5xx, 529, malformed | breaker failure; next deployment        |
//! | 429 (rate limit)                                 | skip the deployment for `Retry-After`; next deployment |
//! | 401/403                                          | key marked `invalid`; next key          |
//! | 402, 429 `insufficient_quota`                    | key marked `quota_exceeded`; next key   |
//! | request not translatable / unsupported           | next deployment (another kind may take it) |
//! | other 4xx (the client's fault)                   | answered at once, no retry              |
//!
//! When nothing could be tried because every deployment waits out a `Retry-After` of at most
//! `max_retry_after_wait`, the request waits for the earliest one and walks again (once).
//! Streams: an attempt succeeds only when its first chunk arrived, and that chunk is held back
//! until then, so a failover never follows a byte sent to the client; afterwards the stream is
//! never retried (a mid-stream failure ends it with an in-band error event).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gatehouse_providers::{ChatStream, StreamingResponse, Target, Timeouts, Upstream, UpstreamError};
use gatehouse_types::{ApiError, ErrorCode};

use crate::AppState;
use crate::calllog::CallRecorder;
use crate::health::{Admit, Attempt, Health, KeyStatus, Outcome};
use crate::policy::{ModelPolicy, ModelTimeouts, RoutingSettings, Strategy};
use crate::routing::{Candidate, Route};

/// Routing state of the data plane: policy, health registry, selection RNG and the upstream
/// clients of models with their own timeouts.
pub struct RoutePlane {
    pub(crate) settings: RoutingSettings,
    pub(crate) health: Health,
    rng: Mutex<fastrand::Rng>,
    default_upstream: Upstream,
    upstreams: HashMap<String, Upstream>,
}

/// The deployments one request may try, in order (see the module doc).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The requested model.
    pub model: String,
    pub candidates: Vec<Candidate>,
    /// The client's `anthropic-beta` flags, put on every attempt's target (only Anthropic
    /// upstreams send them; `crate::passthrough`).
    pub anthropic_beta: Option<String>,
}

impl Plan {
    /// The first candidate (used for limit estimates and the call log before the first attempt).
    pub fn primary(&self) -> Option<&Candidate> {
        self.candidates.first()
    }
}

impl RoutePlane {
    /// Builds the plane; models with `connect`/`first_byte`/`idle`/`total` timeouts get their
    /// own upstream client (the others share `upstream`).
    pub fn new(settings: RoutingSettings, upstream: Upstream) -> Self {
        let base = upstream.timeouts();
        let mut upstreams = HashMap::new();
        for (name, policy) in &settings.models {
            let t = policy.timeouts;
            if t.connect.is_none() && t.first_byte.is_none() && t.idle.is_none() && t.total.is_none() {
                continue;
            }
            let timeouts = Timeouts {
                connect: t.connect.unwrap_or(base.connect),
                first_byte: t.first_byte.unwrap_or(base.first_byte),
                idle: t.idle.unwrap_or(base.idle),
                total: t.total.unwrap_or(base.total),
            };
            match Upstream::new(timeouts) {
                Ok(u) => {
                    upstreams.insert(name.clone(), u);
                }
                Err(e) => tracing::error!(model = %name, error = %e, "cannot build the model's upstream client; using the default timeouts"),
            }
        }
        let rng = match settings.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let health = Health::new(settings.breaker, settings.key_recheck);
        Self { settings, health, rng: Mutex::new(rng), default_upstream: upstream, upstreams }
    }

    /// The health registry.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn upstream_for(&self, model: &str) -> Upstream {
        self.upstreams.get(model).unwrap_or(&self.default_upstream).clone()
    }

    /// Orders `route`'s candidates for one request by `strategy` (see the module doc).
    pub fn order(&self, mut candidates: Vec<Candidate>, strategy: Strategy) -> Vec<Candidate> {
        candidates.sort_by_key(|c| c.priority);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(candidates.len());
        let mut rest = candidates.as_slice();
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|c| c.priority == first.priority).count();
            let (group, tail) = rest.split_at(n);
            let mut shuffled = weighted_shuffle(group, &mut rng);
            if strategy == Strategy::LeastInFlight {
                // Stable: equal loads keep their weighted order.
                shuffled.sort_by_key(|c| self.health.deployment(&c.deployment).in_flight());
            }
            out.extend(shuffled);
            rest = tail;
        }
        out
    }

    /// The plan for `model` resolved as `route`: its candidates in order, then each fallback
    /// model's (resolved with `resolve`; unknown fallbacks are skipped with a warning).
    pub async fn plan<F, Fut>(&self, model: &str, route: Route, resolve: F) -> Plan
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Route, ApiError>>,
    {
        let policy = self.settings.model(model);
        let mut candidates = self.order(route.candidates, policy.strategy);
        for fallback in policy.fallbacks.iter().filter(|f| f.as_str() != model) {
            match resolve(fallback.clone()).await {
                Ok(r) => {
                    let strategy = self.settings.model(fallback).strategy;
                    candidates.extend(self.order(r.candidates, strategy));
                }
                Err(_) => tracing::warn!(model, fallback = %fallback, "fallback model does not exist; skipped"),
            }
        }
        Plan { model: model.to_string(), candidates, anthropic_beta: None }
    }

    fn policy(&self, model: &str) -> ModelPolicy {
        self.settings.model(model)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.settings.backoff_ceiling(attempt);
        if ceiling.is_zero() {
            return ceiling;
        }
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let pick = self.rng.lock().unwrap_or_else(|p| p.into_inner()).u64(0..=ms);
        Duration::from_millis(pick)
    }
}

/// Weighted random order without replacement; weight-0 entries last, in their given order.
fn weighted_shuffle(group: &[Candidate], rng: &mut fastrand::Rng) -> Vec<Candidate> {
    let mut pool: Vec<&Candidate> = group.iter().filter(|c| c.weight > 0).collect();
    let mut out = Vec::with_capacity(group.len());
    while !pool.is_empty() {
        let total: u64 = pool.iter().map(|c| u64::from(c.weight)).sum();
        let mut pick = rng.u64(0..total);
        let mut idx = 0;
        for (i, c) in pool.iter().enumerate() {
            let w = u64::from(c.weight);
            if pick < w {
                idx = i;
                break;
            }
            pick -= w;
        }
        out.push(pool.remove(idx).clone());
    }
    out.extend(group.iter().filter(|c| c.weight == 0).cloned());
    out
}

/// How an upstream error steers the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The client's fault: answer it, no retry.
    Fatal,
    /// The key is at fault: mark it, try the next key.
    Key(KeyKind),
    /// Rate limited: skip the deployment for this long.
    RateLimited(Option<Duration>),
    /// The deployment failed (breaker); skip it for `Retry-After` if given.
    Failure(&'static str, Option<Duration>),
    /// This deployment cannot serve the request; another may.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Invalid,
    Quota,
}

fn classify(e: &UpstreamError) -> Class {
    match e {
        UpstreamError::Connect(_) => Class::Failure("upstream_error", None),
        UpstreamError::Timeout(_) => Class::Failure("upstream_timeout", None),
        UpstreamError::Status { status, retry_after, provider_code, .. } => {
            let wait = retry_after.map(Duration::from_secs);
            match *status {
                401 | 403 => Class::Key(KeyKind::Invalid),
                402 => Class::Key(KeyKind::Quota),
                429 if provider_code.as_deref() == Some("insufficient_quota") => Class::Key(KeyKind::Quota),
                429 => Class::RateLimited(wait),
                408 => Class::Failure("upstream_timeout", None),
                503 | 529 => Class::Failure("overloaded", wait),
                500..=599 => Class::Failure("upstream_error", wait),
                _ => Class::Fatal,
            }
        }
        UpstreamError::MidStream { .. } | UpstreamError::Protocol(_) | UpstreamError::EarlyClose => {
            Class::Failure("upstream_error", None)
        }
        UpstreamError::Unsupported(_) | UpstreamError::InvalidRequest { .. } | UpstreamError::Config(_) => Class::Skip,
    }
}

/// A successful attempt: its result and the attempt guard (keep it while the answer streams,
/// so the deployment counts the call as in flight).
pub(crate) struct Served<T> {
    pub value: T,
    pub attempt: Attempt,
}

/// Walks `plan` calling `op(upstream, target, timeouts)` (see the module doc). Records in
/// `rec` the provider, upstream model, deployment and number of attempts of the last attempt.
///
/// Errors: the last attempt's error as the client sees it ([`UpstreamError::to_api_error`]);
/// 503 `overloaded` with `Retry-After` when no deployment could be tried (breakers open or
/// `Retry-After` pending); 500 when a key cannot be decrypted and nothing else served.
pub(crate) async fn walk<T, F, Fut>(state: &AppState, rec: &CallRecorder, plan: &Plan, mut op: F) -> Result<Served<T>, ApiError>
where
    F: FnMut(Upstream, Target, ModelTimeouts) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let plane = &state.plane;
    let max = plane.settings.max_attempts.max(1);
    let mut attempts = 0u32;
    let mut last: Option<ApiError> = None;
    for round in 0..2 {
        let mut earliest: Option<Instant> = None;
        let mut note = |until: Option<Instant>| {
            if let Some(u) = until {
                earliest = Some(earliest.map_or(u, |e| e.min(u)));
            }
        };
        'candidates: for cand in &plan.candidates {
            let now = Instant::now();
            let keys: Vec<_> = if cand.provider.credentials.is_empty() {
                vec![None]
            } else {
                cand.provider.credentials.iter().filter(|k| plane.health.key_usable(k.id, now)).map(Some).collect()
            };
            if keys.is_empty() && last.is_none() {
                last = Some(ApiError::new(ErrorCode::UpstreamAuth, "the upstream provider rejected the gateway's credentials; the operator has been told"));
            }
            for key in keys {
                if attempts >= max {
                    break 'candidates;
                }
                let probe = match plane.health.admit(&cand.deployment, Instant::now()) {
                    Admit::Yes => false,
                    Admit::Probe => true,
                    Admit::No { until } => {
                        note(until);
                        continue 'candidates;
                    }
                };
                let mut attempt = plane.health.start(&cand.deployment, probe);
                let pause = plane.backoff(attempts + 1);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                attempts += 1;
                rec.update(|d| {
                    d.provider = Some(cand.provider.name.clone());
                    d.upstream_model = Some(cand.upstream_model.clone());
                    d.deployment = Some(cand.deployment.clone());
                    d.attempts = attempts;
                });
                let target = match state.routing.target_with(cand, key) {
                    Ok(t) => Target { anthropic_beta: plan.anthropic_beta.clone(), ..t },
                    Err(e) => {
                        attempt.finish(Outcome::Neutral);
                        last = Some(e);
                        continue;
                    }
                };
                let timeouts = plane.policy(&cand.model).timeouts;
                let started = Instant::now();
                let result = op(plane.upstream_for(&cand.model), target, timeouts).await;
                let latency = started.elapsed();
                let e = match result {
                    Ok(value) => {
                        attempt.finish(Outcome::Success);
                        crate::metrics::attempt(&cand.provider.name, &cand.model, "success", latency);
                        return Ok(Served { value, attempt });
                    }
                    Err(e) => e,
                };
                let class = classify(&e);
                crate::metrics::attempt(&cand.provider.name, &cand.model, e.log_code(), latency);
                tracing::warn!(
                    deployment = %cand.deployment, provider = %cand.provider.name, attempt = attempts,
                    code = e.log_code(), error = %e, "upstream attempt failed"
                );
                let api = e.to_api_error();
                match class {
                    Class::Fatal => {
                        attempt.finish(Outcome::Neutral);
                        return Err(api);
                    }
                    Class::Key(kind) => {
                        attempt.finish(Outcome::Neutral);
                        if let Some(k) = key {
                            let status = match kind {
                                KeyKind::Invalid => KeyStatus::Invalid,
                                KeyKind::Quota => KeyStatus::QuotaExceeded,
                            };
                            tracing::warn!(provider = %cand.provider.name, credential_id = %k.id, hint = %k.hint, status = status.as_str(), "provider key marked; skipped until restored or re-checked");
                            plane.health.mark_key(k.id, status, Instant::now());
                        }
                        last = Some(api);
                    }
                    Class::RateLimited(wait) => {
                        attempt.finish(Outcome::RetryAfter(wait.or(Some(Duration::from_secs(1)))));
                        note(wait.map(|w| Instant::now() + w));
                        last = Some(api);
                        continue 'candidates;
                    }
                    Class::Failure(code, wait) => {
                        attempt.finish(Outcome::Failure(code));
                        if let Some(w) = wait {
                            plane.health.skip(&cand.deployment, w);
                            note(Some(Instant::now() + w));
                        }
                        last = Some(api);
                        continue 'candidates;
                    }
                    Class::Skip => {
                        attempt.finish(Outcome::Neutral);
                        last = Some(api);
                        continue 'candidates;
                    }
                }
            }
        }
        // Nothing served. Wait out a short Retry-After once if attempts are left.
        let wait = earliest.map(|e| e.saturating_duration_since(Instant::now()));
        let may_wait = round == 0
            && attempts < max
            && wait.is_some_and(|w| !plane.settings.max_retry_after_wait.is_zero() && w <= plane.settings.max_retry_after_wait);
        if let (true, Some(w)) = (may_wait, wait) {
            tokio::time::sleep(w).await;
            continue;
        }
        if let Some(e) = last {
            return Err(e);
        }
        let secs = wait.map(|w| w.as_secs_f64().ceil() as u64).filter(|s| *s > 0);
        let shown: String = plan.model.chars().take(200).collect();
        return Err(ApiError::new(
            ErrorCode::UpstreamOverloaded,
            format!("no deployment of the model `{shown}` is available right now (circuit open or rate limited); retry later"),
        )
        .with_retry_after(secs.or(Some(1))));
    }
    Err(last.unwrap_or_else(ApiError::internal))
}

/// Streamed chat over `plan` with failover until the first chunk (see the module doc). The
/// returned stream holds the attempt (in flight) and ends with `Err(Timeout("total"))` if the
/// model's total timeout passes mid-stream.
pub(crate) async fn chat_stream(
    state: &AppState,
    rec: &CallRecorder,
    plan: &Plan,
    body: &serde_json::Map<String, serde_json::Value>,
    include_usage: bool,
    adjust: &(dyn Fn(&mut serde_json::Map<String, serde_json::Value>, &Target) + Sync),
) -> Result<StreamingResponse, ApiError> {
    let served = walk(state, rec, plan, |up, target, timeouts| {
        let mut body = body.clone();
        adjust(&mut body, &target);
        async move {
            let started = tokio::time::Instant::now();
            // Headers and the first chunk, bounded by the time-to-first-token timeout.
            let head = async {
                let resp = up.chat_stream(&target, body, include_usage).await?;
                let mut stream = resp.stream;
                let first = stream.next().await;
                Ok::<_, UpstreamError>((resp.upstream_request_id, stream, first))
            };
            let (upstream_request_id, stream, first) = match timeouts.ttft {
                Some(limit) => tokio::time::timeout_at(started + limit, head)
                    .await
                    .map_err(|_| UpstreamError::Timeout("time to first token"))??,
                None => head.await?,
            };
            let first = match first {
                None => return Err(UpstreamError::EarlyClose),
                Some(Err(e)) => return Err(e),
                Some(Ok(ev)) => ev,
            };
            let stream: ChatStream = Box::pin(futures::stream::iter([Ok(first)]).chain(stream));
            let deadline = timeouts.total.map(|t| started + t);
            Ok(StreamingResponse { stream: with_deadline(stream, deadline), upstream_request_id })
        }
    })
    .await?;
    let Served { value, attempt } = served;
    Ok(StreamingResponse { stream: holding(value.stream, attempt), upstream_request_id: value.upstream_request_id })
}

/// Non-streamed chat over `plan` with failover.
pub(crate) async fn chat(
    state: &AppState,
    rec: &CallRecorder,
    plan: &Plan,
    body: &serde_json::Map<String, serde_json::Value>,
    adjust: &(dyn Fn(&mut serde_json::Map<String, serde_json::Value>, &Target) + Sync),
) -> Result<gatehouse_providers::ChatResponse, ApiError> {
    let served = walk(state, rec, plan, |up, target, _| {
        let mut body = body.clone();
        adjust(&mut body, &target);
        async move { up.chat(&target, body).await }
    })
    .await?;
    Ok(served.value)
}

/// Embeddings over `plan` with failover.
pub(crate) async fn embeddings(
    state: &AppState,
    rec: &CallRecorder,
    plan: &Plan,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<gatehouse_providers::ChatResponse, ApiError> {
    let served = walk(state, rec, plan, |up, target, _| {
        let body = body.clone();
        async move { up.embeddings(&target, body).await }
    })
    .await?;
    Ok(served.value)
}

/// Ends `inner` with `Err(Timeout("total"))` once `deadline` passes.
fn with_deadline(inner: ChatStream, deadline: Option<tokio::time::Instant>) -> ChatStream {
    let Some(deadline) = deadline else { return inner };
    Box::pin(async_stream::stream! {
        let mut inner = inner;
        loop {
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Err(_) => {
                    yield Err(UpstreamError::Timeout("total"));
                    break;
                }
                Ok(None) => break,
                Ok(Some(item)) => {
                    let end = item.is_err();
                    yield item;
                    if end {
                        break;
                    }
                }
            }
        }
    })
}

/// Keeps `attempt` alive (in flight) until the stream ends or is dropped.
fn holding(inner: ChatStream, attempt: Attempt) -> ChatStream {
    Box::pin(inner.map(move |item| {
        let _in_flight = &attempt;
        item
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn candidate(name: &str, weight: u32, priority: i32) -> Candidate {
        let provider = std::sync::Arc::new(crate::routing::ProviderEntry {
            id: gatehouse_types::new_id(),
            name: "p".into(),
            kind: gatehouse_providers::ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:1".into(),
            credentials: vec![],
            created_at: gatehouse_types::now(),
        });
        Candidate { provider, upstream_model: name.into(), deployment: name.into(), weight, priority, model: "m".into() }
    }

    fn plane(strategy_seed: u64) -> RoutePlane {
        let settings = RoutingSettings { seed: Some(strategy_seed), ..RoutingSettings::default() };
        RoutePlane::new(settings, Upstream::new(Timeouts::default()).unwrap())
    }

    #[test]
    fn weighted_order_follows_weights_within_the_best_priority() {
        let plane = plane(42);
        let cands = vec![candidate("a", 1, 0), candidate("b", 3, 0), candidate("z", 0, 0), candidate("low", 9, 1)];
        let n = 4000;
        let mut first_b = 0;
        for _ in 0..n {
            let order = plane.order(cands.clone(), Strategy::Weighted);
            let names: Vec<&str> = order.iter().map(|c| c.upstream_model.as_str()).collect();
            assert_eq!(&names[2..], ["z", "low"], "weight 0 last in its priority, lower priority after");
            if names[0] == "b" {
                first_b += 1;
            }
        }
        // Expected 3000 of 4000 (σ ≈ 27): ±10 % is over 10 σ.
        assert!((2700..=3300).contains(&first_b), "{first_b}");
    }

    #[test]
    fn least_in_flight_prefers_the_idle_deployment() {
        let plane = plane(1);
        let cands = vec![candidate("busy", 100, 0), candidate("idle", 1, 0)];
        let _a = plane.health.start("busy", false);
        let _b = plane.health.start("busy", false);
        for _ in 0..50 {
            let order = plane.order(cands.clone(), Strategy::LeastInFlight);
            assert_eq!(order[0].upstream_model, "idle");
        }
    }

    #[test]
    fn classification() {
        let status = |s: u16, code: Option<&str>| UpstreamError::Status {
            status: s,
            retry_after: Some(2),
            provider_code: code.map(str::to_string),
            message: None,
        };
        assert_eq!(classify(&status(401, None)), Class::Key(KeyKind::Invalid));
        assert_eq!(classify(&status(403, None)), Class::Key(KeyKind::Invalid));
        assert_eq!(classify(&status(402, None)), Class::Key(KeyKind::Quota));
        assert_eq!(classify(&status(429, Some("insufficient_quota"))), Class::Key(KeyKind::Quota));
        assert_eq!(classify(&status(429, Some("rate_limit_exceeded"))), Class::RateLimited(Some(Duration::from_secs(2))));
        assert_eq!(classify(&status(500, None)), Class::Failure("upstream_error", Some(Duration::from_secs(2))));
        assert_eq!(classify(&status(400, None)), Class::Fatal);
        assert_eq!(classify(&status(404, None)), Class::Fatal);
        assert_eq!(classify(&UpstreamError::Timeout("idle")), Class::Failure("upstream_timeout", None));
        assert_eq!(classify(&UpstreamError::Unsupported("embeddings")), Class::Skip);
    }
}
