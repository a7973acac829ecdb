//! Rate limits, quotas and budgets through the real router (issue 6).

use std::sync::Arc;
use std::time::Duration;

use gatehouse_gateway::estimate::estimate_chat;
use gatehouse_gateway::pricing::StaticPrices;
use gatehouse_store::counters::{Bucket, Counters, bucket_key};
use gatehouse_store::{Bus, BusEvent, Limit, LimitScope, MemoryCounters, Store};
use gatehouse_types::{Id, new_id, now};
use serde_json::{Value, json};

use crate::harness::{Harness, Options};

pub(crate) async fn set_limit(
    h: &Harness,
    scope: LimitScope,
    scope_id: &str,
    model: &str,
    f: impl FnOnce(&mut Limit),
) {
    let mut l = Limit {
        id: new_id(),
        scope,
        scope_id: scope_id.into(),
        model: model.into(),
        rpm: None,
        concurrent: None,
        tpm: None,
        tokens_per_day: None,
        tokens_per_month: None,
        usd_micros_per_day: None,
        usd_micros_per_month: None,
        created_at: now(),
        updated_at: now(),
    };
    f(&mut l);
    h.store.upsert_limit(&l).await.unwrap();
    h.bus.publish(BusEvent::LimitsChanged);
}

pub(crate) fn id(i: Id) -> String {
    i.hyphenated().to_string()
}

/// Waits until the current minute has `secs` seconds left (so a filled minute window never
/// straddles a boundary and the counts stay exact).
pub(crate) async fn fresh_minute(secs: u64) {
    loop {
        let now = time::OffsetDateTime::now_utc();
        let left = 60 - u64::from(now.second());
        if left >= secs {
            return;
        }
        tokio::time::sleep(Duration::from_secs(left)).await;
    }
}

pub(crate) async fn used(c: &dyn Counters, key: String, window: gatehouse_store::counters::Window) -> u64 {
    c.peek(&[Bucket {
        key,
        window,
        limit: 0,
        cost: 0,
    }])
    .await
    .unwrap()[0]
        .used
}

