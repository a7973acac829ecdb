//! OAuth 2.0 endpoints of the data plane (issue 5) and the mapping of issued tokens onto the
//! API-key authorization path. The logic lives in `gatehouse-oauth`; these handlers only parse
//! HTTP and render RFC 6749 §5 answers.
//!
//! * `POST /oauth/token`: `client_credentials` (RFC 6749 §4.4) and token exchange (RFC 8693).
//! * `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662), client-authenticated.
//! * `GET /.well-known/oauth-authorization-server` (RFC 8414), `/.well-known/jwks.json`,
//!   `/.well-known/oauth-protected-resource` (RFC 9728).
//!
//! Token-endpoint rules (`token-security.md` §1.1): only `POST` (others → 405); body
//! `application/x-www-form-urlencoded` (else 400 `invalid_request`); an empty parameter counts
//! as absent, a repeated one is `invalid_request`; exactly one client authentication method
//! (`Authorization: Basic` or `client_assertion`); `client_secret` in the body is not supported.
//! Every answer carries `Cache-Control: no-store` and `Pragma: no-cache`; `invalid_client` is 401
//! with `WWW-Authenticate: Basic realm="gatehouse"`.
//!
//! Sender constraints: a DPoP proof or `dpop_jkt` binds the token to a key (RFC 9449 §5,
//! [`crate::dpop`]); a client registered with `tls_client_certificate_bound_access_tokens` gets
//! tokens bound to the `x5t#S256` of the connection's client certificate (RFC 8705 §3,
//! [`crate::mtls`]), and without one is answered 400 `invalid_request`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_oauth::{Caller, ExchangeRequest, Lineage, OAuth, OAuthError, RequestBinding, SingleUseClaim, VerifyError, grant_types};
use gatehouse_store::{Credential, OAuthClient};
use gatehouse_types::{ApiError, ErrorCode};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::AppState;

/// Largest accepted form body of the OAuth endpoints (bytes).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The OAuth routes (merged into the data-plane router, outside the API-key layer).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/oauth/token", post(token).fallback(|| async { method_not_allowed() }))
        .route("/oauth/revoke", post(revoke).fallback(|| async { method_not_allowed() }))
        .route("/oauth/introspect", post(introspect).fallback(|| async { method_not_allowed() }))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/jwks.json", get(jwks))
}

/// Verifies an issued token for `/v1/*` and maps it onto a [`Credential`] so the API-key
/// authorization (models, scopes) applies unchanged: `id` = the token's `jti`, `scopes` and
/// `models` from the token, `expires_at` = token expiry. A derived token never escapes its
/// lineage (issue 5): the root API key's IP allow-list (H4) and key-scope limits (H5,
/// `limit_key`) apply, and the token caps and spend caps of the token and of every ancestor
/// are charged together (H6, `crate::caps`). A single-use token is *not* consumed: its
/// [`SingleUseClaim`] comes back for the caller to redeem once the call is admitted
/// ([`redeem`]; L3).
pub(crate) async fn authenticate_deferred(oauth: &OAuth, token: &str) -> Result<(Arc<Credential>, Option<SingleUseClaim>), ApiError> {
    let (t, lineage, claim) = oauth.verify_deferred(token).await.map_err(verify_error)?;
    Ok((as_credential(&t, &lineage), claim))
}

/// Consumes a single-use token ([`OAuth::redeem`]): exactly one concurrent caller gets `Ok`, the
/// others 401 `invalid_token`.
pub(crate) async fn redeem(oauth: &OAuth, claim: &SingleUseClaim) -> Result<(), ApiError> {
    oauth.redeem(claim).await.map(|_| ()).map_err(verify_error)
}

fn as_credential(t: &gatehouse_store::IssuedToken, lineage: &Lineage) -> Arc<Credential> {
    let positive = |v: i64| u64::try_from(v).ok();
    Arc::new(Credential {
        id: t.id,
        team_id: t.team_id,
        app_id: t.app_id,
        name: format!("oauth:{}", t.kind),
        digest: t.digest.clone().unwrap_or_default(),
        pepper_version: t.pepper_version,
        hint: t.hint.clone(),
        models: t.models.clone(),
        scopes: t.scopes.clone(),
        expires_at: Some(t.expires_at),
        revoked_at: None,
        last_used_at: None,
        created_at: t.created_at,
        // A DPoP-bound token is accepted only with a proof of that key (RFC 9449 §7.2).
        security: gatehouse_store::CredentialSecurity {
            dpop_jkt: t.binding_jkt.clone(),
            ip_allow: lineage.ip_allow().to_vec(),
            limit_key: lineage.root_key.as_ref().map(|k| k.id),
            // Token and spend caps of the token and its ancestors (crate::caps), enforced
            // through the limits path.
            token_caps: t
                .max_tokens
                .map(|m| (t.id, m))
                .into_iter()
                .chain(lineage.token_caps())
                .filter_map(|(id, m)| positive(m).map(|m| (id, m)))
                .collect(),
            spend_caps: t
                .max_spend_micros
                .map(|m| (t.id, m))
                .into_iter()
                .chain(lineage.spend_caps())
                .filter_map(|(id, m)| positive(m).map(|m| (id, m)))
                .collect(),
            // A certificate-bound token only over a connection with that certificate
            // (RFC 8705 §3).
            mtls_x5t: t.binding_x5t.clone(),
            ..Default::default()
        },
    })
}

