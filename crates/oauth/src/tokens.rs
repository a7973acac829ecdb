//! Clients, client authentication, grants, revocation and introspection; data-plane verification
//! lives in [`verify`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use gatehouse_auth::token::{self, TokenKind};
use gatehouse_store::{BusEvent, Credential, IssuedToken, OAuthClient};
use gatehouse_types::{Id, Timestamp, new_id};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::jws::{self, EcPublicKey};
use crate::lineage::{Lineage, RootKey};
use crate::{
    CapUsed, DATA_PLANE_SCOPES, EXP_LEEWAY_SECS, FUTURE_SKEW_SECS, MAX_ASSERTION_LIFETIME_SECS, MAX_TTL, OAuth, OAuthError,
    SINGLE_USE_TTL, now, token_types,
};

mod exchange;
mod verify;

/// Longest `act` chain recorded on exchanged tokens (RFC 8693 §4.1; our cap).
pub const MAX_ACT_DEPTH: usize = 5;

/// Input of [`OAuth::create_client`] (validated by the admin layer for shapes and names).
#[derive(Debug, Clone)]
pub struct NewClient {
    pub team_id: Id,
    pub app_id: Id,
    pub name: String,
    /// `client_secret_basic` or `private_key_jwt`.
    pub auth_method: String,
    /// Required for `private_key_jwt`: the client's public EC P-256 JWK.
    pub public_jwk: Option<Value>,
    /// `opaque` or `jwt`.
    pub token_format: String,
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    pub audiences: Vec<String>,
    pub access_ttl: Duration,
    /// RFC 8705 §3.4 `tls_client_certificate_bound_access_tokens`: bind every token the client
    /// obtains to the certificate of its TLS connection to the token endpoint.
    pub tls_client_certificate_bound_access_tokens: bool,
}

/// Proof-of-possession facts of one token request: what the token endpoint verified about the
/// caller's key and connection. Which of them bind the issued token is decided by
/// [`OAuth::client_credentials_with`] and [`OAuth::exchange_with`].
#[derive(Debug, Clone, Default)]
pub struct RequestBinding {
    /// RFC 7638 thumbprint of a verified DPoP proof key, or a syntax-checked `dpop_jkt`
    /// (RFC 9449 §5, §10).
    pub dpop_jkt: Option<String>,
    /// `x5t#S256` of the client certificate of the connection (RFC 8705 §3.1; from the TLS
    /// handshake or a trusted TLS-terminating proxy). `None`: no client certificate.
    pub client_cert_x5t: Option<String>,
}

/// Who calls revocation / introspection.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An authenticated OAuth client: sees and revokes only its own tokens.
    Client(Box<OAuthClient>),
    /// An operator (admin API / CLI): every token and API key.
    Operator,
}

/// RFC 8693 §2.1 parameters (already de-duplicated; empty = absent).
#[derive(Debug, Clone, Default)]
pub struct ExchangeRequest {
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub requested_token_type: Option<String>,
    /// Gatehouse extension: space-separated public model names (⊆ the subject's).
    pub models: Option<String>,
    /// Gatehouse extension: token cap — total tokens (input + output) of every call made with
    /// the issued token together; at most the subject's *remaining* cap (the smallest
    /// `cap − used` over the subject and its capped ancestors). Absent → that remaining cap.
    pub max_tokens: Option<String>,
    /// Gatehouse extension: spend cap in USD, a decimal with at most 6 fraction digits
    /// (`"0.25"`): the catalog cost of every call made with the issued token together; bounded
    /// by the subject's remaining spend cap like `max_tokens`.
    pub max_spend: Option<String>,
    /// Gatehouse extension: requested lifetime in seconds (only shortens).
    pub expires_in: Option<String>,
    /// Not a form parameter: the client's address as the resource server determined it (socket
    /// peer, or `X-Forwarded-For` behind a trusted proxy). A subject or actor token whose root
    /// API key has an IP allow-list is refused (`invalid_grant`) unless this address is in it;
    /// `None` then always refuses (issue 5 H4).
    pub client_ip: Option<IpAddr>,
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1). `Debug` hides the token.
pub struct TokenResponse {
    pub access_token: SecretString,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    pub issued_token_type: &'static str,
    /// The stored record (its `id` is the `jti`).
    pub record: IssuedToken,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse").field("jti", &self.record.id).field("expires_in", &self.expires_in).finish()
    }
}

impl TokenResponse {
    /// The JSON body (includes the token: answer with `Cache-Control: no-store`).
    pub fn to_json(&self, exchange: bool) -> Value {
        let mut v = json!({
            "access_token": self.access_token.expose_secret(),
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if exchange {
            v["issued_token_type"] = json!(self.issued_token_type);
        }
        v
    }
}

/// A verified, not yet consumed single-use token (`gths_…`) from [`OAuth::verify_deferred`]:
/// redeem it with [`OAuth::redeem`] once the call is admitted. Holds only the token's keyed
/// digest, never the plaintext.
pub struct SingleUseClaim {
    digest: [u8; 32],
}

impl std::fmt::Debug for SingleUseClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SingleUseClaim")
    }
}

