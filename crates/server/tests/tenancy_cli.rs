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
    std::fs::write(&file, desired).unwrap();
    let path = file.to_str().unwrap();
    let (ok, plan, err) = server.cli(&["config", "apply", path, "--dry-run"], None, &[], false);
    assert!(ok, "{err}");
    assert!(plan.contains("+ create app checkout") && plan.contains("rpm=600") && plan.contains("dry run"), "{plan}");
    let (ok, out, _) = server.cli(&["apps", "list"], None, &[], false);
    assert!(ok && !out.contains("checkout"), "a dry run changes nothing: {out}");

    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("applied"), "{out}{err}");
    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("no changes"), "idempotent: {out}{err}");

    // the export now round-trips to the same plan (nothing to do)
    let (ok, exported, _) = server.cli(&["config", "export", "--team", "payments"], None, &[], false);
    assert!(ok && exported.contains("checkout") && exported.contains("rpm = 600"), "{exported}");
    std::fs::write(&file, &exported).unwrap();
    let (ok, out, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(ok && out.contains("no changes"), "{out}{err}");

    // a bad file: a clear error, nothing applied
    std::fs::write(&file, desired.replace("target = \"checkout\"", "target = \"nope\"").replace("name = \"checkout\"", "name = \"billing\"")).unwrap();
    let (ok, _, err) = server.cli(&["config", "apply", path], None, &[], false);
    assert!(!ok && err.contains("limits[0].target"), "{err}");
    let (ok, out, _) = server.cli(&["apps", "list"], None, &[], false);
    assert!(ok && !out.contains("billing"), "{out}");
    let _ = server.terminate();
    let _ = std::fs::remove_dir_all(dir);
}
