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

pub mod error;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use gatehouse_types::Usage;
use secrecy::SecretString;

pub use error::UpstreamError;

/// The wire dialect of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible base URL (`wire-formats.md` §1, §4).
    OpenAi,
    /// Anthropic Messages API (`wire-formats.md` §2).
    Anthropic,
}

impl ProviderKind {
    /// `"openai"` or `"anthropic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// Parses `"openai"` / `"anthropic"` (also `"openai-compatible"` → OpenAi).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" | "openai-compatible" | "openai_compatible" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    /// The vendor's default base URL (`https://api.openai.com/v1`, `https://api.anthropic.com`).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com",
        }
    }
}

/// Where and how one call goes: built by the gateway from a deployment.
#[derive(Clone)]
pub struct Target {
    pub kind: ProviderKind,
    /// Base URL without trailing slash. OpenAI kind: ends before `/chat/completions`
    /// (e.g. `https://api.openai.com/v1`); Anthropic: before `/v1/messages`.
    pub base_url: String,
    /// The provider key, decrypted just for this call.
    pub api_key: SecretString,
    /// The model name the upstream expects (replaces the request's `model`).
    pub upstream_model: String,
}

/// Timeouts of the upstream client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
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
    pub stream: ChatStream,
    pub upstream_request_id: Option<String>,
}

/// The pooled upstream HTTP client shared by every adapter.
#[derive(Clone)]
pub struct Upstream {
    #[allow(dead_code)]
    client: reqwest::Client,
    #[allow(dead_code)]
    timeouts: Timeouts,
}

impl Upstream {
    /// One client for all providers: rustls, HTTP/1.1 and HTTP/2, no redirects followed (a
    /// redirect must not carry our provider key elsewhere).
    pub fn new(timeouts: Timeouts) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        Ok(Self { client, timeouts })
    }

    /// Non-streamed chat. `request` is the client's OpenAI-shaped body (already validated to be
    /// a JSON object with `model` and `messages`); unknown fields pass through to OpenAI-kind
    /// upstreams untouched.
    pub async fn chat(
        &self,
        _target: &Target,
        _request: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChatResponse, UpstreamError> {
        Err(UpstreamError::Protocol("not implemented yet".into()))
    }

    /// Streamed chat; `include_usage` is the client's `stream_options.include_usage`.
    pub async fn chat_stream(
        &self,
        _target: &Target,
        _request: serde_json::Map<String, serde_json::Value>,
        _include_usage: bool,
    ) -> Result<StreamingResponse, UpstreamError> {
        Err(UpstreamError::Protocol("not implemented yet".into()))
    }

    /// Embeddings (OpenAI kind only; Anthropic answers `UpstreamError::Unsupported`).
    pub async fn embeddings(
        &self,
        _target: &Target,
        _request: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChatResponse, UpstreamError> {
        Err(UpstreamError::Protocol("not implemented yet".into()))
    }
}
