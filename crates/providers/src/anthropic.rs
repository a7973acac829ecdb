//! Anthropic Messages upstream (`wire-formats.md` §2): OpenAI chat request → Messages request
//! (§7.1), Message → `chat.completion` (§7.3), Messages SSE → `chat.completion.chunk`s (§7.4),
//! stop reasons (§7.5) and usage (§7.6).

use std::borrow::Cow;

use bytes::Bytes;
use gatehouse_types::Usage;
use gatehouse_types::openai::{CHAT_COMPLETION, CHAT_COMPLETION_CHUNK, WireUsage};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::UpstreamError;
use crate::sse::SseEvent;
use crate::stream::{Out, StreamMapper};
use crate::StreamEvent;

/// The `anthropic-version` header value sent upstream (§2.1).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The message / delta field carrying Anthropic's `thinking` and `redacted_thinking` blocks
/// verbatim (signature included) next to `reasoning_content` — the name LiteLLM uses for the same
/// purpose. Clients send the blocks back on the assistant message to continue a tool-use loop
/// with thinking on; other upstream kinds never see the field.
pub const THINKING_BLOCKS: &str = "thinking_blocks";

/// Cache key of the thinking blocks that preceded a tool call (its id): [`remember_thinking`].
fn thinking_key(tool_call_id: &str) -> String {
    format!("anthropic-thinking:{tool_call_id}")
}

/// Remembers an answer's `thinking_blocks` under its first tool call's id, in the process-wide
/// cache the Gemini adapter uses for `thoughtSignature`s (bounded, 24 h TTL, never logged), so a
/// client that drops unknown fields can still continue the tool loop ([`restore_thinking`]).
pub(crate) fn remember_thinking(blocks: &[Value], first_tool_call_id: Option<&str>, cache: &crate::gemini::SignatureCache) {
    if let (false, Some(id)) = (blocks.is_empty(), first_tool_call_id.filter(|id| !id.is_empty())) {
        cache.put(&thinking_key(id), &Value::Array(blocks.to_vec()).to_string());
    }
}

/// [`remember_thinking`] for a translated `chat.completion` body.
pub(crate) fn remember_thinking_of(body: &Value, cache: &crate::gemini::SignatureCache) {
    let message = body.pointer("/choices/0/message");
    let blocks = message.and_then(|m| m.get(THINKING_BLOCKS)).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let id = message.and_then(|m| m.pointer("/tool_calls/0/id")).and_then(Value::as_str);
    remember_thinking(blocks, id, cache);
}

/// Gives every assistant message that has tool calls but no `thinking_blocks` the blocks
/// remembered for its first tool call (Anthropic refuses a tool loop with thinking on whose
/// assistant turn lost its signed thinking, §2.3). Messages that carry the field are untouched.
pub(crate) fn restore_thinking(request: &mut Map<String, Value>, cache: &crate::gemini::SignatureCache) {
    let Some(Value::Array(messages)) = request.get_mut("messages") else { return };
    for m in messages.iter_mut() {
        let Value::Object(m) = m else { continue };
        if m.get("role").and_then(Value::as_str) != Some("assistant") || m.get(THINKING_BLOCKS).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let Some(id) = m.get("tool_calls").and_then(|c| c.get(0)).and_then(|c| c.get("id")).and_then(Value::as_str) else { continue };
        if let Some(saved) = cache.get(&thinking_key(id))
            && let Ok(blocks @ Value::Array(_)) = serde_json::from_str::<Value>(&saved)
        {
            m.insert(THINKING_BLOCKS.into(), blocks);
        }
    }
}

/// `max_tokens` when the client sent neither `max_completion_tokens` nor `max_tokens` (Anthropic
/// requires it, §2.2).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Image media types Anthropic accepts (§2.3).
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

fn reject(param: impl Into<String>, message: impl Into<String>) -> UpstreamError {
    UpstreamError::InvalidRequest { param: Some(param.into()), message: message.into() }
}

