//! Conformance tests of the OAuth methods (issue 5): clients, issued tokens, single-use
//! consumption (G-9), revocation cascades, signing keys, client-assertion `jti` replay.

use std::sync::Arc;

use gatehouse_store::{IssuedToken, OAuthClient, SigningKey, Store};
use time::Duration;

use super::*;

fn client(app: &App) -> OAuthClient {
    OAuthClient {
        id: new_id(),
        team_id: app.team_id,
        app_id: app.id,
        name: "svc".into(),
        auth_method: "client_secret_basic".into(),
        secret_digest: Some(digest(90)),
        pepper_version: 1,
        secret_hint: Some("gthc_live_…abcd".into()),
        public_jwk: None,
        token_format: "opaque".into(),
        scopes: vec!["chat:invoke".into()],
        models: vec!["demo".into()],
        audiences: vec!["https://api.example".into()],
        access_ttl_secs: 600,
        tls_client_certificate_bound_access_tokens: false,
        revoked_at: None,
        created_at: now_us(),
    }
}

fn issued(app: &App, kind: &str, seed: u8, client_id: Option<Id>, parent: Option<Id>) -> IssuedToken {
    IssuedToken {
        id: new_id(),
        kind: kind.into(),
        digest: Some(digest(seed)),
        pepper_version: 1,
        hint: "gtha_live_…abcd".into(),
        team_id: app.team_id,
        app_id: app.id,
        client_id,
        subject: "svc".into(),
        parent_id: parent,
        scopes: vec!["chat:invoke".into()],
        models: vec![],
        audience: Some("https://api.example".into()),
        max_tokens: Some(100),
        max_spend_micros: None,
        act: Some(r#"{"sub":"svc"}"#.into()),
        binding_jkt: None,
        binding_x5t: None,
        expires_at: now_us() + Duration::minutes(10),
        consumed_at: None,
        revoked_at: None,
        created_at: now_us(),
    }
}

async fn oauth_clients_round_trip_and_revoke_cascades(s: Arc<dyn Store>) {
    let (_, app) = seed_app(&s).await;
    let c = client(&app);
    s.create_oauth_client(&c).await.unwrap();
    assert_conflict(s.create_oauth_client(&c).await);
    assert_eq!(s.get_oauth_client(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(s.list_oauth_clients(false).await.unwrap(), vec![c.clone()]);
    let t = issued(&app, "access", 1, Some(c.id), None);
    s.create_issued_token(&t).await.unwrap();
    let at = now_us();
    assert!(s.revoke_oauth_client(c.id, at).await.unwrap());
    assert!(!s.revoke_oauth_client(new_id(), at).await.unwrap());
    assert!(s.list_oauth_clients(false).await.unwrap().is_empty());
    assert_eq!(s.list_oauth_clients(true).await.unwrap().len(), 1);
    assert_eq!(s.get_issued_token(t.id).await.unwrap().unwrap().revoked_at, Some(at));
    let revoked = s.list_revoked_ids(at - Duration::seconds(1)).await.unwrap();
    assert!(revoked.contains(&c.id) && revoked.contains(&t.id), "{revoked:?}");
    assert!(s.list_revoked_ids(at + Duration::seconds(1)).await.unwrap().is_empty());
}
store_test!(oauth_clients_round_trip_and_revoke_cascades);

async fn issued_tokens_by_digest_and_parent_revocation(s: Arc<dyn Store>) {
    let (_, app) = seed_app(&s).await;
    let parent = issued(&app, "access", 2, None, None);
    let child = issued(&app, "access", 3, None, Some(parent.id));
    let mut jwt = issued(&app, "jwt", 0, None, None);
    jwt.digest = None;
    let mut jwt2 = jwt.clone();
    jwt2.id = new_id();
    for t in [&parent, &child, &jwt, &jwt2] {
        s.create_issued_token(t).await.unwrap();
    }
    assert_conflict(s.create_issued_token(&parent).await);
    assert_eq!(s.find_issued_token(&digest(3)).await.unwrap(), Some(child.clone()));
    assert_eq!(s.find_issued_token(&digest(99)).await.unwrap(), None);
    assert_eq!(s.get_issued_token(jwt.id).await.unwrap(), Some(jwt.clone()));
    let at = now_us();
    assert!(s.revoke_issued_token(parent.id, at).await.unwrap());
    assert_eq!(s.get_issued_token(child.id).await.unwrap().unwrap().revoked_at, Some(at));
    // Revoking again keeps the first instant.
    assert!(s.revoke_issued_token(parent.id, at + Duration::seconds(5)).await.unwrap());
    assert_eq!(s.get_issued_token(parent.id).await.unwrap().unwrap().revoked_at, Some(at));
    assert!(!s.revoke_issued_token(new_id(), at).await.unwrap());
    assert_eq!(s.get_issued_token(jwt2.id).await.unwrap().unwrap().revoked_at, None);
}
store_test!(issued_tokens_by_digest_and_parent_revocation);

/// RFC 8705 (T30): the certificate-bound client flag, a token's `x5t#S256` binding and an API
/// key's certificate binding are stored and read back by every lookup.
async fn mtls_bindings_round_trip(s: Arc<dyn Store>) {
    const X5T: &str = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2";
    let (_, app) = seed_app(&s).await;
    let mut c = client(&app);
    c.tls_client_certificate_bound_access_tokens = true;
    s.create_oauth_client(&c).await.unwrap();
    assert!(s.get_oauth_client(c.id).await.unwrap().unwrap().tls_client_certificate_bound_access_tokens);
    assert!(s.list_oauth_clients(false).await.unwrap()[0].tls_client_certificate_bound_access_tokens);
    let plain = client(&app);
    s.create_oauth_client(&plain).await.unwrap();
    assert!(!s.get_oauth_client(plain.id).await.unwrap().unwrap().tls_client_certificate_bound_access_tokens);

    let mut t = issued(&app, "access", 40, Some(c.id), None);
    t.binding_x5t = Some(X5T.into());
    s.create_issued_token(&t).await.unwrap();
    assert_eq!(s.find_issued_token(&digest(40)).await.unwrap().unwrap().binding_x5t.as_deref(), Some(X5T));
    assert_eq!(s.get_issued_token(t.id).await.unwrap(), Some(t.clone()));
    let mut single = issued(&app, "single_use", 41, Some(c.id), None);
    single.binding_x5t = Some(X5T.into());
    s.create_issued_token(&single).await.unwrap();
    assert_eq!(s.consume_single_use(&digest(41)).await.unwrap().unwrap().binding_x5t.as_deref(), Some(X5T));

    let mut key = super::credential(&app, 42);
    key.security.mtls_x5t = Some(X5T.into());
    s.create_credential(&key).await.unwrap();
    assert_eq!(s.get_credential(key.id).await.unwrap().unwrap().security.mtls_x5t.as_deref(), Some(X5T));
    assert_eq!(s.find_credential(&key.digest).await.unwrap().unwrap().security.mtls_x5t.as_deref(), Some(X5T));
}
store_test!(mtls_bindings_round_trip);

async fn single_use_is_consumed_exactly_once_under_50_concurrent_attempts(s: Arc<dyn Store>) {
    let (_, app) = seed_app(&s).await;
    let t = issued(&app, "single_use", 7, None, None);
    s.create_issued_token(&t).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.consume_single_use(&digest(7)).await.unwrap() }));
    }
    let mut wins = 0;
    for task in tasks {
        if let Some(row) = task.await.unwrap() {
            wins += 1;
            assert_eq!(row.id, t.id);
            assert!(row.consumed_at.is_some());
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.consume_single_use(&digest(7)).await.unwrap(), None);
}
store_test!(single_use_is_consumed_exactly_once_under_50_concurrent_attempts);

