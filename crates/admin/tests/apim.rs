//! Issue-7 admin endpoints in-process (SQLite in a temp dir): services, apps, subscriptions —
//! auth on every route, bad input → 400 naming the field, unknown → 404, state conflicts →
//! 409, never a 500; bus events on every change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use gatehouse_admin::BootstrapOptions;
use gatehouse_store::{BusEvent, Store, Team};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;

const OPERATOR: &str = "test-operator-token-0123456789abcdefghijklmnop";

struct Harness {
    app: Router,
    store: Arc<dyn Store>,
    events: Arc<Mutex<Vec<BusEvent>>>,
}

async fn harness() -> Harness {
    let (store, service, events) = common::recorded_service("admin-apim").await;
    service
        .bootstrap(BootstrapOptions { admin_password: None, operator_token: Some(SecretString::from(OPERATOR)) })
        .await
        .unwrap();
    Harness { app: gatehouse_admin::router(service), store, events }
}

async fn call(app: &Router, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
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
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn op(h: &Harness, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (s, v) = call(&h.app, method, &format!("/admin/v1{path}"), Some(OPERATOR), body).await;
    assert!(s.as_u16() < 500, "{method} {path}: {s} {v}");
    (s, v)
}

async fn ok(h: &Harness, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = op(h, method, path, body).await;
    assert!(s.is_success(), "{method} {path}: {s} {v}");
    v
}

/// Expects `status` and, when given, the error's `param`.
async fn fails(h: &Harness, method: &str, path: &str, body: Option<Value>, status: u16, param: Option<&str>) {
    let (s, v) = op(h, method, path, body.clone()).await;
    assert_eq!(s.as_u16(), status, "{method} {path} {body:?}: {v}");
    if let Some(p) = param {
        assert_eq!(v["error"]["param"], p, "{method} {path}: {v}");
    }
}

const ID: &str = "0190a4b0-0000-7000-8000-000000000000";

#[tokio::test]
async fn every_issue7_route_requires_an_operator_token() {
    let h = harness().await;
    let routes = [
        ("POST", "/admin/v1/services".to_string()),
        ("GET", "/admin/v1/services".into()),
        ("GET", format!("/admin/v1/services/{ID}")),
        ("PATCH", "/admin/v1/services/x".into()),
        ("POST", "/admin/v1/services/x/publish".into()),
        ("POST", "/admin/v1/services/x/deprecate".into()),
        ("POST", "/admin/v1/services/x/retire".into()),
        ("POST", "/admin/v1/services/x/rollback".into()),
        ("GET", "/admin/v1/services/x/releases".into()),
        ("GET", "/admin/v1/services/x/releases/1".into()),
        ("GET", "/admin/v1/services/x/diff".into()),
        ("POST", "/admin/v1/apps".into()),
        ("DELETE", format!("/admin/v1/apps/{ID}")),
        ("POST", "/admin/v1/subscriptions".into()),
        ("GET", "/admin/v1/subscriptions".into()),
        ("GET", format!("/admin/v1/subscriptions/{ID}")),
        ("POST", format!("/admin/v1/subscriptions/{ID}/approve")),
        ("POST", format!("/admin/v1/subscriptions/{ID}/reject")),
        ("POST", format!("/admin/v1/subscriptions/{ID}/cancel")),
    ];
    for (m, p) in &routes {
        let (s, v) = call(&h.app, m, p, None, Some(json!({}))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {p}");
        assert_eq!(v["error"]["code"], "missing_credential");
    }
}

#[tokio::test]
async fn services_bad_input_conflicts_and_lifecycle_rules() {
    let h = harness().await;
    let rest_spec = json!({"routes": [{"path": "/a/{id}"}], "upstream": {"nodes": [{"url": "http://10.255.255.1:9"}]}});
    fails(&h, "POST", "/services", Some(json!({})), 400, Some("kind")).await;
    fails(&h, "POST", "/services", Some(json!({"kind": "soap", "name": "n", "slug": "s"})), 400, Some("kind")).await;
    fails(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "n", "slug": "Has Space"})), 400, Some("slug")).await;
    fails(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "n", "slug": "s", "bogus": 1})), 400, Some("bogus")).await;
    fails(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "n", "slug": "s", "visibility": "world"})), 400, Some("visibility")).await;
    fails(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "n", "slug": "s", "team_id": ID})), 404, Some("team_id")).await;
    fails(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "n", "slug": "s", "spec": {"routes": [{"path": "no-slash"}]}})), 400, Some("spec.routes[0].path")).await;
    fails(&h, "POST", "/services", None, 400, Some("body")).await;

    let created = ok(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "Orders", "slug": "orders"}))).await;
    assert_eq!((created["status"].as_str(), created["visibility"].as_str(), created["approval"].as_str()), (Some("draft"), Some("team"), Some("manual")));
    fails(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "Other", "slug": "orders"})), 409, Some("slug")).await;
    // incomplete spec cannot be published; draft cannot be deprecated
    fails(&h, "POST", "/services/orders/publish", None, 400, Some("spec.routes")).await;
    fails(&h, "POST", "/services/orders/deprecate", Some(json!({"sunset": "2099-01-01T00:00:00Z"})), 409, None).await;
    fails(&h, "PATCH", "/services/orders", Some(json!({"spec": {"models": ["x"]}})), 400, Some("spec.models")).await;
    h.events.lock().unwrap().clear();
    ok(&h, "PATCH", "/services/orders", Some(json!({"spec": rest_spec, "approval": "auto"}))).await;
    let published = ok(&h, "POST", "/services/orders/publish", None).await;
    assert_eq!(published["version"], 1);
    assert_eq!(published["live_spec"]["openapi"]["openapi"], "3.1.0");
    assert!(h.events.lock().unwrap().iter().filter(|e| **e == BusEvent::ServicesChanged).count() >= 2);
    fails(&h, "POST", "/services/orders/deprecate", Some(json!({})), 400, Some("sunset")).await;
    fails(&h, "POST", "/services/orders/deprecate", Some(json!({"sunset": "tomorrow"})), 400, Some("sunset")).await;
    fails(&h, "POST", "/services/orders/rollback", Some(json!({"version": 7})), 404, Some("version")).await;
    fails(&h, "POST", "/services/orders/rollback", Some(json!({"version": "one"})), 400, Some("version")).await;
    fails(&h, "GET", "/services/orders/diff?from=1", None, 400, Some("to")).await;
    fails(&h, "GET", "/services/orders/diff?from=1&to=x", None, 400, Some("to")).await;
    fails(&h, "GET", "/services/orders/diff?from=1&to=9", None, 404, Some("to")).await;
    fails(&h, "GET", "/services/orders/releases/0", None, 400, Some("version")).await;
    fails(&h, "GET", "/services/nope", None, 404, None).await;
    fails(&h, "GET", "/services?kind=soap", None, 400, Some("kind")).await;
    fails(&h, "GET", "/services?color=red", None, 400, Some("color")).await;
    assert_eq!(ok(&h, "GET", "/services?kind=rest&status=published", None).await["data"].as_array().unwrap().len(), 1);
    assert_eq!(ok(&h, "GET", "/services?kind=ai", None).await["data"].as_array().unwrap().len(), 0);
    // ai: an unknown model cannot be published
    ok(&h, "POST", "/services", Some(json!({"kind": "ai", "name": "Models", "slug": "models", "spec": {"models": ["nope"]}}))).await;
    fails(&h, "POST", "/services/models/publish", None, 400, Some("spec.models[0]")).await;
    // retire is final
    ok(&h, "POST", "/services/orders/retire", None).await;
    fails(&h, "POST", "/services/orders/retire", None, 409, None).await;
    fails(&h, "POST", "/services/orders/publish", None, 409, None).await;
    fails(&h, "PATCH", "/services/orders", Some(json!({"name": "x"})), 409, None).await;
}

