//! Stored records. Timestamps are UTC; ids UUIDv7. No field ever holds a plaintext secret.

use gatehouse_types::{Id, Timestamp};
use serde::{Deserialize, Serialize};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: Id,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A consumer application of a team; API keys belong to apps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub id: Id,
    pub team_id: Id,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A human user (console/portal). `password_hash` is an argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Id,
    pub username: String,
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// `admin` or `member`.
    pub system_role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// An admin-API bearer token (`gtho_…`), stored as HMAC digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorToken {
    pub id: Id,
    pub user_id: Id,
    pub name: String,
    #[serde(skip)]
    pub digest: Vec<u8>,
    pub pepper_version: i32,
    /// e.g. `gtho_live_…abcd`.
    pub hint: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// An API key of an app (`gthk_…`). DESIGN.md "Data model: credentials".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: Id,
    pub team_id: Id,
    pub app_id: Id,
    pub name: String,
    /// HMAC-SHA-256(pepper_v, token), 32 bytes (`token-security.md` §2.3).
    #[serde(skip)]
    pub digest: Vec<u8>,
    pub pepper_version: i32,
    /// e.g. `gthk_live_…abcd`.
    pub hint: String,
    /// Public model names this key may use; empty = all.
    pub models: Vec<String>,
    /// Scopes (space-separated on the wire); empty = all data-plane scopes.
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// Token-security attributes (issue 5): IP allow-list, labels, DPoP binding, rotation,
    /// suspension.
    #[serde(default)]
    pub security: CredentialSecurity,
}

/// Token-security attributes of an API key (issue 5; `token-security.md` §2.4–§2.6, RFC 9449).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CredentialSecurity {
    /// CIDRs (`203.0.113.0/24`, `2001:db8::/32`, or single addresses) the key may be used from;
    /// empty = any address.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Free-form labels (`{"env":"prod"}`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// RFC 7638 JWK SHA-256 thumbprint the key is bound to: it is then accepted only as
    /// `Authorization: DPoP` with a proof signed by that key (RFC 9449 §7).
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    /// RFC 8705 §3.1 `x5t#S256` (base64url SHA-256 of the DER client certificate, no padding)
    /// the key is bound to: it is then accepted only over a connection authenticated with that
    /// certificate (directly or through a trusted TLS-terminating proxy).
    #[serde(default)]
    pub mtls_x5t: Option<String>,
    /// The key this one replaced (`keys rotate`).
    #[serde(default)]
    pub rotated_from: Option<Id>,
    /// Set when an anomaly policy suspended the key; a suspended key fails like a revoked one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub suspended_at: Option<Timestamp>,
    /// Whether anomalies suspend the key automatically.
    #[serde(default)]
    pub auto_suspend: bool,
    /// Token caps `(jti, cap)` of an issued token mapped onto the key path: its own
    /// `IssuedToken::max_tokens` and that of every capped token it was exchanged from (one
    /// shared budget, issue 5 H6); cap = total input + output tokens of every call charged to
    /// that token. Never stored for API keys (use a limit row). Enforced by the gateway's limits
    /// path (`caps`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_caps: Vec<(Id, u64)>,
    /// Spend caps `(jti, cap in USD micros)` of an issued token and its capped ancestors
    /// (`IssuedToken::max_spend_micros`), like `token_caps`. Never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spend_caps: Vec<(Id, u64)>,
    /// For a token derived from an API key: that root key's id, whose key-scope limits (rate,
    /// tokens, spend) the token's calls count against and are refused by (issue 5 H5). Never
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_key: Option<Id>,
}

/// Filter for [`crate::Store::list_credentials`].
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub team_id: Option<Id>,
    pub app_id: Option<Id>,
    pub include_revoked: bool,
}

/// An upstream provider (`openai`, `anthropic`, any OpenAI-compatible URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub id: Id,
    /// Unique name used in `provider/model` (e.g. `openai`, `anthropic`, `mock`).
    pub name: String,
    /// Wire dialect: `openai` or `anthropic`.
    pub kind: String,
    pub base_url: String,
    /// Free-form settings (JSON object), e.g. extra headers.
    pub settings: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// An envelope-encrypted provider key (`token-security.md` §3.1, G-8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderCredential {
    pub id: Id,
    pub provider_id: Id,
    /// The team the AAD binds to (the default team for operator-configured keys).
    pub team_id: Id,
    /// e.g. `sk-…abcd`.
    pub hint: String,
    pub format_version: i16,
    pub kek_id: String,
    #[serde(skip)]
    pub wrapped_dek: Vec<u8>,
    #[serde(skip)]
    pub nonce: Vec<u8>,
    #[serde(skip)]
    pub ciphertext: Vec<u8>,
    pub priority: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// One way to serve a public model: a provider and the upstream model name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: Id,
    pub provider_id: Id,
    pub upstream_model: String,
    pub weight: i32,
    pub priority: i32,
}

