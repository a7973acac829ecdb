//! OAuth authorization server on the data plane (issue 5): `token-security.md` §4.4 cases
//! T38 (single node), T41–T45, plus the client-credentials, exchange, single-use, revocation and
//! JWT flows end to end over HTTP.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use gatehouse_auth::{Env, LocalKeyProvider, MasterKey};
use gatehouse_oauth::{NewClient, OAuth, OAuthDeps, TracingEvents, token_types};
use gatehouse_store::{OAuthClient, Store};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::harness::Harness;

const ISSUER: &str = "http://127.0.0.1:8080";

/// Registers clients through the library (what the admin API does), sharing the harness store.
pub(crate) fn admin(h: &Harness) -> OAuth {
    OAuth::new(OAuthDeps {
        store: h.store.clone() as Arc<dyn Store>,
        bus: h.bus.clone(),
        peppers: h.peppers.clone(),
        key_provider: Arc::new(LocalKeyProvider::new(&MasterKey::generate().unwrap())),
        env: Env::Live,
        issuer: ISSUER.into(),
        events: Arc::new(TracingEvents),
    })
}

pub(crate) struct Client {
    pub(crate) record: OAuthClient,
    pub(crate) secret: String,
}

pub(crate) async fn client(h: &Harness, scopes: &[&str], models: &[&str], format: &str) -> Client {
    let (record, secret) = admin(h)
        .create_client(NewClient {
            team_id: h.team_id,
            app_id: h.app_id,
            name: "svc".into(),
            auth_method: "client_secret_basic".into(),
            public_jwk: None,
            token_format: format.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            models: models.iter().map(|s| s.to_string()).collect(),
            audiences: vec!["https://other.example".into()],
            access_ttl: Duration::from_secs(600),
            tls_client_certificate_bound_access_tokens: false,
        })
        .await
        .unwrap();
    Client { record, secret: secret.unwrap().expose_secret().to_string() }
}

impl Client {
    pub(crate) fn id(&self) -> String {
        self.record.id.to_string()
    }
}

pub(crate) async fn form(h: &Harness, path: &str, c: Option<&Client>, params: &[(&str, &str)]) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let mut req = h.client.post(h.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body);
    if let Some(c) = c {
        req = req.basic_auth(c.id(), Some(&c.secret));
    }
    req.send().await.unwrap()
}

pub(crate) async fn token(h: &Harness, c: &Client, params: &[(&str, &str)]) -> Value {
    let resp = form(h, "/oauth/token", Some(c), params).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    resp.json().await.unwrap()
}

async fn cc_token(h: &Harness, c: &Client) -> String {
    token(h, c, &[("grant_type", "client_credentials")]).await["access_token"].as_str().unwrap().to_string()
}

pub(crate) async fn chat_with(h: &Harness, key: &str) -> reqwest::Response {
    h.post("/v1/chat/completions", Some(key), &json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})).await
}

pub(crate) async fn assert_invalid_token(resp: reqwest::Response) {
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"gatehouse\", error=\"invalid_token\"");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
}

pub(crate) async fn oauth_error(resp: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], error, "{v}");
    v
}

