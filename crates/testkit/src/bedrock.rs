//! AWS Bedrock Runtime dialect: `POST /model/{modelId}/converse` and
//! `/model/{modelId}/converse-stream` (`wire-formats.md` §6). The model id arrives
//! percent-encoded in the path (`mock-bedrock%3Atools`) and carries the scenario like every
//! other dialect's model name.
//!
//! Auth: `Authorization: Bearer <key>` (a Bedrock API key) or SigV4
//! (`AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/bedrock/aws4_request, SignedHeaders=…,
//! Signature=…` + `X-Amz-Date`). With an expected key the Bearer token must equal it, and a
//! SigV4 signature is recomputed here (an implementation independent of the gateway's
//! `aws-sigv4`, canonical URI segments encoded twice as botocore does) with the expected key
//! as the secret access key; a mismatch is 403 `InvalidSignatureException`, a wrong key 403
//! `UnrecognizedClientException`. Without an expected key only the header's shape is checked.
//!
//! Errors are `{"message": …}` with `x-amzn-ErrorType` and `x-amzn-RequestId`. Streams are the
//! binary event stream (CRC-checked frames, `:message-type`, `:event-type`, `:content-type`
//! headers, written with `aws-smithy-eventstream`): `messageStart`, per block
//! `contentBlockStart` (tool use) / `contentBlockDelta`… / `contentBlockStop`, `messageStop`,
//! `metadata` (usage incl. `cacheReadInputTokens`/`cacheWriteInputTokens`). `error-mid-stream`
//! sends a `modelStreamErrorException` exception frame; `utf8-split` splits a frame inside a
//! multibyte character at the TCP level; `reasoning` adds a `reasoningContent` block (Bedrock
//! reports no reasoning-token count).

use std::sync::Arc;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as EsHeaderValue, Message};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use gatehouse_types::Usage;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{LastTurn, ToolCall, new_id, reply_text, split_text, tokens, tool_calls};
use crate::respond::{self, Dialect, Prepared};
use crate::scenario::{Failure, Scenario, ToolMode};
use crate::state::MockState;
use crate::stream::{HandlerGuard, ScriptedBody, Step};

/// Pause between the two halves of a split frame.
const SPLIT_GAP: std::time::Duration = std::time::Duration::from_millis(15);

/// The exception name Bedrock answers for an HTTP status (`x-amzn-ErrorType`).
pub(crate) fn exception_for(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("ValidationException", "Malformed input request (scripted by gatehouse-mock)."),
        403 => ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
        404 => ("ResourceNotFoundException", "The specified model identifier is not valid."),
        408 => ("ModelTimeoutException", "Model has timed out in processing the request."),
        424 => ("ModelErrorException", "The model returned an error."),
        429 => ("ThrottlingException", "Too many requests, please wait before trying again."),
        503 => ("ServiceUnavailableException", "Bedrock is unable to process your request."),
        500..=599 => ("InternalServerException", "The server encountered an internal error."),
        _ => ("ValidationException", "Request rejected (scripted by gatehouse-mock)."),
    }
}

