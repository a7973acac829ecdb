//! REST services (issue 7) at `/svc/{slug}/{path…}` on the data plane.
//!
//! Per request: admission ([`crate::admission`]: subscription, retired → 410) → route match
//! (method, path template, `Host`, headers; first match wins; none → 404) → node choice
//! (weighted round robin or weighted rendezvous hashing of `hash_on`, skipping nodes the active
//! health check marked down; when all are down every node is tried) → upstream request:
//!
//! * the path is the route's `rewrite` filled with the matched parameters (default: the path as
//!   received), appended to the node URL's path; the query is forwarded without `key`,
//!   `api_key`, `access_token` parameters;
//! * the client's headers are copied **except** the credential headers (`Authorization`,
//!   `x-api-key`, `api-key`, `x-goog-api-key`, `DPoP`, `Proxy-Authorization`), hop-by-hop
//!   headers (the standard set and every header the client's `Connection` names, RFC 9110
//!   §7.6.1), `Host`, `Content-Length`, client-sent `x-request-id` / `x-gatehouse-app-id`, the
//!   admin console's `gatehouse_session` cookie (other cookies are kept), and the service's
//!   `remove_headers`; then `add_headers` are set; then the gateway sets `x-request-id` (this
//!   call's id), `x-gatehouse-app-id` (the calling app) and `X-Forwarded-For` / `-Proto` /
//!   `-Host` ([`forwarded_headers`]: the client's values are kept only from a trusted proxy);
//! * timeout `timeout_ms` per attempt; on a connection error, timeout or 502/503/504 another
//!   node is tried up to `retries` times, only for idempotent methods (RFC 9110 §9.2.2);
//! * the body is bounded by the data plane's body limit; redirects are passed back, never
//!   followed.
//!
//! The answer streams back with the upstream status and headers (minus hop-by-hop), plus
//! `Deprecation`/`Sunset` when the service is deprecated. Gateway errors use the OpenAI error
//! shape: 502 `upstream_error` (no node answered), 504 `timeout`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::TryStreamExt;
use gatehouse_auth::cidr::{Cidr, refused_upstream};
use gatehouse_store::ServiceKind;
use gatehouse_types::apim::{Balance, RestRoute, RestUpstream, fill_template, idempotent, match_path};
use gatehouse_types::{ApiError, ErrorCode, Id};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::admission::LiveService;
use crate::auth::AuthContext;
use crate::calllog::CallRecorder;
use crate::error::error_response;
use crate::request::read_body;

