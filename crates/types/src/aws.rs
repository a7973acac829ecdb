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
    }
}
