//! Client certificates on the data plane: certificate-bound credentials (RFC 8705 §3;
//! `token-security.md` §1.9, G-7, checklist T30).
//!
//! Where the certificate comes from, decided once per request by [`client_certificate`] (the
//! outermost middleware of the router):
//! * the socket peer is a trusted proxy (`GATEHOUSE_TRUSTED_PROXIES`): the proxy's
//!   [`CLIENT_CERT_HEADER`] (RFC 9440 §2: `Client-Cert: :<base64 DER>:`; a URL-encoded PEM
//!   certificate, as nginx's `$ssl_client_escaped_cert`, is accepted too). No header, several
//!   headers or a malformed one: no certificate. The proxy's own TLS client certificate, if
//!   any, is not the client's and is ignored (RFC 9700 §4.13);
//! * otherwise the certificate the client presented in the TLS handshake of this connection
//!   ([`crate::tls`]), if any. A `Client-Cert` header from such a peer is never believed.
//!
//! The header is removed from every request either way, so it reaches neither the handlers nor
//! an upstream. The result is the [`ClientCertificate`] request extension: the certificate's
//! `x5t#S256` thumbprint (base64url, no padding, of SHA-256 over the DER, RFC 8705 §3.1). The
//! chain is not re-validated here: the TLS listener verified it (when a client CA is set), and
//! for the binding check possession of the private key in the handshake is the proof (§6.2).
//!
//! Enforcement: a credential bound to a thumbprint (`cnf.x5t#S256` of an issued token,
//! `mtls_x5t` of an API key) is refused with 401 `invalid_token` unless the request's
//! [`ClientCertificate`] has that thumbprint ([`crate::security::check`]); the token endpoint
//! binds tokens of clients registered with `tls_client_certificate_bound_access_tokens`
//! ([`crate::oauth`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_auth::cidr;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::AppState;

/// The header a TLS-terminating proxy passes the client certificate in (RFC 9440 §2),
/// matched case-insensitively.
pub const CLIENT_CERT_HEADER: &str = "client-cert";

/// The verified client certificate of a request, as its RFC 8705 §3.1 `x5t#S256` thumbprint
/// (43 base64url characters). A request extension set by [`client_certificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// base64url (no padding) of SHA-256 over the certificate's DER encoding.
    pub x5t_s256: String,
}

impl ClientCertificate {
    /// The thumbprint of the DER-encoded certificate `der`.
    pub fn from_der(der: &[u8]) -> Self {
        Self { x5t_s256: x5t_s256(der) }
    }
}

/// RFC 8705 §3.1 `x5t#S256` of a DER-encoded certificate: base64url without padding of its
/// SHA-256 digest (43 characters).
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// Whether `s` has the shape of an `x5t#S256` thumbprint (43 base64url characters), for admin
/// input such as `keys create --mtls-x5t`.
pub fn is_x5t_s256(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Connection facts of a data-plane connection accepted by the TLS listener ([`crate::tls`]):
/// the peer address and the client certificate it authenticated with, if any. Inserted as
/// `ConnectInfo<TlsPeer>`; [`client_certificate`] turns it into `ConnectInfo<SocketAddr>` (what
/// the rest of the router reads) and a [`ClientCertificate`].
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The socket peer.
    pub addr: SocketAddr,
    /// The end-entity certificate the client presented and proved possession of.
    pub client_cert: Option<ClientCertificate>,
}

/// Marks a request that arrived over TLS (the DPoP `htu` is then `https://…`).
#[derive(Debug, Clone, Copy)]
pub struct TlsConnection;

/// The certificate a trusted proxy passed in [`CLIENT_CERT_HEADER`]: `None` when absent,
/// repeated or malformed (never an error for the client: a bound credential then simply fails).
fn from_proxy_header(headers: &HeaderMap) -> Option<ClientCertificate> {
    let mut values = headers.get_all(CLIENT_CERT_HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        tracing::warn!("trusted proxy sent several Client-Cert headers; ignoring them");
        return None;
    }
    let parsed = value.to_str().ok().and_then(|v| parse_cert_header(v.trim()));
    if parsed.is_none() {
        tracing::warn!("trusted proxy sent a malformed Client-Cert header; ignoring it");
    }
    parsed.map(|der| ClientCertificate::from_der(&der))
}

/// DER bytes of a `Client-Cert` value: an RFC 8941 byte sequence (`:base64:`, RFC 9440 §2.1)
/// or a URL-encoded PEM `CERTIFICATE` block.
fn parse_cert_header(v: &str) -> Option<Vec<u8>> {
    if let Some(inner) = v.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
        return STANDARD.decode(inner).ok().filter(|d| !d.is_empty());
    }
    let pem = percent_decode(v)?;
    let body = pem.trim().strip_prefix("-----BEGIN CERTIFICATE-----")?.trim_end().strip_suffix("-----END CERTIFICATE-----")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).ok().filter(|d| !d.is_empty())
}

/// `%XX` decoding (no `+` → space: PEM base64 contains `+`).
fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The middleware of the module doc: settles the request's client certificate, removes
/// [`CLIENT_CERT_HEADER`], and for TLS connections provides `ConnectInfo<SocketAddr>` and
/// [`TlsConnection`].
pub async fn client_certificate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let tls = req.extensions().get::<ConnectInfo<TlsPeer>>().map(|c| c.0.clone());
    if let Some(peer) = &tls {
        req.extensions_mut().insert(ConnectInfo(peer.addr));
        req.extensions_mut().insert(TlsConnection);
    }
    let peer_ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let from_proxy = peer_ip.is_some_and(|ip| cidr::any_contains(&state.settings.trusted_proxies, ip));
    let cert = if from_proxy { from_proxy_header(req.headers()) } else { tls.and_then(|p| p.client_cert) };
    req.headers_mut().remove(CLIENT_CERT_HEADER);
    if let Some(c) = cert {
        req.extensions_mut().insert(c);
    }
    next.run(req).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const DER: &[u8] = b"\x30\x03\x02\x01\x05";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CLIENT_CERT_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn thumbprint_is_base64url_sha256_of_the_der() {
        // SHA-256("abc") from FIPS 180-2, base64url without padding.
        assert_eq!(x5t_s256(b"abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert!(is_x5t_s256(&x5t_s256(DER)));
        assert!(!is_x5t_s256("short"));
        assert!(!is_x5t_s256(&format!("{}=", &x5t_s256(DER)[..42])));
    }

    #[test]
    fn proxy_header_forms_and_refusals() {
        let expected = Some(ClientCertificate::from_der(DER));
        let sf = format!(":{}:", STANDARD.encode(DER));
        assert_eq!(from_proxy_header(&headers(&[&sf])), expected);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", STANDARD.encode(DER));
        let escaped: String = pem.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        assert_eq!(from_proxy_header(&headers(&[&escaped])), expected);
        assert_eq!(from_proxy_header(&headers(&[])), None);
        assert_eq!(from_proxy_header(&headers(&[&sf, &sf])), None);
        assert_eq!(from_proxy_header(&headers(&[":not base64!:"])), None);
        assert_eq!(from_proxy_header(&headers(&["::"])), None);
        assert_eq!(from_proxy_header(&headers(&[&STANDARD.encode(DER)])), None);
    }
}
