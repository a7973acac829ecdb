//! `gatehouse services|subscriptions` (issue 7): clients of `/admin/v1/services` and
//! `/admin/v1/subscriptions` (`gatehouse apps create|list|delete` is in `tenancy.rs`).
//!
//! ```text
//! gatehouse services create --kind rest --name Orders --slug orders --approval manual --spec orders.json
//! gatehouse services publish orders
//! gatehouse apps create shop-frontend --team default
//! gatehouse subscriptions request --app APP_ID --service orders --reason "checkout"
//! gatehouse subscriptions approve SUBSCRIPTION_ID
//! gatehouse services deprecate orders --sunset 2027-06-30T00:00:00Z
//! gatehouse services retire orders
//! ```

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Client, ClientArgs, finish, path_segment, rows, s, table};

/// `gatehouse services …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ServicesCmd {
    /// Create a draft service.
    Create {
        /// ai, rest or prompt.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
        /// URL-safe id: a-z, 0-9, `-` (REST services answer at /svc/SLUG/…).
        #[arg(long)]
        slug: String,
        /// Owning team id (default: the default team).
        #[arg(long, value_name = "ID")]
        team: Option<String>,
        /// team (default) or public.
        #[arg(long)]
        visibility: Option<String>,
        /// auto or manual (default).
        #[arg(long)]
        approval: Option<String>,
        /// The spec as a JSON file (`-` = stdin); see README "Services".
        #[arg(long, value_name = "FILE")]
        spec: Option<String>,
    },
    /// List services.
    List {
        #[arg(long, value_name = "ID")]
        team: Option<String>,
    },
    /// Show one service (id or slug) with its draft and live spec.
    Show { service: String },
    /// Edit the draft: name, visibility, approval, spec.
    Update {
        service: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        visibility: Option<String>,
        #[arg(long)]
        approval: Option<String>,
        #[arg(long, value_name = "FILE")]
        spec: Option<String>,
    },
    /// Publish the draft as a new immutable release.
    Publish {
        service: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Deprecate: answers carry Deprecation and Sunset headers until the sunset.
    Deprecate {
        service: String,
        /// RFC 3339 time, e.g. 2027-06-30T00:00:00Z.
        #[arg(long)]
        sunset: String,
    },
    /// Retire: calls are answered 410.
    Retire { service: String },
    /// Republish an earlier release (as a new release).
    Rollback {
        service: String,
        #[arg(long)]
        version: u32,
    },
    /// List releases, newest first.
    Releases { service: String },
    /// Differences between two releases.
    Diff {
        service: String,
        #[arg(long)]
        from: u32,
        #[arg(long)]
        to: u32,
    },
}

/// `gatehouse subscriptions …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SubscriptionsCmd {
    /// Ask for access of an app to a service (active at once for auto-approval services).
    Request {
        #[arg(long, value_name = "ID")]
        app: String,
        /// Service id or slug.
        #[arg(long)]
        service: String,
        #[arg(long)]
        reason: Option<String>,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Approve a pending subscription (owning team).
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Reject a pending subscription with a reason.
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Cancel a pending or active subscription.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// List subscriptions.
    List {
        #[arg(long, value_name = "ID")]
        app: Option<String>,
        #[arg(long = "service-id", value_name = "ID")]
        service_id: Option<String>,
        /// pending, active, rejected, cancelled or expired.
        #[arg(long)]
        status: Option<String>,
    },
}

fn read_spec(path: &str) -> Result<Value, String> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| format!("reading the spec from stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("the spec is not valid JSON: {e}"))
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    if let Some(v) = v {
        m.insert(k.into(), json!(v));
    }
}

fn service_line(v: &Value) {
    println!("{} {} ({}) {} v{} {}", s(&v["slug"]), s(&v["name"]), s(&v["kind"]), s(&v["status"]), s(&v["version"]), s(&v["endpoint"]));
    println!("id {}", s(&v["id"]));
}

fn sub_line(v: &Value) {
    println!("subscription {} {} app {} service {}", s(&v["id"]), s(&v["status"]), s(&v["app_id"]), s(&v["service_id"]));
}

/// Runs `gatehouse services …`.
pub async fn services(args: ClientArgs<ServicesCmd>) -> ExitCode {
    finish(run_services(args).await)
}

