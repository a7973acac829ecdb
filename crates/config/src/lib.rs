//! Gatehouse configuration: schema, loading and validation.
//!
//! Sources, lowest precedence first: the optional TOML file ([`RawConfig`]), the process
//! environment (`GATEHOUSE_*`, read by name in [`Overrides::from_env`]), the command line
//! ([`Overrides`] filled by the binary). The merge is written out field by field in [`load`]; no
//! library maps environment variables to keys behind our back, and nothing writes to the
//! environment.
//!
//! Validation never stops at the first problem: [`load`] returns [`ConfigErrors`] holding every
//! issue, each with the path of the offending key (`providers[1].kind`, `env GATEHOUSE_LISTEN`,
//! `--listen`).
//!
//! Secrets are never written in the file directly if it can be helped: `api_key` is a reference,
//! `env:NAME` (an environment variable) or `file:PATH` (the file's content, trailing newline
//! removed); any other string is taken literally. Resolved secrets are [`SecretString`]s and no
//! error message ever contains one.

mod bedrock_env;
pub mod raw;
pub mod routing;
mod units;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

pub use raw::{RawConfig, parse_raw};
pub use units::{parse_duration, parse_duration_str, parse_size};

/// One configuration problem: where (`path`) and what (`message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Key path in the file (`providers[0].kind`), `env NAME` or `--flag`.
    pub path: String,
    /// What is wrong. Never contains a secret value.
    pub message: String,
}

impl ConfigIssue {
    /// A new issue.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found while loading a configuration (never empty). `Display` prints one
/// issue per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Where environment variables come from: the process ([`ProcessEnv`]) or, in tests, a map.
pub trait EnvSource {
    /// The variable's value, `None` if unset or not UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment (read only).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Environment marker of generated tokens (`gthk_live_…` / `gthk_test_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnv {
    Live,
    Test,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Wire dialect of a configured provider: the one [`gatehouse_types::ProviderKind`] (parse with
/// `ProviderKindName::parse`, print with `as_str`).
pub type ProviderKindName = gatehouse_types::ProviderKind;

/// Upstream client timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// TCP + TLS connect (default 10 s).
    pub connect: Duration,
    /// Request sent → response headers (default 120 s).
    pub first_byte: Duration,
    /// Max gap between two stream chunks (default 60 s).
    pub idle: Duration,
    /// Whole non-streamed call (default 600 s).
    pub total: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive (`info`, `gatehouse=debug,info`).
    pub level: String,
}

/// A provider from the file or from the standard environment variables.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Unique name, used in `provider/model`.
    pub name: String,
    pub kind: ProviderKindName,
    /// `None`: the vendor's default URL.
    pub base_url: Option<String>,
    /// The resolved key; `None` for keyless upstreams (local servers).
    pub api_key: Option<SecretString>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// One deployment of a public model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    /// Relative weight, default 1.
    pub weight: i32,
    /// Lower is tried first, default 0.
    pub priority: i32,
}

/// A public model name and where it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    pub deployments: Vec<DeploymentConfig>,
}

/// The validated configuration. Only [`load`] builds one, so every value in it is valid.
#[derive(Clone)]
pub struct Config {
    /// Default `./gatehouse-data`.
    pub data_dir: PathBuf,
    /// Default `sqlite://<data_dir>/gatehouse.db`. May contain a password: never log it.
    pub database_url: SecretString,
    /// Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Default `127.0.0.1:8081`.
    pub admin_listen: SocketAddr,
    /// Default `live`.
    pub env: RunEnv,
    /// Default 4 MiB.
    pub body_limit_bytes: usize,
    pub upstream: UpstreamTimeouts,
    /// Default 30 s.
    pub shutdown_drain: Duration,
    /// Longest wait for the next piece of a request body on the data plane before it answers
    /// 408 `request_timeout` (idle time between body frames, not the whole upload). Default 15 s.
    pub body_read_timeout: Duration,
    pub log: LogConfig,
    /// File providers merged with the environment ones (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`);
    /// an environment provider replaces a file provider of the same name.
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// `[routing]` (issue 6): failover, circuit breaker and per-model routing options.
    pub routing: routing::RoutingConfig,
    /// `[tls]`: TLS (and mutual TLS) on the data-plane listener; `None` (default): plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `[dpop]` (issue 5, RFC 9449).
    pub dpop: DpopConfig,
    /// `[rest] allow_upstream` < `GATEHOUSE_REST_ALLOW_UPSTREAM` (comma-separated): CIDRs
    /// (`127.0.0.0/8`, `::1`) REST service nodes may reach although the SSRF guard refuses
    /// loopback, link-local, unspecified and multicast addresses. Default none; syntax checked.
    pub rest_allow_upstream: Vec<String>,
}

