//! Data-plane handlers (thin): read + validate the body, check the key's model allow-list,
//! route, admit (limits), answer from the response cache when the model opted in (`cache`),
//! call the upstream, map the answer. OpenAI API shapes (`wire-formats.md` §1.3–§1.8).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use gatehouse_providers::{Target, UpstreamError};
use gatehouse_types::{ApiError, ErrorCode};
use http::{HeaderMap, HeaderValue};
use serde_json::json;

use crate::AppState;
use crate::cache;
use crate::auth::AuthContext;
use crate::calllog::{CallRecorder, RecordGuard};
use crate::error::error_response;
use crate::estimate::{self, TokenEstimate};
use crate::failover::{self, Plan};
use crate::limits::{self, Admission, CallInfo};
use crate::request::{parse_chat, parse_embeddings, read_body};
use crate::routing::model_not_found;
use crate::stream::sse_response;

/// Header carrying the provider's own request id (`wire-formats.md` §7.9).
pub const UPSTREAM_REQUEST_ID: &str = "x-upstream-request-id";

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| error_response(&e))
}

/// `POST /v1/chat/completions`, streamed (`stream: true`) or not.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    respond(chat(&state, &auth, &rec, &headers, body).await)
}

async fn chat(state: &AppState, auth: &AuthContext, rec: &CallRecorder, headers: &http::HeaderMap, body: Body) -> Result<Response, ApiError> {
    let beta = crate::passthrough::anthropic_beta(headers)?;
    let bytes = read_body(body, state.settings.body_limit_bytes).await?;
    let req = parse_chat(&bytes)?;
    rec.update(|d| {
        d.model = Some(req.model.clone());
        d.stream = req.stream;
    });
    let mut plan = route(state, auth, rec, &req.model).await?;
    plan.anthropic_beta = beta;
    let up = primary_model(&plan);
    let admission = admit(state, auth, rec, &req.model, &up, &|| estimate::estimate_chat(&req.body, &up)).await?;
    // Per attempt: OpenAI/Azure reasoning models take `max_completion_tokens` (`token_cap`).
    let cap = |b: &mut serde_json::Map<String, serde_json::Value>, t: &Target| crate::token_cap::fit_token_cap(b, t, state.reasoning_model(t));
    let started = Instant::now();
    if !req.stream {
        let cache_plan = state.cache.plan(auth.credential.team_id, cache::Endpoint::Chat, &req.model, &req.body, headers).await;
        if let Some(resp) = state.cache.answer(&cache_plan, rec, admission.as_ref()) {
            return Ok(resp);
        }
        let answer = failover::chat(state, rec, &plan, &req.body, &cap).await;
        rec.update(|d| d.upstream_latency_ms = Some(ms_since(started)));
        let answer = answer.map_err(|e| failed_before_answer(e, admission.as_ref()))?;
        rec.update(|d| {
            d.usage = answer.usage;
            d.upstream_request_id.clone_from(&answer.upstream_request_id);
        });
        state.cache.store(&cache_plan, &answer.body);
        let resp = with_upstream_id(Json(answer.body).into_response(), answer.upstream_request_id.as_deref());
        return Ok(with_rate_headers(cache::tag(resp, &cache_plan), admission.as_ref()));
    }
    let answer = failover::chat_stream(state, rec, &plan, &req.body, req.include_usage, &cap).await;
    rec.update(|d| d.upstream_latency_ms = Some(ms_since(started)));
    let answer = answer.map_err(|e| failed_before_answer(e, admission.as_ref()))?;
    rec.update(|d| d.upstream_request_id.clone_from(&answer.upstream_request_id));
    let headers = admission.as_ref().map(|a| a.headers().clone());
    // The stream owns the admission: it settles when the stream ends or is dropped.
    let stream = limits::hold_until_end(answer.stream, admission);
    // From here the body owns the call-log record (sent at end of stream or on disconnect).
    rec.defer();
    let guard = RecordGuard::for_stream(rec.clone());
    let mut resp = sse_response(stream, guard, state.shutdown.clone(), state.settings.stream_drain);
    if let Some(h) = headers {
        h.apply(&mut resp);
    }
    Ok(with_upstream_id(resp, answer.upstream_request_id.as_deref()))
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(embed(&state, &auth, &rec, &headers, body).await)
}

async fn embed(state: &AppState, auth: &AuthContext, rec: &CallRecorder, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.settings.body_limit_bytes).await?;
    let req = parse_embeddings(&bytes)?;
    rec.update(|d| d.model = Some(req.model.clone()));
    let plan = route(state, auth, rec, &req.model).await?;
    let up = primary_model(&plan);
    let admission = admit(state, auth, rec, &req.model, &up, &|| estimate::estimate_embeddings(&req.body, &up)).await?;
    let cache_plan = state.cache.plan(auth.credential.team_id, cache::Endpoint::Embeddings, &req.model, &req.body, headers).await;
    if let Some(resp) = state.cache.answer(&cache_plan, rec, admission.as_ref()) {
        return Ok(resp);
    }
    let started = Instant::now();
    let answer = failover::embeddings(state, rec, &plan, &req.body).await;
    rec.update(|d| d.upstream_latency_ms = Some(ms_since(started)));
    let answer = answer.map_err(|e| failed_before_answer(e, admission.as_ref()))?;
    rec.update(|d| {
        d.usage = answer.usage;
        d.upstream_request_id.clone_from(&answer.upstream_request_id);
    });
    state.cache.store(&cache_plan, &answer.body);
    let resp = with_upstream_id(Json(answer.body).into_response(), answer.upstream_request_id.as_deref());
    Ok(with_rate_headers(cache::tag(resp, &cache_plan), admission.as_ref()))
}

