//! Data-plane hardening from the break-it pass (issue 6): a stalled request body is answered 408
//! and frees the connection; invalid sampling/message/tool fields are refused with 400 naming
//! the field before any upstream call.

use std::time::Duration;

use gatehouse_gateway::GatewaySettings;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, Options};

/// Sends headers announcing `announced` body bytes, then only `sent` bytes, and reads the answer
/// (the test gives up after 20 s, far above the 300 ms timeout under test).
async fn stalled_request(h: &Harness, path: &str, auth_header: &str, announced: usize, sent: &str) -> String {
    let addr = h.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth_header}\r\ncontent-type: application/json\r\ncontent-length: {announced}\r\n\r\n{sent}"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                // Stop once the whole (content-length) body is in.
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway held the stalled connection");
    String::from_utf8_lossy(&buf).to_string()
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_in_each_api_shape() {
    let settings = GatewaySettings { body_read_timeout: Duration::from_millis(300), ..GatewaySettings::default() };
    let h = Harness::start_with(Options { settings, ..Options::default() }).await;
    let auth = format!("authorization: Bearer {}", h.key);
    let answer = stalled_request(&h, "/v1/chat/completions", &auth, 500, r#"{"model":"demo","#).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // The Anthropic API answers in its own shape.
    let anthropic_auth = format!("x-api-key: {}", h.key);
    let answer = stalled_request(&h, "/v1/messages", &anthropic_auth, 500, r#"{"model":"#).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn invalid_chat_fields_are_400_naming_the_field_before_any_upstream_call() {
    let h = Harness::start().await;
    let base = || json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("max_tokens", json!(0), "max_tokens"),
        ("max_tokens", json!(-5), "max_tokens"),
        ("max_tokens", json!("many"), "max_tokens"),
        ("max_completion_tokens", json!(0), "max_completion_tokens"),
        ("n", json!(0), "n"),
        ("n", json!(1000), "n"),
        ("temperature", json!(3), "temperature"),
        ("top_p", json!(1.5), "top_p"),
        ("tools", json!("get_weather"), "tools"),
        ("tools", json!([{"type": "function", "function": {}}]), "tools[0].function.name"),
        ("messages", json!([{"role": "wizard", "content": "x"}]), "messages[0].role"),
        ("messages", json!([{"role": "user", "content": "x"}, {"role": "tool", "content": "42"}]), "messages[1].tool_call_id"),
    ];
    for (field, value, param) in cases {
        let mut b = base();
        b[field] = value.clone();
        let resp = h.post("/v1/chat/completions", Some(&h.key), &b).await;
        assert_eq!(resp.status(), 400, "{field} = {value}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["param"], param, "{field} = {value}: {err}");
    }
    let resp = h.post("/v1/embeddings", Some(&h.key), &json!({"model": "mock/text-embedding-3-small", "input": ""})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], "input");
    assert_eq!(h.mock.calls(), 0, "nothing reached the upstream");
    // Valid values still pass.
    let mut ok = base();
    ok["max_tokens"] = json!(8);
    ok["temperature"] = json!(0.2);
    ok["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    assert_eq!(h.post("/v1/chat/completions", Some(&h.key), &ok).await.status(), 200);
}
