//! `/admin/v1/limits` (issue 6): rate limits, token quotas and spend budgets per team, app,
//! key or model, and usage against each.
//!
//! * `POST /admin/v1/limits` — body `{"scope": "team"|"app"|"key"|"model", "id": "<uuid or
//!   model name>", "model"?: "<public model>", "rpm"?, "concurrent"?, "tpm"?,
//!   "tokens_per_day"?, "tokens_per_month"? (non-negative integers), "usd_per_day"?,
//!   "usd_per_month"? (non-negative USD numbers, kept to the micro-dollar)}`. Sets the given
//!   fields on the row for (scope, id, model), creating it if needed; an absent field keeps its
//!   value, `null` removes that limit. 201 when created, 200 when updated. Publishes
//!   `BusEvent::LimitsChanged`.
//! * `GET /admin/v1/limits` — `{"data": [ {id, scope, scope_id, model, created_at,
//!   updated_at, limits: {"rpm": {"limit", "used", "remaining", "reset_ms"}, …}} ]}`; spend as
//!   USD numbers. Usage is read from the shared counters (0 when the counters are unreachable,
//!   with `"usage_available": false`).
//! * `DELETE /admin/v1/limits/{id}` — removes a row (404 if none).
//!
//! Team scoping (issue 7): a row of scope team/app/key belongs to that team / the app's team /
//! the key's team ([`limit_team`]); model-scope rows are installation-wide. Setting needs
//! `limits.write` on the row's team (outsiders 404 like an unknown id, lower roles 403;
//! model rows: system admins only), the list shows the rows of teams where the caller has
//! `limits.read` (model rows only to system admins), deleting is checked by the route gate
//! (`Target::LimitParam`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use gatehouse_store::counters::limit_buckets;
use gatehouse_store::{BusEvent, Limit, LimitScope};
use gatehouse_types::{ApiError, ErrorCode, Id, new_id, now};
use serde_json::{Map, Value, json};

use crate::authz::{Permission, Principal, Scope, authorize};
use crate::http::{AdminError, Result, body};
use crate::input::{bad, parse_id};
use crate::service::AdminService;

type Svc = State<Arc<AdminService>>;

/// The limits routes (mounted under `/admin/v1`, behind the operator token).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new()
        .route("/limits", get(list_limits).post(set_limit))
        .route("/limits/{id}", delete(delete_limit))
}

const FIELDS: [&str; 11] = [
    "scope",
    "id",
    "model",
    "rpm",
    "concurrent",
    "tpm",
    "tokens_per_day",
    "tokens_per_month",
    "usd_per_day",
    "usd_per_month",
    "scope_id",
];

/// Largest accepted limit value (fits every backend's signed 64-bit column).
const MAX_VALUE: u64 = i64::MAX as u64;
/// Largest accepted USD amount (a trillion).
const MAX_USD: f64 = 1e12;

/// A change to one metric: keep, clear or set.
enum Change {
    Keep,
    Clear,
    Set(u64),
}

fn integer(map: &Map<String, Value>, key: &str) -> std::result::Result<Change, ApiError> {
    match map.get(key) {
        None => Ok(Change::Keep),
        Some(Value::Null) => Ok(Change::Clear),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_VALUE => Ok(Change::Set(n)),
            _ => Err(bad(
                key,
                format!("`{key}` must be a non-negative integer or null"),
            )),
        },
    }
}

fn usd(map: &Map<String, Value>, key: &str) -> std::result::Result<Change, ApiError> {
    match map.get(key) {
        None => Ok(Change::Keep),
        Some(Value::Null) => Ok(Change::Clear),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && (0.0..=MAX_USD).contains(&x) => {
                Ok(Change::Set((x * 1_000_000.0).round() as u64))
            }
            _ => Err(bad(
                key,
                format!("`{key}` must be a non-negative number of USD (at most 1e12) or null"),
            )),
        },
    }
}

fn apply(change: Change, slot: &mut Option<u64>) {
    match change {
        Change::Keep => {}
        Change::Clear => *slot = None,
        Change::Set(v) => *slot = Some(v),
    }
}

