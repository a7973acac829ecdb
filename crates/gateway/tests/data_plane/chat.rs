//! Chat, streaming, embeddings, models and request validation through the gateway.

use gatehouse_testkit::UTF8_SUFFIX;
use serde_json::{Value, json};

use crate::harness::{Harness, Options, request_id, sse_data, stream_content};

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn chat_non_stream() {
    let h = Harness::start().await;
    let resp = h.chat("demo", None).await;
    assert_eq!(resp.status(), 200);
    assert!(!request_id(&resp).is_empty());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello there");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // The upstream got our provider key, never the client's Gatehouse key.
    let headers = h.mock.last_headers().unwrap();
    let auth = headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.ends_with(crate::harness::PROVIDER_KEY));
    assert!(!auth.contains(&h.key));
}

async fn stream_text(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn chat_stream_done_exactly_once_without_usage() {
    let h = Harness::start().await;
    let text = stream_text(h.chat("demo", Some(true)).await).await;
    let events = sse_data(&text);
    assert_eq!(events.iter().filter(|e| e.as_str() == "[DONE]").count(), 1);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_content(&events), "echo: hello there");
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v.get("usage").is_none_or(Value::is_null), "no usage chunk without include_usage: {e}");
    }
}

#[tokio::test]
async fn chat_stream_with_include_usage() {
    let h = Harness::start().await;
    let body = json!({"model": "demo", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hello there"}]});
    let text = stream_text(h.post(CHAT, Some(&h.key), &body).await).await;
    let events = sse_data(&text);
    assert_eq!(events.iter().filter(|e| e.as_str() == "[DONE]").count(), 1);
    let last_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(last_chunk["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{last_chunk}");
}

#[tokio::test]
async fn split_utf8_and_crlf_upstream_streams_come_out_whole() {
    let h = Harness::start().await;
    for model in ["mock/mock-gpt:utf8-split", "mock/mock-gpt:crlf", "mock-anthropic/mock-claude:utf8-split,crlf"] {
        let text = stream_text(h.chat(model, Some(true)).await).await;
        let events = sse_data(&text);
        let content = stream_content(&events);
        assert!(content.starts_with("echo: hello there"), "{model}: {content}");
        if model.contains("utf8") {
            assert!(content.ends_with(UTF8_SUFFIX), "{model}: {content}");
        }
        assert!(!text.contains('\r'), "{model}: CRLF normalised");
        assert_eq!(events.iter().filter(|e| e.as_str() == "[DONE]").count(), 1, "{model}");
    }
}

#[tokio::test]
async fn anthropic_backed_model_streamed_and_not() {
    let h = Harness::start().await;
    let resp = h.chat("demo-claude", None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello there");
    let text = stream_text(h.chat("demo-claude", Some(true)).await).await;
    let events = sse_data(&text);
    assert_eq!(stream_content(&events), "echo: hello there");
    assert_eq!(events.iter().filter(|e| e.as_str() == "[DONE]").count(), 1);
    assert_eq!(h.mock.calls_for("/v1/messages"), 2);
}

#[tokio::test]
async fn explicit_provider_model_and_unknown_model() {
    let h = Harness::start().await;
    assert_eq!(h.chat("mock/mock-gpt", None).await.status(), 200);
    let resp = h.chat("nope/model", None).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(h.chat("unknown-model", None).await.status(), 404);
}

#[tokio::test]
async fn embeddings_and_models_list() {
    let h = Harness::start().await;
    let resp = h.post("/v1/embeddings", Some(&h.key), &json!({"model": "mock/text-embedding-3-small", "input": ["a", "b"]})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let resp = h.post("/v1/embeddings", Some(&h.key), &json!({"model": "mock/x"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], "input");

    let list: Value = h.client.get(h.url("/v1/models")).bearer_auth(&h.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["demo", "demo-claude"]);
    for m in data {
        assert_eq!(m["object"], "model");
        assert!(m["created"].is_i64());
        assert!(m["owned_by"].is_string());
    }
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_field() {
    let h = Harness::start().await;
    let raw = h
        .client
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .header("content-type", "application/json")
        .body("{\"model\": \"demo\",, }")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(!request_id(&raw).is_empty());
    let body: Value = raw.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("line 1 column"), "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    for (payload, param) in [
        (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
        (json!({"model": 7, "messages": []}), "model"),
        (json!({"model": "demo", "messages": "hi"}), "messages"),
        (json!({"model": "demo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}), "stream"),
    ] {
        let resp = h.post(CHAT, Some(&h.key), &payload).await;
        assert_eq!(resp.status(), 400, "{payload}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], param);
    }
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn unknown_route_404_wrong_method_405_body_limit_413() {
    let mut opts = Options::default();
    opts.settings.body_limit_bytes = 1024;
    let h = Harness::start_with(opts).await;
    let resp = h.client.get(h.url("/v1/nothing-here?x=1")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(!request_id(&resp).is_empty());
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "not_found");

    let resp = h.client.get(h.url(CHAT)).bearer_auth(&h.key).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");

    let big = json!({"model": "demo", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let resp = h.post(CHAT, Some(&h.key), &big).await;
    assert_eq!(resp.status(), 413);
    assert!(!request_id(&resp).is_empty());
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "request_too_large");
    // Chunked (no Content-Length): the limit is enforced while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let resp = h
        .client
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn routing_reloads_after_routing_changed() {
    use gatehouse_store::{BusEvent, Bus, Deployment, Model, Store};
    let h = Harness::start().await;
    assert_eq!(h.chat("fresh", None).await.status(), 404);
    let provider = h.store.get_provider_by_name("mock").await.unwrap().unwrap();
    let model = Model {
        id: gatehouse_types::new_id(),
        name: "fresh".into(),
        deployments: vec![Deployment { id: gatehouse_types::new_id(), provider_id: provider.id, upstream_model: "mock-gpt:fixed".into(), weight: 1, priority: 0 }],
        created_at: gatehouse_types::now(),
    };
    h.store.upsert_model(&model).await.unwrap();
    h.bus.publish(BusEvent::RoutingChanged);
    let resp = h.chat("fresh", None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], gatehouse_testkit::FIXED_REPLY);
    let one: Value = h.client.get(h.url("/v1/models/fresh")).bearer_auth(&h.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["id"], "fresh");
    assert_eq!(one["object"], "model");
}
