//! `/admin/v1/teams/{id}/config` (issue 7): a team's configuration as ONE declarative document,
//! for teams that keep it in git (`gatehouse config export|apply` is a thin client of these).
//!
//! * `GET /teams/{id}/config[?models=true]` → the document of the team: its apps, limits and
//!   services (draft spec + lifecycle state); with `models=true` also the installation-wide
//!   public models (`models.read`).
//! * `POST /teams/{id}/config` — `{"document": {…}, "dry_run"?: false}` → the plan
//!   `{"team", "dry_run", "applied", "changes": [item…], "unchanged": [item…],
//!   "not_in_file": [item…]}`, each item `{"action", "kind", "name", "summary"}` (`summary` is
//!   the line the CLI prints: `+ create app checkout`, `~ update service orders: draft spec,
//!   publish release 2`, `? app old is not in the file (left alone)`). Unless `dry_run`, the
//!   changes are written by [`gatehouse_store::Store::apply_config`] in ONE transaction: all
//!   of them or none. A second apply of the same document plans nothing (idempotent).
//!
//! Both answer 404 to non-members of the team, 403 `permission_denied` to members below team
//! admin (`config.manage`, checked by the route gate). A document that changes a public model
//! needs a system admin (`models.write`, 403 otherwise — also on a dry run); unchanged models
//! are accepted from anyone.
//!
//! # The document (version 1)
//!
//! ```json
//! {"version": 1, "team": "payments",
//!  "apps": [{"name": "checkout"}],
//!  "limits": [{"scope": "team" | "app", "target": "<team name | app name>", "model"?: "<public model>",
//!              "rpm"?, "concurrent"?, "tpm"?, "tokens_per_day"?, "tokens_per_month"? (integers),
//!              "usd_per_day"?, "usd_per_month"? (USD numbers)}],
//!  "services": [{"slug", "kind": "ai" | "rest" | "prompt", "name",
//!                "state"?: "draft" | "published" | "deprecated" | "retired" (default draft),
//!                "sunset"?: RFC 3339 (with state = deprecated only, required there),
//!                "visibility"?: "team" | "public" (default team), "approval"?: "auto" | "manual" (default manual),
//!                "spec"?: {…service spec: description, docs, category, tags, models, routes, upstream, prompts…}}],
//!  "models"?: [{"name", "deployments": [{"provider", "model", "weight"?: 1, "priority"?: 0}]}]}
//! ```
//!
//! Unknown keys, duplicates (app names, service slugs, limit rows, model names) and bad values
//! are 400 naming the field (`document.limits[0].target`); nothing is written then.
//!
//! # Semantics
//!
//! * Nothing is ever deleted: apps, limit rows, services (and, when the document has `models`,
//!   models) of the server that the document does not list are reported as `not_in_file` and
//!   left alone.
//! * A limit row (scope, target, model) is described whole: a metric the row omits is removed.
//! * A service's `spec` is its **draft**. A changed spec (or name, visibility, approval)
//!   updates the draft. `state = "published"` then publishes a new release whenever what a
//!   publish would serve differs from the live release (or the service is not published yet),
//!   with the same checks as `POST /services/{id}/publish` (400 naming the field).
//!   `state = "deprecated"` (with `sunset`) deprecates, publishing first if the service was
//!   never published; a changed draft of a deprecated service is stored, not released.
//!   `state = "retired"` retires — only when the file says so. A published service cannot go
//!   back to `draft`, a retired one cannot change, and a service's kind is fixed (409).
//! * A slug is unique in the installation: a slug of another team's service is 409.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_store::{
    App, ApprovalMode, BusEvent, ConfigChanges, Deployment, Limit, LimitScope, Model, Service, ServiceKind,
    ServiceStatus, ServiceWrite, StoreError, Team, Visibility,
};
use gatehouse_types::apim::ServiceSpec;
use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp, new_id, now};
use serde::Serialize;
use serde_json::{Value, json};

use crate::apim::{check_slug, internal, next_release, params, publishable};
use crate::authz::{Permission, Principal, Scope, authorize};
use crate::http::{Result, body};
use crate::input::{Fields, bad, parse_id};
use crate::service::AdminService;

type Svc = State<Arc<AdminService>>;

/// The limit metrics of a document, in the order of [`limit_values`]; the `usd_*` ones are USD
/// numbers (stored as micro-dollars), the others non-negative integers.
pub const METRICS: [&str; 7] = ["rpm", "concurrent", "tpm", "tokens_per_day", "tokens_per_month", "usd_per_day", "usd_per_month"];

/// Largest accepted integer limit (fits a signed 64-bit column) and USD amount.
const MAX_VALUE: u64 = i64::MAX as u64;
const MAX_USD: f64 = 1e12;

