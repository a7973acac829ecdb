//! `/admin/v1/services` (issue 7): services and their lifecycle. Specs are
//! [`gatehouse_types::apim::ServiceSpec`] documents.
//!
//! * `POST /services` — `{"kind": "ai"|"rest"|"prompt", "name", "slug", "team_id"?,
//!   "visibility"?: "team"|"public" (default team), "approval"?: "auto"|"manual" (default
//!   manual), "spec"?: {…}}` → 201, status `draft`. 409 if the slug is taken.
//! * `GET /services[?team_id&kind&status]` → `{"data": [service…]}`; `GET /services/{id|slug}`.
//! * `PATCH /services/{id|slug}` — `{"name"?, "visibility"?, "approval"?, "spec"?}`: edits the
//!   draft (the live release is unchanged until the next publish). 409 when retired.
//! * `POST /services/{id|slug}/publish` — `{"note"?}`: snapshots the draft (with a generated
//!   OpenAPI 3.1 document for `ai`/`prompt` services and for `rest` services without one) as
//!   release N+1, status `published`. 400 if the spec is incomplete, names a model that is not
//!   configured or a prompt schema that does not compile; 409 when retired.
//! * `POST /services/{id|slug}/deprecate` — `{"sunset": RFC 3339, in the future}`: status
//!   `deprecated`; data-plane answers carry `Deprecation` (RFC 9745) and `Sunset` (RFC 8594).
//! * `POST /services/{id|slug}/retire`: status `retired`; calls answer 410 `service_retired`.
//! * `POST /services/{id|slug}/rollback` — `{"version": N}`: republishes release N as a new
//!   release (history stays immutable). 404 unknown version, 409 when retired.
//! * `GET /services/{id|slug}/releases`, `GET /services/{id|slug}/releases/{version}`.
//! * `GET /services/{id|slug}/diff?from=N&to=M` — `{"from","to","changes":[{"path" (JSON
//!   Pointer, RFC 6901),"op": "added"|"removed"|"changed","from"?,"to"?}]}`.
//!
//! Every change publishes `BusEvent::ServicesChanged` (the data plane reloads before its next
//! request). Authorization: the route gate ([`crate::authz_http`], `Target::ServiceParam`) for
//! routes naming a service; [`crate::authz::authorize`] in the create and list handlers.

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
    ApprovalMode, BusEvent, Service, ServiceKind, ServiceRelease, ServiceStatus, StoreError, Visibility,
};
use gatehouse_types::apim::ServiceSpec;
use gatehouse_types::{ApiError, ErrorCode, Id, new_id, now};
use serde_json::{Value, json};

use crate::authz::{Permission, Principal, Scope, authorize};
use crate::http::{AdminError, Result, body};
use crate::input::{Fields, Params, bad};
use crate::service::AdminService;

type Svc = State<Arc<AdminService>>;

/// The authenticated caller.
pub type Op = Extension<Principal>;

/// Who made a change, for `created_by` / `decided_by`.
pub(crate) fn actor(p: &Principal) -> String {
    format!("user:{}", p.username)
}

/// [`authorize`] on a team named in the body: a team the caller cannot see reads as a missing
/// team, naming `field`.
pub(crate) fn authorize_team(p: &Principal, team: Id, permission: Permission, field: &str, what: &str) -> std::result::Result<(), ApiError> {
    authorize(p, Scope::Team(team), permission).map_err(|e| {
        if e.code == ErrorCode::NotFound { ApiError::new(ErrorCode::NotFound, format!("{what} not found")).with_param(field) } else { e }
    })
}