/// TLS on the data-plane listener (issue 5, RFC 8705). Paths only: the files are read and
/// checked when the listener is built (`gatehouse check-config` does the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM server certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
    /// PEM CA bundle client certificates must chain to; when set, client certificates are
    /// requested (optional) for certificate-bound tokens.
    pub client_ca: Option<PathBuf>,
}

/// DPoP settings of the data plane (RFC 9449), validated: `[dpop]` in the file <
/// `GATEHOUSE_PUBLIC_URL` / `GATEHOUSE_DPOP_NONCES` / `GATEHOUSE_DPOP_REPLAY_WINDOW` <
/// `--public-url` / `--dpop-nonces` / `--dpop-replay-window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// Public base URL of the data plane as clients address it (`https://gw.example.com`, a path
    /// prefix allowed, no trailing `/`): the `htu` base of proofs and the OAuth issuer. `None`:
    /// derived from each request's `Host`.
    pub public_url: Option<String>,
    /// Demand server nonces in every proof (RFC 9449 §8). Default false.
    pub nonces: bool,
    /// How long a proof's `jti` is remembered against replay; at least [`MIN_DPOP_REPLAY_WINDOW`]
    /// (the proof `iat` acceptance span, 60 s back + 10 s ahead), at most 10 min. Default 90 s.
    pub replay_window: Duration,
}

/// Default DPoP `jti` replay window (90 s).
pub const DEFAULT_DPOP_REPLAY_WINDOW: Duration = Duration::from_secs(90);
/// Shortest DPoP replay window (70 s): shorter would let a proof be replayed while its `iat` is
/// still accepted.
pub const MIN_DPOP_REPLAY_WINDOW: Duration = Duration::from_secs(70);
/// Longest DPoP replay window (10 min).
pub const MAX_DPOP_REPLAY_WINDOW: Duration = Duration::from_secs(600);

impl Default for DpopConfig {
    fn default() -> Self {
        Self { public_url: None, nonces: false, replay_window: DEFAULT_DPOP_REPLAY_WINDOW }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &"[REDACTED]")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("env", &self.env)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("upstream", &self.upstream)
            .field("shutdown_drain", &self.shutdown_drain)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("log", &self.log)
            .field("providers", &self.providers)
            .field("models", &self.models)
            .field("routing", &self.routing)
            .field("tls", &self.tls)
            .field("dpop", &self.dpop)
            .finish()
    }
}

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./gatehouse-data";
/// Default data-plane address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// Default request body limit (4 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Where an override came from, for error paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverrideSource {
    /// Environment variables (`GATEHOUSE_*`).
    #[default]
    Env,
    /// Command-line flags.
    Cli,
}

/// Settings that the environment or the command line can override. Values are unvalidated
/// strings; [`load`] validates them and names the variable or flag in errors.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub source: OverrideSource,
    /// `GATEHOUSE_DATA_DIR` / `--data-dir`.
    pub data_dir: Option<String>,
    /// `GATEHOUSE_DATABASE_URL` / `--database-url`.
    pub database_url: Option<String>,
    /// `GATEHOUSE_LISTEN` / `--listen`.
    pub listen: Option<String>,
    /// `GATEHOUSE_ADMIN_LISTEN` / `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `GATEHOUSE_ENV` / `--env`.
    pub env: Option<String>,
    /// `GATEHOUSE_LOG_FORMAT` / `--log-format`.
    pub log_format: Option<String>,
    /// `GATEHOUSE_LOG` / `--log-level`.
    pub log_level: Option<String>,
    /// `GATEHOUSE_TLS_CERT` / `--tls-cert`.
    pub tls_cert: Option<String>,
    /// `GATEHOUSE_TLS_KEY` / `--tls-key`.
    pub tls_key: Option<String>,
    /// `GATEHOUSE_TLS_CLIENT_CA` / `--tls-client-ca`.
    pub tls_client_ca: Option<String>,
    /// `GATEHOUSE_PUBLIC_URL` / `--public-url`.
    pub public_url: Option<String>,
    /// `GATEHOUSE_DPOP_NONCES` / `--dpop-nonces` (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
    pub dpop_nonces: Option<String>,
    /// `GATEHOUSE_DPOP_REPLAY_WINDOW` / `--dpop-replay-window`.
    pub dpop_replay_window: Option<String>,
    /// `GATEHOUSE_REST_ALLOW_UPSTREAM` (comma-separated CIDRs).
    pub rest_allow_upstream: Option<String>,
}

