//! The `/admin/v1` REST API (contracts.md "Admin API") plus `/healthz` and `/readyz`.
//!
//! Layers, outermost first, on `/admin/v1/*` (matched routes, the 404 fallback and 405s alike):
//! 1. `operator_auth`: `Authorization: Bearer <operator token>` (scheme case-insensitive);
//!    missing → 401 with `WWW-Authenticate: Bearer realm="gatehouse-admin"`, malformed or a
//!    second header → 400, unknown/revoked → 401 `error="invalid_token"`. Without an
//!    `Authorization` header, the portal session cookie; a state-changing cookie request must
//!    pass the CSRF check ([`crate::csrf`], 403 `csrf_failed`). Adds
//!    `Cache-Control: no-store` to every answer (responses may carry a key shown once).
//! 2. the handler: extract → service → map to JSON.
//!
//! Errors are `{"error":{"message","type","code","param"?}}` with the status of the shared
//! [`ErrorCode`] table.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_auth::extract::{Scheme, extract_authorization};
use gatehouse_types::{ApiError, ErrorCode};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::authz::{Permission, Principal, Scope, Visible, authorize};
use crate::input::{Params, bad, parse_id};
use crate::service::{
    AdminService, CreateKeyRequest, UpsertModelRequest, UpsertProviderRequest, log_query_from_params,
};

type Svc = State<Arc<AdminService>>;

