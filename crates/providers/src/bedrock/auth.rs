//! Bedrock authentication (`wire-formats.md` §6): AWS Signature Version 4 with the `aws-sigv4`
//! crate (signing name `bedrock`, the endpoint's region, payload hash in the canonical request,
//! the model-id path segment encoded twice as for every non-S3 service), or a Bedrock API key
//! sent as `Authorization: Bearer <key>`.
//!
//! The provider's one sealed secret holds either form:
//!
//! * a Bedrock API key (any string not starting with `{`), e.g. the value of
//!   `AWS_BEARER_TOKEN_BEDROCK`;
//! * an AWS credential set as a JSON object
//!   `{"access_key_id": "AKIA…", "secret_access_key": "…", "session_token": "…"?, "region": "eu-west-1"?}`
//!   (the shape [`credentials_json`] writes).
//!
//! The signing region is the one named by the base URL's host
//! (`bedrock-runtime[-fips].{region}.amazonaws.com`, VPC endpoint hosts included), else the
//! credential set's `region`, else `us-east-1`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::UpstreamError;

/// The SigV4 signing name of Bedrock Runtime (not `bedrock-runtime`, §6).
pub const SIGNING_NAME: &str = "bedrock";

/// The region used when neither the base URL nor the credentials name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// An AWS credential set as stored in the provider's sealed secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

/// How requests to one Bedrock provider are authenticated.
pub(crate) enum BedrockAuth<'k> {
    /// A Bedrock API key: `Authorization: Bearer <key>`.
    Bearer(&'k str),
    /// SigV4 with these credentials.
    SigV4 { access_key_id: String, secret_access_key: SecretString, session_token: Option<SecretString>, region: Option<String> },
}

/// Reads the provider secret (see the module docs).
///
/// Errors: [`UpstreamError::Config`] for a JSON secret that is not a credential set (its content
/// is never echoed).
pub(crate) fn parse_secret(secret: &SecretString) -> Result<BedrockAuth<'_>, UpstreamError> {
    let s = secret.expose_secret().trim();
    if !s.starts_with('{') {
        return Ok(BedrockAuth::Bearer(s));
    }
    let c: StoredCredentials = serde_json::from_str(s).map_err(|_| {
        UpstreamError::Config("the Bedrock credentials are not {\"access_key_id\", \"secret_access_key\", \"session_token\"?, \"region\"?}")
    })?;
    if c.access_key_id.trim().is_empty() || c.secret_access_key.is_empty() {
        return Err(UpstreamError::Config("the Bedrock credentials need a non-empty access_key_id and secret_access_key"));
    }
    Ok(BedrockAuth::SigV4 {
        access_key_id: c.access_key_id.trim().to_owned(),
        secret_access_key: SecretString::from(c.secret_access_key),
        session_token: c.session_token.filter(|t| !t.is_empty()).map(SecretString::from),
        region: c.region.filter(|r| !r.trim().is_empty()).map(|r| r.trim().to_owned()),
    })
}

/// The sealed-secret form of an AWS credential set: a JSON object with `access_key_id`,
/// `secret_access_key`, and `session_token`/`region` when given (public id written last, so
/// key hints never show a secret character).
/// Same as [`gatehouse_types::aws::credentials_secret`].
pub fn credentials_json(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>, region: Option<&str>) -> String {
    gatehouse_types::aws::credentials_secret(access_key_id, secret_access_key, session_token, region)
}

/// The region named by a Bedrock Runtime host: the label after `bedrock-runtime` or
/// `bedrock-runtime-fips` (`https://bedrock-runtime.eu-west-1.amazonaws.com` → `eu-west-1`,
/// `https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com` → `us-east-1`).
pub fn region_from_base_url(base_url: &str) -> Option<&str> {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    let mut labels = host.split('.');
    while let Some(label) = labels.next() {
        if label == "bedrock-runtime" || label == "bedrock-runtime-fips" {
            return labels.next().filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        }
    }
    None
}

fn sign_error<E: std::fmt::Display>(e: E) -> UpstreamError {
    // The signer's errors name the request shape (URI, time), never the secret.
    tracing::warn!(error = %e, "bedrock: SigV4 signing failed");
    UpstreamError::Config("the Bedrock request could not be signed (see the gateway log)")
}

