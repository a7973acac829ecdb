//! `gatehouse oauth-clients create|list|revoke`, `gatehouse tokens revoke|introspect` and
//! `gatehouse keys create --single-use` (issue 5): clients of `/admin/v1/oauth-clients` and
//! `/admin/v1/tokens/*`.
//!
//! ```text
//! gatehouse oauth-clients create --name ci --scopes chat:invoke --models gpt-4o --token-format jwt
//! gatehouse oauth-clients create --name svc --auth-method private_key_jwt --public-jwk-file key.pub.jwk
//! gatehouse oauth-clients list [--all]
//! gatehouse oauth-clients revoke CLIENT_ID
//! echo "$TOKEN" | gatehouse tokens revoke           # or --token-env VAR / --token-file PATH
//! gatehouse tokens introspect --token-env TOKEN
//! gatehouse keys create --name once --single-use --models gpt-4o --expires-in 5m
//! ```
//!
//! Tokens to revoke or introspect are read from standard input (default), an environment
//! variable or a file, and are never printed back.

use std::io::Read;
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Client, ClientArgs, finish, path_segment, rows, s, table};

/// `gatehouse oauth-clients …`.
#[derive(Debug, Clone, Subcommand)]
pub enum OAuthClientsCmd {
    /// Register a client; prints the client secret once (first line), then its id.
    Create {
        #[arg(long)]
        name: String,
        /// App id (default: the "default" app).
        #[arg(long, value_name = "ID")]
        app: Option<String>,
        /// client_secret_basic (default) or private_key_jwt.
        #[arg(long, value_name = "METHOD")]
        auth_method: Option<String>,
        /// File holding the client's public EC P-256 JWK (private_key_jwt).
        #[arg(long, value_name = "PATH")]
        public_jwk_file: Option<String>,
        /// opaque (gtha_…, default) or jwt (RFC 9068).
        #[arg(long, value_name = "FORMAT")]
        token_format: Option<String>,
        /// Comma-separated scopes tokens may carry (default: all).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Comma-separated public models tokens may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Comma-separated audiences exchanged tokens may be bound to.
        #[arg(long, value_delimiter = ',')]
        audiences: Vec<String>,
        /// Access-token lifetime, e.g. 10m (default 10m, at most 1h).
        #[arg(long, value_name = "DURATION")]
        access_ttl: Option<String>,
        /// Certificate-bound tokens (RFC 8705 §3, `tls_client_certificate_bound_access_tokens`):
        /// the client must call the token endpoint over mutual TLS, and its tokens then only
        /// work over connections with that client certificate.
        #[arg(long)]
        mtls_bound: bool,
    },
    /// List clients (secret hints only).
    List {
        /// Include revoked clients.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a client and every token it obtained.
    Revoke {
        /// The client id.
        id: String,
    },
}

/// Where a token comes from (never a plain argument by default: those show in `ps`).
#[derive(Debug, Clone, clap::Args)]
pub struct TokenSource {
    /// Name of an environment variable holding the token.
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// File holding the token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<String>,
}

/// `gatehouse tokens …`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokensCmd {
    /// Revoke an API key or issued token (read from stdin unless --token-env/--token-file).
    Revoke {
        #[command(flatten)]
        source: TokenSource,
    },
    /// Show whether a token is active and what it may do (RFC 7662).
    Introspect {
        #[command(flatten)]
        source: TokenSource,
    },
}

fn list(values: Vec<String>) -> Vec<String> {
    values.into_iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
}

/// Reads the token from the chosen source: first non-empty line, trimmed.
fn read_token(src: &TokenSource) -> Result<SecretString, String> {
    if src.token_env.is_some() && src.token_file.is_some() {
        return Err("give the token in one way only".into());
    }
    let text = if let Some(var) = &src.token_env {
        std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| format!("{var} is not set"))?
    } else if let Some(path) = &src.token_file {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {}", e.kind()))?
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("reading stdin: {}", e.kind()))?;
        text
    };
    let token = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
    if token.is_empty() {
        return Err("no token given (pipe it on stdin, or use --token-env / --token-file)".into());
    }
    Ok(SecretString::from(token))
}

/// `gatehouse oauth-clients …`.
pub async fn oauth_clients(args: ClientArgs<OAuthClientsCmd>) -> ExitCode {
    finish(oauth_clients_inner(args).await)
}

