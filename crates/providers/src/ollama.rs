//! Ollama's native `POST /api/chat` (`wire-formats.md` §4.4): OpenAI chat request → Ollama
//! request, the single JSON answer → `chat.completion`, the NDJSON stream → chunks.
//!
//! Tool calls: Ollama's `arguments` is an object (→ JSON string); its optional `id` is kept,
//! else an id is synthesised (with the function name embedded, like Gemini's, §7.9). Tool
//! results are sent with `tool_name` (resolved from the assistant turn, or the id) and
//! `tool_call_id`. Reasoning: `reasoning_effort` → `think` (`none` → `false`), `message.thinking`
//! → `reasoning_content`. Usage: `prompt_eval_count` / `eval_count` (no cache or reasoning
//! split is reported by Ollama).

use gatehouse_types::Usage;
use gatehouse_types::openai::{CHAT_COMPLETION, WireUsage};
use serde_json::{Map, Value, json};

use crate::common::{ChunkWriter, arguments_object, image_url, max_tokens, parse_data_url, reject, stop_list, text_only};
use crate::sse::SseEvent;
use crate::stream::{Out, StreamMapper};
use crate::{StreamEvent, UpstreamError};

fn user_message(content: Option<&Value>, param: &str) -> Result<Value, UpstreamError> {
    let mut text = String::new();
    let mut images = Vec::new();
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                let Value::Object(part) = p else { return Err(reject(pp, "content parts must be objects")) };
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(part.get("text").and_then(Value::as_str).ok_or_else(|| reject(format!("{pp}.text"), "text must be a string"))?);
                    }
                    Some("image_url") => {
                        let url = image_url(part, &pp)?;
                        let (_, data) = parse_data_url(&url)
                            .ok_or_else(|| reject(format!("{pp}.image_url.url"), "this model's provider takes images as base64 data URLs only"))?;
                        images.push(Value::from(data));
                    }
                    Some(other) => return Err(reject(format!("{pp}.type"), format!("content part type {other} is not supported by this model's provider"))),
                    None => return Err(reject(format!("{pp}.type"), "content part type missing")),
                }
            }
        }
        Some(_) => return Err(reject(param, "content must be a string or an array of parts")),
    }
    let mut m = json!({"role": "user", "content": text});
    if !images.is_empty() {
        m["images"] = Value::Array(images);
    }
    Ok(m)
}

