//! The Bedrock adapter end to end: OpenAI chat and Anthropic Messages clients through the
//! gateway to the mock speaking Converse/ConverseStream, signed with SigV4 (the mock recomputes
//! the signature with the secret access key), by the explicit `mock-bedrock/<modelId>` form.

use serde_json::{Value, json};

use crate::harness::{BEDROCK_ACCESS_KEY_ID, Harness, PROVIDER_KEY, sse_data, stream_content};

#[tokio::test]
async fn openai_clients_reach_bedrock_streamed_and_not() {
    let mut h = Harness::start().await;
    let resp = h.chat("mock-bedrock/mock-bedrock:cached=40", None).await;
    assert_eq!(resp.status(), 200);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["usage"]["prompt_tokens_details"]["cached_tokens"], 40);
    // Signed, never carrying the secret.
    let sent = h.mock.last_headers().unwrap();
    assert!(sent["authorization"].to_str().unwrap().starts_with(&format!("AWS4-HMAC-SHA256 Credential={BEDROCK_ACCESS_KEY_ID}/")));
    assert!(!format!("{sent:?}").contains(PROVIDER_KEY));
    assert_eq!(h.mock.calls_for("/model/mock-bedrock%3Acached%3D40/converse"), 1);

    let resp = h.chat("mock-bedrock/mock-bedrock:chunks=4", Some(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(stream_content(&events).starts_with("echo: hello there"));

    // An upstream error keeps its class: Bedrock's ThrottlingException is the client's 429.
    let resp = h.chat("mock-bedrock/mock-bedrock:429", None).await;
    assert_eq!(resp.status(), 429);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(PROVIDER_KEY));

    let logs = h.finish().await;
    let rows: Vec<_> = logs.iter().filter(|l| l.provider.as_deref() == Some("mock-bedrock")).collect();
    assert_eq!(rows.len(), 3, "{logs:#?}");
    assert_eq!(rows[0].cached_tokens, 40);
    assert!(rows[0].cache_write_tokens > 0, "cacheWriteInputTokens reach the call log");
    assert!(rows[1].stream && rows[1].completion_tokens > 0, "streamed usage from the metadata event");
    assert_eq!(rows[2].status, 429);
}

#[tokio::test]
async fn anthropic_clients_get_bedrock_tool_calls() {
    let h = Harness::start().await;
    let body = json!({"model": "mock-bedrock/mock-bedrock:tools", "max_tokens": 200, "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]});
    let resp = h.client.post(h.url("/v1/messages")).header("x-api-key", &h.key).header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let tool = m["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(tool["name"], "get_weather");
    assert!(tool["input"]["location"].is_string());
    assert!(tool["id"].as_str().unwrap().starts_with("tooluse_"), "Bedrock's id is kept: {tool}");
    let sent = h.mock.last_request().unwrap();
    assert_eq!(sent["toolConfig"]["tools"][0]["toolSpec"]["name"], "get_weather");
}
