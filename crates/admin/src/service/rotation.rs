//! API-key security operations of the admin service (issue 5): reading scopes / IP allow-list /
//! labels / `auto_suspend` from a create request, rotation with overlap
//! (`token-security.md` §2.5) and leak reports (§2.5 "Leak response").

use std::time::Duration;

use gatehouse_auth::cidr::Cidr;
use gatehouse_auth::token::{self, TokenKind};
use gatehouse_store::audit::kinds;
use gatehouse_store::{BusEvent, Credential, CredentialSecurity, NewAuditEvent};
use gatehouse_types::{ApiError, Id, new_id, now};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{AdminService, CreatedKey, KeyView, internal};
use crate::input::{Fields, bad};

/// Grace period of `keys rotate` when none is given (24 h).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Longest grace period (7 days).
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Data-plane scopes a key may hold.
pub const KEY_SCOPES: &[&str] = &["chat:invoke", "embeddings:invoke", "models:read", "services:invoke"];
/// Most tokens in one leak report.
pub const MAX_LEAK_TOKENS: usize = 1000;

/// Reads `scopes` (subset of [`KEY_SCOPES`]), `ip_allow` (CIDRs), `labels` (object of strings,
/// at most 32), `auto_suspend` (bool) and `dpop_jkt` (RFC 7638 SHA-256 thumbprint, 43 base64url
/// characters: the key then only works with DPoP proofs of that key, RFC 9449 §7) and
/// `mtls_x5t` (RFC 8705 §3.1 `x5t#S256` certificate thumbprint, 43 base64url characters: the key
/// then only works over a connection with that client certificate). 400 naming the field
/// otherwise.
pub(super) fn read_key_security(f: &mut Fields) -> Result<(Vec<String>, CredentialSecurity), ApiError> {
    let mut scopes = f.opt_string_list("scopes")?.unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if !KEY_SCOPES.contains(&s.as_str()) {
            return Err(bad(&format!("scopes[{i}]"), format!("unknown scope (expected one of: {})", KEY_SCOPES.join(", "))));
        }
    }
    scopes.sort();
    scopes.dedup();
    let ip_allow = match f.opt_string_list("ip_allow")? {
        // an explicitly empty allow-list would silently mean "everywhere" (L1)
        Some(list) if list.is_empty() => return Err(bad("ip_allow", "`ip_allow` must list at least one CIDR (omit it for no restriction)")),
        other => other.unwrap_or_default(),
    };
    for (i, c) in ip_allow.iter().enumerate() {
        Cidr::parse(c).map_err(|e| bad(&format!("ip_allow[{i}]"), e.to_string()))?;
    }
    let mut labels = std::collections::BTreeMap::new();
    match f.take("labels") {
        None => {}
        Some(Value::Object(map)) => {
            if map.len() > 32 {
                return Err(bad("labels", "at most 32 labels"));
            }
            for (k, v) in map {
                let ok_key = !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
                match v {
                    Value::String(v) if ok_key && v.len() <= 256 && !v.chars().any(char::is_control) => {
                        labels.insert(k, v);
                    }
                    _ => return Err(bad(&format!("labels.{k}"), "labels are short strings (key: letters, digits, - _ . : /)")),
                }
            }
        }
        Some(_) => return Err(bad("labels", "`labels` must be an object of strings")),
    }
    let auto_suspend = match f.take("auto_suspend") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(bad("auto_suspend", "`auto_suspend` must be true or false")),
    };
    let dpop_jkt = match f.take("dpop_jkt") {
        None | Some(Value::Null) => None,
        Some(Value::String(j)) if j.len() == 43 && j.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => Some(j),
        Some(_) => return Err(bad("dpop_jkt", "`dpop_jkt` must be an RFC 7638 SHA-256 JWK thumbprint (43 base64url characters)")),
    };
    let mtls_x5t = match f.take("mtls_x5t") {
        None | Some(Value::Null) => None,
        Some(Value::String(x)) if is_x5t_s256(&x) => Some(x),
        Some(_) => return Err(bad("mtls_x5t", "`mtls_x5t` must be an RFC 8705 x5t#S256 certificate thumbprint (43 base64url characters)")),
    };
    Ok((scopes, CredentialSecurity { ip_allow, labels, auto_suspend, dpop_jkt, mtls_x5t, ..Default::default() }))
}