/// Splits `data:<mime>;base64,<payload>` into `(mime, payload)`.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((mime, payload))
}

/// One OpenAI `image_url` part → an Anthropic `image` block.
fn image_block(part: &Map<String, Value>, param: &str) -> Result<Value, UpstreamError> {
    let url = match part.get("image_url") {
        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    }
    .ok_or_else(|| reject(format!("{param}.image_url.url"), "image_url.url must be a string"))?;
    if url.starts_with("data:") {
        let (mime, data) = parse_data_url(url)
            .ok_or_else(|| reject(format!("{param}.image_url.url"), "image data URLs must be data:<mime>;base64,<data>"))?;
        if !IMAGE_TYPES.contains(&mime) {
            return Err(reject(
                format!("{param}.image_url.url"),
                format!("image type {mime} is not supported by this model's provider (jpeg, png, gif, webp only)"),
            ));
        }
        Ok(json!({"type":"image","source":{"type":"base64","media_type":mime,"data":data}}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type":"image","source":{"type":"url","url":url}}))
    } else {
        Err(reject(format!("{param}.image_url.url"), "image_url.url must be an http(s) URL or a base64 data URL"))
    }
}

/// Carries a client-supplied `cache_control` over to a block.
fn with_cache_control(mut block: Value, part: &Map<String, Value>) -> Value {
    if let (Some(cc), Value::Object(b)) = (part.get("cache_control"), &mut block) {
        b.insert("cache_control".into(), cc.clone());
    }
    block
}

fn text_block(text: &str) -> Value {
    json!({"type":"text","text":text})
}

/// User (or tool-result) content → blocks. Empty text is dropped (Anthropic rejects it).
fn user_blocks(content: Option<&Value>, param: &str, out: &mut Vec<Value>) -> Result<(), UpstreamError> {
    match content {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(text_block(s));
            }
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{param}[{j}]");
                let Value::Object(part) = part else {
                    return Err(reject(p, "content parts must be objects"));
                };
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = part.get("text").and_then(Value::as_str).ok_or_else(|| reject(format!("{p}.text"), "text must be a string"))?;
                        if !text.is_empty() {
                            out.push(with_cache_control(text_block(text), part));
                        }
                    }
                    Some("image_url") => out.push(with_cache_control(image_block(part, &p)?, part)),
                    Some("file") => {
                        let file = part.get("file").and_then(Value::as_object).ok_or_else(|| reject(format!("{p}.file"), "file must be an object"))?;
                        if file.contains_key("file_id") {
                            return Err(reject(format!("{p}.file.file_id"), "file_id is not supported by this model's provider; send file_data"));
                        }
                        let data = file.get("file_data").and_then(Value::as_str).unwrap_or_default();
                        match parse_data_url(data) {
                            Some(("application/pdf", b64)) => out.push(with_cache_control(
                                json!({"type":"document","source":{"type":"base64","media_type":"application/pdf","data":b64}}),
                                part,
                            )),
                            _ => return Err(reject(format!("{p}.file.file_data"), "only PDF files (data:application/pdf;base64,…) are supported by this model's provider")),
                        }
                    }
                    Some("input_audio") => return Err(reject(p, "audio input is not supported by this model's provider")),
                    Some(other) => return Err(reject(format!("{p}.type"), format!("content part type {other} is not supported by this model's provider"))),
                    None => return Err(reject(format!("{p}.type"), "content part type missing")),
                }
            }
            Ok(())
        }
        Some(_) => Err(reject(param, "content must be a string or an array of parts")),
    }
}

