//! OpenAI dialect: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`
//! (`wire-formats.md` §1.4, §1.5, §1.7, §1.8).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use gatehouse_types::Usage;
use serde_json::{Value, json};

use crate::common::{
    LastTurn, ToolCall, base64, embedding, new_id, openai_finish, reply_text, split_text, tokens,
    tool_calls, unix_now,
};
use crate::respond::{self, Dialect, Prepared};
use crate::scenario::{Failure, Scenario, ToolMode};
use crate::state::MockState;
use crate::stream::{HandlerGuard, SseScript};

/// Model ids listed by `GET /v1/models`.
pub const OPENAI_MODELS: [&str; 3] = ["mock-gpt", "mock-gpt-mini", "mock-embed"];

/// Default embedding width when the request has no `dimensions`.
pub const DEFAULT_EMBEDDING_DIMS: usize = 16;

const MID_STREAM_ERROR: &str = "The server had an error while processing your request.";

/// Text of a message `content` (string or array of parts with `text`).
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_turn(messages: &[Value]) -> LastTurn {
    if let Some(last) = messages.last()
        && last.get("role").and_then(Value::as_str) == Some("tool")
    {
        return LastTurn::ToolResult(content_text(last.get("content")));
    }
    let text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default();
    LastTurn::User(text)
}

fn request_tools(body: &Value) -> Vec<(String, Value)> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    let f = t.get("function")?;
                    let name = f.get("name")?.as_str()?.to_owned();
                    Some((name, f.get("parameters").cloned().unwrap_or(Value::Null)))
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Answer {
    text: Option<String>,
    calls: Vec<(String, ToolCall)>,
    finish: String,
    usage: Usage,
}

