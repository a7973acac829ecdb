//! Anthropic dialect: `POST /v1/messages` (`wire-formats.md` §2.5 response, §2.6 stream,
//! §2.7 errors) and the Anthropic shape of `GET /v1/models` (§2.8).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use gatehouse_types::Usage;
use serde_json::{Value, json};

use crate::common::{
    LastTurn, ToolCall, anthropic_stop, new_id, reply_text, split_text, tokens, tool_calls,
};
use crate::respond::{self, Dialect, Prepared};
use crate::scenario::{Failure, Scenario, ToolMode};
use crate::state::MockState;
use crate::stream::{HandlerGuard, SseScript, Step};

/// Model ids listed by `GET /v1/models` for Anthropic clients.
pub const ANTHROPIC_MODELS: [&str; 2] = ["mock-claude", "mock-claude-haiku"];

/// Text block that precedes tool calls when `tool_choice` lets the model talk first.
pub const TOOL_PREAMBLE: &str = "I'll use a tool for that.";

fn block_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_turn(messages: &[Value]) -> LastTurn {
    let Some(last) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return LastTurn::User(String::new());
    };
    let content = last.get("content");
    let text = block_text(content);
    if text.is_empty()
        && let Some(blocks) = content.and_then(Value::as_array)
    {
        let results: Vec<String> = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| block_text(b.get("content")))
            .collect();
        if !results.is_empty() {
            return LastTurn::ToolResult(results.join(" "));
        }
    }
    LastTurn::User(text)
}

fn request_tools(body: &Value) -> Vec<(String, Value)> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    let name = t.get("name")?.as_str()?.to_owned();
                    Some((name, t.get("input_schema").cloned().unwrap_or(Value::Null)))
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Answer {
    text: Option<String>,
    calls: Vec<(String, ToolCall)>,
    stop: String,
    input_tokens: u32,
    output_tokens: u32,
    cache_read: u32,
    cache_write: u32,
}

fn answer(p: &Prepared, messages: &[Value]) -> Answer {
    let s = &p.scenario;
    let input_tokens: u32 = messages
        .iter()
        .map(|m| tokens(&block_text(m.get("content"))) + 3)
        .sum::<u32>()
        + p.body
            .get("system")
            .map(|sys| tokens(&block_text(Some(sys))))
            .unwrap_or(0);
    let calls: Vec<(String, ToolCall)> = tool_calls(s.tools, &request_tools(&p.body))
        .into_iter()
        .map(|c| (new_id("toolu_01", 22), c))
        .collect();
    let forced = matches!(
        p.body.pointer("/tool_choice/type").and_then(Value::as_str),
        Some("any" | "tool")
    );
    let text = if s.tools == ToolMode::None {
        Some(reply_text(s, &last_turn(messages)))
    } else if forced {
        None
    } else {
        Some(TOOL_PREAMBLE.to_owned())
    };
    let output_tokens = text.as_deref().map(tokens).unwrap_or(0)
        + calls
            .iter()
            .map(|(_, c)| 8 + u32::try_from(c.arguments.len() / 4).unwrap_or(0))
            .sum::<u32>()
        + s.reasoning_tokens;
    let stop = match &s.finish {
        Some(f) => anthropic_stop(f).to_owned(),
        None if !calls.is_empty() => "tool_use".to_owned(),
        None => "end_turn".to_owned(),
    };
    Answer {
        text,
        calls,
        stop,
        input_tokens,
        output_tokens,
        cache_read: s.cached_tokens,
        cache_write: s.cached_tokens / 4,
    }
}

impl Answer {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: u64::from(self.input_tokens)
                + u64::from(self.cache_read)
                + u64::from(self.cache_write),
            completion_tokens: u64::from(self.output_tokens),
            cached_tokens: u64::from(self.cache_read),
            cache_write_tokens: u64::from(self.cache_write),
            reasoning_tokens: 0,
        }
    }

    fn usage_json(&self, output_tokens: u32) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(st): State<Arc<MockState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = messages_inner(&st, method, &headers, &body).await;
    guard.disarm();
    resp
}