/// An `ai` service decides who may call installation-wide public models (admission: once a
/// non-draft `ai` service exposes a model, only its subscribers may call it, and a retired one
/// answers 410), so creating one or changing its lifecycle (publish, deprecate, retire,
/// rollback) needs `models.write` — a system admin — like changing the models themselves.
/// Team owners publish `rest` and `prompt` services. Errors: 403 `permission_denied` naming
/// `field`.
pub(crate) fn ai_service_guard(p: &Principal, kind: ServiceKind, field: &str) -> std::result::Result<(), ApiError> {
    if kind != ServiceKind::Ai {
        return Ok(());
    }
    authorize(p, Scope::System, Permission::ModelsWrite).map_err(|e| {
        ApiError::new(e.code, "an `ai` service gates installation-wide public models: only a system admin may create one or change its lifecycle").with_param(field)
    })
}

/// The owning team of a service named by id or slug (the route gate's lookup).
pub async fn service_team(svc: &AdminService, key: &str) -> std::result::Result<Option<Id>, ApiError> {
    match find(svc, key).await {
        Ok(s) => Ok(Some(s.team_id)),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True for a service every user may read (issue 7): public and no longer a draft (published,
/// deprecated or retired) — the same rule as the catalog part of `GET /services`.
pub fn in_catalog(s: &Service) -> bool {
    s.visibility == Visibility::Public && s.status != ServiceStatus::Draft
}

/// The owning team of a service named by id or slug and whether it is in the catalog
/// ([`in_catalog`]); `None` if there is no such service (the route gate's lookup for
/// `GET /services/{id}`).
pub async fn catalog_service_team(svc: &AdminService, key: &str) -> std::result::Result<Option<(Id, bool)>, ApiError> {
    match find(svc, key).await {
        Ok(s) => Ok(Some((s.team_id, in_catalog(&s)))),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a user outside the owning team sees of a catalog service: the consumer's contract only.
/// Never the draft `spec` (unpublished edits stay inside the team), and of `live_spec` never
/// how it is served: no `upstream` (node addresses, `add_headers` values, which may carry an
/// upstream credential, health checks), no route `rewrite`, no prompt `system` / `template`
/// (the owner's instructions). Routes, models, prompt names, parameters, variables and output
/// schemas, docs and the OpenAPI document stay.
fn catalog_view(s: &Service) -> Value {
    let mut v = view(s);
    if let Value::Object(o) = &mut v {
        o.remove("spec");
        if let Some(Value::Object(live)) = o.get_mut("live_spec") {
            live.remove("upstream");
            for (list, private) in [("routes", &["rewrite"][..]), ("prompts", &["system", "template"][..])] {
                if let Some(Value::Array(items)) = live.get_mut(list) {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        for k in private {
                            item.remove(*k);
                        }
                    }
                }
            }
        }
    }
    v
}

/// The services routes (mounted under `/admin/v1`, behind the operator token).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new()
        .route("/services", post(create).get(list))
        .route("/services/{id}", get(show).patch(update))
        .route("/services/{id}/publish", post(publish))
        .route("/services/{id}/deprecate", post(deprecate))
        .route("/services/{id}/retire", post(retire))
        .route("/services/{id}/rollback", post(rollback))
        .route("/services/{id}/releases", get(releases))
        .route("/services/{id}/releases/{version}", get(release))
        .route("/services/{id}/diff", get(diff))
}

pub(crate) fn internal(context: &str, err: &StoreError) -> ApiError {
    tracing::error!(error = %err, "{context}");
    ApiError::internal()
}

pub(crate) fn params(q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Params> {
    q.map(|Query(m)| Params(m)).map_err(|_| AdminError(bad("query", "the query string is malformed")))
}

pub(crate) fn check_slug(slug: &str) -> std::result::Result<(), ApiError> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-');
    if ok { Ok(()) } else { Err(bad("slug", "`slug` must be 1-63 characters of a-z, 0-9 and `-`, not starting with `-`")) }
}

fn enum_field<T>(f: &mut Fields, key: &str, parse: fn(&str) -> Option<T>, names: &[&str]) -> std::result::Result<Option<T>, ApiError> {
    match f.opt_string(key)? {
        None => Ok(None),
        Some(s) => parse(&s).map(Some).ok_or_else(|| bad(key, format!("`{key}` must be one of: {}", names.join(", ")))),
    }
}

/// Finds a service by UUID or slug. 404 if none.
pub(crate) async fn find(svc: &AdminService, key: &str) -> std::result::Result<Service, ApiError> {
    let found = match key.parse::<Id>() {
        Ok(id) => svc.store().get_service(id).await,
        Err(_) => svc.store().get_service_by_slug(key).await,
    }
    .map_err(|e| internal("reading a service", &e))?;
    found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "service not found"))
}

/// The JSON view: the record plus the data-plane entry point.
pub(crate) fn view(s: &Service) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({"id": s.id}));
    v["endpoint"] = json!(match s.kind {
        ServiceKind::Rest => format!("/svc/{}/", s.slug),
        ServiceKind::Prompt => format!("/prompts/{}/{{name}}", s.slug),
        ServiceKind::Ai => "/v1/chat/completions".to_string(),
    });
    v
}