#[tokio::test]
async fn subscriptions_visibility_approval_and_compare_and_set() {
    let h = harness().await;
    let spec = json!({"routes": [{"path": "/a"}], "upstream": {"nodes": [{"url": "http://10.255.255.1:9"}]}});
    ok(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "Internal", "slug": "internal", "spec": spec}))).await;
    ok(&h, "POST", "/services", Some(json!({"kind": "rest", "name": "Open", "slug": "open", "visibility": "public", "approval": "auto", "spec": spec}))).await;
    let teams = ok(&h, "GET", "/teams", None).await;
    let default_team = teams["data"].as_array().unwrap().iter().find(|t| t["name"] == "default").unwrap()["id"].clone();
    let app = ok(&h, "POST", "/apps", Some(json!({"name": "consumer", "team_id": default_team}))).await;
    let app_id = app["id"].as_str().unwrap().to_string();

    // draft → 409; unknown app → 404; bad ids → 400
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": app_id, "service": "internal"})), 409, Some("service")).await;
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": ID, "service": "internal"})), 404, Some("app_id")).await;
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": "x", "service": "internal"})), 400, Some("app_id")).await;
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": app_id, "service": "ghost"})), 404, Some("service")).await;
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": app_id, "service": "open", "expires_at": "2001-01-01T00:00:00Z"})), 400, Some("expires_at")).await;

    // another team's app: the drafts (public or not) answer exactly like an unknown service
    let other = Team { id: gatehouse_types::new_id(), name: "other".into(), created_at: gatehouse_types::now() };
    h.store.create_team(&other).await.unwrap();
    let foreign = ok(&h, "POST", "/apps", Some(json!({"name": "foreign", "team_id": other.id}))).await;
    let unknown = op(&h, "POST", "/subscriptions", Some(json!({"app_id": foreign["id"], "service": "ghost"}))).await;
    assert_eq!(unknown.0.as_u16(), 404, "{unknown:?}");
    for slug in ["internal", "open"] {
        assert_eq!(op(&h, "POST", "/subscriptions", Some(json!({"app_id": foreign["id"], "service": slug}))).await, unknown, "{slug}");
    }
    ok(&h, "POST", "/services/internal/publish", None).await;
    ok(&h, "POST", "/services/open/publish", None).await;

    // a team-only service is invisible to another team's app
    assert_eq!(op(&h, "POST", "/subscriptions", Some(json!({"app_id": foreign["id"], "service": "internal"}))).await, unknown);
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": foreign["id"], "service": "internal"})), 404, Some("service")).await;
    assert_eq!(ok(&h, "POST", "/subscriptions", Some(json!({"app_id": foreign["id"], "service": "open"}))).await["status"], "active");

    // manual: pending → approve once; second decision 409; double request 409
    let sub = ok(&h, "POST", "/subscriptions", Some(json!({"app_id": app_id, "service": "internal"}))).await;
    assert_eq!(sub["status"], "pending");
    let id = sub["id"].as_str().unwrap().to_string();
    fails(&h, "POST", "/subscriptions", Some(json!({"app_id": app_id, "service": "internal"})), 409, Some("service")).await;
    fails(&h, "POST", &format!("/subscriptions/{id}/reject"), None, 400, Some("reason")).await;
    fails(&h, "POST", &format!("/subscriptions/{id}/approve"), Some(json!({"expires_at": "2001-01-01T00:00:00Z"})), 400, Some("expires_at")).await;
    let approved = ok(&h, "POST", &format!("/subscriptions/{id}/approve"), Some(json!({"expires_at": "2099-01-01T00:00:00Z"}))).await;
    assert_eq!((approved["status"].as_str(), approved["expires_at"].as_str()), (Some("active"), Some("2099-01-01T00:00:00Z")));
    assert_eq!(approved["decided_by"], "user:admin");
    fails(&h, "POST", &format!("/subscriptions/{id}/approve"), None, 409, None).await;
    fails(&h, "POST", &format!("/subscriptions/{id}/reject"), Some(json!({"reason": "late"})), 409, None).await;
    ok(&h, "POST", &format!("/subscriptions/{id}/cancel"), Some(json!({"reason": "done"}))).await;
    fails(&h, "POST", &format!("/subscriptions/{id}/cancel"), None, 409, None).await;
    fails(&h, "POST", &format!("/subscriptions/{ID}/cancel"), None, 404, None).await;
    fails(&h, "POST", "/subscriptions/not-a-uuid/cancel", None, 400, None).await;
    // list filters
    fails(&h, "GET", "/subscriptions?status=maybe", None, 400, Some("status")).await;
    let cancelled = ok(&h, "GET", &format!("/subscriptions?app_id={app_id}&status=cancelled"), None).await;
    assert_eq!(cancelled["data"].as_array().unwrap().len(), 1);
    assert_eq!(ok(&h, "GET", "/subscriptions?status=active", None).await["data"].as_array().unwrap().len(), 1);
    // a request left pending while its service was retired cannot be approved any more
    let late = ok(&h, "POST", "/subscriptions", Some(json!({"app_id": app_id, "service": "internal"}))).await;
    ok(&h, "POST", "/services/internal/retire", None).await;
    fails(&h, "POST", &format!("/subscriptions/{}/approve", late["id"].as_str().unwrap()), None, 409, None).await;
    ok(&h, "POST", &format!("/subscriptions/{}/reject", late["id"].as_str().unwrap()), Some(json!({"reason": "retired"}))).await;
}
