//! OAuth clients, operator revocation and introspection, and single-use tokens in the control
//! plane (issue 5; RFC 6749 §2, RFC 7009, RFC 7662, `token-security.md` §1.1, §5.5).
//!
//! The logic lives in the node's [`OAuth`] authorization server (the same instance the data
//! plane verifies tokens with, attached by the server with [`AdminService::attach_oauth`]); this
//! module validates operator input and maps errors onto the admin API's error table.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::parse_duration_str;
use gatehouse_oauth::{Caller, NewClient, OAuth, OAuthError, TokenResponse};
use gatehouse_store::OAuthClient;
use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;

use super::{AdminService, KEY_SCOPES, check_label, internal, not_found};
use crate::input::{Fields, bad};

/// Longest token accepted by revoke / introspect (bytes; RFC 6750 tokens are far shorter).
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Most models, scopes or audiences in one client.
pub const MAX_LIST: usize = 64;

/// An OAuth client as the admin API shows it (never the secret or its digest).
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    /// The wire `client_id`.
    pub id: Id,
    pub name: String,
    pub team_id: Id,
    pub app_id: Id,
    /// `client_secret_basic` or `private_key_jwt`.
    pub auth_method: String,
    /// e.g. `gthc_live_…abcd` (`null` for `private_key_jwt`).
    pub secret_hint: Option<String>,
    /// The registered public JWK (`private_key_jwt`).
    pub public_jwk: Option<Value>,
    /// `opaque` (`gtha_…`) or `jwt` (RFC 9068).
    pub token_format: String,
    /// Scopes tokens may carry; empty = every data-plane scope.
    pub scopes: Vec<String>,
    /// Public models tokens may use; empty = all.
    pub models: Vec<String>,
    /// Audiences exchanged tokens may be bound to.
    pub audiences: Vec<String>,
    /// Access-token lifetime in seconds.
    pub access_ttl_secs: i64,
    /// RFC 8705 §3.4: tokens are bound to the client's TLS certificate.
    pub tls_client_certificate_bound_access_tokens: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

impl From<&OAuthClient> for ClientView {
    fn from(c: &OAuthClient) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            team_id: c.team_id,
            app_id: c.app_id,
            auth_method: c.auth_method.clone(),
            secret_hint: c.secret_hint.clone(),
            public_jwk: c.public_jwk.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            token_format: c.token_format.clone(),
            scopes: c.scopes.clone(),
            models: c.models.clone(),
            audiences: c.audiences.clone(),
            access_ttl_secs: c.access_ttl_secs,
            tls_client_certificate_bound_access_tokens: c.tls_client_certificate_bound_access_tokens,
            revoked_at: c.revoked_at,
            created_at: c.created_at,
        }
    }
}

/// Body of `POST /admin/v1/oauth-clients`.
#[derive(Debug, Clone)]
pub struct CreateClientRequest {
    pub name: String,
    /// Default: the bootstrap app.
    pub app_id: Option<Id>,
    /// `client_secret_basic` (default) or `private_key_jwt`.
    pub auth_method: String,
    /// Required for `private_key_jwt`: a public EC P-256 JWK.
    pub public_jwk: Option<Value>,
    /// `opaque` (default) or `jwt`.
    pub token_format: String,
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    pub audiences: Vec<String>,
    /// Access-token lifetime, 1 s ..= 1 h (default 10 min).
    pub access_ttl: Duration,
    /// RFC 8705 §3.4 `tls_client_certificate_bound_access_tokens` (default false).
    pub tls_client_certificate_bound_access_tokens: bool,
}

/// Reads a duration given as a string (`"10m"`) or whole seconds; `field` names it in errors.
fn duration_field(f: &mut Fields, field: &str) -> Result<Option<Duration>, ApiError> {
    match f.take(field) {
        None => Ok(None),
        Some(Value::String(s)) => parse_duration_str(&s).map(Some).map_err(|e| bad(field, e)),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| bad(field, format!("`{field}` must be a non-negative number of seconds"))),
        Some(_) => Err(bad(field, format!("`{field}` must be a duration such as \"10m\""))),
    }
}

