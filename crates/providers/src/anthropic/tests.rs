//! Mapping tests: OpenAI → Anthropic request (§7.1), Anthropic → OpenAI response (§7.3) and
//! stream (§7.4), from fixtures modelled on `wire-formats.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use serde_json::json;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn build(v: Value) -> Value {
    Value::Object(build_request(&obj(v), "claude-sonnet-4-5", false).unwrap())
}

fn build_err(v: Value) -> (Option<String>, String) {
    match build_request(&obj(v), "claude-sonnet-4-5", false) {
        Err(UpstreamError::InvalidRequest { param, message }) => (param, message),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[test]
fn full_request_mapping() {
    let req = json!({
        "model": "public-claude",
        "messages": [
            {"role": "system", "content": "You are the support bot."},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "name": "ann", "content": [
                {"type": "text", "text": "Where is order 7731?"},
                {"type": "text", "text": ""},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.org/cat.jpg"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_id\":\"7731\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "lookup_order", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"status\":\"in_transit\"}"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "not found"}]},
            {"role": "user", "content": "And the tracking link?"},
            {"role": "system", "content": "Mid-conversation rule."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "lookup_order", "description": "Fetch status.",
              "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}, "strict": true}},
            {"type": "function", "function": {"name": "no_params"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "max_completion_tokens": 400,
        "max_tokens": 999,
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "\n\nUser:",
        "user": "u_4f1c2a",
        "seed": 7,
        "frequency_penalty": 0.5,
        "metadata": {"a": "b"},
        "store": true,
        "x_unknown": 1
    });
    let out = build(req);
    let expected = json!({
        "model": "claude-sonnet-4-5",
        "system": "You are the support bot.\n\nBe brief.\n\nMid-conversation rule.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Where is order 7731?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.org/cat.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "lookup_order", "input": {"order_id": "7731"}},
                {"type": "tool_use", "id": "call_2", "name": "lookup_order", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"status\":\"in_transit\"}"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "not found"}]},
                {"type": "text", "text": "And the tracking link?"}
            ]}
        ],
        "tools": [
            {"name": "lookup_order", "description": "Fetch status.",
             "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}, "strict": true},
            {"name": "no_params", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "max_tokens": 400,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["\n\nUser:"],
        "metadata": {"user_id": "u_4f1c2a"}
    });
    assert_eq!(out, expected);
}

#[test]
fn max_tokens_default_and_fallback() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(build(base.clone())["max_tokens"], DEFAULT_MAX_TOKENS);
    let mut with_legacy = base.clone();
    with_legacy["max_tokens"] = json!(123);
    assert_eq!(build(with_legacy)["max_tokens"], 123);
    let mut null_new = base;
    null_new["max_completion_tokens"] = Value::Null;
    null_new["max_tokens"] = json!(50);
    assert_eq!(build(null_new)["max_tokens"], 50);
}

#[test]
fn simple_user_message_uses_string_shorthand_and_stream_flag() {
    let req = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true,
        "stream_options": {"include_usage": true}}));
    let out = Value::Object(build_request(&req, "claude", true).unwrap());
    assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(out["stream"], true);
    assert!(out.get("stream_options").is_none());
    assert!(out.get("system").is_none());
}

#[test]
fn tool_choice_variants() {
    let tools = json!([
        {"type": "function", "function": {"name": "a"}},
        {"type": "function", "function": {"name": "b"}}
    ]);
    let with = |choice: Value, parallel: Option<bool>| {
        let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools.clone()});
        if !choice.is_null() {
            req["tool_choice"] = choice;
        }
        if let Some(p) = parallel {
            req["parallel_tool_calls"] = json!(p);
        }
        build(req)
    };
    assert_eq!(with(json!("auto"), None)["tool_choice"], json!({"type": "auto"}));
    assert_eq!(with(json!("none"), None)["tool_choice"], json!({"type": "none"}));
    assert_eq!(with(json!("required"), None)["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "b"}}), None)["tool_choice"],
        json!({"type": "tool", "name": "b"})
    );
    // parallel_tool_calls:false without tool_choice creates auto.
    assert_eq!(with(Value::Null, Some(false))["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "a"}}), Some(false))["tool_choice"],
        json!({"type": "tool", "name": "a", "disable_parallel_tool_use": true})
    );
    // parallel true → nothing added; no tool_choice → none sent.
    assert!(with(Value::Null, Some(true)).get("tool_choice").is_none());
    // allowed_tools filters tools.
    let out = with(json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]}}), None);
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert_eq!(out["tools"], json!([{"name": "b", "input_schema": {"type": "object", "properties": {}}}]));
    // tool_choice without tools is dropped.
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}));
    assert!(out.get("tool_choice").is_none());
}

