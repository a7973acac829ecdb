#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn param(v: Value) -> String {
    parse_request("m", false, &obj(v)).unwrap_err().param.unwrap_or_default()
}

#[test]
fn request_maps_system_parts_tools_and_function_round_trip() {
    let r = parse_request("gem", true, &obj(json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}], "role": "user"},
        "contents": [
            {"role": "user", "parts": [{"text": "Where is 7731?"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "lookup", "args": {"id": "7731"}}, "thoughtSignature": "sig"},
                {"functionCall": {"name": "lookup", "args": {"id": "7732"}, "id": "given-id"}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "lookup", "id": "given-id", "response": {"output": {"status": "late"}}}},
                {"functionResponse": {"name": "lookup", "response": {"output": "in transit"}}}
            ]}
        ],
        "tools": [{"functionDeclarations": [{"name": "lookup", "description": "Find", "parameters": {"type": "OBJECT", "properties": {"id": {"type": "STRING"}}, "required": ["id"]}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.3, "topK": 3, "stopSequences": ["X"], "responseMimeType": "application/json",
                             "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    }))).unwrap();
    assert!(r.include_thoughts);
    assert_eq!(r.reasoning_effort, Some("low"));
    let b = &r.body;
    assert_eq!(b["model"], "gem");
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert_eq!(b["max_tokens"], 50);
    assert_eq!(b["stop"], json!(["X"]));
    assert!(b.get("top_k").is_none());
    assert_eq!(b["response_format"]["type"], "json_object");
    assert_eq!(b["tools"][0]["function"]["parameters"]["properties"]["id"]["type"], "string");
    assert_eq!(b["tool_choice"]["function"]["name"], "lookup");
    let m = b["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role":"system","content":"Be brief."}));
    assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:image/jpeg;base64,/9j/");
    let synthesized = m[2]["tool_calls"][0]["id"].as_str().unwrap().to_string();
    assert!(synthesized.starts_with("call_lookup_"));
    assert_eq!(m[2]["tool_calls"][1]["id"], "given-id");
    // Matched by id first, then by name to the remaining call.
    assert_eq!(m[3], json!({"role":"tool","tool_call_id":"given-id","content":"{\"status\":\"late\"}"}));
    assert_eq!(m[4], json!({"role":"tool","tool_call_id":synthesized,"content":"in transit"}));
}

#[test]
fn invalid_requests_name_the_field() {
    assert_eq!(param(json!({})), "contents");
    assert_eq!(param(json!({"contents": [{"role": "system", "parts": []}]})), "contents[0].role");
    assert_eq!(param(json!({"contents": [{"role": "user"}]})), "contents[0].parts");
    assert_eq!(param(json!({"contents": [{"parts": [{"executableCode": {}}]}]})), "contents[0].parts[0]");
    assert_eq!(
        param(json!({"contents": [{"parts": [{"functionResponse": {"name": "x", "response": {}}}]}]})),
        "contents[0].parts[0].functionResponse"
    );
    assert_eq!(param(json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]})), "tools[0]");
    assert_eq!(
        param(json!({"contents": [{"parts": [{"inlineData": {"mimeType": "video/mp4", "data": "AA"}}]}]})),
        "contents[0].parts[0].inlineData.mimeType"
    );
}

#[test]
fn generation_config_counts_and_numbers_are_validated() {
    let with = |cfg: Value| param(json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": cfg}));
    for bad_cap in [json!(0), json!(-5), json!("100"), json!(1.5), json!(true), json!(4_294_967_296_u64)] {
        assert_eq!(with(json!({"maxOutputTokens": bad_cap})), "generationConfig.maxOutputTokens", "{bad_cap}");
    }
    assert_eq!(with(json!({"max_output_tokens": 0})), "generationConfig.maxOutputTokens");
    assert_eq!(with(json!({"candidateCount": 0})), "generationConfig.candidateCount");
    assert_eq!(with(json!({"temperature": "hot"})), "generationConfig.temperature");
    assert_eq!(with(json!({"topP": [1]})), "generationConfig.topP");
    let e = parse_request("m", false, &obj(json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": -1}}))).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    // Valid values still map; null means absent.
    let r = parse_request("m", false, &obj(json!({"contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {"maxOutputTokens": 7, "candidateCount": 2, "temperature": null}}))).unwrap();
    assert_eq!(r.body["max_tokens"], 7);
    assert_eq!(r.body["n"], 2);
    assert!(r.body.get("temperature").is_none());
}

#[test]
fn response_maps_text_calls_finish_and_usage() {
    let body = json!({
        "id": "chatcmpl-xyz",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\":\"7\"}"}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 40},
                  "completion_tokens_details": {"reasoning_tokens": 10}}
    });
    let g = from_openai_response(&body, "alias", false).unwrap();
    assert_eq!(g["responseId"], "xyz");
    assert_eq!(g["modelVersion"], "alias");
    let c = &g["candidates"][0];
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["content"]["parts"][0], json!({"text":"Checking"}));
    assert_eq!(c["content"]["parts"][1], json!({"functionCall":{"id":"call_1","name":"lookup","args":{"id":"7"}}}));
    assert_eq!(
        g["usageMetadata"],
        json!({"promptTokenCount":100,"candidatesTokenCount":20,"thoughtsTokenCount":10,"cachedContentTokenCount":40,"totalTokenCount":130})
    );
    assert_eq!(finish_reason(Some("length")), "MAX_TOKENS");
    assert_eq!(finish_reason(Some("content_filter")), "SAFETY");
    let bad_args = json!({"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"n","arguments":"[1]"}}]}}]});
    assert_eq!(from_openai_response(&bad_args, "m", false).unwrap_err().code, ErrorCode::UpstreamError);
}

#[test]
fn stream_text_deltas_then_whole_calls_with_usage_last() {
    let mut t = StreamTranslator::new("alias", false);
    let mut out = Vec::new();
    for c in [
        json!({"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}),
        json!({"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hi"}}]}),
        json!({"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"f","arguments":"{\"x\""}}]}}]}),
        json!({"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}),
        json!({"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        json!({"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}),
    ] {
        out.extend(t.on_chunk(&c));
    }
    out.extend(t.finish().unwrap());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["candidates"][0]["content"]["parts"][0]["text"], "Hi");
    assert!(out[0].get("usageMetadata").is_none());
    let last = &out[1];
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["candidates"][0]["content"]["parts"][0]["functionCall"], json!({"id":"call_a","name":"f","args":{"x":1}}));
    assert_eq!(last["usageMetadata"]["totalTokenCount"], 8);
    assert_eq!(last["responseId"], "1");
}

#[test]
fn errors_have_the_google_rpc_shape() {
    let e = ApiError::new(ErrorCode::InvalidToken, "bad key");
    let b = error_body(&e, error_status(e.code));
    assert_eq!(b, json!({"error":{"code":401,"message":"bad key","status":"UNAUTHENTICATED"}}));
    assert_eq!(rpc_status(429), "RESOURCE_EXHAUSTED");
    assert_eq!(rpc_status(503), "UNAVAILABLE");
}

#[test]
fn openapi_schema_types_are_lowercased() {
    let s = schema_to_json_schema(&json!({"type":"ARRAY","items":{"type":"OBJECT","properties":{"type":{"type":"STRING"}}}}));
    assert_eq!(s, json!({"type":"array","items":{"type":"object","properties":{"type":{"type":"string"}}}}));
}
