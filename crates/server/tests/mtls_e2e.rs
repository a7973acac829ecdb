//! End to end (issue 5, T30 / RFC 8705): `gatehouse serve --tls-cert … --tls-key …
//! --tls-client-ca …`, a certificate-bound OAuth client and API key created with the CLI
//! (`--mtls-bound`, `--mtls-cert`), used over the real TLS listener with and without the
//! client certificate; nothing secret in the server's output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;

#[path = "common/spawn.rs"]
mod spawn;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");


struct Server {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    data: String,
    admin: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path, extra: &[&str]) -> Server {
    let (mut child, stdout, stderr) = spawn::spawn_serve_with(BIN, spawn::SCRUB, data_dir, None, extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = stdout.lock().unwrap().clone();
        let find = |label: &str| text.lines().find_map(|l| l.strip_prefix(label)).map(|a| a.trim().to_string());
        if let (Some(data), Some(admin), Some(token)) =
            (find("gatehouse: data plane listening on "), find("gatehouse: admin API listening on "), find("operator token: "))
        {
            return Server { child, stdout, stderr, data, admin, token };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early with {status}\nstdout:\n{text}\nstderr:\n{}", stderr.lock().unwrap());
        }
        assert!(Instant::now() < deadline, "server did not start\nstdout:\n{text}\nstderr:\n{}", stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cli(s: &Server, args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for v in spawn::SCRUB {
        cmd.env_remove(v);
    }
    let out = cmd.env("GATEHOUSE_ADMIN_URL", &s.admin).env("GATEHOUSE_ADMIN_TOKEN", &s.token).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "e2e CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// (certificate PEM, certificate + key PEM) of a client certificate issued by `root`.
fn client(root: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, root).unwrap();
    (cert.pem(), format!("{}{}", cert.pem(), key.serialize_pem()))
}

fn http(ca_pem: &str, identity: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn models(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    http.get(format!("{base}/v1/models")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn serve_with_tls_binds_tokens_and_keys_to_client_certificates() {
    let dir: PathBuf = std::env::temp_dir().join(format!("gh-mtls-e2e-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = ca();
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = sp.signed_by(&server_key, &root).unwrap();
    let server_key_pem = server_key.serialize_pem();
    let (a_cert, a_id) = client(&root, "a");
    let (_, b_id) = client(&root, "b");
    let path = |n: &str, text: &str| {
        let p = dir.join(n);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (cert_file, key_file, ca_file, a_file) =
        (path("server.pem", &server_cert.pem()), path("server.key", &server_key_pem), path("ca.pem", &root.pem()), path("a.pem", &a_cert));
    let s = start(&dir.join("data"), &["--tls-cert", &cert_file, "--tls-key", &key_file, "--tls-client-ca", &ca_file]);
    assert!(s.data.starts_with("https://127.0.0.1:"), "{}", s.data);
    let ca_pem = root.pem();
    let (with_a, with_b, without) = (http(&ca_pem, Some(&a_id)), http(&ca_pem, Some(&b_id)), http(&ca_pem, None));

    // Metadata: https issuer, certificate-bound tokens advertised.
    let meta: Value = without.get(format!("{}/.well-known/oauth-authorization-server", s.data)).send().await.unwrap().json().await.unwrap();
    // (The default issuer names the configured listen address, here port 0.)
    assert!(meta["issuer"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{meta}");
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);

    // A certificate-bound OAuth client (CLI), its token over mTLS with certificate A.
    let out = cli(&s, &["oauth-clients", "create", "--name", "billing", "--mtls-bound"]);
    assert!(out.contains("tls_client_certificate_bound_access_tokens: true"), "{out}");
    let secret = out.lines().next().unwrap().trim().to_string();
    let client_id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).unwrap().trim().to_string();
    let token_req = |h: &reqwest::Client| {
        h.post(format!("{}/oauth/token", s.data))
            .basic_auth(&client_id, Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
    };
    assert_eq!(token_req(&without).await.unwrap().status(), 400);
    let v: Value = token_req(&with_a).await.unwrap().json().await.unwrap();
    let at = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(models(&with_a, &s.data, &at).await, 200);
    assert_eq!(models(&with_b, &s.data, &at).await, 401);
    assert_eq!(models(&without, &s.data, &at).await, 401);

    // An API key bound to certificate A by its PEM file (CLI).
    let out = cli(&s, &["keys", "create", "--name", "bound", "--mtls-cert", &a_file]);
    let key = out.lines().next().unwrap().trim().to_string();
    assert!(key.starts_with("gthk_live_"), "{out}");
    assert_eq!(models(&with_a, &s.data, &key).await, 200);
    assert_eq!(models(&with_b, &s.data, &key).await, 401);
    assert_eq!(models(&without, &s.data, &key).await, 401);

    // Nothing secret in the server's output.
    let output = format!("{}{}", s.stdout.lock().unwrap(), s.stderr.lock().unwrap());
    for canary in [at.as_str(), key.as_str(), secret.as_str(), "PRIVATE KEY"] {
        assert!(!output.contains(canary), "server output leaks a secret");
    }
    let body_of_key: String = server_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!output.contains(&body_of_key[..32]));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
