//! One conformance suite, stamped out by `conformance!` for every adapter, each against
//! `gatehouse-mock` speaking that provider's wire format (OpenAI, Anthropic, Gemini, Azure in
//! both URL forms, Ollama native, Bedrock Converse with an API key and with SigV4, and the
//! OpenAI-compatible kinds with their quirks). Every case
//! goes through the real `Upstream` client over HTTP; the scenario is chosen by the model name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use gatehouse_providers::{ProviderKind, Target, Timeouts, Upstream, UpstreamError};
use gatehouse_testkit::{MockProvider, UTF8_SUFFIX};
use gatehouse_types::Usage;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const KEY: &str = "sk-conformance-canary-4242";
/// The AWS access key id of the SigV4 specs (public, unlike the secret `KEY`).
const ACCESS_KEY_ID: &str = "AKIDCONFORMANCE";

/// How one adapter is reached on the mock and what its format can express.
#[derive(Clone, Copy)]
struct Spec {
    kind: ProviderKind,
    base: fn(&MockProvider) -> String,
    model: &'static str,
    /// The format reports cached prompt tokens.
    cached: bool,
    /// The format reports reasoning tokens.
    reasoning: bool,
    /// The stream reports usage before it ends (partial usage on an interrupted stream).
    early_usage: bool,
    /// The mock's stream carries usage (Mistral reports it unasked on its last chunk, but the
    /// adapter does not send `stream_options`, so the OpenAI mock sends none).
    stream_usage: bool,
    /// The provider secret is an AWS credential set whose secret access key is `KEY` (Bedrock
    /// SigV4; the mock recomputes the signature), instead of `KEY` itself.
    sigv4: bool,
}

fn upstream() -> Upstream {
    Upstream::new(Timeouts { connect: Duration::from_secs(5), first_byte: Duration::from_secs(20), idle: Duration::from_secs(20), total: Duration::from_secs(60) })
        .unwrap()
}

async fn mock() -> MockProvider {
    MockProvider::builder().expected_key(KEY).start().await.unwrap()
}

fn target(spec: &Spec, mock: &MockProvider, options: &str) -> Target {
    let model = if options.is_empty() { spec.model.to_string() } else { format!("{}:{options}", spec.model) };
    let key = if spec.sigv4 { gatehouse_providers::bedrock::auth::credentials_json(ACCESS_KEY_ID, KEY, None, Some("us-east-1")) } else { KEY.to_string() };
    Target { kind: spec.kind, base_url: (spec.base)(mock), api_key: SecretString::from(key), upstream_model: model, anthropic_beta: None }
}

