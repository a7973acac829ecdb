//! Shared by the server's integration-test binaries (included with `#[path]`): start the built
//! `gatehouse serve --demo` on free ports and capture its stdout and stderr as they arrive.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Variables of the developer's shell that would change what a spawned server or CLI does;
/// every test binary removes all of them.
#[allow(dead_code)] // not every test binary spawns the CLI itself
pub const SCRUB: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GATEHOUSE_CONFIG",
    "GATEHOUSE_DATA_DIR",
    "GATEHOUSE_DATABASE_URL",
    "GATEHOUSE_LISTEN",
    "GATEHOUSE_ADMIN_LISTEN",
    "GATEHOUSE_MASTER_KEY",
    "GATEHOUSE_OPERATOR_TOKEN",
    "GATEHOUSE_ADMIN_PASSWORD",
    "GATEHOUSE_ADMIN_URL",
    "GATEHOUSE_ADMIN_TOKEN",
    "GATEHOUSE_ENV",
    "GATEHOUSE_LOG",
    "GATEHOUSE_LOG_FORMAT",
    "GATEHOUSE_PUBLIC_URL",
    "GATEHOUSE_TRUSTED_PROXIES",
    "GATEHOUSE_TLS_CERT",
    "GATEHOUSE_TLS_KEY",
    "GATEHOUSE_TLS_CLIENT_CA",
    "GATEHOUSE_DPOP_NONCES",
    "GATEHOUSE_DPOP_REPLAY_WINDOW",
    "GATEHOUSE_REDIS_URL",
];

/// Spawns `BIN serve --demo` with debug logging, `data_dir` and optionally `--database-url`,
/// without the environment variables named in `scrub`. Returns the child and its stdout and
/// stderr, appended to by background threads until the process closes them.
#[allow(dead_code)] // not every test binary uses both entry points
pub fn spawn_serve(
    bin: &str,
    scrub: &[&str],
    data_dir: &Path,
    database_url: Option<&str>,
) -> (Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    spawn_serve_with(bin, scrub, data_dir, database_url, &[])
}

/// [`spawn_serve`] with `extra` flags appended to `serve` (e.g. `--tls-cert FILE`).
#[allow(dead_code)] // not every test binary uses both entry points
pub fn spawn_serve_with(
    bin: &str,
    scrub: &[&str],
    data_dir: &Path,
    database_url: Option<&str>,
    extra: &[&str],
) -> (Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("GATEHOUSE_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in scrub {
        cmd.env_remove(v);
    }
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().unwrap();
    let sink = stdout.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (child, stdout, stderr)
}