fn changed(svc: &AdminService) {
    svc.bus().publish(BusEvent::ServicesChanged);
}

async fn save(svc: &AdminService, s: &Service, release: Option<&ServiceRelease>) -> std::result::Result<(), ApiError> {
    match svc.store().update_service(s, release).await {
        Ok(true) => {
            changed(svc);
            Ok(())
        }
        Ok(false) => Err(ApiError::new(ErrorCode::NotFound, "service not found")),
        Err(StoreError::Conflict(_)) => Err(ApiError::new(ErrorCode::Conflict, "the service changed concurrently; retry")),
        Err(e) => Err(internal("updating a service", &e)),
    }
}

fn not_retired(s: &Service) -> std::result::Result<(), ApiError> {
    if s.status == ServiceStatus::Retired {
        return Err(ApiError::new(ErrorCode::Conflict, "the service is retired"));
    }
    Ok(())
}

async fn create(State(svc): Svc, Extension(p): Op, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let mut f = Fields::from_body(&body(b)?)?;
    let team_id = match f.opt_id("team_id")? {
        Some(t) => t,
        None => svc.default_team().await?.id,
    };
    authorize_team(&p, team_id, Permission::ServicesWrite, "team_id", "team")?;
    svc.store().get_team(team_id).await.map_err(|e| internal("reading a team", &e))?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "team not found").with_param("team_id"))?;
    f.deny_unknown(&["kind", "name", "slug", "visibility", "approval", "spec"])?;
    let kind = enum_field(&mut f, "kind", ServiceKind::parse, ServiceKind::NAMES)?.ok_or_else(|| bad("kind", "`kind` is required"))?;
    ai_service_guard(&p, kind, "kind")?;
    let name = f.string("name")?;
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(bad("name", "`name` is at most 200 bytes without control characters").into());
    }
    let slug = f.string("slug")?;
    check_slug(&slug)?;
    let visibility = enum_field(&mut f, "visibility", Visibility::parse, Visibility::NAMES)?.unwrap_or(Visibility::Team);
    let approval = enum_field(&mut f, "approval", ApprovalMode::parse, ApprovalMode::NAMES)?.unwrap_or(ApprovalMode::Manual);
    let spec = f.take("spec").unwrap_or_else(|| json!({}));
    let spec = ServiceSpec::parse(kind.as_str(), &spec, "spec")?;
    check_upstream_nodes(&svc, &spec, "spec")?;
    let spec = serde_json::to_value(spec).map_err(|_| ApiError::internal())?;
    let at = now();
    let s = Service {
        id: new_id(),
        team_id,
        kind,
        slug,
        name,
        status: ServiceStatus::Draft,
        visibility,
        approval,
        spec,
        live_spec: None,
        version: 0,
        deprecated_at: None,
        sunset_at: None,
        created_at: at,
        updated_at: at,
    };
    match svc.store().create_service(&s).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::new(ErrorCode::Conflict, "a service with this slug exists").with_param("slug").into()),
        Err(e) => return Err(internal("creating a service", &e).into()),
    }
    changed(&svc);
    Ok((StatusCode::CREATED, axum::Json(view(&s))).into_response())
}

