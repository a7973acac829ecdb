//! Token security of the data plane (issue 5, part b): scopes, IP allow-list, DPoP binding
//! refusal, rotation overlap, audit events. Test names carry the `token-security.md` §4.4 case.

use gatehouse_store::{AuditQuery, Bus, BusEvent, Credential, Store};
use gatehouse_types::{Timestamp, new_id, now};
use serde_json::{Value, json};

use crate::harness::{Harness, Options};

const CHAT: &str = "/v1/chat/completions";

fn chat_body() -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
}

async fn answer(resp: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

async fn events(h: &Harness, kind: &str) -> Vec<gatehouse_store::AuditEvent> {
    h.audit.flush().await;
    h.store.query_audit_events(&AuditQuery { event_type: Some(kind.into()), ..Default::default() }).await.unwrap()
}

#[tokio::test]
async fn t15_chat_only_key_on_embeddings_is_403_insufficient_scope_with_scope() {
    let h = Harness::start().await;
    let (id, key) = h.create_key_with(&[], None, |c| c.scopes = vec!["chat:invoke".into()]).await;
    let resp = h.post("/v1/embeddings", Some(&key), &json!({"model": "demo", "input": "x"})).await;
    let (status, challenge, body) = answer(resp).await;
    assert_eq!(status, 403);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"embeddings:invoke\""));
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert!(!body.to_string().contains(&key));
    // its own scope works; models:read is missing too
    assert_eq!(h.post(CHAT, Some(&key), &chat_body()).await.status(), 200);
    let resp = h.client.get(h.url("/v1/models")).bearer_auth(&key).send().await.unwrap();
    let (status, challenge, _) = answer(resp).await;
    assert_eq!(status, 403);
    assert!(challenge.unwrap().ends_with("scope=\"models:read\""));
    let denied = events(&h, "auth.scope_denied").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[1].event.credential_id, Some(id));
    assert_eq!(denied[1].event.details["required"], "embeddings:invoke");
    assert_eq!(denied[1].event.ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn t16_scope_match_is_case_sensitive() {
    let h = Harness::start().await;
    let (_, key) = h.create_key_with(&[], None, |c| c.scopes = vec!["Chat:Invoke".into()]).await;
    let (status, challenge, body) = answer(h.post(CHAT, Some(&key), &chat_body()).await).await;
    assert_eq!(status, 403);
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\", scope=\"chat:invoke\""));
    assert_eq!(body["error"]["code"], "insufficient_scope");
}

#[tokio::test]
async fn ip_allow_list_uses_the_socket_address_and_ignores_forged_forwarded_for() {
    let h = Harness::start().await;
    let (id, key) = h.create_key_with(&[], None, |c| c.security.ip_allow = vec!["203.0.113.0/24".into()]).await;
    // from 127.0.0.1: refused, and a forged X-Forwarded-For does not help (no trusted proxy)
    for xff in [None, Some("203.0.113.9")] {
        let mut req = h.client.post(h.url(CHAT)).bearer_auth(&key).json(&chat_body());
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let (status, challenge, body) = answer(req.send().await.unwrap()).await;
        assert_eq!(status, 403, "{xff:?}");
        assert_eq!(challenge, None, "{xff:?}");
        assert_eq!(body["error"]["code"], "ip_not_allowed");
    }
    let denied = events(&h, "auth.denied").await;
    assert_eq!(denied.len(), 2);
    assert!(denied.iter().all(|e| e.event.reason.as_deref() == Some("ip_not_allowed") && e.event.credential_id == Some(id)));
    // IPv4 and IPv6 loopback in the list: allowed
    let (_, ok_key) = h.create_key_with(&[], None, |c| c.security.ip_allow = vec!["::1/128".into(), "127.0.0.0/8".into()]).await;
    assert_eq!(h.post(CHAT, Some(&ok_key), &chat_body()).await.status(), 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let mut opts = Options::default();
    opts.settings.trusted_proxies = vec![gatehouse_auth::cidr::Cidr::parse("127.0.0.1/32").unwrap()];
    let h = Harness::start_with(opts).await;
    let (_, key) = h.create_key_with(&[], None, |c| c.security.ip_allow = vec!["203.0.113.0/24".into()]).await;
    let via = |xff: &'static str| h.client.post(h.url(CHAT)).bearer_auth(&key).header("x-forwarded-for", xff).json(&chat_body()).send();
    assert_eq!(via("203.0.113.9").await.unwrap().status(), 200);
    // the client forged the left entry; our proxy appended the real address on the right
    assert_eq!(via("203.0.113.9, 198.51.100.1").await.unwrap().status(), 403);
    // no header: the proxy itself is the client
    assert_eq!(h.post(CHAT, Some(&key), &chat_body()).await.status(), 403);
}

#[tokio::test]
async fn t26_dpop_bound_key_presented_as_bearer_is_401_invalid_token() {
    let h = Harness::start().await;
    let (id, key) = h.create_key_with(&[], None, |c| c.security.dpop_jkt = Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into())).await;
    let (status, challenge, body) = answer(h.post(CHAT, Some(&key), &chat_body()).await).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""));
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let denied = events(&h, "auth.denied").await;
    assert_eq!(denied[0].event.reason.as_deref(), Some("dpop_required"));
    assert_eq!(denied[0].event.credential_id, Some(id));
}

