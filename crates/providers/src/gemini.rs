//! Google Gemini Developer API upstream (`wire-formats.md` §3): OpenAI chat request →
//! `GenerateContentRequest` (§7.7), `GenerateContentResponse` → `chat.completion`, the
//! `streamGenerateContent?alt=sse` stream → `chat.completion.chunk`s (§7.4), finish reasons
//! (§7.5), usage (§7.6) and errors (§3.4, §7.8).
//!
//! Tool-call ids (§7.9): Gemini's `functionCall.id` is kept when the upstream sends one;
//! otherwise an id `call_<16 base62>[_<function name>]` is synthesised (the name is embedded when
//! it is made of `[A-Za-z0-9_-]`, so a `tool` message can be resolved even without its assistant
//! turn). The `thoughtSignature` of a call is (a) returned to the client in
//! `tool_calls[i].extra_content.google.thought_signature` (the field Google's own
//! OpenAI-compatible endpoint uses) and read back from there, and (b) kept in a per-process cache
//! keyed by the tool-call id ([`SignatureCache`], 24 h TTL), for clients that drop unknown
//! fields. A replayed function-call turn without any known signature gets Google's documented
//! placeholder [`SKIP_SIGNATURE`] on its first `functionCall` part (Gemini 3 rejects a
//! function-call turn without a signature).
//!
//! Reasoning: `reasoning_effort` → `generationConfig.thinkingConfig` (`thinkingLevel` for
//! `gemini-3*` models, `thinkingBudget` otherwise, `includeThoughts: true`); thought-summary
//! parts (`"thought": true`) come back in `message.reasoning_content` / `delta.reasoning_content`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_types::Usage;
use gatehouse_types::openai::{CHAT_COMPLETION, WireUsage};
use serde_json::{Map, Value, json};

use crate::common::{ChunkWriter, arguments_object, image_url, max_tokens, parse_data_url, reject, stop_list};
use crate::sse::SseEvent;
use crate::stream::{Out, StreamMapper};
use crate::{StreamEvent, UpstreamError};

/// The API version prefix used for calls (`v1beta` carries every feature used here).
pub const API_VERSION: &str = "v1beta";

/// Placeholder signature Google documents for function-call turns that never had one (e.g.
/// produced by another provider).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// How long a remembered `thoughtSignature` is kept.
pub const SIGNATURE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Most signatures remembered at once (oldest/least used evicted first).
pub const SIGNATURE_CAPACITY: u64 = 100_000;

/// Remembers `thoughtSignature`s by tool-call id (§7.9), shared by all Gemini calls of one
/// [`crate::Upstream`]. Bounded and expiring; never logged.
#[derive(Clone)]
pub struct SignatureCache(moka::sync::Cache<String, Arc<str>>);

impl Default for SignatureCache {
    fn default() -> Self {
        Self(moka::sync::Cache::builder().max_capacity(SIGNATURE_CAPACITY).time_to_live(SIGNATURE_TTL).build())
    }
}