#[tokio::test]
async fn client_credentials_opaque_token_calls_v1_and_is_logged_by_jti() {
    let mut h = Harness::start().await;
    let c = client(&h, &["chat:invoke", "models:read"], &["demo"], "opaque").await;
    let v = token(&h, &c, &[("grant_type", "client_credentials")]).await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 600);
    assert_eq!(v["scope"], "chat:invoke models:read");
    assert!(v.get("refresh_token").is_none());
    let at = v["access_token"].as_str().unwrap();
    assert!(at.starts_with("gtha_live_"));
    assert_eq!(chat_with(&h, at).await.status(), 200);
    // Scheme case-insensitive (T03) for tokens too.
    let resp = h.client.get(h.url("/v1/models")).header("authorization", format!("bEaReR {at}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client's model allow-list applies like an API key's.
    let resp = h.post("/v1/chat/completions", Some(at), &json!({"model": "demo-claude", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert!(resp.status() == 403 || resp.status() == 404, "{}", resp.status());
    // The token's scopes go through the same check as an API key's (T15 for tokens).
    let resp = h.post("/v1/embeddings", Some(at), &json!({"model": "demo", "input": "hi"})).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"embeddings:invoke\"");
    let logs = h.finish().await;
    let v1: Vec<_> = logs.iter().filter(|l| l.endpoint.contains(" /v1/")).collect();
    assert_eq!(v1.len(), 4);
    let ok: Vec<_> = v1.iter().filter(|l| l.status == 200).collect();
    assert_eq!(ok.len(), 2);
    assert!(ok.iter().all(|l| l.credential_id.is_some() && l.team_id == Some(h.team_id)));
    // Token-endpoint calls are logged too, without any credential id.
    assert!(logs.iter().any(|l| l.endpoint == "POST /oauth/token" && l.credential_id.is_none()));
    let dump = h.store.debug_dump().await.unwrap();
    assert!(!dump.contains(at) && !dump.contains(&c.secret), "no plaintext token or secret stored");
}

#[tokio::test]
async fn t41_bad_client_secret_via_basic_is_401_invalid_client_with_basic_challenge() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let wrong = Client { record: c.record.clone(), secret: gatehouse_auth::generate(gatehouse_auth::TokenKind::ClientSecret, Env::Live).unwrap().token.expose_secret().to_string() };
    for who in [&wrong, &Client { record: c.record.clone(), secret: "garbage".into() }] {
        let resp = form(&h, "/oauth/token", Some(who), &[("grant_type", "client_credentials")]).await;
        assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"gatehouse\"");
        let v = oauth_error(resp, 401, "invalid_client").await;
        assert!(!v.to_string().contains(&who.secret));
    }
    // No authentication at all.
    let resp = form(&h, "/oauth/token", None, &[("grant_type", "client_credentials")]).await;
    oauth_error(resp, 401, "invalid_client").await;
    // A revoked client is refused.
    admin(&h).revoke_client(c.record.id).await.unwrap();
    let resp = form(&h, "/oauth/token", Some(&c), &[("grant_type", "client_credentials")]).await;
    oauth_error(resp, 401, "invalid_client").await;
}

/// RFC 6749 §3.2.1: HTTP Basic for one client with a body `client_id` of another → 400
/// `invalid_request`; the same client in both is fine.
#[tokio::test]
async fn token_endpoint_basic_auth_with_another_clients_body_client_id_is_invalid_request() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let other = client(&h, &[], &[], "opaque").await;
    for bad in [other.id(), "not-a-client".to_string()] {
        let resp = form(&h, "/oauth/token", Some(&c), &[("grant_type", "client_credentials"), ("client_id", &bad)]).await;
        let v = oauth_error(resp, 400, "invalid_request").await;
        assert!(!v.to_string().contains(&c.secret));
    }
    let same = token(&h, &c, &[("grant_type", "client_credentials"), ("client_id", &c.id())]).await;
    assert!(same["access_token"].is_string(), "{same}");
}

