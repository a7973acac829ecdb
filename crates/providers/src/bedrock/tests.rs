#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use proptest::prelude::*;

use super::*;
use crate::eventstream::EventStreamDecoder;
use crate::stream::{Out, StreamMapper};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn request_mapping() {
    let req = obj(json!({"model": "x", "max_completion_tokens": 400, "temperature": 0.2, "top_p": 0.9, "stop": "\n\nUser:", "seed": 4,
        "messages": [
            {"role": "system", "content": "You are the support bot."},
            {"role": "user", "content": [{"type": "text", "text": "Where is order 7731?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "file", "file": {"filename": "invoice 7731.pdf", "file_data": "data:application/pdf;base64,JVBER"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_k3P9xQ", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_id\":\"7731\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_k3P9xQ", "content": "in transit"},
            {"role": "user", "content": "thanks"}],
        "tools": [{"type": "function", "function": {"name": "lookup_order", "description": "Find an order", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}],
        "tool_choice": "required"}));
    let b = Value::Object(build_request(&req, "anthropic.claude-3-5-sonnet-20240620-v1:0").unwrap());
    assert_eq!(b["system"], json!([{"text": "You are the support bot."}]));
    assert!(b.get("model").is_none(), "the model goes in the URL");
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["content"][1], json!({"image": {"format": "png", "source": {"bytes": "iVBO"}}}));
    assert_eq!(msgs[0]["content"][2], json!({"document": {"format": "pdf", "name": "invoice-7731", "source": {"bytes": "JVBER"}}}));
    assert_eq!(msgs[1], json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_k3P9xQ", "name": "lookup_order", "input": {"order_id": "7731"}}}]}));
    assert_eq!(msgs[2]["content"][0], json!({"toolResult": {"toolUseId": "tooluse_k3P9xQ", "content": [{"text": "in transit"}], "status": "success"}}));
    assert_eq!(msgs[2]["content"][1], json!({"text": "thanks"}));
    assert_eq!(b["inferenceConfig"], json!({"maxTokens": 400, "temperature": 0.2, "topP": 0.9, "stopSequences": ["\n\nUser:"]}));
    assert_eq!(b["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["order_id"]["type"], "string");
    assert!(b.get("additionalModelRequestFields").is_none());
}

#[test]
fn tool_choice_variants() {
    let tools = json!([{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]);
    let with = |choice: Value, history: bool| {
        let mut msgs = vec![json!({"role": "user", "content": "hi"})];
        if history {
            msgs.push(json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]}));
            msgs.push(json!({"role": "tool", "tool_call_id": "c1", "content": ""}));
        }
        let req = obj(json!({"model": "m", "messages": msgs, "tools": tools, "tool_choice": choice}));
        Value::Object(build_request(&req, "amazon.nova-pro-v1:0").unwrap())
    };
    assert_eq!(with(json!("auto"), false)["toolConfig"]["toolChoice"], json!({"auto": {}}));
    assert_eq!(with(json!({"type": "function", "function": {"name": "b"}}), false)["toolConfig"]["toolChoice"], json!({"tool": {"name": "b"}}));
    assert!(with(json!("none"), false).get("toolConfig").is_none(), "none omits toolConfig");
    let kept = with(json!("none"), true);
    assert!(kept["toolConfig"]["tools"].is_array() && kept["toolConfig"].get("toolChoice").is_none(), "history with tool blocks needs toolConfig");
    assert_eq!(kept["messages"][2]["content"][0]["toolResult"]["content"], json!([{"json": {}}]), "empty tool result");
    let req = obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "sometimes"}));
    assert!(matches!(build_request(&req, "m"), Err(UpstreamError::InvalidRequest { param: Some(p), .. }) if p == "tool_choice"));
}