fn text<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    required: bool,
) -> std::result::Result<Option<&'a str>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(bad(key, format!("`{key}` is required"))),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => Ok(Some(s)),
        Some(_) => Err(bad(
            key,
            format!("`{key}` must be a non-empty string of at most 200 bytes"),
        )),
    }
}

/// The team owning a limit target: `Some(team)` for team/app/key scopes (`None` inside when the
/// team, app or key does not exist), and `None` for the model scope (installation-wide).
async fn target_team(svc: &AdminService, scope: LimitScope, id: Id) -> std::result::Result<Option<Option<Id>>, AdminError> {
    let store = svc.store();
    let team = match scope {
        LimitScope::Model => return Ok(None),
        LimitScope::Team => store.get_team(id).await.map(|t| t.map(|t| t.id)),
        LimitScope::App => store.get_app(id).await.map(|a| a.map(|a| a.team_id)),
        _ => store.get_credential(id).await.map(|c| c.map(|c| c.team_id)),
    }
    .map_err(|e| internal(&e))?;
    Ok(Some(team))
}

/// The team of limit row `id` for the route gate: `None` if there is no such row (or its
/// target is gone), `Some(None)` for a model-scope row, `Some(Some(team))` otherwise.
pub async fn limit_team(svc: &AdminService, id: Id) -> std::result::Result<Option<Option<Id>>, ApiError> {
    let rows = svc.store().list_limits().await.map_err(|e| internal(&e).0)?;
    let Some(l) = rows.into_iter().find(|l| l.id == id) else { return Ok(None) };
    row_team(svc, &l).await.map_err(|e| e.0)
}

async fn row_team(svc: &AdminService, l: &Limit) -> std::result::Result<Option<Option<Id>>, AdminError> {
    match l.scope {
        LimitScope::Model => Ok(Some(None)),
        scope => match Id::parse_str(&l.scope_id) {
            Ok(id) => Ok(target_team(svc, scope, id).await?.flatten().map(Some)),
            Err(_) => Ok(None),
        },
    }
}

async fn set_limit(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let bytes = body(b)?;
    let map = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad("body", "the request body must be a JSON object").into()),
        Err(e) => {
            return Err(bad(
                "body",
                format!(
                    "the request body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
            .into());
        }
    };
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(k, format!("unknown field `{k}`")).into());
    }
    let scope_name = text(&map, "scope", true)?.unwrap_or_default();
    let scope = LimitScope::parse(scope_name)
        .ok_or_else(|| bad("scope", "`scope` must be team, app, key or model"))?;
    let id_field = if map.contains_key("scope_id") {
        "scope_id"
    } else {
        "id"
    };
    let scope_id = text(&map, id_field, true)?.unwrap_or_default().to_string();
    let model = text(&map, "model", false)?.unwrap_or_default().to_string();
    if scope == LimitScope::Model && !model.is_empty() {
        return Err(bad(
            "model",
            "a model-scope limit already names its model in `id`",
        )
        .into());
    }
    let store = svc.store().clone();
    let scope_id = match scope {
        LimitScope::Model => {
            authorize(&who, Scope::System, Permission::LimitsWrite)?;
            scope_id
        }
        _ => {
            let id = parse_id(&scope_id, id_field)?;
            let missing = || ApiError::new(ErrorCode::NotFound, format!("no {} with this id", scope.as_str())).with_param(id_field);
            let team = target_team(&svc, scope, id).await?.flatten().ok_or_else(missing)?;
            // another team's target reads exactly like a missing one
            authorize(&who, Scope::Team(team), Permission::LimitsWrite)
                .map_err(|e| if e.code == ErrorCode::NotFound { missing() } else { e })?;
            id.hyphenated().to_string()
        }
    };
    let changes = [
        integer(&map, "rpm")?,
        integer(&map, "concurrent")?,
        integer(&map, "tpm")?,
        integer(&map, "tokens_per_day")?,
        integer(&map, "tokens_per_month")?,
        usd(&map, "usd_per_day")?,
        usd(&map, "usd_per_month")?,
    ];
    let existing = store
        .list_limits()
        .await
        .map_err(|e| internal(&e))?
        .into_iter()
        .find(|l| l.scope == scope && l.scope_id == scope_id && l.model == model);
    let created = existing.is_none();
    let t = now();
    let mut l = existing.unwrap_or(Limit {
        id: new_id(),
        scope,
        scope_id,
        model,
        rpm: None,
        concurrent: None,
        tpm: None,
        tokens_per_day: None,
        tokens_per_month: None,
        usd_micros_per_day: None,
        usd_micros_per_month: None,
        created_at: t,
        updated_at: t,
    });
    l.updated_at = t;
    let [rpm, concurrent, tpm, tpd, tpmo, usdd, usdm] = changes;
    apply(rpm, &mut l.rpm);
    apply(concurrent, &mut l.concurrent);
    apply(tpm, &mut l.tpm);
    apply(tpd, &mut l.tokens_per_day);
    apply(tpmo, &mut l.tokens_per_month);
    apply(usdd, &mut l.usd_micros_per_day);
    apply(usdm, &mut l.usd_micros_per_month);
    let stored = store.upsert_limit(&l).await.map_err(|e| internal(&e))?;
    svc.bus().publish(BusEvent::LimitsChanged);
    let view = view(&svc, &stored).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)).into_response())
}