impl SignatureCache {
    pub(crate) fn put(&self, id: &str, sig: &str) {
        self.0.insert(id.to_string(), Arc::from(sig));
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<str>> {
        self.0.get(id)
    }
}

/// `{base}/v1beta/models/{model}:generateContent` or `:streamGenerateContent?alt=sse`. A base
/// that already ends in `/v1beta` or `/v1` keeps its version. The model is percent-encoded as one
/// path segment (defense in depth: `prepare` refuses unsafe names first, H1).
pub(crate) fn endpoint(base: &str, model: &str, stream: bool) -> String {
    let base = base.trim_end_matches('/');
    let model = crate::common::encode_segment(model.strip_prefix("models/").unwrap_or(model));
    let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    if base.ends_with("/v1beta") || base.ends_with("/v1") {
        format!("{base}/models/{model}:{method}")
    } else {
        format!("{base}/{API_VERSION}/models/{model}:{method}")
    }
}

// ---- ids ----------------------------------------------------------------------------------

const SYNTH_PREFIX: &str = "call_";
const NONCE_LEN: usize = 16;

/// A fresh tool-call id, embedding `name` when it is id-safe.
pub(crate) fn synth_id(name: &str) -> String {
    let nonce = gatehouse_types::new_id().simple().to_string();
    let nonce: String = nonce.chars().rev().take(NONCE_LEN).collect();
    let embeddable = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if embeddable { format!("{SYNTH_PREFIX}{nonce}_{name}") } else { format!("{SYNTH_PREFIX}{nonce}") }
}

/// Whether `id` is one we synthesised (then it is not sent to Gemini as `functionCall.id`).
fn is_synth(id: &str) -> bool {
    id.strip_prefix(SYNTH_PREFIX).is_some_and(|rest| {
        rest.len() >= NONCE_LEN
            && rest.as_bytes()[..NONCE_LEN].iter().all(u8::is_ascii_hexdigit)
            && (rest.len() == NONCE_LEN || rest.as_bytes()[NONCE_LEN] == b'_')
    })
}

/// The function name embedded in a synthesised id.
fn name_from_id(id: &str) -> Option<&str> {
    if !is_synth(id) {
        return None;
    }
    id.get(SYNTH_PREFIX.len() + NONCE_LEN + 1..).filter(|n| !n.is_empty())
}

// ---- schemas ------------------------------------------------------------------------------

/// Schema keywords the Gemini Developer API accepts in `parameters` / `responseSchema` (§3.1).
const SCHEMA_KEYWORDS: [&str; 21] = [
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties", "required",
    "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
    "default", "items", "minimum",
];

/// Turns an OpenAI (JSON Schema) schema into Gemini's OpenAPI-subset Schema: inlines local
/// `$ref`s (`#/$defs/…`, `#/definitions/…`, depth-limited), turns `type: [T, "null"]` into
/// `type: T, nullable: true` and `const` into a one-value `enum`, upper-cases `type`, and drops
/// every keyword Gemini rejects (`additionalProperties`, `$schema`, `$defs`, `strict`, `oneOf`,
/// `allOf`, `not`, `exclusiveMinimum`, …). `oneOf` becomes `anyOf`.
pub fn sanitize_schema(schema: &Value) -> Value {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions")).cloned().unwrap_or(Value::Null);
    sanitize(schema, &defs, 0)
}

fn sanitize(schema: &Value, defs: &Value, depth: u32) -> Value {
    let Value::Object(obj) = schema else { return schema.clone() };
    if depth > 32 {
        return json!({"type": "OBJECT"});
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").or_else(|| r.strip_prefix("#/definitions/"));
        if let Some(target) = name.and_then(|n| defs.get(n)) {
            let mut merged = sanitize(target, defs, depth + 1);
            if let (Value::Object(m), Some(d)) = (&mut merged, obj.get("description")) {
                m.insert("description".into(), d.clone());
            }
            return merged;
        }
        return json!({"type": "OBJECT"});
    }
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "type" => match v {
                Value::String(t) => {
                    out.insert("type".into(), Value::from(t.to_ascii_uppercase()));
                }
                Value::Array(ts) => {
                    let non_null: Vec<&str> = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
                    if non_null.len() < ts.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), Value::from(t.to_ascii_uppercase()));
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Value::Object(props) = v {
                    let p: Map<String, Value> = props.iter().map(|(name, s)| (name.clone(), sanitize(s, defs, depth + 1))).collect();
                    out.insert("properties".into(), Value::Object(p));
                }
            }
            "items" => {
                out.insert("items".into(), sanitize(v, defs, depth + 1));
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(alts) = v {
                    out.insert("anyOf".into(), Value::Array(alts.iter().map(|s| sanitize(s, defs, depth + 1)).collect()));
                }
            }
            "const" => {
                out.insert("enum".into(), json!([v.as_str().map_or_else(|| v.to_string(), str::to_owned)]));
                if !obj.contains_key("type") {
                    out.insert("type".into(), Value::from("STRING"));
                }
            }
            "maximum" => {
                out.insert(k.clone(), v.clone());
            }
            "enum" => {
                // Gemini enums are strings.
                if let Value::Array(vals) = v {
                    let strs: Vec<Value> = vals.iter().filter(|x| !x.is_null()).map(|x| Value::from(x.as_str().map_or_else(|| x.to_string(), str::to_owned))).collect();
                    out.insert("enum".into(), Value::Array(strs));
                    if out.get("type").is_none() && !obj.contains_key("type") {
                        out.insert("type".into(), Value::from("STRING"));
                    }
                }
            }
            other if SCHEMA_KEYWORDS.contains(&other) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {} // additionalProperties, $schema, $defs, strict, allOf, not, examples, …
        }
    }
    if out.get("enum").is_some() && out.get("type").and_then(Value::as_str).is_some_and(|t| t != "STRING") {
        out.insert("type".into(), Value::from("STRING"));
    }
    Value::Object(out)
}