fn verify_error(e: VerifyError) -> ApiError {
    match e {
        VerifyError::Invalid => ApiError::new(ErrorCode::InvalidToken, "invalid API key: the key is unknown, malformed, expired or revoked"),
        VerifyError::Unavailable => ApiError::new(ErrorCode::Unavailable, "the gateway cannot verify keys right now; retry later"),
    }
}

/// `x5t#S256` of the request's client certificate ([`crate::mtls`]), if any.
fn client_cert(extensions: &http::Extensions) -> Option<String> {
    extensions.get::<crate::mtls::ClientCertificate>().map(|c| c.x5t_s256.clone())
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn oauth_error(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, axum::Json(json!({"error": e.error, "error_description": e.description}))).into_response();
    if e.error == "invalid_client" {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"gatehouse\""));
    }
    no_store(resp)
}

fn method_not_allowed() -> Response {
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({"error": "invalid_request", "error_description": "use POST"}))).into_response();
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    no_store(resp)
}

/// RFC 6749 §3.2 form parsing: urlencoded only; empty values dropped; duplicates rejected.
fn parse_form(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::new("invalid_request", "the body must be application/x-www-form-urlencoded"));
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(OAuthError::new("invalid_request", "the body is too large"));
    }
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            let name: String = k.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            return Err(OAuthError::new("invalid_request", format!("parameter {name} is repeated")));
        }
    }
    Ok(out)
}

/// Exactly one client authentication method (RFC 6749 §2.3). With HTTP Basic, a body
/// `client_id` naming another client is 400 `invalid_request` (RFC 6749 §3.2.1).
async fn authenticate_client(oauth: &OAuth, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<OAuthClient, OAuthError> {
    let auth: Vec<&HeaderValue> = headers.get_all(header::AUTHORIZATION).iter().collect();
    if auth.len() > 1 {
        return Err(OAuthError::new("invalid_request", "more than one Authorization header"));
    }
    if form.contains_key("client_secret") {
        return Err(OAuthError::new("invalid_request", "client_secret in the body is not supported; use HTTP Basic"));
    }
    let basic = match auth.first() {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| OAuthError::new("invalid_client", "client authentication failed"))?;
            match v.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => Some(rest.trim_start()),
                _ => return Err(OAuthError::new("invalid_client", "client authentication failed")),
            }
        }
    };
    let assertion = form.get("client_assertion");
    match (basic, assertion) {
        (Some(_), Some(_)) => Err(OAuthError::new("invalid_request", "use exactly one client authentication method")),
        (Some(b), None) => {
            let client = oauth.authenticate_basic(b).await?;
            // RFC 6749 §3.2.1 / §2.3.1: a body `client_id` next to HTTP Basic must name the same
            // client (checked after authentication, so a wrong secret stays `invalid_client`).
            if form.get("client_id").is_some_and(|c| c.parse::<gatehouse_types::Id>().ok() != Some(client.id)) {
                return Err(OAuthError::new("invalid_request", "client_id does not match the authenticated client"));
            }
            Ok(client)
        }
        (None, Some(a)) => {
            if form.get("client_assertion_type").map(String::as_str) != Some(gatehouse_oauth::JWT_BEARER_ASSERTION) {
                return Err(OAuthError::new("invalid_request", "client_assertion_type must be the RFC 7523 jwt-bearer type"));
            }
            let endpoint = format!("{}/oauth/token", oauth.issuer().trim_end_matches('/'));
            oauth.authenticate_assertion(form.get("client_id").map(String::as_str), a, &endpoint).await
        }
        (None, None) => Err(OAuthError::new("invalid_client", "client authentication failed")),
    }
}