#[test]
fn stop_array_and_safety_identifier() {
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "", "b"],
        "safety_identifier": "sid", "user": "legacy"}));
    assert_eq!(out["stop_sequences"], json!(["a", "b"]));
    assert_eq!(out["metadata"], json!({"user_id": "sid"}));
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": null}));
    assert!(out.get("stop_sequences").is_none());
}

#[test]
fn tool_result_before_user_text_in_same_turn() {
    // A user message followed by a tool message: tool_result still goes first.
    let out = build(json!({"model": "m", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "note"},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    ]}));
    assert_eq!(out["messages"][1]["content"], json!([
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
        {"type": "text", "text": "note"}
    ]));
}

#[test]
fn documents_cache_control_and_system_blocks() {
    let out = build(json!({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0"}}]}
    ]}));
    assert_eq!(out["system"], json!([{"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}}]));
    assert_eq!(out["messages"][0]["content"], json!([
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0"}}
    ]));
}

#[test]
fn response_format_and_reasoning() {
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}}}));
    assert_eq!(out["output_config"], json!({"format": {"type": "json_schema", "schema": {"type": "object"}}}));
    let out = build(json!({"model": "m", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}));
    assert_eq!(out["system"], "S\n\nRespond only with a JSON object.");
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "medium", "temperature": 0.3}));
    assert_eq!(out["thinking"], json!({"type": "enabled", "budget_tokens": 4096}));
    assert!(out["max_tokens"].as_u64().unwrap() > 4096);
    assert!(out.get("temperature").is_none());
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high", "max_completion_tokens": 2000}));
    assert_eq!(out["thinking"]["budget_tokens"], 1999);
    let out = build(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}));
    assert!(out.get("thinking").is_none());
}

#[test]
fn rejections_name_the_param() {
    let m = |extra: Value| {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    assert_eq!(build_err(m(json!({"n": 2}))).0.as_deref(), Some("n"));
    assert!(build_request(&obj(m(json!({"n": 1}))), "c", false).is_ok());
    assert_eq!(build_err(m(json!({"logprobs": true}))).0.as_deref(), Some("logprobs"));
    assert_eq!(build_err(m(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}))).0.as_deref(), Some("tools[0].type"));
    let bad_args = json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]});
    assert_eq!(build_err(bad_args).0.as_deref(), Some("messages[0].tool_calls[0].function.arguments"));
    let audio = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]});
    assert_eq!(build_err(audio).0.as_deref(), Some("messages[0].content[0]"));
    let tiff = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]});
    assert_eq!(build_err(tiff).0.as_deref(), Some("messages[0].content[0].image_url.url"));
    let file_id = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]});
    assert_eq!(build_err(file_id).0.as_deref(), Some("messages[0].content[0].file.file_id"));
    let role = json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]});
    assert_eq!(build_err(role).0.as_deref(), Some("messages[0].role"));
    assert_eq!(build_err(json!({"model": "m"})).0.as_deref(), Some("messages"));
}

// ---- responses ----

const TOOL_RESPONSE: &str = r#"{
  "id": "msg_01XbT7kQ2mV9rLp4Zc8wN3Hs", "type": "message", "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [
    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
    {"type": "text", "text": "Let me check that order."},
    {"type": "tool_use", "id": "toolu_01Hk3xYb7QpLmN2vR8sT4wZc", "name": "lookup_order", "input": {"order_id": "7731"}}
  ],
  "stop_reason": "tool_use", "stop_sequence": null,
  "usage": {"input_tokens": 41, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 1802,
            "cache_creation": {"ephemeral_5m_input_tokens": 0}, "output_tokens": 58, "service_tier": "standard"}
}"#;