async fn run_services(args: ClientArgs<ServicesCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let seg = |x: &str| format!("/services/{}", path_segment(x));
    let v = match args.cmd {
        ServicesCmd::Create { kind, name, slug, team, visibility, approval, spec } => {
            let mut b = Map::new();
            put(&mut b, "kind", Some(kind));
            put(&mut b, "name", Some(name));
            put(&mut b, "slug", Some(slug));
            put(&mut b, "team_id", team);
            put(&mut b, "visibility", visibility);
            put(&mut b, "approval", approval);
            if let Some(p) = spec {
                b.insert("spec".into(), read_spec(&p)?);
            }
            c.call(Method::POST, "/services", Some(Value::Object(b))).await?
        }
        ServicesCmd::List { team } => {
            let q = team.map(|t| format!("?team_id={}", path_segment(&t))).unwrap_or_default();
            let v = c.call(Method::GET, &format!("/services{q}"), None).await?;
            if !c.json {
                let out = rows(&v)
                    .iter()
                    .map(|r| vec![s(&r["slug"]), s(&r["kind"]), s(&r["status"]), s(&r["version"]), s(&r["visibility"]), s(&r["approval"]), s(&r["id"])])
                    .collect();
                table(&["SLUG", "KIND", "STATUS", "VERSION", "VISIBILITY", "APPROVAL", "ID"], out);
                return Ok(());
            }
            v
        }
        ServicesCmd::Show { service } => c.call(Method::GET, &seg(&service), None).await?,
        ServicesCmd::Update { service, name, visibility, approval, spec } => {
            let mut b = Map::new();
            put(&mut b, "name", name);
            put(&mut b, "visibility", visibility);
            put(&mut b, "approval", approval);
            if let Some(p) = spec {
                b.insert("spec".into(), read_spec(&p)?);
            }
            c.call(Method::PATCH, &seg(&service), Some(Value::Object(b))).await?
        }
        ServicesCmd::Publish { service, note } => {
            let mut b = Map::new();
            put(&mut b, "note", note);
            c.call(Method::POST, &format!("{}/publish", seg(&service)), Some(Value::Object(b))).await?
        }
        ServicesCmd::Deprecate { service, sunset } => {
            c.call(Method::POST, &format!("{}/deprecate", seg(&service)), Some(json!({"sunset": sunset}))).await?
        }
        ServicesCmd::Retire { service } => c.call(Method::POST, &format!("{}/retire", seg(&service)), None).await?,
        ServicesCmd::Rollback { service, version } => {
            c.call(Method::POST, &format!("{}/rollback", seg(&service)), Some(json!({"version": version}))).await?
        }
        ServicesCmd::Releases { service } => {
            let v = c.call(Method::GET, &format!("{}/releases", seg(&service)), None).await?;
            if !c.json {
                let out = rows(&v).iter().map(|r| vec![s(&r["version"]), s(&r["created_at"]), s(&r["created_by"]), s(&r["note"])]).collect();
                table(&["VERSION", "CREATED", "BY", "NOTE"], out);
                return Ok(());
            }
            v
        }
        ServicesCmd::Diff { service, from, to } => {
            let v = c.call(Method::GET, &format!("{}/diff?from={from}&to={to}", seg(&service)), None).await?;
            if !c.json {
                for ch in v["changes"].as_array().cloned().unwrap_or_default() {
                    match ch["op"].as_str() {
                        Some("added") => println!("+ {} = {}", s(&ch["path"]), ch["to"]),
                        Some("removed") => println!("- {} (was {})", s(&ch["path"]), ch["from"]),
                        _ => println!("~ {}: {} -> {}", s(&ch["path"]), ch["from"], ch["to"]),
                    }
                }
                return Ok(());
            }
            v
        }
    };
    if c.json { c.print_json(&v) } else { service_line(&v) }
    Ok(())
}

/// Runs `gatehouse subscriptions …`.
pub async fn subscriptions(args: ClientArgs<SubscriptionsCmd>) -> ExitCode {
    finish(run_subscriptions(args).await)
}

async fn run_subscriptions(args: ClientArgs<SubscriptionsCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let seg = |id: &str, verb: &str| format!("/subscriptions/{}/{verb}", path_segment(id));
    let v = match args.cmd {
        SubscriptionsCmd::Request { app, service, reason, expires_at } => {
            let mut b = Map::new();
            put(&mut b, "app_id", Some(app));
            put(&mut b, "service", Some(service));
            put(&mut b, "reason", reason);
            put(&mut b, "expires_at", expires_at);
            c.call(Method::POST, "/subscriptions", Some(Value::Object(b))).await?
        }
        SubscriptionsCmd::Approve { id, reason, expires_at } => {
            let mut b = Map::new();
            put(&mut b, "reason", reason);
            put(&mut b, "expires_at", expires_at);
            c.call(Method::POST, &seg(&id, "approve"), Some(Value::Object(b))).await?
        }
        SubscriptionsCmd::Reject { id, reason } => c.call(Method::POST, &seg(&id, "reject"), Some(json!({"reason": reason}))).await?,
        SubscriptionsCmd::Cancel { id, reason } => {
            let mut b = Map::new();
            put(&mut b, "reason", reason);
            c.call(Method::POST, &seg(&id, "cancel"), Some(Value::Object(b))).await?
        }
        SubscriptionsCmd::List { app, service_id, status } => {
            let mut q = Vec::new();
            for (k, v) in [("app_id", app), ("service_id", service_id), ("status", status)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", path_segment(&v)));
                }
            }
            let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
            let v = c.call(Method::GET, &format!("/subscriptions{q}"), None).await?;
            if !c.json {
                let out = rows(&v)
                    .iter()
                    .map(|r| vec![s(&r["id"]), s(&r["status"]), s(&r["app_id"]), s(&r["service_id"]), s(&r["expires_at"]), s(&r["reason"])])
                    .collect();
                table(&["ID", "STATUS", "APP", "SERVICE", "EXPIRES", "REASON"], out);
                return Ok(());
            }
            v
        }
    };
    if c.json { c.print_json(&v) } else { sub_line(&v) }
    Ok(())
}
