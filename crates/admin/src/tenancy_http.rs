//! Tenancy endpoints of the admin API (issue 7). Authorization: the route gate
//! ([`crate::authz_http::ROUTES`]) for everything scoped by the path; the handlers here check
//! the rest (team from the body). Errors in the admin shape.
//!
//! * `POST /admin/v1/session` `{"username","password"}` → 201 `{"user","expires_at","csrf_token"}`
//!   and `Set-Cookie: gatehouse_session=<opaque>; HttpOnly; Secure; SameSite=Strict; Path=/admin;
//!   Max-Age=43200`. Wrong username or password → 401 (one message); too many failures for the
//!   username or the client IP → 429 `rate_limit_exceeded` + `Retry-After`
//!   ([`crate::service::login_guard`]). No credential needed. State-changing requests with the
//!   cookie must send `X-CSRF-Token: <csrf_token>` ([`crate::csrf`]).
//! * `DELETE /admin/v1/session` → 200 `{"logged_out":true}`, ends the cookie's session (server
//!   side) and clears the cookie; with an operator token → 400.
//! * `GET /admin/v1/me` → `{"user","auth","memberships":[{"team_id","team","role"}],
//!   "csrf_token"?}` (`csrf_token` for a cookie session).
//! * `POST /admin/v1/me/tokens` `{"name","expires_in"?}` → 201 `{"token" (once),"id","hint",…}`.
//! * `GET|POST /admin/v1/users`, `PATCH /admin/v1/users/{id}` `{"password"?,"system_role"?}`.
//! * `POST /admin/v1/teams` `{"name","owner"?}`, `GET /admin/v1/teams/{id}`,
//!   `GET /admin/v1/teams/{id}/members`, `PUT|DELETE /admin/v1/teams/{id}/members/{user_id}`
//!   (`{"role"}`).
//! * `POST /admin/v1/apps` `{"team_id","name"}` → 201, `GET /admin/v1/apps/{id}`,
//!   `DELETE /admin/v1/apps/{id}` → `{"deleted":true,"id","revoked_keys","cancelled_subscriptions",
//!   "revoked_oauth_clients","revoked_tokens"}` (soft delete; keys, subscriptions, OAuth clients
//!   and issued tokens of the app end at once).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use gatehouse_types::{ApiError, ErrorCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::authz::{AuthMethod, Permission, Principal, Scope, SystemRole, TeamRole, authorize};
use crate::http::{AdminError, body};
use crate::input::{Fields, bad, parse_id};
use crate::service::AdminService;
use crate::csrf::SessionCsrf;
use crate::service::login_guard::LoginClient;
use crate::service::tenancy::{SESSION_COOKIE, SESSION_TTL};

type Svc = State<Arc<AdminService>>;
type Body = Result<Bytes, BytesRejection>;
type Res = Result<Response, AdminError>;

/// Routes that need a principal (mounted inside the authentication layer).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new()
        .route("/session", post(login).delete(logout))
        .route("/me", get(me))
        .route("/me/tokens", post(create_own_token))
        .route("/me/password", post(change_own_password))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", patch(update_user))
        .route("/teams", post(create_team))
        .route("/teams/{id}", get(get_team))
        .route("/teams/{id}/members", get(list_members))
        .route("/teams/{id}/members/{user_id}", put(set_member).delete(remove_member))
        .route("/apps", post(create_app))
        .route("/apps/{id}", get(get_app).delete(delete_app))
}

