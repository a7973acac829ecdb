//! AWS Bedrock Runtime upstream, Converse and ConverseStream (`wire-formats.md` §6; AWS
//! "Bedrock Runtime API Reference": `Converse`, `ConverseStream`): OpenAI chat request →
//! Converse request (§7.0 concepts, §7.1 rules where Converse follows Anthropic), Converse
//! response → `chat.completion`, ConverseStream event stream → `chat.completion.chunk`s
//! ([`stream`]), stop reasons (§7.5), usage (§7.6) and `x-amzn-ErrorType` errors (§6, §7.8).
//! Authentication (SigV4 or a Bedrock API key) is in [`auth`].
//!
//! Request mapping:
//!
//! | OpenAI | Converse |
//! |---|---|
//! | `system`/`developer` messages | `system: [{text}]` |
//! | `user` text / `image_url` (base64 data URL) / `file` (PDF data URL) | `text` / `image {format, source.bytes}` / `document {format: pdf, name, source.bytes}` |
//! | `assistant` text + `tool_calls` | `text` + `toolUse {toolUseId, name, input}` |
//! | `tool` messages | `toolResult {toolUseId, content: [{text}], status: success}` in the next user turn |
//! | `max_completion_tokens` ?? `max_tokens`, `temperature`, `top_p`, `stop` | `inferenceConfig {maxTokens, temperature, topP, stopSequences}` |
//! | `tools`, `tool_choice` `auto`/`required`/`{function}` | `toolConfig {tools: [{toolSpec}], toolChoice: auto/any/tool}`; `none` omits `toolConfig` (kept without `toolChoice` when the history holds tool blocks, which Converse requires) |
//! | `reasoning_effort` | `additionalModelRequestFields`: `thinking {type: enabled, budget_tokens}` for `anthropic.` models, `reasoningConfig {type: enabled, maxReasoningEffort}` for `amazon.nova` models, else `reasoning_effort` |
//! | `response_format` `json_object` / `json_schema` | a system instruction (Converse has no JSON mode) |
//! | `top_k` | `additionalModelRequestFields.top_k` (Anthropic models only) |
//!
//! Rejected with 400 naming the field (nothing sent): `n > 1`, `logprobs`, image URLs that are
//! not base64 data URLs (Converse takes bytes or S3 locations; the gateway does not fetch URLs),
//! audio parts. Dropped: `seed`, penalties, `logit_bias`, `user`, `parallel_tool_calls`,
//! `stream_options`.
//!
//! Response: `text` blocks → `content`, `toolUse` → `tool_calls` (arguments = `input` as JSON
//! text), `reasoningContent.reasoningText.text` → `reasoning_content`; usage
//! `prompt_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens`,
//! `completion_tokens = outputTokens` (Bedrock reports no reasoning-token count).

use gatehouse_types::Usage;
use gatehouse_types::openai::{CHAT_COMPLETION, WireUsage};
use serde_json::{Map, Value, json};

use crate::UpstreamError;
use crate::common::{arguments_object, image_url, max_tokens, parse_data_url, reject, stop_list};

pub mod auth;
pub(crate) mod stream;

pub(crate) use stream::BedrockStream;

/// `maxTokens` sent with a thinking budget when the client set no cap (the budget is added).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// `POST {base}/model/{modelId}/converse` or `…/converse-stream`, the model id percent-encoded
/// as one path segment (`:` → `%3A`, `/` in ARNs → `%2F`, §6).
pub(crate) fn endpoint(base: &str, model: &str, stream: bool) -> String {
    let mut url = String::with_capacity(base.len() + model.len() * 3 + 24);
    url.push_str(base.trim_end_matches('/'));
    url.push_str("/model/");
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url.push_str(if stream { "/converse-stream" } else { "/converse" });
    url
}

/// Image formats Converse accepts (`ImageBlock.format`).
fn image_format(mime: &str) -> Option<&'static str> {
    match mime {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

/// A `DocumentBlock.name`: only alphanumerics, single spaces, hyphens, parentheses and square
/// brackets are allowed; anything else becomes a hyphen.
fn document_name(filename: Option<&str>, index: usize) -> String {
    let base = filename.map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem)).unwrap_or_default();
    let mut name: String = base
        .chars()
        .take(200)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') { c } else { '-' })
        .collect();
    if name.trim_matches('-').is_empty() {
        name = format!("document-{}", index + 1);
    }
    name
}