/// Header carrying the calling app's id to the upstream.
pub const APP_ID_HEADER: &str = "x-gatehouse-app-id";

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "content-length",
];
/// Set by the gateway from the connection ([`forwarded_headers`]); the client's copies are
/// believed only from a trusted proxy.
const FORWARDED: [&str; 4] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"];
/// The admin console's session cookie (`gatehouse_admin::service::tenancy::SESSION_COOKIE`).
const SESSION_COOKIE: &str = "gatehouse_session";
const CREDENTIAL_HEADERS: [&str; 6] = ["authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "dpop"];
const DROPPED_QUERY: [&str; 3] = ["key", "api_key", "access_token"];

/// Node health and balancing state of one service release's upstream.
pub struct Pool {
    nodes: Vec<(String, u32)>,
    healthy: Vec<AtomicBool>,
    failures: Vec<AtomicU32>,
    /// Weighted round robin: indexes repeated by weight.
    wheel: Vec<usize>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Pool {
    fn new(up: &RestUpstream) -> Self {
        let nodes: Vec<(String, u32)> = up.nodes.iter().map(|n| (n.url.trim_end_matches('/').to_string(), n.weight)).collect();
        let wheel = nodes.iter().enumerate().flat_map(|(i, (_, w))| std::iter::repeat_n(i, *w as usize)).collect();
        Self {
            healthy: nodes.iter().map(|_| AtomicBool::new(true)).collect(),
            failures: nodes.iter().map(|_| AtomicU32::new(0)).collect(),
            nodes,
            wheel,
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// Node indexes in the order to try them.
    fn order(&self, balance: Balance, hash_key: &str) -> Vec<usize> {
        let n = self.nodes.len();
        let mut order: Vec<usize> = match balance {
            Balance::RoundRobin => {
                let start = self.wheel.get(self.next.fetch_add(1, Ordering::Relaxed) % self.wheel.len().max(1)).copied().unwrap_or(0);
                (0..n).map(|i| (start + i) % n).collect()
            }
            Balance::ConsistentHash => {
                // Weighted rendezvous hashing: score = -w / ln(u), u = hash(key, node) in (0, 1).
                let mut scored: Vec<(f64, usize)> = self
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, (url, w))| {
                        let mut h = std::hash::DefaultHasher::new();
                        (hash_key, url.as_str()).hash(&mut h);
                        let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                        (-f64::from(*w) / u.ln(), i)
                    })
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                scored.into_iter().map(|(_, i)| i).collect()
            }
        };
        // Healthy nodes first, in the balancer's order; down nodes only as a last resort.
        order.sort_by_key(|i| !self.healthy[*i].load(Ordering::Relaxed));
        order
    }

    fn record(&self, i: usize, ok: bool, unhealthy_after: u32) {
        if ok {
            self.failures[i].store(0, Ordering::Relaxed);
            self.healthy[i].store(true, Ordering::Relaxed);
        } else if self.failures[i].fetch_add(1, Ordering::Relaxed) + 1 >= unhealthy_after {
            self.healthy[i].store(false, Ordering::Relaxed);
        }
    }
}

/// The pools of live REST services, keyed by (service, release), with their health checkers.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<(Id, u32), Arc<Pool>>>,
}

impl Pools {
    fn get(&self, client: &reqwest::Client, allow: &Arc<Vec<Cidr>>, s: &LiveService, up: &RestUpstream) -> Arc<Pool> {
        let mut map = match self.pools.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(p) = map.get(&(s.id, s.version)) {
            return p.clone();
        }
        // A new release replaces the service's older pools (their checkers stop on drop).
        map.retain(|(id, _), _| *id != s.id);
        let pool = Arc::new(Pool::new(up));
        if let Some(hc) = &up.health_check {
            spawn_health_check(client.clone(), allow.clone(), Arc::downgrade(&pool), hc.clone(), pool.stop.clone());
        }
        map.insert((s.id, s.version), pool.clone());
        pool
    }
}

fn spawn_health_check(client: reqwest::Client, allow: Arc<Vec<Cidr>>, pool: std::sync::Weak<Pool>, hc: gatehouse_types::apim::HealthCheck, stop: CancellationToken) {
    tokio::spawn(async move {
        let interval = Duration::from_millis(hc.interval_ms);
        loop {
            let Some(p) = pool.upgrade() else { return };
            for (i, (url, _)) in p.nodes.iter().enumerate() {
                let target = reqwest::Url::parse(&format!("{url}{}", hc.path));
                let Ok(target) = target.map_err(drop).and_then(|t| if check_literal_host(&t, &allow).is_some() { Err(()) } else { Ok(t) }) else {
                    p.record(i, false, hc.unhealthy_after);
                    continue;
                };
                let ok = client
                    .get(target)
                    .timeout(interval.min(Duration::from_secs(10)))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                p.record(i, ok, hc.unhealthy_after);
            }
            drop(p);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
}

/// The HTTP client of REST upstreams: no redirects followed, no proxy from the environment,
/// and a DNS resolver that drops addresses [`gatehouse_auth::cidr::refused_upstream`] refuses
/// (loopback, link-local, …) unless inside `allow` (`[rest] allow_upstream`), so a node name
/// that resolves — or is rebound — to such an address cannot be reached (tester H4). IP-literal
/// node URLs skip DNS; [`check_literal_host`] guards them before each request.
pub fn client(allow: Arc<Vec<Cidr>>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { allow }))
        .build()
        .unwrap_or_default()
}

/// A resolved (or literal) upstream address was refused by the SSRF guard.
#[derive(Debug)]
struct RefusedAddress(&'static str);

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the upstream address is {} and not allowed", self.0)
    }
}

impl std::error::Error for RefusedAddress {}

/// System DNS (`getaddrinfo` through tokio) keeping only allowed addresses.
struct GuardedResolver {
    allow: Arc<Vec<Cidr>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = "unresolvable";
            let kept: Vec<std::net::SocketAddr> = addrs
                .into_iter()
                .filter(|a| match refused_upstream(a.ip(), &allow) {
                    Some(why) => {
                        refused = why;
                        false
                    }
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                return Err(Box::new(RefusedAddress(refused)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The SSRF guard for IP-literal hosts (they bypass the resolver): `Some(reason)` when the URL's
/// host is an address [`refused_upstream`] refuses.
fn check_literal_host(url: &reqwest::Url, allow: &[Cidr]) -> Option<&'static str> {
    // The URL parser has already normalised literals (`0x7f.1` → `127.0.0.1`, `[::1]`).
    let host = url.host_str()?;
    let ip: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    refused_upstream(ip, allow)
}

fn refused_error(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamError,
        format!("the service's upstream node address is {why}, which the gateway refuses to connect to (an operator can allow it with `[rest] allow_upstream`)"),
    )
}

/// The SSRF guard's reason when `e` (a failed upstream request) was a refused resolved address.
fn refused_in(e: &reqwest::Error) -> Option<&'static str> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<RefusedAddress>() {
            return Some(r.0);
        }
        src = s.source();
    }
    None
}

/// `ANY /svc/{slug}` and `ANY /svc/{slug}/{*path}`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(auth): Extension<AuthContext>,
    Extension(rec): Extension<CallRecorder>,
    req: Request,
) -> Response {
    match proxy(&state, &auth, &rec, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn matches(route: &RestRoute, method: &str, host: Option<&str>, headers: &HeaderMap, path: &str) -> Option<Vec<(String, String)>> {
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m == method) {
        return None;
    }
    if let Some(h) = &route.host
        && !host.is_some_and(|x| x.eq_ignore_ascii_case(h))
    {
        return None;
    }
    for (n, v) in &route.headers {
        if headers.get(n.as_str()).and_then(|x| x.to_str().ok()) != Some(v.as_str()) {
            return None;
        }
    }
    match_path(&route.path, path)
}

fn filtered_query(q: Option<&str>) -> String {
    let Some(q) = q.filter(|q| !q.is_empty()) else { return String::new() };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            !DROPPED_QUERY.iter().any(|d| name.eq_ignore_ascii_case(d))
        })
        .collect();
    if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) }
}

