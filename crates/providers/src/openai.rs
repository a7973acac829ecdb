//! OpenAI and OpenAI-compatible upstreams (`wire-formats.md` §1, §4): the request is the
//! client's body with `model` replaced; answers are already in the client's dialect, so
//! chunks pass through byte for byte and are only peeked at for usage, errors and `[DONE]`.

use bytes::Bytes;
use gatehouse_types::Usage;
use gatehouse_types::openai::WireUsage;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::sse::SseEvent;
use crate::stream::{Out, StreamMapper};
use crate::{StreamEvent, UpstreamError};

/// The upstream chat body: the client's object with `model` replaced by `upstream_model`.
/// Streams get `stream: true` and `stream_options.include_usage: true` (other
/// `stream_options` keys kept); non-streams lose a truthy `stream` and any `stream_options`.
/// Every other field is passed through untouched. Serialised exactly once.
pub(crate) fn chat_body(mut request: Map<String, Value>, upstream_model: &str, stream: bool) -> Result<Vec<u8>, UpstreamError> {
    request.insert("model".into(), Value::String(upstream_model.to_string()));
    if stream {
        request.insert("stream".into(), Value::Bool(true));
        match request.get_mut("stream_options") {
            Some(Value::Object(o)) => {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            _ => {
                let mut o = Map::new();
                o.insert("include_usage".into(), Value::Bool(true));
                request.insert("stream_options".into(), Value::Object(o));
            }
        }
    } else {
        if request.get("stream").is_some_and(|s| s.as_bool() == Some(true)) {
            request.insert("stream".into(), Value::Bool(false));
        }
        request.remove("stream_options");
    }
    serde_json::to_vec(&request).map_err(|e| UpstreamError::Protocol(format!("cannot serialise the request: {e}")))
}

/// The embeddings body: the client's object with `model` replaced.
pub(crate) fn embeddings_body(mut request: Map<String, Value>, upstream_model: &str) -> Result<Vec<u8>, UpstreamError> {
    request.insert("model".into(), Value::String(upstream_model.to_string()));
    serde_json::to_vec(&request).map_err(|e| UpstreamError::Protocol(format!("cannot serialise the request: {e}")))
}

/// Parses a non-streamed chat or embeddings body (leading whitespace and blank keep-alive lines
/// are JSON whitespace, §0.3). A 200 carrying `{"error":…}` instead of an answer is an
/// in-band error.
pub(crate) fn parse_body(bytes: &[u8], what: &str) -> Result<(Value, Usage), UpstreamError> {
    let body: Value =
        serde_json::from_slice(bytes).map_err(|e| UpstreamError::Protocol(format!("{what} body is not JSON: {e}")))?;
    let Value::Object(obj) = &body else {
        return Err(UpstreamError::Protocol(format!("{what} body is not a JSON object")));
    };
    if obj.get("error").is_some_and(|e| !e.is_null()) && !obj.contains_key("choices") && !obj.contains_key("data") {
        return Err(UpstreamError::mid_stream(bytes));
    }
    let usage = match obj.get("usage") {
        Some(u) if !u.is_null() => WireUsage::deserialize(u)
            .map_err(|e| UpstreamError::Protocol(format!("{what} usage is malformed: {e}")))?
            .to_usage(),
        _ => Usage::default(),
    };
    Ok((body, usage))
}

/// What the stream mapper reads of a chunk; everything else is skipped without allocating.
#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    x_groq: Option<GroqExtra>,
}

