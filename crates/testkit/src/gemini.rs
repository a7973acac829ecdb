//! Gemini dialect: `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (also under `/v1/models/…`), `wire-formats.md` §3.
//!
//! Streams are framed with CRLF (as Google does), carry `usageMetadata` on every chunk, send
//! `functionCall` parts whole (the first with a `thoughtSignature` and no `id`, the second with
//! an `id`), and end by closing the body after the chunk with `finishReason` (no terminator).
//! `finish=blocked` answers a blocked prompt (`promptFeedback.blockReason`, no candidates);
//! other `finish=` values are upper-cased Gemini reasons (OpenAI names mapped: `length` →
//! `MAX_TOKENS`, `content_filter` → `SAFETY`). `error-mid-stream` writes a bare (not
//! `data:`-framed) pretty-printed JSON error object, as Gemini does. `reasoning` adds
//! `thoughtsTokenCount` and, when the request asked for `includeThoughts`, a thought part.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use gatehouse_types::Usage;
use serde_json::{Value, json};

use crate::common::{LastTurn, ToolCall, new_id, reply_text, split_text, tokens, tool_calls};
use crate::respond::{self, Dialect, Prepared};
use crate::scenario::{Failure, ToolMode};
use crate::state::MockState;
use crate::stream::{HandlerGuard, SseScript, Step};

/// Signature the mock attaches to its first function call.
pub const MOCK_THOUGHT_SIGNATURE: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";

fn parts_text(c: &Value) -> String {
    c.get("parts")
        .and_then(Value::as_array)
        .map(|parts| parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn last_turn(contents: &[Value]) -> LastTurn {
    if let Some(last) = contents.last()
        && let Some(fr) = last
            .get("parts")
            .and_then(Value::as_array)
            .and_then(|p| p.iter().rev().find_map(|p| p.get("functionResponse")))
    {
        let out = fr.pointer("/response/output").or_else(|| fr.get("response")).cloned().unwrap_or(Value::Null);
        let text = match out {
            Value::String(s) => s,
            other => other.to_string(),
        };
        return LastTurn::ToolResult(text);
    }
    let text = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str) == Some("user"))
        .map(parts_text)
        .unwrap_or_default();
    LastTurn::User(text)
}

fn request_tools(body: &Value) -> Vec<(String, Value)> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
                .flatten()
                .filter_map(|f| Some((f.get("name")?.as_str()?.to_owned(), f.get("parameters").cloned().unwrap_or(Value::Null))))
                .collect()
        })
        .unwrap_or_default()
}

fn finish_name(s: &str) -> String {
    match s {
        "stop" | "end_turn" => "STOP".into(),
        "length" | "max_tokens" => "MAX_TOKENS".into(),
        "content_filter" | "refusal" => "SAFETY".into(),
        other => other.to_ascii_uppercase(),
    }
}

struct Answer {
    text: Option<String>,
    thought: Option<String>,
    calls: Vec<ToolCall>,
    finish: String,
    meta: Value,
}

fn answer(p: &Prepared, contents: &[Value]) -> Answer {
    let s = &p.scenario;
    let prompt_base: u32 = contents.iter().map(|c| tokens(&parts_text(c)) + 3).sum();
    let calls = tool_calls(s.tools, &request_tools(&p.body));
    let text = (s.tools == ToolMode::None).then(|| reply_text(s, &last_turn(contents)));
    let candidates = match &text {
        Some(t) => tokens(t),
        None => calls.iter().map(|c| 8 + u32::try_from(c.arguments.len() / 4).unwrap_or(0)).sum(),
    };
    let wants_thoughts = p.body.pointer("/generationConfig/thinkingConfig/includeThoughts").and_then(Value::as_bool) == Some(true);
    let prompt = prompt_base + s.cached_tokens;
    let mut meta = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + s.reasoning_tokens,
    });
    if s.cached_tokens > 0 {
        meta["cachedContentTokenCount"] = json!(s.cached_tokens);
    }
    if s.reasoning_tokens > 0 {
        meta["thoughtsTokenCount"] = json!(s.reasoning_tokens);
    }
    Answer {
        text,
        thought: (s.reasoning_tokens > 0 && wants_thoughts).then(|| "Thinking about it.".to_owned()),
        calls,
        finish: s.finish.as_deref().map_or_else(|| "STOP".to_owned(), finish_name),
        meta,
    }
}

fn call_part(i: usize, c: &ToolCall) -> Value {
    let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
    if i == 0 {
        json!({"functionCall": {"name": c.name, "args": args}, "thoughtSignature": MOCK_THOUGHT_SIGNATURE})
    } else {
        json!({"functionCall": {"name": c.name, "args": args, "id": new_id("fc_", 12)}})
    }
}

/// `POST /v1beta/models/{model_and_method}` and `/v1/models/{…}`.
pub(crate) async fn generate(
    State(st): State<Arc<MockState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = generate_inner(&st, &id, query.as_deref(), method, &headers, &body).await;
    guard.disarm();
    resp
}