/// Text of a system/developer message (string or `text` parts), as text blocks.
fn system_blocks(content: Option<&Value>, param: &str, out: &mut Vec<Value>) -> Result<(), UpstreamError> {
    match content {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(text_block(s));
            }
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let text = part
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|_| part.get("type").and_then(Value::as_str) == Some("text"))
                    .ok_or_else(|| reject(format!("{param}[{j}]"), "system and developer messages take text parts only"))?;
                if !text.is_empty() {
                    let block = text_block(text);
                    out.push(match part.as_object() {
                        Some(o) => with_cache_control(block, o),
                        None => block,
                    });
                }
            }
            Ok(())
        }
        Some(_) => Err(reject(param, "content must be a string or an array of text parts")),
    }
}

/// The `thinking_blocks` of an assistant message (as this adapter returned them, see
/// [`parse_response`]) → the same `thinking` / `redacted_thinking` blocks, unchanged: Anthropic
/// needs them back, signature included, to continue a tool-use loop with thinking on (§2.3).
fn thinking_blocks(msg: &Map<String, Value>, param: &str, out: &mut Vec<Value>) -> Result<(), UpstreamError> {
    let list = match msg.get(THINKING_BLOCKS) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(reject(format!("{param}.{THINKING_BLOCKS}"), "thinking_blocks must be an array")),
    };
    for (i, b) in list.iter().enumerate() {
        let p = format!("{param}.{THINKING_BLOCKS}[{i}]");
        let s = |k: &str| b.get(k).and_then(Value::as_str);
        match s("type") {
            Some("thinking") => {
                let (Some(thinking), Some(signature)) = (s("thinking"), s("signature")) else {
                    return Err(reject(p, "a thinking block needs string `thinking` and `signature`"));
                };
                out.push(json!({"type":"thinking","thinking":thinking,"signature":signature}));
            }
            Some("redacted_thinking") => {
                let data = s("data").ok_or_else(|| reject(format!("{p}.data"), "a redacted_thinking block needs string `data`"))?;
                out.push(json!({"type":"redacted_thinking","data":data}));
            }
            _ => return Err(reject(format!("{p}.type"), "thinking block type must be thinking or redacted_thinking")),
        }
    }
    Ok(())
}

/// Assistant thinking blocks, content, refusal and tool calls → blocks (thinking first, then
/// text, then `tool_use`).
fn assistant_blocks(msg: &Map<String, Value>, param: &str, out: &mut Vec<Value>) -> Result<(), UpstreamError> {
    thinking_blocks(msg, param, out)?;
    match msg.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(text_block(s));
            }
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let text = match part.get("type").and_then(Value::as_str) {
                    Some("text") => part.get("text").and_then(Value::as_str),
                    Some("refusal") => part.get("refusal").and_then(Value::as_str),
                    _ => None,
                }
                .ok_or_else(|| reject(format!("{param}.content[{j}]"), "assistant content parts must be text or refusal"))?;
                if !text.is_empty() {
                    out.push(text_block(text));
                }
            }
        }
        Some(_) => return Err(reject(format!("{param}.content"), "content must be a string, an array of parts or null")),
    }
    if let Some(r) = msg.get("refusal").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        out.push(text_block(r));
    }
    match msg.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (i, call) in calls.iter().enumerate() {
                let p = format!("{param}.tool_calls[{i}]");
                let id = call.get("id").and_then(Value::as_str).ok_or_else(|| reject(format!("{p}.id"), "tool call id must be a string"))?;
                let f = call.get("function").ok_or_else(|| reject(format!("{p}.function"), "only function tool calls are supported by this model's provider"))?;
                let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("{p}.function.name"), "function name must be a string"))?;
                let input = match f.get("arguments") {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                        .map_err(|_| reject(format!("{p}.function.arguments"), "function arguments are not valid JSON"))?,
                    Some(v @ Value::Object(_)) => v.clone(),
                    Some(_) => return Err(reject(format!("{p}.function.arguments"), "function arguments must be a JSON string")),
                };
                if !input.is_object() {
                    return Err(reject(format!("{p}.function.arguments"), "function arguments must encode a JSON object"));
                }
                out.push(json!({"type":"tool_use","id":id,"name":name,"input":input}));
            }
        }
        Some(_) => return Err(reject(format!("{param}.tool_calls"), "tool_calls must be an array")),
    }
    Ok(())
}

