//! Provider adapters: OpenAI-compatible upstreams and Anthropic, request/response/stream/error
//! mapping (`wire-formats.md` §1, §2, §7), SSE decoding and the upstream HTTP client.
//!
//! The gateway speaks OpenAI's format inward; every adapter turns an OpenAI-shaped request into
//! the provider's request and the provider's answer back into OpenAI's shape.
//!
//! CONTRACT (the gateway codes against exactly this surface):
//! * [`Upstream::new`] builds one pooled client with connect/first-byte/idle/total timeouts.
//! * [`Upstream::chat`] non-streamed chat: returns the OpenAI-shaped body and its usage.
//! * [`Upstream::chat_stream`] streamed chat: returns a stream of [`StreamEvent`]s, each already
//!   an OpenAI `chat.completion.chunk` JSON (without `data: ` framing and without `[DONE]`);
//!   the gateway frames them. The adapter always asks the upstream for usage; a usage-only final
//!   chunk is emitted with `data: None` unless the client asked for it (`include_usage`).
//! * [`Upstream::embeddings`] for OpenAI-compatible upstreams.
//! * Errors are [`UpstreamError`]; [`UpstreamError::to_api_error`] gives what the client sees
//!   (never the upstream body for auth failures; `Retry-After` kept).

pub mod anthropic;
pub mod bedrock;
#[doc(hidden)]
pub mod bench_support;
mod common;
pub mod compat;
pub mod catalog;
pub mod error;
pub mod eventstream;
pub mod inbound;
pub mod gemini;
pub mod ndjson;
pub mod ollama;
pub mod openai;
pub mod sse;
mod stream;

#[cfg(test)]
mod roundtrip_tests;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use gatehouse_types::Usage;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use stream::Framing;

pub use error::{UpstreamError, retry_after_seconds};

pub use gatehouse_types::ProviderKind;

/// Where and how one call goes: built by the gateway from a deployment.
#[derive(Clone)]
pub struct Target {
    /// Which dialect the upstream speaks.
    pub kind: ProviderKind,
    /// Base URL without trailing slash. OpenAI kind: ends before `/chat/completions`
    /// (e.g. `https://api.openai.com/v1`); Anthropic: before `/v1/messages`.
    pub base_url: String,
    /// The provider key, decrypted just for this call.
    pub api_key: SecretString,
    /// The model name the upstream expects (replaces the request's `model`).
    pub upstream_model: String,
    /// The client's `anthropic-beta` flags (comma-separated, already validated by the gateway),
    /// sent as the `anthropic-beta` header to Anthropic upstreams only (`wire-formats.md` §2.1);
    /// every other kind ignores them.
    pub anthropic_beta: Option<String>,
}

/// Timeouts of the upstream client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// From sending the request to the response headers (first byte for streams).
    pub first_byte: Duration,
    /// Max gap between two stream chunks.
    pub idle: Duration,
    /// Whole call, non-streamed.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// A non-streamed chat answer in OpenAI's `chat.completion` shape.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    /// The OpenAI-shaped body to send to the client.
    pub body: serde_json::Value,
    /// Token usage reported by the provider (zeros when it reported none).
    pub usage: Usage,
    /// The provider's own request id (`x-request-id` / `request-id`), for logs.
    pub upstream_request_id: Option<String>,
}

/// One step of a streamed answer.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// A serialized OpenAI `chat.completion.chunk` to send as `data: <json>`; `None` when there
    /// is nothing to send (e.g. the usage-only chunk the client did not ask for).
    pub data: Option<Bytes>,
    /// Cumulative usage known after this event (the latest `Some` wins).
    pub usage: Option<Usage>,
}

/// A streamed answer. Ends after the last chunk; an `Err` item is a mid-stream error (the
/// gateway sends it in-band and ends the stream). Dropping it cancels the upstream request.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, UpstreamError>> + Send>>;