#[tokio::test]
async fn t42_token_endpoint_rejects_duplicate_params_get_unknown_grant_and_broad_scope() {
    let h = Harness::start().await;
    let c = client(&h, &["chat:invoke"], &[], "opaque").await;
    let resp = form(&h, "/oauth/token", Some(&c), &[("grant_type", "client_credentials"), ("scope", "chat:invoke"), ("scope", "chat:invoke")]).await;
    oauth_error(resp, 400, "invalid_request").await;
    let resp = h.client.get(h.url("/oauth/token")).basic_auth(c.id(), Some(&c.secret)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let resp = form(&h, "/oauth/token", Some(&c), &[("grant_type", "password")]).await;
    oauth_error(resp, 400, "unsupported_grant_type").await;
    let resp = form(&h, "/oauth/token", Some(&c), &[("grant_type", "client_credentials"), ("scope", "chat:invoke embeddings:invoke")]).await;
    oauth_error(resp, 400, "invalid_scope").await;
    // Scope values are case-sensitive (RFC 6749 §3.3).
    let resp = form(&h, "/oauth/token", Some(&c), &[("grant_type", "client_credentials"), ("scope", "Chat:Invoke")]).await;
    oauth_error(resp, 400, "invalid_scope").await;
    // Not urlencoded → invalid_request; client_secret in the body is not supported.
    let resp = h.client.post(h.url("/oauth/token")).basic_auth(c.id(), Some(&c.secret)).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
    oauth_error(resp, 400, "invalid_request").await;
    let resp = form(&h, "/oauth/token", None, &[("grant_type", "client_credentials"), ("client_id", &c.id()), ("client_secret", &c.secret)]).await;
    let v = oauth_error(resp, 400, "invalid_request").await;
    assert!(!v.to_string().contains(&c.secret));
    // An empty value counts as absent: scope= → the client's scopes.
    let v = token(&h, &c, &[("grant_type", "client_credentials"), ("scope", "")]).await;
    assert_eq!(v["scope"], "chat:invoke");
}

#[tokio::test]
async fn t43_revocation_of_garbage_and_foreign_tokens_is_200_and_own_revocation_is_immediate() {
    let h = Harness::start().await;
    let a = client(&h, &[], &[], "opaque").await;
    let b = client(&h, &[], &[], "opaque").await;
    let at = cc_token(&h, &a).await;
    for garbage in ["garbage", "gtha_live_0000000000000000000000000000000000000000000000000"] {
        let resp = form(&h, "/oauth/revoke", Some(&a), &[("token", garbage)]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    // Client B may not revoke A's token: 200, but the token keeps working.
    let resp = form(&h, "/oauth/revoke", Some(&b), &[("token", &at)]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(chat_with(&h, &at).await.status(), 200);
    // A revokes its own token: the very next use fails (cache dropped through the bus).
    let resp = form(&h, "/oauth/revoke", Some(&a), &[("token", &at), ("token_type_hint", "refresh_token")]).await;
    assert_eq!(resp.status(), 200);
    assert_invalid_token(chat_with(&h, &at).await).await;
    // Revocation needs client authentication.
    let resp = form(&h, "/oauth/revoke", None, &[("token", &at)]).await;
    oauth_error(resp, 401, "invalid_client").await;
}

#[tokio::test]
async fn t44_introspection_inactive_is_exactly_active_false_and_needs_authentication() {
    let h = Harness::start().await;
    let a = client(&h, &["chat:invoke", "models:read"], &["demo"], "opaque").await;
    let b = client(&h, &[], &[], "opaque").await;
    let at = cc_token(&h, &a).await;
    let resp = form(&h, "/oauth/introspect", Some(&a), &[("token", &at)]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "chat:invoke models:read");
    assert_eq!(v["client_id"], a.id());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["iss"], ISSUER);
    assert_eq!(v["models"], json!(["demo"]));
    assert!(v["exp"].as_i64().unwrap() > v["iat"].as_i64().unwrap());
    for (who, tok) in [(&a, "garbage"), (&b, at.as_str()), (&a, &h.key.clone())] {
        let resp = form(&h, "/oauth/introspect", Some(who), &[("token", tok)]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({"active": false}));
    }
    let resp = form(&h, "/oauth/introspect", None, &[("token", &at)]).await;
    oauth_error(resp, 401, "invalid_client").await;
    form(&h, "/oauth/revoke", Some(&a), &[("token", &at)]).await;
    let resp = form(&h, "/oauth/introspect", Some(&a), &[("token", &at)]).await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"active": false}));
}

pub(crate) fn exchange<'a>(subject: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject),
        ("subject_token_type", token_types::ACCESS_TOKEN),
    ];
    for (k, v) in extra {
        if let Some(slot) = p.iter_mut().find(|(pk, _)| pk == k && *k == "subject_token_type") {
            slot.1 = v;
        } else {
            p.push((k, v));
        }
    }
    p
}

