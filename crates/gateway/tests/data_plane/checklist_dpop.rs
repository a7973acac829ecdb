//! `token-security.md` §4.4 over HTTP: DPoP on the data plane and at the token endpoint
//! (T26–T29, RFC 9449 §4.3, §5, §7, §8–9), the challenge offered without credentials (T01 with
//! DPoP enabled), revocation across two gateway nodes sharing store and bus (T14, one process),
//! and no proof or key in any answer, audit record or stored text (T36 for DPoP). Each case
//! asserts status, `WWW-Authenticate` and body.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse_auth::dpop::{ath, jwk_thumbprint};
use gatehouse_auth::{Env, LocalKeyProvider, MasterKey};
use gatehouse_gateway::dpop::DpopSettings;
use gatehouse_gateway::{Gateway, GatewayDeps, GatewaySettings};
use gatehouse_oauth::{NewClient, OAuth, OAuthDeps, TracingEvents};
use gatehouse_providers::{Timeouts, Upstream};
use gatehouse_store::{AuditQuery, Store};
use gatehouse_types::{new_id, now};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{Harness, Options};

const CHAT: &str = "/v1/chat/completions";
const PROOF_CHALLENGE: &str = "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\", error=\"invalid_dpop_proof\"";
const NONCE_CHALLENGE: &str = "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\", error=\"use_dpop_nonce\"";
const DPOP_INVALID_TOKEN: &str = "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\", error=\"invalid_token\"";
const BEARER_INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

/// A client's DPoP key pair (EC P-256, ES256).
struct DpopKey {
    kp: EcdsaKeyPair,
}

impl DpopKey {
    fn new() -> Self {
        Self { kp: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap() }
    }
    fn jwk(&self) -> Value {
        let p = self.kp.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
    }
    fn jkt(&self) -> String {
        jwk_thumbprint(self.jwk().as_object().unwrap()).unwrap()
    }
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let h = B64.encode(header.to_string());
        let c = B64.encode(claims.to_string());
        let sig = self.kp.sign(&SystemRandom::new(), format!("{h}.{c}").as_bytes()).unwrap();
        format!("{h}.{c}.{}", B64.encode(sig.as_ref()))
    }
    /// A proof for `method` on `htu` (with `ath` of `token`), edited before signing.
    fn proof_with(&self, method: &str, htu: &str, token: Option<&str>, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = json!({"jti": new_id().to_string(), "htm": method, "htu": htu, "iat": now().unix_timestamp()});
        if let Some(t) = token {
            claims["ath"] = json!(ath(t));
        }
        edit(&mut header, &mut claims);
        self.sign(&header, &claims)
    }
    fn proof(&self, method: &str, htu: &str, token: Option<&str>) -> String {
        self.proof_with(method, htu, token, |_, _| {})
    }
}

fn chat_body() -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
}

async fn dpop_post(h: &Harness, path: &str, token: &str, proofs: &[&str], body: &Value) -> reqwest::Response {
    let mut req = h.client.post(h.url(path)).header("authorization", format!("DPoP {token}")).json(body);
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    req.send().await.unwrap()
}

async fn dpop_chat(h: &Harness, token: &str, proofs: &[&str]) -> reqwest::Response {
    dpop_post(h, CHAT, token, proofs, &chat_body()).await
}

/// Status, every `WWW-Authenticate` line, `DPoP-Nonce`, body.
async fn answer(resp: reqwest::Response) -> (u16, Vec<String>, Option<String>, Value) {
    let status = resp.status().as_u16();
    let challenges = resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let nonce = resp.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, challenges, nonce, body)
}

async fn audit(h: &Harness, kind: &str) -> Vec<gatehouse_store::AuditEvent> {
    h.audit.flush().await;
    h.store.query_audit_events(&AuditQuery { event_type: Some(kind.into()), ..Default::default() }).await.unwrap()
}

fn with_dpop(dpop: DpopSettings) -> Options {
    Options { settings: GatewaySettings { dpop, ..GatewaySettings::default() }, ..Options::default() }
}

// ------------------------------------------------------------------ resource requests

