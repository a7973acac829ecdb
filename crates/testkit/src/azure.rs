//! Azure OpenAI dialect (`wire-formats.md` §5): `POST /openai/deployments/{deployment}/chat/completions?api-version=…`
//! (the deployment selects the model; `api-version` required) and `POST /openai/v1/chat/completions`
//! (model in the body). The key is read from `api-key` (an `Authorization` header is ignored,
//! as Azure does for key auth). Answers are the OpenAI mock's, with Azure's content-filter
//! annotations: streams start with a chunk with empty `choices` and `prompt_filter_results`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use crate::respond::{self, Dialect};
use crate::scenario::{SCENARIO_HEADER, Scenario};
use crate::state::MockState;
use crate::stream::HandlerGuard;

/// `POST /openai/deployments/{deployment}/chat/completions`.
pub(crate) async fn deployment_chat(
    State(st): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/openai/deployments/{deployment}/chat/completions");
    if !query.as_deref().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=") && kv.len() > 12)) {
        st.record(method, &path, &headers, None);
        return respond::error(Dialect::OpenAi, 404, Some("Resource not found"), None, &Scenario::default());
    }
    let guard = HandlerGuard::new(st.clone());
    let resp = serve(&st, method, &path, headers, body, Some(&deployment)).await;
    guard.disarm();
    resp
}

/// `POST /openai/v1/chat/completions`.
pub(crate) async fn v1_chat(State(st): State<Arc<MockState>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = serve(&st, method, "/openai/v1/chat/completions", headers, body, None).await;
    guard.disarm();
    resp
}

async fn serve(st: &Arc<MockState>, method: Method, path: &str, mut headers: HeaderMap, body: Bytes, deployment: Option<&str>) -> Response {
    // Key auth: `api-key` only (the OpenAI handler's check accepts `api-key` as the key).
    headers.remove(header::AUTHORIZATION);
    // Azure's content-filter preamble chunk (the `noise` option) on every stream.
    let opts = match headers.get(SCENARIO_HEADER).and_then(|v| v.to_str().ok()) {
        Some(o) => format!("noise,{o}"),
        None => "noise".to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&opts) {
        headers.insert(SCENARIO_HEADER, v);
    }
    let body = match (deployment, serde_json::from_slice::<Value>(&body)) {
        (Some(d), Ok(Value::Object(mut o))) => {
            // The deployment selects the model; a `model` in the body is ignored.
            o.insert("model".into(), Value::from(d));
            Bytes::from(serde_json::to_vec(&o).unwrap_or_default())
        }
        _ => body,
    };
    crate::openai::chat_at(st, method, path, &headers, &body).await
}