fn answer(p: &Prepared, messages: &[Value]) -> Answer {
    let s = &p.scenario;
    let prompt_base: u32 = messages
        .iter()
        .map(|m| tokens(&content_text(m.get("content"))) + 3)
        .sum();
    let calls: Vec<(String, ToolCall)> = tool_calls(s.tools, &request_tools(&p.body))
        .into_iter()
        .map(|c| (new_id("call_", 24), c))
        .collect();
    let text = (s.tools == ToolMode::None).then(|| reply_text(s, &last_turn(messages)));
    let completion_base = match &text {
        Some(t) => tokens(t),
        None => calls
            .iter()
            .map(|(_, c)| 8 + u32::try_from(c.arguments.len() / 4).unwrap_or(0))
            .sum(),
    };
    let finish = match &s.finish {
        Some(f) => openai_finish(f).to_owned(),
        None if !calls.is_empty() => "tool_calls".to_owned(),
        None => "stop".to_owned(),
    };
    Answer {
        text,
        calls,
        finish,
        usage: Usage {
            prompt_tokens: u64::from(prompt_base) + u64::from(s.cached_tokens),
            completion_tokens: u64::from(completion_base) + u64::from(s.reasoning_tokens),
            cached_tokens: u64::from(s.cached_tokens),
            cache_write_tokens: 0,
            reasoning_tokens: u64::from(s.reasoning_tokens),
        },
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(st): State<Arc<MockState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = chat_inner(&st, method, &headers, &body).await;
    guard.disarm();
    resp
}

/// The Chat Completions answer, recorded under `path` (Azure's routes reuse it).
pub(crate) async fn chat_inner(
    st: &Arc<MockState>,
    method: Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    chat_at(st, method, "/v1/chat/completions", headers, body).await
}

/// [`chat_inner`] recorded under `path`.
pub(crate) async fn chat_at(
    st: &Arc<MockState>,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let d = Dialect::OpenAi;
    let p = match respond::prepare(st, d, method, path, headers, body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(messages) = p
        .body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return respond::error(
            d,
            400,
            Some("'messages' is a required property and must be a non-empty array"),
            Some("messages"),
            &Scenario::default(),
        );
    };
    if let Some(resp) = reasoning_model_refusal(&p) {
        return resp;
    }
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
    st.set_last_usage(a.usage);
    let id = new_id("chatcmpl-", 29);
    let created = unix_now();
    if stream {
        let include_usage = p
            .body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let steps = stream_script(&p, &a, &id, created, include_usage);
        return respond::sse_ok(st, d, steps);
    }
    let mut message =
        json!({"role": "assistant", "content": a.text, "refusal": null, "annotations": []});
    if !a.calls.is_empty() {
        message["tool_calls"] = Value::Array(
            a.calls
                .iter()
                .map(|(cid, c)| {
                    json!({"id": cid, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect(),
        );
    }
    let value = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": p.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": a.finish}],
        "usage": usage_json(&a.usage),
        "service_tier": "default",
        "system_fingerprint": "fp_gatehouse_mock",
    });
    let value = with_noise(value, &p.scenario);
    match p.failure {
        Some(Failure::EarlyClose) => respond::json_truncated(st, d, &value, true),
        Some(Failure::EarlyEnd) => respond::json_truncated(st, d, &value, false),
        _ => respond::json_ok(d, &value, &p.scenario),
    }
}

fn stream_script(
    p: &Prepared,
    a: &Answer,
    id: &str,
    created: u64,
    include_usage: bool,
) -> Vec<crate::stream::Step> {
    let s = &p.scenario;
    let mut script = SseScript::new(s.crlf, s.keepalive, s.event_delay(), s.utf8_split);
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": p.model,
            "system_fingerprint": "fp_gatehouse_mock",
            "choices": choices,
        });
        if include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        c
    };
    let delta = |d: Value, finish: Option<&str>| json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}]);
    let mut body_events: Vec<Value> = Vec::new();
    if s.noise {
        // Azure OpenAI's content-filter preamble: empty choices, no usage, unknown fields.
        let mut c = json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        body_events.push(c);
    }
    if let Some(text) = &a.text {
        body_events.push(chunk(
            delta(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ),
            None,
        ));
        for piece in split_text(text, s) {
            body_events.push(chunk(delta(json!({"content": piece}), None), None));
        }
    } else {
        for (i, (cid, call)) in a.calls.iter().enumerate() {
            let start = json!({"index": i, "id": cid, "type": "function",
                               "function": {"name": call.name, "arguments": ""}});
            let d = if i == 0 {
                json!({"role": "assistant", "content": null, "tool_calls": [start], "refusal": null})
            } else {
                json!({"tool_calls": [start]})
            };
            body_events.push(chunk(delta(d, None), None));
            for frag in call.fragments() {
                body_events.push(chunk(
                    delta(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}),
                        None,
                    ),
                    None,
                ));
            }
        }
    }
    match p.failure {
        Some(Failure::ErrorMidStream | Failure::EarlyClose | Failure::EarlyEnd) => {
            // Send about half of the content, then fail.
            let keep = body_events.len().div_ceil(2);
            for e in body_events.iter().take(keep) {
                script.json(None, e);
            }
            match p.failure {
                Some(Failure::ErrorMidStream) => script.json(
                    None,
                    &json!({"error": {"message": MID_STREAM_ERROR, "type": "server_error",
                                      "param": null, "code": null}}),
                ),
                Some(Failure::EarlyClose) => script.abort(),
                _ => {}
            }
        }
        _ => {
            for e in &body_events {
                script.json(None, e);
            }
            script.json(None, &chunk(delta(json!({}), Some(&a.finish)), None));
            if include_usage {
                script.json(None, &chunk(json!([]), Some(usage_json(&a.usage))));
            }
            script.event(None, "[DONE]");
        }
    }
    script.into_steps()
}

/// Embedding inputs: string | string[] | int[] | int[][] (§1.7), as texts to hash.
fn embedding_inputs(input: Option<&Value>) -> Option<Vec<String>> {
    match input? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            Some(vec![Value::Array(items.clone()).to_string()])
        }
        Value::Array(items) if items.iter().all(Value::is_array) => {
            Some(items.iter().map(Value::to_string).collect())
        }
        _ => None,
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(st): State<Arc<MockState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = HandlerGuard::new(st.clone());
    let resp = embeddings_inner(&st, method, &headers, &body).await;
    guard.disarm();
    resp
}

