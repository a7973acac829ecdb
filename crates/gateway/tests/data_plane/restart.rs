//! Caps and quotas survive a restart with the default in-memory counters (h5seed): the gateway
//! seeds them from the call log at start (`Limiter::seed_from_call_log`). Without the seeding
//! every assertion after the restart below fails (the budgets start at 0 again).

use std::sync::Arc;

use gatehouse_gateway::estimate::estimate_chat;
use gatehouse_oauth::token_types;
use gatehouse_store::counters::{Counters, Metric, Window, bucket_key};
use gatehouse_store::{LimitScope, MemoryCounters};
use serde_json::{Value, json};

use crate::harness::{Harness, Options};
use crate::limits::{id, set_limit, used};
use crate::oauth::{chat_with, client, exchange, form, token};

const KEY_TYPE: (&str, &str) = ("subject_token_type", token_types::API_KEY);

async fn total_tokens(r: reqwest::Response) -> u64 {
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["usage"]["total_tokens"].as_u64().unwrap()
}

#[tokio::test]
async fn a_used_up_token_cap_and_a_daily_quota_still_hold_after_a_restart() {
    let mut h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let capped = token(&h, &c, &exchange(&h.key, &[KEY_TYPE, ("max_tokens", "20")])).await["access_token"].as_str().unwrap().to_string();
    let jti = form(&h, "/oauth/introspect", Some(&c), &[("token", &capped)]).await.json::<Value>().await.unwrap()["jti"].as_str().unwrap().to_string();
    // Use the cap up (the tester's repro): calls until the first 429.
    let mut cap_used = 0;
    let mut refused = false;
    for _ in 0..20 {
        let r = chat_with(&h, &capped).await;
        if r.status() == 429 {
            refused = true;
            break;
        }
        cap_used += total_tokens(r).await;
    }
    assert!(refused && cap_used > 0, "the cap of 20 was never reached ({cap_used} used)");
    // A second key with some usage today, then a daily quota it has just room for one more
    // call under without its usage (limit = used + this call's estimate - 1).
    let (key2_id, key2) = h.create_key(&[], None).await;
    let mut key2_used = 0;
    for _ in 0..2 {
        key2_used += total_tokens(chat_with(&h, &key2).await).await;
    }
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]});
    let estimate = estimate_chat(body.as_object().unwrap(), "mock-gpt").total();
    let quota = key2_used + estimate - 1;
    set_limit(&h, LimitScope::Key, &id(key2_id), "", |l| l.tokens_per_day = Some(quota)).await;

    let counters = Arc::new(MemoryCounters::new());
    h.restart(Options { counters: Some(counters.clone() as Arc<dyn Counters>), ..Options::default() }).await;

    // The counters continue where the call log left them.
    assert_eq!(used(counters.as_ref(), format!("cap:tokens:{jti}"), Window::Month).await, cap_used);
    let tpd = bucket_key(Metric::TokensPerDay, LimitScope::Key, &id(key2_id), "");
    assert_eq!(used(counters.as_ref(), tpd, Window::Day).await, key2_used);
    // The used-up cap is still used up.
    let r = chat_with(&h, &capped).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
    // The daily quota still counts today's calls.
    let r = chat_with(&h, &key2).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("Daily token quota"), "{v}");
    // The root key itself has no limits: the restarted gateway serves.
    assert_eq!(chat_with(&h, &h.key).await.status(), 200);
}

const CATALOG: &str = r#"models = [
  { id = "mock-gpt", provider = "mock", context = 32000, max_output = 4000, input = 1000.0, output = 2000.0 },
]"#;

/// Every seeded bucket equals what the live counters held before the restart: the shared caps
/// of a derived token's ancestors (tokens and spend), a monthly spend budget of the app, and a
/// team's model-specific row next to its general row (most specific wins: the general bucket
/// gets no `demo` calls).
#[tokio::test]
async fn seeded_counters_equal_the_live_ones_for_shared_caps_spend_and_specific_rows() {
    let catalog = Arc::new(gatehouse_providers::catalog::Catalog::parse(CATALOG, "test").unwrap());
    let settings = || gatehouse_gateway::GatewaySettings { catalog: catalog.clone(), ..gatehouse_gateway::GatewaySettings::default() };
    let live = Arc::new(MemoryCounters::new());
    let mut h = Harness::start_with(Options { settings: settings(), counters: Some(live.clone() as Arc<dyn Counters>), ..Options::default() }).await;
    let team = id(h.team_id);
    set_limit(&h, LimitScope::Team, &team, "", |l| l.tokens_per_month = Some(1_000_000)).await;
    set_limit(&h, LimitScope::Team, &team, "demo", |l| l.tokens_per_month = Some(1_000_000)).await;
    set_limit(&h, LimitScope::App, &id(h.app_id), "", |l| l.usd_micros_per_month = Some(1_000_000_000)).await;
    let c = client(&h, &[], &[], "opaque").await;
    let parent = token(&h, &c, &exchange(&h.key, &[KEY_TYPE, ("max_tokens", "100000"), ("max_spend", "100")])).await["access_token"].as_str().unwrap().to_string();
    let child = token(&h, &c, &exchange(&parent, &[])).await["access_token"].as_str().unwrap().to_string();
    let jti = |t: String| {
        let (h, c) = (&h, &c);
        async move { form(h, "/oauth/introspect", Some(c), &[("token", &t)]).await.json::<Value>().await.unwrap()["jti"].as_str().unwrap().to_string() }
    };
    let (pj, cj) = (jti(parent.clone()).await, jti(child.clone()).await);
    let mut tokens = 0;
    for t in [&child, &child, &parent] {
        tokens += total_tokens(chat_with(&h, t).await).await;
    }
    let keys = [
        (format!("cap:tokens:{pj}"), Window::Month),
        (format!("cap:tokens:{cj}"), Window::Month),
        (format!("cap:spend:{pj}"), Window::Month),
        (format!("cap:spend:{cj}"), Window::Month),
        (bucket_key(Metric::TokensPerMonth, LimitScope::Team, &team, ""), Window::Month),
        (bucket_key(Metric::TokensPerMonth, LimitScope::Team, &team, "demo"), Window::Month),
        (bucket_key(Metric::UsdPerMonth, LimitScope::App, &id(h.app_id), ""), Window::Month),
    ];
    let seeded = Arc::new(MemoryCounters::new());
    h.restart(Options { settings: settings(), counters: Some(seeded.clone() as Arc<dyn Counters>), ..Options::default() }).await;
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (k, w) in &keys {
        before.push(used(live.as_ref(), k.clone(), *w).await);
        after.push(used(seeded.as_ref(), k.clone(), *w).await);
    }
    // Parent: all three calls; child: its two; the general team row: none (demo has its own row).
    assert_eq!(before[0], tokens, "{before:?}");
    assert!(before[1] > 0 && before[1] < tokens && before[2] > 0 && before[3] > 0 && before[4] == 0, "{before:?}");
    assert_eq!(before[5], tokens);
    assert_eq!(after, before);
}
