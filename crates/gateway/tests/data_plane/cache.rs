//! The exact-match response cache (issue 6) end to end: hit and miss, TTL on an injected clock,
//! the client's `Cache-Control`, isolation between teams, streamed calls and models without a
//! setting bypassing it, call-log marking.

use std::time::Duration;

use gatehouse_gateway::GatewaySettings;
use gatehouse_gateway::cache::{CACHE_HEADER, CacheSettings, ManualClock};
use gatehouse_store::{App, Bus, BusEvent, Deployment, Model, Store, Team};
use gatehouse_types::{new_id, now};
use serde_json::{Value, json};

use crate::harness::{Harness, Options};

async fn harness_with_clock(clock: &ManualClock) -> Harness {
    let settings = GatewaySettings {
        response_cache: CacheSettings { clock: clock.clock(), ..CacheSettings::default() },
        ..GatewaySettings::default()
    };
    let h = Harness::start_with(Options { settings, ..Options::default() }).await;
    enable(&h, "demo", 60).await;
    h
}

/// What the admin API does: store the setting, then tell the data plane.
async fn enable(h: &Harness, model: &str, ttl_secs: u32) {
    h.store.set_model_cache(model, ttl_secs, now()).await.unwrap().unwrap();
    h.bus.publish(BusEvent::RoutingChanged);
}

fn body(text: &str) -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": text}], "max_tokens": 16})
}

async fn send(h: &Harness, key: &str, body: &Value, cache_control: Option<&str>) -> (String, Value) {
    let mut req = h.client.post(h.url("/v1/chat/completions")).bearer_auth(key).json(body);
    if let Some(cc) = cache_control {
        req = req.header("cache-control", cc);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let tag = resp.headers().get(CACHE_HEADER).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (tag, resp.json().await.unwrap())
}

#[tokio::test]
async fn second_identical_call_is_a_hit_without_an_upstream_call_and_is_marked_in_the_call_log() {
    let clock = ManualClock::new();
    let mut h = harness_with_clock(&clock).await;
    let key = h.key.clone();
    let (tag, first) = send(&h, &key, &body("cache me"), None).await;
    assert_eq!(tag, "miss");
    assert_eq!(h.mock.calls(), 1);
    clock.advance(Duration::from_secs(3));
    let resp = h.client.post(h.url("/v1/chat/completions")).bearer_auth(&key).json(&body("cache me")).send().await.unwrap();
    assert_eq!(resp.headers()[CACHE_HEADER], "hit");
    assert_eq!(resp.headers()["age"], "3");
    assert!(resp.headers().get("x-request-id").is_some());
    let second: Value = resp.json().await.unwrap();
    assert_eq!(second, first, "the same answer");
    assert_eq!(h.mock.calls(), 1, "no upstream call for a hit");
    // Key order and `stream: false` do not change the key; the content does.
    let reordered = json!({"max_tokens": 16, "stream": false, "messages": [{"content": "cache me", "role": "user"}], "model": "demo"});
    assert_eq!(send(&h, &key, &reordered, None).await.0, "hit");
    assert_eq!(send(&h, &key, &body("something else"), None).await.0, "miss");
    assert_eq!(h.mock.calls(), 2);

    let logs = h.finish().await;
    assert_eq!(logs.len(), 4);
    let hits: Vec<_> = logs.iter().filter(|l| l.cache_hit).collect();
    assert_eq!(hits.len(), 2);
    for l in &hits {
        assert_eq!((l.status, l.prompt_tokens, l.completion_tokens), (200, 0, 0));
        assert_eq!(l.cost_usd, Some(0.0));
        assert_eq!(l.upstream_latency_ms, None);
        assert_eq!(l.model.as_deref(), Some("demo"));
    }
    assert!(logs.iter().filter(|l| !l.cache_hit).all(|l| l.prompt_tokens > 0), "misses carry real usage");
}

#[tokio::test]
async fn entries_expire_after_the_model_ttl() {
    let clock = ManualClock::new();
    let h = harness_with_clock(&clock).await;
    let key = h.key.clone();
    assert_eq!(send(&h, &key, &body("ttl"), None).await.0, "miss");
    clock.advance(Duration::from_secs(59));
    assert_eq!(send(&h, &key, &body("ttl"), None).await.0, "hit");
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(&h, &key, &body("ttl"), None).await.0, "miss", "expired at the TTL");
    assert_eq!(h.mock.calls(), 2);
    assert_eq!(send(&h, &key, &body("ttl"), None).await.0, "hit", "the fresh answer was stored");
}