fn scopes_field(f: &mut Fields) -> Result<Vec<String>, ApiError> {
    let mut scopes = f.opt_string_list("scopes")?.unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if !KEY_SCOPES.contains(&s.as_str()) {
            return Err(bad(&format!("scopes[{i}]"), format!("unknown scope (expected one of: {})", KEY_SCOPES.join(", "))));
        }
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

fn models_field(f: &mut Fields) -> Result<Vec<String>, ApiError> {
    let mut models = f.opt_string_list("models")?.unwrap_or_default();
    if models.len() > MAX_LIST {
        return Err(bad("models", format!("at most {MAX_LIST} models")));
    }
    for (i, m) in models.iter().enumerate() {
        check_label(m, &format!("models[{i}]"), 256)?;
        if m.contains(' ') {
            return Err(bad(&format!("models[{i}]"), "model names contain no spaces"));
        }
    }
    models.sort();
    models.dedup();
    Ok(models)
}

impl CreateClientRequest {
    /// Reads `{"name", "app_id"?, "auth_method"?, "public_jwk"?, "token_format"?, "scopes"?,
    /// "models"?, "audiences"?, "access_ttl"?, "tls_client_certificate_bound_access_tokens"?}`.
    /// 400 naming the field otherwise.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let mut f = Fields::from_body(body)?;
        f.deny_unknown(&["name", "app_id", "auth_method", "public_jwk", "token_format", "scopes", "models", "audiences", "access_ttl", "tls_client_certificate_bound_access_tokens"])?;
        let name = f.string("name")?;
        check_label(&name, "name", 128)?;
        let app_id = f.opt_id("app_id")?;
        let auth_method = f.opt_string("auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
        if !matches!(auth_method.as_str(), "client_secret_basic" | "private_key_jwt") {
            return Err(bad("auth_method", "`auth_method` must be client_secret_basic or private_key_jwt"));
        }
        let public_jwk = match f.take("public_jwk") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(_) => return Err(bad("public_jwk", "`public_jwk` must be a JWK object")),
        };
        match (auth_method.as_str(), &public_jwk) {
            ("private_key_jwt", None) => return Err(bad("public_jwk", "private_key_jwt needs `public_jwk` (a public EC P-256 JWK)")),
            ("client_secret_basic", Some(_)) => return Err(bad("public_jwk", "`public_jwk` is only for private_key_jwt")),
            _ => {}
        }
        let token_format = f.opt_string("token_format")?.unwrap_or_else(|| "opaque".into());
        if !matches!(token_format.as_str(), "opaque" | "jwt") {
            return Err(bad("token_format", "`token_format` must be opaque or jwt"));
        }
        let scopes = scopes_field(&mut f)?;
        let models = models_field(&mut f)?;
        let mut audiences = f.opt_string_list("audiences")?.unwrap_or_default();
        if audiences.len() > MAX_LIST {
            return Err(bad("audiences", format!("at most {MAX_LIST} audiences")));
        }
        for (i, a) in audiences.iter().enumerate() {
            check_label(a, &format!("audiences[{i}]"), 512)?;
            if a.contains(' ') {
                return Err(bad(&format!("audiences[{i}]"), "audiences contain no spaces"));
            }
        }
        audiences.sort();
        audiences.dedup();
        let access_ttl = duration_field(&mut f, "access_ttl")?.unwrap_or(gatehouse_oauth::DEFAULT_TTL);
        if access_ttl.is_zero() || access_ttl > gatehouse_oauth::MAX_TTL {
            return Err(bad("access_ttl", "`access_ttl` must be between 1s and 1h"));
        }
        let tls_client_certificate_bound_access_tokens = match f.take("tls_client_certificate_bound_access_tokens") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(bad("tls_client_certificate_bound_access_tokens", "`tls_client_certificate_bound_access_tokens` must be true or false")),
        };
        Ok(Self { name, app_id, auth_method, public_jwk, token_format, scopes, models, audiences, access_ttl, tls_client_certificate_bound_access_tokens })
    }
}

/// Body of `POST /admin/v1/keys` with `"single_use": true`: a `gths_…` token for one call.
#[derive(Debug, Clone)]
pub struct SingleUseRequest {
    pub name: String,
    pub app_id: Option<Id>,
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    /// Lifetime, 1 s ..= 1 h (default [`gatehouse_oauth::SINGLE_USE_TTL`], 5 min).
    pub ttl: Duration,
}

