//! Derived tokens never escape their root credential (issue 5: H4 IP allow-list, H5 the root
//! key's limits, H6 caps bounded by the parent's remaining cap and shared, spend caps, the
//! lineage cache, L6 token types and `actor_token`). Each test fails without its fix.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_auth::cidr::Cidr;
use gatehouse_gateway::pricing::StaticPrices;
use gatehouse_oauth::token_types;
use gatehouse_store::counters::{Counters, Window};
use gatehouse_store::{LimitScope, MemoryCounters};
use serde_json::{Value, json};

use crate::harness::{Harness, Options};
use crate::limits::{fresh_minute, id, set_limit, used};
use crate::oauth::{Client, assert_invalid_token, chat_with, client, derive, exchange, form, introspect_active, oauth_error, token};

const INSIDE: &str = "203.0.113.9";
const KEY_TYPE: (&str, &str) = ("subject_token_type", token_types::API_KEY);

/// The token endpoint or `/v1` through our trusted proxy (127.0.0.1), which reports `xff`.
async fn via_proxy(h: &Harness, req: reqwest::RequestBuilder, xff: Option<&str>) -> reqwest::Response {
    let req = match xff {
        Some(x) => req.header("x-forwarded-for", x),
        None => req,
    };
    let _ = h;
    req.send().await.unwrap()
}

async fn token_via(h: &Harness, c: &Client, params: &[(&str, &str)], xff: Option<&str>) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let req = h
        .client
        .post(h.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(c.id(), Some(&c.secret))
        .body(body);
    via_proxy(h, req, xff).await
}

async fn access_token(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

async fn chat_via(h: &Harness, t: &str, xff: Option<&str>) -> reqwest::Response {
    let req = h.client.post(h.url("/v1/chat/completions")).bearer_auth(t).json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}));
    via_proxy(h, req, xff).await
}

async fn introspect(h: &Harness, c: &Client, t: &str) -> Value {
    form(h, "/oauth/introspect", Some(c), &[("token", t)]).await.json().await.unwrap()
}

fn behind_proxy() -> Options {
    let mut opts = Options::default();
    opts.settings.trusted_proxies = vec![Cidr::parse("127.0.0.1/32").unwrap()];
    opts
}

#[tokio::test]
async fn h4_tokens_derived_from_an_ip_restricted_key_are_refused_outside_its_allow_list() {
    let h = Harness::start_with(behind_proxy()).await;
    let c = client(&h, &[], &[], "opaque").await;
    let j = client(&h, &[], &[], "jwt").await;
    let (_, key) = h.create_key_with(&[], None, |k| k.security.ip_allow = vec!["203.0.113.0/24".into()]).await;
    let g1 = access_token(token_via(&h, &c, &exchange(&key, &[KEY_TYPE]), Some(INSIDE)).await).await;
    let g2 = access_token(token_via(&h, &j, &exchange(&g1, &[]), Some(INSIDE)).await).await;
    let g3 = access_token(token_via(&h, &c, &exchange(&g2, &[]), Some(INSIDE)).await).await;
    for t in [&g1, &g2, &g3] {
        assert_eq!(chat_via(&h, t, Some(INSIDE)).await.status(), 200);
        // No forwarded address (the proxy itself is the client), or a forged left entry: refused
        // exactly like the key itself, with the key's error.
        for xff in [None, Some("203.0.113.9, 198.51.100.1")] {
            let r = chat_via(&h, t, xff).await;
            assert_eq!(r.status(), 403, "{xff:?}");
            assert!(r.headers().get("www-authenticate").is_none());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "ip_not_allowed", "{v}");
        }
    }
    assert_eq!(chat_via(&h, &key, None).await.status(), 403);
    // Exchanging a derived token from outside the list is refused like exchanging the key.
    let resp = token_via(&h, &c, &exchange(&g1, &[]), Some("198.51.100.1")).await;
    oauth_error(resp, 400, "invalid_grant").await;
    let resp = token_via(&h, &c, &exchange(&g2, &[("subject_token_type", token_types::JWT)]), None).await;
    oauth_error(resp, 400, "invalid_grant").await;
}

#[tokio::test]
async fn h5_derived_tokens_count_against_and_are_refused_by_the_root_keys_limits() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let (key_id, key) = h.create_key(&[], None).await;
    let g1 = derive(&h, &c, &key, true).await;
    let g2 = derive(&h, &c, &g1, false).await;
    let other = derive(&h, &c, &key, true).await;
    fresh_minute(20).await;
    set_limit(&h, LimitScope::Key, &id(key_id), "", |l| l.rpm = Some(3)).await;
    // One budget for the key and everything derived from it: exchanging does not multiply it.
    for t in [&key, &g1, &g2] {
        let r = chat_with(&h, t).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
    }
    for t in [&g1, &g2, &other, &key] {
        let r = chat_with(&h, t).await;
        assert_eq!(r.status(), 429);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    }
    // Another key of the same app keeps its own budget.
    assert_eq!(h.chat("demo", None).await.status(), 200);
}

