//! Operations side of the token system through the built binary (issue 5): OAuth clients,
//! revocation and introspection in the admin API and CLI, `keys create --single-use`, the audit
//! records of those events, and the canary run over every success and error path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod canary;
mod h5ops;
mod support;

use reqwest::Method;
use serde_json::json;

use support::{Server, field, first_line, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_clients_tokens_and_single_use_through_the_cli() {
    let dir = temp_dir("cli");
    let s = Server::start(&dir.join("data"), None).await;

    // --- oauth-clients create: secret once (first line), then the id.
    let (ok, out, err) = s.cli(&["oauth-clients", "create", "--name", "ci", "--scopes", "chat:invoke", "--models", "demo"], None, &[], true);
    assert!(ok, "{err}");
    let secret = first_line(&out);
    assert!(secret.starts_with("gthc_live_"), "{out}");
    let client_id = field(&out, "client_id");
    assert_eq!(client_id.len(), 36, "{out}");
    assert!(err.contains("shown only once"), "{err}");
    let (ok, list, _) = s.cli(&["oauth-clients", "list"], None, &[], false);
    assert!(ok && list.contains(&client_id) && list.contains("chat:invoke") && !list.contains(&secret), "{list}");

    // --- a token from the client works on the data plane.
    let (st, t) = s.token_grant(&client_id, &secret, None).await;
    assert_eq!(st, 200, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("gtha_live_"));
    assert_eq!(s.chat(&access, "demo", false).await.0, 200);

    // --- tokens introspect (stdin): active, the client, the scope; never the token.
    let (ok, out, err) = s.cli(&["tokens", "introspect"], Some(&format!("{access}\n")), &[], false);
    assert!(ok, "{err}");
    assert_eq!(field(&out, "active"), "true", "{out}");
    assert_eq!(field(&out, "client_id"), client_id, "{out}");
    assert_eq!(field(&out, "scope"), "chat:invoke", "{out}");
    assert!(!out.contains(&access) && !err.contains(&access));

    // --- tokens revoke (--token-env): the next call fails; introspection says inactive.
    let (ok, out, err) = s.cli(&["tokens", "revoke", "--token-env", "TOK"], None, &[("TOK", &access)], false);
    assert!(ok, "{err}");
    assert!(out.starts_with("revoked access "), "{out}");
    let jti = out.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(s.chat(&access, "demo", false).await.0, 401);
    let (ok, out, _) = s.cli(&["tokens", "introspect", "--json"], Some(&access), &[], false);
    assert!(ok);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), json!({"active": false}));
    // Revoking again is not an error (RFC 7009 §2.2) but says nothing was revoked.
    let (ok, out, _) = s.cli(&["tokens", "revoke"], Some(&access), &[], false);
    assert!(ok && out.starts_with("nothing revoked"), "{out}");
    // No token given at all → a clear error, exit 1.
    let (ok, _, err) = s.cli(&["tokens", "revoke"], Some("\n"), &[], false);
    assert!(!ok && err.contains("no token given"), "{err}");

    // --- revoking the client kills its live tokens and its secret.
    let (_, t) = s.token_grant(&client_id, &secret, None).await;
    let second = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.chat(&second, "demo", false).await.0, 200);
    let (ok, out, err) = s.cli(&["oauth-clients", "revoke", &client_id], None, &[], false);
    assert!(ok && out.contains(&client_id), "{out}{err}");
    assert_eq!(s.chat(&second, "demo", false).await.0, 401);
    assert_eq!(s.token_grant(&client_id, &secret, None).await.0, 401);
    let (ok, list, _) = s.cli(&["oauth-clients", "list"], None, &[], false);
    assert!(ok && !list.contains(&client_id), "revoked clients are hidden by default: {list}");
    let (ok, list, _) = s.cli(&["oauth-clients", "list", "--all"], None, &[], false);
    assert!(ok && list.contains(&client_id), "{list}");

    // --- tokens revoke works on API keys too.
    let (ok, out, _) = s.cli(&["keys", "create", "--name", "k"], None, &[], true);
    assert!(ok);
    let key = first_line(&out);
    assert_eq!(s.chat(&key, "demo", false).await.0, 200);
    let (ok, out, _) = s.cli(&["tokens", "revoke"], Some(&key), &[], false);
    assert!(ok && out.starts_with("revoked api_key "), "{out}");
    assert_eq!(s.chat(&key, "demo", false).await.0, 401);

    // --- keys create --single-use: exactly one successful call; the replay is audited.
    let (ok, out, err) = s.cli(&["keys", "create", "--name", "once", "--single-use", "--models", "demo", "--expires-in", "2m"], None, &[], true);
    assert!(ok, "{err}");
    let once = first_line(&out);
    assert!(once.starts_with("gths_live_"), "{out}");
    let once_id = field(&out, "id");
    assert_eq!(s.chat(&once, "demo", false).await.0, 200);
    assert_eq!(s.chat(&once, "demo", false).await.0, 401);
    assert_eq!(s.chat(&once, "demo", false).await.0, 401);
    let replays = s.audit("single_use.replay_rejected").await;
    assert_eq!(replays.len(), 1, "two replays within a minute are one audit record: {replays:?}");
    assert_eq!(replays[0]["credential_id"], once_id.as_str());
    // single-use options that make no sense are refused by the CLI (usage error, exit 2).
    let (ok, _, err) = s.cli(&["keys", "create", "--name", "x", "--single-use", "--auto-suspend"], None, &[], false);
    assert!(!ok && err.contains("cannot be used with"), "{err}");

    // --- every lifecycle step is in the audit log, by public id only.
    let issued = s.audit("token.issued").await;
    assert!(issued.len() >= 3, "{issued:?}");
    assert!(issued.iter().any(|e| e["credential_id"] == once_id.as_str() && e["reason"] == "single_use"));
    let revoked = s.audit("token.revoked").await;
    assert!(revoked.iter().any(|e| e["credential_id"] == jti.as_str() && e["reason"] == "operator"), "{revoked:?}");
    assert_eq!(s.audit("oauth_client.created").await[0]["credential_id"], client_id.as_str());
    assert_eq!(s.audit("oauth_client.revoked").await[0]["credential_id"], client_id.as_str());
    let failed = s.audit("client.auth_failed").await;
    assert!(failed.iter().any(|e| e["credential_id"] == client_id.as_str() && e["reason"] == "client_revoked"), "{failed:?}");
    let (st, v) = s.admin(Method::GET, "/audit/verify", None).await;
    assert!(st == 200 && v["ok"] == true, "{v}");

    // --- nothing secret in any answer, CLI output after creation, or server output.
    let seen = s.seen();
    let (status, output) = s.terminate();
    assert!(status.success(), "{output}");
    for secret in [&secret, &access, &second, &key, &once] {
        assert!(!seen.contains(secret.as_str()), "a secret reached a response or CLI output");
        assert!(!output.contains(secret.as_str()), "a secret reached the server's stdout/stderr");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_endpoints_refuse_bad_input_with_the_field_named() {
    let dir = temp_dir("bad");
    let s = Server::start(&dir.join("data"), None).await;
    let canary = "gtha_live_0000000000000000000000000000000000000000000CANARY";
    let unknown_client = format!("/oauth-clients/{}", uuid::Uuid::now_v7());
    let unknown_revoke = format!("/oauth-clients/{}/revoke", uuid::Uuid::now_v7());
    let cases: Vec<(Method, &str, Option<serde_json::Value>, u16, Option<&str>)> = vec![
        (Method::POST, "/tokens/revoke", Some(json!({})), 400, Some("token")),
        (Method::POST, "/tokens/revoke", Some(json!({"token": 5})), 400, Some("token")),
        (Method::POST, "/tokens/revoke", Some(json!({"token": "x".repeat(5000)})), 400, Some("token")),
        (Method::POST, "/tokens/introspect", Some(json!({"token": canary, "extra": 1})), 400, Some("extra")),
        (Method::POST, "/tokens/introspect", None, 400, Some("body")),
        (Method::POST, "/oauth-clients", Some(json!({"name": "x", "scopes": ["admin"]})), 400, Some("scopes[0]")),
        (Method::POST, "/oauth-clients", Some(json!({"name": "x", "auth_method": "private_key_jwt"})), 400, Some("public_jwk")),
        (
            Method::POST,
            "/oauth-clients",
            Some(json!({"name": "x", "auth_method": "private_key_jwt", "public_jwk": {"kty": "oct", "k": "AAAA"}})),
            400,
            Some("public_jwk"),
        ),
        (Method::POST, "/oauth-clients", Some(json!({"name": "x", "token_format": "paseto"})), 400, Some("token_format")),
        (Method::POST, "/oauth-clients", Some(json!({"name": "x", "access_ttl": "2h"})), 400, Some("access_ttl")),
        (Method::POST, "/oauth-clients", Some(json!({"name": "x", "app_id": uuid::Uuid::now_v7()})), 404, Some("app_id")),
        (Method::GET, "/oauth-clients/not-a-uuid", None, 400, Some("id")),
        (Method::GET, &unknown_client, None, 404, Some("id")),
        (Method::POST, &unknown_revoke, None, 404, Some("id")),
        (Method::GET, "/oauth-clients?include_revoked=maybe", None, 400, Some("include_revoked")),
        (Method::POST, "/tokens/single-use", Some(json!({"name": "x", "single_use": true, "expires_in": "2h"})), 400, Some("expires_in")),
        (Method::POST, "/tokens/single-use", Some(json!({"name": "x", "single_use": true, "ip_allow": ["10.0.0.0/8"]})), 400, Some("ip_allow")),
    ];
    for (method, path, body, status, param) in cases {
        let (st, v) = s.admin(method.clone(), path, body.clone()).await;
        assert_eq!(st, status, "{method} {path} {body:?}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{method} {path}: {v}");
    }
    // Unknown tokens: not an error; introspection is inactive.
    let (st, v) = s.admin(Method::POST, "/tokens/revoke", Some(json!({"token": canary, "token_type_hint": "access_token"}))).await;
    assert_eq!((st, v), (200, json!({"revoked": false})));
    let (st, v) = s.admin(Method::POST, "/tokens/introspect", Some(json!({"token": canary}))).await;
    assert_eq!((st, v), (200, json!({"active": false})));
    // Without the operator token: 401 with the admin challenge.
    let r = s.http.post(format!("{}/admin/v1/tokens/introspect", s.admin)).json(&json!({"token": canary})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer realm=\"gatehouse-admin\""));
    let seen = s.seen();
    let (_, output) = s.terminate();
    assert!(!seen.contains(canary) && !output.contains(canary), "a token sent for revocation was echoed");
    let _ = std::fs::remove_dir_all(&dir);
}
