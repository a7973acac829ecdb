//! The call log: every call recorded once, streams at their end, disconnects included.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Harness, Options, request_id, sse_data};

#[tokio::test]
async fn every_call_appears_once_in_the_call_log() {
    let mut h = Harness::start().await;
    let (restricted_id, restricted) = h.create_key(&["demo"], None).await;
    let mut expected: HashMap<String, (u16, bool)> = HashMap::new();
    let mut note = |resp: &reqwest::Response, stream: bool| {
        expected.insert(request_id(resp), (resp.status().as_u16(), stream));
    };
    let r = h.chat("demo", None).await;
    note(&r, false);
    let _ = r.bytes().await;
    let r = h.chat("demo", Some(true)).await;
    note(&r, true);
    let _ = r.bytes().await;
    let r = h.chat("demo-claude", Some(true)).await;
    note(&r, true);
    let _ = r.bytes().await;
    let r = h.client.post(h.url("/v1/chat/completions")).json(&json!({})).send().await.unwrap();
    note(&r, false);
    let r = h.post("/v1/chat/completions", Some(&restricted), &json!({"model": "demo-claude", "messages": [{"role": "user", "content": "x"}]})).await;
    note(&r, false);
    let r = h.chat("mock/mock-gpt:429", None).await;
    note(&r, false);
    let r = h.client.get(h.url("/v1/models")).bearer_auth(&h.key).send().await.unwrap();
    note(&r, false);
    let r = h.client.get(h.url("/nowhere")).send().await.unwrap();
    note(&r, false);
    let key = h.key.clone();

    let logs = h.finish().await;
    assert_eq!(logs.len(), expected.len(), "{logs:#?}");
    for log in &logs {
        let (status, stream) = expected[&log.request_id];
        assert_eq!(log.status, status, "{log:?}");
        assert_eq!(log.stream, stream, "{log:?}");
    }
    let ok = logs.iter().find(|l| l.status == 200 && !l.stream && l.endpoint == "POST /v1/chat/completions").unwrap();
    assert_eq!(ok.model.as_deref(), Some("demo"));
    assert_eq!(ok.provider.as_deref(), Some("mock"));
    assert_eq!(ok.upstream_model.as_deref(), Some("mock-gpt"));
    assert!(ok.prompt_tokens > 0 && ok.completion_tokens > 0);
    assert!(ok.credential_id.is_some() && ok.team_id.is_some() && ok.app_id.is_some());
    assert!(ok.upstream_latency_ms.is_some());
    let streamed = logs.iter().find(|l| l.stream && l.provider.as_deref() == Some("mock-anthropic")).unwrap();
    assert!(streamed.ttft_ms.is_some());
    assert!(streamed.completion_tokens > 0, "stream usage requested upstream even without include_usage");
    let unauth = logs.iter().find(|l| l.status == 401).unwrap();
    assert_eq!(unauth.error_code.as_deref(), Some("missing_credential"));
    let denied = logs.iter().find(|l| l.status == 403).unwrap();
    assert_eq!(denied.credential_id, Some(restricted_id));
    assert_eq!(denied.model.as_deref(), Some("demo-claude"));
    let limited = logs.iter().find(|l| l.status == 429).unwrap();
    assert_eq!(limited.error_code.as_deref(), Some("rate_limit_exceeded"));
    // No record holds a key.
    let dump = format!("{logs:?}");
    assert!(!dump.contains(&key) && !dump.contains(&restricted));
}

#[tokio::test]
async fn client_disconnect_cancels_upstream_and_is_logged_with_partial_usage() {
    let mut h = Harness::start().await;
    let mut ids = Vec::new();
    for model in ["mock-anthropic/mock-claude:chunks=400,delay_ms=20", "mock/mock-gpt:chunks=400,delay_ms=20"] {
        let mut resp = h.chat(model, Some(true)).await;
        assert_eq!(resp.status(), 200);
        ids.push(request_id(&resp));
        let mut got = 0;
        while got < 3 {
            let chunk = resp.chunk().await.unwrap().expect("stream still open");
            got += sse_data(std::str::from_utf8(&chunk).unwrap_or("")).len().max(1);
        }
        drop(resp);
    }
    assert!(h.mock.wait_for_disconnects(2, Duration::from_secs(20)).await, "upstream streams were cancelled");
    let logs = h.finish().await;
    for id in &ids {
        let rec = logs.iter().find(|l| &l.request_id == id).unwrap();
        assert!(rec.stream);
        assert_eq!(rec.error_code.as_deref(), Some("client_disconnected"), "{rec:?}");
        assert_eq!(rec.status, 499);
        assert!(rec.ttft_ms.is_some());
    }
    let anthropic = logs.iter().find(|l| l.request_id == ids[0]).unwrap();
    assert!(anthropic.prompt_tokens > 0, "usage seen so far is kept: {anthropic:?}");
}

#[tokio::test]
async fn shutdown_ends_streams_after_the_drain_deadline_and_flushes_the_log() {
    let mut opts = Options::default();
    opts.settings.stream_drain = Duration::from_millis(200);
    let mut h = Harness::start_with(opts).await;
    let mut resp = h.chat("mock/mock-gpt:chunks=2000,delay_ms=20", Some(true)).await;
    let id = request_id(&resp);
    let _first = resp.chunk().await.unwrap();
    h.shutdown.cancel();
    let rest = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert!(rest.contains("\"unavailable\""), "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"));
    let logs = h.finish().await;
    let rec = logs.iter().find(|l| l.request_id == id).unwrap();
    assert_eq!(rec.error_code.as_deref(), Some("unavailable"));
}