/// Polls until the cap bucket `key` shows `want` (settlement runs after the answer).
async fn settled(counters: &dyn Counters, key: String, want: u64) {
    for _ in 0..400 {
        if used(counters, key.clone(), Window::Month).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} never reached {want}");
}

#[tokio::test]
async fn h6_a_child_cap_never_exceeds_the_parents_remaining_cap_and_all_generations_share_it() {
    let counters = Arc::new(MemoryCounters::new());
    let h = Harness::start_with(Options { counters: Some(counters.clone()), ..Options::default() }).await;
    let c = client(&h, &[], &[], "opaque").await;
    let capped = token(&h, &c, &exchange(&h.key, &[KEY_TYPE, ("max_tokens", "40")])).await["access_token"].as_str().unwrap().to_string();
    let jti = introspect(&h, &c, &capped).await["jti"].as_str().unwrap().to_string();
    // Two calls (the mock reports a few tokens each).
    let mut per_call = 0;
    for _ in 0..2 {
        let r = chat_with(&h, &capped).await;
        assert_eq!(r.status(), 200);
        per_call = r.json::<Value>().await.unwrap()["usage"]["total_tokens"].as_u64().unwrap();
    }
    assert!(per_call > 0 && per_call < 20, "{per_call}");
    settled(counters.as_ref(), format!("cap:tokens:{jti}"), 2 * per_call).await;
    let left = 40 - 2 * per_call;
    let over = (left + 1).to_string();
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&capped, &[("max_tokens", &over)])).await;
    let v = oauth_error(resp, 400, "invalid_scope").await;
    assert!(v["error_description"].as_str().unwrap().contains("remaining"), "{v}");
    // Without max_tokens the child gets what is left, not the parent's nominal cap.
    let child = token(&h, &c, &exchange(&capped, &[])).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&h, &c, &child).await["max_tokens"], left);
    let exact = left.to_string();
    let grandchild = token(&h, &c, &exchange(&child, &[("max_tokens", &exact)])).await["access_token"].as_str().unwrap().to_string();
    // The grandchild's calls are charged to every capped ancestor: the budget is used up for all.
    let mut refused = None;
    let mut total = 2 * per_call;
    for n in 1..=8 {
        let r = chat_with(&h, &grandchild).await;
        if r.status() == 200 {
            assert!(refused.is_none(), "a call succeeded after the cap was reached");
            total += r.json::<Value>().await.unwrap()["usage"]["total_tokens"].as_u64().unwrap();
        } else {
            assert_eq!(r.status(), 429);
            refused.get_or_insert(n);
        }
    }
    let first = refused.expect("the shared cap was never enforced");
    // Without sharing, the grandchild alone could make `left / per_call` calls.
    assert!(first <= left / per_call + 1, "first refused at call {first}");
    for t in [&capped, &child] {
        let r = chat_with(&h, t).await;
        assert_eq!(r.status(), 429);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
    }
    assert!(total <= 40 + per_call, "{total} tokens used under a shared cap of 40");
    settled(counters.as_ref(), format!("cap:tokens:{jti}"), total).await;
    // Re-exchanging cannot reset the budget: refused when nothing is left, else capped at what is.
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&capped, &[])).await;
    if total >= 40 {
        oauth_error(resp, 400, "invalid_scope").await;
    } else {
        let again = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        assert_eq!(introspect(&h, &c, &again).await["max_tokens"], 40 - total);
        assert_eq!(chat_with(&h, &again).await.status(), 429);
    }
}

#[tokio::test]
async fn spend_caps_are_issued_introspected_bounded_and_enforced_with_catalog_prices() {
    // mock-gpt at 1000 / 2000 USD per 1M tokens: a call of 5 + 3 tokens costs 0.011 USD.
    let prices = Arc::new(StaticPrices::new().with("mock-gpt", 1000.0, 2000.0));
    let h = Harness::start_with(Options { prices: Some(prices), ..Options::default() }).await;
    let c = client(&h, &[], &[], "opaque").await;
    let j = client(&h, &[], &[], "jwt").await;
    for bad in ["0", "-1", "abc", "1.1234567", "1e3", ".5"] {
        let resp = form(&h, "/oauth/token", Some(&c), &exchange(&h.key, &[KEY_TYPE, ("max_spend", bad)])).await;
        oauth_error(resp, 400, "invalid_request").await;
    }
    let capped = token(&h, &c, &exchange(&h.key, &[KEY_TYPE, ("max_spend", "0.03")])).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&h, &c, &capped).await["max_spend"], json!(0.03));
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&capped, &[("max_spend", "0.05")])).await;
    oauth_error(resp, 400, "invalid_scope").await;
    // A JWT child carries its (lower) cap as a claim.
    let jwt = token(&h, &j, &exchange(&capped, &[("max_spend", "0.02")])).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&h, &j, &jwt).await["max_spend"], json!(0.02));
    let mut refused = None;
    for n in 1..=8 {
        let r = chat_with(&h, &capped).await;
        if r.status() == 200 {
            assert!(refused.is_none(), "a call succeeded after the spend cap was reached");
        } else {
            assert_eq!(r.status(), 429);
            assert!(r.headers().get("retry-after").is_none());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("spend cap of 0.030000 USD"), "{v}");
            refused.get_or_insert(n);
        }
    }
    let first = refused.expect("the spend cap was never enforced");
    assert!((2..=5).contains(&first), "first refused at call {first}");
    // The child shares the parent's spend: it is used up too.
    assert_eq!(chat_with(&h, &jwt).await.status(), 429);
    // The API key itself has no cap.
    assert_eq!(h.chat("demo", None).await.status(), 200);
}

