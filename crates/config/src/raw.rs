//! The raw configuration file: what serde reads from TOML before any validation.
//!
//! Two passes make "report every error at once" possible: [`lint`] walks the parsed TOML table
//! against [`SCHEMA`] and collects *every* unknown key and wrongly typed value with its path
//! (`providers[1].kind`); only then is the cleaned table deserialized into [`RawConfig`]
//! (`deny_unknown_fields`, so the schema and the structs cannot silently disagree — a unit test
//! checks that a file using every key parses).

use serde::Deserialize;

use crate::ConfigIssue;

/// The configuration file as written. Every field is optional; defaults are applied when the
/// validated [`crate::Config`] is built.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory for the SQLite database and the master key file.
    pub data_dir: Option<String>,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: Option<String>,
    /// Data-plane socket address, e.g. `0.0.0.0:8080`.
    pub listen: Option<String>,
    /// Admin API socket address, e.g. `127.0.0.1:8081`.
    pub admin_listen: Option<String>,
    /// `live` or `test`: the environment marker of generated tokens.
    pub env: Option<String>,
    /// Maximum request body: bytes as an integer, or a string such as `"4MiB"`.
    pub body_limit: Option<RawSize>,
    /// How long a graceful shutdown waits for in-flight requests and streams (`"30s"`).
    pub shutdown_drain: Option<RawDuration>,
    /// Longest wait for the next piece of a request body before 408 (`"15s"`).
    pub body_read_timeout: Option<RawDuration>,
    /// Upstream HTTP client timeouts.
    pub upstream: Option<RawUpstream>,
    /// Log format and level.
    pub log: Option<RawLog>,
    /// Providers configured in the file (upserted at every start).
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Public models and their deployments (upserted at every start).
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// Load balancing, failover and per-model routing options (issue 6, [`crate::routing`]).
    pub routing: Option<crate::routing::RawRouting>,
    /// TLS on the data-plane listener (issue 5, RFC 8705).
    pub tls: Option<RawTls>,
    /// DPoP on the data plane (RFC 9449; issue 5).
    pub dpop: Option<RawDpop>,
    /// REST services (issue 7): the upstream SSRF guard's allow-list.
    pub rest: Option<RawRest>,
}

/// `[rest]`: REST service settings. `GATEHOUSE_REST_ALLOW_UPSTREAM` overrides `allow_upstream`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRest {
    /// CIDRs REST nodes may reach although loopback/link-local/… (`["127.0.0.0/8"]`).
    pub allow_upstream: Option<Vec<String>>,
}

/// `[tls]`: PEM file paths.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Server certificate chain (leaf first).
    pub cert: Option<String>,
    /// The leaf's private key.
    pub key: Option<String>,
    /// CA bundle for client certificates (mutual TLS; optional for clients).
    pub client_ca: Option<String>,
}

/// `[dpop]`: DPoP settings of the data plane (RFC 9449). Environment and flags override each key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// Public base URL clients use (`https://gw.example.com`): `htu` base and OAuth issuer.
    pub public_url: Option<String>,
    /// Demand server nonces (RFC 9449 §8).
    pub nonces: Option<bool>,
    /// How long a proof's `jti` is remembered against replay (`"90s"`; 70 s – 10 min).
    pub replay_window: Option<RawDuration>,
}

/// A byte size: an integer number of bytes or a string with a unit (`B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

/// A duration: an integer number of seconds or a string with a unit (`ms`, `s`, `m`, `h`, `d`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(i64),
    Text(String),
}

/// `[upstream]`: timeouts of the upstream HTTP client.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub connect_timeout: Option<RawDuration>,
    pub first_byte_timeout: Option<RawDuration>,
    pub idle_timeout: Option<RawDuration>,
    pub total_timeout: Option<RawDuration>,
}

/// `[log]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `pretty` or `json`.
    pub format: Option<String>,
    /// A tracing filter: `info`, `debug`, `gatehouse=debug,info`, …
    pub level: Option<String>,
}

