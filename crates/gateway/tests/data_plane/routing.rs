//! Load balancing and failover (issue 6) over HTTP: several deployments of one public model on
//! mock upstreams that fail in scripted ways (scenario in the upstream model name).

use std::collections::HashMap;
use std::time::Duration;

use gatehouse_auth::Aad;
use gatehouse_gateway::GatewaySettings;
use gatehouse_gateway::policy::{BreakerSettings, ModelPolicy, ModelTimeouts, RoutingSettings};
use gatehouse_store::*;
use gatehouse_testkit::MockProvider;
use gatehouse_types::{Id, new_id, now};
use serde_json::{Value, json};

use crate::harness::{Harness, Options, PROVIDER_KEY, sse_data, stream_content};

async fn health_call(h: &Harness, method: &str, path: &str) -> (u16, Value) {
    use tower::ServiceExt;
    let req = http::Request::builder().method(method).uri(path).body(axum::body::Body::empty()).unwrap();
    let resp = h.health_routes().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A provider of `kind` at `base` with a key pool of `(key, priority)`.
async fn provider(h: &Harness, name: &str, base: &str, keys: &[(&str, i32)]) -> Id {
    let p = Provider { id: new_id(), name: name.into(), kind: "openai".into(), base_url: base.into(), settings: json!({}), created_at: now() };
    let stored = h.store.upsert_provider(&p).await.unwrap();
    for (key, priority) in keys {
        let id = new_id();
        let aad = Aad { tenant_id: h.team_id, credential_id: id, provider: name.into() };
        let sealed = gatehouse_auth::seal(&*h.key_provider, &aad, key.as_bytes()).unwrap();
        let record = ProviderCredential {
            id,
            provider_id: stored.id,
            team_id: h.team_id,
            hint: gatehouse_auth::secret_hint(key),
            format_version: sealed.format_version,
            kek_id: sealed.kek_id,
            wrapped_dek: sealed.wrapped_dek,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            priority: *priority,
            revoked_at: None,
            created_at: now(),
        };
        h.store.create_provider_credential(&record).await.unwrap();
    }
    stored.id
}

/// Public model `name` with deployments `(provider, upstream model, weight, priority)`; returns
/// the deployment ids in the given order and tells the gateway to reload.
async fn model(h: &Harness, name: &str, deployments: &[(Id, &str, i32, i32)]) -> Vec<Id> {
    let deployments: Vec<Deployment> = deployments
        .iter()
        .map(|(p, up, w, prio)| Deployment { id: new_id(), provider_id: *p, upstream_model: (*up).into(), weight: *w, priority: *prio })
        .collect();
    let ids = deployments.iter().map(|d| d.id).collect();
    let m = Model { id: new_id(), name: name.into(), deployments, created_at: now() };
    h.store.upsert_model(&m).await.unwrap();
    h.bus.publish(BusEvent::RoutingChanged);
    ids
}

/// Requests the mock received for upstream model `upstream` (the scenario is part of the name).
fn calls_to(mock: &MockProvider, upstream: &str) -> usize {
    mock.requests().iter().filter(|r| r.body.as_ref().and_then(|b| b.get("model")).and_then(Value::as_str) == Some(upstream)).count()
}

fn settings(routing: RoutingSettings) -> Options {
    Options { settings: GatewaySettings { routing, ..GatewaySettings::default() }, ..Options::default() }
}

/// No backoff so that tests stay quick (the backoff itself is unit-tested).
fn quick() -> RoutingSettings {
    RoutingSettings { backoff_base: Duration::ZERO, seed: Some(7), ..RoutingSettings::default() }
}

async fn mock_provider(h: &Harness, name: &str) -> Id {
    provider(h, name, &h.mock.openai_base_url(), &[(PROVIDER_KEY, 0)]).await
}

#[tokio::test]
async fn failover_walks_priorities_and_logs_attempts() {
    let mut h = Harness::start_with(settings(quick())).await;
    let p = mock_provider(&h, "m1").await;
    let ids = model(&h, "fo", &[(p, "mock-gpt:status=500", 1, 0), (p, "mock-gpt:status=503", 1, 1), (p, "mock-gpt", 1, 2)]).await;
    let resp = h.chat("fo", Some(false)).await;
    assert_eq!(resp.status(), 200);
    let order: Vec<String> = h.mock.requests().iter().filter_map(|r| r.body.as_ref()?.get("model")?.as_str().map(str::to_string)).collect();
    assert_eq!(order, ["mock-gpt:status=500", "mock-gpt:status=503", "mock-gpt"]);
    // A client error is not retried.
    model(&h, "bad", &[(p, "mock-gpt:status=400", 1, 0), (p, "mock-gpt", 1, 1)]).await;
    h.mock.reset();
    assert_eq!(h.chat("bad", Some(false)).await.status(), 400);
    assert_eq!(h.mock.calls(), 1);
    let logs = h.finish().await;
    let fo = logs.iter().find(|l| l.model.as_deref() == Some("fo")).unwrap();
    assert_eq!(fo.attempts, 3);
    assert_eq!(fo.deployment, Some(ids[2].to_string()));
    assert_eq!(fo.status, 200);
    let bad = logs.iter().find(|l| l.model.as_deref() == Some("bad")).unwrap();
    assert_eq!(bad.attempts, 1);
}

#[tokio::test]
async fn attempts_are_bounded() {
    let h = Harness::start_with(settings(RoutingSettings { max_attempts: 2, ..quick() })).await;
    let p = mock_provider(&h, "m1").await;
    model(&h, "b", &[(p, "mock-gpt:status=500", 1, 0), (p, "mock-gpt:status=502", 1, 1), (p, "mock-gpt", 1, 2)]).await;
    let resp = h.chat("b", Some(false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(h.mock.calls(), 2);
}

#[tokio::test]
async fn weights_split_traffic() {
    let h = Harness::start_with(settings(quick())).await;
    let p = mock_provider(&h, "m1").await;
    model(&h, "w", &[(p, "mock-gpt:reply=a", 3, 0), (p, "mock-gpt:reply=b", 1, 0), (p, "mock-gpt:reply=never", 5, 1)]).await;
    // The mock remembers the last 256 requests.
    let n = 240;
    for _ in 0..n {
        assert_eq!(h.chat("w", Some(false)).await.status(), 200);
    }
    let a = calls_to(&h.mock, "mock-gpt:reply=a");
    let b = calls_to(&h.mock, "mock-gpt:reply=b");
    assert_eq!(a + b, n, "the lower priority is never used while the best one is healthy");
    // Expected 180 / 60; ±30 is 4.5 standard deviations (seeded RNG, but the bound would hold
    // for any seed).
    assert!((150..=210).contains(&a), "weight 3 of 4 got {a} of {n}");
}

#[tokio::test]
async fn circuit_opens_and_recovers() {
    let breaker = BreakerSettings { consecutive_failures: 2, cool_down: Duration::from_millis(300), ..BreakerSettings::default() };
    let h = Harness::start_with(settings(RoutingSettings { breaker, ..quick() })).await;
    let p = mock_provider(&h, "m1").await;
    let flaky = "mock-gpt:status=500,fail_first=3";
    model(&h, "cb", &[(p, flaky, 1, 0), (p, "mock-gpt:reply=backup", 1, 1)]).await;
    for _ in 0..2 {
        assert_eq!(h.chat("cb", Some(false)).await.status(), 200);
    }
    assert_eq!(calls_to(&h.mock, flaky), 2);
    // Open: the failing deployment is not called at all.
    for _ in 0..3 {
        assert_eq!(h.chat("cb", Some(false)).await.status(), 200);
    }
    assert_eq!(calls_to(&h.mock, flaky), 2);
    assert_eq!(calls_to(&h.mock, "mock-gpt:reply=backup"), 5);
    // After the cool-down one probe goes through; it fails (3rd scripted failure): open again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(h.chat("cb", Some(false)).await.status(), 200);
    assert_eq!(calls_to(&h.mock, flaky), 3);
    assert_eq!(h.chat("cb", Some(false)).await.status(), 200);
    assert_eq!(calls_to(&h.mock, flaky), 3);
    // Next probe succeeds: closed, and the primary serves again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..3 {
        assert_eq!(h.chat("cb", Some(false)).await.status(), 200);
    }
    assert_eq!(calls_to(&h.mock, flaky), 6);
    assert_eq!(calls_to(&h.mock, "mock-gpt:reply=backup"), 7);
}

#[tokio::test]
async fn circuit_open_everywhere_answers_503_with_retry_after() {
    let breaker = BreakerSettings { consecutive_failures: 1, cool_down: Duration::from_secs(60), ..BreakerSettings::default() };
    let h = Harness::start_with(settings(RoutingSettings { breaker, ..quick() })).await;
    let p = mock_provider(&h, "m1").await;
    model(&h, "down", &[(p, "mock-gpt:status=500", 1, 0)]).await;
    assert_eq!(h.chat("down", Some(false)).await.status(), 502);
    let resp = h.chat("down", Some(false)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no deployment"), "{body}");
    assert_eq!(h.mock.calls(), 1);
}

#[tokio::test]
async fn invalid_key_is_marked_and_skipped() {
    let h = Harness::start_with(settings(quick())).await;
    let canary = "sk-canary-invalid-key-DO-NOT-LEAK-0001";
    let p = provider(&h, "pool", &h.mock.openai_base_url(), &[(canary, 0), (PROVIDER_KEY, 1)]).await;
    model(&h, "kp", &[(p, "mock-gpt", 1, 0)]).await;
    let resp = h.chat("kp", Some(false)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(canary));
    assert_eq!(h.mock.calls(), 2, "rejected key, then the next key of the pool");
    for _ in 0..3 {
        assert_eq!(h.chat("kp", Some(false)).await.status(), 200);
    }
    let with_canary = h
        .mock
        .requests()
        .iter()
        .filter(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(canary)))
        .count();
    assert_eq!(with_canary, 1, "the invalid key is not tried again");
}

#[tokio::test]
async fn only_invalid_keys_answer_upstream_auth_error() {
    let h = Harness::start_with(settings(quick())).await;
    let p = provider(&h, "bad", &h.mock.openai_base_url(), &[("sk-wrong-1", 0), ("sk-wrong-2", 1)]).await;
    model(&h, "nokey", &[(p, "mock-gpt", 1, 0)]).await;
    let resp = h.chat("nokey", Some(false)).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_error");
    assert!(!body.to_string().contains("sk-wrong"));
    // Both keys are marked now: nothing is sent upstream.
    assert_eq!(h.chat("nokey", Some(false)).await.status(), 502);
    assert_eq!(h.mock.calls(), 2);
}

#[tokio::test]
async fn retry_after_skips_the_deployment() {
    let h = Harness::start_with(settings(quick())).await;
    let p = mock_provider(&h, "m1").await;
    let limited = "mock-gpt:rate-limit,retry_after=30";
    model(&h, "ra", &[(p, limited, 1, 0), (p, "mock-gpt:reply=other", 1, 1)]).await;
    for _ in 0..3 {
        assert_eq!(h.chat("ra", Some(false)).await.status(), 200);
    }
    assert_eq!(calls_to(&h.mock, limited), 1, "skipped while Retry-After runs");
    assert_eq!(calls_to(&h.mock, "mock-gpt:reply=other"), 3);
}

#[tokio::test]
async fn short_retry_after_on_the_only_deployment_is_waited_out() {
    let h = Harness::start_with(settings(quick())).await;
    let p = mock_provider(&h, "m1").await;
    let once = "mock-gpt:rate-limit,retry_after=1,fail_first=1";
    model(&h, "ra1", &[(p, once, 1, 0)]).await;
    assert_eq!(h.chat("ra1", Some(false)).await.status(), 200);
    assert_eq!(h.mock.calls(), 2);
    // A long one is answered at once with the upstream's Retry-After.
    model(&h, "ra2", &[(p, "mock-gpt:rate-limit,retry_after=60", 1, 0)]).await;
    let resp = h.chat("ra2", Some(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "60");
}

#[tokio::test]
async fn streams_fail_over_before_the_first_chunk_only() {
    let mut h = Harness::start_with(settings(quick())).await;
    let p = mock_provider(&h, "m1").await;
    model(&h, "s1", &[(p, "mock-gpt:status=500", 1, 0), (p, "mock-gpt", 1, 1)]).await;
    let resp = h.chat("s1", Some(true)).await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(&resp.text().await.unwrap());
    assert_eq!(stream_content(&events), "echo: hello there");
    assert_eq!(h.mock.calls(), 2);

    h.mock.reset();
    model(&h, "s2", &[(p, "mock-gpt:error-mid-stream", 1, 0), (p, "mock-gpt", 1, 1)]).await;
    let resp = h.chat("s2", Some(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"error\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(h.mock.calls(), 1, "no retry once a byte went to the client");
    let logs = h.finish().await;
    let s1 = logs.iter().find(|l| l.model.as_deref() == Some("s1")).unwrap();
    assert_eq!((s1.status, s1.attempts), (200, 2));
    let s2 = logs.iter().find(|l| l.model.as_deref() == Some("s2")).unwrap();
    assert_eq!(s2.attempts, 1);
    assert_ne!(s2.status, 200);
}

#[tokio::test]
async fn fallback_chain_to_another_model() {
    let mut routing = quick();
    routing.models = HashMap::from([("primary".to_string(), ModelPolicy { fallbacks: vec!["nope".into(), "demo".into()], ..ModelPolicy::default() })]);
    let mut h = Harness::start_with(settings(routing)).await;
    let p = mock_provider(&h, "m1").await;
    model(&h, "primary", &[(p, "mock-gpt:status=502", 1, 0)]).await;
    let resp = h.chat("primary", Some(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(calls_to(&h.mock, "mock-gpt:status=502"), 1);
    assert_eq!(calls_to(&h.mock, "mock-gpt"), 1, "served by the fallback model `demo`");
    let logs = h.finish().await;
    let l = logs.iter().find(|l| l.model.as_deref() == Some("primary")).unwrap();
    assert_eq!((l.provider.as_deref(), l.upstream_model.as_deref(), l.attempts), (Some("mock"), Some("mock-gpt"), 2));
}

#[tokio::test]
async fn per_model_timeouts_answer_504_naming_the_timeout() {
    let mut routing = quick();
    let fast = |t: ModelTimeouts| ModelPolicy { timeouts: t, ..ModelPolicy::default() };
    routing.models = HashMap::from([
        ("slow-head".to_string(), fast(ModelTimeouts { first_byte: Some(Duration::from_millis(100)), ..ModelTimeouts::default() })),
        ("slow-token".to_string(), fast(ModelTimeouts { ttft: Some(Duration::from_millis(100)), ..ModelTimeouts::default() })),
        ("stall".to_string(), fast(ModelTimeouts { idle: Some(Duration::from_millis(150)), ..ModelTimeouts::default() })),
    ]);
    let h = Harness::start_with(settings(routing)).await;
    let p = mock_provider(&h, "m1").await;
    model(&h, "slow-head", &[(p, "mock-gpt:wait_ms=3000", 1, 0)]).await;
    model(&h, "slow-token", &[(p, "mock-gpt:wait_ms=3000", 1, 0)]).await;
    model(&h, "stall", &[(p, "mock-gpt:delay_ms=3000,chunks=3", 1, 0)]).await;
    let resp = h.chat("slow-head", Some(false)).await;
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("first byte"), "{body}");
    let resp = h.chat("slow-token", Some(true)).await;
    assert_eq!(resp.status(), 504, "nothing was streamed yet: a plain error answer");
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("time to first token"), "{body}");
    // Mid-stream: the stream already started, so it ends with an in-band error naming the timeout.
    let resp = h.chat("stall", Some(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"error\"") && text.contains("idle"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn health_api_shows_marked_keys_and_restores_them() {
    let h = Harness::start_with(settings(quick())).await;
    let canary = "sk-canary-health-key-DO-NOT-LEAK-0002";
    let p = provider(&h, "pool", &h.mock.openai_base_url(), &[(canary, 0), (PROVIDER_KEY, 1)]).await;
    let ids = model(&h, "kp", &[(p, "mock-gpt", 2, 0)]).await;
    assert_eq!(h.chat("kp", Some(false)).await.status(), 200);
    let (status, body) = health_call(&h, "GET", "/health/deployments").await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains(canary), "{body}");
    let dep = body["deployments"].as_array().unwrap().iter().find(|d| d["deployment"] == ids[0].to_string().as_str()).unwrap().clone();
    assert_eq!((dep["model"].as_str(), dep["state"].as_str(), dep["weight"].as_u64()), (Some("kp"), Some("closed"), Some(2)));
    assert_eq!(dep["successes_total"], 1);
    let keys: Vec<&Value> = body["keys"].as_array().unwrap().iter().filter(|k| k["provider"] == "pool").collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["status"], "invalid");
    assert!(keys[0]["recheck_in_secs"].as_u64().unwrap() > 0);
    assert_eq!(keys[1]["status"], "active");
    let marked = keys[0]["credential_id"].as_str().unwrap().to_string();

    // Restore: the key is tried again on the next call (and marked again: it is still wrong).
    let (status, body) = health_call(&h, "POST", &format!("/health/keys/{marked}/restore")).await;
    assert_eq!((status, body["restored"].as_bool()), (200, Some(true)));
    h.mock.reset();
    assert_eq!(h.chat("kp", Some(false)).await.status(), 200);
    assert_eq!(h.mock.calls(), 2);
    let (status, body) = health_call(&h, "POST", &format!("/health/keys/{}/restore", new_id())).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = health_call(&h, "POST", "/health/keys/not-a-uuid/restore").await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("id")));
}
