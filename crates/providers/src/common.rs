//! Helpers shared by the adapters that build OpenAI chunks themselves (Gemini, Ollama):
//! request-field readers, data URLs and `chat.completion.chunk` serialisation.

use bytes::Bytes;
use gatehouse_types::Usage;
use gatehouse_types::openai::{CHAT_COMPLETION_CHUNK, WireUsage};
use serde_json::{Map, Value, json};

use crate::UpstreamError;

/// A §7.1 "reject": 400 naming `param`, nothing sent upstream.
pub(crate) fn reject(param: impl Into<String>, message: impl Into<String>) -> UpstreamError {
    UpstreamError::InvalidRequest { param: Some(param.into()), message: message.into() }
}

/// Refuses an upstream model (or deployment) name that would not stay one URL path segment:
/// `/` (unless `allow_slash`, for Bedrock ARNs, whose adapter percent-encodes it), `?`, `#`, `%`,
/// `\\`, `..`, control characters and whitespace. A 400 naming `model`; nothing is sent (H1).
pub(crate) fn check_path_model(model: &str, allow_slash: bool) -> Result<(), UpstreamError> {
    let bad_char = model.chars().any(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%' | '\\') || (c == '/' && !allow_slash)
    });
    if model.is_empty() || bad_char || model.contains("..") || model == "." {
        return Err(reject("model", "the model name contains characters that are not allowed in an upstream URL path (/ ? # % \\ .. whitespace or control characters)"));
    }
    Ok(())
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so `s` stays one path segment.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut enc = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            enc.push(char::from(b));
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    enc
}

/// Splits `data:<mime>;base64,<payload>` into `(mime, payload)`.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((mime, payload))
}

/// `image_url.url` of an OpenAI `image_url` part (object or bare string form).
pub(crate) fn image_url(part: &Map<String, Value>, param: &str) -> Result<String, UpstreamError> {
    match part.get("image_url") {
        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str).map(str::to_owned),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .ok_or_else(|| reject(format!("{param}.image_url.url"), "image_url.url must be a string"))
}

/// `max_completion_tokens` ?? `max_tokens`, as a positive integer.
pub(crate) fn max_tokens(request: &Map<String, Value>) -> Result<Option<u64>, UpstreamError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match request.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => return v.as_u64().filter(|n| *n > 0).map(Some).ok_or_else(|| reject(key, format!("{key} must be a positive integer"))),
        }
    }
    Ok(None)
}

/// `stop` as a list (string or array of strings).
pub(crate) fn stop_list(request: &Map<String, Value>) -> Result<Vec<String>, UpstreamError> {
    match request.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| reject("stop", "stop must be a string or an array of strings")))
            .collect(),
        Some(_) => Err(reject("stop", "stop must be a string or an array of strings")),
    }
}

/// Text of a message `content` that must be text only (string or `text` parts, joined).
pub(crate) fn text_only(content: Option<&Value>, param: &str) -> Result<String, UpstreamError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                let t = match p.get("type").and_then(Value::as_str) {
                    Some("text") => p.get("text").and_then(Value::as_str),
                    Some("refusal") => p.get("refusal").and_then(Value::as_str),
                    _ => None,
                }
                .ok_or_else(|| reject(format!("{param}[{j}]"), "only text parts are supported here"))?;
                out.push_str(t);
            }
            Ok(out)
        }
        Some(_) => Err(reject(param, "content must be a string or an array of parts")),
    }
}

/// Tool-call `function.arguments` (a JSON string, or an object) as a JSON object.
pub(crate) fn arguments_object(f: &Value, param: &str) -> Result<Value, UpstreamError> {
    let v = match f.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => {
            serde_json::from_str::<Value>(s).map_err(|_| reject(format!("{param}.function.arguments"), "function arguments are not valid JSON"))?
        }
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(reject(format!("{param}.function.arguments"), "function arguments must be a JSON string")),
    };
    if v.is_object() { Ok(v) } else { Err(reject(format!("{param}.function.arguments"), "function arguments must encode a JSON object")) }
}

/// Builds the OpenAI chunks of one streamed answer: fixed `id`/`created`/`model`, `usage: null`
/// on content chunks when the client asked for usage, and the final usage-only chunk.
pub(crate) struct ChunkWriter {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) model: String,
    pub(crate) include_usage: bool,
}

impl ChunkWriter {
    /// One chunk with `choices` (an array of `{index, delta, logprobs, finish_reason}`).
    pub(crate) fn chunk(&self, choices: Value) -> Bytes {
        let mut c = json!({
            "id": self.id,
            "object": CHAT_COMPLETION_CHUNK,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        Bytes::from(serde_json::to_vec(&c).unwrap_or_default())
    }

    /// One chunk with a single choice `index` carrying `delta` and `finish_reason`.
    pub(crate) fn delta(&self, index: u64, delta: Value, finish_reason: Option<&str>) -> Bytes {
        self.chunk(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]))
    }

    /// The usage-only chunk (`choices: []`).
    pub(crate) fn usage(&self, usage: &Usage) -> Bytes {
        let c = json!({
            "id": self.id,
            "object": CHAT_COMPLETION_CHUNK,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": WireUsage::from_usage(usage),
        });
        Bytes::from(serde_json::to_vec(&c).unwrap_or_default())
    }
}