/// A streamed answer with the provider's request id.
pub struct StreamingResponse {
    /// The chunks; see [`Upstream::chat_stream`].
    pub stream: ChatStream,
    /// The provider's own request id, for logs.
    pub upstream_request_id: Option<String>,
}

/// The pooled upstream HTTP client shared by every adapter.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    timeouts: Timeouts,
    /// Gemini `thoughtSignature`s and Anthropic thinking blocks by tool-call id (§7.9, §2.3).
    signatures: gemini::SignatureCache,
}

/// Largest upstream error body read (bytes); the rest is ignored.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl Upstream {
    /// One client for all providers: rustls, HTTP/1.1 and HTTP/2, no redirects followed (a
    /// redirect must not carry our provider key elsewhere).
    pub fn new(timeouts: Timeouts) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        Ok(Self { client, timeouts, signatures: gemini::SignatureCache::default() })
    }

    /// The timeouts this client applies.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Non-streamed chat. `request` is the client's OpenAI-shaped body (already validated to be
    /// a JSON object with `model` and `messages`); unknown fields pass through to OpenAI-kind
    /// upstreams untouched. The whole call (send + body) is bounded by `Timeouts::total`, the
    /// response headers by `Timeouts::first_byte`.
    ///
    /// Errors: [`UpstreamError::Status`] for an error status (envelope parsed, `Retry-After`
    /// kept), [`UpstreamError::Timeout`], [`UpstreamError::Connect`], [`UpstreamError::Protocol`]
    /// for a body that is not the provider's format, [`UpstreamError::InvalidRequest`] when the
    /// request cannot be translated (Anthropic, §7.1 reject rows; nothing is sent).
    pub async fn chat(
        &self,
        target: &Target,
        request: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChatResponse, UpstreamError> {
        let (url, headers, body) = self.prepare(target, request, false)?;
        let call = async {
            let resp = self.send(target.kind, &url, headers, body).await?;
            let upstream_request_id = request_id(resp.headers());
            let bytes = resp.bytes().await.map_err(|e| UpstreamError::Connect(e.without_url().to_string()))?;
            let (body, usage) = match target.kind {
                ProviderKind::Anthropic => {
                    let (body, usage) = anthropic::parse_response(&bytes, &target.upstream_model)?;
                    anthropic::remember_thinking_of(&body, &self.signatures);
                    (body, usage)
                }
                ProviderKind::Gemini => gemini::parse_response(&bytes, &target.upstream_model, &self.signatures)?,
                ProviderKind::Ollama => ollama::parse_response(&bytes, &target.upstream_model)?,
                ProviderKind::Bedrock => bedrock::parse_response(&bytes, &target.upstream_model)?,
                kind => compat::parse_response(kind, &bytes)?,
            };
            Ok(ChatResponse { body, usage, upstream_request_id })
        };
        tokio::time::timeout(self.timeouts.total, call).await.map_err(|_| UpstreamError::Timeout("total"))?
    }

    /// The URL, headers and body of a chat call for `target` (nothing is sent).
    fn prepare(
        &self,
        target: &Target,
        request: serde_json::Map<String, serde_json::Value>,
        stream: bool,
    ) -> Result<(String, HeaderMap, Vec<u8>), UpstreamError> {
        if target.base_url.trim().is_empty() {
            return Err(UpstreamError::Config("the provider has no base URL"));
        }
        match target.kind {
            ProviderKind::Gemini => common::check_path_model(target.upstream_model.strip_prefix("models/").unwrap_or(&target.upstream_model), false)?,
            ProviderKind::Azure => common::check_path_model(&target.upstream_model, false)?,
            ProviderKind::Bedrock => common::check_path_model(&target.upstream_model, true)?,
            _ => {}
        }
        Ok(match target.kind {
            ProviderKind::Anthropic => (
                anthropic_endpoint(&target.base_url),
                anthropic_headers(target, stream)?,
                json_bytes(&anthropic::build_request(
                    &{
                        let mut request = request;
                        anthropic::restore_thinking(&mut request, &self.signatures);
                        request
                    },
                    &target.upstream_model,
                    stream,
                )?)?,
            ),
            ProviderKind::Gemini => (
                gemini::endpoint(&target.base_url, &target.upstream_model, stream),
                gemini_headers(target, stream)?,
                json_bytes(&gemini::build_request(&request, &target.upstream_model, &self.signatures)?)?,
            ),
            ProviderKind::Ollama => (
                endpoint(&target.base_url, "/api/chat"),
                ollama_headers(target, stream)?,
                json_bytes(&ollama::build_request(&request, &target.upstream_model, stream)?)?,
            ),
            ProviderKind::Bedrock => {
                let url = bedrock::endpoint(&target.base_url, &target.upstream_model, stream);
                let body = json_bytes(&bedrock::build_request(&request, &target.upstream_model)?)?;
                let mut headers = base_headers(false);
                if stream {
                    headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.amazon.eventstream"));
                }
                bedrock::auth::authorize(&mut headers, &target.api_key, &target.base_url, &url, &body, std::time::SystemTime::now())?;
                (url, headers, body)
            }
            ProviderKind::Azure => (
                compat::azure_endpoint(&target.base_url, &target.upstream_model, "/chat/completions"),
                azure_headers(target, stream)?,
                compat::chat_body(target.kind, request, &target.upstream_model, stream)?,
            ),
            kind => (
                endpoint(&target.base_url, "/chat/completions"),
                openai_headers(target, stream)?,
                compat::chat_body(kind, request, &target.upstream_model, stream)?,
            ),
        })
    }

    /// Streamed chat; `include_usage` is the client's `stream_options.include_usage`.
    ///
    /// Returns once the upstream answered 200 with its headers (bounded by
    /// `Timeouts::first_byte`); an error status is an `Err` here, before any byte reached the
    /// client, so the gateway may fail over. Afterwards each item is one OpenAI chunk; the gap
    /// between two upstream reads is bounded by `Timeouts::idle` (`Err(Timeout)` item). A
    /// stream that ends without its terminator yields what arrived, then
    /// `Err(UpstreamError::EarlyClose)`; in-band errors are `Err(UpstreamError::MidStream)`.
    /// No item follows an `Err`. `[DONE]` is never yielded (the gateway frames it).
    ///
    /// Terminators: `[DONE]` (OpenAI-compatible kinds), `message_stop` (Anthropic), the
    /// `metadata` event (Bedrock ConverseStream), a
    /// `finishReason` on every requested candidate or a blocked prompt (Gemini, which sends no
    /// terminator), a `"done": true` line (Ollama).
    pub async fn chat_stream(
        &self,
        target: &Target,
        request: serde_json::Map<String, serde_json::Value>,
        include_usage: bool,
    ) -> Result<StreamingResponse, UpstreamError> {
        let candidates = request.get("n").and_then(serde_json::Value::as_u64).unwrap_or(1).clamp(1, 8) as usize;
        let (url, headers, body) = self.prepare(target, request, true)?;
        let resp = self.send(target.kind, &url, headers, body).await?;
        let idle = self.timeouts.idle;
        let model = &target.upstream_model;
        // Ollama streams `application/x-ndjson` (a JSON error line is handled by its mapper).
        let resp = if target.kind == ProviderKind::Ollama { resp } else { self.expect_event_stream(resp).await? };
        let upstream_request_id = request_id(resp.headers());
        let stream = match target.kind {
            ProviderKind::Anthropic => {
                let mapper = anthropic::AnthropicStream::new(model, include_usage).remembering(self.signatures.clone());
                stream::drive(resp, mapper, idle, Framing::Sse)
            }
            ProviderKind::Gemini => {
                let mapper = gemini::GeminiStream::new(model, include_usage, candidates, self.signatures.clone());
                stream::drive(resp, mapper, idle, Framing::SseRawJson)
            }
            ProviderKind::Ollama => stream::drive(resp, ollama::OllamaStream::new(model, include_usage), idle, Framing::Ndjson),
            ProviderKind::Bedrock => stream::drive(resp, bedrock::BedrockStream::new(model, include_usage), idle, Framing::EventStream),
            kind => stream::drive(resp, compat::CompatStream::new(kind, include_usage), idle, Framing::Sse),
        };
        Ok(StreamingResponse { stream, upstream_request_id })
    }

    /// Embeddings (OpenAI-compatible kinds, Azure included; the others answer
    /// `UpstreamError::Unsupported`). `POST {base_url}/embeddings` with `model` replaced; the
    /// body is returned as the upstream sent it, usage from its `usage` (`prompt_tokens`).
    pub async fn embeddings(
        &self,
        target: &Target,
        request: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChatResponse, UpstreamError> {
        if !target.kind.is_openai_compatible() {
            return Err(UpstreamError::Unsupported("embeddings"));
        }
        let body = openai::embeddings_body(request, &target.upstream_model)?;
        let (url, headers) = if target.kind == ProviderKind::Azure {
            common::check_path_model(&target.upstream_model, false)?;
            (compat::azure_endpoint(&target.base_url, &target.upstream_model, "/embeddings"), azure_headers(target, false)?)
        } else {
            (endpoint(&target.base_url, "/embeddings"), openai_headers(target, false)?)
        };
        let call = async {
            let resp = self.send(target.kind, &url, headers, body).await?;
            let upstream_request_id = request_id(resp.headers());
            let bytes = resp.bytes().await.map_err(|e| UpstreamError::Connect(e.without_url().to_string()))?;
            let (body, usage) = openai::parse_body(&bytes, "embeddings")?;
            Ok(ChatResponse { body, usage, upstream_request_id })
        };
        tokio::time::timeout(self.timeouts.total, call).await.map_err(|_| UpstreamError::Timeout("total"))?
    }

    /// A 200 answer to a stream request that is JSON instead of `text/event-stream` (some
    /// proxies and servers answer errors, or ignore `stream`): read it and report its error
    /// before anything was streamed.
    async fn expect_event_stream(&self, resp: reqwest::Response) -> Result<reqwest::Response, UpstreamError> {
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if !is_json {
            return Ok(resp);
        }
        let body = tokio::time::timeout(self.timeouts.idle, read_limited(resp, MAX_ERROR_BODY)).await.unwrap_or_default();
        match error::parse_error_envelope(&body) {
            (_, Some(_)) => Err(UpstreamError::mid_stream(&body)),
            _ => Err(UpstreamError::Protocol("the upstream answered JSON to a stream request".into())),
        }
    }

    /// POSTs and waits for the response headers (first-byte timeout). A non-2xx status is read
    /// (bounded) and returned as [`UpstreamError::Status`].
    async fn send(&self, kind: ProviderKind, url: &str, headers: HeaderMap, body: Vec<u8>) -> Result<reqwest::Response, UpstreamError> {
        // Kept to scrub the credential from an error answer that quotes it.
        let request_headers = headers.clone();
        let send = self.client.post(url).headers(headers).body(body).send();
        let resp = tokio::time::timeout(self.timeouts.first_byte, send)
            .await
            .map_err(|_| UpstreamError::Timeout("first byte"))?
            .map_err(send_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = tokio::time::timeout(self.timeouts.idle, read_limited(resp, MAX_ERROR_BODY)).await.unwrap_or_default();
        let body = error::redact_credentials(body, &request_headers);
        let err = UpstreamError::from_status(status.as_u16(), &headers, &body);
        let err = match kind {
            ProviderKind::Gemini => gemini::refine_status(err, &body),
            ProviderKind::Bedrock => bedrock::refine_status(err, &headers),
            _ => err,
        };
        tracing::warn!(status = status.as_u16(), error = %err, provider_code = ?provider_code(&err), "upstream answered an error");
        Err(err)
    }
}

fn provider_code(e: &UpstreamError) -> Option<&str> {
    match e {
        UpstreamError::Status { provider_code, .. } | UpstreamError::MidStream { provider_code, .. } => provider_code.as_deref(),
        _ => None,
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

fn send_error(e: reqwest::Error) -> UpstreamError {
    let e = e.without_url();
    if e.is_timeout() {
        UpstreamError::Timeout("connect")
    } else {
        UpstreamError::Connect(e.to_string())
    }
}

fn json_bytes(body: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<u8>, UpstreamError> {
    serde_json::to_vec(body).map_err(|e| UpstreamError::Protocol(format!("cannot serialise the request: {e}")))
}

/// `base` without trailing slash + `path`.
fn endpoint(base: &str, path: &str) -> String {
    let mut url = String::with_capacity(base.len() + path.len());
    url.push_str(base.trim_end_matches('/'));
    url.push_str(path);
    url
}

/// `{base}/v1/messages`, tolerating a base that already ends in `/v1`.
fn anthropic_endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") { endpoint(base, "/messages") } else { endpoint(base, "/v1/messages") }
}

fn base_headers(stream: bool) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(ACCEPT, HeaderValue::from_static(if stream { "text/event-stream" } else { "application/json" }));
    h
}

fn secret_header(value: &str) -> Result<HeaderValue, UpstreamError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| UpstreamError::Config("the provider key contains characters not allowed in an HTTP header"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Authorization: Bearer <key>` (§1.1).
fn openai_headers(target: &Target, stream: bool) -> Result<HeaderMap, UpstreamError> {
    let mut h = base_headers(stream);
    let mut value = String::with_capacity(7 + target.api_key.expose_secret().len());
    value.push_str("Bearer ");
    value.push_str(target.api_key.expose_secret());
    h.insert(reqwest::header::AUTHORIZATION, secret_header(&value)?);
    Ok(h)
}

/// `x-api-key` + `anthropic-version` (§2.1).
fn anthropic_headers(target: &Target, stream: bool) -> Result<HeaderMap, UpstreamError> {
    let mut h = base_headers(stream);
    h.insert("x-api-key", secret_header(target.api_key.expose_secret())?);
    h.insert("anthropic-version", HeaderValue::from_static(anthropic::ANTHROPIC_VERSION));
    if let Some(beta) = target.anthropic_beta.as_deref().filter(|b| !b.is_empty()) {
        let v = HeaderValue::from_str(beta).map_err(|_| UpstreamError::InvalidRequest {
            param: Some("anthropic-beta".into()),
            message: "the anthropic-beta header holds characters not allowed in a header".into(),
        })?;
        h.insert("anthropic-beta", v);
    }
    Ok(h)
}

/// `x-goog-api-key` (§3; never the `?key=` query form, which would put the key in URLs and logs).
fn gemini_headers(target: &Target, stream: bool) -> Result<HeaderMap, UpstreamError> {
    let mut h = base_headers(stream);
    h.insert("x-goog-api-key", secret_header(target.api_key.expose_secret())?);
    Ok(h)
}

/// Azure `api-key` header (§5).
fn azure_headers(target: &Target, stream: bool) -> Result<HeaderMap, UpstreamError> {
    let mut h = base_headers(stream);
    h.insert("api-key", secret_header(target.api_key.expose_secret())?);
    Ok(h)
}

/// Ollama needs no key; a configured one is sent as a Bearer token (Ollama behind a proxy,
/// ollama.com). NDJSON is accepted.
fn ollama_headers(target: &Target, stream: bool) -> Result<HeaderMap, UpstreamError> {
    let mut h = if target.api_key.expose_secret().is_empty() { base_headers(false) } else { openai_headers(target, false)? };
    if stream {
        h.insert(ACCEPT, HeaderValue::from_static("application/x-ndjson"));
    }
    Ok(h)
}

/// The provider's request id: `x-request-id` (OpenAI), `request-id` (Anthropic),
/// `apim-request-id` (Azure) or `x-amzn-RequestId` (Bedrock).
fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .or_else(|| headers.get("request-id"))
        .or_else(|| headers.get("apim-request-id"))
        .or_else(|| headers.get("x-amzn-requestid"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
