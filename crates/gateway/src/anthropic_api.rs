//! `POST /v1/messages`: the Anthropic Messages API in front of any provider
//! (`wire-formats.md` §2, §7.2–§7.4). The body is translated to the internal OpenAI chat shape
//! (`gatehouse_providers::inbound::anthropic`), routed and sent like any chat call, and the
//! answer (object or stream) is translated back. Errors use Anthropic's shape and statuses
//! (`crate::dialect::render_error`). The credential rules are in `crate::dialect`.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_providers::inbound::anthropic::{self as translate, StreamTranslator};
use gatehouse_types::ApiError;
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthContext;
use crate::calllog::{CallRecorder, RecordGuard};
use crate::dialect::{Dialect, render_error};
use crate::handlers::{admit, ms_since, route, with_rate_headers, with_upstream_id};
use crate::inbound::{Framer, adjust_for_target, framed_response, named_event};
use crate::request::{parse_object, read_body};

/// `POST /v1/messages`, streamed (`stream: true`) or not.
pub async fn messages(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    headers: http::HeaderMap,
    body: Body,
) -> Response {
    run(&state, &auth, &rec, &headers, body).await.unwrap_or_else(|e| render_error(Dialect::Anthropic, &e))
}

async fn run(state: &AppState, auth: &AuthContext, rec: &CallRecorder, headers: &http::HeaderMap, body: Body) -> Result<Response, ApiError> {
    // `anthropic-beta` goes to Anthropic upstreams only (`crate::passthrough`).
    let beta = crate::passthrough::anthropic_beta(headers)?;
    let bytes = read_body(body, state.settings.body_limit_bytes).await?;
    let req = translate::parse_request(&parse_object(&bytes)?)?;
    rec.update(|d| {
        d.model = Some(req.model.clone());
        d.stream = req.stream;
    });
    let mut plan = route(state, auth, rec, &req.model).await?;
    plan.anthropic_beta = beta;
    let body = req.body;
    // Per attempt: the target's kind and model decide about `reasoning_effort`.
    let adjust = |b: &mut serde_json::Map<String, Value>, t: &gatehouse_providers::Target| {
        adjust_for_target(b, t, req.reasoning_effort, state.reasoning_model(t));
    };
    let up = crate::handlers::primary_model(&plan);
    // Rate limits, quotas and budgets (issue 6), on the translated OpenAI-shaped body.
    let admission = admit(state, auth, rec, &req.model, &up, &|| crate::estimate::estimate_chat(&body, &up)).await?;
    let started = Instant::now();
    if !req.stream {
        let answer = crate::failover::chat(state, rec, &plan, &body, &adjust).await;
        rec.update(|d| d.upstream_latency_ms = Some(ms_since(started)));
        let answer = answer.map_err(|e| crate::handlers::failed_before_answer(e, admission.as_ref()))?;
        rec.update(|d| {
            d.usage = answer.usage;
            d.upstream_request_id.clone_from(&answer.upstream_request_id);
        });
        let message = translate::from_openai_response(&answer.body, &req.model, req.thinking)?;
        let resp = with_upstream_id(Json(message).into_response(), answer.upstream_request_id.as_deref());
        return Ok(with_rate_headers(resp, admission.as_ref()));
    }
    let answer = crate::failover::chat_stream(state, rec, &plan, &body, true, &adjust).await;
    rec.update(|d| d.upstream_latency_ms = Some(ms_since(started)));
    let answer = answer.map_err(|e| crate::handlers::failed_before_answer(e, admission.as_ref()))?;
    rec.update(|d| d.upstream_request_id.clone_from(&answer.upstream_request_id));
    let headers = admission.as_ref().map(|a| a.headers().clone());
    let stream = crate::limits::hold_until_end(answer.stream, admission);
    rec.defer();
    let guard = RecordGuard::for_stream(rec.clone());
    let framer = AnthropicFramer { t: StreamTranslator::new(&req.model, req.thinking) };
    let mut resp = framed_response(stream, framer, guard, state.shutdown.clone(), state.settings.stream_drain);
    if let Some(h) = headers {
        h.apply(&mut resp);
    }
    Ok(with_upstream_id(resp, answer.upstream_request_id.as_deref()))
}

/// Anthropic SSE: `event: <type>` + `data: <json>` per event, `ping` as keep-alive, in-band
/// `event: error` on failure (§2.6).
struct AnthropicFramer {
    t: StreamTranslator,
}

impl Framer for AnthropicFramer {
    fn on_chunk(&mut self, chunk: &Value) -> Result<Vec<Bytes>, ApiError> {
        Ok(self.t.on_chunk(chunk)?.iter().map(named_event).collect())
    }

    fn on_end(&mut self) -> Result<Vec<Bytes>, ApiError> {
        Ok(self.t.finish().iter().map(named_event).collect())
    }

    fn on_error(&mut self, err: &ApiError) -> Vec<Bytes> {
        vec![named_event(&StreamTranslator::error_event(err))]
    }

    fn keepalive(&self) -> Option<Bytes> {
        Some(Bytes::from_static(b"event: ping\ndata: {\"type\":\"ping\"}\n\n"))
    }

    fn content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }
}
