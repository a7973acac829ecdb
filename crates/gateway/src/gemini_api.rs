//! The Gemini API in front of any provider (`wire-formats.md` §3):
//! `POST /v1beta/models/{model}:generateContent`, `…:streamGenerateContent` (`?alt=sse` for SSE,
//! otherwise the streamed JSON array), and the same under `/v1/models/…` (what `google-genai`
//! 3.x calls). The request is translated to the internal OpenAI chat shape
//! (`gatehouse_providers::inbound::gemini`), routed like any chat call, and the answer translated
//! back. Errors: `{"error":{"code","message","status"}}`. Credential: `x-goog-api-key` (or
//! `Authorization: Bearer`); `?key=` is refused (`crate::dialect`).

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_providers::inbound::gemini::{self as translate, StreamTranslator};
use gatehouse_types::{ApiError, ErrorCode};
use http::Uri;
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthContext;
use crate::calllog::{CallRecorder, RecordGuard};
use crate::dialect::{Dialect, render_error};
use crate::handlers::{admit, ms_since, route, with_rate_headers, with_upstream_id};
use crate::inbound::{Framer, adjust_for_target, framed_response};
use crate::request::{parse_object, read_body};

/// `POST /v1beta/models/{model}:{method}` and `POST /v1/models/{model}:{method}`.
pub async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    target: Result<Path<String>, PathRejection>,
    uri: Uri,
    body: Body,
) -> Response {
    // A path that is not valid UTF-8 once percent-decoded is the client's mistake: a Gemini 400,
    // not axum's plain-text rejection.
    let Ok(Path(target)) = target else {
        return render_error(Dialect::Gemini, &ApiError::new(ErrorCode::InvalidRequest, "the model path is not valid UTF-8"));
    };
    run(&state, &auth, &rec, &target, &uri, body).await.unwrap_or_else(|e| render_error(Dialect::Gemini, &e))
}

/// Whether the answer is SSE, from `?alt=` (`sse`; `json` or absent: JSON). Any other value, or
/// `alt` given twice, is 400 `INVALID_ARGUMENT` (the API knows `proto` and `media` too, which
/// this gateway does not serve).
fn alt_is_sse(uri: &Uri) -> Result<bool, ApiError> {
    let mut alts = uri.query().unwrap_or_default().split('&').filter_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k.eq_ignore_ascii_case("alt").then_some(v)
    });
    let alt = alts.next();
    if alts.next().is_some() {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "`alt` may be given only once").with_param("alt"));
    }
    match alt {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("sse") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(false),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidRequest, "`alt` must be `sse` or `json`").with_param("alt")),
    }
}

/// `{model}:{method}` → `(model, streamed)`; the method is after the last `:` (model names may
/// hold `:` themselves, e.g. `provider/model:tag`).
fn split_target(target: &str) -> Result<(&str, bool), ApiError> {
    let (model, method) = target.rsplit_once(':').ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, "expected /models/{model}:generateContent or :streamGenerateContent")
    })?;
    match method {
        "generateContent" => Ok((model, false)),
        "streamGenerateContent" => Ok((model, true)),
        other => {
            let shown: String = other.chars().take(64).collect();
            Err(ApiError::new(
                ErrorCode::NotFound,
                format!("the method `{shown}` is not served; use generateContent or streamGenerateContent"),
            ))
        }
    }
}