async fn list_limits(State(svc): Svc, Extension(who): Extension<Principal>) -> Result<Response> {
    let rows = svc.store().list_limits().await.map_err(|e| internal(&e))?;
    let visible = who.visible_teams(Permission::LimitsRead);
    let mut data = Vec::with_capacity(rows.len());
    for l in &rows {
        let shown = match row_team(&svc, l).await? {
            Some(Some(team)) => visible.contains(team),
            // model rows (and rows whose target is gone) are installation data
            _ => who.is_admin(),
        };
        if shown {
            data.push(view(&svc, l).await);
        }
    }
    Ok(axum::Json(json!({ "data": data })).into_response())
}

async fn delete_limit(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "id")?;
    if !svc
        .store()
        .delete_limit(id)
        .await
        .map_err(|e| internal(&e))?
    {
        return Err(ApiError::new(ErrorCode::NotFound, "no limit with this id")
            .with_param("id")
            .into());
    }
    svc.bus().publish(BusEvent::LimitsChanged);
    Ok(axum::Json(json!({ "deleted": true, "id": id })).into_response())
}

/// A limit row with usage against each metric.
async fn view(svc: &AdminService, l: &Limit) -> Value {
    let buckets = limit_buckets(l);
    let plain: Vec<_> = buckets.iter().map(|b| b.bucket.clone()).collect();
    let (states, available) = match svc.counters().peek(&plain).await {
        Ok(s) => (s, true),
        Err(e) => {
            tracing::warn!(error = %e, "counters unavailable; usage not shown");
            (vec![Default::default(); plain.len()], false)
        }
    };
    let mut limits = Map::new();
    for (b, s) in buckets.iter().zip(states) {
        let amount = |v: u64| {
            if b.metric.is_spend() {
                json!(v as f64 / 1_000_000.0)
            } else {
                json!(v)
            }
        };
        limits.insert(
            b.metric.as_str().to_string(),
            json!({
                "limit": amount(b.bucket.limit),
                "used": amount(s.used),
                "remaining": amount(b.bucket.limit.saturating_sub(s.used)),
                "reset_ms": s.reset_ms,
            }),
        );
    }
    json!({
        "id": l.id,
        "scope": l.scope,
        "scope_id": l.scope_id,
        "model": if l.model.is_empty() { Value::Null } else { json!(l.model) },
        "limits": limits,
        "usage_available": available,
        "created_at": l.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "updated_at": l.updated_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
}

fn internal(e: &gatehouse_store::StoreError) -> AdminError {
    tracing::error!(error = %e, "store error in the limits API");
    AdminError(ApiError::internal())
}