/// A `tool` message → one `tool_result` block (string content kept; text parts → text blocks).
fn tool_result_block(msg: &Map<String, Value>, param: &str) -> Result<Value, UpstreamError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| reject(format!("{param}.tool_call_id"), "tool messages need a tool_call_id"))?;
    let mut block = Map::new();
    block.insert("type".into(), Value::from("tool_result"));
    block.insert("tool_use_id".into(), Value::from(id));
    match msg.get("content") {
        Some(Value::String(s)) => {
            if !s.is_empty() {
                block.insert("content".into(), Value::from(s.as_str()));
            }
        }
        c @ Some(Value::Array(_)) => {
            let mut blocks = Vec::new();
            user_blocks(c, &format!("{param}.content"), &mut blocks)?;
            if !blocks.is_empty() {
                block.insert("content".into(), Value::Array(blocks));
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(reject(format!("{param}.content"), "content must be a string or an array of parts")),
    }
    Ok(Value::Object(block))
}

fn is_tool_result(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("tool_result")
}

/// Conversation turns with consecutive same-role messages merged; `tool_result` blocks are kept
/// ahead of other content in their user turn (§2.3).
#[derive(Default)]
struct Turns(Vec<(&'static str, Vec<Value>)>);

impl Turns {
    fn last_for(&mut self, role: &'static str) -> &mut Vec<Value> {
        if self.0.last().is_none_or(|(r, _)| *r != role) {
            self.0.push((role, Vec::new()));
        }
        let len = self.0.len();
        &mut self.0[len - 1].1
    }

    fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        if !blocks.is_empty() {
            self.last_for(role).extend(blocks);
        }
    }

    fn push_tool_result(&mut self, block: Value) {
        let turn = self.last_for("user");
        let at = turn.iter().take_while(|b| is_tool_result(b)).count();
        turn.insert(at, block);
    }

    fn into_messages(self) -> Vec<Value> {
        self.0
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(role, mut blocks)| {
                // A lone plain text block is sent in the string shorthand.
                let plain = blocks.len() == 1 && blocks[0].get("type").and_then(Value::as_str) == Some("text") && blocks[0].get("cache_control").is_none();
                let content = match (plain, blocks.pop()) {
                    (true, Some(Value::Object(mut b))) => b.remove("text").unwrap_or(Value::Null),
                    (_, Some(last)) => {
                        blocks.push(last);
                        Value::Array(blocks)
                    }
                    (_, None) => Value::Array(blocks),
                };
                json!({"role": role, "content": content})
            })
            .collect()
    }
}

fn tool_name(choice: &Value) -> Option<&str> {
    choice.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)
}

/// Thinking budget for a `reasoning_effort` (§7.1 suggested values); `None` = no thinking.
pub(crate) fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        "xhigh" | "max" => Some(32768),
        _ => None,
    }
}

