//! `gatehouse config export|apply` (issue 7): a team's configuration as a declarative TOML file,
//! for teams that keep it in git. Over the admin API, like every client command.
//!
//! ```toml
//! version = 1
//! team = "payments"
//!
//! [[apps]]
//! name = "checkout"
//!
//! [[limits]]            # scope "team" (target: the team) or "app" (target: an app name)
//! scope = "app"
//! target = "checkout"
//! model = ""            # "" = every model
//! rpm = 600
//! usd_per_day = 25.0
//!
//! [[models]]            # optional; public models are installation-wide (system admins)
//! name = "gpt"
//! deployments = [{ provider = "openai", model = "gpt-4o-mini", weight = 1, priority = 0 }]
//! ```
//!
//! `apply` reads the file, validates all of it, computes the plan against the server and prints
//! it (`+ create`, `~ update`); `--dry-run` stops there. A second apply of the same file plans
//! nothing (idempotent). Nothing is deleted: resources missing from the file are reported as
//! `? not in file` and left alone. Every change is checked before the first one is made, so a bad
//! file changes nothing; the changes themselves are separate admin calls, not one transaction.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{Client, Conn, finish, path_segment, rows};

/// The limit metrics a file may set (integers, except the two `usd_*`).
const METRICS: [&str; 7] = ["rpm", "concurrent", "tpm", "tokens_per_day", "tokens_per_month", "usd_per_day", "usd_per_month"];

/// `gatehouse config …`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: ConfigCmd,
}

/// `gatehouse config export|apply`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCmd {
    /// Print a team's apps and limits (and, with --models, the public models) as TOML.
    Export {
        /// Team name or id.
        #[arg(long)]
        team: String,
        /// Include the installation-wide public models.
        #[arg(long)]
        models: bool,
    },
    /// Make the server match FILE: prints the plan, then applies it (idempotent).
    Apply {
        /// The TOML file.
        file: std::path::PathBuf,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Entry point of `gatehouse config`.
pub async fn config(args: ConfigArgs) -> ExitCode {
    finish(config_inner(args).await)
}

async fn config_inner(args: ConfigArgs) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        ConfigCmd::Export { team, models } => {
            let state = State::load(&c, &team, models).await?;
            print!("{}", state.to_toml()?);
            Ok(())
        }
        ConfigCmd::Apply { file, dry_run } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            let desired = Desired::parse(&text)?;
            let state = State::load(&c, &desired.team, desired.models.is_some()).await?;
            let plan = plan(&state, &desired)?;
            if plan.is_empty() {
                println!("no changes: the server matches {}", file.display());
                return Ok(());
            }
            for step in &plan {
                println!("{}", step.describe);
            }
            if dry_run {
                println!("(dry run: {} change(s) not applied)", plan.len());
                return Ok(());
            }
            for step in plan {
                apply_step(&c, &state, step).await?;
            }
            println!("applied");
            Ok(())
        }
    }
}

/// What the server has now.
struct State {
    team_id: String,
    team: String,
    /// (id, name)
    apps: Vec<(String, String)>,
    /// Limits of the team and its apps: (scope, target name, model, metrics).
    limits: Vec<(String, String, String, Map<String, Value>)>,
    /// Public models (when asked for): name → deployments.
    models: Option<Vec<(String, Value)>>,
}

impl State {
    async fn load(c: &Client, team: &str, with_models: bool) -> Result<State, String> {
        let teams = c.call(reqwest::Method::GET, "/teams", None).await?;
        let t = rows(&teams)
            .into_iter()
            .find(|t| t["name"] == team || t["id"] == team)
            .ok_or_else(|| format!("no team `{team}` that you can see"))?;
        let team_id = t["id"].as_str().unwrap_or_default().to_string();
        let apps_v = c.call(reqwest::Method::GET, &format!("/apps?team_id={}", path_segment(&team_id)), None).await?;
        let apps: Vec<(String, String)> = rows(&apps_v)
            .iter()
            .map(|a| (a["id"].as_str().unwrap_or_default().to_string(), a["name"].as_str().unwrap_or_default().to_string()))
            .collect();
        let limits_v = c.call(reqwest::Method::GET, "/limits", None).await?;
        let mut limits = Vec::new();
        for l in rows(&limits_v) {
            let scope = l["scope"].as_str().unwrap_or_default();
            let sid = l["scope_id"].as_str().unwrap_or_default();
            let target = match scope {
                "team" if sid == team_id => t["name"].as_str().unwrap_or_default().to_string(),
                "app" => match apps.iter().find(|(id, _)| id == sid) {
                    Some((_, name)) => name.clone(),
                    None => continue,
                },
                _ => continue,
            };
            let mut metrics = Map::new();
            for m in METRICS {
                if let Some(v) = l["limits"][m]["limit"].as_f64() {
                    metrics.insert(m.to_string(), number(m, v));
                }
            }
            limits.push((scope.to_string(), target, l["model"].as_str().unwrap_or_default().to_string(), metrics));
        }
        let models = if with_models {
            let v = c.call(reqwest::Method::GET, "/models", None).await?;
            Some(rows(&v).iter().map(|m| (m["name"].as_str().unwrap_or_default().to_string(), m["deployments"].clone())).collect())
        } else {
            None
        };
        Ok(State { team_id, team: t["name"].as_str().unwrap_or_default().to_string(), apps, limits, models })
    }

