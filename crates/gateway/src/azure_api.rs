//! Azure-style inbound paths (`wire-formats.md` §5), so `AzureOpenAI` clients work against
//! Gatehouse with only their endpoint changed:
//!
//! | Path | Served as |
//! |---|---|
//! | `POST /openai/deployments/{deployment}/chat/completions?api-version=…` | `/v1/chat/completions` with `model` = `{deployment}` (the deployment name is the Gatehouse model name; a `model` in the body is replaced, as Azure ignores it) |
//! | `POST /openai/deployments/{deployment}/embeddings?api-version=…` | `/v1/embeddings`, likewise |
//! | `POST /openai/v1/chat/completions`, `POST /openai/v1/embeddings`, `GET /openai/v1/models` | the `/v1/…` endpoints unchanged (Azure's v1 API: the model is in the body) |
//!
//! `api-version` is accepted whatever its value (the answer is always the current OpenAI shape).
//! The credential is the `api-key` header or `Authorization: Bearer` (`crate::dialect`); errors
//! are OpenAI-shaped, which is also Azure's envelope.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use gatehouse_types::{ApiError, ErrorCode};
use http::HeaderMap;
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthContext;
use crate::calllog::CallRecorder;
use crate::error::error_response;
use crate::handlers;
use crate::request::{parse_object, read_body};

/// Longest deployment name accepted (bytes); Azure allows 64 characters.
pub const MAX_DEPLOYMENT_LEN: usize = 256;

/// The body with `model` set to the deployment of the path.
///
/// Errors: 400 `invalid_request` for a path segment that is not UTF-8, empty or too long, and the
/// body errors of [`parse_object`] / [`read_body`] (413).
async fn with_deployment(state: &AppState, deployment: Result<Path<String>, PathRejection>, body: Body) -> Result<Body, ApiError> {
    let Ok(Path(deployment)) = deployment else {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "the deployment name in the path is not valid UTF-8"));
    };
    if deployment.is_empty() || deployment.len() > MAX_DEPLOYMENT_LEN {
        return Err(ApiError::new(ErrorCode::InvalidRequest, format!("the deployment name must be 1 to {MAX_DEPLOYMENT_LEN} bytes")));
    }
    let bytes = read_body(body, state.settings.body_limit_bytes).await?;
    let mut obj = parse_object(&bytes)?;
    obj.insert("model".into(), Value::String(deployment));
    let out = serde_json::to_vec(&obj).map_err(|_| ApiError::internal())?;
    Ok(Body::from(out))
}

/// `POST /openai/deployments/{deployment}/chat/completions`.
pub async fn deployment_chat(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    deployment: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match with_deployment(&state, deployment, body).await {
        Ok(body) => handlers::chat_completions(State(state), Extension(auth), Extension(rec), headers, body).await,
        Err(e) => error_response(&e),
    }
}

/// `POST /openai/deployments/{deployment}/embeddings`.
pub async fn deployment_embeddings(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    deployment: Result<Path<String>, PathRejection>,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    match with_deployment(&state, deployment, body).await {
        Ok(body) => handlers::embeddings(State(state), Extension(auth), Extension(rec), headers, body).await,
        Err(e) => error_response(&e),
    }
}