/// Why the data plane refuses a token: always 401 `invalid_token` for `Invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Unknown, malformed, expired, revoked, consumed, wrong audience/issuer/type, bad signature.
    Invalid,
    /// The store cannot be reached (503).
    Unavailable,
}

/// What a token being exchanged, revoked or introspected resolves to.
struct Subject {
    id: Id,
    team_id: Id,
    app_id: Id,
    client_id: Option<Id>,
    sub: String,
    scopes: Vec<String>,
    models: Vec<String>,
    audience: Option<String>,
    max_tokens: Option<i64>,
    max_spend_micros: Option<i64>,
    act: Option<Value>,
    binding_jkt: Option<String>,
    binding_x5t: Option<String>,
    expires_at: Option<Timestamp>,
    issued_at: Timestamp,
    kind: &'static str,
    /// The subject itself (when it is a token) and every token above it, with the root API key.
    chain: Arc<Lineage>,
}

/// The `cnf` claim / introspection member (RFC 7800 §3.1) of a bound token: `jkt` (RFC 9449
/// §6) and/or `x5t#S256` (RFC 8705 §3.1); `None` for an unbound token.
fn cnf(jkt: Option<&str>, x5t: Option<&str>) -> Option<Value> {
    let mut m = Map::new();
    if let Some(j) = jkt {
        m.insert("jkt".into(), json!(j));
    }
    if let Some(x) = x5t {
        m.insert("x5t#S256".into(), json!(x));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// The certificate binding of a token issued to `client`: RFC 8705 §3 — a client registered
/// with `tls_client_certificate_bound_access_tokens` must call over a connection with a client
/// certificate (`invalid_request` otherwise); other clients' tokens are not bound.
fn client_cert_binding(client: &OAuthClient, presented: Option<&str>) -> Result<Option<String>, OAuthError> {
    if !client.tls_client_certificate_bound_access_tokens {
        return Ok(None);
    }
    presented.map(|x| Some(x.to_string())).ok_or_else(|| {
        OAuthError::new("invalid_request", "this client's tokens are certificate-bound: call the token endpoint over mutual TLS with the client certificate")
    })
}

fn parse_scope(s: &str) -> Result<BTreeSet<String>, OAuthError> {
    let set: BTreeSet<String> = s.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect();
    if set.is_empty() || !s.bytes().all(|b| b == b' ' || (b'\x21'..=b'\x7e').contains(&b) && b != b'"' && b != b'\\') {
        return Err(OAuthError::new("invalid_scope", "scope must be space-separated scope tokens"));
    }
    Ok(set)
}

/// `empty = all` lists intersected: the result is never broader than either side.
fn intersect_all(a: &[String], b: &[String]) -> Vec<String> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => a.iter().filter(|x| b.contains(x)).cloned().collect(),
    }
}

fn effective_scopes(list: &[String]) -> Vec<String> {
    if list.is_empty() { DATA_PLANE_SCOPES.iter().map(|s| s.to_string()).collect() } else { list.to_vec() }
}

fn secs(ts: Timestamp) -> i64 {
    ts.unix_timestamp()
}

fn kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "access",
        TokenKind::SingleUse => "single_use",
        _ => "other",
    }
}

/// `kind` as a static string for event details.
fn kind_static(kind: &str) -> &'static str {
    match kind {
        "jwt" => "jwt",
        "single_use" => "single_use",
        _ => "access",
    }
}

impl OAuth {
    fn unavailable(e: &gatehouse_store::StoreError) -> OAuthError {
        tracing::error!(error = %e, "oauth store operation failed");
        OAuthError::unavailable()
    }

    // ------------------------------------------------------------------ clients

    /// Registers a client. Returns the stored client and, for `client_secret_basic`, the secret
    /// `gthc_…` (shown exactly once).
    pub async fn create_client(&self, req: NewClient) -> Result<(OAuthClient, Option<SecretString>), OAuthError> {
        let invalid = |m: &str| OAuthError::new("invalid_request", m.to_string());
        for s in &req.scopes {
            if !DATA_PLANE_SCOPES.contains(&s.as_str()) {
                return Err(OAuthError::new("invalid_scope", format!("unknown scope {s}; known: {}", DATA_PLANE_SCOPES.join(" "))));
            }
        }
        if req.access_ttl.is_zero() || req.access_ttl > MAX_TTL {
            return Err(invalid("access_ttl must be between 1 s and 1 h"));
        }
        if !matches!(req.token_format.as_str(), "opaque" | "jwt") {
            return Err(invalid("token_format must be opaque or jwt"));
        }
        let (secret, digest, hint, jwk) = match req.auth_method.as_str() {
            "client_secret_basic" => {
                if req.public_jwk.is_some() {
                    return Err(invalid("public_jwk is only for private_key_jwt"));
                }
                let g = token::generate(TokenKind::ClientSecret, self.deps.env).map_err(|_| OAuthError::server())?;
                let d = self.deps.peppers.digest(g.token.expose_secret()).to_vec();
                (Some(g.token), Some(d), Some(g.hint), None)
            }
            "private_key_jwt" => {
                let jwk = req.public_jwk.as_ref().ok_or_else(|| invalid("private_key_jwt needs public_jwk"))?;
                let key = EcPublicKey::from_jwk(jwk).map_err(|_| invalid("public_jwk must be a public EC P-256 JWK"))?;
                (None, None, None, Some(key.to_jwk().to_string()))
            }
            _ => return Err(invalid("auth_method must be client_secret_basic or private_key_jwt")),
        };
        let client = OAuthClient {
            id: new_id(),
            team_id: req.team_id,
            app_id: req.app_id,
            name: req.name,
            auth_method: req.auth_method,
            secret_digest: digest,
            pepper_version: self.deps.peppers.current_version(),
            secret_hint: hint,
            public_jwk: jwk,
            token_format: req.token_format,
            scopes: req.scopes,
            models: req.models,
            audiences: req.audiences,
            access_ttl_secs: req.access_ttl.as_secs() as i64,
            tls_client_certificate_bound_access_tokens: req.tls_client_certificate_bound_access_tokens,
            revoked_at: None,
            created_at: now(),
        };
        // The app may be deleted concurrently; the store refuses the insert atomically (M2).
        self.deps.store.create_oauth_client(&client).await.map_err(|e| match e {
            gatehouse_store::StoreError::NotFound(_) => OAuthError::new("invalid_request", crate::APP_NOT_FOUND),
            e => Self::unavailable(&e),
        })?;
        tracing::info!(client_id = %client.id, app_id = %client.app_id, "oauth client created");
        self.deps.events.record("oauth_client.created", Some(client.id), if secret.is_some() { "client_secret_basic" } else { "private_key_jwt" });
        Ok((client, secret))
    }

