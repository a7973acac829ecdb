//! Business logic of the control plane. Every method returns [`ApiError`] for failures a client
//! can cause (400 naming the field, 404, 409) and a generic 500 for store failures, whose cause
//! is logged here (never with a secret).

use std::sync::Arc;
use std::time::Duration;

use gatehouse_auth::token::{self, Env, TokenKind};
use gatehouse_auth::{Aad, KeyProvider, Peppers};
use gatehouse_config::{ProviderKindName, check_base_url, parse_duration_str, valid_name};
use gatehouse_store::{
    App, Bus, BusEvent, CallLog, CallLogQuery, Credential, CredentialFilter, Deployment, Model, OperatorToken, Provider,
    ProviderCredential, Store, StoreError, Team, User,
};
use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp, new_id, now};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use crate::input::{Fields, Params, bad};

pub mod login_guard;
pub mod oauth_clients;
mod rotation;
pub mod tenancy;
pub use rotation::{DEFAULT_GRACE, KEY_SCOPES, MAX_GRACE};
/// Body readers of the rotation and leak endpoints.
pub mod rotation_api {
    pub use super::rotation::leak_report_from_json;
}

/// Name of the team, app created at first start.
pub const DEFAULT_TEAM: &str = "default";
/// Name of the app created at first start (keys without `app_id` belong to it).
pub const DEFAULT_APP: &str = "default";
/// Username of the first user.
pub const ADMIN_USER: &str = "admin";
/// Setting written once the first start completed.
pub const BOOTSTRAPPED: &str = "bootstrapped";
/// Audit event type: an operator token (`gtho_…`) was revoked.
pub const OPERATOR_TOKEN_REVOKED: &str = "operator_token.revoked";

/// Longest accepted `expires_in` (10 years).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(10 * 365 * 86_400);

/// What the service needs. The same `store`, `bus`, `peppers` and `key_provider` instances are
/// shared with the data plane.
#[derive(Clone)]
pub struct AdminDeps {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub peppers: Arc<Peppers>,
    pub key_provider: Arc<dyn KeyProvider>,
    /// Environment marker of generated keys and operator tokens.
    pub env: Env,
    /// The audit log (issue 5): key lifecycle and admin actions are recorded here.
    pub audit: gatehouse_store::AuditSink,
}

/// The control-plane services.
#[derive(Clone)]
pub struct AdminService {
    deps: AdminDeps,
    /// Rate-limit counters, to show usage against limits (issue 6; in-memory by default).
    counters: Arc<dyn gatehouse_store::Counters>,
    /// The node's authorization server (issue 5), attached by the server after the data plane
    /// is built ([`AdminService::attach_oauth`]).
    oauth: Arc<std::sync::OnceLock<Arc<gatehouse_oauth::OAuth>>>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (login throttling per IP).
    trusted_proxies: Arc<Vec<gatehouse_auth::cidr::Cidr>>,
    rest_allow_upstream: Arc<Vec<gatehouse_auth::cidr::Cidr>>,
}

/// Secrets to use at first start instead of generated ones (for automation).
#[derive(Default)]
pub struct BootstrapOptions {
    /// `GATEHOUSE_ADMIN_PASSWORD`.
    pub admin_password: Option<SecretString>,
    /// `GATEHOUSE_OPERATOR_TOKEN`: a `gtho_…` token or any 32..=256 token68 string.
    pub operator_token: Option<SecretString>,
}

/// What the first start created; the caller shows both secrets exactly once.
pub struct BootstrapOutput {
    pub admin_password: SecretString,
    pub operator_token: SecretString,
    /// True if the password was generated (not given).
    pub password_generated: bool,
    /// True if the token was generated (not given).
    pub token_generated: bool,
}

/// An API key as listed: metadata and hint only.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub id: Id,
    pub name: String,
    /// e.g. `gthk_live_…x9Qa`.
    pub hint: String,
    pub team_id: Id,
    pub app_id: Id,
    /// Allowed public model names; empty = all.
    pub models: Vec<String>,
    /// Data-plane scopes; empty = all.
    pub scopes: Vec<String>,
    /// IP allow-list, labels, DPoP and certificate bindings, rotation origin, suspension,
    /// `auto_suspend`.
    #[serde(flatten)]
    pub security: gatehouse_store::CredentialSecurity,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

impl From<&Credential> for KeyView {
    fn from(c: &Credential) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            hint: c.hint.clone(),
            team_id: c.team_id,
            app_id: c.app_id,
            models: c.models.clone(),
            scopes: c.scopes.clone(),
            security: c.security.clone(),
            expires_at: c.expires_at,
            revoked_at: c.revoked_at,
            last_used_at: c.last_used_at,
            created_at: c.created_at,
        }
    }
}

