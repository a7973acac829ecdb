//! DPoP on the data plane and at the token endpoint (RFC 9449; `token-security.md` §1.8, G-7,
//! G-10, checklist T26–T29).
//!
//! Resource requests (`/v1/*`, every inbound API): `Authorization: DPoP <token>` plus exactly
//! one `DPoP: <proof>` header. [`Dpop::check_resource`] runs, in order:
//! 1. exactly one `DPoP` header (none or several → `invalid_dpop_proof`);
//! 2. every §4.3 check of [`gatehouse_auth::dpop::verify_proof`] (`typ`, `alg` ∈ ES256/EdDSA,
//!    public `jwk`, signature, `htm`, `htu`, `iat` ∈ [now − 60 s, now + 10 s], `ath`);
//! 3. the server nonce when [`DpopSettings::nonces`] is on (`use_dpop_nonce` + `DPoP-Nonce`);
//! 4. the key binding: the proof key's RFC 7638 thumbprint equals the credential's `jkt`
//!    (`cnf.jkt`); a mismatch, or an unbound credential sent with the DPoP scheme, is
//!    `invalid_token` (RFC 9449 §7.1);
//! 5. `jti` replay: SHA-256(`htu`, `jti`) is recorded for 90 s in the [`ReplayCache`] (memory on
//!    one node, Redis when configured); a second use is `invalid_dpop_proof`. A cache failure is
//!    503 (fail closed, §5.3).
//!
//! A bound credential presented as `Bearer` is refused in [`crate::security::check`] (§7.2).
//!
//! `htu` is compared with `<public base URL><path>`: [`DpopSettings::public_base_url`]
//! (`GATEHOUSE_PUBLIC_URL`) when set — recommended in production — else derived from the
//! request: `Host` (or `X-Forwarded-Host`/`X-Forwarded-Proto` when the socket peer is a trusted
//! proxy) with scheme `http`. Query and fragment are ignored, scheme/host case and default ports
//! are normalised (RFC 3986 §6.2.2–6.2.3).
//!
//! Nonces (§8, §9; off by default): `DPoP-Nonce` values are HMAC(pepper, 60-second period)
//! truncated to 128 bits, base64url; the current and the previous period's nonce are accepted, so
//! every node sharing the master key accepts every node's nonces without shared state.
//!
//! Errors are 401 with `WWW-Authenticate: DPoP realm="gatehouse", algs="ES256 EdDSA",
//! error="…"` and the body in the API's own error shape; the token endpoint answers 400
//! `invalid_dpop_proof` / `use_dpop_nonce` in RFC 6749 §5.2 shape. Proofs never reach a log,
//! an audit record or an error body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_auth::Peppers;
use gatehouse_auth::cidr::{self, Cidr};
use gatehouse_auth::dpop::{self as proof, DpopError, ProofContext, REPLAY_WINDOW, SUPPORTED_ALGS};
use gatehouse_store::ReplayCache;
use gatehouse_types::{ApiError, ErrorCode};
use http::{Extensions, HeaderMap, HeaderValue, Method, Uri, header};

use crate::error::REALM;

/// Name of the proof header (RFC 9449 §4.1), matched case-insensitively.
pub const DPOP_HEADER: &str = "dpop";
/// Name of the nonce header (RFC 9449 §8).
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";
/// Length of one nonce period (seconds); a nonce stays valid for one to two periods.
pub const NONCE_PERIOD_SECS: i64 = 60;
/// The DPoP challenge advertised next to the bare Bearer challenge on a 401 without credentials.
pub const CHALLENGE_DPOP_BARE: &str = "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\"";

/// DPoP settings of the data plane.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// Public base URL of the data plane as clients address it (`https://gw.example.com`), used
    /// for `htu`; `None` (default): derived from each request's `Host`.
    pub public_base_url: Option<String>,
    /// Demand server nonces in every proof (RFC 9449 §8, §9). Default off.
    pub nonces: bool,
    /// How long a proof's `jti` is remembered against replay (RFC 9449 §11.1). Default
    /// [`REPLAY_WINDOW`] (90 s); never shorter than the `iat` acceptance span (70 s).
    pub replay_window: std::time::Duration,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self { public_base_url: None, nonces: false, replay_window: REPLAY_WINDOW }
    }
}

