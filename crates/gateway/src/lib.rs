//! The Gatehouse data plane: an OpenAI-compatible API (`POST /v1/chat/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{model}`) in front of the
//! configured upstream providers, authenticated with Gatehouse API keys (DESIGN.md "Request
//! path"; `token-security.md` §1.2, §2.4, §3.4).
//!
//! The server builds one [`Gateway`] from [`GatewayDeps`], serves [`Gateway::router`] and, after
//! the listener has drained, calls [`Gateway::close`] to flush the call log.
//!
//! Modules: [`auth`] (key verification + caches), [`routing`] (model → provider snapshot),
//! [`handlers`] (thin HTTP handlers), [`request`] (body validation), [`stream`] (SSE framing),
//! [`calllog`] (batched call records), [`error`] (OpenAI error shape + RFC 6750 challenges),
//! [`validate`] (sampling/message field checks), [`cache`] (exact-match response cache).
//! Inbound dialects: [`dialect`] (credential rules, error shapes), [`anthropic_api`]
//! (`POST /v1/messages`), [`gemini_api`] (`:generateContent`, `:streamGenerateContent`).

pub mod anomaly;
pub mod admission;
pub mod anthropic_api;
pub mod azure_api;
pub mod auth;
pub mod cache;
pub mod calllog;
pub mod caps;
pub mod dialect;
pub mod dpop;
pub mod error;
pub mod estimate;
pub mod failover;
pub mod gemini_api;
pub mod handlers;
pub mod health;
pub mod health_api;
pub(crate) mod inbound;
pub mod limits;
pub mod mtls;
pub(crate) mod metrics;
pub mod policy;
pub mod pricing;
pub mod prompt_api;
pub mod oauth;
pub mod request;
pub mod rest_proxy;
pub mod routing;
pub mod security;
pub mod passthrough;
pub mod stream;
pub mod tls;
pub(crate) mod token_cap;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use gatehouse_auth::{Env, KeyProvider, Peppers};
use gatehouse_providers::Upstream;
use gatehouse_providers::catalog::Catalog;
use gatehouse_store::bus::BusHandler;
use gatehouse_store::{Bus, Counters, MemoryCounters, MemoryReplayCache, ReplayCache, Store, StoreError};
use http::{HeaderValue, header};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::calllog::{CallLogSink, CallRecorder, RecordGuard};
use crate::dialect::{Dialect, render_error};
use crate::error::{ErrorCodeTag, method_not_allowed};
use crate::limits::Limiter;
use crate::pricing::Prices;
use crate::routing::Routing;

/// Name of the request-id header set on every response (errors included).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Tunables of the data plane.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Largest accepted request body in bytes (default 4 MiB); larger → 413 in OpenAI's shape.
    pub body_limit_bytes: usize,
    /// The environment of this deployment: only `gthk_<env>_…` keys authenticate.
    pub env: Env,
    /// After shutdown starts, how long in-flight streams may continue (default 30 s) before they
    /// end with an error event and `[DONE]`.
    pub stream_drain: Duration,
    /// Proxies whose `X-Forwarded-For` is believed when they are the socket peer (issue 5);
    /// empty (default) = the socket address is the client address.
    pub trusted_proxies: Vec<gatehouse_auth::cidr::Cidr>,
    /// The OAuth issuer identifier and resource id of this data plane (RFC 8414 §2), e.g.
    /// `https://gw.example.com`; default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// Model catalog (limits, prices): call-log `cost_usd`, `GET /v1/models` details, which
    /// models take `reasoning_effort`. Default: the built-in catalog.
    pub catalog: Arc<Catalog>,
    /// Load balancing, failover, circuit breaker and per-model options (issue 6,
    /// [`policy::RoutingSettings`]).
    pub routing: policy::RoutingSettings,
    /// DPoP (RFC 9449, issue 5): public base URL for `htu`, server nonces ([`dpop`]).
    pub dpop: dpop::DpopSettings,
    /// Longest wait for the next frame of a request body (default 15 s); a client that stalls
    /// longer is answered 408 `request_timeout` in its API's error shape and the connection is
    /// freed. Idle time between frames (tower-http `RequestBodyTimeoutLayer`), so a body that
    /// keeps trickling is bounded by `body_limit_bytes` instead.
    pub body_read_timeout: Duration,
    /// The exact-match response cache (size bound, clock); models opt in through the admin API.
    pub response_cache: cache::CacheSettings,
    /// `[rest] allow_upstream`: networks REST service nodes may reach although the SSRF guard
    /// ([`gatehouse_auth::cidr::refused_upstream`]) refuses them (loopback, link-local, …).
    /// Default empty.
    pub rest_allow_upstream: Arc<Vec<gatehouse_auth::cidr::Cidr>>,
    /// The data-plane listener requests client certificates (TLS with a client CA, RFC 8705).
    /// With it or with trusted proxies (which may pass `Client-Cert`), the OAuth metadata
    /// advertises `tls_client_certificate_bound_access_tokens`; otherwise no client could ever
    /// present a certificate and the metadata says `false`. Default false.
    pub client_certificates: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 4 * 1024 * 1024,
            env: Env::Live,
            stream_drain: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            issuer: "http://127.0.0.1:8080".into(),
            catalog: Arc::new(Catalog::builtin()),
            routing: policy::RoutingSettings::default(),
            dpop: dpop::DpopSettings::default(),
            body_read_timeout: Duration::from_secs(15),
            response_cache: cache::CacheSettings::default(),
            rest_allow_upstream: Arc::default(),
            client_certificates: false,
        }
    }
}

