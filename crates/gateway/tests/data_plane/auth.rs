//! Authentication paths (`token-security.md` §1.2, §2.4; RFC 6750 §3.1).

use gatehouse_types::now;
use serde_json::{Value, json};

use crate::harness::{Harness, request_id};

const CHAT: &str = "/v1/chat/completions";

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn error_of(resp: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap();
    (status, challenge, body)
}

#[tokio::test]
async fn no_key_is_401_with_bare_challenge_on_every_route() {
    let h = Harness::start().await;
    for (method, path) in [("POST", CHAT), ("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("GET", "/v1/models/demo")] {
        let req = if method == "POST" { h.client.post(h.url(path)).json(&chat_body("demo")) } else { h.client.get(h.url(path)) };
        let resp = req.send().await.unwrap();
        assert!(!request_id(&resp).is_empty());
        let (status, challenge, body) = error_of(resp).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"gatehouse\""), "{path}");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(body["error"]["message"].is_string());
    }
    // An unsupported scheme counts as no credential (§1.2 step 4).
    let resp = h.client.get(h.url("/v1/models")).header("authorization", "Basic dXNlcjpwYXNz").send().await.unwrap();
    let (status, challenge, _) = error_of(resp).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer realm=\"gatehouse\"")));
    // A key in the query string is not a credential.
    let resp = h.client.get(format!("{}?access_token={}", h.url("/v1/models"), h.key)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let h = Harness::start().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let resp = h.client.get(h.url("/v1/models")).header("authorization", format!("{scheme} {}", h.key)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn two_credentials_or_malformed_header_is_400() {
    let h = Harness::start().await;
    let resp = h
        .client
        .get(h.url("/v1/models"))
        .header("authorization", format!("Bearer {}", h.key))
        .header("authorization", format!("Bearer {}", h.key))
        .send()
        .await
        .unwrap();
    let (status, challenge, body) = error_of(resp).await;
    assert_eq!(status, 400);
    assert!(challenge.unwrap().contains("error=\"invalid_request\""));
    assert_eq!(body["error"]["code"], "invalid_request");
    let resp = h.client.get(h.url("/v1/models")).header("authorization", "Bearer a b c").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn bad_checksum_is_401_without_touching_the_store() {
    let h = Harness::start().await;
    // Flip the last checksum character of a valid key.
    let mut broken = h.key.clone();
    let last = broken.pop().unwrap();
    broken.push(if last == 'A' { 'B' } else { 'A' });
    let wrong_env = h.key.replacen("gthk_live_", "gthk_test_", 1);
    let (before_lookups, before_total) = (h.store.lookups(), h.store.total());
    for bad in [broken.as_str(), wrong_env.as_str(), "gthk_live_short", "sk-not-ours-at-all"] {
        let resp = h.post(CHAT, Some(bad), &chat_body("demo")).await;
        let (status, challenge, body) = error_of(resp).await;
        assert_eq!(status, 401, "{bad}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""));
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(!body.to_string().contains(bad), "the key must never be echoed");
    }
    assert_eq!(h.store.lookups(), before_lookups, "no credential lookup for a malformed key");
    assert_eq!(h.store.total(), before_total, "no store query at all for a malformed key");
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn unknown_key_is_401_invalid_token() {
    let h = Harness::start().await;
    let unknown = gatehouse_auth::generate(gatehouse_auth::TokenKind::ApiKey, gatehouse_auth::Env::Live).unwrap();
    let unknown = secrecy::ExposeSecret::expose_secret(&unknown.token).to_string();
    for _ in 0..2 {
        let (status, challenge, body) = error_of(h.post(CHAT, Some(&unknown), &chat_body("demo")).await).await;
        assert_eq!(status, 401);
        assert!(challenge.unwrap().contains("invalid_token"));
        assert!(!body.to_string().contains(&unknown));
    }
    // The second attempt is answered by the negative cache.
    assert_eq!(h.store.lookups(), 1);
}

#[tokio::test]
async fn expired_key_is_401() {
    let h = Harness::start().await;
    let (_, expired) = h.create_key(&[], Some(now() - time::Duration::seconds(1))).await;
    let (status, challenge, _) = error_of(h.post(CHAT, Some(&expired), &chat_body("demo")).await).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("invalid_token"));
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn revocation_applies_to_the_very_next_request() {
    let h = Harness::start().await;
    let (id, key) = h.create_key(&[], None).await;
    for _ in 0..2 {
        let ok = h.client.get(h.url("/v1/models")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(ok.status(), 200, "key works");
    }
    assert_eq!(h.store.lookups(), 1, "the second request was served from the cache");
    h.revoke(id, &key).await;
    let (status, challenge, _) = error_of(h.client.get(h.url("/v1/models")).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("invalid_token"));
}

#[tokio::test]
async fn model_outside_the_allow_list_is_403() {
    let h = Harness::start().await;
    let (_, key) = h.create_key(&["demo"], None).await;
    let ok = h.post(CHAT, Some(&key), &chat_body("demo")).await;
    assert_eq!(ok.status(), 200);
    for model in ["demo-claude", "mock/mock-gpt", "does-not-exist"] {
        let (status, challenge, body) = error_of(h.post(CHAT, Some(&key), &chat_body(model)).await).await;
        assert_eq!(status, 403, "{model}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\""));
        assert_eq!(body["error"]["type"], "permission_error");
        assert_eq!(body["error"]["param"], "model");
    }
    assert_eq!(h.mock.calls(), 1);
    // The models list shows exactly what the key may use.
    let list: Value = h.client.get(h.url("/v1/models")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["demo"]);
    let one = h.client.get(h.url("/v1/models/demo-claude")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(one.status(), 404);
}

#[tokio::test]
async fn last_used_at_is_written_off_the_request_path() {
    let mut h = Harness::start().await;
    let (id, key) = h.create_key(&[], None).await;
    assert_eq!(h.client.get(h.url("/v1/models")).bearer_auth(&key).send().await.unwrap().status(), 200);
    h.finish().await;
    let stored = h.store.inner.get_credential(id).await.unwrap().unwrap();
    assert!(stored.last_used_at.is_some());
}