impl Overrides {
    /// Reads exactly these variables: `GATEHOUSE_DATA_DIR`, `GATEHOUSE_DATABASE_URL`,
    /// `GATEHOUSE_LISTEN`, `GATEHOUSE_ADMIN_LISTEN`, `GATEHOUSE_ENV`, `GATEHOUSE_LOG_FORMAT`,
    /// `GATEHOUSE_LOG`, `GATEHOUSE_TLS_CERT`, `GATEHOUSE_TLS_KEY`, `GATEHOUSE_TLS_CLIENT_CA`,
    /// `GATEHOUSE_PUBLIC_URL`, `GATEHOUSE_DPOP_NONCES`, `GATEHOUSE_DPOP_REPLAY_WINDOW`,
    /// `GATEHOUSE_REST_ALLOW_UPSTREAM`. Empty values
    /// count as unset.
    pub fn from_env(env: &dyn EnvSource) -> Self {
        let get = |n: &str| env.var(n).filter(|v| !v.is_empty());
        Self {
            source: OverrideSource::Env,
            data_dir: get("GATEHOUSE_DATA_DIR"),
            database_url: get("GATEHOUSE_DATABASE_URL"),
            listen: get("GATEHOUSE_LISTEN"),
            admin_listen: get("GATEHOUSE_ADMIN_LISTEN"),
            env: get("GATEHOUSE_ENV"),
            log_format: get("GATEHOUSE_LOG_FORMAT"),
            log_level: get("GATEHOUSE_LOG"),
            tls_cert: get("GATEHOUSE_TLS_CERT"),
            tls_key: get("GATEHOUSE_TLS_KEY"),
            tls_client_ca: get("GATEHOUSE_TLS_CLIENT_CA"),
            public_url: get("GATEHOUSE_PUBLIC_URL").map(|v| v.trim().to_string()),
            dpop_nonces: get("GATEHOUSE_DPOP_NONCES").map(|v| v.trim().to_string()),
            dpop_replay_window: get("GATEHOUSE_DPOP_REPLAY_WINDOW").map(|v| v.trim().to_string()),
            rest_allow_upstream: get("GATEHOUSE_REST_ALLOW_UPSTREAM"),
        }
    }

    fn label(&self, env_name: &str, flag: &str) -> String {
        match self.source {
            OverrideSource::Env => format!("env {env_name}"),
            OverrideSource::Cli => format!("--{flag}"),
        }
    }
}

/// Everything [`load`] reads.
pub struct Sources<'a> {
    /// The TOML file, if any. Its path prefixes file errors only in [`ConfigErrors`] display by
    /// the caller; issue paths are key paths.
    pub file: Option<&'a Path>,
    /// Environment: `GATEHOUSE_*` overrides, `env:` references, `OPENAI_API_KEY`/… providers.
    pub env: &'a dyn EnvSource,
    /// Command-line overrides (`source` should be [`OverrideSource::Cli`]).
    pub cli: Overrides,
    /// Provider names that exist although neither file nor environment defines them (e.g. the
    /// demo's `mock`), so that model deployments may name them.
    pub extra_providers: Vec<String>,
}

/// Loads and validates the configuration: file < environment < command line.
///
/// Errors: every problem found, each with its path ([`ConfigErrors`]); a missing or unreadable
/// file is one issue.
pub fn load(sources: &Sources<'_>) -> Result<Config, ConfigErrors> {
    let mut issues = Vec::new();
    let raw = match sources.file {
        None => RawConfig::default(),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match parse_raw(&text) {
                Ok(raw) => raw,
                Err(mut found) => {
                    issues.append(&mut found);
                    RawConfig::default()
                }
            },
            Err(e) => {
                issues.push(ConfigIssue::new(path.display().to_string(), format!("cannot read file: {e}")));
                RawConfig::default()
            }
        },
    };
    let env_over = Overrides::from_env(sources.env);
    let result = build(&raw, &env_over, &sources.cli, sources.env, &sources.extra_providers, &mut issues);
    match result {
        Some(cfg) if issues.is_empty() => Ok(cfg),
        _ => Err(ConfigErrors(issues)),
    }
}

/// Picks the highest-precedence value: CLI, then env, then file; with the path to blame.
fn pick(
    file: Option<&String>,
    file_key: &str,
    env: (&Overrides, Option<&String>, &str, &str),
    cli: (&Overrides, Option<&String>),
) -> Option<(String, String)> {
    let (env_over, env_val, env_name, flag) = env;
    let (cli_over, cli_val) = cli;
    if let Some(v) = cli_val {
        return Some((v.clone(), cli_over.label(env_name, flag)));
    }
    if let Some(v) = env_val {
        return Some((v.clone(), env_over.label(env_name, flag)));
    }
    file.map(|v| (v.clone(), file_key.to_string()))
}

