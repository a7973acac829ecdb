//! The built `gatehouse` binary on free ports in a temp data dir, its CLI, and HTTP helpers
//! that keep every answer for the canary checks. (Same approach as `tests/e2e.rs`; kept
//! separate so the two suites can change independently.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../common/spawn.rs"]
mod spawn;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");


pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gh-tokops-{tag}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Server {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pub data: String,
    pub admin: String,
    /// The operator token printed at first start.
    pub token: String,
    /// Every response body and CLI output seen (for canary checks).
    pub seen: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

impl Server {
    /// `gatehouse serve --demo` with debug logging; `database_url` None = SQLite in `data_dir`.
    pub async fn start(data_dir: &Path, database_url: Option<&str>) -> Server {
        let (mut child, stdout, stderr) = spawn::spawn_serve(BIN, spawn::SCRUB, data_dir, database_url);
        let deadline = Instant::now() + Duration::from_secs(60);
        let (data, admin) = loop {
            let text = stdout.lock().unwrap().clone();
            let find = |label: &str| text.lines().find_map(|l| l.strip_prefix(label)).map(|a| a.trim().to_string());
            if let (Some(data), Some(admin)) = (find("gatehouse: data plane listening on "), find("gatehouse: admin API listening on ")) {
                break (data, admin);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited early with {status}\nstdout:\n{text}\nstderr:\n{}", stderr.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "server did not start\nstdout:\n{text}\nstderr:\n{}", stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = stdout.lock().unwrap().clone();
        let token = text.lines().find_map(|l| l.strip_prefix("operator token: ")).unwrap_or("").trim().to_string();
        assert!(token.starts_with("gtho_live_"), "{text}");
        let s = Server { child, stdout, stderr, data, admin, token, seen: Arc::default(), http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = s.http.get(format!("{}/healthz", s.admin)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "/healthz never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    /// stdout + stderr of the server so far.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }

    pub fn remember(&self, text: &str) {
        self.seen.lock().unwrap().push_str(text);
        self.seen.lock().unwrap().push('\n');
    }

    /// Every response body and CLI output seen so far.
    pub fn seen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    /// Runs the CLI against the admin API with `stdin`; returns (success, stdout, stderr).
    /// Outputs are remembered unless `secret_output` (a create command printing a secret once).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)], secret_output: bool) -> (bool, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        for v in spawn::SCRUB {
            cmd.env_remove(v);
        }
        cmd.env("GATEHOUSE_ADMIN_URL", &self.admin).env("GATEHOUSE_ADMIN_TOKEN", &self.token);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        let (o, e) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        if !secret_output {
            self.remember(&o);
        }
        self.remember(&e);
        (out.status.success(), o, e)
    }

    /// An admin API call with the operator token: (status, body).
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}/admin/v1{path}", self.admin)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.remember(&text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST /v1/chat/completions` with `credential` as Bearer: (status, body text).
    pub async fn chat(&self, credential: &str, model: &str, stream: bool) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.data))
            .bearer_auth(credential)
            .json(&serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello gatehouse"}]}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let mut text = format!("{:?}\n", r.headers());
        text.push_str(&r.text().await.unwrap_or_default());
        self.remember(&text);
        (status, text)
    }

    /// Client credentials grant with HTTP Basic: (status, body).
    pub async fn token_grant(&self, client_id: &str, secret: &str, scope: Option<&str>) -> (u16, Value) {
        let mut form = "grant_type=client_credentials".to_string();
        if let Some(s) = scope {
            form.push_str(&format!("&scope={}", s.replace(' ', "+").replace(':', "%3A")));
        }
        let r = self
            .http
            .post(format!("{}/oauth/token", self.data))
            .basic_auth(client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        // Token answers carry a token by design: not remembered as a leak sink.
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Audit events of one type (newest first).
    pub async fn audit(&self, event_type: &str) -> Vec<Value> {
        let (s, v) = self.admin(reqwest::Method::GET, &format!("/audit?event_type={event_type}&limit=1000"), None).await;
        assert_eq!(s, 200, "{v}");
        v["data"].as_array().cloned().unwrap_or_default()
    }

    /// SIGTERM, wait for exit; returns the exit status and the whole server output.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
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
        // The reader threads drain the pipes after exit.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.output().contains("audit log flushed") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The first line of a CLI output (where secrets shown once are printed).
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// `label: value` from a CLI output.
pub fn field(s: &str, label: &str) -> String {
    s.lines().find_map(|l| l.strip_prefix(&format!("{label}: "))).unwrap_or("").trim().to_string()
}

#[allow(dead_code)]
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Bytes of the SQLite database files in `data_dir` (main file, WAL, SHM).
#[allow(dead_code)]
pub fn sqlite_bytes(data_dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data_dir).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("gatehouse.db") {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}
