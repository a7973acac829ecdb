//! Usage and cost: every call-log row priced from the model catalog (cached tokens at their own
//! price, counted once), `GET /v1/models` showing the catalog entry of each model the key may
//! use, whichever inbound API the call came through.

use std::sync::Arc;

use gatehouse_gateway::GatewaySettings;
use gatehouse_providers::catalog::Catalog;
use serde_json::{Value, json};

use crate::harness::{Harness, Options};

const CATALOG: &str = r#"models = [
  { id = "mock-gpt", provider = "mock", context = 32000, max_output = 4000, input = 1.0, output = 2.0, cached = 0.1 },
  { id = "mock-claude", provider = "mock", context = 200000, max_output = 8000, input = 3.0, output = 15.0, cached = 0.3, cache_write = 3.75 },
]"#;

async fn harness() -> Harness {
    let catalog = Arc::new(Catalog::parse(CATALOG, "test").unwrap());
    Harness::start_with(Options { settings: GatewaySettings { catalog, ..GatewaySettings::default() }, ..Options::default() }).await
}

#[tokio::test]
async fn models_show_catalog_entries() {
    let h = harness().await;
    let list: Value = h.client.get(h.url("/v1/models")).bearer_auth(&h.key).send().await.unwrap().json().await.unwrap();
    let demo = list["data"].as_array().unwrap().iter().find(|m| m["id"] == "demo").unwrap();
    assert_eq!(demo["context_window"], 32000);
    assert_eq!(demo["max_output_tokens"], 4000);
    assert_eq!(demo["pricing"]["input"], 1.0);
    assert_eq!(demo["pricing"]["cached_input"], 0.1);
    assert_eq!(demo["pricing"]["currency"], "USD");
    let one: Value = h.client.get(h.url("/v1/models/demo-claude")).bearer_auth(&h.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["pricing"]["cache_write"], 3.75);
    // A restricted key sees only its models (and so only their prices).
    let (_, restricted) = h.create_key(&["demo"], None).await;
    let list: Value = h.client.get(h.url("/v1/models")).bearer_auth(&restricted).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_row_carries_its_cost() {
    let mut h = harness().await;
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "price me"}]});
    for stream in [false, true] {
        let _ = h.post("/v1/chat/completions", Some(&h.key), &chat("demo", stream)).await.bytes().await;
        let _ = h.post("/v1/chat/completions", Some(&h.key), &chat("mock/mock-gpt:cached", stream)).await.bytes().await;
        let _ = h.post("/v1/chat/completions", Some(&h.key), &chat("mock-anthropic/mock-claude:cached", stream)).await.bytes().await;
        let m = json!({"model": "demo-claude", "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "price me"}]});
        let _ = h.post("/v1/messages", Some(&h.key), &m).await.bytes().await;
    }
    let g = json!({"contents": [{"parts": [{"text": "price me"}]}]});
    let _ = h.client.post(h.url("/v1beta/models/demo:generateContent")).header("x-goog-api-key", &h.key).json(&g).send().await.unwrap().bytes().await;
    let _ = h.post("/v1/chat/completions", Some(&h.key), &chat("mock/unpriced-model", false)).await.bytes().await;
    let logs = h.finish().await;
    assert_eq!(logs.len(), 10);
    let mut cached_seen = 0;
    for l in &logs {
        let (input, output, cached, write) = match l.upstream_model.as_deref() {
            Some(m) if m.starts_with("mock-gpt") => (1.0, 2.0, 0.1, 1.0),
            Some(m) if m.starts_with("mock-claude") => (3.0, 15.0, 0.3, 3.75),
            _ => {
                assert_eq!(l.cost_usd, None, "unknown models are not priced: {l:?}");
                continue;
            }
        };
        assert!(l.prompt_tokens > 0 && l.completion_tokens > 0 && l.prompt_tokens >= l.cached_tokens, "{l:?}");
        if l.cached_tokens > 0 {
            cached_seen += 1;
        }
        // Each prompt token once: uncached, cache read, cache write (reasoning: none here).
        assert_eq!(l.reasoning_tokens, 0);
        let uncached = l.prompt_tokens - l.cached_tokens - l.cache_write_tokens;
        let want = (uncached as f64 * input
            + l.cached_tokens as f64 * cached
            + l.cache_write_tokens as f64 * write
            + l.completion_tokens as f64 * output)
            / 1e6;
        let got = l.cost_usd.unwrap_or_else(|| panic!("no cost: {l:?}"));
        assert!((got - want).abs() < 1e-12, "{got} != {want}: {l:?}");
    }
    assert_eq!(cached_seen, 4, "cached scenarios stream and not, both upstream formats");
}