fn build(
    raw: &RawConfig,
    env_over: &Overrides,
    cli: &Overrides,
    env: &dyn EnvSource,
    extra_providers: &[String],
    issues: &mut Vec<ConfigIssue>,
) -> Option<Config> {
    macro_rules! choose {
        ($field:ident, $file:expr, $envname:literal, $flag:literal) => {
            pick($file, stringify!($field), (env_over, env_over.$field.as_ref(), $envname, $flag), (cli, cli.$field.as_ref()))
        };
    }

    // data_dir
    let data_dir = match choose!(data_dir, raw.data_dir.as_ref(), "GATEHOUSE_DATA_DIR", "data-dir") {
        Some((v, path)) => {
            if v.trim().is_empty() {
                issues.push(ConfigIssue::new(path, "must not be empty"));
            }
            PathBuf::from(v)
        }
        None => PathBuf::from(DEFAULT_DATA_DIR),
    };

    // database_url
    let database_url = match choose!(database_url, raw.database_url.as_ref(), "GATEHOUSE_DATABASE_URL", "database-url") {
        Some((v, path)) => {
            let ok_scheme = ["sqlite://", "sqlite:", "postgres://", "postgresql://"].iter().any(|s| v.starts_with(s));
            if !ok_scheme {
                issues.push(ConfigIssue::new(path, "must start with sqlite:// or postgres:// (value not shown)"));
            }
            v
        }
        None => format!("sqlite://{}/gatehouse.db", data_dir.display()),
    };

    // addresses
    let mut addr = |field: Option<(String, String)>, default: &str| -> SocketAddr {
        let (v, path) = field.unwrap_or_else(|| (default.to_string(), String::new()));
        match v.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                issues.push(ConfigIssue::new(path, format!("`{v}` is not a socket address (expected IP:PORT, e.g. 127.0.0.1:8081)")));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    };
    let listen_src = choose!(listen, raw.listen.as_ref(), "GATEHOUSE_LISTEN", "listen");
    let admin_src = choose!(admin_listen, raw.admin_listen.as_ref(), "GATEHOUSE_ADMIN_LISTEN", "admin-listen");
    let admin_path = admin_src.as_ref().map(|(_, p)| p.clone()).unwrap_or_else(|| "admin_listen".into());
    let listen = addr(listen_src, DEFAULT_LISTEN);
    let admin_listen = addr(admin_src, DEFAULT_ADMIN_LISTEN);
    if listen == admin_listen && listen.port() != 0 {
        issues.push(ConfigIssue::new(admin_path, format!("must differ from listen ({listen})")));
    }

    // env
    let run_env = match choose!(env, raw.env.as_ref(), "GATEHOUSE_ENV", "env") {
        None => RunEnv::Live,
        Some((v, path)) => match v.as_str() {
            "live" => RunEnv::Live,
            "test" => RunEnv::Test,
            other => {
                issues.push(ConfigIssue::new(path, format!("`{other}` is not an environment (expected live or test)")));
                RunEnv::Live
            }
        },
    };

    // body limit
    let body_limit_bytes = match &raw.body_limit {
        None => DEFAULT_BODY_LIMIT,
        Some(size) => match parse_size(size) {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                issues.push(ConfigIssue::new("body_limit", "must be greater than 0"));
                DEFAULT_BODY_LIMIT
            }
            Err(e) => {
                issues.push(ConfigIssue::new("body_limit", e));
                DEFAULT_BODY_LIMIT
            }
        },
    };

    let mut duration = |v: Option<&raw::RawDuration>, path: &str, default: Duration| -> Duration {
        match v {
            None => default,
            Some(d) => match parse_duration(d) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    issues.push(ConfigIssue::new(path, "must be greater than 0"));
                    default
                }
                Err(e) => {
                    issues.push(ConfigIssue::new(path, e));
                    default
                }
            },
        }
    };
    let shutdown_drain = duration(raw.shutdown_drain.as_ref(), "shutdown_drain", Duration::from_secs(30));
    let body_read_timeout = duration(raw.body_read_timeout.as_ref(), "body_read_timeout", Duration::from_secs(15));
    let up = raw.upstream.clone().unwrap_or_default();
    let dflt = UpstreamTimeouts::default();
    let upstream = UpstreamTimeouts {
        connect: duration(up.connect_timeout.as_ref(), "upstream.connect_timeout", dflt.connect),
        first_byte: duration(up.first_byte_timeout.as_ref(), "upstream.first_byte_timeout", dflt.first_byte),
        idle: duration(up.idle_timeout.as_ref(), "upstream.idle_timeout", dflt.idle),
        total: duration(up.total_timeout.as_ref(), "upstream.total_timeout", dflt.total),
    };

    // log
    let rl = raw.log.clone().unwrap_or_default();
    let format = match pick(rl.format.as_ref(), "log.format", (env_over, env_over.log_format.as_ref(), "GATEHOUSE_LOG_FORMAT", "log-format"), (cli, cli.log_format.as_ref())) {
        None => LogFormat::Pretty,
        Some((v, path)) => match v.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                issues.push(ConfigIssue::new(path, format!("`{other}` is not a log format (expected pretty or json)")));
                LogFormat::Pretty
            }
        },
    };
    let level = match pick(rl.level.as_ref(), "log.level", (env_over, env_over.log_level.as_ref(), "GATEHOUSE_LOG", "log-level"), (cli, cli.log_level.as_ref())) {
        None => "info".to_string(),
        Some((v, path)) => {
            if !valid_filter(&v) {
                issues.push(ConfigIssue::new(path, format!("`{v}` is not a log filter (e.g. info, debug, gatehouse=debug,warn)")));
            }
            v
        }
    };

    // providers
    let mut providers: Vec<ProviderConfig> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        if !valid_name(&p.name) {
            issues.push(ConfigIssue::new(format!("{path}.name"), format!("`{}` is not a valid name (1-64 of a-z A-Z 0-9 . _ -)", p.name)));
        } else if !seen.insert(p.name.clone()) {
            issues.push(ConfigIssue::new(format!("{path}.name"), format!("duplicate provider name `{}`", p.name)));
        }
        let kind = ProviderKindName::parse(&p.kind);
        if kind.is_none() {
            issues.push(ConfigIssue::new(format!("{path}.kind"), format!("unknown provider kind `{}` (expected one of {})", p.kind, kind_names())));
        }
        if let Some(k) = kind
            && k.needs_base_url()
            && p.base_url.is_none()
        {
            issues.push(ConfigIssue::new(format!("{path}.base_url"), format!("a provider of kind `{}` needs a base_url", k.as_str())));
        }
        if let Some(url) = &p.base_url
            && let Err(e) = check_base_url(url)
        {
            issues.push(ConfigIssue::new(format!("{path}.base_url"), e));
        }
        let api_key = match &p.api_key {
            None => None,
            Some(r) => match resolve_secret(r, env) {
                Ok(s) => Some(s),
                Err(e) => {
                    issues.push(ConfigIssue::new(format!("{path}.api_key"), e));
                    None
                }
            },
        };
        if kind == Some(ProviderKindName::Bedrock)
            && let Some(key) = &api_key
            && let Err(e) = gatehouse_types::aws::check_secret(secrecy::ExposeSecret::expose_secret(key))
        {
            issues.push(ConfigIssue::new(format!("{path}.api_key"), e));
        }
        if let Some(kind) = kind {
            providers.push(ProviderConfig { name: p.name.clone(), kind, base_url: p.base_url.clone(), api_key });
        }
    }
    for ep in env_providers(env, issues) {
        providers.retain(|p| p.name != ep.name);
        providers.push(ep);
    }

    // models
    let known: BTreeSet<&str> = providers
        .iter()
        .map(|p| p.name.as_str())
        .chain(extra_providers.iter().map(String::as_str))
        .collect();
    let mut models = Vec::new();
    let mut seen_models = BTreeSet::new();
    for (i, m) in raw.models.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.name.trim().is_empty() || m.name.len() > 256 {
            issues.push(ConfigIssue::new(format!("{path}.name"), "must be 1-256 characters"));
        } else if !seen_models.insert(m.name.clone()) {
            issues.push(ConfigIssue::new(format!("{path}.name"), format!("duplicate model name `{}`", m.name)));
        }
        if m.deployments.is_empty() {
            issues.push(ConfigIssue::new(format!("{path}.deployments"), "needs at least one deployment"));
        }
        let mut deployments = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            let dpath = format!("{path}.deployments[{j}]");
            if !known.contains(d.provider.as_str()) {
                issues.push(ConfigIssue::new(format!("{dpath}.provider"), format!("unknown provider `{}`", d.provider)));
            }
            if d.model.trim().is_empty() {
                issues.push(ConfigIssue::new(format!("{dpath}.model"), "must not be empty"));
            }
            let weight = match d.weight.unwrap_or(1) {
                w @ 0..=1_000_000 => w as i32,
                _ => {
                    issues.push(ConfigIssue::new(format!("{dpath}.weight"), "must be between 0 and 1000000"));
                    1
                }
            };
            let priority = match d.priority.unwrap_or(0) {
                p @ -1_000_000..=1_000_000 => p as i32,
                _ => {
                    issues.push(ConfigIssue::new(format!("{dpath}.priority"), "must be between -1000000 and 1000000"));
                    0
                }
            };
            deployments.push(DeploymentConfig { provider: d.provider.clone(), model: d.model.clone(), weight, priority });
        }
        models.push(ModelConfig { name: m.name.clone(), deployments });
    }
    let model_names: BTreeSet<String> =
        models.iter().map(|m| m.name.clone()).chain(extra_models(extra_providers)).collect();
    let routing = raw.routing.as_ref().map(|r| routing::build(r, &model_names, issues)).unwrap_or_default();
    let dpop = build_dpop(raw.dpop.as_ref(), env_over, cli, issues);
    let rest_allow_upstream = build_rest_allow(raw.rest.as_ref(), env_over, issues);

    // tls
    let rt = raw.tls.clone().unwrap_or_default();
    let tls_cert = pick(rt.cert.as_ref(), "tls.cert", (env_over, env_over.tls_cert.as_ref(), "GATEHOUSE_TLS_CERT", "tls-cert"), (cli, cli.tls_cert.as_ref()));
    let tls_key = pick(rt.key.as_ref(), "tls.key", (env_over, env_over.tls_key.as_ref(), "GATEHOUSE_TLS_KEY", "tls-key"), (cli, cli.tls_key.as_ref()));
    let tls_ca = pick(
        rt.client_ca.as_ref(),
        "tls.client_ca",
        (env_over, env_over.tls_client_ca.as_ref(), "GATEHOUSE_TLS_CLIENT_CA", "tls-client-ca"),
        (cli, cli.tls_client_ca.as_ref()),
    );
    let mut file = |v: &(String, String)| -> PathBuf {
        let (value, path) = v;
        if value.trim().is_empty() {
            issues.push(ConfigIssue::new(path.clone(), "must not be empty"));
        } else if !Path::new(value).is_file() {
            issues.push(ConfigIssue::new(path.clone(), format!("`{value}` is not a readable file")));
        }
        PathBuf::from(value)
    };
    let tls = match (&tls_cert, &tls_key) {
        (Some(c), Some(k)) => Some(TlsConfig { cert: file(c), key: file(k), client_ca: tls_ca.as_ref().map(&mut file) }),
        (Some((_, path)), None) => {
            issues.push(ConfigIssue::new(path.clone(), "needs the private key too (tls.key / GATEHOUSE_TLS_KEY / --tls-key)"));
            None
        }
        (None, Some((_, path))) => {
            issues.push(ConfigIssue::new(path.clone(), "needs the certificate too (tls.cert / GATEHOUSE_TLS_CERT / --tls-cert)"));
            None
        }
        (None, None) => {
            if let Some((_, path)) = &tls_ca {
                issues.push(ConfigIssue::new(path.clone(), "client certificates need TLS: set tls.cert and tls.key too"));
            }
            None
        }
    };

    Some(Config {
        data_dir,
        database_url: SecretString::from(database_url),
        listen,
        admin_listen,
        env: run_env,
        body_limit_bytes,
        upstream,
        shutdown_drain,
        body_read_timeout,
        log: LogConfig { format, level },
        providers,
        models,
        routing,
        tls,
        dpop,
        rest_allow_upstream,
    })
}