#[tokio::test]
async fn lineage_is_resolved_once_and_revoking_the_root_key_fails_the_very_next_call() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let j = client(&h, &[], &[], "jwt").await;
    let (key_id, key) = h.create_key(&[], None).await;
    let g1 = derive(&h, &c, &key, true).await;
    let g2 = derive(&h, &c, &g1, false).await;
    let g3 = derive(&h, &j, &g2, false).await;
    for t in [&g2, &g3] {
        assert_eq!(chat_with(&h, t).await.status(), 200);
        let before = h.store.lineage_reads();
        for _ in 0..3 {
            assert_eq!(chat_with(&h, t).await.status(), 200);
        }
        assert_eq!(h.store.lineage_reads(), before, "a cached lineage reads nothing from the store");
    }
    h.revoke(key_id, &key).await;
    for t in [&g1, &g2, &g3] {
        assert_invalid_token(chat_with(&h, t).await).await;
    }
    assert!(!introspect_active(&h, &c, &g2).await);
    // Suspension of the root reaches a cached lineage too.
    let (key_id, key) = h.create_key(&[], None).await;
    let g1 = derive(&h, &c, &key, true).await;
    assert_eq!(chat_with(&h, &g1).await.status(), 200);
    assert!(gatehouse_store::Store::suspend_credential(h.store.as_ref(), key_id, gatehouse_types::now()).await.unwrap());
    gatehouse_store::Bus::publish(h.bus.as_ref(), gatehouse_store::BusEvent::CredentialChanged { id: key_id, digest: h.peppers.digest(&key).to_vec() });
    assert_invalid_token(chat_with(&h, &g1).await).await;
}

#[tokio::test]
async fn l6_token_types_must_match_and_an_actor_token_is_validated_into_act() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let j = client(&h, &[], &[], "jwt").await;
    let actor_client = client(&h, &[], &[], "opaque").await;
    // An API key is of the Gatehouse api_key type, never `access_token` or `jwt`.
    for wrong in [token_types::ACCESS_TOKEN, token_types::JWT] {
        let resp = form(&h, "/oauth/token", Some(&c), &exchange(&h.key, &[("subject_token_type", wrong)])).await;
        let v = oauth_error(resp, 400, "invalid_request").await;
        assert!(v["error_description"].as_str().unwrap().contains("subject_token_type"), "{v}");
    }
    let opaque = derive(&h, &c, &h.key, true).await;
    for wrong in [token_types::API_KEY, token_types::JWT] {
        let resp = form(&h, "/oauth/token", Some(&c), &exchange(&opaque, &[("subject_token_type", wrong)])).await;
        oauth_error(resp, 400, "invalid_request").await;
    }
    // A JWT access token is both an access token and a JWT.
    let jwt = derive(&h, &j, &opaque, false).await;
    for ok in [token_types::ACCESS_TOKEN, token_types::JWT] {
        token(&h, &c, &exchange(&jwt, &[("subject_token_type", ok)])).await;
    }
    // actor_token: validated (type, liveness, team) and recorded as the acting party.
    let actor = token(&h, &actor_client, &[("grant_type", "client_credentials")]).await["access_token"].as_str().unwrap().to_string();
    let v = token(&h, &c, &exchange(&opaque, &[("actor_token", &actor), ("actor_token_type", token_types::ACCESS_TOKEN)])).await;
    let t = v["access_token"].as_str().unwrap().to_string();
    let act = introspect(&h, &c, &t).await["act"].clone();
    assert_eq!(act["sub"], actor_client.id(), "{act}");
    assert_eq!(act["client_id"], c.id(), "{act}");
    for (bad, kind) in [
        (actor.as_str(), token_types::API_KEY),
        ("gtha_live_garbage", token_types::ACCESS_TOKEN),
        (h.key.as_str(), token_types::ACCESS_TOKEN),
        (actor.as_str(), "urn:ietf:params:oauth:token-type:id_token"),
    ] {
        let resp = form(&h, "/oauth/token", Some(&c), &exchange(&opaque, &[("actor_token", bad), ("actor_token_type", kind)])).await;
        oauth_error(resp, 400, "invalid_request").await;
    }
    // A revoked actor token is refused.
    form(&h, "/oauth/revoke", Some(&actor_client), &[("token", &actor)]).await;
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&opaque, &[("actor_token", &actor), ("actor_token_type", token_types::ACCESS_TOKEN)])).await;
    oauth_error(resp, 400, "invalid_request").await;
}