/// The configuration routes (mounted under `/admin/v1`, behind the operator token and the gate).
pub fn routes() -> Router<Arc<AdminService>> {
    Router::new().route("/teams/{id}/config", get(export).post(apply))
}

// ------------------------------------------------------------------------------ handlers

async fn export(
    State(svc): Svc,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response> {
    let q = params(q)?;
    q.deny_unknown(&["models"])?;
    let with_models = q.bool("models")?;
    if with_models {
        authorize(&p, Scope::System, Permission::ModelsRead)?;
    }
    let team = team_of(&svc, &id).await?;
    let current = Current::load(&svc, &team, with_models).await?;
    Ok(axum::Json(current.document()).into_response())
}

async fn apply(
    State(svc): Svc,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let mut f = Fields::from_body(&body(b)?)?;
    f.deny_unknown(&["document", "dry_run"])?;
    let dry_run = match f.take("dry_run") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(bad("dry_run", "`dry_run` must be true or false").into()),
    };
    let doc = f.take("document").ok_or_else(|| bad("document", "`document` is required"))?;
    let team = team_of(&svc, &id).await?;
    let want = Desired::parse(doc, &team.name).map_err(located)?;
    let current = Current::load(&svc, &team, want.models.is_some()).await?;
    let plan = plan(&svc, &p, &current, &want).await.map_err(located)?;
    let applied = !dry_run && !plan.writes.is_empty();
    if applied {
        svc.store().apply_config(&plan.writes).await.map_err(apply_error)?;
        if !plan.writes.limits.is_empty() {
            svc.bus().publish(BusEvent::LimitsChanged);
        }
        if !plan.writes.models.is_empty() {
            svc.bus().publish(BusEvent::RoutingChanged);
        }
        if !plan.writes.services.is_empty() {
            svc.bus().publish(BusEvent::ServicesChanged);
        }
        tracing::info!(team_id = %team.id, changes = plan.changes.len(), "configuration applied");
    }
    Ok(axum::Json(json!({
        "team": team.name,
        "dry_run": dry_run,
        "applied": applied,
        "changes": plan.changes,
        "unchanged": plan.unchanged,
        "not_in_file": plan.not_in_file,
    }))
    .into_response())
}

/// The team of the path (the gate has authorized it). 404 if there is none.
async fn team_of(svc: &AdminService, id: &str) -> std::result::Result<Team, ApiError> {
    let id = parse_id(id, "id")?;
    svc.store()
        .get_team(id)
        .await
        .map_err(|e| internal("reading a team", &e))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "team not found").with_param("id"))
}

/// A 400 that names a field also says it in the message (the CLI prints only the message).
fn located(mut e: ApiError) -> ApiError {
    if let Some(p) = &e.param
        && !e.message.contains(p.as_str())
    {
        e.message = format!("{p}: {}", e.message);
    }
    e
}

fn apply_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::new(
            ErrorCode::Conflict,
            "the configuration conflicts with the server (a name or slug was taken meanwhile, or is the name of a deleted app); nothing was applied",
        ),
        StoreError::NotFound(_) => {
            ApiError::new(ErrorCode::Conflict, "a resource changed while the configuration was applied; nothing was applied, retry")
        }
        e => internal("applying a configuration", &e),
    }
}

// ------------------------------------------------------------------------------ what the server has

/// The team's configuration as stored.
struct Current {
    team: Team,
    apps: Vec<App>,
    /// Limits of the team and of its apps.
    limits: Vec<Limit>,
    /// The team's services.
    services: Vec<Service>,
    /// Public models with their deployments as (provider name, upstream model, weight,
    /// priority), when asked for.
    models: Option<Vec<(Model, Vec<DeploymentLine>)>>,
    /// Provider name → id (loaded with the models).
    providers: Vec<(String, Id)>,
}

type DeploymentLine = (String, String, i32, i32);

impl Current {
    async fn load(svc: &AdminService, team: &Team, with_models: bool) -> std::result::Result<Current, ApiError> {
        let store = svc.store();
        let mut apps = store.list_apps(Some(team.id)).await.map_err(|e| internal("listing apps", &e))?;
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let team_key = team.id.hyphenated().to_string();
        let app_keys: Vec<String> = apps.iter().map(|a| a.id.hyphenated().to_string()).collect();
        let limits = store
            .list_limits()
            .await
            .map_err(|e| internal("listing limits", &e))?
            .into_iter()
            .filter(|l| match l.scope {
                LimitScope::Team => l.scope_id == team_key,
                LimitScope::App => app_keys.contains(&l.scope_id),
                _ => false,
            })
            .collect();
        let mut services = store.list_services(Some(team.id)).await.map_err(|e| internal("listing services", &e))?;
        services.sort_by(|a, b| a.slug.cmp(&b.slug));
        let (models, providers) = if with_models {
            let providers: Vec<(String, Id)> =
                store.list_providers().await.map_err(|e| internal("listing providers", &e))?.into_iter().map(|p| (p.name, p.id)).collect();
            let models = store.list_models().await.map_err(|e| internal("listing models", &e))?;
            let lines = models
                .into_iter()
                .map(|m| {
                    let d = m
                        .deployments
                        .iter()
                        .map(|d| {
                            let name = providers.iter().find(|(_, id)| *id == d.provider_id).map(|(n, _)| n.clone()).unwrap_or_default();
                            (name, d.upstream_model.clone(), d.weight, d.priority)
                        })
                        .collect();
                    (m, d)
                })
                .collect();
            (Some(lines), providers)
        } else {
            (None, Vec::new())
        };
        Ok(Current { team: team.clone(), apps, limits, services, models, providers })
    }