/// `[rest] allow_upstream` or `GATEHOUSE_REST_ALLOW_UPSTREAM` (see [`Config::rest_allow_upstream`]).
fn build_rest_allow(raw: Option<&raw::RawRest>, env_over: &Overrides, issues: &mut Vec<ConfigIssue>) -> Vec<String> {
    let (list, path): (Vec<String>, String) = match &env_over.rest_allow_upstream {
        Some(v) => (v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(), "env GATEHOUSE_REST_ALLOW_UPSTREAM".into()),
        None => (raw.and_then(|r| r.allow_upstream.clone()).unwrap_or_default(), "rest.allow_upstream".into()),
    };
    for c in &list {
        let (addr, prefix) = c.split_once('/').map_or((c.as_str(), None), |(a, p)| (a, Some(p)));
        let ok = addr.trim().parse::<std::net::IpAddr>().is_ok_and(|ip| {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
        });
        if !ok {
            issues.push(ConfigIssue::new(path.clone(), format!("`{c}` is not an IP address or CIDR block (e.g. 127.0.0.0/8)")));
        }
    }
    list
}

/// `[dpop]` with its environment and command-line overrides (see [`DpopConfig`]).
fn build_dpop(raw: Option<&raw::RawDpop>, env_over: &Overrides, cli: &Overrides, issues: &mut Vec<ConfigIssue>) -> DpopConfig {
    let raw = raw.cloned().unwrap_or_default();
    let mut out = DpopConfig::default();
    if let Some((url, path)) =
        pick(raw.public_url.as_ref(), "dpop.public_url", (env_over, env_over.public_url.as_ref(), "GATEHOUSE_PUBLIC_URL", "public-url"), (cli, cli.public_url.as_ref()))
    {
        match check_public_url(&url) {
            Ok(()) => out.public_url = Some(url.trim_end_matches('/').to_string()),
            Err(e) => issues.push(ConfigIssue::new(path, e)),
        }
    }
    let file_nonces = raw.nonces.map(|b| b.to_string());
    if let Some((v, path)) =
        pick(file_nonces.as_ref(), "dpop.nonces", (env_over, env_over.dpop_nonces.as_ref(), "GATEHOUSE_DPOP_NONCES", "dpop-nonces"), (cli, cli.dpop_nonces.as_ref()))
    {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => out.nonces = true,
            "false" | "0" | "no" | "off" => out.nonces = false,
            _ => issues.push(ConfigIssue::new(path, format!("`{v}` is not true or false"))),
        }
    }
    let file_window = raw.replay_window.as_ref().map(|d| match d {
        raw::RawDuration::Seconds(n) => n.to_string(),
        raw::RawDuration::Text(t) => t.clone(),
    });
    if let Some((v, path)) = pick(
        file_window.as_ref(),
        "dpop.replay_window",
        (env_over, env_over.dpop_replay_window.as_ref(), "GATEHOUSE_DPOP_REPLAY_WINDOW", "dpop-replay-window"),
        (cli, cli.dpop_replay_window.as_ref()),
    ) {
        let parsed = match v.parse::<i64>() {
            Ok(n) => parse_duration(&raw::RawDuration::Seconds(n)),
            Err(_) => parse_duration(&raw::RawDuration::Text(v.clone())),
        };
        match parsed {
            Ok(d) if (MIN_DPOP_REPLAY_WINDOW..=MAX_DPOP_REPLAY_WINDOW).contains(&d) => out.replay_window = d,
            Ok(_) => issues.push(ConfigIssue::new(path, "must be between 70s and 10m (at least the proof `iat` acceptance span)")),
            Err(e) => issues.push(ConfigIssue::new(path, e)),
        }
    }
    out
}

