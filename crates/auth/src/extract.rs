//! Credential extraction from request headers (`token-security.md` §1.2, G-1, G-2;
//! RFC 6750 §2.1, RFC 9449 §7.1).
//!
//! Only the `Authorization` header is read here; query strings are never a credential.

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// The longest credential accepted in a header (opaque keys and JWTs alike).
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// The authorization scheme of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    DPoP,
}

/// A credential found in the `Authorization` header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    pub scheme: Scheme,
    pub token: &'a str,
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("scheme", &self.scheme).field("token", &"<redacted>").finish()
    }
}

/// Why the `Authorization` header is a bad request (answered 400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("more than one Authorization header")]
    Multiple,
    #[error("the credential is malformed (RFC 6750 §2.1 token68 syntax, at most 4096 bytes)")]
    Malformed,
}

/// Reads the one `Authorization` header.
///
/// * no header, or a scheme other than Bearer/DPoP → `Ok(None)` (answer 401 with a bare challenge);
/// * `Bearer` or `DPoP` alone (no token) → [`ExtractError::Malformed`];
/// * scheme compared case-insensitively (`bearer`, `BEARER`);
/// * more than one header line → [`ExtractError::Multiple`];
/// * a value that is not `scheme 1*SP token68`, or a token over [`MAX_CREDENTIAL_LEN`] →
///   [`ExtractError::Malformed`].
pub fn extract_authorization(headers: &HeaderMap) -> Result<Option<Credential<'_>>, ExtractError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ExtractError::Multiple);
    }
    let value = value.to_str().map_err(|_| ExtractError::Malformed)?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        // `Bearer`/`DPoP` without a token breaks the RFC 6750 §2.1 syntax (checklist T04: 400);
        // any other lone word is an unknown scheme or a raw key without a scheme (401).
        if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("dpop") {
            return Err(ExtractError::Malformed);
        }
        return Ok(None);
    };
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::DPoP
    } else {
        return Ok(None);
    };
    let token = rest.trim_start_matches(' ').trim_end_matches([' ', '\t']);
    if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN || !is_token68(token) {
        return Err(ExtractError::Malformed);
    }
    Ok(Some(Credential { scheme, token }))
}

/// RFC 7235 §2.1 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn schemes_are_case_insensitive() {
        for s in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR abc"] {
            assert_eq!(extract_authorization(&h(&[s])).unwrap().unwrap().token, "abc");
        }
        assert_eq!(extract_authorization(&h(&["DPoP abc"])).unwrap().unwrap().scheme, Scheme::DPoP);
    }

    #[test]
    fn missing_unknown_multiple_malformed() {
        assert_eq!(extract_authorization(&HeaderMap::new()).unwrap(), None);
        assert_eq!(extract_authorization(&h(&["Basic dXNlcjpwYXNz"])).unwrap(), None);
        assert_eq!(extract_authorization(&h(&["Bearer"])), Err(ExtractError::Malformed));
        assert_eq!(extract_authorization(&h(&["dpop"])), Err(ExtractError::Malformed));
        assert_eq!(extract_authorization(&h(&["Token"])).unwrap(), None);
        assert_eq!(extract_authorization(&h(&["Bearer a", "Bearer b"])), Err(ExtractError::Multiple));
        assert_eq!(extract_authorization(&h(&["Bearer a b"])), Err(ExtractError::Malformed));
        assert_eq!(extract_authorization(&h(&["Bearer a=b"])), Err(ExtractError::Malformed));
        assert_eq!(extract_authorization(&h(&["Bearer  "])), Err(ExtractError::Malformed));
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_LEN + 1));
        assert_eq!(extract_authorization(&h(&[&long])), Err(ExtractError::Malformed));
        assert_eq!(extract_authorization(&h(&["Bearer abc=="])).unwrap().unwrap().token, "abc==");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let m = h(&["Bearer supersecret"]);
        let c = extract_authorization(&m).unwrap().unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