/// The Messages request for an OpenAI chat request (`wire-formats.md` §7.1). Fields without an
/// Anthropic equivalent are dropped (`seed`, `logit_bias`, penalties, `metadata`, `store`,
/// `service_tier`, …); the "reject" rows of §7.1 are [`UpstreamError::InvalidRequest`].
pub(crate) fn build_request(request: &Map<String, Value>, upstream_model: &str, stream: bool) -> Result<Map<String, Value>, UpstreamError> {
    if let Some(n) = request.get("n").and_then(Value::as_u64)
        && n > 1
    {
        return Err(reject("n", "n > 1 is not supported by this model's provider"));
    }
    if request.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(reject("logprobs", "logprobs are not supported by this model's provider"));
    }
    let messages = request.get("messages").and_then(Value::as_array).ok_or_else(|| reject("messages", "messages must be an array"))?;

    let mut system: Vec<Value> = Vec::new();
    let mut turns = Turns::default();
    for (i, msg) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Value::Object(msg) = msg else {
            return Err(reject(param, "messages must be objects"));
        };
        match msg.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => system_blocks(msg.get("content"), &format!("{param}.content"), &mut system)?,
            Some("user") => {
                let mut blocks = Vec::new();
                user_blocks(msg.get("content"), &format!("{param}.content"), &mut blocks)?;
                turns.push("user", blocks);
            }
            Some("assistant") => {
                let mut blocks = Vec::new();
                assistant_blocks(msg, &param, &mut blocks)?;
                turns.push("assistant", blocks);
            }
            Some("tool") => turns.push_tool_result(tool_result_block(msg, &param)?),
            Some(other) => return Err(reject(format!("{param}.role"), format!("role {other} is not supported by this model's provider"))),
            None => return Err(reject(format!("{param}.role"), "role must be a string")),
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), Value::from(upstream_model));

    // Output cap (required upstream).
    let client_max = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| request.get(*k).and_then(Value::as_u64));
    let mut max_tokens = client_max.unwrap_or(DEFAULT_MAX_TOKENS);

    // Structured output.
    match request.get("response_format").and_then(|r| r.get("type")).and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = request
                .get("response_format")
                .and_then(|r| r.get("json_schema"))
                .and_then(|j| j.get("schema"))
                .cloned()
                .ok_or_else(|| reject("response_format.json_schema.schema", "json_schema.schema is required"))?;
            out.insert("output_config".into(), json!({"format": {"type": "json_schema", "schema": schema}}));
        }
        Some("json_object") => system.push(text_block("Respond only with a JSON object.")),
        _ => {}
    }

    if !system.is_empty() {
        let plain = system.iter().all(|b| b.get("cache_control").is_none());
        let value = if plain {
            let texts: Vec<&str> = system.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
            Value::from(texts.join("\n\n"))
        } else {
            Value::Array(system)
        };
        out.insert("system".into(), value);
    }
    out.insert("messages".into(), Value::Array(turns.into_messages()));

    // Sampling.
    let mut thinking = None;
    if let Some(budget) = request.get("reasoning_effort").and_then(Value::as_str).and_then(thinking_budget) {
        match client_max {
            None => {
                max_tokens = max_tokens.max(budget + DEFAULT_MAX_TOKENS);
                thinking = Some(budget);
            }
            Some(m) if m > 1024 => thinking = Some(budget.min(m - 1)),
            Some(_) => {} // too small a cap for thinking (budget ≥ 1024 < max_tokens): omit it
        }
    }
    out.insert("max_tokens".into(), Value::from(max_tokens));
    if let Some(budget) = thinking {
        out.insert("thinking".into(), json!({"type":"enabled","budget_tokens":budget}));
    }
    if let Some(t) = request.get("temperature").and_then(Value::as_f64)
        && thinking.is_none()
    {
        out.insert("temperature".into(), Value::from(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = request.get("top_p").and_then(Value::as_f64)
        && (thinking.is_none() || p >= 0.95)
    {
        out.insert("top_p".into(), Value::from(p));
    }
    if let Some(k) = request.get("top_k").and_then(Value::as_u64)
        && thinking.is_none()
    {
        out.insert("top_k".into(), Value::from(k));
    }
    match request.get("stop") {
        Some(Value::String(s)) if !s.is_empty() => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            let seqs: Vec<Value> = a.iter().filter(|v| v.as_str().is_some_and(|s| !s.is_empty())).cloned().collect();
            if !seqs.is_empty() {
                out.insert("stop_sequences".into(), Value::Array(seqs));
            }
        }
        _ => {}
    }

    // Tools.
    let mut tools: Vec<Value> = Vec::new();
    if let Some(list) = request.get("tools").and_then(Value::as_array) {
        for (i, tool) in list.iter().enumerate() {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") | None => {}
                Some(other) => return Err(reject(format!("tools[{i}].type"), format!("tool type {other} is not supported by this model's provider"))),
            }
            let f = tool.get("function").and_then(Value::as_object).ok_or_else(|| reject(format!("tools[{i}].function"), "function must be an object"))?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("tools[{i}].function.name"), "function name must be a string"))?;
            let mut t = Map::new();
            t.insert("name".into(), Value::from(name));
            if let Some(d) = f.get("description").and_then(Value::as_str) {
                t.insert("description".into(), Value::from(d));
            }
            let schema = f.get("parameters").filter(|p| !p.is_null()).cloned().unwrap_or_else(|| json!({"type":"object","properties":{}}));
            t.insert("input_schema".into(), schema);
            if let Some(s) = f.get("strict").and_then(Value::as_bool) {
                t.insert("strict".into(), Value::from(s));
            }
            if let Some(cc) = tool.get("cache_control") {
                t.insert("cache_control".into(), cc.clone());
            }
            tools.push(Value::Object(t));
        }
    }
    let mut choice: Option<Map<String, Value>> = match request.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json_obj(json!({"type":"auto"}))),
            "none" => Some(json_obj(json!({"type":"none"}))),
            "required" => Some(json_obj(json!({"type":"any"}))),
            other => return Err(reject("tool_choice", format!("unknown tool_choice {other}"))),
        },
        Some(c @ Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = tool_name(c).ok_or_else(|| reject("tool_choice.function.name", "function name must be a string"))?;
                Some(json_obj(json!({"type":"tool","name":name})))
            }
            Some("allowed_tools") => {
                let at = o.get("allowed_tools").ok_or_else(|| reject("tool_choice.allowed_tools", "allowed_tools must be an object"))?;
                let names: Vec<&str> = at.get("tools").and_then(Value::as_array).map(|l| l.iter().filter_map(tool_name).collect()).unwrap_or_default();
                tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(|n| names.contains(&n)));
                match at.get("mode").and_then(Value::as_str) {
                    Some("required") => Some(json_obj(json!({"type":"any"}))),
                    _ => Some(json_obj(json!({"type":"auto"}))),
                }
            }
            _ => return Err(reject("tool_choice.type", "tool_choice type is not supported by this model's provider")),
        },
        Some(_) => return Err(reject("tool_choice", "tool_choice must be a string or an object")),
    };
    if request.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) && !tools.is_empty() {
        let c = choice.get_or_insert_with(|| json_obj(json!({"type":"auto"})));
        if c.get("type").and_then(Value::as_str) != Some("none") {
            c.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    // Without tools a tool_choice means nothing to Anthropic (and is rejected): dropped.
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            out.insert("tool_choice".into(), Value::Object(c));
        }
    }

    // End user.
    if let Some(u) = ["safety_identifier", "user"].iter().find_map(|k| request.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty())) {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(out)
}

