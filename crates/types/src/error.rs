//! The one error-code table of Gatehouse.
//!
//! Every error that reaches a client is an [`ApiError`]: a stable [`ErrorCode`] (which fixes the
//! HTTP status and the OpenAI error `type`) plus a human message that never contains a secret.
//! The data plane renders it in OpenAI's shape (`wire-formats.md` §1.6):
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}`; the admin API renders
//! `{"error":{"message":…,"type":…,"code":…}}` with the same codes.

use http::StatusCode;
use serde::Serialize;

/// Stable machine-readable error codes. The string form (see [`ErrorCode::as_str`]) is part of
/// the public API: never rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: the request is malformed (bad JSON, wrong field type, missing field).
    InvalidRequest,
    /// 400: more than one credential, or a credential that breaks the token68 grammar (RFC 6750 §2.1).
    InvalidCredentialRequest,
    /// 401: no credential was sent (RFC 6750 §3.1: bare challenge).
    MissingCredential,
    /// 401: the credential is unknown, malformed, expired or revoked (RFC 6750 §3.1 `invalid_token`).
    InvalidToken,
    /// 403: the credential is valid but may not do this (RFC 6750 §3.1 `insufficient_scope`).
    InsufficientScope,
    /// 403: the credential may not be used from the client's network address: the API key's IP
    /// allow-list, or the allow-list of the API key a token was derived from (issue 5 H4). Not an
    /// RFC 6750 `insufficient_scope` case: answered without a `WWW-Authenticate` challenge.
    IpNotAllowed,
    /// 403: the admin-API user's system or team role does not allow this action (issue 7,
    /// `docs/permissions.md`).
    PermissionDenied,
    /// 401: the DPoP proof is missing, malformed, replayed or does not match the request
    /// (RFC 9449 §7.1 `invalid_dpop_proof`; challenge scheme `DPoP`).
    InvalidDpopProof,
    /// 401: the server demands a DPoP nonce; retry with the one in the `DPoP-Nonce` header
    /// (RFC 9449 §9 `use_dpop_nonce`).
    UseDpopNonce,
    /// 404: the model does not exist or is not configured.
    ModelNotFound,
    /// 404: the resource does not exist (or is not visible to the caller).
    NotFound,
    /// 405: the method is not allowed on this path.
    MethodNotAllowed,
    /// 409: the resource already exists or conflicts with current state.
    Conflict,
    /// 408: the client stopped sending the request body (no data within the body read
    /// timeout), RFC 9110 §15.5.9.
    RequestTimeout,
    /// 413: the request body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the request body is not `application/json`.
    UnsupportedMediaType,
    /// 429: a rate limit of Gatehouse or of the upstream provider was hit (`Retry-After` set).
    RateLimitExceeded,
    /// 429: a budget or quota is used up.
    InsufficientQuota,
    /// 500: a bug or an unexpected state inside Gatehouse; details are logged, never returned.
    Internal,
    /// 502: the upstream provider failed (5xx, malformed answer, connection error).
    UpstreamError,
    /// 502: the upstream rejected *our* provider credential (401/403). Generic message only.
    UpstreamAuth,
    /// 503: the upstream is overloaded (Anthropic 529, HTTP 503); `Retry-After` set when known.
    UpstreamOverloaded,
    /// 503: Gatehouse is shutting down or not ready.
    Unavailable,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
    /// 403: the key's app has no active subscription to a published service exposing this
    /// model, route or prompt (issue 7, DESIGN.md "Request path").
    SubscriptionRequired,
    /// 410: the service was retired (issue 7 lifecycle; RFC 9110 §15.5.11).
    ServiceRetired,
    /// 403: a cookie-authenticated state-changing admin request lacks the session's
    /// `X-CSRF-Token`, carries a wrong one, or comes from a foreign origin (issue 7, M8;
    /// `Origin` per RFC 6454, `Sec-Fetch-Site` per Fetch Metadata).
    CsrfFailed,
}

impl ErrorCode {
    /// The stable code string, e.g. `"invalid_token"`.
    pub fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        self.row().1
    }

    /// The OpenAI error `type` (`invalid_request_error`, `authentication_error`, …).
    pub fn error_type(self) -> &'static str {
        self.row().2
    }

    /// The Anthropic error `type` (`wire-formats.md` §2.7), for the Anthropic-compatible API.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            Self::MissingCredential | Self::InvalidToken | Self::InvalidDpopProof | Self::UseDpopNonce => "authentication_error",
            Self::InsufficientScope | Self::IpNotAllowed | Self::PermissionDenied | Self::SubscriptionRequired | Self::CsrfFailed => "permission_error",
            Self::ModelNotFound | Self::NotFound => "not_found_error",
            Self::PayloadTooLarge => "request_too_large",
            Self::RateLimitExceeded => "rate_limit_error",
            Self::InsufficientQuota => "billing_error",
            Self::UpstreamOverloaded | Self::Unavailable => "overloaded_error",
            Self::UpstreamTimeout => "timeout_error",
            Self::Internal | Self::UpstreamError | Self::UpstreamAuth => "api_error",
            _ => "invalid_request_error",
        }
    }

    fn row(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::InvalidRequest => ("invalid_request", S::BAD_REQUEST, "invalid_request_error"),
            Self::InvalidCredentialRequest => ("invalid_request", S::BAD_REQUEST, "invalid_request_error"),
            Self::MissingCredential => ("missing_credential", S::UNAUTHORIZED, "authentication_error"),
            Self::InvalidToken => ("invalid_api_key", S::UNAUTHORIZED, "authentication_error"),
            Self::InsufficientScope => ("insufficient_scope", S::FORBIDDEN, "permission_error"),
            Self::IpNotAllowed => ("ip_not_allowed", S::FORBIDDEN, "permission_error"),
            Self::PermissionDenied => ("permission_denied", S::FORBIDDEN, "permission_error"),
            Self::InvalidDpopProof => ("invalid_dpop_proof", S::UNAUTHORIZED, "authentication_error"),
            Self::UseDpopNonce => ("use_dpop_nonce", S::UNAUTHORIZED, "authentication_error"),
            Self::ModelNotFound => ("model_not_found", S::NOT_FOUND, "invalid_request_error"),
            Self::NotFound => ("not_found", S::NOT_FOUND, "invalid_request_error"),
            Self::MethodNotAllowed => ("method_not_allowed", S::METHOD_NOT_ALLOWED, "invalid_request_error"),
            Self::Conflict => ("conflict", S::CONFLICT, "invalid_request_error"),
            Self::RequestTimeout => ("request_timeout", S::REQUEST_TIMEOUT, "invalid_request_error"),
            Self::PayloadTooLarge => ("request_too_large", S::PAYLOAD_TOO_LARGE, "invalid_request_error"),
            Self::UnsupportedMediaType => ("unsupported_media_type", S::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error"),
            Self::RateLimitExceeded => ("rate_limit_exceeded", S::TOO_MANY_REQUESTS, "rate_limit_error"),
            Self::InsufficientQuota => ("insufficient_quota", S::TOO_MANY_REQUESTS, "insufficient_quota"),
            Self::Internal => ("internal_error", S::INTERNAL_SERVER_ERROR, "server_error"),
            Self::UpstreamError => ("upstream_error", S::BAD_GATEWAY, "upstream_error"),
            Self::UpstreamAuth => ("upstream_auth_error", S::BAD_GATEWAY, "upstream_error"),
            Self::UpstreamOverloaded => ("overloaded", S::SERVICE_UNAVAILABLE, "server_error"),
            Self::Unavailable => ("unavailable", S::SERVICE_UNAVAILABLE, "server_error"),
            Self::UpstreamTimeout => ("timeout", S::GATEWAY_TIMEOUT, "server_error"),
            Self::SubscriptionRequired => ("subscription_required", S::FORBIDDEN, "permission_error"),
            Self::ServiceRetired => ("service_retired", S::GONE, "invalid_request_error"),
            Self::CsrfFailed => ("csrf_failed", S::FORBIDDEN, "permission_error"),
        }
    }

    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 27] = [
        Self::InvalidRequest,
        Self::InvalidCredentialRequest,
        Self::MissingCredential,
        Self::InvalidToken,
        Self::InsufficientScope,
        Self::IpNotAllowed,
        Self::PermissionDenied,
        Self::InvalidDpopProof,
        Self::UseDpopNonce,
        Self::ModelNotFound,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimitExceeded,
        Self::InsufficientQuota,
        Self::Internal,
        Self::UpstreamError,
        Self::UpstreamAuth,
        Self::UpstreamOverloaded,
        Self::Unavailable,
        Self::UpstreamTimeout,
        Self::SubscriptionRequired,
        Self::ServiceRetired,
        Self::CsrfFailed,
    ];
}

/// An error that is answered to a client. The message must never contain a secret: callers
/// build it from fixed text and from values the client sent itself (field names, model names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault (OpenAI's `param`), e.g. `messages[0].role`.
    pub param: Option<String>,
    /// Seconds for the `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), param: None, retry_after: None }
    }

    /// The same error naming the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The same error with a `Retry-After` in seconds.
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// A 500 with a generic message. Log the cause yourself, with the request id, before.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the gateway logs for the request id")
    }

    /// The OpenAI error body `{"error":{"message","type","param","code"}}` (`wire-formats.md` §1.6).
    pub fn openai_body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.code.error_type(),
                "param": self.param,
                "code": self.code.as_str(),
            }
        })
    }

    /// The Anthropic error body `{"type":"error","error":{"type","message"}}` (`wire-formats.md` §2.7).
    pub fn anthropic_body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "error": { "type": self.code.anthropic_type(), "message": self.message }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Serializable view used by the admin API: `{"message","type","code"}`.
#[derive(Debug, Serialize)]
pub struct AdminErrorBody<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub error_type: &'static str,
    pub code: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_client_error_or_server_status() {
        for code in ErrorCode::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code:?}");
            assert!(!code.as_str().is_empty());
        }
    }

    #[test]
    fn openai_body_has_the_four_fields() {
        let e = ApiError::new(ErrorCode::InvalidRequest, "bad").with_param("messages");
        let b = e.openai_body();
        assert_eq!(b["error"]["param"], "messages");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], "invalid_request");
    }
}