#[test]
fn reasoning_effort_per_model_family() {
    let req = |effort: &str, max: Option<u64>| {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort, "temperature": 0.3});
        if let Some(m) = max {
            r["max_tokens"] = json!(m);
        }
        obj(r)
    };
    let claude = Value::Object(build_request(&req("medium", None), "us.anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap());
    assert_eq!(claude["additionalModelRequestFields"]["thinking"], json!({"type": "enabled", "budget_tokens": 4096}));
    assert_eq!(claude["inferenceConfig"]["maxTokens"], 4096 + DEFAULT_MAX_TOKENS);
    assert!(claude["inferenceConfig"].get("temperature").is_none(), "no temperature while thinking");
    let capped = Value::Object(build_request(&req("high", Some(2000)), "anthropic.claude-3-7-sonnet-20250219-v1:0").unwrap());
    assert_eq!(capped["additionalModelRequestFields"]["thinking"]["budget_tokens"], 1999);
    let nova = Value::Object(build_request(&req("minimal", None), "amazon.nova-2-lite-v1:0").unwrap());
    assert_eq!(nova["additionalModelRequestFields"]["reasoningConfig"], json!({"type": "enabled", "maxReasoningEffort": "low"}));
    assert_eq!(nova["inferenceConfig"]["temperature"], 0.3);
    let other = Value::Object(build_request(&req("high", None), "openai.gpt-oss-120b-1:0").unwrap());
    assert_eq!(other["additionalModelRequestFields"]["reasoning_effort"], "high");
    let none = Value::Object(build_request(&req("none", None), "anthropic.claude-x").unwrap());
    assert!(none.get("additionalModelRequestFields").is_none());
}

#[test]
fn rejects_what_converse_cannot_take() {
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}), "messages[0].content[0].image_url.url"),
        (json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}]}), "messages[0].content[0].image_url.url"),
        (json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}), "messages[0].content[0]"),
        (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].tool_call_id"),
        (json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}), "messages[0].tool_calls[0].function.arguments"),
        (json!({"max_tokens": 0}), "max_tokens"),
    ];
    for (extra, param) in cases {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        match build_request(&obj(r), "m") {
            Err(UpstreamError::InvalidRequest { param: Some(p), .. }) => assert_eq!(p, param),
            other => panic!("{param}: {:?}", other.map(Value::Object)),
        }
    }
}

#[test]
fn endpoints_encode_the_model_id() {
    assert_eq!(endpoint("https://bedrock-runtime.us-east-1.amazonaws.com/", "amazon.nova-pro-v1:0", true),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse-stream");
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0";
    let url = endpoint("http://127.0.0.1:1", arn, false);
    assert!(url.contains("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic"), "{url}");
}

#[test]
fn response_mapping() {
    let raw = br#"{"output":{"message":{"role":"assistant","content":[
        {"reasoningContent":{"reasoningText":{"text":"Let me check.","signature":"sig"}}},
        {"text":"Checking."},
        {"toolUse":{"toolUseId":"tooluse_1","name":"lookup_order","input":{"order_id":"7731"}}}]}},
        "stopReason":"tool_use",
        "usage":{"inputTokens":233,"outputTokens":12,"totalTokens":345,"cacheReadInputTokens":80,"cacheWriteInputTokens":20},
        "metrics":{"latencyMs":812}}"#;
    let (b, u) = parse_response(raw, "amazon.nova-pro-v1:0").unwrap();
    let m = &b["choices"][0]["message"];
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(m["content"], "Checking.");
    assert_eq!(m["reasoning_content"], "Let me check.");
    assert_eq!(m["tool_calls"][0]["id"], "tooluse_1");
    assert_eq!(m["tool_calls"][0]["function"]["arguments"], r#"{"order_id":"7731"}"#);
    assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(u, Usage { prompt_tokens: 333, completion_tokens: 12, cached_tokens: 80, cache_write_tokens: 20, reasoning_tokens: 0 });
    assert_eq!(b["usage"]["prompt_tokens"], 333);
    assert!(matches!(parse_response(b"{\"message\":\"x\"}", "m"), Err(UpstreamError::Protocol(_))));
    assert!(matches!(parse_response(b"not json", "m"), Err(UpstreamError::Protocol(_))));
}

#[test]
fn stop_reasons() {
    let cases = [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
        ("malformed_tool_use", "stop"),
    ];
    for (bedrock, openai) in cases {
        assert_eq!(finish_reason(Some(bedrock), false), openai, "{bedrock}");
    }
    assert_eq!(finish_reason(None, true), "tool_calls");
}

