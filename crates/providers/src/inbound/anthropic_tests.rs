#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn parse(v: Value) -> MessagesRequest {
    parse_request(&obj(v)).unwrap()
}

fn param(v: Value) -> String {
    parse_request(&obj(v)).unwrap_err().param.unwrap_or_default()
}

#[test]
fn request_maps_system_text_images_tools_and_results() {
    let r = parse(json!({
        "model": "claude-x", "max_tokens": 300, "stream": true,
        "system": [{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Second."}],
        "temperature": 0.2, "top_k": 5, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
        "tools": [{"name":"lookup","description":"Find","input_schema":{"type":"object","properties":{"id":{"type":"string"}}}}],
        "tool_choice": {"type":"any","disable_parallel_tool_use":true},
        "messages": [
            {"role":"user","content":[
                {"type":"text","text":"Where?"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR"}}
            ]},
            {"role":"assistant","content":[
                {"type":"thinking","thinking":"hmm","signature":"sig"},
                {"type":"text","text":"Checking."},
                {"type":"tool_use","id":"toolu_1","name":"lookup","input":{"id":"7"}}
            ]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"in"},{"type":"text","text":"transit"}]},
                {"type":"text","text":"And now?"}
            ]}
        ]
    }));
    assert!(r.stream);
    let b = &r.body;
    assert_eq!(b["model"], "claude-x");
    assert_eq!(b["max_tokens"], 300);
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert_eq!(b["stop"], json!(["END"]));
    assert_eq!(b["user"], "u-1");
    assert!(b.get("top_k").is_none());
    assert_eq!(b["tool_choice"], "required");
    assert_eq!(b["parallel_tool_calls"], false);
    assert_eq!(b["tools"][0]["function"]["name"], "lookup");
    assert_eq!(b["tools"][0]["function"]["parameters"]["properties"]["id"]["type"], "string");
    let m = b["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role":"system","content":"Be brief.\n\nSecond."}));
    assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:image/png;base64,iVBOR");
    assert_eq!(m[2]["content"], "Checking.");
    assert_eq!(m[2]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(serde_json::from_str::<Value>(m[2]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"id":"7"}));
    assert_eq!(m[3], json!({"role":"tool","tool_call_id":"toolu_1","content":"in\ntransit"}));
    assert_eq!(m[4], json!({"role":"user","content":"And now?"}));
    assert_eq!(m.len(), 5);
}

#[test]
fn error_results_images_in_results_and_documents() {
    let r = parse(json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[
        {"type":"tool_result","tool_use_id":"a","is_error":true,"content":"not found"},
        {"type":"tool_result","tool_use_id":"b","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]},
        {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBER"}}
    ]}]}));
    let m = r.body["messages"].as_array().unwrap();
    assert_eq!(m[0]["content"], "Error: not found");
    assert_eq!(m[1]["tool_call_id"], "b");
    assert_eq!(m[2]["role"], "user");
    assert_eq!(m[2]["content"][0]["image_url"]["url"], "https://x/y.png");
    assert_eq!(m[2]["content"][1]["file"]["file_data"], "data:application/pdf;base64,JVBER");
}

#[test]
fn thinking_and_effort() {
    let r = parse(json!({"model":"m","max_tokens":9000,"thinking":{"type":"enabled","budget_tokens":5000},"messages":[{"role":"user","content":"x"}]}));
    assert!(r.thinking);
    assert_eq!(r.reasoning_effort, Some("medium"));
    assert!(r.body.get("reasoning_effort").is_none(), "added by the gateway only for reasoning models");
    let r = parse(json!({"model":"m","max_tokens":1,"output_config":{"effort":"max","format":{"type":"json_schema","schema":{"type":"object"}}},"messages":[{"role":"user","content":"x"}]}));
    assert_eq!(r.reasoning_effort, Some("high"));
    assert_eq!(r.body["response_format"]["json_schema"]["schema"], json!({"type":"object"}));
    assert_eq!((effort_for_budget(1024), effort_for_budget(2049), effort_for_budget(20000)), ("low", "medium", "high"));
}