/// Everything the data plane needs from the server (contracts.md).
pub struct GatewayDeps {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub peppers: Arc<Peppers>,
    pub key_provider: Arc<dyn KeyProvider>,
    pub upstream: Upstream,
    pub settings: GatewaySettings,
    /// Cancelled when the server starts shutting down (starts the stream drain deadline).
    pub shutdown: CancellationToken,
    /// The audit log (issue 5): security events of the data plane are recorded here.
    pub audit: gatehouse_store::AuditSink,
}

/// Traffic control dependencies (issue 6): the shared counters of rate limits, quotas and
/// budgets, and the price lookup for spend limits. Default: in-memory counters (one node) and
/// the model catalog of [`GatewaySettings::catalog`] as the price list (one source of prices for
/// call-log cost and spend limits).
pub struct TrafficDeps {
    pub counters: Arc<dyn Counters>,
    /// `None`: the catalog of the gateway settings.
    pub prices: Option<Arc<dyn Prices>>,
    /// DPoP `jti` replay windows (issue 5): memory on one node, Redis shared by several.
    pub replay: Arc<dyn ReplayCache>,
    /// Seed `counters` from the call log at start ([`limits::Limiter::seed_from_call_log`]), so
    /// day/month quotas and token/spend caps survive a restart. True for the in-memory default;
    /// false for Redis counters (already durable and shared by every node).
    pub seed_from_call_log: bool,
}

impl Default for TrafficDeps {
    fn default() -> Self {
        Self { counters: Arc::new(MemoryCounters::new()), prices: None, replay: Arc::new(MemoryReplayCache::default()), seed_from_call_log: true }
    }
}

/// Why [`Gateway::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The routing snapshot could not be loaded from the store.
    #[error("loading routing from the store: {0}")]
    Store(#[from] StoreError),
}

/// Shared state of every data-plane request.
pub struct AppState {
    pub(crate) auth: Authenticator,
    pub(crate) routing: Routing,
    pub(crate) plane: failover::RoutePlane,
    pub(crate) limiter: Limiter,
    /// The default upstream client (failover uses `plane`, which holds it and per-model ones).
    #[allow(dead_code)]
    pub(crate) upstream: Upstream,
    pub(crate) sink: CallLogSink,
    pub(crate) settings: GatewaySettings,
    pub(crate) shutdown: CancellationToken,
    pub(crate) audit: gatehouse_store::AuditSink,
    pub(crate) first_use: security::FirstUse,
    pub(crate) oauth: Arc<gatehouse_oauth::OAuth>,
    pub(crate) dpop: dpop::Dpop,
    /// Per-credential anomaly detection and the audit rate gate (issue 5).
    pub(crate) anomaly: anomaly::Detector,
    pub(crate) cache: cache::ResponseCache,
    /// Issue 7: subscription admission, REST upstream pools and their client.
    pub(crate) admission: admission::Admission,
    pub(crate) rest_pools: rest_proxy::Pools,
    pub(crate) rest_client: reqwest::Client,
}

