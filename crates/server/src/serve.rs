//! `gatehouse serve`, `check-config` and `migrate`: configuration, startup wiring and graceful
//! shutdown.
//!
//! Startup order: config (file < env < CLI) → tracing (stderr) → data dir (0700 when created) →
//! master key (`GATEHOUSE_MASTER_KEY` or `<data_dir>/master.key`, created 0600) → store +
//! migrations → first-start bootstrap (prints the admin password and operator token once) →
//! providers and models from env/file (and the demo mock) upserted → gateway + admin routers →
//! both listeners → addresses printed.
//!
//! Shutdown (SIGTERM or Ctrl-C): stop accepting (axum graceful shutdown), cancel the shutdown
//! token (streams get `stream_drain` to finish), wait for in-flight requests bounded by the
//! drain deadline, `Gateway::close` (flushes the call log), exit 0.

use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gatehouse_admin::service::{DeploymentRequest, UpsertModelRequest, UpsertProviderRequest};
use gatehouse_admin::{AdminDeps, AdminService, BootstrapOptions};
use gatehouse_auth::token::Env;
use gatehouse_auth::{LocalKeyProvider, MasterKey, Peppers};
use gatehouse_config::{
    Config, ConfigErrors, LogFormat, OverrideSource, Overrides, ProcessEnv, ProviderKindName, RunEnv, Sources,
};
use gatehouse_gateway::{Gateway, GatewayDeps, GatewaySettings};
use gatehouse_providers::{Timeouts, Upstream};
use gatehouse_store::{MemoryBus, Store};
use gatehouse_testkit::MockProvider;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

/// Where the configuration comes from (shared by `serve` and `migrate`).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// TOML config file (env GATEHOUSE_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: SQLite database and master key (env GATEHOUSE_DATA_DIR; default
    /// ./gatehouse-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// sqlite://PATH or postgres://… (env GATEHOUSE_DATABASE_URL; default
    /// sqlite://<data_dir>/gatehouse.db).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// Flags of `gatehouse serve`. Each also has an environment variable, read explicitly by
/// `gatehouse_config::Overrides::from_env`; the command line wins over the environment, which
/// wins over the file.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Data-plane address (env GATEHOUSE_LISTEN; default 0.0.0.0:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin API address (env GATEHOUSE_ADMIN_LISTEN; default 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Start the built-in mock provider and register providers `mock`/`mock-anthropic` and
    /// models `demo`/`demo-claude`.
    #[arg(long)]
    demo: bool,
    /// Redis for rate-limit counters shared by several nodes (env GATEHOUSE_REDIS_URL;
    /// default: in-memory counters, one node).
    #[arg(long, value_name = "URL", env = "GATEHOUSE_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Public base URL of the data plane: DPoP `htu` base and OAuth issuer (env
    /// GATEHOUSE_PUBLIC_URL; file `[dpop] public_url`).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Demand DPoP server nonces: true or false (env GATEHOUSE_DPOP_NONCES; file `[dpop] nonces`).
    #[arg(long, value_name = "BOOL")]
    dpop_nonces: Option<String>,
    /// DPoP proof `jti` replay window, 70s–10m (env GATEHOUSE_DPOP_REPLAY_WINDOW; file
    /// `[dpop] replay_window`; default 90s).
    #[arg(long, value_name = "DURATION")]
    dpop_replay_window: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// TLS on the data-plane listener (issue 5, RFC 8705); each also `[tls]` in the file and an
/// environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// PEM server certificate chain for the data plane: serve HTTPS (env GATEHOUSE_TLS_CERT;
    /// needs --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key of --tls-cert (env GATEHOUSE_TLS_KEY).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// PEM CA bundle for client certificates: request them (optional for clients) and verify
    /// them against it, for certificate-bound tokens (RFC 8705; env GATEHOUSE_TLS_CLIENT_CA).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<String>,
}