impl KeyView {
    /// An issued token (`gths_…`, `gtha_…`) in the key shape: `name` = `oauth:<kind>`,
    /// `expires_at` its expiry, `last_used_at` when a single-use token was consumed.
    pub fn from_issued(t: &gatehouse_store::IssuedToken) -> Self {
        Self {
            id: t.id,
            name: format!("oauth:{}", t.kind),
            hint: t.hint.clone(),
            team_id: t.team_id,
            app_id: t.app_id,
            models: t.models.clone(),
            scopes: t.scopes.clone(),
            security: gatehouse_store::CredentialSecurity { dpop_jkt: t.binding_jkt.clone(), ..Default::default() },
            expires_at: Some(t.expires_at),
            revoked_at: t.revoked_at,
            last_used_at: t.consumed_at,
            created_at: t.created_at,
        }
    }
}

/// A freshly created key: the plaintext (to show once) and its metadata.
pub struct CreatedKey {
    pub key: SecretString,
    pub view: KeyView,
}

/// A provider as listed: never the key, only its hint.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderView {
    pub id: Id,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    /// e.g. `sk-…abcd`; `null` if the provider has no key.
    pub key_hint: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A deployment as listed (provider by name).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    pub provider: String,
    pub model: String,
    pub weight: i32,
    pub priority: i32,
}

/// A public model as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    pub id: Id,
    pub name: String,
    pub deployments: Vec<DeploymentView>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// One page of call logs.
#[derive(Debug, Clone, Serialize)]
pub struct LogPage {
    pub data: Vec<CallLog>,
    /// Pass as `before` to get the next (older) page; `null` on the last page.
    pub next_before: Option<Id>,
}

/// Body of `POST /admin/v1/keys`.
#[derive(Debug, Clone, Default)]
pub struct CreateKeyRequest {
    pub name: String,
    pub models: Vec<String>,
    pub expires_in: Option<Duration>,
    pub expires_at: Option<Timestamp>,
    pub app_id: Option<Id>,
    /// Data-plane scopes (issue 5); empty = all.
    pub scopes: Vec<String>,
    /// IP allow-list, labels, `auto_suspend` (issue 5).
    pub security: gatehouse_store::CredentialSecurity,
}

impl CreateKeyRequest {
    /// Reads `{"name", "models"?, "expires_in"?, "expires_at"?, "app_id"?}`; `expires_in` is a
    /// duration string (`"30m"`, `"1h"`, `"7d"`, `"3600s"`) or integer seconds.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let mut f = Fields::from_body(body)?;
        f.deny_unknown(&["name", "models", "expires_in", "expires_at", "app_id", "scopes", "ip_allow", "labels", "auto_suspend", "dpop_jkt", "mtls_x5t"])?;
        let (scopes, security) = rotation::read_key_security(&mut f)?;
        let name = f.string("name")?;
        check_label(&name, "name", 128)?;
        let mut models = f.opt_string_list("models")?.unwrap_or_default();
        for (i, m) in models.iter().enumerate() {
            check_label(m, &format!("models[{i}]"), 256)?;
        }
        models.dedup();
        let expires_in = match f.take("expires_in") {
            None => None,
            Some(Value::String(s)) => Some(parse_duration_str(&s).map_err(|e| bad("expires_in", e))?),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(secs) => Some(Duration::from_secs(secs)),
                None => return Err(bad("expires_in", "`expires_in` must be a positive number of seconds")),
            },
            Some(_) => return Err(bad("expires_in", "`expires_in` must be a duration such as \"1h\"")),
        };
        if let Some(d) = expires_in
            && (d.is_zero() || d > MAX_EXPIRES_IN)
        {
            return Err(bad("expires_in", "`expires_in` must be between 1s and 10 years"));
        }
        let expires_at = f.opt_time("expires_at")?;
        if expires_in.is_some() && expires_at.is_some() {
            return Err(bad("expires_at", "give either `expires_in` or `expires_at`, not both"));
        }
        let app_id = f.opt_id("app_id")?;
        Ok(Self { name, models, expires_in, expires_at, app_id, scopes, security })
    }
}

/// Body of `POST /admin/v1/providers`.
pub struct UpsertProviderRequest {
    pub name: String,
    pub kind: ProviderKindName,
    pub base_url: Option<String>,
    /// `None`: keep the current key (or none for a new provider).
    pub api_key: Option<SecretString>,
}