fn request(extra: Value) -> Map<String, Value> {
    let mut base = json!({"model": "public-name", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]});
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    match base {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Text, tool calls (by index: id, name, arguments), finish reason and the last usage of a
/// collected stream, plus the error that ended it, if any.
#[derive(Debug, Default)]
struct Collected {
    text: String,
    calls: BTreeMap<u64, (String, String, String)>,
    finish: Option<String>,
    usage: Option<Usage>,
    usage_chunk: bool,
    error: Option<UpstreamError>,
    chunks: usize,
}

async fn collect(up: &Upstream, t: &Target, req: Map<String, Value>, include_usage: bool) -> Collected {
    let resp = up.chat_stream(t, req, include_usage).await.unwrap();
    let mut c = Collected::default();
    let mut s = resp.stream;
    while let Some(item) = s.next().await {
        match item {
            Err(e) => {
                c.error = Some(e);
                break;
            }
            Ok(ev) => {
                if let Some(u) = ev.usage {
                    c.usage = Some(u);
                }
                let Some(data) = ev.data else { continue };
                c.chunks += 1;
                let v: Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(v["object"], "chat.completion.chunk", "{v}");
                if v["choices"].as_array().is_some_and(Vec::is_empty) && v["usage"].is_object() {
                    c.usage_chunk = true;
                }
                for ch in v["choices"].as_array().unwrap() {
                    let d = &ch["delta"];
                    if let Some(t) = d["content"].as_str() {
                        c.text.push_str(t);
                    }
                    for tc in d["tool_calls"].as_array().into_iter().flatten() {
                        let e = c.calls.entry(tc["index"].as_u64().unwrap()).or_default();
                        if let Some(id) = tc["id"].as_str() {
                            e.0 = id.to_string();
                        }
                        if let Some(n) = tc["function"]["name"].as_str() {
                            e.1.push_str(n);
                        }
                        if let Some(a) = tc["function"]["arguments"].as_str() {
                            e.2.push_str(a);
                        }
                    }
                    if let Some(f) = ch["finish_reason"].as_str() {
                        c.finish = Some(f.to_string());
                    }
                }
            }
        }
    }
    c
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "additionalProperties": false, "properties": {"location": {"type": "string"}}, "required": ["location"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "Time in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    ])
}

fn check_usage_matches(got: Usage, mock: &MockProvider) {
    let want = mock.last_usage().unwrap();
    assert_eq!(got, want, "usage reported by the adapter differs from what the mock sent");
}

async fn plain(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let r = up.chat(&target(&spec, &m, ""), request(json!({}))).await.unwrap();
    let b = &r.body;
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    assert_eq!(b["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    check_usage_matches(r.usage, &m);
    assert_eq!(b["usage"]["prompt_tokens"], r.usage.prompt_tokens);
    assert!(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
    // The key went in the provider's own header, and nowhere else.
    let h = m.last_headers().unwrap();
    let sent: Vec<_> = h.iter().filter(|(_, v)| v.to_str().is_ok_and(|v| v.contains(KEY))).map(|(k, _)| k.as_str().to_string()).collect();
    let expected = match spec.kind {
        ProviderKind::Anthropic => "x-api-key",
        ProviderKind::Gemini => "x-goog-api-key",
        ProviderKind::Azure => "api-key",
        _ => "authorization",
    };
    if spec.sigv4 {
        // The secret signs; it is never sent.
        assert!(sent.is_empty(), "{sent:?}");
        let auth = h.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")), "{auth}");
        assert!(h.contains_key("x-amz-date"));
    } else {
        assert_eq!(sent, vec![expected.to_string()]);
    }
}

async fn stream(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    for include_usage in [false, true] {
        let c = collect(&up, &target(&spec, &m, "chunks=5"), request(json!({"stream": true})), include_usage).await;
        assert!(c.error.is_none(), "{:?}", c.error);
        assert!(c.text.starts_with("echo: hello there"), "{}", c.text);
        assert_eq!(c.finish.as_deref(), Some("stop"));
        assert_eq!(c.usage_chunk, include_usage && spec.stream_usage);
        if spec.stream_usage {
            check_usage_matches(c.usage.unwrap(), &m);
        }
        assert!(c.chunks >= 5);
    }
}

async fn tools_parallel(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let r = up.chat(&target(&spec, &m, "parallel-tools"), request(json!({"tools": tools()}))).await.unwrap();
    let msg = &r.body["choices"][0]["message"];
    assert_eq!(r.body["choices"][0]["finish_reason"], "tool_calls");
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[1]["function"]["name"], "get_time");
    let a0: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    let a1: Value = serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(a0["location"].is_string() && a1["city"].is_string(), "{a0} {a1}");
    let (id0, id1) = (calls[0]["id"].as_str().unwrap(), calls[1]["id"].as_str().unwrap());
    assert!(!id0.is_empty() && id0 != id1);
    check_usage_matches(r.usage, &m);

    // Streamed: the fragments (OpenAI-style) or whole calls (Gemini, Ollama) assemble the same.
    let c = collect(&up, &target(&spec, &m, "parallel-tools"), request(json!({"tools": tools(), "stream": true})), false).await;
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.finish.as_deref(), Some("tool_calls"));
    assert_eq!(c.calls.len(), 2);
    for (i, name) in [(0, "get_weather"), (1, "get_time")] {
        let (id, n, args) = &c.calls[&i];
        assert!(!id.is_empty());
        assert_eq!(n, name);
        assert!(serde_json::from_str::<Value>(args).unwrap().is_object());
    }
}

async fn tool_results(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    // Ids as another provider would have issued them (OpenAI style): every adapter must map them.
    let req = request(json!({
        "tools": tools(),
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_Abc123xyz789", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_Def456", "type": "function", "function": {"name": "get_time", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_Abc123xyz789", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_Def456", "content": "noon"}
        ]
    }));
    let r = up.chat(&target(&spec, &m, ""), req).await.unwrap();
    let text = r.body["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(text.starts_with("tool result: "), "{text}");
    assert!(text.contains("noon"), "{text}");
    let sent = m.last_request().unwrap().to_string();
    assert!(sent.contains("sunny") && sent.contains("get_weather"));
    if spec.kind == ProviderKind::Mistral {
        let msgs = m.last_request().unwrap()["messages"].clone();
        let id = msgs[1]["tool_calls"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 9);
        assert_eq!(msgs[2]["tool_call_id"], id.as_str());
    }
}

async fn images(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let req = request(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]}]}));
    let r = up.chat(&target(&spec, &m, ""), req).await.unwrap();
    assert!(r.body["choices"][0]["message"]["content"].as_str().unwrap().contains("what is this"));
    assert!(m.last_request().unwrap().to_string().contains(png), "the image reached the upstream");
}