/// A public model name and its deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: Id,
    pub name: String,
    pub deployments: Vec<Deployment>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// One data-plane call. Never holds a key, a token or a provider key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallLog {
    pub id: Id,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// The `x-request-id` answered to the client.
    pub request_id: String,
    pub team_id: Option<Id>,
    pub app_id: Option<Id>,
    pub credential_id: Option<Id>,
    /// `POST /v1/chat/completions`, … (method and route template).
    pub endpoint: String,
    /// Model as requested by the client.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    /// `ErrorCode::as_str` of the failure, or `client_disconnected`.
    pub error_code: Option<String>,
    pub latency_ms: u64,
    pub upstream_latency_ms: Option<u64>,
    /// Time to first token (streams), ms from request start.
    pub ttft_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub upstream_request_id: Option<String>,
    /// Input tokens written to the provider's prompt cache (part of `prompt_tokens`; issue 4).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Output tokens spent on reasoning (part of `completion_tokens`; issue 4).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Cost of the call in USD from its usage and the model catalog's prices (issue 4);
    /// `None` when the upstream model is not in the catalog.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Upstream calls made for this request, failover attempts included (issue 6); 0 when none
    /// was made (rejected before routing, or logged before migration 0061).
    #[serde(default)]
    pub attempts: u32,
    /// The deployment of the last attempt — the one that served when the call succeeded: a
    /// deployment id, or `provider/model` for a direct route (issue 6).
    #[serde(default)]
    pub deployment: Option<String>,
    /// The answer came from the gateway's response cache (issue 6): no upstream call, usage and
    /// cost 0.
    #[serde(default)]
    pub cache_hit: bool,
}

/// Usage recorded in the call log by one (team, app, credential, requested model) since the
/// start of a month, with the part since the start of a day ([`crate::Store::call_usage`]).
/// Used to seed in-memory limit counters after a restart (issue 5 / h5seed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallUsage {
    pub team_id: Option<Id>,
    pub app_id: Option<Id>,
    /// The API key's id, or an issued token's id (`jti`).
    pub credential_id: Option<Id>,
    /// Model as requested by the client.
    pub model: Option<String>,
    /// `prompt_tokens + completion_tokens` since the month start.
    pub tokens_month: u64,
    /// The same since the day start.
    pub tokens_day: u64,
    /// `cost_usd` in USD micros (each call rounded to the micro), since the month start.
    pub cost_micros_month: u64,
    /// The same since the day start.
    pub cost_micros_day: u64,
}

/// Filter and page for [`crate::Store::query_call_logs`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallLogQuery {
    pub team_id: Option<Id>,
    pub app_id: Option<Id>,
    pub credential_id: Option<Id>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// Only calls that failed (status >= 400).
    pub errors_only: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<Timestamp>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<Timestamp>,
    /// Keyset paging: ids strictly older than this one.
    pub before: Option<Id>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<u32>,
}

// --- issue 6: limits ---------------------------------------------------------------------------

/// What a [`Limit`] attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    Team,
    App,
    /// An API key (credential).
    Key,
    /// Every call of a public model, whoever makes it.
    Model,
}

impl LimitScope {
    /// `team`, `app`, `key`, `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::App => "app",
            Self::Key => "key",
            Self::Model => "model",
        }
    }

    /// Inverse of [`LimitScope::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "team" => Some(Self::Team),
            "app" => Some(Self::App),
            "key" => Some(Self::Key),
            "model" => Some(Self::Model),
            _ => None,
        }
    }
}

/// Limits of one scope (unique per `scope`, `scope_id`, `model`). Every field is optional:
/// `None` = no limit of that kind here. Windows: per minute = Unix minute, per day = UTC day,
/// per month = UTC calendar month (fixed windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub id: Id,
    pub scope: LimitScope,
    /// The team/app/key id (hyphenated UUID) or, for [`LimitScope::Model`], the model name.
    pub scope_id: String,
    /// Empty = all models; otherwise only calls of this public model count and are limited.
    pub model: String,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Requests in flight at once.
    pub concurrent: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub tokens_per_month: Option<u64>,
    /// Spend per UTC day in micro-USD (1 USD = 1 000 000).
    pub usd_micros_per_day: Option<u64>,
    /// Spend per UTC month in micro-USD.
    pub usd_micros_per_month: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0 authorization server (issue 5; `token-security.md` §1.1, §1.5, §1.7, §5.2)

