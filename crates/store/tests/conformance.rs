//! Store conformance suite: every test runs against SQLite (a fresh file in a temp dir, always)
//! and PostgreSQL (a fresh schema `gh_<random>` per test, only when
//! `GATEHOUSE_TEST_DATABASE_URL` is set; otherwise the test prints
//! `skipped: <name> (GATEHOUSE_TEST_DATABASE_URL not set)` and passes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use gatehouse_store::{
    App, CallLog, CallLogQuery, Credential, CredentialFilter, Deployment, Model, OperatorToken,
    PostgresStore, Provider, ProviderCredential, SqliteStore, Store, StoreError, Team, User,
};
use gatehouse_types::{Id, Timestamp, new_id};
use sqlx::postgres::PgConnectOptions;
use time::Duration;

const PG_ENV: &str = "GATEHOUSE_TEST_DATABASE_URL";

// ---------------------------------------------------------------------------------------------
// harness

enum Backend {
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        url: String,
        schema: String,
        store: PostgresStore,
    },
}

/// One test's private database; removed by `finish` (or on drop, if the test panicked).
struct TestDb {
    store: Arc<dyn Store>,
    backend: Option<Backend>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("gatehouse-store-{}", new_id().simple()));
        let url = format!("sqlite://{}", dir.join("nested/gatehouse.db").display());
        let store = gatehouse_store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        TestDb {
            store,
            backend: Some(Backend::Sqlite { dir }),
        }
    }

    /// `None` (after printing the skip line) when the env var is unset.
    async fn postgres(test_name: &str) -> Option<TestDb> {
        let Ok(url) = std::env::var(PG_ENV) else {
            println!("skipped: {test_name} ({PG_ENV} not set)");
            return None;
        };
        let schema = format!("gh_{}", new_id().simple());
        admin_exec(&url, &format!("CREATE SCHEMA {schema}")).await;
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = PostgresStore::connect_with(options).await.unwrap();
        store.migrate().await.unwrap();
        Some(TestDb {
            store: Arc::new(store.clone()),
            backend: Some(Backend::Postgres { url, schema, store }),
        })
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn finish(mut self) {
        if let Some(backend) = self.backend.take() {
            cleanup(backend).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Reached with a backend only when the test panicked: clean up on a fresh runtime.
        if let Some(backend) = self.backend.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(cleanup(backend));
                }
            })
            .join();
        }
    }
}

