//! Tenancy over HTTP (issue 7): users, sessions, memberships, the permission matrix on real
//! routes, and the cross-team isolation walk over EVERY route of the route table
//! (`gatehouse_admin::authz_http::ROUTES`), so new endpoints are covered automatically.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use gatehouse_admin::authz_http::{ROUTES, Target};
use gatehouse_admin::{AdminDeps, AdminService, BootstrapOptions};
use gatehouse_auth::token::Env;
use gatehouse_auth::{LocalKeyProvider, MasterKey, Peppers};
use gatehouse_store::{MemoryBus, MemoryCounters, Store};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

const OPERATOR: &str = "test-operator-token-0123456789abcdefghijklmnop";
const ALICE_PW: &str = "alice-canary-password-7Qx";
const BOB_PW: &str = "bob-canary-password-9Zk2";

mod common;

struct H {
    app: Router,
    store: Arc<dyn Store>,
    /// Serves the routing-health routes mounted into `app` (as the server does).
    _gateway: gatehouse_gateway::Gateway,
    /// The clock (Unix ms) of the service's counters (login throttling windows).
    clock: Arc<AtomicI64>,
}

/// A fixed instant in the middle of a minute: throttling windows never roll over by themselves.
const T0_MS: i64 = 1_800_000_030_000;

