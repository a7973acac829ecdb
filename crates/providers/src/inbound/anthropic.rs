//! Anthropic Messages inbound (`POST /v1/messages`, `wire-formats.md` §2): Messages request →
//! internal OpenAI chat request (§7.2), `chat.completion` → Message (§7.3), OpenAI chunk stream →
//! Messages SSE events (§7.4 "OpenAI-compatible upstream → Anthropic client"), stop reasons
//! (§7.5), usage (§7.6), error statuses (§7.8).
//!
//! Unsupported (answered 400 naming the field): server tools (`tools[].type` such as
//! `web_search_20250305`), `document` blocks other than base64 PDF or plain text, `tool_use` in
//! user turns and `tool_result` in assistant turns, roles other than `user`/`assistant`.
//! Dropped: `cache_control`, `top_k`, `service_tier`, `container`, `mcp_servers`,
//! `context_management`, `inference_geo` (no OpenAI equivalent), thinking blocks sent back in
//! history to a non-Anthropic upstream (OpenAI-shaped upstreams take no signed reasoning; to an
//! Anthropic upstream they travel verbatim in `thinking_blocks`, signatures included).

use gatehouse_types::{ApiError, ErrorCode, Usage};
use serde_json::{Map, Value, json};

use super::{arguments_object, bad, content_text, message_tool_calls, reasoning_text, usage_of};

/// A validated, translated `POST /v1/messages` body.
#[derive(Debug, Clone)]
pub struct MessagesRequest {
    /// The model as the client named it (routing key).
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// The client turned extended thinking on (`thinking.type` `enabled`/`adaptive`): reasoning
    /// text from the upstream is returned as `thinking` blocks.
    pub thinking: bool,
    /// `reasoning_effort` derived from `thinking.budget_tokens` (≤2048 low, ≤8192 medium, else
    /// high) or `output_config.effort`; the gateway adds it only for reasoning-capable models.
    pub reasoning_effort: Option<&'static str>,
    /// The internal OpenAI chat body (`model`, `messages`, `max_tokens`, …; `stream` and
    /// `stream_options.include_usage: true` when streamed).
    pub body: Map<String, Value>,
}

/// Validates and translates a Messages request (§2.2, §7.2).
///
/// Errors: 400 `invalid_request` naming the field (`model`, `max_tokens`, `messages[2].content[0]`,
/// `tools[1]`, …).
pub fn parse_request(req: &Map<String, Value>) -> Result<MessagesRequest, ApiError> {
    let model = match req.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(bad("model", "`model` must be a non-empty string")),
        None => return Err(bad("model", "`model` is required")),
    };
    let max_tokens = match req.get("max_tokens") {
        Some(v) => v.as_u64().ok_or_else(|| bad("max_tokens", "`max_tokens` must be a non-negative integer"))?,
        None => return Err(bad("max_tokens", "`max_tokens` is required")),
    };
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream", "`stream` must be a boolean")),
    };
    let mut messages = Vec::new();
    system_message(req.get("system"), &mut messages)?;
    let turns = match req.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(bad("messages", "`messages` must contain at least one message")),
        Some(_) => return Err(bad("messages", "`messages` must be an array")),
        None => return Err(bad("messages", "`messages` is required")),
    };
    for (i, turn) in turns.iter().enumerate() {
        translate_turn(turn, &format!("messages[{i}]"), &mut messages)?;
    }

    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.clone()));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(max_tokens));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for key in ["temperature", "top_p"] {
        match req.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if v.is_number() => {
                body.insert(key.into(), v.clone());
            }
            Some(_) => return Err(bad(key, format!("`{key}` must be a number"))),
        }
    }
    match req.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            if !a.is_empty() {
                body.insert("stop".into(), Value::Array(a.clone()));
            }
        }
        Some(_) => return Err(bad("stop_sequences", "`stop_sequences` must be an array of strings")),
    }
    if let Some(user) = req.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str) {
        body.insert("user".into(), Value::String(user.to_string()));
    }
    let tools = translate_tools(req.get("tools"))?;
    let has_tools = !tools.is_empty();
    if has_tools {
        body.insert("tools".into(), Value::Array(tools));
    }
    translate_tool_choice(req.get("tool_choice"), has_tools, &mut body)?;

    let (thinking, mut reasoning_effort) = match req.get("thinking") {
        None | Some(Value::Null) => (false, None),
        Some(Value::Object(t)) => match t.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = t.get("budget_tokens").and_then(Value::as_u64).unwrap_or(4096);
                (true, Some(effort_for_budget(budget)))
            }
            Some("adaptive") => (true, None),
            Some("disabled") => (false, None),
            _ => return Err(bad("thinking.type", "`thinking.type` must be `enabled`, `adaptive` or `disabled`")),
        },
        Some(_) => return Err(bad("thinking", "`thinking` must be an object")),
    };
    if let Some(cfg) = req.get("output_config").and_then(Value::as_object) {
        if let Some(effort) = cfg.get("effort").and_then(Value::as_str) {
            reasoning_effort = Some(match effort {
                "low" => "low",
                "medium" => "medium",
                "high" | "xhigh" | "max" => "high",
                _ => return Err(bad("output_config.effort", "`output_config.effort` must be low, medium, high, xhigh or max")),
            });
        }
        if let Some(format) = cfg.get("format") {
            let schema = format
                .get("schema")
                .filter(|_| format.get("type").and_then(Value::as_str) == Some("json_schema"))
                .ok_or_else(|| bad("output_config.format", "`output_config.format` must be {\"type\":\"json_schema\",\"schema\":{…}}"))?;
            body.insert(
                "response_format".into(),
                json!({"type":"json_schema","json_schema":{"name":"output","schema":schema,"strict":true}}),
            );
        }
    }
    Ok(MessagesRequest { model, stream, thinking, reasoning_effort, body })
}

