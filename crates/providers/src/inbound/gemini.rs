//! Gemini inbound (`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`,
//! also under `/v1/`; `wire-formats.md` §3): `GenerateContentRequest` → internal OpenAI chat
//! request (the reverse of §7.7), `chat.completion` → `GenerateContentResponse` (§3.2), OpenAI
//! chunk stream → `GenerateContentResponse` chunks (§3.3), finish reasons (§7.5 reverse: `stop`
//! → `STOP`, `length` → `MAX_TOKENS`, `tool_calls` → `STOP`, `content_filter` → `SAFETY`), usage
//! (§7.6 reverse), errors `{"error":{"code","message","status"}}` (§3.4).
//!
//! Function calls: every `functionCall` part returned to the client carries an `id` (the
//! upstream's tool-call id); a `functionResponse` is matched to its call by that `id`, else by
//! `name` (first unanswered call of that name in the preceding model turn). `thoughtSignature`s
//! are dropped (OpenAI-shaped upstreams have none to verify).
//!
//! Unsupported (400 naming the field): built-in tools (`googleSearch`, `codeExecution`,
//! `urlContext`), `executableCode`/`codeExecutionResult` parts, `fileData` other than an http(s)
//! image URL, `inlineData` other than images, PDF and wav/mp3 audio, `cachedContent`.
//! Dropped: `safetySettings`, `topK`, `responseModalities`, `thoughtSignature`.

use gatehouse_types::{ApiError, ErrorCode, Usage};
use serde_json::{Map, Value, json};

use super::{arguments_object, bad, content_text, message_tool_calls, reasoning_text, usage_of};

/// A validated, translated Gemini request.
#[derive(Debug, Clone)]
pub struct GeminiRequest {
    /// The model named in the URL (routing key).
    pub model: String,
    /// `thinkingConfig.includeThoughts`: upstream reasoning is returned as `thought: true` parts.
    pub include_thoughts: bool,
    /// `reasoning_effort` from `thinkingConfig` (`thinkingLevel`, or `thinkingBudget`: ≤2048 low,
    /// ≤8192 medium, else high; 0 → none); the gateway adds it only for reasoning models.
    pub reasoning_effort: Option<&'static str>,
    /// The internal OpenAI chat body.
    pub body: Map<String, Value>,
}

/// Reads a field in lowerCamelCase or, as the API also accepts, snake_case.
fn field<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel).or_else(|| o.get(snake)).filter(|v| !v.is_null())
}

/// Validates and translates a `GenerateContentRequest` for `model` (from the URL); `stream`
/// selects the streamed method.
///
/// Errors: 400 `invalid_request` naming the field (`contents[1].parts[0]`, `tools[0]`, …).
pub fn parse_request(model: &str, stream: bool, req: &Map<String, Value>) -> Result<GeminiRequest, ApiError> {
    if model.is_empty() {
        return Err(bad("model", "the URL must name a model: /v1beta/models/{model}:generateContent"));
    }
    if field(req, "cachedContent", "cached_content").is_some() {
        return Err(bad("cachedContent", "explicit context caches are not supported through this gateway"));
    }
    let mut messages = Vec::new();
    if let Some(sys) = field(req, "systemInstruction", "system_instruction") {
        let text = match sys {
            Value::String(s) => s.clone(),
            Value::Object(o) => parts_text(o.get("parts")),
            _ => return Err(bad("systemInstruction", "`systemInstruction` must be a Content object")),
        };
        if !text.is_empty() {
            messages.push(json!({"role":"system","content":text}));
        }
    }
    let contents = match req.get("contents") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None => return Err(bad("contents", "`contents` must hold at least one Content")),
        Some(_) => return Err(bad("contents", "`contents` must be an array")),
    };
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut counter = 0usize;
    for (i, c) in contents.iter().enumerate() {
        let p = format!("contents[{i}]");
        let Some(c) = c.as_object() else { return Err(bad(p, "each Content must be an object")) };
        let parts = match c.get("parts") {
            Some(Value::Array(a)) => a.as_slice(),
            _ => return Err(bad(format!("{p}.parts"), "`parts` must be an array")),
        };
        match c.get("role").and_then(Value::as_str).unwrap_or("user") {
            "user" => user_content(parts, &p, &mut pending, &mut messages)?,
            "model" => pending = model_content(parts, &p, &mut counter, &mut messages)?,
            _ => return Err(bad(format!("{p}.role"), "`role` must be `user` or `model`")),
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_string()));
    body.insert("messages".into(), Value::Array(messages));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let (include_thoughts, reasoning_effort) = generation_config(req, &mut body)?;
    let tools = translate_tools(req.get("tools"))?;
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        tool_config(field(req, "toolConfig", "tool_config"), &mut body)?;
    }
    Ok(GeminiRequest { model: model.to_string(), include_thoughts, reasoning_effort, body })
}

