//! Inbound API dialects: which client API a request speaks (OpenAI, Anthropic Messages, Gemini),
//! how its credential is found (DESIGN.md "Request path": exactly one credential per request),
//! and how errors are rendered in that API's own shape.
//!
//! Credential rules (`token-security.md` G-1, G-2):
//! * `Authorization: Bearer <key>` on every API;
//! * `x-api-key: <key>` only on `/v1/messages` (what the `anthropic` SDKs may send);
//! * `x-goog-api-key: <key>` only on the Gemini paths (what `google-genai` sends);
//! * `api-key: <key>` only on the Azure-style paths under `/openai/` (what the `AzureOpenAI`
//!   clients send, `wire-formats.md` §5; DESIGN.md "SDK headers");
//! * two credentials of any kind (two headers, or the same header twice) → 400;
//! * an API key in the query string (`?key=`, Gemini's legacy form) is never accepted → 401
//!   with a message naming the header to use (URLs end up in logs and proxies).

use axum::Json;
use axum::response::{IntoResponse, Response};
use gatehouse_auth::extract::{MAX_CREDENTIAL_LEN, is_token68};
use gatehouse_auth::{ExtractError, Scheme};
use gatehouse_providers::inbound;
use gatehouse_types::{ApiError, ErrorCode};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

use crate::error::{ErrorCodeTag, error_response};

/// The client API of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI Chat Completions & co. (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// Gemini (`/v1beta/models/{model}:…`, and `POST /v1/models/{model}:…`).
    Gemini,
}

/// Header of the Anthropic SDKs' API key.
pub const X_API_KEY: &str = "x-api-key";
/// Header of the Gemini SDKs' API key.
pub const X_GOOG_API_KEY: &str = "x-goog-api-key";
/// Header of the Azure OpenAI SDKs' API key.
pub const AZURE_API_KEY: &str = "api-key";

/// Whether `path` is one of the Azure-style paths (`/openai/deployments/…`, `/openai/v1/…`),
/// where the `api-key` header is accepted.
pub fn is_azure_path(path: &str) -> bool {
    path.starts_with("/openai/")
}

impl Dialect {
    /// The dialect of a request from its method and path.
    pub fn of(method: &Method, path: &str) -> Self {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Self::Anthropic
        } else if path.starts_with("/v1beta/") || (method == Method::POST && path.starts_with("/v1/models/")) {
            Self::Gemini
        } else {
            Self::OpenAi
        }
    }
}

/// Renders `err` in `dialect`'s error shape and status: OpenAI `{"error":{message,type,param,code}}`
/// (§1.6), Anthropic `{"type":"error","error":{type,message}}` with Anthropic statuses (§2.7,
/// §7.8), Gemini `{"error":{code,message,status}}` (§3.4). `Retry-After`, the RFC 6750 challenge
/// and the call-log error code are set alike for all three.
pub fn render_error(dialect: Dialect, err: &ApiError) -> Response {
    let mut resp = error_response(err);
    let (status, body) = match dialect {
        Dialect::OpenAi => return resp,
        Dialect::Anthropic => (inbound::anthropic::error_status(err.code), err.anthropic_body()),
        Dialect::Gemini => {
            let status = inbound::gemini::error_status(err.code);
            (status, inbound::gemini::error_body(err, status))
        }
    };
    let mut fresh = (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response();
    std::mem::swap(fresh.headers_mut(), resp.headers_mut());
    fresh.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(tag) = resp.extensions().get::<ErrorCodeTag>().copied() {
        fresh.extensions_mut().insert(tag);
    }
    fresh
}

fn credential_error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// Where the one credential of a request came from (for messages only).
fn names(found: &[&'static str]) -> String {
    found.join(" and ")
}

/// Finds the one credential of a request (module doc rules).
///
/// Errors: `InvalidCredentialRequest` (400) for two credentials or a malformed value;
/// `MissingCredential` (401) when none is usable, with a message naming the header this API
/// takes (and why a query-string key or a header of another API was ignored).
pub fn extract_credential<'a>(headers: &'a HeaderMap, uri: &Uri, dialect: Dialect) -> Result<&'a str, ApiError> {
    match extract_credential_scheme(headers, uri, dialect)? {
        (token, Scheme::Bearer) => Ok(token),
        // Callers that do not verify DPoP proofs treat the scheme as unsupported (§1.2 step 4).
        (_, Scheme::DPoP) => Err(credential_error(
            ErrorCode::MissingCredential,
            format!("no API key: send your Gatehouse key in the {} header", preferred(dialect)),
        )),
    }
}