#[tokio::test]
async fn t45_token_exchange_never_broadens() {
    let h = Harness::start().await;
    let c = client(&h, &["chat:invoke", "models:read"], &[], "opaque").await;
    let narrow = client(&h, &["chat:invoke"], &[], "opaque").await;
    let subject = token(&h, &narrow, &[("grant_type", "client_credentials")]).await["access_token"].as_str().unwrap().to_string();
    // Broader scope than the subject token → invalid_scope.
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&subject, &[("scope", "chat:invoke models:read")])).await;
    oauth_error(resp, 400, "invalid_scope").await;
    // Foreign audience → invalid_target.
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&subject, &[("audience", "https://evil.example")])).await;
    oauth_error(resp, 400, "invalid_target").await;
    // actor_token without actor_token_type → invalid_request.
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&subject, &[("actor_token", &subject)])).await;
    oauth_error(resp, 400, "invalid_request").await;
    // Expired (here: revoked, then an expired API key) subject → invalid_request.
    let (_, expired) = h.create_key(&[], Some(gatehouse_types::now() - time::Duration::seconds(5))).await;
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&expired, &[("subject_token_type", token_types::API_KEY)])).await;
    oauth_error(resp, 400, "invalid_request").await;
    let resp = form(&h, "/oauth/token", Some(&c), &exchange("garbage", &[])).await;
    oauth_error(resp, 400, "invalid_request").await;
    // A longer lifetime than the subject's is clipped; max_tokens only lowers.
    let v = token(&h, &c, &exchange(&subject, &[("expires_in", "60"), ("max_tokens", "100")])).await;
    assert_eq!(v["expires_in"], 60);
    assert_eq!(v["scope"], "chat:invoke");
    assert_eq!(v["issued_token_type"], token_types::ACCESS_TOKEN);
    let child = v["access_token"].as_str().unwrap().to_string();
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&child, &[("max_tokens", "200")])).await;
    oauth_error(resp, 400, "invalid_scope").await;
    // The allowed audience is accepted; act records the client.
    let v = token(&h, &c, &exchange(&subject, &[("audience", "https://other.example")])).await;
    let bound = v["access_token"].as_str().unwrap().to_string();
    let intro: Value = form(&h, "/oauth/introspect", Some(&c), &[("token", &bound)]).await.json().await.unwrap();
    assert_eq!(intro["aud"], "https://other.example");
    assert_eq!(intro["act"], json!({"sub": c.id()}));
    // A token bound to another audience is not accepted by this resource.
    assert_invalid_token(chat_with(&h, &bound).await).await;
    // Revoking the subject revokes what was derived from it.
    assert_eq!(chat_with(&h, &child).await.status(), 200);
    form(&h, "/oauth/revoke", Some(&narrow), &[("token", &subject)]).await;
    assert_invalid_token(chat_with(&h, &child).await).await;
}

#[tokio::test]
async fn t38_single_use_token_from_api_key_exchange_succeeds_exactly_once_under_20_parallel_calls() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let v = token(&h, &c, &exchange(&h.key, &[("subject_token_type", token_types::API_KEY), ("requested_token_type", token_types::SINGLE_USE), ("scope", "chat:invoke")])).await;
    assert_eq!(v["issued_token_type"], token_types::SINGLE_USE);
    assert_eq!(v["expires_in"], 300);
    let su = v["access_token"].as_str().unwrap().to_string();
    assert!(su.starts_with("gths_live_"));
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (h, su) = (h.clone(), su.clone());
        tasks.push(tokio::spawn(async move { chat_with(&h, &su).await.status().as_u16() }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 401).count(), 19, "{codes:?}");
    assert_invalid_token(chat_with(&h, &su).await).await;
}

#[tokio::test]
async fn jwt_access_tokens_verify_publish_jwks_and_die_on_revocation() {
    let h = Harness::start().await;
    let c = client(&h, &["chat:invoke", "models:read"], &[], "jwt").await;
    let at = cc_token(&h, &c).await;
    let parts: Vec<&str> = at.split('.').collect();
    assert_eq!(parts.len(), 3);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], ISSUER);
    assert_eq!(claims["client_id"], c.id());
    assert_eq!(claims["sub"], c.id());
    assert_eq!(claims["scope"], "chat:invoke models:read");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    let jwks: Value = h.client.get(h.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert!(jwks["keys"][0].get("d").is_none());
    assert_eq!(chat_with(&h, &at).await.status(), 200);
    // Tampered payload → 401.
    let forged = format!("{}.{}.{}", parts[0], b64.encode(serde_json::to_vec(&json!({"scope": "chat:invoke embeddings:invoke"})).unwrap()), parts[2]);
    assert_invalid_token(chat_with(&h, &forged).await).await;
    // alg none (T18) and an attacker jwk header (T20).
    for hdr in [json!({"alg": "none", "typ": "at+jwt"}), json!({"alg": "ES256", "typ": "at+jwt", "kid": header["kid"], "jwk": jwks["keys"][0]})] {
        let t = format!("{}.{}.{}", b64.encode(serde_json::to_vec(&hdr).unwrap()), parts[1], parts[2]);
        assert_invalid_token(chat_with(&h, &t).await).await;
    }
    // Revocation by jti: the next use fails.
    let resp = form(&h, "/oauth/revoke", Some(&c), &[("token", &at)]).await;
    assert_eq!(resp.status(), 200);
    assert_invalid_token(chat_with(&h, &at).await).await;
}