fn parts_text(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn user_content(
    parts: &[Value],
    p: &str,
    pending: &mut Vec<(String, String)>,
    out: &mut Vec<Value>,
) -> Result<(), ApiError> {
    let mut user_parts = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}.parts[{j}]");
        let Some(o) = part.as_object() else { return Err(bad(pp, "each part must be an object")) };
        if let Some(fr) = field(o, "functionResponse", "function_response") {
            let name = fr.get("name").and_then(Value::as_str).unwrap_or_default();
            let id = fr.get("id").and_then(Value::as_str);
            let pos = pending
                .iter()
                .position(|(pid, _)| Some(pid.as_str()) == id)
                .or_else(|| pending.iter().position(|(_, n)| n == name))
                .ok_or_else(|| {
                    bad(format!("{pp}.functionResponse"), "this functionResponse answers no functionCall of the preceding model turn")
                })?;
            let (call_id, _) = pending.remove(pos);
            let response = fr.get("response").cloned().unwrap_or(Value::Null);
            let content = match response.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) if response.as_object().is_some_and(|r| r.len() == 1) => other.to_string(),
                _ => response.to_string(),
            };
            out.push(json!({"role":"tool","tool_call_id":call_id,"content":content}));
        } else if let Some(t) = o.get("text").and_then(Value::as_str) {
            user_parts.push(json!({"type":"text","text":t}));
        } else if let Some(d) = field(o, "inlineData", "inline_data") {
            user_parts.push(inline_part(d, &pp)?);
        } else if let Some(f) = field(o, "fileData", "file_data") {
            let uri = f.get("fileUri").or_else(|| f.get("file_uri")).and_then(Value::as_str).unwrap_or_default();
            let mime = f.get("mimeType").or_else(|| f.get("mime_type")).and_then(Value::as_str).unwrap_or("image/");
            if !(uri.starts_with("https://") || uri.starts_with("http://")) || !mime.starts_with("image/") {
                return Err(bad(format!("{pp}.fileData"), "only http(s) image URLs are supported in fileData"));
            }
            user_parts.push(json!({"type":"image_url","image_url":{"url":uri}}));
        } else {
            return Err(bad(pp, "unsupported part: use text, inlineData, fileData or functionResponse"));
        }
    }
    if user_parts.is_empty() {
        return Ok(());
    }
    let content = match user_parts.as_slice() {
        [one] if one["type"] == "text" => one["text"].clone(),
        _ => Value::Array(user_parts),
    };
    out.push(json!({"role":"user","content":content}));
    Ok(())
}

fn inline_part(d: &Value, pp: &str) -> Result<Value, ApiError> {
    let mime = d.get("mimeType").or_else(|| d.get("mime_type")).and_then(Value::as_str).unwrap_or_default();
    let data = d.get("data").and_then(Value::as_str).unwrap_or_default();
    Ok(match mime {
        m if m.starts_with("image/") => json!({"type":"image_url","image_url":{"url":format!("data:{m};base64,{data}")}}),
        "application/pdf" => {
            json!({"type":"file","file":{"filename":"document.pdf","file_data":format!("data:application/pdf;base64,{data}")}})
        }
        "audio/wav" | "audio/x-wav" => json!({"type":"input_audio","input_audio":{"data":data,"format":"wav"}}),
        "audio/mp3" | "audio/mpeg" => json!({"type":"input_audio","input_audio":{"data":data,"format":"mp3"}}),
        _ => return Err(bad(format!("{pp}.inlineData.mimeType"), format!("inline data of type `{mime}` is not supported"))),
    })
}