/// User (or tool-result) content → Converse content blocks; empty text is dropped (Converse
/// rejects blank text blocks).
fn user_blocks(content: Option<&Value>, param: &str, docs: &mut usize, out: &mut Vec<Value>) -> Result<(), UpstreamError> {
    match content {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(json!({"text": s}));
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
                            out.push(json!({"text": text}));
                        }
                    }
                    Some("image_url") => {
                        let url = image_url(part, &p)?;
                        let (mime, data) = parse_data_url(&url).ok_or_else(|| {
                            reject(format!("{p}.image_url.url"), "this model's provider takes images as base64 data URLs (data:image/png;base64,…) only")
                        })?;
                        let format = image_format(mime).ok_or_else(|| {
                            reject(format!("{p}.image_url.url"), format!("image type {mime} is not supported by this model's provider (png, jpeg, gif, webp only)"))
                        })?;
                        out.push(json!({"image": {"format": format, "source": {"bytes": data}}}));
                    }
                    Some("file") => {
                        let file = part.get("file").and_then(Value::as_object).ok_or_else(|| reject(format!("{p}.file"), "file must be an object"))?;
                        if file.contains_key("file_id") {
                            return Err(reject(format!("{p}.file.file_id"), "file_id is not supported by this model's provider; send file_data"));
                        }
                        let data = file.get("file_data").and_then(Value::as_str).unwrap_or_default();
                        match parse_data_url(data) {
                            Some(("application/pdf", b64)) => {
                                let name = document_name(file.get("filename").and_then(Value::as_str), *docs);
                                *docs += 1;
                                out.push(json!({"document": {"format": "pdf", "name": name, "source": {"bytes": b64}}}));
                            }
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

/// Assistant text/refusal and tool calls → `text` then `toolUse` blocks.
fn assistant_blocks(msg: &Map<String, Value>, param: &str, out: &mut Vec<Value>) -> Result<(), UpstreamError> {
    let text = crate::common::text_only(msg.get("content"), &format!("{param}.content"))?;
    if !text.is_empty() {
        out.push(json!({"text": text}));
    }
    if let Some(r) = msg.get("refusal").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        out.push(json!({"text": r}));
    }
    match msg.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (i, call) in calls.iter().enumerate() {
                let p = format!("{param}.tool_calls[{i}]");
                let id = call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| reject(format!("{p}.id"), "tool call id must be a string"))?;
                let f = call.get("function").ok_or_else(|| reject(format!("{p}.function"), "only function tool calls are supported by this model's provider"))?;
                let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("{p}.function.name"), "function name must be a string"))?;
                let input = arguments_object(f, &p)?;
                out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
            }
        }
        Some(_) => return Err(reject(format!("{param}.tool_calls"), "tool_calls must be an array")),
    }
    Ok(())
}

/// A `tool` message → one `toolResult` block.
fn tool_result_block(msg: &Map<String, Value>, param: &str, docs: &mut usize) -> Result<Value, UpstreamError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| reject(format!("{param}.tool_call_id"), "tool messages need a tool_call_id"))?;
    let mut content = Vec::new();
    user_blocks(msg.get("content"), &format!("{param}.content"), docs, &mut content)?;
    if content.is_empty() {
        // Converse rejects an empty result and blank text: an empty JSON object says "nothing".
        content.push(json!({"json": {}}));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": content, "status": "success"}}))
}

fn is_tool_block(b: &Value) -> bool {
    b.get("toolUse").is_some() || b.get("toolResult").is_some()
}

/// Turns with consecutive same-role messages merged (Converse requires alternation); tool
/// results are kept ahead of other content in their user turn.
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
        let at = turn.iter().take_while(|b| b.get("toolResult").is_some()).count();
        turn.insert(at, block);
    }

    fn has_tool_blocks(&self) -> bool {
        self.0.iter().any(|(_, blocks)| blocks.iter().any(is_tool_block))
    }

    fn into_messages(self) -> Vec<Value> {
        self.0.into_iter().filter(|(_, b)| !b.is_empty()).map(|(role, content)| json!({"role": role, "content": content})).collect()
    }
}

