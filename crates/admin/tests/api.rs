//! The admin API in-process (SQLite in a temp dir, `tower::ServiceExt::oneshot`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use gatehouse_admin::{AdminService, BootstrapOptions};
use gatehouse_auth::token::Env;
use gatehouse_store::{BusEvent, Store};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;

const OPERATOR: &str = "test-operator-token-0123456789abcdefghijklmnop";

struct Harness {
    app: Router,
    store: Arc<dyn Store>,
    service: Arc<AdminService>,
    events: Arc<Mutex<Vec<BusEvent>>>,
}

async fn harness() -> Harness {
    let (store, service, events) = common::recorded_service("admin").await;
    let out = service
        .bootstrap(BootstrapOptions { admin_password: None, operator_token: Some(SecretString::from(OPERATOR)) })
        .await
        .unwrap()
        .expect("first bootstrap creates");
    assert!(out.password_generated && !out.token_generated);
    assert!(service.bootstrap(BootstrapOptions::default()).await.unwrap().is_none(), "second bootstrap creates nothing");
    Harness { app: gatehouse_admin::router(service.clone()), store, service, events }
}

async fn call(app: &Router, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, http::HeaderMap, Value, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json, text)
}

async fn ok(app: &Router, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, _, v, t) = call(app, method, path, Some(OPERATOR), body).await;
    assert!(s.is_success(), "{method} {path}: {s} {t}");
    v
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/admin/v1/keys"),
    ("GET", "/admin/v1/keys"),
    ("GET", "/admin/v1/keys/0190a4b0-0000-7000-8000-000000000000"),
    ("POST", "/admin/v1/keys/0190a4b0-0000-7000-8000-000000000000/revoke"),
    ("POST", "/admin/v1/providers"),
    ("GET", "/admin/v1/providers"),
    ("DELETE", "/admin/v1/providers/openai"),
    ("POST", "/admin/v1/models"),
    ("GET", "/admin/v1/models"),
    ("DELETE", "/admin/v1/models/demo"),
    ("PUT", "/admin/v1/models/demo/cache"),
    ("GET", "/admin/v1/models/demo/cache"),
    ("DELETE", "/admin/v1/models/demo/cache"),
    ("GET", "/admin/v1/logs"),
    ("GET", "/admin/v1/teams"),
    ("GET", "/admin/v1/apps"),
    ("POST", "/admin/v1/limits"),
    ("GET", "/admin/v1/limits"),
    ("DELETE", "/admin/v1/limits/0190a4b0-0000-7000-8000-000000000000"),
    ("GET", "/admin/v1/no-such-route"),
    ("PUT", "/admin/v1/keys"),
];

