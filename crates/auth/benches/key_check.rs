//! Micro-benchmarks of the key checks on the data plane's hot path (`token-security.md` §2.4
//! steps 2–4): the offline format + CRC32 check, and the HMAC digest used as the cache key.
//! Run: `cargo bench -p gatehouse-auth`. Figures go to BENCHMARKS.md, never into tests.

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_auth::{Env, MasterKey, Peppers, TokenKind, generate, parse};
use secrecy::ExposeSecret;
use std::hint::black_box;

fn key_check(c: &mut Criterion) {
    let key = generate(TokenKind::ApiKey, Env::Live).map(|g| g.token.expose_secret().to_string()).unwrap_or_default();
    let mut bad = key.clone();
    bad.replace_range(20..21, if &key[20..21] == "a" { "b" } else { "a" });
    let peppers = MasterKey::generate().map(|m| Peppers::from_master_key(&m)).ok();
    c.bench_function("key/parse_valid", |b| b.iter(|| parse(black_box(&key))));
    c.bench_function("key/parse_bad_checksum", |b| b.iter(|| parse(black_box(&bad))));
    if let Some(p) = peppers {
        c.bench_function("key/parse_and_digest", |b| b.iter(|| parse(black_box(&key)).map(|_| p.digest(&key))));
    }
}

criterion_group!(benches, key_check);
criterion_main!(benches);