async fn list(State(svc): Svc, Extension(p): Op, q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Response> {
    let q = params(q)?;
    q.deny_unknown(&["team_id", "kind", "status"])?;
    let team = q.id("team_id")?;
    if let Some(t) = team {
        authorize_team(&p, t, Permission::ServicesRead, "team_id", "team")?;
    }
    let kind = q.str("kind").map(|k| ServiceKind::parse(k).ok_or_else(|| bad("kind", format!("`kind` must be one of: {}", ServiceKind::NAMES.join(", "))))).transpose()?;
    let status = q.str("status").map(|k| ServiceStatus::parse(k).ok_or_else(|| bad("status", format!("`status` must be one of: {}", ServiceStatus::NAMES.join(", "))))).transpose()?;
    // Members see their teams' services (drafts included) and every published public service.
    let visible = p.visible_teams(Permission::ServicesRead);
    let all = svc.store().list_services(team).await.map_err(|e| internal("listing services", &e))?;
    let data: Vec<Value> = all
        .iter()
        .filter(|s| visible.contains(s.team_id) || in_catalog(s))
        .filter(|s| kind.is_none_or(|k| s.kind == k) && status.is_none_or(|st| s.status == st))
        .map(|s| if visible.contains(s.team_id) { view(s) } else { catalog_view(s) })
        .collect();
    Ok(axum::Json(json!({"data": data})).into_response())
}

/// `GET /services/{id}`: the full view for the owning team (and system admins); the catalog
/// view for anyone else, who gets here only for a public non-draft service (the route gate,
/// `Target::CatalogServiceParam`).
async fn show(State(svc): Svc, Extension(p): Op, Path(id): Path<String>) -> Result<Response> {
    let s = find(&svc, &id).await?;
    let v = if p.is_admin() || p.team_role(s.team_id).is_some() { view(&s) } else { catalog_view(&s) };
    Ok(axum::Json(v).into_response())
}

async fn update(State(svc): Svc, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let mut s = find(&svc, &id).await?;
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["name", "visibility", "approval", "spec"])?;
    not_retired(&s)?;
    if let Some(n) = f.opt_string("name")? {
        if n.len() > 200 || n.chars().any(char::is_control) {
            return Err(bad("name", "`name` is at most 200 bytes without control characters").into());
        }
        s.name = n;
    }
    if let Some(v) = enum_field(&mut f, "visibility", Visibility::parse, Visibility::NAMES)? {
        s.visibility = v;
    }
    if let Some(a) = enum_field(&mut f, "approval", ApprovalMode::parse, ApprovalMode::NAMES)? {
        s.approval = a;
    }
    if let Some(spec) = f.take("spec") {
        let spec = ServiceSpec::parse(s.kind.as_str(), &spec, "spec")?;
        check_upstream_nodes(&svc, &spec, "spec")?;
        s.spec = serde_json::to_value(spec).map_err(|_| ApiError::internal())?;
    }
    s.updated_at = now();
    save(&svc, &s, None).await?;
    Ok(axum::Json(view(&s)).into_response())
}

/// An optional body with an optional `note` (≤ 500 bytes) and the `extra` fields.
fn note(b: std::result::Result<Bytes, BytesRejection>, extra: &[&str]) -> std::result::Result<(Fields, Option<String>), AdminError> {
    let bytes = body(b)?;
    let mut f = if bytes.iter().all(u8::is_ascii_whitespace) { Fields::from_value(json!({}), "")? } else { Fields::from_body(&bytes)? };
    let mut allowed = vec!["note"];
    allowed.extend_from_slice(extra);
    f.deny_unknown(&allowed)?;
    let n = f.opt_string("note")?;
    if n.as_ref().is_some_and(|n| n.len() > 500 || n.chars().any(char::is_control)) {
        return Err(bad("note", "`note` is at most 500 bytes without control characters").into());
    }
    Ok((f, n))
}

