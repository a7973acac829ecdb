//! `token-security.md` §4.4 T19, T21–T25 over HTTP: forged and malformed RFC 9068 access-token
//! JWTs presented on `/v1/chat/completions`. Tokens are built from a real one issued by
//! `/oauth/token` (so `jti`, client and team exist) and re-signed with the gateway's own signing
//! key (unsealed from the store with the harness's KEK) — so each case fails only for the reason
//! it names. Every refusal is 401 with `Bearer realm="gatehouse", error="invalid_token"` and the
//! generic `invalid_api_key` body.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse_auth::{Aad, Env, LocalKeyProvider, MasterKey, Sealed};
use gatehouse_oauth::{NewClient, OAuth, OAuthDeps, TracingEvents};
use gatehouse_store::Store;
use gatehouse_types::now;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::harness::Harness;

const CHAT: &str = "/v1/chat/completions";
const INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

/// A real JWT's header and claims plus the gateway's signing key (PKCS#8 unsealed from the store).
struct Forge {
    header: Value,
    claims: Value,
    pair: EcdsaKeyPair,
}

impl Forge {
    async fn new(h: &Harness) -> Self {
        let admin = OAuth::new(OAuthDeps {
            store: h.store.clone() as Arc<dyn Store>,
            bus: h.bus.clone(),
            peppers: h.peppers.clone(),
            key_provider: Arc::new(LocalKeyProvider::new(&MasterKey::generate().unwrap())),
            env: Env::Live,
            issuer: "http://127.0.0.1:8080".into(),
            events: Arc::new(TracingEvents),
        });
        let (record, secret) = admin
            .create_client(NewClient {
                team_id: h.team_id,
                app_id: h.app_id,
                name: "jwt".into(),
                auth_method: "client_secret_basic".into(),
                public_jwk: None,
                token_format: "jwt".into(),
                scopes: vec![],
                models: vec![],
                audiences: vec![],
                access_ttl: Duration::from_secs(600),
                tls_client_certificate_bound_access_tokens: false,
            })
            .await
            .unwrap();
        let resp = h
            .client
            .post(h.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth(record.id.to_string(), Some(secret.unwrap().expose_secret()))
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let jwt = v["access_token"].as_str().unwrap().to_string();
        let part = |i: usize| -> Value { serde_json::from_slice(&B64.decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap() };
        let (header, claims) = (part(0), part(1));
        let kid = header["kid"].as_str().unwrap().to_string();
        let row = h.store.list_signing_keys().await.unwrap().into_iter().find(|k| k.kid == kid).unwrap();
        let sealed = Sealed {
            format_version: row.format_version,
            kek_id: row.kek_id,
            wrapped_dek: row.wrapped_dek,
            nonce: row.nonce,
            ciphertext: row.ciphertext,
        };
        let aad = Aad { tenant_id: uuid_nil(), credential_id: uuid_nil(), provider: format!("oauth-signing-key:{kid}") };
        let der = gatehouse_auth::open(h.key_provider.as_ref(), &aad, &sealed).unwrap();
        let der = B64.decode(der.expose_secret()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
        let forge = Self { header, claims, pair };
        // Sanity: the unchanged token re-signed by the test is accepted.
        assert_eq!(chat(h, &forge.sign_json(&forge.header, &forge.claims)).await.0, 200);
        forge
    }

    fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn sign_json(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    fn with_claims(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = self.claims.clone();
        edit(&mut c);
        self.sign_json(&self.header, &c)
    }

    fn with_header(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut hd = self.header.clone();
        edit(&mut hd);
        self.sign_json(&hd, &self.claims)
    }

    fn kid(&self) -> String {
        self.header["kid"].as_str().unwrap().to_string()
    }
}

fn uuid_nil() -> gatehouse_types::Id {
    gatehouse_types::Id::nil()
}

async fn chat(h: &Harness, token: &str) -> (u16, Option<String>, Value) {
    let resp = h.post(CHAT, Some(token), &json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})).await;
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    (status, challenge, resp.json().await.unwrap_or(Value::Null))
}

async fn assert_refused(h: &Harness, name: &str, token: &str) {
    let (status, challenge, body) = chat(h, token).await;
    assert_eq!(status, 401, "{name}");
    assert_eq!(challenge.as_deref(), Some(INVALID_TOKEN), "{name}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{name}");
    assert!(!body.to_string().contains(token), "{name}");
}

#[tokio::test]
async fn t19_jwt_resigned_with_hs256_using_our_public_key_is_401_invalid_token() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    let public = f.pair.public_key().as_ref().to_vec();
    let jwks: Value = h.client.get(h.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let jwk_text = jwks["keys"][0].to_string();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": f.kid()});
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(f.claims.to_string()));
    // HMAC keyed with the public key as raw point bytes, and as the published JWK text.
    for secret in [public.as_slice(), jwk_text.as_bytes()] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        assert_refused(&h, "HS256", &format!("{input}.{}", B64.encode(tag.as_ref()))).await;
    }
}

