//! The sealed-secret form of an AWS credential set, shared by the configuration (which builds
//! it from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`/`AWS_REGION`) and the
//! Bedrock adapter (which reads it to sign with SigV4).
//!
//! Shape: a JSON object written in the fixed order `secret_access_key`, `session_token`?,
//! `region`?, `access_key_id`, so that a key hint (first 3 and last 4 characters of the
//! secret) shows `{"s…` and the end of the public access key id, never a secret character.

/// The provider secret for an AWS credential set (see the module docs). Empty optional values
/// are left out.
pub fn credentials_secret(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>, region: Option<&str>) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = String::with_capacity(96 + secret_access_key.len() + session_token.map_or(0, str::len));
    out.push_str("{\"secret_access_key\":");
    out.push_str(&q(secret_access_key));
    if let Some(t) = session_token.filter(|t| !t.is_empty()) {
        out.push_str(",\"session_token\":");
        out.push_str(&q(t));
    }
    if let Some(r) = region.filter(|r| !r.is_empty()) {
        out.push_str(",\"region\":");
        out.push_str(&q(r));
    }
    out.push_str(",\"access_key_id\":");
    out.push_str(&q(access_key_id));
    out.push('}');
    out
}

/// Checks a Bedrock provider secret: a Bedrock API key (any string not starting with `{`) or a
/// credential set (a JSON object with non-empty string `access_key_id` and
/// `secret_access_key`, optional string `session_token` and `region`, nothing else; a region
/// is lowercase letters, digits and hyphens).
///
/// Errors: a message for the operator that names fields, never their values.
pub fn check_secret(secret: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "Bedrock credentials must be an API key or {\"access_key_id\", \"secret_access_key\", \"session_token\"?, \"region\"?}";
    let s = secret.trim();
    if !s.starts_with('{') {
        return Ok(());
    }
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(s) else { return Err(SHAPE) };
    let text = |k: &str| m.get(k).and_then(serde_json::Value::as_str);
    if m.keys().any(|k| !matches!(k.as_str(), "access_key_id" | "secret_access_key" | "session_token" | "region")) {
        return Err(SHAPE);
    }
    if text("access_key_id").is_none_or(|v| v.trim().is_empty()) || text("secret_access_key").is_none_or(str::is_empty) {
        return Err("Bedrock credentials need a non-empty access_key_id and secret_access_key");
    }
    if ["session_token", "region"].iter().any(|k| m.get(*k).is_some_and(|v| !v.is_string())) {
        return Err(SHAPE);
    }
    if let Some(r) = text("region")
        && (r.is_empty() || !r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err("the region of Bedrock credentials must be an AWS region name such as us-east-1");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn valid_json_with_the_public_id_last() {
        let s = credentials_secret("AKIDEXAMPLE", "se\"cret", Some("tok"), None);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, serde_json::json!({"access_key_id": "AKIDEXAMPLE", "secret_access_key": "se\"cret", "session_token": "tok"}));
        assert!(s.ends_with("\"AKIDEXAMPLE\"}"));
        assert!(check_secret(&s).is_ok());
    }

    #[test]
    fn secrets_are_checked_without_echoing_them() {
        assert!(check_secret("ABSKQmVkcm9ja0FQSUtleQ==").is_ok(), "an API key");
        assert!(check_secret(&credentials_secret("AKID", "s", None, Some("eu-west-1"))).is_ok());
        for bad in [
            r#"{"access_key_id":"AKID","secret":"s3cr3t-canary"}"#,
            r#"{"access_key_id":"AKID"}"#,
            r#"{"access_key_id":" ","secret_access_key":"s3cr3t-canary"}"#,
            r#"{"access_key_id":"AKID","secret_access_key":"s3cr3t-canary","region":"Mars 1"}"#,
            r#"{"access_key_id":"AKID","secret_access_key":"s3cr3t-canary","session_token":7}"#,
            r#"{"access_key_id":"AKID","secret_access_key":"s3cr3t-canary""#,
        ] {
            let e = check_secret(bad).unwrap_err();
            assert!(!e.contains("s3cr3t-canary") && !e.contains("AKID"), "{e}");
        }
    }
}
