//! `gatehouse teams|users|apps|login` (issue 7): tenancy over the admin API.
//!
//! Teams and users are given by name or id. Passwords are never flags (flags show in `ps` and
//! shell history): they are read from `GATEHOUSE_PASSWORD` or, if unset, the first line of
//! standard input.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Client, ClientArgs, Conn, finish, path_segment, rows, s, table};

/// `gatehouse teams …`.
#[derive(Debug, Clone, Subcommand)]
pub enum TeamsCmd {
    /// Create a team (system admins).
    Create {
        /// Team name (1-64 of a-z A-Z 0-9 . _ -).
        name: String,
        /// A user (name or id) who becomes the team's first owner.
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// List the teams you can see.
    List,
    /// Team members: list, add (or change a role), remove.
    #[command(subcommand)]
    Members(MembersCmd),
}

/// `gatehouse teams members …`.
#[derive(Debug, Clone, Subcommand)]
pub enum MembersCmd {
    /// List a team's members.
    List {
        /// Team name or id.
        team: String,
    },
    /// Add a member, or change a member's role.
    Add {
        /// Team name or id.
        team: String,
        /// User name or id.
        user: String,
        /// owner, admin, developer or viewer.
        #[arg(long, default_value = "developer")]
        role: String,
    },
    /// Remove a member.
    Remove {
        /// Team name or id.
        team: String,
        /// User name or id.
        user: String,
    },
}

/// `gatehouse users …` (system admins).
#[derive(Debug, Clone, Subcommand)]
pub enum UsersCmd {
    /// Create a user; the password comes from GATEHOUSE_PASSWORD or the first stdin line.
    Create {
        /// Username (1-64 of a-z 0-9 . _ -).
        username: String,
        /// Give the user the system role admin (default: member).
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Change a user's system role.
    SetRole {
        /// User name or id.
        user: String,
        /// admin or member.
        role: String,
    },
    /// Set a user's password (from GATEHOUSE_PASSWORD or the first stdin line).
    SetPassword {
        /// User name or id.
        user: String,
    },
    /// Show who you are (user, system role, memberships).
    Me,
}

/// `gatehouse apps …`.
#[derive(Debug, Clone, Subcommand)]
pub enum AppsCmd {
    /// Create an app in a team.
    Create {
        /// App name (1-64 of a-z A-Z 0-9 . _ -).
        name: String,
        /// Team name or id.
        #[arg(long)]
        team: String,
    },
    /// List apps (of one team).
    List {
        /// Team name or id.
        #[arg(long)]
        team: Option<String>,
    },
    /// Delete an app (soft) and revoke its keys: they stop working on the next request.
    Delete {
        /// App id.
        id: String,
    },
}

/// `gatehouse login`: password login, then an operator token for the CLI (printed once).
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    conn: Conn,
    /// Your username.
    #[arg(long)]
    username: String,
    /// A label for the token.
    #[arg(long, default_value = "cli")]
    name: String,
    /// Token lifetime, e.g. 12h, 30d (default: 30d).
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    expires_in: String,
}

fn read_password() -> Result<SecretString, String> {
    if let Ok(p) = std::env::var("GATEHOUSE_PASSWORD")
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("reading the password from stdin: {e}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        return Err("no password: set GATEHOUSE_PASSWORD or pass it on stdin".into());
    }
    Ok(SecretString::from(p))
}

fn is_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// A team's id from its name or id.
async fn team_id(c: &Client, team: &str) -> Result<String, String> {
    if is_id(team) {
        return Ok(team.to_string());
    }
    let v = c.call(reqwest::Method::GET, "/teams", None).await?;
    rows(&v)
        .iter()
        .find(|t| t["name"] == team)
        .map(|t| s(&t["id"]))
        .ok_or_else(|| format!("no team named `{team}` that you can see"))
}

/// A user's id from its username or id (names need the system admin role).
async fn user_id(c: &Client, user: &str) -> Result<String, String> {
    if is_id(user) {
        return Ok(user.to_string());
    }
    let v = c.call(reqwest::Method::GET, "/users", None).await?;
    rows(&v)
        .iter()
        .find(|u| u["username"] == user)
        .map(|u| s(&u["id"]))
        .ok_or_else(|| format!("no user named `{user}`"))
}

/// Entry point of `gatehouse teams`.
pub async fn teams(args: ClientArgs<TeamsCmd>) -> ExitCode {
    finish(teams_inner(args).await)
}

async fn teams_inner(args: ClientArgs<TeamsCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let v = match args.cmd {
        TeamsCmd::Create { name, owner } => {
            let mut body = json!({ "name": name });
            if let Some(o) = owner {
                body["owner"] = json!(user_id(&c, &o).await?);
            }
            let v = c.call(reqwest::Method::POST, "/teams", Some(body)).await?;
            if !c.json {
                println!("created team {} ({})", s(&v["name"]), s(&v["id"]));
            }
            v
        }
        TeamsCmd::List => {
            let v = c.call(reqwest::Method::GET, "/teams", None).await?;
            if !c.json {
                table(&["ID", "NAME", "CREATED"], rows(&v).iter().map(|t| vec![s(&t["id"]), s(&t["name"]), s(&t["created_at"])]).collect());
            }
            v
        }
        TeamsCmd::Members(m) => members(&c, m).await?,
    };
    if c.json {
        c.print_json(&v);
    }
    Ok(())
}

async fn members(c: &Client, cmd: MembersCmd) -> Result<Value, String> {
    match cmd {
        MembersCmd::List { team } => {
            let t = team_id(c, &team).await?;
            let v = c.call(reqwest::Method::GET, &format!("/teams/{}/members", path_segment(&t)), None).await?;
            if !c.json {
                table(
                    &["USER ID", "USERNAME", "ROLE", "SINCE"],
                    rows(&v).iter().map(|m| vec![s(&m["user_id"]), s(&m["username"]), s(&m["role"]), s(&m["created_at"])]).collect(),
                );
            }
            Ok(v)
        }
        MembersCmd::Add { team, user, role } => {
            let (t, u) = (team_id(c, &team).await?, user_id(c, &user).await?);
            let path = format!("/teams/{}/members/{}", path_segment(&t), path_segment(&u));
            let v = c.call(reqwest::Method::PUT, &path, Some(json!({ "role": role }))).await?;
            if !c.json {
                println!("{} is {} of the team", s(&v["username"]), s(&v["role"]));
            }
            Ok(v)
        }
        MembersCmd::Remove { team, user } => {
            let (t, u) = (team_id(c, &team).await?, user_id(c, &user).await?);
            let path = format!("/teams/{}/members/{}", path_segment(&t), path_segment(&u));
            let v = c.call(reqwest::Method::DELETE, &path, None).await?;
            if !c.json {
                println!("removed");
            }
            Ok(v)
        }
    }
}

/// Entry point of `gatehouse users`.
pub async fn users(args: ClientArgs<UsersCmd>) -> ExitCode {
    finish(users_inner(args).await)
}

async fn users_inner(args: ClientArgs<UsersCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let v = match args.cmd {
        UsersCmd::Create { username, admin } => {
            let pw = read_password()?;
            let role = if admin { "admin" } else { "member" };
            let body = json!({ "username": username, "password": pw.expose_secret(), "system_role": role });
            let v = c.call(reqwest::Method::POST, "/users", Some(body)).await?;
            if !c.json {
                println!("created user {} ({}, {})", s(&v["username"]), s(&v["id"]), s(&v["system_role"]));
            }
            v
        }
        UsersCmd::List => {
            let v = c.call(reqwest::Method::GET, "/users", None).await?;
            if !c.json {
                table(
                    &["ID", "USERNAME", "SYSTEM ROLE", "CREATED"],
                    rows(&v).iter().map(|u| vec![s(&u["id"]), s(&u["username"]), s(&u["system_role"]), s(&u["created_at"])]).collect(),
                );
            }
            v
        }
        UsersCmd::SetRole { user, role } => {
            let id = user_id(&c, &user).await?;
            let v = c.call(reqwest::Method::PATCH, &format!("/users/{}", path_segment(&id)), Some(json!({ "system_role": role }))).await?;
            if !c.json {
                println!("{} is now {}", s(&v["username"]), s(&v["system_role"]));
            }
            v
        }
        UsersCmd::SetPassword { user } => {
            let id = user_id(&c, &user).await?;
            let pw = read_password()?;
            let v = c
                .call(reqwest::Method::PATCH, &format!("/users/{}", path_segment(&id)), Some(json!({ "password": pw.expose_secret() })))
                .await?;
            if !c.json {
                println!("password of {} changed", s(&v["username"]));
            }
            v
        }
        UsersCmd::Me => {
            let v = c.call(reqwest::Method::GET, "/me", None).await?;
            if !c.json {
                println!("{} ({}, system role {})", s(&v["user"]["username"]), s(&v["user"]["id"]), s(&v["user"]["system_role"]));
                let ms = v["memberships"].as_array().cloned().unwrap_or_default();
                table(&["TEAM ID", "TEAM", "ROLE"], ms.iter().map(|m| vec![s(&m["team_id"]), s(&m["team"]), s(&m["role"])]).collect());
            }
            v
        }
    };
    if c.json {
        c.print_json(&v);
    }
    Ok(())
}

/// Entry point of `gatehouse apps`.
pub async fn apps(args: ClientArgs<AppsCmd>) -> ExitCode {
    finish(apps_inner(args).await)
}

async fn apps_inner(args: ClientArgs<AppsCmd>) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let v = match args.cmd {
        AppsCmd::Create { name, team } => {
            let t = team_id(&c, &team).await?;
            let v = c.call(reqwest::Method::POST, "/apps", Some(json!({ "team_id": t, "name": name }))).await?;
            if !c.json {
                println!("created app {} ({})", s(&v["name"]), s(&v["id"]));
            }
            v
        }
        AppsCmd::List { team } => {
            let path = match team {
                Some(t) => format!("/apps?team_id={}", path_segment(&team_id(&c, &t).await?)),
                None => "/apps".to_string(),
            };
            let v = c.call(reqwest::Method::GET, &path, None).await?;
            if !c.json {
                table(
                    &["ID", "NAME", "TEAM ID", "CREATED"],
                    rows(&v).iter().map(|a| vec![s(&a["id"]), s(&a["name"]), s(&a["team_id"]), s(&a["created_at"])]).collect(),
                );
            }
            v
        }
        AppsCmd::Delete { id } => {
            let v = c.call(reqwest::Method::DELETE, &format!("/apps/{}", path_segment(&id)), None).await?;
            if !c.json {
                println!(
                    "deleted app {} ({} key(s), {} OAuth client(s), {} token(s) revoked; {} subscription(s) cancelled)",
                    s(&v["id"]),
                    v["revoked_keys"],
                    v["revoked_oauth_clients"],
                    v["revoked_tokens"],
                    v["cancelled_subscriptions"]
                );
            }
            v
        }
    };
    if c.json {
        c.print_json(&v);
    }
    Ok(())
}

