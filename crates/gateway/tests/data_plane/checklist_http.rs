//! `token-security.md` §4.4 over HTTP, the header and request-shape cases that apply to one node:
//! T02–T12, T31, T33–T35, T39 (T01, T14, T26–T29 are in `checklist_dpop`, T18–T25 in
//! `checklist_jwt`, T13/T15/T16 in `token_security`, T38/T41–T45 in `oauth`). Each case asserts
//! status, `WWW-Authenticate` and the body's error code, and that the credential is never echoed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::harness::Harness;

const CHAT: &str = "/v1/chat/completions";
const BARE: &str = "Bearer realm=\"gatehouse\"";
const DPOP_OFFER: &str = "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\"";
const INVALID_REQUEST: &str = "Bearer realm=\"gatehouse\", error=\"invalid_request\"";
const INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

fn chat_body() -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
}

/// POSTs a chat request with exactly these headers (raw values, no `bearer_auth`).
async fn chat_with(h: &Harness, headers: &[(&str, HeaderValue)]) -> reqwest::Response {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.clone());
    }
    h.client.post(h.url(CHAT)).headers(map).json(&chat_body()).send().await.unwrap()
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

/// Status, every challenge line, body.
async fn answer(resp: reqwest::Response) -> (u16, Vec<String>, Value) {
    let status = resp.status().as_u16();
    let challenges = resp.headers().get_all("www-authenticate").iter().map(|v| String::from_utf8_lossy(v.as_bytes()).to_string()).collect();
    (status, challenges, resp.json().await.unwrap_or(Value::Null))
}

fn bare() -> Vec<String> {
    vec![BARE.to_string(), DPOP_OFFER.to_string()]
}

#[tokio::test]
async fn t02_unsupported_scheme_is_401_with_the_bare_challenges() {
    let h = Harness::start().await;
    for v in ["Basic dXNlcjpwYXNz", "Digest username=\"a\"", "Token abc", "Bearerabc"] {
        let (status, challenges, body) = answer(chat_with(&h, &[("authorization", value(v))]).await).await;
        assert_eq!((status, &challenges), (401, &bare()), "{v}");
        assert_eq!(body["error"]["code"], "missing_credential", "{v}");
    }
}

#[tokio::test]
async fn t03_scheme_case_and_extra_spaces_are_accepted() {
    let h = Harness::start().await;
    for scheme in ["bearer", "BEARER", "bEaReR", "Bearer  ", "Bearer   "] {
        let v = format!("{scheme} {}", h.key);
        assert_eq!(chat_with(&h, &[("authorization", value(&v))]).await.status(), 200, "{scheme:?}");
    }
}

#[tokio::test]
async fn t04_empty_bearer_is_400_invalid_request() {
    let h = Harness::start().await;
    for v in ["Bearer", "Bearer ", "DPoP", "bearer  "] {
        let (status, challenges, body) = answer(chat_with(&h, &[("authorization", value(v))]).await).await;
        assert_eq!((status, challenges), (400, vec![INVALID_REQUEST.to_string()]), "{v:?}");
        assert_eq!(body["error"]["code"], "invalid_request", "{v:?}");
    }
}