async fn token(State(state): State<Arc<AppState>>, uri: http::Uri, extensions: http::Extensions, headers: HeaderMap, body: Bytes) -> Response {
    let oauth = &state.oauth;
    let result = async {
        let form = parse_form(&headers, &body)?;
        let client = authenticate_client(oauth, &headers, &form).await?;
        let grant = form.get("grant_type").ok_or_else(|| OAuthError::new("invalid_request", "grant_type is required"))?;
        match grant.as_str() {
            grant_types::CLIENT_CREDENTIALS => {
                // RFC 9449 §5: a DPoP proof (or `dpop_jkt`) binds the token to that key.
                let jkt = state.dpop.token_binding(&headers, &uri, &extensions, form.get("dpop_jkt").map(String::as_str)).await?;
                // RFC 8705 §3: certificate-bound clients get tokens bound to this connection's
                // client certificate.
                let binding = RequestBinding { dpop_jkt: jkt, client_cert_x5t: client_cert(&extensions) };
                oauth.client_credentials_with(&client, form.get("scope").map(String::as_str), binding).await.map(|r| r.to_json(false))
            }
            grant_types::TOKEN_EXCHANGE => {
                let g = |k: &str| form.get(k).cloned();
                let req = ExchangeRequest {
                    subject_token: g("subject_token"),
                    subject_token_type: g("subject_token_type"),
                    actor_token: g("actor_token"),
                    actor_token_type: g("actor_token_type"),
                    scope: g("scope"),
                    audience: g("audience"),
                    resource: g("resource"),
                    requested_token_type: g("requested_token_type"),
                    models: g("models"),
                    max_tokens: g("max_tokens"),
                    max_spend: g("max_spend"),
                    expires_in: g("expires_in"),
                    // H4: the subject's (and actor's) root key allow-list is checked against
                    // this address, with the data plane's trusted-proxy rules.
                    client_ip: {
                        let peer = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
                        let xff = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
                        gatehouse_auth::cidr::client_ip(peer, xff, &state.settings.trusted_proxies)
                    },
                };
                let jkt = state.dpop.token_binding(&headers, &uri, &extensions, form.get("dpop_jkt").map(String::as_str)).await?;
                let binding = RequestBinding { dpop_jkt: jkt, client_cert_x5t: client_cert(&extensions) };
                oauth.exchange_with(&client, &req, binding).await.map(|r| r.to_json(true))
            }
            _ => Err(OAuthError::new("unsupported_grant_type", "supported: client_credentials, token exchange")),
        }
    }
    .await;
    match result {
        Ok(v) => {
            let nonce = state.dpop.nonces().then(|| state.dpop.current_nonce());
            crate::dpop::with_nonce(no_store(axum::Json(v).into_response()), nonce)
        }
        // RFC 9449 §8: the nonce to use comes with the `use_dpop_nonce` error.
        Err(e) if e.error == "use_dpop_nonce" => crate::dpop::with_nonce(oauth_error(&e), Some(state.dpop.current_nonce())),
        Err(e) => oauth_error(&e),
    }
}

async fn revoke(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let oauth = &state.oauth;
    let result = async {
        let form = parse_form(&headers, &body)?;
        let client = authenticate_client(oauth, &headers, &form).await?;
        let token = form.get("token").ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
        oauth.revoke(token, &Caller::Client(Box::new(client))).await
    }
    .await;
    match result {
        // RFC 7009 §2.2: 200 with an empty body, also for unknown and foreign tokens.
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(&e),
    }
}

async fn introspect(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let oauth = &state.oauth;
    let result = async {
        let form = parse_form(&headers, &body)?;
        let client = authenticate_client(oauth, &headers, &form).await?;
        let token = form.get("token").ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
        oauth.introspect(token, &Caller::Client(Box::new(client))).await
    }
    .await;
    match result {
        Ok(v) => no_store(axum::Json(v).into_response()),
        Err(e) => oauth_error(&e),
    }
}

async fn metadata(State(state): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(with_mtls_support(&state, state.oauth.metadata()))
}

async fn resource_metadata(State(state): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(with_mtls_support(&state, state.oauth.resource_metadata()))
}

/// RFC 8705 §3.3/§3.4 `tls_client_certificate_bound_access_tokens` is true only where a client
/// certificate can reach this data plane: a TLS listener with a client CA, or a trusted
/// TLS-terminating proxy passing `Client-Cert`.
fn with_mtls_support(state: &AppState, mut doc: Value) -> Value {
    let possible = state.settings.client_certificates || !state.settings.trusted_proxies.is_empty();
    if let Some(flag) = doc.get_mut("tls_client_certificate_bound_access_tokens") {
        *flag = Value::Bool(possible);
    }
    doc
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = axum::Json(state.oauth.jwks()).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}
