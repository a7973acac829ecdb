//! Request preparation (recording, auth, JSON, scenario) and vendor-shaped error answers,
//! shared by both dialects.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::new_id;
use crate::scenario::{Failure, SCENARIO_HEADER, Scenario};
use crate::state::MockState;
use crate::stream::{ScriptedBody, Step};

/// Which vendor's wire format an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
    /// Google Gemini (`x-goog-api-key`, Google RPC error envelope).
    Gemini,
    /// Ollama native (`{"error": "text"}` envelope, no auth unless a key is expected).
    Ollama,
    /// AWS Bedrock Converse (`{"message"}` + `x-amzn-ErrorType`; auth checked by its module).
    Bedrock,
}

impl Dialect {
    /// Anthropic when the request carries Anthropic's headers, else OpenAI (for shared paths
    /// such as `GET /v1/models` and unknown routes).
    pub(crate) fn sniff(headers: &HeaderMap) -> Dialect {
        if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// A request that passed recording, auth, JSON parsing and scenario parsing.
pub(crate) struct Prepared {
    pub(crate) body: Value,
    /// The model string as sent (options included).
    pub(crate) model: String,
    pub(crate) scenario: Scenario,
    /// The failure to act on for this very call (`fail_first` already applied).
    pub(crate) failure: Option<Failure>,
}

/// Records the request, then checks auth, parses the JSON body, reads `model` and builds
/// the scenario. Any failure is returned as the finished vendor-shaped answer.
#[allow(clippy::result_large_err)] // the error is the finished answer
pub(crate) fn prepare(
    st: &Arc<MockState>,
    dialect: Dialect,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Prepared, Response> {
    prepare_with_model(st, dialect, method, path, headers, body, None)
}

/// [`prepare`] with the model taken from the URL (Gemini's `models/{model}:generateContent`)
/// instead of the body when `url_model` is given.
#[allow(clippy::result_large_err)] // the error is the finished answer
pub(crate) fn prepare_with_model(
    st: &Arc<MockState>,
    dialect: Dialect,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    url_model: Option<&str>,
) -> Result<Prepared, Response> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    st.record(method, path, headers, parsed.clone());
    check_auth(st, dialect, headers)?;
    let Some(body) = parsed else {
        return Err(error(
            dialect,
            400,
            Some(
                "We could not parse the JSON body of your request. (gatehouse-mock expects a JSON object.)",
            ),
            None,
            &Scenario::default(),
        ));
    };
    if !body.is_object() {
        return Err(error(
            dialect,
            400,
            Some("The request body must be a JSON object."),
            None,
            &Scenario::default(),
        ));
    }
    let model = match url_model {
        Some(m) => Some(m.to_owned()),
        None => body.get("model").and_then(Value::as_str).map(str::to_owned),
    };
    let Some(model) = model else {
        let msg = match dialect {
            Dialect::OpenAi | Dialect::Gemini | Dialect::Bedrock => "you must provide a model parameter",
            Dialect::Ollama => "model is required",
            Dialect::Anthropic => "model: Field required",
        };
        return Err(error(
            dialect,
            400,
            Some(msg),
            Some("model"),
            &Scenario::default(),
        ));
    };
    let mut scenario = st.defaults.clone();
    let header_opts = headers
        .get(SCENARIO_HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    let parsed = scenario
        .parse_model(&model)
        .map(|_| ())
        .and_then(|()| match &header_opts {
            Some(Ok(opts)) => scenario.apply_options(opts),
            Some(Err(_)) => Err(crate::scenario::ScenarioError {
                option: SCENARIO_HEADER.to_owned(),
                reason: "header value is not visible ASCII".to_owned(),
            }),
            None => Ok(()),
        });
    if let Err(e) = parsed {
        return Err(error(
            dialect,
            400,
            Some(&e.to_string()),
            Some("model"),
            &Scenario::default(),
        ));
    }
    let failure = match scenario.failure {
        Some(f) => {
            let key = format!(
                "{path} {model} {}",
                header_opts.and_then(Result::ok).unwrap_or_default()
            );
            st.should_fail(&key, scenario.fail_first).then_some(f)
        }
        None => None,
    };
    Ok(Prepared {
        body,
        model,
        scenario,
        failure,
    })
}

/// Vendor auth: OpenAI wants `Authorization: Bearer <key>`; Anthropic wants `x-api-key` (or a
/// Bearer token) plus `anthropic-version`. Without a configured key any key (or none) passes.
#[allow(clippy::result_large_err)] // the error is the finished answer
pub(crate) fn check_auth(
    st: &MockState,
    dialect: Dialect,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let presented = match dialect {
        // `api-key` is Azure's header (the Azure routes reuse the OpenAI dialect).
        Dialect::OpenAi => bearer.or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok())),
        Dialect::Ollama => bearer,
        Dialect::Anthropic => headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or(bearer),
        Dialect::Gemini => headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()),
        // Bearer API keys and SigV4 are checked by `crate::bedrock` (it needs the body).
        Dialect::Bedrock => return Ok(()),
    };
    if let Some(expected) = &st.expected_key {
        let ok = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes()));
        if !ok {
            let msg = match (dialect, presented) {
                (Dialect::OpenAi, None) => {
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                }
                (Dialect::OpenAi, Some(_)) => "Incorrect API key provided.",
                (Dialect::Anthropic, None) => "x-api-key header is required",
                (Dialect::Anthropic, Some(_)) => "invalid x-api-key",
                (Dialect::Gemini, _) => "API key not valid. Please pass a valid API key.",
                (Dialect::Ollama | Dialect::Bedrock, _) => "unauthorized",
            };
            // Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID (§3.4).
            let status = if dialect == Dialect::Gemini { 400 } else { 401 };
            return Err(error(dialect, status, Some(msg), None, &Scenario::default()));
        }
    }
    if dialect == Dialect::Anthropic && !headers.contains_key("anthropic-version") {
        return Err(error(
            dialect,
            400,
            Some("anthropic-version: header is required"),
            None,
            &Scenario::default(),
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The vendor error envelope for `status`, with `retry-after`/`retry-after-ms`/
/// `x-should-retry` per the scenario (429, 503 and 529 default to `retry-after: 1`).
///
/// OpenAI: `{"error":{"message","type","param","code"}}` (`wire-formats.md` §1.6).
/// Anthropic: `{"type":"error","error":{"type","message"},"request_id"}` (§2.7).
pub(crate) fn error(
    dialect: Dialect,
    status: u16,
    message: Option<&str>,
    param: Option<&str>,
    s: &Scenario,
) -> Response {
    let request_id = new_id("req_", 24);
    let body = match dialect {
        Dialect::OpenAi => {
            let (ty, code, default_msg) = openai_error_kind(status);
            json!({"error": {
                "message": message.unwrap_or(default_msg),
                "type": ty,
                "param": param,
                "code": code,
            }})
        }
        Dialect::Anthropic => {
            let (ty, default_msg) = anthropic_error_kind(status);
            json!({
                "type": "error",
                "error": {"type": ty, "message": message.unwrap_or(default_msg)},
                "request_id": request_id,
            })
        }
        Dialect::Gemini => gemini_error_body(status, message),
        Dialect::Ollama => {
            json!({"error": message.unwrap_or(openai_error_kind(status).2)})
        }
        Dialect::Bedrock => json!({"message": message.unwrap_or(crate::bedrock::exception_for(status).1)}),
    };
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status_code;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(h, dialect, &request_id);
    if dialect == Dialect::Bedrock {
        h.insert("x-amzn-errortype", HeaderValue::from_static(crate::bedrock::exception_for(status).0));
    }
    let retry_after = s
        .retry_after
        .or(matches!(status, 429 | 503 | 529).then_some(1));
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(ms) = s.retry_after_ms {
        h.insert("retry-after-ms", HeaderValue::from(ms));
    }
    if let Some(should) = s.should_retry {
        h.insert(
            "x-should-retry",
            HeaderValue::from_static(if should { "true" } else { "false" }),
        );
    }
    if status == 429 && dialect == Dialect::OpenAi {
        h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("60"));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1s"));
    }
    resp
}

/// Google RPC error envelope (`wire-formats.md` §3.4): `{"error":{"code","message","status",
/// "details"}}`; a bad key is `API_KEY_INVALID`, 429 carries `RetryInfo`.
pub(crate) fn gemini_error_body(status: u16, message: Option<&str>) -> Value {
    let (name, default_msg) = match status {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401 => ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        404 => ("NOT_FOUND", "models/mock is not found for API version v1beta."),
        429 => ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        500 => ("INTERNAL", "An internal error has occurred."),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504 => ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        _ => ("UNKNOWN", "Request rejected (scripted by gatehouse-mock)."),
    };
    let msg = message.unwrap_or(default_msg);
    let mut details = Vec::new();
    if msg.starts_with("API key not valid") {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}));
    }
    if status == 429 {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}));
    }
    let mut err = json!({"code": status, "message": msg, "status": name});
    if !details.is_empty() {
        err["details"] = Value::Array(details);
    }
    json!({"error": err})
}