#[tokio::test]
async fn every_admin_route_requires_an_operator_token() {
    let h = harness().await;
    let fake_ours = "gtho_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000";
    for (method, path) in ROUTES {
        let (s, headers, v, _) = call(&h.app, method, path, None, Some(json!({}))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path} without token");
        assert_eq!(v["error"]["code"], "missing_credential");
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        for bad in ["wrong-token-but-long-enough-0123456789abcdef", fake_ours, "short"] {
            let (s, headers, v, text) = call(&h.app, method, path, Some(bad), Some(json!({}))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path} with {bad}");
            assert_eq!(v["error"]["code"], "invalid_api_key");
            assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
            assert!(!text.contains(bad), "the token is never echoed");
        }
    }
    // the scheme is case-insensitive
    let req = Request::builder().uri("/admin/v1/teams").header("authorization", format!("bEaReR {OPERATOR}")).body(Body::empty()).unwrap();
    assert_eq!(h.app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
    // two Authorization headers → 400
    let req = Request::builder()
        .uri("/admin/v1/teams")
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.app.clone().oneshot(req).await.unwrap().status(), StatusCode::BAD_REQUEST);
    // health probes are open
    assert_eq!(call(&h.app, "GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(call(&h.app, "GET", "/readyz", None, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn operator_token_of_our_format_works_and_malformed_ones_skip_the_store() {
    let h = harness().await;
    // a generated gtho_ token via a second bootstrap-like record is covered by e2e; here: a token
    // with our prefix and a broken checksum is rejected by shape
    assert!(!gatehouse_admin::service::operator_token_shape_ok("gtho_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000"));
    assert!(!gatehouse_admin::service::operator_token_shape_ok("gthk_live_whatever"));
    assert!(!gatehouse_admin::service::operator_token_shape_ok(&"a".repeat(31)));
    assert!(!gatehouse_admin::service::operator_token_shape_ok(&"a".repeat(257)));
    assert!(gatehouse_admin::service::operator_token_shape_ok(&"a".repeat(32)));
    let g = gatehouse_auth::token::generate(gatehouse_auth::token::TokenKind::Operator, Env::Live).unwrap();
    assert!(gatehouse_admin::service::operator_token_shape_ok(g.token.expose_secret()));
    assert!(h.service.authenticate_operator(OPERATOR).await.is_ok());
}

#[tokio::test]
async fn key_create_list_hint_only_revoke() {
    let h = harness().await;
    let (s, headers, created, text) =
        call(&h.app, "POST", "/admin/v1/keys", Some(OPERATOR), Some(json!({"name": "ci", "models": ["demo"], "expires_in": "1h"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    assert_eq!(headers["cache-control"], "no-store");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("gthk_live_"));
    assert!(gatehouse_auth::token::parse(&key).is_ok());
    assert!(created["hint"].as_str().unwrap().starts_with("gthk_live_…"));
    assert_eq!(created["models"], json!(["demo"]));
    assert!(created["expires_at"].is_string());
    let id = created["id"].as_str().unwrap().to_string();

    let (_, _, list, text) = call(&h.app, "GET", "/admin/v1/keys", Some(OPERATOR), None).await;
    assert!(!text.contains(&key), "list never shows the key");
    let row = list["data"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert!(row.get("key").is_none());
    assert_eq!(row["hint"], created["hint"]);

    let (_, _, one, text) = call(&h.app, "GET", &format!("/admin/v1/keys/{id}"), Some(OPERATOR), None).await;
    assert!(!text.contains(&key));
    assert_eq!(one["name"], "ci");

    let revoked = ok(&h.app, "POST", &format!("/admin/v1/keys/{id}/revoke"), None).await;
    assert!(revoked["revoked_at"].is_string());
    assert!(h.events.lock().unwrap().iter().any(|e| matches!(e, BusEvent::CredentialChanged { id: i, .. } if i.to_string() == id)));
    let list = ok(&h.app, "GET", "/admin/v1/keys", None).await;
    assert!(list["data"].as_array().unwrap().iter().all(|k| k["id"] != id.as_str()), "revoked keys are hidden by default");
    let list = ok(&h.app, "GET", "/admin/v1/keys?include_revoked=true", None).await;
    assert!(list["data"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    // revoking twice is fine
    ok(&h.app, "POST", &format!("/admin/v1/keys/{id}/revoke"), None).await;

    // the stored bytes never hold the key
    assert!(!h.store.debug_dump().await.unwrap().contains(&key));
}

#[tokio::test]
async fn provider_key_is_never_returned() {
    let h = harness().await;
    let secret = format!("sk-canary-{}", uuid::Uuid::now_v7().simple());
    let (s, _, v, text) = call(
        &h.app,
        "POST",
        "/admin/v1/providers",
        Some(OPERATOR),
        Some(json!({"name": "openai", "kind": "openai", "api_key": secret})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    assert!(!text.contains(&secret));
    assert_eq!(v["base_url"], "https://api.openai.com/v1");
    let hint = v["key_hint"].as_str().unwrap().to_string();
    assert!(hint.ends_with(&secret[secret.len() - 4..]));
    assert!(h.events.lock().unwrap().contains(&BusEvent::RoutingChanged));

    // update: new key replaces the old one
    let secret2 = format!("sk-canary-{}", uuid::Uuid::now_v7().simple());
    let (s, _, v2, text) = call(
        &h.app,
        "POST",
        "/admin/v1/providers",
        Some(OPERATOR),
        Some(json!({"name": "openai", "kind": "openai", "base_url": "http://127.0.0.1:9/v1/", "api_key": secret2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(v2["id"], v["id"]);
    assert_eq!(v2["base_url"], "http://127.0.0.1:9/v1");
    let (_, _, list, text) = call(&h.app, "GET", "/admin/v1/providers", Some(OPERATOR), None).await;
    assert!(!text.contains(&secret) && !text.contains(&secret2));
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0]["key_hint"].as_str().unwrap().ends_with(&secret2[secret2.len() - 4..]));
    let provider_id: uuid::Uuid = v["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(h.store.list_provider_credentials(provider_id).await.unwrap().len(), 1, "the old key is revoked");

    let dump = h.store.debug_dump().await.unwrap();
    assert!(!dump.contains(&secret) && !dump.contains(&secret2), "stored encrypted only");

    // models over it, then delete
    let (s, _, m, text) = call(
        &h.app,
        "POST",
        "/admin/v1/models",
        Some(OPERATOR),
        Some(json!({"name": "fast", "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    assert_eq!(m["deployments"][0], json!({"provider": "openai", "model": "gpt-4o-mini", "weight": 1, "priority": 0}));
    let models = ok(&h.app, "GET", "/admin/v1/models", None).await;
    assert_eq!(models["data"][0]["name"], "fast");
    ok(&h.app, "DELETE", "/admin/v1/models/fast", None).await;
    ok(&h.app, "DELETE", "/admin/v1/providers/openai", None).await;
    assert_eq!(ok(&h.app, "GET", "/admin/v1/providers", None).await["data"], json!([]));
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_unknown_ids_404() {
    let h = harness().await;
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        ("POST", "/admin/v1/keys", Some(json!({})), 400, "name"),
        ("POST", "/admin/v1/keys", Some(json!({"name": 5})), 400, "name"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "colour": 1})), 400, "colour"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "models": ["a", 1]})), 400, "models[1]"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "expires_in": "1 fortnight"})), 400, "expires_in"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "expires_at": "yesterday"})), 400, "expires_at"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"})), 400, "expires_at"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "app_id": "nope"})), 400, "app_id"),
        ("POST", "/admin/v1/keys", Some(json!({"name": "x", "app_id": "0190a4b0-0000-7000-8000-000000000000"})), 404, "app_id"),
        ("POST", "/admin/v1/keys", Some(json!([1, 2])), 400, "body"),
        ("GET", "/admin/v1/keys/not-a-uuid", None, 400, "id"),
        ("GET", "/admin/v1/keys/0190a4b0-0000-7000-8000-000000000000", None, 404, "id"),
        ("POST", "/admin/v1/keys/0190a4b0-0000-7000-8000-000000000000/revoke", None, 404, "id"),
        ("GET", "/admin/v1/keys?include_revoked=maybe", None, 400, "include_revoked"),
        ("POST", "/admin/v1/providers", Some(json!({"name": "p", "kind": "palm", "api_key": "k"})), 400, "kind"),
        ("POST", "/admin/v1/providers", Some(json!({"name": "a/b", "kind": "openai", "api_key": "k"})), 400, "name"),
        ("POST", "/admin/v1/providers", Some(json!({"name": "p", "kind": "openai", "base_url": "ftp://x"})), 400, "base_url"),
        ("POST", "/admin/v1/providers", Some(json!({"name": "p", "kind": "openai", "api_key": ""})), 400, "api_key"),
        ("DELETE", "/admin/v1/providers/nope", None, 404, "name"),
        ("POST", "/admin/v1/models", Some(json!({"name": "m"})), 400, "deployments"),
        ("POST", "/admin/v1/models", Some(json!({"name": "m", "deployments": []})), 400, "deployments"),
        ("POST", "/admin/v1/models", Some(json!({"name": "m", "deployments": [{"provider": "nope", "model": "x"}]})), 400, "deployments[0].provider"),
        ("POST", "/admin/v1/models", Some(json!({"name": "m", "deployments": [{"provider": "nope", "model": "x", "weight": -1}]})), 400, "deployments[0].weight"),
        ("DELETE", "/admin/v1/models/nope", None, 404, "name"),
        ("GET", "/admin/v1/logs?limit=0", None, 400, "limit"),
        ("GET", "/admin/v1/logs?since=today", None, 400, "since"),
        ("GET", "/admin/v1/logs?frobnicate=1", None, 400, "frobnicate"),
        ("GET", "/admin/v1/nothing-here", None, 404, ""),
    ];
    for (method, path, body, status, param) in cases {
        let (s, _, v, text) = call(&h.app, method, path, Some(OPERATOR), body.clone()).await;
        assert_eq!(s.as_u16(), status, "{method} {path} {body:?}: {text}");
        assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string() && v["error"]["code"].is_string(), "{text}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{method} {path} {body:?}: {text}");
        }
    }
    // malformed JSON
    let req = Request::builder()
        .method("POST")
        .uri("/admin/v1/keys")
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(Body::from("{\"name\": "))
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn teams_apps_and_empty_logs() {
    let h = harness().await;
    let teams = ok(&h.app, "GET", "/admin/v1/teams", None).await;
    assert_eq!(teams["data"][0]["name"], "default");
    let apps = ok(&h.app, "GET", "/admin/v1/apps", None).await;
    assert_eq!(apps["data"][0]["name"], "default");
    let logs = ok(&h.app, "GET", "/admin/v1/logs?limit=5&errors_only=true", None).await;
    assert_eq!(logs["data"], json!([]));
    assert!(logs["next_before"].is_null());
}

// ---------------------------------------------------------------------------------------------
// issue 5 (token security, part b): audit log over the admin API

#[tokio::test]
async fn audit_records_key_lifecycle_and_admin_actions_and_verifies() {
    let h = harness().await;
    let created = ok(&h.app, "POST", "/admin/v1/keys", Some(json!({"name": "audited"}))).await;
    let id = created["id"].as_str().unwrap().to_string();
    let plaintext = created["key"].as_str().unwrap().to_string();
    ok(&h.app, "POST", &format!("/admin/v1/keys/{id}/revoke"), None).await;

    let page = ok(&h.app, "GET", &format!("/admin/v1/audit?key_id={id}"), None).await;
    let types: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["key.revoked", "key.created"]);
    let actions = ok(&h.app, "GET", "/admin/v1/audit?event_type=admin.action", None).await;
    let actions = actions["data"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions[0]["actor"].as_str().unwrap().starts_with("operator:"));
    assert_eq!(actions[0]["details"]["route"], "/admin/v1/keys/{id}/revoke");
    assert_eq!(actions[1]["details"]["method"], "POST");

    // paging: limit 1 gives a cursor that leads to the next (older) event
    let p1 = ok(&h.app, "GET", "/admin/v1/audit?limit=1", None).await;
    let cursor = p1["next_before_seq"].as_i64().unwrap();
    let p2 = ok(&h.app, "GET", &format!("/admin/v1/audit?limit=1&before_seq={cursor}"), None).await;
    assert_eq!(p2["data"][0]["seq"].as_i64().unwrap(), cursor - 1);

    let v = ok(&h.app, "GET", "/admin/v1/audit/verify", None).await;
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"], 4);
    assert!(v["first_broken"].is_null());

    // bad filters are 400s naming the parameter
    for (q, param) in [("limit=0", "limit"), ("key_id=nope", "key_id"), ("since=yesterday", "since"), ("x=1", "x")] {
        let (s, _, body, _) = call(&h.app, "GET", &format!("/admin/v1/audit?{q}"), Some(OPERATOR), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(body["error"]["param"], param);
    }
    // the key itself never reaches the audit log
    let dump = h.store.debug_dump().await.unwrap();
    assert!(!dump.contains(&plaintext));
    let all = ok(&h.app, "GET", "/admin/v1/audit", None).await;
    assert!(!all.to_string().contains(&plaintext));
}

#[tokio::test]
async fn keys_carry_scopes_ip_allow_labels_and_reject_bad_ones() {
    let h = harness().await;
    let v = ok(
        &h.app,
        "POST",
        "/admin/v1/keys",
        Some(json!({"name": "k", "scopes": ["models:read", "chat:invoke"], "ip_allow": ["203.0.113.0/24", "2001:db8::/32"], "labels": {"env": "prod"}, "auto_suspend": true})),
    )
    .await;
    assert_eq!(v["scopes"], json!(["chat:invoke", "models:read"]));
    assert_eq!(v["ip_allow"], json!(["203.0.113.0/24", "2001:db8::/32"]));
    assert_eq!(v["labels"]["env"], "prod");
    assert_eq!(v["auto_suspend"], true);
    let got = ok(&h.app, "GET", &format!("/admin/v1/keys/{}", v["id"].as_str().unwrap()), None).await;
    assert_eq!(got["ip_allow"], v["ip_allow"]);
    for (body, param) in [
        (json!({"name": "k", "scopes": ["Chat:Invoke"]}), "scopes[0]"),
        (json!({"name": "k", "ip_allow": ["10.0.0.0/33"]}), "ip_allow[0]"),
        (json!({"name": "k", "labels": {"env": 1}}), "labels.env"),
        (json!({"name": "k", "auto_suspend": "yes"}), "auto_suspend"),
    ] {
        let (s, _, e, _) = call(&h.app, "POST", "/admin/v1/keys", Some(OPERATOR), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{param}");
        assert_eq!(e["error"]["param"], param);
    }
}

#[tokio::test]
async fn rotate_issues_a_successor_once_and_caps_the_old_expiry() {
    let h = harness().await;
    let old = ok(&h.app, "POST", "/admin/v1/keys", Some(json!({"name": "rot", "scopes": ["chat:invoke"], "ip_allow": ["10.0.0.0/8"]}))).await;
    let id = old["id"].as_str().unwrap();
    let (s, headers, v, _) = call(&h.app, "POST", &format!("/admin/v1/keys/{id}/rotate"), Some(OPERATOR), Some(json!({"grace": "1h"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(headers["cache-control"], "no-store");
    let new_key = v["key"].as_str().unwrap();
    assert!(new_key.starts_with("gthk_live_") && new_key != old["key"].as_str().unwrap());
    assert_eq!(v["rotated_from"], id);
    assert_eq!(v["scopes"], json!(["chat:invoke"]));
    assert_eq!(v["ip_allow"], json!(["10.0.0.0/8"]));
    let exp = time::OffsetDateTime::parse(v["previous"]["expires_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let left = exp - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(59) && left <= time::Duration::hours(1), "{left}");
    // the old key's cache entry is dropped
    assert!(h.events.lock().unwrap().iter().any(|e| matches!(e, BusEvent::CredentialChanged { id: i, .. } if i.to_string() == id)));
    // the successor is never shown again
    let listed = ok(&h.app, "GET", "/admin/v1/keys", None).await;
    assert!(!listed.to_string().contains(new_key));
    let audit = ok(&h.app, "GET", &format!("/admin/v1/audit?key_id={id}&event_type=key.rotated"), None).await;
    assert_eq!(audit["data"][0]["details"]["successor_id"], v["id"]);
    // errors: too long a grace, unknown key, revoked key
    let (s, _, e, _) = call(&h.app, "POST", &format!("/admin/v1/keys/{id}/rotate"), Some(OPERATOR), Some(json!({"grace": "8d"}))).await;
    assert_eq!((s, e["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("grace")));
    let (s, _, _, _) = call(&h.app, "POST", "/admin/v1/keys/0190a4b0-0000-7000-8000-000000000000/rotate", Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    ok(&h.app, "POST", &format!("/admin/v1/keys/{id}/revoke"), None).await;
    let (s, _, _, _) = call(&h.app, "POST", &format!("/admin/v1/keys/{id}/rotate"), Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// L2: eight concurrent `POST /keys/{id}/rotate` → exactly one 201, seven 409 `conflict`, one
/// successor; a rotated key cannot be rotated again (rotate its successor instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_concurrent_rotations_answer_one_201_and_409_for_the_rest() {
    let h = harness().await;
    let old = ok(&h.app, "POST", "/admin/v1/keys", Some(json!({"name": "race"}))).await;
    let id = old["id"].as_str().unwrap().to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, barrier, id) = (h.app.clone(), barrier.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let (s, _, v, _) = call(&app, "POST", &format!("/admin/v1/keys/{id}/rotate"), Some(OPERATOR), Some(json!({"grace": "1h"}))).await;
            (s, v)
        }));
    }
    let mut created = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            StatusCode::CREATED => created.push(v),
            StatusCode::CONFLICT => {
                assert_eq!(v["error"]["code"], "conflict", "{v}");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((created.len(), conflicts), (1, 7));
    let keys = ok(&h.app, "GET", "/admin/v1/keys", None).await;
    let successors: Vec<&Value> = keys["data"].as_array().unwrap().iter().filter(|k| k["rotated_from"] == id.as_str()).collect();
    assert_eq!(successors.len(), 1, "{keys}");
    assert_eq!(successors[0]["id"], created[0]["id"]);
    // sequentially too: the old key is done; its successor rotates normally
    let (s, _, _, _) = call(&h.app, "POST", &format!("/admin/v1/keys/{id}/rotate"), Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let succ = created[0]["id"].as_str().unwrap();
    let (s, _, _, _) = call(&h.app, "POST", &format!("/admin/v1/keys/{succ}/rotate"), Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn report_leak_revokes_matches_and_answers_the_same_either_way() {
    let h = harness().await;
    let created = ok(&h.app, "POST", "/admin/v1/keys", Some(json!({"name": "leaky"}))).await;
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let unknown = gatehouse_auth::generate(gatehouse_auth::TokenKind::ApiKey, Env::Live).unwrap();
    let unknown = unknown.token.expose_secret().to_string();
    let mut answers = Vec::new();
    for body in [
        json!([{"token": key, "type": "gatehouse_api_key", "url": "https://example.com/x", "source": "content"}]),
        json!([{"token": unknown, "type": "gatehouse_api_key", "url": "https://example.com/y", "source": "content"}]),
        json!({"tokens": ["gthk_live_not-a-real-key"]}),
    ] {
        let (s, headers, v, text) = call(&h.app, "POST", "/admin/v1/credentials/report-leak", Some(OPERATOR), Some(body)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert!(!text.contains(&key) && !text.contains(&unknown));
        answers.push((v, headers.get("content-length").cloned()));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "identical answers: {answers:?}");
    let got = ok(&h.app, "GET", &format!("/admin/v1/keys/{id}"), None).await;
    assert!(got["revoked_at"].is_string());
    let audit = ok(&h.app, "GET", "/admin/v1/audit?event_type=leak.reported", None).await;
    let counts: Vec<i64> = audit["data"].as_array().unwrap().iter().map(|e| e["details"]["revoked"].as_i64().unwrap()).collect();
    assert_eq!(counts, vec![0, 0, 1]);
    let revoked = ok(&h.app, "GET", &format!("/admin/v1/audit?key_id={id}&event_type=key.revoked"), None).await;
    assert_eq!(revoked["data"][0]["reason"], "leak_report");
    let (s, _, e, text) = call(&h.app, "POST", "/admin/v1/credentials/report-leak", Some(OPERATOR), Some(json!({"tokens": [1]}))).await;
    assert_eq!((s, e["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("tokens[0]")));
    assert!(!text.contains(&key));
    let dump = h.store.debug_dump().await.unwrap();
    assert!(!dump.contains(&key) && !dump.contains(&unknown));
}

// --- issue 6: limits ---

#[tokio::test]
async fn limits_set_merge_list_usage_and_delete() {
    use gatehouse_store::counters::{Bucket, Counters, Window, bucket_key, Metric};
    use gatehouse_store::{LimitScope, MemoryCounters};
    let h = harness().await;
    let counters: Arc<dyn Counters> = Arc::new(MemoryCounters::new());
    let service = Arc::new((*h.service).clone().with_counters(counters.clone()));
    let app = gatehouse_admin::router(service);
    let key = ok(&app, "POST", "/admin/v1/keys", Some(json!({"name": "k"}))).await;
    let key_id = key["id"].as_str().unwrap().to_string();

    let (s, _, v, t) = call(&app, "POST", "/admin/v1/limits", Some(OPERATOR),
        Some(json!({"scope": "key", "id": key_id, "rpm": 60, "tpm": 100000, "usd_per_day": 5}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(v["limits"]["rpm"]["limit"], 60);
    assert_eq!(v["limits"]["usd_per_day"]["limit"], 5.0);
    assert!(h.events.lock().unwrap().contains(&BusEvent::LimitsChanged));
    // Absent fields are kept, null clears, present fields are set.
    let (s, _, v, _) = call(&app, "POST", "/admin/v1/limits", Some(OPERATOR),
        Some(json!({"scope": "key", "id": key_id, "tpm": null, "concurrent": 2}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["limits"]["rpm"]["limit"], 60);
    assert!(v["limits"].get("tpm").is_none());
    assert_eq!(v["limits"]["concurrent"]["limit"], 2);

    // Usage against each limit comes from the shared counters.
    let rpm = bucket_key(Metric::Rpm, LimitScope::Key, &key_id, "");
    counters.acquire(&[Bucket { key: rpm, window: Window::Minute, limit: 60, cost: 7 }], "r", std::time::Duration::from_secs(5)).await.unwrap();
    let list = ok(&app, "GET", "/admin/v1/limits", None).await;
    let row = &list["data"][0];
    assert_eq!(row["limits"]["rpm"]["used"], 7);
    assert_eq!(row["limits"]["rpm"]["remaining"], 53);
    assert_eq!(row["usage_available"], true);

    // Bad input: 400 naming the field; unknown subject: 404.
    for (body, field) in [
        (json!({"scope": "planet", "id": key_id}), "scope"),
        (json!({"scope": "key", "id": key_id, "rpm": -1}), "rpm"),
        (json!({"scope": "key", "id": key_id, "usd_per_day": "5"}), "usd_per_day"),
        (json!({"scope": "key", "id": "not-a-uuid"}), "id"),
        (json!({"scope": "key", "id": key_id, "burst": 1}), "burst"),
        (json!({"scope": "key"}), "id"),
    ] {
        let (s, _, v, t) = call(&app, "POST", "/admin/v1/limits", Some(OPERATOR), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{t}");
        assert_eq!(v["error"]["param"], field, "{t}");
    }
    let (s, _, _, _) = call(&app, "POST", "/admin/v1/limits", Some(OPERATOR),
        Some(json!({"scope": "team", "id": "0190a4b0-0000-7000-8000-000000000000", "rpm": 1}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let id = row["id"].as_str().unwrap().to_string();
    ok(&app, "DELETE", &format!("/admin/v1/limits/{id}"), None).await;
    let (s, _, _, _) = call(&app, "DELETE", &format!("/admin/v1/limits/{id}"), Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h.store.list_limits().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// issue 6: response cache setting per model; repeated query parameters

#[tokio::test]
async fn model_cache_setting_put_get_delete_and_bad_input() {
    let h = harness().await;
    let app = &h.app;
    let model = gatehouse_store::Model { id: uuid::Uuid::now_v7(), name: "cached".into(), deployments: vec![], created_at: gatehouse_types::now() };
    h.store.upsert_model(&model).await.unwrap();
    let (s, _, v, _) = call(app, "GET", "/admin/v1/models/cached/cache", Some(OPERATOR), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    h.events.lock().unwrap().clear();
    let set = ok(app, "PUT", "/admin/v1/models/cached/cache", Some(json!({"ttl_secs": 300}))).await;
    assert_eq!((set["model"].as_str(), set["ttl_secs"].as_u64()), (Some("cached"), Some(300)));
    assert!(h.events.lock().unwrap().contains(&BusEvent::RoutingChanged), "the data plane is told");
    assert_eq!(ok(app, "GET", "/admin/v1/models/cached/cache", None).await["ttl_secs"], 300);
    assert_eq!(h.store.list_model_caches().await.unwrap()[0].ttl_secs, 300);
    for (body, param) in [
        (json!({"ttl_secs": 0}), "ttl_secs"),
        (json!({"ttl_secs": 2_592_001}), "ttl_secs"),
        (json!({"ttl_secs": "5m"}), "ttl_secs"),
        (json!({"ttl": 5}), "ttl"),
        (json!([]), "body"),
    ] {
        let (s, _, v, t) = call(app, "PUT", "/admin/v1/models/cached/cache", Some(OPERATOR), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{t}");
        assert_eq!(v["error"]["param"], param, "{t}");
    }
    assert_eq!(h.store.list_model_caches().await.unwrap()[0].ttl_secs, 300, "bad input changed nothing");
    let (s, _, _, _) = call(app, "PUT", "/admin/v1/models/nope/cache", Some(OPERATOR), Some(json!({"ttl_secs": 5}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    ok(app, "DELETE", "/admin/v1/models/cached/cache", None).await;
    assert!(h.store.list_model_caches().await.unwrap().is_empty());
    let (s, _, _, _) = call(app, "DELETE", "/admin/v1/models/cached/cache", Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn repeated_query_parameters_are_refused() {
    let h = harness().await;
    for path in ["/admin/v1/logs?model=a&model=b", "/admin/v1/logs?limit=1&%6Cimit=2", "/admin/v1/keys?include_revoked=true&include_revoked=false"] {
        let (s, _, v, t) = call(&h.app, "GET", path, Some(OPERATOR), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {t}");
        assert_eq!(v["error"]["code"], "invalid_request", "{t}");
        assert!(v["error"]["param"] == "model" || v["error"]["param"] == "limit" || v["error"]["param"] == "include_revoked", "{t}");
    }
    ok(&h.app, "GET", "/admin/v1/logs?model=a&limit=2", None).await;
    // Without a token the answer is still 401 (authentication comes first).
    assert_eq!(call(&h.app, "GET", "/admin/v1/logs?model=a&model=b", None, None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn m2_rotate_carries_key_limits_and_l2_refuses_expired_keys() {
    let h = harness().await;
    let old = ok(&h.app, "POST", "/admin/v1/keys", Some(json!({"name": "lim"}))).await;
    let id = old["id"].as_str().unwrap().to_string();
    let (s, _, _, t) = call(&h.app, "POST", "/admin/v1/limits", Some(OPERATOR), Some(json!({"scope": "key", "id": id, "rpm": 1}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let v = ok(&h.app, "POST", &format!("/admin/v1/keys/{id}/rotate"), None).await;
    let succ = v["id"].as_str().unwrap().to_string();
    let limits = h.store.list_limits().await.unwrap();
    let copy = limits.iter().find(|l| l.scope_id == succ).expect("successor limit");
    assert_eq!(copy.rpm, Some(1));
    // L2: an expired key cannot be rotated
    let exp = ok(&h.app, "POST", "/admin/v1/keys", Some(json!({"name": "exp", "expires_in": 1}))).await;
    let exp_id = exp["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _, _, _) = call(&h.app, "POST", &format!("/admin/v1/keys/{exp_id}/rotate"), Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn l1_empty_ip_allow_is_refused() {
    let h = harness().await;
    for body in [json!({"name": "x", "ip_allow": []}), json!({"name": "x", "ip_allow": [""]})] {
        let (s, _, e, _) = call(&h.app, "POST", "/admin/v1/keys", Some(OPERATOR), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(e["error"]["param"].as_str().unwrap().starts_with("ip_allow"), "{e}");
    }
}