/// The shape of an `x5t#S256` thumbprint: base64url (no padding) of a SHA-256 digest.
fn is_x5t_s256(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl AdminService {
    /// Rotates a key with overlap: issues a successor (same app, name, models, scopes, IP
    /// allow-list, labels, binding and policy; plaintext shown once) and caps the old key's
    /// expiry at now + `grace` (default [`DEFAULT_GRACE`], at most [`MAX_GRACE`]; 0 = now). After
    /// that the old key fails with `invalid_token`. Records `key.rotated` and drops the old key
    /// from every auth cache.
    ///
    /// A key has at most one successor: rotating it again, or concurrently, answers 409 (L2;
    /// compare-and-set in [`gatehouse_store::Store::rotate_credential`]).
    ///
    /// Errors: 400 grace too long, 404 unknown key, 409 the key is expired, revoked, suspended or
    /// already rotated.
    pub async fn rotate_key(&self, id: Id, grace: Option<Duration>) -> Result<(CreatedKey, KeyView), ApiError> {
        let grace = grace.unwrap_or(DEFAULT_GRACE);
        if grace > MAX_GRACE {
            return Err(bad("grace", "the grace period is at most 7 days"));
        }
        let old = self.load_key(id).await?;
        let at = now();
        let generated = token::generate(TokenKind::ApiKey, self.deps.env).map_err(|_| ApiError::internal())?;
        let mut security = old.security.clone();
        security.rotated_from = Some(old.id);
        security.suspended_at = None;
        let successor = Credential {
            id: new_id(),
            team_id: old.team_id,
            app_id: old.app_id,
            name: old.name.clone(),
            digest: self.deps.peppers.digest(generated.token.expose_secret()).to_vec(),
            pepper_version: self.deps.peppers.current_version(),
            hint: generated.hint,
            models: old.models.clone(),
            scopes: old.scopes.clone(),
            expires_at: old.expires_at.filter(|e| *e > at),
            revoked_at: None,
            last_used_at: None,
            created_at: at,
            security,
        };
        let grace_end = at + time::Duration::try_from(grace).map_err(|_| bad("grace", "the grace period is too long"))?;
        if old.revoked_at.is_some() || old.expires_at.is_some_and(|e| e <= at) {
            return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "an expired or revoked key cannot be rotated").with_param("id"));
        }
        // The successor inherits the old key's limits; they are written before the successor
        // exists, so it is never live without them (removed again if the rotation fails).
        let copied = self.copy_key_limits(old.id, successor.id).await?;
        let rotated = self
            .deps
            .store
            .rotate_credential(old.id, &successor, grace_end)
            .await
            .map_err(|e| internal("rotating a key", &e));
        if !matches!(rotated, Ok(true)) {
            for l in &copied {
                let _ = self.deps.store.delete_limit(*l).await;
            }
        }
        let rotated = rotated?;
        if !rotated {
            // Compare-and-set in the store: a concurrent rotation won, or the key was rotated,
            // revoked or suspended meanwhile (L2).
            return Err(ApiError::new(
                gatehouse_types::ErrorCode::Conflict,
                "this key was already rotated (rotate its successor), or it is revoked or suspended",
            )
            .with_param("id"));
        }
        self.deps.bus.publish(BusEvent::CredentialChanged { id: old.id, digest: old.digest.clone() });
        self.deps.audit.record(
            NewAuditEvent::new(kinds::KEY_ROTATED, "admin")
                .credential(old.id)
                .details(json!({"successor_id": successor.id, "grace_seconds": grace.as_secs()})),
        );
        self.deps.audit.record(
            NewAuditEvent::new(kinds::KEY_CREATED, "admin")
                .credential(successor.id)
                .details(json!({"app_id": successor.app_id, "hint": successor.hint, "rotated_from": old.id})),
        );
        tracing::info!(key_id = %old.id, successor_id = %successor.id, grace_secs = grace.as_secs(), "api key rotated");
        let old_view = self.get_key(old.id).await?;
        Ok((CreatedKey { key: generated.token, view: KeyView::from(&successor) }, old_view))
    }

    /// Copies every key-scoped limit of `from` to the key `to`; returns the new limit ids.
    async fn copy_key_limits(&self, from: Id, to: Id) -> Result<Vec<Id>, ApiError> {
        let from = from.to_string();
        let limits = self.deps.store.list_limits().await.map_err(|e| internal("reading limits", &e))?;
        let mut ids = Vec::new();
        for l in limits.into_iter().filter(|l| l.scope == gatehouse_store::LimitScope::Key && l.scope_id == from) {
            let copy = gatehouse_store::Limit { id: new_id(), scope_id: to.to_string(), created_at: now(), updated_at: now(), ..l };
            let stored = self.deps.store.upsert_limit(&copy).await.map_err(|e| internal("copying a limit", &e))?;
            ids.push(stored.id);
        }
        if !ids.is_empty() {
            self.deps.bus.publish(BusEvent::LimitsChanged);
        }
        Ok(ids)
    }

    /// Handles a leak report (`token-security.md` §2.5 "Leak response"): every string that is a
    /// well-formed Gatehouse credential of this deployment (format and CRC32 checked offline
    /// first, no store access otherwise) and matches a live stored credential is revoked:
    ///
    /// * `gthk_` API key: revoked, bus event, `key.revoked` (reason `leak_report`); tokens
    ///   exchanged from it die with it;
    /// * `gtha_` access / `gths_` single-use token: revoked with its derived tokens, `token.revoked`
    ///   (actor `leak-report`, reason `leak_report`);
    /// * `gthc_` OAuth client secret: the client and every token it obtained are revoked,
    ///   `oauth_client.revoked` (actor `leak-report`, reason `leak_report`);
    /// * `gtho_` operator token: revoked, `operator_token.revoked` (reason `leak_report`).
    ///
    /// One `leak.reported` event records the counts. Returns how many strings were received —
    /// never which matched (M3).
    pub async fn report_leak(&self, tokens: &[String], source: Option<&str>) -> Result<usize, ApiError> {
        let mut well_formed = 0usize;
        let mut revoked = 0usize;
        for t in tokens {
            let kind = match token::parse(t) {
                Ok(p) if p.env == self.deps.env => p.kind,
                _ => continue,
            };
            well_formed += 1;
            let hit = match kind {
                TokenKind::ApiKey => self.revoke_leaked_key(t).await?,
                TokenKind::Operator => self.revoke_operator_token_plaintext(t, "leak-report", "leak_report").await?.is_some(),
                TokenKind::Access | TokenKind::SingleUse => self.revoke_leaked_token(t).await?,
                TokenKind::ClientSecret => self.revoke_leaked_client_secret(t).await?,
            };
            if hit {
                revoked += 1;
            }
        }
        let source: Option<String> = source.map(|s| s.chars().take(128).collect());
        self.deps.audit.record(
            NewAuditEvent::new(kinds::LEAK_REPORTED, "leak-report")
                .details(json!({"received": tokens.len(), "well_formed": well_formed, "revoked": revoked, "source": source})),
        );
        Ok(tokens.len())
    }

    /// A reported `gthk_` key: revoked if stored and live. True if this call revoked it.
    async fn revoke_leaked_key(&self, t: &str) -> Result<bool, ApiError> {
        let mut found = None;
        for version in (1..=self.deps.peppers.current_version()).rev() {
            let Some(d) = self.deps.peppers.digest_with(version, t) else { continue };
            if let Some(c) = self.deps.store.find_credential(&d).await.map_err(|e| internal("looking up a reported key", &e))? {
                found = Some(c);
                break;
            }
        }
        let Some(c) = found else { return Ok(false) };
        let mut hit = false;
        if c.revoked_at.is_none() {
            self.deps.store.revoke_credential(c.id, now()).await.map_err(|e| internal("revoking a reported key", &e))?;
            hit = true;
            self.deps.audit.record(NewAuditEvent::new(kinds::KEY_REVOKED, "leak-report").credential(c.id).reason("leak_report"));
        }
        self.deps.bus.publish(BusEvent::CredentialChanged { id: c.id, digest: c.digest.clone() });
        self.deps.bus.publish(BusEvent::TokenRevoked { id: c.id });
        Ok(hit)
    }

    /// A reported `gtha_` / `gths_` token: revoked (with everything derived from it) if it is
    /// live. Nothing to do on a node without an authorization server (no such tokens exist).
    async fn revoke_leaked_token(&self, t: &str) -> Result<bool, ApiError> {
        let Some(oauth) = self.oauth.get() else { return Ok(false) };
        let revoked = oauth.revoke_detailed(t, &gatehouse_oauth::Caller::Operator).await.map_err(super::oauth_clients::from_oauth)?;
        let Some((id, kind)) = revoked else { return Ok(false) };
        self.deps.audit.record(
            NewAuditEvent::new(TOKEN_REVOKED, "leak-report").credential(id).reason("leak_report").details(json!({"kind": kind})),
        );
        Ok(true)
    }

    /// A reported `gthc_` client secret: the live client whose secret digest matches is revoked
    /// with every token it obtained. Clients have no digest index (their secrets are only ever
    /// presented with the client id), so this compares against each live `client_secret_basic`
    /// client, in constant time per comparison.
    async fn revoke_leaked_client_secret(&self, t: &str) -> Result<bool, ApiError> {
        let clients = self.deps.store.list_oauth_clients(false).await.map_err(|e| internal("reading oauth clients", &e))?;
        let matched = clients.into_iter().find(|c| {
            let Some(expected) = c.secret_digest.as_deref() else { return false };
            self.deps.peppers.digest_with(c.pepper_version, t).is_some_and(|d| constant_time_eq(&d, expected))
        });
        let Some(client) = matched else { return Ok(false) };
        // The authorization server's own revoke_client does the same two steps; going to the
        // store here keeps one audit record (actor `leak-report`) and works without one.
        let found = self.deps.store.revoke_oauth_client(client.id, now()).await.map_err(|e| internal("revoking an oauth client", &e))?;
        self.deps.bus.publish(BusEvent::TokenRevoked { id: client.id });
        if found {
            self.deps.audit.record(NewAuditEvent::new(OAUTH_CLIENT_REVOKED, "leak-report").credential(client.id).reason("leak_report"));
            tracing::info!(client_id = %client.id, "oauth client revoked after a leak report");
        }
        Ok(found)
    }
}