#[tokio::test]
async fn metadata_documents_are_published() {
    let h = Harness::start().await;
    let v: Value = h.client.get(h.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["issuer"], ISSUER);
    assert_eq!(v["token_endpoint"], format!("{ISSUER}/oauth/token"));
    assert_eq!(v["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(v["grant_types_supported"], json!(["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]));
    assert!(v["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().iter().all(|a| a != "none"));
    let r: Value = h.client.get(h.url("/.well-known/oauth-protected-resource")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["resource"], ISSUER);
    assert_eq!(r["bearer_methods_supported"], json!(["header"]));
}

/// Exchanges `subject` (an API key when `key`) once more with `c`; the new access token.
pub(crate) async fn derive(h: &Harness, c: &Client, subject: &str, key: bool) -> String {
    let extra: Vec<(&str, &str)> = if key { vec![("subject_token_type", token_types::API_KEY)] } else { vec![] };
    token(h, c, &exchange(subject, &extra)).await["access_token"].as_str().unwrap().to_string()
}

pub(crate) async fn introspect_active(h: &Harness, c: &Client, t: &str) -> bool {
    let v: Value = form(h, "/oauth/introspect", Some(c), &[("token", t)]).await.json().await.unwrap();
    v["active"] == json!(true)
}

#[tokio::test]
async fn h2_revocation_reaches_every_generation_of_derived_tokens() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let j = client(&h, &[], &[], "jwt").await;
    // Revoking the root key kills generations 1–3 (opaque and JWT).
    let (key_id, key) = h.create_key(&[], None).await;
    let g1 = derive(&h, &c, &key, true).await;
    let g2 = derive(&h, &c, &g1, false).await;
    let g3 = derive(&h, &j, &g2, false).await;
    for t in [&g1, &g2, &g3] {
        assert_eq!(chat_with(&h, t).await.status(), 200);
    }
    h.revoke(key_id, &key).await;
    for t in [&g1, &g2, &g3] {
        assert_invalid_token(chat_with(&h, t).await).await;
    }
    assert!(!introspect_active(&h, &c, &g2).await);
    assert!(!introspect_active(&h, &j, &g3).await);
    // Revoking generation 1 kills generation 3.
    let (_, key) = h.create_key(&[], None).await;
    let g1 = derive(&h, &c, &key, true).await;
    let g2 = derive(&h, &c, &g1, false).await;
    let g3 = derive(&h, &c, &g2, false).await;
    assert_eq!(chat_with(&h, &g3).await.status(), 200);
    assert_eq!(form(&h, "/oauth/revoke", Some(&c), &[("token", &g1)]).await.status(), 200);
    assert_invalid_token(chat_with(&h, &g3).await).await;
    assert!(!introspect_active(&h, &c, &g3).await);
}