async fn generate_inner(st: &Arc<MockState>, id: &str, query: Option<&str>, method: Method, headers: &HeaderMap, body: &Bytes) -> Response {
    let d = Dialect::Gemini;
    let path = format!("/v1beta/models/{id}");
    let Some((model, action)) = id.rsplit_once(':') else {
        st.record(method, &path, headers, None);
        return respond::error(d, 404, Some("Method not found."), None, &crate::scenario::Scenario::default());
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            st.record(method, &path, headers, None);
            return respond::error(d, 404, Some("Method not found."), None, &crate::scenario::Scenario::default());
        }
    };
    let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let p = match respond::prepare_with_model(st, d, method, &path, headers, body, Some(model)) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(contents) = p.body.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty()).cloned() else {
        return respond::error(d, 400, Some("* GenerateContentRequest.contents: contents is not specified"), None, &crate::scenario::Scenario::default());
    };
    if !p.scenario.wait.is_zero() {
        tokio::time::sleep(p.scenario.wait).await;
    }
    match p.failure {
        Some(Failure::Status(code)) => return respond::error(d, code, None, None, &p.scenario),
        Some(Failure::ErrorMidStream) if !stream => return respond::error(d, 500, None, None, &p.scenario),
        _ => {}
    }
    let a = answer(&p, &contents);
    let n = |k: &str| a.meta.get(k).and_then(Value::as_u64).unwrap_or(0);
    st.set_last_usage(Usage {
        prompt_tokens: n("promptTokenCount"),
        completion_tokens: n("candidatesTokenCount") + n("thoughtsTokenCount"),
        cached_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0,
        reasoning_tokens: n("thoughtsTokenCount"),
    });
    let response_id = new_id("", 22);
    let blocked = a.finish == "BLOCKED";
    if stream {
        let steps = stream_script(&p, &a, model, &response_id, blocked);
        if sse {
            return respond::sse_ok(st, d, steps);
        }
        // Without alt=sse: one JSON array holding the chunks.
        let chunks: Vec<Value> = chunk_values(&p, &a, model, &response_id, blocked);
        return respond::json_ok(d, &Value::Array(chunks), &p.scenario);
    }
    let value = if blocked {
        json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": n("promptTokenCount"), "totalTokenCount": n("promptTokenCount")}, "modelVersion": model, "responseId": response_id})
    } else {
        let mut parts = Vec::new();
        if let Some(t) = &a.thought {
            parts.push(json!({"text": t, "thought": true}));
        }
        if let Some(t) = &a.text {
            parts.push(json!({"text": t}));
        }
        parts.extend(a.calls.iter().enumerate().map(|(i, c)| call_part(i, c)));
        json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": a.finish, "index": 0,
                            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
            "usageMetadata": a.meta,
            "modelVersion": model,
            "responseId": response_id,
        })
    };
    let value = crate::openai::with_noise(value, &p.scenario);
    match p.failure {
        Some(Failure::EarlyClose) => respond::json_truncated(st, d, &value, true),
        Some(Failure::EarlyEnd) => respond::json_truncated(st, d, &value, false),
        _ => respond::json_ok(d, &value, &p.scenario),
    }
}

/// The chunk objects of a streamed answer, content first and the finishing chunk last.
fn chunk_values(p: &Prepared, a: &Answer, model: &str, response_id: &str, blocked: bool) -> Vec<Value> {
    let prompt_meta = json!({"promptTokenCount": a.meta["promptTokenCount"], "totalTokenCount": a.meta["promptTokenCount"]});
    let chunk = |parts: Value, finish: Option<&str>, meta: &Value| {
        let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            cand["finishReason"] = Value::from(f);
        }
        json!({"candidates": [cand], "usageMetadata": meta, "modelVersion": model, "responseId": response_id})
    };
    if blocked {
        return vec![json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": prompt_meta, "modelVersion": model, "responseId": response_id})];
    }
    let mut out = Vec::new();
    if let Some(t) = &a.thought {
        out.push(chunk(json!([{"text": t, "thought": true}]), None, &prompt_meta));
    }
    if let Some(t) = &a.text {
        for piece in split_text(t, &p.scenario) {
            out.push(chunk(json!([{"text": piece}]), None, &prompt_meta));
        }
    }
    for (i, c) in a.calls.iter().enumerate() {
        out.push(chunk(json!([call_part(i, c)]), None, &prompt_meta));
    }
    out.push(chunk(json!([{"text": ""}]), Some(&a.finish), &a.meta));
    out
}

fn stream_script(p: &Prepared, a: &Answer, model: &str, response_id: &str, blocked: bool) -> Vec<Step> {
    let s = &p.scenario;
    // Gemini frames its SSE with CRLF.
    let mut script = SseScript::new(true, s.keepalive, s.event_delay(), s.utf8_split);
    let chunks = chunk_values(p, a, model, response_id, blocked);
    match p.failure {
        Some(Failure::ErrorMidStream | Failure::EarlyClose | Failure::EarlyEnd) => {
            let keep = chunks.len().saturating_sub(1).div_ceil(2).max(1).min(chunks.len().saturating_sub(1));
            for c in chunks.iter().take(keep) {
                script.json(None, c);
            }
            match p.failure {
                Some(Failure::ErrorMidStream) => {
                    let err = respond::gemini_error_body(500, None);
                    let pretty = serde_json::to_string_pretty(&err).unwrap_or_default();
                    script.raw(format!("{pretty}\r\n").into_bytes());
                }
                Some(Failure::EarlyClose) => script.abort(),
                _ => {}
            }
        }
        _ => {
            for c in &chunks {
                script.json(None, c);
            }
        }
    }
    script.into_steps()
}