/// The data plane: state, background tasks (call-log writer, `last_used_at` batcher) and the
/// router factory.
pub struct Gateway {
    state: Arc<AppState>,
    tracker: TaskTracker,
    closing: CancellationToken,
}

impl Gateway {
    /// Loads the routing snapshot, subscribes to the bus (credential invalidation, routing
    /// reload) and starts the background tasks.
    ///
    /// Errors: [`GatewayError::Store`] if providers/models cannot be read.
    pub async fn new(deps: GatewayDeps) -> Result<Self, GatewayError> {
        Self::with_traffic(deps, TrafficDeps::default()).await
    }

    /// [`Gateway::new`] with explicit traffic-control dependencies (Redis counters for several
    /// nodes, a price catalog).
    pub async fn with_traffic(deps: GatewayDeps, traffic: TrafficDeps) -> Result<Self, GatewayError> {
        let routing = Routing::load(deps.store.clone(), deps.key_provider.clone()).await?;
        let tracker = TaskTracker::new();
        // Concurrency leases of a crashed node expire after the longest possible call.
        let lease_ttl = deps.upstream.timeouts().total + Duration::from_secs(60);
        let prices = traffic.prices.unwrap_or_else(|| deps.settings.catalog.clone() as Arc<dyn Prices>);
        let counters = traffic.counters.clone();
        let limiter = Limiter::load(deps.store.clone(), traffic.counters, prices, tracker.clone(), lease_ttl).await?;
        if traffic.seed_from_call_log {
            // In-memory counters start empty: continue the current day/month and every cap
            // where the call log left them (h5seed).
            let seeded = limiter.seed_from_call_log().await?;
            tracing::info!(buckets = seeded, "limit counters seeded from the call log");
        }
        let oauth = Arc::new(gatehouse_oauth::OAuth::new(gatehouse_oauth::OAuthDeps {
            store: deps.store.clone(),
            bus: deps.bus.clone(),
            peppers: deps.peppers.clone(),
            key_provider: deps.key_provider.clone(),
            env: deps.settings.env,
            issuer: deps.settings.issuer.clone(),
            // Security events of the authorization server go to the audit log (issue 5).
            events: Arc::new(gatehouse_oauth::AuditEvents::new(deps.audit.clone())),
        }));
        oauth.load().await?;
        // Exchange bounds a child's caps by what the parent has left in these counters (issue 5 H6).
        oauth.set_cap_usage(Arc::new(caps::CounterUsage(counters)));
        let dpop = dpop::Dpop::new(
            deps.settings.dpop.clone(),
            traffic.replay,
            deps.peppers.clone(),
            deps.settings.trusted_proxies.clone(),
        );
        let admission = admission::Admission::load(deps.store.clone()).await?;
        let (mut auth, touch_rx) = Authenticator::new(deps.store.clone(), deps.peppers.clone(), deps.settings.env);
        auth.set_oauth(oauth.clone());
        let response_cache = cache::ResponseCache::load(deps.store.clone(), &deps.settings.response_cache).await?;
        let (sink, log_rx) = CallLogSink::channel(calllog::CHANNEL_CAPACITY);
        let sink = sink.with_catalog(deps.settings.catalog.clone());
        let plane = failover::RoutePlane::new(deps.settings.routing.clone(), deps.upstream.clone());
        let rest_client = rest_proxy::client(deps.settings.rest_allow_upstream.clone());
        let state = Arc::new(AppState {
            auth,
            routing,
            plane,
            limiter,
            upstream: deps.upstream,
            sink,
            settings: deps.settings,
            shutdown: deps.shutdown,
            audit: deps.audit.clone(),
            first_use: security::FirstUse::default(),
            oauth,
            dpop,
            anomaly: anomaly::Detector::new(anomaly::AnomalyConfig::default(), deps.store.clone(), deps.bus.clone(), deps.audit.clone()),
            cache: response_cache,
            admission,
            rest_pools: rest_proxy::Pools::default(),
            rest_client,
        });
        let weak = Arc::downgrade(&state);
        let handler: BusHandler = Arc::new(move |event| {
            if let Some(s) = weak.upgrade() {
                s.auth.on_bus_event(event);
                s.routing.on_bus_event(event);
                s.limiter.on_bus_event(event);
                s.cache.on_bus_event(event);
                s.admission.on_bus_event(event);
            }
        });
        deps.bus.subscribe(handler);
        let closing = CancellationToken::new();
        tracker.spawn(calllog::run_writer(deps.store.clone(), log_rx, closing.clone()));
        tracker.spawn(auth::run_toucher(deps.store, touch_rx, closing.clone()));
        Ok(Self { state, tracker, closing })
    }

