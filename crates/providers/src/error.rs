//! Upstream failures and how each is answered to the client (`wire-formats.md` §7.8,
//! DESIGN.md "Upstream auth failures").

use gatehouse_types::{ApiError, ErrorCode};
use http::HeaderMap;

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
    /// The client's request cannot be translated for this provider (`wire-formats.md` §7.1
    /// "reject" rows, e.g. `n > 1` or an `input_audio` part for Anthropic). Answered as 400
    /// naming `param`; nothing was sent upstream.
    #[error("request not translatable for this provider: {message}")]
    InvalidRequest {
        /// The request field at fault, e.g. `messages[2].content[0]`.
        param: Option<String>,
        message: String,
    },
    /// The provider's configuration is unusable (e.g. a key with characters not allowed in an
    /// HTTP header, an invalid base URL). Operator-facing; the client gets a generic 502.
    #[error("provider configuration error: {0}")]
    Config(&'static str),
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
            Self::InvalidRequest { param, message } => {
                let e = ApiError::new(ErrorCode::InvalidRequest, message.clone());
                match param {
                    Some(p) => e.with_param(p.clone()),
                    None => e,
                }
            }
            Self::Config(_) => ApiError::new(ErrorCode::UpstreamError, "the upstream provider is misconfigured; the operator has been told"),
        }
    }

    /// The label for the call log's `error_code` column.
    pub fn log_code(&self) -> &'static str {
        self.to_api_error().code.as_str()
    }
}

impl UpstreamError {
    /// Builds [`UpstreamError::Status`] from an upstream error answer: `provider_code` and
    /// `message` come from the error envelope (OpenAI `{"error":{"message","type","code"}}`
    /// §1.6, Anthropic `{"type":"error","error":{"type","message"}}` §2.7, Mistral
    /// `{"object":"error","message","type","code"}`, Ollama `{"error":"text"}`, FastAPI
    /// `{"detail":…}`, Google `{"error":{"code","message","status"}}`; §7.8); `retry_after` from the headers ([`retry_after_seconds`]).
    /// `provider_code` prefers the specific `code` string over the coarse `type`.
    pub fn from_status(status: u16, headers: &HeaderMap, body: &[u8]) -> Self {
        let (provider_code, message) = parse_error_envelope(body);
        Self::Status { status, retry_after: retry_after_seconds(headers), provider_code, message }
    }

    /// Builds [`UpstreamError::MidStream`] from an in-band error payload (OpenAI `data:
    /// {"error":…}`, Anthropic `event: error`).
    pub fn mid_stream(payload: &[u8]) -> Self {
        let (provider_code, message) = parse_error_envelope(payload);
        Self::MidStream {
            provider_code,
            message: message.unwrap_or_else(|| "the upstream provider reported an error mid-stream".to_string()),
        }
    }
}

/// Request headers whose values are credentials (G-11: never shown or logged).
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Replaces every credential the request carried (values of [`CREDENTIAL_HEADERS`] and
/// sensitive-marked headers, and the token after an auth scheme such as `Bearer `) with
/// `[redacted]` in an upstream error body, before it is parsed, logged or shown to a client.
/// Some providers and proxies quote the key they were sent in their error messages.
pub fn redact_credentials(body: Vec<u8>, request_headers: &http::HeaderMap) -> Vec<u8> {
    let mut secrets: Vec<String> = Vec::new();
    for (name, value) in request_headers {
        if !(value.is_sensitive() || CREDENTIAL_HEADERS.contains(&name.as_str())) {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        let v = v.trim();
        secrets.push(v.to_string());
        if let Some((_, token)) = v.split_once(' ') {
            secrets.push(token.trim().to_string());
        }
    }
    secrets.retain(|s| s.len() >= 8);
    if secrets.is_empty() {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return body;
    }
    // Longest first, so `Bearer <key>` goes before `<key>`.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.into_owned();
    for s in &secrets {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out.into_bytes()
}

/// Longest provider message kept (characters); longer ones are cut.
const MAX_MESSAGE_CHARS: usize = 2000;

/// `(provider_code, message)` from any of the envelopes listed in [`UpstreamError::from_status`].
pub(crate) fn parse_error_envelope(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return (None, (!text.is_empty()).then(|| truncate(text)));
    };
    let str_of = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).filter(|s| !s.is_empty()).map(truncate);
    // `code` may be a string (OpenAI) or an integer (vLLM): only strings are codes.
    // Google RPC envelopes carry the code name in `status` (`RESOURCE_EXHAUSTED`, §3.4).
    let code_or_type = |o: &serde_json::Value| str_of(o.get("code")).or_else(|| str_of(o.get("type"))).or_else(|| str_of(o.get("status")));
    match v.get("error") {
        Some(serde_json::Value::String(s)) => return (None, Some(truncate(s))),
        Some(obj @ serde_json::Value::Object(_)) => return (code_or_type(obj), str_of(obj.get("message"))),
        _ => {}
    }
    if v.get("message").is_some() {
        return (code_or_type(&v), str_of(v.get("message")));
    }
    if let Some(d) = v.get("detail") {
        let msg = match d {
            serde_json::Value::String(s) => truncate(s),
            other => truncate(&other.to_string()),
        };
        return (None, Some(msg));
    }
    (None, None)
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Seconds to wait before retrying, from `retry-after-ms` (non-standard, milliseconds, rounded
/// up; preferred like the OpenAI/Anthropic SDKs do) or `retry-after` (RFC 9110 §10.2.3:
/// delay-seconds or an HTTP-date, relative to now). `None` when absent or unparseable.
pub fn retry_after_seconds(headers: &HeaderMap) -> Option<u64> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|s| s.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some((ms / 1000.0).ceil() as u64);
    }
    let v = text("retry-after")?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(secs.ceil() as u64);
    }
    let at = parse_http_date(v)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(at.saturating_sub(now).max(0) as u64)
}

