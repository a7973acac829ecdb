//! The OAuth 2.0 authorization server of Gatehouse and the verification of the tokens it
//! issues (`token-security.md` §1.1, §1.3–§1.7, §5; DESIGN.md "Access tokens").
//!
//! * [`OAuth::client_credentials`]: RFC 6749 §4.4 for clients authenticated with
//!   `client_secret_basic` ([`OAuth::authenticate_basic`]) or `private_key_jwt`
//!   ([`OAuth::authenticate_assertion`], RFC 7523).
//! * Access tokens are opaque `gtha_…` (stored by HMAC digest in `issued_tokens`) or RFC 9068
//!   JWTs ([`signing`]) per client; default lifetime 10 minutes, at most [`MAX_TTL`].
//! * [`OAuth::exchange`]: RFC 8693 down-scoping (G-6), including single-use `gths_…` tokens.
//! * [`OAuth::verify`]: the data plane's check of a presented token (opaque via cache + store,
//!   single-use via one conditional `UPDATE … RETURNING` (G-9), JWT via signature + claims with
//!   the G-10 leeways + `jti` deny-list).
//! * [`OAuth::revoke`] (RFC 7009) and [`OAuth::introspect`] (RFC 7662).
//!
//! Revocation reaches every cache through [`BusEvent::TokenRevoked`]; the deny-list holds the
//! ids of revoked tokens, API keys and clients for [`MAX_TTL`] + leeway, so derived tokens
//! (exchange children, JWTs) die with their parent.
//!
//! Security events (single-use replay, foreign revocation attempts, client authentication
//! failures) go to the [`SecurityEvents`] hook; the default writes `tracing` events at target
//! [`SECURITY_TARGET`] with public ids only, never a token (G-11).

pub mod audit;
pub mod jws;
pub mod lineage;
pub mod signing;
mod tokens;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gatehouse_auth::{Env, KeyProvider, Peppers};
use gatehouse_store::{Bus, BusEvent, IssuedToken, Store};
use gatehouse_types::{Id, Timestamp};
use moka::sync::Cache;
use serde_json::Value;

pub use audit::{AuditEvents, EventGate};
pub use lineage::{Ancestor, LINEAGE_TTL, Lineage, RootKey};
pub use tokens::{Caller, ExchangeRequest, NewClient, RequestBinding, SingleUseClaim, TokenResponse, VerifyError};

/// Data-plane scopes (RFC 6749 §3.3: case-sensitive): the same set API keys may carry
/// (`services:invoke` admits REST services under `/svc/…`, issue 7).
pub const DATA_PLANE_SCOPES: [&str; 4] = ["chat:invoke", "embeddings:invoke", "models:read", "services:invoke"];
/// Default access-token lifetime (DESIGN.md: 10 minutes).
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Longest lifetime of any token this server issues (RFC 6750 §5.3: ≤ 1 h).
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of single-use tokens (`token-security.md` §5.5: 60–300 s).
pub const SINGLE_USE_TTL: Duration = Duration::from_secs(300);
/// `exp` leeway for JWTs we verify (G-10).
pub const EXP_LEEWAY_SECS: i64 = 30;
/// Largest accepted future skew of `iat`/`nbf` (G-10: accept ≤ 30 s ahead).
pub const FUTURE_SKEW_SECS: i64 = 30;
/// Longest lifetime accepted for a client assertion (RFC 7523 "short `exp`").
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// Positive cache lifetime of opaque tokens (revocation also drops entries via the bus).
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Target of the default [`SecurityEvents`] hook.
pub const SECURITY_TARGET: &str = "gatehouse::security";

/// Token type URNs (RFC 8693 §3) and our single-use type.
pub mod token_types {
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    /// Gatehouse single-use token (`gths_…`): one successful call.
    pub const SINGLE_USE: &str = "urn:gatehouse:params:oauth:token-type:single_use";
    /// Gatehouse API key as a subject token.
    pub const API_KEY: &str = "urn:gatehouse:params:oauth:token-type:api_key";
}

/// Grant type URNs.
pub mod grant_types {
    pub const CLIENT_CREDENTIALS: &str = "client_credentials";
    pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
}

/// `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `description` of the `invalid_request` answered when a client is registered for an app that
/// does not exist or was deleted (also concurrently, issue 5 M2).
pub const APP_NOT_FOUND: &str = "app not found";

