//! Data-plane verification of issued tokens (`gtha_…`, `gths_…`, RFC 9068 JWTs): lookups,
//! the lineage check, deferred single-use redemption (G-9) and JWT validation.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gatehouse_auth::token::{self, TokenKind};
use gatehouse_store::IssuedToken;
use gatehouse_types::{Id, Timestamp};
use serde_json::Value;

use super::{SingleUseClaim, VerifyError, audiences, kind_name, micros_of_usd, secs, time_claims_ok};
use crate::jws;
use crate::lineage::Lineage;
use crate::{EXP_LEEWAY_SECS, OAuth, now};

impl OAuth {
    /// Verifies a presented `gtha_…`, `gths_…` or JWT access token for the data plane (this
    /// resource: audience = issuer). A single-use token is consumed here (G-9): only one
    /// concurrent caller gets `Ok`. Returns the token record (JWTs: built from the claims).
    pub async fn verify(&self, presented: &str) -> Result<Arc<IssuedToken>, VerifyError> {
        self.verify_lineage(presented).await.map(|(t, _)| t)
    }

    /// [`Self::verify`], also returning the token's [`Lineage`] (its ancestors, nearest first,
    /// and the root API key) so the data plane can apply the root key's IP allow-list and
    /// limits and every ancestor's caps (issue 5 H4–H6). The lineage is cached
    /// ([`crate::lineage`]): a second call with the same token reads nothing from the store.
    /// A single-use token is consumed here.
    pub async fn verify_lineage(&self, presented: &str) -> Result<(Arc<IssuedToken>, Arc<Lineage>), VerifyError> {
        match self.verify_deferred(presented).await? {
            (_, lineage, Some(claim)) => Ok((self.redeem(&claim).await?, lineage)),
            (t, lineage, None) => Ok((t, lineage)),
        }
    }

    /// [`Self::verify_lineage`] without consuming a single-use token: every check passes on the
    /// stored record (not consumed, not revoked or expired, lineage live), and the token comes
    /// back with a [`SingleUseClaim`] the caller redeems ([`Self::redeem`]) only once the call is
    /// admitted — after its DPoP proof, IP, scope, model and request validation (L3: a refused
    /// call or a thief without the DPoP key cannot burn it). Other kinds come back with `None`.
    pub async fn verify_deferred(&self, presented: &str) -> Result<(Arc<IssuedToken>, Arc<Lineage>, Option<SingleUseClaim>), VerifyError> {
        if jws::looks_like_jws(presented) {
            let t = self.verify_jwt(presented).ok_or(VerifyError::Invalid)?;
            if self.denied(&t) {
                return Err(VerifyError::Invalid);
            }
            let lineage = self.lineage(t.parent_id).await.map_err(|_| VerifyError::Unavailable)?.ok_or(VerifyError::Invalid)?;
            return Ok((Arc::new(t), lineage, None));
        }
        let parsed = token::parse(presented).map_err(|_| VerifyError::Invalid)?;
        if parsed.env != self.deps.env {
            return Err(VerifyError::Invalid);
        }
        let digest = self.deps.peppers.digest(presented);
        let (t, claim) = match parsed.kind {
            TokenKind::Access => (self.lookup_access(digest).await?, None),
            TokenKind::SingleUse => (self.peek_single_use(digest).await?, Some(SingleUseClaim { digest })),
            _ => return Err(VerifyError::Invalid),
        };
        let lineage = self.check_issued(&t, parsed.kind).await?;
        Ok((t, lineage, claim))
    }

    /// Consumes a single-use token checked by [`Self::verify_deferred`] with the store's one
    /// conditional `UPDATE … RETURNING` (G-9): of any number of concurrent redeemers exactly one
    /// gets `Ok`; the rest (and any later one) `Invalid`, recorded as `single_use.replay_rejected`.
    pub async fn redeem(&self, claim: &SingleUseClaim) -> Result<Arc<IssuedToken>, VerifyError> {
        let t = self.consume(claim.digest).await?;
        self.check_issued(&t, TokenKind::SingleUse).await?;
        Ok(t)
    }

    /// The record of an unconsumed single-use token (store read, no cache: it changes on use).
    async fn peek_single_use(&self, digest: [u8; 32]) -> Result<Arc<IssuedToken>, VerifyError> {
        let found = self.deps.store.find_issued_token(&digest).await.map_err(|e| {
            tracing::error!(error = %e, "single-use token lookup failed");
            VerifyError::Unavailable
        })?;
        let t = found.ok_or(VerifyError::Invalid)?;
        if t.consumed_at.is_some() {
            self.deps.events.record("single_use.replay_rejected", Some(t.id), "already_consumed");
            return Err(VerifyError::Invalid);
        }
        Ok(Arc::new(t))
    }

