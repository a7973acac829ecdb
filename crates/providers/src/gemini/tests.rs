#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn ev(data: &str) -> SseEvent {
    SseEvent { event: String::new(), data: data.to_string(), id: None }
}

#[test]
fn request_mapping() {
    let sigs = SignatureCache::default();
    let req = obj(json!({
        "model": "public",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Really."}]},
            {"role": "user", "content": [{"type": "text", "text": "Where?"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\":\"1\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\":\"2\"}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"status\":\"ok\"}"},
            {"role": "tool", "tool_call_id": "call_b", "content": "plain"},
            {"role": "user", "content": "And?"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "d", "strict": true,
            "parameters": {"type": "object", "additionalProperties": false, "$schema": "x", "properties": {"id": {"type": ["string", "null"]}}, "required": ["id"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "max_completion_tokens": 100, "temperature": 0.3, "top_p": 0.9, "stop": ["X"], "seed": 4,
        "response_format": {"type": "json_object"}, "reasoning_effort": "low", "logit_bias": {"1": 2}, "user": "u"
    }));
    let b = Value::Object(build_request(&req, "gemini-2.5-flash", &sigs).unwrap());
    assert_eq!(b["systemInstruction"], json!({"parts": [{"text": "Be brief."}, {"text": "Really."}]}));
    let c = b["contents"].as_array().unwrap();
    assert_eq!(c.len(), 3, "{c:?}");
    assert_eq!(c[0]["role"], "user");
    assert_eq!(c[0]["parts"][1], json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}));
    assert_eq!(c[1]["role"], "model");
    assert_eq!(c[1]["parts"][0]["functionCall"], json!({"name": "lookup", "args": {"id": "1"}, "id": "call_a"}));
    // No signature known: the documented placeholder on the first call only.
    assert_eq!(c[1]["parts"][0]["thoughtSignature"], SKIP_SIGNATURE);
    assert!(c[1]["parts"][1].get("thoughtSignature").is_none());
    assert_eq!(c[2]["parts"][0]["functionResponse"]["name"], "lookup");
    assert_eq!(c[2]["parts"][0]["functionResponse"]["response"], json!({"output": {"status": "ok"}}));
    assert_eq!(c[2]["parts"][1]["functionResponse"]["response"], json!({"output": "plain"}));
    // Consecutive user-role contents are merged (§3.5): the responses first, then the text.
    assert_eq!(c[2]["parts"][2], json!({"text": "And?"}));
    let decl = &b["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["parameters"], json!({"type": "OBJECT", "properties": {"id": {"type": "STRING", "nullable": true}}, "required": ["id"]}));
    assert_eq!(b["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}}));
    let g = &b["generationConfig"];
    assert_eq!(g["maxOutputTokens"], 100);
    assert_eq!(g["topP"], 0.9);
    assert_eq!(g["stopSequences"], json!(["X"]));
    assert_eq!(g["seed"], 4);
    assert_eq!(g["responseMimeType"], "application/json");
    assert_eq!(g["thinkingConfig"], json!({"thinkingBudget": 1024, "includeThoughts": true}));
    assert!(b.get("logit_bias").is_none() && b.get("user").is_none());
}

#[test]
fn request_rejects() {
    let sigs = SignatureCache::default();
    let too_many_stops = obj(json!({"messages": [{"role": "user", "content": "x"}], "stop": ["1", "2", "3", "4", "5", "6"]}));
    assert!(matches!(build_request(&too_many_stops, "m", &sigs), Err(UpstreamError::InvalidRequest { param: Some(p), .. }) if p == "stop"));
    let orphan = obj(json!({"messages": [{"role": "tool", "tool_call_id": "zzz", "content": "x"}]}));
    assert!(matches!(build_request(&orphan, "m", &sigs), Err(UpstreamError::InvalidRequest { .. })));
    // ...unless the name is embedded in one of our ids.
    let id = synth_id("get_weather");
    let embedded = obj(json!({"messages": [{"role": "tool", "tool_call_id": id, "content": "x"}]}));
    let b = build_request(&embedded, "m", &sigs).unwrap();
    assert_eq!(b["contents"][0]["parts"][0]["functionResponse"]["name"], "get_weather");
    assert!(b["contents"][0]["parts"][0]["functionResponse"].get("id").is_none(), "synthesised ids are not sent");
    let effort = obj(json!({"messages": [], "reasoning_effort": "huge"}));
    assert!(build_request(&effort, "m", &sigs).is_err());
}

#[test]
fn gemini3_uses_thinking_level() {
    let req = obj(json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high"}));
    let b = build_request(&req, "gemini-3-pro-preview", &SignatureCache::default()).unwrap();
    assert_eq!(b["generationConfig"]["thinkingConfig"], json!({"thinkingLevel": "HIGH", "includeThoughts": true}));
}

#[test]
fn schema_sanitizer() {
    let s = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": false,
        "$defs": {"Pt": {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}}, "additionalProperties": false}},
        "properties": {
            "p": {"$ref": "#/$defs/Pt", "description": "a point"},
            "kind": {"const": "a"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}},
            "v": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            "additionalProperties": {"type": "string"}
        },
        "required": ["p"]
    });
    let out = sanitize_schema(&s);
    assert_eq!(out, json!({
        "type": "OBJECT",
        "properties": {
            "p": {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}}, "description": "a point"},
            "kind": {"enum": ["a"], "type": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["x", "y"]}},
            "v": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]},
            "additionalProperties": {"type": "STRING"}
        },
        "required": ["p"]
    }));
    // Self-referencing schemas terminate.
    let rec = json!({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"});
    let _ = sanitize_schema(&rec);
}

#[test]
fn response_mapping_with_signature_round_trip() {
    let sigs = SignatureCache::default();
    let raw = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking…", "thought": true},
            {"text": "Calling."},
            {"functionCall": {"name": "lookup", "args": {"id": "7731"}}, "thoughtSignature": "SIG1"},
            {"functionCall": {"name": "lookup", "args": {"id": "7732"}, "id": "upstream-id"}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1211, "candidatesTokenCount": 9, "thoughtsTokenCount": 64, "cachedContentTokenCount": 1024, "totalTokenCount": 1284},
        "modelVersion": "gemini-2.5-flash", "responseId": "RID"
    });
    let (b, u) = parse_response(raw.to_string().as_bytes(), "m", &sigs).unwrap();
    assert_eq!(b["id"], "chatcmpl-RID");
    let msg = &b["choices"][0]["message"];
    assert_eq!(msg["content"], "Calling.");
    assert_eq!(msg["reasoning_content"], "thinking…");
    assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
    let calls = msg["tool_calls"].as_array().unwrap();
    let id0 = calls[0]["id"].as_str().unwrap().to_string();
    assert!(id0.starts_with("call_") && id0.ends_with("_lookup"));
    assert_eq!(calls[0]["extra_content"]["google"]["thought_signature"], "SIG1");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"id":"7731"}"#);
    assert_eq!(calls[1]["id"], "upstream-id");
    assert_eq!(u, Usage { prompt_tokens: 1211, completion_tokens: 73, cached_tokens: 1024, cache_write_tokens: 0, reasoning_tokens: 64 });
    assert_eq!(b["usage"]["total_tokens"], 1284);

    // The client sends the history back without extra fields: the cache restores the signature.
    let mut plain_calls = calls.clone();
    for c in &mut plain_calls {
        c.as_object_mut().unwrap().remove("extra_content");
    }
    let req = obj(json!({"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Calling.", "tool_calls": plain_calls},
        {"role": "tool", "tool_call_id": id0, "content": "a"},
        {"role": "tool", "tool_call_id": "upstream-id", "content": "b"}]}));
    let out = build_request(&req, "gemini-3-pro-preview", &sigs).unwrap();
    let model_parts = out["contents"][1]["parts"].as_array().unwrap();
    assert_eq!(model_parts[1]["thoughtSignature"], "SIG1");
    assert!(model_parts[1]["functionCall"].get("id").is_none());
    assert!(model_parts[2].get("thoughtSignature").is_none());
    assert_eq!(model_parts[2]["functionCall"]["id"], "upstream-id");
    assert_eq!(out["contents"][2]["parts"][1]["functionResponse"]["id"], "upstream-id");
    // A signature carried by the client wins, and needs no cache.
    let req = obj(json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [
        {"id": "x1", "type": "function", "function": {"name": "f", "arguments": "{}"}, "extra_content": {"google": {"thought_signature": "CLIENT"}}}]}]}));
    let out = build_request(&req, "m", &SignatureCache::default()).unwrap();
    assert_eq!(out["contents"][0]["parts"][0]["thoughtSignature"], "CLIENT");
}