/// `GET /v1/models`: `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`
/// with exactly the models the caller's key may use. Models whose upstream model is in the
/// catalog also show `context_window`, `max_output_tokens`, `pricing` (USD per million tokens)
/// and `reasoning` (issue 4).
pub async fn list_models(State(state): State<Arc<AppState>>, Extension(auth): Extension<AuthContext>) -> Response {
    let mut data = Vec::new();
    for m in state.routing.list_models(&auth.credential.models).await {
        data.push(with_catalog(&state, m).await);
    }
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// `GET /v1/models/{model}`: one model object (with its catalog entry, as in the list), or 404
/// `model_not_found` if the key may not use it or it does not exist.
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Path(model): Path<String>,
) -> Response {
    let list = state.routing.list_models(&auth.credential.models).await;
    match list.into_iter().find(|m| m.id == model) {
        Some(m) => Json(with_catalog(&state, m).await).into_response(),
        None => error_response(&model_not_found(&model)),
    }
}

/// A model object plus the catalog entry of its primary deployment's upstream model.
async fn with_catalog(state: &AppState, m: crate::routing::ModelInfo) -> serde_json::Value {
    let upstream = state.routing.resolve(&m.id).await.ok().and_then(|r| r.primary().map(|c| c.upstream_model.clone()));
    let mut v = serde_json::to_value(&m).unwrap_or_else(|_| json!({ "id": m.id, "object": "model" }));
    if let (Some(up), serde_json::Value::Object(obj)) = (upstream, &mut v)
        && let Some(entry) = state.settings.catalog.lookup(&up)
        && let serde_json::Value::Object(extra) = entry.public_json()
    {
        obj.extend(extra);
    }
    v
}

/// Allow-list check (403 before any routing, so a restricted key cannot probe what exists),
/// then resolution into the failover plan (`failover` module doc: deployments in the order this
/// request tries them, then the fallback models'). Records the first candidate's provider and
/// upstream model (each attempt overwrites them).
pub(crate) async fn route(state: &AppState, auth: &AuthContext, rec: &CallRecorder, model: &str) -> Result<Plan, ApiError> {
    if !auth.allows_model(model) {
        let shown: String = model.chars().take(200).collect();
        return Err(ApiError::new(ErrorCode::InsufficientScope, format!("this API key may not use the model `{shown}`"))
            .with_param("model"));
    }
    // Issue 7: subscription check (open for models no service exposes; `admission` module doc).
    // A prompt API's subscription already admitted its model (`prompt_api`).
    if crate::prompt_api::PROMPT_ADMITTED.try_with(|()| ()).is_err() {
        if let Some(via) = state.admission.admit_model(auth.credential.app_id, model).await? {
            crate::admission::note_admitted(via);
        }
    }
    let route = state.routing.resolve(model).await?;
    let plan = state.plane.plan(model, route, |m| async move { state.routing.resolve(&m).await }).await;
    let candidate = plan.primary().ok_or_else(|| model_not_found(model))?;
    rec.update(|d| {
        d.provider = Some(candidate.provider.name.clone());
        d.upstream_model = Some(candidate.upstream_model.clone());
    });
    Ok(plan)
}

/// The upstream model of the plan's first candidate (limit estimates and prices).
pub(crate) fn primary_model(plan: &Plan) -> String {
    plan.primary().map(|c| c.upstream_model.clone()).unwrap_or_default()
}

/// Rate limits, quotas and budgets (`limits` module doc), then — the call being admitted — the
/// single-use token of the request is consumed ([`AuthContext::redeem`], L3): a call refused
/// before this point (validation 400, model/scope 403, subscription, limits) leaves it usable.
///
/// Errors: the limiter's (429 …); 401 `invalid_token` when a concurrent call consumed the
/// single-use token first (the admission is then released).
pub(crate) async fn admit(
    state: &AppState,
    auth: &AuthContext,
    rec: &CallRecorder,
    model: &str,
    upstream_model: &str,
    estimate: &(dyn Fn() -> TokenEstimate + Sync),
) -> Result<Option<Admission>, ApiError> {
    let provider = rec.snapshot().provider.unwrap_or_default();
    let call = CallInfo { auth, model, provider: &provider, upstream_model, estimate };
    let admission = state.limiter.admit(&call, rec).await?;
    if let Err(e) = auth.redeem().await {
        if let Some(a) = &admission {
            a.nothing_consumed();
        }
        return Err(e);
    }
    Ok(admission)
}

/// One direct upstream call failed before an answer (handlers that do not go through
/// `failover`).
#[allow(dead_code)]
pub(crate) fn upstream_failed_before_answer(e: UpstreamError, admission: Option<&Admission>) -> ApiError {
    failed_before_answer(upstream_failed(e), admission)
}

/// Every attempt failed before an answer: the admission consumed nothing.
pub(crate) fn failed_before_answer(e: ApiError, admission: Option<&Admission>) -> ApiError {
    if let Some(a) = admission {
        a.nothing_consumed();
    }
    e
}

pub(crate) fn with_rate_headers(mut resp: Response, admission: Option<&Admission>) -> Response {
    if let Some(a) = admission {
        a.headers().apply(&mut resp);
    }
    resp
}

#[allow(dead_code)]
pub(crate) fn upstream_failed(e: UpstreamError) -> ApiError {
    // The error's Display may carry upstream detail: operator log only, never the client body.
    tracing::warn!(error = %e, code = e.log_code(), "upstream call failed");
    e.to_api_error()
}

pub(crate) fn with_upstream_id(mut resp: Response, id: Option<&str>) -> Response {
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(id).ok()) {
        resp.headers_mut().insert(UPSTREAM_REQUEST_ID, v);
    }
    resp
}

pub(crate) fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}