    /// The name a limit row's target has in a document (`None`: not a row of this team).
    fn limit_target(&self, l: &Limit) -> Option<(&'static str, String)> {
        match l.scope {
            LimitScope::Team => Some(("team", self.team.name.clone())),
            LimitScope::App => self.apps.iter().find(|a| a.id.hyphenated().to_string() == l.scope_id).map(|a| ("app", a.name.clone())),
            _ => None,
        }
    }

    /// The export: the document describing this state (apps, limits, services sorted; no ids).
    fn document(&self) -> Value {
        let apps: Vec<Value> = self.apps.iter().map(|a| json!({"name": a.name})).collect();
        let mut limits: Vec<Value> = Vec::new();
        for l in &self.limits {
            let Some((scope, target)) = self.limit_target(l) else { continue };
            let mut o = json!({"scope": scope, "target": target});
            if !l.model.is_empty() {
                o["model"] = json!(l.model);
            }
            for (name, v) in METRICS.iter().zip(limit_values(l)) {
                if let Some(v) = v {
                    o[*name] = if name.starts_with("usd_") { json!(v as f64 / 1_000_000.0) } else { json!(v) };
                }
            }
            limits.push(o);
        }
        limits.sort_by_key(|o| (o["scope"].to_string(), o["target"].to_string(), o["model"].to_string()));
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                let mut o = json!({
                    "slug": s.slug, "kind": s.kind.as_str(), "name": s.name, "state": s.status.as_str(),
                    "visibility": s.visibility.as_str(), "approval": s.approval.as_str(), "spec": s.spec,
                });
                if s.status == ServiceStatus::Deprecated
                    && let Some(t) = s.sunset_at
                {
                    o["sunset"] = json!(rfc3339(t));
                }
                o
            })
            .collect();
        let mut doc = json!({"version": 1, "team": self.team.name, "apps": apps, "limits": limits, "services": services});
        if let Some(models) = &self.models {
            doc["models"] = Value::Array(
                models
                    .iter()
                    .map(|(m, lines)| {
                        let d: Vec<Value> =
                            lines.iter().map(|(p, model, w, pr)| json!({"provider": p, "model": model, "weight": w, "priority": pr})).collect();
                        json!({"name": m.name, "deployments": d})
                    })
                    .collect(),
            );
        }
        doc
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A limit row's values in [`METRICS`] order (USD as micro-dollars).
fn limit_values(l: &Limit) -> [Option<u64>; 7] {
    [l.rpm, l.concurrent, l.tpm, l.tokens_per_day, l.tokens_per_month, l.usd_micros_per_day, l.usd_micros_per_month]
}

fn set_limit_values(l: &mut Limit, v: [Option<u64>; 7]) {
    [l.rpm, l.concurrent, l.tpm, l.tokens_per_day, l.tokens_per_month, l.usd_micros_per_day, l.usd_micros_per_month] = v;
}

// ------------------------------------------------------------------------------ what the file asks for

struct DesiredLimit {
    path: String,
    scope: LimitScope,
    target: String,
    model: String,
    values: [Option<u64>; 7],
}

struct DesiredService {
    path: String,
    slug: String,
    kind: ServiceKind,
    name: String,
    state: ServiceStatus,
    sunset: Option<Timestamp>,
    visibility: Visibility,
    approval: ApprovalMode,
    /// Normalized (parsed and re-serialized) draft spec.
    spec: Value,
}

struct DesiredModel {
    path: String,
    name: String,
    deployments: Vec<DeploymentLine>,
}

struct Desired {
    apps: Vec<String>,
    limits: Vec<DesiredLimit>,
    services: Vec<DesiredService>,
    models: Option<Vec<DesiredModel>>,
}

/// An optional array of objects of the document (absent = empty).
fn list(f: &mut Fields, key: &str) -> std::result::Result<Vec<Fields>, ApiError> {
    match f.take(key) {
        None => Ok(Vec::new()),
        Some(v) => Fields::from_value(json!({ key: v }), "document")?.objects(key),
    }
}