/// `[[providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    /// `openai` (also `openai-compatible`) or `anthropic`.
    pub kind: String,
    pub base_url: Option<String>,
    /// A secret reference: `env:NAME`, `file:PATH`, or the literal key.
    pub api_key: Option<String>,
}

/// `[[models]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub deployments: Vec<RawDeployment>,
}

/// One entry of `models[].deployments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// Name of a provider.
    pub provider: String,
    /// Upstream model name.
    pub model: String,
    pub weight: Option<i64>,
    pub priority: Option<i64>,
}

/// The shape of a TOML value, for [`lint`].
#[derive(Debug)]
enum Shape {
    Str,
    Int,
    Bool,
    IntOrStr,
    Table(&'static [Field]),
    ArrayOf(&'static Shape),
}

/// One known key of a table.
#[derive(Debug)]
struct Field {
    name: &'static str,
    shape: Shape,
    required: bool,
}

const fn opt(name: &'static str, shape: Shape) -> Field {
    Field { name, shape, required: false }
}

const fn req(name: &'static str, shape: Shape) -> Field {
    Field { name, shape, required: true }
}

const UPSTREAM: &[Field] = &[
    opt("connect_timeout", Shape::IntOrStr),
    opt("first_byte_timeout", Shape::IntOrStr),
    opt("idle_timeout", Shape::IntOrStr),
    opt("total_timeout", Shape::IntOrStr),
];

const LOG: &[Field] = &[opt("format", Shape::Str), opt("level", Shape::Str)];

const TLS: &[Field] = &[opt("cert", Shape::Str), opt("key", Shape::Str), opt("client_ca", Shape::Str)];
const REST: &[Field] = &[opt("allow_upstream", Shape::ArrayOf(&Shape::Str))];
const DPOP: &[Field] = &[opt("public_url", Shape::Str), opt("nonces", Shape::Bool), opt("replay_window", Shape::IntOrStr)];

const PROVIDER: Shape = Shape::Table(&[
    req("name", Shape::Str),
    req("kind", Shape::Str),
    opt("base_url", Shape::Str),
    opt("api_key", Shape::Str),
]);

const DEPLOYMENT: Shape = Shape::Table(&[
    req("provider", Shape::Str),
    req("model", Shape::Str),
    opt("weight", Shape::Int),
    opt("priority", Shape::Int),
]);

const MODEL: Shape =
    Shape::Table(&[req("name", Shape::Str), req("deployments", Shape::ArrayOf(&DEPLOYMENT))]);

const MODEL_ROUTING: Shape = Shape::Table(&[
    req("name", Shape::Str),
    opt("strategy", Shape::Str),
    opt("fallbacks", Shape::ArrayOf(&Shape::Str)),
    opt("connect_timeout", Shape::IntOrStr),
    opt("first_byte_timeout", Shape::IntOrStr),
    opt("ttft_timeout", Shape::IntOrStr),
    opt("idle_timeout", Shape::IntOrStr),
    opt("total_timeout", Shape::IntOrStr),
]);

const ROUTING: &[Field] = &[
    opt("max_attempts", Shape::Int),
    opt("backoff_base", Shape::IntOrStr),
    opt("backoff_max", Shape::IntOrStr),
    opt("max_retry_after_wait", Shape::IntOrStr),
    opt("key_recheck", Shape::IntOrStr),
    opt("breaker_failures", Shape::Int),
    opt("breaker_error_rate_percent", Shape::Int),
    opt("breaker_min_calls", Shape::Int),
    opt("breaker_window", Shape::IntOrStr),
    opt("breaker_cool_down", Shape::IntOrStr),
    opt("models", Shape::ArrayOf(&MODEL_ROUTING)),
];

/// Every key the file may contain (mirrors [`RawConfig`]).
const SCHEMA: &[Field] = &[
    opt("data_dir", Shape::Str),
    opt("database_url", Shape::Str),
    opt("listen", Shape::Str),
    opt("admin_listen", Shape::Str),
    opt("env", Shape::Str),
    opt("body_limit", Shape::IntOrStr),
    opt("shutdown_drain", Shape::IntOrStr),
    opt("body_read_timeout", Shape::IntOrStr),
    opt("upstream", Shape::Table(UPSTREAM)),
    opt("log", Shape::Table(LOG)),
    opt("providers", Shape::ArrayOf(&PROVIDER)),
    opt("models", Shape::ArrayOf(&MODEL)),
    opt("routing", Shape::Table(ROUTING)),
    opt("tls", Shape::Table(TLS)),
    opt("dpop", Shape::Table(DPOP)),
    opt("rest", Shape::Table(REST)),
];

/// Parses TOML text into a [`RawConfig`], collecting every syntax, unknown-key, missing-key and
/// type error (each with its key path) instead of stopping at the first.
pub fn parse_raw(text: &str) -> Result<RawConfig, Vec<ConfigIssue>> {
    let table: toml::Table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(first) => return Err(syntax_issues(text, &first)),
    };
    let mut issues = Vec::new();
    lint_table(&table, SCHEMA, "", &mut issues);
    if !issues.is_empty() {
        return Err(issues);
    }
    toml::Value::Table(table)
        .try_into::<RawConfig>()
        .map_err(|e| vec![ConfigIssue::new("file", e.message().to_string())])
}

/// Every TOML syntax error of `text`, each at `line L, column C` (1-based, columns in
/// characters): the parser's error recovery continues after an error, so several mistakes are
/// reported in one run; `first` (the strict parser's error) is the fallback if recovery finds
/// none.
fn syntax_issues(text: &str, first: &toml::de::Error) -> Vec<ConfigIssue> {
    let (_, errors) = toml::de::DeTable::parse_recoverable(text);
    let mut issues: Vec<ConfigIssue> = Vec::new();
    for e in errors.iter().chain(errors.is_empty().then_some(first)) {
        let at = e.span().map_or_else(|| "file".to_string(), |s| position(text, s.start));
        let issue = ConfigIssue::new(at, format!("TOML syntax error: {}", e.message().trim()));
        if !issues.contains(&issue) {
            issues.push(issue);
        }
    }
    issues
}

/// `line L, column C` of byte offset `offset` in `text` (1-based).
fn position(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

fn lint_table(table: &toml::Table, fields: &[Field], path: &str, issues: &mut Vec<ConfigIssue>) {
    for (key, value) in table {
        match fields.iter().find(|f| f.name == key) {
            Some(field) => lint_value(value, &field.shape, &join(path, key), issues),
            None => {
                let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
                issues.push(ConfigIssue::new(
                    join(path, key),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                ));
            }
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if !table.contains_key(field.name) {
            issues.push(ConfigIssue::new(join(path, field.name), "missing required key"));
        }
    }
}

fn lint_value(value: &toml::Value, shape: &Shape, path: &str, issues: &mut Vec<ConfigIssue>) {
    let ok = match shape {
        Shape::Str => value.is_str(),
        Shape::Int => value.is_integer(),
        Shape::Bool => value.is_bool(),
        Shape::IntOrStr => value.is_integer() || value.is_str(),
        Shape::Table(fields) => match value.as_table() {
            Some(t) => {
                lint_table(t, fields, path, issues);
                true
            }
            None => false,
        },
        Shape::ArrayOf(item) => match value.as_array() {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    lint_value(v, item, &format!("{path}[{i}]"), issues);
                }
                true
            }
            None => false,
        },
    };
    if !ok {
        let expected = match shape {
            Shape::Str => "a string",
            Shape::Int => "an integer",
            Shape::Bool => "true or false",
            Shape::IntOrStr => "an integer or a string",
            Shape::Table(_) => "a table",
            Shape::ArrayOf(_) => "an array",
        };
        issues.push(ConfigIssue::new(path, format!("expected {expected}, found {}", value.type_str())));
    }
}
