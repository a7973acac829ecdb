//! What reaches the upstream (issue 4): the output-cap field for OpenAI reasoning models, from
//! every inbound API, checked against the mock (which refuses `max_tokens` for them, as OpenAI
//! does).

use serde_json::{Value, json};

use crate::harness::Harness;

#[tokio::test]
async fn reasoning_models_get_max_completion_tokens_from_every_api() {
    let h = Harness::start().await;
    // OpenAI API: `max_tokens` to o3-mini becomes `max_completion_tokens`, stream and not.
    for stream in [false, true] {
        let body = json!({"model": "mock/o3-mini", "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let resp = h.post("/v1/chat/completions", Some(&h.key), &body).await;
        assert_eq!(resp.status(), 200, "stream={stream}: {}", resp.text().await.unwrap());
        let sent = h.mock.last_request().unwrap();
        assert_eq!(sent["max_completion_tokens"], 50, "{sent}");
        assert!(sent.get("max_tokens").is_none(), "{sent}");
    }
    // A non-reasoning model keeps the field the client sent.
    let body = json!({"model": "demo", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(h.post("/v1/chat/completions", Some(&h.key), &body).await.status(), 200);
    assert_eq!(h.mock.last_request().unwrap()["max_tokens"], 50);
    // Anthropic Messages (max_tokens required there) and Gemini (maxOutputTokens) inbound.
    let body = json!({"model": "mock/gpt-5-mini", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let resp = h.client.post(h.url("/v1/messages")).header("x-api-key", &h.key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = h.mock.last_request().unwrap();
    assert_eq!((sent["max_completion_tokens"].clone(), sent.get("max_tokens").cloned()), (json!(64), None), "{sent}");
    let body = json!({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 32}});
    let resp = h.client.post(h.url("/v1beta/models/mock%2Fo4-mini:generateContent")).header("x-goog-api-key", &h.key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent: Value = h.mock.last_request().unwrap();
    assert_eq!((sent["max_completion_tokens"].clone(), sent.get("max_tokens").cloned()), (json!(32), None), "{sent}");
}

#[tokio::test]
async fn anthropic_beta_reaches_anthropic_upstreams_only() {
    let h = Harness::start().await;
    let flags = "interleaved-thinking-2025-05-14, context-1m-2025-08-07";
    let msg = |model: &str| json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
    // Anthropic inbound → Anthropic upstream: forwarded (normalised); → OpenAI upstream: not.
    for (model, forwarded) in [("demo-claude", true), ("demo", false)] {
        let resp = h.client.post(h.url("/v1/messages")).header("x-api-key", &h.key).header("anthropic-beta", flags).json(&msg(model)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let sent = h.mock.last_headers().unwrap();
        let got = sent.get("anthropic-beta").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(got.as_deref(), forwarded.then_some("interleaved-thinking-2025-05-14,context-1m-2025-08-07"), "{model}");
    }
    // OpenAI inbound with the header as an extra: forwarded to Anthropic, streamed too.
    let body = json!({"model": "demo-claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = h.client.post(h.url("/v1/chat/completions")).bearer_auth(&h.key).header("anthropic-beta", "files-api-2025-04-14").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.text().await.unwrap();
    assert_eq!(h.mock.last_headers().unwrap()["anthropic-beta"], "files-api-2025-04-14");
    // Without the header none is sent.
    let resp = h.client.post(h.url("/v1/messages")).header("x-api-key", &h.key).json(&msg("demo-claude")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(h.mock.last_headers().unwrap().get("anthropic-beta").is_none());
    // A malformed value is the client's mistake, in each API's error shape; nothing is sent.
    let calls = h.mock.calls();
    let resp = h.client.post(h.url("/v1/messages")).header("x-api-key", &h.key).header("anthropic-beta", "a b").json(&msg("demo-claude")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("invalid_request_error")), "{v}");
    let resp = h.client.post(h.url("/v1/chat/completions")).bearer_auth(&h.key).header("anthropic-beta", "x;y").json(&msg("demo-claude")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "anthropic-beta", "{v}");
    assert_eq!(h.mock.calls(), calls);
}
