//! `/admin/v1/models/{name}/cache` (issue 6): opts a public model in to the data plane's
//! exact-match response cache (`gatehouse_gateway::cache`).
//!
//! * `PUT /admin/v1/models/{name}/cache` — body `{"ttl_secs": N}` with N an integer from 1 to
//!   [`MAX_TTL_SECS`] (30 days): answers of the model's non-streamed chat and embeddings calls
//!   are cached per team for N seconds. 200 `{"model", "ttl_secs", "updated_at"}`; 404 if the
//!   model does not exist; 400 naming `ttl_secs` for a bad value. Publishes
//!   `BusEvent::RoutingChanged` (the data plane reloads the setting and empties its cache).
//! * `GET /admin/v1/models/{name}/cache` — the setting, or 404 when the model has none.
//! * `DELETE /admin/v1/models/{name}/cache` — opts the model out; 404 when it had no setting.
//!
//! The cache lives in each gateway node's memory (per node, not shared).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_store::{BusEvent, ModelCachePolicy, StoreError};
use gatehouse_types::{ApiError, ErrorCode, now};
use serde_json::{Value, json};

use crate::http::{AdminError, Result, body};
use crate::input::bad;
use crate::service::AdminService;

type Svc = State<Arc<AdminService>>;

/// Longest accepted TTL: 30 days, in seconds.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// The cache-setting routes (mounted under `/admin/v1`, behind the operator token).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new().route("/models/{name}/cache", get(get_cache).put(put_cache).delete(delete_cache))
}

fn internal(e: &StoreError) -> AdminError {
    tracing::error!(error = %e, "store error in the model cache API");
    AdminError(ApiError::internal())
}

fn model_not_found(name: &str) -> AdminError {
    let shown: String = name.chars().take(64).collect();
    AdminError(ApiError::new(ErrorCode::NotFound, format!("no model named `{shown}`")).with_param("name"))
}

fn view(p: &ModelCachePolicy) -> Value {
    json!({
        "model": p.model,
        "ttl_secs": p.ttl_secs,
        "updated_at": p.updated_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
}

/// Parses `{"ttl_secs": N}`; unknown fields are refused so typos do not pass silently.
fn parse_ttl(bytes: &[u8]) -> std::result::Result<u32, ApiError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| bad("body", "the body must be a JSON object: {\"ttl_secs\": N}"))?;
    let Value::Object(map) = v else {
        return Err(bad("body", "the body must be a JSON object: {\"ttl_secs\": N}"));
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != "ttl_secs") {
        let shown: String = k.chars().take(64).collect();
        return Err(bad(&shown, format!("unknown field `{shown}`; expected only `ttl_secs`")));
    }
    match map.get("ttl_secs").and_then(Value::as_u64) {
        Some(n) if (1..=MAX_TTL_SECS).contains(&n) => u32::try_from(n).map_err(|_| ApiError::internal()),
        _ => Err(bad("ttl_secs", format!("`ttl_secs` is required: an integer from 1 to {MAX_TTL_SECS} (seconds)"))),
    }
}

async fn put_cache(State(svc): Svc, Path(name): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let ttl = parse_ttl(&body(b)?)?;
    let stored = svc.store().set_model_cache(&name, ttl, now()).await.map_err(|e| internal(&e))?;
    let Some(stored) = stored else { return Err(model_not_found(&name)) };
    svc.bus().publish(BusEvent::RoutingChanged);
    tracing::info!(model = %stored.model, ttl_secs = stored.ttl_secs, "model response cache set");
    Ok(axum::Json(view(&stored)).into_response())
}

async fn get_cache(State(svc): Svc, Path(name): Path<String>) -> Result<Response> {
    let all = svc.store().list_model_caches().await.map_err(|e| internal(&e))?;
    match all.iter().find(|p| p.model == name) {
        Some(p) => Ok(axum::Json(view(p)).into_response()),
        None => Err(AdminError(
            ApiError::new(ErrorCode::NotFound, "this model has no response cache setting (or does not exist)").with_param("name"),
        )),
    }
}

async fn delete_cache(State(svc): Svc, Path(name): Path<String>) -> Result<Response> {
    if !svc.store().delete_model_cache(&name).await.map_err(|e| internal(&e))? {
        return Err(AdminError(
            ApiError::new(ErrorCode::NotFound, "this model has no response cache setting (or does not exist)").with_param("name"),
        ));
    }
    svc.bus().publish(BusEvent::RoutingChanged);
    tracing::info!(model = %name, "model response cache removed");
    Ok(axum::Json(json!({ "deleted": true, "model": name })).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds_and_unknown_fields() {
        assert_eq!(parse_ttl(br#"{"ttl_secs": 300}"#).unwrap(), 300);
        for bad_body in [r#"{"ttl_secs": 0}"#, r#"{"ttl_secs": 2592001}"#, r#"{"ttl_secs": "5m"}"#, r#"{}"#, r#"[]"#, "x"] {
            assert_eq!(parse_ttl(bad_body.as_bytes()).unwrap_err().code, ErrorCode::InvalidRequest, "{bad_body}");
        }
        assert_eq!(parse_ttl(br#"{"ttl_secs": 5, "ttl": 5}"#).unwrap_err().param.as_deref(), Some("ttl"));
    }
}