#[test]
fn response_with_tool_use() {
    let (body, usage) = parse_response(TOOL_RESPONSE.as_bytes(), "claude").unwrap();
    assert_eq!(body["id"], "chatcmpl-01XbT7kQ2mV9rLp4Zc8wN3Hs");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], "claude-sonnet-4-5-20250929");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Let me check that order.");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    let tc = &choice["message"]["tool_calls"][0];
    assert_eq!(tc["id"], "toolu_01Hk3xYb7QpLmN2vR8sT4wZc");
    assert_eq!(tc["type"], "function");
    assert_eq!(tc["function"]["name"], "lookup_order");
    let args: Value = serde_json::from_str(tc["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"order_id": "7731"}));
    assert_eq!(usage, Usage { prompt_tokens: 41 + 7 + 1802, completion_tokens: 58, cached_tokens: 1802, cache_write_tokens: 7, reasoning_tokens: 0 });
    assert_eq!(body["usage"]["prompt_tokens"], 1850);
    assert_eq!(body["usage"]["total_tokens"], 1908);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 1802);
}

#[test]
fn response_text_only_and_finish_reasons() {
    let mk = |stop: &str| {
        format!(r#"{{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[{{"type":"text","text":"hi"}}],"stop_reason":"{stop}","usage":{{"input_tokens":3,"output_tokens":1,"output_tokens_details":{{"thinking_tokens":1}}}}}}"#)
    };
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ] {
        let (body, usage) = parse_response(mk(stop).as_bytes(), "claude").unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], finish, "{stop}");
        assert_eq!(body["choices"][0]["message"]["content"], "hi");
        assert!(body["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(usage.reasoning_tokens, 1);
    }
    // Tool calls without text → content null.
    let raw = r#"{"id":"msg_2","content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let (body, _) = parse_response(raw.as_bytes(), "claude").unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(body["model"], "claude");
    assert!(matches!(parse_response(b"[]", "c"), Err(UpstreamError::Protocol(_))));
    assert!(matches!(parse_response(b"{\"id\":\"msg_1\"}", "c"), Err(UpstreamError::Protocol(_))));
    let err = br#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#;
    assert!(matches!(parse_response(err, "c"), Err(UpstreamError::MidStream { .. })));
}

// ---- streams ----

/// Feeds a raw SSE transcript through the decoder and the mapper.
fn run_stream(transcript: &str, include_usage: bool) -> (Vec<Result<StreamEvent, UpstreamError>>, bool) {
    let mut dec = crate::sse::SseDecoder::new();
    dec.push(transcript.as_bytes()).unwrap();
    dec.finish();
    let mut m = AnthropicStream::new("claude-fallback", include_usage);
    let mut out = Out::new();
    let mut done = false;
    while let Some(ev) = dec.next_event() {
        if m.on_event(ev, &mut out) {
            done = true;
            break;
        }
    }
    (out.into_iter().collect(), done)
}

fn chunks(items: &[Result<StreamEvent, UpstreamError>]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok().and_then(|e| e.data.as_ref()).map(|d| serde_json::from_slice(d).unwrap()))
        .collect()
}

