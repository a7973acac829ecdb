//! Upstream failures and how each is answered to the client (`wire-formats.md` §7.8,
//! DESIGN.md "Upstream auth failures").

use gatehouse_types::{ApiError, ErrorCode};

/// Why an upstream call failed. Bodies kept here are for the operator's log only.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP/TLS connect failed or the connection broke before a response.
    #[error("upstream connect error: {0}")]
    Connect(String),
    /// No answer (or no next chunk) within the configured timeout.
    #[error("upstream timeout: {0}")]
    Timeout(&'static str),
    /// The upstream answered with an error status before any body was streamed.
    #[error("upstream status {status}")]
    Status {
        status: u16,
        /// `Retry-After` in seconds, from `retry-after` / `retry-after-ms`.
        retry_after: Option<u64>,
        /// Provider error `type`/`code` if parseable, e.g. `rate_limit_error`.
        provider_code: Option<String>,
        /// Provider error message (client-safe except for 401/403, which are never shown).
        message: Option<String>,
    },
    /// An in-band error after the stream started (OpenAI `data: {"error":…}`, Anthropic `event: error`).
    #[error("upstream stream error: {message}")]
    MidStream { provider_code: Option<String>, message: String },
    /// The upstream answered something that is not its documented format.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// The stream ended without its terminator (`[DONE]` / `message_stop`).
    #[error("upstream closed the stream early")]
    EarlyClose,
    /// The provider kind cannot do this (e.g. embeddings on Anthropic).
    #[error("unsupported by this provider: {0}")]
    Unsupported(&'static str),
}

impl UpstreamError {
    /// What the client is told. Upstream 401/403 become a generic 502; 429 keeps `Retry-After`;
    /// 5xx → 502; 529/503 → 503; timeouts → 504; 4xx client faults keep their status class.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            Self::Connect(_) => ApiError::new(ErrorCode::UpstreamError, "the upstream provider could not be reached"),
            Self::Timeout(what) => ApiError::new(ErrorCode::UpstreamTimeout, format!("the upstream provider did not answer in time ({what})")),
            Self::Status { status, retry_after, message, .. } => {
                let msg = |fallback: &str| message.clone().unwrap_or_else(|| fallback.to_string());
                match *status {
                    401 | 403 => ApiError::new(ErrorCode::UpstreamAuth, "the upstream provider rejected the gateway's credentials; the operator has been told"),
                    429 => ApiError::new(ErrorCode::RateLimitExceeded, msg("the upstream provider is rate limiting; retry later")).with_retry_after(*retry_after),
                    402 => ApiError::new(ErrorCode::InsufficientQuota, "the upstream provider reports insufficient quota"),
                    404 => ApiError::new(ErrorCode::ModelNotFound, msg("the upstream provider does not know this model")),
                    413 => ApiError::new(ErrorCode::PayloadTooLarge, msg("request too large for the upstream provider")),
                    408 | 504 => ApiError::new(ErrorCode::UpstreamTimeout, "the upstream provider timed out"),
                    503 | 529 => ApiError::new(ErrorCode::UpstreamOverloaded, "the upstream provider is overloaded; retry later").with_retry_after(*retry_after),
                    400..=499 => ApiError::new(ErrorCode::InvalidRequest, msg("the upstream provider rejected the request")),
                    _ => ApiError::new(ErrorCode::UpstreamError, format!("the upstream provider failed (HTTP {status})")),
                }
            }
            Self::MidStream { message, .. } => ApiError::new(ErrorCode::UpstreamError, message.clone()),
            Self::Protocol(_) => ApiError::new(ErrorCode::UpstreamError, "the upstream provider sent a malformed answer"),
            Self::EarlyClose => ApiError::new(ErrorCode::UpstreamError, "the upstream provider closed the stream early"),
            Self::Unsupported(what) => ApiError::new(ErrorCode::InvalidRequest, format!("this model's provider does not support {what}")),
        }
    }

    /// The label for the call log's `error_code` column.
    pub fn log_code(&self) -> &'static str {
        self.to_api_error().code.as_str()
    }
}