#[tokio::test]
async fn rpm_limit_headers_then_429() {
    fresh_minute(20).await;
    let h = Harness::start().await;
    let (key_id, _) = (h.key_id().await, ());
    set_limit(&h, LimitScope::Key, &id(key_id), "", |l| l.rpm = Some(3)).await;
    for remaining in [2, 1, 0] {
        let r = h.chat("demo", None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            r.headers()["x-ratelimit-remaining-requests"],
            remaining.to_string().as_str()
        );
        assert!(
            r.headers()["x-ratelimit-reset-requests"]
                .to_str()
                .unwrap()
                .ends_with('s')
        );
    }
    let r = h.chat("demo", None).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        h.mock.calls_for("/v1/chat/completions"),
        3,
        "the denied call never reached the upstream"
    );
    // Another key of the same app is not limited by this key's limit.
    let (_, other) = h.create_key(&[], None).await;
    let r = h
        .post(
            "/v1/chat/completions",
            Some(&other),
            &json!({"model":"demo","messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_against_fifty_per_minute() {
    fresh_minute(30).await;
    let h = Arc::new(Harness::start().await);
    set_limit(&h, LimitScope::Team, &id(h.team_id), "", |l| {
        l.rpm = Some(50)
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.chat("demo", None).await.status().as_u16()
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for t in tasks {
        *by_status.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by_status.get(&200), Some(&50), "{by_status:?}");
    assert_eq!(by_status.get(&429), Some(&150), "{by_status:?}");
    assert_eq!(h.mock.calls_for("/v1/chat/completions"), 50);
}

#[tokio::test]
async fn most_specific_row_wins_per_metric_and_model_scope_applies() {
    fresh_minute(20).await;
    let h = Harness::start().await;
    let key = id(h.key_id().await);
    // Key: 1 rpm in general, but 2 rpm for `demo` (more specific). Model `demo-claude`: 1 rpm.
    set_limit(&h, LimitScope::Key, &key, "", |l| l.rpm = Some(1)).await;
    set_limit(&h, LimitScope::Key, &key, "demo", |l| l.rpm = Some(2)).await;
    assert_eq!(h.chat("demo", None).await.status(), 200);
    assert_eq!(h.chat("demo", None).await.status(), 200);
    assert_eq!(h.chat("demo", None).await.status(), 429);
    set_limit(&h, LimitScope::Model, "demo-claude", "", |l| {
        l.rpm = Some(5)
    })
    .await;
    let r = h.chat("demo-claude", None).await;
    assert_eq!(
        r.status(),
        200,
        "the key's general row (1 rpm) still has room for other models"
    );
    // Key general row (1 rpm) used: a second demo-claude call is denied by the key, not the model.
    let r = h.chat("demo-claude", None).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this key"),
        "{body}"
    );
}

#[tokio::test]
async fn concurrency_limit_and_release_after_client_disconnect() {
    let counters: Arc<dyn Counters> = Arc::new(MemoryCounters::new());
    let h = Harness::start_with(Options {
        counters: Some(counters.clone()),
        ..Options::default()
    })
    .await;
    let key = id(h.key_id().await);
    set_limit(&h, LimitScope::Key, &key, "", |l| {
        l.concurrent = Some(1);
        l.tokens_per_day = Some(1_000_000);
    })
    .await;
    let body = json!({"model": "mock/mock-gpt:chunks=40,delay_ms=50", "stream": true,
                      "messages": [{"role": "user", "content": "tell me a long story"}], "max_tokens": 300});
    let mut first = h.post("/v1/chat/completions", Some(&h.key), &body).await;
    assert_eq!(first.status(), 200);
    let chunk = first.chunk().await.unwrap().unwrap();
    assert!(!chunk.is_empty());
    // While the stream runs, a second call is over the concurrency limit.
    let second = h.chat("demo", None).await;
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    // The client goes away mid-stream: the lease is released, and with no usage reported the
    // token reservation stays charged (what the provider billed is unknown).
    drop(first);
    let estimate =
        estimate_chat(body.as_object().unwrap(), "mock-gpt:chunks=40,delay_ms=50").total();
    let tpd = bucket_key(
        gatehouse_store::counters::Metric::TokensPerDay,
        LimitScope::Key,
        &key,
        "",
    );
    let conc = bucket_key(
        gatehouse_store::counters::Metric::Concurrent,
        LimitScope::Key,
        &key,
        "",
    );
    let mut released = false;
    for _ in 0..200 {
        if used(
            &*counters,
            conc.clone(),
            gatehouse_store::counters::Window::Concurrent,
        )
        .await
            == 0
        {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        released,
        "the concurrency lease must be released after the disconnect"
    );
    assert_eq!(
        used(&*counters, tpd, gatehouse_store::counters::Window::Day).await,
        estimate
    );
    assert_eq!(h.chat("demo", None).await.status(), 200);
}

#[tokio::test]
async fn tokens_and_spend_settle_to_real_usage_then_budget_answers_insufficient_quota() {
    let counters: Arc<dyn Counters> = Arc::new(MemoryCounters::new());
    // mock-gpt at 1000 USD / 1M input and 2000 USD / 1M output: 1 token = 1000 / 2000 micro-USD.
    let prices = Arc::new(StaticPrices::new().with("mock-gpt", 1000.0, 2000.0));
    let h = Harness::start_with(Options {
        counters: Some(counters.clone()),
        prices: Some(prices),
        ..Options::default()
    })
    .await;
    let team = id(h.team_id);
    set_limit(&h, LimitScope::Team, &team, "", |l| {
        l.tpm = Some(1_000_000);
        l.usd_micros_per_day = Some(200_000);
    })
    .await;
    let body = json!({"model":"demo","messages":[{"role":"user","content":"hello there"}],"max_tokens":20});
    let r = h.post("/v1/chat/completions", Some(&h.key), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "1000000");
    let answer: Value = r.json().await.unwrap();
    let (p, c) = (
        answer["usage"]["prompt_tokens"].as_u64().unwrap(),
        answer["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p + c > 0);
    let tpm = bucket_key(
        gatehouse_store::counters::Metric::Tpm,
        LimitScope::Team,
        &team,
        "",
    );
    let usd = bucket_key(
        gatehouse_store::counters::Metric::UsdPerDay,
        LimitScope::Team,
        &team,
        "",
    );
    let real_spend = p * 1000 + c * 2000;
    let mut settled = false;
    for _ in 0..200 {
        if used(
            &*counters,
            tpm.clone(),
            gatehouse_store::counters::Window::Minute,
        )
        .await
            == p + c
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(settled, "tokens settle to the real usage");
    assert_eq!(
        used(
            &*counters,
            usd.clone(),
            gatehouse_store::counters::Window::Day
        )
        .await,
        real_spend
    );
    // Spend calls until the budget has no room for another estimate; then 429 insufficient_quota.
    let mut last = None;
    for _ in 0..50 {
        let r = h.post("/v1/chat/completions", Some(&h.key), &body).await;
        if r.status() == 429 {
            last = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = last.expect("the budget must run out");
    assert!(r.headers().get("retry-after").is_some());
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "insufficient_quota");
    // Wait for settlement, then check the overrun bound: never above the budget by more than
    // the in-flight under-estimates (here calls are sequential, so never above the budget).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(used(&*counters, usd, gatehouse_store::counters::Window::Day).await <= 200_000);
}

#[tokio::test]
async fn upstream_failure_refunds_the_reservation() {
    let counters: Arc<dyn Counters> = Arc::new(MemoryCounters::new());
    let h = Harness::start_with(Options {
        counters: Some(counters.clone()),
        ..Options::default()
    })
    .await;
    let key = id(h.key_id().await);
    set_limit(&h, LimitScope::Key, &key, "", |l| {
        l.tokens_per_month = Some(1_000_000)
    })
    .await;
    let r = h
        .post(
            "/v1/chat/completions",
            Some(&h.key),
            &json!({"model":"mock/mock-gpt:500","messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    assert_eq!(r.status(), 502);
    let k = bucket_key(
        gatehouse_store::counters::Metric::TokensPerMonth,
        LimitScope::Key,
        &key,
        "",
    );
    let mut refunded = false;
    for _ in 0..200 {
        if used(
            &*counters,
            k.clone(),
            gatehouse_store::counters::Window::Month,
        )
        .await
            == 0
        {
            refunded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refunded);
}

#[tokio::test]
async fn anthropic_messages_endpoint_is_limited_too() {
    fresh_minute(20).await;
    let h = Harness::start().await;
    set_limit(&h, LimitScope::Team, &id(h.team_id), "", |l| {
        l.rpm = Some(1)
    })
    .await;
    let body =
        json!({"model": "demo", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let send = || {
        h.client
            .post(h.url("/v1/messages"))
            .header("x-api-key", &h.key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn gemini_endpoint_is_limited_too() {
    fresh_minute(20).await;
    let h = Harness::start().await;
    set_limit(&h, LimitScope::Team, &id(h.team_id), "", |l| {
        l.rpm = Some(1)
    })
    .await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let send = || {
        h.client
            .post(h.url("/v1beta/models/demo:generateContent"))
            .header("x-goog-api-key", &h.key)
            .json(&body)
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn m4_model_limit_holds_for_the_provider_model_form() {
    fresh_minute(20).await;
    let h = Harness::start().await;
    set_limit(&h, LimitScope::Model, "demo", "", |l| l.rpm = Some(1)).await;
    assert_eq!(h.chat("demo", None).await.status(), 200);
    // `mock/mock-gpt` is the same deployment as `demo`: its limit applies
    assert_eq!(h.chat("mock/mock-gpt", None).await.status(), 429);
}