/// Shortest replay window used whatever the settings say: the proof `iat` acceptance span
/// (60 s back + 10 s ahead), so a proof can never be replayed while its `iat` is accepted.
const REPLAY_MIN: std::time::Duration = std::time::Duration::from_secs(70);

/// Why a DPoP request was refused: the client-facing error and the audit reason.
#[derive(Debug, Clone)]
pub struct Denial {
    pub error: ApiError,
    /// Short reason for the audit log (`dpop_signature`, `dpop_replay`, …); never proof content.
    pub reason: &'static str,
}

fn denial(code: ErrorCode, reason: &'static str, message: &'static str) -> Denial {
    Denial { error: ApiError::new(code, message), reason }
}

fn invalid_proof(reason: &'static str) -> Denial {
    denial(ErrorCode::InvalidDpopProof, reason, "the DPoP proof is missing, invalid or replayed")
}

/// DPoP verification state of one gateway: settings, the `jti` replay cache, the nonce key.
pub struct Dpop {
    settings: DpopSettings,
    replay: Arc<dyn ReplayCache>,
    peppers: Arc<Peppers>,
    trusted_proxies: Vec<Cidr>,
}

impl Dpop {
    /// A verifier; `trusted_proxies` decide whether `X-Forwarded-Host`/`-Proto` are believed.
    pub fn new(settings: DpopSettings, replay: Arc<dyn ReplayCache>, peppers: Arc<Peppers>, trusted_proxies: Vec<Cidr>) -> Self {
        Self { settings, replay, peppers, trusted_proxies }
    }

    /// Whether server nonces are demanded.
    pub fn nonces(&self) -> bool {
        self.settings.nonces
    }