async fn run(state: &AppState, auth: &AuthContext, rec: &CallRecorder, target: &str, uri: &Uri, body: Body) -> Result<Response, ApiError> {
    let (model, stream) = split_target(target)?;
    let sse = alt_is_sse(uri)?;
    let bytes = read_body(body, state.settings.body_limit_bytes).await?;
    let req = translate::parse_request(model, stream, &parse_object(&bytes)?)?;
    rec.update(|d| {
        d.model = Some(req.model.clone());
        d.stream = stream;
    });
    let plan = route(state, auth, rec, &req.model).await?;
    let body = req.body;
    // Per attempt: the target's kind and model decide about `reasoning_effort`.
    let adjust = |b: &mut serde_json::Map<String, Value>, t: &gatehouse_providers::Target| {
        adjust_for_target(b, t, req.reasoning_effort, state.reasoning_model(t));
    };
    let up = crate::handlers::primary_model(&plan);
    // Rate limits, quotas and budgets (issue 6), on the translated OpenAI-shaped body.
    let admission = admit(state, auth, rec, &req.model, &up, &|| crate::estimate::estimate_chat(&body, &up)).await?;
    let started = Instant::now();
    if !stream {
        let answer = crate::failover::chat(state, rec, &plan, &body, &adjust).await;
        rec.update(|d| d.upstream_latency_ms = Some(ms_since(started)));
        let answer = answer.map_err(|e| crate::handlers::failed_before_answer(e, admission.as_ref()))?;
        rec.update(|d| {
            d.usage = answer.usage;
            d.upstream_request_id.clone_from(&answer.upstream_request_id);
        });
        let out = translate::from_openai_response(&answer.body, &req.model, req.include_thoughts)?;
        let resp = with_upstream_id(Json(out).into_response(), answer.upstream_request_id.as_deref());
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
    let framer = GeminiFramer { t: StreamTranslator::new(&req.model, req.include_thoughts), sse, elements: 0 };
    let mut resp = framed_response(stream, framer, guard, state.shutdown.clone(), state.settings.stream_drain);
    if let Some(h) = headers {
        h.apply(&mut resp);
    }
    Ok(with_upstream_id(resp, answer.upstream_request_id.as_deref()))
}

/// Gemini stream framing (§3.3): `data: <json>` events with `alt=sse`, else one JSON array whose
/// elements are written as they come (`[{…}`, `,\r\n{…}`, …, `]`). Errors after the start are an
/// `{"error":{…}}` event / array element.
struct GeminiFramer {
    t: StreamTranslator,
    sse: bool,
    elements: usize,
}

impl GeminiFramer {
    fn frame(&mut self, v: &Value) -> Bytes {
        if self.sse {
            return Bytes::from(format!("data: {v}\r\n\r\n"));
        }
        let sep = if self.elements == 0 { "[" } else { ",\r\n" };
        self.elements += 1;
        Bytes::from(format!("{sep}{v}"))
    }

    fn close(&mut self) -> Option<Bytes> {
        if self.sse {
            return None;
        }
        Some(Bytes::from_static(if self.elements == 0 { b"[]" } else { b"]" }))
    }
}

impl Framer for GeminiFramer {
    fn on_chunk(&mut self, chunk: &Value) -> Result<Vec<Bytes>, ApiError> {
        let out = self.t.on_chunk(chunk);
        Ok(out.iter().map(|v| self.frame(v)).collect())
    }

    fn on_end(&mut self) -> Result<Vec<Bytes>, ApiError> {
        let out = self.t.finish()?;
        let mut frames: Vec<Bytes> = out.iter().map(|v| self.frame(v)).collect();
        frames.extend(self.close());
        Ok(frames)
    }

    fn on_error(&mut self, err: &ApiError) -> Vec<Bytes> {
        let status = translate::error_status(err.code);
        let body = translate::error_body(err, status);
        let mut frames = vec![self.frame(&body)];
        frames.extend(self.close());
        frames
    }

    fn keepalive(&self) -> Option<Bytes> {
        // None: google-genai feeds every non-`data:` line to its JSON-error detector, so an SSE
        // comment could corrupt a later error; the JSON-array form has no place for one either.
        None
    }

    fn content_type(&self) -> &'static str {
        if self.sse { "text/event-stream; charset=utf-8" } else { "application/json; charset=utf-8" }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_last_colon() {
        assert_eq!(split_target("gemini-2.5-flash:generateContent").unwrap(), ("gemini-2.5-flash", false));
        assert_eq!(split_target("mock/mock-gpt:tools:streamGenerateContent").unwrap(), ("mock/mock-gpt:tools", true));
        assert_eq!(split_target("m:countTokens").unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(split_target("m").unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn alt_takes_sse_or_json_once() {
        let alt = |q: &str| alt_is_sse(&format!("/v1beta/models/m:streamGenerateContent{q}").parse().unwrap());
        assert!(!alt("").unwrap());
        assert!(alt("?alt=sse").unwrap());
        assert!(alt("?x=1&ALT=SSE").unwrap());
        assert!(!alt("?alt=json").unwrap());
        for bad in ["?alt=xml", "?alt=", "?alt", "?alt=proto", "?alt=sse&alt=json"] {
            let e = alt(bad).unwrap_err();
            assert_eq!((e.code, e.param.as_deref()), (ErrorCode::InvalidRequest, Some("alt")), "{bad}");
        }
    }
}