async fn single_use_refuses_expired_revoked_and_other_kinds(s: Arc<dyn Store>) {
    let (_, app) = seed_app(&s).await;
    let mut expired = issued(&app, "single_use", 10, None, None);
    expired.expires_at = now_us() - Duration::seconds(1);
    let revoked = issued(&app, "single_use", 11, None, None);
    let access = issued(&app, "access", 12, None, None);
    for t in [&expired, &revoked, &access] {
        s.create_issued_token(t).await.unwrap();
    }
    s.revoke_issued_token(revoked.id, now_us()).await.unwrap();
    for d in [10, 11, 12, 13] {
        assert_eq!(s.consume_single_use(&digest(d)).await.unwrap(), None, "seed {d}");
    }
}
store_test!(single_use_refuses_expired_revoked_and_other_kinds);

/// Issue 5: the spend cap of a token round-trips through create, get, find and single-use
/// consumption (migration 0090), absent stays absent.
async fn issued_token_spend_cap_round_trips(s: Arc<dyn Store>) {
    let (_, app) = seed_app(&s).await;
    let mut capped = issued(&app, "access", 20, None, None);
    capped.max_spend_micros = Some(1_250_000);
    let mut su = issued(&app, "single_use", 21, None, Some(capped.id));
    su.max_spend_micros = Some(7);
    let plain = issued(&app, "access", 22, None, None);
    for t in [&capped, &su, &plain] {
        s.create_issued_token(t).await.unwrap();
    }
    assert_eq!(s.get_issued_token(capped.id).await.unwrap().unwrap().max_spend_micros, Some(1_250_000));
    assert_eq!(s.find_issued_token(&digest(20)).await.unwrap().unwrap().max_spend_micros, Some(1_250_000));
    assert_eq!(s.get_issued_token(plain.id).await.unwrap().unwrap().max_spend_micros, None);
    assert_eq!(s.consume_single_use(&digest(21)).await.unwrap().unwrap().max_spend_micros, Some(7));
}
store_test!(issued_token_spend_cap_round_trips);