fn text_of(content: Option<&Value>) -> String {
    content
        .and_then(Value::as_array)
        .map(|blocks| blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn last_turn(messages: &[Value]) -> LastTurn {
    let Some(last) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
        return LastTurn::User(String::new());
    };
    let blocks = last.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    let results: Vec<String> = blocks
        .iter()
        .filter_map(|b| b.get("toolResult"))
        .map(|r| {
            r.get("content")
                .and_then(Value::as_array)
                .map(|c| c.iter().map(|x| x.get("text").and_then(Value::as_str).map_or_else(|| x.get("json").map(Value::to_string).unwrap_or_default(), str::to_owned)).collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        })
        .collect();
    let text = text_of(last.get("content"));
    if text.is_empty() && !results.is_empty() {
        return LastTurn::ToolResult(results.join(" "));
    }
    LastTurn::User(text)
}

fn request_tools(body: &Value) -> Vec<(String, Value)> {
    body.pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    let spec = t.get("toolSpec")?;
                    Some((spec.get("name")?.as_str()?.to_owned(), spec.pointer("/inputSchema/json").cloned().unwrap_or(Value::Null)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Converse `stopReason` for a scenario `finish=` value (OpenAI names mapped).
fn stop_reason(f: &str) -> String {
    match f {
        "stop" => "end_turn".into(),
        "length" => "max_tokens".into(),
        "tool_calls" => "tool_use".into(),
        "content_filter" => "content_filtered".into(),
        other => other.to_owned(),
    }
}

struct Answer {
    text: Option<String>,
    reasoning: Option<String>,
    calls: Vec<(String, ToolCall)>,
    stop: String,
    input: u32,
    output: u32,
    cache_read: u32,
    cache_write: u32,
}

impl Answer {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: u64::from(self.input) + u64::from(self.cache_read) + u64::from(self.cache_write),
            completion_tokens: u64::from(self.output),
            cached_tokens: u64::from(self.cache_read),
            cache_write_tokens: u64::from(self.cache_write),
            reasoning_tokens: 0,
        }
    }

    fn usage_json(&self) -> Value {
        json!({
            "inputTokens": self.input,
            "outputTokens": self.output,
            "totalTokens": self.input + self.output + self.cache_read + self.cache_write,
            "cacheReadInputTokens": self.cache_read,
            "cacheWriteInputTokens": self.cache_write,
        })
    }
}

fn answer(p: &Prepared, messages: &[Value]) -> Answer {
    let s = &p.scenario;
    let input = messages.iter().map(|m| tokens(&text_of(m.get("content"))) + 3).sum::<u32>()
        + p.body.get("system").map(|sys| tokens(&text_of(Some(sys)))).unwrap_or(0);
    let calls: Vec<(String, ToolCall)> = tool_calls(s.tools, &request_tools(&p.body)).into_iter().map(|c| (new_id("tooluse_", 22), c)).collect();
    let text = (s.tools == ToolMode::None).then(|| reply_text(s, &last_turn(messages)));
    let reasoning = (s.reasoning_tokens > 0).then(|| "Thinking about it.".to_owned());
    let output = text.as_deref().map(tokens).unwrap_or(0)
        + calls.iter().map(|(_, c)| 8 + u32::try_from(c.arguments.len() / 4).unwrap_or(0)).sum::<u32>()
        + s.reasoning_tokens;
    let stop = match &s.finish {
        Some(f) => stop_reason(f),
        None if !calls.is_empty() => "tool_use".to_owned(),
        None => "end_turn".to_owned(),
    };
    Answer { text, reasoning, calls, stop, input, output, cache_read: s.cached_tokens, cache_write: s.cached_tokens / 4 }
}

/// `POST /model/{model}/converse`.
pub(crate) async fn converse(State(st): State<Arc<MockState>>, Path(model): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = converse_inner(&st, &model, false, method, &uri, &headers, &body).await;
    guard.disarm();
    resp
}

/// `POST /model/{model}/converse-stream`.
pub(crate) async fn converse_stream(State(st): State<Arc<MockState>>, Path(model): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = converse_inner(&st, &model, true, method, &uri, &headers, &body).await;
    guard.disarm();
    resp
}

async fn converse_inner(st: &Arc<MockState>, model: &str, stream: bool, method: Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let d = Dialect::Bedrock;
    let p = match respond::prepare_with_model(st, d, method.clone(), uri.path(), headers, body, Some(model)) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if let Err((status, name, msg)) = check_auth(st.expected_key.as_deref(), &method, uri, headers, body) {
        return error_with(status, name, msg, &Scenario::default());
    }
    let Some(messages) = p.body.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()).cloned() else {
        return respond::error(d, 400, Some("A conversation must start with a user message."), None, &Scenario::default());
    };
    if p.body.get("model").is_some() {
        return respond::error(d, 400, Some("Malformed input request: extraneous key [model] is not permitted"), None, &Scenario::default());
    }
    if !p.scenario.wait.is_zero() {
        tokio::time::sleep(p.scenario.wait).await;
    }
    match p.failure {
        Some(Failure::Status(code)) => return respond::error(d, code, None, None, &p.scenario),
        Some(Failure::ErrorMidStream) if !stream => return respond::error(d, 500, None, None, &p.scenario),
        _ => {}
    }
    let a = answer(&p, &messages);
    st.set_last_usage(a.usage());
    if stream {
        return event_stream_ok(st, stream_steps(&p, &a));
    }
    let mut content: Vec<Value> = Vec::new();
    if let Some(r) = &a.reasoning {
        content.push(json!({"reasoningContent": {"reasoningText": {"text": r, "signature": "bW9jay1zaWduYXR1cmU="}}}));
    }
    if let Some(t) = &a.text {
        content.push(json!({"text": t}));
    }
    for (id, c) in &a.calls {
        let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"toolUse": {"toolUseId": id, "name": c.name, "input": input}}));
    }
    let value = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": a.stop,
        "usage": a.usage_json(),
        "metrics": {"latencyMs": 1},
    });
    let value = crate::openai::with_noise(value, &p.scenario);
    match p.failure {
        Some(Failure::EarlyClose) => respond::json_truncated(st, d, &value, true),
        Some(Failure::EarlyEnd) => respond::json_truncated(st, d, &value, false),
        _ => respond::json_ok(d, &value, &p.scenario),
    }
}