    fn to_toml(&self) -> Result<String, String> {
        let mut doc = toml::Table::new();
        doc.insert("version".into(), toml::Value::Integer(1));
        doc.insert("team".into(), toml::Value::String(self.team.clone()));
        let apps: Vec<Value> = self.apps.iter().map(|(_, n)| json!({ "name": n })).collect();
        let mut out = json!({ "apps": apps });
        out["limits"] = Value::Array(
            self.limits
                .iter()
                .map(|(scope, target, model, m)| {
                    let mut o = json!({ "scope": scope, "target": target, "model": model });
                    for (k, v) in m {
                        o[k] = v.clone();
                    }
                    o
                })
                .collect(),
        );
        if let Some(models) = &self.models {
            out["models"] = Value::Array(models.iter().map(|(n, d)| json!({ "name": n, "deployments": d })).collect());
        }
        let rest: toml::Table = serde_json::from_value(out).map_err(|e| format!("rendering TOML: {e}"))?;
        doc.extend(rest);
        toml::to_string(&doc).map_err(|e| format!("rendering TOML: {e}"))
    }
}

/// Integers for counts, floats for USD (as the limits API reports them).
fn number(metric: &str, v: f64) -> Value {
    if metric.starts_with("usd_") { json!(v) } else { json!(v as u64) }
}

/// What the file asks for.
struct Desired {
    team: String,
    apps: Vec<String>,
    limits: Vec<(String, String, String, Map<String, Value>)>,
    models: Option<Vec<(String, Value)>>,
}

impl Desired {
    fn parse(text: &str) -> Result<Desired, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("the file is not valid TOML: {e}"))?;
        let v = serde_json::to_value(&table).map_err(|e| format!("reading the file: {e}"))?;
        let obj = v.as_object().ok_or("the file must be a TOML table")?;
        for k in obj.keys() {
            if !["version", "team", "apps", "limits", "models"].contains(&k.as_str()) {
                return Err(format!("unknown top-level key `{k}` (expected version, team, apps, limits, models)"));
            }
        }
        if v["version"] != 1 {
            return Err("`version` must be 1".into());
        }
        let team = v["team"].as_str().ok_or("`team` (a team name) is required")?.to_string();
        let mut apps = Vec::new();
        for (i, a) in v["apps"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let name = a["name"].as_str().ok_or(format!("apps[{i}].name is required"))?;
            if apps.iter().any(|n| n == name) {
                return Err(format!("apps[{i}]: `{name}` is listed twice"));
            }
            apps.push(name.to_string());
        }
        let mut limits = Vec::new();
        for (i, l) in v["limits"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let o = l.as_object().ok_or(format!("limits[{i}] must be a table"))?;
            for k in o.keys() {
                if !["scope", "target", "model"].contains(&k.as_str()) && !METRICS.contains(&k.as_str()) {
                    return Err(format!("limits[{i}]: unknown key `{k}`"));
                }
            }
            let scope = l["scope"].as_str().ok_or(format!("limits[{i}].scope is required"))?;
            if scope != "team" && scope != "app" {
                return Err(format!("limits[{i}].scope must be `team` or `app`"));
            }
            let target = l["target"].as_str().ok_or(format!("limits[{i}].target is required"))?;
            if scope == "team" && target != team {
                return Err(format!("limits[{i}].target must be the file's team `{team}`"));
            }
            if scope == "app" && !apps.iter().any(|a| a == target) {
                return Err(format!("limits[{i}].target: app `{target}` is not in [[apps]]"));
            }
            let mut metrics = Map::new();
            for m in METRICS {
                match l.get(m) {
                    None => {}
                    Some(x) if m.starts_with("usd_") && x.as_f64().is_some_and(|f| f >= 0.0) => {
                        metrics.insert(m.into(), json!(x.as_f64().unwrap_or_default()));
                    }
                    Some(x) if x.as_u64().is_some() => {
                        metrics.insert(m.into(), x.clone());
                    }
                    Some(_) => return Err(format!("limits[{i}].{m} must be a non-negative number")),
                }
            }
            limits.push((scope.to_string(), target.to_string(), l["model"].as_str().unwrap_or("").to_string(), metrics));
        }
        let models = match v.get("models").and_then(Value::as_array) {
            None => None,
            Some(ms) => {
                let mut out = Vec::new();
                for (i, m) in ms.iter().enumerate() {
                    let name = m["name"].as_str().ok_or(format!("models[{i}].name is required"))?;
                    let d = m.get("deployments").filter(|d| d.as_array().is_some_and(|a| !a.is_empty()));
                    let d = d.ok_or(format!("models[{i}].deployments needs at least one entry"))?;
                    out.push((name.to_string(), normalize_deployments(d)));
                }
                Some(out)
            }
        };
        Ok(Desired { team, apps, limits, models })
    }
}