/// An RFC 6749 §5.2 / RFC 8693 §2.2.2 error. `description` is fixed text or echoes only
/// values the client sent that are not secrets (scope names, audiences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_target`, `unsupported_token_type`,
    /// `server_error`, `temporarily_unavailable`.
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self { error, description: description.into() }
    }
    /// The HTTP status: 401 for `invalid_client`, 500/503 for server errors, else 400.
    pub fn status(&self) -> u16 {
        match self.error {
            "invalid_client" => 401,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        }
    }
    pub(crate) fn unavailable() -> Self {
        Self::new("temporarily_unavailable", "the authorization server cannot reach its store; retry later")
    }
    pub(crate) fn server() -> Self {
        Self::new("server_error", "internal error")
    }
}

/// Receives security-relevant events. Fields are public ids only (G-11).
pub trait SecurityEvents: Send + Sync {
    /// `kind` e.g. `single_use.replay_rejected`, `token.revoke_foreign`, `client.auth_failed`;
    /// `subject` the public id concerned (token `jti`, client id), `detail` a fixed reason.
    fn record(&self, kind: &'static str, subject: Option<Id>, detail: &'static str);
}

/// The default hook: a `warn` event at [`SECURITY_TARGET`].
pub struct TracingEvents;

impl SecurityEvents for TracingEvents {
    fn record(&self, kind: &'static str, subject: Option<Id>, detail: &'static str) {
        tracing::warn!(target: SECURITY_TARGET, event = kind, subject = ?subject, detail, "security event");
    }
}

/// What calls made with one token (and every token derived from it) have used of its caps so
/// far: total tokens and catalog spend in USD micros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapUsed {
    pub tokens: u64,
    pub spend_micros: u64,
}

/// Where token exchange reads the usage of the subject's caps, so a child's cap never exceeds
/// the parent's *remaining* cap (issue 5 H6). The data plane implements it on its limit
/// counters (gateway `caps`). `None` = unknown right now: exchange then bounds by the nominal
/// caps only (the data plane still charges every capped ancestor, so the shared budget holds).
pub trait CapUsage: Send + Sync {
    /// The usage of the caps of the token with id `jti`.
    fn used(&self, jti: Id) -> Pin<Box<dyn Future<Output = Option<CapUsed>> + Send + '_>>;
}

/// What the OAuth server needs; the same instances the rest of the node uses.
#[derive(Clone)]
pub struct OAuthDeps {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub peppers: Arc<Peppers>,
    pub key_provider: Arc<dyn KeyProvider>,
    /// Only `gth?_<env>_…` tokens are accepted.
    pub env: Env,
    /// The issuer identifier (RFC 8414 §2), e.g. `https://gw.example.com`; also the default
    /// audience of access tokens (the data plane is the resource server).
    pub issuer: String,
    pub events: Arc<dyn SecurityEvents>,
}

/// The authorization server and token verifier. Cheap to share behind an `Arc`.
pub struct OAuth {
    pub(crate) deps: OAuthDeps,
    /// Opaque access tokens by digest.
    pub(crate) cache: Cache<[u8; 32], Arc<IssuedToken>>,
    /// Revoked ids (tokens, API keys, clients) for `MAX_TTL` + leeway.
    pub(crate) deny: Cache<Id, ()>,
    pub(crate) generation: std::sync::atomic::AtomicU64,
    pub(crate) signer: signing::Signer,
    /// Resolved lineages of derived tokens by the id the walk starts at ([`lineage`]).
    pub(crate) lineage: Cache<Id, Arc<Lineage>>,
    /// Usage of token and spend caps, for exchange ([`OAuth::set_cap_usage`]).
    pub(crate) cap_usage: OnceLock<Arc<dyn CapUsage>>,
}

impl OAuth {
    /// A server; call [`OAuth::load`] before serving.
    pub fn new(deps: OAuthDeps) -> Self {
        let deny_ttl = MAX_TTL + Duration::from_secs(120);
        Self {
            signer: signing::Signer::new(deps.store.clone(), deps.key_provider.clone()),
            deps,
            cache: Cache::builder().max_capacity(100_000).time_to_live(CACHE_TTL).build(),
            deny: Cache::builder().max_capacity(1_000_000).time_to_live(deny_ttl).build(),
            generation: std::sync::atomic::AtomicU64::new(0),
            lineage: Cache::builder().max_capacity(100_000).time_to_live(LINEAGE_TTL).build(),
            cap_usage: OnceLock::new(),
        }
    }

    /// Sets where exchange reads cap usage ([`CapUsage`]); only the first call has an effect.
    pub fn set_cap_usage(&self, usage: Arc<dyn CapUsage>) {
        let _ = self.cap_usage.set(usage);
    }

