//! Subscriptions of apps to services (issue 7), under `/admin/v1` (app deletion is
//! `tenancy_http.rs`; a deleted app's keys are revoked, so its subscriptions stop admitting):
//!
//! * `POST /subscriptions` — `{"app_id", "service" (id or slug), "reason"?, "expires_at"?}` →
//!   201. `auto` approval: `active` at once; `manual`: `pending`. 404 (the unknown-service
//!   answer) if the service is another team's draft or `team`-visibility service, 409 if the
//!   app's own team's service is not published/deprecated or if the app already has a
//!   pending/active subscription to it.
//! * `GET /subscriptions[?app_id&service_id&status]`, `GET /subscriptions/{id}` — `status`
//!   shows `expired` for an active subscription past `expires_at`.
//! * `POST /subscriptions/{id}/approve` — `{"reason"?, "expires_at"?}` pending → active.
//! * `POST /subscriptions/{id}/reject` — `{"reason"}` (required) pending → rejected.
//! * `POST /subscriptions/{id}/cancel` — `{"reason"?}` pending/active → cancelled.
//!
//! Authorization: the route gate (`Target::SubscriptionParam`: deciding needs
//! `subscriptions.decide` on the service's team, cancelling and reading `subscriptions.request`
//! / `apps.read` on the app's team); the request and list
//! handlers call [`crate::authz::authorize`].
//!
//! Decisions are compare-and-set (two deciders never both win: the loser gets 409). Each change
//! publishes `BusEvent::ServicesChanged`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_store::{
    App, ApprovalMode, BusEvent, ServiceStatus, StoreError, Subscription, SubscriptionFilter, SubscriptionStatus,
};
use gatehouse_types::{ApiError, ErrorCode, Id, new_id, now};
use serde_json::{Value, json};

use crate::apim::{Op, actor, authorize_team, find, internal, params};
use crate::authz::{Permission, Principal};
use crate::http::{Result, body};
use crate::input::{Fields, bad, parse_id};
use crate::service::AdminService;

type Svc = State<Arc<AdminService>>;

/// The subscription routes (mounted under `/admin/v1`).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new()
        .route("/subscriptions", post(request).get(list))
        .route("/subscriptions/{id}", get(show))
        .route("/subscriptions/{id}/approve", post(approve))
        .route("/subscriptions/{id}/reject", post(reject))
        .route("/subscriptions/{id}/cancel", post(cancel))
}

fn view(s: &Subscription) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({"id": s.id}));
    v["status"] = json!(s.effective_status(now()).as_str());
    v
}

async fn app(svc: &AdminService, id: Id) -> std::result::Result<App, ApiError> {
    svc.store()
        .get_app(id)
        .await
        .map_err(|e| internal("reading an app", &e))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "app not found").with_param("app_id"))
}

fn reason(f: &mut Fields, required: bool) -> std::result::Result<Option<String>, ApiError> {
    let r = f.opt_string("reason")?;
    if required && r.is_none() {
        return Err(bad("reason", "`reason` is required"));
    }
    if r.as_ref().is_some_and(|r| r.len() > 1000 || r.chars().any(|c| c.is_control() && c != '\n')) {
        return Err(bad("reason", "`reason` is at most 1000 bytes without control characters"));
    }
    Ok(r)
}

fn future(f: &mut Fields) -> std::result::Result<Option<gatehouse_types::Timestamp>, ApiError> {
    let at = f.opt_time("expires_at")?;
    if at.is_some_and(|t| t <= now()) {
        return Err(bad("expires_at", "`expires_at` must be in the future"));
    }
    Ok(at)
}