/// Deployments with defaults filled in (weight 1, priority 0), for comparison.
fn normalize_deployments(d: &Value) -> Value {
    Value::Array(
        d.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|x| {
                json!({
                    "provider": x["provider"], "model": x["model"],
                    "weight": x.get("weight").cloned().unwrap_or(json!(1)),
                    "priority": x.get("priority").cloned().unwrap_or(json!(0)),
                })
            })
            .collect(),
    )
}

/// One change.
struct Step {
    describe: String,
    action: Action,
}

enum Action {
    CreateApp(String),
    SetLimit { scope: String, target: String, model: String, metrics: Map<String, Value> },
    UpsertModel { name: String, deployments: Value },
    Note,
}

fn plan(state: &State, want: &Desired) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for a in &want.apps {
        if !state.apps.iter().any(|(_, n)| n == a) {
            steps.push(Step { describe: format!("+ create app {a}"), action: Action::CreateApp(a.clone()) });
        }
    }
    for (scope, target, model, metrics) in &want.limits {
        let current = state.limits.iter().find(|(s, t, m, _)| s == scope && t == target && m == model).map(|l| &l.3);
        let mut change = Map::new();
        for m in METRICS {
            let (now, wanted) = (current.and_then(|c| c.get(m)), metrics.get(m));
            let same = match (now, wanted) {
                (Some(a), Some(b)) => (a.as_f64().unwrap_or(-1.0) - b.as_f64().unwrap_or(-2.0)).abs() < 1e-6,
                (None, None) => true,
                _ => false,
            };
            if !same {
                change.insert(m.to_string(), wanted.cloned().unwrap_or(Value::Null));
            }
        }
        if !change.is_empty() {
            let sign = if current.is_some() { "~ update" } else { "+ set" };
            let what: Vec<String> = change.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let on = if model.is_empty() { String::new() } else { format!(" (model {model})") };
            steps.push(Step {
                describe: format!("{sign} limits of {scope} {target}{on}: {}", what.join(" ")),
                action: Action::SetLimit { scope: scope.clone(), target: target.clone(), model: model.clone(), metrics: change },
            });
        }
    }
    if let (Some(want_models), Some(have)) = (&want.models, &state.models) {
        for (name, deployments) in want_models {
            match have.iter().find(|(n, _)| n == name) {
                Some((_, d)) if normalize_deployments(d) == *deployments => {}
                found => steps.push(Step {
                    describe: format!("{} model {name}", if found.is_some() { "~ update" } else { "+ create" }),
                    action: Action::UpsertModel { name: name.clone(), deployments: deployments.clone() },
                }),
            }
        }
    }
    if !steps.is_empty() {
        for (_, n) in &state.apps {
            if !want.apps.contains(n) {
                steps.push(Step { describe: format!("? app {n} is not in the file (left alone)"), action: Action::Note });
            }
        }
    }
    Ok(steps)
}

async fn apply_step(c: &Client, state: &State, step: Step) -> Result<(), String> {
    match step.action {
        Action::Note => Ok(()),
        Action::CreateApp(name) => {
            c.call(reqwest::Method::POST, "/apps", Some(json!({ "team_id": state.team_id, "name": name }))).await.map(|_| ())
        }
        Action::SetLimit { scope, target, model, metrics } => {
            let id = if scope == "team" {
                state.team_id.clone()
            } else {
                // the app may have been created by an earlier step
                let v = c.call(reqwest::Method::GET, &format!("/apps?team_id={}", path_segment(&state.team_id)), None).await?;
                rows(&v)
                    .iter()
                    .find(|a| a["name"] == target.as_str())
                    .and_then(|a| a["id"].as_str().map(str::to_string))
                    .ok_or_else(|| format!("app `{target}` not found"))?
            };
            let mut body = json!({ "scope": scope, "id": id });
            if !model.is_empty() {
                body["model"] = json!(model);
            }
            for (k, v) in metrics {
                body[k] = v;
            }
            c.call(reqwest::Method::POST, "/limits", Some(body)).await.map(|_| ())
        }
        Action::UpsertModel { name, deployments } => {
            c.call(reqwest::Method::POST, "/models", Some(json!({ "name": name, "deployments": deployments }))).await.map(|_| ())
        }
    }
}