#[tokio::test]
async fn t05_illegal_token_characters_are_400_invalid_request() {
    let h = Harness::start().await;
    let k = &h.key;
    let mut values: Vec<HeaderValue> = ["Bearer a b", "Bearer a,b", "Bearer \"tok\"", "Bearer a=b", "Bearer a\tb", "Bearer a;b"]
        .iter()
        .map(|s| value(s))
        .collect();
    values.push(HeaderValue::from_bytes(format!("Bearer {k}\u{e9}").as_bytes()).unwrap());
    values.push(HeaderValue::from_bytes(b"Bearer caf\xe9").unwrap());
    values.push(value(&format!("Bearer {k} x")));
    for v in values {
        let shown = String::from_utf8_lossy(v.as_bytes()).to_string();
        let (status, challenges, body) = answer(chat_with(&h, &[("authorization", v)]).await).await;
        assert_eq!((status, challenges), (400, vec![INVALID_REQUEST.to_string()]), "{shown:?}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert!(!body.to_string().contains(k.as_str()), "{shown:?}");
    }
}

#[tokio::test]
async fn t06_two_authorization_lines_or_a_comma_joined_pair_are_400() {
    let h = Harness::start().await;
    let one = value(&format!("Bearer {}", h.key));
    let (status, challenges, _) = answer(chat_with(&h, &[("authorization", one.clone()), ("authorization", one)]).await).await;
    assert_eq!((status, challenges), (400, vec![INVALID_REQUEST.to_string()]));
    let joined = value(&format!("Bearer {k}, Bearer {k}", k = h.key));
    let (status, challenges, body) = answer(chat_with(&h, &[("authorization", joined)]).await).await;
    assert_eq!((status, challenges), (400, vec![INVALID_REQUEST.to_string()]));
    assert!(!body.to_string().contains(&h.key));
}

#[tokio::test]
async fn t07_a_form_body_access_token_is_never_a_credential() {
    let h = Harness::start().await;
    // Form bodies are not accepted on /v1 (G-1: no body tokens): alone they authenticate nothing…
    let resp = h
        .client
        .post(h.url(CHAT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", h.key))
        .send()
        .await
        .unwrap();
    let (status, challenges, _) = answer(resp).await;
    assert_eq!((status, challenges), (401, bare()));
    // …and with a header credential the form body is still refused, never read as a token.
    let resp = h
        .client
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", h.key))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error() && resp.status() != 401, "{}", resp.status());
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn t08_query_access_token_is_not_a_credential_and_never_reaches_the_upstream() {
    let h = Harness::start().await;
    let resp = h.client.post(format!("{}?access_token={}", h.url(CHAT), h.key)).json(&chat_body()).send().await.unwrap();
    let (status, challenges, body) = answer(resp).await;
    assert_eq!((status, challenges), (401, bare()));
    assert!(!body.to_string().contains(&h.key));
    assert_eq!(h.mock.calls(), 0);
    // With a header credential the call works; the upstream sees neither the query nor the token.
    let resp = h.client.post(format!("{}?access_token=secret-in-query", h.url(CHAT))).bearer_auth(&h.key).json(&chat_body()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    let forwarded = format!("{:?}", seen[0].headers);
    assert!(!forwarded.contains("secret-in-query") && !forwarded.contains(&h.key));
}

#[tokio::test]
async fn t09_bearer_plus_x_api_key_is_400_invalid_request() {
    let h = Harness::start().await;
    let (status, challenges, body) =
        answer(chat_with(&h, &[("authorization", value(&format!("Bearer {}", h.key))), ("x-api-key", value(&h.key))]).await).await;
    assert_eq!((status, challenges), (400, vec![INVALID_REQUEST.to_string()]));
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(!body.to_string().contains(&h.key));
}

#[tokio::test]
async fn t10_proxy_authorization_alone_is_401_bare_and_not_forwarded() {
    let h = Harness::start().await;
    let (status, challenges, _) = answer(chat_with(&h, &[("proxy-authorization", value(&format!("Bearer {}", h.key)))]).await).await;
    assert_eq!((status, challenges), (401, bare()));
    let resp = chat_with(
        &h,
        &[("authorization", value(&format!("Bearer {}", h.key))), ("proxy-authorization", value("Bearer proxy-secret"))],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = h.mock.requests();
    assert!(seen[0].headers.get("proxy-authorization").is_none());
    assert!(!format!("{:?}", seen[0].headers).contains("proxy-secret"));
}

#[tokio::test]
async fn t11_wrong_checksum_is_401_invalid_token_without_a_store_query() {
    let h = Harness::start().await;
    let mut bad = h.key.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let before = h.store.lookups();
    let (status, challenges, body) = answer(h.post(CHAT, Some(&bad), &chat_body()).await).await;
    assert_eq!((status, challenges), (401, vec![INVALID_TOKEN.to_string()]));
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(h.store.lookups(), before, "no credential lookup for a bad checksum");
    assert_eq!(h.store.credential_lookups.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn t12_unknown_key_with_a_valid_checksum_is_401_with_the_generic_message() {
    let h = Harness::start().await;
    let unknown = gatehouse_auth::generate(gatehouse_auth::TokenKind::ApiKey, gatehouse_auth::Env::Live).unwrap();
    let unknown = secrecy::ExposeSecret::expose_secret(&unknown.token).to_string();
    let (status, challenges, body) = answer(h.post(CHAT, Some(&unknown), &chat_body()).await).await;
    assert_eq!((status, challenges), (401, vec![INVALID_TOKEN.to_string()]));
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // The same answer as for a revoked key: nothing tells whether a key exists.
    let (id, key) = h.create_key(&[], None).await;
    h.revoke(id, &key).await;
    let (_, _, revoked) = answer(h.post(CHAT, Some(&key), &chat_body()).await).await;
    assert_eq!(revoked["error"]["message"], body["error"]["message"]);
    assert!(!body.to_string().contains(&unknown));
}

#[tokio::test]
async fn t31_path_tricks_never_reach_a_handler_without_a_credential() {
    let h = Harness::start().await;
    for path in [
        "/v1/./chat/completions",
        "/v1/%2e/chat/completions",
        "//v1/chat/completions",
        "/x/../v1/chat/completions",
        "/v1/chat%2fcompletions",
        "/%2fv1/chat/completions",
        "/v1/chat/completions;x=1",
        "/v1/chat/completions%00",
        "/V1/CHAT/COMPLETIONS",
        "/v1/chat/completions/",
        "/admin/v1/keys",
        "/./admin/v1/keys",
    ] {
        let resp = h.client.post(format!("{}{path}", h.base)).json(&chat_body()).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(matches!(status, 400 | 401 | 404 | 405), "{path}: {status}");
    }
    assert_eq!(h.mock.calls(), 0);
}

#[tokio::test]
async fn t33_forged_forwarding_headers_do_not_change_the_client_address() {
    let h = Harness::start().await;
    let (_, key) = h.create_key_with(&[], None, |c| c.security.ip_allow = vec!["10.0.0.0/8".into()]).await;
    let resp = chat_with(
        &h,
        &[
            ("authorization", value(&format!("Bearer {key}"))),
            ("x-forwarded-for", value("10.1.2.3")),
            ("x-real-ip", value("10.1.2.3")),
            ("forwarded", value("for=10.1.2.3")),
        ],
    )
    .await;
    let (status, challenges, body) = answer(resp).await;
    assert_eq!(status, 403);
    // An IP allow-list denial is not an RFC 6750 scope problem: no challenge.
    assert!(challenges.is_empty(), "{challenges:?}");
    assert_eq!(body["error"]["code"], "ip_not_allowed");
    assert_eq!(body["error"]["type"], "permission_error");
    // Forged gateway/forwarding headers on an allowed call are not passed upstream.
    let resp = chat_with(&h, &[("authorization", value(&format!("Bearer {}", h.key))), ("x-forwarded-for", value("10.9.9.9"))]).await;
    assert_eq!(resp.status(), 200);
    let seen = h.mock.requests();
    assert!(!format!("{:?}", seen[0].headers).contains("10.9.9.9"));
}

#[tokio::test]
async fn t34_method_override_headers_are_ignored() {
    let h = Harness::start().await;
    let (_, models_only) = h.create_key_with(&[], None, |c| c.scopes = vec!["models:read".into()]).await;
    // A read-only key cannot turn a POST into anything else: the route's own scope decides.
    let resp = chat_with(&h, &[("authorization", value(&format!("Bearer {models_only}"))), ("x-http-method-override", value("GET"))]).await;
    let (status, challenges, _) = answer(resp).await;
    assert_eq!(status, 403);
    assert!(challenges[0].ends_with("scope=\"chat:invoke\""));
    // And a GET stays a GET.
    let resp = h.client.get(h.url("/v1/models")).bearer_auth(&models_only).header("x-http-method-override", "DELETE").send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn t35_host_forwarded_host_and_base_url_in_the_body_never_redirect_the_upstream_call() {
    let h = Harness::start().await;
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil = format!("127.0.0.1:{}", attacker.local_addr().unwrap().port());
    let mut body = chat_body();
    body["base_url"] = json!(format!("http://{evil}/v1"));
    body["api_base"] = json!(format!("http://{evil}/v1"));
    let resp = h
        .client
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .header("host", &evil)
        .header("x-forwarded-host", &evil)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(status == 200 || status == 400, "{status}");
    assert!(tokio::time::timeout(Duration::from_millis(200), attacker.accept()).await.is_err(), "the attacker host got a connection");
}

#[tokio::test]
async fn t39_oversized_authorization_is_400_or_431_and_never_echoed() {
    let h = Harness::start().await;
    let huge = format!("Bearer {}", "a".repeat(16 * 1024));
    let resp = chat_with(&h, &[("authorization", value(&huge))]).await;
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 431, "{status}");
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&"a".repeat(64)));
}

// ------------------------------------------------------------------ T32: raw HTTP/1.1 framing

/// Writes `request` on a fresh TCP connection to the data plane and reads until the server
/// closes it (every byte it sent).
async fn raw_exchange(h: &Harness, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    // Reading to EOF is the assertion that the connection is closed: a kept-alive connection
    // would leave this waiting (the harness's test timeout then fails the test).
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.expect("the server must close the connection").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status_lines(resp: &str) -> Vec<&str> {
    resp.lines().filter(|l| l.starts_with("HTTP/1.")).collect()
}

/// T32: a header name followed by a space before the colon (RFC 9112 §5.1: MUST be rejected
/// with 400) → 400 and the connection closed; the credential is never looked at.
#[tokio::test]
async fn t32_space_before_the_colon_is_400_and_the_connection_closes() {
    let h = Harness::start().await;
    let body = chat_body().to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization : Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        h.key,
        body.len()
    );
    let resp = raw_exchange(&h, req.as_bytes()).await;
    assert_eq!(status_lines(&resp), vec!["HTTP/1.1 400 Bad Request"], "{resp}");
    assert_eq!(h.mock.calls(), 0);
}

/// T32: an obs-fold continuation line in a request (RFC 9112 §5.2: a server MUST reject it with
/// 400 or replace it with spaces) → 400 and the connection closed.
#[tokio::test]
async fn t32_obs_fold_header_is_400_and_the_connection_closes() {
    let h = Harness::start().await;
    let body = chat_body().to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nX-Folded: a\r\n  b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        h.key,
        body.len()
    );
    let resp = raw_exchange(&h, req.as_bytes()).await;
    assert_eq!(status_lines(&resp), vec!["HTTP/1.1 400 Bad Request"], "{resp}");
    assert_eq!(h.mock.calls(), 0);
}

/// T32: `Content-Length` together with `Transfer-Encoding: chunked`. The checklist asks for 400
/// + close; hyper (the HTTP/1 server under axum) takes the other branch RFC 9112 §6.3 allows: it
/// drops `Content-Length`, reads the body as chunked ("the Transfer-Encoding overrides the
/// Content-Length") and closes the connection after the response (the §6.3 MUST). hyper strips
/// the `Content-Length` before any middleware runs, so refusing with 400 would need our own
/// HTTP/1 parser; it would also not add safety, because the gateway never forwards client
/// framing (upstream requests are rebuilt, and the REST proxy drops `Content-Length` and
/// `Transfer-Encoding` as hop-by-hop). What this test pins down is what matters for smuggling:
/// the body is framed by `Transfer-Encoding` only (the misleading length 3 is ignored), a
/// request smuggled behind it on the same connection is never answered, and the connection is
/// closed.
#[tokio::test]
async fn t32_content_length_with_chunked_is_framed_by_chunked_only_and_the_connection_closes() {
    let h = Harness::start().await;
    let body = chat_body().to_string();
    let smuggled = format!("GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\r\n", h.key);
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n{smuggled}",
        h.key,
        body.len()
    );
    let resp = raw_exchange(&h, req.as_bytes()).await;
    // One answer only: the chat call, read by chunked framing (with Content-Length: 3 the body
    // would be `{"m` and the answer a 400).
    assert_eq!(status_lines(&resp), vec!["HTTP/1.1 200 OK"], "{resp}");
    assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    assert!(!resp.contains("\"object\":\"list\""), "the smuggled request was answered: {resp}");
    assert_eq!(h.mock.calls(), 1);
}