impl UpsertProviderRequest {
    /// Reads `{"name", "kind", "base_url"?, "api_key"?}`; `kind` is any
    /// [`ProviderKindName`] name (`openai`, `anthropic`, `gemini`, `azure`, `ollama`, `mistral`, …);
    /// `base_url` is required for `azure` and `generic`.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let mut f = Fields::from_body(body)?;
        f.deny_unknown(&["name", "kind", "base_url", "api_key"])?;
        let name = f.string("name")?;
        if !valid_name(&name) {
            return Err(bad("name", "`name` must be 1-64 of a-z A-Z 0-9 . _ -"));
        }
        let kind_s = f.string("kind")?;
        let kind = ProviderKindName::parse(&kind_s)
            .ok_or_else(|| bad("kind", format!("unknown provider kind `{}` (expected one of {})", clip(&kind_s), gatehouse_config::kind_names())))?;
        let base_url = f.opt_string("base_url")?;
        if base_url.is_none() && kind.needs_base_url() {
            return Err(bad("base_url", format!("a provider of kind `{}` needs a `base_url`", kind.as_str())));
        }
        if let Some(u) = &base_url {
            check_base_url(u).map_err(|e| bad("base_url", e))?;
        }
        let api_key = match f.take("api_key") {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 4096 => Some(SecretString::from(s.trim().to_string())),
            Some(_) => return Err(bad("api_key", "`api_key` must be a non-empty string of at most 4096 bytes")),
        };
        if kind == ProviderKindName::Bedrock
            && let Some(k) = &api_key
        {
            gatehouse_types::aws::check_secret(k.expose_secret()).map_err(|e| bad("api_key", e))?;
        }
        Ok(Self { name, kind, base_url, api_key })
    }
}

/// One deployment in `POST /admin/v1/models`.
#[derive(Debug, Clone)]
pub struct DeploymentRequest {
    pub provider: String,
    pub model: String,
    pub weight: i32,
    pub priority: i32,
}

/// Body of `POST /admin/v1/models`.
#[derive(Debug, Clone)]
pub struct UpsertModelRequest {
    pub name: String,
    pub deployments: Vec<DeploymentRequest>,
}

impl UpsertModelRequest {
    /// Reads `{"name", "deployments": [{"provider", "model", "weight"?: 1, "priority"?: 0}]}`.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let mut f = Fields::from_body(body)?;
        f.deny_unknown(&["name", "deployments"])?;
        let name = f.string("name")?;
        check_label(&name, "name", 256)?;
        let items = f.objects("deployments")?;
        if items.is_empty() {
            return Err(bad("deployments", "`deployments` needs at least one entry"));
        }
        let mut deployments = Vec::new();
        for mut d in items {
            d.deny_unknown(&["provider", "model", "weight", "priority"])?;
            let provider = d.string("provider")?;
            let model = d.string("model")?;
            check_label(&model, &d.path("model"), 256)?;
            let weight = d.opt_int("weight", 0..=1_000_000)?.unwrap_or(1) as i32;
            let priority = d.opt_int("priority", -1_000_000..=1_000_000)?.unwrap_or(0) as i32;
            deployments.push(DeploymentRequest { provider, model, weight, priority });
        }
        Ok(Self { name, deployments })
    }
}

/// A name or label: 1..=max characters, no control characters.
fn check_label(s: &str, field: &str, max: usize) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(bad(field, format!("`{field}` must be 1-{max} characters without control characters")));
    }
    Ok(())
}

/// Echoes at most 64 characters of client input back in messages.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn internal(context: &str, err: &StoreError) -> ApiError {
    tracing::error!(error = %err, "{context}");
    ApiError::internal()
}

fn not_found(what: &str, field: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("{what} not found")).with_param(field)
}

/// Default base URL per kind (used when a provider is created without `base_url`).
pub fn default_base_url(kind: ProviderKindName) -> &'static str {
    kind.default_base_url()
}

/// Checks the shape of an operator token before any store access: a string that looks like
/// ours (`gth?_…`) must be a well-formed `gtho_` token of the right checksum; any other string
/// must be 32..=256 token68 characters (RFC 7235 §2.1).
pub fn operator_token_shape_ok(token: &str) -> bool {
    let b = token.as_bytes();
    if b.len() >= 5 && &b[..3] == b"gth" && b[4] == b'_' {
        return matches!(token::parse(token), Ok(p) if p.kind == TokenKind::Operator);
    }
    (32..=256).contains(&token.len()) && gatehouse_auth::extract::is_token68(token)
}

/// Random password of 24 base62 characters from the OS CSPRNG.
fn generate_password() -> Result<SecretString, ApiError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 64];
    gatehouse_auth::random_bytes(&mut raw).map_err(|_| ApiError::internal())?;
    // rejection sampling: 248 = 4 * 62, so bytes < 248 map uniformly
    let s: String = raw.iter().filter(|b| **b < 248).take(24).map(|b| ALPHABET[(*b % 62) as usize] as char).collect();
    if s.len() < 24 {
        return generate_password();
    }
    Ok(SecretString::from(s))
}

impl AdminService {
    /// A service over shared dependencies.
    pub fn new(deps: AdminDeps) -> Self {
        Self {
            deps,
            counters: Arc::new(gatehouse_store::MemoryCounters::new()),
            oauth: Arc::default(),
            trusted_proxies: Arc::default(),
            rest_allow_upstream: Arc::default(),
        }
    }

