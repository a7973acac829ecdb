//! `Upstream` against a tiny scripted HTTP server on 127.0.0.1:0: the server writes exact byte
//! sequences with pauses between writes (split UTF-8, CRLF framing, comments, early and abrupt
//! close, mid-stream errors, error statuses) and records what it received. The upstream model
//! name selects the script.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures::StreamExt;
use gatehouse_providers::{ChatStream, ProviderKind, StreamEvent, Target, Timeouts, Upstream, UpstreamError};
use gatehouse_types::ErrorCode;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const KEY: &str = "sk-test-canary-0123456789";

#[derive(Clone)]
enum Step {
    Write(Vec<u8>),
    Pause(u64),
    /// Breaks the connection (the body errors).
    Abort,
}

fn w(s: &str) -> Step {
    Step::Write(s.as_bytes().to_vec())
}

struct Script {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    /// Sleep before sending the response headers (ms).
    delay_headers: u64,
    steps: Vec<Step>,
}

impl Script {
    fn ok(content_type: &'static str, steps: Vec<Step>) -> Self {
        Self { status: 200, headers: vec![("content-type", content_type)], delay_headers: 0, steps }
    }
}

const SSE: &str = "text/event-stream";
const JSON: &str = "application/json";

fn chunk(content: &str) -> String {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",
           "choices":[{"index":0,"delta":{"content":content},"logprobs":null,"finish_reason":null}],"usage":null})
    .to_string()
}

fn usage_chunk() -> String {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],
           "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,
                    "prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":1}}})
    .to_string()
}

/// "Hé€" as one chunk's data, written in pieces that split `é` and `€` mid-character.
fn split_utf8_steps(crlf: bool) -> Vec<Step> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let first = format!("data: {}{nl}{nl}", chunk("Hé€"));
    let bytes = first.into_bytes();
    let e_acute = bytes.windows(2).position(|p| p == "é".as_bytes()).unwrap();
    let euro = bytes.windows(3).position(|p| p == "€".as_bytes()).unwrap();
    let mut steps = vec![
        w(&format!(": keep-alive{nl}{nl}")),
        Step::Pause(20),
        Step::Write(bytes[..e_acute + 1].to_vec()),
        Step::Pause(20),
        Step::Write(bytes[e_acute + 1..euro + 2].to_vec()),
        Step::Pause(20),
        Step::Write(bytes[euro + 2..bytes.len() - 1].to_vec()),
        Step::Pause(20),
        Step::Write(bytes[bytes.len() - 1..].to_vec()),
    ];
    if crlf {
        // CR at the end of one write, LF at the start of the next.
        steps.push(w(&format!("data: {}\r", chunk(" world"))));
        steps.push(Step::Pause(20));
        steps.push(w("\n\r"));
        steps.push(Step::Pause(20));
        steps.push(w("\n"));
    } else {
        steps.push(w(&format!("data: {}{nl}{nl}", chunk(" world"))));
    }
    steps.push(w(&format!(": PROCESSING{nl}data:{}{nl}{nl}", usage_chunk())));
    steps.push(w(&format!("data: [DONE]{nl}{nl}")));
    steps
}