/// Percent-decodes `s` (RFC 3986 §2.1) as far as it is valid; undecodable bytes stay as sent.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Whether `raw` (a path or a part of one, possibly percent-encoded) holds a `.` or `..` segment
/// (RFC 3986 §5.2.4) once decoded: `..`, `%2e%2E`, `.%2e`, also behind an encoded `/` or `\`.
fn has_dot_segment(raw: &str) -> bool {
    percent_decode(raw).split(|c| *c == b'/' || *c == b'\\').any(|seg| seg == b"." || seg == b"..")
}

/// Refuses (400 `invalid_request`) a request path that could leave the upstream's base path
/// once the upstream URL is built: any `.`/`..` segment, raw or percent-encoded, and an encoded
/// `/` or `\` inside a single-segment `{name}` parameter of `template` (it would make a new
/// segment upstream).
fn check_path_params(path: &str, template: &str, params: &[(String, String)]) -> Result<(), ApiError> {
    if has_dot_segment(path) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "the path must not contain `.` or `..` segments (also percent-encoded)"));
    }
    for (name, value) in params {
        let single = template.split('/').any(|s| s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) == Some(name.as_str()));
        if single && percent_decode(value).iter().any(|c| *c == b'/' || *c == b'\\') {
            return Err(ApiError::new(ErrorCode::InvalidRequest, format!("the path parameter `{name}` must be a single segment (no encoded `/`)")));
        }
    }
    Ok(())
}

/// The literal segments of a rewrite template before its first parameter, e.g. `/public/` for
/// `/public/{rest}`, `/v2/orders/` for `/v2/orders/{id}`, the whole template when it has none.
fn literal_prefix(rewrite: &str) -> &str {
    rewrite.find('{').map_or(rewrite, |i| &rewrite[..i])
}