/// [`extract_credential`] that also accepts `Authorization: DPoP <token>` (RFC 9449 §7.1) and
/// tells the scheme; `x-api-key` / `x-goog-api-key` count as `Bearer`. The caller must then
/// verify the `DPoP` proof ([`crate::dpop`]).
///
/// Errors: as [`extract_credential`].
pub fn extract_credential_scheme<'a>(headers: &'a HeaderMap, uri: &Uri, dialect: Dialect) -> Result<(&'a str, Scheme), ApiError> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut count = 0usize;
    for name in [header::AUTHORIZATION.as_str(), X_API_KEY, X_GOOG_API_KEY, AZURE_API_KEY] {
        let n = headers.get_all(name).iter().count();
        if n > 0 {
            found.push(match name {
                "authorization" => "Authorization",
                X_API_KEY => X_API_KEY,
                X_GOOG_API_KEY => X_GOOG_API_KEY,
                _ => AZURE_API_KEY,
            });
        }
        count += n;
    }
    // The query parameter name as sent (`key` or `api_key`), for the refusal message.
    let query_key = uri.query().and_then(|q| {
        q.split('&').map(|kv| kv.split('=').next().unwrap_or_default()).find(|k| k.eq_ignore_ascii_case("key") || k.eq_ignore_ascii_case("api_key"))
    });
    if count > 1 {
        let message = if found.len() > 1 {
            format!("send exactly one credential; this request has {}", names(&found))
        } else {
            format!("send exactly one credential; this request has more than one {} header", found[0])
        };
        return Err(credential_error(ErrorCode::InvalidCredentialRequest, message));
    }
    if let Some(name) = query_key {
        // `name` is one of two ASCII words (case as sent); never the value.
        return Err(credential_error(
            ErrorCode::MissingCredential,
            format!("API keys in the URL (`?{name}=`) are not accepted: URLs end up in logs; send the key in the {} header", preferred(dialect)),
        ));
    }
    if let Some(v) = headers.get(X_API_KEY) {
        if dialect != Dialect::Anthropic {
            return Err(credential_error(
                ErrorCode::MissingCredential,
                format!("the x-api-key header is only accepted on /v1/messages; send the key in the {} header", preferred(dialect)),
            ));
        }
        return header_key(v, X_API_KEY).map(|t| (t, Scheme::Bearer));
    }
    if let Some(v) = headers.get(AZURE_API_KEY) {
        if !is_azure_path(uri.path()) {
            return Err(credential_error(
                ErrorCode::MissingCredential,
                format!("the api-key header is only accepted on the Azure-style paths under /openai/; send the key in the {} header", preferred(dialect)),
            ));
        }
        return header_key(v, AZURE_API_KEY).map(|t| (t, Scheme::Bearer));
    }
    if let Some(v) = headers.get(X_GOOG_API_KEY) {
        if dialect != Dialect::Gemini {
            return Err(credential_error(
                ErrorCode::MissingCredential,
                format!("the x-goog-api-key header is only accepted on the Gemini API; send the key in the {} header", preferred(dialect)),
            ));
        }
        return header_key(v, X_GOOG_API_KEY).map(|t| (t, Scheme::Bearer));
    }
    match gatehouse_auth::extract_authorization(headers) {
        Err(ExtractError::Multiple) => {
            Err(credential_error(ErrorCode::InvalidCredentialRequest, "more than one Authorization header was sent"))
        }
        Err(ExtractError::Malformed) => Err(credential_error(
            ErrorCode::InvalidCredentialRequest,
            "the Authorization header is malformed; expected `Authorization: Bearer <key>`",
        )),
        Ok(Some(c)) => Ok((c.token, c.scheme)),
        Ok(None) => Err(credential_error(
            ErrorCode::MissingCredential,
            format!("no API key: send your Gatehouse key in the {} header", preferred(dialect)),
        )),
    }
}

fn preferred(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "`Authorization: Bearer <key>`",
        Dialect::Anthropic => "`x-api-key` (or `Authorization: Bearer`)",
        Dialect::Gemini => "`x-goog-api-key`",
    }
}