/// Makes release N+1 of `s` from `spec` (a live spec) and points `s` at it (status
/// `published`, deprecation cleared). Nothing is saved: the caller stores `s` with the release
/// (one transaction). Errors: 500 if the release counter overflows.
pub(crate) fn next_release(p: &Principal, s: &mut Service, spec: Value, note: String) -> std::result::Result<ServiceRelease, ApiError> {
    let version = s.version.checked_add(1).ok_or_else(ApiError::internal)?;
    let at = now();
    let r = ServiceRelease {
        id: new_id(),
        service_id: s.id,
        version,
        spec: json!({"name": s.name, "visibility": s.visibility, "approval": s.approval, "spec": spec}),
        note,
        created_by: Some(actor(p)),
        created_at: at,
    };
    s.version = version;
    s.live_spec = Some(spec);
    s.status = ServiceStatus::Published;
    s.deprecated_at = None;
    s.sunset_at = None;
    s.updated_at = at;
    Ok(r)
}

/// Makes release N+1 from `spec` and points the service at it.
async fn release_spec(svc: &AdminService, p: &Principal, mut s: Service, spec: Value, note: String) -> std::result::Result<Service, ApiError> {
    let r = next_release(p, &mut s, spec, note)?;
    save(svc, &s, Some(&r)).await?;
    Ok(s)
}

/// The live spec a publish of `s`'s draft makes: checks that the draft is complete, names only
/// configured models (or ones in `pending_models`, created by the same configuration apply),
/// and that its prompt schemas compile; adds the generated OpenAPI 3.1 document (`ai`/`prompt`
/// services, and `rest` ones without an uploaded one). `field` names the draft in errors
/// (`spec`, or `document.services[0].spec`). Errors: 400 naming the field, 500 on store errors.
/// The SSRF guard at spec time (tester H4): a REST node whose host is an IP literal that
/// [`gatehouse_auth::cidr::refused_upstream`] refuses (loopback, link-local such as
/// 169.254.169.254, unspecified, multicast, broadcast), or `localhost`, unless inside the
/// operator's `[rest] allow_upstream` → 400 naming `{field}.upstream.nodes[i].url`. Host names
/// are checked again after DNS resolution when the gateway connects.
pub(crate) fn check_upstream_nodes(svc: &AdminService, spec: &ServiceSpec, field: &str) -> std::result::Result<(), ApiError> {
    let Some(up) = &spec.upstream else { return Ok(()) };
    for (i, n) in up.nodes.iter().enumerate() {
        let authority = n.url.split("://").nth(1).unwrap_or_default().split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let ip: Option<std::net::IpAddr> = if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
            Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        } else {
            host.parse().ok()
        };
        if let Some(why) = ip.and_then(|ip| gatehouse_auth::cidr::refused_upstream(ip, svc.rest_allow_upstream())) {
            let param = format!("{field}.upstream.nodes[{i}].url");
            return Err(bad(&param, format!("`url` points at a {why} address, which the gateway refuses to reach (an operator can allow it with `[rest] allow_upstream`)")));
        }
    }
    Ok(())
}

