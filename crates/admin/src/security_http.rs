//! Admin endpoints for key rotation and leak reports (issue 5):
//!
//! * `POST /admin/v1/keys/{id}/rotate` `{"grace": "1h" | seconds}` (optional; default 24 h,
//!   at most 7 d) → 201 `{"key": "<successor, shown once>", …successor metadata, "previous":
//!   {…old key, with its new expires_at}}`, `Cache-Control: no-store`.
//! * `POST /admin/v1/credentials/report-leak` with GitHub's secret-scanning body
//!   `[{"token","type","url","source"}]` or `{"tokens":[…]}` → always 202 `{"received": n}`;
//!   the answer never says whether any token existed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_config::parse_duration_str;
use gatehouse_types::ApiError;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::http::AdminError;
use crate::input::{Fields, bad, parse_id};
use crate::service::AdminService;
use crate::service::rotation_api::leak_report_from_json;

fn bytes(b: Result<Bytes, BytesRejection>) -> Result<Bytes, AdminError> {
    b.map_err(|_| AdminError(bad("body", "the request body could not be read")))
}

/// `POST /admin/v1/keys/{id}/rotate`.
pub async fn rotate_key(
    State(svc): State<Arc<AdminService>>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let id = parse_id(&id, "id")?;
    let body = bytes(b)?;
    let grace = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let mut f = Fields::from_body(&body)?;
        f.deny_unknown(&["grace"])?;
        match f.take("grace") {
            None => None,
            Some(Value::String(s)) => Some(parse_duration_str(&s).map_err(|e| bad("grace", e))?),
            Some(Value::Number(n)) => Some(Duration::from_secs(n.as_u64().ok_or_else(|| bad("grace", "`grace` must be a non-negative number of seconds"))?)),
            Some(_) => return Err(AdminError(bad("grace", "`grace` must be a duration such as \"1h\""))),
        }
    };
    let (created, previous) = svc.rotate_key(id, grace).await?;
    let mut value = serde_json::to_value(&created.view).map_err(|_| AdminError(ApiError::internal()))?;
    value["key"] = json!(created.key.expose_secret());
    value["previous"] = serde_json::to_value(&previous).map_err(|_| AdminError(ApiError::internal()))?;
    let mut resp = (StatusCode::CREATED, axum::Json(value)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /admin/v1/credentials/report-leak`.
pub async fn report_leak(State(svc): State<Arc<AdminService>>, b: Result<Bytes, BytesRejection>) -> Result<Response, AdminError> {
    let (tokens, source) = leak_report_from_json(&bytes(b)?)?;
    let received = svc.report_leak(&tokens, source.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "received": received }))).into_response())
}