    /// The absolute URI a proof's `htu` must name for a request to `uri` (module doc), or `None`
    /// when it cannot be determined (no `Host`).
    pub fn request_uri(&self, headers: &HeaderMap, uri: &Uri, extensions: &Extensions) -> Option<String> {
        let path = uri.path();
        if let Some(base) = &self.settings.public_base_url {
            return Some(format!("{}{path}", base.trim_end_matches('/')));
        }
        let peer: Option<IpAddr> = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let behind_proxy = peer.is_some_and(|p| cidr::any_contains(&self.trusted_proxies, p));
        let single = |name: &str| {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?.to_str().ok()?;
            values.next().is_none().then(|| first.split(',').next().unwrap_or(first).trim().to_string())
        };
        // A connection to our own TLS listener is `https` (crate::tls).
        let default_scheme = if extensions.get::<crate::mtls::TlsConnection>().is_some() { "https" } else { "http" };
        let (mut scheme, mut host) = (uri.scheme_str().unwrap_or(default_scheme).to_string(), None);
        if behind_proxy {
            if let Some(p) = single("x-forwarded-proto").filter(|p| p == "http" || p == "https") {
                scheme = p;
            }
            host = single("x-forwarded-host");
        }
        let host = host.or_else(|| uri.authority().map(|a| a.as_str().to_string())).or_else(|| single(header::HOST.as_str()))?;
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return None;
        }
        Some(format!("{scheme}://{host}{path}"))
    }

    /// The nonce of the current period (send as `DPoP-Nonce`).
    pub fn current_nonce(&self) -> String {
        self.nonce_for(gatehouse_types::now().unix_timestamp().div_euclid(NONCE_PERIOD_SECS))
    }

    fn nonce_for(&self, period: i64) -> String {
        let d = self.peppers.digest(&format!("gatehouse-dpop-nonce\0{period}"));
        URL_SAFE_NO_PAD.encode(&d[..16])
    }

    fn nonce_ok(&self, nonce: Option<&str>) -> bool {
        let Some(n) = nonce else { return false };
        let period = gatehouse_types::now().unix_timestamp().div_euclid(NONCE_PERIOD_SECS);
        n == self.nonce_for(period) || n == self.nonce_for(period - 1)
    }

    /// The one `DPoP` header value (§4.3 check 1), or the denial.
    fn one_proof(headers: &HeaderMap) -> Result<&str, Denial> {
        let mut values = headers.get_all(DPOP_HEADER).iter();
        let Some(v) = values.next() else { return Err(invalid_proof("dpop_missing")) };
        if values.next().is_some() {
            return Err(invalid_proof("dpop_multiple"));
        }
        v.to_str().map_err(|_| invalid_proof("dpop_malformed"))
    }

    /// Verifies a proof (steps 1–3 of the module doc) for `method` on `htu`, with `token` as the
    /// access token when there is one. Returns the proof's thumbprint and replay key.
    fn verify(&self, headers: &HeaderMap, method: &Method, htu: Option<&str>, token: Option<&str>) -> Result<proof::VerifiedProof, Denial> {
        let value = Self::one_proof(headers)?;
        let htu = htu.ok_or_else(|| invalid_proof("dpop_htu"))?;
        let ctx = ProofContext {
            method: method.as_str(),
            uri: htu,
            access_token: token,
            expected_nonce: None,
            now: gatehouse_types::now().unix_timestamp(),
        };
        let verified = proof::verify_proof(value, &ctx).map_err(|e: DpopError| invalid_proof(e.reason()))?;
        if self.settings.nonces && !self.nonce_ok(verified.nonce.as_deref()) {
            return Err(denial(ErrorCode::UseDpopNonce, "dpop_nonce", "a DPoP nonce is required: retry with the DPoP-Nonce value"));
        }
        Ok(verified)
    }

    async fn remember(&self, verified: &proof::VerifiedProof) -> Result<(), Denial> {
        match self.replay.first_use(&verified.replay_key(), self.settings.replay_window.max(REPLAY_MIN)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(invalid_proof("dpop_replay")),
            Err(e) => {
                tracing::error!(error = %e, "DPoP replay cache unavailable");
                Err(denial(ErrorCode::Unavailable, "dpop_replay_cache", "the gateway cannot check DPoP proofs right now; retry later"))
            }
        }
    }

    /// The checks of the module doc for a resource request carrying `Authorization: DPoP
    /// <token>`; `bound_jkt` is the credential's binding (`None`: not bound).
    ///
    /// Errors: `InvalidDpopProof` (401), `UseDpopNonce` (401), `InvalidToken` (401, key
    /// mismatch or unbound credential), `Unavailable` (503, replay cache down).
    pub async fn check_resource(
        &self,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
        extensions: &Extensions,
        token: &str,
        bound_jkt: Option<&str>,
    ) -> Result<String, Denial> {
        let htu = self.request_uri(headers, uri, extensions);
        let verified = self.verify(headers, method, htu.as_deref(), Some(token))?;
        match bound_jkt {
            None => {
                return Err(denial(
                    ErrorCode::InvalidToken,
                    "dpop_unbound",
                    "this credential is not DPoP-bound: send it as `Authorization: Bearer`",
                ));
            }
            Some(j) if j != verified.jkt => {
                return Err(denial(ErrorCode::InvalidToken, "dpop_key_mismatch", "the DPoP proof was signed by another key than the token is bound to"));
            }
            Some(_) => {}
        }
        self.remember(&verified).await?;
        Ok(verified.jkt)
    }

    /// Token-endpoint binding (RFC 9449 §5, §10): the thumbprint to bind the issued token to, from
    /// a `DPoP` proof (`POST` on `<base>/oauth/token`, no `ath`) and/or a `dpop_jkt` parameter
    /// (43 base64url characters). Both present → they must agree. Neither → `Ok(None)`.
    ///
    /// Errors (RFC 6749 §5.2 codes): `invalid_dpop_proof`, `use_dpop_nonce`, `invalid_request`
    /// (malformed `dpop_jkt`), `temporarily_unavailable` (replay cache down).
    pub async fn token_binding(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        extensions: &Extensions,
        dpop_jkt: Option<&str>,
    ) -> Result<Option<String>, gatehouse_oauth::OAuthError> {
        use gatehouse_oauth::OAuthError;
        if let Some(j) = dpop_jkt
            && (j.len() != 43 || !j.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(OAuthError::new("invalid_request", "dpop_jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)"));
        }
        if headers.get(DPOP_HEADER).is_none() {
            return Ok(dpop_jkt.map(str::to_string));
        }
        let htu = self.request_uri(headers, uri, extensions);
        let to_oauth = |d: Denial| {
            if d.error.code == ErrorCode::UseDpopNonce {
                OAuthError::new("use_dpop_nonce", "a DPoP nonce is required: retry with the DPoP-Nonce value")
            } else {
                OAuthError::new("invalid_dpop_proof", "the DPoP proof is missing, invalid or replayed")
            }
        };
        let verified = self.verify(headers, &Method::POST, htu.as_deref(), None).map_err(to_oauth)?;
        if dpop_jkt.is_some_and(|j| j != verified.jkt) {
            return Err(OAuthError::new("invalid_dpop_proof", "dpop_jkt does not match the DPoP proof key"));
        }
        match self.remember(&verified).await {
            Ok(()) => Ok(Some(verified.jkt)),
            Err(d) if d.error.code == ErrorCode::Unavailable => {
                Err(OAuthError::new("temporarily_unavailable", "the server cannot check DPoP proofs right now; retry later"))
            }
            Err(d) => Err(to_oauth(d)),
        }
    }
}

