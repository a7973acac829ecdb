//! The streamed chat answer: OpenAI SSE framing (`wire-formats.md` §1.5, §0.2) of the provider's
//! [`StreamEvent`]s, chunk by chunk as they arrive, never buffered whole.
//!
//! * each `StreamEvent.data` → `data: <json>\n\n`;
//! * a mid-stream `Err` → one `data: {"error":{…}}\n\n` event (OpenAI's in-band form), then end;
//! * `data: [DONE]\n\n` exactly once, last;
//! * `: keep-alive\n\n` comments after [`KEEPALIVE`] of silence (proxies close idle streams);
//! * after the gateway's shutdown token is cancelled, the stream may run for `drain` more, then
//!   ends with an error event + `[DONE]`.
//!
//! The body owns the call-log [`RecordGuard`]: the record is sent when the stream ends, or — if
//! the client goes away and the body is dropped — by the guard, with the usage seen so far and
//! `client_disconnected`. Dropping the body drops the upstream stream, which cancels the
//! upstream request.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use gatehouse_providers::ChatStream;
use gatehouse_types::{ApiError, ErrorCode};
use http::{HeaderValue, StatusCode, header};
use tokio_util::sync::CancellationToken;

use crate::calllog::RecordGuard;

/// The end-of-stream marker, sent exactly once.
pub const DONE: &[u8] = b"data: [DONE]\n\n";
/// Silence after which a keep-alive comment is sent.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// Frames one payload as an SSE `data:` event. A payload with line breaks (never produced by a
/// compact JSON serializer, but possible from a custom adapter) becomes several `data:` lines,
/// which SSE clients join with `\n` (WHATWG HTML §9.2.6), so the JSON stays intact.
pub fn frame_data(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    if !payload.contains(&b'\n') && !payload.contains(&b'\r') {
        out.put_slice(b"data: ");
        out.put_slice(payload);
    } else {
        let text = String::from_utf8_lossy(payload);
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                out.put_u8(b'\n');
            }
            out.put_slice(b"data: ");
            out.put_slice(line.trim_end_matches('\r').as_bytes());
        }
    }
    out.put_slice(b"\n\n");
    out.freeze()
}

/// The in-band error event `data: {"error":{…}}\n\n` (OpenAI shape).
pub fn frame_error(err: &ApiError) -> Bytes {
    frame_data(err.openai_body().to_string().as_bytes())
}

/// Ending of a stream, for the call log.
struct Ending {
    error: Option<ApiError>,
}

/// Builds the `text/event-stream` response around `upstream` (see the module doc).
pub fn sse_response(upstream: ChatStream, guard: RecordGuard, shutdown: CancellationToken, drain: Duration) -> Response {
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
        let ending = loop {
            let item = tokio::select! {
                biased;
                item = upstream.next() => item,
                () = &mut drain_deadline => break Ending {
                    error: Some(ApiError::new(ErrorCode::Unavailable, "the gateway is shutting down; the stream was ended")),
                },
                () = &mut keepalive => {
                    keepalive.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                    yield Ok::<Bytes, Infallible>(Bytes::from_static(KEEPALIVE_FRAME));
                    continue;
                }
            };
            match item {
                None => break Ending { error: None },
                Some(Ok(event)) => {
                    if let Some(usage) = event.usage {
                        guard.recorder().update(|d| d.usage = usage);
                    }
                    if let Some(data) = event.data {
                        if first {
                            first = false;
                            let ttft = guard.recorder().elapsed_ms();
                            guard.recorder().update(|d| d.ttft_ms = Some(ttft));
                        }
                        keepalive.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                        yield Ok(frame_data(&data));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "upstream stream failed");
                    break Ending { error: Some(e.to_api_error()) };
                }
            }
        };
        // Release the upstream connection before the last frames go out.
        drop(upstream);
        match &ending.error {
            Some(err) => {
                guard.recorder().finish(err.code.status().as_u16(), Some(err.code.as_str()));
                yield Ok(frame_error(err));
            }
            None => guard.recorder().finish(StatusCode::OK.as_u16(), None),
        }
        yield Ok(Bytes::from_static(DONE));
    };
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::calllog::{CallLogSink, CallRecorder};
    use gatehouse_providers::{StreamEvent, UpstreamError};
    use gatehouse_types::{Usage, now};
    use http_body_util::BodyExt;

    fn ev(data: &str, usage: Option<Usage>) -> Result<StreamEvent, UpstreamError> {
        Ok(StreamEvent { data: Some(Bytes::from(data.to_string())), usage })
    }

    async fn run(items: Vec<Result<StreamEvent, UpstreamError>>) -> (String, gatehouse_store::CallLog) {
        let (sink, mut rx) = CallLogSink::channel(4);
        let rec = CallRecorder::new(sink, "r", "e", Instant::now(), now());
        rec.defer();
        let upstream: ChatStream = Box::pin(futures::stream::iter(items));
        let resp = sse_response(upstream, RecordGuard::for_stream(rec), CancellationToken::new(), Duration::from_secs(1));
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(bytes.to_vec()).unwrap(), rx.try_recv().unwrap())
    }

    #[test]
    fn framing() {
        assert_eq!(&frame_data(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&frame_data(b"{\"a\":\r\n1}")[..], b"data: {\"a\":\ndata: 1}\n\n");
    }

    #[tokio::test]
    async fn done_once_and_usage_logged() {
        let u = Usage { prompt_tokens: 3, completion_tokens: 5, ..Usage::default() };
        let (text, log) = run(vec![ev("{\"x\":1}", None), Ok(StreamEvent { data: None, usage: Some(u) })]).await;
        assert_eq!(text, "data: {\"x\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(log.status, 200);
        assert_eq!(log.completion_tokens, 5);
        assert!(log.ttft_ms.is_some());
    }

    #[tokio::test]
    async fn mid_stream_error_then_done() {
        let (text, log) = run(vec![
            ev("{\"x\":1}", None),
            Err(UpstreamError::MidStream { provider_code: None, message: "overloaded".into() }),
        ])
        .await;
        assert_eq!(text.matches("data: [DONE]").count(), 1);
        assert!(text.contains("data: {\"error\":"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(log.error_code.as_deref(), Some("upstream_error"));
    }

    #[tokio::test]
    async fn drain_deadline_ends_stream() {
        let (sink, mut rx) = CallLogSink::channel(4);
        let rec = CallRecorder::new(sink, "r", "e", Instant::now(), now());
        let upstream: ChatStream = Box::pin(futures::stream::pending());
        let token = CancellationToken::new();
        token.cancel();
        let resp = sse_response(upstream, RecordGuard::for_stream(rec), token, Duration::from_millis(10));
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(text.to_vec()).unwrap();
        assert!(text.contains("\"unavailable\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(rx.try_recv().unwrap().error_code.as_deref(), Some("unavailable"));
    }
}
