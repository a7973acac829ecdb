//! `gatehouse keys|providers|models|logs`: a small client of the admin API (`/admin/v1`).
//!
//! Connection: `--admin-url` or `GATEHOUSE_ADMIN_URL` (default `http://127.0.0.1:8081`); the
//! operator token only from `GATEHOUSE_ADMIN_TOKEN` (never a flag: flags show in `ps` and shell
//! history). Output: plain-text tables, or the raw JSON with `--json`.

pub mod apim;
pub mod audit;

pub mod limits;

pub mod tenancy;

pub mod config_io;

pub mod oauth;

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use gatehouse_types::ProviderKind;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Connection and output options shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Admin API base URL (env GATEHOUSE_ADMIN_URL).
    #[arg(long, global = true, value_name = "URL")]
    admin_url: Option<String>,
    /// Print the raw JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// A client command with its connection options.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs<T: Subcommand + Clone + std::fmt::Debug> {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: T,
}

/// `gatehouse keys …`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCmd {
    /// Create an API key; prints the key once (first line), then its id and hint.
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// Comma-separated public model names the key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Lifetime, e.g. 30m, 1h, 7d (default: no expiry).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// App id (default: the "default" app).
        #[arg(long, value_name = "ID")]
        app: Option<String>,
        /// Comma-separated scopes: chat:invoke, embeddings:invoke, models:read, services:invoke (default: all).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Comma-separated CIDRs the key may be used from (default: anywhere).
        #[arg(long, value_delimiter = ',', value_name = "CIDR")]
        ip_allow: Vec<String>,
        /// A label KEY=VALUE; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Suspend the key automatically when its use looks anomalous.
        #[arg(long)]
        auto_suspend: bool,
        /// Mint a single-use token (gths_…) instead: exactly one successful call, 5 min default
        /// lifetime (at most 1h).
        #[arg(long, conflicts_with_all = ["ip_allow", "labels", "auto_suspend"])]
        single_use: bool,
        /// Bind the key to a DPoP key pair (RFC 9449): the RFC 7638 SHA-256 thumbprint of its
        /// public JWK; the key then only works as `Authorization: DPoP` with a proof of that key.
        #[arg(long, value_name = "THUMBPRINT", conflicts_with = "single_use")]
        dpop_jkt: Option<String>,
        /// Bind the key to a TLS client certificate (RFC 8705 §3): its `x5t#S256` thumbprint
        /// (base64url SHA-256 of the DER); the key then only works over a connection
        /// authenticated with that certificate.
        #[arg(long, value_name = "THUMBPRINT", conflicts_with_all = ["single_use", "mtls_cert"])]
        mtls_x5t: Option<String>,
        /// Like --mtls-x5t, with the thumbprint computed from this PEM certificate file.
        #[arg(long, value_name = "PEM_FILE", conflicts_with = "single_use")]
        mtls_cert: Option<std::path::PathBuf>,
    },
    /// Rotate a key: prints the successor once; the old key keeps working for the grace period.
    Rotate {
        /// The key id.
        id: String,
        /// How long the old key keeps working, e.g. 1h (default 24h, at most 7d; 0s = now).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// List keys (hints only).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key now.
    Revoke {
        /// The key id.
        id: String,
    },
}

/// `providers add --kind` help, from the one `ProviderKind::ALL` list (L7).
fn kind_help() -> String {
    let kinds: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
    format!("Provider kind: {} (openai and generic take any OpenAI-compatible URL).", kinds.join(", "))
}

/// `gatehouse providers …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ProvidersCmd {
    /// Add or update a provider. The key is read from --api-key-env, --api-key-file or
    /// --api-key-stdin (never echoed); --api-key works too but lands in shell history.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, help = kind_help())]
        kind: String,
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Name of an environment variable holding the key.
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
        /// File holding the key.
        #[arg(long, value_name = "PATH")]
        api_key_file: Option<String>,
        /// Read the key from standard input.
        #[arg(long)]
        api_key_stdin: bool,
        /// The key itself (discouraged: visible in `ps` and history).
        #[arg(long, value_name = "KEY")]
        api_key: Option<String>,
    },
    /// List providers (key hints only).
    List,
    /// Remove a provider and the deployments that use it.
    Remove { name: String },
}