// ---- request ------------------------------------------------------------------------------

/// `thinkingConfig` for a `reasoning_effort` (§7.7): `thinkingLevel` for Gemini 3 models,
/// `thinkingBudget` (none 0, minimal 512, low 1024, medium 8192, high 24576) otherwise.
fn thinking_config(effort: &str, model: &str) -> Result<Value, UpstreamError> {
    let gemini3 = model.starts_with("gemini-3");
    let level = match effort {
        "none" => None,
        "minimal" => Some(("MINIMAL", 512)),
        "low" => Some(("LOW", 1024)),
        "medium" => Some(("MEDIUM", 8192)),
        "high" | "xhigh" | "max" => Some(("HIGH", 24576)),
        _ => return Err(reject("reasoning_effort", "reasoning_effort must be none, minimal, low, medium or high")),
    };
    Ok(match (level, gemini3) {
        (None, true) => json!({"thinkingLevel": "MINIMAL"}),
        (None, false) => json!({"thinkingBudget": 0}),
        (Some((l, _)), true) => json!({"thinkingLevel": l, "includeThoughts": true}),
        (Some((_, b)), false) => json!({"thinkingBudget": b, "includeThoughts": true}),
    })
}

/// One OpenAI content part → a Gemini part.
fn user_part(part: &Value, param: &str) -> Result<Option<Value>, UpstreamError> {
    let Value::Object(part) = part else { return Err(reject(param, "content parts must be objects")) };
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let t = part.get("text").and_then(Value::as_str).ok_or_else(|| reject(format!("{param}.text"), "text must be a string"))?;
            Ok((!t.is_empty()).then(|| json!({"text": t})))
        }
        Some("image_url") => {
            let url = image_url(part, param)?;
            if let Some((mime, data)) = parse_data_url(&url) {
                Ok(Some(json!({"inlineData": {"mimeType": mime, "data": data}})))
            } else if url.starts_with("https://") || url.starts_with("http://") || url.starts_with("gs://") {
                // Files-API / Cloud Storage / public URLs; the gateway does not fetch URLs itself.
                let mime = guess_mime(&url);
                Ok(Some(json!({"fileData": {"mimeType": mime, "fileUri": url}})))
            } else {
                Err(reject(format!("{param}.image_url.url"), "image_url.url must be an http(s) URL or a base64 data URL"))
            }
        }
        Some("input_audio") => {
            let a = part.get("input_audio").ok_or_else(|| reject(format!("{param}.input_audio"), "input_audio must be an object"))?;
            let data = a.get("data").and_then(Value::as_str).ok_or_else(|| reject(format!("{param}.input_audio.data"), "data must be a string"))?;
            let mime = match a.get("format").and_then(Value::as_str) {
                Some("wav") => "audio/wav",
                Some("mp3") => "audio/mp3",
                _ => return Err(reject(format!("{param}.input_audio.format"), "format must be wav or mp3")),
            };
            Ok(Some(json!({"inlineData": {"mimeType": mime, "data": data}})))
        }
        Some("file") => {
            let file = part.get("file").and_then(Value::as_object).ok_or_else(|| reject(format!("{param}.file"), "file must be an object"))?;
            let data = file.get("file_data").and_then(Value::as_str).unwrap_or_default();
            match parse_data_url(data) {
                Some((mime, b64)) => Ok(Some(json!({"inlineData": {"mimeType": mime, "data": b64}}))),
                None => Err(reject(format!("{param}.file.file_data"), "only inline files (data:<mime>;base64,…) are supported by this model's provider")),
            }
        }
        Some(other) => Err(reject(format!("{param}.type"), format!("content part type {other} is not supported by this model's provider"))),
        None => Err(reject(format!("{param}.type"), "content part type missing")),
    }
}

fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

fn user_parts(content: Option<&Value>, param: &str) -> Result<Vec<Value>, UpstreamError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(if s.is_empty() { Vec::new() } else { vec![json!({"text": s})] }),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                if let Some(part) = user_part(p, &format!("{param}[{j}]"))? {
                    out.push(part);
                }
            }
            Ok(out)
        }
        Some(_) => Err(reject(param, "content must be a string or an array of parts")),
    }
}

/// Consecutive same-role contents merged (§3.5).
#[derive(Default)]
struct Contents(Vec<(&'static str, Vec<Value>)>);

impl Contents {
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => self.0.push((role, parts)),
        }
    }
}

/// The `GenerateContentRequest` for an OpenAI chat request (§7.7). Dropped: `logit_bias`,
/// `parallel_tool_calls`, `user`, `metadata`, `store`, `service_tier`, `stream_options`.
/// Rejected (400, nothing sent): more than 5 stop sequences, a `tool` message whose function name
/// cannot be resolved, malformed parts.
pub(crate) fn build_request(request: &Map<String, Value>, upstream_model: &str, sigs: &SignatureCache) -> Result<Map<String, Value>, UpstreamError> {
    let messages = request.get("messages").and_then(Value::as_array).ok_or_else(|| reject("messages", "messages must be an array"))?;
    // id → function name, from every assistant turn (§3.5: tool messages only carry the id).
    let mut names: Vec<(&str, &str)> = Vec::new();
    for m in messages {
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                if let (Some(id), Some(name)) = (c.get("id").and_then(Value::as_str), c.pointer("/function/name").and_then(Value::as_str)) {
                    names.push((id, name));
                }
            }
        }
    }
    let mut system: Vec<Value> = Vec::new();
    let mut contents = Contents::default();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Value::Object(m) = m else { return Err(reject(param, "messages must be objects")) };
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                let text = crate::common::text_only(m.get("content"), &format!("{param}.content"))?;
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            Some("user") => contents.push("user", user_parts(m.get("content"), &format!("{param}.content"))?),
            Some("assistant") => {
                let mut parts = Vec::new();
                let text = crate::common::text_only(m.get("content"), &format!("{param}.content"))?;
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                let mut signed = false;
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for (k, c) in calls.iter().enumerate() {
                        let p = format!("{param}.tool_calls[{k}]");
                        let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
                        let f = c.get("function").ok_or_else(|| reject(format!("{p}.function"), "only function tool calls are supported by this model's provider"))?;
                        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("{p}.function.name"), "function name must be a string"))?;
                        let args = arguments_object(f, &p)?;
                        let mut call = json!({"name": name, "args": args});
                        if !id.is_empty() && !is_synth(id) {
                            call["id"] = Value::from(id);
                        }
                        let mut part = json!({"functionCall": call});
                        let sig = c
                            .pointer("/extra_content/google/thought_signature")
                            .and_then(Value::as_str)
                            .map(Arc::<str>::from)
                            .or_else(|| (!id.is_empty()).then(|| sigs.get(id)).flatten());
                        if let Some(sig) = sig {
                            part["thoughtSignature"] = Value::from(&*sig);
                            signed = true;
                        } else if k == 0 {
                            part["thoughtSignature"] = Value::from(SKIP_SIGNATURE);
                        }
                        parts.push(part);
                    }
                }
                // A real signature on a later call: the placeholder on the first one is not needed.
                if signed && let Some(first) = parts.iter_mut().find(|p| p.get("functionCall").is_some())
                    && first.get("thoughtSignature").and_then(Value::as_str) == Some(SKIP_SIGNATURE)
                    && let Value::Object(o) = first
                {
                    o.remove("thoughtSignature");
                }
                contents.push("model", parts);
            }
            Some("tool") => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| reject(format!("{param}.tool_call_id"), "tool messages need a tool_call_id"))?;
                let name = names
                    .iter()
                    .rev()
                    .find(|(i, _)| *i == id)
                    .map(|(_, n)| *n)
                    .or_else(|| name_from_id(id))
                    .ok_or_else(|| reject(format!("{param}.tool_call_id"), "tool_call_id does not match a tool call of an earlier assistant message"))?;
                let output = match m.get("content") {
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::from(s.as_str())),
                    c @ Some(Value::Array(_)) => Value::from(crate::common::text_only(c, &format!("{param}.content"))?),
                    None | Some(Value::Null) => Value::from(""),
                    Some(_) => return Err(reject(format!("{param}.content"), "content must be a string or an array of text parts")),
                };
                let mut resp = json!({"name": name, "response": {"output": output}});
                if !is_synth(id) {
                    resp["id"] = Value::from(id);
                }
                contents.push("user", vec![json!({"functionResponse": resp})]);
            }
            Some(other) => return Err(reject(format!("{param}.role"), format!("role {other} is not supported by this model's provider"))),
            None => return Err(reject(format!("{param}.role"), "role missing")),
        }
    }
    let mut out = Map::new();
    out.insert(
        "contents".into(),
        Value::Array(contents.0.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect()),
    );
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }

    // tools
    if let Some(tools) = request.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        let mut decls = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let f = t.get("function").ok_or_else(|| reject(format!("tools[{i}]"), "only function tools are supported by this model's provider"))?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| reject(format!("tools[{i}].function.name"), "function name must be a string"))?;
            let mut d = json!({"name": name});
            if let Some(desc) = f.get("description").and_then(Value::as_str) {
                d["description"] = Value::from(desc);
            }
            if let Some(params) = f.get("parameters").filter(|p| p.get("properties").and_then(Value::as_object).is_some_and(|o| !o.is_empty())) {
                d["parameters"] = sanitize_schema(params);
            }
            decls.push(d);
        }
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
        let cfg = match choice {
            Value::String(s) => match s.as_str() {
                "auto" => json!({"mode": "AUTO"}),
                "none" => json!({"mode": "NONE"}),
                "required" => json!({"mode": "ANY"}),
                _ => return Err(reject("tool_choice", "tool_choice must be auto, none, required or a function")),
            },
            Value::Object(_) => {
                let name = choice.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| reject("tool_choice", "tool_choice.function.name must be a string"))?;
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
            _ => return Err(reject("tool_choice", "tool_choice must be a string or an object")),
        };
        out.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
    }

    // generationConfig
    let mut g = Map::new();
    if let Some(n) = max_tokens(request)? {
        g.insert("maxOutputTokens".into(), Value::from(n));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"), ("seed", "seed")] {
        if let Some(v) = request.get(from).filter(|v| !v.is_null()) {
            if !v.is_number() {
                return Err(reject(from, format!("{from} must be a number")));
            }
            g.insert(to.into(), v.clone());
        }
    }
    if let Some(n) = request.get("n").filter(|v| !v.is_null()) {
        let n = n.as_u64().filter(|n| (1..=8).contains(n)).ok_or_else(|| reject("n", "n must be an integer from 1 to 8"))?;
        if n > 1 {
            g.insert("candidateCount".into(), Value::from(n));
        }
    }
    let stop = stop_list(request)?;
    if stop.len() > 5 {
        return Err(reject("stop", "this model's provider accepts at most 5 stop sequences"));
    }
    if !stop.is_empty() {
        g.insert("stopSequences".into(), json!(stop));
    }
    if request.get("logprobs").and_then(Value::as_bool) == Some(true) {
        g.insert("responseLogprobs".into(), Value::Bool(true));
        if let Some(n) = request.get("top_logprobs").and_then(Value::as_u64) {
            g.insert("logprobs".into(), Value::from(n));
        }
    }
    match request.get("response_format").filter(|v| !v.is_null()) {
        None => {}
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                g.insert("responseMimeType".into(), Value::from("application/json"));
            }
            Some("json_schema") => {
                g.insert("responseMimeType".into(), Value::from("application/json"));
                if let Some(schema) = rf.pointer("/json_schema/schema") {
                    g.insert("responseSchema".into(), sanitize_schema(schema));
                }
            }
            _ => return Err(reject("response_format.type", "response_format.type must be text, json_object or json_schema")),
        },
    }
    if let Some(effort) = request.get("reasoning_effort").and_then(Value::as_str) {
        g.insert("thinkingConfig".into(), thinking_config(effort, upstream_model)?);
    }
    if !g.is_empty() {
        out.insert("generationConfig".into(), Value::Object(g));
    }
    Ok(out)
}