async fn request(State(svc): Svc, Extension(p): Op, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["app_id", "service", "reason", "expires_at"])?;
    let app_id = f.opt_id("app_id")?.ok_or_else(|| bad("app_id", "`app_id` is required"))?;
    let service_key = f.string("service")?;
    let why = reason(&mut f, false)?;
    let expires_at = future(&mut f)?;
    let a = app(&svc, app_id).await?;
    authorize_team(&p, a.team_id, Permission::SubscriptionsRequest, "app_id", "app")?;
    let s = find(&svc, &service_key).await.map_err(|e| e.with_param("service"))?;
    // Another team's draft or team-only service answers exactly like an unknown one (its
    // existence is not the caller's business); the own team's drafts keep their 409 below.
    if s.team_id != a.team_id && !crate::apim::in_catalog(&s) {
        return Err(ApiError::new(ErrorCode::NotFound, "service not found").with_param("service").into());
    }
    if !matches!(s.status, ServiceStatus::Published | ServiceStatus::Deprecated) {
        return Err(ApiError::new(ErrorCode::Conflict, format!("the service is {}; only published services take subscriptions", s.status.as_str())).with_param("service").into());
    }
    let at = now();
    let auto = s.approval == ApprovalMode::Auto;
    let sub = Subscription {
        id: new_id(),
        app_id,
        service_id: s.id,
        status: if auto { SubscriptionStatus::Active } else { SubscriptionStatus::Pending },
        reason: why,
        decided_by: auto.then(|| "auto".to_string()),
        expires_at,
        created_at: at,
        updated_at: at,
    };
    match svc.store().create_subscription(&sub).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(ErrorCode::Conflict, "the app already has a pending or active subscription to this service").with_param("service").into());
        }
        Err(e) => return Err(internal("creating a subscription", &e).into()),
    }
    svc.bus().publish(BusEvent::ServicesChanged);
    Ok((StatusCode::CREATED, axum::Json(view(&sub))).into_response())
}

async fn list(State(svc): Svc, Extension(p): Op, q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Response> {
    let q = params(q)?;
    q.deny_unknown(&["app_id", "service_id", "status"])?;
    let status = q
        .str("status")
        .map(|s| SubscriptionStatus::parse(s).ok_or_else(|| bad("status", format!("`status` must be one of: {}", SubscriptionStatus::NAMES.join(", ")))))
        .transpose()?;
    let filter = SubscriptionFilter {
        app_id: q.id("app_id")?,
        service_id: q.id("service_id")?,
        // `expired` rows are stored as active: filter after computing the effective status.
        status: status.filter(|s| *s != SubscriptionStatus::Expired && *s != SubscriptionStatus::Active),
    };
    let rows = svc.store().list_subscriptions(&filter).await.map_err(|e| internal("listing subscriptions", &e))?;
    // A subscription is visible to the app's team (apps.read) and the service's team
    // (services.read).
    let (apps_seen, services_seen) = (p.visible_teams(Permission::AppsRead), p.visible_teams(Permission::ServicesRead));
    let app_team: HashMap<Id, Id> = svc.store().list_apps(None).await.map_err(|e| internal("listing apps", &e))?.into_iter().map(|a| (a.id, a.team_id)).collect();
    let service_team: HashMap<Id, Id> = svc.store().list_services(None).await.map_err(|e| internal("listing services", &e))?.into_iter().map(|s| (s.id, s.team_id)).collect();
    let at = now();
    let data: Vec<Value> = rows
        .iter()
        .filter(|s| {
            app_team.get(&s.app_id).is_some_and(|t| apps_seen.contains(*t))
                || service_team.get(&s.service_id).is_some_and(|t| services_seen.contains(*t))
        })
        .filter(|s| status.is_none_or(|st| s.effective_status(at) == st))
        .map(view)
        .collect();
    Ok(axum::Json(json!({"data": data})).into_response())
}

/// The team the route gate checks for a subscription: the service's team for decisions
/// (`subscriptions.decide`), the app's team otherwise. `None` if there is no such subscription.
pub async fn subscription_team(svc: &AdminService, id: Id, permission: Permission) -> std::result::Result<Option<Id>, ApiError> {
    let Some(s) = svc.store().get_subscription(id).await.map_err(|e| internal("reading a subscription", &e))? else { return Ok(None) };
    if permission == Permission::SubscriptionsDecide {
        let service = svc.store().get_service(s.service_id).await.map_err(|e| internal("reading a service", &e))?;
        Ok(service.map(|x| x.team_id))
    } else {
        // a deleted app's subscription stays readable by nobody but system admins
        Ok(svc.store().get_app(s.app_id).await.map_err(|e| internal("reading an app", &e))?.map(|a| a.team_id))
    }
}

async fn load(svc: &AdminService, id: &str) -> std::result::Result<Subscription, ApiError> {
    let id = parse_id(id, "id")?;
    svc.store()
        .get_subscription(id)
        .await
        .map_err(|e| internal("reading a subscription", &e))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "subscription not found"))
}