/// `gatehouse models …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCmd {
    /// Add or replace a public model.
    Add {
        #[arg(long)]
        name: String,
        /// PROVIDER/UPSTREAM_MODEL[,weight=N][,priority=N]; repeat for several deployments.
        #[arg(long = "deployment", required = true, value_name = "PROVIDER/MODEL")]
        deployments: Vec<String>,
    },
    /// List public models.
    List,
    /// Remove a public model.
    Remove { name: String },
}

/// `gatehouse logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only calls to this model.
    #[arg(long)]
    model: Option<String>,
    /// Only calls with this key id.
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    /// Page size (1-1000, default 50).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only failed calls.
    #[arg(long)]
    errors: bool,
    /// Older than this log id (paging).
    #[arg(long, value_name = "ID")]
    before: Option<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    json: bool,
}

impl Client {
    fn new(conn: &Conn) -> Result<Self, String> {
        let base = conn
            .admin_url
            .clone()
            .or_else(|| std::env::var("GATEHOUSE_ADMIN_URL").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "http://127.0.0.1:8081".to_string());
        let token = std::env::var("GATEHOUSE_ADMIN_TOKEN")
            .ok()
            .filter(|v| !v.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| "set GATEHOUSE_ADMIN_TOKEN to an operator token (printed at first start)".to_string())?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), token, json: conn.json })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/admin/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(self.token.expose_secret());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {}", self.base, e.without_url()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("reading the answer: {}", e.without_url()))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = value["error"]["message"].as_str().unwrap_or("no error message");
            let code = value["error"]["code"].as_str().unwrap_or("unknown");
            return Err(format!("{msg} ({code}, HTTP {})", status.as_u16()));
        }
        Ok(value)
    }

    fn print_json(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints rows as a left-aligned table with a header.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "all".into(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn rows(v: &Value) -> Vec<Value> {
    v["data"].as_array().cloned().unwrap_or_default()
}

/// `gatehouse keys …`.
pub async fn keys(args: ClientArgs<KeysCmd>) -> ExitCode {
    finish(keys_inner(args).await)
}

async fn keys_inner(args: ClientArgs<KeysCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        KeysCmd::Create { name, models, expires_in, app, scopes, single_use: true, .. } => {
            oauth::single_use(&c, name, app, scopes, models, expires_in).await?;
        }
        KeysCmd::Create { name, models, expires_in, app, scopes, ip_allow, labels, auto_suspend, dpop_jkt, mtls_x5t, mtls_cert, single_use: false } => {
            let mut body = json!({ "name": name });
            let scopes: Vec<String> = scopes.into_iter().map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            // empties are sent as given: `--ip-allow ''` is a 400, never an unrestricted key (L1)
            let ip_allow: Vec<String> = ip_allow.into_iter().map(|m| m.trim().to_string()).collect();
            if !ip_allow.is_empty() {
                body["ip_allow"] = json!(ip_allow);
            }
            if !labels.is_empty() {
                let mut map = serde_json::Map::new();
                for l in labels {
                    let (k, v) = l.split_once('=').ok_or_else(|| format!("--label {l}: expected KEY=VALUE"))?;
                    map.insert(k.to_string(), json!(v));
                }
                body["labels"] = Value::Object(map);
            }
            if auto_suspend {
                body["auto_suspend"] = json!(true);
            }
            if let Some(j) = dpop_jkt {
                body["dpop_jkt"] = json!(j.trim());
            }
            if let Some(x) = mtls_x5t {
                body["mtls_x5t"] = json!(x.trim());
            }
            if let Some(path) = mtls_cert {
                body["mtls_x5t"] = json!(gatehouse_gateway::tls::x5t_of_pem_file(&path)?);
            }
            let models: Vec<String> = models.into_iter().map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
            if !models.is_empty() {
                body["models"] = json!(models);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = json!(e);
            }
            if let Some(a) = app {
                body["app_id"] = json!(a);
            }
            let v = c.call(reqwest::Method::POST, "/keys", Some(body)).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("{}", s(&v["key"]));
                println!("id: {}", s(&v["id"]));
                println!("hint: {}", s(&v["hint"]));
                println!("name: {}", s(&v["name"]));
                println!("models: {}", s(&v["models"]));
                println!("expires_at: {}", if v["expires_at"].is_null() { "never".into() } else { s(&v["expires_at"]) });
            }
            eprintln!("Save this key now: it is shown only once.");
        }
        KeysCmd::List { all } => {
            let v = c.call(reqwest::Method::GET, if all { "/keys?include_revoked=true" } else { "/keys" }, None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                table(
                    &["ID", "NAME", "HINT", "MODELS", "EXPIRES", "REVOKED", "CREATED"],
                    rows(&v)
                        .iter()
                        .map(|k| {
                            vec![s(&k["id"]), s(&k["name"]), s(&k["hint"]), s(&k["models"]), s(&k["expires_at"]), s(&k["revoked_at"]), s(&k["created_at"])]
                        })
                        .collect(),
                );
            }
        }
        KeysCmd::Rotate { id, grace } => {
            let body = grace.map(|g| json!({ "grace": g }));
            let v = c.call(reqwest::Method::POST, &format!("/keys/{}/rotate", path_segment(&id)), body).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("{}", s(&v["key"]));
                println!("id: {}", s(&v["id"]));
                println!("hint: {}", s(&v["hint"]));
                println!("previous: {} works until {}", s(&v["previous"]["id"]), s(&v["previous"]["expires_at"]));
            }
            eprintln!("Save this key now: it is shown only once.");
        }
        KeysCmd::Revoke { id } => {
            let v = c.call(reqwest::Method::POST, &format!("/keys/{}/revoke", path_segment(&id)), None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("revoked {} ({})", s(&v["id"]), s(&v["hint"]));
            }
        }
    }
    Ok(())
}

