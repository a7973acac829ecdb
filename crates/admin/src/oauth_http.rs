//! Admin endpoints of the token system (issue 5; RFC 6749 §2, RFC 7009, RFC 7662):
//!
//! * `POST /admin/v1/oauth-clients` `{"name", "app_id"?, "auth_method"?: "client_secret_basic" |
//!   "private_key_jwt", "public_jwk"?, "token_format"?: "opaque" | "jwt", "scopes"?, "models"?,
//!   "audiences"?, "access_ttl"?: "10m" | seconds}` → 201 `{…client, "client_secret":
//!   "gthc_…" | null}` (the secret is shown once; `Cache-Control: no-store`).
//! * `GET /admin/v1/oauth-clients[?include_revoked=true]` → `{"data": [client…]}`;
//!   `GET /admin/v1/oauth-clients/{id}` → client; `POST /admin/v1/oauth-clients/{id}/revoke` →
//!   client with `revoked_at` (every token it obtained stops working at once).
//!   Team-scoped (issue 7): creating needs `oauth_clients.write` on the app's team (the body's
//!   `app_id`), the list shows only the caller's teams' clients, and `{id}` routes are checked
//!   on the client's team by the route gate (outsiders 404, lower roles 403).
//! * `POST /admin/v1/tokens/revoke` `{"token", "token_type_hint"?}` → 200 `{"revoked": bool,
//!   "id"?, "kind"?}`: any API key or issued token of this deployment (RFC 7009 semantics: an
//!   unknown or inactive token is not an error; the operator learns whether something was
//!   revoked, a client at `/oauth/revoke` never does).
//! * `POST /admin/v1/tokens/introspect` `{"token", …}` → RFC 7662 §2.2 JSON (`{"active": false}`
//!   for anything unknown, expired, revoked or consumed).
//! * `POST /admin/v1/tokens/single-use` `{"name", "app_id"?, "scopes"?, "models"?,
//!   "expires_in"?}` → 201 `{"token": "gths_…", "id", "hint", "kind": "single_use", "scopes",
//!   "models", "app_id", "expires_at"}`: one successful data-plane call (G-9).
//!
//! Tokens in request bodies are never logged or echoed; errors name only the field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_types::ApiError;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::authz::{Permission, Principal};
use crate::http::{AdminError, body};
use crate::input::{Params, bad, parse_id};
use crate::service::AdminService;
use crate::service::oauth_clients::{CreateClientRequest, SingleUseRequest, token_from_json};

type Svc = State<Arc<AdminService>>;
type Result<T> = std::result::Result<T, AdminError>;

/// The routes of the module doc (nested under `/admin/v1`).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new()
        .route("/oauth-clients", post(create_client).get(list_clients))
        .route("/oauth-clients/{id}", get(get_client))
        .route("/oauth-clients/{id}/revoke", post(revoke_client))
        .route("/tokens/revoke", post(revoke_token))
        .route("/tokens/introspect", post(introspect_token))
        .route("/tokens/single-use", post(create_single_use))
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn create_client(State(svc): Svc, Extension(who): Extension<Principal>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let req = CreateClientRequest::from_json(&body(b)?)?;
    // issue 7: the app's team (the default app's without `app_id`), `oauth_clients.write`
    svc.authorize_app(&who, req.app_id, Permission::OAuthClientsWrite).await?;
    let (view, secret) = svc.create_oauth_client(req).await?;
    let mut value = serde_json::to_value(&view).map_err(|_| AdminError(ApiError::internal()))?;
    value["client_secret"] = match &secret {
        Some(s) => json!(s.expose_secret()),
        None => serde_json::Value::Null,
    };
    Ok(no_store((StatusCode::CREATED, axum::Json(value)).into_response()))
}

async fn list_clients(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response> {
    let Query(map) = q.map_err(|_| AdminError(bad("query", "the query string is malformed")))?;
    let p = Params(map);
    p.deny_unknown(&["include_revoked"])?;
    // issue 7: only the clients of teams where the caller has `oauth_clients.read`
    let visible = who.visible_teams(Permission::OAuthClientsRead);
    let mut data = svc.list_oauth_clients(p.bool("include_revoked")?).await?;
    data.retain(|c| visible.contains(c.team_id));
    Ok(axum::Json(json!({ "data": data })).into_response())
}

async fn get_client(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(svc.get_oauth_client(id).await?).into_response())
}

async fn revoke_client(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(svc.revoke_oauth_client(id).await?).into_response())
}

async fn revoke_token(State(svc): Svc, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let token = token_from_json(&body(b)?)?;
    let value = match svc.revoke_token(&token).await? {
        Some((id, kind)) => json!({ "revoked": true, "id": id, "kind": kind }),
        None => json!({ "revoked": false }),
    };
    Ok(no_store(axum::Json(value).into_response()))
}

async fn introspect_token(State(svc): Svc, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let token = token_from_json(&body(b)?)?;
    Ok(no_store(axum::Json(svc.introspect_token(&token).await?).into_response()))
}

async fn create_single_use(State(svc): Svc, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let req = SingleUseRequest::from_json(&body(b)?)?;
    let t = svc.create_single_use(req).await?;
    let r = &t.record;
    let value = json!({
        "token": t.access_token.expose_secret(),
        "id": r.id,
        "hint": r.hint,
        "kind": r.kind,
        "scopes": r.scopes,
        "models": r.models,
        "app_id": r.app_id,
        "expires_at": r.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    Ok(no_store((StatusCode::CREATED, axum::Json(value)).into_response()))
}
