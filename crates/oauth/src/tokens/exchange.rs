//! RFC 8693 token exchange (G-6): narrowing scopes, models, lifetime, audience and caps, keeping
//! bindings, recording `act`; caps bounded by what the subject's lineage has left.

// The parent module's types, helpers and imports.
use super::*;

impl OAuth {
    /// RFC 8693 token exchange with the G-6 rules: scope ⊆ subject ∩ client policy, models ⊆
    /// subject ∩ client, `exp` ≤ subject `exp`, audience allowed for the client
    /// (`invalid_target` otherwise), binding carried over, `act` = {sub: client, act: previous}.
    pub async fn exchange(&self, client: &OAuthClient, req: &ExchangeRequest) -> Result<TokenResponse, OAuthError> {
        self.exchange_bound(client, req, None).await
    }

    /// [`Self::exchange`] that binds the new token to the DPoP key `dpop_jkt` (RFC 9449 §5; the
    /// caller verified the proof). An unbound subject may gain a binding (narrower); a bound
    /// subject keeps its own, and a different key is refused with `invalid_dpop_proof`.
    pub async fn exchange_bound(&self, client: &OAuthClient, req: &ExchangeRequest, dpop_jkt: Option<String>) -> Result<TokenResponse, OAuthError> {
        self.exchange_with(client, req, RequestBinding { dpop_jkt, client_cert_x5t: None }).await
    }