/// Percent-encodes a path segment (names and ids come from the user).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `gatehouse providers …`.
pub async fn providers(args: ClientArgs<ProvidersCmd>) -> ExitCode {
    finish(providers_inner(args).await)
}

async fn providers_inner(args: ClientArgs<ProvidersCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        ProvidersCmd::Add { name, kind, base_url, api_key_env, api_key_file, api_key_stdin, api_key } => {
            let given = [api_key_env.is_some(), api_key_file.is_some(), api_key_stdin, api_key.is_some()];
            if given.iter().filter(|g| **g).count() > 1 {
                return Err("give the key in one way only".into());
            }
            let key: Option<SecretString> = if let Some(var) = api_key_env {
                Some(std::env::var(&var).ok().filter(|v| !v.is_empty()).map(SecretString::from).ok_or_else(|| format!("{var} is not set"))?)
            } else if let Some(path) = api_key_file {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {}", e.kind()))?;
                Some(SecretString::from(text.trim().to_string()))
            } else if api_key_stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| format!("reading stdin: {e}"))?;
                Some(SecretString::from(text.trim().to_string()))
            } else {
                api_key.map(SecretString::from)
            };
            let mut body = json!({ "name": name, "kind": kind });
            if let Some(u) = base_url {
                body["base_url"] = json!(u);
            }
            if let Some(k) = &key {
                body["api_key"] = json!(k.expose_secret());
            }
            let v = c.call(reqwest::Method::POST, "/providers", Some(body)).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("provider {} ({}) {} key {}", s(&v["name"]), s(&v["kind"]), s(&v["base_url"]), s(&v["key_hint"]));
            }
        }
        ProvidersCmd::List => {
            let v = c.call(reqwest::Method::GET, "/providers", None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                table(
                    &["NAME", "KIND", "BASE URL", "KEY", "ID"],
                    rows(&v).iter().map(|p| vec![s(&p["name"]), s(&p["kind"]), s(&p["base_url"]), s(&p["key_hint"]), s(&p["id"])]).collect(),
                );
            }
        }
        ProvidersCmd::Remove { name } => {
            let v = c.call(reqwest::Method::DELETE, &format!("/providers/{}", path_segment(&name)), None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("removed provider {name}");
            }
        }
    }
    Ok(())
}