/// A model turn → one assistant message; returns the calls it made, as `(id, name)`.
fn model_content(parts: &[Value], p: &str, counter: &mut usize, out: &mut Vec<Value>) -> Result<Vec<(String, String)>, ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut made = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}.parts[{j}]");
        let Some(o) = part.as_object() else { return Err(bad(pp, "each part must be an object")) };
        if let Some(fc) = field(o, "functionCall", "function_call") {
            let name = fc.get("name").and_then(Value::as_str).ok_or_else(|| bad(format!("{pp}.functionCall.name"), "`name` is required"))?;
            let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
            if !args.is_object() {
                return Err(bad(format!("{pp}.functionCall.args"), "`args` must be an object"));
            }
            let id = match fc.get("id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => id.to_string(),
                _ => {
                    *counter += 1;
                    format!("call_{}_{}", sanitize(name), counter)
                }
            };
            calls.push(json!({"id":id,"type":"function","function":{"name":name,"arguments":args.to_string()}}));
            made.push((id, name.to_string()));
        } else if o.get("thought").and_then(Value::as_bool) == Some(true) {
            // Thought summaries are the model's, not part of the visible conversation.
        } else if let Some(t) = o.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else {
            return Err(bad(pp, "unsupported part in a model turn: use text or functionCall"));
        }
    }
    let mut msg = json!({"role":"assistant"});
    if calls.is_empty() {
        msg["content"] = Value::String(text);
    } else {
        msg["content"] = if text.is_empty() { Value::Null } else { Value::String(text) };
        msg["tool_calls"] = Value::Array(calls);
    }
    out.push(msg);
    Ok(made)
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// OpenAPI-subset schema (uppercase `type`s, `nullable`) → JSON Schema (lowercase types).
pub fn schema_to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                if k == "type"
                    && let Some(t) = val.as_str()
                {
                    out.insert(k.clone(), Value::String(t.to_ascii_lowercase()));
                } else {
                    out.insert(k.clone(), schema_to_json_schema(val));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(schema_to_json_schema).collect()),
        other => other.clone(),
    }
}

fn generation_config(req: &Map<String, Value>, body: &mut Map<String, Value>) -> Result<(bool, Option<&'static str>), ApiError> {
    let Some(cfg) = field(req, "generationConfig", "generation_config") else { return Ok((false, None)) };
    let Some(cfg) = cfg.as_object() else { return Err(bad("generationConfig", "`generationConfig` must be an object")) };
    // Counts are positive int32s (the API's `int32` fields, §3.2); a wrong type or a value ≤ 0
    // is answered 400 like Gemini does rather than passed on or silently dropped.
    for (camel, snake, openai) in [("maxOutputTokens", "max_output_tokens", "max_tokens"), ("candidateCount", "candidate_count", "n")] {
        if let Some(v) = field(cfg, camel, snake) {
            let n = v.as_i64().filter(|n| (1..=i64::from(i32::MAX)).contains(n)).ok_or_else(|| {
                bad(format!("generationConfig.{camel}"), format!("`{camel}` must be a positive integer"))
            })?;
            body.insert(openai.into(), Value::from(n));
        }
    }
    for (camel, snake, openai) in [
        ("temperature", "temperature", "temperature"),
        ("topP", "top_p", "top_p"),
        ("seed", "seed", "seed"),
        ("presencePenalty", "presence_penalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty", "frequency_penalty"),
    ] {
        if let Some(v) = field(cfg, camel, snake) {
            if !v.is_number() {
                return Err(bad(format!("generationConfig.{camel}"), format!("`{camel}` must be a number")));
            }
            body.insert(openai.into(), v.clone());
        }
    }
    match field(cfg, "stopSequences", "stop_sequences") {
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            if !a.is_empty() {
                body.insert("stop".into(), Value::Array(a.clone()));
            }
        }
        Some(_) => return Err(bad("generationConfig.stopSequences", "`stopSequences` must be an array of strings")),
        None => {}
    }
    let schema = field(cfg, "responseJsonSchema", "response_json_schema")
        .cloned()
        .or_else(|| field(cfg, "responseSchema", "response_schema").map(schema_to_json_schema));
    let mime = field(cfg, "responseMimeType", "response_mime_type").and_then(Value::as_str);
    match (schema, mime) {
        (Some(schema), _) => {
            body.insert("response_format".into(), json!({"type":"json_schema","json_schema":{"name":"output","schema":schema}}));
        }
        (None, Some("application/json")) => {
            body.insert("response_format".into(), json!({"type":"json_object"}));
        }
        _ => {}
    }
    let mut include_thoughts = false;
    let mut effort = None;
    if let Some(t) = field(cfg, "thinkingConfig", "thinking_config").and_then(Value::as_object) {
        include_thoughts = field(t, "includeThoughts", "include_thoughts").and_then(Value::as_bool).unwrap_or(false);
        if let Some(level) = field(t, "thinkingLevel", "thinking_level").and_then(Value::as_str) {
            effort = match level.to_ascii_uppercase().as_str() {
                "MINIMAL" | "LOW" => Some("low"),
                "MEDIUM" => Some("medium"),
                "HIGH" => Some("high"),
                _ => None,
            };
        } else if let Some(budget) = field(t, "thinkingBudget", "thinking_budget").and_then(Value::as_i64) {
            effort = match budget {
                i64::MIN..=-1 => Some("medium"),
                0 => None,
                1..=2048 => Some("low"),
                2049..=8192 => Some("medium"),
                _ => Some("high"),
            };
        }
    }
    Ok((include_thoughts, effort))
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("tools", "`tools` must be an array")),
    };
    let mut out = Vec::new();
    for (i, tool) in list.iter().enumerate() {
        let p = format!("tools[{i}]");
        let Some(t) = tool.as_object() else { return Err(bad(p, "each Tool must be an object")) };
        let Some(decls) = field(t, "functionDeclarations", "function_declarations") else {
            return Err(bad(p, "only functionDeclarations tools are supported (no googleSearch, codeExecution, urlContext)"));
        };
        if t.keys().any(|k| !matches!(k.as_str(), "functionDeclarations" | "function_declarations")) {
            return Err(bad(p, "only functionDeclarations tools are supported (no googleSearch, codeExecution, urlContext)"));
        }
        for (j, d) in decls.as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
            let dp = format!("{p}.functionDeclarations[{j}]");
            let Some(d) = d.as_object() else { return Err(bad(dp, "each declaration must be an object")) };
            let name = d.get("name").and_then(Value::as_str).ok_or_else(|| bad(format!("{dp}.name"), "`name` is required"))?;
            let params = field(d, "parametersJsonSchema", "parameters_json_schema")
                .cloned()
                .or_else(|| d.get("parameters").map(schema_to_json_schema))
                .unwrap_or_else(|| json!({"type":"object","properties":{}}));
            let mut f = json!({"name":name,"parameters":params});
            if let Some(desc) = d.get("description").and_then(Value::as_str) {
                f["description"] = json!(desc);
            }
            out.push(json!({"type":"function","function":f}));
        }
    }
    Ok(out)
}