    /// [`Self::exchange`] with the request's proof-of-possession facts. DPoP as in
    /// [`Self::exchange_bound`]. Certificate binding (RFC 8705 §3): a subject bound to a
    /// certificate yields a token bound to the same certificate; an unbound subject exchanged
    /// by a client registered with `tls_client_certificate_bound_access_tokens` yields a token
    /// bound to the connection's certificate. Errors: `invalid_request` (such a client without
    /// a client certificate, or with another certificate than the subject's binding), plus
    /// those of [`Self::exchange`].
    pub async fn exchange_with(&self, client: &OAuthClient, req: &ExchangeRequest, binding: RequestBinding) -> Result<TokenResponse, OAuthError> {
        let dpop_jkt = binding.dpop_jkt;
        let requested_x5t = client_cert_binding(client, binding.client_cert_x5t.as_deref())?;
        let bad = |m: &str| OAuthError::new("invalid_request", m.to_string());
        if req.actor_token.is_some() != req.actor_token_type.is_some() {
            return Err(bad("actor_token and actor_token_type must be sent together"));
        }
        let (Some(subject_token), Some(subject_type)) = (&req.subject_token, &req.subject_token_type) else {
            return Err(bad("subject_token and subject_token_type are required"));
        };
        if !SUBJECT_TYPES.contains(&subject_type.as_str()) {
            return Err(bad("unsupported subject_token_type"));
        }
        // L6 (RFC 8693 §2.1, §3): the type must say what the token is.
        if !type_matches(subject_token, subject_type) {
            return Err(bad("subject_token_type does not match the subject token"));
        }
        let subject = match self.resolve(subject_token).await? {
            Some(s) if s.kind != "single_use" => s,
            _ => return Err(bad("subject_token is invalid, expired or revoked")),
        };
        if subject.team_id != client.team_id {
            return Err(bad("subject_token is invalid, expired or revoked"));
        }
        // H4: a key's allow-list holds for the key and for everything derived from it.
        if !subject.chain.ip_allowed(req.client_ip) {
            return Err(OAuthError::new("invalid_grant", "the subject token may not be used from this network address"));
        }
        // RFC 8693 §2.1: an actor token is validated like the subject and recorded in `act`.
        let actor = match (&req.actor_token, &req.actor_token_type) {
            (Some(token), Some(kind)) => {
                if !SUBJECT_TYPES.contains(&kind.as_str()) {
                    return Err(bad("unsupported actor_token_type"));
                }
                if !type_matches(token, kind) {
                    return Err(bad("actor_token_type does not match the actor token"));
                }
                let actor = match self.resolve(token).await? {
                    Some(a) if a.kind != "single_use" && a.team_id == client.team_id => a,
                    _ => return Err(bad("actor_token is invalid, expired or revoked")),
                };
                if !actor.chain.ip_allowed(req.client_ip) {
                    return Err(OAuthError::new("invalid_grant", "the actor token may not be used from this network address"));
                }
                Some(actor)
            }
            _ => None,
        };
        // Audience (RFC 8693 `audience`, RFC 8707 `resource`): the issuer (this data plane) or
        // one the client registered; the subject's own audience binding is never widened.
        let issuer = self.issuer().trim_end_matches('/').to_string();
        let target = match (&req.audience, &req.resource) {
            (Some(_), Some(_)) => return Err(bad("send audience or resource, not both")),
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        if let Some(t) = &target
            && t.trim_end_matches('/') != issuer
            && !client.audiences.iter().any(|a| a == t)
        {
            return Err(OAuthError::new("invalid_target", "the requested audience is not allowed for this client"));
        }
        if let (Some(sa), Some(t)) = (&subject.audience, &target)
            && sa != t
        {
            return Err(OAuthError::new("invalid_target", "the subject token is bound to another audience"));
        }
        let audience = target.or(subject.audience.clone()).filter(|a| a.trim_end_matches('/') != issuer);
        // Scopes.
        let allowed: Vec<String> = effective_scopes(&subject.scopes).into_iter().filter(|s| effective_scopes(&client.scopes).contains(s)).collect();
        let scopes: Vec<String> = match &req.scope {
            None => allowed.clone(),
            Some(s) => {
                let want = parse_scope(s)?;
                if let Some(x) = want.iter().find(|x| !allowed.contains(x)) {
                    return Err(OAuthError::new("invalid_scope", format!("scope {x} exceeds the subject token or client policy")));
                }
                want.into_iter().collect()
            }
        };
        if scopes.is_empty() {
            return Err(OAuthError::new("invalid_scope", "no scope is allowed for both the subject token and this client"));
        }
        // Models (empty = all).
        let allowed_models = intersect_all(&subject.models, &client.models);
        if !subject.models.is_empty() && !client.models.is_empty() && allowed_models.is_empty() {
            return Err(OAuthError::new("invalid_scope", "no model is allowed for both the subject token and this client"));
        }
        let models = match &req.models {
            None => allowed_models,
            Some(m) => {
                let want: Vec<String> = m.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect();
                if want.is_empty() || (!allowed_models.is_empty() && want.iter().any(|x| !allowed_models.contains(x))) {
                    return Err(OAuthError::new("invalid_scope", "models exceed the subject token or client policy"));
                }
                want
            }
        };
        // Token and spend caps (H6): at most what the subject and its capped ancestors have left.
        let requested_tokens = match &req.max_tokens {
            None => None,
            Some(s) => Some(s.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| bad("max_tokens must be a positive integer"))?),
        };
        let requested_spend = match &req.max_spend {
            None => None,
            Some(s) => Some(parse_usd(s).ok_or_else(|| bad("max_spend must be a positive USD amount with at most 6 decimals"))?),
        };
        let (tokens_left, spend_left) = self.remaining_caps(&subject.chain).await;
        let max_tokens = cap_within(requested_tokens, tokens_left, "max_tokens exceeds the subject token's remaining token cap", "the subject token's token cap is used up")?;
        let max_spend_micros =
            cap_within(requested_spend, spend_left, "max_spend exceeds the subject token's remaining spend cap", "the subject token's spend cap is used up")?;
        // Lifetime: ≤ client TTL, ≤ requested, ≤ subject exp (applied in `issue`).
        let mut ttl = Duration::from_secs(u64::try_from(client.access_ttl_secs).unwrap_or(600)).min(MAX_TTL);
        if let Some(s) = &req.expires_in {
            let v: u64 = s.parse().ok().filter(|v| *v > 0).ok_or_else(|| bad("expires_in must be a positive integer"))?;
            ttl = ttl.min(Duration::from_secs(v));
        }
        let kind = match req.requested_token_type.as_deref() {
            None | Some(token_types::ACCESS_TOKEN) => {
                if client.token_format == "jwt" { "jwt" } else { "access" }
            }
            Some(token_types::JWT) => "jwt",
            Some(token_types::SINGLE_USE) => {
                ttl = ttl.min(SINGLE_USE_TTL);
                "single_use"
            }
            Some(_) => return Err(bad("unsupported requested_token_type")),
        };
        // act chain.
        let mut depth = 1;
        let mut cur = subject.act.as_ref();
        while let Some(a) = cur {
            depth += 1;
            cur = a.get("act");
        }
        if depth > MAX_ACT_DEPTH {
            return Err(bad("delegation chain too deep"));
        }
        let mut act = match &actor {
            // The actor token's subject acts, through this client (RFC 8693 §4.1, §4.3).
            Some(a) => json!({"sub": a.sub, "client_id": client.id.to_string()}),
            None => json!({"sub": client.id.to_string()}),
        };
        if let Some(prev) = &subject.act {
            act["act"] = prev.clone();
        }
        let binding_jkt = match (subject.binding_jkt.clone(), dpop_jkt) {
            (Some(bound), Some(j)) if bound != j => {
                return Err(OAuthError::new("invalid_dpop_proof", "the DPoP key differs from the subject token's binding"));
            }
            (Some(bound), _) => Some(bound),
            (None, j) => j,
        };
        let binding_x5t = match (subject.binding_x5t.clone(), requested_x5t) {
            (Some(bound), Some(x)) if bound != x => {
                return Err(OAuthError::new("invalid_request", "the client certificate differs from the subject token's certificate binding"));
            }
            (Some(bound), _) => Some(bound),
            (None, x) => x,
        };
        let base = Subject { scopes, models, max_tokens, max_spend_micros, binding_jkt, binding_x5t, ..subject };
        let parent = Some(base.id);
        let resp = self.issue(&base, client, kind, ttl, parent, Some(act), audience).await?;
        tracing::info!(jti = %resp.record.id, parent = %base.id, client_id = %client.id, "token exchanged");
        Ok(resp)
    }

    /// The smallest `cap − used` (never below 0) over the capped tokens of `chain`: (tokens,
    /// spend micros); `None` where no token of the chain has such a cap. Usage comes from the
    /// [`crate::CapUsage`] hook (unknown → 0 used: the data plane still charges every ancestor).
    async fn remaining_caps(&self, chain: &Lineage) -> (Option<i64>, Option<i64>) {
        let (mut tokens, mut spend): (Option<i64>, Option<i64>) = (None, None);
        for a in chain.ancestors.iter().filter(|a| a.max_tokens.is_some() || a.max_spend_micros.is_some()) {
            let used = match self.cap_usage.get() {
                Some(u) => u.used(a.id).await.unwrap_or_default(),
                None => CapUsed::default(),
            };
            let left = |cap: i64, used: u64| cap.saturating_sub(i64::try_from(used).unwrap_or(i64::MAX)).max(0);
            if let Some(m) = a.max_tokens {
                let l = left(m, used.tokens);
                tokens = Some(tokens.map_or(l, |t| t.min(l)));
            }
            if let Some(m) = a.max_spend_micros {
                let l = left(m, used.spend_micros);
                spend = Some(spend.map_or(l, |t| t.min(l)));
            }
        }
        (tokens, spend)
    }
}