async fn signing_keys_and_jti_replay(s: Arc<dyn Store>) {
    let key = |kid: &str, offset: i64| SigningKey {
        kid: kid.into(),
        alg: "ES256".into(),
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        format_version: 1,
        kek_id: "local:v1".into(),
        wrapped_dek: vec![1; 40],
        nonce: vec![2; 12],
        ciphertext: vec![3; 60],
        sign_from: now_us() + Duration::seconds(offset),
        retire_at: None,
        created_at: now_us(),
    };
    let old = key("old", -100);
    let new = key("new", 0);
    s.create_signing_key(&old).await.unwrap();
    s.create_signing_key(&new).await.unwrap();
    assert_conflict(s.create_signing_key(&new).await);
    assert_eq!(s.list_signing_keys().await.unwrap(), vec![new.clone(), old.clone()]);
    let at = now_us() + Duration::minutes(15);
    assert!(s.retire_signing_key("old", at).await.unwrap());
    assert!(s.retire_signing_key("old", at + Duration::minutes(1)).await.unwrap());
    assert!(!s.retire_signing_key("nope", at).await.unwrap());
    assert_eq!(s.list_signing_keys().await.unwrap()[1].retire_at, Some(at));

    let exp = now_us() + Duration::minutes(5);
    assert!(s.record_jti(&digest(1), exp).await.unwrap());
    assert!(!s.record_jti(&digest(1), exp).await.unwrap());
    assert!(s.record_jti(&digest(2), exp).await.unwrap());
    // An expired record is purged, so the key may be recorded again.
    assert!(s.record_jti(&digest(3), now_us() - Duration::seconds(1)).await.unwrap());
    assert!(s.record_jti(&digest(3), exp).await.unwrap());
}
store_test!(signing_keys_and_jti_replay);

