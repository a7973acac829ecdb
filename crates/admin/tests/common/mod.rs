//! Shared by the admin route checks: the admin router as the server mounts it, i.e. with the
//! gateway's admin routes (routing health, issue 6) added through `router_with`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use gatehouse_admin::{AdminDeps, AdminService};
use gatehouse_auth::token::Env;
use gatehouse_auth::{LocalKeyProvider, MasterKey, Peppers};
use gatehouse_store::{Bus, BusEvent, MemoryBus, Store};
use gatehouse_gateway::{Gateway, GatewayDeps, GatewaySettings};
use gatehouse_providers::{Timeouts, Upstream};
use tokio_util::sync::CancellationToken;

/// `gatehouse_admin::router_with(service, gateway.admin_routes())` over the same store, with the
/// gateway's authorization server attached; the gateway is returned too (keep it alive while the
/// router is used).
pub async fn admin_router_with_gateway(deps: &AdminDeps, service: Arc<AdminService>) -> (Router, Gateway) {
    let gateway = Gateway::new(GatewayDeps {
        store: deps.store.clone(),
        bus: deps.bus.clone(),
        peppers: deps.peppers.clone(),
        key_provider: deps.key_provider.clone(),
        upstream: Upstream::new(Timeouts::default()).unwrap(),
        settings: GatewaySettings::default(),
        shutdown: CancellationToken::new(),
        audit: deps.audit.clone(),
    })
    .await
    .unwrap();
    // as the server does: OAuth clients and token endpoints use the gateway's authorization server
    service.attach_oauth(gateway.oauth());
    (gatehouse_admin::router_with(service, gateway.admin_routes()), gateway)
}

/// A fresh admin service over SQLite in a temp dir (`tag` names the dir) whose bus records every
/// event it publishes; not bootstrapped yet.
pub async fn recorded_service(tag: &str) -> (Arc<dyn Store>, Arc<AdminService>, Arc<Mutex<Vec<BusEvent>>>) {
    let dir = std::env::temp_dir().join(format!("gh-{tag}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = gatehouse_store::connect(&format!("sqlite://{}/gatehouse.db", dir.display())).await.unwrap();
    store.migrate().await.unwrap();
    let bus = Arc::new(MemoryBus::new());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    bus.subscribe(Arc::new(move |e: &BusEvent| sink.lock().unwrap().push(e.clone())));
    let master = MasterKey::generate().unwrap();
    let service = Arc::new(AdminService::new(AdminDeps {
        store: store.clone(),
        bus,
        peppers: Arc::new(Peppers::from_master_key(&master)),
        key_provider: Arc::new(LocalKeyProvider::new(&master)),
        env: Env::Live,
        audit: gatehouse_store::AuditSink::spawn(store.clone()).0,
    }));
    (store, service, events)
}
