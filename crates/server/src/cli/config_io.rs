//! `gatehouse config export|apply` (issue 7): a team's configuration as a declarative TOML file,
//! for teams that keep it in git. A thin client of `GET|POST /admin/v1/teams/{id}/config`
//! (`gatehouse_admin::team_config` owns the document, the validation, the plan and the one
//! transaction); this module only resolves the team name and converts TOML ⇄ JSON.
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
//! rpm = 600
//! usd_per_day = 25.0
//!
//! [[services]]          # the draft spec + the desired lifecycle state
//! slug = "orders"
//! kind = "rest"
//! name = "Orders"
//! state = "published"   # draft | published | deprecated (+ sunset) | retired
//! visibility = "team"
//! approval = "manual"
//! [services.spec]
//! description = "Orders of the shop"
//! tags = ["shop"]
//! routes = [{ path = "/orders/{id}", methods = ["GET"] }]
//! upstream = { nodes = [{ url = "http://10.0.0.1:8080" }] }
//!
//! [[models]]            # optional (export --models); changing them needs a system admin
//! name = "gpt"
//! deployments = [{ provider = "openai", model = "gpt-4o-mini", weight = 1, priority = 0 }]
//! ```
//!
//! `apply` sends the file as a dry run, prints the plan the server computed (`+ create`,
//! `~ update`, `? … not in the file (left alone)`), and unless `--dry-run` sends it again to
//! apply: the server writes every change in ONE transaction (all or nothing). A second apply of
//! the same file plans nothing. Nothing is ever deleted.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{Client, Conn, finish, path_segment, rows};

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
    /// Print a team's apps, limits and services (and, with --models, the public models) as TOML.
    Export {
        /// Team name or id.
        #[arg(long)]
        team: String,
        /// Include the installation-wide public models.
        #[arg(long)]
        models: bool,
    },
    /// Make the server match FILE: prints the plan, then applies it in one transaction
    /// (idempotent; nothing is deleted).
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
            let id = team_id(&c, &team).await?;
            let query = if models { "?models=true" } else { "" };
            let doc = c.call(reqwest::Method::GET, &format!("/teams/{}/config{query}", path_segment(&id)), None).await?;
            if c.json {
                c.print_json(&doc);
            } else {
                print!("{}", to_toml(&doc)?);
            }
            Ok(())
        }
        ConfigCmd::Apply { file, dry_run } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            let doc = from_toml(&text)?;
            let team = doc["team"].as_str().ok_or("`team` (a team name) is required")?;
            let path = format!("/teams/{}/config", path_segment(&team_id(&c, team).await?));
            let plan = c.call(reqwest::Method::POST, &path, Some(json!({ "document": doc, "dry_run": true }))).await?;
            let changes = print_plan(&plan);
            if changes == 0 {
                println!("no changes: the server matches {}", file.display());
                return Ok(());
            }
            if dry_run {
                println!("(dry run: {changes} change(s) not applied)");
                return Ok(());
            }
            let done = c.call(reqwest::Method::POST, &path, Some(json!({ "document": doc, "dry_run": false }))).await?;
            if done["changes"] != plan["changes"] {
                println!("the server changed since this plan was made; applied instead:");
                print_plan(&done);
            }
            println!("applied {} change(s) in one transaction", rows_of(&done, "changes").len());
            Ok(())
        }
    }
}

/// The id of a team the caller can see, by name or id. An id the caller cannot see is passed on
/// as given (the server answers 404 for it).
async fn team_id(c: &Client, team: &str) -> Result<String, String> {
    let teams = c.call(reqwest::Method::GET, "/teams", None).await?;
    let found = rows(&teams).into_iter().find(|t| t["name"] == team || t["id"] == team).and_then(|t| t["id"].as_str().map(str::to_string));
    match found {
        Some(id) => Ok(id),
        None if uuid::Uuid::parse_str(team).is_ok() => Ok(team.to_string()),
        None => Err(format!("no team `{team}` that you can see")),
    }
}

fn rows_of(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

/// Prints the changes, then the resources left alone; returns the number of changes.
fn print_plan(plan: &Value) -> usize {
    let changes = rows_of(plan, "changes");
    for line in changes.iter().chain(rows_of(plan, "not_in_file").iter()) {
        println!("{}", line["summary"].as_str().unwrap_or_default());
    }
    changes.len()
}

/// TOML text → the JSON document (datetimes become RFC 3339 strings).
fn from_toml(text: &str) -> Result<Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("the file is not valid TOML: {e}"))?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect::<Map<_, _>>()),
    }
}

/// The JSON document → TOML text. TOML has no `null`: a null anywhere is an error naming where.
fn to_toml(doc: &Value) -> Result<String, String> {
    match json_to_toml(doc, "")? {
        toml::Value::Table(t) => toml::to_string(&t).map_err(|e| format!("rendering TOML: {e}")),
        _ => Err("the server did not answer a configuration document".into()),
    }
}

fn json_to_toml(v: &Value, at: &str) -> Result<toml::Value, String> {
    Ok(match v {
        Value::Null => return Err(format!("`{at}` is null, which TOML cannot express; use --json")),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(format!("`{at}` = {n} does not fit a TOML integer; use --json")),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => {
            toml::Value::Array(a.iter().enumerate().map(|(i, x)| json_to_toml(x, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?)
        }
        Value::Object(o) => {
            let mut t = toml::Table::new();
            for (k, x) in o {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                t.insert(k.clone(), json_to_toml(x, &path)?);
            }
            toml::Value::Table(t)
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_round_trip() {
        let doc = json!({"version": 1, "team": "t", "apps": [{"name": "a"}],
            "limits": [{"scope": "app", "target": "a", "rpm": 5, "usd_per_day": 2.5}],
            "services": [{"slug": "s", "kind": "prompt", "state": "deprecated", "sunset": "2030-01-01T00:00:00Z",
                          "spec": {"tags": [], "prompts": [{"name": "p", "variables": {"type": "object", "required": ["x"]},
                                                           "parameters": {"temperature": 0.2, "max_tokens": 10}}]}}]});
        let text = to_toml(&doc).unwrap();
        assert_eq!(from_toml(&text).unwrap(), doc, "{text}");
        // an unquoted TOML datetime reads as its RFC 3339 text
        assert_eq!(from_toml("sunset = 2030-01-01T00:00:00Z").unwrap()["sunset"], "2030-01-01T00:00:00Z");
        let err = to_toml(&json!({"a": {"b": [1, null]}})).unwrap_err();
        assert!(err.contains("a.b[1]"), "{err}");
    }
}
