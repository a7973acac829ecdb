//! Anomaly detection end to end (issue 5): signals become audit events, `auto_suspend`
//! suspends the key so the next call fails, and floods of refused calls are rate-gated.

use gatehouse_store::{AuditQuery, Store};
use serde_json::{Value, json};

use crate::harness::Harness;

const CHAT: &str = "/v1/chat/completions";

fn chat_body() -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
}

async fn events(h: &Harness, kind: &str) -> Vec<gatehouse_store::AuditEvent> {
    h.audit.flush().await;
    h.store.query_audit_events(&AuditQuery { event_type: Some(kind.into()), ..Default::default() }).await.unwrap()
}

async fn call(h: &Harness, key: &str, ua: &str) -> u16 {
    h.client.post(h.url(CHAT)).bearer_auth(key).header("user-agent", ua).json(&chat_body()).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn ua_spread_on_an_auto_suspend_key_suspends_it_and_the_next_call_fails() {
    let h = Harness::start().await;
    let (id, key) = h.create_key_with(&[], None, |c| c.security.auto_suspend = true).await;
    for n in 1..=4 {
        assert_eq!(call(&h, &key, &format!("agent/{n}")).await, 200, "call {n}");
    }
    // A fifth distinct user agent within the minute: above the floor of 4 → suspended.
    assert_eq!(call(&h, &key, "agent/5").await, 401);
    assert_eq!(call(&h, &key, "agent/1").await, 401, "the key stays suspended");
    let stored = h.store.get_credential(id).await.unwrap().unwrap();
    assert!(stored.security.suspended_at.is_some());
    let anomalies = events(&h, "anomaly.detected").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    let a = &anomalies[0].event;
    assert_eq!((a.credential_id, a.reason.as_deref()), (Some(id), Some("ua_spread")));
    assert_eq!((a.details["observed"].as_u64(), a.details["threshold"].as_f64()), (Some(5), Some(4.0)));
    assert_eq!(a.user_agent.as_deref(), Some("agent/5"));
    let suspended = events(&h, "key.suspended").await;
    assert_eq!((suspended.len(), suspended[0].event.credential_id), (1, Some(id)));
    // The refused call after suspension is audited as use of a suspended key.
    let refused = events(&h, "auth.revoked_use").await;
    assert_eq!(refused.iter().filter(|e| e.event.reason.as_deref() == Some("suspended")).count(), 1);
    // No key text in the audit records.
    let dump = h.store.debug_dump().await.unwrap();
    assert!(!dump.contains(&key));
}

#[tokio::test]
async fn ip_spread_without_the_policy_is_recorded_and_the_key_keeps_working() {
    let settings = gatehouse_gateway::GatewaySettings {
        trusted_proxies: vec![gatehouse_auth::cidr::Cidr::parse("127.0.0.1/32").unwrap()],
        ..Default::default()
    };
    let h = Harness::start_with(crate::harness::Options { settings, ..Default::default() }).await;
    let (id, key) = h.create_key(&[], None).await;
    for n in 1..=10 {
        let r = h
            .client
            .post(h.url(CHAT))
            .bearer_auth(&key)
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&chat_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "call {n}");
    }
    let anomalies = events(&h, "anomaly.detected").await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    let a = &anomalies[0].event;
    assert_eq!((a.credential_id, a.reason.as_deref()), (Some(id), Some("ip_spread")));
    assert_eq!(a.ip.as_deref(), Some("198.51.100.9"), "the call that crossed the floor of 8");
    assert_eq!(a.details["auto_suspend"], false);
    assert!(events(&h, "key.suspended").await.is_empty());
}

#[tokio::test]
async fn a_flood_of_revoked_use_is_one_audit_record_per_minute() {
    let h = Harness::start().await;
    let (id, key) = h.create_key(&[], None).await;
    assert_eq!(call(&h, &key, "a").await, 200);
    h.revoke(id, &key).await;
    for _ in 0..25 {
        assert_eq!(call(&h, &key, "a").await, 401);
    }
    let refused = events(&h, "auth.revoked_use").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].event.credential_id, Some(id));
}