// ---- response -----------------------------------------------------------------------------

/// Gemini `finishReason` → OpenAI `finish_reason` (§7.5).
pub(crate) fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "LANGUAGE" | "IMAGE_SAFETY" | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// `usageMetadata` → [`Usage`] (§7.6).
pub(crate) fn usage_of(meta: &Value) -> Usage {
    let n = |k: &str| meta.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    Usage {
        prompt_tokens: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
        completion_tokens: n("candidatesTokenCount").saturating_add(thoughts),
        cached_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

/// What one candidate's parts hold, in OpenAI terms.
#[derive(Default)]
struct Parts {
    text: String,
    reasoning: String,
    /// `(id, name, arguments JSON, signature)`
    calls: Vec<(String, String, String, Option<String>)>,
}

fn read_parts(content: Option<&Value>, sigs: &SignatureCache) -> Parts {
    let mut out = Parts::default();
    let Some(parts) = content.and_then(|c| c.get("parts")).and_then(Value::as_array) else { return out };
    for p in parts {
        if let Some(fc) = p.get("functionCall") {
            let name = fc.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let id = fc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map_or_else(|| synth_id(&name), str::to_owned);
            let args = fc.get("args").filter(|a| a.is_object()).map_or_else(|| "{}".to_string(), Value::to_string);
            let sig = p.get("thoughtSignature").and_then(Value::as_str).map(str::to_owned);
            if let Some(s) = &sig {
                sigs.put(&id, s);
            }
            out.calls.push((id, name, args, sig));
        } else if let Some(t) = p.get("text").and_then(Value::as_str) {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                out.reasoning.push_str(t);
            } else {
                out.text.push_str(t);
            }
        }
    }
    out
}

fn tool_call_json(index: Option<usize>, id: &str, name: &str, args: &str, sig: Option<&str>) -> Value {
    let mut c = json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}});
    if let Some(i) = index {
        c["index"] = Value::from(i);
    }
    if let Some(s) = sig {
        c["extra_content"] = json!({"google": {"thought_signature": s}});
    }
    c
}