    /// The checks every opaque token passes: kind, not revoked / expired / deny-listed, the
    /// audience is this resource, every ancestor live; returns its (cached) lineage.
    async fn check_issued(&self, t: &IssuedToken, kind: TokenKind) -> Result<Arc<Lineage>, VerifyError> {
        let at = now();
        if t.kind != kind_name(kind) || t.revoked_at.is_some() || t.expires_at <= at || self.denied(t) {
            return Err(VerifyError::Invalid);
        }
        if t.audience.as_deref().is_some_and(|a| a.trim_end_matches('/') != self.issuer().trim_end_matches('/')) {
            return Err(VerifyError::Invalid);
        }
        self.lineage(t.parent_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token lineage lookup failed");
                VerifyError::Unavailable
            })?
            .ok_or(VerifyError::Invalid)
    }

    async fn lookup_access(&self, digest: [u8; 32]) -> Result<Arc<IssuedToken>, VerifyError> {
        if let Some(t) = self.cache.get(&digest) {
            return Ok(t);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = self.deps.store.find_issued_token(&digest).await.map_err(|e| {
            tracing::error!(error = %e, "issued token lookup failed");
            VerifyError::Unavailable
        })?;
        let t = Arc::new(found.ok_or(VerifyError::Invalid)?);
        if self.generation.load(Ordering::SeqCst) == generation {
            self.cache.insert(digest, t.clone());
        }
        Ok(t)
    }

    async fn consume(&self, digest: [u8; 32]) -> Result<Arc<IssuedToken>, VerifyError> {
        let won = self.deps.store.consume_single_use(&digest).await.map_err(|e| {
            tracing::error!(error = %e, "single-use consumption failed");
            VerifyError::Unavailable
        })?;
        if let Some(t) = won {
            tracing::info!(target: crate::SECURITY_TARGET, event = "single_use.consumed", jti = %t.id, "single-use token consumed");
            return Ok(Arc::new(t));
        }
        // Classify for the audit trail only; the caller always gets the generic 401.
        if let Ok(Some(t)) = self.deps.store.find_issued_token(&digest).await
            && t.consumed_at.is_some()
        {
            self.deps.events.record("single_use.replay_rejected", Some(t.id), "already_consumed");
        }
        Err(VerifyError::Invalid)
    }

    /// RFC 9068 §4 validation; `None` on any failure.
    pub(super) fn verify_jwt(&self, presented: &str) -> Option<IssuedToken> {
        let v = jws::verify(presented, Some("at+jwt"), |kid| kid.and_then(|k| self.signer.public_key(k))).ok()?;
        let c = &v.claims;
        let issuer = self.issuer().trim_end_matches('/');
        if c.get("iss").and_then(Value::as_str) != Some(issuer) {
            return None;
        }
        let auds = audiences(c);
        if !auds.iter().any(|a| a.trim_end_matches('/') == issuer) {
            return None;
        }
        let t = secs(now());
        let exp = c.get("exp").and_then(Value::as_i64)?;
        let iat = c.get("iat").and_then(Value::as_i64)?;
        if exp + EXP_LEEWAY_SECS <= t || !time_claims_ok(c, t) {
            return None;
        }
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        let id = Id::parse_str(s("jti")?).ok()?;
        let client_id = Id::parse_str(s("client_id")?).ok()?;
        let sub = s("sub")?.to_string();
        let scopes: Vec<String> = s("scope").unwrap_or("").split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect();
        let models: Vec<String> = match c.get("models") {
            None => vec![],
            Some(Value::Array(a)) => a.iter().map(|m| m.as_str().map(str::to_string)).collect::<Option<_>>()?,
            Some(_) => return None,
        };
        let max_tokens = match c.get("max_tokens") {
            None => None,
            Some(v) => Some(v.as_i64()?),
        };
        let max_spend_micros = match c.get("max_spend") {
            None => None,
            Some(v) => Some(micros_of_usd(v.as_f64()?)?),
        };
        let parent = match c.get("parent") {
            None => None,
            Some(v) => Some(Id::parse_str(v.as_str()?).ok()?),
        };
        let binding = c.get("cnf").and_then(|x| x.get("jkt")).and_then(Value::as_str).map(str::to_string);
        let binding_x5t = c.get("cnf").and_then(|x| x.get("x5t#S256")).and_then(Value::as_str).map(str::to_string);
        Some(IssuedToken {
            id,
            kind: "jwt".into(),
            digest: None,
            pepper_version: 0,
            hint: format!("jwt:{}", &id.simple().to_string()[..12]),
            team_id: Id::parse_str(s("team_id")?).ok()?,
            app_id: Id::parse_str(s("app_id")?).ok()?,
            client_id: Some(client_id),
            subject: sub,
            parent_id: parent,
            scopes,
            models,
            audience: None,
            max_tokens,
            max_spend_micros,
            act: c.get("act").map(Value::to_string),
            binding_jkt: binding,
            binding_x5t,
            expires_at: Timestamp::from_unix_timestamp(exp).ok()?,
            consumed_at: None,
            revoked_at: None,
            created_at: Timestamp::from_unix_timestamp(iat).ok()?,
        })
    }
}