/// Parses `PROVIDER/MODEL[,weight=N][,priority=N]`.
fn parse_deployment(spec: &str) -> Result<Value, String> {
    let mut parts = spec.split(',');
    let head = parts.next().unwrap_or("");
    let (provider, model) = head
        .split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        .ok_or_else(|| format!("--deployment `{spec}`: expected PROVIDER/MODEL"))?;
    let mut d = json!({ "provider": provider, "model": model });
    for opt in parts {
        let (k, v) = opt.split_once('=').ok_or_else(|| format!("--deployment `{spec}`: expected weight=N or priority=N"))?;
        let n: i64 = v.parse().map_err(|_| format!("--deployment `{spec}`: {k} must be an integer"))?;
        match k {
            "weight" | "priority" => d[k] = json!(n),
            _ => return Err(format!("--deployment `{spec}`: unknown option {k}")),
        }
    }
    Ok(d)
}

/// `gatehouse models …`.
pub async fn models(args: ClientArgs<ModelsCmd>) -> ExitCode {
    finish(models_inner(args).await)
}

async fn models_inner(args: ClientArgs<ModelsCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        ModelsCmd::Add { name, deployments } => {
            let deployments = deployments.iter().map(|d| parse_deployment(d)).collect::<Result<Vec<_>, _>>()?;
            let v = c.call(reqwest::Method::POST, "/models", Some(json!({ "name": name, "deployments": deployments }))).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("model {} → {}", s(&v["name"]), deployments_text(&v));
            }
        }
        ModelsCmd::List => {
            let v = c.call(reqwest::Method::GET, "/models", None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                table(&["NAME", "DEPLOYMENTS"], rows(&v).iter().map(|m| vec![s(&m["name"]), deployments_text(m)]).collect());
            }
        }
        ModelsCmd::Remove { name } => {
            let v = c.call(reqwest::Method::DELETE, &format!("/models/{}", path_segment(&name)), None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("removed model {name}");
            }
        }
    }
    Ok(())
}

fn deployments_text(m: &Value) -> String {
    m["deployments"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| format!("{}/{} (w{} p{})", s(&d["provider"]), s(&d["model"]), s(&d["weight"]), s(&d["priority"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `gatehouse logs`.
pub async fn logs(args: LogsArgs) -> ExitCode {
    finish(logs_inner(args).await)
}

async fn logs_inner(args: LogsArgs) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let mut q = vec![format!("limit={}", args.limit)];
    if let Some(m) = &args.model {
        q.push(format!("model={}", path_segment(m)));
    }
    if let Some(k) = &args.key {
        q.push(format!("key_id={}", path_segment(k)));
    }
    if let Some(b) = &args.before {
        q.push(format!("before={}", path_segment(b)));
    }
    if args.errors {
        q.push("errors_only=true".into());
    }
    let v = c.call(reqwest::Method::GET, &format!("/logs?{}", q.join("&")), None).await?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    table(
        &["TIME", "STATUS", "MODEL", "PROVIDER", "UPSTREAM MODEL", "STREAM", "MS", "TOKENS IN/OUT", "ERROR", "REQUEST ID"],
        rows(&v)
            .iter()
            .map(|l| {
                vec![
                    s(&l["created_at"]),
                    s(&l["status"]),
                    s(&l["model"]),
                    s(&l["provider"]),
                    s(&l["upstream_model"]),
                    s(&l["stream"]),
                    s(&l["latency_ms"]),
                    format!("{}/{}", s(&l["prompt_tokens"]), s(&l["completion_tokens"])),
                    s(&l["error_code"]),
                    s(&l["request_id"]),
                ]
            })
            .collect(),
    );
    if !v["next_before"].is_null() {
        println!("(more: --before {})", s(&v["next_before"]));
    }
    Ok(())
}

#[cfg(test)]
mod l7_tests {
    #[test]
    fn l7_providers_add_kind_help_lists_every_kind() {
        let help = super::kind_help();
        for k in gatehouse_types::ProviderKind::ALL {
            assert!(help.contains(k.as_str()), "{help}");
        }
    }
}
