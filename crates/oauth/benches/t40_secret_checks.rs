//! T40 (`token-security.md` §4.4), the measured half: client authentication
//! (`client_secret_basic`, RFC 6749 §2.3.1) with (a) an unknown client id, (b) a known client id
//! and a wrong secret with a valid checksum, (c) a known id and a secret with a bad checksum.
//! Expected: (a) ≈ (b) (the HMAC runs in both; the comparison is `subtle::ConstantTimeEq`); (c)
//! may be faster only by the intended checksum fast-fail. Timing is never asserted in tests
//! (house rule): run `cargo bench -p gatehouse-oauth --bench t40_secret_checks` and read the
//! three medians; the structural half is `tests/t40_constant_time.rs`. Figures: BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_auth::{Env, LocalKeyProvider, MasterKey, Peppers, TokenKind, generate};
use gatehouse_oauth::{NewClient, OAuth, OAuthDeps, TracingEvents};
use gatehouse_store::{App, MemoryBus, Store, Team};
use gatehouse_types::{new_id, now};
use secrecy::ExposeSecret;

fn basic(id: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

fn t40(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (oauth, client_id) = rt.block_on(async {
        let store = gatehouse_store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let team = Team { id: new_id(), name: "bench".into(), created_at: now() };
        store.create_team(&team).await.unwrap();
        let app = App { id: new_id(), team_id: team.id, name: "bench".into(), created_at: now() };
        store.create_app(&app).await.unwrap();
        let master = MasterKey::generate().unwrap();
        let oauth = OAuth::new(OAuthDeps {
            store: store.clone() as Arc<dyn Store>,
            bus: Arc::new(MemoryBus::new()),
            peppers: Arc::new(Peppers::from_master_key(&master)),
            key_provider: Arc::new(LocalKeyProvider::new(&master)),
            env: Env::Live,
            issuer: "http://127.0.0.1:8080".into(),
            events: Arc::new(TracingEvents),
        });
        let (client, _secret) = oauth
            .create_client(NewClient {
                team_id: team.id,
                app_id: app.id,
                name: "bench".into(),
                auth_method: "client_secret_basic".into(),
                public_jwk: None,
                token_format: "opaque".into(),
                scopes: vec![],
                models: vec![],
                audiences: vec![],
                access_ttl: Duration::from_secs(600),
                tls_client_certificate_bound_access_tokens: false,
            })
            .await
            .unwrap();
        (oauth, client.id.to_string())
    });
    let wrong = generate(TokenKind::ClientSecret, Env::Live).unwrap().token.expose_secret().to_string();
    let mut bad_checksum = wrong.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let unknown = basic(&new_id().to_string(), &wrong);
    let known_wrong = basic(&client_id, &wrong);
    let known_bad_checksum = basic(&client_id, &bad_checksum);
    let mut g = c.benchmark_group("t40_client_secret");
    for (name, credentials) in [("unknown_id", &unknown), ("known_id_wrong_secret", &known_wrong), ("known_id_bad_checksum", &known_bad_checksum)] {
        g.bench_function(name, |b| b.iter(|| rt.block_on(async { oauth.authenticate_basic(black_box(credentials)).await.is_err() })));
    }
    g.finish();
}

criterion_group!(benches, t40);
criterion_main!(benches);