/// `thinking.budget_tokens` → `reasoning_effort` (§7.2).
pub fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

fn system_message(system: Option<&Value>, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let text = match system {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                match (b.get("type").and_then(Value::as_str), b.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => parts.push(t),
                    _ => return Err(bad(format!("system[{i}]"), "`system` blocks must be text blocks")),
                }
            }
            parts.join("\n\n")
        }
        Some(_) => return Err(bad("system", "`system` must be a string or an array of text blocks")),
    };
    if !text.is_empty() {
        out.push(json!({"role":"system","content":text}));
    }
    Ok(())
}

/// One Anthropic turn → one or more OpenAI messages.
fn translate_turn(turn: &Value, param: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let Some(obj) = turn.as_object() else { return Err(bad(param, "each message must be an object")) };
    let role = obj.get("role").and_then(Value::as_str).unwrap_or_default();
    let blocks: Vec<Value> = match obj.get("content") {
        Some(Value::String(s)) => vec![json!({"type":"text","text":s})],
        Some(Value::Array(a)) => a.clone(),
        _ => return Err(bad(format!("{param}.content"), "`content` must be a string or an array of content blocks")),
    };
    match role {
        "user" => user_turn(&blocks, param, out),
        "assistant" => assistant_turn(&blocks, param, out),
        _ => Err(bad(format!("{param}.role"), "`role` must be `user` or `assistant`")),
    }
}

fn block_type<'a>(b: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    b.get("type").and_then(Value::as_str).ok_or_else(|| bad(param, "each content block needs a string `type`"))
}

fn user_turn(blocks: &[Value], param: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let mut parts: Vec<Value> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let p = format!("{param}.content[{j}]");
        match block_type(b, &p)? {
            "tool_result" => {
                let id = b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{p}.tool_use_id"), "`tool_use_id` is required"))?;
                let (mut text, images) = tool_result_content(b.get("content"), &p)?;
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text.insert_str(0, "Error: ");
                }
                out.push(json!({"role":"tool","tool_call_id":id,"content":text}));
                // OpenAI `tool` messages carry text only: images go to the following user message.
                parts.extend(images);
            }
            "tool_use" => return Err(bad(p, "`tool_use` blocks belong in assistant turns")),
            "thinking" | "redacted_thinking" => return Err(bad(p, "thinking blocks belong in assistant turns")),
            _ => parts.push(user_part(b, &p)?),
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [one] if one.get("type").and_then(Value::as_str) == Some("text") => one["text"].clone(),
        _ => Value::Array(parts),
    };
    out.push(json!({"role":"user","content":content}));
    Ok(())
}