/// Records a refused DPoP request of a known credential: `dpop.replay_rejected` for a replayed
/// `jti`, else `auth.denied` with `reason` (never proof content, G-11).
pub(crate) fn audit_denial(state: &crate::AppState, client: &crate::security::ClientInfo, credential: &gatehouse_store::Credential, reason: &'static str) {
    use gatehouse_store::audit::kinds;
    let kind = if reason == "dpop_replay" { kinds::DPOP_REPLAY } else { kinds::DENIED };
    state.audit.record(client.event(kind, credential.id).reason(reason));
}

/// Rewrites the challenge of an error answer to a DPoP-scheme request (RFC 9449 §7.1):
/// `DPoP realm="gatehouse", algs="ES256 EdDSA", error="<code>"` (plus `scope` for 403), and adds
/// a fresh `DPoP-Nonce` when `nonce` is given.
pub fn dpop_challenge(mut resp: Response, err: &ApiError, nonce: Option<String>) -> Response {
    let error = match err.code {
        ErrorCode::InvalidDpopProof => Some("invalid_dpop_proof"),
        ErrorCode::UseDpopNonce => Some("use_dpop_nonce"),
        ErrorCode::InvalidToken => Some("invalid_token"),
        ErrorCode::InvalidCredentialRequest => Some("invalid_request"),
        ErrorCode::InsufficientScope => Some("insufficient_scope"),
        _ => None,
    };
    if let Some(error) = error {
        let algs = SUPPORTED_ALGS.join(" ");
        let scope = match (err.code, err.param.as_deref()) {
            (ErrorCode::InsufficientScope, Some(s)) if crate::security::ALL_SCOPES.contains(&s) => format!(", scope=\"{s}\""),
            _ => String::new(),
        };
        if let Ok(v) = HeaderValue::from_str(&format!("DPoP realm=\"{REALM}\", algs=\"{algs}\", error=\"{error}\"{scope}")) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    with_nonce(resp, nonce)
}

/// Adds `DPoP-Nonce: <nonce>` (and `Cache-Control: no-store`, §8.2) when `nonce` is given.
pub fn with_nonce(mut resp: Response, nonce: Option<String>) -> Response {
    if let Some(n) = nonce
        && let Ok(v) = HeaderValue::from_str(&n)
    {
        resp.headers_mut().insert(DPOP_NONCE_HEADER, v);
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Appends the DPoP challenge to a 401 without credentials (§7.1: both schemes offered).
pub fn offer_dpop(mut resp: Response, err: &ApiError) -> Response {
    if err.code == ErrorCode::MissingCredential {
        resp.headers_mut().append(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE_DPOP_BARE));
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use gatehouse_auth::MasterKey;
    use gatehouse_store::MemoryReplayCache;

    fn dpop(settings: DpopSettings, trusted: Vec<Cidr>) -> Dpop {
        let peppers = Arc::new(Peppers::from_master_key(&MasterKey::generate().unwrap()));
        Dpop::new(settings, Arc::new(MemoryReplayCache::default()), peppers, trusted)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn peer(ip: &str) -> Extensions {
        let mut e = Extensions::new();
        e.insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 4000)));
        e
    }

    #[test]
    fn htu_from_the_configured_base_url_wins_over_the_host_header() {
        let d = dpop(DpopSettings { public_base_url: Some("https://gw.example.com/".into()), nonces: false, ..Default::default() }, vec![]);
        let uri: Uri = "/v1/chat/completions?x=1".parse().unwrap();
        let got = d.request_uri(&headers(&[("host", "evil.example")]), &uri, &Extensions::new());
        assert_eq!(got.as_deref(), Some("https://gw.example.com/v1/chat/completions"));
    }

    #[test]
    fn htu_from_the_request_believes_forwarded_headers_only_from_trusted_proxies() {
        let d = dpop(DpopSettings::default(), vec![Cidr::parse("10.0.0.0/8").unwrap()]);
        let uri: Uri = "/v1/models".parse().unwrap();
        let h = headers(&[("host", "internal:8080"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "gw.example.com")]);
        assert_eq!(d.request_uri(&h, &uri, &peer("10.1.2.3")).as_deref(), Some("https://gw.example.com/v1/models"));
        assert_eq!(d.request_uri(&h, &uri, &peer("192.0.2.9")).as_deref(), Some("http://internal:8080/v1/models"));
        assert_eq!(d.request_uri(&HeaderMap::new(), &uri, &Extensions::new()), None);
        assert_eq!(d.request_uri(&headers(&[("host", "a@b")]), &uri, &Extensions::new()), None);
    }

    #[test]
    fn htu_of_a_request_over_our_tls_listener_is_https() {
        let d = dpop(DpopSettings::default(), vec![]);
        let uri: Uri = "/v1/models".parse().unwrap();
        let mut ext = peer("192.0.2.9");
        ext.insert(crate::mtls::TlsConnection);
        assert_eq!(d.request_uri(&headers(&[("host", "gw.example.com")]), &uri, &ext).as_deref(), Some("https://gw.example.com/v1/models"));
    }

    #[test]
    fn nonces_of_this_and_the_previous_period_are_accepted_and_others_not() {
        let d = dpop(DpopSettings { public_base_url: None, nonces: true, ..Default::default() }, vec![]);
        let period = gatehouse_types::now().unix_timestamp().div_euclid(NONCE_PERIOD_SECS);
        assert!(d.nonce_ok(Some(&d.current_nonce())));
        assert!(d.nonce_ok(Some(&d.nonce_for(period - 1))));
        assert!(!d.nonce_ok(Some(&d.nonce_for(period - 2))));
        assert!(!d.nonce_ok(Some("made-up")));
        assert!(!d.nonce_ok(None));
        // Another master key, other nonces.
        let other = dpop(DpopSettings { public_base_url: None, nonces: true, ..Default::default() }, vec![]);
        assert!(!d.nonce_ok(Some(&other.current_nonce())));
    }

    #[test]
    fn challenges_name_the_dpop_scheme_algs_and_error() {
        let resp = crate::error::error_response(&ApiError::new(ErrorCode::InvalidDpopProof, "x"));
        let resp = dpop_challenge(resp, &ApiError::new(ErrorCode::InvalidDpopProof, "x"), Some("n0nce".into()));
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "DPoP realm=\"gatehouse\", algs=\"ES256 EdDSA\", error=\"invalid_dpop_proof\"");
        assert_eq!(resp.headers()[DPOP_NONCE_HEADER], "n0nce");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