    /// The data-plane router (state applied). Unknown paths → 404, wrong methods → 405, both
    /// OpenAI-shaped.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        // Middleware order, outermost first (each runs before the next on the way in):
        // 0. mtls::client_certificate: settles the client certificate (TLS handshake or a
        //    trusted proxy's `Client-Cert`), strips that header, maps TLS connection info.
        // 1. request_context: generates the UUIDv7 request id, adds the `CallRecorder`
        //    extension, sets `x-request-id` on every response (errors included) and sends the
        //    call-log record unless a stream body took it over (`CallRecorder::defer`).
        // 2. TraceLayer: one `request` span (method, path without query, request id read from
        //    the `CallRecorder`); never records headers (so never `Authorization`) or the query.
        // 3. body_limit: `Content-Length` over the limit → 413 (handlers also stop reading at
        //    the limit for chunked bodies).
        //    Then the request body is wrapped in a read timeout (`body_read_timeout`; handlers
        //    answer 408 when it fires, `request::read_body`).
        // 4. auth (route_layer: matched routes only, so unknown paths answer 404): verifies the
        //    key, fills team/app/key into the `CallRecorder`, adds the `AuthContext` extension.
        // 5. handler (reads `AuthContext`, `CallRecorder`).
        let outer = ServiceBuilder::new()
            .layer(from_fn_with_state(state.clone(), mtls::client_certificate))
            .layer(from_fn_with_state(state.clone(), request_context))
            .layer(TraceLayer::new_for_http().make_span_with(make_span))
            .layer(from_fn_with_state(state.clone(), body_limit))
            .layer(RequestBodyTimeoutLayer::new(state.settings.body_read_timeout));
        Router::new()
            .route("/v1/chat/completions", post(handlers::chat_completions).fallback(|| async { method_not_allowed("POST") }))
            .route("/v1/embeddings", post(handlers::embeddings).fallback(|| async { method_not_allowed("POST") }))
            .route("/v1/models", get(handlers::list_models).fallback(|| async { method_not_allowed("GET") }))
            // GET: the OpenAI model object; POST `{model}:generateContent`: the Gemini API.
            .route(
                "/v1/models/{*model}",
                get(handlers::get_model).post(gemini_api::generate).fallback(|| async { method_not_allowed("GET") }),
            )
            // Inbound dialects (anthropic_api, gemini_api): errors in the client's own shape.
            .route(
                "/v1/messages",
                post(anthropic_api::messages).fallback(|| async { dialect_method_not_allowed(Dialect::Anthropic, "POST") }),
            )
            .route(
                "/v1beta/models/{*target}",
                post(gemini_api::generate).fallback(|| async { dialect_method_not_allowed(Dialect::Gemini, "POST") }),
            )
            // Azure-style paths (`azure_api`): `api-key` accepted here only.
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(azure_api::deployment_chat).fallback(|| async { method_not_allowed("POST") }),
            )
            .route(
                "/openai/deployments/{deployment}/embeddings",
                post(azure_api::deployment_embeddings).fallback(|| async { method_not_allowed("POST") }),
            )
            .route("/openai/v1/chat/completions", post(handlers::chat_completions).fallback(|| async { method_not_allowed("POST") }))
            .route("/openai/v1/embeddings", post(handlers::embeddings).fallback(|| async { method_not_allowed("POST") }))
            .route("/openai/v1/models", get(handlers::list_models).fallback(|| async { method_not_allowed("GET") }))
            // Issue 7: REST services (`rest_proxy`).
            .route("/svc/{slug}", axum::routing::any(rest_proxy::handle))
            .route("/svc/{slug}/{*path}", axum::routing::any(rest_proxy::handle))
            // Issue 7: prompt APIs (`prompt_api`).
            .route("/prompts/{slug}/{name}", post(prompt_api::handle).fallback(|| async { method_not_allowed("POST") }))
            .route_layer(axum::middleware::from_fn(admission::lifecycle_headers))
            .route_layer(from_fn_with_state(state.clone(), auth::auth_middleware))
            .merge(oauth::routes())
            .fallback(error::not_found)
            .layer(outer)
            .with_state(state)
    }

    /// The authorization server of this node (shared with the admin API for OAuth clients,
    /// revocation and introspection, so both act on the same deny-list and signing keys).
    pub fn oauth(&self) -> Arc<gatehouse_oauth::OAuth> {
        self.state.oauth.clone()
    }

    /// The routing health routes for the admin API (issue 6, [`health_api`]):
    /// `GET /health/deployments`, `POST /health/keys/{id}/restore`. Merge them below
    /// `/admin/v1`, behind operator authentication.
    pub fn admin_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        health_api::routes(self.state.clone())
    }

    /// A handle that refreshes the routing gauges of `/metrics` ([`MetricsExporter::refresh`]).
    pub fn metrics_exporter(&self) -> MetricsExporter {
        MetricsExporter { state: self.state.clone() }
    }

    /// Stops the background tasks after flushing: waits until every queued call-log record and
    /// `last_used_at` update is written. Call after the listener has drained.
    pub async fn close(self) {
        self.closing.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Refreshes the gauges of the routing health (circuit state and calls in flight per
/// deployment, status per provider key) in the installed `metrics` recorder; call it before
/// rendering a scrape. Cheap clone.
#[derive(Clone)]
pub struct MetricsExporter {
    state: Arc<AppState>,
}

impl MetricsExporter {
    /// Sets every routing gauge to its current value (`metrics` module table).
    pub async fn refresh(&self) {
        metrics::export(&self.state).await;
    }
}

/// 405 in a dialect's error shape, with `Allow`.
fn dialect_method_not_allowed(dialect: Dialect, allow: &'static str) -> Response {
    let mut resp = render_error(
        dialect,
        &gatehouse_types::ApiError::new(gatehouse_types::ErrorCode::MethodNotAllowed, format!("method not allowed on this route; use {allow}")),
    );
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

impl AppState {
    /// Whether the catalog knows `target`'s upstream model as a reasoning model (`None`: not in
    /// the catalog).
    pub(crate) fn reasoning_model(&self, target: &gatehouse_providers::Target) -> Option<bool> {
        self.settings.catalog.lookup(&target.upstream_model).map(|e| e.reasoning_model)
    }
}

fn make_span(req: &Request) -> tracing::Span {
    let request_id = req.extensions().get::<CallRecorder>().map_or("", |r| r.request_id());
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
}

async fn request_context(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let endpoint = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        // Unmatched paths are not logged verbatim: they are client-controlled.
        None => format!("{} *", req.method()),
    };
    let rec = CallRecorder::new(state.sink.clone(), &request_id, &endpoint, Instant::now(), calllog::wall_now());
    req.extensions_mut().insert(rec.clone());
    // Sends the record as "client disconnected" if this future is dropped mid-request.
    let guard = RecordGuard::for_request(rec.clone());
    let mut resp = next.run(req).await;
    if !rec.is_deferred() {
        let code = resp.extensions().get::<ErrorCodeTag>().map(|t| t.0);
        rec.finish(resp.status().as_u16(), code);
    }
    drop(guard);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

async fn body_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.settings.body_limit_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return render_error(Dialect::of(req.method(), req.uri().path()), &request::too_large(limit));
    }
    next.run(req).await
}