/// Groq reports stream usage in `x_groq.usage` (§4.3, §7.6).
#[derive(Deserialize)]
struct GroqExtra {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// Passes OpenAI chunks through, ends at `[DONE]`, hides the usage-only chunk unless the
/// client asked for it, and turns `data: {"error":…}` into [`UpstreamError::MidStream`].
pub(crate) struct OpenAiStream {
    include_usage: bool,
}

impl OpenAiStream {
    pub(crate) fn new(include_usage: bool) -> Self {
        Self { include_usage }
    }
}

impl StreamMapper for OpenAiStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool {
        let data = event.data.trim_ascii();
        if data.is_empty() {
            return false;
        }
        if data == "[DONE]" {
            return true;
        }
        let peek: ChunkPeek<'_> = match serde_json::from_str(data) {
            Ok(p) => p,
            Err(e) => {
                out.push_back(Err(UpstreamError::Protocol(format!("stream chunk is not a JSON object: {e}"))));
                return true;
            }
        };
        let is_error = peek.error.is_some_and(|e| !matches!(e.get(), "null" | "false")) || event.event == "error";
        if is_error {
            out.push_back(Err(UpstreamError::mid_stream(data.as_bytes())));
            return true;
        }
        let usage = peek.usage.or_else(|| peek.x_groq.and_then(|g| g.usage)).map(|u| u.to_usage());
        let usage_only = usage.is_some() && peek.choices.as_ref().is_none_or(Vec::is_empty);
        let data = if usage_only && !self.include_usage {
            None
        } else if data.contains(['\n', '\r']) {
            // Several `data:` lines joined: re-serialise compactly so the chunk is one line.
            match serde_json::from_str::<Value>(data).and_then(|v| serde_json::to_vec(&v)) {
                Ok(v) => Some(Bytes::from(v)),
                Err(e) => {
                    out.push_back(Err(UpstreamError::Protocol(format!("stream chunk is not JSON: {e}"))));
                    return true;
                }
            }
        } else if data.len() == event.data.len() {
            Some(Bytes::from(event.data))
        } else {
            Some(Bytes::copy_from_slice(data.as_bytes()))
        };
        out.push_back(Ok(StreamEvent { data, usage }));
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent { event: String::new(), data: data.to_string(), id: None }
    }

    #[test]
    fn chat_body_replaces_model_and_keeps_unknown_fields() {
        let req = obj(serde_json::json!({"model":"public","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"temperature":0.2}));
        let body: Value = serde_json::from_slice(&chat_body(req, "gpt-4.1", false).unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4.1");
        assert_eq!(body["x_custom"], serde_json::json!({"a":[1,2]}));
        assert_eq!(body["temperature"], 0.2);
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn stream_body_forces_include_usage() {
        let req = obj(serde_json::json!({"model":"m","messages":[],"stream_options":{"include_usage":false,"include_obfuscation":false}}));
        let body: Value = serde_json::from_slice(&chat_body(req, "u", true).unwrap()).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], serde_json::json!({"include_usage":true,"include_obfuscation":false}));
        let req = obj(serde_json::json!({"model":"m","messages":[]}));
        let body: Value = serde_json::from_slice(&chat_body(req, "u", true).unwrap()).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn non_stream_body_tolerates_leading_blank_lines() {
        let raw = b"\n\n  \r\n{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":1},\"completion_tokens_details\":{\"reasoning_tokens\":1}}}";
        let (_, u) = parse_body(raw, "chat").unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens), (3, 2, 1, 1));
        assert!(matches!(parse_body(b"not json", "chat"), Err(UpstreamError::Protocol(_))));
        assert!(matches!(parse_body(br#"{"error":{"message":"boom"}}"#, "chat"), Err(UpstreamError::MidStream { .. })));
    }

    #[test]
    fn stream_passes_chunks_and_hides_usage_chunk() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hé"}}],"usage":null}"#;
        let usage = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        for include in [false, true] {
            let mut m = OpenAiStream::new(include);
            let mut out = Out::new();
            assert!(!m.on_event(ev(chunk), &mut out));
            assert!(!m.on_event(ev(usage), &mut out));
            assert!(m.on_event(ev("[DONE]"), &mut out));
            let first = out.pop_front().unwrap().unwrap();
            assert_eq!(first.data.as_deref(), Some(chunk.as_bytes()));
            assert!(first.usage.is_none());
            let last = out.pop_front().unwrap().unwrap();
            assert_eq!(last.data.is_some(), include);
            assert_eq!(last.usage.unwrap().cached_tokens, 4);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn stream_error_and_garbage() {
        let mut m = OpenAiStream::new(false);
        let mut out = Out::new();
        assert!(m.on_event(ev(r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#), &mut out));
        match out.pop_front().unwrap() {
            Err(UpstreamError::MidStream { message, provider_code }) => {
                assert_eq!(message, "The server had an error");
                assert_eq!(provider_code.as_deref(), Some("server_error"));
            }
            other => panic!("{other:?}"),
        }
        assert!(m.on_event(ev("{not json"), &mut out));
        assert!(matches!(out.pop_front().unwrap(), Err(UpstreamError::Protocol(_))));
        // `"error": null` is not an error; an empty data event is skipped.
        assert!(!m.on_event(ev(r#"{"choices":[{"index":0,"delta":{}}],"error":null}"#), &mut out));
        assert!(!m.on_event(ev(""), &mut out));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn multi_line_data_becomes_one_line() {
        let mut m = OpenAiStream::new(false);
        let mut out = Out::new();
        m.on_event(ev("{\"choices\":[{\"index\":0,\n\"delta\":{\"content\":\"a\"}}]}"), &mut out);
        let e = out.pop_front().unwrap().unwrap();
        let d = e.data.unwrap();
        assert!(!d.contains(&b'\n'));
        let v: Value = serde_json::from_slice(&d).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], "a");
    }

    #[test]
    fn groq_usage_is_read() {
        let mut m = OpenAiStream::new(false);
        let mut out = Out::new();
        m.on_event(ev(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}}"#), &mut out);
        let e = out.pop_front().unwrap().unwrap();
        assert!(e.data.is_some());
        assert_eq!(e.usage.unwrap().prompt_tokens, 5);
    }
}
