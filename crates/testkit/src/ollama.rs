//! Ollama native dialect: `POST /api/chat` (`wire-formats.md` §4.4). `stream` defaults to
//! `true`; streams are NDJSON (`application/x-ndjson`), one object per line, tool calls whole
//! in a `done: false` line, counts on the final `done: true` line. `error-mid-stream` writes an
//! `{"error": …}` line. `reasoning` adds a `thinking` text when the request set `think`.
//! Ollama reports no cached or reasoning token counts, so `cached`/`reasoning` change no usage.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use bytes::Bytes;
use gatehouse_types::Usage;
use serde_json::{Value, json};

use crate::common::{LastTurn, reply_text, split_text, tokens, tool_calls};
use crate::respond::{self, Dialect};
use crate::scenario::{Failure, Scenario, ToolMode};
use crate::state::MockState;
use crate::stream::{HandlerGuard, ScriptedBody, Step};

const CREATED_AT: &str = "2026-03-04T10:00:00.000000Z";

fn last_turn(messages: &[Value]) -> LastTurn {
    let text = |m: &Value| m.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(last) = messages.last()
        && last.get("role").and_then(Value::as_str) == Some("tool")
    {
        return LastTurn::ToolResult(text(last));
    }
    LastTurn::User(messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")).map(text).unwrap_or_default())
}

/// `POST /api/chat`.
pub(crate) async fn chat(State(st): State<Arc<MockState>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = chat_inner(&st, method, &headers, &body).await;
    guard.disarm();
    resp
}

async fn chat_inner(st: &Arc<MockState>, method: Method, headers: &HeaderMap, body: &Bytes) -> Response {
    let d = Dialect::Ollama;
    let p = match respond::prepare(st, d, method, "/api/chat", headers, body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(messages) = p.body.get("messages").and_then(Value::as_array).cloned() else {
        return respond::error(d, 400, Some("messages is required"), None, &Scenario::default());
    };
    if !p.scenario.wait.is_zero() {
        tokio::time::sleep(p.scenario.wait).await;
    }
    let stream = p.body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    match p.failure {
        Some(Failure::Status(code)) => return respond::error(d, code, None, None, &p.scenario),
        Some(Failure::ErrorMidStream) if !stream => return respond::error(d, 500, None, None, &p.scenario),
        _ => {}
    }
    let s = &p.scenario;
    let tools: Vec<(String, Value)> = p
        .body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|t| Some((t.pointer("/function/name")?.as_str()?.to_owned(), t.pointer("/function/parameters").cloned().unwrap_or(Value::Null)))).collect())
        .unwrap_or_default();
    let calls = tool_calls(s.tools, &tools);
    let text = (s.tools == ToolMode::None).then(|| reply_text(s, &last_turn(&messages)));
    let prompt: u32 = messages.iter().map(|m| tokens(m.get("content").and_then(Value::as_str).unwrap_or_default()) + 3).sum();
    let completion = match &text {
        Some(t) => tokens(t),
        None => calls.iter().map(|c| 8 + u32::try_from(c.arguments.len() / 4).unwrap_or(0)).sum(),
    };
    st.set_last_usage(Usage { prompt_tokens: u64::from(prompt), completion_tokens: u64::from(completion), ..Usage::default() });
    let thinking = (s.reasoning_tokens > 0 && p.body.get("think").is_some_and(|t| t != &Value::Bool(false))).then_some("Let me think.");
    let done_reason = match s.finish.as_deref() {
        Some("length" | "max_tokens") => "length",
        Some(other) => other,
        None => "stop",
    }
    .to_owned();
    let model = p.model.clone();
    let line = |message: Value, done: bool| {
        let mut v = json!({"model": model, "created_at": CREATED_AT, "message": message, "done": done});
        if done {
            v["done_reason"] = Value::from(done_reason.as_str());
            v["total_duration"] = json!(812_000_000u64);
            v["load_duration"] = json!(9_000_000u64);
            v["prompt_eval_count"] = json!(prompt);
            v["prompt_eval_duration"] = json!(120_000_000u64);
            v["eval_count"] = json!(completion);
            v["eval_duration"] = json!(650_000_000u64);
        }
        v
    };
    let call_json: Vec<Value> = calls
        .iter()
        .map(|c| json!({"function": {"name": c.name, "arguments": serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!({}))}}))
        .collect();
    if !stream {
        let mut message = json!({"role": "assistant", "content": text.clone().unwrap_or_default()});
        if let Some(t) = thinking {
            message["thinking"] = Value::from(t);
        }
        if !call_json.is_empty() {
            message["tool_calls"] = Value::Array(call_json);
        }
        let value = crate::openai::with_noise(line(message, true), s);
        return match p.failure {
            Some(Failure::EarlyClose) => respond::json_truncated(st, d, &value, true),
            Some(Failure::EarlyEnd) => respond::json_truncated(st, d, &value, false),
            _ => respond::json_ok(d, &value, s),
        };
    }
    let mut lines = Vec::new();
    if let Some(t) = thinking {
        lines.push(line(json!({"role": "assistant", "content": "", "thinking": t}), false));
    }
    if let Some(t) = &text {
        for piece in split_text(t, s) {
            lines.push(line(json!({"role": "assistant", "content": piece}), false));
        }
    }
    if !call_json.is_empty() {
        lines.push(line(json!({"role": "assistant", "content": "", "tool_calls": call_json}), false));
    }
    let last = line(json!({"role": "assistant", "content": ""}), true);
    let mut steps = Vec::new();
    let delay = s.event_delay();
    let push = |steps: &mut Vec<Step>, v: &Value| {
        if !steps.is_empty() && !delay.is_zero() {
            steps.push(Step::Sleep(delay));
        }
        let mut bytes = v.to_string().into_bytes();
        bytes.push(b'\n');
        if s.utf8_split
            && let Some(lead) = bytes.iter().position(|b| *b >= 0xC0)
        {
            let second = bytes.split_off(lead + 1);
            steps.push(Step::Write(Bytes::from(bytes)));
            steps.push(Step::Sleep(Duration::from_millis(15)));
            steps.push(Step::Write(Bytes::from(second)));
        } else {
            steps.push(Step::Write(Bytes::from(bytes)));
        }
    };
    match p.failure {
        Some(Failure::ErrorMidStream | Failure::EarlyClose | Failure::EarlyEnd) => {
            for v in lines.iter().take(lines.len().div_ceil(2)) {
                push(&mut steps, v);
            }
            match p.failure {
                Some(Failure::ErrorMidStream) => push(&mut steps, &json!({"error": "an error was encountered while running the model"})),
                Some(Failure::EarlyClose) => {
                    steps.push(Step::Sleep(Duration::from_millis(15)));
                    steps.push(Step::Abort);
                }
                _ => {}
            }
        }
        _ => {
            for v in &lines {
                push(&mut steps, v);
            }
            push(&mut steps, &last);
        }
    }
    let mut resp = Response::new(Body::from_stream(ScriptedBody::new(steps, st.clone())));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp
}
