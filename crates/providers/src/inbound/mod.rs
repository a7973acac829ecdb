//! Inbound dialects: client requests in a provider's own format (Anthropic Messages, Gemini
//! `generateContent`) turned into the gateway's internal OpenAI chat shape, and the internal
//! OpenAI answers (objects and `chat.completion.chunk` streams) turned back into that format.
//!
//! Everything here is pure (no I/O): the gateway reads the body, calls `parse_request`, routes
//! the OpenAI-shaped body like any chat call, then maps the answer with `from_openai_response`
//! or a stream translator. Mapping tables: `wire-formats.md` §7.2–§7.8 (Anthropic) and §3, §7.5–
//! §7.8 (Gemini).

pub mod anthropic;
pub mod gemini;

use gatehouse_types::{ApiError, ErrorCode, Usage};
use gatehouse_types::openai::WireUsage;
use serde_json::{Map, Value};

/// A 400 `invalid_request` naming the client's field at fault.
pub(crate) fn bad(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

/// The normalised usage of an OpenAI `usage` object (absent or malformed → zeros).
pub(crate) fn usage_of(v: Option<&Value>) -> Usage {
    v.and_then(|u| serde_json::from_value::<WireUsage>(u.clone()).ok()).map(|u| u.to_usage()).unwrap_or_default()
}

/// A tool call collected from an OpenAI message or stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Parses tool-call `arguments` (a JSON text) into an object: `""` → `{}`; anything that is not
/// a JSON object is an upstream fault (502), never silently dropped.
pub(crate) fn arguments_object(arguments: &str) -> Result<Map<String, Value>, ApiError> {
    if arguments.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::new(
            ErrorCode::UpstreamError,
            "the upstream provider returned tool-call arguments that are not a JSON object",
        )),
    }
}

/// The OpenAI `tool_calls` of a `chat.completion` message.
pub(crate) fn message_tool_calls(message: &Value) -> Vec<ToolCall> {
    let Some(calls) = message.get("tool_calls").and_then(Value::as_array) else { return Vec::new() };
    calls
        .iter()
        .map(|c| ToolCall {
            id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            name: c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            arguments: c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
        .collect()
}

/// The text of an OpenAI message `content` (string, or the `text` parts of an array).
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// Reasoning text of an OpenAI message or delta (`reasoning_content`, DeepSeek/vLLM; or
/// `reasoning`, OpenRouter/Ollama).
pub(crate) fn reasoning_text(v: &Value) -> Option<&str> {
    v.get("reasoning_content").or_else(|| v.get("reasoning")).and_then(Value::as_str).filter(|s| !s.is_empty())
}