#[test]
fn invalid_requests_name_the_field() {
    assert_eq!(param(json!({"max_tokens":1,"messages":[]})), "model");
    assert_eq!(param(json!({"model":"m","messages":[{"role":"user","content":"x"}]})), "max_tokens");
    assert_eq!(param(json!({"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]})), "max_tokens");
    assert_eq!(param(json!({"model":"m","max_tokens":1,"messages":[]})), "messages");
    assert_eq!(param(json!({"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]})), "messages[0].role");
    assert_eq!(param(json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]})), "messages[0].content");
    assert_eq!(
        param(json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"n","input":{}}]}]})),
        "messages[0].content[0]"
    );
    assert_eq!(
        param(json!({"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]})),
        "tools[0]"
    );
    assert_eq!(param(json!({"model":"m","max_tokens":1,"stream":"yes","messages":[{"role":"user","content":"x"}]})), "stream");
    assert_eq!(param(json!({"model":"m","max_tokens":1,"tool_choice":{"type":"maybe"},"messages":[{"role":"user","content":"x"}]})), "tool_choice.type");
}

#[test]
fn response_maps_text_tools_stop_and_usage_without_double_counting() {
    let body = json!({
        "id":"chatcmpl-abc","object":"chat.completion","model":"gpt",
        "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Let me check.",
            "reasoning_content":"thinking…",
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"id\":\"7\"}"}},
                          {"id":"call.2","type":"function","function":{"name":"lookup","arguments":""}}]}}],
        "usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,
                 "prompt_tokens_details":{"cached_tokens":60,"cache_write_tokens":30}}
    });
    let m = from_openai_response(&body, "my-alias", false).unwrap();
    assert_eq!(m["id"], "msg_abc");
    assert_eq!(m["model"], "my-alias");
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["content"][0], json!({"type":"text","text":"Let me check."}));
    assert_eq!(m["content"][1], json!({"type":"tool_use","id":"call_1","name":"lookup","input":{"id":"7"}}));
    assert_eq!(m["content"][2]["id"], "call_2");
    assert_eq!(m["content"][2]["input"], json!({}));
    assert_eq!(m["usage"], json!({"input_tokens":10,"cache_creation_input_tokens":30,"cache_read_input_tokens":60,"output_tokens":20}));
    let with_thinking = from_openai_response(&body, "a", true).unwrap();
    assert_eq!(with_thinking["content"][0]["type"], "thinking");
}

#[test]
fn bad_tool_arguments_are_an_upstream_error_not_dropped() {
    let body = json!({"choices":[{"finish_reason":"tool_calls","message":{"tool_calls":[{"id":"c","function":{"name":"n","arguments":"{oops"}}]}}]});
    assert_eq!(from_openai_response(&body, "m", false).unwrap_err().code, ErrorCode::UpstreamError);
    assert_eq!(from_openai_response(&json!({"choices":[]}), "m", false).unwrap_err().code, ErrorCode::UpstreamError);
}

#[test]
fn stop_reasons_and_error_statuses() {
    assert_eq!(stop_reason(Some("stop"), false), "end_turn");
    assert_eq!(stop_reason(Some("stop"), true), "tool_use");
    assert_eq!(stop_reason(Some("length"), false), "max_tokens");
    assert_eq!(stop_reason(Some("content_filter"), false), "refusal");
    assert_eq!(error_status(ErrorCode::UpstreamOverloaded), 529);
    assert_eq!(error_status(ErrorCode::InsufficientQuota), 402);
    assert_eq!(error_status(ErrorCode::InvalidToken), 401);
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
}

