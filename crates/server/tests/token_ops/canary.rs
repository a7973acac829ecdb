//! The canary run (issue 5, `token-security.md` §3 / G-11): a canary provider key and a canary
//! consumer key driven through every success and error path of the binary — chat and stream,
//! upstream 401/429/500 from an upstream that echoes the key it was sent, wrong and unknown
//! keys, revocation, a leak report, admin errors, the audit export, /metrics, logs — and then
//! searched for in every response, the server's stdout/stderr, the audit records and every
//! stored byte (the SQLite files; every text column in PostgreSQL when configured).

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, contains, sqlite_bytes, temp_dir};

/// An upstream that behaves like a careless provider: its error answers quote the key it was
/// sent (in the body and a header), which the gateway must never pass on.
async fn hostile_upstream() -> SocketAddr {
    async fn chat(headers: HeaderMap, body: axum::body::Bytes) -> Response {
        let key = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let model = req["model"].as_str().unwrap_or("");
        let status = match model {
            "echo-401" => StatusCode::UNAUTHORIZED,
            "echo-429" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({"error": {"message": format!("Incorrect API key provided: {key}"), "type": "invalid_request_error", "code": "invalid_api_key"}});
        let mut resp = (status, axum::Json(body)).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&key) {
            resp.headers_mut().insert("x-echo-key", v);
        }
        resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        resp
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn run(database_url: Option<&str>) {
    let dir = temp_dir(if database_url.is_some() { "canary-pg" } else { "canary" });
    let data_dir = dir.join("data");
    let provider_canary = format!("sk-canary-provider-{}", uuid::Uuid::now_v7().simple());
    let mock = gatehouse_testkit::MockProvider::builder().expected_key(provider_canary.clone()).start().await.unwrap();
    let hostile = hostile_upstream().await;
    let s = Server::start(&data_dir, database_url).await;

    // --- providers with the canary provider key; models on them.
    // One provider per failure, so one upstream's circuit state does not answer for another.
    let hostile_base = format!("http://{hostile}/v1");
    for (name, base) in [
        ("canary", mock.openai_base_url()),
        ("hostile-401", hostile_base.clone()),
        ("hostile-429", hostile_base.clone()),
        ("hostile-500", hostile_base.clone()),
    ] {
        let (st, v) = s
            .admin(Method::POST, "/providers", Some(json!({"name": name, "kind": "openai", "base_url": base, "api_key": provider_canary})))
            .await;
        assert_eq!(st, 201, "{v}");
    }
    for (name, deployment) in [("canary", ("canary", "mock-gpt")), ("echo-401", ("hostile-401", "echo-401")), ("echo-429", ("hostile-429", "echo-429")), ("echo-500", ("hostile-500", "echo-500"))] {
        let (st, v) = s
            .admin(Method::POST, "/models", Some(json!({"name": name, "deployments": [{"provider": deployment.0, "model": deployment.1}]})))
            .await;
        assert_eq!(st, 201, "{v}");
    }
    // --- the canary consumer key (shown once in this answer, which is not searched).
    let r = s.http.post(format!("{}/admin/v1/keys", s.admin)).bearer_auth(&s.token).json(&json!({"name": "canary"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();

    // --- success paths.
    let (st, body) = s.chat(&key, "canary", false).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = s.chat(&key, "canary", true).await;
    assert!(st == 200 && body.contains("[DONE]"), "{body}");
    let r = s
        .http
        .post(format!("{}/v1/messages", s.data))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "canary", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    s.remember(&format!("{:?}{}", r.headers().clone(), r.text().await.unwrap()));
    let r = s.http.get(format!("{}/v1/models", s.data)).bearer_auth(&key).send().await.unwrap();
    s.remember(&r.text().await.unwrap());

    // --- upstream errors from an upstream quoting the provider key.
    for (model, want) in [("echo-401", 502), ("echo-429", 429), ("echo-500", 502)] {
        let (st, body) = s.chat(&key, model, false).await;
        assert_eq!(st, want, "{model}: {body}");
        // Later calls may meet the routing layer's circuit breaker instead: any error will do.
        let (st, body) = s.chat(&key, model, true).await;
        assert!(st >= 400, "{model} stream: {body}");
    }
    // The mock with the canary as its expected key: its scenarios through `provider/model`.
    for scenario in ["mock-gpt:401", "mock-gpt:429", "mock-gpt:500", "mock-gpt:error-mid-stream"] {
        let (st, body) = s.chat(&key, &format!("canary/{scenario}"), scenario.ends_with("stream")).await;
        assert!(st >= 200, "{scenario}: {body}");
    }

    // --- wrong keys: a bad checksum, an unknown well-formed key, the key as Basic / in the query.
    let mut bad = key.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(s.chat(&bad, "canary", false).await.0, 401);
    let r = s.http.post(format!("{}/v1/chat/completions?key={key}", s.data)).json(&json!({"model": "canary"})).send().await.unwrap();
    assert!(r.status().is_client_error());
    s.remember(&r.text().await.unwrap());
    let r = s.http.post(format!("{}/v1/chat/completions", s.data)).basic_auth("u", Some(&key)).json(&json!({"model": "canary"})).send().await.unwrap();
    assert!(r.status().is_client_error());
    s.remember(&r.text().await.unwrap());
    // Admin errors carrying the secrets in their input.
    let (st, _) = s.admin(Method::POST, "/providers", Some(json!({"name": "bad name!", "kind": "openai", "api_key": provider_canary}))).await;
    assert_eq!(st, 400);
    let (st, _) = s.admin(Method::POST, "/providers", Some(json!({"name": "p2", "kind": "palm", "api_key": provider_canary}))).await;
    assert_eq!(st, 400);
    let (st, _) = s.admin(Method::POST, "/credentials/report-leak", Some(json!({"tokens": [provider_canary, 7]}))).await;
    assert_eq!(st, 400);
    let (st, v) = s.admin(Method::POST, "/tokens/introspect", Some(json!({"token": key}))).await;
    assert!(st == 200 && v["active"] == true, "{v}");
    // An operator token that is the consumer key: 401, not echoed.
    let r = s.http.get(format!("{}/admin/v1/keys", s.admin)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.remember(&r.text().await.unwrap());

    // --- leak report → revoked; the next call fails and is audited.
    let (st, v) = s
        .admin(Method::POST, "/credentials/report-leak", Some(json!([{"token": key, "type": "gatehouse_api_key", "url": "https://example.com/x", "source": "content"}])))
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(s.chat(&key, "canary", false).await.0, 401);
    assert_eq!(s.chat(&key, "canary", true).await.0, 401);

    // --- exports: audit, logs, metrics (when present), key and provider listings.
    let audit = s.audit("").await;
    assert!(audit.iter().any(|e| e["event_type"] == "key.revoked" && e["credential_id"] == key_id.as_str() && e["reason"] == "leak_report"));
    assert!(audit.iter().any(|e| e["event_type"] == "auth.revoked_use" && e["credential_id"] == key_id.as_str()));
    for path in ["/logs?limit=1000", "/keys?include_revoked=true", "/providers", "/models", "/audit/verify", "/limits"] {
        s.admin(Method::GET, path, None).await;
    }
    for base in [&s.data, &s.admin] {
        if let Ok(r) = s.http.get(format!("{base}/metrics")).send().await {
            s.remember(&r.text().await.unwrap_or_default());
        }
    }

    // --- the search.
    let seen = s.seen();
    assert!(seen.contains(&key_id), "the sinks were recorded");
    let (status, output) = s.terminate();
    assert!(status.success(), "{output}");
    assert!(output.contains(&key_id) || output.contains("api key"), "the server logged at debug level");
    for (what, secret) in [("provider key", &provider_canary), ("consumer key", &key)] {
        if let Some(at) = seen.find(secret.as_str()) {
            let from = seen[..at].char_indices().rev().nth(300).map_or(0, |(i, _)| i);
            panic!("the {what} reached a response, the audit export or /metrics: …{}…", &seen[from..at]);
        }
        assert!(!output.contains(secret.as_str()), "the {what} reached the server's stdout/stderr");
    }
    // The mock was really sent the canary (so the provider key did travel where it should).
    assert!(mock.calls() > 0);
    match database_url {
        None => {
            let bytes = sqlite_bytes(&data_dir);
            assert!(contains(&bytes, &key_id), "the files hold the key's record");
            assert!(!contains(&bytes, &provider_canary), "provider key in the SQLite files");
            assert!(!contains(&bytes, &key), "consumer key in the SQLite files");
        }
        Some(url) => {
            let store = gatehouse_store::connect(url).await.unwrap();
            let dump = store.debug_dump().await.unwrap();
            assert!(dump.contains("hostile-429") && dump.contains("auth.revoked_use"), "the dump covers the providers and audit tables");
            assert!(!dump.contains(&provider_canary), "provider key in PostgreSQL");
            assert!(!dump.contains(&key), "consumer key in PostgreSQL");
        }
    }
    mock.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_keys_never_leave_their_place_sqlite() {
    run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_keys_never_leave_their_place_postgres() {
    let Some(base) = std::env::var("GATEHOUSE_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty()) else {
        println!("skipped: canary_keys_never_leave_their_place_postgres (GATEHOUSE_TEST_DATABASE_URL not set)");
        return;
    };
    let schema = format!("gh_canary_{}", uuid::Uuid::now_v7().simple());
    let pool = sqlx::PgPool::connect(&base).await.unwrap();
    // the schema name is our own hex uuid, not input
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    run(Some(&url)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.unwrap();
}
