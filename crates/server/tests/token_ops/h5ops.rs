//! Credential-operations holes of issue 5 found by the break-it pass (M3, L3 a, L5) through the
//! built binary.

use reqwest::Method;
use serde_json::json;

use crate::support::{Server, temp_dir};

/// M3: a leak report also revokes OAuth client secrets (`gthc_`), access tokens (`gtha_`) and
/// single-use tokens (`gths_`); the answer is the same whether anything matched; every
/// revocation is audited with reason `leak_report`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m3_leak_report_revokes_client_secrets_access_and_single_use_tokens() {
    let dir = temp_dir("m3");
    let s = Server::start(&dir.join("data"), None).await;
    let (st, c) = s.admin(Method::POST, "/oauth-clients", Some(json!({"name": "leaky", "models": ["demo"]}))).await;
    assert_eq!(st, 201, "{c}");
    let client_id = c["id"].as_str().unwrap().to_string();
    let secret = c["client_secret"].as_str().unwrap().to_string();
    let (st, t) = s.token_grant(&client_id, &secret, None).await;
    assert_eq!(st, 200, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    // A second client whose access token alone is reported: the client itself stays live.
    let (_, c2) = s.admin(Method::POST, "/oauth-clients", Some(json!({"name": "other", "models": ["demo"]}))).await;
    let (c2_id, c2_secret) = (c2["id"].as_str().unwrap().to_string(), c2["client_secret"].as_str().unwrap().to_string());
    let (_, t2) = s.token_grant(&c2_id, &c2_secret, None).await;
    let access2 = t2["access_token"].as_str().unwrap().to_string();
    let (st, once) = s.admin(Method::POST, "/tokens/single-use", Some(json!({"name": "once", "single_use": true, "models": ["demo"]}))).await;
    assert_eq!(st, 201, "{once}");
    let (once_id, once) = (once["id"].as_str().unwrap().to_string(), once["token"].as_str().unwrap().to_string());
    assert_eq!(s.chat(&access2, "demo", false).await.0, 200);
    let (_, info) = s.admin(Method::POST, "/tokens/introspect", Some(json!({"token": access2}))).await;
    let access2_jti = info["jti"].as_str().unwrap().to_string();

    // Unknown but well-formed credentials of each kind, and a bad checksum: same answer.
    let unknown: Vec<String> = [gatehouse_auth::TokenKind::ClientSecret, gatehouse_auth::TokenKind::Access, gatehouse_auth::TokenKind::SingleUse]
        .into_iter()
        .map(|k| secrecy::ExposeSecret::expose_secret(&gatehouse_auth::generate(k, gatehouse_auth::Env::Live).unwrap().token).to_string())
        .collect();
    let mut bad_check = secret.clone();
    bad_check.pop();
    bad_check.push(if secret.ends_with('A') { 'B' } else { 'A' });
    let (st_unknown, v_unknown) = s.admin(Method::POST, "/credentials/report-leak", Some(json!({"tokens": [unknown[0], unknown[1], unknown[2]]}))).await;
    let (st_bad, v_bad) = s.admin(Method::POST, "/credentials/report-leak", Some(json!({"tokens": [bad_check, "x", "y"]}))).await;
    let (st_hit, v_hit) = s
        .admin(Method::POST, "/credentials/report-leak", Some(json!([{"token": secret, "type": "gatehouse_client_secret"}, {"token": access2}, {"token": once}])))
        .await;
    assert_eq!((st_unknown, st_bad, st_hit), (202, 202, 202));
    assert_eq!(v_unknown, v_hit, "the answer never says whether anything existed");
    assert_eq!(v_bad, v_hit);

    // The client secret no longer authenticates and the client's tokens are dead.
    assert_eq!(s.token_grant(&client_id, &secret, None).await.0, 401);
    assert_eq!(s.chat(&access, "demo", false).await.0, 401);
    // The reported access token is dead; its client is not.
    assert_eq!(s.chat(&access2, "demo", false).await.0, 401);
    assert_eq!(s.token_grant(&c2_id, &c2_secret, None).await.0, 200);
    // The single-use token was revoked before its one use.
    assert_eq!(s.chat(&once, "demo", false).await.0, 401);

    let counts: Vec<i64> = s.audit("leak.reported").await.iter().map(|e| e["details"]["revoked"].as_i64().unwrap()).collect();
    assert_eq!(counts, vec![3, 0, 0], "newest first");
    let clients = s.audit("oauth_client.revoked").await;
    assert!(clients.iter().any(|e| e["credential_id"] == client_id.as_str() && e["reason"] == "leak_report"), "{clients:?}");
    let tokens = s.audit("token.revoked").await;
    for id in [access2_jti, once_id] {
        assert!(tokens.iter().any(|e| e["credential_id"] == id.as_str() && e["reason"] == "leak_report"), "{id}: {tokens:?}");
    }
    // (Creation answers carry the secrets by design; the leak-report answers and the server's
    // output never do.)
    let (status, output) = s.terminate();
    assert!(status.success(), "{output}");
    for secret in [&secret, &access, &access2, &once] {
        assert!(!output.contains(secret.as_str()), "a reported secret reached the server output");
        assert!(!v_hit.to_string().contains(secret.as_str()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// L3 (a): a single-use token is revocable by its id with `gatehouse keys revoke ID` (and the
/// admin keys revoke route); the revoked token then fails its first use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3a_single_use_token_is_revoked_by_id_with_keys_revoke() {
    let dir = temp_dir("l3a");
    let s = Server::start(&dir.join("data"), None).await;
    let (ok, out, err) = s.cli(&["keys", "create", "--name", "once", "--single-use", "--models", "demo"], None, &[], true);
    assert!(ok, "{err}");
    let once = crate::support::first_line(&out);
    let once_id = crate::support::field(&out, "id");
    assert!(once.starts_with("gths_live_") && once_id.len() == 36, "{out}");
    let (ok, out, err) = s.cli(&["keys", "revoke", &once_id], None, &[], false);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&once_id), "{out}");
    assert_eq!(s.chat(&once, "demo", false).await.0, 401);
    let revoked = s.audit("token.revoked").await;
    assert!(revoked.iter().any(|e| e["credential_id"] == once_id.as_str()), "{revoked:?}");
    // The admin route answers the token in the key shape; revoking again is idempotent.
    let (st, v) = s.admin(Method::POST, &format!("/keys/{once_id}/revoke"), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["id"].as_str(), v["name"].as_str()), (Some(once_id.as_str()), Some("oauth:single_use")));
    assert!(v["revoked_at"].is_string(), "{v}");
    // An id that is neither a key nor a token is still 404.
    let (st, _) = s.admin(Method::POST, &format!("/keys/{}/revoke", uuid::Uuid::now_v7()), None).await;
    assert_eq!(st, 404);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// L5: CLI listings whose reader went away (`gatehouse audit | head -1`) exit quietly with
/// status 0 instead of panicking on the broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l5_cli_listings_exit_quietly_when_stdout_is_a_closed_pipe() {
    let dir = temp_dir("l5pipe");
    let s = Server::start(&dir.join("data"), None).await;
    for i in 0..5 {
        let (st, _) = s.admin(Method::POST, "/keys", Some(json!({"name": format!("k{i}")}))).await;
        assert_eq!(st, 201);
    }
    for args in [&["audit", "--limit", "100"][..], &["keys", "list"][..], &["logs"][..]] {
        let mut cmd = std::process::Command::new(crate::support::BIN);
        cmd.args(args)
            .env("GATEHOUSE_ADMIN_URL", &s.admin)
            .env("GATEHOUSE_ADMIN_TOKEN", &s.token)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // Close the read end at once: every write of the CLI hits a broken pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// L5: `serve` creates its data directory 0700 and the SQLite database files 0600.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l5_serve_creates_the_data_dir_0700_and_database_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("l5perm");
    let data = dir.join("data");
    let s = Server::start(&data, None).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut db_files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("gatehouse.db") {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            db_files += 1;
        }
    }
    assert!(db_files >= 1);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
