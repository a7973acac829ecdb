//! `DELETE /admin/v1/apps/{id}` (issue 7): soft delete over HTTP — the app disappears from reads
//! and lists, its live keys are revoked with the same bus invalidation as a key revocation (so
//! the gateway drops them on the next request), the action is audited, and the bootstrap
//! default app cannot be deleted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use gatehouse_admin::{AdminDeps, AdminService, BootstrapOptions};
use gatehouse_auth::token::Env;
use gatehouse_auth::{LocalKeyProvider, MasterKey, Peppers};
use gatehouse_store::{Bus, BusEvent, MemoryBus};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

const OPERATOR: &str = "test-operator-token-apps-delete-0123456789abcdef";

async fn harness() -> (Router, Arc<Mutex<Vec<String>>>, Arc<dyn gatehouse_store::Store>, gatehouse_store::AuditSink) {
    let dir = std::env::temp_dir().join(format!("gh-apps-del-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = gatehouse_store::connect(&format!("sqlite://{}/gatehouse.db", dir.display())).await.unwrap();
    store.migrate().await.unwrap();
    let master = MasterKey::generate().unwrap();
    let bus = Arc::new(MemoryBus::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    bus.subscribe(Arc::new(move |e: &BusEvent| {
        let line = match e {
            BusEvent::CredentialChanged { id, .. } => format!("credential {id}"),
            BusEvent::TokenRevoked { id } => format!("token {id}"),
            _ => return,
        };
        sink.lock().unwrap().push(line);
    }));
    let audit = gatehouse_store::AuditSink::spawn(store.clone()).0;
    let service = Arc::new(AdminService::new(AdminDeps {
        store: store.clone(),
        bus,
        peppers: Arc::new(Peppers::from_master_key(&master)),
        key_provider: Arc::new(LocalKeyProvider::new(&master)),
        env: Env::Live,
        audit: audit.clone(),
    }));
    service
        .bootstrap(BootstrapOptions { admin_password: None, operator_token: Some(SecretString::from(OPERATOR)) })
        .await
        .unwrap();
    (gatehouse_admin::router(service), seen, store, audit)
}

async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {OPERATOR}"));
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn deleting_an_app_hides_it_and_revokes_its_keys() {
    let (app, seen, store, audit) = harness().await;
    let (s, team) = call(&app, "POST", "/admin/v1/teams", Some(json!({"name": "t-del"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let (_, doomed) = call(&app, "POST", "/admin/v1/apps", Some(json!({"team_id": id(&team), "name": "doomed"}))).await;
    let (_, kept) = call(&app, "POST", "/admin/v1/apps", Some(json!({"team_id": id(&team), "name": "kept"}))).await;
    let mut keys = Vec::new();
    for (n, a) in [("k1", &doomed), ("k2", &doomed), ("k3", &kept)] {
        let (s, k) = call(&app, "POST", "/admin/v1/keys", Some(json!({"name": n, "app_id": id(a)}))).await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        keys.push(id(&k));
    }
    // a single-use token of the app (this harness runs no authorization server: straight to the store)
    let at = gatehouse_types::now();
    let doomed_id: gatehouse_types::Id = id(&doomed).parse().unwrap();
    let token = gatehouse_store::IssuedToken {
        id: gatehouse_types::new_id(),
        kind: "single_use".into(),
        digest: Some(vec![7; 32]),
        pepper_version: 1,
        hint: "gths_live_…abcd".into(),
        team_id: id(&team).parse().unwrap(),
        app_id: doomed_id,
        client_id: None,
        subject: "once".into(),
        parent_id: None,
        scopes: vec![],
        models: vec![],
        audience: None,
        max_tokens: None,
        max_spend_micros: None,
        act: None,
        binding_jkt: None,
        binding_x5t: None,
        expires_at: at + time::Duration::minutes(5),
        consumed_at: None,
        revoked_at: None,
        created_at: at,
    };
    store.create_issued_token(&token).await.unwrap();
    seen.lock().unwrap().clear();

    let (s, v) = call(&app, "DELETE", &format!("/admin/v1/apps/{}", id(&doomed)), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"deleted": true, "id": id(&doomed), "revoked_keys": 2, "cancelled_subscriptions": 0, "revoked_oauth_clients": 0, "revoked_tokens": 1})
    );

    // gone from reads and lists; no new key can be made in it
    let (s, v) = call(&app, "GET", &format!("/admin/v1/apps/{}", id(&doomed)), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (_, list) = call(&app, "GET", &format!("/admin/v1/apps?team_id={}", id(&team)), None).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kept"]);
    let (s, _) = call(&app, "POST", "/admin/v1/keys", Some(json!({"name": "late", "app_id": id(&doomed)}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // its keys are revoked (the other app's key is not), with the revocation's bus events
    for (k, revoked) in [(&keys[0], true), (&keys[1], true), (&keys[2], false)] {
        let (_, v) = call(&app, "GET", &format!("/admin/v1/keys/{k}"), None).await;
        assert_eq!(!v["revoked_at"].is_null(), revoked, "{k}: {v}");
    }
    let events = seen.lock().unwrap().clone();
    for k in &keys[..2] {
        assert!(events.contains(&format!("credential {k}")), "{events:?}");
        assert!(events.contains(&format!("token {k}")), "{events:?}");
    }
    assert!(!events.iter().any(|e| e.ends_with(&keys[2])), "{events:?}");

    // a second delete finds nothing
    let (s, _) = call(&app, "DELETE", &format!("/admin/v1/apps/{}", id(&doomed)), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // audited: the key revocations and the admin action
    audit.flush().await;
    let kinds: Vec<String> =
        store.query_audit_events(&Default::default()).await.unwrap().into_iter().map(|e| e.event.event_type).collect();
    assert!(kinds.iter().filter(|k| *k == "key.revoked").count() >= 2, "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "admin.action"), "{kinds:?}");
    // one record per revoked credential, with the cascade as the reason (tester L8)
    let events = store.query_audit_events(&Default::default()).await.unwrap();
    let because = |kind: &str| events.iter().filter(|e| e.event.event_type == kind && e.event.reason.as_deref() == Some("app_deleted")).count();
    assert_eq!((because("key.revoked"), because("token.revoked")), (2, 1), "{kinds:?}");
    assert!(events.iter().any(|e| e.event.event_type == "token.revoked" && e.event.credential_id == Some(token.id)));
}

#[tokio::test]
async fn the_default_app_and_bad_ids_are_refused_without_change() {
    let (app, _, _, _) = harness().await;
    let (_, apps) = call(&app, "GET", "/admin/v1/apps", None).await;
    let default = apps["data"].as_array().unwrap().iter().find(|a| a["name"] == "default").cloned().unwrap();
    let (s, v) = call(&app, "DELETE", &format!("/admin/v1/apps/{}", id(&default)), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{v}");
    let (s, _) = call(&app, "GET", &format!("/admin/v1/apps/{}", id(&default)), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "DELETE", "/admin/v1/apps/not-a-uuid", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = call(&app, "DELETE", &format!("/admin/v1/apps/{}", uuid::Uuid::now_v7()), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