impl SingleUseRequest {
    /// Reads `{"single_use": true, "name", "app_id"?, "scopes"?, "models"?, "expires_in"?}`;
    /// the long-lived key options (`ip_allow`, `labels`, `auto_suspend`, `expires_at`) are
    /// refused with 400 naming the field.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let mut f = Fields::from_body(body)?;
        f.deny_unknown(&["single_use", "name", "app_id", "scopes", "models", "expires_in"])?;
        match f.take("single_use") {
            Some(Value::Bool(true)) => {}
            _ => return Err(bad("single_use", "`single_use` must be true here")),
        }
        let name = f.string("name")?;
        check_label(&name, "name", 128)?;
        let app_id = f.opt_id("app_id")?;
        let scopes = scopes_field(&mut f)?;
        let models = models_field(&mut f)?;
        let ttl = duration_field(&mut f, "expires_in")?.unwrap_or(gatehouse_oauth::SINGLE_USE_TTL);
        if ttl.is_zero() || ttl > gatehouse_oauth::MAX_TTL {
            return Err(bad("expires_in", "a single-use token lives between 1s and 1h"));
        }
        Ok(Self { name, app_id, scopes, models, ttl })
    }
}

/// Reads `{"token": "…", "token_type_hint"?: "…"}` (RFC 7009 §2.1 / RFC 7662 §2.1 parameters
/// as JSON). The hint is accepted and ignored (both RFCs allow that). The token is never echoed.
pub fn token_from_json(body: &[u8]) -> Result<SecretString, ApiError> {
    let mut f = Fields::from_body(body)?;
    f.deny_unknown(&["token", "token_type_hint"])?;
    let _ = f.opt_string("token_type_hint")?;
    match f.take("token") {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_BYTES && !t.chars().any(char::is_control) => {
            Ok(SecretString::from(t))
        }
        Some(_) => Err(bad("token", format!("`token` must be a string of 1-{MAX_TOKEN_BYTES} bytes"))),
        None => Err(bad("token", "`token` is required")),
    }
}

/// Maps an authorization-server error onto the admin error table (descriptions never carry a
/// secret: they are fixed text or echo scope / model names).
pub(super) fn from_oauth(e: OAuthError) -> ApiError {
    match e.error {
        "temporarily_unavailable" => ApiError::new(ErrorCode::Unavailable, e.description),
        "server_error" => ApiError::internal(),
        "invalid_scope" => bad("scopes", e.description),
        _ => bad("body", e.description),
    }
}

impl AdminService {
    /// Attaches the node's authorization server (once; later calls are ignored). Until then
    /// the OAuth endpoints answer 503.
    pub fn attach_oauth(&self, oauth: Arc<OAuth>) {
        let _ = self.oauth.set(oauth);
    }

    fn oauth(&self) -> Result<&Arc<OAuth>, ApiError> {
        self.oauth
            .get()
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the authorization server is not running on this node"))
    }

    async fn app_or_default(&self, app_id: Option<Id>) -> Result<gatehouse_store::App, ApiError> {
        match app_id {
            Some(id) => self
                .deps
                .store
                .get_app(id)
                .await
                .map_err(|e| internal("reading an app", &e))?
                .ok_or_else(|| not_found("app", "app_id")),
            None => self.default_app().await,
        }
    }

    /// Registers an OAuth client (RFC 6749 §2) for an app. Returns the client and, for
    /// `client_secret_basic`, the secret `gthc_…` (shown exactly once).
    ///
    /// Errors: 400 (bad JWK or input), 404 unknown `app_id`, 503 no authorization server.
    pub async fn create_oauth_client(&self, req: CreateClientRequest) -> Result<(ClientView, Option<SecretString>), ApiError> {
        let oauth = self.oauth()?;
        let app = self.app_or_default(req.app_id).await?;
        let new = NewClient {
            team_id: app.team_id,
            app_id: app.id,
            name: req.name,
            auth_method: req.auth_method,
            public_jwk: req.public_jwk,
            token_format: req.token_format,
            scopes: req.scopes,
            models: req.models,
            audiences: req.audiences,
            access_ttl: req.access_ttl,
            tls_client_certificate_bound_access_tokens: req.tls_client_certificate_bound_access_tokens,
        };
        let (client, secret) = oauth.create_client(new).await.map_err(|e| {
            if e.description.contains("public_jwk") {
                bad("public_jwk", e.description)
            } else if e.error == "invalid_request" && e.description == gatehouse_oauth::APP_NOT_FOUND {
                // the app was deleted after `app_or_default` read it (M2)
                not_found("app", "app_id")
            } else {
                from_oauth(e)
            }
        })?;
        Ok((ClientView::from(&client), secret))
    }

