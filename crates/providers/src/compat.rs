//! The OpenAI-compatible kinds and their quirks (`wire-formats.md` §4, §5): request fix-ups
//! before the body goes out, response/chunk fix-ups on the way back, Azure URLs.
//!
//! | Kind | Request | Response |
//! |---|---|---|
//! | OpenAI, Azure | as sent | as received |
//! | Mistral | `max_completion_tokens`→`max_tokens`, `seed`→`random_seed`, `developer`→`system`, tool-call ids mapped to 9 base62 characters ([`mistral_id`]), no `stream_options`/`logprobs`/`top_logprobs`/`logit_bias`/`user` | content chunk arrays flattened (`thinking` → `reasoning_content`), `model_length`→`length`, `error` → upstream error |
//! | DeepSeek | `max_completion_tokens`→`max_tokens`, `developer`→`system`; `reasoning_content` on assistant messages passes through (tool loops in thinking mode need it) | `insufficient_system_resource` → upstream error; cache-hit usage |
//! | Groq | `logprobs`, `top_logprobs`, `logit_bias`, `messages[].name` removed, `n > 1` rejected, `developer`→`system` | `x_groq.usage` |
//! | vLLM, OpenRouter, Together, Fireworks, xAI, generic | `developer` kept except vLLM (→ `system`) | `reasoning` → `reasoning_content` |
//!
//! Every kind: reasoning text is returned in `reasoning_content` (message and delta), the one
//! documented field; chunks with empty `choices` and no usage (Azure content-filter annotations)
//! are not forwarded.

use bytes::Bytes;
use gatehouse_types::Usage;
use serde_json::{Map, Value};

use crate::common::reject;
use crate::openai::OpenAiStream;
use crate::sse::SseEvent;
use crate::stream::{Out, StreamMapper};
use crate::{ProviderKind, UpstreamError};

/// `api-version` used with Azure's deployment-scoped URLs (the GA version of §5). Azure's
/// `/openai/v1` base URLs need none.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// Azure URL for `path` (`/chat/completions`, `/embeddings`): a base ending in `/openai/v1` is
/// used as is (the deployment goes in `model`); otherwise
/// `{resource}/openai/deployments/{deployment}{path}?api-version=…` (a base that ends in
/// `/openai` is accepted too).
pub fn azure_endpoint(base: &str, deployment: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/openai/v1") || base.ends_with("/v1") {
        return format!("{base}{path}");
    }
    let base = base.strip_suffix("/openai").unwrap_or(base);
    // Percent-encode everything but RFC 3986 unreserved characters: a deployment name stays one
    // path segment.
    let mut enc = String::with_capacity(deployment.len());
    for b in deployment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            enc.push(char::from(b));
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    let deployment = enc;
    format!("{base}/openai/deployments/{deployment}{path}?api-version={AZURE_API_VERSION}")
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A Mistral-valid tool-call id (`^[a-zA-Z0-9]{9}$`, §4.1) for any id: valid ids are kept,
/// others are hashed (FNV-1a 64) to 9 base62 characters, so the assistant's call and the
/// matching `tool` message map to the same value in every request.
pub fn mistral_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let c = BASE62[(h % 62) as usize];
            h /= 62;
            char::from(c)
        })
        .collect()
}

fn rename(o: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = o.remove(from)
        && !o.contains_key(to)
    {
        o.insert(to.into(), v);
    }
}

/// The request body for an OpenAI-compatible `kind` (see the module table), with `model`
/// replaced and, when streaming, `stream_options.include_usage` forced (except Mistral, which
/// always reports usage and rejects `stream_options`).
pub(crate) fn chat_body(kind: ProviderKind, mut request: Map<String, Value>, upstream_model: &str, stream: bool) -> Result<Vec<u8>, UpstreamError> {
    match kind {
        ProviderKind::Mistral => {
            rename(&mut request, "max_completion_tokens", "max_tokens");
            rename(&mut request, "seed", "random_seed");
            for k in ["logprobs", "top_logprobs", "logit_bias", "user", "store", "metadata", "service_tier"] {
                request.remove(k);
            }
        }
        ProviderKind::DeepSeek => rename(&mut request, "max_completion_tokens", "max_tokens"),
        ProviderKind::Groq => {
            if request.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
                return Err(reject("n", "n > 1 is not supported by this model's provider"));
            }
            for k in ["logprobs", "top_logprobs", "logit_bias"] {
                request.remove(k);
            }
        }
        _ => {}
    }
    let system_for_developer = matches!(kind, ProviderKind::Mistral | ProviderKind::DeepSeek | ProviderKind::Groq | ProviderKind::Vllm);
    if let Some(Value::Array(messages)) = request.get_mut("messages") {
        for m in messages.iter_mut() {
            let Value::Object(m) = m else { continue };
            // Anthropic's thinking blocks (a round trip through `anthropic`): no other kind
            // knows the field, and OpenAI refuses unknown message fields.
            m.remove(crate::anthropic::THINKING_BLOCKS);
            if system_for_developer && m.get("role").and_then(Value::as_str) == Some("developer") {
                m.insert("role".into(), Value::from("system"));
            }
            if kind == ProviderKind::Groq {
                m.remove("name");
            }
            if kind == ProviderKind::Mistral {
                if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                    for c in calls.iter_mut() {
                        if let Some(Value::String(id)) = c.get_mut("id") {
                            *id = mistral_id(id);
                        }
                    }
                }
                if let Some(Value::String(id)) = m.get_mut("tool_call_id") {
                    *id = mistral_id(id);
                }
            }
        }
    }
    let mut body = crate::openai::chat_body(request, upstream_model, stream)?;
    if kind == ProviderKind::Mistral && stream {
        // Mistral always sends usage on its last chunk and does not accept `stream_options`.
        let mut v: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        v.remove("stream_options");
        body = serde_json::to_vec(&v).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    }
    Ok(body)
}

