//! In-process smoke tests of the mock over real HTTP (reqwest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use gatehouse_testkit::{MockProvider, UTF8_SUFFIX};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post_openai(mock: &MockProvider, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", mock.openai_base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_anthropic(mock: &MockProvider, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Parses an SSE body into (event name, data) pairs; comments are skipped.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let normalized = body.replace("\r\n", "\n");
    normalized
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v.to_owned());
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})
}

#[tokio::test]
async fn openai_chat_echo_and_recording() {
    let mock = MockProvider::start().await.unwrap();
    let resp = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt", "hello there", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(mock.calls(), 1);
    assert_eq!(mock.calls_for("/v1/chat/completions"), 1);
    assert_eq!(mock.calls_for("/v1/messages"), 0);
    assert_eq!(mock.last_request().unwrap()["model"], "mock-gpt");
    let h = mock.last_headers().unwrap();
    assert_eq!(h["authorization"], "Bearer sk-test");
    let usage = mock.last_usage().unwrap();
    assert_eq!(
        usage.completion_tokens,
        u["completion_tokens"].as_u64().unwrap()
    );
    mock.reset();
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn openai_stream_with_usage_ends_with_one_done() {
    let mock = MockProvider::start().await.unwrap();
    let mut body = chat("mock-gpt:cached", "stream me please", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post_openai(&mock, "/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert_eq!(events.iter().filter(|e| e.1 == "[DONE]").count(), 1);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.1).unwrap())
        .collect();
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| !c["usage"].is_null()).collect();
    assert_eq!(with_usage.len(), 1);
    assert_eq!(with_usage[0]["choices"], json!([]));
    assert_eq!(
        with_usage[0]["usage"]["prompt_tokens_details"]["cached_tokens"],
        1024
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "echo: stream me please");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null() && c["choices"][0].is_object())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");

    // Without include_usage no chunk carries a usage key.
    let resp = post_openai(&mock, "/chat/completions", chat("mock-gpt", "x", true)).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("\"usage\""));
}