async fn embeddings_inner(
    st: &Arc<MockState>,
    method: Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let d = Dialect::OpenAi;
    let p = match respond::prepare(st, d, method, "/v1/embeddings", headers, body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(inputs) = embedding_inputs(p.body.get("input")) else {
        return respond::error(
            d,
            400,
            Some("'input' must be a non-empty string, array of strings, or array of token arrays"),
            Some("input"),
            &Scenario::default(),
        );
    };
    let dims = match p.body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_EMBEDDING_DIMS,
        Some(v) => match v.as_u64().filter(|n| (1..=8192).contains(n)) {
            Some(n) => usize::try_from(n).unwrap_or(DEFAULT_EMBEDDING_DIMS),
            None => {
                return respond::error(
                    d,
                    400,
                    Some("'dimensions' must be an integer from 1 to 8192"),
                    Some("dimensions"),
                    &Scenario::default(),
                );
            }
        },
    };
    let base64_format = match p.body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return respond::error(
                d,
                400,
                Some("'encoding_format' must be 'float' or 'base64'"),
                Some("encoding_format"),
                &Scenario::default(),
            );
        }
    };
    if !p.scenario.wait.is_zero() {
        tokio::time::sleep(p.scenario.wait).await;
    }
    if let Some(Failure::Status(code)) = p.failure {
        return respond::error(d, code, None, None, &p.scenario);
    }
    if let Some(Failure::ErrorMidStream) = p.failure {
        return respond::error(d, 500, None, None, &p.scenario);
    }
    let prompt_tokens: u32 = inputs.iter().map(|t| tokens(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = embedding(text, dims);
            let e = if base64_format {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": e})
        })
        .collect();
    st.set_last_usage(Usage {
        prompt_tokens: u64::from(prompt_tokens),
        ..Usage::default()
    });
    let value = json!({
        "object": "list",
        "data": data,
        "model": p.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    let value = with_noise(value, &p.scenario);
    match p.failure {
        Some(Failure::EarlyClose) => respond::json_truncated(st, d, &value, true),
        Some(Failure::EarlyEnd) => respond::json_truncated(st, d, &value, false),
        _ => respond::json_ok(d, &value, &p.scenario),
    }
}

/// `GET /v1/models` in OpenAI's shape, or Anthropic's when Anthropic headers are present.
pub(crate) async fn list_models(
    State(st): State<Arc<MockState>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    st.record(method, "/v1/models", &headers, None);
    let d = Dialect::sniff(&headers);
    if let Err(resp) = respond::check_auth(&st, d, &headers) {
        return resp;
    }
    let value = match d {
        Dialect::OpenAi => json!({
            "object": "list",
            "data": OPENAI_MODELS
                .iter()
                .map(|m| openai_model(m))
                .collect::<Vec<_>>(),
        }),
        Dialect::Anthropic => crate::anthropic::models_list(),
        Dialect::Gemini | Dialect::Ollama | Dialect::Bedrock => json!({"object": "list", "data": []}),
    };
    respond::json_ok(d, &value, &Scenario::default())
}

/// `GET /v1/models/{id}`: every id exists (the mock answers any model).
pub(crate) async fn get_model(
    State(st): State<Arc<MockState>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    st.record(method, &format!("/v1/models/{id}"), &headers, None);
    let d = Dialect::sniff(&headers);
    if let Err(resp) = respond::check_auth(&st, d, &headers) {
        return resp;
    }
    let value = match d {
        Dialect::OpenAi => openai_model(&id),
        Dialect::Anthropic => crate::anthropic::model_object(&id),
        Dialect::Gemini | Dialect::Ollama | Dialect::Bedrock => openai_model(&id),
    };
    respond::json_ok(d, &value, &Scenario::default())
}

fn openai_model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_767_225_600u64, "owned_by": "gatehouse-mock"})
}

/// Adds an unknown top-level field under `noise`.
pub(crate) fn with_noise(mut value: Value, s: &Scenario) -> Value {
    if s.noise {
        value["x_mock_unknown_field"] = json!({"ignore": "me"});
    }
    value
}

/// Whether a model base name belongs to OpenAI's reasoning families (o1, o3, o4, gpt-5), which
/// take `max_completion_tokens` only.
pub fn is_reasoning_model(base: &str) -> bool {
    let base = base.rsplit('/').next().unwrap_or(base);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|f| base == *f || base.strip_prefix(f).is_some_and(|rest| rest.starts_with(['-', '.'])))
}

/// OpenAI's answer to `max_tokens` sent to a reasoning model (§1.3): 400
/// `unsupported_parameter`, as the real API does.
fn reasoning_model_refusal(p: &Prepared) -> Option<Response> {
    use axum::response::IntoResponse;
    let base = p.model.split(':').next().unwrap_or_default();
    if !is_reasoning_model(base) || p.body.get("max_tokens").is_none_or(Value::is_null) {
        return None;
    }
    let body = json!({"error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }});
    Some((axum::http::StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
}