fn openai_error_kind(status: u16) -> (&'static str, Option<&'static str>, &'static str) {
    match status {
        400 => (
            "invalid_request_error",
            None,
            "Invalid request (scripted by gatehouse-mock).",
        ),
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
            "Country, region, or territory not supported",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist or you do not have access to it.",
        ),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests (scripted by gatehouse-mock). Please try again in 1s.",
        ),
        503 | 529 => (
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.",
        ),
        500..=599 => (
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!",
        ),
        _ => (
            "invalid_request_error",
            None,
            "Request rejected (scripted by gatehouse-mock).",
        ),
    }
}

fn anthropic_error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => (
            "invalid_request_error",
            "Invalid request (scripted by gatehouse-mock).",
        ),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => ("billing_error", "Your credit balance is too low."),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "Not found."),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your rate limit (scripted by gatehouse-mock).",
        ),
        504 => ("timeout_error", "Request timed out."),
        529 => ("overloaded_error", "Overloaded"),
        500..=599 => ("api_error", "Internal server error"),
        _ => (
            "invalid_request_error",
            "Request rejected (scripted by gatehouse-mock).",
        ),
    }
}

/// Sets the vendor's request-id header.
pub(crate) fn set_request_id(h: &mut HeaderMap, dialect: Dialect, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        match dialect {
            Dialect::OpenAi => {
                h.insert("x-request-id", v);
                h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
                h.insert("openai-processing-ms", HeaderValue::from_static("1"));
            }
            Dialect::Anthropic => {
                h.insert("request-id", v);
            }
            Dialect::Bedrock => {
                h.insert("x-amzn-requestid", v);
            }
            Dialect::Gemini | Dialect::Ollama => {}
        }
    }
}

