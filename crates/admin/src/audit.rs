//! Audit-log endpoints of the admin API (issue 5, `token-security.md` §5.6):
//!
//! * `GET /admin/v1/audit` — filters `event_type`, `key_id`, `fingerprint`, `since`, `until`
//!   (RFC 3339), paging `before_seq` + `limit` (1..=1000, default 100); newest first. Answer:
//!   `{"data":[event…], "next_before_seq": n|null}`.
//! * `GET /admin/v1/audit/verify` — walks the hash chain: `{"ok", "checked", "head_seq",
//!   "head_hash", "first_broken": {"seq","reason"}|null}`.
//! * [`record_admin_action`] — middleware recording one `admin.action` event per mutating admin
//!   request (method, route template, status; actor `operator:<token id>`).
//!
//! Events never contain tokens: credentials appear as their id or keyed fingerprint (G-11).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_store::audit::{kinds, verify_audit_chain};
use gatehouse_store::{AuditQuery, NewAuditEvent};
use gatehouse_types::{ApiError, ErrorCode};
use http::Method;
use serde_json::json;

use crate::http::AdminError;
use crate::input::{Params, bad};
use crate::service::AdminService;

/// The operator who made an admin request (request extension set by the auth layer).
#[derive(Debug, Clone, Copy)]
pub struct OperatorId(pub gatehouse_types::Id);

/// Reads an [`AuditQuery`] from query parameters (400 naming a bad or unknown parameter).
pub fn audit_query_from_params(p: &Params) -> Result<AuditQuery, ApiError> {
    p.deny_unknown(&["event_type", "key_id", "fingerprint", "since", "until", "before_seq", "limit"])?;
    let before_seq = match p.int("before_seq", 1..=(i64::MAX as u64))? {
        Some(n) => Some(i64::try_from(n).map_err(|_| bad("before_seq", "`before_seq` is too large"))?),
        None => None,
    };
    Ok(AuditQuery {
        event_type: p.str("event_type").map(str::to_string),
        credential_id: p.id("key_id")?,
        fingerprint: p.str("fingerprint").map(str::to_string),
        since: p.time("since")?,
        until: p.time("until")?,
        before_seq,
        limit: p.int("limit", 1..=1000)?.map(|n| n as u32),
    })
}

/// `GET /admin/v1/audit`.
pub async fn query_audit(
    State(svc): State<Arc<AdminService>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(map) = q.map_err(|_| AdminError(bad("query", "the query string is malformed")))?;
    let query = audit_query_from_params(&Params(map))?;
    // Read-your-writes for the operator: events recorded before this request are visible.
    svc.audit().flush().await;
    let page = query.page_size();
    let data = svc.store().query_audit_events(&query).await.map_err(|e| {
        tracing::error!(error = %e, "querying the audit log");
        AdminError(ApiError::internal())
    })?;
    let next = if data.len() as i64 == page { data.last().map(|e| e.seq) } else { None };
    Ok(axum::Json(json!({ "data": data, "next_before_seq": next })).into_response())
}

/// `GET /admin/v1/audit/verify`.
pub async fn verify_audit(State(svc): State<Arc<AdminService>>) -> Result<Response, AdminError> {
    svc.audit().flush().await;
    let report = verify_audit_chain(svc.store().as_ref()).await.map_err(|e| {
        tracing::error!(error = %e, "verifying the audit chain");
        AdminError(ApiError::new(ErrorCode::Unavailable, "the audit log could not be read"))
    })?;
    Ok(axum::Json(json!({
        "ok": report.first_broken.is_none(),
        "checked": report.checked,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "first_broken": report.first_broken,
    }))
    .into_response())
}

/// Records `admin.action` for every non-GET admin request that reached a route (after the
/// operator was authenticated): method, route template (never the raw path or query), status.
pub async fn record_admin_action(State(svc): State<Arc<AdminService>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let operator = request.extensions().get::<OperatorId>().copied();
    let response = next.run(request).await;
    if method != Method::GET && method != Method::HEAD {
        if let (Some(route), Some(OperatorId(op))) = (route, operator) {
            svc.audit().record(
                NewAuditEvent::new(kinds::ADMIN_ACTION, &format!("operator:{op}"))
                    .details(json!({"method": method.as_str(), "route": route, "status": response.status().as_u16()})),
            );
        }
    }
    response
}
