//! Per-key policy checks after a key verified (issue 5; `token-security.md` §2.4 steps 6–9,
//! §2.6; RFC 6750 §3.1), and the data plane's audit events.
//!
//! Order: status (revoked/suspended/expired are decided in [`crate::auth`] and audited here) →
//! DPoP binding (a key bound to a `jkt` presented as plain Bearer → 401 `invalid_token`,
//! RFC 9449 §7.2) → certificate binding (a credential bound to an `x5t#S256` used over a
//! connection without that client certificate → 401 `invalid_token`, RFC 8705 §3,
//! [`crate::mtls`]) → IP allow-list (client address from the socket, or from `X-Forwarded-For`
//! only behind a trusted proxy; violation → 403 `ip_not_allowed` without a challenge; a token
//! derived from an API key carries that key's allow-list, issue 5 H4) → route scope (403 `insufficient_scope` with
//! `scope="<needed>"`).
//!
//! Scopes (case-sensitive, RFC 6749 §3.3): `chat:invoke` (`/v1/chat/completions`,
//! `/v1/messages`, Gemini generate), `embeddings:invoke` (`/v1/embeddings`), `models:read`
//! (`GET /v1/models…`), `services:invoke` (REST services under `/svc/…`, issue 7; prompt APIs
//! under `/prompts/…` need `chat:invoke`). A key with no scopes has all data-plane scopes.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use gatehouse_auth::cidr::{self, Cidr};
use gatehouse_store::audit::kinds;
use gatehouse_store::{Credential, NewAuditEvent};
use gatehouse_types::{ApiError, ErrorCode, Id};
use http::{HeaderValue, Method, header};
use moka::sync::Cache;

use crate::AppState;

/// `chat:invoke`.
pub const SCOPE_CHAT: &str = "chat:invoke";
/// `embeddings:invoke`.
pub const SCOPE_EMBEDDINGS: &str = "embeddings:invoke";
/// `models:read`.
pub const SCOPE_MODELS: &str = "models:read";
/// `services:invoke` (issue 7: REST services at `/svc/{slug}/…`).
pub const SCOPE_SERVICES: &str = "services:invoke";
/// Every data-plane scope (what admin input is checked against).
pub const ALL_SCOPES: &[&str] = &[SCOPE_CHAT, SCOPE_EMBEDDINGS, SCOPE_MODELS, SCOPE_SERVICES];

/// The scope a data-plane route needs.
/// The Azure-style paths (`crate::azure_api`) need the scope of the `/v1/…` route they serve.
pub fn required_scope(method: &Method, path: &str) -> &'static str {
    let azure_embeddings = path == "/openai/v1/embeddings" || (path.starts_with("/openai/deployments/") && path.ends_with("/embeddings"));
    if path == "/v1/embeddings" || azure_embeddings {
        SCOPE_EMBEDDINGS
    } else if path.starts_with("/svc/") {
        SCOPE_SERVICES
    } else if (method == Method::GET || method == Method::HEAD) && (path == "/v1/models" || path.starts_with("/v1/models/") || path == "/openai/v1/models") {
        SCOPE_MODELS
    } else {
        SCOPE_CHAT
    }
}

/// Client facts for audit records and the IP check.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Thumbprint of the key whose DPoP proof this request carried and that passed every check
    /// ([`crate::dpop`]); `None` for Bearer requests.
    pub dpop_jkt: Option<String>,
    /// `x5t#S256` of the request's client certificate ([`crate::mtls::ClientCertificate`]);
    /// `None` without one.
    pub client_cert_x5t: Option<String>,
}

impl ClientInfo {
    /// Reads the peer address (`ConnectInfo`), `X-Forwarded-For` (only when the peer is in
    /// `trusted`) and `User-Agent`.
    pub fn of(req: &Request, trusted: &[Cidr]) -> Self {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let xff = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let ip = cidr::client_ip(peer, xff, trusted);
        let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
        let client_cert_x5t = req.extensions().get::<crate::mtls::ClientCertificate>().map(|c| c.x5t_s256.clone());
        Self { ip, user_agent, dpop_jkt: None, client_cert_x5t }
    }

    pub(crate) fn event(&self, kind: &str, credential: Id) -> NewAuditEvent {
        NewAuditEvent::new(kind, "gateway").credential(credential).client(self.ip.map(|i| i.to_string()), self.user_agent.clone())
    }
}