    /// Revokes a client and every token it obtained; effective on this node before returning.
    /// Returns false for an unknown client.
    pub async fn revoke_client(&self, id: Id) -> Result<bool, OAuthError> {
        let found = self.deps.store.revoke_oauth_client(id, now()).await.map_err(|e| Self::unavailable(&e))?;
        if found {
            self.deps.bus.publish(BusEvent::TokenRevoked { id });
            tracing::info!(client_id = %id, "oauth client revoked");
            self.deps.events.record("oauth_client.revoked", Some(id), "operator");
        }
        Ok(found)
    }

    // ------------------------------------------------------------------ client authentication

    fn client_failure(&self, client: Option<Id>, detail: &'static str) -> OAuthError {
        self.deps.events.record("client.auth_failed", client, detail);
        OAuthError::new("invalid_client", "client authentication failed")
    }

    /// `client_secret_basic` (RFC 6749 §2.3.1): `credentials` is the part after `Basic `. The
    /// id and secret are form-url-decoded after base64 (Appendix B). Any failure →
    /// `invalid_client` (answer 401 with a `Basic` challenge).
    pub async fn authenticate_basic(&self, credentials: &str) -> Result<OAuthClient, OAuthError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .map_err(|_| self.client_failure(None, "basic_malformed"))?;
        let raw = String::from_utf8(raw).map_err(|_| self.client_failure(None, "basic_malformed"))?;
        let (id, secret) = raw.split_once(':').ok_or_else(|| self.client_failure(None, "basic_malformed"))?;
        let decode = |s: &str| -> String { form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default() };
        let (id, secret) = (decode(id), SecretString::from(decode(secret)));
        let id = Id::parse_str(&id).map_err(|_| self.client_failure(None, "unknown_client"))?;
        let client = self.deps.store.get_oauth_client(id).await.map_err(|e| Self::unavailable(&e))?;
        // Compute the digest before looking at the result so unknown and wrong-secret cases
        // do the same work.
        // (T40: the HMAC runs before the unknown-client return, with the current pepper when
        // there is no client.)
        let ok_format = token::parse(secret.expose_secret())
            .is_ok_and(|p| p.kind == TokenKind::ClientSecret && p.env == self.deps.env);
        let version = client.as_ref().map_or_else(|| self.deps.peppers.current_version(), |c| c.pepper_version);
        let digest = self.deps.peppers.digest_with(version, secret.expose_secret()).unwrap_or([0; 32]);
        let Some(client) = client else { return Err(self.client_failure(None, "unknown_client")) };
        let expected = client.secret_digest.clone().unwrap_or_default();
        let matches: bool = digest.ct_eq(expected.as_slice()).into();
        if !ok_format || !matches || client.auth_method != "client_secret_basic" {
            return Err(self.client_failure(Some(client.id), "bad_secret"));
        }
        if client.revoked_at.is_some() {
            return Err(self.client_failure(Some(client.id), "client_revoked"));
        }
        Ok(client)
    }

    /// `private_key_jwt` (RFC 7523 §2.2, §3): the assertion is an ES256 JWS signed with the
    /// client's registered key; `iss` = `sub` = client id (and = `client_id` if sent), `aud`
    /// contains the token endpoint URL or the issuer, `exp` in the future and at most 5 min
    /// away, `jti` unused (recorded until `exp`). Any failure → `invalid_client`.
    pub async fn authenticate_assertion(&self, client_id: Option<&str>, assertion: &str, endpoint: &str) -> Result<OAuthClient, OAuthError> {
        let unverified = jws::peek_claims(assertion).map_err(|_| self.client_failure(None, "assertion_malformed"))?;
        let sub = unverified.get("sub").and_then(Value::as_str).ok_or_else(|| self.client_failure(None, "assertion_no_sub"))?;
        let id = Id::parse_str(sub).map_err(|_| self.client_failure(None, "unknown_client"))?;
        if client_id.is_some_and(|c| c != sub) {
            return Err(self.client_failure(Some(id), "client_id_mismatch"));
        }
        let client = self.deps.store.get_oauth_client(id).await.map_err(|e| Self::unavailable(&e))?;
        let Some(client) = client else { return Err(self.client_failure(None, "unknown_client")) };
        if client.auth_method != "private_key_jwt" || client.revoked_at.is_some() {
            return Err(self.client_failure(Some(id), "method_or_revoked"));
        }
        let key = client
            .public_jwk
            .as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
            .and_then(|j| EcPublicKey::from_jwk(&j).ok())
            .ok_or_else(|| self.client_failure(Some(id), "no_key"))?;
        let v = jws::verify(assertion, None, |_| Some(key)).map_err(|_| self.client_failure(Some(id), "assertion_signature"))?;
        let c = &v.claims;
        let iss_ok = c.get("iss").and_then(Value::as_str) == Some(sub);
        let issuer = self.issuer().trim_end_matches('/');
        let aud_ok = audiences(c).iter().any(|a| a == endpoint || a.trim_end_matches('/') == issuer);
        let t = secs(now());
        let exp = c.get("exp").and_then(Value::as_i64);
        let exp_ok = exp.is_some_and(|e| e + EXP_LEEWAY_SECS > t && e - t <= MAX_ASSERTION_LIFETIME_SECS);
        let times_ok = time_claims_ok(c, t);
        let jti = c.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= 256);
        let (true, true, true, true, Some(jti), Some(exp)) = (iss_ok, aud_ok, exp_ok, times_ok, jti, exp) else {
            return Err(self.client_failure(Some(id), "assertion_claims"));
        };
        let key = Sha256::digest(format!("client-assertion\0{sub}\0{jti}").as_bytes());
        let until = Timestamp::from_unix_timestamp(exp + EXP_LEEWAY_SECS).map_err(|_| OAuthError::server())?;
        let first = self.deps.store.record_jti(&key, until).await.map_err(|e| Self::unavailable(&e))?;
        if !first {
            return Err(self.client_failure(Some(id), "assertion_replay"));
        }
        Ok(client)
    }

    // ------------------------------------------------------------------ grants

    /// RFC 6749 §4.4: a token for the client itself. `scope` ⊆ the client's scopes (absent →
    /// all of them), else `invalid_scope`.
    pub async fn client_credentials(&self, client: &OAuthClient, scope: Option<&str>) -> Result<TokenResponse, OAuthError> {
        self.client_credentials_bound(client, scope, None).await
    }

    /// [`Self::client_credentials`] issuing a token bound to the DPoP key with RFC 7638
    /// thumbprint `binding_jkt` (RFC 9449 §5, §6): `token_type` `DPoP`, `cnf.jkt` in JWTs and
    /// introspection. The caller has verified the proof (or checked the `dpop_jkt` syntax).
    pub async fn client_credentials_bound(
        &self,
        client: &OAuthClient,
        scope: Option<&str>,
        binding_jkt: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        self.client_credentials_with(client, scope, RequestBinding { dpop_jkt: binding_jkt, client_cert_x5t: None }).await
    }

    /// [`Self::client_credentials`] with the request's proof-of-possession facts: a DPoP key
    /// binds as in [`Self::client_credentials_bound`]; for a client registered with
    /// `tls_client_certificate_bound_access_tokens` the token carries `cnf.x5t#S256` of the
    /// connection's client certificate (RFC 8705 §3.1; `token_type` stays `Bearer` unless DPoP
    /// also binds it). Errors: `invalid_request` (certificate-bound client without a client
    /// certificate), `invalid_scope`.
    pub async fn client_credentials_with(
        &self,
        client: &OAuthClient,
        scope: Option<&str>,
        binding: RequestBinding,
    ) -> Result<TokenResponse, OAuthError> {
        let binding_x5t = client_cert_binding(client, binding.client_cert_x5t.as_deref())?;
        let binding_jkt = binding.dpop_jkt;
        let allowed = effective_scopes(&client.scopes);
        let scopes: Vec<String> = match scope {
            None => allowed,
            Some(s) => {
                let req = parse_scope(s)?;
                if let Some(x) = req.iter().find(|x| !allowed.contains(x)) {
                    return Err(OAuthError::new("invalid_scope", format!("scope {x} is not allowed for this client")));
                }
                req.into_iter().collect()
            }
        };
        let ttl = Duration::from_secs(u64::try_from(client.access_ttl_secs).unwrap_or(600)).min(MAX_TTL);
        let subject = Subject {
            id: client.id,
            team_id: client.team_id,
            app_id: client.app_id,
            client_id: Some(client.id),
            sub: client.id.to_string(),
            scopes,
            models: client.models.clone(),
            audience: None,
            max_tokens: None,
            max_spend_micros: None,
            act: None,
            binding_jkt,
            binding_x5t,
            expires_at: None,
            issued_at: now(),
            kind: "client",
            chain: Arc::default(),
        };
        let kind = if client.token_format == "jwt" { "jwt" } else { "access" };
        self.issue(&subject, client, kind, ttl, None, None, None).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        base: &Subject,
        client: &OAuthClient,
        kind: &str,
        ttl: Duration,
        parent: Option<Id>,
        act: Option<Value>,
        audience: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let created_at = now();
        let mut expires_at = created_at + time::Duration::try_from(ttl).map_err(|_| OAuthError::server())?;
        if let Some(limit) = base.expires_at {
            expires_at = expires_at.min(limit);
        }
        let expires_in = u64::try_from((expires_at - created_at).whole_seconds()).unwrap_or(0);
        let id = new_id();
        let mut record = IssuedToken {
            id,
            kind: kind.into(),
            digest: None,
            pepper_version: self.deps.peppers.current_version(),
            hint: String::new(),
            team_id: base.team_id,
            app_id: base.app_id,
            client_id: Some(client.id),
            subject: base.sub.clone(),
            parent_id: parent,
            scopes: base.scopes.clone(),
            models: base.models.clone(),
            audience: audience.clone(),
            max_tokens: base.max_tokens,
            max_spend_micros: base.max_spend_micros,
            act: act.as_ref().map(Value::to_string),
            binding_jkt: base.binding_jkt.clone(),
            binding_x5t: base.binding_x5t.clone(),
            expires_at,
            consumed_at: None,
            revoked_at: None,
            created_at,
        };
        let (secret, issued_type) = match kind {
            "jwt" => {
                let (kid, key) = self.signer.current().await?;
                let iss = self.issuer().trim_end_matches('/').to_string();
                let mut claims = json!({
                    "iss": iss,
                    "sub": base.sub,
                    "aud": audience.clone().unwrap_or(iss.clone()),
                    "client_id": client.id.to_string(),
                    "scope": base.scopes.join(" "),
                    "iat": secs(created_at),
                    "exp": secs(expires_at),
                    "jti": id.to_string(),
                    "team_id": base.team_id.to_string(),
                    "app_id": base.app_id.to_string(),
                });
                if !base.models.is_empty() {
                    claims["models"] = json!(base.models);
                }
                if let Some(m) = base.max_tokens {
                    claims["max_tokens"] = json!(m);
                }
                if let Some(m) = base.max_spend_micros {
                    claims["max_spend"] = json!(usd_of_micros(m));
                }
                if let Some(a) = &act {
                    claims["act"] = a.clone();
                }
                if let Some(p) = parent {
                    claims["parent"] = json!(p.to_string());
                }
                if let Some(c) = cnf(base.binding_jkt.as_deref(), base.binding_x5t.as_deref()) {
                    claims["cnf"] = c;
                }
                let jwt = key.sign("at+jwt", &kid, &claims).map_err(|_| OAuthError::server())?;
                record.hint = format!("jwt:{}", &id.simple().to_string()[..12]);
                (SecretString::from(jwt), token_types::JWT)
            }
            _ => {
                let tk = if kind == "single_use" { TokenKind::SingleUse } else { TokenKind::Access };
                let g = token::generate(tk, self.deps.env).map_err(|_| OAuthError::server())?;
                record.digest = Some(self.deps.peppers.digest(g.token.expose_secret()).to_vec());
                record.hint = g.hint;
                let t = if tk == TokenKind::SingleUse { token_types::SINGLE_USE } else { token_types::ACCESS_TOKEN };
                (g.token, t)
            }
        };
        // The client's app may be deleted concurrently; the store refuses the insert atomically (M2).
        self.deps.store.create_issued_token(&record).await.map_err(|e| match e {
            gatehouse_store::StoreError::NotFound(_) => OAuthError::new("invalid_client", "client authentication failed"),
            e => Self::unavailable(&e),
        })?;
        tracing::info!(jti = %record.id, client_id = %client.id, kind, expires_in, "token issued");
        self.deps.events.record("token.issued", Some(record.id), kind_static(kind));
        Ok(TokenResponse {
            access_token: secret,
            // RFC 9449 §5: a bound token is of type DPoP.
            token_type: if base.binding_jkt.is_some() { "DPoP" } else { "Bearer" },
            expires_in,
            scope: base.scopes.join(" "),
            issued_token_type: issued_type,
            record,
        })
    }

    /// Mints a single-use token for an API key's app (`gatehouse keys create --single-use`):
    /// scopes/models as given (empty = all), lifetime `ttl` (≤ [`MAX_TTL`]).
    pub async fn mint_single_use(
        &self,
        team_id: Id,
        app_id: Id,
        name: &str,
        scopes: Vec<String>,
        models: Vec<String>,
        ttl: Duration,
    ) -> Result<TokenResponse, OAuthError> {
        let ttl = if ttl.is_zero() { SINGLE_USE_TTL } else { ttl.min(MAX_TTL) };
        let pseudo = OAuthClient {
            id: Id::nil(),
            team_id,
            app_id,
            name: name.into(),
            auth_method: String::new(),
            secret_digest: None,
            pepper_version: 0,
            secret_hint: None,
            public_jwk: None,
            token_format: "opaque".into(),
            scopes: vec![],
            models: vec![],
            audiences: vec![],
            access_ttl_secs: 0,
            tls_client_certificate_bound_access_tokens: false,
            revoked_at: None,
            created_at: now(),
        };
        let subject = Subject {
            id: Id::nil(),
            team_id,
            app_id,
            client_id: None,
            sub: format!("app:{app_id}"),
            scopes: effective_scopes(&scopes),
            models,
            audience: None,
            max_tokens: None,
            max_spend_micros: None,
            act: None,
            binding_jkt: None,
            binding_x5t: None,
            expires_at: None,
            issued_at: now(),
            kind: "operator",
            chain: Arc::default(),
        };
        let mut resp = self.issue(&subject, &pseudo, "single_use", ttl, None, None, None).await?;
        // Not obtained by a client: do not record the placeholder id.
        resp.record.client_id = None;
        Ok(resp)
    }

    // ------------------------------------------------------------------ token exchange: [`exchange`]

    // ------------------------------------------------------------------ resolve / revoke / introspect

    /// Resolves any live Gatehouse credential without consuming it. `Ok(None)` = not active.
    async fn resolve(&self, presented: &str) -> Result<Option<Subject>, OAuthError> {
        if jws::looks_like_jws(presented) {
            let Some(t) = self.verify_jwt(presented).filter(|t| !self.denied(t)) else { return Ok(None) };
            let Some(parents) = self.lineage(t.parent_id).await.map_err(|e| Self::unavailable(&e))? else { return Ok(None) };
            return Ok(Some(Self::subject_of(&t, "jwt", &parents)));
        }
        let Ok(parsed) = token::parse(presented) else { return Ok(None) };
        if parsed.env != self.deps.env {
            return Ok(None);
        }
        let at = now();
        match parsed.kind {
            TokenKind::ApiKey => {
                let Some(c) = self.find_key(presented).await? else { return Ok(None) };
                if c.revoked_at.is_some()
                    || c.security.suspended_at.is_some()
                    || c.expires_at.is_some_and(|e| e <= at)
                    || self.deny.contains_key(&c.id)
                {
                    return Ok(None);
                }
                Ok(Some(Subject {
                    id: c.id,
                    team_id: c.team_id,
                    app_id: c.app_id,
                    client_id: None,
                    sub: c.id.to_string(),
                    scopes: c.scopes.clone(),
                    models: c.models.clone(),
                    audience: None,
                    max_tokens: None,
                    act: None,
                    // A DPoP-bound key's exchanged tokens stay bound to that key (RFC 9449 §7.2).
                    binding_jkt: c.security.dpop_jkt.clone(),
                    // Likewise a certificate-bound key's (RFC 8705 §3).
                    binding_x5t: c.security.mtls_x5t.clone(),
                    expires_at: c.expires_at,
                    issued_at: c.created_at,
                    kind: "api_key",
                    max_spend_micros: None,
                    chain: Arc::new(Lineage {
                        ancestors: vec![],
                        root_key: Some(RootKey { id: c.id, ip_allow: c.security.ip_allow.clone(), expires_at: c.expires_at }),
                    }),
                }))
            }
            TokenKind::Access | TokenKind::SingleUse => {
                let digest = self.deps.peppers.digest(presented);
                let t = self.deps.store.find_issued_token(&digest).await.map_err(|e| Self::unavailable(&e))?;
                let Some(t) = t.filter(|t| {
                    t.revoked_at.is_none() && t.consumed_at.is_none() && t.expires_at > at && !self.denied(t) && t.kind == kind_name(parsed.kind)
                }) else {
                    return Ok(None);
                };
                let Some(parents) = self.lineage(t.parent_id).await.map_err(|e| Self::unavailable(&e))? else { return Ok(None) };
                Ok(Some(Self::subject_of(&t, if parsed.kind == TokenKind::SingleUse { "single_use" } else { "access" }, &parents)))
            }
            _ => Ok(None),
        }
    }

    async fn find_key(&self, presented: &str) -> Result<Option<Credential>, OAuthError> {
        let current = self.deps.peppers.current_version();
        for v in (1..=current).rev() {
            if let Some(d) = self.deps.peppers.digest_with(v, presented)
                && let Some(c) = self.deps.store.find_credential(&d).await.map_err(|e| Self::unavailable(&e))?
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// A token as an exchange / revocation / introspection subject; `parents` = its lineage.
    fn subject_of(t: &IssuedToken, kind: &'static str, parents: &Lineage) -> Subject {
        Subject {
            id: t.id,
            team_id: t.team_id,
            app_id: t.app_id,
            client_id: t.client_id,
            sub: t.subject.clone(),
            scopes: t.scopes.clone(),
            models: t.models.clone(),
            audience: t.audience.clone(),
            max_tokens: t.max_tokens,
            max_spend_micros: t.max_spend_micros,
            act: t.act.as_deref().and_then(|a| serde_json::from_str(a).ok()),
            binding_jkt: t.binding_jkt.clone(),
            binding_x5t: t.binding_x5t.clone(),
            expires_at: Some(t.expires_at),
            issued_at: t.created_at,
            kind,
            chain: Arc::new(parents.with_token(t)),
        }
    }

    /// RFC 7009: revokes `presented` if the caller may (a client: only tokens it obtained; an
    /// operator: any token or API key). Unknown, invalid and foreign tokens are answered the
    /// same (`Ok`), foreign attempts are recorded as security events. Takes effect on this node
    /// before returning (bus).
    pub async fn revoke(&self, presented: &str, caller: &Caller) -> Result<(), OAuthError> {
        self.revoke_detailed(presented, caller).await.map(|_| ())
    }

    /// [`Self::revoke`], telling the caller what was revoked: `Some((id, kind))` with the public
    /// id (`jti` or key id) and `api_key` / `access` / `single_use` / `jwt`; `None` when nothing
    /// was (unknown, inactive or foreign). Records `token.revoked` through the events hook.
    /// Only for operators' answers and audit records: RFC 7009 clients always get 200.
    pub async fn revoke_detailed(&self, presented: &str, caller: &Caller) -> Result<Option<(Id, &'static str)>, OAuthError> {
        let Some(s) = self.resolve(presented).await? else { return Ok(None) };
        if let Caller::Client(c) = caller
            && s.client_id != Some(c.id)
        {
            self.deps.events.record("token.revoke_foreign", Some(c.id), "not_owner");
            return Ok(None);
        }
        let at = now();
        if s.kind == "api_key" {
            self.deps.store.revoke_credential(s.id, at).await.map_err(|e| Self::unavailable(&e))?;
            if let Ok(Some(c)) = self.find_key(presented).await {
                self.deps.bus.publish(BusEvent::CredentialChanged { id: c.id, digest: c.digest });
            }
        } else {
            self.deps.store.revoke_issued_token(s.id, at).await.map_err(|e| Self::unavailable(&e))?;
        }
        self.deps.bus.publish(BusEvent::TokenRevoked { id: s.id });
        tracing::info!(id = %s.id, kind = s.kind, "token revoked");
        let by = if matches!(caller, Caller::Operator) { "operator" } else { "client" };
        self.deps.events.record("token.revoked", Some(s.id), by);
        Ok(Some((s.id, s.kind)))
    }

    /// RFC 7662 §2.2: `{"active": false}` for anything not active or not visible to the caller
    /// (a client sees only tokens it obtained); otherwise the token's metadata.
    pub async fn introspect(&self, presented: &str, caller: &Caller) -> Result<Value, OAuthError> {
        let inactive = json!({"active": false});
        let Some(s) = self.resolve(presented).await? else { return Ok(inactive) };
        if let Caller::Client(c) = caller
            && s.client_id != Some(c.id)
        {
            return Ok(inactive);
        }
        let iss = self.issuer().trim_end_matches('/').to_string();
        let mut v = Map::new();
        v.insert("active".into(), json!(true));
        v.insert("scope".into(), json!(effective_scopes(&s.scopes).join(" ")));
        if let Some(c) = s.client_id {
            v.insert("client_id".into(), json!(c.to_string()));
        }
        v.insert("token_type".into(), json!(if s.binding_jkt.is_some() { "DPoP" } else { "Bearer" }));
        if let Some(e) = s.expires_at {
            v.insert("exp".into(), json!(secs(e)));
        }
        v.insert("iat".into(), json!(secs(s.issued_at)));
        v.insert("sub".into(), json!(s.sub));
        v.insert("aud".into(), json!(s.audience.clone().unwrap_or(iss.clone())));
        v.insert("iss".into(), json!(iss));
        v.insert("jti".into(), json!(s.id.to_string()));
        v.insert("gatehouse_token_kind".into(), json!(s.kind));
        if !s.models.is_empty() {
            v.insert("models".into(), json!(s.models));
        }
        if let Some(m) = s.max_tokens {
            v.insert("max_tokens".into(), json!(m));
        }
        if let Some(m) = s.max_spend_micros {
            v.insert("max_spend".into(), json!(usd_of_micros(m)));
        }
        if let Some(a) = s.act {
            v.insert("act".into(), a);
        }
        // RFC 9449 §6.2 / RFC 8705 §3.2: the binding, as in the token.
        if let Some(c) = cnf(s.binding_jkt.as_deref(), s.binding_x5t.as_deref()) {
            v.insert("cnf".into(), c);
        }
        Ok(Value::Object(v))
    }
}

/// Token types accepted as `subject_token_type` and `actor_token_type`.
const SUBJECT_TYPES: [&str; 3] = [token_types::ACCESS_TOKEN, token_types::JWT, token_types::API_KEY];

/// L6 (RFC 8693 §2.1, §3; `token-security.md` §1.7, T45): whether the type URN `urn` names what
/// `presented` is. An API key is only `urn:gatehouse:params:oauth:token-type:api_key`, an
/// opaque access token only `…:access_token`, a JWT access token `…:access_token` or `…:jwt`.
/// Anything else (garbage, single-use tokens) is left to the resolution that follows.
fn type_matches(presented: &str, urn: &str) -> bool {
    if jws::looks_like_jws(presented) {
        return urn == token_types::ACCESS_TOKEN || urn == token_types::JWT;
    }
    match token::parse(presented).map(|p| p.kind) {
        Ok(TokenKind::ApiKey) => urn == token_types::API_KEY,
        Ok(TokenKind::Access) => urn == token_types::ACCESS_TOKEN,
        _ => true,
    }
}

/// A requested cap bounded by what is left (H6): `Some(v)` above `left` → `invalid_scope`
/// (`over`); absent → `left` (inherited), which must not be used up (`invalid_scope`, `used_up`).
fn cap_within(requested: Option<i64>, left: Option<i64>, over: &str, used_up: &str) -> Result<Option<i64>, OAuthError> {
    match (requested, left) {
        (Some(v), Some(l)) if v > l => Err(OAuthError::new("invalid_scope", over.to_string())),
        (Some(v), _) => Ok(Some(v)),
        (None, Some(l)) if l <= 0 => Err(OAuthError::new("invalid_scope", used_up.to_string())),
        (None, l) => Ok(l),
    }
}

/// A positive USD amount (`"2"`, `"0.25"`, at most 6 fraction digits, at most 1 000 000 000)
/// in micros; `None` when malformed, zero or too large.
fn parse_usd(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 10 || frac.len() > 6 || !digits(whole) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    let micros = w.checked_mul(1_000_000)?.checked_add(f)?;
    (micros > 0 && micros <= 1_000_000_000 * 1_000_000).then_some(micros)
}

/// USD micros as a JSON number of USD (`250000` → `0.25`), for introspection and JWT claims.
fn usd_of_micros(m: i64) -> f64 {
    m as f64 / 1_000_000.0
}

/// The inverse of [`usd_of_micros`] for a claim we signed; `None` for negative or absurd values.
fn micros_of_usd(usd: f64) -> Option<i64> {
    let m = (usd * 1_000_000.0).round();
    (m.is_finite() && (0.0..=1e15).contains(&m)).then_some(m as i64)
}

/// `aud` as a list (string or array of strings; anything else → empty).
fn audiences(c: &Map<String, Value>) -> Vec<String> {
    match c.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

/// `iat`/`nbf`, if present, are numbers at most [`FUTURE_SKEW_SECS`] ahead (G-10); a wrong JSON
/// type is a failure, never "absent" (CVE-2026-25537 class). `exp`, if present, is a number.
fn time_claims_ok(c: &Map<String, Value>, now: i64) -> bool {
    for k in ["iat", "nbf"] {
        match c.get(k) {
            None => {}
            Some(v) => match v.as_i64() {
                Some(x) if x <= now + FUTURE_SKEW_SECS => {}
                _ => return false,
            },
        }
    }
    !matches!(c.get("exp"), Some(v) if v.as_i64().is_none())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usd_amounts_parse_to_micros_and_bad_ones_are_refused() {
        assert_eq!(parse_usd("2"), Some(2_000_000));
        assert_eq!(parse_usd("0.25"), Some(250_000));
        assert_eq!(parse_usd("0.000001"), Some(1));
        assert_eq!(parse_usd("1000000000"), Some(1_000_000_000_000_000));
        for bad in ["", "0", "0.0", "-1", "1.", ".5", "1.1234567", "1e3", "1,5", " 1", "abc", "10000000000", "1000000000.01"] {
            assert_eq!(parse_usd(bad), None, "{bad}");
        }
        assert_eq!(micros_of_usd(usd_of_micros(30_000)), Some(30_000));
        assert_eq!(micros_of_usd(usd_of_micros(1)), Some(1));
        assert_eq!(micros_of_usd(-1.0), None);
        assert_eq!(micros_of_usd(f64::NAN), None);
    }

    #[test]
    fn token_types_must_name_what_the_token_is() {
        let key = token::generate(TokenKind::ApiKey, gatehouse_auth::Env::Live).unwrap();
        let access = token::generate(TokenKind::Access, gatehouse_auth::Env::Live).unwrap();
        let (key, access) = (key.token.expose_secret().to_string(), access.token.expose_secret().to_string());
        assert!(type_matches(&key, token_types::API_KEY));
        assert!(!type_matches(&key, token_types::ACCESS_TOKEN));
        assert!(!type_matches(&key, token_types::JWT));
        assert!(type_matches(&access, token_types::ACCESS_TOKEN));
        assert!(!type_matches(&access, token_types::API_KEY));
        assert!(!type_matches(&access, token_types::JWT));
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        assert!(jws::looks_like_jws(jwt));
        assert!(type_matches(jwt, token_types::ACCESS_TOKEN));
        assert!(type_matches(jwt, token_types::JWT));
        assert!(!type_matches(jwt, token_types::API_KEY));
    }

    #[test]
    fn caps_stay_within_what_is_left() {
        let e = |r: Result<Option<i64>, OAuthError>| r.map_err(|e| e.error);
        assert_eq!(e(cap_within(None, None, "o", "u")), Ok(None));
        assert_eq!(e(cap_within(Some(5), None, "o", "u")), Ok(Some(5)));
        assert_eq!(e(cap_within(None, Some(24), "o", "u")), Ok(Some(24)));
        assert_eq!(e(cap_within(Some(24), Some(24), "o", "u")), Ok(Some(24)));
        assert_eq!(e(cap_within(Some(25), Some(24), "o", "u")), Err("invalid_scope"));
        assert_eq!(e(cap_within(None, Some(0), "o", "u")), Err("invalid_scope"));
        assert_eq!(e(cap_within(Some(1), Some(0), "o", "u")), Err("invalid_scope"));
    }
}