/// A JSON answer (`200`), with leading blank lines under `keepalive` (DeepSeek-style).
pub(crate) fn json_ok(dialect: Dialect, value: &Value, s: &Scenario) -> Response {
    let mut text = String::new();
    if s.keepalive {
        text.push_str("\n\n");
    }
    text.push_str(&value.to_string());
    let mut resp = Response::new(Body::from(text));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(h, dialect, &new_id("req_", 24));
    resp
}

/// A JSON answer cut short: half the body, then either a clean end (`early-end`) or an
/// aborted connection (`early-close`).
pub(crate) fn json_truncated(
    st: &Arc<MockState>,
    dialect: Dialect,
    value: &Value,
    abort: bool,
) -> Response {
    let text = value.to_string().into_bytes();
    let half = Bytes::from(text[..text.len() / 2].to_vec());
    let mut steps = vec![Step::Write(half)];
    if abort {
        steps.push(Step::Sleep(std::time::Duration::from_millis(10)));
        steps.push(Step::Abort);
    }
    let mut resp = Response::new(Body::from_stream(ScriptedBody::new(steps, st.clone())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(h, dialect, &new_id("req_", 24));
    resp
}

/// A streaming `text/event-stream` answer playing `steps`.
pub(crate) fn sse_ok(st: &Arc<MockState>, dialect: Dialect, steps: Vec<Step>) -> Response {
    let mut resp = Response::new(Body::from_stream(ScriptedBody::new(steps, st.clone())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_request_id(h, dialect, &new_id("req_", 24));
    resp
}