fn tool_config(cfg: Option<&Value>, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(fcc) = cfg.and_then(|c| c.get("functionCallingConfig").or_else(|| c.get("function_calling_config"))) else {
        return Ok(());
    };
    let allowed: Vec<&str> = fcc
        .get("allowedFunctionNames")
        .or_else(|| fcc.get("allowed_function_names"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let choice = match fcc.get("mode").and_then(Value::as_str).map(str::to_ascii_uppercase).as_deref() {
        None | Some("AUTO" | "MODE_UNSPECIFIED") => json!("auto"),
        Some("NONE") => json!("none"),
        Some("ANY" | "VALIDATED") => match allowed.as_slice() {
            [one] => json!({"type":"function","function":{"name":one}}),
            _ => json!("required"),
        },
        Some(_) => return Err(bad("toolConfig.functionCallingConfig.mode", "`mode` must be AUTO, ANY, NONE or VALIDATED")),
    };
    if allowed.len() > 1
        && let Some(Value::Array(tools)) = body.get_mut("tools")
    {
        tools.retain(|t| t.pointer("/function/name").and_then(Value::as_str).is_some_and(|n| allowed.contains(&n)));
    }
    body.insert("tool_choice".into(), choice);
    Ok(())
}

/// OpenAI `finish_reason` → Gemini `finishReason` (§7.5 reverse).
pub fn finish_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length" | "model_length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

/// The Gemini `usageMetadata` of a normalised [`Usage`] (§3.2): `promptTokenCount` includes
/// cached tokens, `candidatesTokenCount` excludes thinking, which is `thoughtsTokenCount`.
pub fn usage_metadata(u: &Usage) -> Value {
    let mut m = json!({
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens.saturating_sub(u.reasoning_tokens),
        "totalTokenCount": u.total_tokens(),
    });
    if u.cached_tokens > 0 {
        m["cachedContentTokenCount"] = json!(u.cached_tokens);
    }
    if u.reasoning_tokens > 0 {
        m["thoughtsTokenCount"] = json!(u.reasoning_tokens);
    }
    m
}

fn function_call_part(id: &str, name: &str, arguments: &str) -> Result<Value, ApiError> {
    Ok(json!({"functionCall":{"id":id,"name":name,"args":arguments_object(arguments)?}}))
}

fn response_id(body: &Value) -> String {
    let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
    id.strip_prefix("chatcmpl-").unwrap_or(id).to_string()
}

/// `chat.completion` → `GenerateContentResponse` (§3.2). `model` is the client's model name.
///
/// Errors: 502 when a tool call's arguments are not a JSON object.
pub fn from_openai_response(body: &Value, model: &str, include_thoughts: bool) -> Result<Value, ApiError> {
    let choices = body.get("choices").and_then(Value::as_array).cloned().unwrap_or_default();
    if choices.is_empty() {
        return Err(ApiError::new(ErrorCode::UpstreamError, "the upstream provider answered without a choice"));
    }
    let mut candidates = Vec::with_capacity(choices.len());
    for (i, choice) in choices.iter().enumerate() {
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let mut parts = Vec::new();
        if include_thoughts && let Some(r) = reasoning_text(&message) {
            parts.push(json!({"text":r,"thought":true}));
        }
        let text = content_text(message.get("content"));
        if !text.is_empty() {
            parts.push(json!({"text":text}));
        }
        for c in message_tool_calls(&message) {
            parts.push(function_call_part(&c.id, &c.name, &c.arguments)?);
        }
        if parts.is_empty() {
            parts.push(json!({"text":""}));
        }
        candidates.push(json!({
            "content": {"role":"model","parts":parts},
            "finishReason": finish_reason(choice.get("finish_reason").and_then(Value::as_str)),
            "index": choice.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
        }));
    }
    Ok(json!({
        "candidates": candidates,
        "usageMetadata": usage_metadata(&usage_of(body.get("usage"))),
        "modelVersion": model,
        "responseId": response_id(body),
    }))
}

/// OpenAI chunk stream → `GenerateContentResponse` chunks (§3.3): text arrives as deltas;
/// function calls arrive whole (complete `args`) in the final chunk, with `finishReason` and the
/// final `usageMetadata`, as Gemini itself streams them.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    include_thoughts: bool,
    response_id: String,
    calls: Vec<(u64, String, String, String)>,
    finish: Option<String>,
    usage: Usage,
}

impl StreamTranslator {
    /// A translator answering under the client's `model` name.
    pub fn new(model: &str, include_thoughts: bool) -> Self {
        Self {
            model: model.to_string(),
            include_thoughts,
            response_id: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: Usage::default(),
        }
    }

    fn chunk(&self, parts: Vec<Value>, finish: Option<&str>, usage: bool) -> Value {
        let mut cand = json!({"content":{"role":"model","parts":parts},"index":0});
        if let Some(f) = finish {
            cand["finishReason"] = json!(f);
        }
        let mut c = json!({"candidates":[cand],"modelVersion":self.model,"responseId":self.response_id});
        if usage {
            c["usageMetadata"] = usage_metadata(&self.usage);
        }
        c
    }

    /// One OpenAI chunk → zero or one Gemini chunk.
    pub fn on_chunk(&mut self, chunk: &Value) -> Vec<Value> {
        if self.response_id.is_empty() {
            self.response_id = response_id(chunk);
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage_of(Some(u));
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return Vec::new() };
        let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
        let mut parts = Vec::new();
        if self.include_thoughts && let Some(r) = reasoning_text(&delta) {
            parts.push(json!({"text":r,"thought":true}));
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            parts.push(json!({"text":t}));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
            match self.calls.iter_mut().find(|c| c.0 == index) {
                Some(c) => c.3.push_str(args),
                None => {
                    let id = call.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                    let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_string();
                    self.calls.push((index, id, name, args.to_string()));
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        if parts.is_empty() { Vec::new() } else { vec![self.chunk(parts, None, false)] }
    }

    /// End of the upstream stream: the final chunk with the complete function calls,
    /// `finishReason` and `usageMetadata`.
    ///
    /// Errors: 502 when a call's arguments are not a JSON object.
    pub fn finish(&mut self) -> Result<Vec<Value>, ApiError> {
        let mut parts = Vec::new();
        for (_, id, name, args) in &self.calls {
            parts.push(function_call_part(id, name, args)?);
        }
        if parts.is_empty() {
            parts.push(json!({"text":""}));
        }
        Ok(vec![self.chunk(parts, Some(finish_reason(self.finish.as_deref())), true)])
    }
}

/// The `status` string of a Google RPC error for an HTTP status (google.rpc.Code mapping).
pub fn rpc_status(http: u16) -> &'static str {
    match http {
        400 | 413 | 415 => "INVALID_ARGUMENT",
        // A wrong HTTP method: the status gRPC-HTTP transcoding gives "method not allowed".
        405 => "UNIMPLEMENTED",
        408 => "DEADLINE_EXCEEDED",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// The HTTP status of an error answered to a Gemini client (the gateway's own status).
pub fn error_status(code: ErrorCode) -> u16 {
    code.status().as_u16()
}

/// The Gemini error body `{"error":{"code","message","status"}}` (§3.4).
pub fn error_body(err: &ApiError, status: u16) -> Value {
    json!({"error":{"code":status,"message":err.message,"status":rpc_status(status)}})
}

#[cfg(test)]
#[path = "gemini_tests.rs"]
mod tests;