/// A Bedrock error answer with an explicit exception name.
fn error_with(status: u16, name: &str, message: &str, s: &Scenario) -> Response {
    let mut resp = respond::error(Dialect::Bedrock, status, Some(message), None, s);
    if let Ok(v) = HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

/// One event-stream frame.
fn frame(message_type: &str, type_header: &'static str, ty: &str, payload: &Value) -> Vec<u8> {
    let m = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":message-type", EsHeaderValue::String(message_type.to_owned().into())))
        .add_header(Header::new(type_header, EsHeaderValue::String(ty.to_owned().into())))
        .add_header(Header::new(":content-type", EsHeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    if let Err(e) = write_message_to(&m, &mut out) {
        tracing::warn!(error = %e, "gatehouse-mock: cannot encode an event-stream frame");
    }
    out
}

fn event(ty: &str, payload: Value) -> Vec<u8> {
    frame("event", ":event-type", ty, &payload)
}

fn stream_steps(p: &Prepared, a: &Answer) -> Vec<Step> {
    let s = &p.scenario;
    let mut body: Vec<Vec<u8>> = Vec::new();
    let mut index = 0u32;
    if s.noise {
        body.push(event("mockFutureEvent", json!({"detail": "unknown event types must be ignored"})));
    }
    if let Some(r) = &a.reasoning {
        body.push(event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": r}}})));
        body.push(event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": "bW9jay1zaWduYXR1cmU="}}})));
        body.push(event("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    if let Some(t) = &a.text {
        for piece in split_text(t, s) {
            body.push(event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"text": piece}})));
        }
        body.push(event("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    for (id, c) in &a.calls {
        body.push(event("contentBlockStart", json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": c.name}}})));
        for frag in c.fragments() {
            body.push(event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": frag}}})));
        }
        body.push(event("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    match p.failure {
        Some(Failure::ErrorMidStream | Failure::EarlyClose | Failure::EarlyEnd) => {
            let keep = body.len().div_ceil(2);
            frames.extend(body.into_iter().take(keep));
            if p.failure == Some(Failure::ErrorMidStream) {
                frames.push(frame("exception", ":exception-type", "modelStreamErrorException", &json!({"message": "The model stream failed (scripted by gatehouse-mock).", "originalStatusCode": 500})));
            }
        }
        _ => {
            frames.extend(body);
            frames.push(event("messageStop", json!({"stopReason": a.stop})));
            frames.push(event("metadata", json!({"usage": a.usage_json(), "metrics": {"latencyMs": 1}})));
        }
    }
    let mut steps = Vec::new();
    let delay = s.event_delay();
    for (i, f) in frames.into_iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            steps.push(Step::Sleep(delay));
        }
        // Split inside the first multibyte character of a frame, after its lead byte.
        match f.iter().position(|b| *b >= 0xC0).filter(|_| s.utf8_split) {
            Some(lead) => {
                let mut first = f;
                let second = first.split_off(lead + 1);
                steps.push(Step::Write(Bytes::from(first)));
                steps.push(Step::Sleep(SPLIT_GAP));
                steps.push(Step::Write(Bytes::from(second)));
            }
            None => steps.push(Step::Write(Bytes::from(f))),
        }
    }
    if p.failure == Some(Failure::EarlyClose) {
        steps.push(Step::Sleep(SPLIT_GAP));
        steps.push(Step::Abort);
    }
    steps
}

fn event_stream_ok(st: &Arc<MockState>, steps: Vec<Step>) -> Response {
    let mut resp = Response::new(Body::from_stream(ScriptedBody::new(steps, st.clone())));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    respond::set_request_id(h, Dialect::Bedrock, &new_id("", 32));
    resp
}

// ---- auth ---------------------------------------------------------------------------------

type AuthError = (u16, &'static str, &'static str);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(), // HMAC takes keys of any length
    }
}

/// RFC 3986 unreserved characters stay; every other byte is `%XX` (so `%3A` becomes `%253A`).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks `Authorization` (see the module docs).
fn check_auth(expected: Option<&str>, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    let missing = (403, "MissingAuthenticationTokenException", "Missing Authentication Token");
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(missing)?;
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return match expected {
            Some(k) if token.trim() != k => Err((403, "UnrecognizedClientException", "The security token included in the request is invalid.")),
            _ => Ok(()),
        };
    }
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or(missing)?;
    let bad_shape = (403, "IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.");
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (credential, signed_headers, signature) = match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(bad_shape),
    };
    let scope: Vec<&str> = credential.splitn(5, '/').collect();
    let [_key_id, date, region, service, terminator] = scope[..] else { return Err(bad_shape) };
    if service != "bedrock" || terminator != "aws4_request" {
        return Err((403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'."));
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or(bad_shape)?;
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") || !amz_date.starts_with(date) {
        return Err(bad_shape);
    }
    let Some(secret) = expected else { return Ok(()) };
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let canonical_uri: String = uri.path().split('/').map(encode_segment).collect::<Vec<_>>().join("/");
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload}",
        query = uri.query().unwrap_or_default(),
        payload = hex(&Sha256::digest(body)),
    );
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/bedrock/aws4_request\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, "bedrock", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let want = hex(&hmac(&key, string_to_sign.as_bytes()));
    if want.len() == signature.len() && want.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
        Ok(())
    } else {
        Err((403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The worked example of the AWS SigV4 documentation ("Signature Version 4 test suite",
    /// `get-vanilla`), recomputed by this module's implementation.
    #[test]
    fn sigv4_reference_vector() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        h.insert("authorization", HeaderValue::from_static(auth));
        // The service name must be bedrock for this mock: the vector's scope is refused as such…
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(check_auth(Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), &Method::GET, &uri, &h, b"").unwrap_err().1, "InvalidSignatureException");
        // …so check the derivation itself against the vector.
        let canonical = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let sts = format!("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}", hex(&Sha256::digest(canonical.as_bytes())));
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20150830");
        for part in ["us-east-1", "service", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        assert_eq!(hex(&hmac(&key, sts.as_bytes())), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    }

    #[test]
    fn double_encoded_segments() {
        assert_eq!(encode_segment("mock-bedrock%3Atools"), "mock-bedrock%253Atools");
        assert_eq!(encode_segment("a.b_c~d"), "a.b_c~d");
    }
}