/// The `/api/chat` body (§4.4). `stream` is always sent explicitly (Ollama defaults to
/// streaming). Dropped: `n` (> 1 rejected), `logit_bias`, `logprobs`, `tool_choice`,
/// `parallel_tool_calls`, `user`.
pub(crate) fn build_request(request: &Map<String, Value>, upstream_model: &str, stream: bool) -> Result<Map<String, Value>, UpstreamError> {
    if request.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(reject("n", "n > 1 is not supported by this model's provider"));
    }
    let messages = request.get("messages").and_then(Value::as_array).ok_or_else(|| reject("messages", "messages must be an array"))?;
    let mut names: Vec<(&str, &str)> = Vec::new();
    let mut out_msgs = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let content = m.get("content");
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => out_msgs.push(json!({"role": "system", "content": text_only(content, &format!("{param}.content"))?})),
            Some("user") => out_msgs.push(user_message(content, &format!("{param}.content"))?),
            Some("assistant") => {
                let mut msg = json!({"role": "assistant", "content": text_only(content, &format!("{param}.content"))?});
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    let mut out = Vec::new();
                    for (k, c) in calls.iter().enumerate() {
                        let p = format!("{param}.tool_calls[{k}]");
                        let f = c.get("function").ok_or_else(|| reject(format!("{p}.function"), "only function tool calls are supported"))?;
                        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("{p}.function.name"), "function name must be a string"))?;
                        if let Some(id) = c.get("id").and_then(Value::as_str) {
                            names.push((id, name));
                        }
                        out.push(json!({"function": {"name": name, "arguments": arguments_object(f, &p)?}}));
                    }
                    if !out.is_empty() {
                        msg["tool_calls"] = Value::Array(out);
                    }
                }
                out_msgs.push(msg);
            }
            Some("tool") => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = names.iter().rev().find(|(i, _)| *i == id).map(|(_, n)| (*n).to_string()).or_else(|| embedded_name(id));
                let mut msg = json!({"role": "tool", "content": text_only(content, &format!("{param}.content"))?});
                if let Some(n) = name {
                    msg["tool_name"] = Value::from(n);
                }
                if !id.is_empty() {
                    msg["tool_call_id"] = Value::from(id);
                }
                out_msgs.push(msg);
            }
            Some(other) => return Err(reject(format!("{param}.role"), format!("role {other} is not supported by this model's provider"))),
            None => return Err(reject(format!("{param}.role"), "role missing")),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));
    out.insert("messages".into(), Value::Array(out_msgs));
    out.insert("stream".into(), Value::Bool(stream));
    if let Some(tools) = request.get("tools").filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        out.insert("tools".into(), tools.clone());
    }
    let mut options = Map::new();
    if let Some(n) = max_tokens(request)? {
        options.insert("num_predict".into(), Value::from(n));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"), ("presence_penalty", "presence_penalty"), ("frequency_penalty", "frequency_penalty")] {
        if let Some(v) = request.get(from).filter(|v| !v.is_null()) {
            if !v.is_number() {
                return Err(reject(from, format!("{from} must be a number")));
            }
            options.insert(to.into(), v.clone());
        }
    }
    let stop = stop_list(request)?;
    if !stop.is_empty() {
        options.insert("stop".into(), json!(stop));
    }
    if !options.is_empty() {
        out.insert("options".into(), Value::Object(options));
    }
    match request.get("response_format").and_then(|r| r.get("type")).and_then(Value::as_str) {
        Some("json_object") => {
            out.insert("format".into(), Value::from("json"));
        }
        Some("json_schema") => {
            let schema = request.get("response_format").and_then(|r| r.pointer("/json_schema/schema")).cloned().unwrap_or_else(|| Value::from("json"));
            out.insert("format".into(), schema);
        }
        _ => {}
    }
    if let Some(effort) = request.get("reasoning_effort").and_then(Value::as_str) {
        let think = match effort {
            "none" => Value::Bool(false),
            "minimal" | "low" => Value::from("low"),
            "medium" => Value::from("medium"),
            _ => Value::from("high"),
        };
        out.insert("think".into(), think);
    }
    Ok(out)
}

fn embedded_name(id: &str) -> Option<String> {
    let rest = id.strip_prefix("call_")?;
    let (_, name) = rest.split_once('_')?;
    (!name.is_empty()).then(|| name.to_string())
}

fn tool_calls_of(message: &Value) -> Vec<(String, String, String)> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_string();
                    let args = match c.pointer("/function/arguments") {
                        Some(Value::String(s)) => s.clone(),
                        Some(v @ Value::Object(_)) => v.to_string(),
                        _ => "{}".to_string(),
                    };
                    let id = c.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map_or_else(|| crate::gemini::synth_id(&name), str::to_owned);
                    (id, name, args)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn usage_of(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage { prompt_tokens: n("prompt_eval_count"), completion_tokens: n("eval_count"), ..Usage::default() }
}

fn finish(done_reason: Option<&str>, has_tools: bool) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if has_tools => "tool_calls",
        _ => "stop",
    }
}

fn new_completion_id() -> String {
    format!("chatcmpl-{}", gatehouse_types::new_id().simple())
}

/// The single `/api/chat` answer → `chat.completion`.
pub(crate) fn parse_response(bytes: &[u8], upstream_model: &str) -> Result<(Value, Usage), UpstreamError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| UpstreamError::Protocol(format!("chat body is not JSON: {e}")))?;
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(UpstreamError::mid_stream(bytes));
    }
    let message = v.get("message").ok_or_else(|| UpstreamError::Protocol("chat body has no message".into()))?;
    let calls = tool_calls_of(message);
    let text = message.get("content").and_then(Value::as_str).unwrap_or_default();
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::from(text) };
    let mut msg = json!({"role": "assistant", "content": content, "refusal": null});
    if let Some(t) = message.get("thinking").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        msg["reasoning_content"] = Value::from(t);
    }
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(
            calls.iter().map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})).collect(),
        );
    }
    let usage = usage_of(&v);
    let body = json!({
        "id": new_completion_id(),
        "object": CHAT_COMPLETION,
        "created": crate::anthropic::unix_now(),
        "model": v.get("model").and_then(Value::as_str).unwrap_or(upstream_model),
        "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": finish(v.get("done_reason").and_then(Value::as_str), !calls.is_empty())}],
        "usage": WireUsage::from_usage(&usage),
    });
    Ok((body, usage))
}