fn script(model: &str) -> Script {
    match model {
        "split-lf" => Script::ok(SSE, split_utf8_steps(false)),
        "split-crlf" => Script::ok(SSE, split_utf8_steps(true)),
        "mid-error" => Script::ok(
            SSE,
            vec![
                w(&format!("data: {}\n\n", chunk("partial"))),
                Step::Pause(10),
                w("data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"),
            ],
        ),
        "early-close" => Script::ok(SSE, vec![w(&format!("data: {}\n\n", chunk("a"))), Step::Pause(10), w(&format!("data: {}\n\n", chunk("b")))]),
        "abort" => Script::ok(SSE, vec![w(&format!("data: {}\n\n", chunk("a"))), Step::Pause(10), w("data: {\"trunc"), Step::Abort]),
        "rate-limited" => Script {
            status: 429,
            headers: vec![("content-type", JSON), ("retry-after", "7")],
            delay_headers: 0,
            steps: vec![w(r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#)],
        },
        "rate-limited-ms" => Script {
            status: 429,
            headers: vec![("content-type", JSON), ("retry-after-ms", "1500")],
            delay_headers: 0,
            steps: vec![w(r#"{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#)],
        },
        "unauthorized" => Script {
            status: 401,
            headers: vec![("content-type", JSON)],
            delay_headers: 0,
            steps: vec![w(r#"{"error":{"message":"Incorrect API key provided: sk-tes***6789.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#)],
        },
        "overloaded" => Script {
            status: 529,
            headers: vec![("content-type", JSON), ("retry-after", "3")],
            delay_headers: 0,
            steps: vec![w(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#)],
        },
        "server-error" => Script {
            status: 500,
            headers: vec![("content-type", "text/plain")],
            delay_headers: 0,
            steps: vec![w("internal explosion")],
        },
        "nonstream" => Script {
            status: 200,
            headers: vec![("content-type", JSON), ("x-request-id", "req_abc")],
            delay_headers: 0,
            steps: vec![
                w("\n\n"),
                Step::Pause(20),
                w("\n"),
                Step::Pause(20),
                w(r#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"Hé"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":1}},"extra_vendor_field":true}"#),
            ],
        },
        "json-instead-of-stream" => Script::ok(JSON, vec![w(r#"{"error":{"message":"streaming is disabled for this key","type":"invalid_request_error"}}"#)]),
        "embed" => Script::ok(
            JSON,
            vec![w(r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"e","usage":{"prompt_tokens":4,"total_tokens":4}}"#)],
        ),
        "slow-headers" => Script { status: 200, headers: vec![("content-type", SSE)], delay_headers: 3_000, steps: vec![] },
        "slow-body" => Script::ok(JSON, vec![w("{\"id\":"), Step::Pause(3_000), w("1}")]),
        "stall" => Script::ok(SSE, vec![w(&format!("data: {}\n\n", chunk("a"))), Step::Pause(3_000), w("data: [DONE]\n\n")]),
        "endless" => {
            let mut steps = Vec::new();
            for _ in 0..2_000 {
                steps.push(w(&format!("data: {}\n\n", chunk("tick"))));
                steps.push(Step::Pause(10));
            }
            Script::ok(SSE, steps)
        }
        // Anthropic.
        "claude-text" => Script {
            status: 200,
            headers: vec![("content-type", JSON), ("request-id", "req_011")],
            delay_headers: 0,
            steps: vec![w(r#"{"id":"msg_01A","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Bonjour"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":1,"output_tokens":3}}"#)],
        },
        "claude-stream" | "claude-stream-cut" => {
            let events = [
                "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01S\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\r\n\r\n",
                "event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n",
                "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
                "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüß €\"}}\r\n\r\n",
                "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n",
                "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\r\n\r\n",
                "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\r\n\r\n",
                "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\r\n\r\n",
                "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":1}\r\n\r\n",
                "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\r\n\r\n",
                "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
            ];
            let all: Vec<u8> = events.concat().into_bytes();
            let cut = if model == "claude-stream-cut" { all.len() - events[10].len() } else { all.len() };
            // Write in 7-byte pieces: splits lines, CRLF pairs and multibyte characters.
            let mut steps = Vec::new();
            for piece in all[..cut].chunks(7) {
                steps.push(Step::Write(piece.to_vec()));
                steps.push(Step::Pause(1));
            }
            Script::ok(SSE, steps)
        }
        "claude-error" => Script::ok(
            SSE,
            vec![
                w("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_E\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":2,\"output_tokens\":1}}}\n\n"),
                Step::Pause(10),
                w("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"),
            ],
        ),
        other => Script { status: 404, headers: vec![], delay_headers: 0, steps: vec![w(&format!("no script {other}"))] },
    }
}

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone, Default)]
struct Ctx {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Set when a response body stream was dropped before it finished (the client went away).
    body_dropped: Arc<AtomicBool>,
}

struct DropFlag {
    flag: Arc<AtomicBool>,
    finished: bool,
}

impl DropFlag {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

async fn handler(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    ctx.seen.lock().unwrap().push(Seen { path: uri.path().to_string(), headers, body });
    let s = script(&model);
    if s.delay_headers > 0 {
        tokio::time::sleep(Duration::from_millis(s.delay_headers)).await;
    }
    let guard = DropFlag { flag: ctx.body_dropped.clone(), finished: false };
    let stream = futures::stream::unfold((s.steps.into_iter(), guard), |(mut it, mut guard)| async move {
        loop {
            match it.next() {
                None => {
                    guard.finish();
                    return None;
                }
                Some(Step::Pause(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Some(Step::Write(b)) => return Some((Ok::<_, std::io::Error>(Bytes::from(b)), (it, guard))),
                Some(Step::Abort) => {
                    guard.finish();
                    return Some((Err(std::io::Error::other("abort")), (it, guard)));
                }
            }
        }
    });
    let mut resp = Response::builder().status(StatusCode::from_u16(s.status).unwrap());
    for (k, v) in s.headers {
        resp = resp.header(k, v);
    }
    resp.body(Body::from_stream(stream)).unwrap()
}

struct Server {
    base: String,
    ctx: Ctx,
}

async fn server() -> Server {
    let ctx = Ctx::default();
    let app = Router::new().fallback(handler).with_state(ctx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base: format!("http://{addr}"), ctx }
}

fn upstream() -> Upstream {
    Upstream::new(Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(20),
        idle: Duration::from_secs(20),
        total: Duration::from_secs(60),
    })
    .unwrap()
}

fn target(kind: ProviderKind, base: &str, model: &str) -> Target {
    let base_url = match kind {
        ProviderKind::OpenAi => format!("{base}/v1"),
        _ => base.to_string(),
    };
    Target { kind, base_url, api_key: SecretString::from(KEY), upstream_model: model.to_string(), anthropic_beta: None }
}

fn chat_request(extra: Value) -> Map<String, Value> {
    let mut m = json!({"model": "public-name", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

async fn collect(mut s: ChatStream) -> Vec<Result<StreamEvent, UpstreamError>> {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        out.push(item);
    }
    out
}

fn data_json(items: &[Result<StreamEvent, UpstreamError>]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .filter_map(|e| e.data.as_ref())
        .map(|d| serde_json::from_slice(d).unwrap())
        .collect()
}

fn text_of(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[tokio::test]
async fn openai_stream_split_utf8_lf_hides_usage_chunk() {
    let srv = server().await;
    let req = chat_request(json!({"stream": true, "x_vendor": {"keep": [1, 2]}}));
    let resp = upstream().chat_stream(&target(ProviderKind::OpenAi, &srv.base, "split-lf"), req, false).await.unwrap();
    let items = collect(resp.stream).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let chunks = data_json(&items);
    assert_eq!(chunks.len(), 2, "usage-only chunk must be hidden: {chunks:?}");
    assert_eq!(text_of(&chunks), "Hé€ world");
    let last = items.last().unwrap().as_ref().unwrap();
    assert!(last.data.is_none());
    let u = last.usage.unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens), (12, 3, 8, 1));

    // What the upstream received.
    let seen = srv.ctx.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], format!("Bearer {KEY}").as_str());
    assert_eq!(seen.body["model"], "split-lf");
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(seen.body["x_vendor"], json!({"keep": [1, 2]}));
    assert_eq!(seen.body["messages"], json!([{"role": "user", "content": "hi"}]));
}

#[tokio::test]
async fn openai_stream_crlf_with_usage_chunk() {
    let srv = server().await;
    let resp = upstream()
        .chat_stream(&target(ProviderKind::OpenAi, &srv.base, "split-crlf"), chat_request(json!({"stream": true})), true)
        .await
        .unwrap();
    let items = collect(resp.stream).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let chunks = data_json(&items);
    assert_eq!(chunks.len(), 3);
    assert_eq!(text_of(&chunks), "Hé€ world");
    assert_eq!(chunks[2]["choices"], json!([]));
    assert_eq!(chunks[2]["usage"]["total_tokens"], 15);
    // `[DONE]` is never passed on.
    assert!(items.iter().all(|i| i.as_ref().unwrap().data.as_deref() != Some(&b"[DONE]"[..])));
}

#[tokio::test]
async fn openai_mid_stream_error() {
    let srv = server().await;
    let resp = upstream().chat_stream(&target(ProviderKind::OpenAi, &srv.base, "mid-error"), chat_request(json!({})), false).await.unwrap();
    let items = collect(resp.stream).await;
    assert_eq!(items.len(), 2);
    assert_eq!(text_of(&data_json(&items)), "partial");
    match &items[1] {
        Err(e @ UpstreamError::MidStream { message, provider_code }) => {
            assert!(message.starts_with("The server had an error"));
            assert_eq!(provider_code.as_deref(), Some("server_error"));
            assert_eq!(e.to_api_error().code, ErrorCode::UpstreamError);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn openai_stream_early_close_yields_what_arrived_then_error() {
    let srv = server().await;
    let resp = upstream().chat_stream(&target(ProviderKind::OpenAi, &srv.base, "early-close"), chat_request(json!({})), false).await.unwrap();
    let items = collect(resp.stream).await;
    assert_eq!(text_of(&data_json(&items)), "ab");
    assert!(matches!(items.last(), Some(Err(UpstreamError::EarlyClose))), "{items:?}");
}

#[tokio::test]
async fn openai_stream_abrupt_close() {
    let srv = server().await;
    let resp = upstream().chat_stream(&target(ProviderKind::OpenAi, &srv.base, "abort"), chat_request(json!({})), false).await.unwrap();
    let items = collect(resp.stream).await;
    assert_eq!(text_of(&data_json(&items)), "a");
    assert!(matches!(items.last(), Some(Err(UpstreamError::EarlyClose))), "{items:?}");
}

#[tokio::test]
async fn json_answer_to_a_stream_request_is_an_error_before_streaming() {
    let srv = server().await;
    let err = upstream()
        .chat_stream(&target(ProviderKind::OpenAi, &srv.base, "json-instead-of-stream"), chat_request(json!({})), false)
        .await
        .err()
        .unwrap();
    assert!(matches!(&err, UpstreamError::MidStream { message, .. } if message == "streaming is disabled for this key"), "{err:?}");
}

#[tokio::test]
async fn rate_limited_keeps_retry_after() {
    let srv = server().await;
    for (model, secs) in [("rate-limited", 7), ("rate-limited-ms", 2)] {
        let err = upstream().chat_stream(&target(ProviderKind::OpenAi, &srv.base, model), chat_request(json!({})), false).await.err().unwrap();
        match &err {
            UpstreamError::Status { status: 429, retry_after, provider_code, .. } => {
                assert_eq!(*retry_after, Some(secs));
                assert_eq!(provider_code.as_deref(), Some("rate_limit_exceeded"));
            }
            other => panic!("{other:?}"),
        }
        let api = err.to_api_error();
        assert_eq!(api.code, ErrorCode::RateLimitExceeded);
        assert_eq!(api.retry_after, Some(secs));
    }
}

#[tokio::test]
async fn unauthorized_never_leaks_the_upstream_body() {
    let srv = server().await;
    let err = upstream().chat(&target(ProviderKind::OpenAi, &srv.base, "unauthorized"), chat_request(json!({}))).await.err().unwrap();
    assert!(matches!(err, UpstreamError::Status { status: 401, .. }));
    let api = err.to_api_error();
    assert_eq!(api.code, ErrorCode::UpstreamAuth);
    assert_eq!(api.code.status().as_u16(), 502);
    assert!(!api.message.contains("sk-"));
    assert!(!api.openai_body().to_string().contains("sk-"));
    assert!(!format!("{err}").contains(KEY));
}

#[tokio::test]
async fn other_statuses() {
    let srv = server().await;
    let err = upstream().chat(&target(ProviderKind::Anthropic, &srv.base, "overloaded"), chat_request(json!({}))).await.err().unwrap();
    match &err {
        UpstreamError::Status { status: 529, retry_after: Some(3), provider_code, message } => {
            assert_eq!(provider_code.as_deref(), Some("overloaded_error"));
            assert_eq!(message.as_deref(), Some("Overloaded"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_api_error().code, ErrorCode::UpstreamOverloaded);
    let err = upstream().chat(&target(ProviderKind::OpenAi, &srv.base, "server-error"), chat_request(json!({}))).await.err().unwrap();
    assert!(matches!(&err, UpstreamError::Status { status: 500, message: Some(m), .. } if m == "internal explosion"));
    assert_eq!(err.to_api_error().code.status().as_u16(), 502);
}

#[tokio::test]
async fn openai_non_stream_with_leading_blank_lines() {
    let srv = server().await;
    let resp = upstream()
        .chat(&target(ProviderKind::OpenAi, &srv.base, "nonstream"), chat_request(json!({"stream": false, "x_vendor": 1})))
        .await
        .unwrap();
    assert_eq!(resp.body["choices"][0]["message"]["content"], "Hé");
    assert_eq!(resp.body["extra_vendor_field"], true);
    assert_eq!(resp.upstream_request_id.as_deref(), Some("req_abc"));
    assert_eq!((resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.cached_tokens, resp.usage.reasoning_tokens), (5, 2, 4, 1));
    let seen = srv.ctx.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.body["model"], "nonstream");
    assert_eq!(seen.body["x_vendor"], 1);
    assert!(seen.body.get("stream_options").is_none());
}

#[tokio::test]
async fn embeddings() {
    let srv = server().await;
    let req = match json!({"model": "public-embed", "input": ["red lamp"], "dimensions": 2}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let resp = upstream().embeddings(&target(ProviderKind::OpenAi, &srv.base, "embed"), req.clone()).await.unwrap();
    assert_eq!(resp.usage.prompt_tokens, 4);
    assert_eq!(resp.body["data"][0]["embedding"], json!([0.1, 0.2]));
    let seen = srv.ctx.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "embed");
    assert_eq!(seen.body["dimensions"], 2);
    let err = upstream().embeddings(&target(ProviderKind::Anthropic, &srv.base, "embed"), req).await.err().unwrap();
    assert!(matches!(err, UpstreamError::Unsupported(_)));
}

#[tokio::test]
async fn anthropic_non_stream() {
    let srv = server().await;
    let resp = upstream()
        .chat(&target(ProviderKind::Anthropic, &srv.base, "claude-text"), chat_request(json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]})))
        .await
        .unwrap();
    assert_eq!(resp.body["object"], "chat.completion");
    assert_eq!(resp.body["choices"][0]["message"]["content"], "Bonjour");
    assert_eq!(resp.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(resp.upstream_request_id.as_deref(), Some("req_011"));
    assert_eq!((resp.usage.prompt_tokens, resp.usage.cached_tokens, resp.usage.cache_write_tokens, resp.usage.completion_tokens), (16, 5, 1, 3));
    let seen = srv.ctx.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body["system"], "S");
    assert_eq!(seen.body["max_tokens"], 4096);
    assert_eq!(seen.body["model"], "claude-text");
}

#[tokio::test]
async fn anthropic_stream_in_tiny_writes() {
    let srv = server().await;
    let resp = upstream()
        .chat_stream(&target(ProviderKind::Anthropic, &srv.base, "claude-stream"), chat_request(json!({"stream": true})), true)
        .await
        .unwrap();
    let items = collect(resp.stream).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let chunks = data_json(&items);
    assert_eq!(text_of(&chunks), "Grüß €");
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"a\":1}");
    let finish: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, vec!["tool_calls"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 20);
    assert_eq!(last["usage"]["completion_tokens"], 9);
    let seen = srv.ctx.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.body["stream"], true);
}

#[tokio::test]
async fn anthropic_stream_cut_before_message_stop() {
    let srv = server().await;
    let resp = upstream()
        .chat_stream(&target(ProviderKind::Anthropic, &srv.base, "claude-stream-cut"), chat_request(json!({})), false)
        .await
        .unwrap();
    let items = collect(resp.stream).await;
    assert_eq!(text_of(&data_json(&items)), "Grüß €");
    assert!(matches!(items.last(), Some(Err(UpstreamError::EarlyClose))), "{items:?}");
    // Usage seen so far is still reported for the call log.
    let usage = items.iter().filter_map(|i| i.as_ref().ok()).filter_map(|e| e.usage).last().unwrap();
    assert_eq!(usage.completion_tokens, 9);
}

#[tokio::test]
async fn anthropic_error_event() {
    let srv = server().await;
    let resp = upstream().chat_stream(&target(ProviderKind::Anthropic, &srv.base, "claude-error"), chat_request(json!({})), false).await.unwrap();
    let items = collect(resp.stream).await;
    assert!(matches!(items.last(), Some(Err(UpstreamError::MidStream { provider_code: Some(c), .. })) if c == "overloaded_error"), "{items:?}");
}

#[tokio::test]
async fn anthropic_untranslatable_request_is_rejected_before_sending() {
    let srv = server().await;
    let err = upstream()
        .chat(&target(ProviderKind::Anthropic, &srv.base, "claude-text"), chat_request(json!({"n": 3})))
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_api_error().param.as_deref(), Some("n"));
    assert!(srv.ctx.seen.lock().unwrap().is_empty());
}

fn short(first_byte: u64, idle: u64, total: u64) -> Upstream {
    Upstream::new(Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_millis(first_byte),
        idle: Duration::from_millis(idle),
        total: Duration::from_millis(total),
    })
    .unwrap()
}

#[tokio::test]
async fn timeouts() {
    let srv = server().await;
    let err = short(200, 20_000, 20_000)
        .chat_stream(&target(ProviderKind::OpenAi, &srv.base, "slow-headers"), chat_request(json!({})), false)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, UpstreamError::Timeout("first byte")), "{err:?}");
    assert_eq!(err.to_api_error().code, ErrorCode::UpstreamTimeout);

    let resp = short(20_000, 200, 20_000)
        .chat_stream(&target(ProviderKind::OpenAi, &srv.base, "stall"), chat_request(json!({})), false)
        .await
        .unwrap();
    let items = collect(resp.stream).await;
    assert_eq!(text_of(&data_json(&items)), "a");
    assert!(matches!(items.last(), Some(Err(UpstreamError::Timeout(_)))), "{items:?}");

    let err = short(20_000, 20_000, 300).chat(&target(ProviderKind::OpenAi, &srv.base, "slow-body"), chat_request(json!({}))).await.err().unwrap();
    assert!(matches!(err, UpstreamError::Timeout("total")), "{err:?}");
}

#[tokio::test]
async fn connect_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let err = upstream()
        .chat(&target(ProviderKind::OpenAi, &format!("http://127.0.0.1:{port}"), "x"), chat_request(json!({})))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    assert!(!format!("{err}").contains(KEY));
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_upstream_request() {
    let srv = server().await;
    let resp = upstream().chat_stream(&target(ProviderKind::OpenAi, &srv.base, "endless"), chat_request(json!({})), false).await.unwrap();
    let mut stream = resp.stream;
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.data.is_some());
    assert!(!srv.ctx.body_dropped.load(Ordering::SeqCst));
    drop(stream);
    // The server notices the closed connection when it next writes (every 10 ms).
    for _ in 0..500 {
        if srv.ctx.body_dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream response was not cancelled after the stream was dropped");
}

#[tokio::test]
async fn h1_gemini_model_is_path_escaped() {
    let srv = server().await;
    for (kind, model) in [
        (ProviderKind::Gemini, "../../v1beta/cachedContents?x="),
        (ProviderKind::Gemini, "a#b"),
        (ProviderKind::Gemini, "a b"),
        (ProviderKind::Gemini, "a%2F.."),
        (ProviderKind::Azure, ".."),
        (ProviderKind::Azure, "d/../x"),
        (ProviderKind::Bedrock, ".."),
        (ProviderKind::Bedrock, "a\nb"),
    ] {
        let err = upstream().chat(&target(kind, &srv.base, model), chat_request(json!({}))).await.err().unwrap();
        let api = err.to_api_error();
        assert_eq!(api.param.as_deref(), Some("model"), "{kind:?} {model:?}: {err:?}");
        assert_eq!(api.code.status().as_u16(), 400, "{kind:?} {model:?}");
        let err = upstream().chat_stream(&target(kind, &srv.base, model), chat_request(json!({"stream": true})), false).await.err().unwrap();
        assert_eq!(err.to_api_error().param.as_deref(), Some("model"), "{kind:?} {model:?} (stream)");
    }
    let err = upstream().embeddings(&target(ProviderKind::Azure, &srv.base, "../x"), chat_request(json!({"input": "a"}))).await.err().unwrap();
    assert_eq!(err.to_api_error().param.as_deref(), Some("model"));
    assert!(srv.ctx.seen.lock().unwrap().is_empty(), "a traversal reached the upstream");
    // A clean Gemini name still goes out as one segment under /v1beta/models/.
    let _ = upstream().chat(&target(ProviderKind::Gemini, &srv.base, "models/gemini-x"), chat_request(json!({}))).await;
    let seen = srv.ctx.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1beta/models/gemini-x:generateContent");
}