/// `chatcmpl-<responseId>`.
fn completion_id(response_id: Option<&str>) -> String {
    match response_id.filter(|s| !s.is_empty()) {
        Some(r) => format!("chatcmpl-{r}"),
        None => format!("chatcmpl-{}", gatehouse_types::new_id().simple()),
    }
}

/// A 200 body that is an error envelope (`{"error":…}` or `[{"error":…}]`).
fn in_band_error(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(o) => o.get("error").filter(|e| !e.is_null()).map(|_| v),
        Value::Array(a) => a.first().and_then(in_band_error),
        _ => None,
    }
}

/// A `GenerateContentResponse` → `chat.completion` (§7.7 response table).
pub(crate) fn parse_response(bytes: &[u8], upstream_model: &str, sigs: &SignatureCache) -> Result<(Value, Usage), UpstreamError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| UpstreamError::Protocol(format!("generateContent body is not JSON: {e}")))?;
    if let Some(err) = in_band_error(&v) {
        return Err(UpstreamError::mid_stream(err.to_string().as_bytes()));
    }
    if !v.is_object() {
        return Err(UpstreamError::Protocol("generateContent body is not a JSON object".into()));
    }
    let usage = v.get("usageMetadata").map(usage_of).unwrap_or_default();
    let mut choices = Vec::new();
    for (pos, c) in v.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let parts = read_parts(c.get("content"), sigs);
        let has_tools = !parts.calls.is_empty();
        let content = if parts.text.is_empty() && has_tools { Value::Null } else { Value::from(parts.text) };
        let mut message = json!({"role": "assistant", "content": content, "refusal": null});
        if !parts.reasoning.is_empty() {
            message["reasoning_content"] = Value::from(parts.reasoning);
        }
        if has_tools {
            message["tool_calls"] =
                Value::Array(parts.calls.iter().map(|(id, name, args, sig)| tool_call_json(None, id, name, args, sig.as_deref())).collect());
        }
        let reason = c.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
        choices.push(json!({
            "index": c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64),
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reason, has_tools),
        }));
    }
    if choices.is_empty() {
        // Blocked prompt (`promptFeedback.blockReason`) or an empty answer.
        let blocked = v.pointer("/promptFeedback/blockReason").is_some();
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": "", "refusal": null},
            "logprobs": null,
            "finish_reason": if blocked { "content_filter" } else { "stop" },
        }));
    }
    let body = json!({
        "id": completion_id(v.get("responseId").and_then(Value::as_str)),
        "object": CHAT_COMPLETION,
        "created": crate::anthropic::unix_now(),
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or(upstream_model),
        "choices": choices,
        "usage": WireUsage::from_usage(&usage),
    });
    Ok((body, usage))
}