#[tokio::test]
async fn teams_never_share_entries() {
    let clock = ManualClock::new();
    let h = harness_with_clock(&clock).await;
    let team = Team { id: new_id(), name: "other".into(), created_at: now() };
    h.store.create_team(&team).await.unwrap();
    let app = App { id: new_id(), team_id: team.id, name: "other".into(), created_at: now() };
    h.store.create_app(&app).await.unwrap();
    let (_, other) = h
        .create_key_with(&[], None, |c| {
            c.team_id = team.id;
            c.app_id = app.id;
        })
        .await;
    let (_, same_team) = h.create_key(&[], None).await;
    let key = h.key.clone();

    assert_eq!(send(&h, &key, &body("secret plans"), None).await.0, "miss");
    assert_eq!(send(&h, &other, &body("secret plans"), None).await.0, "miss", "another team misses");
    assert_eq!(h.mock.calls(), 2);
    assert_eq!(send(&h, &other, &body("secret plans"), None).await.0, "hit", "its own entry");
    assert_eq!(send(&h, &same_team, &body("secret plans"), None).await.0, "hit", "keys of one team share entries");
    assert_eq!(h.mock.calls(), 2);
}

#[tokio::test]
async fn client_cache_control_no_store_and_no_cache() {
    let clock = ManualClock::new();
    let h = harness_with_clock(&clock).await;
    let key = h.key.clone();
    assert_eq!(send(&h, &key, &body("private"), Some("no-store")).await.0, "bypass");
    assert_eq!(send(&h, &key, &body("private"), Some("no-store")).await.0, "bypass");
    assert_eq!(h.mock.calls(), 2, "no-store never reads");
    assert_eq!(send(&h, &key, &body("private"), None).await.0, "miss", "no-store never wrote");
    assert_eq!(send(&h, &key, &body("private"), Some("No-Cache")).await.0, "bypass");
    assert_eq!(h.mock.calls(), 4, "no-cache skips the lookup");
    assert_eq!(send(&h, &key, &body("private"), None).await.0, "hit");
    assert_eq!(h.mock.calls(), 4);
}

#[tokio::test]
async fn streamed_calls_and_models_without_a_setting_bypass_the_cache() {
    let clock = ManualClock::new();
    let h = harness_with_clock(&clock).await;
    let key = h.key.clone();
    let mut streamed = body("stream me");
    streamed["stream"] = json!(true);
    for _ in 0..2 {
        let resp = h.client.post(h.url("/v1/chat/completions")).bearer_auth(&key).json(&streamed).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get(CACHE_HEADER).is_none());
        let _ = resp.text().await.unwrap();
    }
    assert_eq!(h.mock.calls(), 2, "streams always go upstream");
    // A non-streamed call after the streams is still a miss: streams stored nothing.
    assert_eq!(send(&h, &key, &body("stream me"), None).await.0, "miss");

    let mut other = body("not cached");
    other["model"] = json!("mock/mock-gpt");
    for _ in 0..2 {
        assert_eq!(send(&h, &key, &other, None).await.0, "", "no header without a setting");
    }
    assert_eq!(h.mock.calls(), 5);
}

#[tokio::test]
async fn embeddings_are_cached_and_opting_out_takes_effect_at_once() {
    let clock = ManualClock::new();
    let h = harness_with_clock(&clock).await;
    let provider = h.store.list_providers().await.unwrap().into_iter().find(|p| p.name == "mock").unwrap();
    let model = Model {
        id: new_id(),
        name: "embed".into(),
        deployments: vec![Deployment { id: new_id(), provider_id: provider.id, upstream_model: "text-embedding-3-small".into(), weight: 1, priority: 0 }],
        created_at: now(),
    };
    h.store.upsert_model(&model).await.unwrap();
    enable(&h, "embed", 600).await;
    let req = json!({"model": "embed", "input": ["a", "b"]});
    let tags: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let resp = h.post("/v1/embeddings", Some(&h.key), &req).await;
            assert_eq!(resp.status(), 200);
            v.push(resp.headers()[CACHE_HEADER].to_str().unwrap().to_string());
        }
        v
    };
    assert_eq!(tags, ["miss", "hit"]);
    assert_eq!(h.mock.calls(), 1);
    // Opting out (what DELETE /admin/v1/models/embed/cache does) stops serving entries.
    assert!(h.store.delete_model_cache("embed").await.unwrap());
    h.bus.publish(BusEvent::RoutingChanged);
    let resp = h.post("/v1/embeddings", Some(&h.key), &req).await;
    assert!(resp.headers().get(CACHE_HEADER).is_none());
    assert_eq!(h.mock.calls(), 2);
}

#[tokio::test]
async fn a_restricted_key_gets_no_cached_answer_for_a_model_it_may_not_use() {
    let clock = ManualClock::new();
    let h = harness_with_clock(&clock).await;
    let key = h.key.clone();
    assert_eq!(send(&h, &key, &body("allowed?"), None).await.0, "miss");
    let (_, restricted) = h.create_key(&["demo-claude"], None).await;
    let resp = h.client.post(h.url("/v1/chat/completions")).bearer_auth(&restricted).json(&body("allowed?")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get(CACHE_HEADER).is_none());
}