/// A user block (text, image, document) → an OpenAI content part.
fn user_part(b: &Value, p: &str) -> Result<Value, ApiError> {
    match block_type(b, p)? {
        "text" => {
            let text = b.get("text").and_then(Value::as_str).ok_or_else(|| bad(format!("{p}.text"), "`text` must be a string"))?;
            Ok(json!({"type":"text","text":text}))
        }
        "image" => {
            let source = b.get("source").ok_or_else(|| bad(format!("{p}.source"), "`source` is required"))?;
            match source.get("type").and_then(Value::as_str) {
                Some("base64") => {
                    let (Some(mime), Some(data)) =
                        (source.get("media_type").and_then(Value::as_str), source.get("data").and_then(Value::as_str))
                    else {
                        return Err(bad(format!("{p}.source"), "base64 image sources need `media_type` and `data`"));
                    };
                    Ok(json!({"type":"image_url","image_url":{"url":format!("data:{mime};base64,{data}")}}))
                }
                Some("url") => {
                    let url = source.get("url").and_then(Value::as_str).ok_or_else(|| bad(format!("{p}.source.url"), "`url` is required"))?;
                    Ok(json!({"type":"image_url","image_url":{"url":url}}))
                }
                _ => Err(bad(format!("{p}.source.type"), "image sources must be `base64` or `url`")),
            }
        }
        "document" => {
            let source = b.get("source").ok_or_else(|| bad(format!("{p}.source"), "`source` is required"))?;
            let data = source.get("data").and_then(Value::as_str);
            match (source.get("type").and_then(Value::as_str), source.get("media_type").and_then(Value::as_str), data) {
                (Some("base64"), Some("application/pdf"), Some(data)) => Ok(json!({
                    "type":"file",
                    "file":{"filename":"document.pdf","file_data":format!("data:application/pdf;base64,{data}")}
                })),
                (Some("text"), _, Some(text)) => Ok(json!({"type":"text","text":text})),
                _ => Err(bad(format!("{p}.source"), "only base64 PDF and plain-text document sources are supported")),
            }
        }
        other => Err(bad(p, format!("content block type `{other}` is not supported here"))),
    }
}

/// `tool_result.content` → (joined text, image parts to move to the next user message).
fn tool_result_content(content: Option<&Value>, p: &str) -> Result<(String, Vec<Value>), ApiError> {
    match content {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            let mut images = Vec::new();
            for (k, b) in blocks.iter().enumerate() {
                let bp = format!("{p}.content[{k}]");
                match block_type(b, &bp)? {
                    "text" => texts.push(b.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
                    "image" | "document" => images.push(user_part(b, &bp)?),
                    other => return Err(bad(bp, format!("`{other}` blocks are not supported in tool results"))),
                }
            }
            Ok((texts.join("\n"), images))
        }
        Some(_) => Err(bad(format!("{p}.content"), "`content` must be a string or an array of blocks")),
    }
}