/// Remembers which keys already produced `key.first_used` on this node.
pub struct FirstUse(Cache<Id, ()>);

impl Default for FirstUse {
    fn default() -> Self {
        Self(Cache::builder().max_capacity(100_000).build())
    }
}

/// Records why a known key was refused (`reason`: `revoked`, `suspended`, `expired`), at most
/// once per key, event type and minute (the next record carries `details.suppressed`).
pub fn audit_status_denial(state: &AppState, client: &ClientInfo, credential: &Credential, reason: &'static str) {
    let kind = if reason == "expired" { kinds::EXPIRED_USE } else { kinds::REVOKED_USE };
    // Rate-gated (crate::anomaly): a flood of refused calls is one record per key and minute.
    if let Some(suppressed) = state.anomaly.gate(kind, credential.id) {
        let mut event = client.event(kind, credential.id).reason(reason);
        if suppressed > 0 {
            event = event.details(serde_json::json!({ "suppressed": suppressed }));
        }
        state.audit.record(event);
    }
}

/// The policy checks of the module doc for a verified, active key. On success records
/// `key.first_used` once per key and node (when the store has no `last_used_at` yet).
///
/// Errors: 401 `invalid_token` (DPoP-bound key without DPoP, certificate-bound key without that
/// client certificate), 403 `ip_not_allowed` (client address outside the allow-list; no
/// `WWW-Authenticate` challenge), 403 `insufficient_scope` (scope missing). Each failure is
/// audited with its reason.
pub fn check(state: &AppState, client: &ClientInfo, credential: &Credential, method: &Method, path: &str) -> Result<(), ApiError> {
    let sec = &credential.security;
    if sec.dpop_jkt.is_some() && sec.dpop_jkt != client.dpop_jkt {
        // A bound key without a verified proof of its key (sent as Bearer): RFC 9449 §7.2.
        state.audit.record(client.event(kinds::DENIED, credential.id).reason("dpop_required"));
        return Err(ApiError::new(ErrorCode::InvalidToken, "invalid API key: the key is unknown, malformed, expired or revoked"));
    }
    if let Some(bound) = &sec.mtls_x5t
        && client.client_cert_x5t.as_deref() != Some(bound.as_str())
    {
        // RFC 8705 §3: no client certificate, or another one than the credential is bound to.
        let reason = if client.client_cert_x5t.is_some() { "mtls_cert_mismatch" } else { "mtls_cert_missing" };
        state.audit.record(client.event(kinds::DENIED, credential.id).reason(reason));
        return Err(ApiError::new(ErrorCode::InvalidToken, "invalid API key: the key is unknown, malformed, expired or revoked"));
    }
    if !sec.ip_allow.is_empty() {
        let allowed: Vec<Cidr> = sec.ip_allow.iter().filter_map(|c| Cidr::parse(c).ok()).collect();
        let ok = client.ip.is_some_and(|ip| cidr::any_contains(&allowed, ip));
        if !ok {
            state.audit.record(client.event(kinds::DENIED, credential.id).reason("ip_not_allowed"));
            return Err(ApiError::new(ErrorCode::IpNotAllowed, "this API key may not be used from this network address"));
        }
    }
    let needed = required_scope(method, path);
    if !credential.scopes.is_empty() && !credential.scopes.iter().any(|s| s == needed) {
        state
            .audit
            .record(client.event(kinds::SCOPE_DENIED, credential.id).reason("scope").details(serde_json::json!({"required": needed})));
        return Err(ApiError::new(ErrorCode::InsufficientScope, format!("this API key lacks the `{needed}` scope")).with_param(needed));
    }
    if credential.last_used_at.is_none() && state.first_use.0.get(&credential.id).is_none() {
        state.first_use.0.insert(credential.id, ());
        state.audit.record(client.event(kinds::KEY_FIRST_USED, credential.id));
    }
    Ok(())
}

/// Adds `scope="<needed>"` to the `insufficient_scope` challenge of a scope failure (the scope is
/// carried in the error's `param`; only our fixed scope strings, so no quoting issues).
pub fn with_scope_challenge(mut resp: Response, err: &ApiError) -> Response {
    if err.code == ErrorCode::InsufficientScope
        && let Some(scope) = err.param.as_deref().filter(|s| ALL_SCOPES.contains(s))
        && let Ok(v) = HeaderValue::from_str(&format!(
            "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{scope}\"",
            crate::error::REALM
        ))
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}