/// Mistral content may be an array of chunks: text chunks are joined into `content`, `thinking`
/// chunks into `reasoning_content`.
fn flatten_content(o: &mut Map<String, Value>) {
    let Some(Value::Array(parts)) = o.get("content") else { return };
    let mut text = String::new();
    let mut thinking = String::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(p.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("thinking") => {
                let t = p.get("thinking");
                match t {
                    Some(Value::String(s)) => thinking.push_str(s),
                    Some(Value::Array(inner)) => {
                        for i in inner {
                            thinking.push_str(i.get("text").and_then(Value::as_str).unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    o.insert("content".into(), Value::from(text));
    if !thinking.is_empty() && !o.contains_key("reasoning_content") {
        o.insert("reasoning_content".into(), Value::from(thinking));
    }
}

/// Fixes one message or delta object: `reasoning` → `reasoning_content`, content arrays.
fn fix_message(o: &mut Map<String, Value>) {
    if o.get("reasoning").is_some_and(Value::is_string) {
        rename(o, "reasoning", "reasoning_content");
    }
    flatten_content(o);
}

/// Fixes the choices of a response or chunk in place; `Err` for a finish reason that means
/// the upstream failed (Mistral `error`, DeepSeek `insufficient_system_resource`).
fn fix_choices(v: &mut Value, key: &str) -> Result<(), UpstreamError> {
    let Some(Value::Array(choices)) = v.get_mut("choices") else { return Ok(()) };
    for c in choices {
        let Value::Object(c) = c else { continue };
        if let Some(Value::Object(m)) = c.get_mut(key) {
            fix_message(m);
        }
        match c.get("finish_reason").and_then(Value::as_str) {
            Some("model_length") => {
                c.insert("finish_reason".into(), Value::from("length"));
            }
            Some(r @ ("error" | "insufficient_system_resource")) => {
                return Err(UpstreamError::MidStream {
                    provider_code: Some(r.to_string()),
                    message: "the upstream provider stopped generating because of an internal error".to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a chunk/response may need [`fix_choices`] (cheap textual pre-check so that plain
/// chunks pass through unparsed).
fn needs_fix(data: &[u8]) -> bool {
    let has = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    has(b"\"reasoning\"") || has(b"\"content\":[") || has(b"\"content\": [") || has(b"model_length") || has(b"\"error\"") || has(b"insufficient_system_resource")
}

/// A non-streamed chat body of an OpenAI-compatible `kind`, fixed up (module table).
pub(crate) fn parse_response(_kind: ProviderKind, bytes: &[u8]) -> Result<(Value, Usage), UpstreamError> {
    let (mut body, usage) = crate::openai::parse_body(bytes, "chat")?;
    fix_choices(&mut body, "message")?;
    Ok((body, usage))
}

/// [`OpenAiStream`] plus the chunk fix-ups of the module table.
pub(crate) struct CompatStream {
    inner: OpenAiStream,
}

impl CompatStream {
    pub(crate) fn new(_kind: ProviderKind, include_usage: bool) -> Self {
        Self { inner: OpenAiStream::new(include_usage) }
    }
}

/// Whether a chunk has `choices: []` and no usage (an annotation-only chunk).
fn is_annotation_only(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        usage: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Peek>(data).is_ok_and(|p| p.choices.is_some_and(|c| c.is_empty()) && p.usage.is_none())
}

impl StreamMapper for CompatStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool {
        let before = out.len();
        let done = self.inner.on_event(event, out);
        let new: Vec<_> = out.drain(before..).collect();
        for item in new {
            let mut ev = match item {
                Ok(ev) => ev,
                Err(e) => {
                    out.push_back(Err(e));
                    continue;
                }
            };
            if let Some(data) = &ev.data {
                if is_annotation_only(data) {
                    ev.data = None;
                } else if needs_fix(data)
                    && let Ok(mut v) = serde_json::from_slice::<Value>(data)
                {
                    if let Err(e) = fix_choices(&mut v, "delta") {
                        out.push_back(Err(e));
                        return true;
                    }
                    if let Ok(bytes) = serde_json::to_vec(&v) {
                        ev.data = Some(Bytes::from(bytes));
                    }
                }
            }
            // Drop events that became empty and carry no usage.
            if ev.data.is_some() || ev.usage.is_some() {
                out.push_back(Ok(ev));
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn mistral_ids_are_nine_base62_and_stable() {
        for id in ["call_abc123", "toolu_01A09q90qw90lq917835lq9", "x", ""] {
            let m = mistral_id(id);
            assert_eq!(m.len(), 9);
            assert!(m.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(m, mistral_id(id));
        }
        assert_eq!(mistral_id("D681PevKs"), "D681PevKs");
        assert_ne!(mistral_id("call_1"), mistral_id("call_2"));
    }

    #[test]
    fn mistral_request_fixups() {
        let req = obj(json!({"model":"m","seed":7,"max_completion_tokens":9,"logprobs":true,"messages":[
            {"role":"developer","content":"be brief"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_abc","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"call_abc","content":"ok"}]}));
        let body: Value = serde_json::from_slice(&chat_body(ProviderKind::Mistral, req, "mistral-large-latest", true).unwrap()).unwrap();
        assert_eq!(body["random_seed"], 7);
        assert_eq!(body["max_tokens"], 9);
        assert!(body.get("seed").is_none() && body.get("logprobs").is_none() && body.get("stream_options").is_none());
        assert_eq!(body["messages"][0]["role"], "system");
        let id = body["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
        assert_eq!(id.len(), 9);
        assert_eq!(body["messages"][2]["tool_call_id"], id);
    }

    #[test]
    fn groq_strips_and_rejects() {
        let req = obj(json!({"model":"m","logprobs":true,"logit_bias":{},"messages":[{"role":"user","name":"bob","content":"hi"}]}));
        let body: Value = serde_json::from_slice(&chat_body(ProviderKind::Groq, req, "llama", false).unwrap()).unwrap();
        assert!(body.get("logprobs").is_none() && body.get("logit_bias").is_none());
        assert!(body["messages"][0].get("name").is_none());
        let req = obj(json!({"model":"m","n":2,"messages":[]}));
        assert!(matches!(chat_body(ProviderKind::Groq, req, "llama", false), Err(UpstreamError::InvalidRequest { .. })));
    }

    #[test]
    fn deepseek_keeps_reasoning_content_on_assistant_turns() {
        let req = obj(json!({"model":"m","messages":[{"role":"assistant","content":"","reasoning_content":"thought","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}));
        let body: Value = serde_json::from_slice(&chat_body(ProviderKind::DeepSeek, req, "deepseek-reasoner", false).unwrap()).unwrap();
        assert_eq!(body["messages"][0]["reasoning_content"], "thought");
        assert_eq!(body["messages"][0]["tool_calls"][0]["id"], "call_1");
    }

    #[test]
    fn azure_urls() {
        assert_eq!(
            azure_endpoint("https://r.openai.azure.com", "gpt-4o", "/chat/completions"),
            format!("https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version={AZURE_API_VERSION}")
        );
        assert_eq!(azure_endpoint("https://r.openai.azure.com/openai/", "d", "/embeddings"), format!("https://r.openai.azure.com/openai/deployments/d/embeddings?api-version={AZURE_API_VERSION}"));
        assert_eq!(azure_endpoint("https://r.openai.azure.com/openai/v1", "gpt-4o", "/chat/completions"), "https://r.openai.azure.com/openai/v1/chat/completions");
        // A deployment name cannot inject path segments or a query.
        assert_eq!(azure_endpoint("https://r", "../x?y", "/chat/completions"), format!("https://r/openai/deployments/..%2Fx%3Fy/chat/completions?api-version={AZURE_API_VERSION}"));
    }

    #[test]
    fn response_fixups() {
        let raw = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"thinking","thinking":[{"type":"text","text":"hmm"}]},{"type":"text","text":"Hi"}]},"finish_reason":"model_length"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        let (body, _) = parse_response(ProviderKind::Mistral, raw).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Hi");
        assert_eq!(body["choices"][0]["message"]["reasoning_content"], "hmm");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        let raw = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a","reasoning":"r"},"finish_reason":"stop"}]}"#;
        let (body, _) = parse_response(ProviderKind::Vllm, raw).unwrap();
        assert_eq!(body["choices"][0]["message"]["reasoning_content"], "r");
        let raw = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"insufficient_system_resource"}]}"#;
        assert!(matches!(parse_response(ProviderKind::DeepSeek, raw), Err(UpstreamError::MidStream { .. })));
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent { event: String::new(), data: data.to_string(), id: None }
    }

    #[test]
    fn stream_fixups_and_azure_filter_chunks() {
        let mut m = CompatStream::new(ProviderKind::Azure, false);
        let mut out = Out::new();
        m.on_event(ev(r#"{"id":"","object":"","created":0,"model":"","choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#), &mut out);
        assert!(out.is_empty(), "annotation-only chunk is not forwarded");
        m.on_event(ev(r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning":"think"}}]}"#), &mut out);
        let d: Value = serde_json::from_slice(out.pop_front().unwrap().unwrap().data.as_deref().unwrap()).unwrap();
        assert_eq!(d["choices"][0]["delta"]["reasoning_content"], "think");
        m.on_event(ev(r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"error"}]}"#), &mut out);
        assert!(matches!(out.pop_front().unwrap(), Err(UpstreamError::MidStream { .. })));
    }
}