fn text(f: &mut Fields, key: &str, max: usize) -> std::result::Result<String, ApiError> {
    let s = f.string(key)?;
    if s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(bad(&f.path(key), format!("`{key}` is at most {max} characters without control characters")));
    }
    Ok(s)
}

fn choice<T>(f: &mut Fields, key: &str, parse: fn(&str) -> Option<T>, names: &[&str], default: T) -> std::result::Result<T, ApiError> {
    match f.opt_string(key)? {
        None => Ok(default),
        Some(s) => parse(&s).ok_or_else(|| bad(&f.path(key), format!("`{key}` must be one of: {}", names.join(", ")))),
    }
}

fn metric(f: &mut Fields, key: &str) -> std::result::Result<Option<u64>, ApiError> {
    let path = f.path(key);
    match f.take(key) {
        None => Ok(None),
        Some(v) if key.starts_with("usd_") => match v.as_f64() {
            Some(x) if x.is_finite() && (0.0..=MAX_USD).contains(&x) => Ok(Some((x * 1_000_000.0).round() as u64)),
            _ => Err(bad(&path, format!("`{key}` must be a non-negative number of USD (at most 1e12)"))),
        },
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_VALUE => Ok(Some(n)),
            _ => Err(bad(&path, format!("`{key}` must be a non-negative integer"))),
        },
    }
}

impl Desired {
    fn parse(doc: Value, team_name: &str) -> std::result::Result<Desired, ApiError> {
        let mut f = Fields::from_value(doc, "document")?;
        f.deny_unknown(&["version", "team", "apps", "limits", "services", "models"])?;
        if f.take("version").and_then(|v| v.as_i64()) != Some(1) {
            return Err(bad("document.version", "`version` must be 1"));
        }
        let team = f.string("team")?;
        if team != team_name {
            return Err(bad("document.team", format!("the file is for team `{team}`, not `{team_name}`")));
        }
        let mut apps: Vec<String> = Vec::new();
        for mut a in list(&mut f, "apps")? {
            a.deny_unknown(&["name"])?;
            let name = a.string("name")?;
            if !gatehouse_config::valid_name(&name) {
                return Err(bad(&a.path("name"), "`name` must be 1-64 of a-z A-Z 0-9 . _ -"));
            }
            if apps.contains(&name) {
                return Err(bad(&a.path("name"), format!("app `{name}` is listed twice")));
            }
            apps.push(name);
        }
        let mut limits: Vec<DesiredLimit> = Vec::new();
        for mut l in list(&mut f, "limits")? {
            let mut allowed = vec!["scope", "target", "model"];
            allowed.extend(METRICS);
            l.deny_unknown(&allowed)?;
            let path = l.path("target").trim_end_matches(".target").to_string();
            let scope = match l.string("scope")?.as_str() {
                "team" => LimitScope::Team,
                "app" => LimitScope::App,
                _ => return Err(bad(&l.path("scope"), "`scope` must be `team` or `app`")),
            };
            let target = l.string("target")?;
            if scope == LimitScope::Team && target != team {
                return Err(bad(&l.path("target"), format!("a team limit's target must be the file's team `{team}`")));
            }
            let model = match l.take("model") {
                None => String::new(),
                Some(Value::String(s)) if s.chars().count() <= 200 && !s.chars().any(char::is_control) => s,
                Some(_) => return Err(bad(&l.path("model"), "`model` must be a public model name (\"\" = every model)")),
            };
            let mut values = [None; 7];
            for (slot, name) in values.iter_mut().zip(METRICS) {
                *slot = metric(&mut l, name)?;
            }
            if limits.iter().any(|o| o.scope == scope && o.target == target && o.model == model) {
                return Err(bad(&path, format!("the limits of {} `{target}` (model `{model}`) are listed twice", scope.as_str())));
            }
            limits.push(DesiredLimit { path, scope, target, model, values });
        }
        let mut services: Vec<DesiredService> = Vec::new();
        for mut s in list(&mut f, "services")? {
            s.deny_unknown(&["slug", "kind", "name", "state", "sunset", "visibility", "approval", "spec"])?;
            let path = s.path("slug").trim_end_matches(".slug").to_string();
            let slug = s.string("slug")?;
            check_slug(&slug).map_err(|e| bad(&s.path("slug"), e.message))?;
            if services.iter().any(|o| o.slug == slug) {
                return Err(bad(&s.path("slug"), format!("service `{slug}` is listed twice")));
            }
            let kind_text = s.string("kind")?;
            let kind = ServiceKind::parse(&kind_text)
                .ok_or_else(|| bad(&s.path("kind"), format!("`kind` must be one of: {}", ServiceKind::NAMES.join(", "))))?;
            let name = text(&mut s, "name", 200)?;
            let state = choice(&mut s, "state", ServiceStatus::parse, ServiceStatus::NAMES, ServiceStatus::Draft)?;
            let sunset = s.opt_time("sunset")?;
            match (state, sunset) {
                (ServiceStatus::Deprecated, None) => return Err(bad(&s.path("sunset"), "`state = \"deprecated\"` needs a `sunset` (RFC 3339)")),
                (ServiceStatus::Deprecated, Some(_)) | (_, None) => {}
                (_, Some(_)) => return Err(bad(&s.path("sunset"), "`sunset` goes only with `state = \"deprecated\"`")),
            }
            let visibility = choice(&mut s, "visibility", Visibility::parse, Visibility::NAMES, Visibility::Team)?;
            let approval = choice(&mut s, "approval", ApprovalMode::parse, ApprovalMode::NAMES, ApprovalMode::Manual)?;
            let spec_path = s.path("spec");
            let raw = s.take("spec").unwrap_or_else(|| json!({}));
            let spec = serde_json::to_value(ServiceSpec::parse(kind.as_str(), &raw, &spec_path)?).map_err(|_| ApiError::internal())?;
            services.push(DesiredService { path, slug, kind, name, state, sunset, visibility, approval, spec });
        }
        let models = Self::models(&mut f)?;
        Ok(Desired { apps, limits, services, models })
    }