const TOOL_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XbT7kQ2mV9rLp4Zc8wN3Hs","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":41,"cache_creation_input_tokens":0,"cache_read_input_tokens":1802,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" that order."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01Hk3xYb7QpLmN2vR8sT4wZc","name":"lookup_order","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"order_id\": \"77"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"31\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: some_future_event
data: {"type":"some_future_event","x":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"lookup_order","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"order_id\":\"7732\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":58}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[test]
fn stream_tool_calls_and_usage() {
    let (items, done) = run_stream(TOOL_STREAM, true);
    assert!(done);
    let cs = chunks(&items);
    // role, 2 text, tool1 start, 2 args, tool2 start, 1 arg, finish, usage
    assert_eq!(cs.len(), 10, "{cs:#?}");
    for c in &cs {
        assert_eq!(c["id"], "chatcmpl-01XbT7kQ2mV9rLp4Zc8wN3Hs");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(c["created"], cs[0]["created"]);
    }
    assert_eq!(cs[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(cs[0]["usage"], Value::Null);
    assert_eq!(cs[1]["choices"][0]["delta"], json!({"content": "Let me check"}));
    assert_eq!(cs[1]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(cs[2]["choices"][0]["delta"], json!({"content": " that order."}));
    assert_eq!(
        cs[3]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "toolu_01Hk3xYb7QpLmN2vR8sT4wZc", "type": "function", "function": {"name": "lookup_order", "arguments": ""}}]})
    );
    assert_eq!(cs[4]["choices"][0]["delta"], json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"order_id\": \"77"}}]}));
    assert_eq!(cs[5]["choices"][0]["delta"], json!({"tool_calls": [{"index": 0, "function": {"arguments": "31\"}"}}]}));
    assert_eq!(cs[6]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(cs[6]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_2");
    assert_eq!(cs[7]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(cs[8]["choices"][0]["delta"], json!({}));
    assert_eq!(cs[8]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(cs[9]["choices"], json!([]));
    assert_eq!(cs[9]["usage"]["prompt_tokens"], 41 + 1802);
    assert_eq!(cs[9]["usage"]["completion_tokens"], 58);
    assert_eq!(cs[9]["usage"]["total_tokens"], 41 + 1802 + 58);
    assert_eq!(cs[9]["usage"]["prompt_tokens_details"]["cached_tokens"], 1802);
    // The last usage reported equals the final one (no double counting of message_start's 2).
    let last = items.last().unwrap().as_ref().unwrap().usage.unwrap();
    assert_eq!(last, Usage { prompt_tokens: 1843, completion_tokens: 58, cached_tokens: 1802, cache_write_tokens: 0, reasoning_tokens: 0 });
}

#[test]
fn stream_without_include_usage_hides_usage_chunk() {
    let (items, done) = run_stream(TOOL_STREAM, false);
    assert!(done);
    let cs = chunks(&items);
    assert_eq!(cs.len(), 9);
    assert!(cs.iter().all(|c| c.get("usage").is_none()));
    let last = items.last().unwrap().as_ref().unwrap();
    assert!(last.data.is_none());
    assert_eq!(last.usage.unwrap().completion_tokens, 58);
}

#[test]
fn stream_message_delta_with_cumulative_input_usage_is_not_double_counted() {
    let t = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_9","model":"c","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"€"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":20}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let (items, done) = run_stream(t, true);
    assert!(done);
    let cs = chunks(&items);
    assert_eq!(cs[1]["choices"][0]["delta"]["content"], "€");
    assert_eq!(cs[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(cs[3]["usage"]["prompt_tokens"], 15);
    assert_eq!(cs[3]["usage"]["completion_tokens"], 20);
}

#[test]
fn stream_thinking_is_reasoning_content_and_blocks_keep_signatures() {
    let t = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_t","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Order ids are numeric;"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" call the tool."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkgIARAB"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgB"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"Done."}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9,"output_tokens_details":{"thinking_tokens":6}}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let (items, done) = run_stream(t, false);
    assert!(done);
    let cs = chunks(&items);
    let deltas: Vec<&Value> = cs.iter().map(|c| &c["choices"][0]["delta"]).collect();
    // role, 2 reasoning deltas, thinking block, redacted block, text, finish
    assert_eq!(deltas.len(), 7, "{cs:#?}");
    assert_eq!(*deltas[1], json!({"reasoning_content": "Order ids are numeric;"}));
    assert_eq!(*deltas[2], json!({"reasoning_content": " call the tool."}));
    assert_eq!(
        *deltas[3],
        json!({"thinking_blocks": [{"type": "thinking", "thinking": "Order ids are numeric; call the tool.", "signature": "EqQBCkgIARAB"}]})
    );
    assert_eq!(*deltas[4], json!({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgB"}]}));
    assert_eq!(*deltas[5], json!({"content": "Done."}));
    assert_eq!(cs[6]["choices"][0]["finish_reason"], "stop");
    let last = items.last().unwrap().as_ref().unwrap().usage.unwrap();
    assert_eq!((last.completion_tokens, last.reasoning_tokens), (9, 6));
}

#[test]
fn thinking_round_trip_non_stream() {
    let raw = r#"{"id":"msg_th","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[
        {"type":"thinking","thinking":"Numeric id; use the tool.","signature":"EqQBCkgI"},
        {"type":"redacted_thinking","data":"EmwKAhgB"},
        {"type":"tool_use","id":"toolu_1","name":"lookup","input":{"id":"7"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":40}}"#;
    let (body, _) = parse_response(raw.as_bytes(), "c").unwrap();
    let msg = &body["choices"][0]["message"];
    assert_eq!(msg["reasoning_content"], "Numeric id; use the tool.");
    assert_eq!(msg["content"], Value::Null);
    let blocks = msg[THINKING_BLOCKS].clone();
    assert_eq!(
        blocks,
        json!([{"type":"thinking","thinking":"Numeric id; use the tool.","signature":"EqQBCkgI"},{"type":"redacted_thinking","data":"EmwKAhgB"}])
    );
    // The client sends the message back as it came: the blocks go first, unchanged.
    let mut back = msg.clone();
    back["content"] = json!("");
    let req = build(json!({"messages": [
        {"role": "user", "content": "where is 7?"},
        back,
        {"role": "tool", "tool_call_id": "toolu_1", "content": "late"}
    ], "reasoning_effort": "low"}));
    let turn = &req["messages"][1]["content"];
    assert_eq!(turn[0], json!({"type":"thinking","thinking":"Numeric id; use the tool.","signature":"EqQBCkgI"}));
    assert_eq!(turn[1], json!({"type":"redacted_thinking","data":"EmwKAhgB"}));
    assert_eq!(turn[2]["type"], "tool_use");
    assert_eq!(req["thinking"]["budget_tokens"], 1024);
    // Malformed blocks are the client's mistake, named.
    let bad = |blocks: Value| build_err(json!({"messages": [{"role": "assistant", "content": "x", "thinking_blocks": blocks}]})).0.unwrap();
    assert_eq!(bad(json!([{"type": "thinking", "thinking": "t"}])), "messages[0].thinking_blocks[0]");
    assert_eq!(bad(json!([{"type": "redacted_thinking"}])), "messages[0].thinking_blocks[0].data");
    assert_eq!(bad(json!([{"type": "text", "text": "t"}])), "messages[0].thinking_blocks[0].type");
    assert_eq!(bad(json!("x")), "messages[0].thinking_blocks");
}

/// Cache writes and reads are reported exactly (§7.6): prompt = input + reads + writes, each once,
/// streamed and not.
#[test]
fn cache_usage_is_exact() {
    let raw = r#"{"id":"msg_c","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn",
        "usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"output_tokens":3}}"#;
    let (body, usage) = parse_response(raw.as_bytes(), "c").unwrap();
    assert_eq!(usage, Usage { prompt_tokens: 12 + 2048 + 4096, completion_tokens: 3, cached_tokens: 4096, cache_write_tokens: 2048, reasoning_tokens: 0 });
    assert_eq!(body["usage"]["prompt_tokens"], 6156);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4096);
    let t = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_c","model":"c","content":[],"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"output_tokens":1}}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let (items, _) = run_stream(t, true);
    assert_eq!(items.last().unwrap().as_ref().unwrap().usage.unwrap(), usage);
}

#[test]
fn stream_error_event_is_mid_stream() {
    let t = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_e","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}

event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

"#;
    let (items, done) = run_stream(t, false);
    assert!(done);
    match items.last().unwrap() {
        Err(UpstreamError::MidStream { provider_code, message }) => {
            assert_eq!(provider_code.as_deref(), Some("overloaded_error"));
            assert_eq!(message, "Overloaded");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stream_without_message_stop_is_not_done() {
    let t = TOOL_STREAM.split("event: message_delta").next().unwrap();
    let (items, done) = run_stream(t, true);
    assert!(!done);
    assert!(items.iter().all(Result::is_ok));
}

#[test]
fn stream_untyped_events_dispatch_on_data_type() {
    // No `event:` lines: the `type` field decides.
    let t = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_u\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":1}}}\n\n\
             data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n\
             data: {\"type\":\"message_stop\"}\n\n";
    let (items, done) = run_stream(t, false);
    assert!(done);
    let cs = chunks(&items);
    // role, text, synthesised finish
    assert_eq!(cs.len(), 3);
    assert_eq!(cs[2]["choices"][0]["finish_reason"], "stop");
}

/// Random event names and JSON-ish payloads through both mappers: never a panic.
#[test]
fn mappers_never_panic_on_random_events() {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }
    let names = ["", "message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop", "error", "ping", "zzz"];
    let pieces = [
        "{", "}", "[", "]", ",", ":", "\"type\"", "\"index\"", "\"delta\"", "\"message\"", "\"usage\"", "\"text_delta\"",
        "\"input_json_delta\"", "\"tool_use\"", "\"content_block\"", "\"partial_json\"", "\"text\"", "\"error\"", "\"choices\"",
        "0", "1", "-1", "18446744073709551616", "null", "true", "\"x\"", "\"é\"", "[DONE]", " ",
    ];
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for _ in 0..3000 {
        let n = (rng.next() % 24) as usize;
        let data: String = (0..n).map(|_| rng.pick(&pieces)).collect();
        let ev = SseEvent { event: rng.pick(&names).to_string(), data, id: None };
        let mut out = Out::new();
        let _ = AnthropicStream::new("m", rng.next().is_multiple_of(2)).on_event(ev.clone(), &mut out);
        let _ = crate::openai::OpenAiStream::new(true).on_event(ev, &mut out);
    }
    // Structured but wrong-typed events.
    for data in [
        r#"{"type":"content_block_delta","index":5,"delta":{"type":"input_json_delta","partial_json":"x"}}"#,
        r#"{"type":"content_block_start","index":-1,"content_block":{"type":"tool_use"}}"#,
        r#"{"type":"message_delta","delta":null,"usage":{"output_tokens":"many"}}"#,
        r#"{"type":"message_start","message":{"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":18446744073709551615}}}"#,
    ] {
        let mut m = AnthropicStream::new("m", true);
        let mut out = Out::new();
        let _ = m.on_event(SseEvent { event: String::new(), data: data.to_string(), id: None }, &mut out);
        let _ = m.on_event(SseEvent { event: "message_stop".into(), data: "{}".into(), id: None }, &mut out);
    }
}

/// Clients that drop unknown fields (plain dicts rebuilt from `tool_calls`) still continue a
/// thinking tool loop: the blocks are remembered by the first tool call id and restored.
#[test]
fn thinking_blocks_are_remembered_by_tool_call_id() {
    let cache = crate::gemini::SignatureCache::default();
    let raw = r#"{"id":"msg_r","content":[{"type":"thinking","thinking":"plan","signature":"SIG1"},
        {"type":"tool_use","id":"toolu_A","name":"lookup","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"#;
    let (body, _) = parse_response(raw.as_bytes(), "c").unwrap();
    remember_thinking_of(&body, &cache);
    let call = json!([{"id":"toolu_A","type":"function","function":{"name":"lookup","arguments":"{}"}}]);
    let mut req = obj(json!({"messages": [
        {"role":"user","content":"q"},
        {"role":"assistant","content":null,"tool_calls":call},
        {"role":"tool","tool_call_id":"toolu_A","content":"r"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"toolu_other","type":"function","function":{"name":"lookup","arguments":"{}"}}]},
        {"role":"assistant","content":"x","thinking_blocks":[]}
    ]}));
    restore_thinking(&mut req, &cache);
    assert_eq!(req["messages"][1][THINKING_BLOCKS], json!([{"type":"thinking","thinking":"plan","signature":"SIG1"}]));
    assert!(req["messages"][3].get(THINKING_BLOCKS).is_none(), "unknown id: nothing restored");
    assert_eq!(req["messages"][4][THINKING_BLOCKS], json!([]), "what the client sent wins");
    let out = build_request(&req, "claude", false).unwrap();
    assert_eq!(out["messages"][1]["content"][0]["signature"], "SIG1");

    // Streams remember too, once complete.
    let t = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_s","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"streamed plan"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"SIG2"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_B","name":"lookup","input":{}}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let mut dec = crate::sse::SseDecoder::new();
    dec.push(t.as_bytes()).unwrap();
    dec.finish();
    let mut m = AnthropicStream::new("c", false).remembering(cache.clone());
    let mut out = Out::new();
    while let Some(ev) = dec.next_event() {
        if m.on_event(ev, &mut out) {
            break;
        }
    }
    let saved: Value = serde_json::from_str(&cache.get("anthropic-thinking:toolu_B").unwrap()).unwrap();
    assert_eq!(saved, json!([{"type":"thinking","thinking":"streamed plan","signature":"SIG2"}]));
}