/// NDJSON lines → chunks; complete at the `"done": true` line; an `{"error": …}` line is a
/// mid-stream error.
pub(crate) struct OllamaStream {
    w: ChunkWriter,
    started: bool,
    tools: usize,
}

impl OllamaStream {
    pub(crate) fn new(upstream_model: &str, include_usage: bool) -> Self {
        Self {
            w: ChunkWriter { id: new_completion_id(), created: crate::anthropic::unix_now(), model: upstream_model.to_string(), include_usage },
            started: false,
            tools: 0,
        }
    }

    fn emit(out: &mut Out, data: bytes::Bytes) {
        out.push_back(Ok(StreamEvent { data: Some(data), usage: None }));
    }
}

impl StreamMapper for OllamaStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool {
        let v: Value = match serde_json::from_str(&event.data) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                out.push_back(Err(UpstreamError::Protocol("stream line is not a JSON object".into())));
                return true;
            }
            Err(e) => {
                out.push_back(Err(UpstreamError::Protocol(format!("stream line is not JSON: {e}"))));
                return true;
            }
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            out.push_back(Err(UpstreamError::mid_stream(event.data.as_bytes())));
            return true;
        }
        if !self.started {
            self.started = true;
            Self::emit(out, self.w.delta(0, json!({"role": "assistant", "content": ""}), None));
        }
        if let Some(message) = v.get("message") {
            if let Some(t) = message.get("thinking").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Self::emit(out, self.w.delta(0, json!({"reasoning_content": t}), None));
            }
            if let Some(t) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Self::emit(out, self.w.delta(0, json!({"content": t}), None));
            }
            for (id, name, args) in tool_calls_of(message) {
                let call = json!({"index": self.tools, "id": id, "type": "function", "function": {"name": name, "arguments": args}});
                self.tools += 1;
                Self::emit(out, self.w.delta(0, json!({"tool_calls": [call]}), None));
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            let usage = usage_of(&v);
            let reason = finish(v.get("done_reason").and_then(Value::as_str), self.tools > 0);
            out.push_back(Ok(StreamEvent { data: Some(self.w.delta(0, json!({}), Some(reason))), usage: Some(usage) }));
            let data = self.w.include_usage.then(|| self.w.usage(&usage));
            out.push_back(Ok(StreamEvent { data, usage: Some(usage) }));
            return true;
        }
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

    #[test]
    fn request_mapping() {
        let req = obj(json!({"model":"x","max_tokens":40,"temperature":0.2,"stop":"END","seed":3,"reasoning_effort":"none",
            "response_format":{"type":"json_object"},
            "messages":[{"role":"developer","content":"sys"},
              {"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"a\":1}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"done"}]}));
        let b = Value::Object(build_request(&req, "llama3.2", false).unwrap());
        assert_eq!(b["stream"], false);
        assert_eq!(b["messages"][0], json!({"role":"system","content":"sys"}));
        assert_eq!(b["messages"][1]["images"], json!(["iVBO"]));
        assert_eq!(b["messages"][2]["tool_calls"][0]["function"]["arguments"], json!({"a":1}));
        assert_eq!(b["messages"][3]["tool_name"], "lookup");
        assert_eq!(b["options"], json!({"num_predict":40,"temperature":0.2,"seed":3,"stop":["END"]}));
        assert_eq!(b["format"], "json");
        assert_eq!(b["think"], false);
        let bad = obj(json!({"model":"x","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}));
        assert!(matches!(build_request(&bad, "m", true), Err(UpstreamError::InvalidRequest { .. })));
    }

    #[test]
    fn response_mapping() {
        let raw = br#"{"model":"llama3.2","created_at":"2026-03-04T10:00:00Z","message":{"role":"assistant","content":"","thinking":"hm","tool_calls":[{"function":{"name":"lookup","arguments":{"a":1}}}]},"done":true,"done_reason":"stop","prompt_eval_count":31,"eval_count":22}"#;
        let (b, u) = parse_response(raw, "llama3.2").unwrap();
        assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(b["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(b["choices"][0]["message"]["reasoning_content"], "hm");
        assert_eq!(b["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], r#"{"a":1}"#);
        assert_eq!((u.prompt_tokens, u.completion_tokens), (31, 22));
        assert!(matches!(parse_response(br#"{"error":"model 'x' not found"}"#, "x"), Err(UpstreamError::MidStream { .. })));
    }
}
