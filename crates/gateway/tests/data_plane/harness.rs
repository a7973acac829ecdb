//! Test harness: the real gateway router served in-process on 127.0.0.1:0 over a SQLite store in
//! a temp dir, with the testkit mock as the upstream of providers `mock` (OpenAI kind) and
//! `mock-anthropic` (Anthropic kind), `mock-bedrock` (Bedrock kind, SigV4 credentials whose
//! secret access key is [`PROVIDER_KEY`], reached by the explicit form only); public models
//! `demo` → mock/`mock-gpt`, `demo-claude` → mock-anthropic/`mock-claude`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use gatehouse_auth::{Aad, Env, KeyProvider, LocalKeyProvider, MasterKey, Peppers, TokenKind};
use gatehouse_gateway::{Gateway, GatewayDeps, GatewaySettings};
use gatehouse_providers::{Timeouts, Upstream};
use gatehouse_store::*;
use gatehouse_testkit::MockProvider;
use gatehouse_types::{Id, Timestamp, new_id, now};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::counting::CountingStore;

/// The provider key the mock expects (the gateway holds it sealed).
pub const PROVIDER_KEY: &str = "sk-mock-provider-key-0123456789";

/// The AWS access key id of provider `mock-bedrock` (its secret access key is [`PROVIDER_KEY`]).
pub const BEDROCK_ACCESS_KEY_ID: &str = "AKIDGATEWAYTEST";

/// Knobs of one harness.
#[derive(Default)]
pub struct Options {
    pub timeouts: Timeouts,
    pub settings: GatewaySettings,
    /// Traffic control (issue 6): counters and prices; default in-memory + built-in prices.
    pub counters: Option<Arc<dyn Counters>>,
    pub prices: Option<Arc<dyn gatehouse_gateway::pricing::Prices>>,
    /// Serve HTTPS with these files (the real TLS listener, `gatehouse_gateway::tls`); `base`
    /// is then `https://127.0.0.1:PORT` and `client` trusts nothing (build your own).
    pub tls: Option<gatehouse_gateway::tls::TlsFiles>,
}

pub struct Harness {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<CountingStore>,
    pub bus: Arc<MemoryBus>,
    pub peppers: Arc<Peppers>,
    /// Seals provider keys (routing tests add providers with key pools).
    pub key_provider: Arc<dyn KeyProvider>,
    pub mock: MockProvider,
    pub team_id: Id,
    pub app_id: Id,
    /// An unrestricted live key.
    pub key: String,
    pub shutdown: CancellationToken,
    /// The audit sink of the gateway (`flush` before reading `audit_events`).
    pub audit: gatehouse_store::AuditSink,
    gateway: Option<Gateway>,
    server: Option<tokio::task::JoinHandle<()>>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-gateway-test-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = connect(&format!("sqlite://{}", dir.join("gatehouse.db").display())).await.unwrap();
        raw.migrate().await.unwrap();
        let store = Arc::new(CountingStore { inner: raw, credential_lookups: AtomicUsize::new(0), lineage_reads: AtomicUsize::new(0), queries: AtomicUsize::new(0) });
        let master = MasterKey::generate().unwrap();
        let peppers = Arc::new(Peppers::from_master_key(&master));
        let key_provider: Arc<dyn KeyProvider> = Arc::new(LocalKeyProvider::new(&master));
        let bus = Arc::new(MemoryBus::new());

        let team = Team { id: new_id(), name: "default".into(), created_at: now() };
        store.create_team(&team).await.unwrap();
        let app = App { id: new_id(), team_id: team.id, name: "default".into(), created_at: now() };
        store.create_app(&app).await.unwrap();

        let mock = MockProvider::builder().expected_key(PROVIDER_KEY).start().await.unwrap();
        let openai = add_provider(&*store, &*key_provider, team.id, "mock", "openai", &mock.openai_base_url(), PROVIDER_KEY).await;
        let anthropic =
            add_provider(&*store, &*key_provider, team.id, "mock-anthropic", "anthropic", &mock.anthropic_base_url(), PROVIDER_KEY).await;
        let sigv4 = gatehouse_types::aws::credentials_secret(BEDROCK_ACCESS_KEY_ID, PROVIDER_KEY, None, Some("us-east-1"));
        add_provider(&*store, &*key_provider, team.id, "mock-bedrock", "bedrock", &mock.bedrock_base_url(), &sigv4).await;
        add_model(&*store, "demo", openai, "mock-gpt").await;
        add_model(&*store, "demo-claude", anthropic, "mock-claude").await;

