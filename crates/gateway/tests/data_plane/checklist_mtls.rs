//! `token-security.md` §4.4 T30 over a real TLS listener: certificate-bound tokens and keys
//! (RFC 8705 §3), the token endpoint binding for clients registered with
//! `tls_client_certificate_bound_access_tokens`, token exchange keeping the binding, and the
//! client-certificate header of a TLS-terminating proxy (trusted and untrusted peer).
//!
//! Each test generates its own PKI with rcgen: a CA, a server certificate for 127.0.0.1 and two
//! client certificates (A and B), plus a client certificate from another CA.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use gatehouse_auth::cidr::Cidr;
use gatehouse_auth::{Env, LocalKeyProvider, MasterKey};
use gatehouse_gateway::GatewaySettings;
use gatehouse_gateway::mtls::x5t_s256;
use gatehouse_gateway::tls::TlsFiles;
use gatehouse_oauth::{NewClient, OAuth, OAuthDeps, TracingEvents};
use gatehouse_store::{AuditQuery, Store};
use gatehouse_types::new_id;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::harness::{Harness, Options};

const MODELS: &str = "/v1/models";
const BEARER_INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";
const ISSUER: &str = "http://127.0.0.1:8080";

/// A client certificate and its key (PEM), its DER and RFC 8705 thumbprint.
struct Identity {
    pem: String,
    der: Vec<u8>,
    x5t: String,
}

/// The test PKI, written to a temp dir for the listener.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
    a: Identity,
    b: Identity,
    /// Issued by another CA than the one the listener trusts.
    rogue: Identity,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn client_identity(issuer: &CertifiedIssuer<'static, KeyPair>, name: &str) -> Identity {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    let der = cert.der().to_vec();
    Identity { pem: format!("{}{}", cert.pem(), key.serialize_pem()), x5t: x5t_s256(&der), der }
}