/// An [`ApiError`] answered in the admin shape.
pub struct AdminError(pub ApiError);

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut body = json!({"error": {"message": e.message, "type": e.code.error_type(), "code": e.code.as_str()}});
        if let Some(p) = &e.param {
            body["error"]["param"] = json!(p);
        }
        let mut resp = (e.code.status(), axum::Json(body)).into_response();
        let challenge = match e.code {
            ErrorCode::MissingCredential => Some("Bearer realm=\"gatehouse-admin\""),
            ErrorCode::InvalidToken => Some("Bearer realm=\"gatehouse-admin\", error=\"invalid_token\""),
            _ => None,
        };
        if let Some(c) = challenge {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(s) = e.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

pub(crate) type Result<T> = std::result::Result<T, AdminError>;

/// The admin router: `/healthz`, `/readyz` (no auth) and `/admin/v1/*` (operator token).
pub fn router(service: Arc<AdminService>) -> Router {
    router_with(service, Router::new())
}

/// [`router`] plus `extra` routes below `/admin/v1`, behind the same authentication, audit and
/// route gate (the server adds the gateway's routing-health routes this way, issue 6). Their
/// rows are in `authz_http::ROUTES` and their operations in the OpenAPI document like every
/// other route; a route added here without a row is `Unlisted` (system admins only) and fails
/// `tests/live_routes.rs`.
pub fn router_with(service: Arc<AdminService>, extra: Router<Arc<AdminService>>) -> Router {
    let api = Router::new()
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}", get(get_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/providers", post(upsert_provider).get(list_providers))
        .route("/providers/{name}", axum::routing::delete(delete_provider))
        .route("/models", post(upsert_model).get(list_models))
        .route("/models/{name}", axum::routing::delete(delete_model))
        .route("/logs", get(query_logs))
        .route("/teams", get(list_teams))
        .route("/apps", get(list_apps))
        .route("/keys/{id}/rotate", post(crate::security_http::rotate_key))
        .route("/credentials/report-leak", post(crate::security_http::report_leak))
        .route("/audit", get(crate::audit::query_audit))
        .route("/audit/verify", get(crate::audit::verify_audit))
        .merge(crate::limits::routes())
        .merge(crate::oauth_http::routes())
        .merge(crate::tenancy_http::routes())
        .route("/openapi.json", get(crate::openapi::serve))
        .merge(extra)
        .merge(crate::cache::routes())
        .merge(crate::apim::routes())
        .merge(crate::subscriptions::routes())
        .merge(crate::team_config::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost: the route gate (issue 7) authorizes the principal for the matched route.
        .layer(middleware::from_fn_with_state(service.clone(), crate::authz_http::gate))
        // Repeated query parameters → 400 (after authentication, before any handler).
        .layer(middleware::from_fn(crate::query_guard::reject_repeated))
        // Inside operator_auth: sees the authenticated operator; records mutating requests.
        .layer(middleware::from_fn_with_state(service.clone(), crate::audit::record_admin_action))
        .layer(middleware::from_fn_with_state(service.clone(), operator_auth))
        .with_state(service.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/admin/v1", api)
        .fallback(not_found)
        .with_state(service)
}

async fn operator_auth(State(svc): Svc, request: Request, next: Next) -> Response {
    if crate::authz_http::is_public(request.method(), request.uri().path()) {
        let mut resp = next.run(request).await;
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    let cookie = crate::tenancy_http::session_cookie(request.headers());
    let mut csrf = None;
    let verdict = match extract_authorization(request.headers()) {
        // No Authorization header but a portal session cookie (issue 7); state-changing
        // requests must also pass the CSRF check (M8, `crate::csrf`).
        Ok(None) if cookie.is_some() => {
            let value = cookie.unwrap_or_default();
            match svc.authenticate_session(&value).await {
                Ok(p) => crate::csrf::check(&svc, request.method(), request.uri(), request.headers(), &value).map(|()| {
                    csrf = Some(crate::csrf::SessionCsrf(svc.csrf_token(&value)));
                    (p.user_id, p)
                }),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(ApiError::new(ErrorCode::InvalidCredentialRequest, e.to_string())),
        Ok(None) => Err(ApiError::new(
            ErrorCode::MissingCredential,
            "an operator token is required: Authorization: Bearer <token>",
        )),
        Ok(Some(c)) if c.scheme != Scheme::Bearer => {
            Err(ApiError::new(ErrorCode::InvalidToken, "the admin API accepts only Bearer operator tokens"))
        }
        Ok(Some(c)) => match svc.authenticate_operator(c.token).await {
            Ok(t) => svc.principal_for_token(&t).await.map(|p| (t.id, p)),
            Err(e) => Err(e),
        },
    };
    let mut request = request;
    let mut resp = match verdict {
        Ok((operator, principal)) => {
            request.extensions_mut().insert(crate::audit::OperatorId(operator));
            request.extensions_mut().insert(principal);
            if let Some(c) = csrf {
                request.extensions_mut().insert(c);
            }
            next.run(request).await
        }
        Err(e) => AdminError(e).into_response(),
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn not_found() -> AdminError {
    AdminError(ApiError::new(ErrorCode::NotFound, "no such route"))
}

async fn method_not_allowed() -> AdminError {
    AdminError(ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route"))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(svc): Svc) -> Response {
    match svc.store().ping().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe: store unavailable");
            AdminError(ApiError::new(ErrorCode::Unavailable, "the store is not reachable")).into_response()
        }
    }
}

pub(crate) fn body(b: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    b.map_err(|e| {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { ErrorCode::PayloadTooLarge } else { ErrorCode::InvalidRequest };
        AdminError(ApiError::new(code, "the request body could not be read").with_param("body"))
    })
}

fn params(q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Params> {
    q.map(|Query(m)| Params(m))
        .map_err(|_| AdminError(bad("query", "the query string is malformed")))
}

async fn create_key(State(svc): Svc, Extension(p): Extension<Principal>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let req = CreateKeyRequest::from_json(&body(b)?)?;
    svc.authorize_app(&p, req.app_id, Permission::KeysWrite).await?;
    let created = svc.create_key(req).await?;
    let mut value = serde_json::to_value(&created.view).map_err(|_| AdminError(ApiError::internal()))?;
    value["key"] = json!(created.key.expose_secret());
    let mut resp = (StatusCode::CREATED, axum::Json(value)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn list_keys(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response> {
    let p = params(q)?;
    p.deny_unknown(&["app_id", "include_revoked"])?;
    let app_id = p.id("app_id")?;
    if app_id.is_some() {
        svc.authorize_app(&who, app_id, Permission::KeysRead).await?;
    }
    let visible = who.visible_teams(Permission::KeysRead);
    let mut data = svc.list_keys(app_id, p.bool("include_revoked")?).await?;
    data.retain(|k| visible.contains(k.team_id));
    Ok(axum::Json(json!({ "data": data })).into_response())
}

async fn get_key(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(svc.get_key(id).await?).into_response())
}

async fn revoke_key(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(svc.revoke_key(id).await?).into_response())
}

async fn upsert_provider(State(svc): Svc, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let req = UpsertProviderRequest::from_json(&body(b)?)?;
    let (view, created) = svc.upsert_provider(req).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(view)).into_response())
}

async fn list_providers(State(svc): Svc) -> Result<Response> {
    Ok(axum::Json(json!({ "data": svc.list_providers().await? })).into_response())
}

async fn delete_provider(State(svc): Svc, Path(name): Path<String>) -> Result<Response> {
    svc.delete_provider(&name).await?;
    Ok(axum::Json(json!({ "deleted": true, "name": name })).into_response())
}

async fn upsert_model(State(svc): Svc, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let req = UpsertModelRequest::from_json(&body(b)?)?;
    let (view, created) = svc.upsert_model(req).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(view)).into_response())
}

async fn list_models(State(svc): Svc) -> Result<Response> {
    Ok(axum::Json(json!({ "data": svc.list_models().await? })).into_response())
}

async fn delete_model(State(svc): Svc, Path(name): Path<String>) -> Result<Response> {
    svc.delete_model(&name).await?;
    Ok(axum::Json(json!({ "deleted": true, "name": name })).into_response())
}

async fn query_logs(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response> {
    let mut query = log_query_from_params(&params(q)?)?;
    match (query.team_id, who.visible_teams(Permission::LogsRead)) {
        (Some(t), _) => authorize(&who, Scope::Team(t), Permission::LogsRead)?,
        (None, Visible::All) => {}
        (None, Visible::Teams(teams)) => match teams.as_slice() {
            [] => return Ok(axum::Json(json!({ "data": [], "next_before": null })).into_response()),
            [only] => query.team_id = Some(*only),
            _ => return Err(AdminError(bad("team_id", "you belong to several teams: name one with `team_id`"))),
        },
    }
    Ok(axum::Json(svc.query_logs(query).await?).into_response())
}

async fn list_teams(State(svc): Svc, Extension(who): Extension<Principal>) -> Result<Response> {
    let visible = who.visible_teams(Permission::TeamsList);
    let mut data = svc.list_teams().await?;
    data.retain(|t| visible.contains(t.id));
    Ok(axum::Json(json!({ "data": data })).into_response())
}

async fn list_apps(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response> {
    let p = params(q)?;
    p.deny_unknown(&["team_id"])?;
    let team_id = p.id("team_id")?;
    if let Some(t) = team_id {
        authorize(&who, Scope::Team(t), Permission::AppsRead)?;
    }
    let visible = who.visible_teams(Permission::AppsRead);
    let mut data = svc.list_apps(team_id).await?;
    data.retain(|a| visible.contains(a.team_id));
    Ok(axum::Json(json!({ "data": data })).into_response())
}