    /// Lists OAuth clients, newest first (revoked ones only with `include_revoked`).
    pub async fn list_oauth_clients(&self, include_revoked: bool) -> Result<Vec<ClientView>, ApiError> {
        let list = self.deps.store.list_oauth_clients(include_revoked).await.map_err(|e| internal("listing oauth clients", &e))?;
        Ok(list.iter().map(ClientView::from).collect())
    }

    /// One OAuth client. Errors: 404.
    pub async fn get_oauth_client(&self, id: Id) -> Result<ClientView, ApiError> {
        self.deps
            .store
            .get_oauth_client(id)
            .await
            .map_err(|e| internal("reading an oauth client", &e))?
            .map(|c| ClientView::from(&c))
            .ok_or_else(|| not_found("oauth client", "id"))
    }

    /// Revokes a client and every token it obtained (idempotent); effective on this node before
    /// returning. Errors: 404, 503 no authorization server.
    pub async fn revoke_oauth_client(&self, id: Id) -> Result<ClientView, ApiError> {
        let oauth = self.oauth()?;
        let current = self.get_oauth_client(id).await?;
        if current.revoked_at.is_none() {
            oauth.revoke_client(id).await.map_err(from_oauth)?;
        }
        self.get_oauth_client(id).await
    }

    /// Revokes a client and its tokens through the node's authorization server, or — when none
    /// is attached (an admin-only process) — in the store, publishing the same
    /// `TokenRevoked` so every node's caches drop the client's tokens.
    pub(crate) async fn revoke_client_now(&self, id: Id) -> Result<(), ApiError> {
        match self.oauth() {
            Ok(oauth) => oauth.revoke_client(id).await.map(|_| ()).map_err(from_oauth),
            Err(_) => {
                let found = self
                    .deps
                    .store
                    .revoke_oauth_client(id, gatehouse_types::now())
                    .await
                    .map_err(|e| internal("revoking an oauth client", &e))?;
                if found {
                    self.deps.bus.publish(gatehouse_store::BusEvent::TokenRevoked { id });
                }
                Ok(())
            }
        }
    }

    /// RFC 7009 for operators: revokes any live Gatehouse credential (API key, `gtha_`, `gths_`,
    /// JWT access token); derived tokens die with it. Returns the public id and kind of what was
    /// revoked, `None` if the string was not an active credential of this deployment.
    pub async fn revoke_token(&self, token: &SecretString) -> Result<Option<(Id, &'static str)>, ApiError> {
        use secrecy::ExposeSecret;
        if let Some(id) = self.revoke_operator_token_plaintext(token.expose_secret(), "admin", "revoked").await? {
            return Ok(Some((id, "operator_token")));
        }
        self.oauth()?.revoke_detailed(token.expose_secret(), &Caller::Operator).await.map_err(from_oauth)
    }

    /// RFC 7662 §2.2 for operators: `{"active": false}` or the metadata of any live credential.
    pub async fn introspect_token(&self, token: &SecretString) -> Result<Value, ApiError> {
        use secrecy::ExposeSecret;
        self.oauth()?.introspect(token.expose_secret(), &Caller::Operator).await.map_err(from_oauth)
    }

    /// Mints a single-use token `gths_…` (G-9: exactly one successful call) for an app.
    ///
    /// Errors: 404 unknown `app_id`, 503 no authorization server.
    pub async fn create_single_use(&self, req: SingleUseRequest) -> Result<TokenResponse, ApiError> {
        let oauth = self.oauth()?;
        let app = self.app_or_default(req.app_id).await?;
        let resp = oauth.mint_single_use(app.team_id, app.id, &req.name, req.scopes, req.models, req.ttl).await.map_err(from_oauth)?;
        Ok(resp)
    }
}