pub(crate) async fn publishable(svc: &AdminService, s: &Service, pending_models: &[String], field: &str) -> std::result::Result<Value, ApiError> {
    let mut spec = ServiceSpec::parse(s.kind.as_str(), &s.spec, field)?;
    check_upstream_nodes(svc, &spec, field)?;
    spec.check_publishable(s.kind.as_str()).map_err(|mut e| {
        if let Some(p) = e.param.as_mut().and_then(|p| p.strip_prefix("spec").map(str::to_string)) {
            e.param = Some(format!("{field}{p}"));
        }
        e
    })?;
    let models: Vec<(String, &String)> = match s.kind {
        ServiceKind::Ai => spec.models.iter().enumerate().map(|(i, m)| (format!("{field}.models[{i}]"), m)).collect(),
        ServiceKind::Prompt => spec.prompts.iter().enumerate().map(|(i, p)| (format!("{field}.prompts[{i}].model"), &p.model)).collect(),
        ServiceKind::Rest => Vec::new(),
    };
    for (param, m) in models {
        if pending_models.contains(m) {
            continue;
        }
        let known = svc.store().get_model(m).await.map_err(|e| internal("reading a model", &e))?;
        if known.is_none() {
            return Err(bad(&param, format!("model `{m}` is not configured")));
        }
    }
    for (i, p) in spec.prompts.iter().enumerate() {
        for (name, schema) in [("variables", Some(&p.variables)), ("output_schema", p.output_schema.as_ref())] {
            if let Some(schema) = schema
                && let Err(e) = jsonschema::validator_for(schema)
            {
                return Err(bad(&format!("{field}.prompts[{i}].{name}"), format!("not a valid JSON Schema: {e}")));
            }
        }
    }
    if spec.openapi.is_none() || s.kind != ServiceKind::Rest {
        spec.openapi = Some(crate::apim_openapi::generate(s, &spec));
    }
    serde_json::to_value(&spec).map_err(|_| ApiError::internal())
}

async fn publish(State(svc): Svc, Extension(p): Op, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let s = find(&svc, &id).await?;
    ai_service_guard(&p, s.kind, "id")?;
    let (_, text) = note(b, &[])?;
    not_retired(&s)?;
    let live = publishable(&svc, &s, &[], "spec").await?;
    let text = text.unwrap_or_else(|| "publish".into());
    let s = release_spec(&svc, &p, s, live, text).await?;
    Ok(axum::Json(view(&s)).into_response())
}

async fn deprecate(State(svc): Svc, Extension(p): Op, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let mut s = find(&svc, &id).await?;
    ai_service_guard(&p, s.kind, "id")?;
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["sunset"])?;
    let sunset = f.opt_time("sunset")?.ok_or_else(|| bad("sunset", "`sunset` (RFC 3339) is required"))?;
    let at = now();
    if sunset <= at {
        return Err(bad("sunset", "`sunset` must be in the future").into());
    }
    if !matches!(s.status, ServiceStatus::Published | ServiceStatus::Deprecated) {
        return Err(ApiError::new(ErrorCode::Conflict, format!("only a published service can be deprecated (it is {})", s.status.as_str())).into());
    }
    s.status = ServiceStatus::Deprecated;
    s.deprecated_at = Some(s.deprecated_at.unwrap_or(at));
    s.sunset_at = Some(sunset);
    s.updated_at = at;
    save(&svc, &s, None).await?;
    Ok(axum::Json(view(&s)).into_response())
}

async fn retire(State(svc): Svc, Extension(p): Op, Path(id): Path<String>) -> Result<Response> {
    let mut s = find(&svc, &id).await?;
    ai_service_guard(&p, s.kind, "id")?;
    not_retired(&s)?;
    s.status = ServiceStatus::Retired;
    s.updated_at = now();
    save(&svc, &s, None).await?;
    Ok(axum::Json(view(&s)).into_response())
}

async fn rollback(State(svc): Svc, Extension(p): Op, Path(id): Path<String>, b: std::result::Result<Bytes, BytesRejection>) -> Result<Response> {
    let s = find(&svc, &id).await?;
    ai_service_guard(&p, s.kind, "id")?;
    let (mut f, text) = note(b, &["version"])?;
    let version = f.opt_int("version", 1..=i64::from(u32::MAX))?.ok_or_else(|| bad("version", "`version` is required"))?;
    not_retired(&s)?;
    let version = u32::try_from(version).map_err(|_| bad("version", "`version` is out of range"))?;
    let old = svc
        .store()
        .get_service_release(s.id, version)
        .await
        .map_err(|e| internal("reading a release", &e))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such release").with_param("version"))?;
    let spec = old.spec.get("spec").cloned().unwrap_or_else(|| json!({}));
    let text = text.unwrap_or_else(|| format!("rollback to {version}"));
    let s = release_spec(&svc, &p, s, spec, text).await?;
    Ok(axum::Json(view(&s)).into_response())
}