async fn show(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let s = load(&svc, &id).await?;
    Ok(axum::Json(view(&s)).into_response())
}

/// Moves a subscription from one of `from` to `to`, compare-and-set.
async fn decide(
    svc: &AdminService,
    p: &Principal,
    mut s: Subscription,
    from: &[SubscriptionStatus],
    to: SubscriptionStatus,
    why: Option<String>,
    expires_at: Option<gatehouse_types::Timestamp>,
) -> std::result::Result<Subscription, ApiError> {
    let current = s.status;
    if !from.contains(&current) {
        return Err(ApiError::new(ErrorCode::Conflict, format!("the subscription is {}", s.effective_status(now()).as_str())));
    }
    s.status = to;
    if why.is_some() {
        s.reason = why;
    }
    if expires_at.is_some() {
        s.expires_at = expires_at;
    }
    s.decided_by = Some(actor(p));
    s.updated_at = now();
    match svc.store().update_subscription(&s, current).await {
        Ok(true) => {
            svc.bus().publish(BusEvent::ServicesChanged);
            Ok(s)
        }
        Ok(false) => Err(ApiError::new(ErrorCode::Conflict, "the subscription was decided concurrently; reload it")),
        Err(e) => Err(internal("updating a subscription", &e)),
    }
}

fn opt_body(b: std::result::Result<Bytes, BytesRejection>, allowed: &[&str]) -> std::result::Result<Fields, crate::http::AdminError> {
    let bytes = body(b)?;
    let f = if bytes.iter().all(u8::is_ascii_whitespace) { Fields::from_value(json!({}), "")? } else { Fields::from_body(&bytes)? };
    f.deny_unknown(allowed)?;
    Ok(f)
}

async fn approve(State(svc): Svc, Extension(p): Op, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let s = load(&svc, &id).await?;
    let mut f = opt_body(b, &["reason", "expires_at"])?;
    let why = reason(&mut f, false)?;
    let exp = future(&mut f)?;
    // a service retired while the request waited can no longer be subscribed to
    let service = svc.store().get_service(s.service_id).await.map_err(|e| internal("reading a service", &e))?;
    if service.is_some_and(|x| x.status == gatehouse_store::ServiceStatus::Retired) {
        return Err(ApiError::new(ErrorCode::Conflict, "the service is retired: reject or cancel the request").into());
    }
    let s = decide(&svc, &p, s, &[SubscriptionStatus::Pending], SubscriptionStatus::Active, why, exp).await?;
    Ok(axum::Json(view(&s)).into_response())
}

async fn reject(State(svc): Svc, Extension(p): Op, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let s = load(&svc, &id).await?;
    let mut f = opt_body(b, &["reason"])?;
    let why = reason(&mut f, true)?;
    let s = decide(&svc, &p, s, &[SubscriptionStatus::Pending], SubscriptionStatus::Rejected, why, None).await?;
    Ok(axum::Json(view(&s)).into_response())
}

async fn cancel(State(svc): Svc, Extension(p): Op, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let s = load(&svc, &id).await?;
    let mut f = opt_body(b, &["reason"])?;
    let why = reason(&mut f, false)?;
    let s = decide(&svc, &p, s, &[SubscriptionStatus::Pending, SubscriptionStatus::Active], SubscriptionStatus::Cancelled, why, None).await?;
    Ok(axum::Json(view(&s)).into_response())
}