fn assistant_turn(blocks: &[Value], param: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut thinking = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let p = format!("{param}.content[{j}]");
        match block_type(b, &p)? {
            "text" => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            "tool_use" => {
                let id = b.get("id").and_then(Value::as_str).ok_or_else(|| bad(format!("{p}.id"), "`id` is required"))?;
                let name = b.get("name").and_then(Value::as_str).ok_or_else(|| bad(format!("{p}.name"), "`name` is required"))?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                if !input.is_object() {
                    return Err(bad(format!("{p}.input"), "`input` must be an object"));
                }
                calls.push(json!({"id":id,"type":"function","function":{"name":name,"arguments":input.to_string()}}));
            }
            // Signed reasoning is kept verbatim in `thinking_blocks` for an Anthropic upstream
            // (which needs it back in tool loops, §2.3); every other kind drops the field
            // (§7.2). A block without its signature/data cannot be replayed: dropped.
            "thinking" => {
                if let (Some(t), Some(sig)) = (b.get("thinking").and_then(Value::as_str), b.get("signature").and_then(Value::as_str).filter(|s| !s.is_empty())) {
                    thinking.push(json!({"type":"thinking","thinking":t,"signature":sig}));
                }
            }
            "redacted_thinking" => {
                if let Some(d) = b.get("data").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    thinking.push(json!({"type":"redacted_thinking","data":d}));
                }
            }
            "tool_result" => return Err(bad(p, "`tool_result` blocks belong in user turns")),
            other => return Err(bad(p, format!("content block type `{other}` is not supported in assistant turns"))),
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    if !thinking.is_empty() {
        msg.insert(crate::anthropic::THINKING_BLOCKS.into(), Value::Array(thinking));
    }
    if calls.is_empty() {
        msg.insert("content".into(), Value::String(text));
    } else {
        msg.insert("content".into(), if text.is_empty() { Value::Null } else { Value::String(text) });
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(msg));
    Ok(())
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("tools", "`tools` must be an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let p = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(bad(p, format!("server tool `{other}` is not supported through this gateway; use client tools")));
            }
        }
        let name = t.get("name").and_then(Value::as_str).ok_or_else(|| bad(format!("{p}.name"), "`name` is required"))?;
        let schema = t.get("input_schema").cloned().unwrap_or_else(|| json!({"type":"object","properties":{}}));
        let mut function = json!({"name":name,"parameters":schema});
        if let Some(d) = t.get("description").and_then(Value::as_str) {
            function["description"] = json!(d);
        }
        if let Some(s) = t.get("strict").and_then(Value::as_bool) {
            function["strict"] = json!(s);
        }
        out.push(json!({"type":"function","function":function}));
    }
    Ok(out)
}

fn translate_tool_choice(choice: Option<&Value>, has_tools: bool, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else { return Ok(()) };
    let ty = choice.get("type").and_then(Value::as_str);
    let mapped = match ty {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| bad("tool_choice.name", "`name` is required"))?;
            json!({"type":"function","function":{"name":name}})
        }
        _ => return Err(bad("tool_choice.type", "`tool_choice.type` must be auto, any, tool or none")),
    };
    if has_tools || ty == Some("none") {
        body.insert("tool_choice".into(), mapped);
    }
    if has_tools && choice.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
        body.insert("parallel_tool_calls".into(), json!(false));
    }
    Ok(())
}

/// OpenAI `finish_reason` → Anthropic `stop_reason` (§7.5); tool calls present win over `stop`
/// (some OpenAI-compatible servers answer `stop` with tool calls).
pub fn stop_reason(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length" | "model_length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// The Anthropic `usage` object for a normalised [`Usage`] (§7.6): `input_tokens` excludes both
/// cache reads and cache writes, so the three input fields add up to the prompt exactly once.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens).saturating_sub(u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens,
    })
}

/// Tool-use ids must match `^[a-zA-Z0-9_-]+$` (§2.3): other characters become `_`.
pub fn tool_use_id(id: &str) -> String {
    let clean: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() { "toolu_gatehouse".to_string() } else { clean }
}

/// `msg_…` id from an upstream completion id (`chatcmpl-abc` → `msg_abc`).
fn message_id(upstream: Option<&str>) -> String {
    let raw = upstream.unwrap_or_default();
    let raw = raw.strip_prefix("chatcmpl-").unwrap_or(raw);
    let clean = tool_use_id(raw);
    if raw.is_empty() { "msg_gatehouse".to_string() } else { format!("msg_{clean}") }
}

