//! Shared machinery of the inbound dialects (Anthropic Messages, Gemini): the streamed body that
//! turns the upstream's OpenAI chunks into the client's own stream format through a [`Framer`],
//! and the per-target adjustments of the translated OpenAI body.
//!
//! The stream body behaves like the OpenAI one (`crate::stream`): chunks go out as they arrive,
//! the call-log record is owned by the body (usage so far + 499 on disconnect), a mid-stream
//! upstream error becomes the dialect's in-band error, keep-alives after [`KEEPALIVE`] of
//! silence where the format has one, and the shutdown drain deadline ends the stream with an
//! in-band `unavailable` error.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use gatehouse_providers::{ChatStream, ProviderKind, Target};
use gatehouse_types::{ApiError, ErrorCode};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::calllog::RecordGuard;
use crate::stream::KEEPALIVE;

/// Turns OpenAI chunks into one client dialect's stream frames.
pub(crate) trait Framer: Send + 'static {
    /// One upstream OpenAI chunk (JSON bytes) → frames. An `Err` ends the stream with it.
    fn on_chunk(&mut self, chunk: &Value) -> Result<Vec<Bytes>, ApiError>;
    /// The upstream ended normally → the closing frames.
    fn on_end(&mut self) -> Result<Vec<Bytes>, ApiError>;
    /// The stream fails with `err` → the closing frames (in-band error).
    fn on_error(&mut self, err: &ApiError) -> Vec<Bytes>;
    /// A keep-alive frame, if the format has one.
    fn keepalive(&self) -> Option<Bytes>;
    /// The `Content-Type` of the body.
    fn content_type(&self) -> &'static str;
}

/// `event: <type>\ndata: <json>\n\n` (Anthropic SSE; the event name is the payload's `type`).
pub(crate) fn named_event(v: &Value) -> Bytes {
    let name = v.get("type").and_then(Value::as_str).unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// Builds the streamed response around `upstream`, framed by `framer` (see the module doc).
pub(crate) fn framed_response<F: Framer>(
    upstream: ChatStream,
    mut framer: F,
    guard: RecordGuard,
    shutdown: CancellationToken,
    drain: Duration,
) -> Response {
    let content_type = framer.content_type();
    let body = async_stream::stream! {
        let guard = guard;
        let mut upstream = upstream;
        let drain_deadline = async move {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        };
        tokio::pin!(drain_deadline);
        let keepalive = tokio::time::sleep(KEEPALIVE);
        tokio::pin!(keepalive);
        let mut first = true;
        let error = loop {
            let item = tokio::select! {
                biased;
                item = upstream.next() => item,
                () = &mut drain_deadline => {
                    break Some(ApiError::new(ErrorCode::Unavailable, "the gateway is shutting down; the stream was ended"));
                }
                () = &mut keepalive => {
                    keepalive.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                    if let Some(frame) = framer.keepalive() {
                        yield Ok::<Bytes, Infallible>(frame);
                    }
                    continue;
                }
            };
            let frames = match item {
                None => match framer.on_end() {
                    Ok(frames) => {
                        for f in frames {
                            yield Ok(f);
                        }
                        break None;
                    }
                    Err(e) => break Some(e),
                },
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "upstream stream failed");
                    break Some(e.to_api_error());
                }
                Some(Ok(event)) => {
                    if let Some(usage) = event.usage {
                        guard.recorder().update(|d| d.usage = usage);
                    }
                    let Some(data) = event.data else { continue };
                    let chunk: Value = match serde_json::from_slice(&data) {
                        Ok(v) => v,
                        Err(_) => break Some(ApiError::new(ErrorCode::UpstreamError, "the upstream provider sent a malformed chunk")),
                    };
                    match framer.on_chunk(&chunk) {
                        Ok(frames) => frames,
                        Err(e) => break Some(e),
                    }
                }
            };
            if !frames.is_empty() {
                if first {
                    first = false;
                    let ttft = guard.recorder().elapsed_ms();
                    guard.recorder().update(|d| d.ttft_ms = Some(ttft));
                }
                keepalive.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                for f in frames {
                    yield Ok(f);
                }
            }
        };
        drop(upstream);
        match error {
            Some(err) => {
                guard.recorder().finish(err.code.status().as_u16(), Some(err.code.as_str()));
                for f in framer.on_error(&err) {
                    yield Ok(f);
                }
            }
            None => guard.recorder().finish(StatusCode::OK.as_u16(), None),
        }
    };
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Adjusts a translated OpenAI body for its target: adds `reasoning_effort` only where the
/// upstream can use it (the Anthropic adapter turns it into a thinking budget; OpenAI-kind
/// upstreams only for models the catalog marks as reasoning models, since others reject the
/// field), and puts the output cap in the field the upstream takes
/// ([`crate::token_cap::fit_token_cap`]).
pub(crate) fn adjust_for_target(body: &mut Map<String, Value>, target: &Target, effort: Option<&'static str>, reasoning_model: Option<bool>) {
    crate::token_cap::fit_token_cap(body, target, reasoning_model);
    let Some(effort) = effort else { return };
    let allowed = match reasoning_model {
        Some(r) => r,
        None => target.kind != ProviderKind::OpenAi,
    };
    if allowed {
        body.insert("reasoning_effort".into(), Value::String(effort.to_string()));
    }
}