/// An absolute `http(s)://host[:port][/path]` URL without user info, query or fragment.
fn check_public_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let bad = "must be an absolute http(s) URL such as https://gw.example.com (no query, fragment or user info)";
    let Some(rest) = rest else { return Err(bad.into()) };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || url.contains(['?', '#', ' ', '\\']) || url.chars().any(char::is_control) {
        return Err(bad.into());
    }
    Ok(())
}

/// The canonical kind names, comma-separated (for error messages).
pub fn kind_names() -> String {
    ProviderKindName::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// One provider read from the standard environment variables of its vendor.
struct EnvProvider {
    /// Provider name (used in `provider/model`); the kind's canonical name.
    kind: ProviderKindName,
    /// Variable holding the key. `None` for keyless providers (Ollama, vLLM).
    key_var: Option<&'static str>,
    /// Variable holding the base URL (or host, for `OLLAMA_HOST`).
    url_var: &'static str,
    /// The provider is configured when the key is set; for keyless ones when the URL is set.
    /// `key_optional_var`: a key read when present (e.g. `VLLM_API_KEY`).
    key_optional_var: Option<&'static str>,
}

/// The environment providers, in order. See [`env_providers`].
const ENV_PROVIDERS: [EnvProvider; 13] = [
    EnvProvider { kind: ProviderKindName::OpenAi, key_var: Some("OPENAI_API_KEY"), url_var: "OPENAI_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Anthropic, key_var: Some("ANTHROPIC_API_KEY"), url_var: "ANTHROPIC_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Gemini, key_var: Some("GEMINI_API_KEY"), url_var: "GEMINI_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Azure, key_var: Some("AZURE_OPENAI_API_KEY"), url_var: "AZURE_OPENAI_ENDPOINT", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Mistral, key_var: Some("MISTRAL_API_KEY"), url_var: "MISTRAL_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::DeepSeek, key_var: Some("DEEPSEEK_API_KEY"), url_var: "DEEPSEEK_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Groq, key_var: Some("GROQ_API_KEY"), url_var: "GROQ_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::OpenRouter, key_var: Some("OPENROUTER_API_KEY"), url_var: "OPENROUTER_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Together, key_var: Some("TOGETHER_API_KEY"), url_var: "TOGETHER_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Fireworks, key_var: Some("FIREWORKS_API_KEY"), url_var: "FIREWORKS_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Xai, key_var: Some("XAI_API_KEY"), url_var: "XAI_BASE_URL", key_optional_var: None },
    EnvProvider { kind: ProviderKindName::Ollama, key_var: None, url_var: "OLLAMA_HOST", key_optional_var: Some("OLLAMA_API_KEY") },
    EnvProvider { kind: ProviderKindName::Vllm, key_var: None, url_var: "VLLM_BASE_URL", key_optional_var: Some("VLLM_API_KEY") },
];

/// Providers from the vendors' standard variables, each named after its kind: `OPENAI_API_KEY`
/// (+ `OPENAI_BASE_URL`) → `openai`, `ANTHROPIC_API_KEY` (+ `ANTHROPIC_BASE_URL`) →
/// `anthropic`, `GEMINI_API_KEY` (+ `GEMINI_BASE_URL`) → `gemini`, `AZURE_OPENAI_API_KEY` +
/// `AZURE_OPENAI_ENDPOINT` (required) → `azure`, `MISTRAL_API_KEY`, `DEEPSEEK_API_KEY`,
/// `GROQ_API_KEY`, `OPENROUTER_API_KEY`, `TOGETHER_API_KEY`, `FIREWORKS_API_KEY`, `XAI_API_KEY`
/// (each + `<VENDOR>_BASE_URL`), `OLLAMA_HOST` (`host:port` or a URL; + optional
/// `OLLAMA_API_KEY`) → `ollama`, `VLLM_BASE_URL` (+ optional `VLLM_API_KEY`) → `vllm`, the
/// AWS variables → `bedrock` (see [`bedrock_env`]). Empty values count as unset.
fn env_providers(env: &dyn EnvSource, issues: &mut Vec<ConfigIssue>) -> Vec<ProviderConfig> {
    let mut out = Vec::new();
    let get = |var: &str| env.var(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    for ep in &ENV_PROVIDERS {
        let mut base_url = get(ep.url_var);
        let api_key = match ep.key_var {
            Some(var) => match get(var) {
                Some(k) => Some(k),
                None => continue,
            },
            None => {
                if base_url.is_none() {
                    continue;
                }
                ep.key_optional_var.and_then(get)
            }
        };
        if ep.kind == ProviderKindName::Ollama
            && let Some(host) = &base_url
            && !host.contains("://")
        {
            // `OLLAMA_HOST` is commonly `host:port` (the Ollama CLI's own convention).
            base_url = Some(format!("http://{host}"));
        }
        match &base_url {
            Some(url) => {
                if let Err(e) = check_base_url(url) {
                    issues.push(ConfigIssue::new(format!("env {}", ep.url_var), e));
                }
            }
            None if ep.kind.needs_base_url() => {
                issues.push(ConfigIssue::new(format!("env {}", ep.url_var), format!("must be set when {} is set", ep.key_var.unwrap_or("the key"))));
            }
            None => {}
        }
        out.push(ProviderConfig {
            name: ep.kind.as_str().to_string(),
            kind: ep.kind,
            base_url: base_url.map(|u| u.trim_end_matches('/').to_string()),
            api_key: api_key.map(SecretString::from),
        });
    }
    out.extend(bedrock_env::bedrock_env_provider(env, issues));
    out
}

/// Resolves a secret reference: `env:NAME`, `file:PATH` (content, trailing CR/LF removed) or a
/// literal. Errors name the variable or path, never the value.
pub fn resolve_secret(reference: &str, env: &dyn EnvSource) -> Result<SecretString, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        if name.is_empty() {
            return Err("`env:` needs a variable name".into());
        }
        return match env.var(name) {
            Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
            _ => Err(format!("environment variable {name} is not set")),
        };
    }
    if let Some(path) = reference.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`file:` needs a path".into());
        }
        return match std::fs::read_to_string(path) {
            Ok(v) => {
                let v = v.trim_end_matches(['\r', '\n']).to_string();
                if v.is_empty() { Err(format!("file {path} is empty")) } else { Ok(SecretString::from(v)) }
            }
            Err(e) => Err(format!("cannot read secret file {path}: {}", e.kind())),
        };
    }
    if reference.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(reference.to_string()))
}