/// `chat.completion` → Anthropic Message (§7.3). `model` is the name the client asked for;
/// `thinking` whether to return upstream reasoning as a `thinking` block.
///
/// Errors: 502 `upstream_error` when a tool call's arguments are not a JSON object (never
/// dropped silently).
pub fn from_openai_response(body: &Value, model: &str, thinking: bool) -> Result<Value, ApiError> {
    let choice = body.pointer("/choices/0").ok_or_else(|| {
        ApiError::new(ErrorCode::UpstreamError, "the upstream provider answered without a choice")
    })?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    // Anthropic upstream: its own blocks, signatures included; other upstreams: the reasoning
    // text in one unsigned block.
    let blocks = message.get(crate::anthropic::THINKING_BLOCKS).and_then(Value::as_array).filter(|b| !b.is_empty());
    if thinking && let Some(blocks) = blocks {
        content.extend(blocks.iter().cloned());
    } else if thinking && let Some(r) = reasoning_text(&message) {
        content.push(json!({"type":"thinking","thinking":r,"signature":""}));
    }
    let text = content_text(message.get("content"));
    let refusal = message.get("refusal").and_then(Value::as_str).filter(|s| !s.is_empty());
    if !text.is_empty() {
        content.push(json!({"type":"text","text":text}));
    }
    if let Some(r) = refusal {
        content.push(json!({"type":"text","text":r}));
    }
    let calls = message_tool_calls(&message);
    for c in &calls {
        let input = arguments_object(&c.arguments)?;
        content.push(json!({"type":"tool_use","id":tool_use_id(&c.id),"name":c.name,"input":input}));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let stop = if refusal.is_some() { "refusal" } else { stop_reason(finish, !calls.is_empty()) };
    Ok(json!({
        "id": message_id(body.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage_json(&usage_of(body.get("usage"))),
    }))
}

/// The HTTP status of an error answered to an Anthropic client (§2.7, §7.8 second table):
/// quota → 402 `billing_error`, overload and drain → 529 `overloaded_error`; others keep the
/// gateway's status.
pub fn error_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InsufficientQuota => 402,
        ErrorCode::UpstreamOverloaded | ErrorCode::Unavailable => 529,
        other => other.status().as_u16(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    Tool(usize),
}

/// OpenAI `chat.completion.chunk` stream → Anthropic Messages events (§2.6, §7.4). Each output
/// value is one event's `data`; its `type` is the SSE `event:` name.
///
/// Order produced: `message_start`, then per block `content_block_start` → deltas →
/// `content_block_stop` (blocks never interleave), then `message_delta` (stop reason and the
/// final usage) and `message_stop` from [`StreamTranslator::finish`]. Tool arguments stream as
/// `input_json_delta` fragments as they arrive.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    thinking: bool,
    started: bool,
    next_index: usize,
    open: Open,
    /// OpenAI tool index → (Anthropic block index, closed).
    tools: Vec<(u64, usize, bool)>,
    any_tool: bool,
    finish: Option<String>,
    refusal: bool,
    usage: Usage,
}

impl StreamTranslator {
    /// A translator answering under the client's `model` name; `thinking` as in
    /// [`MessagesRequest::thinking`].
    pub fn new(model: &str, thinking: bool) -> Self {
        Self {
            model: model.to_string(),
            thinking,
            started: false,
            next_index: 0,
            open: Open::None,
            tools: Vec::new(),
            any_tool: false,
            finish: None,
            refusal: false,
            usage: Usage::default(),
        }
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(json!({"type":"message_start","message":{
            "id": message_id(id), "type":"message", "role":"assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens":0,"output_tokens":0}
        }}));
    }

    fn close(&mut self, out: &mut Vec<Value>) {
        let index = match self.open {
            Open::None => return,
            Open::Text | Open::Thinking => self.next_index - 1,
            Open::Tool(block) => {
                for t in &mut self.tools {
                    if t.1 == block {
                        t.2 = true;
                    }
                }
                block
            }
        };
        self.open = Open::None;
        out.push(json!({"type":"content_block_stop","index":index}));
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<Value>) -> usize {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = match kind {
            Open::Tool(_) => Open::Tool(index),
            k => k,
        };
        out.push(json!({"type":"content_block_start","index":index,"content_block":block}));
        index
    }

    /// One OpenAI chunk (the JSON of a `data:` line) → zero or more Anthropic events.
    ///
    /// Errors: 502 when the upstream interleaves argument fragments of a tool call whose block
    /// was already closed (Anthropic blocks cannot reopen; never seen from OpenAI itself).
    pub fn on_chunk(&mut self, chunk: &Value) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        self.start(chunk.get("id").and_then(Value::as_str), &mut out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage_of(Some(u));
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return Ok(out) };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        if self.thinking && let Some(r) = reasoning_text(&delta) {
            if self.open != Open::Thinking {
                self.open_block(Open::Thinking, json!({"type":"thinking","thinking":"","signature":""}), &mut out);
            }
            out.push(json!({"type":"content_block_delta","index":self.next_index - 1,"delta":{"type":"thinking_delta","thinking":r}}));
        }
        if self.thinking && let Some(blocks) = delta.get(crate::anthropic::THINKING_BLOCKS).and_then(Value::as_array) {
            for b in blocks {
                self.on_thinking_block(b, &mut out);
            }
        }
        let text = delta.get("content").and_then(Value::as_str).filter(|s| !s.is_empty());
        let refusal = delta.get("refusal").and_then(Value::as_str).filter(|s| !s.is_empty());
        if refusal.is_some() {
            self.refusal = true;
        }
        for t in [text, refusal].into_iter().flatten() {
            if self.open != Open::Text {
                self.open_block(Open::Text, json!({"type":"text","text":""}), &mut out);
            }
            out.push(json!({"type":"content_block_delta","index":self.next_index - 1,"delta":{"type":"text_delta","text":t}}));
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.on_tool_delta(call, &mut out)?;
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.close(&mut out);
            self.finish = Some(f.to_string());
        }
        Ok(out)
    }

    /// A complete thinking block from an Anthropic upstream (`thinking_blocks` delta, sent when
    /// the upstream block stopped): its signature ends the open thinking block (whose text came
    /// as `reasoning_content`); a redacted block is a block of its own.
    fn on_thinking_block(&mut self, b: &Value, out: &mut Vec<Value>) {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("type") {
            "thinking" => {
                if self.open != Open::Thinking {
                    self.open_block(Open::Thinking, json!({"type":"thinking","thinking":"","signature":""}), out);
                    if !s("thinking").is_empty() {
                        out.push(json!({"type":"content_block_delta","index":self.next_index - 1,"delta":{"type":"thinking_delta","thinking":s("thinking")}}));
                    }
                }
                if !s("signature").is_empty() {
                    out.push(json!({"type":"content_block_delta","index":self.next_index - 1,"delta":{"type":"signature_delta","signature":s("signature")}}));
                }
                self.close(out);
            }
            "redacted_thinking" => {
                self.open_block(Open::Thinking, json!({"type":"redacted_thinking","data":s("data")}), out);
                self.close(out);
            }
            _ => {}
        }
    }

    fn on_tool_delta(&mut self, call: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
        let tc_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
        let known = self.tools.iter().find(|t| t.0 == tc_index).copied();
        let block = match known {
            Some((_, block, false)) => block,
            Some((_, _, true)) => {
                if args.is_empty() {
                    return Ok(());
                }
                return Err(ApiError::new(
                    ErrorCode::UpstreamError,
                    "the upstream provider interleaved the arguments of parallel tool calls",
                ));
            }
            None => {
                let call_id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                let id = if call_id.is_empty() { format!("toolu_gatehouse_{tc_index}") } else { tool_use_id(call_id) };
                let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                let block = self.open_block(Open::Tool(0), json!({"type":"tool_use","id":id,"name":name,"input":{}}), out);
                self.tools.push((tc_index, block, false));
                self.any_tool = true;
                block
            }
        };
        if self.open != Open::Tool(block) {
            // Fragments for a block that is not the open one, while it is not yet closed, cannot
            // happen (opening another block closes it); keep the invariant explicit.
            return Err(ApiError::new(ErrorCode::UpstreamError, "the upstream provider interleaved tool-call arguments"));
        }
        if !args.is_empty() {
            out.push(json!({"type":"content_block_delta","index":block,"delta":{"type":"input_json_delta","partial_json":args}}));
        }
        Ok(())
    }

    /// End of the upstream stream: closes the open block, then `message_delta` (stop reason,
    /// final usage: input, cache read/write and output tokens) and `message_stop`.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        self.start(None, &mut out);
        self.close(&mut out);
        let stop = if self.refusal { "refusal" } else { stop_reason(self.finish.as_deref(), self.any_tool) };
        out.push(json!({
            "type":"message_delta",
            "delta":{"stop_reason":stop,"stop_sequence":null},
            "usage": usage_json(&self.usage),
        }));
        out.push(json!({"type":"message_stop"}));
        out
    }

    /// The in-band `error` event for a failure after the stream started (§2.6).
    pub fn error_event(err: &ApiError) -> Value {
        err.anthropic_body()
    }

    /// Usage seen so far (for the call log of an interrupted stream).
    pub fn usage(&self) -> Usage {
        self.usage
    }
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