#[test]
fn error_types_refine_the_status() {
    let headers = |t: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-amzn-errortype", http::HeaderValue::from_str(t).unwrap());
        h
    };
    let refine = |status: u16, t: &str| refine_status(UpstreamError::from_status(status, &headers(t), br#"{"message":"m"}"#), &headers(t));
    let code = |e: &UpstreamError| e.to_api_error().code;
    use gatehouse_types::ErrorCode;
    assert_eq!(code(&refine(429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")), ErrorCode::RateLimitExceeded);
    assert_eq!(code(&refine(400, "ValidationException")), ErrorCode::InvalidRequest);
    assert_eq!(code(&refine(403, "AccessDeniedException")), ErrorCode::UpstreamAuth);
    assert_eq!(code(&refine(404, "ResourceNotFoundException")), ErrorCode::ModelNotFound);
    assert_eq!(code(&refine(424, "ModelErrorException")), ErrorCode::UpstreamError);
    assert_eq!(code(&refine(408, "ModelTimeoutException")), ErrorCode::UpstreamTimeout);
    assert_eq!(code(&refine(429, "ModelNotReadyException")), ErrorCode::RateLimitExceeded);
    assert_eq!(code(&refine(400, "ServiceQuotaExceededException")), ErrorCode::RateLimitExceeded);
    assert_eq!(code(&refine(503, "ServiceUnavailableException")), ErrorCode::UpstreamOverloaded);
    assert_eq!(code(&refine(500, "InternalServerException")), ErrorCode::UpstreamError);
    match refine(400, "ValidationException") {
        UpstreamError::Status { provider_code, message, .. } => {
            assert_eq!(provider_code.as_deref(), Some("ValidationException"));
            assert_eq!(message.as_deref(), Some("m"));
        }
        other => panic!("{other:?}"),
    }
}

// ---- streaming ----------------------------------------------------------------------------

fn frame(event_type: &str, payload: &Value) -> Vec<u8> {
    let m = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String(event_type.to_owned().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&m, &mut out).unwrap();
    out
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    let m = Message::new(json!({"message": message}).to_string().into_bytes())
        .add_header(Header::new(":message-type", HeaderValue::String("exception".into())))
        .add_header(Header::new(":exception-type", HeaderValue::String(kind.to_owned().into())));
    let mut out = Vec::new();
    write_message_to(&m, &mut out).unwrap();
    out
}

/// Decoded stream: text, reasoning, tool calls by index (id, name, args), finish, usage, error, done.
#[derive(Default, Debug)]
struct Seen {
    text: String,
    reasoning: String,
    calls: BTreeMap<u64, (String, String, String)>,
    finish: Option<String>,
    usage: Option<Usage>,
    usage_chunk: bool,
    error: Option<UpstreamError>,
    done: bool,
}

fn run(bytes: &[u8], split: usize, include_usage: bool) -> Seen {
    let mut d = EventStreamDecoder::new();
    let mut mapper = BedrockStream::new("m", include_usage);
    let mut out = Out::new();
    let mut seen = Seen::default();
    for chunk in bytes.chunks(split.max(1)) {
        d.push(chunk).unwrap();
        while let Some(ev) = d.next_event() {
            if mapper.on_event(ev, &mut out) {
                seen.done = true;
            }
        }
        if seen.done {
            break;
        }
    }
    for item in out {
        match item {
            Err(e) => seen.error = Some(e),
            Ok(ev) => {
                if let Some(u) = ev.usage {
                    seen.usage = Some(u);
                }
                let Some(data) = ev.data else { continue };
                let v: Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(v["object"], "chat.completion.chunk");
                if v["choices"].as_array().unwrap().is_empty() {
                    seen.usage_chunk = true;
                }
                for ch in v["choices"].as_array().unwrap() {
                    let delta = &ch["delta"];
                    seen.text.push_str(delta["content"].as_str().unwrap_or_default());
                    seen.reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
                    for tc in delta["tool_calls"].as_array().into_iter().flatten() {
                        let e = seen.calls.entry(tc["index"].as_u64().unwrap()).or_default();
                        if let Some(id) = tc["id"].as_str() {
                            e.0.push_str(id);
                        }
                        e.1.push_str(tc["function"]["name"].as_str().unwrap_or_default());
                        e.2.push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
                    }
                    if let Some(f) = ch["finish_reason"].as_str() {
                        seen.finish = Some(f.to_owned());
                    }
                }
            }
        }
    }
    seen
}

fn sample_stream() -> Vec<u8> {
    let mut b = frame("messageStart", &json!({"role": "assistant"}));
    b.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}})));
    b.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}})));
    b.extend(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    b.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"text": "Checking – "}})));
    b.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": 1, "delta": {"text": "naïve 🦀"}})));
    b.extend(frame("contentBlockStop", &json!({"contentBlockIndex": 1})));
    for (i, (id, name, pieces)) in [("tooluse_a", "get_weather", ["{\"loc", "ation\":", "\"Paris\"}"]), ("tooluse_b", "get_time", ["", "{\"city\":\"Tokyo\"", "}"])].iter().enumerate() {
        let idx = i as u64 + 2;
        b.extend(frame("contentBlockStart", &json!({"contentBlockIndex": idx, "start": {"toolUse": {"toolUseId": id, "name": name}}})));
        for p in pieces {
            b.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": idx, "delta": {"toolUse": {"input": p}}})));
        }
        b.extend(frame("contentBlockStop", &json!({"contentBlockIndex": idx})));
    }
    b.extend(frame("mockFutureEvent", &json!({"x": 1})));
    b.extend(frame("messageStop", &json!({"stopReason": "tool_use"})));
    b.extend(frame("metadata", &json!({"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 130, "cacheReadInputTokens": 100}, "metrics": {"latencyMs": 5}})));
    b
}

#[test]
fn stream_mapping_at_every_split() {
    let bytes = sample_stream();
    for split in [1, 3, 7, 64, bytes.len()] {
        for include_usage in [false, true] {
            let s = run(&bytes, split, include_usage);
            assert!(s.done && s.error.is_none(), "{s:?}");
            assert_eq!(s.text, "Checking – naïve 🦀");
            assert_eq!(s.reasoning, "hm");
            assert_eq!(s.calls[&0], ("tooluse_a".into(), "get_weather".into(), "{\"location\":\"Paris\"}".into()));
            assert_eq!(s.calls[&1], ("tooluse_b".into(), "get_time".into(), "{\"city\":\"Tokyo\"}".into()));
            assert_eq!(s.finish.as_deref(), Some("tool_calls"));
            assert_eq!(s.usage, Some(Usage { prompt_tokens: 110, completion_tokens: 20, cached_tokens: 100, cache_write_tokens: 0, reasoning_tokens: 0 }));
            assert_eq!(s.usage_chunk, include_usage);
        }
    }
}

#[test]
fn stream_exceptions_and_early_ends() {
    let mut b = frame("messageStart", &json!({"role": "assistant"}));
    b.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "partial"}})));
    let mut with_exc = b.clone();
    with_exc.extend(exception("throttlingException", "Too many tokens, please wait before trying again."));
    let s = run(&with_exc, 5, false);
    assert_eq!(s.text, "partial");
    match s.error {
        Some(UpstreamError::MidStream { provider_code, message }) => {
            assert_eq!(provider_code.as_deref(), Some("throttlingException"));
            assert!(message.starts_with("Too many tokens"));
        }
        other => panic!("{other:?}"),
    }
    // Ended before messageStop/metadata: not done (the driver reports EarlyClose).
    let s = run(&b, 9, false);
    assert!(!s.done && s.error.is_none() && s.finish.is_none());
    // metadata without messageStop is a protocol error.
    let mut bad = b.clone();
    bad.extend(frame("metadata", &json!({"usage": {}})));
    assert!(matches!(run(&bad, 100, false).error, Some(UpstreamError::Protocol(_))));
}