/// Audit type of a revoked access / single-use token (same name as the authorization server's).
const TOKEN_REVOKED: &str = "token.revoked";
/// Audit type of a revoked OAuth client (same name as the authorization server's).
const OAUTH_CLIENT_REVOKED: &str = "oauth_client.revoked";

/// Byte-string equality whose running time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a leak report body: GitHub's secret-scanning shape `[{"token", "type", "url",
/// "source"}, …]` or `{"tokens": ["…", …]}`. At most [`MAX_LEAK_TOKENS`] tokens of ≤ 1024 bytes.
pub fn leak_report_from_json(body: &[u8]) -> Result<(Vec<String>, Option<String>), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("body", "the body must be JSON: [{\"token\": …}] or {\"tokens\": […]}"))?;
    let mut source = None;
    let items: Vec<Value> = match value {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::Object(mut m) => {
                    if source.is_none() {
                        source = m.get("source").and_then(Value::as_str).map(str::to_string);
                    }
                    m.remove("token").unwrap_or(Value::Null)
                }
                other => other,
            })
            .collect(),
        Value::Object(mut m) => match m.remove("tokens") {
            Some(Value::Array(items)) => items,
            _ => return Err(bad("tokens", "`tokens` must be an array of strings")),
        },
        _ => return Err(bad("body", "the body must be [{\"token\": …}] or {\"tokens\": […]}")),
    };
    if items.len() > MAX_LEAK_TOKENS {
        return Err(bad("tokens", format!("at most {MAX_LEAK_TOKENS} tokens per report")));
    }
    let mut tokens = Vec::with_capacity(items.len());
    for (i, v) in items.into_iter().enumerate() {
        match v {
            Value::String(s) if !s.is_empty() && s.len() <= 1024 => tokens.push(s),
            // The message never repeats the value (it may be a live secret).
            _ => return Err(bad(&format!("tokens[{i}]"), "each token must be a non-empty string of at most 1024 bytes")),
        }
    }
    Ok((tokens, source))
}