/// Provider and model name rule: 1-64 of `a-z A-Z 0-9 . _ -` (no `/`, which separates
/// `provider/model`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A base URL must be `http://` or `https://` with a host, no query or fragment.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if url.contains('?') || url.contains('#') || url.contains(char::is_whitespace) {
        return Err(format!("`{url}` must not contain a query, fragment or spaces"));
    }
    if host.contains('@') {
        return Err("must not contain credentials".into());
    }
    Ok(())
}

fn valid_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    !s.is_empty()
        && s.split(',').all(|part| {
            let part = part.trim();
            let level = part.rsplit('=').next().unwrap_or("");
            let target_ok = match part.split_once('=') {
                Some((t, _)) => !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-')),
                None => true,
            };
            target_ok && (LEVELS.contains(&level.to_ascii_lowercase().as_str()) || (!part.contains('=') && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-')) && !part.is_empty()))
        })
}

#[cfg(test)]
mod tests;

/// Public models registered outside the file (the demo's `demo` and `demo-claude` when the
/// demo mock provider is among the extra providers), so that `[[routing.models]]` may name them.
fn extra_models(extra_providers: &[String]) -> Vec<String> {
    if extra_providers.is_empty() { Vec::new() } else { vec!["demo".to_string(), "demo-claude".to_string()] }
}