#[tokio::test]
async fn openai_parallel_tool_fragments_reassemble_per_index() {
    let mock = MockProvider::start().await.unwrap();
    let mut body = chat("mock-gpt:parallel-tools", "weather?", true);
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup_order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"]}}}]);
    let text = post_openai(&mock, "/chat/completions", body.clone())
        .await
        .text()
        .await
        .unwrap();
    let mut args = [String::new(), String::new()];
    let mut names = [String::new(), String::new()];
    let mut finish = None;
    for (_, data) in sse_events(&text) {
        if data == "[DONE]" {
            continue;
        }
        let c: Value = serde_json::from_str(&data).unwrap();
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if let Some(n) = tc["function"]["name"].as_str() {
                names[i] = n.to_owned();
                assert!(tc["id"].as_str().unwrap().starts_with("call_"));
            }
            args[i].push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(names, ["lookup_order", "lookup_order"]);
    assert_eq!(
        serde_json::from_str::<Value>(&args[0]).unwrap(),
        json!({"order_id": "Paris"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&args[1]).unwrap(),
        json!({"order_id": "Tokyo"})
    );

    // Non-streaming: same calls, arguments as JSON strings.
    body["stream"] = json!(false);
    let v: Value = post_openai(&mock, "/chat/completions", body)
        .await
        .json()
        .await
        .unwrap();
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert_eq!(calls[0]["function"]["arguments"], r#"{"order_id":"Paris"}"#);
}

#[tokio::test]
async fn anthropic_stream_has_the_exact_event_sequence() {
    let mock = MockProvider::start().await.unwrap();
    let resp = post_anthropic(
        &mock,
        json!({"model": "mock-claude:tools", "max_tokens": 64, "stream": true,
               "messages": [{"role": "user", "content": "order 7731?"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    let events = sse_events(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.0.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            // TOOL_PREAMBLE, one word per delta
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], name.as_deref().unwrap());
    }
    let deltas: Vec<Value> = events
        .iter()
        .filter(|e| e.0.as_deref() == Some("content_block_delta"))
        .map(|e| serde_json::from_str(&e.1).unwrap())
        .collect();
    let json_parts: Vec<&str> = deltas
        .iter()
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(json_parts[0], "");
    let input: Value = serde_json::from_str(&json_parts.concat()).unwrap();
    assert_eq!(input, json!({"location": "Paris"}));
    let md: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(md["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn anthropic_non_stream_with_cache_usage() {
    let mock = MockProvider::start().await.unwrap();
    let v: Value = post_anthropic(
        &mock,
        json!({"model": "mock-claude:cached=400", "max_tokens": 64, "system": "be brief",
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "echo: hi claude"})
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 400);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 100);
    let u = mock.last_usage().unwrap();
    assert_eq!(u.cached_tokens, 400);
    assert_eq!(u.cache_write_tokens, 100);
    assert_eq!(
        u.prompt_tokens,
        v["usage"]["input_tokens"].as_u64().unwrap() + 500
    );
}

#[tokio::test]
async fn auth_like_the_vendors() {
    let mock = MockProvider::builder()
        .expected_key("sk-right")
        .start()
        .await
        .unwrap();
    let resp = post_openai(&mock, "/chat/completions", chat("mock-gpt", "x", false)).await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(!v.to_string().contains("sk-test"));

    let ok = client()
        .post(format!("{}/chat/completions", mock.openai_base_url()))
        .bearer_auth("sk-right")
        .json(&chat("mock-gpt", "x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let resp = post_anthropic(
        &mock,
        json!({"model": "mock-claude", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    // Anthropic without anthropic-version → 400; Bearer is accepted.
    let resp = client()
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .bearer_auth("sk-right")
        .json(&json!({"model": "mock-claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(format!("{}/v1/messages", mock.anthropic_base_url()))
        .bearer_auth("sk-right")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "mock-claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.calls(), 5);
}

#[tokio::test]
async fn scripted_statuses_and_fail_first() {
    let mock = MockProvider::start().await.unwrap();
    let resp = post_openai(&mock, "/chat/completions", chat("mock-gpt:429", "x", false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let resp = post_anthropic(
        &mock,
        json!({"model": "mock-claude:529,retry_after=7", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");

    let model = "mock-gpt:500,fail_first=1";
    let r1 = post_openai(&mock, "/chat/completions", chat(model, "x", false)).await;
    let r2 = post_openai(&mock, "/chat/completions", chat(model, "x", false)).await;
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (500, 200));

    // The header overrides the model name; unknown options are a 400 naming the option.
    let resp = client()
        .post(format!("{}/chat/completions", mock.openai_base_url()))
        .header("x-mock-scenario", "status=503")
        .json(&chat("mock-gpt", "x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let resp = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:bogus", "x", false),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("bogus"));
}

#[tokio::test]
async fn failures_after_the_stream_started() {
    let mock = MockProvider::start().await.unwrap();
    // OpenAI in-band error, no [DONE].
    let text = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:error-mid-stream", "a b c d", true),
    )
    .await
    .text()
    .await
    .unwrap();
    let events = sse_events(&text);
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!text.contains("[DONE]"));

    // Anthropic `event: error`.
    let text = post_anthropic(
        &mock,
        json!({"model": "mock-claude:error-mid-stream", "max_tokens": 5,
        "stream": true, "messages": [{"role": "user", "content": "a b c"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().0.as_deref(), Some("error"));
    assert!(!text.contains("message_stop"));

    // early-end: clean HTTP end, no terminator.
    let text = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:early-end", "a b c d", true),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("chat.completion.chunk"));
    assert!(!text.contains("[DONE]"));

    // early-close: the connection is aborted, the client sees a body error.
    let resp = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:early-close", "a b c d", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut saw_error = false;
    while let Some(item) = stream.next().await {
        if item.is_err() {
            saw_error = true;
            break;
        }
    }
    assert!(saw_error, "early-close must end in a transport error");
    assert_eq!(
        mock.disconnects(),
        0,
        "scripted closes are not client disconnects"
    );
}

#[tokio::test]
async fn framing_variants_and_utf8_split() {
    let mock = MockProvider::start().await.unwrap();
    let text = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:crlf,keepalive", "hi", true),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("\r\n\r\n"));
    assert!(!text.replace("\r\n", "").contains('\n'));
    assert!(text.starts_with(": keep-alive\r\n\r\n"));

    let resp = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:utf8-split,chunks=3", "hi", true),
    )
    .await;
    let mut bytes = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(item) = stream.next().await {
        bytes.extend_from_slice(&item.unwrap());
    }
    let text = String::from_utf8(bytes).expect("the joined body is valid UTF-8");
    let content: String = sse_events(&text)
        .iter()
        .filter(|e| e.1 != "[DONE]")
        .filter_map(|e| {
            let v: Value = serde_json::from_str(&e.1).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, format!("echo: hi{UTF8_SUFFIX}"));

    // noise: unknown Anthropic event, Azure-style empty-choices chunk, unknown JSON field.
    let text = post_anthropic(
        &mock,
        json!({"model": "mock-claude:noise", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        sse_events(&text)
            .iter()
            .any(|e| e.0.as_deref() == Some("mock_future_event"))
    );
    let text = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:noise", "x", true),
    )
    .await
    .text()
    .await
    .unwrap();
    let first: Value = serde_json::from_str(&sse_events(&text)[0].1).unwrap();
    assert_eq!(first["choices"], json!([]));
    let v: Value = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:noise", "x", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(v.get("x_mock_unknown_field").is_some());
}

#[tokio::test]
async fn client_disconnect_is_recorded() {
    let mock = MockProvider::start().await.unwrap();
    let resp = post_openai(
        &mock,
        "/chat/completions",
        chat("mock-gpt:chunks=200,delay_ms=20", "long one", true),
    )
    .await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);
    assert!(mock.wait_for_disconnects(1, Duration::from_secs(10)).await);
    assert_eq!(mock.disconnects(), 1);
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let mock = MockProvider::start().await.unwrap();
    let f: Value = post_openai(&mock, "/embeddings",
        json!({"model": "mock-embed", "input": ["red lamp", "blue lamp"], "encoding_format": "float", "dimensions": 4}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(f["object"], "list");
    assert_eq!(f["data"].as_array().unwrap().len(), 2);
    let floats: Vec<f32> = f["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 4);
    let b: Value = post_openai(&mock, "/embeddings",
        json!({"model": "mock-embed", "input": ["red lamp", "blue lamp"], "encoding_format": "base64", "dimensions": 4}))
    .await
    .json()
    .await
    .unwrap();
    let s = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(s.len(), 24); // 16 bytes → 24 base64 characters
    assert_eq!(f["usage"]["prompt_tokens"], 4);
    let bad = post_openai(
        &mock,
        "/embeddings",
        json!({"model": "mock-embed", "input": []}),
    )
    .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn models_in_both_shapes_and_unknown_routes() {
    let mock = MockProvider::start().await.unwrap();
    let v: Value = client()
        .get(format!("{}/models", mock.openai_base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "mock-gpt")
    );
    let v: Value = client()
        .get(format!("{}/v1/models", mock.anthropic_base_url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"][0]["type"], "model");
    let resp = client()
        .get(format!("{}/v1/nope", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/nope"));
    assert_eq!(mock.calls_for("/v1/models"), 2);
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let mock = MockProvider::start().await.unwrap();
    let url = format!("{}/models", mock.openai_base_url());
    assert!(client().get(&url).send().await.is_ok());
    mock.shutdown().await;
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
}

#[tokio::test]
async fn openai_reasoning_models_refuse_max_tokens() {
    let mock = MockProvider::builder().start().await.unwrap();
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let resp = post_openai(&mock, "/chat/completions", json!({"model": "o3-mini", "max_tokens": 5, "messages": msgs})).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["error"]["code"].as_str(), v["error"]["param"].as_str()), (Some("unsupported_parameter"), Some("max_tokens")));
    for body in [
        json!({"model": "o3-mini", "max_completion_tokens": 5, "messages": msgs}),
        json!({"model": "gpt-5.1:tools", "messages": msgs}),
        json!({"model": "mock-gpt", "max_tokens": 5, "messages": msgs}),
    ] {
        assert_eq!(post_openai(&mock, "/chat/completions", body.clone()).await.status(), 200, "{body}");
    }
}
