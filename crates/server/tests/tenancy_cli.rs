//! Tenancy through the built binary and its CLI (issue 7): `users create` (password from stdin
//! and from GATEHOUSE_PASSWORD), `teams create|list|members add|list|remove`, `login` (a member's
//! own operator token, printed once), `apps create|list` with that token, `users me`, a member
//! refused an admin-only command; the passwords never reach the server's output, a CLI output or
//! the database file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "token_ops/support.rs"]
#[allow(dead_code)]
mod support;

use support::{Server, contains, first_line, sqlite_bytes, temp_dir};

const ALICE_PW: &str = "alice-canary-pw-0f9c2e";
const BOB_PW: &str = "bob-canary-pw-77aa31";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_users_apps_and_login_through_the_cli() {
    let dir = temp_dir("tenancy");
    let data_dir = dir.join("data");
    let server = Server::start(&data_dir, None).await;

    let (ok, out, err) = server.cli(&["users", "create", "alice"], Some(&format!("{ALICE_PW}\n")), &[], false);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("created user alice ("), "{out}");
    let (ok, _, err) = server.cli(&["users", "create", "bob"], None, &[("GATEHOUSE_PASSWORD", BOB_PW)], false);
    assert!(ok, "{err}");
    let (ok, _, err) = server.cli(&["users", "create", "carol"], Some("short\n"), &[], false);
    assert!(!ok && err.contains("password"), "{err}");

    let (ok, out, err) = server.cli(&["teams", "create", "payments", "--owner", "alice"], None, &[], false);
    assert!(ok && out.contains("created team payments"), "{out}{err}");
    let (ok, out, err) = server.cli(&["teams", "members", "add", "payments", "bob", "--role", "viewer"], None, &[], false);
    assert!(ok && out.contains("bob is viewer"), "{out}{err}");
    let (ok, out, _) = server.cli(&["teams", "members", "list", "payments"], None, &[], false);
    assert!(ok && out.contains("alice") && out.contains("owner") && out.contains("viewer"), "{out}");

    // alice logs in: one line, her own gtho_ token; the session used for it is ended
    let (ok, out, err) = server.cli(&["login", "--username", "alice", "--expires-in", "1h"], Some(&format!("{ALICE_PW}\n")), &[], true);
    assert!(ok, "{err}");
    let alice_token = first_line(&out);
    assert!(alice_token.starts_with("gtho_live_"), "{out}");
    assert!(err.contains("shown once"), "{err}");
    let (ok, _, err) = server.cli(&["login", "--username", "alice"], Some("wrong-password-123\n"), &[], false);
    assert!(!ok && err.contains("wrong username or password"), "{err}");

    let as_alice = [("GATEHOUSE_ADMIN_TOKEN", alice_token.as_str())];
    let (ok, out, err) = server.cli(&["apps", "create", "checkout", "--team", "payments"], None, &as_alice, false);
    assert!(ok && out.contains("created app checkout"), "{out}{err}");
    let (ok, out, _) = server.cli(&["apps", "list"], None, &as_alice, false);
    assert!(ok && out.contains("checkout") && !out.contains("default"), "alice sees only her team's apps: {out}");
    let (ok, out, _) = server.cli(&["teams", "list"], None, &as_alice, false);
    assert!(ok && out.contains("payments") && !out.contains("default"), "{out}");
    let (ok, out, _) = server.cli(&["users", "me"], None, &as_alice, false);
    assert!(ok && out.contains("alice") && out.contains("payments") && out.contains("owner"), "{out}");
    let (ok, _, err) = server.cli(&["providers", "list"], None, &as_alice, false);
    assert!(!ok && err.contains("permission_denied"), "{err}");
    let (ok, _, err) = server.cli(&["teams", "create", "other"], None, &as_alice, false);
    assert!(!ok && err.contains("HTTP 403"), "{err}");

    // bob (viewer) cannot create apps; after removal he sees nothing of the team
    let (ok, out, err) = server.cli(&["login", "--username", "bob"], None, &[("GATEHOUSE_PASSWORD", BOB_PW)], true);
    assert!(ok, "{err}");
    let bob_token = first_line(&out);
    let as_bob = [("GATEHOUSE_ADMIN_TOKEN", bob_token.as_str())];
    let (ok, _, err) = server.cli(&["apps", "create", "x", "--team", "payments"], None, &as_bob, false);
    assert!(!ok && err.contains("permission_denied"), "{err}");
    let (ok, _, err) = server.cli(&["teams", "members", "remove", "payments", "bob"], None, &[], false);
    assert!(ok, "{err}");
    let (ok, out, _) = server.cli(&["apps", "list"], None, &as_bob, false);
    assert!(ok && !out.contains("checkout"), "{out}");

    // no password in any output, log line or the database file
    let (_, logs) = server.terminate();
    for pw in [ALICE_PW, BOB_PW] {
        assert!(!logs.contains(pw), "server output holds a password");
        assert!(!contains(&sqlite_bytes(&data_dir), pw), "the database holds a password");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `config export` → edit → `config apply` shows the plan, applies it, and a second apply plans
/// nothing; a bad file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_export_apply_is_idempotent() {
    let dir = temp_dir("config");
    let server = Server::start(&dir.join("data"), None).await;
    let (ok, _, err) = server.cli(&["teams", "create", "payments"], None, &[], false);
    assert!(ok, "{err}");
    let (ok, exported, err) = server.cli(&["config", "export", "--team", "payments"], None, &[], false);
    assert!(ok, "{err}");
    assert!(exported.contains("team = \"payments\"") && exported.contains("version = 1"), "{exported}");

    let file = dir.join("payments.toml");
    let desired = r#"
version = 1
team = "payments"

[[apps]]
name = "checkout"

[[limits]]
scope = "app"
target = "checkout"
rpm = 600
usd_per_day = 25.5

[[limits]]
scope = "team"
target = "payments"
tokens_per_day = 1000000
"#;
    let desired = format!("{desired}{SERVICES}");
    std::fs::write(&file, &desired).unwrap();
    let path = file.to_str().unwrap();
    let (ok, plan, err) = server.cli(&["config", "apply", path, "--dry-run"], None, &[], false);
    assert!(ok, "{err}");
    assert!(plan.contains("+ create app checkout") && plan.contains("rpm=600") && plan.contains("dry run"), "{plan}");
    assert!(plan.contains("+ create service orders (rest, published)") && plan.contains("+ create service summaries (prompt, draft)"), "{plan}");
    let (ok, out, _) = server.cli(&["apps", "list"], None, &[], false);
    assert!(ok && !out.contains("checkout"), "a dry run changes nothing: {out}");
    assert_eq!(server.admin(reqwest::Method::GET, "/services/orders", None).await.0, 404, "a dry run changes nothing");

    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("applied"), "{out}{err}");
    // the plan is printed before the result
    let (plan_at, done_at) = (out.find("+ create service orders").unwrap(), out.find("applied").unwrap());
    assert!(plan_at < done_at, "{out}");
    let (_, orders) = server.admin(reqwest::Method::GET, "/services/orders", None).await;
    assert_eq!((orders["status"].as_str(), orders["version"].as_u64()), (Some("published"), Some(1)), "{orders}");
    assert_eq!(orders["live_spec"]["description"], "Orders of the shop");
    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("no changes"), "idempotent: {out}{err}");

    // the export now round-trips to the same plan (nothing to do)
    let (ok, exported, _) = server.cli(&["config", "export", "--team", "payments"], None, &[], false);
    assert!(ok && exported.contains("checkout") && exported.contains("rpm = 600"), "{exported}");
    assert!(exported.contains("[[services]]") && exported.contains("slug = \"orders\"") && exported.contains("state = \"published\""), "{exported}");
    assert!(exported.contains("template = \"Summarize {{text}}\"") && !exported.contains("[[models]]"), "{exported}");
    std::fs::write(&file, &exported).unwrap();
    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("no changes"), "{out}{err}");

    // a changed spec of the published service: updates the draft and publishes release 2
    std::fs::write(&file, exported.replace("Orders of the shop", "All orders")).unwrap();
    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("~ update service orders: draft spec, publish release 2"), "{out}{err}");
    let (_, orders) = server.admin(reqwest::Method::GET, "/services/orders", None).await;
    assert_eq!((orders["version"].as_u64(), orders["live_spec"]["description"].as_str()), (Some(2), Some("All orders")));

    // a bad file: a clear error, nothing applied
    std::fs::write(&file, desired.replace("target = \"checkout\"", "target = \"nope\"").replace("name = \"checkout\"", "name = \"billing\"")).unwrap();
    let (ok, _, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(!ok && err.contains("limits[0].target"), "{err}");
    let (ok, out, _) = server.cli(&["apps", "list"], None, &[], false);
    assert!(ok && !out.contains("billing"), "{out}");
    let _ = server.terminate();
    let _ = std::fs::remove_dir_all(dir);
}

