//! DPoP settings of the data plane (issue 5; RFC 9449), from the validated configuration
//! (`[dpop]` in the TOML file < environment < `serve` flags; see [`gatehouse_config::DpopConfig`]):
//!
//! * `public_url` / `GATEHOUSE_PUBLIC_URL` / `--public-url` — the public base URL clients use
//!   (`https://gw.example.com`, a path prefix allowed). DPoP `htu` is checked against
//!   `<public_url><request path>`; it is also the OAuth issuer. Unset: `htu` is derived from each
//!   request's `Host` (and `X-Forwarded-Host`/`-Proto` from trusted proxies) — set it in
//!   production so a proof made for another host is never accepted.
//! * `nonces` / `GATEHOUSE_DPOP_NONCES` / `--dpop-nonces` — demand server nonces (`DPoP-Nonce`,
//!   `use_dpop_nonce`); default `false`.
//! * `replay_window` / `GATEHOUSE_DPOP_REPLAY_WINDOW` / `--dpop-replay-window` — how long a
//!   proof's `jti` is remembered against replay; 70 s – 10 min, default 90 s.

use gatehouse_config::DpopConfig;
use gatehouse_gateway::dpop::DpopSettings;

/// The gateway's DPoP settings from the configuration.
///
/// Errors: a public URL that the `htu` normalisation cannot use (the configuration already
/// refused anything that is not an absolute `http(s)` URL without query, fragment or user info).
pub fn from_config(c: &DpopConfig) -> Result<DpopSettings, String> {
    let public_base_url = match &c.public_url {
        None => None,
        Some(u) if gatehouse_auth::dpop::normalize_htu(u).is_some() => Some(u.trim_end_matches('/').to_string()),
        Some(_) => return Err("the DPoP public URL must be an absolute http(s) URL such as https://gw.example.com".into()),
    };
    Ok(DpopSettings { public_base_url, nonces: c.nonces, replay_window: c.replay_window })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_configuration() {
        let d = from_config(&DpopConfig::default()).unwrap();
        assert_eq!((d.public_base_url, d.nonces, d.replay_window.as_secs()), (None, false, 90));
        let c = DpopConfig { public_url: Some("https://GW.example.com/".into()), nonces: true, replay_window: std::time::Duration::from_secs(120) };
        let d = from_config(&c).unwrap();
        assert_eq!((d.public_base_url.as_deref(), d.nonces, d.replay_window.as_secs()), (Some("https://GW.example.com"), true, 120));
    }
}