async fn json_mode_and_stop(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let req = request(json!({"response_format": {"type": "json_object"}, "stop": ["END", "STOP"], "max_tokens": 50, "temperature": 0.5}));
    up.chat(&target(&spec, &m, ""), req).await.unwrap();
    let sent = m.last_request().unwrap();
    let s = sent.to_string();
    assert!(s.contains("\"END\"") && s.contains("\"STOP\""), "stop sequences sent: {s}");
    let json_marker = match spec.kind {
        ProviderKind::Gemini => "application/json",
        ProviderKind::Ollama => "\"format\":\"json\"",
        ProviderKind::Anthropic | ProviderKind::Bedrock => "JSON",
        _ => "json_object",
    };
    assert!(s.contains(json_marker), "JSON mode sent: {s}");
    let schema = request(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
        "schema": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}, "required": ["a"]}}}}));
    up.chat(&target(&spec, &m, ""), schema).await.unwrap();
    if spec.kind == ProviderKind::Gemini {
        let sent = m.last_request().unwrap();
        assert_eq!(sent["generationConfig"]["responseSchema"], json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]}));
    }
}

async fn usage_details(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let r = up.chat(&target(&spec, &m, "cached=100,reasoning=7"), request(json!({"reasoning_effort": "low"}))).await.unwrap();
    check_usage_matches(r.usage, &m);
    assert_eq!(r.usage.cached_tokens, if spec.cached { 100 } else { 0 });
    assert_eq!(r.usage.reasoning_tokens, if spec.reasoning { 7 } else { 0 });
    assert_eq!(r.body["usage"]["prompt_tokens_details"]["cached_tokens"], r.usage.cached_tokens);
    let c = collect(&up, &target(&spec, &m, "cached=100,reasoning=7"), request(json!({"stream": true})), true).await;
    if spec.stream_usage {
        check_usage_matches(c.usage.unwrap(), &m);
    }
}

async fn error_statuses(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    for status in [400u16, 403, 404, 429, 500, 503] {
        let t = target(&spec, &m, &status.to_string());
        let e = up.chat(&t, request(json!({}))).await.unwrap_err();
        match &e {
            UpstreamError::Status { status: s, retry_after, .. } => {
                assert_eq!(*s, status);
                if status == 429 {
                    assert!(retry_after.is_some(), "429 keeps its retry delay");
                }
            }
            other => panic!("{status}: {other:?}"),
        }
        let api = e.to_api_error();
        assert!(!api.message.contains(KEY));
        let e = up.chat_stream(&t, request(json!({"stream": true})), false).await.err().unwrap();
        assert!(matches!(e, UpstreamError::Status { status: s, .. } if s == status));
    }
    // A wrong key: the provider's auth failure, shown to the client as the generic upstream-auth error.
    let mut t = target(&spec, &m, "");
    t.api_key = SecretString::from("sk-wrong".to_string());
    let e = up.chat(&t, request(json!({}))).await.unwrap_err();
    assert_eq!(e.to_api_error().code, gatehouse_types::ErrorCode::UpstreamAuth, "{e:?}");
}

async fn error_mid_stream(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let c = collect(&up, &target(&spec, &m, "chunks=6,error-mid-stream"), request(json!({"stream": true})), false).await;
    assert!(!c.text.is_empty(), "some content arrived first");
    assert!(matches!(c.error, Some(UpstreamError::MidStream { .. })), "{:?}", c.error);
    if spec.early_usage {
        assert!(c.usage.is_some_and(|u| u.prompt_tokens > 0), "partial usage is kept: {:?}", c.usage);
    }
}

async fn early_close(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    for opt in ["early-close", "early-end"] {
        let c = collect(&up, &target(&spec, &m, &format!("chunks=6,{opt}")), request(json!({"stream": true})), false).await;
        assert!(matches!(c.error, Some(UpstreamError::EarlyClose)), "{opt}: {:?}", c.error);
        assert!(c.finish.is_none());
        if spec.early_usage {
            assert!(c.usage.is_some_and(|u| u.prompt_tokens > 0), "partial usage is kept: {:?}", c.usage);
        }
    }
    let e = up.chat(&target(&spec, &m, "early-end"), request(json!({}))).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Protocol(_) | UpstreamError::Connect(_)), "{e:?}");
}