        let run = launch(&store, &bus, &peppers, &key_provider, opts).await;
        let mut h = Self {
            base: run.base,
            client: reqwest::Client::new(),
            store,
            bus,
            peppers,
            key_provider,
            mock,
            team_id: team.id,
            app_id: app.id,
            key: String::new(),
            shutdown: run.shutdown,
            audit: run.audit,
            gateway: Some(run.gateway),
            server: Some(run.server),
            dir,
        };
        h.key = h.create_key(&[], None).await.1;
        h
    }

    /// Creates a live API key; returns its id and plaintext.
    pub async fn create_key(&self, models: &[&str], expires_at: Option<Timestamp>) -> (Id, String) {
        self.create_key_with(models, expires_at, |_| {}).await
    }

    /// Creates a live API key after `adjust` changed the record (scopes, security attributes).
    pub async fn create_key_with(&self, models: &[&str], expires_at: Option<Timestamp>, adjust: impl FnOnce(&mut Credential)) -> (Id, String) {
        let generated = gatehouse_auth::generate(TokenKind::ApiKey, Env::Live).unwrap();
        let token = generated.token.expose_secret().to_string();
        let credential = Credential {
            id: new_id(),
            team_id: self.team_id,
            app_id: self.app_id,
            name: "test".into(),
            digest: self.peppers.digest(&token).to_vec(),
            pepper_version: self.peppers.current_version(),
            hint: generated.hint,
            models: models.iter().map(|m| (*m).to_string()).collect(),
            scopes: vec![],
            expires_at,
            revoked_at: None,
            last_used_at: None,
            created_at: now(),
            security: Default::default(),
        };
        let mut credential = credential;
        adjust(&mut credential);
        self.store.create_credential(&credential).await.unwrap();
        (credential.id, token)
    }

    /// Revokes like the admin API does: store, then a bus event.
    pub async fn revoke(&self, id: Id, token: &str) {
        assert!(self.store.revoke_credential(id, now()).await.unwrap());
        self.bus.publish(BusEvent::CredentialChanged { id, digest: self.peppers.digest(token).to_vec() });
    }

    /// The id of the harness's own key (`self.key`).
    pub async fn key_id(&self) -> Id {
        let digest = self.peppers.digest(&self.key).to_vec();
        self.store.find_credential(&digest).await.unwrap().unwrap().id
    }

    /// The gateway's routing-health routes (issue 6), as the admin API mounts them below
    /// `/admin/v1`.
    pub fn health_routes(&self) -> axum::Router {
        self.gateway.as_ref().unwrap().admin_routes()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap()
    }

    pub async fn chat(&self, model: &str, stream: Option<bool>) -> reqwest::Response {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]});
        if let Some(s) = stream {
            body["stream"] = json!(s);
        }
        self.post("/v1/chat/completions", Some(&self.key), &body).await
    }

    /// A restart over the same data dir (h5seed): stops the server, closes the gateway (the call
    /// log is flushed), then starts a new gateway (HTTP, `opts`) on the same store, peppers and
    /// keys, on a new port (HTTPS when `opts.tls`); in-process state (counters, caches) starts
    /// anew.
    pub async fn restart(&mut self, opts: Options) {
        self.finish().await;
        let run = launch(&self.store, &self.bus, &self.peppers, &self.key_provider, opts).await;
        self.base = run.base;
        self.server = Some(run.server);
        self.gateway = Some(run.gateway);
        self.shutdown = run.shutdown;
        self.audit = run.audit;
    }

    /// Stops the server (graceful), closes the gateway (flushes the call log) and returns
    /// every call-log record, oldest first.
    pub async fn finish(&mut self) -> Vec<CallLog> {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server).await.unwrap().unwrap();
        }
        if let Some(g) = self.gateway.take() {
            g.close().await;
        }
        let mut logs = self
            .store
            .query_call_logs(&CallLogQuery { limit: Some(1000), ..CallLogQuery::default() })
            .await
            .unwrap();
        logs.reverse();
        logs
    }
}

