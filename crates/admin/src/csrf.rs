//! CSRF protection of cookie-authenticated admin requests (issue 7, M8), in one place.
//!
//! A portal session cookie is sent by the browser with every request to the admin origin, also
//! when a foreign page triggers it. So a cookie-authenticated request with a state-changing
//! method (anything but `GET`, `HEAD`, `OPTIONS`; RFC 9110 §9.2.1 safe methods) must show, in
//! this order:
//!
//! 1. `Sec-Fetch-Site` (Fetch Metadata), if sent: `same-origin` or `none` (typed by the user);
//!    `same-site` and `cross-site` are refused.
//! 2. `Origin` (RFC 6454 §7), if sent: its `host[:port]` equals the request's `Host` (HTTP/2:
//!    the URI authority); `null` is refused.
//! 3. `X-CSRF-Token`: exactly the session's token ([`AdminService::csrf_token`], a keyed
//!    derivation of the cookie value, so nothing extra is stored), compared in constant time.
//!
//! Any failure → 403 `csrf_failed` in the admin error shape. Requests authenticated by an
//! operator token (`Authorization: Bearer …`) are not affected: a browser never adds that
//! header by itself.

use axum::http::{HeaderMap, Method, Uri, header};
use gatehouse_types::{ApiError, ErrorCode};
use subtle::ConstantTimeEq;

use crate::service::AdminService;

/// The request header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of the request's cookie session, put into the request extensions by the
/// authentication layer so `GET /me` can return it.
#[derive(Debug, Clone)]
pub struct SessionCsrf(pub String);

fn refused(why: &str) -> ApiError {
    ApiError::new(ErrorCode::CsrfFailed, format!("cross-site request refused: {why}"))
}

/// True for methods that never change state (RFC 9110 §9.2.1).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks a cookie-authenticated request (see the module doc). `cookie_value` is the session
/// cookie the request was authenticated with. Errors: 403 `csrf_failed`.
pub fn check(svc: &AdminService, method: &Method, uri: &Uri, headers: &HeaderMap, cookie_value: &str) -> Result<(), ApiError> {
    if is_safe(method) {
        return Ok(());
    }
    let single = |name: &str| -> Result<Option<&str>, ApiError> {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| refused(&format!("unreadable {name}"))),
            (Some(_), Some(_)) => Err(refused(&format!("more than one {name}"))),
        }
    };
    if let Some(site) = single("sec-fetch-site")?
        && !matches!(site.trim().to_ascii_lowercase().as_str(), "same-origin" | "none")
    {
        return Err(refused("the request comes from another site (Sec-Fetch-Site)"));
    }
    if let Some(origin) = single(header::ORIGIN.as_str())? {
        let host = single(header::HOST.as_str())?.or_else(|| uri.authority().map(|a| a.as_str()));
        let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
        match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h.trim()) => {}
            _ => return Err(refused("the Origin does not match the Host")),
        }
    }
    let sent = single(CSRF_HEADER)?.ok_or_else(|| refused("the X-CSRF-Token header is missing"))?;
    let expected = svc.csrf_token(cookie_value);
    if bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(refused("the X-CSRF-Token header is wrong"))
    }
}
