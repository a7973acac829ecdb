//! The Gemini API inbound (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`
//! with `?alt=sse` and as a JSON array, the same under `/v1/models/…`) to OpenAI- and
//! Anthropic-format upstreams: credential rules, Gemini error shapes, streams, function calls,
//! usage in the call log.

use serde_json::{Value, json};

use crate::harness::{Harness, request_id, sse_data};

fn body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 100}})
}

async fn gpost(h: &Harness, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = h.client.post(h.url(path)).json(body);
    if let Some(k) = key {
        req = req.header("x-goog-api-key", k);
    }
    req.send().await.unwrap()
}

fn assert_gemini_error(v: &Value, code: u16, status: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn generate_content_on_v1beta_and_v1_to_both_upstreams() {
    let mut h = Harness::start().await;
    for (prefix, model) in [("/v1beta", "demo"), ("/v1", "demo-claude"), ("/v1", "demo"), ("/v1beta", "demo-claude")] {
        let resp = gpost(&h, &format!("{prefix}/models/{model}:generateContent"), Some(&h.key), &body("hello gemini")).await;
        assert_eq!(resp.status(), 200, "{prefix} {model}");
        let g: Value = resp.json().await.unwrap();
        assert_eq!(g["candidates"][0]["content"]["role"], "model");
        assert_eq!(g["candidates"][0]["content"]["parts"][0]["text"], "echo: hello gemini");
        assert_eq!(g["candidates"][0]["finishReason"], "STOP");
        assert_eq!(g["modelVersion"], model);
        let u = &g["usageMetadata"];
        assert!(u["promptTokenCount"].as_u64().unwrap() > 0 && u["candidatesTokenCount"].as_u64().unwrap() > 0);
    }
    let logs = h.finish().await;
    let rows: Vec<_> = logs.iter().filter(|l| l.endpoint.contains("models/{*")).collect();
    assert_eq!(rows.len(), 4, "{logs:#?}");
    assert!(rows.iter().all(|r| r.status == 200 && r.completion_tokens > 0 && r.model.is_some()));
}

#[tokio::test]
async fn streams_sse_and_json_array() {
    let mut h = Harness::start().await;
    for model in ["demo", "demo-claude"] {
        let resp = gpost(&h, &format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"), Some(&h.key), &body("stream it")).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        let chunks: Vec<Value> = sse_data(&text.replace("\r\n", "\n")).iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        assert_eq!(text_of(&chunks), "echo: stream it", "{text}");
        let last = chunks.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert!(last["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c["candidates"][0].get("finishReason").is_none()));

        let resp = gpost(&h, &format!("/v1/models/{model}:streamGenerateContent"), Some(&h.key), &body("array it")).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let arr: Vec<Value> = resp.json().await.unwrap();
        assert_eq!(text_of(&arr), "echo: array it");
    }
    let logs = h.finish().await;
    let streamed: Vec<_> = logs.iter().filter(|l| l.stream).collect();
    assert_eq!(streamed.len(), 4);
    assert!(streamed.iter().all(|r| r.status == 200 && r.completion_tokens > 0 && r.ttft_ms.is_some()), "{streamed:#?}");
}

#[tokio::test]
async fn function_calls_round_trip() {
    let h = Harness::start().await;
    let tools = json!([{"functionDeclarations": [{"name": "lookup_order", "description": "Find", "parameters": {"type": "OBJECT", "properties": {"order_id": {"type": "STRING"}}, "required": ["order_id"]}}]}]);
    for model in ["mock/mock-gpt:tools", "mock-anthropic/mock-claude:tools"] {
        let mut b = body("where is it?");
        b["tools"] = tools.clone();
        let g: Value = gpost(&h, &format!("/v1beta/models/{model}:generateContent"), Some(&h.key), &b).await.json().await.unwrap();
        let call = g["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|p| p.get("functionCall").cloned())
            .unwrap_or_else(|| panic!("{g}"));
        assert_eq!(call["name"], "lookup_order");
        assert!(call["args"]["order_id"].is_string(), "{call}");
        assert!(call["id"].is_string());

        let text = gpost(&h, &format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"), Some(&h.key), &b).await.text().await.unwrap();
        let last: Value = serde_json::from_str(sse_data(&text.replace("\r\n", "\n")).last().unwrap()).unwrap();
        let scall = &last["candidates"][0]["content"]["parts"][0]["functionCall"];
        assert_eq!(scall["name"], "lookup_order", "{text}");
        assert!(scall["args"]["order_id"].is_string());

        // The function response goes back to an OpenAI-format upstream as a `tool` message.
        let mut next = b.clone();
        next["contents"] = json!([
            {"role": "user", "parts": [{"text": "where is it?"}]},
            {"role": "model", "parts": [{"functionCall": call}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup_order", "id": call["id"], "response": {"output": "shipped"}}}]}
        ]);
        let g: Value = gpost(&h, "/v1beta/models/demo:generateContent", Some(&h.key), &next).await.json().await.unwrap();
        assert_eq!(g["candidates"][0]["content"]["parts"][0]["text"], "tool result: shipped", "{g}");
    }
}

#[tokio::test]
async fn credentials_and_errors_in_gemini_shape() {
    let mut h = Harness::start().await;
    let key = h.key.clone();
    // ?key= is refused, with a clear message and without echoing the key.
    let resp = h.client.post(h.url(&format!("/v1beta/models/demo:generateContent?key={key}"))).json(&body("x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&key));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_gemini_error(&v, 401, "UNAUTHENTICATED");
    assert!(v["error"]["message"].as_str().unwrap().contains("x-goog-api-key"));
    // Two credentials → 400.
    let resp = h
        .client
        .post(h.url("/v1beta/models/demo:generateContent"))
        .header("x-goog-api-key", &key)
        .bearer_auth(&key)
        .json(&body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_gemini_error(&resp.json().await.unwrap(), 400, "INVALID_ARGUMENT");
    // x-api-key is not a Gemini credential; Bearer is accepted.
    let resp = h.client.post(h.url("/v1beta/models/demo:generateContent")).header("x-api-key", &key).json(&body("x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = h.client.post(h.url("/v1beta/models/demo:generateContent")).bearer_auth(&key).json(&body("x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // x-goog-api-key is not an OpenAI credential.
    let resp = h.client.get(h.url("/v1/models")).header("x-goog-api-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    let cases = [
        ("/v1beta/models/no-such:generateContent", body("x"), 404, "NOT_FOUND"),
        ("/v1beta/models/demo:countTokens", body("x"), 404, "NOT_FOUND"),
        ("/v1beta/models/demo:generateContent", json!({"contents": []}), 400, "INVALID_ARGUMENT"),
        ("/v1beta/models/demo:generateContent", json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}), 400, "INVALID_ARGUMENT"),
        ("/v1beta/models/mock%2Fmock-gpt:429:generateContent", body("x"), 429, "RESOURCE_EXHAUSTED"),
        ("/v1beta/models/mock/mock-gpt:529:generateContent", body("x"), 503, "UNAVAILABLE"),
    ];
    for (path, b, code, status) in cases {
        let resp = gpost(&h, path, Some(&key), &b).await;
        assert_eq!(resp.status(), code, "{path}");
        assert_gemini_error(&resp.json().await.unwrap(), code, status);
    }
    let resp = h.client.get(h.url("/v1beta/models/demo:generateContent")).header("x-goog-api-key", &key).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_gemini_error(&resp.json().await.unwrap(), 405, "UNIMPLEMENTED");

    // Break-it findings: bad generationConfig counts, unknown `alt`, a path that is not UTF-8,
    // a query key under either name — each a Gemini-shaped 4xx naming what was wrong.
    let bad_cfg = |cap: Value| json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": cap}});
    for cap in [json!(0), json!(-1), json!("ten")] {
        let resp = gpost(&h, "/v1beta/models/demo:generateContent", Some(&key), &bad_cfg(cap.clone())).await;
        assert_eq!(resp.status(), 400, "{cap}");
        let v: Value = resp.json().await.unwrap();
        assert_gemini_error(&v, 400, "INVALID_ARGUMENT");
        assert!(v["error"]["message"].as_str().unwrap().contains("maxOutputTokens"), "{v}");
    }
    for path in ["/v1beta/models/demo:streamGenerateContent?alt=xml", "/v1/models/demo:generateContent?alt=sse&alt=json"] {
        let resp = gpost(&h, path, Some(&key), &body("x")).await;
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_gemini_error(&v, 400, "INVALID_ARGUMENT");
        assert!(v["error"]["message"].as_str().unwrap().contains("alt"), "{v}");
    }
    for path in ["/v1beta/models/demo%FF%FE:generateContent", "/v1/models/%C3%28:generateContent"] {
        let resp = gpost(&h, path, Some(&key), &body("x")).await;
        assert_eq!(resp.status(), 400, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert_gemini_error(&resp.json().await.unwrap(), 400, "INVALID_ARGUMENT");
    }
    let resp = gpost(&h, "/v1beta/models/demo:generateContent?api_key=canary-query-key", None, &body("x")).await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(text.contains("?api_key=") && !text.contains("canary-query-key"), "{text}");

    // Mid-stream failure: a final `{"error":…}` element / event, logged as failed.
    let resp = gpost(&h, "/v1beta/models/mock/mock-gpt:error-mid-stream:streamGenerateContent?alt=sse", Some(&key), &body("x")).await;
    let rid = request_id(&resp);
    let text = resp.text().await.unwrap();
    let last: Value = serde_json::from_str(sse_data(&text.replace("\r\n", "\n")).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], 502, "{text}");
    let resp = gpost(&h, "/v1beta/models/mock/mock-gpt:error-mid-stream:streamGenerateContent", Some(&key), &body("x")).await;
    let arr: Vec<Value> = resp.json().await.unwrap();
    assert!(arr.last().unwrap().get("error").is_some());
    let logs = h.finish().await;
    let row = logs.iter().find(|l| l.request_id == rid).unwrap();
    assert_eq!((row.status, row.error_code.as_deref()), (502, Some("upstream_error")));
}