// ---- round trip: OpenAI → Bedrock → OpenAI ----------------------------------------------

/// The Converse stop reason a model would report for an OpenAI finish reason.
fn stop_reason_for(finish: &str) -> &'static str {
    match finish {
        "tool_calls" => "tool_use",
        "length" => "max_tokens",
        "content_filter" => "content_filtered",
        _ => "end_turn",
    }
}

fn arb_args() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map("[a-z_]{1,8}", prop_oneof![".{0,12}".prop_map(Value::from), any::<i32>().prop_map(Value::from), any::<bool>().prop_map(Value::from)], 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// An assistant turn (text, tool calls with ids, finish reason) sent to Bedrock as history
    /// and answered back by Bedrock unchanged comes out as the same OpenAI message, streamed
    /// (split at any byte) and not.
    #[test]
    fn openai_bedrock_openai_round_trip(
        text in "[a-zA-Z0-9 .,éü✓🦀-]{0,40}",
        calls in proptest::collection::vec(("[A-Za-z0-9_-]{1,24}", "[a-zA-Z_][a-zA-Z0-9_]{0,15}", arb_args()), 0..3),
        finish in prop_oneof![Just("stop"), Just("length"), Just("content_filter")],
        split in 1usize..200,
    ) {
        let mut ids = std::collections::HashSet::new();
        prop_assume!(calls.iter().all(|(id, _, _)| ids.insert(id.clone())));
        let finish = if calls.is_empty() { finish } else { "tool_calls" };
        let tool_calls: Vec<Value> = calls.iter().map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})).collect();
        let mut assistant = json!({"role": "assistant", "content": text});
        if !tool_calls.is_empty() {
            assistant["tool_calls"] = Value::Array(tool_calls.clone());
        }
        let req = obj(json!({"model": "m", "messages": [{"role": "user", "content": "go"}, assistant]}));
        let sent = Value::Object(build_request(&req, "amazon.nova-pro-v1:0").unwrap());
        let blocks = sent["messages"][1]["content"].clone();
        prop_assume!(blocks.as_array().is_some_and(|b| !b.is_empty()));

        // Non-streamed.
        let resp = json!({"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop_reason_for(finish),
            "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}});
        let (body, _) = parse_response(resp.to_string().as_bytes(), "m").unwrap();
        let m = &body["choices"][0]["message"];
        prop_assert_eq!(&body["choices"][0]["finish_reason"], finish);
        prop_assert_eq!(m["content"].as_str().unwrap_or_default(), text.as_str());
        let got: Vec<(String, String, Value)> = m["tool_calls"].as_array().into_iter().flatten()
            .map(|c| (c["id"].as_str().unwrap().to_owned(), c["function"]["name"].as_str().unwrap().to_owned(), serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap()))
            .collect();
        let want: Vec<(String, String, Value)> = calls.clone();
        prop_assert_eq!(&got, &want);

        // Streamed: the same blocks as ConverseStream events, arguments in two pieces.
        let mut bytes = frame("messageStart", &json!({"role": "assistant"}));
        for (i, b) in blocks.as_array().unwrap().iter().enumerate() {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                let cut = t.char_indices().nth(t.chars().count() / 2).map_or(0, |(i, _)| i);
                for piece in [&t[..cut], &t[cut..]] {
                    bytes.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": i, "delta": {"text": piece}})));
                }
            } else if let Some(tu) = b.get("toolUse") {
                bytes.extend(frame("contentBlockStart", &json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}})));
                let input = tu["input"].to_string();
                let cut = input.char_indices().nth(input.chars().count() / 2).map_or(0, |(i, _)| i);
                for piece in [&input[..cut], &input[cut..]] {
                    bytes.extend(frame("contentBlockDelta", &json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": piece}}})));
                }
            }
            bytes.extend(frame("contentBlockStop", &json!({"contentBlockIndex": i})));
        }
        bytes.extend(frame("messageStop", &json!({"stopReason": stop_reason_for(finish)})));
        bytes.extend(frame("metadata", &json!({"usage": {"inputTokens": 1, "outputTokens": 2}})));
        let s = run(&bytes, split, false);
        prop_assert!(s.done && s.error.is_none());
        prop_assert_eq!(s.finish.as_deref(), Some(finish));
        prop_assert_eq!(&s.text, &text);
        let got: Vec<(String, String, Value)> = s.calls.values().map(|(id, n, a)| (id.clone(), n.clone(), serde_json::from_str(a).unwrap())).collect();
        prop_assert_eq!(&got, &want);
    }
}