    /// Believes `X-Forwarded-For` from these reverse proxies when finding a login's client IP
    /// (`GATEHOUSE_TRUSTED_PROXIES`, the same list as the data plane's).
    pub fn with_trusted_proxies(mut self, proxies: Vec<gatehouse_auth::cidr::Cidr>) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Networks REST service nodes may point at although the SSRF guard refuses them
    /// (`[rest] allow_upstream`, [`gatehouse_auth::cidr::refused_upstream`]); default none.
    pub fn with_rest_allow_upstream(mut self, allow: Vec<gatehouse_auth::cidr::Cidr>) -> Self {
        self.rest_allow_upstream = Arc::new(allow);
        self
    }

    /// The operator's REST upstream allow-list ([`Self::with_rest_allow_upstream`]).
    pub fn rest_allow_upstream(&self) -> &[gatehouse_auth::cidr::Cidr] {
        &self.rest_allow_upstream
    }

    /// The trusted reverse proxies ([`Self::with_trusted_proxies`]).
    pub fn trusted_proxies(&self) -> &[gatehouse_auth::cidr::Cidr] {
        &self.trusted_proxies
    }

    /// Uses `counters` (the data plane's) for usage against limits (issue 6).
    pub fn with_counters(mut self, counters: Arc<dyn gatehouse_store::Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// The rate-limit counters (issue 6).
    pub(crate) fn counters(&self) -> &Arc<dyn gatehouse_store::Counters> {
        &self.counters
    }

    /// The change-event bus (issue 6).
    pub(crate) fn bus(&self) -> &Arc<dyn Bus> {
        &self.deps.bus
    }

    /// The store (for readiness probes).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
    }

    /// The audit sink shared with the data plane.
    pub fn audit(&self) -> &gatehouse_store::AuditSink {
        &self.deps.audit
    }

    // ---------------------------------------------------------------- bootstrap

