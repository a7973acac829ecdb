//! Shared by the admin route checks: the admin router as the server mounts it, i.e. with the
//! gateway's admin routes (routing health, issue 6) added through `router_with`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use gatehouse_admin::{AdminDeps, AdminService};
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