#[tokio::test]
async fn h3_suspended_key_cannot_be_exchanged_and_its_derived_tokens_fail() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let (key_id, key) = h.create_key(&[], None).await;
    let g1 = derive(&h, &c, &key, true).await;
    let g2 = derive(&h, &c, &g1, false).await;
    assert_eq!(chat_with(&h, &g2).await.status(), 200);
    assert!(h.store.suspend_credential(key_id, gatehouse_types::now()).await.unwrap());
    gatehouse_store::Bus::publish(h.bus.as_ref(), gatehouse_store::BusEvent::CredentialChanged { id: key_id, digest: h.peppers.digest(&key).to_vec() });
    assert_invalid_token(chat_with(&h, &g1).await).await;
    assert_invalid_token(chat_with(&h, &g2).await).await;
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&key, &[("subject_token_type", token_types::API_KEY)])).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn h4_exchange_is_checked_against_the_keys_ip_allow_list() {
    let h = Harness::start().await;
    let c = client(&h, &[], &[], "opaque").await;
    let (_, key) = h.create_key_with(&[], None, |k| k.security.ip_allow = vec!["10.0.0.0/8".into()]).await;
    let resp = form(&h, "/oauth/token", Some(&c), &exchange(&key, &[("subject_token_type", token_types::API_KEY)])).await;
    oauth_error(resp, 400, "invalid_grant").await;
}

/// Issue 7 item 5: `services:invoke` is a data-plane scope of the authorization server, so a
/// client granted it gets client-credentials tokens carrying it, and `/svc/…` admits them past
/// the scope check (an unknown service then answers 404, not 403 `insufficient_scope`).
#[tokio::test]
async fn services_invoke_is_an_oauth_scope_and_passes_the_svc_scope_check() {
    let h = Harness::start().await;
    let c = client(&h, &["services:invoke"], &[], "opaque").await;
    let v = token(&h, &c, &[("grant_type", "client_credentials"), ("scope", "services:invoke")]).await;
    assert_eq!(v["scope"], "services:invoke");
    let at = v["access_token"].as_str().unwrap();
    let resp = h.client.get(h.url("/svc/no-such-service/x")).bearer_auth(at).send().await.unwrap();
    assert_eq!(resp.status(), 404, "past the scope check");
    // A token without the scope is stopped at the scope check.
    let chat = client(&h, &["chat:invoke"], &[], "opaque").await;
    let at = cc_token(&h, &chat).await;
    let resp = h.client.get(h.url("/svc/no-such-service/x")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"services:invoke\"");
    let meta: Value = h.client.get(h.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert!(meta["scopes_supported"].as_array().unwrap().iter().any(|s| s == "services:invoke"));
}

async fn single_use(h: &Harness, scopes: &[&str], models: &[&str]) -> String {
    let t = admin(h)
        .mint_single_use(
            h.team_id,
            h.app_id,
            "once",
            scopes.iter().map(|s| s.to_string()).collect(),
            models.iter().map(|s| s.to_string()).collect(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    t.access_token.expose_secret().to_string()
}

/// L3 (b): calls refused for the client's own mistake before reaching the upstream — request
/// validation (400), a model outside the token (403), a scope it lacks (403) — do not consume a
/// single-use token; the first admitted call does, and the next one is 401.
#[tokio::test]
async fn l3b_single_use_token_is_not_consumed_by_calls_refused_before_the_upstream() {
    let h = Harness::start().await;
    let su = single_use(&h, &["chat:invoke"], &["demo"]).await;
    let invalid = json!({"model": "demo", "temperature": 7, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(h.post("/v1/chat/completions", Some(&su), &invalid).await.status(), 400);
    let other_model = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(h.post("/v1/chat/completions", Some(&su), &other_model).await.status(), 403);
    assert_eq!(h.post("/v1/embeddings", Some(&su), &json!({"model": "demo", "input": "x"})).await.status(), 403);
    let garbage = h.client.post(h.url("/v1/chat/completions")).bearer_auth(&su).header("content-type", "application/json").body("{").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(chat_with(&h, &su).await.status(), 200);
    assert_invalid_token(chat_with(&h, &su).await).await;
}

/// L3 (b) under contention: with consumption moved after admission, 30 concurrent calls still
/// give exactly one 200; every other one is 401 with the `invalid_token` challenge.
#[tokio::test]
async fn l3b_deferred_single_use_still_succeeds_exactly_once_under_30_parallel_calls() {
    let h = Arc::new(Harness::start().await);
    let su = single_use(&h, &[], &[]).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (h, su, barrier) = (h.clone(), su.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = chat_with(&h, &su).await;
            let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), challenge)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (401, Some(c)) => assert_eq!(c, "Bearer realm=\"gatehouse\", error=\"invalid_token\""),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 1);
}