fn successor_of(h: &Harness, old: &Credential) -> (Credential, String) {
    let generated = gatehouse_auth::generate(gatehouse_auth::TokenKind::ApiKey, gatehouse_auth::Env::Live).unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&generated.token).to_string();
    let mut c = old.clone();
    c.id = new_id();
    c.digest = h.peppers.digest(&token).to_vec();
    c.hint = generated.hint;
    c.security.rotated_from = Some(old.id);
    (c, token)
}

async fn rotate(h: &Harness, old_id: gatehouse_types::Id, old_key: &str, grace_end: Timestamp) -> String {
    let old = h.store.get_credential(old_id).await.unwrap().unwrap();
    let (successor, token) = successor_of(h, &old);
    assert!(h.store.rotate_credential(old_id, &successor, grace_end).await.unwrap());
    h.bus.publish(BusEvent::CredentialChanged { id: old_id, digest: h.peppers.digest(old_key).to_vec() });
    token
}

#[tokio::test]
async fn rotation_overlap_old_key_works_until_the_grace_ends_then_invalid_token() {
    let h = Harness::start().await;
    let (id, old_key) = h.create_key(&[], None).await;
    assert_eq!(h.post(CHAT, Some(&old_key), &chat_body()).await.status(), 200);
    let new_key = rotate(&h, id, &old_key, now() + time::Duration::hours(1)).await;
    // both work during the grace period (the old one's cached entry was refreshed by the bus)
    assert_eq!(h.post(CHAT, Some(&old_key), &chat_body()).await.status(), 200);
    assert_eq!(h.post(CHAT, Some(&new_key), &chat_body()).await.status(), 200);
    // grace over: a key rotated with zero grace (a key is rotated only once, L2) fails at once
    let (id, old_key) = h.create_key(&[], None).await;
    assert_eq!(h.post(CHAT, Some(&old_key), &chat_body()).await.status(), 200);
    let new_key = rotate(&h, id, &old_key, now()).await;
    let (status, challenge, _) = answer(h.post(CHAT, Some(&old_key), &chat_body()).await).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""));
    assert_eq!(h.post(CHAT, Some(&new_key), &chat_body()).await.status(), 200);
    let expired = events(&h, "auth.expired_use").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.credential_id, Some(id));
}

#[tokio::test]
async fn t13_expired_and_revoked_use_and_first_use_are_audited_without_the_key() {
    let h = Harness::start().await;
    let (expired_id, expired_key) = h.create_key(&[], Some(now() - time::Duration::seconds(1))).await;
    let (revoked_id, revoked_key) = h.create_key(&[], None).await;
    assert_eq!(h.post(CHAT, Some(&revoked_key), &chat_body()).await.status(), 200);
    assert_eq!(h.post(CHAT, Some(&revoked_key), &chat_body()).await.status(), 200);
    h.revoke(revoked_id, &revoked_key).await;
    for key in [&expired_key, &revoked_key] {
        let resp = h.client.post(h.url(CHAT)).bearer_auth(key).header("user-agent", "probe/1.0\r\nX-Evil: 1").json(&chat_body()).send().await;
        // reqwest refuses CR/LF in header values: send a clean UA instead
        let resp = match resp {
            Ok(r) => r,
            Err(_) => h.client.post(h.url(CHAT)).bearer_auth(key).header("user-agent", "probe/1.0").json(&chat_body()).send().await.unwrap(),
        };
        let (status, challenge, body) = answer(resp).await;
        assert_eq!((status, challenge.as_deref()), (401, Some("Bearer realm=\"gatehouse\", error=\"invalid_token\"")));
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    let expired = events(&h, "auth.expired_use").await;
    assert_eq!((expired.len(), expired[0].event.credential_id), (1, Some(expired_id)));
    assert_eq!(expired[0].event.user_agent.as_deref(), Some("probe/1.0"));
    let revoked = events(&h, "auth.revoked_use").await;
    assert_eq!((revoked.len(), revoked[0].event.credential_id), (1, Some(revoked_id)));
    assert_eq!(revoked[0].event.reason.as_deref(), Some("revoked"));
    // first use: exactly once for the key used twice (and once for the harness key? unused → none)
    let first = events(&h, "key.first_used").await;
    assert_eq!(first.iter().filter(|e| e.event.credential_id == Some(revoked_id)).count(), 1);
    // the suspended state fails like revocation
    let (sid, skey) = h.create_key(&[], None).await;
    assert!(h.store.suspend_credential(sid, now()).await.unwrap());
    h.bus.publish(BusEvent::CredentialChanged { id: sid, digest: h.peppers.digest(&skey).to_vec() });
    assert_eq!(h.post(CHAT, Some(&skey), &chat_body()).await.status(), 401);
    // no key in any stored text
    h.audit.flush().await;
    let dump = h.store.debug_dump().await.unwrap();
    for k in [&expired_key, &revoked_key, &skey, &h.key] {
        assert!(!dump.contains(k.as_str()));
    }
    let chain = gatehouse_store::audit::verify_audit_chain(h.store.as_ref()).await.unwrap();
    assert!(chain.first_broken.is_none());
}