/// Which reasoning knob a Bedrock model family takes in `additionalModelRequestFields`.
fn is_anthropic_model(model: &str) -> bool {
    // Plain ids (`anthropic.claude-…`), cross-region inference profiles (`us.anthropic.…`,
    // `global.anthropic.…`) and ARNs naming either.
    model.contains("anthropic.")
}

fn is_nova_model(model: &str) -> bool {
    model.contains("amazon.nova")
}

/// The Converse request body for an OpenAI chat request (see the module table). The model goes
/// in the URL ([`endpoint`]), not the body.
pub(crate) fn build_request(request: &Map<String, Value>, upstream_model: &str) -> Result<Map<String, Value>, UpstreamError> {
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
    let mut docs = 0usize;
    for (i, msg) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Value::Object(msg) = msg else {
            return Err(reject(param, "messages must be objects"));
        };
        match msg.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                let text = crate::common::text_only(msg.get("content"), &format!("{param}.content"))?;
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            Some("user") => {
                let mut blocks = Vec::new();
                user_blocks(msg.get("content"), &format!("{param}.content"), &mut docs, &mut blocks)?;
                turns.push("user", blocks);
            }
            Some("assistant") => {
                let mut blocks = Vec::new();
                assistant_blocks(msg, &param, &mut blocks)?;
                turns.push("assistant", blocks);
            }
            Some("tool") => turns.push_tool_result(tool_result_block(msg, &param, &mut docs)?),
            Some(other) => return Err(reject(format!("{param}.role"), format!("role {other} is not supported by this model's provider"))),
            None => return Err(reject(format!("{param}.role"), "role must be a string")),
        }
    }

    // Structured output: Converse has no JSON mode; say it in the system prompt.
    match request.get("response_format").and_then(|r| r.get("type")).and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = request
                .get("response_format")
                .and_then(|r| r.pointer("/json_schema/schema"))
                .ok_or_else(|| reject("response_format.json_schema.schema", "json_schema.schema is required"))?;
            system.push(json!({"text": format!("Respond only with a JSON object that matches this JSON schema: {schema}")}));
        }
        Some("json_object") => system.push(json!({"text": "Respond only with a JSON object."})),
        _ => {}
    }

    let has_tool_blocks = turns.has_tool_blocks();
    let mut out = Map::new();
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns.into_messages()));

    // Inference configuration and reasoning.
    let client_max = max_tokens(request)?;
    let mut inference = Map::new();
    let mut additional = Map::new();
    let effort = request.get("reasoning_effort").and_then(Value::as_str).filter(|e| !e.is_empty() && *e != "none");
    let mut thinking = false;
    let mut max = client_max;
    if let Some(effort) = effort {
        if is_anthropic_model(upstream_model) {
            if let Some(budget) = crate::anthropic::thinking_budget(effort) {
                match client_max {
                    None => {
                        max = Some(budget + DEFAULT_MAX_TOKENS);
                        thinking = true;
                        additional.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
                    }
                    Some(m) if m > 1024 => {
                        thinking = true;
                        additional.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget.min(m - 1)}));
                    }
                    Some(_) => {} // too small a cap for a thinking budget (≥ 1024): omitted
                }
            }
        } else if is_nova_model(upstream_model) {
            let level = match effort {
                "minimal" | "low" => "low",
                "medium" => "medium",
                _ => "high",
            };
            additional.insert("reasoningConfig".into(), json!({"type": "enabled", "maxReasoningEffort": level}));
        } else {
            additional.insert("reasoning_effort".into(), Value::from(effort));
        }
    }
    if let Some(m) = max {
        inference.insert("maxTokens".into(), Value::from(m));
    }
    // Anthropic models refuse temperature/top_p/top_k changes while thinking.
    if !thinking {
        if let Some(t) = request.get("temperature").and_then(Value::as_f64) {
            inference.insert("temperature".into(), Value::from(t));
        }
        if let Some(p) = request.get("top_p").and_then(Value::as_f64) {
            inference.insert("topP".into(), Value::from(p));
        }
        if let Some(k) = request.get("top_k").and_then(Value::as_u64)
            && is_anthropic_model(upstream_model)
        {
            additional.insert("top_k".into(), Value::from(k));
        }
    }
    let stops: Vec<String> = stop_list(request)?.into_iter().filter(|s| !s.is_empty()).collect();
    if !stops.is_empty() {
        inference.insert("stopSequences".into(), json!(stops));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }

    // Tools.
    if let Some(tool_config) = tool_config(request, has_tool_blocks)? {
        out.insert("toolConfig".into(), tool_config);
    }
    if !additional.is_empty() {
        out.insert("additionalModelRequestFields".into(), Value::Object(additional));
    }
    Ok(out)
}