/// Adds the authentication headers for `url`/`body` to `headers`: `Authorization: Bearer` for an
/// API key; for SigV4 `Authorization: AWS4-HMAC-SHA256 …`, `X-Amz-Date` and, with a session
/// token, `X-Amz-Security-Token` (all sensitive, so never logged by the HTTP stack).
pub(crate) fn authorize(headers: &mut HeaderMap, secret: &SecretString, base_url: &str, url: &str, body: &[u8], now: SystemTime) -> Result<(), UpstreamError> {
    match parse_secret(secret)? {
        BedrockAuth::Bearer(key) => {
            if key.is_empty() {
                return Err(UpstreamError::Config("the Bedrock provider has no API key or credentials"));
            }
            let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| UpstreamError::Config("the provider key contains characters not allowed in an HTTP header"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
            Ok(())
        }
        BedrockAuth::SigV4 { access_key_id, secret_access_key, session_token, region } => {
            let region = region_from_base_url(base_url).map(str::to_owned).or(region).unwrap_or_else(|| DEFAULT_REGION.to_owned());
            // `aws-sigv4` needs a host to sign; the config checks base URLs, but stay defensive.
            if url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::len)).unwrap_or(0) == 0 {
                return Err(UpstreamError::Config("the Bedrock base URL has no host"));
            }
            let credentials = Credentials::new(
                access_key_id,
                secret_access_key.expose_secret().to_owned(),
                session_token.as_ref().map(|t| t.expose_secret().to_owned()),
                None,
                "gatehouse-provider",
            );
            let identity: Identity = credentials.into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(&region)
                .name(SIGNING_NAME)
                .time(now)
                .settings(SigningSettings::default())
                .build()
                .map_err(sign_error)?
                .into();
            let pairs: Vec<(&str, &str)> = headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
            let signable = SignableRequest::new("POST", url, pairs.into_iter(), SignableBody::Bytes(body)).map_err(sign_error)?;
            let (instructions, _signature) = sign(signable, &params).map_err(sign_error)?.into_parts();
            let (signed, _params) = instructions.into_parts();
            for h in signed {
                let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(sign_error)?;
                let mut value = HeaderValue::from_str(h.value()).map_err(sign_error)?;
                if h.sensitive() || name == reqwest::header::AUTHORIZATION {
                    value.set_sensitive(true);
                }
                headers.insert(name, value);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn regions_from_hosts() {
        assert_eq!(region_from_base_url("https://bedrock-runtime.eu-west-1.amazonaws.com"), Some("eu-west-1"));
        assert_eq!(region_from_base_url("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com/"), Some("us-gov-west-1"));
        assert_eq!(region_from_base_url("https://vpce-0a1.bedrock-runtime.us-east-2.vpce.amazonaws.com"), Some("us-east-2"));
        assert_eq!(region_from_base_url("http://127.0.0.1:9000"), None);
        assert_eq!(region_from_base_url("https://bedrock-runtime"), None);
    }

    #[test]
    fn secrets_are_bearer_keys_or_credential_json() {
        let key = SecretString::from("ABSKabc123");
        assert!(matches!(parse_secret(&key), Ok(BedrockAuth::Bearer("ABSKabc123"))));
        let json = SecretString::from(credentials_json("AKIDEXAMPLE", "s3cr3t-canary", Some("tok"), Some("eu-west-1")));
        match parse_secret(&json).unwrap() {
            BedrockAuth::SigV4 { access_key_id, session_token, region, .. } => {
                assert_eq!(access_key_id, "AKIDEXAMPLE");
                assert!(session_token.is_some());
                assert_eq!(region.as_deref(), Some("eu-west-1"));
            }
            BedrockAuth::Bearer(_) => panic!("expected SigV4"),
        }
        let bad = SecretString::from(r#"{"access_key_id":"A","secret":"s3cr3t-canary"}"#);
        let e = parse_secret(&bad).err().unwrap();
        assert!(!e.to_string().contains("s3cr3t-canary"));
    }

    #[test]
    fn sigv4_headers_have_the_documented_shape() {
        let secret = SecretString::from(credentials_json("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", Some("session-tok"), None));
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let base = "https://bedrock-runtime.eu-west-1.amazonaws.com";
        let url = crate::bedrock::endpoint(base, "anthropic.claude-3-5-sonnet-20240620-v1:0", false);
        assert!(url.ends_with("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"), "{url}");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_772_619_300); // 2026-03-04T10:15:00Z
        authorize(&mut h, &secret, base, &url, b"{}", t).unwrap();
        let auth = h.get("authorization").unwrap();
        assert!(auth.is_sensitive());
        let auth = auth.to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260304/eu-west-1/bedrock/aws4_request, SignedHeaders="), "{auth}");
        assert!(auth.contains("content-type;host;x-amz-date;x-amz-security-token"), "{auth}");
        assert!(!auth.contains("wJalrXUtnFEMI"));
        assert_eq!(h.get("x-amz-date").unwrap(), "20260304T101500Z");
        assert!(h.get("x-amz-security-token").unwrap().is_sensitive());
        // Same input, same signature (deterministic); another secret, another signature.
        let mut h2 = HeaderMap::new();
        h2.insert("content-type", HeaderValue::from_static("application/json"));
        authorize(&mut h2, &secret, base, &url, b"{}", t).unwrap();
        assert_eq!(h2.get("authorization"), h.get("authorization"));
        let other = SecretString::from(credentials_json("AKIDEXAMPLE", "another", Some("session-tok"), None));
        let mut h3 = HeaderMap::new();
        h3.insert("content-type", HeaderValue::from_static("application/json"));
        authorize(&mut h3, &other, base, &url, b"{}", t).unwrap();
        assert_ne!(h3.get("authorization"), h.get("authorization"));
    }

    #[test]
    fn bearer_keys_go_in_authorization() {
        let mut h = HeaderMap::new();
        authorize(&mut h, &SecretString::from("ABSKkey"), "https://x", "https://x/model/m/converse", b"{}", SystemTime::now()).unwrap();
        assert_eq!(h.get("authorization").unwrap(), "Bearer ABSKkey");
        assert!(h.get("x-amz-date").is_none());
    }
}