    fn models(f: &mut Fields) -> std::result::Result<Option<Vec<DesiredModel>>, ApiError> {
        let Some(raw) = f.take("models") else { return Ok(None) };
        let mut holder = Fields::from_value(json!({ "models": raw }), "document")?;
        let mut out: Vec<DesiredModel> = Vec::new();
        for mut m in holder.objects("models")? {
            m.deny_unknown(&["name", "deployments"])?;
            let path = m.path("name").trim_end_matches(".name").to_string();
            let name = text(&mut m, "name", 256)?;
            if out.iter().any(|o| o.name == name) {
                return Err(bad(&m.path("name"), format!("model `{name}` is listed twice")));
            }
            let items = m.objects("deployments")?;
            if items.is_empty() {
                return Err(bad(&m.path("deployments"), "`deployments` needs at least one entry"));
            }
            let mut deployments = Vec::new();
            for mut d in items {
                d.deny_unknown(&["provider", "model", "weight", "priority"])?;
                let provider = d.string("provider")?;
                let model = text(&mut d, "model", 256)?;
                let weight = d.opt_int("weight", 0..=1_000_000)?.unwrap_or(1) as i32;
                let priority = d.opt_int("priority", -1_000_000..=1_000_000)?.unwrap_or(0) as i32;
                deployments.push((provider, model, weight, priority));
            }
            out.push(DesiredModel { path, name, deployments });
        }
        Ok(Some(out))
    }
}

// ------------------------------------------------------------------------------ the plan

/// One line of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    /// `create`, `update`, `unchanged` or `not_in_file`.
    pub action: &'static str,
    /// `app`, `limit`, `service` or `model`.
    pub kind: &'static str,
    /// The app/service/model name (a limit: `<scope> <target>[ (model m)]`).
    pub name: String,
    /// The printed line.
    pub summary: String,
}

fn item(action: &'static str, kind: &'static str, name: impl Into<String>, summary: String) -> PlanItem {
    PlanItem { action, kind, name: name.into(), summary }
}

struct Plan {
    changes: Vec<PlanItem>,
    unchanged: Vec<PlanItem>,
    not_in_file: Vec<PlanItem>,
    writes: ConfigChanges,
}

fn limit_name(scope: LimitScope, target: &str, model: &str) -> String {
    if model.is_empty() { format!("{} {target}", scope.as_str()) } else { format!("{} {target} (model {model})", scope.as_str()) }
}

fn show_values(v: &[Option<u64>; 7]) -> String {
    let parts: Vec<String> = METRICS
        .iter()
        .zip(v)
        .filter_map(|(m, x)| x.map(|x| if m.starts_with("usd_") { format!("{m}={}", x as f64 / 1_000_000.0) } else { format!("{m}={x}") }))
        .collect();
    if parts.is_empty() { "no limits".into() } else { parts.join(" ") }
}