fn config_path(flag: &Option<PathBuf>) -> Option<PathBuf> {
    flag.clone().or_else(|| std::env::var_os("GATEHOUSE_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
}

fn load_config(store: &StoreArgs, flags: Overrides, demo: bool) -> Result<Config, ConfigErrors> {
    let file = config_path(&store.config);
    let cli = Overrides {
        source: OverrideSource::Cli,
        data_dir: store.data_dir.clone(),
        database_url: store.database_url.clone(),
        ..flags
    };
    let extra = if demo { vec![DEMO_OPENAI.to_string(), DEMO_ANTHROPIC.to_string()] } else { Vec::new() };
    gatehouse_config::load(&Sources { file: file.as_deref(), env: &ProcessEnv, cli, extra_providers: extra })
}

fn report_config_errors(errors: &ConfigErrors) {
    eprintln!("error: invalid configuration ({} problem{}):", errors.0.len(), if errors.0.len() == 1 { "" } else { "s" });
    for issue in &errors.0 {
        eprintln!("  {issue}");
    }
}

/// The data-plane TLS files of `config` as the gateway's listener reads them.
fn tls_files(tls: &gatehouse_config::TlsConfig) -> gatehouse_gateway::tls::TlsFiles {
    gatehouse_gateway::tls::TlsFiles { cert: tls.cert.clone(), key: tls.key.clone(), client_ca: tls.client_ca.clone() }
}

/// [`gatehouse_config::load`] plus, with TLS configured, building the listener's TLS
/// configuration from the files (issue `tls`, the file named in the message).
fn load_checked(sources: &Sources<'_>) -> Result<Config, ConfigErrors> {
    gatehouse_config::load(sources).and_then(|config| match &config.tls {
        Some(tls) => match gatehouse_gateway::tls::server_config(&tls_files(tls)) {
            Ok(_) => Ok(config),
            Err(e) => Err(ConfigErrors(vec![gatehouse_config::ConfigIssue::new("tls", e)])),
        },
        None => Ok(config),
    })
}

/// `gatehouse check-config FILE`: "ok" and 0, or every problem and 1. With `[tls]`, the PEM
/// files are read and checked as `serve` would (certificate, matching key, client CA bundle).
pub fn check_config(file: &Path) -> ExitCode {
    let sources = Sources { file: Some(file), env: &ProcessEnv, cli: Overrides::default(), extra_providers: Vec::new() };
    match load_checked(&sources) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error{}", file.display(), errors.0.len(), if errors.0.len() == 1 { "" } else { "s" });
            for issue in &errors.0 {
                eprintln!("  {issue}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `gatehouse migrate`.
pub async fn migrate(args: StoreArgs) -> ExitCode {
    let config = match load_config(&args, Overrides::default(), false) {
        Ok(c) => c,
        Err(e) => {
            report_config_errors(&e);
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config);
    match open_store(&config).await {
        Ok(_) => {
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if result.is_err() {
        eprintln!("warning: tracing was already initialised");
    }
}

/// Creates the data directory (0700 when new) if needed.
fn ensure_data_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))
}

/// The master key: `GATEHOUSE_MASTER_KEY` (64 hex chars or base64 of 32 bytes), else
/// `<data_dir>/master.key`, generated on first use and created with mode 0600 (never chmod'ed
/// after the fact, so it is never readable by others, not even briefly).
fn master_key(data_dir: &Path) -> Result<MasterKey, String> {
    if let Some(v) = std::env::var("GATEHOUSE_MASTER_KEY").ok().filter(|v| !v.is_empty()) {
        let v = SecretString::from(v);
        return MasterKey::parse(v.expose_secret().trim())
            .map_err(|_| "GATEHOUSE_MASTER_KEY must be 64 hex characters or base64 of 32 bytes".to_string());
    }
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "the master key file is readable by group or others; chmod 600 it");
            }
            let text = SecretString::from(text);
            MasterKey::parse(text.expose_secret().trim())
                .map_err(|_| format!("{} does not hold a valid master key", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate().map_err(|_| "the operating system has no random source".to_string())?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let encoded = key.to_encoded();
            file.write_all(encoded.expose_secret().as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new master key (back it up: without it stored provider keys cannot be decrypted)");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, String> {
    let url = config.database_url.expose_secret();
    if url.starts_with("sqlite:") {
        ensure_data_dir(&config.data_dir)?;
    }
    let store = gatehouse_store::connect(url).await.map_err(|e| format!("cannot open the database: {e}"))?;
    store.migrate().await.map_err(|e| format!("database migration failed: {e}"))?;
    Ok(store)
}

/// Demo provider names (contracts.md "Demo").
pub const DEMO_OPENAI: &str = "mock";
/// Demo Anthropic-kind provider name.
pub const DEMO_ANTHROPIC: &str = "mock-anthropic";

fn secret_env(name: &str) -> Option<SecretString> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).map(SecretString::from)
}

/// `gatehouse serve`.
pub async fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(
        &args.store,
        Overrides {
            listen: args.listen.clone(),
            admin_listen: args.admin_listen.clone(),
            public_url: args.public_url.clone(),
            dpop_nonces: args.dpop_nonces.clone(),
            dpop_replay_window: args.dpop_replay_window.clone(),
            tls_cert: args.tls.tls_cert.clone(),
            tls_key: args.tls.tls_key.clone(),
            tls_client_ca: args.tls.tls_client_ca.clone(),
            ..Default::default()
        },
        args.demo,
    ) {
        Ok(c) => c,
        Err(e) => {
            report_config_errors(&e);
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config);
    match run(config, args.demo, args.redis_url.clone()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, demo: bool, redis_url: Option<String>) -> Result<(), String> {
    ensure_data_dir(&config.data_dir)?;
    let master = master_key(&config.data_dir)?;
    let store = open_store(&config).await?;
    let env = match config.env {
        RunEnv::Live => Env::Live,
        RunEnv::Test => Env::Test,
    };
    let bus = Arc::new(MemoryBus::new());
    let peppers = Arc::new(Peppers::from_master_key(&master));
    let key_provider: Arc<LocalKeyProvider> = Arc::new(LocalKeyProvider::new(&master));
    drop(master);
    // The audit writer runs until after both listeners have drained (flushed in `close`).
    let (audit, audit_writer) = gatehouse_store::AuditSink::spawn(store.clone());
    let traffic = crate::traffic::traffic_deps(redis_url.as_deref()).await?;
    let admin = Arc::new(
        AdminService::new(AdminDeps {
            store: store.clone(),
            bus: bus.clone(),
            peppers: peppers.clone(),
            key_provider: key_provider.clone(),
            env,
            audit: audit.clone(),
        })
        .with_counters(traffic.counters.clone())
        .with_trusted_proxies(trusted_proxies()?)
        .with_rest_allow_upstream(rest_allow_upstream(&config)?),
    );

    // First start.
    let opts = BootstrapOptions {
        admin_password: secret_env("GATEHOUSE_ADMIN_PASSWORD"),
        operator_token: secret_env("GATEHOUSE_OPERATOR_TOKEN"),
    };
    match admin.bootstrap(opts).await {
        Ok(Some(out)) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "gatehouse: first start: created team \"default\", app \"default\" and user \"admin\"");
            if out.password_generated {
                let _ = writeln!(stdout, "admin password: {}", out.admin_password.expose_secret());
            } else {
                let _ = writeln!(stdout, "admin password: (from GATEHOUSE_ADMIN_PASSWORD)");
            }
            if out.token_generated {
                let _ = writeln!(stdout, "operator token: {}", out.operator_token.expose_secret());
            } else {
                let _ = writeln!(stdout, "operator token: (from GATEHOUSE_OPERATOR_TOKEN)");
            }
            let _ = writeln!(stdout, "gatehouse: these are shown only once; store them now (use the token as GATEHOUSE_ADMIN_TOKEN)");
            let _ = stdout.flush();
        }
        Ok(None) => tracing::debug!("store already bootstrapped"),
        Err(e) => return Err(format!("first-start setup failed: {}", e.message)),
    }

    // Providers and models from env and file; the demo mock.
    let mut mock = None;
    if demo {
        // A fresh random key per start: the demo exercises the same sealed-key path as real
        // providers, and the mock rejects calls that do not carry it.
        let mut raw = [0u8; 24];
        gatehouse_auth::random_bytes(&mut raw).map_err(|_| "the operating system has no random source".to_string())?;
        let mock_key = SecretString::from(format!("sk-mock-{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>()));
        let m = MockProvider::builder()
            .expected_key(mock_key.expose_secret().to_string())
            .start()
            .await
            .map_err(|e| format!("cannot start the demo mock provider: {e}"))?;
        for (name, kind, base) in [
            (DEMO_OPENAI, ProviderKindName::OpenAi, m.openai_base_url()),
            (DEMO_ANTHROPIC, ProviderKindName::Anthropic, m.anthropic_base_url()),
        ] {
            upsert_provider(&admin, name, kind, Some(base), Some(mock_key.clone())).await?;
        }
        for (model, provider, upstream) in [("demo", DEMO_OPENAI, "mock-gpt"), ("demo-claude", DEMO_ANTHROPIC, "mock-claude")] {
            let req = UpsertModelRequest {
                name: model.to_string(),
                deployments: vec![DeploymentRequest { provider: provider.into(), model: upstream.into(), weight: 1, priority: 0 }],
            };
            admin.upsert_model(req).await.map_err(|e| format!("registering demo model {model}: {}", e.message))?;
        }
        tracing::info!(addr = %m.addr(), "demo mock provider started");
        mock = Some(m);
    }
    for p in &config.providers {
        upsert_provider(&admin, &p.name, p.kind, p.base_url.clone(), p.api_key.clone()).await?;
    }
    for m in &config.models {
        let req = UpsertModelRequest {
            name: m.name.clone(),
            deployments: m
                .deployments
                .iter()
                .map(|d| DeploymentRequest { provider: d.provider.clone(), model: d.model.clone(), weight: d.weight, priority: d.priority })
                .collect(),
        };
        admin.upsert_model(req).await.map_err(|e| format!("registering model {}: {}", m.name, e.message))?;
    }

    // Data plane and admin API.
    let shutdown = CancellationToken::new();
    let upstream = Upstream::new(Timeouts {
        connect: config.upstream.connect,
        first_byte: config.upstream.first_byte,
        idle: config.upstream.idle,
        total: config.upstream.total,
    })
    .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
    let gateway = Gateway::with_traffic(GatewayDeps {
        store: store.clone(),
        bus: bus.clone(),
        peppers,
        key_provider,
        upstream,
        settings: GatewaySettings {
            body_limit_bytes: config.body_limit_bytes,
            env,
            stream_drain: config.shutdown_drain,
            body_read_timeout: config.body_read_timeout,
            trusted_proxies: trusted_proxies()?,
            issuer: issuer_for(config.dpop.public_url.as_deref(), &config.listen.to_string(), config.tls.is_some()),
            // Built-in model catalog, overridden by `<data_dir>/models.toml` when present.
            catalog: Arc::new(
                gatehouse_providers::catalog::Catalog::load(&config.data_dir.join("models.toml")).map_err(|e| e.to_string())?,
            ),
            routing: crate::traffic::routing_settings(&config),
            dpop: crate::dpop_settings::from_config(&config.dpop)?,
            response_cache: Default::default(),
            rest_allow_upstream: Arc::new(rest_allow_upstream(&config)?),
            client_certificates: config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        },
        shutdown: shutdown.clone(),
        audit,
    }, traffic)
    .await
    .map_err(|e| format!("cannot start the gateway: {e}"))?;
    // OAuth clients, revocation and introspection in the admin API use the data plane's server.
    admin.attach_oauth(gateway.oauth());

    // TLS (issue 5, RFC 8705): built before binding so bad files stop the start.
    let tls = match &config.tls {
        Some(t) => Some(gatehouse_gateway::tls::server_config(&tls_files(t))?),
        None => None,
    };
    let data_listener = bind(config.listen, "data plane").await?;
    let admin_listener = bind(config.admin_listen, "admin API").await?;
    let data_addr = data_listener.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "gatehouse: data plane listening on {scheme}://{data_addr}");
        let _ = writeln!(stdout, "gatehouse: admin API listening on http://{admin_addr}");
        let _ = stdout.flush();
    }
    tracing::info!(%data_addr, %admin_addr, demo, tls = tls.is_some(), client_ca = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "gatehouse started");

    let (data_router, data_stop) = (gateway.router(), shutdown.clone());
    let data = async move {
        match tls {
            None => {
                axum::serve(data_listener, data_router.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(data_stop.cancelled_owned())
                    .await
            }
            Some(tls) => {
                let listener = gatehouse_gateway::tls::TlsListener::new(data_listener, tls)?;
                axum::serve(listener, data_router.into_make_service_with_connect_info::<gatehouse_gateway::mtls::TlsPeer>())
                    .with_graceful_shutdown(data_stop.cancelled_owned())
                    .await
            }
        }
    };
    // Admin API plus the gateway's routing health (issue 6) and `/metrics`.
    let admin_router = gatehouse_admin::router_with(admin.clone(), gateway.admin_routes())
        .merge(crate::metrics_http::routes(gateway.metrics_exporter()));
    // With the peer address: login throttling counts failures per client IP (issue 7, M8).
    let admin_srv = axum::serve(admin_listener, admin_router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let servers = async { tokio::join!(data, admin_srv.into_future()) };
    tokio::pin!(servers);

    let mut failed = None;
    tokio::select! {
        (d, a) = &mut servers => {
            // Only reachable if a server fails (graceful shutdown was not requested).
            failed = d.err().or(a.err()).map(|e| format!("server stopped: {e}"));
        }
        sig = shutdown_signal() => {
            tracing::info!(signal = sig, drain_secs = config.shutdown_drain.as_secs(), "shutting down: draining in-flight requests");
            shutdown.cancel();
            // Streams end by themselves after `stream_drain`; allow a little more for them to
            // write their last events, then stop waiting.
            let deadline = config.shutdown_drain + Duration::from_secs(5);
            match tokio::time::timeout(deadline, &mut servers).await {
                Ok(_) => tracing::info!("all connections drained"),
                Err(_) => tracing::warn!("drain deadline passed; closing remaining connections"),
            }
        }
    }
    shutdown.cancel();
    gateway.close().await;
    tracing::info!("call log flushed");
    audit_writer.close().await;
    tracing::info!("audit log flushed");
    if let Some(m) = mock {
        m.shutdown().await;
    }
    match failed {
        Some(e) => Err(e),
        None => {
            tracing::info!("gatehouse stopped");
            Ok(())
        }
    }
}

async fn upsert_provider(
    admin: &AdminService,
    name: &str,
    kind: ProviderKindName,
    base_url: Option<String>,
    api_key: Option<SecretString>,
) -> Result<(), String> {
    let req = UpsertProviderRequest { name: name.to_string(), kind, base_url, api_key };
    admin.upsert_provider(req).await.map(|_| ()).map_err(|e| format!("registering provider {name}: {}", e.message))
}

/// `GATEHOUSE_TRUSTED_PROXIES`: comma-separated CIDRs of reverse proxies whose
/// `X-Forwarded-For` names the client (issue 5); unset = none (the socket peer is the client).
fn trusted_proxies() -> Result<Vec<gatehouse_auth::cidr::Cidr>, String> {
    let Ok(v) = std::env::var("GATEHOUSE_TRUSTED_PROXIES") else { return Ok(Vec::new()) };
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| gatehouse_auth::cidr::Cidr::parse(s).map_err(|e| format!("GATEHOUSE_TRUSTED_PROXIES: `{s}`: {e}")))
        .collect()
}

/// `[rest] allow_upstream` / `GATEHOUSE_REST_ALLOW_UPSTREAM` (config checked the syntax): CIDRs
/// REST service nodes may reach although the SSRF guard refuses them (loopback, link-local, …;
/// tester H4), e.g. `127.0.0.0/8` for development; default none.
fn rest_allow_upstream(config: &Config) -> Result<Vec<gatehouse_auth::cidr::Cidr>, String> {
    config
        .rest_allow_upstream
        .iter()
        .map(|s| gatehouse_auth::cidr::Cidr::parse(s).map_err(|e| format!("rest.allow_upstream: `{s}`: {e}")))
        .collect()
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT); returns the signal's name.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    }
}

/// The OAuth issuer (issue 5): the configured public URL (`[dpop] public_url`,
/// `GATEHOUSE_PUBLIC_URL`, `--public-url`) if set, else `http://<listen address>` (`https://`
/// when the data plane serves TLS) with an unspecified host replaced by `127.0.0.1`.
fn issuer_for(public_url: Option<&str>, listen: &str, tls: bool) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn check_config_reads_the_tls_files() {
        let dir = std::env::temp_dir().join(format!("gatehouse-check-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), "not a certificate\n").unwrap();
        std::fs::write(dir.join("key.pem"), "not a key\n").unwrap();
        let toml = format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", dir.join("cert.pem").display(), dir.join("key.pem").display());
        std::fs::write(dir.join("gatehouse.toml"), toml).unwrap();
        let file = dir.join("gatehouse.toml");
        let env: std::collections::HashMap<String, String> = Default::default();
        let sources = Sources { file: Some(&file), env: &env, cli: Overrides::default(), extra_providers: Vec::new() };
        // The file itself is valid; the PEM content is not.
        assert!(gatehouse_config::load(&sources).unwrap().tls.is_some());
        let err = load_checked(&sources).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].path, "tls");
        assert!(err.0[0].message.contains("tls.cert") && err.0[0].message.contains("no PEM CERTIFICATE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_issuer_follows_the_listener_scheme() {
        assert_eq!(issuer_for(None, "0.0.0.0:8443", true), "https://127.0.0.1:8443");
        assert_eq!(issuer_for(None, "0.0.0.0:8080", false), "http://127.0.0.1:8080");
        assert_eq!(issuer_for(Some("https://gw.example.com/"), "0.0.0.0:8080", false), "https://gw.example.com");
    }
}