    /// First start: creates team `default`, app `default`, user `admin` (argon2id password) and
    /// an operator token, then marks the store bootstrapped. Returns `Ok(None)` when the store
    /// was bootstrapped before (nothing is created and no secret is returned again).
    ///
    /// Errors: 400 if a given operator token has a bad shape or the password is shorter than 8
    /// characters; 500 on store failures.
    pub async fn bootstrap(&self, opts: BootstrapOptions) -> Result<Option<BootstrapOutput>, ApiError> {
        let store = &self.deps.store;
        if store.get_setting(BOOTSTRAPPED).await.map_err(|e| internal("reading settings", &e))?.is_some() {
            return Ok(None);
        }
        let (operator_token, token_generated) = match opts.operator_token {
            Some(t) => {
                if !operator_token_shape_ok(t.expose_secret()) {
                    return Err(bad(
                        "GATEHOUSE_OPERATOR_TOKEN",
                        "the operator token must be a gtho_ token or 32-256 token68 characters",
                    ));
                }
                (t, false)
            }
            None => {
                let g = token::generate(TokenKind::Operator, self.deps.env).map_err(|_| ApiError::internal())?;
                (g.token, true)
            }
        };
        let (admin_password, password_generated) = match opts.admin_password {
            Some(p) if p.expose_secret().chars().count() >= 8 => (p, false),
            Some(_) => return Err(bad("GATEHOUSE_ADMIN_PASSWORD", "the admin password must have at least 8 characters")),
            None => (generate_password()?, true),
        };
        let team = self.default_team_or_create().await?;
        let apps = store.list_apps(Some(team.id)).await.map_err(|e| internal("listing apps", &e))?;
        if !apps.iter().any(|a| a.name == DEFAULT_APP) {
            let app = App { id: new_id(), team_id: team.id, name: DEFAULT_APP.into(), created_at: now() };
            store.create_app(&app).await.map_err(|e| internal("creating the default app", &e))?;
        }
        let hash = gatehouse_auth::hash_password(admin_password.expose_secret()).map_err(|_| ApiError::internal())?;
        let user = match store.get_user_by_username(ADMIN_USER).await.map_err(|e| internal("reading users", &e))? {
            Some(u) => u,
            None => {
                let u = User {
                    id: new_id(),
                    username: ADMIN_USER.into(),
                    password_hash: hash,
                    system_role: "admin".into(),
                    created_at: now(),
                };
                store.create_user(&u).await.map_err(|e| internal("creating the admin user", &e))?;
                u
            }
        };
        let tok = operator_token.expose_secret();
        let record = OperatorToken {
            id: new_id(),
            user_id: user.id,
            name: "bootstrap".into(),
            digest: self.deps.peppers.digest(tok).to_vec(),
            pepper_version: self.deps.peppers.current_version(),
            hint: token::hint(tok),
            expires_at: None,
            revoked_at: None,
            created_at: now(),
        };
        match store.create_operator_token(&record).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(internal("creating the operator token", &e)),
        }
        let stamp = now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        store.set_setting(BOOTSTRAPPED, &stamp).await.map_err(|e| internal("writing settings", &e))?;
        Ok(Some(BootstrapOutput { admin_password, operator_token, password_generated, token_generated }))
    }

    async fn default_team_or_create(&self) -> Result<Team, ApiError> {
        let store = &self.deps.store;
        if let Some(t) = store.get_team_by_name(DEFAULT_TEAM).await.map_err(|e| internal("reading teams", &e))? {
            return Ok(t);
        }
        let team = Team { id: new_id(), name: DEFAULT_TEAM.into(), created_at: now() };
        store.create_team(&team).await.map_err(|e| internal("creating the default team", &e))?;
        Ok(team)
    }

    /// The bootstrap team (`default`). 500 if the store was never bootstrapped.
    pub async fn default_team(&self) -> Result<Team, ApiError> {
        match self.deps.store.get_team_by_name(DEFAULT_TEAM).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => {
                tracing::error!("the default team is missing; was the store bootstrapped?");
                Err(ApiError::internal())
            }
            Err(e) => Err(internal("reading teams", &e)),
        }
    }

    async fn default_app(&self) -> Result<App, ApiError> {
        let team = self.default_team().await?;
        let apps = self.deps.store.list_apps(Some(team.id)).await.map_err(|e| internal("listing apps", &e))?;
        apps.into_iter().find(|a| a.name == DEFAULT_APP).ok_or_else(|| {
            tracing::error!("the default app is missing; was the store bootstrapped?");
            ApiError::internal()
        })
    }

    // ---------------------------------------------------------------- operator auth

    /// Verifies an operator token: shape first (no store access for malformed ones), then the
    /// HMAC digest lookup; revoked or expired tokens are rejected.
    ///
    /// Errors: 401 `invalid_api_key` (one generic message for every reason), 500 on store errors.
    pub async fn authenticate_operator(&self, token: &str) -> Result<OperatorToken, ApiError> {
        let invalid = || ApiError::new(ErrorCode::InvalidToken, "the operator token is invalid, expired or revoked");
        if !operator_token_shape_ok(token) {
            return Err(invalid());
        }
        let digest = self.deps.peppers.digest(token);
        let found = self
            .deps
            .store
            .find_operator_token(&digest)
            .await
            .map_err(|e| internal("looking up an operator token", &e))?;
        match found {
            Some(t) if t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now()) => Ok(t),
            _ => Err(invalid()),
        }
    }

    /// Revokes the operator token `presented` (plaintext `gtho_…`) if it is ours and live;
    /// every pepper version is tried. Returns its id. Authentication reads the store on every
    /// request, so the very next request with it fails. Audited as `operator_token.revoked`.
    pub async fn revoke_operator_token_plaintext(&self, presented: &str, actor: &str, reason: &str) -> Result<Option<Id>, ApiError> {
        match token::parse(presented) {
            Ok(p) if p.kind == TokenKind::Operator => {}
            _ => return Ok(None),
        }
        for version in (1..=self.deps.peppers.current_version()).rev() {
            let Some(d) = self.deps.peppers.digest_with(version, presented) else { continue };
            let found = self.deps.store.find_operator_token(&d).await.map_err(|e| internal("looking up an operator token", &e))?;
            if let Some(t) = found {
                if t.revoked_at.is_some() {
                    return Ok(None);
                }
                return self.revoke_operator_token_id(t.id, actor, reason).await.map(|r| r.then_some(t.id));
            }
        }
        Ok(None)
    }

    /// Revokes one operator token by id (audit event `operator_token.revoked`).
    pub(crate) async fn revoke_operator_token_id(&self, id: Id, actor: &str, reason: &str) -> Result<bool, ApiError> {
        let revoked = self.deps.store.revoke_operator_token(id, now()).await.map_err(|e| internal("revoking an operator token", &e))?;
        if revoked {
            self.deps.audit.record(
                gatehouse_store::NewAuditEvent::new(OPERATOR_TOKEN_REVOKED, actor).reason(reason).details(serde_json::json!({"operator_token_id": id})),
            );
            tracing::info!(token_id = %id, reason, "operator token revoked");
        }
        Ok(revoked)
    }

    // ---------------------------------------------------------------- keys

    /// Creates an API key for an app (default: the bootstrap app). The plaintext is returned
    /// only here.
    ///
    /// Errors: 400 (expiry in the past), 404 unknown `app_id`, 500.
    pub async fn create_key(&self, req: CreateKeyRequest) -> Result<CreatedKey, ApiError> {
        let app = match req.app_id {
            Some(id) => self
                .deps
                .store
                .get_app(id)
                .await
                .map_err(|e| internal("reading an app", &e))?
                .ok_or_else(|| not_found("app", "app_id"))?,
            None => self.default_app().await?,
        };
        let created_at = now();
        let expires_at = match (req.expires_in, req.expires_at) {
            (Some(d), _) => Some(
                created_at
                    + time::Duration::try_from(d).map_err(|_| bad("expires_in", "`expires_in` is too large"))?,
            ),
            (None, Some(at)) => {
                if at <= created_at {
                    return Err(bad("expires_at", "`expires_at` must be in the future"));
                }
                Some(at)
            }
            (None, None) => None,
        };
        let generated = token::generate(TokenKind::ApiKey, self.deps.env).map_err(|_| ApiError::internal())?;
        let credential = Credential {
            id: new_id(),
            team_id: app.team_id,
            app_id: app.id,
            name: req.name,
            digest: self.deps.peppers.digest(generated.token.expose_secret()).to_vec(),
            pepper_version: self.deps.peppers.current_version(),
            hint: generated.hint,
            models: req.models,
            scopes: req.scopes,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            created_at,
            security: req.security,
        };
        // The app may be deleted concurrently; the store refuses the insert atomically (M2).
        self.deps.store.create_credential(&credential).await.map_err(|e| match e {
            StoreError::NotFound(_) => not_found("app", "app_id"),
            e => internal("creating a key", &e),
        })?;
        tracing::info!(key_id = %credential.id, app_id = %credential.app_id, "api key created");
        self.deps.audit.record(
            gatehouse_store::NewAuditEvent::new(gatehouse_store::audit::kinds::KEY_CREATED, "admin")
                .credential(credential.id)
                .details(serde_json::json!({"app_id": credential.app_id, "hint": credential.hint})),
        );
        Ok(CreatedKey { key: generated.token, view: KeyView::from(&credential) })
    }

    /// Lists keys (hint only), newest first.
    pub async fn list_keys(&self, app_id: Option<Id>, include_revoked: bool) -> Result<Vec<KeyView>, ApiError> {
        let filter = CredentialFilter { team_id: None, app_id, include_revoked };
        let list = self.deps.store.list_credentials(&filter).await.map_err(|e| internal("listing keys", &e))?;
        Ok(list.iter().map(KeyView::from).collect())
    }

    /// One key by id. Errors: 404.
    pub async fn get_key(&self, id: Id) -> Result<KeyView, ApiError> {
        self.load_key(id).await.map(|c| KeyView::from(&c))
    }

    async fn load_key(&self, id: Id) -> Result<Credential, ApiError> {
        self.deps
            .store
            .get_credential(id)
            .await
            .map_err(|e| internal("reading a key", &e))?
            .ok_or_else(|| not_found("key", "id"))
    }

    /// Revokes a key now (idempotent) and publishes [`BusEvent::CredentialChanged`] so every
    /// cache drops it before this returns. Errors: 404.
    ///
    /// `id` may also be the id (`jti`) of a token issued by the authorization server — a
    /// single-use `gths_…` made by `keys create --single-use` or exchange, or an access token
    /// (L3): it is revoked with every token derived from it (`token.revoked`, bus
    /// `TokenRevoked`) and shown in the key shape (`name` `oauth:<kind>`).
    pub async fn revoke_key(&self, id: Id) -> Result<KeyView, ApiError> {
        self.revoke_key_because(id, None).await
    }

    /// [`Self::revoke_key`], auditing `key.revoked` with `reason` (e.g. `app_deleted`).
    pub(crate) async fn revoke_key_because(&self, id: Id, reason: Option<&str>) -> Result<KeyView, ApiError> {
        let key = match self.deps.store.get_credential(id).await.map_err(|e| internal("reading a key", &e))? {
            Some(k) => k,
            None => return self.revoke_issued_by_id(id).await,
        };
        if key.revoked_at.is_none() {
            self.deps.store.revoke_credential(id, now()).await.map_err(|e| internal("revoking a key", &e))?;
            let mut event = gatehouse_store::NewAuditEvent::new(gatehouse_store::audit::kinds::KEY_REVOKED, "admin").credential(id);
            if let Some(r) = reason {
                event = event.reason(r);
            }
            self.deps.audit.record(event);
        }
        self.deps.bus.publish(BusEvent::CredentialChanged { id, digest: key.digest.clone() });
        // Tokens exchanged from this key (parent = key id) die with it.
        self.deps.bus.publish(BusEvent::TokenRevoked { id });
        tracing::info!(key_id = %id, "api key revoked");
        self.get_key(id).await
    }

    /// [`Self::revoke_key`] for an issued token's id. Errors: 404 no such key or token.
    async fn revoke_issued_by_id(&self, id: Id) -> Result<KeyView, ApiError> {
        let read = |e: gatehouse_store::StoreError| internal("reading a token", &e);
        let t = self.deps.store.get_issued_token(id).await.map_err(read)?.ok_or_else(|| not_found("key", "id"))?;
        if t.revoked_at.is_none() {
            self.deps.store.revoke_issued_token(id, now()).await.map_err(|e| internal("revoking a token", &e))?;
            self.deps.audit.record(
                gatehouse_store::NewAuditEvent::new("token.revoked", "admin").credential(id).reason("operator").details(serde_json::json!({"kind": t.kind})),
            );
        }
        // Every node drops it (and what was derived from it) before the next request.
        self.deps.bus.publish(BusEvent::TokenRevoked { id });
        tracing::info!(token_id = %id, kind = %t.kind, "issued token revoked by id");
        let t = self.deps.store.get_issued_token(id).await.map_err(read)?.ok_or_else(|| not_found("key", "id"))?;
        Ok(KeyView::from_issued(&t))
    }

    // ---------------------------------------------------------------- providers

    /// Creates or updates a provider by name. A new `api_key` is sealed (AAD: default team id,
    /// new credential id, provider name) and replaces the previous key, which is revoked.
    /// Publishes [`BusEvent::RoutingChanged`].
    ///
    /// Returns the provider (with `key_hint`) and whether it was created.
    pub async fn upsert_provider(&self, req: UpsertProviderRequest) -> Result<(ProviderView, bool), ApiError> {
        let store = &self.deps.store;
        let existing = store.get_provider_by_name(&req.name).await.map_err(|e| internal("reading a provider", &e))?;
        let created = existing.is_none();
        let base_url = req
            .base_url
            .clone()
            .or_else(|| existing.as_ref().filter(|p| p.kind == req.kind.as_str()).map(|p| p.base_url.clone()))
            .unwrap_or_else(|| default_base_url(req.kind).to_string());
        let provider = Provider {
            id: existing.as_ref().map(|p| p.id).unwrap_or_else(new_id),
            name: req.name.clone(),
            kind: req.kind.as_str().to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            settings: existing.as_ref().map(|p| p.settings.clone()).unwrap_or_else(|| serde_json::json!({})),
            created_at: existing.as_ref().map(|p| p.created_at).unwrap_or_else(now),
        };
        let stored = store.upsert_provider(&provider).await.map_err(|e| internal("storing a provider", &e))?;
        let previous = store
            .list_provider_credentials(stored.id)
            .await
            .map_err(|e| internal("listing provider keys", &e))?;
        let mut key_hint = previous.first().map(|c| c.hint.clone());
        if let Some(key) = &req.api_key {
            let team = self.default_team().await?;
            let credential_id = new_id();
            let aad = Aad { tenant_id: team.id, credential_id, provider: stored.name.clone() };
            let sealed = gatehouse_auth::seal(self.deps.key_provider.as_ref(), &aad, key.expose_secret().as_bytes())
                .map_err(|e| {
                    tracing::error!(error = %e, provider = %stored.name, "sealing a provider key failed");
                    ApiError::internal()
                })?;
            let hint = gatehouse_auth::secret_hint(key.expose_secret());
            let record = ProviderCredential {
                id: credential_id,
                provider_id: stored.id,
                team_id: team.id,
                hint: hint.clone(),
                format_version: sealed.format_version,
                kek_id: sealed.kek_id,
                wrapped_dek: sealed.wrapped_dek,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                priority: 0,
                revoked_at: None,
                created_at: now(),
            };
            store.create_provider_credential(&record).await.map_err(|e| internal("storing a provider key", &e))?;
            for old in &previous {
                store
                    .revoke_provider_credential(old.id, now())
                    .await
                    .map_err(|e| internal("revoking an old provider key", &e))?;
            }
            key_hint = Some(hint);
        }
        self.deps.bus.publish(BusEvent::RoutingChanged);
        tracing::info!(provider = %stored.name, created, key_replaced = req.api_key.is_some(), "provider stored");
        Ok((provider_view(&stored, key_hint), created))
    }

    /// Every provider with its key hint, by name.
    pub async fn list_providers(&self) -> Result<Vec<ProviderView>, ApiError> {
        let store = &self.deps.store;
        let mut out = Vec::new();
        let mut providers = store.list_providers().await.map_err(|e| internal("listing providers", &e))?;
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        for p in providers {
            let creds = store.list_provider_credentials(p.id).await.map_err(|e| internal("listing provider keys", &e))?;
            out.push(provider_view(&p, creds.first().map(|c| c.hint.clone())));
        }
        Ok(out)
    }

    /// Deletes a provider (its keys and the deployments using it). Errors: 404.
    pub async fn delete_provider(&self, name: &str) -> Result<(), ApiError> {
        let store = &self.deps.store;
        let p = store
            .get_provider_by_name(name)
            .await
            .map_err(|e| internal("reading a provider", &e))?
            .ok_or_else(|| not_found("provider", "name"))?;
        store.delete_provider(p.id).await.map_err(|e| internal("deleting a provider", &e))?;
        self.deps.bus.publish(BusEvent::RoutingChanged);
        tracing::info!(provider = %name, "provider deleted");
        Ok(())
    }

    // ---------------------------------------------------------------- models

    /// Creates or replaces a public model by name. Errors: 400 naming
    /// `deployments[i].provider` for an unknown provider. Publishes [`BusEvent::RoutingChanged`].
    pub async fn upsert_model(&self, req: UpsertModelRequest) -> Result<(ModelView, bool), ApiError> {
        let store = &self.deps.store;
        let providers = store.list_providers().await.map_err(|e| internal("listing providers", &e))?;
        let mut deployments = Vec::new();
        for (i, d) in req.deployments.iter().enumerate() {
            let p = providers.iter().find(|p| p.name == d.provider).ok_or_else(|| {
                bad(&format!("deployments[{i}].provider"), format!("unknown provider `{}`", clip(&d.provider)))
            })?;
            deployments.push(Deployment {
                id: new_id(),
                provider_id: p.id,
                upstream_model: d.model.clone(),
                weight: d.weight,
                priority: d.priority,
            });
        }
        let existing = store.get_model(&req.name).await.map_err(|e| internal("reading a model", &e))?;
        let created = existing.is_none();
        let model = Model {
            id: existing.as_ref().map(|m| m.id).unwrap_or_else(new_id),
            name: req.name,
            deployments,
            created_at: existing.as_ref().map(|m| m.created_at).unwrap_or_else(now),
        };
        let stored = match store.upsert_model(&model).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => return Err(bad("deployments", "a provider was deleted meanwhile; retry")),
            Err(e) => return Err(internal("storing a model", &e)),
        };
        self.deps.bus.publish(BusEvent::RoutingChanged);
        tracing::info!(model = %stored.name, created, "model stored");
        Ok((model_view(&stored, &providers), created))
    }

    /// Every model with its deployments, by name.
    pub async fn list_models(&self) -> Result<Vec<ModelView>, ApiError> {
        let store = &self.deps.store;
        let providers = store.list_providers().await.map_err(|e| internal("listing providers", &e))?;
        let models = store.list_models().await.map_err(|e| internal("listing models", &e))?;
        Ok(models.iter().map(|m| model_view(m, &providers)).collect())
    }

    /// Deletes a model. Errors: 404.
    pub async fn delete_model(&self, name: &str) -> Result<(), ApiError> {
        let deleted = self.deps.store.delete_model(name).await.map_err(|e| internal("deleting a model", &e))?;
        if !deleted {
            return Err(not_found("model", "name"));
        }
        self.deps.bus.publish(BusEvent::RoutingChanged);
        tracing::info!(model = %name, "model deleted");
        Ok(())
    }

    // ---------------------------------------------------------------- teams, apps, logs

    /// Every team.
    pub async fn list_teams(&self) -> Result<Vec<Team>, ApiError> {
        self.deps.store.list_teams().await.map_err(|e| internal("listing teams", &e))
    }

    /// Every app (optionally of one team).
    pub async fn list_apps(&self, team_id: Option<Id>) -> Result<Vec<App>, ApiError> {
        self.deps.store.list_apps(team_id).await.map_err(|e| internal("listing apps", &e))
    }

    /// A page of call logs, newest first.
    pub async fn query_logs(&self, query: CallLogQuery) -> Result<LogPage, ApiError> {
        let limit = query.limit.unwrap_or(100).clamp(1, 1000) as usize;
        let query = CallLogQuery { limit: Some(limit as u32), ..query };
        let data = self.deps.store.query_call_logs(&query).await.map_err(|e| internal("querying call logs", &e))?;
        let next_before = if data.len() >= limit { data.last().map(|l| l.id) } else { None };
        Ok(LogPage { data, next_before })
    }
}