async fn harness() -> H {
    let dir = std::env::temp_dir().join(format!("gh-iso-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = gatehouse_store::connect(&format!("sqlite://{}/gatehouse.db", dir.display())).await.unwrap();
    store.migrate().await.unwrap();
    let master = MasterKey::generate().unwrap();
    let deps = AdminDeps {
        store: store.clone(),
        bus: Arc::new(MemoryBus::new()),
        peppers: Arc::new(Peppers::from_master_key(&master)),
        key_provider: Arc::new(LocalKeyProvider::new(&master)),
        env: Env::Live,
        audit: gatehouse_store::AuditSink::spawn(store.clone()).0,
    };
    let clock = Arc::new(AtomicI64::new(T0_MS));
    let c = clock.clone();
    let counters = MemoryCounters::with_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    let service = Arc::new(AdminService::new(deps.clone()).with_counters(Arc::new(counters)));
    service
        .bootstrap(BootstrapOptions { admin_password: None, operator_token: Some(SecretString::from(OPERATOR)) })
        .await
        .unwrap();
    let (app, gateway) = common::admin_router_with_gateway(&deps, service).await;
    H { app, store, _gateway: gateway, clock }
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
    /// The session cookie plus its `X-CSRF-Token` (state-changing cookie requests, M8).
    CookieCsrf(&'a str, &'a str),
}

async fn call(app: &Router, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> (StatusCode, http::HeaderMap, Value, String) {
    let mut req = Request::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
        Auth::Cookie(c) => req = req.header("cookie", format!("theme=dark; gatehouse_session={c}")),
        Auth::CookieCsrf(c, t) => {
            req = req.header("cookie", format!("theme=dark; gatehouse_session={c}")).header("x-csrf-token", t)
        }
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
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null), text)
}

async fn ok(app: &Router, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> Value {
    let (s, _, v, t) = call(app, method, path, auth, body).await;
    assert!(s.is_success(), "{method} {path}: {s} {t}");
    v
}

fn cookie_of(headers: &http::HeaderMap) -> String {
    let c = headers["set-cookie"].to_str().unwrap();
    c.split(';').next().unwrap().strip_prefix("gatehouse_session=").unwrap().to_string()
}

/// The CSRF token of a cookie session, as `GET /me` tells it.
async fn csrf_of(app: &Router, cookie: &str) -> String {
    ok(app, "GET", "/admin/v1/me", Auth::Cookie(cookie), None).await["csrf_token"].as_str().unwrap().to_string()
}

/// Logs in and mints an operator token for the user; returns (cookie, token).
async fn token_for(app: &Router, user: &str, pw: &str) -> (String, String) {
    let (s, headers, _, t) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": user, "password": pw}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let cookie = cookie_of(&headers);
    let csrf = csrf_of(app, &cookie).await;
    let tok = ok(app, "POST", "/admin/v1/me/tokens", Auth::CookieCsrf(&cookie, &csrf), Some(json!({"name": "cli"}))).await;
    (cookie, tok["token"].as_str().unwrap().to_string())
}

struct World {
    h: H,
    team_a: String,
    team_b: String,
    alice: String,
    app_a: String,
    key_a: String,
    bob_token: String,
}

/// Team A (alice owner, an app, a key) and team B (bob owner); both system role member.
async fn world() -> World {
    let h = harness().await;
    let app = &h.app;
    let admin = || Auth::Bearer(OPERATOR);
    let alice = ok(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "alice", "password": ALICE_PW}))).await;
    let bob = ok(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "bob", "password": BOB_PW}))).await;
    assert_eq!(alice["system_role"], "member");
    assert!(alice.get("password_hash").is_none());
    let alice = alice["id"].as_str().unwrap().to_string();
    let bob = bob["id"].as_str().unwrap().to_string();
    let team_a = ok(app, "POST", "/admin/v1/teams", admin(), Some(json!({"name": "team-a", "owner": alice}))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let team_b = ok(app, "POST", "/admin/v1/teams", admin(), Some(json!({"name": "team-b", "owner": bob}))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, alice_token) = token_for(app, "alice", ALICE_PW).await;
    let (_, bob_token) = token_for(app, "bob", BOB_PW).await;
    let app_a = ok(app, "POST", "/admin/v1/apps", Auth::Bearer(&alice_token), Some(json!({"team_id": team_a, "name": "billing"}))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key_a = ok(app, "POST", "/admin/v1/keys", Auth::Bearer(&alice_token), Some(json!({"name": "k", "app_id": app_a}))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    World { h, team_a, team_b, alice, app_a, key_a, bob_token }
}

/// A body for a route that would be valid if the caller could act on team A.
fn body_for(method: &str, path: &str, w: &World) -> Option<Value> {
    if method == "GET" || method == "DELETE" {
        return None;
    }
    Some(match path {
        "/apps" => json!({"team_id": w.team_a, "name": "sneaky"}),
        "/keys" => json!({"name": "sneaky", "app_id": w.app_a}),
        "/teams" => json!({"name": "sneaky"}),
        "/users" => json!({"username": "sneaky", "password": "long-enough-password"}),
        "/users/{id}" => json!({"system_role": "admin"}),
        "/teams/{id}/members/{user_id}" => json!({"role": "owner"}),
        "/me/tokens" => json!({"name": "mine"}),
        "/limits" => json!({"scope": "team", "scope_id": w.team_a, "rpm": 1}),
        "/providers" => json!({"name": "x", "kind": "openai"}),
        "/models" => json!({"name": "x", "deployments": [{"provider": "x", "model": "y"}]}),
        "/services" => json!({"team_id": w.team_a, "kind": "rest", "name": "sneaky", "slug": "sneaky"}),
        "/subscriptions" => json!({"app_id": w.app_a, "service": "sneaky"}),
        "/oauth-clients" => json!({"name": "sneaky", "app_id": w.app_a}),
        _ => json!({}),
    })
}

fn concrete(pattern: &str, target: Target, w: &World) -> String {
    let id = match target {
        Target::TeamParam => w.team_a.clone(),
        Target::KeyParam => w.key_a.clone(),
        Target::AppParam => w.app_a.clone(),
        _ if pattern.starts_with("/users/") => w.alice.clone(),
        _ => "0190a4b0-0000-7000-8000-000000000000".into(),
    };
    format!("/admin/v1{}", pattern.replace("{id}", &id).replace("{user_id}", &w.alice).replace("{name}", "x"))
}

/// Every route of the table, called by bob (owner of team B, system member) against team A's
/// resources: 403 or 404 — or, for the few routes that serve the caller's own data, a success
/// or 400 that shows nothing of team A — and team A is unchanged afterwards.
#[tokio::test]
async fn foreign_team_credentials_see_and_change_nothing_on_every_route() {
    let w = world().await;
    let secrets_of_a = [w.team_a.as_str(), w.app_a.as_str(), w.key_a.as_str(), "team-a", "billing", "alice"];
    let own_data_routes = ["/me", "/me/tokens", "/me/password", "/session", "/teams", "/apps", "/keys", "/logs", "/models", "/services", "/subscriptions", "/limits", "/oauth-clients"];
    let mut walked = 0;
    for r in ROUTES.iter() {
        let path = concrete(r.path, r.target, &w);
        let body = body_for(r.method.as_str(), r.path, &w);
        let (s, _, _, text) = call(&w.h.app, r.method.as_str(), &path, Auth::Bearer(&w.bob_token), body.clone()).await;
        walked += 1;
        for secret in secrets_of_a {
            assert!(!text.contains(secret), "{} {} leaked {secret}: {text}", r.method, r.path);
        }
        if own_data_routes.contains(&r.path) {
            assert!(s.is_success() || s == 400 || s == 403 || s == 404, "{} {}: {s} {text}", r.method, r.path);
        } else {
            assert!(s == 403 || s == 404, "{} {}: expected 403/404, got {s} {text}", r.method, r.path);
        }
        // the route exists: the admin does not get the router's 404/405
        let (s, _, v, _) = call(&w.h.app, r.method.as_str(), &concrete(r.path, r.target, &w), Auth::Bearer("not-a-valid-token-but-long-enough-000000"), body).await;
        assert_eq!(s, 401, "{} {} checks the credential first", r.method, r.path);
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    assert_eq!(walked, ROUTES.len());
    // nothing of team A changed
    let admin = || Auth::Bearer(OPERATOR);
    let key = ok(&w.h.app, "GET", &format!("/admin/v1/keys/{}", w.key_a), admin(), None).await;
    assert!(key["revoked_at"].is_null());
    let members = ok(&w.h.app, "GET", &format!("/admin/v1/teams/{}/members", w.team_a), admin(), None).await;
    assert_eq!(members["data"].as_array().unwrap().len(), 1);
    assert_eq!(members["data"][0]["username"], "alice");
    let apps = ok(&w.h.app, "GET", &format!("/admin/v1/apps?team_id={}", w.team_a), admin(), None).await;
    assert_eq!(apps["data"].as_array().unwrap().len(), 1);
    let users = ok(&w.h.app, "GET", "/admin/v1/users", admin(), None).await;
    assert!(users["data"].as_array().unwrap().iter().all(|u| u["username"] != "sneaky"));
    assert!(users["data"].as_array().unwrap().iter().filter(|u| u["system_role"] == "admin").count() == 1);
    // bob still sees his own team
    let teams = ok(&w.h.app, "GET", "/admin/v1/teams", Auth::Bearer(&w.bob_token), None).await;
    let names: Vec<&str> = teams["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team-b"]);
    assert!(w.team_b.len() == 36);
}

/// The team roles on real routes: viewer reads, developer writes keys, admin manages members,
/// only an owner grants owner, the last owner stays.
#[tokio::test]
async fn team_roles_on_real_routes() {
    let w = world().await;
    let app = &w.h.app;
    let admin = || Auth::Bearer(OPERATOR);
    let carol = ok(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "carol", "password": "carol-password-123"}))).await;
    let carol_id = carol["id"].as_str().unwrap();
    let member_path = format!("/admin/v1/teams/{}/members/{carol_id}", w.team_a);
    let (_, alice_tok) = token_for(app, "alice", ALICE_PW).await;
    let (s, _, _, _) = call(app, "PUT", &member_path, Auth::Bearer(&alice_tok), Some(json!({"role": "viewer"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, carol_tok) = token_for(app, "carol", "carol-password-123").await;
    let as_carol = || Auth::Bearer(&carol_tok);
    // viewer: reads keys and apps, cannot create a key
    let keys = ok(app, "GET", "/admin/v1/keys", as_carol(), None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    let (s, _, v, _) = call(app, "POST", "/admin/v1/keys", as_carol(), Some(json!({"name": "x", "app_id": w.app_a}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")));
    let (s, _, _, _) = call(app, "POST", &format!("/admin/v1/keys/{}/revoke", w.key_a), as_carol(), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // developer: creates keys, cannot manage members
    ok(app, "PUT", &member_path, Auth::Bearer(&alice_tok), Some(json!({"role": "developer"}))).await;
    ok(app, "POST", "/admin/v1/keys", as_carol(), Some(json!({"name": "x", "app_id": w.app_a}))).await;
    let (s, _, _, _) = call(app, "PUT", &member_path, as_carol(), Some(json!({"role": "admin"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // admin: manages members but cannot grant owner
    ok(app, "PUT", &member_path, Auth::Bearer(&alice_tok), Some(json!({"role": "admin"}))).await;
    let (s, _, _, _) = call(app, "PUT", &member_path, as_carol(), Some(json!({"role": "owner"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let alice_path = format!("/admin/v1/teams/{}/members/{}", w.team_a, w.alice);
    let (s, _, _, _) = call(app, "DELETE", &alice_path, as_carol(), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an admin cannot remove an owner");
    // the last owner cannot leave or be demoted
    let (s, _, v, _) = call(app, "DELETE", &alice_path, Auth::Bearer(&alice_tok), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    let (s, _, _, _) = call(app, "PUT", &alice_path, Auth::Bearer(&alice_tok), Some(json!({"role": "viewer"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // a membership change applies to the very next request (no stale principal)
    ok(app, "DELETE", &member_path, Auth::Bearer(&alice_tok), None).await;
    let keys = ok(app, "GET", "/admin/v1/keys", as_carol(), None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 0);
    let (s, _, _, _) = call(app, "GET", &format!("/admin/v1/keys/{}", w.key_a), as_carol(), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // bad inputs: clear 400s naming the field
    let (s, _, v, _) = call(app, "PUT", &member_path, Auth::Bearer(&alice_tok), Some(json!({"role": "king"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("role")));
    let (s, _, v, _) = call(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "Dave!", "password": "long-enough-password"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("username")));
    let (s, _, v, _) = call(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "dave", "password": "short"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("password")));
    let (s, _, _, _) = call(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "alice", "password": "long-enough-password"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// Login sessions: the cookie's attributes, wrong passwords, logout ends the session server
/// side, nothing secret is stored or echoed.
#[tokio::test]
async fn sessions_login_use_and_logout() {
    let w = world().await;
    let app = &w.h.app;
    let (s, headers, body, text) =
        call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": "alice", "password": ALICE_PW}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let set = headers["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert_eq!(body["user"]["username"], "alice");
    assert!(!text.contains(ALICE_PW));
    let cookie = cookie_of(&headers);
    assert!(cookie.len() >= 43, "256 bits of randomness");
    let me = ok(app, "GET", "/admin/v1/me", Auth::Cookie(&cookie), None).await;
    assert_eq!(me["auth"], "session");
    assert_eq!(me["memberships"][0]["team"], "team-a");
    assert_eq!(me["memberships"][0]["role"], "owner");
    // the stored session is a digest: neither the cookie nor the password is in the database
    let dump = w.h.store.debug_dump().await.unwrap();
    assert!(!dump.contains(&cookie) && !dump.contains(ALICE_PW) && !dump.contains(BOB_PW));
    // wrong password and unknown user: the same 401
    for (u, p) in [("alice", "wrong-password-000"), ("nobody", ALICE_PW)] {
        let (s, h2, v, t) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": u, "password": p}))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["message"], "wrong username or password");
        assert!(h2.get("set-cookie").is_none() && !t.contains(p));
    }
    let (s, _, v, _) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": "alice"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("password")));
    // logout with an operator token is a client error; with the cookie it ends the session
    let (s, _, _, _) = call(app, "DELETE", "/admin/v1/session", Auth::Bearer(OPERATOR), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let csrf = csrf_of(app, &cookie).await;
    let (s, h3, _, _) = call(app, "DELETE", "/admin/v1/session", Auth::CookieCsrf(&cookie, &csrf), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h3["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (s, _, v, _) = call(app, "GET", "/admin/v1/me", Auth::Cookie(&cookie), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_api_key")));
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Cookie("forged-cookie-value"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // a member cannot reach admin-only routes with a valid session either
    let (cookie2, _) = token_for(app, "bob", BOB_PW).await;
    let (s, _, v, _) = call(app, "GET", "/admin/v1/providers", Auth::Cookie(&cookie2), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")));
}

#[tokio::test]
async fn h7_operator_token_revoke_leak_report_and_password_reset() {
    let h = harness().await;
    let app = &h.app;
    let admin = || Auth::Bearer(OPERATOR);
    let alice = ok(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "alice", "password": ALICE_PW}))).await;
    let alice = alice["id"].as_str().unwrap().to_string();
    // /me/tokens without expires_in gets a default expiry; a too-long one is refused
    let (cookie, t1) = token_for(app, "alice", ALICE_PW).await;
    let csrf = csrf_of(app, &cookie).await;
    let v = ok(app, "POST", "/admin/v1/me/tokens", Auth::CookieCsrf(&cookie, &csrf), Some(json!({"name": "x"}))).await;
    assert!(v["expires_at"].is_string(), "{v}");
    let (s, _, v, _) =
        call(app, "POST", "/admin/v1/me/tokens", Auth::CookieCsrf(&cookie, &csrf), Some(json!({"name": "x", "expires_in": "3650d"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("expires_in")));
    // revoke via the admin API: the very next request fails
    ok(app, "GET", "/admin/v1/me", Auth::Bearer(&t1), None).await;
    let v = ok(app, "POST", "/admin/v1/tokens/revoke", admin(), Some(json!({"token": t1}))).await;
    assert_eq!((v["revoked"].as_bool(), v["kind"].as_str()), (Some(true), Some("operator_token")), "{v}");
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Bearer(&t1), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // a leak report revokes a gtho_ token
    let (_, t2) = token_for(app, "alice", ALICE_PW).await;
    let (s, _, _, _) = call(app, "POST", "/admin/v1/credentials/report-leak", Auth::None, Some(json!({"tokens": [t2]}))).await;
    assert!(s.is_success() || s == StatusCode::UNAUTHORIZED, "{s}");
    if s == StatusCode::UNAUTHORIZED {
        ok(app, "POST", "/admin/v1/credentials/report-leak", admin(), Some(json!({"tokens": [t2]}))).await;
    }
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Bearer(&t2), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // a password reset ends the user's operator tokens
    let (_, t3) = token_for(app, "alice", ALICE_PW).await;
    ok(app, "PATCH", &format!("/admin/v1/users/{alice}"), admin(), Some(json!({"password": "a-brand-new-password-1"}))).await;
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Bearer(&t3), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // the caller's own token survives its own password change
    ok(app, "GET", "/admin/v1/me", admin(), None).await;
}

// ------------------------------------------------------------------ M8: session security

/// A request with extra headers (and optionally a client address, as `ConnectInfo` gives it).
async fn call_with(
    app: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    peer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    if let Some(ip) = peer {
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn login(app: &Router, user: &str, pw: &str) -> (String, String) {
    let (s, headers, v, t) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": user, "password": pw}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    (cookie_of(&headers), v["csrf_token"].as_str().unwrap().to_string())
}

/// M8 (a): state-changing cookie requests need the session's `X-CSRF-Token` (constant-time
/// compared), a same-origin `Sec-Fetch-Site` and a matching `Origin` when sent; safe methods
/// and operator-token requests are unaffected.
#[tokio::test]
async fn csrf_cookie_writes_need_the_session_token_and_same_origin() {
    let w = world().await;
    let app = &w.h.app;
    let (cookie, csrf) = login(app, "alice", ALICE_PW).await;
    assert!(csrf.len() >= 43, "a 256-bit token");
    let me = ok(app, "GET", "/admin/v1/me", Auth::Cookie(&cookie), None).await;
    assert_eq!(me["csrf_token"], csrf.as_str(), "GET /me repeats the login's token");
    let (other_cookie, other_csrf) = login(app, "alice", ALICE_PW).await;
    assert_ne!(csrf, other_csrf, "one token per session");
    let c = format!("gatehouse_session={cookie}");
    let mint = || Some(json!({"name": "csrf"}));
    let refused = |r: (StatusCode, http::HeaderMap, Value), why: &str| {
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{why}: {}", r.2);
        assert_eq!(r.2["error"]["code"], "csrf_failed", "{why}");
        assert_eq!(r.2["error"]["type"], "permission_error", "{why}");
        assert!(!r.2.to_string().contains(&csrf), "{why}: the token is not echoed");
    };
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &[("cookie", &c)], None, mint()).await, "no header");
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &[("cookie", &c), ("x-csrf-token", "nope")], None, mint()).await, "wrong");
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &[("cookie", &c), ("x-csrf-token", &other_csrf)], None, mint()).await, "other session's");
    refused(call_with(app, "DELETE", "/admin/v1/session", &[("cookie", &c)], None, None).await, "logout without a token");
    let good = [("cookie", c.as_str()), ("x-csrf-token", csrf.as_str()), ("host", "admin.example:8081")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h: Vec<(&str, &str)> = good.to_vec();
        h.extend_from_slice(extra);
        h
    };
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &with(&[("origin", "https://evil.example")]), None, mint()).await, "foreign origin");
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &with(&[("origin", "null")]), None, mint()).await, "null origin");
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &with(&[("sec-fetch-site", "cross-site")]), None, mint()).await, "cross-site");
    refused(call_with(app, "POST", "/admin/v1/me/tokens", &with(&[("sec-fetch-site", "same-site")]), None, mint()).await, "same-site");
    for extra in [&[][..], &[("origin", "https://admin.example:8081"), ("sec-fetch-site", "same-origin")][..]] {
        let (s, _, v) = call_with(app, "POST", "/admin/v1/me/tokens", &with(extra), None, mint()).await;
        assert_eq!(s, StatusCode::CREATED, "{extra:?}: {v}");
    }
    // safe methods need no token; operator tokens need none either and get no csrf_token
    let (s, _, _) = call_with(app, "GET", "/admin/v1/me", &[("cookie", &c), ("sec-fetch-site", "cross-site")], None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, alice_token) = token_for(app, "alice", ALICE_PW).await;
    let v = ok(app, "POST", "/admin/v1/me/tokens", Auth::Bearer(&alice_token), mint()).await;
    assert!(v["token"].is_string());
    assert!(ok(app, "GET", "/admin/v1/me", Auth::Bearer(&alice_token), None).await.get("csrf_token").is_none());
    // the other session still works with its own token
    ok(app, "DELETE", "/admin/v1/session", Auth::CookieCsrf(&other_cookie, &other_csrf), None).await;
}

/// M8 (b, c): after `USER_PER_MINUTE` failures for a username, every attempt for it answers 429
/// with `Retry-After` — also with the right password, and the same for an unknown username;
/// other usernames are not affected; a success resets the count; the window's end lifts it.
/// Every attempt is audited without the password.
#[tokio::test]
async fn login_is_throttled_per_username_without_revealing_the_user_and_audited() {
    use gatehouse_admin::service::login_guard::USER_PER_MINUTE;
    let w = world().await;
    let app = &w.h.app;
    let attempt = |u: &'static str, p: &'static str| async move {
        let (s, h, v, t) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": u, "password": p}))).await;
        assert!(!t.contains(p));
        (s, h.get("retry-after").map(|v| v.to_str().unwrap().to_string()), v)
    };
    for user in ["alice", "nobody"] {
        for _ in 0..USER_PER_MINUTE {
            assert_eq!(attempt(user, "wrong-password-canary-1").await.0, StatusCode::UNAUTHORIZED);
        }
        let (s, retry, v) = attempt(user, "wrong-password-canary-1").await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded")), "{user}");
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
        assert_eq!(v["error"]["message"], "too many failed logins; try again later");
    }
    // the right password does not get through (no oracle while throttled)
    assert_eq!(attempt("alice", ALICE_PW).await.0, StatusCode::TOO_MANY_REQUESTS);
    // another user is unaffected; a success resets that user's count
    for _ in 0..USER_PER_MINUTE - 1 {
        assert_eq!(attempt("bob", "wrong-password-canary-1").await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(attempt("bob", BOB_PW).await.0, StatusCode::CREATED);
    for _ in 0..USER_PER_MINUTE - 1 {
        assert_eq!(attempt("bob", "wrong-password-canary-1").await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(attempt("bob", BOB_PW).await.0, StatusCode::CREATED, "the count was reset by the success");
    // the minute window ends: alice may try again
    w.h.clock.fetch_add(60_000, Ordering::SeqCst);
    assert_eq!(attempt("alice", ALICE_PW).await.0, StatusCode::CREATED);
    // audited: failures with their reason, successes; never a password
    let events = ok(app, "GET", "/admin/v1/audit?event_type=login.failed&limit=1000", Auth::Bearer(OPERATOR), None).await;
    let events = events["data"].as_array().unwrap();
    let reasons = |r: &str| events.iter().filter(|e| e["reason"] == r).count();
    assert_eq!(reasons("bad_credentials") as u64, 2 * USER_PER_MINUTE + 2 * (USER_PER_MINUTE - 1));
    assert_eq!(reasons("throttled"), 3);
    assert!(events.iter().any(|e| e["details"]["user_id"] == w.alice.as_str()));
    assert!(events.iter().any(|e| e["details"]["user_id"].is_null()), "unknown user: no id");
    let ok_events = ok(app, "GET", "/admin/v1/audit?event_type=login.succeeded&limit=1000", Auth::Bearer(OPERATOR), None).await;
    assert!(ok_events["data"].as_array().unwrap().iter().any(|e| e["details"]["user_id"] == w.alice.as_str()));
    let dump = w.h.store.debug_dump().await.unwrap();
    assert!(!dump.contains("wrong-password-canary-1") && !dump.contains(ALICE_PW) && !dump.contains("nobody"));
}

/// M8 (b): per client IP, across usernames; other addresses are unaffected.
#[tokio::test]
async fn login_is_throttled_per_client_ip() {
    use gatehouse_admin::service::login_guard::IP_PER_MINUTE;
    let w = world().await;
    let app = &w.h.app;
    let attempt = |ip: &'static str, u: String, p: &'static str| async move {
        call_with(app, "POST", "/admin/v1/session", &[], Some(ip), Some(json!({"username": u, "password": p}))).await.0
    };
    for i in 0..IP_PER_MINUTE {
        assert_eq!(attempt("203.0.113.7", format!("user{i}"), "wrong-password-canary-2").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(attempt("203.0.113.7", "alice".into(), ALICE_PW).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt("198.51.100.9", "alice".into(), ALICE_PW).await, StatusCode::CREATED);
}

/// Tester M3: parallel wrong passwords cannot bypass the throttle. Each attempt reserves its
/// place before argon2, so of 40 parallel attempts for one username at most `USER_PER_MINUTE`
/// are checked (401), the rest answer 429; the same per client IP across usernames.
#[tokio::test]
async fn m3_parallel_wrong_logins_are_throttled_before_the_password_check() {
    use gatehouse_admin::service::login_guard::{IP_PER_MINUTE, USER_PER_MINUTE};
    let w = world().await;
    let run = |ip: &'static str, per_user: bool| {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..40 {
            let app = w.h.app.clone();
            let user = if per_user { "alice".to_string() } else { format!("user{i}") };
            set.spawn(async move {
                let body = json!({"username": user, "password": "wrong-password-canary-3"});
                call_with(&app, "POST", "/admin/v1/session", &[], Some(ip), Some(body)).await.0
            });
        }
        set
    };
    for (ip, per_user, limit) in [("203.0.113.20", true, USER_PER_MINUTE), ("203.0.113.21", false, IP_PER_MINUTE)] {
        let (mut unauthorized, mut throttled) = (0u64, 0u64);
        let mut set = run(ip, per_user);
        while let Some(status) = set.join_next().await {
            match status.unwrap() {
                StatusCode::UNAUTHORIZED => unauthorized += 1,
                StatusCode::TOO_MANY_REQUESTS => throttled += 1,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(unauthorized, limit, "{ip}: checked attempts");
        assert_eq!(throttled, 40 - limit, "{ip}");
    }
}

/// Tester M4: a session opened with the old password that survives a password change's
/// revocation sweep (a login racing the change: its session row lands after the sweep) no
/// longer authenticates. Simulated deterministically: the hash is changed in the store without
/// the service's sweep, so the session stays unrevoked in its row.
#[tokio::test]
async fn m4_session_from_before_a_password_change_no_longer_authenticates() {
    let w = world().await;
    let app = &w.h.app;
    let (c, _) = login(app, "alice", ALICE_PW).await;
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Cookie(&c), None).await;
    assert_eq!(s, StatusCode::OK, "valid before the change");
    let id: gatehouse_types::Id = w.alice.parse().unwrap();
    let mut user = w.h.store.get_user(id).await.unwrap().unwrap();
    user.password_hash = gatehouse_auth::password::hash_password("alice-new-password-77").unwrap();
    assert!(w.h.store.update_user(&user).await.unwrap());
    let (s, _, v, _) = call(app, "GET", "/admin/v1/me", Auth::Cookie(&c), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_api_key")));
    // a login with the new password works
    let (c2, _) = login(app, "alice", "alice-new-password-77").await;
    assert_eq!(call(app, "GET", "/admin/v1/me", Auth::Cookie(&c2), None).await.0, StatusCode::OK);
}

/// M8 (d): a password change ends the user's sessions — except the session making the change.
#[tokio::test]
async fn password_change_ends_the_users_sessions_except_the_callers() {
    let w = world().await;
    let app = &w.h.app;
    let (a1, _) = login(app, "alice", ALICE_PW).await;
    let (a2, _) = login(app, "alice", ALICE_PW).await;
    let alice = w.alice.clone();
    ok(app, "PATCH", &format!("/admin/v1/users/{alice}"), Auth::Bearer(OPERATOR), Some(json!({"password": "alice-new-password-42"}))).await;
    for c in [&a1, &a2] {
        let (s, _, v, _) = call(app, "GET", "/admin/v1/me", Auth::Cookie(c), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_api_key")));
    }
    // a system admin changing their own password in a session keeps that session only
    ok(app, "POST", "/admin/v1/users", Auth::Bearer(OPERATOR), Some(json!({"username": "root2", "password": "root2-password-0001", "system_role": "admin"}))).await;
    let (r1, r1_csrf) = login(app, "root2", "root2-password-0001").await;
    let (r2, _) = login(app, "root2", "root2-password-0001").await;
    let root2 = ok(app, "GET", "/admin/v1/me", Auth::Cookie(&r1), None).await["user"]["id"].as_str().unwrap().to_string();
    ok(app, "PATCH", &format!("/admin/v1/users/{root2}"), Auth::CookieCsrf(&r1, &r1_csrf), Some(json!({"password": "root2-password-0002"}))).await;
    ok(app, "GET", "/admin/v1/me", Auth::Cookie(&r1), None).await;
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Cookie(&r2), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let events = ok(app, "GET", "/admin/v1/audit?event_type=session.revoked", Auth::Bearer(OPERATOR), None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 2, "{events}");
}

// ------------------------------------------------------------------ team-scoped limits, clients

/// A user `name` in `team` with `role`; returns their operator token.
async fn member_token(w: &World, name: &str, team: &str, role: &str) -> String {
    let app = &w.h.app;
    let pw = format!("{name}-password-long-1");
    let u = ok(app, "POST", "/admin/v1/users", Auth::Bearer(OPERATOR), Some(json!({"username": name, "password": pw}))).await;
    let path = format!("/admin/v1/teams/{team}/members/{}", u["id"].as_str().unwrap());
    ok(app, "PUT", &path, Auth::Bearer(OPERATOR), Some(json!({"role": role}))).await;
    token_for(app, name, &pw).await.1
}

fn err(r: &(StatusCode, http::HeaderMap, Value, String)) -> (u16, String) {
    (r.0.as_u16(), r.2["error"]["code"].as_str().unwrap_or_default().to_string())
}

/// Issue 7 item 3: team owners/admins manage their own team's limits (team, app and key scope);
/// other teams get 404 like an unknown id, lower roles 403; lists show only the caller's teams'
/// rows; model-scope rows stay with system admins.
#[tokio::test]
async fn limits_are_team_scoped() {
    let w = world().await;
    let app = &w.h.app;
    let alice = token_for(app, "alice", ALICE_PW).await.1;
    let viewer = member_token(&w, "vera", &w.team_a, "viewer").await;
    let admin_a = member_token(&w, "adam", &w.team_a, "admin").await;
    let set = |tok: &str, body: Value| {
        let tok = tok.to_string();
        async move { call(app, "POST", "/admin/v1/limits", Auth::Bearer(&tok), Some(body)).await }
    };
    let row_app = set(&alice, json!({"scope": "app", "id": w.app_a, "rpm": 10})).await;
    assert_eq!(row_app.0, StatusCode::CREATED, "{}", row_app.3);
    let row_key = set(&admin_a, json!({"scope": "key", "id": w.key_a, "tpm": 1000})).await;
    assert_eq!(row_key.0, StatusCode::CREATED, "{}", row_key.3);
    let row_team = set(&alice, json!({"scope": "team", "id": w.team_a, "rpm": 100})).await;
    assert_eq!(row_team.0, StatusCode::CREATED);
    assert_eq!(err(&set(&viewer, json!({"scope": "app", "id": w.app_a, "rpm": 1})).await), (403, "permission_denied".into()));
    let foreign = set(&w.bob_token, json!({"scope": "app", "id": w.app_a, "rpm": 1})).await;
    assert_eq!((err(&foreign), foreign.2["error"]["param"].as_str()), ((404, "not_found".into()), Some("id")));
    assert_eq!(foreign.2["error"]["message"], "no app with this id", "reads like an unknown id");
    assert_eq!(err(&set(&w.bob_token, json!({"scope": "team", "id": w.team_a, "rpm": 1})).await).0, 404);
    assert_eq!(err(&set(&alice, json!({"scope": "model", "id": "demo", "rpm": 1})).await), (403, "permission_denied".into()));
    let model_row = ok(app, "POST", "/admin/v1/limits", Auth::Bearer(OPERATOR), Some(json!({"scope": "model", "id": "demo", "rpm": 5}))).await;
    // lists
    let ids = |v: Value| v["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let mine = ids(ok(app, "GET", "/admin/v1/limits", Auth::Bearer(&viewer), None).await);
    assert_eq!(mine.len(), 3, "the viewer reads the team's three rows, not the model row: {mine:?}");
    assert!(!mine.contains(&model_row["id"].as_str().unwrap().to_string()));
    assert!(ids(ok(app, "GET", "/admin/v1/limits", Auth::Bearer(&w.bob_token), None).await).is_empty());
    assert_eq!(ids(ok(app, "GET", "/admin/v1/limits", Auth::Bearer(OPERATOR), None).await).len(), 4);
    // delete
    let app_row = row_app.2["id"].as_str().unwrap().to_string();
    let del = |tok: String, id: String| async move { call(app, "DELETE", &format!("/admin/v1/limits/{id}"), Auth::Bearer(&tok), None).await };
    assert_eq!(err(&del(w.bob_token.clone(), app_row.clone()).await).0, 404);
    assert_eq!(err(&del(viewer.clone(), app_row.clone()).await), (403, "permission_denied".into()));
    assert_eq!(err(&del(alice.clone(), model_row["id"].as_str().unwrap().to_string()).await), (403, "permission_denied".into()));
    assert_eq!(del(alice.clone(), app_row.clone()).await.0, StatusCode::OK);
    assert_eq!(del(alice, app_row).await.0, StatusCode::NOT_FOUND);
}

/// Issue 7 item 3: OAuth clients of a team's apps: created, listed, read and revoked by the team
/// (developer+ writes, viewer reads), invisible (404) to other teams.
#[tokio::test]
async fn oauth_clients_are_team_scoped() {
    let w = world().await;
    let app = &w.h.app;
    let alice = token_for(app, "alice", ALICE_PW).await.1;
    let viewer = member_token(&w, "vera", &w.team_a, "viewer").await;
    let dev = member_token(&w, "devi", &w.team_a, "developer").await;
    let body = json!({"name": "jobs", "app_id": w.app_a});
    let c = call(app, "POST", "/admin/v1/oauth-clients", Auth::Bearer(&dev), Some(body.clone())).await;
    assert_eq!(c.0, StatusCode::CREATED, "{}", c.3);
    let id = c.2["id"].as_str().unwrap().to_string();
    assert_eq!(err(&call(app, "POST", "/admin/v1/oauth-clients", Auth::Bearer(&viewer), Some(body.clone())).await), (403, "permission_denied".into()));
    assert_eq!(err(&call(app, "POST", "/admin/v1/oauth-clients", Auth::Bearer(&w.bob_token), Some(body)).await).0, 404);
    // bob's own client in team B
    let app_b = ok(app, "POST", "/admin/v1/apps", Auth::Bearer(&w.bob_token), Some(json!({"team_id": w.team_b, "name": "b-app"}))).await;
    let b_client = ok(app, "POST", "/admin/v1/oauth-clients", Auth::Bearer(&w.bob_token), Some(json!({"name": "b", "app_id": app_b["id"]}))).await;
    let list = |tok: String| async move {
        let v = ok(app, "GET", "/admin/v1/oauth-clients", Auth::Bearer(&tok), None).await;
        v["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(list(viewer.clone()).await, vec![id.clone()]);
    assert_eq!(list(w.bob_token.clone()).await, vec![b_client["id"].as_str().unwrap().to_string()]);
    assert_eq!(list(OPERATOR.to_string()).await.len(), 2);
    let path = format!("/admin/v1/oauth-clients/{id}");
    assert_eq!(ok(app, "GET", &path, Auth::Bearer(&viewer), None).await["id"], id.as_str());
    let (s, _, _, text) = call(app, "GET", &path, Auth::Bearer(&w.bob_token), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!text.contains("jobs"));
    let revoke = format!("{path}/revoke");
    assert_eq!(err(&call(app, "POST", &revoke, Auth::Bearer(&w.bob_token), None).await).0, 404);
    assert_eq!(err(&call(app, "POST", &revoke, Auth::Bearer(&viewer), None).await), (403, "permission_denied".into()));
    assert!(ok(app, "POST", &revoke, Auth::Bearer(&alice), None).await["revoked_at"].is_string());
}

/// Issue 7 item 4: a public, published service is readable by id by any user (without the
/// draft spec); team-internal services and public drafts stay 404 to outsiders, and so do the
/// releases of a public service.
#[tokio::test]
async fn public_published_services_are_readable_by_outsiders() {
    let w = world().await;
    let app = &w.h.app;
    let alice = token_for(app, "alice", ALICE_PW).await.1;
    let spec = json!({
        "routes": [{"methods": ["GET"], "path": "/x/{id}", "rewrite": "/internal-rewrite/{id}"}],
        "upstream": {"nodes": [{"url": "http://10.9.8.7:9"}], "add_headers": {"x-partner-token": "canary-upstream-secret"}}
    });
    for (slug, visibility) in [("pub-svc", "public"), ("internal-svc", "team"), ("pub-draft", "public")] {
        let body = json!({"team_id": w.team_a, "kind": "rest", "name": slug, "slug": slug, "visibility": visibility, "spec": spec});
        ok(app, "POST", "/admin/v1/services", Auth::Bearer(&alice), Some(body)).await;
        if slug != "pub-draft" {
            ok(app, "POST", &format!("/admin/v1/services/{slug}/publish"), Auth::Bearer(&alice), None).await;
        }
    }
    // an unpublished edit of the public service stays inside the team
    let mut draft = spec.clone();
    draft["routes"][0]["path"] = json!("/secret-draft-path/{id}");
    ok(app, "PATCH", "/admin/v1/services/pub-svc", Auth::Bearer(&alice), Some(json!({"spec": draft}))).await;
    let by_id = ok(app, "GET", "/admin/v1/services", Auth::Bearer(&alice), None).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "pub-svc")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for key in ["pub-svc", by_id.as_str()] {
        let (s, _, v, text) = call(app, "GET", &format!("/admin/v1/services/{key}"), Auth::Bearer(&w.bob_token), None).await;
        assert_eq!(s, StatusCode::OK, "{key}: {text}");
        assert_eq!((v["slug"].as_str(), v["status"].as_str()), (Some("pub-svc"), Some("published")));
        assert!(v.get("spec").is_none() && v["live_spec"].is_object(), "{v}");
        assert!(!text.contains("secret-draft-path"));
        // the consumer's contract, not how it is served (tester H1: upstream credentials leaked)
        assert_eq!(v["live_spec"]["routes"][0]["path"], "/x/{id}", "{v}");
        assert!(v["live_spec"].get("upstream").is_none(), "{v}");
        for private in ["canary-upstream-secret", "10.9.8.7", "internal-rewrite"] {
            assert!(!text.contains(private), "{key}: outsiders must not see {private}: {text}");
        }
    }
    // the owners still see the draft spec
    let own = ok(app, "GET", "/admin/v1/services/pub-svc", Auth::Bearer(&alice), None).await;
    assert_eq!(own["spec"]["routes"][0]["path"], "/secret-draft-path/{id}");
    for path in ["/admin/v1/services/internal-svc", "/admin/v1/services/pub-draft", "/admin/v1/services/pub-svc/releases"] {
        let r = call(app, "GET", path, Auth::Bearer(&w.bob_token), None).await;
        assert_eq!(err(&r), (404, "not_found".into()), "{path}");
    }
    // the list and the read agree: the catalog entry without the draft spec
    let listed = ok(app, "GET", "/admin/v1/services", Auth::Bearer(&w.bob_token), None).await;
    let slugs: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|s| s["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, vec!["pub-svc"]);
    assert!(!listed.to_string().contains("secret-draft-path"));
    assert!(!listed.to_string().contains("canary-upstream-secret"), "the list uses the same view");
}

fn summaries(plan: &Value, key: &str) -> Vec<String> {
    plan[key].as_array().unwrap().iter().map(|i| i["summary"].as_str().unwrap().to_string()).collect()
}

/// `GET|POST /teams/{id}/config` (issue 7): a team owner exports and applies their own team's
/// configuration, services included; a viewer gets 403 and another team's owner 404; the plan is
/// shown before anything changes, a second apply plans nothing, a late failure (an app name a
/// deleted app still holds) leaves nothing applied, and public models need a system admin.
#[tokio::test]
async fn team_config_export_plan_apply_by_the_team_owner() {
    let w = world().await;
    let app = &w.h.app;
    let admin = || Auth::Bearer(OPERATOR);
    let (_, alice) = token_for(app, "alice", ALICE_PW).await;
    let as_alice = || Auth::Bearer(&alice);
    let cfg = format!("/admin/v1/teams/{}/config", w.team_a);

    let doc = ok(app, "GET", &cfg, as_alice(), None).await;
    assert_eq!(doc, json!({"version": 1, "team": "team-a", "apps": [{"name": "billing"}], "limits": [], "services": []}));
    // another team's owner: invisible; a viewer of the team: forbidden
    for (m, body) in [("GET", None), ("POST", Some(json!({"document": doc, "dry_run": true})))] {
        let (s, _, v, t) = call(app, m, &cfg, Auth::Bearer(&w.bob_token), body.clone()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{m} {t}");
        assert!(!t.contains("billing"));
    }
    let carol = ok(app, "POST", "/admin/v1/users", admin(), Some(json!({"username": "carol", "password": "carol-password-123"}))).await;
    let member = format!("/admin/v1/teams/{}/members/{}", w.team_a, carol["id"].as_str().unwrap());
    ok(app, "PUT", &member, as_alice(), Some(json!({"role": "viewer"}))).await;
    let (_, carol_tok) = token_for(app, "carol", "carol-password-123").await;
    for (m, body) in [("GET", None), ("POST", Some(json!({"document": doc, "dry_run": true})))] {
        let (s, _, v, _) = call(app, m, &cfg, Auth::Bearer(&carol_tok), body).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")), "{m}");
    }

    let mut want = doc.clone();
    want["apps"] = json!([{"name": "billing"}, {"name": "checkout"}]);
    want["limits"] = json!([
        {"scope": "app", "target": "checkout", "rpm": 600, "usd_per_day": 25.5},
        {"scope": "team", "target": "team-a", "tokens_per_day": 1_000_000}
    ]);
    want["services"] = json!([
        {"slug": "orders", "kind": "rest", "name": "Orders", "state": "published", "approval": "auto",
         "spec": {"description": "Orders of the shop", "docs": "# Orders", "category": "shop", "tags": ["shop"],
                  "routes": [{"path": "/orders/{id}", "methods": ["GET"]}],
                  "upstream": {"nodes": [{"url": "http://10.255.255.1:9"}]}}},
        {"slug": "summaries", "kind": "prompt", "name": "Summaries",
         "spec": {"prompts": [{"name": "short", "model": "gpt", "template": "Summarize {{text}}",
                               "variables": {"type": "object", "required": ["text"]},
                               "output_schema": {"type": "object", "required": ["summary"]}}]}}
    ]);
    // the dry run shows the plan and changes nothing
    let plan = ok(app, "POST", &cfg, as_alice(), Some(json!({"document": want, "dry_run": true}))).await;
    assert_eq!((plan["dry_run"].as_bool(), plan["applied"].as_bool()), (Some(true), Some(false)));
    let expected = [
        "+ create app checkout",
        "+ set limits of app checkout: rpm=600 usd_per_day=25.5",
        "+ set limits of team team-a: tokens_per_day=1000000",
        "+ create service orders (rest, published)",
        "+ create service summaries (prompt, draft)",
    ];
    assert_eq!(summaries(&plan, "changes"), expected);
    assert_eq!(ok(app, "GET", &cfg, as_alice(), None).await, doc, "a dry run changes nothing");
    // apply: everything at once
    let done = ok(app, "POST", &cfg, as_alice(), Some(json!({"document": want}))).await;
    assert_eq!(done["applied"], true);
    assert_eq!(summaries(&done, "changes"), expected);
    let orders = ok(app, "GET", "/admin/v1/services/orders", as_alice(), None).await;
    assert_eq!((orders["status"].as_str(), orders["version"].as_u64(), orders["approval"].as_str()), (Some("published"), Some(1), Some("auto")));
    assert!(orders["live_spec"]["openapi"].is_object(), "published like POST /publish: {orders}");
    assert_eq!(ok(app, "GET", "/admin/v1/services/summaries", as_alice(), None).await["status"], "draft");
    // idempotent; the export is the document
    let again = ok(app, "POST", &cfg, as_alice(), Some(json!({"document": want}))).await;
    assert_eq!((again["changes"].as_array().unwrap().len(), again["unchanged"].as_array().unwrap().len()), (0, 6), "{again}");
    assert_eq!(again["applied"], false);
    let exported = ok(app, "GET", &cfg, as_alice(), None).await;
    assert_eq!(exported["services"][0]["spec"]["tags"], json!(["shop"]));
    assert_eq!(exported["services"][1]["spec"]["prompts"][0]["output_schema"], json!({"type": "object", "required": ["summary"]}));
    let replay = ok(app, "POST", &cfg, as_alice(), Some(json!({"document": exported}))).await;
    assert!(replay["changes"].as_array().unwrap().is_empty(), "{replay}");

    // a changed spec of the published service: the draft is updated and released as 2
    let mut edited = exported.clone();
    edited["services"][0]["spec"]["description"] = json!("All orders");
    let plan = ok(app, "POST", &cfg, as_alice(), Some(json!({"document": edited}))).await;
    assert_eq!(summaries(&plan, "changes"), ["~ update service orders: draft spec, publish release 2"]);
    let orders = ok(app, "GET", "/admin/v1/services/orders", as_alice(), None).await;
    assert_eq!((orders["version"].as_u64(), orders["live_spec"]["description"].as_str()), (Some(2), Some("All orders")));
    // going back to draft is refused; publishing a prompt with an unknown model is a 400 naming it
    let mut back = edited.clone();
    back["services"][0]["state"] = json!("draft");
    let (s, _, v, _) = call(app, "POST", &cfg, as_alice(), Some(json!({"document": back, "dry_run": true}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::CONFLICT, Some("document.services[0].state")));
    let mut publish = edited.clone();
    publish["services"][1]["state"] = json!("published");
    let (s, _, v, _) = call(app, "POST", &cfg, as_alice(), Some(json!({"document": publish}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("document.services[1].spec.prompts[0].model")), "{v}");

    // a late failure: `billing` is deleted (its name stays taken), so inserting it fails after
    // `aaa` was inserted and before the limit and the new service — nothing at all is applied
    let billing = w.app_a.clone();
    ok(app, "DELETE", &format!("/admin/v1/apps/{billing}"), as_alice(), None).await;
    let mut late = edited.clone();
    late["apps"] = json!([{"name": "aaa"}, {"name": "billing"}, {"name": "checkout"}]);
    late["limits"][0]["rpm"] = json!(1);
    late["services"].as_array_mut().unwrap().push(json!({"slug": "late", "kind": "rest", "name": "Late"}));
    let before = ok(app, "GET", &cfg, as_alice(), None).await;
    let (s, _, v, _) = call(app, "POST", &cfg, as_alice(), Some(json!({"document": late}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{v}");
    assert_eq!(ok(app, "GET", &cfg, as_alice(), None).await, before, "nothing of the change set was applied");
    let (s, _, _, _) = call(app, "GET", "/admin/v1/services/late", admin(), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // public models: readable by the owner, changed only by a system admin
    let with_models = ok(app, "GET", &format!("{cfg}?models=true"), as_alice(), None).await;
    assert!(with_models["models"].is_array());
    let mut models = before.clone();
    models["models"] = json!([{"name": "gpt", "deployments": [{"provider": "nope", "model": "x"}]}]);
    let (s, _, v, _) = call(app, "POST", &cfg, as_alice(), Some(json!({"document": models, "dry_run": true}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")));
    let (s, _, v, _) = call(app, "POST", &cfg, admin(), Some(json!({"document": models, "dry_run": true}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("document.models[0].deployments[0].provider")));
    // bad documents: 400 naming the field, the field in the message too
    let (s, _, v, _) = call(app, "POST", &cfg, as_alice(), Some(json!({"document": {"version": 1, "team": "team-a", "apps": [{"name": 1}]}}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("document.apps[0].name")));
    assert!(v["error"]["message"].as_str().unwrap().starts_with("document.apps[0].name: "), "{v}");
    let (s, _, v, _) = call(app, "POST", &cfg, as_alice(), Some(json!({"dry_run": true}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("document")));
}

/// Tester H3: an `ai` service gates installation-wide public models (once one exposes a model,
/// only its subscribers may call it; retired, it answers 410), so a team owner must not be able
/// to create one or change its lifecycle — directly or through the configuration endpoint —
/// and cut every other team off a model. A system admin may; team owners keep `rest`/`prompt`.
#[tokio::test]
async fn ai_services_need_a_system_admin_because_they_gate_public_models() {
    let w = world().await;
    let app = &w.h.app;
    let (_, alice) = token_for(app, "alice", ALICE_PW).await;
    let body = json!({"team_id": w.team_a, "kind": "ai", "name": "Grab", "slug": "grab", "spec": {"models": ["gpt"]}});
    let (s, _, v, _) = call(app, "POST", "/admin/v1/services", Auth::Bearer(&alice), Some(body.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str(), v["error"]["param"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied"), Some("kind")), "{v}");
    // created by a system admin inside the team: the owner still cannot publish, deprecate, retire or roll it back
    ok(app, "POST", "/admin/v1/services", Auth::Bearer(OPERATOR), Some(body)).await;
    for (path, b) in [
        ("publish", None),
        ("deprecate", Some(json!({"sunset": "2099-01-01T00:00:00Z"}))),
        ("retire", None),
        ("rollback", Some(json!({"version": 1}))),
    ] {
        let (s, _, v, _) = call(app, "POST", &format!("/admin/v1/services/grab/{path}"), Auth::Bearer(&alice), b).await;
        assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")), "{path}: {v}");
    }
    let after = ok(app, "GET", "/admin/v1/services/grab", Auth::Bearer(&alice), None).await;
    assert_eq!(after["status"], "draft", "nothing changed");
    // the same through the team's configuration document
    let cfg = format!("/admin/v1/teams/{}/config", w.team_a);
    let mut doc = ok(app, "GET", &cfg, Auth::Bearer(&alice), None).await;
    doc["services"] = json!([{"slug": "grab2", "kind": "ai", "name": "Grab 2", "spec": {"models": ["gpt"]}}]);
    let (s, _, v, _) = call(app, "POST", &cfg, Auth::Bearer(&alice), Some(json!({"document": doc, "dry_run": true}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")), "{v}");
}

/// Tester L7: any user changes their own password with the current one (`POST /me/password`):
/// a wrong current password is 403 and changes nothing (audited like a failed login, never the
/// passwords); afterwards the old password no longer logs in, the new one does, the user's other
/// operator tokens end and the calling session survives.
#[tokio::test]
async fn users_change_their_own_password_with_the_current_one() {
    let w = world().await;
    let app = &w.h.app;
    const NEW_PW: &str = "bob-new-canary-password-4Tr";
    let (_, other_token) = token_for(app, "bob", BOB_PW).await;
    let (s, headers, _, t) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": "bob", "password": BOB_PW}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let cookie = cookie_of(&headers);
    let csrf = csrf_of(app, &cookie).await;
    let me = || Auth::CookieCsrf(&cookie, &csrf);
    let change = |current: &'static str, new: &'static str| json!({"current_password": current, "new_password": new});

    let (s, _, v, t) = call(app, "POST", "/admin/v1/me/password", me(), Some(change("not-bobs-password-1", NEW_PW))).await;
    assert_eq!((s, v["error"]["code"].as_str(), v["error"]["param"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied"), Some("current_password")), "{t}");
    assert!(!t.contains(NEW_PW) && !t.contains("not-bobs-password-1"));
    let (s, _, v, _) = call(app, "POST", "/admin/v1/me/password", me(), Some(change(BOB_PW, "short"))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("password")), "{v}");
    ok(app, "GET", "/admin/v1/me", Auth::Bearer(&other_token), None).await; // nothing changed yet

    let v = ok(app, "POST", "/admin/v1/me/password", me(), Some(change(BOB_PW, NEW_PW))).await;
    assert!(!v.to_string().contains(NEW_PW) && v.get("password_hash").is_none(), "{v}");
    ok(app, "GET", "/admin/v1/me", me(), None).await; // the calling session survives
    let (s, _, _, _) = call(app, "GET", "/admin/v1/me", Auth::Bearer(&other_token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the user's other operator token ended");
    let (s, _, _, _) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": "bob", "password": BOB_PW}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old password no longer logs in");
    let (s, _, _, _) = call(app, "POST", "/admin/v1/session", Auth::None, Some(json!({"username": "bob", "password": NEW_PW}))).await;
    assert_eq!(s, StatusCode::CREATED);
    // the wrong attempt is audited without either password
    let events = ok(app, "GET", "/admin/v1/audit?event_type=login.failed&limit=1000", Auth::Bearer(OPERATOR), None).await;
    let text = events.to_string();
    assert!(text.contains("password_change"), "{text}");
    assert!(!text.contains(NEW_PW) && !text.contains("not-bobs-password-1") && !text.contains(BOB_PW));
}