/// Refines an upstream error answer per §3.4/§7.8: 400 with reason `API_KEY_INVALID` is an
/// auth failure (→ 401, shown to the client as the generic upstream-auth error); `RetryInfo`'s
/// `retryDelay` fills `retry_after` when no header gave one.
pub(crate) fn refine_status(err: UpstreamError, body: &[u8]) -> UpstreamError {
    let UpstreamError::Status { status, retry_after, provider_code, message } = err else { return err };
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let v = match &v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        _ => v,
    };
    let details = v.pointer("/error/details").and_then(Value::as_array).cloned().unwrap_or_default();
    let reason = details.iter().find_map(|d| d.get("reason").and_then(Value::as_str)).map(str::to_owned);
    let status = if status == 400 && reason.as_deref() == Some("API_KEY_INVALID") { 401 } else { status };
    let retry_after = retry_after.or_else(|| {
        details.iter().find_map(|d| d.get("retryDelay").and_then(Value::as_str)).and_then(|s| s.strip_suffix('s')).and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0).map(|s| s.ceil() as u64)
    });
    UpstreamError::Status { status, retry_after, provider_code: reason.or(provider_code), message }
}

// ---- streaming ----------------------------------------------------------------------------

/// Gemini SSE (`data: <GenerateContentResponse>`, no terminator; raw JSON error objects
/// dispatched by the decoder as `event: raw-json`) → OpenAI chunks. Complete once every
/// expected candidate reported a `finishReason`, or on a blocked prompt.
pub(crate) struct GeminiStream {
    w: ChunkWriter,
    sigs: SignatureCache,
    started: bool,
    id_fixed: bool,
    expected: usize,
    /// Per candidate index: tool calls so far (next OpenAI tool-call index), finished flag.
    cands: Vec<(usize, bool)>,
    usage: Option<Usage>,
}