/// Issue 7 (app deletion): every unrevoked issued token of the app is revoked at once, whatever
/// obtained it; other apps' tokens and earlier revocation instants stay.
async fn app_tokens_are_revoked_together(s: Arc<dyn Store>) {
    let (_, a) = seed_app(&s).await;
    let other = app(a.team_id, "other-app");
    s.create_app(&other).await.unwrap();
    let c = client(&a);
    s.create_oauth_client(&c).await.unwrap();
    let from_client = issued(&a, "access", 61, Some(c.id), None);
    let single_use = issued(&a, "single_use", 62, None, None);
    let old = issued(&a, "access", 63, None, None);
    let foreign = issued(&other, "access", 64, None, None);
    for t in [&from_client, &single_use, &old, &foreign] {
        s.create_issued_token(t).await.unwrap();
    }
    let earlier = now_us() - Duration::minutes(1);
    assert!(s.revoke_issued_token(old.id, earlier).await.unwrap());
    let at = now_us();
    let mut ids = s.revoke_app_tokens(a.id, at).await.unwrap();
    ids.sort();
    let mut want = vec![from_client.id, single_use.id];
    want.sort();
    assert_eq!(ids, want);
    for t in [&from_client, &single_use] {
        assert_eq!(s.get_issued_token(t.id).await.unwrap().unwrap().revoked_at, Some(at));
    }
    assert_eq!(s.get_issued_token(old.id).await.unwrap().unwrap().revoked_at, Some(earlier));
    assert_eq!(s.get_issued_token(foreign.id).await.unwrap().unwrap().revoked_at, None);
    assert!(s.revoke_app_tokens(a.id, at).await.unwrap().is_empty(), "idempotent");
}
store_test!(app_tokens_are_revoked_together);

/// Issue 5, M2: keys, OAuth clients and issued tokens created concurrently with an app's deletion
/// never outlive it. Each create either lands before the delete (and the revocation sweep that
/// follows the delete sees it) or is refused with `NotFound`; afterwards nothing of the app is
/// live. Creates after the delete are refused deterministically.
async fn m2_creates_racing_app_delete_leave_nothing_live(s: Arc<dyn Store>) {
    let (_, a) = seed_app(&s).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(25));
    let mut tasks = Vec::new();
    for i in 0..24u8 {
        let (s, barrier, a) = (s.clone(), barrier.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = match i % 3 {
                0 => s.create_credential(&credential(&a, 100 + i)).await,
                1 => {
                    let mut c = client(&a);
                    c.secret_digest = Some(digest(100 + i));
                    s.create_oauth_client(&c).await
                }
                _ => s.create_issued_token(&issued(&a, "single_use", 100 + i, None, None)).await,
            };
            match r {
                Ok(()) => true,
                Err(StoreError::NotFound(_)) => false,
                Err(e) => panic!("create racing a delete: {e}"),
            }
        }));
    }
    barrier.wait().await;
    let at = now_us();
    assert!(s.delete_app(a.id, at).await.unwrap());
    // the service's sweep after the delete (admin `delete_app`)
    let live_keys = CredentialFilter { team_id: None, app_id: Some(a.id), include_revoked: false };
    for k in s.list_credentials(&live_keys).await.unwrap() {
        s.revoke_credential(k.id, at).await.unwrap();
    }
    for c in s.list_oauth_clients(false).await.unwrap().iter().filter(|c| c.app_id == a.id) {
        s.revoke_oauth_client(c.id, at).await.unwrap();
    }
    s.revoke_app_tokens(a.id, at).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(s.list_credentials(&live_keys).await.unwrap().is_empty(), "a key outlived its app");
    assert!(!s.list_oauth_clients(false).await.unwrap().iter().any(|c| c.app_id == a.id), "a client outlived its app");
    assert!(s.revoke_app_tokens(a.id, now_us()).await.unwrap().is_empty(), "a token outlived its app");
    // after the delete, every create is refused
    assert_not_found(s.create_credential(&credential(&a, 200)).await);
    let mut c = client(&a);
    c.secret_digest = Some(digest(201));
    assert_not_found(s.create_oauth_client(&c).await);
    assert_not_found(s.create_issued_token(&issued(&a, "access", 202, None, None)).await);
}
store_test!(m2_creates_racing_app_delete_leave_nothing_live);
