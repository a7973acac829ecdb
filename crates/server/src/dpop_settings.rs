//! DPoP settings of the data plane from the environment (issue 5; RFC 9449):
//!
//! * `GATEHOUSE_PUBLIC_URL` — the public base URL clients use (`https://gw.example.com`, a path
//!   prefix allowed). DPoP `htu` is checked against `<GATEHOUSE_PUBLIC_URL><request path>`; it is
//!   also the OAuth issuer. Unset: `htu` is derived from each request's `Host` (and
//!   `X-Forwarded-Host`/`-Proto` from trusted proxies) — set it in production so a proof made for
//!   another host is never accepted.
//! * `GATEHOUSE_DPOP_NONCES` — `true`/`1` demands server nonces (`DPoP-Nonce`, `use_dpop_nonce`);
//!   default `false`.

use gatehouse_gateway::dpop::DpopSettings;

/// Reads the variables of the module doc.
///
/// Errors: a `GATEHOUSE_PUBLIC_URL` that is not an absolute `http(s)://host[:port][/path]` URL
/// without query, fragment or user info; a `GATEHOUSE_DPOP_NONCES` that is not a boolean.
pub fn from_env() -> Result<DpopSettings, String> {
    let get = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    parse(get("GATEHOUSE_PUBLIC_URL"), get("GATEHOUSE_DPOP_NONCES"))
}

fn parse(public_url: Option<String>, nonces: Option<String>) -> Result<DpopSettings, String> {
    let public_base_url = match public_url {
        None => None,
        Some(u) => {
            let ok = !u.contains(['?', '#', ' ']) && gatehouse_auth::dpop::normalize_htu(&u).is_some();
            if !ok {
                return Err("GATEHOUSE_PUBLIC_URL must be an absolute http(s) URL such as https://gw.example.com".into());
            }
            Some(u.trim_end_matches('/').to_string())
        }
    };
    let nonces = match nonces.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no" | "off") => false,
        Some("true" | "1" | "yes" | "on") => true,
        Some(_) => return Err("GATEHOUSE_DPOP_NONCES must be true or false".into()),
    };
    Ok(DpopSettings { public_base_url, nonces })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn defaults_valid_values_and_clear_errors() {
        let d = parse(None, None).unwrap();
        assert_eq!((d.public_base_url, d.nonces), (None, false));
        let d = parse(Some("https://GW.example.com/".into()), Some("TRUE".into())).unwrap();
        assert_eq!((d.public_base_url.as_deref(), d.nonces), (Some("https://GW.example.com"), true));
        assert!(parse(Some("gw.example.com".into()), None).unwrap_err().contains("GATEHOUSE_PUBLIC_URL"));
        assert!(parse(Some("https://gw.example.com/?a=1".into()), None).is_err());
        assert!(parse(Some("https://u:p@gw.example.com".into()), None).is_err());
        assert!(parse(None, Some("sometimes".into())).unwrap_err().contains("GATEHOUSE_DPOP_NONCES"));
    }
}
