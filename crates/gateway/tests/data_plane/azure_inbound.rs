//! Azure-style inbound paths (issue 4): `/openai/deployments/{d}/…?api-version=…` and
//! `/openai/v1/…` with the `api-key` header, exactly one credential, scopes as for `/v1/…`.

use serde_json::{Value, json};

use crate::harness::{Harness, sse_data, stream_content};

const API_VERSION: &str = "api-version=2024-10-21";

async fn apost(h: &Harness, path: &str, key: &str, body: &Value) -> reqwest::Response {
    h.client.post(h.url(path)).header("api-key", key).json(body).send().await.unwrap()
}

#[tokio::test]
async fn azure_clients_reach_any_model_with_api_key() {
    let h = Harness::start().await;
    let msgs = json!([{"role": "user", "content": "hello azure"}]);
    // Deployment URL: the deployment is the model; a body `model` is ignored (Azure does too).
    for model in ["demo", "demo-claude"] {
        let resp = apost(&h, &format!("/openai/deployments/{model}/chat/completions?{API_VERSION}"), &h.key, &json!({"model": "ignored", "messages": msgs})).await;
        assert_eq!(resp.status(), 200, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "echo: hello azure");
    }
    // Streamed.
    let resp = apost(&h, &format!("/openai/deployments/demo/chat/completions?{API_VERSION}"), &h.key, &json!({"messages": msgs, "stream": true})).await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(&resp.text().await.unwrap());
    assert_eq!(stream_content(&events), "echo: hello azure");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // v1 API: model in the body; models listing.
    let resp = apost(&h, "/openai/v1/chat/completions", &h.key, &json!({"model": "demo", "messages": msgs})).await;
    assert_eq!(resp.status(), 200);
    let resp = h.client.get(h.url("/openai/v1/models")).header("api-key", &h.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["data"].as_array().unwrap().iter().any(|m| m["id"] == "demo"), "{v}");
    // Embeddings by deployment (the provider/model form, percent-encoded) and by v1.
    let resp = apost(&h, &format!("/openai/deployments/mock%2Fmock-embed/embeddings?{API_VERSION}"), &h.key, &json!({"input": "x"})).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(h.mock.last_request().unwrap()["model"], "mock-embed");
    let resp = apost(&h, "/openai/v1/embeddings", &h.key, &json!({"model": "mock/mock-embed", "input": "x"})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn azure_paths_keep_the_credential_and_scope_rules() {
    let h = Harness::start().await;
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
    let path = format!("/openai/deployments/demo/chat/completions?{API_VERSION}");
    // api-key only on Azure-style paths.
    let resp = h.client.post(h.url("/v1/chat/completions")).header("api-key", &h.key).json(&json!({"model": "demo", "messages": chat["messages"]})).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(text.contains("api-key") && !text.contains(&h.key), "{text}");
    // Bearer works too; two credentials → 400, the key never echoed.
    let resp = h.client.post(h.url(&path)).bearer_auth(&h.key).json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h.client.post(h.url(&path)).bearer_auth(&h.key).header("api-key", &h.key).json(&chat).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains(&h.key));
    // Wrong or missing key → 401; bad body → 400; bad deployment encoding → 400; wrong method → 405.
    assert_eq!(apost(&h, &path, "gthk_live_nope", &chat).await.status(), 401);
    assert_eq!(h.client.post(h.url(&path)).json(&chat).send().await.unwrap().status(), 401);
    let resp = h.client.post(h.url(&path)).header("api-key", &h.key).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = apost(&h, &format!("/openai/deployments/%FF/chat/completions?{API_VERSION}"), &h.key, &chat).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let resp = h.client.get(h.url(&path)).header("api-key", &h.key).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(apost(&h, "/openai/deployments/no-such/chat/completions", &h.key, &chat).await.status(), 404);
    // Scopes as for /v1/…: a chat-only key may not embed or list models.
    let (_, chat_key) = h.create_key_with(&[], None, |c| c.scopes = vec!["chat:invoke".into()]).await;
    assert_eq!(apost(&h, &path, &chat_key, &chat).await.status(), 200);
    let resp = apost(&h, &format!("/openai/deployments/mock%2Fmock-embed/embeddings?{API_VERSION}"), &chat_key, &json!({"input": "x"})).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(apost(&h, "/openai/v1/embeddings", &chat_key, &json!({"model": "mock/mock-embed", "input": "x"})).await.status(), 403);
    let resp = h.client.get(h.url("/openai/v1/models")).header("api-key", &chat_key).send().await.unwrap();
    assert_eq!(resp.status(), 403);
}