/// A registered OAuth client (RFC 6749 §2). `id` is the wire `client_id`. Tokens it obtains act
/// for `app_id` and never exceed its `scopes` / `models` (empty = everything the app may use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub id: Id,
    pub team_id: Id,
    pub app_id: Id,
    pub name: String,
    /// `client_secret_basic` (secret `gthc_…`, stored as HMAC digest) or `private_key_jwt`
    /// (RFC 7523 assertion signed with the key in `public_jwk`).
    pub auth_method: String,
    /// HMAC-SHA-256(pepper_v, secret), 32 bytes; `None` for `private_key_jwt`.
    #[serde(skip)]
    pub secret_digest: Option<Vec<u8>>,
    pub pepper_version: i32,
    /// e.g. `gthc_live_…abcd`.
    pub secret_hint: Option<String>,
    /// The client's public JWK (JSON text) for `private_key_jwt`.
    pub public_jwk: Option<String>,
    /// `opaque` (`gtha_…`, default) or `jwt` (RFC 9068, ES256).
    pub token_format: String,
    /// Scopes the client may obtain; empty = all data-plane scopes.
    pub scopes: Vec<String>,
    /// Public model names tokens may use; empty = all.
    pub models: Vec<String>,
    /// Audiences the client may bind exchanged tokens to (RFC 8693 `audience`/`resource`).
    pub audiences: Vec<String>,
    /// Lifetime of access tokens in seconds (default 600).
    pub access_ttl_secs: i64,
    /// RFC 8705 §3.4 client metadata: every token the client obtains is bound to the
    /// certificate of the TLS connection it calls the token endpoint over (`cnf.x5t#S256`); a
    /// call without a client certificate is `invalid_request`.
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A token issued by the authorization server: opaque access token (`access`, `gtha_…`),
/// single-use token (`single_use`, `gths_…`) or the record of a JWT access token (`jwt`, no
/// digest; kept for revocation by `jti` and introspection). `id` is the `jti`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub id: Id,
    /// `access`, `single_use` or `jwt`.
    pub kind: String,
    /// HMAC-SHA-256(pepper_v, token) for opaque kinds; `None` for `jwt`.
    #[serde(skip)]
    pub digest: Option<Vec<u8>>,
    pub pepper_version: i32,
    /// e.g. `gtha_live_…abcd`, or `jwt:<jti prefix>`.
    pub hint: String,
    pub team_id: Id,
    pub app_id: Id,
    /// The OAuth client that obtained it (`None` for `keys create --single-use`).
    pub client_id: Option<Id>,
    /// RFC 9068 / RFC 7662 `sub`: the client id, or the subject of an exchanged token.
    pub subject: String,
    /// The credential or token this one was derived from (token exchange, single-use keys):
    /// revoking the parent revokes this one.
    pub parent_id: Option<Id>,
    pub scopes: Vec<String>,
    /// Public model names; empty = all.
    pub models: Vec<String>,
    /// Bound audience (RFC 8693 / RFC 8707), if any.
    pub audience: Option<String>,
    /// Token cap: the total tokens (input + output) all calls made with this token may use
    /// together; exchange only lowers it. Enforced on the data plane (gateway `caps`).
    pub max_tokens: Option<i64>,
    /// Spend cap in USD micros (1 USD = 1 000 000): the catalog cost of all calls made with
    /// this token and the tokens derived from it together; exchange bounds it by the parent's
    /// remaining spend cap (issue 5). Enforced on the data plane (gateway `caps`).
    pub max_spend_micros: Option<i64>,
    /// RFC 8693 §4.1 `act` claim as JSON text.
    pub act: Option<String>,
    /// DPoP key binding (RFC 9449 `cnf.jkt`).
    pub binding_jkt: Option<String>,
    /// Certificate binding (RFC 8705 §3.1 `cnf.x5t#S256`).
    #[serde(default)]
    pub binding_x5t: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    pub consumed_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A JWT signing key of the authorization server; the private key is envelope-encrypted
/// (G-8) like provider keys. Published in the JWKS until `retire_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// Always `ES256` for now.
    pub alg: String,
    /// Public JWK (JSON text).
    pub public_jwk: String,
    pub format_version: i16,
    pub kek_id: String,
    #[serde(skip)]
    pub wrapped_dek: Vec<u8>,
    #[serde(skip)]
    pub nonce: Vec<u8>,
    #[serde(skip)]
    pub ciphertext: Vec<u8>,
    /// The key signs from this instant (published earlier, for the overlap of §1.6).
    #[serde(with = "time::serde::rfc3339")]
    pub sign_from: Timestamp,
    /// Removed from the JWKS (and never used again) at this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retire_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}
