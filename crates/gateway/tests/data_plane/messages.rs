//! `POST /v1/messages` (Anthropic Messages inbound) to OpenAI- and Anthropic-format upstreams:
//! credential rules, Anthropic error shapes and statuses, stream event order, tool use, usage in
//! the call log.

use serde_json::{Value, json};

use crate::harness::{Harness, request_id};

const MESSAGES: &str = "/v1/messages";

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

async fn post_x_api_key(h: &Harness, key: &str, body: &Value) -> reqwest::Response {
    h.client.post(h.url(MESSAGES)).header("x-api-key", key).header("anthropic-version", "2023-06-01").json(body).send().await.unwrap()
}

/// `(event name, data)` pairs of an Anthropic SSE body.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["type"], name.as_str(), "event name equals data.type");
            (name, v)
        })
        .collect()
}

fn assert_anthropic_error(v: &Value, ty: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], ty, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn non_stream_to_openai_and_anthropic_upstreams() {
    let mut h = Harness::start().await;
    for model in ["demo", "demo-claude"] {
        let resp = post_x_api_key(&h, &h.key, &body(model, false)).await;
        assert_eq!(resp.status(), 200, "{model}");
        let m: Value = resp.json().await.unwrap();
        assert_eq!(m["type"], "message");
        assert_eq!(m["role"], "assistant");
        assert_eq!(m["model"], model);
        assert!(m["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(m["content"][0], json!({"type": "text", "text": "echo: hello there"}));
        assert_eq!(m["stop_reason"], "end_turn");
        assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    // The upstream got the provider key, never the client's key.
    let auth = h.mock.last_headers().unwrap();
    assert!(!format!("{auth:?}").contains(&h.key));
    let logs = h.finish().await;
    let rows: Vec<_> = logs.iter().filter(|l| l.endpoint == "POST /v1/messages").collect();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r.status, 200);
        assert!(r.prompt_tokens > 0 && r.completion_tokens > 0, "{r:?}");
    }
}

#[tokio::test]
async fn stream_event_order_and_usage_with_bearer() {
    let mut h = Harness::start().await;
    for model in ["demo", "demo-claude"] {
        let resp = h.post(MESSAGES, Some(&h.key), &body(model, true)).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        let ev = events(&text);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).filter(|n| *n != "ping").collect();
        assert_eq!(names.first(), Some(&"message_start"), "{text}");
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"], "{text}");
        assert_eq!(names[1], "content_block_start");
        assert_eq!(names[names.len() - 3], "content_block_stop");
        let text_out: String = ev
            .iter()
            .filter_map(|(_, v)| v["delta"]["text"].as_str())
            .collect();
        assert_eq!(text_out, "echo: hello there", "{model}");
        let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
        assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    let logs = h.finish().await;
    for r in logs.iter().filter(|l| l.endpoint == "POST /v1/messages") {
        assert!(r.stream && r.status == 200 && r.completion_tokens > 0 && r.ttft_ms.is_some(), "{r:?}");
    }
}

#[tokio::test]
async fn tool_use_streamed_and_not() {
    let h = Harness::start().await;
    let mut b = body("mock/mock-gpt:tools", false);
    b["tools"] = json!([{"name": "lookup_order", "description": "Find an order", "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}]);
    let m: Value = post_x_api_key(&h, &h.key, &b).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let tool = m["content"].as_array().unwrap().iter().find(|c| c["type"] == "tool_use").unwrap().clone();
    assert_eq!(tool["name"], "lookup_order");
    assert!(tool["input"]["order_id"].is_string(), "{tool}");
    // The upstream saw an OpenAI tool definition.
    let sent = h.mock.last_request().unwrap();
    assert_eq!(sent["tools"][0]["function"]["name"], "lookup_order");

    // Continue the loop with the tool result: it reaches the upstream as a `tool` message.
    let mut next = b.clone();
    next["messages"] = json!([
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": m["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "shipped"}]}
    ]);
    next["model"] = json!("demo");
    let m2: Value = post_x_api_key(&h, &h.key, &next).await.json().await.unwrap();
    assert_eq!(m2["content"][0]["text"], "tool result: shipped", "{m2}");

    b["stream"] = json!(true);
    for model in ["mock/mock-gpt:tools", "mock-anthropic/mock-claude:tools"] {
        b["model"] = json!(model);
        let text = post_x_api_key(&h, &h.key, &b).await.text().await.unwrap();
        let ev = events(&text);
        let start = ev.iter().find(|(n, v)| n == "content_block_start" && v["content_block"]["type"] == "tool_use").unwrap();
        let index = start.1["index"].clone();
        let args: String = ev
            .iter()
            .filter(|(_, v)| v["index"] == index)
            .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
            .collect();
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert!(parsed["order_id"].is_string(), "{model}: {args}");
        let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    }
}

#[tokio::test]
async fn credential_rules_and_error_shapes() {
    let h = Harness::start().await;
    let canary = h.key.clone();
    // Two credentials: 400, in Anthropic's shape, nothing echoed.
    let resp = h
        .client
        .post(h.url(MESSAGES))
        .header("x-api-key", &canary)
        .bearer_auth(&canary)
        .json(&body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&canary));
    assert_anthropic_error(&serde_json::from_str(&text).unwrap(), "invalid_request_error");
    // No credential / unknown key: 401 authentication_error.
    let resp = h.client.post(h.url(MESSAGES)).json(&body("demo", false)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    assert_anthropic_error(&resp.json().await.unwrap(), "authentication_error");
    let resp = post_x_api_key(&h, "gthk_live_notarealkey", &body("demo", false)).await;
    assert_eq!(resp.status(), 401);
    assert_anthropic_error(&resp.json().await.unwrap(), "authentication_error");
    // x-api-key is not a credential on the OpenAI API.
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-api-key", &canary)
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "missing_credential");
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/messages"));
    // Same for two credentials on the OpenAI API.
    let resp = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-goog-api-key", &canary)
        .bearer_auth(&canary)
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn request_and_upstream_errors_in_anthropic_shape() {
    let mut h = Harness::start().await;
    let (_, restricted) = h.create_key(&["demo"], None).await;
    let cases: Vec<(Value, &str, u16, &str)> = vec![
        (json!({"model": "demo", "messages": [{"role": "user", "content": "x"}]}), "k", 400, "invalid_request_error"),
        (json!({"model": "demo", "max_tokens": 5, "messages": "x"}), "k", 400, "invalid_request_error"),
        (body("no-such-model", false), "k", 404, "not_found_error"),
        (body("demo-claude", false), "r", 403, "permission_error"),
        (body("mock/mock-gpt:529", false), "k", 529, "overloaded_error"),
        (body("mock/mock-gpt:rate-limit,retry_after=7", false), "k", 429, "rate_limit_error"),
        (body("mock/mock-gpt:400", false), "k", 400, "invalid_request_error"),
    ];
    for (b, who, status, ty) in cases {
        let key = if who == "r" { &restricted } else { &h.key };
        let resp = post_x_api_key(&h, key, &b).await;
        assert_eq!(resp.status(), status, "{b}");
        if status == 429 {
            assert_eq!(resp.headers()["retry-after"], "7");
        }
        assert_anthropic_error(&resp.json().await.unwrap(), ty);
    }
    let resp = h.client.get(h.url(MESSAGES)).header("x-api-key", &h.key).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_anthropic_error(&resp.json().await.unwrap(), "invalid_request_error");
    let resp = h.client.post(h.url(MESSAGES)).header("x-api-key", &h.key).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_anthropic_error(&resp.json().await.unwrap(), "invalid_request_error");

    // Mid-stream failure: an in-band `event: error`, logged as failed.
    let resp = post_x_api_key(&h, &h.key, &body("mock/mock-gpt:error-mid-stream", true)).await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let text = resp.text().await.unwrap();
    let ev = events(&text);
    assert_eq!(ev[0].0, "message_start");
    let (name, last) = ev.last().unwrap();
    assert_eq!(name, "error", "{text}");
    assert_eq!(last["type"], "error");
    assert!(!ev.iter().any(|(n, _)| n == "message_stop"));
    let logs = h.finish().await;
    let row = logs.iter().find(|l| l.request_id == rid).unwrap();
    assert_eq!(row.status, 502);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
}
