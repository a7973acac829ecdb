//! Routing health for operators (issue 6): the state of every deployment's circuit breaker and
//! every provider key, served below the admin API by [`crate::Gateway::admin_routes`] (the
//! admin router applies operator authentication and the permission gate), and the Prometheus
//! gauges refreshed on each `/metrics` scrape ([`crate::Gateway::export_metrics`]).
//!
//! * `GET /health/deployments` → `{"deployments":[{model, deployment, provider, upstream_model,
//!   weight, priority, state, consecutive_failures, error_rate, calls_in_window, in_flight,
//!   open_for_secs, retry_after_secs, last_error, opened_total, successes_total,
//!   failures_total}], "keys":[{provider, credential_id, hint, priority, status,
//!   recheck_in_secs}]}` — hints only, never a key.
//! * `POST /health/keys/{id}/restore` → `{"credential_id", "restored": bool}`: clears an
//!   `invalid` / `quota_exceeded` mark at once (this node; the mark of other nodes ends at
//!   their re-check). 404 `not_found` for an id that is no key of a configured provider; 400
//!   for an id that is not a UUID.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_types::{ApiError, ErrorCode, Id};
use serde_json::{Value, json};

use crate::AppState;

/// An error in the admin API's shape (`param` only when set).
fn error_response(e: &ApiError) -> Response {
    let mut body = json!({"error": {"message": e.message, "type": e.code.error_type(), "code": e.code.as_str()}});
    if let Some(p) = &e.param {
        body["error"]["param"] = json!(p);
    }
    (e.code.status(), Json(body)).into_response()
}

/// The routes (state applied; merge below `/admin/v1`).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(state: Arc<AppState>) -> Router<S> {
    Router::new()
        .route("/health/deployments", get(deployments))
        .route("/health/keys/{id}/restore", post(restore_key))
        .with_state(state)
}

/// The JSON document of `GET /health/deployments`.
pub(crate) async fn snapshot(state: &AppState) -> Value {
    let now = Instant::now();
    let health = state.plane.health();
    let mut deployments = Vec::new();
    let mut keys = Vec::new();
    let (models, providers) = state.routing.inventory().await;
    for c in &models {
        let view = health.view(&c.deployment, now);
        let mut v = serde_json::to_value(&view).unwrap_or_else(|_| json!({}));
        if let Value::Object(o) = &mut v {
            o.insert("model".into(), json!(&*c.model));
            o.insert("deployment".into(), json!(c.deployment));
            o.insert("provider".into(), json!(c.provider.name));
            o.insert("upstream_model".into(), json!(c.upstream_model));
            o.insert("weight".into(), json!(c.weight));
            o.insert("priority".into(), json!(c.priority));
        }
        deployments.push(v);
    }
    for p in &providers {
        for k in &p.credentials {
            let (status, recheck) = health.key_status(k.id, now);
            keys.push(json!({
                "provider": p.name,
                "credential_id": k.id,
                "hint": k.hint,
                "priority": k.priority,
                "status": status.as_str(),
                "recheck_in_secs": recheck,
            }));
        }
    }
    json!({ "deployments": deployments, "keys": keys })
}

async fn deployments(State(state): State<Arc<AppState>>) -> Response {
    Json(snapshot(&state).await).into_response()
}

async fn restore_key(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Id>() else {
        return error_response(&ApiError::new(ErrorCode::InvalidRequest, "the key id must be a UUID").with_param("id"));
    };
    let (_, providers) = state.routing.inventory().await;
    if !providers.iter().any(|p| p.credentials.iter().any(|k| k.id == id)) {
        return error_response(&ApiError::new(ErrorCode::NotFound, "no provider key with this id"));
    }
    let restored = state.plane.health().restore_key(id);
    if restored {
        tracing::info!(credential_id = %id, "provider key restored by an operator");
    }
    Json(json!({ "credential_id": id, "restored": restored })).into_response()
}
