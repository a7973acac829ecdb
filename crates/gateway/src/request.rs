//! Reading and validating client request bodies (OpenAI shapes, `wire-formats.md` §1.3, §1.7).
//!
//! The gateway's own fields are checked here (`model`, `messages`/`input`, `stream`,
//! `stream_options`), the sampling and message fields in [`crate::validate`]; everything else
//! passes through to the adapter untouched. Errors are 400
//! `invalid_request` naming the field (`param`) or the JSON position, or 413 for an oversized body.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use gatehouse_types::{ApiError, ErrorCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

/// A validated `POST /v1/chat/completions` body.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The requested model, as the client wrote it.
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage` (false when absent).
    pub include_usage: bool,
    /// The whole body, unknown fields included.
    pub body: Map<String, Value>,
}

/// A validated `POST /v1/embeddings` body.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub body: Map<String, Value>,
}

/// The 413 answer for a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("the request body is larger than the limit of {limit} bytes"))
}

/// Reads the whole body, failing with 413 as soon as it exceeds `limit` bytes, 408 if the body
/// read timeout fired (the client stalled), or 400 if the client broke off.
pub async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// 408 when the body read timed out (`GatewaySettings::body_read_timeout`), else 400.
fn body_error(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                ErrorCode::RequestTimeout,
                "the request body stopped arriving; no data within the body read timeout",
            );
        }
        source = err.source();
    }
    ApiError::new(ErrorCode::InvalidRequest, "the request body could not be read")
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

/// Parses a JSON object; errors name the line and column of a syntax error.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "the request body is empty; expected a JSON object"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(ErrorCode::InvalidRequest, "the request body must be a JSON object")),
        Err(e) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "the request body is not valid JSON ({} at line {} column {})",
                syntax_reason(&e),
                e.line(),
                e.column()
            ),
        )),
    }
}

/// A short reason without serde_json's own position suffix (which we format ourselves).
fn syntax_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

fn model_of(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(bad("`model` must not be empty", "model")),
        Some(_) => Err(bad("`model` must be a string", "model")),
        None => Err(bad("`model` is required", "model")),
    }
}

/// Largest `max_tokens` / `max_completion_tokens` a chat request may ask for (2^31).
pub const MAX_OUTPUT_TOKENS: u64 = 1 << 31;

/// Validates a chat body: `model` a non-empty string, `messages` a non-empty array of objects,
/// `stream` a boolean or null, `stream_options` an object or null with a boolean
/// `include_usage`; then the sampling and message fields ([`crate::validate::chat`]).
pub fn parse_chat(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let body = parse_object(bytes)?;
    let model = model_of(&body)?;
    match body.get("messages") {
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad("`messages` must contain at least one message", "messages"));
        }
        Some(Value::Array(items)) => {
            if let Some(i) = items.iter().position(|m| !m.is_object()) {
                return Err(bad(format!("`messages[{i}]` must be an object"), &format!("messages[{i}]")));
            }
        }
        Some(_) => return Err(bad("`messages` must be an array", "messages")),
        None => return Err(bad("`messages` is required", "messages")),
    }
    // L4: an absurd output cap would reach the limits estimate as a huge reservation (a 429
    // "retry in hours") instead of the 400 it is.
    for field in ["max_tokens", "max_completion_tokens"] {
        if body.get(field).and_then(Value::as_f64).is_some_and(|n| n > MAX_OUTPUT_TOKENS as f64) {
            return Err(bad(format!("`{field}` must be at most {MAX_OUTPUT_TOKENS}"), field));
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`stream` must be a boolean", "stream")),
    };
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("`stream_options.include_usage` must be a boolean", "stream_options.include_usage")),
        },
        Some(_) => return Err(bad("`stream_options` must be an object", "stream_options")),
    };
    crate::validate::chat(&body)?;
    Ok(ChatRequest { model, stream, include_usage, body })
}

/// Validates an embeddings body: `model` a non-empty string, `input` a string or an array;
/// then [`crate::validate::embeddings`].
pub fn parse_embeddings(bytes: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    let body = parse_object(bytes)?;
    let model = model_of(&body)?;
    match body.get("input") {
        Some(Value::String(_) | Value::Array(_)) => {}
        Some(_) => return Err(bad("`input` must be a string or an array", "input")),
        None => return Err(bad("`input` is required", "input")),
    }
    crate::validate::embeddings(&body)?;
    Ok(EmbeddingsRequest { model, body })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn l4_absurd_max_tokens_is_a_400_naming_the_field() {
        for field in ["max_tokens", "max_completion_tokens"] {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"{field}":9223372036854775807}}"#);
            let e = parse_chat(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert_eq!(e.param.as_deref(), Some(field));
            let ok = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"{field}":4096}}"#);
            assert!(parse_chat(ok.as_bytes()).is_ok());
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = parse_chat(b"{\"model\": \"m\",, }").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        assert!(!e.message.contains("at line 1 column 15 at line"), "{}", e.message);
    }

    #[test]
    fn fields_are_named() {
        let p = |b: &str| parse_chat(b.as_bytes()).unwrap_err().param;
        assert_eq!(p(r#"{"messages":[{}]}"#).as_deref(), Some("model"));
        assert_eq!(p(r#"{"model":3,"messages":[{}]}"#).as_deref(), Some("model"));
        assert_eq!(p(r#"{"model":"m","messages":"hi"}"#).as_deref(), Some("messages"));
        assert_eq!(p(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(p(r#"{"model":"m","messages":[1]}"#).as_deref(), Some("messages[0]"));
        assert_eq!(p(r#"{"model":"m","messages":[{}],"stream":"yes"}"#).as_deref(), Some("stream"));
        assert_eq!(
            p(r#"{"model":"m","messages":[{}],"stream_options":{"include_usage":1}}"#).as_deref(),
            Some("stream_options.include_usage")
        );
        assert_eq!(parse_embeddings(br#"{"model":"m"}"#).unwrap_err().param.as_deref(), Some("input"));
        assert!(parse_chat(b"[]").is_err());
        assert!(parse_chat(b"  ").is_err());
    }

    #[test]
    fn valid_chat_keeps_unknown_fields() {
        let r = parse_chat(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"x_custom":1}"#).unwrap();
        assert!(r.stream && r.include_usage);
        assert_eq!(r.body["x_custom"], 1);
    }

    #[tokio::test]
    async fn body_limit_is_enforced_while_reading() {
        let body = Body::from(vec![b'a'; 100]);
        assert_eq!(read_body(body, 10).await.unwrap_err().code, ErrorCode::PayloadTooLarge);
        assert_eq!(read_body(Body::from("abc"), 10).await.unwrap().len(), 3);
    }
}