#[tokio::test]
async fn t27_bound_key_with_a_fresh_proof_per_request_is_200_and_a_replayed_proof_is_401() {
    let h = Harness::start().await;
    let k = DpopKey::new();
    let (id, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(k.jkt())).await;
    let htu = h.url(CHAT);
    let first = k.proof("POST", &htu, Some(&key));
    let resp = dpop_chat(&h, &key, &[&first]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("dpop-nonce").is_none(), "nonces are off by default");
    let second = k.proof("POST", &htu, Some(&key));
    assert_eq!(dpop_chat(&h, &key, &[&second]).await.status(), 200);
    // The same proof again (same jti, same htu) within the window.
    let (status, challenges, _, body) = answer(dpop_chat(&h, &key, &[&first]).await).await;
    assert_eq!(status, 401);
    assert_eq!(challenges, vec![PROOF_CHALLENGE.to_string()]);
    assert_eq!(body["error"]["code"], "invalid_dpop_proof");
    assert_eq!(body["error"]["type"], "authentication_error");
    let text = body.to_string();
    assert!(!text.contains(&key) && !text.contains(&first));
    let replays = audit(&h, "dpop.replay_rejected").await;
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].event.credential_id, Some(id));
    assert_eq!(replays[0].event.reason.as_deref(), Some("dpop_replay"));
    // G-11 / T36: neither the key nor a proof is stored anywhere (audit, call log, credentials).
    let dump = h.store.debug_dump().await.unwrap();
    for secret in [&key, &first, &second] {
        assert!(!dump.contains(secret.as_str()));
    }
}

#[tokio::test]
async fn t27_negative_proofs_over_http_are_401_dpop_invalid_dpop_proof() {
    let h = Harness::start().await;
    let k = DpopKey::new();
    let other = DpopKey::new();
    let (id, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(k.jkt())).await;
    let htu = h.url(CHAT);
    let t = now().unix_timestamp();
    let p = |edit: &dyn Fn(&mut Value, &mut Value)| k.proof_with("POST", &htu, Some(&key), |hd, cl| edit(hd, cl));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("no proof", vec![], "dpop_missing"),
        ("two DPoP headers", vec![k.proof("POST", &htu, Some(&key)), k.proof("POST", &htu, Some(&key))], "dpop_multiple"),
        ("not a JWT", vec!["abc".into()], "dpop_malformed"),
        ("typ missing", vec![p(&|h, _| { h.as_object_mut().unwrap().remove("typ"); })], "dpop_typ"),
        ("typ JWT", vec![p(&|h, _| h["typ"] = json!("JWT"))], "dpop_typ"),
        ("typ at+jwt", vec![p(&|h, _| h["typ"] = json!("at+jwt"))], "dpop_typ"),
        ("alg none", vec![p(&|h, _| h["alg"] = json!("none"))], "dpop_alg"),
        ("alg HS256", vec![p(&|h, _| h["alg"] = json!("HS256"))], "dpop_alg"),
        ("alg RS256", vec![p(&|h, _| h["alg"] = json!("RS256"))], "dpop_alg"),
        ("jwk missing", vec![p(&|h, _| { h.as_object_mut().unwrap().remove("jwk"); })], "dpop_jwk"),
        ("private key in jwk", vec![p(&|h, _| h["jwk"]["d"] = json!(B64.encode([7u8; 32])))], "dpop_private_key"),
        ("jwk of another key", vec![p(&|h, _| h["jwk"] = other.jwk())], "dpop_signature"),
        ("htm GET on a POST", vec![p(&|_, c| c["htm"] = json!("GET"))], "dpop_htm"),
        ("htu of another route", vec![p(&|_, c| c["htu"] = json!(h.url("/v1/embeddings")))], "dpop_htu"),
        ("htu of another host", vec![p(&|_, c| c["htu"] = json!("http://attacker.example/v1/chat/completions"))], "dpop_htu"),
        ("ath of another token", vec![p(&|_, c| c["ath"] = json!(ath("gthk_live_other")))], "dpop_ath"),
        ("ath missing", vec![p(&|_, c| { c.as_object_mut().unwrap().remove("ath"); })], "dpop_ath"),
        ("jti missing", vec![p(&|_, c| { c.as_object_mut().unwrap().remove("jti"); })], "dpop_claims"),
        ("iat as a string", vec![p(&|_, c| c["iat"] = json!(t.to_string()))], "dpop_claims"),
        ("iat 1 h ago", vec![p(&|_, c| c["iat"] = json!(t - 3600))], "dpop_iat"),
        ("iat in 1 h", vec![p(&|_, c| c["iat"] = json!(t + 3600))], "dpop_iat"),
        ("iat 61 s ago", vec![p(&|_, c| c["iat"] = json!(t - 61))], "dpop_iat"),
    ];
    for (name, proofs, _) in &cases {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let (status, challenges, nonce, body) = answer(dpop_chat(&h, &key, &refs).await).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(challenges, vec![PROOF_CHALLENGE.to_string()], "{name}");
        assert_eq!(nonce, None, "{name}");
        assert_eq!(body["error"]["code"], "invalid_dpop_proof", "{name}: {body}");
        assert!(!body.to_string().contains(&key), "{name}");
    }
    // Each refusal is audited with its reason; none consumed anything: a valid proof still works.
    let denied = audit(&h, "auth.denied").await;
    let mut reasons: Vec<String> = denied.iter().filter(|e| e.event.credential_id == Some(id)).filter_map(|e| e.event.reason.clone()).collect();
    let mut expected: Vec<String> = cases.iter().map(|c| c.2.to_string()).collect();
    reasons.sort();
    expected.sort();
    assert_eq!(reasons, expected);
    assert_eq!(dpop_chat(&h, &key, &[&k.proof("POST", &htu, Some(&key))]).await.status(), 200);
}

