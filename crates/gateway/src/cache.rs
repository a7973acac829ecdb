//! Exact-match response cache for non-streamed `POST /v1/chat/completions` and
//! `POST /v1/embeddings` (issue 6).
//!
//! - Opt-in per public model, with a TTL in seconds (`PUT /admin/v1/models/{name}/cache`,
//!   stored in the `model_cache` table; [`gatehouse_store::ModelCachePolicy`]). Models without a
//!   setting, `provider/model` names and streamed calls never touch the cache.
//! - Key: SHA-256 over the caller's team id, the endpoint, the `anthropic-beta` request header
//!   (feature flags change an Anthropic upstream's answer) and the request body as canonical JSON
//!   (object keys sorted, no whitespace; `stream` and `stream_options` left out). Two teams never
//!   share an entry, so no tenant is ever answered with another tenant's cached answer; keys of
//!   the same team share entries (they share the team's spend and data).
//! - Only successful upstream answers (200) are stored. An entry is served while its age is below
//!   the model's *current* TTL, so lowering or removing the setting takes effect at once; any
//!   routing change (`BusEvent::RoutingChanged`, e.g. a model's deployments) empties the cache.
//! - The client's `Cache-Control` request header (RFC 9111 §5.2.1) is honoured: `no-store`
//!   neither reads nor writes the cache, `no-cache` skips the lookup but stores the fresh answer.
//! - Responses of cache-enabled models carry [`CACHE_HEADER`]: `hit` (with `Age`, RFC 9111
//!   §5.1, in seconds), `miss` (looked up, not found; the answer is stored) or `bypass` (the
//!   client's `Cache-Control` ruled the cache out).
//! - A hit is admitted by the limits like any request (request and concurrency limits count it)
//!   but consumes no tokens or spend; its call-log row has `cache_hit = true`, usage 0, cost 0
//!   and no upstream latency.
//! - Storage is in memory (moka), bounded by [`CacheSettings::max_bytes`] of response bodies
//!   (least recently used entries go first), and **per node**: with several gateway nodes each
//!   keeps its own cache, so a hit depends on which node the request reached.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use gatehouse_store::{BusEvent, Store, StoreError};
use gatehouse_types::Id;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::calllog::CallRecorder;
use crate::limits::Admission;

/// Response header telling whether the answer came from the cache: `hit`, `miss` or `bypass`.
pub const CACHE_HEADER: &str = "x-gatehouse-cache";

/// A monotonic time source; [`Clock::system`] in production, [`ManualClock`] in tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        Self(Arc::new(Instant::now))
    }

    /// Now, by this clock.
    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// A clock that moves only when told to (tests of TTL expiry without waiting).
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    offset_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        Self { start: Instant::now(), offset_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// Moves the clock forward by `by` (millisecond resolution).
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// The [`Clock`] reading this manual clock.
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock(Arc::new(move || me.start + Duration::from_millis(me.offset_ms.load(Ordering::SeqCst))))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Tunables of the response cache ([`crate::GatewaySettings::response_cache`]).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Upper bound of the cached response bodies, bytes (default 64 MiB); least recently used
    /// entries are evicted beyond it.
    pub max_bytes: u64,
    /// The time source of entry ages (default: [`Clock::system`]).
    pub clock: Clock,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024, clock: Clock::system() }
    }
}

/// Which API a request used (part of the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Chat => b"chat.completions",
            Self::Embeddings => b"embeddings",
        }
    }
}

/// What the client's `Cache-Control` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Look up, and store a miss.
    Normal,
    /// `no-cache`: do not look up, but store the fresh answer.
    Refresh,
    /// `no-store`: neither.
    Bypass,
}

/// The cache decision for one request, made before the upstream call.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `None`: the model did not opt in (no header, no lookup, no store).
    key: Option<[u8; 32]>,
    ttl: Duration,
    mode: Mode,
}

impl Plan {
    /// A plan that never touches the cache (streamed calls, models without a setting).
    pub fn off() -> Self {
        Self { key: None, ttl: Duration::ZERO, mode: Mode::Bypass }
    }

    /// Whether the model opted in (the response carries [`CACHE_HEADER`]).
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// The header value of an answer that did not come from the cache.
    fn outcome(&self) -> Option<&'static str> {
        self.key?;
        Some(match self.mode {
            Mode::Normal => "miss",
            Mode::Refresh | Mode::Bypass => "bypass",
        })
    }
}