async fn messages_inner(
    st: &Arc<MockState>,
    method: Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let d = Dialect::Anthropic;
    let p = match respond::prepare(st, d, method, "/v1/messages", headers, body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if !p.body.get("max_tokens").is_some_and(Value::is_u64) {
        return respond::error(
            d,
            400,
            Some("max_tokens: Field required (a non-negative integer)"),
            None,
            &Scenario::default(),
        );
    }
    let Some(messages) = p
        .body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return respond::error(
            d,
            400,
            Some("messages: Field required (at least one message)"),
            None,
            &Scenario::default(),
        );
    };
    if !p.scenario.wait.is_zero() {
        tokio::time::sleep(p.scenario.wait).await;
    }
    let stream = p
        .body
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match p.failure {
        Some(Failure::Status(code)) => return respond::error(d, code, None, None, &p.scenario),
        Some(Failure::ErrorMidStream) if !stream => {
            return respond::error(d, 500, None, None, &p.scenario);
        }
        _ => {}
    }
    let a = answer(&p, messages);
    st.set_last_usage(a.usage());
    let id = new_id("msg_01", 22);
    if stream {
        return respond::sse_ok(st, d, stream_script(&p, &a, &id));
    }
    let mut content: Vec<Value> = Vec::new();
    if let Some(text) = &a.text {
        content.push(json!({"type": "text", "text": text}));
    }
    for (tid, call) in &a.calls {
        let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": tid, "name": call.name, "input": input}));
    }
    let value = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": p.model,
        "content": content,
        "stop_reason": a.stop,
        "stop_sequence": null,
        "usage": a.usage_json(a.output_tokens),
    });
    let value = crate::openai::with_noise(value, &p.scenario);
    match p.failure {
        Some(Failure::EarlyClose) => respond::json_truncated(st, d, &value, true),
        Some(Failure::EarlyEnd) => respond::json_truncated(st, d, &value, false),
        _ => respond::json_ok(d, &value, &p.scenario),
    }
}

/// The exact §2.6 sequence: `message_start`, per block `content_block_start` (a `ping` after
/// the first), `content_block_delta`×N, `content_block_stop`, then `message_delta` and
/// `message_stop`.
fn stream_script(p: &Prepared, a: &Answer, id: &str) -> Vec<Step> {
    let s = &p.scenario;
    let mut script = SseScript::new(s.crlf, s.keepalive, s.event_delay(), s.utf8_split);
    script.json(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": p.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": a.usage_json(1),
        }}),
    );
    // Events between message_start and message_delta, so failures can cut them in half.
    let mut body: Vec<(&'static str, Value)> = Vec::new();
    let mut index = 0usize;
    if s.noise {
        body.push(("ping", json!({"type": "ping"})));
        body.push((
            "mock_future_event",
            json!({"type": "mock_future_event", "detail": "unknown event types must be ignored"}),
        ));
    }
    if let Some(text) = &a.text {
        body.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        body.push(("ping", json!({"type": "ping"})));
        for piece in split_text(text, s) {
            body.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        body.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (tid, call) in &a.calls {
        body.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": tid, "name": call.name, "input": {}}}),
        ));
        if index == 0 {
            body.push(("ping", json!({"type": "ping"})));
        }
        let mut fragments = vec![String::new()];
        fragments.extend(call.fragments());
        for frag in fragments {
            body.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": frag}}),
            ));
        }
        body.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    match p.failure {
        Some(Failure::ErrorMidStream | Failure::EarlyClose | Failure::EarlyEnd) => {
            let keep = body.len().div_ceil(2);
            for (name, v) in body.iter().take(keep) {
                script.json(Some(name), v);
            }
            match p.failure {
                Some(Failure::ErrorMidStream) => script.json(
                    Some("error"),
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ),
                Some(Failure::EarlyClose) => script.abort(),
                _ => {}
            }
        }
        _ => {
            for (name, v) in &body {
                script.json(Some(name), v);
            }
            script.json(
                Some("message_delta"),
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": a.stop, "stop_sequence": null},
                        "usage": {"input_tokens": a.input_tokens,
                                  "cache_creation_input_tokens": a.cache_write,
                                  "cache_read_input_tokens": a.cache_read,
                                  "output_tokens": a.output_tokens}}),
            );
            script.json(Some("message_stop"), &json!({"type": "message_stop"}));
        }
    }
    script.into_steps()
}

/// Anthropic's `GET /v1/models` body (§2.8).
pub(crate) fn models_list() -> Value {
    let data: Vec<Value> = ANTHROPIC_MODELS.iter().map(|m| model_object(m)).collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": ANTHROPIC_MODELS.first(),
        "last_id": ANTHROPIC_MODELS.last(),
    })
}

/// One Anthropic model object.
pub(crate) fn model_object(id: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": "2026-01-01T00:00:00Z"})
}
