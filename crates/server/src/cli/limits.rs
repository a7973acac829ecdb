//! `gatehouse limits set|list|remove` (issue 6): a client of `/admin/v1/limits`.
//!
//! ```text
//! gatehouse limits set --key ID --rpm 60 --tpm 100000 --usd-per-day 5
//! gatehouse limits set --team ID --model gpt-4o --tokens-per-day 2000000
//! gatehouse limits set --key ID --rpm none          # removes that one limit
//! gatehouse limits list                              # every limit with its usage
//! gatehouse limits remove LIMIT_ID
//! ```

use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};
use serde_json::{Map, Value, json};

use super::{Client, ClientArgs, finish, rows, s, table};

/// `gatehouse limits …`.
#[derive(Debug, Clone, Subcommand)]
pub enum LimitsCmd {
    /// Set limits of a team, app, key or model (given flags only; `none` removes a limit).
    #[command(group(ArgGroup::new("subject").required(true).args(["team", "app", "key", "for_model"])))]
    Set {
        #[arg(long, value_name = "ID")]
        team: Option<String>,
        #[arg(long, value_name = "ID")]
        app: Option<String>,
        #[arg(long, value_name = "ID")]
        key: Option<String>,
        /// Limits on every call of this public model, whoever makes it.
        #[arg(long = "for-model", value_name = "MODEL")]
        for_model: Option<String>,
        /// Narrow a team/app/key limit to calls of this public model.
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        /// Requests per minute.
        #[arg(long, value_name = "N|none")]
        rpm: Option<String>,
        /// Requests in flight at once.
        #[arg(long, value_name = "N|none")]
        concurrent: Option<String>,
        /// Tokens (input + output) per minute.
        #[arg(long, value_name = "N|none")]
        tpm: Option<String>,
        #[arg(long, value_name = "N|none")]
        tokens_per_day: Option<String>,
        #[arg(long, value_name = "N|none")]
        tokens_per_month: Option<String>,
        /// Spend budget in USD per UTC day.
        #[arg(long, value_name = "USD|none")]
        usd_per_day: Option<String>,
        /// Spend budget in USD per UTC month.
        #[arg(long, value_name = "USD|none")]
        usd_per_month: Option<String>,
    },
    /// List every limit with usage against it.
    List,
    /// Remove a limit row by id.
    Remove { id: String },
}

fn value(flag: &str, raw: &str, usd: bool) -> Result<Value, String> {
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    if usd {
        let x: f64 = raw
            .parse()
            .map_err(|_| format!("--{flag}: expected a number of USD or `none`"))?;
        return Ok(json!(x));
    }
    let n: u64 = raw
        .parse()
        .map_err(|_| format!("--{flag}: expected a non-negative integer or `none`"))?;
    Ok(json!(n))
}

/// Runs `gatehouse limits …`.
pub async fn limits(args: ClientArgs<LimitsCmd>) -> ExitCode {
    finish(run(args).await)
}

async fn run(args: ClientArgs<LimitsCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    match args.cmd {
        LimitsCmd::Set {
            team,
            app,
            key,
            for_model,
            model,
            rpm,
            concurrent,
            tpm,
            tokens_per_day,
            tokens_per_month,
            usd_per_day,
            usd_per_month,
        } => {
            let (scope, id) = match (team, app, key, for_model) {
                (Some(t), _, _, _) => ("team", t),
                (_, Some(a), _, _) => ("app", a),
                (_, _, Some(k), _) => ("key", k),
                (_, _, _, Some(m)) => ("model", m),
                _ => return Err("one of --team, --app, --key, --for-model is required".into()),
            };
            let mut body = Map::new();
            body.insert("scope".into(), json!(scope));
            body.insert("id".into(), json!(id));
            if let Some(m) = model {
                body.insert("model".into(), json!(m));
            }
            let flags = [
                ("rpm", rpm, false),
                ("concurrent", concurrent, false),
                ("tpm", tpm, false),
                ("tokens_per_day", tokens_per_day, false),
                ("tokens_per_month", tokens_per_month, false),
                ("usd_per_day", usd_per_day, true),
                ("usd_per_month", usd_per_month, true),
            ];
            let mut any = false;
            for (name, raw, usd) in flags {
                if let Some(raw) = raw {
                    body.insert(name.into(), value(&name.replace('_', "-"), &raw, usd)?);
                    any = true;
                }
            }
            if !any {
                return Err("give at least one limit, e.g. --rpm 60".into());
            }
            let v = c
                .call(reqwest::Method::POST, "/limits", Some(Value::Object(body)))
                .await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!(
                    "limits {} {}{}: {}",
                    s(&v["scope"]),
                    s(&v["scope_id"]),
                    model_suffix(&v),
                    limits_text(&v)
                );
                println!("id {}", s(&v["id"]));
            }
        }
        LimitsCmd::List => {
            let v = c.call(reqwest::Method::GET, "/limits", None).await?;
            if c.json {
                c.print_json(&v);
            } else {
                let mut out = Vec::new();
                for l in rows(&v) {
                    let Some(map) = l["limits"].as_object() else {
                        continue;
                    };
                    for (metric, m) in map {
                        out.push(vec![
                            s(&l["id"]),
                            format!(
                                "{} {}{}",
                                s(&l["scope"]),
                                s(&l["scope_id"]),
                                model_suffix(&l)
                            ),
                            metric.clone(),
                            s(&m["limit"]),
                            s(&m["used"]),
                            s(&m["remaining"]),
                            format!("{}s", m["reset_ms"].as_u64().unwrap_or(0).div_ceil(1000)),
                        ]);
                    }
                }
                table(
                    &[
                        "ID",
                        "SCOPE",
                        "LIMIT",
                        "VALUE",
                        "USED",
                        "REMAINING",
                        "RESETS IN",
                    ],
                    out,
                );
            }
        }
        LimitsCmd::Remove { id } => {
            let v = c
                .call(
                    reqwest::Method::DELETE,
                    &format!("/limits/{}", super::path_segment(&id)),
                    None,
                )
                .await?;
            if c.json {
                c.print_json(&v);
            } else {
                println!("removed limit {id}");
            }
        }
    }
    Ok(())
}

fn model_suffix(v: &Value) -> String {
    v["model"]
        .as_str()
        .map(|m| format!(" (model {m})"))
        .unwrap_or_default()
}

fn limits_text(v: &Value) -> String {
    v["limits"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k}={}", s(&x["limit"])))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