fn json_obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `finish_reason` for a `stop_reason` (§7.5); unknown or missing → `stop` (or `tool_calls`
/// when the answer holds tool calls).
pub(crate) fn finish_reason(stop_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Anthropic `usage` (every field optional: `message_delta` may carry only `output_tokens`).
#[derive(Debug, Default, Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct OutputDetails {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

/// Raw Anthropic counters; later reports replace earlier ones field by field (they are
/// cumulative, §2.6), never add up.
#[derive(Debug, Default, Clone, Copy)]
struct UsageAcc {
    input: u64,
    output: u64,
    cache_write: u64,
    cache_read: u64,
    thinking: u64,
}

impl UsageAcc {
    fn apply(&mut self, u: &AnthropicUsage) {
        if let Some(v) = u.input_tokens {
            self.input = v;
        }
        if let Some(v) = u.output_tokens {
            self.output = v;
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.cache_write = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.cache_read = v;
        }
        if let Some(v) = u.output_tokens_details.as_ref().and_then(|d| d.thinking_tokens) {
            self.thinking = v;
        }
    }

    /// §7.6: `prompt_tokens = input + cache_read + cache_creation`.
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.input.saturating_add(self.cache_read).saturating_add(self.cache_write),
            completion_tokens: self.output,
            cached_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            reasoning_tokens: self.thinking,
        }
    }
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    /// `thinking` blocks: the reasoning text and its signature.
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    /// `redacted_thinking` blocks: the encrypted reasoning.
    #[serde(default)]
    data: Option<String>,
}