async fn releases(State(svc): Svc, Path(id): Path<String>) -> Result<Response> {
    let s = find(&svc, &id).await?;
    let data = svc.store().list_service_releases(s.id).await.map_err(|e| internal("listing releases", &e))?;
    Ok(axum::Json(json!({"data": data})).into_response())
}

fn parse_version(s: &str, field: &str) -> std::result::Result<u32, ApiError> {
    s.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| bad(field, format!("`{field}` must be a release number (1, 2, …)")))
}

async fn get_release(svc: &AdminService, s: &Service, v: u32, field: &str) -> std::result::Result<ServiceRelease, ApiError> {
    svc.store()
        .get_service_release(s.id, v)
        .await
        .map_err(|e| internal("reading a release", &e))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such release").with_param(field))
}

async fn release(State(svc): Svc, Path((id, version)): Path<(String, String)>) -> Result<Response> {
    let s = find(&svc, &id).await?;
    let r = get_release(&svc, &s, parse_version(&version, "version")?, "version").await?;
    Ok(axum::Json(r).into_response())
}

async fn diff(State(svc): Svc, Path(id): Path<String>, q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Response> {
    let s = find(&svc, &id).await?;
    let p = params(q)?;
    p.deny_unknown(&["from", "to"])?;
    let from = parse_version(p.str("from").ok_or_else(|| bad("from", "`from` is required"))?, "from")?;
    let to = parse_version(p.str("to").ok_or_else(|| bad("to", "`to` is required"))?, "to")?;
    let a = get_release(&svc, &s, from, "from").await?;
    let b = get_release(&svc, &s, to, "to").await?;
    let mut changes = Vec::new();
    json_diff("", &a.spec, &b.spec, &mut changes);
    Ok(axum::Json(json!({"from": from, "to": to, "changes": changes})).into_response())
}

/// Leaf-level differences between two JSON values, as JSON Pointers (RFC 6901).
pub fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Value>) {
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}/{}", esc(k));
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => json_diff(&p, l, r, out),
                    (Some(l), None) => out.push(json!({"path": p, "op": "removed", "from": l})),
                    (None, Some(r)) => out.push(json!({"path": p, "op": "added", "to": r})),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(l), Some(r)) => json_diff(&p, l, r, out),
                    (Some(l), None) => out.push(json!({"path": p, "op": "removed", "from": l})),
                    (None, Some(r)) => out.push(json!({"path": p, "op": "added", "to": r})),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(json!({"path": path, "op": "changed", "from": a, "to": b})),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diff_lists_leaf_changes_as_json_pointers() {
        let a = json!({"spec": {"routes": [{"path": "/a"}], "tags": ["x"], "a/b": 1}});
        let b = json!({"spec": {"routes": [{"path": "/b"}, {"path": "/c"}], "a/b": 1, "docs": "d"}});
        let mut out = Vec::new();
        json_diff("", &a, &b, &mut out);
        assert_eq!(
            out,
            vec![
                json!({"path": "/spec/docs", "op": "added", "to": "d"}),
                json!({"path": "/spec/routes/0/path", "op": "changed", "from": "/a", "to": "/b"}),
                json!({"path": "/spec/routes/1", "op": "added", "to": {"path": "/c"}}),
                json!({"path": "/spec/tags", "op": "removed", "from": ["x"]}),
            ]
        );
    }

    #[test]
    fn slugs() {
        assert!(check_slug("orders-v2").is_ok());
        for bad in ["", "-x", "Orders", "a/b", "a_b"] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
    }
}