async fn multibyte_split(spec: Spec) {
    let m = mock().await;
    let up = upstream();
    let c = collect(&up, &target(&spec, &m, "utf8-split"), request(json!({"stream": true})), false).await;
    assert!(c.error.is_none(), "{:?}", c.error);
    assert!(c.text.ends_with(UTF8_SUFFIX), "{:?}", c.text);
    assert!(!c.text.contains('\u{FFFD}'));
}

macro_rules! conformance {
    ($($name:ident => $spec:expr;)*) => {
        $(
            mod $name {
                use super::*;
                const SPEC: Spec = $spec;
                #[tokio::test] async fn plain() { super::plain(SPEC).await }
                #[tokio::test] async fn stream() { super::stream(SPEC).await }
                #[tokio::test] async fn tools_parallel() { super::tools_parallel(SPEC).await }
                #[tokio::test] async fn tool_results() { super::tool_results(SPEC).await }
                #[tokio::test] async fn images() { super::images(SPEC).await }
                #[tokio::test] async fn json_mode_and_stop() { super::json_mode_and_stop(SPEC).await }
                #[tokio::test] async fn usage_details() { super::usage_details(SPEC).await }
                #[tokio::test] async fn error_statuses() { super::error_statuses(SPEC).await }
                #[tokio::test] async fn error_mid_stream() { super::error_mid_stream(SPEC).await }
                #[tokio::test] async fn early_close() { super::early_close(SPEC).await }
                #[tokio::test] async fn multibyte_split() { super::multibyte_split(SPEC).await }
            }
        )*
    };
}

fn openai_base(m: &MockProvider) -> String {
    m.openai_base_url()
}
fn root_base(m: &MockProvider) -> String {
    m.base_url()
}
fn bedrock_base(m: &MockProvider) -> String {
    m.bedrock_base_url()
}
fn azure_v1_base(m: &MockProvider) -> String {
    format!("{}/openai/v1", m.azure_base_url())
}

const fn compat(kind: ProviderKind) -> Spec {
    Spec { kind, base: openai_base, model: "mock-gpt", cached: true, reasoning: true, early_usage: false, stream_usage: true, sigv4: false }
}

conformance! {
    openai => compat(ProviderKind::OpenAi);
    anthropic => Spec { kind: ProviderKind::Anthropic, base: root_base, model: "mock-claude", cached: true, reasoning: false, early_usage: true, stream_usage: true, sigv4: false };
    gemini => Spec { kind: ProviderKind::Gemini, base: root_base, model: "mock-gemini", cached: true, reasoning: true, early_usage: true, stream_usage: true, sigv4: false };
    azure => Spec { kind: ProviderKind::Azure, base: root_base, model: "mock-gpt", cached: true, reasoning: true, early_usage: false, stream_usage: true, sigv4: false };
    azure_v1 => Spec { kind: ProviderKind::Azure, base: azure_v1_base, model: "mock-gpt", cached: true, reasoning: true, early_usage: false, stream_usage: true, sigv4: false };
    ollama => Spec { kind: ProviderKind::Ollama, base: root_base, model: "mock-llama", cached: false, reasoning: false, early_usage: false, stream_usage: true, sigv4: false };
    mistral => Spec { stream_usage: false, ..compat(ProviderKind::Mistral) };
    deepseek => compat(ProviderKind::DeepSeek);
    groq => compat(ProviderKind::Groq);
    vllm => compat(ProviderKind::Vllm);
    openrouter => compat(ProviderKind::OpenRouter);
    together => compat(ProviderKind::Together);
    fireworks => compat(ProviderKind::Fireworks);
    xai => compat(ProviderKind::Xai);
    generic => compat(ProviderKind::Generic);
    bedrock => Spec { kind: ProviderKind::Bedrock, base: bedrock_base, model: "mock-bedrock", cached: true, reasoning: false, early_usage: false, stream_usage: true, sigv4: false };
    bedrock_sigv4 => Spec { kind: ProviderKind::Bedrock, base: bedrock_base, model: "mock-bedrock", cached: true, reasoning: false, early_usage: false, stream_usage: true, sigv4: true };
}
