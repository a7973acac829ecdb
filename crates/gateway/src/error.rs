//! Rendering of [`ApiError`] as an HTTP response in OpenAI's error shape (`wire-formats.md` §1.6),
//! with the RFC 6750 §3 `WWW-Authenticate` challenges for authentication failures.

use axum::Json;
use axum::response::{IntoResponse, Response};
use gatehouse_types::{ApiError, ErrorCode};
use http::{HeaderValue, header};

/// The realm of every challenge (RFC 6750 §3).
pub const REALM: &str = "gatehouse";

/// The bare challenge sent when no credential was presented (RFC 6750 §3.1: no `error`).
pub const CHALLENGE_BARE: &str = "Bearer realm=\"gatehouse\"";
/// The challenge for a malformed credential request (RFC 6750 §3.1 `invalid_request`).
pub const CHALLENGE_INVALID_REQUEST: &str = "Bearer realm=\"gatehouse\", error=\"invalid_request\"";
/// The challenge for an unknown, expired, revoked or malformed token (RFC 6750 §3.1).
pub const CHALLENGE_INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";
/// The challenge for a valid key that may not use the requested model (RFC 6750 §3.1).
pub const CHALLENGE_INSUFFICIENT_SCOPE: &str = "Bearer realm=\"gatehouse\", error=\"insufficient_scope\"";

/// Response extension carrying the `ErrorCode` string of an error answer, read by the call-log
/// middleware to fill `CallLog::error_code`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodeTag(pub &'static str);

/// A client-facing error of the data plane: an [`ApiError`] rendered as
/// `{"error":{"message","type","param","code"}}` with its status from the shared table,
/// `Retry-After` (seconds) when set, and the matching `WWW-Authenticate` challenge for
/// 401/403 and for 400 credential errors.
#[derive(Debug, Clone)]
pub struct GatewayApiError(pub ApiError);

impl From<ApiError> for GatewayApiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for GatewayApiError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// Builds the OpenAI-shaped error response for `err` (see [`GatewayApiError`]).
pub fn error_response(err: &ApiError) -> Response {
    let mut resp = (err.code.status(), Json(err.openai_body())).into_response();
    let headers = resp.headers_mut();
    if let Some(secs) = err.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    let challenge = match err.code {
        ErrorCode::MissingCredential => Some(CHALLENGE_BARE),
        ErrorCode::InvalidToken => Some(CHALLENGE_INVALID_TOKEN),
        ErrorCode::InvalidCredentialRequest => Some(CHALLENGE_INVALID_REQUEST),
        ErrorCode::InsufficientScope => Some(CHALLENGE_INSUFFICIENT_SCOPE),
        _ => None,
    };
    if let Some(c) = challenge {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    resp.extensions_mut().insert(ErrorCodeTag(err.code.as_str()));
    resp
}

/// 404 for a path the data plane does not serve.
pub async fn not_found() -> Response {
    error_response(&ApiError::new(ErrorCode::NotFound, "unknown route; see /v1/models, /v1/chat/completions, /v1/embeddings"))
}

/// 405 for a known path with the wrong method; `allow` is the method the route serves.
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = error_response(&ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("method not allowed on this route; use {allow}"),
    ));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_challenge_are_set() {
        let e = ApiError::new(ErrorCode::RateLimitExceeded, "slow down").with_retry_after(Some(7));
        let r = error_response(&e);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());

        let r = error_response(&ApiError::new(ErrorCode::MissingCredential, "no key"));
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], CHALLENGE_BARE);
        let r = error_response(&ApiError::new(ErrorCode::InsufficientScope, "no"));
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], CHALLENGE_INSUFFICIENT_SCOPE);
        assert_eq!(r.extensions().get::<ErrorCodeTag>().map(|t| t.0), Some("insufficient_scope"));
    }

    #[test]
    fn ip_not_allowed_is_403_without_a_challenge() {
        let r = error_response(&ApiError::new(ErrorCode::IpNotAllowed, "not from here"));
        assert_eq!(r.status(), 403);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(r.extensions().get::<ErrorCodeTag>().map(|t| t.0), Some("ip_not_allowed"));
    }
}
