//! Upstream failures as the client sees them (`wire-formats.md` §7.8; DESIGN.md "Upstream auth
//! failures").

use std::time::Duration;

use gatehouse_providers::Timeouts;
use serde_json::Value;

use crate::harness::{Harness, Options, PROVIDER_KEY, request_id, sse_data};

async fn json_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

#[tokio::test]
async fn upstream_429_keeps_retry_after() {
    let h = Harness::start().await;
    for model in ["mock/mock-gpt:429", "mock-anthropic/mock-claude:429"] {
        let (status, headers, body) = json_of(h.chat(model, None).await).await;
        assert_eq!(status, 429, "{model}");
        assert_eq!(headers["retry-after"], "1", "{model}");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(headers.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn upstream_500_is_502() {
    let h = Harness::start().await;
    for stream in [None, Some(true)] {
        let (status, _, body) = json_of(h.chat("mock/mock-gpt:500", stream).await).await;
        assert_eq!(status, 502);
        assert_eq!(body["error"]["code"], "upstream_error");
    }
}

#[tokio::test]
async fn upstream_401_is_502_with_a_generic_body() {
    let h = Harness::start().await;
    for model in ["mock/mock-gpt:401", "mock-anthropic/mock-claude:401"] {
        let resp = h.chat(model, None).await;
        let (status, headers, body) = json_of(resp).await;
        assert_eq!(status, 502, "{model}");
        assert!(!headers.contains_key("www-authenticate"), "our client's key is not at fault");
        assert_eq!(body["error"]["code"], "upstream_auth_error");
        let text = body.to_string();
        assert!(!text.contains(PROVIDER_KEY) && !text.contains("sk-"), "{text}");
        assert!(!text.to_lowercase().contains("incorrect api key"), "upstream body leaked: {text}");
    }
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let timeouts = Timeouts { first_byte: Duration::from_millis(300), ..Timeouts::default() };
    let h = Harness::start_with(Options { timeouts, ..Options::default() }).await;
    let (status, _, body) = json_of(h.chat("mock/mock-gpt:wait_ms=5000", None).await).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "timeout");
}

#[tokio::test]
async fn mid_stream_error_is_one_error_event_then_done() {
    let h = Harness::start().await;
    let resp = h.chat("mock/mock-gpt:error-mid-stream", Some(true)).await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    let events = sse_data(&text);
    let errors: Vec<Value> =
        events.iter().filter_map(|e| serde_json::from_str::<Value>(e).ok()).filter(|v| v.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0]["error"]["message"].is_string());
    assert_eq!(events.iter().filter(|e| e.as_str() == "[DONE]").count(), 1);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut h = h;
    let logs = h.finish().await;
    let rec = logs.iter().find(|l| l.request_id == id).unwrap();
    assert!(rec.stream);
    assert!(rec.error_code.is_some());
}