    /// Loads the deny-list (ids revoked within [`MAX_TTL`] + leeway) and the signing keys.
    pub async fn load(&self) -> Result<(), gatehouse_store::StoreError> {
        let since = gatehouse_types::now() - time::Duration::seconds(MAX_TTL.as_secs() as i64 + 120);
        for id in self.deps.store.list_revoked_ids(since).await? {
            self.deny.insert(id, ());
        }
        self.signer.reload().await
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.deps.issuer
    }

    /// Applies a bus event: `TokenRevoked` → deny-list + cache flush; `CredentialChanged` drops
    /// that digest; `Resync` flushes the cache. Each of the three also drops every cached
    /// [`Lineage`] (a revoked or suspended root or ancestor fails the very next call).
    /// Synchronous and quick.
    pub fn on_bus_event(&self, event: &BusEvent) {
        use std::sync::atomic::Ordering;
        if matches!(event, BusEvent::TokenRevoked { .. } | BusEvent::CredentialChanged { .. } | BusEvent::Resync) {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.lineage.invalidate_all();
        }
        match event {
            BusEvent::TokenRevoked { id } => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.deny.insert(*id, ());
                if let Some(d) = self.cache.iter().find(|(_, t)| t.id == *id).map(|(k, _)| *k) {
                    self.cache.invalidate(&d);
                }
            }
            BusEvent::CredentialChanged { digest, .. } => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                match <[u8; 32]>::try_from(digest.as_slice()) {
                    Ok(d) => self.cache.invalidate(&d),
                    Err(_) => self.cache.invalidate_all(),
                }
            }
            BusEvent::Resync => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.cache.invalidate_all();
            }
            _ => {}
        }
    }

    /// Whether `id` (a token, its parent or its client) is on the deny-list.
    pub(crate) fn denied(&self, t: &IssuedToken) -> bool {
        self.deny.contains_key(&t.id)
            || t.parent_id.is_some_and(|p| self.deny.contains_key(&p))
            || t.client_id.is_some_and(|c| self.deny.contains_key(&c))
    }

    /// Authorization-server metadata (RFC 8414 §2). `base` is the issuer.
    pub fn metadata(&self) -> Value {
        let iss = self.issuer().trim_end_matches('/');
        serde_json::json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/oauth/token"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "introspection_endpoint": format!("{iss}/oauth/introspect"),
            "grant_types_supported": [grant_types::CLIENT_CREDENTIALS, grant_types::TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": [jws::ALG],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "scopes_supported": DATA_PLANE_SCOPES,
            // RFC 9449 §5.1: DPoP proofs accepted at the token endpoint.
            "dpop_signing_alg_values_supported": gatehouse_auth::dpop::SUPPORTED_ALGS,
            // RFC 8705 §3.3: certificate-bound tokens are issued (clients registered for them).
            "tls_client_certificate_bound_access_tokens": true,
            // No authorization endpoint: RFC 8414 §2 makes this REQUIRED; we list nothing.
            "response_types_supported": [],
            "protected_resources": [iss],
        })
    }

    /// Protected-resource metadata (RFC 9728 §2) of the data plane.
    pub fn resource_metadata(&self) -> Value {
        let iss = self.issuer().trim_end_matches('/');
        serde_json::json!({
            "resource": iss,
            "authorization_servers": [iss],
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "scopes_supported": DATA_PLANE_SCOPES,
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": [jws::ALG],
            // RFC 9728 §2: DPoP-bound tokens are accepted with these proof algorithms.
            "dpop_signing_alg_values_supported": gatehouse_auth::dpop::SUPPORTED_ALGS,
            // RFC 9728 §2 / RFC 8705 §3: certificate-bound tokens are checked against the
            // client certificate of the connection.
            "tls_client_certificate_bound_access_tokens": true,
        })
    }

    /// The public JWK Set (RFC 7517 §5) of the signing keys that are not retired.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }

    /// Generates a new signing key that starts signing after `publish_ahead` and schedules the
    /// current signing key(s) to leave the JWKS after `overlap` more (§1.6 rotation). Returns
    /// the new `kid`.
    pub async fn rotate_signing_key(&self, publish_ahead: Duration, overlap: Duration) -> Result<String, OAuthError> {
        self.signer.rotate(publish_ahead, overlap).await
    }
}

pub(crate) fn now() -> Timestamp {
    gatehouse_types::now()
}