/// One cached answer.
#[derive(Debug)]
pub struct Cached {
    /// The JSON body as the client received it.
    body: Bytes,
    stored_at: Instant,
    ttl: Duration,
}

struct EntryExpiry;

impl moka::Expiry<[u8; 32], Arc<Cached>> for EntryExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Arc<Cached>, _created_at: Instant) -> Option<Duration> {
        // Frees memory on the system clock; freshness itself is checked on the cache's clock.
        Some(value.ttl)
    }
}

/// The response cache (see the module doc).
pub struct ResponseCache {
    store: Arc<dyn Store>,
    entries: moka::sync::Cache<[u8; 32], Arc<Cached>>,
    /// Public model name → TTL.
    policies: RwLock<Arc<HashMap<String, Duration>>>,
    stale: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
    clock: Clock,
}

impl ResponseCache {
    /// Loads the per-model settings. Errors: the store failed.
    pub async fn load(store: Arc<dyn Store>, settings: &CacheSettings) -> Result<Self, StoreError> {
        let policies = load_policies(store.as_ref()).await?;
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_k: &[u8; 32], v: &Arc<Cached>| u32::try_from(v.body.len() + 96).unwrap_or(u32::MAX))
            .expire_after(EntryExpiry)
            .build();
        Ok(Self {
            store,
            entries,
            policies: RwLock::new(Arc::new(policies)),
            stale: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            clock: settings.clock.clone(),
        })
    }

    /// `RoutingChanged` / `Resync`: the settings are reloaded before the next request and every
    /// entry is dropped (a model may now be served by another deployment). Quick, synchronous.
    pub fn on_bus_event(&self, event: &BusEvent) {
        if matches!(event, BusEvent::RoutingChanged | BusEvent::Resync) {
            self.stale.store(true, Ordering::SeqCst);
            self.entries.invalidate_all();
        }
    }

    fn read(&self) -> Arc<HashMap<String, Duration>> {
        match self.policies.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn current(&self) -> Arc<HashMap<String, Duration>> {
        if self.stale.load(Ordering::SeqCst) {
            let _one = self.reload_lock.lock().await;
            if self.stale.swap(false, Ordering::SeqCst) {
                match load_policies(self.store.as_ref()).await {
                    Ok(p) => match self.policies.write() {
                        Ok(mut w) => *w = Arc::new(p),
                        Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "response cache settings reload failed");
                        self.stale.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        self.read()
    }

    /// Decides for one non-streamed request of `team` to public model `model`: off when the
    /// model did not opt in, otherwise the key and what the client's `Cache-Control` allows.
    pub async fn plan(&self, team: Id, endpoint: Endpoint, model: &str, body: &Map<String, Value>, headers: &HeaderMap) -> Plan {
        let policies = self.current().await;
        let Some(ttl) = policies.get(model).copied() else { return Plan::off() };
        let beta = headers.get("anthropic-beta").map(|v| v.as_bytes()).unwrap_or_default();
        Plan { key: Some(cache_key(team, endpoint, beta, body)), ttl, mode: client_mode(headers) }
    }

    /// The cached answer for `plan`, if fresh and the client allows a lookup.
    pub fn lookup(&self, plan: &Plan) -> Option<Arc<Cached>> {
        let key = plan.key.as_ref()?;
        if plan.mode != Mode::Normal {
            return None;
        }
        let hit = self.entries.get(key)?;
        if self.clock.now().saturating_duration_since(hit.stored_at) >= plan.ttl {
            self.entries.invalidate(key);
            return None;
        }
        Some(hit)
    }

    /// Stores a successful answer's JSON `body` under `plan` (if the model opted in and the
    /// client did not say `no-store`).
    pub fn store(&self, plan: &Plan, body: &Value) {
        let Some(key) = plan.key else { return };
        if plan.mode == Mode::Bypass {
            return;
        }
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                let entry = Cached { body: Bytes::from(bytes), stored_at: self.clock.now(), ttl: plan.ttl };
                self.entries.insert(key, Arc::new(entry));
            }
            Err(e) => tracing::warn!(error = %e, "response not cached: not serializable"),
        }
    }

    /// The response for a hit: the cached JSON body, `x-gatehouse-cache: hit` and `Age`.
    pub fn hit_response(&self, hit: &Cached) -> Response {
        let age = self.clock.now().saturating_duration_since(hit.stored_at).as_secs();
        let mut resp = Response::new(Body::from(hit.body.clone()));
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_HEADER, HeaderValue::from_static("hit"));
        h.insert(header::AGE, HeaderValue::from(age));
        resp
    }

    /// Answers from the cache when `plan` finds a fresh entry: marks the call-log record
    /// (`cache_hit`, no usage), tells the admission that nothing was consumed (tokens and spend
    /// refunded; the request still counts) and adds the rate-limit headers.
    pub(crate) fn answer(&self, plan: &Plan, rec: &CallRecorder, admission: Option<&Admission>) -> Option<Response> {
        let hit = self.lookup(plan)?;
        rec.update(|d| d.cache_hit = true);
        if let Some(a) = admission {
            a.nothing_consumed();
        }
        Some(crate::handlers::with_rate_headers(self.hit_response(&hit), admission))
    }

    /// Number of entries held (approximate: moka applies writes lazily).
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// Marks an answer that did not come from the cache (`miss` / `bypass`) when the model opted in.
pub fn tag(mut resp: Response, plan: &Plan) -> Response {
    if let Some(v) = plan.outcome() {
        resp.headers_mut().insert(CACHE_HEADER, HeaderValue::from_static(v));
    }
    resp
}

async fn load_policies(store: &dyn Store) -> Result<HashMap<String, Duration>, StoreError> {
    Ok(store
        .list_model_caches()
        .await?
        .into_iter()
        .map(|p| (p.model, Duration::from_secs(u64::from(p.ttl_secs))))
        .collect())
}

/// `no-store` → bypass; `no-cache` (or `max-age=0`) → refresh; otherwise normal. Directive names
/// are case-insensitive (RFC 9111 §5.2); every `Cache-Control` header counts.
fn client_mode(headers: &HeaderMap) -> Mode {
    let mut mode = Mode::Normal;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let d = directive.trim().to_ascii_lowercase();
            let name = d.split('=').next().unwrap_or("").trim();
            if name == "no-store" {
                return Mode::Bypass;
            }
            if name == "no-cache" || d.replace(' ', "") == "max-age=0" {
                mode = Mode::Refresh;
            }
        }
    }
    mode
}