fn run(chunks: &[Value]) -> Vec<Value> {
    let mut t = StreamTranslator::new("alias", false);
    let mut out = Vec::new();
    for c in chunks {
        out.extend(t.on_chunk(c).unwrap());
    }
    out.extend(t.finish());
    out
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn stream_text_then_two_tools_in_order_with_usage() {
    let events = run(&[
        chunk(json!({"role":"assistant","content":""}), None),
        chunk(json!({"content":"Hi"}), None),
        chunk(json!({"content":" there"}), None),
        chunk(json!({"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]}), None),
        chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]}), None),
        chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}), None),
        chunk(json!({"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}}]}), None),
        chunk(json!({}), Some("tool_calls")),
        json!({"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":2}}}),
    ]);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop"
        ]
    );
    assert_eq!(events[0]["message"]["model"], "alias");
    assert_eq!(events[1]["content_block"], json!({"type":"text","text":""}));
    assert_eq!(events[5]["index"], 1);
    assert_eq!(events[5]["content_block"]["id"], "call_a");
    let args: String = events.iter().filter(|e| e["index"] == 1).filter_map(|e| e["delta"]["partial_json"].as_str()).collect();
    assert_eq!(args, "{\"x\":1}");
    assert_eq!(events[9]["index"], 2);
    assert_eq!(events[12]["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[12]["usage"]["input_tokens"], 10);
    assert_eq!(events[12]["usage"]["cache_read_input_tokens"], 2);
    assert_eq!(events[12]["usage"]["output_tokens"], 7);
}

#[test]
fn empty_stream_still_well_formed_and_interleaving_is_reported() {
    assert_eq!(types(&run(&[])), ["message_start", "message_delta", "message_stop"]);
    let mut t = StreamTranslator::new("m", false);
    t.on_chunk(&chunk(json!({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}), None)).unwrap();
    t.on_chunk(&chunk(json!({"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}), None)).unwrap();
    let e = t.on_chunk(&chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}), None)).unwrap_err();
    assert_eq!(e.code, ErrorCode::UpstreamError);
}

#[test]
fn stream_thinking_only_when_asked() {
    let mut t = StreamTranslator::new("m", true);
    let mut events = t.on_chunk(&chunk(json!({"reasoning_content":"hmm"}), None)).unwrap();
    events.extend(t.on_chunk(&chunk(json!({"content":"ok"}), Some("stop"))).unwrap());
    events.extend(t.finish());
    assert_eq!(events[1]["content_block"]["type"], "thinking");
    assert_eq!(events[2]["delta"], json!({"type":"thinking_delta","thinking":"hmm"}));
    assert_eq!(events[4]["content_block"]["type"], "text");
    assert_eq!(events[4]["index"], 1);
    let plain = run(&[chunk(json!({"reasoning_content":"hmm"}), None), chunk(json!({"content":"ok"}), Some("stop"))]);
    assert!(plain.iter().all(|e| e["content_block"]["type"] != "thinking"));
    assert_eq!(plain.last().unwrap()["type"], "message_stop");
}

/// Anthropic client → gateway → Anthropic upstream: signed thinking survives both ways.
#[test]
fn thinking_blocks_round_trip_with_signatures() {
    let r = parse(json!({"model":"m","max_tokens":9000,"thinking":{"type":"enabled","budget_tokens":2000},"messages":[
        {"role":"user","content":"where is 7?"},
        {"role":"assistant","content":[
            {"type":"thinking","thinking":"use the tool","signature":"EqQBsig"},
            {"type":"redacted_thinking","data":"EmwKdata"},
            {"type":"thinking","thinking":"unsigned","signature":""},
            {"type":"tool_use","id":"toolu_1","name":"lookup","input":{"id":"7"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"late"}]}
    ]}));
    let assistant = &r.body["messages"][1];
    assert_eq!(
        assistant["thinking_blocks"],
        json!([{"type":"thinking","thinking":"use the tool","signature":"EqQBsig"},{"type":"redacted_thinking","data":"EmwKdata"}])
    );
    // Through the outbound Anthropic adapter the blocks come back first in the turn, unchanged.
    let out = crate::anthropic::build_request(&r.body, "claude", false).unwrap();
    assert_eq!(out["messages"][1]["content"][0], json!({"type":"thinking","thinking":"use the tool","signature":"EqQBsig"}));
    assert_eq!(out["messages"][1]["content"][1], json!({"type":"redacted_thinking","data":"EmwKdata"}));
    assert_eq!(out["messages"][1]["content"][2]["type"], "tool_use");
    // …and never reach an OpenAI-compatible upstream.
    let compat = crate::compat::chat_body(crate::ProviderKind::OpenAi, r.body.clone(), "gpt", false).unwrap();
    assert!(!String::from_utf8(compat).unwrap().contains("thinking_blocks"));

    // Response: the upstream's own blocks, signatures included.
    let body = json!({"id":"chatcmpl-1","choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"ok",
        "reasoning_content":"use the tool","thinking_blocks":[{"type":"thinking","thinking":"use the tool","signature":"EqQBsig"}]}}]});
    let m = from_openai_response(&body, "m", true).unwrap();
    assert_eq!(m["content"][0], json!({"type":"thinking","thinking":"use the tool","signature":"EqQBsig"}));
    assert_eq!(m["content"][1], json!({"type":"text","text":"ok"}));
    assert_eq!(m["content"].as_array().unwrap().len(), 2);

    // Stream: reasoning deltas, then the complete block closes it with its signature.
    let mut t = StreamTranslator::new("m", true);
    let mut ev = t.on_chunk(&chunk(json!({"reasoning_content":"use "}), None)).unwrap();
    ev.extend(t.on_chunk(&chunk(json!({"reasoning_content":"the tool"}), None)).unwrap());
    ev.extend(t.on_chunk(&chunk(json!({"thinking_blocks":[{"type":"thinking","thinking":"use the tool","signature":"EqQBsig"}]}), None)).unwrap());
    ev.extend(t.on_chunk(&chunk(json!({"thinking_blocks":[{"type":"redacted_thinking","data":"EmwKdata"}]}), None)).unwrap());
    ev.extend(t.on_chunk(&chunk(json!({"content":"ok"}), Some("stop"))).unwrap());
    ev.extend(t.finish());
    assert_eq!(
        types(&ev),
        [
            "message_start",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop"
        ]
    );
    assert_eq!(ev[4]["delta"], json!({"type":"signature_delta","signature":"EqQBsig"}));
    assert_eq!(ev[6]["content_block"], json!({"type":"redacted_thinking","data":"EmwKdata"}));
    assert_eq!((ev[6]["index"].as_u64(), ev[8]["index"].as_u64()), (Some(1), Some(2)));
}