/// `POST /admin/v1/session` (login; no credential, so mounted outside the authentication layer).
/// The client IP for throttling is the socket peer, or `X-Forwarded-For` behind a trusted proxy.
pub async fn login(
    State(svc): Svc,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    b: Body,
) -> Res {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["username", "password"])?;
    let username = f.string("username")?;
    let password = secret(&mut f, "password")?.ok_or_else(|| bad("password", "`password` is required"))?;
    let xff = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let client = LoginClient {
        ip: gatehouse_auth::cidr::client_ip(peer.map(|Extension(ConnectInfo(a))| a.ip()), xff, svc.trusted_proxies()),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect()),
    };
    let s = svc.login(&username, password, &client).await?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; Secure; SameSite=Strict; Path=/admin; Max-Age={}",
        s.cookie_value.expose_secret(),
        SESSION_TTL.as_secs()
    );
    let expires = s.session.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let csrf = svc.csrf_token(s.cookie_value.expose_secret());
    let mut resp =
        (StatusCode::CREATED, axum::Json(json!({"user": s.user, "expires_at": expires, "csrf_token": csrf}))).into_response();
    let v = HeaderValue::from_str(&cookie).map_err(|_| AdminError(ApiError::internal()))?;
    resp.headers_mut().insert(header::SET_COOKIE, v);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The session cookie's value from `Cookie` headers, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn logout(State(svc): Svc, Extension(p): Extension<Principal>) -> Res {
    let AuthMethod::Session(id) = p.via else {
        return Err(AdminError(bad("session", "this request is authenticated by an operator token, not a session")));
    };
    svc.logout(id).await?;
    let mut resp = axum::Json(json!({"logged_out": true})).into_response();
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/admin; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /admin/v1/me`; for a cookie session also `csrf_token` (the `X-CSRF-Token` value).
async fn me(State(svc): Svc, Extension(p): Extension<Principal>, csrf: Option<Extension<SessionCsrf>>) -> Res {
    let mut v = serde_json::to_value(svc.me(&p).await?).map_err(|_| AdminError(ApiError::internal()))?;
    if let Some(Extension(SessionCsrf(t))) = csrf {
        v["csrf_token"] = json!(t);
    }
    Ok(axum::Json(v).into_response())
}

/// Lifetime of a `/me/tokens` operator token without `expires_in` (token-security.md §2.5).
const OWN_TOKEN_DEFAULT_DAYS: i64 = 90;
/// Longest `/me/tokens` lifetime: a session can never mint a permanent credential.
const OWN_TOKEN_MAX_DAYS: i64 = 365;

/// `POST /admin/v1/me/password` `{"current_password", "new_password"}` → 200 the user: the
/// caller changes their own password; the current one is checked (throttled and audited like a
/// login), every other session and operator token of the user ends, the calling one survives.
async fn change_own_password(
    State(svc): Svc,
    Extension(p): Extension<Principal>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    b: Body,
) -> Res {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["current_password", "new_password"])?;
    let current = secret(&mut f, "current_password")?.ok_or_else(|| bad("current_password", "`current_password` is required"))?;
    let new = secret(&mut f, "new_password")?.ok_or_else(|| bad("new_password", "`new_password` is required"))?;
    let xff = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let client = LoginClient {
        ip: gatehouse_auth::cidr::client_ip(peer.map(|Extension(ConnectInfo(a))| a.ip()), xff, svc.trusted_proxies()),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect()),
    };
    svc.check_own_password(p.user_id, current, &client).await?;
    Ok(axum::Json(svc.update_user(p.user_id, Some(new), None, Some(p.via)).await?).into_response())
}

async fn create_own_token(State(svc): Svc, Extension(p): Extension<Principal>, b: Body) -> Res {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["name", "expires_in"])?;
    let name = f.string("name")?;
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(AdminError(bad("name", "`name` must be 1-128 characters without control characters")));
    }
    let expires_at = match f.take("expires_in") {
        None => Some(gatehouse_types::now() + time::Duration::days(OWN_TOKEN_DEFAULT_DAYS)),
        Some(Value::String(s)) => {
            let d = gatehouse_config::parse_duration_str(&s).map_err(|e| bad("expires_in", e))?;
            if d.is_zero() || d > std::time::Duration::from_secs(OWN_TOKEN_MAX_DAYS as u64 * 86_400) {
                return Err(AdminError(bad("expires_in", "`expires_in` must be between 1s and 365d")));
            }
            let d = time::Duration::try_from(d).map_err(|_| bad("expires_in", "`expires_in` is too large"))?;
            Some(gatehouse_types::now() + d)
        }
        Some(_) => return Err(AdminError(bad("expires_in", "`expires_in` must be a duration such as \"90d\""))),
    };
    let t = svc.create_operator_token_for(p.user_id, name, expires_at).await?;
    let mut v = serde_json::to_value(&t.record).map_err(|_| AdminError(ApiError::internal()))?;
    v["token"] = json!(t.token.expose_secret());
    let mut resp = (StatusCode::CREATED, axum::Json(v)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn list_users(State(svc): Svc) -> Res {
    Ok(axum::Json(json!({"data": svc.list_users().await?})).into_response())
}

fn secret(f: &mut Fields, key: &str) -> Result<Option<SecretString>, ApiError> {
    match f.take(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(SecretString::from(s))),
        Some(_) => Err(bad(key, format!("`{key}` must be a string"))),
    }
}

fn system_role(f: &mut Fields) -> Result<Option<SystemRole>, ApiError> {
    match f.opt_string("system_role")? {
        None => Ok(None),
        Some(s) => SystemRole::parse(&s)
            .map(Some)
            .ok_or_else(|| bad("system_role", "`system_role` must be `admin` or `member`")),
    }
}

async fn create_user(State(svc): Svc, b: Body) -> Res {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["username", "password", "system_role"])?;
    let username = f.string("username")?;
    let password = secret(&mut f, "password")?.ok_or_else(|| bad("password", "`password` is required"))?;
    let role = system_role(&mut f)?.unwrap_or(SystemRole::Member);
    let user = svc.create_user(username, password, role).await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

async fn update_user(State(svc): Svc, Extension(p): Extension<Principal>, Path(id): Path<String>, b: Body) -> Res {
    let id = parse_id(&id, "id")?;
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["password", "system_role"])?;
    let password = secret(&mut f, "password")?;
    let role = system_role(&mut f)?;
    // the caller's own token or session survives a password change it makes
    Ok(axum::Json(svc.update_user(id, password, role, Some(p.via)).await?).into_response())
}

async fn create_team(State(svc): Svc, b: Body) -> Res {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["name", "owner"])?;
    let name = f.string("name")?;
    let owner = f.opt_id("owner")?;
    Ok((StatusCode::CREATED, axum::Json(svc.create_team(name, owner).await?)).into_response())
}

async fn get_team(State(svc): Svc, Path(id): Path<String>) -> Res {
    Ok(axum::Json(svc.get_team(parse_id(&id, "id")?).await?).into_response())
}

async fn list_members(State(svc): Svc, Path(id): Path<String>) -> Res {
    Ok(axum::Json(json!({"data": svc.list_members(parse_id(&id, "id")?).await?})).into_response())
}

async fn set_member(State(svc): Svc, Extension(p): Extension<Principal>, Path((id, user)): Path<(String, String)>, b: Body) -> Res {
    let (team_id, user_id) = (parse_id(&id, "id")?, parse_id(&user, "user_id")?);
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["role"])?;
    let role_s = f.string("role")?;
    let role = TeamRole::parse(&role_s)
        .ok_or_else(|| bad("role", "`role` must be one of owner, admin, developer, viewer"))?;
    let (view, created) = svc.set_member(&p, team_id, user_id, role).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(view)).into_response())
}

async fn remove_member(State(svc): Svc, Extension(p): Extension<Principal>, Path((id, user)): Path<(String, String)>) -> Res {
    let (team_id, user_id) = (parse_id(&id, "id")?, parse_id(&user, "user_id")?);
    svc.remove_member(&p, team_id, user_id).await?;
    Ok(axum::Json(json!({"deleted": true, "team_id": team_id, "user_id": user_id})).into_response())
}

async fn create_app(State(svc): Svc, Extension(p): Extension<Principal>, b: Body) -> Res {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["team_id", "name"])?;
    let name = f.string("name")?;
    let team_id = f.opt_id("team_id")?.ok_or_else(|| bad("team_id", "`team_id` is required"))?;
    authorize(&p, Scope::Team(team_id), Permission::AppsWrite).map_err(|e| {
        // a team the caller cannot see reads as a missing team, naming the field
        if e.code == ErrorCode::NotFound { ApiError::new(ErrorCode::NotFound, "team not found").with_param("team_id") } else { e }
    })?;
    Ok((StatusCode::CREATED, axum::Json(svc.create_app(team_id, name).await?)).into_response())
}

async fn get_app(State(svc): Svc, Path(id): Path<String>) -> Res {
    Ok(axum::Json(svc.get_app(parse_id(&id, "id")?).await?).into_response())
}

/// `DELETE /admin/v1/apps/{id}` → 200 `{"deleted": true, "id", "revoked_keys",
/// "cancelled_subscriptions", "revoked_oauth_clients", "revoked_tokens"}` (counts; the gate has
/// authorized `apps.write` on the app's team; the cascade is [`AdminService::delete_app`]).
async fn delete_app(State(svc): Svc, Path(id): Path<String>) -> Res {
    let id = parse_id(&id, "id")?;
    let d = svc.delete_app(id).await?;
    Ok(axum::Json(json!({
        "deleted": true,
        "id": id,
        "revoked_keys": d.revoked_keys,
        "cancelled_subscriptions": d.cancelled_subscriptions,
        "revoked_oauth_clients": d.revoked_oauth_clients,
        "revoked_tokens": d.revoked_tokens,
    }))
    .into_response())
}