/// Entry point of `gatehouse login`.
pub async fn login(args: LoginArgs) -> ExitCode {
    finish(login_inner(args).await)
}

async fn login_inner(args: LoginArgs) -> Result<(), String> {
    let base = args
        .conn
        .admin_url
        .clone()
        .or_else(|| std::env::var("GATEHOUSE_ADMIN_URL").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:8081".to_string());
    let base = base.trim_end_matches('/').to_string();
    let password = read_password()?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let unreachable = |e: reqwest::Error| format!("cannot reach the admin API at {base}: {}", e.without_url());
    let resp = http
        .post(format!("{base}/admin/v1/session"))
        .json(&json!({ "username": args.username, "password": password.expose_secret() }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let cookie = match (status.is_success(), cookie) {
        (true, Some(c)) => SecretString::from(c),
        _ => return Err(format!("{} (HTTP {})", body["error"]["message"].as_str().unwrap_or("login failed"), status.as_u16())),
    };
    // State-changing requests with the session cookie carry its CSRF token (issue 7, M8).
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_string();
    let resp = http
        .post(format!("{base}/admin/v1/me/tokens"))
        .header(reqwest::header::COOKIE, cookie.expose_secret())
        .header("x-csrf-token", &csrf)
        .json(&json!({ "name": args.name, "expires_in": args.expires_in }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let token: Value = resp.json().await.unwrap_or(Value::Null);
    // The session was only needed to mint the token: end it either way.
    let _ = http
        .delete(format!("{base}/admin/v1/session"))
        .header(reqwest::header::COOKIE, cookie.expose_secret())
        .header("x-csrf-token", &csrf)
        .send()
        .await;
    if !status.is_success() {
        return Err(format!("{} (HTTP {})", token["error"]["message"].as_str().unwrap_or("creating a token failed"), status.as_u16()));
    }
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&token).unwrap_or_default());
    } else {
        println!("{}", s(&token["token"]));
        eprintln!(
            "operator token {} for {} (expires {}); shown once: export GATEHOUSE_ADMIN_TOKEN=<the line above>",
            s(&token["hint"]),
            args.username,
            s(&token["expires_at"])
        );
    }
    Ok(())
}