/// Services of a configuration file: a published REST service and a draft prompt API.
const SERVICES: &str = r##"
[[services]]
slug = "orders"
kind = "rest"
name = "Orders"
state = "published"
approval = "auto"

[services.spec]
description = "Orders of the shop"
docs = "# Orders\nRead an order by id."
category = "shop"
tags = ["shop", "orders"]
routes = [{ path = "/orders/{id}", methods = ["GET"] }]
upstream = { nodes = [{ url = "http://10.255.255.1:9", weight = 2 }], timeout_ms = 5000 }

[[services]]
slug = "summaries"
kind = "prompt"
name = "Summaries"
visibility = "public"

[[services.spec.prompts]]
name = "short"
model = "gpt"
system = "You summarize."
template = "Summarize {{text}}"
variables = { type = "object", required = ["text"], properties = { text = { type = "string" } } }
parameters = { temperature = 0.2, max_tokens = 200 }
output_schema = { type = "object", required = ["summary"] }
"##;

/// A team owner exports and applies their own team (M5); a viewer is refused, another team's
/// owner sees nothing; the export of one server applied to a fresh server (PostgreSQL when
/// GATEHOUSE_TEST_DATABASE_URL is set) exports the identical file, and applying it again there
/// plans nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_by_the_team_owner_round_trips_to_a_fresh_server() {
    let dir = temp_dir("config-owner");
    let server = Server::start(&dir.join("a"), None).await;
    for (user, pw) in [("alice", ALICE_PW), ("bob", BOB_PW), ("carol", "carol-canary-pw-1d2e3f")] {
        let (ok, _, err) = server.cli(&["users", "create", user], None, &[("GATEHOUSE_PASSWORD", pw)], false);
        assert!(ok, "{err}");
    }
    for args in [
        &["teams", "create", "payments", "--owner", "alice"][..],
        &["teams", "create", "other", "--owner", "carol"],
        &["teams", "members", "add", "payments", "bob", "--role", "viewer"],
    ] {
        let (ok, _, err) = server.cli(args, None, &[], false);
        assert!(ok, "{args:?}: {err}");
    }
    let token = |user: &str, pw: &str| {
        let (ok, out, err) = server.cli(&["login", "--username", user], None, &[("GATEHOUSE_PASSWORD", pw)], true);
        assert!(ok, "{err}");
        first_line(&out)
    };
    let (alice, bob, carol) = (token("alice", ALICE_PW), token("bob", BOB_PW), token("carol", "carol-canary-pw-1d2e3f"));

    let file = dir.join("payments.toml");
    let path = file.to_str().unwrap();
    std::fs::write(&file, format!("version = 1\nteam = \"payments\"\n\n[[apps]]\nname = \"checkout\"\n\n[[limits]]\nscope = \"app\"\ntarget = \"checkout\"\nrpm = 60\n{SERVICES}")).unwrap();
    let as_alice = [("GATEHOUSE_ADMIN_TOKEN", alice.as_str())];
    let (ok, out, err) = server.cli(&["config", "apply", path], None, &as_alice, false);
    assert!(ok && out.contains("applied 4 change(s)"), "{out}{err}");
    let (ok, exported, err) = server.cli(&["config", "export", "--team", "payments"], None, &as_alice, false);
    assert!(ok && exported.contains("slug = \"summaries\"") && !exported.contains("[[models]]"), "{exported}{err}");

    // a viewer: 403; another team's owner: the team is invisible (404 by id)
    let (ok, _, err) = server.cli(&["config", "export", "--team", "payments"], None, &[("GATEHOUSE_ADMIN_TOKEN", bob.as_str())], false);
    assert!(!ok && err.contains("permission_denied") && err.contains("HTTP 403"), "{err}");
    let (ok, _, err) = server.cli(&["config", "apply", path, "--dry-run"], None, &[("GATEHOUSE_ADMIN_TOKEN", bob.as_str())], false);
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let (_, teams) = server.admin(reqwest::Method::GET, "/teams", None).await;
    let payments_id = teams["data"].as_array().unwrap().iter().find(|t| t["name"] == "payments").unwrap()["id"].as_str().unwrap().to_string();
    let as_carol = [("GATEHOUSE_ADMIN_TOKEN", carol.as_str())];
    let (ok, _, err) = server.cli(&["config", "export", "--team", &payments_id], None, &as_carol, false);
    assert!(!ok && err.contains("not_found") && err.contains("HTTP 404"), "{err}");
    let (ok, _, err) = server.cli(&["config", "export", "--team", "payments"], None, &as_carol, false);
    assert!(!ok && err.contains("no team `payments`"), "{err}");

    // a fresh server (the other backend when available) with the same team name
    let pg = match std::env::var("GATEHOUSE_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty()) {
        None => None,
        Some(base) => {
            let schema = format!("gh_cfg_{}", uuid::Uuid::now_v7().simple());
            let pool = sqlx::PgPool::connect(&base).await.unwrap();
            // the schema name is our own hex uuid, not input
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await.unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            Some((pool, schema.clone(), format!("{base}{sep}options=-c%20search_path%3D{schema}")))
        }
    };
    let fresh = Server::start(&dir.join("b"), pg.as_ref().map(|(_, _, url)| url.as_str())).await;
    let (ok, _, err) = fresh.cli(&["teams", "create", "payments"], None, &[], false);
    assert!(ok, "{err}");
    let copy = dir.join("exported.toml");
    std::fs::write(&copy, &exported).unwrap();
    let (ok, out, err) = fresh.cli(&["config", "apply", copy.to_str().unwrap()], None, &[], false);
    assert!(ok && out.contains("applied"), "{out}{err}");
    let (ok, again, err) = fresh.cli(&["config", "export", "--team", "payments"], None, &[], false);
    assert!(ok, "{err}");
    assert_eq!(again, exported, "export → apply to a fresh server → export gives the identical file");
    let (ok, out, err) = fresh.cli(&["config", "apply", copy.to_str().unwrap()], None, &[], false);
    assert!(ok && out.contains("no changes"), "{out}{err}");

    let _ = fresh.terminate();
    let _ = server.terminate();
    if let Some((pool, schema, _)) = pg {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}