/// A gateway serving on a fresh port over `store`, `bus`, `peppers` and `key_provider`.
struct Running {
    gateway: Gateway,
    base: String,
    server: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    audit: gatehouse_store::AuditSink,
}

/// Builds the gateway with `opts` and serves it on 127.0.0.1:0 (HTTPS with `opts.tls`).
async fn launch(store: &Arc<CountingStore>, bus: &Arc<MemoryBus>, peppers: &Arc<Peppers>, key_provider: &Arc<dyn KeyProvider>, opts: Options) -> Running {
    let shutdown = CancellationToken::new();
    let audit = gatehouse_store::AuditSink::spawn(store.clone()).0;
    let deps = GatewayDeps {
        store: store.clone(),
        bus: bus.clone(),
        peppers: peppers.clone(),
        key_provider: key_provider.clone(),
        upstream: Upstream::new(opts.timeouts).unwrap(),
        settings: opts.settings,
        shutdown: shutdown.clone(),
        audit: audit.clone(),
    };
    let mut traffic = gatehouse_gateway::TrafficDeps::default();
    if let Some(c) = opts.counters {
        traffic.counters = c;
    }
    if let Some(p) = opts.prices {
        traffic.prices = Some(p);
    }
    let gateway = Gateway::with_traffic(deps, traffic).await.unwrap();
    let router = gateway.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = shutdown.clone();
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let server = match opts.tls {
        None => tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(token.cancelled_owned()).await.unwrap();
        }),
        Some(files) => {
            let config = gatehouse_gateway::tls::server_config(&files).unwrap();
            let listener = gatehouse_gateway::tls::TlsListener::new(listener, config).unwrap();
            tokio::spawn(async move {
                axum::serve(listener, router.into_make_service_with_connect_info::<gatehouse_gateway::mtls::TlsPeer>())
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
                    .unwrap();
            })
        }
    };
    Running { gateway, base: format!("{scheme}://{addr}"), server, shutdown, audit }
}

async fn add_provider(store: &dyn Store, kp: &dyn KeyProvider, team_id: Id, name: &str, kind: &str, base: &str, secret: &str) -> Id {
    let provider = Provider {
        id: new_id(),
        name: name.into(),
        kind: kind.into(),
        base_url: base.into(),
        settings: json!({}),
        created_at: now(),
    };
    let stored = store.upsert_provider(&provider).await.unwrap();
    let credential_id = new_id();
    let aad = Aad { tenant_id: team_id, credential_id, provider: name.into() };
    let sealed = gatehouse_auth::seal(kp, &aad, secret.as_bytes()).unwrap();
    let record = ProviderCredential {
        id: credential_id,
        provider_id: stored.id,
        team_id,
        hint: gatehouse_auth::secret_hint(secret),
        format_version: sealed.format_version,
        kek_id: sealed.kek_id,
        wrapped_dek: sealed.wrapped_dek,
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext,
        priority: 0,
        revoked_at: None,
        created_at: now(),
    };
    store.create_provider_credential(&record).await.unwrap();
    stored.id
}

async fn add_model(store: &dyn Store, name: &str, provider_id: Id, upstream: &str) {
    let model = Model {
        id: new_id(),
        name: name.into(),
        deployments: vec![Deployment { id: new_id(), provider_id, upstream_model: upstream.into(), weight: 1, priority: 0 }],
        created_at: now(),
    };
    store.upsert_model(&model).await.unwrap();
}

/// The `data:` payloads of an SSE body, in order (comments and blank lines skipped).
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            let lines: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

/// The concatenated `choices[0].delta.content` of OpenAI chunks.
pub fn stream_content(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// The response's `x-request-id`.
pub fn request_id(resp: &reqwest::Response) -> String {
    resp.headers().get("x-request-id").expect("x-request-id on every answer").to_str().unwrap().to_string()
}