#[tokio::test]
async fn t27_nonce_required_is_401_use_dpop_nonce_with_the_nonce_then_200() {
    let h = Harness::start_with(with_dpop(DpopSettings { public_base_url: None, nonces: true, ..Default::default() })).await;
    let k = DpopKey::new();
    let (_, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(k.jkt())).await;
    let htu = h.url(CHAT);
    let (status, challenges, nonce, body) = answer(dpop_chat(&h, &key, &[&k.proof("POST", &htu, Some(&key))]).await).await;
    assert_eq!(status, 401);
    assert_eq!(challenges, vec![NONCE_CHALLENGE.to_string()]);
    assert_eq!(body["error"]["code"], "use_dpop_nonce");
    let nonce = nonce.expect("DPoP-Nonce on use_dpop_nonce");
    assert!(nonce.len() >= 22);
    // A made-up nonce is refused the same way.
    let wrong = k.proof_with("POST", &htu, Some(&key), |_, c| c["nonce"] = json!("made-up-nonce"));
    let (status, challenges, again, _) = answer(dpop_chat(&h, &key, &[&wrong]).await).await;
    assert_eq!((status, challenges), (401, vec![NONCE_CHALLENGE.to_string()]));
    assert!(again.is_some());
    // With the server's nonce: 200, and a nonce rides on the success too (§8.2).
    let good = k.proof_with("POST", &htu, Some(&key), |_, c| c["nonce"] = json!(nonce));
    let resp = dpop_chat(&h, &key, &[&good]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("dpop-nonce").is_some());
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn t28_proof_by_another_key_than_the_binding_is_401_dpop_invalid_token() {
    let h = Harness::start().await;
    let bound = DpopKey::new();
    let attacker = DpopKey::new();
    let (id, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(bound.jkt())).await;
    let proof = attacker.proof("POST", &h.url(CHAT), Some(&key));
    let (status, challenges, _, body) = answer(dpop_chat(&h, &key, &[&proof]).await).await;
    assert_eq!(status, 401);
    assert_eq!(challenges, vec![DPOP_INVALID_TOKEN.to_string()]);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let denied = audit(&h, "auth.denied").await;
    assert!(denied.iter().any(|e| e.event.credential_id == Some(id) && e.event.reason.as_deref() == Some("dpop_key_mismatch")));
    // An unbound key sent with the DPoP scheme and a valid proof: also invalid_token (§7.1).
    let proof = attacker.proof("POST", &h.url(CHAT), Some(&h.key));
    let (status, challenges, _, _) = answer(dpop_chat(&h, &h.key, &[&proof]).await).await;
    assert_eq!((status, challenges), (401, vec![DPOP_INVALID_TOKEN.to_string()]));
}

#[tokio::test]
async fn t29_htu_with_query_fragment_case_and_default_port_is_200_against_the_public_base_url() {
    let public = DpopSettings { public_base_url: Some("https://gw.example.com".into()), nonces: false, ..Default::default() };
    let h = Harness::start_with(with_dpop(public)).await;
    let k = DpopKey::new();
    let (_, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(k.jkt())).await;
    for htu in [
        "https://gw.example.com/v1/chat/completions",
        "https://GW.Example.COM/v1/chat/completions",
        "HTTPS://gw.example.com:443/v1/chat/completions",
        "https://gw.example.com/v1/chat/completions?stream=true#frag",
    ] {
        let resp = dpop_chat(&h, &key, &[&k.proof("POST", htu, Some(&key))]).await;
        assert_eq!(resp.status(), 200, "{htu}");
    }
    // The configured base wins over the Host the request came in with.
    for htu in [h.url(CHAT), "http://gw.example.com/v1/chat/completions".into(), "https://gw.example.com:8443/v1/chat/completions".into()] {
        let (status, challenges, _, _) = answer(dpop_chat(&h, &key, &[&k.proof("POST", &htu, Some(&key))]).await).await;
        assert_eq!((status, challenges), (401, vec![PROOF_CHALLENGE.to_string()]), "{htu}");
    }
}

#[tokio::test]
async fn t29_htu_derived_from_the_request_host_accepts_query_fragment_and_scheme_case() {
    let h = Harness::start().await;
    let k = DpopKey::new();
    let (_, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(k.jkt())).await;
    let upper = format!("HTTP://{}?q=1#f", h.url(CHAT).trim_start_matches("http://"));
    for htu in [h.url(CHAT), upper] {
        assert_eq!(dpop_chat(&h, &key, &[&k.proof("POST", &htu, Some(&key))]).await.status(), 200, "{htu}");
    }
    // GET /v1/models with a GET proof.
    let htu = h.url("/v1/models");
    let resp = h
        .client
        .get(&htu)
        .header("authorization", format!("dpop {key}"))
        .header("DPoP", k.proof("GET", &htu, Some(&key)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn t01_no_credential_offers_both_the_bearer_and_the_dpop_challenge() {
    let h = Harness::start().await;
    let (status, challenges, _, body) = answer(h.post(CHAT, None, &chat_body()).await).await;
    assert_eq!(status, 401);
    assert_eq!(challenges, vec!["Bearer realm=\"gatehouse\"".to_string(), "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\"".to_string()]);
    assert_eq!(body["error"]["code"], "missing_credential");
}

#[tokio::test]
async fn dpop_applies_on_the_anthropic_and_gemini_apis_in_their_error_shapes() {
    let h = Harness::start().await;
    let k = DpopKey::new();
    let (_, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some(k.jkt())).await;
    let messages = json!({"model": "demo-claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]});
    let htu = h.url("/v1/messages");
    let resp = dpop_post(&h, "/v1/messages", &key, &[&k.proof("POST", &htu, Some(&key))], &messages).await;
    assert_eq!(resp.status(), 200);
    let (status, challenges, _, body) = answer(dpop_post(&h, "/v1/messages", &key, &[], &messages).await).await;
    assert_eq!((status, challenges), (401, vec![PROOF_CHALLENGE.to_string()]));
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    let gemini = "/v1beta/models/demo:generateContent";
    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let wrong = k.proof("POST", &h.url("/v1/messages"), Some(&key));
    let (status, challenges, _, body) = answer(dpop_post(&h, gemini, &key, &[&wrong], &contents).await).await;
    assert_eq!((status, challenges), (401, vec![PROOF_CHALLENGE.to_string()]));
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
}

// ------------------------------------------------------------------ token endpoint

const ISSUER: &str = "http://127.0.0.1:8080";

struct Client {
    id: String,
    secret: String,
}

async fn client(h: &Harness, format: &str) -> Client {
    let admin = OAuth::new(OAuthDeps {
        store: h.store.clone() as Arc<dyn Store>,
        bus: h.bus.clone(),
        peppers: h.peppers.clone(),
        key_provider: Arc::new(LocalKeyProvider::new(&MasterKey::generate().unwrap())),
        env: Env::Live,
        issuer: ISSUER.into(),
        events: Arc::new(TracingEvents),
    });
    let (record, secret) = admin
        .create_client(NewClient {
            team_id: h.team_id,
            app_id: h.app_id,
            name: "agent".into(),
            auth_method: "client_secret_basic".into(),
            public_jwk: None,
            token_format: format.into(),
            scopes: vec![],
            models: vec![],
            audiences: vec![],
            access_ttl: Duration::from_secs(600),
            tls_client_certificate_bound_access_tokens: false,
        })
        .await
        .unwrap();
    Client { id: record.id.to_string(), secret: secret.unwrap().expose_secret().to_string() }
}

async fn token_request(h: &Harness, c: &Client, params: &[(&str, &str)], proof: Option<&str>) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let mut req = h
        .client
        .post(h.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(&c.id, Some(&c.secret))
        .body(body);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

async fn introspect(h: &Harness, c: &Client, token: &str) -> Value {
    let body: String = form_urlencoded::Serializer::new(String::new()).append_pair("token", token).finish();
    let resp = h
        .client
        .post(h.url("/oauth/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(&c.id, Some(&c.secret))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

const CC: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn t26_token_bound_at_the_token_endpoint_is_dpop_typed_refused_as_bearer_and_accepted_with_its_proof() {
    let h = Harness::start().await;
    let c = client(&h, "opaque").await;
    let k = DpopKey::new();
    let resp = token_request(&h, &c, &[CC], Some(&k.proof("POST", &h.url("/oauth/token"), None))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP");
    let at = v["access_token"].as_str().unwrap().to_string();
    let info = introspect(&h, &c, &at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(info["cnf"]["jkt"], k.jkt());
    // T26: presented as Bearer → 401 Bearer invalid_token.
    let (status, challenges, _, body) = answer(h.post(CHAT, Some(&at), &chat_body()).await).await;
    assert_eq!((status, challenges), (401, vec![BEARER_INVALID_TOKEN.to_string()]));
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // With a proof of its key → 200; of another key → 401 DPoP invalid_token (T28).
    assert_eq!(dpop_chat(&h, &at, &[&k.proof("POST", &h.url(CHAT), Some(&at))]).await.status(), 200);
    let (status, challenges, _, _) = answer(dpop_chat(&h, &at, &[&DpopKey::new().proof("POST", &h.url(CHAT), Some(&at))]).await).await;
    assert_eq!((status, challenges), (401, vec![DPOP_INVALID_TOKEN.to_string()]));
    // An unbound token from the same client is still a Bearer token.
    let v: Value = token_request(&h, &c, &[CC], None).await.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert!(introspect(&h, &c, v["access_token"].as_str().unwrap()).await.get("cnf").is_none());
}

#[tokio::test]
async fn jwt_access_tokens_carry_cnf_jkt_and_work_only_with_a_proof() {
    let h = Harness::start().await;
    let c = client(&h, "jwt").await;
    let k = DpopKey::new();
    let v: Value = token_request(&h, &c, &[CC, ("dpop_jkt", k.jkt().as_str())], None).await.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP");
    let at = v["access_token"].as_str().unwrap().to_string();
    let claims: Value = serde_json::from_slice(&B64.decode(at.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], k.jkt());
    assert_eq!(dpop_chat(&h, &at, &[&k.proof("POST", &h.url(CHAT), Some(&at))]).await.status(), 200);
    let (status, challenges, _, _) = answer(h.post(CHAT, Some(&at), &chat_body()).await).await;
    assert_eq!((status, challenges), (401, vec![BEARER_INVALID_TOKEN.to_string()]));
}

async fn oauth_error(resp: reqwest::Response, error: &str) -> reqwest::header::HeaderMap {
    assert_eq!(resp.status(), 400);
    let headers = resp.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], error, "{v}");
    headers
}

#[tokio::test]
async fn token_endpoint_refuses_bad_proofs_and_mismatched_or_malformed_dpop_jkt_with_400() {
    let h = Harness::start().await;
    let c = client(&h, "opaque").await;
    let k = DpopKey::new();
    let endpoint = h.url("/oauth/token");
    // A proof for another URL, with a wrong method, or of an old date.
    for bad in [
        k.proof("POST", &h.url(CHAT), None),
        k.proof("GET", &endpoint, None),
        k.proof_with("POST", &endpoint, None, |_, c| c["iat"] = json!(now().unix_timestamp() - 3600)),
        k.proof_with("POST", &endpoint, None, |h, _| h["alg"] = json!("none")),
    ] {
        oauth_error(token_request(&h, &c, &[CC], Some(&bad)).await, "invalid_dpop_proof").await;
    }
    // dpop_jkt naming another key than the proof's.
    let proof = k.proof("POST", &endpoint, None);
    oauth_error(token_request(&h, &c, &[CC, ("dpop_jkt", DpopKey::new().jkt().as_str())], Some(&proof)).await, "invalid_dpop_proof").await;
    oauth_error(token_request(&h, &c, &[CC, ("dpop_jkt", "not-a-thumbprint")], None).await, "invalid_request").await;
    // A proof is good for one token request only.
    let once = k.proof("POST", &endpoint, None);
    assert_eq!(token_request(&h, &c, &[CC, ("dpop_jkt", k.jkt().as_str())], Some(&once)).await.status(), 200);
    oauth_error(token_request(&h, &c, &[CC], Some(&once)).await, "invalid_dpop_proof").await;
}

#[tokio::test]
async fn token_endpoint_with_nonces_answers_400_use_dpop_nonce_with_the_nonce() {
    let h = Harness::start_with(with_dpop(DpopSettings { public_base_url: None, nonces: true, ..Default::default() })).await;
    let c = client(&h, "opaque").await;
    let k = DpopKey::new();
    let endpoint = h.url("/oauth/token");
    let headers = oauth_error(token_request(&h, &c, &[CC], Some(&k.proof("POST", &endpoint, None))).await, "use_dpop_nonce").await;
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_string();
    let proof = k.proof_with("POST", &endpoint, None, |_, c| c["nonce"] = json!(nonce));
    let resp = token_request(&h, &c, &[CC], Some(&proof)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("dpop-nonce").is_some());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP");
    // The resource request needs the nonce too.
    let at = v["access_token"].as_str().unwrap();
    let proof = k.proof_with("POST", &h.url(CHAT), Some(at), |_, c| c["nonce"] = json!(nonce));
    assert_eq!(dpop_chat(&h, at, &[&proof]).await.status(), 200);
}

#[tokio::test]
async fn metadata_advertises_the_dpop_algorithms() {
    let h = Harness::start().await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource"] {
        let v: Value = h.client.get(h.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA"]), "{path}");
    }
}

// ------------------------------------------------------------------ T14 on one node

/// A second gateway ("node B") over the harness's store, bus and keys, served on its own port.
async fn node_b(h: &Harness) -> (String, Gateway, CancellationToken) {
    let shutdown = CancellationToken::new();
    let gateway = Gateway::new(GatewayDeps {
        store: h.store.clone(),
        bus: h.bus.clone(),
        peppers: h.peppers.clone(),
        key_provider: h.key_provider.clone(),
        upstream: Upstream::new(Timeouts::default()).unwrap(),
        settings: GatewaySettings::default(),
        shutdown: shutdown.clone(),
        audit: h.audit.clone(),
    })
    .await
    .unwrap();
    let router = gateway.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .unwrap();
    });
    (format!("http://{addr}"), gateway, shutdown)
}

#[tokio::test]
async fn t14_key_revoked_through_node_a_is_refused_on_node_b_on_its_next_use() {
    let h = Harness::start().await;
    let (b, gateway_b, stop_b) = node_b(&h).await;
    let (id, key) = h.create_key(&[], None).await;
    let on_b = || h.client.post(format!("{b}{CHAT}")).bearer_auth(&key).json(&chat_body()).send();
    // Both nodes verify (and cache) the key.
    assert_eq!(h.post(CHAT, Some(&key), &chat_body()).await.status(), 200);
    assert_eq!(on_b().await.unwrap().status(), 200);
    // Revoked like the admin API does on node A: store, then the bus event every node hears.
    h.revoke(id, &key).await;
    let resp = on_b().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], BEARER_INVALID_TOKEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(!body.to_string().contains(&key));
    assert_eq!(h.post(CHAT, Some(&key), &chat_body()).await.status(), 401);
    stop_b.cancel();
    gateway_b.close().await;
}

// ------------------------------------------------------------------ token exchange keeps bindings

const EXCHANGE: (&str, &str) = ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
const API_KEY_TYPE: (&str, &str) = ("subject_token_type", "urn:gatehouse:params:oauth:token-type:api_key");

#[tokio::test]
async fn exchanging_a_bound_key_gives_a_token_bound_to_the_same_key_and_a_proof_can_bind_an_unbound_one() {
    let h = Harness::start().await;
    let c = client(&h, "opaque").await;
    let k = DpopKey::new();
    let (_, bound_key) = h.create_key_with(&[], None, |cr| cr.security.dpop_jkt = Some(k.jkt())).await;
    // The binding is carried over: the exchanged token is DPoP-bound to k, useless as Bearer.
    let v: Value = token_request(&h, &c, &[EXCHANGE, API_KEY_TYPE, ("subject_token", bound_key.as_str())], None).await.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP", "{v}");
    let at = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&h, &c, &at).await["cnf"]["jkt"], k.jkt());
    let (status, challenges, _, _) = answer(h.post(CHAT, Some(&at), &chat_body()).await).await;
    assert_eq!((status, challenges), (401, vec![BEARER_INVALID_TOKEN.to_string()]));
    assert_eq!(dpop_chat(&h, &at, &[&k.proof("POST", &h.url(CHAT), Some(&at))]).await.status(), 200);
    // Another key cannot re-bind a bound subject.
    let other = DpopKey::new();
    let proof = other.proof("POST", &h.url("/oauth/token"), None);
    let resp = token_request(&h, &c, &[EXCHANGE, API_KEY_TYPE, ("subject_token", bound_key.as_str())], Some(&proof)).await;
    oauth_error(resp, "invalid_dpop_proof").await;
    // An unbound key exchanged with a proof: the new token is bound to the proof's key.
    let proof = other.proof("POST", &h.url("/oauth/token"), None);
    let v: Value = token_request(&h, &c, &[EXCHANGE, API_KEY_TYPE, ("subject_token", h.key.as_str())], Some(&proof)).await.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP", "{v}");
    assert_eq!(introspect(&h, &c, v["access_token"].as_str().unwrap()).await["cnf"]["jkt"], other.jkt());
}

/// L3 (c): a DPoP-bound single-use token has its proof checked before it is consumed: a thief
/// without the key (as Bearer, with another key's proof, or with no proof) gets 401 and the
/// token still works once for its holder.
#[tokio::test]
async fn l3c_dpop_bound_single_use_token_is_not_burned_by_requests_without_its_key() {
    let h = Harness::start().await;
    let c = client(&h, "opaque").await;
    let k = DpopKey::new();
    let (_, bound_key) = h.create_key_with(&[], None, |cr| cr.security.dpop_jkt = Some(k.jkt())).await;
    let want = ("requested_token_type", gatehouse_oauth::token_types::SINGLE_USE);
    let v: Value = token_request(&h, &c, &[EXCHANGE, API_KEY_TYPE, ("subject_token", bound_key.as_str()), want], None).await.json().await.unwrap();
    let su = v["access_token"].as_str().unwrap().to_string();
    assert!(su.starts_with("gths_live_"), "{v}");
    assert_eq!(v["token_type"], "DPoP", "{v}");
    // The thief: as Bearer, with a proof of another key, with no proof, with a proof for the token
    // but another URL.
    assert_eq!(h.post(CHAT, Some(&su), &chat_body()).await.status(), 401);
    let thief = DpopKey::new();
    assert_eq!(dpop_chat(&h, &su, &[&thief.proof("POST", &h.url(CHAT), Some(&su))]).await.status(), 401);
    assert_eq!(dpop_chat(&h, &su, &[]).await.status(), 401);
    assert_eq!(dpop_chat(&h, &su, &[&k.proof("POST", &h.url("/v1/embeddings"), Some(&su))]).await.status(), 401);
    // The holder: exactly one success.
    assert_eq!(dpop_chat(&h, &su, &[&k.proof("POST", &h.url(CHAT), Some(&su))]).await.status(), 200);
    assert_eq!(dpop_chat(&h, &su, &[&k.proof("POST", &h.url(CHAT), Some(&su))]).await.status(), 401);
}