async fn oauth_clients_inner(args: ClientArgs<OAuthClientsCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        OAuthClientsCmd::Create { name, app, auth_method, public_jwk_file, token_format, scopes, models, audiences, access_ttl, mtls_bound } => {
            let mut body = json!({ "name": name });
            if let Some(a) = app {
                body["app_id"] = json!(a);
            }
            if let Some(m) = auth_method {
                body["auth_method"] = json!(m);
            }
            if let Some(path) = public_jwk_file {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {}", e.kind()))?;
                let jwk: Value = serde_json::from_str(&text).map_err(|_| format!("{path} is not a JSON JWK"))?;
                body["public_jwk"] = jwk;
                if body.get("auth_method").is_none() {
                    body["auth_method"] = json!("private_key_jwt");
                }
            }
            if let Some(f) = token_format {
                body["token_format"] = json!(f);
            }
            for (k, v) in [("scopes", list(scopes)), ("models", list(models)), ("audiences", list(audiences))] {
                if !v.is_empty() {
                    body[k] = json!(v);
                }
            }
            if let Some(t) = access_ttl {
                body["access_ttl"] = json!(t);
            }
            if mtls_bound {
                body["tls_client_certificate_bound_access_tokens"] = json!(true);
            }
            let v = c.call(reqwest::Method::POST, "/oauth-clients", Some(body)).await?;
            if c.json {
                c.print_json(&v);
            } else {
                if v["client_secret"].is_string() {
                    println!("{}", s(&v["client_secret"]));
                }
                println!("client_id: {}", s(&v["id"]));
                println!("auth_method: {}", s(&v["auth_method"]));
                println!("token_format: {}", s(&v["token_format"]));
                println!("scopes: {}", s(&v["scopes"]));
                println!("models: {}", s(&v["models"]));
                println!("access_ttl_secs: {}", s(&v["access_ttl_secs"]));
                if v["tls_client_certificate_bound_access_tokens"] == json!(true) {
                    println!("tls_client_certificate_bound_access_tokens: true");
                }
            }
            if v["client_secret"].is_string() {
                eprintln!("Save this client secret now: it is shown only once.");
            }
        }
        OAuthClientsCmd::List { all } => {
            let v = c.call(reqwest::Method::GET, if all { "/oauth-clients?include_revoked=true" } else { "/oauth-clients" }, None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                table(
                    &["CLIENT ID", "NAME", "AUTH", "SECRET", "FORMAT", "SCOPES", "MODELS", "REVOKED", "CREATED"],
                    rows(&v)
                        .iter()
                        .map(|k| {
                            vec![
                                s(&k["id"]),
                                s(&k["name"]),
                                s(&k["auth_method"]),
                                s(&k["secret_hint"]),
                                s(&k["token_format"]),
                                s(&k["scopes"]),
                                s(&k["models"]),
                                s(&k["revoked_at"]),
                                s(&k["created_at"]),
                            ]
                        })
                        .collect(),
                );
            }
        }
        OAuthClientsCmd::Revoke { id } => {
            let v = c.call(reqwest::Method::POST, &format!("/oauth-clients/{}/revoke", path_segment(&id)), None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("revoked client {} ({}); its tokens no longer work", s(&v["id"]), s(&v["name"]));
            }
        }
    }
    Ok(())
}

/// `gatehouse tokens …`.
pub async fn tokens(args: ClientArgs<TokensCmd>) -> ExitCode {
    finish(tokens_inner(args).await)
}

async fn tokens_inner(args: ClientArgs<TokensCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        TokensCmd::Revoke { source } => {
            let token = read_token(&source)?;
            let v = c.call(reqwest::Method::POST, "/tokens/revoke", Some(json!({ "token": token.expose_secret() }))).await?;
            if c.json {
                c.print_json(&v);
            } else if v["revoked"] == true {
                println!("revoked {} {}", s(&v["kind"]), s(&v["id"]));
            } else {
                println!("nothing revoked: the token is unknown, expired, consumed or already revoked");
            }
        }
        TokensCmd::Introspect { source } => {
            let token = read_token(&source)?;
            let v = c.call(reqwest::Method::POST, "/tokens/introspect", Some(json!({ "token": token.expose_secret() }))).await?;
            if c.json {
                c.print_json(&v);
            } else if let Some(map) = v.as_object() {
                println!("active: {}", s(&v["active"]));
                for (k, val) in map.iter().filter(|(k, _)| k.as_str() != "active") {
                    let shown = if val.is_object() { val.to_string() } else { s(val) };
                    println!("{k}: {shown}");
                }
            }
        }
    }
    Ok(())
}

/// `gatehouse keys create --single-use`: a `gths_…` token good for one call (printed once).
pub(super) async fn single_use(
    c: &Client,
    name: String,
    app: Option<String>,
    scopes: Vec<String>,
    models: Vec<String>,
    expires_in: Option<String>,
) -> Result<(), String> {
    let mut body = json!({ "name": name, "single_use": true });
    if let Some(a) = app {
        body["app_id"] = json!(a);
    }
    for (k, v) in [("scopes", list(scopes)), ("models", list(models))] {
        if !v.is_empty() {
            body[k] = json!(v);
        }
    }
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    let v = c.call(reqwest::Method::POST, "/tokens/single-use", Some(body)).await?;
    if c.json {
        c.print_json(&v);
    } else {
        println!("{}", s(&v["token"]));
        println!("id: {}", s(&v["id"]));
        println!("hint: {}", s(&v["hint"]));
        println!("models: {}", s(&v["models"]));
        println!("expires_at: {}", s(&v["expires_at"]));
    }
    eprintln!("Save this token now: it is shown only once and works for exactly one call.");
    Ok(())
}
