//! Token caps of issued tokens (issue 5, `gatehouse_gateway::caps`): a token exchanged with
//! `max_tokens` may use at most that many tokens over all its calls; exchange only lowers it.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_auth::{Env, LocalKeyProvider, MasterKey};
use gatehouse_oauth::{NewClient, OAuth, OAuthDeps, TracingEvents, token_types};
use gatehouse_store::Store;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::harness::Harness;

async fn exchange(h: &Harness, id: &str, secret: &str, subject: &str, subject_type: &str, cap: &str) -> (u16, Value) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
            ("max_tokens", cap),
        ])
        .finish();
    let r = h
        .client
        .post(h.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_capped_token_is_refused_once_its_tokens_are_used_up_and_exchange_only_lowers_the_cap() {
    let h = Harness::start().await;
    let oauth = OAuth::new(OAuthDeps {
        store: h.store.clone() as Arc<dyn Store>,
        bus: h.bus.clone(),
        peppers: h.peppers.clone(),
        key_provider: Arc::new(LocalKeyProvider::new(&MasterKey::generate().unwrap())),
        env: Env::Live,
        issuer: "http://127.0.0.1:8080".into(),
        events: Arc::new(TracingEvents),
    });
    let (client, secret) = oauth
        .create_client(NewClient {
            team_id: h.team_id,
            app_id: h.app_id,
            name: "capped".into(),
            auth_method: "client_secret_basic".into(),
            public_jwk: None,
            token_format: "opaque".into(),
            scopes: vec![],
            models: vec![],
            audiences: vec![],
            access_ttl: Duration::from_secs(600),
            tls_client_certificate_bound_access_tokens: false,
        })
        .await
        .unwrap();
    let (id, secret) = (client.id.to_string(), secret.unwrap().expose_secret().to_string());
    let (st, v) = exchange(&h, &id, &secret, &h.key, token_types::API_KEY, "40").await;
    assert_eq!(st, 200, "{v}");
    let capped = v["access_token"].as_str().unwrap().to_string();
    // A child may not raise the cap; it may lower it.
    let (st, v) = exchange(&h, &id, &secret, &capped, token_types::ACCESS_TOKEN, "41").await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_scope")));
    let (st, _) = exchange(&h, &id, &secret, &capped, token_types::ACCESS_TOKEN, "20").await;
    assert_eq!(st, 200);

    // Each call: 5 prompt + 3 completion tokens at the mock. No `max_tokens` in the request: the
    // cap reserves only the input estimate, so a small cap is not refused up front.
    let mut used = 0u64;
    let mut refused = None;
    for n in 1..=12 {
        let r = h.post("/v1/chat/completions", Some(&capped), &json!({"model": "demo", "messages": [{"role": "user", "content": "hello there"}]})).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if status == 200 {
            assert!(refused.is_none(), "a call succeeded after the cap was reached");
            used += body["usage"]["total_tokens"].as_u64().unwrap();
        } else {
            assert_eq!(status, 429, "{body}");
            assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("cap of 40 tokens"), "{body}");
            refused.get_or_insert(n);
        }
    }
    let first_refused = refused.expect("the cap was never enforced");
    // Admitted while used + input estimate ≤ 40: four calls (32 tokens), never a sixth.
    assert!((4..=5).contains(&first_refused), "first refused at call {first_refused} ({used} tokens used)");
    // Overrun is bounded by the calls in flight (here one at a time): at most one call's usage.
    assert!(used <= 48, "used {used} tokens under a cap of 40");
    // The API key itself carries no cap and keeps working.
    assert_eq!(h.chat("demo", None).await.status(), 200);
}