fn tool_name(choice: &Value) -> Option<&str> {
    choice.get("function").and_then(|f| f.get("name")).and_then(Value::as_str)
}

/// `toolConfig` from `tools` and `tool_choice`; `None` when there is nothing to send.
fn tool_config(request: &Map<String, Value>, has_tool_blocks: bool) -> Result<Option<Value>, UpstreamError> {
    let mut tools: Vec<(String, Value)> = Vec::new();
    if let Some(list) = request.get("tools").and_then(Value::as_array) {
        for (i, tool) in list.iter().enumerate() {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") | None => {}
                Some(other) => return Err(reject(format!("tools[{i}].type"), format!("tool type {other} is not supported by this model's provider"))),
            }
            let f = tool.get("function").and_then(Value::as_object).ok_or_else(|| reject(format!("tools[{i}].function"), "function must be an object"))?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("tools[{i}].function.name"), "function name must be a string"))?;
            let mut spec = Map::new();
            spec.insert("name".into(), Value::from(name));
            if let Some(d) = f.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()) {
                spec.insert("description".into(), Value::from(d));
            }
            let schema = f.get("parameters").filter(|p| !p.is_null()).cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({"json": schema}));
            tools.push((name.to_owned(), json!({"toolSpec": spec})));
        }
    }
    let choice: Option<Value> = match request.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "none" => Some(Value::Null),
            "required" => Some(json!({"any": {}})),
            other => return Err(reject("tool_choice", format!("unknown tool_choice {other}"))),
        },
        Some(c @ Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = tool_name(c).ok_or_else(|| reject("tool_choice.function.name", "function name must be a string"))?;
                Some(json!({"tool": {"name": name}}))
            }
            Some("allowed_tools") => {
                let at = o.get("allowed_tools").ok_or_else(|| reject("tool_choice.allowed_tools", "allowed_tools must be an object"))?;
                let names: Vec<&str> = at.get("tools").and_then(Value::as_array).map(|l| l.iter().filter_map(tool_name).collect()).unwrap_or_default();
                tools.retain(|(n, _)| names.contains(&n.as_str()));
                match at.get("mode").and_then(Value::as_str) {
                    Some("required") => Some(json!({"any": {}})),
                    _ => Some(json!({"auto": {}})),
                }
            }
            _ => return Err(reject("tool_choice.type", "tool_choice type is not supported by this model's provider")),
        },
        Some(_) => return Err(reject("tool_choice", "tool_choice must be a string or an object")),
    };
    if tools.is_empty() {
        return Ok(None);
    }
    let none = matches!(choice, Some(Value::Null));
    if none && !has_tool_blocks {
        // Converse has no "none": without toolConfig the model cannot call a tool.
        return Ok(None);
    }
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(tools.into_iter().map(|(_, t)| t).collect()));
    if let Some(c) = choice.filter(|c| !c.is_null()) {
        config.insert("toolChoice".into(), c);
    }
    Ok(Some(Value::Object(config)))
}