#[tokio::test]
async fn t21_odd_and_unknown_kids_are_401_invalid_token() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    for kid in ["../../dev/null", "' OR 1=1--", "", &"k".repeat(2000)] {
        let token = f.with_header(|hd| hd["kid"] = json!(kid));
        assert_refused(&h, &format!("kid {:.20}", kid), &token).await;
    }
    let no_kid = f.with_header(|hd| {
        hd.as_object_mut().unwrap().remove("kid");
    });
    assert_refused(&h, "no kid", &no_kid).await;
    // Many random unknown kids: every one refused, and our own key still works afterwards.
    for i in 0..300 {
        let token = f.with_header(|hd| hd["kid"] = json!(format!("unknown-{i}-{}", gatehouse_types::new_id())));
        let (status, _, _) = chat(&h, &token).await;
        assert_eq!(status, 401, "unknown kid {i}");
    }
    assert_eq!(chat(&h, &f.sign_json(&f.header, &f.claims)).await.0, 200);
}

#[tokio::test]
async fn t22_wrong_or_missing_typ_is_401_invalid_token() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    for typ in [json!("JWT"), json!("dpop+jwt"), json!("jwt"), json!(""), json!(null)] {
        let token = f.with_header(|hd| hd["typ"] = typ.clone());
        assert_refused(&h, &format!("typ {typ}"), &token).await;
    }
    let token = f.with_header(|hd| {
        hd.as_object_mut().unwrap().remove("typ");
    });
    assert_refused(&h, "typ missing", &token).await;
    // The long form `application/at+jwt` is the same media type (RFC 9068 §2.1) — accepted or not,
    // never a 5xx.
    let (status, _, _) = chat(&h, &f.with_header(|hd| hd["typ"] = json!("application/at+jwt"))).await;
    assert!(status == 200 || status == 401, "{status}");
}

#[tokio::test]
async fn t23_wrong_iss_aud_exp_nbf_and_future_iat_are_401_invalid_token() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    let t = now().unix_timestamp();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("wrong iss", Box::new(|c| c["iss"] = json!("https://evil.example"))),
        ("aud of another resource", Box::new(|c| c["aud"] = json!("https://other.example"))),
        ("exp missing", Box::new(|c| {
            c.as_object_mut().unwrap().remove("exp");
        })),
        ("exp as string", Box::new(move |c| c["exp"] = json!((t + 300).to_string()))),
        ("exp 31 s past", Box::new(move |c| c["exp"] = json!(t - 31))),
        ("nbf as string", Box::new(move |c| c["nbf"] = json!(t.to_string()))),
        ("nbf +61 s", Box::new(move |c| c["nbf"] = json!(t + 61))),
        ("iat +61 s", Box::new(move |c| c["iat"] = json!(t + 61))),
        ("iat as string", Box::new(move |c| c["iat"] = json!(t.to_string()))),
        ("jti not a uuid", Box::new(|c| c["jti"] = json!("abc"))),
    ];
    for (name, edit) in &cases {
        assert_refused(&h, name, &f.with_claims(|c| edit(c))).await;
    }
}