fn header_key<'a>(v: &'a HeaderValue, name: &str) -> Result<&'a str, ApiError> {
    let s = v.to_str().map(str::trim).unwrap_or_default();
    if s.is_empty() || s.len() > MAX_CREDENTIAL_LEN || !is_token68(s) {
        return Err(credential_error(ErrorCode::InvalidCredentialRequest, format!("the {name} header is malformed")));
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn dialect_of_paths() {
        assert_eq!(Dialect::of(&Method::POST, "/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::of(&Method::POST, "/v1beta/models/g:generateContent"), Dialect::Gemini);
        assert_eq!(Dialect::of(&Method::POST, "/v1/models/g:generateContent"), Dialect::Gemini);
        assert_eq!(Dialect::of(&Method::GET, "/v1/models/g"), Dialect::OpenAi);
        assert_eq!(Dialect::of(&Method::POST, "/v1/chat/completions"), Dialect::OpenAi);
    }

    #[test]
    fn header_per_dialect() {
        let u = uri("/v1/messages");
        assert_eq!(extract_credential(&h(&[("x-api-key", "k1")]), &u, Dialect::Anthropic).unwrap(), "k1");
        assert_eq!(extract_credential(&h(&[("authorization", "Bearer k2")]), &u, Dialect::Anthropic).unwrap(), "k2");
        assert_eq!(extract_credential(&h(&[("x-goog-api-key", "k3")]), &u, Dialect::Gemini).unwrap(), "k3");
        let e = extract_credential(&h(&[("x-api-key", "k1")]), &u, Dialect::OpenAi).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingCredential);
        assert!(e.message.contains("only accepted on /v1/messages"));
        let e = extract_credential(&h(&[("x-goog-api-key", "k1")]), &u, Dialect::Anthropic).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingCredential);
    }

    #[test]
    fn two_credentials_are_400_and_never_echoed() {
        let u = uri("/v1/messages");
        for hs in [
            h(&[("x-api-key", "secret1"), ("authorization", "Bearer secret2")]),
            h(&[("x-api-key", "secret1"), ("x-api-key", "secret2")]),
            h(&[("x-goog-api-key", "secret1"), ("authorization", "Bearer secret2")]),
        ] {
            for d in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini] {
                let e = extract_credential(&hs, &u, d).unwrap_err();
                assert_eq!(e.code, ErrorCode::InvalidCredentialRequest, "{hs:?} {d:?}");
                assert!(!e.message.contains("secret"));
            }
        }
    }

    #[test]
    fn api_key_header_only_on_azure_paths() {
        let azure = uri("/openai/deployments/gpt/chat/completions?api-version=2024-10-21");
        assert_eq!(extract_credential(&h(&[("api-key", "k1")]), &azure, Dialect::OpenAi).unwrap(), "k1");
        assert_eq!(extract_credential(&h(&[("api-key", "k1")]), &uri("/openai/v1/chat/completions"), Dialect::OpenAi).unwrap(), "k1");
        assert_eq!(extract_credential(&h(&[("authorization", "Bearer k2")]), &azure, Dialect::OpenAi).unwrap(), "k2");
        for (path, d) in [("/v1/chat/completions", Dialect::OpenAi), ("/v1/messages", Dialect::Anthropic), ("/v1beta/models/m:generateContent", Dialect::Gemini)] {
            let e = extract_credential(&h(&[("api-key", "secret1")]), &uri(path), d).unwrap_err();
            assert_eq!(e.code, ErrorCode::MissingCredential, "{path}");
            assert!(e.message.contains("only accepted on the Azure-style paths") && !e.message.contains("secret1"));
        }
        for hs in [h(&[("api-key", "secret1"), ("authorization", "Bearer secret2")]), h(&[("api-key", "secret1"), ("api-key", "secret2")])] {
            let e = extract_credential(&hs, &azure, Dialect::OpenAi).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidCredentialRequest);
            assert!(!e.message.contains("secret"));
        }
        assert_eq!(extract_credential(&h(&[("api-key", "a b")]), &azure, Dialect::OpenAi).unwrap_err().code, ErrorCode::InvalidCredentialRequest);
    }

    #[test]
    fn query_keys_are_refused() {
        let e = extract_credential(&h(&[]), &uri("/v1beta/models/m:generateContent?key=abc"), Dialect::Gemini).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingCredential);
        assert!(e.message.contains("x-goog-api-key") && !e.message.contains("abc"));
        let e = extract_credential(&h(&[("x-goog-api-key", "k")]), &uri("/x?alt=sse&key=abc"), Dialect::Gemini).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingCredential);
        assert!(extract_credential(&h(&[("x-goog-api-key", "k")]), &uri("/x?alt=sse"), Dialect::Gemini).is_ok());
        // The message names the parameter actually sent.
        let e = extract_credential(&h(&[]), &uri("/v1/chat/completions?api_key=abc"), Dialect::OpenAi).unwrap_err();
        assert!(e.message.contains("`?api_key=`") && !e.message.contains("abc"), "{}", e.message);
        let e = extract_credential(&h(&[]), &uri("/x?KEY=abc"), Dialect::Gemini).unwrap_err();
        assert!(e.message.contains("`?KEY=`"), "{}", e.message);
    }

    #[test]
    fn malformed_alternative_headers() {
        let e = extract_credential(&h(&[("x-api-key", "a b")]), &uri("/"), Dialect::Anthropic).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidCredentialRequest);
    }

    #[test]
    fn rendering_per_dialect() {
        let e = ApiError::new(ErrorCode::UpstreamOverloaded, "busy").with_retry_after(Some(3));
        let r = render_error(Dialect::Anthropic, &e);
        assert_eq!(r.status(), 529);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(r.extensions().get::<ErrorCodeTag>().map(|t| t.0), Some("overloaded"));
        let r = render_error(Dialect::Gemini, &ApiError::new(ErrorCode::InvalidToken, "no"));
        assert_eq!(r.status(), 401);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_some());
    }
}