/// `finish_reason` for a Converse `stopReason` (§7.5); unknown or missing → `stop` (or
/// `tool_calls` when the answer holds tool calls).
pub(crate) fn finish_reason(stop_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match stop_reason {
        Some("tool_use") => "tool_calls",
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        Some("end_turn" | "stop_sequence") => "stop",
        Some(other @ ("malformed_model_output" | "malformed_tool_use")) => {
            tracing::debug!(stop_reason = other, "bedrock reported a malformed model output");
            if has_tool_calls { "tool_calls" } else { "stop" }
        }
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Converse `TokenUsage` → [`Usage`] (§7.6): cached reads and writes are part of the prompt.
pub(crate) fn usage_of(u: Option<&Value>) -> Usage {
    let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let (input, read, write) = (n("inputTokens"), n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    Usage {
        prompt_tokens: input.saturating_add(read).saturating_add(write),
        completion_tokens: n("outputTokens"),
        cached_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

pub(crate) fn new_completion_id() -> String {
    format!("chatcmpl-{}", gatehouse_types::new_id().simple())
}

/// A Converse response → `chat.completion`.
///
/// Errors: [`UpstreamError::Protocol`] when the body is not a Converse response.
pub(crate) fn parse_response(bytes: &[u8], upstream_model: &str) -> Result<(Value, Usage), UpstreamError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| UpstreamError::Protocol(format!("converse body is not JSON: {e}")))?;
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| UpstreamError::Protocol("converse body has no output.message.content".into()))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let args = tu.get("input").map_or_else(|| "{}".to_owned(), Value::to_string);
            tool_calls.push(json!({
                "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or_default(),
                "type": "function",
                "function": {"name": tu.get("name").and_then(Value::as_str).unwrap_or_default(), "arguments": args},
            }));
        } else if let Some(t) = block.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str) {
            reasoning.push_str(t);
        }
    }
    let usage = usage_of(v.get("usage"));
    let has_tools = !tool_calls.is_empty();
    let content = if text.is_empty() && has_tools { Value::Null } else { Value::from(text) };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::from(reasoning);
    }
    if has_tools {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let body = json!({
        "id": new_completion_id(),
        "object": CHAT_COMPLETION,
        "created": crate::anthropic::unix_now(),
        "model": upstream_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(v.get("stopReason").and_then(Value::as_str), has_tools),
        }],
        "usage": WireUsage::from_usage(&usage),
    });
    Ok((body, usage))
}

/// The exception name of an `x-amzn-ErrorType` value (`ThrottlingException:http://…` →
/// `ThrottlingException`).
fn exception_name(value: &str) -> &str {
    value.split(':').next().unwrap_or(value).trim()
}

/// Refines an error answer with Bedrock's `x-amzn-ErrorType` (§6, §7.8): the exception name
/// becomes `provider_code`, and statuses are normalised so that the client sees the right
/// class — `ModelErrorException` (424) → 502, `ModelTimeoutException` (408) → 504,
/// `ServiceQuotaExceededException` → 429, `ModelNotReadyException` stays 429 (retryable).
/// `AccessDeniedException`/`UnrecognizedClientException` (403) stay 403, which the client sees
/// as the generic upstream-auth 502 (DESIGN: gateway-owned keys).
pub(crate) fn refine_status(err: UpstreamError, headers: &http::HeaderMap) -> UpstreamError {
    let UpstreamError::Status { status, retry_after, provider_code, message } = err else { return err };
    let name = headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(exception_name).filter(|n| !n.is_empty());
    let status = match name {
        Some("ModelErrorException") => 502,
        Some("ModelTimeoutException") => 504,
        Some("ServiceQuotaExceededException" | "ThrottlingException" | "ModelNotReadyException") => 429,
        _ => status,
    };
    UpstreamError::Status { status, retry_after, provider_code: name.map(str::to_owned).or(provider_code), message }
}

/// A ConverseStream exception frame (`:message-type: exception`) → a mid-stream error whose
/// `provider_code` is the exception type (`throttlingException`, `modelStreamErrorException`,
/// `validationException`, `internalServerException`, `serviceUnavailableException`).
pub(crate) fn stream_exception(kind: &str, payload: &str) -> UpstreamError {
    let message = serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).map(str::to_owned))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("the upstream provider reported {kind} mid-stream"));
    let message: String = message.chars().take(2000).collect();
    UpstreamError::MidStream { provider_code: Some(kind.to_owned()), message }
}

#[cfg(test)]
mod tests;