async fn plan(svc: &AdminService, p: &Principal, cur: &Current, want: &Desired) -> std::result::Result<Plan, ApiError> {
    let mut plan = Plan { changes: Vec::new(), unchanged: Vec::new(), not_in_file: Vec::new(), writes: ConfigChanges::default() };
    let at = now();

    // models (installation-wide): a change needs a system admin
    let mut pending_models: Vec<String> = Vec::new();
    if let (Some(want_models), Some(have)) = (&want.models, &cur.models) {
        for m in want_models {
            pending_models.push(m.name.clone());
            let existing = have.iter().find(|(x, _)| x.name == m.name);
            if existing.is_some_and(|(_, lines)| *lines == m.deployments) {
                plan.unchanged.push(item("unchanged", "model", &m.name, format!("= model {}", m.name)));
                continue;
            }
            authorize(p, Scope::System, Permission::ModelsWrite)
                .map_err(|e| ApiError::new(e.code, format!("{}: public models are installation-wide; only a system admin may change them", m.path)).with_param(&m.path))?;
            let mut deployments = Vec::new();
            for (i, (provider, model, weight, priority)) in m.deployments.iter().enumerate() {
                let id = cur
                    .providers
                    .iter()
                    .find(|(n, _)| n == provider)
                    .map(|(_, id)| *id)
                    .ok_or_else(|| bad(&format!("{}.deployments[{i}].provider", m.path), format!("unknown provider `{provider}`")))?;
                deployments.push(Deployment { id: new_id(), provider_id: id, upstream_model: model.clone(), weight: *weight, priority: *priority });
            }
            let (action, sign) = if existing.is_some() { ("update", "~ update") } else { ("create", "+ create") };
            plan.changes.push(item(action, "model", &m.name, format!("{sign} model {}", m.name)));
            plan.writes.models.push(Model {
                id: existing.map(|(x, _)| x.id).unwrap_or_else(new_id),
                name: m.name.clone(),
                deployments,
                created_at: existing.map(|(x, _)| x.created_at).unwrap_or(at),
            });
        }
        for (m, _) in have {
            if !want_models.iter().any(|w| w.name == m.name) {
                plan.not_in_file.push(item("not_in_file", "model", &m.name, format!("? model {} is not in the file (left alone)", m.name)));
            }
        }
    }

    // apps
    let mut app_ids: Vec<(String, Id)> = cur.apps.iter().map(|a| (a.name.clone(), a.id)).collect();
    for name in &want.apps {
        if cur.apps.iter().any(|a| &a.name == name) {
            plan.unchanged.push(item("unchanged", "app", name, format!("= app {name}")));
            continue;
        }
        let app = App { id: new_id(), team_id: cur.team.id, name: name.clone(), created_at: at };
        app_ids.push((name.clone(), app.id));
        plan.changes.push(item("create", "app", name, format!("+ create app {name}")));
        plan.writes.apps.push(app);
    }
    for a in &cur.apps {
        if !want.apps.contains(&a.name) {
            plan.not_in_file.push(item("not_in_file", "app", &a.name, format!("? app {} is not in the file (left alone)", a.name)));
        }
    }

    // limits
    for l in &want.limits {
        let scope_id = match l.scope {
            LimitScope::App => app_ids.iter().find(|(n, _)| *n == l.target).map(|(_, id)| *id).ok_or_else(|| {
                bad(&format!("{}.target", l.path), format!("app `{}` is neither in the file's apps nor in the team", l.target))
            })?,
            _ => cur.team.id,
        }
        .hyphenated()
        .to_string();
        let name = limit_name(l.scope, &l.target, &l.model);
        let existing = cur.limits.iter().find(|x| x.scope == l.scope && x.scope_id == scope_id && x.model == l.model);
        if existing.is_some_and(|x| limit_values(x) == l.values) {
            plan.unchanged.push(item("unchanged", "limit", &name, format!("= limits of {name}")));
            continue;
        }
        let mut row = existing.cloned().unwrap_or(Limit {
            id: new_id(),
            scope: l.scope,
            scope_id,
            model: l.model.clone(),
            rpm: None,
            concurrent: None,
            tpm: None,
            tokens_per_day: None,
            tokens_per_month: None,
            usd_micros_per_day: None,
            usd_micros_per_month: None,
            created_at: at,
            updated_at: at,
        });
        set_limit_values(&mut row, l.values);
        row.updated_at = at;
        let (action, sign) = if existing.is_some() { ("update", "~ update") } else { ("create", "+ set") };
        plan.changes.push(item(action, "limit", &name, format!("{sign} limits of {name}: {}", show_values(&l.values))));
        plan.writes.limits.push(row);
    }
    for x in &cur.limits {
        let Some((_, target)) = cur.limit_target(x) else { continue };
        if !want.limits.iter().any(|l| l.scope == x.scope && l.target == target && l.model == x.model) {
            let name = limit_name(x.scope, &target, &x.model);
            plan.not_in_file.push(item("not_in_file", "limit", &name, format!("? limits of {name} are not in the file (left alone)")));
        }
    }

    // services
    for d in &want.services {
        let before = plan.changes.len();
        plan_service(svc, p, cur, d, &pending_models, at, &mut plan).await?;
        // an `ai` service gates public models installation-wide: changing one needs a system admin
        if plan.changes.len() > before {
            crate::apim::ai_service_guard(p, d.kind, &d.path)?;
        }
    }
    for s in &cur.services {
        if !want.services.iter().any(|d| d.slug == s.slug) {
            plan.not_in_file.push(item("not_in_file", "service", &s.slug, format!("? service {} is not in the file (left alone)", s.slug)));
        }
    }
    Ok(plan)
}

