//! Micro-benchmarks of the data plane's per-request work before the upstream call:
//! key check + verify from the auth cache, a bad-checksum rejection (no store access), request
//! parsing, and model routing. Run: `cargo bench -p gatehouse-gateway`; the figures go to
//! BENCHMARKS.md (targets live there, never in tests). Under `cargo nextest run --all-targets`
//! each benchmark runs once as a smoke test.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_auth::{Aad, Env, KeyProvider, LocalKeyProvider, MasterKey, Peppers, TokenKind};
use gatehouse_gateway::auth::Authenticator;
use gatehouse_gateway::request::parse_chat;
use gatehouse_gateway::routing::Routing;
use gatehouse_store::*;
use gatehouse_types::{new_id, now};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use secrecy::ExposeSecret;

const BODY: &[u8] = br#"{"model":"demo","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France? Answer in one word."}],"temperature":0.2,"max_tokens":64,"stream":true,"stream_options":{"include_usage":true},"user":"bench"}"#;

struct Fixture {
    auth: Authenticator,
    routing: Routing,
    good: HeaderMap,
    bad: HeaderMap,
}

async fn fixture() -> Fixture {
    let store = connect("sqlite::memory:").await.expect("store");
    store.migrate().await.expect("migrate");
    let master = MasterKey::generate().expect("entropy");
    let peppers = Arc::new(Peppers::from_master_key(&master));
    let kp: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::new(&master));
    let team = Team { id: new_id(), name: "default".into(), created_at: now() };
    store.create_team(&team).await.expect("team");
    let app = App { id: new_id(), team_id: team.id, name: "default".into(), created_at: now() };
    store.create_app(&app).await.expect("app");

    let generated = gatehouse_auth::generate(TokenKind::ApiKey, Env::Live).expect("entropy");
    let key = generated.token.expose_secret().to_string();
    let credential = Credential {
        id: new_id(),
        team_id: team.id,
        app_id: app.id,
        name: "bench".into(),
        digest: peppers.digest(&key).to_vec(),
        pepper_version: peppers.current_version(),
        hint: generated.hint,
        models: vec![],
        scopes: vec![],
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        created_at: now(),
        security: Default::default(),
    };
    store.create_credential(&credential).await.expect("credential");

    let provider = Provider {
        id: new_id(),
        name: "mock".into(),
        kind: "openai".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        settings: serde_json::json!({}),
        created_at: now(),
    };
    let provider = store.upsert_provider(&provider).await.expect("provider");
    let credential_id = new_id();
    let aad = Aad { tenant_id: team.id, credential_id, provider: "mock".into() };
    let sealed = gatehouse_auth::seal(kp.as_ref(), &aad, b"sk-bench-provider-key-0000").expect("seal");
    store
        .create_provider_credential(&ProviderCredential {
            id: credential_id,
            provider_id: provider.id,
            team_id: team.id,
            hint: "sk-…0000".into(),
            format_version: sealed.format_version,
            kek_id: sealed.kek_id,
            wrapped_dek: sealed.wrapped_dek,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            priority: 0,
            revoked_at: None,
            created_at: now(),
        })
        .await
        .expect("provider credential");
    let model = Model {
        id: new_id(),
        name: "demo".into(),
        deployments: vec![Deployment { id: new_id(), provider_id: provider.id, upstream_model: "mock-gpt".into(), weight: 1, priority: 0 }],
        created_at: now(),
    };
    store.upsert_model(&model).await.expect("model");

    let (auth, _touch_rx) = Authenticator::new(store.clone(), peppers, Env::Live);
    let routing = Routing::load(store, kp).await.expect("routing");
    let header = |k: &str| {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {k}")).expect("header"));
        h
    };
    let mut bad_key = key.clone();
    bad_key.replace_range(20..21, if &key[20..21] == "a" { "b" } else { "a" });
    Fixture { auth, routing, good: header(&key), bad: header(&bad_key) }
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let f = rt.block_on(fixture());
    // Warm the positive cache the way the first request does.
    let _ = rt.block_on(f.auth.authenticate(&f.good));

    c.bench_function("auth/verify_from_cache", |b| b.iter(|| rt.block_on(f.auth.authenticate(black_box(&f.good)))));
    c.bench_function("auth/reject_bad_checksum", |b| b.iter(|| rt.block_on(f.auth.authenticate(black_box(&f.bad)))));
    c.bench_function("request/parse_chat", |b| b.iter(|| parse_chat(black_box(BODY))));
    c.bench_function("route/resolve_and_target", |b| {
        b.iter(|| {
            rt.block_on(async {
                let route = f.routing.resolve(black_box("demo")).await.ok()?;
                let candidate = route.primary()?;
                f.routing.target(candidate).ok()
            })
        })
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