/// `chatcmpl-…` id derived from an Anthropic `msg_…` id (stable, keeps the upstream id visible).
fn completion_id(msg_id: &str) -> String {
    let core = msg_id.strip_prefix("msg_").unwrap_or(msg_id);
    if core.is_empty() { format!("chatcmpl-{}", gatehouse_types::new_id().simple()) } else { format!("chatcmpl-{core}") }
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A Messages response → `chat.completion` (§7.3). `thinking` text is returned in
/// `message.reasoning_content` (joined), and every `thinking` / `redacted_thinking` block
/// verbatim in `message.thinking_blocks` ([`THINKING_BLOCKS`]) for the round trip.
pub(crate) fn parse_response(bytes: &[u8], upstream_model: &str) -> Result<(Value, Usage), UpstreamError> {
    let msg: Message = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) => {
            // A 200 carrying an error envelope is an in-band error.
            if serde_json::from_slice::<TypePeek<'_>>(bytes).is_ok_and(|p| p.kind == "error") {
                return Err(UpstreamError::mid_stream(bytes));
            }
            return Err(UpstreamError::Protocol(format!("messages body is not a Message: {e}")));
        }
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut reasoning = String::new();
    let mut thinking = Vec::new();
    for b in &msg.content {
        match b.kind.as_str() {
            "text" => text.push_str(b.text.as_deref().unwrap_or_default()),
            "thinking" => {
                let t = b.thinking.as_deref().unwrap_or_default();
                reasoning.push_str(t);
                thinking.push(json!({"type":"thinking","thinking":t,"signature":b.signature.as_deref().unwrap_or_default()}));
            }
            "redacted_thinking" => thinking.push(json!({"type":"redacted_thinking","data":b.data.as_deref().unwrap_or_default()})),
            "tool_use" => {
                let args = b.input.as_ref().map_or("{}", |r| r.get());
                tool_calls.push(json!({
                    "id": b.id.as_deref().unwrap_or_default(),
                    "type": "function",
                    "function": {"name": b.name.as_deref().unwrap_or_default(), "arguments": args},
                }));
            }
            _ => {}
        }
    }
    let acc = {
        let mut a = UsageAcc::default();
        if let Some(u) = &msg.usage {
            a.apply(u);
        }
        a
    };
    let usage = acc.usage();
    let has_tools = !tool_calls.is_empty();
    let content = if text.is_empty() && has_tools { Value::Null } else { Value::from(text) };
    let mut message = json!({"role":"assistant","content":content,"refusal":null});
    if let Value::Object(m) = &mut message {
        if !reasoning.is_empty() {
            m.insert("reasoning_content".into(), Value::from(reasoning));
        }
        if !thinking.is_empty() {
            m.insert(THINKING_BLOCKS.into(), Value::Array(thinking));
        }
        if has_tools {
            m.insert("tool_calls".into(), Value::Array(tool_calls));
        }
    }
    let body = json!({
        "id": completion_id(&msg.id),
        "object": CHAT_COMPLETION,
        "created": unix_now(),
        "model": msg.model.as_deref().unwrap_or(upstream_model),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(msg.stop_reason.as_deref(), has_tools),
        }],
        "usage": WireUsage::from_usage(&usage),
    });
    Ok((body, usage))
}

// ---- streaming ----------------------------------------------------------------------------

mod stream;
pub(crate) use stream::AnthropicStream;
use stream::TypePeek;

#[cfg(test)]
mod tests;
