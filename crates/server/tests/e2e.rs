//! End to end: the built `gatehouse` binary with `--demo` on free ports in a temp data dir,
//! driven by its own CLI and by reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]


use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "common/spawn.rs"]
mod spawn;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");


fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-e2e-{tag}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Server {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    data: String,
    admin: String,
}

impl Server {
    fn start(data_dir: &Path, database_url: Option<&str>) -> Server {
        let (mut child, stdout, stderr) = spawn::spawn_serve(BIN, spawn::SCRUB, data_dir, database_url);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = stdout.lock().unwrap().clone();
            let find = |label: &str| {
                text.lines().find_map(|l| l.strip_prefix(label)).map(|a| a.trim().to_string())
            };
            if let (Some(data), Some(admin)) =
                (find("gatehouse: data plane listening on "), find("gatehouse: admin API listening on "))
            {
                return Server { child, stdout, stderr, data, admin };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited early with {status}\nstdout:\n{text}\nstderr:\n{}", stderr.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "server did not start\nstdout:\n{text}\nstderr:\n{}", stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!("{}{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let st = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(200));
        let out = self.output();
        (status, out)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI against the admin API; returns (success, stdout, stderr).
fn cli(admin: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for v in spawn::SCRUB {
        cmd.env_remove(v);
    }
    let out = cmd.env("GATEHOUSE_ADMIN_URL", admin).env("GATEHOUSE_ADMIN_TOKEN", token).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn wait_healthy(http: &reqwest::Client, admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{admin}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "/healthz never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chat(http: &reqwest::Client, data: &str, key: &str) -> (u16, Value) {
    let r = http
        .post(format!("{data}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hello gatehouse"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Everything an operator-visible sink may contain, for the canary checks.
#[derive(Default)]
struct Sinks {
    responses: String,
}

async fn admin_get(http: &reqwest::Client, admin: &str, token: &str, path: &str, sinks: &mut Sinks) -> Value {
    let r = http.get(format!("{admin}/admin/v1{path}")).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    let text = r.text().await.unwrap();
    sinks.responses.push_str(&text);
    serde_json::from_str(&text).unwrap()
}

fn sqlite_bytes(data_dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data_dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("gatehouse.db") {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The whole scenario; `database_url` None = SQLite in the data dir.
async fn scenario(database_url: Option<&str>) {
    let dir = temp_dir(if database_url.is_some() { "pg" } else { "sqlite" });
    let data_dir = dir.join("data");
    let http = reqwest::Client::new();
    let mut sinks = Sinks::default();
    let mut logs_of_runs = String::new();

    // --- first start: token and password printed once
    let server = Server::start(&data_dir, database_url);
    wait_healthy(&http, &server.admin).await;
    let out = server.stdout();
    let token_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("operator token: ")).collect();
    assert_eq!(token_lines.len(), 1, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("admin password: ")).count(), 1);
    let token = token_lines[0].trim_start_matches("operator token: ").trim().to_string();
    assert!(token.starts_with("gtho_live_"), "{token}");

    // master key file: 0600
    let mode = std::fs::metadata(data_dir.join("master.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "master.key mode {mode:o}");

    // --- canary provider key through the admin API
    let canary = format!("sk-canary-{}", uuid::Uuid::now_v7().simple());
    let r = http
        .post(format!("{}/admin/v1/providers", server.admin))
        .bearer_auth(&token)
        .json(&json!({"name": "canary", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": canary}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    sinks.responses.push_str(&r.text().await.unwrap());

    // --- key via CLI
    let (ok, stdout, stderr) = cli(&server.admin, &token, &["keys", "create", "--name", "e2e", "--models", "demo,demo-claude", "--expires-in", "1h"]);
    assert!(ok, "keys create failed: {stderr}");
    let key = stdout.lines().next().unwrap().trim().to_string();
    assert!(key.starts_with("gthk_live_"), "{stdout}");
    let key_id = stdout.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().trim().to_string();
    let (ok, list, _) = cli(&server.admin, &token, &["keys", "list"]);
    assert!(ok);
    assert!(list.contains(&key_id) && !list.contains(&key), "{list}");
    let (ok, providers, _) = cli(&server.admin, &token, &["providers", "list"]);
    assert!(ok && providers.contains("canary") && !providers.contains(&canary), "{providers}");

    // --- data plane with the key
    let (status, body) = chat(&http, &server.data, &key).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].is_string(), "{body}");
    sinks.responses.push_str(&body.to_string());

    // --- revoke via CLI → next call 401
    let (ok, _, stderr) = cli(&server.admin, &token, &["keys", "revoke", &key_id]);
    assert!(ok, "{stderr}");
    let (status, body) = chat(&http, &server.data, &key).await;
    assert_eq!(status, 401, "{body}");
    sinks.responses.push_str(&body.to_string());
    for path in ["/keys?include_revoked=true", "/providers", "/models", "/teams", "/apps"] {
        admin_get(&http, &server.admin, &token, path, &mut sinks).await;
    }

    // --- routing health and /metrics on the admin listener (issue 6)
    let health = admin_get(&http, &server.admin, &token, "/health/deployments", &mut sinks).await;
    assert!(health["keys"].as_array().unwrap().iter().any(|k| k["provider"] == "canary" && k["status"] == "active"), "{health}");
    assert!(health["deployments"].as_array().unwrap().iter().any(|d| d["model"] == "demo" && d["state"] == "closed"), "{health}");
    let r = http.get(format!("{}/admin/v1/health/deployments", server.admin)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "the health API needs the operator token");
    let r = http.get(format!("{}/metrics", server.admin)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let metrics = r.text().await.unwrap();
    for name in ["gatehouse_requests_total", "gatehouse_upstream_attempts_total", "gatehouse_deployment_circuit_state", "gatehouse_provider_key_status"] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    sinks.responses.push_str(&metrics);

    // --- SIGTERM → exit 0
    let (status, output) = server.terminate();
    assert!(status.success(), "exit status {status}\n{output}");
    logs_of_runs.push_str(&output);

    // --- second start prints no secret; the calls are in the log
    let server = Server::start(&data_dir, database_url);
    wait_healthy(&http, &server.admin).await;
    let out = server.stdout();
    assert!(!out.contains("operator token:") && !out.contains("admin password:"), "{out}");
    let logs = admin_get(&http, &server.admin, &token, "/logs?limit=100", &mut sinks).await;
    let rows = logs["data"].as_array().unwrap();
    assert!(rows.iter().any(|l| l["status"] == 200 && l["model"] == "demo" && l["credential_id"] == key_id.as_str()), "{logs}");
    assert!(rows.iter().any(|l| l["status"] == 401), "{logs}");
    let (ok, table, _) = cli(&server.admin, &token, &["logs", "--model", "demo"]);
    assert!(ok && table.contains("demo"), "{table}");
    let (status, output) = server.terminate();
    assert!(status.success(), "{output}");
    logs_of_runs.push_str(&output);

    // --- canaries: never in responses, server output, or stored bytes
    for secret in [&canary, &key] {
        assert!(!sinks.responses.contains(secret.as_str()), "a secret leaked into an admin/data response");
        assert!(!logs_of_runs.contains(secret.as_str()), "a secret leaked into the server's stdout/stderr");
    }
    match database_url {
        None => {
            let bytes = sqlite_bytes(&data_dir);
            assert!(bytes.len() > 1000);
            assert!(!contains(&bytes, &canary), "provider key in the SQLite file");
            assert!(!contains(&bytes, &key), "API key in the SQLite file");
            assert!(!contains(&bytes, &token), "operator token in the SQLite file");
        }
        Some(url) => {
            let store = gatehouse_store::connect(url).await.unwrap();
            let dump = store.debug_dump().await.unwrap();
            assert!(dump.contains("canary"), "the dump covers the providers table");
            assert!(!dump.contains(&canary), "provider key in PostgreSQL");
            assert!(!dump.contains(&key), "API key in PostgreSQL");
            assert!(!dump.contains(&token), "operator token in PostgreSQL");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sqlite_demo_keys_revoke_shutdown_logs_and_canaries() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_postgres_demo_keys_revoke_shutdown_logs_and_canaries() {
    let Some(base) = std::env::var("GATEHOUSE_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty()) else {
        println!("skipped: e2e_postgres_demo_keys_revoke_shutdown_logs_and_canaries (GATEHOUSE_TEST_DATABASE_URL not set)");
        return;
    };
    let schema = format!("gh_e2e_{}", uuid::Uuid::now_v7().simple());
    let pool = sqlx::PgPool::connect(&base).await.unwrap();
    // the schema name is our own hex uuid, not input
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    scenario(Some(&url)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.unwrap();
}

#[test]
fn check_config_reports_every_error_and_ok() {
    let dir = temp_dir("check");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"nope\"\ncolour = 1\n[[providers]]\nname = \"p\"\nkind = \"palm\"\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"ghost\", model = \"x\" }]\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&bad).env_remove("OPENAI_API_KEY").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("colour"), "{err}");
    // structural errors come first; fix them and the semantic ones are all listed
    std::fs::write(
        &bad,
        "listen = \"nope\"\n[[providers]]\nname = \"p\"\nkind = \"palm\"\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"ghost\", model = \"x\" }]\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&bad).env_remove("OPENAI_API_KEY").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in ["listen", "providers[0].kind", "models[0].deployments[0].provider"] {
        assert!(err.contains(path), "missing {path}: {err}");
    }
    let good = dir.join("good.toml");
    std::fs::write(&good, "listen = \"127.0.0.1:9000\"\n[[providers]]\nname = \"local\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n[[models]]\nname = \"llama\"\ndeployments = [{ provider = \"local\", model = \"llama3\" }]\n").unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_without_token_fails_clearly() {
    let mut cmd = Command::new(BIN);
    for v in spawn::SCRUB {
        cmd.env_remove(v);
    }
    let out = cmd.args(["keys", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEHOUSE_ADMIN_TOKEN"));
}