fn conflict(param: &str, message: String) -> ApiError {
    ApiError::new(ErrorCode::Conflict, format!("{param}: {message}")).with_param(param)
}

/// The draft spec of a stored service, normalized like a document's (`None` if it no longer
/// parses, which makes it differ from any document).
fn normalized(s: &Service) -> Option<Value> {
    ServiceSpec::parse(s.kind.as_str(), &s.spec, "spec").ok().and_then(|x| serde_json::to_value(x).ok())
}

async fn plan_service(
    svc: &AdminService,
    p: &Principal,
    cur: &Current,
    d: &DesiredService,
    pending_models: &[String],
    at: Timestamp,
    plan: &mut Plan,
) -> std::result::Result<(), ApiError> {
    let spec_path = format!("{}.spec", d.path);
    let sunset_path = format!("{}.sunset", d.path);
    let future = |t: Timestamp| if t > at { Ok(()) } else { Err(bad(&sunset_path, "`sunset` must be in the future")) };
    let Some(existing) = cur.services.iter().find(|s| s.slug == d.slug) else {
        let taken = svc.store().get_service_by_slug(&d.slug).await.map_err(|e| internal("reading a service", &e))?;
        if taken.is_some() {
            return Err(conflict(&format!("{}.slug", d.path), format!("the slug `{}` is taken by another team's service", d.slug)));
        }
        let mut s = Service {
            id: new_id(),
            team_id: cur.team.id,
            kind: d.kind,
            slug: d.slug.clone(),
            name: d.name.clone(),
            status: ServiceStatus::Draft,
            visibility: d.visibility,
            approval: d.approval,
            spec: d.spec.clone(),
            live_spec: None,
            version: 0,
            deprecated_at: None,
            sunset_at: None,
            created_at: at,
            updated_at: at,
        };
        let mut release = None;
        if matches!(d.state, ServiceStatus::Published | ServiceStatus::Deprecated) {
            let live = publishable(svc, &s, pending_models, &spec_path).await?;
            release = Some(next_release(p, &mut s, live, "config apply".into())?);
        }
        if let (ServiceStatus::Deprecated, Some(t)) = (d.state, d.sunset) {
            future(t)?;
            s.status = ServiceStatus::Deprecated;
            s.deprecated_at = Some(at);
            s.sunset_at = Some(t);
        }
        if d.state == ServiceStatus::Retired {
            s.status = ServiceStatus::Retired;
        }
        s.updated_at = at;
        plan.changes.push(item(
            "create",
            "service",
            &d.slug,
            format!("+ create service {} ({}, {})", d.slug, d.kind.as_str(), d.state.as_str()),
        ));
        plan.writes.services.push(ServiceWrite { service: s, create: true, release });
        return Ok(());
    };
    if existing.kind != d.kind {
        return Err(conflict(&format!("{}.kind", d.path), format!("the kind of a service cannot change (`{}` is `{}`)", d.slug, existing.kind.as_str())));
    }
    let mut s = existing.clone();
    let mut what: Vec<String> = Vec::new();
    if s.name != d.name {
        s.name = d.name.clone();
        what.push("name".into());
    }
    if s.visibility != d.visibility {
        s.visibility = d.visibility;
        what.push(format!("visibility {}", d.visibility.as_str()));
    }
    if s.approval != d.approval {
        s.approval = d.approval;
        what.push(format!("approval {}", d.approval.as_str()));
    }
    if normalized(existing).as_ref() != Some(&d.spec) {
        s.spec = d.spec.clone();
        what.push("draft spec".into());
    }
    let mut release = None;
    match (existing.status, d.state) {
        (ServiceStatus::Retired, ServiceStatus::Retired) if what.is_empty() => {}
        (ServiceStatus::Retired, _) => {
            return Err(conflict(&d.path, format!("service `{}` is retired: it cannot change (its file entry must say state = \"retired\" and match)", d.slug)));
        }
        (_, ServiceStatus::Retired) => {
            s.status = ServiceStatus::Retired;
            what.push("retire".into());
        }
        (ServiceStatus::Published | ServiceStatus::Deprecated, ServiceStatus::Draft) => {
            return Err(conflict(
                &format!("{}.state", d.path),
                format!("service `{}` is {}: it cannot go back to draft", d.slug, existing.status.as_str()),
            ));
        }
        (_, ServiceStatus::Draft) => {}
        (_, ServiceStatus::Published) => {
            // What the current release would be if made from this draft (the generated OpenAPI
            // document carries the release number, so probe with the current one).
            let mut probe = s.clone();
            probe.version = existing.version.saturating_sub(1);
            let same = existing.status == ServiceStatus::Published
                && existing.live_spec.as_ref() == Some(&publishable(svc, &probe, pending_models, &spec_path).await?);
            if !same {
                let live = publishable(svc, &s, pending_models, &spec_path).await?;
                let r = next_release(p, &mut s, live, "config apply".into())?;
                what.push(format!("publish release {}", r.version));
                release = Some(r);
            }
        }
        (_, ServiceStatus::Deprecated) => {
            if existing.status == ServiceStatus::Draft {
                let live = publishable(svc, &s, pending_models, &spec_path).await?;
                let r = next_release(p, &mut s, live, "config apply".into())?;
                what.push(format!("publish release {}", r.version));
                release = Some(r);
            }
            if let Some(t) = d.sunset
                && (s.status != ServiceStatus::Deprecated || s.sunset_at != Some(t))
            {
                future(t)?;
                s.status = ServiceStatus::Deprecated;
                s.deprecated_at = Some(s.deprecated_at.unwrap_or(at));
                s.sunset_at = Some(t);
                what.push(format!("deprecate (sunset {})", rfc3339(t)));
            }
        }
    }
    if what.is_empty() {
        plan.unchanged.push(item("unchanged", "service", &d.slug, format!("= service {}", d.slug)));
        return Ok(());
    }
    s.updated_at = at;
    plan.changes.push(item("update", "service", &d.slug, format!("~ update service {}: {}", d.slug, what.join(", "))));
    plan.writes.services.push(ServiceWrite { service: s, create: false, release });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(doc: Value) -> std::result::Result<Desired, ApiError> {
        Desired::parse(doc, "payments")
    }

    #[test]
    fn documents_are_checked_field_by_field() {
        let ok = parse(json!({"version": 1, "team": "payments", "apps": [{"name": "a"}],
            "limits": [{"scope": "app", "target": "a", "rpm": 5, "usd_per_day": 2.5}],
            "services": [{"slug": "orders", "kind": "rest", "name": "Orders", "spec": {"tags": ["x"]}}]}))
        .unwrap();
        assert_eq!(ok.apps, ["a"]);
        assert_eq!(ok.limits[0].values, [Some(5), None, None, None, None, Some(2_500_000), None]);
        assert_eq!(ok.services[0].state, ServiceStatus::Draft);
        assert!(ok.models.is_none());
        for (doc, param) in [
            (json!({"version": 2, "team": "payments"}), "document.version"),
            (json!({"version": 1, "team": "other"}), "document.team"),
            (json!({"version": 1, "team": "payments", "extra": 1}), "document.extra"),
            (json!({"version": 1, "team": "payments", "apps": [{"name": "a"}, {"name": "a"}]}), "document.apps[1].name"),
            (json!({"version": 1, "team": "payments", "apps": [{"name": "a", "x": 1}]}), "document.apps[0].x"),
            (json!({"version": 1, "team": "payments", "limits": [{"scope": "key", "target": "k"}]}), "document.limits[0].scope"),
            (json!({"version": 1, "team": "payments", "limits": [{"scope": "team", "target": "x"}]}), "document.limits[0].target"),
            (json!({"version": 1, "team": "payments", "limits": [{"scope": "team", "target": "payments", "rpm": -1}]}), "document.limits[0].rpm"),
            (json!({"version": 1, "team": "payments", "services": [{"slug": "Bad", "kind": "rest", "name": "x"}]}), "document.services[0].slug"),
            (json!({"version": 1, "team": "payments", "services": [{"slug": "s", "kind": "rest", "name": "x", "state": "deprecated"}]}), "document.services[0].sunset"),
            (json!({"version": 1, "team": "payments", "services": [{"slug": "s", "kind": "rest", "name": "x", "spec": {"models": ["m"]}}]}), "document.services[0].spec.models"),
            (json!({"version": 1, "team": "payments", "models": [{"name": "m", "deployments": []}]}), "document.models[0].deployments"),
        ] {
            let e = parse(doc.clone()).err().unwrap_or_else(|| panic!("accepted {doc}"));
            assert_eq!((e.code, e.param.as_deref()), (ErrorCode::InvalidRequest, Some(param)), "{doc}: {}", e.message);
        }
    }

    #[test]
    fn located_errors_name_the_field_in_the_message() {
        let e = located(bad("document.limits[0].target", "nope"));
        assert_eq!(e.message, "document.limits[0].target: nope");
        assert_eq!(located(e.clone()).message, e.message);
    }
}
