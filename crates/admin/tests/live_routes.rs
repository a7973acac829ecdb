//! The route table against the LIVE router (issue 7): every `(method, path)` the mounted
//! `/admin/v1` router answers must have a row in `gatehouse_admin::authz_http::ROUTES` (or be one
//! of the public routes), and every row must be answered by the router. The OpenAPI test compares
//! the document with ROUTES only; this test closes the gap between ROUTES and the router, so a
//! route mounted without a table line (silently admin-only and undocumented) fails here.
//!
//! Candidate paths are every `.route("…")` literal in `crates/admin/src` (joined with every
//! `.nest("…")` prefix found there) plus every ROUTES path; each is probed with all five methods
//! through the real router with the operator token. A probe counts as "mounted" unless the router
//! answers 405 or its own route-fallback 404 (`"no such route"`); a handler's 404 for an unknown
//! id still means the route exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use gatehouse_admin::authz_http::{ROUTES, is_public};
use gatehouse_admin::{AdminDeps, AdminService, BootstrapOptions};
use gatehouse_auth::token::Env;
use gatehouse_auth::{LocalKeyProvider, MasterKey, Peppers};
use gatehouse_store::MemoryBus;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

const OPERATOR: &str = "test-operator-token-live-routes-0123456789abcdef";
const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

mod common;

/// The admin router as the server mounts it (with the gateway's routing-health routes), and the
/// gateway behind those routes (kept alive by the caller).
async fn router() -> (Router, gatehouse_gateway::Gateway) {
    let dir = std::env::temp_dir().join(format!("gh-live-routes-{}", uuid::Uuid::now_v7()));
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
    let service = Arc::new(AdminService::new(deps.clone()));
    service
        .bootstrap(BootstrapOptions { admin_password: None, operator_token: Some(SecretString::from(OPERATOR)) })
        .await
        .unwrap();
    common::admin_router_with_gateway(&deps, service).await
}

/// The string literals following `marker` (e.g. `.route("`) in `src`.
fn literals_after(src: &str, marker: &str) -> Vec<String> {
    src.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &src[i + marker.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .filter(|s| s.starts_with('/'))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Route patterns found in the admin crate's source (relative to `/admin/v1`).
fn scanned_patterns() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    // routes the server mounts below /admin/v1 from the gateway crate (`router_with`)
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src/health_api.rs"));
    let (mut routes, mut nests) = (BTreeSet::new(), BTreeSet::new());
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        routes.extend(literals_after(&src, ".route(\""));
        nests.extend(literals_after(&src, ".nest(\"").into_iter().filter(|n| n != "/admin/v1"));
    }
    let mut all = routes.clone();
    for n in &nests {
        for r in &routes {
            all.insert(format!("{n}{r}"));
        }
    }
    // /healthz and /readyz live outside /admin/v1
    all.retain(|p| p != "/healthz" && p != "/readyz");
    all
}

/// `pattern` with every `{param}` / `{*rest}` segment replaced by a fresh UUID.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the live router has a route for `method` on `pattern`.
async fn mounted(app: &Router, method: &Method, pattern: &str) -> bool {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(format!("/admin/v1{}", concrete(pattern)))
        .header("authorization", format!("Bearer {OPERATOR}"));
    let body = if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        req = req.header("content-type", "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{method} {pattern}: 500 {v}");
    let route_fallback = status == StatusCode::NOT_FOUND && v["error"]["message"] == "no such route";
    !(status == StatusCode::METHOD_NOT_ALLOWED || route_fallback)
}

#[test]
fn the_source_scan_finds_the_known_routes() {
    let found = scanned_patterns();
    for p in ["/keys", "/keys/{id}/revoke", "/limits/{id}", "/oauth-clients/{id}", "/teams/{id}/members/{user_id}", "/health/deployments", "/health/keys/{id}/restore"] {
        assert!(found.contains(p), "{p} not found by the scan: {found:?}");
    }
}

#[tokio::test]
async fn every_mounted_admin_route_is_in_the_route_table_and_vice_versa() {
    let (app, _gateway) = router().await;
    let mut candidates = scanned_patterns();
    candidates.extend(ROUTES.iter().map(|r| r.path.to_string()));

    let mut live = BTreeSet::new();
    for pattern in &candidates {
        for m in &METHODS {
            if mounted(&app, m, pattern).await {
                live.insert((m.to_string(), pattern.clone()));
            }
        }
    }
    let mut table: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    for (m, p) in [(Method::POST, "/session"), (Method::GET, "/openapi.json")] {
        assert!(is_public(&m, p));
        table.insert((m.to_string(), p.to_string()));
    }
    let unlisted: Vec<_> = live.difference(&table).collect();
    let unmounted: Vec<_> = table.difference(&live).collect();
    assert!(
        unlisted.is_empty(),
        "mounted under /admin/v1 but missing from authz_http::ROUTES (add a row + an op! line): {unlisted:?}"
    );
    assert!(unmounted.is_empty(), "in authz_http::ROUTES but not answered by the router: {unmounted:?}");
}

#[tokio::test]
async fn an_unknown_path_and_a_wrong_method_count_as_unmounted() {
    // the probe itself must be able to say "no": otherwise the test above could never fail
    let (app, _gateway) = router().await;
    assert!(!mounted(&app, &Method::GET, "/no-such-thing/{id}").await);
    assert!(!mounted(&app, &Method::PATCH, "/keys").await);
    assert!(mounted(&app, &Method::GET, "/keys/{id}").await);
}