impl GeminiStream {
    pub(crate) fn new(upstream_model: &str, include_usage: bool, candidates: usize, sigs: SignatureCache) -> Self {
        Self {
            w: ChunkWriter { id: completion_id(None), created: crate::anthropic::unix_now(), model: upstream_model.to_string(), include_usage },
            sigs,
            started: false,
            id_fixed: false,
            expected: candidates.max(1),
            cands: Vec::new(),
            usage: None,
        }
    }

    fn cand(&mut self, index: usize) -> &mut (usize, bool) {
        if self.cands.len() <= index {
            self.cands.resize(index + 1, (0, false));
        }
        &mut self.cands[index]
    }

    fn emit(&self, out: &mut Out, data: Bytes) {
        out.push_back(Ok(StreamEvent { data: Some(data), usage: self.usage }));
    }

    fn finish(&mut self, out: &mut Out) -> bool {
        let usage = self.usage.unwrap_or_default();
        let data = self.w.include_usage.then(|| self.w.usage(&usage));
        out.push_back(Ok(StreamEvent { data, usage: Some(usage) }));
        true
    }
}

impl StreamMapper for GeminiStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool {
        let data = event.data.trim_ascii();
        if data.is_empty() {
            return false;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                out.push_back(Err(UpstreamError::Protocol(format!("stream chunk is not JSON: {e}"))));
                return true;
            }
        };
        if let Some(err) = in_band_error(&v) {
            out.push_back(Err(UpstreamError::mid_stream(err.to_string().as_bytes())));
            return true;
        }
        if event.event == "raw-json" {
            return false; // a stray non-`data:` object that is not an error
        }
        if let Some(meta) = v.get("usageMetadata") {
            self.usage = Some(usage_of(meta));
        }
        if !self.id_fixed {
            self.id_fixed = true;
            if let Some(r) = v.get("responseId").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                self.w.id = completion_id(Some(r));
            }
            if let Some(m) = v.get("modelVersion").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                self.w.model = m.to_string();
            }
        }
        let candidates = v.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
        if candidates.is_empty() && v.pointer("/promptFeedback/blockReason").is_some() {
            if !self.started {
                self.started = true;
                let first = self.w.delta(0, json!({"role": "assistant", "content": ""}), None);
                self.emit(out, first);
            }
            let data = self.w.delta(0, json!({}), Some("content_filter"));
            self.emit(out, data);
            return self.finish(out);
        }
        for (pos, c) in candidates.iter().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).map_or(pos, |i| i as usize).min(63);
            if !self.started || self.cands.get(index).is_none() {
                self.started = true;
                self.cand(index);
                let first = self.w.delta(index as u64, json!({"role": "assistant", "content": ""}), None);
                self.emit(out, first);
            }
            let parts = read_parts(c.get("content"), &self.sigs);
            if !parts.reasoning.is_empty() {
                let d = self.w.delta(index as u64, json!({"reasoning_content": parts.reasoning}), None);
                self.emit(out, d);
            }
            if !parts.text.is_empty() {
                let d = self.w.delta(index as u64, json!({"content": parts.text}), None);
                self.emit(out, d);
            }
            for (id, name, args, sig) in &parts.calls {
                let k = {
                    let c = self.cand(index);
                    let k = c.0;
                    c.0 += 1;
                    k
                };
                let d = self.w.delta(index as u64, json!({"tool_calls": [tool_call_json(Some(k), id, name, args, sig.as_deref())]}), None);
                self.emit(out, d);
            }
            if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                let has_tools = self.cand(index).0 > 0;
                let already = std::mem::replace(&mut self.cand(index).1, true);
                if !already {
                    let d = self.w.delta(index as u64, json!({}), Some(finish_reason(reason, has_tools)));
                    self.emit(out, d);
                }
            }
        }
        if self.cands.iter().filter(|c| c.1).count() >= self.expected {
            return self.finish(out);
        }
        false
    }
}

#[cfg(test)]
mod tests;