/// Unix seconds of an RFC 9110 §5.6.7 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.split_once(", ").map(|(_, r)| r)?;
    let mut it = rest.split(' ');
    let day: i64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next()?.parse().ok()?;
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_variants() {
        assert_eq!(retry_after_seconds(&headers(&[("retry-after", "7")])), Some(7));
        assert_eq!(retry_after_seconds(&headers(&[("retry-after-ms", "1500")])), Some(2));
        assert_eq!(retry_after_seconds(&headers(&[("retry-after-ms", "1500"), ("retry-after", "9")])), Some(2));
        assert_eq!(retry_after_seconds(&headers(&[("retry-after", "1.2")])), Some(2));
        assert_eq!(retry_after_seconds(&headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")])), Some(0));
        assert_eq!(retry_after_seconds(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after_seconds(&HeaderMap::new()), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        let future = headers(&[("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")]);
        assert!(retry_after_seconds(&future).unwrap() > 1_000_000);
    }

    #[test]
    fn envelopes() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(parse_error_envelope(openai), (Some("rate_limit_exceeded".into()), Some("Rate limit reached".into())));
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(parse_error_envelope(anthropic), (Some("overloaded_error".into()), Some("Overloaded".into())));
        let mistral = br#"{"object":"error","message":"bad","type":"invalid_request_error","code":null}"#;
        assert_eq!(parse_error_envelope(mistral), (Some("invalid_request_error".into()), Some("bad".into())));
        assert_eq!(parse_error_envelope(br#"{"error":"model not found"}"#), (None, Some("model not found".into())));
        let vllm = br#"{"error":{"message":"x","type":"BadRequestError","code":400}}"#;
        assert_eq!(parse_error_envelope(vllm).0.as_deref(), Some("BadRequestError"));
        assert_eq!(parse_error_envelope(br#"{"detail":[{"loc":["body"]}]}"#).1.as_deref(), Some(r#"[{"loc":["body"]}]"#));
        assert_eq!(parse_error_envelope(b"  upstream exploded \n"), (None, Some("upstream exploded".into())));
        assert_eq!(parse_error_envelope(b""), (None, None));
    }

    #[test]
    fn auth_failures_never_show_the_upstream_body() {
        for status in [401, 403] {
            let e = UpstreamError::from_status(status, &HeaderMap::new(), br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz"}}"#);
            let api = e.to_api_error();
            assert_eq!(api.code, ErrorCode::UpstreamAuth);
            assert!(!api.message.contains("sk-"));
        }
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let e = UpstreamError::from_status(429, &headers(&[("retry-after", "3")]), b"{}");
        let api = e.to_api_error();
        assert_eq!(api.code, ErrorCode::RateLimitExceeded);
        assert_eq!(api.retry_after, Some(3));
    }

    #[test]
    fn invalid_request_names_param() {
        let e = UpstreamError::InvalidRequest { param: Some("n".into()), message: "n > 1 is not supported".into() };
        let api = e.to_api_error();
        assert_eq!(api.code, ErrorCode::InvalidRequest);
        assert_eq!(api.param.as_deref(), Some("n"));
    }

    #[test]
    fn credentials_quoted_in_an_error_body_are_redacted() {
        let key = "sk-canary-0123456789abcdef";
        let req = headers(&[("authorization", &format!("Bearer {key}")), ("x-api-key", "other-secret-value"), ("content-type", "application/json")]);
        let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}; header: Bearer {key}; other-secret-value; application/json"}}}}"#);
        let out = String::from_utf8(redact_credentials(body.into_bytes(), &req)).unwrap();
        assert!(!out.contains(key) && !out.contains("other-secret-value"), "{out}");
        assert!(out.contains("Incorrect API key provided: [redacted]; header: [redacted]; [redacted]; application/json"), "{out}");
        // Nothing to redact: the body is returned as it was (also when not UTF-8).
        let raw = vec![0xff, 0xfe, b'x'];
        assert_eq!(redact_credentials(raw.clone(), &req), raw);
    }
}