#[tokio::test]
async fn t24_clock_skew_within_leeway_is_accepted() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    let t = now().unix_timestamp();
    let token = f.with_claims(|c| {
        c["iat"] = json!(t + 10);
        c["nbf"] = json!(t + 10);
        c["exp"] = json!(t - 20);
    });
    let (status, _, body) = chat(&h, &token).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn t25_crit_json_serialization_jwe_duplicates_and_wrong_dot_counts_are_401_invalid_token() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    let kid = f.kid();
    let claims = f.claims.to_string();
    let crit = f.with_header(|hd| {
        hd["crit"] = json!(["exp"]);
        hd["exp"] = json!(1);
    });
    assert_refused(&h, "unknown crit", &crit).await;
    let embedded = f.with_header(|hd| hd["jwk"] = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}));
    assert_refused(&h, "embedded jwk", &embedded).await;
    // Duplicate members: `alg` in the header, `exp` in the claims (JSON text, signed as is).
    let dup_alg = format!(r#"{{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"{kid}"}}"#);
    assert_refused(&h, "duplicate alg", &f.sign_raw(&dup_alg, &claims)).await;
    let dup_exp = format!("{},\"exp\":1}}", claims.trim_end_matches('}'));
    assert_refused(&h, "duplicate exp", &f.sign_raw(&f.header.to_string(), &dup_exp)).await;
    // A JWE-shaped value (5 parts), 4 dots / 1 dot, and base64 with padding are not our JWS.
    let good = f.sign_json(&f.header, &f.claims);
    let parts: Vec<&str> = good.split('.').collect();
    let jwe = format!("{}.{}.{}.{}.{}", B64.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#), "AAAA", "AAAA", "AAAA", "AAAA");
    assert_refused(&h, "JWE", &jwe).await;
    assert_refused(&h, "4 dots", &format!("{good}.x")).await;
    assert_refused(&h, "1 dot", &format!("{}.{}", parts[0], parts[1])).await;
    assert_refused(&h, "empty signature", &format!("{}.{}.", parts[0], parts[1])).await;
    // JSON serialization of a JWS is not a token68 credential: 400 invalid_request.
    let json_jws = json!({"payload": parts[1], "protected": parts[0], "signature": parts[2]}).to_string();
    let resp = h
        .client
        .post(h.url(CHAT))
        .header("authorization", format!("Bearer {json_jws}"))
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"gatehouse\", error=\"invalid_request\"");
}

#[tokio::test]
async fn t18_alg_none_in_any_case_with_an_empty_signature_is_401_invalid_token() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": f.kid()});
        let token = format!("{}.{}.", B64.encode(header.to_string()), B64.encode(f.claims.to_string()));
        assert_refused(&h, alg, &token).await;
        // …and with a (valid ES256) signature attached.
        assert_refused(&h, alg, &f.with_header(|hd| hd["alg"] = json!(alg))).await;
    }
}

#[tokio::test]
async fn t20_attacker_jwk_jku_x5u_x5c_headers_are_401_and_nothing_is_fetched() {
    let h = Harness::start().await;
    let f = Forge::new(&h).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    // An attacker key pair signs; its public key rides in the header (or behind a URL).
    let attacker = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let p = attacker.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])});
    let sign = |header: Value| {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(f.claims.to_string()));
        let sig = attacker.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    };
    let base = json!({"alg": "ES256", "typ": "at+jwt"});
    let mut cases = Vec::new();
    for (member, v) in [("jwk", jwk.clone()), ("jku", json!(url)), ("x5u", json!(url)), ("x5c", json!(["MIIB"]))] {
        let mut hd = base.clone();
        hd[member] = v;
        cases.push((member, sign(hd.clone())));
        // Also next to our own kid.
        hd["kid"] = json!(f.kid());
        cases.push((member, sign(hd)));
    }
    for (name, token) in &cases {
        assert_refused(&h, name, token).await;
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), listener.accept()).await.is_err(), "the gateway fetched a key URL");
}