/// SHA-256 of team id, endpoint, the client's `anthropic-beta` flags (they change what an
/// Anthropic upstream answers) and the canonical body (module doc).
fn cache_key(team: Id, endpoint: Endpoint, anthropic_beta: &[u8], body: &Map<String, Value>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gatehouse-response-cache/v1\0");
    h.update(team.as_bytes());
    h.update(b"\0");
    h.update(endpoint.tag());
    h.update(b"\0");
    h.update(anthropic_beta);
    h.update(b"\0");
    let mut buf = Vec::with_capacity(256);
    canonical_object(body, &["stream", "stream_options"], &mut buf);
    h.update(&buf);
    h.finalize().into()
}

/// Canonical JSON: object keys sorted bytewise, no whitespace, strings and numbers as
/// serde_json writes them.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => canonical_object(m, &[], out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            // Writing a scalar Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn canonical_object(m: &Map<String, Value>, skip: &[&str], out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = m.keys().filter(|k| !skip.contains(&k.as_str())).collect();
    keys.sort_unstable();
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        if let Some(v) = m.get(k) {
            canonical(v, out);
        }
    }
    out.push(b'}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn headers(cc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
        h
    }

    #[test]
    fn key_ignores_key_order_and_stream_fields_but_not_content() {
        let team = Id::from_u128(7);
        let a = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}));
        let b = obj(json!({"temperature": 0, "stream": false, "messages": [{"content": "hi", "role": "user"}], "model": "m"}));
        let c = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}], "temperature": 0}));
        assert_eq!(cache_key(team, Endpoint::Chat, b"", &a), cache_key(team, Endpoint::Chat, b"", &b));
        assert_ne!(cache_key(team, Endpoint::Chat, b"", &a), cache_key(team, Endpoint::Chat, b"", &c));
        assert_ne!(cache_key(team, Endpoint::Chat, b"", &a), cache_key(Id::from_u128(8), Endpoint::Chat, b"", &a), "per team");
        assert_ne!(cache_key(team, Endpoint::Chat, b"", &a), cache_key(team, Endpoint::Embeddings, b"", &a), "per endpoint");
        assert_ne!(
            cache_key(team, Endpoint::Chat, b"", &a),
            cache_key(team, Endpoint::Chat, b"prompt-caching-2024-07-31", &a),
            "per anthropic-beta flags"
        );
    }

    #[test]
    fn cache_control_directives() {
        assert_eq!(client_mode(&HeaderMap::new()), Mode::Normal);
        assert_eq!(client_mode(&headers("No-Store")), Mode::Bypass);
        assert_eq!(client_mode(&headers("no-cache")), Mode::Refresh);
        assert_eq!(client_mode(&headers("max-age=0")), Mode::Refresh);
        assert_eq!(client_mode(&headers("max-age=60, no-store")), Mode::Bypass);
        assert_eq!(client_mode(&headers("max-age=60")), Mode::Normal);
    }

    async fn cache_with(clock: &ManualClock, ttl_secs: u32) -> (ResponseCache, Arc<dyn Store>) {
        let sqlite = gatehouse_store::SqliteStore::open_in_memory().await.unwrap();
        sqlite.migrate().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let model = gatehouse_store::Model { id: Id::from_u128(1), name: "m".into(), deployments: vec![], created_at: gatehouse_types::now() };
        store.upsert_model(&model).await.unwrap();
        store.set_model_cache("m", ttl_secs, gatehouse_types::now()).await.unwrap().unwrap();
        let settings = CacheSettings { clock: clock.clock(), ..CacheSettings::default() };
        (ResponseCache::load(store.clone(), &settings).await.unwrap(), store)
    }

    #[tokio::test]
    async fn hit_miss_and_ttl_expiry_on_an_injected_clock() {
        let clock = ManualClock::new();
        let (cache, _store) = cache_with(&clock, 60).await;
        let body = obj(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        let plan = cache.plan(Id::from_u128(1), Endpoint::Chat, "m", &body, &HeaderMap::new()).await;
        assert!(plan.enabled());
        assert!(cache.lookup(&plan).is_none(), "miss");
        cache.store(&plan, &json!({"id": "chatcmpl-1"}));
        let hit = cache.lookup(&plan).expect("hit");
        assert_eq!(&hit.body[..], br#"{"id":"chatcmpl-1"}"#);
        clock.advance(Duration::from_secs(59));
        assert!(cache.lookup(&plan).is_some(), "still fresh at 59 s");
        let resp = cache.hit_response(&hit);
        assert_eq!(resp.headers()[header::AGE], "59");
        clock.advance(Duration::from_secs(1));
        assert!(cache.lookup(&plan).is_none(), "expired at 60 s");
        // Another model (not opted in) never plans a key.
        assert!(!cache.plan(Id::from_u128(1), Endpoint::Chat, "other", &body, &HeaderMap::new()).await.enabled());
    }

    #[tokio::test]
    async fn no_store_neither_reads_nor_writes_and_no_cache_only_writes() {
        let clock = ManualClock::new();
        let (cache, _store) = cache_with(&clock, 60).await;
        let body = obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        let team = Id::from_u128(1);
        let no_store = cache.plan(team, Endpoint::Chat, "m", &body, &headers("no-store")).await;
        cache.store(&no_store, &json!({"a": 1}));
        let normal = cache.plan(team, Endpoint::Chat, "m", &body, &HeaderMap::new()).await;
        assert!(cache.lookup(&normal).is_none(), "no-store did not write");
        let no_cache = cache.plan(team, Endpoint::Chat, "m", &body, &headers("no-cache")).await;
        cache.store(&no_cache, &json!({"a": 2}));
        assert!(cache.lookup(&no_cache).is_none(), "no-cache does not read");
        assert_eq!(&cache.lookup(&normal).unwrap().body[..], br#"{"a":2}"#, "no-cache wrote");
        assert!(cache.lookup(&no_store).is_none(), "no-store does not read");
        assert_eq!(tag(Response::new(Body::empty()), &no_store).headers()[CACHE_HEADER], "bypass");
        assert_eq!(tag(Response::new(Body::empty()), &normal).headers()[CACHE_HEADER], "miss");
        assert!(tag(Response::new(Body::empty()), &Plan::off()).headers().get(CACHE_HEADER).is_none());
    }

    #[tokio::test]
    async fn routing_changes_reload_settings_and_empty_the_cache() {
        let clock = ManualClock::new();
        let (cache, store) = cache_with(&clock, 60).await;
        let body = obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        let plan = cache.plan(Id::from_u128(1), Endpoint::Chat, "m", &body, &HeaderMap::new()).await;
        cache.store(&plan, &json!({"a": 1}));
        store.delete_model_cache("m").await.unwrap();
        cache.on_bus_event(&BusEvent::RoutingChanged);
        assert!(cache.lookup(&plan).is_none(), "emptied");
        assert!(!cache.plan(Id::from_u128(1), Endpoint::Chat, "m", &body, &HeaderMap::new()).await.enabled(), "opted out");
    }
}