/// Reads the call-log filters of `GET /admin/v1/logs`.
pub fn log_query_from_params(p: &Params) -> Result<CallLogQuery, ApiError> {
    p.deny_unknown(&[
        "model", "status", "key_id", "app_id", "team_id", "errors_only", "since", "until", "before", "limit",
    ])?;
    Ok(CallLogQuery {
        team_id: p.id("team_id")?,
        app_id: p.id("app_id")?,
        credential_id: p.id("key_id")?,
        model: p.str("model").map(str::to_string),
        status: p.int("status", 100..=599)?.map(|s| s as u16),
        errors_only: p.bool("errors_only")?,
        since: p.time("since")?,
        until: p.time("until")?,
        before: p.id("before")?,
        limit: p.int("limit", 1..=1000)?.map(|n| n as u32),
    })
}

fn provider_view(p: &Provider, key_hint: Option<String>) -> ProviderView {
    ProviderView {
        id: p.id,
        name: p.name.clone(),
        kind: p.kind.clone(),
        base_url: p.base_url.clone(),
        key_hint,
        created_at: p.created_at,
    }
}

fn model_view(m: &Model, providers: &[Provider]) -> ModelView {
    ModelView {
        id: m.id,
        name: m.name.clone(),
        deployments: m
            .deployments
            .iter()
            .map(|d| DeploymentView {
                provider: providers
                    .iter()
                    .find(|p| p.id == d.provider_id)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| d.provider_id.to_string()),
                model: d.upstream_model.clone(),
                weight: d.weight,
                priority: d.priority,
            })
            .collect(),
        created_at: m.created_at,
    }
}