impl Pki {
    fn new() -> Self {
        let root = ca("gatehouse test CA");
        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server = sp.signed_by(&server_key, &root).unwrap();
        let dir = std::env::temp_dir().join(format!("gatehouse-mtls-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), root.pem()).unwrap();
        let other = ca("another CA");
        Self {
            ca_pem: root.pem(),
            a: client_identity(&root, "client-a"),
            b: client_identity(&root, "client-b"),
            rogue: client_identity(&other, "rogue"),
            dir,
        }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles { cert: self.dir.join("server.pem"), key: self.dir.join("server.key"), client_ca: Some(self.dir.join("ca.pem")) }
    }

    /// An HTTPS client trusting the test CA, presenting `id` (or no certificate).
    fn client(&self, id: Option<&Identity>) -> reqwest::Client {
        let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()]);
        if let Some(id) = id {
            b = b.identity(reqwest::Identity::from_pem(id.pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

async fn tls_harness(pki: &Pki) -> Harness {
    let settings = GatewaySettings { client_certificates: true, ..GatewaySettings::default() };
    Harness::start_with(Options { tls: Some(pki.files()), settings, ..Options::default() }).await
}

/// The `Client-Cert` value a TLS-terminating proxy sends (RFC 9440 §2).
fn cert_header(id: &Identity) -> String {
    format!(":{}:", STANDARD.encode(&id.der))
}

struct Client {
    id: String,
    secret: String,
}

async fn oauth_client(h: &Harness, format: &str, mtls_bound: bool) -> Client {
    let admin = OAuth::new(OAuthDeps {
        store: h.store.clone() as Arc<dyn Store>,
        bus: h.bus.clone(),
        peppers: h.peppers.clone(),
        key_provider: Arc::new(LocalKeyProvider::new(&MasterKey::generate().unwrap())),
        env: Env::Live,
        issuer: ISSUER.into(),
        events: Arc::new(TracingEvents),
    });
    let (record, secret) = admin
        .create_client(NewClient {
            team_id: h.team_id,
            app_id: h.app_id,
            name: "service".into(),
            auth_method: "client_secret_basic".into(),
            public_jwk: None,
            token_format: format.into(),
            scopes: vec![],
            models: vec![],
            audiences: vec![],
            access_ttl: Duration::from_secs(600),
            tls_client_certificate_bound_access_tokens: mtls_bound,
        })
        .await
        .unwrap();
    Client { id: record.id.to_string(), secret: secret.unwrap().expose_secret().to_string() }
}

/// `POST path` with a form body and the client's Basic credentials over `http`, plus extra
/// headers.
async fn form(h: &Harness, http: &reqwest::Client, path: &str, c: &Client, params: &[(&str, &str)], headers: &[(&str, &str)]) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let mut req = http.post(h.url(path)).header("content-type", "application/x-www-form-urlencoded").basic_auth(&c.id, Some(&c.secret)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// A client-credentials token (asserts 200); returns the whole answer.
async fn cc_token(h: &Harness, http: &reqwest::Client, c: &Client, headers: &[(&str, &str)]) -> Value {
    let resp = form(h, http, "/oauth/token", c, &[("grant_type", "client_credentials")], headers).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn introspect(h: &Harness, http: &reqwest::Client, c: &Client, token: &str) -> Value {
    let resp = form(h, http, "/oauth/introspect", c, &[("token", token)], &[]).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// `GET /v1/models` with `Authorization: Bearer token`: status, challenges, body.
async fn models(h: &Harness, http: &reqwest::Client, token: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>, Value) {
    let mut req = http.get(h.url(MODELS)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenges = resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    (status, challenges, resp.json().await.unwrap_or(Value::Null))
}

fn assert_refused(answer: (u16, Vec<String>, Value)) {
    let (status, challenges, body) = answer;
    assert_eq!((status, challenges), (401, vec![BEARER_INVALID_TOKEN.to_string()]), "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
}

async fn denials(h: &Harness) -> Vec<String> {
    h.audit.flush().await;
    let events = h.store.query_audit_events(&AuditQuery { event_type: Some("auth.denied".into()), ..Default::default() }).await.unwrap();
    events.into_iter().filter_map(|e| e.event.reason).collect()
}

/// A token of a certificate-bound client obtained over mTLS with certificate A.
async fn bound_token(h: &Harness, pki: &Pki, format: &str) -> (Client, String) {
    let c = oauth_client(h, format, true).await;
    let v = cc_token(h, &pki.client(Some(&pki.a)), &c, &[]).await;
    // RFC 8705 tokens stay of type Bearer (only DPoP changes the type).
    assert_eq!(v["token_type"], "Bearer");
    (c, v["access_token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn t30_cert_bound_token_with_the_right_certificate_is_accepted() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    let (c, at) = bound_token(&h, &pki, "opaque").await;
    let with_a = pki.client(Some(&pki.a));
    let info = introspect(&h, &with_a, &c, &at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "Bearer");
    assert_eq!(info["cnf"], serde_json::json!({"x5t#S256": pki.a.x5t}));
    let (status, _, body) = models(&h, &with_a, &at, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].as_array().is_some_and(|d| !d.is_empty()), "{body}");
}

#[tokio::test]
async fn t30_cert_bound_token_over_a_connection_with_another_certificate_is_401() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    let (_, at) = bound_token(&h, &pki, "opaque").await;
    assert_refused(models(&h, &pki.client(Some(&pki.b)), &at, &[]).await);
    // The probe did not invalidate the token: the right certificate still works.
    assert_eq!(models(&h, &pki.client(Some(&pki.a)), &at, &[]).await.0, 200);
}

#[tokio::test]
async fn t30_cert_bound_token_over_a_connection_without_a_certificate_is_401() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    let (_, at) = bound_token(&h, &pki, "opaque").await;
    assert_refused(models(&h, &pki.client(None), &at, &[]).await);
}

#[tokio::test]
async fn t30_bearer_downgrade_of_bound_tokens_and_keys_is_refused_even_with_a_forged_cert_header() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    let (_, at) = bound_token(&h, &pki, "jwt").await;
    // JWT: the binding is in the signed claims.
    let claims: Value = serde_json::from_slice(&B64.decode(at.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], pki.a.x5t);
    // Copied onto a plain connection, even with A's certificate in the proxy header from an
    // untrusted peer: refused.
    let plain = pki.client(None);
    let forged = cert_header(&pki.a);
    assert_refused(models(&h, &plain, &at, &[("client-cert", forged.as_str())]).await);
    assert_eq!(models(&h, &pki.client(Some(&pki.a)), &at, &[]).await.0, 200);
    // An API key bound to A's certificate (`keys create --mtls-x5t`): same rule, and audited.
    let (_, key) = h.create_key_with(&[], None, |c| c.security.mtls_x5t = Some(pki.a.x5t.clone())).await;
    assert_refused(models(&h, &plain, &key, &[("client-cert", forged.as_str())]).await);
    assert_refused(models(&h, &pki.client(Some(&pki.b)), &key, &[]).await);
    assert_eq!(models(&h, &pki.client(Some(&pki.a)), &key, &[]).await.0, 200);
    let reasons = denials(&h).await;
    assert!(reasons.iter().any(|r| r == "mtls_cert_missing") && reasons.iter().any(|r| r == "mtls_cert_mismatch"), "{reasons:?}");
}

#[tokio::test]
async fn token_endpoint_binds_only_cert_bound_clients_and_needs_their_certificate() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    // A certificate-bound client without a client certificate → 400 invalid_request.
    let bound = oauth_client(&h, "opaque", true).await;
    let resp = form(&h, &pki.client(None), "/oauth/token", &bound, &[("grant_type", "client_credentials")], &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    // A client not registered for it gets unbound tokens even over mTLS.
    let plain = oauth_client(&h, "opaque", false).await;
    let with_b = pki.client(Some(&pki.b));
    let v = cc_token(&h, &with_b, &plain, &[]).await;
    let at = v["access_token"].as_str().unwrap();
    assert!(introspect(&h, &with_b, &plain, at).await.get("cnf").is_none());
    assert_eq!(models(&h, &pki.client(None), at, &[]).await.0, 200);
    // A certificate from a CA the listener does not trust: no TLS connection at all.
    assert!(pki.client(Some(&pki.rogue)).get(h.url(MODELS)).send().await.is_err());
}

#[tokio::test]
async fn token_exchange_keeps_the_certificate_binding() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    let (_, subject) = bound_token(&h, &pki, "opaque").await;
    // An ordinary client exchanges the bound token over a connection without a certificate:
    // the new token is bound to A as well.
    let exchanger = oauth_client(&h, "opaque", false).await;
    let plain = pki.client(None);
    let params = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
    ];
    let resp = form(&h, &plain, "/oauth/token", &exchanger, &params, &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let derived = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&h, &plain, &exchanger, &derived).await["cnf"]["x5t#S256"], pki.a.x5t);
    assert_refused(models(&h, &plain, &derived, &[]).await);
    assert_refused(models(&h, &pki.client(Some(&pki.b)), &derived, &[]).await);
    assert_eq!(models(&h, &pki.client(Some(&pki.a)), &derived, &[]).await.0, 200);
    // A certificate-bound exchanger calling with certificate B cannot rebind A's token.
    let rebinder = oauth_client(&h, "opaque", true).await;
    let resp = form(&h, &pki.client(Some(&pki.b)), "/oauth/token", &rebinder, &params, &[]).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test]
async fn metadata_advertises_certificate_bound_tokens() {
    let pki = Pki::new();
    let h = tls_harness(&pki).await;
    let http = pki.client(None);
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource"] {
        let v: Value = http.get(h.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["tls_client_certificate_bound_access_tokens"], true, "{path}: {v}");
    }
}

/// Tester L6: a plain-HTTP data plane without trusted proxies can never see a client
/// certificate, so it does not advertise certificate-bound tokens; behind a trusted
/// TLS-terminating proxy (`Client-Cert`) it does.
#[tokio::test]
async fn metadata_says_false_where_no_client_certificate_can_arrive() {
    let plain = Harness::start().await;
    let proxied = behind_proxy(true).await;
    for (h, expected) in [(&plain, false), (&proxied, true)] {
        for path in ["/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource"] {
            let v: Value = h.client.get(h.url(path)).send().await.unwrap().json().await.unwrap();
            assert_eq!(v["tls_client_certificate_bound_access_tokens"], expected, "{path}: {v}");
        }
    }
}

/// A plain-HTTP harness behind a TLS-terminating proxy at 127.0.0.1 (trusted or not).
async fn behind_proxy(trusted: bool) -> Harness {
    let trusted_proxies = if trusted { vec![Cidr::parse("127.0.0.1/32").unwrap()] } else { vec![] };
    Harness::start_with(Options { settings: GatewaySettings { trusted_proxies, ..GatewaySettings::default() }, ..Options::default() }).await
}

#[tokio::test]
async fn client_cert_header_from_a_trusted_proxy_binds_and_authenticates() {
    let pki = Pki::new();
    let h = behind_proxy(true).await;
    let http = reqwest::Client::new();
    let (a, b) = (cert_header(&pki.a), cert_header(&pki.b));
    let c = oauth_client(&h, "opaque", true).await;
    // Without the header the bound client gets no token; with it, a token bound to A.
    let resp = form(&h, &http, "/oauth/token", &c, &[("grant_type", "client_credentials")], &[]).await;
    assert_eq!(resp.status(), 400);
    let at = cc_token(&h, &http, &c, &[("client-cert", a.as_str())]).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&h, &http, &c, &at).await["cnf"]["x5t#S256"], pki.a.x5t);
    assert_eq!(models(&h, &http, &at, &[("client-cert", a.as_str())]).await.0, 200);
    assert_refused(models(&h, &http, &at, &[("client-cert", b.as_str())]).await);
    assert_refused(models(&h, &http, &at, &[]).await);
    // A URL-encoded PEM (nginx `$ssl_client_escaped_cert`) works too; garbage is no certificate.
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", STANDARD.encode(&pki.a.der));
    let escaped: String = pem.bytes().map(|x| if x.is_ascii_alphanumeric() { (x as char).to_string() } else { format!("%{x:02X}") }).collect();
    assert_eq!(models(&h, &http, &at, &[("client-cert", escaped.as_str())]).await.0, 200);
    assert_refused(models(&h, &http, &at, &[("client-cert", ":bm90IGEgY2VydA==:x")]).await);
}

#[tokio::test]
async fn client_cert_header_from_an_untrusted_peer_is_ignored() {
    let pki = Pki::new();
    let h = behind_proxy(false).await;
    let http = reqwest::Client::new();
    let a = cert_header(&pki.a);
    // The bound client cannot obtain a token by claiming a certificate in the header …
    let c = oauth_client(&h, "opaque", true).await;
    let resp = form(&h, &http, "/oauth/token", &c, &[("grant_type", "client_credentials")], &[("client-cert", a.as_str())]).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    // … and a key bound to A is refused although the header names A.
    let (_, key) = h.create_key_with(&[], None, |k| k.security.mtls_x5t = Some(pki.a.x5t.clone())).await;
    assert_refused(models(&h, &http, &key, &[("client-cert", a.as_str())]).await);
    // Unbound keys are unaffected by the header.
    assert_eq!(models(&h, &http, &h.key, &[("client-cert", a.as_str())]).await.0, 200);
}
