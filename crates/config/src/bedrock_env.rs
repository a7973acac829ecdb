//! The `bedrock` provider from the standard AWS environment variables (AWS CLI/SDK names), read
//! once at start like the other vendors' variables.
//!
//! | Variable | Use |
//! |---|---|
//! | `AWS_BEARER_TOKEN_BEDROCK` | a Bedrock API key (`Authorization: Bearer`); wins over the key pair, as in the AWS SDKs |
//! | `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) | SigV4 credentials, sealed as one secret (a JSON object, see `gatehouse_providers::bedrock::auth`) |
//! | `AWS_REGION`, else `AWS_DEFAULT_REGION` | the region: endpoint `https://bedrock-runtime.{region}.amazonaws.com` and signing region |
//! | `BEDROCK_BASE_URL` | endpoint override (a VPC endpoint, a proxy, the mock in tests) |
//!
//! Only the credential variables switch the provider on. Errors name variables, never values.

use secrecy::SecretString;

use crate::{ConfigIssue, EnvSource, ProviderConfig, ProviderKindName, check_base_url};

/// AWS region names: lowercase letters, digits and hyphens (`us-east-1`, `us-gov-west-1`).
fn valid_region(r: &str) -> bool {
    !r.is_empty() && r.len() <= 32 && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The `bedrock` provider, if the environment names AWS credentials or a Bedrock API key.
pub(crate) fn bedrock_env_provider(env: &dyn EnvSource, issues: &mut Vec<ConfigIssue>) -> Option<ProviderConfig> {
    let get = |var: &str| env.var(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let bearer = get("AWS_BEARER_TOKEN_BEDROCK");
    let key_id = get("AWS_ACCESS_KEY_ID");
    let secret = get("AWS_SECRET_ACCESS_KEY");
    if bearer.is_none() && key_id.is_none() && secret.is_none() {
        return None;
    }
    let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
    if let Some(r) = &region
        && !valid_region(r)
    {
        issues.push(ConfigIssue::new("env AWS_REGION", "must be an AWS region name such as us-east-1"));
        return None;
    }
    let api_key = match (bearer, key_id, secret) {
        (Some(token), _, _) => token,
        (None, Some(id), Some(secret)) => gatehouse_types::aws::credentials_secret(&id, &secret, get("AWS_SESSION_TOKEN").as_deref(), region.as_deref()),
        (None, Some(_), None) => {
            issues.push(ConfigIssue::new("env AWS_SECRET_ACCESS_KEY", "must be set when AWS_ACCESS_KEY_ID is set"));
            return None;
        }
        (None, None, _) => {
            issues.push(ConfigIssue::new("env AWS_ACCESS_KEY_ID", "must be set when AWS_SECRET_ACCESS_KEY is set"));
            return None;
        }
    };
    let base_url = match get("BEDROCK_BASE_URL") {
        Some(url) => {
            if let Err(e) = check_base_url(&url) {
                issues.push(ConfigIssue::new("env BEDROCK_BASE_URL", e));
            }
            Some(url.trim_end_matches('/').to_string())
        }
        None => region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com")),
    };
    Some(ProviderConfig {
        name: ProviderKindName::Bedrock.as_str().to_string(),
        kind: ProviderKindName::Bedrock,
        base_url,
        api_key: Some(SecretString::from(api_key)),
    })
}