/// The upstream URL `node` + `target_path` + `query`, parsed (the parser resolves dot-segments,
/// RFC 3986 §5.2.4), and checked to stay under the node's base path followed by `fixed_prefix`
/// (the rewrite's literal prefix); outside → 400 `invalid_request`.
fn upstream_url(node: &str, fixed_prefix: &str, target_path: &str, query: &str) -> Result<reqwest::Url, ApiError> {
    let outside = || ApiError::new(ErrorCode::InvalidRequest, "the request path leaves the service's upstream path");
    let url = reqwest::Url::parse(&format!("{node}{target_path}{query}")).map_err(|_| outside())?;
    let base = reqwest::Url::parse(node).map_err(|_| ApiError::new(ErrorCode::UpstreamError, "the service's upstream node URL is invalid"))?;
    let want = format!("{}{fixed_prefix}", base.path().trim_end_matches('/'));
    let got = url.path();
    let under = match want.strip_suffix('/') {
        Some(dir) => got.starts_with(&want) || got == dir,
        None => got == want || got.starts_with(&format!("{want}/")) || want.is_empty(),
    };
    if !under {
        return Err(outside());
    }
    Ok(url)
}

async fn proxy(state: &AppState, auth: &AuthContext, rec: &CallRecorder, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let full = parts.uri.path();
    let rest = full.strip_prefix("/svc/").unwrap_or_default();
    let (slug, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let app_id = auth.credential.app_id;
    let service = state.admission.admit_service(app_id, auth.credential.team_id, slug, ServiceKind::Rest).await?;
    rec.update(|d| {
        d.provider = Some(format!("svc:{}", service.slug));
    });
    let method = parts.method.as_str();
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(|h| h.rsplit_once(':').map_or(h, |(a, _)| a));
    let (route, params) = service
        .spec
        .routes
        .iter()
        .find_map(|r| matches(r, method, host, &parts.headers, path).map(|p| (r, p)))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no route of this service matches the request"))?;
    let up = service.spec.upstream.as_ref().ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the service has no upstream"))?;
    check_path_params(path, &route.path, &params)?;
    let target_path = route.rewrite.as_deref().map_or_else(|| path.to_string(), |rw| fill_template(rw, &params));
    let fixed_prefix = route.rewrite.as_deref().map_or("", literal_prefix);
    let query = filtered_query(parts.uri.query());
    let bytes: Bytes = read_body(body, state.settings.body_limit_bytes).await?;

    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let tls = parts.extensions.get::<crate::mtls::TlsConnection>().is_some();
    let mut headers = upstream_headers(&parts.headers, &up.remove_headers);
    for (n, v) in &up.add_headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(rec.request_id()) {
        headers.insert(crate::REQUEST_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&app_id.to_string()) {
        headers.insert(APP_ID_HEADER, v);
    }
    forwarded_headers(&parts.headers, peer, &state.settings.trusted_proxies, tls, &mut headers);

    let pool = state.rest_pools.get(&state.rest_client, &state.settings.rest_allow_upstream, &service, up);
    let hash_key = match up.hash_on.as_deref() {
        Some("path") => path.to_string(),
        Some(h) if h.starts_with("header:") => {
            parts.headers.get(&h["header:".len()..]).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
        }
        _ => app_id.to_string(),
    };
    let attempts = if idempotent(method) { 1 + up.retries as usize } else { 1 };
    let unhealthy_after = up.health_check.as_ref().map_or(u32::MAX, |h| h.unhealthy_after);
    let mut last = ApiError::new(ErrorCode::UpstreamError, "the service's upstream did not answer");
    for i in pool.order(up.balance, &hash_key).into_iter().take(attempts) {
        let url = upstream_url(&pool.nodes[i].0, fixed_prefix, &target_path, &query)?;
        if let Some(why) = check_literal_host(&url, &state.settings.rest_allow_upstream) {
            tracing::warn!(service = %service.slug, node = i, why, "REST upstream address refused");
            last = refused_error(why);
            continue;
        }
        let sent = state
            .rest_client
            .request(parts.method.clone(), url)
            .headers(headers.clone())
            .body(bytes.clone())
            .timeout(Duration::from_millis(up.timeout_ms))
            .send()
            .await;
        match sent {
            Ok(resp) if matches!(resp.status().as_u16(), 502..=504) && attempts > 1 => {
                pool.record(i, false, unhealthy_after);
                last = ApiError::new(ErrorCode::UpstreamError, format!("the service's upstream answered {}", resp.status().as_u16()));
            }
            Ok(resp) => return Ok(answer(resp, &service)),
            Err(e) => {
                pool.record(i, false, unhealthy_after);
                tracing::warn!(service = %service.slug, node = i, timeout = e.is_timeout(), "REST upstream failed");
                last = if let Some(why) = refused_in(&e) {
                    refused_error(why)
                } else if e.is_timeout() {
                    ApiError::new(ErrorCode::UpstreamTimeout, "the service's upstream did not answer in time")
                } else {
                    ApiError::new(ErrorCode::UpstreamError, "the service's upstream could not be reached")
                };
            }
        }
    }
    Err(last)
}

/// The client's headers minus what never goes upstream (module doc): hop-by-hop headers (the
/// fixed set plus every field named in `Connection`, RFC 9110 §7.6.1), credential headers,
/// `Host`, gateway-owned headers, forwarding headers (set by [`forwarded_headers`]), the
/// `gatehouse_session` cookie (other cookies kept; RFC 6265 §5.4 `name=value; …` pairs) and
/// the service's `remove_headers` (case-insensitive).
fn upstream_headers(incoming: &HeaderMap, remove: &[String]) -> HeaderMap {
    let named: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut headers = HeaderMap::new();
    for (name, value) in incoming {
        let n = name.as_str();
        let dropped = HOP_BY_HOP.contains(&n)
            || named.iter().any(|c| c == n)
            || CREDENTIAL_HEADERS.contains(&n)
            || FORWARDED.contains(&n)
            || n == "host"
            || n == crate::REQUEST_ID_HEADER
            || n == APP_ID_HEADER
            || remove.iter().any(|r| r.eq_ignore_ascii_case(n));
        if dropped {
            continue;
        }
        if name == header::COOKIE {
            if let Some(v) = without_session_cookie(value) {
                headers.append(name.clone(), v);
            }
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// A `Cookie` value without the `gatehouse_session` pair; `None` when nothing is left.
fn without_session_cookie(value: &HeaderValue) -> Option<HeaderValue> {
    let Ok(text) = value.to_str() else {
        // Not visible ASCII: cannot be split safely, so it is not forwarded at all.
        return None;
    };
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split('=').next().map(str::trim) != Some(SESSION_COOKIE))
        .collect();
    if kept.is_empty() { None } else { HeaderValue::from_str(&kept.join("; ")).ok() }
}

/// Sets `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` on `out` as a reverse
/// proxy does. `peer` is the socket peer; when it is in `trusted` (the data plane's trusted
/// proxies) the client's `X-Forwarded-For` chain is kept and the peer appended, and the
/// client's `X-Forwarded-Proto`/`-Host` (and RFC 7239 `Forwarded`) are kept when present;
/// from any other peer the client's values are discarded: `X-Forwarded-For: <peer>`,
/// `X-Forwarded-Proto: https` on a TLS connection else `http`, `X-Forwarded-Host: <Host>`.
fn forwarded_headers(incoming: &HeaderMap, peer: Option<std::net::IpAddr>, trusted: &[gatehouse_auth::cidr::Cidr], tls: bool, out: &mut HeaderMap) {
    let from_proxy = peer.is_some_and(|p| gatehouse_auth::cidr::any_contains(trusted, p));
    let client = |name: &str| incoming.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).collect::<Vec<_>>();
    let mut chain: Vec<String> = if from_proxy { client("x-forwarded-for").into_iter().map(str::to_string).collect() } else { Vec::new() };
    if let Some(p) = peer {
        chain.push(p.to_string());
    }
    if let Ok(v) = HeaderValue::from_str(&chain.join(", "))
        && !chain.is_empty()
    {
        out.insert("x-forwarded-for", v);
    }
    let proto = from_proxy.then(|| client("x-forwarded-proto").last().map(|s| s.to_string())).flatten();
    let proto = proto.unwrap_or_else(|| if tls { "https" } else { "http" }.to_string());
    if let Ok(v) = HeaderValue::from_str(&proto) {
        out.insert("x-forwarded-proto", v);
    }
    let host = from_proxy.then(|| client("x-forwarded-host").last().map(|s| s.to_string())).flatten();
    if let Some(v) = host.or_else(|| incoming.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)).and_then(|h| HeaderValue::from_str(&h).ok()) {
        out.insert("x-forwarded-host", v);
    }
    if from_proxy {
        for v in incoming.get_all("forwarded") {
            out.append("forwarded", v.clone());
        }
    }
}

fn answer(resp: reqwest::Response, service: &LiveService) -> Response {
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (n, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&n.as_str()) {
            headers.append(n.clone(), v.clone());
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    let mut out = (status, Body::from_stream(stream)).into_response();
    *out.headers_mut() = headers;
    service.apply_lifecycle_headers(out.headers_mut());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gatehouse_types::apim::UpstreamNode;

    fn upstream(nodes: &[(&str, u32)]) -> RestUpstream {
        serde_json::from_value(serde_json::json!({
            "nodes": nodes.iter().map(|(u, w)| UpstreamNode { url: (*u).into(), weight: *w }).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn round_robin_respects_weights_and_health() {
        let p = Pool::new(&upstream(&[("http://a", 3), ("http://b", 1)]));
        let firsts: Vec<usize> = (0..8).map(|_| p.order(Balance::RoundRobin, "")[0]).collect();
        assert_eq!(firsts.iter().filter(|i| **i == 0).count(), 6);
        p.record(0, false, 1);
        assert_eq!(p.order(Balance::RoundRobin, "")[0], 1);
        assert_eq!(p.order(Balance::RoundRobin, ""), vec![1, 0]);
        p.record(0, true, 1);
        assert!(p.healthy[0].load(Ordering::Relaxed));
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_only_the_removed_nodes_keys() {
        let p = Pool::new(&upstream(&[("http://a", 1), ("http://b", 1), ("http://c", 1)]));
        let q = Pool::new(&upstream(&[("http://a", 1), ("http://b", 1)]));
        let mut moved = 0;
        for k in 0..300 {
            let key = format!("app-{k}");
            let first = p.order(Balance::ConsistentHash, &key)[0];
            assert_eq!(first, p.order(Balance::ConsistentHash, &key)[0]);
            let without_c = q.order(Balance::ConsistentHash, &key)[0];
            if first != 2 {
                assert_eq!(first, without_c, "a key not on the removed node stays put");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 50 && moved < 150, "{moved}");
    }

    #[test]
    fn encoded_dot_segments_are_refused_in_any_spelling() {
        for p in ["/api/%2e%2e/x", "/api/%2E%2e/x", "/api/.%2e/x", "/api/%2e./x", "/api/../x", "/api/./x", "/api/%2e", "/api/a%2f..%2fb", "/api/a%5c%2e%2e"] {
            let params = match_path("/api/{*rest}", p).unwrap();
            assert_eq!(check_path_params(p, "/api/{*rest}", &params).unwrap_err().code, ErrorCode::InvalidRequest, "{p}");
        }
        for p in ["/api/a.b/c", "/api/...", "/api/%2e%2e%2e", "/api/.well-known/x", "/api/a%2fb"] {
            let params = match_path("/api/{*rest}", p).unwrap();
            assert!(check_path_params(p, "/api/{*rest}", &params).is_ok(), "{p}");
        }
    }

    #[test]
    fn encoded_slash_in_a_single_segment_parameter_is_refused() {
        for p in ["/items/a%2fb", "/items/a%2Fb", "/items/a%5Cb"] {
            let params = match_path("/items/{id}", p).unwrap();
            assert_eq!(check_path_params(p, "/items/{id}", &params).unwrap_err().code, ErrorCode::InvalidRequest, "{p}");
        }
        let params = match_path("/items/{id}", "/items/a%20b").unwrap();
        assert!(check_path_params("/items/a%20b", "/items/{id}", &params).is_ok());
    }

    #[test]
    fn upstream_url_stays_under_the_node_base_and_rewrite_prefix() {
        let u = upstream_url("http://h/tenant-a", literal_prefix("/public/{rest}"), "/public/x/y", "?a=1").unwrap();
        assert_eq!(u.as_str(), "http://h/tenant-a/public/x/y?a=1");
        // what the unchecked path would have become: the parser resolves the encoded dot-segments
        let e = upstream_url("http://h/tenant-a", literal_prefix("/public/{rest}"), "/public/%2e%2e/%2e%2e/tenant-b/secret", "").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(upstream_url("http://h/tenant-a", "", "/%2E%2e/x", "").is_err());
        assert!(upstream_url("http://h/tenant-a", "", "/x", "").is_ok());
        assert!(upstream_url("http://h", "", "/", "").is_ok());
        assert!(upstream_url("http://h/base", "/v2", "/v2", "").is_ok());
        assert!(upstream_url("http://h/base", "/v2", "/v2x", "").is_err());
    }

    #[tokio::test]
    async fn resolver_drops_refused_addresses_unless_allowed() {
        use reqwest::dns::Resolve;
        let name = |h: &str| h.parse::<reqwest::dns::Name>().unwrap();
        let guarded = GuardedResolver { allow: Arc::default() };
        let err = guarded.resolve(name("localhost")).await.err().unwrap();
        assert!(err.downcast_ref::<RefusedAddress>().is_some(), "{err}");
        let open = GuardedResolver { allow: Arc::new(vec![Cidr::parse("127.0.0.0/8").unwrap(), Cidr::parse("::1").unwrap()]) };
        let addrs: Vec<std::net::SocketAddr> = open.resolve(name("localhost")).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn literal_hosts_are_checked_after_url_normalisation() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(check_literal_host(&u("http://169.254.169.254/x"), &[]), Some("link-local"));
        assert_eq!(check_literal_host(&u("http://0x7f.1:8081/"), &[]), Some("loopback"));
        assert_eq!(check_literal_host(&u("http://[::1]:6379/"), &[]), Some("loopback"));
        assert_eq!(check_literal_host(&u("http://[::ffff:127.0.0.1]/"), &[]), Some("loopback"));
        assert_eq!(check_literal_host(&u("http://10.0.0.1/"), &[]), None);
        assert_eq!(check_literal_host(&u("http://example.com/"), &[]), None);
        assert_eq!(check_literal_host(&u("http://127.0.0.1/"), &[Cidr::parse("127.0.0.0/8").unwrap()]), None);
    }

    #[test]
    fn query_drops_credential_parameters() {
        assert_eq!(filtered_query(Some("a=1&key=x&API_KEY=y&b=2")), "?a=1&b=2");
        assert_eq!(filtered_query(Some("key=x")), "");
        assert_eq!(filtered_query(None), "");
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hop_by_hop_named_in_connection_credentials_and_the_session_cookie_are_not_forwarded() {
        let incoming = map(&[
            ("connection", "close, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("authorization", "Bearer k"),
            ("cookie", "a=b; gatehouse_session=secret; c=d"),
            ("cookie", "gatehouse_session=other"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-kept", "yes"),
            ("x-internal", "no"),
        ]);
        let out = upstream_headers(&incoming, &["X-Internal".to_string()]);
        for gone in ["connection", "x-secret-hop", "keep-alive", "te", "upgrade", "proxy-authorization", "authorization", "x-forwarded-for", "x-internal"] {
            assert!(!out.contains_key(gone), "{gone} forwarded: {out:?}");
        }
        assert_eq!(out["x-kept"], "yes");
        let cookies: Vec<&str> = out.get_all("cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, vec!["a=b; c=d"]);
    }

    #[test]
    fn forwarded_headers_trust_the_clients_chain_only_from_a_trusted_proxy() {
        let trusted = vec![gatehouse_auth::cidr::Cidr::parse("10.0.0.0/8").unwrap()];
        let incoming = map(&[("host", "api.example:8080"), ("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "evil.example")]);

        let mut out = HeaderMap::new();
        forwarded_headers(&incoming, Some("192.0.2.7".parse().unwrap()), &trusted, false, &mut out);
        assert_eq!(out["x-forwarded-for"], "192.0.2.7");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-host"], "api.example:8080");

        let mut out = HeaderMap::new();
        forwarded_headers(&incoming, Some("192.0.2.7".parse().unwrap()), &trusted, true, &mut out);
        assert_eq!(out["x-forwarded-proto"], "https");

        let mut out = HeaderMap::new();
        forwarded_headers(&incoming, Some("10.1.2.3".parse().unwrap()), &trusted, false, &mut out);
        assert_eq!(out["x-forwarded-for"], "6.6.6.6, 10.1.2.3");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-host"], "evil.example");
    }
}