async fn cleanup(backend: Backend) {
    match backend {
        Backend::Sqlite { dir } => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Backend::Postgres { url, schema, store } => {
            store.pool().close().await;
            admin_exec(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }
}

/// Runs one statement on a fresh connection to the test database (schema DDL only).
async fn admin_exec(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Stamps `async fn NAME(store: Arc<dyn Store>)` as `NAME::sqlite` and `NAME::postgres`.
macro_rules! store_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::$name(db.store()).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) =
                    super::TestDb::postgres(concat!(stringify!($name), "::postgres")).await
                else {
                    return;
                };
                super::$name(db.store()).await;
                db.finish().await;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// fixtures

/// Now, truncated to what both backends store (microseconds).
fn now_us() -> Timestamp {
    let t = gatehouse_types::now();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap()
}

fn team(name: &str) -> Team {
    Team {
        id: new_id(),
        name: name.into(),
        created_at: now_us(),
    }
}

fn app(team_id: Id, name: &str) -> App {
    App {
        id: new_id(),
        team_id,
        name: name.into(),
        created_at: now_us(),
    }
}

fn digest(seed: u8) -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn credential(app: &App, seed: u8) -> Credential {
    Credential {
        id: new_id(),
        team_id: app.team_id,
        app_id: app.id,
        name: format!("key-{seed}"),
        digest: digest(seed),
        pepper_version: 1,
        hint: format!("gthk_live_…{seed:04}"),
        models: vec!["demo".into(), "gpt-4o".into()],
        scopes: vec!["chat:invoke".into()],
        expires_at: Some(now_us() + Duration::days(90)),
        revoked_at: None,
        last_used_at: None,
        created_at: now_us(),
        security: Default::default(),
    }
}

fn provider(name: &str) -> Provider {
    Provider {
        id: new_id(),
        name: name.into(),
        kind: "openai".into(),
        base_url: format!("http://127.0.0.1:9/{name}/v1"),
        settings: serde_json::json!({"headers": {"x-extra": "1"}}),
        created_at: now_us(),
    }
}

fn provider_credential(provider_id: Id, team_id: Id, priority: i32) -> ProviderCredential {
    ProviderCredential {
        id: new_id(),
        provider_id,
        team_id,
        hint: "sk-…abcd".into(),
        format_version: 1,
        kek_id: "local:v1".into(),
        wrapped_dek: vec![1; 60],
        nonce: vec![2; 12],
        ciphertext: vec![3; 40],
        priority,
        revoked_at: None,
        created_at: now_us(),
    }
}

fn deployment(provider_id: Id, upstream: &str, priority: i32) -> Deployment {
    Deployment {
        id: new_id(),
        provider_id,
        upstream_model: upstream.into(),
        weight: 1,
        priority,
    }
}

fn model(name: &str, deployments: Vec<Deployment>) -> Model {
    Model {
        id: new_id(),
        name: name.into(),
        deployments,
        created_at: now_us(),
    }
}

async fn seed_app(s: &Arc<dyn Store>) -> (Team, App) {
    let t = team("default");
    s.create_team(&t).await.unwrap();
    let a = app(t.id, "default");
    s.create_app(&a).await.unwrap();
    (t, a)
}

fn call_log(i: u64, at: Timestamp) -> CallLog {
    CallLog {
        id: new_id(),
        created_at: at,
        request_id: format!("req-{i}"),
        team_id: None,
        app_id: None,
        credential_id: None,
        endpoint: "POST /v1/chat/completions".into(),
        model: Some(if i.is_multiple_of(2) {
            "demo".into()
        } else {
            "other".into()
        }),
        provider: Some("mock".into()),
        upstream_model: Some("mock-gpt".into()),
        stream: i.is_multiple_of(3),
        status: if i.is_multiple_of(5) { 502 } else { 200 },
        error_code: if i.is_multiple_of(5) {
            Some("upstream_error".into())
        } else {
            None
        },
        latency_ms: 10 + i,
        upstream_latency_ms: Some(5 + i),
        ttft_ms: if i.is_multiple_of(3) { Some(3) } else { None },
        prompt_tokens: i,
        completion_tokens: 2 * i,
        cached_tokens: 0,
        upstream_request_id: Some(format!("up-{i}")),
        cache_write_tokens: i % 3,
        reasoning_tokens: i % 2,
        // Issue 4: NULL (model not in the catalog) and exact f64 values round-trip.
        cost_usd: if i.is_multiple_of(4) { None } else { Some(i as f64 * 0.000_123_456_789) },
        // Issue 6: attempts and the serving deployment round-trip (NULL deployment too).
        attempts: (i % 4) as u32,
        deployment: if i.is_multiple_of(2) { Some(format!("mock/dep-{i}")) } else { None },
        // Issue 6: answers served from the response cache are marked.
        cache_hit: i.is_multiple_of(7),
    }
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// tests

async fn migrate_twice_is_idempotent(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
    let t = team("kept");
    s.create_team(&t).await.unwrap();
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    assert_eq!(s.get_team(t.id).await.unwrap(), Some(t));
    s.ping().await.unwrap();
}
store_test!(migrate_twice_is_idempotent);

async fn settings(s: Arc<dyn Store>) {
    assert_eq!(s.get_setting("bootstrapped").await.unwrap(), None);
    s.set_setting("bootstrapped", "1").await.unwrap();
    assert_eq!(
        s.get_setting("bootstrapped").await.unwrap().as_deref(),
        Some("1")
    );
    s.set_setting("bootstrapped", "2").await.unwrap();
    assert_eq!(
        s.get_setting("bootstrapped").await.unwrap().as_deref(),
        Some("2")
    );
    s.set_setting("other", "x ' \" ; --").await.unwrap();
    assert_eq!(
        s.get_setting("other").await.unwrap().as_deref(),
        Some("x ' \" ; --")
    );
    assert_eq!(
        s.get_setting("bootstrapped").await.unwrap().as_deref(),
        Some("2")
    );
}
store_test!(settings);

async fn teams(s: Arc<dyn Store>) {
    let a = team("alpha");
    s.create_team(&a).await.unwrap();
    let mut b = team("beta");
    b.created_at = a.created_at + Duration::seconds(1);
    s.create_team(&b).await.unwrap();

    assert_eq!(s.get_team(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_team(new_id()).await.unwrap(), None);
    assert_eq!(s.get_team_by_name("beta").await.unwrap(), Some(b.clone()));
    assert_eq!(s.get_team_by_name("gamma").await.unwrap(), None);
    assert_eq!(
        s.list_teams().await.unwrap(),
        vec![b.clone(), a.clone()],
        "newest first"
    );

    assert_conflict(s.create_team(&team("alpha")).await);
    let mut same_id = team("delta");
    same_id.id = a.id;
    assert_conflict(s.create_team(&same_id).await);
    assert_eq!(s.list_teams().await.unwrap().len(), 2);
}
store_test!(teams);

async fn apps(s: Arc<dyn Store>) {
    let t1 = team("t1");
    let t2 = team("t2");
    s.create_team(&t1).await.unwrap();
    s.create_team(&t2).await.unwrap();
    let a1 = app(t1.id, "web");
    let mut a2 = app(t1.id, "cli");
    a2.created_at = a1.created_at + Duration::seconds(1);
    let a3 = app(t2.id, "web");
    for a in [&a1, &a2, &a3] {
        s.create_app(a).await.unwrap();
    }
    assert_eq!(s.get_app(a1.id).await.unwrap(), Some(a1.clone()));
    assert_eq!(s.get_app(new_id()).await.unwrap(), None);
    assert_eq!(
        s.list_apps(Some(t1.id)).await.unwrap(),
        vec![a2.clone(), a1.clone()]
    );
    assert_eq!(s.list_apps(Some(t2.id)).await.unwrap(), vec![a3.clone()]);
    assert_eq!(s.list_apps(None).await.unwrap().len(), 3);
    assert_eq!(s.list_apps(Some(new_id())).await.unwrap(), vec![]);

    assert_conflict(s.create_app(&app(t1.id, "web")).await);
    assert_not_found(s.create_app(&app(new_id(), "orphan")).await);
}
store_test!(apps);

async fn users(s: Arc<dyn Store>) {
    let u = User {
        id: new_id(),
        username: "admin".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        system_role: "admin".into(),
        created_at: now_us(),
    };
    s.create_user(&u).await.unwrap();
    assert_eq!(
        s.get_user_by_username("admin").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(s.get_user_by_username("Admin").await.unwrap(), None);
    let mut dup = u.clone();
    dup.id = new_id();
    assert_conflict(s.create_user(&dup).await);
}
store_test!(users);

async fn operator_tokens(s: Arc<dyn Store>) {
    let u = User {
        id: new_id(),
        username: "admin".into(),
        password_hash: "phc".into(),
        system_role: "admin".into(),
        created_at: now_us(),
    };
    s.create_user(&u).await.unwrap();
    let tok = OperatorToken {
        id: new_id(),
        user_id: u.id,
        name: "bootstrap".into(),
        digest: digest(9),
        pepper_version: 1,
        hint: "gtho_live_…wxyz".into(),
        expires_at: None,
        revoked_at: None,
        created_at: now_us(),
    };
    s.create_operator_token(&tok).await.unwrap();
    let mut tok2 = tok.clone();
    tok2.id = new_id();
    tok2.name = "second".into();
    tok2.digest = digest(10);
    tok2.expires_at = Some(now_us() + Duration::hours(1));
    tok2.created_at = tok.created_at + Duration::seconds(1);
    s.create_operator_token(&tok2).await.unwrap();

    assert_eq!(
        s.find_operator_token(&digest(9)).await.unwrap(),
        Some(tok.clone())
    );
    assert_eq!(s.find_operator_token(&digest(11)).await.unwrap(), None);
    assert_eq!(
        s.list_operator_tokens().await.unwrap(),
        vec![tok2.clone(), tok.clone()]
    );

    // duplicate digest, unknown user
    let mut dup = tok.clone();
    dup.id = new_id();
    assert_conflict(s.create_operator_token(&dup).await);
    let mut orphan = tok.clone();
    orphan.id = new_id();
    orphan.digest = digest(12);
    orphan.user_id = new_id();
    assert_not_found(s.create_operator_token(&orphan).await);

    // revoke: first time wins, again keeps the first time, unknown id is false
    let at = now_us();
    assert!(s.revoke_operator_token(tok.id, at).await.unwrap());
    assert!(
        s.revoke_operator_token(tok.id, at + Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(!s.revoke_operator_token(new_id(), at).await.unwrap());
    let found = s.find_operator_token(&digest(9)).await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(at));
    assert_eq!(
        s.find_operator_token(&digest(10))
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
}
store_test!(operator_tokens);

async fn credentials_create_get_find(s: Arc<dyn Store>) {
    let (_, a) = seed_app(&s).await;
    let c = credential(&a, 1);
    s.create_credential(&c).await.unwrap();
    assert_eq!(s.get_credential(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(s.get_credential(new_id()).await.unwrap(), None);
    assert_eq!(
        s.find_credential(&digest(1)).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(s.find_credential(&digest(2)).await.unwrap(), None);
    assert_eq!(
        s.find_credential(&digest(1)[..31]).await.unwrap(),
        None,
        "prefix must not match"
    );
    assert_eq!(s.find_credential(&[]).await.unwrap(), None);

    // empty lists and no expiry round-trip too
    let mut bare = credential(&a, 2);
    bare.models = vec![];
    bare.scopes = vec![];
    bare.expires_at = None;
    s.create_credential(&bare).await.unwrap();
    assert_eq!(s.find_credential(&digest(2)).await.unwrap(), Some(bare));

    // list values with quotes, commas and unicode survive
    let mut odd = credential(&a, 3);
    odd.models = vec![
        "a,b".into(),
        "q\"uote".into(),
        "{brace}".into(),
        "ünï".into(),
    ];
    s.create_credential(&odd).await.unwrap();
    assert_eq!(s.get_credential(odd.id).await.unwrap(), Some(odd));
}
store_test!(credentials_create_get_find);

async fn credentials_conflicts_and_references(s: Arc<dyn Store>) {
    let (t, a) = seed_app(&s).await;
    let c = credential(&a, 1);
    s.create_credential(&c).await.unwrap();

    let mut dup_digest = credential(&a, 1);
    dup_digest.name = "other".into();
    assert_conflict(s.create_credential(&dup_digest).await);
    let mut dup_id = credential(&a, 2);
    dup_id.id = c.id;
    assert_conflict(s.create_credential(&dup_id).await);

    let mut orphan_app = credential(&a, 3);
    orphan_app.app_id = new_id();
    assert_not_found(s.create_credential(&orphan_app).await);
    let mut orphan_team = credential(&a, 4);
    orphan_team.team_id = new_id();
    assert_not_found(s.create_credential(&orphan_team).await);

    let all = s
        .list_credentials(&CredentialFilter {
            team_id: Some(t.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all, vec![c]);
}
store_test!(credentials_conflicts_and_references);

async fn credentials_list_filters(s: Arc<dyn Store>) {
    let (t1, a1) = seed_app(&s).await;
    let a2 = app(t1.id, "second");
    s.create_app(&a2).await.unwrap();
    let t2 = team("t2");
    s.create_team(&t2).await.unwrap();
    let a3 = app(t2.id, "third");
    s.create_app(&a3).await.unwrap();

    let base = now_us();
    let mut made = vec![];
    for (i, a) in [&a1, &a1, &a2, &a3].into_iter().enumerate() {
        let mut c = credential(a, i as u8 + 1);
        c.created_at = base + Duration::seconds(i as i64);
        s.create_credential(&c).await.unwrap();
        made.push(c);
    }
    assert!(s.revoke_credential(made[1].id, base).await.unwrap());
    made[1].revoked_at = Some(base);

    let ids = |v: Vec<Credential>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let all = s
        .list_credentials(&CredentialFilter {
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(all),
        vec![made[3].id, made[2].id, made[1].id, made[0].id],
        "newest first"
    );
    let active = s
        .list_credentials(&CredentialFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(active), vec![made[3].id, made[2].id, made[0].id]);
    let team1 = s
        .list_credentials(&CredentialFilter {
            team_id: Some(t1.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(team1), vec![made[2].id, made[0].id]);
    let app1 = s
        .list_credentials(&CredentialFilter {
            app_id: Some(a1.id),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(app1, vec![made[1].clone(), made[0].clone()]);
    let mismatch = s
        .list_credentials(&CredentialFilter {
            team_id: Some(t2.id),
            app_id: Some(a1.id),
            include_revoked: true,
        })
        .await
        .unwrap();
    assert!(mismatch.is_empty());
}
store_test!(credentials_list_filters);

async fn credential_revoke_semantics(s: Arc<dyn Store>) {
    let (_, a) = seed_app(&s).await;
    let c = credential(&a, 1);
    s.create_credential(&c).await.unwrap();
    let at = now_us();
    assert!(s.revoke_credential(c.id, at).await.unwrap());
    let got = s.get_credential(c.id).await.unwrap().unwrap();
    assert_eq!(got.revoked_at, Some(at));
    // still found by digest (the data plane decides what revoked means)
    assert_eq!(
        s.find_credential(&c.digest)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at)
    );
    // revoking again keeps the first time and still reports the credential exists
    assert!(
        s.revoke_credential(c.id, at + Duration::days(1))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_credential(c.id).await.unwrap().unwrap().revoked_at,
        Some(at)
    );
    assert!(!s.revoke_credential(new_id(), at).await.unwrap());
    // nothing else changed
    let mut expected = c.clone();
    expected.revoked_at = Some(at);
    assert_eq!(got, expected);
}
store_test!(credential_revoke_semantics);

async fn touch_credentials(s: Arc<dyn Store>) {
    let (_, a) = seed_app(&s).await;
    let c1 = credential(&a, 1);
    let c2 = credential(&a, 2);
    s.create_credential(&c1).await.unwrap();
    s.create_credential(&c2).await.unwrap();
    s.touch_credentials(&[]).await.unwrap();

    let t0 = now_us();
    let t1 = t0 + Duration::seconds(5);
    s.touch_credentials(&[(c1.id, t0), (c2.id, t1), (new_id(), t1), (c1.id, t1)])
        .await
        .unwrap();
    assert_eq!(
        s.get_credential(c1.id).await.unwrap().unwrap().last_used_at,
        Some(t1)
    );
    assert_eq!(
        s.get_credential(c2.id).await.unwrap().unwrap().last_used_at,
        Some(t1)
    );

    // an older use reported late never moves last_used_at back
    s.touch_credentials(&[(c1.id, t0)]).await.unwrap();
    assert_eq!(
        s.get_credential(c1.id).await.unwrap().unwrap().last_used_at,
        Some(t1)
    );
    let t2 = t1 + Duration::minutes(1);
    s.touch_credentials(&[(c1.id, t2)]).await.unwrap();
    let got = s.get_credential(c1.id).await.unwrap().unwrap();
    assert_eq!(got.last_used_at, Some(t2));
    assert_eq!(got.revoked_at, None);
}
store_test!(touch_credentials);

async fn providers_upsert(s: Arc<dyn Store>) {
    let p = provider("openai");
    let stored = s.upsert_provider(&p).await.unwrap();
    assert_eq!(stored, p);
    assert_eq!(s.get_provider(p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(
        s.get_provider_by_name("openai").await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(s.get_provider_by_name("nope").await.unwrap(), None);
    assert_eq!(s.get_provider(new_id()).await.unwrap(), None);

    // update by name: the id and created_at are kept, the rest replaced
    let mut changed = provider("openai");
    changed.kind = "anthropic".into();
    changed.base_url = "https://api.example.com".into();
    changed.settings = serde_json::json!({"k": [1, 2, {"n": null}]});
    changed.created_at = p.created_at + Duration::days(1);
    let stored = s.upsert_provider(&changed).await.unwrap();
    assert_eq!(stored.id, p.id);
    assert_eq!(stored.created_at, p.created_at);
    assert_eq!(stored.kind, "anthropic");
    assert_eq!(stored.base_url, "https://api.example.com");
    assert_eq!(stored.settings, changed.settings);
    assert_eq!(s.get_provider(p.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(s.get_provider(changed.id).await.unwrap(), None);

    let mut q = provider("mock");
    q.created_at = p.created_at + Duration::seconds(1);
    s.upsert_provider(&q).await.unwrap();
    let names: Vec<_> = s
        .list_providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["mock", "openai"]);

    // a new name with an existing id is a conflict
    let mut clash = provider("third");
    clash.id = p.id;
    assert_conflict(s.upsert_provider(&clash).await);
}
store_test!(providers_upsert);

async fn provider_credentials(s: Arc<dyn Store>) {
    let (t, _) = seed_app(&s).await;
    let p = s.upsert_provider(&provider("openai")).await.unwrap();
    let other = s.upsert_provider(&provider("other")).await.unwrap();
    let base = now_us();
    let mut low_old = provider_credential(p.id, t.id, 0);
    low_old.created_at = base;
    let mut low_new = provider_credential(p.id, t.id, 0);
    low_new.created_at = base + Duration::seconds(1);
    let mut high = provider_credential(p.id, t.id, 5);
    high.created_at = base + Duration::seconds(2);
    let elsewhere = provider_credential(other.id, t.id, 0);
    for c in [&high, &low_old, &low_new, &elsewhere] {
        s.create_provider_credential(c).await.unwrap();
    }
    assert_eq!(
        s.list_provider_credentials(p.id).await.unwrap(),
        vec![low_new.clone(), low_old.clone(), high.clone()],
        "priority ascending, then newest"
    );
    assert!(
        s.revoke_provider_credential(low_new.id, base)
            .await
            .unwrap()
    );
    assert!(
        s.revoke_provider_credential(low_new.id, base + Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(!s.revoke_provider_credential(new_id(), base).await.unwrap());
    assert_eq!(
        s.list_provider_credentials(p.id).await.unwrap(),
        vec![low_old, high]
    );
    assert_eq!(s.list_provider_credentials(new_id()).await.unwrap(), vec![]);

    assert_not_found(
        s.create_provider_credential(&provider_credential(new_id(), t.id, 0))
            .await,
    );
    let mut dup = provider_credential(p.id, t.id, 0);
    dup.id = elsewhere.id;
    assert_conflict(s.create_provider_credential(&dup).await);
}
store_test!(provider_credentials);

async fn models_upsert_and_replace(s: Arc<dyn Store>) {
    let p1 = s.upsert_provider(&provider("p1")).await.unwrap();
    let p2 = s.upsert_provider(&provider("p2")).await.unwrap();
    let m = model(
        "demo",
        vec![deployment(p1.id, "gpt-a", 0), deployment(p2.id, "gpt-b", 1)],
    );
    let stored = s.upsert_model(&m).await.unwrap();
    assert_eq!(stored, m);
    assert_eq!(s.get_model("demo").await.unwrap(), Some(m.clone()));
    assert_eq!(s.get_model("nope").await.unwrap(), None);

    // replace: same name, other deployments; the model keeps its id and created_at
    let mut replacement = model("demo", vec![deployment(p2.id, "gpt-c", 0)]);
    replacement.created_at = m.created_at + Duration::days(1);
    let stored = s.upsert_model(&replacement).await.unwrap();
    assert_eq!(stored.id, m.id);
    assert_eq!(stored.created_at, m.created_at);
    assert_eq!(stored.deployments, replacement.deployments);
    assert_eq!(s.get_model("demo").await.unwrap(), Some(stored.clone()));

    // a failing replacement (unknown provider) leaves the previous deployments in place
    let bad = model(
        "demo",
        vec![
            deployment(p1.id, "fine", 0),
            deployment(new_id(), "broken", 1),
        ],
    );
    assert_not_found(s.upsert_model(&bad).await);
    assert_eq!(s.get_model("demo").await.unwrap(), Some(stored.clone()));
    // a failing new model leaves nothing behind
    assert_not_found(
        s.upsert_model(&model("ghost", vec![deployment(new_id(), "x", 0)]))
            .await,
    );
    assert_eq!(s.get_model("ghost").await.unwrap(), None);

    // a model with no deployments is allowed; list is ordered by name
    let empty = model("alpha", vec![]);
    s.upsert_model(&empty).await.unwrap();
    let names: Vec<_> = s
        .list_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, vec!["alpha", "demo"]);
    assert_eq!(s.list_models().await.unwrap()[1], stored);

    // deployment order is kept as given
    let ordered = model(
        "ordered",
        vec![
            deployment(p2.id, "z", 9),
            deployment(p1.id, "a", 0),
            deployment(p2.id, "m", 3),
        ],
    );
    assert_eq!(
        s.upsert_model(&ordered).await.unwrap().deployments,
        ordered.deployments
    );

    assert!(s.delete_model("demo").await.unwrap());
    assert!(!s.delete_model("demo").await.unwrap());
    assert_eq!(s.get_model("demo").await.unwrap(), None);
    // the name can be used again
    s.upsert_model(&model("demo", vec![deployment(p1.id, "again", 0)]))
        .await
        .unwrap();
}
store_test!(models_upsert_and_replace);

async fn provider_delete_cascades(s: Arc<dyn Store>) {
    let (t, _) = seed_app(&s).await;
    let gone = s.upsert_provider(&provider("gone")).await.unwrap();
    let kept = s.upsert_provider(&provider("kept")).await.unwrap();
    let cred = provider_credential(gone.id, t.id, 0);
    s.create_provider_credential(&cred).await.unwrap();
    let kept_cred = provider_credential(kept.id, t.id, 0);
    s.create_provider_credential(&kept_cred).await.unwrap();
    let keep_dep = deployment(kept.id, "k", 1);
    s.upsert_model(&model(
        "mixed",
        vec![deployment(gone.id, "g", 0), keep_dep.clone()],
    ))
    .await
    .unwrap();
    s.upsert_model(&model("only-gone", vec![deployment(gone.id, "g", 0)]))
        .await
        .unwrap();

    assert!(s.delete_provider(gone.id).await.unwrap());
    assert!(!s.delete_provider(gone.id).await.unwrap());
    assert_eq!(s.get_provider(gone.id).await.unwrap(), None);
    assert_eq!(s.get_provider_by_name("gone").await.unwrap(), None);
    assert_eq!(s.list_provider_credentials(gone.id).await.unwrap(), vec![]);
    assert_eq!(
        s.list_provider_credentials(kept.id).await.unwrap(),
        vec![kept_cred]
    );
    assert_eq!(
        s.get_model("mixed").await.unwrap().unwrap().deployments,
        vec![keep_dep]
    );
    // the model itself stays, without deployments
    assert_eq!(
        s.get_model("only-gone").await.unwrap().unwrap().deployments,
        vec![]
    );
    // the name is free again; the credential id too (row really gone)
    s.upsert_provider(&provider("gone")).await.unwrap();
    let mut again = cred.clone();
    again.provider_id = kept.id;
    s.create_provider_credential(&again).await.unwrap();
}
store_test!(provider_delete_cascades);

/// `call_usage` (h5seed): sums per (team, app, credential, model) since the month start, the
/// day part separately, older rows left out, cost in micros (no price = 0).
async fn call_usage_sums_windows(s: Arc<dyn Store>) {
    let now = now_us();
    let (month_start, day_start) = (now - Duration::days(3), now - Duration::hours(2));
    let team = new_id();
    let (key, token) = (new_id(), new_id());
    let mk = |i: u64, at: Timestamp, cred: Id, model: &str, cost: Option<f64>| {
        let mut l = call_log(i, at);
        l.team_id = Some(team);
        l.app_id = Some(team);
        l.credential_id = Some(cred);
        l.model = Some(model.into());
        l.cost_usd = cost;
        l
    };
    s.insert_call_logs(&[
        mk(1, now - Duration::days(4), key, "demo", Some(1.0)), // before the month: ignored
        mk(2, now - Duration::days(1), key, "demo", Some(0.25)), // month only: 6 tokens
        mk(3, now - Duration::hours(1), key, "demo", Some(0.000_001)), // month + day: 9 tokens
        mk(4, now - Duration::minutes(5), key, "other", None), // other model, no price
        mk(5, now - Duration::minutes(1), token, "demo", Some(0.5)),
    ])
    .await
    .unwrap();
    let mut got: Vec<_> = s
        .call_usage(month_start, day_start)
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.team_id == Some(team))
        .map(|u| {
            assert_eq!(u.app_id, Some(team));
            (u.credential_id.unwrap() == token, u.model.unwrap(), u.tokens_month, u.tokens_day, u.cost_micros_month, u.cost_micros_day)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (false, "demo".to_string(), 15, 9, 250_001, 1),
            (false, "other".to_string(), 12, 12, 0, 0),
            (true, "demo".to_string(), 15, 15, 500_000, 500_000),
        ]
    );
}
store_test!(call_usage_sums_windows);

async fn call_logs_batch_and_filters(s: Arc<dyn Store>) {
    s.insert_call_logs(&[]).await.unwrap();
    let base = now_us() - Duration::hours(1);
    let cred = new_id();
    let app_id = new_id();
    let team_id = new_id();
    let mut logs: Vec<CallLog> = (0..40)
        .map(|i| {
            let mut l = call_log(i, base + Duration::seconds(i as i64));
            if i < 10 {
                l.credential_id = Some(cred);
                l.app_id = Some(app_id);
                l.team_id = Some(team_id);
            }
            l
        })
        .collect();
    logs[7].model = None;
    logs[7].upstream_latency_ms = None;
    logs[8].prompt_tokens = u64::from(u32::MAX) * 4;
    s.insert_call_logs(&logs).await.unwrap();

    let all = s.query_call_logs(&CallLogQuery::default()).await.unwrap();
    let mut expected = logs.clone();
    expected.reverse();
    assert_eq!(all, expected, "newest first, every field round-trips");

    let q = |f: fn(&mut CallLogQuery)| {
        let mut q = CallLogQuery::default();
        f(&mut q);
        q
    };
    let ids = |v: &[CallLog]| v.iter().map(|l| l.request_id.clone()).collect::<Vec<_>>();
    let by_cred = s
        .query_call_logs(&CallLogQuery {
            credential_id: Some(cred),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_cred.len(), 10);
    assert!(by_cred.iter().all(|l| l.credential_id == Some(cred)));
    let by_app = s
        .query_call_logs(&CallLogQuery {
            app_id: Some(app_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_app, by_cred);
    let by_team = s
        .query_call_logs(&CallLogQuery {
            team_id: Some(team_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_team, by_cred);
    let demo = s
        .query_call_logs(&q(|q| q.model = Some("demo".into())))
        .await
        .unwrap();
    assert_eq!(demo.len(), 20);
    assert!(demo.iter().all(|l| l.model.as_deref() == Some("demo")));
    let errors = s
        .query_call_logs(&q(|q| q.errors_only = true))
        .await
        .unwrap();
    assert_eq!(
        ids(&errors),
        vec![
            "req-35", "req-30", "req-25", "req-20", "req-15", "req-10", "req-5", "req-0"
        ]
    );
    let ok = s
        .query_call_logs(&q(|q| q.status = Some(200)))
        .await
        .unwrap();
    assert_eq!(ok.len(), 32);
    let none = s
        .query_call_logs(&q(|q| q.status = Some(404)))
        .await
        .unwrap();
    assert!(none.is_empty());
    let window = s
        .query_call_logs(&CallLogQuery {
            since: Some(base + Duration::seconds(10)),
            until: Some(base + Duration::seconds(15)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&window),
        vec!["req-14", "req-13", "req-12", "req-11", "req-10"],
        "since inclusive, until exclusive"
    );
    let combined = s
        .query_call_logs(&CallLogQuery {
            model: Some("demo".into()),
            errors_only: true,
            credential_id: Some(cred),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&combined), vec!["req-0"]);
    let injection = s
        .query_call_logs(&q(|q| q.model = Some("demo' OR '1'='1".into())))
        .await
        .unwrap();
    assert!(injection.is_empty());

    // limits: clamped to 1..=1000, default 100
    assert_eq!(
        s.query_call_logs(&q(|q| q.limit = Some(0)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.query_call_logs(&q(|q| q.limit = Some(3)))
            .await
            .unwrap()
            .len(),
        3
    );
}
store_test!(call_logs_batch_and_filters);

async fn call_logs_keyset_paging(s: Arc<dyn Store>) {
    let base = now_us() - Duration::hours(1);
    // 1,234 rows (more than one insert chunk), with ties on created_at to exercise the id order
    let logs: Vec<CallLog> = (0..1234)
        .map(|i| call_log(i, base + Duration::seconds((i / 3) as i64)))
        .collect();
    s.insert_call_logs(&logs).await.unwrap();

    assert_eq!(
        s.query_call_logs(&CallLogQuery::default())
            .await
            .unwrap()
            .len(),
        100
    );
    assert_eq!(
        s.query_call_logs(&CallLogQuery {
            limit: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1000
    );

    let mut seen = vec![];
    let mut before = None;
    loop {
        let page = s
            .query_call_logs(&CallLogQuery {
                before,
                limit: Some(97),
                model: None,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|l| l.id);
        seen.extend(page);
    }
    assert_eq!(seen.len(), logs.len());
    for w in seen.windows(2) {
        assert!(
            (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id),
            "strictly newest first"
        );
    }
    let mut expected_ids: Vec<Id> = logs.iter().map(|l| l.id).collect();
    expected_ids.sort();
    let mut seen_ids: Vec<Id> = seen.iter().map(|l| l.id).collect();
    seen_ids.sort();
    assert_eq!(seen_ids, expected_ids, "every row exactly once");

    // paging combines with filters
    let mut filtered = vec![];
    let mut before = None;
    loop {
        let page = s
            .query_call_logs(&CallLogQuery {
                before,
                limit: Some(50),
                errors_only: true,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|l| l.id);
        filtered.extend(page);
    }
    assert_eq!(
        filtered.len(),
        logs.iter().filter(|l| l.status >= 400).count()
    );

    // an unknown cursor id pages by id order (UUIDv7) instead of failing
    let oldest_first_id = seen.last().unwrap().id;
    let after_oldest = s
        .query_call_logs(&CallLogQuery {
            before: Some(oldest_first_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(after_oldest.is_empty());
    let future = new_id();
    let from_future = s
        .query_call_logs(&CallLogQuery {
            before: Some(future),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(from_future.len(), 100);
}
store_test!(call_logs_keyset_paging);

async fn call_logs_batch_is_atomic(s: Arc<dyn Store>) {
    let base = now_us();
    let first = call_log(1, base);
    s.insert_call_logs(std::slice::from_ref(&first))
        .await
        .unwrap();
    // a batch with a duplicate id fails whole: none of its rows are stored
    let batch = vec![call_log(2, base), call_log(3, base), first.clone()];
    assert_conflict(s.insert_call_logs(&batch).await);
    let all = s.query_call_logs(&CallLogQuery::default()).await.unwrap();
    assert_eq!(all, vec![first]);
}
store_test!(call_logs_batch_is_atomic);

async fn bytes_round_trip_exactly(s: Arc<dyn Store>) {
    let (t, a) = seed_app(&s).await;
    // every byte value, including NUL and invalid UTF-8, in digests and envelope parts
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mut c = credential(&a, 0);
    c.digest = all_bytes.clone();
    s.create_credential(&c).await.unwrap();
    assert_eq!(
        s.find_credential(&all_bytes).await.unwrap().unwrap().digest,
        all_bytes
    );
    let mut reversed = all_bytes.clone();
    reversed.reverse();
    assert_eq!(s.find_credential(&reversed).await.unwrap(), None);

    let mut nul = credential(&a, 1);
    nul.digest = vec![0u8; 32];
    s.create_credential(&nul).await.unwrap();
    assert_eq!(
        s.find_credential(&[0u8; 32]).await.unwrap().unwrap().id,
        nul.id
    );
    assert_eq!(s.find_credential(&[0u8; 31]).await.unwrap(), None);

    let p = s.upsert_provider(&provider("openai")).await.unwrap();
    let mut pc = provider_credential(p.id, t.id, 0);
    pc.wrapped_dek = reversed.clone();
    pc.nonce = vec![
        0xff, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x01, 0xc0, 0xc1, 0xf5, 0x00, 0x7f,
    ];
    pc.ciphertext = all_bytes.iter().copied().cycle().take(1000).collect();
    s.create_provider_credential(&pc).await.unwrap();
    let got = s.list_provider_credentials(p.id).await.unwrap();
    assert_eq!(got, vec![pc.clone()]);
    assert_eq!(got[0].ciphertext, pc.ciphertext);
    assert_eq!(got[0].nonce, pc.nonce);
    assert_eq!(got[0].wrapped_dek, pc.wrapped_dek);
}
store_test!(bytes_round_trip_exactly);

async fn debug_dump_shows_text_and_no_plaintext(s: Arc<dyn Store>) {
    let (_, a) = seed_app(&s).await;
    // what the admin layer would do: keep only the digest and the hint of a fresh key
    let plaintext = "gthk_live_CANARYcanaryCANARYcanaryCANARYcanaryCAN123456";
    let mut c = credential(&a, 1);
    c.hint = "gthk_live_…3456".into();
    s.create_credential(&c).await.unwrap();
    let p = s.upsert_provider(&provider("openai")).await.unwrap();
    let provider_plaintext = "sk-proj-CANARYprovidersecret0000abcd";
    let pc = provider_credential(p.id, a.team_id, 0);
    s.create_provider_credential(&pc).await.unwrap();
    s.set_setting("bootstrapped", "yes").await.unwrap();
    s.insert_call_logs(&[call_log(1, now_us())]).await.unwrap();

    let dump = s.debug_dump().await.unwrap();
    assert!(dump.contains("credentials.hint: gthk_live_…3456"), "{dump}");
    assert!(dump.contains("credentials.name: key-1"), "{dump}");
    assert!(dump.contains("demo"), "list columns are included: {dump}");
    assert!(
        dump.contains("providers.base_url: http://127.0.0.1:9/openai/v1"),
        "{dump}"
    );
    assert!(
        dump.contains("x-extra"),
        "JSON settings are included: {dump}"
    );
    assert!(
        dump.contains("provider_credentials.hint: sk-…abcd"),
        "{dump}"
    );
    assert!(
        dump.contains("provider_credentials.kek_id: local:v1"),
        "{dump}"
    );
    assert!(
        dump.contains("provider_credentials.ciphertext: "),
        "blobs are included: {dump}"
    );
    assert!(dump.contains("settings.value: yes"), "{dump}");
    assert!(dump.contains("call_logs.request_id: req-1"), "{dump}");
    assert!(!dump.contains("_sqlx_migrations"));
    assert!(!dump.contains(plaintext));
    assert!(!dump.contains(provider_plaintext));
    assert!(!dump.contains("CANARY"));

    // and a plaintext that *is* stored in a text column shows up (the audit would catch it)
    let mut leaky = credential(&a, 2);
    leaky.name = plaintext.into();
    s.create_credential(&leaky).await.unwrap();
    assert!(s.debug_dump().await.unwrap().contains(plaintext));
}
store_test!(debug_dump_shows_text_and_no_plaintext);

async fn concurrent_writes_all_succeed(s: Arc<dyn Store>) {
    let mut tasks = vec![];
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let t = team(&format!("team-{i}"));
            s.create_team(&t).await.unwrap();
            let a = app(t.id, "app");
            s.create_app(&a).await.unwrap();
            s.create_credential(&credential(&a, i as u8)).await.unwrap();
            s.set_setting("last", &i.to_string()).await.unwrap();
            s.insert_call_logs(&[call_log(i, now_us())]).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.list_teams().await.unwrap().len(), 24);
    assert_eq!(
        s.list_credentials(&CredentialFilter::default())
            .await
            .unwrap()
            .len(),
        24
    );
    assert_eq!(
        s.query_call_logs(&CallLogQuery::default())
            .await
            .unwrap()
            .len(),
        24
    );
}
store_test!(concurrent_writes_all_succeed);

// ---------------------------------------------------------------------------------------------
// connect()

#[tokio::test]
async fn connect_sqlite_creates_file_and_parent_dirs() {
    let dir = std::env::temp_dir().join(format!("gatehouse-store-{}", new_id().simple()));
    let file = dir.join("a/b/gatehouse.db");
    for url in [
        format!("sqlite://{}", file.display()),
        format!("sqlite:{}", file.display()),
    ] {
        let s = gatehouse_store::connect(&url).await.unwrap();
        s.migrate().await.unwrap();
        s.set_setting("k", "v").await.unwrap();
        assert!(file.exists());
        // the second URL form opens the same file
        assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v"));
    }
    // WAL journal and foreign keys are on
    let store = SqliteStore::open(&file).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    store.pool().close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn connect_sqlite_memory() {
    let s = gatehouse_store::connect("sqlite::memory:").await.unwrap();
    s.migrate().await.unwrap();
    s.set_setting("k", "v").await.unwrap();
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn connect_rejects_unknown_schemes_without_echoing_the_url() {
    for url in ["mysql://root:hunter2@db/x", "hunter2", "", "sqlite://"] {
        match gatehouse_store::connect(url).await {
            Err(StoreError::Config(msg)) => {
                assert!(!msg.contains("hunter2"), "{msg}");
            }
            Err(other) => panic!("{url}: expected Config, got {other:?}"),
            Ok(_) => panic!("{url}: expected an error"),
        }
    }
}

#[tokio::test]
async fn connect_postgres_url_with_search_path() {
    let Ok(url) = std::env::var(PG_ENV) else {
        println!("skipped: connect_postgres_url_with_search_path ({PG_ENV} not set)");
        return;
    };
    let schema = format!("gh_{}", new_id().simple());
    admin_exec(&url, &format!("CREATE SCHEMA {schema}")).await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let s = gatehouse_store::connect(&format!("{url}{sep}options[search_path]={schema}"))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    s.set_setting("k", "v").await.unwrap();
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v"));
    drop(s);
    // the tables landed in our schema
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'settings'",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 1);
    conn.close().await.unwrap();
    admin_exec(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}

#[tokio::test]
async fn connect_postgres_unreachable_is_database_error() {
    match gatehouse_store::connect("postgres://u:hunter2@127.0.0.1:1/x").await {
        Err(StoreError::Database(msg)) | Err(StoreError::Config(msg)) => {
            assert!(!msg.contains("hunter2"), "{msg}")
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("expected an error"),
    }
}

// ---------------------------------------------------------------------------------------------
// bus

#[test]
fn memory_bus_runs_handlers_inside_publish_in_order() {
    use gatehouse_store::{Bus, BusEvent, MemoryBus};
    use std::sync::Mutex;
    let bus = MemoryBus::new();
    let seen = Arc::new(Mutex::new(vec![]));
    for tag in ["a", "b"] {
        let seen = seen.clone();
        bus.subscribe(Arc::new(move |e: &BusEvent| {
            seen.lock().unwrap().push((tag, e.clone()))
        }));
    }
    let ev = BusEvent::CredentialChanged {
        id: new_id(),
        digest: vec![1, 2, 3],
    };
    bus.publish(ev.clone());
    assert_eq!(*seen.lock().unwrap(), vec![("a", ev.clone()), ("b", ev)]);
    bus.publish(BusEvent::Resync);
    assert_eq!(seen.lock().unwrap().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// issue 5 (token security, part b): audit log

fn audit_event(kind: &str, credential: Option<Id>) -> gatehouse_store::NewAuditEvent {
    let mut e = gatehouse_store::NewAuditEvent::new(kind, "gateway")
        .client(Some("203.0.113.7".into()), Some("ua\r\nX-Injected: 1".into()))
        .reason("expired")
        .details(serde_json::json!({"z": 1.5, "a": ["x", {"k": null}], "n": 12345678901i64}));
    e.credential_id = credential;
    e
}

async fn audit_chain_appends_queries_and_verifies(store: Arc<dyn Store>) {
    use gatehouse_store::audit::{GENESIS_HASH, verify_audit_chain};
    use gatehouse_store::AuditQuery;
    let key = new_id();
    let first = store
        .append_audit_events(&[audit_event("key.created", Some(key)), audit_event("auth.denied", None)])
        .await
        .unwrap();
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(first[0].prev_hash, GENESIS_HASH);
    assert_eq!(first[1].prev_hash, first[0].hash);
    // Control characters never reach the store (CWE-117).
    assert_eq!(first[0].event.user_agent.as_deref(), Some("ua??X-Injected: 1"));
    let second = store.append_audit_events(&[audit_event("key.revoked", Some(key))]).await.unwrap();
    assert_eq!(second[0].seq, 3);
    assert_eq!(second[0].prev_hash, first[1].hash);
    assert!(store.append_audit_events(&[]).await.unwrap().is_empty());

    // Read back exactly what was hashed.
    let all = store.query_audit_events(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert_eq!(all[2], first[0]);
    let by_key = store
        .query_audit_events(&AuditQuery { credential_id: Some(key), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_key.len(), 2);
    let by_type = store
        .query_audit_events(&AuditQuery { event_type: Some("auth.denied".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_type.len(), 1);
    let page = store
        .query_audit_events(&AuditQuery { before_seq: Some(3), limit: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    let future = store
        .query_audit_events(&AuditQuery { since: Some(now_us() + Duration::hours(1)), ..Default::default() })
        .await
        .unwrap();
    assert!(future.is_empty());

    let chain = store.audit_chain(1, 10).await.unwrap();
    assert_eq!(chain.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    let report = verify_audit_chain(store.as_ref()).await.unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(report.head_hash, second[0].hash);
    assert!(report.first_broken.is_none());
}
store_test!(audit_chain_appends_queries_and_verifies);

async fn audit_appends_from_concurrent_writers_form_one_chain(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                store.append_audit_events(&[audit_event(&format!("t.{i}"), None), audit_event("x", None)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = gatehouse_store::audit::verify_audit_chain(store.as_ref()).await.unwrap();
    assert_eq!(report.checked, 80);
    assert!(report.first_broken.is_none(), "{report:?}");
}
store_test!(audit_appends_from_concurrent_writers_form_one_chain);

async fn audit_rows_cannot_be_updated_or_deleted(store: Arc<dyn Store>, exec: impl AsyncFn(&str) -> Result<(), String>) {
    store.append_audit_events(&[audit_event("a", None), audit_event("b", None), audit_event("c", None)]).await.unwrap();
    assert!(exec("UPDATE audit_events SET reason = 'nothing' WHERE seq = 2").await.is_err());
    assert!(exec("DELETE FROM audit_events WHERE seq = 2").await.is_err());
}

/// Someone with raw database access who disables the append-only trigger and edits a row is
/// caught by `verify_audit_chain`, which names the first broken link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_locates_tampering_sqlite() {
    let dir = std::env::temp_dir().join(format!("gatehouse-audit-{}", new_id().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("a.db")).await.unwrap();
    store.migrate().await.unwrap();
    let pool = store.pool().clone();
    let exec = async |sql: &str| -> Result<(), String> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.map(|_| ()).map_err(|e| e.to_string())
    };
    let store: Arc<dyn Store> = Arc::new(store);
    audit_rows_cannot_be_updated_or_deleted(store.clone(), exec).await;
    exec("DROP TRIGGER audit_events_no_update").await.unwrap();
    exec("UPDATE audit_events SET reason = 'nothing' WHERE seq = 2").await.unwrap();
    let report = gatehouse_store::audit::verify_audit_chain(store.as_ref()).await.unwrap();
    let broken = report.first_broken.unwrap();
    assert_eq!((broken.seq, broken.reason.as_str()), (2, "hash_mismatch"));
    assert_eq!(report.checked, 1);
    exec("DROP TRIGGER audit_events_no_delete").await.unwrap();
    exec("DELETE FROM audit_events WHERE seq = 1").await.unwrap();
    let report = gatehouse_store::audit::verify_audit_chain(store.as_ref()).await.unwrap();
    assert_eq!(report.first_broken.unwrap(), gatehouse_store::audit::BrokenLink { seq: 1, reason: "seq_gap".into() });
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_are_append_only_postgres() {
    let Some(db) = TestDb::postgres("audit_rows_are_append_only_postgres").await else { return };
    let Some(Backend::Postgres { store: pg, .. }) = db.backend.as_ref() else { panic!() };
    let pool = pg.pool().clone();
    let exec = async |sql: &str| -> Result<(), String> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.map(|_| ()).map_err(|e| e.to_string())
    };
    audit_rows_cannot_be_updated_or_deleted(db.store(), exec).await;
    db.finish().await;
}

/// The sink writes off the request path and loses nothing on close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_sink_flushes_everything_on_close() {
    let db = TestDb::sqlite().await;
    let (sink, writer) = gatehouse_store::AuditSink::spawn(db.store());
    for i in 0..1200 {
        sink.record(audit_event(&format!("e.{i}"), None));
    }
    writer.close().await;
    sink.record(audit_event("after-close", None));
    assert_eq!(sink.dropped(), 1);
    let report = gatehouse_store::audit::verify_audit_chain(db.store().as_ref()).await.unwrap();
    assert_eq!(report.checked, 1200);
    assert!(report.first_broken.is_none());
    db.finish().await;
}

// issue 5: API-key security attributes, rotation with overlap, suspension

async fn credential_security_round_trips_rotates_and_suspends(store: Arc<dyn Store>) {
    let t = team("sec");
    store.create_team(&t).await.unwrap();
    let a = app(t.id, "sec-app");
    store.create_app(&a).await.unwrap();
    let mut old = credential(&a, 41);
    old.security.ip_allow = vec!["203.0.113.0/24".into(), "2001:db8::/32".into()];
    old.security.labels.insert("env".into(), "prod".into());
    old.security.dpop_jkt = Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into());
    old.security.auto_suspend = true;
    store.create_credential(&old).await.unwrap();
    assert_eq!(store.get_credential(old.id).await.unwrap().unwrap(), old);
    assert_eq!(store.find_credential(&old.digest).await.unwrap().unwrap().security, old.security);

    // rotate: successor inserted, old expiry capped at the grace end
    let grace_end = now_us() + Duration::hours(1);
    let mut successor = credential(&a, 42);
    successor.security = old.security.clone();
    successor.security.rotated_from = Some(old.id);
    assert!(store.rotate_credential(old.id, &successor, grace_end).await.unwrap());
    assert_eq!(store.get_credential(old.id).await.unwrap().unwrap().expires_at, Some(grace_end));
    assert_eq!(store.get_credential(successor.id).await.unwrap().unwrap(), successor);
    // L2: a key is rotated once; a second rotation changes nothing (no second successor, the
    // expiry stays)
    let mut third = credential(&a, 43);
    third.security.rotated_from = Some(old.id);
    assert!(!store.rotate_credential(old.id, &third, now_us()).await.unwrap());
    assert!(store.get_credential(third.id).await.unwrap().is_none());
    assert_eq!(store.get_credential(old.id).await.unwrap().unwrap().expires_at, Some(grace_end));
    // the successor itself can be rotated
    // (with a grace ending after its own expiry: a grace never extends the expiry)
    assert!(store.rotate_credential(successor.id, &third, successor.expires_at.unwrap() + Duration::days(10)).await.unwrap());
    assert_eq!(store.get_credential(successor.id).await.unwrap().unwrap().expires_at, successor.expires_at);

    // revoked or unknown: nothing changes, the successor is not inserted
    store.revoke_credential(third.id, now_us()).await.unwrap();
    let fourth = credential(&a, 44);
    assert!(!store.rotate_credential(third.id, &fourth, grace_end).await.unwrap());
    assert!(store.get_credential(fourth.id).await.unwrap().is_none());
    assert!(!store.rotate_credential(new_id(), &fourth, grace_end).await.unwrap());
    assert!(store.get_credential(fourth.id).await.unwrap().is_none());
    // duplicate digest → Conflict, old key untouched
    let fresh = credential(&a, 46);
    store.create_credential(&fresh).await.unwrap();
    let dup = credential(&a, 42);
    assert!(matches!(store.rotate_credential(fresh.id, &dup, now_us()).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_credential(fresh.id).await.unwrap().unwrap().expires_at, fresh.expires_at);

    // suspension
    let at = now_us();
    assert!(store.suspend_credential(successor.id, at).await.unwrap());
    assert!(store.suspend_credential(successor.id, at + Duration::hours(1)).await.unwrap());
    assert_eq!(store.get_credential(successor.id).await.unwrap().unwrap().security.suspended_at, Some(at));
    assert!(!store.suspend_credential(new_id(), at).await.unwrap());
    let suspended_rotation = credential(&a, 45);
    assert!(!store.rotate_credential(successor.id, &suspended_rotation, at).await.unwrap());
}
store_test!(credential_security_round_trips_rotates_and_suspends);

/// L2: eight concurrent rotations of one key → exactly one successor (compare-and-set in the
/// store), the other seven change nothing.
async fn l2_concurrent_rotations_create_exactly_one_successor(store: Arc<dyn Store>) {
    let t = team("rot-race");
    store.create_team(&t).await.unwrap();
    let a = app(t.id, "rot-race-app");
    store.create_app(&a).await.unwrap();
    let old = credential(&a, 60);
    store.create_credential(&old).await.unwrap();
    let grace_end = now_us() + Duration::hours(1);
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (store, barrier) = (store.clone(), barrier.clone());
        let mut successor = credential(&a, 61 + i);
        successor.security.rotated_from = Some(old.id);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (successor.id, store.rotate_credential(old.id, &successor, grace_end).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (id, won) = task.await.unwrap();
        if won {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    let keys = store.list_credentials(&CredentialFilter { app_id: Some(a.id), include_revoked: true, ..Default::default() }).await.unwrap();
    let successors: Vec<Id> = keys.iter().filter(|k| k.security.rotated_from == Some(old.id)).map(|k| k.id).collect();
    assert_eq!(successors, winners, "only the winner's successor exists");
    assert_eq!(store.get_credential(old.id).await.unwrap().unwrap().expires_at, Some(grace_end));
}
store_test!(l2_concurrent_rotations_create_exactly_one_successor);

// ---------------------------------------------------------------------------------------------
// issue 6: limits

async fn limits(s: Arc<dyn Store>) {
    use gatehouse_store::{Limit, LimitScope};
    let key_id = new_id().hyphenated().to_string();
    let mut l = Limit {
        id: new_id(),
        scope: LimitScope::Key,
        scope_id: key_id.clone(),
        model: String::new(),
        rpm: Some(60),
        concurrent: None,
        tpm: Some(100_000),
        tokens_per_day: None,
        tokens_per_month: Some(u64::from(u32::MAX) * 4),
        usd_micros_per_day: Some(5_000_000),
        usd_micros_per_month: None,
        created_at: now_us(),
        updated_at: now_us(),
    };
    let stored = s.upsert_limit(&l).await.unwrap();
    assert_eq!(stored, l);
    // Same (scope, scope_id, model): values replaced, id and created_at kept.
    let first_id = l.id;
    l.id = new_id();
    l.rpm = None;
    l.concurrent = Some(3);
    l.updated_at = now_us();
    let updated = s.upsert_limit(&l).await.unwrap();
    assert_eq!(updated.id, first_id);
    assert_eq!((updated.rpm, updated.concurrent, updated.tpm), (None, Some(3), Some(100_000)));
    // A model-narrowed row and a model-scope row are separate.
    let narrowed = Limit { id: new_id(), model: "gpt-4o".into(), ..l.clone() };
    s.upsert_limit(&narrowed).await.unwrap();
    let model_wide = Limit { id: new_id(), scope: LimitScope::Model, scope_id: "gpt-4o".into(), ..l.clone() };
    s.upsert_limit(&model_wide).await.unwrap();
    let all = s.list_limits().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(|x| x.scope).collect::<Vec<_>>(), vec![LimitScope::Key, LimitScope::Key, LimitScope::Model]);
    assert_eq!(all[0].model, "");
    assert_eq!(all[1].model, "gpt-4o");
    assert!(s.delete_limit(first_id).await.unwrap());
    assert!(!s.delete_limit(first_id).await.unwrap());
    assert_eq!(s.list_limits().await.unwrap().len(), 2);
}
store_test!(limits);

// OAuth authorization server tables (issue 5).
#[path = "conformance/oauth.rs"]
mod oauth;

#[path = "conformance/tenancy.rs"]
mod tenancy;
// ---------------------------------------------------------------------------------------------
// issue 6: response-cache settings per model

async fn model_cache_settings(s: Arc<dyn Store>) {
    let at = now_us();
    assert_eq!(s.set_model_cache("nope", 60, at).await.unwrap(), None, "unknown model");
    let m = s.upsert_model(&model("cached", vec![])).await.unwrap();
    s.upsert_model(&model("plain", vec![])).await.unwrap();
    let set = s.set_model_cache("cached", 60, at).await.unwrap().unwrap();
    assert_eq!((set.model.as_str(), set.ttl_secs, set.updated_at), ("cached", 60, at));
    // Setting again replaces the TTL (one row per model).
    let later = at + Duration::seconds(5);
    let set = s.set_model_cache("cached", u32::MAX, later).await.unwrap().unwrap();
    assert_eq!((set.ttl_secs, set.updated_at), (u32::MAX, later));
    assert_eq!(s.list_model_caches().await.unwrap(), vec![set.clone()]);
    // Replacing the model's deployments keeps the setting; deleting the model removes it.
    s.upsert_model(&model("cached", vec![])).await.unwrap();
    assert_eq!(s.list_model_caches().await.unwrap().len(), 1);
    assert!(s.delete_model(&m.name).await.unwrap());
    assert!(s.list_model_caches().await.unwrap().is_empty());
    // Opt out.
    s.upsert_model(&model("cached", vec![])).await.unwrap();
    s.set_model_cache("cached", 30, at).await.unwrap().unwrap();
    assert!(s.delete_model_cache("cached").await.unwrap());
    assert!(!s.delete_model_cache("cached").await.unwrap());
    assert!(!s.delete_model_cache("plain").await.unwrap());
    assert!(s.list_model_caches().await.unwrap().is_empty());
}
store_test!(model_cache_settings);
// Services, releases, subscriptions, app deletion (issue 7).
#[path = "conformance/services.rs"]
mod services;
// Declarative team configuration: `apply_config` is one transaction (issue 7).
#[path = "conformance/config.rs"]
mod config;