#[test]
fn blocked_prompt_and_finish_reasons() {
    let raw = br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5}}"#;
    let (b, u) = parse_response(raw, "m", &SignatureCache::default()).unwrap();
    assert_eq!(b["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(b["choices"][0]["message"]["content"], "");
    assert_eq!(u.prompt_tokens, 5);
    for (g, o) in [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("SPII", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop")] {
        assert_eq!(finish_reason(g, false), o, "{g}");
    }
    assert_eq!(finish_reason("STOP", true), "tool_calls");
    assert!(matches!(parse_response(br#"{"error":{"code":500,"message":"boom","status":"INTERNAL"}}"#, "m", &SignatureCache::default()), Err(UpstreamError::MidStream { .. })));
    assert!(matches!(parse_response(b"[1]", "m", &SignatureCache::default()), Err(UpstreamError::Protocol(_))));
}

#[test]
fn error_refinement() {
    let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
    let e = refine_status(UpstreamError::from_status(400, &http::HeaderMap::new(), body), body);
    assert!(matches!(e, UpstreamError::Status { status: 401, .. }));
    assert_eq!(e.to_api_error().code, gatehouse_types::ErrorCode::UpstreamAuth);
    let body = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;
    let e = refine_status(UpstreamError::from_status(429, &http::HeaderMap::new(), body), body);
    assert!(matches!(e, UpstreamError::Status { status: 429, retry_after: Some(37), .. }), "{e:?}");
    let body = br#"{"error":{"code":404,"message":"models/x is not found","status":"NOT_FOUND"}}"#;
    let e = refine_status(UpstreamError::from_status(404, &http::HeaderMap::new(), body), body);
    assert!(matches!(&e, UpstreamError::Status { provider_code: Some(c), .. } if c == "NOT_FOUND"), "{e:?}");
}

#[test]
fn stream_mapping() {
    let sigs = SignatureCache::default();
    let mut m = GeminiStream::new("m", true, 1, sigs.clone());
    let mut out = Out::new();
    assert!(!m.on_event(ev(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],"usageMetadata":{"promptTokenCount":10,"totalTokenCount":10},"responseId":"R1","modelVersion":"gemini-2.5-flash"}"#), &mut out));
    assert!(!m.on_event(ev(r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"S"}]},"index":0}]}"#), &mut out));
    assert!(m.on_event(ev(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4,"thoughtsTokenCount":2,"totalTokenCount":16}}"#), &mut out));
    let items: Vec<Value> = out.iter().filter_map(|i| i.as_ref().unwrap().data.as_ref()).map(|d| serde_json::from_slice(d).unwrap()).collect();
    assert_eq!(items[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(items[0]["id"], "chatcmpl-R1");
    assert_eq!(items[1]["choices"][0]["delta"]["content"], "Hel");
    let tc = &items[2]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(tc["index"], 0);
    assert_eq!(tc["function"]["arguments"], r#"{"a":1}"#);
    assert_eq!(&*sigs.get(tc["id"].as_str().unwrap()).unwrap(), "S");
    assert_eq!(items[3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(items[4]["choices"], json!([]));
    assert_eq!(items[4]["usage"]["completion_tokens"], 6);
    assert!(items.iter().take(4).all(|c| c["usage"].is_null()));
    let last = out.back().unwrap().as_ref().unwrap().usage.unwrap();
    assert_eq!((last.prompt_tokens, last.completion_tokens, last.reasoning_tokens), (10, 6, 2));
}

#[test]
fn stream_errors_and_block() {
    let mut m = GeminiStream::new("m", false, 1, SignatureCache::default());
    let mut out = Out::new();
    let raw = SseEvent { event: crate::sse::RAW_JSON_EVENT.into(), data: "{\n \"error\": {\"code\": 500, \"message\": \"Internal error\", \"status\": \"INTERNAL\"}\n}\n".into(), id: None };
    assert!(m.on_event(raw, &mut out));
    assert!(matches!(out.pop_front().unwrap(), Err(UpstreamError::MidStream { message, .. }) if message == "Internal error"));
    let mut m = GeminiStream::new("m", false, 1, SignatureCache::default());
    assert!(m.on_event(ev(r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}"#), &mut out));
    let finish: Value = serde_json::from_slice(out.get(1).unwrap().as_ref().unwrap().data.as_ref().unwrap()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn endpoints() {
    assert_eq!(endpoint("https://generativelanguage.googleapis.com", "gemini-2.5-flash", false), "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(endpoint("http://h/v1/", "models/g", true), "http://h/v1/models/g:streamGenerateContent?alt=sse");
}
